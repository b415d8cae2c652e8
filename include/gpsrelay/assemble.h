/*
 * assemble.h - merges one device's sentences into fixes with a full UTC time. Pure.
 *
 * Sentences with the same UTC time of day merge into one fix (RMC date/speed/course, GGA
 * altitude/satellites/HDOP/quality, VTG speed/course, GLL/GNS position), whether they came
 * in one payload or several. A fix is handed out when a sentence with another time
 * arrives, when the caller's window for it runs out (gr_assemble_expire), or as soon as it
 * is complete by the device's habit (gr_assemble_complete): the set of sentence types the
 * device sent for its previous fix (RMC alone, RMC+GGA, GGA+VTG, ...). So a modem's steady
 * stream is published as each fix's last sentence arrives, with no added wait, whether it
 * sends a fix per datagram or a sentence per datagram.
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
    bool pending_invalid;     /* some sentence of this time said "no fix" */
    unsigned pending_types;   /* 1u << enum gr_sentence_type of each sentence merged so far */
    int64_t pending_since_ms; /* now_ms when the pending fix's first sentence came */
    /*
     * The device's habit: the sentence types it sent for one time (ZDA aside: it comes
     * now and then, not with every fix), learnt from its last fix (0: not known yet, so
     * nothing is complete before its window). A sentence of the last fix's time that comes
     * after that fix went out adds its type (it was late). A fix cut short by the window
     * shrinks the habit only the GR_ASSEMBLE_HABIT_MISSES-th time in a row, so one lost
     * datagram does not make the next fix go out half.
     */
    unsigned habit;
    unsigned misses; /* window expiries in a row that lacked a type of the habit */
    bool have_last;  /* a fix was completed; last_tod_ms is its time of day */
    int last_tod_ms;
    /* The caller's entry for the pending fix in its list of deadlines (pipeline.c in
     * src/ingest), NULL when none; the assembler never reads it. Copied with the rest when
     * a reload moves the assembler to a new unit of the same device. */
    void *listed;
    /* The last date a sentence gave (RMC, ZDA), with the time of day it came with. */
    bool have_date;
    int64_t date_day; /* days since 1970-01-01 */
    int date_tod_ms;
};

/* A fix cut short by the window this many times in a row gives the device a smaller habit
 * (a modem that stopped sending GGA): once could be a lost datagram. */
#define GR_ASSEMBLE_HABIT_MISSES 2

/*
 * Adds a decoded sentence (identity-only sentences are ignored). When it starts a new
 * time while another fix was pending, the pending fix is completed into *out and true is
 * returned. now_ms is the receive time.
 *
 * A sentence without a time (VTG; GGA and RMC of a receiver without a fix, as Quectel
 * sends them) joins the pending fix, or is dropped when none is pending (gr_assemble_unplaced);
 * after a fix went out it counts as late for it (the habit gains its type). A later sentence
 * of a fix overrides what an earlier one said (position, speed, ...); the fix is valid
 * when some sentence said so and none said "no fix". A fix dated from the device's last
 * date carries that date on (have_date, date_day, date_tod_ms follow it), so a device
 * that sent one RMC and then only GGA keeps its date across midnights; "went back past
 * midnight" means by more than half a day, so a reordered sentence stays on its day.
 */
bool gr_assemble_add(struct gr_assembler *a, const struct gr_sentence *s, int64_t now_ms,
                     struct gr_fix *out);

/* Whether gr_assemble_add would drop s as it cannot be placed in time (no time of its own,
 * no fix pending to join): ask before adding, to count the drop. */
bool gr_assemble_unplaced(const struct gr_assembler *a, const struct gr_sentence *s);

/* Whether a fix is being gathered. */
bool gr_assemble_pending(const struct gr_assembler *a);

/* Whether the pending fix holds every sentence type of the device's habit (never while the
 * habit is unknown): nothing more is coming for it, publish it now. */
bool gr_assemble_complete(const struct gr_assembler *a);

/*
 * Completes the pending fix into *out and returns true, or returns false when nothing
 * with a position is pending. A fix whose sentences said "no fix" comes out with valid
 * false (the device is alive, but there is no position to publish). The habit becomes the
 * types the fix held: call it when the fix is complete, or at the end of a payload.
 */
bool gr_assemble_flush(struct gr_assembler *a, int64_t now_ms, struct gr_fix *out);

/* As gr_assemble_flush, when the caller's window for the pending fix ran out: a fix that
 * lacks a type of the habit changes the habit only after GR_ASSEMBLE_HABIT_MISSES. */
bool gr_assemble_expire(struct gr_assembler *a, int64_t now_ms, struct gr_fix *out);

#endif
