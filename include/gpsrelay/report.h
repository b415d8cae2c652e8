/*
 * report.h - framing of ingest payloads into report lines, and the device-id prefix.
 * Which format a line holds is the table's to say (format.h). Pure: no allocation, no I/O.
 */
#ifndef GPSRELAY_REPORT_H
#define GPSRELAY_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "gpsrelay/fix.h"
#include "gpsrelay/format.h"

/*
 * Returns the next non-empty line of buf[*off..len) in *line and *line_len, advances *off
 * past it and its terminator (CR, LF or CRLF). Returns false when none is left. A line
 * longer than GR_LINE_MAX is still returned whole so the caller can count it.
 * TAIP messages sent back to back (">...<>...<") are lines of their own: a '<' directly
 * followed by '>' ends a line, unless the line is a whole report (gr_format_whole_line:
 * JSON, whose strings may hold "<>"), which ends only at CR or LF.
 */
bool gr_frame_next(const char *buf, size_t len, size_t *off, const char **line, size_t *line_len);

struct gr_report {
    const char *id; /* device id from the prefix, or NULL when there was none */
    size_t id_len;
    const char *body; /* from the last sentence lead ('$', '>') on; a whole-line report
                       * (JSON) from its lead ('{') on */
    size_t body_len;
    const struct gr_format *format; /* the body's format: its decoder (format.h) */
    bool spliced; /* bytes between the first and the last '$'/'>' were dropped: a broken
                   * sentence cut off by a newer one (counted by ingest) */
};

/*
 * Splits a line into its optional device-id prefix and its sentence: "AMB-12,$GPRMC..."
 * and "AMB-12$GPRMC..." both give id "AMB-12". The prefix is what precedes the first
 * sentence lead ('$', '>'); the sentence starts at the last one (resynchronisation: NMEA
 * and TAIP bodies hold no other). A whole-line report ('{' after spaces: JSON) has no
 * prefix: id NULL. Returns GR_OK, GR_MALFORMED when the line holds neither a sentence lead
 * nor a whole-line report, or GR_BAD_ID when the prefix is empty, longer than
 * GR_DEVICE_ID_MAX or not printable ASCII.
 */
enum gr_reason gr_report_split(const char *line, size_t len, struct gr_report *out);

#endif
