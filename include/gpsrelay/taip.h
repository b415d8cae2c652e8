/*
 * taip.h - Trimble ASCII Interface Protocol position reports. Pure.
 *
 * >RPVsssss+DDddddd+DDDddddd SSS HHH s a;ID=xxxx;*hh< (without the spaces): GPS seconds
 * of day, lat/lon with 5 implied decimals, speed mph, heading degrees, source (9 = no
 * fix), age; optional ;ID=...; and *hh checksum. Sierra Wireless AirLink and Cradlepoint
 * modems send it; Digi, Multi-Tech and CalAmp ones pad the ;ID= value with spaces.
 */
#ifndef GPSRELAY_TAIP_H
#define GPSRELAY_TAIP_H

#include <stddef.h>

#include "gpsrelay/fix.h"

/* GPS time runs ahead of UTC by the leap seconds since 1980 (18 since 2017-01-01). */
#define GR_GPS_UTC_LEAP_SECONDS 18

/*
 * Decodes p[0..len): one message from '>' through '<'. Returns GR_OK with type
 * GR_SENT_TAIP_RPV, GR_UNSUPPORTED for other well-formed TAIP messages, GR_BAD_CHECKSUM,
 * GR_BAD_VALUE (a heading of 361 or more: fix.h's bounds) or GR_MALFORMED.
 */
enum gr_reason gr_taip_decode(const char *p, size_t len, struct gr_sentence *out);

#endif
