/*
 * osmand.c - a phone's OsmAnd report. See osmand.h.
 */
#include "gpsrelay/osmand.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gpsrelay/calendar.h"
#include "gpsrelay/form.h"

#define KNOTS_TO_MS (1852.0 / 3600.0)

/* A timestamp of seconds at or past this is milliseconds (2038-01-19 in seconds). */
#define MS_FROM 2147483648.0

/* Longest value looked at: a number, a time, an id. */
#define VALUE_MAX 96

/* The pairs a report uses, each at most once. */
enum field {
    F_ID,
    F_LAT,
    F_LON,
    F_TIME,
    F_SPEED,
    F_COURSE,
    F_ALT,
    F_HDOP,
    F_ACCURACY,
    F_BATT,
    F_CHARGE,
    F_VALID,
    F_COUNT
};

static const struct {
    const char *name;
    enum field field;
} names[] = {
    {"id", F_ID},          {"deviceid", F_ID}, {"lat", F_LAT},           {"lon", F_LON},
    {"timestamp", F_TIME}, {"speed", F_SPEED}, {"bearing", F_COURSE},    {"heading", F_COURSE},
    {"altitude", F_ALT},   {"hdop", F_HDOP},   {"accuracy", F_ACCURACY}, {"batt", F_BATT},
    {"charge", F_CHARGE},  {"valid", F_VALID},
};

/* A whole decimal number, finite. strtod reads "nan", "inf" and hex too: refused. */
static bool number(const char *s, double *out)
{
    if (s[0] == '\0' || strpbrk(s, "xXnNiI") != NULL)
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* seconds, milliseconds (from 2^31), or RFC 3339. */
static enum gr_reason timestamp(const char *s, size_t n, int64_t *ms)
{
    if (memchr(s, '-', n) != NULL)
        return gr_time_parse_rfc3339(s, n, ms);
    double v;
    if (!number(s, &v) || v < 0)
        return GR_MALFORMED;
    double m = v >= MS_FROM ? v : v * 1000.0;
    if (m >= (double)GR_TIME_MS_END)
        return GR_MALFORMED;
    *ms = (int64_t)llround(m);
    return GR_OK;
}

static bool truth(const char *s)
{
    return strcmp(s, "true") == 0 || strcmp(s, "1") == 0;
}

/* attrs, compact, into out; GR_ATTRS_TOO_BIG past GR_ATTRS_MAX. An empty object: none. */
static enum gr_reason put_attrs(json_t *attrs, struct gr_osmand_report *out)
{
    if (json_object_size(attrs) == 0)
        return GR_OK;
    size_t n = json_dumpb(attrs, out->attrs, GR_ATTRS_MAX, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (n > GR_ATTRS_MAX)
        return GR_ATTRS_TOO_BIG;
    if (n == 0)
        return GR_MALFORMED;
    out->attrs[n] = '\0';
    out->attrs_len = n;
    out->fix.attrs = out->attrs;
    out->fix.attrs_len = n;
    return GR_OK;
}

static void begin(struct gr_osmand_report *out)
{
    memset(out, 0, sizeof(*out));
    out->fix.src = GR_SRC_OSMAND;
    out->fix.valid = true;
}

/* The id as given: 1 to GR_DEVICE_ID_MAX bytes, no control characters (form values are
 * checked when decoded; JSON strings here). */
static bool valid_id(const char *s, size_t n)
{
    if (n == 0 || n > GR_DEVICE_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

static enum gr_reason form_field(enum field f, const char *v, size_t n, json_t *attrs,
                                 struct gr_osmand_report *out)
{
    struct gr_fix *fix = &out->fix;
    double x = 0;
    if (f == F_ID) {
        if (!valid_id(v, n))
            return GR_BAD_ID;
        memcpy(out->id, v, n + 1);
        return GR_OK;
    }
    if (f == F_TIME)
        return timestamp(v, n, &fix->time_ms);
    if (f == F_CHARGE) {
        json_object_set_new(attrs, "charge", json_boolean(truth(v)));
        return GR_OK;
    }
    if (f == F_VALID) {
        fix->valid = truth(v);
        return GR_OK;
    }
    if (!number(v, &x))
        return GR_MALFORMED;
    switch (f) {
    case F_LAT:
        fix->lat = x;
        break;
    case F_LON:
        fix->lon = x;
        break;
    case F_SPEED:
        fix->speed = x * KNOTS_TO_MS;
        fix->fields |= GR_FIX_SPEED;
        break;
    case F_COURSE:
        fix->course = x;
        fix->fields |= GR_FIX_COURSE;
        break;
    case F_ALT:
        fix->alt = x;
        fix->fields |= GR_FIX_ALT;
        break;
    case F_HDOP:
        fix->hdop = x;
        fix->fields |= GR_FIX_HDOP;
        break;
    case F_ACCURACY:
        json_object_set_new(attrs, "accuracy", json_real(x));
        break;
    case F_BATT:
        json_object_set_new(attrs, "battery", json_real(x));
        break;
    default:
        break;
    }
    return GR_OK;
}

enum gr_reason gr_osmand_decode_form(const char *p, size_t len, struct gr_osmand_report *out)
{
    begin(out);
    json_t *attrs = json_object();
    if (attrs == NULL)
        return GR_MALFORMED;
    bool seen[F_COUNT] = {false};
    enum gr_reason r = GR_OK;
    const char *end = p + len;
    struct gr_form_pair kv;
    while (r == GR_OK && gr_form_next(&p, end, &kv)) {
        size_t k = 0;
        while (k < sizeof(names) / sizeof(names[0]) && !gr_form_named(&kv, names[k].name))
            k++;
        if (k == sizeof(names) / sizeof(names[0]))
            continue; /* a name of the client's own */
        enum field f = names[k].field;
        char v[VALUE_MAX + 1];
        long n = gr_form_decode(kv.value, kv.value_len, v, VALUE_MAX);
        if (seen[f] || n < 0)
            r = f == F_ID && n < 0 && !seen[f] ? GR_BAD_ID : GR_MALFORMED;
        else
            r = form_field(f, v, (size_t)n, attrs, out);
        seen[f] = true;
    }
    if (r == GR_OK && (!seen[F_ID] || !seen[F_LAT] || !seen[F_LON] || !seen[F_TIME]))
        r = GR_MISSING_FIELD;
    if (r == GR_OK)
        r = put_attrs(attrs, out);
    json_decref(attrs);
    return r == GR_OK ? gr_fix_check_values(&out->fix) : r;
}

/* A JSON number member of o into *v: 1 present, 0 absent (or null), -1 not a number. */
static int json_number(const json_t *o, const char *name, double *v)
{
    const json_t *m = json_object_get(o, name);
    if (m == NULL || json_is_null(m))
        return 0;
    if (!json_is_number(m))
        return -1;
    *v = json_number_value(m);
    return 1;
}

enum gr_reason gr_osmand_decode_json(const char *p, size_t len, struct gr_osmand_report *out)
{
    begin(out);
    json_error_t err;
    json_t *root = json_loadb(p, len, JSON_REJECT_DUPLICATES, &err);
    json_t *attrs = json_object();
    enum gr_reason r = GR_MALFORMED;
    const json_t *id = json_object_get(root, "device_id");
    const json_t *loc = json_object_get(root, "location");
    const json_t *coords = json_object_get(loc, "coords");
    const json_t *ts = json_object_get(loc, "timestamp");
    const json_t *batt = json_object_get(loc, "battery");
    struct gr_fix *f = &out->fix;
    double x;
    if (root == NULL || attrs == NULL || !json_is_object(root))
        goto out;
    if (coords != NULL && !json_is_object(coords))
        goto out;
    if (id == NULL || ts == NULL || json_object_get(coords, "latitude") == NULL ||
        json_object_get(coords, "longitude") == NULL) {
        r = GR_MISSING_FIELD;
        goto out;
    }
    if (!json_is_string(id) || !valid_id(json_string_value(id), json_string_length(id))) {
        r = GR_BAD_ID;
        goto out;
    }
    memcpy(out->id, json_string_value(id), json_string_length(id) + 1);
    if (!json_is_string(ts) ||
        (r = gr_time_parse_rfc3339(json_string_value(ts), json_string_length(ts), &f->time_ms)) !=
            GR_OK) {
        r = r == GR_BAD_DATE ? r : GR_MALFORMED;
        goto out;
    }
    r = GR_MALFORMED;
    if (json_number(coords, "latitude", &f->lat) != 1 ||
        json_number(coords, "longitude", &f->lon) != 1)
        goto out;
    /* The SDK says -1 for a speed or heading it does not know: absent, not a value. */
    static const struct {
        const char *name;
        unsigned bit;
        size_t offset;
    } optional[] = {
        {"speed", GR_FIX_SPEED, offsetof(struct gr_fix, speed)},
        {"heading", GR_FIX_COURSE, offsetof(struct gr_fix, course)},
        {"altitude", GR_FIX_ALT, offsetof(struct gr_fix, alt)},
    };
    for (size_t i = 0; i < sizeof(optional) / sizeof(optional[0]); i++) {
        int got = json_number(coords, optional[i].name, &x);
        if (got < 0)
            goto out;
        if (got == 1 && !(optional[i].bit != GR_FIX_ALT && x < 0)) {
            *(double *)((char *)f + optional[i].offset) = x;
            f->fields |= optional[i].bit;
        }
    }
    if (json_number(coords, "accuracy", &x) == 1)
        json_object_set_new(attrs, "accuracy", json_real(x));
    if (json_is_object(batt) && json_number(batt, "level", &x) == 1)
        json_object_set_new(attrs, "battery", json_real(x));
    if (json_is_object(batt) && json_is_boolean(json_object_get(batt, "is_charging")))
        json_object_set(attrs, "charge", json_object_get(batt, "is_charging"));
    if (json_is_boolean(json_object_get(loc, "is_moving")))
        json_object_set(attrs, "motion", json_object_get(loc, "is_moving"));
    if (json_number(loc, "odometer", &x) == 1)
        json_object_set_new(attrs, "odometer", json_real(x));
    if (json_is_string(json_object_get(loc, "event")))
        json_object_set(attrs, "event", json_object_get(loc, "event"));
    r = put_attrs(attrs, out);
    if (r == GR_OK)
        r = gr_fix_check_values(f);
out:
    json_decref(attrs);
    json_decref(root);
    return r;
}
