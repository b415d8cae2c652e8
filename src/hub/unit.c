/*
 * unit.c - units: one per mapped device, in the topics of its agencies and its own
 * device topic, holding its latest position and what follows the device across reloads.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/jsonw.h"
#include "gpsrelay/report.h"

void gr_unit_free(struct gr_unit *u)
{
    if (u == NULL)
        return;
    free(u->pos);
    free(u->id);
    free(u->json_id);
    free(u->stale_json);
    free(u);
}

struct gr_unit *gr_units_find(struct gr_unit **units, size_t n, const char *id, size_t len)
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

void gr_unit_discard(struct gr_hub *hub, struct gr_unit *u)
{
    for (size_t k = 0; k < u->n_members; k++) {
        u->members[k].topic->pins--;
        gr_topic_release(hub, u->members[k].topic);
    }
    gr_unit_free(u);
}

struct gr_unit *gr_unit_new(struct gr_hub *hub, const struct gr_device *d)
{
    struct gr_unit *u = calloc(1, sizeof(*u) + (d->n_agencies + 1) * sizeof(u->members[0]));
    if (u == NULL || (u->id = strdup(d->id)) == NULL || (u->json_id = gr_json_quote(d->id)) == NULL)
        goto fail;
    u->label = d->label;
    char name[sizeof(GR_AGENCY_PREFIX) + GR_AGENCY_ID_MAX + GR_DEVICE_ID_MAX];
    for (size_t k = 0; k <= d->n_agencies; k++) {
        if (k < d->n_agencies)
            snprintf(name, sizeof(name), GR_AGENCY_PREFIX "%s", d->agencies[k]);
        else
            snprintf(name, sizeof(name), GR_DEVICE_PREFIX "%s", d->id);
        u->members[k].unit = u;
        u->members[k].topic = gr_topic_get(hub, name);
        if (u->members[k].topic == NULL)
            goto fail;
        u->members[k].topic->pins++;
        u->n_members = k + 1;
    }
    return u;
fail:
    if (u != NULL)
        gr_unit_discard(hub, u);
    return NULL;
}

const char *gr_unit_id(const struct gr_unit *u)
{
    return u->id;
}

const char *gr_unit_label(const struct gr_unit *u)
{
    return u->label;
}

struct gr_assembler *gr_unit_assembler(struct gr_unit *u)
{
    return &u->assembler;
}

struct gr_unit *gr_hub_find_unit(struct gr_hub *hub, const char *id, size_t id_len)
{
    return gr_units_find(hub->units, hub->n_units, id, id_len);
}

struct gr_unit *gr_hub_find_unit_by_addr(struct gr_hub *hub, const struct sockaddr *sa)
{
    if (hub->mapping == NULL)
        return NULL;
    const struct gr_device *d = gr_mapping_find_addr(hub->mapping, sa);
    return d ? gr_hub_find_unit(hub, d->id, strlen(d->id)) : NULL;
}
