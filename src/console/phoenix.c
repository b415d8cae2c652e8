/*
 * phoenix.c - Phoenix Channels v2 sessions: join, leave, heartbeat, replies, and the
 * batching of pending positions into "positions" frames. This file decides what is sent
 * and when; the frames themselves are made by the console events table (event.h).
 */
#include "gpsrelay/phoenix.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gpsrelay/clock.h"
#include "gpsrelay/log.h"
#include "gpsrelay/stats.h"

struct channel {
    struct gr_sub *sub;
    char *join_ref; /* as received, JSON-encoded ("\"3\"" or "null") */
    /* The hub's events for this channel overflowed the control queue (a mapping change of
     * more units than GR_CONSOLE_CONTROL_MAX): the channel ends with phx_error, which the
     * phoenix client answers by joining again, to a reply holding the whole new state. */
    bool resync;
};

/* A reply or control event owed to the console, sent before any positions. */
struct control {
    struct control *next;
    size_t len;
    char frame[];
};

struct gr_console {
    struct gr_hub *hub;
    /* The claims of the console's token, NULL with auth none (every topic may be joined).
     * Allocated only as far as its n_agencies agencies, which is all gr_token_has_agency
     * reads: a full struct gr_token is over 4 KiB, more than the rest of an idle console. */
    struct gr_token *auth;
    double join_tokens; /* join rate bucket (GR_CONSOLE_JOIN_RATE) */
    uint64_t join_refill_ms;
    gr_console_wake_cb wake;
    void *transport;
    bool woken; /* wake() called and the transport has not drained us since */

    struct channel *channels;
    size_t n_channels;
    size_t next_channel; /* round-robin start, so one busy topic cannot starve the rest */

    struct control *control_head, *control_tail;
    size_t n_control;
    bool overflowed; /* an event found the control queue full: close with 1008 */
};

struct gr_console *gr_console_new(struct gr_hub *hub, gr_console_wake_cb wake, void *transport)
{
    struct gr_console *c = calloc(1, sizeof(*c));
    if (c != NULL) {
        c->join_tokens = GR_CONSOLE_TOPICS_MAX;
        c->hub = hub;
        c->wake = wake;
        c->transport = transport;
    }
    return c;
}

static void channel_drop(struct gr_console *c, size_t i)
{
    gr_sub_free(c->hub, c->channels[i].sub);
    free(c->channels[i].join_ref);
    c->channels[i] = c->channels[--c->n_channels];
    c->next_channel = 0;
}

void gr_console_free(struct gr_console *c)
{
    if (c == NULL)
        return;
    while (c->n_channels > 0)
        channel_drop(c, c->n_channels - 1);
    free(c->channels);
    free(c->auth);
    for (struct control *q = c->control_head, *next; q; q = next) {
        next = q->next;
        free(q);
    }
    free(c);
}

bool gr_console_has_output(const struct gr_console *c)
{
    if (c->control_head != NULL || c->overflowed)
        return true;
    for (size_t i = 0; i < c->n_channels; i++)
        if (c->channels[i].resync || gr_sub_pending(c->channels[i].sub))
            return true;
    return false;
}

static void wake(struct gr_console *c)
{
    if (!c->woken) {
        c->woken = true;
        c->wake(c->transport);
    }
}

void gr_console_on_pending(void *owner)
{
    wake(owner);
}

static int queue_text(struct gr_console *c, const char *topic, enum gr_event e,
                      const char *payload);

void gr_console_on_event(void *owner, const struct gr_topic *t, enum gr_event e,
                         const char *payload)
{
    struct gr_console *c = owner;
    struct channel *ch = NULL;
    for (size_t i = 0; i < c->n_channels && ch == NULL; i++)
        if (gr_sub_topic(c->channels[i].sub) == t)
            ch = &c->channels[i];
    if (ch != NULL && ch->resync)
        return; /* its join again will tell it */
    if (queue_text(c, gr_topic_json_name(t), e, payload) == 0)
        return;
    if (ch == NULL)
        c->overflowed = true;
    else
        ch->resync = true;
    gr_stats.channels_resynced++;
    wake(c);
}

/* Queues a finished frame. Returns 0, or GR_WS_POLICY when the console stopped reading. */
static int control_push(struct gr_console *c, const struct gr_buf *frame)
{
    if (c->n_control >= GR_CONSOLE_CONTROL_MAX)
        return GR_WS_POLICY;
    struct control *q = malloc(sizeof(*q) + frame->len);
    if (q == NULL)
        return GR_WS_POLICY;
    q->next = NULL;
    q->len = frame->len;
    memcpy(q->frame, gr_buf_data(frame), frame->len);
    if (c->control_tail)
        c->control_tail->next = q;
    else
        c->control_head = q;
    c->control_tail = q;
    c->n_control++;
    wake(c);
    return 0;
}

/* Queues the frame of event e (event.h) built from subject. 0 or GR_WS_POLICY. */
static int queue(struct gr_console *c, const char *join_ref, const char *ref, const char *topic,
                 enum gr_event e, const void *subject)
{
    struct gr_buf b = gr_buf_make(0);
    int rc = gr_event_frame(&b, join_ref, ref, topic, e, subject) < 0 ? GR_WS_POLICY
                                                                      : control_push(c, &b);
    gr_buf_free(&b);
    return rc;
}

/* Queues an event the hub pushed, with the payload it built. 0 or GR_WS_POLICY. */
static int queue_text(struct gr_console *c, const char *topic, enum gr_event e, const char *payload)
{
    struct gr_buf b = gr_buf_make(0);
    int rc = gr_event_frame_text(&b, "null", "null", topic, e, payload) < 0 ? GR_WS_POLICY
                                                                            : control_push(c, &b);
    gr_buf_free(&b);
    return rc;
}

static int reply_ok(struct gr_console *c, const char *join_ref, const char *ref, const char *topic)
{
    struct gr_reply ok = {0};
    return queue(c, join_ref, ref, topic, GR_EVENT_PHX_REPLY, &ok);
}

static int reply_error(struct gr_console *c, const char *join_ref, const char *ref,
                       const char *topic, const char *reason)
{
    struct gr_reply error = {.error = reason};
    return queue(c, join_ref, ref, topic, GR_EVENT_PHX_REPLY, &error);
}

/* phx_close for a channel: it carries the join's own ref as both refs, as Phoenix does. */
static int queue_close(struct gr_console *c, const char *join_ref, const char *topic)
{
    return queue(c, join_ref, join_ref, topic, GR_EVENT_PHX_CLOSE, NULL);
}

static long channel_find(const struct gr_console *c, const char *topic)
{
    for (size_t i = 0; i < c->n_channels; i++)
        if (strcmp(gr_topic_name(gr_sub_topic(c->channels[i].sub)), topic) == 0)
            return (long)i;
    return -1;
}

/* ---- authorization ------------------------------------------------------------------------ */

int gr_console_set_auth(struct gr_console *c, const struct gr_token *t)
{
    size_t size = offsetof(struct gr_token, agencies) + t->n_agencies * sizeof(t->agencies[0]);
    struct gr_token *a = malloc(size);
    if (a == NULL)
        return -ENOMEM;
    memcpy(a, t, size); /* t's agencies are sorted already, as gr_token_has_agency needs */
    free(c->auth);
    c->auth = a;
    return 0;
}

int64_t gr_console_expires(const struct gr_console *c)
{
    return c->auth ? c->auth->exp : INT64_MAX;
}

/* Whether the console may join topic: every topic without auth; an agency of its token;
 * a device mapped to one of its agencies. */
static bool may_join(const struct gr_console *c, const char *topic)
{
    if (c->auth == NULL)
        return true;
    if (strncmp(topic, "agency:", 7) == 0)
        return gr_token_has_agency(c->auth, topic + 7);
    if (strncmp(topic, "device:", 7) == 0 && gr_hub_mapping(c->hub) != NULL) {
        const struct gr_device *d =
            gr_mapping_find(gr_hub_mapping(c->hub), topic + 7, strlen(topic + 7));
        for (size_t i = 0; d && i < d->n_agencies; i++)
            if (gr_token_has_agency(c->auth, d->agencies[i]))
                return true;
    }
    return false;
}

void gr_console_reauthorize(struct gr_console *c)
{
    for (size_t i = c->n_channels; i-- > 0;) {
        struct channel *ch = &c->channels[i];
        struct gr_topic *t = gr_sub_topic(ch->sub);
        if (may_join(c, gr_topic_name(t)))
            continue;
        if (queue_close(c, ch->join_ref, gr_topic_json_name(t)) != 0)
            c->overflowed = true;
        channel_drop(c, i);
    }
}

/* Takes a join from the socket's bucket: GR_CONSOLE_JOIN_RATE a second after a burst. */
static bool join_allowed(struct gr_console *c, uint64_t now_ms)
{
    if (now_ms > c->join_refill_ms) {
        c->join_tokens += (double)(now_ms - c->join_refill_ms) / 1000.0 * GR_CONSOLE_JOIN_RATE;
        if (c->join_tokens > GR_CONSOLE_TOPICS_MAX)
            c->join_tokens = GR_CONSOLE_TOPICS_MAX;
        c->join_refill_ms = now_ms;
    }
    if (c->join_tokens < 1.0)
        return false;
    c->join_tokens -= 1.0;
    return true;
}

/* ---- join ---------------------------------------------------------------------------- */

/*
 * The since_seq a join asks to resume from: the payload's seq when its epoch is ours and
 * the seq is one this hub has given, or in a cluster one the stream has (the reply then
 * says "recovered"), else 0 for a full snapshot (docs/protocol.md).
 */
static uint64_t join_since(const struct gr_hub *hub, json_t *payload, bool *recovered)
{
    json_t *since = json_object_get(payload, "since");
    const char *epoch = json_string_value(json_object_get(since, "epoch"));
    json_t *seq = json_object_get(since, "seq");
    *recovered = false;
    if (epoch == NULL || !json_is_integer(seq) || strcmp(epoch, gr_hub_epoch(hub)) != 0)
        return 0;
    json_int_t n = json_integer_value(seq);
    if (n < 0 || (uint64_t)n > gr_hub_seq_known(hub))
        return 0;
    *recovered = true;
    return (uint64_t)n;
}

static int handle_join(struct gr_console *c, const char *join_ref, const char *ref,
                       const char *topic_name, const char *topic_json, json_t *payload)
{
    long existing = channel_find(c, topic_name);
    if (existing >= 0) {
        /* Phoenix closes the old join first, so the client's old channel object sees
         * its own phx_close before the new join's reply. */
        struct channel *old = &c->channels[existing];
        int rc = queue_close(c, old->join_ref, topic_json);
        channel_drop(c, (size_t)existing);
        if (rc)
            return rc;
    }
    if (c->n_channels >= GR_CONSOLE_TOPICS_MAX) {
        gr_stats.joins_refused[GR_JOIN_TOO_MANY_TOPICS]++;
        return reply_error(c, join_ref, ref, topic_json, "too many topics");
    }
    if (!may_join(c, topic_name)) {
        gr_stats.joins_refused[GR_JOIN_UNAUTHORIZED]++;
        return reply_error(c, join_ref, ref, topic_json, "unauthorized");
    }

    struct gr_topic *t = gr_hub_topic(c->hub, topic_name);
    if (t == NULL) {
        gr_stats.joins_refused[GR_JOIN_UNMATCHED]++;
        return reply_error(c, join_ref, ref, topic_json, "unmatched topic");
    }

    struct channel *grown = realloc(c->channels, (c->n_channels + 1) * sizeof(*grown));
    if (grown == NULL)
        return GR_WS_POLICY;
    c->channels = grown;
    struct gr_sub *sub = gr_sub_new(c->hub, t, c);
    char *jr = strdup(join_ref);
    if (sub == NULL || jr == NULL) {
        if (sub)
            gr_sub_free(c->hub, sub);
        free(jr);
        return GR_WS_POLICY;
    }

    /* Snapshot and subscription in the same loop turn: the reply's seq is the
     * subscription's cursor, so nothing is missed or sent twice. A cluster node behind the
     * seq a console resumes from (it was on a node further ahead) starts the cursor there:
     * what the console has is not sent again when this node applies it. */
    struct gr_reply joined = {.topic = t,
                              .epoch = gr_hub_epoch(c->hub),
                              .node = gr_hub_node(c->hub),
                              .seq = gr_hub_seq(c->hub)};
    joined.since = join_since(c->hub, payload, &joined.recovered);
    if (joined.since > joined.seq) {
        gr_sub_skip_to(sub, joined.since);
        joined.seq = joined.since;
    }
    int rc = queue(c, join_ref, ref, topic_json, GR_EVENT_PHX_REPLY, &joined);
    if (rc) {
        gr_sub_free(c->hub, sub);
        free(jr);
        return rc;
    }
    c->channels[c->n_channels++] = (struct channel){.sub = sub, .join_ref = jr};
    return 0;
}

/* ---- receive ------------------------------------------------------------------------- */

/* Phoenix refs are strings or null; integers are echoed too, anything else is malformed. */
static bool is_ref(const json_t *v)
{
    return json_is_string(v) || json_is_null(v) || json_is_integer(v);
}

int gr_console_receive(struct gr_console *c, const char *frame, size_t len, uint64_t now_ms)
{
    json_error_t jerr;
    json_t *msg = json_loadb(frame, len, 0, &jerr);
    if (msg == NULL || !json_is_array(msg) || json_array_size(msg) != 5 ||
        !is_ref(json_array_get(msg, 0)) || !is_ref(json_array_get(msg, 1)) ||
        !json_is_string(json_array_get(msg, 2)) || !json_is_string(json_array_get(msg, 3))) {
        json_decref(msg);
        return GR_WS_INVALID;
    }

    const char *topic = json_string_value(json_array_get(msg, 2));
    const char *event = json_string_value(json_array_get(msg, 3));
    json_t *payload = json_array_get(msg, 4);
    char *join_ref = json_dumps(json_array_get(msg, 0), JSON_ENCODE_ANY | JSON_COMPACT);
    char *ref = json_dumps(json_array_get(msg, 1), JSON_ENCODE_ANY | JSON_COMPACT);
    char *topic_json = json_dumps(json_array_get(msg, 2), JSON_ENCODE_ANY | JSON_COMPACT);
    int rc = GR_WS_POLICY;
    if (join_ref == NULL || ref == NULL || topic_json == NULL)
        goto out;

    if (strcmp(topic, "phoenix") == 0 && strcmp(event, "heartbeat") == 0) {
        rc = reply_ok(c, "null", ref, topic_json);
        goto out;
    }
    if (strcmp(event, "phx_join") == 0) {
        if (!join_allowed(c, now_ms)) {
            gr_stats.joins_refused[GR_JOIN_RATE_LIMITED]++;
            rc = reply_error(c, join_ref, ref, topic_json, "too many joins");
            goto out;
        }
        rc = handle_join(c, join_ref, ref, topic, topic_json, payload);
        goto out;
    }

    long i = channel_find(c, topic);
    if (i < 0) {
        rc = reply_error(c, join_ref, ref, topic_json, "unmatched topic");
        goto out;
    }
    if (strcmp(c->channels[i].join_ref, join_ref) != 0) {
        /* A message for an earlier join of this topic: Phoenix drops these. */
        gr_debug("console: ignoring %s on %s with stale join_ref %s", event, topic, join_ref);
        rc = 0;
        goto out;
    }
    if (strcmp(event, "phx_leave") == 0) {
        rc = reply_ok(c, join_ref, ref, topic_json);
        if (rc == 0)
            rc = queue_close(c, join_ref, topic_json);
        channel_drop(c, (size_t)i);
        goto out;
    }
    rc = reply_error(c, join_ref, ref, topic_json, "unsupported event");

out:
    free(join_ref);
    free(ref);
    free(topic_json);
    json_decref(msg);
    return rc;
}

/* ---- send ---------------------------------------------------------------------------- */

int gr_console_next_frame(struct gr_console *c, struct gr_buf *out)
{
    if (c->overflowed)
        return -EOVERFLOW;
    struct control *q = c->control_head;
    if (q != NULL) {
        if (gr_buf_append(out, q->frame, q->len))
            return -ENOMEM;
        c->control_head = q->next;
        if (c->control_head == NULL)
            c->control_tail = NULL;
        c->n_control--;
        free(q);
        return 1;
    }

    for (size_t k = 0; k < c->n_channels; k++) {
        size_t i = (c->next_channel + k) % c->n_channels;
        struct gr_sub *sub = c->channels[i].sub;
        const char *topic = gr_topic_json_name(gr_sub_topic(sub));
        if (c->channels[i].resync) { /* its join again sends what it has pending */
            int rc = gr_event_frame(out, c->channels[i].join_ref, "null", topic, GR_EVENT_PHX_ERROR,
                                    NULL);
            channel_drop(c, i);
            return rc < 0 ? rc : 1;
        }
        if (!gr_sub_pending(sub))
            continue;
        /* The frame is written right after it is made: now is when it is delivered. */
        struct gr_batch batch = {sub, out->len, GR_POSITIONS_FRAME_SOFT, gr_monotonic_ns(),
                                 gr_wall_clock_ms()};
        int taken = gr_event_frame(out, "null", "null", topic, GR_EVENT_POSITIONS, &batch);
        if (taken < 0)
            return -ENOMEM;
        if (taken == 0) {
            /* No positions: what is pending is a unit gone stale, one frame each. */
            out->len = batch.start;
            const char *stale = gr_sub_next_stale(sub);
            if (stale == NULL)
                continue;
            if (gr_event_frame_text(out, "null", "null", topic, GR_EVENT_UNIT_STALE, stale) < 0)
                return -ENOMEM;
        }
        c->next_channel = i + 1;
        return 1;
    }
    c->woken = false;
    return 0;
}
