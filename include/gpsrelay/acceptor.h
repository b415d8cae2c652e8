/*
 * acceptor.h - TCP listeners that take connections off the kernel's queue as soon as they
 * arrive, and hand them on at a bounded pace.
 *
 * Why: when a site's network blips, thousands of consoles reconnect in the same second.
 * With lws 4.1's own accept loop two things went wrong (bench/RESULTS.md): the kernel's
 * accept queue (the listen backlog, at most net.core.somaxconn) overflowed while the loop
 * was busy, and every connection dropped there cost its console a SYN retransmit (1 s,
 * then 3 s); and lws keeps each connection awaiting its HTTP request in one time-sorted
 * list, so thousands adopted at once cost time quadratic in their number. The acceptor
 * empties the kernel's queue into a FIFO of its own (a descriptor each, bounded) and hands
 * on at most per_turn connections per loop turn. The pace is set by turns, not by
 * handshakes finishing, so connections that never send a request (slowloris) cannot hold
 * the door shut for the rest.
 *
 * One per server, for all its listening addresses; single-threaded, on one uv loop.
 */
#ifndef GPSRELAY_ACCEPTOR_H
#define GPSRELAY_ACCEPTOR_H

#include <stddef.h>
#include <sys/socket.h>

#include <uv.h>

/* listen(2)'s backlog: the kernel caps it at net.core.somaxconn (4096 by default). A
 * 10,000-console storm measured with 4096 still overflowed it while the loop was busy
 * writing positions (bench/RESULTS.md); below GR_ACCEPT_BACKLOG_ADVISED the first listen
 * logs a warning saying so. */
#define GR_ACCEPT_BACKLOG         65535
#define GR_ACCEPT_BACKLOG_ADVISED 16384

/* Connections taken from the kernel per listener per loop turn, so a flood of them
 * cannot hold the loop away from positions. */
#define GR_ACCEPT_BATCH 1024

/* After accept(2) fails for want of descriptors or memory, the listener rests this long
 * rather than spin on a queue it cannot empty. */
#define GR_ACCEPT_RETRY_MS 100

#define GR_ACCEPT_LISTENERS_MAX 16 /* listening addresses per acceptor (GR_LISTEN_MAX) */

struct gr_acceptor;

/*
 * Takes a new connection: fd is non-blocking, close-on-exec, TCP_NODELAY, and now the
 * callee's (to adopt or to close). listener_ctx is what gr_acceptor_listen() was given.
 */
typedef void (*gr_accept_fn)(void *ctx, void *listener_ctx, int fd);

/*
 * An acceptor on loop handing connections to fn(ctx, ...), in arrival order, at most
 * per_turn per loop turn, keeping at most max_waiting accepted connections (each holds a
 * descriptor) before it leaves the rest in the kernel's queue. NULL if out of memory.
 */
struct gr_acceptor *gr_acceptor_new(uv_loop_t *loop, size_t per_turn, size_t max_waiting,
                                    gr_accept_fn fn, void *ctx);

/*
 * Listens on sa (IPv6 addresses with IPV6_V6ONLY, so [::] and 0.0.0.0 can both be
 * listened on) and starts accepting. Returns the bound port (sa's, or the kernel's pick
 * for port 0), or a negative errno.
 */
int gr_acceptor_listen(struct gr_acceptor *a, const struct sockaddr *sa, void *listener_ctx);

/* Accepted connections waiting for their turn (a gauge). The counters are
 * gr_stats.accept_waiting_full and gr_stats.accept_errors. */
size_t gr_acceptor_waiting(const struct gr_acceptor *a);

/* Stops listening and closes the connections still waiting. The handles close during
 * the next loop turn: call gr_acceptor_free() after that. */
void gr_acceptor_close(struct gr_acceptor *a);

void gr_acceptor_free(struct gr_acceptor *a);

#endif
