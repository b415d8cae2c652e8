/*
 * phoenix.h - Phoenix Channels v2 (serializer 2.0.0) sessions, independent of transport.
 *
 * A struct gr_console is one Phoenix socket: the channels it joined and the replies it
 * owes. The transport (WebSocket now, LongPoll later) feeds it received frames and, when
 * woken, pulls outgoing frames until none is left. Frames are JSON arrays
 * [join_ref, ref, topic, event, payload]; join_ref and ref are echoed as received.
 *
 * Lifetimes: the transport owns the console and frees it (gr_console_free) from its own
 * close path, never from inside a call into the console. The console owns its channels,
 * their hub subscriptions (ended in gr_console_free, see gr_sub_new) and its queued
 * frames; it keeps the transport pointer given to gr_console_new only to pass it to wake,
 * which is never called after gr_console_free.
 */
#ifndef GPSRELAY_PHOENIX_H
#define GPSRELAY_PHOENIX_H

#include <stdbool.h>
#include <stddef.h>

#include "gpsrelay/buf.h"
#include "gpsrelay/hub.h"
#include "gpsrelay/token.h"

#define GR_CONSOLE_TOPICS_MAX   100   /* channels per socket (docs/protocol.md) */
#define GR_CONSOLE_CONTROL_MAX  128   /* replies queued for a console that does not read */
#define GR_POSITIONS_FRAME_SOFT 16384 /* a positions frame closes once past this size */
#define GR_CONSOLE_JOIN_RATE                                                                       \
    10.0 /* joins per second per socket, after a burst of                                          \
          * GR_CONSOLE_TOPICS_MAX (a console joining all it may) */

/* WebSocket close codes the channel layer asks the transport to use. */
#define GR_WS_GOING_AWAY 1001
#define GR_WS_INVALID    1007
#define GR_WS_POLICY     1008

struct gr_console;

/* Called (at most once until the next drain) when the console has frames to send. */
typedef void (*gr_console_wake_cb)(void *transport);

/* Returns a new console bound to hub, or NULL on ENOMEM. */
struct gr_console *gr_console_new(struct gr_hub *hub, gr_console_wake_cb wake, void *transport);

/*
 * Restricts the console to what token t allows (docs/protocol.md): agency:<id> for its
 * agencies, device:<id> for devices mapped to one of them. Copies what it needs. Without
 * a call (auth none) every topic may be joined. 0 or -ENOMEM.
 */
int gr_console_set_auth(struct gr_console *c, const struct gr_token *t);

/* The token's exp (seconds since the epoch), or INT64_MAX without auth. */
int64_t gr_console_expires(const struct gr_console *c);

/*
 * Re-checks every channel against the mapping in force, after it changed: a device:<id>
 * channel whose device left the token's agencies is closed (phx_close) at once.
 */
void gr_console_reauthorize(struct gr_console *c);

/* Leaves every channel and frees the console. */
void gr_console_free(struct gr_console *c);

/*
 * Handles one received frame. Returns 0, or a WebSocket close code the transport must
 * close the connection with (GR_WS_INVALID for a frame that is no Phoenix message,
 * GR_WS_POLICY when the console let replies pile up past GR_CONSOLE_CONTROL_MAX).
 */
int gr_console_receive(struct gr_console *c, const char *frame, size_t len, uint64_t now_ms);

/*
 * Appends the next outgoing frame to out: queued replies first, then, channel by channel,
 * one "positions" frame for a channel with pending positions, or a phx_error for a channel
 * whose hub events found the queue full (the channel ends there; the client joins again
 * and its reply has the whole new state: gpsrelay_channels_resynced_total). Returns 1 when a frame
 * was appended, 0 when nothing is pending (the next position wakes the transport again), -ENOMEM,
 * or -EOVERFLOW when an event of no channel overflowed GR_CONSOLE_CONTROL_MAX (close with 1008).
 */
int gr_console_next_frame(struct gr_console *c, struct gr_buf *out);

/* True when replies, events or positions wait to be sent. */
bool gr_console_has_output(const struct gr_console *c);

/* The hub's notify callback: owner is the console that subscribed. */
void gr_console_on_pending(void *owner);

/* The hub's event callback (unit_added, unit_removed): queues the push for the console. */
void gr_console_on_event(void *owner, const struct gr_topic *t, enum gr_event e,
                         const char *payload);

#endif
