/*
 * test_merge.c - whole fixes from split reports (docs/ingest.md "Merging"): the sentences
 * of one time merge into one position across datagrams and TCP reads, in either order,
 * whatever the device's habit (RMC+GGA, GGA+VTG, a sentence per datagram at 1 Hz, RMC
 * alone), with nothing refused as `duplicate`; a VTG with no fix to join is counted.
 *
 * It also measures what merging costs a modem that sends RMC alone (report sent to position
 * received by a console) and prints it: timings are reported here, never asserted; what is
 * asserted is that such a fix goes out before a report sent after it, not at its window.
 *
 * Usage: itest_merge /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 5000
#define TOPIC   "agency:county-ems"

static const char CSV[] = "device_id,agency_id,label,source_addr\n"
                          "RG-1,county-ems,RMC then GGA,\n"
                          "GR-1,county-ems,GGA then RMC,\n"
                          "GV-1,county-ems,Sierra GGA+VTG,\n"
                          "TCP-1,county-ems,TCP in two writes,\n"
                          "HZ-1,county-ems,a sentence per datagram,\n"
                          "R-1,county-ems,RMC alone,\n"
                          "R-2,county-ems,RMC alone too,\n"
                          "V-1,county-ems,VTG alone,\n";

static struct gr_daemon daemon_;
static int console_fd = -1;
static int tcp_port;
static time_t base; /* fix times count up from here, a few minutes in the past */

/* lat/lon a few metres on per second, so no fix is refused as an implausible jump. */
static double lat_at(time_t t)
{
    return 40.7 + (double)(t - base) * 1e-5;
}
#define LON -74.0

static void rmc(char *out, size_t cap, const char *prefix, time_t t)
{
    char body[160], la[24], lo[24];
    struct tm tm;
    gmtime_r(&t, &tm);
    nmea_angle(la, sizeof la, lat_at(t), 2, 'N', 'S');
    nmea_angle(lo, sizeof lo, LON, 3, 'E', 'W');
    snprintf(body, sizeof body, "GPRMC,%02d%02d%02d.00,A,%s,%s,12.0,271.5,%02d%02d%02d,,,A",
             tm.tm_hour, tm.tm_min, tm.tm_sec, la, lo, tm.tm_mday, tm.tm_mon + 1, tm.tm_year % 100);
    nmea_line(out, cap, prefix, body);
}

static void gga(char *out, size_t cap, const char *prefix, time_t t)
{
    char body[160], la[24], lo[24];
    struct tm tm;
    gmtime_r(&t, &tm);
    nmea_angle(la, sizeof la, lat_at(t), 2, 'N', 'S');
    nmea_angle(lo, sizeof lo, LON, 3, 'E', 'W');
    snprintf(body, sizeof body, "GPGGA,%02d%02d%02d.00,%s,%s,1,09,0.9,10.2,M,-34.2,M,,", tm.tm_hour,
             tm.tm_min, tm.tm_sec, la, lo);
    nmea_line(out, cap, prefix, body);
}

/* VTG: course 271.5 true, 12.0 knots; no time (it follows its GGA). */
static void vtg(char *out, size_t cap, const char *prefix)
{
    nmea_line(out, cap, prefix, "GPVTG,271.5,T,,M,12.0,N,22.2,K,A");
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void send_udp(const char *text)
{
    CHECK_INT(udp_send(daemon_.udp_port, text, strlen(text)), 0);
}

/* The next position of device (skipping others), or NULL after WAIT_MS. Caller decrefs. */
static json_t *next_position(const char *device)
{
    return phx_next_position(console_fd, TOPIC, device, WAIT_MS);
}

/* The device of the first position that is a or b, or "" after WAIT_MS; *both: the other
 * one came in the same message. */
static const char *first_of(const char *a, const char *b, bool *both)
{
    for (;;) {
        json_t *msg = phx_recv_event(console_fd, TOPIC, "positions", WAIT_MS);
        *both = false;
        if (msg == NULL)
            return "";
        json_t *list = json_object_get(json_array_get(msg, 4), "positions");
        const char *which = NULL;
        size_t i;
        json_t *p;
        json_array_foreach(list, i, p)
        {
            const char *dev = json_string_value(json_object_get(p, "device"));
            bool is_a = strcmp(dev, a) == 0, is_b = strcmp(dev, b) == 0;
            if (which == NULL && (is_a || is_b))
                which = is_a ? a : b;
            else if (which != NULL && (is_a || is_b))
                *both = true;
        }
        json_decref(msg);
        if (which != NULL)
            return which;
    }
}

static long long metric(const char *sample)
{
    return http_metric(daemon_.ws_port, sample);
}

#define PUBLISHED "gpsrelay_positions_published_total"
#define DUPLICATE "gpsrelay_ingest_rejected_total{reason=\"duplicate\"}"
#define NO_TIME   "gpsrelay_ingest_rejected_total{reason=\"no_time\"}"

/*
 * The next position of device is the fix at t, whole: speed and course (RMC or VTG) and
 * altitude and satellites (GGA) in one position, and it was the only one published.
 */
static void expect_whole(const char *device, time_t t, long long published_before)
{
    json_t *p = next_position(device);
    CHECK(p != NULL);
    if (p == NULL)
        return;
    CHECK_NEAR(json_number_value(json_object_get(p, "lat")), lat_at(t), 1e-7);
    CHECK_NEAR(json_number_value(json_object_get(p, "speed")), 12.0 * 1852.0 / 3600.0, 0.01);
    CHECK_NEAR(json_number_value(json_object_get(p, "course")), 271.5, 1e-9);
    CHECK_NEAR(json_number_value(json_object_get(p, "alt")), 10.2, 1e-9);
    CHECK_INT(json_integer_value(json_object_get(p, "sats")), 9);
    json_decref(p);
    CHECK_INT(metric(PUBLISHED), published_before + 1);
}

/* Two datagrams per fix, in the order given; two fixes: the first while the device's habit
 * is not known yet (it waits for merge_window), the second by habit (at once). */
static void two_datagrams(const char *prefix, const char *device, bool rmc_first)
{
    long long dup = metric(DUPLICATE);
    for (time_t t = base; t < base + 2; t++) {
        char r[256], g[256];
        rmc(r, sizeof r, prefix, t);
        gga(g, sizeof g, prefix, t);
        long long published = metric(PUBLISHED);
        send_udp(rmc_first ? r : g);
        send_udp(rmc_first ? g : r);
        expect_whole(device, t, published);
    }
    CHECK_INT(metric(DUPLICATE), dup);
}

/* Sierra AirLink's habit: GGA, then VTG in a datagram of its own. */
static void test_gga_vtg(void)
{
    long long dup = metric(DUPLICATE), no_time = metric(NO_TIME);
    for (time_t t = base; t < base + 3; t++) {
        char g[256], v[256];
        gga(g, sizeof g, "GV-1,", t);
        vtg(v, sizeof v, "GV-1,");
        long long published = metric(PUBLISHED);
        send_udp(g);
        send_udp(v);
        expect_whole("GV-1", t, published);
    }
    CHECK_INT(metric(DUPLICATE), dup);
    CHECK_INT(metric(NO_TIME), no_time);
}

/* Over TCP, RMC and GGA of one fix in two writes 5 ms apart: two reads for the daemon. */
static void test_tcp_two_writes(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)tcp_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* two writes, two segments */
    long long dup = metric(DUPLICATE);
    for (time_t t = base; t < base + 2; t++) {
        char r[256], g[256];
        rmc(r, sizeof r, "TCP-1,", t);
        gga(g, sizeof g, "TCP-1,", t);
        long long published = metric(PUBLISHED);
        CHECK(write(fd, r, strlen(r)) == (ssize_t)strlen(r));
        poll(NULL, 0, 5); /* the modem's 5 ms between its two writes, as the issue saw */
        CHECK(write(fd, g, strlen(g)) == (ssize_t)strlen(g));
        expect_whole("TCP-1", t, published);
    }
    CHECK_INT(metric(DUPLICATE), dup);
    close(fd);
}

/* A sentence per datagram, one fix a second, as such a modem sends them. */
static void test_sentence_per_datagram_1hz(void)
{
    long long dup = metric(DUPLICATE);
    int64_t next = now_ms();
    for (time_t t = base; t < base + 3; t++) {
        poll(NULL, 0, (int)(next > now_ms() ? next - now_ms() : 0)); /* the modem's 1 Hz */
        next += 1000;
        char r[256], g[256];
        rmc(r, sizeof r, "HZ-1,", t);
        gga(g, sizeof g, "HZ-1,", t);
        long long published = metric(PUBLISHED);
        send_udp(r);
        send_udp(g);
        expect_whole("HZ-1", t, published);
    }
    CHECK_INT(metric(DUPLICATE), dup);
}

/*
 * A modem that sends RMC alone. Once its habit is known, its fix goes out as its datagram
 * is read: before R-2's, sent after it (had it waited for its window, R-2's would come
 * first). Then report sent to position received, over 20 fixes, printed.
 */
static void test_rmc_alone(void)
{
    char r[256];
    rmc(r, sizeof r, "R-1,", base);
    send_udp(r);
    json_decref(next_position("R-1")); /* its first: the habit is learnt from it */
    rmc(r, sizeof r, "R-2,", base);
    send_udp(r);
    json_decref(next_position("R-2"));

    for (time_t t = base + 1; t < base + 4; t++) {
        char r2[256];
        rmc(r, sizeof r, "R-1,", t);
        rmc(r2, sizeof r2, "R-2,", t);
        send_udp(r);
        send_udp(r2);
        bool both = false;
        CHECK_STR(first_of("R-1", "R-2", &both), "R-1");
        if (!both)
            json_decref(next_position("R-2"));
    }

    enum { N = 20 };
    int64_t lat[N];
    for (int i = 0; i < N; i++) {
        rmc(r, sizeof r, "R-1,", base + 10 + i);
        int64_t sent = now_us();
        send_udp(r);
        json_t *p = next_position("R-1");
        lat[i] = now_us() - sent;
        CHECK(p != NULL);
        json_decref(p);
    }
    for (int i = 1; i < N; i++) /* insertion sort: 20 values */
        for (int j = i; j > 0 && lat[j - 1] > lat[j]; j--) {
            int64_t x = lat[j];
            lat[j] = lat[j - 1];
            lat[j - 1] = x;
        }
    fprintf(stderr, "RMC alone, report to console: median %lld us, max %lld us (%d fixes)\n",
            (long long)lat[N / 2], (long long)lat[N - 1], N);
}

/* A VTG with no fix to join cannot be dated: dropped and counted (no_time). */
static void test_lone_vtg(void)
{
    long long no_time = metric(NO_TIME);
    char v[256];
    vtg(v, sizeof v, "V-1,");
    send_udp(v);
    CHECK(http_metric_wait(daemon_.ws_port, NO_TIME, no_time + 1, WAIT_MS) >= 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 2;
    }
    base = time(NULL) - 300;
    tcp_port = free_loopback_port(SOCK_STREAM);
    char extra[64];
    snprintf(extra, sizeof extra, "listen_tcp 127.0.0.1:%d\n", tcp_port);
    if (daemon_start(&daemon_, argv[1], extra, CSV) != 0)
        return 1;

    console_fd = phx_join_console(daemon_.ws_port, TOPIC, NULL);
    CHECK(console_fd >= 0);

    two_datagrams("RG-1,", "RG-1", true);
    two_datagrams("GR-1,", "GR-1", false);
    test_gga_vtg();
    test_tcp_two_writes();
    test_sentence_per_datagram_1hz();
    test_rmc_alone();
    test_lone_vtg();

    close(console_fd);
    CHECK_INT(daemon_stop(&daemon_), 0);
    return check_result("integration_merge");
}
