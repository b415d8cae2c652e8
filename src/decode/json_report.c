/*
 * json_report.c - JSON position reports (json_report.h, docs/ingest.md), parsed by jansson.
 *
 * The decoder allocates only inside jansson, and every path releases the parsed document
 * before returning. Nesting depth is bounded twice: by the caller, which never hands over a
 * line longer than GR_JSON_LINE_MAX (so fewer than 2048 levels), and by jansson itself
 * (JSON_PARSER_MAX_DEPTH, 2048 in jansson 2.14).
 *
 * out->fix.attrs and attrs_len are left NULL and 0 even when out->attrs holds text: a
 * pointer into *out would dangle as soon as the caller copies or moves the struct, so the
 * caller points them at out->attrs once the report is where it will stay.
 */
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "chars.h"
#include "gpsrelay/calendar.h"
#include "gpsrelay/json_report.h"

#define MS_PER_SECOND 1000

/*
 * Times accepted, in milliseconds since 1970: from 1970-01-01T00:00:00Z up to, not
 * including, 10000-01-01T00:00:00Z (253402300800 s), the end of the 4-digit years ISO 8601
 * writes. Anything earlier is a device clock that was never set; the range also keeps the
 * millisecond arithmetic far from int64 overflow whatever number a sender writes.
 */
#define TIME_MS_MIN 0
#define TIME_MS_END GR_TIME_MS_END

/*
 * Reals in attrs are written with 15 significant digits (DBL_DIG): every decimal a sender
 * writes with at most 15 digits ("12.6", "0.1") comes back as written, where jansson's
 * default of 17 would turn 0.1 into 0.10000000000000001 and grow the text toward the limit.
 */
#define ATTRS_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/*
 * "time": an RFC 3339 string, or seconds since 1970 as a number (integer or with a
 * fraction, rounded to the nearest millisecond). Range checks come before any conversion
 * to an integer, so 1e300 or 9223372036854775807 is refused, never undefined behaviour.
 * Returns GR_OK, GR_MALFORMED or GR_BAD_DATE (gr_time_parse_rfc3339).
 */
static enum gr_reason parse_time(const json_t *v, int64_t *ms)
{
    if (json_is_string(v)) {
        return gr_time_parse_rfc3339(json_string_value(v), json_string_length(v), ms);
    }
    if (json_is_integer(v)) {
        json_int_t s = json_integer_value(v);
        if (s < TIME_MS_MIN / MS_PER_SECOND || s >= TIME_MS_END / MS_PER_SECOND) {
            return GR_MALFORMED;
        }
        *ms = (int64_t)s * MS_PER_SECOND;
        return GR_OK;
    }
    if (json_is_real(v)) {
        double s = json_real_value(v); /* jansson refuses NaN, infinities and overflow */
        if (!(s >= (double)TIME_MS_MIN / MS_PER_SECOND && s < (double)TIME_MS_END / 1000.0)) {
            return GR_MALFORMED;
        }
        *ms = (int64_t)llround(s * MS_PER_SECOND);
        return *ms < TIME_MS_END ? GR_OK : GR_MALFORMED;
    }
    return GR_MALFORMED;
}

/*
 * A device id ends up in logs, metric labels and the mapping lookup. It must be 1 to
 * GR_DEVICE_ID_MAX bytes and hold no control characters: C0 (below 0x20), DEL (0x7f) or C1
 * (U+0080..U+009F, encoded 0xC2 0x80..0x9F). Other UTF-8 is allowed: unlike a line prefix,
 * which may be binary noise, a JSON string is text that jansson has already validated.
 * "\u0000" never gets here: jansson refuses it without JSON_ALLOW_NUL (see decode()).
 */
static bool valid_id(const char *s, size_t n)
{
    if (n == 0 || n > GR_DEVICE_ID_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f ||
            (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
             (unsigned char)s[i + 1] <= 0x9f)) {
            return false;
        }
    }
    return true;
}

/*
 * An optional number: absent and null both mean "not sent" (encoders write null for a
 * value they lack); anything else but a number is malformed. Sets `bit` in *fields.
 */
static bool optional_number(const json_t *root, const char *key, double *out, unsigned bit,
                            unsigned *fields)
{
    const json_t *v = json_object_get(root, key);

    if (v == NULL || json_is_null(v)) {
        return true;
    }
    if (!json_is_number(v)) {
        return false;
    }
    *out = json_number_value(v);
    *fields |= bit;
    return true;
}

static enum gr_reason decode(const json_t *root, struct gr_json_report *out)
{
    struct gr_fix *f = &out->fix;

    if (!json_is_object(root)) {
        return GR_MALFORMED;
    }

    const json_t *lat = json_object_get(root, "lat");
    const json_t *lon = json_object_get(root, "lon");
    const json_t *time = json_object_get(root, "time");
    if (!json_is_number(lat) || !json_is_number(lon)) {
        return GR_MALFORMED;
    }
    enum gr_reason r = parse_time(time, &f->time_ms);
    if (r != GR_OK) {
        return r;
    }
    f->lat = json_number_value(lat);
    f->lon = json_number_value(lon);

    if (!optional_number(root, "speed", &f->speed, GR_FIX_SPEED, &f->fields) ||
        !optional_number(root, "course", &f->course, GR_FIX_COURSE, &f->fields) ||
        !optional_number(root, "alt", &f->alt, GR_FIX_ALT, &f->fields) ||
        !optional_number(root, "hdop", &f->hdop, GR_FIX_HDOP, &f->fields)) {
        return GR_MALFORMED;
    }
    /* A count: an integer (9.0 or 9.5 is not one), and it must fit an int; its bound,
     * GR_FIX_SATS_MAX, is checked with the other values'. */
    const json_t *sats = json_object_get(root, "sats");
    if (sats != NULL && !json_is_null(sats)) {
        if (!json_is_integer(sats) || json_integer_value(sats) < 0 ||
            json_integer_value(sats) > INT_MAX) {
            return GR_MALFORMED;
        }
        f->sats = (int)json_integer_value(sats);
        f->fields |= GR_FIX_SATS;
    }

    const json_t *attrs = json_object_get(root, "attrs");
    if (attrs != NULL && !json_is_null(attrs) && !json_is_object(attrs)) {
        return GR_MALFORMED;
    }
    const json_t *id = json_object_get(root, "id");
    if (id != NULL && !json_is_null(id)) {
        if (!json_is_string(id)) {
            return GR_MALFORMED;
        }
        size_t n = json_string_length(id);
        if (!valid_id(json_string_value(id), n)) {
            return GR_BAD_ID;
        }
        memcpy(out->id, json_string_value(id), n);
        out->id[n] = '\0';
    }

    if (json_is_object(attrs)) {
        /* json_dumpb writes at most the size given and returns the size it needed. */
        size_t n = json_dumpb(attrs, out->attrs, GR_ATTRS_MAX, ATTRS_DUMP_FLAGS);
        if (n > GR_ATTRS_MAX) {
            return GR_ATTRS_TOO_BIG;
        }
        if (n == 0) {
            return GR_MALFORMED; /* jansson could not encode it (out of memory) */
        }
        out->attrs[n] = '\0';
        out->attrs_len = n;
    }
    /* speed -5, course 720 or alt 1e300 are no measurements: refused, never passed on. */
    return gr_fix_check_values(f);
}

enum gr_reason gr_json_report_decode(const char *p, size_t len, struct gr_json_report *out)
{
    memset(out, 0, sizeof(*out));
    out->fix.src = GR_SRC_JSON;
    out->fix.valid = true; /* a JSON report is a fix by definition: there is no status */

    /*
     * Duplicate keys are refused: {"lat":1,"lat":2} means different things to different
     * parsers. No JSON_ALLOW_NUL: a "\u0000" is refused as malformed wherever it is, which
     * keeps every id and the attrs text loadable by anyone with jansson's defaults.
     */
    json_error_t err;
    json_t *root = json_loadb(p, len, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL) {
        return GR_MALFORMED;
    }
    enum gr_reason r = decode(root, out);
    json_decref(root);
    if (r != GR_OK) {
        /* Nothing half-decoded is left behind for a caller that looks anyway. */
        out->id[0] = '\0';
        out->attrs[0] = '\0';
        out->attrs_len = 0;
    }
    return r;
}
