/*
 * test_filter.c - the acceptance rules a fix must pass before the hub publishes it
 * (gr_hub_publish): each rule refuses with its own reason, a refused fix changes nothing
 * consoles see, and the implied-speed rule lets two agreeing fixes outvote one outlier.
 */
#include "gpsrelay/hub.h"
#include "hub_fixture.h"

#include <math.h>

static void on_notify(void *owner)
{
    (void)owner;
}

static void on_event(void *owner, const struct gr_topic *t, enum gr_event e, const char *payload)
{
    (void)owner, (void)t, (void)e, (void)payload;
}

/* Publishes f for device id at receive time now_ms. */
static enum gr_reason publish(struct gr_hub *hub, const char *id, struct gr_fix f, int64_t now_ms)
{
    struct gr_unit *u = gr_hub_find_unit(hub, id, strlen(id));
    CHECK(u != NULL);
    return gr_hub_publish(hub, u, &f, now_ms, 0);
}

static bool last_lat(void *ctx, const struct gr_position *p)
{
    *(double *)ctx = p->lat;
    return true;
}

/* The latitude device:<id> publishes now. */
static double published_lat(struct gr_hub *hub, const char *id)
{
    char name[64];
    snprintf(name, sizeof name, "device:%s", id);
    double lat = NAN;
    gr_topic_each_since(gr_hub_topic(hub, name), 0, last_lat, &lat);
    return lat;
}

int main(void)
{
    struct gr_hub_options opt = {.max_future_skew_ms = 300000, /* 5 min */
                                 .max_speed = 150,             /* m/s */
                                 .stale_after_ms = 120000,
                                 .notify = on_notify,
                                 .event = on_event};
    struct gr_hub *hub = gr_hub_new(&opt);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("A a1;B a1;C a1")), 0);
    int64_t now = T0_MS;

    /* Rules that need no history. */
    struct gr_fix f = fixture_fix(now - 1000, 40.0, -74.0);
    f.valid = false;
    CHECK_INT(publish(hub, "A", f, now), GR_NO_FIX);
    CHECK_INT(publish(hub, "A", fixture_fix(now - 1000, 90.0001, -74.0), now), GR_OUT_OF_RANGE);
    CHECK_INT(publish(hub, "A", fixture_fix(now - 1000, 40.0, -180.5), now), GR_OUT_OF_RANGE);
    CHECK_INT(publish(hub, "A", fixture_fix(now - 1000, NAN, -74.0), now), GR_OUT_OF_RANGE);
    CHECK_INT(publish(hub, "A", fixture_fix(now - 1000, 0.0, 0.0), now), GR_NULL_ISLAND);
    CHECK_INT(publish(hub, "A", fixture_fix(now + 300001, 40.0, -74.0), now), GR_FUTURE);
    CHECK_INT(gr_hub_seq(hub), 0); /* nothing was published */

    /* The bounds themselves pass: the poles, the antimeridian, max_future_skew exactly. */
    CHECK_INT(publish(hub, "B", fixture_fix(now - 1000, -90.0, 180.0), now), GR_OK);
    CHECK_INT(publish(hub, "C", fixture_fix(now + 300000, 40.0, -74.0), now), GR_OK);
    CHECK_INT(gr_hub_seq(hub), 2);

    /* Against the unit's published position: older, the same time. */
    CHECK_INT(publish(hub, "A", fixture_fix(now - 10000, 40.0, -74.0), now), GR_OK);
    CHECK_INT(publish(hub, "A", fixture_fix(now - 10001, 40.0, -74.0), now), GR_OUT_OF_ORDER);
    CHECK_INT(publish(hub, "A", fixture_fix(now - 10000, 40.0, -74.0), now), GR_DUPLICATE);
    CHECK_INT(gr_hub_seq(hub), 3);

    /* Implied speed: 0.01 degree of latitude is about 1,112 m. In 1 s that is too fast
     * for 150 m/s; in 10 s (111 m/s) it is not. */
    CHECK_INT(publish(hub, "A", fixture_fix(now - 9000, 40.01, -74.0), now), GR_SPEED);
    CHECK_INT(publish(hub, "A", fixture_fix(now, 40.01, -74.0), now), GR_OK);
    CHECK_NEAR(published_lat(hub, "A"), 40.01, 1e-9);

    /* One bad fix published (a jump of 1 degree, 111 km, allowed in 20 min) makes the
     * next correct one look too fast; when the fix after that agrees with the refused one,
     * two fixes outvote the published outlier and the track continues. */
    now += 1200000;
    CHECK_INT(publish(hub, "A", fixture_fix(now, 41.01, -74.0), now), GR_OK); /* the outlier */
    CHECK_INT(publish(hub, "A", fixture_fix(now + 10000, 40.0101, -74.0), now + 10000), GR_SPEED);
    CHECK_NEAR(published_lat(hub, "A"), 41.01, 1e-9);
    uint64_t seq = gr_hub_seq(hub);
    CHECK_INT(publish(hub, "A", fixture_fix(now + 20000, 40.0102, -74.0), now + 20000), GR_OK);
    CHECK_NEAR(published_lat(hub, "A"), 40.0102, 1e-9);
    CHECK_INT(gr_hub_seq(hub), seq + 1);

    /* Without a refused fix to agree with, a too-fast one stays refused, and so does
     * the next if it does not agree with that one either. */
    CHECK_INT(publish(hub, "A", fixture_fix(now + 21000, 45.0, -74.0), now + 21000), GR_SPEED);
    CHECK_INT(publish(hub, "A", fixture_fix(now + 22000, 35.0, -74.0), now + 22000), GR_SPEED);
    CHECK_NEAR(published_lat(hub, "A"), 40.0102, 1e-9);

    gr_hub_free(hub);
    return check_result("test_filter");
}
