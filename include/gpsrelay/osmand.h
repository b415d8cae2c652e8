/*
 * osmand.h - a phone's position report over HTTP (docs/ingest.md "Phones"): the OsmAnd
 * protocol that Traccar Client and many trackers speak, decoded into a fix. Pure: no I/O;
 * jansson for the attrs and the JSON body.
 *
 * Two shapes of one report:
 *   - name=value pairs (a query string, or an application/x-www-form-urlencoded body):
 *     id (or deviceid), lat, lon, timestamp (seconds since 1970, milliseconds when it is
 *     2^31 or more, or RFC 3339), speed (knots), bearing (or heading), altitude, hdop,
 *     accuracy, batt, charge, valid. Other names are ignored: clients add their own.
 *   - the JSON body Traccar Client 9 posts: {"device_id":..,"location":{"timestamp":RFC 3339,
 *     "coords":{"latitude","longitude","speed" (m/s),"heading","altitude","accuracy"},
 *     "battery":{"level" 0-1,"is_charging"},"is_moving","odometer","event"}}.
 * What is not part of a fix (accuracy, battery, charging, motion, odometer, event) goes
 * into attrs, as a JSON object.
 */
#ifndef GPSRELAY_OSMAND_H
#define GPSRELAY_OSMAND_H

#include <stddef.h>

#include "gpsrelay/fix.h"
#include "gpsrelay/json_report.h"

struct gr_osmand_report {
    char id[GR_DEVICE_ID_MAX + 1];
    struct gr_fix fix;            /* src GR_SRC_OSMAND; attrs point at .attrs below */
    char attrs[GR_ATTRS_MAX + 1]; /* compact JSON object text, "" when none */
    size_t attrs_len;
};

/*
 * Decodes a report from name=value pairs p[0..len), or from a JSON body. Returns GR_OK, or
 * GR_MISSING_FIELD (no id, lat, lon or time), GR_MALFORMED (a bad escape, a number that is
 * not one, a name given twice, JSON that is not the shape above), GR_BAD_ID (an empty or
 * too long id), GR_BAD_DATE, GR_ATTRS_TOO_BIG, or GR_BAD_VALUE (fix.h's bounds).
 */
enum gr_reason gr_osmand_decode_form(const char *p, size_t len, struct gr_osmand_report *out);
enum gr_reason gr_osmand_decode_json(const char *p, size_t len, struct gr_osmand_report *out);

#endif
