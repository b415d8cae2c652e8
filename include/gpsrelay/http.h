/*
 * http.h - the few things the console transports need from an HTTP request: its query
 * arguments and method, its peer, a reply, a wake-up for a deferred answer, a deadline.
 *
 * Implemented over libwebsockets by http.c; the console fuzzer (tests/fuzz) links a
 * recorder in its place, so the LongPoll logic runs without sockets. A struct lws is
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
