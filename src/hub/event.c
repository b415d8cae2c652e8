/*
 * event.c - the console events (event.h): one table of names and payload builders.
 *
 * Every payload goes through the JSON writer (jsonw.h). The positions payload is the hot
 * one, written once per console write: it copies positions encoded once (encode.c), a
 * buffer append each, and adds no work per position beyond the copy.
 */
#include "model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/calendar.h"
#include "gpsrelay/event.h"
#include "gpsrelay/jsonw.h"
#include "gpsrelay/stats.h"

/* Builds the payload from its subject (event.h's table says which). Returns >= 0 (for
 * positions, how many it took), or stores the failure in w->err. */
typedef int (*payload_fn)(struct gr_jsonw *w, const void *subject);

/* ---- phx_reply, phx_close ----------------------------------------------------------------- */

static bool snapshot_add(void *ctx, const struct gr_position *p)
{
    gr_jsonw_raw(ctx, p->json, p->json_len);
    return true;
}

static void snapshot_add_stale(void *ctx, const char *json_id)
{
    gr_jsonw_raw(ctx, json_id, strlen(json_id));
}

static int unit_id_cmp(const void *a, const void *b)
{
    return strcmp((*(struct gr_unit *const *)a)->id, (*(struct gr_unit *const *)b)->id);
}

/*
 * The topic's "units" array: [{"device":id,"label":label}, ...] in device id order, so that
 * it does not depend on who reported last (the members are in seq order, for the cursors).
 * Encoded once and kept in the topic until its units change: a reconnect storm of
 * thousands of consoles on one agency copies it rather than sorting and escaping its units
 * once per join. NULL on ENOMEM.
 */
static const char *units_json(struct gr_topic *t, size_t *len)
{
    if (t->units_json != NULL) {
        *len = t->units_json_len;
        return t->units_json;
    }
    const struct gr_unit **order = malloc((t->n_members ? t->n_members : 1) * sizeof(*order));
    if (order == NULL)
        return NULL;
    size_t n = 0;
    for (struct gr_member *m = t->head; m; m = m->next)
        order[n++] = m->unit;
    qsort(order, n, sizeof(*order), unit_id_cmp);
    struct gr_buf b = gr_buf_make(0);
    struct gr_jsonw w = gr_jsonw_make(&b);
    gr_jsonw_array(&w);
    for (size_t k = 0; k < n; k++) {
        gr_jsonw_object(&w);
        gr_jsonw_key(&w, "device");
        gr_jsonw_raw(&w, order[k]->json_id, strlen(order[k]->json_id));
        gr_jsonw_key(&w, "label");
        gr_jsonw_string(&w, order[k]->label);
        gr_jsonw_object_end(&w);
    }
    gr_jsonw_array_end(&w);
    free(order);
    if (w.err) {
        gr_buf_free(&b);
        return NULL;
    }
    t->units_json_len = b.len;
    char *text = realloc(b.mem, b.len);          /* kept: give back the spare room */
    t->units_json = text != NULL ? text : b.mem; /* head 0: the text starts at mem */
    *len = t->units_json_len;
    return t->units_json;
}

/* A join's response: the hub's epoch and seq (the subscription's cursor), whether the
 * client's since was honoured, the topic's positions newer than it, its stale units, and
 * every unit of the topic with its label, in id order, so a console can list the units
 * that never reported. */
static void join_response(struct gr_jsonw *w, const struct gr_reply *r)
{
    gr_jsonw_key(w, "epoch");
    gr_jsonw_string(w, r->epoch);
    gr_jsonw_key(w, "seq");
    gr_jsonw_u64(w, r->seq);
    gr_jsonw_key(w, "recovered");
    gr_jsonw_bool(w, r->recovered);
    gr_jsonw_key(w, "positions");
    gr_jsonw_array(w);
    gr_topic_each_since(r->topic, r->since, snapshot_add, w);
    gr_jsonw_array_end(w);
    gr_jsonw_key(w, "stale");
    gr_jsonw_array(w);
    gr_topic_each_stale(r->topic, snapshot_add_stale, w);
    gr_jsonw_array_end(w);
    gr_jsonw_key(w, "units");
    size_t units_len;
    const char *units = units_json(r->topic, &units_len);
    if (units != NULL)
        gr_jsonw_raw(w, units, units_len);
    else if (w->err == 0)
        w->err = -ENOMEM;
    if (r->node != NULL) {
        gr_jsonw_key(w, "node");
        gr_jsonw_string(w, r->node);
    }
}

static int reply_payload(struct gr_jsonw *w, const void *subject)
{
    const struct gr_reply *r = subject;
    gr_jsonw_object(w);
    gr_jsonw_key(w, "status");
    gr_jsonw_string(w, r->error ? "error" : "ok");
    gr_jsonw_key(w, "response");
    gr_jsonw_object(w);
    if (r->error != NULL) {
        gr_jsonw_key(w, "reason");
        gr_jsonw_string(w, r->error);
    } else if (r->topic != NULL) {
        join_response(w, r);
    }
    gr_jsonw_object_end(w);
    gr_jsonw_object_end(w);
    return 0;
}

static int close_payload(struct gr_jsonw *w, const void *subject)
{
    (void)subject;
    gr_jsonw_object(w);
    gr_jsonw_object_end(w);
    return 0;
}

/* ---- positions ---------------------------------------------------------------------------- */

struct batch_ctx {
    struct gr_jsonw *w;
    const struct gr_batch *batch;
    size_t taken;
};

static bool batch_add(void *ctx, const struct gr_position *p)
{
    struct batch_ctx *s = ctx;
    const struct gr_batch *b = s->batch;
    /* Always take one, so a position bigger than the soft limit still goes out. */
    if (s->taken > 0 && s->w->b->len - b->start + p->json_len > b->soft_max)
        return false;
    gr_jsonw_raw(s->w, p->json, p->json_len);
    if (s->w->err)
        return false;
    s->taken++;
    gr_histogram_observe(&gr_stats.delivery_latency, (double)(b->now_ns - p->rx_ns) / 1e9);
    /* How old the dot is as the console gets it: the modem's delay and clock included. A
     * fix dated ahead (within max_future_skew) counts as fresh, not as a negative age. */
    int64_t age_ms = b->now_ms - p->time_ms;
    gr_histogram_observe(&gr_stats.position_age, age_ms > 0 ? (double)age_ms / 1e3 : 0);
    return true;
}

static int positions_payload(struct gr_jsonw *w, const void *subject)
{
    struct batch_ctx s = {w, subject, 0};
    gr_jsonw_object(w);
    gr_jsonw_key(w, "positions");
    gr_jsonw_array(w);
    if (w->err == 0)
        gr_sub_drain(s.batch->sub, batch_add, &s);
    gr_jsonw_array_end(w);
    gr_jsonw_object_end(w);
    return (int)s.taken;
}

/* ---- unit_added, unit_removed, unit_stale --------------------------------------------------- */

static void unit_device(struct gr_jsonw *w, const struct gr_unit *u)
{
    gr_jsonw_object(w);
    gr_jsonw_key(w, "device");
    gr_jsonw_raw(w, u->json_id, strlen(u->json_id));
}

/* unit_added carries the unit's label, and its latest position too, so a console shows a
 * unit that joins its agency at once instead of at its next report (docs/protocol.md). It
 * also tells of a new label for a unit already there. */
static int unit_added_payload(struct gr_jsonw *w, const void *subject)
{
    const struct gr_unit *u = subject;
    unit_device(w, u);
    gr_jsonw_key(w, "label");
    gr_jsonw_string(w, u->label);
    if (u->pos != NULL) {
        gr_jsonw_key(w, "position");
        gr_jsonw_raw(w, u->pos->json, u->pos->json_len);
    }
    gr_jsonw_object_end(w);
    return 0;
}

static int unit_removed_payload(struct gr_jsonw *w, const void *subject)
{
    unit_device(w, subject);
    gr_jsonw_object_end(w);
    return 0;
}

/* Built when the unit goes stale: its last position's fix time and when it was last heard
 * from at all (an invalid fix counts). */
static int unit_stale_payload(struct gr_jsonw *w, const void *subject)
{
    const struct gr_unit *u = subject;
    char last_time[GR_TIME_TEXT_MAX], last_seen[GR_TIME_TEXT_MAX];
    gr_time_format(u->pos->time_ms, last_time);
    gr_time_format(u->last_seen_ms, last_seen);
    unit_device(w, u);
    gr_jsonw_key(w, "last_time");
    gr_jsonw_string(w, last_time);
    gr_jsonw_key(w, "last_seen");
    gr_jsonw_string(w, last_seen);
    gr_jsonw_object_end(w);
    return 0;
}

/* ---- the table ------------------------------------------------------------------------------ */

/* An event: its name, and the same as a JSON string literal, which a frame copies
 * rather than escaping a name that never needs it on every console write. */
#define EVENT(e, name, payload) [e] = {name, "\"" name "\"", payload}

static const struct {
    const char *name;
    const char *json_name;
    payload_fn payload;
} events[GR_EVENT_COUNT] = {
    EVENT(GR_EVENT_PHX_REPLY, "phx_reply", reply_payload),
    EVENT(GR_EVENT_PHX_CLOSE, "phx_close", close_payload),
    EVENT(GR_EVENT_POSITIONS, "positions", positions_payload),
    EVENT(GR_EVENT_UNIT_ADDED, "unit_added", unit_added_payload),
    EVENT(GR_EVENT_UNIT_REMOVED, "unit_removed", unit_removed_payload),
    EVENT(GR_EVENT_UNIT_STALE, "unit_stale", unit_stale_payload),
};

const char *gr_event_name(enum gr_event e)
{
    return events[e].name;
}

/* [join_ref, ref, topic, "<name>", then the payload and "]" are the caller's. */
static void frame_start(struct gr_jsonw *w, const char *join_ref, const char *ref,
                        const char *topic, enum gr_event e)
{
    gr_jsonw_array(w);
    gr_jsonw_raw(w, join_ref, strlen(join_ref));
    gr_jsonw_raw(w, ref, strlen(ref));
    gr_jsonw_raw(w, topic, strlen(topic));
    gr_jsonw_raw(w, events[e].json_name, strlen(events[e].json_name));
}

int gr_event_frame(struct gr_buf *b, const char *join_ref, const char *ref, const char *topic,
                   enum gr_event e, const void *subject)
{
    struct gr_jsonw w = gr_jsonw_make(b);
    frame_start(&w, join_ref, ref, topic, e);
    int n = events[e].payload(&w, subject);
    gr_jsonw_array_end(&w);
    return w.err ? w.err : n;
}

int gr_event_frame_text(struct gr_buf *b, const char *join_ref, const char *ref, const char *topic,
                        enum gr_event e, const char *payload)
{
    struct gr_jsonw w = gr_jsonw_make(b);
    frame_start(&w, join_ref, ref, topic, e);
    gr_jsonw_raw(&w, payload, strlen(payload));
    gr_jsonw_array_end(&w);
    return w.err;
}

char *gr_event_payload(enum gr_event e, const void *subject)
{
    struct gr_buf b = gr_buf_make(0);
    struct gr_jsonw w = gr_jsonw_make(&b);
    events[e].payload(&w, subject);
    if (w.err || gr_buf_append(&b, "", 1) < 0) { /* the terminating NUL */
        gr_buf_free(&b);
        return NULL;
    }
    /* A unit_stale payload is kept while the unit stays stale: give back the spare room. */
    char *text = realloc(b.mem, b.len);
    return text != NULL ? text : b.mem; /* head 0: the text starts at mem */
}
