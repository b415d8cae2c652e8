/*
 * encode.c - a fix to its position JSON, once per accepted fix; every console that needs
 * the position copies these bytes (gr_position).
 *
 * Written by hand, not with jansson or the JSON writer (jsonw.h), because this is the hot
 * path: it runs once per accepted fix, and printing doubles with printf("%g") was a
 * quarter of the daemon's time under load (bench/RESULTS.md; bench/run-fanout.sh and
 * bench/run-decode.sh measure it). Numbers are fixed-point integers, which is also the
 * shape docs/protocol.md gives: lat/lon with exactly 7 decimals (about 1 cm). The only
 * string that could need escaping, the device id, comes in as a JSON literal already.
 */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/calendar.h"
#include "gpsrelay/format.h"

/* Writes v in decimal; returns the end. */
static char *put_u64(char *p, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = digits[--n];
    return p;
}

/* Writes n digits of v, zero-padded. */
static char *put_padded(char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + n;
}

static const uint64_t pow10_table[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000};

/*
 * Writes v rounded to decimals places. trim drops trailing zeros (12.30 -> 12.3, 5.00 ->
 * 5). Values are range-checked before they get here (|lat| <= 90 and so on), so the
 * scaled integer fits easily.
 */
static char *put_fixed(char *p, double v, int decimals, bool trim)
{
    uint64_t scale = pow10_table[decimals];
    double scaled = round(fabs(v) * (double)scale);
    uint64_t n = scaled < 1e18 ? (uint64_t)scaled : 0;
    if (v < 0 && n != 0)
        *p++ = '-';
    p = put_u64(p, n / scale);
    uint64_t frac = n % scale;
    if (trim) {
        while (decimals > 0 && frac % 10 == 0) {
            frac /= 10;
            decimals--;
        }
    }
    if (decimals > 0) {
        *p++ = '.';
        p = put_padded(p, frac, decimals);
    }
    return p;
}

/* Longest position without attrs: the id's JSON literal aside, every field at its widest
 * ("seq":20 digits, "time":24 chars, numbers of up to 20 digits each) fits easily. */
#define POSITION_FIXED_MAX 384

static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/*
 * The shape is docs/protocol.md's: lat/lon 7 decimals, speed to 0.01 m/s, course and alt
 * to 0.1, hdop to 0.01; fields that are not known are left out. "attrs" is spliced in as
 * the JSON decoder left it.
 */
struct gr_position *gr_position_encode(const char *json_id, uint64_t seq, const struct gr_fix *f)
{
    size_t cap = POSITION_FIXED_MAX + strlen(json_id) + (f->attrs ? f->attrs_len : 0);
    struct gr_position *pos = malloc(sizeof(*pos) + cap);
    if (pos == NULL)
        return NULL;
    char when[GR_TIME_TEXT_MAX];
    gr_time_format(f->time_ms, when);

    char *p = pos->json;
    p = put_str(p, "{\"device\":");
    p = put_str(p, json_id);
    p = put_str(p, ",\"seq\":");
    p = put_u64(p, seq);
    p = put_str(p, ",\"time\":\"");
    p = put_str(p, when);
    p = put_str(p, "\",\"lat\":");
    p = put_fixed(p, f->lat, 7, false);
    p = put_str(p, ",\"lon\":");
    p = put_fixed(p, f->lon, 7, false);
    if (f->fields & GR_FIX_SPEED) {
        p = put_str(p, ",\"speed\":");
        p = put_fixed(p, f->speed, 2, true);
    }
    if (f->fields & GR_FIX_COURSE) {
        p = put_str(p, ",\"course\":");
        p = put_fixed(p, f->course, 1, true);
    }
    if (f->fields & GR_FIX_ALT) {
        p = put_str(p, ",\"alt\":");
        p = put_fixed(p, f->alt, 1, true);
    }
    if (f->fields & GR_FIX_HDOP) {
        p = put_str(p, ",\"hdop\":");
        p = put_fixed(p, f->hdop, 2, true);
    }
    if (f->fields & GR_FIX_SATS) {
        p = put_str(p, ",\"sats\":");
        p = put_fixed(p, f->sats, 0, false);
    }
    p = put_str(p, ",\"src\":\"");
    p = put_str(p, gr_source_name(f->src));
    *p++ = '"';
    if (f->attrs != NULL) {
        p = put_str(p, ",\"attrs\":");
        memcpy(p, f->attrs, f->attrs_len);
        p += f->attrs_len;
    }
    *p++ = '}';
    *p = '\0';
    pos->json_len = (size_t)(p - pos->json);
    pos->seq = seq;
    pos->time_ms = f->time_ms;
    pos->lat = f->lat;
    pos->lon = f->lon;
    return pos;
}
