/*
 * addrtable.c - a bounded hash table keyed by sender address, least recently touched
 * evicted first.
 *
 * Layout: one calloc'd array of max slots, each `stride` bytes: a 32-byte head (key, touch
 * order links, bucket chain link) followed by the caller's value, aligned for max_align_t.
 * Links are 32-bit slot indices rather than pointers: a head of 32 bytes instead of 48, and
 * buckets of 4 bytes instead of 8. Buckets are a power of two, at least max, so the load
 * factor never exceeds 1 and chains stay short.
 *
 * Hashing: SipHash-1-3 with a 128-bit key drawn from getrandom() for each table. The
 * senders are remote and their addresses (UDP source addresses especially) are chosen by
 * whoever sends; with an unkeyed hash such as plain FNV-1a anyone who knows the layout can
 * compute addresses that share one bucket and turn every lookup into a walk of a long
 * chain. SipHash is the keyed hash made for exactly this (hash flooding); the 1-3 variant
 * is the one Rust's HashMap and CPython's str hash use, and costs six SipRounds for our
 * 20-byte keys.
 */
#include "gpsrelay/addrtable.h"

#include "gpsrelay/siphash.h"

#include <netinet/in.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NIL UINT32_MAX /* "no slot": the end of a chain or of the touch order */

/* Canonical key, hashed and compared as bytes: every byte is written, padding included. */
struct key {
    uint8_t family;         /* AF_INET or AF_INET6, after unmapping ::ffff:a.b.c.d */
    uint8_t zero;           /* explicit padding, always 0 */
    uint16_t port;          /* network order; 0 when the table keys on the address only */
    unsigned char addr[16]; /* IPv4 in the first 4 bytes, the rest zero */
};

/* The head of each slot; the value follows at VALUE_OFFSET. */
struct slot {
    struct key key;
    uint32_t prev, next; /* touch order, oldest first; NIL at either end */
    uint32_t chain;      /* next slot in the bucket, or in the free list */
};

#define ALIGN_UP(n, a) (((n) + (a)-1) / (a) * (a))
#define VALUE_OFFSET   ALIGN_UP(sizeof(struct slot), alignof(max_align_t))

struct gr_addrtable {
    unsigned char *slots; /* max slots of stride bytes */
    uint32_t *buckets;    /* n_buckets heads of chains */
    size_t stride, value_size;
    size_t n_buckets; /* a power of two, at least max */
    uint32_t max, count;
    uint32_t used;      /* slots [0, used) have been handed out at least once */
    uint32_t free_list; /* slots handed out then removed */
    uint32_t oldest, newest;
    bool with_port;
    uint64_t k0, k1; /* SipHash key */
};

static struct slot *slot_at(const struct gr_addrtable *t, uint32_t i)
{
    return (struct slot *)(t->slots + (size_t)i * t->stride);
}

static void *value_of(struct slot *s)
{
    return (unsigned char *)s + VALUE_OFFSET;
}

/* SipHash-1-3 (Aumasson and Bernstein): one compression round per 8-byte word, three
 * finalisation rounds. */
static uint32_t *bucket_of(const struct gr_addrtable *t, const struct key *k)
{
    uint64_t h = gr_siphash13(t->k0, t->k1, (const unsigned char *)k, sizeof(*k));
    return &t->buckets[(size_t)h & (t->n_buckets - 1)];
}

static bool make_key(const struct gr_addrtable *t, const struct sockaddr *sa, struct key *k)
{
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(k, 0, sizeof(*k));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        k->family = AF_INET;
        memcpy(k->addr, &in->sin_addr, 4);
        k->port = in->sin_port;
    } else if (sa->sa_family == AF_INET6) {
        /* A dual-stack socket reports IPv4 senders as ::ffff:a.b.c.d: one sender, one key,
         * whichever socket it reached. */
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const unsigned char *a = in6->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
            k->family = AF_INET;
            memcpy(k->addr, a + 12, 4);
        } else {
            k->family = AF_INET6;
            memcpy(k->addr, a, 16);
        }
        k->port = in6->sin6_port;
    } else {
        return false;
    }
    if (!t->with_port)
        k->port = 0;
    return true;
}

/* The slot holding k in the chain at head, or NIL; *link (may be NULL) is where it hangs. */
static uint32_t find(const struct gr_addrtable *t, uint32_t *head, const struct key *k,
                     uint32_t **link)
{
    uint32_t *l = head;
    while (*l != NIL) {
        struct slot *s = slot_at(t, *l);
        if (memcmp(&s->key, k, sizeof(*k)) == 0)
            break;
        l = &s->chain;
    }
    if (link != NULL)
        *link = l;
    return *l;
}

static void order_unlink(struct gr_addrtable *t, struct slot *s)
{
    if (s->prev != NIL)
        slot_at(t, s->prev)->next = s->next;
    else
        t->oldest = s->next;
    if (s->next != NIL)
        slot_at(t, s->next)->prev = s->prev;
    else
        t->newest = s->prev;
}

static void order_append(struct gr_addrtable *t, uint32_t i)
{
    struct slot *s = slot_at(t, i);
    s->next = NIL;
    s->prev = t->newest;
    if (t->newest != NIL)
        slot_at(t, t->newest)->next = i;
    else
        t->oldest = i;
    t->newest = i;
}

/* Unhooks slot *link points at from its chain and the touch order, and frees it. */
static void remove_at(struct gr_addrtable *t, uint32_t *link)
{
    uint32_t i = *link;
    struct slot *s = slot_at(t, i);
    *link = s->chain;
    order_unlink(t, s);
    s->chain = t->free_list;
    t->free_list = i;
    t->count--;
}

/* getrandom() blocks only until the kernel's pool is first ready, at boot (as in hub.c).
 * Should it fail anyway, a clock- and address-derived key still differs per run and per
 * table: weaker against flooding, but the table works, which beats refusing to start. */
static void seed(struct gr_addrtable *t)
{
    uint64_t k[2];
    if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
        struct timespec rt, mono;
        clock_gettime(CLOCK_REALTIME, &rt);
        clock_gettime(CLOCK_MONOTONIC, &mono);
        k[0] = (uint64_t)rt.tv_sec * 1000000000u + (uint64_t)rt.tv_nsec;
        k[1] = ((uint64_t)mono.tv_nsec << 32) ^ (uint64_t)(uintptr_t)t ^ (uint64_t)getpid();
    }
    t->k0 = k[0];
    t->k1 = k[1];
}

struct gr_addrtable *gr_addrtable_new(size_t max, size_t value_size, bool with_port)
{
    /* Slot indices are 32-bit with NIL reserved; the stride must not overflow. */
    if (max == 0 || max >= NIL || value_size > SIZE_MAX / 2)
        return NULL;
    struct gr_addrtable *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->max = (uint32_t)max;
    t->value_size = value_size;
    t->stride = ALIGN_UP(VALUE_OFFSET + value_size, alignof(max_align_t));
    t->with_port = with_port;
    t->free_list = t->oldest = t->newest = NIL;
    t->n_buckets = 1;
    while (t->n_buckets < max) {
        if (t->n_buckets > SIZE_MAX / 2)
            goto fail;
        t->n_buckets *= 2;
    }
    if (t->n_buckets > SIZE_MAX / sizeof(*t->buckets))
        goto fail;
    /* calloc checks max * stride for overflow, and a slot is first written when it is
     * handed out (see `used`): an idle table's pages are never committed. */
    t->slots = calloc(max, t->stride);
    t->buckets = malloc(t->n_buckets * sizeof(*t->buckets));
    if (t->slots == NULL || t->buckets == NULL)
        goto fail;
    memset(t->buckets, 0xff, t->n_buckets * sizeof(*t->buckets)); /* every head NIL */
    seed(t);
    return t;
fail:
    gr_addrtable_free(t);
    return NULL;
}

void gr_addrtable_free(struct gr_addrtable *t)
{
    if (t == NULL)
        return;
    free(t->slots);
    free(t->buckets);
    free(t);
}

void *gr_addrtable_get(struct gr_addrtable *t, const struct sockaddr *sa)
{
    struct key k;
    if (!make_key(t, sa, &k))
        return NULL;
    uint32_t i = find(t, bucket_of(t, &k), &k, NULL);
    return i == NIL ? NULL : value_of(slot_at(t, i));
}

void *gr_addrtable_touch(struct gr_addrtable *t, const struct sockaddr *sa, bool *evicted)
{
    if (evicted != NULL)
        *evicted = false;
    struct key k;
    if (!make_key(t, sa, &k))
        return NULL;

    uint32_t *head = bucket_of(t, &k); /* a bucket: evicting below cannot move it */
    uint32_t i = find(t, head, &k, NULL);
    if (i != NIL) {
        order_unlink(t, slot_at(t, i));
        order_append(t, i);
        return value_of(slot_at(t, i));
    }

    if (t->free_list == NIL && t->used == t->max) {
        const struct key *old = &slot_at(t, t->oldest)->key;
        uint32_t *link;
        find(t, bucket_of(t, old), old, &link);
        remove_at(t, link);
        if (evicted != NULL)
            *evicted = true;
    }
    if (t->free_list != NIL) {
        i = t->free_list;
        t->free_list = slot_at(t, i)->chain;
    } else {
        i = t->used++;
    }
    /* At the head of the chain: no walk to the tail, and the newest senders, the likeliest
     * to send again, are found first. */
    struct slot *s = slot_at(t, i);
    s->key = k;
    s->chain = *head;
    *head = i;
    order_append(t, i);
    t->count++;
    void *v = value_of(s);
    memset(v, 0, t->value_size);
    return v;
}

void gr_addrtable_remove(struct gr_addrtable *t, const struct sockaddr *sa)
{
    struct key k;
    uint32_t *link;
    if (make_key(t, sa, &k) && find(t, bucket_of(t, &k), &k, &link) != NIL)
        remove_at(t, link);
}

size_t gr_addrtable_count(const struct gr_addrtable *t)
{
    return t->count;
}

unsigned gr_addrtable_held(struct gr_addrtable *t, const struct sockaddr *sa)
{
    const unsigned *n = gr_addrtable_get(t, sa);
    return n != NULL ? *n : 0;
}

bool gr_addrtable_hold(struct gr_addrtable *t, const struct sockaddr *sa)
{
    unsigned *n = gr_addrtable_touch(t, sa, NULL);
    if (n == NULL)
        return false;
    (*n)++;
    return true;
}

void gr_addrtable_release(struct gr_addrtable *t, const struct sockaddr *sa)
{
    unsigned *n = gr_addrtable_get(t, sa);
    if (n != NULL && --*n == 0)
        gr_addrtable_remove(t, sa);
}
