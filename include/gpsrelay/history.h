/*
 * history.h - GET /api/history and GET /api/snapshot (docs/history.md): the archive's
 * positions read back over HTTP on the console port, through a small pool of PostgreSQL
 * connections (pgconn.h).
 *
 *   /api/history?device=ID&from=T&to=T[&limit=N][&format=ndjson|geojson]
 *   /api/snapshot?agency=ID&at=T
 *
 * Who may ask is decided as for consoles (admission.h: Origin, then the token from
 * "Authorization: Bearer" or token=), then the query string (history_query.h), then the
 * device or agency against the token's agencies and the mapping. Answers: 200; 400 with the
 * parser's one-line reason; 401 (WWW-Authenticate: Bearer) for no or a bad token; 403 for
 * an Origin refused, and one and the same 403 for a device or agency that is unknown or
 * outside the token's agencies (ids cannot be probed); 404 without archive_postgres; 405
 * for anything but GET; 503 with Retry-After when the archive is unreachable or
 * GR_HISTORY_QUERIES_MAX queries already run. Each answer is counted under its status in
 * gpsrelay_history_requests_total.
 *
 * Answers are streamed: rows come one at a time (libpq's single-row mode) into a bounded
 * output buffer written as HTTP/1.1 chunks from the writeable callback; while the client
 * takes less than PostgreSQL sends, the connection stops reading (gr_pgconn_pause), so the
 * rows wait in the server's socket and not here. A client that goes away mid-answer drops
 * its connection (the server's backend sees the socket close and ends the statement); a
 * fresh one is opened for the next request.
 *
 * Ownership: gr_history_new() returns the pool; it borrows cfg (until the next
 * gr_history_set_config), hub and admission until gr_history_free(). A request in flight is
 * a struct gr_history_req in the connection's lws per-session data (*reqp): from
 * gr_history_serve() until its answer is complete, or the connection closes
 * (gr_history_done(), which the lws callback calls at LWS_CALLBACK_CLOSED_HTTP and
 * LWS_CALLBACK_WSI_DESTROY). Whatever ends a request frees it and sets *reqp to NULL. The
 * pool keeps a pointer to each request it serves; gr_history_done() clears it.
 */
#ifndef GPSRELAY_HISTORY_H
#define GPSRELAY_HISTORY_H

#include <stdbool.h>

#include <uv.h>

#include "gpsrelay/admission.h"
#include "gpsrelay/config.h"
#include "gpsrelay/hub.h"
#include "gpsrelay/stop.h"

/* Queries at once, each on a PostgreSQL connection of its own, opened on first need and
 * kept for the next; one more request is answered 503. Each connection is a backend on the
 * archive's server and a query may read a day of 1 Hz positions, so a few are plenty for
 * the dispatchers who ask for tracks by hand. */
#define GR_HISTORY_QUERIES_MAX 4

struct gr_history;
struct gr_history_req;

/* A new pool (no connection yet), or NULL on ENOMEM. */
struct gr_history *gr_history_new(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                                  struct gr_admission *admission);

/* A reloaded configuration: stale_after, and archive_postgres unset (404) from now on. A
 * changed conninfo applies to connections opened after it; open ones are kept. */
void gr_history_set_config(struct gr_history *h, const struct gr_config *cfg);

/* Whether path is one of the API's (the console server routes it here). */
bool gr_history_path(const char *path);

/*
 * LWS_CALLBACK_HTTP for a path of the API. h NULL (no archive_postgres): 404. Answers at
 * once (a refusal) or starts a request in *reqp (NULL before). Returns what the lws
 * callback must return.
 */
int gr_history_serve(struct gr_history *h, struct lws *wsi, const char *path,
                     struct gr_history_req **reqp);

/* LWS_CALLBACK_HTTP_WRITEABLE of a request: its status and headers, or its next chunk;
 * the last one completes the transaction. Returns what the lws callback must return. */
int gr_history_writeable(struct lws *wsi, struct gr_history_req **reqp);

/* Ends a request the client walked away from (its query dropped with its connection);
 * nothing when *reqp is NULL. */
void gr_history_done(struct gr_history_req **reqp);

/* Closes every connection (stop.h). Requests still open are cut (their clients see the
 * answer end early) and freed by gr_history_done() as lws closes them. */
void gr_history_stop(struct gr_history *h, gr_stopped_fn done, void *arg);
void gr_history_free(struct gr_history *h);

#endif
