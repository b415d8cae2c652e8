/*
 * history.c - GET /api/history and GET /api/snapshot: the query pool, the requests, their
 * streamed answers. See history.h; the answers' shapes are in docs/history.md.
 *
 * The pool is GR_HISTORY_QUERIES_MAX slots, each at most one PostgreSQL connection
 * (pgconn.h), opened when a request first needs it and kept for the next. A request takes
 * an open idle slot, else opens an unused one and waits for it; when neither exists it is
 * answered 503 at once: "archive unreachable" if a slot's connection is down (it is being
 * retried), else "too many queries". Nothing queues: a client told 503 asks again after
 * Retry-After, and a queue would only hold sockets for answers that may never come.
 *
 * One statement per request, in single-row mode. Each row becomes a position (the hub's
 * encoder, history_encode.c) appended to the request's output buffer. Output is written
 * from LWS_CALLBACK_HTTP_WRITEABLE as HTTP/1.1 chunks of what the buffer holds; once it
 * holds OUT_SOFT bytes the connection stops reading (gr_pgconn_pause) until the client has
 * taken them, so however large the answer, a request holds about OUT_SOFT of it plus what
 * libpq had already read.
 *
 * GeoJSON wants the track's LineString, whose coordinates are every position's, and a
 * Point per position. Both in one pass: the Points are streamed as the rows arrive and only
 * the coordinates are kept (8 bytes per position: at most 800 KB at GR_HISTORY_LIMIT_MAX),
 * to write the LineString feature last. A FeatureCollection's order carries no meaning.
 *
 * The snapshot sends the agency's units as one text array and lets PostgreSQL look up each
 * unit's latest position through the (device, time) key, one index probe per unit, in a
 * single statement; units with no row are the "missing" list, written at the end.
 */
#include "gpsrelay/history_query.h"
#include "gpsrelay/history.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libwebsockets.h>

#include "gpsrelay/buf.h"
#include "gpsrelay/calendar.h"
#include "gpsrelay/http.h"
#include "gpsrelay/jsonw.h"
#include "gpsrelay/list.h"
#include "gpsrelay/log.h"
#include "gpsrelay/mapping.h"
#include "gpsrelay/pgconn.h"
#include "gpsrelay/stats.h"
#include "gpsrelay/token.h"

#include "history_encode.h"

/* Output a request holds before its connection stops reading rows; also about the size of
 * one chunk. 16 KiB: a few dozen positions per write, the size of a console's frame. */
#define OUT_SOFT (16 * 1024)

/* What a request may hold at all: OUT_SOFT, then what libpq had read before the pause
 * took effect (its input buffer, tens of KB) and the answer's tail. A request past it is
 * cut rather than allowed to grow. */
#define OUT_HARD (1024 * 1024)

/* Room before the data for a chunk's head: up to 8 hex digits of length and CRLF. */
#define CHUNK_HEAD 10

/* A request whose client takes nothing for this long is cut (lws's own default is 5 s from
 * the request). Longer than pgconn's own bounds on a connection attempt and on a silent
 * statement (10 s each), so a hung archive is answered 503 by those first. Re-armed by
 * every chunk the client takes. */
#define STALL_S 30

/* A down connection is tried again at a request's behest at most this often (slot_take). */
#define RETRY_NOW_MS 1000

/* Longest Authorization header read: "Bearer " and the longest token. */
#define AUTHORIZATION_MAX (GR_TOKEN_MAX + 16)

/* Sent to every connection before its first statement: doubles in their shortest exact
 * text (only a server configured otherwise needs it), and no writes, ever, on these. */
static const char SESSION_SQL[] = "SET extra_float_digits = 3; "
                                  "SET default_transaction_read_only = on";

/* One unit's track, in time order: from and to inclusive; limit + 1 rows, the last only to
 * know that the answer is truncated. */
static const char HISTORY_SQL[] = "SELECT " GR_HISTORY_COLUMNS " FROM positions "
                                  "WHERE device = $1 AND time >= $2::timestamptz "
                                  "AND time <= $3::timestamptz ORDER BY time LIMIT $4";

/* Each unit's latest position within (at - stale_after, at]: one probe of the key's index
 * per unit (COLLATE "C" as the key is, so the index serves it); units in the order given. */
static const char SNAPSHOT_SQL[] =
    "SELECT p.* FROM unnest($1::text[]) WITH ORDINALITY AS u(id, i) CROSS JOIN LATERAL "
    "(SELECT " GR_HISTORY_COLUMNS " FROM positions WHERE device = u.id COLLATE \"C\" "
    "AND time <= $2::timestamptz AND time > $3::timestamptz ORDER BY time DESC LIMIT 1) p "
    "ORDER BY u.i";

enum slot_state {
    SLOT_EMPTY,      /* no connection */
    SLOT_CONNECTING, /* opened for a request, not yet up */
    SLOT_UP,         /* open; idle unless req */
    SLOT_DOWN,       /* lost; pgconn is trying again */
    SLOT_CLOSING     /* dropped (its client went); EMPTY once stopped */
};

struct slot {
    struct gr_history *h;
    struct gr_pgconn *pg;
    enum slot_state state;
    struct gr_history_req *req; /* the request it serves, or NULL */
    uint64_t retried_ms;        /* uv_now() when a request last hurried its reconnection */
};

struct gr_history {
    uv_loop_t *loop;
    const struct gr_config *cfg;    /* borrowed: archive_postgres, stale_after */
    struct gr_hub *hub;             /* borrowed: the mapping */
    struct gr_admission *admission; /* borrowed: Origin and token checks */
    struct slot slots[GR_HISTORY_QUERIES_MAX];
    struct gr_history_req *reqs; /* every request alive, to cut them when stopping */
    uv_timer_t stop_timer;       /* closed by gr_history_stop: done comes from a callback */
    bool stopping;
    size_t closing; /* connections and the timer not yet closed */
    gr_stopped_fn stopped;
    void *stopped_arg;
    bool warned_row; /* a row that is no position was logged (once) */
};

enum req_kind { REQ_HISTORY, REQ_SNAPSHOT };

/* Where the answer is: rows still to come, then its tail (written piecewise, in stages),
 * then complete. */
enum req_phase { PHASE_ROWS, PHASE_TAIL, PHASE_END };

struct gr_history_req {
    struct gr_history *h;
    struct lws *wsi;
    struct slot *slot; /* while its statement runs (or its connection opens) */
    struct gr_history_req *prev, *next;
    enum req_kind kind;
    enum req_phase phase;
    unsigned error;     /* non-zero: answer this status instead (before any head) */
    const char *reason; /* ...with this body */
    bool sent;          /* its statement went to the archive */
    bool head_sent;
    bool cut; /* end the connection at the next writeable: the answer broke */
    bool write_asked;
    bool paused;
    struct gr_buf out; /* LWS_PRE + CHUNK_HEAD headroom */
    size_t rows;       /* positions written */
    bool truncated;
    int tail_stage;
    size_t tail_i;
    /* history */
    struct gr_history_query q;
    char *json_id;
    int32_t *coords; /* geojson: lon, lat of each position in 1e-7 degree */
    size_t coords_cap;
    /* snapshot */
    struct gr_snapshot_query sq;
    char **units; /* the agency's device ids, in the order sent */
    size_t n_units;
    size_t next_unit; /* rows come in units' order: the first unit not yet matched */
    bool *present;
    size_t n_missing; /* ids written to the missing list */
};

/* ---- answers -------------------------------------------------------------------------- */

static void count(unsigned status)
{
    enum gr_history_status s;
    switch (status) {
    case 200:
        s = GR_HISTORY_OK;
        break;
    case 400:
        s = GR_HISTORY_BAD_REQUEST;
        break;
    case 401:
        s = GR_HISTORY_UNAUTHORIZED;
        break;
    case 403:
        s = GR_HISTORY_FORBIDDEN;
        break;
    case 404:
        s = GR_HISTORY_NOT_FOUND;
        break;
    case 405:
        s = GR_HISTORY_METHOD;
        break;
    case 503:
        s = GR_HISTORY_UNAVAILABLE;
        break;
    default:
        s = GR_HISTORY_ERROR;
        break;
    }
    gr_stats.history_requests[s]++;
}

static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
                      unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

/*
 * A whole answer that is no position data: status, a one-line plain text body, and the
 * headers the status wants (WWW-Authenticate with 401, Retry-After with 503). Counted.
 * Returns what the lws callback must return.
 */
static int answer(struct lws *wsi, unsigned status, const char *body)
{
    count(status);
    size_t len = strlen(body);
    unsigned char buf[LWS_PRE + 1024];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    if (lws_add_http_common_headers(wsi, status, "text/plain; charset=utf-8", len, &p, end) ||
        add_header(wsi, "cache-control:", "no-store", &p, end) ||
        (status == 401 && add_header(wsi, "www-authenticate:", "Bearer", &p, end)) ||
        (status == 503 && add_header(wsi, "retry-after:", "1", &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    unsigned char text[LWS_PRE + 256];
    if (len > sizeof(text) - LWS_PRE)
        return -1;
    memcpy(text + LWS_PRE, body, len);
    if (lws_write(wsi, text + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) != (int)len)
        return -1;
    return gr_http_completed(wsi);
}

/* The head of a 200, whose body follows in chunks. Counted. */
static int head_200(struct lws *wsi, const char *type)
{
    count(200);
    unsigned char buf[LWS_PRE + 512];
    unsigned char *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    if (lws_add_http_header_status(wsi, 200, &p, end) ||
        add_header(wsi, "content-type:", type, &p, end) ||
        add_header(wsi, "transfer-encoding:", "chunked", &p, end) ||
        add_header(wsi, "cache-control:", "no-store", &p, end) ||
        add_header(wsi, "x-content-type-options:", "nosniff", &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    return 0;
}

static const char *content_type(const struct gr_history_req *r)
{
    return r->kind == REQ_SNAPSHOT             ? "application/json"
           : r->q.format == GR_HISTORY_GEOJSON ? "application/geo+json"
                                               : "application/x-ndjson";
}

/* ---- requests ------------------------------------------------------------------------- */

static void req_free(struct gr_history_req *r)
{
    GR_LIST_REMOVE(r->h->reqs, r, prev, next);
    gr_buf_free(&r->out);
    free(r->json_id);
    free(r->coords);
    for (size_t i = 0; i < r->n_units; i++)
        free(r->units[i]);
    free(r->units);
    free(r->present);
    free(r);
}

static void want_write(struct gr_history_req *r)
{
    if (r->write_asked)
        return;
    r->write_asked = true;
    gr_http_want_write(r->wsi);
}

/* The request's answer cannot be what it should: an error status when nothing was written
 * yet, else the connection is cut so the client sees an incomplete answer. */
static void req_fail(struct gr_history_req *r, unsigned status, const char *reason)
{
    if (r->head_sent) {
        r->cut = true;
    } else if (r->error == 0) {
        r->error = status;
        r->reason = reason;
    }
    want_write(r);
}

static void slot_stopped(void *arg);

/* Drops the slot's connection (its statement with it: the server ends it when it sees
 * the socket closed) and frees the slot for a fresh one once closed. */
static void slot_drop(struct slot *s)
{
    if (s->req != NULL)
        s->req->slot = NULL;
    s->req = NULL;
    s->state = SLOT_CLOSING;
    s->h->closing++;
    gr_pgconn_stop(s->pg, slot_stopped, s);
}

/* The statement of the slot's request has ended: the slot is free, the request writes
 * its tail. */
static void slot_release(struct slot *s)
{
    struct gr_history_req *r = s->req;
    s->req = NULL;
    if (s->pg != NULL)
        gr_pgconn_pause(s->pg, false);
    if (r == NULL)
        return;
    r->slot = NULL;
    r->paused = false;
    if (r->phase == PHASE_ROWS)
        r->phase = PHASE_TAIL;
    want_write(r);
}

/* The text of ms for a timestamptz parameter, clamped to 1970 (the look-back of an early
 * snapshot). */
static void time_param(int64_t ms, char out[GR_TIME_TEXT_MAX])
{
    gr_time_format(ms < 0 ? 0 : ms, out);
}

/* Sends the request's statement on its slot's open connection. */
static void req_send(struct gr_history_req *r)
{
    struct slot *s = r->slot;
    char t1[GR_TIME_TEXT_MAX], t2[GR_TIME_TEXT_MAX], limit[24];
    int rc;
    r->sent = true;
    if (r->kind == REQ_HISTORY) {
        time_param(r->q.from_ms, t1);
        time_param(r->q.to_ms, t2);
        snprintf(limit, sizeof(limit), "%ld", r->q.limit + 1);
        const char *values[] = {r->q.device, t1, t2, limit};
        rc = gr_pgconn_send(s->pg, HISTORY_SQL, 4, values);
    } else {
        /* The ids as an array literal: ids are letters, digits and ._:@- (mapping.h), so
         * quoting each is all the escaping needed. */
        struct gr_buf ids = gr_buf_make(0);
        bool ok = gr_buf_append(&ids, "{", 1) == 0;
        for (size_t i = 0; ok && i < r->n_units; i++) {
            ok = gr_buf_append(&ids, ",\"" + (i == 0), 2 - (i == 0)) == 0 &&
                 gr_buf_puts(&ids, r->units[i]) == 0 && gr_buf_append(&ids, "\"", 1) == 0;
        }
        ok = ok && gr_buf_append(&ids, "}", 2) == 0; /* with the NUL */
        if (!ok) {
            gr_buf_free(&ids);
            slot_release(s);
            req_fail(r, 500, "out of memory\n");
            return;
        }
        time_param(r->sq.at_ms, t1);
        time_param(r->sq.at_ms - (int64_t)r->h->cfg->stale_after * 1000, t2);
        const char *values[] = {gr_buf_data(&ids), t1, t2};
        rc = gr_pgconn_send(s->pg, SNAPSHOT_SQL, 3, values);
        gr_buf_free(&ids);
    }
    /* Failed: pgconn says `down` later, which answers the request. */
    if (rc == 0 && !PQsetSingleRowMode(gr_pgconn_conn(s->pg)))
        gr_warn("history: single-row mode refused; this answer comes whole");
}

/* One row of the request's answer. */
static void req_row(struct gr_history_req *r, PGresult *res, int row)
{
    struct gr_history *h = r->h;
    if (r->kind == REQ_HISTORY && r->rows == (size_t)r->q.limit) {
        r->truncated = true; /* the (limit + 1)th: there is more */
        return;
    }
    const char *v[GR_HCOL_COUNT];
    for (int c = 0; c < GR_HCOL_COUNT; c++)
        v[c] = PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
    const char *why;
    struct gr_position *p = gr_history_position(v, r->json_id, &why);
    if (p == NULL) {
        if (why == NULL) {
            req_fail(r, 500, "out of memory\n");
        } else if (!h->warned_row) {
            h->warned_row = true;
            gr_warn("history: an archived row of %s is no position (its %s); such rows are "
                    "left out of answers (logged once)",
                    v[GR_HCOL_DEVICE] ? v[GR_HCOL_DEVICE] : "?", why);
        }
        return;
    }
    int rc = 0;
    if (r->kind == REQ_SNAPSHOT) {
        while (r->next_unit < r->n_units && strcmp(r->units[r->next_unit], v[GR_HCOL_DEVICE]) != 0)
            r->next_unit++;
        if (r->next_unit < r->n_units)
            r->present[r->next_unit++] = true;
        rc = (r->rows > 0 ? gr_buf_append(&r->out, ",", 1) : 0) ||
             gr_buf_append(&r->out, p->json, p->json_len);
    } else if (r->q.format == GR_HISTORY_GEOJSON) {
        if (r->rows == r->coords_cap) {
            size_t cap = r->coords_cap ? 2 * r->coords_cap : 256;
            cap = cap < (size_t)r->q.limit ? cap : (size_t)r->q.limit;
            int32_t *c = realloc(r->coords, cap * 2 * sizeof(*c));
            if (c == NULL)
                rc = -ENOMEM;
            else
                r->coords = c, r->coords_cap = cap;
        }
        rc = rc ? rc : gr_history_put_point(&r->out, p, r->rows == 0, r->coords + 2 * r->rows);
    } else {
        rc = gr_history_put_line(&r->out, p);
    }
    free(p);
    if (rc != 0) {
        req_fail(r, 500, "out of memory\n");
        return;
    }
    r->rows++;
}

/* Appends the beginning of the answer, before any row. 0 or -ENOMEM. */
static int req_start(struct gr_history_req *r)
{
    if (r->kind == REQ_HISTORY) {
        return r->q.format == GR_HISTORY_GEOJSON
                   ? gr_buf_puts(&r->out, "{\"type\":\"FeatureCollection\",\"features\":[")
                   : 0;
    }
    char at[GR_TIME_TEXT_MAX];
    gr_time_format(r->sq.at_ms, at);
    if (gr_buf_puts(&r->out, "{\"agency\":") < 0 ||
        gr_buf_json_string(&r->out, r->sq.agency, strlen(r->sq.agency)) < 0 ||
        gr_buf_puts(&r->out, ",\"at\":\"") < 0 || gr_buf_puts(&r->out, at) < 0 ||
        gr_buf_puts(&r->out, "\",\"positions\":[") < 0)
        return -ENOMEM;
    return 0;
}

/*
 * Appends the answer's tail after the last row, in stages, until out holds OUT_SOFT
 * (a long LineString or missing list takes several writes). Sets PHASE_END when all of it
 * is in. 0 or -ENOMEM.
 */
static int req_tail(struct gr_history_req *r)
{
    struct gr_buf *o = &r->out;
    while (r->phase == PHASE_TAIL && o->len < OUT_SOFT) {
        int rc = 0;
        if (r->kind == REQ_HISTORY && r->q.format == GR_HISTORY_NDJSON) {
            rc = r->truncated ? gr_buf_puts(o, "{\"truncated\":true}\n") : 0;
            r->phase = PHASE_END;
        } else if (r->kind == REQ_HISTORY) {
            /* The track: a LineString needs two positions (RFC 7946 3.1.4); with fewer,
             * the feature is there with no geometry. */
            bool line = r->rows >= 2;
            switch (r->tail_stage) {
            case 0:
                rc = gr_buf_puts(o, r->rows ? ",{\"type\":\"Feature\",\"geometry\":"
                                            : "{\"type\":\"Feature\",\"geometry\":") ||
                     gr_buf_puts(o, line ? "{\"type\":\"LineString\",\"coordinates\":[" : "null");
                r->tail_stage = line ? 1 : 2;
                break;
            case 1:
                for (; rc == 0 && r->tail_i < r->rows && o->len < OUT_SOFT; r->tail_i++)
                    rc = gr_history_put_coord(o, r->coords + 2 * r->tail_i, r->tail_i == 0);
                if (r->tail_i == r->rows)
                    r->tail_stage = 2;
                break;
            default:
                rc = (line ? gr_buf_puts(o, "]}") : 0) ||
                     gr_buf_puts(o, ",\"properties\":{\"device\":") || gr_buf_puts(o, r->json_id) ||
                     gr_buf_puts(o, "}}]") ||
                     (r->truncated ? gr_buf_puts(o, ",\"truncated\":true") : 0) ||
                     gr_buf_puts(o, "}");
                r->phase = PHASE_END;
                break;
            }
        } else {
            switch (r->tail_stage) {
            case 0:
                rc = gr_buf_puts(o, "],\"missing\":[");
                r->tail_stage = 1;
                break;
            case 1:
                for (; rc == 0 && r->tail_i < r->n_units && o->len < OUT_SOFT; r->tail_i++) {
                    if (r->present[r->tail_i])
                        continue;
                    rc = (r->n_missing++ > 0 ? gr_buf_append(o, ",", 1) : 0) ||
                         gr_buf_json_string(o, r->units[r->tail_i], strlen(r->units[r->tail_i]));
                }
                if (r->tail_i == r->n_units)
                    r->tail_stage = 2;
                break;
            default:
                rc = gr_buf_puts(o, "]}");
                r->phase = PHASE_END;
                break;
            }
        }
        if (rc != 0)
            return -ENOMEM;
    }
    return 0;
}

/* ---- the pool's connections ----------------------------------------------------------- */

/* Up and idle: a new connection, or one whose probe has ended. */
static void on_idle(void *ctx)
{
    struct slot *s = ctx;
    s->state = SLOT_UP;
    if (s->req != NULL && !s->req->sent)
        req_send(s->req);
}

static void on_result(void *ctx, PGresult *res)
{
    struct slot *s = ctx;
    struct gr_history_req *r = s->req;
    if (res == NULL) {
        slot_release(s);
        return;
    }
    ExecStatusType st = PQresultStatus(res);
    if (r != NULL && (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK)) {
        int n = PQntuples(res);
        for (int i = 0; i < n && !r->cut && r->error == 0; i++)
            req_row(r, res, i);
        if (r->out.len > OUT_HARD) {
            req_fail(r, 500, "answer too large\n");
        } else if (r->out.len >= OUT_SOFT && !r->paused) {
            r->paused = true; /* the client is slower than the archive */
            gr_pgconn_pause(s->pg, true);
        }
        if (r->out.len > 0)
            want_write(r);
    } else if (r != NULL && st != PGRES_COMMAND_OK) {
        /* Connection exceptions (08), operator intervention (57: a shutdown, a cancel) and
         * insufficient resources (53) pass; anything else is ours or the schema's. */
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        bool passing =
            state != NULL && (strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0 ||
                              strncmp(state, "53", 2) == 0);
        gr_warn("history: the archive refused a query: %s", PQresultErrorMessage(res));
        req_fail(r, passing ? 503 : 500,
                 passing ? "archive unavailable\n" : "the archive refused the query\n");
    }
    PQclear(res);
    /* A request that broke stops its statement now rather than reading it to the end. */
    if (r != NULL && (r->cut || r->error != 0))
        slot_drop(s);
}

static void on_down(void *ctx)
{
    struct slot *s = ctx;
    s->state = SLOT_DOWN;
    struct gr_history_req *r = s->req;
    if (r == NULL)
        return;
    s->req = NULL;
    r->slot = NULL;
    req_fail(r, 503, "archive unreachable\n");
}

static void maybe_stopped(struct gr_history *h)
{
    if (!h->stopping || h->closing > 0 || h->stopped == NULL)
        return;
    gr_stopped_fn done = h->stopped;
    h->stopped = NULL;
    done(h->stopped_arg);
}

static void slot_stopped(void *arg)
{
    struct slot *s = arg;
    gr_pgconn_free(s->pg);
    s->pg = NULL;
    s->state = SLOT_EMPTY;
    s->h->closing--;
    maybe_stopped(s->h);
}

static int slot_open(struct gr_history *h, struct slot *s)
{
    struct gr_pgconn_options opt = {
        .conninfo = h->cfg->archive_postgres,
        .name = "history",
        .setup_sql = SESSION_SQL,
        .idle = on_idle,
        .result = on_result,
        .down = on_down,
        .ctx = s,
    };
    int rc = gr_pgconn_start(h->loop, &opt, &s->pg);
    if (rc == 0)
        s->state = SLOT_CONNECTING;
    return rc;
}

/*
 * A slot for a new request: an open idle one; else, unless a connection is down (the
 * archive is unreachable: *why says so), an unused one, opened now. NULL with *why when
 * none.
 */
static struct slot *slot_take(struct gr_history *h, const char **why)
{
    struct slot *unused = NULL;
    bool down = false;
    for (size_t i = 0; i < GR_HISTORY_QUERIES_MAX; i++) {
        struct slot *s = &h->slots[i];
        if (s->state == SLOT_UP && s->req == NULL && !gr_pgconn_busy(s->pg))
            return s;
        if (s->state == SLOT_DOWN) {
            /* The archive may be back long before pgconn's backoff (up to 30 s) ends: a
             * request asks for an attempt now, at most once a second per connection, and
             * the one after Retry-After finds it open. */
            uint64_t now = uv_now(h->loop);
            if (s->retried_ms == 0 || now - s->retried_ms >= RETRY_NOW_MS) {
                s->retried_ms = now;
                gr_pgconn_retry_now(s->pg);
            }
            down = true;
        }
        if (s->state == SLOT_EMPTY && unused == NULL)
            unused = s;
    }
    *why = down ? "archive unreachable\n" : "too many queries\n";
    if (down || unused == NULL)
        return NULL;
    if (slot_open(h, unused) < 0) {
        *why = "out of memory\n";
        return NULL;
    }
    return unused;
}

/* ---- serving -------------------------------------------------------------------------- */

bool gr_history_path(const char *path)
{
    return strcmp(path, "/api/history") == 0 || strcmp(path, "/api/snapshot") == 0;
}

/* The token of an "Authorization: Bearer" header into *bearer (NULL: no such header);
 * an Authorization header of another scheme gives an empty token (refused as missing). */
static size_t bearer_token(struct lws *wsi, char *buf, size_t cap, const char **bearer)
{
    *bearer = NULL;
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 0)
        return 0;
    *bearer = buf;
    if (n >= (int)cap || lws_hdr_copy(wsi, buf, (int)cap, WSI_TOKEN_HTTP_AUTHORIZATION) < 0)
        return GR_TOKEN_MAX + 1; /* too long: malformed */
    if (strncasecmp(buf, "Bearer ", 7) != 0)
        return 0;
    char *t = buf + 7;
    while (*t == ' ')
        t++;
    size_t len = strlen(t);
    while (len > 0 && t[len - 1] == ' ')
        len--;
    *bearer = t;
    return len;
}

static bool has_agency(const struct gr_device *d, const char *agency)
{
    size_t lo = 0, hi = d->n_agencies;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(d->agencies[mid], agency);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Whether the token (NULL: auth none) may see a device with these agencies. */
static bool device_allowed(const struct gr_device *d, const struct gr_token *claims)
{
    if (d == NULL)
        return false;
    if (claims == NULL)
        return true;
    for (size_t i = 0; i < d->n_agencies; i++) {
        if (gr_token_has_agency(claims, d->agencies[i]))
            return true;
    }
    return false;
}

/* The agency's device ids, copied (the mapping may be replaced while the query runs).
 * Returns how many (0: an agency the mapping does not know), or -ENOMEM. */
static long agency_units(const struct gr_mapping *m, struct gr_history_req *r)
{
    size_t n = m ? gr_mapping_count(m) : 0, k = 0;
    for (size_t i = 0; i < n; i++)
        k += has_agency(gr_mapping_device(m, i), r->sq.agency);
    if (k == 0)
        return 0;
    r->units = calloc(k, sizeof(*r->units));
    r->present = calloc(k, sizeof(*r->present));
    if (r->units == NULL || r->present == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const struct gr_device *d = gr_mapping_device(m, i);
        if (has_agency(d, r->sq.agency) && (r->units[r->n_units++] = strdup(d->id)) == NULL)
            return -ENOMEM;
    }
    return (long)k;
}

int gr_history_serve(struct gr_history *h, struct lws *wsi, const char *path,
                     struct gr_history_req **reqp)
{
    static const char forbidden[] = "forbidden\n";
    if (h == NULL || h->cfg->archive_postgres == NULL)
        return answer(wsi, 404, "not found\n");
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return answer(wsi, 405, "method not allowed\n");

    char auth[AUTHORIZATION_MAX];
    const char *bearer;
    size_t bearer_len = bearer_token(wsi, auth, sizeof(auth), &bearer);
    struct gr_token claims;
    bool authed = false;
    int refused = gr_admission_check_api(h->admission, wsi, bearer, bearer_len, &claims, &authed);
    if (refused == 401)
        return answer(wsi, 401, "a valid token is required\n");
    if (refused != 0)
        return answer(wsi, 403, forbidden);

    struct gr_history_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -1;
    r->h = h;
    r->wsi = wsi;
    r->out = gr_buf_make(LWS_PRE + CHUNK_HEAD);
    GR_LIST_PUSH(h->reqs, r, prev, next);
    char qs[GR_HISTORY_QUERY_MAX + 1];
    long qlen = gr_http_query(wsi, "token", qs, sizeof(qs));
    const char *bad = NULL;
    int status = 0;
    const struct gr_mapping *m = gr_hub_mapping(h->hub);
    r->kind = strcmp(path, "/api/snapshot") == 0 ? REQ_SNAPSHOT : REQ_HISTORY;
    if (qlen < 0) {
        bad = "query too long\n";
    } else if (r->kind == REQ_HISTORY) {
        bad = gr_history_query_parse(qs, (size_t)qlen, &r->q);
        const struct gr_device *d =
            m && !bad ? gr_mapping_find(m, r->q.device, strlen(r->q.device)) : NULL;
        if (!bad && !device_allowed(d, authed ? &claims : NULL))
            status = 403;
        else if (!bad && (r->json_id = gr_json_quote(r->q.device)) == NULL)
            status = 500;
    } else {
        bad = gr_snapshot_query_parse(qs, (size_t)qlen, &r->sq);
        long n = bad ? 0 : agency_units(m, r);
        if (!bad && n < 0)
            status = 500;
        else if (!bad && (n == 0 || (authed && !gr_token_has_agency(&claims, r->sq.agency))))
            status = 403;
    }
    int rc;
    const char *why = "stopping\n";
    if (bad != NULL || status != 0) {
        char line[128];
        if (bad != NULL)
            snprintf(line, sizeof(line), "%s%s", bad, bad[strlen(bad) - 1] == '\n' ? "" : "\n");
        rc = answer(wsi, bad ? 400 : (unsigned)status,
                    bad             ? line
                    : status == 403 ? forbidden
                                    : "out of memory\n");
    } else if (h->stopping || (r->slot = slot_take(h, &why)) == NULL) {
        rc = answer(wsi, 503, why);
    } else if (req_start(r) < 0) {
        r->slot->req = NULL;
        r->slot = NULL;
        rc = answer(wsi, 500, "out of memory\n");
    } else {
        r->slot->req = r;
        if (r->slot->state == SLOT_UP)
            req_send(r);
        gr_http_set_deadline(wsi, STALL_S);
        *reqp = r;
        return 0;
    }
    req_free(r);
    return rc;
}

/* Writes what out holds as one chunk; last: the closing empty chunk too. 0, or -1 when
 * the connection failed. */
static int write_chunk(struct gr_history_req *r, bool last)
{
    struct gr_buf *o = &r->out;
    size_t len = o->len;
    char head[CHUNK_HEAD + 1];
    int hlen = len > 0 ? snprintf(head, sizeof(head), "%zx\r\n", len) : 0;
    if ((len > 0 && gr_buf_append(o, "\r\n", 2) < 0) ||
        (last && gr_buf_append(o, "0\r\n\r\n", 5) < 0))
        return -1;
    if (o->len == 0)
        return 0;
    char *data = o->mem + o->head - hlen; /* into the headroom, LWS_PRE still before it */
    memcpy(data, head, (size_t)hlen);
    size_t n = (size_t)hlen + o->len;
    o->len = 0;
    return lws_write(r->wsi, (unsigned char *)data, n,
                     last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)n
               ? -1
               : 0;
}

int gr_history_writeable(struct lws *wsi, struct gr_history_req **reqp)
{
    struct gr_history_req *r = *reqp;
    r->write_asked = false;
    if (r->error == 0 && !r->cut && r->phase == PHASE_ROWS && r->out.len == 0)
        return 0; /* nothing yet (lws may call unasked): the status is not known either */
    if (!r->head_sent && r->error != 0) {
        if (r->slot != NULL)
            slot_drop(r->slot);
        int rc = answer(wsi, r->error, r->reason);
        req_free(r);
        *reqp = NULL;
        return rc;
    }
    if (r->cut) {
        gr_history_done(reqp);
        return -1;
    }
    if (!r->head_sent) {
        if (head_200(wsi, content_type(r)) < 0) {
            gr_history_done(reqp);
            return -1;
        }
        r->head_sent = true;
    }
    if (r->phase == PHASE_TAIL && req_tail(r) < 0) {
        gr_history_done(reqp);
        return -1;
    }
    bool last = r->phase == PHASE_END;
    if (write_chunk(r, last) < 0) {
        gr_history_done(reqp);
        return -1;
    }
    if (r->paused && r->slot != NULL) {
        r->paused = false; /* the client took it all: rows again */
        gr_pgconn_pause(r->slot->pg, false);
    }
    if (last) {
        req_free(r);
        *reqp = NULL;
        return gr_http_completed(wsi);
    }
    if (r->phase == PHASE_TAIL)
        want_write(r);
    gr_http_set_deadline(wsi, STALL_S);
    return 0;
}

void gr_history_done(struct gr_history_req **reqp)
{
    struct gr_history_req *r = *reqp;
    if (r == NULL)
        return;
    if (r->slot != NULL)
        slot_drop(r->slot);
    req_free(r);
    *reqp = NULL;
}

/* ---- the pool ------------------------------------------------------------------------- */

struct gr_history *gr_history_new(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                                  struct gr_admission *admission)
{
    struct gr_history *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->loop = loop;
    h->cfg = cfg;
    h->hub = hub;
    h->admission = admission;
    for (size_t i = 0; i < GR_HISTORY_QUERIES_MAX; i++)
        h->slots[i].h = h;
    uv_timer_init(loop, &h->stop_timer);
    h->stop_timer.data = h;
    return h;
}

void gr_history_set_config(struct gr_history *h, const struct gr_config *cfg)
{
    h->cfg = cfg;
}

static void timer_closed(uv_handle_t *t)
{
    struct gr_history *h = t->data;
    h->closing--;
    maybe_stopped(h);
}

void gr_history_stop(struct gr_history *h, gr_stopped_fn done, void *arg)
{
    if (h->stopping)
        return;
    h->stopping = true;
    h->stopped = done;
    h->stopped_arg = arg;
    for (struct gr_history_req *r = h->reqs; r != NULL; r = r->next)
        req_fail(r, 503, "stopping\n");
    for (size_t i = 0; i < GR_HISTORY_QUERIES_MAX; i++) {
        struct slot *s = &h->slots[i];
        if (s->pg != NULL && s->state != SLOT_CLOSING)
            slot_drop(s);
    }
    h->closing++;
    uv_close((uv_handle_t *)&h->stop_timer, timer_closed);
}

void gr_history_free(struct gr_history *h)
{
    if (h == NULL)
        return;
    while (h->reqs != NULL) /* none: lws let go of every connection before this */
        req_free(h->reqs);
    free(h);
}
