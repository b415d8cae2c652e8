/*
 * nmea.h - NMEA 0183 sentence decoder. Pure: no allocation, no I/O, no global state.
 *
 * Decodes one sentence at a time into a struct gr_nmea. Merging several sentences of one
 * device into one fix (RMC + GGA with the same UTC time) is the caller's business.
 */
#ifndef GPSRELAY_NMEA_H
#define GPSRELAY_NMEA_H

#include <stddef.h>

#include "gpsrelay/fix.h"

enum gr_nmea_type { GR_NMEA_RMC };

struct gr_nmea {
    enum gr_nmea_type type;
    char talker[3];       /* "GP", "GN", ...; NUL-terminated */
    bool checksum_seen;   /* false: the sentence had no *hh (accepted, but counted) */
    int time_of_day_ms;   /* UTC milliseconds since midnight, -1 when the field is empty */
    int year, month, day; /* date (year is 4 digits, 19xx/20xx per the RMC pivot); 0 when absent */
    struct gr_fix fix;    /* lat/lon/speed/course/valid; time_ms is left 0: see above */
};

/*
 * Decodes p[0..len): one sentence starting at '$', without CR/LF.
 * Returns GR_OK and fills *out, or the reason it was refused (GR_MALFORMED,
 * GR_BAD_CHECKSUM, GR_UNSUPPORTED for a well-formed sentence of a type not decoded).
 * A sentence whose status/fields say "no fix" still returns GR_OK with fix.valid false
 * when its fields parse.
 */
enum gr_reason gr_nmea_decode(const char *p, size_t len, struct gr_nmea *out);

/* Days from 1970-01-01 to the given proleptic Gregorian date (month 1-12, day 1-31). */
int64_t gr_days_from_civil(int year, int month, int day);

#endif
