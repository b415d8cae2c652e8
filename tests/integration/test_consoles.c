/*
 * test_consoles.c - the console side of the real gpsrelayd (docs/protocol.md): topics,
 * Phoenix join semantics, resume with `since`, stale units, mapping changes, limits, and
 * consoles that go idle or stop reading.
 *
 * Usage: itest_consoles /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 5000
#define WS_PATH "/socket/websocket?vsn=2.0.0"

static const char CSV[] = "device_id,agency_id,label,source_addr\n"
                          "AMB-12,county-ems,Medic 12,\n"
                          "AMB-12,city-fire,Medic 12,\n"
                          "AMB-7,county-ems,Medic 7,\n"
                          "E-7,city-fire,Engine 7,\n";

#define SLOW_UNITS 50 /* units S-0 .. S-49 of agency:slow-test, added to the CSV in main() */

static struct gr_daemon d;
static int64_t next_ms; /* fix times count up by 100 ms from a few minutes in the past */
static double next_lat = 40.70;

/* ---- helpers ----------------------------------------------------------------------------- */

/* One fix of device, 100 ms after the previous fix of any device and 11 m further north. */
static void send_fix(const char *device)
{
    next_lat += 0.0001;
    CHECK_INT(udp_send_rmc(d.udp_port, device, next_ms, next_lat, -74.006), 0);
    next_ms += 100;
}

static int console(void)
{
    int fd = ws_connect(d.ws_port, WS_PATH, NULL, NULL);
    CHECK(fd >= 0);
    return fd;
}

/* Joins and returns the reply's response object (caller decrefs), NULL if not ok. */
static json_t *join(int fd, const char *join_ref, const char *topic, const char *payload)
{
    CHECK_INT(phx_send(fd, join_ref, join_ref, topic, "phx_join", payload), 0);
    json_t *r = phx_recv_match(fd, topic, "phx_reply", join_ref, WAIT_MS, NULL);
    json_t *body = json_array_get(r, 4);
    const char *status = json_string_value(json_object_get(body, "status"));
    json_t *resp = status && strcmp(status, "ok") == 0 ? json_object_get(body, "response") : NULL;
    json_incref(resp);
    json_decref(r);
    return resp;
}

/* The reason of an error reply to ref on topic. Caller frees. */
static char *error_reason(int fd, const char *topic, const char *ref)
{
    json_t *r = phx_recv_match(fd, topic, "phx_reply", ref, WAIT_MS, NULL);
    json_t *body = json_array_get(r, 4);
    const char *reason =
        json_string_value(json_object_get(json_object_get(body, "response"), "reason"));
    char *copy = reason ? strdup(reason) : NULL;
    json_decref(r);
    return copy;
}

/* Devices in the positions pushes of topic within ms, in order, comma-separated. */
static void collect_devices(int fd, const char *topic, int ms, char *out, size_t cap)
{
    json_t *frames = json_array();
    phx_collect(fd, ms, frames);
    out[0] = '\0';
    size_t i, k;
    json_t *f, *p;
    json_array_foreach(frames, i, f)
    {
        if (strcmp(json_string_value(json_array_get(f, 2)), topic) != 0 ||
            strcmp(json_string_value(json_array_get(f, 3)), "positions") != 0)
            continue;
        json_array_foreach(json_object_get(json_array_get(f, 4), "positions"), k, p)
        {
            size_t n = strlen(out);
            snprintf(out + n, cap - n, "%s%s", n ? "," : "",
                     json_string_value(json_object_get(p, "device")));
        }
    }
    json_decref(frames);
}

/* Waits until a heartbeat round-trips: everything sent to fd before it has been read. */
static void fence(int fd)
{
    CHECK_INT(phx_send(fd, NULL, "hb", "phoenix", "heartbeat", NULL), 0);
    json_t *r = phx_recv_match(fd, "phoenix", "phx_reply", "hb", WAIT_MS, NULL);
    CHECK(r != NULL);
    json_decref(r);
}

static json_t *expect_event(int fd, const char *topic, const char *event)
{
    json_t *e = phx_recv_event(fd, topic, event, WAIT_MS);
    if (e == NULL)
        fprintf(stderr, "no %s on %s\n", event, topic);
    CHECK(e != NULL);
    return e;
}

/* ---- scenarios ----------------------------------------------------------------------------- */

/* device:<id> holds one unit; a unit in two agencies reaches each once per position. */
static void test_topics(void)
{
    int a = console(), b = console(), c = console();
    json_decref(join(a, "1", "agency:county-ems", NULL));
    json_decref(join(a, "2", "agency:city-fire", NULL));
    json_decref(join(b, "1", "device:AMB-12", NULL));
    json_decref(join(c, "1", "device:E-7", NULL));

    send_fix("AMB-12");
    send_fix("AMB-7");
    send_fix("E-7");
    char got[256];
    collect_devices(a, "agency:county-ems", 500, got, sizeof got);
    CHECK_STR(got, "AMB-12,AMB-7");
    collect_devices(b, "device:AMB-12", 300, got, sizeof got);
    CHECK_STR(got, "AMB-12");
    collect_devices(c, "device:E-7", 300, got, sizeof got);
    CHECK_STR(got, "E-7");

    /* An unmapped device is no topic. */
    CHECK_INT(phx_send(c, "9", "9", "device:NOPE", "phx_join", NULL), 0);
    char *reason = error_reason(c, "device:NOPE", "9");
    CHECK_STR(reason, "unmatched topic");
    free(reason);
    close(a);
    close(b);
    close(c);
}

/*
 * Consoles come and go on a shared topic: when the oldest one leaves, every other one
 * must still be told of new positions (regression: unlinking the last subscriber of a
 * topic's list once dropped the ones in front of it).
 */
static void test_leaving_keeps_others(void)
{
    int first = console(), second = console(), third = console();
    json_decref(join(first, "1", "agency:county-ems", NULL));
    json_decref(join(second, "1", "agency:county-ems", NULL));
    json_decref(join(third, "1", "agency:county-ems", NULL));
    CHECK_INT(phx_send(first, "1", "2", "agency:county-ems", "phx_leave", NULL), 0);
    json_t *closed = phx_recv_event(first, "agency:county-ems", "phx_close", WAIT_MS);
    CHECK(closed != NULL);
    json_decref(closed);

    send_fix("AMB-7");
    char got[128];
    collect_devices(second, "agency:county-ems", 500, got, sizeof got);
    CHECK_STR(got, "AMB-7");
    collect_devices(third, "agency:county-ems", 500, got, sizeof got);
    CHECK_STR(got, "AMB-7");
    close(first);
    close(second);
    close(third);
}

/* Duplicate join closes the old one first; a stale join_ref is ignored; 100 topics max. */
static void test_join_semantics(void)
{
    int a = console();
    json_decref(join(a, "1", "agency:county-ems", NULL));
    CHECK_INT(phx_send(a, "3", "3", "agency:county-ems", "phx_join", NULL), 0);
    json_t *skipped = json_array();
    json_t *r = phx_recv_match(a, "agency:county-ems", "phx_reply", "3", WAIT_MS, skipped);
    CHECK(r != NULL);
    json_t *close_frame = json_array_get(skipped, json_array_size(skipped) - 1);
    CHECK_STR(json_string_value(json_array_get(close_frame, 3)), "phx_close");
    CHECK_STR(json_string_value(json_array_get(close_frame, 0)), "1"); /* the old join_ref */
    json_decref(r);
    json_decref(skipped);

    /* A leave with the old join_ref is stale: no reply, the join stays. */
    CHECK_INT(phx_send(a, "1", "4", "agency:county-ems", "phx_leave", NULL), 0);
    fence(a);
    json_t *frames = json_array();
    phx_collect(a, 200, frames);
    CHECK_INT(json_array_size(frames), 0);
    json_decref(frames);
    send_fix("AMB-7");
    char got[128];
    collect_devices(a, "agency:county-ems", 500, got, sizeof got);
    CHECK_STR(got, "AMB-7");

    /* Topics per socket: 100 (one already joined), the next is refused. */
    char topic[64], ref[16];
    for (int i = 1; i < 100; i++) {
        snprintf(topic, sizeof topic, "agency:a%d", i);
        snprintf(ref, sizeof ref, "j%d", i);
        CHECK_INT(phx_send(a, ref, ref, topic, "phx_join", NULL), 0);
    }
    json_t *last = phx_recv_match(a, "agency:a99", "phx_reply", "j99", WAIT_MS, NULL);
    CHECK(last != NULL);
    json_decref(last);
    CHECK_INT(phx_send(a, "x", "x", "agency:one-too-many", "phx_join", NULL), 0);
    char *reason = error_reason(a, "agency:one-too-many", "x");
    CHECK_STR(reason, "too many topics");
    free(reason);
    close(a);
}

/* Frames over 64 KiB: closed with 1009. */
static void test_frame_limit(void)
{
    int a = console();
    size_t n = 70 * 1024;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    memcpy(big, "[null,\"1\",\"phoenix\",\"heartbeat\",{}", 34);
    big[n - 1] = ']';
    big[n] = '\0';
    CHECK_INT(ws_send_text(a, big), 0);
    CHECK_INT(ws_wait_close(a, WAIT_MS), 1009);
    free(big);
    close(a);
}

/* Join with since: same epoch resumes with only what changed; another epoch gets all. */
static void test_resume(void)
{
    int a = console();
    json_t *first = join(a, "1", "agency:county-ems", NULL);
    const char *epoch = json_string_value(json_object_get(first, "epoch"));
    json_int_t seq = json_integer_value(json_object_get(first, "seq"));
    CHECK(json_array_size(json_object_get(first, "positions")) >= 2); /* AMB-12, AMB-7 */
    close(a);

    send_fix("AMB-7"); /* changes while the console is away */
    int b = console();
    char since[160];
    snprintf(since, sizeof since, "{\"since\":{\"epoch\":\"%s\",\"seq\":%lld}}", epoch,
             (long long)seq);
    json_t *resumed = join(b, "1", "agency:county-ems", since);
    CHECK(json_is_true(json_object_get(resumed, "recovered")));
    json_t *positions = json_object_get(resumed, "positions");
    CHECK_INT(json_array_size(positions), 1);
    CHECK_STR(json_string_value(json_object_get(json_array_get(positions, 0), "device")), "AMB-7");

    json_t *other =
        join(b, "2", "agency:county-ems", "{\"since\":{\"epoch\":\"not-this-one\",\"seq\":1}}");
    CHECK(json_is_false(json_object_get(other, "recovered")));
    CHECK(json_array_size(json_object_get(other, "positions")) >= 2);
    json_decref(first);
    json_decref(resumed);
    json_decref(other);
    close(b);
}

/* The mapping after test_mapping_change; extra (may be "") adds rows. */
static void write_changed_mapping(const char *extra)
{
    char path[160];
    snprintf(path, sizeof path, "%s/devices.csv", d.dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f,
            "device_id,agency_id,label,source_addr\n"
            "AMB-12,county-ems,Medic 12,\n"
            "AMB-7,county-ems,Medic 7,\n"
            "AMB-7,city-fire,Medic 7,\n"
            "E-7,city-fire,Engine 7,\n"
            "%s",
            extra);
    CHECK_INT(fclose(f), 0);
}

/* SIGHUP with a changed CSV: unit_removed / unit_added, and removal takes effect at once. */
static void test_mapping_change(void)
{
    int a = console();
    json_decref(join(a, "1", "agency:city-fire", NULL));
    write_changed_mapping("");
    CHECK_INT(daemon_signal(&d, SIGHUP), 0);

    json_t *removed = expect_event(a, "agency:city-fire", "unit_removed");
    CHECK_STR(json_string_value(json_object_get(json_array_get(removed, 4), "device")), "AMB-12");
    json_t *added = expect_event(a, "agency:city-fire", "unit_added");
    json_t *payload = json_array_get(added, 4);
    CHECK_STR(json_string_value(json_object_get(payload, "device")), "AMB-7");
    CHECK(json_is_object(json_object_get(payload, "position"))); /* its latest position */
    json_decref(removed);
    json_decref(added);

    send_fix("AMB-12"); /* no longer city-fire's */
    send_fix("AMB-7");
    char got[128];
    collect_devices(a, "agency:city-fire", 500, got, sizeof got);
    CHECK_STR(got, "AMB-7");
    close(a);
}

/*
 * A reload's events go out in the loop turn that applies it, not with whatever wakes the
 * loop next. The apply runs from an idle handle, before the loop polls; if only the
 * end-of-turn flush (after the poll) wrote them, they would wait for the next 1 s timer.
 * Five reloads: each seen well within a timer period.
 */
#define RELOAD_SEEN_MS 300
static void test_reload_prompt(void)
{
    int a = console();
    json_decref(join(a, "1", "agency:city-fire", NULL));
    for (int i = 0; i < 5; i++) {
        bool add = i % 2 == 0;
        write_changed_mapping(add ? "E-9,city-fire,Engine 9,\n" : "");
        int64_t t0 = now_ms();
        CHECK_INT(daemon_signal(&d, SIGHUP), 0);
        json_t *e = expect_event(a, "agency:city-fire", add ? "unit_added" : "unit_removed");
        long ms = (long)(now_ms() - t0);
        CHECK_STR(json_string_value(json_object_get(json_array_get(e, 4), "device")), "E-9");
        json_decref(e);
        if (ms > RELOAD_SEEN_MS)
            fprintf(stderr, "reload %d seen after %ld ms\n", i, ms);
        CHECK(ms <= RELOAD_SEEN_MS);
    }
    close(a);
}

/* A unit silent for stale_after: unit_stale, and listed stale in join replies. */
static void test_stale(void)
{
    int a = console();
    json_decref(join(a, "1", "device:E-7", NULL));
    send_fix("E-7");
    json_t *p = expect_event(a, "device:E-7", "positions");
    json_decref(p);
    json_t *stale = expect_event(a, "device:E-7", "unit_stale");
    json_t *payload = json_array_get(stale, 4);
    CHECK_STR(json_string_value(json_object_get(payload, "device")), "E-7");
    CHECK(json_string_value(json_object_get(payload, "last_time")) != NULL);
    CHECK(json_string_value(json_object_get(payload, "last_seen")) != NULL);
    json_decref(stale);
    CHECK(http_metric(d.ws_port, "gpsrelay_units_stale") >= 1);

    int b = console();
    json_t *r = join(b, "1", "device:E-7", NULL);
    json_t *list = json_object_get(r, "stale");
    CHECK_INT(json_array_size(list), 1);
    CHECK_STR(json_string_value(json_array_get(list, 0)), "E-7");
    json_decref(r);
    close(a);
    close(b);
}

/* One round: a datagram with a position of every slow-test unit, ~1 KiB of attrs each. */
static void send_slow_round(int round)
{
    static char datagram[SLOW_UNITS * 1200];
    char pad[901];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    size_t n = 0;
    for (int u = 0; u < SLOW_UNITS; u++) {
        int64_t ms = next_ms + u;
        n += (size_t)snprintf(datagram + n, sizeof datagram - n,
                              "{\"id\":\"S-%d\",\"time\":%lld.%03d,\"lat\":41.%04d,"
                              "\"lon\":-73.5,\"attrs\":{\"pad\":\"%s\"}}\n",
                              u, (long long)(ms / 1000), (int)(ms % 1000), round, pad);
    }
    next_ms += 100;
    CHECK_INT(udp_send(d.udp_port, datagram, n), 0);
}

/* Reads positions of agency:slow-test until the last unit's arrives: the whole round. */
static bool read_round(int fd)
{
    char last[16];
    snprintf(last, sizeof last, "S-%d", SLOW_UNITS - 1);
    for (;;) {
        json_t *e = phx_recv_event(fd, "agency:slow-test", "positions", WAIT_MS);
        if (e == NULL)
            return false;
        json_t *list = json_object_get(json_array_get(e, 4), "positions");
        json_t *tail = json_array_get(list, json_array_size(list) - 1);
        bool done = strcmp(json_string_value(json_object_get(tail, "device")), last) == 0;
        json_decref(e);
        if (done)
            return true;
    }
}

/* A console that stops reading is closed as slow; another console is not held up. */
static void test_slow_console(void)
{
    harness_rcvbuf = 2048; /* a tiny window: the daemon's writes back up after a few KiB */
    int slow = console();
    harness_rcvbuf = 0;
    int fast = console();
    json_decref(join(slow, "1", "agency:slow-test", NULL));
    json_decref(join(fast, "1", "agency:slow-test", NULL));

    /* Positions keep coming; slow never reads, fast reads every round, all along. The kernel's
     * buffers fill first: 550 to 720 rounds on an idle 2-core machine, more when it is busy. */
    const char *slow_closed = "gpsrelay_consoles_closed_total{reason=\"slow\"}";
    long long slow_before = http_metric(d.ws_port, slow_closed);
    int delivered = 0, rounds = 0;
    for (; rounds < 3000 && http_metric(d.ws_port, slow_closed) == slow_before; rounds++) {
        send_slow_round(rounds);
        delivered += read_round(fast);
    }
    CHECK_INT(delivered, rounds);
    CHECK_INT(http_metric(d.ws_port, slow_closed), slow_before + 1);
    /* While it stalled, newer positions replaced the ones it never took: conflated. */
    CHECK(http_metric(d.ws_port, "gpsrelay_positions_conflated_total") >= SLOW_UNITS);
    fprintf(stderr, "slow console closed after %d rounds of %d positions\n", rounds, SLOW_UNITS);
    close(slow);
    close(fast);
}

/* A console that sends nothing for idle_timeout is closed with 1001; heartbeats keep one
 * open. Its own daemon, with a 1 s idle_timeout that would close the others' consoles. */
static void test_idle_console(const char *binary)
{
    struct gr_daemon idle;
    if (daemon_start(&idle, binary, "idle_timeout 1\n", CSV) != 0) {
        CHECK(false);
        return;
    }
    int quiet = ws_connect(idle.ws_port, WS_PATH, NULL, NULL);
    int beating = ws_connect(idle.ws_port, WS_PATH, NULL, NULL);
    for (int i = 0; i < 6; i++) { /* 3 s of heartbeats every 500 ms */
        char ref[8];
        snprintf(ref, sizeof ref, "%d", i);
        CHECK_INT(phx_send(beating, NULL, ref, "phoenix", "heartbeat", NULL), 0);
        json_t *r = phx_recv_match(beating, "phoenix", "phx_reply", ref, WAIT_MS, NULL);
        CHECK(r != NULL);
        json_decref(r);
        json_t *none = json_array();
        CHECK_INT(phx_collect(beating, 500, none), 0); /* and no close meanwhile */
        json_decref(none);
    }
    CHECK_INT(ws_wait_close(quiet, WAIT_MS), 1001); /* long closed, waiting in its socket */
    CHECK_INT(http_metric(idle.ws_port, "gpsrelay_consoles_closed_total{reason=\"idle\"}"), 1);
    close(quiet);
    close(beating);
    CHECK_INT(daemon_stop(&idle), 0);
}

/*
 * Connections that never send a request (a slowloris, or a scanner) take no console's
 * turn: with SILENT_CONNECTIONS of them open from another address (past its
 * max_connections_per_source, 512, the rest are closed at accept), a console still
 * connects and joins at once.
 */
#define SILENT_CONNECTIONS 1000
static void test_silent_connections(void)
{
    static int silent[SILENT_CONNECTIONS];
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)d.ws_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000003)};
    for (int i = 0; i < SILENT_CONNECTIONS; i++) {
        silent[i] = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(silent[i] >= 0 && bind(silent[i], (struct sockaddr *)&from, sizeof(from)) == 0 &&
              connect(silent[i], (struct sockaddr *)&sa, sizeof(sa)) == 0);
    }
    int64_t t0 = now_ms();
    int fd = console();
    json_t *resp = join(fd, "1", "agency:county-ems", NULL);
    long ms = (long)(now_ms() - t0);
    CHECK(resp != NULL);
    if (ms >= 3000)
        fprintf(stderr, "console behind %d silent connections joined after %ld ms\n",
                SILENT_CONNECTIONS, ms);
    CHECK(ms < 3000); /* lws holds a silent connection for 10 s before it gives up on it */
    json_decref(resp);
    close(fd);
    for (int i = 0; i < SILENT_CONNECTIONS; i++)
        close(silent[i]);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 2;
    }
    next_ms = (int64_t)(time(NULL) - 300) * 1000;
    /* Short timeouts so the test sees them happen: 2 s to stale, 1 s to slow. */
    char csv[sizeof CSV + SLOW_UNITS * 32];
    size_t n = (size_t)snprintf(csv, sizeof csv, "%s", CSV);
    for (int u = 0; u < SLOW_UNITS; u++)
        n += (size_t)snprintf(csv + n, sizeof csv - n, "S-%d,slow-test,,\n", u);
    if (daemon_start(&d, argv[1], "stale_after 2\nslow_timeout 1\ningest_rate_limit 1000000\n",
                     csv) != 0)
        return 1;
    test_topics();
    test_leaving_keeps_others();
    test_join_semantics();
    test_frame_limit();
    test_resume();
    test_slow_console(); /* before the mapping change drops its units */
    test_mapping_change();
    test_reload_prompt();
    test_stale();
    test_silent_connections();
    CHECK_INT(daemon_stop(&d), 0);
    test_idle_console(argv[1]);
    return check_result("integration_consoles");
}
