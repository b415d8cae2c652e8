/*
 * pgconn.c - one PostgreSQL connection on the event loop. See pgconn.h.
 *
 * States: DOWN (no connection; the timer counts down the backoff), CONNECTING
 * (PQconnectPoll steps; the timer bounds the attempt), SETUP (connected; the session's
 * setup in flight), UP. While UP, `stmt` says what is in flight: nothing, the owner's
 * statement, the owner's COPY data, or our probe; the timer is the bound on silence while
 * something is in flight, else the wait before the probe. The `soon` timer (0 ms) carries
 * what must not run inside the call that caused it: `down` after a failure, and the results
 * libpq already holds when a paused owner resumes.
 */
#include "gpsrelay/pgconn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/log.h"

/* Keepalives notice a server that vanished without a FIN (power, network) in about 25 s
 * (10 s idle, then 3 probes 5 s apart; tcp_user_timeout bounds unacknowledged writes at
 * 20 s) rather than the kernel's two hours. Text comes and goes as UTF-8 whatever the
 * database's encoding (labels reach consoles in JSON; attrs are JSON): PostgreSQL converts.
 * The operator's conninfo overrides these. */
static const char *const conn_keywords[] = {
    "application_name",    "keepalives",       "keepalives_idle",
    "keepalives_interval", "keepalives_count", "tcp_user_timeout",
    "client_encoding",     "dbname",           NULL,
};
#define CONN_DEFAULTS "gpsrelayd", "1", "10", "5", "3", "20000", "UTF8"

#define PG_STR(x)         #x
#define PG_XSTR(x)        PG_STR(x)
#define STATEMENT_TIMEOUT "SET statement_timeout = " PG_XSTR(GR_PGCONN_STATEMENT_MS)

enum conn_state { C_DOWN, C_CONNECTING, C_SETUP, C_UP };
enum stmt { S_NONE, S_OWNER, S_COPY, S_PROBE };

static const char *const stmt_names[] = {"nothing", "statement", "COPY", "probe"};

/* A poll handle outlives its socket by a loop turn (uv_close is asynchronous), so each
 * socket gets its own, freed by its close callback. */
struct pg_poll {
    uv_poll_t handle;
    struct gr_pgconn *owner;
};

struct gr_pgconn {
    uv_loop_t *loop;              /* borrowed */
    struct gr_pgconn_options opt; /* conninfo points at our copy */
    char *setup;                  /* owned: statement_timeout and the owner's setup */

    enum conn_state state;
    enum stmt stmt;
    PGconn *conn;         /* owned (PQfinish), or NULL while DOWN */
    struct pg_poll *poll; /* owned; freed by its close callback (drop_poll) */
    bool paused;          /* the owner reads no results for now */
    bool flushing;        /* PQflush said some waits for the socket */
    bool want_drained;    /* copy_put said 1: the owner waits for `drained` */
    bool down_pending;    /* `down` to be said from `soon` */
    bool said_down;       /* a failure was logged as a warning; later ones go to info */
    unsigned backoff_ms;
    uint64_t up_since; /* uv_now() when it was last set up */
    uv_timer_t timer;  /* backoff, connect bound, silence bound or probe: see the top */
    uv_timer_t soon;

    bool stopping;
    int open_handles; /* the two timers, until their close callbacks ran */
    gr_stopped_fn stopped;
    void *stopped_arg;
};

static void on_poll(uv_poll_t *h, int status, int events);
static void on_timer(uv_timer_t *t);

/* ---- the socket ------------------------------------------------------------------------- */

static void free_poll(uv_handle_t *h)
{
    free(h->data);
}

static void drop_poll(struct gr_pgconn *c)
{
    if (c->poll != NULL) {
        uv_close((uv_handle_t *)&c->poll->handle, free_poll);
        c->poll = NULL;
    }
}

/* Watches the connection's socket for events (none: stops watching). While connecting,
 * the socket may differ from one step to the next (libpq tries address after address, and
 * may reuse the descriptor number), so then every step gets a new handle. Returns 0, or
 * -EBADF (libpq has no socket), -ENOMEM or libuv's error. */
static int watch(struct gr_pgconn *c, int events, bool new_handle)
{
    int fd = PQsocket(c->conn), rc;
    if (fd < 0)
        return -EBADF;
    if (new_handle)
        drop_poll(c);
    if (c->poll == NULL) {
        struct pg_poll *pp = calloc(1, sizeof(*pp));
        if (pp == NULL)
            return -ENOMEM;
        if ((rc = uv_poll_init(c->loop, &pp->handle, fd)) < 0) {
            free(pp);
            return rc;
        }
        pp->owner = c;
        pp->handle.data = pp;
        c->poll = pp;
    }
    if (events == 0)
        return uv_poll_stop(&c->poll->handle);
    return uv_poll_start(&c->poll->handle, events, on_poll);
}

static void close_conn(struct gr_pgconn *c)
{
    drop_poll(c); /* before PQfinish closes the descriptor the poll handle watches */
    if (c->conn != NULL) {
        PQfinish(c->conn);
        c->conn = NULL;
    }
    c->stmt = S_NONE;
    c->paused = c->flushing = c->want_drained = false;
}

/* ---- failing and connecting ------------------------------------------------------------- */

static void on_soon(uv_timer_t *t);

/* Drops the connection, says `down` from `soon`, and tries again after the backoff. */
static void fail(struct gr_pgconn *c, const char *what)
{
    bool was_up = c->state == C_UP;
    if (was_up && uv_now(c->loop) - c->up_since >= GR_PGCONN_STABLE_MS)
        c->backoff_ms = 0;
    if (c->backoff_ms == 0)
        c->backoff_ms = GR_PGCONN_BACKOFF_MIN_MS;
    /* One line of a libpq message: they end in newlines and may run to several lines. */
    int len = (int)strcspn(what, "\n");
    if (was_up || !c->said_down)
        gr_warn("%s: %.*s; retrying in %u ms", c->opt.name, len, what, c->backoff_ms);
    else
        gr_info("%s: %.*s; retrying in %u ms", c->opt.name, len, what, c->backoff_ms);
    c->said_down = true;
    if (c->opt.failures != NULL)
        (*c->opt.failures)++;
    close_conn(c);
    c->state = C_DOWN;
    uv_timer_start(&c->timer, on_timer, c->backoff_ms, 0);
    c->backoff_ms = c->backoff_ms >= GR_PGCONN_BACKOFF_MAX_MS / 2 ? GR_PGCONN_BACKOFF_MAX_MS
                                                                  : c->backoff_ms * 2;
    c->down_pending = true;
    uv_timer_start(&c->soon, on_soon, 0, 0);
}

/* Server notices and warnings ("terminating connection due to administrator command")
 * go to our log instead of libpq's default, stderr. */
static void on_notice(void *arg, const char *message)
{
    gr_info("%s: %.*s", (const char *)arg, (int)strcspn(message, "\n"), message);
}

static void connect_now(struct gr_pgconn *c)
{
    const char *values[] = {CONN_DEFAULTS, c->opt.conninfo, NULL};
    c->conn = PQconnectStartParams(conn_keywords, values, 1);
    if (c->conn == NULL) {
        fail(c, "out of memory");
        return;
    }
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        fail(c, PQerrorMessage(c->conn));
        return;
    }
    PQsetNoticeProcessor(c->conn, on_notice, (void *)c->opt.name);
    c->state = C_CONNECTING;
    uv_timer_start(&c->timer, on_timer, GR_PGCONN_CONNECT_MS, 0);
    /* libpq's documented start: as if PQconnectPoll had said PGRES_POLLING_WRITING. */
    if (watch(c, UV_WRITABLE, true) < 0)
        fail(c, "cannot watch the connection's socket");
}

/* ---- the connection's own bookkeeping --------------------------------------------------- */

/* The socket events wanted now: the answer unless paused, writable while some waits. */
static void rewatch(struct gr_pgconn *c)
{
    int events = (c->paused ? 0 : UV_READABLE) | (c->flushing ? UV_WRITABLE : 0);
    if (watch(c, events, false) < 0)
        fail(c, "cannot watch the connection's socket");
}

/* The silence allowed from now on (any byte from the server, or taken by it, restarts it):
 * a statement's bound while one is in flight, else the wait for the probe; none while
 * paused, when the silence is ours. */
static void arm_silence(struct gr_pgconn *c)
{
    if (c->paused)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(
            &c->timer, on_timer,
            c->state == C_SETUP || c->stmt != S_NONE ? GR_PGCONN_QUERY_MS : GR_PGCONN_PROBE_MS, 0);
}

/* Sends what libpq holds. Returns 0 (all sent), 1 (some waits for writable), or -EIO
 * after failing the connection. */
static int flush(struct gr_pgconn *c)
{
    int rc = PQflush(c->conn);
    if (rc < 0) {
        fail(c, PQerrorMessage(c->conn));
        return -EIO;
    }
    c->flushing = rc == 1;
    rewatch(c);
    return c->state == C_DOWN ? -EIO : rc;
}

static int send_simple(struct gr_pgconn *c, enum stmt s, const char *sql)
{
    if (!PQsendQuery(c->conn, sql)) {
        fail(c, PQerrorMessage(c->conn));
        return -EIO;
    }
    c->stmt = s;
    arm_silence(c);
    return flush(c) < 0 ? -EIO : 0;
}

static bool live(const struct gr_pgconn *c)
{
    return (c->state == C_SETUP || c->state == C_UP) && c->conn != NULL;
}

/* One result of the session's setup, NULL at its end. */
static void setup_result(struct gr_pgconn *c, PGresult *r)
{
    if (r != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK) {
            char what[512];
            snprintf(what, sizeof(what), "session setup failed: %s", PQresultErrorMessage(r));
            fail(c, what);
        }
        PQclear(r);
        return;
    }
    c->state = C_UP;
    c->stmt = S_NONE;
    c->up_since = uv_now(c->loop);
    if (c->said_down)
        gr_notice("%s: connected again", c->opt.name);
    c->said_down = false;
    arm_silence(c);
    c->opt.idle(c->opt.ctx);
}

/* Hands libpq's whole results to whom they belong, until one is not whole yet, the owner
 * pauses, a COPY begins, or nothing is in flight. Each callback may send, pause or fail. */
static void deliver(struct gr_pgconn *c)
{
    while (live(c) && !c->paused &&
           (c->state == C_SETUP || c->stmt == S_OWNER || c->stmt == S_PROBE) &&
           !PQisBusy(c->conn)) {
        PGresult *r = PQgetResult(c->conn);
        if (c->state == C_SETUP) {
            setup_result(c, r);
        } else if (c->stmt == S_PROBE) {
            if (r == NULL) {
                c->stmt = S_NONE;
                arm_silence(c);
                c->opt.idle(c->opt.ctx);
            } else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                char what[512];
                snprintf(what, sizeof(what), "probe failed: %s", PQresultErrorMessage(r));
                PQclear(r);
                fail(c, what);
            } else {
                PQclear(r);
            }
        } else if (r == NULL) {
            c->stmt = S_NONE;
            arm_silence(c);
            c->opt.result(c->opt.ctx, NULL);
        } else {
            if (PQresultStatus(r) == PGRES_COPY_IN)
                c->stmt = S_COPY; /* no result until the owner ends the copy */
            c->opt.result(c->opt.ctx, r);
        }
    }
}

/* ---- events ----------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t)
{
    struct gr_pgconn *c = t->data;
    if (c->state == C_DOWN) {
        connect_now(c);
    } else if (c->state == C_CONNECTING) {
        fail(c, "connection attempt timed out");
    } else if (c->state == C_SETUP || c->stmt != S_NONE) {
        char what[160];
        snprintf(what, sizeof(what), "no answer to the %s for %d ms: server hung or cut off",
                 c->state == C_SETUP ? "session setup" : stmt_names[c->stmt], GR_PGCONN_QUERY_MS);
        if (c->opt.timeouts != NULL)
            (*c->opt.timeouts)++;
        fail(c, what);
    } else {
        send_simple(c, S_PROBE, "SELECT 1");
    }
}

static void connected(struct gr_pgconn *c)
{
    if (PQsetnonblocking(c->conn, 1) != 0) {
        fail(c, PQerrorMessage(c->conn));
        return;
    }
    c->state = C_SETUP;
    gr_info("%s: connected to %s:%s, database %s", c->opt.name, PQhost(c->conn), PQport(c->conn),
            PQdb(c->conn));
    send_simple(c, S_NONE, c->setup);
}

static void on_connect_step(struct gr_pgconn *c)
{
    switch (PQconnectPoll(c->conn)) {
    case PGRES_POLLING_READING:
        if (watch(c, UV_READABLE, true) < 0)
            fail(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_WRITING:
        if (watch(c, UV_WRITABLE, true) < 0)
            fail(c, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_OK:
        connected(c);
        break;
    default:
        fail(c, PQerrorMessage(c->conn));
        break;
    }
}

static void on_live_events(struct gr_pgconn *c, int events)
{
    bool drained = false;
    if ((events & UV_WRITABLE) && c->flushing) {
        if (flush(c) < 0)
            return;
        drained = !c->flushing && c->want_drained;
        arm_silence(c); /* the server took bytes: it is alive */
    }
    if ((events & UV_READABLE) && !c->paused) {
        if (!PQconsumeInput(c->conn)) {
            fail(c, PQerrorMessage(c->conn));
            return;
        }
        arm_silence(c);
        PGnotify *n;
        while ((n = PQnotifies(c->conn)) != NULL) {
            if (c->opt.notified != NULL)
                c->opt.notified(c->opt.ctx, n);
            else
                PQfreemem(n);
        }
    }
    deliver(c);
    if (!live(c))
        return;
    if (PQstatus(c->conn) == CONNECTION_BAD) {
        fail(c, PQerrorMessage(c->conn));
        return;
    }
    if (drained && c->stmt == S_COPY) {
        c->want_drained = false;
        c->opt.drained(c->opt.ctx);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct pg_poll *pp = h->data;
    struct gr_pgconn *c = pp->owner;
    /* libuv reports a socket error (POLLERR: a refused connect, a reset) as UV_EBADF and
     * stops the handle; libpq reads the real error off the socket. */
    if (status < 0)
        events = UV_READABLE | (c->flushing ? UV_WRITABLE : 0);
    if (c->state == C_CONNECTING)
        on_connect_step(c);
    else if (live(c))
        on_live_events(c, events);
}

static void on_soon(uv_timer_t *t)
{
    struct gr_pgconn *c = t->data;
    if (c->down_pending) {
        c->down_pending = false;
        c->opt.down(c->opt.ctx);
    }
    if (live(c) && !c->paused)
        deliver(c); /* what libpq already held when the owner resumed */
}

/* ---- the owner's side ------------------------------------------------------------------- */

int gr_pgconn_start(uv_loop_t *loop, const struct gr_pgconn_options *opt, struct gr_pgconn **out)
{
    struct gr_pgconn *c = calloc(1, sizeof(*c));
    size_t setup_len =
        sizeof(STATEMENT_TIMEOUT) + (opt->setup_sql ? strlen(opt->setup_sql) + 2 : 0);
    if (c == NULL || (c->setup = malloc(setup_len)) == NULL ||
        (c->opt.conninfo = strdup(opt->conninfo)) == NULL) {
        if (c != NULL)
            free(c->setup);
        free(c);
        gr_error("%s: out of memory", opt->name);
        return -ENOMEM;
    }
    snprintf(c->setup, setup_len, "%s%s%s", STATEMENT_TIMEOUT, opt->setup_sql ? "; " : "",
             opt->setup_sql ? opt->setup_sql : "");
    const char *conninfo = c->opt.conninfo;
    c->opt = *opt;
    c->opt.conninfo = conninfo;
    c->loop = loop;
    uv_timer_init(loop, &c->timer);
    uv_timer_init(loop, &c->soon);
    c->timer.data = c->soon.data = c;
    c->open_handles = 2;
    *out = c;
    connect_now(c);
    return 0;
}

PGconn *gr_pgconn_conn(const struct gr_pgconn *c)
{
    return c->state == C_UP ? c->conn : NULL;
}

bool gr_pgconn_up(const struct gr_pgconn *c)
{
    return c != NULL && c->state == C_UP;
}

bool gr_pgconn_busy(const struct gr_pgconn *c)
{
    return c->state != C_UP || c->stmt != S_NONE;
}

int gr_pgconn_send(struct gr_pgconn *c, const char *sql, int n, const char *const *values)
{
    if (gr_pgconn_busy(c))
        return -EBUSY;
    if (n == 0)
        return send_simple(c, S_OWNER, sql);
    if (!PQsendQueryParams(c->conn, sql, n, NULL, values, NULL, NULL, 0)) {
        fail(c, PQerrorMessage(c->conn));
        return -EIO;
    }
    c->stmt = S_OWNER;
    arm_silence(c);
    return flush(c) < 0 ? -EIO : 0;
}

int gr_pgconn_copy_put(struct gr_pgconn *c, const char *data, size_t len)
{
    if (c->state != C_UP || c->stmt != S_COPY || c->flushing || len > INT32_MAX)
        return -EINVAL;
    /* libpq grows its buffer rather than refuse (0 only when that fails): the bound on
     * what waits in memory is the owner's, one piece at a time, put when drained. */
    if (PQputCopyData(c->conn, data, (int)len) != 1) {
        fail(c, PQerrorMessage(c->conn));
        return -EIO;
    }
    int rc = flush(c);
    if (rc == 1)
        c->want_drained = true;
    return rc;
}

int gr_pgconn_copy_end(struct gr_pgconn *c, const char *error)
{
    if (c->state != C_UP || c->stmt != S_COPY)
        return -EINVAL;
    if (PQputCopyEnd(c->conn, error) != 1) {
        fail(c, PQerrorMessage(c->conn));
        return -EIO;
    }
    c->stmt = S_OWNER;
    c->want_drained = false;
    arm_silence(c);
    return flush(c) < 0 ? -EIO : 0;
}

void gr_pgconn_pause(struct gr_pgconn *c, bool paused)
{
    if (!live(c) || c->paused == paused)
        return;
    c->paused = paused;
    rewatch(c);
    if (!live(c))
        return;
    arm_silence(c);
    if (!paused)
        uv_timer_start(&c->soon, on_soon, 0, 0);
}

void gr_pgconn_fail(struct gr_pgconn *c, const char *what)
{
    if (c->state != C_DOWN && !c->stopping)
        fail(c, what);
}

void gr_pgconn_retry_now(struct gr_pgconn *c)
{
    if (c->state == C_DOWN && !c->stopping) {
        uv_timer_stop(&c->timer);
        connect_now(c);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    struct gr_pgconn *c = h->data;
    if (--c->open_handles == 0 && c->stopped != NULL) {
        gr_stopped_fn done = c->stopped;
        c->stopped = NULL; /* once */
        done(c->stopped_arg);
    }
}

void gr_pgconn_stop(struct gr_pgconn *c, gr_stopped_fn done, void *arg)
{
    if (c->stopping)
        return;
    c->stopping = true;
    c->stopped = done;
    c->stopped_arg = arg;
    close_conn(c);
    c->state = C_DOWN;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->soon, on_timer_closed);
}

void gr_pgconn_free(struct gr_pgconn *c)
{
    if (c == NULL)
        return;
    free((char *)c->opt.conninfo);
    free(c->setup);
    free(c);
}

/* ---- `gpsrelayd -t` --------------------------------------------------------------------- */

/* Waits until libpq has a whole result, or GR_PGCONN_QUERY_MS pass without a byte from the
 * server (the daemon's bound on silence: a stopped server's kernel still accepts, so no
 * error would ever come). Returns 0, or -1 with the reason in err. */
static int wait_result(PGconn *c, const char *name, char *err, size_t errlen)
{
    while (PQisBusy(c)) {
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        int rc = poll(&pfd, 1, GR_PGCONN_QUERY_MS);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0) {
            snprintf(err, errlen, "%s: no answer for %d ms: server hung or cut off", name,
                     GR_PGCONN_QUERY_MS);
            return -1;
        }
        if (rc < 0 || !PQconsumeInput(c)) {
            const char *why = rc < 0 ? strerror(errno) : PQerrorMessage(c);
            snprintf(err, errlen, "%s: %.*s", name, (int)strcspn(why, "\n"), why);
            return -1;
        }
    }
    return 0;
}

PGresult *gr_pgconn_check(const char *conninfo, const char *name, const char *sql, char *err,
                          size_t errlen)
{
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%d", (GR_PGCONN_CHECK_CONNECT_MS + 999) / 1000);
    static const char *const keywords[] = {"application_name", "connect_timeout", "dbname", NULL};
    const char *values[] = {"gpsrelayd -t", timeout, conninfo, NULL};
    PGresult *last = NULL;
    PGconn *c = PQconnectdbParams(keywords, values, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        const char *why = c != NULL ? PQerrorMessage(c) : "out of memory";
        snprintf(err, errlen, "%s: %.*s", name, (int)strcspn(why, "\n"), why);
        goto out;
    }
    if (!PQsendQuery(c, STATEMENT_TIMEOUT))
        goto failed;
    if (wait_result(c, name, err, errlen) < 0)
        goto out;
    PGresult *r;
    while ((r = PQgetResult(c)) != NULL)
        PQclear(r);
    if (!PQsendQuery(c, sql))
        goto failed;
    /* One result per statement, or the first error, after which the server runs nothing
     * more: the last one says how it went. */
    for (;;) {
        if (wait_result(c, name, err, errlen) < 0)
            goto out;
        if ((r = PQgetResult(c)) == NULL)
            break;
        PQclear(last);
        last = r;
    }
    if (last != NULL && PQresultStatus(last) == PGRES_TUPLES_OK) {
        PQfinish(c);
        return last;
    }
    snprintf(err, errlen, "%s: %.*s", name,
             (int)strcspn(last ? PQresultErrorMessage(last) : "no rows", "\n"),
             last ? PQresultErrorMessage(last) : "no rows");
    goto out;
failed:
    snprintf(err, errlen, "%s: %.*s", name, (int)strcspn(PQerrorMessage(c), "\n"),
             PQerrorMessage(c));
out:
    PQclear(last);
    PQfinish(c);
    return NULL;
}
