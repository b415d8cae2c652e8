/*
 * wire.c - an accepted fix as a message of the position stream, and back. See
 * cluster_wire.h for the format.
 */
#include "gpsrelay/cluster_wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/calendar.h"
#include "gpsrelay/format.h"

static bool subject_safe(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* The id as a subject token: [A-Za-z0-9_-] as is, every other byte %XX. */
static size_t escape_id(const char *id, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        if (subject_safe(*p)) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return n;
}

/* A JSON string literal of s (validated ids: no control characters, at most
 * GR_DEVICE_ID_MAX bytes, so 2 * that + 3 bytes always hold it). */
static size_t quote(const char *s, char *out)
{
    size_t n = 0;
    out[n++] = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            out[n++] = '\\';
        out[n++] = *s;
    }
    out[n++] = '"';
    out[n] = '\0';
    return n;
}

int gr_wire_encode(const char *name, const char *id, const struct gr_fix *f, int64_t rx_ms,
                   struct gr_wire_msg *out)
{
    size_t name_len = strlen(name), id_len = strlen(id);
    if (name_len == 0 || name_len > GR_WIRE_NAME_MAX || id_len == 0 || id_len > GR_DEVICE_ID_MAX)
        return -EINVAL;
    if (f->attrs_len > GR_ATTRS_MAX)
        return -EINVAL;
    char escaped[3 * GR_DEVICE_ID_MAX + 1], quoted[2 * GR_DEVICE_ID_MAX + 3];
    char when[GR_TIME_TEXT_MAX];
    escape_id(id, escaped);
    quote(id, quoted);
    gr_time_format(f->time_ms, when);
    snprintf(out->subject, sizeof(out->subject), "%s.pos.%s", name, escaped);
    snprintf(out->msg_id, sizeof(out->msg_id), "%s/%" PRId64, escaped, f->time_ms);
    snprintf(out->rx, sizeof(out->rx), "%" PRId64, rx_ms);
    out->src = gr_source_name(f->src);

    char *b = out->body;
    size_t room = sizeof(out->body), n = 0;
#define PUT(...) (n += (size_t)snprintf(b + n, room - n, __VA_ARGS__))
    PUT("{\"id\":%s,\"time\":\"%s\",\"lat\":%.17g,\"lon\":%.17g", quoted, when, f->lat, f->lon);
    if (f->fields & GR_FIX_SPEED)
        PUT(",\"speed\":%.17g", f->speed);
    if (f->fields & GR_FIX_COURSE)
        PUT(",\"course\":%.17g", f->course);
    if (f->fields & GR_FIX_ALT)
        PUT(",\"alt\":%.17g", f->alt);
    if (f->fields & GR_FIX_HDOP)
        PUT(",\"hdop\":%.17g", f->hdop);
    if (f->fields & GR_FIX_SATS)
        PUT(",\"sats\":%d", f->sats);
    if (f->attrs != NULL && f->attrs_len > 0)
        PUT(",\"attrs\":%.*s", (int)f->attrs_len, f->attrs);
    PUT("}");
#undef PUT
    out->body_len = n; /* GR_WIRE_BODY_MAX holds the largest: never truncated */
    return 0;
}

enum gr_reason gr_wire_decode(const char *body, size_t len, const char *rx, const char *src,
                              struct gr_json_report *out, int64_t *rx_ms)
{
    if (rx == NULL || src == NULL || len == 0 || body[0] != '{')
        return GR_MALFORMED;
    char *end;
    errno = 0;
    long long ms = strtoll(rx, &end, 10);
    if (errno != 0 || end == rx || *end != '\0' || ms < 0)
        return GR_MALFORMED;
    enum gr_fix_source s = gr_source_parse(src);
    if (s == GR_SRC_COUNT)
        return GR_MALFORMED;
    enum gr_reason r = gr_json_report_decode(body, len, out);
    if (r != GR_OK)
        return r;
    if (out->id[0] == '\0')
        return GR_MALFORMED;
    out->fix.src = s;
    *rx_ms = ms;
    return GR_OK;
}
