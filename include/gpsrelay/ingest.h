/*
 * ingest.h - hardware feeds: UDP and TCP listeners, framing, decoding, device identity.
 *
 * Every report goes socket -> gr_frame_next -> gr_report_split -> its format's decoder
 * (format.h) -> identity -> assembler -> gr_hub_publish; every report that does not make
 * it is counted by reason in gr_stats. Each listener (src/ingest/udp.c, tcp.c) hands what
 * it received to the one pipeline (src/ingest/pipeline.h).
 *
 * Fairness: libuv makes at most 32 reads of a socket per wake-up before it serves other
 * handles (for UDP, 32 recvmmsg calls of up to 20 datagrams each; for a TCP connection,
 * 32 reads of at most GR_DATAGRAM_MAX bytes), so no sender holds the loop for long.
 */
#ifndef GPSRELAY_INGEST_H
#define GPSRELAY_INGEST_H

#include <stddef.h>

#include <uv.h>

#include "gpsrelay/config.h"
#include "gpsrelay/hub.h"
#include "gpsrelay/stop.h"

#define GR_DATAGRAM_MAX 65536 /* the largest UDP payload; also the TCP read size */
#define GR_TCP_CONN_MAX 10000 /* modem TCP connections at once; more are refused, counted */
#define GR_BATCH_UNITS  64    /* units with fixes in flight within one payload */

/*
 * Modem TCP connections (listen_tcp) are accepted by a gr_acceptor (acceptor.h): after
 * accept(2) fails (out of descriptors or memory) every listener rests GR_ACCEPT_RETRY_MS
 * and the connections wait in the kernel's queue (gr_stats.tcp_accept_errors). Each new
 * connection is checked against tcp_max_per_source, GR_TCP_CONN_MAX, and the modems'
 * share of descriptors: half of what RLIMIT_NOFILE leaves after GR_FD_RESERVE (read at
 * start, after main() raised the soft limit to the hard one), so however many modems
 * connect, consoles, /healthz and /metrics keep the other half (with systemd's default hard
 * limit of 524,288 GR_TCP_CONN_MAX binds first; with 1,024 the share is 480). One over any
 * of them is closed at once and counted by reason (gr_stats.tcp_refused). A limit lowered
 * by a reload leaves open connections open.
 */

/*
 * Phones (listen_http_ingest, src/ingest/phones.c): one OsmAnd report per HTTP request,
 * GET or POST on any path (a proxy in front may add a prefix), parameters in the query
 * string, a form body or Traccar Client 9's JSON (osmand.h). The request goes through the
 * same ingest_allow, ingest_rate_limit, identity (its id), acceptance and counters as a
 * modem's line; the answer is its verdict (gr_phone_status in stats.h): 200 taken (also
 * a duplicate or an older position, counted: a phone re-sends what it buffered in a dead
 * zone and would send it for ever if refused), 400, 403, 404, 429. Bounds (lws adds its
 * own: 5 s of silence within a request, GR_PHONE_KEEPALIVE_S between two):
 */
#define GR_PHONE_BODY_MAX       (64 * 1024) /* larger: 413 from its Content-Length, unread */
#define GR_PHONE_BODIES_MAX     (16 << 20)  /* bodies being read at once; beyond: 503 */
#define GR_PHONE_BODY_TIMEOUT_S 10          /* for the whole body once the headers are in */
#define GR_PHONE_QUERY_MAX      8192        /* a query string: a report is ~200 bytes */
#define GR_PHONE_KEEPALIVE_S    60          /* an idle keep-alive connection is closed after */
#define GR_PHONE_CONN_MAX       10000       /* connections at once (and a quarter of the fds) */

struct gr_ingest;
struct lws_protocols;

/*
 * Binds every listen_udp and listen_tcp of cfg on loop. Returns 0 and the listeners in
 * *out, or a negative errno after logging which address failed (-ENOMEM: out of memory);
 * then *out holds what was started (NULL only when nothing was): stop and free it as a
 * started one (stop.h). hub is borrowed.
 */
int gr_ingest_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                    struct gr_ingest **out);

/* Stops receiving: closes listeners and modem connections (over a few loop turns, at most
 * a batch a turn); done(arg) once every handle and connection is closed (stop.h). */
void gr_ingest_stop(struct gr_ingest *in, gr_stopped_fn done, void *arg);

/* A reloaded configuration: ingest_allow, ingest_rate_limit, tcp_idle_timeout and
 * tcp_max_per_source take effect at once; listeners stay as they are. cfg is borrowed
 * from now on. */
void gr_ingest_set_config(struct gr_ingest *in, const struct gr_config *cfg);

/* Frees everything once the stop's done has been called (from inside done is fine). NULL
 * is fine. */
void gr_ingest_free(struct gr_ingest *in);

/* What serves phones' requests: the console server (ws.h), which owns libwebsockets, puts
 * it on every listen_http_ingest listener with the gr_ingest as the vhost's user data. A
 * phone's request while ingest stops is answered 503. */
const struct lws_protocols *gr_ingest_phone_protocols(void);

/* Phones' connections open now (the console server's bound on them: ws.h). */
const size_t *gr_ingest_phone_connections(const struct gr_ingest *in);

/* Modem TCP connections holding a descriptor: open, or waiting for their turn to close. */
size_t gr_ingest_tcp_connections(const struct gr_ingest *in);

/* Datagrams the kernel dropped because a UDP socket's receive buffer was full (the loop
 * fell behind): read from the sockets themselves (SO_MEMINFO), so they are counted too. */
uint64_t gr_ingest_socket_drops(const struct gr_ingest *in);

#endif
