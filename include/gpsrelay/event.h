/*
 * event.h - the events a console receives, in one table (src/hub/event.c): each has its
 * Phoenix event name and the builder of its payload. Every frame the daemon sends a
 * console is made here, so the wire shapes of docs/protocol.md live in one place.
 *
 * Adding an event: a value in enum gr_event, its row in event.c's table, its payload
 * builder beside the others there; then send it with gr_event_frame (or build its payload
 * once for many consoles with gr_event_payload, and frame that with gr_event_frame_text).
 *
 * Each event's payload is built from a subject of its own type:
 *
 *   event          subject                    payload
 *   phx_reply      const struct gr_reply *    {"status":"ok"|"error","response":{...}}
 *   phx_close      NULL                       {}
 *   positions      const struct gr_batch *    {"positions":[pending positions, oldest first]}
 *   unit_added     const struct gr_unit *     {"device":id,"label":label,
 *                                             "position":latest (when it has one)}
 *   unit_removed   const struct gr_unit *     {"device":id}
 *   unit_stale     const struct gr_unit *     {"device":id,"last_time":t,"last_seen":t}
 *
 * Positions themselves are encoded once per fix by the hub (gr_position), not here.
 */
#ifndef GPSRELAY_EVENT_H
#define GPSRELAY_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpsrelay/buf.h"

struct gr_topic;
struct gr_sub;

enum gr_event {
    GR_EVENT_PHX_REPLY,
    GR_EVENT_PHX_CLOSE,
    GR_EVENT_POSITIONS,
    GR_EVENT_UNIT_ADDED,
    GR_EVENT_UNIT_REMOVED,
    GR_EVENT_UNIT_STALE,
    GR_EVENT_COUNT
};

/* The subject of phx_reply: ok with an empty response; an error with its reason; or,
 * with a topic, the reply to a join, which carries the topic's snapshot. */
struct gr_reply {
    const char *error;      /* not NULL: status "error", response {"reason":error} */
    struct gr_topic *topic; /* a join's: its positions newer than since, its stale units,
                             * all its units with their labels (encoded once, kept in t) */
    const char *epoch;      /* a join's: the hub's epoch and seq (gr_hub_epoch, _seq) */
    const char *node;       /* a join's: the cluster node answering, or NULL */
    uint64_t seq;
    uint64_t since;
    bool recovered;
};

/* The subject of positions: the subscription whose pending positions the frame takes. */
struct gr_batch {
    struct gr_sub *sub; /* its cursor advances past every position the frame takes */
    size_t start;       /* where the frame began in the buffer */
    size_t soft_max;    /* the frame takes no further position once past this many bytes */
    int64_t now_ns;     /* gr_monotonic_ns() as the frame is made, for delivery latency */
    int64_t now_ms;     /* gr_wall_clock_ms() then, for the age of positions (fix time) */
};

/* The event's name on the wire ("unit_added"). */
const char *gr_event_name(enum gr_event e);

/*
 * Appends the frame [join_ref, ref, topic, "<name>", <payload>] to b, the payload built
 * from subject. join_ref, ref and topic are JSON text ("null", "\"3\"", a topic's
 * gr_topic_json_name). Returns -ENOMEM, or what the builder returns: for positions how
 * many it took (0: none were pending and the frame is not complete), else 0.
 */
int gr_event_frame(struct gr_buf *b, const char *join_ref, const char *ref, const char *topic,
                   enum gr_event e, const void *subject);

/* The same with a payload built before (gr_event_payload). 0 or -ENOMEM. */
int gr_event_frame_text(struct gr_buf *b, const char *join_ref, const char *ref, const char *topic,
                        enum gr_event e, const char *payload);

/* The payload of e built from subject, as a new string (caller frees); NULL on ENOMEM. */
char *gr_event_payload(enum gr_event e, const void *subject);

#endif
