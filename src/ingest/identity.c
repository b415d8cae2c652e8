/*
 * identity.c - sender -> device id, in an address table keyed by address and port. The
 * table bounds it and evicts the sender updated least recently; this file adds the TTL.
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
    struct gr_addrtable *senders; /* of struct remembered */
};

struct gr_identity *gr_identity_new(size_t max)
{
    struct gr_identity *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    /* With the port: two modems behind one NAT share an address, not a port. */
    t->senders = gr_addrtable_new(max, sizeof(struct remembered), true);
    if (t->senders == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

void gr_identity_free(struct gr_identity *t)
{
    if (t == NULL)
        return;
    gr_addrtable_free(t->senders);
    free(t);
}

int gr_identity_put(struct gr_identity *t, const struct sockaddr *sa, const char *id, size_t len,
                    int64_t now_ms)
{
    if (len > GR_DEVICE_ID_MAX) /* before touching: a refused id must leave no entry */
        return -EINVAL;
    bool evicted;
    struct remembered *r = gr_addrtable_touch(t->senders, sa, &evicted);
    if (r == NULL)
        return -EINVAL;
    memcpy(r->id, id, len);
    r->id[len] = '\0';
    r->updated_ms = now_ms;
    return evicted ? 1 : 0;
}

/* A lookup does not touch: only a put renews a sender's place, as it renews the TTL. */
const char *gr_identity_get(struct gr_identity *t, const struct sockaddr *sa, int64_t now_ms)
{
    struct remembered *r = gr_addrtable_get(t->senders, sa);
    if (r == NULL)
        return NULL;
    if (now_ms - r->updated_ms >= GR_IDENTITY_TTL_MS) {
        gr_addrtable_remove(t->senders, sa);
        return NULL;
    }
    return r->id;
}

size_t gr_identity_count(const struct gr_identity *t)
{
    return gr_addrtable_count(t->senders);
}
