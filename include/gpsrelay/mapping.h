/*
 * mapping.h - which agencies each device belongs to (SPEC section 7).
 *
 * A struct gr_mapping is immutable once loaded; a reload builds a new one and the daemon
 * swaps it in. Lookups are O(log n).
 */
#ifndef GPSRELAY_MAPPING_H
#define GPSRELAY_MAPPING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Longest agency id or device label accepted from a mapping. */
#define GR_AGENCY_ID_MAX 64
#define GR_LABEL_MAX     128

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
 * device-agency pair. Returns 0 and a new mapping in *out, or -1 with "file:line: ..." in
 * err. Duplicate pairs, a device given two different source addresses or labels, and two
 * devices with one source address are errors.
 */
int gr_mapping_load_csv(const char *path, struct gr_mapping **out, char *err, size_t errlen);

void gr_mapping_free(struct gr_mapping *m);

/* The device with this id, or NULL. Borrowed; valid while m lives. */
const struct gr_device *gr_mapping_find(const struct gr_mapping *m, const char *id, size_t id_len);

/* The device whose source_addr is sa's address (port ignored), or NULL. */
const struct gr_device *gr_mapping_find_addr(const struct gr_mapping *m, const struct sockaddr *sa);

size_t gr_mapping_count(const struct gr_mapping *m);

/* The i-th device in id order, i < gr_mapping_count(m). */
const struct gr_device *gr_mapping_device(const struct gr_mapping *m, size_t i);

#endif
