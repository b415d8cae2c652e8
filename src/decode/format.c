/*
 * format.c - the table of ingest formats (format.h): the one place that says which lead
 * byte is which format.
 */
#include "gpsrelay/format.h"

#include <string.h>

#include "gpsrelay/json_report.h"
#include "gpsrelay/nmea.h"
#include "gpsrelay/taip.h"

static enum gr_reason decode_nmea(const char *p, size_t len, struct gr_decoded *out)
{
    out->kind = GR_DECODED_SENTENCE;
    return gr_nmea_decode(p, len, &out->sentence);
}

static enum gr_reason decode_taip(const char *p, size_t len, struct gr_decoded *out)
{
    out->kind = GR_DECODED_SENTENCE;
    return gr_taip_decode(p, len, &out->sentence);
}

static enum gr_reason decode_json(const char *p, size_t len, struct gr_decoded *out)
{
    out->kind = GR_DECODED_REPORT;
    return gr_json_report_decode(p, len, &out->report);
}

/* One row per format, at its enum gr_fix_source value. */
static const struct gr_format formats[GR_SRC_LINE_FORMATS] = {
    [GR_SRC_NMEA] = {'$', false, GR_LINE_MAX, "nmea", decode_nmea},
    [GR_SRC_TAIP] = {'>', false, GR_LINE_MAX, "taip", decode_taip},
    [GR_SRC_JSON] = {'{', true, GR_JSON_LINE_MAX, "json", decode_json},
};

const struct gr_format *gr_format_whole_line(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && line[i] == ' ') {
        i++;
    }
    for (int f = 0; i < len && f < GR_SRC_LINE_FORMATS; f++) {
        if (formats[f].whole_line && line[i] == formats[f].lead) {
            return &formats[f];
        }
    }
    return NULL;
}

/* memchr and memrchr per format rather than one loop testing every byte against every
 * lead: they go a word or a vector at a time, and lines are mostly sentence text. */
const struct gr_format *gr_format_sentences(const char *line, size_t len, const char **first,
                                            const char **last)
{
    const struct gr_format *found = NULL;
    const char *lo = NULL, *hi = NULL;

    for (int f = 0; f < GR_SRC_LINE_FORMATS; f++) {
        if (formats[f].whole_line) {
            continue;
        }
        const char *a = memchr(line, formats[f].lead, len);
        if (a == NULL) {
            continue;
        }
        const char *z = memrchr(a, formats[f].lead, len - (size_t)(a - line));
        if (lo == NULL || a < lo) {
            lo = a;
        }
        if (hi == NULL || z > hi) {
            hi = z;
            found = &formats[f];
        }
    }
    if (found != NULL) {
        *first = lo;
        *last = hi;
    }
    return found;
}

size_t gr_format_line_max(const char *line, size_t len)
{
    const struct gr_format *whole = gr_format_whole_line(line, len);
    if (whole != NULL) {
        return whole->line_max;
    }
    size_t max = 0;
    for (int f = 0; f < GR_SRC_LINE_FORMATS; f++) {
        if (!formats[f].whole_line && formats[f].line_max > max) {
            max = formats[f].line_max;
        }
    }
    return max;
}

const struct gr_format *gr_format_get(enum gr_fix_source src)
{
    return (unsigned)src < GR_SRC_LINE_FORMATS ? &formats[src] : NULL;
}

const char *gr_source_name(enum gr_fix_source src)
{
    if (src == GR_SRC_OSMAND)
        return "osmand";
    /* An out-of-range value is a bug upstream, but a name must never be NULL. */
    return (unsigned)src < GR_SRC_LINE_FORMATS ? formats[src].name : "unknown";
}

enum gr_fix_source gr_source_parse(const char *name)
{
    for (int s = 0; s < GR_SRC_COUNT; s++)
        if (strcmp(name, gr_source_name((enum gr_fix_source)s)) == 0)
            return (enum gr_fix_source)s;
    return GR_SRC_COUNT;
}
