/*
 * hub.h - units, topics and subscriptions: where positions meet consoles.
 *
 * The hub holds one unit per mapped device with its latest position, already encoded as
 * JSON once (SPEC section 5 shape). Each agency is a topic; a topic keeps its units in a
 * list ordered by the sequence number of their latest position. A subscription is a
 * cursor into that order: what a subscriber still has to receive is exactly the units
 * whose seq is above its cursor. That gives conflation (one pending position per unit,
 * the newest) and bounded per-console memory for free, and per-position work is O(1)
 * per subscriber: the hub only tells the owner "something is pending" through the
 * notify callback given at creation.
 *
 * No I/O here: the hub knows nothing of sockets or libwebsockets.
 */
#ifndef GPSRELAY_HUB_H
#define GPSRELAY_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gpsrelay/fix.h"
#include "gpsrelay/mapping.h"

struct gr_hub;
struct gr_unit;
struct gr_topic;
struct gr_sub;

/* A published position: immutable, owned by its unit until a newer one replaces it. */
struct gr_position {
    uint64_t seq;    /* daemon-wide, rises by one per accepted position */
    int64_t time_ms; /* fix time */
    size_t json_len;
    char json[]; /* the encoded position object, NUL-terminated */
};

/* Called when a subscription goes from "nothing pending" to "something pending". */
typedef void (*gr_hub_notify_cb)(void *owner);

struct gr_hub_options {
    int max_future_skew_ms; /* fixes further ahead of the receive time are rejected */
    gr_hub_notify_cb notify;
};

/* Returns a new hub with an empty mapping, or NULL on ENOMEM. The epoch is made here. */
struct gr_hub *gr_hub_new(const struct gr_hub_options *opt);

/* Frees the hub. Every subscription must have been released. */
void gr_hub_free(struct gr_hub *hub);

/*
 * Makes m the mapping in force; the hub takes ownership of m and frees the previous
 * mapping. Units of devices that stay keep their latest position. Returns 0 or -ENOMEM
 * (then nothing changed and m is still the caller's).
 */
int gr_hub_set_mapping(struct gr_hub *hub, struct gr_mapping *m);

/* The unit mapped under this device id, or the one whose source_addr is sa; or NULL. */
struct gr_unit *gr_hub_find_unit(struct gr_hub *hub, const char *id, size_t id_len);
struct gr_unit *gr_hub_find_unit_by_addr(struct gr_hub *hub, const struct sockaddr *sa);

/*
 * Applies the acceptance rules that need the unit's history (SPEC section 4: future,
 * out of order, duplicate) and the position checks (validity, range, 0,0), then encodes
 * and publishes the fix to every topic of the unit. now_ms is the receive time.
 * Returns GR_OK or the reason the fix was refused.
 */
enum gr_reason gr_hub_publish(struct gr_hub *hub, struct gr_unit *unit, const struct gr_fix *fix,
                              int64_t now_ms);

const char *gr_hub_epoch(const struct gr_hub *hub);
uint64_t gr_hub_seq(const struct gr_hub *hub);
size_t gr_hub_device_count(const struct gr_hub *hub);
size_t gr_hub_sub_count(const struct gr_hub *hub);

/*
 * Resolves a topic name ("agency:<id>") to a topic, creating an agency topic with no
 * units yet when the id is well-formed. Returns NULL for names that are no topic.
 * A topic lives while it has units or subscriptions.
 */
struct gr_topic *gr_hub_topic(struct gr_hub *hub, const char *name);

const char *gr_topic_name(const struct gr_topic *t);

/* The topic's name as a JSON string literal, quotes included ("\"agency:x\""). */
const char *gr_topic_json_name(const struct gr_topic *t);

/*
 * Subscribes owner to topic t with its cursor at the current sequence number, and
 * returns the subscription (NULL on ENOMEM). From now on notify(owner) is called when a
 * position for t arrives while nothing of t was pending for this subscription.
 */
struct gr_sub *gr_sub_new(struct gr_hub *hub, struct gr_topic *t, void *owner);

/* Ends a subscription; the topic is freed when nothing else holds it. */
void gr_sub_free(struct gr_hub *hub, struct gr_sub *s);

struct gr_topic *gr_sub_topic(const struct gr_sub *s);
bool gr_sub_pending(const struct gr_sub *s);

/*
 * Calls fn for each unit position of t newer than since_seq, oldest first, and stops
 * early when fn returns false. Used for join snapshots (since_seq 0 = everything).
 */
typedef bool (*gr_position_fn)(void *ctx, const struct gr_position *p);
void gr_topic_each_since(const struct gr_topic *t, uint64_t since_seq, gr_position_fn fn,
                         void *ctx);

/*
 * Hands the subscription's pending positions to fn, oldest first, advancing its cursor
 * past each one fn accepts; stops when fn returns false (that position stays pending).
 * Returns how many were taken.
 */
size_t gr_sub_drain(struct gr_sub *s, gr_position_fn fn, void *ctx);

#endif
