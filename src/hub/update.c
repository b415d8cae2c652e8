/*
 * update.c - replacing the mapping, in steps (hub.h, gr_hub_update_begin).
 *
 * Steps prepare the new mapping's units beside the old ones without touching anything a
 * console sees; the last step commits it at once. A device whose topics did not change
 * keeps its unit as it is ("kept"); a device whose topics changed gets a new unit that
 * takes over the old one's state at the commit ("twin"). A device whose label changed is
 * told to the subscribers of every topic it stays in as a unit_added (docs/protocol.md: a
 * label change is a unit_added for a unit already present), kept or not.
 */
#include "model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/event.h"
#include "gpsrelay/log.h"

struct gr_hub_update {
    struct gr_hub *hub;
    struct gr_mapping *m;
    struct gr_unit **units; /* parallel to m's devices: kept old units, or new ones */
    size_t next;            /* devices prepared so far */
};

/* Whether u's topics are exactly d's agencies and its own device topic (gr_unit_new's
 * order). */
static bool unit_same_topics(const struct gr_unit *u, const struct gr_device *d)
{
    if (u->n_members != d->n_agencies + 1)
        return false;
    for (size_t k = 0; k < d->n_agencies; k++)
        if (strcmp(u->members[k].topic->name + strlen(GR_AGENCY_PREFIX), d->agencies[k]) != 0)
            return false;
    return true;
}

static bool unit_in_topic(const struct gr_unit *u, const struct gr_topic *t)
{
    for (size_t k = 0; u && k < u->n_members; k++)
        if (u->members[k].topic == t)
            return true;
    return false;
}

/* Moves what follows a device across a reload from old to u. */
static void unit_carry_over(struct gr_unit *u, struct gr_unit *old)
{
    u->pos = old->pos;
    old->pos = NULL;
    u->pos_rx_ms = old->pos_rx_ms;
    u->last_seen_ms = old->last_seen_ms;
    u->assembler = old->assembler;
    u->have_refused = old->have_refused;
    u->refused_lat = old->refused_lat;
    u->refused_lon = old->refused_lon;
    u->refused_time_ms = old->refused_time_ms;
    u->refused_rx_ms = old->refused_rx_ms;
    u->stale = old->stale;
    u->stale_seq = old->stale_seq;
    u->stale_json = old->stale_json;
    old->stale_json = NULL;
}

/* Tells every subscriber of t that u joined or left it (unit_added, unit_removed). The
 * payload is built once for all of them. */
static void send_event(struct gr_hub *hub, struct gr_topic *t, enum gr_event e,
                       const struct gr_unit *u)
{
    if (t->subs == NULL)
        return;
    char *payload = gr_event_payload(e, u);
    if (payload == NULL)
        return;
    for (struct gr_sub *s = t->subs; s; s = s->next)
        hub->opt.event(s->owner, t, e, payload);
    free(payload);
}

static int seq_cmp(const void *a, const void *b)
{
    uint64_t x = gr_member_seq(*(struct gr_member *const *)a);
    uint64_t y = gr_member_seq(*(struct gr_member *const *)b);
    return (x > y) - (x < y);
}

static int stale_seq_cmp(const void *a, const void *b)
{
    uint64_t x = gr_member_stale_seq(*(struct gr_member *const *)a);
    uint64_t y = gr_member_stale_seq(*(struct gr_member *const *)b);
    return (x > y) - (x < y);
}

/* Rebuilds the seq and stale orders of the topics on list (unmarking them) after members
 * were appended. */
static int topics_reorder(struct gr_topic *list)
{
    size_t most = 1;
    for (struct gr_topic *t = list; t; t = t->mark_next)
        if (t->n_members > most)
            most = t->n_members;
    struct gr_member **order = malloc(most * sizeof(*order));
    struct gr_topic *next;
    for (struct gr_topic *t = list; t; t = next) {
        next = t->mark_next;
        t->marked = false;
        if (order == NULL)
            continue;
        size_t n = 0;
        for (struct gr_member *m = t->head; m; m = m->next)
            order[n++] = m;
        qsort(order, n, sizeof(*order), seq_cmp);
        t->head = t->tail = NULL;
        for (size_t k = 0; k < n; k++)
            GR_LIST_APPEND(t->head, t->tail, order[k], prev, next);

        size_t n_stale = 0;
        for (size_t k = 0; k < n; k++)
            if (order[k]->unit->stale)
                order[n_stale++] = order[k];
        qsort(order, n_stale, sizeof(*order), stale_seq_cmp);
        t->stale_head = t->stale_tail = NULL;
        for (size_t k = 0; k < n_stale; k++)
            GR_LIST_APPEND(t->stale_head, t->stale_tail, order[k], stale_prev, stale_next);
    }
    free(order);
    return order ? 0 : -ENOMEM;
}

struct gr_hub_update *gr_hub_update_begin(struct gr_hub *hub, struct gr_mapping *m)
{
    if (hub->update != NULL)
        gr_hub_update_cancel(hub->update);
    struct gr_hub_update *up = calloc(1, sizeof(*up));
    size_t n = gr_mapping_count(m);
    if (up == NULL || (up->units = calloc(n ? n : 1, sizeof(*up->units))) == NULL) {
        free(up);
        gr_mapping_free(m);
        return NULL;
    }
    up->hub = hub;
    up->m = m;
    hub->update = up;
    /* Room for the new mapping's topics (one per device, plus agencies) now: at the first
     * load the table is empty and growing it is free; later it grows only with the fleet. */
    gr_topics_grow(hub, n + n / 4);
    return up;
}

static void update_free(struct gr_hub_update *up)
{
    up->hub->update = NULL;
    free(up->units);
    free(up);
}

void gr_hub_update_cancel(struct gr_hub_update *up)
{
    for (size_t i = 0; i < up->next; i++) {
        struct gr_unit *u = up->units[i];
        if (u->kept) {
            u->kept = false;
            u->relabeled = false;
            continue;
        }
        if (u->twin != NULL)
            u->twin->twin = NULL;
        gr_unit_discard(up->hub, u);
    }
    gr_mapping_free(up->m);
    update_free(up);
}

/*
 * Makes the prepared units the hub's, in one go. Work is proportional to the devices
 * (a pointer test each, and a kept unit's label pointer moved into the new mapping) plus
 * the changes.
 */
static void update_commit(struct gr_hub_update *up)
{
    struct gr_hub *hub = up->hub;
    struct gr_unit **units = up->units, **old_units = hub->units;
    size_t n = gr_mapping_count(up->m), n_old = hub->n_units;

    /* Tell subscribers what leaves their topics, before the old units go. */
    for (size_t i = 0; i < n_old; i++) {
        struct gr_unit *old = old_units[i];
        if (old->kept)
            continue;
        for (size_t k = 0; k < old->n_members; k++)
            if (!unit_in_topic(old->twin, old->members[k].topic))
                send_event(hub, old->members[k].topic, GR_EVENT_UNIT_REMOVED, old);
    }

    /* Replaced and removed units leave their topics and the fresh list; a replacement
     * takes over its predecessor's state. */
    for (size_t i = 0; i < n_old; i++) {
        struct gr_unit *old = old_units[i];
        if (old->kept)
            continue;
        for (size_t k = 0; k < old->n_members; k++) {
            gr_member_unlink(&old->members[k]);
            gr_topic_units_changed(old->members[k].topic);
        }
        struct gr_unit *now = old->twin;
        bool fresh = old->pos != NULL && !old->stale;
        if (now != NULL) {
            if (fresh)
                GR_LIST_REPLACE(hub->fresh_head, hub->fresh_tail, old, now, fresh_prev, fresh_next);
            unit_carry_over(now, old);
        } else {
            if (fresh)
                GR_LIST_UNLINK(hub->fresh_head, hub->fresh_tail, old, fresh_prev, fresh_next);
            hub->n_stale -= old->stale;
        }
    }

    /* New and replacement units join their topics, which then need their order rebuilt. */
    struct gr_topic *reorder = NULL;
    for (size_t i = 0; i < n; i++) {
        struct gr_unit *u = units[i];
        if (u->kept) {
            u->label = gr_mapping_device(up->m, i)->label; /* the old mapping goes below */
            for (size_t k = 0; u->relabeled && k < u->n_members; k++)
                gr_topic_units_changed(u->members[k].topic);
            continue;
        }
        for (size_t k = 0; k < u->n_members; k++) {
            gr_topic_units_changed(u->members[k].topic);
            u->members[k].topic->pins--;
            if (u->pos == NULL) {
                gr_member_prepend(&u->members[k]); /* its place in the order: no reorder */
            } else {
                gr_member_append(&u->members[k]);
                gr_topic_mark(&reorder, u->members[k].topic);
            }
        }
    }
    if (topics_reorder(reorder) < 0)
        gr_warn("hub: out of memory reordering topics; snapshots may be out of order");
    hub->units = units;
    hub->n_units = n;
    gr_mapping_free(hub->mapping);
    hub->mapping = up->m;

    /* Tell subscribers what joined their topics, now that it is there, and which units
     * already there have a new label. */
    for (size_t i = 0; i < n; i++) {
        struct gr_unit *u = units[i];
        if (u->kept && !u->relabeled)
            continue;
        for (size_t k = 0; k < u->n_members; k++)
            if (u->relabeled || !unit_in_topic(u->twin, u->members[k].topic))
                send_event(hub, u->members[k].topic, GR_EVENT_UNIT_ADDED, u);
        u->twin = NULL;
        u->relabeled = false;
    }

    /* Free the units that went; topics left with nobody go with them (each once). */
    struct gr_topic *release = NULL;
    for (size_t i = 0; i < n_old; i++) {
        struct gr_unit *old = old_units[i];
        if (old->kept) {
            old->kept = false;
            continue;
        }
        for (size_t k = 0; k < old->n_members; k++)
            gr_topic_mark(&release, old->members[k].topic);
        gr_unit_free(old);
    }
    struct gr_topic *next;
    for (struct gr_topic *t = release; t; t = next) {
        next = t->mark_next;
        t->marked = false;
        gr_topic_release(hub, t);
    }
    free(old_units);
    up->units = NULL; /* the hub's now */
    update_free(up);
}

int gr_hub_update_step(struct gr_hub_update *up, size_t budget)
{
    struct gr_hub *hub = up->hub;
    size_t n = gr_mapping_count(up->m);
    for (; up->next < n && budget > 0; up->next++, budget--) {
        const struct gr_device *d = gr_mapping_device(up->m, up->next);
        struct gr_unit *old = gr_units_find(hub->units, hub->n_units, d->id, strlen(d->id));
        bool relabeled = old != NULL && strcmp(old->label, d->label) != 0;
        if (old != NULL && unit_same_topics(old, d)) {
            old->kept = true;
            old->relabeled = relabeled;
            up->units[up->next] = old;
            continue;
        }
        struct gr_unit *u = gr_unit_new(hub, d);
        if (u == NULL) {
            gr_hub_update_cancel(up);
            return -ENOMEM;
        }
        if (old != NULL) {
            u->twin = old;
            old->twin = u;
            u->relabeled = relabeled;
        }
        up->units[up->next] = u;
    }
    if (up->next < n)
        return 1;
    update_commit(up);
    return 0;
}

int gr_hub_set_mapping(struct gr_hub *hub, struct gr_mapping *m)
{
    struct gr_hub_update *up = gr_hub_update_begin(hub, m);
    return up ? gr_hub_update_step(up, SIZE_MAX) : -ENOMEM;
}
