/*
 * cluster.c - the cluster's loop side: the hub's relay (accepted fixes to the stream), the
 * stream's positions into the hub in stream order, readiness. See cluster.h; the NATS side
 * is link.c, loaded from its module here.
 */
#include "gpsrelay/cluster.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "gpsrelay/clock.h"
#include "gpsrelay/cluster_wire.h"
#include "gpsrelay/log.h"
#include "gpsrelay/stats.h"
#include "link.h"

/* How often readiness is looked at again while nothing arrives (a lag that ages). */
#define READY_CHECK_MS 250

/* Messages applied per loop turn: a backlog (a node catching up) is applied in slices, so
 * consoles and modems are served in between. */
#define APPLY_PER_TURN 4096

/* One delivered message, copied off libnats' thread. */
struct inbound {
    struct inbound *next;
    uint64_t seq, pending;
    int64_t stored_ns;
    char rx[24], src[16];
    bool has_rx, has_src;
    size_t len;
    char data[];
};

struct gr_cluster {
    uv_loop_t *loop;
    struct gr_hub *hub;
    char *name; /* cluster_name: the subject prefix */
    gr_cluster_changed_fn changed;
    void *changed_arg;
    const struct gr_link_ops *ops;
    struct gr_link *link;  /* NULL once stopping */
    struct gr_link *dying; /* the link, while the thread pool destroys it */
    uv_async_t wake;       /* libnats' threads -> the loop */
    uv_timer_t check;
    uv_work_t destroy;
    gr_stopped_fn done;
    void *done_arg;
    int closing; /* handles still closing, and the destroy */
    bool stopping;

    pthread_mutex_t mu; /* guards the inbox and `dropping` */
    pthread_cond_t room;
    struct inbound *head, *tail;
    size_t n_inbox;
    bool dropping; /* stopping: deliveries are let go */

    /* Loop only. */
    struct gr_link_state st;
    uint64_t caught_up_at; /* the stream's last seq when receiving began: applied = caught up */
    bool caught_up;
    bool epoch_set, epoch_changed;
    uint64_t lag;           /* after the last message applied */
    int64_t last_stored_ms; /* when the stream stored the last message applied */
    const char *not_ready;
};

/* ---- libnats' threads ---------------------------------------------------------------- */

static void on_deliver(void *arg, const struct gr_delivery *d)
{
    struct gr_cluster *c = arg;
    struct inbound *in = malloc(sizeof(*in) + d->len);
    if (in == NULL) {
        gr_error("cluster: out of memory receiving seq %llu; skipped", (unsigned long long)d->seq);
        return;
    }
    in->next = NULL;
    in->seq = d->seq;
    in->pending = d->pending;
    in->stored_ns = d->stored_ns;
    in->has_rx = d->rx != NULL && strlen(d->rx) < sizeof(in->rx);
    in->has_src = d->src != NULL && strlen(d->src) < sizeof(in->src);
    if (in->has_rx)
        strcpy(in->rx, d->rx);
    if (in->has_src)
        strcpy(in->src, d->src);
    in->len = d->len;
    memcpy(in->data, d->data, d->len);

    pthread_mutex_lock(&c->mu);
    while (c->n_inbox >= GR_CLUSTER_INBOX_MAX && !c->dropping)
        pthread_cond_wait(&c->room, &c->mu);
    if (c->dropping) {
        pthread_mutex_unlock(&c->mu);
        free(in);
        return;
    }
    if (c->tail != NULL)
        c->tail->next = in;
    else
        c->head = in;
    c->tail = in;
    c->n_inbox++;
    uv_async_send(&c->wake); /* under the mutex: gr_cluster_stop closes it under it too */
    pthread_mutex_unlock(&c->mu);
}

static void on_changed(void *arg)
{
    struct gr_cluster *c = arg;
    pthread_mutex_lock(&c->mu);
    if (!c->dropping)
        uv_async_send(&c->wake);
    pthread_mutex_unlock(&c->mu);
}

/* ---- the loop -------------------------------------------------------------------------- */

static void skip(enum gr_reason r)
{
    if (r == GR_UNKNOWN_DEVICE)
        gr_stats.cluster_skipped[GR_CLUSTER_SKIP_UNKNOWN_DEVICE]++;
    else if (r == GR_OUT_OF_ORDER || r == GR_DUPLICATE)
        gr_stats.cluster_skipped[GR_CLUSTER_SKIP_OUT_OF_ORDER]++;
    else
        gr_stats.cluster_skipped[GR_CLUSTER_SKIP_MALFORMED]++;
}

/* One message of the stream into the hub: bad input is counted and skipped, never fatal. */
static void apply(struct gr_cluster *c, const struct inbound *in)
{
    struct gr_json_report rep;
    int64_t rx_ms;
    enum gr_reason r = gr_wire_decode(in->data, in->len, in->has_rx ? in->rx : NULL,
                                      in->has_src ? in->src : NULL, &rep, &rx_ms);
    struct gr_unit *u = NULL;
    if (r == GR_OK && (u = gr_hub_find_unit(c->hub, rep.id, strlen(rep.id))) == NULL)
        r = GR_UNKNOWN_DEVICE;
    if (r == GR_OK) {
        rep.fix.attrs = rep.attrs_len > 0 ? rep.attrs : NULL;
        rep.fix.attrs_len = rep.attrs_len;
        /* Delivery latency from the accepting node's receive time, on this node's
         * monotonic clock: the nodes' wall clocks agree as far as NTP keeps them. */
        int64_t age_ns = (gr_wall_clock_ms() - rx_ms) * 1000000LL;
        r = gr_hub_apply(c->hub, u, &rep.fix, in->seq, rx_ms,
                         gr_monotonic_ns() - (age_ns > 0 ? age_ns : 0));
    }
    if (r == GR_OK)
        gr_stats.cluster_applied++;
    else
        skip(r);
    gr_hub_set_seq_known(c->hub, in->seq + in->pending);
    c->lag = in->pending;
    c->last_stored_ms = in->stored_ns / 1000000;
    if (!c->caught_up && in->seq >= c->caught_up_at)
        c->caught_up = true;
}

static const char *readiness(const struct gr_cluster *c)
{
    if (c->epoch_changed)
        return "cluster: the stream was made anew; restart this node";
    if (!c->st.connected)
        return "cluster: no NATS connection";
    if (!c->st.subscribed || !c->caught_up)
        return "cluster: catching up";
    if (c->lag > 0 && gr_wall_clock_ms() - c->last_stored_ms > GR_CLUSTER_BEHIND_MS)
        return "cluster: behind the stream";
    return NULL;
}

/* The link's state into the loop's copy; the epoch into the hub the first time. */
static void refresh_state(struct gr_cluster *c)
{
    c->ops->state(c->link, &c->st);
    if (!c->st.subscribed)
        return;
    if (!c->epoch_set) {
        gr_hub_set_epoch(c->hub, c->st.epoch);
        c->epoch_set = true;
        c->caught_up_at = c->st.last_seq;
        c->caught_up = c->st.last_seq == 0 || gr_hub_seq(c->hub) >= c->st.last_seq;
        gr_hub_set_seq_known(c->hub, c->st.last_seq);
    } else if (strcmp(c->st.epoch, gr_hub_epoch(c->hub)) != 0 && !c->epoch_changed) {
        /* Positions already sent carry the old stream's seqs: consoles must start over,
         * and a restart is what makes them (a new epoch, a full snapshot). */
        gr_error("cluster: stream %s was made anew (epoch %s, was %s); restart this node", c->name,
                 c->st.epoch, gr_hub_epoch(c->hub));
        c->epoch_changed = true;
    }
}

static void tell_if_changed(struct gr_cluster *c)
{
    const char *now = readiness(c);
    if (now != c->not_ready) {
        if (now != NULL)
            gr_warn("%s", now);
        else
            gr_notice("cluster: node in step with stream %s (seq %llu)", c->name,
                      (unsigned long long)gr_hub_seq(c->hub));
        c->not_ready = now;
        c->changed(c->changed_arg);
    }
}

static void on_wake(uv_async_t *h)
{
    struct gr_cluster *c = h->data;
    if (c->stopping)
        return;
    refresh_state(c);
    /* Positions wait for the mapping (PostgreSQL's may still be on its way) and for the
     * stream's epoch: the hub numbers nothing before both are in force. */
    if (gr_hub_mapping(c->hub) != NULL && c->epoch_set && !c->epoch_changed) {
        pthread_mutex_lock(&c->mu);
        struct inbound *batch = c->head;
        size_t n = 0;
        struct inbound *last = NULL;
        for (struct inbound *p = batch; p != NULL && n < APPLY_PER_TURN; p = p->next, n++)
            last = p;
        if (last != NULL) {
            c->head = last->next;
            if (c->head == NULL)
                c->tail = NULL;
            last->next = NULL;
            c->n_inbox -= n;
            pthread_cond_broadcast(&c->room);
        }
        bool more = c->head != NULL;
        pthread_mutex_unlock(&c->mu);
        while (batch != NULL) {
            struct inbound *next = batch->next;
            apply(c, batch);
            free(batch);
            batch = next;
        }
        if (more)
            uv_async_send(&c->wake); /* the rest on the next turn */
    }
    tell_if_changed(c);
}

static void on_check(uv_timer_t *t)
{
    struct gr_cluster *c = t->data;
    refresh_state(c);
    tell_if_changed(c);
}

/* The hub's relay: an accepted fix goes to the stream, not to consoles. */
static enum gr_reason relay(void *arg, struct gr_unit *u, const struct gr_fix *fix, int64_t rx_ms)
{
    struct gr_cluster *c = arg;
    struct gr_wire_msg m;
    if (gr_wire_encode(c->name, gr_unit_id(u), fix, rx_ms, &m) < 0)
        return GR_BAD_ID;
    struct gr_outgoing out = {m.subject, m.msg_id, m.rx, m.src, m.body, m.body_len};
    if (c->link == NULL || c->ops->publish(c->link, &out) < 0) {
        gr_stats.cluster_publish_refused++;
        return GR_CLUSTER_QUEUE_FULL;
    }
    return GR_OK;
}

/* ---- start, stop ----------------------------------------------------------------------- */

/* The module: beside the executable (a build tree), else where it is installed. */
static const struct gr_link_ops *load_module(void)
{
    char exe[PATH_MAX], path[PATH_MAX + sizeof(GR_LINK_MODULE)];
    void *h = NULL;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(path, sizeof(path), "%s/%s", exe, GR_LINK_MODULE);
            if (access(path, R_OK) == 0)
                h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        }
    }
    if (h == NULL) {
        snprintf(path, sizeof(path), "%s/%s", GR_MODULE_DIR, GR_LINK_MODULE);
        h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    if (h == NULL) {
        gr_error("cluster: cannot load %s: %s", GR_LINK_MODULE, dlerror());
        return NULL;
    }
    const struct gr_link_ops *ops = dlsym(h, GR_LINK_SYMBOL);
    if (ops == NULL)
        gr_error("cluster: %s has no %s", path, GR_LINK_SYMBOL);
    return ops; /* never unloaded: libnats' threads may outlive a dlclose */
}

/* The link's view of the configuration; subjects is the caller's buffer. */
static void link_config(const struct gr_config *cfg, char *subjects, size_t len,
                        struct gr_link_config *lc)
{
    snprintf(subjects, len, "%s.pos.>", cfg->cluster_name);
    *lc = (struct gr_link_config){
        .urls = (const char *const *)cfg->cluster_nats,
        .n_urls = cfg->n_cluster_nats,
        .stream = cfg->cluster_name,
        .subjects = subjects,
        .node = cfg->node_name,
        .replicas = cfg->cluster_replicas,
        .history_s = cfg->cluster_history,
    };
}

int gr_cluster_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                     gr_cluster_changed_fn changed, void *arg, struct gr_cluster **out)
{
    const struct gr_link_ops *ops = load_module();
    if (ops == NULL)
        return -ENOENT;
    struct gr_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->name = strdup(cfg->cluster_name)) == NULL ||
        gr_hub_set_node(hub, cfg->node_name) < 0) {
        if (c != NULL)
            free(c->name);
        free(c);
        gr_error("cluster: out of memory");
        return -ENOMEM;
    }
    c->loop = loop;
    c->hub = hub;
    c->ops = ops;
    c->changed = changed;
    c->changed_arg = arg;
    c->not_ready = "cluster: no NATS connection";
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->room, NULL);
    uv_async_init(loop, &c->wake, on_wake);
    c->wake.data = c;
    uv_timer_init(loop, &c->check);
    c->check.data = c;

    char subjects[GR_WIRE_NAME_MAX + 8], err[256];
    struct gr_link_config lc;
    link_config(cfg, subjects, sizeof(subjects), &lc);
    struct gr_link_callbacks cb = {
        .arg = c, .deliver = on_deliver, .changed = on_changed, .log = gr_log};
    int rc = ops->start(&lc, &cb, &c->link, err, sizeof(err));
    if (rc < 0) {
        gr_error("%s", err);
        c->link = NULL;
    } else {
        uv_timer_start(&c->check, on_check, READY_CHECK_MS, READY_CHECK_MS);
        gr_hub_set_relay(hub, relay, c);
        gr_notice("cluster: node %s of %s, NATS at %s%s", cfg->node_name, cfg->cluster_name,
                  cfg->cluster_nats[0], cfg->n_cluster_nats > 1 ? " and others" : "");
    }
    *out = c; /* stopped and freed by the caller in either case */
    return rc;
}

const char *gr_cluster_not_ready(const struct gr_cluster *c)
{
    return c->not_ready;
}

void gr_cluster_gauges(const struct gr_cluster *c, struct gr_cluster_gauges *g)
{
    struct gr_link_state st = c->st;
    if (c->link != NULL)
        c->ops->state(c->link, &st);
    g->up = st.connected && st.subscribed;
    g->lag = c->lag;
    g->queued = st.queued;
    g->published = st.published;
    g->publish_failures = st.failures + gr_stats.cluster_publish_refused;
}

static void part_closed(struct gr_cluster *c)
{
    if (--c->closing == 0)
        c->done(c->done_arg);
}

static void on_handle_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

static void destroy_work(uv_work_t *w)
{
    struct gr_cluster *c = w->data;
    c->ops->destroy(c->dying);
    c->dying = NULL;
}

static void destroy_done(uv_work_t *w, int status)
{
    (void)status;
    struct gr_cluster *c = w->data;
    part_closed(c);
}

void gr_cluster_stop(struct gr_cluster *c, gr_stopped_fn done, void *arg)
{
    if (c->stopping)
        return;
    c->stopping = true;
    c->done = done;
    c->done_arg = arg;
    /* Let go of a delivery waiting for room: the link thread joins libnats' threads. */
    pthread_mutex_lock(&c->mu);
    c->dropping = true;
    pthread_cond_broadcast(&c->room);
    c->closing = 2;
    uv_close((uv_handle_t *)&c->wake, on_handle_closed);
    pthread_mutex_unlock(&c->mu);
    uv_close((uv_handle_t *)&c->check, on_handle_closed);
    if (c->link != NULL) {
        /* Captured before: /metrics may still be read during the consoles' grace. */
        c->ops->state(c->link, &c->st);
        c->dying = c->link;
        c->link = NULL; /* the relay refuses from now on */
        c->closing++;
        c->destroy.data = c;
        if (uv_queue_work(c->loop, &c->destroy, destroy_work, destroy_done) < 0) {
            c->ops->destroy(c->dying); /* no thread pool: here, once, at exit */
            c->dying = NULL;
            part_closed(c); /* the handles' closes are still to come: done is later */
        }
    }
}

void gr_cluster_free(struct gr_cluster *c)
{
    if (c == NULL)
        return;
    struct inbound *p = c->head;
    while (p != NULL) {
        struct inbound *next = p->next;
        free(p);
        p = next;
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->room);
    free(c->name);
    free(c);
}

int gr_cluster_check(const struct gr_config *cfg, char *err, size_t errlen)
{
    const struct gr_link_ops *ops = load_module();
    if (ops == NULL) {
        snprintf(err, errlen, "cannot load %s", GR_LINK_MODULE);
        return -ENOENT;
    }
    char subjects[GR_WIRE_NAME_MAX + 8];
    struct gr_link_config lc;
    link_config(cfg, subjects, sizeof(subjects), &lc);
    return ops->check(&lc, err, errlen);
}
