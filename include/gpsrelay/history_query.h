/*
 * history_query.h - the query strings of GET /api/history and GET /api/snapshot (the
 * position archive): parsed and checked in full before anything is asked of PostgreSQL,
 * so every malformed request is a 400 with its reason. Pure: no I/O.
 *
 *   /api/history?device=ID&from=T&to=T[&limit=N][&format=ndjson|geojson]
 *   /api/snapshot?agency=ID&at=T
 *
 * T is RFC 3339 (2026-11-23T18:20:01Z, fractions and offsets allowed) or seconds since
 * 1970 (digits, optionally with a fraction), 1970 to the end of 9999. Values are
 * percent-decoded ('+' is a space, as forms send it). A parameter given twice, one not
 * listed, or an empty one is refused: a client that sends them is confused, and guessing
 * which it meant could show a dispatcher the wrong unit's track. `token` is left to
 * admission (the console's rules) and skipped here.
 */
#ifndef GPSRELAY_HISTORY_QUERY_H
#define GPSRELAY_HISTORY_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "gpsrelay/fix.h"

/* Positions one history answer holds unless `limit` says fewer; and the most it may ask. */
#define GR_HISTORY_LIMIT_DEFAULT 10000
#define GR_HISTORY_LIMIT_MAX     100000

/* Longest query string looked at; longer is refused ("query too long"). */
#define GR_HISTORY_QUERY_MAX 2048

enum gr_history_format { GR_HISTORY_NDJSON, GR_HISTORY_GEOJSON };

struct gr_history_query {
    char device[GR_DEVICE_ID_MAX + 1];
    int64_t from_ms, to_ms; /* from <= to */
    long limit;             /* 1 to GR_HISTORY_LIMIT_MAX */
    enum gr_history_format format;
};

struct gr_snapshot_query {
    char agency[GR_AGENCY_ID_MAX + 1];
    int64_t at_ms;
};

/*
 * Parses qs[0..len) (what follows '?', still percent-encoded) into *out. Returns NULL, or
 * the reason the request is a 400, as a static string fit for the answer's body ("from
 * is after to", "limit must be 1 to 100000", ...).
 */
const char *gr_history_query_parse(const char *qs, size_t len, struct gr_history_query *out);
const char *gr_snapshot_query_parse(const char *qs, size_t len, struct gr_snapshot_query *out);

/* T as above into milliseconds since 1970: 0, or -EINVAL. */
int gr_query_time_parse(const char *s, size_t n, int64_t *ms);

#endif
