/*
 * loadgen.c - dispatch-console load generator for gpsrelayd, and for mosquitto with the
 * same payload and fan-out, so both are measured by one tool in one run.
 *
 * One process: M console connections on one epoll loop (this thread), and optionally a
 * publisher thread that sends reports at a fixed rate over U units. Consoles speak the
 * real protocols:
 *
 *   gpsrelay   WebSocket upgrade (vsn=2.0.0), masked text frames, Phoenix v2 join of
 *              agency:<prefix><k>, heartbeats; "positions" pushes are parsed and every
 *              position in them is counted and timed.
 *   mqtt-ws    MQTT 3.1.1 over WebSocket (subprotocol "mqtt", binary frames) to mosquitto:
 *              CONNECT, SUBSCRIBE agency/<prefix><k> at QoS 0, PINGREQ as heartbeat.
 *   mqtt-tcp   the same over plain TCP.
 *
 * Console i belongs to agency i % K; unit u (device id "U-<u>") to agency u % K, so each
 * report fans out to M/K consoles. The publisher sends, for gpsrelay, JSON reports
 * carrying "attrs":{"sent_us":<unix us>} (or id-prefixed NMEA RMC+GGA whose fix time is the
 * wall clock at send, to the millisecond) over UDP; for MQTT it publishes the position
 * object exactly as a gpsrelay console receives it (same fields, same encoding, same
 * sent_us attrs), one position per PUBLISH, on the unit's agency topic. Latency is the
 * receive wall clock minus sent_us (or minus the fix time: 1 ms resolution for NMEA).
 *
 * Phases: connect every console (at most --parallel handshakes at once), then publish for
 * --warmup + --duration seconds; only positions received inside the measurement window
 * (after the warm-up) are counted. With --storm, at the end of the warm-up every console
 * is dropped at once (TCP reset) and reconnects and rejoins with
 * {"since":{"epoch":E,"seq":N}} from its previous join reply and pushes; the time until
 * every console has its rejoin reply is reported.
 *
 * Output: progress on stderr; one "result ..." line of key=value pairs on stdout (and a
 * "storm ..." line with --storm) for the bench scripts to parse.
 *
 * usage: loadgen --help
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

/* ---- bounds ----------------------------------------------------------------------------- */

#define READ_CHUNK (256 * 1024) /* one read() per readable event, into a shared buffer */
#define CONN_BUFFER_MAX                                                                            \
    (4u << 20)         /* a console's undecoded bytes: a join snapshot of                          \
                        * thousands of units fits; more is a protocol error */
#define EVENTS_MAX 512 /* epoll events taken per wait */
#define CONSOLES_PER_ADDR                                                                          \
    10000                   /* consoles per 127.0.0.x source address: well inside                  \
                             * the 28,232 ephemeral ports Linux gives each */
#define PUB_BATCH   64      /* datagrams per sendmmsg */
#define PUB_TICK_NS 1000000 /* the publisher wakes every millisecond */
#define PUB_LAG_MAX_S                                                                              \
    0.1                       /* a publisher further behind than this skips ahead                  \
                               * (counted) instead of bursting to catch up */
#define REPORT_MAX      512   /* one report or one MQTT publish */
#define SETUP_TIMEOUT_S 180.0 /* connecting every console must finish by then */
#define STORM_TIMEOUT_S 60.0  /* every dropped console must have rejoined by then */
#define DRAIN_S         0.3   /* after the window, wait this long before closing */

/* ---- options ------------------------------------------------------------------------------ */

enum proto { PROTO_PHOENIX, PROTO_MQTT_WS, PROTO_MQTT_TCP };
enum format { FORMAT_JSON, FORMAT_NMEA };

static struct options {
    enum proto proto;
    int port;     /* consoles connect here: gpsrelay listen_ws, or mosquitto's listener */
    int pub_port; /* publisher: gpsrelay listen_udp, or mosquitto's plain MQTT listener */
    int consoles, agencies;
    const char *agency_prefix;
    int units;
    double rate; /* reports per second over all units */
    enum format format;
    double warmup, duration;
    int heartbeat_s;
    int parallel;
    bool storm;
    bool busy_poll; /* never sleep in epoll_wait: see --busy-poll */
} opt = {
    .proto = PROTO_PHOENIX,
    .consoles = 1000,
    .agencies = 1,
    .agency_prefix = "bench-",
    .units = 1000,
    .format = FORMAT_JSON,
    .warmup = 2,
    .duration = 5,
    .heartbeat_s = 30,
    .parallel = 500,
};

/* ---- consoles ----------------------------------------------------------------------------------
 */

enum state { ST_DOWN, ST_CONNECTING, ST_UPGRADING, ST_JOINING, ST_LIVE };

struct conn {
    int fd;
    uint8_t state;
    bool rejoined; /* storm: its rejoin reply came */
    uint32_t agency;
    uint32_t hb_ref;     /* last heartbeat ref sent */
    uint64_t hb_sent_us; /* and when */
    uint64_t last_seq;   /* highest seq seen: the join reply's, or a pushed position's */
    struct buf raw;      /* transport bytes not decoded yet */
    struct buf msg;      /* a fragmented WebSocket message, or the rest of an MQTT packet */
};

static struct conn *conns;
static int epfd;
static char *scratch;

static struct {
    /* setup and storm */
    int live, failed, in_flight, next_to_connect;
    int *queue; /* consoles waiting to (re)connect */
    int queue_len;
    char epoch[64];
    /* the measurement window */
    bool counting;
    uint64_t positions, frames, position_bytes, hb_replies, pushes_other;
    uint64_t snapshot_positions, recovered, not_recovered, refused;
    struct hist latency, hb_rtt, storm;
    struct hist storm_connected, storm_upgraded; /* storm: when each step of the rejoins ended */
    uint64_t storm_start_us;
    int rejoined;
} g;

/* The publisher's counters, read by the main thread at the end. */
static atomic_uint_fast64_t pub_sent, pub_skipped, pub_errors;
static atomic_bool pub_stop;

static int conn_index(const struct conn *c)
{
    return (int)(c - conns);
}

/* Closes with a reset: no TIME_WAIT on the 127.0.0.x ports, and the server hears at once. */
static void conn_down(struct conn *c)
{
    if (c->fd >= 0)
        close_reset(c->fd);
    if (c->state == ST_LIVE)
        g.live--;
    else if (c->state != ST_DOWN)
        g.in_flight--;
    c->fd = -1;
    c->state = ST_DOWN;
    buf_free(&c->raw);
    buf_free(&c->msg);
}

static void conn_fail(struct conn *c, const char *why)
{
    if (g.failed++ < 5)
        fprintf(stderr, "loadgen: console %d: %s\n", conn_index(c), why);
    conn_down(c);
}

/* MQTT bytes go out as one binary WebSocket frame, or straight onto the TCP stream. */
static int mqtt_send(struct conn *c, const void *p, size_t n)
{
    return opt.proto == PROTO_MQTT_WS ? ws_send(c->fd, 2, p, n) : send_all(c->fd, p, n);
}

static size_t mqtt_put_len(unsigned char *p, size_t n)
{
    size_t i = 0;
    do {
        unsigned char b = n % 128;
        n /= 128;
        p[i++] = (unsigned char)(b | (n ? 0x80 : 0));
    } while (n);
    return i;
}

static size_t mqtt_put_str(unsigned char *p, const char *s)
{
    size_t n = strlen(s);
    p[0] = (unsigned char)(n >> 8);
    p[1] = (unsigned char)n;
    memcpy(p + 2, s, n);
    return n + 2;
}

static int mqtt_connect(struct conn *c)
{
    unsigned char body[128], pkt[160];
    char id[32];
    snprintf(id, sizeof(id), "lg-%d", conn_index(c));
    size_t n = mqtt_put_str(body, "MQTT");
    body[n++] = 4;    /* MQTT 3.1.1 */
    body[n++] = 0x02; /* clean session */
    int keepalive = 2 * opt.heartbeat_s;
    body[n++] = (unsigned char)(keepalive >> 8);
    body[n++] = (unsigned char)keepalive;
    n += mqtt_put_str(body + n, id);
    pkt[0] = 0x10;
    size_t h = 1 + mqtt_put_len(pkt + 1, n);
    memcpy(pkt + h, body, n);
    return mqtt_send(c, pkt, h + n);
}

static int mqtt_subscribe(struct conn *c)
{
    unsigned char body[128], pkt[160];
    char topic[96];
    snprintf(topic, sizeof(topic), "agency/%s%u", opt.agency_prefix, c->agency);
    size_t n = 0;
    body[n++] = 0;
    body[n++] = 1; /* packet id */
    n += mqtt_put_str(body + n, topic);
    body[n++] = 0; /* QoS 0 */
    pkt[0] = 0x82;
    size_t h = 1 + mqtt_put_len(pkt + 1, n);
    memcpy(pkt + h, body, n);
    return mqtt_send(c, pkt, h + n);
}

static int loadgen_join(struct conn *c, bool since)
{
    char agency[96];
    snprintf(agency, sizeof(agency), "%s%u", opt.agency_prefix, c->agency);
    return phoenix_join(c->fd, agency, since, g.epoch, c->last_seq);
}

static void heartbeat(struct conn *c)
{
    c->hb_sent_us = wall_us();
    int rc;
    if (opt.proto == PROTO_PHOENIX) {
        char frame[64];
        int n = phoenix_heartbeat(frame, sizeof(frame), ++c->hb_ref);
        rc = ws_send(c->fd, 1, frame, (size_t)n);
    } else {
        static const unsigned char pingreq[2] = {0xc0, 0};
        rc = mqtt_send(c, pingreq, 2);
    }
    if (rc < 0)
        conn_fail(c, "heartbeat not sent");
}

/* ---- what consoles receive ------------------------------------------------------------------- */

static const char SEQ_KEY[] = "\"seq\":";
static const char SENT_KEY[] = "\"sent_us\":";
static const char TIME_KEY[] = "\"time\":\"";

/*
 * Counts and times the positions in p[0..n): each is an object with "seq", and "sent_us"
 * in its attrs (or a "time" set to the send time, for NMEA). Returns how many.
 */
static uint64_t scan_positions(struct conn *c, const char *p, const char *end, uint64_t now_us,
                               bool timed)
{
    uint64_t count = 0;
    const char *key = opt.format == FORMAT_JSON ? SENT_KEY : TIME_KEY;
    size_t key_len = opt.format == FORMAT_JSON ? sizeof(SENT_KEY) - 1 : sizeof(TIME_KEY) - 1;
    for (;;) {
        const char *s = memmem(p, (size_t)(end - p), SEQ_KEY, sizeof(SEQ_KEY) - 1);
        if (s == NULL)
            break;
        s += sizeof(SEQ_KEY) - 1;
        uint64_t seq = parse_u64(s, end);
        if (seq > c->last_seq)
            c->last_seq = seq;
        const char *t = memmem(s, (size_t)(end - s), key, key_len);
        if (t == NULL)
            break;
        t += key_len;
        count++;
        if (timed) {
            uint64_t sent =
                opt.format == FORMAT_JSON ? parse_u64(t, end) : parse_iso_ms(t, end) * 1000;
            hist_add(&g.latency, now_us > sent ? now_us - sent : 0);
        }
        p = t;
    }
    return count;
}

static void console_live(struct conn *c)
{
    c->state = ST_LIVE;
    g.in_flight--;
    g.live++;
}

/* A join reply: epoch and seq to resume from; whether the since was honoured. */
static void join_reply(struct conn *c, const char *m, const char *end, uint64_t now_us)
{
    uint64_t seq;
    const char *rest;
    int ok = phoenix_join_reply(m, end, g.epoch, sizeof(g.epoch), &seq, &rest);
    if (ok <= 0) {
        g.refused += ok == 0;
        conn_fail(c, ok == 0 ? "join refused" : "join reply without epoch or seq");
        return;
    }
    if (seq > c->last_seq)
        c->last_seq = seq;
    g.snapshot_positions += scan_positions(c, rest, end, now_us, false);
    if (c->state == ST_JOINING)
        console_live(c);
    if (g.storm_start_us != 0 && !c->rejoined) {
        c->rejoined = true;
        g.rejoined++;
        hist_add(&g.storm, now_us - g.storm_start_us);
        if (memmem(m, (size_t)(end - m), "\"recovered\":true", 16) != NULL)
            g.recovered++;
        else
            g.not_recovered++;
    }
}

/* One complete Phoenix message (a JSON array). */
static void phoenix_message(struct conn *c, const char *m, size_t n)
{
    const char *end = m + n, *positions = NULL;
    uint64_t now_us = wall_us();
    switch (phoenix_kind(m, n, &positions)) {
    case PHX_POSITIONS: {
        uint64_t k = scan_positions(c, positions, end, now_us, g.counting);
        if (g.counting) {
            g.positions += k;
            g.frames++;
            g.position_bytes += n;
        }
        break;
    }
    case PHX_PUSH_OTHER:
        g.pushes_other++;
        break;
    case PHX_HEARTBEAT:
        g.hb_replies++;
        if (c->hb_sent_us)
            hist_add(&g.hb_rtt, now_us - c->hb_sent_us);
        c->hb_sent_us = 0;
        break;
    case PHX_REPLY:
        join_reply(c, m, end, now_us);
        break;
    case PHX_OTHER:
        break;
    }
}

/* The MQTT stream of a console: the bytes not yet decoded are in p[0..n); returns how
 * many it used (whole packets only). */
static size_t mqtt_packets(struct conn *c, const char *p, size_t n)
{
    size_t at = 0;
    uint64_t now_us = wall_us();
    while (at < n) {
        const unsigned char *u = (const unsigned char *)p + at;
        size_t len = 0, h = 1;
        int shift = 0;
        for (;; h++) {
            if (at + h >= n || h > 4)
                return h > 4 ? (size_t)-1 : at;
            len |= (size_t)(u[h] & 0x7f) << shift;
            shift += 7;
            if (!(u[h] & 0x80))
                break;
        }
        h++;
        if (at + h + len > n)
            return at;
        const char *body = p + at + h;
        switch (u[0] >> 4) {
        case 2: /* CONNACK */
            if (len < 2 || body[1] != 0 || mqtt_subscribe(c) < 0)
                return (size_t)-1;
            break;
        case 9: /* SUBACK */
            if (c->state == ST_JOINING)
                console_live(c);
            break;
        case 3: { /* PUBLISH, QoS 0: topic, payload */
            size_t tlen =
                len >= 2 ? (size_t)((unsigned char)body[0] << 8 | (unsigned char)body[1]) : len;
            if (tlen + 2 > len)
                return (size_t)-1;
            uint64_t k = scan_positions(c, body + 2 + tlen, body + len, now_us, g.counting);
            if (g.counting) {
                g.positions += k;
                g.frames++;
                g.position_bytes += len - 2 - tlen;
            }
            break;
        }
        case 13: /* PINGRESP */
            g.hb_replies++;
            if (c->hb_sent_us)
                hist_add(&g.hb_rtt, now_us - c->hb_sent_us);
            c->hb_sent_us = 0;
            break;
        default:
            break;
        }
        at += h + len;
    }
    return at;
}

/* One complete WebSocket frame from the server (servers do not mask). */
static int ws_frame(struct conn *c, int opcode, bool fin, const char *p, size_t n)
{
    if (opcode == 8) { /* close */
        unsigned code = n >= 2 ? ((unsigned char)p[0] << 8 | (unsigned char)p[1]) : 0;
        char why[64];
        snprintf(why, sizeof(why), "closed by the server (%u)", code);
        conn_fail(c, why);
        return -1;
    }
    if (opcode == 9) /* ping */
        return ws_send(c->fd, 10, p, n);
    if (opcode == 10)
        return 0;
    if (opt.proto == PROTO_MQTT_WS) {
        /* A byte stream: packets may span frames, and frames hold several packets. */
        if (c->msg.len == 0) {
            size_t used = mqtt_packets(c, p, n);
            if (used == (size_t)-1)
                return -1;
            return used < n ? buf_append(&c->msg, p + used, n - used, CONN_BUFFER_MAX) : 0;
        }
        if (buf_append(&c->msg, p, n, CONN_BUFFER_MAX) < 0)
            return -1;
        size_t used = mqtt_packets(c, c->msg.data, c->msg.len);
        if (used == (size_t)-1)
            return -1;
        buf_consume(&c->msg, used);
        return 0;
    }
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

/* Decodes what it can of p[0..n); returns the bytes used, or -1 on a protocol error. */
static long decode(struct conn *c, const char *p, size_t n)
{
    size_t at = 0;
    if (c->state == ST_UPGRADING) {
        long head = ws_upgrade_reply(p, n);
        if (head <= 0)
            return head;
        at = (size_t)head;
        c->state = ST_JOINING;
        if (g.storm_start_us != 0)
            hist_add(&g.storm_upgraded, wall_us() - g.storm_start_us);
        int rc =
            opt.proto == PROTO_PHOENIX ? loadgen_join(c, g.storm_start_us != 0) : mqtt_connect(c);
        if (rc < 0)
            return -1;
    }
    if (opt.proto == PROTO_MQTT_TCP) {
        size_t used = mqtt_packets(c, p + at, n - at);
        return used == (size_t)-1 ? -1 : (long)(at + used);
    }
    for (struct ws_in f;;) {
        int got = ws_next_frame(p, n, &at, CONN_BUFFER_MAX, &f);
        if (got <= 0)
            return got < 0 ? -1 : (long)at;
        if (ws_frame(c, f.opcode, f.fin, f.payload, f.len) < 0 || c->state == ST_DOWN)
            return -1;
    }
}

static void on_readable(struct conn *c)
{
    const char *p, *why = NULL;
    size_t n;
    int got = console_read(c->fd, &c->raw, scratch, READ_CHUNK, CONN_BUFFER_MAX, &p, &n, &why);
    if (got <= 0) {
        if (got < 0)
            conn_fail(c, why);
        return;
    }
    long used = decode(c, p, n);
    if (used >= 0 && c->state != ST_DOWN &&
        buf_keep(&c->raw, p, n, (size_t)used, CONN_BUFFER_MAX) < 0)
        used = -1;
    if (used < 0 && c->state != ST_DOWN)
        conn_fail(c, "protocol error");
}

/* ---- connecting -------------------------------------------------------------------------------
 */

static void start_connect(int i)
{
    struct conn *c = &conns[i];
    c->state = ST_CONNECTING;
    g.in_flight++;
    int err = console_connect(epfd, i, opt.port, CONSOLES_PER_ADDR, &c->fd);
    if (err != 0)
        conn_fail(c, strerror(err));
}

static void on_connected(struct conn *c)
{
    int err = console_connected(epfd, conn_index(c), c->fd);
    if (err != 0) {
        conn_fail(c, strerror(err));
        return;
    }
    if (g.storm_start_us != 0)
        hist_add(&g.storm_connected, wall_us() - g.storm_start_us);
    if (opt.proto == PROTO_MQTT_TCP) {
        c->state = ST_JOINING;
        if (mqtt_connect(c) < 0)
            conn_fail(c, "CONNECT not sent");
        return;
    }
    char req[512];
    int n = ws_upgrade_request(
        req, sizeof(req), opt.proto == PROTO_PHOENIX ? "/socket/websocket?vsn=2.0.0" : "/mqtt",
        opt.port, opt.proto == PROTO_PHOENIX ? "" : "Sec-WebSocket-Protocol: mqtt\r\n");
    c->state = ST_UPGRADING;
    if (send_all(c->fd, req, (size_t)n) < 0)
        conn_fail(c, "upgrade not sent");
}

/* Starts connects from the queue while fewer than --parallel handshakes are in flight. */
static void pump_connects(void)
{
    while (g.in_flight < opt.parallel && g.next_to_connect < g.queue_len)
        start_connect(g.queue[g.next_to_connect++]);
}

static void poll_once(int timeout_ms)
{
    struct epoll_event ev[EVENTS_MAX];
    int n = epoll_wait(epfd, ev, EVENTS_MAX, opt.busy_poll ? 0 : timeout_ms);
    for (int k = 0; k < n; k++) {
        struct conn *c = &conns[ev[k].data.u32];
        if (c->state == ST_DOWN)
            continue;
        if (c->state == ST_CONNECTING) {
            on_connected(c);
            continue;
        }
        if (ev[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            on_readable(c);
    }
    pump_connects();
}

/* ---- the publisher ------------------------------------------------------------------------------
 */

/* Wall-clock ISO 8601 with milliseconds, as gpsrelay writes position times. */
static int format_iso_ms(char *out, size_t cap, uint64_t ms)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    return snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
                    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                    (unsigned)(ms % 1000));
}

struct unit {
    uint64_t last_ms; /* fix times must rise per unit: docs/ingest.md rejects older and equal */
    uint32_t moves;
};

/* A JSON report, for gpsrelay's UDP ingest. */
static int report_json(char *out, int u, struct unit *un, uint64_t now_us)
{
    double lat, lon;
    unit_position(u, un->moves++, &lat, &lon);
    char when[80];
    format_iso_ms(when, sizeof(when), next_fix_ms(&un->last_ms, now_us));
    return snprintf(out, REPORT_MAX,
                    "{\"id\":\"U-%d\",\"time\":\"%s\",\"lat\":%.7f,\"lon\":%.7f,\"speed\":12.3,"
                    "\"course\":271.5,\"attrs\":{\"sent_us\":%" PRIu64 "}}",
                    u, when, lat, lon, now_us);
}

/* RMC + GGA of one cycle with an id prefix (the sim's shape); fix time = wall clock. */
static int report_nmea(char *out, int u, struct unit *un, uint64_t now_us)
{
    double lat, lon;
    unit_position(u, un->moves++, &lat, &lon);
    struct nmea_fix f;
    nmea_fix(&f, next_fix_ms(&un->last_ms, now_us), lat, lon);
    char body[256];
    int n = snprintf(out, REPORT_MAX, "U-%d,", u);
    n += nmea_rmc(out + n, (size_t)(REPORT_MAX - n), &f);
    snprintf(body, sizeof(body), "GPGGA,%s,%s,1,09,0.9,10.2,M,-34.2,M,,", f.hms, f.pos);
    n += snprintf(out + n, (size_t)(REPORT_MAX - n), "U-%d,", u); /* each line has its id */
    n += nmea_sentence(out + n, (size_t)(REPORT_MAX - n), body);
    return n;
}

/* An MQTT PUBLISH of the position object a gpsrelay console would get for this report:
 * the same keys and number formats as gpsrelay's encoder (gr_position_encode,
 * src/hub/encode.c). */
static int publish_mqtt(unsigned char *out, int u, struct unit *un, uint64_t now_us, uint64_t seq)
{
    double lat, lon;
    unit_position(u, un->moves++, &lat, &lon);
    char when[80], payload[REPORT_MAX], topic[96];
    format_iso_ms(when, sizeof(when), next_fix_ms(&un->last_ms, now_us));
    int n = snprintf(payload, sizeof(payload),
                     "{\"device\":\"U-%d\",\"seq\":%" PRIu64 ",\"time\":\"%s\",\"lat\":%.7f,"
                     "\"lon\":%.7f,\"speed\":12.3,\"course\":271.5,\"src\":\"json\","
                     "\"attrs\":{\"sent_us\":%" PRIu64 "}}",
                     u, seq, when, lat, lon, now_us);
    snprintf(topic, sizeof(topic), "agency/%s%d", opt.agency_prefix, u % opt.agencies);
    size_t tl = strlen(topic), body = 2 + tl + (size_t)n;
    out[0] = 0x30;
    size_t h = 1 + mqtt_put_len(out + 1, body);
    h += mqtt_put_str(out + h, topic);
    memcpy(out + h, payload, (size_t)n);
    return (int)(h + (size_t)n);
}

static int publisher_socket(bool mqtt)
{
    int fd = socket(AF_INET, mqtt ? SOCK_STREAM : SOCK_DGRAM, 0);
    struct sockaddr_in dst = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)opt.pub_port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
        perror("loadgen: publisher");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!mqtt) {
        int big = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
        return fd;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* CONNECT without keepalive; wait for the CONNACK. */
    static const unsigned char connect_pkt[] = {0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4,
                                                0x02, 0,  0, 0, 4,   'p', 'u', 'b', '0'};
    unsigned char ack[4];
    if (write(fd, connect_pkt, sizeof(connect_pkt)) != (ssize_t)sizeof(connect_pkt) ||
        read(fd, ack, 4) != 4 || ack[0] != 0x20 || ack[3] != 0) {
        fprintf(stderr, "loadgen: publisher: no CONNACK from the broker\n");
        close(fd);
        return -1;
    }
    return fd;
}

static void *publisher(void *arg)
{
    double *start = arg;
    bool mqtt = opt.proto != PROTO_PHOENIX;
    int fd = publisher_socket(mqtt);
    if (fd < 0) {
        atomic_store(&pub_errors, 1);
        return NULL;
    }
    struct unit *units = calloc((size_t)opt.units, sizeof(*units));
    static char dgram[PUB_BATCH][REPORT_MAX];
    static unsigned char stream[PUB_BATCH * REPORT_MAX];
    struct mmsghdr msgs[PUB_BATCH];
    struct iovec iov[PUB_BATCH];
    uint64_t sent = 0, skipped = 0, errors = 0;
    struct timespec tick;
    clock_gettime(CLOCK_MONOTONIC, &tick);
    while (!atomic_load(&pub_stop)) {
        uint64_t due = reports_due(mono_s() - *start, opt.rate, sent, &skipped, PUB_LAG_MAX_S);
        while (due > 0) {
            int batch = due < PUB_BATCH ? (int)due : PUB_BATCH;
            uint64_t now_us = wall_us();
            size_t stream_len = 0;
            for (int k = 0; k < batch; k++) {
                int u = (int)((sent + skipped + (uint64_t)k) % (uint64_t)opt.units);
                if (mqtt) {
                    stream_len += (size_t)publish_mqtt(stream + stream_len, u, &units[u], now_us,
                                                       sent + (uint64_t)k + 1);
                } else {
                    int n = opt.format == FORMAT_JSON ? report_json(dgram[k], u, &units[u], now_us)
                                                      : report_nmea(dgram[k], u, &units[u], now_us);
                    iov[k] = (struct iovec){dgram[k], (size_t)n};
                    msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[k], .msg_iovlen = 1}};
                }
            }
            if (mqtt) {
                for (size_t off = 0; off < stream_len;) {
                    ssize_t w = write(fd, stream + off, stream_len - off);
                    if (w <= 0) {
                        errors++;
                        goto out;
                    }
                    off += (size_t)w;
                }
            } else {
                int r = sendmmsg(fd, msgs, (unsigned)batch, 0);
                if (r < batch)
                    errors += (uint64_t)(batch - (r > 0 ? r : 0));
            }
            sent += (uint64_t)batch;
            due -= (uint64_t)batch;
        }
        atomic_store(&pub_sent, sent);
        atomic_store(&pub_skipped, skipped);
        sleep_next_tick(&tick, PUB_TICK_NS);
    }
out:
    atomic_store(&pub_sent, sent);
    atomic_store(&pub_skipped, skipped);
    atomic_store(&pub_errors, errors);
    free(units);
    close(fd);
    return NULL;
}

/* ---- the run ------------------------------------------------------------------------------------
 */

/* Heartbeats: each second, the consoles whose index falls in this second's slice, so
 * every console sends one every --heartbeat seconds and the load is spread evenly. */
static void heartbeats(long second)
{
    for (int i = (int)(second % opt.heartbeat_s); i < opt.consoles; i += opt.heartbeat_s)
        if (conns[i].state == ST_LIVE)
            heartbeat(&conns[i]);
}

static void run_until(double end, double *next_hb, long *hb_second)
{
    for (double now; !stop_requested && (now = mono_s()) < end;) {
        if (now >= *next_hb) {
            heartbeats((*hb_second)++);
            *next_hb += 1.0;
        }
        double wait = end - now < *next_hb - now ? end - now : *next_hb - now;
        poll_once(wait > 0.05 ? 50 : (int)(wait * 1000) + 1);
    }
}

/* Drops every live console at once, then has them all reconnect and rejoin with since. */
static void storm(double *next_hb, long *hb_second)
{
    g.queue_len = g.next_to_connect = 0;
    g.storm_start_us = wall_us();
    g.snapshot_positions = 0; /* from here on: what the rejoin replies carried */
    for (int i = 0; i < opt.consoles; i++) {
        if (conns[i].state != ST_LIVE)
            continue;
        conn_down(&conns[i]);
        g.queue[g.queue_len++] = i;
    }
    int dropped = g.queue_len, failed_before = g.failed;
    fprintf(stderr, "loadgen: dropped %d consoles at once\n", dropped);
    double deadline = mono_s() + STORM_TIMEOUT_S;
    pump_connects();
    while (!stop_requested && g.rejoined + g.failed - failed_before < dropped &&
           mono_s() < deadline)
        run_until(mono_s() + 0.01, next_hb, hb_second);
    printf("storm dropped=%d rejoined=%d failed=%d recovered=%" PRIu64 " not_recovered=%" PRIu64
           " all_ms=%.1f p50_ms=%.1f p99_ms=%.1f snapshot_positions=%" PRIu64
           " connected_p50_ms=%.1f connected_max_ms=%.1f upgraded_p50_ms=%.1f"
           " upgraded_max_ms=%.1f\n",
           dropped, g.rejoined, g.failed - failed_before, g.recovered, g.not_recovered,
           (double)g.storm.max / 1000.0, hist_ms(&g.storm, 0.50), hist_ms(&g.storm, 0.99),
           g.snapshot_positions, hist_ms(&g.storm_connected, 0.50),
           (double)g.storm_connected.max / 1000.0, hist_ms(&g.storm_upgraded, 0.50),
           (double)g.storm_upgraded.max / 1000.0);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: loadgen [options]\n"
               "  --proto gpsrelay|mqtt-ws|mqtt-tcp   console protocol [gpsrelay]\n"
               "  --port N          console port: gpsrelay listen_ws, or the broker's listener\n"
               "  --pub-port N      publisher: gpsrelay listen_udp (UDP), or the broker's plain\n"
               "                    MQTT port (TCP); 0 or absent: no publisher (idle consoles)\n"
               "  --consoles M      [1000]    --agencies K   [1]   (console i: agency i %% K)\n"
               "  --agency-prefix P agency ids P0..P(K-1) [bench-]\n"
               "  --units U         [1000]    --rate R  reports/s over all units\n"
               "  --format json|nmea          reports to gpsrelay [json]\n"
               "  --warmup S [2]  --duration S [5]   measurement window after the warm-up\n"
               "  --heartbeat S     heartbeat period per console [30]\n"
               "  --parallel N      handshakes in flight at once [500]\n"
               "  --storm           drop every console after the warm-up; time the rejoin\n"
               "  --busy-poll       never sleep in epoll_wait (see below)\n"
               "\n"
               "--busy-poll: consoles are on other machines in real use. On loopback a sleeping\n"
               "receiver makes every server send() also wake it: an inter-processor interrupt\n"
               "from the server's core, a VM exit on a virtual machine. A spinning receiver\n"
               "needs no wake-up, so the server's core pays for less of the consoles' side\n"
               "(their TCP receive still runs there). It costs the load generator a whole core.\n");
}

static int parse_options(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"proto", required_argument, NULL, 'P'},
        {"port", required_argument, NULL, 'p'},
        {"pub-port", required_argument, NULL, 'u'},
        {"consoles", required_argument, NULL, 'm'},
        {"agencies", required_argument, NULL, 'k'},
        {"agency-prefix", required_argument, NULL, 'a'},
        {"units", required_argument, NULL, 'U'},
        {"rate", required_argument, NULL, 'r'},
        {"format", required_argument, NULL, 'f'},
        {"warmup", required_argument, NULL, 'w'},
        {"duration", required_argument, NULL, 'd'},
        {"heartbeat", required_argument, NULL, 'H'},
        {"parallel", required_argument, NULL, 'j'},
        {"storm", no_argument, NULL, 's'},
        {"busy-poll", no_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    for (int ch; (ch = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        switch (ch) {
        case 'P':
            if (strcmp(optarg, "gpsrelay") == 0)
                opt.proto = PROTO_PHOENIX;
            else if (strcmp(optarg, "mqtt-ws") == 0)
                opt.proto = PROTO_MQTT_WS;
            else if (strcmp(optarg, "mqtt-tcp") == 0)
                opt.proto = PROTO_MQTT_TCP;
            else
                return -1;
            break;
        case 'p':
            opt.port = atoi(optarg);
            break;
        case 'u':
            opt.pub_port = atoi(optarg);
            break;
        case 'm':
            opt.consoles = atoi(optarg);
            break;
        case 'k':
            opt.agencies = atoi(optarg);
            break;
        case 'a':
            opt.agency_prefix = optarg;
            break;
        case 'U':
            opt.units = atoi(optarg);
            break;
        case 'r':
            opt.rate = atof(optarg);
            break;
        case 'f':
            opt.format = strcmp(optarg, "nmea") == 0 ? FORMAT_NMEA : FORMAT_JSON;
            break;
        case 'w':
            opt.warmup = atof(optarg);
            break;
        case 'd':
            opt.duration = atof(optarg);
            break;
        case 'H':
            opt.heartbeat_s = atoi(optarg);
            break;
        case 'j':
            opt.parallel = atoi(optarg);
            break;
        case 's':
            opt.storm = true;
            break;
        case 'B':
            opt.busy_poll = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (opt.port <= 0 || opt.consoles <= 0 || opt.agencies <= 0 || opt.units <= 0 ||
        opt.heartbeat_s <= 0 || opt.parallel <= 0 || opt.duration <= 0 || opt.warmup < 0 ||
        (opt.pub_port > 0 && opt.rate <= 0) || optind != argc)
        return -1;
    if (opt.proto != PROTO_PHOENIX && opt.format != FORMAT_JSON) {
        fprintf(stderr, "loadgen: MQTT runs publish JSON positions only\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_options(argc, argv) < 0) {
        usage(stderr);
        return 64;
    }
    rlim_t nofile = bench_process_setup();
    if ((rlim_t)opt.consoles + 16 > nofile)
        fprintf(stderr, "loadgen: warning: %d consoles but only %ju file descriptors\n",
                opt.consoles, (uintmax_t)nofile);

    conns = calloc((size_t)opt.consoles, sizeof(*conns));
    g.queue = calloc((size_t)opt.consoles, sizeof(*g.queue));
    scratch = malloc(READ_CHUNK);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (conns == NULL || g.queue == NULL || scratch == NULL || epfd < 0) {
        perror("loadgen");
        return 1;
    }
    for (int i = 0; i < opt.consoles; i++) {
        conns[i].fd = -1;
        conns[i].agency = (uint32_t)(i % opt.agencies);
        g.queue[i] = i;
    }
    g.queue_len = opt.consoles;

    /* Connect and join every console. */
    double t = mono_s(), deadline = t + SETUP_TIMEOUT_S;
    pump_connects();
    while (!stop_requested && g.live + g.failed < opt.consoles && mono_s() < deadline)
        poll_once(50);
    double setup_s = mono_s() - t;
    fprintf(stderr, "loadgen: %d consoles joined in %.2f s (%d failed)\n", g.live, setup_s,
            g.failed);
    if (g.live == 0)
        return 1;

    /* Publish for warm-up + window; count only inside the window. */
    double start = mono_s(), next_hb = start + 1.0;
    long hb_second = 0;
    pthread_t pub;
    bool publishing = opt.pub_port > 0;
    if (publishing && pthread_create(&pub, NULL, publisher, &start) != 0) {
        perror("loadgen: publisher thread");
        return 1;
    }
    run_until(start + opt.warmup, &next_hb, &hb_second);
    if (opt.storm)
        storm(&next_hb, &hb_second);
    uint64_t sent_before = atomic_load(&pub_sent);
    double cpu_before = cpu_s();
    double window_start = mono_s();
    g.counting = true;
    run_until(window_start + opt.duration, &next_hb, &hb_second);
    g.counting = false;
    double window = mono_s() - window_start;
    double cpu_share = (cpu_s() - cpu_before) / window;
    uint64_t sent_in_window = atomic_load(&pub_sent) - sent_before;
    if (publishing) {
        atomic_store(&pub_stop, true);
        pthread_join(pub, NULL);
    }
    run_until(mono_s() + DRAIN_S, &next_hb, &hb_second);

    double fanout = (double)opt.consoles / opt.agencies;
    printf("result proto=%s consoles=%d live=%d failed=%d setup_s=%.2f window_s=%.2f "
           "offered_per_s=%.0f expected_per_s=%.0f delivered_per_s=%.0f frames_per_s=%.0f "
           "positions_per_frame=%.2f bytes_per_position=%.1f p50_ms=%.2f p99_ms=%.2f "
           "p999_ms=%.2f max_ms=%.2f hb_replies=%" PRIu64 " hb_p99_ms=%.2f pub_skipped=%" PRIu64
           " pub_errors=%" PRIu64 " loadgen_cpu=%.2f\n",
           opt.proto == PROTO_PHOENIX   ? "gpsrelay"
           : opt.proto == PROTO_MQTT_WS ? "mqtt-ws"
                                        : "mqtt-tcp",
           opt.consoles, g.live, g.failed, setup_s, window, (double)sent_in_window / window,
           (double)sent_in_window / window * fanout, (double)g.positions / window,
           (double)g.frames / window, g.frames ? (double)g.positions / (double)g.frames : 0,
           g.positions ? (double)g.position_bytes / (double)g.positions : 0,
           hist_ms(&g.latency, 0.50), hist_ms(&g.latency, 0.99), hist_ms(&g.latency, 0.999),
           (double)g.latency.max / 1000.0, g.hb_replies, hist_ms(&g.hb_rtt, 0.99),
           (uint64_t)atomic_load(&pub_skipped), (uint64_t)atomic_load(&pub_errors), cpu_share);
    fflush(stdout);
    for (int i = 0; i < opt.consoles; i++)
        if (conns[i].state != ST_DOWN)
            conn_down(&conns[i]);
    free(conns);
    free(g.queue);
    free(scratch);
    close(epfd);
    return 0;
}
