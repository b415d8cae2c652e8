/*
 * cluster_probe.c - end-to-end load and timing across the nodes of a gpsrelay cluster
 * (bench/run-cluster.sh), or against one daemon: the same tool measures both, so the
 * single-node figure and the cluster's come from the same code in the same run.
 *
 * One process: M Phoenix consoles on one epoll loop (this thread), spread round-robin over
 * the nodes' WebSocket ports, all joined to one agency; and a publisher thread that sends
 * NMEA RMC reports over UDP at a fixed rate for U units, unit u always to the node
 * --udp[u % n] (a modem reaches one node).
 *
 * Timing. An RMC carries its fix time to the millisecond; the publisher makes it the wall
 * clock at send (raised by a millisecond when a unit would repeat one: fix times rise per
 * unit) and keeps, per unit, a ring of the last RING_SIZE (fix time, send time in us) pairs.
 * A console that receives a position looks its device and time up there, so latency is
 * exact to the microsecond: send() of the datagram to the console's read() of the frame.
 *
 * Counting. The measurement window is a span of send times: every report sent in it must
 * reach every console. After the window and a drain (--drain), a console's share is what
 * it received of them; "delivered" is over all consoles, "worst" the least of one console.
 * A position whose seq is not above the last one that console had is counted as "dup".
 *
 * Failover (--kill-pid PID, or --drop): at the end of the warm-up the probe kills PID with
 * SIGKILL (one node; the consoles on it see their connections end), or resets every
 * connection itself (the same daemon stays). Every console that lost its connection
 * reconnects to the next port of --failover (round-robin by console, then on to the next
 * one if a connect fails) and joins with {"since":{"epoch":E,"seq":N}}: E from its first
 * join reply, N the highest seq it had. Reported: the time from the kill (or drop) to
 * each console's join reply, and how many replies said recovered:true.
 *
 * --kill-pid without --failover (a NATS server, say): the window starts at the kill, so
 * the pause the kill causes is in the latencies (max_ms), and what it lost in "delivered".
 *
 * Output: progress on stderr; on stdout one "result ..." line of key=value pairs, and with
 * a failover one "failover ..." line before it.
 *
 * usage: cluster_probe --help
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

#define MAX_NODES         8
#define READ_CHUNK        (256 * 1024)
#define CONN_BUFFER_MAX   (8u << 20) /* a join snapshot of thousands of units fits */
#define EVENTS_MAX        512
#define CONSOLES_PER_ADDR 10000 /* per 127.0.0.x source: inside the ephemeral port range */
#define PUB_BATCH         64    /* datagrams per sendmmsg */
#define PUB_TICK_NS       1000000
#define PUB_LAG_MAX_S     0.1 /* further behind than this, the publisher skips (counted) */
#define REPORT_MAX        256
#define RING_SIZE         512 /* per unit: 100 s of history at 5 reports/s */
#define SETUP_TIMEOUT_S   120.0
#define FAILOVER_TIMEOUT  30.0
#define RETRY_S           0.02 /* a refused connect is retried on the next port after this */
#define HEARTBEAT_S       20   /* under the daemon's idle_timeout (60 s) */

static struct options {
    int ws[MAX_NODES], n_ws;
    int udp[MAX_NODES], n_udp;
    int failover[MAX_NODES], n_failover;
    int consoles, units, parallel;
    double rate, warmup, duration, drain;
    const char *agency;
    pid_t kill_pid;
    bool drop;
} opt = {
    .consoles = 3,
    .units = 200,
    .parallel = 500,
    .warmup = 3,
    .duration = 10,
    .drain = 2,
    .agency = "bench-0",
};

/* ---- the publisher's record of what it sent ------------------------------------------------ */

/*
 * Per unit, the last RING_SIZE reports in send order: written by the publisher only, read
 * by the console thread. Fix times rise with the count, so a lookup is a binary search
 * over the ring. The datagram is sent after its entry is written, and the console reads
 * the position after the daemon got the datagram, so a reader never sees a half-written
 * entry it needs; relaxed atomics keep the overwriting of old ones well defined.
 */
struct unit {
    _Atomic uint64_t count; /* reports sent */
    _Atomic uint64_t fix_ms[RING_SIZE];
    _Atomic uint64_t send_us[RING_SIZE];
    _Atomic uint8_t seen[RING_SIZE]; /* consoles that received it (console thread only) */
    uint64_t last_ms;
};

static struct unit *units;
/* The send times counted, [start, end): set before publishing, or after the failover. */
static _Atomic uint64_t window_start_us = UINT64_MAX, window_end_us = UINT64_MAX;
static atomic_uint_fast64_t pub_sent, pub_in_window, pub_skipped, pub_errors;
static atomic_bool pub_stop;

/* The send time of unit u's report with this fix time, or 0 when it is no longer known;
 * *slot: its entry in the ring. */
static uint64_t sent_at(int u, uint64_t fix_ms, size_t *slot)
{
    struct unit *un = &units[u];
    uint64_t n = atomic_load_explicit(&un->count, memory_order_acquire);
    uint64_t lo = n > RING_SIZE ? n - RING_SIZE : 0, hi = n; /* search [lo, hi) */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint64_t f = atomic_load_explicit(&un->fix_ms[mid % RING_SIZE], memory_order_relaxed);
        if (f == fix_ms) {
            *slot = mid % RING_SIZE;
            return atomic_load_explicit(&un->send_us[*slot], memory_order_relaxed);
        }
        if (f < fix_ms)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static int nmea_report(char *out, int u, uint64_t ms, uint64_t moves)
{
    double lat, lon;
    unit_position(u, moves, &lat, &lon);
    struct nmea_fix f;
    nmea_fix(&f, ms, lat, lon);
    int n = snprintf(out, REPORT_MAX, "U-%d,", u);
    return n + nmea_rmc(out + n, (size_t)(REPORT_MAX - n), &f);
}

static void *publisher(void *arg)
{
    double start = *(double *)arg;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 4 << 20;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)) < 0) {
        atomic_store(&pub_errors, 1);
        return NULL;
    }
    static struct sockaddr_in dst[MAX_NODES];
    for (int k = 0; k < opt.n_udp; k++)
        dst[k] = (struct sockaddr_in){.sin_family = AF_INET,
                                      .sin_port = htons((uint16_t)opt.udp[k]),
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static char dgram[PUB_BATCH][REPORT_MAX];
    struct mmsghdr msgs[PUB_BATCH];
    struct iovec iov[PUB_BATCH];
    uint64_t sent = 0, skipped = 0, errors = 0, in_window = 0;
    struct timespec tick;
    clock_gettime(CLOCK_MONOTONIC, &tick);
    while (!atomic_load(&pub_stop)) {
        uint64_t due = reports_due(mono_s() - start, opt.rate, sent, &skipped, PUB_LAG_MAX_S);
        while (due > 0) {
            int batch = due < PUB_BATCH ? (int)due : PUB_BATCH;
            uint64_t now_us = wall_us();
            for (int k = 0; k < batch; k++) {
                int u = (int)((sent + skipped + (uint64_t)k) % (uint64_t)opt.units);
                struct unit *un = &units[u];
                uint64_t ms = next_fix_ms(&un->last_ms, now_us);
                uint64_t n = atomic_load_explicit(&un->count, memory_order_relaxed);
                atomic_store_explicit(&un->fix_ms[n % RING_SIZE], ms, memory_order_relaxed);
                atomic_store_explicit(&un->send_us[n % RING_SIZE], now_us, memory_order_relaxed);
                atomic_store_explicit(&un->seen[n % RING_SIZE], 0, memory_order_relaxed);
                atomic_store_explicit(&un->count, n + 1, memory_order_release);
                iov[k] = (struct iovec){dgram[k], (size_t)nmea_report(dgram[k], u, ms, n)};
                msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_name = &dst[u % opt.n_udp],
                                                       .msg_namelen = sizeof(dst[0]),
                                                       .msg_iov = &iov[k],
                                                       .msg_iovlen = 1}};
                if (now_us >= window_start_us && now_us < window_end_us)
                    in_window++;
            }
            int r = sendmmsg(fd, msgs, (unsigned)batch, 0);
            if (r < batch)
                errors += (uint64_t)(batch - (r > 0 ? r : 0));
            sent += (uint64_t)batch;
            due -= (uint64_t)batch;
        }
        atomic_store(&pub_sent, sent);
        atomic_store(&pub_in_window, in_window);
        sleep_next_tick(&tick, PUB_TICK_NS);
    }
    atomic_store(&pub_sent, sent);
    atomic_store(&pub_in_window, in_window);
    atomic_store(&pub_skipped, skipped);
    atomic_store(&pub_errors, errors);
    close(fd);
    return NULL;
}

/* ---- consoles ------------------------------------------------------------------------------- */

enum state { ST_DOWN, ST_WAITING, ST_CONNECTING, ST_UPGRADING, ST_JOINING, ST_LIVE };

struct conn {
    int fd;
    uint8_t state;
    bool must_rejoin; /* lost its connection in the failover: rejoin with since */
    int port;         /* where it is, or goes next */
    int attempt;      /* failover connects tried */
    double retry_at;  /* ST_WAITING: connect again then */
    uint64_t last_seq;
    uint64_t in_window; /* positions sent in the window that it received */
    struct buf raw, msg;
};

static struct conn *conns;
static int epfd;
static char *scratch;

static struct {
    int live, failed, in_flight;
    char epoch[64];
    uint64_t positions, unmatched, dup, refused;
    uint64_t reached; /* reports sent in the window that reached at least one console */
    struct hist latency;
    /* failover */
    uint64_t kill_us;
    int to_drop; /* consoles on the killed node (not on a failover port), or all */
    int dropped, rejoined, recovered, not_recovered, connect_retries;
    uint64_t reply_positions;
    struct hist rejoin;
} g;

static int conn_index(const struct conn *c)
{
    return (int)(c - conns);
}

/* Closes with a reset, so the server hears at once and no TIME_WAIT is left. */
static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close_reset(c->fd);
    if (c->state == ST_LIVE)
        g.live--;
    else if (c->state >= ST_CONNECTING)
        g.in_flight--;
    c->fd = -1;
    c->state = ST_DOWN;
    buf_free(&c->raw);
    buf_free(&c->msg);
}

/* After the kill, a console whose connection ends goes to the next failover port; before
 * it, that is a failure. */
static void conn_lost(struct conn *c, const char *why)
{
    bool was_live = c->state == ST_LIVE;
    conn_close(c);
    if (g.kill_us != 0 && opt.n_failover > 0) {
        if (was_live && !c->must_rejoin) {
            c->must_rejoin = true;
            g.dropped++;
        }
        if (c->must_rejoin) {
            if (!was_live)
                g.connect_retries++;
            c->port = opt.failover[(conn_index(c) + c->attempt++) % opt.n_failover];
            c->state = ST_WAITING;
            c->retry_at = was_live ? 0 : mono_s() + RETRY_S;
            return;
        }
    }
    if (g.failed++ < 5)
        fprintf(stderr, "cluster_probe: console %d: %s\n", conn_index(c), why);
}

static int join(struct conn *c)
{
    return phoenix_join(c->fd, opt.agency, c->must_rejoin, g.epoch, c->last_seq);
}

/* ---- what consoles receive ------------------------------------------------------------------ */

static const char DEV_KEY[] = "{\"device\":\"U-";
static const char SEQ_KEY[] = "\"seq\":";
static const char TIME_KEY[] = "\"time\":\"";

/*
 * The positions in p[0..end): each {"device":"U-<u>","seq":N,"time":"...",...}. Pushed
 * ones (live) are timed and counted; those of a join reply only move last_seq. Returns
 * how many.
 */
static uint64_t scan_positions(struct conn *c, const char *p, const char *end, bool live)
{
    uint64_t count = 0, now_us = wall_us();
    for (;;) {
        const char *d = memmem(p, (size_t)(end - p), DEV_KEY, sizeof(DEV_KEY) - 1);
        if (d == NULL)
            break;
        d += sizeof(DEV_KEY) - 1;
        uint64_t u = parse_u64(d, end);
        const char *s = memmem(d, (size_t)(end - d), SEQ_KEY, sizeof(SEQ_KEY) - 1);
        if (s == NULL)
            break;
        s += sizeof(SEQ_KEY) - 1;
        uint64_t seq = parse_u64(s, end);
        const char *t = memmem(s, (size_t)(end - s), TIME_KEY, sizeof(TIME_KEY) - 1);
        if (t == NULL)
            break;
        t += sizeof(TIME_KEY) - 1;
        p = t;
        count++;
        if (seq <= c->last_seq)
            g.dup++;
        else
            c->last_seq = seq;
        if (!live)
            continue;
        g.positions++;
        size_t slot = 0;
        uint64_t sent = u < (uint64_t)opt.units ? sent_at((int)u, parse_iso_ms(t, end), &slot) : 0;
        if (sent == 0) {
            g.unmatched++;
            continue;
        }
        if (sent >= window_start_us && sent < window_end_us) {
            c->in_window++;
            if (atomic_fetch_add_explicit(&units[u].seen[slot], 1, memory_order_relaxed) == 0)
                g.reached++;
            hist_add(&g.latency, now_us > sent ? now_us - sent : 0);
        }
    }
    return count;
}

static void join_reply(struct conn *c, const char *m, const char *end)
{
    uint64_t seq;
    const char *rest;
    int ok = phoenix_join_reply(m, end, g.epoch, sizeof(g.epoch), &seq, &rest);
    if (ok <= 0) {
        g.refused += ok == 0;
        conn_lost(c, ok == 0 ? "join refused" : "join reply without epoch or seq");
        return;
    }
    uint64_t k = scan_positions(c, rest, end, false);
    if (seq > c->last_seq)
        c->last_seq = seq;
    if (c->state == ST_JOINING) {
        c->state = ST_LIVE;
        g.in_flight--;
        g.live++;
    }
    if (c->must_rejoin) {
        c->must_rejoin = false;
        g.rejoined++;
        g.reply_positions += k;
        hist_add(&g.rejoin, wall_us() - g.kill_us);
        if (memmem(m, (size_t)(end - m), "\"recovered\":true", 16) != NULL)
            g.recovered++;
        else
            g.not_recovered++;
    }
}

static void phoenix_message(struct conn *c, const char *m, size_t n)
{
    const char *positions = NULL;
    switch (phoenix_kind(m, n, &positions)) {
    case PHX_POSITIONS:
        scan_positions(c, positions, m + n, true);
        break;
    case PHX_REPLY:
        join_reply(c, m, m + n);
        break;
    case PHX_PUSH_OTHER:
    case PHX_HEARTBEAT:
    case PHX_OTHER:
        break;
    }
}

static int ws_frame(struct conn *c, int opcode, bool fin, const char *p, size_t n)
{
    if (opcode == 8) {
        conn_lost(c, "closed by the server");
        return -1;
    }
    if (opcode == 9)
        return ws_send(c->fd, 10, p, n);
    if (opcode == 10)
        return 0;
    const char *m;
    size_t mn;
    int whole = ws_message(&c->msg, p, n, fin, CONN_BUFFER_MAX, &m, &mn);
    if (whole <= 0)
        return whole;
    phoenix_message(c, m, mn);
    if (m == c->msg.data) /* gathered, and still there: the console was not closed */
        buf_consume(&c->msg, mn);
    return 0;
}

static bool conn_gone(const struct conn *c)
{
    return c->state == ST_DOWN || c->state == ST_WAITING;
}

static long decode(struct conn *c, const char *p, size_t n)
{
    size_t at = 0;
    if (c->state == ST_UPGRADING) {
        long head = ws_upgrade_reply(p, n);
        if (head <= 0)
            return head;
        at = (size_t)head;
        c->state = ST_JOINING;
        if (join(c) < 0)
            return -1;
    }
    for (struct ws_in f;;) {
        int got = ws_next_frame(p, n, &at, CONN_BUFFER_MAX, &f);
        if (got <= 0)
            return got < 0 ? -1 : (long)at;
        if (ws_frame(c, f.opcode, f.fin, f.payload, f.len) < 0)
            return conn_gone(c) ? -2 : -1;
        if (conn_gone(c))
            return -2;
    }
}

static void on_readable(struct conn *c)
{
    const char *p, *why = NULL;
    size_t n;
    int got = console_read(c->fd, &c->raw, scratch, READ_CHUNK, CONN_BUFFER_MAX, &p, &n, &why);
    if (got <= 0) {
        if (got < 0)
            conn_lost(c, why);
        return;
    }
    long used = decode(c, p, n);
    if (used >= 0 && buf_keep(&c->raw, p, n, (size_t)used, CONN_BUFFER_MAX) < 0)
        used = -1;
    if (used == -1)
        conn_lost(c, "protocol error");
}

static void start_connect(struct conn *c)
{
    c->state = ST_CONNECTING;
    g.in_flight++;
    int err = console_connect(epfd, conn_index(c), c->port, CONSOLES_PER_ADDR, &c->fd);
    if (err != 0)
        conn_lost(c, strerror(err));
}

static void on_connected(struct conn *c)
{
    int err = console_connected(epfd, conn_index(c), c->fd);
    if (err != 0) {
        conn_lost(c, strerror(err));
        return;
    }
    char req[512];
    int n = ws_upgrade_request(req, sizeof(req), "/socket/websocket?vsn=2.0.0", c->port, "");
    c->state = ST_UPGRADING;
    if (send_all(c->fd, req, (size_t)n) < 0)
        conn_lost(c, "upgrade not sent");
}

/* Starts the connects that are due while fewer than --parallel handshakes are in flight. */
static void pump_connects(void)
{
    double now = mono_s();
    for (int i = 0; i < opt.consoles && g.in_flight < opt.parallel; i++)
        if (conns[i].state == ST_WAITING && conns[i].retry_at <= now)
            start_connect(&conns[i]);
}

static void poll_once(int timeout_ms)
{
    struct epoll_event ev[EVENTS_MAX];
    int n = epoll_wait(epfd, ev, EVENTS_MAX, timeout_ms);
    for (int k = 0; k < n; k++) {
        struct conn *c = &conns[ev[k].data.u32];
        if (conn_gone(c))
            continue;
        if (c->state == ST_CONNECTING)
            on_connected(c);
        else if (ev[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            on_readable(c);
    }
    pump_connects();
}

static void heartbeats(void)
{
    static unsigned ref;
    char frame[64];
    int n = phoenix_heartbeat(frame, sizeof(frame), ++ref);
    for (int i = 0; i < opt.consoles; i++)
        if (conns[i].state == ST_LIVE && ws_send(conns[i].fd, 1, frame, (size_t)n) < 0)
            conn_lost(&conns[i], "heartbeat not sent");
}

static void run_until(double end, double *next_hb)
{
    for (double now; !stop_requested && (now = mono_s()) < end;) {
        if (now >= *next_hb) {
            heartbeats();
            *next_hb += HEARTBEAT_S;
        }
        double wait = end - now;
        poll_once(wait > 0.01 ? 10 : (int)(wait * 1000) + 1);
    }
}

/* The node dies (or every connection is reset); consoles fail over and rejoin. */
static void failover(double *next_hb)
{
    for (int i = 0; i < opt.consoles; i++) {
        bool stays = false;
        for (int k = 0; k < opt.n_failover && opt.kill_pid > 0; k++)
            stays |= conns[i].port == opt.failover[k];
        g.to_drop += conns[i].state == ST_LIVE && !stays;
    }
    g.kill_us = wall_us();
    if (opt.kill_pid > 0) {
        if (kill(opt.kill_pid, SIGKILL) < 0)
            perror("cluster_probe: kill");
    } else {
        for (int i = 0; i < opt.consoles; i++)
            if (conns[i].state == ST_LIVE)
                conn_lost(&conns[i], "dropped");
    }
    double deadline = mono_s() + FAILOVER_TIMEOUT;
    while (!stop_requested && mono_s() < deadline && g.rejoined < g.to_drop)
        run_until(mono_s() + 0.005, next_hb);
    printf("failover to_drop=%d dropped=%d rejoined=%d recovered=%d not_recovered=%d failed=%d"
           " connect_retries=%d all_ms=%.1f p50_ms=%.1f p99_ms=%.1f reply_positions=%" PRIu64
           " dup=%" PRIu64 "\n",
           g.to_drop, g.dropped, g.rejoined, g.recovered, g.not_recovered, g.failed,
           g.connect_retries, (double)g.rejoin.max / 1000.0, hist_ms(&g.rejoin, 0.5),
           hist_ms(&g.rejoin, 0.99), g.reply_positions, g.dup);
    fflush(stdout);
}

/* ---- options and the run -------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cluster_probe --ws P[,P...] [options]      (127.0.0.1 only)\n"
            "  --ws P,...        consoles' WebSocket ports: console i connects to the (i %% n)th\n"
            "  --udp P,...       publisher's UDP ports: unit u reports to the (u %% n)th;\n"
            "                    absent: no publisher\n"
            "  --rate R          reports/s over all units     --units U [200] (device U-<u>)\n"
            "  --consoles M [3]  --agency A [bench-0]        every console joins agency:A\n"
            "  --warmup S [3]  --duration S [10]  --drain S [2]   window of send times\n"
            "  --parallel N      handshakes in flight at once [500]\n"
            "  --kill-pid PID    at the end of the warm-up, SIGKILL PID (a node)...\n"
            "  --drop            ...or reset every console's connection\n"
            "  --failover P,...  then consoles that lost theirs reconnect here, with since;\n"
            "                    without it, --kill-pid starts the window at the kill\n");
}

static int parse_ports(const char *s, int *out)
{
    int n = 0;
    for (char *end; *s && n < MAX_NODES; s = *end == ',' ? end + 1 : end) {
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || v > 65535)
            return -1;
        out[n++] = (int)v;
    }
    return n;
}

static int parse_options(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"ws", required_argument, NULL, 'w'},
        {"udp", required_argument, NULL, 'u'},
        {"failover", required_argument, NULL, 'f'},
        {"rate", required_argument, NULL, 'r'},
        {"units", required_argument, NULL, 'U'},
        {"consoles", required_argument, NULL, 'm'},
        {"agency", required_argument, NULL, 'a'},
        {"warmup", required_argument, NULL, 'W'},
        {"duration", required_argument, NULL, 'd'},
        {"drain", required_argument, NULL, 'D'},
        {"parallel", required_argument, NULL, 'j'},
        {"kill-pid", required_argument, NULL, 'k'},
        {"drop", no_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    for (int ch; (ch = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        switch (ch) {
        case 'w':
            opt.n_ws = parse_ports(optarg, opt.ws);
            break;
        case 'u':
            opt.n_udp = parse_ports(optarg, opt.udp);
            break;
        case 'f':
            opt.n_failover = parse_ports(optarg, opt.failover);
            break;
        case 'r':
            opt.rate = atof(optarg);
            break;
        case 'U':
            opt.units = atoi(optarg);
            break;
        case 'm':
            opt.consoles = atoi(optarg);
            break;
        case 'a':
            opt.agency = optarg;
            break;
        case 'W':
            opt.warmup = atof(optarg);
            break;
        case 'd':
            opt.duration = atof(optarg);
            break;
        case 'D':
            opt.drain = atof(optarg);
            break;
        case 'j':
            opt.parallel = atoi(optarg);
            break;
        case 'k':
            opt.kill_pid = (pid_t)atol(optarg);
            break;
        case 'x':
            opt.drop = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (opt.n_ws <= 0 || opt.n_udp < 0 || opt.n_failover < 0 || opt.consoles <= 0 ||
        opt.units <= 0 || opt.parallel <= 0 || opt.duration <= 0 || opt.warmup < 0 ||
        opt.drain < 0 || (opt.n_udp > 0 && opt.rate <= 0) || optind != argc ||
        (opt.drop && opt.n_failover <= 0))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_options(argc, argv) < 0) {
        usage(stderr);
        return 64;
    }
    bench_process_setup();

    conns = calloc((size_t)opt.consoles, sizeof(*conns));
    units = calloc((size_t)opt.units, sizeof(*units));
    scratch = malloc(READ_CHUNK);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || units == NULL || scratch == NULL || epfd < 0) {
        perror("cluster_probe");
        return 1;
    }
    for (int i = 0; i < opt.consoles; i++)
        conns[i] = (struct conn){.fd = -1, .state = ST_WAITING, .port = opt.ws[i % opt.n_ws]};

    double t = mono_s(), deadline = t + SETUP_TIMEOUT_S;
    pump_connects();
    while (!stop_requested && g.live + g.failed < opt.consoles && mono_s() < deadline)
        poll_once(20);
    fprintf(stderr, "cluster_probe: %d consoles joined in %.2f s (%d failed)\n", g.live,
            mono_s() - t, g.failed);
    if (g.live == 0)
        return 1;

    /* The window is a span of send times; with a failover it starts once every console is
     * back, so it measures delivery after the failover; after a kill alone, at the kill. */
    double start = mono_s(), next_hb = start + HEARTBEAT_S;
    uint64_t start_us = wall_us();
    bool failing_over = opt.kill_pid > 0 || opt.drop;
    if (!failing_over) {
        window_end_us = start_us + (uint64_t)((opt.warmup + opt.duration) * 1e6);
        window_start_us = start_us + (uint64_t)(opt.warmup * 1e6);
    }
    pthread_t pub;
    bool publishing = opt.n_udp > 0;
    if (publishing && pthread_create(&pub, NULL, publisher, &start) != 0) {
        perror("cluster_probe: publisher thread");
        return 1;
    }
    run_until(start + opt.warmup, &next_hb);
    if (failing_over && opt.n_failover == 0) {
        g.kill_us = wall_us();
        if (kill(opt.kill_pid, SIGKILL) < 0)
            perror("cluster_probe: kill");
    } else if (failing_over) {
        failover(&next_hb);
    }
    if (failing_over) {
        /* The end first: until the start is stored, nothing is counted. */
        uint64_t now_us = wall_us();
        window_end_us = now_us + (uint64_t)(opt.duration * 1e6);
        window_start_us = now_us;
    }
    uint64_t sent_before = atomic_load(&pub_sent);
    double cpu_before = cpu_s(), w0 = mono_s();
    run_until(w0 + opt.duration, &next_hb);
    double window = mono_s() - w0, cpu_share = (cpu_s() - cpu_before) / window;
    uint64_t sent_in_window_approx = atomic_load(&pub_sent) - sent_before;
    run_until(mono_s() + opt.drain, &next_hb); /* what was sent late in the window arrives */
    if (publishing) {
        atomic_store(&pub_stop, true);
        pthread_join(pub, NULL);
    }

    uint64_t sent = publishing ? atomic_load(&pub_in_window) : 0, got = 0, worst = UINT64_MAX;
    int live = 0;
    for (int i = 0; i < opt.consoles; i++) {
        got += conns[i].in_window;
        if (conns[i].in_window < worst)
            worst = conns[i].in_window;
        live += conns[i].state == ST_LIVE;
    }
    double expected = (double)sent * opt.consoles;
    printf("result consoles=%d live=%d failed=%d window_s=%.2f offered_per_s=%.0f"
           " sent_in_window=%" PRIu64 " delivered=%.5f worst=%.5f reached_none=%" PRIu64
           " reached_some_not_all=%.0f delivered_per_s=%.0f"
           " p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f positions=%" PRIu64
           " unmatched=%" PRIu64 " dup=%" PRIu64 " refused=%" PRIu64 " pub_skipped=%" PRIu64
           " pub_errors=%" PRIu64 " probe_cpu=%.2f\n",
           opt.consoles, live, g.failed, window, (double)sent_in_window_approx / window, sent,
           expected > 0 ? (double)got / expected : 0, sent > 0 ? (double)worst / (double)sent : 0,
           sent - g.reached, (double)g.reached * opt.consoles - (double)got, (double)got / window,
           hist_ms(&g.latency, 0.50), hist_ms(&g.latency, 0.99), hist_ms(&g.latency, 0.999),
           (double)g.latency.max / 1000.0, g.positions, g.unmatched, g.dup, g.refused,
           (uint64_t)atomic_load(&pub_skipped), (uint64_t)atomic_load(&pub_errors), cpu_share);
    fflush(stdout);
    for (int i = 0; i < opt.consoles; i++)
        if (!conn_gone(&conns[i]))
            conn_close(&conns[i]);
    return 0;
}
