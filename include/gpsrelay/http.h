/*
 * http.h - the few things the daemon's HTTP services need from a request: its query
 * arguments, method and headers, its peer, a reply or a refusal, a wake-up for a deferred
 * answer, a deadline. Everything generic about HTTP on lws is here; what one endpoint
 * serves is in its own file (static.c, endpoints.c, longpoll.c, history.c, ws.c; the
 * phones' ingest in src/ingest/phones.c).
 *
 * Implemented over libwebsockets by http.c; the console fuzzer (tests/fuzz) links a
 * recorder in its place, so the LongPoll logic and admission run without sockets. A struct lws is
 * only a handle here: valid from the request's LWS_CALLBACK_HTTP until lws reports its
 * connection closed (LWS_CALLBACK_CLOSED_HTTP), never dereferenced outside http.c.
 */
#ifndef GPSRELAY_HTTP_H
#define GPSRELAY_HTTP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct lws;

/* A peer's address: IPv4 or IPv6 only, in 28 bytes rather than sockaddr_storage's 128
 * (kept per console and per connection, and idle consoles are meant to cost little). */
union gr_peer {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* Longest query argument read, name included: a token and then some. */
#define GR_HTTP_ARG_MAX 4160

/*
 * Answers with status, a content type and a body (Cache-Control: no-store), and
 * completes the transaction. Returns what the lws callback must return (-1: close).
 */
int gr_http_reply(struct lws *wsi, unsigned int status, const char *type, const char *body,
                  size_t len);

/*
 * The value of query argument name ("vsn"), copied into buf (GR_HTTP_ARG_MAX bytes), or
 * NULL. last: take the last occurrence instead of the first. lws's own lookup stops at
 * the first argument longer than the caller's buffer, so a token before vsn would hide it.
 */
const char *gr_http_arg(struct lws *wsi, const char *name, bool last, char *buf);

/*
 * The request's query string, rebuilt percent-encoded (form.h reads it) from lws's decoded
 * arguments, without the arguments named skip (NULL: all of them), into qs. Returns its
 * length, or -1 when it does not fit in cap - 1 bytes. lws splits the arguments at '&'
 * before decoding them, so a value's own %26 stays inside its pair.
 */
long gr_http_query(struct lws *wsi, const char *skip, char *qs, size_t cap);

/*
 * Copies the request's Origin header NUL-terminated into buf (cap bytes). Returns its
 * length, 0 when the request has none, or <0 when it does not fit.
 */
int gr_http_origin(struct lws *wsi, char *buf, size_t cap);

/*
 * Whether the request's length is one that a proxy in front and lws could read
 * differently (request smuggling): two Content-Length headers (lws 4.1 serves one of
 * them), or any Transfer-Encoding (lws lets Content-Length win over it, RFC 9112 says the
 * opposite, and lws 4.1 does not decode a chunked request body). No console sends either:
 * browsers and the phoenix client post with a Content-Length.
 */
bool gr_http_ambiguous_length(struct lws *wsi);

/*
 * Refuses a request with status and lws's own short body, and closes the connection
 * (for refusals during a WebSocket upgrade, where no reply of ours can be written yet).
 * Returns what the lws callback must return (non-zero).
 */
int gr_http_refuse(struct lws *wsi, unsigned int status);

/* Completes a transaction whose answer was written piecewise (a download). Returns what
 * the lws callback must return (-1: close). */
int gr_http_completed(struct lws *wsi);

/* Whether the request is a POST (its body follows in pieces). */
bool gr_http_is_post(struct lws *wsi);

/* The peer's address; false when it cannot be read (the connection is going). */
bool gr_http_peer(struct lws *wsi, union gr_peer *out);

/* Asks for the request's writeable callback, where a deferred answer is written. */
void gr_http_want_write(struct lws *wsi);

/*
 * The request's connection is closed unless it is answered (or this is called again)
 * within secs. lws's own default is 5 s from the request's headers, which cuts a long
 * poll before its window and a slow download in the middle.
 */
void gr_http_set_deadline(struct lws *wsi, unsigned int secs);

#endif
