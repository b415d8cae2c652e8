/*
 * test_assemble.c - the per-device assembler: merging the sentences of one time into one
 * fix, completion and flush, the three sources of a date, GPS week rollover, validity, and
 * the device's habit (which sentence types make its fix whole, so it goes out at once).
 */
#include <stdlib.h>

#include "check.h"
#include "gpsrelay/assemble.h"
#include "gpsrelay/calendar.h"
#include "gpsrelay/nmea.h"

/* 1852/3600: knots to m/s. */
#define KN     0.51444444444444444
#define DAY    (86400LL * 1000)
#define HOUR   (3600LL * 1000)
#define MINUTE (60LL * 1000)
#define SECOND 1000LL

/* UTC milliseconds of a date and time of day. */
static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    return gr_days_from_civil(y, mo, d) * DAY + h * HOUR + mi * MINUTE + s * SECOND;
}

/* Decodes line (which must decode) and adds it; returns gr_assemble_add's result. */
static bool add(struct gr_assembler *a, const char *line, int64_t now_ms, struct gr_fix *out)
{
    struct gr_sentence s;
    size_t len = strlen(line);
    char *copy = malloc(len); /* exact size, no NUL: AddressSanitizer sees any overread */
    memcpy(copy, line, len);
    enum gr_reason r = gr_nmea_decode(copy, len, &s);
    CHECK_INT(r, GR_OK);
    bool done = r == GR_OK && gr_assemble_add(a, &s, now_ms, out);
    free(copy);
    return done;
}

/* Quectel's cycle: GGA, VTG, RMC with one time; the fix comes out whole on flush. */
static void test_merge_one_time(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2020, 10, 7, 2, 20, 22);

    /* The RMC's position has one digit more than the GGA's: the later one wins. */
    CHECK(
        !add(&a, "$GPGGA,022021.00,3644.75937,S,17444.07286,E,1,07,1.1,56.1,M,37.0,M,,", now, &f));
    CHECK(!add(&a, "$GPVTG,301.9,T,283.6,M,1.5,N,2.8,K,A", now, &f));
    CHECK(!add(&a, "$GPRMC,022021.00,A,3644.759368,S,17444.072860,E,1.6,300.1,071020,18.3,E,A,V",
               now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2020, 10, 7, 2, 20, 21));
    CHECK_NEAR(f.lat, -(36.0 + 44.759368 / 60), 1e-13);
    CHECK_NEAR(f.lon, 174.0 + 44.072860 / 60, 1e-13);
    CHECK_INT(f.fields, GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
    CHECK_NEAR(f.speed, 1.6 * KN, 1e-12); /* RMC after VTG: later wins */
    CHECK_NEAR(f.course, 300.1, 1e-12);
    CHECK_NEAR(f.alt, 56.1, 1e-12);
    CHECK_NEAR(f.hdop, 1.1, 1e-12);
    CHECK_INT(f.sats, 7);
    CHECK(f.valid);
    CHECK_INT(f.src, GR_SRC_NMEA);
    CHECK(f.attrs == NULL);

    /* Nothing is left: a second flush gives nothing. */
    CHECK(!gr_assemble_flush(&a, now, &f));
    CHECK_INT(a.pending_has, 0);

    /* Sierra order: GGA then VTG (no date): speed and course from the VTG. */
    CHECK(!add(&a, "$GPGGA,182000,4042.7680,N,07400.3600,W,1,09,0.9,10.2,M,-34.2,M,,", now, &f));
    CHECK(!add(&a, "$GPVTG,271.5,T,,M,10.0,N,18.5,K,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_NEAR(f.lat, 40.71280, 1e-12);
    CHECK_NEAR(f.lon, -74.006, 1e-12);
    CHECK_NEAR(f.speed, 10.0 * KN, 1e-12);
    CHECK_NEAR(f.course, 271.5, 1e-12);
    CHECK_NEAR(f.alt, 10.2, 1e-12);
    CHECK_INT(f.sats, 9);
    CHECK(f.valid);

    /* ZDA after the position sentences gives the date (u-blox order). */
    CHECK(!add(&a, "$GNGLL,4552.65403,S,17030.00668,E,003956.00,A,A", now, &f));
    CHECK(!add(&a, "$GNZDA,003956.00,12,04,2019,00,00", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2019, 4, 12, 0, 39, 56));
    CHECK_INT(f.fields, 0);
    CHECK(f.valid);
}

static void test_complete_on_time_change(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2019, 2, 5, 2, 9, 40);

    CHECK(!add(&a, "$GPGGA,020935.000,4404.1351,N,12118.8556,W,1,08,0.9,1123.9,M,-19.6,M,,0000",
               now, &f));
    CHECK(!add(&a, "$GNRMC,020935.000,A,4404.1351,N,12118.8556,W,0.04,359.11,050219,,,A", now, &f));
    /* The next second's GGA completes the first fix and starts the next. */
    memset(&f, 0, sizeof(f));
    CHECK(add(&a, "$GPGGA,020936.000,4404.1351,N,12118.8557,W,1,09,0.8,1123.8,M,-19.6,M,,0000", now,
              &f));
    CHECK_INT(f.time_ms, utc(2019, 2, 5, 2, 9, 35));
    CHECK_NEAR(f.lon, -(121.0 + 18.8556 / 60), 1e-12);
    CHECK_NEAR(f.speed, 0.04 * KN, 1e-12);
    CHECK_NEAR(f.alt, 1123.9, 1e-12);
    CHECK_INT(f.sats, 8);
    CHECK_INT(f.fields, GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
    CHECK(f.valid);
    /* Nothing of the first fix leaks into the second: no speed without its RMC. */
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2019, 2, 5, 2, 9, 36)); /* date: the RMC before */
    CHECK_NEAR(f.lon, -(121.0 + 18.8557 / 60), 1e-12);
    CHECK_INT(f.fields, GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
    CHECK_INT(f.sats, 9);

    /* Fractions of a second are different times. */
    CHECK(!add(&a, "$GPGGA,132820.60,4134.49821229,N,09345.03351845,W,2,09,1.0,278.0,M,,M,,", now,
               &f));
    CHECK(add(&a, "$GPGGA,132820.70,4134.49822493,N,09345.03347183,W,2,09,1.0,278.0,M,,M,,", now,
              &f));
    CHECK_INT(f.time_ms % DAY, 13 * HOUR + 28 * MINUTE + 20 * SECOND + 600);
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms % DAY, 13 * HOUR + 28 * MINUTE + 20 * SECOND + 700);

    /* The same time on another date is another fix (a device silent for a day). */
    CHECK(!add(&a, "$GPRMC,120000,A,4807.038,N,01131.000,E,,,230394,,", now, &f));
    CHECK(add(&a, "$GPRMC,120000,A,4807.038,N,01131.000,E,,,240394,,", now, &f));
    CHECK_INT(f.time_ms, utc(1994, 3, 23, 12, 0, 0));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(1994, 3, 24, 12, 0, 0));
}

static void test_no_position(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2005, 6, 9, 20, 52, 0);

    /* Nothing pending. */
    CHECK(!gr_assemble_flush(&a, now, &f));

    /* Magellan before its first fix: RMC V without a position is never handed out, not on
     * a time change and not on a flush; it still gives the device a date. */
    CHECK(!add(&a, "$GPRMC,205150.00,V,,,,,,,,,,,V", now, &f));
    CHECK(!add(&a, "$GPRMC,205152.00,V,,,,,,,,,,,V", now, &f));
    CHECK(!gr_assemble_flush(&a, now, &f));
    CHECK(!a.have_date);
    CHECK(!add(&a, "$GPRMC,205152.00,V,,,,,,,090605,,,V", now, &f));
    CHECK(!gr_assemble_flush(&a, now, &f));
    CHECK(a.have_date);
    CHECK_INT(a.date_day, gr_days_from_civil(2005, 6, 9));

    /* A time-only ZDA is not a fix either. */
    CHECK(!add(&a, "$GPZDA,205153.00,09,06,2005,00,00", now, &f));
    CHECK(!gr_assemble_flush(&a, now, &f));
}

static void test_vtg_alone(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);

    /* Nothing to merge into: dropped, and it leaves no trace. */
    CHECK(!add(&a, "$GPVTG,271.5,T,,M,10.0,N,18.5,K,A", now, &f));
    CHECK_INT(a.pending_has, 0);
    CHECK_INT(a.pending.fields, 0);
    CHECK(!gr_assemble_flush(&a, now, &f));
    /* So the next fix has no speed from it. */
    CHECK(!add(&a, "$GPGGA,182000,4042.7680,N,07400.3600,W,1,09,0.9,10.2,M,-34.2,M,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.fields, GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
    /* After a flush, a VTG has nothing to join. */
    CHECK(!add(&a, "$GPVTG,271.5,T,,M,10.0,N,18.5,K,A", now, &f));
    CHECK(!gr_assemble_flush(&a, now, &f));
}

static void test_date_from_last_rmc(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    /* A receive time days away: the device's own date wins over it. */
    int64_t now = utc(2026, 11, 28, 12, 0, 0);

    CHECK(!add(&a, "$GPRMC,235959,A,4807.038,N,01131.000,E,,,231126,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 23, 59, 59));
    CHECK(a.have_date);
    CHECK_INT(a.date_day, gr_days_from_civil(2026, 11, 23));
    CHECK_INT(a.date_tod_ms, 86399000);

    /* GGA before midnight: the same day; past midnight: the next. */
    CHECK(!add(&a, "$GPGGA,235959.5,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,", now, &f));
    CHECK(add(&a, "$GPGGA,000001,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,", now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 23, 59, 59) + 500);
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 24, 0, 0, 1));

    /* Carried on: noon of that next day, and the midnight after it. */
    CHECK(!add(&a, "$GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 24, 12, 0, 0));
    CHECK(!add(&a, "$GPGGA,235000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 24, 23, 50, 0));
    CHECK(!add(&a, "$GPGGA,001000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 25, 0, 10, 0));

    /* A new RMC date replaces it. A sentence a few seconds older than the date (a
     * reordered datagram) stays on the date's day; one from before midnight after a date
     * from just after it goes back a day. */
    CHECK(!add(&a, "$GPRMC,000002,A,4807.038,N,01131.000,E,,,011226,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 12, 1, 0, 0, 2));
    CHECK(!add(&a, "$GPGLL,4807.038,N,01131.000,E,000001,A,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 12, 1, 0, 0, 1));
    CHECK(!add(&a, "$GPGLL,4807.038,N,01131.000,E,235958,A,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 30, 23, 59, 58));

    /* ZDA dates count as well. */
    CHECK(!add(&a, "$GPZDA,101010,02,01,2027,00,00", now, &f));
    CHECK(!gr_assemble_flush(&a, now, &f));
    CHECK(!add(&a, "$GPGGA,101011,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2027, 1, 2, 10, 10, 11));
}

static void test_receive_date(void)
{
    struct gr_fix f;

    /* No date from the device: the day around the receive time nearest to it. */
    struct gr_assembler a = {0};
    CHECK(!add(&a, "$GPGGA,235958,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,", 0, &f));
    CHECK(gr_assemble_flush(&a, utc(2026, 11, 24, 0, 0, 1), &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 23, 59, 58)); /* yesterday */

    struct gr_assembler b = {0};
    CHECK(!add(&b, "$GPGGA,000001,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,", 0, &f));
    CHECK(gr_assemble_flush(&b, utc(2026, 11, 23, 23, 59, 59), &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 24, 0, 0, 1)); /* tomorrow */

    struct gr_assembler c = {0};
    CHECK(!add(&c, "$GPGGA,120000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,", 0, &f));
    CHECK(gr_assemble_flush(&c, utc(2026, 11, 23, 12, 0, 1), &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 12, 0, 0)); /* today */
    /* A receive date is not the device's. */
    CHECK(!c.have_date);

    /* The receive time of the completing call counts (the fix was received before it). */
    CHECK(!add(&c, "$GPGGA,235959,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,",
               utc(2026, 11, 23, 23, 59, 59), &f));
    CHECK(add(&c, "$GPGGA,000000,4807.038,N,01131.000,E,1,08,0.9,545.4,M,,M,,",
              utc(2026, 11, 24, 0, 0, 0), &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 23, 59, 59));
    CHECK(gr_assemble_flush(&c, utc(2026, 11, 24, 0, 0, 0) + 300, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 24, 0, 0, 0));

    /* Ten hours of clock difference still lands on the nearest day. */
    struct gr_assembler d = {0};
    CHECK(!add(&d, "$GPGLL,4807.038,N,01131.000,E,020000,A,A", 0, &f));
    CHECK(gr_assemble_flush(&d, utc(2026, 11, 23, 12, 0, 0), &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 2, 0, 0));
}

static void test_week_rollover(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);

    /* 2007-04-09 is exactly 1024 weeks before 2026-11-23. */
    CHECK_INT(gr_days_from_civil(2026, 11, 23) - gr_days_from_civil(2007, 4, 9), 1024 * 7);
    CHECK(!add(&a, "$GPRMC,182000,A,4042.768,N,07400.360,W,10.0,271.5,090407,,,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 0));
    CHECK_INT(f.time_ms - utc(2007, 4, 9, 18, 20, 0), GR_ROLLOVER_MS);

    /* Time-only sentences after it take the device's (early) date and get the same fix. */
    CHECK(!add(&a, "$GPGGA,182001,4042.7680,N,07400.3600,W,1,09,0.9,10.2,M,-34.2,M,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 1));

    /* Within a day either side of exactly 1024 weeks: delivered almost a day late... */
    CHECK(!add(&a, "$GPRMC,182002,A,4042.768,N,07400.360,W,10.0,271.5,080407,,,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 22, 18, 20, 2));
    /* ... but not a day and a second late. */
    CHECK(!add(&a, "$GPRMC,182000,A,4042.768,N,07400.360,W,10.0,271.5,080407,,,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2007, 4, 8, 18, 20, 0));
    /* ... and a clock running ahead. */
    CHECK(!add(&a, "$GPRMC,182002,A,4042.768,N,07400.360,W,10.0,271.5,090407,,,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 2));
    /* Two days off is not the rollover: left alone. */
    CHECK(!add(&a, "$GPRMC,182000,A,4042.768,N,07400.360,W,10.0,271.5,070407,,,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2007, 4, 7, 18, 20, 0));

    /* 1000 weeks back (2007-09-24) is an old date, not a rollover: left alone. */
    CHECK_INT(gr_days_from_civil(2026, 11, 23) - gr_days_from_civil(2007, 9, 24), 1000 * 7);
    CHECK(!add(&a, "$GPRMC,182000,A,4042.768,N,07400.360,W,10.0,271.5,240907,,,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2007, 9, 24, 18, 20, 0));

    /* A current date is left alone too. */
    CHECK(!add(&a, "$GPRMC,182000,A,4042.768,N,07400.360,W,10.0,271.5,231126,,,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 0));
}

static void test_validity(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);

    /* GGA quality 0 with a position: handed out, not valid. */
    CHECK(!add(&a, "$GPGGA,182000,4042.7680,N,07400.3600,W,0,00,,,M,,M,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK(!f.valid);
    CHECK_NEAR(f.lat, 40.7128, 1e-12);

    /* One "no fix" in the second is enough: RMC A with GGA quality 0. */
    CHECK(!add(&a, "$GPRMC,182001,A,4042.768,N,07400.360,W,10.0,271.5,231126,,,A", now, &f));
    CHECK(!add(&a, "$GPGGA,182001,4042.7680,N,07400.3600,W,0,00,,,M,,M,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK(!f.valid);

    /* A trailing VTG with mode N (Quectel losing its fix) withdraws it as well. */
    CHECK(!add(&a, "$GPGGA,182002,4042.7680,N,07400.3600,W,1,09,0.9,10.2,M,-34.2,M,,", now, &f));
    CHECK(!add(&a, "$GPVTG,,T,,M,,N,,K,N", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK(!f.valid);

    /* So do the time-less GGA and RMC Quectel sends without a fix; alone they are dropped. */
    CHECK(!add(&a, "$GPGGA,182003,4042.7680,N,07400.3600,W,1,09,0.9,10.2,M,-34.2,M,,", now, &f));
    CHECK(!add(&a, "$GPGGA,,,,,,0,,,,,,,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK(!f.valid);
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 3));
    CHECK(!add(&a, "$GPRMC,,V,,,,,,,,,,N", now, &f));
    CHECK(!gr_assemble_flush(&a, now, &f));

    /* RMC V with a position: not valid. RMC A, mode N: not valid. */
    CHECK(!add(&a, "$GPRMC,182004,V,4042.768,N,07400.360,W,,,231126,,,N", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK(!f.valid);
    CHECK(!add(&a, "$GPRMC,182005,A,4042.768,N,07400.360,W,,,231126,,,N", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK(!f.valid);

    /* GNS with every system "N", then one with a fix. */
    CHECK(!add(&a, "$GNGNS,182006,4042.768,N,07400.360,W,NN,00,,,,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK(!f.valid);
    CHECK(!add(&a, "$GNGNS,182007,4042.768,N,07400.360,W,AN,05,1.2,10.0,,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK(f.valid);

    /* A fix ends the withdrawal: each time stands alone. */
    CHECK(!add(&a, "$GPGGA,182008,4042.7680,N,07400.3600,W,1,09,0.9,10.2,M,-34.2,M,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK(f.valid);
}

static void test_identity_ignored(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);

    /* Alone: nothing happens. */
    CHECK(!add(&a, "$DEVID,0x0123456789ABCDEF", now, &f));
    CHECK(!add(&a, "$PCPTI,AMB-12,182000,182000", now, &f));
    CHECK_INT(a.pending_has, 0);
    CHECK(!gr_assemble_flush(&a, now, &f));

    /* Between the sentences of one fix: it neither completes nor changes it. */
    CHECK(!add(&a, "$GPGGA,182000,4042.7680,N,07400.3600,W,1,09,0.9,10.2,M,-34.2,M,,", now, &f));
    CHECK(!add(&a, "$DEVID,0x0123456789ABCDEF", now, &f));
    CHECK(!add(&a, "$PCPTI,AMB-12", now, &f));
    CHECK(!add(&a, "$GPRMC,182000,A,4042.768,N,07400.360,W,10.0,271.5,231126,,,A", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 0));
    CHECK(f.valid);
    CHECK_INT(f.fields, GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
}

/* TAIP sentences come from taip.c; built by hand here, as that decoder fills them. */
static void test_taip_source(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);
    struct gr_sentence s = {0};

    s.type = GR_SENT_TAIP_RPV;
    s.fix.src = GR_SRC_TAIP;
    s.has = GR_HAS_TIME | GR_HAS_POSITION | GR_HAS_VALIDITY;
    s.time_of_day_ms = (int)(18 * HOUR + 20 * MINUTE);
    s.fix.lat = 40.7128;
    s.fix.lon = -74.006;
    s.fix.valid = true;
    s.fix.speed = 5.0;
    s.fix.course = 90.0;
    s.fix.fields = GR_FIX_SPEED | GR_FIX_COURSE;
    CHECK(!gr_assemble_add(&a, &s, now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.src, GR_SRC_TAIP);
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 0)); /* receive date */
    CHECK_NEAR(f.speed, 5.0, 0.0);
    CHECK(f.valid);

    /* The next NMEA fix is NMEA again. */
    CHECK(!add(&a, "$GPGGA,182001,4042.7680,N,07400.3600,W,1,09,0.9,10.2,M,-34.2,M,,", now, &f));
    CHECK(gr_assemble_flush(&a, now, &f));
    CHECK_INT(f.src, GR_SRC_NMEA);
}

/* One device's sentences for the time hhmmss (a fix a second), as a modem sends them. */
#define RMC(t) "$GPRMC," t ".00,A,4042.7680,N,07400.3600,W,12.0,271.5,231126,,,A"
#define GGA(t) "$GPGGA," t ".00,4042.7680,N,07400.3600,W,1,09,0.9,10.2,M,-34.2,M,,"
#define VTG    "$GPVTG,271.5,T,,M,12.0,N,22.2,K,A"

/*
 * RMC and GGA in two datagrams: while the habit is unknown the fix waits (for the window,
 * here gr_assemble_expire); from then on it is complete with its second sentence, in
 * either order, and comes out whole.
 */
static void test_habit_rmc_gga(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);

    CHECK(!add(&a, RMC("182001"), now, &f));
    CHECK(gr_assemble_pending(&a));
    CHECK_INT(a.pending_since_ms, now);
    CHECK(!gr_assemble_complete(&a)); /* habit unknown: nothing is complete */
    CHECK(!add(&a, GGA("182001"), now + 5, &f));
    CHECK_INT(a.pending_since_ms, now); /* the first sentence's */
    CHECK(!gr_assemble_complete(&a));
    CHECK(gr_assemble_expire(&a, now + 100, &f));
    CHECK_INT(f.fields, GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
    CHECK(!gr_assemble_pending(&a));

    CHECK(!add(&a, RMC("182002"), now + 1000, &f));
    CHECK(!gr_assemble_complete(&a)); /* GGA is still to come */
    CHECK(!add(&a, GGA("182002"), now + 1005, &f));
    CHECK(gr_assemble_complete(&a));
    CHECK(gr_assemble_flush(&a, now + 1005, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 2));
    CHECK_INT(f.fields, GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);

    /* The other order. */
    CHECK(!add(&a, GGA("182003"), now + 2000, &f));
    CHECK(!gr_assemble_complete(&a));
    CHECK(!add(&a, RMC("182003"), now + 2005, &f));
    CHECK(gr_assemble_complete(&a));
    CHECK(gr_assemble_flush(&a, now + 2005, &f));
    CHECK_INT(f.fields, GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
}

/* The next time ends a fix, and what it held is the habit. */
static void test_habit_from_next_time(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);

    CHECK(!add(&a, RMC("182001"), now, &f));
    CHECK(!add(&a, GGA("182001"), now, &f));
    CHECK(add(&a, RMC("182002"), now + 1000, &f)); /* the fix of 18:20:01 comes out */
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 1));
    CHECK_INT(a.habit, (1u << GR_SENT_RMC) | (1u << GR_SENT_GGA));
    CHECK_INT(a.pending_since_ms, now + 1000); /* a new fix, a new first sentence */
    CHECK(!gr_assemble_complete(&a));
    CHECK(!add(&a, GGA("182002"), now + 1000, &f));
    CHECK(gr_assemble_complete(&a));
}

/* A modem that sends RMC alone: after its first fix, each is complete as it arrives. */
static void test_habit_rmc_alone(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);

    CHECK(!add(&a, RMC("182001"), now, &f));
    CHECK(gr_assemble_expire(&a, now + 100, &f));
    for (int i = 0; i < 3; i++) {
        char line[96];
        snprintf(line, sizeof line, RMC("18200%d"), 2 + i);
        CHECK(!add(&a, line, now + 1000 * (i + 1), &f));
        CHECK(gr_assemble_complete(&a));
        CHECK(gr_assemble_flush(&a, now + 1000 * (i + 1), &f));
        CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 2 + i));
    }
}

/* Sierra AirLink: GGA, then VTG without a time; the VTG completes the fix. */
static void test_habit_gga_vtg(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);

    CHECK(!add(&a, GGA("182001"), now, &f));
    CHECK(!add(&a, VTG, now, &f));
    CHECK(gr_assemble_expire(&a, now + 100, &f));
    CHECK_INT(a.habit, (1u << GR_SENT_GGA) | (1u << GR_SENT_VTG));
    CHECK(!add(&a, GGA("182002"), now + 1000, &f));
    CHECK(!gr_assemble_complete(&a));
    CHECK(!add(&a, VTG, now + 1005, &f));
    CHECK(gr_assemble_complete(&a));
    CHECK(gr_assemble_flush(&a, now + 1005, &f));
    CHECK_INT(f.fields, GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS);
    CHECK_NEAR(f.speed, 12.0 * KN, 1e-9);
    CHECK_NEAR(f.alt, 10.2, 1e-12);
}

/*
 * A fix cut short by the window (its GGA lost) goes out as it is, and the habit stays: the
 * next fix still waits for its GGA. Only a second short fix in a row makes RMC alone the
 * habit (the modem stopped sending GGA).
 */
static void test_habit_survives_one_loss(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);
    const unsigned both = (1u << GR_SENT_RMC) | (1u << GR_SENT_GGA);

    CHECK(!add(&a, RMC("182001"), now, &f));
    CHECK(!add(&a, GGA("182001"), now, &f));
    CHECK(gr_assemble_expire(&a, now + 100, &f));

    CHECK(!add(&a, RMC("182002"), now + 1000, &f)); /* its GGA is lost */
    CHECK(gr_assemble_expire(&a, now + 1100, &f));
    CHECK_INT(f.fields, GR_FIX_SPEED | GR_FIX_COURSE);
    CHECK_INT(a.habit, both);

    CHECK(!add(&a, RMC("182003"), now + 2000, &f));
    CHECK(!gr_assemble_complete(&a)); /* still waits for GGA */
    CHECK(!add(&a, GGA("182003"), now + 2005, &f));
    CHECK(gr_assemble_complete(&a));
    CHECK(gr_assemble_flush(&a, now + 2005, &f));
    CHECK_INT(a.misses, 0);

    /* Twice in a row without GGA: the habit is RMC alone. */
    CHECK(!add(&a, RMC("182004"), now + 3000, &f));
    CHECK(gr_assemble_expire(&a, now + 3100, &f));
    CHECK_INT(a.habit, both);
    CHECK(!add(&a, RMC("182005"), now + 4000, &f));
    CHECK(gr_assemble_expire(&a, now + 4100, &f));
    CHECK_INT(a.habit, 1u << GR_SENT_RMC);
    CHECK(!add(&a, RMC("182006"), now + 5000, &f));
    CHECK(gr_assemble_complete(&a));
    CHECK(gr_assemble_flush(&a, now + 5000, &f));

    /* A ZDA now and then is not part of the habit: the next RMC alone is complete. */
    CHECK(!add(&a, "$GPZDA,182007.00,23,11,2026,00,00", now + 6000, &f));
    CHECK(!gr_assemble_complete(&a));
    CHECK(!add(&a, RMC("182007"), now + 6000, &f));
    CHECK(gr_assemble_complete(&a));
    CHECK(gr_assemble_flush(&a, now + 6000, &f));
    CHECK_INT(a.habit, 1u << GR_SENT_RMC);
    CHECK(!add(&a, RMC("182008"), now + 7000, &f));
    CHECK(gr_assemble_complete(&a));
}

/*
 * A sentence of the last fix's time that comes after it went out (the habit did not have
 * its type) teaches the habit: it starts a fix of its own (the hub refuses it as a
 * duplicate, counted), and the next fix waits for both.
 */
static void test_habit_late_sentence(void)
{
    struct gr_assembler a = {0};
    struct gr_fix f;
    int64_t now = utc(2026, 11, 23, 18, 20, 1);

    CHECK(!add(&a, RMC("182001"), now, &f));
    CHECK(gr_assemble_expire(&a, now + 100, &f)); /* habit: RMC */
    CHECK(!add(&a, RMC("182002"), now + 1000, &f));
    CHECK(gr_assemble_complete(&a));
    CHECK(gr_assemble_flush(&a, now + 1000, &f));
    CHECK(!add(&a, GGA("182002"), now + 1005, &f)); /* late for 18:20:02 */
    CHECK_INT(a.habit, (1u << GR_SENT_RMC) | (1u << GR_SENT_GGA));
    CHECK(!gr_assemble_complete(&a));
    CHECK(gr_assemble_expire(&a, now + 1105, &f));
    CHECK_INT(f.time_ms, utc(2026, 11, 23, 18, 20, 2));

    CHECK(!add(&a, RMC("182003"), now + 2000, &f));
    CHECK(!gr_assemble_complete(&a));
    CHECK(!add(&a, GGA("182003"), now + 2005, &f));
    CHECK(gr_assemble_complete(&a));

    /* A VTG after the fix went out: dropped (unplaced), and the habit gains VTG. */
    CHECK(gr_assemble_flush(&a, now + 2005, &f));
    struct gr_sentence s;
    CHECK_INT(gr_nmea_decode(VTG, strlen(VTG), &s), GR_OK);
    CHECK(gr_assemble_unplaced(&a, &s));
    CHECK(!gr_assemble_add(&a, &s, now + 2010, &f));
    CHECK(!gr_assemble_pending(&a));
    CHECK_INT(a.habit, (1u << GR_SENT_RMC) | (1u << GR_SENT_GGA) | (1u << GR_SENT_VTG));
    /* With a fix pending, a VTG joins it. */
    CHECK(!add(&a, RMC("182004"), now + 3000, &f));
    CHECK(!gr_assemble_unplaced(&a, &s));
}

int main(void)
{
    test_merge_one_time();
    test_complete_on_time_change();
    test_no_position();
    test_vtg_alone();
    test_date_from_last_rmc();
    test_receive_date();
    test_week_rollover();
    test_validity();
    test_identity_ignored();
    test_taip_source();
    test_habit_rmc_gga();
    test_habit_from_next_time();
    test_habit_rmc_alone();
    test_habit_gga_vtg();
    test_habit_survives_one_loss();
    test_habit_late_sentence();
    return check_result("test_assemble");
}
