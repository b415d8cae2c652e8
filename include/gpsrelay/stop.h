/*
 * stop.h - how every edge module stops: one convention, for the acceptor, ingest, the
 * console server and the mapping sources.
 *
 * libuv closes a handle in a later callback, libwebsockets lets go over several loop turns,
 * and work on the thread pool finishes when it finishes: so stopping is asynchronous, and
 * the owner is told when it is over rather than guessing how many loop turns it takes.
 *
 *   gr_X_stop(x, done, arg) begins closing x and returns at once. From then on x delivers
 *   nothing to its owner (no mapping, no report, no connection) and calls back nothing but
 *   done; what it borrowed at start (the hub, the configuration, a gauges callback that
 *   /metrics still reads during the consoles' grace) must stay valid until done. done(arg)
 *   runs exactly once, later, from a loop callback (never inside gr_X_stop), when x holds
 *   no libuv handle, no libwebsockets object and no thread-pool work. x may be freed
 *   (gr_X_free) from inside done or after, never before. A second stop is a no-op: done is
 *   called once, for the first.
 *
 * A start that fails half-way leaves what it made to be stopped the same way: gr_X_start
 * says so where it can fail so.
 */
#ifndef GPSRELAY_STOP_H
#define GPSRELAY_STOP_H

/* Told that a stop has finished; arg is what the stop was given. */
typedef void (*gr_stopped_fn)(void *arg);

#endif
