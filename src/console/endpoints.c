/*
 * endpoints.c - /healthz, /readyz and /metrics. See endpoints.h.
 */
#include "gpsrelay/endpoints.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/http.h"

int gr_endpoint_healthz(struct lws *wsi)
{
    return gr_http_reply(wsi, 200, "text/plain", "ok\n", 3);
}

int gr_endpoint_readyz(struct lws *wsi, const char *not_ready)
{
    if (not_ready == NULL)
        return gr_http_reply(wsi, 200, "text/plain", "ready\n", 6);
    char body[256];
    int n = snprintf(body, sizeof(body), "%s\n", not_ready);
    return gr_http_reply(wsi, 503, "text/plain", body,
                         n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0);
}

int gr_endpoint_metrics(struct lws *wsi, gr_gauges_fn gauges, void *ctx)
{
    struct gr_gauges g;
    memset(&g, 0, sizeof(g));
    gauges(ctx, &g);
    char *text;
    long len = gr_stats_render(&g, &text);
    if (len < 0)
        return gr_http_reply(wsi, 500, "text/plain", "out of memory\n", 14);
    int rc = gr_http_reply(wsi, 200, "text/plain; version=0.0.4", text, (size_t)len);
    free(text);
    return rc;
}
