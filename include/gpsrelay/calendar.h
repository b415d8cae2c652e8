/*
 * calendar.h - the civil calendar: proleptic Gregorian dates and days since 1970-01-01.
 * Pure arithmetic, valid for any year an int64 day count holds.
 */
#ifndef GPSRELAY_CALENDAR_H
#define GPSRELAY_CALENDAR_H

#include <stdbool.h>
#include <stdint.h>

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

/* ms since 1970 as RFC 3339 UTC with milliseconds, "2026-11-23T18:20:01.000Z",
 * NUL-terminated (positions, unit_stale, the cluster's stream). Hand-written: it runs once
 * per published position. */
#define GR_TIME_TEXT_MAX 32
void gr_time_format(int64_t ms, char buf[GR_TIME_TEXT_MAX]);

#endif
