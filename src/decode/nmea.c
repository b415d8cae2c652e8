/*
 * nmea.c - NMEA 0183 sentence decoder (contract in nmea.h).
 *
 * The input is a borrowed buffer that is not NUL-terminated, so nothing here calls strtod,
 * atof or sscanf (they would read past len, and strtod takes its decimal point from the
 * locale) nor <ctype.h> (locale-dependent too). Numbers are parsed by hand into integers.
 */
#include <string.h>

#include "gpsrelay/nmea.h"

/*
 * Data fields kept per sentence: RMC has 13 (NMEA 4.1), GGA 14. Fields past this are
 * counted but not stored, so vendor additions at the end do not make a sentence malformed.
 */
#define NMEA_FIELDS_MAX 20

/* 18 digits always fit an int64_t (10^18 < 2^63); no receiver sends more. */
#define DECIMAL_DIGITS_MAX 18

/* One knot is one nautical mile (exactly 1852 m) per hour. */
#define KNOTS_TO_MPS (1852.0 / 3600.0)

struct field {
    const char *p;
    size_t len;
};

/* A decimal number exactly as sent: mant / den, with den a power of ten. */
struct decimal {
    int64_t mant;
    int64_t den;
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static int hex_value(char c)
{
    if (is_digit(c)) {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* Two ASCII digits as a number, or -1. */
static int two_digits(const char *p)
{
    return is_digit(p[0]) && is_digit(p[1]) ? (p[0] - '0') * 10 + (p[1] - '0') : -1;
}

/* digits[.digits], unsigned: RMC has no signed field (the hemisphere carries the sign). */
static bool parse_decimal(struct field f, struct decimal *out)
{
    int64_t mant = 0, den = 1;
    int digits = 0;
    bool point = false;

    for (size_t i = 0; i < f.len; i++) {
        char c = f.p[i];
        if (c == '.' && !point) {
            point = true;
        } else if (is_digit(c) && digits < DECIMAL_DIGITS_MAX) {
            mant = mant * 10 + (c - '0');
            digits++;
            if (point) {
                den *= 10;
            }
        } else {
            return false;
        }
    }
    out->mant = mant;
    out->den = den;
    return digits > 0;
}

/* An optional number: an empty field leaves its bit clear, anything unparsable is an error. */
static bool parse_optional(struct field f, double unit, unsigned bit, double *out, unsigned *fields)
{
    struct decimal d;

    if (f.len == 0) {
        return true;
    }
    if (!parse_decimal(f, &d)) {
        return false;
    }
    *out = (double)d.mant / (double)d.den * unit;
    *fields |= bit;
    return true;
}

/*
 * ddmm.mmmm or dddmm.mmmm and its hemisphere letter. The degrees/minutes split is done on
 * the integer mantissa, so it is exact: splitting the double 4717.1127328123 would carry its
 * binary rounding error into the minutes. RTK receivers send 8 or more decimals of minutes
 * (about 1e-10 degree), and a double keeps them.
 */
static bool parse_angle(struct field num, struct field hemi, char pos, char neg, double max,
                        double *out)
{
    struct decimal d;

    if (!parse_decimal(num, &d) || hemi.len != 1 || (hemi.p[0] != pos && hemi.p[0] != neg)) {
        return false;
    }
    int64_t deg = d.mant / d.den / 100;
    int64_t min = d.mant - deg * 100 * d.den; /* minutes, times den */
    if (min / 60 >= d.den) {                  /* min >= 60 * den, which could overflow */
        return false;
    }
    double v = (double)deg + (double)min / (double)d.den / 60.0;
    if (v > max) {
        return false;
    }
    *out = hemi.p[0] == neg ? -v : v;
    return true;
}

/* hhmmss[.sss]: milliseconds since midnight, -1 when empty. Second 60 is a leap second. */
static bool parse_time(struct field f, int *out)
{
    if (f.len == 0) {
        *out = -1;
        return true;
    }
    if (f.len < 6 || (f.len > 6 && f.p[6] != '.')) {
        return false;
    }
    int h = two_digits(f.p), m = two_digits(f.p + 2), s = two_digits(f.p + 4);
    if (h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 60) {
        return false;
    }
    /* Digits past the third are dropped: receivers send at most 10 Hz, often .00 or .000. */
    int ms = 0, scale = 100;
    for (size_t i = 7; i < f.len; i++) {
        if (!is_digit(f.p[i])) {
            return false;
        }
        ms += (f.p[i] - '0') * scale;
        scale /= 10;
    }
    *out = ((h * 60 + m) * 60 + s) * 1000 + ms;
    return true;
}

/*
 * ddmmyy; an empty field leaves the date 0. NMEA 0183 has no century: like gpsd, years below
 * 80 are 20yy. GPS week-rollover correction is the caller's (SPEC section 4).
 */
static bool parse_date(struct field f, struct gr_nmea *out)
{
    if (f.len == 0) {
        return true;
    }
    if (f.len != 6) {
        return false;
    }
    int d = two_digits(f.p), m = two_digits(f.p + 2), y = two_digits(f.p + 4);
    if (d < 1 || d > 31 || m < 1 || m > 12 || y < 0) {
        return false;
    }
    out->year = y < 80 ? 2000 + y : 1900 + y;
    out->month = m;
    out->day = d;
    return true;
}

/*
 * RMC, recommended minimum data. Field numbers as in f[] (after the address):
 *
 *   $--RMC,hhmmss.ss,A,ddmm.mm,N,dddmm.mm,E,x.x,x.x,ddmmyy,x.x,E,m,s*hh
 *          0         1 2       3 4        5 6   7   8      9   10 11 12
 *
 *   0 UTC time          5 E/W                 10 variation E/W (ignored)
 *   1 status A/V        6 speed, knots        11 mode (NMEA 2.3): A D E F M P R S, N no fix
 *   2 latitude          7 course, deg true    12 nav status (NMEA 4.1, ignored: u-blox
 *   3 N/S               8 date ddmmyy            always sends V)
 *   4 longitude         9 magnetic variation (ignored)
 *
 * Only 0-8 are required: the variation pair is not used. With status V receivers leave the
 * position empty ("$GPRMC,205150.00,V,,,,,,,,,,,V*4a", Magellan); with A it must be there.
 */
static enum gr_reason decode_rmc(const struct field *f, int n, struct gr_nmea *out)
{
    struct gr_fix *fix = &out->fix;

    if (!parse_time(f[0], &out->time_of_day_ms) || f[1].len != 1 ||
        (f[1].p[0] != 'A' && f[1].p[0] != 'V')) {
        return GR_MALFORMED;
    }
    bool active = f[1].p[0] == 'A';
    fix->valid = active && !(n > 11 && f[11].len == 1 && f[11].p[0] == 'N');

    if (f[2].len > 0 || f[4].len > 0 || active) {
        if (!parse_angle(f[2], f[3], 'N', 'S', 90.0, &fix->lat) ||
            !parse_angle(f[4], f[5], 'E', 'W', 180.0, &fix->lon)) {
            return GR_MALFORMED;
        }
    }
    if (!parse_optional(f[6], KNOTS_TO_MPS, GR_FIX_SPEED, &fix->speed, &fix->fields) ||
        !parse_optional(f[7], 1.0, GR_FIX_COURSE, &fix->course, &fix->fields) ||
        !parse_date(f[8], out)) {
        return GR_MALFORMED;
    }
    return GR_OK;
}

/* One row per decoded sentence type; GGA, GLL, VTG, GNS and ZDA join here. */
static const struct sentence {
    char type[4];
    enum gr_nmea_type id;
    int min_fields; /* data fields after the address the decoder may index unchecked */
    enum gr_reason (*decode)(const struct field *f, int n, struct gr_nmea *out);
} sentences[] = {
    {"RMC", GR_NMEA_RMC, 9, decode_rmc},
};

/* The table row for an address "ttSSS", or NULL for a type we do not decode. */
static const struct sentence *find_sentence(const char *addr)
{
    /* Talkers are two letters; 'P' starts a proprietary sentence ($PGRME), never a talker. */
    if (!is_upper(addr[0]) || !is_upper(addr[1]) || addr[0] == 'P') {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(sentences) / sizeof(sentences[0]); i++) {
        if (memcmp(addr + 2, sentences[i].type, 3) == 0) {
            return &sentences[i];
        }
    }
    return NULL;
}

enum gr_reason gr_nmea_decode(const char *p, size_t len, struct gr_nmea *out)
{
    memset(out, 0, sizeof(*out));
    if (len == 0 || p[0] != '$') {
        return GR_MALFORMED;
    }

    /* end: the '*' or len. Sentences are printable ASCII; anything else is line noise. */
    size_t end = 1;
    unsigned sum = 0;
    for (; end < len && p[end] != '*'; end++) {
        unsigned char c = (unsigned char)p[end];
        if (c < 0x20 || c > 0x7e) {
            return GR_MALFORMED;
        }
        sum ^= c;
    }
    if (end < len) {
        int hi = len - end == 3 ? hex_value(p[end + 1]) : -1;
        int lo = len - end == 3 ? hex_value(p[end + 2]) : -1;
        if (hi < 0 || lo < 0) {
            return GR_MALFORMED;
        }
        if ((unsigned)(hi << 4 | lo) != sum) {
            return GR_BAD_CHECKSUM;
        }
        out->checksum_seen = true;
    }

    /* Address: talker + type, five upper-case letters or digits, then the first comma. */
    if (end < 7 || p[6] != ',') {
        return GR_MALFORMED;
    }
    for (size_t i = 1; i < 6; i++) {
        if (!is_upper(p[i]) && !is_digit(p[i])) {
            return GR_MALFORMED;
        }
    }
    const struct sentence *s = find_sentence(p + 1);
    if (s == NULL) {
        return GR_UNSUPPORTED;
    }

    struct field f[NMEA_FIELDS_MAX];
    int n = 0;
    size_t start = 7;
    for (size_t i = start; i <= end; i++) {
        if (i == end || p[i] == ',') {
            if (n < NMEA_FIELDS_MAX) {
                f[n] = (struct field){p + start, i - start};
            }
            n++;
            start = i + 1;
        }
    }
    if (n < s->min_fields) {
        return GR_MALFORMED;
    }
    memcpy(out->talker, p + 1, 2);
    out->type = s->id;
    out->fix.src = GR_SRC_NMEA;
    return s->decode(f, n < NMEA_FIELDS_MAX ? n : NMEA_FIELDS_MAX, out);
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
