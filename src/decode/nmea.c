/*
 * nmea.c - NMEA 0183 sentence decoder (contract in nmea.h).
 *
 * The input is a borrowed buffer that is not NUL-terminated, so nothing here calls strtod,
 * atof or sscanf (they would read past len, and strtod takes its decimal point from the
 * locale) nor <ctype.h> (locale-dependent too). Numbers are parsed by hand into integers.
 */
#include <limits.h>
#include <string.h>

#include "chars.h"
#include "gpsrelay/calendar.h"
#include "gpsrelay/nmea.h"

/*
 * Data fields kept per sentence: RMC has 13 (NMEA 4.1), GGA 14, GNS 13. Fields past this are
 * counted but not stored, so vendor additions at the end do not make a sentence malformed.
 */
#define NMEA_FIELDS_MAX 20

/* 18 digits always fit an int64_t (10^18 < 2^63); no receiver sends more. */
#define DECIMAL_DIGITS_MAX 18

/*
 * Proprietary addresses are 'P', a maker code and the maker's own type: $PUBX (u-blox),
 * $PGRME (Garmin), $PSRF103 (SiRF), $PMTK001 (MediaTek). Nine characters is generous.
 */
#define PROPRIETARY_ADDR_MAX 9

/* Sierra Wireless AirLink ids are 64-bit numbers: "0x" and at most 16 hex digits. */
#define DEVID_HEX_MAX 16

/* One knot is one nautical mile (exactly 1852 m) per hour. */
#define KNOTS_TO_MPS (1852.0 / 3600.0)
#define KMH_TO_MPS   (1000.0 / 3600.0)

/* A decimal number exactly as sent: mant / den, with den a power of ten. */
struct decimal {
    int64_t mant;
    int64_t den;
};

/* A field that is exactly one character c. */
static bool is_char(struct gr_span f, char c)
{
    return f.len == 1 && f.p[0] == c;
}

/* digits[.digits], unsigned: only altitudes are signed (the hemisphere carries the sign). */
static bool parse_decimal(struct gr_span f, struct decimal *out)
{
    int64_t mant = 0, den = 1;
    int digits = 0;
    bool point = false;

    for (size_t i = 0; i < f.len; i++) {
        char c = f.p[i];
        if (c == '.' && !point) {
            point = true;
        } else if (gr_is_digit(c) && digits < DECIMAL_DIGITS_MAX) {
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

/*
 * An optional number: an empty field leaves its bit clear, anything unparsable is an error.
 * signed_ allows a leading '-' or '+': altitudes below the geoid ("-0028", Triton 400).
 */
static bool parse_number(struct gr_span f, bool signed_, double unit, unsigned bit, double *out,
                         unsigned *fields)
{
    struct decimal d;
    bool neg = false;

    if (f.len == 0) {
        return true;
    }
    if (signed_ && (f.p[0] == '-' || f.p[0] == '+')) {
        neg = f.p[0] == '-';
        f.p++;
        f.len--;
    }
    if (!parse_decimal(f, &d)) {
        return false;
    }
    double v = (double)d.mant / (double)d.den * unit;
    *out = neg ? -v : v;
    *fields |= bit;
    return true;
}

static bool parse_optional(struct gr_span f, double unit, unsigned bit, double *out,
                           unsigned *fields)
{
    return parse_number(f, false, unit, bit, out, fields);
}

/*
 * Satellites in use: an optional whole number. Its bound (GR_FIX_SATS_MAX) is checked with
 * the other values' (gr_fix_check_values); a count past INT_MAX is kept as INT_MAX, which
 * is past the bound too, so it is refused as the value it is, not wrapped.
 */
static bool parse_sats(struct gr_span f, struct gr_fix *fix)
{
    struct decimal d;

    if (f.len == 0) {
        return true;
    }
    if (!parse_decimal(f, &d) || d.den != 1) {
        return false;
    }
    fix->sats = d.mant > INT_MAX ? INT_MAX : (int)d.mant;
    fix->fields |= GR_FIX_SATS;
    return true;
}

/*
 * ddmm.mmmm or dddmm.mmmm and its hemisphere letter. The degrees/minutes split is done on
 * the integer mantissa, so it is exact: splitting the double 4717.1127328123 would carry its
 * binary rounding error into the minutes. RTK receivers send 8 or more decimals of minutes
 * (about 1e-10 degree), and a double keeps them.
 */
static bool parse_angle(struct gr_span num, struct gr_span hemi, char pos, char neg, double max,
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

/*
 * The four latitude/longitude fields starting at f[0]. Receivers without a fix leave them
 * empty (that is not an error unless `required`: the sentence says it has a fix); half a
 * position is never right.
 */
static bool parse_position(const struct gr_span *f, bool required, struct gr_sentence *out)
{
    if (!required && f[0].len == 0 && f[1].len == 0 && f[2].len == 0 && f[3].len == 0) {
        return true;
    }
    if (!parse_angle(f[0], f[1], 'N', 'S', 90.0, &out->fix.lat) ||
        !parse_angle(f[2], f[3], 'E', 'W', 180.0, &out->fix.lon)) {
        return false;
    }
    out->has |= GR_HAS_POSITION;
    return true;
}

/* hhmmss[.sss]: milliseconds since midnight, -1 when empty. Second 60 is a leap second. */
static bool parse_time(struct gr_span f, struct gr_sentence *out)
{
    out->time_of_day_ms = -1;
    if (f.len == 0) {
        return true;
    }
    if (f.len < 6 || (f.len > 6 && f.p[6] != '.')) {
        return false;
    }
    int h = gr_digits(f.p, 2), m = gr_digits(f.p + 2, 2), s = gr_digits(f.p + 4, 2);
    if (h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 60) {
        return false;
    }
    int ms = 0;
    if (f.len > 7 && gr_fraction_ms(f.p + 7, f.len - 7, &ms) != f.len - 7) {
        return false;
    }
    out->time_of_day_ms = ((h * 60 + m) * 60 + s) * 1000 + ms;
    out->has |= GR_HAS_TIME;
    return true;
}

/*
 * Sets the sentence's date: GR_OK, or GR_BAD_DATE for a day its month does not have
 * ("310226", 31 February): the calendar arithmetic would silently make that 3 March, so
 * it is refused instead. A day outside 01-31 or a month outside 01-12 is no date field at
 * all; the callers refuse those as GR_MALFORMED before asking.
 */
static enum gr_reason set_date(int year, int month, int day, struct gr_sentence *out)
{
    if (!gr_date_valid(year, month, day)) {
        return GR_BAD_DATE;
    }
    out->year = year;
    out->month = month;
    out->day = day;
    out->has |= GR_HAS_DATE;
    return GR_OK;
}

/*
 * ddmmyy; an empty field leaves the date 0. NMEA 0183 has no century: like gpsd, years below
 * 80 are 20yy. GPS week-rollover correction is the assembler's (assemble.h).
 */
static enum gr_reason parse_date(struct gr_span f, struct gr_sentence *out)
{
    if (f.len == 0) {
        return GR_OK;
    }
    if (f.len != 6) {
        return GR_MALFORMED;
    }
    int d = gr_digits(f.p, 2), m = gr_digits(f.p + 2, 2), y = gr_digits(f.p + 4, 2);
    if (d < 1 || d > 31 || m < 1 || m > 12 || y < 0) {
        return GR_MALFORMED;
    }
    return set_date(y < 80 ? 2000 + y : 1900 + y, m, d, out);
}

/*
 * An NMEA 2.3 mode indicator: A autonomous, D differential, E estimated (dead reckoning),
 * F float RTK, M manual, P precise, R RTK, S simulator; N is "no fix". Absent in older
 * sentences. Returns false for anything but one upper-case letter.
 */
static bool parse_mode(struct gr_span f, bool *no_fix)
{
    if (f.len != 1 || !gr_is_upper(f.p[0])) {
        return false;
    }
    *no_fix = f.p[0] == 'N';
    return true;
}

static void set_validity(struct gr_sentence *out, bool valid)
{
    out->fix.valid = valid;
    out->has |= GR_HAS_VALIDITY;
}

/*
 * The status letter of RMC and GLL (A active, V void) and the mode indicator that may
 * follow it (mode NULL or empty when not sent): the fix is valid when the status is A and
 * the mode is not "no fix". *active is whether the status is A: then the position must be
 * there.
 */
static bool parse_status(struct gr_span status, const struct gr_span *mode, bool *active,
                         struct gr_sentence *out)
{
    bool no_fix = false;

    if (status.len != 1 || (status.p[0] != 'A' && status.p[0] != 'V')) {
        return false;
    }
    *active = status.p[0] == 'A';
    if (mode != NULL && mode->len > 0 && !parse_mode(*mode, &no_fix)) {
        return false;
    }
    set_validity(out, *active && !no_fix);
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
 * Quectel leaves even the time empty while it has no fix ("$GPRMC,,V,,,,,,,,,,N*53").
 */
static enum gr_reason decode_rmc(const struct gr_span *f, int n, struct gr_sentence *out)
{
    struct gr_fix *fix = &out->fix;
    bool active;

    if (!parse_time(f[0], out) || !parse_status(f[1], n > 11 ? &f[11] : NULL, &active, out)) {
        return GR_MALFORMED;
    }

    if (!parse_position(&f[2], active, out) ||
        !parse_optional(f[6], KNOTS_TO_MPS, GR_FIX_SPEED, &fix->speed, &fix->fields) ||
        !parse_optional(f[7], 1.0, GR_FIX_COURSE, &fix->course, &fix->fields)) {
        return GR_MALFORMED;
    }
    return parse_date(f[8], out);
}

/*
 * GGA, fix data: time, position, quality, altitude.
 *
 *   $--GGA,hhmmss.ss,ddmm.mm,N,dddmm.mm,E,q,nn,x.x,x.x,M,x.x,M,x.x,xxxx*hh
 *          0         1       2 3        4 5 6  7   8   9 10  11 12  13
 *
 *   0 UTC time      5 quality: 0 no fix, 1 GPS, 2 DGPS, 3 PPS,  8 altitude above mean sea
 *   1 latitude        4 RTK fixed, 5 RTK float, 6 estimated,      level (MSL), metres
 *   2 N/S             7 manual, 8 simulator                     9 M (ignored: always metres)
 *   3 longitude     6 satellites in use                        10-11 geoid separation, M
 *   4 E/W           7 HDOP                                     12-13 DGPS age, station
 *
 * Only 0-8 are required. Quality 0 is "no fix" (docs/ingest.md: GGA quality > 0 is valid);
 * an empty quality counts as 0, as in gpsd. A GGA without a fix may leave everything else
 * empty: "$GPGGA,,,,,,0,,,,,,,,*66" (Quectel).
 */
static enum gr_reason decode_gga(const struct gr_span *f, int n, struct gr_sentence *out)
{
    struct gr_fix *fix = &out->fix;
    struct decimal q = {0, 1};
    (void)n;

    if (!parse_time(f[0], out) || (f[5].len > 0 && (!parse_decimal(f[5], &q) || q.den != 1))) {
        return GR_MALFORMED;
    }
    set_validity(out, q.mant > 0);
    if (!parse_position(&f[1], q.mant > 0, out) || !parse_sats(f[6], fix) ||
        !parse_optional(f[7], 1.0, GR_FIX_HDOP, &fix->hdop, &fix->fields) ||
        !parse_number(f[8], true, 1.0, GR_FIX_ALT, &fix->alt, &fix->fields)) {
        return GR_MALFORMED;
    }
    return GR_OK;
}

/*
 * GLL, geographic position: position and time only.
 *
 *   $--GLL,ddmm.mm,N,dddmm.mm,E,hhmmss.ss,A,m*hh
 *          0       1 2        3 4         5 6
 *
 *   0-3 latitude, N/S, longitude, E/W    5 status A/V
 *   4 UTC time                           6 mode (NMEA 2.3), as in RMC: N no fix
 *
 * 0-5 are required: the NMEA 1.5 form without time and status cannot be placed in time.
 */
static enum gr_reason decode_gll(const struct gr_span *f, int n, struct gr_sentence *out)
{
    bool active;

    if (!parse_time(f[4], out) || !parse_status(f[5], n > 6 ? &f[6] : NULL, &active, out)) {
        return GR_MALFORMED;
    }
    return parse_position(&f[0], active, out) ? GR_OK : GR_MALFORMED;
}

/*
 * VTG, track made good and ground speed. No time: the assembler merges it into the fix
 * being gathered (assemble.h).
 *
 *   $--VTG,x.x,T,x.x,M,x.x,N,x.x,K,m*hh
 *          0   1 2   3 4   5 6   7 8
 *
 *   0 course, degrees true          4 speed, knots    8 mode (NMEA 2.3), as in RMC: N no fix
 *   2 course, magnetic (ignored)    6 speed, km/h
 *
 * The unit letters 1, 3, 5 and 7 came with NMEA 2.0; the older form has only the four
 * numbers: $--VTG,x.x,x.x,x.x,x.x (gpsd decodes both). Speed in knots is preferred, km/h
 * when only that is sent. Without a mode the sentence says nothing about validity.
 */
static enum gr_reason decode_vtg(const struct gr_span *f, int n, struct gr_sentence *out)
{
    struct gr_fix *fix = &out->fix;
    int knots = 2, kmh = 3; /* the old form's field numbers */
    bool no_fix = false;

    if (is_char(f[1], 'T')) {
        if (n < 8) {
            return GR_MALFORMED;
        }
        knots = 4;
        kmh = 6;
        if (n > 8 && f[8].len > 0) {
            if (!parse_mode(f[8], &no_fix)) {
                return GR_MALFORMED;
            }
            set_validity(out, !no_fix);
        }
    }
    if (!parse_optional(f[0], 1.0, GR_FIX_COURSE, &fix->course, &fix->fields) ||
        !parse_optional(f[knots], KNOTS_TO_MPS, GR_FIX_SPEED, &fix->speed, &fix->fields)) {
        return GR_MALFORMED;
    }
    if (f[knots].len == 0 &&
        !parse_optional(f[kmh], KMH_TO_MPS, GR_FIX_SPEED, &fix->speed, &fix->fields)) {
        return GR_MALFORMED;
    }
    return GR_OK;
}

/*
 * GNS, multi-constellation fix data (NMEA 3.0): GGA with a mode per system.
 *
 *   $--GNS,hhmmss.ss,ddmm.mm,N,dddmm.mm,E,c--c,nn,x.x,x.x,x.x,x.x,xxxx,s*hh
 *          0         1       2 3        4 5    6  7   8   9   10  11   12
 *
 *   0 UTC time     5 mode, one letter per system (GPS, GLONASS, Galileo, BeiDou, QZSS,
 *   1-4 position     NavIC ...) as in RMC: "N" no fix from that system
 *                  6 satellites in use     9 geoid separation (ignored)
 *                  7 HDOP                  10-11 DGPS age, station (ignored)
 *                  8 altitude MSL, metres  12 nav status (NMEA 4.1, ignored)
 *
 * Only 0-8 are required. The fix is valid when any system has one: "NN" is no fix, "AN"
 * (GPS autonomous, GLONASS none) is a fix.
 */
static enum gr_reason decode_gns(const struct gr_span *f, int n, struct gr_sentence *out)
{
    struct gr_fix *fix = &out->fix;
    bool any_fix = false;
    (void)n;

    if (!parse_time(f[0], out) || f[5].len == 0) {
        return GR_MALFORMED;
    }
    for (size_t i = 0; i < f[5].len; i++) {
        if (!gr_is_upper(f[5].p[i])) {
            return GR_MALFORMED;
        }
        any_fix = any_fix || f[5].p[i] != 'N';
    }
    set_validity(out, any_fix);
    if (!parse_position(&f[1], any_fix, out) || !parse_sats(f[6], fix) ||
        !parse_optional(f[7], 1.0, GR_FIX_HDOP, &fix->hdop, &fix->fields) ||
        !parse_number(f[8], true, 1.0, GR_FIX_ALT, &fix->alt, &fix->fields)) {
        return GR_MALFORMED;
    }
    return GR_OK;
}

/*
 * ZDA, time and date, with a four-digit year (no century guess needed).
 *
 *   $--ZDA,hhmmss.ss,dd,mm,yyyy,zh,zm*hh
 *          0         1  2  3    4  5
 *
 *   0 UTC time    1 day 01-31    2 month 01-12    3 year    4-5 local zone (ignored)
 *
 * 0-3 are required. A receiver without time sends them all empty; a date is all three
 * fields or none.
 */
static enum gr_reason decode_zda(const struct gr_span *f, int n, struct gr_sentence *out)
{
    (void)n;
    if (!parse_time(f[0], out)) {
        return GR_MALFORMED;
    }
    if (f[1].len == 0 && f[2].len == 0 && f[3].len == 0) {
        return GR_OK;
    }
    int d = f[1].len == 2 ? gr_digits(f[1].p, 2) : -1;
    int m = f[2].len == 2 ? gr_digits(f[2].p, 2) : -1;
    int hi = f[3].len == 4 ? gr_digits(f[3].p, 2) : -1;
    int lo = f[3].len == 4 ? gr_digits(f[3].p + 2, 2) : -1;
    if (d < 1 || d > 31 || m < 1 || m > 12 || hi < 0 || lo < 0) {
        return GR_MALFORMED;
    }
    return set_date(hi * 100 + lo, m, d, out);
}

/*
 * DEVID, Sierra Wireless AirLink device identity: with its device id on, an AirLink modem
 * sends this sentence of its own before the fixes, which then carry no id:
 *
 *   $DEVID,0x<hex>*hh      0 the modem's 64-bit id in hex, "0x" included
 *
 * The id is kept exactly as sent ("0x0123ABCD"), trimmed of spaces; nothing else is set.
 */
static enum gr_reason decode_devid(const struct gr_span *f, int n, struct gr_sentence *out)
{
    struct gr_span id = gr_trim(f[0]);
    (void)n;

    if (id.len < 3 || id.len > 2 + DEVID_HEX_MAX || id.p[0] != '0' ||
        (id.p[1] != 'x' && id.p[1] != 'X')) {
        return GR_MALFORMED;
    }
    for (size_t i = 2; i < id.len; i++) {
        if (gr_hex_digit(id.p[i]) < 0) {
            return GR_MALFORMED;
        }
    }
    out->id = id.p;
    out->id_len = id.len;
    return GR_OK;
}

/*
 * PCPTI, Cradlepoint router identity:
 *
 *   $PCPTI,<id>,...*hh     0 the router's system id; later fields ignored
 *
 * The id is the first field trimmed of spaces; it must not be empty. Nothing else is set.
 * An id longer than GR_DEVICE_ID_MAX could not be remembered for the sender (identity.h)
 * and is refused here, counted as GR_BAD_ID like an over-long prefix.
 */
static enum gr_reason decode_pcpti(const struct gr_span *f, int n, struct gr_sentence *out)
{
    struct gr_span id = gr_trim(f[0]);
    (void)n;

    if (id.len == 0) {
        return GR_MALFORMED;
    }
    if (id.len > GR_DEVICE_ID_MAX) {
        return GR_BAD_ID;
    }
    out->id = id.p;
    out->id_len = id.len;
    return GR_OK;
}

/*
 * One row per decoded sentence. A row with a talker matches "ttTYP" for any two-letter talker
 * (GP, GN, GL, GA, GB, BD, GI, GQ, QZ ...); one without matches the whole address.
 */
static const struct sentence {
    char addr[6];
    bool talker;
    enum gr_sentence_type id;
    int min_fields; /* data fields after the address the decoder may index unchecked */
    enum gr_reason (*decode)(const struct gr_span *f, int n, struct gr_sentence *out);
} sentences[] = {
    {"RMC", true, GR_SENT_RMC, 9, decode_rmc},
    {"GGA", true, GR_SENT_GGA, 9, decode_gga},
    {"GLL", true, GR_SENT_GLL, 6, decode_gll},
    {"VTG", true, GR_SENT_VTG, 4, decode_vtg},
    {"GNS", true, GR_SENT_GNS, 9, decode_gns},
    {"ZDA", true, GR_SENT_ZDA, 4, decode_zda},
    {"DEVID", false, GR_SENT_DEVID, 1, decode_devid},
    {"PCPTI", false, GR_SENT_PCPTI, 1, decode_pcpti},
};

/* The table row for an address of alen characters, or NULL for a type we do not decode. */
static const struct sentence *find_sentence(const char *addr, size_t alen)
{
    /* Talkers are two letters; 'P' starts a proprietary sentence ($PGRME), never a talker. */
    bool talker = alen == 5 && gr_is_upper(addr[0]) && gr_is_upper(addr[1]) && addr[0] != 'P';

    for (size_t i = 0; i < sizeof(sentences) / sizeof(sentences[0]); i++) {
        const struct sentence *s = &sentences[i];
        if (s->talker ? talker && memcmp(addr + 2, s->addr, 3) == 0
                      : alen == strlen(s->addr) && memcmp(addr, s->addr, alen) == 0) {
            return s;
        }
    }
    return NULL;
}

enum gr_reason gr_nmea_decode(const char *p, size_t len, struct gr_sentence *out)
{
    memset(out, 0, sizeof(*out));
    out->time_of_day_ms = -1;
    if (len == 0 || p[0] != '$') {
        return GR_MALFORMED;
    }

    /* end: the '*' or len. Sentences are printable ASCII; anything else is line noise. */
    size_t end = 1;
    unsigned sum = 0;
    for (; end < len && p[end] != '*'; end++) {
        if (!gr_is_print(p[end])) {
            return GR_MALFORMED;
        }
        sum ^= (unsigned char)p[end];
    }
    enum gr_reason r = gr_checksum_check(p + end, len - end, sum, &out->checksum_seen);
    if (r != GR_OK) {
        return r;
    }

    /*
     * Address: upper-case letters or digits up to the first comma. Five for talker + type;
     * proprietary ones ('P' + maker code) vary in length and are never decoded as a type.
     */
    size_t alen = 0;
    while (1 + alen < end && (gr_is_upper(p[1 + alen]) || gr_is_digit(p[1 + alen]))) {
        alen++;
    }
    if (1 + alen >= end || p[1 + alen] != ',' ||
        (p[1] == 'P' ? alen < 4 || alen > PROPRIETARY_ADDR_MAX : alen != 5)) {
        return GR_MALFORMED;
    }
    const struct sentence *s = find_sentence(p + 1, alen);
    if (s == NULL) {
        return GR_UNSUPPORTED;
    }

    struct gr_span f[NMEA_FIELDS_MAX], rest = {p + 2 + alen, end - 2 - alen}, field;
    int n = 0;
    while (gr_field_next(&rest, ',', &field)) {
        if (n < NMEA_FIELDS_MAX) {
            f[n] = field;
        }
        n++;
    }
    if (n < s->min_fields) {
        return GR_MALFORMED;
    }
    if (s->talker) {
        memcpy(out->talker, p + 1, 2);
    }
    out->type = s->id;
    out->fix.src = GR_SRC_NMEA;
    r = s->decode(f, n < NMEA_FIELDS_MAX ? n : NMEA_FIELDS_MAX, out);
    /* An 18-digit speed parses, but is no speed: refused, never passed on (fix.h). */
    return r == GR_OK ? gr_fix_check_values(&out->fix) : r;
}
