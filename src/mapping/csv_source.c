/*
 * csv_source.c - the mapping from the CSV file of mapping_file (docs/mapping.md), and the
 * CSV read on the thread pool (source.h).
 *
 * At start the file is read at once, before the loop serves anything, and a bad one stops
 * the start. On SIGHUP it is read on the thread pool and delivered when back; one read at
 * a time, and a SIGHUP meanwhile reads the file again once this one is back, so reads never
 * overtake each other.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/log.h"
#include "gpsrelay/mapping_source.h"
#include "gpsrelay/stats.h"
#include "source.h"

/* ---- a CSV file read on the thread pool ------------------------------------------------- */

struct gr_csv_read {
    uv_work_t work;
    char *path; /* owned: a reload may free the configuration that named it */
    void (*done)(void *ctx, struct gr_mapping *m, const char *err);
    void *ctx;
    bool cancelled; /* done is not called; the result is freed, stopped is told */
    gr_stopped_fn stopped;
    void *stopped_arg;
    struct gr_mapping *m; /* the result, or NULL with err */
    char err[512];
};

static void csv_read_work(uv_work_t *w)
{
    struct gr_csv_read *r = w->data;
    gr_mapping_load_csv(r->path, &r->m, r->err, sizeof(r->err));
}

static void csv_read_after(uv_work_t *w, int status)
{
    struct gr_csv_read *r = w->data;
    gr_stopped_fn stopped = r->cancelled ? r->stopped : NULL;
    void *stopped_arg = r->stopped_arg;
    if (r->cancelled || status != 0)
        gr_mapping_free(r->m);
    else
        r->done(r->ctx, r->m, r->err);
    free(r->path);
    free(r);
    if (stopped != NULL)
        stopped(stopped_arg);
}

int gr_csv_read_start(uv_loop_t *loop, const char *path,
                      void (*done)(void *ctx, struct gr_mapping *m, const char *err), void *ctx,
                      struct gr_csv_read **out)
{
    struct gr_csv_read *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->path = strdup(path)) == NULL) {
        free(r);
        gr_error("mapping: out of memory reading %s; the previous mapping stays", path);
        return -ENOMEM;
    }
    r->done = done;
    r->ctx = ctx;
    r->work.data = r;
    int rc = uv_queue_work(loop, &r->work, csv_read_work, csv_read_after);
    if (rc < 0) {
        gr_error("mapping: cannot queue the reading of %s: %s; the previous mapping stays", path,
                 uv_strerror(rc));
        free(r->path);
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void gr_csv_read_stop(struct gr_csv_read *r, gr_stopped_fn stopped, void *arg)
{
    if (r->cancelled)
        return;
    r->cancelled = true;
    r->stopped = stopped;
    r->stopped_arg = arg;
    uv_cancel((uv_req_t *)&r->work); /* fails, harmlessly, once the read is running */
}

/* ---- the source ------------------------------------------------------------------------- */

struct csv_source {
    struct gr_mapping_source_env env;
    struct gr_csv_read *read; /* in flight, or NULL */
    char *again;              /* owned: a SIGHUP came meanwhile, read this path next; or NULL */
    /* Never started: closed at stop, so done comes from a loop callback even with no
     * read in flight. */
    uv_idle_t later;
    int pending;           /* while stopping: the read and the handle not yet done */
    gr_stopped_fn stopped; /* stop.h */
    void *stopped_arg;
};

static bool csv_configured(const struct gr_config *cfg)
{
    return cfg->mapping_file != NULL;
}

static const char *csv_where(const struct gr_config *cfg)
{
    return cfg->mapping_file;
}

static void csv_read(struct csv_source *s, const char *path);

static void csv_reloaded(void *ctx, struct gr_mapping *m, const char *err)
{
    struct csv_source *s = ctx;
    s->read = NULL;
    if (m == NULL) {
        gr_stats.mapping_load_failures++;
        gr_error("%s", err);
        gr_warn("mapping: reload failed; the previous mapping stays in force");
    } else {
        s->env.deliver(s->env.ctx, m);
    }
    char *again = s->again;
    s->again = NULL;
    if (again != NULL)
        csv_read(s, again);
    free(again);
}

/* Reads path on the thread pool and delivers it when back; failures are logged. */
static void csv_read(struct csv_source *s, const char *path)
{
    if (s->read == NULL) {
        gr_csv_read_start(s->env.loop, path, csv_reloaded, s, &s->read);
        return;
    }
    char *again = strdup(path);
    if (again == NULL) {
        gr_error("mapping: out of memory reading %s; the previous mapping stays", path);
        return;
    }
    free(s->again);
    s->again = again;
}

static int csv_start(const struct gr_mapping_source_env *env, const struct gr_config *cfg,
                     void **state)
{
    char err[512];
    struct gr_mapping *m;
    struct csv_source *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        gr_error("mapping: out of memory");
        return -ENOMEM;
    }
    s->env = *env;
    /* Blocking: the loop serves nothing yet, and a start without its mapping is refused. */
    if (gr_mapping_load_csv(cfg->mapping_file, &m, err, sizeof(err)) < 0) {
        gr_error("%s", err);
        free(s);
        return -EINVAL;
    }
    int rc = env->deliver(env->ctx, m);
    if (rc < 0) {
        free(s);
        return rc;
    }
    uv_idle_init(env->loop, &s->later);
    s->later.data = s;
    *state = s;
    return 0;
}

static void csv_reload(void *state, const struct gr_config *cfg)
{
    csv_read(state, cfg->mapping_file);
}

static void csv_part_stopped(void *arg)
{
    struct csv_source *s = arg;
    if (--s->pending == 0)
        s->stopped(s->stopped_arg);
}

static void csv_later_closed(uv_handle_t *h)
{
    csv_part_stopped(h->data);
}

static void csv_stop(void *state, gr_stopped_fn done, void *arg)
{
    struct csv_source *s = state;
    if (s->stopped != NULL)
        return;
    s->stopped = done;
    s->stopped_arg = arg;
    s->pending = 1;
    if (s->read != NULL) {
        s->pending++;
        gr_csv_read_stop(s->read, csv_part_stopped, s);
        s->read = NULL; /* it frees itself */
    }
    uv_close((uv_handle_t *)&s->later, csv_later_closed);
}

static void csv_free(void *state)
{
    struct csv_source *s = state;
    free(s->again);
    free(s);
}

static int csv_check(const struct gr_config *cfg, char *err, size_t errlen)
{
    struct gr_mapping *m;
    if (gr_mapping_load_csv(cfg->mapping_file, &m, err, errlen) < 0)
        return -EINVAL;
    size_t devices = gr_mapping_count(m);
    gr_mapping_free(m);
    return (int)devices; /* at most GR_MAPPING_ROWS_MAX */
}

const struct gr_mapping_source_ops gr_mapping_source_csv = {
    .configured = csv_configured,
    .where = csv_where,
    .start = csv_start,
    .reload = csv_reload,
    .up = NULL,
    .stop = csv_stop,
    .free = csv_free,
    .check = csv_check,
};
