/*
 * calendar.h - the civil calendar: proleptic Gregorian dates and days since 1970-01-01.
 * Pure arithmetic, valid for any year an int64 day count holds.
 */
#ifndef GPSRELAY_CALENDAR_H
#define GPSRELAY_CALENDAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpsrelay/fix.h"

/* The first instant past the times a fix or a query may name: 10000-01-01T00:00:00Z. */
#define GR_TIME_MS_END (253402300800LL * 1000)

/* Days in a month (1-12) of a proleptic Gregorian year: 28 to 31. */
int gr_days_in_month(int year, int month);

/*
 * Whether year-month-day is a date the calendar has: month 1-12 and day 1 to the length of
 * that month. gr_days_from_civil counts 31 February as 3 March; decoders ask this first and
 * refuse such a date (GR_BAD_DATE) rather than move it.
 */
bool gr_date_valid(int year, int month, int day);

/* Days from 1970-01-01 to the given proleptic Gregorian date (month 1-12, day 1-31). */
int64_t gr_days_from_civil(int year, int month, int day);

/* The date of a day count since 1970-01-01: year, month 1-12, day 1-31. */
void gr_civil_from_days(int64_t days, int *year, int *month, int *day);

/*
 * An RFC 3339 time, s[0..n), to milliseconds since 1970 (1970 to the end of 9999): GR_OK,
 * GR_MALFORMED, or GR_BAD_DATE for a day its month does not have. The rules (offsets,
 * fractions, leap seconds) are at the definition, in calendar.c.
 */
enum gr_reason gr_time_parse_rfc3339(const char *s, size_t n, int64_t *ms);

/* ms since 1970 as RFC 3339 UTC with milliseconds, "2026-11-23T18:20:01.000Z",
 * NUL-terminated (positions, unit_stale, the cluster's stream). Hand-written: it runs once
 * per published position. */
#define GR_TIME_TEXT_MAX 32
void gr_time_format(int64_t ms, char buf[GR_TIME_TEXT_MAX]);

#endif
