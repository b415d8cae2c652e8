/*
 * ws.h - the console side: HTTP and WebSocket on libwebsockets, on the daemon's loop.
 *
 * Serves /socket/websocket?vsn=2.0.0 (Phoenix v2 framing, via phoenix.h), /healthz,
 * /readyz and /metrics. One explicit vhost per listen_ws address, so a bind failure is
 * reported instead of lws's self-destroying context (NOTES.md).
 */
#ifndef GPSRELAY_WS_H
#define GPSRELAY_WS_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "gpsrelay/config.h"
#include "gpsrelay/hub.h"
#include "gpsrelay/stats.h"

#define GR_WS_FRAME_MAX     (64 * 1024) /* larger console frames are closed with 1009 (SPEC) */
#define GR_WS_STOP_GRACE_MS 1000        /* time consoles get to take their 1001 close frame */

struct gr_ws;
struct lws;

/*
 * Answers an HTTP request with status, a content type and a body, and completes the
 * transaction. Returns what the lws callback must return (-1: close the connection).
 */
int gr_http_reply(struct lws *wsi, unsigned int status, const char *type, const char *body,
                  size_t len);

/* Fills the gauges of /metrics from whoever owns them (the daemon). */
typedef void (*gr_gauges_fn)(void *ctx, struct gr_gauges *g);

/*
 * Creates the lws context on loop and binds every cfg->listen_ws. Returns 0 and the
 * server in *out, or a negative errno after logging what failed (a bind error names the
 * address); then *out is already stopping: run the loop out and gr_ws_free() it as usual
 * (lws needs loop turns to let go). cfg is only read during the call; hub is borrowed and
 * must outlive the server.
 */
int gr_ws_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                gr_gauges_fn gauges, void *gauges_ctx, struct gr_ws **out);

/* /readyz answers 200 once this is true, 503 before. */
void gr_ws_set_ready(struct gr_ws *ws, bool ready);

size_t gr_ws_consoles(const struct gr_ws *ws);

/*
 * Closes every console with 1001, waits for them (at most GR_WS_STOP_GRACE_MS), then
 * starts tearing libwebsockets down. After this the loop runs out of work; then call
 * gr_ws_free() after uv_run() has returned.
 */
void gr_ws_stop(struct gr_ws *ws);

/* Finishes the libwebsockets teardown (its second destroy) and frees the server. */
void gr_ws_free(struct gr_ws *ws);

#endif
