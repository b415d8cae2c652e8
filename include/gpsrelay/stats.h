/*
 * stats.h - the daemon's counters, and their Prometheus rendering (docs/operations.md).
 *
 * One process, one thread: counters are plain integers in one global struct (Redis's
 * server.stat_*). Modules increment them directly; gauges are read from the modules
 * when /metrics is rendered.
 */
#ifndef GPSRELAY_STATS_H
#define GPSRELAY_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "gpsrelay/fix.h"

/* Why the daemon closed a console; the `reason` label of gpsrelay_consoles_closed_total. */
#define GR_CLOSE_REASONS(X)                                                                        \
    X(PEER, "peer")             /* the console closed or the connection dropped */                 \
    X(MALFORMED, "malformed")   /* a frame that is not a Phoenix v2 message (1007) */              \
    X(TOO_BIG, "too_big")       /* a frame over GR_WS_FRAME_MAX (1009) */                          \
    X(OVERFLOW, "overflow")     /* replies piled up past GR_CONSOLE_CONTROL_MAX (1008) */          \
    X(SLOW, "slow")             /* took nothing for slow_timeout while positions waited (1008) */  \
    X(IDLE, "idle")             /* sent nothing, heartbeats included, for idle_timeout (1001) */   \
    X(EXPIRED, "token_expired") /* its token's exp passed (1008) */                                \
    X(SHUTDOWN, "shutdown")     /* the daemon stopped (1001) */

enum gr_close_reason {
#define GR_CLOSE_ENUM(name, label) GR_CLOSE_##name,
    GR_CLOSE_REASONS(GR_CLOSE_ENUM)
#undef GR_CLOSE_ENUM
        GR_CLOSE_REASON_COUNT
};

/* Why a join was refused; the `reason` label of gpsrelay_joins_refused_total. */
#define GR_JOIN_REFUSALS(X)                                                                        \
    X(UNAUTHORIZED, "unauthorized")       /* the token does not cover the topic */                 \
    X(UNMATCHED, "unmatched_topic")       /* no such topic */                                      \
    X(TOO_MANY_TOPICS, "too_many_topics") /* GR_CONSOLE_TOPICS_MAX joined already */               \
    X(RATE_LIMITED, "rate_limited")       /* over GR_CONSOLE_JOIN_RATE */

enum gr_join_refusal {
#define GR_JOIN_ENUM(name, label) GR_JOIN_##name,
    GR_JOIN_REFUSALS(GR_JOIN_ENUM)
#undef GR_JOIN_ENUM
        GR_JOIN_REFUSAL_COUNT
};

/* Why a console's connection was refused before it was one (HTTP 403/429/503); the
 * `reason` label of gpsrelay_consoles_refused_total. Token reasons come from token.h. */
#define GR_CONSOLE_REFUSALS(X)                                                                     \
    X(BAD_VSN, "bad_vsn")             /* vsn missing or not 2.0.0 */                               \
    X(BAD_ORIGIN, "bad_origin")       /* Origin not in allowed_origin */                           \
    X(PER_SOURCE, "per_source_limit") /* max_connections_per_source reached */                     \
    X(STOPPING, "stopping")           /* the daemon is shutting down */                            \
    X(STARTING, "starting")           /* a cluster node not caught up with the stream yet */       \
    X(SESSIONS_FULL, "sessions_full") /* GR_LONGPOLL_SESSIONS_MAX LongPoll sessions at once */     \
    X(DESCRIPTORS, "descriptors")     /* into the last GR_FD_RESERVE descriptors */                \
    X(SESSION_IDENTITY, "session_identity") /* a LongPoll session id presented by another token */ \
    X(BAD_REQUEST, "bad_request") /* a request smuggling risk: two Content-Length, or one          \
                                   * with Transfer-Encoding (HTTP 400) */                          \
    X(TOKEN_MISSING, "token_missing")                                                              \
    X(TOKEN_MALFORMED, "token_malformed")                                                          \
    X(TOKEN_BAD_ALG, "token_bad_alg")                                                              \
    X(TOKEN_BAD_SIGNATURE, "token_bad_signature")                                                  \
    X(TOKEN_EXPIRED, "token_expired")                                                              \
    X(TOKEN_BAD_CLAIMS, "token_bad_claims")

enum gr_console_refusal {
#define GR_REFUSAL_ENUM(name, label) GR_REFUSED_##name,
    GR_CONSOLE_REFUSALS(GR_REFUSAL_ENUM)
#undef GR_REFUSAL_ENUM
        GR_CONSOLE_REFUSAL_COUNT
};

/* Why a modem's TCP connection was closed as soon as it was accepted; the `reason` label of
 * gpsrelay_tcp_refused_total. */
#define GR_TCP_REFUSALS(X)                                                                         \
    X(PER_SOURCE, "per_source_limit")  /* tcp_max_per_source from its address already */           \
    X(CONNECTIONS, "connection_limit") /* GR_TCP_CONN_MAX modem connections open */                \
    X(DESCRIPTORS, "descriptor_limit") /* their share of RLIMIT_NOFILE in use (ingest.h) */

enum gr_tcp_refusal {
#define GR_TCP_REFUSAL_ENUM(name, label) GR_TCP_REFUSED_##name,
    GR_TCP_REFUSALS(GR_TCP_REFUSAL_ENUM)
#undef GR_TCP_REFUSAL_ENUM
        GR_TCP_REFUSAL_COUNT
};

/* The `reason` label of r ("per_source_limit"), for logs that name it as /metrics does. */
const char *gr_tcp_refusal_label(enum gr_tcp_refusal r);

/*
 * A Prometheus histogram of seconds over fixed bucket bounds (ascending, +Inf implied).
 * Observing is a short linear scan: the bounds are few and small values, the common ones,
 * come first.
 */
#define GR_HISTOGRAM_BOUNDS_MAX 16
struct gr_histogram {
    const double *bounds;
    int n_bounds;
    uint64_t counts[GR_HISTOGRAM_BOUNDS_MAX + 1]; /* per bucket (not cumulative); last: +Inf */
    double sum;
    uint64_t count;
    double max; /* since start: the worst single observation */
};

static inline void gr_histogram_observe(struct gr_histogram *h, double seconds)
{
    int i = 0;
    while (i < h->n_bounds && seconds > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += seconds;
    h->count++;
    if (seconds > h->max)
        h->max = seconds;
}

/* Messages of the cluster's stream a node skipped (cluster.h), by reason. */
#define GR_CLUSTER_SKIPS(X)                                                                        \
    X(MALFORMED, "malformed")           /* not a position message (cluster_wire.h) */              \
    X(UNKNOWN_DEVICE, "unknown_device") /* a device this node's mapping does not have */           \
    X(OUT_OF_ORDER, "out_of_order")     /* not newer than the unit's position (hub.h) */

enum gr_cluster_skip {
#define GR_CLUSTER_SKIP_ENUM(name, label) GR_CLUSTER_SKIP_##name,
    GR_CLUSTER_SKIPS(GR_CLUSTER_SKIP_ENUM)
#undef GR_CLUSTER_SKIP_ENUM
        GR_CLUSTER_SKIP_COUNT
};

/* The answers of /api/history and /api/snapshot (history.h), by HTTP status; the `status`
 * label of gpsrelay_history_requests_total. A 200 is counted when its head is written, even
 * if the answer is cut later (the client went, the archive was lost mid-answer). */
#define GR_HISTORY_STATUSES(X)                                                                     \
    X(OK, "200")                                                                                   \
    X(BAD_REQUEST, "400")  /* a malformed parameter */                                             \
    X(UNAUTHORIZED, "401") /* no token, or a bad one */                                            \
    X(FORBIDDEN, "403")    /* Origin refused; device or agency unknown or not the token's */       \
    X(NOT_FOUND, "404")    /* no archive_postgres */                                               \
    X(METHOD, "405")       /* not GET */                                                           \
    X(ERROR, "500")        /* the archive refused the query (a missing table, a timeout) */        \
    X(UNAVAILABLE, "503")  /* the archive unreachable, or GR_HISTORY_QUERIES_MAX running */

enum gr_history_status {
#define GR_HISTORY_STATUS_ENUM(name, label) GR_HISTORY_##name,
    GR_HISTORY_STATUSES(GR_HISTORY_STATUS_ENUM)
#undef GR_HISTORY_STATUS_ENUM
        GR_HISTORY_STATUS_COUNT
};

/* The answers to phones' requests on listen_http_ingest (ingest.h), by HTTP status; the
 * `status` label of gpsrelay_ingest_http_requests_total. */
#define GR_PHONE_STATUSES(X)                                                                       \
    X(OK, "200")          /* taken: published, or counted as a duplicate, older, ... */            \
    X(BAD_REQUEST, "400") /* malformed, a field missing (gpsrelay_ingest_rejected_total) */        \
    X(FORBIDDEN, "403")   /* from outside ingest_allow */                                          \
    X(NOT_FOUND, "404")   /* a device the mapping does not have */                                 \
    X(METHOD, "405")      /* not GET or POST, or a WebSocket upgrade */                            \
    X(LENGTH, "411")      /* a chunked body: lws 4.1 reads only bodies with a Content-Length */    \
    X(TOO_LARGE, "413")   /* a body over GR_PHONE_BODY_MAX, refused before it is read */           \
    X(TOO_MANY, "429")    /* over ingest_rate_limit for its address */                             \
    X(UNAVAILABLE, "503") /* stopping, or GR_PHONE_BODIES_MAX bytes of bodies being read */

enum gr_phone_status {
#define GR_PHONE_STATUS_ENUM(name, label) GR_PHONE_##name,
    GR_PHONE_STATUSES(GR_PHONE_STATUS_ENUM)
#undef GR_PHONE_STATUS_ENUM
        GR_PHONE_STATUS_COUNT
};

struct gr_stats {
    uint64_t ingest_datagrams;      /* UDP datagrams received */
    uint64_t ingest_receive_errors; /* UDP reads that failed (ICMP errors, ...) */
    uint64_t ingest_reports;        /* report lines seen */
    uint64_t ingest_rejected[GR_REASON_COUNT];
    uint64_t ingest_no_checksum;      /* NMEA/TAIP sentences accepted without *hh */
    uint64_t ingest_spliced;          /* broken sentences cut off by a newer one on a line */
    uint64_t ingest_identity_evicted; /* remembered sender ids forgotten to make room */
    uint64_t tcp_accepted;            /* modem TCP connections accepted */
    uint64_t tcp_refused[GR_TCP_REFUSAL_COUNT]; /* ... closed at once, by reason */
    uint64_t tcp_accept_errors; /* accept(2) failures on listen_tcp (out of descriptors, ...) */
    uint64_t tcp_idle_closed;   /* ... closed after tcp_idle_timeout of silence */
    uint64_t positions_published;
    uint64_t ws_frames_sent;
    uint64_t accept_waiting_full; /* times console listeners paused: the acceptor's FIFO full */
    uint64_t accept_errors;       /* accept(2) failures (out of descriptors, memory) */
    uint64_t consoles_closed[GR_CLOSE_REASON_COUNT];
    uint64_t consoles_refused[GR_CONSOLE_REFUSAL_COUNT];
    uint64_t joins_refused[GR_JOIN_REFUSAL_COUNT];
    uint64_t ingest_not_allowed;     /* reports from outside ingest_allow */
    uint64_t ingest_rate_limited;    /* reports over ingest_rate_limit */
    uint64_t ingest_rate_evicted;    /* sources forgotten by the rate limiter to make room */
    uint64_t mapping_loads;          /* mappings put in force, from any source (daemon.c) */
    uint64_t mapping_load_failures;  /* mappings refused (a bad row, a conflict, a bad file) */
    uint64_t config_reload_failures; /* SIGHUPs whose configuration was refused */
    uint64_t mapping_rows_rejected;  /* PostgreSQL rows left out of (or changed in) a load */
    uint64_t postgres_failures;      /* connection attempts failed, connections lost */
    uint64_t postgres_timeouts;      /* ...of which: GR_PGCONN_QUERY_MS of silence */
    uint64_t postgres_notifications; /* gpsrelay_mapping notifications received */
    uint64_t positions_conflated;    /* positions replaced by a newer one of their unit before a
                                        console took them (counted per console) */
    uint64_t cluster_applied;        /* positions of the stream applied to the hub */
    uint64_t cluster_skipped[GR_CLUSTER_SKIP_COUNT];
    uint64_t cluster_publish_refused; /* fixes refused: the queue full, or stopping */
    uint64_t archive_written;         /* positions the archive's batches added to PostgreSQL */
    uint64_t archive_duplicates;      /* ...that were there already (a batch again, another node) */
    uint64_t archive_refused;         /* left out: PostgreSQL refused the row itself (archive.c) */
    uint64_t archive_expired;         /* not archived: older than archive_retention_days already */
    uint64_t archive_undated;  /* written into positions_default: their day had no partition */
    uint64_t archive_failures; /* archive connection attempts failed, connections lost */
    uint64_t archive_timeouts; /* ...of which: GR_PGCONN_QUERY_MS of silence */
    struct gr_histogram archive_batch;                  /* BEGIN to COMMIT's answer, per batch */
    uint64_t history_requests[GR_HISTORY_STATUS_COUNT]; /* /api/history and /api/snapshot */
    uint64_t phone_requests[GR_PHONE_STATUS_COUNT];     /* listen_http_ingest, by answer */
    uint64_t phone_incomplete; /* requests whose body never came whole: the phone went, or was
                                  slower than GR_PHONE_BODY_TIMEOUT_S */
    uint64_t phone_refused;    /* phone connections closed at once: their bounds (ws.h) */
    struct gr_histogram delivery_latency; /* report received to position written, per console */
    struct gr_histogram position_age;     /* fix time to position written, per console */
    struct gr_histogram loop_busy;        /* event loop: work between two polls */
};

extern struct gr_stats gr_stats;

/* Values owned by other modules, sampled when the metrics page is rendered. */
struct gr_gauges {
    uint64_t units_stale;
    uint64_t tcp_connections;
    uint64_t phone_connections;
    uint64_t ingest_socket_drops; /* a counter, read from the kernel (gr_ingest_socket_drops) */
    uint64_t consoles_connected;
    uint64_t consoles_accept_waiting; /* accepted, waiting for their turn (acceptor.h) */
    uint64_t channels_joined;
    uint64_t mapping_devices;
    uint64_t postgres_up; /* 1 while connected to PostgreSQL and listening */
    uint64_t cluster_up;  /* 1 while connected to NATS and receiving the stream */
    uint64_t cluster_lag; /* messages behind the stream's last */
    uint64_t cluster_queued;
    uint64_t cluster_published;
    uint64_t cluster_publish_failures;
    uint64_t archive_up; /* 1 while the archive is connected and writing */
    uint64_t archive_queued;
    uint64_t archive_spool_bytes;
    uint64_t archive_dropped; /* a counter: positions given up (archive.h) */
};

/*
 * Appends the Prometheus text exposition of every counter and of *g to a new
 * NUL-terminated string in *out (caller frees). Returns its length, or a negative errno
 * (-ENOMEM: the stream could not grow).
 */
long gr_stats_render(const struct gr_gauges *g, char **out);

#endif
