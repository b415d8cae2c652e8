/*
 * mapping.c - the device-to-agency mapping, from CSV or row by row
 * (docs/mapping.md).
 *
 * Every source goes through the builder: rows are checked as they are added, then sorted
 * by (device, agency) at the end, where conflicts show up as neighbours; a device is a run
 * of rows, and its agencies are that run, already sorted.
 *
 * Strings live in the mapping. The CSV loader reads the whole file into one buffer and
 * parses it in place (fields are unquoted and NUL-terminated where they lie), and hands
 * that buffer to the builder, which keeps pointers into it. Rows added through the public
 * builder (PostgreSQL) are copied into blocks of an append-only arena, so no pointer ever
 * moves.
 */
#include "gpsrelay/mapping.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpsrelay/file.h"
#include "gpsrelay/report.h"

#define GR_MAPPING_HEADER "device_id,agency_id,label,source_addr"
#define GR_MAPPING_FIELDS 4

/* A large fleet with mutual aid is tens of thousands of rows; a million is a runaway. */
#define GR_MAPPING_ROWS_MAX 1000000

/* Arena block size: a few hundred rows of copied strings per malloc. */
#define GR_MAPPING_BLOCK_SIZE (16u * 1024)

/* Builder's first row array; it doubles from there. */
#define GR_MAPPING_ROWS_INITIAL 64

/* A block of copied strings; blocks are never moved or grown, only chained. */
struct gr_block {
    struct gr_block *next;
    size_t used, cap;
    char data[];
};

struct gr_mapping {
    char *text;                /* a CSV file parsed in place, or NULL: strings point here... */
    struct gr_block *strings;  /* ...or here, for rows added with copies */
    struct gr_device *devices; /* sorted by id */
    size_t n_devices;
    const char **agencies;            /* parallel to the sorted rows: one run per device */
    const struct gr_device **by_addr; /* devices with a source_addr, by (family, address) */
    size_t n_by_addr;
};

struct gr_row {
    const char *device, *agency, *label;
    int line;
    bool has_addr;
    int family;
    unsigned char addr[16];
};

struct gr_mapping_builder {
    struct gr_mapping *m; /* under construction: owns the strings already */
    struct gr_row *rows;
    size_t n_rows, cap_rows;
};

/* Where errors go. A CSV file names itself and the line; the public builder names
 * nothing (path NULL), its caller adds context. */
struct gr_csv {
    const char *path;
    int line; /* 0 while the problem is with the whole file; the row number otherwise */
    char *err;
    size_t errlen;
    int error; /* the errno of the last failure: EINVAL for the content, ENOMEM */
    /* Set: a conflict between rows is not an error; what is left out is reported here
     * (gr_mapping_builder_finish_skipping). */
    void (*skipped)(void *ctx, const char *why);
    void *skipped_ctx;
};

/* Says what is wrong with the rows; returns -EINVAL, for "return fail()". */
__attribute__((format(printf, 2, 3))) static int fail(struct gr_csv *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (c->path != NULL)
        gr_file_verror(c->err, c->errlen, c->path, c->line, fmt, ap);
    else if (c->errlen > 0)
        vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    c->error = EINVAL;
    return -EINVAL;
}

/* Out of memory: said as such, -ENOMEM. */
static int fail_oom(struct gr_csv *c)
{
    fail(c, "out of memory");
    c->error = ENOMEM;
    return -ENOMEM;
}

/*
 * Splits the record [p, end) into NUL-terminated fields, RFC 4180 style: a field may be
 * quoted, with "" for a quote inside. *end must be writable. Returns the number of fields
 * (the first max are stored), or -1.
 */
static int split_fields(struct gr_csv *c, char *p, char *end, char **fields, int max)
{
    int n = 0;

    for (;;) {
        char *start = p, *out = p;
        if (p < end && *p == '"') {
            for (p++;; p++) {
                if (p == end)
                    return fail(c, "unterminated quote");
                if (*p == '"' && (p + 1 == end || p[1] != '"'))
                    break;
                if (*p == '"')
                    p++;
                *out++ = *p;
            }
            p++;
            if (p < end && *p != ',')
                return fail(c, "text right after a closing quote");
        } else {
            for (; p < end && *p != ','; p++) {
                if (*p == '"')
                    return fail(c, "quote inside an unquoted field");
            }
            out = p;
        }

        /* The terminator may land on the comma (out == p): look at it first. */
        bool last = p == end;
        *out = '\0';
        if (n < max)
            fields[n] = start;
        n++;
        if (last)
            return n;
        p++;
    }
}

/* Whether s is UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
 * Labels go to consoles inside JSON text frames, which must be UTF-8: a WebSocket client
 * fails the connection on a frame that is not, and the LongPoll answer cannot hold it. */
static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        uint32_t c = *p, min;
        size_t n; /* continuation bytes */
        if (c < 0x80) {
            p++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        for (size_t k = 1; k <= n; k++) { /* the terminating NUL fails this too */
            if ((p[k] & 0xc0) != 0x80)
                return false;
            c = c << 6 | (p[k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}

/* 1 to max bytes of ASCII letters, digits and the characters of extra. */
static bool valid_id(const char *s, size_t max, const char *extra)
{
    size_t len = strlen(s);

    if (len == 0 || len > max)
        return false;
    for (; *s != '\0'; s++) {
        bool alnum =
            (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9');
        if (!alnum && strchr(extra, *s) == NULL)
            return false;
    }
    return true;
}

/* An IPv4-mapped IPv6 address (::ffff:10.0.0.7) is the IPv4 address: a dual-stack socket
 * reports IPv4 senders that way, and the CSV may write either form. */
static void unmap_v4(int *family, unsigned char addr[16])
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (*family == AF_INET6 && memcmp(addr, prefix, sizeof(prefix)) == 0) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = AF_INET;
    }
}

/* A copy of s in m's arena, or NULL when out of memory. */
static const char *arena_dup(struct gr_mapping *m, const char *s)
{
    size_t len = strlen(s) + 1;
    struct gr_block *b = m->strings;
    char *p;

    if (b == NULL || b->cap - b->used < len) {
        size_t cap = len > GR_MAPPING_BLOCK_SIZE ? len : GR_MAPPING_BLOCK_SIZE;
        b = malloc(sizeof(*b) + cap);
        if (b == NULL)
            return NULL;
        *b = (struct gr_block){.next = m->strings, .cap = cap};
        m->strings = b;
    }
    p = b->data + b->used;
    memcpy(p, s, len);
    b->used += len;
    return p;
}

static int reserve_rows(struct gr_mapping_builder *b, size_t want)
{
    struct gr_row *grown;

    if (want <= b->cap_rows)
        return 0;
    grown = realloc(b->rows, want * sizeof(*b->rows));
    if (grown == NULL)
        return -ENOMEM;
    b->rows = grown;
    b->cap_rows = want;
    return 0;
}

/*
 * The checks every row gets, whatever its source; errors go to c, at c->line. With copy,
 * the strings are copied into the arena; without, they must live in b->m->text.
 */
static int add_row(struct gr_mapping_builder *b, struct gr_csv *c, const char *device,
                   const char *agency, const char *label, const char *addr, bool copy)
{
    struct gr_row r = {.device = device, .agency = agency, .label = label, .line = c->line};

    if (b->n_rows == GR_MAPPING_ROWS_MAX)
        return fail(c, "more than %d rows", GR_MAPPING_ROWS_MAX);
    /* Device ids come from modems (serials, IMEIs, "unit@agency"); agency ids end up in
     * topic names "agency:<id>", so they get no ':' or '@'. */
    if (!valid_id(device, GR_DEVICE_ID_MAX, "-_.:@"))
        return fail(c, "bad device_id \"%s\": expected 1 to %d letters, digits or - _ . : @",
                    device, GR_DEVICE_ID_MAX);
    if (!valid_id(agency, GR_AGENCY_ID_MAX, "-_."))
        return fail(c, "bad agency_id \"%s\": expected 1 to %d letters, digits or - _ .", agency,
                    GR_AGENCY_ID_MAX);
    if (strlen(label) > GR_LABEL_MAX)
        return fail(c, "label longer than %d bytes", GR_LABEL_MAX);
    /* A CSV line cannot hold one, so neither can a mapping: gr_mapping_save_csv must be able
     * to write whatever was built. */
    if (strpbrk(label, "\r\n") != NULL)
        return fail(c, "label contains a line break");
    if (!valid_utf8(label))
        return fail(c, "label is not UTF-8");

    if (*addr != '\0') {
        r.has_addr = true;
        r.family = AF_INET;
        if (inet_pton(AF_INET, addr, r.addr) != 1) {
            r.family = AF_INET6;
            if (inet_pton(AF_INET6, addr, r.addr) != 1)
                return fail(c, "bad source_addr \"%s\": expected a numeric IPv4 or IPv6 address",
                            addr);
            unmap_v4(&r.family, r.addr);
        }
    }

    if (b->n_rows == b->cap_rows &&
        reserve_rows(b, b->cap_rows == 0 ? GR_MAPPING_ROWS_INITIAL : b->cap_rows * 2) < 0)
        return fail_oom(c);
    if (copy) {
        /* Rows usually come grouped by device (ORDER BY): share the previous row's copies. */
        const struct gr_row *prev = b->n_rows > 0 ? &b->rows[b->n_rows - 1] : NULL;
        if (prev != NULL && strcmp(prev->device, device) == 0) {
            r.device = prev->device;
            if (strcmp(prev->label, label) == 0)
                r.label = prev->label;
        }
        if ((r.device == device && (r.device = arena_dup(b->m, device)) == NULL) ||
            (r.agency = arena_dup(b->m, agency)) == NULL ||
            (r.label == label && (r.label = arena_dup(b->m, label)) == NULL))
            return fail_oom(c);
    }
    b->rows[b->n_rows++] = r;
    return 0;
}

/* One CSV record [p, end), split in place, into the builder. */
static int parse_row(struct gr_csv *c, char *p, char *end, struct gr_mapping_builder *b)
{
    char *f[GR_MAPPING_FIELDS];
    int n = split_fields(c, p, end, f, GR_MAPPING_FIELDS);

    if (n < 0)
        return n;
    if (n != GR_MAPPING_FIELDS)
        return fail(c, "expected %d fields (" GR_MAPPING_HEADER "), got %d", GR_MAPPING_FIELDS, n);
    return add_row(b, c, f[0], f[1], f[2], f[3], false);
}

/* Adds the rows of the file text to b. */
static int parse_rows(struct gr_csv *c, char *p, char *end, struct gr_mapping_builder *b)
{
    /* Windows editors start UTF-8 files with a byte order mark. */
    if (end - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3;
    if (p == end)
        return fail(c, "empty file; expected the header \"" GR_MAPPING_HEADER "\"");

    for (c->line = 1; p < end; c->line++) {
        char *eol = memchr(p, '\n', (size_t)(end - p)), *next;
        next = eol != NULL ? eol + 1 : end;
        if (eol == NULL)
            eol = end;
        if (eol > p && eol[-1] == '\r')
            eol--;
        if (memchr(p, '\0', (size_t)(eol - p)) != NULL)
            return fail(c, "NUL byte in line");

        if (c->line == 1) {
            if ((size_t)(eol - p) != strlen(GR_MAPPING_HEADER) ||
                memcmp(p, GR_MAPPING_HEADER, (size_t)(eol - p)) != 0)
                return fail(c, "expected the header \"" GR_MAPPING_HEADER "\"");
        } else if (eol > p) {
            if (b->n_rows == GR_MAPPING_ROWS_MAX)
                return fail(c, "more than %d rows", GR_MAPPING_ROWS_MAX);
            int rc = parse_row(c, p, eol, b);
            if (rc < 0)
                return rc;
        }
        p = next;
    }
    return 0;
}

static int cmp_rows(const void *a, const void *b)
{
    const struct gr_row *x = a, *y = b;
    int c = strcmp(x->device, y->device);

    if (c == 0)
        c = strcmp(x->agency, y->agency);
    return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

static int cmp_addr(const void *a, const void *b)
{
    const struct gr_device *x = *(const struct gr_device *const *)a;
    const struct gr_device *y = *(const struct gr_device *const *)b;

    if (x->source_family != y->source_family)
        return x->source_family < y->source_family ? -1 : 1;
    return memcmp(x->source_addr, y->source_addr, sizeof(x->source_addr));
}

static bool same_addr(const struct gr_row *a, const struct gr_row *b)
{
    return a->has_addr == b->has_addr &&
           (!a->has_addr ||
            (a->family == b->family && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0));
}

/* Two rows that cannot both stand: report at the later one, naming the earlier (by line
 * in a file; rows without a file have no position worth naming). */
static int conflict(struct gr_csv *c, const struct gr_row *a, const struct gr_row *b,
                    const char *what)
{
    const struct gr_row *early = a->line < b->line ? a : b, *late = early == a ? b : a;

    c->line = late->line;
    if (c->path == NULL && strcmp(a->device, b->device) == 0)
        return fail(c, "device \"%s\" has a different %s in another row", late->device, what);
    if (c->path == NULL)
        return fail(c, "device \"%s\" has the same %s as device \"%s\"", late->device, what,
                    early->device);
    if (strcmp(a->device, b->device) == 0)
        return fail(c, "device \"%s\" has a different %s on line %d", late->device, what,
                    early->line);
    return fail(c, "device \"%s\" has the same %s as device \"%s\" on line %d", late->device, what,
                early->device, early->line);
}

/* Groups the rows (sorted by cmp_rows) into devices; m->agencies stays parallel to rows. */
static int build(struct gr_csv *c, struct gr_mapping *m, struct gr_row *rows, size_t n)
{
    const struct gr_row *first = NULL; /* the first row of the current device's run */
    struct gr_device *d = NULL;

    /* n + 1: an empty mapping still gets arrays, so lookups need no special case. */
    m->agencies = malloc((n + 1) * sizeof(*m->agencies));
    m->devices = calloc(n + 1, sizeof(*m->devices));
    m->by_addr = malloc((n + 1) * sizeof(*m->by_addr));
    if (m->agencies == NULL || m->devices == NULL || m->by_addr == NULL)
        return fail_oom(c);

    for (size_t i = 0; i < n; i++) {
        const struct gr_row *r = &rows[i];
        if (first == NULL || strcmp(r->device, first->device) != 0) {
            first = r;
            d = &m->devices[m->n_devices++];
            *d = (struct gr_device){.id = r->device,
                                    .label = r->label,
                                    .agencies = &m->agencies[i],
                                    .has_source_addr = r->has_addr,
                                    .source_family = r->family};
            memcpy(d->source_addr, r->addr, sizeof(d->source_addr));
            if (r->has_addr)
                m->by_addr[m->n_by_addr++] = d;
        } else if (strcmp(r->agency, rows[i - 1].agency) == 0) {
            c->line = r->line; /* same agency sorts by line: rows[i - 1] came first */
            if (c->path == NULL)
                return fail(c, "duplicate row for device \"%s\" and agency \"%s\"", r->device,
                            r->agency);
            return fail(c, "duplicate row for device \"%s\" and agency \"%s\" (first on line %d)",
                        r->device, r->agency, rows[i - 1].line);
        } else if (strcmp(r->label, first->label) != 0) {
            return conflict(c, first, r, "label");
        } else if (!same_addr(r, first)) {
            return conflict(c, first, r, "source_addr");
        }
        m->agencies[i] = r->agency;
        d->n_agencies++;
    }

    qsort(m->by_addr, m->n_by_addr, sizeof(*m->by_addr), cmp_addr);
    for (size_t i = 1; i < m->n_by_addr; i++) {
        /* A device's rows are the run of rows that its agencies are parallel to. */
        if (cmp_addr(&m->by_addr[i - 1], &m->by_addr[i]) == 0)
            return conflict(c, &rows[m->by_addr[i - 1]->agencies - m->agencies],
                            &rows[m->by_addr[i]->agencies - m->agencies], "source_addr");
    }
    return 0;
}

__attribute__((format(printf, 2, 3))) static void skip(struct gr_csv *c, const char *fmt, ...)
{
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    c->skipped(c->skipped_ctx, why);
}

/* The end of the run of rows of rows[i]'s device, in rows sorted by cmp_rows. */
static size_t device_end(const struct gr_row *rows, size_t i, size_t n)
{
    size_t j = i + 1;

    while (j < n && strcmp(rows[j].device, rows[i].device) == 0)
        j++;
    return j;
}

static const char *addr_text(const struct gr_row *r, char buf[INET6_ADDRSTRLEN])
{
    return inet_ntop(r->family, r->addr, buf, INET6_ADDRSTRLEN) != NULL ? buf : "?";
}

static int cmp_row_addr(const void *a, const void *b)
{
    const struct gr_row *x = *(const struct gr_row *const *)a;
    const struct gr_row *y = *(const struct gr_row *const *)b;

    if (x->family != y->family)
        return x->family < y->family ? -1 : 1;
    return memcmp(x->addr, y->addr, sizeof(x->addr));
}

/*
 * Leaves out of the sorted rows what build() would refuse, reporting each to c->skipped,
 * so that one bad row cannot refuse a whole mapping. A repeated device-agency pair and a
 * row giving its device another label than the device's first row are dropped. A device
 * whose rows disagree on its source_addr, and every device sharing a source_addr with
 * another, lose it: a position from that address is then attributed to no device rather
 * than maybe the wrong one (the device keeps its agencies and its reports by id). *n
 * becomes the rows kept. Returns 0, or -1 when out of memory.
 */
static int skip_conflicts(struct gr_csv *c, struct gr_row *rows, size_t *n)
{
    char a1[INET6_ADDRSTRLEN];
    size_t kept = 0, n_addr = 0;

    for (size_t i = 0, end; i < *n; i = end) {
        size_t first = kept;
        bool two_addrs = false;
        end = device_end(rows, i, *n);
        for (size_t j = i; j < end; j++) {
            const struct gr_row *r = &rows[j];
            if (j > i && strcmp(r->agency, rows[kept - 1].agency) == 0) {
                skip(c, "device \"%s\", agency \"%s\": a duplicate row; left out", r->device,
                     r->agency);
                continue;
            }
            if (j > i && strcmp(r->label, rows[first].label) != 0) {
                skip(c,
                     "device \"%s\", agency \"%s\": another label than in its other rows; "
                     "left out",
                     r->device, r->agency);
                continue;
            }
            two_addrs |= j > i && !same_addr(r, &rows[first]);
            rows[kept++] = *r;
        }
        if (two_addrs) {
            skip(c, "device \"%s\": rows with different source_addr values; it keeps none",
                 rows[first].device);
            for (size_t j = first; j < kept; j++)
                rows[j].has_addr = false;
        }
        n_addr += rows[first].has_addr;
    }
    *n = kept;
    if (n_addr < 2)
        return 0;

    /* Each device's first row, by address: devices sharing one are neighbours. */
    const struct gr_row **by_addr = malloc(n_addr * sizeof(*by_addr));
    if (by_addr == NULL)
        return fail_oom(c);
    n_addr = 0;
    for (size_t i = 0; i < kept; i = device_end(rows, i, kept))
        if (rows[i].has_addr)
            by_addr[n_addr++] = &rows[i];
    qsort(by_addr, n_addr, sizeof(*by_addr), cmp_row_addr);
    for (size_t i = 0, end; i < n_addr; i = end) {
        for (end = i + 1; end < n_addr && cmp_row_addr(&by_addr[i], &by_addr[end]) == 0; end++)
            ;
        for (size_t j = i; j < end && end - i > 1; j++) {
            skip(c, "device \"%s\": source_addr %s is also device \"%s\"'s; neither keeps it",
                 by_addr[j]->device, addr_text(by_addr[j], a1),
                 by_addr[j == i ? i + 1 : i]->device);
            /* has_addr only: the comparisons read family and addr, which stay. */
            size_t at = (size_t)(by_addr[j] - rows);
            for (size_t k = at, stop = device_end(rows, at, kept); k < stop; k++)
                rows[k].has_addr = false;
        }
    }
    free(by_addr);
    return 0;
}

struct gr_mapping_builder *gr_mapping_builder_new(void)
{
    struct gr_mapping_builder *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->m = calloc(1, sizeof(*b->m));
    if (b->m == NULL) {
        free(b);
        return NULL;
    }
    return b;
}

void gr_mapping_builder_free(struct gr_mapping_builder *b)
{
    if (b == NULL)
        return;
    gr_mapping_free(b->m);
    free(b->rows);
    free(b);
}

int gr_mapping_builder_add(struct gr_mapping_builder *b, const char *device_id,
                           const char *agency_id, const char *label, const char *source_addr,
                           char *err, size_t errlen)
{
    /* line: the row's number, which orders conflicts; it never shows in a message. */
    struct gr_csv c = {.line = (int)b->n_rows + 1, .err = err, .errlen = errlen};

    return add_row(b, &c, device_id != NULL ? device_id : "", agency_id != NULL ? agency_id : "",
                   label != NULL ? label : "", source_addr != NULL ? source_addr : "", true);
}

/* Takes b; the mapping or NULL with the error in c. */
static struct gr_mapping *finish(struct gr_mapping_builder *b, struct gr_csv *c)
{
    struct gr_mapping *m = b->m;

    if (b->n_rows > 0) /* rows may be NULL then, and qsort wants a pointer */
        qsort(b->rows, b->n_rows, sizeof(*b->rows), cmp_rows);
    if ((c->skipped != NULL && skip_conflicts(c, b->rows, &b->n_rows) < 0) ||
        build(c, m, b->rows, b->n_rows) < 0) {
        gr_mapping_builder_free(b);
        return NULL;
    }
    b->m = NULL;
    gr_mapping_builder_free(b);
    return m;
}

struct gr_mapping *gr_mapping_builder_finish(struct gr_mapping_builder *b, char *err, size_t errlen)
{
    struct gr_csv c = {.err = err, .errlen = errlen};

    return finish(b, &c);
}

struct gr_mapping *gr_mapping_builder_finish_skipping(struct gr_mapping_builder *b,
                                                      void (*skipped)(void *ctx, const char *why),
                                                      void *ctx, char *err, size_t errlen)
{
    struct gr_csv c = {.err = err, .errlen = errlen, .skipped = skipped, .skipped_ctx = ctx};

    return finish(b, &c);
}

int gr_mapping_load_csv(const char *path, struct gr_mapping **out, char *err, size_t errlen)
{
    struct gr_csv c = {.path = path, .err = err, .errlen = errlen};
    struct gr_mapping_builder *b;
    char *text;
    size_t len = 0, lines = 1;
    int rc;

    *out = NULL;
    b = gr_mapping_builder_new();
    if (b == NULL)
        return fail_oom(&c);
    /* Refuses a FIFO (which would hold the reader until a writer came) and anything over
     * GR_MAPPING_FILE_MAX, with file.h's "path: why". */
    if ((rc = gr_file_read(path, GR_MAPPING_FILE_MAX, &b->m->text, &len, err, errlen)) < 0)
        goto fail;
    text = b->m->text;

    /* Rows are at most the lines after the header, and at most GR_MAPPING_ROWS_MAX. */
    for (char *q = text; (q = memchr(q, '\n', (size_t)(text + len - q))) != NULL; q++)
        lines++;
    if (reserve_rows(b, lines < GR_MAPPING_ROWS_MAX ? lines : GR_MAPPING_ROWS_MAX) < 0) {
        rc = fail_oom(&c);
        goto fail;
    }
    if ((rc = parse_rows(&c, text, text + len, b)) < 0)
        goto fail;
    *out = finish(b, &c);
    return *out != NULL ? 0 : -c.error;

fail:
    gr_mapping_builder_free(b);
    return rc;
}

/* One CSV field, quoted when it holds a comma or a quote (the reader's RFC 4180 rules). */
static void put_field(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s != '\0'; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void put_rows(FILE *f, const struct gr_mapping *m)
{
    char addr[INET6_ADDRSTRLEN];

    fputs(GR_MAPPING_HEADER "\n", f);
    for (size_t i = 0; i < m->n_devices; i++) {
        const struct gr_device *d = &m->devices[i];
        addr[0] = '\0';
        if (d->has_source_addr &&
            inet_ntop(d->source_family, d->source_addr, addr, sizeof(addr)) == NULL)
            addr[0] = '\0'; /* cannot happen: AF_INET or AF_INET6 with a big enough buffer */
        for (size_t j = 0; j < d->n_agencies; j++) {
            put_field(f, d->id);
            fputc(',', f);
            put_field(f, d->agencies[j]);
            fputc(',', f);
            put_field(f, d->label);
            fputc(',', f);
            fputs(addr, f);
            fputc('\n', f);
        }
    }
}

/* fsync of the directory holding path, so that the rename itself survives a crash.
 * Returns 0, or a negative errno. */
static int sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int fd, rc;

    if (slash == NULL)
        dir = strdup(".");
    else
        dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
    if (dir == NULL)
        return -ENOMEM;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -errno;
    rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* A step of writing the file failed with err (an errno): says which, returns -err. */
__attribute__((format(printf, 3, 4))) static int fail_io(struct gr_csv *c, int err, const char *fmt,
                                                         ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    fail(c, "%s", what);
    return -err;
}

int gr_mapping_save_csv(const struct gr_mapping *m, const char *path, char *err, size_t errlen)
{
    struct gr_csv c = {.path = path, .err = err, .errlen = errlen};
    size_t len = strlen(path);
    char *tmp = malloc(len + sizeof(GR_MAPPING_TMP_SUFFIX));
    FILE *f;
    int fd, rc;

    if (tmp == NULL)
        return fail_oom(&c);
    /* Same directory, so rename() is atomic. One fixed name, not mkostemp's random one: a
     * write cut short (the daemon killed between open and rename) leaves this one file,
     * which the next write truncates and reuses, where random names left one more file per
     * kill, forever. O_NOFOLLOW: a symlink planted under the name is refused, not written
     * through. 0600: the cache is the daemon's own. One writer per path at a time
     * (mapping.h), so nobody else is writing this file. */
    memcpy(tmp, path, len);
    memcpy(tmp + len, GR_MAPPING_TMP_SUFFIX, sizeof(GR_MAPPING_TMP_SUFFIX));
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = fail_io(&c, errno, "cannot create a temporary file: %s", strerror(errno));
        free(tmp);
        return rc;
    }
    f = fdopen(fd, "w");
    if (f == NULL) {
        rc = fail_io(&c, errno, "fdopen: %s", strerror(errno));
        close(fd);
        goto fail;
    }

    put_rows(f, m);
    /* Errors of buffered writes surface here; errno then is the one of the failed write. */
    errno = EIO;
    if (fflush(f) != 0 || ferror(f)) {
        rc = fail_io(&c, errno, "cannot write %s: %s", tmp, strerror(errno));
        fclose(f);
        goto fail;
    }
    if (fsync(fd) < 0) {
        rc = fail_io(&c, errno, "fsync %s: %s", tmp, strerror(errno));
        fclose(f);
        goto fail;
    }
    if (fclose(f) != 0) {
        rc = fail_io(&c, errno, "cannot write %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) < 0) {
        rc = fail_io(&c, errno, "cannot rename %s: %s", tmp, strerror(errno));
        goto fail;
    }
    free(tmp);
    if ((rc = sync_dir(path)) < 0)
        return fail_io(&c, -rc, "fsync of its directory: %s", strerror(-rc));
    return 0;

fail:
    unlink(tmp);
    free(tmp);
    return rc;
}

void gr_mapping_free(struct gr_mapping *m)
{
    if (m == NULL)
        return;
    free(m->by_addr);
    free(m->devices);
    free(m->agencies);
    free(m->text);
    for (struct gr_block *b = m->strings, *next; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    free(m);
}

struct gr_id_key {
    const char *id;
    size_t len;
};

/* Same order as strcmp() on the stored ids, for a key that is not NUL-terminated. */
static int cmp_id(const void *k, const void *e)
{
    const struct gr_id_key *key = k;
    const char *id = ((const struct gr_device *)e)->id;
    size_t len = strlen(id);
    int c = memcmp(key->id, id, key->len < len ? key->len : len);

    return c != 0 ? c : (key->len > len) - (key->len < len);
}

const struct gr_device *gr_mapping_find(const struct gr_mapping *m, const char *id, size_t id_len)
{
    struct gr_id_key key = {id, id_len};

    return bsearch(&key, m->devices, m->n_devices, sizeof(*m->devices), cmp_id);
}

const struct gr_device *gr_mapping_find_addr(const struct gr_mapping *m, const struct sockaddr *sa)
{
    struct gr_device key = {.source_family = sa->sa_family};
    const struct gr_device *kp = &key, *const * found;

    if (sa->sa_family == AF_INET)
        memcpy(key.source_addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    else if (sa->sa_family == AF_INET6)
        memcpy(key.source_addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    else
        return NULL;
    unmap_v4(&key.source_family, key.source_addr);
    found = bsearch(&kp, m->by_addr, m->n_by_addr, sizeof(*m->by_addr), cmp_addr);
    return found != NULL ? *found : NULL;
}

size_t gr_mapping_count(const struct gr_mapping *m)
{
    return m->n_devices;
}

const struct gr_device *gr_mapping_device(const struct gr_mapping *m, size_t i)
{
    return &m->devices[i];
}
