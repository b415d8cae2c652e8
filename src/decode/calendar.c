/*
 * calendar.c - proleptic Gregorian dates <-> days since 1970-01-01, for the decoders
 * (NMEA dates, GPS week rollover, ISO 8601 in JSON) and the position encoder.
 */
#include "gpsrelay/calendar.h"

#include "chars.h"

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int gr_days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return month == 2 && is_leap(year) ? 29 : days[month - 1];
}

bool gr_date_valid(int year, int month, int day)
{
    if (month < 1 || month > 12 || day < 1) {
        return false;
    }
    /* Every month has 28 days: most dates need no table and no leap-year divisions. */
    return day <= 28 || day <= gr_days_in_month(year, month);
}

/*
 * Howard Hinnant's days_from_civil (http://howardhinnant.github.io/date_algorithms.html):
 * counts in 400-year eras starting on March 1st, so the leap day is the last of the year.
 */
int64_t gr_days_from_civil(int year, int month, int day)
{
    int64_t y = (int64_t)year - (month <= 2);
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                                                 /* [0, 399] */
    int64_t doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;                         /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

/* The inverse: the date of a day count since 1970-01-01, by the same eras. */
void gr_civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/*
 * RFC 3339's profile of ISO 8601, parsed by hand (strptime and timegm depend on the locale
 * and the TZ variable):
 *
 *   YYYY-MM-DDTHH:MM:SS[.fff...](Z|+hh:mm|-hh:mm)
 *
 * 'T' and 'Z' in either case (RFC 3339 5.6). Any offset up to +-23:59 is accepted and
 * converted, since "2026-11-23T19:20:01+01:00" names one instant as surely as "...18:20:01Z";
 * "-00:00" (RFC 3339: UTC, local offset unknown) is UTC. A time without an offset is
 * refused: it is some local time we cannot place, and guessing UTC would put the vehicle
 * hours away from where it was. Fractions of any length are truncated to milliseconds.
 * Second 60 (a leap second) is accepted only in minute 59 and, as in POSIX time, counts as
 * the first second of the next minute.
 *
 * Returns GR_OK, GR_MALFORMED, or GR_BAD_DATE for a well-formed time on a day its month
 * does not have ("2026-02-30"), as the NMEA decoder does for "300226". A day outside 01-31
 * or a month outside 01-12 is malformed.
 */
enum gr_reason gr_time_parse_rfc3339(const char *s, size_t n, int64_t *ms)
{
    int frac = 0, off = 0;
    size_t i = 19;

    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':') {
        return GR_MALFORMED;
    }
    int year = gr_digits(s, 4), mon = gr_digits(s + 5, 2), day = gr_digits(s + 8, 2);
    int hour = gr_digits(s + 11, 2), min = gr_digits(s + 14, 2), sec = gr_digits(s + 17, 2);
    if (year < 0 || mon < 1 || mon > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 ||
        min < 0 || min > 59 || sec < 0 || sec > 60 || (sec == 60 && min != 59)) {
        return GR_MALFORMED;
    }
    if (s[i] == '.') {
        size_t digits = gr_fraction_ms(s + i + 1, n - i - 1, &frac);
        if (digits == 0) {
            return GR_MALFORMED;
        }
        i += 1 + digits;
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        int oh = n - i < 6 ? -1 : gr_digits(s + i + 1, 2);
        int om = n - i < 6 ? -1 : gr_digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || s[i + 3] != ':' || om < 0 || om > 59) {
            return GR_MALFORMED;
        }
        off = (s[i] == '-' ? -1 : 1) * (oh * 3600 + om * 60);
        i += 6;
    } else {
        return GR_MALFORMED;
    }
    if (i != n) {
        return GR_MALFORMED;
    }
    if (!gr_date_valid(year, mon, day)) {
        return GR_BAD_DATE;
    }
    int64_t t = gr_days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec - off;
    *ms = t * 1000 + frac;
    return *ms >= 0 && *ms < GR_TIME_MS_END ? GR_OK : GR_MALFORMED;
}

/* Writes n digits of v, zero-padded; returns the end. */
static char *put_padded(char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + n;
}

void gr_time_format(int64_t ms, char buf[GR_TIME_TEXT_MAX])
{
    int64_t days = ms / 86400000, rest = ms % 86400000;
    if (rest < 0) { /* before 1970: C division truncates toward zero */
        rest += 86400000;
        days--;
    }
    int y, mo, d;
    gr_civil_from_days(days, &y, &mo, &d);
    char *p = buf;
    if (y < 0 || y > 9999) /* never for a fix the filters accepted; keep the shape */
        y = 0;
    p = put_padded(p, (uint64_t)y, 4);
    *p++ = '-';
    p = put_padded(p, (uint64_t)mo, 2);
    *p++ = '-';
    p = put_padded(p, (uint64_t)d, 2);
    *p++ = 'T';
    p = put_padded(p, (uint64_t)(rest / 3600000), 2);
    *p++ = ':';
    p = put_padded(p, (uint64_t)(rest / 60000 % 60), 2);
    *p++ = ':';
    p = put_padded(p, (uint64_t)(rest / 1000 % 60), 2);
    *p++ = '.';
    p = put_padded(p, (uint64_t)(rest % 1000), 3);
    *p++ = 'Z';
    *p = '\0';
}
