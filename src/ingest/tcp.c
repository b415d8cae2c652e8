/*
 * tcp.c - the listen_tcp sockets and the modem connections they accept: each read is one
 * payload for the pipeline (pipeline.h), with the unfinished end of a line kept for the
 * next read. Limits on connections are in ingest.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "gpsrelay/acceptor.h"
#include "gpsrelay/addrtable.h"
#include "gpsrelay/format.h"
#include "gpsrelay/list.h"
#include "gpsrelay/log.h"
#include "gpsrelay/report.h"
#include "listeners.h"
#include "pipeline.h"

/* How often idle TCP modems are looked for: often enough that one is closed within a
 * few percent of tcp_idle_timeout, rarely enough to cost nothing. */
#define SWEEP_MIN_MS 100
#define SWEEP_MAX_MS 10000

/* A modem on a TCP connection. The handle comes first: libuv hands it back to us. */
struct tcp_conn {
    uv_tcp_t handle;
    struct gr_ingest *in;
    struct sockaddr_storage peer;
    uint64_t last_read_ms;        /* uv_now() of the last read */
    size_t len;                   /* bytes of an unfinished line in buf */
    bool discarding;              /* the unfinished line grew past its limit: skip to its end */
    bool retiring;                /* done with: waits in in->retiring for its turn to be closed */
    struct tcp_conn *prev, *next; /* in in->conns while open, then in in->retiring */
    char buf[GR_FORMAT_LINE_MAX];
};

/* Reads are handled before the next one starts, so one buffer serves every connection. */
static char read_buf[GR_DATAGRAM_MAX];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

/* Connections closed per loop turn. close(2) of a TCP socket is most of what letting a
 * modem go costs (it sends the FIN; on loopback it also runs the peer's side): 10,000
 * modems hanging up at once made one loop turn of about 200 ms when each was closed as its
 * EOF was read. A batch of 256 is a few milliseconds; the rest wait for the next turns. */
#define TCP_CLOSE_BATCH 256

/* Connections handed to conn_admit per loop turn (getpeername, then a uv_tcp_t and
 * epoll_ctl to read it, or a close over a limit): about a millisecond's worth. */
#define TCP_ACCEPT_PER_TURN 256

/* Accepted modem connections the acceptor may keep waiting for their turn. Few: each holds
 * a descriptor outside the modems' share (conn_admit counts it only when its turn comes),
 * so a flood would take them from the consoles' half; and modems, unlike consoles, cost
 * little to admit, so the FIFO has no storm to smooth. The kernel's queue holds the rest
 * at no descriptor's cost, as it did when ingest accepted by itself. */
#define TCP_ACCEPT_WAITING_MAX 16

static void on_conn_closed(uv_handle_t *h)
{
    struct tcp_conn *c = (struct tcp_conn *)h;
    struct gr_ingest *in = c->in;
    in->n_conns--;
    free(c);
    gr_ingest_maybe_stopped(in);
}

static void on_close_turn(uv_idle_t *h)
{
    struct gr_ingest *in = h->data;
    for (int n = 0; n < TCP_CLOSE_BATCH && in->retiring != NULL; n++) {
        struct tcp_conn *c = in->retiring;
        GR_LIST_UNLINK(in->retiring, in->retiring_tail, c, prev, next);
        uv_close((uv_handle_t *)&c->handle, on_conn_closed);
    }
    if (in->retiring == NULL) {
        uv_idle_stop(h);
        if (in->stopping)
            gr_ingest_close_once((uv_handle_t *)h);
    }
}

/*
 * Done with c: it reads no more and no longer counts against its source (a modem may
 * connect again at once), and it is closed in a later loop turn, at most TCP_CLOSE_BATCH
 * a turn, so thousands let go at once (a client exiting, the idle sweep, a stop) are
 * spread over turns. It holds its descriptor, and counts in n_conns, until then.
 */
static void conn_retire(struct tcp_conn *c)
{
    struct gr_ingest *in = c->in;
    if (c->retiring)
        return;
    c->retiring = true;
    uv_read_stop((uv_stream_t *)&c->handle);
    gr_addrtable_release(in->per_source, (const struct sockaddr *)&c->peer);
    GR_LIST_REMOVE(in->conns, c, prev, next);
    GR_LIST_APPEND(in->retiring, in->retiring_tail, c, prev, next);
    uv_idle_start(&in->closer, on_close_turn);
}

/* Keeps the unfinished end of a read for the next one, within its line limit. */
static void conn_stash(struct tcp_conn *c, const char *p, size_t n)
{
    if (c->discarding)
        return;
    size_t limit = c->len > 0 ? gr_format_line_max(c->buf, c->len) : gr_format_line_max(p, n);
    if (c->len + n > limit) {
        gr_stats.ingest_reports++;
        gr_stats.ingest_rejected[GR_LINE_TOO_LONG]++; /* once per line, however long it goes on */
        c->discarding = true;
        c->len = 0;
        return;
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
}

/* A line ended at p[0..n) (its terminator not included), maybe begun in earlier reads. */
static void conn_line(struct tcp_conn *c, struct gr_ingest_batch *b, const char *p, size_t n)
{
    if (c->discarding) {
        c->discarding = false; /* the overlong line is over; it was counted */
    } else if (c->len == 0) {
        gr_ingest_batch_add(b, p, n); /* the common case: the whole line came in this read */
    } else {
        conn_stash(c, p, n);
        if (!c->discarding)
            gr_ingest_batch_add(b, c->buf, c->len);
        c->discarding = false;
    }
    c->len = 0;
}

/*
 * Whether a line that ended with its connection, before its terminator, shows it is whole
 * anyway: TAIP ends at '<' and JSON at its closing brace (their decoders refuse them cut),
 * and an NMEA sentence only by its checksum. An NMEA sentence without one may have been
 * cut anywhere, in the middle of a number ("545.4" sent, "5" received) and still decode.
 */
static bool tail_is_whole(const char *p, size_t n)
{
    struct gr_report rep;
    struct gr_decoded d;
    if (gr_report_split(p, n, &rep) != GR_OK || rep.format != gr_format_get(GR_SRC_NMEA) ||
        rep.format->decode(rep.body, rep.body_len, &d) != GR_OK)
        return true; /* not NMEA, or refused on its own: the pipeline decides and counts */
    return d.kind != GR_DECODED_SENTENCE || d.sentence.checksum_seen;
}

/*
 * The unfinished line of a connection that ended (EOF or reset): what was sent of it is
 * decoded when it shows it is whole, else dropped as truncated. Only its last report is in
 * doubt: TAIP messages before it in the line ended at their '<'.
 */
static void conn_tail(struct tcp_conn *c, struct gr_ingest_batch *b)
{
    size_t off = 0, last = 0;
    const char *line;
    size_t line_len;
    while (gr_frame_next(c->buf, c->len, &off, &line, &line_len))
        last = (size_t)(line - c->buf);
    if (last > 0)
        gr_ingest_batch_add(b, c->buf, last);
    if (last < c->len && !tail_is_whole(c->buf + last, c->len - last)) {
        gr_stats.ingest_reports++;
        gr_stats.ingest_rejected[GR_TRUNCATED]++;
        return;
    }
    gr_ingest_batch_add(b, c->buf + last, c->len - last);
}

static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tcp_conn *c = (struct tcp_conn *)s;
    struct gr_ingest_batch b = gr_ingest_batch_begin(c->in, (const struct sockaddr *)&c->peer);
    if (nread < 0) {
        if (c->len > 0 && !c->discarding)
            conn_tail(c, &b);
        gr_ingest_batch_end(&b);
        if (nread != UV_EOF)
            gr_debug("ingest: tcp modem read error: %s", uv_strerror((int)nread));
        conn_retire(c);
        return;
    }
    c->last_read_ms = uv_now(s->loop);
    const char *p = buf->base, *end = buf->base + nread;
    while (p < end) {
        const char *eol = p;
        while (eol < end && *eol != '\n' && *eol != '\r')
            eol++;
        if (eol == end) {
            conn_stash(c, p, (size_t)(end - p));
            break;
        }
        conn_line(c, &b, p, (size_t)(eol - p));
        p = eol + 1;
    }
    gr_ingest_batch_end(&b);
}

/* The close callback of a connection that never made it into the list. */
static void free_unlinked(uv_handle_t *h)
{
    free(h); /* the handle is the first member of its struct tcp_conn */
}

/* The limit a new connection from peer would go over, or -1 when it may stay. */
static int over_limit(struct gr_ingest *in, const struct sockaddr *peer)
{
    if (gr_addrtable_held(in->per_source, peer) >= (unsigned)in->cfg->tcp_max_per_source)
        return GR_TCP_REFUSED_PER_SOURCE;
    if (in->n_conns >= in->conn_limit)
        return (int)in->conn_limit_reason;
    return -1;
}

/* Closes a connection over a limit at once: counted, and logged once per episode (its
 * start here; the summary in ingest.c counts the rest and says when it is over). */
static void refuse(struct gr_ingest *in, int fd, const struct sockaddr *peer,
                   enum gr_tcp_refusal why)
{
    close(fd);
    gr_stats.tcp_refused[why]++;
    if (in->refusing[why])
        return;
    in->refusing[why] = true;
    char host[64] = "?";
    uv_ip_name(peer, host, sizeof(host));
    if (why == GR_TCP_REFUSED_PER_SOURCE)
        gr_warn("ingest: %s has tcp_max_per_source (%d) modem tcp connections open; refusing "
                "more from it (gpsrelay_tcp_refused_total, summarized every %d s)",
                host, in->cfg->tcp_max_per_source, GR_INGEST_SUMMARY_MS / 1000);
    else
        gr_warn("ingest: %zu modem tcp connections hold descriptors, the most %s allows; "
                "refusing more, from %s first (gpsrelay_tcp_refused_total, summarized every "
                "%d s)",
                in->n_conns,
                why == GR_TCP_REFUSED_DESCRIPTORS ? "RLIMIT_NOFILE" : "GR_TCP_CONN_MAX", host,
                GR_INGEST_SUMMARY_MS / 1000);
}

/* A connection accept(2) returned from peer: fd is ours, to keep or to close. */
static void conn_admit(struct gr_ingest *in, int fd, const struct sockaddr_storage *peer)
{
    const struct sockaddr *from = (const struct sockaddr *)peer;
    if (!gr_ingest_allowed(in, from)) {
        gr_stats.ingest_not_allowed++;
        close(fd);
        return;
    }
    int why = over_limit(in, from);
    if (why >= 0) {
        refuse(in, fd, from, (enum gr_tcp_refusal)why);
        return;
    }
    struct tcp_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    uv_tcp_init(in->loop, &c->handle);
    if (uv_tcp_open(&c->handle, fd) < 0) {
        close(fd);
        uv_close((uv_handle_t *)&c->handle, free_unlinked);
        return;
    }
    /* Never evicts: an entry lives while its source has a connection open, and the table
     * has room for GR_TCP_CONN_MAX. NULL only for a family that is neither IPv4 nor 6. */
    gr_addrtable_hold(in->per_source, from);
    c->in = in;
    c->peer = *peer;
    c->last_read_ms = uv_now(in->loop);
    GR_LIST_PUSH(in->conns, c, prev, next);
    in->n_conns++;
    gr_stats.tcp_accepted++;
    uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_tcp_read);
}

/* The acceptor's hand-on (a gr_accept_fn): a modem connection, in arrival order. */
static void on_tcp_accepted(void *ctx, void *listener_ctx, int fd)
{
    (void)listener_ctx;
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0) {
        close(fd); /* reset while it waited: nothing to admit */
        return;
    }
    conn_admit(ctx, fd, &peer);
}

/* accept(2) failed (out of descriptors or memory), counted in gr_stats.tcp_accept_errors,
 * and the acceptor rests GR_ACCEPT_RETRY_MS while connections wait in the kernel's queue.
 * The first of a summary interval is logged at once; the summary (ingest.c) counts the
 * rest. No spare descriptor of our own: the descriptor share (GR_FD_RESERVE) is what keeps
 * modems from using them all. */
static void on_tcp_accept_error(void *ctx, int err)
{
    struct gr_ingest *in = ctx;
    if (gr_stats.tcp_accept_errors == in->summarized_tcp_accept_errors + 1)
        gr_warn("ingest: tcp accept: %s; not accepting modems for %d ms", strerror(err),
                GR_ACCEPT_RETRY_MS);
}

static void on_sweep(uv_timer_t *t)
{
    struct gr_ingest *in = t->data;
    uint64_t now = uv_now(t->loop);
    for (struct tcp_conn *c = in->conns, *next; c; c = next) {
        next = c->next; /* retiring moves c to another list */
        if (now - c->last_read_ms >= in->idle_ms) {
            gr_stats.tcp_idle_closed++;
            conn_retire(c);
        }
    }
}

/* The idle sweep runs at half of tcp_idle_timeout (within bounds), or not at all. */
void gr_ingest_tcp_set_idle(struct gr_ingest *in)
{
    in->idle_ms = (uint64_t)in->cfg->tcp_idle_timeout * 1000;
    if (in->idle_ms == 0) {
        uv_timer_stop(&in->sweep);
        return;
    }
    uint64_t every = in->idle_ms / 2;
    every = every < SWEEP_MIN_MS ? SWEEP_MIN_MS : every > SWEEP_MAX_MS ? SWEEP_MAX_MS : every;
    uv_timer_start(&in->sweep, on_sweep, every, every);
}

/* Every listen_tcp socket listens through one acceptor (acceptor.h). [::] takes IPv4
 * modems too (IPV6_V6ONLY off), as it did when libuv's uv_tcp_bind() made the socket. */
int gr_ingest_tcp_start(struct gr_ingest *in, const struct gr_addr *a)
{
    static const struct gr_acceptor_config modems = {
        .name = "ingest",
        .per_turn = TCP_ACCEPT_PER_TURN,
        .max_waiting = TCP_ACCEPT_WAITING_MAX,
        .dual_stack = true,
        .errors = &gr_stats.tcp_accept_errors,
        .waiting_full = NULL, /* with so few waiting, pausing is the pacing, not news */
        .on_error = on_tcp_accept_error,
    };
    if (in->acceptor == NULL)
        in->acceptor = gr_acceptor_new(in->loop, &modems, on_tcp_accepted, in);
    int port = in->acceptor != NULL
                   ? gr_acceptor_listen(in->acceptor, (const struct sockaddr *)&a->sa, NULL)
                   : -ENOMEM;
    if (port < 0) {
        gr_error("ingest: cannot listen on tcp %s: %s", a->text, strerror(-port));
        return port;
    }
    gr_ingest_log_listening("tcp", (const struct sockaddr *)&a->sa, port);
    return 0;
}

/* Modem connections may hold at most their share of RLIMIT_NOFILE (ingest.h). */
static void set_conn_limit(struct gr_ingest *in)
{
    struct rlimit nofile;
    in->conn_limit = GR_TCP_CONN_MAX;
    in->conn_limit_reason = GR_TCP_REFUSED_CONNECTIONS;
    if (getrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_cur == RLIM_INFINITY)
        return;
    rlim_t share = nofile.rlim_cur > GR_FD_RESERVE ? (nofile.rlim_cur - GR_FD_RESERVE) / 2 : 0;
    if (share >= GR_TCP_CONN_MAX)
        return;
    in->conn_limit = (size_t)share;
    in->conn_limit_reason = GR_TCP_REFUSED_DESCRIPTORS;
    if (in->cfg->n_listen_tcp > 0)
        gr_notice("ingest: at most %zu modem tcp connections: half of RLIMIT_NOFILE (%llu) after "
                  "%d reserved, the rest for consoles (raise LimitNOFILE= for more)",
                  in->conn_limit, (unsigned long long)nofile.rlim_cur, GR_FD_RESERVE);
}

int gr_ingest_tcp_init(struct gr_ingest *in)
{
    uv_timer_init(in->loop, &in->sweep);
    in->sweep.data = in;
    uv_idle_init(in->loop, &in->closer);
    in->closer.data = in;
    set_conn_limit(in);
    in->per_source = gr_addrtable_new(GR_TCP_CONN_MAX, sizeof(unsigned), false);
    return in->per_source != NULL ? 0 : -ENOMEM;
}

static void acceptor_stopped(void *arg)
{
    struct gr_ingest *in = arg;
    in->closing--;
    gr_ingest_maybe_stopped(in);
}

/* Modem connections close over the next loop turns (on_close_turn), then the closer. */
void gr_ingest_tcp_stop(struct gr_ingest *in)
{
    if (in->acceptor != NULL) {
        in->closing++;
        gr_acceptor_stop(in->acceptor, acceptor_stopped, in);
    }
    while (in->conns != NULL)
        conn_retire(in->conns);
    if (in->retiring == NULL)
        gr_ingest_close_once((uv_handle_t *)&in->closer);
    gr_ingest_close_once((uv_handle_t *)&in->sweep);
}

void gr_ingest_tcp_free(struct gr_ingest *in)
{
    gr_acceptor_free(in->acceptor);
    gr_addrtable_free(in->per_source);
}
