/*
 * assemble.c - merges one device's sentences into fixes (contract in assemble.h).
 *
 * A receiver sends one burst of sentences per fix (GGA, VTG, RMC, ... all stamped with the
 * same UTC time of day), and no sentence has everything: RMC has the date and the speed,
 * GGA the altitude and the quality, VTG has no time at all. A fix is gathered from the
 * sentences with its time of day and handed out when the time changes, when it holds
 * every type the device sent last time (its habit), or when the caller's window runs out.
 * Pure: no allocation, no clock (now_ms is passed in).
 *
 * Why a habit and not a fixed rule: modems differ. One sends RMC alone, one RMC+GGA in a
 * datagram, a Sierra AirLink GGA then VTG, some a sentence per datagram. Waiting a window
 * for every fix would delay them all; publishing at the end of a payload splits the ones
 * that send a sentence per datagram (the second half was then refused as a duplicate).
 */
#include <string.h>

#include "gpsrelay/assemble.h"
#include "gpsrelay/calendar.h"

#define DAY_MS      (86400LL * 1000)
#define HALF_DAY_MS (DAY_MS / 2)

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static bool is_identity(const struct gr_sentence *s)
{
    return s->type == GR_SENT_DEVID || s->type == GR_SENT_PCPTI;
}

static bool pending(const struct gr_assembler *a)
{
    return (a->pending_has & GR_HAS_TIME) != 0;
}

/* Ends the fix being gathered; the device's last date stays. */
static void reset_pending(struct gr_assembler *a)
{
    memset(&a->pending, 0, sizeof(a->pending));
    a->pending_has = 0;
    a->pending_tod_ms = 0;
    a->pending_year = a->pending_month = a->pending_day = 0;
    a->pending_invalid = false;
    a->pending_types = 0;
    a->pending_since_ms = 0;
}

/*
 * A sentence's type as a bit of pending_types and the habit. ZDA is none: it gives only the
 * date, and receivers send it every few seconds or when asked, not with every fix, so a
 * fix that had one must not make the next wait for another.
 */
static unsigned type_bit(const struct gr_sentence *s)
{
    return s->type == GR_SENT_ZDA ? 0 : 1u << s->type;
}

/*
 * Whether s belongs to another fix than the pending one: another time of day, or the same
 * time of day on another date (a device silent for exactly a day between two RMCs).
 */
static bool other_fix(const struct gr_assembler *a, const struct gr_sentence *s)
{
    if (s->time_of_day_ms != a->pending_tod_ms) {
        return true;
    }
    return (s->has & GR_HAS_DATE) && (a->pending_has & GR_HAS_DATE) &&
           (s->year != a->pending_year || s->month != a->pending_month || s->day != a->pending_day);
}

/*
 * Merges what s carries into the pending fix; a later sentence overrides an earlier one
 * (RMC and GGA of one fix carry the same position, often with different precision, and the
 * receiver sends the better one last only by habit, so "later wins" is as good as any).
 */
static void merge(struct gr_assembler *a, const struct gr_sentence *s)
{
    struct gr_fix *p = &a->pending;
    const struct gr_fix *f = &s->fix;

    if (s->has & GR_HAS_TIME) {
        a->pending_tod_ms = s->time_of_day_ms;
        a->pending_has |= GR_HAS_TIME;
        /* A date without a time of day is ignored: it says nothing about which day. */
        if (s->has & GR_HAS_DATE) {
            a->pending_year = s->year;
            a->pending_month = s->month;
            a->pending_day = s->day;
            a->pending_has |= GR_HAS_DATE;
            a->have_date = true;
            a->date_day = gr_days_from_civil(s->year, s->month, s->day);
            a->date_tod_ms = s->time_of_day_ms;
        }
    }
    if (s->has & GR_HAS_POSITION) {
        p->lat = f->lat;
        p->lon = f->lon;
        a->pending_has |= GR_HAS_POSITION;
    }
    if (s->has & GR_HAS_VALIDITY) {
        if (f->valid) {
            p->valid = true;
        } else {
            a->pending_invalid = true;
        }
        a->pending_has |= GR_HAS_VALIDITY;
    }
    if (f->fields & GR_FIX_SPEED) {
        p->speed = f->speed;
    }
    if (f->fields & GR_FIX_COURSE) {
        p->course = f->course;
    }
    if (f->fields & GR_FIX_ALT) {
        p->alt = f->alt;
    }
    if (f->fields & GR_FIX_HDOP) {
        p->hdop = f->hdop;
    }
    if (f->fields & GR_FIX_SATS) {
        p->sats = f->sats;
    }
    p->fields |= f->fields;
    a->pending_types |= type_bit(s);
    p->src = f->src; /* the decoder says its format; one fix's sentences share it */
}

/* Of day-1, day and day+1, the one that puts tod_ms nearest to the instant ref_ms. */
static int64_t nearest_day(int64_t day, int tod_ms, int64_t ref_ms)
{
    int64_t t = day * DAY_MS + tod_ms;
    if (t - ref_ms > HALF_DAY_MS) {
        return day - 1;
    }
    if (ref_ms - t > HALF_DAY_MS) {
        return day + 1;
    }
    return day;
}

/*
 * The day of the pending fix (docs/ingest.md): its own date (RMC, ZDA); else the device's
 * last date, moved a day on when the time of day went back past midnight (date at
 * 23:59:59, fix at 00:00:01); else the receive date, the day around now_ms that puts the
 * fix nearest to it.
 */
static int64_t pending_day(struct gr_assembler *a, int64_t now_ms)
{
    if (a->pending_has & GR_HAS_DATE) {
        return gr_days_from_civil(a->pending_year, a->pending_month, a->pending_day);
    }
    if (a->have_date) {
        /*
         * "Went back past midnight" is "went back by more than half a day": a sentence a
         * few seconds older than the date (a reordered datagram) stays on its day, and one
         * from just before midnight after a date from just after it goes back a day.
         */
        int64_t day =
            nearest_day(a->date_day, a->pending_tod_ms, a->date_day * DAY_MS + a->date_tod_ms);
        /*
         * Carried on, so a device that sent one RMC and then only GGA keeps its date over
         * many midnights, as long as it is never silent for half a day.
         */
        a->date_day = day;
        a->date_tod_ms = a->pending_tod_ms;
        return day;
    }
    return nearest_day(floor_div(now_ms, DAY_MS), a->pending_tod_ms, now_ms);
}

/* Completes the pending fix into *out; false when it has no position. Resets it either way. */
static bool complete(struct gr_assembler *a, int64_t now_ms, struct gr_fix *out)
{
    if (!pending(a)) {
        return false;
    }
    a->have_last = true;
    a->last_tod_ms = a->pending_tod_ms;
    int64_t day = pending_day(a, now_ms);
    bool has_position = (a->pending_has & GR_HAS_POSITION) != 0;
    if (has_position) {
        *out = a->pending;
        out->time_ms = day * DAY_MS + a->pending_tod_ms;
        /*
         * GPS week-number rollover: a receiver whose firmware predates the last rollover
         * counts weeks from the previous epoch and reports dates exactly 1024 weeks early
         * (19.6 years). A date that far back, give or take the day it may take to arrive,
         * is that bug, not a fix from 2006.
         */
        int64_t shifted = out->time_ms + GR_ROLLOVER_MS;
        if (shifted - now_ms <= DAY_MS && now_ms - shifted <= DAY_MS) {
            out->time_ms = shifted;
        }
        out->valid = a->pending.valid && !a->pending_invalid;
        out->attrs = NULL;
        out->attrs_len = 0;
    }
    reset_pending(a);
    return has_position;
}

/* The habit is what this fix held: the device sent nothing else for its time. */
static void learn(struct gr_assembler *a)
{
    if (pending(a)) {
        a->habit = a->pending_types;
        a->misses = 0;
    }
}

/* A sentence for the fix that already went out: the habit lacked its type. */
static void late(struct gr_assembler *a, const struct gr_sentence *s)
{
    if (a->have_last) {
        a->habit |= type_bit(s);
    }
}

bool gr_assemble_unplaced(const struct gr_assembler *a, const struct gr_sentence *s)
{
    return !is_identity(s) && !(s->has & GR_HAS_TIME) && !pending(a);
}

bool gr_assemble_add(struct gr_assembler *a, const struct gr_sentence *s, int64_t now_ms,
                     struct gr_fix *out)
{
    if (is_identity(s)) {
        return false;
    }
    /*
     * No time: VTG never has one, and Quectel leaves it empty in GGA and RMC while it has
     * no fix. Such a sentence belongs to the fix being gathered (VTG follows its GGA), and
     * is dropped when there is none: it cannot be placed in time. It can only have been
     * late for the last fix, so the next one waits for its type.
     */
    if (!(s->has & GR_HAS_TIME)) {
        if (pending(a)) {
            merge(a, s);
        } else {
            late(a, s);
        }
        return false;
    }
    bool done = false;
    if (pending(a) && other_fix(a, s)) {
        learn(a);
        done = complete(a, now_ms, out);
    } else if (!pending(a) && a->have_last && s->time_of_day_ms == a->last_tod_ms) {
        late(a, s);
    }
    if (!pending(a)) {
        a->pending_since_ms = now_ms;
    }
    merge(a, s);
    return done;
}

bool gr_assemble_pending(const struct gr_assembler *a)
{
    return pending(a);
}

bool gr_assemble_complete(const struct gr_assembler *a)
{
    return pending(a) && a->habit != 0 && (a->pending_types & a->habit) == a->habit;
}

bool gr_assemble_flush(struct gr_assembler *a, int64_t now_ms, struct gr_fix *out)
{
    learn(a);
    return complete(a, now_ms, out);
}

bool gr_assemble_expire(struct gr_assembler *a, int64_t now_ms, struct gr_fix *out)
{
    if (pending(a)) {
        bool short_of_habit = (a->pending_types & a->habit) != a->habit;
        if (!short_of_habit || a->habit == 0 || ++a->misses >= GR_ASSEMBLE_HABIT_MISSES) {
            learn(a);
        }
    }
    return complete(a, now_ms, out);
}
