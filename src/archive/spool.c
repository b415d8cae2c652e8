/*
 * spool.c - the archive's write-ahead log (archive_spool.h): the loop's append buffer, and
 * the spool thread that does every operation on the file.
 *
 * Offsets. Three positions in the file, each a byte offset and a line number (lines counted
 * from the open, so the queued gauge and the drop count are exact without a line index):
 * committed <= read <= end. committed is what is in PostgreSQL (or dropped), kept in the
 * header; read is where the next batch starts; end is what the thread has written. end
 * only ever moves by whole chunks of whole lines, so [committed, end) is whole lines.
 *
 * Crash safety. A process kill leaves the page cache whole: what pwrite() wrote is there,
 * bar a torn last chunk, whose tail without '\n' the next open cuts. For a power loss the
 * order of operations matters, and is chosen so that the worst case is a line delivered
 * twice, never one lost:
 *   - a hole is punched only below a committed offset that an fdatasync made durable
 *     (after the loss the header may say an older offset, whose lines must still be there);
 *   - truncating a drained file is: ftruncate, header with the reset offset, fdatasync, and
 *     only then new lines. A header that still says the old offset is past the end of the
 *     file: open clamps it (all was committed). A header that was reset over an untruncated
 *     file delivers the old lines again;
 *   - a rewind (a small backlog far into the file copied back to the header's end) has its
 *     own commit point: see rewind_file().
 *
 * Locking. One mutex guards the state shared by the loop and the thread (the hand-off
 * list, the three positions, the two batch slots, the counters). The thread never holds it
 * across a system call on the file, so the loop waits on it only for a few stores.
 */
#include "gpsrelay/archive_spool.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gpsrelay/clock.h"
#include "gpsrelay/log.h"

/* The loop gathers appends into chunks of this size: one pwrite(2) each, and a size malloc
 * takes from its heap (below its mmap threshold). A larger append gets a chunk its size. */
#define CHUNK_SIZE (64u << 10)

/* Reads that scan the file (counting the backlog's lines, finding the torn tail and the
 * first line kept by a drop) go this much at a time. */
#define SCAN_SIZE (64u << 10)

/* The file system's page: holes are punched in whole pages. */
#define PAGE 4096u

struct chunk {
    struct chunk *next;
    size_t len, cap;
    uint64_t lines;
    char data[];
};

/* A place in the file: its offset, and the number of lines before it since the open. */
struct pos {
    uint64_t off, line;
};

enum slot { SLOT_FREE, SLOT_PREPARING, SLOT_READY, SLOT_OUT };

struct batch {
    struct gr_spool_batch pub; /* first: what the owner is given, cast back on done/retry */
    struct pos start, end;
    enum slot state;
    char *buf; /* batch_max bytes */
};

/* The header's first bytes, little-endian; the rest of its GR_SPOOL_HEADER_SIZE is zeros.
 * Updated with one small pwrite(2) that stays within the first sector. */
struct header {
    char magic[8];
    uint32_t version;
    uint32_t data_off; /* GR_SPOOL_HEADER_SIZE: where lines begin */
    uint64_t committed;
    /* Nonzero while a rewind is being finished: the file ends here (see rewind()). */
    uint64_t rewound_end;
};

/* The thread's kinds of I/O: an episode of failures of one kind ends with a success of
 * that kind (reads and the header's small write may well work while lines cannot be
 * written, on a full disk). */
enum io { IO_OK, IO_WRITE, IO_READ, IO_HEADER, IO_SYNC, IO_TRUNCATE };

static const char *const io_names[] = {
    [IO_OK] = "",
    [IO_WRITE] = "write",
    [IO_READ] = "read",
    [IO_HEADER] = "header write",
    [IO_SYNC] = "fdatasync",
    [IO_TRUNCATE] = "truncate",
};

struct gr_spool {
    /* Set at open, then read-only. */
    uv_loop_t *loop;
    struct gr_spool_options o;
    char *name; /* for logs: the path, or "(memory)" */
    int fd;
    size_t batch_max;

    /* The loop's. */
    struct chunk *cur; /* appends not yet handed over */
    uv_timer_t flush;  /* hands cur over GR_SPOOL_FLUSH_MS after its first append */
    uv_async_t async;  /* the thread has news: a batch, a finished sync, its exit */
    uint64_t appended_bytes, appended_lines, refused_lines;
    uint64_t written_seen; /* written_bytes as last read: the hand-off bound without a lock */
    void (*sync_cb)(void *arg, int status);
    void *sync_arg;
    uint64_t sync_target;
    bool closing, joined;
    int open_handles;
    gr_stopped_fn stopped;
    void *stopped_arg;

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* the thread waits on it */

    /* Shared: under mu. */
    struct chunk *handoff, **handoff_tail;
    uint64_t written_bytes, written_lines; /* since open, whole chunks */
    struct pos committed, read, end;
    uint64_t gen; /* bumped when read is moved back: a batch read meanwhile is stale */
    struct batch slots[2];
    struct batch *ready, *out;
    bool want; /* take() said NULL: call `ready` when a batch is */
    uint64_t dropped_lines;
    bool disk_error;
    uint64_t sync_req, sync_done;
    int sync_status;
    bool go, abort, stopping, exited;

    /* The thread's. */
    enum io bad;            /* what failed, in a disk error episode; IO_OK: none */
    bool dirty;             /* written since the last fdatasync */
    bool punch_unsupported; /* logged once */
    bool punch_failed;      /* the last punch failed otherwise (logged once) */
    uint64_t hdr_committed; /* the committed offset in the header as last written */
    uint64_t synced;        /* ...as of the last fdatasync */
    uint64_t punched;       /* holes punched up to here */
    uint64_t rewound_end;   /* a rewind passed its commit point and is not finished */
    /* After a failed read, no read before this; after any other failed I/O, no write: on
     * a full disk, batches still go to PostgreSQL (and draining frees space). */
    int64_t retry_read_ms, retry_write_ms;
    int64_t next_sync_ms;
    int64_t drop_logged_ms;
    uint64_t drop_logged;
    char *scan; /* SCAN_SIZE */
};

static int64_t now_ms(void)
{
    return gr_monotonic_ns() / 1000000;
}

static void lock(struct gr_spool *s)
{
    pthread_mutex_lock(&s->mu);
}

static void unlock(struct gr_spool *s)
{
    pthread_mutex_unlock(&s->mu);
}

static uint64_t count_lines(const char *p, size_t len)
{
    uint64_t n = 0;
    const char *end = p + len;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

/* 0, or a negative errno; a file shorter than asked is -EIO (it cannot be: end is ours). */
static int pread_all(int fd, char *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int pwrite_all(int fd, const char *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int write_header(int fd, uint64_t committed, uint64_t rewound_end)
{
    struct header h = {.version = htole32(GR_SPOOL_VERSION),
                       .data_off = htole32(GR_SPOOL_HEADER_SIZE),
                       .committed = htole64(committed),
                       .rewound_end = htole64(rewound_end)};
    memcpy(h.magic, GR_SPOOL_MAGIC, sizeof(h.magic));
    return pwrite_all(fd, (const char *)&h, sizeof(h), 0);
}

/*
 * The first line start at or after target (> from.off), and how many lines lie before it:
 * the lines a drop gives up, or (target from.off + 1) the end of one line. Reads the file;
 * the lock is not held.
 */
static int line_start_after(struct gr_spool *s, struct pos from, uint64_t target, struct pos *to)
{
    uint64_t off = from.off, lines = from.line;
    for (;;) {
        ssize_t n = pread(s->fd, s->scan, SCAN_SIZE, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        /* A line starts after each '\n': the one wanted ends at or after target - 1. */
        size_t skip = off >= target - 1 ? 0 : (size_t)(target - 1 - off);
        if (skip >= (size_t)n) {
            lines += count_lines(s->scan, (size_t)n);
        } else {
            lines += count_lines(s->scan, skip);
            const char *nl = memchr(s->scan + skip, '\n', (size_t)n - skip);
            if (nl != NULL) {
                *to = (struct pos){off + (uint64_t)(nl - s->scan) + 1, lines + 1};
                return 0;
            }
        }
        off += (uint64_t)n;
    }
}

/* How an I/O of the thread went: a failure starts an episode (logged once, tried again
 * after GR_SPOOL_RETRY_MS), a success of the kind that failed ends it. The lock is not
 * held. */
static void note_io(struct gr_spool *s, int err, enum io what)
{
    if (err < 0) {
        *(what == IO_READ ? &s->retry_read_ms : &s->retry_write_ms) = now_ms() + GR_SPOOL_RETRY_MS;
        if (s->bad == IO_OK)
            gr_error("archive: spool %s: %s: %s; positions wait in memory (up to %u MiB) and "
                     "it is tried again every %d s",
                     s->name, io_names[what], strerror(-err), GR_SPOOL_HANDOFF_MAX >> 20,
                     GR_SPOOL_RETRY_MS / 1000);
        if (s->bad == IO_OK || s->bad == what)
            s->bad = what;
    } else if (s->bad == what) {
        gr_notice("archive: spool %s: the disk works again", s->name);
        s->bad = IO_OK;
    }
}

/* Writes the hand-off list at end; what fails goes back to its head. Lock held. */
static int write_handoff(struct gr_spool *s)
{
    struct chunk *c = s->handoff;
    uint64_t off = s->end.off, lines = 0;
    int err = 0;
    s->handoff = NULL;
    s->handoff_tail = &s->handoff;
    unlock(s);
    while (c != NULL) {
        /* On failure end stays where it was: the retry writes the whole chunk there again,
         * over whatever part of it made it. */
        if ((err = pwrite_all(s->fd, c->data, c->len, off)) < 0)
            break;
        struct chunk *next = c->next;
        off += c->len;
        lines += c->lines;
        free(c);
        c = next;
    }
    note_io(s, err, IO_WRITE);
    lock(s);
    if (off > s->end.off) {
        s->written_bytes += off - s->end.off;
        s->written_lines += lines;
        s->end = (struct pos){off, s->end.line + lines};
        s->dirty = true;
    }
    if (c != NULL) {
        struct chunk *last = c;
        while (last->next != NULL)
            last = last->next;
        last->next = s->handoff;
        if (s->handoff == NULL)
            s->handoff_tail = &last->next;
        s->handoff = c;
    }
    s->disk_error = s->bad != IO_OK;
    return err;
}

/* Drops the oldest lines while the backlog is over max_bytes. Lock held. */
static void enforce_bound(struct gr_spool *s)
{
    uint64_t before = s->dropped_lines;
    while (s->end.off - s->committed.off > s->o.max_bytes) {
        struct pos from = s->committed, to;
        uint64_t target = s->end.off - s->o.max_bytes;
        unlock(s);
        int err = line_start_after(s, from, target, &to);
        note_io(s, err, IO_READ);
        lock(s);
        s->disk_error = s->bad != IO_OK;
        if (err < 0)
            break;
        if (s->committed.off >= to.off)
            continue; /* a done() got there meanwhile */
        s->dropped_lines += to.line - s->committed.line;
        s->committed = to;
        /* A ready batch that begins before is read again from `to`, so that what was
         * dropped is not also delivered; a batch out is let be (done() copes). */
        if (s->ready != NULL && s->ready->start.off < to.off) {
            s->ready->state = SLOT_FREE;
            s->ready = NULL;
            s->read = to;
        } else if (s->read.off < to.off) {
            s->read = to;
        }
        s->gen++;
    }
    if (s->dropped_lines == before)
        return;
    int64_t now = now_ms();
    if (now - s->drop_logged_ms < GR_SPOOL_DROP_LOG_MS && s->drop_logged_ms != 0)
        return;
    uint64_t total = s->dropped_lines;
    s->drop_logged_ms = now;
    unlock(s);
    gr_warn("archive: spool %s: over archive_spool_max (%" PRIu64 " bytes): the oldest "
            "positions are dropped, %" PRIu64 " so far",
            s->name, s->o.max_bytes, total);
    lock(s);
}

/* Reads the next batch from read into a free slot. Lock held; read < end, no batch ready. */
static void prepare(struct gr_spool *s)
{
    struct batch *b = s->slots[0].state == SLOT_FREE ? &s->slots[0] : &s->slots[1];
    assert(b->state == SLOT_FREE);
    struct pos from = s->read;
    uint64_t gen = s->gen;
    size_t want =
        s->end.off - from.off < s->batch_max ? (size_t)(s->end.off - from.off) : s->batch_max;
    b->state = SLOT_PREPARING;
    unlock(s);
    int err = pread_all(s->fd, b->buf, want, from.off);
    size_t len = 0;
    uint64_t lines = 0;
    struct pos skip_to = from;
    if (err == 0) {
        const char *nl = memrchr(b->buf, '\n', want);
        if (nl != NULL) {
            len = (size_t)(nl - b->buf) + 1;
            lines = count_lines(b->buf, len);
        } else {
            /* One line longer than a batch (not one of row.c's): it cannot be sent. */
            err = line_start_after(s, from, from.off + 1, &skip_to);
        }
    }
    note_io(s, err, IO_READ);
    lock(s);
    s->disk_error = s->bad != IO_OK;
    if (err < 0 || gen != s->gen) {
        b->state = SLOT_FREE; /* retry() or a drop moved read meanwhile */
        return;
    }
    if (len == 0) {
        b->state = SLOT_FREE;
        s->read = skip_to;
        s->dropped_lines++;
        unlock(s);
        gr_warn("archive: spool %s: a line of %" PRIu64 " bytes, longer than a batch, dropped",
                s->name, skip_to.off - from.off);
        lock(s);
        return;
    }
    b->pub = (struct gr_spool_batch){b->buf, len, lines};
    b->start = from;
    b->end = (struct pos){from.off + len, from.line + lines};
    b->state = SLOT_READY;
    s->ready = b;
    s->read = b->end;
    if (s->want)
        uv_async_send(&s->async);
}

/* Writes the committed offset into the header. Lock held. */
static void persist_header(struct gr_spool *s)
{
    uint64_t committed = s->committed.off, rewound_end = s->rewound_end;
    unlock(s);
    int err = write_header(s->fd, committed, rewound_end);
    note_io(s, err, IO_HEADER);
    lock(s);
    s->disk_error = s->bad != IO_OK;
    if (err == 0) {
        s->hdr_committed = committed;
        s->dirty = true;
    }
}

static int sync_file(int fd)
{
    return fdatasync(fd) < 0 ? -errno : 0;
}

/* A drained file back to its header, for the power-loss order in the comment at the top.
 * Lock held; nothing is out, ready or unwritten in the file past committed. */
static void truncate_drained(struct gr_spool *s)
{
    unlock(s);
    int err = ftruncate(s->fd, GR_SPOOL_HEADER_SIZE) < 0 ? -errno : 0;
    bool truncated = err == 0;
    if (err == 0)
        err = write_header(s->fd, GR_SPOOL_HEADER_SIZE, 0);
    if (err == 0)
        err = sync_file(s->fd);
    note_io(s, err, IO_TRUNCATE);
    lock(s);
    s->disk_error = s->bad != IO_OK;
    if (!truncated)
        return;
    struct pos start = {GR_SPOOL_HEADER_SIZE, s->end.line};
    s->committed = s->read = s->end = start;
    s->gen++;
    s->punched = s->synced = GR_SPOOL_HEADER_SIZE; /* nothing to punch in the new offsets */
    if (err == 0)
        s->hdr_committed = GR_SPOOL_HEADER_SIZE;
}

/* The committed offset as an fdatasync made it durable, and never past the one in memory:
 * after a failed header write the durable one may be of the offsets before a truncation. */
static uint64_t durable_committed(const struct gr_spool *s)
{
    return s->synced < s->committed.off ? s->synced : s->committed.off;
}

/* The whole pages below the durable committed offset. */
static uint64_t punchable(const struct gr_spool *s)
{
    return durable_committed(s) / PAGE * PAGE;
}

/* Frees the pages below the durable committed offset. Lock held. */
static void punch(struct gr_spool *s)
{
    uint64_t from = s->punched, to = punchable(s);
    unlock(s);
    int err = fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from,
                        (off_t)(to - from)) < 0
                  ? -errno
                  : 0;
    if (err == -EOPNOTSUPP || err == -ENOSYS) {
        gr_warn("archive: spool %s: the file system cannot punch holes (%s): the disk space "
                "of archived positions is freed only when the file is cut (all archived, or "
                "a rewind)",
                s->name, strerror(-err));
    } else if (err < 0 && !s->punch_failed) {
        gr_warn("archive: spool %s: punching a hole: %s; tried again every %d s", s->name,
                strerror(-err), GR_SPOOL_SYNC_MS / 1000);
    }
    lock(s);
    s->punch_failed = err < 0;
    if (err == 0)
        s->punched = to;
    else if (err == -EOPNOTSUPP || err == -ENOSYS)
        s->punch_unsupported = true;
}

/* The end of a rewind: the old copy cut off, the header cleared and made durable. Until then
 * no line is written (the next open would cut it with the old copy). Lock held. */
static void finish_rewind(struct gr_spool *s)
{
    uint64_t end = s->rewound_end, committed = s->committed.off;
    unlock(s);
    int err = ftruncate(s->fd, (off_t)end) < 0 ? -errno : 0;
    if (err == 0)
        err = write_header(s->fd, committed, 0);
    if (err == 0)
        err = sync_file(s->fd);
    note_io(s, err, IO_TRUNCATE);
    lock(s);
    s->disk_error = s->bad != IO_OK;
    if (err == 0) {
        s->rewound_end = 0;
        s->hdr_committed = s->synced = committed;
    }
}

/* Where p lands when the lines from `from` on move to the header's end. What lay before
 * committed (the first lines of a batch out, taken by a drop) lands on committed. */
static void shift(struct pos *p, uint64_t from, struct pos committed)
{
    if (p->off < committed.off)
        *p = committed;
    p->off -= from - GR_SPOOL_HEADER_SIZE;
}

/*
 * A small backlog far into the file is copied back to just after the header, and the file
 * cut after it: under steady load the spool is seldom drained at the moment the thread
 * looks (measured: never, at 15 MB/s), and the file's size would grow for ever (holes keep
 * its blocks few, but ext4 ends files at 16 TiB). Lock held.
 *
 * What is copied begins at the durable committed offset (the one in the header that an
 * fdatasync made durable; lines after it that were committed since come along and are
 * committed in their new place), and goes below it, over lines archived (or holes): so
 * nothing the header points at changes until the commit point, a header saying the lines
 * begin after it and the file ends at rewound_end. An open that finds rewound_end set cuts
 * the file there (the old copy); the header is cleared, and made durable, before any new
 * line is written.
 *
 * The loop may take, commit or retry meanwhile: all it can move stays in [from, end) in the
 * old offsets, and is shifted once the lock is held again. end does not move: only this
 * thread writes.
 */
static void rewind_file(struct gr_spool *s, uint64_t from)
{
    uint64_t len = s->end.off - from, done = 0;
    uint64_t new_end = GR_SPOOL_HEADER_SIZE + len;
    assert(new_end <= from);
    unlock(s);
    int err = 0;
    while (err == 0 && done < len) {
        size_t n = len - done < SCAN_SIZE ? (size_t)(len - done) : SCAN_SIZE;
        err = pread_all(s->fd, s->scan, n, from + done);
        if (err == 0)
            err = pwrite_all(s->fd, s->scan, n, GR_SPOOL_HEADER_SIZE + done);
        done += n;
    }
    if (err == 0)
        err = sync_file(s->fd);
    if (err == 0)
        err = write_header(s->fd, GR_SPOOL_HEADER_SIZE, new_end);
    if (err == 0)
        err = sync_file(s->fd);
    note_io(s, err, IO_TRUNCATE);
    lock(s);
    s->disk_error = s->bad != IO_OK;
    if (err < 0)
        return; /* before the commit point: as if not tried */
    struct pos committed = s->committed;
    s->rewound_end = new_end;
    shift(&s->committed, from, committed);
    shift(&s->read, from, committed);
    shift(&s->end, from, committed);
    for (int i = 0; i < 2; i++) {
        if (s->slots[i].state == SLOT_READY || s->slots[i].state == SLOT_OUT) {
            shift(&s->slots[i].start, from, committed);
            shift(&s->slots[i].end, from, committed);
        }
    }
    s->hdr_committed = s->synced = GR_SPOOL_HEADER_SIZE;
    s->punched = GR_SPOOL_HEADER_SIZE;
    s->gen++;
    finish_rewind(s);
}

/* fdatasync if anything was written, then compaction. Lock held. */
static int sync_and_compact(struct gr_spool *s)
{
    uint64_t hdr = s->hdr_committed;
    int err = 0;
    s->next_sync_ms = now_ms() + GR_SPOOL_SYNC_MS; /* a failure too waits for the next */
    if (s->dirty) {
        s->dirty = false;
        unlock(s);
        err = sync_file(s->fd);
        note_io(s, err, IO_SYNC);
        lock(s);
        s->disk_error = s->bad != IO_OK;
        if (err < 0) {
            s->dirty = true;
            return err;
        }
    }
    s->synced = hdr;
    /* Both cut the file at its end: not while a rewind is being finished. */
    uint64_t durable = durable_committed(s);
    if (s->rewound_end != 0) {
        /* finish_rewind() first */
    } else if (s->committed.off == s->end.off && s->end.off > GR_SPOOL_HEADER_SIZE &&
               s->out == NULL) {
        assert(s->ready == NULL);
        truncate_drained(s);
    } else if (durable >= GR_SPOOL_HEADER_SIZE + GR_SPOOL_REWIND_MIN &&
               s->end.off - durable <= GR_SPOOL_REWIND_COPY_MAX) {
        rewind_file(s, durable);
    } else if (!s->punch_unsupported && punchable(s) >= s->punched + GR_SPOOL_PUNCH_MIN) {
        punch(s);
    }
    return 0;
}

/* Counts the backlog's lines found at open (for the queued gauge and the drop count), and
 * retries until it can. Lock not held; nothing else touches the positions yet. */
static void count_backlog(struct gr_spool *s)
{
    uint64_t off = s->committed.off, lines = 0;
    while (off < s->end.off) {
        lock(s);
        bool stop = s->stopping; /* a close need not wait for a long count */
        unlock(s);
        if (stop)
            break;
        size_t n = s->end.off - off < SCAN_SIZE ? (size_t)(s->end.off - off) : SCAN_SIZE;
        int err = pread_all(s->fd, s->scan, n, off);
        note_io(s, err, IO_READ);
        if (err < 0) {
            struct timespec ts = {GR_SPOOL_RETRY_MS / 1000, GR_SPOOL_RETRY_MS % 1000 * 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        lines += count_lines(s->scan, n);
        off += n;
    }
    lock(s);
    s->end.line = lines;
    s->disk_error = s->bad != IO_OK;
    unlock(s);
}

/* Whether the thread has something to do now. Lock held. */
static bool has_work(const struct gr_spool *s, int64_t now)
{
    bool w = now >= s->retry_write_ms, r = now >= s->retry_read_ms;
    return s->stopping || s->sync_req != s->sync_done || now >= s->next_sync_ms ||
           (w &&
            (s->handoff != NULL || s->committed.off != s->hdr_committed || s->rewound_end != 0)) ||
           (r && (s->end.off - s->committed.off > s->o.max_bytes ||
                  (s->ready == NULL && s->read.off < s->end.off)));
}

static void wait_until(struct gr_spool *s, int64_t deadline_ms)
{
    /* The monotonic clock (the condition variable is made with it, see open). */
    struct timespec ts;
    int64_t ns = deadline_ms * 1000000;
    ts.tv_sec = (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    pthread_cond_timedwait(&s->wake, &s->mu, &ts);
}

static void *run(void *arg)
{
    struct gr_spool *s = arg;
    lock(s);
    while (!s->go && !s->abort)
        pthread_cond_wait(&s->wake, &s->mu);
    if (s->abort) {
        unlock(s);
        return NULL;
    }
    unlock(s);
    count_backlog(s);
    lock(s);
    s->next_sync_ms = now_ms() + GR_SPOOL_SYNC_MS;
    for (;;) {
        /* What close and sync handed over came before they set these: the writes below,
         * under the same hold of the lock, take all of it. */
        bool stop = s->stopping;
        uint64_t req = s->sync_req;
        bool syncing = req != s->sync_done;
        int64_t now = now_ms();
        bool w = now >= s->retry_write_ms || stop || syncing;
        bool r = now >= s->retry_read_ms || stop || syncing;
        int err = 0;
        if (s->rewound_end != 0 && w)
            finish_rewind(s);
        if (s->handoff != NULL && s->rewound_end != 0)
            err = -EIO; /* held until the rewind is finished */
        else if (s->handoff != NULL && w)
            err = write_handoff(s);
        if (r)
            enforce_bound(s);
        if (s->committed.off != s->hdr_committed && w)
            persist_header(s);
        if (r && !stop && s->ready == NULL && s->read.off < s->end.off)
            prepare(s);
        if (stop || syncing || now_ms() >= s->next_sync_ms) {
            int serr = sync_and_compact(s);
            if (syncing) {
                s->sync_done = req;
                s->sync_status = err < 0 ? err : serr;
                uv_async_send(&s->async);
            }
        }
        if (stop)
            break;
        now = now_ms();
        if (!has_work(s, now)) {
            int64_t deadline = s->next_sync_ms;
            if (s->retry_write_ms > now && s->retry_write_ms < deadline)
                deadline = s->retry_write_ms;
            if (s->retry_read_ms > now && s->retry_read_ms < deadline)
                deadline = s->retry_read_ms;
            wait_until(s, deadline);
        }
    }
    uint64_t lost = 0;
    while (s->handoff != NULL) {
        struct chunk *c = s->handoff;
        s->handoff = c->next;
        lost += c->lines;
        free(c);
    }
    s->handoff_tail = &s->handoff;
    s->exited = true;
    uv_async_send(&s->async);
    unlock(s);
    if (lost > 0)
        gr_error("archive: spool %s: %" PRIu64 " positions could not be written at exit: lost",
                 s->name, lost);
    return NULL;
}

/* Loop side. */

static void handoff(struct gr_spool *s)
{
    struct chunk *c = s->cur;
    if (c == NULL)
        return;
    s->cur = NULL;
    lock(s);
    *s->handoff_tail = c;
    s->handoff_tail = &c->next;
    s->written_seen = s->written_bytes;
    pthread_cond_signal(&s->wake);
    unlock(s);
}

static void on_flush(uv_timer_t *t)
{
    handoff(t->data);
}

static void handle_closed(uv_handle_t *h)
{
    struct gr_spool *s = h->data;
    if (--s->open_handles == 0)
        s->stopped(s->stopped_arg);
}

static void on_async(uv_async_t *h)
{
    struct gr_spool *s = h->data;
    lock(s);
    bool call_ready = !s->closing && s->want && s->ready != NULL && s->out == NULL;
    if (call_ready)
        s->want = false;
    bool synced = s->sync_cb != NULL && s->sync_done >= s->sync_target;
    int status = s->sync_status;
    bool exited = s->exited;
    unlock(s);
    if (synced && !s->closing) {
        void (*cb)(void *, int) = s->sync_cb;
        s->sync_cb = NULL;
        uv_unref((uv_handle_t *)&s->async);
        cb(s->sync_arg, status);
    }
    if (call_ready)
        s->o.ready(s->o.ctx);
    if (exited && !s->joined) {
        /* The thread has done its last store; it is returning, not waiting. */
        pthread_join(s->thread, NULL);
        s->joined = true;
        s->open_handles = 2;
        uv_close((uv_handle_t *)&s->async, handle_closed);
        uv_close((uv_handle_t *)&s->flush, handle_closed);
    }
}

int gr_spool_append(struct gr_spool *s, const char *lines, size_t len, uint64_t n_lines)
{
    assert(!s->closing);
    if (len == 0 || lines[len - 1] != '\n')
        return -EINVAL;
    if (s->appended_bytes - s->written_seen + len > GR_SPOOL_HANDOFF_MAX) {
        lock(s);
        s->written_seen = s->written_bytes;
        unlock(s);
        if (s->appended_bytes - s->written_seen + len > GR_SPOOL_HANDOFF_MAX) {
            s->refused_lines += n_lines;
            return -ENOBUFS;
        }
    }
    if (s->cur != NULL && s->cur->cap - s->cur->len < len)
        handoff(s);
    if (s->cur == NULL) {
        size_t cap = len > CHUNK_SIZE ? len : CHUNK_SIZE;
        struct chunk *c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return -ENOMEM;
        *c = (struct chunk){.cap = cap};
        s->cur = c;
    }
    memcpy(s->cur->data + s->cur->len, lines, len);
    s->cur->len += len;
    s->cur->lines += n_lines;
    s->appended_bytes += len;
    s->appended_lines += n_lines;
    if (!uv_is_active((uv_handle_t *)&s->flush))
        uv_timer_start(&s->flush, on_flush, GR_SPOOL_FLUSH_MS, 0);
    return 0;
}

const struct gr_spool_batch *gr_spool_take(struct gr_spool *s)
{
    struct batch *b = NULL;
    assert(!s->closing);
    lock(s);
    if (s->out == NULL && s->ready != NULL) {
        b = s->out = s->ready;
        s->ready = NULL;
        b->state = SLOT_OUT;
        pthread_cond_signal(&s->wake); /* read the next one ahead */
    } else if (s->out == NULL) {
        s->want = true;
    }
    unlock(s);
    return b != NULL ? &b->pub : NULL;
}

void gr_spool_done(struct gr_spool *s, const struct gr_spool_batch *pb)
{
    struct batch *b = (struct batch *)pb;
    lock(s);
    assert(b == s->out);
    /* A drop may have gone past it meanwhile: committed never goes back. */
    if (b->end.off > s->committed.off)
        s->committed = b->end;
    b->state = SLOT_FREE;
    s->out = NULL;
    pthread_cond_signal(&s->wake);
    unlock(s);
}

void gr_spool_retry(struct gr_spool *s, const struct gr_spool_batch *pb)
{
    struct batch *b = (struct batch *)pb;
    lock(s);
    assert(b == s->out);
    b->state = SLOT_FREE;
    s->out = NULL;
    if (s->ready != NULL) { /* read after b: it comes after b again */
        s->ready->state = SLOT_FREE;
        s->ready = NULL;
    }
    s->read = b->start.off >= s->committed.off ? b->start : s->committed;
    s->gen++;
    pthread_cond_signal(&s->wake);
    unlock(s);
}

int gr_spool_sync(struct gr_spool *s, void (*done)(void *arg, int status), void *arg)
{
    if (s->closing)
        return -ECANCELED;
    if (s->sync_cb != NULL)
        return -EBUSY;
    uv_timer_stop(&s->flush);
    handoff(s);
    s->sync_cb = done;
    s->sync_arg = arg;
    uv_ref((uv_handle_t *)&s->async); /* the loop must wait for the answer */
    lock(s);
    s->sync_target = ++s->sync_req;
    pthread_cond_signal(&s->wake);
    unlock(s);
    return 0;
}

void gr_spool_stats(struct gr_spool *s, struct gr_spool_stats *out)
{
    lock(s);
    *out = (struct gr_spool_stats){
        .queued_lines = s->appended_lines - s->written_lines + s->end.line - s->committed.line,
        .backlog_bytes = s->end.off - s->committed.off,
        .dropped_lines = s->dropped_lines,
        .refused_lines = s->refused_lines,
        .written_bytes = s->written_bytes,
        .disk_error = s->disk_error,
    };
    unlock(s);
}

void gr_spool_close(struct gr_spool *s, gr_stopped_fn done, void *arg)
{
    if (s->closing)
        return;
    s->closing = true;
    s->stopped = done;
    s->stopped_arg = arg;
    uv_timer_stop(&s->flush);
    handoff(s);
    s->sync_cb = NULL; /* stop.h: nothing but done from now on */
    uv_ref((uv_handle_t *)&s->async);
    lock(s);
    s->stopping = true;
    pthread_cond_signal(&s->wake);
    unlock(s);
}

void gr_spool_free(struct gr_spool *s)
{
    if (s == NULL)
        return;
    while (s->handoff != NULL) {
        struct chunk *c = s->handoff;
        s->handoff = c->next;
        free(c);
    }
    free(s->cur);
    for (int i = 0; i < 2; i++)
        free(s->slots[i].buf);
    free(s->scan);
    free(s->name);
    if (s->fd >= 0)
        close(s->fd);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Open: the file, its header, its torn tail. */

static int fail(char *err, size_t errlen, int code, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(char *err, size_t errlen, int code, const char *name, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(err, errlen, "%s: ", name);
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return code;
}

/* A new spool: the header, made durable before any line goes after it. */
static int init_file(struct gr_spool *s)
{
    char *page = calloc(1, GR_SPOOL_HEADER_SIZE);
    if (page == NULL)
        return -ENOMEM;
    int err = pwrite_all(s->fd, page, GR_SPOOL_HEADER_SIZE, 0);
    free(page);
    if (err == 0)
        err = write_header(s->fd, GR_SPOOL_HEADER_SIZE, 0);
    if (err == 0 && ftruncate(s->fd, GR_SPOOL_HEADER_SIZE) < 0)
        err = -errno;
    if (err == 0)
        err = sync_file(s->fd);
    s->committed = s->read = s->end = (struct pos){GR_SPOOL_HEADER_SIZE, 0};
    s->hdr_committed = GR_SPOOL_HEADER_SIZE;
    return err;
}

/* Cuts what follows the last '\n' after committed: the part of a chunk a kill interrupted. */
static int cut_torn_tail(struct gr_spool *s)
{
    uint64_t off = s->end.off, keep = s->committed.off;
    while (off > s->committed.off) {
        size_t n =
            off - s->committed.off < SCAN_SIZE ? (size_t)(off - s->committed.off) : SCAN_SIZE;
        int err = pread_all(s->fd, s->scan, n, off - n);
        if (err < 0)
            return err;
        const char *nl = memrchr(s->scan, '\n', n);
        if (nl != NULL) {
            keep = off - n + (uint64_t)(nl - s->scan) + 1;
            break;
        }
        off -= n;
    }
    if (keep == s->end.off)
        return 0;
    if (ftruncate(s->fd, (off_t)keep) < 0)
        return -errno;
    gr_notice("archive: spool %s: cut a torn last line of %" PRIu64 " bytes", s->name,
              s->end.off - keep);
    s->end.off = keep;
    return 0;
}

static int load(struct gr_spool *s, char *err, size_t errlen)
{
    struct stat st;
    struct header h;
    if (fstat(s->fd, &st) < 0)
        return fail(err, errlen, -errno, s->name, "%s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return fail(err, errlen, -EINVAL, s->name, "is not a regular file");
    uint64_t size = (uint64_t)st.st_size;
    int rc = 0;
    if (size >= sizeof(h.magic) && (rc = pread_all(s->fd, (char *)&h, sizeof(h.magic), 0)) < 0)
        return fail(err, errlen, rc, s->name, "%s", strerror(-rc));
    if (size > 0 && (size < sizeof(h.magic) || memcmp(h.magic, GR_SPOOL_MAGIC, 8) != 0))
        return fail(err, errlen, -EINVAL, s->name,
                    "is not a gpsrelay spool (it does not begin with " GR_SPOOL_MAGIC
                    "); left as it is: remove it or set another archive_spool");
    /* Empty, or a header cut short when the file was made: ours, with nothing in it. */
    if (size < GR_SPOOL_HEADER_SIZE) {
        if ((rc = init_file(s)) < 0)
            return fail(err, errlen, rc, s->name, "%s", strerror(-rc));
        return 0;
    }
    if ((rc = pread_all(s->fd, (char *)&h, sizeof(h), 0)) < 0)
        return fail(err, errlen, rc, s->name, "%s", strerror(-rc));
    if (le32toh(h.version) != GR_SPOOL_VERSION || le32toh(h.data_off) != GR_SPOOL_HEADER_SIZE)
        return fail(err, errlen, -EINVAL, s->name,
                    "a spool of version %" PRIu32 ", this gpsrelayd reads version %d; left as "
                    "it is",
                    le32toh(h.version), GR_SPOOL_VERSION);
    uint64_t committed = le64toh(h.committed);
    if (committed < GR_SPOOL_HEADER_SIZE)
        return fail(err, errlen, -EINVAL, s->name,
                    "the header says lines are archived up to %" PRIu64
                    ", inside the header; left as it is",
                    committed);
    s->hdr_committed = committed;
    /* A rewind passed its commit point: what lies after rewound_end is the old copy. */
    uint64_t rewound_end = le64toh(h.rewound_end);
    if (rewound_end != 0) {
        if (rewound_end < GR_SPOOL_HEADER_SIZE || rewound_end > size)
            return fail(err, errlen, -EINVAL, s->name,
                        "the header says the file ends at %" PRIu64 ", it has %" PRIu64
                        " bytes; left as it is",
                        rewound_end, size);
        if (ftruncate(s->fd, (off_t)rewound_end) < 0 ||
            (rc = write_header(s->fd, committed, 0)) < 0 || (rc = sync_file(s->fd)) < 0)
            return fail(err, errlen, rc < 0 ? rc : -errno, s->name, "finishing a rewind: %s",
                        strerror(rc < 0 ? -rc : errno));
        gr_notice("archive: spool %s: finished a rewind (the old copy of %" PRIu64 " bytes cut)",
                  s->name, size - rewound_end);
        size = rewound_end;
    }
    /* Past the end: truncated when drained, the header not yet rewritten. */
    if (committed > size)
        committed = size;
    s->committed = s->read = (struct pos){committed, 0};
    s->end = (struct pos){size, 0};
    if ((rc = cut_torn_tail(s)) < 0)
        return fail(err, errlen, rc, s->name, "%s", strerror(-rc));
    return 0;
}

int gr_spool_open(uv_loop_t *loop, const struct gr_spool_options *o, struct gr_spool **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    const char *name = o->path != NULL ? o->path : "(memory)";
    size_t batch_max = o->batch_max != 0 ? o->batch_max : GR_SPOOL_BATCH_MAX;
    if (o->max_bytes == 0 || batch_max < GR_SPOOL_BATCH_MIN || o->ready == NULL)
        return fail(err, errlen, -EINVAL, name, "bad spool options");
    struct gr_spool *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return fail(err, errlen, -ENOMEM, name, "out of memory");
    s->fd = -1;
    s->loop = loop;
    s->o = *o;
    s->o.path = NULL; /* borrowed for the open only */
    s->batch_max = batch_max;
    s->handoff_tail = &s->handoff;
    s->want = true; /* the backlog found at open is announced */
    int rc = -ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    if ((s->name = strdup(name)) == NULL || (s->scan = malloc(SCAN_SIZE)) == NULL ||
        (s->slots[0].buf = malloc(batch_max)) == NULL ||
        (s->slots[1].buf = malloc(batch_max)) == NULL) {
        fail(err, errlen, rc, name, "out of memory");
        goto fail_free;
    }
    if (o->path != NULL)
        s->fd = open(o->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    else
        s->fd = memfd_create("gpsrelay-spool", MFD_CLOEXEC);
    if (s->fd < 0) {
        rc = fail(err, errlen, -errno, name, "%s", strerror(errno));
        goto fail_free;
    }
    /* Two daemons on one spool would each deliver and truncate the other's lines. */
    if (flock(s->fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK
                 ? fail(err, errlen, -EBUSY, name, "in use by another process (locked)")
                 : fail(err, errlen, -errno, name, "flock: %s", strerror(errno));
        goto fail_free;
    }
    if ((rc = load(s, err, errlen)) < 0)
        goto fail_free;
    s->synced = s->hdr_committed;
    s->punched = GR_SPOOL_HEADER_SIZE;
    if ((rc = -pthread_create(&s->thread, NULL, run, s)) < 0) {
        fail(err, errlen, rc, name, "cannot start its thread: %s", strerror(-rc));
        goto fail_free;
    }
    if ((rc = uv_async_init(loop, &s->async, on_async)) < 0) {
        fail(err, errlen, rc, name, "%s", uv_strerror(rc));
        goto fail_thread;
    }
    s->async.data = s;
    uv_unref((uv_handle_t *)&s->async); /* referenced only while an answer is awaited */
    uv_timer_init(loop, &s->flush);
    s->flush.data = s;
    lock(s);
    s->go = true;
    pthread_cond_signal(&s->wake);
    unlock(s);
    *out = s;
    return 0;

fail_thread:
    lock(s);
    s->abort = true;
    pthread_cond_signal(&s->wake);
    unlock(s);
    pthread_join(s->thread, NULL);
fail_free:
    gr_spool_free(s);
    return rc;
}
