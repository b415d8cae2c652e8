/*
 * ws.h - the console server: libwebsockets on the daemon's loop, the requests it routes,
 * and the WebSocket transport.
 *
 * ws.c owns the lws context, one explicit vhost per listen_ws address fed by our own
 * listening sockets (acceptor.h: bind failures are reported with their cause, and a
 * reconnect storm is taken off the kernel's queue at once but handed to lws at a bounded
 * pace), a second context likewise for the phones' listen_http_ingest (whose requests the
 * phones' service serves: ingest.h), the connections before their first request, the routing of
 * each request, and the WebSocket consoles at /socket/websocket?vsn=2.0.0 (Phoenix v2 framing,
 * phoenix.h): upgrade, frames in, frames out, idle and slow consoles. Everything else a request may
 * reach has its own file:
 *   - /socket/longpoll: longpoll.c (longpoll.h);
 *   - /healthz, /readyz, /metrics: endpoints.c (endpoints.h);
 *   - with static_dir, every other path outside /socket/: static.c (static.h);
 *   - Origin, token and per-source limits of both transports: admission.c (admission.h);
 *   - generic HTTP on lws (query arguments, headers, replies): http.c (http.h).
 *
 * Lifetimes on the console side (the pairs one callback chain can reach after another
 * freed one of them):
 *   - connection and console: lws owns the connection (wsi); ws.c's console record for it
 *     lives from LWS_CALLBACK_ESTABLISHED to LWS_CALLBACK_CLOSED, which frees it, clears
 *     the pointer in the connection's per-session data and unlinks it from every list
 *     (consoles, output pending) the timers walk. ws.c never frees a connection itself:
 *     it asks lws to (LWS_TO_KILL_ASYNC), which happens outside the caller's chain.
 *   - connection before its first request: a record on the wsi (lws opaque user data)
 *     counted per source, freed at the first request or at LWS_CALLBACK_WSI_DESTROY.
 *   - LongPoll request and session: see longpoll.h (the request holds the session's
 *     token, never a pointer).
 *   - console and subscriptions: see phoenix.h and hub.h (gr_sub_new).
 */
#ifndef GPSRELAY_WS_H
#define GPSRELAY_WS_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "gpsrelay/config.h"
#include "gpsrelay/endpoints.h"
#include "gpsrelay/hub.h"
#include "gpsrelay/stop.h"

/* Larger console messages are closed with 1009 (docs/protocol.md). */
#define GR_WS_FRAME_MAX     (64 * 1024)
#define GR_WS_STOP_GRACE_MS 1000 /* time consoles get to take their 1001 close frame */
/* Console connections never take the last GR_FD_RESERVE descriptors (acceptor.h): one
 * that would is closed at once and counted (gpsrelay_consoles_refused_total, reason
 * "descriptors"). */

struct gr_ws;
struct lws_protocols;

/* Another service on the server's libwebsockets: lws protocols (the first serves every
 * request), their vhosts' user data (not NULL), how long an idle keep-alive connection
 * stays (0: lws's 5 s), and its connections: the service counts them in *open (from
 * LWS_CALLBACK_WSI_CREATE to LWS_CALLBACK_WSI_DESTROY), and a new one is closed at once
 * when max_open are open or a quarter of the descriptors left for connections would be
 * passed, so consoles always keep the rest. */
struct gr_ws_service {
    const struct lws_protocols *protocols;
    void *user;
    unsigned keepalive_s;
    const size_t *open;
    size_t max_open;
};

/*
 * Creates the lws context on loop and binds every cfg->listen_ws (HTTPS/WSS only when
 * cfg has tls_cert), and every cfg->listen_http_ingest for phones (their service: ingest.h;
 * NULL: none), TLS likewise. Phones' connections get no console admission, only the
 * descriptors' bound (gpsrelay_ingest_http_refused_total). key (key_len bytes) is the HS256 secret
 * consoles' tokens are checked with, or NULL for auth none. cfg and key are borrowed for the
 * server's life. Returns 0 and the server in *out, or a negative errno after logging what failed (a
 * bind error names the address: -EADDRNOTAVAIL; -ENOMEM with *out NULL); then *out, unless NULL,
 * holds what was started: stop and free it as a started one (stop.h; lws needs loop turns
 * to let go). cfg is only read during the call; hub is borrowed and must outlive the
 * server.
 */
int gr_ws_start(uv_loop_t *loop, const struct gr_config *cfg, const unsigned char *key,
                size_t key_len, struct gr_hub *hub, gr_gauges_fn gauges, void *gauges_ctx,
                const struct gr_ws_service *phones, struct gr_ws **out);

/* After a mapping change: closes channels whose token no longer covers them. */
void gr_ws_reauthorize(struct gr_ws *ws);

/* /readyz answers 200 while not_ready is NULL, else 503 with it as the reason (text that
 * lives as long as ws, a string literal). */
void gr_ws_set_not_ready(struct gr_ws *ws, const char *not_ready);

/* While starting, consoles are refused with 503 (consoles_refused{reason="starting"}): a
 * cluster node until it has first caught up with the stream, whose epoch and seq it does
 * not know before. A single daemon never starts so. */
void gr_ws_set_starting(struct gr_ws *ws, bool starting);

/* A reloaded configuration: allowed_origin, max_connections_per_source, idle_timeout,
 * slow_timeout and static_dir apply from now on; listeners and TLS stay. cfg is borrowed
 * from now on. */
void gr_ws_set_config(struct gr_ws *ws, const struct gr_config *cfg);

size_t gr_ws_consoles(const struct gr_ws *ws);

/* Connections accepted and waiting for their turn to be handed to lws (acceptor.h). */
size_t gr_ws_accept_waiting(const struct gr_ws *ws);

/*
 * Stops listening, closes every console with 1001 and waits for them (at most
 * GR_WS_STOP_GRACE_MS), then tears libwebsockets down (both of its destroys, loop turns
 * apart: ws.c says why); done(arg) once lws is gone and every handle closed (stop.h).
 */
void gr_ws_stop(struct gr_ws *ws, gr_stopped_fn done, void *arg);

/* Frees the server once its stop's done has been called (from inside done is fine). NULL
 * is fine. */
void gr_ws_free(struct gr_ws *ws);

#endif
