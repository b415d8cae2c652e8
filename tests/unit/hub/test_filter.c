/*
 * test_filter.c - the acceptance rules a fix must pass before the hub publishes it
 * (gr_hub_publish): each rule refuses with its own reason, a refused fix changes nothing
 * consoles see, and the implied-speed rule lets two agreeing fixes outvote one outlier.
 * A fix dated ahead of the receive clock neither fools the speed rule nor becomes the
 * reference later fixes must beat, so it cannot freeze a unit (issue 16).
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

/* 0.36 degree of latitude: about 40 km. */
#define FAR_LAT 0.36

/*
 * The sequence: a unit reporting at 1 Hz (each fix received 300 ms after its time)
 * gets one fix dated 290 s ahead, inside max_future_skew, 40 km away. Over 290 s that is
 * 138 m/s, under max_speed; but it was received 1 s after the last fix, so it is refused,
 * and every correct fix after it is published: none refused, the unit never stale.
 */
static void test_future_outlier(const struct gr_hub_options *opt)
{
    struct gr_hub *hub = gr_hub_new(opt);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("D a1")), 0);
    int64_t t = T0_MS;
    int refused = 0;
    for (int k = 0; k < 10; k++, t += 1000)
        refused += publish(hub, "D", fixture_fix(t, 40.0 + k * 1e-4, -74.0), t + 300) != GR_OK;
    CHECK_INT(refused, 0);
    CHECK_INT(publish(hub, "D", fixture_fix(t + 290000, 40.0 + FAR_LAT, -74.0), t + 300), GR_SPEED);
    for (int k = 10; k < 400; k++, t += 1000) {
        enum gr_reason r = publish(hub, "D", fixture_fix(t, 40.0 + k * 1e-4, -74.0), t + 300);
        if (r != GR_OK && refused++ == 0)
            fprintf(stderr, "  fix %d s after the outlier refused: %s\n", k - 10,
                    gr_reason_label(r));
        gr_hub_check_stale(hub, t + 300);
        CHECK(gr_hub_stale_count(hub) == 0);
    }
    CHECK_INT(refused, 0);
    CHECK_INT(gr_hub_seq(hub), 400);
    CHECK_NEAR(published_lat(hub, "D"), 40.0 + 399 * 1e-4, 1e-9);
    gr_hub_free(hub);
}

/*
 * A fix dated 290 s ahead at the unit's own place passes the speed rule and is published;
 * the next correct fix, dated before it but after it was received, is still published: a
 * position's time counts for ordering as no later than its receipt.
 */
static void test_future_reference(const struct gr_hub_options *opt)
{
    struct gr_hub *hub = gr_hub_new(opt);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("D a1")), 0);
    int64_t t = T0_MS;
    CHECK_INT(publish(hub, "D", fixture_fix(t, 40.0, -74.0), t + 300), GR_OK);
    t += 1000;
    CHECK_INT(publish(hub, "D", fixture_fix(t + 290000, 40.0001, -74.0), t + 300), GR_OK);
    for (int k = 1; k < 5; k++)
        CHECK_INT(publish(hub, "D", fixture_fix(t + k * 1000, 40.0001 + k * 1e-4, -74.0),
                          t + k * 1000 + 300),
                  GR_OK);
    CHECK_NEAR(published_lat(hub, "D"), 40.0005, 1e-9);
    /* Older than the published fix, which was on time: out of order as before. */
    CHECK_INT(publish(hub, "D", fixture_fix(t + 3000, 40.0004, -74.0), t + 5300), GR_OUT_OF_ORDER);
    gr_hub_free(hub);
}

/*
 * On a slow link (fixes received 3 s after their time) a fix dated ahead and published
 * makes the next one, dated before that one's receipt, out of order; the one after it
 * agrees with it, so two fixes outvote the published one, as for the speed rule. An
 * on-time published fix is not outvoted that way: two older fixes are just late.
 */
static void test_temporal_outvote(const struct gr_hub_options *opt)
{
    struct gr_hub *hub = gr_hub_new(opt);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("D a1;E a1")), 0);
    int64_t t = T0_MS;
    CHECK_INT(publish(hub, "D", fixture_fix(t, 40.0, -74.0), t + 3000), GR_OK);
    CHECK_INT(publish(hub, "D", fixture_fix(t + 250000, 40.0, -74.0), t + 4000), GR_OK);
    CHECK_INT(publish(hub, "D", fixture_fix(t + 2000, 40.0001, -74.0), t + 5000), GR_OUT_OF_ORDER);
    CHECK_INT(publish(hub, "D", fixture_fix(t + 3000, 40.0002, -74.0), t + 6000), GR_OK);
    CHECK_NEAR(published_lat(hub, "D"), 40.0002, 1e-9);
    CHECK_INT(publish(hub, "D", fixture_fix(t + 4000, 40.0003, -74.0), t + 7000), GR_OK);

    /* E's published fix is on time: a late pair older than it stays refused. */
    CHECK_INT(publish(hub, "E", fixture_fix(t + 60000, 41.0, -74.0), t + 60300), GR_OK);
    CHECK_INT(publish(hub, "E", fixture_fix(t + 50000, 41.0, -74.0), t + 61000), GR_OUT_OF_ORDER);
    CHECK_INT(publish(hub, "E", fixture_fix(t + 51000, 41.0, -74.0), t + 61100), GR_OUT_OF_ORDER);
    CHECK_NEAR(published_lat(hub, "E"), 41.0, 1e-9);
    gr_hub_free(hub);
}

/*
 * A receiver whose clock runs steadily ahead (18 s: GPS time reported as UTC) keeps its
 * track: fixes one second apart are judged over one second, also when two arrive in one
 * payload, and a real jump is still too fast.
 */
static void test_clock_ahead(const struct gr_hub_options *opt)
{
    struct gr_hub *hub = gr_hub_new(opt);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("F a1")), 0);
    int64_t t = T0_MS, ahead = 18000;
    for (int k = 0; k < 5; k++)
        CHECK_INT(publish(hub, "F", fixture_fix(t + k * 1000 + ahead, 40.0 + k * 1e-3, -74.0),
                          t + k * 1000),
                  GR_OK); /* 111 m/s */
    t += 5000;
    CHECK_INT(publish(hub, "F", fixture_fix(t + ahead, 40.005, -74.0), t), GR_OK);
    CHECK_INT(publish(hub, "F", fixture_fix(t + 1000 + ahead, 40.006, -74.0), t), GR_OK);
    CHECK_INT(publish(hub, "F", fixture_fix(t + 2000 + ahead, 40.02, -74.0), t + 1000), GR_SPEED);
    gr_hub_free(hub);
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
    test_future_outlier(&opt);
    test_future_reference(&opt);
    test_temporal_outvote(&opt);
    test_clock_ahead(&opt);
    return check_result("test_filter");
}
