/*
 * pgmap.c - the mapping from PostgreSQL on the event loop. See pgmap.h.
 *
 * The connection is a gr_pgconn (pgconn.h: connecting, the session, the bounds on silence,
 * the backoff) whose setup statement is LISTEN gpsrelay_mapping. Here: when to load
 * (a new connection, a notification, SIGHUP), the load, and the build on the thread pool.
 */
#include "gpsrelay/pgmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "gpsrelay/log.h"
#include "gpsrelay/pgconn.h"
#include "gpsrelay/stats.h"
#include "source.h"

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
    char *cache_path; /* owned copy, or NULL */
    void (*loaded)(void *ctx, struct gr_mapping *m);
    void (*failed)(void *ctx);
    void *ctx;

    struct gr_pgconn *conn; /* owned */
    bool loading;           /* the mapping query is in flight */
    PGresult *rows;         /* owned: the load's result, until the query ends */
    int64_t load_started_ms;
    struct pg_build *build; /* on the thread pool, or NULL; on_build_done frees it */
    bool load_wanted;       /* a notification, SIGHUP or new connection since the last load */
    uv_timer_t coalesce;    /* GR_PGMAP_COALESCE_MS after a notification */
    bool stopping;
    int open_parts;        /* the connection and the timer, until they have stopped */
    gr_stopped_fn stopped; /* told once both are stopped and no build is out */
    void *stopped_arg;
};

static void maybe_stopped(struct gr_pgmap *p);

static void on_coalesced(uv_timer_t *t);

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

/* ---- loads ------------------------------------------------------------------------------ */

static void start_load(struct gr_pgmap *p)
{
    p->load_wanted = false; /* a notification from now on needs another load */
    p->load_started_ms = (int64_t)(uv_hrtime() / 1000000);
    if (gr_pgconn_send(p->conn, GR_PGMAP_QUERY, 0, NULL) == 0)
        p->loading = true;
    else
        p->load_wanted = true; /* the connection failed: `down` follows, then a new load */
}

/* A load is wanted and nothing is in the way: connected and listening, no statement in
 * flight, no build on the thread pool (so loads never overtake each other). */
static bool may_load(const struct gr_pgmap *p)
{
    return p->load_wanted && !gr_pgconn_busy(p->conn) && p->build == NULL && !p->stopping;
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
        p->loaded(p->ctx, job->m);
    }
    free(job->cache_path);
    free(job);
    if (p->stopping)
        maybe_stopped(p); /* the build was what the stop waited for */
    else
        maybe_load(p);
}

/* The load query ended with its rows: hands them to the thread pool. */
static void load_done(struct gr_pgmap *p)
{
    struct pg_build *job = calloc(1, sizeof(*job));
    if (job == NULL || (p->cache_path && (job->cache_path = strdup(p->cache_path)) == NULL)) {
        free(job);
        gr_pgconn_fail(p->conn, "out of memory");
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
        gr_pgconn_fail(p->conn, "cannot queue the mapping build");
        return;
    }
    p->build = job;
}

/* ---- the connection's callbacks --------------------------------------------------------- */

/* Listening (the setup's LISTEN is in force from its commit: every change after this point
 * is notified, so a load now misses nothing), or a probe ended. The previous connection's
 * build may still be on the thread pool: the load waits for it (on_build_done calls
 * maybe_load), so two builds never write mapping_cache at once, nor put their mappings in
 * force out of order. */
static void on_idle(void *ctx)
{
    struct gr_pgmap *p = ctx;
    if (may_load(p))
        start_load(p);
}

static void on_result(void *ctx, PGresult *r)
{
    struct gr_pgmap *p = ctx;
    if (r == NULL) {
        p->loading = false;
        if (p->rows != NULL)
            load_done(p);
        else
            gr_pgconn_fail(p->conn, "the mapping query returned no rows result");
        return;
    }
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        PQclear(p->rows);
        p->rows = r;
        return;
    }
    char what[512];
    snprintf(what, sizeof(what), "mapping query failed: %s", PQresultErrorMessage(r));
    PQclear(r);
    gr_pgconn_fail(p->conn, what);
}

/* Notifications sent while disconnected are lost: a new connection loads everything. */
static void on_down(void *ctx)
{
    struct gr_pgmap *p = ctx;
    PQclear(p->rows);
    p->rows = NULL;
    p->loading = false;
    p->load_wanted = true;
    if (p->failed != NULL)
        p->failed(p->ctx);
}

static void on_notified(void *ctx, PGnotify *n)
{
    struct gr_pgmap *p = ctx;
    gr_stats.postgres_notifications++;
    p->load_wanted = true;
    PQfreemem(n);
    maybe_load(p);
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
    if (p == NULL ||
        (opt->cache_path != NULL && (p->cache_path = strdup(opt->cache_path)) == NULL)) {
        free(p);
        gr_error("postgres: out of memory");
        return -ENOMEM;
    }
    p->loop = loop;
    p->loaded = opt->loaded;
    p->failed = opt->failed;
    p->ctx = opt->ctx;
    p->load_wanted = true;
    struct gr_pgconn_options co = {
        .conninfo = opt->conninfo,
        .name = "postgres",
        .setup_sql = "LISTEN gpsrelay_mapping",
        .idle = on_idle,
        .result = on_result,
        .down = on_down,
        .notified = on_notified,
        .ctx = p,
        .failures = &gr_stats.postgres_failures,
        .timeouts = &gr_stats.postgres_timeouts,
    };
    int rc = gr_pgconn_start(loop, &co, &p->conn);
    if (rc < 0) {
        free(p->cache_path);
        free(p);
        return rc;
    }
    uv_timer_init(loop, &p->coalesce);
    p->coalesce.data = p;
    p->open_parts = 2; /* the connection, the coalesce timer */
    *out = p;
    return 0;
}

void gr_pgmap_reload(struct gr_pgmap *p)
{
    p->load_wanted = true;
    gr_pgconn_retry_now(p->conn);
    maybe_load(p);
}

bool gr_pgmap_up(const struct gr_pgmap *p)
{
    return p != NULL && gr_pgconn_up(p->conn);
}

static void maybe_stopped(struct gr_pgmap *p)
{
    if (p->open_parts > 0 || p->build != NULL || p->stopped == NULL)
        return;
    gr_stopped_fn done = p->stopped;
    p->stopped = NULL; /* once */
    done(p->stopped_arg);
}

static void on_part_stopped(void *arg)
{
    struct gr_pgmap *p = arg;
    p->open_parts--;
    maybe_stopped(p);
}

static void on_coalesce_closed(uv_handle_t *h)
{
    on_part_stopped(h->data);
}

void gr_pgmap_stop(struct gr_pgmap *p, gr_stopped_fn done, void *arg)
{
    if (p->stopping)
        return;
    p->stopping = true;
    p->stopped = done;
    p->stopped_arg = arg;
    PQclear(p->rows);
    p->rows = NULL;
    gr_pgconn_stop(p->conn, on_part_stopped, p);
    uv_close((uv_handle_t *)&p->coalesce, on_coalesce_closed);
}

void gr_pgmap_free(struct gr_pgmap *p)
{
    if (p == NULL)
        return;
    gr_pgconn_free(p->conn);
    free(p->cache_path);
    free(p);
}

/* ---- `gpsrelayd -t` ----------------------------------------------------------------------- */

/* Loads once, as the daemon would (pgconn.h's check). Returns the mapping, or NULL with the
 * reason in err. */
static struct gr_mapping *load_blocking(const char *conninfo, char *err, size_t errlen)
{
    PGresult *rows = gr_pgconn_check(conninfo, "postgres", GR_PGMAP_QUERY, err, errlen);
    if (rows == NULL)
        return NULL;
    char why[512];
    struct pg_rejects rejects = {0};
    struct gr_mapping *m = build_mapping(rows, add_reject, &rejects, why, sizeof(why));
    if (m == NULL)
        snprintf(err, errlen, "postgres: mapping refused: %s", why);
    else
        log_rejects(&rejects);
    PQclear(rows);
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
