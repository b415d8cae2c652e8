/*
 * taip.c - Trimble ASCII Interface Protocol (TAIP) position reports (taip.h).
 *
 * Sources for the layout below, checked against each other:
 *  - Trimble Lassen SK8 manual, appendix C "Trimble ASCII Interface Protocol (TAIP)",
 *    section C.2 "Sample PV Message": >RPV15714+3739438-1220384601512612;ID=1234;*7F<
 *    is 15714 GPS time of day, +3739438 latitude, -12203846 longitude, 015 speed, 126
 *    heading, 1 source of data, 2 age of data, ;ID=1234 vehicle id, ;*7F checksum.
 *    The checksum of that example, XOR of every byte from '>' through '*', is 0x7F, which
 *    confirms the checksum rule below (computed, not assumed).
 *  - Cypress Solutions CTM-200 "Message Type 100, Trimble proprietary TAIP PV message":
 *    >RPVAAAAASBBCCCCCSDDDEEEEEFFFGGGHI< with the same field meanings.
 *  - The layout as it is often written down, ">RPVsssss±DDddddd±DDDddddd SSS HHH s a",
 *    puts spaces between the fields only for readability: both sources above show 30
 *    characters of data with nothing between the fields (fixed width, explicit signs).
 *    A message with spaces in its data is refused as malformed.
 */
#include <stdbool.h>
#include <string.h>

#include "chars.h"
#include "gpsrelay/taip.h"

/* ">RPV" and "<" around the 30 characters of PV data; ";ID=...;" and "*hh" are optional. */
#define RPV_DATA_LEN 30

#define SECONDS_PER_DAY 86400

/* 1 mph = 1609.344 m / 3600 s exactly (the international mile). */
#define MPH_TO_MS 0.44704

/*
 * Sign, int_digits whole degrees and 5 implied decimals: "+3739438" is 37.39438. The
 * integer is divided once by 1e5, so the result is the double nearest the decimal sent.
 */
static bool degrees(const char *p, size_t int_digits, double *out)
{
    int v = gr_digits(p + 1, int_digits + 5);

    if ((p[0] != '+' && p[0] != '-') || v < 0) {
        return false;
    }
    *out = (p[0] == '-' ? -(double)v : (double)v) / 100000.0;
    return true;
}

/*
 * Source of data (H): 0 2D GPS, 1 3D GPS, 2 2D DGPS, 3 3D DGPS and 9 no fix are the codes
 * both sources above agree on. Trimble's receiver manuals also list 6 (dead reckoning) and
 * 8 (degraded dead reckoning); from memory, not checked against a manual here. Only source
 * 9 is refused (docs/ingest.md), so those two count as fixes. The codes nobody defines (4, 5, 7)
 * say nothing we can vouch for: no fix, so the device stays alive but nothing is published.
 */
static bool source_is_fix(char h)
{
    return (h >= '0' && h <= '3') || h == '6' || h == '8';
}

/*
 * The ";KEY=VALUE" fields after the PV data, p[0..n) (without the checksum): every field is
 * introduced by ';' (Trimble's ";ID=1234;*7F" puts one before the checksum too, so the last
 * field may be empty, and some modems omit it: "...612*4B"). Only ID matters; its value is
 * trimmed of spaces (Digi, Multi-Tech and CalAmp pad it) and empty means no id. Other keys
 * (";PV=1") are skipped. Two IDs in one message are refused: we must not guess the vehicle.
 */
static bool parse_fields(const char *p, size_t n, struct gr_sentence *out)
{
    bool id_seen = false;

    if (n == 0) {
        return true;
    }
    if (p[0] != ';') {
        return false;
    }
    struct gr_span rest = {p + 1, n - 1}, field, key;
    while (gr_field_next(&rest, ';', &field)) {
        if (field.len == 0) {
            continue; /* ";;" or the ';' before the checksum */
        }
        gr_field_next(&field, '=', &key); /* field keeps the value */
        if (field.p == NULL) {
            return false; /* no '=' */
        }
        key = gr_trim(key);
        if (key.len == 0) {
            return false; /* "=x": a value without a key */
        }
        if (key.len != 2 || key.p[0] != 'I' || key.p[1] != 'D') {
            continue;
        }
        if (id_seen) {
            return false;
        }
        id_seen = true;
        struct gr_span id = gr_trim(field);
        if (id.len > GR_DEVICE_ID_MAX) {
            return false; /* the same bound as every other device id (fix.h) */
        }
        if (id.len > 0) {
            out->id = id.p;
            out->id_len = id.len;
        }
    }
    return true;
}

/*
 * RPV, position and velocity (30 characters of data, fixed width, no separators):
 *
 *   offset  width  field
 *    0       5     AAAAA     GPS time of day, seconds, 0..86399
 *    5       8     SBBCCCCC  latitude: sign, 2 digits of degrees, 5 implied decimals
 *   13       9     SDDDEEEEE longitude: sign, 3 digits of degrees, 5 implied decimals
 *   22       3     FFF       speed, mph
 *   25       3     GGG       heading, degrees true
 *   28       1     H         source of data (source_is_fix)
 *   29       1     I         age of data: 2 fresh (< 10 s), 1 old (> 10 s), 0 not available
 *
 * Age 0 is taken as no fix whatever the source says: "not available" means the receiver
 * has no position data at all, and receivers that never had a fix send source 0 (which is
 * also "2D GPS") with zeros in every field. An old fix (age 1) is still a fix: its time of
 * day is that of the position, so the assembler and the filters date it correctly.
 *
 * GPS time is ahead of UTC by GR_GPS_UTC_LEAP_SECONDS; just after GPS midnight the UTC time
 * of day wraps to the end of the previous day (the assembler picks the date nearest the
 * receive time).
 */
static enum gr_reason decode_rpv(const char *d, struct gr_sentence *out)
{
    int secs = gr_digits(d, 5), speed = gr_digits(d + 22, 3), heading = gr_digits(d + 25, 3);

    if (secs < 0 || secs >= SECONDS_PER_DAY || !degrees(d + 5, 2, &out->fix.lat) ||
        !degrees(d + 13, 3, &out->fix.lon) || speed < 0 || heading < 0 || !gr_is_digit(d[28]) ||
        d[29] < '0' || d[29] > '2') {
        return GR_MALFORMED;
    }
    int utc = (secs - GR_GPS_UTC_LEAP_SECONDS + SECONDS_PER_DAY) % SECONDS_PER_DAY;
    out->time_of_day_ms = (int)(utc * 1000);
    out->fix.speed = (double)speed * MPH_TO_MS;
    out->fix.course = (double)heading;
    out->fix.fields = GR_FIX_SPEED | GR_FIX_COURSE;
    out->fix.valid = source_is_fix(d[28]) && d[29] != '0';
    out->has = GR_HAS_TIME | GR_HAS_POSITION | GR_HAS_VALIDITY;
    /* Three digits hold headings up to 999: 360 and up is no bearing (fix.h's bounds). */
    return gr_fix_check_values(&out->fix);
}

enum gr_reason gr_taip_decode(const char *p, size_t len, struct gr_sentence *out)
{
    memset(out, 0, sizeof(*out));
    out->time_of_day_ms = -1;
    out->type = GR_SENT_TAIP_RPV;
    out->fix.src = GR_SRC_TAIP;

    /* '>' and '<' frame every message; without the '<' it was cut short. */
    if (len < 2 || p[0] != '>' || p[len - 1] != '<') {
        return GR_MALFORMED;
    }

    /*
     * end: the '*' or the '<'. TAIP is printable ASCII; anything else, or another '>' or
     * '<' inside, is line noise. The checksum covers '>' through '*' inclusive.
     */
    size_t last = len - 1, end = 1;
    unsigned sum = '>';
    for (; end < last && p[end] != '*'; end++) {
        if (!gr_is_print(p[end]) || p[end] == '>' || p[end] == '<') {
            return GR_MALFORMED;
        }
        sum ^= (unsigned char)p[end];
    }
    enum gr_reason r = gr_checksum_check(p + end, last - end, sum ^ '*', &out->checksum_seen);
    if (r != GR_OK) {
        return r;
    }

    /*
     * Qualifier and message id: an upper-case letter ('R' response, 'Q' query, 'S' set, ...)
     * then two upper-case letters or digits. Only a response with position and velocity is
     * decoded; queries, settings and other reports (">RLN", ">RTM", ">RPR") are well-formed
     * TAIP we do not use.
     */
    if (end < 4 || !gr_is_upper(p[1]) || !(gr_is_upper(p[2]) || gr_is_digit(p[2])) ||
        !(gr_is_upper(p[3]) || gr_is_digit(p[3]))) {
        return GR_MALFORMED;
    }
    if (memcmp(p + 1, "RPV", 3) != 0) {
        return GR_UNSUPPORTED;
    }
    if (end - 4 < RPV_DATA_LEN) {
        return GR_MALFORMED;
    }
    r = decode_rpv(p + 4, out);
    if (r != GR_OK) {
        return r;
    }
    if (!parse_fields(p + 4 + RPV_DATA_LEN, end - 4 - RPV_DATA_LEN, out)) {
        out->id = NULL;
        out->id_len = 0;
        return GR_MALFORMED;
    }
    return GR_OK;
}
