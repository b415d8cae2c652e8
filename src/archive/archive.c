/*
 * archive.c - positions into PostgreSQL through the spool. See archive.h.
 *
 * The writer's phases, on one gr_pgconn:
 *
 *   WAIT      no connection yet, or it was lost (a batch that was out goes back to the spool)
 *   MAINTAIN  the staging table, the partitions: when connected and when maintenance is due
 *   IDLE      nothing in flight: the next batch is taken from the spool, or waited for
 *   COPY      BEGIN; COPY sent, the batch put in pieces, then the copy ended
 *   MOVE      the move and the COMMIT sent; their answer makes the batch done
 *
 * Any error fails the connection (pgconn logs it and tries again after its backoff), which
 * aborts the transaction: the batch comes again from the spool, and the move skips what an
 * earlier attempt may have committed after all (a COMMIT whose answer was lost).
 */
#include "gpsrelay/archive.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/archive_row.h"
#include "gpsrelay/archive_spool.h"
#include "gpsrelay/log.h"
#include "gpsrelay/pgconn.h"
#include "gpsrelay/stats.h"

#define COPY_SQL "BEGIN; COPY pg_temp.gpsrelay_staging (" GR_ARCHIVE_COLUMNS ") FROM STDIN"
#define MOVE_SQL "SELECT moved, undated FROM gpsrelay_archive_move(); COMMIT"

enum phase { P_WAIT, P_MAINTAIN, P_IDLE, P_COPY, P_MOVE };

struct gr_archive {
    uv_loop_t *loop;
    struct gr_spool *spool; /* owned */
    struct gr_pgconn *conn; /* owned */
    int retention_days;
    enum phase phase;
    bool prepared;                      /* this connection has its staging table */
    bool maintain_due;                  /* partitions to be checked before the next batch */
    uv_timer_t maintain;                /* sets maintain_due every GR_ARCHIVE_MAINTAIN_MS */
    const struct gr_spool_batch *batch; /* out: taken from the spool, not yet done */
    size_t put;                         /* bytes of the batch put into the COPY */
    uint64_t batch_start_ns;
    uint64_t moved, undated; /* the move's answer, counted once the COMMIT answers */
    uint64_t dropped_stopping;

    bool stopping;
    int stopping_parts;
    gr_stopped_fn stopped;
    void *stopped_arg;
};

static void next(struct gr_archive *a);

/* ---- maintenance ------------------------------------------------------------------------- */

/* The staging table (once per connection), then today's and the coming days' partitions,
 * then the expired days dropped: one simple query, one short transaction (add_days holds
 * positions_default's lock until it ends). */
static void maintain(struct gr_archive *a)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "%sSELECT partition, moved FROM gpsrelay_archive_add_days(%d); "
             "SELECT gpsrelay_archive_drop_days(%d)",
             a->prepared ? "" : "SELECT gpsrelay_archive_staging(); ", GR_ARCHIVE_DAYS_AHEAD,
             a->retention_days);
    a->maintain_due = false;
    if (gr_pgconn_send(a->conn, sql, 0, NULL) == 0)
        a->phase = P_MAINTAIN;
}

static void maintain_result(struct gr_archive *a, PGresult *r)
{
    if (r == NULL) { /* all three went through */
        if (!a->prepared) {
            struct gr_spool_stats st;
            gr_spool_stats(a->spool, &st);
            gr_notice("archive: writing; %" PRIu64 " positions wait in the spool", st.queued_lines);
        }
        a->prepared = true;
        a->phase = P_IDLE;
        next(a);
        return;
    }
    const char *col = PQnfields(r) > 0 ? PQfname(r, 0) : "";
    for (int i = 0; PQresultStatus(r) == PGRES_TUPLES_OK && i < PQntuples(r); i++) {
        if (strcmp(col, "partition") == 0)
            gr_notice("archive: partition %s made (%s positions moved into it from "
                      "positions_default)",
                      PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
        else if (strcmp(col, "gpsrelay_archive_drop_days") == 0)
            gr_notice("archive: partition %s dropped: older than archive_retention_days (%d)",
                      PQgetvalue(r, i, 0), a->retention_days);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        /* 42883 undefined function, 42P01 undefined table: the schema is not there. */
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        char what[640];
        snprintf(what, sizeof(what), "%s%s",
                 state && (!strcmp(state, "42883") || !strcmp(state, "42P01"))
                     ? "config/archive.sql is not applied to the archive database: "
                     : "partition maintenance failed: ",
                 PQresultErrorMessage(r));
        gr_pgconn_fail(a->conn, what);
    }
    PQclear(r);
}

static void on_maintain_timer(uv_timer_t *t)
{
    struct gr_archive *a = t->data;
    a->maintain_due = true;
    if (a->phase == P_IDLE)
        next(a);
}

/* ---- batches ----------------------------------------------------------------------------- */

/* Puts the batch's pieces while libpq sends them at once; stops at one that waits for the
 * socket (`drained` resumes), ends the copy after the last. */
static void put_pieces(struct gr_archive *a)
{
    while (a->put < a->batch->len) {
        size_t n = a->batch->len - a->put;
        if (n > GR_ARCHIVE_COPY_PIECE)
            n = GR_ARCHIVE_COPY_PIECE;
        int rc = gr_pgconn_copy_put(a->conn, a->batch->data + a->put, n);
        if (rc < 0)
            return; /* failed: `down` follows */
        a->put += n;
        if (rc == 1)
            return;
    }
    gr_pgconn_copy_end(a->conn, NULL);
}

/* The next thing to do while IDLE: maintenance when due, else a batch if one is ready
 * (else the spool's `ready` calls again). */
static void next(struct gr_archive *a)
{
    if (a->phase != P_IDLE || a->stopping || gr_pgconn_busy(a->conn))
        return;
    if (a->maintain_due || !a->prepared) {
        maintain(a);
        return;
    }
    const struct gr_spool_batch *b = gr_spool_take(a->spool);
    if (b == NULL)
        return;
    a->batch = b;
    a->put = 0;
    a->moved = a->undated = 0;
    a->batch_start_ns = uv_hrtime();
    if (gr_pgconn_send(a->conn, COPY_SQL, 0, NULL) == 0)
        a->phase = P_COPY;
}

/* The COMMIT answered: the batch is in PostgreSQL. */
static void batch_done(struct gr_archive *a)
{
    uint64_t lines = a->batch->lines;
    gr_spool_done(a->spool, a->batch);
    a->batch = NULL;
    gr_stats.archive_written += a->moved;
    gr_stats.archive_duplicates += lines > a->moved ? lines - a->moved : 0;
    gr_stats.archive_undated += a->undated;
    gr_histogram_observe(&gr_stats.archive_batch, (double)(uv_hrtime() - a->batch_start_ns) / 1e9);
    a->phase = P_IDLE;
    next(a);
}

static void batch_result(struct gr_archive *a, PGresult *r)
{
    if (r == NULL) {
        if (a->phase == P_COPY) { /* the COPY's rows are in staging: move them, commit */
            if (gr_pgconn_send(a->conn, MOVE_SQL, 0, NULL) == 0)
                a->phase = P_MOVE;
        } else {
            batch_done(a);
        }
        return;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COPY_IN) {
        PQclear(r);
        put_pieces(a);
        return;
    }
    if (st == PGRES_TUPLES_OK && a->phase == P_MOVE && PQntuples(r) == 1) {
        a->moved = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        a->undated = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
    } else if (st != PGRES_COMMAND_OK) {
        char what[640];
        snprintf(what, sizeof(what), "batch of %" PRIu64 " positions failed: %s", a->batch->lines,
                 PQresultErrorMessage(r));
        PQclear(r);
        gr_pgconn_fail(a->conn, what);
        return;
    }
    PQclear(r);
}

/* ---- the connection's and the spool's callbacks ------------------------------------------ */

static void on_idle(void *ctx)
{
    struct gr_archive *a = ctx;
    if (a->phase == P_WAIT)
        a->phase = P_IDLE;
    next(a);
}

static void on_result(void *ctx, PGresult *r)
{
    struct gr_archive *a = ctx;
    if (a->phase == P_MAINTAIN)
        maintain_result(a, r);
    else if (a->phase == P_COPY || a->phase == P_MOVE)
        batch_result(a, r);
    else
        PQclear(r);
}

static void on_drained(void *ctx)
{
    struct gr_archive *a = ctx;
    if (a->phase == P_COPY && a->batch != NULL)
        put_pieces(a);
}

/* The connection is gone, and the transaction with it: the batch comes again. */
static void on_down(void *ctx)
{
    struct gr_archive *a = ctx;
    if (a->batch != NULL && !a->stopping)
        gr_spool_retry(a->spool, a->batch);
    a->batch = NULL;
    a->prepared = false; /* a new connection, a new temporary staging table */
    a->phase = P_WAIT;
}

static void on_spool_ready(void *ctx)
{
    next(ctx);
}

/* ---- the public side --------------------------------------------------------------------- */

int gr_archive_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_archive **out)
{
    char err[512];
    struct gr_archive *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        gr_error("archive: out of memory");
        return -ENOMEM;
    }
    a->loop = loop;
    a->retention_days = cfg->archive_retention_days;
    struct gr_spool_options so = {
        .path = cfg->archive_spool,
        .max_bytes = cfg->archive_spool_max,
        .ready = on_spool_ready,
        .ctx = a,
    };
    int rc = gr_spool_open(loop, &so, &a->spool, err, sizeof(err));
    if (rc < 0) {
        gr_error("archive_spool: %s", err);
        free(a);
        return rc;
    }
    if (cfg->archive_spool == NULL)
        gr_warn("archive: no archive_spool: positions waiting for PostgreSQL are held in "
                "memory (at most %" PRIu64 " bytes) and lost if the daemon stops",
                cfg->archive_spool_max);
    struct gr_pgconn_options co = {
        .conninfo = cfg->archive_postgres,
        .name = "archive",
        .idle = on_idle,
        .result = on_result,
        .down = on_down,
        .drained = on_drained,
        .ctx = a,
        .failures = &gr_stats.archive_failures,
        .timeouts = &gr_stats.archive_timeouts,
    };
    uv_timer_init(loop, &a->maintain);
    a->maintain.data = a;
    uv_timer_start(&a->maintain, on_maintain_timer, GR_ARCHIVE_MAINTAIN_MS, GR_ARCHIVE_MAINTAIN_MS);
    rc = gr_pgconn_start(loop, &co, &a->conn);
    if (rc < 0)
        a->conn = NULL;
    *out = a; /* on failure too: the spool and the timer are open, to be stopped */
    return rc;
}

void gr_archive_position(struct gr_archive *a, const char *device, const struct gr_fix *fix,
                         const char *epoch, uint64_t seq, int64_t rx_ms)
{
    if (a->stopping) {
        a->dropped_stopping++;
        return;
    }
    char line[GR_ARCHIVE_ROW_MAX];
    struct gr_archive_row row = {
        .device = device, .fix = fix, .rx_ms = rx_ms, .epoch = epoch, .seq = seq};
    long n = gr_archive_row_encode(&row, line, sizeof(line));
    if (n > 0)
        gr_spool_append(a->spool, line, (size_t)n, 1); /* refusals: counted by the spool */
}

void gr_archive_set_config(struct gr_archive *a, const struct gr_config *cfg)
{
    a->retention_days = cfg->archive_retention_days;
}

void gr_archive_gauges(struct gr_archive *a, struct gr_archive_gauges *g)
{
    struct gr_spool_stats st;
    gr_spool_stats(a->spool, &st);
    g->up = a->prepared && gr_pgconn_up(a->conn);
    g->queued = st.queued_lines;
    g->spool_bytes = st.backlog_bytes;
    g->dropped = st.dropped_lines + st.refused_lines + a->dropped_stopping;
}

static void part_stopped(void *arg)
{
    struct gr_archive *a = arg;
    if (--a->stopping_parts == 0)
        a->stopped(a->stopped_arg);
}

static void on_maintain_closed(uv_handle_t *h)
{
    part_stopped(h->data);
}

void gr_archive_stop(struct gr_archive *a, gr_stopped_fn done, void *arg)
{
    if (a->stopping)
        return;
    a->stopping = true;
    a->stopped = done;
    a->stopped_arg = arg;
    a->stopping_parts = 2 + (a->conn != NULL);
    /* A batch still out stays in the spool's backlog: the next start sends it first. */
    a->batch = NULL;
    if (a->conn != NULL)
        gr_pgconn_stop(a->conn, part_stopped, a);
    gr_spool_close(a->spool, part_stopped, a);
    uv_close((uv_handle_t *)&a->maintain, on_maintain_closed);
}

void gr_archive_free(struct gr_archive *a)
{
    if (a == NULL)
        return;
    gr_pgconn_free(a->conn);
    gr_spool_free(a->spool);
    free(a);
}

int gr_archive_check(const struct gr_config *cfg, char *err, size_t errlen)
{
    PGresult *r = gr_pgconn_check(cfg->archive_postgres, "archive",
                                  "SELECT to_regclass('positions') IS NOT NULL "
                                  "AND to_regclass('positions_default') IS NOT NULL "
                                  "AND to_regprocedure('gpsrelay_archive_move()') IS NOT NULL "
                                  "AND to_regprocedure('gpsrelay_archive_add_days(integer, date)') "
                                  "IS NOT NULL",
                                  err, errlen);
    if (r == NULL)
        return -1;
    bool ok = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!ok)
        snprintf(err, errlen, "archive: config/archive.sql is not applied to the archive database");
    return ok ? 0 : -1;
}
