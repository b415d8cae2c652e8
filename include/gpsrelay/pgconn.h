/*
 * pgconn.h - one PostgreSQL connection driven by the event loop, for every part of the
 * daemon that talks to PostgreSQL: the mapping (pgmap.c), the archive's writer and the
 * history queries.
 *
 * libpq's asynchronous API from a uv_poll_t on PQsocket(): the connection is non-blocking,
 * every read is PQconsumeInput after the poll said readable, every write is PQflush,
 * re-armed for writable while it returns 1. Connection strings need no name lookup
 * (config.c refuses those), so PQconnectStart does not block either.
 *
 * What the connection does on its own, so that its owner only sends statements and reads
 * results:
 *   - connects, with keepalives that notice a vanished server in about 25 s (the operator's
 *     conninfo overrides them) and a bound on the whole attempt (GR_PGCONN_CONNECT_MS);
 *   - sets up the session: statement_timeout = GR_PGCONN_STATEMENT_MS, then the owner's
 *     own setup statement if it has one, before saying `idle`;
 *   - bounds silence: a statement in flight that gets no byte of its answer for
 *     GR_PGCONN_QUERY_MS fails the connection (a SIGSTOPped server's kernel still accepts
 *     and ACKs, so no error would ever come); an idle connection is probed with `SELECT 1`
 *     after GR_PGCONN_PROBE_MS without a byte from the server, under the same bound;
 *   - on any failure (its own or the owner's gr_pgconn_fail), logs one line, closes, tells
 *     the owner `down`, and connects again after a capped exponential backoff.
 *
 * One statement (or one multi-statement simple query) in flight at a time. All calls and
 * callbacks are on the loop's thread.
 */
#ifndef GPSRELAY_PGCONN_H
#define GPSRELAY_PGCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "gpsrelay/stop.h"

#define GR_PGCONN_CONNECT_MS     10000 /* a connection attempt that takes longer fails */
#define GR_PGCONN_BACKOFF_MIN_MS 250   /* first retry after a failure; doubles per failure */
#define GR_PGCONN_BACKOFF_MAX_MS 30000 /* ...up to this */
/* The backoff starts again from its minimum only after a connection that stayed up this
 * long: one that the owner's own statement fails every time (a schema missing, a row the
 * server refuses) is retried less and less often, not twice a second for ever. */
#define GR_PGCONN_STABLE_MS 10000
#define GR_PGCONN_QUERY_MS  10000 /* silence allowed while a statement is in flight */
#define GR_PGCONN_PROBE_MS  15000 /* silence on an idle connection before `SELECT 1` */
/* The session's statement_timeout: the server cancels a statement of ours that runs this
 * long, freeing its backend from a statement we gave up on (a backend waiting on a lock
 * does not notice that we closed). */
#define GR_PGCONN_STATEMENT_MS 60000
/* `gpsrelayd -t` waits this long to connect (unless the conninfo sets connect_timeout). */
#define GR_PGCONN_CHECK_CONNECT_MS 5000

struct gr_pgconn;

struct gr_pgconn_options {
    const char *conninfo; /* libpq connection string; copied */
    const char *name;     /* log prefix: "postgres", "archive", "history"; borrowed */
    /* Sent (simple protocol) after statement_timeout, before `idle`; NULL: none.
     * Borrowed: a string literal. */
    const char *setup_sql;

    /* Up and idle: a statement may be sent. Called when the connection has been made and
     * set up, and again whenever a `SELECT 1` probe of the connection's own has ended (an
     * owner that found it busy then sends what it waited to send). */
    void (*idle)(void *ctx);
    /* One result of the owner's statement in flight; the owner PQclears it. NULL when the
     * statement has ended (libpq's PQgetResult said NULL): another may be sent, from here. */
    void (*result)(void *ctx, PGresult *r);
    /* The connection failed or was lost (already logged); a statement in flight is lost
     * with it. A new attempt follows after the backoff; `idle` again when it succeeds. */
    void (*down)(void *ctx);
    /* COPY data that gr_pgconn_copy_put could not take can be put now. */
    void (*drained)(void *ctx);
    /* A NOTIFY arrived; the owner PQfreemems it. NULL: not wanted. */
    void (*notified)(void *ctx, PGnotify *n);
    void *ctx;

    /* Counted on every failure, and on the failures that were a silence timeout; NULL:
     * not counted. Borrowed (gr_stats members). */
    uint64_t *failures, *timeouts;
};

/* Starts connecting at once. Returns 0, or -ENOMEM (logged). */
int gr_pgconn_start(uv_loop_t *loop, const struct gr_pgconn_options *opt, struct gr_pgconn **out);

/* The connection, while up (from the first `idle` to `down`); else NULL. For
 * PQsetSingleRowMode, PQescape*, PQserverVersion: not for sending, reading or COPY, which
 * go through the calls below. */
PGconn *gr_pgconn_conn(const struct gr_pgconn *c);

/* Whether open and set up, and whether a statement is in flight. */
bool gr_pgconn_up(const struct gr_pgconn *c);
bool gr_pgconn_busy(const struct gr_pgconn *c);

/*
 * Sends a statement: sql with n text parameters (n 0: the simple protocol, which may hold
 * several statements). Only while up and not busy. Returns 0, or -EIO after failing the
 * connection (logged, `down` follows from a later callback, never from inside this call).
 */
int gr_pgconn_send(struct gr_pgconn *c, const char *sql, int n, const char *const *values);

/*
 * COPY ... FROM STDIN: after the statement's PGRES_COPY_IN result (which ends the results
 * until the copy ends), the data in pieces, then the end. copy_put returns 0 when len
 * bytes were taken, 1 when libpq's buffer is full (nothing taken: `drained` follows; put
 * them again then), or -EIO as gr_pgconn_send. copy_end (error NULL: commit the rows;
 * else abort the COPY with that message) returns 0 or -EIO; the statement's results then
 * follow as for any other. A server that takes no byte for GR_PGCONN_QUERY_MS fails the
 * connection, as silence does.
 */
int gr_pgconn_copy_put(struct gr_pgconn *c, const char *data, size_t len);
int gr_pgconn_copy_end(struct gr_pgconn *c, const char *error);

/* Stops (true) or resumes (false) reading the statement's answer: for an owner whose own
 * reader is slow (a history answer to a slow client), so rows wait in the server's socket
 * and not in memory. The silence bound is off while paused. */
void gr_pgconn_pause(struct gr_pgconn *c, bool paused);

/* Fails the connection from the owner's side (a result it cannot use): logged with what,
 * closed, `down` from a later callback, then a new attempt after the backoff. */
void gr_pgconn_fail(struct gr_pgconn *c, const char *what);

/* While down, tries again now instead of at the end of the backoff (SIGHUP). */
void gr_pgconn_retry_now(struct gr_pgconn *c);

/* Closes the connection and its handles; done(arg) as stop.h says. No callback but done
 * after this. */
void gr_pgconn_stop(struct gr_pgconn *c, gr_stopped_fn done, void *arg);
void gr_pgconn_free(struct gr_pgconn *c);

/*
 * `gpsrelayd -t` only, never on the loop: blocks. Connects (GR_PGCONN_CHECK_CONNECT_MS)
 * and runs sql (the simple protocol) under the daemon's statement_timeout, each wait
 * bounded by GR_PGCONN_QUERY_MS of silence. Returns the last statement's result when it is
 * rows (the caller PQclears it), or NULL with "name: why" in err.
 */
PGresult *gr_pgconn_check(const char *conninfo, const char *name, const char *sql, char *err,
                          size_t errlen);

#endif
