/*
 * test_reload_files.c - what SIGHUP reads from disk never stalls the loop, and what it puts
 * in force is counted (docs/configuration.md, docs/mapping.md, docs/operations.md; issue "No client
 * takes the daemon down"):
 *
 * - The configuration file replaced by a FIFO with no writer: the reload is refused with a
 *   line naming the file ("is not a regular file"), /healthz keeps answering, the running
 *   configuration stays, and a regular file put back is read by the next SIGHUP.
 * - The same with the CSV mapping_file: the previous mapping stays in force (its devices
 *   are still counted) and the refusal is counted in gpsrelay_mapping_load_failures_total.
 * - A CSV reload is counted in gpsrelay_mapping_loads_total (1 at start, 2 after SIGHUP).
 *
 * Each case gets its own daemon, so a loop stuck in one case cannot hide the others.
 *
 * Usage: itest_reload_files /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Upper bound for anything the daemon does in answer to a signal (ASan builds included). */
#define WAIT_MS 5000

/* How long /healthz may take to answer while a reload is under way. A loop that is not
 * blocked answers in well under a millisecond; the bound only has to tell "answers" from
 * "stuck in open(2) until a writer appears", which is forever. */
#define HEALTHZ_MS 2000

/* Between two looks at the daemon's log while waiting for a line. */
#define LOG_POLL_MS 20

static const char CSV1[] = "device_id,agency_id,label,source_addr\nAMB-12,county-ems,,\n";
static const char CSV2[] = "device_id,agency_id,label,source_addr\nAMB-12,county-ems,,\n"
                           "AMB-14,county-ems,Medic 14,\n";

static void path_in(const struct gr_daemon *d, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", d->dir, name);
}

static void write_in(const struct gr_daemon *d, const char *name, const char *text)
{
    char path[160];
    path_in(d, name, path, sizeof path);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        CHECK_INT(fclose(f), 0);
    }
}

/* The whole of a (small) file in the daemon's folder into buf; "" when unreadable. */
static void read_in(const struct gr_daemon *d, const char *name, char *buf, size_t cap)
{
    char path[160];
    path_in(d, name, path, sizeof path);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (f != NULL) {
        buf[fread(buf, 1, cap - 1, f)] = '\0';
        fclose(f);
    }
}

/* Replaces a file in the daemon's folder by a FIFO that nobody writes to. */
static void make_fifo(const struct gr_daemon *d, const char *name)
{
    char path[160];
    path_in(d, name, path, sizeof path);
    CHECK_INT(unlink(path), 0);
    CHECK_INT(mkfifo(path, 0600), 0);
}

static void remove_in(const struct gr_daemon *d, const char *name)
{
    char path[160];
    path_in(d, name, path, sizeof path);
    CHECK_INT(unlink(path), 0);
}

static bool logged(const struct gr_daemon *d, const char *needle)
{
    static char text[1 << 20];
    read_in(d, "stderr.log", text, sizeof text);
    return strstr(text, needle) != NULL;
}

/* Polls the daemon's log for needle for up to timeout_ms. */
static bool wait_logged(const struct gr_daemon *d, const char *needle, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (logged(d, needle))
            return true;
        if (now_ms() >= deadline) {
            fprintf(stderr, "not logged within %d ms: %s\n", timeout_ms, needle);
            return false;
        }
        struct timespec ts = {0, LOG_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Polls a /metrics sample until it holds want, for up to timeout_ms; the last value seen. */
/* SIGHUP, and the loop took it: RELOADING=1 is sent before anything is read. */
static void hup(struct gr_daemon *d)
{
    CHECK_INT(daemon_signal(d, SIGHUP), 0);
    CHECK_INT(daemon_notify_wait(d, "RELOADING=1", WAIT_MS), 0);
}

static void test_config_fifo(const char *binary)
{
    struct gr_daemon d;
    if (daemon_start(&d, binary, NULL, CSV1) != 0) {
        CHECK(!"daemon started");
        return;
    }
    char conf_path[160], conf[4096], expect[256];
    path_in(&d, "gpsrelay.conf", conf_path, sizeof conf_path);
    read_in(&d, "gpsrelay.conf", conf, sizeof conf);

    make_fifo(&d, "gpsrelay.conf");
    hup(&d);
    /* The loop is not waiting for a writer: it answers, and finishes the reload. */
    CHECK_INT(http_get(d.ws_port, "/healthz", NULL, 0, HEALTHZ_MS), 200);
    CHECK_INT(daemon_notify_wait(&d, "READY=1", WAIT_MS), 0);
    snprintf(expect, sizeof expect, "%s: is not a regular file (a FIFO)", conf_path);
    CHECK(wait_logged(&d, expect, WAIT_MS));
    CHECK(logged(&d, "the running configuration stays"));
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_config_reload_failures_total"), 1);
    /* The mapping is re-read either way (the running configuration names it). */
    CHECK_INT(http_get(d.ws_port, "/readyz", NULL, 0, HEALTHZ_MS), 200);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_mapping_loads_total", 2, WAIT_MS) >= 0);

    /* A regular file again: the next reload reads it. */
    remove_in(&d, "gpsrelay.conf");
    write_in(&d, "gpsrelay.conf", conf);
    hup(&d);
    CHECK_INT(daemon_notify_wait(&d, "READY=1", WAIT_MS), 0);
    snprintf(expect, sizeof expect, "reload: configuration %s in force", conf_path);
    CHECK(wait_logged(&d, expect, WAIT_MS));
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_config_reload_failures_total"), 1);
    CHECK_INT(daemon_stop(&d), 0);
}

static void test_mapping_fifo(const char *binary)
{
    struct gr_daemon d;
    if (daemon_start(&d, binary, NULL, CSV1) != 0) {
        CHECK(!"daemon started");
        return;
    }
    char csv_path[160], expect[256];
    path_in(&d, "devices.csv", csv_path, sizeof csv_path);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_mapping_devices"), 1);

    make_fifo(&d, "devices.csv");
    hup(&d);
    CHECK_INT(http_get(d.ws_port, "/healthz", NULL, 0, HEALTHZ_MS), 200);
    CHECK_INT(daemon_notify_wait(&d, "READY=1", WAIT_MS), 0);
    snprintf(expect, sizeof expect, "%s: is not a regular file (a FIFO)", csv_path);
    CHECK(wait_logged(&d, expect, WAIT_MS));
    CHECK(wait_logged(&d, "the previous mapping stays in force", WAIT_MS));
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_mapping_load_failures_total", 1, WAIT_MS) >= 0);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_mapping_devices"), 1);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_mapping_loads_total"), 1);
    CHECK_INT(http_get(d.ws_port, "/readyz", NULL, 0, HEALTHZ_MS), 200);

    /* A regular file again: read, and in force. */
    remove_in(&d, "devices.csv");
    write_in(&d, "devices.csv", CSV2);
    hup(&d);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_mapping_devices", 2, WAIT_MS) >= 0);
    CHECK_INT(daemon_stop(&d), 0);
}

static void test_csv_reload_counted(const char *binary)
{
    struct gr_daemon d;
    if (daemon_start(&d, binary, NULL, CSV1) != 0) {
        CHECK(!"daemon started");
        return;
    }
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_mapping_loads_total"), 1);
    write_in(&d, "devices.csv", CSV2);
    hup(&d);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_mapping_devices", 2, WAIT_MS) >= 0);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_mapping_loads_total", 2, WAIT_MS) >= 0);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_mapping_load_failures_total"), 0);
    CHECK_INT(daemon_stop(&d), 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 2;
    }
    test_config_fifo(argv[1]);
    test_mapping_fifo(argv[1]);
    test_csv_reload_counted(argv[1]);
    return check_result("integration_reload_files");
}
