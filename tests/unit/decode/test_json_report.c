/*
 * test_json_report.c - JSON position reports (json_report.h, docs/ingest.md).
 *
 * Runs under LeakSanitizer in CI: every refused report below also checks that the decoder
 * released what jansson allocated.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "gpsrelay/json_report.h"

/* 2026-11-23T18:20:01Z */
#define T0_MS 1795458001000LL

#define EXAMPLE_REPORT                                                                             \
    "{\"id\":\"AMB-12\",\"time\":\"2026-11-23T18:20:01Z\",\"lat\":40.7128,\"lon\":-74.006,"        \
    "\"speed\":12.3,\"course\":271.5,\"alt\":10.2,\"hdop\":0.9,\"sats\":9,"                        \
    "\"attrs\":{\"ignition\":true,\"lights\":\"on\",\"siren\":false}}"

/*
 * Decodes s[0..len) from an exact-size heap copy with no NUL after it (ASan catches a read
 * past len) into a poisoned *out, twice: the result must not depend on what *out held.
 */
static enum gr_reason decode_n(const char *s, size_t len, struct gr_json_report *out)
{
    static struct gr_json_report again;
    char *copy = malloc(len ? len : 1);

    memcpy(copy, s, len);
    memset(out, 0xa5, sizeof(*out));
    enum gr_reason r = gr_json_report_decode(copy, len, out);
    memset(&again, 0x5a, sizeof(again));
    CHECK_INT(gr_json_report_decode(copy, len, &again), r);
    free(copy);
    if (r == GR_OK) {
        CHECK_STR(again.id, out->id);
        CHECK_STR(again.attrs, out->attrs);
        CHECK_INT(again.fix.time_ms, out->fix.time_ms);
        /* Whatever it says, the id and attrs are NUL-terminated and attrs_len is right. */
        CHECK(memchr(out->id, '\0', sizeof(out->id)) != NULL);
        CHECK_INT(strlen(out->attrs), out->attrs_len);
        CHECK(out->fix.valid);
        CHECK_INT(out->fix.src, GR_SRC_JSON);
        /* Left for the caller to point at out->attrs (json_report.c). */
        CHECK(out->fix.attrs == NULL);
        CHECK_INT(out->fix.attrs_len, 0);
    }
    return r;
}

static enum gr_reason decode(const char *s, struct gr_json_report *out)
{
    return decode_n(s, strlen(s), out);
}

/* Only the reason: a report with lat, lon and an epoch time around the given fragment. */
static enum gr_reason reason(const char *s)
{
    static struct gr_json_report out;
    return decode(s, &out);
}

/* The time of {"time":<time>,"lat":1,"lon":2}, or -1 when refused. */
static int64_t time_of(const char *time)
{
    static struct gr_json_report out;
    char buf[256];

    snprintf(buf, sizeof(buf), "{\"time\":%s,\"lat\":1,\"lon\":2}", time);
    return decode(buf, &out) == GR_OK ? out.fix.time_ms : -1;
}

static void test_spec_report(void)
{
    static struct gr_json_report r;

    CHECK_INT(decode(EXAMPLE_REPORT, &r), GR_OK);
    CHECK_STR(r.id, "AMB-12");
    CHECK_INT(r.fix.time_ms, T0_MS);
    CHECK_NEAR(r.fix.lat, 40.7128, 0);
    CHECK_NEAR(r.fix.lon, -74.006, 0);
    CHECK_NEAR(r.fix.speed, 12.3, 0);
    CHECK_NEAR(r.fix.course, 271.5, 0);
    CHECK_NEAR(r.fix.alt, 10.2, 0);
    CHECK_NEAR(r.fix.hdop, 0.9, 0);
    CHECK_INT(r.fix.sats, 9);
    CHECK_INT(r.fix.fields, GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
    CHECK(r.fix.valid);
    CHECK_INT(r.fix.src, GR_SRC_JSON);
    CHECK_STR(r.attrs, "{\"ignition\":true,\"lights\":\"on\",\"siren\":false}");
    CHECK_INT(r.attrs_len, 45);

    /* The same report pretty-printed: the same fix, attrs compacted to the same text. */
    CHECK_INT(decode("{\n \"id\": \"AMB-12\",\n \"time\": \"2026-11-23T18:20:01Z\",\n"
                     " \"lat\": 40.7128,\n \"lon\": -74.006,\n \"attrs\": {\n"
                     "  \"ignition\": true,\n  \"lights\": \"on\",\n  \"siren\": false\n }\n}",
                     &r),
              GR_OK);
    CHECK_STR(r.attrs, "{\"ignition\":true,\"lights\":\"on\",\"siren\":false}");
    CHECK_INT(r.fix.fields, 0);
}

static void test_minimal(void)
{
    static struct gr_json_report r;

    /* No id (identity then comes from the prefix or the sender), no optional fields. */
    CHECK_INT(decode("{\"time\":\"2026-11-23T18:20:01Z\",\"lat\":-33.8688,\"lon\":151.2093}", &r),
              GR_OK);
    CHECK_STR(r.id, "");
    CHECK_STR(r.attrs, "");
    CHECK_INT(r.attrs_len, 0);
    CHECK_INT(r.fix.fields, 0);
    CHECK_NEAR(r.fix.lat, -33.8688, 0);
    CHECK_NEAR(r.fix.lon, 151.2093, 0);
    CHECK_INT(r.fix.time_ms, T0_MS);

    /* Integers are numbers too; unknown keys are ignored (later firmware may add some). */
    CHECK_INT(decode("{\"id\":\"X\",\"time\":0,\"lat\":40,\"lon\":-74,\"sats\":12,\"speed\":0,"
                     "\"vendor\":{\"x\":1},\"z\":[]}",
                     &r),
              GR_OK);
    CHECK_NEAR(r.fix.lat, 40, 0);
    CHECK_NEAR(r.fix.lon, -74, 0);
    CHECK_NEAR(r.fix.speed, 0, 0);
    CHECK_INT(r.fix.sats, 12);
    CHECK_INT(r.fix.fields, GR_FIX_SATS | GR_FIX_SPEED);
    CHECK_INT(r.fix.time_ms, 0);

    /* null means "not sent" for optional fields. */
    CHECK_INT(decode("{\"id\":null,\"time\":0,\"lat\":1,\"lon\":2,\"speed\":null,\"course\":null,"
                     "\"alt\":null,\"hdop\":null,\"sats\":null,\"attrs\":null}",
                     &r),
              GR_OK);
    CHECK_INT(r.fix.fields, 0);
    CHECK_STR(r.id, "");
    CHECK_STR(r.attrs, "");

    /* Out-of-range positions are decoded; the filters refuse them (out_of_range). */
    CHECK_INT(decode("{\"time\":0,\"lat\":123.4,\"lon\":-574.2}", &r), GR_OK);
    CHECK_NEAR(r.fix.lat, 123.4, 0);
    CHECK_NEAR(r.fix.lon, -574.2, 0);
}

static void test_epoch_time(void)
{
    CHECK_INT(time_of("1795458001"), T0_MS);
    CHECK_INT(time_of("1795458001.25"), T0_MS + 250);
    CHECK_INT(time_of("1795458001.123"), T0_MS + 123); /* rounded, not truncated, from binary */
    CHECK_INT(time_of("1795458001.0004"), T0_MS);
    CHECK_INT(time_of("1795458001.9996"), T0_MS + 1000);
    CHECK_INT(time_of("1.795458001e9"), T0_MS);
    CHECK_INT(time_of("0"), 0);
    CHECK_INT(time_of("0.0"), 0);
    CHECK_INT(time_of("253402300799"), 253402300799000LL); /* 9999-12-31T23:59:59Z */
    CHECK_INT(time_of("253402300799.5"), 253402300799500LL);

    /* Before 1970, from year 10000 on, and numbers no clock writes. */
    CHECK_INT(time_of("-1"), -1);
    CHECK_INT(time_of("-1.5"), -1);
    CHECK_INT(time_of("-0.001"), -1);
    CHECK_INT(time_of("253402300800"), -1);
    CHECK_INT(time_of("253402300799.9999"), -1); /* rounds up into year 10000 */
    CHECK_INT(time_of("1e300"), -1);
    CHECK_INT(time_of("-1e300"), -1);
    CHECK_INT(time_of("9223372036854775807"), -1);
    CHECK_INT(time_of("-9223372036854775808"), -1);
    CHECK_INT(time_of("1e400"), -1); /* jansson: real number overflow */
}

static void test_iso_time(void)
{
    CHECK_INT(time_of("\"2026-11-23T18:20:01Z\""), T0_MS);
    CHECK_INT(time_of("\"2026-11-23t18:20:01z\""), T0_MS); /* RFC 3339 5.6 */
    CHECK_INT(time_of("\"2026-11-23T18:20:01.250Z\""), T0_MS + 250);
    CHECK_INT(time_of("\"2026-11-23T18:20:01.1Z\""), T0_MS + 100);
    CHECK_INT(time_of("\"2026-11-23T18:20:01.12Z\""), T0_MS + 120);
    CHECK_INT(time_of("\"2026-11-23T18:20:01.123Z\""), T0_MS + 123);
    CHECK_INT(time_of("\"2026-11-23T18:20:01.123999999Z\""), T0_MS + 123); /* truncated */
    CHECK_INT(time_of("\"2026-11-23T18:20:01.000Z\""), T0_MS);

    /* Offsets name the same instant. */
    CHECK_INT(time_of("\"2026-11-23T18:20:01+00:00\""), T0_MS);
    CHECK_INT(time_of("\"2026-11-23T18:20:01-00:00\""), T0_MS);
    CHECK_INT(time_of("\"2026-11-23T19:20:01+01:00\""), T0_MS);
    CHECK_INT(time_of("\"2026-11-23T13:20:01-05:00\""), T0_MS);
    CHECK_INT(time_of("\"2026-11-23T23:50:01.5+05:30\""), T0_MS + 500);
    CHECK_INT(time_of("\"2026-11-24T04:20:01+10:00\""), T0_MS); /* across midnight */
    CHECK_INT(time_of("\"2026-11-22T23:20:01-19:00\""), T0_MS);
    CHECK_INT(time_of("\"2026-11-23T18:20:01+23:59\""), T0_MS - (23 * 3600 + 59 * 60) * 1000LL);

    /* Dates. */
    CHECK_INT(time_of("\"1970-01-01T00:00:00Z\""), 0);
    CHECK_INT(time_of("\"2024-02-29T12:00:00Z\""), 1709208000000LL);
    CHECK_INT(time_of("\"2000-02-29T00:00:00Z\""), 951782400000LL);
    CHECK_INT(time_of("\"9999-12-31T23:59:59Z\""), 253402300799000LL);
    /* A leap second is the first second of the next minute (POSIX). */
    CHECK_INT(time_of("\"2016-12-31T23:59:60Z\""), 1483228800000LL);
    CHECK_INT(time_of("\"2016-12-31T23:59:60.5Z\""), 1483228800500LL);
    CHECK_INT(time_of("\"2017-01-01T00:59:60+01:00\""), 1483228800000LL);

    /* Refused. */
    static const char *const bad[] = {
        "\"2026-11-23T18:20:01\"",         /* local time, offset unknown */
        "\"2026-11-23 18:20:01Z\"",        /* space for 'T' */
        "\"2026-11-23T18:20Z\"",           /* no seconds */
        "\"2026-11-23T18:20:01.Z\"",       /* no fraction digits */
        "\"2026-11-23T18:20:01,5Z\"",      /* comma fraction */
        "\"2026-11-23T18:20:01+0100\"",    /* basic-format offset */
        "\"2026-11-23T18:20:01+01\"",      /* short offset */
        "\"2026-11-23T18:20:01+24:00\"",   /* offset out of range */
        "\"2026-11-23T18:20:01+01:60\"",   /* offset out of range */
        "\"2026-11-23T18:20:01ZZ\"",       /* trailing */
        "\"2026-11-23T18:20:01Z \"",       /* trailing */
        "\" 2026-11-23T18:20:01Z\"",       /* leading */
        "\"26-11-23T18:20:01Z\"",          /* 2-digit year */
        "\"02026-11-23T18:20:01Z\"",       /* 5-digit year */
        "\"2026-1-23T18:20:01Z\"",         /* 1-digit month */
        "\"2026-13-45T25:61:61Z\"",        /* nothing in range */
        "\"2026-00-23T18:20:01Z\"",        /* month 0 */
        "\"2026-11-00T18:20:01Z\"",        /* day 0 */
        "\"2026-11-31T18:20:01Z\"",        /* November has 30 days */
        "\"2023-02-29T00:00:00Z\"",        /* not a leap year */
        "\"1900-02-29T00:00:00Z\"",        /* not a leap year either */
        "\"2026-11-23T24:00:00Z\"",        /* hour 24 */
        "\"2026-11-23T18:60:01Z\"",        /* minute 60 */
        "\"2026-11-23T18:20:61Z\"",        /* second 61 */
        "\"2016-12-31T23:58:60Z\"",        /* second 60 outside minute 59 */
        "\"0000-01-01T00:00:00Z\"",        /* before 1970 */
        "\"1969-12-31T23:59:59.999Z\"",    /* before 1970 */
        "\"1970-01-01T00:30:00+01:00\"",   /* before 1970 once converted */
        "\"9999-12-31T23:59:59-00:01\"",   /* year 10000 once converted */
        "\"2026-11-23T18:20:01+\"",        /* cut short */
        "\"2026-11-23T\"",                 /* cut short */
        "\"\"",                            /* empty */
        "\"1795458001\"",                  /* epoch as a string */
        "\"2026-11-23T18:20:01\\u0000Z\"", /* NUL: jansson refuses it */
        "true",
        "null",
        "{}",
        "[1795458001]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t t = time_of(bad[i]);
        if (t != -1) {
            fprintf(stderr, "accepted time %s\n", bad[i]);
        }
        CHECK_INT(t, -1);
    }
}

static void test_required_and_types(void)
{
    /* Missing. */
    CHECK_INT(reason("{\"id\":\"X\",\"time\":0,\"lon\":-74}"), GR_MALFORMED);
    CHECK_INT(reason("{\"id\":\"X\",\"time\":0,\"lat\":40.7}"), GR_MALFORMED);
    CHECK_INT(reason("{\"id\":\"X\",\"lat\":40.7,\"lon\":-74}"), GR_MALFORMED);
    CHECK_INT(reason("{}"), GR_MALFORMED);
    /* Required fields cannot be null. */
    CHECK_INT(reason("{\"time\":0,\"lat\":null,\"lon\":-74}"), GR_MALFORMED);
    CHECK_INT(reason("{\"time\":null,\"lat\":1,\"lon\":-74}"), GR_MALFORMED);

    /* Wrong types. */
    static const char *const bad[] = {
        "{\"time\":0,\"lat\":\"40.7\",\"lon\":-74}",
        "{\"time\":0,\"lat\":40.7,\"lon\":true}",
        "{\"time\":0,\"lat\":[40.7],\"lon\":-74}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"speed\":\"12\"}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"course\":false}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"alt\":{}}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"hdop\":[]}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"sats\":9.5}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"sats\":9.0}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"sats\":\"9\"}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"sats\":-1}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"sats\":2147483648}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"id\":12}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"id\":[\"X\"]}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":[1,2]}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":\"{}\"}",
        "{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":true}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum gr_reason r = reason(bad[i]);
        if (r != GR_MALFORMED) {
            fprintf(stderr, "not malformed: %s\n", bad[i]);
        }
        CHECK_INT(r, GR_MALFORMED);
    }

    static struct gr_json_report r;
    CHECK_INT(decode("{\"time\":0,\"lat\":1,\"lon\":2,\"sats\":255}", &r), GR_OK);
    CHECK_INT(r.fix.sats, 255); /* GR_FIX_SATS_MAX; 2147483647 is bad_value (test_bad_values) */
    CHECK_INT(decode("{\"time\":0,\"lat\":1,\"lon\":2,\"sats\":0}", &r), GR_OK);
    CHECK_INT(r.fix.sats, 0);
    CHECK_INT(r.fix.fields, GR_FIX_SATS);
}

static void test_not_an_object(void)
{
    static const char *const bad[] = {
        "",
        " ",
        "{",
        "}",
        "[{\"id\":\"X\",\"time\":0,\"lat\":1,\"lon\":2}]",
        "42",
        "\"x\"",
        "null",
        "{\"id\":\"X\",\"time\":0,\"lat\":1,\"lo",                      /* truncated */
        "{\"id\":\"X\",\"time\":0,\"lat\":1,\"lon\":2} {\"id\":\"Y\"}", /* two objects */
        "{\"id\":\"X\",\"time\":0,\"lat\":1,\"lon\":2}x",               /* trailing garbage */
        "{'id':'X','time':0,'lat':1,'lon':2}",                          /* not JSON */
        "{\"time\":0,\"lat\":1,\"lon\":2,}",                            /* trailing comma */
        "{\"time\":0,\"lat\":NaN,\"lon\":2}",
        "{\"time\":0,\"lat\":Infinity,\"lon\":2}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum gr_reason r = reason(bad[i]);
        if (r != GR_MALFORMED) {
            fprintf(stderr, "not malformed: %s\n", bad[i]);
        }
        CHECK_INT(r, GR_MALFORMED);
    }
    /* A NUL byte ends nothing: the length does. */
    CHECK_INT(decode_n("{\"time\":0,\"lat\":1,\"lon\":2}\0", 28, &(struct gr_json_report){0}),
              GR_MALFORMED);
    /* Whitespace around the object is JSON. */
    CHECK_INT(reason(" {\"time\":0,\"lat\":1,\"lon\":2} "), GR_OK);
}

static void test_duplicates(void)
{
    CHECK_INT(reason("{\"id\":\"X\",\"id\":\"Y\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_MALFORMED);
    CHECK_INT(reason("{\"time\":0,\"lat\":1,\"lat\":2,\"lon\":2}"), GR_MALFORMED);
    CHECK_INT(reason("{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":{\"a\":1,\"a\":2}}"), GR_MALFORMED);
    CHECK_INT(reason("{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":{\"a\":{\"b\":1,\"b\":1}}}"),
              GR_MALFORMED);
    /* The same key in different objects is no duplicate. */
    CHECK_INT(reason("{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":{\"lat\":1,\"a\":{\"lat\":2}}}"),
              GR_OK);
}

static void test_id(void)
{
    static struct gr_json_report r;
    char buf[256], id[GR_DEVICE_ID_MAX + 2];

    memset(id, 'A', GR_DEVICE_ID_MAX);
    id[GR_DEVICE_ID_MAX] = '\0';
    snprintf(buf, sizeof(buf), "{\"id\":\"%s\",\"time\":0,\"lat\":1,\"lon\":2}", id);
    CHECK_INT(decode(buf, &r), GR_OK);
    CHECK_STR(r.id, id);
    strcat(id, "A");
    snprintf(buf, sizeof(buf), "{\"id\":\"%s\",\"time\":0,\"lat\":1,\"lon\":2}", id);
    CHECK_INT(decode(buf, &r), GR_BAD_ID);
    CHECK_STR(r.id, ""); /* nothing half-decoded left behind */

    CHECK_INT(reason("{\"id\":\"\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_BAD_ID);
    CHECK_INT(reason("{\"id\":\"AMB\\u0001\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_BAD_ID);
    CHECK_INT(reason("{\"id\":\"AMB\\t12\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_BAD_ID);
    CHECK_INT(reason("{\"id\":\"AMB\\n\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_BAD_ID);
    CHECK_INT(reason("{\"id\":\"AMB\\u007f\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_BAD_ID);
    CHECK_INT(reason("{\"id\":\"AMB\\u0085\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_BAD_ID);
    CHECK_INT(reason("{\"id\":\"AMB\\u009f\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_BAD_ID);
    /* A raw control byte inside a JSON string is not JSON at all. */
    CHECK_INT(reason("{\"id\":\"AMB\x01\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_MALFORMED);
    /* "\u0000" is refused by jansson before we see the id. */
    CHECK_INT(reason("{\"id\":\"AMB\\u0000X\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_MALFORMED);

    /* Other UTF-8 is text, kept byte for byte; U+00A0 is not a C1 control. */
    CHECK_INT(decode("{\"id\":\"AMB-\xc3\xa9\xe6\x9d\xb1\",\"time\":0,\"lat\":1,\"lon\":2}", &r),
              GR_OK);
    CHECK_STR(r.id, "AMB-\xc3\xa9\xe6\x9d\xb1");
    CHECK_INT(decode("{\"id\":\"A\\u00e9\\u00a0\",\"time\":0,\"lat\":1,\"lon\":2}", &r), GR_OK);
    CHECK_STR(r.id, "A\xc3\xa9\xc2\xa0");
    /* Spaces are kept as sent: the id is whatever string the device was configured with. */
    CHECK_INT(decode("{\"id\":\" AMB 12 \",\"time\":0,\"lat\":1,\"lon\":2}", &r), GR_OK);
    CHECK_STR(r.id, " AMB 12 ");
}

static void test_invalid_utf8(void)
{
    CHECK_INT(reason("{\"id\":\"AMB\xff\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_MALFORMED);
    CHECK_INT(reason("{\"id\":\"AMB\xc0\xaf\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_MALFORMED);
    CHECK_INT(reason("{\"id\":\"AMB\xe6\x9d\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_MALFORMED);
    CHECK_INT(reason("{\"id\":\"AMB\xed\xa0\x80\",\"time\":0,\"lat\":1,\"lon\":2}"), GR_MALFORMED);
    CHECK_INT(reason("{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":{\"n\":\"\xfe\"}}"), GR_MALFORMED);
    CHECK_INT(reason("{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":{\"\x80\":1}}"), GR_MALFORMED);
    /* A lone surrogate escape is not a character. */
    CHECK_INT(reason("{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":{\"n\":\"\\ud83d\"}}"),
              GR_MALFORMED);
}

/* attrs of {"time":0,"lat":1,"lon":2,"attrs":<attrs>} into *r; returns the reason. */
static enum gr_reason attrs_of(const char *attrs, struct gr_json_report *r)
{
    static char buf[4096];

    snprintf(buf, sizeof(buf), "{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":%s}", attrs);
    return decode(buf, r);
}

static void test_attrs(void)
{
    static struct gr_json_report r;

    CHECK_INT(attrs_of("{}", &r), GR_OK);
    CHECK_STR(r.attrs, "{}");
    CHECK_INT(r.attrs_len, 2);

    /* Nesting, arrays, null, and the order of keys as sent. */
    CHECK_INT(attrs_of("{\"z\":1,\"a\":[1,2,{\"b\":null}],\"c\":{\"d\":\"e\"}}", &r), GR_OK);
    CHECK_STR(r.attrs, "{\"z\":1,\"a\":[1,2,{\"b\":null}],\"c\":{\"d\":\"e\"}}");

    /* Whitespace goes; the values stay. */
    CHECK_INT(attrs_of("{ \"ignition\" : true ,\n\t\"fuel\" : 0.75 , \"rpm\" : -12 }", &r), GR_OK);
    CHECK_STR(r.attrs, "{\"ignition\":true,\"fuel\":0.75,\"rpm\":-12}");

    /* Decimals of up to 15 significant digits come back as written. */
    CHECK_INT(attrs_of("{\"a\":0.1,\"b\":12.6,\"c\":-40.7128,\"d\":123456789.012345}", &r), GR_OK);
    CHECK_STR(r.attrs, "{\"a\":0.1,\"b\":12.6,\"c\":-40.7128,\"d\":123456789.012345}");

    /* Escapes: what must stay escaped does; \u escapes of text become UTF-8. */
    CHECK_INT(attrs_of("{\"q\":\"a\\\"b\\\\c\\nd\\/e\",\"n\":\"\\u00e9\\ud83d\\ude91\"}", &r),
              GR_OK);
    CHECK_STR(r.attrs, "{\"q\":\"a\\\"b\\\\c\\nd/e\",\"n\":\"\xc3\xa9\xf0\x9f\x9a\x91\"}");

    /* '$', '>' and "<>" inside strings are just text. */
    CHECK_INT(attrs_of("{\"note\":\"$GPRMC<>RPV\"}", &r), GR_OK);
    CHECK_STR(r.attrs, "{\"note\":\"$GPRMC<>RPV\"}");
}

static void test_attrs_size(void)
{
    static struct gr_json_report r;
    static char attrs[2700], pad[2600];

    /* {"pad":"xx...x"} is 10 bytes plus the padding. */
    memset(pad, 'x', GR_ATTRS_MAX - 10);
    pad[GR_ATTRS_MAX - 10] = '\0';
    snprintf(attrs, sizeof(attrs), "{\"pad\":\"%s\"}", pad);
    CHECK_INT(attrs_of(attrs, &r), GR_OK);
    CHECK_INT(r.attrs_len, GR_ATTRS_MAX);
    CHECK_STR(r.attrs, attrs);

    /* The limit is on the compact text: spaces the sender added do not count. */
    snprintf(attrs, sizeof(attrs), "{  \"pad\"  :  \"%s\"  }", pad);
    CHECK_INT(attrs_of(attrs, &r), GR_OK);
    CHECK_INT(r.attrs_len, GR_ATTRS_MAX);

    /* One byte more. */
    strcat(pad, "x");
    snprintf(attrs, sizeof(attrs), "{\"pad\":\"%s\"}", pad);
    CHECK_INT(attrs_of(attrs, &r), GR_ATTRS_TOO_BIG);
    CHECK_INT(r.attrs_len, 0);
    CHECK_STR(r.attrs, "");

    /* Far more. */
    memset(pad, 'x', 2500);
    pad[2500] = '\0';
    snprintf(attrs, sizeof(attrs), "{\"a\":{\"pad\":\"%s\"}}", pad);
    CHECK_INT(attrs_of(attrs, &r), GR_ATTRS_TOO_BIG);

    /* A wrong type elsewhere is reported before the size. */
    char buf[2800];
    snprintf(buf, sizeof(buf), "{\"time\":0,\"lat\":\"1\",\"lon\":2,\"attrs\":%s}", attrs);
    CHECK_INT(reason(buf), GR_MALFORMED);
}

static void test_depth(void)
{
    /* Deep nesting inside attrs, as deep as a 256-byte line allows: decoded, released. */
    static char buf[1024];
    static struct gr_json_report r;
    size_t n = 0;
    int depth = 100;

    n += (size_t)snprintf(buf, sizeof(buf), "{\"time\":0,\"lat\":1,\"lon\":2,\"attrs\":{\"a\":");
    for (int i = 0; i < depth; i++) {
        buf[n++] = '[';
    }
    for (int i = 0; i < depth; i++) {
        buf[n++] = ']';
    }
    memcpy(buf + n, "}}", 3);
    CHECK_INT(decode(buf, &r), GR_OK);
    CHECK_INT(r.attrs_len, 6 + 2 * depth);
}

/* The time of a report, or its refusal. */
static enum gr_reason reason_of(const char *time)
{
    static struct gr_json_report out;
    char buf[256];

    snprintf(buf, sizeof(buf), "{\"time\":%s,\"lat\":1,\"lon\":2}", time);
    return decode(buf, &out);
}

/* A day its month does not have is bad_date; a field that is no day or month is malformed. */
static void test_bad_dates(void)
{
    CHECK_INT(reason_of("\"2026-02-30T00:00:00Z\""), GR_BAD_DATE);
    CHECK_INT(reason_of("\"2026-02-29T00:00:00Z\""), GR_BAD_DATE);
    CHECK_INT(reason_of("\"2026-11-31T18:20:01Z\""), GR_BAD_DATE);
    CHECK_INT(reason_of("\"1900-02-29T00:00:00Z\""), GR_BAD_DATE);
    CHECK_INT(reason_of("\"2024-02-29T00:00:00Z\""), GR_OK);
    CHECK_INT(reason_of("\"2026-11-32T18:20:01Z\""), GR_MALFORMED);
    CHECK_INT(reason_of("\"2026-13-01T18:20:01Z\""), GR_MALFORMED);
    CHECK_INT(reason_of("\"2026-02-30T00:00\""), GR_MALFORMED); /* malformed before the date */
}

/* Values outside fix.h's bounds are refused as bad_value: not published as 0, not passed on. */
static void test_bad_values(void)
{
    static struct gr_json_report r;
    static const char *const bad[] = {
        "\"speed\":1e16",   "\"speed\":1e300",     "\"speed\":-5",   "\"speed\":-0.01",
        "\"speed\":516",    "\"course\":720",      "\"course\":-1",  "\"course\":360.5",
        "\"course\":1e300", "\"alt\":1e16",        "\"alt\":-1e300", "\"alt\":-1000.5",
        "\"alt\":100001",   "\"hdop\":-1",         "\"hdop\":100",   "\"hdop\":1e300",
        "\"sats\":256",     "\"sats\":2147483647",
    };
    static const char *const good[] = {
        "\"speed\":0",    "\"speed\":515",  "\"course\":0",   "\"course\":359.99",
        "\"course\":360", "\"alt\":-1000",  "\"alt\":100000", "\"alt\":-430.5",
        "\"hdop\":0",     "\"hdop\":99.99", "\"sats\":0",     "\"sats\":255",
    };
    char buf[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"id\":\"X\",\"time\":0,\"lat\":40,\"lon\":-74,%s}", bad[i]);
        CHECK_INT(decode(buf, &r), GR_BAD_VALUE);
        CHECK_STR(r.id, "");
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"id\":\"X\",\"time\":0,\"lat\":40,\"lon\":-74,%s}", good[i]);
        CHECK_INT(decode(buf, &r), GR_OK);
    }
    CHECK_INT(decode("{\"time\":0,\"lat\":40,\"lon\":-74,\"speed\":1e16,\"course\":\"x\"}", &r),
              GR_MALFORMED); /* a wrong type is malformed, whatever the values */
}

int main(void)
{
    test_spec_report();
    test_minimal();
    test_epoch_time();
    test_iso_time();
    test_required_and_types();
    test_not_an_object();
    test_duplicates();
    test_id();
    test_invalid_utf8();
    test_attrs();
    test_attrs_size();
    test_depth();
    test_bad_dates();
    test_bad_values();
    return check_result("test_json_report");
}
