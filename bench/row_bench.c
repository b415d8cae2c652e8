/*
 * row_bench.c - what the archive's row encoder (src/archive/row.c) costs per position, and
 * how much of it is printing doubles (bench/run-archive.sh reports the figures with it).
 *
 *   encoder     gr_archive_row_encode as it ships: vsnprintf per value, %.17g per double
 *   %.17g       snprintf("%.17g") alone, per double (six per NMEA position)
 *   by hand     the same line written without vsnprintf (memcpy, integer digits), the
 *               doubles still by %.17g: what the line costs besides the doubles
 *   no doubles  the same, each double replaced by a 17-digit constant: the floor any faster
 *               exact double printer (shortest round trip, Ryu) can approach
 *
 * Fixes as the NMEA decoder makes them (degrees from ddmm.mmmm, knots to m/s), so every
 * double needs its 16-17 digits. Median of 5 passes of N positions each.
 *
 * usage: row_bench [N]     (1000000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpsrelay/archive_row.h"
#include "gpsrelay/calendar.h"
#include "gpsrelay/format.h"

#define FIXES 4096

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static struct gr_fix fixes[FIXES];
static volatile size_t sink;

static void make_fixes(void)
{
    for (int i = 0; i < FIXES; i++) {
        struct gr_fix *f = &fixes[i];
        f->time_ms = 1764921600000 + (int64_t)i * 1000;
        f->lat = 40.0 + (42.0 + (double)(i % 10000) / 10000.0) / 60.0;
        f->lon = -(74.0 + (0.36 + (double)(i % 3600) * 0.001) / 60.0);
        f->speed = 12.0 * 1852.0 / 3600.0;
        f->course = 271.5;
        f->alt = 10.2;
        f->hdop = 0.9;
        f->sats = 9;
        f->fields = GR_FIX_SPEED | GR_FIX_COURSE | GR_FIX_ALT | GR_FIX_HDOP | GR_FIX_SATS;
        f->src = GR_SRC_NMEA;
    }
}

/* ---- the line by hand ------------------------------------------------------------------ */

static char *put_uint(char *p, unsigned long long v, int width)
{
    char d[24];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 || n < width);
    while (n > 0)
        *p++ = d[--n];
    return p;
}

static char *put_time(char *p, int64_t ms)
{
    gr_time_format(ms, p);
    return p + strlen(p);
}

static char *put_g17(char *p, double v)
{
    return p + snprintf(p, 32, "%.17g", v);
}

static char *put_const(char *p, double v)
{
    (void)v;
    memcpy(p, "40.702056666666667", 18);
    return p + 18;
}

/* Device ids and epochs need no escaping here (no backslash, tab or newline). */
static size_t by_hand(const struct gr_archive_row *r, char *out, char *(*dbl)(char *, double))
{
    const struct gr_fix *f = r->fix;
    char *p = out;
    size_t n = strlen(r->device);
    memcpy(p, r->device, n);
    p += n;
    *p++ = '\t';
    p = put_time(p, f->time_ms);
    *p++ = '\t';
    p = dbl(p, f->lat);
    *p++ = '\t';
    p = dbl(p, f->lon);
    const double v[4] = {f->speed, f->course, f->alt, f->hdop};
    for (int i = 0; i < 4; i++) {
        *p++ = '\t';
        p = dbl(p, v[i]);
    }
    *p++ = '\t';
    p = put_uint(p, (unsigned)f->sats, 1);
    const char *src = gr_source_name(f->src);
    *p++ = '\t';
    n = strlen(src);
    memcpy(p, src, n);
    p += n;
    memcpy(p, "\t\\N\t", 4);
    p += 4;
    p = put_time(p, r->rx_ms);
    *p++ = '\t';
    n = strlen(r->epoch);
    memcpy(p, r->epoch, n);
    p += n;
    *p++ = '\t';
    p = put_uint(p, r->seq, 1);
    *p++ = '\n';
    *p = '\0';
    return (size_t)(p - out);
}

/* ---- timing ------------------------------------------------------------------------------ */

enum kind { ENCODER, G17, HAND, HAND_CONST };

static double pass(enum kind k, long n)
{
    char line[GR_ARCHIVE_ROW_MAX];
    struct gr_archive_row row = {.device = "BENCH-1234", .epoch = "00000000000000ab"};
    size_t total = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        const struct gr_fix *f = &fixes[i % FIXES];
        row.fix = f;
        row.rx_ms = f->time_ms + 120;
        row.seq = (uint64_t)i;
        switch (k) {
        case ENCODER:
            total += (size_t)gr_archive_row_encode(&row, line, sizeof(line));
            break;
        case G17:
            total += (size_t)snprintf(line, sizeof(line), "%.17g", f->lat);
            break;
        case HAND:
            total += by_hand(&row, line, put_g17);
            break;
        case HAND_CONST:
            total += by_hand(&row, line, put_const);
            break;
        }
    }
    sink += total;
    return (now_ns() - t0) / (double)n;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    make_fixes();

    /* The hand-written line must be the encoder's, byte for byte. */
    char a[GR_ARCHIVE_ROW_MAX], b[GR_ARCHIVE_ROW_MAX];
    struct gr_archive_row row = {.device = "BENCH-1234",
                                 .epoch = "00000000000000ab",
                                 .fix = &fixes[7],
                                 .rx_ms = fixes[7].time_ms + 120,
                                 .seq = 42};
    gr_archive_row_encode(&row, a, sizeof(a));
    by_hand(&row, b, put_g17);
    if (strcmp(a, b) != 0) {
        fprintf(stderr, "row_bench: lines differ:\n%s%s", a, b);
        return 1;
    }
    printf("line: %s", a);

    static const char *const names[] = {"encoder (as shipped)", "%.17g alone (one double)",
                                        "by hand, doubles %.17g", "by hand, doubles constant"};
    for (int k = ENCODER; k <= HAND_CONST; k++) {
        double t[5];
        for (int i = 0; i < 5; i++)
            t[i] = pass((enum kind)k, n);
        qsort(t, 5, sizeof(t[0]), cmp);
        printf("%-28s %7.0f ns (runs %.0f-%.0f)\n", names[k], t[2], t[0], t[4]);
    }
    return 0;
}
