/*
 * history_encode.c - archive rows to positions and GeoJSON. See history_encode.h.
 */
#include "history_encode.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gpsrelay/calendar.h"
#include "gpsrelay/format.h"
#include "gpsrelay/jsonw.h"
#include "gpsrelay/json_report.h"
#include "gpsrelay/hub.h"

/* As the JSON decoder dumps attrs (json_report.c), so a number reads the same again. */
#define ATTRS_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_PRESERVE_ORDER)

/* Longest attrs text accepted back from the archive: what the decoder lets through, with
 * room for jsonb's spaces after every ':' and ','. */
#define ATTRS_TEXT_MAX (2 * GR_ATTRS_MAX)

/* A whole column as a finite double. */
static bool number(const char *s, double *out)
{
    char *end;
    if (s == NULL || *s == '\0')
        return false;
    errno = 0;
    *out = strtod(s, &end);
    return *end == '\0' && errno == 0 && isfinite(*out);
}

static bool integer(const char *s, long long min, long long max, long long *out)
{
    char *end;
    if (s == NULL || *s == '\0')
        return false;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return *end == '\0' && errno == 0 && *out >= min && *out <= max;
}

/* An optional double column into fix (bit says which); false for text that is no number. */
static bool optional(const char *s, double *to, unsigned bit, struct gr_fix *fix)
{
    if (s == NULL)
        return true;
    if (!number(s, to))
        return false;
    fix->fields |= bit;
    return true;
}

struct gr_position *gr_history_position(const char *const v[GR_HCOL_COUNT], const char *json_id,
                                        const char **why)
{
    struct gr_fix fix;
    memset(&fix, 0, sizeof(fix));
    fix.valid = true;
    long long time_ms, seq, sats;
    *why = "time";
    if (!integer(v[GR_HCOL_TIME], 0, GR_TIME_MS_END - 1, &time_ms))
        return NULL;
    fix.time_ms = time_ms;
    *why = "lat or lon";
    if (!number(v[GR_HCOL_LAT], &fix.lat) || !number(v[GR_HCOL_LON], &fix.lon) ||
        fabs(fix.lat) > 90.0 || fabs(fix.lon) > 180.0)
        return NULL;
    *why = "speed, course, alt, hdop or sats";
    if (!optional(v[GR_HCOL_SPEED], &fix.speed, GR_FIX_SPEED, &fix) ||
        !optional(v[GR_HCOL_COURSE], &fix.course, GR_FIX_COURSE, &fix) ||
        !optional(v[GR_HCOL_ALT], &fix.alt, GR_FIX_ALT, &fix) ||
        !optional(v[GR_HCOL_HDOP], &fix.hdop, GR_FIX_HDOP, &fix))
        return NULL;
    if (v[GR_HCOL_SATS] != NULL) {
        if (!integer(v[GR_HCOL_SATS], 0, GR_FIX_SATS_MAX, &sats))
            return NULL;
        fix.sats = (int)sats;
        fix.fields |= GR_FIX_SATS;
    }
    if (gr_fix_check_values(&fix) != GR_OK)
        return NULL;
    *why = "src";
    fix.src = v[GR_HCOL_SRC] != NULL ? gr_source_parse(v[GR_HCOL_SRC]) : GR_SRC_COUNT;
    if (fix.src == GR_SRC_COUNT)
        return NULL;
    *why = "seq";
    if (!integer(v[GR_HCOL_SEQ], 0, INT64_MAX, &seq))
        return NULL;
    *why = "device";
    if (v[GR_HCOL_DEVICE] == NULL || strlen(v[GR_HCOL_DEVICE]) > GR_DEVICE_ID_MAX)
        return NULL;

    char *attrs = NULL, *quoted = NULL;
    struct gr_position *p = NULL;
    if (v[GR_HCOL_ATTRS] != NULL) {
        *why = "attrs";
        json_t *o = strlen(v[GR_HCOL_ATTRS]) <= ATTRS_TEXT_MAX
                        ? json_loads(v[GR_HCOL_ATTRS], JSON_REJECT_DUPLICATES, NULL)
                        : NULL;
        attrs = json_is_object(o) ? json_dumps(o, ATTRS_DUMP_FLAGS) : NULL;
        json_decref(o);
        if (attrs == NULL)
            return NULL; /* not an object (or no memory: counted as a bad row, and rare) */
        fix.attrs = attrs;
        fix.attrs_len = strlen(attrs);
    }
    *why = NULL;
    if (json_id == NULL && (json_id = quoted = gr_json_quote(v[GR_HCOL_DEVICE])) == NULL)
        goto out;
    p = gr_position_encode(json_id, (uint64_t)seq, &fix);
out:
    free(quoted);
    free(attrs);
    return p;
}

int gr_history_put_line(struct gr_buf *out, const struct gr_position *p)
{
    if (gr_buf_append(out, p->json, p->json_len) < 0 || gr_buf_append(out, "\n", 1) < 0)
        return -ENOMEM;
    return 0;
}

/* "-74.0060000" (the encoder's 7 fixed decimals) as -740060000. */
static int32_t fixed7(const char *s)
{
    bool neg = *s == '-';
    int64_t v = 0;
    for (s += neg; *s != '\0' && *s != ',' && *s != '}'; s++) {
        if (*s != '.')
            v = v * 10 + (*s - '0');
    }
    return (int32_t)(neg ? -v : v);
}

static int put_fixed7(struct gr_buf *out, int32_t v)
{
    char text[16];
    char *p = text + sizeof(text);
    uint32_t a = v < 0 ? (uint32_t)(-(int64_t)v) : (uint32_t)v;
    for (int i = 0; i < 7; i++, a /= 10)
        *--p = (char)('0' + a % 10);
    *--p = '.';
    do {
        *--p = (char)('0' + a % 10);
        a /= 10;
    } while (a != 0);
    if (v < 0)
        *--p = '-';
    return gr_buf_append(out, p, (size_t)(text + sizeof(text) - p));
}

int gr_history_put_coord(struct gr_buf *out, const int32_t coord[2], bool first)
{
    if (gr_buf_append(out, ",[" + first, 2 - first) < 0 || put_fixed7(out, coord[0]) < 0 ||
        gr_buf_append(out, ",", 1) < 0 || put_fixed7(out, coord[1]) < 0 ||
        gr_buf_append(out, "]", 1) < 0)
        return -ENOMEM;
    return 0;
}

int gr_history_put_point(struct gr_buf *out, const struct gr_position *p, bool first,
                         int32_t coord[2])
{
    /* The encoder writes {"device":..,"seq":..,"time":"..","lat":X,"lon":Y[,...]}: no
     * member before lat can hold ,"lat": (ids have no quotes, times none either). */
    static const char lat_key[] = ",\"lat\":", lon_key[] = ",\"lon\":";
    const char *lat = strstr(p->json, lat_key);
    const char *lon = lat ? strstr(lat, lon_key) : NULL;
    if (lon == NULL)
        return -EINVAL;
    const char *rest = lon + sizeof(lon_key) - 1;
    rest += strcspn(rest, ",}");
    coord[0] = fixed7(lon + sizeof(lon_key) - 1);
    coord[1] = fixed7(lat + sizeof(lat_key) - 1);
    static const char head[] = ",{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\","
                               "\"coordinates\":";
    static const char props[] = "},\"properties\":";
    if (gr_buf_append(out, head + first, sizeof(head) - 1 - first) < 0 ||
        gr_history_put_coord(out, coord, true) < 0 ||
        gr_buf_append(out, props, sizeof(props) - 1) < 0 ||
        gr_buf_append(out, p->json, (size_t)(lat - p->json)) < 0 ||
        gr_buf_append(out, rest, strlen(rest)) < 0 || gr_buf_append(out, "}", 1) < 0)
        return -ENOMEM;
    return 0;
}
