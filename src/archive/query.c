/*
 * query.c - the query strings of /api/history and /api/snapshot. See history_query.h.
 */
#include "gpsrelay/history_query.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "gpsrelay/calendar.h"
#include "gpsrelay/form.h"

/* Seconds since 1970 as digits with an optional fraction, to the millisecond (truncated). */
static int epoch_seconds(const char *s, size_t n, int64_t *ms)
{
    int64_t secs = 0;
    size_t i = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        secs = secs * 10 + (s[i] - '0');
        if (secs >= GR_TIME_MS_END / 1000)
            return -EINVAL;
    }
    if (i == 0)
        return -EINVAL;
    int frac = 0, scale = 100;
    if (i < n && s[i] == '.') {
        size_t digits = 0;
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, digits++) {
            frac += (s[i] - '0') * scale;
            scale /= 10;
        }
        if (digits == 0)
            return -EINVAL;
    }
    if (i != n)
        return -EINVAL;
    *ms = secs * 1000 + frac;
    return 0;
}

int gr_query_time_parse(const char *s, size_t n, int64_t *ms)
{
    if (n > 0 && n <= 40 && memchr(s, '-', n) != NULL)
        return gr_time_parse_rfc3339(s, n, ms) == GR_OK ? 0 : -EINVAL;
    return n <= 40 ? epoch_seconds(s, n, ms) : -EINVAL;
}

/* The decoded value of p as a time; the reason it is not one, or NULL. */
static const char *time_value(const struct gr_form_pair *p, int64_t *ms, const char *bad)
{
    char v[64];
    long n = gr_form_decode(p->value, p->value_len, v, sizeof(v) - 1);
    return n <= 0 || gr_query_time_parse(v, (size_t)n, ms) < 0 ? bad : NULL;
}

const char *gr_history_query_parse(const char *qs, size_t len, struct gr_history_query *out)
{
    if (len > GR_HISTORY_QUERY_MAX)
        return "query too long";
    memset(out, 0, sizeof(*out));
    out->limit = GR_HISTORY_LIMIT_DEFAULT;
    bool device = false, from = false, to = false, limit = false, format = false;
    const char *p = qs, *end = qs + len, *why;
    struct gr_form_pair kv;
    while (gr_form_next(&p, end, &kv)) {
        if (gr_form_named(&kv, "token"))
            continue;
        if (gr_form_named(&kv, "device")) {
            long n = gr_form_decode(kv.value, kv.value_len, out->device, GR_DEVICE_ID_MAX);
            if (device || n <= 0)
                return device ? "device given twice" : "bad device";
            device = true;
        } else if (gr_form_named(&kv, "from")) {
            if (from)
                return "from given twice";
            if ((why = time_value(&kv, &out->from_ms, "bad from: RFC 3339 or seconds since 1970")))
                return why;
            from = true;
        } else if (gr_form_named(&kv, "to")) {
            if (to)
                return "to given twice";
            if ((why = time_value(&kv, &out->to_ms, "bad to: RFC 3339 or seconds since 1970")))
                return why;
            to = true;
        } else if (gr_form_named(&kv, "limit")) {
            char v[16];
            long n = gr_form_decode(kv.value, kv.value_len, v, sizeof(v) - 1), l = 0;
            if (limit)
                return "limit given twice";
            for (long i = 0; i < n && l <= GR_HISTORY_LIMIT_MAX; i++)
                l = v[i] >= '0' && v[i] <= '9' ? l * 10 + (v[i] - '0') : -1L - GR_HISTORY_LIMIT_MAX;
            if (n <= 0 || l < 1 || l > GR_HISTORY_LIMIT_MAX)
                return "limit must be 1 to 100000";
            out->limit = l;
            limit = true;
        } else if (gr_form_named(&kv, "format")) {
            char v[16];
            long n = gr_form_decode(kv.value, kv.value_len, v, sizeof(v) - 1);
            if (format)
                return "format given twice";
            if (n > 0 && strcmp(v, "ndjson") == 0)
                out->format = GR_HISTORY_NDJSON;
            else if (n > 0 && strcmp(v, "geojson") == 0)
                out->format = GR_HISTORY_GEOJSON;
            else
                return "format must be ndjson or geojson";
            format = true;
        } else {
            return "unknown parameter";
        }
    }
    if (!device || !from || !to)
        return !device ? "device is required" : !from ? "from is required" : "to is required";
    if (out->from_ms > out->to_ms)
        return "from is after to";
    return NULL;
}

const char *gr_snapshot_query_parse(const char *qs, size_t len, struct gr_snapshot_query *out)
{
    if (len > GR_HISTORY_QUERY_MAX)
        return "query too long";
    memset(out, 0, sizeof(*out));
    bool agency = false, at = false;
    const char *p = qs, *end = qs + len, *why;
    struct gr_form_pair kv;
    while (gr_form_next(&p, end, &kv)) {
        if (gr_form_named(&kv, "token"))
            continue;
        if (gr_form_named(&kv, "agency")) {
            long n = gr_form_decode(kv.value, kv.value_len, out->agency, GR_AGENCY_ID_MAX);
            if (agency || n <= 0)
                return agency ? "agency given twice" : "bad agency";
            agency = true;
        } else if (gr_form_named(&kv, "at")) {
            if (at)
                return "at given twice";
            if ((why = time_value(&kv, &out->at_ms, "bad at: RFC 3339 or seconds since 1970")))
                return why;
            at = true;
        } else {
            return "unknown parameter";
        }
    }
    if (!agency || !at)
        return !agency ? "agency is required" : "at is required";
    return NULL;
}
