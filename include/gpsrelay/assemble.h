/*
 * assemble.h - merges one device's sentences into fixes with a full UTC time. Pure.
 *
 * Sentences with the same UTC time of day merge into one fix (RMC date/speed/course, GGA
 * altitude/satellites/HDOP/quality, VTG speed/course, GLL/GNS position). A fix is handed
 * out when a sentence with another time arrives, or when the caller flushes at the end
 * of a payload (a datagram, or what one read of a stream brought), so the sentences a
 * modem sends together become one fix without waiting for the next cycle.
 *
 * Dates (docs/ingest.md): the sentence's own date (RMC, ZDA); else the last RMC/ZDA date
 * of the device, moved on a day when the time of day wrapped past midnight; else the
 * receive date, taking the day that puts the fix nearest the receive time. A date exactly
 * 1024 weeks before the receive time (GPS week-number rollover) gets 1024 weeks added.
 */
#ifndef GPSRELAY_ASSEMBLE_H
#define GPSRELAY_ASSEMBLE_H

#include <stdbool.h>
#include <stdint.h>

#include "gpsrelay/fix.h"

#define GR_ROLLOVER_MS (1024LL * 7 * 86400 * 1000) /* 1024 GPS weeks */

/* Per-device state; all zero is a valid empty assembler. */
struct gr_assembler {
    /* The fix being gathered. */
    struct gr_fix pending;
    unsigned pending_has; /* gr_sentence_has bits merged so far */
    int pending_tod_ms;
    int pending_year, pending_month, pending_day;
    bool pending_invalid; /* some sentence of this time said "no fix" */
    /* The last date a sentence gave (RMC, ZDA), with the time of day it came with. */
    bool have_date;
    int64_t date_day; /* days since 1970-01-01 */
    int date_tod_ms;
};

/*
 * Adds a decoded sentence (identity-only sentences are ignored). When it starts a new
 * time while another fix was pending, the pending fix is completed into *out and true is
 * returned. now_ms is the receive time.
 *
 * A sentence without a time (VTG; GGA and RMC of a receiver without a fix, as Quectel
 * sends them) joins the pending fix, or is dropped when none is pending. A later sentence
 * of a fix overrides what an earlier one said (position, speed, ...); the fix is valid
 * when some sentence said so and none said "no fix". A fix dated from the device's last
 * date carries that date on (have_date, date_day, date_tod_ms follow it), so a device
 * that sent one RMC and then only GGA keeps its date across midnights; "went back past
 * midnight" means by more than half a day, so a reordered sentence stays on its day.
 */
bool gr_assemble_add(struct gr_assembler *a, const struct gr_sentence *s, int64_t now_ms,
                     struct gr_fix *out);

/*
 * Completes the pending fix into *out and returns true, or returns false when nothing
 * with a position is pending. A fix whose sentences said "no fix" comes out with valid
 * false (the device is alive, but there is no position to publish).
 */
bool gr_assemble_flush(struct gr_assembler *a, int64_t now_ms, struct gr_fix *out);

#endif
