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

#include "gpsrelay/log.h"
#include "gpsrelay/stats.h"

#define AGENCY_PREFIX "agency:"

/* A unit's place in one topic's seq-ordered list. */
struct gr_member {
    struct gr_unit *unit;
    struct gr_topic *topic;
    struct gr_member *prev, *next;
};

struct gr_unit {
    char *id;
    struct gr_position *pos; /* latest published position, NULL before the first */
    size_t n_members;
    struct gr_member members[]; /* one per agency of the device */
};

struct gr_topic {
    char *name;
    char *json_name;
    struct gr_member *head, *tail; /* ascending seq: units without a position first */
    size_t n_members;
    struct gr_sub *subs;
    size_t n_subs;
};

struct gr_sub {
    struct gr_topic *topic;
    void *owner;
    uint64_t cursor; /* everything of the topic up to this seq has been taken */
    struct gr_sub *prev, *next;
};

struct gr_hub {
    struct gr_hub_options opt;
    char epoch[17]; /* 64 random bits in hex: new on every start */
    uint64_t seq;
    struct gr_mapping *mapping;
    struct gr_unit **units; /* sorted by id, parallel to the mapping's devices */
    size_t n_units;
    struct gr_topic **topics; /* sorted by name */
    size_t n_topics;
    size_t n_subs;
};

static uint64_t member_seq(const struct gr_member *m)
{
    return m && m->unit->pos ? m->unit->pos->seq : 0;
}

/* ---- topics ---------------------------------------------------------------------- */

static int topic_cmp(const char *name, const struct gr_topic *t)
{
    return strcmp(name, t->name);
}

/* Index of name in hub->topics, or -(insertion point) - 1. */
static long topic_index(const struct gr_hub *hub, const char *name)
{
    size_t lo = 0, hi = hub->n_topics;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = topic_cmp(name, hub->topics[mid]);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -(long)lo - 1;
}

static struct gr_topic *topic_get_or_create(struct gr_hub *hub, const char *name)
{
    long i = topic_index(hub, name);
    if (i >= 0)
        return hub->topics[i];

    size_t at = (size_t)(-i - 1);
    struct gr_topic **grown = realloc(hub->topics, (hub->n_topics + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    hub->topics = grown;

    struct gr_topic *t = calloc(1, sizeof(*t));
    json_t *js = json_string(name);
    if (t == NULL || js == NULL)
        goto fail;
    t->name = strdup(name);
    t->json_name = json_dumps(js, JSON_ENCODE_ANY);
    json_decref(js);
    js = NULL;
    if (t->name == NULL || t->json_name == NULL)
        goto fail;

    memmove(&hub->topics[at + 1], &hub->topics[at], (hub->n_topics - at) * sizeof(*grown));
    hub->topics[at] = t;
    hub->n_topics++;
    return t;

fail:
    json_decref(js);
    if (t != NULL) {
        free(t->name);
        free(t->json_name);
        free(t);
    }
    return NULL;
}

/* Frees t when nothing refers to it any more. */
static void topic_release(struct gr_hub *hub, struct gr_topic *t)
{
    if (t->n_members > 0 || t->n_subs > 0)
        return;
    long i = topic_index(hub, t->name);
    if (i >= 0) {
        memmove(&hub->topics[i], &hub->topics[i + 1],
                (hub->n_topics - (size_t)i - 1) * sizeof(*hub->topics));
        hub->n_topics--;
    }
    free(t->name);
    free(t->json_name);
    free(t);
}

static void member_unlink(struct gr_member *m)
{
    struct gr_topic *t = m->topic;
    if (m->prev)
        m->prev->next = m->next;
    else
        t->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        t->tail = m->prev;
    m->prev = m->next = NULL;
    t->n_members--;
}

static void member_append(struct gr_member *m)
{
    struct gr_topic *t = m->topic;
    m->next = NULL;
    m->prev = t->tail;
    if (t->tail)
        t->tail->next = m;
    else
        t->head = m;
    t->tail = m;
    t->n_members++;
}

/* ---- hub and mapping --------------------------------------------------------------- */

struct gr_hub *gr_hub_new(const struct gr_hub_options *opt)
{
    struct gr_hub *hub = calloc(1, sizeof(*hub));
    if (hub == NULL)
        return NULL;
    hub->opt = *opt;

    uint64_t r;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        /* Only uniqueness across restarts matters: the clock is a fine fallback. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    snprintf(hub->epoch, sizeof(hub->epoch), "%016" PRIx64, r);
    return hub;
}

static void unit_free(struct gr_unit *u)
{
    if (u == NULL)
        return;
    free(u->pos);
    free(u->id);
    free(u);
}

void gr_hub_free(struct gr_hub *hub)
{
    if (hub == NULL)
        return;
    for (size_t i = 0; i < hub->n_units; i++) {
        struct gr_unit *u = hub->units[i];
        for (size_t k = 0; k < u->n_members; k++)
            member_unlink(&u->members[k]);
        unit_free(u);
    }
    for (size_t i = 0; i < hub->n_topics; i++) {
        free(hub->topics[i]->name);
        free(hub->topics[i]->json_name);
        free(hub->topics[i]);
    }
    free(hub->topics);
    free(hub->units);
    gr_mapping_free(hub->mapping);
    free(hub);
}

static int member_seq_cmp(const void *a, const void *b)
{
    uint64_t x = member_seq(*(struct gr_member *const *)a);
    uint64_t y = member_seq(*(struct gr_member *const *)b);
    return (x > y) - (x < y);
}

/* Relinks every topic's members in ascending seq order after units were rebuilt. */
static int topics_reorder(struct gr_hub *hub)
{
    size_t most = 0;
    for (size_t i = 0; i < hub->n_topics; i++)
        if (hub->topics[i]->n_members > most)
            most = hub->topics[i]->n_members;
    struct gr_member **order = malloc((most ? most : 1) * sizeof(*order));
    if (order == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < hub->n_topics; i++) {
        struct gr_topic *t = hub->topics[i];
        size_t n = 0;
        for (struct gr_member *m = t->head; m; m = m->next)
            order[n++] = m;
        qsort(order, n, sizeof(*order), member_seq_cmp);
        t->head = t->tail = NULL;
        t->n_members = 0;
        for (size_t k = 0; k < n; k++)
            member_append(order[k]);
    }
    free(order);
    return 0;
}

/* Finds the unit of id among the current units (sorted by id), or NULL. */
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

int gr_hub_set_mapping(struct gr_hub *hub, struct gr_mapping *m)
{
    size_t n = gr_mapping_count(m);
    struct gr_unit **units = calloc(n ? n : 1, sizeof(*units));
    if (units == NULL)
        return -ENOMEM;

    /* Build the new units first so a failure leaves the hub as it was. Topics created
     * here are harmless: topic_release() frees empty ones below. */
    size_t built = 0;
    for (; built < n; built++) {
        const struct gr_device *d = gr_mapping_device(m, built);
        struct gr_unit *u = calloc(1, sizeof(*u) + d->n_agencies * sizeof(u->members[0]));
        if (u == NULL || (u->id = strdup(d->id)) == NULL) {
            unit_free(u);
            goto fail;
        }
        units[built] = u;
        u->n_members = d->n_agencies;
        for (size_t k = 0; k < d->n_agencies; k++) {
            char name[sizeof(AGENCY_PREFIX) + GR_AGENCY_ID_MAX];
            snprintf(name, sizeof(name), AGENCY_PREFIX "%s", d->agencies[k]);
            u->members[k].unit = u;
            u->members[k].topic = topic_get_or_create(hub, name);
            if (u->members[k].topic == NULL) {
                u->n_members = k;
                goto fail;
            }
        }
    }

    /* Commit: carry positions over, swap the units, relink topics. */
    for (size_t i = 0; i < n; i++) {
        struct gr_unit *old =
            unit_find(hub->units, hub->n_units, units[i]->id, strlen(units[i]->id));
        if (old != NULL) {
            units[i]->pos = old->pos;
            old->pos = NULL;
        }
        for (size_t k = 0; k < units[i]->n_members; k++)
            member_append(&units[i]->members[k]);
    }
    for (size_t i = 0; i < hub->n_units; i++) {
        struct gr_unit *u = hub->units[i];
        for (size_t k = 0; k < u->n_members; k++)
            member_unlink(&u->members[k]);
        unit_free(u);
    }
    free(hub->units);
    hub->units = units;
    hub->n_units = n;
    gr_mapping_free(hub->mapping);
    hub->mapping = m;

    if (topics_reorder(hub) < 0)
        gr_warn("hub: out of memory reordering topics; snapshots may be out of order");
    for (size_t i = hub->n_topics; i-- > 0;)
        topic_release(hub, hub->topics[i]);
    return 0;

fail:
    for (size_t i = 0; i < n; i++) /* calloc'd: unbuilt slots are NULL */
        unit_free(units[i]);
    free(units);
    for (size_t i = hub->n_topics; i-- > 0;)
        topic_release(hub, hub->topics[i]);
    return -ENOMEM;
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

/* ---- publishing -------------------------------------------------------------------- */

/* Rounds to a number of decimals, so the shortest %g form is also the exact one. */
static double round_to(double v, double scale)
{
    return round(v * scale) / scale;
}

/* ISO 8601 UTC with milliseconds; buf holds at least TIME_TEXT_MAX bytes. */
#define TIME_TEXT_MAX 64
static void format_time(int64_t ms, char *buf)
{
    int64_t secs = ms / 1000, frac = ms % 1000;
    if (frac < 0) { /* before 1970: C division truncates toward zero */
        frac += 1000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(buf, TIME_TEXT_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
}

static const char *const source_names[] = {
    [GR_SRC_NMEA] = "nmea",
    [GR_SRC_TAIP] = "taip",
    [GR_SRC_JSON] = "json",
};

/*
 * Encodes the position object once; every console that needs it copies these bytes.
 * lat/lon are rounded to 7 decimals (about 1 cm), speed to 0.01 m/s, course/alt/hdop
 * to 0.1 or 0.01, so that 10 significant digits print them exactly and briefly.
 */
static struct gr_position *position_encode(const char *id, uint64_t seq, const struct gr_fix *f)
{
    char when[TIME_TEXT_MAX];
    format_time(f->time_ms, when);

    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "device", json_string(id));
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "lat", json_real(round_to(f->lat, 1e7)));
    json_object_set_new(o, "lon", json_real(round_to(f->lon, 1e7)));
    if (f->fields & GR_FIX_SPEED)
        json_object_set_new(o, "speed", json_real(round_to(f->speed, 1e2)));
    if (f->fields & GR_FIX_COURSE)
        json_object_set_new(o, "course", json_real(round_to(f->course, 1e1)));
    if (f->fields & GR_FIX_ALT)
        json_object_set_new(o, "alt", json_real(round_to(f->alt, 1e1)));
    if (f->fields & GR_FIX_HDOP)
        json_object_set_new(o, "hdop", json_real(round_to(f->hdop, 1e2)));
    if (f->fields & GR_FIX_SATS)
        json_object_set_new(o, "sats", json_integer(f->sats));
    json_object_set_new(o, "src", json_string(source_names[f->src]));

    size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(10);
    size_t len = json_dumpb(o, NULL, 0, flags);
    struct gr_position *p = len ? malloc(sizeof(*p) + len + 1) : NULL;
    if (p != NULL) {
        json_dumpb(o, p->json, len, flags);
        p->json[len] = '\0';
        p->json_len = len;
        p->seq = seq;
        p->time_ms = f->time_ms;
    }
    json_decref(o);
    return p;
}

static enum gr_reason fix_check(const struct gr_hub *hub, const struct gr_unit *u,
                                const struct gr_fix *f, int64_t now_ms)
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
    return GR_OK;
}

enum gr_reason gr_hub_publish(struct gr_hub *hub, struct gr_unit *u, const struct gr_fix *f,
                              int64_t now_ms)
{
    enum gr_reason r = fix_check(hub, u, f, now_ms);
    if (r != GR_OK)
        return r;

    struct gr_position *p = position_encode(u->id, hub->seq + 1, f);
    if (p == NULL) {
        gr_error("hub: out of memory encoding a position of %s", u->id);
        return GR_MALFORMED;
    }
    hub->seq++;
    free(u->pos);
    u->pos = p;
    gr_stats.positions_published++;

    for (size_t k = 0; k < u->n_members; k++) {
        struct gr_member *m = &u->members[k];
        struct gr_topic *t = m->topic;
        /* The tail's seq before this position: a subscriber whose cursor had reached it
         * had nothing pending and must be told; the others already know. */
        uint64_t was_tail =
            t->tail == m ? (m->prev ? member_seq(m->prev) : 0) : member_seq(t->tail);
        if (t->tail != m) {
            member_unlink(m);
            member_append(m);
        }
        for (struct gr_sub *s = t->subs; s; s = s->next)
            if (s->cursor >= was_tail)
                hub->opt.notify(s->owner);
    }
    return GR_OK;
}

/* ---- subscriptions ----------------------------------------------------------------- */

struct gr_topic *gr_hub_topic(struct gr_hub *hub, const char *name)
{
    if (strncmp(name, AGENCY_PREFIX, strlen(AGENCY_PREFIX)) != 0)
        return NULL;
    const char *id = name + strlen(AGENCY_PREFIX);
    size_t len = strlen(id);
    if (len == 0 || len > GR_AGENCY_ID_MAX ||
        strspn(id, "abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789-_.") != len)
        return NULL;
    return topic_get_or_create(hub, name);
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
    s->next = t->subs;
    if (t->subs)
        t->subs->prev = s;
    t->subs = s;
    t->n_subs++;
    hub->n_subs++;
    return s;
}

void gr_sub_free(struct gr_hub *hub, struct gr_sub *s)
{
    struct gr_topic *t = s->topic;
    if (s->prev)
        s->prev->next = s->next;
    else
        t->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
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
    return member_seq(s->topic->tail) > s->cursor;
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
