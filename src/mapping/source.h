/*
 * source.h - private to src/mapping: the sources behind mapping_source.h, and the CSV read
 * on the thread pool that two of them share (a CSV reload, the mapping_cache at start).
 */
#ifndef GPSRELAY_MAPPING_SOURCE_PRIVATE_H
#define GPSRELAY_MAPPING_SOURCE_PRIVATE_H

#include <uv.h>

#include "gpsrelay/mapping.h"
#include "gpsrelay/mapping_source.h"

extern const struct gr_mapping_source_ops gr_mapping_source_csv;      /* csv_source.c */
extern const struct gr_mapping_source_ops gr_mapping_source_postgres; /* pgmap.c */

/*
 * A CSV file read and parsed on libuv's thread pool: a million-row mapping_file (66 MB)
 * took 0.8 s to read, parse and sort, and the disk under it may be slow, so none of that
 * runs on the loop.
 */
struct gr_csv_read;

/*
 * done(ctx, m, err) runs on the loop once the file is back: m a new mapping (done takes it),
 * or NULL with the reason in err (borrowed for the call). Returns 0 and the read in *out,
 * or <0 (logged, done is never called). path is copied.
 */
int gr_csv_read_start(uv_loop_t *loop, const char *path,
                      void (*done)(void *ctx, struct gr_mapping *m, const char *err), void *ctx,
                      struct gr_csv_read **out);

/* done will not be called: a read still queued is dropped, one running finishes on the pool
 * and its result is freed; then stopped(arg), from the loop, and r is gone (stop.h, with r
 * freeing itself). */
void gr_csv_read_stop(struct gr_csv_read *r, gr_stopped_fn stopped, void *arg);

#endif
