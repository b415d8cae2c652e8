/*
 * hub.c - the hub itself: its epoch and options, publishing a fix to the topics of its
 * unit, and staleness. See hub.h for the model, model.h for the files beside this one.
 */
#include "gpsrelay/hub.h"
#include "model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "gpsrelay/event.h"
#include "gpsrelay/log.h"
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
    free(hub->node);
    free(hub);
}

const struct gr_mapping *gr_hub_mapping(const struct gr_hub *hub)
{
    return hub->mapping;
}

const char *gr_hub_epoch(const struct gr_hub *hub)
{
    return hub->epoch;
}

uint64_t gr_hub_seq(const struct gr_hub *hub)
{
    return hub->seq;
}

uint64_t gr_hub_seq_known(const struct gr_hub *hub)
{
    return hub->seq_known > hub->seq ? hub->seq_known : hub->seq;
}

void gr_hub_set_seq_known(struct gr_hub *hub, uint64_t seq)
{
    if (seq > hub->seq_known)
        hub->seq_known = seq;
}

int gr_hub_set_epoch(struct gr_hub *hub, const char *epoch)
{
    if (strlen(epoch) > GR_HUB_EPOCH_MAX)
        return -EINVAL;
    strcpy(hub->epoch, epoch);
    return 0;
}

int gr_hub_set_node(struct gr_hub *hub, const char *node)
{
    char *copy = strdup(node);
    if (copy == NULL)
        return -ENOMEM;
    free(hub->node);
    hub->node = copy;
    return 0;
}

const char *gr_hub_node(const struct gr_hub *hub)
{
    return hub->node;
}

void gr_hub_set_relay(struct gr_hub *hub, gr_hub_relay_fn relay, void *arg)
{
    hub->relay = relay;
    hub->relay_arg = arg;
}

void gr_hub_set_applied(struct gr_hub *hub, gr_hub_applied_fn applied, void *arg)
{
    hub->applied = applied;
    hub->applied_arg = arg;
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

/*
 * Publishing is two halves, kept apart because they need not run in the same place: accept
 * (the unit is alive; the fix passes the filters against the unit's history) where the
 * report arrived, and apply (the fix becomes the unit's position with its seq, and its
 * topics' subscribers are told) where positions are numbered: here at once for a single
 * daemon, on every node as the stream delivers it in a cluster (the relay).
 */
enum gr_reason gr_hub_accept(struct gr_hub *hub, struct gr_unit *u, const struct gr_fix *f,
                             int64_t now_ms)
{
    u->last_seen_ms = now_ms;
    return gr_filter_fix(&hub->opt, u, f, now_ms);
}

enum gr_reason gr_hub_apply(struct gr_hub *hub, struct gr_unit *u, const struct gr_fix *f,
                            uint64_t seq, int64_t rx_ms, int64_t rx_ns)
{
    if (seq <= hub->seq)
        return GR_DUPLICATE;
    /* Two nodes may each accept a fix of one unit before either is applied (a modem that
     * moved between them, or sent one fix to both): the stream's order decides, the same
     * way on every node, by the rules acceptance itself never breaks (filter.c): no fix
     * twice, and nothing older than a position that was on time. */
    if (u->pos != NULL && (f->time_ms == u->pos->time_ms ||
                           (f->time_ms < u->pos->time_ms && u->pos->time_ms <= u->pos_rx_ms)))
        return f->time_ms == u->pos->time_ms ? GR_DUPLICATE : GR_OUT_OF_ORDER;
    struct gr_position *p = gr_position_encode(u->json_id, seq, f);
    if (p == NULL) {
        gr_error("hub: out of memory encoding a position of %s", u->id);
        return GR_MALFORMED;
    }
    p->rx_ns = rx_ns;
    uint64_t replaced = u->pos ? u->pos->seq : 0; /* subscribers below it never took it */
    unit_refresh(hub, u);
    hub->seq = seq;
    free(u->pos);
    u->pos = p;
    u->pos_rx_ms = rx_ms;
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
            /* Apart from the above: a subscriber that took the position before the one
             * replaced (the unit was the topic's tail) is told and loses one too. */
            if (s->cursor < replaced)
                gr_stats.positions_conflated++;
        }
    }
    if (hub->applied != NULL)
        hub->applied(hub->applied_arg, u, f, seq, rx_ms);
    return GR_OK;
}

enum gr_reason gr_hub_publish(struct gr_hub *hub, struct gr_unit *u, const struct gr_fix *f,
                              int64_t now_ms, int64_t rx_ns)
{
    enum gr_reason r = gr_hub_accept(hub, u, f, now_ms);
    if (r != GR_OK)
        return r;
    if (hub->relay != NULL)
        return hub->relay(hub->relay_arg, u, f, now_ms);
    return gr_hub_apply(hub, u, f, hub->seq + 1, now_ms, rx_ns);
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
