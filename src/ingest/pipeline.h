/*
 * pipeline.h - what the ingest listeners share, private to src/ingest/: the ingest object,
 * and the pipeline every listener hands what it received to (pipeline.c). A listener
 * (udp.c, tcp.c, listeners.h) receives bytes and knows its sender; the pipeline frames them
 * into reports, checks rate limits, decodes, identifies the device, assembles and
 * publishes, and counts every report that does not make it.
 */
#ifndef GR_INGEST_PIPELINE_H
#define GR_INGEST_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "gpsrelay/ingest.h"
#include "gpsrelay/stats.h"
#include "gpsrelay/stop.h"

/* Drops are logged as a summary this often, when there were any: a flood of bad input is
 * one line per interval, not a line per datagram (the counters have every one). */
#define GR_INGEST_SUMMARY_MS 10000

struct tcp_conn;
struct gr_merge_wait;

struct gr_ingest {
    /* The pipeline (pipeline.c); the drop summary (ingest.c). */
    uv_loop_t *loop;
    struct gr_hub *hub;          /* borrowed */
    const struct gr_config *cfg; /* borrowed: ingest_allow, limits */
    struct gr_identity *ids;
    struct gr_ratelimit *rate; /* ingest_rate_limit per source address */
    bool stopping;
    size_t closing;        /* while stopping: handles (and the acceptor) not yet closed */
    gr_stopped_fn stopped; /* told once closing and n_conns are both 0 (stop.h) */
    void *stopped_arg;
    uv_timer_t summary; /* the drop summary: one log line per interval, not one per report */
    uint64_t summarized[GR_REASON_COUNT]; /* gr_stats.ingest_rejected at the last summary */
    uint64_t summarized_not_allowed, summarized_rate_limited, summarized_receive_errors;
    uint64_t summarized_socket_drops;
    uint64_t summarized_tcp_refused[GR_TCP_REFUSAL_COUNT], summarized_tcp_accept_errors;
    uint64_t summarized_phone_incomplete, summarized_phone_refused;
    /*
     * Fixes waiting for the rest of their sentences (merge_window, pipeline.c): a list in
     * deadline order and one timer for its head, so many devices cost one timer and O(1)
     * per fix, never a timer each. At most one entry per unit; spare ones are kept.
     */
    struct gr_merge_wait *waiting, *waiting_tail, *wait_spare;
    uv_timer_t merge_timer;
    size_t phone_bodies; /* bytes of phones' bodies being read (phones.c) */
    size_t phone_conns;  /* phones' connections open (phones.c) */

    /* UDP (udp.c). */
    size_t n_udp;
    uv_udp_t udp[GR_LISTEN_MAX];

    /* TCP (tcp.c). */
    struct gr_acceptor *acceptor;              /* every listen_tcp socket; NULL without any */
    struct tcp_conn *conns;                    /* open, newest first */
    struct tcp_conn *retiring, *retiring_tail; /* to be closed, oldest first (on_close_turn) */
    size_t n_conns;    /* open, retiring or closing: each holds a descriptor */
    size_t conn_limit; /* GR_TCP_CONN_MAX, or less: the descriptor share (set_conn_limit) */
    enum gr_tcp_refusal conn_limit_reason;
    struct gr_addrtable *per_source;     /* open connections per source address (unsigned) */
    uv_idle_t closer;                    /* active while connections wait to be closed */
    bool refusing[GR_TCP_REFUSAL_COUNT]; /* a refusal episode: warned at its start */
    uint64_t idle_ms;                    /* 0: modems may stay silent forever */
    uv_timer_t sweep;
};

/*
 * One payload's worth of work: a datagram, or what one read brought from a stream. A fix
 * goes out as soon as it is complete by its device's habit, else when its merge_window
 * runs out (gr_ingest_merge_*); with merge_window 0 the units whose sentences came in the
 * payload are flushed at its end instead (touched).
 */
struct gr_ingest_batch {
    struct gr_ingest *in;
    const struct sockaddr *from; /* borrowed for the batch's life */
    int64_t now_ms;
    int64_t rx_ns; /* the receive time again, on the monotonic clock */
    struct gr_unit *touched[GR_BATCH_UNITS];
    size_t n_touched;
};

/* A batch of what `from` sent, received now. */
struct gr_ingest_batch gr_ingest_batch_begin(struct gr_ingest *in, const struct sockaddr *from);

/* Every report in p[0..len) (borrowed for the call): CR/LF-separated lines, TAIP messages
 * back to back. */
void gr_ingest_batch_add(struct gr_ingest_batch *b, const char *p, size_t len);

/* Publishes the fixes the batch's sentences completed; the batch may be used again. */
void gr_ingest_batch_end(struct gr_ingest_batch *b);

/* The merge_window timer: set up at start; stop publishes what still waits and closes it
 * (gr_ingest_close_once); free frees the list. */
void gr_ingest_merge_init(struct gr_ingest *in);
void gr_ingest_merge_stop(struct gr_ingest *in);
void gr_ingest_merge_free(struct gr_ingest *in);

/* A report that is a whole fix with its device's own id (a phone's, phones.c): the unit
 * found by id and the fix published. Returns GR_OK, or why not (counted already). */
enum gr_reason gr_ingest_publish_own(struct gr_ingest *in, const char *id,
                                     const struct gr_fix *fix);

/* ingest_allow: whether `from` may send at all. */
bool gr_ingest_allowed(const struct gr_ingest *in, const struct sockaddr *from);

/* Logs a listener's address once it is bound. */
void gr_ingest_log_listening(const char *kind, const struct sockaddr *sa, int port);

/* Closes one of in's handles (h->data is in) unless it is closing already, and counts it
 * until its close callback; then tells the stop's done when nothing is left. */
void gr_ingest_close_once(uv_handle_t *h);

/* Something ingest waited on to stop has closed (a handle, a connection, the acceptor):
 * tells the stop's done if it was the last. */
void gr_ingest_maybe_stopped(struct gr_ingest *in);

#endif
