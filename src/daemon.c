/*
 * daemon.c - wires the modules together on one libuv loop: start, signals, stop.
 */
#include "gpsrelay/daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "gpsrelay/clock.h"
#include "gpsrelay/hub.h"
#include "gpsrelay/ingest.h"
#include "gpsrelay/log.h"
#include "gpsrelay/mapping.h"
#include "gpsrelay/phoenix.h"
#include "gpsrelay/sd.h"
#include "gpsrelay/stats.h"
#include "gpsrelay/token.h"
#include "gpsrelay/ws.h"

struct daemon {
    uv_loop_t loop;
    const struct gr_config *cfg;
    struct gr_hub *hub;
    struct gr_ingest *ingest;
    struct gr_ws *ws;
    unsigned char *key; /* HS256 secret with auth jwt, else NULL */
    size_t key_len;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t stale_timer;
    uv_timer_t watchdog; /* WATCHDOG=1 from the loop itself: a stuck loop gets restarted */
    uv_timer_t status;   /* STATUS= for systemctl status */
    bool stopping;
};

static void close_signals(struct daemon *d)
{
    uv_close((uv_handle_t *)&d->stale_timer, NULL);
    uv_close((uv_handle_t *)&d->watchdog, NULL);
    uv_close((uv_handle_t *)&d->status, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
}

/* Stops ingest first (nothing new comes in), then the consoles: 1001 and teardown. */
static void daemon_stop(struct daemon *d)
{
    if (d->stopping)
        return;
    d->stopping = true;
    gr_sd_notify("STOPPING=1");
    if (d->ingest)
        gr_ingest_stop(d->ingest);
    if (d->ws)
        gr_ws_stop(d->ws);
    close_signals(d);
}

static void fill_gauges(void *ctx, struct gr_gauges *g)
{
    struct daemon *d = ctx;
    g->consoles_connected = d->ws ? gr_ws_consoles(d->ws) : 0;
    g->channels_joined = gr_hub_sub_count(d->hub);
    g->mapping_devices = gr_hub_device_count(d->hub);
    g->tcp_connections = d->ingest ? gr_ingest_tcp_connections(d->ingest) : 0;
    g->units_stale = gr_hub_stale_count(d->hub);
}

static int load_mapping(struct daemon *d)
{
    char err[512];
    struct gr_mapping *m;
    if (gr_mapping_load_csv(d->cfg->mapping_file, &m, err, sizeof(err)) < 0) {
        gr_error("%s", err);
        return -1;
    }
    if (gr_hub_set_mapping(d->hub, m) < 0) {
        gr_error("mapping: out of memory applying %s", d->cfg->mapping_file);
        return -1;
    }
    gr_notice("mapping: %zu devices from %s", gr_hub_device_count(d->hub), d->cfg->mapping_file);
    return 0;
}

/* With auth jwt, the console token key: refused unless private and long enough. */
static int load_secret(struct daemon *d)
{
    char err[512];
    if (d->cfg->auth != GR_AUTH_JWT)
        return 0;
    if (gr_token_load_secret(d->cfg->auth_secret_file, &d->key, &d->key_len, err, sizeof(err)) <
        0) {
        gr_error("%s", err);
        return -1;
    }
    return 0;
}

/* One STATUS= line for `systemctl status`, after prefix ("READY=1\n" or ""). */
static void send_status(struct daemon *d, const char *prefix)
{
    char line[256];
    snprintf(line, sizeof(line),
             "%sSTATUS=%zu consoles, %zu devices (%zu stale), %llu positions published", prefix,
             d->ws ? gr_ws_consoles(d->ws) : 0, gr_hub_device_count(d->hub),
             gr_hub_stale_count(d->hub), (unsigned long long)gr_stats.positions_published);
    gr_sd_notify(line);
}

static void on_status_timer(uv_timer_t *t)
{
    send_status(t->data, "");
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    gr_sd_notify("WATCHDOG=1");
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct daemon *d = h->data;
    if (signum == SIGHUP) {
        /* systemd 252 has no Type=notify-reload: say RELOADING/READY ourselves. The
         * mapping file is small and read rarely; a failed reload keeps the old one. */
        char reloading[64];
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        snprintf(reloading, sizeof(reloading), "RELOADING=1\nMONOTONIC_USEC=%llu",
                 (unsigned long long)ts.tv_sec * 1000000ULL +
                     (unsigned long long)ts.tv_nsec / 1000);
        gr_sd_notify(reloading);
        if (load_mapping(d) < 0)
            gr_warn("mapping: reload failed; the previous mapping stays in force");
        else if (d->ws != NULL)
            gr_ws_reauthorize(d->ws);
        send_status(d, "READY=1\n");
        return;
    }
    gr_notice("received %s, stopping", strsignal(signum));
    daemon_stop(d);
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

static void start_signal(struct daemon *d, uv_signal_t *h, int signum)
{
    uv_signal_init(&d->loop, h);
    h->data = d;
    uv_signal_start(h, on_signal, signum);
}

int gr_daemon_run(const struct gr_config *cfg)
{
    struct daemon d;
    memset(&d, 0, sizeof(d));
    d.cfg = cfg;
    int status = GR_EXIT_FAILURE;

    int rc = uv_loop_init(&d.loop);
    if (rc < 0) {
        gr_error("cannot create the event loop: %s", uv_strerror(rc));
        return GR_EXIT_FAILURE;
    }
    gr_sd_init();

    struct gr_hub_options hopt = {
        .max_future_skew_ms = cfg->max_future_skew * 1000,
        .max_speed = cfg->max_speed,
        .stale_after_ms = (int64_t)cfg->stale_after * 1000,
        .notify = gr_console_on_pending,
        .event = gr_console_on_event,
    };
    d.hub = gr_hub_new(&hopt);
    if (d.hub == NULL) {
        gr_error("out of memory");
        goto out;
    }
    if (load_mapping(&d) < 0 || load_secret(&d) < 0) {
        status = GR_EXIT_CONFIG;
        goto out;
    }

    start_signal(&d, &d.sigint, SIGINT);
    start_signal(&d, &d.sigterm, SIGTERM);
    start_signal(&d, &d.sighup, SIGHUP);
    uv_timer_init(&d.loop, &d.stale_timer);
    d.stale_timer.data = &d;
    if (cfg->stale_after > 0) /* 0: units never go stale */
        uv_timer_start(&d.stale_timer, on_stale_timer, STALE_CHECK_MS, STALE_CHECK_MS);
    uv_timer_init(&d.loop, &d.watchdog);
    uint64_t watchdog_ms = gr_sd_watchdog_usec() / 2000; /* half the interval, in ms */
    if (watchdog_ms > 0)
        uv_timer_start(&d.watchdog, on_watchdog, watchdog_ms, watchdog_ms);
    uv_timer_init(&d.loop, &d.status);
    d.status.data = &d;
    uv_timer_start(&d.status, on_status_timer, STATUS_MS, STATUS_MS);
    if (gr_ingest_start(&d.loop, cfg, d.hub, &d.ingest) < 0 ||
        gr_ws_start(&d.loop, cfg, d.key, d.key_len, d.hub, fill_gauges, &d, &d.ws) < 0) {
        daemon_stop(&d); /* bind failure, already logged: unwind and exit 1 */
    } else {
        gr_ws_set_ready(d.ws, true);
        send_status(&d, "READY=1\n");
        gr_notice("gpsrelayd %s ready (epoch %s)", GR_VERSION, gr_hub_epoch(d.hub));
        status = GR_EXIT_OK;
    }

    uv_run(&d.loop, UV_RUN_DEFAULT);
    gr_ws_free(d.ws);
    d.ws = NULL;
    uv_run(&d.loop, UV_RUN_DEFAULT); /* close callbacks the second lws destroy queued */

out:
    gr_ingest_free(d.ingest);
    gr_hub_free(d.hub);
    rc = uv_loop_close(&d.loop);
    if (rc != 0) {
        gr_error("event loop did not close cleanly: %s", uv_strerror(rc));
        status = GR_EXIT_FAILURE;
    }
    gr_sd_close();
    if (d.key != NULL) {
        OPENSSL_cleanse(d.key, d.key_len);
        free(d.key);
    }
    if (status == GR_EXIT_OK)
        gr_notice("stopped");
    return status;
}
