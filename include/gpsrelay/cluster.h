/*
 * cluster.h - this daemon as one node of a cluster that shares one position stream
 * (docs/cluster.md): with cluster_nats set, fixes accepted here are stored in a NATS
 * JetStream stream, and every node, this one included, applies positions to its hub only
 * as the stream delivers them, numbered by the stream's sequence under the stream's epoch.
 *
 * The NATS side lives in a loadable module linked with libnats (src/cluster/link.h),
 * loaded by gr_cluster_start: a daemon without cluster_nats loads none of it. The loop
 * never waits on NATS.
 */
#ifndef GPSRELAY_CLUSTER_H
#define GPSRELAY_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "gpsrelay/config.h"
#include "gpsrelay/hub.h"
#include "gpsrelay/stop.h"

struct gr_cluster;

/* Messages the stream delivered and the loop has not applied yet; past it libnats' thread
 * waits (and past libnats' own bound the ordered consumer refetches what it dropped). */
#define GR_CLUSTER_INBOX_MAX 65536

/* A node is "behind" (/readyz 503) when the last position it applied was stored this long
 * ago while more wait in the stream. */
#define GR_CLUSTER_BEHIND_MS 1000

/* Called on the loop when the node's readiness may have changed (gr_cluster_not_ready). */
typedef void (*gr_cluster_changed_fn)(void *arg);

/*
 * Loads the NATS module and starts connecting (in the background: a NATS that is down is
 * waited for, not an error). From now on the hub's accepted fixes go to the stream
 * (gr_hub_set_relay) and the stream's positions into the hub. Returns 0, or a negative
 * errno (logged): the module cannot be loaded, out of memory.
 */
int gr_cluster_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                     gr_cluster_changed_fn changed, void *arg, struct gr_cluster **out);

/* NULL while the node may serve new consoles; else why not, for /readyz ("cluster: no
 * NATS connection", "cluster: catching up", "cluster: behind the stream"). */
const char *gr_cluster_not_ready(const struct gr_cluster *c);

/* The gauges of /metrics and the summary line. */
struct gr_cluster_gauges {
    bool up;         /* connected to NATS and receiving the stream */
    uint64_t lag;    /* messages behind the stream's last */
    uint64_t queued; /* accepted fixes not yet stored */
    uint64_t published, publish_failures;
};
void gr_cluster_gauges(const struct gr_cluster *c, struct gr_cluster_gauges *g);

/* stop.h: stops the NATS side on the thread pool (it joins threads). */
void gr_cluster_stop(struct gr_cluster *c, gr_stopped_fn done, void *arg);
void gr_cluster_free(struct gr_cluster *c);

/* gpsrelayd -t: the servers answer and the stream is usable or can be made. Blocking.
 * Returns 0, or a negative errno with err set. */
int gr_cluster_check(const struct gr_config *cfg, char *err, size_t errlen);

#endif
