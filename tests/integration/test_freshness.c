/*
 * test_freshness.c - positions stay fresh on a slow link (docs/protocol.md "Slow consoles").
 *
 * 200 units report at 5 Hz over UDP, fix time = the wall clock when sent. Three consoles
 * join their agency: a fast one that reads everything; a throttled one with a 16 KiB
 * receive buffer that reads at most 60 KB/s, less than the agency's load; and a stuck one
 * (16 KiB too) that stops reading after its join. The contract: the throttled console's
 * positions are at most 2 s old at the 99th percentile and it is not closed, the fast one's
 * under 0.5 s, and the stuck one is closed as slow within slow_timeout plus a few seconds.
 * Before the daemon kept its unsent bytes per console small, the kernel's send buffer took
 * megabytes: the throttled console saw ages of 10 s and more, growing, and the stuck one
 * was closed only once megabytes had piled up.
 *
 * Usage: itest_freshness /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 5000

#define UNITS        200     /* F-0 .. F-199 of agency:fresh */
#define RATE_HZ      5       /* fixes per unit per second */
#define RUN_MS       16000   /* how long the units report */
#define WARMUP_MS    3000    /* ages are counted after this: the throttled link's steady state */
#define SLOW_RATE    60000   /* bytes per second the throttled console reads */
#define SLOW_RCVBUF  16384   /* its SO_RCVBUF, and the stuck console's */
#define SLOW_TIMEOUT 3       /* slow_timeout for this daemon, seconds */
#define CLOSE_SLACK  4000    /* "a few seconds" past slow_timeout for the stuck console */
#define AGES_MAX     2000000 /* position ages kept per console */

static struct gr_daemon d;

/* Milliseconds since the epoch: fix times and the age of a position when it arrives. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A console read by hand: raw bytes in, whole server frames (unmasked) parsed out. */
struct reader {
    int fd;
    unsigned char buf[1 << 20];
    size_t len;
    double *ages; /* seconds, after WARMUP_MS */
    size_t n_ages;
    size_t positions;
    bool closed; /* a close frame or EOF */
};

/* "2026-11-23T18:20:01.000Z" as milliseconds since the epoch, or -1. */
static int64_t parse_time(const char *s)
{
    struct tm tm;
    int ms;
    memset(&tm, 0, sizeof tm);
    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                            &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

static void on_message(struct reader *r, const char *p, size_t len, bool counting)
{
    json_t *m = json_loadb(p, len, 0, NULL);
    const char *event = json_string_value(json_array_get(m, 3));
    if (event != NULL && strcmp(event, "positions") == 0) {
        int64_t now = wall_ms();
        json_t *list = json_object_get(json_array_get(m, 4), "positions"), *pos;
        size_t i;
        json_array_foreach(list, i, pos)
        {
            int64_t t = parse_time(json_string_value(json_object_get(pos, "time")));
            CHECK(t > 0);
            r->positions++;
            if (counting && r->n_ages < AGES_MAX)
                r->ages[r->n_ages++] = (double)(now - t) / 1000.0;
        }
    }
    json_decref(m);
}

/* Parses every whole frame in r->buf. */
static void parse_frames(struct reader *r, bool counting)
{
    size_t off = 0;
    for (;;) {
        unsigned char *f = r->buf + off;
        size_t have = r->len - off, head = 2;
        if (have < 2)
            break;
        uint64_t plen = f[1] & 0x7f;
        if (plen == 126) {
            head = 4;
            if (have < head)
                break;
            plen = (uint64_t)f[2] << 8 | f[3];
        } else if (plen == 127) {
            head = 10;
            if (have < head)
                break;
            plen = 0;
            for (int i = 2; i < 10; i++)
                plen = plen << 8 | f[i];
        }
        CHECK(plen < sizeof r->buf - 16);
        if (have < head + plen)
            break;
        int opcode = f[0] & 0x0f;
        CHECK((f[0] & 0x80) != 0); /* the daemon does not fragment its messages */
        if (opcode == WS_OP_TEXT)
            on_message(r, (const char *)f + head, (size_t)plen, counting);
        else if (opcode == WS_OP_CLOSE)
            r->closed = true;
        off += head + (size_t)plen;
    }
    memmove(r->buf, r->buf + off, r->len - off);
    r->len -= off;
}

/* Reads at most max bytes (what is there, without waiting); returns how many. */
static size_t read_some(struct reader *r, size_t max, bool counting)
{
    if (r->closed)
        return 0;
    size_t room = sizeof r->buf - r->len;
    if (max > room)
        max = room;
    ssize_t n = recv(r->fd, r->buf + r->len, max, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        r->closed = true;
        return 0;
    }
    if (n < 0)
        return 0;
    r->len += (size_t)n;
    parse_frames(r, counting);
    return (size_t)n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double p99(struct reader *r)
{
    if (r->n_ages == 0)
        return -1;
    qsort(r->ages, r->n_ages, sizeof(double), cmp_double);
    return r->ages[r->n_ages * 99 / 100];
}

static int join(int rcvbuf)
{
    harness_rcvbuf = rcvbuf;
    int fd = phx_join_console(d.ws_port, "agency:fresh", NULL);
    harness_rcvbuf = 0;
    CHECK(fd >= 0);
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 2;
    }
    char csv[64 + UNITS * 32];
    size_t n = (size_t)snprintf(csv, sizeof csv, "device_id,agency_id,label,source_addr\n");
    for (int u = 0; u < UNITS; u++)
        n += (size_t)snprintf(csv + n, sizeof csv - n, "F-%d,fresh,,\n", u);
    char conf[160];
    snprintf(conf, sizeof conf, "slow_timeout %d\nidle_timeout 0\ningest_rate_limit 1000000\n",
             SLOW_TIMEOUT);
    if (daemon_start(&d, argv[1], conf, csv) != 0)
        return 1;

    static struct reader fast, slow;
    fast.ages = calloc(AGES_MAX, sizeof(double));
    slow.ages = calloc(AGES_MAX, sizeof(double));
    CHECK(fast.ages != NULL && slow.ages != NULL);
    fast.fd = join(0);
    slow.fd = join(SLOW_RCVBUF);
    int stuck = join(SLOW_RCVBUF);
    const char *slow_closed = "gpsrelay_consoles_closed_total{reason=\"slow\"}";
    CHECK_INT(http_metric(d.ws_port, slow_closed), 0);

    /* One loop: each unit reports every 1000/RATE_HZ ms, spread evenly over that period;
     * the throttled console gets SLOW_RATE bytes a second from a token bucket. */
    int64_t start = now_ms(), last = start, stuck_closed_ms = -1, next_metric = start;
    uint64_t sent = 0;
    double tokens = 0;
    double lat[UNITS];
    for (int u = 0; u < UNITS; u++)
        lat[u] = 40.0 + u * 0.01;
    for (int64_t now = start; now - start < RUN_MS; now = now_ms()) {
        uint64_t due = (uint64_t)(now - start) * UNITS * RATE_HZ / 1000;
        for (; sent < due; sent++) {
            int u = (int)(sent % UNITS);
            lat[u] += 0.00001; /* about 1 m between fixes: a plausible 5 m/s */
            char dev[16];
            snprintf(dev, sizeof dev, "F-%d", u);
            CHECK_INT(udp_send_rmc(d.udp_port, dev, wall_ms(), lat[u], -74.0), 0);
        }
        bool counting = now - start >= WARMUP_MS;
        read_some(&fast, sizeof fast.buf, counting);
        tokens += (double)(now - last) * SLOW_RATE / 1000.0;
        if (tokens > 4096)
            tokens = 4096; /* the bucket's depth: a burst of one 4 KiB read */
        last = now;
        if (tokens >= 1024)
            tokens -= (double)read_some(&slow, (size_t)tokens, counting);
        if (stuck_closed_ms < 0 && now >= next_metric) {
            if (http_metric(d.ws_port, slow_closed) == 1)
                stuck_closed_ms = now - start;
            next_metric = now + 200;
        }
        struct pollfd p[2] = {{fast.fd, POLLIN, 0}, {slow.fd, POLLIN, 0}};
        poll(p, tokens >= 1024 ? 2 : 1, 1);
    }
    fprintf(stderr, "sent %llu fixes in %d s\n", (unsigned long long)sent, RUN_MS / 1000);
    double fast_p99 = p99(&fast), slow_p99 = p99(&slow);
    fprintf(stderr, "fast console: %zu positions, age p99 %.3f s, max %.3f s\n", fast.positions,
            fast_p99, fast.n_ages ? fast.ages[fast.n_ages - 1] : -1);
    fprintf(stderr, "throttled console: %zu positions, age p99 %.3f s, max %.3f s, closed %d\n",
            slow.positions, slow_p99, slow.n_ages ? slow.ages[slow.n_ages - 1] : -1, slow.closed);
    fprintf(stderr, "stuck console closed as slow after %lld ms (slow_timeout %d s)\n",
            (long long)stuck_closed_ms, SLOW_TIMEOUT);
    long long conflated = http_metric(d.ws_port, "gpsrelay_positions_conflated_total");
    fprintf(stderr, "conflated %lld\n", conflated);

    CHECK(fast.n_ages > 0 && slow.n_ages > 0);
    CHECK(fast_p99 >= 0 && fast_p99 < 0.5);
    CHECK(slow_p99 >= 0 && slow_p99 < 2.0);
    CHECK(!slow.closed && !fast.closed);
    CHECK(conflated > 0); /* the throttled console got the newest of each unit, not all */
    CHECK(stuck_closed_ms >= 0 && stuck_closed_ms <= SLOW_TIMEOUT * 1000 + CLOSE_SLACK);
    /* Only the stuck one was closed, and the age metric saw every position written. */
    CHECK_INT(http_metric(d.ws_port, slow_closed), 1);
    long long aged = http_metric(d.ws_port, "gpsrelay_position_age_seconds_count");
    CHECK(aged >= (long long)(fast.positions + slow.positions));
    CHECK(http_metric(d.ws_port, "gpsrelay_position_age_seconds_bucket{le=\"2\"}") > 0);
    close(stuck);
    close(fast.fd);
    close(slow.fd);
    free(fast.ages);
    free(slow.ages);
    CHECK_INT(daemon_stop(&d), 0);
    return check_result("integration_freshness");
}
