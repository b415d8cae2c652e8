/*
 * endpoints.h - the operator's endpoints on the console port: /healthz (the process
 * answers), /readyz (it serves: 200 once the daemon says so, 503 before and while
 * stopping) and /metrics (Prometheus text, docs/operations.md). Each answers at once
 * and completes the request; each returns what the lws callback must return.
 */
#ifndef GPSRELAY_ENDPOINTS_H
#define GPSRELAY_ENDPOINTS_H

#include <stdbool.h>

#include "gpsrelay/stats.h"

struct lws;

/* Fills the gauges of /metrics from whoever owns them (the daemon). */
typedef void (*gr_gauges_fn)(void *ctx, struct gr_gauges *g);

int gr_endpoint_healthz(struct lws *wsi);
/* 200 "ready" when not_ready is NULL, else 503 with not_ready as the body's one line. */
int gr_endpoint_readyz(struct lws *wsi, const char *not_ready);

/* The counters of stats.h and the gauges gauges(ctx, ...) fills, asked for now. */
int gr_endpoint_metrics(struct lws *wsi, gr_gauges_fn gauges, void *ctx);

#endif
