/*
 * test_osmand.c - phones' reports: the classic query, the SDK's form, Traccar Client 9's
 * JSON, and their refusals.
 */
#include <string.h>

#include "check.h"
#include "gpsrelay/osmand.h"

static enum gr_reason form(const char *s, struct gr_osmand_report *r)
{
    return gr_osmand_decode_form(s, strlen(s), r);
}

static enum gr_reason json(const char *s, struct gr_osmand_report *r)
{
    return gr_osmand_decode_json(s, strlen(s), r);
}

/* The classic Android client's query string, as it sends it. */
static void test_query(void)
{
    struct gr_osmand_report r;
    CHECK_INT(form("id=MEDIC-12&timestamp=1764921600&lat=40.7128&lon=-74.006&speed=10.0&"
                   "bearing=271.5&altitude=10.2&accuracy=4.5&batt=87.0&charge=true",
                   &r),
              GR_OK);
    CHECK_STR(r.id, "MEDIC-12");
    CHECK(r.fix.time_ms == 1764921600000LL);
    CHECK(r.fix.lat == 40.7128 && r.fix.lon == -74.006);
    CHECK_NEAR(r.fix.speed, 5.144444, 1e-6);
    CHECK(r.fix.course == 271.5 && r.fix.alt == 10.2);
    CHECK(r.fix.src == GR_SRC_OSMAND && r.fix.valid);
    CHECK_STR(r.attrs, "{\"accuracy\":4.5,\"battery\":87.0,\"charge\":true}");
    CHECK(r.fix.attrs == r.attrs && r.fix.attrs_len == strlen(r.attrs));

    /* deviceid, milliseconds, RFC 3339, '+' and escapes, names of the client's own. */
    CHECK_INT(form("deviceid=Engine+7%2FB&timestamp=1764921600123&lat=1&lon=2&foo=bar", &r), GR_OK);
    CHECK_STR(r.id, "Engine 7/B");
    CHECK(r.fix.time_ms == 1764921600123LL);
    CHECK_STR(r.attrs, "");
    CHECK_INT(form("id=A&timestamp=2025-12-05T08:00:00.250Z&lat=1&lon=2&valid=false", &r), GR_OK);
    CHECK(r.fix.time_ms == 1764921600250LL && !r.fix.valid);
}

static void test_refusals(void)
{
    struct gr_osmand_report r;
    CHECK_INT(form("timestamp=1764921600&lat=1&lon=2", &r), GR_MISSING_FIELD);
    CHECK_INT(form("id=&timestamp=1764921600&lat=1&lon=2", &r), GR_BAD_ID);
    CHECK_INT(form("id=A&lat=1&lon=2", &r), GR_MISSING_FIELD);
    CHECK_INT(form("id=A&timestamp=1764921600&lat=1", &r), GR_MISSING_FIELD);
    CHECK_INT(form("", &r), GR_MISSING_FIELD);
    CHECK_INT(form("id=A&timestamp=1764921600&lat=abc&lon=2", &r), GR_MALFORMED);
    CHECK_INT(form("id=A&timestamp=1764921600&lat=nan&lon=2", &r), GR_MALFORMED);
    CHECK_INT(form("id=A&timestamp=1764921600&lat=0x10&lon=2", &r), GR_MALFORMED);
    CHECK_INT(form("id=A&timestamp=1764921600&lat=1&lat=2&lon=2", &r), GR_MALFORMED);
    CHECK_INT(form("id=A%ZZ&timestamp=1764921600&lat=1&lon=2", &r), GR_BAD_ID);
    CHECK_INT(form("id=A&timestamp=2026-02-30T00:00:00Z&lat=1&lon=2", &r), GR_BAD_DATE);
    CHECK_INT(form("id=A&timestamp=1764921600&lat=1&lon=2&speed=-5", &r), GR_BAD_VALUE);
    CHECK_INT(form("id=A&timestamp=-1&lat=1&lon=2", &r), GR_MALFORMED);
}

/* Traccar Client 9's body. */
static void test_json(void)
{
    struct gr_osmand_report r;
    CHECK_INT(json("{\"device_id\":\"MEDIC-12\",\"location\":{\"timestamp\":"
                   "\"2025-12-05T08:00:00.000Z\",\"coords\":{\"latitude\":40.7128,\"longitude\":"
                   "-74.006,\"accuracy\":5,\"speed\":6.17,\"heading\":-1,\"altitude\":10.2},"
                   "\"is_moving\":true,\"odometer\":1234.5,\"event\":\"motionchange\","
                   "\"battery\":{\"level\":0.87,\"is_charging\":false}}}",
                   &r),
              GR_OK);
    CHECK_STR(r.id, "MEDIC-12");
    CHECK(r.fix.time_ms == 1764921600000LL);
    CHECK(r.fix.speed == 6.17 && (r.fix.fields & GR_FIX_SPEED));
    CHECK(!(r.fix.fields & GR_FIX_COURSE)); /* -1: unknown */
    CHECK(r.fix.alt == 10.2);
    CHECK_STR(r.attrs, "{\"accuracy\":5.0,\"battery\":0.87,\"charge\":false,\"motion\":true,"
                       "\"odometer\":1234.5,\"event\":\"motionchange\"}");
    CHECK_INT(json("{\"location\":{}}", &r), GR_MISSING_FIELD);
    CHECK_INT(json("{\"device_id\":\"A\",\"location\":{\"coords\":5}}", &r), GR_MALFORMED);
    CHECK_INT(json("{\"device_id\":\"\",\"location\":{\"timestamp\":\"2025-12-05T08:00:00Z\","
                   "\"coords\":{\"latitude\":1,\"longitude\":2}}}",
                   &r),
              GR_BAD_ID);
    CHECK_INT(json("not json", &r), GR_MALFORMED);
    CHECK_INT(json("{\"device_id\":\"A\",\"location\":{\"timestamp\":\"2025-12-05T08:00:00Z\","
                   "\"coords\":{\"latitude\":\"1\",\"longitude\":2}}}",
                   &r),
              GR_MALFORMED);
}

int main(void)
{
    test_query();
    test_refusals();
    test_json();
    return check_result("test_osmand");
}
