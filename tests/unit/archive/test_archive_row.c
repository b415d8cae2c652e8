/*
 * test_archive_row.c - a position as a line of COPY's text format (archive_row.h): the
 * column order, NULLs, times, exact doubles, and escaping of what a device id or attrs may
 * hold. The same lines go through a real PostgreSQL in tests/pg/test_archive_schema.sh.
 */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "gpsrelay/archive_row.h"

/* 2026-11-23T18:20:01.250Z */
#define T_MS 1795458001250LL

int main(void)
{
    char line[GR_ARCHIVE_ROW_MAX];
    const char attrs[] = "{\"note\":\"a\\tb\\\\c\",\"siren\":true}";
    struct gr_fix f = {.time_ms = T_MS,
                       .lat = -33.8688197,
                       .lon = 151.2092955,
                       .speed = 12.5,
                       .sats = 9,
                       .fields = GR_FIX_SPEED | GR_FIX_SATS,
                       .valid = true,
                       .src = GR_SRC_TAIP,
                       .attrs = attrs,
                       .attrs_len = strlen(attrs)};
    struct gr_archive_row r = {"AMB-12", &f, T_MS + 40, "0123456789abcdef", 1042};
    long n = gr_archive_row_encode(&r, line, sizeof(line));
    CHECK_STR(line, "AMB-12\t2026-11-23T18:20:01.250Z\t-33.868819700000003\t151.2092955"
                    "\t12.5\t\\N\t\\N\t\\N\t9\ttaip\t{\"note\":\"a\\\\tb\\\\\\\\c\",\"siren\":true}"
                    "\t2026-11-23T18:20:01.290Z\t0123456789abcdef\t1042\n");
    CHECK_INT(n, strlen(line));

    /* A device id with every character COPY treats specially; no attrs. */
    struct gr_fix g = {.time_ms = 0, .lat = 1, .lon = 2, .valid = true, .src = GR_SRC_NMEA};
    struct gr_archive_row s = {"a\tb\nc\rd\\e", &g, 86399999, "e", 1};
    CHECK(gr_archive_row_encode(&s, line, sizeof(line)) > 0);
    CHECK_STR(line, "a\\tb\\nc\\rd\\\\e\t1970-01-01T00:00:00.000Z\t1\t2\t\\N\t\\N\t\\N\t\\N\t\\N"
                    "\tnmea\t\\N\t1970-01-01T23:59:59.999Z\te\t1\n");

    /* Too small a buffer: refused, never cut. */
    CHECK_INT(gr_archive_row_encode(&r, line, 20), -ENOSPC);
    CHECK_INT(gr_archive_row_encode(&r, line, 0), -ENOSPC);
    return check_result("test_archive_row");
}
