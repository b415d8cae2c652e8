/*
 * test_phoenix.c - Phoenix sessions over a real hub, without sockets (phoenix.h): what a
 * console receives, byte for byte, for heartbeats, joins, leaves and refusals; positions
 * batched per channel and conflated per unit; unit_stale; unit_added and unit_removed;
 * phx_close when a mapping change takes a device out of the token's agencies; the join
 * reply's units as the mapping changes; and the bounds (topics per socket, join rate,
 * replies owed).
 */
#include "gpsrelay/phoenix.h"
#include "../hub/hub_fixture.h"

#include <errno.h>
#include <stdlib.h>

static int woken; /* wake() calls, for every console */

static void on_wake(void *transport)
{
    (void)transport;
    woken++;
}

/* The console's next frame as a string (a static buffer), or NULL when none is pending. */
static const char *next(struct gr_console *c)
{
    static char text[65536];
    struct gr_buf b = gr_buf_make(0);
    int rc = gr_console_next_frame(c, &b);
    CHECK(rc == 0 || rc == 1);
    snprintf(text, sizeof text, "%.*s", (int)b.len, gr_buf_data(&b));
    gr_buf_free(&b);
    return rc == 1 ? text : NULL;
}

static int receive(struct gr_console *c, const char *frame, uint64_t now_ms)
{
    return gr_console_receive(c, frame, strlen(frame), now_ms);
}

static void publish(struct gr_hub *hub, const char *id, int64_t time_ms)
{
    struct gr_unit *u = gr_hub_find_unit(hub, id, strlen(id));
    CHECK(u != NULL);
    struct gr_fix f = fixture_fix(time_ms, 40.0 + (double)(time_ms - T0_MS) * 1e-7, -74.0);
    CHECK_INT(gr_hub_publish(hub, u, &f, time_ms + 1000, 0), GR_OK);
}

static bool collect(void *ctx, const struct gr_position *p)
{
    strcat(ctx, strlen(ctx) ? "," : "");
    strcat(ctx, p->json);
    return true;
}

/* The positions of topic newer than seq, comma-separated, as the hub encoded them. */
static const char *positions(struct gr_hub *hub, const char *topic, uint64_t seq)
{
    static char list[16384];
    list[0] = '\0';
    gr_topic_each_since(gr_hub_topic(hub, topic), seq, collect, list);
    return list;
}

/* Checks that got is exactly a, b and c one after the other. */
static void check_frame(const char *got, const char *a, const char *b, const char *c)
{
    static char want[65536];
    snprintf(want, sizeof want, "%s%s%s", a, b, c);
    CHECK_STR(got, want);
}

#define OK_EMPTY "{\"status\":\"ok\",\"response\":{}}"

static struct gr_hub *hub_new(const char *mapping)
{
    struct gr_hub_options opt = {.max_future_skew_ms = 300000,
                                 .max_speed = 1000000,
                                 .stale_after_ms = 120000,
                                 .notify = gr_console_on_pending,
                                 .event = gr_console_on_event};
    struct gr_hub *hub = gr_hub_new(&opt);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping(mapping)), 0);
    return hub;
}

/* Heartbeat, join, positions, leave, and what is refused, without auth. */
static void test_session(void)
{
    struct gr_hub *hub = hub_new("E1 county;E2 county=Medic 2;F1 city=Fire \"1\"");
    struct gr_console *c = gr_console_new(hub, on_wake, NULL);
    uint64_t now = 1000;
    woken = 0;

    CHECK_INT(receive(c, "[null,\"hb\",\"phoenix\",\"heartbeat\",{}]", now), 0);
    CHECK_INT(woken, 1);
    CHECK(gr_console_has_output(c));
    CHECK_STR(next(c), "[null,\"hb\",\"phoenix\",\"phx_reply\"," OK_EMPTY "]");
    CHECK(next(c) == NULL);
    CHECK(!gr_console_has_output(c));

    /* Not Phoenix messages: the transport closes with 1007. */
    CHECK_INT(receive(c, "nope", now), GR_WS_INVALID);
    CHECK_INT(receive(c, "[\"1\",\"1\",\"agency:county\",\"phx_join\"]", now), GR_WS_INVALID);
    CHECK_INT(receive(c, "[{},\"1\",\"agency:county\",\"phx_join\",{}]", now), GR_WS_INVALID);
    CHECK(next(c) == NULL);

    /* A join replies with the snapshot: E1's position, and every unit with its label in
     * id order, E2 that never reported included. */
    publish(hub, "E1", T0_MS); /* before the join: in the snapshot, not pushed */
    CHECK_INT(receive(c, "[\"1\",\"1\",\"agency:county\",\"phx_join\",{}]", now), 0);
    char head[256];
    snprintf(head, sizeof head,
             "[\"1\",\"1\",\"agency:county\",\"phx_reply\",{\"status\":\"ok\",\"response\":"
             "{\"epoch\":\"%s\",\"seq\":1,\"recovered\":false,\"positions\":[",
             gr_hub_epoch(hub));
    check_frame(next(c), head, positions(hub, "agency:county", 0),
                "],\"stale\":[],\"units\":[{\"device\":\"E1\",\"label\":\"\"},"
                "{\"device\":\"E2\",\"label\":\"Medic 2\"}]}}]");
    CHECK(next(c) == NULL);

    /* Positions after the join: one frame for the channel, the newest per unit, oldest
     * first; E1's first position is conflated away by its second. */
    woken = 0;
    publish(hub, "E1", T0_MS + 1000);
    CHECK_INT(woken, 1);
    publish(hub, "E2", T0_MS + 1500);
    publish(hub, "E1", T0_MS + 2000);
    publish(hub, "F1", T0_MS + 2000); /* another agency: not for this console */
    CHECK_INT(woken, 1);              /* woken once until drained */
    check_frame(next(c), "[null,null,\"agency:county\",\"positions\",{\"positions\":[",
                positions(hub, "agency:county", 1), "]}]");
    CHECK(strstr(positions(hub, "agency:county", 1), "\"seq\":3") != NULL); /* E2 */
    CHECK(strstr(positions(hub, "agency:county", 1), "\"seq\":4") != NULL); /* E1 */
    CHECK(strstr(positions(hub, "agency:county", 1), "\"seq\":2") == NULL); /* conflated */
    CHECK(next(c) == NULL);

    /* Refusals: unknown topics, events Phoenix channels do not have here, refs for an
     * earlier join of the topic (dropped without a word). */
    CHECK_INT(receive(c, "[\"2\",\"2\",\"device:NOPE\",\"phx_join\",{}]", now), 0);
    CHECK_STR(next(c), "[\"2\",\"2\",\"device:NOPE\",\"phx_reply\",{\"status\":\"error\","
                       "\"response\":{\"reason\":\"unmatched topic\"}}]");
    CHECK_INT(receive(c, "[\"3\",\"3\",\"bogus\",\"phx_join\",{}]", now), 0);
    CHECK_STR(next(c), "[\"3\",\"3\",\"bogus\",\"phx_reply\",{\"status\":\"error\","
                       "\"response\":{\"reason\":\"unmatched topic\"}}]");
    CHECK_INT(receive(c, "[\"1\",\"4\",\"agency:city\",\"phx_leave\",{}]", now), 0);
    CHECK_STR(next(c), "[\"1\",\"4\",\"agency:city\",\"phx_reply\",{\"status\":\"error\","
                       "\"response\":{\"reason\":\"unmatched topic\"}}]");
    CHECK_INT(receive(c, "[\"1\",\"5\",\"agency:county\",\"shout\",{}]", now), 0);
    CHECK_STR(next(c), "[\"1\",\"5\",\"agency:county\",\"phx_reply\",{\"status\":\"error\","
                       "\"response\":{\"reason\":\"unsupported event\"}}]");
    CHECK_INT(receive(c, "[\"9\",\"6\",\"agency:county\",\"phx_leave\",{}]", now), 0);
    CHECK(next(c) == NULL);

    /* Joining a topic again closes the old join first (with its own refs). */
    CHECK_INT(receive(c, "[\"7\",\"7\",\"agency:county\",\"phx_join\",{}]", now), 0);
    CHECK_STR(next(c), "[\"1\",\"1\",\"agency:county\",\"phx_close\",{}]");
    const char *reply = next(c);
    CHECK(reply != NULL && strncmp(reply, "[\"7\",\"7\",\"agency:county\",\"phx_reply\"", 36) == 0);

    /* A join that resumes from a seq of this epoch gets only what is newer. */
    char join[256];
    snprintf(join, sizeof join,
             "[\"8\",\"8\",\"agency:city\",\"phx_join\",{\"since\":{\"epoch\":\"%s\",\"seq\":4}}]",
             gr_hub_epoch(hub));
    CHECK_INT(receive(c, join, now), 0);
    snprintf(head, sizeof head,
             "[\"8\",\"8\",\"agency:city\",\"phx_reply\",{\"status\":\"ok\",\"response\":"
             "{\"epoch\":\"%s\",\"seq\":5,\"recovered\":true,\"positions\":[",
             gr_hub_epoch(hub));
    check_frame(next(c), head, positions(hub, "agency:city", 4),
                "],\"stale\":[],\"units\":[{\"device\":\"F1\",\"label\":\"Fire \\\"1\\\"\"}]}}]");
    /* ...and one from another epoch, or a seq this hub never gave, everything. */
    CHECK_INT(receive(c,
                      "[\"9\",\"9\",\"device:E2\",\"phx_join\",{\"since\":{\"epoch\":"
                      "\"0000000000000000\",\"seq\":4}}]",
                      now),
              0);
    reply = next(c);
    CHECK(reply != NULL && strstr(reply, "\"recovered\":false") != NULL &&
          strstr(reply, "\"seq\":3,\"time\"") != NULL &&
          strstr(reply, "\"units\":[{\"device\":\"E2\",\"label\":\"Medic 2\"}]}}]") != NULL);

    /* Leaving: the reply, then phx_close; positions of the topic no longer come. */
    CHECK_INT(receive(c, "[\"8\",\"10\",\"agency:city\",\"phx_leave\",{}]", now), 0);
    CHECK_STR(next(c), "[\"8\",\"10\",\"agency:city\",\"phx_reply\"," OK_EMPTY "]");
    CHECK_STR(next(c), "[\"8\",\"8\",\"agency:city\",\"phx_close\",{}]");
    publish(hub, "F1", T0_MS + 3000);
    CHECK(next(c) == NULL);
    CHECK(!gr_console_has_output(c));

    /* A unit that goes stale: a unit_stale on each channel it is in (agency:county, not
     * device:E2), once; positions pending meanwhile come too. */
    publish(hub, "E2", T0_MS + 4000);
    CHECK_INT(gr_hub_check_stale(hub, T0_MS + 3000 + 120000), 1); /* E1 */
    int stale = 0, batches = 0;
    for (const char *f; (f = next(c)) != NULL;) {
        if (strstr(f, "\"unit_stale\"") != NULL) {
            stale++;
            CHECK(strncmp(f,
                          "[null,null,\"agency:county\",\"unit_stale\","
                          "{\"device\":\"E1\",\"last_time\":",
                          63) == 0);
        } else {
            batches++;
            CHECK(strstr(f, "\"positions\",{\"positions\":[{\"device\":\"E2\"") != NULL);
        }
    }
    CHECK_INT(stale, 1);
    CHECK_INT(batches, 2); /* agency:county and device:E2 */

    gr_console_free(c);
    CHECK_INT(gr_hub_sub_count(hub), 0); /* the console ended its subscriptions */
    gr_hub_free(hub);
}

/* With a token: what it may join, and phx_close when the mapping takes a device away. */
static void test_auth(void)
{
    struct gr_hub *hub = hub_new("E1 county;F1 city");
    struct gr_console *c = gr_console_new(hub, on_wake, NULL);
    CHECK(gr_console_expires(c) == INT64_MAX);
    struct gr_token token = {.exp = T0_MS / 1000 + 3600, .n_agencies = 2};
    strcpy(token.agencies[0], "county");
    strcpy(token.agencies[1], "ems"); /* sorted, as gr_token_verify leaves them */
    CHECK_INT(gr_console_set_auth(c, &token), 0);
    CHECK_INT(gr_console_expires(c), T0_MS / 1000 + 3600);

    CHECK_INT(receive(c, "[\"1\",\"1\",\"agency:city\",\"phx_join\",{}]", 0), 0);
    CHECK_STR(next(c), "[\"1\",\"1\",\"agency:city\",\"phx_reply\",{\"status\":\"error\","
                       "\"response\":{\"reason\":\"unauthorized\"}}]");
    CHECK_INT(receive(c, "[\"2\",\"2\",\"device:F1\",\"phx_join\",{}]", 0), 0);
    CHECK_STR(next(c), "[\"2\",\"2\",\"device:F1\",\"phx_reply\",{\"status\":\"error\","
                       "\"response\":{\"reason\":\"unauthorized\"}}]");
    CHECK_INT(receive(c, "[\"3\",\"3\",\"device:E1\",\"phx_join\",{}]", 0), 0);
    const char *reply = next(c);
    CHECK(reply != NULL && strstr(reply, "{\"status\":\"ok\"") != NULL);
    CHECK_INT(receive(c, "[\"4\",\"4\",\"agency:ems\",\"phx_join\",{}]", 0), 0);
    reply = next(c);
    CHECK(reply != NULL && strstr(reply, "{\"status\":\"ok\"") != NULL);
    CHECK_INT(receive(c, "[\"5\",\"5\",\"agency:county\",\"phx_join\",{}]", 0), 0);
    reply = next(c);
    CHECK(reply != NULL && strstr(reply, "{\"status\":\"ok\"") != NULL);

    /* E1 moves from county to ems: its unit leaves county (unit_removed) and joins ems
     * (unit_added); the device channel stays, since ems is the token's too. */
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("E1 ems;F1 city")), 0);
    gr_console_reauthorize(c);
    CHECK_STR(next(c), "[null,null,\"agency:county\",\"unit_removed\",{\"device\":\"E1\"}]");
    CHECK_STR(next(c),
              "[null,null,\"agency:ems\",\"unit_added\",{\"device\":\"E1\",\"label\":\"\"}]");
    CHECK(next(c) == NULL);

    /* E1 moves to city: out of the token's agencies, so its channel is closed at once. */
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("E1 city;F1 city")), 0);
    gr_console_reauthorize(c);
    CHECK_STR(next(c), "[null,null,\"agency:ems\",\"unit_removed\",{\"device\":\"E1\"}]");
    CHECK_STR(next(c), "[\"3\",\"3\",\"device:E1\",\"phx_close\",{}]");
    CHECK(next(c) == NULL);
    publish(hub, "E1", T0_MS);
    CHECK(next(c) == NULL); /* nothing of E1 comes any more */

    gr_console_free(c);
    gr_hub_free(hub);
}

/* The bounds: joins per second, topics per socket, replies owed to a console. */
static void test_bounds(void)
{
    struct gr_hub *hub = hub_new("E1 county");
    struct gr_console *c = gr_console_new(hub, on_wake, NULL);
    char frame[128], want[256];
    for (int i = 0; i < GR_CONSOLE_TOPICS_MAX; i++) { /* the burst: all at once */
        snprintf(frame, sizeof frame, "[\"%d\",\"%d\",\"agency:a%d\",\"phx_join\",{}]", i, i, i);
        CHECK_INT(receive(c, frame, 0), 0);
        const char *reply = next(c);
        CHECK(reply != NULL && strstr(reply, "{\"status\":\"ok\"") != NULL);
    }
    CHECK_INT(receive(c, "[\"x\",\"x\",\"agency:x\",\"phx_join\",{}]", 0), 0);
    CHECK_STR(next(c), "[\"x\",\"x\",\"agency:x\",\"phx_reply\",{\"status\":\"error\","
                       "\"response\":{\"reason\":\"too many joins\"}}]");
    /* A second later the bucket has GR_CONSOLE_JOIN_RATE joins again, but the socket has
     * all the topics it may. */
    CHECK_INT(receive(c, "[\"y\",\"y\",\"agency:y\",\"phx_join\",{}]", 1000), 0);
    CHECK_STR(next(c), "[\"y\",\"y\",\"agency:y\",\"phx_reply\",{\"status\":\"error\","
                       "\"response\":{\"reason\":\"too many topics\"}}]");
    CHECK_INT(gr_hub_sub_count(hub), GR_CONSOLE_TOPICS_MAX);

    /* A console that does not read: GR_CONSOLE_CONTROL_MAX replies are owed, then 1008. */
    for (int i = 0; i < GR_CONSOLE_CONTROL_MAX; i++) {
        snprintf(frame, sizeof frame, "[null,\"%d\",\"phoenix\",\"heartbeat\",{}]", i);
        CHECK_INT(receive(c, frame, 2000), 0);
    }
    CHECK_INT(receive(c, "[null,\"z\",\"phoenix\",\"heartbeat\",{}]", 2000), GR_WS_POLICY);
    snprintf(want, sizeof want, "[null,\"%d\",\"phoenix\",\"phx_reply\"," OK_EMPTY "]", 0);
    CHECK_STR(next(c), want);
    gr_console_free(c);

    /* Positions beyond GR_POSITIONS_FRAME_SOFT bytes go out in more than one frame. */
    char mapping[8192] = "";
    for (int i = 0; i < 200; i++)
        snprintf(mapping + strlen(mapping), sizeof mapping - strlen(mapping), "%sU%03d big",
                 i ? ";" : "", i);
    gr_hub_free(hub);
    hub = hub_new(mapping);
    c = gr_console_new(hub, on_wake, NULL);
    CHECK_INT(receive(c, "[\"1\",\"1\",\"agency:big\",\"phx_join\",{}]", 0), 0);
    CHECK(next(c) != NULL);
    for (int i = 0; i < 200; i++) {
        snprintf(frame, sizeof frame, "U%03d", i);
        publish(hub, frame, T0_MS + i);
    }
    size_t frames = 0, seen = 0;
    const char *f;
    while ((f = next(c)) != NULL) {
        frames++;
        CHECK(strlen(f) <= GR_POSITIONS_FRAME_SOFT + 200); /* past the limit by one at most */
        for (const char *p = f; (p = strstr(p, "{\"device\":")) != NULL; p++)
            seen++;
    }
    CHECK_INT(seen, 200);
    CHECK(frames >= 2);
    gr_console_free(c);
    gr_hub_free(hub);
}

/* The "units" member of the console's next frame, a join reply: from its key to the end. */
static const char *units_of(struct gr_console *c)
{
    const char *f = next(c);
    const char *u = f ? strstr(f, "\"units\":") : NULL;
    CHECK(u != NULL);
    return u ? u : "";
}

/* The join reply's units follow the mapping: a label change, a unit added, one removed,
 * each seen by the next join (the array is kept in the topic between changes). */
static void test_units(void)
{
    struct gr_hub *hub = hub_new("B1 x;A1 x=Alpha;A1 y=Alpha");
    struct gr_console *c = gr_console_new(hub, on_wake, NULL);
    CHECK_INT(receive(c, "[\"1\",\"1\",\"agency:x\",\"phx_join\",{}]", 0), 0);
    CHECK_STR(units_of(c), "\"units\":[{\"device\":\"A1\",\"label\":\"Alpha\"},"
                           "{\"device\":\"B1\",\"label\":\"\"}]}}]");
    CHECK_INT(receive(c, "[\"2\",\"2\",\"agency:y\",\"phx_join\",{}]", 0), 0);
    CHECK_STR(units_of(c), "\"units\":[{\"device\":\"A1\",\"label\":\"Alpha\"}]}}]");

    /* A1 relabeled, C1 added to x: the events, then the next join's units. */
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("B1 x;A1 x=Alpha 2;A1 y=Alpha 2;C1 x=C")), 0);
    CHECK_STR(next(c), "[null,null,\"agency:x\",\"unit_added\",{\"device\":\"A1\","
                       "\"label\":\"Alpha 2\"}]");
    CHECK_STR(next(c), "[null,null,\"agency:y\",\"unit_added\",{\"device\":\"A1\","
                       "\"label\":\"Alpha 2\"}]");
    CHECK_STR(next(c), "[null,null,\"agency:x\",\"unit_added\",{\"device\":\"C1\","
                       "\"label\":\"C\"}]");
    CHECK(next(c) == NULL);
    CHECK_INT(receive(c, "[\"3\",\"3\",\"agency:x\",\"phx_join\",{}]", 0), 0);
    CHECK_STR(next(c), "[\"1\",\"1\",\"agency:x\",\"phx_close\",{}]");
    CHECK_STR(units_of(c), "\"units\":[{\"device\":\"A1\",\"label\":\"Alpha 2\"},"
                           "{\"device\":\"B1\",\"label\":\"\"},"
                           "{\"device\":\"C1\",\"label\":\"C\"}]}}]");
    CHECK_INT(receive(c, "[\"4\",\"4\",\"agency:y\",\"phx_join\",{}]", 0), 0);
    CHECK_STR(next(c), "[\"2\",\"2\",\"agency:y\",\"phx_close\",{}]");
    CHECK_STR(units_of(c), "\"units\":[{\"device\":\"A1\",\"label\":\"Alpha 2\"}]}}]");

    /* B1 goes; y's units did not change and its array is kept as it was. */
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("A1 x=Alpha 2;A1 y=Alpha 2;C1 x=C")), 0);
    CHECK_STR(next(c), "[null,null,\"agency:x\",\"unit_removed\",{\"device\":\"B1\"}]");
    CHECK_INT(receive(c, "[\"5\",\"5\",\"agency:x\",\"phx_join\",{}]", 0), 0);
    CHECK_STR(next(c), "[\"3\",\"3\",\"agency:x\",\"phx_close\",{}]");
    CHECK_STR(units_of(c), "\"units\":[{\"device\":\"A1\",\"label\":\"Alpha 2\"},"
                           "{\"device\":\"C1\",\"label\":\"C\"}]}}]");
    CHECK_INT(receive(c, "[\"6\",\"6\",\"device:C1\",\"phx_join\",{}]", 0), 0);
    CHECK_STR(units_of(c), "\"units\":[{\"device\":\"C1\",\"label\":\"C\"}]}}]");
    CHECK_INT(receive(c, "[\"7\",\"7\",\"agency:y\",\"phx_join\",{}]", 0), 0);
    CHECK_STR(next(c), "[\"4\",\"4\",\"agency:y\",\"phx_close\",{}]");
    CHECK_STR(units_of(c), "\"units\":[{\"device\":\"A1\",\"label\":\"Alpha 2\"}]}}]");
    CHECK(next(c) == NULL);

    gr_console_free(c);
    gr_hub_free(hub);
}

int main(void)
{
    test_session();
    test_auth();
    test_units();
    test_bounds();
    return check_result("test_phoenix");
}
