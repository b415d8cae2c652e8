/*
 * mapping.h - which agencies each device belongs to (docs/mapping.md).
 *
 * A struct gr_mapping is immutable once loaded; a reload builds a new one and the daemon
 * swaps it in. Lookups are O(log n).
 */
#ifndef GPSRELAY_MAPPING_H
#define GPSRELAY_MAPPING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "gpsrelay/fix.h"

/* Longest device label accepted from a mapping (ids: fix.h). */
#define GR_LABEL_MAX 128

/* Largest CSV file read (mapping_file, mapping_cache): a million rows of ids, a long label
 * and an IPv6 address stay well under this. */
#define GR_MAPPING_FILE_MAX (256u << 20)

struct gr_device {
    const char *id;
    const char *label;     /* "" when none */
    const char **agencies; /* n_agencies agency ids, sorted, no duplicates */
    size_t n_agencies;
    bool has_source_addr;
    int source_family;             /* AF_INET or AF_INET6 */
    unsigned char source_addr[16]; /* network order; first 4 bytes for AF_INET */
};

struct gr_mapping;

/*
 * Loads a CSV file: header "device_id,agency_id,label,source_addr" required, one row per
 * device-agency pair. Returns 0 and a new mapping in *out, or a negative errno with
 * "file:line: ..." in err: -EINVAL for what the file says, -ENOMEM, or why it could not be
 * read (gr_file_read). Duplicate pairs, a device given two different source addresses or
 * labels, and two devices with one source address are errors. path must be a regular file
 * of at most GR_MAPPING_FILE_MAX bytes (file.h): a FIFO or a device is refused at once,
 * never waited on. Logs nothing: safe on libuv's thread pool, where the daemon reloads it.
 */
int gr_mapping_load_csv(const char *path, struct gr_mapping **out, char *err, size_t errlen);

void gr_mapping_free(struct gr_mapping *m);

/*
 * Builds a mapping row by row: the one path for every source (the CSV loader, the
 * PostgreSQL loader). Strings passed in are copied; the builder borrows nothing.
 */
struct gr_mapping_builder;

/* A new, empty builder, or NULL when out of memory. */
struct gr_mapping_builder *gr_mapping_builder_new(void);

/*
 * Adds one device-agency row with the checks of a CSV row: device_id and agency_id
 * formats, label length (NULL is ""; UTF-8, which consoles' JSON needs; no line breaks,
 * so the CSV cache can hold it),
 * source_addr a numeric IPv4 or IPv6 address (NULL or "" is none). Returns 0, or -EINVAL
 * (or -ENOMEM) with a message in err (no file:line: the caller prefixes its own context);
 * a refused row leaves the builder as it was. Conflicts between rows are found by finish.
 */
int gr_mapping_builder_add(struct gr_mapping_builder *b, const char *device_id,
                           const char *agency_id, const char *label, const char *source_addr,
                           char *err, size_t errlen);

/*
 * Takes b (freed in every case). Returns the new mapping, or NULL with err on a conflict
 * between rows: a duplicate device-agency pair, a device with two labels or two source
 * addresses, two devices with one source address.
 */
struct gr_mapping *gr_mapping_builder_finish(struct gr_mapping_builder *b, char *err,
                                             size_t errlen);

/*
 * Takes b, like gr_mapping_builder_finish, for a source where one bad row must not refuse
 * the whole mapping (PostgreSQL: every later change would be frozen behind it). Conflicts
 * leave rows out instead: a duplicate device-agency pair, a row with another label than
 * its device's other rows; a device whose rows give two source addresses, and every
 * device sharing a source address with another (10.0.0.7 and ::ffff:10.0.0.7 are one),
 * lose it, so no position from that address goes to either. Each is reported to
 * skipped(ctx, why), why borrowed for the call. Returns the mapping, or NULL with err only
 * when out of memory.
 */
struct gr_mapping *gr_mapping_builder_finish_skipping(struct gr_mapping_builder *b,
                                                      void (*skipped)(void *ctx, const char *why),
                                                      void *ctx, char *err, size_t errlen);

/* Frees an unfinished builder; NULL is fine. */
void gr_mapping_builder_free(struct gr_mapping_builder *b);

/* The temporary file gr_mapping_save_csv writes before renaming it over path. */
#define GR_MAPPING_TMP_SUFFIX ".tmp"

/*
 * Writes m (borrowed) to path as CSV that gr_mapping_load_csv reads back to the same
 * mapping, atomically: path GR_MAPPING_TMP_SUFFIX in the same directory, fsync, rename,
 * fsync of the directory. Readers see the old file or the new one, never a part. Returns
 * 0, or a negative errno (the failed step's: open(2), write(2), rename(2)...; -ENOMEM)
 * with "path: ..." in err and no temporary file left behind. A process killed
 * mid-write leaves that one temporary file, which the next write reuses: leftovers never
 * pile up. The name is fixed, so at most one write per path may run at a time: the
 * daemon's only writer, pgmap.c, has at most one build on the thread pool.
 */
int gr_mapping_save_csv(const struct gr_mapping *m, const char *path, char *err, size_t errlen);

/* The device with this id, or NULL. Borrowed; valid while m lives. */
const struct gr_device *gr_mapping_find(const struct gr_mapping *m, const char *id, size_t id_len);

/* The device whose source_addr is sa's address (port ignored), or NULL. */
const struct gr_device *gr_mapping_find_addr(const struct gr_mapping *m, const struct sockaddr *sa);

size_t gr_mapping_count(const struct gr_mapping *m);

/* The i-th device in id order, i < gr_mapping_count(m). */
const struct gr_device *gr_mapping_device(const struct gr_mapping *m, size_t i);

#endif
