/*
 * fuzz.h - shared by the fuzz targets (tests/fuzz/README.md).
 *
 * Each fuzz_<t>.c defines LLVMFuzzerTestOneInput. The same object is linked either with
 * libFuzzer (-fsanitize=fuzzer, GR_FUZZ=ON) or with replay_main.c, which runs it over the
 * seed corpus in every ctest build. A target checks what the decoder contracts promise and
 * calls FUZZ_CHECK, which aborts: libFuzzer and the replay both treat that as a crash.
 */
#ifndef GPSRELAY_FUZZ_H
#define GPSRELAY_FUZZ_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/calendar.h"
#include "gpsrelay/fix.h"

/* libFuzzer's entry point; declared here for -Wmissing-prototypes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A violated contract: say which, then abort() so the input is kept as a crash. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* p[0..n) lies inside base[0..len). A zero-length range may sit at the very end. */
static inline int fuzz_inside(const char *p, size_t n, const char *base, size_t len)
{
    return p >= base && p <= base + len && n <= (size_t)(base + len - p);
}

/*
 * A number the filters compare against limits must be a number: a NaN passes every
 * "outside +-90" test (all comparisons with NaN are false) and would be published.
 */
static inline int fuzz_finite(double v)
{
    return isfinite(v);
}

/* Fills *s with a byte pattern, so a decoder that relies on what *out held shows up. */
static inline void fuzz_poison(void *s, size_t n, int byte)
{
    memset(s, byte, n);
}

/* fix.h's optional fields: only the known flags, and each one set holds a number. */
static inline void fuzz_check_fix_fields(const struct gr_fix *f)
{
    FUZZ_CHECK((f->fields & ~(unsigned)(GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP |
                                        GR_FIX_SATS)) == 0);
    FUZZ_CHECK(!(f->fields & GR_FIX_SPEED) || fuzz_finite(f->speed));
    FUZZ_CHECK(!(f->fields & GR_FIX_COURSE) || fuzz_finite(f->course));
    FUZZ_CHECK(!(f->fields & GR_FIX_ALT) || fuzz_finite(f->alt));
    FUZZ_CHECK(!(f->fields & GR_FIX_HDOP) || fuzz_finite(f->hdop));
    /* "values are refused, never bent": what is handed out lies within fix.h's bounds. */
    FUZZ_CHECK(gr_fix_check_values(f) == GR_OK);
    FUZZ_CHECK(!(f->fields & GR_FIX_SPEED) || (f->speed >= 0 && f->speed <= GR_FIX_SPEED_MAX_MPS));
    FUZZ_CHECK(!(f->fields & GR_FIX_COURSE) || (f->course >= 0 && f->course <= GR_FIX_COURSE_MAX));
    FUZZ_CHECK(!(f->fields & GR_FIX_SATS) || (f->sats >= 0 && f->sats <= GR_FIX_SATS_MAX));
}

/*
 * What fix.h promises about a GR_OK sentence decoded from p[0..len). Positions may be
 * out of range (filters reject those later); they must not be garbage. Speed, course,
 * altitude, HDOP, satellites and the date must be within bounds (the decoders refuse).
 */
static inline void fuzz_check_sentence(const struct gr_sentence *s, const char *p, size_t len)
{
    FUZZ_CHECK((unsigned)s->type <= GR_SENT_TAIP_RPV);
    FUZZ_CHECK(memchr(s->talker, '\0', sizeof(s->talker)) != NULL);
    FUZZ_CHECK(
        (s->has & ~(unsigned)(GR_HAS_TIME | GR_HAS_DATE | GR_HAS_POSITION | GR_HAS_VALIDITY)) == 0);
    fuzz_check_fix_fields(&s->fix);
    /* "UTC milliseconds since midnight"; second 60 is a leap second. */
    if (s->has & GR_HAS_TIME) {
        FUZZ_CHECK(s->time_of_day_ms >= 0 && s->time_of_day_ms < 86401000);
    }
    /* "4-digit year" (ZDA may say 0129); the assembler turns the date into days. */
    if (s->has & GR_HAS_DATE) {
        FUZZ_CHECK(s->year >= 0 && s->year <= 9999);
        FUZZ_CHECK(s->month >= 1 && s->month <= 12);
        FUZZ_CHECK(s->day >= 1 && s->day <= 31);
        FUZZ_CHECK(gr_date_valid(s->year, s->month, s->day)); /* never 31 February */
    }
    if (s->has & GR_HAS_POSITION) {
        FUZZ_CHECK(fuzz_finite(s->fix.lat) && fuzz_finite(s->fix.lon));
    }
    FUZZ_CHECK(s->fix.time_ms == 0);  /* "fix.time_ms is 0: the assembler sets it" */
    FUZZ_CHECK(s->fix.attrs == NULL); /* attrs come only with JSON reports */
    /* "id ... trimmed, pointing into the input" */
    if (s->id != NULL) {
        FUZZ_CHECK(fuzz_inside(s->id, s->id_len, p, len));
        FUZZ_CHECK(s->id_len <= GR_DEVICE_ID_MAX); /* what identity.h can remember */
        FUZZ_CHECK(s->id_len == 0 || (s->id[0] != ' ' && s->id[s->id_len - 1] != ' '));
    }
}

static inline int fuzz_same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof(a)) == 0;
}

/*
 * Decoders are pure: the same input gives the same sentence whatever *out held before.
 * Compares what a and b say they hold.
 */
static inline void fuzz_check_same_sentence(const struct gr_sentence *a,
                                            const struct gr_sentence *b)
{
    FUZZ_CHECK(a->type == b->type && a->has == b->has && a->fix.fields == b->fix.fields);
    FUZZ_CHECK(strcmp(a->talker, b->talker) == 0 && a->checksum_seen == b->checksum_seen);
    FUZZ_CHECK(a->id == b->id && (a->id == NULL || a->id_len == b->id_len));
    if (a->has & GR_HAS_TIME) {
        FUZZ_CHECK(a->time_of_day_ms == b->time_of_day_ms);
    }
    if (a->has & GR_HAS_DATE) {
        FUZZ_CHECK(a->year == b->year && a->month == b->month && a->day == b->day);
    }
    if (a->has & GR_HAS_POSITION) {
        FUZZ_CHECK(fuzz_same_double(a->fix.lat, b->fix.lat));
        FUZZ_CHECK(fuzz_same_double(a->fix.lon, b->fix.lon));
    }
    if (a->has & GR_HAS_VALIDITY) {
        FUZZ_CHECK(a->fix.valid == b->fix.valid);
    }
    if (a->fix.fields & GR_FIX_SPEED) {
        FUZZ_CHECK(fuzz_same_double(a->fix.speed, b->fix.speed));
    }
    if (a->fix.fields & GR_FIX_COURSE) {
        FUZZ_CHECK(fuzz_same_double(a->fix.course, b->fix.course));
    }
    if (a->fix.fields & GR_FIX_ALT) {
        FUZZ_CHECK(fuzz_same_double(a->fix.alt, b->fix.alt));
    }
    if (a->fix.fields & GR_FIX_HDOP) {
        FUZZ_CHECK(fuzz_same_double(a->fix.hdop, b->fix.hdop));
    }
    if (a->fix.fields & GR_FIX_SATS) {
        FUZZ_CHECK(a->fix.sats == b->fix.sats);
    }
}

#endif
