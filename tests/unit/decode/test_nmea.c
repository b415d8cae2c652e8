/*
 * test_nmea.c - NMEA decoder: RMC, GGA, GLL, VTG, GNS and ZDA values worked out by hand, the
 * identity sentences, every rejection reason, and lines from real receiver logs (gpsd's
 * regression captures).
 */
#include <stdlib.h>

#include "check.h"
#include "gpsrelay/nmea.h"

/* 1852/3600: knots to m/s. */
#define KN 0.51444444444444444

/*
 * Decodes s from an exact-size heap copy with no NUL, so AddressSanitizer catches any read
 * past len.
 */
static enum gr_reason decode(const char *s, struct gr_sentence *out)
{
    size_t len = strlen(s);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, s, len);
    enum gr_reason r = gr_nmea_decode(copy, len, out);
    free(copy);
    return r;
}

/*
 * Like decode(), but the copy stays alive for the caller to check what s->id points at;
 * returns it (free it).
 */
static char *decode_keep(const char *s, struct gr_sentence *out, enum gr_reason *r)
{
    size_t len = strlen(s);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, s, len);
    *r = gr_nmea_decode(copy, len, out);
    return copy;
}

/* body ("$GPGGA,...") with its checksum appended, into buf. */
static const char *with_checksum(const char *body, char *buf, size_t size)
{
    unsigned sum = 0;
    for (const char *c = body + 1; *c != '\0'; c++) {
        sum ^= (unsigned char)*c;
    }
    snprintf(buf, size, "%s*%02X", body, sum);
    return buf;
}

static void test_rmc_values(void)
{
    struct gr_sentence n;

    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A", &n),
              GR_OK);
    CHECK_INT(n.type, GR_SENT_RMC);
    CHECK_STR(n.talker, "GP");
    CHECK(n.checksum_seen);
    CHECK(n.fix.valid);
    CHECK_INT(n.fix.src, GR_SRC_NMEA);
    CHECK_INT(n.fix.time_ms, 0);
    CHECK_INT(n.time_of_day_ms, (12 * 3600 + 35 * 60 + 19) * 1000);
    CHECK_INT(n.year, 1994);
    CHECK_INT(n.month, 3);
    CHECK_INT(n.day, 23);
    CHECK_NEAR(n.fix.lat, 48.1173, 1e-12);            /* 48 + 7.038 / 60 */
    CHECK_NEAR(n.fix.lon, 11.516666666666667, 1e-12); /* 11 + 31 / 60 */
    CHECK_INT(n.fix.fields, GR_FIX_SPEED | GR_FIX_COURSE);
    CHECK_NEAR(n.fix.speed, 11.523555555555555, 1e-12); /* 22.4 * 1852 / 3600 */
    CHECK_NEAR(n.fix.course, 84.4, 1e-12);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_DATE | GR_HAS_POSITION | GR_HAS_VALIDITY);
    CHECK(n.id == NULL);
    CHECK_INT(n.id_len, 0);
}

static void test_checksum(void)
{
    struct gr_sentence n;

    /* One digit of the time changed; then the checksum itself. */
    CHECK_INT(decode("$GPRMC,123518,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A", &n),
              GR_BAD_CHECKSUM);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6B", &n),
              GR_BAD_CHECKSUM);
    /* Lower-case hex is common (Magellan below); missing checksum accepted but flagged. */
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6a", &n),
              GR_OK);
    CHECK(n.checksum_seen);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W", &n),
              GR_OK);
    CHECK(!n.checksum_seen);
    CHECK_NEAR(n.fix.lat, 48.1173, 1e-12);
    /* A checksum that is not exactly two hex digits ending the sentence. */
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6G", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A ", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*", &n),
              GR_MALFORMED);
}

static void test_empty_fields(void)
{
    struct gr_sentence n;

    /* Status V with no position, time or date: parsed, not a fix. */
    CHECK_INT(decode("$GPRMC,,V,,,,,,,,,*31", &n), GR_OK);
    CHECK(!n.fix.valid);
    CHECK_INT(n.has, GR_HAS_VALIDITY);
    CHECK_INT(n.time_of_day_ms, -1);
    CHECK_INT(n.year, 0);
    CHECK_INT(n.month, 0);
    CHECK_INT(n.day, 0);
    CHECK_INT(n.fix.fields, 0);
    CHECK_INT(decode("$GPRMC,123519,V,,,,,,,,,*3C", &n), GR_OK);
    CHECK(!n.fix.valid);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_VALIDITY);
    CHECK_INT(n.time_of_day_ms, 45319000);

    /* Empty speed and course leave their bits clear; the rest is decoded. */
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,,,230394,,*1D", &n), GR_OK);
    CHECK(n.fix.valid);
    CHECK_INT(n.fix.fields, 0);
    CHECK_NEAR(n.fix.lon, 11.516666666666667, 1e-12);
    CHECK_INT(n.day, 23);

    /* Status A promises a position; a half-empty position is never right. */
    CHECK_INT(decode("$GPRMC,123519,A,,,,,022.4,084.4,230394,003.1,W", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,V,4807.038,N,,,,,230394,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,V,4807.038,,01131.000,E,,,230394,,", &n), GR_MALFORMED);
    /* A position with status V is decoded but not valid. */
    CHECK_INT(decode("$GPRMC,123519,V,4807.038,N,01131.000,E,,,230394,,", &n), GR_OK);
    CHECK(!n.fix.valid);
    CHECK_NEAR(n.fix.lat, 48.1173, 1e-12);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_DATE | GR_HAS_POSITION | GR_HAS_VALIDITY);
}

static void test_hemispheres(void)
{
    struct gr_sentence n;

    CHECK_INT(decode("$GPRMC,081836,A,3751.65,S,14507.36,E,000.0,360.0,130998,011.3,E*62", &n),
              GR_OK);
    CHECK_NEAR(n.fix.lat, -37.86083333333333, 1e-12);
    CHECK_NEAR(n.fix.lon, 145.12266666666667, 1e-12);
    CHECK_NEAR(n.fix.speed, 0.0, 0.0);
    CHECK_INT(n.fix.fields, GR_FIX_SPEED | GR_FIX_COURSE);
    CHECK_INT(n.year, 1998);
    CHECK_INT(n.month, 9);
    CHECK_INT(n.day, 13);

    CHECK_INT(decode("$GPRMC,225446,A,4916.45,N,12311.12,W,000.5,054.7,191194,020.3,E*68", &n),
              GR_OK);
    CHECK_NEAR(n.fix.lat, 49.274166666666666, 1e-12);
    CHECK_NEAR(n.fix.lon, -123.18533333333333, 1e-12);
    CHECK_NEAR(n.fix.speed, 0.5 * KN, 1e-15);
    CHECK_NEAR(n.fix.course, 54.7, 1e-12);
}

static void test_high_precision(void)
{
    struct gr_sentence a, b;

    /* RTK receivers: 10 decimals of minutes; one unit in the last place is 1.7e-12 degree. */
    CHECK_INT(decode("$GPRMC,000000.00,A,4717.1127328123,N,00833.9159254876,E,0.004,,010126,,,"
                     "R,V*16",
                     &a),
              GR_OK);
    CHECK_INT(decode("$GPRMC,000000.00,A,4717.1127328124,N,00833.9159254876,E,0.004,,010126,,,"
                     "R,V*11",
                     &b),
              GR_OK);
    CHECK_NEAR(a.fix.lat, 47.28521221353834, 1e-13);
    CHECK_NEAR(b.fix.lat, 47.28521221354, 1e-13);
    CHECK_NEAR(b.fix.lat - a.fix.lat, 1e-10 / 60, 1e-13);
    CHECK_NEAR(a.fix.lon, 8.565265424793333, 1e-13);
    CHECK(a.fix.valid); /* mode R (RTK) and nav status V (u-blox always sends V) */
    CHECK_INT(a.fix.fields, GR_FIX_SPEED);
    CHECK_INT(a.year, 2026);
    CHECK_INT(a.time_of_day_ms, 0);
}

static void test_talkers(void)
{
    struct gr_sentence n;

    CHECK_INT(decode("$GNRMC,020935.000,A,4404.1351,N,12118.8556,W,0.04,359.11,050219,,,A*6C", &n),
              GR_OK);
    CHECK_STR(n.talker, "GN");
    CHECK_INT(decode("$BDRMC,101010.5,A,3954.6000,N,11623.4000,E,1.0,90.0,231126,,,A*48", &n),
              GR_OK);
    CHECK_STR(n.talker, "BD");
    CHECK_NEAR(n.fix.lat, 39.91, 1e-12);
    CHECK_NEAR(n.fix.lon, 116.39, 1e-12);
    CHECK_NEAR(n.fix.speed, KN, 1e-15);
    CHECK_INT(n.time_of_day_ms, (10 * 3600 + 10 * 60 + 10) * 1000 + 500);
    CHECK_INT(n.year, 2026);
    CHECK_INT(n.month, 11);
    CHECK_INT(n.day, 23);
}

static void test_gga(void)
{
    struct gr_sentence n;

    /* The textbook GGA: everything present. */
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47", &n),
              GR_OK);
    CHECK_INT(n.type, GR_SENT_GGA);
    CHECK_STR(n.talker, "GP");
    CHECK(n.checksum_seen);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_POSITION | GR_HAS_VALIDITY); /* no date in GGA */
    CHECK(n.fix.valid);
    CHECK_INT(n.time_of_day_ms, (12 * 3600 + 35 * 60 + 19) * 1000);
    CHECK_INT(n.year, 0);
    CHECK_NEAR(n.fix.lat, 48.1173, 1e-12);
    CHECK_NEAR(n.fix.lon, 11.516666666666667, 1e-12);
    CHECK_INT(n.fix.fields, GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
    CHECK_INT(n.fix.sats, 8);
    CHECK_NEAR(n.fix.hdop, 0.9, 1e-12);
    CHECK_NEAR(n.fix.alt, 545.4, 1e-12); /* MSL, not the 46.9 m geoid separation */
    CHECK_INT(n.fix.time_ms, 0);

    /* Quality 0 is "no fix", position or not; empty HDOP and altitude leave their bits. */
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,0,00,,,M,,M,,*52", &n), GR_OK);
    CHECK(!n.fix.valid);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_POSITION | GR_HAS_VALIDITY);
    CHECK_INT(n.fix.fields, GR_FIX_SATS);
    CHECK_INT(n.fix.sats, 0);

    /* Quality 6 (dead reckoning) is a fix; altitude below sea level; tenths of a second. */
    CHECK_INT(decode("$GPGGA,000001.5,3351.000,S,15112.000,E,6,04,2.5,-12.5,M,22.1,M,,*59", &n),
              GR_OK);
    CHECK(n.fix.valid);
    CHECK_INT(n.time_of_day_ms, 1500);
    CHECK_NEAR(n.fix.lat, -33.85, 1e-12);
    CHECK_NEAR(n.fix.lon, 151.2, 1e-12);
    CHECK_NEAR(n.fix.alt, -12.5, 1e-12);
    CHECK_NEAR(n.fix.hdop, 2.5, 1e-12);
    CHECK_INT(n.fix.sats, 4);
    /* An empty quality counts as 0 (gpsd does the same). */
    CHECK_INT(decode("$GPGGA,123519,,,,,,,,,,,,,", &n), GR_OK);
    CHECK(!n.fix.valid);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_VALIDITY);

    /* Quality > 0 promises a position; numbers must be numbers. */
    CHECK_INT(decode("$GPGGA,123519,,,,,1,08,0.9,545.4,M,46.9,M,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,,,0,08,0.9,545.4,M,46.9,M,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,X,08,0.9,545.4,M,46.9,M,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1.0,08,0.9,545.4,M,46.9,M,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,8.5,0.9,545.4,M,46.9,M,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,256,0.9,545.4,M,46.9,M,,", &n),
              GR_BAD_VALUE); /* a number, past GR_FIX_SATS_MAX */
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,-0.9,545.4,M,46.9,M,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,--545.4,M,46.9,M,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,-,M,46.9,M,,", &n),
              GR_MALFORMED);
    /* Fields 0-8 are required (through the altitude); the rest is optional. */
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4", &n), GR_OK);
    CHECK_NEAR(n.fix.alt, 545.4, 1e-12);
}

static void test_gll(void)
{
    struct gr_sentence n;

    CHECK_INT(decode("$GPGLL,4916.45,N,12311.12,W,225444,A,*1D", &n), GR_OK);
    CHECK_INT(n.type, GR_SENT_GLL);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_POSITION | GR_HAS_VALIDITY);
    CHECK(n.fix.valid);
    CHECK_NEAR(n.fix.lat, 49.274166666666666, 1e-12);
    CHECK_NEAR(n.fix.lon, -123.18533333333333, 1e-12);
    CHECK_INT(n.time_of_day_ms, (22 * 3600 + 54 * 60 + 44) * 1000);
    CHECK_INT(n.fix.fields, 0);

    /* Status V without a position; status A with mode N. */
    CHECK_INT(decode("$GPGLL,,,,,123519,V,N*69", &n), GR_OK);
    CHECK(!n.fix.valid);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_VALIDITY);
    CHECK_INT(decode("$GPGLL,4916.45,N,12311.12,W,225444,A,N*53", &n), GR_OK);
    CHECK(!n.fix.valid);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_POSITION | GR_HAS_VALIDITY);
    CHECK_INT(decode("$GPGLL,4916.45,N,12311.12,W,225444,A,D", &n), GR_OK);
    CHECK(n.fix.valid);

    /* NMEA 1.5's GLL has neither time nor status; status A promises a position. */
    CHECK_INT(decode("$GPGLL,4916.45,N,12311.12,W", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPGLL,,,,,225444,A,A", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPGLL,4916.45,N,12311.12,W,225444,X,A", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPGLL,4916.45,N,12311.12,W,225444,A,a", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPGLL,4916.45,N,12311.12,W,2254,A,A", &n), GR_MALFORMED);
}

static void test_vtg(void)
{
    struct gr_sentence n;

    /* No time, no position: course and speed, and the mode when NMEA 2.3. */
    CHECK_INT(decode("$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48", &n), GR_OK);
    CHECK_INT(n.type, GR_SENT_VTG);
    CHECK_INT(n.has, 0); /* no mode: says nothing about validity */
    CHECK_INT(n.time_of_day_ms, -1);
    CHECK_INT(n.fix.fields, GR_FIX_SPEED | GR_FIX_COURSE);
    CHECK_NEAR(n.fix.course, 54.7, 1e-12); /* true, not the magnetic 34.4 */
    CHECK_NEAR(n.fix.speed, 5.5 * KN, 1e-12);

    /* Knots preferred; km/h when the knots field is empty. */
    CHECK_INT(decode("$GPVTG,054.7,T,034.4,M,,N,010.2,K,D*0E", &n), GR_OK);
    CHECK_NEAR(n.fix.speed, 10.2 / 3.6, 1e-12);
    CHECK_INT(n.has, GR_HAS_VALIDITY);
    CHECK(n.fix.valid);

    /* The pre-NMEA 2.0 form without unit letters: course true, magnetic, knots, km/h. */
    CHECK_INT(decode("$GPVTG,054.7,034.4,005.5,010.2*54", &n), GR_OK);
    CHECK_NEAR(n.fix.course, 54.7, 1e-12);
    CHECK_NEAR(n.fix.speed, 5.5 * KN, 1e-12);
    CHECK_INT(n.has, 0);
    CHECK_INT(decode("$GPVTG,054.7,034.4,,010.2", &n), GR_OK);
    CHECK_NEAR(n.fix.speed, 10.2 / 3.6, 1e-12);

    /* Nothing at all; too short; bad numbers and modes. */
    CHECK_INT(decode("$GPVTG,,T,,M,,N,,K", &n), GR_OK);
    CHECK_INT(n.fix.fields, 0);
    CHECK_INT(decode("$GPVTG,054.7,T,034.4,M,005.5,N", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPVTG,054.7,034.4,005.5", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPVTG,54.7.1,T,034.4,M,005.5,N,010.2,K,A", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPVTG,054.7,T,034.4,M,x,N,010.2,K,A", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPVTG,054.7,T,034.4,M,,N,1O.2,K,A", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,AB", &n), GR_MALFORMED);
}

static void test_gns(void)
{
    struct gr_sentence n;

    /* u-blox: GPS and GLONASS both RTK fixed. */
    CHECK_INT(
        decode("$GNGNS,014035.00,4332.69262,S,17235.48549,E,RR,13,0.9,25.63,11.24,,,V*0A", &n),
        GR_OK);
    CHECK_INT(n.type, GR_SENT_GNS);
    CHECK_STR(n.talker, "GN");
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_POSITION | GR_HAS_VALIDITY);
    CHECK(n.fix.valid);
    CHECK_INT(n.time_of_day_ms, (1 * 3600 + 40 * 60 + 35) * 1000);
    CHECK_NEAR(n.fix.lat, -(43.0 + 32.69262 / 60), 1e-12);
    CHECK_NEAR(n.fix.lon, 172.0 + 35.48549 / 60, 1e-12);
    CHECK_INT(n.fix.fields, GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
    CHECK_INT(n.fix.sats, 13);
    CHECK_NEAR(n.fix.hdop, 0.9, 1e-12);
    CHECK_NEAR(n.fix.alt, 25.63, 1e-12);

    /* Trimble, one system, 7 decimals of minutes. */
    CHECK_INT(decode("$GPGNS,224749.00,3333.4268304,N,11153.3538273,W,D,19,0.6,406.110,-26.294,"
                     "6.0,0138,S*6A",
                     &n),
              GR_OK);
    CHECK(n.fix.valid);
    CHECK_NEAR(n.fix.lat, 33.0 + 33.4268304 / 60, 1e-13);
    CHECK_NEAR(n.fix.lon, -(111.0 + 53.3538273 / 60), 1e-13);
    CHECK_NEAR(n.fix.alt, 406.11, 1e-12);

    /* No system has a fix: invalid, nothing else. One system with a fix is enough. */
    CHECK_INT(decode("$GNGNS,235959.00,,,,,NNNN,00,99.99,,,,,V*28", &n), GR_OK);
    CHECK(!n.fix.valid);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_VALIDITY);
    CHECK_INT(n.fix.fields, GR_FIX_HDOP | GR_FIX_SATS);
    CHECK_INT(decode("$GNGNS,120000.00,4807.038,N,01131.000,E,NA,05,1.5,100.0,47.0,,*55", &n),
              GR_OK);
    CHECK(n.fix.valid);

    /* The mode is required and is letters; a fix needs its position. */
    CHECK_INT(decode("$GNGNS,120000.00,4807.038,N,01131.000,E,,05,1.5,100.0,47.0,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GNGNS,120000.00,4807.038,N,01131.000,E,Aa,05,1.5,100.0,47.0,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GNGNS,120000.00,,,,,AN,05,1.5,100.0,47.0,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GNGNS,120000.00,4807.038,N,01131.000,E,AN,05,1.5", &n), GR_MALFORMED);
}

static void test_zda(void)
{
    struct gr_sentence n;

    CHECK_INT(decode("$GPZDA,201530.00,04,07,2002,00,00*60", &n), GR_OK);
    CHECK_INT(n.type, GR_SENT_ZDA);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_DATE);
    CHECK_INT(n.time_of_day_ms, (20 * 3600 + 15 * 60 + 30) * 1000);
    CHECK_INT(n.year, 2002); /* four digits: no pivot */
    CHECK_INT(n.month, 7);
    CHECK_INT(n.day, 4);
    CHECK_INT(n.fix.fields, 0);

    /* A receiver without time yet sends it all empty. */
    CHECK_INT(decode("$GPZDA,,,,,,*48", &n), GR_OK);
    CHECK_INT(n.has, 0);
    CHECK_INT(decode("$GPZDA,201530.00,,,,,", &n), GR_OK);
    CHECK_INT(n.has, GR_HAS_TIME);

    /* A date is all three fields or none; two-digit years are not ZDA's. */
    CHECK_INT(decode("$GPZDA,201530.00,04,,2002,00,00", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPZDA,201530.00,04,07,02,00,00", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPZDA,201530.00,32,07,2002,00,00", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPZDA,201530.00,04,13,2002,00,00", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPZDA,201530.00,4,7,2002,00,00", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPZDA,201530.00,04,07,2O02,00,00", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPZDA,201530.00,04,07", &n), GR_MALFORMED);
}

static void check_id(const char *line, enum gr_sentence_type type, const char *id, size_t at)
{
    struct gr_sentence n;
    enum gr_reason r;
    char *copy = decode_keep(line, &n, &r);

    CHECK_INT(r, GR_OK);
    CHECK_INT(n.type, type);
    CHECK_INT(n.has, 0); /* identity only */
    CHECK_INT(n.fix.fields, 0);
    CHECK_STR(n.talker, "");
    CHECK(n.id == copy + at); /* points into the input */
    CHECK_INT(n.id_len, strlen(id));
    CHECK(n.id != NULL && memcmp(n.id, id, strlen(id)) == 0);
    free(copy);
}

static void test_identity(void)
{
    struct gr_sentence n;

    /* Sierra Wireless AirLink: the id exactly as sent, "0x" included. */
    check_id("$DEVID,0x0123456789ABCDEF*38", GR_SENT_DEVID, "0x0123456789ABCDEF", 7);
    check_id("$DEVID, 0x00A0c6ffee01 *1B", GR_SENT_DEVID, "0x00A0c6ffee01", 8);
    check_id("$DEVID,0x1", GR_SENT_DEVID, "0x1", 7);
    CHECK_INT(decode("$DEVID,0x0123456789ABCDEF*39", &n), GR_BAD_CHECKSUM);
    CHECK_INT(decode("$DEVID,0123456789ABCDEF", &n), GR_MALFORMED);
    CHECK_INT(decode("$DEVID,0x", &n), GR_MALFORMED);
    CHECK_INT(decode("$DEVID,0x12G4", &n), GR_MALFORMED);
    CHECK_INT(decode("$DEVID,0x0123456789ABCDEF0", &n), GR_MALFORMED); /* 17 digits */
    CHECK_INT(decode("$DEVID,", &n), GR_MALFORMED);
    CHECK_INT(decode("$DEVID", &n), GR_MALFORMED);

    /* Cradlepoint: the first field, trimmed. */
    check_id("$PCPTI,IBR900-7e2,120000,120000*5F", GR_SENT_PCPTI, "IBR900-7e2", 7);
    check_id("$PCPTI,  AMB 12  ,*33", GR_SENT_PCPTI, "AMB 12", 9);
    check_id("$PCPTI,AMB-12", GR_SENT_PCPTI, "AMB-12", 7);
    CHECK_INT(decode("$PCPTI,,120000", &n), GR_MALFORMED);
    CHECK_INT(decode("$PCPTI,   ,120000", &n), GR_MALFORMED);

    /* Not these: talker-prefixed look-alikes and other proprietary sentences. */
    CHECK_INT(decode("$GPCPTI,AMB-12", &n), GR_MALFORMED); /* six characters, not 'P' */
    CHECK_INT(decode("$PCPTX,AMB-12", &n), GR_UNSUPPORTED);
    CHECK_INT(decode("$DEVIX,0x12", &n), GR_UNSUPPORTED);
}

static void test_all_talkers(void)
{
    static const char *const talkers[] = {"GP", "GN", "GL", "GA", "GB", "BD", "GI", "GQ", "QZ"};
    static const char *const bodies[] = {
        "RMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W",
        "GGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        "GLL,4807.038,N,01131.000,E,123519,A,A",
        "GNS,123519,4807.038,N,01131.000,E,AA,08,0.9,545.4,46.9,,",
        "VTG,084.4,T,,M,022.4,N,041.5,K,A",
        "ZDA,123519,23,03,1994,00,00",
    };
    static const enum gr_sentence_type types[] = {GR_SENT_RMC, GR_SENT_GGA, GR_SENT_GLL,
                                                  GR_SENT_GNS, GR_SENT_VTG, GR_SENT_ZDA};
    struct gr_sentence n;
    char body[128], line[140];

    for (size_t t = 0; t < sizeof(talkers) / sizeof(talkers[0]); t++) {
        for (size_t b = 0; b < sizeof(bodies) / sizeof(bodies[0]); b++) {
            snprintf(body, sizeof(body), "$%s%s", talkers[t], bodies[b]);
            CHECK_INT(decode(with_checksum(body, line, sizeof(line)), &n), GR_OK);
            CHECK_INT(n.type, types[b]);
            CHECK_STR(n.talker, talkers[t]);
            CHECK(n.checksum_seen);
            if (types[b] == GR_SENT_VTG) {
                CHECK_NEAR(n.fix.speed, 22.4 * KN, 1e-12);
                CHECK_INT(n.has, GR_HAS_VALIDITY);
            } else {
                CHECK_INT(n.time_of_day_ms, 45319000);
            }
            if (types[b] != GR_SENT_VTG && types[b] != GR_SENT_ZDA) {
                CHECK_NEAR(n.fix.lat, 48.1173, 1e-12);
                CHECK(n.fix.valid);
            }
        }
    }
    /* Talkers are two letters. */
    CHECK_INT(decode("$G1GGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", &n),
              GR_UNSUPPORTED);
    CHECK_INT(decode("$GPGGAX,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", &n),
              GR_MALFORMED);
}

static void test_proprietary(void)
{
    struct gr_sentence n;

    /* Proprietary addresses vary in length; none is decoded, none is malformed for it. */
    CHECK_INT(decode("$PUBX,00,081350.00,4717.113210,N,00833.915187,E,546.589,G3,2.1,2.0,0.007,"
                     "77.52,0.007,,0.92,1.19,0.77,9,0,0*5F",
                     &n),
              GR_UNSUPPORTED);
    CHECK_INT(decode("$PSRF103,00,01,00,01*25", &n), GR_UNSUPPORTED);
    CHECK_INT(decode("$PMTK001,604,3*32", &n), GR_UNSUPPORTED);
    CHECK_INT(decode("$PAB,1", &n), GR_MALFORMED);
    CHECK_INT(decode("$PABCDEFGHIJ,1", &n), GR_MALFORMED);
}

static void test_unsupported(void)
{
    struct gr_sentence n;

    CHECK_INT(decode("$GPGSV,3,1,11,08,75,303,44*41", &n), GR_UNSUPPORTED);
    /* Proprietary, even when the last three letters spell a type we decode. */
    CHECK_INT(decode("$PGRME,15.0,M,45.0,M,25.0,M*1C", &n), GR_UNSUPPORTED);
    CHECK_INT(decode("$PXRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W", &n),
              GR_UNSUPPORTED);
    /* Corruption wins over type: a bad checksum is counted as such. */
    CHECK_INT(decode("$GPGSV,3,1,11,08,75,303,44*40", &n), GR_BAD_CHECKSUM);
}

static void test_malformed(void)
{
    struct gr_sentence n;

    CHECK_INT(decode("", &n), GR_MALFORMED);
    CHECK_INT(decode("$", &n), GR_MALFORMED);
    CHECK_INT(decode("hello world", &n), GR_MALFORMED);
    CHECK_INT(decode("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$gprmc,123519,a,4807.038,n,01131.000,e,022.4,084.4,230394,003.1,w*4a", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GP,RMC,123519", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC*4B", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1\x01,W", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,3\xb0,", &n),
              GR_MALFORMED);
    /* Truncated: fields missing, or the last one cut short. */
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,2303", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,1235", &n), GR_MALFORMED);
    /* Field contents. */
    CHECK_INT(decode("$GPRMC,123519,X,4807.038,N,01131.000,E,022.4,084.4,230394,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,48x7.038,N,01131.000,E,022.4,084.4,230394,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,Q,01131.000,E,022.4,084.4,230394,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,W W,022.4,084.4,230394,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,22.4.1,084.4,230394,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,-2.4,084.4,230394,,", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,.,084.4,230394,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394123456789012345678"
                     "90123,,",
                     &n),
              GR_MALFORMED);
    CHECK_INT(
        decode("$GPRMC,123519,A,4807.038,N,0113100000000000000.000,E,022.4,084.4,230394,,", &n),
        GR_MALFORMED);
}

static void test_ranges(void)
{
    struct gr_sentence n;

    /* Minutes must be below 60, degrees within +-90 / +-180. */
    CHECK_INT(decode("$GPRMC,123519,A,4860.000,N,01131.000,E,022.4,084.4,230394,003.1,W*60", &n),
              GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01160,E,022.4,084.4,230394,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4859.9999999,N,01131.000,E,,,230394,,", &n), GR_OK);
    CHECK_NEAR(n.fix.lat, 48.0 + 59.9999999 / 60, 1e-12);
    CHECK_INT(decode("$GPRMC,123519,A,9000.000,S,18000.000,W,,,230394,,", &n), GR_OK);
    CHECK_NEAR(n.fix.lat, -90.0, 0.0);
    CHECK_NEAR(n.fix.lon, -180.0, 0.0);
    CHECK_INT(decode("$GPRMC,123519,A,9000.001,N,01131.000,E,,,230394,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,9100.000,N,01131.000,E,,,230394,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,18000.001,E,,,230394,,", &n), GR_MALFORMED);

    /* Time: hour < 24, minute < 60, second <= 60 (a leap second). */
    CHECK_INT(decode("$GPRMC,235960.999,V,,,,,,,,,", &n), GR_OK);
    CHECK_INT(n.time_of_day_ms, 86400999);
    CHECK_INT(decode("$GPRMC,240000,V,,,,,,,,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,126000,V,,,,,,,,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123561,V,,,,,,,,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,123519.,V,,,,,,,,,", &n), GR_OK);
    CHECK_INT(decode("$GPRMC,123519.1234,V,,,,,,,,,", &n), GR_OK);
    CHECK_INT(n.time_of_day_ms, 45319123);
    CHECK_INT(decode("$GPRMC,123519:00,V,,,,,,,,,", &n), GR_MALFORMED);

    /* Date: day 1-31, month 1-12; two-digit years pivot at 80 (gpsd). */
    CHECK_INT(decode("$GPRMC,,V,,,,,,,010180,,", &n), GR_OK);
    CHECK_INT(n.year, 1980);
    CHECK_INT(decode("$GPRMC,,V,,,,,,,311279,,", &n), GR_OK);
    CHECK_INT(n.year, 2079);
    CHECK_INT(n.month, 12);
    CHECK_INT(n.day, 31);
    CHECK_INT(decode("$GPRMC,,V,,,,,,,000126,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,,V,,,,,,,320126,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,,V,,,,,,,011326,,", &n), GR_MALFORMED);
    CHECK_INT(decode("$GPRMC,,V,,,,,,,010026,,", &n), GR_MALFORMED);
}

static void test_mode_indicator(void)
{
    struct gr_sentence n;

    /* NMEA 2.3 mode N: the receiver has no fix even if status says A. */
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W,N", &n),
              GR_OK);
    CHECK(!n.fix.valid);
    CHECK_NEAR(n.fix.lat, 48.1173, 1e-12);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W,D", &n),
              GR_OK);
    CHECK(n.fix.valid);
    /* Magnetic variation left out altogether; extra vendor fields past the standard ones. */
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394", &n), GR_OK);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,,,A,V,,,,,,,,,,,"
                     "x,y,z",
                     &n),
              GR_OK);
    CHECK(n.fix.valid);
}

/* Lines copied from /work/shared/testdata/gpsd/ (gpsd regression captures, BSD-2-Clause). */
static void test_real_captures(void)
{
    struct gr_sentence n;

    /* nmea-fuzzy-cases.log: Trimble RTK, 8 decimals of minutes, talker GP, mode D. */
    CHECK_INT(decode("$GPRMC,132820.60,A,4134.49821229,N,09345.03351845,W,3.252,92.308,180320,"
                     "11.5985,E,D*1A",
                     &n),
              GR_OK);
    CHECK(n.fix.valid);
    CHECK_NEAR(n.fix.lat, 41.574970204833335, 1e-13); /* 41 + 34.49821229 / 60 */
    CHECK_NEAR(n.fix.lon, -93.75055864083333, 1e-13); /* -(93 + 45.03351845 / 60) */
    CHECK_NEAR(n.fix.speed, 3.252 * KN, 1e-12);
    CHECK_NEAR(n.fix.course, 92.308, 1e-12);
    CHECK_INT(n.time_of_day_ms, (13 * 3600 + 28 * 60 + 20) * 1000 + 600);
    CHECK_INT(n.year, 2020);
    CHECK_INT(n.month, 3);
    CHECK_INT(n.day, 18);

    /* quectel.log: southern hemisphere, NMEA 4.1 with nav status V. */
    CHECK_INT(decode("$GPRMC,022021.00,A,3644.759368,S,17444.072860,E,0.0,301.9,071020,18.3,E,A,"
                     "V*6E",
                     &n),
              GR_OK);
    CHECK(n.fix.valid);
    CHECK_NEAR(n.fix.lat, -36.745989466666664, 1e-13);
    CHECK_NEAR(n.fix.lon, 174.73454766666666, 1e-13);
    CHECK_INT(n.year, 2020);

    /* sirfstarv-nmea.log: GN talker, millisecond time. */
    CHECK_INT(decode("$GNRMC,020935.000,A,4404.1351,N,12118.8556,W,0.04,359.11,050219,,,A*6C", &n),
              GR_OK);
    CHECK_NEAR(n.fix.lat, 44.068918333333336, 1e-13);
    CHECK_NEAR(n.fix.lon, -121.31426, 1e-13);
    CHECK_NEAR(n.fix.course, 359.11, 1e-12);
    CHECK_INT(n.time_of_day_ms, (2 * 3600 + 9 * 60 + 35) * 1000);

    /* triton400.log: NMEA 2.0, no mode field. */
    CHECK_INT(decode("$GPRMC,030129.0,A,2638.1726,N,08011.3892,W,0.00,219.6,010413,,*26", &n),
              GR_OK);
    CHECK_NEAR(n.fix.lat, 26.0 + 38.1726 / 60, 1e-12);
    CHECK_NEAR(n.fix.lon, -(80.0 + 11.3892 / 60), 1e-12);
    CHECK_INT(n.year, 2013);
    CHECK_INT(n.month, 4);
    CHECK_INT(n.day, 1);

    /* ublox-zed-f9p-nmea.log: empty course. */
    CHECK_INT(decode("$GNRMC,003956.00,A,4552.65403,S,17030.00668,E,0.025,,120419,,,A,V*07", &n),
              GR_OK);
    CHECK_INT(n.fix.fields, GR_FIX_SPEED);
    CHECK_NEAR(n.fix.lat, -(45.0 + 52.65403 / 60), 1e-12);

    /* quectel.log: GGA and VTG of one cycle; after losing the fix, empty time and all. */
    CHECK_INT(
        decode("$GPGGA,022021.00,3644.759368,S,17444.072860,E,1,07,1.1,56.1,M,37.0,M,,*49", &n),
        GR_OK);
    CHECK(n.fix.valid);
    CHECK_NEAR(n.fix.lat, -36.745989466666664, 1e-13);
    CHECK_NEAR(n.fix.alt, 56.1, 1e-12);
    CHECK_INT(n.fix.sats, 7);
    CHECK_NEAR(n.fix.hdop, 1.1, 1e-12);
    CHECK_INT(decode("$GPVTG,301.9,T,283.6,M,0.0,N,0.0,K,A*27", &n), GR_OK);
    CHECK_NEAR(n.fix.course, 301.9, 1e-12);
    CHECK_NEAR(n.fix.speed, 0.0, 0.0);
    CHECK_INT(n.fix.fields, GR_FIX_SPEED | GR_FIX_COURSE);
    CHECK(n.fix.valid);
    CHECK_INT(decode("$GPVTG,,T,341.7,M,0.0,N,0.0,K,A*0C", &n), GR_OK);
    CHECK_INT(n.fix.fields, GR_FIX_SPEED);
    CHECK_INT(decode("$GPVTG,,T,,M,,N,,K,N*2C", &n), GR_OK);
    CHECK_INT(n.has, GR_HAS_VALIDITY);
    CHECK(!n.fix.valid);
    CHECK_INT(decode("$GPGGA,,,,,,0,,,,,,,,*66", &n), GR_OK);
    CHECK_INT(n.has, GR_HAS_VALIDITY);
    CHECK(!n.fix.valid);
    CHECK_INT(n.fix.fields, 0);
    CHECK_INT(decode("$GPRMC,,V,,,,,,,,,,N*53", &n), GR_OK);
    CHECK_INT(n.has, GR_HAS_VALIDITY);
    CHECK(!n.fix.valid);

    /* nmea-fuzzy-cases.log: Trimble RTK fixed (quality 4), GN talker. */
    CHECK_INT(decode("$GNGGA,133900.00,4134.50180323,N,09345.03586581,W,4,19,0.7,280.827,M,"
                     "-31.442,M,6.0,0002*61",
                     &n),
              GR_OK);
    CHECK(n.fix.valid);
    CHECK_NEAR(n.fix.lat, 41.0 + 34.50180323 / 60, 1e-13);
    CHECK_NEAR(n.fix.lon, -(93.0 + 45.03586581 / 60), 1e-13);
    CHECK_NEAR(n.fix.alt, 280.827, 1e-12);
    CHECK_INT(n.fix.sats, 19);
    CHECK_INT(n.time_of_day_ms, (13 * 3600 + 39 * 60) * 1000);

    /* triton400.log: GLL with milliseconds; GGA with zero-padded altitude and geoid. */
    CHECK_INT(decode("$GPGLL,2638.1726,N,08011.3892,W,030129.000,A,A*47", &n), GR_OK);
    CHECK_INT(n.type, GR_SENT_GLL);
    CHECK(n.fix.valid);
    CHECK_NEAR(n.fix.lat, 26.0 + 38.1726 / 60, 1e-12);
    CHECK_NEAR(n.fix.lon, -(80.0 + 11.3892 / 60), 1e-12);
    CHECK_INT(n.time_of_day_ms, (3 * 3600 + 1 * 60 + 29) * 1000);
    CHECK_INT(decode("$GPGGA,030129.00,2638.1726,N,08011.3892,W,1,06,1.5,00016,M,-0028,M,,*50", &n),
              GR_OK);
    CHECK_NEAR(n.fix.alt, 16.0, 0.0);
    CHECK_INT(n.fix.sats, 6);
    /* The spliced line of that log: one sentence cut off by the next. */
    CHECK_INT(decode("$GPGGA,030130$GPGLL,2638.1728,N,08011.3893,W,030131.000,A,A*41", &n),
              GR_BAD_CHECKSUM);
    CHECK_INT(decode("$GPGGA,030130$GPGLL,2638.1728,N,08011.3893,W,030131.000,A,A", &n),
              GR_MALFORMED);

    /* sirfstarv-nmea.log: GLONASS talker GGA. */
    CHECK_INT(decode("$GLGGA,020935.000,4404.1351,N,12118.8556,W,1,02,0.9,1123.9,M,-19.6,M,,0000"
                     "*48",
                     &n),
              GR_OK);
    CHECK_STR(n.talker, "GL");
    CHECK_NEAR(n.fix.alt, 1123.9, 1e-12);
    CHECK_INT(n.fix.sats, 2);

    /* ublox-zed-f9p-nmea.log: VTG without course, GLL, ZDA. */
    CHECK_INT(decode("$GNVTG,,T,,M,0.025,N,0.045,K,A*3B", &n), GR_OK);
    CHECK_INT(n.fix.fields, GR_FIX_SPEED);
    CHECK_NEAR(n.fix.speed, 0.025 * KN, 1e-15); /* knots, not 0.045 km/h */
    CHECK_INT(decode("$GNGLL,4552.65403,S,17030.00668,E,003956.00,A,A*6C", &n), GR_OK);
    CHECK_NEAR(n.fix.lat, -(45.0 + 52.65403 / 60), 1e-12);
    CHECK_NEAR(n.fix.lon, 170.0 + 30.00668 / 60, 1e-12);
    CHECK_INT(decode("$GNZDA,003956.00,12,04,2019,00,00*7C", &n), GR_OK);
    CHECK_INT(n.has, GR_HAS_TIME | GR_HAS_DATE);
    CHECK_INT(n.year, 2019);
    CHECK_INT(n.month, 4);
    CHECK_INT(n.day, 12);
    CHECK_INT(n.time_of_day_ms, (39 * 60 + 56) * 1000);
    CHECK_INT(decode("$GNGST,003956.00,235111,,,,2.3,3.5,4.0*46", &n), GR_UNSUPPORTED);

    /* magellan-ec10.log: no fix yet, lower-case checksum. */
    CHECK_INT(decode("$GPRMC,205150.00,V,,,,,,,,,,,V*4a", &n), GR_OK);
    CHECK(n.checksum_seen);
    CHECK(!n.fix.valid);
    CHECK_INT(n.time_of_day_ms, (20 * 3600 + 51 * 60 + 50) * 1000);
    CHECK_INT(n.year, 0);
}

/*
 * Values outside fix.h's bounds are refused as bad_value, never handed on: 18 nines parse
 * as a number (DECIMAL_DIGITS_MAX), and were published as speed, course or alt "0".
 */
static void test_bad_values(void)
{
    struct gr_sentence n;

    CHECK_INT(
        decode("$GPRMC,123519,A,4807.038,N,01131.000,E,999999999999999999,084.4,230394,,", &n),
        GR_BAD_VALUE);
    CHECK_INT(
        decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,999999999999999999,230394,,", &n),
        GR_BAD_VALUE);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,999999999999999999,M,,,,", &n),
              GR_BAD_VALUE);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,-999999999999999999,M,,,,", &n),
              GR_BAD_VALUE);
    CHECK_INT(
        decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,999999999999999999,545.4,M,,,,", &n),
        GR_BAD_VALUE);
    CHECK_INT(decode("$GNGNS,120000.00,4807.038,N,01131.000,E,AN,05,1.5,999999999999999999", &n),
              GR_BAD_VALUE);
    CHECK_INT(decode("$GPVTG,999999999999999999,T,,M,0.0,N,0.0,K,A", &n), GR_BAD_VALUE);
    CHECK_INT(decode("$GPVTG,054.7,T,034.4,M,999999999999999999,N,,K,A", &n), GR_BAD_VALUE);
    CHECK_INT(decode("$GPVTG,054.7,T,034.4,M,,N,999999999999999999,K,A", &n), GR_BAD_VALUE);

    /* Each bound, just inside and just outside. */
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,1000.0,084.4,230394,,", &n), GR_OK);
    CHECK_NEAR(n.fix.speed, 1000 * KN, 1e-9); /* 1000 knots: the COCOM limit */
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,1001.1,084.4,230394,,", &n),
              GR_BAD_VALUE);
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,0.0,360.0,230394,,", &n), GR_OK);
    CHECK_NEAR(n.fix.course, 360.0, 0); /* as sent: 359.97 rounded to one decimal */
    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,0.0,360.1,230394,,", &n),
              GR_BAD_VALUE);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,-1000.0,M,,,,", &n), GR_OK);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,-1000.1,M,,,,", &n),
              GR_BAD_VALUE);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,100000.0,M,,,,", &n), GR_OK);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,100000.1,M,,,,", &n),
              GR_BAD_VALUE);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,0,00,99.99,,M,,,,", &n), GR_OK);
    CHECK_NEAR(n.fix.hdop, 99.99, 0); /* what receivers without a fix send */
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,08,100.0,545.4,M,,,,", &n),
              GR_BAD_VALUE);
    CHECK_INT(decode("$GPGGA,123519,4807.038,N,01131.000,E,1,255,0.9,545.4,M,,,,", &n), GR_OK);
    CHECK_INT(n.fix.sats, 255);
    CHECK_INT(
        decode("$GPGGA,123519,4807.038,N,01131.000,E,1,999999999999999999,0.9,545.4,M,,,,", &n),
        GR_BAD_VALUE);
    CHECK_INT(gr_fix_check_values(&(struct gr_fix){.fields = GR_FIX_SPEED, .speed = 0.0 / 0.0}),
              GR_BAD_VALUE); /* a NaN lies within no bound */
    CHECK_STR(gr_reason_label(GR_BAD_VALUE), "bad_value");
}

/* A day its month does not have is refused as bad_date, not moved into the next month. */
static void test_bad_dates(void)
{
    struct gr_sentence n;

    CHECK_INT(decode("$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,310226,,", &n),
              GR_BAD_DATE); /* 31 February 2026, which became 3 March */
    CHECK_INT(decode("$GPRMC,,V,,,,,,,300226,,", &n), GR_BAD_DATE);
    CHECK_INT(decode("$GPRMC,,V,,,,,,,290226,,", &n), GR_BAD_DATE); /* 2026 is no leap year */
    CHECK_INT(decode("$GPRMC,,V,,,,,,,290224,,", &n), GR_OK);
    CHECK_INT(n.day, 29);
    CHECK_INT(decode("$GPRMC,,V,,,,,,,310426,,", &n), GR_BAD_DATE); /* April has 30 */
    CHECK_INT(decode("$GPRMC,,V,,,,,,,300426,,", &n), GR_OK);
    CHECK_INT(decode("$GPZDA,201530.00,31,02,2026,00,00", &n), GR_BAD_DATE);
    CHECK_INT(decode("$GPZDA,201530.00,29,02,1900,00,00", &n), GR_BAD_DATE);
    CHECK_INT(decode("$GPZDA,201530.00,29,02,2000,00,00", &n), GR_OK);
    CHECK_STR(gr_reason_label(GR_BAD_DATE), "bad_date");
}

/* A $PCPTI id that cannot be remembered (over GR_DEVICE_ID_MAX) is counted as bad_device_id. */
static void test_pcpti_id_too_long(void)
{
    struct gr_sentence n;
    char s[128] = "$PCPTI,";
    size_t len = strlen(s);

    memset(s + len, 'A', GR_DEVICE_ID_MAX);
    strcpy(s + len + GR_DEVICE_ID_MAX, ",120000");
    CHECK_INT(decode(s, &n), GR_OK);
    CHECK_INT(n.id_len, GR_DEVICE_ID_MAX);
    memset(s + len, 'A', GR_DEVICE_ID_MAX + 1);
    strcpy(s + len + GR_DEVICE_ID_MAX + 1, ",120000");
    CHECK_INT(decode(s, &n), GR_BAD_ID);
}

static void test_reason_labels(void)
{
    CHECK_STR(gr_reason_label(GR_OK), "ok");
    CHECK_STR(gr_reason_label(GR_BAD_CHECKSUM), "bad_checksum");
    CHECK_STR(gr_reason_label(GR_UNSUPPORTED), "unsupported_sentence");
    CHECK_STR(gr_reason_label(GR_DUPLICATE), "duplicate");
    CHECK_STR(gr_reason_label(GR_REASON_COUNT), "unknown");
}

int main(void)
{
    test_rmc_values();
    test_checksum();
    test_empty_fields();
    test_hemispheres();
    test_high_precision();
    test_talkers();
    test_gga();
    test_gll();
    test_vtg();
    test_gns();
    test_zda();
    test_identity();
    test_all_talkers();
    test_proprietary();
    test_unsupported();
    test_malformed();
    test_ranges();
    test_mode_indicator();
    test_real_captures();
    test_bad_values();
    test_bad_dates();
    test_pcpti_id_too_long();
    test_reason_labels();
    return check_result("test_nmea");
}
