/*
 * ws.c - the console server (lws 4.1 on our loop: listeners, early connections, request
 * routing) and the WebSocket transport. See ws.h for what lives where.
 */
#include "gpsrelay/ws.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "gpsrelay/acceptor.h"
#include "gpsrelay/admission.h"
#include "gpsrelay/buf.h"
#include "gpsrelay/clock.h"
#include "gpsrelay/endpoints.h"
#include "gpsrelay/history.h"
#include "gpsrelay/http.h"
#include "gpsrelay/list.h"
#include "gpsrelay/log.h"
#include "gpsrelay/longpoll.h"
#include "gpsrelay/phoenix.h"
#include "gpsrelay/static.h"
#include "gpsrelay/stats.h"

/* At most this much is written to one console per writeable callback, so one console
 * with a large backlog cannot hold the loop; the rest goes on the next callback. */
#define WRITE_BUDGET (256 * 1024)

/* lws's receive buffer per connection: small, since console frames are small and
 * larger ones arrive in pieces we reassemble. An idle console costs about 2.3 KiB of lws
 * heap with 1024, against a 4 KiB buffer alone by default. */
#define RX_BUFFER_SIZE 1024

/* lws's enum value for a close frame: private in 4.1's headers ("handled by
 * lws_close_reason()"), but the enum is declared ABI-stable. See conn_writeable(). */
#define WRITE_CLOSE ((enum lws_write_protocol)4)

/* How often consoles are checked for idle_timeout and slow_timeout: one timer for all. */
#define SWEEP_MS 1000

/* Consoles the sweep closes per loop turn; the rest wait for the next turn. About 50 ms
 * of lws's closing work on these machines (a close measured at about 0.13 ms). */
#define SWEEP_CLOSES_PER_TURN 384

/* A console asked to close whose socket takes nothing gets this long to take its close
 * frame before it is dropped without one. */
#define CLOSE_GRACE_MS 5000

/* Connections handed to lws per loop turn; the rest wait, accepted, in the acceptor
 * (acceptor.h: lws 4.1 keeps connections awaiting their request in one sorted list, whose
 * cost grows with the square of how many are in it). As many as the acceptor takes from
 * the kernel per turn: a 10,000-console storm converged in 1.35 s, against 1.9-2.1 s at
 * 256 per turn, with its longest loop turn 0.3-0.5 s instead of 0.2 s (bench/RESULTS.md). */
#define ADOPT_PER_TURN GR_ACCEPT_BATCH

/*
 * What one console's socket may hold that the kernel has not yet sent (TCP_NOTSENT_LOWAT):
 * past it a write takes no more and the socket is not writeable, so what waits stays in
 * the hub's per-console set, conflated to the newest position of each unit. Without it the
 * kernel's send buffer (autotuned to 4 MB) swallowed the backlog of a console whose link
 * carried less than its agency's load: it got positions 13 s old and growing, none
 * conflated, and a console that stopped reading filled megabytes before slow_timeout could
 * start. 16 KiB is one positions frame (GR_POSITIONS_FRAME_SOFT): about 0.3 s of a 60 KB/s
 * link, and lws keeps at most the rest of one frame besides (bench/RESULTS.md).
 */
#define UNSENT_MAX (16 * 1024)

/* The warning about refused early connections comes at most this often. */
#define EARLY_WARN_MS 10000

/* Accepted connections waiting for their turn, each holding a descriptor; past it,
 * new ones wait in the kernel's accept queue. */
#define ACCEPT_WAITING_MAX 16384

/* One WebSocket console connection. */
struct conn {
    struct lws *wsi;
    uint64_t last_rx_ms;  /* uv_now() when it last sent us anything */
    uint64_t waiting_ms;  /* uv_now() when output began to wait, or its socket last took
                           * some: slow_timeout counts from here while output waits */
    uint64_t close_at_ms; /* uv_now() when a close was asked for */
    struct gr_ws *ws;
    struct gr_console *console;
    union gr_peer peer;          /* for the per-source connection count */
    struct gr_buf rx;            /* a message arriving in fragments */
    int close_code;              /* non-zero: close with this at the next writeable */
    enum gr_close_reason reason; /* counted when the connection ends */
    struct conn *prev, *next;
    bool dirty;  /* on ws->dirty: has output for the end of this loop turn */
    bool killed; /* lws was told to drop it (LWS_TO_KILL_ASYNC) */
    struct conn *dirty_prev, *dirty_next;
};

/* lws's per-connection user data: five pointers, so plain HTTP requests cost little. */
struct pss {
    struct conn *conn;                  /* a WebSocket console */
    struct gr_token *claims;            /* from the upgrade request, until ESTABLISHED */
    struct gr_longpoll_request *lp_req; /* a LongPoll request in flight */
    struct gr_static_file *file;        /* a static_dir download in flight (static.h) */
    struct gr_history_req *history;     /* an /api/ answer in flight (history.h) */
};

struct gr_ws {
    struct lws_context *ctx; /* set to NULL by lws when it is really gone (pcontext) */
    /* Phones' listeners (listen_http_ingest) have a context of their own: lws 4.1 moves a
     * request to whichever vhost of its context its Host header names, and every vhost of
     * ours shares one port number (none: the acceptor feeds them), so "Host: :1" would
     * reach the consoles' endpoints through a phones' port, and the other way round. */
    struct lws_context *phones_ctx;
    struct gr_ws_service phones;    /* when phones_ctx is set */
    size_t phones_fd_share;         /* a quarter of the descriptors below fd_ceiling */
    const struct gr_config *cfg;    /* borrowed: listen_ws, static_dir, timeouts */
    struct gr_admission *admission; /* Origin, token, counts per source (both transports) */
    struct early *earlies;          /* every early record (struct early) */
    bool adopt_made_wsi;            /* LWS_CALLBACK_WSI_CREATE came during adopt() */
    int fd_ceiling;                 /* descriptors from here up are kept for the rest */
    uint64_t refused_since_warning; /* early connections refused since the last warning */
    uint64_t warned_ms;
    struct gr_hub *hub;
    struct gr_longpoll *longpoll;
    struct gr_history *history; /* /api/history and /api/snapshot; NULL without the archive */
    gr_gauges_fn gauges;
    void *gauges_ctx;
    struct conn *conns;
    size_t n_conns;
    const char *not_ready; /* /readyz: NULL when ready, else why not (static text) */
    bool stopping;
    bool starting;         /* a cluster node not yet caught up: consoles are refused (503) */
    size_t closing;        /* while stopping: handles (and the acceptor) not yet closed */
    gr_stopped_fn stopped; /* told once closing is 0 and lws is gone (stop.h) */
    void *stopped_arg;
    uv_idle_t teardown;           /* turns the loop between lws's two destroys (grace_done) */
    unsigned teardown_turns;      /* teardown callbacks since the first destroy */
    uv_timer_t grace;             /* shutdown: how long consoles get to take their close frame */
    uv_timer_t sweep;             /* idle and slow consoles */
    bool sweep_resumed;           /* this sweep goes on where the last turn's stopped */
    uint64_t idle_ms, slow_ms;    /* 0: no limit */
    struct gr_buf out;            /* one send buffer for all consoles, LWS_PRE headroom */
    struct conn *dirty;           /* consoles with output since the last flush */
    uv_prepare_t flush;           /* ...written before the loop next blocks (on_flush) */
    struct gr_acceptor *acceptor; /* our listening sockets; lws adopts what they accept */
};

/* ---- connections before their first request ------------------------------------------ */

/*
 * A connection from accept until its first request arrives (or it closes without one),
 * counted per source address: a host holding silent connections (slowloris) holds at most
 * max_connections_per_source of them, and cannot fill lws's list of connections awaiting
 * a request, whose bulk expiry stalls the loop.
 *
 * The record is on ws->earlies (ws owns it; gr_ws_free frees what is left) and rides on
 * the wsi as lws's opaque user data. It goes at the first request or at
 * LWS_CALLBACK_WSI_DESTROY (early_end). When lws refuses to adopt a descriptor it may
 * still have made a wsi, and on a libuv loop that wsi is destroyed only later (its handle
 * closes asynchronously; a TLS port given plain HTTP does this): so adopt() frees the
 * record only when no wsi was made or it was destroyed during the call.
 */
struct early {
    union gr_peer peer;
    bool counted;   /* still counted in ws->early */
    bool adopting;  /* inside lws_adopt_*: early_end leaves the freeing to adopt() */
    bool destroyed; /* ...and its wsi was destroyed meanwhile */
    struct early *prev, *next;
};

static void early_free(struct gr_ws *ws, struct early *e)
{
    GR_LIST_REMOVE(ws->earlies, e, prev, next);
    free(e);
}

/* The early connection's count given back, once: its first request came, or it went. */
static void early_done(struct gr_ws *ws, struct early *e)
{
    if (e == NULL || !e->counted)
        return;
    e->counted = false;
    gr_admission_release(ws->admission, GR_ADMIT_EARLY, &e->peer);
}

/* A refused connection (the caller counted it): closed, and a warning at most every
 * EARLY_WARN_MS. */
static void early_refuse(struct gr_ws *ws, int fd, enum gr_console_refusal why)
{
    close(fd);
    ws->refused_since_warning++;
    uint64_t now = uv_now(ws->grace.loop);
    if (ws->warned_ms == 0 || now - ws->warned_ms >= EARLY_WARN_MS) {
        gr_warn("ws: refused %" PRIu64 " console connection(s) in the last %d s (%s; see "
                "gpsrelay_consoles_refused_total)",
                ws->refused_since_warning, EARLY_WARN_MS / 1000,
                why == GR_REFUSED_DESCRIPTORS ? "descriptors kept in reserve"
                                              : "per-source limit, before any request");
        ws->refused_since_warning = 0;
        ws->warned_ms = now;
    }
}

/* The end of a connection's early life: its first request came, or lws destroys it. */
static void early_end(struct gr_ws *ws, struct lws *wsi)
{
    struct early *e = lws_get_opaque_user_data(wsi);
    if (e == NULL)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    early_done(ws, e);
    if (e->adopting)
        e->destroyed = true; /* adopt() frees it when lws returns */
    else
        early_free(ws, e);
}

/* ---- HTTP requests ---------------------------------------------------------------------- */

/* Refuses an ambiguous request with 400 and closes the connection: what follows on it
 * cannot be trusted to be the next request. */
static int refuse_ambiguous(struct lws *wsi)
{
    gr_stats.consoles_refused[GR_REFUSED_BAD_REQUEST]++;
    gr_http_reply(wsi, HTTP_STATUS_BAD_REQUEST, "text/plain", "ambiguous message length\n",
                  sizeof("ambiguous message length\n") - 1);
    return -1;
}

/* A new console now would be refused with 503 (counted): the answer's body, else NULL.
 * A cluster node starting does not know the stream's epoch and seq yet. */
static const char *unavailable(const struct gr_ws *ws)
{
    if (!ws->stopping && !ws->starting)
        return NULL;
    gr_stats.consoles_refused[ws->stopping ? GR_REFUSED_STOPPING : GR_REFUSED_STARTING]++;
    return ws->stopping ? "stopping\n" : "starting\n";
}

static int serve_http(struct gr_ws *ws, struct lws *wsi, struct pss *pss, const char *path)
{
    early_end(ws, wsi);
    if (gr_http_ambiguous_length(wsi))
        return refuse_ambiguous(wsi);
    if (strcmp(path, "/healthz") == 0)
        return gr_endpoint_healthz(wsi);
    if (strcmp(path, "/readyz") == 0)
        return gr_endpoint_readyz(wsi, ws->not_ready);
    if (strcmp(path, "/metrics") == 0)
        return gr_endpoint_metrics(wsi, ws->gauges, ws->gauges_ctx);
    if (strcmp(path, "/socket/longpoll") == 0) {
        const char *busy = unavailable(ws);
        return busy ? gr_http_reply(wsi, 503, "text/plain", busy, strlen(busy))
                    : gr_longpoll_http(ws->longpoll, wsi, &pss->lp_req, uv_now(ws->grace.loop));
    }
    if (gr_history_path(path))
        return gr_history_serve(ws->history, wsi, path, &pss->history);
    /* Everything under /socket/ belongs to the transports, even with static_dir set. */
    if (ws->cfg->static_dir != NULL && strncmp(path, "/socket/", 8) != 0)
        return gr_static_serve(ws->cfg->static_dir, wsi, path, &pss->file);
    return gr_http_reply(wsi, 404, "text/plain", "not found\n", 10);
}

/*
 * Decides whether an upgrade may proceed: only /socket/websocket with vsn=2.0.0, from an
 * allowed Origin, with a valid token when auth is on, within the per-source limit, and
 * not while starting (a cluster node) or stopping. Refusals get an HTTP status and no
 * upgrade.
 */
static int confirm_upgrade(struct gr_ws *ws, struct lws *wsi)
{
    char path[64], arg[GR_HTTP_ARG_MAX];
    const char *vsn;
    early_end(ws, wsi);
    if (gr_http_ambiguous_length(wsi)) {
        gr_stats.consoles_refused[GR_REFUSED_BAD_REQUEST]++;
        return gr_http_refuse(wsi, HTTP_STATUS_BAD_REQUEST);
    }
    if (lws_hdr_copy(wsi, path, sizeof(path), WSI_TOKEN_GET_URI) <= 0 ||
        strcmp(path, "/socket/websocket") != 0)
        return gr_http_refuse(wsi, HTTP_STATUS_NOT_FOUND);
    if ((vsn = gr_http_arg(wsi, "vsn", false, arg)) == NULL || strcmp(vsn, "2.0.0") != 0) {
        gr_stats.consoles_refused[GR_REFUSED_BAD_VSN]++;
        return gr_http_refuse(wsi, HTTP_STATUS_FORBIDDEN);
    }
    if (unavailable(ws) != NULL)
        return gr_http_refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE);
    struct gr_token claims;
    bool authed;
    int refused = gr_admission_check(ws->admission, wsi, &claims, &authed);
    if (refused)
        return gr_http_refuse(wsi, (unsigned)refused);
    union gr_peer peer;
    if (gr_http_peer(wsi, &peer) &&
        !gr_admission_source_ok(ws->admission, GR_ADMIT_WEBSOCKET, &peer))
        return gr_http_refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE);
    return 0;
}

static void grace_done(uv_timer_t *t);

/* ---- consoles --------------------------------------------------------------------------- */

static void console_wake(void *transport)
{
    struct conn *c = transport;
    c->waiting_ms = uv_now(c->ws->grace.loop); /* it had nothing waiting until now */
    /* Not lws_callback_on_writable(): that costs an EPOLLOUT round trip (four epoll_ctl
     * calls on libuv) per console per wake, half the CPU of a busy fan-out. */
    if (!c->dirty) {
        c->dirty = true;
        GR_LIST_PUSH(c->ws->dirty, c, dirty_prev, dirty_next);
    }
}

/* Asks for the connection to be closed with code at its next writeable callback. */
static void conn_close(struct conn *c, int code, enum gr_close_reason reason)
{
    if (c->close_code != 0)
        return;
    c->close_code = code;
    c->reason = reason;
    c->close_at_ms = uv_now(c->ws->grace.loop);
    lws_callback_on_writable(c->wsi);
}

/* A console whose upgrade went through, with its token's claims (NULL: auth none). */
static struct conn *conn_new(struct gr_ws *ws, struct lws *wsi, const struct gr_token *claims)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->console = gr_console_new(ws->hub, console_wake, c);
    if (c->console == NULL || (claims != NULL && gr_console_set_auth(c->console, claims) < 0)) {
        gr_console_free(c->console);
        free(c);
        return NULL;
    }
    if (gr_http_peer(wsi, &c->peer))
        gr_admission_hold(ws->admission, GR_ADMIT_WEBSOCKET, &c->peer);
    if (claims != NULL) /* tokens never appear in logs; who it is for does */
        gr_info("ws: console for %s connected", claims->sub[0] ? claims->sub : "(no sub)");
    c->wsi = wsi;
    c->ws = ws;
    c->rx = gr_buf_make(0);
    c->reason = GR_CLOSE_PEER;
    c->last_rx_ms = c->waiting_ms = uv_now(ws->grace.loop);
    GR_LIST_PUSH(ws->conns, c, prev, next);
    ws->n_conns++;
    return c;
}

static void conn_free(struct conn *c)
{
    struct gr_ws *ws = c->ws;
    if (c->dirty)
        GR_LIST_REMOVE(ws->dirty, c, dirty_prev, dirty_next);
    GR_LIST_REMOVE(ws->conns, c, prev, next);
    ws->n_conns--;
    gr_admission_release(ws->admission, GR_ADMIT_WEBSOCKET, &c->peer);
    gr_stats.consoles_closed[c->reason]++;
    gr_console_free(c->console);
    gr_buf_free(&c->rx);
    free(c);
    if (ws->stopping && ws->n_conns == 0 && !uv_is_closing((uv_handle_t *)&ws->grace))
        uv_timer_start(&ws->grace, grace_done, 0, 0); /* all gone: no need to wait */
}

static void conn_receive(struct conn *c, const void *in, size_t len)
{
    c->last_rx_ms = uv_now(c->ws->grace.loop);
    if (c->close_code != 0)
        return; /* closing: the rest of what it sends does not matter */
    if (lws_frame_is_binary(c->wsi)) {
        conn_close(c, GR_WS_INVALID, GR_CLOSE_MALFORMED);
        return;
    }
    if (c->rx.len + len > GR_WS_FRAME_MAX) {
        conn_close(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, GR_CLOSE_TOO_BIG);
        return;
    }
    if (gr_buf_append(&c->rx, in, len)) {
        conn_close(c, GR_WS_POLICY, GR_CLOSE_OVERFLOW);
        return;
    }
    if (!lws_is_final_fragment(c->wsi))
        return;
    int code = gr_console_receive(c->console, gr_buf_data(&c->rx), c->rx.len, c->last_rx_ms);
    c->rx.len = 0;
    if (code == GR_WS_INVALID)
        conn_close(c, code, GR_CLOSE_MALFORMED);
    else if (code != 0)
        conn_close(c, code, GR_CLOSE_OVERFLOW);
}

/* Returns -1 to have lws close the connection (with the reason set), else 0. */
static int conn_writeable(struct conn *c)
{
    struct gr_ws *ws = c->ws;
    c->waiting_ms = uv_now(ws->grace.loop);
    if (c->close_code != 0) {
        /* lws 4.1.6 sends no close frame when WRITEABLE returns -1 after
         * lws_close_reason(); write it ourselves, then hang up. */
        unsigned char frame[LWS_PRE + 2];
        frame[LWS_PRE] = (unsigned char)(c->close_code >> 8);
        frame[LWS_PRE + 1] = (unsigned char)(c->close_code & 0xff);
        lws_write(c->wsi, frame + LWS_PRE, 2, WRITE_CLOSE);
        return -1;
    }
    size_t written = 0;
    for (;;) {
        ws->out.len = 0;
        int more = gr_console_next_frame(c->console, &ws->out);
        if (more < 0) {
            conn_close(c, GR_WS_POLICY, GR_CLOSE_OVERFLOW);
            return 0;
        }
        if (more == 0)
            return 0;
        if (lws_write(c->wsi, (unsigned char *)gr_buf_data(&ws->out), ws->out.len, LWS_WRITE_TEXT) <
            (int)ws->out.len)
            return -1;
        gr_stats.ws_frames_sent++;
        written += ws->out.len;
        /* lws keeps what the kernel did not take; write again only once it has gone. */
        if (lws_partial_buffered(c->wsi) || written >= WRITE_BUDGET) {
            lws_callback_on_writable(c->wsi);
            return 0;
        }
    }
}

/*
 * Once per loop turn, just before the loop blocks: everything published since the last
 * flush goes out, whoever published it. I/O callbacks (most positions) ran just before
 * this, and so did timers and idle handles (stale units, a mapping applied in steps); a
 * flush after the poll instead left the latter waiting for whatever woke the loop next.
 *
 * Writes straight to sockets with room, outside lws's WRITEABLE callback. lws 4.1 allows
 * that on HTTP/1 WebSocket connections as long as nothing of theirs is buffered
 * (lws_partial_buffered), which is checked first; a socket with a backlog, or a close to
 * send, waits for WRITEABLE as before.
 */
static void on_flush(uv_prepare_t *h)
{
    struct gr_ws *ws = h->data;
    struct conn *c;
    while ((c = ws->dirty) != NULL) {
        GR_LIST_REMOVE(ws->dirty, c, dirty_prev, dirty_next);
        c->dirty = false;
        if (c->close_code != 0 || lws_partial_buffered(c->wsi)) {
            lws_callback_on_writable(c->wsi);
            continue;
        }
        if (conn_writeable(c) < 0)
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
}

/*
 * Once a second: consoles silent past idle_timeout are closed (1001: the console will
 * reconnect if it is still there); consoles whose socket took nothing for slow_timeout
 * while output waited are closed as slow (1008). A slow console's socket has no room
 * for a close frame, so it is dropped at once; so is any console that has not taken its
 * close frame within CLOSE_GRACE_MS.
 */
static void on_sweep(uv_timer_t *t)
{
    struct gr_ws *ws = t->data;
    uint64_t now = uv_now(t->loop);
    int64_t now_s = time(NULL);
    if (!ws->sweep_resumed)
        gr_longpoll_sweep(ws->longpoll, now, now_s);
    ws->sweep_resumed = false;
    size_t closes = 0;
    for (struct conn *c = ws->conns; c; c = c->next) {
        if (closes == SWEEP_CLOSES_PER_TURN) {
            /* The rest on the next loop turn, so that positions and health checks get
             * through in between (19,600 idle consoles closed at once stalled for 2.6 s). */
            ws->sweep_resumed = true;
            uv_timer_start(&ws->sweep, on_sweep, 0, SWEEP_MS);
            return;
        }
        if (c->close_code == 0 && now_s - GR_TOKEN_SKEW_S > gr_console_expires(c->console)) {
            conn_close(c, GR_WS_POLICY, GR_CLOSE_EXPIRED);
        } else if (c->close_code != 0) {
            if (now - c->close_at_ms >= CLOSE_GRACE_MS && !c->killed) {
                c->killed = true;
                lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            } else {
                continue;
            }
        } else if (ws->slow_ms && now - c->waiting_ms >= ws->slow_ms &&
                   gr_console_has_output(c->console)) {
            conn_close(c, GR_WS_POLICY, GR_CLOSE_SLOW);
            c->killed = true;
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        } else if (ws->idle_ms && now - c->last_rx_ms >= ws->idle_ms) {
            conn_close(c, GR_WS_GOING_AWAY, GR_CLOSE_IDLE);
        } else {
            continue;
        }
        closes++;
    }
}

/* ---- accepting ------------------------------------------------------------------------------ */

/* A phone's connection (listen_http_ingest): no console admission, only its service's
 * bounds (ws.h). Its requests are the phones' protocol's (ingest.h) from here on. */
static void adopt_phone(struct gr_ws *ws, void *vhost, int fd)
{
    size_t open = *ws->phones.open;
    if (fd >= ws->fd_ceiling || open >= ws->phones.max_open || open >= ws->phones_fd_share) {
        gr_stats.phone_refused++;
        close(fd);
        return;
    }
    lws_adopt_desc_t info;
    memset(&info, 0, sizeof(info));
    info.vh = vhost;
    info.type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | LWS_ADOPT_ALLOW_SSL;
    info.fd.sockfd = fd;
    (void)lws_adopt_descriptor_vhost_via_info(&info); /* closes fd on failure */
}

static void adopt(void *ctx, void *vhost, int fd)
{
    struct gr_ws *ws = ctx;
    if (lws_get_vhost_user(vhost) != NULL) {
        adopt_phone(ws, vhost, fd);
        return;
    }
    if (fd >= ws->fd_ceiling) {
        gr_stats.consoles_refused[GR_REFUSED_DESCRIPTORS]++;
        early_refuse(ws, fd, GR_REFUSED_DESCRIPTORS);
        return;
    }
    struct early *e = calloc(1, sizeof(*e));
    socklen_t len = sizeof(union gr_peer);
    if (e == NULL || getpeername(fd, &e->peer.sa, &len) < 0) {
        free(e);
        close(fd);
        return;
    }
    if (!gr_admission_source_ok(ws->admission, GR_ADMIT_EARLY, &e->peer)) {
        free(e);
        early_refuse(ws, fd, GR_REFUSED_PER_SOURCE);
        return;
    }
    /* Only a bound on a console's backlog (UNSENT_MAX): a kernel without it (before
     * Linux 3.12) still serves, as before. */
    int unsent_max = UNSENT_MAX;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &unsent_max, sizeof(unsent_max));
    e->counted = gr_admission_hold(ws->admission, GR_ADMIT_EARLY, &e->peer);
    GR_LIST_PUSH(ws->earlies, e, prev, next);
    lws_adopt_desc_t info;
    memset(&info, 0, sizeof(info));
    info.vh = vhost;
    info.type = LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP | LWS_ADOPT_ALLOW_SSL;
    info.fd.sockfd = fd;
    info.opaque = e;
    e->adopting = true;
    ws->adopt_made_wsi = false;
    struct lws *wsi = lws_adopt_descriptor_vhost_via_info(&info); /* closes fd on failure */
    e->adopting = false;
    if (wsi == NULL) {
        early_done(ws, e);
        if (e->destroyed || !ws->adopt_made_wsi)
            early_free(ws, e); /* else its wsi is destroyed later: early_end */
    }
}

size_t gr_ws_accept_waiting(const struct gr_ws *ws)
{
    return ws->acceptor ? gr_acceptor_waiting(ws->acceptor) : 0;
}

/* ---- the lws callback --------------------------------------------------------------------- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct gr_ws *ws = lws_context_user(lws_get_context(wsi));
    struct pss *pss = user;
    /* lws may call without per-session data (a connection closing before it had any). */
    bool longpoll = pss != NULL && pss->lp_req != NULL;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return serve_http(ws, wsi, pss, in);
    case LWS_CALLBACK_HTTP_BODY:
        return longpoll ? gr_longpoll_body(pss->lp_req, in, len) : 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return longpoll ? gr_longpoll_body_done(&pss->lp_req, uv_now(ws->grace.loop))
                        : gr_http_reply(wsi, 404, "text/plain", "not found\n", 10);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (pss != NULL && pss->file != NULL)
            return gr_static_writeable(wsi, &pss->file);
        if (pss != NULL && pss->history != NULL)
            return gr_history_writeable(wsi, &pss->history);
        return longpoll ? gr_longpoll_writeable(&pss->lp_req, uv_now(ws->grace.loop)) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (longpoll)
            gr_longpoll_done(&pss->lp_req, uv_now(ws->grace.loop));
        if (pss != NULL) {
            gr_static_done(&pss->file); /* a download the client walked away from */
            gr_history_done(&pss->history);
        }
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return confirm_upgrade(ws, wsi);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* The last moment the request's headers are there, and the first with the
         * WebSocket's own per-session data: keep the token's claims for ESTABLISHED.
         * confirm_upgrade() already refused anything admission refuses. */
        if (!gr_admission_auth_on(ws->admission))
            return 0;
        pss->claims = malloc(sizeof(*pss->claims));
        bool authed;
        return pss->claims == NULL ||
               gr_admission_check(ws->admission, wsi, pss->claims, &authed) != 0;
    case LWS_CALLBACK_WSI_CREATE:
        ws->adopt_made_wsi = true;
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        early_end(ws, wsi);
        if (pss != NULL) { /* an upgrade that never got to ESTABLISHED */
            free(pss->claims);
            pss->claims = NULL;
        }
        if (pss != NULL) {
            gr_static_done(&pss->file);
            gr_history_done(&pss->history);
        }
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        pss->conn = conn_new(ws, wsi, pss->claims);
        free(pss->claims);
        pss->claims = NULL;
        if (pss->conn == NULL) {
            gr_error("ws: out of memory accepting a console");
            return -1;
        }
        if (ws->stopping)
            conn_close(pss->conn, GR_WS_GOING_AWAY, GR_CLOSE_SHUTDOWN);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (pss->conn)
            conn_receive(pss->conn, in, len);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return pss->conn ? conn_writeable(pss->conn) : 0;
    case LWS_CALLBACK_CLOSED:
        if (pss->conn)
            conn_free(pss->conn);
        pss->conn = NULL;
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols protocols[] = {
    /* First, so HTTP requests and upgrades without a subprotocol land here too. */
    {
        .name = "phoenix",
        .callback = callback,
        .per_session_data_size = sizeof(struct pss),
        .rx_buffer_size = RX_BUFFER_SIZE,
        .tx_packet_size = GR_WS_FRAME_MAX, /* 0 would cut sends to rx_buffer_size */
    },
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- lifecycle ------------------------------------------------------------------------------ */

/*
 * No lws "validity" timers: idle consoles are found by our own sweep (idle_timeout, from
 * Phoenix heartbeats). lws 4.1 would keep one timer per connection in a single sorted
 * list and move it to the end on every frame received, walking the whole list: with
 * 10,000 consoles that walk was the largest single cost of a reconnect storm.
 */
static const lws_retry_bo_t no_validity_timers = {.secs_since_valid_ping = 0,
                                                  .secs_since_valid_hangup = 0};

/*
 * lws logs some refusals itself, a line each ("Ran out of header data space" for every
 * request whose headers exceed its 4 KiB): at most LWS_LOG_BURST of its lines go to the
 * log per LWS_LOG_WINDOW_MS, then one line says how many were left out, so nobody can
 * flood the journal by sending bad requests.
 */
#define LWS_LOG_BURST     20
#define LWS_LOG_WINDOW_MS 10000

static void lws_log(int level, const char *line)
{
    static int64_t window_ms;
    static unsigned logged, left_out;
    int64_t now_ms = gr_monotonic_ns() / 1000000;
    if (now_ms - window_ms >= LWS_LOG_WINDOW_MS) {
        if (left_out > 0)
            gr_warn("lws: %u more lines of libwebsockets left out of the log in %d s", left_out,
                    LWS_LOG_WINDOW_MS / 1000);
        window_ms = now_ms;
        logged = left_out = 0;
    }
    if (logged++ >= LWS_LOG_BURST) {
        left_out++;
        return;
    }
    int prio = level & LLL_ERR ? LOG_ERR : level & LLL_WARN ? LOG_WARNING : LOG_DEBUG;
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    gr_log(prio, "lws: %.*s", (int)len, line);
}

void gr_ws_reauthorize(struct gr_ws *ws)
{
    for (struct conn *c = ws->conns; c; c = c->next)
        gr_console_reauthorize(c->console);
    gr_longpoll_reauthorize(ws->longpoll);
}

/*
 * An lws context on loop into *pctx, which lws clears when the context is gone. Returns 0,
 * or -1 after logging.
 */
static int make_context(struct gr_ws *ws, uv_loop_t *loop, struct lws_context **pctx)
{
    void *loops[] = {loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    /* Explicit vhosts: lws_create_context() on a foreign loop hides bind errors. */
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   (ws->cfg->tls_cert ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0);
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.user = ws;
    info.pcontext = pctx;
    info.retry_and_idle_policy = &no_validity_timers;
    *pctx = lws_create_context(&info);
    if (*pctx == NULL) {
        gr_error("ws: cannot create the libwebsockets context (is libwebsockets-evlib-uv "
                 "installed?)");
        return -1;
    }
    return 0;
}

/*
 * A vhost for one listening address, serving service (consoles: user NULL), fed by the
 * acceptor. Returns 0, or -1 after logging what failed.
 */
static int serve(struct gr_ws *ws, struct lws_context *ctx, const struct gr_addr *a,
                 const struct gr_ws_service *service, const char *kind)
{
    const struct gr_config *cfg = ws->cfg;
    struct lws_context_creation_info v;
    memset(&v, 0, sizeof(v));
    v.vhost_name = a->text;
    v.port = CONTEXT_PORT_NO_LISTEN_SERVER; /* serves what the acceptor adopts into it */
    v.protocols = service->protocols;
    v.user = service->user;
    v.keepalive_timeout = (int)service->keepalive_s;
    v.retry_and_idle_policy = &no_validity_timers;
    if (cfg->tls_cert != NULL) {
        /* HTTPS/WSS only on this port. HTTP/1.1 ALPN: lws would offer h2 and
         * WebSockets over h2, which consoles do not need. */
        v.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; /* without it in the vhost's
                                                            * own options too, lws 4.1
                                                            * quietly serves plain HTTP */
        v.ssl_cert_filepath = cfg->tls_cert;
        v.ssl_private_key_filepath = cfg->tls_key;
        v.alpn = "http/1.1";
    }
    struct lws_vhost *vh = lws_create_vhost(ctx, &v);
    if (vh == NULL) {
        gr_error("%s: cannot serve %s (libwebsockets refused the vhost; TLS files?)", kind,
                 a->text);
        return -1;
    }
    int port = gr_acceptor_listen(ws->acceptor, (const struct sockaddr *)&a->sa, vh);
    if (port < 0) {
        gr_error("%s: cannot listen on %s: %s", kind, a->text, strerror(-port));
        return -1;
    }
    gr_notice("%s: listening on %s port %d%s", kind, a->host, port,
              cfg->tls_cert != NULL ? " (TLS)" : "");
    return 0;
}

int gr_ws_start(uv_loop_t *loop, const struct gr_config *cfg, const unsigned char *key,
                size_t key_len, struct gr_hub *hub, gr_gauges_fn gauges, void *gauges_ctx,
                const struct gr_ws_service *phones, struct gr_ws **out)
{
    struct gr_ws *ws = calloc(1, sizeof(*ws));
    if (ws == NULL)
        return -ENOMEM;
    ws->cfg = cfg;
    ws->hub = hub;
    ws->not_ready = "starting";
    ws->gauges = gauges;
    ws->gauges_ctx = gauges_ctx;
    ws->admission = gr_admission_new(cfg, key, key_len);
    ws->longpoll = ws->admission ? gr_longpoll_new(hub, ws->admission) : NULL;
    /* The archive's queries answer on this port, under the consoles' admission. */
    if (ws->longpoll != NULL && cfg->archive_postgres != NULL &&
        (ws->history = gr_history_new(loop, cfg, hub, ws->admission)) == NULL) {
        gr_longpoll_free(ws->longpoll);
        ws->longpoll = NULL;
    }
    struct rlimit nofile;
    ws->fd_ceiling = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
                             nofile.rlim_cur < INT_MAX
                         ? (int)nofile.rlim_cur - GR_FD_RESERVE
                         : INT_MAX;
    static const struct gr_acceptor_config consoles = {
        .name = "ws",
        .per_turn = ADOPT_PER_TURN,
        .max_waiting = ACCEPT_WAITING_MAX,
        .dual_stack = false, /* [::] and 0.0.0.0 may both be listen_ws */
        .errors = &gr_stats.accept_errors,
        .waiting_full = &gr_stats.accept_waiting_full,
    };
    if (ws->longpoll == NULL ||
        (ws->acceptor = gr_acceptor_new(loop, &consoles, adopt, ws)) == NULL) {
        gr_longpoll_free(ws->longpoll);
        gr_admission_free(ws->admission);
        free(ws);
        *out = NULL; /* nothing on the loop yet: nothing to stop */
        return -ENOMEM;
    }
    ws->out = gr_buf_make(LWS_PRE);
    uv_timer_init(loop, &ws->grace);
    ws->grace.data = ws;
    uv_unref((uv_handle_t *)&ws->grace);
    uv_idle_init(loop, &ws->teardown);
    ws->teardown.data = ws;
    ws->idle_ms = (uint64_t)cfg->idle_timeout * 1000;
    ws->slow_ms = (uint64_t)cfg->slow_timeout * 1000;
    uv_timer_init(loop, &ws->sweep);
    ws->sweep.data = ws;
    uv_timer_start(&ws->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_prepare_init(loop, &ws->flush);
    ws->flush.data = ws;
    uv_prepare_start(&ws->flush, on_flush);
    uv_unref((uv_handle_t *)&ws->flush);

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);

    if (make_context(ws, loop, &ws->ctx) < 0 || (phones != NULL && cfg->n_listen_http_ingest > 0 &&
                                                 make_context(ws, loop, &ws->phones_ctx) < 0))
        goto fail;
    if (ws->phones_ctx != NULL) {
        ws->phones = *phones;
        ws->phones_fd_share = ws->fd_ceiling == INT_MAX ? SIZE_MAX : (size_t)ws->fd_ceiling / 4;
    }

    static const struct gr_ws_service consoles_service = {.protocols = protocols};
    for (size_t i = 0; i < cfg->n_listen_ws; i++)
        if (serve(ws, ws->ctx, &cfg->listen_ws[i], &consoles_service, "ws") < 0)
            goto fail;
    for (size_t i = 0; ws->phones_ctx != NULL && i < cfg->n_listen_http_ingest; i++)
        if (serve(ws, ws->phones_ctx, &cfg->listen_http_ingest[i], phones, "phones") < 0)
            goto fail;
    /* A missing folder is not fatal: positions matter more than the demo console, and the
     * folder is looked up per request, so building it later is enough. */
    if (cfg->static_dir != NULL && access(cfg->static_dir, R_OK | X_OK) == 0)
        gr_notice("ws: serving %s at /", cfg->static_dir);
    else if (cfg->static_dir != NULL)
        gr_warn("ws: static_dir %s: %s; / answers 404 until it is there", cfg->static_dir,
                strerror(errno));
    *out = ws;
    return 0;

fail:
    *out = ws; /* the caller stops it as a started one */
    return -EADDRNOTAVAIL;
}

void gr_ws_set_config(struct gr_ws *ws, const struct gr_config *cfg)
{
    ws->cfg = cfg;
    gr_admission_set_config(ws->admission, cfg);
    if (ws->history != NULL)
        gr_history_set_config(ws->history, cfg);
    ws->idle_ms = (uint64_t)cfg->idle_timeout * 1000;
    ws->slow_ms = (uint64_t)cfg->slow_timeout * 1000;
}

void gr_ws_set_starting(struct gr_ws *ws, bool starting)
{
    ws->starting = starting;
}

void gr_ws_set_not_ready(struct gr_ws *ws, const char *not_ready)
{
    ws->not_ready = not_ready;
}

size_t gr_ws_consoles(const struct gr_ws *ws)
{
    return ws->n_conns + gr_longpoll_sessions(ws->longpoll);
}

/*
 * Stopping, in order: the acceptor, the sweep and flush handles close at once; consoles get
 * their 1001 and at most GR_WS_STOP_GRACE_MS to take it (grace); then lws's first destroy,
 * which on a foreign loop only closes its connections and libuv handles (over the next two
 * loop turns: each connection's handle, then lws's own); then, LWS_DESTROY_GAP_TURNS loop
 * turns later, the second destroy, which frees the context and clears ws->ctx (lws's
 * pcontext). lws 4.1.6 needs that gap: a second destroy fewer than three loop turns after
 * the first is a use-after-free (fixed in lws 4.2). The teardown idle handle turns the
 * loop (without blocking in poll) and counts; done is told once every handle of ours has
 * closed and lws is gone, one turn after the second destroy so whatever that destroy
 * closed has closed too.
 */
#define LWS_DESTROY_GAP_TURNS 3
/* Turns the teardown waits for lws to let go before it gives up, logs, and leaks the
 * context rather than hold the daemon's exit forever. Never reached with lws 4.1.6: it lets
 * go at the second destroy. */
#define LWS_TEARDOWN_TURNS_MAX 1000

static void maybe_stopped(struct gr_ws *ws)
{
    if (!ws->stopping || ws->closing > 0 || ws->stopped == NULL)
        return;
    gr_stopped_fn done = ws->stopped;
    ws->stopped = NULL; /* once */
    done(ws->stopped_arg);
}

static void handle_closed(uv_handle_t *h)
{
    struct gr_ws *ws = h->data;
    ws->closing--;
    maybe_stopped(ws);
}

static void close_handle(struct gr_ws *ws, uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    ws->closing++;
    uv_close(h, handle_closed);
}

/* The acceptor's and the history pool's stops call back here. */
static void acceptor_stopped(void *arg)
{
    struct gr_ws *ws = arg;
    ws->closing--;
    maybe_stopped(ws);
}

static void on_teardown(uv_idle_t *h)
{
    struct gr_ws *ws = h->data;
    unsigned turn = ws->teardown_turns++; /* turns since the first destroy's */
    bool held = false;
    struct lws_context **contexts[] = {&ws->ctx, &ws->phones_ctx};
    for (size_t i = 0; i < sizeof(contexts) / sizeof(contexts[0]); i++) {
        if (*contexts[i] == NULL || turn < LWS_DESTROY_GAP_TURNS)
            continue;
        if (turn < LWS_TEARDOWN_TURNS_MAX) {
            lws_context_destroy(*contexts[i]); /* the second (or, if lws held on, the next) */
            held = true;                       /* its closes run this turn: done comes next */
            continue;
        }
        gr_error("ws: libwebsockets did not let go of its context in %u loop turns; leaving it",
                 turn);
        *contexts[i] = NULL;
    }
    if (!held && ws->ctx == NULL && ws->phones_ctx == NULL)
        close_handle(ws, (uv_handle_t *)h);
}

/* Grace over (or every console gone): the first of lws's two destroys. */
static void grace_done(uv_timer_t *t)
{
    struct gr_ws *ws = t->data;
    close_handle(ws, (uv_handle_t *)&ws->grace);
    if (ws->ctx != NULL)
        lws_context_destroy(ws->ctx);
    if (ws->phones_ctx != NULL)
        lws_context_destroy(ws->phones_ctx);
    uv_idle_start(&ws->teardown, on_teardown);
}

void gr_ws_stop(struct gr_ws *ws, gr_stopped_fn done, void *arg)
{
    if (ws->stopping)
        return;
    ws->stopping = true;
    ws->stopped = done;
    ws->stopped_arg = arg;
    ws->closing++;
    gr_acceptor_stop(ws->acceptor, acceptor_stopped, ws);
    if (ws->history != NULL) {
        ws->closing++;
        gr_history_stop(ws->history, acceptor_stopped, ws);
    }
    close_handle(ws, (uv_handle_t *)&ws->sweep);
    close_handle(ws, (uv_handle_t *)&ws->flush);
    ws->not_ready = "stopping";
    for (struct conn *c = ws->conns; c; c = c->next)
        conn_close(c, GR_WS_GOING_AWAY, GR_CLOSE_SHUTDOWN);
    uv_ref((uv_handle_t *)&ws->grace);
    uv_timer_start(&ws->grace, grace_done, ws->n_conns ? GR_WS_STOP_GRACE_MS : 0, 0);
}

void gr_ws_free(struct gr_ws *ws)
{
    if (ws == NULL)
        return;
    gr_longpoll_free(ws->longpoll); /* lws has let go of every request by now */
    gr_history_free(ws->history);
    gr_acceptor_free(ws->acceptor);
    while (ws->earlies != NULL) /* records of wsi lws never destroyed (out of memory) */
        early_free(ws, ws->earlies);
    gr_admission_free(ws->admission); /* after everything that held a count in it */
    gr_buf_free(&ws->out);
    free(ws);
}
