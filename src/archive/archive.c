/*
 * archive.c - positions into PostgreSQL through the spool. See archive.h.
 *
 * The writer's phases, on one gr_pgconn:
 *
 *   WAIT      no connection yet, or it was lost (a batch that was out goes back to the spool)
 *   MAINTAIN  the staging table, the partitions: when connected and when maintenance is due
 *   IDLE      nothing in flight: the next batch is taken from the spool, or waited for
 *   COPY      BEGIN; COPY sent (into positions, or into staging: archive.h), the batch put
 *             in pieces, then the copy ended
 *   MOVE      the COMMIT (after the move, from staging) sent; its answer makes the batch done
 *   ROLLBACK  after a COPY that conflicted (then the same part through staging) or a row
 *             refused (below)
 *
 * Any error fails the connection (pgconn logs it and tries again after its backoff), which
 * aborts the transaction: the batch comes again from the spool, and the move skips what an
 * earlier attempt may have committed after all (a COMMIT whose answer was lost). But for a
 * row PostgreSQL refuses for what it holds (SQLSTATE class 22, data exception, or 23, a
 * constraint the operator added), which would fail every attempt and stall the archive for
 * ever: then the transaction is rolled back and the batch halved, each half sent on its
 * own, down to the single row refused, which is left out, counted and logged
 * (ROLLBACK); the rest of the batch is archived.
 */
#include "gpsrelay/archive.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/archive_row.h"
#include "gpsrelay/archive_spool.h"
#include "gpsrelay/calendar.h"
#include "gpsrelay/clock.h"
#include "gpsrelay/log.h"
#include "gpsrelay/pgconn.h"
#include "gpsrelay/stats.h"

/* Straight into positions: the fast way, for positions not archived yet (a single daemon's
 * batches, the first time). */
#define COPY_DIRECT_SQL "BEGIN; COPY positions (" GR_ARCHIVE_COLUMNS ") FROM STDIN"
/* Through the staging table and the move, which skips what is there already: for a batch
 * some of whose positions may be (sent again, or a cluster's, which every node writes). */
#define COPY_STAGED_SQL "BEGIN; COPY pg_temp.gpsrelay_staging (" GR_ARCHIVE_COLUMNS ") FROM STDIN"
#define MOVE_SQL        "SELECT moved FROM gpsrelay_archive_move(); COMMIT"
/* SQLSTATE unique_violation: a direct COPY met a position archived already. */
#define UNIQUE_VIOLATION "23505"

enum phase { P_WAIT, P_MAINTAIN, P_IDLE, P_COPY, P_MOVE, P_ROLLBACK };

/* Parts of a refused batch still to send: halving a batch of n lines leaves at most
 * log2(n) + 1 waiting, and a batch holds far fewer than 2^48 lines. */
#define RANGES_MAX 48

/* A part of the batch: bytes [lo, hi), whole lines. */
struct range {
    size_t lo, hi;
};

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
    struct range part;                  /* the part of it being sent: all, or a half... */
    struct range parts[RANGES_MAX];     /* ...and the parts waiting, after a refusal */
    int n_parts;
    size_t put;        /* bytes of the part put into the COPY */
    char refused[512]; /* PostgreSQL's reason, while the refused part is rolled back */
    uint64_t batch_start_ns;
    uint64_t moved, left_out;    /* the batch's parts so far: added, and refused */
    uint64_t part_added;         /* the part in flight: what its COPY or move added */
    bool staged_only;            /* a cluster node: every batch through staging */
    bool part_staged;            /* this part goes through staging: always on a cluster node,
                                  * else after a direct COPY of it conflicted */
    bool conflict;               /* ...and is being rolled back */
    int64_t first_day, last_day; /* the day partitions' range (days since 1970); empty
                                  * (first > last) until maintenance has read it */
    uint64_t dropped_stopping;
    bool in_memory; /* no archive_spool: the spool is a memfd */

    bool stopping;
    int stopping_parts;
    gr_stopped_fn stopped;
    void *stopped_arg;
};

static void next(struct gr_archive *a);
static void batch_done(struct gr_archive *a);

/* ---- maintenance ------------------------------------------------------------------------- */

/* The day partitions' range, as two names positions_YYYYMMDD (NULL when there is none). */
#define DAY_RANGE_SQL                                                                              \
    "SELECT min(c.relname) AS first_day, max(c.relname) AS last_day FROM pg_inherits i "           \
    "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'positions'::regclass "             \
    "AND c.relname ~ '^positions_[0-9]{8}$'"

/* positions_YYYYMMDD as days since 1970, or INT64_MIN. */
static int64_t partition_day(const char *name)
{
    int y, m, d;
    if (strlen(name) != 18 || sscanf(name, "positions_%4d%2d%2d", &y, &m, &d) != 3)
        return INT64_MIN;
    return gr_days_from_civil(y, m, d);
}

/* The staging table (once per connection), then today's and the coming days' partitions,
 * then the expired days dropped: one simple query, one short transaction (add_days holds
 * positions_default's lock until it ends). */
static void maintain(struct gr_archive *a)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "%sSELECT partition, moved FROM gpsrelay_archive_add_days(%d); "
             "SELECT gpsrelay_archive_drop_days(%d); " DAY_RANGE_SQL,
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
        else if (strcmp(col, "first_day") == 0 && !PQgetisnull(r, i, 0)) {
            a->first_day = partition_day(PQgetvalue(r, i, 0));
            a->last_day = partition_day(PQgetvalue(r, i, 1));
        } else if (strcmp(col, "gpsrelay_archive_drop_days") == 0)
            gr_notice("archive: partition %s dropped: older than archive_retention_days (%d)",
                      PQgetvalue(r, i, 0), a->retention_days);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        /* 42883 undefined function, 42P01 undefined table: the schema is not there. */
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        char what[640];
        snprintf(what, sizeof(what), "%s%s",
                 state && (!strcmp(state, "42883") || !strcmp(state, "42P01"))
                     ? "archive.sql is not applied to the archive database: "
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
    while (a->put < a->part.hi - a->part.lo) {
        size_t n = a->part.hi - a->part.lo - a->put;
        if (n > GR_ARCHIVE_COPY_PIECE)
            n = GR_ARCHIVE_COPY_PIECE;
        int rc = gr_pgconn_copy_put(a->conn, a->batch->data + a->part.lo + a->put, n);
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
    if (a->batch == NULL) {
        if ((a->batch = gr_spool_take(a->spool)) == NULL)
            return;
        a->part = (struct range){0, a->batch->len};
        a->n_parts = 0;
        a->moved = a->left_out = 0;
        a->batch_start_ns = uv_hrtime();
        a->part_staged = a->staged_only;
    }
    a->put = 0;
    a->part_added = 0;
    if (gr_pgconn_send(a->conn, a->part_staged ? COPY_STAGED_SQL : COPY_DIRECT_SQL, 0, NULL) == 0)
        a->phase = P_COPY;
}

/* Lines in [lo, hi). */
static uint64_t lines_in(const char *data, size_t lo, size_t hi)
{
    uint64_t n = 0;
    for (const char *p = data + lo; (p = memchr(p, '\n', (size_t)(data + hi - p))) != NULL; p++)
        n++;
    return n;
}

/* Where to halve part r of data: after the line that holds r's middle byte, or before r's
 * last line when that one holds it; NULL for a single line. */
static const char *split_at(const char *d, struct range r)
{
    size_t mid = r.lo + (r.hi - r.lo) / 2;
    const char *nl = memchr(d + mid, '\n', r.hi - mid);
    if (nl != NULL && (size_t)(nl + 1 - d) < r.hi)
        return nl + 1;
    nl = memrchr(d + r.lo, '\n', r.hi - 1 - r.lo);
    return nl != NULL ? nl + 1 : NULL;
}

/* The part was refused and rolled back: halved (each half sent on its own), or, a single
 * line, left out and logged with the row's start (device and time). Then the next part. */
static void part_refused(struct gr_archive *a)
{
    struct range r = a->part;
    const char *d = a->batch->data, *split = split_at(d, r);
    if (split != NULL && a->n_parts < RANGES_MAX) {
        a->parts[a->n_parts++] = (struct range){(size_t)(split - d), r.hi};
        a->part.hi = (size_t)(split - d);
    } else {
        uint64_t n = lines_in(d, r.lo, r.hi);
        gr_stats.archive_refused += n;
        a->left_out += n;
        /* The row's first two fields, its key: the device and the time. */
        int id_len = (int)strcspn(d + r.lo, "\t\n");
        const char *time = d + r.lo + id_len + (d[r.lo + id_len] == '\t');
        gr_error("archive: PostgreSQL refused %" PRIu64 " position(s), left out of the archive "
                 "(%.*s at %.*s): %.*s",
                 n, id_len < 160 ? id_len : 160, d + r.lo, (int)strcspn(time, "\t\n"), time,
                 (int)strcspn(a->refused, "\n"), a->refused);
        if (a->n_parts == 0) {
            a->refused[0] = '\0';
            batch_done(a);
            return;
        }
        a->part = a->parts[--a->n_parts];
    }
    a->refused[0] = '\0';
    a->phase = P_IDLE;
    next(a);
}

/* The COMMIT answered: the part is in PostgreSQL; the batch is when no part waits. */
static void part_done(struct gr_archive *a)
{
    a->moved += a->part_added;
    a->part_staged = a->staged_only; /* the next part tries the fast way again */
    if (a->n_parts > 0) {
        a->part = a->parts[--a->n_parts];
        a->phase = P_IDLE;
        next(a);
        return;
    }
    batch_done(a);
}

/* The whole batch is in PostgreSQL (or left out, a row refused). */
static void batch_done(struct gr_archive *a)
{
    uint64_t lines = a->batch->lines;
    gr_spool_done(a->spool, a->batch);
    a->batch = NULL;
    gr_stats.archive_written += a->moved;
    gr_stats.archive_duplicates +=
        lines > a->moved + a->left_out ? lines - a->moved - a->left_out : 0;
    gr_histogram_observe(&gr_stats.archive_batch, (double)(uv_hrtime() - a->batch_start_ns) / 1e9);
    a->phase = P_IDLE;
    next(a);
}

static bool unique_violation(const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return state != NULL && strcmp(state, UNIQUE_VIOLATION) == 0;
}

/* Whether PostgreSQL refused what a row holds, rather than failed: SQLSTATE class 22 (data
 * exception) or 23 (integrity constraint violation). */
static bool refused_row(const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return state != NULL && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0);
}

static void batch_result(struct gr_archive *a, PGresult *r)
{
    if (r == NULL) {
        if (a->phase == P_ROLLBACK && a->conflict) {
            a->conflict = false;
            a->part_staged = true;
            a->phase = P_IDLE;
            next(a);
        } else if (a->phase == P_ROLLBACK) {
            part_refused(a);
        } else if (a->refused[0] != '\0' || a->conflict) { /* aborted: end it */
            if (gr_pgconn_send(a->conn, "ROLLBACK", 0, NULL) == 0)
                a->phase = P_ROLLBACK;
        } else if (a->phase == P_COPY) { /* the COPY's rows are in staging: move, commit */
            if (gr_pgconn_send(a->conn, a->part_staged ? MOVE_SQL : "COMMIT", 0, NULL) == 0)
                a->phase = P_MOVE;
        } else {
            part_done(a);
        }
        return;
    }
    if (a->phase == P_ROLLBACK) {
        PQclear(r);
        return;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COPY_IN) {
        PQclear(r);
        put_pieces(a);
        return;
    }
    if (st == PGRES_TUPLES_OK && a->phase == P_MOVE && PQntuples(r) == 1) {
        a->part_added = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    } else if (st == PGRES_COMMAND_OK && a->phase == P_COPY && !a->part_staged &&
               strncmp(PQcmdStatus(r), "COPY", 4) == 0) {
        a->part_added = strtoull(PQcmdTuples(r), NULL, 10);
    } else if (st == PGRES_FATAL_ERROR && a->phase == P_COPY && !a->part_staged &&
               unique_violation(r)) {
        a->conflict = true; /* rolled back, then the part again through staging */
    } else if (st == PGRES_FATAL_ERROR && refused_row(r)) {
        snprintf(a->refused, sizeof(a->refused), "%s", PQresultErrorMessage(r));
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
    else if (a->phase == P_COPY || a->phase == P_MOVE || a->phase == P_ROLLBACK)
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
        gr_spool_retry(a->spool, a->batch); /* whole: its parts already in go by the key */
    a->batch = NULL;
    a->refused[0] = '\0';
    a->conflict = false;
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
    a->staged_only = cfg->n_cluster_nats > 0; /* every node writes every position */
    a->first_day = 1;
    a->last_day = 0; /* unknown yet */
    a->in_memory = cfg->archive_spool == NULL;
    struct gr_spool_options so = {
        .path = cfg->archive_spool,
        .max_bytes = a->in_memory && cfg->archive_spool_max > GR_ARCHIVE_MEMORY_MAX
                         ? GR_ARCHIVE_MEMORY_MAX
                         : cfg->archive_spool_max,
        .ready = on_spool_ready,
        .ctx = a,
    };
    int rc = gr_spool_open(loop, &so, &a->spool, err, sizeof(err));
    if (rc < 0) {
        gr_error("archive_spool: %s", err);
        free(a);
        return rc;
    }
    if (a->in_memory)
        gr_warn("archive: no archive_spool: positions waiting for PostgreSQL are held in "
                "memory (at most %" PRIu64 " bytes) and lost if the daemon stops",
                so.max_bytes);
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
    /* Already past the retention (a cluster node starting replays each unit's last position,
     * which may be weeks old): its day's partition is gone, and in positions_default it
     * would never expire. */
    if (fix->time_ms < gr_wall_clock_ms() - (int64_t)a->retention_days * 86400000) {
        gr_stats.archive_expired++;
        return;
    }
    /* Outside the day partitions' range it goes to positions_default (counted here, when
     * it is queued: a COPY straight into positions cannot say where each row went). */
    int64_t day = fix->time_ms / 86400000;
    if (a->first_day <= a->last_day && (day < a->first_day || day > a->last_day))
        gr_stats.archive_undated++;
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
    if (a->in_memory) {
        struct gr_spool_stats st;
        gr_spool_stats(a->spool, &st);
        if (st.queued_lines > 0)
            gr_warn("archive: stopping with %" PRIu64 " positions not archived; without "
                    "archive_spool they are lost",
                    st.queued_lines);
    }
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

/* The schema's pieces, then what the daemon's role does with them: insert positions, make
 * its temporary staging table, and make and drop partitions, which takes owning positions. */
#define CHECK_SQL                                                                                  \
    "SELECT CASE WHEN to_regclass('positions') IS NULL OR to_regclass('positions_default') IS "    \
    "NULL OR to_regprocedure('gpsrelay_archive_move()') IS NULL OR "                               \
    "to_regprocedure('gpsrelay_archive_staging()') IS NULL OR "                                    \
    "to_regprocedure('gpsrelay_archive_add_days(integer, date)') IS NULL OR "                      \
    "to_regprocedure('gpsrelay_archive_drop_days(integer, date)') IS NULL "                        \
    "THEN 'archive.sql is not applied to the archive database (or not all of it)' "                \
    "WHEN NOT has_table_privilege(to_regclass('positions'), 'INSERT') "                            \
    "THEN 'the role may not INSERT into positions' "                                               \
    "WHEN NOT has_database_privilege(current_database(), 'TEMPORARY') "                            \
    "THEN 'the role may not make temporary tables (the staging table)' "                           \
    "WHEN NOT pg_has_role((SELECT relowner FROM pg_class WHERE oid = to_regclass('positions')), "  \
    "'USAGE') THEN 'the role does not own positions: it cannot make or drop day partitions' "      \
    "ELSE '' END"

int gr_archive_check(const struct gr_config *cfg, char *err, size_t errlen)
{
    PGresult *r = gr_pgconn_check(cfg->archive_postgres, "archive", CHECK_SQL, err, errlen);
    if (r == NULL)
        return -1;
    const char *why = PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : "no answer to the check";
    int rc = why[0] == '\0' ? 0 : -1;
    if (rc < 0)
        snprintf(err, errlen, "archive: %s", why);
    PQclear(r);
    return rc;
}
