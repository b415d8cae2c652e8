/*
 * fix.h - a decoded position fix, the reasons a report can be refused, the bound on
 * device ids, and one decoded NMEA or TAIP sentence (struct gr_sentence) before the
 * assembler (assemble.h) merges the sentences of one device into fixes: pure data, no
 * allocation, its `id` pointing into the decoder's input.
 *
 * This header is shared by the pure decoders (src/decode/) and the daemon. It includes
 * nothing from libuv, libwebsockets or libpq.
 */
#ifndef GPSRELAY_FIX_H
#define GPSRELAY_FIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest device id accepted. Real ids are short (AMB-12, 0x + 16 hex digits). */
#define GR_DEVICE_ID_MAX 64
/* Longest agency id accepted (the mapping's, tokens', snapshot queries'). */
#define GR_AGENCY_ID_MAX 64

/* Which optional fields of struct gr_fix hold a value. */
enum gr_fix_field {
    GR_FIX_SPEED = 1u << 0,
    GR_FIX_COURSE = 1u << 1,
    GR_FIX_ALT = 1u << 2,
    GR_FIX_HDOP = 1u << 3,
    GR_FIX_SATS = 1u << 4,
};

/*
 * Bounds of the optional values of a fix, the same for every format (gr_fix_check_values).
 * A value outside them is not a measurement but a corrupt or hostile field: the report is
 * refused as GR_BAD_VALUE, never published clamped or as something else.
 */
/* m/s, just above 1000 knots (514.4 m/s): civil GNSS receivers stop reporting beyond it
 * (the COCOM export limit); TAIP's largest speed, 999 mph (446.6 m/s), is below it. */
#define GR_FIX_SPEED_MAX_MPS 515.0
/* Degrees true from 0 up to and including 360: a receiver that rounds 359.97 to one
 * decimal writes "360.0", the same bearing as 0, not an impossible one. */
#define GR_FIX_COURSE_MAX 360.0
/* Metres above mean sea level: the Dead Sea shore is at -430 m and mines and tunnels go
 * deeper; 100 km is the edge of space, above any vehicle a dispatch floor tracks. */
#define GR_FIX_ALT_MIN -1000.0
#define GR_FIX_ALT_MAX 100000.0
/* HDOP is at least 0 (receivers send 0 for "unknown"); 99.99 is the largest NMEA's two
 * integer digits hold, which receivers without a fix send. */
#define GR_FIX_HDOP_MAX 99.99
/* Satellites used: NMEA 0183 allowed 00-12, multi-constellation receivers use dozens; all
 * GNSS constellations together fly fewer than 255. */
#define GR_FIX_SATS_MAX 255

/* Which format a fix came in. The formats of lines (modems over UDP and TCP) have their row
 * in the table of formats (format.h); the phones' HTTP reports (osmand.h) come whole, one
 * per request, and have none. */
enum gr_fix_source {
    GR_SRC_NMEA,
    GR_SRC_TAIP,
    GR_SRC_JSON,
    GR_SRC_LINE_FORMATS,                 /* how many formats of lines */
    GR_SRC_OSMAND = GR_SRC_LINE_FORMATS, /* OsmAnd / Traccar Client over HTTP */
    GR_SRC_COUNT
};

struct gr_fix {
    int64_t time_ms; /* UTC, milliseconds since 1970-01-01 */
    double lat;      /* degrees, north positive, full double precision */
    double lon;      /* degrees, east positive */
    double speed;    /* m/s, valid when fields & GR_FIX_SPEED */
    double course;   /* degrees true, valid when fields & GR_FIX_COURSE */
    double alt;      /* metres above mean sea level, GR_FIX_ALT */
    double hdop;     /* GR_FIX_HDOP */
    int sats;        /* satellites used, GR_FIX_SATS */
    unsigned fields; /* enum gr_fix_field bits */
    bool valid;      /* the receiver says this is a fix (RMC status A, ...) */
    enum gr_fix_source src;
    const char *attrs; /* JSON reports: the "attrs" object as compact JSON text, borrowed
                        * from the decoder's output; NULL when none */
    size_t attrs_len;
};

/*
 * Why a report, or a fix in it, was not published. Each maps straight onto the `reason`
 * label of gpsrelay_ingest_rejected_total; GR_OK is success. X-macro so the enum and the
 * label table cannot drift apart.
 */
#define GR_REASONS(X)                                                                              \
    X(OK, "ok")                                                                                    \
    X(LINE_TOO_LONG, "line_too_long")      /* over GR_LINE_MAX, or GR_JSON_LINE_MAX */             \
    X(MALFORMED, "malformed")              /* not a sentence, or a field we cannot parse */        \
    X(BAD_CHECKSUM, "bad_checksum")        /* *hh present and wrong */                             \
    X(UNSUPPORTED, "unsupported_sentence") /* well-formed, a type we do not decode */              \
    X(BAD_ID, "bad_device_id")             /* id prefix or $PCPTI id empty, too long */            \
    X(UNKNOWN_DEVICE, "unknown_device")    /* no mapping entry for the id or source */             \
    X(NO_FIX, "no_fix")                    /* receiver reports no valid fix */                     \
    X(NO_TIME, "no_time")                  /* fix without a usable date and time */                \
    X(OUT_OF_RANGE, "out_of_range")        /* outside +-90 / +-180 */                              \
    X(NULL_ISLAND, "null_island")          /* exactly 0,0: a receiver's placeholder */             \
    X(FUTURE, "future")                    /* further ahead than max_future_skew */                \
    X(OUT_OF_ORDER, "out_of_order")        /* older than the last published fix */                 \
    X(DUPLICATE, "duplicate")              /* same time as the last published fix */               \
    X(SPEED, "implausible_speed")          /* a jump faster than max_speed */                      \
    X(ATTRS_TOO_BIG, "attrs_too_big")      /* JSON "attrs" over GR_ATTRS_MAX */                    \
    X(BAD_VALUE, "bad_value")              /* speed, course, alt, hdop, sats: fix.h bounds */      \
    X(BAD_DATE, "bad_date")                /* a day its month does not have (31 Feb) */            \
    X(TRUNCATED, "truncated")              /* cut by a hang-up, no checksum to prove it whole */   \
    X(MISSING_FIELD, "missing_field")      /* a phone's report without id, lat, lon or time */     \
    X(BODY_TOO_BIG, "body_too_big")        /* a phone's request body over GR_PHONE_BODY_MAX */     \
    X(CLUSTER_QUEUE_FULL, "cluster_queue_full") /* a cluster node's queue to the stream full,      \
                                                 * or the node stopping (cluster.h) */

enum gr_reason {
#define GR_REASON_ENUM(name, label) GR_##name,
    GR_REASONS(GR_REASON_ENUM)
#undef GR_REASON_ENUM
        GR_REASON_COUNT
};

/* The metric label of a reason ("bad_checksum"); never NULL. */
const char *gr_reason_label(enum gr_reason r);

/*
 * GR_OK when every optional value fix->fields says is present lies within the bounds
 * above (a NaN lies within none), else GR_BAD_VALUE. Every decoder calls it before handing
 * out a fix or sentence. Inline: the NMEA decoder calls it per sentence. Borrows fix.
 */
static inline enum gr_reason gr_fix_check_values(const struct gr_fix *fix)
{
    unsigned f = fix->fields;
    /* Written as "not within" so that a NaN fails every test. */
    if (((f & GR_FIX_SPEED) && !(fix->speed >= 0.0 && fix->speed <= GR_FIX_SPEED_MAX_MPS)) ||
        ((f & GR_FIX_COURSE) && !(fix->course >= 0.0 && fix->course <= GR_FIX_COURSE_MAX)) ||
        ((f & GR_FIX_ALT) && !(fix->alt >= GR_FIX_ALT_MIN && fix->alt <= GR_FIX_ALT_MAX)) ||
        ((f & GR_FIX_HDOP) && !(fix->hdop >= 0.0 && fix->hdop <= GR_FIX_HDOP_MAX)) ||
        ((f & GR_FIX_SATS) && (fix->sats < 0 || fix->sats > GR_FIX_SATS_MAX))) {
        return GR_BAD_VALUE;
    }
    return GR_OK;
}

/* One decoded sentence: which kind, and the parts it carried. */
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
                           * trimmed, at most GR_DEVICE_ID_MAX bytes, pointing into the
                           * input; NULL when none */
    size_t id_len;
};

#endif
