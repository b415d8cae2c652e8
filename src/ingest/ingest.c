/*
 * ingest.c - the report pipeline every listener hands its payloads to (pipeline.h), the
 * drop summary, and the lifecycle of the listeners (udp.c, tcp.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/assemble.h"
#include "gpsrelay/clock.h"
#include "gpsrelay/format.h"
#include "gpsrelay/identity.h"
#include "gpsrelay/log.h"
#include "gpsrelay/ratelimit.h"
#include "gpsrelay/report.h"
#include "pipeline.h"

static void reject(enum gr_reason r)
{
    gr_stats.ingest_rejected[r]++;
}

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

/* ---- the pipeline ------------------------------------------------------------------- */

static void publish(struct gr_ingest_batch *b, struct gr_unit *u, const struct gr_fix *fix)
{
    enum gr_reason r = gr_hub_publish(b->in->hub, u, fix, b->now_ms, b->rx_ns);
    if (r != GR_OK)
        reject(r);
}

static void batch_touch(struct gr_ingest_batch *b, struct gr_unit *u)
{
    for (size_t i = 0; i < b->n_touched; i++)
        if (b->touched[i] == u)
            return;
    if (b->n_touched == GR_BATCH_UNITS)
        gr_ingest_batch_end(b);
    b->touched[b->n_touched++] = u;
}

/*
 * Device identity in the order docs/ingest.md gives, first match wins: an id inside the report
 * (JSON "id", TAIP ;ID=), the line's prefix, an id remembered for this sender, the sender's
 * address.
 */
static struct gr_unit *identify(struct gr_ingest_batch *b, const char *own, size_t own_len,
                                const struct gr_report *rep)
{
    struct gr_hub *hub = b->in->hub;
    if (own != NULL)
        return gr_hub_find_unit(hub, own, own_len);
    if (rep->id != NULL)
        return gr_hub_find_unit(hub, rep->id, rep->id_len);
    const char *remembered = gr_identity_get(b->in->ids, b->from, b->now_ms);
    if (remembered != NULL)
        return gr_hub_find_unit(hub, remembered, strlen(remembered));
    return gr_hub_find_unit_by_addr(hub, b->from);
}

/* A sentence is merged with its device's others; an identity sentence only names the
 * sender (DEVID, PCPTI). */
static enum gr_reason handle_sentence(struct gr_ingest_batch *b, const struct gr_report *rep,
                                      const struct gr_sentence *s)
{
    if (!s->checksum_seen)
        gr_stats.ingest_no_checksum++;
    if (s->type == GR_SENT_DEVID || s->type == GR_SENT_PCPTI) {
        if (gr_identity_put(b->in->ids, b->from, s->id, s->id_len, b->now_ms) == 1)
            gr_stats.ingest_identity_evicted++;
        return GR_OK;
    }

    bool own = s->type == GR_SENT_TAIP_RPV && s->id != NULL;
    struct gr_unit *u = identify(b, own ? s->id : NULL, s->id_len, rep);
    if (u == NULL)
        return GR_UNKNOWN_DEVICE;
    batch_touch(b, u);
    struct gr_fix fix;
    if (gr_assemble_add(gr_unit_assembler(u), s, b->now_ms, &fix))
        publish(b, u, &fix);
    return GR_OK;
}

/* A whole report is a fix of its own: nothing to merge. */
static enum gr_reason handle_report(struct gr_ingest_batch *b, const struct gr_report *rep,
                                    struct gr_json_report *jr)
{
    struct gr_unit *u = identify(b, jr->id[0] ? jr->id : NULL, strlen(jr->id), rep);
    if (u == NULL)
        return GR_UNKNOWN_DEVICE;
    if (jr->attrs_len > 0) {
        jr->fix.attrs = jr->attrs;
        jr->fix.attrs_len = jr->attrs_len;
    }
    publish(b, u, &jr->fix);
    return GR_OK;
}

static enum gr_reason handle_line(struct gr_ingest_batch *b, const char *line, size_t len)
{
    if (len > gr_format_line_max(line, len))
        return GR_LINE_TOO_LONG;
    struct gr_report rep;
    enum gr_reason r = gr_report_split(line, len, &rep);
    if (r != GR_OK)
        return r;
    if (rep.spliced)
        gr_stats.ingest_spliced++;
    struct gr_decoded d;
    r = rep.format->decode(rep.body, rep.body_len, &d);
    if (r != GR_OK)
        return r;
    return d.kind == GR_DECODED_REPORT ? handle_report(b, &rep, &d.report)
                                       : handle_sentence(b, &rep, &d.sentence);
}

/* With no ingest_allow configured every source may send. */
bool gr_ingest_allowed(const struct gr_ingest *in, const struct sockaddr *from)
{
    for (size_t i = 0; i < in->cfg->n_ingest_allow; i++)
        if (gr_cidr_match(&in->cfg->ingest_allow[i], from))
            return true;
    return in->cfg->n_ingest_allow == 0;
}

struct gr_ingest_batch gr_ingest_batch_begin(struct gr_ingest *in, const struct sockaddr *from)
{
    struct gr_ingest_batch b = {
        .in = in, .from = from, .now_ms = gr_wall_clock_ms(), .rx_ns = gr_monotonic_ns()};
    return b;
}

void gr_ingest_batch_add(struct gr_ingest_batch *b, const char *p, size_t len)
{
    size_t off = 0;
    const char *line;
    size_t line_len;
    while (gr_frame_next(p, len, &off, &line, &line_len)) {
        gr_stats.ingest_reports++;
        bool evicted = false;
        if (!gr_ratelimit_allow(b->in->rate, b->from, b->now_ms, &evicted)) {
            gr_stats.ingest_rate_limited++;
            continue;
        }
        gr_stats.ingest_rate_evicted += evicted;
        enum gr_reason r = handle_line(b, line, line_len);
        if (r != GR_OK)
            reject(r);
    }
}

void gr_ingest_batch_end(struct gr_ingest_batch *b)
{
    struct gr_fix fix;
    for (size_t i = 0; i < b->n_touched; i++)
        if (gr_assemble_flush(gr_unit_assembler(b->touched[i]), b->now_ms, &fix))
            publish(b, b->touched[i], &fix);
    b->n_touched = 0;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

void gr_ingest_set_config(struct gr_ingest *in, const struct gr_config *cfg)
{
    in->cfg = cfg;
    gr_ratelimit_set(in->rate, cfg->ingest_rate_limit, cfg->ingest_rate_limit);
    gr_ingest_tcp_set_idle(in);
}

void gr_ingest_log_listening(const char *kind, const struct sockaddr *sa, int port)
{
    char host[64] = "?";
    uv_ip_name(sa, host, sizeof(host));
    gr_notice("ingest: listening on %s %s port %d", kind, host, port);
}

int gr_ingest_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                    struct gr_ingest **out)
{
    struct gr_ingest *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return -ENOMEM;
    *out = in;
    in->loop = loop;
    in->hub = hub;
    in->cfg = cfg;
    uv_timer_init(loop, &in->summary);
    in->summary.data = in;
    uv_timer_start(&in->summary, on_summary, GR_INGEST_SUMMARY_MS, GR_INGEST_SUMMARY_MS);
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
    if (rc < 0)
        gr_ingest_stop(in);
    return rc;
}

/* Each listener closes its handles; modem connections close over the next loop turns. */
void gr_ingest_stop(struct gr_ingest *in)
{
    if (in->stopping)
        return;
    in->stopping = true;
    gr_ingest_udp_stop(in);
    gr_ingest_tcp_stop(in);
    gr_ingest_close_once((uv_handle_t *)&in->summary);
}

void gr_ingest_free(struct gr_ingest *in)
{
    if (in == NULL)
        return;
    gr_ingest_tcp_free(in);
    gr_identity_free(in->ids);
    gr_ratelimit_free(in->rate);
    free(in);
}
