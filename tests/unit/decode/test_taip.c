/*
 * test_taip.c - TAIP RPV position reports (taip.h).
 *
 * Anchored on the example in Trimble's own TAIP appendix (Lassen SK8 manual, C.2):
 * >RPV15714+3739438-1220384601512612;ID=1234;*7F<
 */
#include <stdbool.h>
#include <stdlib.h>

#include "check.h"
#include "gpsrelay/report.h"
#include "gpsrelay/taip.h"

#define MANUAL ">RPV15714+3739438-1220384601512612;ID=1234;*7F<"

/* What one decode gave, with the id copied out so the input can be freed. */
struct result {
    enum gr_reason r;
    struct gr_sentence s;
    char id[128]; /* "(none)" when s.id is NULL */
};

/*
 * Decodes s[0..len) from an exact-size heap copy with no NUL after it, so ASan catches a
 * read past len. *out is poisoned first: the decoder must not rely on what it held, and
 * decoding twice must give the same answer.
 */
static struct result decode_n(const char *s, size_t len)
{
    struct result res;
    char *copy = malloc(len ? len : 1);
    struct gr_sentence again;

    memcpy(copy, s, len);
    memset(&res.s, 0xa5, sizeof(res.s));
    res.r = gr_taip_decode(copy, len, &res.s);
    memset(&again, 0x5a, sizeof(again));
    CHECK_INT(gr_taip_decode(copy, len, &again), res.r);
    strcpy(res.id, "(none)");
    if (res.r == GR_OK && res.s.id != NULL) {
        /* "the id points into the input" */
        CHECK(res.s.id >= copy && res.s.id + res.s.id_len <= copy + len);
        CHECK(res.s.id_len < sizeof(res.id));
        memcpy(res.id, res.s.id, res.s.id_len);
        res.id[res.s.id_len] = '\0';
        res.s.id = NULL; /* dangling once copy is freed */
    }
    free(copy);
    return res;
}

static struct result decode(const char *s)
{
    return decode_n(s, strlen(s));
}

/* body ends with '*' or not: appends the TAIP checksum (XOR of '>' through '*') and '<'. */
static const char *with_checksum(const char *body)
{
    static char buf[512];
    unsigned sum = 0;
    size_t n = strlen(body);

    for (size_t i = 0; i < n; i++) {
        sum ^= (unsigned char)body[i];
    }
    snprintf(buf, sizeof(buf), "%s%02X<", body, sum);
    return buf;
}

static void test_manual_example(void)
{
    struct result x = decode(MANUAL);

    CHECK_INT(x.r, GR_OK);
    CHECK_INT(x.s.type, GR_SENT_TAIP_RPV);
    CHECK_STR(x.s.talker, "");
    CHECK(x.s.checksum_seen);
    CHECK_INT(x.s.has, GR_HAS_TIME | GR_HAS_POSITION | GR_HAS_VALIDITY);
    /* GPS 15714 s is UTC 15696 s = 04:21:36. */
    CHECK_INT(x.s.time_of_day_ms, (15714 - GR_GPS_UTC_LEAP_SECONDS) * 1000);
    CHECK_INT(x.s.time_of_day_ms, 15696000);
    CHECK_NEAR(x.s.fix.lat, 37.39438, 0);
    CHECK_NEAR(x.s.fix.lon, -122.03846, 0);
    CHECK_NEAR(x.s.fix.speed, 15 * 0.44704, 0); /* 15 mph */
    CHECK_NEAR(x.s.fix.speed, 6.7056, 1e-12);
    CHECK_NEAR(x.s.fix.course, 126, 0);
    CHECK_INT(x.s.fix.fields, GR_FIX_SPEED | GR_FIX_COURSE);
    CHECK(x.s.fix.valid);
    CHECK_INT(x.s.fix.src, GR_SRC_TAIP);
    CHECK_INT(x.s.fix.time_ms, 0); /* the assembler sets it */
    CHECK(x.s.fix.attrs == NULL);
    CHECK_INT(x.s.fix.attrs_len, 0);
    CHECK_STR(x.id, "1234");

    /* The id points at the "1234" of the input itself. */
    const char *in = MANUAL;
    struct gr_sentence s;
    CHECK_INT(gr_taip_decode(in, strlen(in), &s), GR_OK);
    CHECK(s.id == in + 38);
    CHECK_INT(s.id_len, 4);

    /* Our own checksum helper agrees with the manual. */
    CHECK_STR(with_checksum(">RPV15714+3739438-1220384601512612;ID=1234;*"), MANUAL);
}

static void test_optional_parts(void)
{
    struct result x;

    /* Checksum, no id. */
    x = decode(">RPV15714+3739438-1220384601512612*4B<");
    CHECK_INT(x.r, GR_OK);
    CHECK(x.s.checksum_seen);
    CHECK_STR(x.id, "(none)");
    CHECK_NEAR(x.s.fix.lat, 37.39438, 0);

    /* Neither: accepted, and checksum_seen says so (counted by ingest). */
    x = decode(">RPV15714+3739438-1220384601512612<");
    CHECK_INT(x.r, GR_OK);
    CHECK(!x.s.checksum_seen);
    CHECK_STR(x.id, "(none)");
    CHECK_NEAR(x.s.fix.lon, -122.03846, 0);

    /* Id, no checksum: with and without the ';' after it. */
    x = decode(">RPV15714+3739438-1220384601512612;ID=1234;<");
    CHECK_INT(x.r, GR_OK);
    CHECK(!x.s.checksum_seen);
    CHECK_STR(x.id, "1234");
    x = decode(">RPV15714+3739438-1220384601512612;ID=1234<");
    CHECK_INT(x.r, GR_OK);
    CHECK_STR(x.id, "1234");

    /* Lower-case hex digits. */
    x = decode(">RPV15714+3739438-1220384601512612;ID=1234;*7f<");
    CHECK_INT(x.r, GR_OK);
    CHECK(x.s.checksum_seen);

    /* Other ;KEY=VALUE; fields around the id are skipped. */
    x = decode(">RPV15714+3739438-1220384601512612;ID=1234;PV=1*75<");
    CHECK_INT(x.r, GR_OK);
    CHECK_STR(x.id, "1234");
    x = decode(with_checksum(">RPV15714+3739438-1220384601512612;PV=1;ID=CAR7;EV=00;*"));
    CHECK_INT(x.r, GR_OK);
    CHECK_STR(x.id, "CAR7");
    x = decode(with_checksum(">RPV15714+3739438-1220384601512612;PV=1;*"));
    CHECK_INT(x.r, GR_OK);
    CHECK_STR(x.id, "(none)");
}

static void test_id(void)
{
    struct result x;

    /* Space-padded ids (Digi, Multi-Tech, CalAmp) are trimmed; inner spaces stay. */
    x = decode(">RPV15714+3739438-1220384601512612;ID= AB12 ;*7B<");
    CHECK_INT(x.r, GR_OK);
    CHECK_STR(x.id, "AB12");
    x = decode(with_checksum(">RPV15714+3739438-1220384601512612;ID=   CAR 7;*"));
    CHECK_INT(x.r, GR_OK);
    CHECK_STR(x.id, "CAR 7");
    x = decode(with_checksum(">RPV15714+3739438-1220384601512612; ID =0007;*"));
    CHECK_INT(x.r, GR_OK);
    CHECK_STR(x.id, "0007");

    /* Blank: no id, so identity falls back to the prefix or the source address. */
    x = decode(with_checksum(">RPV15714+3739438-1220384601512612;ID=   ;*"));
    CHECK_INT(x.r, GR_OK);
    CHECK_STR(x.id, "(none)");
    x = decode(with_checksum(">RPV15714+3739438-1220384601512612;ID=;*"));
    CHECK_INT(x.r, GR_OK);
    CHECK_STR(x.id, "(none)");

    /* Only the key ID counts: "IDX" and "VID" are other fields. */
    x = decode(with_checksum(">RPV15714+3739438-1220384601512612;IDX=9;VID=8;*"));
    CHECK_INT(x.r, GR_OK);
    CHECK_STR(x.id, "(none)");

    /* GR_DEVICE_ID_MAX bytes are fine; one more is not. */
    char body[200], id[GR_DEVICE_ID_MAX + 2];
    memset(id, 'V', GR_DEVICE_ID_MAX);
    id[GR_DEVICE_ID_MAX] = '\0';
    snprintf(body, sizeof(body), ">RPV15714+3739438-1220384601512612;ID=%s;*", id);
    x = decode(with_checksum(body));
    CHECK_INT(x.r, GR_OK);
    CHECK_INT(strlen(x.id), GR_DEVICE_ID_MAX);
    id[GR_DEVICE_ID_MAX] = 'V';
    id[GR_DEVICE_ID_MAX + 1] = '\0';
    snprintf(body, sizeof(body), ">RPV15714+3739438-1220384601512612;ID=%s;*", id);
    CHECK_INT(decode(with_checksum(body)).r, GR_MALFORMED);

    /* Two ids: which vehicle is it? */
    x = decode(with_checksum(">RPV15714+3739438-1220384601512612;ID=1234;ID=5678;*"));
    CHECK_INT(x.r, GR_MALFORMED);
    /* Fields are KEY=VALUE after a ';'. */
    CHECK_INT(decode(with_checksum(">RPV15714+3739438-1220384601512612;ID1234;*")).r, GR_MALFORMED);
    CHECK_INT(decode(with_checksum(">RPV15714+3739438-1220384601512612;=1234;*")).r, GR_MALFORMED);
    CHECK_INT(decode(with_checksum(">RPV15714+3739438-1220384601512612ID=1234;*")).r, GR_MALFORMED);
}

static void test_hemispheres(void)
{
    /* South and east, Auckland: 45 mph heading 099, 3D GPS, fresh. */
    struct result x = decode(">RPV66002-3644759+1744407204509912;ID=NZ01;*6A<");

    CHECK_INT(x.r, GR_OK);
    CHECK_NEAR(x.s.fix.lat, -36.44759, 0);
    CHECK_NEAR(x.s.fix.lon, 174.44072, 0);
    CHECK_NEAR(x.s.fix.speed, 45 * 0.44704, 0);
    CHECK_NEAR(x.s.fix.course, 99, 0);
    CHECK_INT(x.s.time_of_day_ms, 65984000);
    CHECK(x.s.fix.valid);
    CHECK_STR(x.id, "NZ01");

    /* "-0000001" and "+00000001": the sign applies to the whole value. */
    x = decode(with_checksum(">RPV43200-0000001-0000000199935932;*"));
    CHECK_INT(x.r, GR_OK);
    CHECK_NEAR(x.s.fix.lat, -0.00001, 0);
    CHECK_NEAR(x.s.fix.lon, -0.00001, 0);
    CHECK_NEAR(x.s.fix.speed, 999 * 0.44704, 0);
    CHECK_NEAR(x.s.fix.course, 359, 0);

    /* The largest positions the widths allow are decoded; the filters judge the range. */
    x = decode(with_checksum(">RPV86399+9999999-9999999999935912*"));
    CHECK_INT(x.r, GR_OK);
    CHECK_NEAR(x.s.fix.lat, 99.99999, 0);
    CHECK_NEAR(x.s.fix.lon, -999.99999, 0);

    /* No sign, or a space for one: malformed. */
    CHECK_INT(decode(">RPV15714 3739438-1220384601512612<").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV15714+3739438 1220384601512612<").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV1571403739438-1220384601512612<").r, GR_MALFORMED);
}

static void test_source_and_age(void)
{
    struct result x;

    /* Source 9: no fix. Time and position are still there; validity says no. */
    x = decode(">RPV15714+3739438-1220384600000090;ID=1234;*74<");
    CHECK_INT(x.r, GR_OK);
    CHECK(x.s.has & GR_HAS_VALIDITY);
    CHECK(!x.s.fix.valid);
    CHECK_STR(x.id, "1234");

    static const struct {
        const char *sa; /* source, age */
        bool valid;
    } cases[] = {
        {"02", true},  {"12", true},  {"22", true},  {"32", true}, /* 2D/3D, GPS/DGPS */
        {"11", true},                                              /* old (> 10 s) still a fix */
        {"62", true},  {"82", true},                               /* dead reckoning */
        {"92", false}, {"91", false},                              /* no fix */
        {"10", false}, {"30", false}, {"00", false},               /* age 0: no data */
        {"42", false}, {"52", false}, {"72", false},               /* undefined sources */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[64];
        snprintf(body, sizeof(body), ">RPV15714+3739438-12203846015126%s*", cases[i].sa);
        x = decode(with_checksum(body));
        CHECK_INT(x.r, GR_OK);
        CHECK_INT(x.s.has, GR_HAS_TIME | GR_HAS_POSITION | GR_HAS_VALIDITY);
        if (x.s.fix.valid != cases[i].valid) {
            fprintf(stderr, "source/age %s\n", cases[i].sa);
        }
        CHECK(x.s.fix.valid == cases[i].valid);
    }

    /* Age is 0, 1 or 2; source a digit. */
    CHECK_INT(decode(with_checksum(">RPV15714+3739438-1220384601512613*")).r, GR_MALFORMED);
    CHECK_INT(decode(with_checksum(">RPV15714+3739438-12203846015126X2*")).r, GR_MALFORMED);
    CHECK_INT(decode(with_checksum(">RPV15714+3739438-122038460151261 *")).r, GR_MALFORMED);
}

static void test_time(void)
{
    struct result x;

    /* GPS time is 18 s ahead: 00:00:05 GPS is 23:59:47 UTC the day before. */
    x = decode(">RPV00005+4042768-0740036001200012;ID=0007;*79<");
    CHECK_INT(x.r, GR_OK);
    CHECK_INT(x.s.time_of_day_ms, 86387000);
    CHECK(!(x.s.has & GR_HAS_DATE));
    CHECK_NEAR(x.s.fix.speed, 12 * 0.44704, 0);
    CHECK_NEAR(x.s.fix.lat, 40.42768, 0);
    CHECK_NEAR(x.s.fix.lon, -74.00360, 0);

    x = decode(with_checksum(">RPV00018+4042768-0740036001200012*"));
    CHECK_INT(x.s.time_of_day_ms, 0);
    x = decode(with_checksum(">RPV00017+4042768-0740036001200012*"));
    CHECK_INT(x.s.time_of_day_ms, 86399000);
    x = decode(with_checksum(">RPV00000+4042768-0740036001200012*"));
    CHECK_INT(x.s.time_of_day_ms, 86382000);
    x = decode(">RPV86399+4042768-0740036001200012;ID=0007;*71<");
    CHECK_INT(x.r, GR_OK);
    CHECK_INT(x.s.time_of_day_ms, 86381000);

    /* 0..86399 only. */
    CHECK_INT(decode(with_checksum(">RPV86400+4042768-0740036001200012*")).r, GR_MALFORMED);
    CHECK_INT(decode(">RPV99999+9999999+9999999999999999;ID=MAX;*24<").r, GR_MALFORMED);
}

static void test_checksum(void)
{
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612;ID=1234;*00<").r, GR_BAD_CHECKSUM);
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612;ID=1234;*7E<").r, GR_BAD_CHECKSUM);
    /* One changed digit in the data: the checksum catches it. */
    CHECK_INT(decode(">RPV15714+3739438-1220384601512613;ID=1234;*7F<").r, GR_BAD_CHECKSUM);
    /* The checksum covers the '>' and the '*': leaving out either or both is wrong. */
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612;ID=1234;*55<").r, GR_BAD_CHECKSUM);
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612;ID=1234;*41<").r, GR_BAD_CHECKSUM);
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612;ID=1234;*6B<").r, GR_BAD_CHECKSUM);
    /* Not two hex digits. */
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612;ID=1234;*7<").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612;ID=1234;*7F0<").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612;ID=1234;*G7<").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612;ID=1234;*<").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV*<").r, GR_MALFORMED);
    /* A '*' inside the fields. */
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612;ID=12*34;*7F<").r, GR_MALFORMED);
}

static void test_truncated_and_garbage(void)
{
    const char *m = MANUAL;
    size_t n = strlen(m);

    /* Every strict prefix of the message is refused, without reading past its end. */
    for (size_t len = 0; len < n; len++) {
        struct result x = decode_n(m, len);
        if (x.r != GR_MALFORMED) {
            fprintf(stderr, "prefix of %zu bytes\n", len);
        }
        CHECK_INT(x.r, GR_MALFORMED);
    }
    CHECK_INT(decode_n(m, n).r, GR_OK);

    CHECK_INT(decode(">").r, GR_MALFORMED);
    CHECK_INT(decode("><").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV<").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV;ID=1234;<").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV15714+3739438-12203846<").r, GR_MALFORMED);
    CHECK_INT(decode("RPV15714+3739438-1220384601512612<").r, GR_MALFORMED);
    CHECK_INT(decode("x>RPV15714+3739438-1220384601512612<").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612< ").r, GR_MALFORMED);
    /* One character too many in the data. */
    CHECK_INT(decode(">RPV15714+3739438-12203846015126120<").r, GR_MALFORMED);
    /*
     * Spaces between the fields, as the layout is often written for readability: not TAIP. Six
     * spaces XOR to zero, so even the manual's checksum matches; the layout still refuses.
     */
    CHECK_INT(decode(">RPV15714 +3739438 -12203846 015 126 1 2;ID=1234;*7F<").r, GR_MALFORMED);
    /* TAIP is upper case and printable ASCII. */
    CHECK_INT(decode(">rpv15714+3739438-1220384601512612;ID=1234;*5F<").r, GR_MALFORMED);
    CHECK_INT(decode(">RPV15714+37\x7f"
                     "9438-1220384601512612<")
                  .r,
              GR_MALFORMED);
    CHECK_INT(decode(">RPV15714+37\xc3\xa9"
                     "438-1220384601512612<")
                  .r,
              GR_MALFORMED);
    CHECK_INT(decode_n(">RPV15714+37\0"
                       "9438-1220384601512612<",
                       36)
                  .r,
              GR_MALFORMED);
    /* Two messages glued together: the framer splits them, the decoder takes one. */
    CHECK_INT(decode(">RPV15714+3739438-1220384601512612<>RPV15714+3739438-1220384601512612<").r,
              GR_MALFORMED);
}

static void test_other_messages(void)
{
    /* Well-formed TAIP we do not decode. */
    CHECK_INT(
        decode(">RLN1571400000+37394380000-122038460000+00001000000000000000012612;ID=1234;*65<").r,
        GR_UNSUPPORTED);
    CHECK_INT(decode(">RPR15714+3739438-122038460151261200;ID=1234;*7B<").r, GR_UNSUPPORTED);
    CHECK_INT(decode(">QPV<").r, GR_UNSUPPORTED);
    CHECK_INT(decode(with_checksum(">RTM223118.5101407199301+0000*")).r, GR_UNSUPPORTED);
    CHECK_INT(decode(">RID1234<").r, GR_UNSUPPORTED);
    /* Their checksum is still checked. */
    CHECK_INT(
        decode(">RLN1571400000+37394380000-122038460000+00001000000000000000012612;ID=1234;*66<").r,
        GR_BAD_CHECKSUM);
    /* Not a qualifier and an id. */
    CHECK_INT(decode(">R<").r, GR_MALFORMED);
    CHECK_INT(decode(">RP<").r, GR_MALFORMED);
    CHECK_INT(decode(">rln<").r, GR_MALFORMED);
    CHECK_INT(decode(">1PV<").r, GR_MALFORMED);
}

/*
 * Three digits hold headings up to 999: one of 361 or more is no bearing and is refused as
 * bad_value (fix.h's bounds, the same as NMEA's and JSON's), its id not handed out.
 */
static void test_bad_values(void)
{
    struct result x = decode(with_checksum(">RPV15714+3739438-1220384601599912;ID=CAR7;*"));
    CHECK_INT(x.r, GR_BAD_VALUE);
    CHECK_STR(x.id, "(none)");
    CHECK_INT(decode(with_checksum(">RPV15714+3739438-1220384601536112*")).r, GR_BAD_VALUE);
    x = decode(with_checksum(">RPV15714+3739438-1220384601536012*"));
    CHECK_INT(x.r, GR_OK); /* as sent: the same bearing as 0 */
    CHECK_NEAR(x.s.fix.course, 360, 0);
    CHECK_INT(decode(with_checksum(">RPV15714+3739438-1220384699935912*")).r, GR_OK); /* 999 mph */
}

int main(void)
{
    test_manual_example();
    test_optional_parts();
    test_id();
    test_hemispheres();
    test_source_and_age();
    test_time();
    test_checksum();
    test_truncated_and_garbage();
    test_other_messages();
    test_bad_values();
    return check_result("test_taip");
}
