/*
 * fuzz_frame.c - the whole pure ingest pipeline on one payload (a datagram, or what one
 * read of a stream brought):
 *
 *   gr_frame_next -> gr_report_split -> decoder by first byte -> gr_assemble_add, and
 *   gr_assemble_flush for every device at the end of the payload.
 *
 * This is what ingest does with a payload, and the checks are what report.h, the decoder
 * headers and assemble.h promise along the way. The framer cuts ">RPV...<>RPV...<" into one
 * line per TAIP message; a line starting with '{' is a JSON report. Device identity follows
 * docs/ingest.md closely enough to give the assembler realistic streams: TAIP ;ID=, then the
 * prefix, then the last $DEVID/$PCPTI of the payload, else one anonymous device.
 */
#include <stdbool.h>

#include "fuzz.h"
#include "gpsrelay/assemble.h"
#include "gpsrelay/json_report.h"
#include "gpsrelay/nmea.h"
#include "gpsrelay/report.h"
#include "gpsrelay/taip.h"

/* Receive time of every payload: 2026-11-23T18:20:01Z, fixed so runs are reproducible. */
#define NOW_MS 1795458001000LL

#define DAY_MS 86400000LL

/* Devices with their own assembler; ids past these share the last one (still valid input). */
#define DEVICES_MAX 4

struct device {
    const char *id; /* NULL: the anonymous device */
    size_t id_len;
    struct gr_assembler a;
    /* Time of day of what is pending, to check the time of the fix handed out; -1 unknown. */
    int pending_tod_ms;
};

struct payload {
    struct device dev[DEVICES_MAX];
    size_t n_dev;
    const char *ident; /* from the last $DEVID/$PCPTI */
    size_t ident_len;
};

static struct device *find_device(struct payload *pl, const char *id, size_t id_len)
{
    for (size_t i = 0; i < pl->n_dev; i++) {
        struct device *d = &pl->dev[i];
        if ((d->id == NULL && id == NULL) || (d->id != NULL && id != NULL && d->id_len == id_len &&
                                              memcmp(d->id, id, id_len) == 0)) {
            return d;
        }
    }
    if (pl->n_dev == DEVICES_MAX) {
        return &pl->dev[DEVICES_MAX - 1];
    }
    struct device *d = &pl->dev[pl->n_dev++];
    memset(d, 0, sizeof(*d)); /* "all zero is a valid empty assembler" */
    d->id = id;
    d->id_len = id_len;
    d->pending_tod_ms = -1;
    return d;
}

/* A fix the assembler handed out: it has a position and a full UTC time. */
static void check_fix(const struct gr_fix *f, int tod_ms)
{
    FUZZ_CHECK(fuzz_finite(f->lat) && fuzz_finite(f->lon));
    FUZZ_CHECK(f->src == GR_SRC_NMEA || f->src == GR_SRC_TAIP);
    fuzz_check_fix_fields(f);
    FUZZ_CHECK(f->attrs == NULL);
    /*
     * The date is the sentence's, the device's last one moved on a day, or the receive
     * date, plus whole days for the rollover: never anything but whole days. Leap seconds
     * (23:59:60) are left to the assembler.
     */
    if (tod_ms >= 0 && tod_ms < DAY_MS) {
        int64_t rem = f->time_ms % DAY_MS;
        FUZZ_CHECK((rem < 0 ? rem + DAY_MS : rem) == tod_ms);
    }
}

static void flush_device(struct device *d)
{
    struct gr_fix fix;

    if (gr_assemble_flush(&d->a, NOW_MS, &fix)) {
        check_fix(&fix, d->pending_tod_ms);
        /* The pending fix was handed out: nothing is left to flush. */
        FUZZ_CHECK(!gr_assemble_flush(&d->a, NOW_MS, &fix));
    }
    d->pending_tod_ms = -1;
}

static void add_sentence(struct payload *pl, const struct gr_sentence *s,
                         const struct gr_report *rep)
{
    struct gr_fix fix;

    if (s->type == GR_SENT_DEVID || s->type == GR_SENT_PCPTI) {
        if (s->id != NULL) {
            pl->ident = s->id;
            pl->ident_len = s->id_len;
        }
        /* "identity-only sentences are ignored" */
        struct device *d = find_device(pl, pl->ident, pl->ident_len);
        FUZZ_CHECK(!gr_assemble_add(&d->a, s, NOW_MS, &fix));
        return;
    }

    const char *id = pl->ident;
    size_t id_len = pl->ident_len;
    if (s->id != NULL) {
        id = s->id;
        id_len = s->id_len;
    } else if (rep->id != NULL) {
        id = rep->id;
        id_len = rep->id_len;
    }
    struct device *d = find_device(pl, id, id_len);
    int before = d->pending_tod_ms;
    if (gr_assemble_add(&d->a, s, NOW_MS, &fix)) {
        check_fix(&fix, before);
        d->pending_tod_ms = -1;
    }
    /* Sentences without a time join what is pending; only a timed one says what that is. */
    if (s->has & GR_HAS_TIME) {
        d->pending_tod_ms = s->time_of_day_ms;
    }
}

static void nmea(struct payload *pl, const struct gr_report *rep)
{
    struct gr_sentence s;

    memset(&s, 0, sizeof(s));
    enum gr_reason r = gr_nmea_decode(rep->body, rep->body_len, &s);
    FUZZ_CHECK((unsigned)r < GR_REASON_COUNT);
    if (r == GR_OK) {
        fuzz_check_sentence(&s, rep->body, rep->body_len);
        add_sentence(pl, &s, rep);
    }
}

/* The framer cut ">RPV...<>RPV...<" into one message per line. */
static void taip(struct payload *pl, const struct gr_report *rep)
{
    struct gr_sentence s;

    memset(&s, 0, sizeof(s));
    enum gr_reason r = gr_taip_decode(rep->body, rep->body_len, &s);
    FUZZ_CHECK((unsigned)r < GR_REASON_COUNT);
    if (r == GR_OK) {
        FUZZ_CHECK(s.type == GR_SENT_TAIP_RPV);
        fuzz_check_sentence(&s, rep->body, rep->body_len);
        add_sentence(pl, &s, rep);
    }
}

static void json(const char *line, size_t len)
{
    static struct gr_json_report rep; /* 1.1 KB: not on the stack of every run */

    enum gr_reason r = gr_json_report_decode(line, len, &rep);
    FUZZ_CHECK((unsigned)r < GR_REASON_COUNT);
    if (r == GR_OK) {
        FUZZ_CHECK(memchr(rep.id, '\0', sizeof(rep.id)) != NULL);
        FUZZ_CHECK(fuzz_finite(rep.fix.lat) && fuzz_finite(rep.fix.lon));
        FUZZ_CHECK(rep.attrs_len <= GR_ATTRS_MAX);
    }
}

static bool is_start(char c)
{
    return c == '$' || c == '>';
}

/* What report.h promises about a split line, then the decoder by the body's first byte. */
static void handle_line(struct payload *pl, const char *line, size_t len)
{
    struct gr_report rep;

    enum gr_reason r = gr_report_split(line, len, &rep);
    FUZZ_CHECK(r == GR_OK || r == GR_MALFORMED || r == GR_BAD_ID);
    if (r != GR_OK) {
        return;
    }
    FUZZ_CHECK(rep.body >= line && rep.body < line + len);
    FUZZ_CHECK(rep.body + rep.body_len == line + len);

    const char *lead = line;
    while (*lead == ' ') {
        lead++; /* stops at the body at the latest */
    }
    if (*lead == '{') {
        /* "A line starting with '{' after spaces is a JSON report: no prefix, id NULL." */
        FUZZ_CHECK(rep.body == lead && rep.id == NULL);
        json(rep.body, rep.body_len);
        return;
    }

    /* The sentence starts at the last '$' or '>'; the prefix is what precedes the first. */
    FUZZ_CHECK(is_start(rep.body[0]));
    for (const char *c = rep.body + 1; c < line + len; c++) {
        FUZZ_CHECK(!is_start(*c));
    }
    const char *first = line;
    while (!is_start(*first)) {
        first++;
    }
    FUZZ_CHECK(rep.spliced == (first != rep.body));
    if (rep.id != NULL) {
        FUZZ_CHECK(rep.id_len >= 1 && rep.id_len <= GR_DEVICE_ID_MAX);
        FUZZ_CHECK(fuzz_inside(rep.id, rep.id_len, line, (size_t)(first - line)));
        for (size_t i = 0; i < rep.id_len; i++) {
            unsigned char c = (unsigned char)rep.id[i];
            FUZZ_CHECK(c >= 0x20 && c <= 0x7e); /* printable ASCII */
        }
    } else {
        FUZZ_CHECK(first == line); /* a prefix is an id or GR_BAD_ID */
    }

    if (rep.body[0] == '$') {
        nmea(pl, &rep);
    } else {
        taip(pl, &rep);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct payload pl; /* four assemblers: keep them off the stack */
    const char *p = (const char *)data, *line;
    size_t off = 0, line_len;

    memset(&pl, 0, sizeof(pl));

    for (;;) {
        size_t prev = off;
        if (!gr_frame_next(p, size, &off, &line, &line_len)) {
            FUZZ_CHECK(off == size); /* nothing left means everything was consumed */
            break;
        }
        /* Always advances, stays within len, and the line lies in what it stepped over. */
        FUZZ_CHECK(off > prev && off <= size);
        FUZZ_CHECK(line_len > 0 && line >= p + prev && line + line_len <= p + off);
        FUZZ_CHECK(memchr(line, '\r', line_len) == NULL && memchr(line, '\n', line_len) == NULL);
        /* A line that stops short of a line end is a TAIP message cut before the next '>'. */
        if (line + line_len < p + size && line[line_len] != '\r' && line[line_len] != '\n') {
            FUZZ_CHECK(line[line_len - 1] == '<' && line[line_len] == '>');
            FUZZ_CHECK(off == (size_t)(line + line_len - p));
        }
        if (line_len > GR_LINE_MAX) {
            continue; /* dropped and counted by ingest (docs/ingest.md) */
        }
        handle_line(&pl, line, line_len);
    }

    /* End of the payload: what each device sent together becomes its fix now. */
    for (size_t i = 0; i < pl.n_dev; i++) {
        flush_device(&pl.dev[i]);
    }
    return 0;
}
