/*
 * report.c - framing of ingest payloads into lines, and the device-id prefix (report.h).
 */
#include <stdbool.h>
#include <string.h>

#include "chars.h"
#include "gpsrelay/format.h"
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
    /*
     * TAIP needs nothing between messages (docs/ingest.md): modems send ">RPV...<>RPV...<".
     * A '<' ends a TAIP message, so one followed by '>' ends the line there and the next
     * call starts at the '>'. JSON strings may hold "<>", so whole-line reports are never
     * cut. One pass, stopping at the first cut: a payload full of "<>" costs linear time,
     * not quadratic.
     */
    bool cut = gr_format_whole_line(buf + start, len - start) == NULL;
    while (i < len && !is_eol(buf[i])) {
        if (cut && buf[i] == '<' && i + 1 < len && buf[i + 1] == '>') {
            *line = buf + start;
            *line_len = i + 1 - start;
            *off = i + 1;
            return true;
        }
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
static enum gr_reason split_prefix(const char *s, const char *e, struct gr_report *out)
{
    struct gr_span id = gr_trim((struct gr_span){s, (size_t)(e - s)});
    if (id.len > 0 && id.p[id.len - 1] == ',') {
        id.len--;
        id = gr_trim(id);
    }
    /* Something was sent before the sentence, but it is not an id: ",$GPRMC", " $GPRMC". */
    if (id.len == 0 || id.len > GR_DEVICE_ID_MAX) {
        return GR_BAD_ID;
    }
    for (size_t i = 0; i < id.len; i++) {
        if (!gr_is_print(id.p[i])) {
            return GR_BAD_ID;
        }
    }
    out->id = id.p;
    out->id_len = id.len;
    return GR_OK;
}

/*
 * Resynchronisation: NMEA and TAIP bodies hold no sentence lead ('$', '>') but their first,
 * so when a line holds several, a modem spliced a broken sentence (its buffer overran, a
 * reconnect cut a write short) before a complete one: "$GPRMC,1234$GPGGA,...*hh". The last
 * lead begins the sentence we can still use; the prefix is what precedes the first, since a
 * modem writes its id before whatever it then sends. Whole-line reports (JSON) carry their
 * id inside and may hold '$' and '>' in strings, so they are recognised first and left whole.
 */
enum gr_reason gr_report_split(const char *line, size_t len, struct gr_report *out)
{
    out->id = NULL;
    out->id_len = 0;
    out->spliced = false;

    const struct gr_format *whole = gr_format_whole_line(line, len);
    if (whole != NULL) {
        out->body = memchr(line, whole->lead, len); /* after spaces only */
        out->body_len = len - (size_t)(out->body - line);
        out->format = whole;
        return GR_OK;
    }

    const char *first, *last;
    out->format = gr_format_sentences(line, len, &first, &last);
    if (out->format == NULL) {
        return GR_MALFORMED;
    }
    out->body = last;
    out->body_len = len - (size_t)(last - line);
    out->spliced = last != first;
    if (first == line) {
        return GR_OK;
    }
    return split_prefix(line, first, out);
}
