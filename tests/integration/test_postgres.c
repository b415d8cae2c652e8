/*
 * test_postgres.c - the mapping from a real PostgreSQL 15 (docs/mapping.md): initial load,
 * live inserts, deletes and moves seen by a console within a second, an outage with
 * positions flowing (none lost), a change made while the daemon is cut off arriving after
 * it reconnects, a 10,000-row transaction, a server that hangs (SIGSTOP) while idle and
 * during a load, rows the mapping refuses (one address for two devices) left out while the
 * rest applies, and starts during an outage with and without mapping_cache. Labels:
 * the join reply's units, and a label change seen as a unit_added.
 *
 * The cluster is made, stopped, restarted and removed by tests/pg/pg_cluster.sh; the
 * daemon reaches it over TCP on 127.0.0.1, so "cut off" means PostgreSQL listening on its
 * unix socket only while psql makes the change.
 *
 * Usage: itest_postgres /path/to/gpsrelayd /path/to/pg_cluster.sh /path/to/schema.sql
 */
#include "harness.h"
#include "../unit/check.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 5000 /* generous: the daemon runs under ASan in CI */
/* docs/mapping.md: a change applies within a second; the sanitizers' build runs the same
 * code two to five times slower, so there the bound on the 10,000-device burst is wider. */
#define LIVE_MS 1000
#ifdef GR_SANITIZED
#define BURST_LIVE_MS (3 * LIVE_MS)
#else
#define BURST_LIVE_MS LIVE_MS
#endif
#define RECONNECT_MS  40000 /* backoff doubles to 30 s: an outage of a few s needs < 8 s */
#define BURST_DEVICES 10000
/* pgconn.h's bounds for a hung server: GR_PGCONN_QUERY_MS of silence fails a query in flight,
 * and an idle connection is probed after GR_PGCONN_PROBE_MS. */
#define QUERY_MS 10000
#define PROBE_MS 15000

static const char *cluster_sh, *schema;
static char pgdir[256], conninfo[256];
static struct gr_daemon d;
static long long n_devices; /* in the mapping when the first daemon stopped */
static int64_t next_ms;
static double next_lat = 40.71;

/* Runs pg_cluster.sh CMD pgdir [args], with the SQL (if any) on psql's command line. */
static int cluster(const char *cmd, const char *sql)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (sql != NULL)
            execl(cluster_sh, cluster_sh, cmd, pgdir, "-c", sql, (char *)NULL);
        else
            execl(cluster_sh, cluster_sh, cmd, pgdir, (char *)NULL);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "pg_cluster.sh %s failed%s%s\n", cmd, sql ? ": " : "", sql ? sql : "");
        return -1;
    }
    return 0;
}

static int psql(const char *sql)
{
    return cluster("psql", sql);
}

static int console_join(const char *topic, json_t **response)
{
    int fd = phx_join_console(d.ws_port, topic, response);
    CHECK(fd >= 0); /* connected, joined, "ok" */
    return fd;
}

/* Waits up to timeout_ms for event on topic for device; returns ms it took, or -1. */
static long wait_event(int fd, const char *topic, const char *event, const char *device,
                       int timeout_ms)
{
    int64_t t0 = now_ms();
    for (;;) {
        int left = timeout_ms - (int)(now_ms() - t0);
        json_t *f = left > 0 ? phx_recv_event(fd, topic, event, left) : NULL;
        if (f == NULL) {
            fprintf(stderr, "no %s for %s on %s\n", event, device, topic);
            return -1;
        }
        const char *dev = json_string_value(json_object_get(json_array_get(f, 4), "device"));
        bool match = dev != NULL && strcmp(dev, device) == 0;
        json_decref(f);
        if (match)
            return (long)(now_ms() - t0);
    }
}

/* One fix of device, 100 ms and about a metre north of the previous fix of any device
 * (so no fix implies an implausible speed for any unit). */
static void send_fix(const char *device)
{
    next_lat += 0.00001;
    CHECK_INT(udp_send_rmc(d.udp_port, device, next_ms, next_lat, -74.006), 0);
    next_ms += 100;
}

/* Sends n fixes of device and checks every one arrives on fd, in order: none lost. */
static void positions_arrive(int fd, const char *topic, const char *device, int n)
{
    int got = 0;
    for (int i = 0; i < n; i++) {
        send_fix(device);
        json_t *f = phx_recv_event(fd, topic, "positions", WAIT_MS);
        json_t *p;
        size_t k;
        json_array_foreach(json_object_get(json_array_get(f, 4), "positions"), k, p)
        {
            if (strcmp(json_string_value(json_object_get(p, "device")), device) == 0)
                got++;
        }
        json_decref(f);
    }
    CHECK_INT(got, n);
}

/* A fix from 127.0.0.1 with no device id anywhere: only the sender's address (a device's
 * source_addr) can say whose it is. */
static void send_fix_without_id(void)
{
    char body[128], line[160];
    time_t t = (time_t)(next_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    next_lat += 0.00001;
    int minutes = (int)((next_lat - 40) * 60 * 1000000 + 0.5);
    snprintf(body, sizeof body,
             "GPRMC,%02d%02d%02d.%03d,A,40%02d.%06d,N,07400.360000,W,1.0,90.0,%02d%02d%02d,,,A",
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(next_ms % 1000), minutes / 1000000,
             minutes % 1000000, tm.tm_mday, tm.tm_mon + 1, tm.tm_year % 100);
    unsigned sum = 0;
    for (const char *p = body; *p; p++)
        sum ^= (unsigned char)*p;
    int n = snprintf(line, sizeof line, "$%s*%02X\r\n", body, sum);
    CHECK_INT(udp_send(d.udp_port, line, (size_t)n), 0);
    next_ms += 100;
}

/* Waits for a positions event on fd carrying a position of device; 0 or -1. */
static int wait_position(int fd, const char *topic, const char *device, int timeout_ms)
{
    int64_t t0 = now_ms();
    for (;;) {
        int left = timeout_ms - (int)(now_ms() - t0);
        json_t *f = left > 0 ? phx_recv_event(fd, topic, "positions", left) : NULL;
        if (f == NULL) {
            fprintf(stderr, "no position of %s on %s\n", device, topic);
            return -1;
        }
        bool match = false;
        json_t *p;
        size_t k;
        json_array_foreach(json_object_get(json_array_get(f, 4), "positions"), k, p)
        {
            const char *dev = json_string_value(json_object_get(p, "device"));
            match |= dev != NULL && strcmp(dev, device) == 0;
        }
        json_decref(f);
        if (match)
            return 0;
    }
}

static const char SEED[] =
    "INSERT INTO agencies (id) VALUES ('a1'), ('a2');"
    "INSERT INTO devices (id, label, source_addr) VALUES ('D1', 'Unit 1', NULL),"
    " ('D2', 'Unit 2', '10.0.0.2'), ('D3', 'Unit 3', NULL);"
    "INSERT INTO device_agencies VALUES ('D1', 'a1'), ('D2', 'a1'), ('D2', 'a2'), ('D3', 'a2');";

static void test_live_changes(void)
{
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_mapping_devices"), 3);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_postgres_up"), 1);

    json_t *resp = NULL;
    int a1 = console_join("agency:a1", &resp);
    /* The join reply lists a1's units with their labels from devices.label, in id order;
     * D3 is a2's only. */
    char *units = json_dumps(json_object_get(resp, "units"), JSON_COMPACT);
    CHECK_STR(units, "[{\"device\":\"D1\",\"label\":\"Unit 1\"},"
                     "{\"device\":\"D2\",\"label\":\"Unit 2\"}]");
    free(units);
    json_decref(resp);

    /* A label change (NOTIFY) is a unit_added for a unit already present, within a second,
     * on each of its agencies' channels; the JSON escapes what must be. */
    int a2 = console_join("agency:a2", NULL);
    int64_t t0 = now_ms();
    CHECK_INT(psql("UPDATE devices SET label = 'Medic \"2\" \xc3\xa9' WHERE id = 'D2'"), 0);
    json_t *f = phx_recv_event(a1, "agency:a1", "unit_added", WAIT_MS);
    long ms = (long)(now_ms() - t0);
    printf("label change seen after %ld ms\n", ms);
    CHECK(ms <= LIVE_MS);
    char *added = json_dumps(json_array_get(f, 4), JSON_COMPACT);
    CHECK_STR(added, "{\"device\":\"D2\",\"label\":\"Medic \\\"2\\\" \xc3\xa9\"}");
    free(added);
    json_decref(f);
    f = phx_recv_event(a2, "agency:a2", "unit_added", WAIT_MS);
    CHECK_STR(json_string_value(json_object_get(json_array_get(f, 4), "label")),
              "Medic \"2\" \xc3\xa9");
    json_decref(f);
    close(a2);

    /* Insert, move and delete, each seen within a second. */
    CHECK_INT(psql("INSERT INTO devices (id) VALUES ('D4');"
                   "INSERT INTO device_agencies VALUES ('D4', 'a1');"),
              0);
    ms = wait_event(a1, "agency:a1", "unit_added", "D4", WAIT_MS);
    printf("insert seen after %ld ms\n", ms);
    CHECK(ms >= 0 && ms <= LIVE_MS);

    CHECK_INT(psql("UPDATE device_agencies SET agency_id = 'a2' WHERE device_id = 'D4'"), 0);
    ms = wait_event(a1, "agency:a1", "unit_removed", "D4", WAIT_MS);
    printf("move seen after %ld ms\n", ms);
    CHECK(ms >= 0 && ms <= LIVE_MS);

    CHECK_INT(psql("DELETE FROM devices WHERE id = 'D1'"), 0);
    ms = wait_event(a1, "agency:a1", "unit_removed", "D1", WAIT_MS);
    printf("delete seen after %ld ms\n", ms);
    CHECK(ms >= 0 && ms <= LIVE_MS);

    /* Joins authorize against the new mapping: D4 is a2's now. */
    a2 = console_join("agency:a2", NULL);
    send_fix("D4");
    f = phx_recv_event(a2, "agency:a2", "positions", WAIT_MS);
    CHECK(f != NULL);
    json_decref(f);
    close(a2);

    /* A 10,000-device transaction: one notification, applied in steps, loop responsive. */
    char sql[512];
    snprintf(sql, sizeof sql,
             "BEGIN; INSERT INTO devices (id) SELECT 'B' || g FROM generate_series(1, %d) g;"
             "INSERT INTO device_agencies SELECT 'B' || g, 'a2' FROM generate_series(1, %d) g;"
             "COMMIT;",
             BURST_DEVICES, BURST_DEVICES);
    t0 = now_ms();
    CHECK_INT(psql(sql), 0);
    ms = http_metric_wait(d.ws_port, "gpsrelay_mapping_devices", 3 + BURST_DEVICES, WAIT_MS);
    printf("%d devices in one transaction applied %ld ms after psql returned (%lld ms in all)\n",
           BURST_DEVICES, ms, (long long)(now_ms() - t0));
    CHECK(ms >= 0 && ms <= BURST_LIVE_MS);
    positions_arrive(a1, "agency:a1", "D2", 3);
    close(a1);
}

/* Positions keep flowing with the last mapping while PostgreSQL is gone; a change made
 * while the daemon cannot see it arrives after the reconnect. */
static void test_outage(void)
{
    int a1 = console_join("agency:a1", NULL);
    positions_arrive(a1, "agency:a1", "D2", 5);
    CHECK_INT(cluster("stop", NULL), 0);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_postgres_up", 0, WAIT_MS) >= 0);
    positions_arrive(a1, "agency:a1", "D2", 10);

    /* PostgreSQL back on its unix socket only: psql changes the mapping, the daemon (TCP)
     * cannot connect, so no notification can reach it. */
    CHECK_INT(cluster("start-local", NULL), 0);
    CHECK_INT(psql("INSERT INTO devices (id) VALUES ('D5');"
                   "INSERT INTO device_agencies VALUES ('D5', 'a1');"),
              0);
    positions_arrive(a1, "agency:a1", "D2", 5);
    CHECK_INT(cluster("stop", NULL), 0);
    CHECK_INT(cluster("start", NULL), 0);
    /* The reconnect may wait out the backoff, which grew during the outage. */
    long ms = wait_event(a1, "agency:a1", "unit_added", "D5", RECONNECT_MS);
    printf("change made while cut off seen %ld ms after PostgreSQL came back\n", ms);
    CHECK(ms >= 0);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_postgres_up", 1, WAIT_MS) >= 0);
    CHECK(http_metric(d.ws_port, "gpsrelay_postgres_failures_total") >= 1);
    positions_arrive(a1, "agency:a1", "D5", 3);
    close(a1);
}

/* A server that stops answering while its kernel still accepts and ACKs (every process of
 * the cluster SIGSTOPped): noticed while idle (the probe) and during a load (SIGHUP), with
 * positions flowing and /readyz 200 all along; once it runs again, the daemon reconnects and
 * applies a change made after. */
static void test_hung_server(void)
{
    char body[64];
    int a1 = console_join("agency:a1", NULL);
    long long timeouts = http_metric(d.ws_port, "gpsrelay_postgres_timeouts_total");
    CHECK(timeouts >= 0);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_postgres_up"), 1);

    CHECK_INT(cluster("freeze", NULL), 0);
    int64_t t0 = now_ms();
    positions_arrive(a1, "agency:a1", "D2", 5);
    long ms = http_metric_wait(d.ws_port, "gpsrelay_postgres_up", 0, PROBE_MS + QUERY_MS + WAIT_MS);
    printf("idle connection to a stopped server noticed after %lld ms\n",
           (long long)(now_ms() - t0));
    CHECK(ms >= 0);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_postgres_timeouts_total"), timeouts + 1);
    CHECK_INT(http_get(d.ws_port, "/readyz", body, sizeof body, WAIT_MS), 200);
    positions_arrive(a1, "agency:a1", "D2", 5);
    CHECK_INT(cluster("thaw", NULL), 0);
    t0 = now_ms();
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_postgres_up", 1, RECONNECT_MS) >= 0);
    printf("reconnected %lld ms after the server ran again\n", (long long)(now_ms() - t0));

    /* A reload while it is stopped: the load query waits for an answer that never comes. */
    CHECK_INT(cluster("freeze", NULL), 0);
    CHECK_INT(daemon_signal(&d, SIGHUP), 0);
    t0 = now_ms();
    positions_arrive(a1, "agency:a1", "D2", 5);
    ms = http_metric_wait(d.ws_port, "gpsrelay_postgres_up", 0, QUERY_MS + WAIT_MS);
    printf("load from a stopped server given up after %lld ms\n", (long long)(now_ms() - t0));
    CHECK(ms >= 0);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_postgres_timeouts_total"), timeouts + 2);
    CHECK_INT(http_get(d.ws_port, "/readyz", body, sizeof body, WAIT_MS), 200);
    positions_arrive(a1, "agency:a1", "D2", 5);
    CHECK_INT(cluster("thaw", NULL), 0);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_postgres_up", 1, RECONNECT_MS) >= 0);

    CHECK_INT(psql("INSERT INTO devices (id) VALUES ('D6');"
                   "INSERT INTO device_agencies VALUES ('D6', 'a1');"),
              0);
    CHECK(wait_event(a1, "agency:a1", "unit_added", "D6", WAIT_MS) >= 0);
    positions_arrive(a1, "agency:a1", "D6", 3);
    close(a1);
}

/* Two devices with one address as PostgreSQL's inet sees two (127.0.0.1 and its
 * IPv4-mapped form), written past the schema's CHECK as a database from before it may hold:
 * neither device keeps the address, the rows are counted, the rest of the mapping and every
 * later change still apply. */
static void test_conflicting_rows(void)
{
    int a1 = console_join("agency:a1", NULL);
    CHECK_INT(psql("INSERT INTO devices (id, source_addr) VALUES ('D7', '127.0.0.1');"
                   "INSERT INTO device_agencies VALUES ('D7', 'a1');"),
              0);
    CHECK(wait_event(a1, "agency:a1", "unit_added", "D7", WAIT_MS) >= 0);
    send_fix_without_id();
    CHECK_INT(wait_position(a1, "agency:a1", "D7", WAIT_MS), 0);

    long long rejected = http_metric(d.ws_port, "gpsrelay_mapping_rows_rejected_total");
    long long unknown =
        http_metric(d.ws_port, "gpsrelay_ingest_rejected_total{reason=\"unknown_device\"}");
    CHECK_INT(rejected, 0);
    CHECK(unknown >= 0);
    CHECK_INT(psql("ALTER TABLE devices DROP CONSTRAINT devices_source_addr_not_v4_mapped;"
                   "INSERT INTO devices (id, source_addr) VALUES ('D8', '::ffff:127.0.0.1');"
                   "INSERT INTO device_agencies VALUES ('D8', 'a1');"),
              0);
    CHECK(wait_event(a1, "agency:a1", "unit_added", "D8", WAIT_MS) >= 0);
    CHECK(http_metric(d.ws_port, "gpsrelay_mapping_rows_rejected_total") >= rejected + 2);
    CHECK_INT(psql("INSERT INTO devices (id) VALUES ('D9');"
                   "INSERT INTO device_agencies VALUES ('D9', 'a1');"),
              0);
    CHECK(wait_event(a1, "agency:a1", "unit_added", "D9", WAIT_MS) >= 0);
    positions_arrive(a1, "agency:a1", "D9", 3);

    /* 127.0.0.1 is nobody's now: its fix without an id is refused, not given to D7 or D8. */
    send_fix_without_id();
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_ingest_rejected_total{reason=\"unknown_device\"}",
                           unknown + 1, WAIT_MS) >= 0);
    CHECK(http_metric(d.ws_port, "gpsrelay_mapping_rows_rejected_total") >= rejected + 4);
    close(a1);
}

/* Stopping while a load waits on a stopped server: the daemon stops at once, cleanly. */
static void test_stop_while_hung(void)
{
    CHECK_INT(cluster("freeze", NULL), 0);
    CHECK_INT(daemon_signal(&d, SIGHUP), 0);
    CHECK_INT(daemon_notify_wait(&d, "READY=1", WAIT_MS), 0);     /* the reload began */
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_postgres_up"), 1); /* not given up yet */
    int64_t t0 = now_ms();
    CHECK_INT(daemon_stop(&d), 0);
    printf("stopped in %lld ms with a load in flight to a stopped server\n",
           (long long)(now_ms() - t0));
    CHECK_INT(cluster("thaw", NULL), 0);
}

/* Starts during an outage: with the cache written by the previous run, ready at once with
 * its mapping; without one, not ready until PostgreSQL arrives, which still holds the two
 * devices with one address. */
static void test_start_during_outage(const char *daemon_bin)
{
    char conf[768];
    CHECK_INT(cluster("stop", NULL), 0);

    snprintf(conf, sizeof conf, "postgres \"%s\"\nmapping_cache %s/cache.csv\n", conninfo, pgdir);
    CHECK_INT(daemon_start_ex(&d, daemon_bin, conf, NULL, DAEMON_NO_MAPPING_FILE), 0);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_mapping_devices"), n_devices);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_postgres_up"), 0);
    char body[64];
    CHECK_INT(http_get(d.ws_port, "/readyz", body, sizeof body, WAIT_MS), 200);
    int a1 = console_join("agency:a1", NULL);
    positions_arrive(a1, "agency:a1", "D5", 3);
    close(a1);
    CHECK_INT(daemon_stop(&d), 0);

    snprintf(conf, sizeof conf, "postgres \"%s\"\n", conninfo);
    CHECK_INT(
        daemon_start_ex(&d, daemon_bin, conf, NULL, DAEMON_NO_MAPPING_FILE | DAEMON_NO_WAIT_READY),
        0);
    CHECK_INT(http_get(d.ws_port, "/readyz", body, sizeof body, WAIT_MS), 503);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_mapping_devices"), 0);
    CHECK_INT(cluster("start", NULL), 0);
    CHECK_INT(daemon_notify_wait(&d, "READY=1", RECONNECT_MS), 0);
    CHECK_INT(http_get(d.ws_port, "/readyz", body, sizeof body, WAIT_MS), 200);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_mapping_devices"), n_devices);
    CHECK(http_metric(d.ws_port, "gpsrelay_mapping_rows_rejected_total") >= 2);
    CHECK_INT(daemon_stop(&d), 0);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s gpsrelayd pg_cluster.sh schema.sql\n", argv[0]);
        return 2;
    }
    cluster_sh = argv[2];
    schema = argv[3];
    next_ms = (int64_t)(time(NULL) - 300) * 1000;
    snprintf(pgdir, sizeof pgdir, "/tmp/gpsrelay-pg-%d", (int)getpid());

    if (cluster("init", NULL) != 0) {
        cluster("destroy", NULL);
        return 1;
    }
    char port[16] = "";
    char path[300];
    snprintf(path, sizeof path, "%s/port", pgdir);
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(port, sizeof port, f) == NULL)
        CHECK(false);
    if (f != NULL)
        fclose(f);
    port[strcspn(port, "\n")] = '\0';
    snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%s user=postgres dbname=postgres",
             port);

    char apply[320];
    snprintf(apply, sizeof apply, "\\i %s", schema);
    if (psql(apply) == 0 && psql(SEED) == 0) {
        char conf[768];
        snprintf(conf, sizeof conf, "postgres \"%s\"\nmapping_cache %s/cache.csv\n", conninfo,
                 pgdir);
        if (daemon_start_ex(&d, argv[1], conf, NULL, DAEMON_NO_MAPPING_FILE) == 0) {
            test_live_changes();
            test_outage();
            test_hung_server();
            test_conflicting_rows();
            n_devices = http_metric(d.ws_port, "gpsrelay_mapping_devices");
            CHECK_INT(n_devices, 8 + BURST_DEVICES);
            test_stop_while_hung();
            test_start_during_outage(argv[1]);
        } else {
            CHECK(false);
        }
    } else {
        CHECK(false);
    }
    cluster("destroy", NULL);
    return check_result("integration_postgres");
}
