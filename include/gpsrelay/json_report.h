/*
 * json_report.h - JSON position reports (docs/ingest.md), decoded with jansson.
 *
 * {"id":"AMB-12","time":"2026-11-23T18:20:01Z","lat":40.7128,"lon":-74.006,"speed":12.3,
 *  "course":271.5,"alt":10.2,"hdop":0.9,"sats":9,"attrs":{...}}
 */
#ifndef GPSRELAY_JSON_REPORT_H
#define GPSRELAY_JSON_REPORT_H

#include <stddef.h>

#include "gpsrelay/fix.h"

/* Encoded size of "attrs" passed through to consoles (docs/ingest.md). */
#define GR_ATTRS_MAX 1024

/*
 * Longest JSON report line. "attrs" of up to GR_ATTRS_MAX do not fit a 256-byte line
 * (GR_LINE_MAX), so JSON lines get room for the attrs, the fixed fields and their names:
 * GR_ATTRS_MAX + 1 KiB.
 */
#define GR_JSON_LINE_MAX 2048

struct gr_json_report {
    char id[GR_DEVICE_ID_MAX + 1]; /* "" when the report has no "id" */
    struct gr_fix fix;             /* time_ms absolute; valid true; src GR_SRC_JSON */
    char attrs[GR_ATTRS_MAX + 1];  /* compact JSON object text, "" when absent */
    size_t attrs_len;
};

/*
 * Decodes one report p[0..len) (an object starting with '{'). Returns GR_OK, or
 * GR_MALFORMED (not JSON, not an object, a field of the wrong type, lat/lon/time
 * missing, an unparsable time), GR_BAD_DATE (an RFC 3339 time on a day its month does not
 * have: "2026-02-30"), GR_BAD_ID (id empty, too long, or with control characters),
 * GR_ATTRS_TOO_BIG, or GR_BAD_VALUE (speed, course, alt, hdop or sats outside fix.h's
 * bounds).
 */
enum gr_reason gr_json_report_decode(const char *p, size_t len, struct gr_json_report *out);

#endif
