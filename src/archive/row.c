/*
 * row.c - a position as a line of COPY's text format. See archive_row.h.
 */
#include "gpsrelay/archive_row.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gpsrelay/calendar.h"
#include "gpsrelay/format.h"

struct line {
    char *p;
    size_t room, len;
    bool full;
};

__attribute__((format(printf, 2, 3))) static void put(struct line *l, const char *fmt, ...)
{
    if (l->full)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->p + l->len, l->room - l->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= l->room - l->len)
        l->full = true;
    else
        l->len += (size_t)n;
}

/* s[0..n) as one COPY text value: backslash, tab, newline and carriage return escaped. */
/* n bytes as they are. */
static void put_bytes(struct line *l, const char *s, size_t n)
{
    if (l->full || n >= l->room - l->len) {
        l->full = true;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
    l->p[l->len] = '\0';
}

/* s[0..n) as one COPY text value: backslash, tab, newline and carriage return escaped;
 * the runs between them copied whole (an id or attrs is usually one run). */
static void put_text(struct line *l, const char *s, size_t n)
{
    while (n > 0 && !l->full) {
        size_t run = 0;
        while (run < n && s[run] != '\\' && s[run] != '\t' && s[run] != '\n' && s[run] != '\r')
            run++;
        put_bytes(l, s, run);
        if (run == n)
            return;
        static const char esc[] = {['\\'] = '\\', ['\t'] = 't', ['\n'] = 'n', ['\r'] = 'r'};
        char pair[2] = {'\\', esc[(unsigned char)s[run]]};
        put_bytes(l, pair, 2);
        s += run + 1;
        n -= run + 1;
    }
}

/* RFC 3339 UTC to the millisecond, which timestamptz reads whatever the session's TimeZone:
 * calendar.h's writer, the one every position's time goes through. */
static void put_time(struct line *l, int64_t ms)
{
    char t[GR_TIME_TEXT_MAX];
    gr_time_format(ms, t);
    put_bytes(l, t, strlen(t));
}

static void put_optional(struct line *l, const struct gr_fix *f, unsigned bit, double v)
{
    if (f->fields & bit)
        put(l, "\t%.17g", v);
    else
        put_bytes(l, "\t\\N", 3);
}

long gr_archive_row_encode(const struct gr_archive_row *r, char *out, size_t room)
{
    const struct gr_fix *f = r->fix;
    struct line l = {out, room, 0, room == 0};
    put_text(&l, r->device, strlen(r->device));
    put(&l, "\t");
    put_time(&l, f->time_ms);
    put(&l, "\t%.17g\t%.17g", f->lat, f->lon);
    put_optional(&l, f, GR_FIX_SPEED, f->speed);
    put_optional(&l, f, GR_FIX_COURSE, f->course);
    put_optional(&l, f, GR_FIX_ALT, f->alt);
    put_optional(&l, f, GR_FIX_HDOP, f->hdop);
    if (f->fields & GR_FIX_SATS)
        put(&l, "\t%d", f->sats);
    else
        put(&l, "\t\\N");
    put(&l, "\t%s\t", gr_source_name(f->src));
    if (f->attrs != NULL && f->attrs_len > 0)
        put_text(&l, f->attrs, f->attrs_len);
    else
        put(&l, "\\N");
    put(&l, "\t");
    put_time(&l, r->rx_ms);
    put(&l, "\t");
    put_text(&l, r->epoch, strlen(r->epoch));
    put(&l, "\t%llu\n", (unsigned long long)r->seq);
    return l.full ? -ENOSPC : (long)l.len;
}
