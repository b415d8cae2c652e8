/*
 * filter.c - the acceptance rules that need a unit's history (docs/ingest.md): a fix
 * must be valid, in range, not 0,0, not from the future, newer than the unit's published
 * position and reachable from it at a plausible speed. The decoders have already
 * refused what is malformed on its own.
 *
 * Time: a fix's own time is what the receiver says; the receive time is the daemon's
 * clock. A fix cannot have been taken after it was received, so where its own time is
 * later, the receive time is what the rules trust. Otherwise one fix dated minutes ahead
 * (a glitch, or a spoofed datagram) would divide its jump by minutes that have not passed
 * and then, published, refuse every correct fix dated before it: the unit frozen until
 * the clock caught up.
 */
#include "model.h"

#include <math.h>

#define EARTH_RADIUS_M 6371008.8 /* mean radius (IUGG) */
#define DEG_TO_RAD     (3.14159265358979323846 / 180.0)

/*
 * How much longer than the receive clock allows the speed rule will take the time between
 * two fixes to be, when their own times say so. It matters only for receivers whose clock
 * runs ahead of ours (GPS time sent as UTC: 18 s): fixes received in one payload, or
 * closer together than they were taken (latency jitter), keep the gap their times give up
 * to this much. A fix dated further ahead gains at most this: 5 s at max_speed 150 m/s is
 * a jump of 750 m, where a fix dated 290 s ahead would have gained 43 km.
 */
#define CLOCK_SLACK_MS 5000

/* Great-circle distance in metres (haversine: well-conditioned for short hops). */
static double distance_m(double lat1, double lon1, double lat2, double lon2)
{
    double dlat = (lat2 - lat1) * DEG_TO_RAD, dlon = (lon2 - lon1) * DEG_TO_RAD;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * DEG_TO_RAD) * cos(lat2 * DEG_TO_RAD) * sin(dlon / 2) * sin(dlon / 2);
    return 2 * EARTH_RADIUS_M * asin(sqrt(a < 1 ? a : 1));
}

/* A fix's time as far as the receive clock vouches for it: never after its receipt. */
static int64_t vouched_ms(int64_t time_ms, int64_t rx_ms)
{
    return time_ms < rx_ms ? time_ms : rx_ms;
}

/* A fix seen earlier: the published position, or the last fix refused against it. */
struct earlier {
    double lat, lon;
    int64_t time_ms, rx_ms;
};

/*
 * Whether f, received at now_ms, implies a move faster than max_speed from e. The time
 * between them is what their own times say, but no more than their vouched times allow
 * plus CLOCK_SLACK_MS; when f is dated before e (e was dated ahead of its receipt, so its
 * own time says nothing), that bound is the time.
 */
static bool too_fast(const struct gr_hub_options *opt, const struct earlier *e,
                     const struct gr_fix *f, int64_t now_ms)
{
    int64_t own = f->time_ms - e->time_ms;
    int64_t vouched = vouched_ms(f->time_ms, now_ms) - vouched_ms(e->time_ms, e->rx_ms);
    int64_t gap = own > 0 && own < vouched + CLOCK_SLACK_MS ? own : vouched + CLOCK_SLACK_MS;
    double dt = (double)gap / 1000.0;
    return dt > 0 && distance_m(e->lat, e->lon, f->lat, f->lon) > opt->max_speed * dt;
}

/* The rules against the published position: ordering, then implied speed. */
static enum gr_reason against(const struct gr_hub_options *opt, const struct earlier *pos,
                              const struct gr_fix *f, int64_t now_ms)
{
    if (f->time_ms == pos->time_ms)
        return GR_DUPLICATE;
    /* A position dated ahead of its receipt is, for ordering, as of its receipt: later
     * fixes need only be newer than that, not newer than a time that may be a glitch. */
    if (f->time_ms < vouched_ms(pos->time_ms, pos->rx_ms))
        return GR_OUT_OF_ORDER;
    return too_fast(opt, pos, f, now_ms) ? GR_SPEED : GR_OK;
}

/*
 * The escape from the rules against the published position: a single bad fix once
 * published would otherwise make every later, correct fix look too fast, or (dated ahead)
 * too old. When a fix is refused against the published position but is newer than the
 * fix refused just before it and plausible from it, two fixes agree against one, so the
 * published position was the outlier and the new fix is accepted.
 *
 * Too old is outvoted only when the published position was dated ahead of its receipt:
 * one on time cannot be a temporal outlier, and fixes older than it are late (a link's
 * backlog), not a correction.
 */
static enum gr_reason check_history(const struct gr_hub_options *opt, struct gr_unit *u,
                                    const struct gr_fix *f, int64_t now_ms)
{
    if (u->pos == NULL) {
        u->have_refused = false;
        return GR_OK;
    }
    struct earlier pos = {u->pos->lat, u->pos->lon, u->pos->time_ms, u->pos_rx_ms};
    enum gr_reason r = against(opt, &pos, f, now_ms);
    if (r == GR_OK) {
        u->have_refused = false;
        return GR_OK;
    }
    bool outvotable = r == GR_SPEED || (r == GR_OUT_OF_ORDER && pos.time_ms > pos.rx_ms);
    if (!outvotable)
        return r; /* a duplicate, or a late fix: nothing to learn from it */
    struct earlier refused = {u->refused_lat, u->refused_lon, u->refused_time_ms, u->refused_rx_ms};
    bool agrees =
        u->have_refused && f->time_ms > refused.time_ms && !too_fast(opt, &refused, f, now_ms);
    u->have_refused = !agrees;
    u->refused_lat = f->lat;
    u->refused_lon = f->lon;
    u->refused_time_ms = f->time_ms;
    u->refused_rx_ms = now_ms;
    return agrees ? GR_OK : r;
}

enum gr_reason gr_filter_fix(const struct gr_hub_options *opt, struct gr_unit *u,
                             const struct gr_fix *f, int64_t now_ms)
{
    if (!f->valid)
        return GR_NO_FIX;
    if (!(fabs(f->lat) <= 90.0 && fabs(f->lon) <= 180.0))
        return GR_OUT_OF_RANGE;
    if (f->lat == 0.0 && f->lon == 0.0)
        return GR_NULL_ISLAND;
    if (f->time_ms > now_ms + opt->max_future_skew_ms)
        return GR_FUTURE;
    return check_history(opt, u, f, now_ms);
}
