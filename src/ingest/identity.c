/*
 * identity.c - sender -> device id, in two address tables keyed by address and port:
 * proven senders and the others (identity.h). Each table bounds its class and evicts the
 * sender touched least recently; this file adds the TTL and the moves between classes.
 */
#include "gpsrelay/identity.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/addrtable.h"
#include "gpsrelay/report.h"

struct remembered {
    int64_t updated_ms; /* when the id was last put */
    char id[GR_DEVICE_ID_MAX + 1];
};

struct gr_identity {
    struct gr_addrtable *proven;   /* of struct remembered, touched when they report */
    struct gr_addrtable *unproven; /* of struct remembered, touched when they name themselves */
};

struct gr_identity *gr_identity_new(size_t max)
{
    struct gr_identity *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    /* With the port: two modems behind one NAT share an address, not a port. */
    t->proven = gr_addrtable_new(max, sizeof(struct remembered), true);
    t->unproven = gr_addrtable_new(max, sizeof(struct remembered), true);
    if (t->proven == NULL || t->unproven == NULL) {
        gr_identity_free(t);
        return NULL;
    }
    return t;
}

void gr_identity_free(struct gr_identity *t)
{
    if (t == NULL)
        return;
    gr_addrtable_free(t->proven);
    gr_addrtable_free(t->unproven);
    free(t);
}

int gr_identity_put(struct gr_identity *t, const struct sockaddr *sa, const char *id, size_t len,
                    int64_t now_ms)
{
    if (len > GR_DEVICE_ID_MAX) /* before touching: a refused id must leave no entry */
        return -EINVAL;
    struct remembered *r = gr_addrtable_get(t->proven, sa);
    if (r != NULL) {
        if (strlen(r->id) == len && memcmp(r->id, id, len) == 0) {
            r->updated_ms = now_ms; /* the same id again: renewed, still proven */
            return 0;
        }
        gr_addrtable_remove(t->proven, sa); /* another id proves nothing yet */
    }
    bool evicted;
    r = gr_addrtable_touch(t->unproven, sa, &evicted);
    if (r == NULL)
        return -EINVAL;
    memcpy(r->id, id, len);
    r->id[len] = '\0';
    r->updated_ms = now_ms;
    return evicted ? 1 : 0;
}

/* The entry for sa in table, forgotten and NULL when its TTL is over. */
static struct remembered *lookup(struct gr_addrtable *table, const struct sockaddr *sa,
                                 int64_t now_ms)
{
    struct remembered *r = gr_addrtable_get(table, sa);
    if (r != NULL && now_ms - r->updated_ms >= GR_IDENTITY_TTL_MS) {
        gr_addrtable_remove(table, sa);
        return NULL;
    }
    return r;
}

/* A lookup does not touch: a put renews a sender's place, and a confirm a proven one's. */
const char *gr_identity_get(struct gr_identity *t, const struct sockaddr *sa, int64_t now_ms)
{
    struct remembered *r = lookup(t->proven, sa, now_ms);
    if (r == NULL)
        r = lookup(t->unproven, sa, now_ms);
    return r != NULL ? r->id : NULL;
}

int gr_identity_confirm(struct gr_identity *t, const struct sockaddr *sa, int64_t now_ms)
{
    bool evicted = false;
    if (lookup(t->proven, sa, now_ms) != NULL) {
        gr_addrtable_touch(t->proven, sa, NULL); /* present: only moves it to the newest */
        return 0;
    }
    struct remembered *r = lookup(t->unproven, sa, now_ms);
    if (r == NULL)
        return 0;
    struct remembered keep = *r;
    gr_addrtable_remove(t->unproven, sa);
    r = gr_addrtable_touch(t->proven, sa, &evicted); /* not NULL: the family was good */
    *r = keep;
    return evicted ? 1 : 0;
}

size_t gr_identity_count(const struct gr_identity *t)
{
    return gr_addrtable_count(t->proven) + gr_addrtable_count(t->unproven);
}

size_t gr_identity_proven_count(const struct gr_identity *t)
{
    return gr_addrtable_count(t->proven);
}
