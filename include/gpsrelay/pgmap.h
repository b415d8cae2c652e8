/*
 * pgmap.h - the device-to-agency mapping from PostgreSQL, live, on the event loop
 * (docs/mapping.md, config/schema.sql). pgmap.c also holds the PostgreSQL mapping source
 * (mapping_source.h), which adds mapping_cache for starts while the database is down.
 *
 * One connection (pgconn.h): connect, LISTEN gpsrelay_mapping, then load every row; each
 * notification (coalesced over GR_PGMAP_COALESCE_MS, never more than one load in flight) loads
 * every row again. The loop only moves protocol bytes: rows become a struct gr_mapping on libuv's
 * thread pool, where the mapping cache is written too. Nothing that fails (connecting, a query)
 * touches the mapping in force; a row the mapping refuses is left out of it, counted
 * (gpsrelay_mapping_rows_rejected_total) and logged. A lost, or silent, connection is made
 * again after a capped exponential backoff and followed by a full load, since
 * notifications sent while disconnected are lost.
 */
#ifndef GPSRELAY_PGMAP_H
#define GPSRELAY_PGMAP_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "gpsrelay/mapping.h"
#include "gpsrelay/stop.h"

/* Every device-agency pair, as the columns of a CSV mapping row. */
#define GR_PGMAP_QUERY                                                                             \
    "SELECT d.id, da.agency_id, d.label, host(d.source_addr) "                                     \
    "FROM devices d JOIN device_agencies da ON da.device_id = d.id"

#define GR_PGMAP_COALESCE_MS 100 /* notifications this close together: one load */

/*
 * The connection is a gr_pgconn (pgconn.h), with its bounds: a hung server is noticed
 * within GR_PGCONN_QUERY_MS of silence while the mapping query is in flight (the bound is
 * on silence, not on the whole answer, so a large mapping arriving slowly is not cut off),
 * and within GR_PGCONN_PROBE_MS + GR_PGCONN_QUERY_MS = 25 s while idle (LISTEN is silent,
 * so an idle connection is probed), as the keepalives notice a vanished one. Failures count
 * in gpsrelay_postgres_failures_total, the silences among them in
 * gpsrelay_postgres_timeouts_total.
 */

/* Rows a load could not take as they are are all counted; this many are logged per load. */
#define GR_PGMAP_REJECTS_LOGGED 8

struct gr_pgmap_options {
    const char *conninfo;   /* libpq connection string (config: no DNS lookup needed) */
    const char *cache_path; /* mapping_cache: written after each load; NULL: none */
    /* A new mapping, loaded and checked: the callee owns m. */
    void (*loaded)(void *ctx, struct gr_mapping *m);
    /* A connection attempt or a load failed (already logged); called on each failure. */
    void (*failed)(void *ctx);
    void *ctx;
};

struct gr_pgmap;

/* Starts connecting. Returns 0, or -ENOMEM (logged). Strings are copied. */
int gr_pgmap_start(uv_loop_t *loop, const struct gr_pgmap_options *opt, struct gr_pgmap **out);

/* Loads everything again soon (SIGHUP); while disconnected, retries connecting now. */
void gr_pgmap_reload(struct gr_pgmap *p);

/* Whether the connection is up and listening for changes (gpsrelay_postgres_up). */
bool gr_pgmap_up(const struct gr_pgmap *p);

/*
 * Closes the connection and its handles; done(arg) once their close callbacks have run
 * and a build running on the thread pool has finished (stop.h).
 */
void gr_pgmap_stop(struct gr_pgmap *p, gr_stopped_fn done, void *arg);

/* Frees p once its stop's done has been called (from inside done is fine). NULL is fine. */
void gr_pgmap_free(struct gr_pgmap *p);

#endif
