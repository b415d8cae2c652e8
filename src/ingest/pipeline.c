/*
 * pipeline.c - the report pipeline every listener hands its payloads to (pipeline.h):
 * framing, rate limits, decoding, device identity, assembly and publishing, with every
 * report that does not make it counted by reason.
 */
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
    if (remembered != NULL) {
        /* Found a device: the sender is proven, safe from a spray of others (identity.h). */
        struct gr_unit *u = gr_hub_find_unit(hub, remembered, strlen(remembered));
        if (u != NULL && gr_identity_confirm(b->in->ids, b->from, b->now_ms) == 1)
            gr_stats.ingest_identity_evicted++;
        return u;
    }
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

void gr_ingest_log_listening(const char *kind, const struct sockaddr *sa, int port)
{
    char host[64] = "?";
    uv_ip_name(sa, host, sizeof(host));
    gr_notice("ingest: listening on %s %s port %d", kind, host, port);
}

/* Stop bookkeeping, here below the listeners (udp.c, tcp.c) and ingest.c that all use it. */
static void handle_closed(uv_handle_t *h)
{
    struct gr_ingest *in = h->data;
    in->closing--;
    gr_ingest_maybe_stopped(in);
}

void gr_ingest_close_once(uv_handle_t *h)
{
    if (uv_is_closing(h))
        return;
    ((struct gr_ingest *)h->data)->closing++;
    uv_close(h, handle_closed);
}

void gr_ingest_maybe_stopped(struct gr_ingest *in)
{
    if (!in->stopping || in->closing > 0 || in->n_conns > 0 || in->stopped == NULL)
        return;
    gr_stopped_fn done = in->stopped;
    in->stopped = NULL; /* once */
    done(in->stopped_arg);
}
