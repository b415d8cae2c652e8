/*
 * test_ingest_limits.c - no modem client takes TCP ingest down for the others: one address
 * holding more than tcp_max_per_source connections is refused past the limit while another
 * address still gets its fix to a console (and a reload moves the limit); a flood of TCP
 * connections under a low RLIMIT_NOFILE stops at the modems' share of descriptors and
 * leaves /healthz, consoles and UDP working. Every refusal is counted on /metrics by reason.
 *
 * Usage: itest_ingest_limits /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <arpa/inet.h>
#include <errno.h>
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
                          "UDP-1,county-ems,UDP unit,\n";

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

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 2;
    }
    test_per_source(argv[1]);
    test_descriptors(argv[1]);
    return check_result("integration_ingest_limits");
}
