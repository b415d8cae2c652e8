/*
 * http_recorder.h - http.h over fake connections, for the console fuzzer (fuzz_console.c).
 *
 * http_recorder.c implements every function of include/gpsrelay/http.h on the struct lws
 * defined here: the request's method, query arguments and peer are what the fuzzer chose,
 * and what the code under test asks (a reply, a wake-up, a deadline) is recorded. It
 * checks http.h's contract as it goes and aborts on a violation, so libFuzzer keeps the
 * input: a call on a connection lws reported closed, a call about a request that is not
 * in flight (answered already, or none begun), a second reply to one request, a reply
 * whose body is not a JSON object with an integer "status".
 *
 * Connections come from a pool that is only reset between inputs: a closed connection
 * is never reused within an input, so a late call on it is always seen as such (in the
 * gcc replay too, where AddressSanitizer would not see it).
 */
#ifndef GPSRELAY_HTTP_RECORDER_H
#define GPSRELAY_HTTP_RECORDER_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "gpsrelay/http.h"

#define RECORDER_ARGS_MAX      4  /* query arguments of one fake request */
#define RECORDER_ARG_VALUE_MAX 80 /* a session token (32) or a fake auth token, and then some */
#define RECORDER_CONNS_MAX     1024

/* lws's own deadline for a request nobody set one for (its default, 5 s). */
#define RECORDER_DEFAULT_DEADLINE_MS 5000

struct lws {
    bool used;   /* taken from the pool in this input */
    bool closed; /* lws reported the connection closed: nothing may touch it again */

    /* The request in flight: from recorder_begin() until its reply or the close. */
    bool in_request;
    bool post;
    bool body_done; /* a POST's body is complete (LWS_CALLBACK_HTTP_BODY_COMPLETION ran) */
    uint64_t started_ms;
    const char *arg_name[RECORDER_ARGS_MAX];
    char arg_value[RECORDER_ARGS_MAX][RECORDER_ARG_VALUE_MAX];
    size_t n_args;

    union gr_peer peer;
    bool peer_readable; /* false: getpeername() fails, the connection is going */

    /* What the code under test asked for. */
    bool want_write;      /* a writeable callback is owed */
    uint64_t deadline_ms; /* lws closes the connection at this time unless it is answered */
    unsigned replies;     /* over the connection's life */

    /* The caller's, untouched by the recorder: who the fuzzer made this request speak for. */
    int auth;
};

/* The clock deadlines are counted on (uv_now() in the daemon). */
extern uint64_t recorder_now_ms;

/* Called with every reply: the HTTP status and the parsed body (borrowed for the call). */
extern void (*recorder_on_reply)(struct lws *wsi, unsigned status, json_t *body);

/* Forgets every connection: the start of an input. */
void recorder_reset(void);

/* A new connection from peer (NULL: one whose peer cannot be read), or NULL when the
 * pool is spent (the input has done enough). */
struct lws *recorder_open(const union gr_peer *peer);

/* Begins a request on wsi, which has none in flight: the method and no arguments yet. */
void recorder_begin(struct lws *wsi, bool post);

/* Adds query argument name=value to the request being begun (name is borrowed). */
void recorder_add_arg(struct lws *wsi, const char *name, const char *value);

/* lws reports the connection closed; the caller has let the code under test know. */
void recorder_close(struct lws *wsi);

#endif
