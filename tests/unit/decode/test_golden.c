/*
 * test_golden.c - conformance with gpsd over real receiver captures.
 *
 * argv[1] is tests/data/gpsd: NMEA logs from gpsd's regression suite (*.log), each with
 * gpsd's own decoded output (*.log.chk: the log's sentences interleaved with gpsd's JSON
 * reports). Every log is decoded line by line (gr_nmea_decode) into one assembler, as one
 * device, with one flush at the end; then every TPV report of gpsd is held against our
 * fixes:
 *
 * - mode >= 2 with a time and a position: a fix of ours must have the same time (modulo
 *   1024 GPS weeks, see below), lat/lon within 1e-7 degree, and where gpsd gives a
 *   "track", a speed within 0.01 m/s and a course within 0.01 degree. When it is gpsd's
 *   last TPV of that time (gpsd reports once per sentence, so that one has the whole
 *   cycle), our fix must also be valid, have its "alt" within 0.001 m and its "speed"
 *   with or without a track.
 * - mode 1 with a time, as gpsd's last TPV of that time: our fix of that time must be
 *   invalid or absent.
 *
 * The receive time (now_ms) is the time of gpsd's first TPV: the logs last minutes, as if
 * the receiver were live and its sentences arrived at once. The receive-date fallback
 * then gives time-only sentences before the log's first RMC/ZDA the day gpsd gives them
 * once it has a date, and a pre-rollover date comes out exactly as gpsd reports it.
 *
 * Deliberate differences from gpsd, each counted and printed by reason, never skipped
 * silently (the names below are the printed reasons):
 *
 *  1. "mode<2 without time": gpsd reports "no fix" with nothing else; nothing to compare.
 *  2. "no date in gpsd yet": gpsd reports no time for a GGA or GLL before the log's first
 *     RMC or ZDA (or after an RMC with an empty date: quectel losing its fix), where we
 *     take the date from the RMC of the same time (merged), the device's last date or
 *     the receive date. Such a TPV is matched by position alone: some fix of ours must
 *     have its lat/lon.
 *  3. Times are matched modulo GR_ROLLOVER_MS: gpsd adds 1024 weeks to any date before
 *     2017 (its build-time rollover guess: magellan-ec10's 2005 reads 2025 and
 *     triton400's 2013 reads 2032), we add them only to a date 1024 weeks before the
 *     receive time. With now_ms from gpsd's own clock both must agree to the
 *     millisecond, and that is checked too ("exact times"): it exercises our rollover
 *     correction on real data.
 *  4. Derived speeds: when a cycle has no speed yet (GLL or GGA before the RMC/VTG of the
 *     same time) gpsd computes one from the last two positions and reports it without a
 *     track; we report only speeds the receiver sent. So a speed without a track is
 *     compared only in gpsd's last TPV of the time, when we have a speed ("speed without
 *     track, not gpsd's last TPV of the time" counts the others, "speed derived by gpsd,
 *     no RMC/VTG speed in the cycle" the last TPVs of cycles without a speed sentence).
 *  5. "superseded by gpsd": gpsd reports a TPV per sentence, so a fix it later withdraws
 *     in the same second (quectel: RMC with status A at 02:20:38, then a VTG with mode N)
 *     first appears with mode 3. Our fix is the merge of the whole second (a VTG belongs
 *     to the fix being gathered), so it is invalid like gpsd's last word; the earlier
 *     mode-3 TPV is still checked for time and position.
 *  6. "extra fix of ours": a fix of ours at a time for which gpsd reported no TPV at all.
 *     triton400 has "$GPGGA,030130$GPGLL,...030131...": the cycle of 03:01:30 is only a
 *     GLL and a GGA cut off by the next sentence. gpsd reports nothing for it; we publish
 *     the GLL's position. Printed, and compared against the expected count per log below.
 *  7. That spliced line itself: gpsd's lexer resynchronises at the second '$' and decodes
 *     the GLL of 03:01:31; we reject the whole line (bad checksum), as the daemon frames
 *     on line ends only (report.h). The GGA and RMC of 03:01:31 still give us that fix.
 *  8. Not compared at all: satellites, HDOP (gpsd's TPV has neither), and gpsd's own
 *     fields (climb, error estimates, magnetic track, altHAE).
 *
 * Lines are fed as the daemon's framer returns them: without CR/LF, comment lines ('#')
 * skipped.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gpsrelay/assemble.h"
#include "gpsrelay/calendar.h"
#include "gpsrelay/nmea.h"

#define LAT_LON_EPS 1e-7
#define SPEED_EPS   0.01 /* m/s: gpsd prints 3 decimals */
#define COURSE_EPS  0.01 /* degrees: gpsd prints 4 decimals */
#define ALT_EPS     1e-3 /* metres: gpsd prints 4 decimals of what the receiver sent */

/* Reports of gpsd and fixes of ours per log: the longest log has under 200 of each. */
#define MAX_TPV   2000
#define MAX_FIXES 2000
#define MAX_LOGS  64

/* One gpsd TPV report. */
struct tpv {
    int mode;
    bool has_time, has_pos, has_speed, has_track, has_alt;
    int64_t time_ms;
    double lat, lon, speed, track, alt;
    bool last_of_time; /* no later TPV has the same time: gpsd's last word for it */
};

/* Why a TPV was not compared field by field; printed per log. */
enum skip {
    SKIP_MODE1_NO_TIME,
    SKIP_NO_POSITION,
    SKIP_NO_DATE_YET,
    SKIP_PARTIAL_SPEED,
    SKIP_DERIVED_SPEED,
    SKIP_SUPERSEDED,
    SKIP_NOFIX_SUPERSEDED,
    SKIP_COUNT
};

static const char *const skip_names[SKIP_COUNT] = {
    [SKIP_MODE1_NO_TIME] = "mode<2 without time",
    [SKIP_NO_POSITION] = "mode>=2 without lat/lon",
    [SKIP_NO_DATE_YET] = "no date in gpsd yet (matched by position)",
    [SKIP_PARTIAL_SPEED] = "speed without track, not gpsd's last TPV of the time",
    [SKIP_DERIVED_SPEED] = "speed derived by gpsd, no RMC/VTG speed in the cycle",
    [SKIP_SUPERSEDED] = "superseded by gpsd (later no-fix TPV, position checked)",
    [SKIP_NOFIX_SUPERSEDED] = "mode<2, a later TPV of the same time has a fix",
};

/*
 * Fixes of ours that gpsd never reported (difference 6 above), per log. A log not listed
 * must have none.
 */
static const struct {
    const char *log;
    int extra;
} expected_extra[] = {
    {"triton400.log", 1}, /* 03:01:30 from the GLL before the spliced line */
};

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            char *bigger = realloc(buf, cap);
            if (bigger == NULL) {
                free(buf);
                buf = NULL;
            }
            buf = bigger;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

/* The next line of buf[*off..len) without its CR/LF; false at the end. */
static bool next_line(const char *buf, size_t len, size_t *off, const char **line, size_t *n)
{
    if (*off >= len) {
        return false;
    }
    const char *start = buf + *off;
    const char *nl = memchr(start, '\n', len - *off);
    size_t l = nl ? (size_t)(nl - start) : len - *off;
    *off += l + (nl != NULL);
    while (l > 0 && (start[l - 1] == '\r' || start[l - 1] == '\n')) {
        l--;
    }
    *line = start;
    *n = l;
    return true;
}

/* "2020-03-18T13:28:20.600Z" as milliseconds since 1970. */
static bool parse_iso_time(const char *s, int64_t *out)
{
    int y, mo, d, h, mi, sec, ms = 0, used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6) {
        return false;
    }
    const char *p = s + used;
    if (*p == '.') {
        int scale = 100;
        for (p++; *p >= '0' && *p <= '9'; p++) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (*p != 'Z') {
        return false;
    }
    *out = ((gr_days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000LL + sec * 1000LL + ms;
    return true;
}

static bool json_number(json_t *o, const char *key, double *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) {
        return false;
    }
    *out = json_number_value(v);
    return true;
}

/* The TPV reports of a .chk file, in order. */
static int read_chk(const char *path, struct tpv *tpv, int max)
{
    size_t len, off = 0, n;
    const char *line;
    char *buf = read_file(path, &len);
    int count = 0;

    CHECK(buf != NULL);
    if (buf == NULL) {
        return 0;
    }
    while (next_line(buf, len, &off, &line, &n)) {
        if (n == 0 || line[0] != '{') {
            continue; /* the log's own sentences, echoed */
        }
        json_error_t err;
        json_t *o = json_loadb(line, n, 0, &err);
        CHECK(o != NULL);
        if (o == NULL) {
            fprintf(stderr, "%s: %s\n", path, err.text);
            continue;
        }
        const char *cls = json_string_value(json_object_get(o, "class"));
        if (cls != NULL && strcmp(cls, "TPV") == 0 && count < max) {
            struct tpv *t = &tpv[count++];
            memset(t, 0, sizeof(*t));
            t->mode = (int)json_integer_value(json_object_get(o, "mode"));
            const char *time = json_string_value(json_object_get(o, "time"));
            t->has_time = time != NULL && parse_iso_time(time, &t->time_ms);
            CHECK(time == NULL || t->has_time);
            t->has_pos = json_number(o, "lat", &t->lat) && json_number(o, "lon", &t->lon);
            t->has_speed = json_number(o, "speed", &t->speed);
            t->has_track = json_number(o, "track", &t->track);
            t->has_alt = json_number(o, "alt", &t->alt);
        }
        json_decref(o);
    }
    CHECK(count < max);
    free(buf);
    for (int i = 0; i < count; i++) {
        tpv[i].last_of_time = true;
        for (int j = i + 1; j < count && tpv[i].has_time; j++) {
            if (tpv[j].has_time && tpv[j].time_ms == tpv[i].time_ms) {
                tpv[i].last_of_time = false;
            }
        }
    }
    return count;
}

/* Equal times modulo 1024 GPS weeks (difference 3). */
static bool same_time(int64_t a, int64_t b)
{
    return (a - b) % GR_ROLLOVER_MS == 0;
}

static const struct gr_fix *find_fix(const struct gr_fix *fixes, int n, int64_t time_ms)
{
    for (int i = 0; i < n; i++) {
        if (same_time(fixes[i].time_ms, time_ms)) {
            return &fixes[i];
        }
    }
    return NULL;
}

static bool near_position(const struct gr_fix *f, const struct tpv *t)
{
    return fabs(f->lat - t->lat) <= LAT_LON_EPS && fabs(f->lon - t->lon) <= LAT_LON_EPS;
}

static double course_diff(double a, double b)
{
    double d = fmod(fabs(a - b), 360.0);
    return d > 180.0 ? 360.0 - d : d;
}

static void print_time(FILE *out, const char *what, int64_t ms)
{
    int64_t s = ms / 1000;
    fprintf(out, "%s %" PRId64 ".%03d (day %" PRId64 " %02d:%02d:%02d)", what, s, (int)(ms % 1000),
            s / 86400, (int)(s % 86400 / 3600), (int)(s % 3600 / 60), (int)(s % 60));
}

static void run_log(const char *dir, const char *name)
{
    static struct tpv tpv[MAX_TPV];
    static struct gr_fix fixes[MAX_FIXES];
    char path[4096];
    int failures_before = check_failures;

    snprintf(path, sizeof(path), "%s/%s.chk", dir, name);
    int n_tpv = read_chk(path, tpv, MAX_TPV);

    /* The receive time: gpsd's first TPV with a time. */
    int64_t now_ms = 0;
    for (int i = 0; i < n_tpv; i++) {
        if (tpv[i].has_time) {
            now_ms = tpv[i].time_ms;
            break;
        }
    }
    CHECK(now_ms != 0);

    /* Decode the log: one device, one assembler, flushed at the end. */
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    size_t len, off = 0, n;
    const char *line;
    char *buf = read_file(path, &len);
    CHECK(buf != NULL);
    if (buf == NULL) {
        return;
    }
    struct gr_assembler a;
    memset(&a, 0, sizeof(a));
    int n_fixes = 0, reasons[GR_REASON_COUNT] = {0}, sentences = 0;
    while (next_line(buf, len, &off, &line, &n)) {
        if (n == 0 || line[0] == '#') {
            continue;
        }
        struct gr_sentence s;
        enum gr_reason r = gr_nmea_decode(line, n, &s);
        reasons[r]++;
        sentences++;
        if (r == GR_OK && n_fixes < MAX_FIXES && gr_assemble_add(&a, &s, now_ms, &fixes[n_fixes])) {
            n_fixes++;
        }
        if (r != GR_OK && r != GR_UNSUPPORTED) {
            printf("  %s: %s: %.*s\n", name, gr_reason_label(r), (int)n, line);
        }
    }
    if (n_fixes < MAX_FIXES && gr_assemble_flush(&a, now_ms, &fixes[n_fixes])) {
        n_fixes++;
    }
    CHECK(n_fixes < MAX_FIXES);
    free(buf);

    /* Every gpsd TPV against our fixes. */
    int skipped[SKIP_COUNT] = {0}, matched = 0, nofix_agreed = 0, speeds = 0, tracks = 0;
    int alts = 0, exact_times = 0;
    for (int i = 0; i < n_tpv; i++) {
        const struct tpv *t = &tpv[i];
        const struct gr_fix *f = t->has_time ? find_fix(fixes, n_fixes, t->time_ms) : NULL;
        int failures = check_failures;

        if (t->mode < 2) {
            if (!t->has_time) {
                skipped[SKIP_MODE1_NO_TIME]++; /* difference 1 */
            } else if (t->last_of_time) {
                CHECK(f == NULL || !f->valid);
                nofix_agreed++;
            } else {
                /* A later TPV of the same time reports a fix: that one is compared. */
                skipped[SKIP_NOFIX_SUPERSEDED]++;
            }
        } else if (!t->has_pos) {
            skipped[SKIP_NO_POSITION]++;
        } else if (!t->has_time) {
            /* Difference 2: some fix of ours must have this position. */
            bool found = false;
            for (int j = 0; j < n_fixes && !found; j++) {
                found = near_position(&fixes[j], t);
            }
            CHECK(found);
            skipped[SKIP_NO_DATE_YET]++;
        } else {
            CHECK(f != NULL);
            if (f == NULL) {
                print_time(stderr, "  no fix of ours at", t->time_ms);
                fprintf(stderr, "\n");
                continue;
            }
            CHECK_NEAR(f->lat, t->lat, LAT_LON_EPS);
            CHECK_NEAR(f->lon, t->lon, LAT_LON_EPS);
            if (f->time_ms == t->time_ms) {
                exact_times++;
            }
            if (t->last_of_time) {
                CHECK(f->valid);
                if (t->has_alt) {
                    CHECK(f->fields & GR_FIX_ALT);
                    CHECK_NEAR(f->alt, t->alt, ALT_EPS);
                    alts++;
                }
            } else if (!f->valid) {
                skipped[SKIP_SUPERSEDED]++; /* difference 5 */
            }
            if (t->has_track) {
                CHECK((f->fields & GR_FIX_SPEED) && (f->fields & GR_FIX_COURSE));
                CHECK_NEAR(f->speed, t->speed, SPEED_EPS);
                CHECK(course_diff(f->course, t->track) <= COURSE_EPS);
                speeds++;
                tracks++;
            } else if (t->has_speed) {
                /*
                 * Difference 4: without a track, gpsd's speed may be its own, derived from
                 * positions before the cycle's RMC/VTG came. Its last word for the time is
                 * compared when we have a speed.
                 */
                if (!t->last_of_time) {
                    skipped[SKIP_PARTIAL_SPEED]++;
                } else if (f->fields & GR_FIX_SPEED) {
                    CHECK_NEAR(f->speed, t->speed, SPEED_EPS);
                    speeds++;
                } else {
                    skipped[SKIP_DERIVED_SPEED]++;
                }
            }
            matched++;
        }
        if (check_failures != failures) {
            fprintf(stderr, "  %s: TPV %d (mode %d)", name, i, t->mode);
            if (t->has_time) {
                print_time(stderr, " at", t->time_ms);
            }
            if (f != NULL) {
                fprintf(stderr, ": ours %.9f %.9f valid %d speed %.3f course %.4f", f->lat, f->lon,
                        f->valid, f->speed, f->course);
            }
            fprintf(stderr, "\n");
        }
    }

    /* Fixes of ours that gpsd never reported (difference 6). */
    int extra = 0;
    for (int j = 0; j < n_fixes; j++) {
        bool reported = false;
        for (int i = 0; i < n_tpv && !reported; i++) {
            reported = tpv[i].has_time && same_time(tpv[i].time_ms, fixes[j].time_ms);
        }
        if (!reported) {
            extra++;
            printf("  %s: extra fix of ours:", name);
            print_time(stdout, "", fixes[j].time_ms);
            printf(" %.9f %.9f valid %d\n", fixes[j].lat, fixes[j].lon, fixes[j].valid);
        }
    }
    int expected = 0;
    for (size_t k = 0; k < sizeof(expected_extra) / sizeof(expected_extra[0]); k++) {
        if (strcmp(expected_extra[k].log, name) == 0) {
            expected = expected_extra[k].extra;
        }
    }
    CHECK_INT(extra, expected);
    /*
     * With now_ms from gpsd's clock, a pre-rollover date is exactly 1024 weeks before the
     * receive time, so our rollover correction must give gpsd's times without the modulo
     * (difference 3): magellan-ec10 and triton400 exercise it on real data.
     */
    CHECK_INT(exact_times, matched);

    printf("%s: %d sentences (%d ok, %d unsupported, %d rejected), %d fixes of ours\n", name,
           sentences, reasons[GR_OK], reasons[GR_UNSUPPORTED],
           sentences - reasons[GR_OK] - reasons[GR_UNSUPPORTED], n_fixes);
    printf("  gpsd TPVs %d: matched %d (exact times %d, speed %d, track %d, alt %d), "
           "no-fix agreed %d, extra fixes of ours %d\n",
           n_tpv, matched, exact_times, speeds, tracks, alts, nofix_agreed, extra);
    for (int k = 0; k < SKIP_COUNT; k++) {
        if (skipped[k] > 0) {
            printf("  skipped: %s: %d\n", skip_names[k], skipped[k]);
        }
    }
    printf("  %s\n", check_failures == failures_before ? "ok" : "FAILED");
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s tests/data/gpsd\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (d == NULL) {
        fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
        return 2;
    }
    char *names[MAX_LOGS];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX_LOGS) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".log") == 0) {
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(names[0]), compare_names);
    CHECK(n >= 6); /* the six captures of tests/data/gpsd */
    for (int i = 0; i < n; i++) {
        run_log(argv[1], names[i]);
        free(names[i]);
    }
    return check_result("test_golden");
}
