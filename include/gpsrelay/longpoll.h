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
 * Only ws.c calls this: it owns the lws callback and routes /socket/longpoll here. The
 * requests themselves are reached through http.h only (no libwebsockets.h, no ws.h), so
 * the console fuzzer drives this module without sockets. Who may open a session is
 * admission.h's, the same as for a WebSocket console.
 *
 * Lifetimes (who may free what, and how the other side learns of it):
 *   - The module owns its sessions. A session dies from the sweep (no poll for
 *     GR_LONGPOLL_SESSION_MS, a malformed POST, its token's exp) or gr_longpoll_free(),
 *     between any two callbacks of a request that refers to it.
 *   - lws owns the requests: each lives in its connection's per-session data (*reqp),
 *     from gr_longpoll_http() until it is answered or the connection closes, and is freed
 *     by the call that answers it or by gr_longpoll_done().
 *   - A request refers to its session by the session's token, never by pointer, and looks
 *     it up again on every use: a session gone meanwhile is simply not found (410).
 *   - A session points to the one poll waiting on it (its GET); the request clears that
 *     pointer when it goes, and a dying session wakes that poll so it is answered at once.
 *   - A session serves only the identity that opened it (its token's sub and agencies):
 *     its id travels in URLs and logs, so knowing it must not be enough.
 */
#ifndef GPSRELAY_LONGPOLL_H
#define GPSRELAY_LONGPOLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpsrelay/http.h"

#define GR_LONGPOLL_WINDOW_MS    10000 /* a poll with nothing to say is answered 204 after this */
#define GR_LONGPOLL_SESSION_MS   15000 /* a session with no poll for this long is gone */
#define GR_LONGPOLL_BODY_MAX     (64 * 1024) /* POST bodies, like WebSocket frames */
#define GR_LONGPOLL_SESSIONS_MAX 10000       /* sessions at once; more get status 503 */
#define GR_LONGPOLL_BODY_S       10 /* a POST body must be in within this (lws's default: 5 s) */
#define GR_LONGPOLL_ANSWER_S     5  /* a poll's answer, once due, must be taken within this */

struct gr_admission;
struct gr_hub;
struct gr_longpoll;
struct gr_longpoll_request; /* one HTTP request in flight, kept in the lws per-session data */

/*
 * Sessions on hub. admission (admission.h) checks every request (Origin, token) and
 * counts sessions per source (kind GR_ADMIT_LONGPOLL): one peer address holds at most
 * max_connections_per_source sessions at once, more get status 503. Both are borrowed and
 * must outlive the module.
 */
struct gr_longpoll *gr_longpoll_new(struct gr_hub *hub, struct gr_admission *admission);

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
