/*
 * hub.h - units, topics and subscriptions: where positions meet consoles.
 *
 * The hub holds one unit per mapped device with its latest position, already encoded as
 * JSON once (the shape docs/protocol.md gives). Topics are "agency:<id>" (every unit
 * mapped to the agency) and "device:<id>" (one unit). A topic keeps its units in a list
 * ordered by the sequence number of their latest position. A subscription is a cursor
 * into that order: what a subscriber still has to receive is exactly the units whose seq
 * is above its cursor. That gives conflation (one pending position per unit, the newest)
 * and bounded per-console memory for free, and per-position work is O(1) per subscriber:
 * the hub only tells the owner "something is pending" through the notify callback.
 *
 * Staleness works the same way with a second order: units that went stale, by the order
 * in which they did, and a second cursor per subscription. Going stale takes no position
 * sequence number, so `seq` rises by exactly one per accepted position (docs/protocol.md).
 *
 * No I/O here: the hub knows nothing of sockets or libwebsockets. Its files are listed in
 * src/hub/model.h; the events consoles receive and their payloads are in event.h.
 */
#ifndef GPSRELAY_HUB_H
#define GPSRELAY_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "gpsrelay/assemble.h"
#include "gpsrelay/event.h"
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
    int64_t rx_ns;   /* gr_monotonic_ns() when its report was received: delivery latency */
    double lat, lon; /* as published, for the implied-speed check of the next fix */
    size_t json_len;
    char json[]; /* the encoded position object, NUL-terminated */
};

/* A new position (caller frees) for fix f of the unit whose id is the JSON literal
 * json_id, numbered seq; NULL on ENOMEM. rx_ns is left for the caller. The one shape of a
 * position (docs/protocol.md), for consoles and for the archive's answers alike. */
struct gr_position *gr_position_encode(const char *json_id, uint64_t seq, const struct gr_fix *f);

/* Called when a subscription goes from "nothing pending" to "something pending". */
typedef void (*gr_hub_notify_cb)(void *owner);

/*
 * Called for each subscription of a topic when the mapping adds a unit to it or takes
 * one away: event is GR_EVENT_UNIT_ADDED or GR_EVENT_UNIT_REMOVED, payload the JSON object
 * to push (event.h; built once for every subscription, borrowed for the call).
 */
typedef void (*gr_hub_event_cb)(void *owner, const struct gr_topic *t, enum gr_event event,
                                const char *payload);

struct gr_hub_options {
    int max_future_skew_ms; /* fixes further ahead of the receive time are rejected */
    double max_speed;       /* m/s: a fix implying a faster jump is rejected */
    int64_t stale_after_ms; /* a unit with no position for this long is stale */
    gr_hub_notify_cb notify;
    gr_hub_event_cb event;
};

/* Returns a new hub with an empty mapping, or NULL on ENOMEM. The epoch is made here. */
struct gr_hub *gr_hub_new(const struct gr_hub_options *opt);

/* New acceptance limits and stale_after (a reload): options other than these stay. */
void gr_hub_set_limits(struct gr_hub *hub, const struct gr_hub_options *opt);

/* Frees the hub. Every subscription must have been released. */
void gr_hub_free(struct gr_hub *hub);

/*
 * Replacing the mapping. Units of devices that stay keep their position, staleness and
 * assembler; a device whose agencies did not change keeps its unit (only its label is
 * taken from the new mapping). Subscribers of every topic that gains or loses a unit get
 * unit_added / unit_removed through the event callback when the new mapping takes
 * effect, and a unit_added for a unit that stays but whose label changed; from then on a
 * removed unit's positions no longer reach that topic.
 *
 * A large mapping is applied in steps, so the loop is never held for long: begin takes
 * m (in every case: on failure it is freed) and cancels any update still in progress;
 * each step prepares up to `budget` devices (their units and topics) without changing
 * anything consoles see, and the step that prepares the last one commits the whole new
 * mapping at once, in work proportional to the devices that changed. Until then the old
 * mapping stays in force: lookups, publishing and joins go on as before.
 *
 * gr_hub_update_begin: the update, or NULL on ENOMEM.
 * gr_hub_update_step: 1 while devices remain, 0 once committed (the update is freed),
 *   -ENOMEM when abandoned (freed with m; the hub is as it was).
 * gr_hub_update_cancel: abandons the update; the hub is as it was.
 * gr_hub_set_mapping: all steps at once (start-up, a small CSV); 0 or -ENOMEM.
 */
struct gr_hub_update;
struct gr_hub_update *gr_hub_update_begin(struct gr_hub *hub, struct gr_mapping *m);
int gr_hub_update_step(struct gr_hub_update *up, size_t budget);
void gr_hub_update_cancel(struct gr_hub_update *up);
int gr_hub_set_mapping(struct gr_hub *hub, struct gr_mapping *m);

/* The mapping in force (borrowed), NULL before the first. */
const struct gr_mapping *gr_hub_mapping(const struct gr_hub *hub);

/* The unit mapped under this device id, or the one whose source_addr is sa; or NULL. */
struct gr_unit *gr_hub_find_unit(struct gr_hub *hub, const char *id, size_t id_len);
struct gr_unit *gr_hub_find_unit_by_addr(struct gr_hub *hub, const struct sockaddr *sa);

/* The unit's sentence assembler (assemble.h): state that follows the device. */
struct gr_assembler *gr_unit_assembler(struct gr_unit *u);

/* The unit's device id as the mapping spells it; valid while the unit is. */
const char *gr_unit_id(const struct gr_unit *u);

/* The unit's label from the mapping in force ("" when none); valid until the next
 * mapping commits. */
const char *gr_unit_label(const struct gr_unit *u);

/*
 * Publishing a fix is accept, then apply (docs/architecture.md):
 *
 * gr_hub_accept: the acceptance rules that need the unit's history (docs/ingest.md:
 *   future, out of order, duplicate, implied speed) and the position checks (validity,
 *   range, 0,0). Any fix, valid or not, marks the unit alive at now_ms, the receive time.
 *   Returns GR_OK or the reason the fix is refused.
 * gr_hub_apply: the fix becomes the unit's position numbered seq, received at rx_ms (wall
 *   clock: staleness) and rx_ns (monotonic: delivery latency), and every topic of the
 *   unit is told. seq must be above gr_hub_seq(). A fix with the unit's position's time,
 *   or older than a position that was not dated ahead of its receipt, is refused
 *   (GR_DUPLICATE, GR_OUT_OF_ORDER), as acceptance would have: a stream that carries two
 *   nodes' fixes of one unit is applied the same way on every node.
 * gr_hub_publish: accept, then apply with the next seq; or, with a relay set, accept and
 *   hand the fix to the relay, whose return is returned (a cluster: the stream numbers
 *   it, and every node applies it from there).
 */
enum gr_reason gr_hub_accept(struct gr_hub *hub, struct gr_unit *u, const struct gr_fix *fix,
                             int64_t now_ms);
enum gr_reason gr_hub_apply(struct gr_hub *hub, struct gr_unit *u, const struct gr_fix *fix,
                            uint64_t seq, int64_t rx_ms, int64_t rx_ns);
enum gr_reason gr_hub_publish(struct gr_hub *hub, struct gr_unit *u, const struct gr_fix *fix,
                              int64_t now_ms, int64_t rx_ns);

/* Where gr_hub_publish sends accepted fixes instead of applying them; NULL: apply. */
typedef enum gr_reason (*gr_hub_relay_fn)(void *arg, struct gr_unit *u, const struct gr_fix *fix,
                                          int64_t rx_ms);
void gr_hub_set_relay(struct gr_hub *hub, gr_hub_relay_fn relay, void *arg);

/* Told of every position gr_hub_apply makes, after the unit's topics were (the archive);
 * NULL: no one. */
typedef void (*gr_hub_applied_fn)(void *arg, const struct gr_unit *u, const struct gr_fix *fix,
                                  uint64_t seq, int64_t rx_ms);
void gr_hub_set_applied(struct gr_hub *hub, gr_hub_applied_fn applied, void *arg);

/*
 * Marks stale every unit whose last position was received stale_after_ms or more before
 * now_ms, and tells their subscribers. Cost: O(units going stale). Returns how many.
 */
size_t gr_hub_check_stale(struct gr_hub *hub, int64_t now_ms);

/* Longest epoch: 16 hex digits (64 bits), for a single daemon and a cluster alike. */
#define GR_HUB_EPOCH_MAX 16

const char *gr_hub_epoch(const struct gr_hub *hub);
uint64_t gr_hub_seq(const struct gr_hub *hub);

/*
 * A cluster node's hub: the epoch is the stream's (0, or -EINVAL when longer than
 * GR_HUB_EPOCH_MAX), and seq_known the highest stream sequence the node has heard of,
 * which may be ahead of gr_hub_seq() while the node catches up: a console that resumes
 * from a node further ahead asks for a seq up to it (gr_hub_seq_known returns the larger
 * of the two). The node name goes into join replies (0 or -ENOMEM); NULL: none.
 */
int gr_hub_set_epoch(struct gr_hub *hub, const char *epoch);
void gr_hub_set_seq_known(struct gr_hub *hub, uint64_t seq);
uint64_t gr_hub_seq_known(const struct gr_hub *hub);
int gr_hub_set_node(struct gr_hub *hub, const char *node);
const char *gr_hub_node(const struct gr_hub *hub);
size_t gr_hub_device_count(const struct gr_hub *hub);
size_t gr_hub_sub_count(const struct gr_hub *hub);
size_t gr_hub_stale_count(const struct gr_hub *hub);

/*
 * Resolves a topic name to a topic: "agency:<id>" (created, with no units yet, when the
 * id is well-formed) or "device:<id>" (only for a mapped device). NULL otherwise. A
 * topic lives while it has units or subscriptions.
 */
struct gr_topic *gr_hub_topic(struct gr_hub *hub, const char *name);

const char *gr_topic_name(const struct gr_topic *t);

/* The topic's name as a JSON string literal, quotes included ("\"agency:x\""). */
const char *gr_topic_json_name(const struct gr_topic *t);

/*
 * Subscribes owner to topic t with its cursors at the present, and returns the
 * subscription (NULL on ENOMEM). From now on notify(owner) is called when something for
 * t arrives while nothing of t was pending for this subscription.
 *
 * Lifetimes: the owner holds the subscription and must end it (gr_sub_free) before the
 * owner itself goes; the hub calls notify and event callbacks only for subscriptions not
 * yet ended, and never from inside gr_sub_free. A subscription holds its topic, so
 * gr_sub_topic() stays valid until gr_sub_free() even if the mapping drops every unit.
 */
struct gr_sub *gr_sub_new(struct gr_hub *hub, struct gr_topic *t, void *owner);

/* Moves the position cursor forward to seq (a join that resumes from a seq this node has
 * not applied yet: nothing at or below it is delivered). A lower seq changes nothing. */
void gr_sub_skip_to(struct gr_sub *s, uint64_t seq);

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

/* Calls fn with the JSON string literal of the id of every stale unit of t. */
typedef void (*gr_id_fn)(void *ctx, const char *json_id);
void gr_topic_each_stale(const struct gr_topic *t, gr_id_fn fn, void *ctx);

/*
 * Hands the subscription's pending positions to fn, oldest first, advancing its cursor
 * past each one fn accepts; stops when fn returns false (that position stays pending).
 * Returns how many were taken.
 */
size_t gr_sub_drain(struct gr_sub *s, gr_position_fn fn, void *ctx);

/*
 * The unit_stale payload of the next unit of the subscription's topic that went stale
 * since the subscription last took one, advancing its stale cursor; NULL when none.
 * Units that recovered meanwhile are not reported.
 */
const char *gr_sub_next_stale(struct gr_sub *s);

#endif
