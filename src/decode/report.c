/*
 * report.c - framing of ingest payloads into lines, and the device-id prefix (report.h).
 */
#include <stdbool.h>

#include "gpsrelay/report.h"

static bool is_eol(char c)
{
    return c == '\r' || c == '\n';
}

/* A JSON report: '{' first after optional spaces. Such a line ends only at CR or LF. */
static bool is_json(const char *p, size_t len)
{
    size_t i = 0;

    while (i < len && p[i] == ' ') {
        i++;
    }
    return i < len && p[i] == '{';
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
     * TAIP needs nothing between messages (SPEC section 4): modems send ">RPV...<>RPV...<".
     * A '<' ends a TAIP message, so one followed by '>' ends the line there and the next
     * call starts at the '>'. JSON strings may hold "<>", so JSON lines are never cut. One
     * pass, stopping at the first cut: a payload full of "<>" costs linear time, not
     * quadratic.
     */
    bool json = is_json(buf + start, len - start);
    while (i < len && !is_eol(buf[i])) {
        if (!json && buf[i] == '<' && i + 1 < len && buf[i + 1] == '>') {
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

static bool is_start(char c)
{
    return c == '$' || c == '>';
}

/*
 * Resynchronisation: NMEA and TAIP bodies hold no '$' or '>' but their first, so when a
 * line holds several, a modem spliced a broken sentence (its buffer overran, a reconnect
 * cut a write short) before a complete one: "$GPRMC,1234$GPGGA,...*hh". The last start
 * begins the sentence we can still use; the prefix is what precedes the first, since a
 * modem writes its id before whatever it then sends. JSON reports carry their id inside
 * and may hold '$' and '>' in strings, so they are recognised first and left whole.
 */
enum gr_reason gr_report_split(const char *line, size_t len, struct gr_report *out)
{
    out->id = NULL;
    out->id_len = 0;
    out->spliced = false;

    size_t lead = 0;
    while (lead < len && line[lead] == ' ') {
        lead++;
    }
    if (lead < len && line[lead] == '{') {
        /* From the '{': ingest tells JSON from sentences by the body's first byte. */
        out->body = line + lead;
        out->body_len = len - lead;
        return GR_OK;
    }

    const char *first = NULL, *last = NULL;
    for (const char *c = line; c < line + len; c++) {
        if (is_start(*c)) {
            if (first == NULL) {
                first = c;
            }
            last = c;
        }
    }
    if (first == NULL) {
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
