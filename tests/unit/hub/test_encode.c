/*
 * test_encode.c - the exact bytes consoles get for a position (encode.c: fixed decimals,
 * trimmed optional fields, "attrs" spliced as it came) and for the unit events whose
 * payloads the hub builds once for every console (event.c).
 */
#include "gpsrelay/hub.h"
#include "hub_fixture.h"

static char events[4096]; /* "topic event payload\n" per event */

static void on_notify(void *owner)
{
    (void)owner;
}

static void on_event(void *owner, const struct gr_topic *t, enum gr_event e, const char *payload)
{
    (void)owner;
    size_t n = strlen(events);
    snprintf(events + n, sizeof events - n, "%s %s %s\n", gr_topic_name(t), gr_event_name(e),
             payload);
}

struct seen {
    char json[1024];
    size_t len;
};

static bool take_last(void *ctx, const struct gr_position *p)
{
    struct seen *s = ctx;
    snprintf(s->json, sizeof s->json, "%s", p->json);
    s->len = p->json_len;
    return true;
}

/* The position device:<id> publishes now, as consoles get it. */
static const char *position_of(struct gr_hub *hub, const char *id)
{
    static struct seen s;
    char name[64];
    snprintf(name, sizeof name, "device:%s", id);
    memset(&s, 0, sizeof s);
    gr_topic_each_since(gr_hub_topic(hub, name), 0, take_last, &s);
    CHECK_INT(s.len, strlen(s.json)); /* json_len counts every byte, no more */
    return s.json;
}

int main(void)
{
    struct gr_hub *hub = fixture_hub(on_notify, on_event);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("E-7 a1;S@2 a1;Z a1")), 0);

    /* Every optional field: lat/lon with 7 decimals; speed and hdop to 0.01, course and
     * alt to 0.1, trailing zeros dropped; negative values keep their sign. */
    struct gr_fix f = fixture_fix(T0_MS + 42, 40.7128, -74.006);
    f.fields = GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS;
    f.speed = 12.3;
    f.course = 5.0;
    f.alt = -3.25;
    f.hdop = 0.9;
    f.sats = 7;
    f.src = GR_SRC_NMEA;
    struct gr_unit *u = gr_hub_find_unit(hub, "E-7", 3);
    CHECK_INT(gr_hub_publish(hub, u, &f, T0_MS + 1000, 0), GR_OK);
    CHECK_STR(position_of(hub, "E-7"),
              "{\"device\":\"E-7\",\"seq\":1,\"time\":\"2026-11-23T18:20:01.042Z\","
              "\"lat\":40.7128000,\"lon\":-74.0060000,\"speed\":12.3,\"course\":5,"
              "\"alt\":-3.3,\"hdop\":0.9,\"sats\":7,\"src\":\"nmea\"}");

    /* No optional field, a JSON report's attrs spliced as the decoder left them, a value
     * that rounds to zero written without a sign. */
    static const char attrs[] = "{\"ignition\":true,\"driver\":\"a \\\"b\\\"\"}";
    f = fixture_fix(T0_MS - 86400000 + 999, -0.00000001, 151.2093);
    f.src = GR_SRC_JSON;
    f.attrs = attrs;
    f.attrs_len = strlen(attrs);
    u = gr_hub_find_unit(hub, "S@2", 3);
    CHECK_INT(gr_hub_publish(hub, u, &f, T0_MS, 0), GR_OK);
    CHECK_STR(position_of(hub, "S@2"),
              "{\"device\":\"S@2\",\"seq\":2,\"time\":\"2026-11-22T18:20:01.999Z\","
              "\"lat\":0.0000000,\"lon\":151.2093000,\"src\":\"json\","
              "\"attrs\":{\"ignition\":true,\"driver\":\"a \\\"b\\\"\"}}");

    /* TAIP, and the smallest fraction that survives the rounding. */
    f = fixture_fix(T0_MS, -33.86880006, 0.00000006);
    f.src = GR_SRC_TAIP;
    f.fields = GR_FIX_SPEED;
    f.speed = 0.004;
    u = gr_hub_find_unit(hub, "Z", 1);
    CHECK_INT(gr_hub_publish(hub, u, &f, T0_MS, 0), GR_OK);
    CHECK_STR(position_of(hub, "Z"),
              "{\"device\":\"Z\",\"seq\":3,\"time\":\"2026-11-23T18:20:01.000Z\","
              "\"lat\":-33.8688001,\"lon\":0.0000001,\"speed\":0,\"src\":\"taip\"}");

    /* unit_added carries the unit's label and position, unit_removed only its id. */
#define E7_POSITION                                                                                \
    "{\"device\":\"E-7\",\"seq\":1,\"time\":\"2026-11-23T18:20:01.042Z\","                         \
    "\"lat\":40.7128000,\"lon\":-74.0060000,\"speed\":12.3,\"course\":5,"                          \
    "\"alt\":-3.3,\"hdop\":0.9,\"sats\":7,\"src\":\"nmea\"}"
    struct gr_sub *a2 = gr_sub_new(hub, gr_hub_topic(hub, "agency:a2"), NULL);
    struct gr_sub *a1 = gr_sub_new(hub, gr_hub_topic(hub, "agency:a1"), NULL);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("E-7 a2;S@2 a1;Z a1")), 0);
    CHECK_STR(events, "agency:a1 unit_removed {\"device\":\"E-7\"}\n"
                      "agency:a2 unit_added {\"device\":\"E-7\",\"label\":\"\","
                      "\"position\":" E7_POSITION "}\n");

    /* A unit that never reported is added without a position. */
    events[0] = '\0';
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("E-7 a2;N a2;S@2 a1;Z a1")), 0);
    CHECK_STR(events, "agency:a2 unit_added {\"device\":\"N\",\"label\":\"\"}\n");

    /* A label change alone is a unit_added in every topic of the unit (its device topic
     * too), position included; the label escaped as JSON, UTF-8 as it is. */
    events[0] = '\0';
    struct gr_sub *dn = gr_sub_new(hub, gr_hub_topic(hub, "device:N"), NULL);
    CHECK_INT(gr_hub_set_mapping(
                  hub, fixture_mapping("E-7 a2=Engine \"7\"\t;N a2=Nov\xc3\xa9;S@2 a1;Z a1")),
              0);
    CHECK_STR(events, "agency:a2 unit_added {\"device\":\"E-7\",\"label\":"
                      "\"Engine \\\"7\\\"\\u0009\",\"position\":" E7_POSITION "}\n"
                      "agency:a2 unit_added {\"device\":\"N\",\"label\":\"Nov\xc3\xa9\"}\n"
                      "device:N unit_added {\"device\":\"N\",\"label\":\"Nov\xc3\xa9\"}\n");
    CHECK_STR(gr_unit_label(gr_hub_find_unit(hub, "N", 1)), "Nov\xc3\xa9");

    /* The same labels again: nothing. */
    events[0] = '\0';
    CHECK_INT(gr_hub_set_mapping(
                  hub, fixture_mapping("E-7 a2=Engine \"7\"\t;N a2=Nov\xc3\xa9;S@2 a1;Z a1")),
              0);
    CHECK_STR(events, "");

    /* A unit that gains a topic and a new label: unit_added in the new topic and in the one
     * it stays in; one that loses a topic and keeps its label: only unit_removed. */
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("E-7 a1=E7;E-7 a2=E7;N a2=Nov\xc3\xa9;"
                                                      "S@2 a1;S@2 a2;Z a1")),
              0);
    events[0] = '\0';
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("E-7 a1=Engine 7;E-7 a2=Engine 7;"
                                                      "N a2=Nov\xc3\xa9;S@2 a1;Z a1")),
              0);
    CHECK_STR(events, "agency:a2 unit_removed {\"device\":\"S@2\"}\n"
                      "agency:a1 unit_added {\"device\":\"E-7\",\"label\":\"Engine 7\","
                      "\"position\":" E7_POSITION "}\n"
                      "agency:a2 unit_added {\"device\":\"E-7\",\"label\":\"Engine 7\","
                      "\"position\":" E7_POSITION "}\n");
    events[0] = '\0';
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("E-7 a2=Engine 7;N a2=Nov\xc3\xa9;"
                                                      "S@2 a1;Z a1")),
              0);
    CHECK_STR(events, "agency:a1 unit_removed {\"device\":\"E-7\"}\n");
    gr_sub_free(hub, dn);

    /* unit_stale: the last fix time, and when the unit was last heard from. */
    CHECK_INT(gr_hub_check_stale(hub, T0_MS + 1000 + 120000), 3);
    CHECK_STR(gr_sub_next_stale(a2),
              "{\"device\":\"E-7\",\"last_time\":\"2026-11-23T18:20:01.042Z\","
              "\"last_seen\":\"2026-11-23T18:20:02.000Z\"}");
    CHECK(gr_sub_next_stale(a2) == NULL);

    gr_sub_free(hub, a1);
    gr_sub_free(hub, a2);
    gr_hub_free(hub);
    return check_result("test_encode");
}
