/*
 * hub_fixture.h - what the hub's tests (and the Phoenix session test) share: a mapping
 * from a short text, and fixes at known times.
 */
#ifndef GR_TEST_HUB_FIXTURE_H
#define GR_TEST_HUB_FIXTURE_H

#include <stdio.h>
#include <string.h>

#include "gpsrelay/fix.h"
#include "gpsrelay/hub.h"
#include "gpsrelay/mapping.h"
#include "check.h"

/* 2026-11-23T18:20:01.000Z, a wall-clock time (clock.h) the tests' clocks start from. */
#define T0_MS 1795458001000LL

/* A mapping from "device agency" pairs separated by ';' ("A a1;B a1;B a2"), each with an
 * optional "=label" ("A a1=Medic 1;B a1"). */
static inline struct gr_mapping *fixture_mapping(const char *pairs)
{
    char err[256], dev[80], agency[80], label[160];
    struct gr_mapping_builder *b = gr_mapping_builder_new();
    for (const char *p = pairs; sscanf(p, "%79s %79[^;=]", dev, agency) == 2;) {
        const char *eq = strchr(p, '='), *end = strchr(p, ';');
        label[0] = '\0';
        if (eq != NULL && (end == NULL || eq < end))
            snprintf(label, sizeof label, "%.*s", end ? (int)(end - eq - 1) : (int)strlen(eq + 1),
                     eq + 1);
        CHECK_INT(gr_mapping_builder_add(b, dev, agency, label, NULL, err, sizeof err), 0);
        p = strchr(p, ';');
        if (p == NULL)
            break;
        p++;
    }
    struct gr_mapping *m = gr_mapping_builder_finish(b, err, sizeof err);
    CHECK(m != NULL);
    return m;
}

/* A hub with the daemon's default limits (docs/configuration.md: max_future_skew 300 s,
 * max_speed 150 m/s, stale_after 120 s) and the test's callbacks. */
static inline struct gr_hub *fixture_hub(gr_hub_notify_cb notify, gr_hub_event_cb event)
{
    struct gr_hub_options opt = {.max_future_skew_ms = 300000,
                                 .max_speed = 150,
                                 .stale_after_ms = 120000,
                                 .notify = notify,
                                 .event = event};
    struct gr_hub *hub = gr_hub_new(&opt);
    CHECK(hub != NULL);
    return hub;
}

/* A valid NMEA fix at time_ms, with no optional field. */
static inline struct gr_fix fixture_fix(int64_t time_ms, double lat, double lon)
{
    struct gr_fix f = {.time_ms = time_ms, .lat = lat, .lon = lon, .valid = true};
    return f;
}

#endif
