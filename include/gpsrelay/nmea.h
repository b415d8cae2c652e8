/*
 * nmea.h - NMEA 0183 sentence decoder. Pure: no allocation, no I/O, no global state.
 *
 * Table-driven: RMC, GGA, GLL, VTG, GNS, ZDA from any two-letter talker, and the modem
 * identity sentences $DEVID (Sierra) and $PCPTI (Cradlepoint).
 */
#ifndef GPSRELAY_NMEA_H
#define GPSRELAY_NMEA_H

#include <stddef.h>
#include <stdint.h>

#include "gpsrelay/fix.h"

/*
 * Decodes p[0..len): one sentence starting at '$', without CR/LF.
 * Returns GR_OK and fills *out, or why it was refused: GR_MALFORMED, GR_BAD_CHECKSUM,
 * GR_UNSUPPORTED for a well-formed sentence of a type not decoded, GR_BAD_VALUE for a
 * speed, course, altitude, HDOP or satellite count outside fix.h's bounds, GR_BAD_DATE for
 * a day its month does not have (RMC "310226", ZDA), GR_BAD_ID for a $PCPTI id longer than
 * GR_DEVICE_ID_MAX. A sentence that says "no fix" returns GR_OK with GR_HAS_VALIDITY and
 * fix.valid false.
 */
enum gr_reason gr_nmea_decode(const char *p, size_t len, struct gr_sentence *out);

#endif
