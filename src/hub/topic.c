/*
 * topic.c - the topic table: topic names to topics, in buckets chained by a keyed hash.
 *
 * A topic is "agency:<id>" or "device:<id>" (docs/protocol.md). It lives while a unit is
 * in it, a console subscribes to it or a mapping update is preparing a unit for it.
 */
#include "model.h"

#include <stdlib.h>
#include <string.h>

#include "gpsrelay/jsonw.h"
#include "gpsrelay/siphash.h"

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

struct gr_topic *gr_topic_find(const struct gr_hub *hub, const char *name)
{
    if (hub->n_buckets == 0)
        return NULL;
    for (struct gr_topic *t = hub->buckets[topic_bucket(hub, name)]; t; t = t->hash_next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

void gr_topics_grow(struct gr_hub *hub, size_t want)
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

static void topic_free(struct gr_topic *t)
{
    free(t->name);
    free(t->json_name);
    free(t->units_json);
    free(t);
}

void gr_topics_free(struct gr_hub *hub)
{
    for (size_t i = 0; i < hub->n_buckets; i++) {
        struct gr_topic *next;
        for (struct gr_topic *t = hub->buckets[i]; t; t = next) {
            next = t->hash_next;
            topic_free(t);
        }
    }
    free(hub->buckets);
    hub->buckets = NULL;
    hub->n_buckets = hub->n_topics = 0;
}

struct gr_topic *gr_topic_get(struct gr_hub *hub, const char *name)
{
    struct gr_topic *t = gr_topic_find(hub, name);
    if (t != NULL)
        return t;
    if (hub->n_topics >= hub->n_buckets)
        gr_topics_grow(hub, hub->n_buckets * 2);
    if (hub->n_buckets == 0)
        return NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL || (t->name = strdup(name)) == NULL ||
        (t->json_name = gr_json_quote(name)) == NULL) {
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

void gr_topic_release(struct gr_hub *hub, struct gr_topic *t)
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

void gr_topic_mark(struct gr_topic **list, struct gr_topic *t)
{
    if (t->marked)
        return;
    t->marked = true;
    t->mark_next = *list;
    *list = t;
}

static bool valid_id(const char *id, size_t max, const char *allowed)
{
    size_t len = strlen(id);
    return len > 0 && len <= max && strspn(id, allowed) == len;
}

struct gr_topic *gr_hub_topic(struct gr_hub *hub, const char *name)
{
    /* The mapping's rule for agency ids (mapping.c), so no console can make a topic the
     * mapping could never fill. */
    static const char agency_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789-_.";
    if (strncmp(name, GR_AGENCY_PREFIX, strlen(GR_AGENCY_PREFIX)) == 0)
        return valid_id(name + strlen(GR_AGENCY_PREFIX), GR_AGENCY_ID_MAX, agency_chars)
                   ? gr_topic_get(hub, name)
                   : NULL;
    if (strncmp(name, GR_DEVICE_PREFIX, strlen(GR_DEVICE_PREFIX)) == 0)
        return gr_topic_find(hub, name); /* exists while the device is mapped (or about to be) */
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
