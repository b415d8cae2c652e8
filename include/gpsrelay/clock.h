/*
 * clock.h - the wall clock in milliseconds. Fix times are UTC wall-clock times, so
 * receive times, filters and staleness use the same clock (libuv's uv_now() is
 * monotonic and serves timeouts).
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

#endif
