/*
 * http_recorder.c - include/gpsrelay/http.h over fake connections. See http_recorder.h.
 */
#include "http_recorder.h"

#include <string.h>

#include "fuzz.h"

uint64_t recorder_now_ms;
void (*recorder_on_reply)(struct lws *wsi, unsigned status, json_t *body);

static struct lws pool[RECORDER_CONNS_MAX];
static size_t pool_used;

void recorder_reset(void)
{
    memset(pool, 0, pool_used * sizeof(pool[0]));
    pool_used = 0;
}

struct lws *recorder_open(const union gr_peer *peer)
{
    if (pool_used == RECORDER_CONNS_MAX)
        return NULL;
    struct lws *wsi = &pool[pool_used++];
    wsi->used = true;
    wsi->peer_readable = peer != NULL;
    if (peer != NULL)
        wsi->peer = *peer;
    return wsi;
}

/* Every http.h call is about a request lws still holds: the handle is valid from the
 * request's LWS_CALLBACK_HTTP until it is answered or its connection closes. */
static void check_in_flight(const struct lws *wsi)
{
    FUZZ_CHECK(wsi != NULL && wsi->used);
    FUZZ_CHECK(!wsi->closed);
    FUZZ_CHECK(wsi->in_request);
}

void recorder_begin(struct lws *wsi, bool post)
{
    FUZZ_CHECK(wsi->used && !wsi->closed && !wsi->in_request);
    wsi->in_request = true;
    wsi->post = post;
    wsi->body_done = false;
    wsi->started_ms = recorder_now_ms;
    wsi->n_args = 0;
    wsi->want_write = false;
    wsi->deadline_ms = recorder_now_ms + RECORDER_DEFAULT_DEADLINE_MS;
}

void recorder_add_arg(struct lws *wsi, const char *name, const char *value)
{
    if (wsi->n_args == RECORDER_ARGS_MAX)
        return;
    wsi->arg_name[wsi->n_args] = name;
    snprintf(wsi->arg_value[wsi->n_args], sizeof(wsi->arg_value[0]), "%s", value);
    wsi->n_args++;
}

void recorder_close(struct lws *wsi)
{
    FUZZ_CHECK(wsi->used && !wsi->closed);
    wsi->closed = true;
    wsi->in_request = false;
    wsi->want_write = false;
}

/* ---- http.h ------------------------------------------------------------------------------- */

int gr_http_reply(struct lws *wsi, unsigned int status, const char *type, const char *body,
                  size_t len)
{
    check_in_flight(wsi); /* answered at most once: the reply ends the request */
    FUZZ_CHECK(status >= 100 && status <= 599);
    FUZZ_CHECK(type != NULL && strcmp(type, "application/json") == 0);
    FUZZ_CHECK(body != NULL || len == 0);

    /* Every LongPoll answer is a JSON object with the status inside (longpoll.h). */
    json_error_t err;
    json_t *doc = json_loadb(body, len, 0, &err);
    FUZZ_CHECK(json_is_object(doc));
    FUZZ_CHECK(json_is_integer(json_object_get(doc, "status")));

    wsi->in_request = false;
    wsi->want_write = false;
    wsi->replies++;
    if (recorder_on_reply != NULL)
        recorder_on_reply(wsi, status, doc);
    json_decref(doc);
    return 0;
}

/* lws_hdr_copy_fragment gives "name=value"; http.c compares the name and copies the rest. */
const char *gr_http_arg(struct lws *wsi, const char *name, bool last, char *buf)
{
    check_in_flight(wsi);
    FUZZ_CHECK(buf != NULL);
    const char *found = NULL;
    for (size_t i = 0; i < wsi->n_args; i++) {
        if (strcmp(wsi->arg_name[i], name) == 0) {
            snprintf(buf, GR_HTTP_ARG_MAX, "%s", wsi->arg_value[i]);
            found = buf;
            if (!last)
                break;
        }
    }
    return found;
}

/* The fake requests carry no headers: no Origin (not a browser). */
int gr_http_origin(struct lws *wsi, char *buf, size_t cap)
{
    check_in_flight(wsi);
    if (cap > 0)
        buf[0] = '\0';
    return 0;
}

/* Every fake request has its length from the recorder: never ambiguous. */
bool gr_http_ambiguous_length(struct lws *wsi)
{
    check_in_flight(wsi);
    return false;
}

/* Refusals before a reply belong to WebSocket upgrades, which LongPoll never makes. */
int gr_http_refuse(struct lws *wsi, unsigned int status)
{
    (void)wsi;
    (void)status;
    FUZZ_CHECK(!"gr_http_refuse is for WebSocket upgrades");
    return 1;
}

/* Downloads are static.c's, which LongPoll never makes. */
int gr_http_completed(struct lws *wsi)
{
    (void)wsi;
    FUZZ_CHECK(!"gr_http_completed is for piecewise answers");
    return -1;
}

bool gr_http_is_post(struct lws *wsi)
{
    check_in_flight(wsi);
    return wsi->post;
}

bool gr_http_peer(struct lws *wsi, union gr_peer *out)
{
    check_in_flight(wsi);
    if (!wsi->peer_readable)
        return false;
    *out = wsi->peer;
    return true;
}

void gr_http_want_write(struct lws *wsi)
{
    check_in_flight(wsi);
    wsi->want_write = true;
}

void gr_http_set_deadline(struct lws *wsi, unsigned int secs)
{
    check_in_flight(wsi);
    wsi->deadline_ms = recorder_now_ms + (uint64_t)secs * 1000;
}
