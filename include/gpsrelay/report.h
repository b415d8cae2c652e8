/*
 * report.h - framing of ingest payloads into reports, and the device-id prefix.
 * Pure: no allocation, no I/O.
 */
#ifndef GPSRELAY_REPORT_H
#define GPSRELAY_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "gpsrelay/fix.h"

/* Longest report line accepted, without its line terminator (SPEC section 4). */
#define GR_LINE_MAX 256

/*
 * Longest JSON report line. SPEC section 4 allows "attrs" of up to 1 KiB, which no
 * 256-byte line can carry, so JSON lines (first byte '{') get room for the attrs, the
 * fixed fields and their names: GR_ATTRS_MAX + 1 KiB.
 */
#define GR_JSON_LINE_MAX 2048

/* Longest device id accepted. Real ids are short (AMB-12, 0x + 16 hex digits). */
#define GR_DEVICE_ID_MAX 64

/*
 * Returns the next non-empty line of buf[*off..len) in *line and *line_len, advances *off
 * past it and its terminator (CR, LF or CRLF). Returns false when none is left. A line
 * longer than GR_LINE_MAX is still returned whole so the caller can count it.
 * TAIP messages sent back to back (">...<>...<") are lines of their own: a '<' directly
 * followed by '>' ends a line. A line starting with '{' (after spaces) is a JSON report and
 * ends only at CR or LF.
 */
bool gr_frame_next(const char *buf, size_t len, size_t *off, const char **line, size_t *line_len);

struct gr_report {
    const char *id; /* device id from the prefix, or NULL when there was none */
    size_t id_len;
    const char *body; /* from the last '$' or '>' on; a JSON report from its '{' on */
    size_t body_len;
    bool spliced; /* bytes between the first and the last '$'/'>' were dropped: a broken
                   * sentence cut off by a newer one (counted by ingest) */
};

/*
 * Splits a line into its optional device-id prefix and its sentence: "AMB-12,$GPRMC..."
 * and "AMB-12$GPRMC..." both give id "AMB-12". The prefix is what precedes the first '$'
 * or '>'; the sentence starts at the last one (resynchronisation: NMEA and TAIP bodies hold
 * no other). A line starting with '{' after spaces is a JSON report: no prefix, id NULL.
 * Returns GR_OK, GR_MALFORMED when the line holds no '$', '>' or leading '{', or GR_BAD_ID
 * when the prefix is empty, longer than GR_DEVICE_ID_MAX or not printable ASCII.
 */
enum gr_reason gr_report_split(const char *line, size_t len, struct gr_report *out);

#endif
