/*
 * hub.c - units, publishing, staleness, and subscriptions with their cursors. See hub.h
 * for the model; hub_internal.h for the files beside this one.
 */
#include "hub_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "gpsrelay/event.h"
#include "gpsrelay/jsonw.h"
#include "gpsrelay/log.h"
#include "gpsrelay/report.h"
#include "gpsrelay/stats.h"

/* ---- hub ------------------------------------------------------------------------------ */

struct gr_hub *gr_hub_new(const struct gr_hub_options *opt)
{
    struct gr_hub *hub = calloc(1, sizeof(*hub));
    if (hub == NULL)
        return NULL;
    hub->opt = *opt;

    uint64_t r[3]; /* the epoch, then the topic hash key */
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* The epoch needs only to differ across restarts: the clock does. The hash key is
         * then guessable, weaker against flooding, but the hub works, which beats refusing
         * to start (getrandom blocks only until the pool is first ready, at boot). */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r[0] = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        r[1] = r[0] ^ (uint64_t)(uintptr_t)hub;
        r[2] = r[0] * 0x9e3779b97f4a7c15ULL;
    }
    snprintf(hub->epoch, sizeof(hub->epoch), "%016" PRIx64, r[0]);
    hub->hash_k0 = r[1];
    hub->hash_k1 = r[2];
    return hub;
}

void gr_hub_set_limits(struct gr_hub *hub, const struct gr_hub_options *opt)
{
    hub->opt.max_future_skew_ms = opt->max_future_skew_ms;
    hub->opt.max_speed = opt->max_speed;
    hub->opt.stale_after_ms = opt->stale_after_ms;
}

void gr_unit_free(struct gr_unit *u)
{
    if (u == NULL)
        return;
    free(u->pos);
    free(u->id);
    free(u->json_id);
    free(u->stale_json);
    free(u);
}

void gr_hub_free(struct gr_hub *hub)
{
    if (hub == NULL)
        return;
    if (hub->update != NULL)
        gr_hub_update_cancel(hub->update);
    for (size_t i = 0; i < hub->n_units; i++)
        gr_unit_free(hub->units[i]);
    gr_topics_free(hub);
    free(hub->units);
    gr_mapping_free(hub->mapping);
    free(hub);
}

/* ---- units ---------------------------------------------------------------------------- */

struct gr_unit *gr_units_find(struct gr_unit **units, size_t n, const char *id, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *uid = units[mid]->id;
        size_t ulen = strlen(uid);
        /* id comes off the wire with a length and may hold any byte, NUL included. */
        int c = memcmp(id, uid, len < ulen ? len : ulen);
        if (c == 0)
            c = (len > ulen) - (len < ulen);
        if (c == 0)
            return units[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

void gr_unit_discard(struct gr_hub *hub, struct gr_unit *u)
{
    for (size_t k = 0; k < u->n_members; k++) {
        u->members[k].topic->pins--;
        gr_topic_release(hub, u->members[k].topic);
    }
    gr_unit_free(u);
}

struct gr_unit *gr_unit_new(struct gr_hub *hub, const struct gr_device *d)
{
    struct gr_unit *u = calloc(1, sizeof(*u) + (d->n_agencies + 1) * sizeof(u->members[0]));
    if (u == NULL || (u->id = strdup(d->id)) == NULL || (u->json_id = gr_json_quote(d->id)) == NULL)
        goto fail;
    char name[sizeof(GR_AGENCY_PREFIX) + GR_AGENCY_ID_MAX + GR_DEVICE_ID_MAX];
    for (size_t k = 0; k <= d->n_agencies; k++) {
        if (k < d->n_agencies)
            snprintf(name, sizeof(name), GR_AGENCY_PREFIX "%s", d->agencies[k]);
        else
            snprintf(name, sizeof(name), GR_DEVICE_PREFIX "%s", d->id);
        u->members[k].unit = u;
        u->members[k].topic = gr_topic_get(hub, name);
        if (u->members[k].topic == NULL)
            goto fail;
        u->members[k].topic->pins++;
        u->n_members = k + 1;
    }
    return u;
fail:
    if (u != NULL)
        gr_unit_discard(hub, u);
    return NULL;
}

const struct gr_mapping *gr_hub_mapping(const struct gr_hub *hub)
{
    return hub->mapping;
}

struct gr_assembler *gr_unit_assembler(struct gr_unit *u)
{
    return &u->assembler;
}

struct gr_unit *gr_hub_find_unit(struct gr_hub *hub, const char *id, size_t id_len)
{
    return gr_units_find(hub->units, hub->n_units, id, id_len);
}

struct gr_unit *gr_hub_find_unit_by_addr(struct gr_hub *hub, const struct sockaddr *sa)
{
    if (hub->mapping == NULL)
        return NULL;
    const struct gr_device *d = gr_mapping_find_addr(hub->mapping, sa);
    return d ? gr_hub_find_unit(hub, d->id, strlen(d->id)) : NULL;
}

const char *gr_hub_epoch(const struct gr_hub *hub)
{
    return hub->epoch;
}

uint64_t gr_hub_seq(const struct gr_hub *hub)
{
    return hub->seq;
}

size_t gr_hub_device_count(const struct gr_hub *hub)
{
    return hub->n_units;
}

size_t gr_hub_sub_count(const struct gr_hub *hub)
{
    return hub->n_subs;
}

size_t gr_hub_stale_count(const struct gr_hub *hub)
{
    return hub->n_stale;
}

/* ---- publishing and staleness ----------------------------------------------------------- */

/* Tells every subscriber of t; the console decides whether it must wake its transport. */
static void topic_notify(struct gr_hub *hub, struct gr_topic *t)
{
    for (struct gr_sub *s = t->subs; s; s = s->next)
        hub->opt.notify(s->owner);
}

/* A stale unit that reports again leaves its topics' stale lists and is fresh. */
static void unit_refresh(struct gr_hub *hub, struct gr_unit *u)
{
    if (u->stale) {
        for (size_t k = 0; k < u->n_members; k++) {
            struct gr_topic *t = u->members[k].topic;
            GR_LIST_UNLINK(t->stale_head, t->stale_tail, &u->members[k], stale_prev, stale_next);
        }
        u->stale = false;
        hub->n_stale--;
    } else if (u->pos != NULL) {
        GR_LIST_UNLINK(hub->fresh_head, hub->fresh_tail, u, fresh_prev, fresh_next);
    }
    GR_LIST_APPEND(hub->fresh_head, hub->fresh_tail, u, fresh_prev, fresh_next);
}

enum gr_reason gr_hub_publish(struct gr_hub *hub, struct gr_unit *u, const struct gr_fix *f,
                              int64_t now_ms, int64_t rx_ns)
{
    u->last_seen_ms = now_ms;
    enum gr_reason r = gr_filter_fix(&hub->opt, u, f, now_ms);
    if (r != GR_OK)
        return r;

    struct gr_position *p = gr_position_encode(u->json_id, hub->seq + 1, f);
    if (p == NULL) {
        gr_error("hub: out of memory encoding a position of %s", u->id);
        return GR_MALFORMED;
    }
    p->rx_ns = rx_ns;
    uint64_t replaced = u->pos ? u->pos->seq : 0; /* subscribers below it never took it */
    unit_refresh(hub, u);
    hub->seq++;
    free(u->pos);
    u->pos = p;
    u->pos_rx_ms = now_ms;
    gr_stats.positions_published++;

    for (size_t k = 0; k < u->n_members; k++) {
        struct gr_member *m = &u->members[k];
        struct gr_topic *t = m->topic;
        /* The tail's seq before this position: a subscriber whose cursor had reached it
         * had nothing pending and must be told; the others already know. */
        uint64_t was_tail = t->tail == m ? gr_member_seq(m->prev) : gr_member_seq(t->tail);
        if (t->tail != m) { /* the unit is fresh now: only the seq order changes */
            gr_member_unlink(m);
            gr_member_append(m);
        }
        for (struct gr_sub *s = t->subs; s; s = s->next) {
            if (s->cursor >= was_tail)
                hub->opt.notify(s->owner);
            else if (s->cursor < replaced)
                gr_stats.positions_conflated++;
        }
    }
    return GR_OK;
}

size_t gr_hub_check_stale(struct gr_hub *hub, int64_t now_ms)
{
    size_t n = 0;
    struct gr_unit *u;
    while ((u = hub->fresh_head) != NULL && now_ms - u->pos_rx_ms >= hub->opt.stale_after_ms) {
        GR_LIST_UNLINK(hub->fresh_head, hub->fresh_tail, u, fresh_prev, fresh_next);
        free(u->stale_json);
        u->stale_json = gr_event_payload(GR_EVENT_UNIT_STALE, u);
        u->stale = true;
        u->stale_seq = ++hub->stale_seq;
        hub->n_stale++;
        n++;
        for (size_t k = 0; k < u->n_members; k++) {
            struct gr_topic *t = u->members[k].topic;
            GR_LIST_APPEND(t->stale_head, t->stale_tail, &u->members[k], stale_prev, stale_next);
            topic_notify(hub, t);
        }
    }
    return n;
}

/* ---- subscriptions and cursors ------------------------------------------------------------ */

struct gr_sub *gr_sub_new(struct gr_hub *hub, struct gr_topic *t, void *owner)
{
    struct gr_sub *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        gr_topic_release(hub, t);
        return NULL;
    }
    s->topic = t;
    s->owner = owner;
    s->cursor = hub->seq;
    s->stale_cursor = hub->stale_seq;
    GR_LIST_PUSH(t->subs, s, prev, next);
    t->n_subs++;
    hub->n_subs++;
    return s;
}

void gr_sub_free(struct gr_hub *hub, struct gr_sub *s)
{
    struct gr_topic *t = s->topic;
    GR_LIST_REMOVE(t->subs, s, prev, next);
    t->n_subs--;
    hub->n_subs--;
    free(s);
    gr_topic_release(hub, t);
}

struct gr_topic *gr_sub_topic(const struct gr_sub *s)
{
    return s->topic;
}

bool gr_sub_pending(const struct gr_sub *s)
{
    return gr_member_seq(s->topic->tail) > s->cursor ||
           gr_member_stale_seq(s->topic->stale_tail) > s->stale_cursor;
}

/* The oldest member of t newer than seq, walking back from the newest: O(newer ones). */
static struct gr_member *first_newer(const struct gr_topic *t, uint64_t seq)
{
    struct gr_member *m = t->tail, *first = NULL;
    for (; m && gr_member_seq(m) > seq; m = m->prev)
        first = m;
    return first;
}

void gr_topic_each_since(const struct gr_topic *t, uint64_t since_seq, gr_position_fn fn, void *ctx)
{
    for (struct gr_member *m = first_newer(t, since_seq); m; m = m->next)
        if (!fn(ctx, m->unit->pos))
            return;
}

void gr_topic_each_stale(const struct gr_topic *t, gr_id_fn fn, void *ctx)
{
    for (struct gr_member *m = t->stale_head; m; m = m->stale_next)
        fn(ctx, m->unit->json_id);
}

size_t gr_sub_drain(struct gr_sub *s, gr_position_fn fn, void *ctx)
{
    size_t taken = 0;
    for (struct gr_member *m = first_newer(s->topic, s->cursor); m; m = m->next) {
        if (!fn(ctx, m->unit->pos))
            break;
        s->cursor = m->unit->pos->seq;
        taken++;
    }
    return taken;
}

const char *gr_sub_next_stale(struct gr_sub *s)
{
    struct gr_member *m = s->topic->stale_tail, *first = NULL;
    for (; m && m->unit->stale_seq > s->stale_cursor; m = m->stale_prev)
        first = m;
    if (first == NULL)
        return NULL;
    s->stale_cursor = first->unit->stale_seq;
    return first->unit->stale_json ? first->unit->stale_json : "{}";
}
