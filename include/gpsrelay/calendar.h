/*
 * calendar.h - the civil calendar: proleptic Gregorian dates and days since 1970-01-01.
 * Pure arithmetic, valid for any year an int64 day count holds.
 */
#ifndef GPSRELAY_CALENDAR_H
#define GPSRELAY_CALENDAR_H

#include <stdint.h>

/* Days from 1970-01-01 to the given proleptic Gregorian date (month 1-12, day 1-31). */
int64_t gr_days_from_civil(int year, int month, int day);

/* The date of a day count since 1970-01-01: year, month 1-12, day 1-31. */
void gr_civil_from_days(int64_t days, int *year, int *month, int *day);

#endif
