/*
 * model.h - the hub's data model, shared by the files of src/hub/ and by nothing else
 * (other stages use hub.h). From the top down, each file using only those below it:
 *
 *   hub.c     the hub: epoch, options, publishing a fix, staleness
 *   update.c  replacing the mapping, in steps
 *   event.c   the console events and their payloads (event.h)
 *   unit.c    units: one per mapped device, in its topics
 *   sub.c     subscriptions and their cursors
 *   topic.c   the topic table: names to topics, keyed hashing, lifetimes
 *   filter.c  the acceptance rules a fix must pass before it is published
 *   encode.c  a fix to its position JSON, once; times as ISO 8601 text
 */
#ifndef GR_HUB_MODEL_H
#define GR_HUB_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "gpsrelay/hub.h"
#include "gpsrelay/list.h"

#define GR_AGENCY_PREFIX "agency:"
#define GR_DEVICE_PREFIX "device:"

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
    /* The mapping's label ("" when none): borrowed from the device of the hub's mapping,
     * so every commit points it into the new mapping before the old one is freed. */
    const char *label;
    struct gr_assembler assembler;
    /* A fix refused against the published position (too fast, or too old for one dated
     * ahead of its receipt): if the next one agrees with it rather than with the published
     * position, the published one was the outlier (filter.c). */
    bool have_refused;
    double refused_lat, refused_lon;
    int64_t refused_time_ms, refused_rx_ms;
    /* Staleness: while fresh, the unit is in the hub's fresh list (by pos_rx_ms); while
     * stale, each member is in its topic's stale list. */
    bool stale;
    /* During a mapping update: kept is set on an old unit taken over unchanged; twin links
     * an old unit and its replacement, both ways (NULL: a unit that comes or goes);
     * relabeled marks a kept or replacement unit whose label differs from the old unit's
     * (set while both mappings live, since the commit frees the old one first). */
    bool kept;
    bool relabeled;
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
    /* The join reply's "units" array, the same for every console that joins: encoded at the
     * first join after the topic's units or their labels changed (event.c), dropped by the
     * commit that changes them (gr_topic_units_changed); NULL until then. */
    char *units_json;
    size_t units_json_len;
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
    char epoch[GR_HUB_EPOCH_MAX + 1]; /* gr_hub_new: 64 random bits in hex; a cluster's:
                                       * its stream's (gr_hub_set_epoch) */
    uint64_t seq;                     /* of the latest position applied */
    uint64_t seq_known;    /* highest seq known to exist: a cluster node may lag the stream */
    char *node;            /* node_name in a cluster (join replies), else NULL */
    gr_hub_relay_fn relay; /* set: accepted fixes go there instead of being applied */
    void *relay_arg;
    gr_hub_applied_fn applied; /* set: told of every position applied */
    void *applied_arg;
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

/* ---- members: a unit in a topic's orders ---------------------------------------------- */

static inline uint64_t gr_member_seq(const struct gr_member *m)
{
    return m && m->unit->pos ? m->unit->pos->seq : 0;
}

static inline uint64_t gr_member_stale_seq(const struct gr_member *m)
{
    return m ? m->unit->stale_seq : 0;
}

static inline void gr_member_unlink(struct gr_member *m)
{
    struct gr_topic *t = m->topic;
    GR_LIST_UNLINK(t->head, t->tail, m, prev, next);
    t->n_members--;
    if (m->unit->stale)
        GR_LIST_UNLINK(t->stale_head, t->stale_tail, m, stale_prev, stale_next);
}

static inline void gr_member_append(struct gr_member *m)
{
    struct gr_topic *t = m->topic;
    GR_LIST_APPEND(t->head, t->tail, m, prev, next);
    t->n_members++;
}

/* A unit without a position belongs at the head of the seq order (seq 0). */
static inline void gr_member_prepend(struct gr_member *m)
{
    struct gr_topic *t = m->topic;
    GR_LIST_PREPEND(t->head, t->tail, m, prev, next);
    t->n_members++;
}

/* The topic's units or a label of one changed: its "units" array is encoded again at the
 * next join. */
static inline void gr_topic_units_changed(struct gr_topic *t)
{
    free(t->units_json);
    t->units_json = NULL;
}

/* ---- unit.c: units ---------------------------------------------------------------------- */

/* The unit of id[0..len) among units sorted by id, or NULL. */
struct gr_unit *gr_units_find(struct gr_unit **units, size_t n, const char *id, size_t len);

/* A new unit for d, not linked into its topics yet: they are pinned until it is. NULL on
 * ENOMEM. */
struct gr_unit *gr_unit_new(struct gr_hub *hub, const struct gr_device *d);

/* Unpins the topics of a unit that was prepared but never linked, and frees it. */
void gr_unit_discard(struct gr_hub *hub, struct gr_unit *u);

/* Frees u (NULL is fine); its topics are the caller's business. */
void gr_unit_free(struct gr_unit *u);

/* ---- topic.c: the topic table ----------------------------------------------------------- */

/* The topic of that name, or NULL. */
struct gr_topic *gr_topic_find(const struct gr_hub *hub, const char *name);

/* The topic of that name, created (no units, no subscriptions) when there is none; NULL on
 * ENOMEM. A new topic is freed by gr_topic_release unless something comes to hold it. */
struct gr_topic *gr_topic_get(struct gr_hub *hub, const char *name);

/* Frees t when nothing holds it any more: no member, no subscriber, no pin. */
void gr_topic_release(struct gr_hub *hub, struct gr_topic *t);

/* Grows the table to at least want buckets. Out of memory, the chains just grow longer. */
void gr_topics_grow(struct gr_hub *hub, size_t want);

/* Frees every topic and the table (the hub is going). */
void gr_topics_free(struct gr_hub *hub);

/* Puts t on a work list once (a commit's topics to reorder, or to release); whoever walks
 * the list clears t->marked. */
void gr_topic_mark(struct gr_topic **list, struct gr_topic *t);

/* ---- filter.c ----------------------------------------------------------------------------- */

/*
 * The acceptance rules, in order: validity, range, 0,0, future, duplicate, out of order,
 * implied speed. GR_OK or the first rule broken. A time after now_ms (the receive time)
 * counts only as now_ms for ordering and speed. Updates u's memory of refused fixes (the
 * escape by which two agreeing fixes outvote a published outlier).
 */
enum gr_reason gr_filter_fix(const struct gr_hub_options *opt, struct gr_unit *u,
                             const struct gr_fix *f, int64_t now_ms);

#endif
