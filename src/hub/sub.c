/*
 * sub.c - subscriptions and their cursors (hub.h): what a subscriber still has to receive
 * is every unit of its topic whose position or stale transition is newer than its cursor.
 */
#include "model.h"

#include <stdlib.h>

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

void gr_sub_skip_to(struct gr_sub *s, uint64_t seq)
{
    if (seq > s->cursor)
        s->cursor = seq;
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
