/*
 * gpsrelay-sim.c - simulates a fleet of modems pushing positions to gpsrelayd (issue 8).
 *
 * N units drive plausible tracks around a centre and report at a fixed rate, as NMEA
 * (id-prefixed RMC+GGA, the form README "Connecting a modem" describes) or as the daemon's
 * JSON reports, over UDP (one datagram per report) or TCP (newline-framed). A fraction of
 * the reports can be corrupted in varied ways so the daemon's reject counters move.
 *
 * Every report is stamped with the wall clock when it is built, right before it is sent:
 * NMEA fix times carry milliseconds (hhmmss.sss) and JSON reports add
 * "attrs":{"sent_us":...}, so a receiver can measure send-to-console latency.
 *
 * One libuv loop: a one-shot timer paces the sends (every unit has its own slot inside the
 * tick, so a tick is spread evenly, never one burst), signals stop it, TCP connections are
 * libuv streams. UDP datagrams go out in sendmmsg() batches on the fd of a connected
 * uv_udp_t: one system call per SIM_BATCH datagrams is what lets one core sustain well over
 * 100k reports/s (libuv 1.44's uv_udp_try_send is one sendmsg per datagram).
 *
 * TCP: by default one connection per unit, as real modems hold one each. Every line
 * carries its unit's id, so the daemon does not care which connection brings it, and
 * --connections N multiplexes the units over N connections: a fleet of 10,000 then costs
 * neither side 10,000 descriptors, and fuller writes (one per connection per wake-up).
 * A connection that fails is retried every SIM_TCP_RETRY_MS; its units' reports count as
 * errors meanwhile.
 *
 * OsmAnd (--format osmand, issue 19): every unit is a phone running Traccar Client, posting
 * to gpsrelayd's listen_http_ingest over HTTP/1.1 with keep-alive, in one of the three
 * shapes the daemon decodes (--osmand-shape): the pairs in the query string of a POST with
 * no body (the classic Android client), the pairs as a form body (the newer one), or
 * Traccar Client 9's JSON. A phone waits for each answer before it sends again: one request
 * in flight per connection, never pipelined. Reports that come due meanwhile wait in the
 * connection's queue (SIM_HTTP_QUEUE_MAX; beyond it they are dropped as errors) and are
 * built, and stamped, when their request goes out. The time is the send time to the
 * millisecond (epoch milliseconds in the pairs, RFC 3339 with .sss in JSON); OsmAnd has no
 * field that reaches a position's attrs untouched, so latency is measured as with NMEA:
 * the console's clock minus the fix time. Answers are counted by status class. A server
 * that closes a connection between answers (keep-alive timeout, Connection: close) gets a
 * new one at once; one that fails gets a retry every SIM_TCP_RETRY_MS.
 *
 * The summary line on stdout is the machine-readable contract (benchmarks parse it):
 *   sent=N malformed=N errors=N late_ticks=N skipped=N seconds=S.SS rate=R
 * then tcp_failures=N over TCP, then http_2xx=N http_4xx=N http_5xx=N with OsmAnd.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "gpsrelay/calendar.h"

#define SIM_EXIT_USAGE 64 /* sysexits EX_USAGE, as gpsrelayd and gpsrelayctl */

/* ---- bounds and model constants ------------------------------------------------------ */

#define SIM_UNITS_MAX    1000000 /* ~200 bytes of state each: 200 MB at the limit */
#define SIM_AGENCIES_MAX 10000
/* Fix times have millisecond resolution and the daemon drops a fix with the same time as
 * the last one of its unit (duplicate): above 1000 Hz a unit would repeat times. */
#define SIM_RATE_MAX    1000.0
#define SIM_PREFIX_MAX  32        /* ids stay far below the daemon's GR_DEVICE_ID_MAX (64) */
#define SIM_ID_MAX      48        /* prefix + up to 7 digits + NUL */
#define SIM_PAYLOAD_MAX 512       /* one report: RMC+GGA with prefixes ~200 bytes, JSON ~260 */
#define SIM_BATCH       64        /* datagrams per sendmmsg(): amortises the system call */
#define SIM_WAKE_MAX    8192      /* reports per timer callback, so signals and stats still run */
#define SIM_LATE_MS     20        /* a report this much behind its slot makes its tick late; */
                                  /* timer jitter on an idle machine is under 2 ms */
#define SIM_SOURCES_MAX     65536 /* --sources: 127.0.0.2 .. 127.1.0.1 */
#define SIM_TCP_PENDING_MAX (64 * 1024) /* unsent bytes per TCP connection before dropping */
#define SIM_TCP_RETRY_MS    1000        /* reconnect delay after a connection failed */
#define SIM_STOP_GRACE_MS   2000        /* at stop, time allowed for TCP writes to drain */
#define SIM_CONNECT_WAIT_MS 3000        /* TCP: start sending even if not all connected */
#define SIM_HTTP_QUEUE_MAX  256         /* due reports waiting for a connection's answer */
#define SIM_HTTP_HEAD_MAX   8192        /* an answer's status line and headers */
#define SIM_HTTP_TIMEOUT_MS 10000       /* an unanswered request this old fails its connection */
/* The daemon's default ingest_rate_limit (reports per second per source address). */
#define SIM_DAEMON_RATE_LIMIT 50.0

#define EARTH_RADIUS_M  6371008.8 /* the daemon's haversine uses the same mean radius */
#define DEG             (M_PI / 180.0)
#define MPS_TO_KNOTS    (3600.0 / 1852.0)
#define SPEED_MIN_MPS   5.0 /* cruising speeds of the issue: 5-30 m/s (18-108 km/h) */
#define SPEED_MAX_MPS   30.0
#define ACCEL_MPS2      2.5 /* a brisk car; braking a little harder */
#define BRAKE_MPS2      3.5
#define TURN_MAX_DEG_S  10.0 /* a smooth bend; 90 degrees take 9 s */
#define STEP_MAX_S      0.5  /* motion is integrated in steps no longer than this */
#define CRUISE_CHANGE_S 20.0 /* mean time between changes of cruising speed */
/* Stops: after 30 s to 5 min of driving a unit stops for 10 s to 1 min (a call, a light).
 * Never in the first 30 s, so a short test run sees every unit move. */
#define DRIVE_MIN_S 30.0
#define DRIVE_MAX_S 300.0
#define STOP_MIN_S  10.0
#define STOP_MAX_S  60.0
/* Units steer back toward the centre this far inside the radius: a U-turn at 30 m/s and
 * 10 deg/s has a radius of 172 m, so the margin leaves room to spare. */
#define HOME_MARGIN_M 600.0

/* ---- options ------------------------------------------------------------------------- */

enum proto { PROTO_UDP, PROTO_TCP };
enum format { FORMAT_NMEA, FORMAT_JSON, FORMAT_OSMAND };
/* The three requests of OsmAnd phones; see the header comment. */
enum shape { SHAPE_QUERY, SHAPE_FORM, SHAPE_JSON };

struct options {
    const char *target;
    enum proto proto;
    enum format format;
    enum shape shape; /* with FORMAT_OSMAND */
    long units;
    long agencies;
    char **agency_names; /* agencies entries; NULL: agency-1..agency-K */
    double rate;         /* reports per second per unit */
    double duration;     /* seconds; 0: until SIGINT/SIGTERM */
    double malformed;    /* fraction 0..1 */
    const char *prefix;
    double center_lat, center_lon;
    double radius_m;
    uint64_t seed;
    const char *mapping_out;
    bool mapping_only;
    double stats_interval; /* seconds; 0: no progress lines */
    bool quiet;
    long sources;     /* distinct source addresses (127.0.0.2..); 0: the kernel's choice */
    long connections; /* TCP connections; 0: one per unit */
};

/* ---- state --------------------------------------------------------------------------- */

struct unit {
    char id[SIM_ID_MAX];
    uint8_t id_len;
    uint8_t sats;
    bool stopping;   /* braking for a stop */
    bool started;    /* t_ms is set */
    bool charging;   /* OsmAnd reports: a phone on its charger; constant */
    uint8_t battery; /* OsmAnd reports: percent; constant */
    double lat, lon; /* degrees */
    double heading;  /* degrees true, [0, 360) */
    double speed;    /* m/s */
    double cruise;   /* the speed it accelerates or brakes toward while driving */
    double turn;     /* deg/s, positive clockwise */
    double alt, hdop;
    double odometer;       /* metres driven, for Traccar Client 9's report */
    int64_t t_ms;          /* the time lat/lon/speed describe (a fix time) */
    int64_t next_stop_ms;  /* when it starts braking for its next stop */
    int64_t stopped_until; /* while stopped: when it drives off again; else 0 */
    uint64_t rng;
};

/* IDLE: no handle (never connected, or closed; reconnects at retry_at_ns). DRAINING: at
 * stop, shut down after the last write; closed when that completes. */
enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_UP, CONN_DRAINING, CONN_CLOSING };

struct sim;

/* One TCP connection carrying the reports of one or more units. With OsmAnd, inflight
 * holds the request being written and pending the answer's head being read. */
struct conn {
    uv_tcp_t handle; /* first: the handle's callbacks cast back to the conn */
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    struct sim *sim;
    enum conn_state state;
    bool writing; /* write_req in flight with inflight[] */
    bool dirty;   /* on the sim's dirty list */
    bool ever_up; /* counted in conns_up */
    uint64_t retry_at_ns;
    size_t pending_len, inflight_len;
    char pending[SIM_TCP_PENDING_MAX];
    char inflight[SIM_TCP_PENDING_MAX];

    /* OsmAnd over HTTP: units whose reports are due, oldest at qhead; the request out. */
    uint32_t queue[SIM_HTTP_QUEUE_MAX];
    unsigned qhead, qlen;
    bool in_flight;     /* a request was written and its answer has not come yet */
    bool answered;      /* an answer came on this connection since it connected */
    bool in_body;       /* reading (and ignoring) an answer's body */
    bool until_close;   /* ... which has no length: it ends with the connection */
    bool close_after;   /* the answer said Connection: close (or was HTTP/1.0) */
    bool reconnect_now; /* closed between answers, not failed: connect again at once */
    int status;         /* of the answer being read */
    uint64_t body_left;
    uint64_t sent_at_ns;
};

/* One UDP socket (a source address) and the batch being filled for it. */
struct udp_source {
    uv_udp_t handle;
    int fd;
    unsigned n;
    bool malformed[SIM_BATCH]; /* counted once the datagram is sent */
    struct mmsghdr msgs[SIM_BATCH];
    struct iovec iov[SIM_BATCH];
    char bufs[SIM_BATCH][SIM_PAYLOAD_MAX];
};

struct counters {
    uint64_t sent;      /* reports handed to the kernel (UDP) or queued on a live TCP stream */
    uint64_t malformed; /* of those, deliberately corrupted */
    uint64_t errors;    /* reports lost to send errors, dead or backed-up connections */
    uint64_t late_ticks;
    uint64_t skipped;      /* report slots dropped because the sim fell a whole tick behind */
    uint64_t tcp_failures; /* TCP connects that failed and connections that broke */
    /* OsmAnd: answers by status class. Every request sent gets one of these, or is an
     * error (its connection broke first, or its status was none of these). */
    uint64_t http_2xx, http_4xx, http_5xx;
};

struct sim {
    struct options opt;
    uv_loop_t *loop;
    struct sockaddr_storage target;
    struct unit *units;
    int id_width;

    /* Pacing: slot k is unit k % units of tick k / units, due at start + k * slot_ns. */
    uv_timer_t pace_timer;
    uint64_t start_ns;
    double slot_ns;
    uint64_t next_slot;
    uint64_t last_late_tick; /* +1, so 0 means none */
    int64_t start_wall_ms;

    uv_timer_t start_timer, stats_timer, stop_timer, grace_timer;
    bool started;     /* pacing began (TCP: once connected, or SIM_CONNECT_WAIT_MS passed) */
    size_t conns_up;  /* TCP connections that connected at least once */
    uint64_t stop_ns; /* when sim_stop() ran */
    bool tcp_failing; /* a TCP failure was logged; cleared by the next connect */
    uv_signal_t sigint, sigterm;
    bool stopping;
    int open_conns; /* TCP connections still to finish at stop */

    struct udp_source *sources;
    size_t n_sources;
    struct conn *conns;
    size_t n_conns;
    struct conn **dirty;
    size_t n_dirty;

    uint64_t malformed_rng;
    uint64_t malformed_threshold; /* a report is corrupted when rng < this */

    struct counters c;
    uint64_t stats_last_sent, stats_last_ns;

    int64_t date_day; /* the day cached in date_ddmmyy / date_iso */
    char date_ddmmyy[8];
    char date_iso[12];
};

/* ---- small helpers -------------------------------------------------------------------- */

/* splitmix64: tiny, fast, and good enough to drive a simulation; one stream per unit, so
 * a unit's track depends on the seed and its number only, not on what others did. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static double rng_range(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * rng_unit(s);
}

static int64_t wall_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* v as exactly width digits (zero-padded; wider values keep all their digits). */
static char *put_uint(char *p, uint64_t v, int width)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n < width)
        tmp[n++] = '0';
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

static const uint64_t pow10_table[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000};

/* v with exactly `decimals` decimals, rounded half away from zero. snprintf("%f") was the
 * largest cost of a report; this keeps formatting well under a microsecond. */
static char *put_fixed(char *p, double v, int decimals)
{
    if (v < 0) {
        *p++ = '-';
        v = -v;
    }
    uint64_t scale = pow10_table[decimals];
    uint64_t n = (uint64_t)llround(v * (double)scale);
    p = put_uint(p, n / scale, 1);
    if (decimals > 0) {
        *p++ = '.';
        p = put_uint(p, n % scale, decimals);
    }
    return p;
}

static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/* The date strings change once a day: computed then, not per report. */
static void date_update(struct sim *s, int64_t ms)
{
    int64_t day = ms / 86400000;
    if (day == s->date_day)
        return;
    int y, m, d;
    gr_civil_from_days(day, &y, &m, &d);
    char *p = put_uint(s->date_ddmmyy, (uint64_t)d, 2);
    p = put_uint(p, (uint64_t)m, 2);
    p = put_uint(p, (uint64_t)(y % 100), 2);
    *p = '\0';
    p = put_uint(s->date_iso, (uint64_t)y, 4);
    *p++ = '-';
    p = put_uint(p, (uint64_t)m, 2);
    *p++ = '-';
    p = put_uint(p, (uint64_t)d, 2);
    *p = '\0';
    s->date_day = day;
}

/* hhmmss.sss of a millisecond time (after 1970, so ms >= 0). */
static char *put_time_of_day(char *p, int64_t ms, bool colons)
{
    int64_t tod = ms % 86400000;
    p = put_uint(p, (uint64_t)(tod / 3600000), 2);
    if (colons)
        *p++ = ':';
    p = put_uint(p, (uint64_t)(tod / 60000 % 60), 2);
    if (colons)
        *p++ = ':';
    p = put_uint(p, (uint64_t)(tod / 1000 % 60), 2);
    *p++ = '.';
    return put_uint(p, (uint64_t)(tod % 1000), 3);
}

/* ---- motion --------------------------------------------------------------------------- */

static double wrap_degrees(double a)
{
    a = fmod(a, 360.0);
    return a < 0 ? a + 360.0 : a;
}

/* Distance (m) and initial bearing (degrees) between two nearby points: an equirectangular
 * approximation, within centimetres over the few kilometres of a simulation area. */
static void offset_to(double lat1, double lon1, double lat2, double lon2, double *dist,
                      double *bearing)
{
    double north = (lat2 - lat1) * DEG * EARTH_RADIUS_M;
    double east = (lon2 - lon1) * DEG * EARTH_RADIUS_M * cos((lat1 + lat2) / 2 * DEG);
    *dist = hypot(north, east);
    *bearing = wrap_degrees(atan2(east, north) / DEG);
}

/* The fastest a unit may cruise inside the radius: a tight area gets slower traffic so a
 * U-turn still fits (turn radius speed / turn rate at most a quarter of the area). */
static double cruise_max(const struct sim *s)
{
    double fit = TURN_MAX_DEG_S * DEG * s->opt.radius_m / 4;
    return fit < SPEED_MAX_MPS ? fit : SPEED_MAX_MPS;
}

static double pick_cruise(const struct sim *s, struct unit *u)
{
    double hi = cruise_max(s), lo = SPEED_MIN_MPS < hi ? SPEED_MIN_MPS : hi / 2;
    return rng_range(&u->rng, lo, hi);
}

static void unit_init(struct sim *s, struct unit *u, long index, int64_t now_ms)
{
    u->rng = s->opt.seed * 0x100000001B3ULL + (uint64_t)index;
    rng_next(&u->rng); /* decorrelate neighbouring seeds */
    int n = snprintf(u->id, sizeof(u->id), "%s%0*ld", s->opt.prefix, s->id_width, index + 1);
    u->id_len = (uint8_t)n;
    /* Uniform over the inner 80% of the disc: sqrt makes the density even. */
    double r = 0.8 * s->opt.radius_m * sqrt(rng_unit(&u->rng));
    double a = rng_range(&u->rng, 0, 2 * M_PI);
    u->lat = s->opt.center_lat + r * cos(a) / EARTH_RADIUS_M / DEG;
    u->lon = s->opt.center_lon + r * sin(a) / (EARTH_RADIUS_M * cos(s->opt.center_lat * DEG)) / DEG;
    u->heading = rng_range(&u->rng, 0, 360);
    u->cruise = pick_cruise(s, u);
    u->speed = u->cruise; /* already under way: the first fixes move */
    u->turn = rng_range(&u->rng, -TURN_MAX_DEG_S / 4, TURN_MAX_DEG_S / 4);
    u->alt = rng_range(&u->rng, 5, 60);
    u->hdop = rng_range(&u->rng, 0.7, 1.4);
    u->sats = (uint8_t)(7 + rng_next(&u->rng) % 6);
    u->t_ms = now_ms - 1; /* the first report, this millisecond or later, moves it on */
    u->next_stop_ms = now_ms + (int64_t)(rng_range(&u->rng, DRIVE_MIN_S, DRIVE_MAX_S) * 1000);
    u->started = true;
    /* A phone's battery, from a stream of its own: the track stays what the seed made it
     * before phones existed. A fifth of the phones are on a charger. */
    uint64_t b = u->rng ^ 0xB5AD4ECEDA1CE2A9ULL;
    u->battery = (uint8_t)(30 + rng_next(&b) % 71);
    u->charging = rng_next(&b) % 5 == 0;
}

/* Advances a unit by dt seconds (dt <= STEP_MAX_S). */
static void unit_step(const struct sim *s, struct unit *u, double dt, int64_t t_ms)
{
    if (u->stopped_until != 0) {
        if (t_ms < u->stopped_until)
            return;
        u->stopped_until = 0;
        u->cruise = pick_cruise(s, u);
        u->next_stop_ms = t_ms + (int64_t)(rng_range(&u->rng, DRIVE_MIN_S, DRIVE_MAX_S) * 1000);
    }
    if (!u->stopping && t_ms >= u->next_stop_ms)
        u->stopping = true;
    else if (!u->stopping && rng_unit(&u->rng) < dt / CRUISE_CHANGE_S)
        u->cruise = pick_cruise(s, u);

    double want = u->stopping ? 0.0 : u->cruise;
    if (u->speed < want)
        u->speed = fmin(want, u->speed + ACCEL_MPS2 * dt);
    else
        u->speed = fmax(want, u->speed - BRAKE_MPS2 * dt);
    if (u->stopping && u->speed == 0.0) {
        u->stopping = false;
        u->stopped_until = t_ms + (int64_t)(rng_range(&u->rng, STOP_MIN_S, STOP_MAX_S) * 1000);
        return;
    }

    /* Steering: a random walk of the turn rate, pulled toward straight ahead, or a firm
     * turn toward the centre once near the edge of the area. */
    double dist, home;
    offset_to(u->lat, u->lon, s->opt.center_lat, s->opt.center_lon, &dist, &home);
    double edge = s->opt.radius_m - HOME_MARGIN_M;
    if (edge < s->opt.radius_m / 2)
        edge = s->opt.radius_m / 2;
    if (dist > edge) {
        double off = wrap_degrees(home - u->heading); /* 0..360: right of heading below 180 */
        if (off > 5 && off < 355)
            u->turn = off < 180 ? TURN_MAX_DEG_S : -TURN_MAX_DEG_S;
        else
            u->turn = 0;
    } else {
        u->turn += rng_range(&u->rng, -1, 1) * 6.0 * sqrt(dt) - u->turn * 0.2 * dt;
        u->turn = fmax(-TURN_MAX_DEG_S, fmin(TURN_MAX_DEG_S, u->turn));
    }

    /* Move along the arc's chord at the mean heading of the step. */
    double mid = (u->heading + u->turn * dt / 2) * DEG;
    double d = u->speed * dt;
    u->odometer += d;
    u->lat += d * cos(mid) / EARTH_RADIUS_M / DEG;
    u->lon += d * sin(mid) / (EARTH_RADIUS_M * cos(u->lat * DEG)) / DEG;
    u->heading = wrap_degrees(u->heading + u->turn * dt);
}

/* Brings a unit to fix time t_ms. */
static void unit_advance(const struct sim *s, struct unit *u, int64_t t_ms)
{
    while (u->t_ms < t_ms) {
        int64_t step = t_ms - u->t_ms;
        if (step > (int64_t)(STEP_MAX_S * 1000))
            step = (int64_t)(STEP_MAX_S * 1000);
        u->t_ms += step;
        unit_step(s, u, (double)step / 1000.0, u->t_ms);
    }
}

/* ---- reports -------------------------------------------------------------------------- */

/* ddmm.mmmmm,N or dddmm.mmmmm,E: 5 decimals of minutes are 2 cm of latitude. */
static char *put_nmea_angle(char *p, double v, int deg_width, char pos, char neg)
{
    char hemi = v < 0 ? neg : pos;
    v = fabs(v);
    uint64_t units = (uint64_t)llround(v * 60.0 * 100000.0); /* 1e-5 minutes */
    uint64_t deg = units / 6000000, min = units % 6000000;
    p = put_uint(p, deg, deg_width);
    p = put_uint(p, min / 100000, 2);
    *p++ = '.';
    p = put_uint(p, min % 100000, 5);
    *p++ = ',';
    *p++ = hemi;
    return p;
}

/* Closes a sentence begun at dollar: "*hh\r\n". */
static char *put_checksum(char *p, const char *dollar, unsigned flip)
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned sum = 0;
    for (const char *c = dollar + 1; c < p; c++)
        sum ^= (unsigned char)*c;
    sum ^= flip;
    *p++ = '*';
    *p++ = hex[sum >> 4 & 0xF];
    *p++ = hex[sum & 0xF];
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static char *put_id_prefix(char *p, const struct unit *u)
{
    memcpy(p, u->id, u->id_len);
    p += u->id_len;
    *p++ = ',';
    return p;
}

/* "ID,$GPRMC,...*hh\r\n"; checksum_flip != 0 makes the checksum wrong. */
static char *put_rmc(struct sim *s, char *p, const struct unit *u, unsigned checksum_flip)
{
    p = put_id_prefix(p, u);
    char *dollar = p;
    p = put_str(p, "$GPRMC,");
    p = put_time_of_day(p, u->t_ms, false);
    p = put_str(p, ",A,");
    p = put_nmea_angle(p, u->lat, 2, 'N', 'S');
    *p++ = ',';
    p = put_nmea_angle(p, u->lon, 3, 'E', 'W');
    *p++ = ',';
    p = put_fixed(p, u->speed * MPS_TO_KNOTS, 3);
    *p++ = ',';
    p = put_fixed(p, u->heading, 1);
    *p++ = ',';
    p = put_str(p, s->date_ddmmyy);
    p = put_str(p, ",,,A");
    return put_checksum(p, dollar, checksum_flip);
}

static char *put_gga(char *p, const struct unit *u)
{
    p = put_id_prefix(p, u);
    char *dollar = p;
    p = put_str(p, "$GPGGA,");
    p = put_time_of_day(p, u->t_ms, false);
    *p++ = ',';
    p = put_nmea_angle(p, u->lat, 2, 'N', 'S');
    *p++ = ',';
    p = put_nmea_angle(p, u->lon, 3, 'E', 'W');
    p = put_str(p, ",1,");
    p = put_uint(p, u->sats, 2);
    *p++ = ',';
    p = put_fixed(p, u->hdop, 1);
    *p++ = ',';
    p = put_fixed(p, u->alt, 1);
    p = put_str(p, ",M,,M,,");
    return put_checksum(p, dollar, 0);
}

/* {"id":...,"attrs":{"sent_us":N}}\n; ids are validated to need no JSON escaping. */
static char *put_json(struct sim *s, char *p, const struct unit *u, int64_t sent_us, int bad)
{
    p = put_str(p, "{\"id\":\"");
    memcpy(p, u->id, u->id_len);
    p += u->id_len;
    p = put_str(p, "\",\"time\":\"");
    if (bad == 1) {
        p = put_str(p, "2026-13-45T25:61:00Z"); /* no such date: an unparsable time */
    } else {
        p = put_str(p, s->date_iso);
        *p++ = 'T';
        p = put_time_of_day(p, u->t_ms, true);
        *p++ = 'Z';
    }
    p = put_str(p, "\",\"lat\":");
    if (bad == 2)
        *p++ = '"'; /* a string where a number belongs */
    p = put_fixed(p, u->lat, 7);
    if (bad == 2)
        *p++ = '"';
    p = put_str(p, ",\"lon\":");
    p = put_fixed(p, u->lon, 7);
    p = put_str(p, ",\"speed\":");
    p = put_fixed(p, u->speed, 2);
    p = put_str(p, ",\"course\":");
    p = put_fixed(p, u->heading, 1);
    p = put_str(p, ",\"alt\":");
    p = put_fixed(p, u->alt, 1);
    p = put_str(p, ",\"hdop\":");
    p = put_fixed(p, u->hdop, 2);
    p = put_str(p, ",\"sats\":");
    p = put_uint(p, u->sats, 1);
    p = put_str(p, ",\"attrs\":{\"sent_us\":");
    p = put_uint(p, (uint64_t)sent_us, 1);
    p = put_str(p, "}}\n");
    return p;
}

/* v as a form value: unreserved characters as they are, the rest %XX (safe_name lets an
 * id prefix hold '&', '=', '+' or '%', which mean something in a form). */
static char *put_form_value(char *p, const char *v, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xF];
        }
    }
    return p;
}

/* A phone's accuracy radius (m): its HDOP times a typical user range error. */
static double accuracy_m(const struct unit *u)
{
    return u->hdop * 4.0;
}

/* An RFC 3339 time that parses as one but names no day: GR_BAD_DATE. */
#define OSMAND_BAD_TIME "2026-13-45T25:61:00Z"

/*
 * OsmAnd's pairs, in Traccar Client's order and names: id, timestamp (epoch milliseconds:
 * the daemon reads 2^31 and up as milliseconds), lat, lon, speed (knots), bearing,
 * altitude, accuracy (m), batt (percent), and in a form charge. A corrupted one (bad 1-4)
 * has an unparsable time, a letter in lat, no lat, or lat twice: each exactly one
 * rejection, never a rate or id matter.
 */
static char *put_osmand_pairs(char *p, const struct unit *u, bool form, int bad)
{
    p = put_str(p, "id=");
    p = put_form_value(p, u->id, u->id_len);
    p = put_str(p, "&timestamp=");
    p = bad == 1 ? put_str(p, OSMAND_BAD_TIME) : put_uint(p, (uint64_t)u->t_ms, 1);
    if (bad != 3) {
        p = put_str(p, "&lat=");
        char *lat = p;
        p = put_fixed(p, u->lat, 7);
        if (bad == 2)
            lat[1] = 'O'; /* "4O.7128..." or "-O.5...": not a number either way */
    }
    p = put_str(p, "&lon=");
    p = put_fixed(p, u->lon, 7);
    if (bad == 4) {
        p = put_str(p, "&lat=");
        p = put_fixed(p, u->lat, 7);
    }
    p = put_str(p, "&speed=");
    p = put_fixed(p, u->speed * MPS_TO_KNOTS, 3);
    p = put_str(p, "&bearing=");
    p = put_fixed(p, u->heading, 1);
    p = put_str(p, "&altitude=");
    p = put_fixed(p, u->alt, 1);
    p = put_str(p, "&accuracy=");
    p = put_fixed(p, accuracy_m(u), 1);
    p = put_str(p, "&batt=");
    p = put_fixed(p, u->battery, 1);
    if (form)
        p = put_str(p, u->charging ? "&charge=true" : "&charge=false");
    return p;
}

/*
 * Traccar Client 9's body: RFC 3339 time with milliseconds, speed in m/s. A corrupted one
 * (bad 1-4) has an unparsable time, latitude as a string, no latitude, or is cut short.
 */
static char *put_osmand_json(struct sim *s, char *p, const struct unit *u, int bad)
{
    char *start = p;
    p = put_str(p, "{\"location\":{\"timestamp\":\"");
    if (bad == 1) {
        p = put_str(p, OSMAND_BAD_TIME);
    } else {
        p = put_str(p, s->date_iso);
        *p++ = 'T';
        p = put_time_of_day(p, u->t_ms, true);
        *p++ = 'Z';
    }
    p = put_str(p, "\",\"coords\":{");
    if (bad != 3) {
        p = put_str(p, bad == 2 ? "\"latitude\":\"" : "\"latitude\":");
        p = put_fixed(p, u->lat, 7);
        p = put_str(p, bad == 2 ? "\"," : ",");
    }
    p = put_str(p, "\"longitude\":");
    p = put_fixed(p, u->lon, 7);
    p = put_str(p, ",\"accuracy\":");
    p = put_fixed(p, accuracy_m(u), 1);
    p = put_str(p, ",\"speed\":");
    p = put_fixed(p, u->speed, 2);
    p = put_str(p, ",\"heading\":");
    p = put_fixed(p, u->heading, 1);
    p = put_str(p, ",\"altitude\":");
    p = put_fixed(p, u->alt, 1);
    p = put_str(p, u->speed > 0 ? "},\"is_moving\":true" : "},\"is_moving\":false");
    p = put_str(p, ",\"odometer\":");
    p = put_fixed(p, u->odometer, 1);
    p = put_str(p, ",\"battery\":{\"level\":");
    p = put_fixed(p, u->battery / 100.0, 2);
    p = put_str(p, u->charging ? ",\"is_charging\":true" : ",\"is_charging\":false");
    p = put_str(p, "}},\"device_id\":\"");
    memcpy(p, u->id, u->id_len);
    p += u->id_len;
    p = put_str(p, "\"}");
    if (bad == 4)
        p = start + (p - start) / 2; /* inside coords: never a whole object */
    return p;
}

/* Bytes that never start a report or end a line: garbage stays one unparsable report. */
static char garbage_byte(uint64_t *rng)
{
    for (;;) {
        char c = (char)(rng_next(rng) & 0xFF);
        if (c != '\r' && c != '\n' && c != '$' && c != '>' && c != '{' && c != '\0')
            return c;
    }
}

/*
 * A corrupted report, one line, so the daemon counts exactly one rejection for it
 * (bad_checksum or malformed). Kinds, chosen evenly: a wrong checksum (NMEA) or an
 * unparsable time (JSON); a report cut short; random bytes after the id; a field the
 * decoder must refuse (an hour of 24+, a letter in the latitude, a string for lat).
 */
static char *put_malformed(struct sim *s, char *p, struct unit *u, int64_t sent_us)
{
    uint64_t *rng = &s->malformed_rng;
    int kind = (int)(rng_next(rng) % 4);
    char *start = p;
    if (kind == 0) {
        if (s->opt.format == FORMAT_NMEA)
            return put_rmc(s, p, u, 1 + (unsigned)(rng_next(rng) % 255));
        return put_json(s, p, u, sent_us, 1);
    }
    if (kind == 1) { /* truncated: no checksum, too few fields, or half a JSON object */
        char *end =
            s->opt.format == FORMAT_NMEA ? put_rmc(s, p, u, 0) : put_json(s, p, u, sent_us, 0);
        size_t keep = (size_t)(end - start);
        if (s->opt.format == FORMAT_NMEA) {
            /* Cut before RMC's 9th field (the date; 9 are required), so what is left can
             * never pass as a checksum-less RMC: the 8th comma after the '$'. */
            const char *dollar = memchr(start, '$', keep);
            int commas = 0;
            for (const char *c = dollar; c < end; c++)
                if (*c == ',' && ++commas == 8) {
                    keep = (size_t)(c - start);
                    break;
                }
        } else {
            keep -= 2; /* drop at least the closing brace and the newline */
        }
        p = start + 1 + rng_next(rng) % keep;
    } else if (kind == 2) { /* garbage after the id: line noise on a serial link */
        p = put_id_prefix(p, u);
        size_t n = 16 + rng_next(rng) % 48;
        for (size_t i = 0; i < n; i++)
            *p++ = garbage_byte(rng);
    } else if (s->opt.format == FORMAT_JSON) {
        return put_json(s, p, u, sent_us, 2);
    } else { /* a field the decoder must refuse, under a correct checksum */
        char *end = put_rmc(s, p, u, 0);
        char *time = memchr(start, '$', (size_t)(end - start)) + 7;
        switch (rng_next(rng) % 3) {
        case 0:
            time[0] = '2';
            time[1] = (char)('4' + rng_next(rng) % 6); /* hour 24-29 */
            break;
        case 1:
            time[11] = 'X'; /* the status letter: A or V only */
            break;
        default:
            time[14] = 'O'; /* a letter inside the latitude digits */
            break;
        }
        p = end - 5; /* recompute the checksum over the changed body */
        return put_checksum(p, memchr(start, '$', (size_t)(end - start)), 0);
    }
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Builds unit u's report for now into buf; returns its length. */
static size_t build_report(struct sim *s, struct unit *u, char *buf, bool *malformed)
{
    int64_t now_us = wall_clock_us();
    int64_t now_ms = now_us / 1000;
    if (now_ms <= u->t_ms) /* two slots of one unit in one millisecond (or the clock stepped
                            * back): keep fix times rising, as the daemon requires */
        now_ms = u->t_ms + 1;
    unit_advance(s, u, now_ms);
    date_update(s, now_ms);

    *malformed =
        s->malformed_threshold != 0 && rng_next(&s->malformed_rng) < s->malformed_threshold;
    char *p = buf;
    if (s->opt.format == FORMAT_OSMAND) {
        int bad = *malformed ? 1 + (int)(rng_next(&s->malformed_rng) % 4) : 0;
        if (s->opt.shape == SHAPE_JSON)
            p = put_osmand_json(s, p, u, bad);
        else
            p = put_osmand_pairs(p, u, s->opt.shape == SHAPE_FORM, bad);
    } else if (*malformed) {
        p = put_malformed(s, p, u, now_us);
    } else if (s->opt.format == FORMAT_JSON) {
        p = put_json(s, p, u, now_us, 0);
    } else {
        p = put_gga(put_rmc(s, p, u, 0), u);
    }
    return (size_t)(p - buf);
}

/* ---- UDP ------------------------------------------------------------------------------ */

static void udp_flush(struct sim *s, struct udp_source *src)
{
    unsigned done = 0;
    while (done < src->n) {
        int r = sendmmsg(src->fd, src->msgs + done, src->n - done, 0);
        if (r > 0) {
            for (unsigned i = done; i < done + (unsigned)r; i++)
                s->c.malformed += src->malformed[i];
            s->c.sent += (uint64_t)r;
            done += (unsigned)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        /* The first message failed (ECONNREFUSED when nothing listens, EAGAIN when the
         * socket buffer is full): count it lost and go on with the rest. */
        s->c.errors++;
        done++;
    }
    src->n = 0;
}

static void udp_send_report(struct sim *s, struct unit *u, struct udp_source *src)
{
    src->iov[src->n].iov_len = build_report(s, u, src->bufs[src->n], &src->malformed[src->n]);
    src->n++;
    if (src->n == SIM_BATCH)
        udp_flush(s, src);
}

static int udp_open(struct sim *s)
{
    s->n_sources = s->opt.sources > 0 ? (size_t)s->opt.sources : 1;
    s->sources = calloc(s->n_sources, sizeof(*s->sources));
    if (s->sources == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < s->n_sources; i++) {
        struct udp_source *src = &s->sources[i];
        int rc = uv_udp_init(s->loop, &src->handle);
        if (rc < 0)
            return rc;
        if (s->opt.sources > 0) {
            struct sockaddr_in from = {.sin_family = AF_INET};
            from.sin_addr.s_addr = htonl(0x7F000002u + (uint32_t)i);
            rc = uv_udp_bind(&src->handle, (const struct sockaddr *)&from, 0);
            if (rc < 0)
                return rc;
        }
        rc = uv_udp_connect(&src->handle, (const struct sockaddr *)&s->target);
        if (rc < 0)
            return rc;
        uv_os_fd_t fd;
        uv_fileno((uv_handle_t *)&src->handle, &fd);
        src->fd = fd;
        for (unsigned b = 0; b < SIM_BATCH; b++) {
            src->iov[b].iov_base = src->bufs[b];
            src->msgs[b].msg_hdr.msg_iov = &src->iov[b];
            src->msgs[b].msg_hdr.msg_iovlen = 1;
        }
    }
    return 0;
}

/* ---- TCP ------------------------------------------------------------------------------ */

static void conn_connect(struct conn *c);
static void conn_flush(struct conn *c);
static void http_start(struct conn *c);
static void http_send_next(struct conn *c);
static void pace_start(struct sim *s);

static void stop_check_done(struct sim *s);

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    struct sim *s = c->sim;
    c->state = CONN_IDLE;
    /* What was queued is lost with the connection; a request it carried went unanswered.
     * A connection closed between answers keeps its queue for the next one. */
    c->pending_len = c->inflight_len = 0;
    c->writing = false;
    s->c.errors += c->in_flight;
    c->in_flight = c->in_body = false;
    bool again = c->reconnect_now && !s->stopping;
    c->reconnect_now = false;
    if (!again) {
        s->c.errors += c->qlen;
        c->qlen = 0;
    }
    c->retry_at_ns = again ? 0 : uv_hrtime() + (uint64_t)SIM_TCP_RETRY_MS * 1000000;
    if (s->stopping) {
        s->open_conns--;
        stop_check_done(s);
    } else if (again && c->qlen > 0) {
        conn_connect(c);
    }
}

static void conn_fail(struct conn *c, const char *what, int status)
{
    if (c->state == CONN_CLOSING)
        return;
    /* Once per episode: a daemon that is down would otherwise get a line per retry. */
    struct sim *s = c->sim;
    if (!s->opt.quiet && status != UV_ECANCELED && !s->tcp_failing)
        fprintf(stderr, "gpsrelay-sim: tcp %s: %s (retrying every %d ms)\n", what,
                uv_strerror(status), SIM_TCP_RETRY_MS);
    s->tcp_failing = true;
    s->c.tcp_failures++;
    c->state = CONN_CLOSING;
    uv_close((uv_handle_t *)&c->handle, on_conn_closed);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0) {
        conn_fail(c, "connect", status);
        return;
    }
    c->state = CONN_UP;
    c->sim->tcp_failing = false;
    if (!c->ever_up) {
        c->ever_up = true;
        if (++c->sim->conns_up == c->sim->n_conns)
            pace_start(c->sim);
    }
    if (c->sim->opt.format == FORMAT_OSMAND)
        http_start(c);
}

static void conn_connect(struct conn *c)
{
    struct sim *s = c->sim;
    int rc = uv_tcp_init(s->loop, &c->handle);
    if (rc < 0) {
        c->retry_at_ns = uv_hrtime() + (uint64_t)SIM_TCP_RETRY_MS * 1000000;
        return;
    }
    c->state = CONN_CONNECTING;
    c->connect_req.data = c;
    size_t index = (size_t)(c - s->conns);
    if (s->opt.sources > 0) {
        struct sockaddr_in from = {.sin_family = AF_INET};
        from.sin_addr.s_addr = htonl(0x7F000002u + (uint32_t)(index * s->n_sources / s->n_conns));
        rc = uv_tcp_bind(&c->handle, (const struct sockaddr *)&from, 0);
    }
    if (rc == 0)
        rc = uv_tcp_connect(&c->connect_req, &c->handle, (const struct sockaddr *)&s->target,
                            on_connected);
    if (rc < 0)
        conn_fail(c, "connect", rc);
    else
        uv_tcp_nodelay(&c->handle, 1);
}

static void on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    c->writing = false;
    c->inflight_len = 0;
    if (status < 0) {
        conn_fail(c, "write", status);
        return;
    }
    conn_flush(c);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    struct conn *c = req->data;
    if (c->state == CONN_DRAINING) {
        c->state = CONN_CLOSING;
        uv_close((uv_handle_t *)&c->handle, on_conn_closed);
    }
}

/* Writes what is pending: uv_try_write first (the common case takes it all), the rest by
 * uv_write from the inflight buffer while new reports gather in pending. */
static void conn_flush(struct conn *c)
{
    if (c->state != CONN_UP || c->writing)
        return;
    if (c->pending_len > 0) {
        uv_buf_t b = uv_buf_init(c->pending, (unsigned)c->pending_len);
        int r = uv_try_write((uv_stream_t *)&c->handle, &b, 1);
        if (r < 0 && r != UV_EAGAIN) {
            conn_fail(c, "write", r);
            return;
        }
        size_t done = r > 0 ? (size_t)r : 0;
        if (done < c->pending_len) {
            c->inflight_len = c->pending_len - done;
            memcpy(c->inflight, c->pending + done, c->inflight_len);
            c->pending_len = 0;
            b = uv_buf_init(c->inflight, (unsigned)c->inflight_len);
            c->write_req.data = c;
            r = uv_write(&c->write_req, (uv_stream_t *)&c->handle, &b, 1, on_written);
            if (r < 0) {
                conn_fail(c, "write", r);
                return;
            }
            c->writing = true;
            return;
        }
        c->pending_len = 0;
    }
    if (c->sim->stopping) {
        c->shutdown_req.data = c;
        if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->handle, on_shutdown) < 0) {
            c->state = CONN_CLOSING;
            uv_close((uv_handle_t *)&c->handle, on_conn_closed);
        } else {
            c->state = CONN_DRAINING; /* closed from on_shutdown */
        }
    }
}

static void tcp_send_report(struct sim *s, struct unit *u, struct conn *c)
{
    if (c->state == CONN_IDLE && uv_hrtime() >= c->retry_at_ns)
        conn_connect(c);
    if (c->state != CONN_UP || c->pending_len + SIM_PAYLOAD_MAX > sizeof(c->pending)) {
        s->c.errors++; /* not connected (yet, or any more), or the daemon stopped reading */
        return;
    }
    bool bad;
    c->pending_len += build_report(s, u, c->pending + c->pending_len, &bad);
    s->c.sent++;
    s->c.malformed += bad;
    if (!c->dirty) {
        c->dirty = true;
        s->dirty[s->n_dirty++] = c;
    }
}

static int tcp_open(struct sim *s)
{
    s->n_conns = s->opt.connections > 0 ? (size_t)s->opt.connections : (size_t)s->opt.units;
    s->conns = calloc(s->n_conns, sizeof(*s->conns));
    s->dirty = calloc(s->n_conns, sizeof(*s->dirty));
    if (s->conns == NULL || s->dirty == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < s->n_conns; i++) {
        s->conns[i].sim = s;
        conn_connect(&s->conns[i]);
    }
    return 0;
}

/* ---- HTTP: OsmAnd phones ------------------------------------------------------------- */

/* The request each shape's client sends, around a report built now: the classic Android
 * client (HttpURLConnection) posts the pairs in the query string with an empty body, the
 * newer one posts them as a form, Traccar Client 9 posts JSON. */
static size_t build_request(struct sim *s, struct unit *u, char *buf, bool *malformed)
{
    char report[SIM_PAYLOAD_MAX];
    size_t n = build_report(s, u, report, malformed);
    char *p = buf;
    if (s->opt.shape == SHAPE_QUERY) {
        p = put_str(p, "POST /?");
        memcpy(p, report, n);
        p = put_str(p + n, " HTTP/1.1\r\nUser-Agent: Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 "
                           "Build/TQ3A.230805.001)\r\nHost: ");
        p = put_str(p, s->opt.target);
        p = put_str(p, "\r\nConnection: Keep-Alive\r\nAccept-Encoding: gzip\r\n"
                       "Content-Length: 0\r\n\r\n");
        return (size_t)(p - buf);
    }
    p = put_str(p, "POST / HTTP/1.1\r\nHost: ");
    p = put_str(p, s->opt.target);
    p = put_str(p, s->opt.shape == SHAPE_FORM
                       ? "\r\nUser-Agent: okhttp/4.12.0\r\n"
                         "Content-Type: application/x-www-form-urlencoded\r\n"
                       : "\r\nUser-Agent: TraccarClient/9\r\nContent-Type: application/json\r\n");
    p = put_str(p, "Content-Length: ");
    p = put_uint(p, n, 1);
    p = put_str(p, "\r\nConnection: keep-alive\r\n\r\n");
    memcpy(p, report, n);
    return (size_t)(p + n - buf);
}

static void on_http_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    c->writing = false;
    if (status < 0) {
        conn_fail(c, "write", status);
        return;
    }
    http_send_next(c); /* the answer may have come before this callback */
}

/* Closes a connection that is done, not broken: at stop, or as the server asked. */
static void http_close(struct conn *c, bool reconnect)
{
    c->reconnect_now = reconnect;
    c->shutdown_req.data = c;
    if (!c->writing && uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->handle, on_shutdown) == 0) {
        c->state = CONN_DRAINING; /* closed from on_shutdown */
    } else {
        c->state = CONN_CLOSING;
        uv_close((uv_handle_t *)&c->handle, on_conn_closed);
    }
}

/* Sends the oldest due report when nothing is in flight; at stop, closes once the queue is
 * empty. */
static void http_send_next(struct conn *c)
{
    struct sim *s = c->sim;
    if (c->state != CONN_UP || c->in_flight || c->writing)
        return;
    if (c->qlen == 0) {
        if (s->stopping)
            http_close(c, false);
        return;
    }
    struct unit *u = &s->units[c->queue[c->qhead]];
    c->qhead = (c->qhead + 1) % SIM_HTTP_QUEUE_MAX;
    c->qlen--;
    bool bad;
    size_t n = build_request(s, u, c->inflight, &bad);
    c->in_flight = true;
    c->sent_at_ns = uv_hrtime();
    s->c.sent++;
    s->c.malformed += bad;
    uv_buf_t b = uv_buf_init(c->inflight, (unsigned)n);
    int r = uv_try_write((uv_stream_t *)&c->handle, &b, 1);
    if (r == UV_EAGAIN)
        r = 0;
    if (r >= 0 && (size_t)r < n) {
        b = uv_buf_init(c->inflight + r, (unsigned)(n - (size_t)r));
        c->write_req.data = c;
        r = uv_write(&c->write_req, (uv_stream_t *)&c->handle, &b, 1, on_http_written);
        c->writing = r == 0;
    }
    if (r < 0)
        conn_fail(c, "write", r);
}

/* A header line "Name: value" named name (with its colon): its value, trimmed, or NULL. */
static const char *header_value(const char *line, size_t n, const char *name, size_t *vlen)
{
    size_t k = strlen(name);
    if (n < k || strncasecmp(line, name, k) != 0)
        return NULL;
    const char *v = line + k, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *vlen = (size_t)(end - v);
    return v;
}

static bool has_token(const char *v, size_t n, const char *token)
{
    size_t k = strlen(token);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(v + i, token, k) == 0 && (i == 0 || v[i - 1] == ' ' || v[i - 1] == ',') &&
            (i + k == n || v[i + k] == ' ' || v[i + k] == ','))
            return true;
    return false;
}

/*
 * An answer's head p[0..len) (through the blank line): its status, whether the server
 * closes after it, and how long its body is: Content-Length, none for 1xx/204/304, or up to
 * the close. -1 when it is not an answer this client can follow (a chunked body: the
 * daemon's answers have a length).
 */
static int http_parse_head(struct conn *c, const char *p, size_t len)
{
    if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ' || !isdigit((unsigned char)p[9]) ||
        !isdigit((unsigned char)p[10]) || !isdigit((unsigned char)p[11]))
        return -1;
    c->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    bool http10 = p[7] == '0', keep_alive = false, close = false, length = false;
    c->body_left = 0;
    const char *end = p + len, *line = memchr(p, '\n', len) + 1;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t n = (size_t)(eol - line), vn;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        const char *v;
        if ((v = header_value(line, n, "content-length:", &vn)) != NULL) {
            char num[24], *e;
            if (vn == 0 || vn >= sizeof(num))
                return -1;
            memcpy(num, v, vn);
            num[vn] = '\0';
            errno = 0;
            c->body_left = strtoull(num, &e, 10);
            if (errno != 0 || *e != '\0' || num[0] == '-')
                return -1;
            length = true;
        } else if ((v = header_value(line, n, "transfer-encoding:", &vn)) != NULL) {
            return -1;
        } else if ((v = header_value(line, n, "connection:", &vn)) != NULL) {
            close |= has_token(v, vn, "close");
            keep_alive |= has_token(v, vn, "keep-alive");
        }
        line = eol + 1;
    }
    c->close_after = close || (http10 && !keep_alive);
    bool no_body = c->status < 200 || c->status == 204 || c->status == 304;
    if (no_body)
        c->body_left = 0;
    c->until_close = !no_body && !length;
    c->in_body = c->until_close || c->body_left > 0;
    return 0;
}

/* A whole answer has come. */
static void http_answered(struct conn *c)
{
    struct sim *s = c->sim;
    if (c->in_flight) {
        c->in_flight = false;
        c->answered = true;
        if (c->status >= 200 && c->status < 300)
            s->c.http_2xx++;
        else if (c->status >= 400 && c->status < 500)
            s->c.http_4xx++;
        else if (c->status >= 500 && c->status < 600)
            s->c.http_5xx++;
        else
            s->c.errors++; /* a redirect or stranger: this report went nowhere */
    }
    /* else an answer nothing asked for (a 408 before an idle close): not a report's */
    if (c->close_after)
        http_close(c, true);
    else
        http_send_next(c);
}

/* Heads gather in pending; body bytes, which nothing needs, are read over its start. */
static void on_http_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *c = (struct conn *)h;
    size_t at = c->in_body ? 0 : c->pending_len;
    *buf = uv_buf_init(c->pending + at, (unsigned)(sizeof(c->pending) - at));
}

static void on_http_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = (struct conn *)stream;
    if (nread == 0 || c->state != CONN_UP)
        return;
    if (nread < 0) {
        if (nread == UV_EOF && c->in_body && c->until_close) {
            c->in_body = false;
            c->close_after = true;
            http_answered(c); /* the body ran to the close: an answer, then reconnect */
        } else if (nread == UV_EOF && !c->in_flight && c->answered) {
            http_close(c, true); /* an idle keep-alive connection the server let go */
        } else {
            conn_fail(c, "read", (int)nread);
        }
        return;
    }
    size_t n = (size_t)nread;
    if (c->in_body) {
        if (c->until_close)
            return;
        if (n > c->body_left) {
            conn_fail(c, "read", UV_EPROTO); /* more than was asked for: pipelining is not */
            return;
        }
        c->body_left -= n;
        c->in_body = c->body_left > 0;
        if (!c->in_body)
            http_answered(c);
        return;
    }
    c->pending_len += n;
    /* Heads until a final one (1xx are interim), then its body. */
    for (;;) {
        const char *blank = memmem(c->pending, c->pending_len, "\r\n\r\n", 4);
        if (blank == NULL) {
            if (c->pending_len > SIM_HTTP_HEAD_MAX)
                conn_fail(c, "read", UV_E2BIG);
            return;
        }
        size_t head = (size_t)(blank + 4 - c->pending), rest = c->pending_len - head;
        if (http_parse_head(c, c->pending, head) < 0) {
            conn_fail(c, "read", UV_EPROTO);
            return;
        }
        memmove(c->pending, c->pending + head, rest);
        c->pending_len = rest;
        if (c->status >= 200)
            break;
    }
    size_t rest = c->pending_len;
    c->pending_len = 0;
    if (c->until_close)
        return;
    if (rest > c->body_left) {
        conn_fail(c, "read", UV_EPROTO);
        return;
    }
    c->body_left -= rest;
    c->in_body = c->body_left > 0;
    if (!c->in_body)
        http_answered(c);
}

/* A connection is up: read answers, send what came due while it connected. */
static void http_start(struct conn *c)
{
    c->answered = c->in_body = false;
    c->pending_len = 0;
    int rc = uv_read_start((uv_stream_t *)&c->handle, on_http_alloc, on_http_read);
    if (rc < 0)
        conn_fail(c, "read", rc);
    else
        http_send_next(c);
}

/* Queues unit u's report on its connection; sent now if nothing is in flight. */
static void http_send_report(struct sim *s, struct unit *u, struct conn *c)
{
    uint64_t now = uv_hrtime();
    if (c->state == CONN_IDLE && now >= c->retry_at_ns)
        conn_connect(c);
    if (c->state == CONN_UP && c->in_flight &&
        now - c->sent_at_ns > (uint64_t)SIM_HTTP_TIMEOUT_MS * 1000000)
        conn_fail(c, "answer", UV_ETIMEDOUT);
    if ((c->state != CONN_UP && c->state != CONN_CONNECTING) || c->qlen == SIM_HTTP_QUEUE_MAX) {
        s->c.errors++; /* no connection (retrying), or the server answers too slowly */
        return;
    }
    c->queue[(c->qhead + c->qlen++) % SIM_HTTP_QUEUE_MAX] = (uint32_t)(u - s->units);
    http_send_next(c);
}

/* ---- pacing --------------------------------------------------------------------------- */

static uint64_t slot_due_ns(const struct sim *s, uint64_t k)
{
    return s->start_ns + (uint64_t)((double)k * s->slot_ns);
}

/* Units are spread over sockets and connections in contiguous blocks, so consecutive
 * slots mostly share a socket and fill one sendmmsg batch. */
static size_t block_of(size_t unit, size_t units, size_t blocks)
{
    return (size_t)((uint64_t)unit * blocks / units);
}

static void on_pace(uv_timer_t *t)
{
    struct sim *s = t->data;
    uint64_t now = uv_hrtime();
    size_t units = (size_t)s->opt.units;
    uint64_t tick_ns = (uint64_t)(s->slot_ns * (double)units);

    /* A whole tick behind: sending everything missed would be one long burst. Skip to the
     * slots of the last tick and count what was dropped. */
    if (now > slot_due_ns(s, s->next_slot) + tick_ns) {
        uint64_t first = (uint64_t)((double)(now - tick_ns - s->start_ns) / s->slot_ns) + 1;
        if (first > s->next_slot) {
            s->c.skipped += first - s->next_slot;
            s->next_slot = first;
        }
    }

    struct udp_source *last_src = NULL;
    for (int n = 0; n < SIM_WAKE_MAX; n++) {
        uint64_t due = slot_due_ns(s, s->next_slot);
        if (due > now) {
            now = uv_hrtime(); /* formatting took time: slots may have come due since */
            if (due > now)
                break;
        }
        uint64_t tick = s->next_slot / units;
        if (now - due > (uint64_t)SIM_LATE_MS * 1000000 && s->last_late_tick != tick + 1) {
            s->last_late_tick = tick + 1;
            s->c.late_ticks++;
        }
        size_t ui = (size_t)(s->next_slot % units);
        struct unit *u = &s->units[ui];
        if (s->opt.proto == PROTO_UDP) {
            struct udp_source *src = &s->sources[block_of(ui, units, s->n_sources)];
            if (last_src != NULL && src != last_src && last_src->n > 0)
                udp_flush(s, last_src);
            last_src = src;
            udp_send_report(s, u, src);
        } else if (s->opt.format == FORMAT_OSMAND) {
            http_send_report(s, u, &s->conns[block_of(ui, units, s->n_conns)]);
        } else {
            tcp_send_report(s, u, &s->conns[block_of(ui, units, s->n_conns)]);
        }
        s->next_slot++;
    }
    if (last_src != NULL && last_src->n > 0)
        udp_flush(s, last_src);
    for (size_t i = 0; i < s->n_dirty; i++) {
        s->dirty[i]->dirty = false;
        conn_flush(s->dirty[i]);
    }
    s->n_dirty = 0;

    /* Sleep until the next slot (loop time refreshed: this callback's own work must not
     * shift the schedule), at least 1 ms when it is in the future, 0 to go on at once. */
    uv_update_time(s->loop);
    uint64_t due = slot_due_ns(s, s->next_slot);
    now = uv_hrtime();
    uint64_t wait_ms = due > now ? (due - now + 999999) / 1000000 : 0;
    uv_timer_start(&s->pace_timer, on_pace, wait_ms, 0);
}

/* ---- progress, stopping --------------------------------------------------------------- */

static double elapsed_s(const struct sim *s)
{
    return (double)(uv_hrtime() - s->start_ns) / 1e9;
}

static void on_stats(uv_timer_t *t)
{
    struct sim *s = t->data;
    uint64_t now = uv_hrtime();
    double dt = (double)(now - s->stats_last_ns) / 1e9;
    double rate = dt > 0 ? (double)(s->c.sent - s->stats_last_sent) / dt : 0;
    fprintf(stderr,
            "gpsrelay-sim: %.0f s sent=%llu rate=%.0f/s malformed=%llu errors=%llu "
            "late_ticks=%llu skipped=%llu tcp_failures=%llu\n",
            elapsed_s(s), (unsigned long long)s->c.sent, rate, (unsigned long long)s->c.malformed,
            (unsigned long long)s->c.errors, (unsigned long long)s->c.late_ticks,
            (unsigned long long)s->c.skipped, (unsigned long long)s->c.tcp_failures);
    if (s->opt.format == FORMAT_OSMAND)
        fprintf(stderr, "gpsrelay-sim: %.0f s http_2xx=%llu http_4xx=%llu http_5xx=%llu\n",
                elapsed_s(s), (unsigned long long)s->c.http_2xx, (unsigned long long)s->c.http_4xx,
                (unsigned long long)s->c.http_5xx);
    s->stats_last_sent = s->c.sent;
    s->stats_last_ns = now;
}

static void close_handle(uv_handle_t *h)
{
    if (h->loop != NULL && !uv_is_closing(h))
        uv_close(h, NULL);
}

/* Closes what is left once TCP connections have drained (or the grace ran out). */
static void stop_check_done(struct sim *s)
{
    if (s->open_conns > 0)
        return;
    close_handle((uv_handle_t *)&s->grace_timer);
    for (size_t i = 0; i < s->n_sources; i++)
        close_handle((uv_handle_t *)&s->sources[i].handle);
}

static void on_grace_over(uv_timer_t *t)
{
    struct sim *s = t->data;
    for (size_t i = 0; i < s->n_conns; i++) {
        struct conn *c = &s->conns[i];
        if (c->state == CONN_UP || c->state == CONN_CONNECTING || c->state == CONN_DRAINING) {
            c->state = CONN_CLOSING;
            uv_close((uv_handle_t *)&c->handle, on_conn_closed);
        }
    }
}

static void sim_stop(struct sim *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->stop_ns = uv_hrtime();
    close_handle((uv_handle_t *)&s->start_timer);
    close_handle((uv_handle_t *)&s->pace_timer);
    close_handle((uv_handle_t *)&s->stats_timer);
    close_handle((uv_handle_t *)&s->stop_timer);
    close_handle((uv_handle_t *)&s->sigint);
    close_handle((uv_handle_t *)&s->sigterm);

    /* TCP: finish writing what was queued, then shut down; bounded by SIM_STOP_GRACE_MS. */
    for (size_t i = 0; i < s->n_conns; i++) {
        struct conn *c = &s->conns[i];
        if (c->state == CONN_IDLE)
            continue;
        s->open_conns++;
        if (c->state == CONN_UP && s->opt.format == FORMAT_OSMAND)
            http_send_next(c); /* closes once its queue is sent and answered */
        else if (c->state == CONN_UP)
            conn_flush(c); /* shuts down now, or after its write completes */
        else if (c->state == CONN_CONNECTING) {
            c->state = CONN_CLOSING;
            uv_close((uv_handle_t *)&c->handle, on_conn_closed);
        }
    }
    uv_timer_init(s->loop, &s->grace_timer);
    s->grace_timer.data = s;
    uv_timer_start(&s->grace_timer, on_grace_over, SIM_STOP_GRACE_MS, 0);
    uv_unref((uv_handle_t *)&s->grace_timer);
    stop_check_done(s);
}

static void on_duration_over(uv_timer_t *t)
{
    sim_stop(t->data);
}

/* Pacing, progress and the duration all count from here. */
static void pace_start(struct sim *s)
{
    if (s->started || s->stopping)
        return;
    s->started = true;
    close_handle((uv_handle_t *)&s->start_timer);
    s->start_ns = s->stats_last_ns = uv_hrtime();
    uv_timer_init(s->loop, &s->pace_timer);
    s->pace_timer.data = s;
    uv_timer_start(&s->pace_timer, on_pace, 0, 0);
    if (s->opt.stats_interval > 0 && !s->opt.quiet) {
        uint64_t ms = (uint64_t)(s->opt.stats_interval * 1000);
        uv_timer_init(s->loop, &s->stats_timer);
        s->stats_timer.data = s;
        uv_timer_start(&s->stats_timer, on_stats, ms, ms);
    }
    if (s->opt.duration > 0) {
        uv_timer_init(s->loop, &s->stop_timer);
        s->stop_timer.data = s;
        uv_timer_start(&s->stop_timer, on_duration_over, (uint64_t)(s->opt.duration * 1000), 0);
    }
}

static void on_connect_wait_over(uv_timer_t *t)
{
    struct sim *s = t->data;
    if (!s->opt.quiet)
        fprintf(stderr, "gpsrelay-sim: %zu of %zu tcp connections up after %d ms; sending\n",
                s->conns_up, s->n_conns, SIM_CONNECT_WAIT_MS);
    pace_start(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    sim_stop(h->data);
}

/* ---- the mapping ---------------------------------------------------------------------- */

static const char *agency_name(const struct sim *s, long k, char *buf, size_t cap)
{
    if (s->opt.agency_names != NULL)
        return s->opt.agency_names[k];
    snprintf(buf, cap, "agency-%ld", k + 1);
    return buf;
}

/* docs/mapping.md's CSV, units round-robin over the agencies; written to a temporary file
 * in the same folder and renamed, so a daemon reloading it never reads half a file. */
static int write_mapping(const struct sim *s, const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -errno;
    fputs("device_id,agency_id,label,source_addr\n", f);
    for (long i = 0; i < s->opt.units; i++) {
        char name[32];
        fprintf(f, "%s,%s,Unit %ld,\n", s->units[i].id,
                agency_name(s, i % s->opt.agencies, name, sizeof(name)), i + 1);
    }
    int rc = 0;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = -errno;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

/* ---- command line --------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gpsrelay-sim [options]\n"
            "Simulates modems or phones sending positions to gpsrelayd; prints a summary line\n"
            "on exit.\n"
            "\n"
            "  --target HOST:PORT     where to send [127.0.0.1:5005; osmand 127.0.0.1:5055];\n"
            "                         [::1]:PORT for IPv6\n"
            "  --proto udp|tcp        one datagram per report, or newline-framed streams [udp]\n"
            "  --format nmea|json|osmand\n"
            "                         ID,$GPRMC + ID,$GPGGA; JSON reports with\n"
            "                         \"attrs\":{\"sent_us\":...}; or phones (Traccar Client)\n"
            "                         posting to listen_http_ingest over HTTP/1.1 keep-alive,\n"
            "                         one request in flight per connection [nmea]\n"
            "  --osmand-shape query|form|json\n"
            "                         the pairs in a POST's query string, as a form body, or\n"
            "                         Traccar Client 9's JSON [form]\n"
            "  --units N              units SIM-001.. (at least 3 digits) [20], up to %d\n"
            "  --agencies K           agencies agency-1..agency-K, units round-robin [2]\n"
            "  --agency-names a,b,c   name the agencies instead (sets K)\n"
            "  --rate HZ              reports per second per unit [1], up to %.0f\n"
            "  --duration SECONDS     stop after this long [0: until SIGINT/SIGTERM]\n"
            "  --malformed FRACTION   corrupt this fraction of reports (bad checksum,\n"
            "                         truncated, garbage, invalid field) [0]\n"
            "  --prefix ID_PREFIX     device id prefix [SIM-]\n"
            "  --center LAT,LON       centre of the area [40.7128,-74.0060]\n"
            "  --radius-km KM         units stay within this distance of the centre [5]\n"
            "  --seed N               tracks are a function of the seed and the unit [1]\n"
            "  --mapping-out FILE     write the CSV mapping (docs/mapping.md) atomically\n"
            "  --mapping-only         write --mapping-out and exit without sending\n"
            "  --stats-interval S     a progress line on stderr every S seconds [5; 0: none]\n"
            "  --quiet                no progress lines or notes (the summary still prints)\n"
            "  --sources N            send from N loopback addresses 127.0.0.2.. (units in\n"
            "                         blocks), to stay under gpsrelayd's ingest_rate_limit per\n"
            "                         source address [0: one socket, the kernel's address]\n"
            "  --connections N        TCP, osmand: N connections, units in blocks [0: one per\n"
            "                         unit]; osmand queues up to %d due reports per connection\n"
            "  --help\n"
            "\n"
            "Summary on stdout: sent=N malformed=N errors=N late_ticks=N skipped=N seconds=S\n"
            "rate=R, then tcp_failures=N over TCP, then http_2xx=N http_4xx=N http_5xx=N with\n"
            "osmand (answers by status; a request whose connection broke first is an error).\n"
            "A tick (every unit reporting once) is late when a report of it went out\n"
            "over %d ms after its slot; skipped counts slots dropped after falling a whole\n"
            "tick behind. Exit status: 0 ok, 64 usage error, 1 other failure.\n"
            "\n"
            "Every run starts each unit at its seed's starting point: a daemon still holding\n"
            "positions from a run that ended moments ago sees each unit jump, and rejects its\n"
            "first fix as implausible_speed (once; the next ones agree and pass).\n",
            SIM_UNITS_MAX, SIM_RATE_MAX, SIM_HTTP_QUEUE_MAX, SIM_LATE_MS);
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gpsrelay-sim: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ngpsrelay-sim: run 'gpsrelay-sim --help' for usage\n");
    return SIM_EXIT_USAGE;
}

/* Where name is in names[0..n), or -1. */
static int name_index(const char *name, const char *const names[], size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return (int)i;
    return -1;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Ids and agency names go into CSV cells, JSON strings and NMEA prefixes unescaped: only
 * characters none of them treat specially. */
static bool safe_name(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || strchr(",\"\\$>{}*", c) != NULL)
            return false;
    }
    return true;
}

static int parse_agency_names(struct options *o, char *list)
{
    long n = 1;
    for (const char *c = list; *c; c++)
        n += *c == ',';
    if (n > SIM_AGENCIES_MAX)
        return -1;
    o->agency_names = calloc((size_t)n, sizeof(char *));
    if (o->agency_names == NULL)
        return -1;
    long i = 0;
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (!safe_name(tok, 64))
            return -1;
        o->agency_names[i++] = tok;
    }
    if (i != n) /* an empty name: "a,,b" */
        return -1;
    o->agencies = n;
    return 0;
}

static int resolve_target(struct sim *s)
{
    char host[256];
    const char *t = s->opt.target, *colon = strrchr(t, ':');
    if (colon == NULL || colon == t)
        return -1;
    size_t hlen = (size_t)(colon - t);
    if (t[0] == '[' && hlen >= 2 && t[hlen - 1] == ']') { /* [v6]:port */
        t++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host))
        return -1;
    memcpy(host, t, hlen);
    host[hlen] = '\0';
    long port;
    if (!parse_long(colon + 1, 1, 65535, &port))
        return -1;
    /* A name is looked up once, before the loop runs: nothing blocks it later. */
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = s->opt.proto == PROTO_UDP ? SOCK_DGRAM : SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
        return -1;
    memcpy(&s->target, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

enum {
    OPT_TARGET = 256,
    OPT_PROTO,
    OPT_FORMAT,
    OPT_UNITS,
    OPT_AGENCIES,
    OPT_AGENCY_NAMES,
    OPT_RATE,
    OPT_DURATION,
    OPT_MALFORMED,
    OPT_PREFIX,
    OPT_CENTER,
    OPT_RADIUS,
    OPT_SEED,
    OPT_MAPPING_OUT,
    OPT_MAPPING_ONLY,
    OPT_STATS,
    OPT_QUIET,
    OPT_SOURCES,
    OPT_CONNECTIONS,
    OPT_OSMAND_SHAPE,
    OPT_HELP,
};

static int parse_args(struct sim *s, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"target", required_argument, NULL, OPT_TARGET},
        {"proto", required_argument, NULL, OPT_PROTO},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"units", required_argument, NULL, OPT_UNITS},
        {"agencies", required_argument, NULL, OPT_AGENCIES},
        {"agency-names", required_argument, NULL, OPT_AGENCY_NAMES},
        {"rate", required_argument, NULL, OPT_RATE},
        {"duration", required_argument, NULL, OPT_DURATION},
        {"malformed", required_argument, NULL, OPT_MALFORMED},
        {"prefix", required_argument, NULL, OPT_PREFIX},
        {"center", required_argument, NULL, OPT_CENTER},
        {"radius-km", required_argument, NULL, OPT_RADIUS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"mapping-out", required_argument, NULL, OPT_MAPPING_OUT},
        {"mapping-only", no_argument, NULL, OPT_MAPPING_ONLY},
        {"stats-interval", required_argument, NULL, OPT_STATS},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {"sources", required_argument, NULL, OPT_SOURCES},
        {"connections", required_argument, NULL, OPT_CONNECTIONS},
        {"osmand-shape", required_argument, NULL, OPT_OSMAND_SHAPE},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct options *o = &s->opt;
    *o = (struct options){.target = NULL,
                          .shape = SHAPE_FORM,
                          .units = 20,
                          .agencies = 2,
                          .rate = 1.0,
                          .prefix = "SIM-",
                          .center_lat = 40.7128,
                          .center_lon = -74.0060,
                          .radius_m = 5000,
                          .seed = 1,
                          .stats_interval = 5};
    bool agencies_given = false, proto_given = false, shape_given = false;
    int c;
    double km;
    long seed;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_TARGET:
            o->target = optarg;
            break;
        case OPT_PROTO:
            if (strcmp(optarg, "udp") != 0 && strcmp(optarg, "tcp") != 0)
                return usage_error("--proto: udp or tcp, not '%s'", optarg);
            o->proto = optarg[0] == 'u' ? PROTO_UDP : PROTO_TCP;
            proto_given = true;
            break;
        case OPT_FORMAT: {
            static const char *const formats[] = {"nmea", "json", "osmand"}; /* enum format */
            int f = name_index(optarg, formats, sizeof(formats) / sizeof(formats[0]));
            if (f < 0)
                return usage_error("--format: nmea, json or osmand, not '%s'", optarg);
            o->format = (enum format)f;
            break;
        }
        case OPT_OSMAND_SHAPE: {
            static const char *const shapes[] = {"query", "form", "json"}; /* enum shape */
            int sh = name_index(optarg, shapes, sizeof(shapes) / sizeof(shapes[0]));
            if (sh < 0)
                return usage_error("--osmand-shape: query, form or json, not '%s'", optarg);
            o->shape = (enum shape)sh;
            shape_given = true;
            break;
        }
        case OPT_UNITS:
            if (!parse_long(optarg, 1, SIM_UNITS_MAX, &o->units))
                return usage_error("--units: 1 to 1000000, not '%s'", optarg);
            break;
        case OPT_AGENCIES:
            if (o->agency_names != NULL || !parse_long(optarg, 1, SIM_AGENCIES_MAX, &o->agencies))
                return usage_error("--agencies: 1 to 10000, without --agency-names, not '%s'",
                                   optarg);
            agencies_given = true;
            break;
        case OPT_AGENCY_NAMES:
            if (agencies_given || o->agency_names != NULL || parse_agency_names(o, optarg) < 0)
                return usage_error("--agency-names: comma-separated names of letters, digits "
                                   "and punctuation other than ,\"\\$>{}*, once, without "
                                   "--agencies: '%s'",
                                   optarg);
            break;
        case OPT_RATE:
            if (!parse_double(optarg, 0.001, SIM_RATE_MAX, &o->rate))
                return usage_error("--rate: 0.001 to 1000 reports per second per unit, not '%s'",
                                   optarg);
            break;
        case OPT_DURATION:
            if (!parse_double(optarg, 0, 1e7, &o->duration))
                return usage_error("--duration: seconds, 0 for no limit, not '%s'", optarg);
            break;
        case OPT_MALFORMED:
            if (!parse_double(optarg, 0, 1, &o->malformed))
                return usage_error("--malformed: a fraction from 0 to 1, not '%s'", optarg);
            break;
        case OPT_PREFIX:
            if (strlen(optarg) > SIM_PREFIX_MAX || (optarg[0] != '\0' && !safe_name(optarg, 32)))
                return usage_error("--prefix: up to 32 printable characters without spaces "
                                   "or ,\"\\$>{}*: '%s'",
                                   optarg);
            o->prefix = optarg;
            break;
        case OPT_CENTER: {
            char *comma = strchr(optarg, ',');
            if (comma == NULL)
                return usage_error("--center: LAT,LON, not '%s'", optarg);
            *comma = '\0';
            bool ok = parse_double(optarg, -80, 80, &o->center_lat) &&
                      parse_double(comma + 1, -180, 180, &o->center_lon) &&
                      (o->center_lat != 0 || o->center_lon != 0);
            *comma = ',';
            if (!ok)
                return usage_error("--center: latitude within +-80, longitude within +-180, "
                                   "not 0,0: '%s'",
                                   optarg);
            break;
        }
        case OPT_RADIUS:
            if (!parse_double(optarg, 0.1, 1000, &km))
                return usage_error("--radius-km: 0.1 to 1000, not '%s'", optarg);
            o->radius_m = km * 1000;
            break;
        case OPT_SEED:
            if (!parse_long(optarg, 0, LONG_MAX, &seed))
                return usage_error("--seed: a whole number, not '%s'", optarg);
            o->seed = (uint64_t)seed;
            break;
        case OPT_MAPPING_OUT:
            o->mapping_out = optarg;
            break;
        case OPT_MAPPING_ONLY:
            o->mapping_only = true;
            break;
        case OPT_STATS:
            if (!parse_double(optarg, 0, 86400, &o->stats_interval))
                return usage_error("--stats-interval: seconds, 0 for none, not '%s'", optarg);
            break;
        case OPT_QUIET:
            o->quiet = true;
            break;
        case OPT_SOURCES:
            if (!parse_long(optarg, 0, SIM_SOURCES_MAX, &o->sources))
                return usage_error("--sources: 0 to 65536, not '%s'", optarg);
            break;
        case OPT_CONNECTIONS:
            if (!parse_long(optarg, 0, SIM_UNITS_MAX, &o->connections))
                return usage_error("--connections: 0 to 1000000, not '%s'", optarg);
            break;
        case OPT_HELP:
            usage(stdout);
            exit(0);
        default:
            fprintf(stderr, "gpsrelay-sim: run 'gpsrelay-sim --help' for usage\n");
            return SIM_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (o->mapping_only && o->mapping_out == NULL)
        return usage_error("%s needs --mapping-out FILE", "--mapping-only");
    if (o->format == FORMAT_OSMAND) {
        /* Phones speak HTTP, over TCP; 5055 is where Traccar listens for them. */
        if (proto_given && o->proto != PROTO_TCP)
            return usage_error("--format osmand is HTTP over TCP: no --proto %s", "udp");
        o->proto = PROTO_TCP;
        if (o->target == NULL)
            o->target = "127.0.0.1:5055";
    } else if (shape_given) {
        return usage_error("%s needs --format osmand", "--osmand-shape");
    }
    if (o->target == NULL)
        o->target = "127.0.0.1:5005";
    if (o->connections > o->units)
        o->connections = o->units;
    if (o->sources > o->units)
        o->sources = o->units;
    if (resolve_target(s) < 0)
        return usage_error("--target: HOST:PORT or [IPv6]:PORT, not '%s'", o->target);
    if (o->sources > 0 && s->target.ss_family != AF_INET)
        return usage_error("--sources needs an IPv4 loopback target, not '%s'", o->target);
    return 0;
}

/* Many TCP connections need many descriptors: take the hard limit (nothing here uses
 * select()). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int digits_of(long n)
{
    int d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

static void note_rate_limit(const struct sim *s)
{
    double lines = s->opt.format == FORMAT_NMEA ? 2 : 1; /* the daemon counts lines */
    double per_source = (double)s->opt.units * s->opt.rate * lines /
                        (double)(s->opt.sources > 0 ? s->opt.sources : 1);
    if (per_source > SIM_DAEMON_RATE_LIMIT)
        fprintf(stderr,
                "gpsrelay-sim: note: %.0f reports/s per source address; gpsrelayd drops what "
                "exceeds its ingest_rate_limit (default %.0f): raise it or use --sources %.0f\n",
                per_source, SIM_DAEMON_RATE_LIMIT,
                ceil(per_source * (double)(s->opt.sources > 0 ? s->opt.sources : 1) /
                     (SIM_DAEMON_RATE_LIMIT * 0.8)));
}

/* The contract benchmarks parse: these keys in this order, then tcp_failures only with
 * --proto tcp, then the http_ keys only with --format osmand. */
static void print_summary(const struct sim *s, double seconds)
{
    printf("sent=%llu malformed=%llu errors=%llu late_ticks=%llu skipped=%llu seconds=%.2f "
           "rate=%.0f",
           (unsigned long long)s->c.sent, (unsigned long long)s->c.malformed,
           (unsigned long long)s->c.errors, (unsigned long long)s->c.late_ticks,
           (unsigned long long)s->c.skipped, seconds,
           seconds > 0 ? (double)s->c.sent / seconds : 0.0);
    if (s->opt.proto == PROTO_TCP)
        printf(" tcp_failures=%llu", (unsigned long long)s->c.tcp_failures);
    if (s->opt.format == FORMAT_OSMAND)
        printf(" http_2xx=%llu http_4xx=%llu http_5xx=%llu", (unsigned long long)s->c.http_2xx,
               (unsigned long long)s->c.http_4xx, (unsigned long long)s->c.http_5xx);
    putchar('\n');
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static struct sim sim; /* large (per-source batches); static keeps it off the stack */
    struct sim *s = &sim;
    int rc = parse_args(s, argc, argv);
    if (rc != 0)
        return rc;

    s->id_width = digits_of(s->opt.units) > 3 ? digits_of(s->opt.units) : 3;
    s->units = calloc((size_t)s->opt.units, sizeof(*s->units));
    if (s->units == NULL) {
        fprintf(stderr, "gpsrelay-sim: out of memory for %ld units\n", s->opt.units);
        return 1;
    }
    s->date_day = -1;
    int64_t now_ms = wall_clock_us() / 1000;
    for (long i = 0; i < s->opt.units; i++)
        unit_init(s, &s->units[i], i, now_ms);

    if (s->opt.mapping_out != NULL) {
        rc = write_mapping(s, s->opt.mapping_out);
        if (rc < 0) {
            fprintf(stderr, "gpsrelay-sim: %s: %s\n", s->opt.mapping_out, strerror(-rc));
            free(s->units);
            return 1;
        }
        if (s->opt.mapping_only) {
            free(s->units);
            free(s->opt.agency_names);
            return 0;
        }
    }

    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN); /* a daemon closing a TCP connection is an error value */
    if (!s->opt.quiet)
        note_rate_limit(s);
    s->loop = uv_default_loop();
    s->malformed_rng = s->opt.seed ^ 0xA5A5A5A5DEADBEEFULL;
    /* 2^64 * fraction, saturating: fraction 1 corrupts every report. */
    s->malformed_threshold = s->opt.malformed >= 1.0
                                 ? UINT64_MAX
                                 : (uint64_t)(s->opt.malformed * 18446744073709551616.0);
    rc = s->opt.proto == PROTO_UDP ? udp_open(s) : tcp_open(s);
    if (rc < 0) {
        fprintf(stderr, "gpsrelay-sim: %s %s: %s\n", s->opt.proto == PROTO_UDP ? "udp" : "tcp",
                s->opt.target, uv_strerror(rc));
        return 1;
    }

    s->slot_ns = 1e9 / (s->opt.rate * (double)s->opt.units);
    uv_timer_init(s->loop, &s->start_timer);
    s->start_timer.data = s;
    if (s->opt.proto == PROTO_UDP)
        pace_start(s);
    else
        uv_timer_start(&s->start_timer, on_connect_wait_over, SIM_CONNECT_WAIT_MS, 0);
    uv_signal_init(s->loop, &s->sigint);
    uv_signal_init(s->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);

    uv_run(s->loop, UV_RUN_DEFAULT);
    double seconds = s->started ? (double)(s->stop_ns - s->start_ns) / 1e9 : 0;
    /* The grace timer was unref'd so it cannot keep the loop alive; close it and anything
     * else still open, and let the close callbacks run. */
    close_handle((uv_handle_t *)&s->grace_timer);
    for (size_t i = 0; i < s->n_conns; i++)
        if (s->conns[i].state != CONN_IDLE)
            close_handle((uv_handle_t *)&s->conns[i].handle);
    uv_run(s->loop, UV_RUN_DEFAULT);
    print_summary(s, seconds);
    uv_loop_close(s->loop);
    free(s->sources);
    free(s->conns);
    free(s->dirty);
    free(s->units);
    free(s->opt.agency_names);
    return 0;
}
