/*
 * test_wire.c - a fix as a message of the cluster's stream and back (cluster_wire.h): the
 * subject, the message id and the headers, every field decoded to the exact double the
 * accepting node had, and the messages a node must skip.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "gpsrelay/cluster_wire.h"
#include "gpsrelay/format.h"

/* 2026-11-23T18:20:01.250Z */
#define T_MS 1795458001250LL

static void test_round_trip(void)
{
    const char attrs[] = "{\"siren\":true,\"note\":\"a \\\"b\\\"\"}";
    struct gr_fix f = {.time_ms = T_MS,
                       .lat = 40.712812345678901,
                       .lon = -74.006012345678901,
                       .speed = 12.345678901234567,
                       .course = 359.99999999999994,
                       .alt = -12.5,
                       .hdop = 0.9,
                       .sats = 9,
                       .fields =
                           GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS,
                       .valid = true,
                       .src = GR_SRC_TAIP,
                       .attrs = attrs,
                       .attrs_len = strlen(attrs)};
    struct gr_wire_msg m;
    CHECK_INT(gr_wire_encode("county", "AMB-12", &f, T_MS + 40, &m), 0);
    CHECK_STR(m.subject, "county.pos.AMB-12");
    CHECK_STR(m.msg_id, "AMB-12/1795458001250");
    CHECK_STR(m.rx, "1795458001290");
    CHECK_STR(m.src, "taip");
    CHECK(strstr(m.body, "\"time\":\"2026-11-23T18:20:01.250Z\"") != NULL);

    struct gr_json_report rep;
    int64_t rx = 0;
    CHECK_INT(gr_wire_decode(m.body, m.body_len, m.rx, m.src, &rep, &rx), GR_OK);
    CHECK_STR(rep.id, "AMB-12");
    CHECK_INT(rx, T_MS + 40);
    CHECK_INT(rep.fix.time_ms, T_MS);
    CHECK_INT(rep.fix.src, GR_SRC_TAIP);
    CHECK_INT(rep.fix.fields, f.fields);
    CHECK(rep.fix.valid);
    /* Every node applies exactly the accepting node's doubles (the speed rule compares
     * them; consoles get them to 7 decimals from every node alike). */
    CHECK(rep.fix.lat == f.lat && rep.fix.lon == f.lon && rep.fix.speed == f.speed);
    CHECK(rep.fix.course == f.course && rep.fix.alt == f.alt && rep.fix.hdop == f.hdop);
    CHECK_INT(rep.fix.sats, 9);
    CHECK_STR(rep.attrs, "{\"siren\":true,\"note\":\"a \\\"b\\\"\"}");
}

/* Only the fields a fix has go on the wire; none come back that were not there. */
static void test_minimal(void)
{
    struct gr_fix f = {
        .time_ms = T_MS, .lat = -33.9, .lon = 151.2, .valid = true, .src = GR_SRC_NMEA};
    struct gr_wire_msg m;
    CHECK_INT(gr_wire_encode("gpsrelay", "7", &f, T_MS, &m), 0);
    CHECK_STR(m.body,
              "{\"id\":\"7\",\"time\":\"2026-11-23T18:20:01.250Z\",\"lat\":-33.899999999999999,"
              "\"lon\":151.19999999999999}");
    struct gr_json_report rep;
    int64_t rx;
    CHECK_INT(gr_wire_decode(m.body, m.body_len, m.rx, m.src, &rep, &rx), GR_OK);
    CHECK_INT(rep.fix.fields, 0);
    CHECK_INT(rep.attrs_len, 0);
    CHECK(rep.fix.lat == -33.9 && rep.fix.lon == 151.2);
}

/* A device id that is no subject token: every byte outside [A-Za-z0-9_-] as %XX, in the
 * subject and the message id; the body keeps the id as it is. */
static void test_escaped_id(void)
{
    struct gr_fix f = {.time_ms = T_MS, .lat = 1, .lon = 2, .valid = true};
    struct gr_wire_msg m;
    CHECK_INT(gr_wire_encode("c", "a.b *>\"\xc3\xa9", &f, 0, &m), 0);
    CHECK_STR(m.subject, "c.pos.a%2Eb%20%2A%3E%22%C3%A9");
    CHECK_STR(m.msg_id, "a%2Eb%20%2A%3E%22%C3%A9/1795458001250");
    struct gr_json_report rep;
    int64_t rx;
    CHECK_INT(gr_wire_decode(m.body, m.body_len, m.rx, m.src, &rep, &rx), GR_OK);
    CHECK_STR(rep.id, "a.b *>\"\xc3\xa9");

    char longest[GR_DEVICE_ID_MAX + 2];
    memset(longest, '.', GR_DEVICE_ID_MAX);
    longest[GR_DEVICE_ID_MAX] = '\0';
    CHECK_INT(gr_wire_encode("gpsrelay", longest, &f, 0, &m), 0); /* 3 bytes each: fits */
    CHECK_INT(strlen(m.subject), strlen("gpsrelay.pos.") + 3 * GR_DEVICE_ID_MAX);
    longest[GR_DEVICE_ID_MAX] = '.';
    longest[GR_DEVICE_ID_MAX + 1] = '\0';
    CHECK_INT(gr_wire_encode("gpsrelay", longest, &f, 0, &m), -EINVAL);
    CHECK_INT(gr_wire_encode("", "A", &f, 0, &m), -EINVAL);
}

/* What a node skips: counted as malformed (or as the JSON decoder says), never applied. */
static void test_refused(void)
{
    const char *good = "{\"id\":\"A\",\"time\":\"2026-11-23T18:20:01Z\",\"lat\":1,\"lon\":2}";
    struct gr_json_report rep;
    int64_t rx;
    size_t n = strlen(good);
    CHECK_INT(gr_wire_decode(good, n, "1", "nmea", &rep, &rx), GR_OK);
    CHECK_INT(gr_wire_decode(good, n, NULL, "nmea", &rep, &rx), GR_MALFORMED);
    CHECK_INT(gr_wire_decode(good, n, "1", NULL, &rep, &rx), GR_MALFORMED);
    CHECK_INT(gr_wire_decode(good, n, "", "nmea", &rep, &rx), GR_MALFORMED);
    CHECK_INT(gr_wire_decode(good, n, "12x", "nmea", &rep, &rx), GR_MALFORMED);
    CHECK_INT(gr_wire_decode(good, n, "-5", "nmea", &rep, &rx), GR_MALFORMED);
    CHECK_INT(gr_wire_decode(good, n, "99999999999999999999999", "nmea", &rep, &rx), GR_MALFORMED);
    CHECK_INT(gr_wire_decode(good, n, "1", "morse", &rep, &rx), GR_MALFORMED);
    CHECK_INT(gr_wire_decode("not json", 8, "1", "nmea", &rep, &rx), GR_MALFORMED);
    CHECK_INT(gr_wire_decode(good, 0, "1", "nmea", &rep, &rx), GR_MALFORMED);
    const char *no_id = "{\"time\":\"2026-11-23T18:20:01Z\",\"lat\":1,\"lon\":2}";
    CHECK_INT(gr_wire_decode(no_id, strlen(no_id), "1", "nmea", &rep, &rx), GR_MALFORMED);
    const char *bad_speed =
        "{\"id\":\"A\",\"time\":\"2026-11-23T18:20:01Z\",\"lat\":1,\"lon\":2,\"speed\":-1}";
    CHECK_INT(gr_wire_decode(bad_speed, strlen(bad_speed), "1", "nmea", &rep, &rx), GR_BAD_VALUE);
}

int main(void)
{
    test_round_trip();
    test_minimal();
    test_escaped_id();
    test_refused();
    return check_result("test_wire");
}
