/*
 * decode_bench.c - ingest decoding throughput on one core (bench/run-decode.sh).
 *
 * A realistic mix: 100 devices ("AMB-<n>," prefix, as Cradlepoint's "prepend system id"
 * sends it) each sending one datagram per second holding an RMC and a GGA sentence with the
 * same time, 50 seconds of it: 10,000 distinct lines with varying positions, speeds,
 * courses, altitudes and correct checksums, generated up front and cycled. Modes:
 *
 *   frame+split               gr_frame_next + gr_report_split only (the floor)
 *   frame+split+nmea          + gr_nmea_decode
 *   frame+split+nmea+assemble + per-device gr_assemble_add, and gr_assemble_flush at the end
 *                               of each datagram (one fix per datagram)
 *
 * Each mode runs RUNS times for about SECONDS each; the table shows the median run, and
 * the slowest and fastest. Usage: decode_bench [SECONDS [RUNS]] (default 1 and 5).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpsrelay/assemble.h"
#include "gpsrelay/nmea.h"
#include "gpsrelay/report.h"

#define DEVICES      100
#define SECONDS      50 /* DEVICES * SECONDS datagrams of two lines: 10,000 lines */
#define DATAGRAMS    (DEVICES * SECONDS)
#define DATAGRAM_MAX 256 /* two lines of at most ~90 bytes each, plus CRLFs */

/* Receive time: 2026-11-23T18:20:01Z; the sentences are from 18:00:00 on that day. */
#define NOW_MS 1795458001000LL

/* Clock checks every this many datagrams: cheap against a run of about a second. */
#define CLOCK_EVERY 256

#define ID_SLOTS 256 /* open-addressing table for DEVICES ids: at most 40 % full */

struct datagram {
    char text[DATAGRAM_MAX];
    size_t len;
};

struct device {
    char id[16];
    size_t id_len;
    struct gr_assembler a;
};

static struct datagram datagrams[DATAGRAMS];
static struct device devices[DEVICES];
static int id_slots[ID_SLOTS]; /* index into devices + 1; 0 is empty */

/* Keeps results alive so the compiler cannot drop the decoding. */
static volatile double sink;

enum mode { MODE_SPLIT, MODE_NMEA, MODE_ASSEMBLE, MODE_COUNT };

static const char *const mode_names[MODE_COUNT] = {
    "frame+split",
    "frame+split+nmea",
    "frame+split+nmea+assemble",
};

/* xorshift32: the same "random" variation every run. */
static uint32_t next_random(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Appends "<prefix>$<body>*hh\r\n" with the body's checksum; returns the bytes written. */
static size_t put_sentence(char *out, size_t cap, const char *prefix, const char *body)
{
    unsigned sum = 0;

    for (const char *c = body; *c != '\0'; c++) {
        sum ^= (unsigned char)*c;
    }
    int n = snprintf(out, cap, "%s$%s*%02X\r\n", prefix, body, sum);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "decode_bench: datagram buffer too small\n");
        exit(1);
    }
    return (size_t)n;
}

/* ddmm.mmmmm from degrees (positive); the hemisphere is written by the caller. */
static void put_angle(char *out, size_t cap, double deg, int deg_digits)
{
    int d = (int)deg;
    double min = (deg - d) * 60.0;

    snprintf(out, cap, "%0*d%08.5f", deg_digits, d, min);
}

static void generate(void)
{
    uint32_t rnd = 2463534242u;

    for (int s = 0; s < SECONDS; s++) {
        for (int dev = 0; dev < DEVICES; dev++) {
            struct datagram *dg = &datagrams[s * DEVICES + dev];
            char prefix[24], body[160], lat[24], lon[24];
            /* Around New York, each unit on its own street, moving a little every second. */
            double la = 40.70 + dev * 0.0013 + s * 0.00004 + (next_random(&rnd) % 100) * 1e-7;
            double lo = 74.00 - dev * 0.0011 - s * 0.00005 - (next_random(&rnd) % 100) * 1e-7;
            double knots = (next_random(&rnd) % 600) / 10.0;
            double course = (next_random(&rnd) % 3600) / 10.0;
            int cs = (dev % 10) * 10; /* hundredths: modems do not all tick together */

            snprintf(prefix, sizeof(prefix), "AMB-%d,", dev + 1);
            put_angle(lat, sizeof(lat), la, 2);
            put_angle(lon, sizeof(lon), lo, 3);
            snprintf(body, sizeof(body),
                     "GPRMC,1800%02d.%02d,A,%s,N,%s,W,%.1f,%.1f,231126,13.0,W,A", s, cs, lat, lon,
                     knots, course);
            dg->len = put_sentence(dg->text, sizeof(dg->text), prefix, body);
            snprintf(body, sizeof(body),
                     "GPGGA,1800%02d.%02d,%s,N,%s,W,1,%02u,%.1f,%.1f,M,-34.2,M,,", s, cs, lat, lon,
                     5 + next_random(&rnd) % 8, 0.6 + (next_random(&rnd) % 20) / 10.0,
                     5.0 + (next_random(&rnd) % 900) / 10.0);
            dg->len += put_sentence(dg->text + dg->len, sizeof(dg->text) - dg->len, prefix, body);
        }
    }
    for (int dev = 0; dev < DEVICES; dev++) {
        devices[dev].id_len =
            (size_t)snprintf(devices[dev].id, sizeof(devices[dev].id), "AMB-%d", dev + 1);
    }
}

/* FNV-1a: what a daemon would use to find a device's state by id. */
static uint32_t hash_id(const char *id, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char)id[i]) * 16777619u;
    }
    return h;
}

static struct device *find_device(const char *id, size_t len, bool insert)
{
    for (uint32_t i = hash_id(id, len) % ID_SLOTS;; i = (i + 1) % ID_SLOTS) {
        int k = id_slots[i];
        if (k == 0) {
            if (!insert) {
                return NULL;
            }
            for (int dev = 0; dev < DEVICES; dev++) {
                if (devices[dev].id_len == len && memcmp(devices[dev].id, id, len) == 0) {
                    id_slots[i] = dev + 1;
                    return &devices[dev];
                }
            }
            return NULL;
        }
        struct device *d = &devices[k - 1];
        if (d->id_len == len && memcmp(d->id, id, len) == 0) {
            return d;
        }
    }
}

struct counts {
    uint64_t sentences; /* decoded (or, for MODE_SPLIT, split) */
    uint64_t fixes;
};

/* One datagram through the pipeline. Returns false when a sentence did not decode. */
static bool process(const struct datagram *dg, enum mode mode, struct counts *c)
{
    const char *line;
    size_t off = 0, line_len;
    struct device *last = NULL;
    struct gr_sentence s;
    struct gr_report rep;
    struct gr_fix fix;

    while (gr_frame_next(dg->text, dg->len, &off, &line, &line_len)) {
        if (line_len > GR_LINE_MAX || gr_report_split(line, line_len, &rep) != GR_OK) {
            return false;
        }
        if (mode == MODE_SPLIT) {
            c->sentences++;
            continue;
        }
        if (gr_nmea_decode(rep.body, rep.body_len, &s) != GR_OK) {
            return false;
        }
        c->sentences++;
        if (mode == MODE_NMEA) {
            sink = s.fix.lat;
            continue;
        }
        struct device *d = find_device(rep.id, rep.id_len, false);
        if (d == NULL) {
            return false;
        }
        if (last != NULL && last != d && gr_assemble_flush(&last->a, NOW_MS, &fix)) {
            c->fixes++;
            sink = fix.lat;
        }
        last = d;
        if (gr_assemble_add(&d->a, &s, NOW_MS, &fix)) {
            c->fixes++;
            sink = fix.lat;
        }
    }
    /* End of the datagram: what the device sent together is its fix now. */
    if (last != NULL && gr_assemble_flush(&last->a, NOW_MS, &fix)) {
        c->fixes++;
        sink = fix.lat;
    }
    return true;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct run {
    double sentences_per_s;
    double fixes_per_s;
};

static int cmp_runs(const void *a, const void *b)
{
    double x = ((const struct run *)a)->sentences_per_s;
    double y = ((const struct run *)b)->sentences_per_s;
    return (x > y) - (x < y);
}

static struct run run_once(enum mode mode, double seconds)
{
    struct counts c = {0, 0};
    uint64_t n = 0;
    double t0 = now_s(), t = 0;

    while (t < seconds) {
        process(&datagrams[n % DATAGRAMS], mode, &c);
        if (++n % CLOCK_EVERY == 0) {
            t = now_s() - t0;
        }
    }
    return (struct run){(double)c.sentences / t, (double)c.fixes / t};
}

/* Every datagram must decode and, assembled, give exactly one fix: else the numbers lie. */
static bool verify(void)
{
    for (enum mode m = 0; m < MODE_COUNT; m++) {
        struct counts c = {0, 0};
        for (int i = 0; i < DATAGRAMS; i++) {
            if (!process(&datagrams[i], m, &c)) {
                fprintf(stderr, "decode_bench: %s: datagram %d did not decode:\n%.*s",
                        mode_names[m], i, (int)datagrams[i].len, datagrams[i].text);
                return false;
            }
        }
        if (c.sentences != 2 * DATAGRAMS || (m == MODE_ASSEMBLE && c.fixes != DATAGRAMS)) {
            fprintf(stderr, "decode_bench: %s: %llu sentences and %llu fixes from %d datagrams\n",
                    mode_names[m], (unsigned long long)c.sentences, (unsigned long long)c.fixes,
                    DATAGRAMS);
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    int runs = argc > 2 ? atoi(argv[2]) : 5;

    if (argc > 3 || seconds <= 0 || runs < 1 || runs > 99) {
        fprintf(stderr, "usage: %s [SECONDS [RUNS]]   (1 to 99 runs)\n", argv[0]);
        return 2;
    }
    generate();
    for (int dev = 0; dev < DEVICES; dev++) {
        find_device(devices[dev].id, devices[dev].id_len, true);
    }
    if (!verify()) {
        return 1;
    }
#if defined(__SANITIZE_ADDRESS__)
    printf("warning: built with sanitizers; these numbers are not representative\n");
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    printf("warning: built with sanitizers; these numbers are not representative\n");
#endif
#endif

    printf("decode_bench: %d lines (%d devices x %d s, RMC+GGA per datagram), %d runs of "
           "%.1f s per mode, one thread\n\n",
           2 * DATAGRAMS, DEVICES, SECONDS, runs, seconds);
    printf("%-27s %14s %12s %14s %14s %12s\n", "mode", "sentences/s", "ns/sentence", "slowest/s",
           "fastest/s", "fixes/s");
    for (enum mode m = 0; m < MODE_COUNT; m++) {
        struct run r[99];
        for (int i = 0; i < runs; i++) {
            r[i] = run_once(m, seconds);
        }
        qsort(r, (size_t)runs, sizeof(r[0]), cmp_runs);
        struct run med = r[runs / 2];
        printf("%-27s %14.0f %12.1f %14.0f %14.0f", mode_names[m], med.sentences_per_s,
               1e9 / med.sentences_per_s, r[0].sentences_per_s, r[runs - 1].sentences_per_s);
        if (m == MODE_ASSEMBLE) {
            printf(" %12.0f\n", med.fixes_per_s);
        } else {
            printf(" %12s\n", "-");
        }
    }
    return 0;
}
