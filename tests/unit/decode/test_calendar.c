/*
 * test_calendar.c - the civil calendar: day counts of known dates, and the inverse giving
 * back every date of four centuries around 1970.
 */
#include "check.h"
#include "gpsrelay/calendar.h"

static void test_days_from_civil(void)
{
    CHECK_INT(gr_days_from_civil(1970, 1, 1), 0);
    CHECK_INT(gr_days_from_civil(1969, 12, 31), -1);
    CHECK_INT(gr_days_from_civil(2000, 3, 1), 11017);
    CHECK_INT(gr_days_from_civil(2026, 11, 23), 20780); /* date -d 2026-11-23 +%s / 86400 */
    CHECK_INT(gr_days_from_civil(2024, 2, 29), 19782);
    CHECK_INT(gr_days_from_civil(2100, 3, 1) - gr_days_from_civil(2100, 2, 28), 1); /* no 29th */
    CHECK_INT(gr_days_from_civil(1600, 2, 29), -135081);
}

/* gr_civil_from_days undoes gr_days_from_civil on every day from 1800 to 2199. */
static void test_civil_from_days(void)
{
    int64_t first = gr_days_from_civil(1800, 1, 1), last = gr_days_from_civil(2199, 12, 31);
    int bad = 0;
    for (int64_t z = first; z <= last; z++) {
        int y, m, d;
        gr_civil_from_days(z, &y, &m, &d);
        bad += gr_days_from_civil(y, m, d) != z || m < 1 || m > 12 || d < 1 || d > 31;
    }
    CHECK_INT(bad, 0);
    int y, m, d;
    gr_civil_from_days(20780, &y, &m, &d);
    CHECK_INT(y, 2026);
    CHECK_INT(m, 11);
    CHECK_INT(d, 23);
}

/* Dates the calendar has, and those it does not: gr_days_from_civil would move the latter. */
static void test_date_valid(void)
{
    CHECK(gr_date_valid(2026, 2, 28));
    CHECK(!gr_date_valid(2026, 2, 29));
    CHECK(!gr_date_valid(2026, 2, 31)); /* would count as 2026-03-03 */
    CHECK(gr_date_valid(2024, 2, 29));
    CHECK(gr_date_valid(2000, 2, 29));
    CHECK(!gr_date_valid(1900, 2, 29));
    CHECK(!gr_date_valid(2026, 4, 31));
    CHECK(gr_date_valid(2026, 12, 31));
    CHECK(!gr_date_valid(2026, 0, 1));
    CHECK(!gr_date_valid(2026, 13, 1));
    CHECK(!gr_date_valid(2026, 1, 0));
    CHECK(!gr_date_valid(2026, 1, 32));
    CHECK_INT(gr_days_in_month(2026, 2), 28);
    CHECK_INT(gr_days_in_month(2028, 2), 29);
    CHECK_INT(gr_days_in_month(2026, 9), 30);
}

int main(void)
{
    test_date_valid();
    test_days_from_civil();
    test_civil_from_days();
    return check_result("test_calendar");
}
