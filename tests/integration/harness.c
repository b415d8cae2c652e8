/*
 * harness.c - see harness.h. Plain POSIX sockets and poll(); 127.0.0.1 only.
 *
 * Time: every wait is computed from a deadline on CLOCK_MONOTONIC and done in poll(), so
 * nothing here sleeps and nothing waits longer than its caller allowed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* asprintf, memmem, strsignal; CMake defines it for the whole tree */
#endif
#include "harness.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS   10000      /* READY=1 must come within this (ASan builds start slowly) */
#define STOP_TIMEOUT_MS    10000      /* docs/operations.md says 5 s; twice that, then SIGKILL */
#define CONNECT_TIMEOUT_MS 5000       /* TCP connect + WebSocket handshake */
#define SEND_TIMEOUT_MS    5000       /* a send that cannot complete in this means a stuck peer */
#define HTTP_MAX           (4u << 20) /* largest HTTP response we buffer (/metrics is small) */
#define HTTP_HEAD_MAX      16384      /* largest response head we accept */
#define WS_MESSAGE_MAX     (16u << 20)  /* largest WebSocket message we reassemble */
#define LOG_DUMP_MAX       (512u << 10) /* print at most the last 512 KiB of stderr.log */

/* ---- Time and socket primitives ------------------------------------------------------- */

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ms_left(int64_t deadline)
{
    int64_t left = deadline - now_ms();
    if (left < 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* Waits until fd has events or the deadline passes: 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, ms_left(deadline));
        if (r > 0)
            return 1; /* POLLERR/POLLHUP too: the next recv/send reports what happened */
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

/* Reads exactly n bytes: 0, 1 on timeout, -1 on EOF or error. */
static int recv_exact(int fd, void *buf, size_t n, int64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, (char *)buf + got, n - got, MSG_DONTWAIT);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            return -1;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0)
            return w == 0 ? 1 : -1;
    }
    return 0;
}

static int send_all(int fd, const void *buf, size_t n, int64_t deadline)
{
    size_t done = 0;
    while (done < n) {
        /* MSG_NOSIGNAL: a peer that closed gives EPIPE, not a SIGPIPE killing the test. */
        ssize_t r = send(fd, (const char *)buf + done, n - done, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r >= 0) {
            done += (size_t)r;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (wait_fd(fd, POLLOUT, deadline) <= 0)
            return -1;
    }
    return 0;
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    return a;
}

/* A non-blocking TCP socket connected to 127.0.0.1:port, or -1. */
int harness_rcvbuf;       /* see harness.h */
char **harness_child_env; /* see harness.h */

static int tcp_connect(int port, int64_t deadline)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (harness_rcvbuf > 0) /* before connect, so the window it advertises is small too */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &harness_rcvbuf, sizeof harness_rcvbuf);
    /* Small frames go out at once: Nagle would hold a second frame for the peer's ACK. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = loopback(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0)
        return fd;
    if (errno != EINPROGRESS)
        goto fail;
    if (wait_fd(fd, POLLOUT, deadline) <= 0) {
        errno = ETIMEDOUT;
        goto fail;
    }
    int err = 0;
    socklen_t elen = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0) {
        errno = err ? err : errno;
        goto fail;
    }
    return fd;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* Bind port 0, read it back. */
int free_loopback_port(int type)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = loopback(0);
    socklen_t alen = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept (RFC 6455 section 4.2.2) --------------- */

static uint32_t rol32(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

/* One 64-byte block of FIPS 180-4 SHA-1. */
static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

static void sha1(const void *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    const uint8_t *p = data;
    size_t full = len / 64 * 64;
    for (size_t i = 0; i < full; i += 64)
        sha1_block(h, p + i);
    /* Padding: 0x80, zeros, then the bit length big-endian, in one or two blocks. */
    uint8_t tail[128] = {0};
    size_t rest = len - full;
    memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    size_t tlen = rest + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tlen - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t i = 0; i < tlen; i += 64)
        sha1_block(h, tail + i);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

/* Standard base64 with padding; out needs 4 * ceil(len / 3) + 1 bytes. */
static void base64(const uint8_t *in, size_t len, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

static void random_bytes(void *buf, size_t n)
{
    /* getrandom() on small sizes cannot be short unless interrupted; fall back anyway. */
    if (getrandom(buf, n, 0) == (ssize_t)n)
        return;
    for (size_t i = 0; i < n; i++)
        ((uint8_t *)buf)[i] = (uint8_t)rand();
}

/* ---- HTTP heads ------------------------------------------------------------------------ */

/* The status code of "HTTP/1.x NNN ...", or -1. */
static int parse_status(const char *head)
{
    int code;
    if (strncmp(head, "HTTP/1.", 7) != 0 || sscanf(head + 8, " %3d", &code) != 1)
        return -1;
    return code;
}

/* Copies the trimmed value of header name (case-insensitive) from a head; false if absent. */
static bool header_get(const char *head, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line != NULL) {
        line += 2;
        const char *eol = strstr(line, "\r\n");
        if (eol == NULL || eol == line)
            break;
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon != NULL && (size_t)(colon - line) == nlen && strncasecmp(line, name, nlen) == 0) {
            const char *v = colon + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *end = eol;
            while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
            size_t n = (size_t)(end - v);
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
        line = eol;
    }
    return false;
}

/* Case-insensitive search for a token in a comma-separated header value. */
static bool header_has_token(const char *value, const char *token)
{
    size_t tlen = strlen(token);
    const char *p = value;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p;
        while (*end != '\0' && *end != ',')
            end++;
        const char *e = end;
        while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - p) == tlen && strncasecmp(p, token, tlen) == 0)
            return true;
        p = end;
    }
    return false;
}

/* Decodes a chunked body in place (NUL-terminated buffer); returns the decoded length. */
static size_t dechunk(char *p, size_t len)
{
    size_t in = 0, out = 0;
    while (in < len) {
        char *end;
        unsigned long n = strtoul(p + in, &end, 16);
        char *crlf = memmem(p + in, len - in, "\r\n", 2);
        if (crlf == NULL || end == p + in)
            break;
        in = (size_t)(crlf - p) + 2;
        if (n == 0)
            break;
        if (n > len - in)
            n = len - in; /* truncated response: keep what came */
        memmove(p + out, p + in, n);
        out += n;
        in += n + 2;
    }
    return out;
}

int http_get(int port, const char *path, char *body, size_t cap, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    if (body != NULL && cap > 0)
        body[0] = '\0';
    int fd = tcp_connect(port, deadline);
    if (fd < 0) {
        fprintf(stderr, "http_get %s: connect 127.0.0.1:%d: %s\n", path, port, strerror(errno));
        return -1;
    }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                     "User-Agent: gpsrelay-harness\r\n\r\n",
                     path, port);
    if (n < 0 || (size_t)n >= sizeof req || send_all(fd, req, (size_t)n, deadline) < 0) {
        fprintf(stderr, "http_get %s: cannot send the request\n", path);
        close(fd);
        return -1;
    }

    size_t len = 0, bufcap = 8192;
    char *buf = malloc(bufcap);
    size_t head_len = 0; /* bytes up to and including the blank line, once seen */
    long content_length = -1;
    bool chunked = false, eof = false, timed_out = false;
    int status = -1;
    while (buf != NULL) {
        if (head_len > 0 && content_length >= 0 && len - head_len >= (size_t)content_length)
            break;
        if (len + 1 >= bufcap) {
            if (bufcap >= HTTP_MAX) {
                fprintf(stderr, "http_get %s: response over %u bytes\n", path, HTTP_MAX);
                break;
            }
            char *bigger = realloc(buf, bufcap * 2);
            if (bigger == NULL)
                break;
            buf = bigger;
            bufcap *= 2;
        }
        int w = wait_fd(fd, POLLIN, deadline);
        if (w == 0) {
            timed_out = true;
            break;
        }
        ssize_t r = w < 0 ? -1 : recv(fd, buf + len, bufcap - 1 - len, MSG_DONTWAIT);
        if (r == 0) {
            eof = true;
            break;
        }
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            eof = true; /* ECONNRESET after the response counts as its end */
            break;
        }
        len += (size_t)r;
        buf[len] = '\0';
        if (head_len == 0) {
            char *blank = strstr(buf, "\r\n\r\n");
            if (blank == NULL)
                continue;
            head_len = (size_t)(blank - buf) + 4;
            status = parse_status(buf);
            char v[64];
            if (header_get(buf, "Content-Length", v, sizeof v))
                content_length = strtol(v, NULL, 10);
            if (header_get(buf, "Transfer-Encoding", v, sizeof v) && header_has_token(v, "chunked"))
                chunked = true;
            if (status == 204 || status == 304)
                content_length = 0;
        }
    }
    close(fd);
    if (buf == NULL) {
        fprintf(stderr, "http_get %s: out of memory\n", path);
        return -1;
    }
    if (head_len == 0) {
        fprintf(stderr, "http_get %s: %s before a complete response head\n", path,
                timed_out ? "timeout" : "connection closed");
        free(buf);
        return -1;
    }
    if (timed_out) {
        /* No length and no close: the client cannot know where the body ends. */
        fprintf(stderr,
                "http_get %s: warning: response neither closed nor delimited within %d ms\n", path,
                timeout_ms);
    }
    (void)eof;
    char *b = buf + head_len;
    size_t blen = len - head_len;
    if (content_length >= 0 && blen > (size_t)content_length)
        blen = (size_t)content_length;
    if (chunked) {
        b[blen] = '\0';
        blen = dechunk(b, blen);
    }
    if (body != NULL && cap > 0) {
        size_t n2 = blen < cap - 1 ? blen : cap - 1;
        memcpy(body, b, n2);
        body[n2] = '\0';
    }
    if (status < 0)
        fprintf(stderr, "http_get %s: bad status line\n", path);
    free(buf);
    return status;
}

int udp_send(int port, const void *data, size_t len)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = loopback(port);
    ssize_t r = sendto(fd, data, len, 0, (struct sockaddr *)&a, sizeof a);
    int saved = errno;
    close(fd);
    if (r != (ssize_t)len) {
        fprintf(stderr, "udp_send 127.0.0.1:%d: %s\n", port, r < 0 ? strerror(saved) : "short");
        return -1;
    }
    return 0;
}

int udp_send_rmc(int port, const char *device, int64_t time_ms, double lat, double lon)
{
    time_t t = (time_t)(time_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    double alat = fabs(lat), alon = fabs(lon);
    int dlat = (int)alat, dlon = (int)alon;
    char body[160], line[256];
    snprintf(body, sizeof body,
             "GPRMC,%02d%02d%02d.%03d,A,%02d%09.6f,%c,%03d%09.6f,%c,1.0,90.0,%02d%02d%02d,,,A",
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(time_ms % 1000), dlat, (alat - dlat) * 60,
             lat < 0 ? 'S' : 'N', dlon, (alon - dlon) * 60, lon < 0 ? 'W' : 'E', tm.tm_mday,
             tm.tm_mon + 1, tm.tm_year % 100);
    unsigned sum = 0;
    for (const char *p = body; *p; p++)
        sum ^= (unsigned char)*p;
    int n = snprintf(line, sizeof line, "%s,$%s*%02X\r\n", device, body, sum);
    return udp_send(port, line, (size_t)n);
}

/* ---- WebSocket client ------------------------------------------------------------------ */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 section 1.3 */

int ws_connect_ex(int port, const char *path_and_query, const char *extra_headers, int *http_status,
                  char *resp, size_t cap)
{
    int64_t deadline = now_ms() + CONNECT_TIMEOUT_MS;
    int dummy;
    if (http_status == NULL)
        http_status = &dummy;
    *http_status = 0;
    if (resp != NULL && cap > 0)
        resp[0] = '\0';

    int fd = tcp_connect(port, deadline);
    if (fd < 0) {
        fprintf(stderr, "ws_connect: connect 127.0.0.1:%d: %s\n", port, strerror(errno));
        return -1;
    }

    uint8_t nonce[16];
    char key[32];
    random_bytes(nonce, sizeof nonce);
    base64(nonce, sizeof nonce, key);

    const char *extra = extra_headers != NULL ? extra_headers : "";
    size_t elen = strlen(extra);
    bool extra_needs_crlf = elen > 0 && (elen < 2 || strcmp(extra + elen - 2, "\r\n") != 0);
    char *req = NULL;
    int n = asprintf(&req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s\r\n",
                     path_and_query, port, key, extra, extra_needs_crlf ? "\r\n" : "");
    if (n < 0 || send_all(fd, req, (size_t)n, deadline) < 0) {
        fprintf(stderr, "ws_connect %s: cannot send the upgrade request\n", path_and_query);
        if (n >= 0)
            free(req);
        close(fd);
        return -1;
    }
    free(req);

    /* Read the head byte by byte, so no frame that follows it is consumed here. */
    char head[HTTP_HEAD_MAX];
    size_t hlen = 0;
    for (;;) {
        if (hlen + 1 >= sizeof head) {
            fprintf(stderr, "ws_connect %s: response head too long\n", path_and_query);
            close(fd);
            return -1;
        }
        int r = recv_exact(fd, head + hlen, 1, deadline);
        if (r != 0) {
            head[hlen] = '\0';
            int early = parse_status(head);
            *http_status = early > 0 ? early : 0;
            fprintf(stderr, "ws_connect %s: %s before a complete response (%zu bytes)\n",
                    path_and_query, r == 1 ? "timeout" : "connection closed", hlen);
            close(fd);
            return -1;
        }
        hlen++;
        if (hlen >= 4 && memcmp(head + hlen - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    head[hlen] = '\0';
    if (resp != NULL && cap > 0)
        snprintf(resp, cap, "%s", head);

    int status = parse_status(head);
    *http_status = status > 0 ? status : 0;
    if (status != 101) {
        close(fd); /* a refusal (403, ...): the caller asserts on *http_status */
        return -1;
    }

    char v[256], concat[128], expect[32];
    uint8_t digest[20];
    snprintf(concat, sizeof concat, "%s%s", key, WS_GUID);
    sha1(concat, strlen(concat), digest);
    base64(digest, sizeof digest, expect);
    const char *bad = NULL;
    if (!header_get(head, "Upgrade", v, sizeof v) || strcasecmp(v, "websocket") != 0)
        bad = "Upgrade is not websocket";
    else if (!header_get(head, "Connection", v, sizeof v) || !header_has_token(v, "upgrade"))
        bad = "Connection has no upgrade token";
    else if (!header_get(head, "Sec-WebSocket-Accept", v, sizeof v) || strcmp(v, expect) != 0)
        bad = "Sec-WebSocket-Accept is wrong";
    if (bad != NULL) {
        fprintf(stderr, "ws_connect %s: invalid 101 response: %s\n%s", path_and_query, bad, head);
        close(fd);
        return -1;
    }
    return fd;
}

int ws_connect(int port, const char *path_and_query, const char *extra_headers, int *http_status)
{
    return ws_connect_ex(port, path_and_query, extra_headers, http_status, NULL, 0);
}

/* Builds and sends one frame; 0 or -1 (errno set). */
static int send_frame(int fd, int opcode, const void *p, size_t len, bool masked)
{
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)(((opcode & WS_FLAG_NOFIN) ? 0 : 0x80) |
                         ((opcode & WS_FLAG_RSV1) ? 0x40 : 0) | (opcode & 0x0f));
    uint8_t m = masked ? 0x80 : 0;
    if (len < 126) {
        hdr[h++] = (uint8_t)(m | len);
    } else if (len <= 0xffff) {
        hdr[h++] = m | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = m | 127;
        for (int i = 7; i >= 0; i--)
            hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t key[4] = {0};
    if (masked) {
        random_bytes(key, sizeof key);
        memcpy(hdr + h, key, 4);
        h += 4;
    }
    uint8_t *frame = malloc(h + len);
    if (frame == NULL)
        return -1;
    memcpy(frame, hdr, h);
    const uint8_t *src = p;
    for (size_t i = 0; i < len; i++)
        frame[h + i] = masked ? (uint8_t)(src[i] ^ key[i & 3]) : src[i];
    int r = send_all(fd, frame, h + len, now_ms() + SEND_TIMEOUT_MS);
    int saved = errno;
    free(frame);
    errno = saved;
    return r;
}

int ws_send_frame(int fd, int opcode, const void *p, size_t len, bool masked)
{
    int r = send_frame(fd, opcode, p, len, masked);
    if (r < 0)
        fprintf(stderr, "ws_send_frame: %s\n", strerror(errno));
    return r;
}

int ws_send_text(int fd, const char *text)
{
    return ws_send_frame(fd, WS_OP_TEXT, text, strlen(text), true);
}

int ws_send_close(int fd, int code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    return ws_send_frame(fd, WS_OP_CLOSE, p, code < 0 ? 0 : 2, true);
}

/* One frame: 0 with a malloc'd NUL-terminated payload, 1 timeout, -1 EOF/error/violation. */
static int read_frame(int fd, int64_t deadline, bool *fin, int *op, char **data, size_t *dlen)
{
    uint8_t h[2];
    int r = recv_exact(fd, h, 2, deadline);
    if (r != 0)
        return r;
    *fin = (h[0] & 0x80) != 0;
    *op = h[0] & 0x0f;
    if (h[0] & 0x70) {
        fprintf(stderr, "ws_recv: server frame with RSV bits 0x%02x (no extension agreed)\n",
                h[0] & 0x70);
        return -1;
    }
    if (h[1] & 0x80) {
        fprintf(stderr, "ws_recv: masked server frame (RFC 6455 section 5.1 forbids it)\n");
        return -1;
    }
    uint64_t len = h[1] & 0x7f;
    if (len >= 126) {
        uint8_t ext[8];
        size_t n = len == 126 ? 2 : 8;
        if ((r = recv_exact(fd, ext, n, deadline)) != 0)
            return r;
        len = 0;
        for (size_t i = 0; i < n; i++)
            len = len << 8 | ext[i];
    }
    if (len > WS_MESSAGE_MAX) {
        fprintf(stderr, "ws_recv: frame of %" PRIu64 " bytes, over our limit\n", len);
        return -1;
    }
    char *buf = malloc((size_t)len + 1);
    if (buf == NULL)
        return -1;
    if ((r = recv_exact(fd, buf, (size_t)len, deadline)) != 0) {
        free(buf);
        return r;
    }
    buf[len] = '\0';
    *data = buf;
    *dlen = (size_t)len;
    return 0;
}

int ws_recv(int fd, char **payload, size_t *len, int *opcode, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    char *msg = NULL; /* a fragmented message being reassembled */
    size_t msg_len = 0;
    int msg_op = -1;
    *payload = NULL;
    *len = 0;
    *opcode = -1;

    for (;;) {
        /* The caller's timeout bounds the wait for a message to begin, and only that:
         * giving up halfway through a frame would lose our place in the stream. */
        if (msg_op < 0) {
            int w = wait_fd(fd, POLLIN, deadline);
            if (w == 0)
                return 1;
            if (w < 0)
                return -1;
        }
        bool fin;
        int op;
        char *data;
        size_t dlen;
        int r = read_frame(fd, now_ms() + WS_FRAME_TIMEOUT_MS, &fin, &op, &data, &dlen);
        if (r != 0) {
            if (r == 1)
                fprintf(stderr, "ws_recv: frame incomplete after %d ms\n", WS_FRAME_TIMEOUT_MS);
            free(msg);
            return -1;
        }

        if (op >= 0x8) { /* control frames may come between fragments */
            if (!fin || dlen > 125 || op > WS_OP_PONG) {
                fprintf(stderr, "ws_recv: invalid control frame (op %d, fin %d, %zu bytes)\n", op,
                        fin, dlen);
                free(data);
                free(msg);
                return -1;
            }
            if (op == WS_OP_CLOSE) {
                free(msg);
                *payload = data;
                *len = dlen;
                *opcode = WS_OP_CLOSE;
                return 0;
            }
            int s = op == WS_OP_PING ? ws_send_frame(fd, WS_OP_PONG, data, dlen, true) : 0;
            free(data);
            if (s < 0) {
                free(msg);
                return -1;
            }
            continue;
        }

        if (op == WS_OP_CONT) {
            if (msg_op < 0) {
                fprintf(stderr, "ws_recv: continuation frame without a message\n");
                free(data);
                return -1;
            }
            if (msg_len + dlen > WS_MESSAGE_MAX) {
                fprintf(stderr, "ws_recv: fragmented message over our limit\n");
                free(data);
                free(msg);
                return -1;
            }
            char *bigger = realloc(msg, msg_len + dlen + 1);
            if (bigger == NULL) {
                free(data);
                free(msg);
                return -1;
            }
            msg = bigger;
            memcpy(msg + msg_len, data, dlen);
            msg_len += dlen;
            msg[msg_len] = '\0';
            free(data);
            if (!fin)
                continue;
            *payload = msg;
            *len = msg_len;
            *opcode = msg_op;
            return 0;
        }

        if (op != WS_OP_TEXT && op != WS_OP_BINARY) {
            fprintf(stderr, "ws_recv: reserved opcode %d\n", op);
            free(data);
            free(msg);
            return -1;
        }
        if (msg_op >= 0) {
            fprintf(stderr, "ws_recv: new message inside a fragmented one\n");
            free(data);
            free(msg);
            return -1;
        }
        if (fin) {
            *payload = data;
            *len = dlen;
            *opcode = op;
            return 0;
        }
        msg = data;
        msg_len = dlen;
        msg_op = op;
    }
}

int ws_close_code(const char *payload, size_t len)
{
    if (len == 0)
        return 1005; /* RFC 6455 section 7.1.5: no status code was present */
    if (len < 2)
        return -1;
    return (uint8_t)payload[0] << 8 | (uint8_t)payload[1];
}

int ws_wait_close(int fd, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    int skipped = 0;
    for (;;) {
        char *p;
        size_t len;
        int op;
        int r = ws_recv(fd, &p, &len, &op, ms_left(deadline));
        if (r != 0) {
            fprintf(stderr, "ws_wait_close: %s without a close frame (%d messages skipped)\n",
                    r == 1 ? "timeout" : "EOF or error", skipped);
            return -1;
        }
        if (op != WS_OP_CLOSE) {
            skipped++;
            free(p);
            continue;
        }
        int code = ws_close_code(p, len);
        free(p);
        /* Answer like a well-behaved client; the server may be gone already (EPIPE), which
         * is no error here. */
        uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        (void)send_frame(fd, WS_OP_CLOSE, echo, code == 1005 || code < 0 ? 0 : 2, true);
        return code;
    }
}

/* One JSON text message: 0 with *out, 1 timeout, -1 close/error (reported). */
static int recv_json(int fd, int timeout_ms, json_t **out)
{
    char *p;
    size_t len;
    int op;
    *out = NULL;
    int r = ws_recv(fd, &p, &len, &op, timeout_ms);
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "ws_recv_json: connection closed or failed\n");
        return r;
    }
    if (op == WS_OP_CLOSE) {
        fprintf(stderr, "ws_recv_json: close frame, code %d\n", ws_close_code(p, len));
        free(p);
        return -1;
    }
    if (op != WS_OP_TEXT) {
        fprintf(stderr, "ws_recv_json: unexpected binary message of %zu bytes\n", len);
        free(p);
        return -1;
    }
    json_error_t err;
    *out = json_loadb(p, len, 0, &err);
    if (*out == NULL)
        fprintf(stderr, "ws_recv_json: not JSON (%s): %.200s\n", err.text, p);
    free(p);
    return *out != NULL ? 0 : -1;
}

json_t *ws_recv_json(int fd, int timeout_ms)
{
    json_t *j;
    recv_json(fd, timeout_ms, &j);
    return j;
}

/* ---- Phoenix Channels v2 --------------------------------------------------------------- */

int phx_send(int fd, const char *join_ref, const char *ref, const char *topic, const char *event,
             const char *payload_json)
{
    json_error_t err;
    json_t *payload = json_loads(payload_json != NULL ? payload_json : "{}", 0, &err);
    if (payload == NULL) {
        fprintf(stderr, "phx_send: payload is not JSON: %s\n", err.text);
        return -1;
    }
    /* "s?" encodes NULL as JSON null; "o" steals the payload reference. */
    json_t *msg = json_pack("[s?s?sso]", join_ref, ref, topic, event, payload);
    char *text = msg != NULL ? json_dumps(msg, JSON_COMPACT) : NULL;
    int r = text != NULL ? ws_send_text(fd, text) : -1;
    free(text);
    json_decref(msg);
    return r;
}

static bool frame_is(json_t *f, const char *topic, const char *event, const char *ref)
{
    if (!json_is_array(f) || json_array_size(f) != 5)
        return false;
    const char *t = json_string_value(json_array_get(f, 2));
    const char *e = json_string_value(json_array_get(f, 3));
    if (t == NULL || e == NULL || strcmp(t, topic) != 0 || strcmp(e, event) != 0)
        return false;
    if (ref == NULL)
        return true;
    const char *r = json_string_value(json_array_get(f, 1));
    return r != NULL && strcmp(r, ref) == 0;
}

json_t *phx_recv_match(int fd, const char *topic, const char *event, const char *ref,
                       int timeout_ms, json_t *skipped)
{
    int64_t deadline = now_ms() + timeout_ms;
    int n_skipped = 0;
    for (;;) {
        json_t *f;
        int r = recv_json(fd, ms_left(deadline), &f);
        if (r != 0) {
            fprintf(stderr, "phx_recv: no %s %s%s%s within %d ms (%s, %d frames skipped)\n", topic,
                    event, ref != NULL ? " ref " : "", ref != NULL ? ref : "", timeout_ms,
                    r == 1 ? "timeout" : "socket closed", n_skipped);
            return NULL;
        }
        if (frame_is(f, topic, event, ref))
            return f;
        n_skipped++;
        if (skipped != NULL)
            json_array_append_new(skipped, f);
        else
            json_decref(f);
    }
}

json_t *phx_recv_event(int fd, const char *topic, const char *event, int timeout_ms)
{
    return phx_recv_match(fd, topic, event, NULL, timeout_ms, NULL);
}

/* How long a join's reply may take: generous, the daemon may run under ASan. */
#define JOIN_WAIT_MS 5000

int phx_join_console(int ws_port, const char *topic, json_t **response)
{
    int fd = ws_connect(ws_port, "/socket/websocket?vsn=2.0.0", NULL, NULL);
    if (fd < 0)
        return -1;
    json_t *r = NULL;
    if (phx_send(fd, "1", "1", topic, "phx_join", NULL) == 0)
        r = phx_recv_match(fd, topic, "phx_reply", "1", JOIN_WAIT_MS, NULL);
    json_t *body = json_array_get(r, 4);
    const char *status = json_string_value(json_object_get(body, "status"));
    if (status == NULL || strcmp(status, "ok") != 0) {
        fprintf(stderr, "join %s: no ok reply\n", topic);
        json_decref(r);
        close(fd);
        return -1;
    }
    if (response != NULL) {
        *response = json_object_get(body, "response");
        json_incref(*response);
    }
    json_decref(r);
    return fd;
}

void nmea_line(char *out, size_t cap, const char *prefix, const char *body)
{
    unsigned sum = 0;
    for (const char *p = body; *p != '\0'; p++)
        sum ^= (unsigned char)*p;
    snprintf(out, cap, "%s$%s*%02X\r\n", prefix, body, sum);
}

void nmea_angle(char *out, size_t cap, double v, int width, char pos, char neg)
{
    char h = v < 0 ? neg : pos;
    v = v < 0 ? -v : v;
    int d = (int)v;
    snprintf(out, cap, "%0*d%08.5f,%c", width, d, (v - d) * 60.0, h);
}

json_t *phx_next_position(int fd, const char *topic, const char *device, int timeout_ms)
{
    for (;;) {
        json_t *msg = phx_recv_event(fd, topic, "positions", timeout_ms);
        if (msg == NULL) {
            fprintf(stderr, "no position of %s arrived\n", device);
            return NULL;
        }
        json_t *list = json_object_get(json_array_get(msg, 4), "positions");
        size_t i;
        json_t *p;
        json_array_foreach(list, i, p)
        {
            if (strcmp(json_string_value(json_object_get(p, "device")), device) == 0) {
                json_incref(p);
                json_decref(msg);
                return p;
            }
        }
        json_decref(msg);
    }
}

int phx_collect(int fd, int ms, json_t *frames)
{
    int64_t deadline = now_ms() + ms;
    int n = 0;
    for (;;) {
        json_t *f;
        int r = recv_json(fd, ms_left(deadline), &f);
        if (r == 1)
            return n;
        if (r < 0)
            return -1;
        json_array_append_new(frames, f);
        n++;
    }
}

/* ---- The daemon ------------------------------------------------------------------------ */

static int write_file(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "we");
    if (f == NULL) {
        fprintf(stderr, "harness: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fputs(text, f);
    if (fclose(f) != 0) {
        fprintf(stderr, "harness: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "harness: remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void remove_dir(struct gr_daemon *d)
{
    if (d->dir[0] != '\0')
        nftw(d->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    d->dir[0] = '\0';
}

void daemon_dump_log(const struct gr_daemon *d)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/stderr.log", d->dir);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    if (size > (long)LOG_DUMP_MAX) {
        fseek(f, size - (long)LOG_DUMP_MAX, SEEK_SET);
        fprintf(stderr, "----- gpsrelayd stderr.log (last %u of %ld bytes) -----\n", LOG_DUMP_MAX,
                size);
    } else {
        fseek(f, 0, SEEK_SET);
        fprintf(stderr, "----- gpsrelayd stderr.log (%ld bytes) -----\n", size);
    }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "----- end of gpsrelayd stderr.log -----\n");
    fclose(f);
}

/* Reaps the child if it exited; true when it has. */
static bool reap(struct gr_daemon *d)
{
    if (d->pid <= 0 || d->exited)
        return d->exited;
    int st;
    pid_t r = waitpid(d->pid, &st, WNOHANG);
    if (r == d->pid) {
        d->exited = true;
        d->wstatus = st;
    }
    return d->exited;
}

static void describe_exit(const struct gr_daemon *d, char *out, size_t cap)
{
    if (WIFEXITED(d->wstatus))
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(d->wstatus));
    else if (WIFSIGNALED(d->wstatus))
        snprintf(out, cap, "killed by signal %d (%s)", WTERMSIG(d->wstatus),
                 strsignal(WTERMSIG(d->wstatus)));
    else
        snprintf(out, cap, "ended with wait status 0x%x", (unsigned)d->wstatus);
}

/* True when one line of datagram begins with needle (sd_notify: KEY=VALUE lines). */
static bool has_line(const char *dgram, const char *needle)
{
    size_t nlen = strlen(needle);
    for (const char *line = dgram; line != NULL && *line != '\0';) {
        if (strncmp(line, needle, nlen) == 0)
            return true;
        line = strchr(line, '\n');
        if (line != NULL)
            line++;
    }
    return false;
}

/*
 * Reads the datagrams waiting on the notify socket, logging each, and stops right after
 * one matching needle (so later ones stay for the next wait). True when one matched.
 */
static bool drain_notify(struct gr_daemon *d, const char *needle)
{
    if (d->notify_fd < 0)
        return false;
    for (;;) {
        char buf[4096];
        ssize_t n = recv(d->notify_fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        buf[n] = '\0';
        size_t room = sizeof d->notify_log - 1 - d->notify_log_len;
        int w = snprintf(d->notify_log + d->notify_log_len, room + 1, "%s%s", buf,
                         n > 0 && buf[n - 1] == '\n' ? "" : "\n");
        d->notify_log_len += w < 0 ? 0 : ((size_t)w > room ? room : (size_t)w);
        fprintf(stderr, "[notify] %.*s%s", (int)n, buf, n > 0 && buf[n - 1] == '\n' ? "" : "\n");
        if (needle != NULL && has_line(buf, needle))
            return true;
    }
}

/* Waits until a notify datagram arrives, the child exits, or the deadline passes. */
static void wait_daemon_event(struct gr_daemon *d, int64_t deadline)
{
    struct pollfd p[2] = {{.fd = d->notify_fd, .events = POLLIN},
                          {.fd = d->pidfd, .events = POLLIN}};
    int timeout = ms_left(deadline);
    /* Without a pidfd (kernels before 5.3) nothing wakes us on exit: look every 50 ms. */
    if (d->pidfd < 0 && timeout > 50)
        timeout = 50;
    (void)poll(p, 2, timeout); /* negative fds are ignored by poll() */
}

int daemon_notify_wait(struct gr_daemon *d, const char *needle, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (drain_notify(d, needle))
            return 0;
        if (reap(d)) {
            /* It may have sent the datagram just before exiting. */
            if (drain_notify(d, needle))
                return 0;
            char how[96];
            describe_exit(d, how, sizeof how);
            fprintf(stderr, "harness: gpsrelayd %s without sending %s\n", how, needle);
            return -1;
        }
        if (now_ms() >= deadline) {
            fprintf(stderr, "harness: no %s from gpsrelayd within %d ms\n", needle, timeout_ms);
            return -1;
        }
        wait_daemon_event(d, deadline);
    }
}

int daemon_signal(struct gr_daemon *d, int sig)
{
    if (d->pid <= 0 || reap(d)) {
        fprintf(stderr, "harness: gpsrelayd is not running, cannot send signal %d\n", sig);
        return -1;
    }
    if (kill(d->pid, sig) != 0) {
        fprintf(stderr, "harness: kill %d: %s\n", (int)d->pid, strerror(errno));
        return -1;
    }
    if (sig == SIGTERM)
        d->term_sent = true;
    return 0;
}

/* Frees what daemon_start() made: child (killed if still there), fds, temp dir. */
static void teardown(struct gr_daemon *d, bool dump)
{
    if (d->pid > 0 && !reap(d)) {
        kill(d->pid, SIGKILL);
        int st;
        if (waitpid(d->pid, &st, 0) == d->pid) {
            d->exited = true;
            d->wstatus = st;
        }
    }
    if (dump && d->dir[0] != '\0')
        daemon_dump_log(d);
    if (d->pidfd >= 0)
        close(d->pidfd);
    if (d->notify_fd >= 0)
        close(d->notify_fd);
    d->pidfd = d->notify_fd = -1;
    remove_dir(d);
}

int daemon_stop(struct gr_daemon *d)
{
    if (d->pid <= 0) {
        teardown(d, false);
        return -1;
    }
    bool timed_out = false;
    if (!reap(d) && !d->term_sent)
        daemon_signal(d, SIGTERM);
    int64_t deadline = now_ms() + STOP_TIMEOUT_MS;
    while (!reap(d)) {
        drain_notify(d, NULL);
        if (now_ms() >= deadline) {
            fprintf(stderr, "harness: gpsrelayd did not stop within %d ms after SIGTERM: SIGKILL\n",
                    STOP_TIMEOUT_MS);
            timed_out = true;
            break;
        }
        wait_daemon_event(d, deadline);
    }
    drain_notify(d, NULL);
    teardown(d, true); /* kills a child that outlived the deadline, prints its log */

    char how[96];
    describe_exit(d, how, sizeof how);
    int status = -1;
    if (!timed_out && WIFEXITED(d->wstatus))
        status = WEXITSTATUS(d->wstatus);
    fprintf(stderr, "harness: gpsrelayd %s%s\n", how, timed_out ? " (after the timeout)" : "");
    d->pid = 0;
    return status;
}

static int pidfd_open_compat(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

/* The child's side of the fork: never returns. */
static void exec_daemon(const struct gr_daemon *d, const char *binary, pid_t parent)
{
    char path[PATH_MAX];
    /* If the test dies, so does its daemon: nothing may outlive a test run. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    /* A clean signal state: the test's blocked or ignored signals must not leak in. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGINT, SIG_DFL);

    snprintf(path, sizeof path, "%s/stderr.log", d->dir);
    int log = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    int null = open("/dev/null", O_RDONLY);
    if (log < 0 || null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
        _exit(127);
    /* Relative paths in the config resolve the same whether the daemon takes them from
     * its working directory or from the config file's folder. */
    if (chdir(d->dir) != 0)
        _exit(127);

    snprintf(path, sizeof path, "%s/notify", d->dir);
    setenv("NOTIFY_SOCKET", path, 1);
    /* Whatever runs the tests (systemd, CI) must not hand the daemon its own sockets or
     * watchdog: this daemon talks only to this test. */
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    for (char **e = harness_child_env; e && *e; e++)
        putenv(*e);

    char conf[PATH_MAX];
    snprintf(conf, sizeof conf, "%s/gpsrelay.conf", d->dir);
    char *const argv[] = {(char *)binary, (char *)"-c", conf, NULL};
    execv(binary, argv);
    dprintf(2, "harness: exec %s: %s\n", binary, strerror(errno));
    _exit(127);
}

/* Polls GET /healthz until it answers 200 (the loop runs), failing at once if the child
 * exits; bounded by START_TIMEOUT_MS. */
static int wait_healthz(struct gr_daemon *d)
{
    char body[256];
    for (int waited = 0; waited < START_TIMEOUT_MS; waited += HEALTHZ_POLL_MS) {
        if (http_get(d->ws_port, "/healthz", body, sizeof body, 1000) == 200)
            return 0;
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
            d->pid = 0;
            fprintf(stderr, "harness: the daemon exited before /healthz answered\n");
            return -1;
        }
        struct timespec ts = {0, HEALTHZ_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "harness: /healthz did not answer 200 within %d ms\n", START_TIMEOUT_MS);
    return -1;
}

int daemon_start(struct gr_daemon *d, const char *binary, const char *extra_conf, const char *csv)
{
    return daemon_start_ex(d, binary, extra_conf, csv, 0);
}

int daemon_start_ex(struct gr_daemon *d, const char *binary, const char *extra_conf,
                    const char *csv, unsigned flags)
{
    memset(d, 0, sizeof *d);
    d->notify_fd = d->pidfd = -1;

    /* The child runs in the temp dir: make the binary's path absolute first. */
    char bin[PATH_MAX];
    if (binary == NULL || realpath(binary, bin) == NULL || access(bin, X_OK) != 0) {
        fprintf(stderr, "harness: daemon binary %s: %s\n", binary ? binary : "(none)",
                strerror(errno));
        return -1;
    }

    /* sun_path holds 108 bytes: a deep $TMPDIR could not hold <dir>/notify. */
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 60)
        tmp = "/tmp";
    snprintf(d->dir, sizeof d->dir, "%s/gpsrelay-itest-XXXXXX", tmp);
    if (mkdtemp(d->dir) == NULL) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", d->dir, strerror(errno));
        d->dir[0] = '\0';
        return -1;
    }

    d->udp_port = free_loopback_port(SOCK_DGRAM);
    d->ws_port = free_loopback_port(SOCK_STREAM);
    if (d->udp_port <= 0 || d->ws_port <= 0) {
        fprintf(stderr, "harness: no free loopback port\n");
        goto fail;
    }

    char *conf = NULL;
    if (asprintf(&conf,
                 "listen_udp 127.0.0.1:%d\n"
                 "listen_ws 127.0.0.1:%d\n"
                 "%s"
                 "auth none\n"
                 "log_level debug\n"
                 "%s\n",
                 d->udp_port, d->ws_port,
                 flags & DAEMON_NO_MAPPING_FILE ? "" : "mapping_file devices.csv\n",
                 extra_conf != NULL ? extra_conf : "") < 0)
        goto fail;
    int wr = write_file(d->dir, "gpsrelay.conf", conf);
    free(conf);
    if (wr < 0 || write_file(d->dir, "devices.csv",
                             csv != NULL ? csv : "device_id,agency_id,label,source_addr\n") < 0)
        goto fail;

    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    snprintf(un.sun_path, sizeof un.sun_path, "%s/notify", d->dir);
    d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (d->notify_fd < 0 || bind(d->notify_fd, (struct sockaddr *)&un, sizeof un) != 0) {
        fprintf(stderr, "harness: notify socket %s: %s\n", un.sun_path, strerror(errno));
        goto fail;
    }

    fflush(NULL); /* nothing buffered may be written twice by the child */
    pid_t parent = getpid();
    d->pid = fork();
    if (d->pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        d->pid = 0;
        goto fail;
    }
    if (d->pid == 0)
        exec_daemon(d, bin, parent);
    d->pidfd = pidfd_open_compat(d->pid);

    if (flags & DAEMON_NO_WAIT_READY) {
        if (wait_healthz(d) < 0)
            goto fail;
        return 0;
    }
    if (daemon_notify_wait(d, "READY=1", START_TIMEOUT_MS) != 0)
        goto fail;

    char body[256];
    int status = http_get(d->ws_port, "/healthz", body, sizeof body, 5000);
    if (status != 200) {
        fprintf(stderr, "harness: GET /healthz answered %d after READY=1\n", status);
        goto fail;
    }
    return 0;

fail:
    teardown(d, true);
    d->pid = 0;
    return -1;
}

long http_metric_wait(int port, const char *sample, long long want, int timeout_ms)
{
    int64_t t0 = now_ms();
    long long v;
    while ((v = http_metric(port, sample)) != want) {
        if (now_ms() - t0 >= timeout_ms) {
            fprintf(stderr, "%s did not become %lld within %d ms (it is %lld)\n", sample, want,
                    timeout_ms, v);
            return -1;
        }
        poll(NULL, 0, METRIC_POLL_MS);
    }
    return (long)(now_ms() - t0);
}

long long http_metric(int port, const char *sample)
{
    static char page[1 << 16];
    if (http_get(port, "/metrics", page, sizeof page, 5000) != 200)
        return -1;
    size_t n = strlen(sample);
    for (const char *line = page; line; line = strchr(line, '\n')) {
        line += *line == '\n';
        if (strncmp(line, sample, n) == 0 && line[n] == ' ')
            return strtoll(line + n + 1, NULL, 10);
    }
    return -1;
}
