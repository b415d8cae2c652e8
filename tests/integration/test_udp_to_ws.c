/*
 * test_udp_to_ws.c - NMEA over UDP in, Phoenix Channels over WebSocket out, through the
 * real gpsrelayd on loopback (docs/ingest.md, docs/protocol.md, docs/mapping.md).
 *
 * One scenario, in order: two consoles of two agencies join; a position of an ambulance
 * reaches the county console and not the fire console; a late joiner gets it in its join
 * reply; leave, unmatched topics and garbage behave as Phoenix and docs/protocol.md say; the daemon
 * survives garbage; SIGTERM closes every console with 1001 and the daemon exits 0.
 *
 * Usage: itest_udp_to_ws /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EVENT_TIMEOUT_MS 5000 /* generous: in CI the daemon runs under ASan */
#define QUIET_MS         300  /* silence after a heartbeat fence that counts as "got nothing" */
#define KNOTS_TO_MS      (1852.0 / 3600.0) /* one knot is one nautical mile (1852 m) per hour */

/* AMB-12 belongs to county-ems only, E-7 to city-fire only: a position of AMB-12 must
 * reach county-ems consoles and no city-fire console. */
static const char CSV[] = "device_id,agency_id,label,source_addr\n"
                          "AMB-12,county-ems,Medic 12,\n"
                          "E-7,city-fire,Engine 7,\n";

/* The three AMB-12 fixes the test sends, one second apart, each a metre or so north of the
 * previous (so none is a duplicate and none implies a silly speed). The latitudes were
 * chosen to be exact in 7 decimals: 42.7686' / 60 = 0.71281 degrees. */
static const struct {
    const char *nmea_lat; /* ddmm.mmmm as in the sentence */
    double lat;           /* what the daemon must publish */
} FIXES[] = {
    {"4042.7680", 40.7128},
    {"4042.7686", 40.71281},
    {"4042.7692", 40.71282},
};
#define LON (-74.006) /* 07400.3600,W in every sentence */

struct scenario {
    struct gr_daemon *d;
    int a, b, c;        /* consoles: A and C on agency:county-ems, B on agency:city-fire */
    time_t t0;          /* UTC time of the first fix */
    long long join_seq; /* seq in A's join reply, before any position */
    long long last_seq; /* seq of the newest AMB-12 position */
};

/* ---- Building reports ------------------------------------------------------------------ */

/*
 * "DEVICE,$GPRMC,hhmmss.00,A,<lat>,N,07400.3600,W,12.0,271.5,ddmmyy,,,A*hh\r\n" for time t.
 * Built at run time with a time close to now, so max_future_skew and staleness checks
 * accept it; date and time come from the same instant, so midnight cannot split them.
 */
static void make_rmc(char *out, size_t cap, const char *device, time_t t, const char *lat)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    char body[128], prefix[32];
    snprintf(body, sizeof body,
             "GPRMC,%02d%02d%02d.00,A,%s,N,07400.3600,W,12.0,271.5,%02d%02d%02d,,,A", tm.tm_hour,
             tm.tm_min, tm.tm_sec, lat, tm.tm_mday, tm.tm_mon + 1, tm.tm_year % 100);
    snprintf(prefix, sizeof prefix, "%s,", device);
    nmea_line(out, cap, prefix, body);
}

/* Sends fix i of AMB-12 (sentence time t0 + i) over UDP. */
static void send_fix(struct scenario *s, int i)
{
    char line[256];
    make_rmc(line, sizeof line, "AMB-12", s->t0 + i, FIXES[i].nmea_lat);
    CHECK_INT(udp_send(s->d->udp_port, line, strlen(line)), 0);
}

/* ---- Reading Phoenix frames ------------------------------------------------------------ */

/* Reads the frame with expected's topic, event and ref and checks it equals expected.
 * Returns false when no such frame came at all (the console is of no further use). */
static bool expect_frame(int fd, const char *expected)
{
    json_t *want = json_loads(expected, 0, NULL);
    CHECK(want != NULL);
    if (want == NULL)
        return false;
    json_t *got = phx_recv_match(
        fd, json_string_value(json_array_get(want, 2)), json_string_value(json_array_get(want, 3)),
        json_string_value(json_array_get(want, 1)), EVENT_TIMEOUT_MS, NULL);
    CHECK(got != NULL && json_equal(got, want));
    if (got != NULL && !json_equal(got, want)) {
        char *text = json_dumps(got, JSON_COMPACT);
        fprintf(stderr, "  got      %s\n  expected %s\n", text, expected);
        free(text);
    }
    bool arrived = got != NULL;
    json_decref(got);
    json_decref(want);
    return arrived;
}

/* Heartbeat; the reply is fixed by the Phoenix protocol, so compare all of it. */
static bool heartbeat(int fd, const char *ref)
{
    char expected[128];
    snprintf(expected, sizeof expected,
             "[null,\"%s\",\"phoenix\",\"phx_reply\",{\"status\":\"ok\",\"response\":{}}]", ref);
    CHECK_INT(phx_send(fd, NULL, ref, "phoenix", "heartbeat", "{}"), 0);
    return expect_frame(fd, expected);
}

/* Joins topic; checks the ok reply's shape and returns its response (new reference). */
static json_t *join(int fd, const char *join_ref, const char *ref, const char *topic)
{
    CHECK_INT(phx_send(fd, join_ref, ref, topic, "phx_join", "{}"), 0);
    json_t *reply = phx_recv_match(fd, topic, "phx_reply", ref, EVENT_TIMEOUT_MS, NULL);
    CHECK(reply != NULL);
    if (reply == NULL)
        return NULL;
    CHECK_STR(json_string_value(json_array_get(reply, 0)), join_ref);
    CHECK_STR(json_string_value(json_array_get(reply, 1)), ref);
    json_t *payload = json_array_get(reply, 4);
    CHECK_STR(json_string_value(json_object_get(payload, "status")), "ok");
    json_t *resp = json_object_get(payload, "response");
    const char *epoch = json_string_value(json_object_get(resp, "epoch"));
    CHECK(epoch != NULL && epoch[0] != '\0');
    CHECK(json_is_integer(json_object_get(resp, "seq")));
    CHECK(json_is_array(json_object_get(resp, "positions")));
    CHECK(json_is_false(json_object_get(resp, "recovered"))); /* no "since" was given */
    json_incref(resp);
    json_decref(reply);
    return resp;
}

/* The element of a positions array for device (borrowed), or NULL. */
static json_t *find_device(json_t *positions, const char *device)
{
    size_t i;
    json_t *p;
    json_array_foreach(positions, i, p)
    {
        const char *id = json_string_value(json_object_get(p, "device"));
        if (id != NULL && strcmp(id, device) == 0)
            return p;
    }
    return NULL;
}

/* Waits for a positions push on topic holding device (pushes may batch several units);
 * returns that position (new reference) or NULL. */
static json_t *recv_position(int fd, const char *topic, const char *device)
{
    for (int tries = 0; tries < 10; tries++) { /* ten pushes of other units at most */
        json_t *ev = phx_recv_event(fd, topic, "positions", EVENT_TIMEOUT_MS);
        if (ev == NULL)
            break;
        /* Pushes carry no refs: [null,null,topic,"positions",{"positions":[...]}]. */
        CHECK(json_is_null(json_array_get(ev, 0)));
        CHECK(json_is_null(json_array_get(ev, 1)));
        json_t *p = find_device(json_object_get(json_array_get(ev, 4), "positions"), device);
        json_incref(p);
        json_decref(ev);
        if (p != NULL)
            return p;
    }
    fprintf(stderr, "no position of %s on %s\n", device, topic);
    return NULL;
}

static long long seq_of(json_t *p)
{
    return json_integer_value(json_object_get(p, "seq"));
}

/* Checks every field of a position made from FIXES[i] sent at t0 + i. */
static void check_position(const struct scenario *s, json_t *p, int i)
{
    CHECK(p != NULL);
    if (p == NULL)
        return;
    CHECK_STR(json_string_value(json_object_get(p, "device")), "AMB-12");
    CHECK_NEAR(json_number_value(json_object_get(p, "lat")), FIXES[i].lat, 1e-7);
    CHECK_NEAR(json_number_value(json_object_get(p, "lon")), LON, 1e-7);
    CHECK_NEAR(json_number_value(json_object_get(p, "speed")), 12.0 * KNOTS_TO_MS, 0.01);
    CHECK_NEAR(json_number_value(json_object_get(p, "course")), 271.5, 1e-6);
    CHECK(json_is_integer(json_object_get(p, "seq")));
    CHECK_STR(json_string_value(json_object_get(p, "src")), "nmea");

    /* The fix's own UTC time (not the receive time), ISO 8601 with Z; fractions optional. */
    time_t t = s->t0 + i;
    struct tm tm;
    char want[32];
    strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", gmtime_r(&t, &tm));
    const char *iso = json_string_value(json_object_get(p, "time"));
    CHECK(iso != NULL && strncmp(iso, want, strlen(want)) == 0);
    CHECK(iso != NULL && iso[0] != '\0' && iso[strlen(iso) - 1] == 'Z');
    if (iso != NULL && strncmp(iso, want, strlen(want)) != 0)
        fprintf(stderr, "  time %s, expected %s...Z\n", iso, want);
}

static int count_event(json_t *frames, const char *event)
{
    int n = 0;
    size_t i;
    json_t *f;
    json_array_foreach(frames, i, f)
    {
        const char *e = json_string_value(json_array_get(f, 3));
        n += e != NULL && strcmp(e, event) == 0;
    }
    return n;
}

/*
 * How many positions pushes a console got lately. A fence: a heartbeat's reply comes after
 * anything the daemon had queued for this console before it; then QUIET_MS more, for a
 * daemon that sends replies ahead of queued pushes.
 */
static int positions_after_fence(int fd, const char *ref)
{
    json_t *frames = json_array();
    CHECK_INT(phx_send(fd, NULL, ref, "phoenix", "heartbeat", "{}"), 0);
    json_t *reply = phx_recv_match(fd, "phoenix", "phx_reply", ref, EVENT_TIMEOUT_MS, frames);
    CHECK(reply != NULL);
    json_decref(reply);
    CHECK(phx_collect(fd, QUIET_MS, frames) >= 0);
    int n = count_event(frames, "positions");
    json_decref(frames);
    return n;
}

static int console(const struct scenario *s)
{
    int status = 0;
    int fd = ws_connect(s->d->ws_port, "/socket/websocket?vsn=2.0.0", NULL, &status);
    CHECK(fd >= 0);
    if (fd < 0)
        fprintf(stderr, "console: upgrade refused with HTTP %d\n", status);
    return fd;
}

/* ---- The scenario, step by step ------------------------------------------------------ */

static void step_http(struct scenario *s)
{
    char body[256];
    CHECK_INT(http_get(s->d->ws_port, "/healthz", body, sizeof body, EVENT_TIMEOUT_MS), 200);

    /* docs/protocol.md: a missing vsn is refused with 403 before any upgrade. */
    int status = 0;
    int fd = ws_connect(s->d->ws_port, "/socket/websocket", NULL, &status);
    CHECK_INT(fd, -1);
    CHECK_INT(status, 403);
    if (fd >= 0)
        close(fd);
}

/* A on county-ems, B on city-fire; both join before any position exists. */
static bool step_join(struct scenario *s)
{
    s->a = console(s);
    s->b = console(s);
    if (s->a < 0 || s->b < 0)
        return false;

    /* Without answers to these, nothing later can work: stop early rather than wait out
     * every timeout of the scenario. */
    if (!heartbeat(s->a, "1"))
        return false;
    json_t *ra = join(s->a, "1", "2", "agency:county-ems");
    json_t *rb = join(s->b, "1", "2", "agency:city-fire");
    if (ra == NULL || rb == NULL) {
        json_decref(ra);
        json_decref(rb);
        return false;
    }
    CHECK_INT(json_array_size(json_object_get(ra, "positions")), 0);
    CHECK_INT(json_array_size(json_object_get(rb, "positions")), 0);
    /* One daemon, one epoch; nothing was published between the two joins. */
    const char *ea = json_string_value(json_object_get(ra, "epoch"));
    const char *eb = json_string_value(json_object_get(rb, "epoch"));
    CHECK(ea != NULL && eb != NULL && strcmp(ea, eb) == 0);
    s->join_seq = json_integer_value(json_object_get(ra, "seq"));
    CHECK_INT(json_integer_value(json_object_get(rb, "seq")), s->join_seq);
    json_decref(ra);
    json_decref(rb);
    return true;
}

/* The first AMB-12 fix reaches A, and not B. */
static void step_first_position(struct scenario *s)
{
    send_fix(s, 0);
    json_t *p = recv_position(s->a, "agency:county-ems", "AMB-12");
    check_position(s, p, 0);
    CHECK(p != NULL && seq_of(p) > s->join_seq);
    s->last_seq = seq_of(p);
    json_decref(p);

    /* A has it, so B would have it queued by now if the daemon routed it there. */
    CHECK_INT(positions_after_fence(s->b, "3"), 0);
}

/* C joins after the fix: the join reply carries the latest position of AMB-12. */
static bool step_late_join(struct scenario *s)
{
    s->c = console(s);
    if (s->c < 0)
        return false;
    json_t *rc = join(s->c, "1", "2", "agency:county-ems");
    if (rc == NULL)
        return false;
    json_t *positions = json_object_get(rc, "positions");
    CHECK_INT(json_array_size(positions), 1);
    json_t *p = find_device(positions, "AMB-12");
    check_position(s, p, 0);
    CHECK_INT(seq_of(p), s->last_seq); /* the same position, not a copy with a new seq */
    CHECK(json_integer_value(json_object_get(rc, "seq")) >= s->last_seq);
    json_decref(rc);
    return true;
}

/* A message for a topic A never joined: Phoenix's exact error reply. */
static void step_unmatched_topic(struct scenario *s)
{
    CHECK_INT(phx_send(s->a, "9", "10", "agency:nope", "some_event", "{}"), 0);
    expect_frame(s->a, "[\"9\",\"10\",\"agency:nope\",\"phx_reply\","
                       "{\"status\":\"error\",\"response\":{\"reason\":\"unmatched topic\"}}]");
}

/* A leaves: ok reply, then phx_close; the next fix reaches C but no longer A. */
static void step_leave(struct scenario *s)
{
    json_t *before = json_array();
    CHECK_INT(phx_send(s->a, "1", "11", "agency:county-ems", "phx_leave", "{}"), 0);
    json_t *reply =
        phx_recv_match(s->a, "agency:county-ems", "phx_reply", "11", EVENT_TIMEOUT_MS, before);
    CHECK(reply != NULL);
    CHECK_STR(json_string_value(json_array_get(reply, 0)), "1");
    CHECK_STR(json_string_value(json_object_get(json_array_get(reply, 4), "status")), "ok");
    CHECK_INT(count_event(before, "phx_close"), 0); /* the reply comes first */
    json_decref(reply);
    json_decref(before);

    json_t *closing = phx_recv_event(s->a, "agency:county-ems", "phx_close", EVENT_TIMEOUT_MS);
    CHECK(closing != NULL);
    /* Phoenix sends the join_ref here; the phoenix JS client also accepts null. */
    json_t *jr = json_array_get(closing, 0);
    CHECK(closing != NULL &&
          (json_is_null(jr) || (json_is_string(jr) && strcmp(json_string_value(jr), "1") == 0)));
    CHECK(closing != NULL && json_is_object(json_array_get(closing, 4)));
    json_decref(closing);

    send_fix(s, 1);
    json_t *p = recv_position(s->c, "agency:county-ems", "AMB-12");
    check_position(s, p, 1);
    /* seq rises by one per accepted position across the daemon. */
    CHECK_INT(seq_of(p), s->last_seq + 1);
    s->last_seq = seq_of(p);
    json_decref(p);

    CHECK_INT(positions_after_fence(s->a, "12"), 0);
}

/* Garbage in UDP and on a WebSocket: dropped and counted; the daemon and the other
 * consoles carry on. */
static void step_garbage(struct scenario *s)
{
    char unknown[256];
    make_rmc(unknown, sizeof unknown, "NOPE-1", s->t0 + 2, FIXES[2].nmea_lat);
    const char *udp[] = {"hello", "$GPRMC,bad*01" /* XOR of GPRMC,bad is 00 */, unknown};
    for (size_t i = 0; i < sizeof udp / sizeof udp[0]; i++)
        CHECK_INT(udp_send(s->d->udp_port, udp[i], strlen(udp[i])), 0);

    /* A frame that is not JSON: docs/protocol.md: the socket closes with 1007 (invalid payload). */
    int d = console(s);
    if (d >= 0) {
        CHECK_INT(ws_send_text(d, "this is not json ["), 0);
        CHECK_INT(ws_wait_close(d, EVENT_TIMEOUT_MS), 1007);
        close(d);
    }

    char body[256];
    CHECK_INT(http_get(s->d->ws_port, "/healthz", body, sizeof body, EVENT_TIMEOUT_MS), 200);
    heartbeat(s->a, "13");

    send_fix(s, 2);
    json_t *p = recv_position(s->c, "agency:county-ems", "AMB-12");
    check_position(s, p, 2);
    CHECK_INT(seq_of(p), s->last_seq + 1); /* none of the garbage was accepted */
    json_decref(p);

    /* Every drop has its counter (the fix above came later, so all were handled). */
    CHECK_INT(http_metric(s->d->ws_port, "gpsrelay_ingest_rejected_total{reason=\"malformed\"}"),
              1);
    CHECK_INT(http_metric(s->d->ws_port, "gpsrelay_ingest_rejected_total{reason=\"bad_checksum\"}"),
              1);
    CHECK_INT(
        http_metric(s->d->ws_port, "gpsrelay_ingest_rejected_total{reason=\"unknown_device\"}"), 1);
    CHECK_INT(http_metric(s->d->ws_port, "gpsrelay_consoles_closed_total{reason=\"malformed\"}"),
              1);
    CHECK_INT(http_metric(s->d->ws_port, "gpsrelay_consoles_connected"), 3);

    /* Every position pushed to a console was timed, receipt to write; well under a
     * second here, and +Inf holds them all. */
    long long timed = http_metric(s->d->ws_port, "gpsrelay_delivery_latency_seconds_count");
    CHECK(timed >= 3);
    CHECK_INT(http_metric(s->d->ws_port, "gpsrelay_delivery_latency_seconds_bucket{le=\"+Inf\"}"),
              timed);
    CHECK_INT(http_metric(s->d->ws_port, "gpsrelay_delivery_latency_seconds_bucket{le=\"1\"}"),
              timed);
    CHECK(http_metric(s->d->ws_port, "gpsrelay_loop_busy_seconds_count") > 0);
}

/* SIGTERM: every open console gets 1001 (reconnect later), never 1000. */
static void step_shutdown(struct scenario *s)
{
    CHECK_INT(daemon_signal(s->d, SIGTERM), 0);
    CHECK_INT(ws_wait_close(s->a, EVENT_TIMEOUT_MS), 1001);
    CHECK_INT(ws_wait_close(s->b, EVENT_TIMEOUT_MS), 1001);
    CHECK_INT(ws_wait_close(s->c, EVENT_TIMEOUT_MS), 1001);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 64;
    }
    struct gr_daemon d;
    int started = daemon_start(&d, argv[1], NULL, CSV);
    CHECK_INT(started, 0);
    if (started != 0)
        return check_result("integration_udp_to_ws");

    /* A few seconds in the past: three fixes one second apart all stay behind "now". */
    struct scenario s = {.d = &d, .a = -1, .b = -1, .c = -1, .t0 = time(NULL) - 3};
    step_http(&s);
    if (step_join(&s)) {
        step_first_position(&s);
        if (step_late_join(&s)) {
            step_unmatched_topic(&s);
            step_leave(&s);
            step_garbage(&s);
            step_shutdown(&s);
        }
    }

    /* Exit 0 also means no leak: CI builds the daemon with ASan. */
    CHECK_INT(daemon_stop(&d), 0);
    CHECK(strstr(d.notify_log, "STOPPING=1") != NULL);
    if (s.a >= 0)
        close(s.a);
    if (s.b >= 0)
        close(s.b);
    if (s.c >= 0)
        close(s.c);
    return check_result("integration_udp_to_ws");
}
