/*
 * filter.c - the acceptance rules that need a unit's history (docs/ingest.md): a fix
 * must be valid, in range, not 0,0, not from the future, newer than the unit's published
 * position and reachable from it at a plausible speed. The decoders have already
 * refused what is malformed on its own.
 */
#include "model.h"

#include <math.h>

#define EARTH_RADIUS_M 6371008.8 /* mean radius (IUGG) */
#define DEG_TO_RAD     (3.14159265358979323846 / 180.0)

/* Great-circle distance in metres (haversine: well-conditioned for short hops). */
static double distance_m(double lat1, double lon1, double lat2, double lon2)
{
    double dlat = (lat2 - lat1) * DEG_TO_RAD, dlon = (lon2 - lon1) * DEG_TO_RAD;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * DEG_TO_RAD) * cos(lat2 * DEG_TO_RAD) * sin(dlon / 2) * sin(dlon / 2);
    return 2 * EARTH_RADIUS_M * asin(sqrt(a < 1 ? a : 1));
}

static bool too_fast(const struct gr_hub_options *opt, double lat, double lon, int64_t time_ms,
                     const struct gr_fix *f)
{
    double dt = (double)(f->time_ms - time_ms) / 1000.0;
    return dt > 0 && distance_m(lat, lon, f->lat, f->lon) > opt->max_speed * dt;
}

/*
 * The implied-speed rule, with one escape: a single bad fix once published would
 * otherwise make every later, correct fix look too fast. When a fix is too fast from the
 * published position but plausible from the last refused one, two fixes agree against
 * one, so the published position was the outlier and the new fix is accepted.
 */
static enum gr_reason speed_check(const struct gr_hub_options *opt, struct gr_unit *u,
                                  const struct gr_fix *f)
{
    if (u->pos == NULL || !too_fast(opt, u->pos->lat, u->pos->lon, u->pos->time_ms, f)) {
        u->have_refused = false;
        return GR_OK;
    }
    bool agrees = u->have_refused && f->time_ms > u->refused_time_ms &&
                  !too_fast(opt, u->refused_lat, u->refused_lon, u->refused_time_ms, f);
    u->have_refused = !agrees;
    u->refused_lat = f->lat;
    u->refused_lon = f->lon;
    u->refused_time_ms = f->time_ms;
    return agrees ? GR_OK : GR_SPEED;
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
    if (u->pos != NULL && f->time_ms < u->pos->time_ms)
        return GR_OUT_OF_ORDER;
    if (u->pos != NULL && f->time_ms == u->pos->time_ms)
        return GR_DUPLICATE;
    return speed_check(opt, u, f);
}
