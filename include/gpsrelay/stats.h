/*
 * stats.h - the daemon's counters, and their Prometheus rendering (SPEC section 8).
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
    X(PEER, "peer")           /* the console closed or the connection dropped */                   \
    X(MALFORMED, "malformed") /* a frame that is not a Phoenix v2 message (1007) */                \
    X(TOO_BIG, "too_big")     /* a frame over GR_WS_FRAME_MAX (1009) */                            \
    X(OVERFLOW, "overflow")   /* replies piled up past GR_CONSOLE_CONTROL_MAX (1008) */            \
    X(SLOW, "slow")           /* took nothing for slow_timeout while positions waited (1008) */    \
    X(IDLE, "idle")           /* sent nothing, heartbeats included, for idle_timeout (1001) */     \
    X(SHUTDOWN, "shutdown")   /* the daemon stopped (1001) */

enum gr_close_reason {
#define GR_CLOSE_ENUM(name, label) GR_CLOSE_##name,
    GR_CLOSE_REASONS(GR_CLOSE_ENUM)
#undef GR_CLOSE_ENUM
        GR_CLOSE_REASON_COUNT
};

struct gr_stats {
    uint64_t ingest_datagrams; /* UDP datagrams received */
    uint64_t ingest_reports;   /* report lines seen */
    uint64_t ingest_rejected[GR_REASON_COUNT];
    uint64_t ingest_no_checksum;      /* NMEA/TAIP sentences accepted without *hh */
    uint64_t ingest_spliced;          /* broken sentences cut off by a newer one on a line */
    uint64_t ingest_identity_evicted; /* remembered sender ids forgotten to make room */
    uint64_t tcp_accepted;            /* modem TCP connections accepted */
    uint64_t tcp_refused;             /* ... refused at GR_TCP_CONN_MAX */
    uint64_t tcp_idle_closed;         /* ... closed after tcp_idle_timeout of silence */
    uint64_t positions_published;
    uint64_t ws_frames_sent;
    uint64_t consoles_closed[GR_CLOSE_REASON_COUNT];
};

extern struct gr_stats gr_stats;

/* Values owned by other modules, sampled when the metrics page is rendered. */
struct gr_gauges {
    uint64_t units_stale;
    uint64_t tcp_connections;
    uint64_t consoles_connected;
    uint64_t channels_joined;
    uint64_t mapping_devices;
};

/*
 * Appends the Prometheus text exposition of every counter and of *g to a new
 * NUL-terminated string in *out (caller frees). Returns its length, or -1 on ENOMEM.
 */
long gr_stats_render(const struct gr_gauges *g, char **out);

#endif
