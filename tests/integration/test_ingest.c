/*
 * test_ingest.c - every way a modem reaches the real gpsrelayd (docs/ingest.md): RMC+GGA
 * merged into one fix, TCP streams (split lines, a hang-up mid-line, an endless line,
 * idle modems), identity by $DEVID / $PCPTI / source address, TAIP with ;ID=, JSON with
 * attrs, IPv6, and the acceptance filters, each drop counted on /metrics, datagrams the
 * kernel drops when the loop falls behind included.
 *
 * Usage: itest_ingest /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 5000
#define TOPIC   "agency:county-ems"

static const char CSV[] = "device_id,agency_id,label,source_addr\n"
                          "AMB-12,county-ems,Medic 12,\n"
                          "0x00A0F8123456789A,county-ems,Sierra unit,\n"
                          "CP-77,county-ems,Cradlepoint unit,\n"
                          "FIX-ADDR,county-ems,Fixed address unit,127.0.0.2\n"
                          "T-9,county-ems,TAIP unit,\n"
                          "J-1,county-ems,JSON unit,\n"
                          "TCP-1,county-ems,TCP unit,\n"
                          "V6-1,county-ems,IPv6 unit,\n";

static struct gr_daemon daemon_;
static int console_fd = -1;
static int tcp_port, udp6_port;
static time_t base; /* fix times count up from here, a minute in the past */

/* ---- building reports ------------------------------------------------------------------ */

static void hms(char *out, size_t cap, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, cap, "%02d%02d%02d.00", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void rmc(char *out, size_t cap, const char *prefix, time_t t, double lat, double lon)
{
    char body[160], when[16], la[24], lo[24];
    struct tm tm;
    gmtime_r(&t, &tm);
    hms(when, sizeof when, t);
    nmea_angle(la, sizeof la, lat, 2, 'N', 'S');
    nmea_angle(lo, sizeof lo, lon, 3, 'E', 'W');
    snprintf(body, sizeof body, "GPRMC,%s,A,%s,%s,12.0,271.5,%02d%02d%02d,,,A", when, la, lo,
             tm.tm_mday, tm.tm_mon + 1, tm.tm_year % 100);
    nmea_line(out, cap, prefix, body);
}

static void gga(char *out, size_t cap, const char *prefix, time_t t, double lat, double lon)
{
    char body[160], when[16], la[24], lo[24];
    hms(when, sizeof when, t);
    nmea_angle(la, sizeof la, lat, 2, 'N', 'S');
    nmea_angle(lo, sizeof lo, lon, 3, 'E', 'W');
    snprintf(body, sizeof body, "GPGGA,%s,%s,%s,1,09,0.9,10.2,M,-34.2,M,,", when, la, lo);
    nmea_line(out, cap, prefix, body);
}

/* ---- sockets --------------------------------------------------------------------------- */

static int free_port(int family, int type)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    }
    int fd = socket(family, type, 0), port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&ss, len) == 0 &&
        getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port); /* same offset for v6 */
    if (fd >= 0)
        close(fd);
    return port;
}

/* A UDP socket bound to src (a 127.0.0.x address), port 0: one sender with one port. */
static int udp_from(const char *src)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &a.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        perror("udp_from");
    return fd;
}

static void send_from(int fd, const char *text)
{
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)daemon_.udp_port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(sendto(fd, text, strlen(text), 0, (struct sockaddr *)&to, sizeof to) ==
          (ssize_t)strlen(text));
}

static void send_udp(const char *text)
{
    CHECK_INT(udp_send(daemon_.udp_port, text, strlen(text)), 0);
}

static int tcp_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)tcp_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("tcp_connect");
        return -1;
    }
    return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w <= 0) {
            perror("write");
            CHECK(false);
            return;
        }
        c += w;
        n -= (size_t)w;
    }
}

/* ---- console side ---------------------------------------------------------------------- */

/* The next position of device (skipping others), or NULL after WAIT_MS. Caller decrefs. */
static json_t *next_position(const char *device)
{
    return phx_next_position(console_fd, TOPIC, device, WAIT_MS);
}

static double num(json_t *p, const char *key)
{
    return json_number_value(json_object_get(p, key));
}

/* Asserts that the next position of device is at lat/lon and returns it (caller decrefs). */
static json_t *expect_position(const char *device, double lat, double lon)
{
    json_t *p = next_position(device);
    CHECK(p != NULL);
    if (p != NULL) {
        CHECK_NEAR(num(p, "lat"), lat, 1e-7);
        CHECK_NEAR(num(p, "lon"), lon, 1e-7);
    }
    return p;
}

static long long rejected(const char *reason)
{
    char sample[128];
    snprintf(sample, sizeof sample, "gpsrelay_ingest_rejected_total{reason=\"%s\"}", reason);
    return http_metric(daemon_.ws_port, sample);
}

/* ---- scenarios ------------------------------------------------------------------------- */

/* RMC and GGA of one time in one datagram: one position with the fields of both. */
static void test_merge(void)
{
    char a[256], b[256], both[512];
    rmc(a, sizeof a, "AMB-12,", base + 1, 40.7128, -74.006);
    gga(b, sizeof b, "AMB-12,", base + 1, 40.7128, -74.006);
    snprintf(both, sizeof both, "%s%s", a, b);
    long long published = http_metric(daemon_.ws_port, "gpsrelay_positions_published_total");
    send_udp(both);
    json_t *p = expect_position("AMB-12", 40.7128, -74.006);
    CHECK_NEAR(num(p, "speed"), 12.0 * 1852.0 / 3600.0, 0.01);
    CHECK_NEAR(num(p, "course"), 271.5, 1e-9);
    CHECK_NEAR(num(p, "alt"), 10.2, 1e-9);
    CHECK_NEAR(num(p, "hdop"), 0.9, 1e-9);
    CHECK_INT(json_integer_value(json_object_get(p, "sats")), 9);
    json_decref(p);
    CHECK_INT(http_metric(daemon_.ws_port, "gpsrelay_positions_published_total"), published + 1);
}

/* $DEVID (Sierra) and $PCPTI (Cradlepoint) name the sender; its later reports follow. */
static void test_identity_sentences(void)
{
    char line[256], devid[128];
    int sierra = udp_from("127.0.0.1"), cradle = udp_from("127.0.0.1");

    nmea_line(devid, sizeof devid, "", "DEVID,0x00A0F8123456789A");
    send_from(sierra, devid);
    rmc(line, sizeof line, "", base + 2, 40.5, -73.9);
    send_from(sierra, line);
    json_decref(expect_position("0x00A0F8123456789A", 40.5, -73.9));

    nmea_line(devid, sizeof devid, "", "PCPTI,CP-77,142512,A");
    rmc(line, sizeof line, "", base + 2, 40.6, -73.8);
    char both[400];
    snprintf(both, sizeof both, "%s%s", devid, line); /* one datagram: identity first */
    send_from(cradle, both);
    json_decref(expect_position("CP-77", 40.6, -73.8));

    /* The same report from another port of the same host is not that device. */
    long long unknown = rejected("unknown_device");
    rmc(line, sizeof line, "", base + 3, 40.5001, -73.9);
    send_udp(line);
    send_from(sierra, line);
    json_decref(expect_position("0x00A0F8123456789A", 40.5001, -73.9));
    CHECK_INT(rejected("unknown_device"), unknown + 1);
    close(sierra);
    close(cradle);
}

/* No id anywhere: the mapping's source_addr names the device. */
static void test_source_addr(void)
{
    int fd = udp_from("127.0.0.2");
    char line[256];
    rmc(line, sizeof line, "", base + 2, 41.0, -73.5);
    send_from(fd, line);
    json_decref(expect_position("FIX-ADDR", 41.0, -73.5));
    close(fd);
}

/* TAIP: GPS seconds of day, 5 implied decimals, mph, the id inside. */
static void test_taip(void)
{
    time_t t = base + 4;
    struct tm tm;
    gmtime_r(&t, &tm);
    long gps_sod = (tm.tm_hour * 3600L + tm.tm_min * 60 + tm.tm_sec + 18) % 86400;
    char msg[128];
    int n = snprintf(msg, sizeof msg, ">RPV%05ld+3739438-1220384601512612;ID=T-9;*", gps_sod);
    unsigned sum = 0;
    for (int i = 0; i < n; i++)
        sum ^= (unsigned char)msg[i];
    snprintf(msg + n, sizeof msg - (size_t)n, "%02X<", sum);
    send_udp(msg);
    json_t *p = expect_position("T-9", 37.39438, -122.03846);
    CHECK_NEAR(num(p, "speed"), 15 * 0.44704, 0.01);
    CHECK_NEAR(num(p, "course"), 126, 1e-9);
    CHECK_STR(json_string_value(json_object_get(p, "src")), "taip");
    json_decref(p);
}

/* JSON: the attrs object reaches the console untouched. */
static void test_json(void)
{
    char report[512], when[32];
    time_t t = base + 5;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    snprintf(report, sizeof report,
             "{\"id\":\"J-1\",\"time\":\"%s\",\"lat\":40.1,\"lon\":-74.2,\"speed\":3.5,"
             "\"attrs\":{\"siren\":true,\"lights\":\"red\",\"n\":[1,2]}}\n",
             when);
    send_udp(report);
    json_t *p = expect_position("J-1", 40.1, -74.2);
    char *attrs = json_dumps(json_object_get(p, "attrs"), JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(attrs, "{\"lights\":\"red\",\"n\":[1,2],\"siren\":true}");
    free(attrs);
    CHECK_STR(json_string_value(json_object_get(p, "src")), "json");
    json_decref(p);
}

/* TCP: lines split across writes, several per write, a hang-up mid-line, an endless line. */
static void test_tcp(void)
{
    char a[256], b[256];
    int fd = tcp_connect();
    rmc(a, sizeof a, "TCP-1,", base + 6, 42.0, -71.0);
    size_t half = strlen(a) / 2;
    write_all(fd, a, half);
    write_all(fd, a + half, strlen(a) - half);
    json_decref(expect_position("TCP-1", 42.0, -71.0));

    /* 1 MiB without a newline: dropped and counted once; the modem carries on. */
    long long too_long = rejected("line_too_long");
    static char junk[1 << 20];
    memset(junk, 'x', sizeof junk);
    write_all(fd, junk, sizeof junk);
    write_all(fd, "\n", 1);
    rmc(a, sizeof a, "TCP-1,", base + 7, 42.0001, -71.0);
    write_all(fd, a, strlen(a));
    json_decref(expect_position("TCP-1", 42.0001, -71.0));
    CHECK_INT(rejected("line_too_long"), too_long + 1);

    /* A complete line, then half of one, then the modem hangs up: the complete one counts. */
    rmc(a, sizeof a, "TCP-1,", base + 8, 42.0002, -71.0);
    rmc(b, sizeof b, "TCP-1,", base + 9, 42.0003, -71.0);
    write_all(fd, a, strlen(a));
    write_all(fd, b, strlen(b) / 2);
    close(fd);
    json_decref(expect_position("TCP-1", 42.0002, -71.0));
    CHECK(http_metric(daemon_.ws_port, "gpsrelay_tcp_accepted_total") >= 1);
}

static void test_ipv6(void)
{
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 to = {.sin6_family = AF_INET6,
                              .sin6_port = htons((uint16_t)udp6_port),
                              .sin6_addr = in6addr_loopback};
    char line[256];
    rmc(line, sizeof line, "V6-1,", base + 6, 43.0, -70.0);
    CHECK(sendto(fd, line, strlen(line), 0, (struct sockaddr *)&to, sizeof to) > 0);
    json_decref(expect_position("V6-1", 43.0, -70.0));
    close(fd);
}

/* Each acceptance rule drops the fix and counts it by reason; good fixes still pass. */
static void test_filters(void)
{
    char line[256];
    struct {
        time_t t;
        double lat, lon;
        const char *reason;
    } cases[] = {
        {base + 20, 40.7200, -74.006, NULL},                /* accepted: sets the baseline */
        {base + 19, 40.7201, -74.006, "out_of_order"},      /* older than the last */
        {base + 20, 40.7200, -74.006, "duplicate"},         /* same time again */
        {base + 21, 45.0000, -74.006, "implausible_speed"}, /* 475 km in a second */
        {time(NULL) + 3600, 40.7201, -74.006, "future"},    /* an hour ahead */
        {base + 22, 40.7202, -74.006, NULL},                /* 22 m in 2 s: fine */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long long before = cases[i].reason ? rejected(cases[i].reason) : 0;
        rmc(line, sizeof line, "AMB-12,", cases[i].t, cases[i].lat, cases[i].lon);
        send_udp(line);
        if (cases[i].reason == NULL) {
            json_decref(expect_position("AMB-12", cases[i].lat, cases[i].lon));
            continue;
        }
        /* A later good report has gone through, and the drop is counted: AMB-12 sent
         * RMC+GGA before, so its lone RMC waits for its merge_window (docs/ingest.md)
         * while CP-77's goes at once. */
        char probe[256];
        rmc(probe, sizeof probe, "CP-77,", base + 30 + (time_t)i, 40.6, -73.8);
        send_udp(probe);
        json_decref(next_position("CP-77"));
        char sample[128];
        snprintf(sample, sizeof sample, "gpsrelay_ingest_rejected_total{reason=\"%s\"}",
                 cases[i].reason);
        CHECK(http_metric_wait(daemon_.ws_port, sample, before + 1, WAIT_MS) >= 0);
    }

    /* Status V with the last known position: the receiver has no fix; counted, not
     * published. */
    long long no_fix = rejected("no_fix");
    rmc(line, sizeof line, "AMB-12,", base + 23, 40.7203, -74.006);
    char *status = strstr(line, ",A,");
    status[1] = 'V';
    char body[256];
    snprintf(body, sizeof body, "%.*s", (int)(strchr(line, '*') - strchr(line, '$') - 1),
             strchr(line, '$') + 1);
    nmea_line(line, sizeof line, "AMB-12,", body); /* checksum again after the change */
    send_udp(line);
    char probe[256];
    rmc(probe, sizeof probe, "CP-77,", base + 40, 40.6, -73.8);
    send_udp(probe);
    json_decref(next_position("CP-77"));
    CHECK(http_metric_wait(daemon_.ws_port, "gpsrelay_ingest_rejected_total{reason=\"no_fix\"}",
                           no_fix + 1, WAIT_MS) >= 0);
}

/* A modem silent for tcp_idle_timeout is disconnected (its own daemon, timeout 1 s). */
static void test_tcp_idle(const char *binary)
{
    struct gr_daemon d;
    char extra[128];
    int port = free_port(AF_INET, SOCK_STREAM);
    snprintf(extra, sizeof extra, "listen_tcp 127.0.0.1:%d\ntcp_idle_timeout 1\n", port);
    if (daemon_start(&d, binary, extra, CSV) != 0) {
        CHECK(false);
        return;
    }
    int saved = tcp_port;
    tcp_port = port;
    int fd = tcp_connect();
    tcp_port = saved;
    char c;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CHECK_INT(read(fd, &c, 1), 0); /* EOF: the daemon hung up, well within 5 s */
    close(fd);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_tcp_idle_closed_total"), 1);
    CHECK_INT(daemon_stop(&d), 0);
}

/*
 * Datagrams the kernel drops while the loop cannot read (here: the daemon stopped with
 * SIGSTOP, its socket buffer overflowing) are counted: received plus dropped is all sent.
 */
#define FLOOD_DATAGRAMS 20000
static void test_socket_drops(const char *binary)
{
    struct gr_daemon d;
    if (daemon_start(&d, binary, NULL, CSV) != 0) {
        CHECK(false);
        return;
    }
    long long before = http_metric(d.ws_port, "gpsrelay_ingest_datagrams_total");
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_ingest_socket_drops_total"), 0);
    CHECK_INT(daemon_signal(&d, SIGSTOP), 0);
    static const char report[] = "AMB-12,$GPRMC,000000.00,V,,,,,,,,,N*71\r\n";
    for (int i = 0; i < FLOOD_DATAGRAMS; i++)
        CHECK_INT(udp_send(d.udp_port, report, sizeof(report) - 1), 0);
    CHECK_INT(daemon_signal(&d, SIGCONT), 0);
    long long received = 0, dropped = 0;
    for (int waited = 0; waited < WAIT_MS; waited += 50) {
        received = http_metric(d.ws_port, "gpsrelay_ingest_datagrams_total") - before;
        dropped = http_metric(d.ws_port, "gpsrelay_ingest_socket_drops_total");
        if (received + dropped >= FLOOD_DATAGRAMS)
            break;
        usleep(50 * 1000);
    }
    CHECK(dropped > 0);
    CHECK_INT(received + dropped, FLOOD_DATAGRAMS);
    CHECK_INT(daemon_stop(&d), 0);
}

/*
 * Values that cannot be measurements, and dates the calendar does not have, are refused with
 * a counted reason through the whole pipeline, and nothing of them reaches a console: an
 * 18-digit NMEA speed or altitude and JSON 1e16 were published as 0, 31 February as 3 March,
 * and a $PCPTI id over 64 characters was dropped uncounted.
 */
static void test_bad_values(void)
{
    char when[16], hot[32], day[40], lines[8][400], body[300];
    time_t t = base + 50;
    struct tm tm;
    gmtime_r(&t, &tm);
    hms(when, sizeof when, t);
    strftime(hot, sizeof hot, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(day, sizeof day, "%02d%02d%02d", tm.tm_mday, tm.tm_mon + 1, tm.tm_year % 100);

    snprintf(body, sizeof body,
             "GPRMC,%s,A,4043.20000,N,07400.36000,W,999999999999999999,1.0,%s,,,A", when, day);
    nmea_line(lines[0], sizeof lines[0], "AMB-12,", body);
    snprintf(body, sizeof body,
             "GPGGA,%s,4043.20000,N,07400.36000,W,1,09,0.9,999999999999999999,M,,,,", when);
    nmea_line(lines[1], sizeof lines[1], "AMB-12,", body);
    snprintf(body, sizeof body, "GPRMC,%s,A,4043.20000,N,07400.36000,W,1.0,1.0,310226,,,A", when);
    nmea_line(lines[2], sizeof lines[2], "AMB-12,", body);
    snprintf(lines[3], sizeof lines[3],
             "{\"id\":\"J-1\",\"time\":\"%s\",\"lat\":40.1,\"lon\":-74.2,"
             "\"speed\":1e16}\n",
             hot);
    snprintf(lines[4], sizeof lines[4],
             "{\"id\":\"J-1\",\"time\":\"%s\",\"lat\":40.1,\"lon\":-74.2,"
             "\"speed\":-5,\"course\":720,\"hdop\":-1}\n",
             hot);
    snprintf(lines[5], sizeof lines[5],
             "{\"id\":\"J-1\",\"time\":\"2026-02-30T12:00:00Z\","
             "\"lat\":40.1,\"lon\":-74.2}\n");
    nmea_line(lines[6], sizeof lines[6], "",
              "PCPTI,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,142512,A");
    const char *reasons[] = {"bad_value", "bad_value", "bad_date",     "bad_value",
                             "bad_value", "bad_date",  "bad_device_id"};

    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        long long before = rejected(reasons[i]);
        long long published = http_metric(daemon_.ws_port, "gpsrelay_positions_published_total");
        send_udp(lines[i]);
        /* The drop is counted by the time a later good report has gone through. */
        char probe[256];
        rmc(probe, sizeof probe, "CP-77,", base + 50 + (time_t)i, 40.6, -73.8);
        send_udp(probe);
        json_decref(next_position("CP-77"));
        if (rejected(reasons[i]) != before + 1)
            fprintf(stderr, "not counted as %s: %s", reasons[i], lines[i]);
        CHECK_INT(rejected(reasons[i]), before + 1);
        CHECK_INT(http_metric(daemon_.ws_port, "gpsrelay_positions_published_total"),
                  published + 1); /* the probe alone */
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 2;
    }
    base = time(NULL) - 60;
    tcp_port = free_port(AF_INET, SOCK_STREAM);
    udp6_port = free_port(AF_INET6, SOCK_DGRAM);
    char extra[160];
    snprintf(extra, sizeof extra, "listen_tcp 127.0.0.1:%d\nlisten_udp [::1]:%d\n", tcp_port,
             udp6_port);
    if (daemon_start(&daemon_, argv[1], extra, CSV) != 0)
        return 1;

    console_fd = phx_join_console(daemon_.ws_port, TOPIC, NULL);
    CHECK(console_fd >= 0);

    test_merge();
    test_identity_sentences();
    test_source_addr();
    test_taip();
    test_json();
    test_tcp();
    test_ipv6();
    test_filters();
    test_bad_values();

    close(console_fd);
    CHECK_INT(daemon_stop(&daemon_), 0);
    test_tcp_idle(argv[1]);
    test_socket_drops(argv[1]);
    return check_result("integration_ingest");
}
