/*
 * ingest.c - UDP listeners and the report pipeline.
 */
#include "gpsrelay/ingest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpsrelay/log.h"
#include "gpsrelay/nmea.h"
#include "gpsrelay/report.h"
#include "gpsrelay/stats.h"

#define MS_PER_DAY 86400000LL

struct gr_ingest {
    struct gr_hub *hub;
    size_t n_udp;
    uv_udp_t udp[GR_LISTEN_MAX];
};

/* libuv hands us one datagram at a time and we finish with it before the next read, so
 * one buffer serves every listener. */
static char datagram_buf[GR_DATAGRAM_MAX];

static int64_t wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Decodes one report body into a fix with its full UTC time. */
static enum gr_reason decode(const char *body, size_t len, struct gr_fix *fix)
{
    if (body[0] != '$')
        return GR_UNSUPPORTED; /* TAIP comes with its decoder */

    struct gr_nmea s;
    enum gr_reason r = gr_nmea_decode(body, len, &s);
    if (r != GR_OK)
        return r;
    if (!s.checksum_seen)
        gr_stats.ingest_no_checksum++;
    if (s.time_of_day_ms < 0 || s.year == 0)
        return s.fix.valid ? GR_NO_TIME : GR_NO_FIX;
    *fix = s.fix;
    fix->time_ms = gr_days_from_civil(s.year, s.month, s.day) * MS_PER_DAY + s.time_of_day_ms;
    return GR_OK;
}

static enum gr_reason handle_line(struct gr_hub *hub, const char *line, size_t len,
                                  const struct sockaddr *from, int64_t now_ms)
{
    if (len > GR_LINE_MAX)
        return GR_LINE_TOO_LONG;

    struct gr_report rep;
    enum gr_reason r = gr_report_split(line, len, &rep);
    if (r != GR_OK)
        return r;

    struct gr_fix fix;
    r = decode(rep.body, rep.body_len, &fix);
    if (r != GR_OK)
        return r;

    struct gr_unit *unit =
        rep.id ? gr_hub_find_unit(hub, rep.id, rep.id_len) : gr_hub_find_unit_by_addr(hub, from);
    if (unit == NULL)
        return GR_UNKNOWN_DEVICE;
    return gr_hub_publish(hub, unit, &fix, now_ms);
}

void gr_ingest_payload(struct gr_hub *hub, const char *p, size_t len, const struct sockaddr *from,
                       int64_t now_ms)
{
    size_t off = 0;
    const char *line;
    size_t line_len;
    while (gr_frame_next(p, len, &off, &line, &line_len)) {
        gr_stats.ingest_reports++;
        enum gr_reason r = handle_line(hub, line, line_len, from, now_ms);
        if (r != GR_OK) {
            gr_stats.ingest_rejected[r]++;
            gr_debug("ingest: report dropped: %s", gr_reason_label(r));
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(datagram_buf, sizeof(datagram_buf));
}

static void on_datagram(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
    struct gr_ingest *in = h->data;
    if (nread < 0) {
        gr_warn("ingest: udp receive error: %s", uv_strerror((int)nread));
        return;
    }
    if (from == NULL)
        return; /* libuv's "nothing more to read" */
    gr_stats.ingest_datagrams++;
    if (flags & UV_UDP_PARTIAL) {
        gr_stats.ingest_rejected[GR_LINE_TOO_LONG]++;
        return;
    }
    gr_ingest_payload(in->hub, buf->base, (size_t)nread, from, wall_clock_ms());
}

int gr_ingest_start(uv_loop_t *loop, const struct gr_config *cfg, struct gr_hub *hub,
                    struct gr_ingest **out)
{
    struct gr_ingest *in = calloc(1, sizeof(*in));
    if (in == NULL)
        return -ENOMEM;
    in->hub = hub;
    *out = in;

    for (size_t i = 0; i < cfg->n_listen_udp; i++) {
        const struct gr_addr *a = &cfg->listen_udp[i];
        uv_udp_t *h = &in->udp[i];
        uv_udp_init(loop, h);
        h->data = in;
        in->n_udp++;
        int rc = uv_udp_bind(h, (const struct sockaddr *)&a->sa, 0);
        if (rc == 0)
            rc = uv_udp_recv_start(h, on_alloc, on_datagram);
        if (rc < 0) {
            gr_error("ingest: cannot listen on udp %s: %s", a->text, uv_strerror(rc));
            gr_ingest_stop(in);
            return rc;
        }
        struct sockaddr_storage bound;
        int len = sizeof(bound);
        char host[64] = "?";
        if (uv_udp_getsockname(h, (struct sockaddr *)&bound, &len) == 0)
            uv_ip_name((struct sockaddr *)&bound, host, sizeof(host));
        gr_notice("ingest: listening on udp %s port %d", host,
                  ntohs(((struct sockaddr_in *)&bound)->sin_port));
    }
    return 0;
}

void gr_ingest_stop(struct gr_ingest *in)
{
    for (size_t i = 0; i < in->n_udp; i++)
        if (!uv_is_closing((uv_handle_t *)&in->udp[i]))
            uv_close((uv_handle_t *)&in->udp[i], NULL);
}

void gr_ingest_free(struct gr_ingest *in)
{
    free(in);
}
