/*
 * test_ingest_limits.c - no modem client takes TCP ingest down for the others: one address
 * holding more than tcp_max_per_source connections is refused past the limit while another
 * address still gets its fix to a console (and a reload moves the limit); a flood of TCP
 * connections under a low RLIMIT_NOFILE stops at the modems' share of descriptors and
 * leaves /healthz, consoles and UDP working. Every refusal is counted on /metrics by reason.
 * A line a modem's hang-up (reset or close) cuts before its end, with no checksum to prove
 * it whole, is dropped and counted as truncated: no position from it reaches a console.
 * A fix dated minutes ahead and far away is refused and does not freeze its unit.
 *
 * Usage: itest_ingest_limits /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 5000
#define TOPIC   "agency:county-ems"

static const char CSV[] = "device_id,agency_id,label,source_addr\n"
                          "TCP-2,county-ems,TCP unit on another address,\n"
                          "UDP-1,county-ems,UDP unit,\n"
                          "0x00A0F4D2C3B4E5F6,county-ems,AirLink modem,\n";

/* A TCP connection from src (a 127.0.0.x address) to 127.0.0.1:port, or -1. */
static int tcp_from(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in from = {.sin_family = AF_INET};
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    inet_pton(AF_INET, src, &from.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&from, sizeof from) < 0 ||
        connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
        fprintf(stderr, "tcp_from %s: %s\n", src, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Whether the daemon hung up on fd (EOF or reset) within timeout_ms. */
static bool hung_up(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    return poll(&p, 1, timeout_ms) == 1 && read(fd, &c, 1) <= 0;
}

/* Waits until sample on /metrics reads want; returns the last value read. */
/* A console joined to TOPIC, or -1. */
static int console(int ws_port)
{
    int fd = ws_connect(ws_port, "/socket/websocket?vsn=2.0.0", NULL, NULL);
    if (fd < 0)
        return -1;
    json_t *reply = NULL;
    if (phx_send(fd, "1", "1", TOPIC, "phx_join", NULL) == 0)
        reply = phx_recv_event(fd, TOPIC, "phx_reply", WAIT_MS);
    if (reply == NULL) {
        close(fd);
        return -1;
    }
    json_decref(reply);
    return fd;
}

/* Whether the console's next position is device's, at lat. */
static bool position_arrives(int console_fd, const char *device, double lat)
{
    json_t *msg = phx_recv_event(console_fd, TOPIC, "positions", WAIT_MS);
    json_t *p = json_array_get(json_object_get(json_array_get(msg, 4), "positions"), 0);
    bool ok = p != NULL && strcmp(json_string_value(json_object_get(p, "device")), device) == 0 &&
              json_number_value(json_object_get(p, "lat")) == lat;
    if (!ok)
        fprintf(stderr, "no position of %s at %g reached the console\n", device, lat);
    json_decref(msg);
    return ok;
}

/* One JSON report line for device, a few seconds old. */
static void json_report(char *out, size_t cap, const char *device, double lat)
{
    char when[32];
    time_t t = time(NULL) - 5;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    snprintf(out, cap, "{\"id\":\"%s\",\"time\":\"%s\",\"lat\":%.4f,\"lon\":-74.0}\n", device, when,
             lat);
}

/* Rewrites the daemon's tcp_max_per_source line (the last line harness wrote). */
static int raise_per_source(const struct gr_daemon *d, int limit)
{
    char path[160], conf[4096];
    snprintf(path, sizeof path, "%s/gpsrelay.conf", d->dir);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(conf, 1, sizeof conf - 1, f) : 0;
    if (f)
        fclose(f);
    conf[n] = '\0';
    char *line = strstr(conf, "tcp_max_per_source ");
    if (line == NULL || (f = fopen(path, "w")) == NULL)
        return -1;
    fprintf(f, "%.*stcp_max_per_source %d\n", (int)(line - conf), conf, limit);
    return fclose(f);
}

#define PER_SOURCE         4
#define PER_SOURCE_EXTRA   6
#define REFUSED_PER_SOURCE "gpsrelay_tcp_refused_total{reason=\"per_source_limit\"}"

/*
 * 127.0.0.1 opens PER_SOURCE + PER_SOURCE_EXTRA connections: the extra ones are closed at
 * once and counted, the first stay open, and 127.0.0.2's fix still reaches a console. A
 * reload raising tcp_max_per_source lets 127.0.0.1 open one more.
 */
static void test_per_source(const char *binary)
{
    struct gr_daemon d;
    int port = free_loopback_port(SOCK_STREAM);
    char extra[128];
    snprintf(extra, sizeof extra, "listen_tcp 127.0.0.1:%d\ntcp_max_per_source %d\n", port,
             PER_SOURCE);
    if (daemon_start(&d, binary, extra, CSV) != 0) {
        CHECK(false);
        return;
    }
    int con = console(d.ws_port);
    CHECK(con >= 0);

    int fds[PER_SOURCE + PER_SOURCE_EXTRA + 1];
    for (int i = 0; i < PER_SOURCE + PER_SOURCE_EXTRA; i++)
        fds[i] = tcp_from("127.0.0.1", port);
    CHECK(http_metric_wait(d.ws_port, REFUSED_PER_SOURCE, PER_SOURCE_EXTRA, WAIT_MS) >= 0);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_tcp_connections", PER_SOURCE, WAIT_MS) >= 0);
    int closed = 0;
    for (int i = 0; i < PER_SOURCE + PER_SOURCE_EXTRA; i++)
        closed += fds[i] >= 0 && hung_up(fds[i], i < PER_SOURCE ? 0 : WAIT_MS);
    CHECK_INT(closed, PER_SOURCE_EXTRA); /* the first PER_SOURCE still open */

    /* Another address is not locked out: its fix goes through. */
    int other = tcp_from("127.0.0.2", port);
    char line[256];
    json_report(line, sizeof line, "TCP-2", 40.5);
    CHECK(other >= 0 && write(other, line, strlen(line)) == (ssize_t)strlen(line));
    CHECK(con >= 0 && position_arrives(con, "TCP-2", 40.5));
    CHECK_INT(http_metric(d.ws_port, REFUSED_PER_SOURCE), PER_SOURCE_EXTRA);

    /* A reload applies a new limit to new connections. */
    CHECK_INT(raise_per_source(&d, PER_SOURCE + 1), 0);
    CHECK_INT(daemon_signal(&d, SIGHUP), 0);
    CHECK_INT(daemon_notify_wait(&d, "READY=1", WAIT_MS), 0);
    fds[PER_SOURCE + PER_SOURCE_EXTRA] = tcp_from("127.0.0.1", port);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_tcp_connections", PER_SOURCE + 2, WAIT_MS) >= 0);
    CHECK_INT(http_metric(d.ws_port, REFUSED_PER_SOURCE), PER_SOURCE_EXTRA);

    for (int i = 0; i <= PER_SOURCE + PER_SOURCE_EXTRA; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (other >= 0)
        close(other);
    if (con >= 0)
        close(con);
    CHECK_INT(daemon_stop(&d), 0);
}

/* The daemon's RLIMIT_NOFILE in test_descriptors, and the modems' share of it
 * ((NOFILE - GR_FD_RESERVE) / 2, ingest.h and acceptor.h). */
#define NOFILE      256
#define TCP_SHARE   ((NOFILE - 64) / 2)
#define FLOOD_CONNS 400 /* past the share, and past NOFILE itself */

/*
 * A flood of TCP connections from one address (tcp_max_per_source out of the way) under
 * RLIMIT_NOFILE 256, as LimitNOFILE=256 would set it: the modems keep TCP_SHARE
 * descriptors and the rest are refused and counted, and /healthz, a new console and a
 * UDP fix to it all still work while the flood holds its connections.
 */
static void test_descriptors(const char *binary)
{
    /* The daemon starts through `sh -c 'ulimit -n N; exec ...'` so this process keeps its
     * own limit for the flood. */
    char wrapper[] = "/tmp/gr-nofile-XXXXXX";
    int wfd = mkstemp(wrapper);
    CHECK(wfd >= 0);
    dprintf(wfd, "#!/bin/sh\nulimit -n %d || exit 111\nexec '%s' \"$@\"\n", NOFILE, binary);
    close(wfd);
    chmod(wrapper, 0700);

    struct rlimit nofile;
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
    CHECK(nofile.rlim_cur > FLOOD_CONNS + 64);

    struct gr_daemon d;
    int port = free_loopback_port(SOCK_STREAM);
    char extra[128];
    snprintf(extra, sizeof extra, "listen_tcp 127.0.0.1:%d\ntcp_max_per_source %d\n", port,
             FLOOD_CONNS);
    if (daemon_start(&d, wrapper, extra, CSV) != 0) {
        CHECK(false);
        unlink(wrapper);
        return;
    }
    static int flood[FLOOD_CONNS];
    int connected = 0;
    for (int i = 0; i < FLOOD_CONNS; i++)
        connected += (flood[i] = tcp_from("127.0.0.1", port)) >= 0;
    CHECK_INT(connected, FLOOD_CONNS);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_tcp_refused_total{reason=\"descriptor_limit\"}",
                           FLOOD_CONNS - TCP_SHARE, WAIT_MS) >= 0);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_tcp_connections"), TCP_SHARE);

    char body[64];
    CHECK_INT(http_get(d.ws_port, "/healthz", body, sizeof body, WAIT_MS), 200);
    int con = console(d.ws_port);
    CHECK(con >= 0);
    CHECK_INT(udp_send_rmc(d.udp_port, "UDP-1", (int64_t)(time(NULL) - 5) * 1000, 41.25, -73.5), 0);
    CHECK(con >= 0 && position_arrives(con, "UDP-1", 41.25));

    for (int i = 0; i < FLOOD_CONNS; i++)
        if (flood[i] >= 0)
            close(flood[i]);
    CHECK(http_metric_wait(d.ws_port, "gpsrelay_tcp_connections", 0, WAIT_MS) >= 0);
    if (con >= 0)
        close(con);
    CHECK_INT(daemon_stop(&d), 0);
    unlink(wrapper);
}

/* A GGA line of TCP-2 at time_ms (whole seconds), lat, altitude 545.4, with or without
 * its checksum and its line end. Returns its length. */
static int gga(char *out, size_t cap, int64_t time_ms, double lat, bool checksum, bool eol)
{
    time_t t = (time_t)(time_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char body[128];
    snprintf(body, sizeof body,
             "GPGGA,%02d%02d%02d.00,%02d%07.4f,N,07400.0000,W,1,08,0.9,545.4,M,"
             "-34.0,M,,",
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)lat, (lat - (int)lat) * 60);
    unsigned sum = 0;
    for (const char *p = body; *p; p++)
        sum ^= (unsigned char)*p;
    int n = snprintf(out, cap, "TCP-2,$%s", body);
    if (checksum)
        n += snprintf(out + n, cap - (size_t)n, "*%02X", sum);
    if (eol)
        n += snprintf(out + n, cap - (size_t)n, "\r\n");
    return n;
}

/* The console's next position is TCP-2's at lat, with the altitude the modem sent. */
static bool whole_position_arrives(int console_fd, double lat)
{
    json_t *msg = phx_recv_event(console_fd, TOPIC, "positions", WAIT_MS);
    json_t *ps = json_object_get(json_array_get(msg, 4), "positions");
    bool ok = json_array_size(ps) == 1;
    json_t *p = json_array_get(ps, 0);
    ok = ok && fabs(json_number_value(json_object_get(p, "lat")) - lat) < 1e-6 &&
         json_number_value(json_object_get(p, "alt")) == 545.4;
    if (!ok) {
        char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
        fprintf(stderr, "expected TCP-2 at %g, alt 545.4; got %s\n", lat, text ? text : "nothing");
        free(text);
    }
    json_decref(msg);
    return ok;
}

#define TRUNCATED "gpsrelay_ingest_rejected_total{reason=\"truncated\"}"

/* A GGA cut inside its altitude ("545.4" sent as "5"), without a checksum. */
static int cut_gga(char *out, size_t cap, int64_t time_ms, double lat)
{
    gga(out, cap, time_ms, lat, false, false);
    return (int)(strstr(out, "545.4") - out) + 1;
}

/*
 * Hang-ups in the middle of a line: a GGA cut in its altitude field by a reset (SO_LINGER
 * 0), and another by an orderly close, are dropped and counted as truncated; a last line
 * with its checksum but no line end, and a whole line without a checksum, are published.
 * The console sees only the whole fixes, each with altitude 545.4, and so does the
 * metric of published positions.
 */
static void test_hangup_mid_line(const char *binary)
{
    struct gr_daemon d;
    int port = free_loopback_port(SOCK_STREAM);
    char extra[128], line[256];
    snprintf(extra, sizeof extra, "listen_tcp 127.0.0.1:%d\n", port);
    if (daemon_start(&d, binary, extra, CSV) != 0) {
        CHECK(false);
        return;
    }
    int con = console(d.ws_port);
    CHECK(con >= 0);
    int64_t t = (int64_t)(time(NULL) - 10) * 1000;

    int fd = tcp_from("127.0.0.1", port);
    int n = gga(line, sizeof line, t, 40.1, true, true);
    CHECK(fd >= 0 && write(fd, line, (size_t)n) == n);
    CHECK(con >= 0 && whole_position_arrives(con, 40.1));
    n = cut_gga(line, sizeof line, t + 1000, 40.1001);
    CHECK(fd >= 0 && write(fd, line, (size_t)n) == n);
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    CHECK(fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == 0);
    if (fd >= 0)
        close(fd); /* RST */
    CHECK(http_metric_wait(d.ws_port, TRUNCATED, 1, WAIT_MS) >= 0);

    fd = tcp_from("127.0.0.1", port);
    n = cut_gga(line, sizeof line, t + 2000, 40.1002);
    CHECK(fd >= 0 && write(fd, line, (size_t)n) == n);
    if (fd >= 0)
        close(fd); /* FIN */
    CHECK(http_metric_wait(d.ws_port, TRUNCATED, 2, WAIT_MS) >= 0);

    fd = tcp_from("127.0.0.1", port);
    n = gga(line, sizeof line, t + 3000, 40.1003, true, false); /* whole by its checksum */
    CHECK(fd >= 0 && write(fd, line, (size_t)n) == n);
    if (fd >= 0)
        close(fd);
    CHECK(con >= 0 && whole_position_arrives(con, 40.1003));

    long long no_checksum = http_metric(d.ws_port, "gpsrelay_ingest_no_checksum_total");
    fd = tcp_from("127.0.0.1", port);
    n = gga(line, sizeof line, t + 4000, 40.1004, false, true); /* whole by its line end */
    CHECK(fd >= 0 && write(fd, line, (size_t)n) == n);
    CHECK(con >= 0 && whole_position_arrives(con, 40.1004));
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_ingest_no_checksum_total"), no_checksum + 1);
    if (fd >= 0)
        close(fd);

    CHECK_INT(http_metric(d.ws_port, "gpsrelay_positions_published_total"), 3);
    CHECK_INT(http_metric(d.ws_port, TRUNCATED), 2);
    if (con >= 0)
        close(con);
    CHECK_INT(daemon_stop(&d), 0);
}

#define SPEED "gpsrelay_ingest_rejected_total{reason=\"implausible_speed\"}"

/*
 * One UDP fix dated 290 s ahead (inside max_future_skew) and 40 km away, between correct
 * ones a second apart: it is refused as implausible_speed and the next correct fix reaches
 * the console, where it once became the position every later fix had to beat.
 */
static void test_future_outlier(const char *binary)
{
    struct gr_daemon d;
    if (daemon_start(&d, binary, "", CSV) != 0) {
        CHECK(false);
        return;
    }
    int con = console(d.ws_port);
    CHECK(con >= 0);
    int64_t t = (int64_t)(time(NULL) - 5) * 1000;
    CHECK_INT(udp_send_rmc(d.udp_port, "UDP-1", t, 41.25, -73.5), 0);
    CHECK(con >= 0 && position_arrives(con, "UDP-1", 41.25));
    CHECK_INT(udp_send_rmc(d.udp_port, "UDP-1", t + 1000 + 290000, 41.61, -73.5), 0);
    CHECK(http_metric_wait(d.ws_port, SPEED, 1, WAIT_MS) >= 0);
    CHECK_INT(udp_send_rmc(d.udp_port, "UDP-1", t + 2000, 41.2501, -73.5), 0);
    CHECK(con >= 0 && position_arrives(con, "UDP-1", 41.2501));
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_positions_published_total"), 2);
    if (con >= 0)
        close(con);
    CHECK_INT(daemon_stop(&d), 0);
}

/* Sends an NMEA sentence body ("GPRMC,...") from fd to 127.0.0.1:port, checksummed. */
static int send_nmea(int fd, int port, const char *body)
{
    unsigned sum = 0;
    for (const char *p = body; *p; p++)
        sum ^= (unsigned char)*p;
    char line[160];
    int n = snprintf(line, sizeof line, "$%s*%02X\r\n", body, sum);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return sendto(fd, line, (size_t)n, 0, (struct sockaddr *)&to, sizeof to) == n ? 0 : -1;
}

/* An RMC body at time_ms (whole seconds), lat, -73.5: no device id, as an AirLink sends. */
static void rmc_body(char *out, size_t cap, int64_t time_ms, double lat)
{
    time_t t = (time_t)(time_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, cap,
             "GPRMC,%02d%02d%02d.00,A,%02d%07.4f,N,07330.0000,W,1.0,90.0,%02d%02d%02d,,,A",
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)lat, (lat - (int)lat) * 60, tm.tm_mday,
             tm.tm_mon + 1, tm.tm_year % 100);
}

#define SPRAY       70000 /* the spray: more senders than the identity table's 65,536 */
#define SPRAY_BATCH 200   /* datagrams sent before waiting for the daemon to read them */
#define REPORTS     "gpsrelay_ingest_reports_total"
#define ID_EVICTED  "gpsrelay_ingest_identity_evicted_total"

/*
 * An AirLink modem names itself with $DEVID and reports; then 70,000 spoofed senders (other
 * loopback addresses and ports) send $DEVID. The modem's next fix, without an id, still
 * finds its device and reaches the console; the spray's excess is counted as evicted.
 */
static void test_identity_spray(const char *binary)
{
    struct gr_daemon d;
    if (daemon_start(&d, binary, "ingest_rate_limit 1000000\n", CSV) != 0) {
        CHECK(false);
        return;
    }
    int con = console(d.ws_port);
    CHECK(con >= 0);
    int modem = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(modem >= 0);
    int64_t t = (int64_t)(time(NULL) - 5) * 1000;
    char body[128];
    CHECK_INT(send_nmea(modem, d.udp_port, "DEVID,0x00A0F4D2C3B4E5F6"), 0);
    rmc_body(body, sizeof body, t, 41.5);
    CHECK_INT(send_nmea(modem, d.udp_port, body), 0);
    CHECK(con >= 0 && position_arrives(con, "0x00A0F4D2C3B4E5F6", 41.5));

    long long reports = http_metric(d.ws_port, REPORTS);
    int sent = 0;
    for (int i = 0; sent < SPRAY && i < 2 * 64512; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in from = {.sin_family = AF_INET,
                                   .sin_port = htons((uint16_t)(1024 + i % 64512))};
        inet_pton(AF_INET, i < 64512 ? "127.0.0.2" : "127.0.0.3", &from.sin_addr);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&from, sizeof from) == 0 &&
            send_nmea(fd, d.udp_port, "DEVID,0xDEADBEEF") == 0)
            sent++;
        if (fd >= 0)
            close(fd);
        if (sent % SPRAY_BATCH == 0 &&
            http_metric_wait(d.ws_port, REPORTS, reports + sent, WAIT_MS) < 0)
            break;
    }
    CHECK_INT(sent, SPRAY);
    CHECK(http_metric_wait(d.ws_port, REPORTS, reports + SPRAY, WAIT_MS) >= 0);
    CHECK_INT(http_metric(d.ws_port, ID_EVICTED), SPRAY - 65536); /* the others' class */

    rmc_body(body, sizeof body, t + 1000, 41.5001);
    CHECK_INT(send_nmea(modem, d.udp_port, body), 0);
    CHECK(con >= 0 && position_arrives(con, "0x00A0F4D2C3B4E5F6", 41.5001));
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_ingest_rejected_total{reason=\"unknown_device\"}"),
              0);
    if (modem >= 0)
        close(modem);
    if (con >= 0)
        close(con);
    CHECK_INT(daemon_stop(&d), 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 2;
    }
    test_per_source(argv[1]);
    test_descriptors(argv[1]);
    test_hangup_mid_line(argv[1]);
    test_future_outlier(argv[1]);
    test_identity_spray(argv[1]);
    return check_result("integration_ingest_limits");
}
