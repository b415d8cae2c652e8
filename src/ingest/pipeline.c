/*
 * pipeline.c - the report pipeline every listener hands its payloads to (pipeline.h):
 * framing, rate limits, decoding, device identity, assembly and publishing, with every
 * report that does not make it counted by reason.
 */
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

static void publish_at(struct gr_ingest *in, struct gr_unit *u, const struct gr_fix *fix,
                       int64_t now_ms, int64_t rx_ns)
{
    enum gr_reason r = gr_hub_publish(in->hub, u, fix, now_ms, rx_ns);
    if (r != GR_OK)
        reject(r);
}

static void publish(struct gr_ingest_batch *b, struct gr_unit *u, const struct gr_fix *fix)
{
    publish_at(b->in, u, fix, b->now_ms, b->rx_ns);
}

/*
 * A fix waiting for the rest of its sentences. It names its unit by device id, not by
 * pointer: a mapping reload may free the unit (its assembler, `listed` included, moves to
 * a replacement with the same id), so the entry finds the unit again when it is due and
 * lets go when the unit is gone or no longer lists it.
 */
struct gr_merge_wait {
    struct gr_merge_wait *prev, *next;
    uint64_t due;     /* uv_now() milliseconds */
    int64_t since_ms; /* the assembler's pending_since_ms: which of its fixes this is */
    int64_t rx_ns;    /* the first sentence's receive time: latency counts the wait */
    char id[GR_DEVICE_ID_MAX + 1];
};

static void wait_unlink(struct gr_ingest *in, struct gr_merge_wait *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        in->waiting = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    else
        in->waiting_tail = w->prev;
}

static void on_merge_due(uv_timer_t *t);

/* Arms the one timer for the head of the list, or stops it when nothing waits. */
static void wait_arm(struct gr_ingest *in)
{
    if (in->waiting == NULL) {
        uv_timer_stop(&in->merge_timer);
        return;
    }
    uint64_t now = uv_now(in->loop);
    uint64_t due = in->waiting->due;
    uv_timer_start(&in->merge_timer, on_merge_due, due > now ? due - now : 0, 0);
}

/* Takes a's entry off the list (the fix went out some other way). */
static void wait_drop(struct gr_ingest *in, struct gr_assembler *a)
{
    struct gr_merge_wait *w = a->listed;
    if (w == NULL)
        return;
    a->listed = NULL;
    bool head = in->waiting == w;
    wait_unlink(in, w);
    w->next = in->wait_spare;
    in->wait_spare = w;
    if (head)
        wait_arm(in);
}

/*
 * Lists a's pending fix to go out merge_window after its first sentence, unless it is
 * listed already, under id (the unit's, gr_unit_id). The list stays in deadline order: the window
 * is one for all, so a new deadline goes at the tail; only a window shortened by a reload walks
 * back. Returns false when no entry could be had (out of memory): the caller publishes at once
 * instead.
 */
static bool wait_list(struct gr_ingest_batch *b, struct gr_assembler *a, const char *id)
{
    struct gr_ingest *in = b->in;
    size_t id_len = strlen(id);
    struct gr_merge_wait *w = a->listed;
    if (w != NULL && w->since_ms == a->pending_since_ms)
        return true;
    if (w != NULL) {
        wait_drop(in, a); /* an older fix of the unit, completed by this one's time */
        w = NULL;
    }
    if (id_len > GR_DEVICE_ID_MAX)
        return false; /* cannot be: units come from the mapping, whose ids are bounded */
    if (in->wait_spare != NULL) {
        w = in->wait_spare;
        in->wait_spare = w->next;
    } else if ((w = malloc(sizeof(*w))) == NULL) {
        return false;
    }
    w->due = uv_now(in->loop) + (uint64_t)in->cfg->merge_window;
    w->since_ms = a->pending_since_ms;
    w->rx_ns = b->rx_ns;
    memcpy(w->id, id, id_len);
    w->id[id_len] = '\0';
    struct gr_merge_wait *after = in->waiting_tail;
    while (after != NULL && after->due > w->due)
        after = after->prev;
    w->prev = after;
    w->next = after != NULL ? after->next : in->waiting;
    if (w->next != NULL)
        w->next->prev = w;
    else
        in->waiting_tail = w;
    if (after != NULL)
        after->next = w;
    else
        in->waiting = w;
    a->listed = w;
    if (in->waiting == w)
        wait_arm(in);
    return true;
}

/* Takes the head of the list off and publishes its fix, if its unit still lists it. */
static void wait_expire_head(struct gr_ingest *in, int64_t now_ms)
{
    struct gr_merge_wait *w = in->waiting;
    wait_unlink(in, w);
    struct gr_unit *u = gr_hub_find_unit(in->hub, w->id, strlen(w->id));
    struct gr_assembler *a = u != NULL ? gr_unit_assembler(u) : NULL;
    if (a != NULL && a->listed == w) {
        a->listed = NULL;
        struct gr_fix fix;
        if (gr_assemble_expire(a, now_ms, &fix))
            publish_at(in, u, &fix, now_ms, w->rx_ns);
    }
    w->next = in->wait_spare;
    in->wait_spare = w;
}

static void on_merge_due(uv_timer_t *t)
{
    struct gr_ingest *in = t->data;
    uint64_t now = uv_now(in->loop);
    int64_t now_ms = gr_wall_clock_ms();
    while (in->waiting != NULL && in->waiting->due <= now)
        wait_expire_head(in, now_ms);
    wait_arm(in);
}

void gr_ingest_merge_init(struct gr_ingest *in)
{
    uv_timer_init(in->loop, &in->merge_timer);
    in->merge_timer.data = in;
}

/* What still waits goes out now: the hub is still there, and the fixes are whole enough. */
void gr_ingest_merge_stop(struct gr_ingest *in)
{
    int64_t now_ms = gr_wall_clock_ms();
    while (in->waiting != NULL)
        wait_expire_head(in, now_ms);
    gr_ingest_close_once((uv_handle_t *)&in->merge_timer);
}

void gr_ingest_merge_free(struct gr_ingest *in)
{
    struct gr_merge_wait *next;
    for (struct gr_merge_wait *w = in->waiting; w != NULL; w = next) {
        next = w->next;
        free(w);
    }
    for (struct gr_merge_wait *w = in->wait_spare; w != NULL; w = next) {
        next = w->next;
        free(w);
    }
    in->waiting = in->waiting_tail = in->wait_spare = NULL;
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
    struct gr_assembler *a = gr_unit_assembler(u);
    /* A VTG (or a timeless no-fix sentence) with no fix to join: it cannot be dated. */
    enum gr_reason r = gr_assemble_unplaced(a, s) ? GR_NO_TIME : GR_OK;
    struct gr_fix fix;
    if (gr_assemble_add(a, s, b->now_ms, &fix)) {
        struct gr_merge_wait *w = a->listed;
        publish_at(b->in, u, &fix, b->now_ms, w != NULL ? w->rx_ns : b->rx_ns);
    }
    if (b->in->cfg->merge_window == 0) {
        batch_touch(b, u);
        return r;
    }
    /* Complete by the device's habit: nothing more is coming for this time. */
    if (gr_assemble_pending(a) && !gr_assemble_complete(a) && wait_list(b, a, gr_unit_id(u)))
        return r;
    struct gr_merge_wait *w = a->listed;
    int64_t rx_ns = w != NULL && w->since_ms == a->pending_since_ms ? w->rx_ns : b->rx_ns;
    wait_drop(b->in, a);
    if (gr_assemble_flush(a, b->now_ms, &fix))
        publish_at(b->in, u, &fix, b->now_ms, rx_ns);
    return r;
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

enum gr_reason gr_ingest_publish_own(struct gr_ingest *in, const char *id, const struct gr_fix *fix)
{
    struct gr_unit *u = gr_hub_find_unit(in->hub, id, strlen(id));
    enum gr_reason r = u == NULL
                           ? GR_UNKNOWN_DEVICE
                           : gr_hub_publish(in->hub, u, fix, gr_wall_clock_ms(), gr_monotonic_ns());
    if (r != GR_OK)
        reject(r);
    return r;
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
