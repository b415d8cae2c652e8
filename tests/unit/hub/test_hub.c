/*
 * test_hub.c - replacing the mapping in steps (hub.h): nothing changes before the commit,
 * a cancel leaves the hub as it was, the commit sends exactly the unit_added and
 * unit_removed events the change implies, and units keep their positions across it.
 */
#include "gpsrelay/hub.h"
#include "gpsrelay/mapping.h"
#include "check.h"
#include "hub_fixture.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static char events[4096]; /* "topic event payload\n" per event */

static void on_notify(void *owner)
{
    (void)owner;
}

static void on_event(void *owner, const struct gr_topic *t, enum gr_event event,
                     const char *payload)
{
    (void)owner;
    size_t n = strlen(events);
    snprintf(events + n, sizeof events - n, "%s %s %s\n", gr_topic_name(t), gr_event_name(event),
             payload);
}

/* A fix of device a second after the previous one of any device, 11 m further north. */
static void publish(struct gr_hub *hub, const char *device)
{
    static int n;
    struct gr_unit *u = gr_hub_find_unit(hub, device, strlen(device));
    CHECK(u != NULL);
    int64_t now = (int64_t)time(NULL) * 1000;
    n++;
    struct gr_fix f = {
        .time_ms = now - 60000 + n * 1000, .lat = 40.0 + n * 0.0001, .lon = -74.0, .valid = true};
    CHECK_INT(gr_hub_publish(hub, u, &f, now, 0), GR_OK);
}

int main(void)
{
    struct gr_hub *hub = fixture_hub(on_notify, on_event);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("A a1;B a1;B a2;C a2")), 0);
    CHECK_INT(gr_hub_device_count(hub), 3);
    publish(hub, "A");
    publish(hub, "B");
    uint64_t seq = gr_hub_seq(hub);

    struct gr_sub *a1 = gr_sub_new(hub, gr_hub_topic(hub, "agency:a1"), NULL);
    struct gr_sub *a2 = gr_sub_new(hub, gr_hub_topic(hub, "agency:a2"), NULL);
    const struct gr_mapping *before = gr_hub_mapping(hub);

    /* A moves a1 -> a2, B stays as it is, C goes, D comes to a1. One device per step. */
    struct gr_hub_update *up = gr_hub_update_begin(hub, fixture_mapping("A a2;B a1;B a2;D a1"));
    CHECK_INT(gr_hub_update_step(up, 1), 1);
    CHECK_INT(gr_hub_update_step(up, 1), 1);
    CHECK(gr_hub_mapping(hub) == before); /* nothing in force before the commit */
    CHECK(gr_hub_find_unit(hub, "C", 1) != NULL && gr_hub_find_unit(hub, "D", 1) == NULL);
    CHECK_STR(events, "");
    publish(hub, "A"); /* the hub works meanwhile */

    /* Cancel: as it was. */
    gr_hub_update_cancel(up);
    CHECK(gr_hub_mapping(hub) == before);
    CHECK_INT(gr_hub_device_count(hub), 3);
    CHECK_STR(events, "");
    CHECK(gr_hub_topic(hub, "device:D") == NULL); /* the topic prepared for D went too */

    /* Again, to the end. */
    up = gr_hub_update_begin(hub, fixture_mapping("A a2;B a1;B a2;D a1"));
    int rc;
    int steps = 0;
    while ((rc = gr_hub_update_step(up, 1)) == 1)
        steps++;
    CHECK_INT(rc, 0);
    CHECK_INT(steps, 2); /* three devices: the third step prepares D and commits */
    CHECK_INT(gr_hub_device_count(hub), 3);
    CHECK(gr_hub_find_unit(hub, "C", 1) == NULL && gr_hub_find_unit(hub, "D", 1) != NULL);
    CHECK(gr_hub_topic(hub, "device:C") == NULL && gr_hub_topic(hub, "device:D") != NULL);
    /* Removals first, then additions; A's carries its position along. */
    static const char expect[] = "agency:a1 unit_removed {\"device\":\"A\"}\n"
                                 "agency:a2 unit_removed {\"device\":\"C\"}\n"
                                 "agency:a2 unit_added {\"device\":\"A\",\"label\":\"\","
                                 "\"position\":{";
    CHECK(strncmp(events, expect, strlen(expect)) == 0);
    CHECK(strstr(events, "agency:a1 unit_added {\"device\":\"D\",\"label\":\"\"}\n") != NULL);
    CHECK(strstr(events, "\"B\"") == NULL); /* B did not change: no event */
    CHECK(gr_hub_seq(hub) == seq + 1);

    /* Positions keep flowing to the new topics: A's next one reaches a2, not a1. */
    publish(hub, "A");
    CHECK(gr_sub_pending(a2));

    /* A label change in steps: nothing before the commit, the old label after a cancel. */
    static const char relabeled[] = "A a2;B a1=Bravo 2;B a2=Bravo 2;D a1";
    events[0] = '\0';
    up = gr_hub_update_begin(hub, fixture_mapping(relabeled));
    CHECK_INT(gr_hub_update_step(up, 2), 1);
    CHECK_STR(events, "");
    gr_hub_update_cancel(up);
    CHECK_STR(gr_unit_label(gr_hub_find_unit(hub, "B", 1)), "");
    CHECK_STR(events, "");
    /* At the commit, a unit_added for B (kept: same topics) in both its topics, position
     * included, and nothing for the others. */
    up = gr_hub_update_begin(hub, fixture_mapping(relabeled));
    CHECK_INT(gr_hub_update_step(up, 2), 1);
    CHECK_INT(gr_hub_update_step(up, 2), 0);
    static const char b1[] = "agency:a1 unit_added {\"device\":\"B\",\"label\":\"Bravo 2\","
                             "\"position\":{\"device\":\"B\"";
    CHECK(strncmp(events, b1, strlen(b1)) == 0);
    const char *second = strchr(events, '\n');
    static const char b2[] = "\nagency:a2 unit_added {\"device\":\"B\",\"label\":\"Bravo 2\",";
    CHECK(second != NULL && strncmp(second, b2, strlen(b2)) == 0);
    CHECK(second != NULL && strchr(second + 1, '\n') == events + strlen(events) - 1);
    CHECK_STR(gr_unit_label(gr_hub_find_unit(hub, "B", 1)), "Bravo 2");
    /* The same mapping again, a new copy of it: no event, and the kept unit's label is the
     * new copy's (the sanitizers' build sees a read of the freed one). */
    events[0] = '\0';
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping(relabeled)), 0);
    CHECK_STR(events, "");
    CHECK(gr_unit_label(gr_hub_find_unit(hub, "B", 1)) ==
          gr_mapping_find(gr_hub_mapping(hub), "B", 1)->label);
    CHECK_STR(gr_unit_label(gr_hub_find_unit(hub, "B", 1)), "Bravo 2");

    gr_sub_free(hub, a1);
    gr_sub_free(hub, a2);
    gr_hub_free(hub);
    return check_result("test_hub");
}
