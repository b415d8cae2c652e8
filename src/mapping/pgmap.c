/*
 * pgmap.c - the mapping from PostgreSQL on the event loop. See pgmap.h.
 *
 * States: IDLE (no connection; the timer counts down the backoff), CONNECTING
 * (PQconnectPoll steps; the timer is the connect timeout), OPEN (connected; `query` says
 * which statement is in flight, if any; the timer is GR_PGMAP_QUERY_MS of silence while one
 * is, else GR_PGMAP_PROBE_MS until the liveness probe). libpq never blocks here: the connection is
 * non-blocking, every read is PQconsumeInput after the poll said readable, every write is
 * PQflush, re-armed for writable while it returns 1. Connection strings need no name
 * lookup (config.c refuses those), so PQconnectStart does not block either.
 */
#include "gpsrelay/pgmap.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "gpsrelay/log.h"
#include "gpsrelay/stats.h"
#include "source.h"

/* Keepalives notice a server that vanished without a FIN (power, network) in about 25 s
 * (10 s idle, then 3 probes 5 s apart; tcp_user_timeout bounds unacknowledged writes at
 * 20 s) rather than the kernel's two hours. The operator's conninfo overrides these. */
static const char *const conn_keywords[] = {
    "application_name", "keepalives",       "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "dbname",          NULL,
};
#define CONN_DEFAULTS "gpsrelayd", "1", "10", "5", "3", "20000"

enum pg_state { PG_IDLE, PG_CONNECTING, PG_OPEN };
enum pg_query { Q_NONE, Q_LISTEN, Q_LOAD, Q_PROBE };

static const char *const query_names[] = {"no query", "LISTEN", "mapping query", "probe"};

/* Our session: the server's own bound on our statements, then changes notified from the
 * commit of this query on. One message (the simple protocol runs both), one round trip. */
#define PG_STR(x)  #x
#define PG_XSTR(x) PG_STR(x)
#define SESSION_SETUP                                                                              \
    "SET statement_timeout = " PG_XSTR(GR_PGMAP_STATEMENT_MS) "; LISTEN gpsrelay_mapping"

/* A poll handle outlives its socket by a loop turn (uv_close is asynchronous), so each
 * socket gets its own, freed by its close callback. */
struct pg_poll {
    uv_poll_t handle;
    struct gr_pgmap *owner;
};

/* Rows a load left out: all counted, the first GR_PGMAP_REJECTS_LOGGED kept for the log. */
struct pg_rejects {
    size_t n;
    char why[GR_PGMAP_REJECTS_LOGGED][512];
};

/* One load on the thread pool: rows in, mapping out. */
struct pg_build {
    uv_work_t work;
    struct gr_pgmap *owner; /* borrowed: waits for the build before it frees itself */
    PGresult *rows;         /* owned until build_work clears it */
    char *cache_path;       /* owned copy, or NULL */
    struct gr_mapping *m;   /* owned until handed to loaded() */
    int64_t started_ms;
    char err[512];
    char cache_err[512];
    struct pg_rejects rejects;
};

struct gr_pgmap {
    uv_loop_t *loop;  /* borrowed */
    char *conninfo;   /* owned copy */
    char *cache_path; /* owned copy, or NULL */
    void (*loaded)(void *ctx, struct gr_mapping *m);
    void (*failed)(void *ctx);
    void *ctx;

    enum pg_state state;
    PGconn *conn;         /* owned (PQfinish), or NULL while IDLE */
    struct pg_poll *poll; /* owned; freed by its close callback (drop_poll) */
    enum pg_query query;
    PGresult *rows; /* owned: the load's result, until the query ends */
    int64_t load_started_ms;
    struct pg_build *build; /* on the thread pool, or NULL; on_build_done frees it */
    bool load_wanted;       /* a notification or SIGHUP came since the last load began */
    bool up;
    bool said_down; /* a failure was logged as a warning; later ones go to info */
    unsigned backoff_ms;
    uv_timer_t timer;    /* backoff, connect timeout, query timeout or probe: see the top */
    uv_timer_t coalesce; /* GR_PGMAP_COALESCE_MS after a notification */
    bool stopping;
    int open_handles;      /* the two timers, until their close callbacks ran */
    gr_stopped_fn stopped; /* told once both timers are closed and no build is out */
    void *stopped_arg;
};

static void maybe_stopped(struct gr_pgmap *p);

static void on_poll(uv_poll_t *h, int status, int events);
static void on_coalesced(uv_timer_t *t);
static void fail(struct gr_pgmap *p, const char *what);

/* ---- building a mapping from rows ------------------------------------------------------- */

/*
 * The mapping in r, a result of GR_PGMAP_QUERY, with the checks of a CSV row for each row.
 * One bad row does not refuse the whole mapping (that would freeze every later change and
 * keep a start without cache from ever becoming ready): a row the checks refuse or that
 * conflicts with another is left out, and devices sharing a source_addr all lose it
 * (gr_mapping_builder_finish_skipping); each is reported to rejected(ctx, why), why
 * borrowed for the call. Returns the mapping, or NULL with the reason in err (the result's
 * shape, out of memory). Safe on any thread; rejected runs on the caller's.
 */
static struct gr_mapping *build_mapping(const PGresult *r,
                                        void (*rejected)(void *ctx, const char *why), void *ctx,
                                        char *err, size_t errlen)
{
    if (PQnfields(r) != 4) {
        snprintf(err, errlen, "expected 4 columns, got %d", PQnfields(r));
        return NULL;
    }
    struct gr_mapping_builder *b = gr_mapping_builder_new();
    if (b == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        char why[384];
        const char *addr = PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3);
        if (gr_mapping_builder_add(b, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                                   addr, why, sizeof(why)) < 0) {
            /* The builder is as it was: the row is left out, the rest goes on. */
            char line[640];
            snprintf(line, sizeof(line), "device \"%.64s\", agency \"%.64s\": %s; row left out",
                     PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), why);
            rejected(ctx, line);
        }
    }
    return gr_mapping_builder_finish_skipping(b, rejected, ctx, err, errlen);
}

static void add_reject(void *ctx, const char *why)
{
    struct pg_rejects *rj = ctx;
    /* A long reason is cut to fit (a row's line is at most 640 bytes; a log line 1024). */
    if (rj->n < GR_PGMAP_REJECTS_LOGGED)
        snprintf(rj->why[rj->n], sizeof(rj->why[rj->n]), "%.*s", (int)sizeof(rj->why[0]) - 1, why);
    rj->n++;
}

/* Warns about the rows a load left out: the first few, then how many in all. */
static void log_rejects(const struct pg_rejects *rj)
{
    for (size_t i = 0; i < rj->n && i < GR_PGMAP_REJECTS_LOGGED; i++)
        gr_warn("postgres: mapping row: %s", rj->why[i]);
    if (rj->n > GR_PGMAP_REJECTS_LOGGED)
        gr_warn("postgres: %zu more mapping rows left out or changed",
                rj->n - GR_PGMAP_REJECTS_LOGGED);
}

static void build_work(uv_work_t *w)
{
    struct pg_build *job = w->data;
    job->m = build_mapping(job->rows, add_reject, &job->rejects, job->err, sizeof(job->err));
    PQclear(job->rows);
    job->rows = NULL;
    /* The cache is written here, off the loop: it is an fsync'd file of every row. */
    if (job->m != NULL && job->cache_path != NULL &&
        gr_mapping_save_csv(job->m, job->cache_path, job->cache_err, sizeof(job->cache_err)) == 0)
        job->cache_err[0] = '\0';
}

/* ---- connection plumbing ---------------------------------------------------------------- */

static void free_poll(uv_handle_t *h)
{
    free(h->data);
}

static void drop_poll(struct gr_pgmap *p)
{
    if (p->poll != NULL) {
        uv_close((uv_handle_t *)&p->poll->handle, free_poll);
        p->poll = NULL;
    }
}

/* Watches the connection's socket for events. While connecting, the socket may differ from
 * one step to the next (libpq tries address after address, and may reuse the descriptor
 * number), so then every step gets a new handle. Returns 0, or -EBADF (libpq has no socket),
 * -ENOMEM or libuv's error. */
static int watch(struct gr_pgmap *p, int events, bool new_handle)
{
    int fd = PQsocket(p->conn), rc;
    if (fd < 0)
        return -EBADF;
    if (new_handle)
        drop_poll(p);
    if (p->poll == NULL) {
        struct pg_poll *pp = calloc(1, sizeof(*pp));
        if (pp == NULL)
            return -ENOMEM;
        if ((rc = uv_poll_init(p->loop, &pp->handle, fd)) < 0) {
            free(pp);
            return rc;
        }
        pp->owner = p;
        pp->handle.data = pp;
        p->poll = pp;
    }
    return uv_poll_start(&p->poll->handle, events, on_poll);
}

/* Sends what libpq has buffered and watches for its answer (and for writable while some
 * is left). */
static void flush_and_watch(struct gr_pgmap *p)
{
    int rc = PQflush(p->conn);
    if (rc < 0) {
        fail(p, PQerrorMessage(p->conn));
        return;
    }
    if (watch(p, UV_READABLE | (rc == 1 ? UV_WRITABLE : 0), false) < 0)
        fail(p, "cannot watch the connection's socket");
}

static void close_conn(struct gr_pgmap *p)
{
    drop_poll(p); /* before PQfinish closes the descriptor the poll handle watches */
    if (p->conn != NULL) {
        PQfinish(p->conn);
        p->conn = NULL;
    }
    PQclear(p->rows);
    p->rows = NULL;
    p->query = Q_NONE;
    p->up = false;
}

static void on_timer(uv_timer_t *t);
static void connect_now(struct gr_pgmap *p);

/* One line of a libpq message: they end in newlines and may run to several lines. */
static void log_failure(struct gr_pgmap *p, const char *what)
{
    int len = (int)strcspn(what, "\n");
    if (p->up || !p->said_down)
        gr_warn("postgres: %.*s; retrying in %u ms", len, what, p->backoff_ms);
    else
        gr_info("postgres: %.*s; retrying in %u ms", len, what, p->backoff_ms);
    p->said_down = true;
}

/* Drops the connection and tries again after the backoff. */
static void fail(struct gr_pgmap *p, const char *what)
{
    if (p->backoff_ms == 0)
        p->backoff_ms = GR_PGMAP_BACKOFF_MIN_MS;
    log_failure(p, what);
    gr_stats.postgres_failures++;
    close_conn(p);
    p->state = PG_IDLE;
    uv_timer_start(&p->timer, on_timer, p->backoff_ms, 0);
    p->backoff_ms =
        p->backoff_ms >= GR_PGMAP_BACKOFF_MAX_MS / 2 ? GR_PGMAP_BACKOFF_MAX_MS : p->backoff_ms * 2;
    if (p->failed != NULL)
        p->failed(p->ctx);
}

static void send_query(struct gr_pgmap *p, enum pg_query q, const char *sql);

static void on_timer(uv_timer_t *t)
{
    struct gr_pgmap *p = t->data;
    if (p->state == PG_IDLE) {
        connect_now(p);
    } else if (p->state == PG_CONNECTING) {
        fail(p, "connection attempt timed out");
    } else if (p->query != Q_NONE) {
        char what[128];
        snprintf(what, sizeof(what), "no answer to the %s for %d ms: server hung or cut off",
                 query_names[p->query], GR_PGMAP_QUERY_MS);
        gr_stats.postgres_timeouts++;
        fail(p, what);
    } else {
        send_query(p, Q_PROBE, "SELECT 1");
    }
}

/* While OPEN: the silence allowed from now on (any byte from the server restarts it). */
static void arm_silence_timer(struct gr_pgmap *p)
{
    uv_timer_start(&p->timer, on_timer, p->query != Q_NONE ? GR_PGMAP_QUERY_MS : GR_PGMAP_PROBE_MS,
                   0);
}

/* Server notices and warnings ("terminating connection due to administrator command")
 * go to our log instead of libpq's default, stderr. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    gr_info("postgres: %.*s", (int)strcspn(message, "\n"), message);
}

static void connect_now(struct gr_pgmap *p)
{
    const char *values[] = {CONN_DEFAULTS, p->conninfo, NULL};
    p->conn = PQconnectStartParams(conn_keywords, values, 1);
    if (p->conn == NULL) {
        fail(p, "out of memory");
        return;
    }
    if (PQstatus(p->conn) == CONNECTION_BAD) {
        fail(p, PQerrorMessage(p->conn));
        return;
    }
    PQsetNoticeProcessor(p->conn, on_notice, NULL);
    p->state = PG_CONNECTING;
    uv_timer_start(&p->timer, on_timer, GR_PGMAP_CONNECT_MS, 0);
    /* libpq's documented start: as if PQconnectPoll had said PGRES_POLLING_WRITING. */
    if (watch(p, UV_WRITABLE, true) < 0)
        fail(p, "cannot watch the connection's socket");
}

/* ---- queries ---------------------------------------------------------------------------- */

/* The simple protocol: SESSION_SETUP is two statements. No query takes parameters. */
static void send_query(struct gr_pgmap *p, enum pg_query q, const char *sql)
{
    if (!PQsendQuery(p->conn, sql)) {
        fail(p, PQerrorMessage(p->conn));
        return;
    }
    p->query = q;
    arm_silence_timer(p);
    flush_and_watch(p);
}

static void start_load(struct gr_pgmap *p)
{
    p->load_wanted = false; /* a notification from now on needs another load */
    p->load_started_ms = (int64_t)(uv_hrtime() / 1000000);
    send_query(p, Q_LOAD, GR_PGMAP_QUERY);
}

/* A load is wanted and nothing is in the way: connected and listening, no query in
 * flight, no build on the thread pool (so loads never overtake each other). */
static bool may_load(const struct gr_pgmap *p)
{
    return p->load_wanted && p->state == PG_OPEN && p->query == Q_NONE && p->build == NULL &&
           !p->stopping;
}

/* Loads GR_PGMAP_COALESCE_MS from now, so a burst of notifications makes one load. */
static void maybe_load(struct gr_pgmap *p)
{
    if (may_load(p) && !uv_is_active((uv_handle_t *)&p->coalesce))
        uv_timer_start(&p->coalesce, on_coalesced, GR_PGMAP_COALESCE_MS, 0);
}

static void on_build_done(uv_work_t *w, int status)
{
    struct pg_build *job = w->data;
    struct gr_pgmap *p = job->owner;
    p->build = NULL;
    if (p->stopping || status != 0) {
        gr_mapping_free(job->m);
    } else if (job->m == NULL) {
        gr_stats.mapping_load_failures++;
        gr_error("postgres: mapping refused: %s; the mapping in force stays", job->err);
        if (p->failed != NULL)
            p->failed(p->ctx);
    } else {
        if (job->cache_path != NULL && job->cache_err[0] != '\0')
            gr_warn("mapping_cache: %s", job->cache_err);
        log_rejects(&job->rejects);
        gr_stats.mapping_rows_rejected += job->rejects.n;
        gr_info("postgres: %zu devices loaded in %lld ms (%zu rows left out or changed)",
                gr_mapping_count(job->m),
                (long long)((int64_t)(uv_hrtime() / 1000000) - job->started_ms), job->rejects.n);
        p->backoff_ms = 0;
        p->loaded(p->ctx, job->m);
    }
    free(job->cache_path);
    free(job);
    if (p->stopping)
        maybe_stopped(p); /* the build was what the stop waited for */
    else
        maybe_load(p);
}

/* The load query ended: hands its rows to the thread pool. */
static void load_done(struct gr_pgmap *p)
{
    struct pg_build *job = calloc(1, sizeof(*job));
    if (job == NULL || (p->cache_path && (job->cache_path = strdup(p->cache_path)) == NULL)) {
        free(job);
        fail(p, "out of memory");
        return;
    }
    job->owner = p;
    job->rows = p->rows;
    job->started_ms = p->load_started_ms;
    job->work.data = job;
    p->rows = NULL;
    if (uv_queue_work(p->loop, &job->work, build_work, on_build_done) < 0) {
        PQclear(job->rows);
        free(job->cache_path);
        free(job);
        fail(p, "cannot queue the mapping build");
        return;
    }
    p->build = job;
}

/* One result of the statement in flight; NULL when it has ended. */
static void on_result(struct gr_pgmap *p, PGresult *r)
{
    enum pg_query q = p->query;
    if (r == NULL) {
        p->query = Q_NONE;
        if (q == Q_LISTEN) {
            /* LISTEN is in force from its commit: every change after this point is
             * notified, so a full load now misses nothing. */
            p->up = true;
            if (p->said_down)
                gr_notice("postgres: connected again; loading the whole mapping");
            p->said_down = false;
            /* The previous connection's build may still be on the thread pool: this load
             * waits for it (on_build_done calls maybe_load), so two builds never write
             * mapping_cache at once, nor put their mappings in force out of order. */
            p->load_wanted = true;
            if (may_load(p))
                start_load(p);
        } else if (q == Q_LOAD && p->rows != NULL) {
            load_done(p);
        } else if (q == Q_LOAD) {
            fail(p, "the mapping query returned no rows result");
        }
        return;
    }
    ExecStatusType st = PQresultStatus(r);
    if (q == Q_LOAD && st == PGRES_TUPLES_OK) {
        PQclear(p->rows);
        p->rows = r;
        return;
    }
    if ((q == Q_LISTEN && st == PGRES_COMMAND_OK) || (q == Q_PROBE && st == PGRES_TUPLES_OK)) {
        PQclear(r);
        return;
    }
    char what[512];
    snprintf(what, sizeof(what), "%s failed: %s", query_names[q], PQresultErrorMessage(r));
    PQclear(r);
    fail(p, what);
}

static void connected(struct gr_pgmap *p)
{
    uv_timer_stop(&p->timer);
    if (PQsetnonblocking(p->conn, 1) != 0) {
        fail(p, PQerrorMessage(p->conn));
        return;
    }
    p->state = PG_OPEN;
    gr_info("postgres: connected to %s:%s, database %s", PQhost(p->conn), PQport(p->conn),
            PQdb(p->conn));
    send_query(p, Q_LISTEN, SESSION_SETUP);
}

static void on_connect_step(struct gr_pgmap *p)
{
    switch (PQconnectPoll(p->conn)) {
    case PGRES_POLLING_READING:
        if (watch(p, UV_READABLE, true) < 0)
            fail(p, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_WRITING:
        if (watch(p, UV_WRITABLE, true) < 0)
            fail(p, "cannot watch the connection's socket");
        break;
    case PGRES_POLLING_OK:
        connected(p);
        break;
    default:
        fail(p, PQerrorMessage(p->conn));
        break;
    }
}

static void on_open_events(struct gr_pgmap *p, int events)
{
    if ((events & UV_READABLE) && !PQconsumeInput(p->conn)) {
        fail(p, PQerrorMessage(p->conn));
        return;
    }
    PGnotify *n;
    while ((n = PQnotifies(p->conn)) != NULL) {
        gr_stats.postgres_notifications++;
        p->load_wanted = true;
        PQfreemem(n);
    }
    while (p->state == PG_OPEN && p->query != Q_NONE && !PQisBusy(p->conn))
        on_result(p, PQgetResult(p->conn));
    if (p->state != PG_OPEN)
        return; /* failed meanwhile */
    if (PQstatus(p->conn) == CONNECTION_BAD) {
        fail(p, PQerrorMessage(p->conn));
        return;
    }
    flush_and_watch(p);
    if (p->state != PG_OPEN)
        return;
    /* The server spoke (an answer, a notification): it is alive; the silence counts anew,
     * as a query's bound if one is in flight, else as the wait for the next probe. */
    if (events & UV_READABLE)
        arm_silence_timer(p);
    maybe_load(p);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct pg_poll *pp = h->data;
    struct gr_pgmap *p = pp->owner;
    /* libuv reports a socket error (POLLERR: a refused connect, a reset) as UV_EBADF and
     * stops the handle; libpq reads the real error off the socket. */
    if (status < 0)
        events = UV_READABLE;
    if (p->state == PG_CONNECTING)
        on_connect_step(p);
    else if (p->state == PG_OPEN)
        on_open_events(p, events);
}

static void on_coalesced(uv_timer_t *t)
{
    struct gr_pgmap *p = t->data;
    if (may_load(p)) /* else maybe_load() runs again when what was in the way is done */
        start_load(p);
}

/* ---- the public side -------------------------------------------------------------------- */

int gr_pgmap_start(uv_loop_t *loop, const struct gr_pgmap_options *opt, struct gr_pgmap **out)
{
    struct gr_pgmap *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->conninfo = strdup(opt->conninfo)) == NULL ||
        (opt->cache_path != NULL && (p->cache_path = strdup(opt->cache_path)) == NULL)) {
        if (p != NULL)
            free(p->conninfo);
        free(p);
        gr_error("postgres: out of memory");
        return -ENOMEM;
    }
    p->loop = loop;
    p->loaded = opt->loaded;
    p->failed = opt->failed;
    p->ctx = opt->ctx;
    uv_timer_init(loop, &p->timer);
    uv_timer_init(loop, &p->coalesce);
    p->timer.data = p->coalesce.data = p;
    p->open_handles = 2;
    *out = p;
    connect_now(p);
    return 0;
}

void gr_pgmap_reload(struct gr_pgmap *p)
{
    p->load_wanted = true;
    if (p->state == PG_IDLE) {
        uv_timer_stop(&p->timer);
        connect_now(p);
    } else {
        maybe_load(p);
    }
}

bool gr_pgmap_up(const struct gr_pgmap *p)
{
    return p != NULL && p->up;
}

static void maybe_stopped(struct gr_pgmap *p)
{
    if (p->open_handles > 0 || p->build != NULL || p->stopped == NULL)
        return;
    gr_stopped_fn done = p->stopped;
    p->stopped = NULL; /* once */
    done(p->stopped_arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct gr_pgmap *p = h->data;
    p->open_handles--;
    maybe_stopped(p);
}

void gr_pgmap_stop(struct gr_pgmap *p, gr_stopped_fn done, void *arg)
{
    if (p->stopping)
        return;
    p->stopping = true;
    p->stopped = done;
    p->stopped_arg = arg;
    close_conn(p);
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
    uv_close((uv_handle_t *)&p->coalesce, on_timer_closed);
}

void gr_pgmap_free(struct gr_pgmap *p)
{
    if (p == NULL)
        return;
    free(p->conninfo);
    free(p->cache_path);
    free(p);
}

/* ---- `gpsrelayd -t` ----------------------------------------------------------------------- */

/* The check's query: the server's own bound first (it cancels a statement of ours that
 * runs GR_PGMAP_STATEMENT_MS), then the mapping, in one message of the simple protocol. */
#define CHECK_QUERY "SET statement_timeout = " PG_XSTR(GR_PGMAP_STATEMENT_MS) "; " GR_PGMAP_QUERY

/* Waits until libpq has a whole result, or GR_PGMAP_QUERY_MS pass without a byte from the
 * server (the daemon's bound on silence: a stopped server's kernel still accepts, so no
 * error would ever come). Returns 0, or with the reason in err -ETIMEDOUT, poll(2)'s errno,
 * or -EIO for what libpq says. */
static int wait_result(PGconn *c, char *err, size_t errlen)
{
    while (PQisBusy(c)) {
        struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
        int rc = poll(&pfd, 1, GR_PGMAP_QUERY_MS);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0) {
            snprintf(err, errlen,
                     "postgres: no answer to the mapping query for %d ms: server "
                     "hung or cut off",
                     GR_PGMAP_QUERY_MS);
            return -ETIMEDOUT;
        }
        if (rc < 0 || !PQconsumeInput(c)) {
            int error = rc < 0 ? errno : EIO;
            const char *why = rc < 0 ? strerror(error) : PQerrorMessage(c);
            snprintf(err, errlen, "postgres: %.*s", (int)strcspn(why, "\n"), why);
            return -error;
        }
    }
    return 0;
}

/*
 * Connects (at most GR_PGMAP_CHECK_CONNECT_MS, unless the operator's conninfo sets its own
 * connect_timeout) and loads once, each wait bounded by wait_result. Returns the mapping,
 * or NULL with the reason in err.
 */
static struct gr_mapping *load_blocking(const char *conninfo, char *err, size_t errlen)
{
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%d", (GR_PGMAP_CHECK_CONNECT_MS + 999) / 1000);
    static const char *const keywords[] = {"application_name", "connect_timeout", "dbname", NULL};
    const char *values[] = {"gpsrelayd -t", timeout, conninfo, NULL};
    struct gr_mapping *m = NULL;
    PGresult *rows = NULL;
    PGconn *c = PQconnectdbParams(keywords, values, 1);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        const char *why = c != NULL ? PQerrorMessage(c) : "out of memory";
        snprintf(err, errlen, "postgres: %.*s", (int)strcspn(why, "\n"), why);
        goto out;
    }
    if (!PQsendQuery(c, CHECK_QUERY)) {
        snprintf(err, errlen, "postgres: mapping query failed: %.*s",
                 (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
        goto out;
    }
    /* One result per statement: the SET's, then the rows (or the first error, after which
     * the server runs nothing more). The last one says how it went. */
    for (;;) {
        if (wait_result(c, err, errlen) < 0)
            goto out;
        PGresult *r = PQgetResult(c);
        if (r == NULL)
            break;
        PQclear(rows);
        rows = r;
    }
    if (PQresultStatus(rows) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "postgres: mapping query failed: %.*s",
                 (int)strcspn(PQresultErrorMessage(rows), "\n"), PQresultErrorMessage(rows));
        goto out;
    }
    char why[512];
    struct pg_rejects rejects = {0};
    m = build_mapping(rows, add_reject, &rejects, why, sizeof(why));
    if (m == NULL)
        snprintf(err, errlen, "postgres: mapping refused: %s", why);
    else
        log_rejects(&rejects);

out:
    PQclear(rows);
    PQfinish(c);
    return m;
}

/* ---- the mapping source: PostgreSQL, and mapping_cache while it is down ------------------- */

struct pg_source {
    struct gr_mapping_source_env env;
    struct gr_pgmap *pg;            /* owned */
    char *cache_path;               /* owned copy of mapping_cache, or NULL */
    bool delivered;                 /* PostgreSQL gave a mapping: the cache is not wanted */
    bool cache_tried;               /* mapping_cache was read (or found unset) at start */
    struct gr_csv_read *cache_read; /* mapping_cache on the thread pool, or NULL */
    int pending;                    /* while stopping: pg and the cache read not yet done */
    gr_stopped_fn stopped;          /* stop.h */
    void *stopped_arg;
};

static bool pg_configured(const struct gr_config *cfg)
{
    return cfg->postgres != NULL;
}

static const char *pg_where(const struct gr_config *cfg)
{
    (void)cfg;
    return "PostgreSQL";
}

static void pg_loaded(void *ctx, struct gr_mapping *m)
{
    struct pg_source *s = ctx;
    s->delivered = true;
    s->env.deliver(s->env.ctx, m);
}

static void cache_read(void *ctx, struct gr_mapping *m, const char *err)
{
    struct pg_source *s = ctx;
    s->cache_read = NULL;
    if (m == NULL) {
        gr_stats.mapping_load_failures++;
        gr_error("%s", err);
        gr_warn("no usable mapping_cache: not ready until PostgreSQL answers");
    } else if (s->delivered) {
        gr_mapping_free(m); /* PostgreSQL answered while the cache was being read */
    } else {
        gr_warn("PostgreSQL is unreachable: starting with the cached mapping from %s (%zu "
                "devices); changes made since it was written arrive when the database does",
                s->cache_path, gr_mapping_count(m));
        s->env.deliver(s->env.ctx, m);
    }
}

/* PostgreSQL did not answer. At start, with no mapping yet, mapping_cache stands in. */
static void pg_failed(void *ctx)
{
    struct pg_source *s = ctx;
    if (s->cache_tried || s->delivered)
        return;
    s->cache_tried = true;
    if (s->cache_path == NULL) {
        gr_warn("no mapping yet and no mapping_cache: not ready until PostgreSQL answers");
        return;
    }
    gr_csv_read_start(s->env.loop, s->cache_path, cache_read, s, &s->cache_read);
}

static int pg_start(const struct gr_mapping_source_env *env, const struct gr_config *cfg,
                    void **state)
{
    struct pg_source *s = calloc(1, sizeof(*s));
    if (s == NULL ||
        (cfg->mapping_cache != NULL && (s->cache_path = strdup(cfg->mapping_cache)) == NULL)) {
        free(s);
        gr_error("postgres: out of memory");
        return -ENOMEM;
    }
    s->env = *env;
    struct gr_pgmap_options opt = {
        .conninfo = cfg->postgres,
        .cache_path = cfg->mapping_cache,
        .loaded = pg_loaded,
        .failed = pg_failed,
        .ctx = s,
    };
    int rc = gr_pgmap_start(env->loop, &opt, &s->pg);
    if (rc < 0) {
        free(s->cache_path);
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}

static void pg_reload(void *state, const struct gr_config *cfg)
{
    struct pg_source *s = state;
    (void)cfg; /* postgres and mapping_cache take a restart (config.c) */
    gr_pgmap_reload(s->pg);
}

static bool pg_up(const void *state)
{
    const struct pg_source *s = state;
    return gr_pgmap_up(s->pg);
}

static void pg_part_stopped(void *arg)
{
    struct pg_source *s = arg;
    if (--s->pending == 0)
        s->stopped(s->stopped_arg);
}

/* pg's timers always close, so done comes from a loop callback. */
static void pg_stop(void *state, gr_stopped_fn done, void *arg)
{
    struct pg_source *s = state;
    if (s->stopped != NULL)
        return;
    s->stopped = done;
    s->stopped_arg = arg;
    s->pending = 1;
    if (s->cache_read != NULL) {
        s->pending++;
        gr_csv_read_stop(s->cache_read, pg_part_stopped, s);
        s->cache_read = NULL; /* it frees itself */
    }
    gr_pgmap_stop(s->pg, pg_part_stopped, s);
}

static void pg_free(void *state)
{
    struct pg_source *s = state;
    gr_pgmap_free(s->pg);
    free(s->cache_path);
    free(s);
}

static int pg_check(const struct gr_config *cfg, char *err, size_t errlen)
{
    struct gr_mapping *m = load_blocking(cfg->postgres, err, errlen);
    if (m == NULL)
        return -EIO; /* the database may be down while the configuration is fine */
    size_t devices = gr_mapping_count(m);
    gr_mapping_free(m);
    return (int)devices;
}

const struct gr_mapping_source_ops gr_mapping_source_postgres = {
    .configured = pg_configured,
    .where = pg_where,
    .start = pg_start,
    .reload = pg_reload,
    .up = pg_up,
    .stop = pg_stop,
    .free = pg_free,
    .check = pg_check,
};
