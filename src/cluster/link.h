/*
 * link.h - the seam between the cluster's loop side (cluster.c) and its NATS side (link.c).
 *
 * link.c is built as a loadable module, the only code linked with libnats, and loaded
 * (dlopen) only when the configuration names cluster_nats: a single daemon never maps
 * libnats or starts its threads. The module exports one symbol, GR_LINK_SYMBOL, a struct
 * gr_link_ops.
 *
 * Threads. libnats runs its own (socket reader, flusher, reconnect, timers, subscription
 * delivery), and the module one more: the link thread, which makes every call that waits
 * for a reply (connect, stream info and creation, subscribe, publish under back-pressure).
 * Nothing here runs on the loop thread except the ops below marked "any thread"; they only
 * take a mutex. The callbacks come from libnats' threads or the link thread, never the
 * loop: cluster.c hands what they bring to the loop through a uv_async_t.
 */
#ifndef GPSRELAY_CLUSTER_LINK_H
#define GPSRELAY_CLUSTER_LINK_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GR_LINK_SYMBOL "gr_link_ops"

/* Where the module is installed; in a build tree it sits beside gpsrelayd. */
#define GR_LINK_MODULE "gpsrelay-cluster.so"

/* Accepted fixes waiting to be stored in the stream: the link thread's queue. Past it a
 * fix is refused (counted: gpsrelay_ingest_rejected_total{reason="cluster_queue_full"}).
 * 2,000 units at 1 Hz fill it in about two minutes of NATS outage, the length of
 * JetStream's default de-duplication window, past which a retried publish could be stored
 * twice anyway. */
#define GR_LINK_QUEUE_MAX 262144

/* Publishes awaiting JetStream's acknowledgement at once; past it the link thread waits. */
#define GR_LINK_INFLIGHT_MAX 8192

/* Longest wait for one acknowledgement before the message is published again (same
 * message id: stored once). */
#define GR_LINK_ACK_WAIT_MS 2000

struct gr_link_config {
    const char *const *urls; /* nats://HOST:PORT, n_urls of them */
    size_t n_urls;
    const char *stream;   /* the stream's name: cluster_name */
    const char *subjects; /* "<cluster_name>.pos.>" */
    const char *node;     /* node_name: the connection's name */
    int replicas;
    int64_t history_s; /* the stream's MaxAge */
};

/* One message the stream delivered, as the link hands it over (borrowed for the call). */
struct gr_delivery {
    uint64_t seq;      /* stream sequence */
    uint64_t pending;  /* messages after this one in the stream when it was sent */
    int64_t stored_ns; /* when the stream stored it, wall clock */
    const char *rx;    /* the Gr-Rx header, or NULL */
    const char *src;   /* the Gr-Src header, or NULL */
    const char *data;  /* the body */
    size_t len;
};

/* The link's state, as gr_link_ops.state reads it. */
struct gr_link_state {
    bool connected;     /* to a NATS server */
    bool subscribed;    /* the stream exists and delivers to this node */
    char epoch[17];     /* the stream's identity (its creation time in hex), "" before */
    uint64_t last_seq;  /* the stream's last sequence when the subscription began */
    uint64_t queued;    /* waiting in the queue, or sent and not yet acknowledged */
    uint64_t published; /* acknowledged by the stream (duplicates included) */
    uint64_t failures;  /* publishes that failed and were retried, or could not be sent */
};

struct gr_link_callbacks {
    void *arg;
    /* A message from the stream, in stream order (libnats' delivery thread). */
    void (*deliver)(void *arg, const struct gr_delivery *d);
    /* The state changed (connected, subscribed, epoch): read it with ops->state. */
    void (*changed)(void *arg);
    /* gr_log, which writes each line with one write(2) and may be called from any thread. */
    void (*log)(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
};

/* One accepted fix to store (copied by publish). */
struct gr_outgoing {
    const char *subject;
    const char *msg_id;
    const char *rx;  /* Gr-Rx: receive time, ms since 1970 */
    const char *src; /* Gr-Src: the format's name */
    const char *data;
    size_t len;
};

struct gr_link;

struct gr_link_ops {
    /* Starts the link thread, which connects and keeps reconnecting. 0, or a negative
     * errno with err set. cb must stay valid until stop's done. */
    int (*start)(const struct gr_link_config *cfg, const struct gr_link_callbacks *cb,
                 struct gr_link **out, char *err, size_t errlen);
    /* Any thread: queues m. 0, or -ENOSPC when GR_LINK_QUEUE_MAX wait, -ENOMEM. */
    int (*publish)(struct gr_link *l, const struct gr_outgoing *m);
    /* Any thread. */
    void (*state)(struct gr_link *l, struct gr_link_state *out);
    /* Blocking (the thread pool): stops the thread, closes the connection, and frees l.
     * Fixes still queued are lost: the daemon stops only after ingest has. */
    void (*destroy)(struct gr_link *l);
    /* Blocking (gpsrelayd -t): connects to the servers, and checks the stream is usable
     * (or can be made). 0, or a negative errno with err set. */
    int (*check)(const struct gr_link_config *cfg, char *err, size_t errlen);
};

#endif
