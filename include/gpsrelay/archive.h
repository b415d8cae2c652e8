/*
 * archive.h - every published position into PostgreSQL (config/archive.sql), without ever
 * blocking the loop (docs/archive.md).
 *
 * The path: the hub tells gr_archive_position() of every position it applies; the
 * position becomes a line of COPY's text format (archive_row.h), appended to the spool
 * (archive_spool.h: a write-ahead log, in archive_spool on disk, else in memory); the
 * spool hands the lines back in batches, and each batch goes to PostgreSQL over one
 * non-blocking connection (pgconn.h), one batch in flight:
 *
 *     BEGIN; COPY positions (GR_ARCHIVE_COLUMNS) FROM STDIN
 *     ...the batch, GR_ARCHIVE_COPY_PIECE bytes at a time, each put when the last is sent
 *     COMMIT
 *
 * The batch is done in the spool only once the COMMIT has answered. Exactly once: every
 * batch is delivered at least once (a lost connection, a hung server, a restart or a
 * kill -9 sends it again from the spool), and (device, time) is the key. A batch with a
 * position archived already (sent again after a COMMIT whose answer was lost) fails that
 * COPY, is rolled back and goes again through the session's staging table and the move,
 * which skips what is there:
 *
 *     BEGIN; COPY pg_temp.gpsrelay_staging (GR_ARCHIVE_COLUMNS) FROM STDIN ...
 *     SELECT moved FROM gpsrelay_archive_move(); COMMIT
 *
 * A cluster node's batches always go that way: the nodes, which all apply every position
 * with the same seq, epoch and receive time, all write all of them, and each lands once; a
 * node that dies mid-batch loses nothing, since the others write the same positions.
 *
 * Partitions: when a connection is made and every GR_ARCHIVE_MAINTAIN_MS, the partitions
 * of today and the next GR_ARCHIVE_DAYS_AHEAD days are made, and days older than
 * archive_retention_days dropped whole. A position of a day outside the partitions' range
 * lands in positions_default and is counted when queued (gpsrelay_archive_undated_total).
 */
#ifndef GPSRELAY_ARCHIVE_H
#define GPSRELAY_ARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "gpsrelay/config.h"
#include "gpsrelay/fix.h"
#include "gpsrelay/stop.h"

#define GR_ARCHIVE_DAYS_AHEAD  2                /* partitions made beyond today */
#define GR_ARCHIVE_MAINTAIN_MS (10 * 60 * 1000) /* partitions checked this often */
/* COPY data is put in pieces of this size, the next once libpq has sent the last: what
 * one loop callback copies, and what waits in libpq's buffer at most. */
#define GR_ARCHIVE_COPY_PIECE (256u << 10)
/* Without archive_spool positions wait in memory: at most this much of archive_spool_max. */
#define GR_ARCHIVE_MEMORY_MAX (256u << 20)

struct gr_archive;

/* Starts the spool and the connection (cfg->archive_postgres must be set). Returns 0, or
 * a negative errno with the reason logged (a spool that cannot be opened: the daemon
 * refuses to start rather than lose positions); *out is then NULL, or an archive half
 * started, to be stopped and freed as stop.h says. */
int gr_archive_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_archive **out);

/* A position applied by the hub: archived, at least once, within the spool's bound; not
 * when older than archive_retention_days (gpsrelay_archive_expired_total). */
void gr_archive_position(struct gr_archive *a, const char *device, const struct gr_fix *fix,
                         const char *epoch, uint64_t seq, int64_t rx_ms);

/* A reloaded configuration: archive_retention_days from the next maintenance on. */
void gr_archive_set_config(struct gr_archive *a, const struct gr_config *cfg);

struct gr_archive_gauges {
    bool up;         /* connected, the session's staging table made */
    uint64_t queued; /* positions accepted and not yet archived */
    uint64_t spool_bytes;
    uint64_t dropped; /* positions given up: the spool's bound, its hand-off full, stopping */
};
void gr_archive_gauges(struct gr_archive *a, struct gr_archive_gauges *g);

/* Stops taking positions; the spool is written out and closed (what is not archived yet
 * waits there for the next start), the connection closed; done as stop.h says. */
void gr_archive_stop(struct gr_archive *a, gr_stopped_fn done, void *arg);
void gr_archive_free(struct gr_archive *a);

/* `gpsrelayd -t` (blocks, bounded as pgconn.h's check): the archive database answers and
 * has config/archive.sql's table and functions. Returns 0, or -1 with the reason in err. */
int gr_archive_check(const struct gr_config *cfg, char *err, size_t errlen);

#endif
