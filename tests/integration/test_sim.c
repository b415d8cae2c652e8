/*
 * test_sim.c - tools/gpsrelay-sim against the real gpsrelayd on loopback (issue 8).
 *
 * The mapping comes from `gpsrelay-sim --mapping-only`; then, each against a fresh daemon,
 * the simulator runs for about two seconds as NMEA over UDP, JSON over TCP, and twice with
 * a fifth of its reports corrupted (NMEA over UDP from two source addresses, NMEA over two
 * TCP connections); then as phones on listen_http_ingest (issue 19) in OsmAnd's three
 * shapes: a form on a connection per phone, the query string over two keep-alive
 * connections and Traccar Client 9's JSON, the last two with a fifth corrupted. A console
 * joined to agency:agency-1 must receive moving positions of exactly agency-1's units,
 * with speeds and courses that agree with the positions, and the daemon's counters must
 * account for every report: each valid one published, each corrupted one rejected,
 * nothing else rejected; every phone's request answered, 200 or (corrupted) 400, as the
 * simulator and the daemon both count.
 *
 * Usage: itest_sim /path/to/gpsrelayd /path/to/gpsrelay-sim
 */
#include "harness.h"
#include "../unit/check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define UNITS        6   /* SIM-001..SIM-006; agency-1 holds the odd ones */
#define RATE_HZ      "5" /* per unit: 30 reports/s, several positions per unit per run */
#define DURATION_S   "2"
#define MALFORMED    "0.2"
#define RUN_LIMIT_MS 20000 /* the simulator must have finished by then (ASan, loaded CI) */
#define DRAIN_MS     10000 /* the daemon must have read every report by then */
#define METRICS_CAP  (256 * 1024)

/* Physical checks. The simulator drives 5-30 m/s, accelerates at most 3.5 m/s^2 and turns
 * at most 10 deg/s; positions carry 7 decimals (1 cm), times milliseconds. */
#define SPEED_MAX_MPS    30.0
#define SPEED_SLACK_MPS  2.0  /* implied vs reported speed, over a 0.2 s hop */
#define COURSE_SLACK_DEG 10.0 /* chord bearing vs reported course */
#define COURSE_MIN_HOP_M 1.0  /* shorter hops say little about the bearing */
#define MOVED_MIN_M      5.0  /* over the run, even at 5 m/s */
#define EARTH_RADIUS_M   6371008.8
#define DEG              (M_PI / 180.0)

extern char **environ;

static const char *sim_binary, *argv0_daemon;

struct run {
    const char *name;
    const char *proto, *format, *malformed;
    const char *extra_arg, *extra_val; /* one more option, or NULL */
    const char *shape;                 /* --osmand-shape with --format osmand, else NULL */
};

/* What the simulator's summary line says. */
struct summary {
    long long sent, malformed, errors;
    long long http_2xx, http_4xx, http_5xx; /* -1 but with --format osmand */
};

/* ---- the simulator as a child process ------------------------------------------------- */

/*
 * Runs the simulator with args (NULL-terminated, argv[0] excluded) and its stdout on a
 * pipe returned in *out_fd. Returns the pid, or -1.
 */
static pid_t sim_spawn(const char *const *args, int *out_fd)
{
    const char *argv[32] = {sim_binary};
    size_t n = 1;
    for (; args[n - 1] != NULL && n < 31; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
    pid_t pid;
    int rc = posix_spawn(&pid, sim_binary, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        fprintf(stderr, "spawn %s: %s\n", sim_binary, strerror(rc));
        close(p[0]);
        return -1;
    }
    *out_fd = p[0];
    return pid;
}

/* Reads the child's stdout to EOF into buf (cap), NUL-terminated. */
static void read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, RUN_LIMIT_MS) <= 0)
            break;
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == cap - 1)
            break;
    }
    buf[len] = '\0';
}

/* Waits up to ms for the child; its exit status, or -1 (then it was killed). */
static int wait_child(pid_t pid, int ms)
{
    struct timespec tick = {0, 20 * 1000 * 1000};
    int status;
    for (int waited = 0; waited < ms; waited += 20) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        nanosleep(&tick, NULL); /* polling a child's exit: bounded by ms */
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fprintf(stderr, "gpsrelay-sim did not exit within %d ms\n", ms);
    return -1;
}

static long long summary_value(const char *line, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *p = strstr(line, pat);
    return p == NULL ? -1 : atoll(p + strlen(pat));
}

/* ---- the daemon's counters ------------------------------------------------------------ */

/* Sum of every gpsrelay_ingest_rejected_total{reason=...} sample; -1 when unreadable. */
static long long rejected_total(int port)
{
    static char body[METRICS_CAP];
    if (http_get(port, "/metrics", body, sizeof body, 5000) != 200)
        return -1;
    long long sum = 0;
    static const char name[] = "gpsrelay_ingest_rejected_total{";
    for (const char *p = body; (p = strstr(p, name)) != NULL; p++) {
        if (p != body && p[-1] != '\n')
            continue;
        const char *sp = strchr(p, ' ');
        if (sp != NULL) {
            long long v = atoll(sp + 1);
            if (v > 0)
                fprintf(stderr, "  %.*s\n", (int)(strchr(p, '\n') - p), p);
            sum += v;
        }
    }
    return sum;
}

/* Waits until the daemon counted want report lines (it reads behind the simulator). */
static long long wait_reports(int port, long long want)
{
    long long got = -1;
    struct timespec tick = {0, 20 * 1000 * 1000};
    for (int waited = 0; waited < DRAIN_MS; waited += 20) {
        got = http_metric(port, "gpsrelay_ingest_reports_total");
        if (got >= want)
            break;
        nanosleep(&tick, NULL); /* polling a counter toward a known value, bounded */
    }
    return got;
}

/* ---- geometry ------------------------------------------------------------------------- */

static double haversine_m(double lat1, double lon1, double lat2, double lon2)
{
    double dlat = (lat2 - lat1) * DEG, dlon = (lon2 - lon1) * DEG;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * DEG) * cos(lat2 * DEG) * sin(dlon / 2) * sin(dlon / 2);
    return 2 * EARTH_RADIUS_M * asin(sqrt(a));
}

static double bearing_deg(double lat1, double lon1, double lat2, double lon2)
{
    double y = sin((lon2 - lon1) * DEG) * cos(lat2 * DEG);
    double x = cos(lat1 * DEG) * sin(lat2 * DEG) -
               sin(lat1 * DEG) * cos(lat2 * DEG) * cos((lon2 - lon1) * DEG);
    double b = atan2(y, x) / DEG;
    return b < 0 ? b + 360 : b;
}

static double angle_diff(double a, double b)
{
    double d = fabs(fmod(a - b, 360.0));
    return d > 180 ? 360 - d : d;
}

/* "2026-11-23T18:20:01.123Z" to milliseconds of the day (the runs never span midnight
 * in a way that matters: hops across it are skipped). */
static long long iso_ms_of_day(const char *t)
{
    int h, m, s, ms;
    if (t == NULL || sscanf(t + 11, "%2d:%2d:%2d.%3d", &h, &m, &s, &ms) != 4)
        return -1;
    return ((h * 60LL + m) * 60 + s) * 1000 + ms;
}

/* ---- the checks on what the console received ------------------------------------------- */

static bool in_agency_1(const char *device)
{
    /* --agencies 2 assigns round-robin: SIM-001 agency-1, SIM-002 agency-2, ... */
    int n;
    return device != NULL && sscanf(device, "SIM-%3d", &n) == 1 && n >= 1 && n <= UNITS &&
           n % 2 == 1;
}

/* Checks one device's positions, in arrival order (the daemon publishes them in time
 * order per unit). Returns the number of positions. */
static size_t check_track(const char *device, json_t *positions, const char *format)
{
    bool json_format = strcmp(format, "json") == 0, osmand = strcmp(format, "osmand") == 0;
    size_t n = 0;
    bool any_ms = false;
    double first_lat = 0, first_lon = 0, lat0 = 0, lon0 = 0;
    long long t0 = -1;
    size_t i;
    json_t *p;
    json_array_foreach(positions, i, p)
    {
        if (strcmp(json_string_value(json_object_get(p, "device")), device) != 0)
            continue;
        double lat = json_number_value(json_object_get(p, "lat"));
        double lon = json_number_value(json_object_get(p, "lon"));
        double speed = json_number_value(json_object_get(p, "speed"));
        double course = json_number_value(json_object_get(p, "course"));
        const char *time = json_string_value(json_object_get(p, "time"));
        long long t = iso_ms_of_day(time);
        CHECK(t >= 0);
        CHECK(json_is_number(json_object_get(p, "speed")));
        CHECK(json_is_number(json_object_get(p, "course")));
        CHECK(speed >= 0 && speed <= SPEED_MAX_MPS + 0.01);
        CHECK(course >= 0 && course < 360);
        CHECK(fabs(lat - 40.7128) < 0.06 && fabs(lon + 74.006) < 0.08); /* within ~5 km */
        if (t % 1000 != 0)
            any_ms = true;
        if (json_format) {
            /* attrs pass through untouched; the report was stamped when sent. */
            json_t *sent = json_object_get(json_object_get(p, "attrs"), "sent_us");
            CHECK(json_is_integer(sent));
            CHECK_NEAR((double)(json_integer_value(sent) / 1000 % 86400000), (double)t, 1.0);
        }
        if (osmand) {
            /* A phone's accuracy (m) and battery (percent in the pairs, 0-1 in JSON). */
            json_t *attrs = json_object_get(p, "attrs");
            double acc = json_number_value(json_object_get(attrs, "accuracy"));
            double batt = json_number_value(json_object_get(attrs, "battery"));
            CHECK(acc >= 2.0 && acc <= 6.0);
            CHECK(batt > 0 && batt <= 100);
        }
        if (n == 0) {
            first_lat = lat;
            first_lon = lon;
        } else if (t > t0) {
            double dist = haversine_m(lat0, lon0, lat, lon);
            double implied = dist / ((double)(t - t0) / 1000.0);
            CHECK(implied <= SPEED_MAX_MPS + SPEED_SLACK_MPS);
            if (t - t0 <= 500) /* consecutive reports, not a gap left by a corrupted one */
                CHECK_NEAR(implied, speed, SPEED_SLACK_MPS);
            if (dist >= COURSE_MIN_HOP_M && t - t0 <= 500)
                CHECK(angle_diff(bearing_deg(lat0, lon0, lat, lon), course) <= COURSE_SLACK_DEG);
        }
        lat0 = lat;
        lon0 = lon;
        t0 = t;
        n++;
    }
    if (n > 0)
        CHECK(haversine_m(first_lat, first_lon, lat0, lon0) >= MOVED_MIN_M);
    /* Fix times carry the send time's milliseconds through the daemon: NMEA's hhmmss.sss,
     * OsmAnd's epoch milliseconds or RFC 3339 .sss. */
    CHECK(any_ms);
    return n;
}

/* ---- one run -------------------------------------------------------------------------- */

static void run_one(const struct run *r, const char *csv)
{
    fprintf(stderr, "--- %s\n", r->name);
    int tcp_port = free_loopback_port(SOCK_STREAM), http_port = free_loopback_port(SOCK_STREAM);
    CHECK(tcp_port > 0 && http_port > 0 && http_port != tcp_port);
    bool osmand = strcmp(r->format, "osmand") == 0;
    char extra[192];
    /* One source address stands in for many modems: lift the per-source limit. */
    snprintf(extra, sizeof extra,
             "listen_tcp 127.0.0.1:%d\nlisten_http_ingest 127.0.0.1:%d\n"
             "ingest_rate_limit 100000\n",
             tcp_port, http_port);
    struct gr_daemon d;
    int started = daemon_start(&d, argv0_daemon, extra, csv);
    CHECK_INT(started, 0);
    if (started != 0)
        return;

    int ws = ws_connect(d.ws_port, "/socket/websocket?vsn=2.0.0", NULL, NULL);
    CHECK(ws >= 0);
    json_t *positions = json_array();
    if (ws >= 0) {
        CHECK_INT(phx_send(ws, "1", "1", "agency:agency-1", "phx_join", "{}"), 0);
        json_t *reply = phx_recv_match(ws, "agency:agency-1", "phx_reply", "1", 5000, NULL);
        CHECK(reply != NULL);
        json_t *payload = json_array_get(reply, 4);
        CHECK_STR(json_string_value(json_object_get(payload, "status")), "ok");
        json_array_extend(positions,
                          json_object_get(json_object_get(payload, "response"), "positions"));
        json_decref(reply);
    }

    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d",
             osmand                         ? http_port
             : strcmp(r->proto, "udp") == 0 ? d.udp_port
                                            : tcp_port);
    const char *args[32] = {"--target",   target,     "--proto",          r->proto,
                            "--format",   r->format,  "--units",          "6",
                            "--agencies", "2",        "--rate",           RATE_HZ,
                            "--duration", DURATION_S, "--malformed",      r->malformed,
                            "--seed",     "7",        "--stats-interval", "0"};
    size_t nargs = 20;
    if (r->shape != NULL) {
        args[nargs++] = "--osmand-shape";
        args[nargs++] = r->shape;
    }
    if (r->extra_arg != NULL) {
        args[nargs++] = r->extra_arg;
        args[nargs++] = r->extra_val;
    }
    args[nargs] = NULL;
    int out = -1;
    pid_t pid = sim_spawn(args, &out);
    CHECK(pid > 0);

    /* Collect pushes while the simulator runs; bounded by RUN_LIMIT_MS. */
    json_t *frames = json_array();
    int status = -1;
    for (int waited = 0; pid > 0 && waited < RUN_LIMIT_MS; waited += 100) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            pid = 0;
            break;
        }
        if (ws >= 0)
            CHECK(phx_collect(ws, 100, frames) >= 0);
        else
            poll(NULL, 0, 100);
    }
    if (pid > 0)
        status = wait_child(pid, 0);
    CHECK_INT(status, 0);

    char line[512] = "";
    if (out >= 0) {
        read_all(out, line, sizeof line);
        close(out);
    }
    fprintf(stderr, "gpsrelay-sim: %s", line);
    struct summary s = {summary_value(line, "sent"),     summary_value(line, "malformed"),
                        summary_value(line, "errors"),   summary_value(line, "http_2xx"),
                        summary_value(line, "http_4xx"), summary_value(line, "http_5xx")};
    CHECK(s.sent >= 30); /* 6 units at 5 Hz for 2 s: 60 */
    CHECK_INT(s.errors, 0);
    if (strcmp(r->malformed, "0") == 0)
        CHECK_INT(s.malformed, 0);
    else
        CHECK(s.malformed > 0 && s.malformed < s.sent);
    if (osmand) {
        /* Every request answered: 200 when valid, 400 when corrupted, nothing else. */
        CHECK_INT(s.http_2xx, s.sent - s.malformed);
        CHECK_INT(s.http_4xx, s.malformed);
        CHECK_INT(s.http_5xx, 0);
    } else {
        CHECK_INT(s.http_2xx, -1); /* the http_ keys only with --format osmand */
    }

    /* Every report line reached the daemon: a valid NMEA report is two (RMC, GGA), a
     * corrupted one is one line, a JSON report or a phone's request one. Then the counters
     * are final. */
    bool nmea = strcmp(r->format, "nmea") == 0;
    long long lines = nmea ? 2 * (s.sent - s.malformed) + s.malformed : s.sent;
    CHECK_INT(wait_reports(d.ws_port, lines), lines);
    CHECK_INT(rejected_total(d.ws_port), s.malformed);
    CHECK_INT(http_metric(d.ws_port, "gpsrelay_positions_published_total"), s.sent - s.malformed);
    if (osmand) {
        CHECK_INT(http_metric(d.ws_port, "gpsrelay_ingest_http_requests_total{status=\"200\"}"),
                  s.sent - s.malformed);
        CHECK_INT(http_metric(d.ws_port, "gpsrelay_ingest_http_requests_total{status=\"400\"}"),
                  s.malformed);
    }

    /* The tail of the pushes: what the daemon published before we read its counters. */
    if (ws >= 0)
        CHECK(phx_collect(ws, 200, frames) >= 0);
    size_t i;
    json_t *f;
    json_array_foreach(frames, i, f)
    {
        if (strcmp(json_string_value(json_array_get(f, 3)), "positions") != 0)
            continue;
        CHECK_STR(json_string_value(json_array_get(f, 2)), "agency:agency-1");
        json_array_extend(positions, json_object_get(json_array_get(f, 4), "positions"));
    }

    /* Exactly agency-1's units, each seen several times, each moving plausibly. */
    json_t *p;
    json_array_foreach(positions, i, p)
    {
        const char *device = json_string_value(json_object_get(p, "device"));
        CHECK(in_agency_1(device));
        CHECK_STR(json_string_value(json_object_get(p, "src")), r->format);
    }
    for (int u = 1; u <= UNITS; u += 2) {
        char device[16];
        snprintf(device, sizeof device, "SIM-%03d", u);
        size_t n = check_track(device, positions, r->format);
        CHECK(n >= 3);
    }
    fprintf(stderr, "console received %zu positions\n", json_array_size(positions));

    json_decref(frames);
    json_decref(positions);
    if (ws >= 0)
        close(ws);
    CHECK_INT(daemon_stop(&d), 0);
}

/* --mapping-only: docs/mapping.md's CSV, units round-robin over the agencies, labels. */
static char *make_mapping(void)
{
    char dir[] = "/tmp/itest_sim.XXXXXX", path[64];
    if (mkdtemp(dir) == NULL)
        return NULL;
    snprintf(path, sizeof path, "%s/devices.csv", dir);
    const char *args[] = {"--units",       "6",  "--agencies", "2", "--mapping-only",
                          "--mapping-out", path, NULL};
    int out;
    pid_t pid = sim_spawn(args, &out);
    CHECK(pid > 0);
    char *csv = NULL;
    if (pid > 0) {
        char ignored[64];
        read_all(out, ignored, sizeof ignored);
        close(out);
        CHECK_INT(wait_child(pid, RUN_LIMIT_MS), 0);
        csv = calloc(1, 4096);
        FILE *f = fopen(path, "r");
        CHECK(f != NULL);
        if (f != NULL && csv != NULL) {
            size_t n = fread(csv, 1, 4095, f);
            csv[n] = '\0';
            fclose(f);
        }
    }
    unlink(path);
    rmdir(dir);
    CHECK_STR(csv, "device_id,agency_id,label,source_addr\n"
                   "SIM-001,agency-1,Unit 1,\n"
                   "SIM-002,agency-2,Unit 2,\n"
                   "SIM-003,agency-1,Unit 3,\n"
                   "SIM-004,agency-2,Unit 4,\n"
                   "SIM-005,agency-1,Unit 5,\n"
                   "SIM-006,agency-2,Unit 6,\n");
    return csv;
}

/* A bad option is a usage error (64), with nothing sent. */
static void check_usage_error(void)
{
    const char *args[] = {"--proto", "sctp", NULL};
    int out;
    pid_t pid = sim_spawn(args, &out);
    CHECK(pid > 0);
    if (pid > 0) {
        char ignored[256];
        read_all(out, ignored, sizeof ignored);
        close(out);
        CHECK_INT(wait_child(pid, RUN_LIMIT_MS), 64);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd /path/to/gpsrelay-sim\n", argv[0]);
        return 64;
    }
    argv0_daemon = argv[1];
    sim_binary = argv[2];
    signal(SIGPIPE, SIG_IGN);

    check_usage_error();
    char *csv = make_mapping();
    if (csv == NULL)
        return check_result("integration_sim");

    static const struct run runs[] = {
        {"NMEA over UDP", "udp", "nmea", "0", NULL, NULL, NULL},
        {"JSON over TCP", "tcp", "json", "0", NULL, NULL, NULL},
        {"NMEA over UDP from two source addresses, a fifth corrupted", "udp", "nmea", MALFORMED,
         "--sources", "2", NULL},
        {"NMEA over two TCP connections, a fifth corrupted", "tcp", "nmea", MALFORMED,
         "--connections", "2", NULL},
        {"OsmAnd form over HTTP, a connection per phone", "tcp", "osmand", "0", NULL, NULL, "form"},
        {"OsmAnd query string over two keep-alive connections, a fifth corrupted", "tcp", "osmand",
         MALFORMED, "--connections", "2", "query"},
        {"OsmAnd JSON (Traccar Client 9), a fifth corrupted", "tcp", "osmand", MALFORMED, NULL,
         NULL, "json"},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
        run_one(&runs[i], csv);
    free(csv);
    return check_result("integration_sim");
}
