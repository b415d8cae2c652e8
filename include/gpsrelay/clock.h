/*
 * clock.h - the wall clock in milliseconds: fix times are UTC wall-clock times, so
 * receive times, filters and staleness use the same clock (libuv's uv_now() is
 * monotonic and serves timeouts). And a monotonic clock for measured durations.
 */
#ifndef GPSRELAY_CLOCK_H
#define GPSRELAY_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t gr_wall_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A monotonic clock in nanoseconds (the one uv_hrtime() reads), for durations. */
static inline int64_t gr_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
