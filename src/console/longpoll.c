/*
 * longpoll.c - Phoenix LongPoll sessions over lws HTTP requests. See longpoll.h.
 */
#include "gpsrelay/longpoll.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "gpsrelay/admission.h"
#include "gpsrelay/buf.h"
#include "gpsrelay/list.h"
#include "gpsrelay/log.h"
#include "gpsrelay/phoenix.h"
#include "gpsrelay/siphash.h"
#include "gpsrelay/stats.h"

#define TOKEN_BYTES 16 /* 128 random bits: a session token cannot be guessed */
#define TOKEN_HEX   (2 * TOKEN_BYTES)
#define BUCKETS     1024         /* session table; a power of two */
#define ANSWER_SOFT (256 * 1024) /* a poll's answer closes once its frames pass this many bytes */
/* A deferred poll's connection lives this long: its window, then time to answer. */
#define POLL_DEADLINE_S (GR_LONGPOLL_WINDOW_MS / 1000 + GR_LONGPOLL_ANSWER_S)

struct session {
    char token[TOKEN_HEX + 1];
    struct gr_longpoll *lp;
    struct gr_console *console;
    uint64_t identity;                /* who opened it (identity_of) */
    union gr_peer peer;               /* held in lp->admission while it lives */
    struct gr_longpoll_request *poll; /* the GET waiting for frames, or NULL; that request
                                       * clears it when it goes */
    uint64_t poll_started_ms;
    uint64_t last_poll_ms;            /* when the last poll was answered */
    bool dead;                        /* the channel layer asked for it to be closed... */
    enum gr_close_reason dead_reason; /* ...for this reason */
    struct session *bucket_next;
    struct session *prev, *next;
};

struct gr_longpoll_request {
    struct gr_longpoll *lp;
    struct lws *wsi;
    char session[TOKEN_HEX + 1]; /* the session's token, looked up on each use; "" none */
    uint64_t identity;           /* of the token that made this request */
    bool too_big;                /* a POST body over GR_LONGPOLL_BODY_MAX */
    struct gr_buf body;
};

struct gr_longpoll {
    struct gr_hub *hub;
    struct gr_admission *admission; /* borrowed: checks requests, counts sessions per source */
    struct session *buckets[BUCKETS];
    struct session *sessions;
    size_t n_sessions;
    uint64_t identity_key[2]; /* drawn at start: identities cannot be precomputed */
};

struct gr_longpoll *gr_longpoll_new(struct gr_hub *hub, struct gr_admission *admission)
{
    struct gr_longpoll *lp = calloc(1, sizeof(*lp));
    if (lp == NULL)
        return NULL;
    if (getrandom(lp->identity_key, sizeof(lp->identity_key), 0) != sizeof(lp->identity_key)) {
        free(lp);
        return NULL;
    }
    lp->hub = hub;
    lp->admission = admission;
    return lp;
}

/*
 * Who a request speaks for: a keyed hash of its token's sub and agencies, so a session
 * opened with one token cannot be used with another (a fresh token of the same console,
 * with a later exp, is the same identity). Without auth everyone is one identity.
 */
static uint64_t identity_of(const struct gr_longpoll *lp, const struct gr_token *claims)
{
    if (claims == NULL)
        return 0;
    unsigned char text[GR_TOKEN_SUB_MAX + 1 + GR_TOKEN_AGENCIES_MAX * (GR_AGENCY_ID_MAX + 1)];
    size_t n = strlen(claims->sub) + 1;
    memcpy(text, claims->sub, n); /* each string with its NUL: no two lists look alike */
    for (size_t i = 0; i < claims->n_agencies; i++) {
        size_t len = strlen(claims->agencies[i]) + 1;
        memcpy(text + n, claims->agencies[i], len);
        n += len;
    }
    return gr_siphash13(lp->identity_key[0], lp->identity_key[1], text, n);
}

size_t gr_longpoll_sessions(const struct gr_longpoll *lp)
{
    return lp->n_sessions;
}

/* ---- sessions ----------------------------------------------------------------------------- */

static size_t bucket_of(const char *token)
{
    return strtoul((char[]){token[0], token[1], token[2], token[3], '\0'}, NULL, 16) &
           (BUCKETS - 1);
}

static struct session *session_find(struct gr_longpoll *lp, const char *token)
{
    if (strlen(token) != TOKEN_HEX)
        return NULL;
    for (struct session *s = lp->buckets[bucket_of(token)]; s; s = s->bucket_next)
        if (memcmp(s->token, token, TOKEN_HEX) == 0)
            return s;
    return NULL;
}

static void session_wake(void *transport)
{
    struct session *s = transport;
    if (s->poll != NULL)
        gr_http_want_write(s->poll->wsi);
}

/* A new session for peer, or NULL (refused, counted; or out of memory): answer 503. */
static struct session *session_new(struct gr_longpoll *lp, const union gr_peer *peer,
                                   uint64_t identity, uint64_t now_ms)
{
    unsigned char raw[TOKEN_BYTES];
    if (!gr_admission_source_ok(lp->admission, GR_ADMIT_LONGPOLL, peer))
        return NULL;
    if (lp->n_sessions >= GR_LONGPOLL_SESSIONS_MAX) {
        gr_stats.consoles_refused[GR_REFUSED_SESSIONS_FULL]++;
        return NULL;
    }
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return NULL;
    struct session *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->console = gr_console_new(lp->hub, session_wake, s);
    if (s->console == NULL) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < TOKEN_BYTES; i++)
        snprintf(s->token + 2 * i, 3, "%02x", raw[i]);
    s->lp = lp;
    s->identity = identity;
    s->peer = *peer;
    gr_admission_hold(lp->admission, GR_ADMIT_LONGPOLL, peer);
    s->last_poll_ms = now_ms;
    size_t b = bucket_of(s->token);
    s->bucket_next = lp->buckets[b];
    lp->buckets[b] = s;
    GR_LIST_PUSH(lp->sessions, s, prev, next);
    lp->n_sessions++;
    return s;
}

static void session_free(struct session *s, enum gr_close_reason reason)
{
    struct gr_longpoll *lp = s->lp;
    for (struct session **l = &lp->buckets[bucket_of(s->token)]; *l; l = &(*l)->bucket_next)
        if (*l == s) {
            *l = s->bucket_next;
            break;
        }
    GR_LIST_REMOVE(lp->sessions, s, prev, next);
    lp->n_sessions--;
    gr_admission_release(lp->admission, GR_ADMIT_LONGPOLL, &s->peer);
    if (s->poll != NULL) /* its poll no longer finds it: answer it now (410) */
        gr_http_want_write(s->poll->wsi);
    gr_stats.consoles_closed[reason]++;
    gr_console_free(s->console);
    free(s);
}

void gr_longpoll_free(struct gr_longpoll *lp)
{
    if (lp == NULL)
        return;
    while (lp->sessions)
        session_free(lp->sessions, GR_CLOSE_SHUTDOWN);
    free(lp);
}

/* ---- requests ----------------------------------------------------------------------------- */

/* The request's session, if it still exists and speaks for the same identity. */
static struct session *request_session(const struct gr_longpoll_request *req)
{
    struct session *s = req->session[0] ? session_find(req->lp, req->session) : NULL;
    return s != NULL && s->identity == req->identity ? s : NULL;
}

static void request_free(struct gr_longpoll_request **reqp, uint64_t now_ms)
{
    struct gr_longpoll_request *req = *reqp;
    if (req == NULL)
        return;
    struct session *s = req->session[0] ? session_find(req->lp, req->session) : NULL;
    if (s != NULL && s->poll == req) {
        s->poll = NULL;
        s->last_poll_ms = now_ms;
    }
    gr_buf_free(&req->body);
    free(req);
    *reqp = NULL;
}

/*
 * Answers with {"status":status[,"token":T][,"messages":[...]]} and ends the request.
 * messages (a JSON array, taken; NULL: no member) are the frames, each a JSON string.
 * Returns what the lws callback must return (-1, closing, when out of memory).
 */
static int answer(struct gr_longpoll_request **reqp, int status, const struct session *s,
                  json_t *messages, uint64_t now_ms)
{
    struct lws *wsi = (*reqp)->wsi;
    request_free(reqp, now_ms);
    json_t *body = json_object();
    int err = body == NULL || json_object_set_new(body, "status", json_integer(status));
    if (!err && s != NULL)
        err = json_object_set_new(body, "token", json_string(s->token));
    if (!err && messages != NULL) {
        err = json_object_set_new(body, "messages", messages); /* taken even when it fails */
        messages = NULL;
    }
    char *text = err ? NULL : json_dumps(body, JSON_COMPACT);
    json_decref(messages);
    json_decref(body);
    if (text == NULL)
        return -1;
    /* Phoenix answers 200 with the status inside; a refusal is a real 403/503 too, for
     * proxies and logs (the client reads the body either way). */
    int rc = gr_http_reply(wsi, status == 403 || status == 503 ? (unsigned)status : 200,
                           "application/json", text, strlen(text));
    free(text);
    return rc;
}

int gr_longpoll_http(struct gr_longpoll *lp, struct lws *wsi, struct gr_longpoll_request **reqp,
                     uint64_t now_ms)
{
    request_free(reqp, now_ms); /* a keep-alive connection's previous request */
    struct gr_longpoll_request *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return -1;
    req->lp = lp;
    req->wsi = wsi;
    req->body = gr_buf_make(0);
    *reqp = req;

    char arg[GR_HTTP_ARG_MAX];
    const char *vsn = gr_http_arg(wsi, "vsn", false, arg);
    if (vsn == NULL || strcmp(vsn, "2.0.0") != 0) {
        gr_stats.consoles_refused[GR_REFUSED_BAD_VSN]++;
        return answer(reqp, 403, NULL, NULL, now_ms);
    }

    struct gr_token claims;
    bool authed = false;
    int refused = gr_admission_check(lp->admission, wsi, &claims, &authed);
    if (refused)
        return answer(reqp, refused, NULL, NULL, now_ms);
    req->identity = identity_of(lp, authed ? &claims : NULL);

    /* The session token is the LAST token= argument: a console may also send its auth
     * token under that name, and the Phoenix client appends the session's after it. */
    const char *token = gr_http_arg(wsi, "token", true, arg);
    struct session *s = token ? session_find(lp, token) : NULL;
    if (s != NULL && s->identity != req->identity) {
        /* Someone else's session id: as good as unknown to this token (a GET gets a
         * session of its own), and counted, since only a leaked id gets here. */
        gr_stats.consoles_refused[GR_REFUSED_SESSION_IDENTITY]++;
        s = NULL;
    }
    if (gr_http_is_post(wsi)) { /* answered when the body is in */
        if (s != NULL)
            memcpy(req->session, s->token, sizeof(req->session));
        gr_http_set_deadline(wsi, GR_LONGPOLL_BODY_S);
        return 0;
    }
    if (s == NULL || s->dead) {
        union gr_peer peer;
        if (!gr_http_peer(wsi, &peer))
            return -1; /* the connection is going */
        s = session_new(lp, &peer, req->identity, now_ms);
        if (s == NULL)
            return answer(reqp, 503, NULL, json_array(), now_ms);
        if (authed && gr_console_set_auth(s->console, &claims) < 0) {
            session_free(s, GR_CLOSE_PEER);
            return answer(reqp, 503, NULL, NULL, now_ms);
        }
        return answer(reqp, 410, s, json_array(), now_ms);
    }
    if (s->poll != NULL) /* one poll at a time: the older one is answered now */
        gr_http_want_write(s->poll->wsi);
    s->poll = req;
    s->poll_started_ms = now_ms;
    memcpy(req->session, s->token, sizeof(req->session));
    gr_http_set_deadline(wsi, POLL_DEADLINE_S);
    if (gr_console_has_output(s->console))
        gr_http_want_write(wsi);
    return 0;
}

int gr_longpoll_body(struct gr_longpoll_request *req, const void *in, size_t len)
{
    if (req->too_big || req->body.len + len > GR_LONGPOLL_BODY_MAX) {
        req->too_big = true;
        return 0;
    }
    return gr_buf_append(&req->body, in, len) ? -1 : 0;
}

int gr_longpoll_body_done(struct gr_longpoll_request **reqp, uint64_t now_ms)
{
    struct gr_longpoll_request *req = *reqp;
    if (req->too_big)
        return answer(reqp, 413, NULL, NULL, now_ms);
    /* Looked up now, not when the request began: the sweep may have ended the session
     * while the body was arriving. */
    struct session *s = request_session(req);
    if (s == NULL || s->dead)
        return answer(reqp, 410, NULL, NULL, now_ms);

    /* Newline-delimited frames (application/x-ndjson), each handled as a WebSocket
     * message would be. */
    const char *p = gr_buf_data(&req->body), *end = p + req->body.len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        size_t len = (size_t)(line_end - p);
        if (len > 0 && p[len - 1] == '\r')
            len--;
        int code = len > 0 ? gr_console_receive(s->console, p, len, now_ms) : 0;
        if (code != 0) { /* malformed or overflowing: the session ends */
            s->dead = true;
            s->dead_reason = code == GR_WS_INVALID ? GR_CLOSE_MALFORMED : GR_CLOSE_OVERFLOW;
            return answer(reqp, 400, NULL, NULL, now_ms);
        }
        p = line_end + 1;
    }
    return answer(reqp, 200, s, NULL, now_ms);
}

int gr_longpoll_writeable(struct gr_longpoll_request **reqp, uint64_t now_ms)
{
    struct session *s = request_session(*reqp);
    if (s == NULL || s->poll != *reqp)
        return answer(reqp, 410, NULL, json_array(), now_ms);

    /* Everything pending goes in this answer (up to ANSWER_SOFT), each frame a JSON
     * string. Not the hot path: a LongPoll console takes a batch per poll. */
    json_t *messages = json_array();
    if (messages == NULL) {
        request_free(reqp, now_ms);
        return -1;
    }
    struct gr_buf frame = gr_buf_make(0);
    size_t bytes = 0;
    int more = 0;
    while (bytes < ANSWER_SOFT && (more = gr_console_next_frame(s->console, &frame)) > 0) {
        /* A frame is JSON text the encoder wrote, so UTF-8: json_stringn fails only
         * when out of memory. */
        if (json_array_append_new(messages, json_stringn(gr_buf_data(&frame), frame.len))) {
            more = -ENOMEM;
            break;
        }
        gr_stats.ws_frames_sent++;
        bytes += frame.len;
        frame.len = 0;
    }
    gr_buf_free(&frame);
    if (more < 0) { /* this answer still goes out; the next poll starts a new session */
        s->dead = true;
        s->dead_reason = GR_CLOSE_OVERFLOW;
    }
    return answer(reqp, json_array_size(messages) ? 200 : 204, s, messages, now_ms);
}

void gr_longpoll_done(struct gr_longpoll_request **reqp, uint64_t now_ms)
{
    request_free(reqp, now_ms);
}

void gr_longpoll_reauthorize(struct gr_longpoll *lp)
{
    for (struct session *s = lp->sessions; s; s = s->next)
        gr_console_reauthorize(s->console);
}

void gr_longpoll_sweep(struct gr_longpoll *lp, uint64_t now_ms, int64_t now_s)
{
    for (struct session *s = lp->sessions, *next; s; s = next) {
        next = s->next;
        if (!s->dead && now_s - GR_TOKEN_SKEW_S > gr_console_expires(s->console)) {
            s->dead = true;
            s->dead_reason = GR_CLOSE_EXPIRED;
        }
        if (s->poll != NULL) {
            if (s->dead || now_ms - s->poll_started_ms >= GR_LONGPOLL_WINDOW_MS)
                gr_http_want_write(s->poll->wsi); /* nothing came: answer 204 */
        } else if (s->dead) {
            session_free(s, s->dead_reason);
        } else if (now_ms - s->last_poll_ms >= GR_LONGPOLL_SESSION_MS) {
            session_free(s, GR_CLOSE_IDLE);
        }
    }
}
