/*
 * hub.c - units, topics and cursor subscriptions. See hub.h for the model.
 */
#include "gpsrelay/hub.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <jansson.h>

#include "gpsrelay/list.h"
#include "gpsrelay/log.h"
#include "gpsrelay/calendar.h"
#include "gpsrelay/report.h"
#include "gpsrelay/siphash.h"
#include "gpsrelay/stats.h"

#define AGENCY_PREFIX "agency:"
#define DEVICE_PREFIX "device:"

/* A unit's place in one topic: in the seq order, and in the stale order while stale. */
struct gr_member {
    struct gr_unit *unit;
    struct gr_topic *topic;
    struct gr_member *prev, *next;
    struct gr_member *stale_prev, *stale_next;
};

struct gr_unit {
    char *id;
    char *json_id;           /* id as a JSON string literal, for stale lists */
    struct gr_position *pos; /* latest published position, NULL before the first */
    int64_t pos_rx_ms;       /* receive time of that position */
    int64_t last_seen_ms;    /* receive time of the last fix, valid or not */
    struct gr_assembler assembler;
    /* A fix refused as too fast: if the next one agrees with it rather than with the
     * published position, the published one was the outlier (see speed_check). */
    bool have_refused;
    double refused_lat, refused_lon;
    int64_t refused_time_ms;
    /* Staleness: while fresh, the unit is in the hub's fresh list (by pos_rx_ms); while
     * stale, each member is in its topic's stale list. */
    bool stale;
    /* During a mapping update: kept is set on an old unit taken over unchanged; twin links
     * an old unit and its replacement, both ways (NULL: a unit that comes or goes). */
    bool kept;
    struct gr_unit *twin;
    uint64_t stale_seq;
    char *stale_json; /* the unit_stale payload, encoded once when it went stale */
    struct gr_unit *fresh_prev, *fresh_next;
    size_t n_members;
    struct gr_member members[]; /* one per agency, then its own device topic */
};

struct gr_topic {
    char *name;
    char *json_name;
    struct gr_member *head, *tail;             /* ascending seq: units without a position first */
    struct gr_member *stale_head, *stale_tail; /* ascending stale_seq */
    size_t n_members;
    struct gr_sub *subs;
    size_t n_subs;
    unsigned pins;              /* units a mapping update is preparing for this topic */
    struct gr_topic *hash_next; /* the hub's bucket chain */
    bool marked;                /* on a commit's work list (mark_next) */
    struct gr_topic *mark_next;
};

struct gr_sub {
    struct gr_topic *topic;
    void *owner;
    uint64_t cursor;       /* every position of the topic up to this seq has been taken */
    uint64_t stale_cursor; /* every stale transition up to this stale_seq, likewise */
    struct gr_sub *prev, *next;
};

struct gr_hub {
    struct gr_hub_options opt;
    char epoch[17]; /* 64 random bits in hex: new on every start */
    uint64_t seq;
    uint64_t stale_seq;
    struct gr_mapping *mapping;
    struct gr_unit **units; /* sorted by id, parallel to the mapping's devices */
    size_t n_units;
    struct gr_topic **buckets; /* topics by SipHash of the name, chained */
    size_t n_buckets;          /* a power of two, or 0 before the first topic */
    size_t n_topics;
    uint64_t hash_k0, hash_k1;
    struct gr_hub_update *update; /* the mapping update in progress, or NULL */
    size_t n_subs;
    size_t n_stale;
    struct gr_unit *fresh_head, *fresh_tail; /* units with a position, not stale, by pos_rx_ms */
};

static uint64_t member_seq(const struct gr_member *m)
{
    return m && m->unit->pos ? m->unit->pos->seq : 0;
}

static uint64_t member_stale_seq(const struct gr_member *m)
{
    return m ? m->unit->stale_seq : 0;
}

/* ---- intrusive lists ------------------------------------------------------------------ */

static void member_unlink(struct gr_member *m)
{
    struct gr_topic *t = m->topic;
    GR_LIST_UNLINK(t->head, t->tail, m, prev, next);
    t->n_members--;
    if (m->unit->stale)
        GR_LIST_UNLINK(t->stale_head, t->stale_tail, m, stale_prev, stale_next);
}

static void member_append(struct gr_member *m)
{
    struct gr_topic *t = m->topic;
    GR_LIST_APPEND(t->head, t->tail, m, prev, next);
    t->n_members++;
}

/* A unit without a position belongs at the head of the seq order (seq 0). */
static void member_prepend(struct gr_member *m)
{
    struct gr_topic *t = m->topic;
    GR_LIST_PREPEND(t->head, t->tail, m, prev, next);
    t->n_members++;
}

/* ---- topics --------------------------------------------------------------------------- */

/* Buckets start here and double whenever topics outnumber them: one topic per device, so
 * 100,000 devices make 131,072 buckets (1 MiB). */
#define TOPIC_BUCKETS_MIN 64

/* Topic names come from consoles (joins), hence a keyed hash (siphash.h). */
static size_t topic_bucket(const struct gr_hub *hub, const char *name)
{
    uint64_t h =
        gr_siphash13(hub->hash_k0, hub->hash_k1, (const unsigned char *)name, strlen(name));
    return (size_t)h & (hub->n_buckets - 1);
}

static struct gr_topic *topic_find(const struct gr_hub *hub, const char *name)
{
    if (hub->n_buckets == 0)
        return NULL;
    for (struct gr_topic *t = hub->buckets[topic_bucket(hub, name)]; t; t = t->hash_next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* Grows the buckets to at least want (a power of two from TOPIC_BUCKETS_MIN). Out of
 * memory, the chains just grow longer. */
static void topics_grow(struct gr_hub *hub, size_t want)
{
    size_t n = TOPIC_BUCKETS_MIN;
    while (n < want)
        n *= 2;
    if (n <= hub->n_buckets)
        return;
    struct gr_topic **buckets = calloc(n, sizeof(*buckets));
    if (buckets == NULL)
        return;
    struct gr_topic **old = hub->buckets;
    size_t n_old = hub->n_buckets;
    hub->buckets = buckets;
    hub->n_buckets = n;
    for (size_t i = 0; i < n_old; i++) {
        struct gr_topic *next;
        for (struct gr_topic *t = old[i]; t; t = next) {
            next = t->hash_next;
            size_t k = topic_bucket(hub, t->name);
            t->hash_next = buckets[k];
            buckets[k] = t;
        }
    }
    free(old);
}

static char *json_literal(const char *s)
{
    json_t *js = json_string(s);
    char *text = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
    json_decref(js);
    return text;
}

static void topic_free(struct gr_topic *t)
{
    free(t->name);
    free(t->json_name);
    free(t);
}

static struct gr_topic *topic_get_or_create(struct gr_hub *hub, const char *name)
{
    struct gr_topic *t = topic_find(hub, name);
    if (t != NULL)
        return t;
    if (hub->n_topics >= hub->n_buckets)
        topics_grow(hub, hub->n_buckets * 2);
    if (hub->n_buckets == 0)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL || (t->name = strdup(name)) == NULL ||
        (t->json_name = json_literal(name)) == NULL) {
        if (t)
            free(t->name);
        free(t);
        return NULL;
    }
    size_t k = topic_bucket(hub, name);
    t->hash_next = hub->buckets[k];
    hub->buckets[k] = t;
    hub->n_topics++;
    return t;
}

/* Frees t when nothing refers to it any more: no member, no subscriber, no unit being
 * prepared for it. */
static void topic_release(struct gr_hub *hub, struct gr_topic *t)
{
    if (t->n_members > 0 || t->n_subs > 0 || t->pins > 0)
        return;
    for (struct gr_topic **p = &hub->buckets[topic_bucket(hub, t->name)]; *p;
         p = &(*p)->hash_next) {
        if (*p == t) {
            *p = t->hash_next;
            break;
        }
    }
    hub->n_topics--;
    topic_free(t);
}

/* Puts t on a work list once (a commit's topics to reorder, or to release). */
static void topic_mark(struct gr_topic **list, struct gr_topic *t)
{
    if (t->marked)
        return;
    t->marked = true;
    t->mark_next = *list;
    *list = t;
}

/* Tells every subscriber of t; the console decides whether it must wake its transport. */
static void topic_notify(struct gr_hub *hub, struct gr_topic *t)
{
    for (struct gr_sub *s = t->subs; s; s = s->next)
        hub->opt.notify(s->owner);
}

/* ---- hub and mapping ------------------------------------------------------------------ */

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

static void unit_free(struct gr_unit *u)
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
        unit_free(hub->units[i]);
    for (size_t i = 0; i < hub->n_buckets; i++) {
        struct gr_topic *next;
        for (struct gr_topic *t = hub->buckets[i]; t; t = next) {
            next = t->hash_next;
            topic_free(t);
        }
    }
    free(hub->buckets);
    free(hub->units);
    gr_mapping_free(hub->mapping);
    free(hub);
}

/* Finds the unit of id[0..len) among units sorted by id, or NULL. */
static struct gr_unit *unit_find(struct gr_unit **units, size_t n, const char *id, size_t len)
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

/* Unpins the topics of a unit that was prepared but never linked, and frees it. */
static void unit_discard(struct gr_hub *hub, struct gr_unit *u)
{
    for (size_t k = 0; k < u->n_members; k++) {
        u->members[k].topic->pins--;
        topic_release(hub, u->members[k].topic);
    }
    unit_free(u);
}

/* A unit for d, not linked into its topics yet: they are pinned until it is. */
static struct gr_unit *unit_new(struct gr_hub *hub, const struct gr_device *d)
{
    struct gr_unit *u = calloc(1, sizeof(*u) + (d->n_agencies + 1) * sizeof(u->members[0]));
    if (u == NULL || (u->id = strdup(d->id)) == NULL || (u->json_id = json_literal(d->id)) == NULL)
        goto fail;
    char name[sizeof(AGENCY_PREFIX) + GR_AGENCY_ID_MAX + GR_DEVICE_ID_MAX];
    for (size_t k = 0; k <= d->n_agencies; k++) {
        if (k < d->n_agencies)
            snprintf(name, sizeof(name), AGENCY_PREFIX "%s", d->agencies[k]);
        else
            snprintf(name, sizeof(name), DEVICE_PREFIX "%s", d->id);
        u->members[k].unit = u;
        u->members[k].topic = topic_get_or_create(hub, name);
        if (u->members[k].topic == NULL)
            goto fail;
        u->members[k].topic->pins++;
        u->n_members = k + 1;
    }
    return u;
fail:
    if (u != NULL)
        unit_discard(hub, u);
    return NULL;
}

/* Whether u's topics are exactly d's agencies and its own device topic (unit_new's order). */
static bool unit_same_topics(const struct gr_unit *u, const struct gr_device *d)
{
    if (u->n_members != d->n_agencies + 1)
        return false;
    for (size_t k = 0; k < d->n_agencies; k++)
        if (strcmp(u->members[k].topic->name + strlen(AGENCY_PREFIX), d->agencies[k]) != 0)
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
    u->stale = old->stale;
    u->stale_seq = old->stale_seq;
    u->stale_json = old->stale_json;
    old->stale_json = NULL;
}

static void send_event(struct gr_hub *hub, struct gr_topic *t, const char *event,
                       const struct gr_unit *u)
{
    if (t->subs == NULL)
        return;
    char *payload;
    /* unit_added carries the unit's latest position too, so a console shows a unit that
     * joins its agency at once instead of at its next report (an addition to SPEC). */
    int n = u->pos && strcmp(event, "unit_added") == 0
                ? asprintf(&payload, "{\"device\":%s,\"position\":%s}", u->json_id, u->pos->json)
                : asprintf(&payload, "{\"device\":%s}", u->json_id);
    if (n < 0)
        return;
    for (struct gr_sub *s = t->subs; s; s = s->next)
        hub->opt.event(s->owner, t, event, payload);
    free(payload);
}

static int seq_cmp(const void *a, const void *b)
{
    uint64_t x = member_seq(*(struct gr_member *const *)a);
    uint64_t y = member_seq(*(struct gr_member *const *)b);
    return (x > y) - (x < y);
}

static int stale_seq_cmp(const void *a, const void *b)
{
    uint64_t x = member_stale_seq(*(struct gr_member *const *)a);
    uint64_t y = member_stale_seq(*(struct gr_member *const *)b);
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

/* ---- replacing the mapping -------------------------------------------------------------- */

struct gr_hub_update {
    struct gr_hub *hub;
    struct gr_mapping *m;
    struct gr_unit **units; /* parallel to m's devices: kept old units, or new ones */
    size_t next;            /* devices prepared so far */
};

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
    topics_grow(hub, n + n / 4);
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
            continue;
        }
        if (u->twin != NULL)
            u->twin->twin = NULL;
        unit_discard(up->hub, u);
    }
    gr_mapping_free(up->m);
    update_free(up);
}

/*
 * Makes the prepared units the hub's, in one go. Work is proportional to the devices
 * (a pointer test each) plus the changes: kept units are not touched at all.
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
                send_event(hub, old->members[k].topic, "unit_removed", old);
    }

    /* Replaced and removed units leave their topics and the fresh list; a replacement
     * takes over its predecessor's state. */
    for (size_t i = 0; i < n_old; i++) {
        struct gr_unit *old = old_units[i];
        if (old->kept)
            continue;
        for (size_t k = 0; k < old->n_members; k++)
            member_unlink(&old->members[k]);
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
        if (u->kept)
            continue;
        for (size_t k = 0; k < u->n_members; k++) {
            u->members[k].topic->pins--;
            if (u->pos == NULL) {
                member_prepend(&u->members[k]); /* its place in the order: no reorder */
            } else {
                member_append(&u->members[k]);
                topic_mark(&reorder, u->members[k].topic);
            }
        }
    }
    if (topics_reorder(reorder) < 0)
        gr_warn("hub: out of memory reordering topics; snapshots may be out of order");
    hub->units = units;
    hub->n_units = n;
    gr_mapping_free(hub->mapping);
    hub->mapping = up->m;

    /* Tell subscribers what joined their topics, now that it is there. */
    for (size_t i = 0; i < n; i++) {
        struct gr_unit *u = units[i];
        if (u->kept)
            continue;
        for (size_t k = 0; k < u->n_members; k++)
            if (!unit_in_topic(u->twin, u->members[k].topic))
                send_event(hub, u->members[k].topic, "unit_added", u);
        u->twin = NULL;
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
            topic_mark(&release, old->members[k].topic);
        unit_free(old);
    }
    struct gr_topic *next;
    for (struct gr_topic *t = release; t; t = next) {
        next = t->mark_next;
        t->marked = false;
        topic_release(hub, t);
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
        struct gr_unit *old = unit_find(hub->units, hub->n_units, d->id, strlen(d->id));
        if (old != NULL && unit_same_topics(old, d)) {
            old->kept = true;
            up->units[up->next] = old;
            continue;
        }
        struct gr_unit *u = unit_new(hub, d);
        if (u == NULL) {
            gr_hub_update_cancel(up);
            return -ENOMEM;
        }
        if (old != NULL) {
            u->twin = old;
            old->twin = u;
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
    return unit_find(hub->units, hub->n_units, id, id_len);
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

/* ---- encoding ------------------------------------------------------------------------- */

/*
 * Positions are written by hand, not with jansson: this runs once per accepted fix and
 * printing doubles with printf("%g") was a quarter of the daemon's time under load
 * (bench/RESULTS.md). Numbers are fixed-point integers, which is also what SPEC asks for:
 * lat/lon with exactly 7 decimals (about 1 cm).
 */

/* Writes v in decimal; returns the end. */
static char *put_u64(char *p, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

/* Writes n digits of v, zero-padded. */
static char *put_padded(char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + n;
}

static const uint64_t pow10_table[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000};

/*
 * Writes v rounded to decimals places. trim drops trailing zeros (12.30 -> 12.3, 5.00 ->
 * 5). Values are range-checked before they get here (|lat| <= 90 and so on), so the
 * scaled integer fits easily.
 */
static char *put_fixed(char *p, double v, int decimals, bool trim)
{
    uint64_t scale = pow10_table[decimals];
    double scaled = round(fabs(v) * (double)scale);
    uint64_t n = scaled < 1e18 ? (uint64_t)scaled : 0;
    if (v < 0 && n != 0)
        *p++ = '-';
    p = put_u64(p, n / scale);
    uint64_t frac = n % scale;
    if (trim) {
        while (decimals > 0 && frac % 10 == 0) {
            frac /= 10;
            decimals--;
        }
    }
    if (decimals > 0) {
        *p++ = '.';
        p = put_padded(p, frac, decimals);
    }
    return p;
}

/* ISO 8601 UTC with milliseconds, "2026-11-23T18:20:01.000Z"; buf holds TIME_TEXT_MAX. */
#define TIME_TEXT_MAX 32
static void format_time(int64_t ms, char *buf)
{
    int64_t days = ms / 86400000, rest = ms % 86400000;
    if (rest < 0) { /* before 1970: C division truncates toward zero */
        rest += 86400000;
        days--;
    }
    int y, mo, d;
    gr_civil_from_days(days, &y, &mo, &d);
    char *p = buf;
    if (y < 0 || y > 9999) /* never for a fix the filters accepted; keep the shape */
        y = 0;
    p = put_padded(p, (uint64_t)y, 4);
    *p++ = '-';
    p = put_padded(p, (uint64_t)mo, 2);
    *p++ = '-';
    p = put_padded(p, (uint64_t)d, 2);
    *p++ = 'T';
    p = put_padded(p, (uint64_t)(rest / 3600000), 2);
    *p++ = ':';
    p = put_padded(p, (uint64_t)(rest / 60000 % 60), 2);
    *p++ = ':';
    p = put_padded(p, (uint64_t)(rest / 1000 % 60), 2);
    *p++ = '.';
    p = put_padded(p, (uint64_t)(rest % 1000), 3);
    *p++ = 'Z';
    *p = '\0';
}

static const char *const source_names[] = {
    [GR_SRC_NMEA] = "nmea",
    [GR_SRC_TAIP] = "taip",
    [GR_SRC_JSON] = "json",
};

/* Longest position without attrs: the id's JSON literal aside, every field at its widest
 * ("seq":20 digits, "time":24 chars, numbers of up to 20 digits each) fits easily. */
#define POSITION_FIXED_MAX 384

static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/*
 * Encodes the position object once; every console that needs it copies these bytes. The
 * shape is SPEC section 5: lat/lon 7 decimals, speed to 0.01 m/s, course and alt to 0.1,
 * hdop to 0.01; fields that are not known are left out. json_id is the device id as a
 * JSON string literal; "attrs" is spliced in as the JSON decoder left it.
 */
static struct gr_position *position_encode(const char *json_id, uint64_t seq,
                                           const struct gr_fix *f)
{
    size_t cap = POSITION_FIXED_MAX + strlen(json_id) + (f->attrs ? f->attrs_len : 0);
    struct gr_position *pos = malloc(sizeof(*pos) + cap);
    if (pos == NULL)
        return NULL;
    char when[TIME_TEXT_MAX];
    format_time(f->time_ms, when);

    char *p = pos->json;
    p = put_str(p, "{\"device\":");
    p = put_str(p, json_id);
    p = put_str(p, ",\"seq\":");
    p = put_u64(p, seq);
    p = put_str(p, ",\"time\":\"");
    p = put_str(p, when);
    p = put_str(p, "\",\"lat\":");
    p = put_fixed(p, f->lat, 7, false);
    p = put_str(p, ",\"lon\":");
    p = put_fixed(p, f->lon, 7, false);
    if (f->fields & GR_FIX_SPEED) {
        p = put_str(p, ",\"speed\":");
        p = put_fixed(p, f->speed, 2, true);
    }
    if (f->fields & GR_FIX_COURSE) {
        p = put_str(p, ",\"course\":");
        p = put_fixed(p, f->course, 1, true);
    }
    if (f->fields & GR_FIX_ALT) {
        p = put_str(p, ",\"alt\":");
        p = put_fixed(p, f->alt, 1, true);
    }
    if (f->fields & GR_FIX_HDOP) {
        p = put_str(p, ",\"hdop\":");
        p = put_fixed(p, f->hdop, 2, true);
    }
    if (f->fields & GR_FIX_SATS) {
        p = put_str(p, ",\"sats\":");
        p = put_fixed(p, f->sats, 0, false);
    }
    p = put_str(p, ",\"src\":\"");
    p = put_str(p, source_names[f->src]);
    *p++ = '"';
    if (f->attrs != NULL) {
        p = put_str(p, ",\"attrs\":");
        memcpy(p, f->attrs, f->attrs_len);
        p += f->attrs_len;
    }
    *p++ = '}';
    *p = '\0';
    pos->json_len = (size_t)(p - pos->json);
    pos->seq = seq;
    pos->time_ms = f->time_ms;
    pos->lat = f->lat;
    pos->lon = f->lon;
    return pos;
}

/* ---- acceptance ----------------------------------------------------------------------- */

#define EARTH_RADIUS_M 6371008.8 /* mean radius (IUGG) */
#define DEG_TO_RAD     (3.14159265358979323846 / 180.0)

/* Great-circle distance in metres (haversine: well-conditioned for short hops). */
static double distance_m(double lat1, double lon1, double lat2, double lon2)
{
    double dlat = (lat2 - lat1) * DEG_TO_RAD, dlon = (lon2 - lon1) * DEG_TO_RAD;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * DEG_TO_RAD) * cos(lat2 * DEG_TO_RAD) * sin(dlon / 2) * sin(dlon / 2);
    return 2 * EARTH_RADIUS_M * asin(sqrt(a < 1 ? a : 1));
}

static bool too_fast(const struct gr_hub *hub, double lat, double lon, int64_t time_ms,
                     const struct gr_fix *f)
{
    double dt = (double)(f->time_ms - time_ms) / 1000.0;
    return dt > 0 && distance_m(lat, lon, f->lat, f->lon) > hub->opt.max_speed * dt;
}

/*
 * The implied-speed rule, with one escape: a single bad fix once published would
 * otherwise make every later, correct fix look too fast. When a fix is too fast from the
 * published position but plausible from the last refused one, two fixes agree against
 * one, so the published position was the outlier and the new fix is accepted.
 */
static enum gr_reason speed_check(const struct gr_hub *hub, struct gr_unit *u,
                                  const struct gr_fix *f)
{
    if (u->pos == NULL || !too_fast(hub, u->pos->lat, u->pos->lon, u->pos->time_ms, f)) {
        u->have_refused = false;
        return GR_OK;
    }
    bool agrees = u->have_refused && f->time_ms > u->refused_time_ms &&
                  !too_fast(hub, u->refused_lat, u->refused_lon, u->refused_time_ms, f);
    u->have_refused = !agrees;
    u->refused_lat = f->lat;
    u->refused_lon = f->lon;
    u->refused_time_ms = f->time_ms;
    return agrees ? GR_OK : GR_SPEED;
}

static enum gr_reason fix_check(const struct gr_hub *hub, struct gr_unit *u, const struct gr_fix *f,
                                int64_t now_ms)
{
    if (!f->valid)
        return GR_NO_FIX;
    if (!(fabs(f->lat) <= 90.0 && fabs(f->lon) <= 180.0))
        return GR_OUT_OF_RANGE;
    if (f->lat == 0.0 && f->lon == 0.0)
        return GR_NULL_ISLAND;
    if (f->time_ms > now_ms + hub->opt.max_future_skew_ms)
        return GR_FUTURE;
    if (u->pos != NULL && f->time_ms < u->pos->time_ms)
        return GR_OUT_OF_ORDER;
    if (u->pos != NULL && f->time_ms == u->pos->time_ms)
        return GR_DUPLICATE;
    return speed_check(hub, u, f);
}

/* ---- publishing and staleness ----------------------------------------------------------- */

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
    enum gr_reason r = fix_check(hub, u, f, now_ms);
    if (r != GR_OK)
        return r;

    struct gr_position *p = position_encode(u->json_id, hub->seq + 1, f);
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
        uint64_t was_tail = t->tail == m ? member_seq(m->prev) : member_seq(t->tail);
        if (t->tail != m) { /* the unit is fresh now: only the seq order changes */
            member_unlink(m);
            member_append(m);
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

static char *stale_payload(const struct gr_unit *u)
{
    char last_time[TIME_TEXT_MAX], last_seen[TIME_TEXT_MAX];
    format_time(u->pos->time_ms, last_time);
    format_time(u->last_seen_ms, last_seen);
    char *payload = NULL;
    if (asprintf(&payload, "{\"device\":%s,\"last_time\":\"%s\",\"last_seen\":\"%s\"}", u->json_id,
                 last_time, last_seen) < 0)
        return NULL;
    return payload;
}

size_t gr_hub_check_stale(struct gr_hub *hub, int64_t now_ms)
{
    size_t n = 0;
    struct gr_unit *u;
    while ((u = hub->fresh_head) != NULL && now_ms - u->pos_rx_ms >= hub->opt.stale_after_ms) {
        GR_LIST_UNLINK(hub->fresh_head, hub->fresh_tail, u, fresh_prev, fresh_next);
        free(u->stale_json);
        u->stale_json = stale_payload(u);
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

/* ---- subscriptions ---------------------------------------------------------------------- */

static bool valid_id(const char *id, size_t max, const char *allowed)
{
    size_t len = strlen(id);
    return len > 0 && len <= max && strspn(id, allowed) == len;
}

struct gr_topic *gr_hub_topic(struct gr_hub *hub, const char *name)
{
    static const char agency_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789-_.";
    if (strncmp(name, AGENCY_PREFIX, strlen(AGENCY_PREFIX)) == 0)
        return valid_id(name + strlen(AGENCY_PREFIX), GR_AGENCY_ID_MAX, agency_chars)
                   ? topic_get_or_create(hub, name)
                   : NULL;
    if (strncmp(name, DEVICE_PREFIX, strlen(DEVICE_PREFIX)) == 0) {
        return topic_find(hub, name); /* exists while the device is mapped (or about to be) */
    }
    return NULL;
}

const char *gr_topic_name(const struct gr_topic *t)
{
    return t->name;
}

const char *gr_topic_json_name(const struct gr_topic *t)
{
    return t->json_name;
}

struct gr_sub *gr_sub_new(struct gr_hub *hub, struct gr_topic *t, void *owner)
{
    struct gr_sub *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        topic_release(hub, t);
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
    topic_release(hub, t);
}

struct gr_topic *gr_sub_topic(const struct gr_sub *s)
{
    return s->topic;
}

bool gr_sub_pending(const struct gr_sub *s)
{
    return member_seq(s->topic->tail) > s->cursor ||
           member_stale_seq(s->topic->stale_tail) > s->stale_cursor;
}

/* The oldest member of t newer than seq, walking back from the newest: O(newer ones). */
static struct gr_member *first_newer(const struct gr_topic *t, uint64_t seq)
{
    struct gr_member *m = t->tail, *first = NULL;
    for (; m && member_seq(m) > seq; m = m->prev)
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
