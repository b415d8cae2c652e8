/*
 * ingest.h - hardware feeds: UDP listeners, framing, decoding, device identity.
 *
 * Every report goes socket -> gr_frame_next -> gr_report_split -> decoder -> identity ->
 * gr_hub_publish; every report that does not make it is counted by reason in gr_stats.
 */
#ifndef GPSRELAY_INGEST_H
#define GPSRELAY_INGEST_H

#include <stddef.h>
#include <sys/socket.h>

#include <uv.h>

#include "gpsrelay/config.h"
#include "gpsrelay/hub.h"

/* The largest UDP payload; one receive buffer of this size serves every listener. */
#define GR_DATAGRAM_MAX 65536

struct gr_ingest;

/*
 * Binds every cfg->listen_udp on loop. Returns 0 and the listeners in *out, or a
 * negative errno after logging which address failed; then *out is already closing:
 * run the loop out and gr_ingest_free() it as usual. hub is borrowed.
 */
int gr_ingest_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                    struct gr_ingest **out);

/* Stops receiving and closes the sockets; the loop finishes closing them. */
void gr_ingest_stop(struct gr_ingest *in);

/* Frees the listeners once the loop has run their close callbacks. */
void gr_ingest_free(struct gr_ingest *in);

/*
 * Handles one payload (a datagram, or a line of a stream) from a sender: frames it,
 * decodes every report, and publishes what is accepted. now_ms is the receive time.
 * Exposed so the decode-to-publish path can be driven without a socket.
 */
void gr_ingest_payload(struct gr_hub *hub, const char *p, size_t len, const struct sockaddr *from,
                       int64_t now_ms);

#endif
