/*
 * longpoll.h - the Phoenix LongPoll transport at /socket/longpoll, for consoles behind
 * proxies that strip WebSockets. The same channel layer (phoenix.h) as the WebSocket
 * transport, carried by plain HTTP requests:
 *
 *   GET  without a session token  -> {"status":410,"token":T,"messages":[]}  (connected)
 *   GET  ?token=T                 -> {"status":200,"token":T,"messages":[frame, ...]}
 *                                    as soon as frames wait, or {"status":204,...} after
 *                                    GR_LONGPOLL_WINDOW_MS with none
 *   POST ?token=T, newline-delimited frames -> {"status":200,"token":T}
 *   an unknown or expired T       -> {"status":410,...}: a new session (GET) or an error
 *
 * Every answer is HTTP 200 with the status in the body, as Phoenix does; a refused
 * request (vsn) gets HTTP 403 and {"status":403}. A session dies GR_LONGPOLL_SESSION_MS
 * after its last poll ended.
 *
 * Only ws.c calls this: it owns the lws callback and routes /socket/longpoll here.
 */
#ifndef GPSRELAY_LONGPOLL_H
#define GPSRELAY_LONGPOLL_H

#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "gpsrelay/hub.h"

#define GR_LONGPOLL_WINDOW_MS    10000 /* a poll with nothing to say is answered 204 after this */
#define GR_LONGPOLL_SESSION_MS   15000 /* a session with no poll for this long is gone */
#define GR_LONGPOLL_BODY_MAX     (64 * 1024) /* POST bodies, like WebSocket frames */
#define GR_LONGPOLL_SESSIONS_MAX 10000       /* sessions at once; more get status 503 */

struct gr_longpoll;
struct gr_longpoll_request; /* one HTTP request in flight, kept in the lws per-session data */
struct gr_console;

/*
 * Admission of every LongPoll request (Origin, token): returns 0, or the HTTP status to
 * refuse with. console is the new session's console when one is being created (it takes
 * the token's claims), else NULL.
 */
typedef int (*gr_longpoll_admit_fn)(void *ctx, struct lws *wsi, struct gr_console *console);

struct gr_longpoll *gr_longpoll_new(struct gr_hub *hub, gr_longpoll_admit_fn admit, void *ctx);

/* Ends every session and frees everything; call once lws has let go of its requests. */
void gr_longpoll_free(struct gr_longpoll *lp);

/*
 * LWS_CALLBACK_HTTP for /socket/longpoll. *reqp (in the connection's lws per-session
 * data, NULL when idle) holds the request's state until it is answered: every function
 * below that answers frees it and sets *reqp to NULL. Each returns what the lws callback
 * must return.
 */
int gr_longpoll_http(struct gr_longpoll *lp, struct lws *wsi, struct gr_longpoll_request **reqp,
                     uint64_t now_ms);

/* LWS_CALLBACK_HTTP_BODY and LWS_CALLBACK_HTTP_BODY_COMPLETION of that request. */
int gr_longpoll_body(struct gr_longpoll_request *req, const void *in, size_t len);
int gr_longpoll_body_done(struct gr_longpoll_request **reqp, uint64_t now_ms);

/* LWS_CALLBACK_HTTP_WRITEABLE of that request: the deferred answer to a poll. */
int gr_longpoll_writeable(struct gr_longpoll_request **reqp, uint64_t now_ms);

/* The connection closed with the request unanswered (LWS_CALLBACK_CLOSED_HTTP). */
void gr_longpoll_done(struct gr_longpoll_request **reqp, uint64_t now_ms);

/* Once a second: answers polls past their window, ends sessions past their lifetime or
 * their token's. */
void gr_longpoll_sweep(struct gr_longpoll *lp, uint64_t now_ms, int64_t now_s);

/* gr_console_reauthorize() for every session, after a mapping change. */
void gr_longpoll_reauthorize(struct gr_longpoll *lp);

size_t gr_longpoll_sessions(const struct gr_longpoll *lp);

#endif
