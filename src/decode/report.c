/*
 * report.c - framing of ingest payloads into lines, and the device-id prefix (report.h).
 */
#include <string.h>

#include "gpsrelay/report.h"

static bool is_eol(char c)
{
    return c == '\r' || c == '\n';
}

bool gr_frame_next(const char *buf, size_t len, size_t *off, const char **line, size_t *line_len)
{
    size_t i = *off;

    /* Empty lines, and odd terminators such as CR CR LF, are skipped here. */
    while (i < len && is_eol(buf[i])) {
        i++;
    }
    if (i == len) {
        *off = len;
        return false;
    }
    size_t start = i;
    while (i < len && !is_eol(buf[i])) {
        i++;
    }
    *line = buf + start;
    *line_len = i - start;
    if (i < len) {
        i += buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n' ? 2 : 1;
    }
    *off = i;
    return true;
}

/*
 * The prefix is what modems prepend: "ID," (Cradlepoint "prepend system id") or "ID" right
 * before the '$'. Bytes outside printable ASCII make it line noise rather than an id: ids end
 * up in logs and metric labels.
 */
enum gr_reason gr_report_split(const char *line, size_t len, struct gr_report *out)
{
    const char *dollar = memchr(line, '$', len);
    const char *gt = memchr(line, '>', len);
    const char *body = dollar != NULL && (gt == NULL || dollar < gt) ? dollar : gt;

    if (body == NULL) {
        return GR_MALFORMED;
    }
    out->body = body;
    out->body_len = len - (size_t)(body - line);
    out->id = NULL;
    out->id_len = 0;
    if (body == line) {
        return GR_OK;
    }

    const char *s = line, *e = body;
    while (e > s && e[-1] == ' ') {
        e--;
    }
    if (e > s && e[-1] == ',') {
        e--;
    }
    while (e > s && e[-1] == ' ') {
        e--;
    }
    while (s < e && *s == ' ') {
        s++;
    }
    /* Something was sent before the sentence, but it is not an id: ",$GPRMC", " $GPRMC". */
    if (s == e || (size_t)(e - s) > GR_DEVICE_ID_MAX) {
        return GR_BAD_ID;
    }
    for (const char *c = s; c < e; c++) {
        if ((unsigned char)*c < 0x20 || (unsigned char)*c > 0x7e) {
            return GR_BAD_ID;
        }
    }
    out->id = s;
    out->id_len = (size_t)(e - s);
    return GR_OK;
}
