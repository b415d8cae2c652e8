/*
 * archive_spool.h - the archive's write-ahead log: every position line on its way to
 * PostgreSQL goes through one file (archive_spool), and batches for COPY are read back
 * from it. At least once, durable across a kill of the process, bounded.
 *
 * The file. A 4096-byte header ("GRSPOOL1", a version, the committed offset, where the file
 * ends while a rewind is finished), then lines in COPY's text format (archive_row.h), each
 * ending in '\n'. Lines before the committed offset are in PostgreSQL (or were dropped);
 * the lines after it, the backlog, are delivered first, oldest first, after a restart.
 * Delivery is at least once: a batch that was out when the process died comes again (the
 * archive's key makes a second copy a no-op). Without a path the same code runs on an
 * anonymous memfd_create() file: positions then wait in memory, under the same bound, and
 * do not survive a restart.
 *
 * Threads. The loop never touches the file: it appends into a buffer of its own, handed to
 * the spool thread at least every GR_SPOOL_FLUSH_MS. The spool thread does all file I/O:
 * writes, reading batches ahead, persisting the committed offset, fdatasync every
 * GR_SPOOL_SYNC_MS, compaction (truncating, punching holes, rewinding), the bound.
 * A kill -9 loses the last GR_SPOOL_FLUSH_MS of appends and what the thread had not yet
 * written (a few milliseconds' worth, unless the disk stalls); a power loss, the last
 * GR_SPOOL_SYNC_MS too. Every call below is on the loop's thread; every callback comes from
 * a loop callback.
 *
 * Bounds. Appended but not yet written (the disk is slow or failing): GR_SPOOL_HANDOFF_MAX,
 * past which appends are refused. In the file: max_bytes of backlog, past which the oldest
 * lines are dropped (a line boundary, just enough; counted, logged once per
 * GR_SPOOL_DROP_LOG_MS). In memory besides: two batch buffers of batch_max.
 */
#ifndef GPSRELAY_ARCHIVE_SPOOL_H
#define GPSRELAY_ARCHIVE_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "gpsrelay/stop.h"

/* The loop hands its appends to the thread at least this often: what a kill -9 can lose. */
#define GR_SPOOL_FLUSH_MS 20
/* Bytes appended but not yet written by the thread; past it appends are refused (the disk
 * is stalled or failing): 64 MiB, some 400,000 positions, 40 s of 10,000 units at 1 Hz. */
#define GR_SPOOL_HANDOFF_MAX (64u << 20)
/* Default bytes per batch: about 20,000 positions, one COPY. */
#define GR_SPOOL_BATCH_MAX (4u << 20)
/* Smallest batch_max accepted: many times the longest line (GR_ARCHIVE_ROW_MAX). A line
 * longer than batch_max cannot be delivered: it is dropped (counted) when read. */
#define GR_SPOOL_BATCH_MIN (64u << 10)
/* How often the thread makes what it wrote durable (fdatasync): what a power loss can lose. */
#define GR_SPOOL_SYNC_MS 1000
/* Committed bytes freed (a hole punched) once this many have built up, while a backlog
 * keeps the file from being truncated: fewer, larger fallocate calls. */
#define GR_SPOOL_PUNCH_MIN (16u << 20)
/* Once lines begin this far into the file and at most GR_SPOOL_REWIND_COPY_MAX of them wait,
 * they are copied back to the header's end and the file cut after them: under steady load
 * the spool is seldom found drained, and the file's size (not its blocks: holes) would grow
 * for ever. A copy of at most 8 MiB per 64 MiB that went through. */
#define GR_SPOOL_REWIND_MIN      (64u << 20)
#define GR_SPOOL_REWIND_COPY_MAX (8u << 20)
/* While the backlog overflows max_bytes, one log line per this long, with the total. */
#define GR_SPOOL_DROP_LOG_MS 10000
/* After a failed write or read, the thread tries again after this long. */
#define GR_SPOOL_RETRY_MS 1000

/* The header: magic, version, and where lines begin. */
#define GR_SPOOL_MAGIC       "GRSPOOL1"
#define GR_SPOOL_VERSION     1
#define GR_SPOOL_HEADER_SIZE 4096

struct gr_spool;

struct gr_spool_options {
    const char *path;   /* the spool file (made, mode 0600, if missing); NULL: a memfd */
    uint64_t max_bytes; /* backlog bound in the file; > 0 */
    size_t batch_max;   /* bytes per batch, from GR_SPOOL_BATCH_MIN; 0: GR_SPOOL_BATCH_MAX */
    /* gr_spool_take() returned NULL and now has a batch: called once per such NULL, and
     * once for the first batch (the backlog found at open, or the first lines appended)
     * if take() was not called before it. Never after gr_spool_close(). */
    void (*ready)(void *ctx);
    void *ctx;
};

/* A batch of whole lines to COPY: data holds len bytes, `lines` lines, each ending in '\n'.
 * Owned by the spool; valid until gr_spool_done() or gr_spool_retry() on it. */
struct gr_spool_batch {
    const char *data;
    size_t len;
    uint64_t lines;
};

/*
 * Opens (or makes) the spool and starts its thread. Refuses, with "path: why" in err: a
 * file that is not a spool or of another version (-EINVAL; the file is left untouched), a
 * spool another process holds (-EBUSY, an exclusive flock), what open(2) or a read says,
 * -ENOMEM. Before returning it checks the header and cuts a torn last line (a tail without
 * '\n' left by a kill mid-write): a few syscalls at start, before the daemon serves. The
 * backlog's lines are counted by the thread. Returns 0 with *out set. o is read during the
 * call only; o->ctx is borrowed until close's done.
 */
int gr_spool_open(uv_loop_t *loop, const struct gr_spool_options *o, struct gr_spool **out,
                  char *err, size_t errlen);

/*
 * Appends len bytes of whole lines (n_lines of them, the last byte a '\n'); copied.
 * Returns 0, or -ENOBUFS when GR_SPOOL_HANDOFF_MAX bytes already wait to be written
 * (refused_lines counts them), -EINVAL for a len of 0 or not ending in '\n', -ENOMEM.
 */
int gr_spool_append(struct gr_spool *s, const char *lines, size_t len, uint64_t n_lines);

/* The next batch, oldest first; NULL when none is ready yet (then `ready` follows) or one
 * is still out: one batch is out at a time. After done() or retry(), take again. Batches
 * are what was written when the thread read ahead, up to batch_max: small under a light
 * load, full while a backlog drains. */
const struct gr_spool_batch *gr_spool_take(struct gr_spool *s);

/* b is in PostgreSQL: its lines are committed (persisted by the thread soon after) and
 * never delivered again. b is gone. */
void gr_spool_done(struct gr_spool *s, const struct gr_spool_batch *b);

/* b was not archived (PostgreSQL failed): a batch from b's first line comes again (b's
 * lines, and more if more were written since; from the oldest line not dropped, if the
 * bound took some meanwhile). b is gone. A batch PostgreSQL refuses for its data, not for
 * a lost connection, would come back for ever: done() is for giving it up. */
void gr_spool_retry(struct gr_spool *s, const struct gr_spool_batch *b);

/*
 * Hands what is buffered to the thread, and calls done(arg, status) from a later loop
 * callback once everything appended before this call is written, the committed offset
 * persisted, the file fdatasync'ed and compacted (truncated when drained, rewound or a
 * hole punched). status: 0, or the negative errno of a write or sync that failed (the lines
 * stay queued). For tests and benchmarks; -EBUSY while one is pending, -ECANCELED after
 * close; one pending at close is not called back.
 */
int gr_spool_sync(struct gr_spool *s, void (*done)(void *arg, int status), void *arg);

struct gr_spool_stats {
    uint64_t queued_lines;  /* accepted, neither committed nor dropped (a gauge) */
    uint64_t backlog_bytes; /* in the file after the committed offset (a gauge) */
    /* Given up (since open): the oldest lines, to the bound (those of a batch out then
     * included), and lines longer than batch_max. */
    uint64_t dropped_lines;
    uint64_t refused_lines; /* appends refused: GR_SPOOL_HANDOFF_MAX was reached */
    uint64_t written_bytes; /* written to the file by the thread (since open) */
    bool disk_error;        /* a write, read or sync failed and has not worked since */
};

/* A snapshot (takes the thread's lock for a moment). */
void gr_spool_stats(struct gr_spool *s, struct gr_spool_stats *out);

/*
 * Hands the buffer to the thread, which writes everything (one last try if the disk was
 * failing: what still cannot be written is lost, logged with the count), persists the
 * committed offset and fdatasyncs; the thread is joined, the handles closed, then done as
 * stop.h says. A batch still out stays in the backlog and comes first at the next open.
 * Nothing but gr_spool_free() after this call; a second close is a no-op.
 */
void gr_spool_close(struct gr_spool *s, gr_stopped_fn done, void *arg);

/* After close's done (or when open failed: never needed then). NULL is fine. */
void gr_spool_free(struct gr_spool *s);

#endif
