/*
 * test_systemd.c - the sd_notify protocol as systemd 252 sees it (docs/operations.md):
 * READY=1 with STATUS=, WATCHDOG=1 from the loop at half of WATCHDOG_USEC, RELOADING=1
 * with MONOTONIC_USEC then READY=1 around SIGHUP, STOPPING=1 on SIGTERM, exit 0.
 *
 * Usage: itest_systemd /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define WAIT_MS 5000

static const char CSV[] = "device_id,agency_id,label,source_addr\nAMB-12,county-ems,,\n";

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 2;
    }
    /* 200 ms: the daemon must ping every 100 ms. */
    static char watchdog[] = "WATCHDOG_USEC=200000";
    static char *env[] = {watchdog, NULL};
    harness_child_env = env;

    struct gr_daemon d;
    if (daemon_start(&d, argv[1], NULL, CSV) != 0)
        return 1;
    CHECK(strstr(d.notify_log, "READY=1") != NULL);
    CHECK(strstr(d.notify_log, "STATUS=0 consoles, 1 devices (0 stale)") != NULL);

    /* Several pings in a row: they come from a timer, not from start-up. */
    for (int i = 0; i < 3; i++)
        CHECK_INT(daemon_notify_wait(&d, "WATCHDOG=1", WAIT_MS), 0);

    CHECK_INT(daemon_signal(&d, SIGHUP), 0);
    CHECK_INT(daemon_notify_wait(&d, "RELOADING=1", WAIT_MS), 0);
    const char *reloading = strstr(d.notify_log, "RELOADING=1");
    CHECK(reloading != NULL && strstr(reloading, "MONOTONIC_USEC=") != NULL);
    CHECK_INT(daemon_notify_wait(&d, "READY=1", WAIT_MS), 0);

    CHECK_INT(daemon_signal(&d, SIGTERM), 0);
    CHECK_INT(daemon_notify_wait(&d, "STOPPING=1", WAIT_MS), 0);
    CHECK_INT(daemon_stop(&d), 0);
    return check_result("integration_systemd");
}
