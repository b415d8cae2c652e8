/*
 * fuzz_assemble.c - one device's sentences merged into fixes ACROSS payloads, as ingest does
 * with merge_window (src/ingest/pipeline.c):
 *
 *   input = window byte, then payloads: [time step byte][payload bytes] separated by 0x00
 *
 * The window byte picks merge_window: (byte % 11) * 100 ms, 0 meaning "per payload" (a
 * flush at the end of each payload). Each step byte moves the clock on by step * 10 ms
 * before its payload; a listed fix whose window ran out by then goes out first through
 * gr_assemble_expire, as the pipeline's timer does. Each payload goes through gr_frame_next
 * -> gr_report_split -> the format table's decoder; every sentence goes to ONE assembler
 * with gr_assemble_unplaced / gr_assemble_add / gr_assemble_complete in the pipeline's order,
 * a pending fix not complete by the device's habit listed for window ms after its first
 * sentence. At the end what is listed expires (gr_ingest_merge_stop) and a flush follows.
 *
 * Beside fuzz.h's checks on every sentence and fix, a shadow of the pending fix (its time
 * of day, position, validity, date) checks what assemble.h promises: when a fix goes out
 * and with what, identity sentences changing nothing, unplaced sentences dropped, never
 * complete while the habit is unknown, nothing pending after a flush or an expiry.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "gpsrelay/assemble.h"
#include "gpsrelay/calendar.h"
#include "gpsrelay/format.h"
#include "gpsrelay/report.h"

/* Receive time of the first payload: 2026-11-23T18:20:01Z, fixed so runs are reproducible. */
#define START_MS 1795458001000LL

#define DAY_MS      86400000LL
#define HALF_DAY_MS (DAY_MS / 2)

/* FUZZ_ASSEMBLE_TRACE=1: print what goes out and when, to see what an input does. */
static int trace = -1;

static void trace_fix(const char *how, const struct gr_fix *f, int64_t now_ms)
{
    if (trace) {
        fprintf(stderr, "  +%lld ms %s: fix %lld valid %d fields %#x\n",
                (long long)(now_ms - START_MS), how, (long long)f->time_ms, f->valid, f->fields);
    }
}

/* What the pending fix should be, from the sentences merged into it (assemble.h). */
struct shadow {
    bool pending;
    int tod_ms;
    bool has_position;
    double lat, lon; /* "a later sentence of a fix overrides what an earlier one said" */
    bool said_valid, said_invalid;
    bool has_date;
    int year, month, day;
    int64_t since_ms;
};

struct state {
    struct gr_assembler a;
    struct shadow sh;
    bool ever_date; /* some timed sentence gave a date: dates may be carried on */
    int64_t window_ms;
    bool listed; /* the pipeline's entry in its deadline list */
    int64_t due_ms, listed_since_ms;
    size_t fixes;
};

static void shadow_merge(struct state *st, const struct gr_sentence *s, int64_t now_ms)
{
    struct shadow *sh = &st->sh;
    if (s->has & GR_HAS_TIME) {
        if (!sh->pending) {
            sh->since_ms = now_ms;
        }
        sh->pending = true;
        sh->tod_ms = s->time_of_day_ms;
        if (s->has & GR_HAS_DATE) {
            sh->has_date = true;
            sh->year = s->year;
            sh->month = s->month;
            sh->day = s->day;
            st->ever_date = true;
        }
    }
    if (s->has & GR_HAS_POSITION) {
        sh->has_position = true;
        sh->lat = s->fix.lat;
        sh->lon = s->fix.lon;
    }
    if (s->has & GR_HAS_VALIDITY) {
        if (s->fix.valid) {
            sh->said_valid = true;
        } else {
            sh->said_invalid = true;
        }
    }
}

/* A fix handed out at now_ms for the shadow's pending fix. */
static void check_fix(const struct state *st, const struct gr_fix *f, int64_t now_ms)
{
    const struct shadow *sh = &st->sh;
    FUZZ_CHECK(sh->pending && sh->has_position);
    FUZZ_CHECK(fuzz_finite(f->lat) && fuzz_finite(f->lon));
    FUZZ_CHECK(fuzz_same_double(f->lat, sh->lat) && fuzz_same_double(f->lon, sh->lon));
    FUZZ_CHECK(f->src == GR_SRC_NMEA || f->src == GR_SRC_TAIP);
    fuzz_check_fix_fields(f);
    FUZZ_CHECK(f->attrs == NULL && f->attrs_len == 0);
    /* "valid when some sentence said so and none said 'no fix'" */
    FUZZ_CHECK(f->valid == (sh->said_valid && !sh->said_invalid));
    /* The time of day is the sentences'; the day is whole days (leap seconds aside). */
    if (sh->tod_ms < DAY_MS) {
        int64_t rem = f->time_ms % DAY_MS;
        FUZZ_CHECK((rem < 0 ? rem + DAY_MS : rem) == sh->tod_ms);
    }
    int64_t t = f->time_ms;
    if (sh->has_date) {
        /* Its own date, or that date 1024 weeks on (rollover) within a day of now. */
        int64_t own = gr_days_from_civil(sh->year, sh->month, sh->day) * DAY_MS + sh->tod_ms;
        FUZZ_CHECK(t == own ||
                   (t == own + GR_ROLLOVER_MS && t - now_ms <= DAY_MS && now_ms - t <= DAY_MS));
    } else if (!st->ever_date) {
        /* The receive date: the day that puts the fix nearest the receive time. */
        FUZZ_CHECK(t - now_ms <= HALF_DAY_MS + 1000 && now_ms - t <= HALF_DAY_MS + 1000);
    }
}

/* After a fix went out, or was found to have no position: nothing is pending. */
static void handed_out(struct state *st)
{
    FUZZ_CHECK(!gr_assemble_pending(&st->a));
    FUZZ_CHECK(!gr_assemble_complete(&st->a));
    memset(&st->sh, 0, sizeof(st->sh));
}

static void flush(struct state *st, int64_t now_ms)
{
    struct gr_fix fix;
    bool had = st->sh.pending && st->sh.has_position;
    bool out = gr_assemble_flush(&st->a, now_ms, &fix);
    FUZZ_CHECK(out == had);
    if (out) {
        check_fix(st, &fix, now_ms);
        trace_fix("flush", &fix, now_ms);
        st->fixes++;
    }
    handed_out(st);
}

static void expire(struct state *st, int64_t now_ms)
{
    struct gr_fix fix;
    bool had = st->sh.pending && st->sh.has_position;
    bool out = gr_assemble_expire(&st->a, now_ms, &fix);
    FUZZ_CHECK(out == had);
    if (out) {
        check_fix(st, &fix, now_ms);
        trace_fix("expire", &fix, now_ms);
        st->fixes++;
    }
    handed_out(st);
}

/* handle_sentence in pipeline.c, for one device. */
static void add_sentence(struct state *st, const struct gr_sentence *s, int64_t now_ms)
{
    struct gr_assembler *a = &st->a;
    struct gr_fix fix;

    if (s->type == GR_SENT_DEVID || s->type == GR_SENT_PCPTI) {
        /* "identity-only sentences are ignored": no fix, and nothing of the state moves. */
        static struct gr_assembler before;
        before = *a;
        FUZZ_CHECK(!gr_assemble_unplaced(a, s));
        FUZZ_CHECK(!gr_assemble_add(a, s, now_ms, &fix));
        FUZZ_CHECK(memcmp(&before, a, sizeof(before)) == 0);
        return;
    }

    bool unplaced = gr_assemble_unplaced(a, s);
    FUZZ_CHECK(unplaced == (!(s->has & GR_HAS_TIME) && !st->sh.pending));
    FUZZ_CHECK(gr_assemble_pending(a) == st->sh.pending);

    /* A timed sentence of another time (or date) ends the pending fix. */
    bool other = st->sh.pending && (s->has & GR_HAS_TIME) &&
                 (s->time_of_day_ms != st->sh.tod_ms ||
                  ((s->has & GR_HAS_DATE) && st->sh.has_date &&
                   (s->year != st->sh.year || s->month != st->sh.month || s->day != st->sh.day)));
    bool out = gr_assemble_add(a, s, now_ms, &fix);
    FUZZ_CHECK(out == (other && st->sh.has_position));
    if (out) {
        check_fix(st, &fix, now_ms);
        trace_fix("next time", &fix, now_ms);
        st->fixes++;
    }
    if (unplaced && trace) {
        fprintf(stderr, "  +%lld ms unplaced type %d\n", (long long)(now_ms - START_MS),
                (int)s->type);
    }
    if (other) {
        memset(&st->sh, 0, sizeof(st->sh));
    }
    if (unplaced) {
        /* Dropped: it cannot be placed in time. */
        FUZZ_CHECK(!gr_assemble_pending(a));
    } else {
        shadow_merge(st, s, now_ms);
        FUZZ_CHECK(gr_assemble_pending(a));
        FUZZ_CHECK(a->pending_since_ms == st->sh.since_ms);
    }
    /* "never while the habit is unknown" */
    FUZZ_CHECK(!gr_assemble_complete(a) || (a->habit != 0 && gr_assemble_pending(a)));

    if (st->window_ms == 0) {
        return; /* flushed at the end of the payload */
    }
    if (gr_assemble_pending(a) && !gr_assemble_complete(a)) {
        /* wait_list: an entry for this fix stays; one for an older fix is replaced. */
        if (!st->listed || st->listed_since_ms != a->pending_since_ms) {
            st->listed = true;
            st->due_ms = now_ms + st->window_ms;
            st->listed_since_ms = a->pending_since_ms;
        }
        return;
    }
    st->listed = false; /* wait_drop */
    flush(st, now_ms);
}

static void handle_line(struct state *st, const char *line, size_t len, int64_t now_ms)
{
    static struct gr_decoded d; /* a JSON report is 1.1 KB: not on the stack of every run */
    struct gr_report rep;

    if (len > gr_format_line_max(line, len)) {
        return; /* GR_LINE_TOO_LONG */
    }
    enum gr_reason r = gr_report_split(line, len, &rep);
    FUZZ_CHECK(r == GR_OK || r == GR_MALFORMED || r == GR_BAD_ID);
    if (r != GR_OK) {
        return;
    }
    FUZZ_CHECK(rep.format != NULL && rep.format->decode != NULL);
    FUZZ_CHECK(rep.body >= line && rep.body + rep.body_len == line + len);
    fuzz_poison(&d, sizeof(d), 0xa5);
    r = rep.format->decode(rep.body, rep.body_len, &d);
    FUZZ_CHECK((unsigned)r < GR_REASON_COUNT);
    if (r != GR_OK) {
        return;
    }
    if (d.kind == GR_DECODED_REPORT) {
        /* A whole fix of its own: the pipeline publishes it, no assembler involved. */
        FUZZ_CHECK(fuzz_finite(d.report.fix.lat) && fuzz_finite(d.report.fix.lon));
        return;
    }
    FUZZ_CHECK(d.kind == GR_DECODED_SENTENCE);
    fuzz_check_sentence(&d.sentence, rep.body, rep.body_len);
    add_sentence(st, &d.sentence, now_ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct state st;
    const char *p = (const char *)data;

    if (trace < 0) {
        const char *t = getenv("FUZZ_ASSEMBLE_TRACE");
        trace = t != NULL && *t != '\0' && *t != '0';
    }
    memset(&st, 0, sizeof(st)); /* "all zero is a valid empty assembler" */
    if (size == 0) {
        return 0;
    }
    st.window_ms = (int64_t)(data[0] % 11) * 100; /* merge_window: 0 to 1000 ms */
    int64_t now_ms = START_MS;
    size_t i = 1;
    while (i < size) {
        now_ms += (int64_t)data[i++] * 10;
        const char *end = memchr(p + i, '\0', size - i);
        size_t len = end != NULL ? (size_t)(end - (p + i)) : size - i;

        /* The timer fired in between: what was listed and is due goes out at its time. */
        if (st.listed && st.due_ms <= now_ms) {
            st.listed = false;
            expire(&st, st.due_ms);
        }

        size_t off = 0;
        const char *line;
        size_t line_len;
        while (gr_frame_next(p + i, len, &off, &line, &line_len)) {
            handle_line(&st, line, line_len, now_ms);
        }
        FUZZ_CHECK(off == len);
        if (st.window_ms == 0) {
            flush(&st, now_ms); /* gr_ingest_batch_end */
        }
        i += len + (end != NULL);
    }

    /* Stop: what is listed goes out (gr_ingest_merge_stop); then nothing is left. */
    if (st.listed) {
        st.listed = false;
        expire(&st, now_ms);
    }
    flush(&st, now_ms);
    struct gr_fix fix;
    FUZZ_CHECK(!gr_assemble_flush(&st.a, now_ms, &fix));
    FUZZ_CHECK(!gr_assemble_pending(&st.a));
    return 0;
}
