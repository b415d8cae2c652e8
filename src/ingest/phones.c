/*
 * phones.c - phones' position reports over HTTP (listen_http_ingest, ingest.h): the lws
 * protocol that reads one OsmAnd request, hands its report to the pipeline like a modem's
 * line, and answers with the verdict.
 *
 * A request's query string and body are gathered into one buffer, the query first: the
 * classic Traccar Client posts its parameters in the query with an empty body, the newer
 * SDK in a form body, Traccar Client 9 a JSON body (its query, if any, is not read). The
 * body's size is known from Content-Length before any of it is read, so a body over
 * GR_PHONE_BODY_MAX is refused unread, and every body being read counts against
 * GR_PHONE_BODIES_MAX until it is answered or abandoned.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libwebsockets.h>

#include "gpsrelay/clock.h"
#include "gpsrelay/http.h"
#include "gpsrelay/ingest.h"
#include "gpsrelay/osmand.h"
#include "gpsrelay/ratelimit.h"
#include "pipeline.h"

/* One request of a connection: lws's per-session data, used again by each request of a
 * keep-alive connection. */
struct phone_req {
    char *text;         /* the query string, '&' and the form body; or the query, then JSON */
    size_t len;         /* bytes in text */
    size_t body_at;     /* where the body starts in text */
    size_t held;        /* the body's size while it is being read (gr_ingest.phone_bodies) */
    int64_t began_ns;   /* when its headers were in: the body has GR_PHONE_BODY_TIMEOUT_S */
    union gr_peer peer; /* the sender, read once per request */
    bool json;
};

static const char *const status_codes[] = {
#define GR_PHONE_CODE(name, label) label,
    GR_PHONE_STATUSES(GR_PHONE_CODE)
#undef GR_PHONE_CODE
};

static void req_reset(struct gr_ingest *in, struct phone_req *q)
{
    if (in != NULL)
        in->phone_bodies -= q->held;
    free(q->text);
    memset(q, 0, sizeof(*q));
}

/* Answers and keeps the connection (the request was read whole). */
static int answer(struct lws *wsi, enum gr_phone_status s, const char *why)
{
    gr_stats.phone_requests[s]++;
    char body[64] = "";
    if (s != GR_PHONE_OK)
        snprintf(body, sizeof(body), "%s\n", why);
    return gr_http_reply(wsi, (unsigned)atoi(status_codes[s]), "text/plain", body, strlen(body));
}

/* Refuses and closes the connection: what follows the headers was not read. */
static int refuse(struct lws *wsi, enum gr_phone_status s)
{
    gr_stats.phone_requests[s]++;
    return gr_http_refuse(wsi, (unsigned)atoi(status_codes[s]));
}

/* The report in q: rate limit, decoding, identity, publishing. Sets *why for an answer
 * other than 200. */
static enum gr_phone_status take(struct gr_ingest *in, struct phone_req *q, const char **why)
{
    gr_stats.ingest_reports++;
    bool evicted = false;
    if (!gr_ratelimit_allow(in->rate, &q->peer.sa, gr_wall_clock_ms(), &evicted)) {
        gr_stats.ingest_rate_limited++;
        *why = "rate_limited";
        return GR_PHONE_TOO_MANY;
    }
    gr_stats.ingest_rate_evicted += evicted;
    struct gr_osmand_report rep;
    enum gr_reason r = q->json
                           ? gr_osmand_decode_json(q->text + q->body_at, q->len - q->body_at, &rep)
                           : gr_osmand_decode_form(q->text, q->len, &rep);
    *why = gr_reason_label(r);
    if (r != GR_OK) {
        gr_stats.ingest_rejected[r]++;
        return GR_PHONE_BAD_REQUEST;
    }
    r = gr_ingest_publish_own(in, rep.id, &rep.fix);
    *why = gr_reason_label(r);
    /* Refused by the acceptance rules (a duplicate, older, ...): counted, and taken, or
     * the phone would send it again and again. */
    return r == GR_UNKNOWN_DEVICE       ? GR_PHONE_NOT_FOUND
           : r == GR_CLUSTER_QUEUE_FULL ? GR_PHONE_UNAVAILABLE
                                        : GR_PHONE_OK;
}

static int take_and_answer(struct gr_ingest *in, struct lws *wsi, struct phone_req *q)
{
    const char *why;
    enum gr_phone_status s = take(in, q, &why);
    req_reset(in, q);
    return answer(wsi, s, why);
}

/* The Content-Length header as a number: 0 when absent, -1 when not a number. */
static long long content_length(struct lws *wsi)
{
    char v[32];
    int n = lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP_CONTENT_LENGTH);
    if (n <= 0)
        return n == 0 ? 0 : -1;
    long long len = 0;
    for (int i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9' || len > GR_PHONE_BODY_MAX)
            return v[i] < '0' || v[i] > '9' ? -1 : len;
        len = len * 10 + (v[i] - '0');
    }
    return len;
}

static bool content_is_json(struct lws *wsi)
{
    char v[64];
    return lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP_CONTENT_TYPE) > 0 &&
           strncasecmp(v, "application/json", 16) == 0;
}

/* A request's headers are in: refuse it, answer it (no body), or wait for its body. */
static int begin(struct gr_ingest *in, struct lws *wsi, struct phone_req *q)
{
    req_reset(in, q);
    if (in->stopping)
        return refuse(wsi, GR_PHONE_UNAVAILABLE);
    bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    if (!get && !gr_http_is_post(wsi))
        return refuse(wsi, GR_PHONE_METHOD);
    if (!gr_http_peer(wsi, &q->peer) || !gr_ingest_allowed(in, &q->peer.sa)) {
        gr_stats.ingest_not_allowed++;
        return refuse(wsi, GR_PHONE_FORBIDDEN);
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
        return refuse(wsi, GR_PHONE_LENGTH);
    long long body = content_length(wsi);
    if (body < 0 || gr_http_ambiguous_length(wsi) || (get && body > 0)) {
        gr_stats.ingest_rejected[GR_MALFORMED]++;
        return refuse(wsi, GR_PHONE_BAD_REQUEST);
    }
    if (body > GR_PHONE_BODY_MAX) {
        gr_stats.ingest_rejected[GR_BODY_TOO_BIG]++;
        return refuse(wsi, GR_PHONE_TOO_LARGE);
    }
    if (in->phone_bodies + (size_t)body > GR_PHONE_BODIES_MAX)
        return refuse(wsi, GR_PHONE_UNAVAILABLE);

    char query[GR_PHONE_QUERY_MAX];
    long qlen = gr_http_query(wsi, NULL, query, sizeof(query));
    if (qlen < 0) {
        gr_stats.ingest_rejected[GR_LINE_TOO_LONG]++;
        return body > 0 ? refuse(wsi, GR_PHONE_BAD_REQUEST)
                        : answer(wsi, GR_PHONE_BAD_REQUEST, gr_reason_label(GR_LINE_TOO_LONG));
    }
    q->text = malloc((size_t)qlen + 1 + (size_t)body + 1);
    if (q->text == NULL)
        return refuse(wsi, GR_PHONE_UNAVAILABLE);
    memcpy(q->text, query, (size_t)qlen);
    q->len = (size_t)qlen;
    q->json = body > 0 && content_is_json(wsi);
    if (qlen > 0 && body > 0 && !q->json)
        q->text[q->len++] = '&';
    q->body_at = q->len;
    if (body == 0)
        return take_and_answer(in, wsi, q);
    q->held = (size_t)body;
    in->phone_bodies += q->held;
    q->began_ns = gr_monotonic_ns();
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in_,
                    size_t len)
{
    struct gr_ingest *in = lws_get_vhost_user(lws_get_vhost(wsi));
    struct phone_req *q = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return begin(in, wsi, q);
    case LWS_CALLBACK_HTTP_BODY:
        if (q->held == 0)
            return 0; /* answered already */
        /* lws allows 5 s between two pieces; a body that trickles in gets this long. */
        if (gr_monotonic_ns() - q->began_ns > GR_PHONE_BODY_TIMEOUT_S * 1000000000LL)
            return -1; /* closed: counted incomplete */
        if (q->len - q->body_at + len > q->held) {
            req_reset(in, q); /* more than its Content-Length: lws would not */
            return refuse(wsi, GR_PHONE_BAD_REQUEST);
        }
        memcpy(q->text + q->len, in_, len);
        q->len += len;
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (q->held == 0)
            return 0;
        if (!q->json && q->len == q->body_at + q->held && q->text[q->body_at] == '{')
            q->json = true; /* JSON under another Content-Type, or none */
        return take_and_answer(in, wsi, q);
    case LWS_CALLBACK_WSI_CREATE:
        in->phone_conns++;
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        in->phone_conns--;
        /* fall through */
    case LWS_CALLBACK_CLOSED_HTTP:
        if (q != NULL) {
            gr_stats.phone_incomplete += q->held > 0;
            req_reset(in, q);
        }
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return refuse(wsi, GR_PHONE_METHOD); /* nothing to upgrade to here */
    default:
        return lws_callback_http_dummy(wsi, reason, user, in_, len);
    }
}

static const struct lws_protocols protocols[] = {
    {
        .name = "osmand",
        .callback = callback,
        .per_session_data_size = sizeof(struct phone_req),
    },
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

const struct lws_protocols *gr_ingest_phone_protocols(void)
{
    return protocols;
}

const size_t *gr_ingest_phone_connections(const struct gr_ingest *in)
{
    return &in->phone_conns;
}
