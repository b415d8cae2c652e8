/*
 * history_encode.h - the pieces of /api/history and /api/snapshot answers (history.h): an
 * archive row to the position JSON consoles receive, made by the hub's own encoder so the
 * two shapes cannot drift apart, and the GeoJSON around positions. No I/O and no libpq:
 * rows come in as the text of their columns.
 */
#ifndef GR_ARCHIVE_HISTORY_ENCODE_H
#define GR_ARCHIVE_HISTORY_ENCODE_H

#include <stdbool.h>
#include <stdint.h>

#include "gpsrelay/buf.h"
#include "gpsrelay/hub.h"

/*
 * The columns every query selects, in this order (the positions table of
 * config/archive.sql). The time comes as whole milliseconds since 1970, so the session's
 * TimeZone and DateStyle cannot change it; attrs as jsonb's text.
 */
#define GR_HISTORY_COLUMNS                                                                         \
    "device, floor(extract(epoch FROM time) * 1000)::int8, lat, lon, speed, course, alt, hdop, "   \
    "sats, src, attrs::text, seq"

enum gr_history_col {
    GR_HCOL_DEVICE,
    GR_HCOL_TIME,
    GR_HCOL_LAT,
    GR_HCOL_LON,
    GR_HCOL_SPEED,
    GR_HCOL_COURSE,
    GR_HCOL_ALT,
    GR_HCOL_HDOP,
    GR_HCOL_SATS,
    GR_HCOL_SRC,
    GR_HCOL_ATTRS,
    GR_HCOL_SEQ,
    GR_HCOL_COUNT
};

/*
 * The position of one row: v[i] is column i's text, NULL for SQL NULL. json_id is the
 * device id as a JSON string literal, or NULL to quote v[GR_HCOL_DEVICE]. Returns a new
 * position (free() it), or NULL: with *why naming what is wrong for a row that is no
 * position (the daemon never archives one, but the table has no CHECKs), with *why NULL
 * when out of memory.
 *
 * attrs are re-encoded from jsonb's text (compact, as the JSON decoder dumps them); jsonb
 * keeps no key order of its own, so their members may come in another order than sent.
 */
struct gr_position *gr_history_position(const char *const v[GR_HCOL_COUNT], const char *json_id,
                                        const char **why);

/* Appends p as one ndjson line. 0 or -ENOMEM. */
int gr_history_put_line(struct gr_buf *out, const struct gr_position *p);

/*
 * Appends p as a GeoJSON Point feature (a ',' first unless first): coordinates [lon, lat]
 * exactly as the position's own lat and lon, properties the position's other members.
 * coord gets lon and lat in units of 1e-7 degree, for the track's LineString. 0 or -ENOMEM.
 */
int gr_history_put_point(struct gr_buf *out, const struct gr_position *p, bool first,
                         int32_t coord[2]);

/* Appends one LineString position "[lon,lat]" (a ',' first unless first), as
 * gr_history_put_point wrote them. 0 or -ENOMEM. */
int gr_history_put_coord(struct gr_buf *out, const int32_t coord[2], bool first);

#endif
