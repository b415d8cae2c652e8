/*
 * archive_row.h - a published position as one line of COPY's text format, for the
 * archive's staging table (config/archive.sql), in the column order
 *
 *   device, time, lat, lon, speed, course, alt, hdop, sats, src, attrs, rx_time, epoch, seq
 *
 * (GR_ARCHIVE_COLUMNS, for the COPY statement). Tab-separated, \N for a value the fix does
 * not have, newline-terminated; a backslash, tab, newline or carriage return inside a value
 * (a device id, attrs) is escaped as COPY reads it. Times are RFC 3339 UTC to the
 * millisecond, doubles to 17 significant digits: the archive holds exactly the doubles the
 * daemon held (consoles get them rounded: 7 decimals for lat and lon, docs/protocol.md).
 * Pure: no I/O, no libpq.
 */
#ifndef GPSRELAY_ARCHIVE_ROW_H
#define GPSRELAY_ARCHIVE_ROW_H

#include <stddef.h>
#include <stdint.h>

#include "gpsrelay/fix.h"
#include "gpsrelay/json_report.h"

#define GR_ARCHIVE_COLUMNS                                                                         \
    "device, time, lat, lon, speed, course, alt, hdop, sats, src, attrs, rx_time, epoch, seq"

/* Longest line: every byte of the id and attrs escaped, the rest with room to spare. */
#define GR_ARCHIVE_ROW_MAX (2 * GR_DEVICE_ID_MAX + 2 * GR_ATTRS_MAX + 512)

struct gr_archive_row {
    const char *device;
    const struct gr_fix *fix; /* attrs/attrs_len: the JSON object text, or NULL */
    int64_t rx_ms;            /* received, ms since 1970 */
    const char *epoch;
    uint64_t seq;
};

/* Writes r's line into out (room bytes, GR_ARCHIVE_ROW_MAX always suffices), NUL-terminated.
 * Returns its length without the NUL, or -ENOSPC. */
long gr_archive_row_encode(const struct gr_archive_row *r, char *out, size_t room);

#endif
