/*
 * ratelimit.h - reports per second per source address (ingest_rate_limit), as token
 * buckets in a bounded address table. A source forgotten to make room starts again with
 * a full bucket: spraying spoofed sources buys an attacker one burst per forgotten
 * source, never unbounded memory.
 */
#ifndef GPSRELAY_RATELIMIT_H
#define GPSRELAY_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define GR_RATELIMIT_SOURCES 65536 /* sources tracked at once */

struct gr_ratelimit;

/* rate reports per second, with bursts of up to burst (>= 1). NULL on ENOMEM. */
struct gr_ratelimit *gr_ratelimit_new(size_t max_sources, double rate, double burst);
void gr_ratelimit_free(struct gr_ratelimit *rl);

/* New rate and burst (a reload); each source keeps what it owes. */
void gr_ratelimit_set(struct gr_ratelimit *rl, double rate, double burst);

/* Takes one token for sa at now_ms: true when the report may pass. *evicted as in
 * gr_addrtable_touch (may be NULL). */
bool gr_ratelimit_allow(struct gr_ratelimit *rl, const struct sockaddr *sa, int64_t now_ms,
                        bool *evicted);

#endif
