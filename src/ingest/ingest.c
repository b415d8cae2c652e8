/*
 * ingest.c - UDP and TCP listeners and the report pipeline.
 */
#include "gpsrelay/ingest.h"

#include <errno.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "gpsrelay/acceptor.h"
#include "gpsrelay/addrtable.h"
#include "gpsrelay/assemble.h"
#include "gpsrelay/clock.h"
#include "gpsrelay/format.h"
#include "gpsrelay/identity.h"
#include "gpsrelay/list.h"
#include "gpsrelay/log.h"
#include "gpsrelay/ratelimit.h"
#include "gpsrelay/report.h"
#include "gpsrelay/stats.h"

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

struct gr_ingest {
    uv_loop_t *loop;
    struct gr_hub *hub;
    const struct gr_config *cfg; /* borrowed: ingest_allow */
    struct gr_identity *ids;
    struct gr_ratelimit *rate; /* ingest_rate_limit per source address */
    size_t n_udp;
    uv_udp_t udp[GR_LISTEN_MAX];
    struct gr_acceptor *acceptor;              /* every listen_tcp socket; NULL without any */
    struct tcp_conn *conns;                    /* open, newest first */
    struct tcp_conn *retiring, *retiring_tail; /* to be closed, oldest first (on_close_turn) */
    size_t n_conns;    /* open, retiring or closing: each holds a descriptor */
    size_t conn_limit; /* GR_TCP_CONN_MAX, or less: the descriptor share (set_conn_limit) */
    enum gr_tcp_refusal conn_limit_reason;
    struct gr_addrtable *per_source; /* open connections per source address (unsigned) */
    uv_idle_t closer;                /* active while connections wait to be closed */
    bool stopping;
    bool refusing[GR_TCP_REFUSAL_COUNT]; /* a refusal episode: warned at its start */
    uint64_t idle_ms;                    /* 0: modems may stay silent forever */
    uv_timer_t sweep;
    uv_timer_t summary; /* the drop summary: one log line per interval, not one per report */
    uint64_t summarized[GR_REASON_COUNT]; /* gr_stats.ingest_rejected at the last summary */
    uint64_t summarized_not_allowed, summarized_rate_limited, summarized_receive_errors;
    uint64_t summarized_socket_drops;
    uint64_t summarized_tcp_refused[GR_TCP_REFUSAL_COUNT], summarized_tcp_accept_errors;
};

/* Drops are logged as a summary this often, when there were any: a flood of bad input is
 * one line per interval, not a line per datagram (the counters have every one). */
#define DROP_SUMMARY_MS 10000

/* UDP sockets read with recvmmsg(2): libuv cuts the buffer into 64 KiB slots, one datagram
 * each, and fills up to this many per system call (its own maximum is 20). */
#define UDP_MMSG_SLOTS 20

/* Reads are handled before the next one starts, so one buffer serves every socket: all of
 * it for a UDP socket's recvmmsg, its first GR_DATAGRAM_MAX bytes for a TCP read. */
static char read_buf[UDP_MMSG_SLOTS * GR_DATAGRAM_MAX];

static void reject(enum gr_reason r)
{
    gr_stats.ingest_rejected[r]++;
}

/* Appends " N label," to line for a count that moved. */
static void summary_item(char *line, size_t cap, uint64_t now, uint64_t *then, const char *label)
{
    size_t n = strlen(line);
    if (now != *then && n < cap)
        snprintf(line + n, cap - n, " %llu %s,", (unsigned long long)(now - *then), label);
    *then = now;
}

static void on_summary(uv_timer_t *t)
{
    struct gr_ingest *in = t->data;
    char line[1024] = "";
    for (int r = GR_OK + 1; r < GR_REASON_COUNT; r++)
        summary_item(line, sizeof(line), gr_stats.ingest_rejected[r], &in->summarized[r],
                     gr_reason_label((enum gr_reason)r));
    summary_item(line, sizeof(line), gr_stats.ingest_not_allowed, &in->summarized_not_allowed,
                 "not_allowed");
    summary_item(line, sizeof(line), gr_stats.ingest_rate_limited, &in->summarized_rate_limited,
                 "rate_limited");
    summary_item(line, sizeof(line), gr_stats.ingest_receive_errors, &in->summarized_receive_errors,
                 "udp receive errors");
    summary_item(line, sizeof(line), gr_ingest_socket_drops(in), &in->summarized_socket_drops,
                 "datagrams at a full socket buffer (the kernel's)");
    bool episode_over[GR_TCP_REFUSAL_COUNT];
    for (int r = 0; r < GR_TCP_REFUSAL_COUNT; r++) {
        char label[96];
        snprintf(label, sizeof(label), "tcp connections refused (%s)", gr_tcp_refusal_label(r));
        episode_over[r] =
            in->refusing[r] && gr_stats.tcp_refused[r] == in->summarized_tcp_refused[r];
        summary_item(line, sizeof(line), gr_stats.tcp_refused[r], &in->summarized_tcp_refused[r],
                     label);
    }
    summary_item(line, sizeof(line), gr_stats.tcp_accept_errors, &in->summarized_tcp_accept_errors,
                 "tcp accept errors");
    size_t n = strlen(line);
    if (n > 0) {
        line[n - 1] = '\0'; /* the last comma */
        gr_info("ingest: dropped in the last %d s:%s", DROP_SUMMARY_MS / 1000, line);
    }
    for (int r = 0; r < GR_TCP_REFUSAL_COUNT; r++) {
        if (episode_over[r]) {
            in->refusing[r] = false;
            gr_notice("ingest: no modem tcp connection refused (%s) in the last %d s",
                      gr_tcp_refusal_label(r), DROP_SUMMARY_MS / 1000);
        }
    }
}

/* ---- the pipeline ------------------------------------------------------------------- */

/*
 * One payload's worth of work: a datagram, or what one read brought from a stream. Units
 * whose sentences came in it are flushed at its end, so sentences sent together merge
 * into one fix without waiting for the modem's next cycle.
 */
struct batch {
    struct gr_ingest *in;
    const struct sockaddr *from;
    int64_t now_ms;
    int64_t rx_ns; /* the receive time again, on the monotonic clock */
    struct gr_unit *touched[GR_BATCH_UNITS];
    size_t n_touched;
};

static void publish(struct batch *b, struct gr_unit *u, const struct gr_fix *fix)
{
    enum gr_reason r = gr_hub_publish(b->in->hub, u, fix, b->now_ms, b->rx_ns);
    if (r != GR_OK)
        reject(r);
}

static void batch_flush(struct batch *b)
{
    struct gr_fix fix;
    for (size_t i = 0; i < b->n_touched; i++)
        if (gr_assemble_flush(gr_unit_assembler(b->touched[i]), b->now_ms, &fix))
            publish(b, b->touched[i], &fix);
    b->n_touched = 0;
}

static void batch_touch(struct batch *b, struct gr_unit *u)
{
    for (size_t i = 0; i < b->n_touched; i++)
        if (b->touched[i] == u)
            return;
    if (b->n_touched == GR_BATCH_UNITS)
        batch_flush(b);
    b->touched[b->n_touched++] = u;
}

/*
 * Device identity in the order docs/ingest.md gives, first match wins: an id inside the report
 * (JSON "id", TAIP ;ID=), the line's prefix, an id remembered for this sender, the sender's
 * address.
 */
static struct gr_unit *identify(struct batch *b, const char *own, size_t own_len,
                                const struct gr_report *rep)
{
    struct gr_hub *hub = b->in->hub;
    if (own != NULL)
        return gr_hub_find_unit(hub, own, own_len);
    if (rep->id != NULL)
        return gr_hub_find_unit(hub, rep->id, rep->id_len);
    const char *remembered = gr_identity_get(b->in->ids, b->from, b->now_ms);
    if (remembered != NULL)
        return gr_hub_find_unit(hub, remembered, strlen(remembered));
    return gr_hub_find_unit_by_addr(hub, b->from);
}

/* A sentence is merged with its device's others; an identity sentence only names the
 * sender (DEVID, PCPTI). */
static enum gr_reason handle_sentence(struct batch *b, const struct gr_report *rep,
                                      const struct gr_sentence *s)
{
    if (!s->checksum_seen)
        gr_stats.ingest_no_checksum++;
    if (s->type == GR_SENT_DEVID || s->type == GR_SENT_PCPTI) {
        if (gr_identity_put(b->in->ids, b->from, s->id, s->id_len, b->now_ms) == 1)
            gr_stats.ingest_identity_evicted++;
        return GR_OK;
    }

    bool own = s->type == GR_SENT_TAIP_RPV && s->id != NULL;
    struct gr_unit *u = identify(b, own ? s->id : NULL, s->id_len, rep);
    if (u == NULL)
        return GR_UNKNOWN_DEVICE;
    batch_touch(b, u);
    struct gr_fix fix;
    if (gr_assemble_add(gr_unit_assembler(u), s, b->now_ms, &fix))
        publish(b, u, &fix);
    return GR_OK;
}

/* A whole report is a fix of its own: nothing to merge. */
static enum gr_reason handle_report(struct batch *b, const struct gr_report *rep,
                                    struct gr_json_report *jr)
{
    struct gr_unit *u = identify(b, jr->id[0] ? jr->id : NULL, strlen(jr->id), rep);
    if (u == NULL)
        return GR_UNKNOWN_DEVICE;
    if (jr->attrs_len > 0) {
        jr->fix.attrs = jr->attrs;
        jr->fix.attrs_len = jr->attrs_len;
    }
    publish(b, u, &jr->fix);
    return GR_OK;
}

static enum gr_reason handle_line(struct batch *b, const char *line, size_t len)
{
    if (len > gr_format_line_max(line, len))
        return GR_LINE_TOO_LONG;
    struct gr_report rep;
    enum gr_reason r = gr_report_split(line, len, &rep);
    if (r != GR_OK)
        return r;
    if (rep.spliced)
        gr_stats.ingest_spliced++;
    struct gr_decoded d;
    r = rep.format->decode(rep.body, rep.body_len, &d);
    if (r != GR_OK)
        return r;
    return d.kind == GR_DECODED_REPORT ? handle_report(b, &rep, &d.report)
                                       : handle_sentence(b, &rep, &d.sentence);
}

/* ingest_allow: with none configured every source may send. */
static bool source_allowed(const struct gr_ingest *in, const struct sockaddr *from)
{
    for (size_t i = 0; i < in->cfg->n_ingest_allow; i++)
        if (gr_cidr_match(&in->cfg->ingest_allow[i], from))
            return true;
    return in->cfg->n_ingest_allow == 0;
}

/* Every report in p[0..len): CR/LF-separated lines, TAIP messages back to back. */
static void handle_payload(struct batch *b, const char *p, size_t len)
{
    size_t off = 0;
    const char *line;
    size_t line_len;
    while (gr_frame_next(p, len, &off, &line, &line_len)) {
        gr_stats.ingest_reports++;
        bool evicted = false;
        if (!gr_ratelimit_allow(b->in->rate, b->from, b->now_ms, &evicted)) {
            gr_stats.ingest_rate_limited++;
            continue;
        }
        gr_stats.ingest_rate_evicted += evicted;
        enum gr_reason r = handle_line(b, line, line_len);
        if (r != GR_OK)
            reject(r);
    }
}

static struct batch batch_make(struct gr_ingest *in, const struct sockaddr *from)
{
    struct batch b = {
        .in = in, .from = from, .now_ms = gr_wall_clock_ms(), .rx_ns = gr_monotonic_ns()};
    return b;
}

/* ---- UDP ------------------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_buf, GR_DATAGRAM_MAX);
}

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_datagram(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
    if (nread < 0) {
        struct gr_ingest *in = h->data;
        /* The first of an interval is logged at once; on_summary counts the rest. */
        if (gr_stats.ingest_receive_errors++ == in->summarized_receive_errors)
            gr_warn("ingest: udp receive error: %s", uv_strerror((int)nread));
        return;
    }
    if (from == NULL)
        return; /* libuv's "nothing more to read" */
    gr_stats.ingest_datagrams++;
    struct gr_ingest *in = h->data;
    if (!source_allowed(in, from)) {
        gr_stats.ingest_not_allowed++;
        return;
    }
    if (flags & UV_UDP_PARTIAL) {
        reject(GR_LINE_TOO_LONG);
        return;
    }
    struct batch b = batch_make(in, from);
    handle_payload(&b, buf->base, (size_t)nread);
    batch_flush(&b);
}

/* ---- TCP ------------------------------------------------------------------------------ */

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

static void close_once(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct tcp_conn *c = (struct tcp_conn *)h;
    c->in->n_conns--;
    free(c);
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
            close_once((uv_handle_t *)h);
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
        reject(GR_LINE_TOO_LONG); /* once per line, however long it goes on */
        c->discarding = true;
        c->len = 0;
        return;
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
}

/* A line ended at p[0..n) (its terminator not included), maybe begun in earlier reads. */
static void conn_line(struct tcp_conn *c, struct batch *b, const char *p, size_t n)
{
    if (c->discarding) {
        c->discarding = false; /* the overlong line is over; it was counted */
    } else if (c->len == 0) {
        handle_payload(b, p, n); /* the common case: the whole line came in this read */
    } else {
        conn_stash(c, p, n);
        if (!c->discarding)
            handle_payload(b, c->buf, c->len);
        c->discarding = false;
    }
    c->len = 0;
}

static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tcp_conn *c = (struct tcp_conn *)s;
    struct batch b = batch_make(c->in, (const struct sockaddr *)&c->peer);
    if (nread < 0) {
        /* A modem that hangs up mid-line: its last bytes may still be a whole sentence
         * without a terminator; the decoder's checks decide. */
        if (c->len > 0 && !c->discarding)
            handle_payload(&b, c->buf, c->len);
        batch_flush(&b);
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
    batch_flush(&b);
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
 * start here; on_summary counts the rest and says when it is over). */
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
                host, in->cfg->tcp_max_per_source, DROP_SUMMARY_MS / 1000);
    else
        gr_warn("ingest: %zu modem tcp connections hold descriptors, the most %s allows; "
                "refusing more, from %s first (gpsrelay_tcp_refused_total, summarized every "
                "%d s)",
                in->n_conns,
                why == GR_TCP_REFUSED_DESCRIPTORS ? "RLIMIT_NOFILE" : "GR_TCP_CONN_MAX", host,
                DROP_SUMMARY_MS / 1000);
}

/* A connection accept(2) returned from peer: fd is ours, to keep or to close. */
static void conn_admit(struct gr_ingest *in, int fd, const struct sockaddr_storage *peer)
{
    const struct sockaddr *from = (const struct sockaddr *)peer;
    if (!source_allowed(in, from)) {
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
 * The first of a summary interval is logged at once; on_summary counts the rest. No spare
 * descriptor of our own: the descriptor share (GR_FD_RESERVE) is what keeps modems
 * from using them all. */
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

/* ---- lifecycle ---------------------------------------------------------------------------- */

/* The idle sweep runs at half of tcp_idle_timeout (within bounds), or not at all. */
static void start_sweep(struct gr_ingest *in)
{
    if (in->idle_ms == 0) {
        uv_timer_stop(&in->sweep);
        return;
    }
    uint64_t every = in->idle_ms / 2;
    every = every < SWEEP_MIN_MS ? SWEEP_MIN_MS : every > SWEEP_MAX_MS ? SWEEP_MAX_MS : every;
    uv_timer_start(&in->sweep, on_sweep, every, every);
}

void gr_ingest_set_config(struct gr_ingest *in, const struct gr_config *cfg)
{
    in->cfg = cfg;
    in->idle_ms = (uint64_t)cfg->tcp_idle_timeout * 1000;
    gr_ratelimit_set(in->rate, cfg->ingest_rate_limit, cfg->ingest_rate_limit);
    start_sweep(in);
}

static void log_listening(const char *kind, const struct sockaddr *sa, int port)
{
    char host[64] = "?";
    uv_ip_name(sa, host, sizeof(host));
    gr_notice("ingest: listening on %s %s port %d", kind, host, port);
}

static int start_udp(struct gr_ingest *in, uv_loop_t *loop, const struct gr_addr *a)
{
    uv_udp_t *h = &in->udp[in->n_udp++];
    uv_udp_init_ex(loop, h, AF_UNSPEC | UV_UDP_RECVMMSG);
    h->data = in;
    int rc = uv_udp_bind(h, (const struct sockaddr *)&a->sa, 0);
    if (rc == 0)
        rc = uv_udp_recv_start(h, on_udp_alloc, on_datagram);
    if (rc < 0) {
        gr_error("ingest: cannot listen on udp %s: %s", a->text, uv_strerror(rc));
        return rc;
    }
    struct sockaddr_storage bound = a->sa;
    int len = sizeof(bound);
    uv_udp_getsockname(h, (struct sockaddr *)&bound, &len); /* the kernel's port for :0 */
    log_listening("udp", (struct sockaddr *)&bound,
                  ntohs(((struct sockaddr_in *)&bound)->sin_port)); /* same place in v6 */
    return 0;
}

/* Every listen_tcp socket listens through one acceptor (acceptor.h). [::] takes IPv4
 * modems too (IPV6_V6ONLY off), as it did when libuv's uv_tcp_bind() made the socket. */
static int start_tcp(struct gr_ingest *in, const struct gr_addr *a)
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
    log_listening("tcp", (const struct sockaddr *)&a->sa, port);
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

int gr_ingest_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                    struct gr_ingest **out)
{
    struct gr_ingest *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return -ENOMEM;
    *out = in;
    in->loop = loop;
    in->hub = hub;
    in->cfg = cfg;
    in->idle_ms = (uint64_t)cfg->tcp_idle_timeout * 1000;
    uv_timer_init(loop, &in->sweep);
    in->sweep.data = in;
    uv_timer_init(loop, &in->summary);
    in->summary.data = in;
    uv_timer_start(&in->summary, on_summary, DROP_SUMMARY_MS, DROP_SUMMARY_MS);
    uv_idle_init(loop, &in->closer);
    in->closer.data = in;
    set_conn_limit(in);
    in->ids = gr_identity_new(GR_IDENTITY_MAX);
    /* Bursts of a second's worth: a modem sending RMC+GGA+VTG per cycle, or a backlog
     * after a cell outage, is not cut off at once. */
    in->rate =
        gr_ratelimit_new(GR_RATELIMIT_SOURCES, cfg->ingest_rate_limit, cfg->ingest_rate_limit);
    in->per_source = gr_addrtable_new(GR_TCP_CONN_MAX, sizeof(unsigned), false);
    int rc = in->ids && in->rate && in->per_source ? 0 : -ENOMEM;

    for (size_t i = 0; rc == 0 && i < cfg->n_listen_udp; i++)
        rc = start_udp(in, loop, &cfg->listen_udp[i]);
    for (size_t i = 0; rc == 0 && i < cfg->n_listen_tcp; i++)
        rc = start_tcp(in, &cfg->listen_tcp[i]);
    if (rc == 0)
        start_sweep(in);
    if (rc < 0)
        gr_ingest_stop(in);
    return rc;
}

/* Modem connections close over the next loop turns (on_close_turn), then the closer. */
void gr_ingest_stop(struct gr_ingest *in)
{
    if (in->stopping)
        return;
    in->stopping = true;
    for (size_t i = 0; i < in->n_udp; i++)
        close_once((uv_handle_t *)&in->udp[i]);
    gr_acceptor_close(in->acceptor);
    while (in->conns != NULL)
        conn_retire(in->conns);
    if (in->retiring == NULL)
        close_once((uv_handle_t *)&in->closer);
    close_once((uv_handle_t *)&in->sweep);
    close_once((uv_handle_t *)&in->summary);
}

void gr_ingest_free(struct gr_ingest *in)
{
    if (in == NULL)
        return;
    gr_acceptor_free(in->acceptor);
    gr_identity_free(in->ids);
    gr_ratelimit_free(in->rate);
    gr_addrtable_free(in->per_source);
    free(in);
}

uint64_t gr_ingest_socket_drops(const struct gr_ingest *in)
{
    uint64_t drops = 0;
    for (size_t i = 0; in != NULL && i < in->n_udp; i++) {
        uv_os_fd_t fd;
        uint32_t meminfo[SK_MEMINFO_VARS];
        socklen_t len = sizeof(meminfo);
        if (uv_fileno((const uv_handle_t *)&in->udp[i], &fd) == 0 &&
            getsockopt(fd, SOL_SOCKET, SO_MEMINFO, meminfo, &len) == 0 &&
            len > SK_MEMINFO_DROPS * sizeof(uint32_t))
            drops += meminfo[SK_MEMINFO_DROPS];
    }
    return drops;
}

size_t gr_ingest_tcp_connections(const struct gr_ingest *in)
{
    return in->n_conns;
}
