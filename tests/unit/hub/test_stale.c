/*
 * test_stale.c - staleness (hub.h, gr_hub_check_stale): a unit goes stale exactly
 * stale_after_ms after its last position was received, once; its subscribers have a
 * unit_stale pending; a new position makes it fresh again; joins list the stale units.
 *
 * The hub reads no clock: the daemon passes gr_wall_clock_ms() (clock.h) as the receive
 * time of each fix and to each check, so the test runs the same clock by hand from now.
 */
#include "gpsrelay/clock.h"
#include "gpsrelay/hub.h"
#include "hub_fixture.h"

static int notified; /* notify calls */

static void on_notify(void *owner)
{
    (void)owner;
    notified++;
}

static void on_event(void *owner, const struct gr_topic *t, enum gr_event e, const char *payload)
{
    (void)owner, (void)t, (void)e, (void)payload;
}

static void publish(struct gr_hub *hub, const char *id, int64_t rx_ms, bool valid)
{
    struct gr_unit *u = gr_hub_find_unit(hub, id, strlen(id));
    CHECK(u != NULL);
    static int n;
    n++;
    struct gr_fix f = fixture_fix(rx_ms - 500, 40.0 + n * 0.0001, -74.0);
    f.valid = valid;
    CHECK_INT(gr_hub_publish(hub, u, &f, rx_ms, 0), valid ? GR_OK : GR_NO_FIX);
}

static void add_id(void *ctx, const char *json_id)
{
    strcat(ctx, json_id);
}

/* The stale units of topic, as a join lists them. */
static const char *stale_list(struct gr_hub *hub, const char *topic)
{
    static char list[256];
    list[0] = '\0';
    gr_topic_each_stale(gr_hub_topic(hub, topic), add_id, list);
    return list;
}

int main(void)
{
    const int64_t after = 120000;
    struct gr_hub_options opt = {.max_future_skew_ms = 300000,
                                 .max_speed = 150,
                                 .stale_after_ms = after,
                                 .notify = on_notify,
                                 .event = on_event};
    struct gr_hub *hub = gr_hub_new(&opt);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("A a1;B a1;C a2")), 0);
    const int64_t t0 = gr_wall_clock_ms();

    publish(hub, "A", t0, true);
    publish(hub, "B", t0 + 30000, true);
    struct gr_sub *a1 = gr_sub_new(hub, gr_hub_topic(hub, "agency:a1"), NULL);
    CHECK(!gr_sub_pending(a1));

    /* Not a millisecond early; C never reported, so it cannot go stale. */
    CHECK_INT(gr_hub_check_stale(hub, t0 + after - 1), 0);
    CHECK_INT(gr_hub_stale_count(hub), 0);
    notified = 0;
    CHECK_INT(gr_hub_check_stale(hub, t0 + after), 1);
    CHECK_INT(gr_hub_stale_count(hub), 1);
    CHECK_INT(notified, 1); /* a1's one subscriber (device:A has none) */
    CHECK(gr_sub_pending(a1));
    CHECK_STR(stale_list(hub, "agency:a1"), "\"A\"");

    /* Its unit_stale, once. */
    const char *payload = gr_sub_next_stale(a1);
    CHECK(payload != NULL && strncmp(payload, "{\"device\":\"A\",\"last_time\":", 26) == 0);
    CHECK(gr_sub_next_stale(a1) == NULL);
    CHECK(!gr_sub_pending(a1));
    CHECK_INT(gr_hub_check_stale(hub, t0 + after + 1000), 0); /* already stale */

    /* A fix that is no fix keeps the unit alive in last_seen but not fresh: B goes stale
     * on time, and says when it was last heard from. */
    publish(hub, "B", t0 + 100000, false);
    CHECK_INT(gr_hub_check_stale(hub, t0 + 30000 + after), 1);
    payload = gr_sub_next_stale(a1);
    char seen[64];
    time_t s = (time_t)((t0 + 100000) / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(seen, sizeof seen, "\"last_seen\":\"%Y-%m-%dT%H:%M:%S", &tm);
    CHECK(payload != NULL && strstr(payload, seen) != NULL);
    CHECK_STR(stale_list(hub, "agency:a1"), "\"A\"\"B\"");
    CHECK_INT(gr_hub_stale_count(hub), 2);

    /* A reports again: fresh, off the stale lists; its position is pending for a1. */
    publish(hub, "A", t0 + 200000, true);
    CHECK_INT(gr_hub_stale_count(hub), 1);
    CHECK_STR(stale_list(hub, "agency:a1"), "\"B\"");
    CHECK(gr_sub_pending(a1));
    CHECK(gr_sub_next_stale(a1) == NULL);

    /* ...and goes stale again stale_after_ms after that position, not the first. */
    CHECK_INT(gr_hub_check_stale(hub, t0 + 200000 + after - 1), 0);
    CHECK_INT(gr_hub_check_stale(hub, t0 + 200000 + after), 1);
    CHECK_INT(gr_hub_stale_count(hub), 2);
    CHECK_STR(stale_list(hub, "agency:a1"), "\"B\"\"A\""); /* in the order they went */

    /* A reload with a shorter stale_after applies from the next check. */
    publish(hub, "C", t0 + 400000, true);
    opt.stale_after_ms = 1000;
    gr_hub_set_limits(hub, &opt);
    CHECK_INT(gr_hub_check_stale(hub, t0 + 400999), 0);
    CHECK_INT(gr_hub_check_stale(hub, t0 + 401000), 1);
    CHECK_INT(gr_hub_stale_count(hub), 3);

    gr_sub_free(hub, a1);
    gr_hub_free(hub);
    return check_result("test_stale");
}
