/*
 * endpoints.c - /healthz, /readyz and /metrics. See endpoints.h.
 */
#include "gpsrelay/endpoints.h"

#include <stdlib.h>
#include <string.h>

#include "gpsrelay/http.h"

int gr_endpoint_healthz(struct lws *wsi)
{
    return gr_http_reply(wsi, 200, "text/plain", "ok\n", 3);
}

int gr_endpoint_readyz(struct lws *wsi, bool ready)
{
    return ready ? gr_http_reply(wsi, 200, "text/plain", "ready\n", 6)
                 : gr_http_reply(wsi, 503, "text/plain", "not ready\n", 10);
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
