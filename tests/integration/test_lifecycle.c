/*
 * test_lifecycle.c - reload and shutdown as an operator drives them (docs/configuration.md,
 * docs/operations.md):
 *
 * - SIGHUP with a good file: what a running daemon can change is in force (an Origin
 *   allowlist appears), what it cannot (a listen address) is refused with a log line, the
 *   mapping is re-read (a console sees unit_added), and no console is disconnected.
 * - SIGHUP with a bad file: the error is logged with file:line, the running
 *   configuration stays.
 * - A flood of FLOOD bad reports: one summary line in the log, not one per report.
 * - SIGTERM with CONSOLES consoles connected: every one gets close 1001 and the daemon
 *   exits 0 within SHUTDOWN_MS.
 *
 * Usage: itest_lifecycle /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS     5000
#define CONSOLES    2000 /* "thousands of consoles" */
#define SHUTDOWN_MS 5000 /* issue 7: exit 0 within 5 s */
#define WS_PATH     "/socket/websocket?vsn=2.0.0"
#define FLOOD       1000
#define SUMMARY_MS  15000 /* the daemon summarizes drops every 10 s */

static struct gr_daemon d;

static const char CSV[] = "device_id,agency_id,label,source_addr\nAMB-12,county-ems,,\n";
static const char CSV2[] = "device_id,agency_id,label,source_addr\nAMB-12,county-ems,,\n"
                           "AMB-14,county-ems,Medic 14,\n";

static void write_in_dir(const char *name, const char *text)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", d.dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

/* How many times the daemon's log holds needle. */
static int logged_times(const char *needle)
{
    char path[160];
    snprintf(path, sizeof path, "%s/stderr.log", d.dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    int times = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p++)
        times++;
    return times;
}

static bool logged(const char *needle)
{
    return logged_times(needle) > 0;
}

/* The configuration the harness wrote, on the same ports, plus extra. */
static void write_conf(const char *extra)
{
    char conf[1024];
    snprintf(conf, sizeof conf,
             "listen_udp 127.0.0.1:%d\nlisten_ws 127.0.0.1:%d\nmapping_file devices.csv\n"
             "auth none\nlog_level info\nmax_connections_per_source %d\n%s",
             d.udp_port, d.ws_port, CONSOLES + 16, extra);
    write_in_dir("gpsrelay.conf", conf);
}

static void reload(void)
{
    CHECK_INT(daemon_signal(&d, SIGHUP), 0);
    CHECK_INT(daemon_notify_wait(&d, "RELOADING=1", WAIT_MS), 0);
    CHECK_INT(daemon_notify_wait(&d, "READY=1", WAIT_MS), 0);
}

static int origin_status(const char *origin)
{
    char headers[128];
    snprintf(headers, sizeof headers, "Origin: %s\r\n", origin);
    int status = 0;
    int fd = ws_connect(d.ws_port, WS_PATH, headers, &status);
    if (fd >= 0)
        close(fd);
    return status;
}

static void test_reload(void)
{
    int console = phx_join_console(d.ws_port, "agency:county-ems", NULL);
    CHECK(console >= 0);
    CHECK_INT(origin_status("http://evil.example"), 101); /* no allowlist yet */

    /* Good file: an allowlist, a different listen_ws (refused), a new device. */
    char extra[256];
    snprintf(extra, sizeof extra, "allowed_origin http://cad.example\nlisten_ws 127.0.0.1:%d\n",
             d.ws_port + 1);
    write_conf(extra);
    write_in_dir("devices.csv", CSV2);
    reload();
    CHECK(logged("reload: listen_ws changed: that takes a restart"));
    CHECK(logged("reload: configuration"));
    json_t *added = phx_recv_event(console, "agency:county-ems", "unit_added", WAIT_MS);
    CHECK_STR(json_string_value(json_object_get(json_array_get(added, 4), "device")), "AMB-14");
    json_decref(added);
    CHECK_INT(origin_status("http://evil.example"), 403);
    CHECK_INT(origin_status("http://cad.example"), 101);

    /* Bad file: logged with file and line; the allowlist above stays in force. */
    write_conf("allowed_origin http://cad.example\nstale_after forever\n");
    reload();
    CHECK(logged("gpsrelay.conf:8: bad value \"forever\" for stale_after"));
    CHECK(logged("the running configuration stays"));
    CHECK_INT(origin_status("http://evil.example"), 403);

    /* The console lived through both: a heartbeat still gets its reply. */
    CHECK_INT(phx_send(console, NULL, "9", "phoenix", "heartbeat", NULL), 0);
    json_t *r = phx_recv_match(console, "phoenix", "phx_reply", "9", WAIT_MS, NULL);
    CHECK(r != NULL);
    json_decref(r);
    close(console);
}

static void test_flood(void)
{
    for (int i = 0; i < FLOOD; i++)
        CHECK_INT(udp_send(d.udp_port, "AMB-12,$GPRMC,garbage*00\r\n", 26), 0);
    int64_t t0 = now_ms();
    while (!logged("ingest: dropped in the last") && now_ms() - t0 < SUMMARY_MS) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* One line with the reasons and counts (rate_limited too: all come from one address). */
    CHECK_INT(logged_times("ingest: dropped in the last 10 s: "), 1);
    CHECK_INT(logged_times(" bad_checksum"), 1);
}

static void test_shutdown(void)
{
    static int fds[CONSOLES];
    int n = 0;
    for (; n < CONSOLES; n++) {
        fds[n] = ws_connect(d.ws_port, WS_PATH, NULL, NULL);
        if (fds[n] < 0)
            break;
    }
    CHECK_INT(n, CONSOLES);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_consoles_connected"), n);

    int64_t t0 = now_ms();
    CHECK_INT(daemon_signal(&d, SIGTERM), 0);
    CHECK_INT(daemon_stop(&d), 0);
    int64_t took = now_ms() - t0;
    printf("%d consoles: exit %lld ms after SIGTERM\n", n, (long long)took);
    CHECK(took <= SHUTDOWN_MS);

    int going_away = 0;
    for (int i = 0; i < n; i++) {
        going_away += ws_wait_close(fds[i], WAIT_MS) == 1001;
        close(fds[i]);
    }
    CHECK_INT(going_away, n);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 2;
    }
    /* Our end of every console is a descriptor too. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    char extra[64];
    snprintf(extra, sizeof extra, "max_connections_per_source %d\n", CONSOLES + 16);
    if (daemon_start(&d, argv[1], extra, CSV) != 0)
        return 1;
    test_reload();
    test_flood();
    test_shutdown();
    return check_result("integration_lifecycle");
}
