/*
 * daemon.c - wires the modules together on one libuv loop: start, signals, stop.
 */
#include "gpsrelay/daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "gpsrelay/archive.h"
#include "gpsrelay/clock.h"
#include "gpsrelay/cluster.h"
#include "gpsrelay/hub.h"
#include "gpsrelay/ingest.h"
#include "gpsrelay/log.h"
#include "gpsrelay/mapping.h"
#include "gpsrelay/mapping_source.h"
#include "gpsrelay/phoenix.h"
#include "gpsrelay/sd.h"
#include "gpsrelay/stats.h"
#include "gpsrelay/token.h"
#include "gpsrelay/ws.h"

struct daemon {
    uv_loop_t loop;
    const struct gr_config *cfg; /* in force: the caller's, or owned_cfg after a reload */
    struct gr_config *owned_cfg; /* the last configuration a reload read, or NULL */
    bool log_level_fixed;        /* -l given: reloads leave the level alone */
    struct gr_hub *hub;          /* owned, like every module below */
    struct gr_ingest *ingest;    /* producers: sockets in, publishing into the hub */
    struct gr_ws *ws;            /* consumers: the consoles, told by the hub's callbacks */
    struct gr_cluster *cluster;  /* with cluster_nats: the stream between hub and ingest */
    struct gr_archive *archive;  /* with archive_postgres: every position applied, stored */
    /* The mapping source the configuration names, and its state (owned: source->free)
     * once started, else NULL. */
    const struct gr_mapping_source_ops *source;
    void *source_state;
    bool starting;                   /* the source's first mapping goes in force at once */
    struct gr_hub_update *update;    /* owned: a new mapping being applied, step by step */
    struct gr_mapping *next_mapping; /* owned: one that arrived meanwhile, applied next */
    uv_idle_t apply;                 /* steps the update, one step per loop turn */
    bool listening;                  /* every listener is bound */
    bool ready;         /* ...a mapping is in force, a cluster node caught up: READY=1 was sent */
    unsigned char *key; /* HS256 secret with auth jwt, else NULL */
    size_t key_len;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t stale_timer;
    uv_timer_t watchdog; /* WATCHDOG=1 from the loop itself: a stuck loop gets restarted */
    uv_timer_t status;   /* STATUS= for systemctl status */
    uv_prepare_t turn;   /* before each poll: the last loop turn's work (gpsrelay_loop_busy) */
    uint64_t turn_ns;    /* uv_hrtime() at the last prepare; 0 before the first */
    uint64_t turn_idle;  /* uv_metrics_idle_time() then: time blocked in epoll_wait */
    bool stopping;
    int stopping_parts; /* modules whose stop has not called back yet (part_stopped) */
};

/* The daemon's own handles: closed last, so signals keep being handled (a second SIGTERM
 * does not kill the daemon mid-way) and the watchdog keeps being fed while the modules
 * stop. Once they are closed the loop has nothing left and uv_run returns. */
static void close_own_handles(struct daemon *d)
{
    uv_close((uv_handle_t *)&d->turn, NULL);
    uv_close((uv_handle_t *)&d->apply, NULL);
    uv_close((uv_handle_t *)&d->stale_timer, NULL);
    uv_close((uv_handle_t *)&d->watchdog, NULL);
    uv_close((uv_handle_t *)&d->status, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
}

/* A module's stop called back (stop.h); after the last one, the daemon's own handles. */
static void part_stopped(void *arg)
{
    struct daemon *d = arg;
    if (--d->stopping_parts == 0)
        close_own_handles(d);
}

/*
 * Stops the mapping source, then ingest (nothing new comes in), then the consoles (1001,
 * the grace, lws's teardown), all at once; each tells part_stopped when it is done, and the
 * last one closes the daemon's own handles. Also unwinds a start that failed half-way.
 */
static void daemon_stop(struct daemon *d)
{
    if (d->stopping)
        return;
    d->stopping = true;
    gr_sd_notify("STOPPING=1");
    if (d->update != NULL)
        gr_hub_update_cancel(d->update);
    d->update = NULL;
    uv_idle_stop(&d->apply);
    gr_mapping_free(d->next_mapping);
    d->next_mapping = NULL;
    /* Counted before any stop begins; none calls back before this returns. */
    d->stopping_parts = (d->source_state != NULL) + (d->ingest != NULL) + (d->ws != NULL) +
                        (d->cluster != NULL) + (d->archive != NULL);
    if (d->source_state != NULL)
        d->source->stop(d->source_state, part_stopped, d);
    if (d->ingest != NULL)
        gr_ingest_stop(d->ingest, part_stopped, d);
    if (d->ws != NULL)
        gr_ws_stop(d->ws, part_stopped, d);
    if (d->cluster != NULL)
        gr_cluster_stop(d->cluster, part_stopped, d);
    if (d->archive != NULL) /* what is not archived yet waits in the spool */
        gr_archive_stop(d->archive, part_stopped, d);
    if (d->stopping_parts == 0)
        close_own_handles(d);
}

static void fill_gauges(void *ctx, struct gr_gauges *g)
{
    struct daemon *d = ctx;
    g->consoles_connected = d->ws ? gr_ws_consoles(d->ws) : 0;
    g->consoles_accept_waiting = d->ws ? gr_ws_accept_waiting(d->ws) : 0;
    g->channels_joined = gr_hub_sub_count(d->hub);
    g->mapping_devices = gr_hub_device_count(d->hub);
    g->tcp_connections = d->ingest ? gr_ingest_tcp_connections(d->ingest) : 0;
    g->phone_connections = d->ingest ? *gr_ingest_phone_connections(d->ingest) : 0;
    g->ingest_socket_drops = gr_ingest_socket_drops(d->ingest);
    g->units_stale = gr_hub_stale_count(d->hub);
    g->postgres_up =
        d->source->up != NULL && d->source_state != NULL && d->source->up(d->source_state);
    if (d->cluster != NULL) {
        struct gr_cluster_gauges c;
        gr_cluster_gauges(d->cluster, &c);
        g->cluster_up = c.up;
        g->cluster_lag = c.lag;
        g->cluster_queued = c.queued;
        g->cluster_published = c.published;
        g->cluster_publish_failures = c.publish_failures;
    }
    if (d->archive != NULL) {
        struct gr_archive_gauges a;
        gr_archive_gauges(d->archive, &a);
        g->archive_up = a.up;
        g->archive_queued = a.queued;
        g->archive_spool_bytes = a.spool_bytes;
        g->archive_dropped = a.dropped;
    }
}

/* The hub applied a position: into the archive, with the epoch it was numbered under. */
static void on_applied(void *arg, const struct gr_unit *u, const struct gr_fix *fix, uint64_t seq,
                       int64_t rx_ms)
{
    struct daemon *d = arg;
    gr_archive_position(d->archive, gr_unit_id(u), fix, gr_hub_epoch(d->hub), seq, rx_ms);
}

/* Devices a mapping update prepares per loop turn: 2-5 ms of work (hub.h), so consoles
 * and modems wait no longer than that while 100,000 devices are applied. */
#define APPLY_STEP_DEVICES 500

static void send_status(struct daemon *d, const char *prefix, bool log);

/* Why new consoles should go elsewhere, or NULL: ready once every listener is bound, a
 * mapping is in force and, on a cluster node, the node has caught up with the stream and
 * is connected to NATS (docs/operations.md). */
static const char *not_ready(const struct daemon *d)
{
    if (!d->listening)
        return "starting";
    if (gr_hub_mapping(d->hub) == NULL)
        return "no mapping yet";
    return d->cluster != NULL ? gr_cluster_not_ready(d->cluster) : NULL;
}

/* /readyz follows readiness both ways; systemd gets READY=1 the first time only. */
static void maybe_ready(struct daemon *d)
{
    if (d->ws == NULL || d->stopping)
        return;
    const char *why = not_ready(d);
    gr_ws_set_not_ready(d->ws, why);
    if (d->ready || why != NULL)
        return;
    d->ready = true;
    gr_ws_set_starting(d->ws, false);
    send_status(d, "READY=1\n", false);
    gr_notice("gpsrelayd %s ready (epoch %s)", GR_VERSION, gr_hub_epoch(d->hub));
}

static void on_cluster_changed(void *arg)
{
    maybe_ready(arg);
}

static void on_apply(uv_idle_t *h);

/* A mapping was put in force, whatever its source (CSV at start or on SIGHUP, PostgreSQL,
 * mapping_cache): the one place gpsrelay_mapping_loads_total counts. */
static void mapping_in_force(struct daemon *d)
{
    gr_stats.mapping_loads++;
    if (d->ws != NULL)
        gr_ws_reauthorize(d->ws);
    maybe_ready(d);
}

/* Puts m in force over the next loop turns; one update at a time, the newest waiting. */
static void apply_mapping(struct daemon *d, struct gr_mapping *m)
{
    if (d->stopping) {
        gr_mapping_free(m);
        return;
    }
    if (d->update != NULL) {
        gr_mapping_free(d->next_mapping);
        d->next_mapping = m;
        return;
    }
    d->update = gr_hub_update_begin(d->hub, m);
    if (d->update == NULL) {
        gr_error("mapping: out of memory applying a new mapping; the previous one stays");
        return;
    }
    uv_idle_start(&d->apply, on_apply);
}

static void on_apply(uv_idle_t *h)
{
    struct daemon *d = h->data;
    int rc = gr_hub_update_step(d->update, APPLY_STEP_DEVICES);
    if (rc == 1)
        return;
    d->update = NULL;
    uv_idle_stop(h);
    if (rc < 0) {
        gr_error("mapping: out of memory applying a new mapping; the previous one stays");
    } else {
        gr_notice("mapping: %zu devices in force", gr_hub_device_count(d->hub));
        mapping_in_force(d);
    }
    struct gr_mapping *next = d->next_mapping;
    d->next_mapping = NULL;
    if (next != NULL)
        apply_mapping(d, next);
}

/*
 * A new mapping from the source (taken). The first, delivered while the daemon starts (the
 * CSV file), goes in force at once: nothing is served yet. Every later one, and all of
 * PostgreSQL's, step by step (apply_mapping), so consoles and modems keep being served.
 */
static int on_mapping(void *ctx, struct gr_mapping *m)
{
    struct daemon *d = ctx;
    if (!d->starting) {
        apply_mapping(d, m);
        return 0;
    }
    if (gr_hub_set_mapping(d->hub, m) < 0) {
        gr_error("mapping: out of memory applying %s", d->source->where(d->cfg));
        return -ENOMEM;
    }
    gr_notice("mapping: %zu devices from %s", gr_hub_device_count(d->hub),
              d->source->where(d->cfg));
    mapping_in_force(d);
    return 0;
}

/* Starts the configured source: a CSV file is in force when this returns (a bad one stops
 * the start), PostgreSQL answers from the loop (with mapping_cache while it is down). */
static int start_mapping(struct daemon *d)
{
    struct gr_mapping_source_env env = {.loop = &d->loop, .deliver = on_mapping, .ctx = d};
    d->source = gr_mapping_source_for(d->cfg);
    d->starting = true;
    int rc = d->source->start(&env, d->cfg, &d->source_state);
    d->starting = false;
    return rc;
}

/* With auth jwt, the console token key: refused unless private and long enough. Returns 0,
 * or gr_token_load_secret()'s negative errno (logged). */
static int load_secret(struct daemon *d)
{
    char err[512];
    if (d->cfg->auth != GR_AUTH_JWT)
        return 0;
    int rc = gr_token_load_secret(d->cfg->auth_secret_file, &d->key, &d->key_len, err, sizeof(err));
    if (rc < 0)
        gr_error("%s", err);
    return rc;
}

/* One STATUS= line for `systemctl status`, after prefix ("READY=1\n" or ""). */
/* One STATUS= line for `systemctl status`, after prefix ("READY=1\n" or ""); with log,
 * the same summary goes to the log. */
static void send_status(struct daemon *d, const char *prefix, bool log)
{
    char line[768], cluster[256] = "", archive[192] = "";
    if (d->cluster != NULL) {
        struct gr_cluster_gauges c;
        gr_cluster_gauges(d->cluster, &c);
        const char *why = gr_cluster_not_ready(d->cluster);
        snprintf(cluster, sizeof(cluster),
                 "; cluster node %s: %s, seq %llu, lag %llu, %llu queued, %llu stored, %llu "
                 "publish failures",
                 d->cfg->node_name, why ? why : "in step", (unsigned long long)gr_hub_seq(d->hub),
                 (unsigned long long)c.lag, (unsigned long long)c.queued,
                 (unsigned long long)c.published, (unsigned long long)c.publish_failures);
    }
    if (d->archive != NULL) {
        struct gr_archive_gauges a;
        gr_archive_gauges(d->archive, &a);
        snprintf(archive, sizeof(archive),
                 "; archive %s: %llu written, %llu queued, %llu spool bytes, %llu dropped",
                 a.up ? "up" : "down", (unsigned long long)gr_stats.archive_written,
                 (unsigned long long)a.queued, (unsigned long long)a.spool_bytes,
                 (unsigned long long)a.dropped);
    }
    int n = snprintf(line, sizeof(line),
                     "%sSTATUS=%zu consoles, %zu devices (%zu stale), %llu positions published%s%s",
                     prefix, d->ws ? gr_ws_consoles(d->ws) : 0, gr_hub_device_count(d->hub),
                     gr_hub_stale_count(d->hub), (unsigned long long)gr_stats.positions_published,
                     cluster, archive);
    gr_sd_notify(line);
    if (log && n > 0)
        gr_info("%s", strstr(line, "STATUS=") + 7);
}

static void on_status_timer(uv_timer_t *t)
{
    send_status(t->data, "", true);
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    gr_sd_notify("WATCHDOG=1");
}

/* How often systemd's STATUS= line is refreshed. */
#define STATUS_MS 10000

/* How often units are checked for stale_after: one timer for all of them. */
#define STALE_CHECK_MS 1000

static void on_stale_timer(uv_timer_t *t)
{
    struct daemon *d = t->data;
    size_t n = gr_hub_check_stale(d->hub, gr_wall_clock_ms());
    if (n > 0)
        gr_info("%zu units went stale (%zu stale in all)", n, gr_hub_stale_count(d->hub));
}

/*
 * Once per loop turn, just before the loop blocks: the time since the previous turn less
 * the time libuv spent blocked in epoll_wait is the work of one turn, I/O callbacks
 * included (they run inside the poll phase, so timing check to prepare would miss them).
 */
static void on_turn(uv_prepare_t *h)
{
    struct daemon *d = h->data;
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(&d->loop);
    if (d->turn_ns != 0)
        gr_histogram_observe(&gr_stats.loop_busy,
                             (double)((now - d->turn_ns) - (idle - d->turn_idle)) / 1e9);
    d->turn_ns = now;
    d->turn_idle = idle;
}

static void start_stale_timer(struct daemon *d)
{
    if (d->cfg->stale_after > 0) /* 0: units never go stale */
        uv_timer_start(&d->stale_timer, on_stale_timer, STALE_CHECK_MS, STALE_CHECK_MS);
    else
        uv_timer_stop(&d->stale_timer);
}

static void hub_limits(const struct gr_config *cfg, struct gr_hub_options *opt)
{
    opt->max_future_skew_ms = cfg->max_future_skew * 1000;
    opt->max_speed = cfg->max_speed;
    opt->stale_after_ms = (int64_t)cfg->stale_after * 1000;
}

/* ---- reloading the configuration ------------------------------------------------------ */

/* SIGHUP: a fresh configuration from the same file, validated whole; in force only if
 * good. Returns 0, or a negative errno (logged) with the running configuration untouched. */
static int reload_config(struct daemon *d)
{
    char err[512];
    struct gr_config *fresh = calloc(1, sizeof(*fresh));
    if (fresh == NULL) {
        gr_error("reload: out of memory; the running configuration stays");
        return -ENOMEM;
    }
    int rc = gr_config_load(d->cfg->path, fresh, err, sizeof(err));
    if (rc == 0 && (rc = gr_config_keep_running(d->cfg, fresh)) < 0)
        snprintf(err, sizeof(err), "out of memory");
    if (rc < 0) {
        gr_stats.config_reload_failures++;
        gr_error("reload: %s; the running configuration stays", err);
        gr_config_free(fresh);
        free(fresh);
        return rc;
    }
    if (d->ws != NULL)
        gr_ws_set_config(d->ws, fresh);
    if (d->ingest != NULL)
        gr_ingest_set_config(d->ingest, fresh);
    if (d->archive != NULL)
        gr_archive_set_config(d->archive, fresh);
    struct gr_hub_options limits;
    hub_limits(fresh, &limits);
    gr_hub_set_limits(d->hub, &limits);
    if (!d->log_level_fixed)
        gr_log_set_level(fresh->log_level);
    gr_config_free(d->owned_cfg);
    free(d->owned_cfg);
    d->cfg = d->owned_cfg = fresh;
    start_stale_timer(d);
    gr_notice("reload: configuration %s in force", fresh->path);
    return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (d->stopping)
        return; /* on the way out: nothing to reload, nothing more to stop */
    if (signum == SIGHUP) {
        /* systemd 252 has no Type=notify-reload: say RELOADING/READY ourselves. The
         * configuration is read here, on the loop: a regular file of at most
         * GR_CONFIG_FILE_MAX bytes, microseconds from the page cache (a FIFO or a device
         * is refused at once, never waited on). The mapping, up to GR_MAPPING_FILE_MAX
         * bytes to parse and sort, is read on the thread pool and put in force when it is
         * back. A failed reload keeps the old one of each. */
        char reloading[64];
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        snprintf(reloading, sizeof(reloading), "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)ts.tv_sec * 1000000ULL +
                     (unsigned long long)ts.tv_nsec / 1000);
        gr_sd_notify(reloading);
        reload_config(d); /* the mapping is re-read either way */
        d->source->reload(d->source_state, d->cfg);
        send_status(d, d->ready ? "READY=1\n" : "", false);
        return;
    }
    gr_notice("received %s, stopping", strsignal(signum));
    daemon_stop(d);
}

static void start_signal(struct daemon *d, uv_signal_t *h, int signum)
{
    uv_signal_init(&d->loop, h);
    h->data = d;
    uv_signal_start(h, on_signal, signum);
}

int gr_daemon_run(const struct gr_config *cfg, bool log_level_fixed)
{
    struct daemon d;
    memset(&d, 0, sizeof(d));
    d.cfg = cfg;
    d.log_level_fixed = log_level_fixed;

    /* Until the loop's signal handles exist, SIGTERM/SIGINT/SIGHUP wait (blocked) rather
     * than kill the daemon with their default action: a stop or reload sent during
     * start-up is then handled, once, by the loop. */
    sigset_t stop_signals, previous;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop_signals, &previous);
    int status = GR_EXIT_FAILURE;

    int rc = uv_loop_init(&d.loop);
    if (rc < 0) {
        gr_error("cannot create the event loop: %s", uv_strerror(rc));
        return GR_EXIT_FAILURE;
    }
    uv_loop_configure(&d.loop, UV_METRICS_IDLE_TIME); /* for gpsrelay_loop_busy_seconds */
    gr_sd_init();

    struct gr_hub_options hopt = {.notify = gr_console_on_pending, .event = gr_console_on_event};
    hub_limits(cfg, &hopt);
    d.hub = gr_hub_new(&hopt);
    if (d.hub == NULL) {
        gr_error("out of memory");
        goto out;
    }
    uv_idle_init(&d.loop, &d.apply);
    d.apply.data = &d;
    /* A source that fails to start has freed what it made: nothing to stop. */
    if (load_secret(&d) < 0 || start_mapping(&d) < 0) {
        status = GR_EXIT_CONFIG;
        uv_close((uv_handle_t *)&d.apply, NULL);
        uv_run(&d.loop, UV_RUN_DEFAULT);
        goto out;
    }

    start_signal(&d, &d.sigint, SIGINT);
    start_signal(&d, &d.sigterm, SIGTERM);
    start_signal(&d, &d.sighup, SIGHUP);
    sigprocmask(SIG_SETMASK, &previous, NULL); /* a pending one is delivered now */
    uv_timer_init(&d.loop, &d.stale_timer);
    d.stale_timer.data = &d;
    start_stale_timer(&d);
    uv_prepare_init(&d.loop, &d.turn);
    d.turn.data = &d;
    uv_prepare_start(&d.turn, on_turn);
    uv_timer_init(&d.loop, &d.watchdog);
    uint64_t watchdog_ms = gr_sd_watchdog_usec() / 2000; /* half the interval, in ms */
    if (watchdog_ms > 0)
        uv_timer_start(&d.watchdog, on_watchdog, watchdog_ms, watchdog_ms);
    uv_timer_init(&d.loop, &d.status);
    d.status.data = &d;
    uv_timer_start(&d.status, on_status_timer, STATUS_MS, STATUS_MS);
    int archive_rc = cfg->archive_postgres ? gr_archive_start(&d.loop, cfg, &d.archive) : 0;
    if (d.archive != NULL && archive_rc == 0)
        gr_hub_set_applied(d.hub, on_applied, &d);
    if (archive_rc < 0 ||
        (cfg->n_cluster_nats > 0 &&
         gr_cluster_start(&d.loop, cfg, d.hub, on_cluster_changed, &d, &d.cluster) < 0) ||
        gr_ingest_start(&d.loop, cfg, d.hub, &d.ingest) < 0 ||
        gr_ws_start(&d.loop, cfg, d.key, d.key_len, d.hub, fill_gauges, &d,
                    &(struct gr_ws_service){.protocols = gr_ingest_phone_protocols(),
                                            .user = d.ingest,
                                            .keepalive_s = GR_PHONE_KEEPALIVE_S,
                                            .open = gr_ingest_phone_connections(d.ingest),
                                            .max_open = GR_PHONE_CONN_MAX},
                    &d.ws) < 0) {
        daemon_stop(&d); /* bind failure, already logged: unwind and exit 1 */
    } else {
        d.listening = true;
        gr_ws_set_starting(d.ws, d.cluster != NULL); /* until the stream's epoch and seq */
        maybe_ready(&d);
        status = GR_EXIT_OK;
    }

    uv_run(&d.loop, UV_RUN_DEFAULT); /* returns once every module has stopped (daemon_stop) */

out:
    sigprocmask(SIG_SETMASK, &previous, NULL); /* also when start-up failed before the loop */
    gr_ws_free(d.ws);
    gr_cluster_free(d.cluster);
    gr_archive_free(d.archive);
    gr_ingest_free(d.ingest);
    if (d.source_state != NULL)
        d.source->free(d.source_state);
    gr_hub_free(d.hub);
    rc = uv_loop_close(&d.loop);
    if (rc != 0) {
        gr_error("event loop did not close cleanly: %s", uv_strerror(rc));
        status = GR_EXIT_FAILURE;
    }
    gr_sd_close();
    gr_config_free(d.owned_cfg);
    free(d.owned_cfg);
    if (d.key != NULL) {
        OPENSSL_cleanse(d.key, d.key_len);
        free(d.key);
    }
    if (status == GR_EXIT_OK)
        gr_notice("stopped");
    return status;
}
