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
 * Modem TCP ingest (listen_tcp) uses it too, for the other half of what it does: libuv's
 * own accept loop (uv_listen, 1.44) retries a failing accept(2) inside one callback until
 * it succeeds, and on EMFILE/ENFILE sheds every waiting connection silently with its spare
 * descriptor, so a lasting failure held the loop and nothing was counted. Here a failure
 * is counted, and every listener of the acceptor rests GR_ACCEPT_RETRY_MS.
 *
 * One per user (consoles, modems), for all of that user's listening addresses; what
 * differs between users is a struct gr_acceptor_config. Single-threaded, on one uv loop.
 */
#ifndef GPSRELAY_ACCEPTOR_H
#define GPSRELAY_ACCEPTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "gpsrelay/stop.h"

/* listen(2)'s backlog: the kernel caps it at net.core.somaxconn (4096 by default). A
 * 10,000-console storm measured with 4096 still overflowed it while the loop was busy
 * writing positions (bench/RESULTS.md); below GR_ACCEPT_BACKLOG_ADVISED the first listen
 * of the process logs a warning saying so, worded for consoles (theirs are the storms the
 * backlog is sized for; modems queue in the same backlog). */
#define GR_ACCEPT_BACKLOG         65535
#define GR_ACCEPT_BACKLOG_ADVISED 16384

/* Connections taken from the kernel per listener per loop turn, so a flood of them
 * cannot hold the loop away from positions. */
#define GR_ACCEPT_BATCH 1024

/* After accept(2) fails for want of descriptors or memory, the acceptor's listeners rest
 * this long rather than spin on a queue they cannot empty. */
#define GR_ACCEPT_RETRY_MS 100

/*
 * The top of RLIMIT_NOFILE that no accepted connection may take, for what the daemon holds
 * whatever its load: listeners (3 kinds x GR_LISTEN_MAX), the loop's epoll, signal, timer
 * and async descriptors, libuv's spare descriptor for EMFILE, PostgreSQL and its
 * reconnects, the notify socket, files being read. Consoles stop below it; modems hold at
 * most half of what it leaves (ingest.h).
 */
#define GR_FD_RESERVE 64

#define GR_ACCEPT_LISTENERS_MAX 16 /* listening addresses per acceptor (GR_LISTEN_MAX) */

struct gr_acceptor;

/*
 * Takes a new connection: fd is non-blocking, close-on-exec, TCP_NODELAY, and now the
 * callee's (to adopt or to close). listener_ctx is what gr_acceptor_listen() was given.
 */
typedef void (*gr_accept_fn)(void *ctx, void *listener_ctx, int fd);

/* What one user wants of its acceptor; gr_acceptor_new() copies it. */
struct gr_acceptor_config {
    const char *name;       /* begins its log lines ("ws", "ingest"); a string that stays */
    size_t per_turn;        /* connections handed on per loop turn, at least 1 */
    size_t max_waiting;     /* accepted connections waiting for their turn (a descriptor each),
                             * at least 1; past it the rest wait in the kernel's queue */
    bool dual_stack;        /* an IPv6 listener takes IPv4 too (IPV6_V6ONLY off), so [::] is
                             * every address; off, [::] and 0.0.0.0 can both be listened on */
    uint64_t *errors;       /* counts accept(2) failures (each a rest), or NULL */
    uint64_t *waiting_full; /* counts listeners pausing at a full FIFO, or NULL */
    /* Told of each accept(2) failure (err: its errno) once it is counted, to log it as the
     * user sees fit; NULL: the acceptor logs each one as "<name>: accept: ...". */
    void (*on_error)(void *ctx, int err);
};

/*
 * An acceptor on loop handing connections to fn(ctx, ...), in arrival order, at most
 * cfg->per_turn per loop turn, keeping at most cfg->max_waiting accepted connections
 * before it leaves the rest in the kernel's queue. cfg is copied; on_error gets ctx too.
 * NULL if out of memory or per_turn or max_waiting is 0.
 */
struct gr_acceptor *gr_acceptor_new(uv_loop_t *loop, const struct gr_acceptor_config *cfg,
                                    gr_accept_fn fn, void *ctx);

/*
 * Listens on sa (an IPv6 address IPv6-only unless the config is dual_stack; SO_REUSEADDR;
 * backlog GR_ACCEPT_BACKLOG) and starts accepting. Returns the bound port (sa's, or the
 * kernel's pick for port 0), or a negative errno.
 */
int gr_acceptor_listen(struct gr_acceptor *a, const struct sockaddr *sa, void *listener_ctx);

/* Accepted connections waiting for their turn (a gauge). */
size_t gr_acceptor_waiting(const struct gr_acceptor *a);

/* Stops listening and closes the connections still waiting at once; fn and on_error are
 * not called again. done(arg) once its handles have closed (stop.h). */
void gr_acceptor_stop(struct gr_acceptor *a, gr_stopped_fn done, void *arg);

/* Frees the acceptor once its stop's done has been called (from inside done is fine).
 * NULL is fine. */
void gr_acceptor_free(struct gr_acceptor *a);

#endif
