/*
 * identity.c - a bounded hash table of sender -> device id with least-recently-updated
 * eviction. Entries are preallocated once, so a full table never allocates.
 */
#include "gpsrelay/identity.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/report.h"

struct key {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint16_t port;
    unsigned char addr[16];
};

struct entry {
    struct key key;
    int64_t updated_ms;
    struct entry *chain;       /* next in the bucket */
    struct entry *prev, *next; /* in update order: oldest at the head */
    char id[GR_DEVICE_ID_MAX + 1];
};

struct gr_identity {
    struct entry *pool; /* max entries */
    struct entry *free_list;
    struct entry **buckets;
    size_t n_buckets; /* a power of two, at least max */
    size_t count, max;
    struct entry *oldest, *newest;
};

static bool make_key(const struct sockaddr *sa, struct key *k)
{
    memset(k, 0, sizeof(*k));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(k->addr, &in->sin_addr, 4);
        k->port = in->sin_port;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(k->addr, &in6->sin6_addr, 16);
        k->port = in6->sin6_port;
    } else {
        return false;
    }
    k->family = (uint8_t)sa->sa_family;
    return true;
}

/* FNV-1a over the key's bytes: spoofed sources cannot aim at one bucket without knowing
 * nothing more than the layout, and chains stay short at a load factor of at most 1. */
static size_t bucket_of(const struct gr_identity *t, const struct key *k)
{
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < sizeof(*k); i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return (size_t)(h ^ (h >> 32)) & (t->n_buckets - 1);
}

struct gr_identity *gr_identity_new(size_t max)
{
    struct gr_identity *t = calloc(1, sizeof(*t));
    if (t == NULL || max == 0)
        goto fail;
    t->max = max;
    t->n_buckets = 1;
    while (t->n_buckets < max)
        t->n_buckets *= 2;
    t->pool = calloc(max, sizeof(*t->pool));
    t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
    if (t->pool == NULL || t->buckets == NULL)
        goto fail;
    for (size_t i = 0; i < max; i++) {
        t->pool[i].chain = t->free_list;
        t->free_list = &t->pool[i];
    }
    return t;
fail:
    gr_identity_free(t);
    return NULL;
}

void gr_identity_free(struct gr_identity *t)
{
    if (t == NULL)
        return;
    free(t->pool);
    free(t->buckets);
    free(t);
}

static void order_unlink(struct gr_identity *t, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        t->oldest = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        t->newest = e->prev;
}

static void order_append(struct gr_identity *t, struct entry *e)
{
    e->next = NULL;
    e->prev = t->newest;
    if (t->newest)
        t->newest->next = e;
    else
        t->oldest = e;
    t->newest = e;
}

/* Finds k; *link is where it hangs in its chain (for removal). */
static struct entry *lookup(struct gr_identity *t, const struct key *k, struct entry ***link)
{
    struct entry **l = &t->buckets[bucket_of(t, k)];
    for (; *l; l = &(*l)->chain)
        if (memcmp(&(*l)->key, k, sizeof(*k)) == 0)
            break;
    *link = l;
    return *l;
}

static void remove_entry(struct gr_identity *t, struct entry *e)
{
    struct entry **link;
    lookup(t, &e->key, &link);
    *link = e->chain;
    order_unlink(t, e);
    e->chain = t->free_list;
    t->free_list = e;
    t->count--;
}

int gr_identity_put(struct gr_identity *t, const struct sockaddr *sa, const char *id, size_t len,
                    int64_t now_ms)
{
    struct key k;
    if (len > GR_DEVICE_ID_MAX || !make_key(sa, &k))
        return -EINVAL;

    int evicted = 0;
    struct entry **link;
    struct entry *e = lookup(t, &k, &link);
    if (e != NULL) {
        order_unlink(t, e);
    } else {
        if (t->free_list == NULL) {
            remove_entry(t, t->oldest);
            evicted = 1;
            lookup(t, &k, &link); /* the removal may have changed our chain */
        }
        e = t->free_list;
        t->free_list = e->chain;
        e->key = k;
        e->chain = NULL;
        *link = e;
        t->count++;
    }
    memcpy(e->id, id, len);
    e->id[len] = '\0';
    e->updated_ms = now_ms;
    order_append(t, e);
    return evicted;
}

const char *gr_identity_get(struct gr_identity *t, const struct sockaddr *sa, int64_t now_ms)
{
    struct key k;
    struct entry **link;
    if (!make_key(sa, &k))
        return NULL;
    struct entry *e = lookup(t, &k, &link);
    if (e == NULL)
        return NULL;
    if (now_ms - e->updated_ms >= GR_IDENTITY_TTL_MS) {
        remove_entry(t, e);
        return NULL;
    }
    return e->id;
}

size_t gr_identity_count(const struct gr_identity *t)
{
    return t->count;
}
