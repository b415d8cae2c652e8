/*
 * sentence.h - one decoded NMEA or TAIP sentence, before merging into a fix.
 *
 * Decoders fill it; the assembler (assemble.h) merges the sentences of one device into
 * fixes. Pure data: no allocation, and `id` points into the decoder's input.
 */
#ifndef GPSRELAY_SENTENCE_H
#define GPSRELAY_SENTENCE_H

#include <stdbool.h>
#include <stddef.h>

#include "gpsrelay/fix.h"

enum gr_sentence_type {
    GR_SENT_RMC,
    GR_SENT_GGA,
    GR_SENT_GLL,
    GR_SENT_VTG,
    GR_SENT_GNS,
    GR_SENT_ZDA,
    GR_SENT_DEVID, /* Sierra Wireless AirLink: $DEVID,0x<hex>*hh, identity only */
    GR_SENT_PCPTI, /* Cradlepoint: $PCPTI,<id>,..., identity only */
    GR_SENT_TAIP_RPV,
};

/* Which parts of a sentence hold values. */
enum gr_sentence_has {
    GR_HAS_TIME = 1u << 0,     /* time_of_day_ms */
    GR_HAS_DATE = 1u << 1,     /* year, month, day */
    GR_HAS_POSITION = 1u << 2, /* fix.lat, fix.lon */
    GR_HAS_VALIDITY = 1u << 3, /* fix.valid says whether the receiver has a fix */
};

struct gr_sentence {
    enum gr_sentence_type type;
    char talker[3];       /* NMEA talker ("GP", "GN", ...), NUL-terminated; "" otherwise */
    bool checksum_seen;   /* false: no *hh (accepted, but counted) */
    unsigned has;         /* enum gr_sentence_has bits */
    int time_of_day_ms;   /* UTC milliseconds since midnight (TAIP: converted from GPS time) */
    int year, month, day; /* 4-digit year */
    struct gr_fix fix;    /* lat/lon/valid per `has`; speed/course/alt/hdop/sats per
                           * fix.fields; fix.time_ms is 0: the assembler sets it */
    const char *id;       /* device id carried by the sentence (DEVID, PCPTI, TAIP ;ID=),
                           * trimmed, pointing into the input; NULL when none */
    size_t id_len;
};

#endif
