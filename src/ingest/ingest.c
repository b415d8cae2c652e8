/*
 * ingest.c - the lifecycle of ingest (ingest.h): the pipeline's state, the listeners
 * (udp.c, tcp.c) and the drop summary.
 */
#include "gpsrelay/ingest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/identity.h"
#include "gpsrelay/log.h"
#include "gpsrelay/ratelimit.h"
#include "listeners.h"
#include "pipeline.h"

/* Appends " N label," to line for a count that moved. */
static void summary_item(char *line, size_t cap, uint64_t now, uint64_t *then, const char *label)
{
    size_t n = strlen(line);
    if (now != *then && n < cap)
        snprintf(line + n, cap - n, " %llu %s,", (unsigned long long)(now - *then), label);
    *then = now;
}

static void on_summary(uv_timer_t *t)
{
    struct gr_ingest *in = t->data;
    char line[1024] = "";
    for (int r = GR_OK + 1; r < GR_REASON_COUNT; r++)
        summary_item(line, sizeof(line), gr_stats.ingest_rejected[r], &in->summarized[r],
                     gr_reason_label((enum gr_reason)r));
    summary_item(line, sizeof(line), gr_stats.ingest_not_allowed, &in->summarized_not_allowed,
                 "not_allowed");
    summary_item(line, sizeof(line), gr_stats.ingest_rate_limited, &in->summarized_rate_limited,
                 "rate_limited");
    summary_item(line, sizeof(line), gr_stats.ingest_receive_errors, &in->summarized_receive_errors,
                 "udp receive errors");
    summary_item(line, sizeof(line), gr_ingest_socket_drops(in), &in->summarized_socket_drops,
                 "datagrams at a full socket buffer (the kernel's)");
    bool episode_over[GR_TCP_REFUSAL_COUNT];
    for (int r = 0; r < GR_TCP_REFUSAL_COUNT; r++) {
        char label[96];
        snprintf(label, sizeof(label), "tcp connections refused (%s)", gr_tcp_refusal_label(r));
        episode_over[r] =
            in->refusing[r] && gr_stats.tcp_refused[r] == in->summarized_tcp_refused[r];
        summary_item(line, sizeof(line), gr_stats.tcp_refused[r], &in->summarized_tcp_refused[r],
                     label);
    }
    summary_item(line, sizeof(line), gr_stats.tcp_accept_errors, &in->summarized_tcp_accept_errors,
                 "tcp accept errors");
    summary_item(line, sizeof(line), gr_stats.phone_incomplete, &in->summarized_phone_incomplete,
                 "phone requests cut (slow or gone)");
    summary_item(line, sizeof(line), gr_stats.phone_refused, &in->summarized_phone_refused,
                 "phone connections refused (descriptors)");
    size_t n = strlen(line);
    if (n > 0) {
        line[n - 1] = '\0'; /* the last comma */
        gr_info("ingest: dropped in the last %d s:%s", GR_INGEST_SUMMARY_MS / 1000, line);
    }
    for (int r = 0; r < GR_TCP_REFUSAL_COUNT; r++) {
        if (episode_over[r]) {
            in->refusing[r] = false;
            gr_notice("ingest: no modem tcp connection refused (%s) in the last %d s",
                      gr_tcp_refusal_label(r), GR_INGEST_SUMMARY_MS / 1000);
        }
    }
}

void gr_ingest_set_config(struct gr_ingest *in, const struct gr_config *cfg)
{
    in->cfg = cfg;
    gr_ratelimit_set(in->rate, cfg->ingest_rate_limit, cfg->ingest_rate_limit);
    gr_ingest_tcp_set_idle(in);
}

int gr_ingest_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                    struct gr_ingest **out)
{
    struct gr_ingest *in = calloc(1, sizeof(*in));
    *out = in;
    if (in == NULL)
        return -ENOMEM;
    in->loop = loop;
    in->hub = hub;
    in->cfg = cfg;
    uv_timer_init(loop, &in->summary);
    in->summary.data = in;
    uv_timer_start(&in->summary, on_summary, GR_INGEST_SUMMARY_MS, GR_INGEST_SUMMARY_MS);
    gr_ingest_merge_init(in);
    int rc = gr_ingest_tcp_init(in);
    in->ids = gr_identity_new(GR_IDENTITY_MAX);
    /* Bursts of a second's worth: a modem sending RMC+GGA+VTG per cycle, or a backlog
     * after a cell outage, is not cut off at once. */
    in->rate =
        gr_ratelimit_new(GR_RATELIMIT_SOURCES, cfg->ingest_rate_limit, cfg->ingest_rate_limit);
    if (rc == 0 && (in->ids == NULL || in->rate == NULL))
        rc = -ENOMEM;

    for (size_t i = 0; rc == 0 && i < cfg->n_listen_udp; i++)
        rc = gr_ingest_udp_start(in, &cfg->listen_udp[i]);
    for (size_t i = 0; rc == 0 && i < cfg->n_listen_tcp; i++)
        rc = gr_ingest_tcp_start(in, &cfg->listen_tcp[i]);
    if (rc == 0)
        gr_ingest_tcp_set_idle(in);
    return rc; /* on failure the caller stops in as if it had started */
}

/* Each listener closes its handles; modem connections close over the next loop turns. The
 * summary timer always closes, so done comes from a close callback, never from here. */
void gr_ingest_stop(struct gr_ingest *in, gr_stopped_fn done, void *arg)
{
    if (in->stopping)
        return;
    in->stopping = true;
    in->stopped = done;
    in->stopped_arg = arg;
    gr_ingest_close_once((uv_handle_t *)&in->summary);
    gr_ingest_merge_stop(in);
    gr_ingest_udp_stop(in);
    gr_ingest_tcp_stop(in);
}

void gr_ingest_free(struct gr_ingest *in)
{
    if (in == NULL)
        return;
    gr_ingest_tcp_free(in);
    gr_ingest_merge_free(in);
    gr_identity_free(in->ids);
    gr_ratelimit_free(in->rate);
    free(in);
}

uint64_t gr_ingest_socket_drops(const struct gr_ingest *in)
{
    return in != NULL ? gr_ingest_udp_drops(in) : 0;
}

size_t gr_ingest_tcp_connections(const struct gr_ingest *in)
{
    return in->n_conns;
}
