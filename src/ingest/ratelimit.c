/*
 * ratelimit.c - a token bucket per source address, in an address table keyed by address
 * only: a modem that reconnects from a new port is the same source, and a sprayer of
 * ports must not get a fresh bucket per port.
 */
#include "gpsrelay/ratelimit.h"

#include <math.h>
#include <stdlib.h>

#include "gpsrelay/addrtable.h"

/*
 * A bucket is stored as what it lacks: the table zeroes a new entry, and zero debt is
 * exactly the full bucket a new source starts with, so a single touch both finds and
 * creates without asking which it did.
 */
struct bucket {
    double debt;     /* tokens taken and not yet refilled, 0 to burst */
    int64_t last_ms; /* when debt was last brought up to date */
};

struct gr_ratelimit {
    struct gr_addrtable *sources; /* of struct bucket */
    double rate;                  /* tokens per second */
    double burst;                 /* bucket size */
};

struct gr_ratelimit *gr_ratelimit_new(size_t max_sources, double rate, double burst)
{
    /* The configuration is validated before this is called; refusing nonsense here too
     * keeps NaN out of the arithmetic below. */
    if (!isfinite(rate) || rate < 0 || !isfinite(burst) || burst < 1)
        return NULL;
    struct gr_ratelimit *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return NULL;
    rl->sources = gr_addrtable_new(max_sources, sizeof(struct bucket), false);
    if (rl->sources == NULL) {
        free(rl);
        return NULL;
    }
    rl->rate = rate;
    rl->burst = burst;
    return rl;
}

void gr_ratelimit_free(struct gr_ratelimit *rl)
{
    if (rl == NULL)
        return;
    gr_addrtable_free(rl->sources);
    free(rl);
}

bool gr_ratelimit_allow(struct gr_ratelimit *rl, const struct sockaddr *sa, int64_t now_ms,
                        bool *evicted)
{
    /* Touched whether the report passes or not: a source being refused stays the most
     * recent, as forgetting it would hand it a fresh burst. */
    struct bucket *b = gr_addrtable_touch(rl->sources, sa, evicted);
    if (b == NULL)
        return true; /* no IP address (a Unix socket): nothing remote to limit */

    /* A clock that steps back (the wall clock, set by NTP) refills nothing; the bucket
     * then follows the new time, so the source is not starved until the old time returns.
     * The difference is taken in double: int64_t subtraction could overflow. */
    if (now_ms > b->last_ms) {
        double refill = ((double)now_ms - (double)b->last_ms) * rl->rate / 1000.0;
        b->debt = refill >= b->debt ? 0 : b->debt - refill;
    }
    b->last_ms = now_ms;

    if (rl->burst - b->debt < 1)
        return false;
    b->debt += 1;
    return true;
}

void gr_ratelimit_set(struct gr_ratelimit *rl, double rate, double burst)
{
    if (!isfinite(rate) || rate < 0 || !isfinite(burst) || burst < 1)
        return;
    rl->rate = rate;
    rl->burst = burst;
}
