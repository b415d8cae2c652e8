/*
 * bench_common.h - what the load tools (loadgen, cluster_probe, js_stream) share: clocks,
 * the latency histogram, a growable buffer, the client side of WebSocket and Phoenix, and
 * the parsing of numbers and position times. One copy, so every tool measures and
 * reports the same way; each tool includes it once (static inline: nothing to link).
 */
#ifndef GR_BENCH_COMMON_H
#define GR_BENCH_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
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

/* ---- clocks ---------------------------------------------------------------------------- */

static inline uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this process (all threads), to tell when the load side is the limit. */
static inline double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Advances *tick by ns and sleeps until then: a publisher's fixed pace on CLOCK_MONOTONIC. */
static inline void sleep_next_tick(struct timespec *tick, long ns)
{
    tick->tv_nsec += ns;
    if (tick->tv_nsec >= 1000000000) {
        tick->tv_nsec -= 1000000000;
        tick->tv_sec++;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, tick, NULL);
}

/*
 * How many reports a publisher at rate/s owes, elapsed_s after its start, having sent
 * `sent` and skipped *skipped. Further behind than lag_max_s, it skips (adding to
 * *skipped) instead of bursting to catch up.
 */
static inline uint64_t reports_due(double elapsed_s, double rate, uint64_t sent, uint64_t *skipped,
                                   double lag_max_s)
{
    double due_f = elapsed_s * rate - (double)(sent + *skipped);
    if (due_f > rate * lag_max_s) {
        uint64_t skip = (uint64_t)(due_f - rate * lag_max_s);
        *skipped += skip;
        due_f -= (double)skip;
    }
    return due_f > 0 ? (uint64_t)due_f : 0;
}

/* ---- the process --------------------------------------------------------------------------- */

/* SIGINT/SIGTERM end a run early: the result so far is printed and every console is
 * reset, so no TIME_WAIT is left on the source ports for the next run. */
static volatile sig_atomic_t stop_requested;

static inline void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Signals as above, no SIGPIPE, and as many file descriptors as allowed: returns that. */
static inline rlim_t bench_process_setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct rlimit nofile;
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
    return nofile.rlim_cur;
}

/* ---- the latency histogram ---------------------------------------------------------------- */

/* Exact below 2048 us, then 256 sub-buckets per power of two (0.4%). */
#define HIST_LINEAR 2048
#define HIST_SUB    256
#define HIST_SIZE   (HIST_LINEAR + 44 * HIST_SUB)

struct hist {
    uint64_t n, max;
    uint64_t bucket[HIST_SIZE];
};

static inline void hist_add(struct hist *h, uint64_t us)
{
    size_t i;
    if (us < HIST_LINEAR) {
        i = (size_t)us;
    } else {
        int e = 63 - __builtin_clzll(us); /* >= 11 */
        i = HIST_LINEAR + (size_t)(e - 11) * HIST_SUB + (size_t)((us >> (e - 8)) & (HIST_SUB - 1));
        if (i >= HIST_SIZE)
            i = HIST_SIZE - 1;
    }
    h->bucket[i]++;
    h->n++;
    if (us > h->max)
        h->max = us;
}

/* The lower bound of bucket i, in microseconds. */
static inline uint64_t hist_value(size_t i)
{
    if (i < HIST_LINEAR)
        return i;
    size_t e = 11 + (i - HIST_LINEAR) / HIST_SUB, sub = (i - HIST_LINEAR) % HIST_SUB;
    return ((uint64_t)1 << e) + ((uint64_t)sub << (e - 8));
}

/* The q quantile in milliseconds: the lower bound of its bucket; 0 when empty. */
static inline double hist_ms(const struct hist *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)(h->n - 1)) + 1, seen = 0;
    for (size_t i = 0; i < HIST_SIZE; i++) {
        seen += h->bucket[i];
        if (seen >= rank)
            return (double)hist_value(i) / 1000.0;
    }
    return (double)h->max / 1000.0;
}

/* ---- a connection's buffer ----------------------------------------------------------------- */

struct buf {
    char *data;
    uint32_t len, cap;
};

/* Appends p[0..n); -1 when that would pass max bytes (a protocol error) or memory is out. */
static inline int buf_append(struct buf *b, const void *p, size_t n, uint32_t max)
{
    if (b->len + n > max)
        return -1;
    if (b->len + n > b->cap) {
        uint32_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL)
            return -1;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += (uint32_t)n;
    return 0;
}

/* Drops the first `used` bytes; frees a large buffer once it is empty again. */
static inline void buf_consume(struct buf *b, size_t used)
{
    b->len -= (uint32_t)used;
    if (b->len > 0) {
        memmove(b->data, b->data + used, b->len);
    } else if (b->cap > 65536) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
}

/* Decoding p[0..n) from console_read used `used` bytes: keeps the rest in raw for the next
 * read; -1 when raw would pass max. */
static inline int buf_keep(struct buf *raw, const char *p, size_t n, size_t used, uint32_t max)
{
    if (p != raw->data)
        return used < n ? buf_append(raw, p + used, n - used, max) : 0;
    buf_consume(raw, used);
    return 0;
}

static inline void buf_free(struct buf *b)
{
    free(b->data);
    *b = (struct buf){0};
}

/* ---- numbers and position times ----------------------------------------------------------- */

static inline uint64_t parse_u64(const char *p, const char *end)
{
    uint64_t v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    return v;
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil). */
static inline int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* "2026-11-23T18:20:01.123Z" at p: milliseconds since 1970, or 0. */
static inline uint64_t parse_iso_ms(const char *p, const char *end)
{
    if (end - p < 24 || p[4] != '-' || p[10] != 'T' || p[19] != '.')
        return 0;
    int64_t days = days_from_civil((int64_t)parse_u64(p, p + 4), (unsigned)parse_u64(p + 5, p + 7),
                                   (unsigned)parse_u64(p + 8, p + 10));
    uint64_t s = (uint64_t)days * 86400 + parse_u64(p + 11, p + 13) * 3600 +
                 parse_u64(p + 14, p + 16) * 60 + parse_u64(p + 17, p + 19);
    return s * 1000 + parse_u64(p + 20, p + 23);
}

/* ---- consoles' connections ------------------------------------------------------------------ */

/*
 * Console i's connection to 127.0.0.1:port, nonblocking, from 127.0.0.<1 + i / per_addr>
 * (each source address has its own ephemeral ports), in epfd for writing (the connect)
 * and reading, with i as its data. *fd is set once there is a socket, for the caller to
 * close on failure. Returns 0 or an errno.
 */
static inline int console_connect(int epfd, int i, int port, int per_addr, int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (*fd < 0)
        return errno;
    int one = 1;
    setsockopt(*fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i / per_addr))};
    struct sockaddr_in dst = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(*fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(*fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS))
        return errno;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, *fd, &ev) < 0 ? errno : 0;
}

/* The connect of console i on fd has ended: 0 when it succeeded (and from now on only
 * reading wakes the console), or its errno. */
static inline int console_connected(int epfd, int i, int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0)
        return err;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
    return 0;
}

/*
 * Reads what a console's socket has into scratch[0..cap) and says where to decode from,
 * in *p and *n: scratch itself when nothing was left over (no copy), else raw with the
 * read appended. Returns 1 then; 0 when there was nothing to read; -1 with *why when the
 * connection ended or raw would pass max.
 */
static inline int console_read(int fd, struct buf *raw, char *scratch, size_t cap, uint32_t max,
                               const char **p, size_t *n, const char **why)
{
    ssize_t r = read(fd, scratch, cap);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
        *why = r == 0 ? "closed by the server" : strerror(errno);
        return -1;
    }
    if (raw->len == 0) {
        *p = scratch;
        *n = (size_t)r;
        return 1;
    }
    if (buf_append(raw, scratch, (size_t)r, max) < 0) {
        *why = "too much undecoded input";
        return -1;
    }
    *p = raw->data;
    *n = raw->len;
    return 1;
}

/* Closes with a reset: no TIME_WAIT on the 127.0.0.x ports, and the server hears at once. */
static inline void close_reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* ---- WebSocket and Phoenix, the client's side ------------------------------------------- */

/* Small writes to a socket that is keeping up: all of it goes, or it is an error. */
static inline int send_all(int fd, const void *p, size_t n)
{
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    return w == (ssize_t)n ? 0 : -1;
}

/* The upgrade request for path on 127.0.0.1:port; extra: more header lines, or "". */
static inline int ws_upgrade_request(char *out, size_t cap, const char *path, int port,
                                     const char *extra)
{
    return snprintf(out, cap,
                    "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n%s\r\n",
                    path, port, extra);
}

/* The server's answer to the upgrade in p[0..n): the bytes of its head once it is all
 * there and says 101, 0 while it is incomplete, -1 otherwise. */
static inline long ws_upgrade_reply(const char *p, size_t n)
{
    const char *head_end = memmem(p, n, "\r\n\r\n", 4);
    if (head_end == NULL)
        return n > 8192 ? -1 : 0;
    if (n < 12 || memcmp(p + 9, "101", 3) != 0)
        return -1;
    return (long)(head_end + 4 - p);
}

struct ws_in {
    int opcode;
    bool fin;
    const char *payload;
    size_t len;
};

/* The next complete server frame (servers do not mask) in p[*at..n): 1 with it in *f and
 * *at past it, 0 while it is not all there, -1 when its payload would pass max. */
static inline int ws_next_frame(const char *p, size_t n, size_t *at, uint32_t max, struct ws_in *f)
{
    if (n - *at < 2)
        return 0;
    const unsigned char *u = (const unsigned char *)p + *at;
    size_t len = u[1] & 0x7f, h = 2;
    if (len == 126) {
        if (n - *at < 4)
            return 0;
        len = (size_t)u[2] << 8 | u[3];
        h = 4;
    } else if (len == 127) {
        if (n - *at < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | u[2 + i];
        h = 10;
    }
    if (len > max)
        return -1;
    if (n - *at < h + len)
        return 0;
    *f = (struct ws_in){u[0] & 0x0f, (u[0] & 0x80) != 0, p + *at + h, len};
    *at += h + len;
    return 1;
}

/*
 * A data frame p[0..n) of a message that may come in fragments: 1 when the message is
 * whole, in *m and *mn (p itself when it came in one frame, else msg, which the caller
 * empties once done with it); 0 while fragments are missing; -1 past max bytes.
 */
static inline int ws_message(struct buf *msg, const char *p, size_t n, bool fin, uint32_t max,
                             const char **m, size_t *mn)
{
    if (fin && msg->len == 0) {
        *m = p;
        *mn = n;
        return 1;
    }
    if (buf_append(msg, p, n, max) < 0)
        return -1;
    *m = msg->data;
    *mn = msg->len;
    return fin;
}

/* The largest client frame: joins, heartbeats, pongs and MQTT packets of one report. */
#define WS_CLIENT_FRAME_MAX 528

/* A client frame: FIN, the opcode, a mask (RFC 6455 requires one from clients). */
static inline int ws_send(int fd, int opcode, const void *payload, size_t n)
{
    unsigned char frame[WS_CLIENT_FRAME_MAX];
    static const unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t h = 0;
    if (n + 14 > sizeof(frame))
        return -1;
    frame[h++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        frame[h++] = (unsigned char)(0x80 | n);
    } else {
        frame[h++] = 0x80 | 126;
        frame[h++] = (unsigned char)(n >> 8);
        frame[h++] = (unsigned char)n;
    }
    memcpy(frame + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        frame[h + i] = ((const unsigned char *)payload)[i] ^ mask[i % 4];
    return send_all(fd, frame, h + n);
}

/* Joins agency:<agency>; with since, from seq of epoch (a rejoin that asks for recovery). */
static inline int phoenix_join(int fd, const char *agency, bool since, const char *epoch,
                               uint64_t seq)
{
    char frame[256];
    int n = since && epoch[0] ? snprintf(frame, sizeof(frame),
                                         "[\"1\",\"1\",\"agency:%s\",\"phx_join\","
                                         "{\"since\":{\"epoch\":\"%s\",\"seq\":%" PRIu64 "}}]",
                                         agency, epoch, seq)
                              : snprintf(frame, sizeof(frame),
                                         "[\"1\",\"1\",\"agency:%s\",\"phx_join\",{}]", agency);
    return ws_send(fd, 1, frame, (size_t)n);
}

/* A heartbeat with this ref, into out[cap]; returns its length. */
static inline int phoenix_heartbeat(char *out, size_t cap, unsigned ref)
{
    return snprintf(out, cap, "[null,\"%u\",\"phoenix\",\"heartbeat\",{}]", ref);
}

enum phoenix_kind {
    PHX_POSITIONS,  /* a "positions" push: *positions is where its payload starts */
    PHX_PUSH_OTHER, /* another push */
    PHX_HEARTBEAT,  /* a heartbeat's reply */
    PHX_REPLY,      /* another reply: a join's */
    PHX_OTHER,      /* phx_close and the like */
};

/* What a complete Phoenix message m[0..n) (a JSON array) is. */
static inline enum phoenix_kind phoenix_kind(const char *m, size_t n, const char **positions)
{
    static const char PUSH[] = "[null,null,";
    if (n > sizeof(PUSH) && memcmp(m, PUSH, sizeof(PUSH) - 1) == 0) {
        /* [null,null,"agency:x","positions",{"positions":[...]}] */
        const char *ev = memchr(m + sizeof(PUSH), ',', n - sizeof(PUSH));
        if (ev != NULL && m + n - ev > 13 && memcmp(ev, ",\"positions\",", 13) == 0) {
            *positions = ev + 13;
            return PHX_POSITIONS;
        }
        return PHX_PUSH_OTHER;
    }
    if (memmem(m, n, "\"phx_reply\"", 11) == NULL)
        return PHX_OTHER;
    if (n > 7 && memcmp(m, "[null,\"", 7) == 0)
        return PHX_HEARTBEAT;
    return PHX_REPLY;
}

/*
 * A join reply m[0..end): 1 when it is ok, 0 when refused, -1 without epoch or seq. When
 * ok: the epoch goes into epoch[cap] if that is still empty, *seq is the reply's seq and
 * *rest points just after it, where the snapshot's positions follow.
 */
static inline int phoenix_join_reply(const char *m, const char *end, char *epoch, size_t cap,
                                     uint64_t *seq, const char **rest)
{
    if (memmem(m, (size_t)(end - m), "\"status\":\"ok\"", 13) == NULL)
        return 0;
    const char *e = memmem(m, (size_t)(end - m), "\"epoch\":\"", 9);
    const char *s = memmem(m, (size_t)(end - m), "\"seq\":", 6);
    if (e == NULL || s == NULL)
        return -1;
    e += 9;
    const char *q = memchr(e, '"', (size_t)(end - e));
    if (q != NULL && (size_t)(q - e) < cap && epoch[0] == '\0')
        memcpy(epoch, e, (size_t)(q - e));
    *seq = parse_u64(s + 6, end);
    *rest = s + 6;
    return 1;
}

/* ---- the publishers' reports ------------------------------------------------------------- */

/* A fix time for a unit's report sent at now_us, in ms: fix times must rise per unit
 * (docs/ingest.md rejects older and equal), so a repeat is raised by a millisecond. */
static inline uint64_t next_fix_ms(uint64_t *last_ms, uint64_t now_us)
{
    uint64_t ms = now_us / 1000;
    if (ms <= *last_ms)
        ms = *last_ms + 1;
    *last_ms = ms;
    return ms;
}

/* Where unit u is after k moves: its own spot near New York, east by ~0.1 m a report. */
static inline void unit_position(int u, uint64_t k, double *lat, double *lon)
{
    *lat = 40.70 + (double)(u % 100) * 0.001;
    *lon = -74.10 + (double)(u / 100) * 0.001 + (double)(k % 100000) * 0.000001;
}

/* "$<body>*<checksum>\r\n" into out[cap]; returns its length. */
static inline int nmea_sentence(char *out, size_t cap, const char *body)
{
    unsigned sum = 0;
    for (const char *p = body; *p; p++)
        sum ^= (unsigned char)*p;
    return snprintf(out, cap, "$%s*%02X\r\n", body, sum);
}

/* The fields of a fix at ms (wall clock) and lat, lon that RMC and GGA share. */
struct nmea_fix {
    struct tm tm;
    char hms[48], pos[96];
};

static inline void nmea_fix(struct nmea_fix *f, uint64_t ms, double lat, double lon)
{
    time_t s = (time_t)(ms / 1000);
    gmtime_r(&s, &f->tm);
    snprintf(f->hms, sizeof(f->hms), "%02d%02d%02d.%03u", f->tm.tm_hour, f->tm.tm_min, f->tm.tm_sec,
             (unsigned)(ms % 1000));
    double alat = lat < 0 ? -lat : lat, alon = lon < 0 ? -lon : lon;
    snprintf(f->pos, sizeof(f->pos), "%02d%08.5f,%c,%03d%08.5f,%c", (int)alat,
             (alat - (int)alat) * 60.0, lat < 0 ? 'S' : 'N', (int)alon, (alon - (int)alon) * 60.0,
             lon < 0 ? 'W' : 'E');
}

/* The RMC sentence of f into out[cap]; returns its length. */
static inline int nmea_rmc(char *out, size_t cap, const struct nmea_fix *f)
{
    char body[256];
    snprintf(body, sizeof(body), "GPRMC,%s,A,%s,23.9,271.5,%02d%02d%02d,,,A", f->hms, f->pos,
             f->tm.tm_mday, f->tm.tm_mon + 1, f->tm.tm_year % 100);
    return nmea_sentence(out, cap, body);
}

#endif
