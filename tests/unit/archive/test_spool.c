/*
 * test_spool.c - the archive's spool on a real libuv loop and real files in a fresh
 * directory: lines come back in order, byte for byte, in whole-line batches; a retried
 * batch comes again; a restart (close, open) delivers the backlog oldest first, a batch
 * that was out included; a torn last line is cut; a file that is not a spool, or one held
 * by another process, is refused and left as it was; the bound drops the oldest lines and
 * counts them exactly; a drained file is truncated, a committed stretch punched out (its
 * blocks freed), a small backlog far into the file moved back to its start (a rewind, and
 * one interrupted); the memfd mode; a steady load with retries, cut while it runs; a
 * failing disk (RLIMIT_FSIZE) holds lines, refuses past the hand-off bound, and recovers;
 * and kill -9: of a child that wrote N lines, of one with a batch out, and of one killed
 * at a random moment while appending, each line coming back exactly once.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "gpsrelay/archive_spool.h"

/* Longest a test waits for the spool to answer before it counts a failure. */
#define WAIT_MS 20000

static char dir[4096];

/* What the spool tells the test. */
struct events {
    int ready;
    int synced, sync_status;
    int stopped;
};

static void on_ready(void *ctx)
{
    ((struct events *)ctx)->ready++;
}

static void on_synced(void *arg, int status)
{
    struct events *e = arg;
    e->synced++;
    e->sync_status = status;
}

static void on_stopped(void *arg)
{
    ((struct events *)arg)->stopped++;
}

static void on_guard(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Turns the loop until *flag reaches want, at most WAIT_MS (a failure then). */
static bool wait_for(uv_loop_t *loop, const int *flag, int want)
{
    bool expired = false;
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, on_guard, WAIT_MS, 0);
    while (*flag < want && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    CHECK(!expired);
    return !expired;
}

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static struct gr_spool *open_spool(uv_loop_t *loop, const char *path, uint64_t max, size_t batch,
                                   struct events *e)
{
    struct gr_spool_options o = {
        .path = path, .max_bytes = max, .batch_max = batch, .ready = on_ready, .ctx = e};
    struct gr_spool *s = NULL;
    char err[256] = "";
    int rc = gr_spool_open(loop, &o, &s, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "open: %s\n", err);
    CHECK_INT(rc, 0);
    return s;
}

static int sync_spool(uv_loop_t *loop, struct gr_spool *s, struct events *e)
{
    int want = e->synced + 1;
    CHECK_INT(gr_spool_sync(s, on_synced, e), 0);
    wait_for(loop, &e->synced, want);
    return e->sync_status;
}

static void close_spool(uv_loop_t *loop, struct gr_spool *s, struct events *e)
{
    int want = e->stopped + 1;
    gr_spool_close(s, on_stopped, e);
    gr_spool_close(s, on_stopped, e); /* a second close is a no-op */
    wait_for(loop, &e->stopped, want);
    uv_run(loop, UV_RUN_NOWAIT);
    CHECK_INT(e->stopped, want);
    gr_spool_free(s);
}

/* The next batch, waiting for `ready` if need be. */
static const struct gr_spool_batch *take(uv_loop_t *loop, struct gr_spool *s, struct events *e)
{
    e->ready = 0;
    const struct gr_spool_batch *b = gr_spool_take(s);
    if (b == NULL && wait_for(loop, &e->ready, 1))
        b = gr_spool_take(s);
    CHECK(b != NULL);
    return b;
}

/* Line i: a different length for each of 40 neighbours, like real rows. */
static size_t make_line(char *out, uint64_t i)
{
    static const char pad[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN";
    return (size_t)sprintf(out, "unit-%" PRIu64 "\t%" PRIu64 "\t%.*s\n", i, i * 7919, (int)(i % 40),
                           pad);
}

/* A growing buffer of the lines expected or received. */
struct text {
    char *p;
    size_t len, cap;
};

static void text_add(struct text *t, const char *p, size_t len)
{
    if (t->len + len > t->cap) {
        t->cap = (t->len + len) * 2;
        t->p = realloc(t->p, t->cap);
    }
    memcpy(t->p + t->len, p, len);
    t->len += len;
}

/* Lines [from, to) as one text. */
static void lines_text(struct text *t, uint64_t from, uint64_t to)
{
    char line[128];
    for (uint64_t i = from; i < to; i++)
        text_add(t, line, make_line(line, i));
}

/* Appends lines [from, to) in groups of 1 to 37 lines per call. */
static void append_lines(struct gr_spool *s, uint64_t from, uint64_t to)
{
    char buf[128 * 37];
    uint64_t i = from;
    while (i < to) {
        uint64_t n = 1 + i % 37;
        if (n > to - i)
            n = to - i;
        size_t len = 0;
        for (uint64_t k = 0; k < n; k++)
            len += make_line(buf + len, i + k);
        int rc = gr_spool_append(s, buf, len, n);
        CHECK_INT(rc, 0);
        if (rc < 0)
            return;
        i += n;
    }
}

static uint64_t count_nl(const char *p, size_t len)
{
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += p[i] == '\n';
    return n;
}

/* Takes and commits batches until `lines` lines came, into got; each batch whole lines. */
static void receive(uv_loop_t *loop, struct gr_spool *s, struct events *e, uint64_t lines,
                    size_t batch_max, struct text *got)
{
    uint64_t n = 0;
    while (n < lines) {
        const struct gr_spool_batch *b = take(loop, s, e);
        if (b == NULL)
            return;
        CHECK(b->len > 0 && b->len <= batch_max);
        CHECK(b->data[b->len - 1] == '\n');
        CHECK_INT(b->lines, count_nl(b->data, b->len));
        text_add(got, b->data, b->len);
        n += b->lines;
        gr_spool_done(s, b);
    }
    CHECK_INT(n, lines);
}

/* Nothing more to take: the thread has read all there is, and the queue is empty. */
static void check_empty(uv_loop_t *loop, struct gr_spool *s, struct events *e)
{
    sync_spool(loop, s, e);
    CHECK(gr_spool_take(s) == NULL);
    struct gr_spool_stats st;
    gr_spool_stats(s, &st);
    CHECK_INT(st.queued_lines, 0);
    CHECK_INT(st.backlog_bytes, 0);
}

static void check_text(const struct text *got, const struct text *want)
{
    CHECK_INT(got->len, want->len);
    CHECK(got->len == want->len && memcmp(got->p, want->p, got->len) == 0);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* The header's fields: magic, version and where lines begin (4 bytes each), the committed
 * offset, the end of a rewind (8 bytes each, little-endian). */
#define HDR_COMMITTED   16
#define HDR_REWOUND_END 24

static uint64_t header_field(const char *path, int at)
{
    unsigned char h[32];
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0 && pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h));
    close(fd);
    CHECK(memcmp(h, GR_SPOOL_MAGIC, 8) == 0);
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | h[at + i];
    return v;
}

static uint64_t header_committed(const char *path)
{
    return header_field(path, HDR_COMMITTED);
}

/* Append, take, done: order and bytes; a drained file goes back to its header. */
static void test_order(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200];
    path_of(path, sizeof(path), "order");
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    append_lines(s, 0, 20000);
    struct text want = {0}, got = {0};
    lines_text(&want, 0, 20000);
    receive(&loop, s, &e, 20000, GR_SPOOL_BATCH_MIN, &got);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    struct gr_spool_stats ss;
    gr_spool_stats(s, &ss);
    CHECK_INT(ss.written_bytes, want.len);
    CHECK_INT(ss.dropped_lines, 0);
    CHECK(!ss.disk_error);
    /* Drained: truncated to the header, the reset offset in it. */
    CHECK_INT(file_size(path), GR_SPOOL_HEADER_SIZE);
    CHECK_INT(header_committed(path), GR_SPOOL_HEADER_SIZE);
    /* ...and it goes on from there. */
    got.len = want.len = 0;
    append_lines(s, 20000, 20100);
    lines_text(&want, 20000, 20100);
    receive(&loop, s, &e, 100, GR_SPOOL_BATCH_MIN, &got);
    check_text(&got, &want);
    CHECK_INT(gr_spool_append(s, "no newline", 10, 1), -EINVAL);
    CHECK_INT(gr_spool_append(s, "", 0, 0), -EINVAL);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(want.p);
    free(got.p);
}

/* A retried batch comes again, the same bytes; then the ones after it. */
static void test_retry(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200];
    path_of(path, sizeof(path), "retry");
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    append_lines(s, 0, 5000);
    sync_spool(&loop, s, &e);
    const struct gr_spool_batch *b = take(&loop, s, &e);
    if (b == NULL)
        return;
    CHECK(gr_spool_take(s) == NULL); /* one out at a time */
    struct text first = {0}, want = {0}, got = {0};
    text_add(&first, b->data, b->len);
    uint64_t first_lines = b->lines;
    gr_spool_retry(s, b);
    /* Again and again from its first line: the same lines, and more if more were written
     * since it was read. */
    for (int i = 0; i < 3; i++) {
        b = take(&loop, s, &e);
        if (b == NULL)
            return;
        CHECK(b->lines >= first_lines);
        CHECK(b->len >= first.len && memcmp(b->data, first.p, first.len) == 0);
        if (i < 2)
            gr_spool_retry(s, b);
    }
    text_add(&got, b->data, b->len);
    first_lines = b->lines;
    gr_spool_done(s, b);
    lines_text(&want, 0, 5000);
    receive(&loop, s, &e, 5000 - first_lines, GR_SPOOL_BATCH_MIN, &got);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(first.p);
    free(want.p);
    free(got.p);
}

/* Close and open: the backlog first, oldest first, a batch out at close included; what was
 * done is not delivered again. Close writes what was still in the loop's buffer. */
static void test_restart(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200];
    path_of(path, sizeof(path), "restart");
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    append_lines(s, 0, 8000);
    const struct gr_spool_batch *b = take(&loop, s, &e);
    if (b == NULL)
        return;
    uint64_t done_lines = b->lines;
    gr_spool_done(s, b);
    b = take(&loop, s, &e); /* out at close */
    append_lines(s, 8000, 9000);
    close_spool(&loop, s, &e); /* no sync: close writes */

    s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    struct text want = {0}, got = {0};
    lines_text(&want, done_lines, 9000);
    receive(&loop, s, &e, 9000 - done_lines, GR_SPOOL_BATCH_MIN, &got);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    close_spool(&loop, s, &e);

    /* The backlog's lines are counted at open (the queued gauge). */
    s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    append_lines(s, 0, 1234);
    close_spool(&loop, s, &e);
    s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    sync_spool(&loop, s, &e);
    struct gr_spool_stats st;
    gr_spool_stats(s, &st);
    CHECK_INT(st.queued_lines, 1234);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(want.p);
    free(got.p);
}

/* A tail without '\n' (a kill in the middle of a write) is cut; what follows is whole. */
static void test_torn_tail(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200];
    path_of(path, sizeof(path), "torn");
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    append_lines(s, 0, 3000);
    close_spool(&loop, s, &e);
    off_t whole = file_size(path);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, "unit-3000\t21", 12) == 12);
    close(fd);

    s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    CHECK_INT(file_size(path), whole);
    append_lines(s, 3000, 3500);
    struct text want = {0}, got = {0};
    lines_text(&want, 0, 3500);
    receive(&loop, s, &e, 3500, GR_SPOOL_BATCH_MIN, &got);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(want.p);
    free(got.p);
}

/* Not a spool, another version, a directory, a spool in use: refused, left as they were. */
static void test_refused(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200], err[256];
    struct events e = {0};
    struct gr_spool *s = NULL;
    struct gr_spool_options o = {.max_bytes = 1 << 20, .ready = on_ready, .ctx = &e};

    static const char foreign[] = "device\ttime\nnot a spool at all\n";
    path_of(path, sizeof(path), "foreign");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, foreign, sizeof(foreign) - 1) == (ssize_t)sizeof(foreign) - 1);
    close(fd);
    o.path = path;
    CHECK_INT(gr_spool_open(&loop, &o, &s, err, sizeof(err)), -EINVAL);
    CHECK(s == NULL);
    CHECK(strstr(err, "not a gpsrelay spool") != NULL && strstr(err, path) != NULL);
    char back[64] = "";
    fd = open(path, O_RDONLY);
    CHECK(fd >= 0 && read(fd, back, sizeof(back)) == (ssize_t)sizeof(foreign) - 1);
    close(fd);
    CHECK_STR(back, foreign);

    /* A spool of a later version. */
    path_of(path, sizeof(path), "version2");
    char page[GR_SPOOL_HEADER_SIZE] = GR_SPOOL_MAGIC "\2";
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, page, sizeof(page)) == (ssize_t)sizeof(page));
    close(fd);
    CHECK_INT(gr_spool_open(&loop, &o, &s, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "version 2") != NULL);
    CHECK_INT(file_size(path), GR_SPOOL_HEADER_SIZE);

    o.path = dir;
    CHECK(gr_spool_open(&loop, &o, &s, err, sizeof(err)) < 0);

    /* Held by another spool: -EBUSY. */
    path_of(path, sizeof(path), "busy");
    struct gr_spool *first = open_spool(&loop, path, 1 << 20, 0, &e);
    o.path = path;
    CHECK_INT(gr_spool_open(&loop, &o, &s, err, sizeof(err)), -EBUSY);
    CHECK(strstr(err, "in use") != NULL);
    if (first != NULL)
        close_spool(&loop, first, &e);

    o.path = NULL;
    o.max_bytes = 0;
    CHECK_INT(gr_spool_open(&loop, &o, &s, err, sizeof(err)), -EINVAL);
    o.max_bytes = 1 << 20;
    o.batch_max = GR_SPOOL_BATCH_MIN - 1;
    CHECK_INT(gr_spool_open(&loop, &o, &s, err, sizeof(err)), -EINVAL);
    CHECK_INT(uv_loop_close(&loop), 0);
}

/* Over max_bytes the oldest lines go, just enough, counted exactly; a batch out meanwhile
 * does not move committed back. */
static void test_bound(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200];
    path_of(path, sizeof(path), "bound");
    struct events e = {0};
    const uint64_t max = 1 << 20, total = 60000;
    struct gr_spool *s = open_spool(&loop, path, max, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    /* The newest lines that fit in max: what must be left. */
    char line[128];
    uint64_t kept = 0, bytes = 0;
    for (uint64_t i = total; i-- > 0;) {
        size_t len = make_line(line, i);
        if (bytes + len > max)
            break;
        bytes += len;
        kept++;
    }
    CHECK(gr_spool_take(s) == NULL); /* nothing yet: `ready` follows */
    append_lines(s, 0, 2000);
    const struct gr_spool_batch *b = take(&loop, s, &e); /* out while its lines are dropped */
    if (b == NULL)
        return;
    append_lines(s, 2000, total);
    sync_spool(&loop, s, &e);
    struct gr_spool_stats st;
    gr_spool_stats(s, &st);
    CHECK_INT(st.dropped_lines, total - kept);
    CHECK_INT(st.backlog_bytes, bytes);
    CHECK_INT(st.queued_lines, kept);
    gr_spool_done(s, b);
    gr_spool_stats(s, &st);
    CHECK_INT(st.queued_lines, kept);
    struct text want = {0}, got = {0};
    lines_text(&want, total - kept, total);
    receive(&loop, s, &e, kept, GR_SPOOL_BATCH_MIN, &got);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    gr_spool_stats(s, &st);
    CHECK_INT(st.dropped_lines, total - kept);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(want.p);
    free(got.p);
}

/* Whether this file system punches holes (the test of it is skipped if not, and says so). */
static bool can_punch(void)
{
    char path[4200];
    path_of(path, sizeof(path), "punch-probe");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    bool ok = fd >= 0 && ftruncate(fd, 8192) == 0 &&
              fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0;
    close(fd);
    unlink(path);
    return ok;
}

/* More than GR_SPOOL_PUNCH_MIN committed with a backlog behind: its blocks are freed, the
 * backlog is intact, and drained the file is truncated. */
static void test_punch(void)
{
    if (!can_punch()) {
        printf("test_punch: skipped: %s cannot punch holes\n", dir);
        return;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200];
    path_of(path, sizeof(path), "punch");
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, 0, &e);
    if (s == NULL)
        return;
    const uint64_t total = 700000; /* some 30 MB: 7 batches */
    append_lines(s, 0, total);
    sync_spool(&loop, s, &e);
    struct stat before, after;
    CHECK(stat(path, &before) == 0);
    CHECK(before.st_size > 20 << 20);
    struct text got = {0}, want = {0};
    uint64_t n = 0;
    while (got.len < (17u << 20)) { /* more than GR_SPOOL_PUNCH_MIN, less than all */
        const struct gr_spool_batch *b = take(&loop, s, &e);
        if (b == NULL)
            return;
        text_add(&got, b->data, b->len);
        n += b->lines;
        gr_spool_done(s, b);
    }
    sync_spool(&loop, s, &e);
    CHECK(stat(path, &after) == 0);
    CHECK_INT(after.st_size, before.st_size); /* offsets stay valid */
    printf("test_punch: %lld blocks before, %lld after %zu bytes committed\n",
           (long long)before.st_blocks, (long long)after.st_blocks, got.len);
    CHECK(after.st_blocks <= before.st_blocks - (long long)(got.len - (1u << 20)) / 512);
    receive(&loop, s, &e, total - n, GR_SPOOL_BATCH_MAX, &got);
    lines_text(&want, 0, total);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    CHECK_INT(file_size(path), GR_SPOOL_HEADER_SIZE);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(want.p);
    free(got.p);
}

/* Past GR_SPOOL_REWIND_MIN with a small backlog (a batch of it out), the backlog moves back
 * to the header's end and the file is cut after it; the batch out is committed in its new
 * place, and all comes in order, across a restart too. */
static void test_rewind(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200];
    path_of(path, sizeof(path), "rewind");
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, 0, &e);
    if (s == NULL)
        return;
    struct text got = {0}, want = {0};
    uint64_t appended = 0, received = 0, committed_bytes = 0;
    /* Through more than GR_SPOOL_REWIND_MIN with more than GR_SPOOL_REWIND_COPY_MAX waiting
     * (500,000 lines, less a batch of at most 161,000 lines of at least 26 bytes), so that no
     * rewind comes yet. */
    while (committed_bytes < GR_SPOOL_REWIND_MIN + (4u << 20)) {
        append_lines(s, appended, appended + 100000);
        appended += 100000;
        while (received + 500000 < appended) {
            const struct gr_spool_batch *b = take(&loop, s, &e);
            if (b == NULL)
                return;
            committed_bytes += b->len;
            received += b->lines;
            gr_spool_done(s, b);
        }
    }
    CHECK(file_size(path) > GR_SPOOL_REWIND_MIN);
    /* Then all but the last batch, which stays out, and some lines after it. */
    const struct gr_spool_batch *out = NULL;
    while (out == NULL) {
        const struct gr_spool_batch *b = take(&loop, s, &e);
        if (b == NULL)
            return;
        if (received + b->lines == appended) {
            out = b;
        } else {
            received += b->lines;
            gr_spool_done(s, b);
        }
    }
    append_lines(s, appended, appended + 1000);
    appended += 1000;
    struct text out_text = {0};
    text_add(&out_text, out->data, out->len);
    uint64_t out_lines = out->lines;
    sync_spool(&loop, s, &e);
    struct gr_spool_stats st;
    gr_spool_stats(s, &st);
    CHECK(st.backlog_bytes > 0 && st.backlog_bytes <= GR_SPOOL_REWIND_COPY_MAX);
    CHECK_INT(file_size(path), GR_SPOOL_HEADER_SIZE + st.backlog_bytes);
    CHECK_INT(header_committed(path), GR_SPOOL_HEADER_SIZE);
    CHECK_INT(header_field(path, HDR_REWOUND_END), 0);
    CHECK_INT(st.queued_lines, appended - received);
    gr_spool_done(s, out);
    gr_spool_stats(s, &st);
    CHECK_INT(st.queued_lines, appended - received - out_lines);
    sync_spool(&loop, s, &e);
    CHECK_INT(header_committed(path), GR_SPOOL_HEADER_SIZE + out_text.len);
    /* The rest after a restart, then what is appended after it. */
    append_lines(s, appended, appended + 1000);
    close_spool(&loop, s, &e);
    s = open_spool(&loop, path, 1 << 30, 0, &e);
    if (s == NULL)
        return;
    got.len = 0;
    lines_text(&want, received, appended + 1000);
    text_add(&got, out_text.p, out_text.len);
    receive(&loop, s, &e, appended + 1000 - received - out_lines, GR_SPOOL_BATCH_MAX, &got);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(out_text.p);
    free(want.p);
    free(got.p);
}

/* A rewind interrupted after its commit point (the header says where the file ends now):
 * open cuts the old copy, clears the mark, and delivers the lines before it only. */
static void test_rewind_interrupted(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200];
    path_of(path, sizeof(path), "rewind-cut");
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    append_lines(s, 0, 1000);
    close_spool(&loop, s, &e);
    off_t size = file_size(path);
    unsigned char mark[8];
    for (int i = 0; i < 8; i++)
        mark[i] = (unsigned char)((uint64_t)size >> (8 * i));
    int fd = open(path, O_WRONLY);
    char old[64];
    for (uint64_t i = 0; i < 100; i++)
        CHECK(pwrite(fd, old, make_line(old, 5000 + i), size + (off_t)i * 64) > 0);
    CHECK(pwrite(fd, mark, sizeof(mark), HDR_REWOUND_END) == sizeof(mark));
    close(fd);

    s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    CHECK_INT(file_size(path), size);
    CHECK_INT(header_field(path, HDR_REWOUND_END), 0);
    struct text want = {0}, got = {0};
    lines_text(&want, 0, 1000);
    receive(&loop, s, &e, 1000, GR_SPOOL_BATCH_MIN, &got);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(want.p);
    free(got.p);
}

/* Steady load: a producer appending every millisecond, a consumer that takes each batch,
 * holds it 0-2 ms (a COPY) and commits it, or retries one in ten. Some 130 MB go through,
 * so that the file is rewound (GR_SPOOL_REWIND_MIN) while batches come and go. */
struct stress {
    uv_loop_t *loop;
    struct gr_spool *s;
    struct events e;
    uv_timer_t produce, copy, watch;
    const struct gr_spool_batch *out;
    uint64_t appended, total, next; /* lines: appended, to append, next expected */
    uint64_t batches, retries, bad;
    off_t max_size;
    const char *path;
    unsigned seed;
};

/* Whether b holds lines next, next + 1, ... exactly. */
static bool batch_is(const struct gr_spool_batch *b, uint64_t next)
{
    char line[128];
    size_t at = 0;
    for (uint64_t i = 0; i < b->lines; i++) {
        size_t len = make_line(line, next + i);
        if (at + len > b->len || memcmp(b->data + at, line, len) != 0)
            return false;
        at += len;
    }
    return at == b->len;
}

static void stress_take(struct stress *t);

static void on_copied(uv_timer_t *h)
{
    struct stress *t = h->data;
    const struct gr_spool_batch *b = t->out;
    t->out = NULL;
    if (!batch_is(b, t->next))
        t->bad++;
    if (rand_r(&t->seed) % 10 == 0) {
        t->retries++;
        gr_spool_retry(t->s, b);
    } else {
        t->next += b->lines;
        t->batches++;
        gr_spool_done(t->s, b);
    }
    stress_take(t);
}

static void stress_take(struct stress *t)
{
    if (t->out != NULL || (t->out = gr_spool_take(t->s)) == NULL)
        return;
    uv_timer_start(&t->copy, on_copied, (uint64_t)(rand_r(&t->seed) % 3), 0);
}

static void on_stress_ready(void *ctx)
{
    stress_take(ctx);
}

static void on_produce(uv_timer_t *h)
{
    struct stress *t = h->data;
    /* Paced by the consumer, some 5 MB ahead at most: a slow machine must not make the
     * backlog too large to rewind (GR_SPOOL_REWIND_COPY_MAX). */
    if (t->appended - t->next > 120000)
        return;
    uint64_t to = t->appended + 2000 < t->total ? t->appended + 2000 : t->total;
    append_lines(t->s, t->appended, to);
    t->appended = to;
    if (to == t->total)
        uv_timer_stop(h);
}

static void on_watch(uv_timer_t *h)
{
    struct stress *t = h->data;
    off_t size = file_size(t->path);
    if (size > t->max_size)
        t->max_size = size;
}

static void test_stress(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200];
    path_of(path, sizeof(path), "stress");
    struct stress t = {.loop = &loop, .total = 3000000, .path = path, .seed = 1};
    struct gr_spool_options o = {
        .path = path, .max_bytes = 1 << 30, .ready = on_stress_ready, .ctx = &t};
    char err[256];
    CHECK_INT(gr_spool_open(&loop, &o, &t.s, err, sizeof(err)), 0);
    if (t.s == NULL)
        return;
    uv_timer_init(&loop, &t.produce);
    uv_timer_init(&loop, &t.copy);
    uv_timer_init(&loop, &t.watch);
    t.produce.data = t.copy.data = t.watch.data = &t;
    uv_timer_start(&t.produce, on_produce, 1, 1);
    uv_timer_start(&t.watch, on_watch, 50, 50);
    int64_t deadline = (int64_t)uv_now(&loop) + 120000;
    while (t.next < t.total && (int64_t)uv_now(&loop) < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK_INT(t.next, t.total);
    CHECK_INT(t.bad, 0);
    CHECK(t.retries > 0);
    uv_close((uv_handle_t *)&t.produce, NULL);
    uv_close((uv_handle_t *)&t.copy, NULL);
    uv_close((uv_handle_t *)&t.watch, NULL);
    char line[128];
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < t.total; i++)
        bytes += make_line(line, i);
    printf("test_stress: %" PRIu64 " bytes in %" PRIu64 " batches (%" PRIu64
           " retried), the file at most %lld bytes\n",
           bytes, t.batches, t.retries, (long long)t.max_size);
    /* Cut while it ran (drained, or rewound), not only at the end. */
    CHECK(t.max_size < (off_t)bytes);
    check_empty(&loop, t.s, &t.e);
    close_spool(&loop, t.s, &t.e);
    CHECK_INT(uv_loop_close(&loop), 0);
}

/* No path: the same, in memory, gone after close. */
static void test_memfd(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, NULL, 1 << 20, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    append_lines(s, 0, 5000);
    struct text want = {0}, got = {0};
    lines_text(&want, 0, 5000);
    receive(&loop, s, &e, 5000, GR_SPOOL_BATCH_MIN, &got);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    /* Bounded by max_bytes as a file is. */
    append_lines(s, 0, 60000);
    sync_spool(&loop, s, &e);
    struct gr_spool_stats st;
    gr_spool_stats(s, &st);
    CHECK(st.backlog_bytes <= 1 << 20 && st.backlog_bytes > (1 << 20) - 128);
    CHECK(st.dropped_lines > 0);
    CHECK_INT(st.dropped_lines + st.queued_lines, 60000);
    close_spool(&loop, s, &e);

    s = open_spool(&loop, NULL, 1 << 20, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    check_empty(&loop, s, &e);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(want.p);
    free(got.p);
}

/* In a child, since the limit is the process's: writes past RLIMIT_FSIZE fail (EFBIG) as
 * a full disk would. The lines wait, disk_error says so, past GR_SPOOL_HANDOFF_MAX appends
 * are refused and counted, what was written is delivered meanwhile, and when the limit is
 * lifted the rest is written and delivered, once. Exit status: the
 * failures. */
static int disk_error_child(void)
{
    int before = check_failures;
    signal(SIGXFSZ, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    char path[4200];
    path_of(path, sizeof(path), "diskerror");
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, 0, &e);
    if (s == NULL)
        return 1;
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    struct rlimit low = {256 << 10, rl.rlim_max};
    setrlimit(RLIMIT_FSIZE, &low);
    append_lines(s, 0, 20000); /* about 1 MiB */
    CHECK(sync_spool(&loop, s, &e) < 0);
    struct gr_spool_stats st;
    gr_spool_stats(s, &st);
    CHECK(st.disk_error);
    CHECK_INT(st.queued_lines, 20000);
    CHECK(st.written_bytes > 0 && st.written_bytes < 256 << 10);
    /* Appends are taken until GR_SPOOL_HANDOFF_MAX wait, then refused and counted. */
    uint64_t accepted = 20000, refused = 0, bytes = 0, refused_len = 0;
    struct text first = {0};
    lines_text(&first, 0, accepted);
    bytes = first.len;
    free(first.p);
    char buf[128 * 100];
    for (int rc = 0; rc == 0 || refused < 1000;) {
        size_t len = 0;
        for (uint64_t k = 0; k < 100; k++)
            len += make_line(buf + len, accepted + k);
        rc = gr_spool_append(s, buf, len, 100);
        CHECK(rc == 0 || rc == -ENOBUFS);
        if (rc == 0 && refused > 0)
            CHECK(!"an append accepted after one was refused");
        if (rc == 0) {
            accepted += 100;
            bytes += len;
        } else {
            refused += 100;
            refused_len = len;
        }
    }
    gr_spool_stats(s, &st);
    CHECK(bytes - st.written_bytes <= GR_SPOOL_HANDOFF_MAX);
    CHECK(bytes - st.written_bytes + refused_len > GR_SPOOL_HANDOFF_MAX);
    CHECK_INT(st.refused_lines, refused);
    CHECK_INT(st.queued_lines, accepted);
    /* What was written still goes to PostgreSQL meanwhile. */
    struct text want = {0}, got = {0};
    uint64_t n = 0;
    while (got.len < st.written_bytes) {
        const struct gr_spool_batch *b = take(&loop, s, &e);
        if (b == NULL)
            break;
        text_add(&got, b->data, b->len);
        n += b->lines;
        gr_spool_done(s, b);
    }
    CHECK_INT(got.len, st.written_bytes);
    setrlimit(RLIMIT_FSIZE, &rl);
    CHECK_INT(sync_spool(&loop, s, &e), 0);
    gr_spool_stats(s, &st);
    CHECK(!st.disk_error);
    lines_text(&want, 0, accepted);
    receive(&loop, s, &e, accepted - n, GR_SPOOL_BATCH_MAX, &got);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    close_spool(&loop, s, &e);
    uv_loop_close(&loop);
    free(want.p);
    free(got.p);
    return check_failures - before;
}

static void test_disk_error(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(disk_error_child() == 0 ? 0 : 1);
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The child of a kill test: opens path, appends `lines` lines, and after the sync that
 * makes them written, with one batch done and one out when `out` is set, writes the number
 * of lines done to fd and waits to be killed. */
static void kill_child(const char *path, uint64_t lines, bool out, int fd)
{
    int before = check_failures;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        _exit(1);
    append_lines(s, 0, lines);
    uint64_t done = 0;
    if (out) {
        const struct gr_spool_batch *b = take(&loop, s, &e);
        if (b == NULL)
            _exit(1);
        done = b->lines;
        gr_spool_done(s, b);
        if (take(&loop, s, &e) == NULL)
            _exit(1);
    }
    if (sync_spool(&loop, s, &e) != 0 || check_failures > before)
        _exit(1);
    if (write(fd, &done, sizeof(done)) != sizeof(done))
        _exit(1);
    for (;;)
        pause();
}

/* kill -9 once the lines are written: all come back, exactly once, nothing else; with a
 * batch out, that batch comes first, the one done before it never. */
static void test_kill(bool out)
{
    char path[4200];
    path_of(path, sizeof(path), out ? "kill-out" : "kill");
    const uint64_t lines = 30000;
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        kill_child(path, lines, out, p[1]);
    }
    close(p[1]);
    uint64_t done = UINT64_MAX;
    CHECK(read(p[0], &done, sizeof(done)) == sizeof(done));
    close(p[0]);
    CHECK(kill(pid, SIGKILL) == 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    if (done == UINT64_MAX)
        return;
    CHECK(out ? done > 0 : done == 0);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    struct text want = {0}, got = {0};
    lines_text(&want, done, lines);
    receive(&loop, s, &e, lines - done, GR_SPOOL_BATCH_MIN, &got);
    check_text(&got, &want);
    check_empty(&loop, s, &e);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(want.p);
    free(got.p);
}

/* The child of the random kill: appends line after line, committing as it goes, and tells
 * after each sync how many lines were appended before it (those must survive). */
static void stream_child(const char *path, int fd)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        _exit(1);
    uint64_t i = 0;
    for (;;) {
        append_lines(s, i, i + 5000);
        i += 5000;
        const struct gr_spool_batch *b = gr_spool_take(s);
        if (b != NULL)
            gr_spool_done(s, b);
        if (e.synced == 0 || i % 20000 == 0) {
            sync_spool(&loop, s, &e);
            if (write(fd, &i, sizeof(i)) != sizeof(i))
                _exit(1);
        }
        uv_run(&loop, UV_RUN_NOWAIT);
    }
}

/* kill -9 at a moment the child does not choose: what is found is a run of whole lines,
 * each once, in order, from where the committed ones end, at least to the last synced. */
static void test_kill_streaming(void)
{
    char path[4200];
    path_of(path, sizeof(path), "kill-stream");
    int p[2];
    CHECK(pipe(p) == 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        stream_child(path, p[1]);
    }
    close(p[1]);
    uint64_t synced = 0;
    srand((unsigned)time(NULL));
    int reports = 2 + rand() % 6;
    for (int i = 0; i < reports; i++)
        CHECK(read(p[0], &synced, sizeof(synced)) == sizeof(synced));
    struct timespec ts = {0, (rand() % 30) * 1000000L}; /* somewhere in what follows */
    nanosleep(&ts, NULL);
    CHECK(kill(pid, SIGKILL) == 0);
    close(p[0]);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct events e = {0};
    struct gr_spool *s = open_spool(&loop, path, 1 << 30, GR_SPOOL_BATCH_MIN, &e);
    if (s == NULL)
        return;
    sync_spool(&loop, s, &e);
    struct gr_spool_stats st;
    gr_spool_stats(s, &st);
    struct text got = {0}, want = {0};
    receive(&loop, s, &e, st.queued_lines, GR_SPOOL_BATCH_MIN, &got);
    check_empty(&loop, s, &e);
    /* The first line says where the run starts. */
    uint64_t first = 0;
    CHECK(got.len > 0 && sscanf(got.p, "unit-%" SCNu64, &first) == 1);
    uint64_t last = first + st.queued_lines;
    printf("test_kill_streaming: killed after %" PRIu64 " synced lines; found lines %" PRIu64
           " to %" PRIu64 "\n",
           synced, first, last);
    CHECK(last >= synced);
    lines_text(&want, first, last);
    check_text(&got, &want);
    close_spool(&loop, s, &e);
    CHECK_INT(uv_loop_close(&loop), 0);
    free(want.p);
    free(got.p);
}

int main(int argc, char **argv)
{

    snprintf(dir, sizeof(dir), "%s/spool.XXXXXX", argc > 1 ? argv[1] : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror(dir);
        return 1;
    }
    test_order();
    test_retry();
    test_restart();
    test_torn_tail();
    test_refused();
    test_bound();
    test_punch();
    test_rewind();
    test_rewind_interrupted();
    test_memfd();
    test_stress();
    test_disk_error();
    test_kill(false);
    test_kill(true);
    test_kill_streaming();
    int rc = check_result("spool");
    if (rc == 0) {
        char cmd[4200 + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
    return rc;
}
