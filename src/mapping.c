/*
 * mapping.c - the device-to-agency mapping, loaded from CSV (SPEC section 7).
 *
 * The whole file is read into one buffer and parsed in place: fields are unquoted and
 * NUL-terminated where they lie, so that buffer is the mapping's string store and every
 * string of every struct gr_device points into it. Rows are sorted by (device, agency); a
 * device is a run of rows, and its agencies are that run, already sorted.
 */
#include "gpsrelay/mapping.h"

#include "gpsrelay/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpsrelay/report.h"

#define GR_MAPPING_HEADER "device_id,agency_id,label,source_addr"
#define GR_MAPPING_FIELDS 4

/* A large fleet with mutual aid is tens of thousands of rows; a million is a runaway. */
#define GR_MAPPING_ROWS_MAX 1000000

/* A million rows of ids, a long label and an IPv6 address stay well under this. */
#define GR_MAPPING_BYTES_MAX (256u << 20)

struct gr_mapping {
    char *text;                /* the file, parsed in place: all strings point here */
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

struct gr_csv {
    const char *path;
    int line; /* 0 while the problem is with the whole file */
    char *err;
    size_t errlen;
};

__attribute__((format(printf, 2, 3))) static int fail(struct gr_csv *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gr_file_verror(c->err, c->errlen, c->path, c->line, fmt, ap);
    va_end(ap);
    return -1;
}

/* The file into a new buffer, NUL-terminated. */
static int read_file(struct gr_csv *c, char **out, size_t *out_len)
{
    FILE *f = fopen(c->path, "rb");
    char *buf = NULL, *grown;
    size_t len = 0, cap = 0, got;

    if (f == NULL)
        return fail(c, "cannot open: %s", strerror(errno));
    do {
        if (len == cap) {
            if (cap == GR_MAPPING_BYTES_MAX) {
                fail(c, "larger than %u MiB", GR_MAPPING_BYTES_MAX >> 20);
                goto fail;
            }
            cap = cap == 0 ? 64 * 1024 : cap * 2;
            grown = realloc(buf, cap + 1);
            if (grown == NULL) {
                fail(c, "out of memory");
                goto fail;
            }
            buf = grown;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    if (ferror(f)) {
        fail(c, "read error: %s", strerror(errno));
        goto fail;
    }
    fclose(f);
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;

fail:
    free(buf);
    fclose(f);
    return -1;
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

static int parse_row(struct gr_csv *c, char *p, char *end, struct gr_row *r)
{
    char *f[GR_MAPPING_FIELDS];
    int n = split_fields(c, p, end, f, GR_MAPPING_FIELDS);

    if (n < 0)
        return -1;
    if (n != GR_MAPPING_FIELDS)
        return fail(c, "expected %d fields (" GR_MAPPING_HEADER "), got %d", GR_MAPPING_FIELDS, n);
    /* Device ids come from modems (serials, IMEIs, "unit@agency"); agency ids end up in
     * topic names "agency:<id>", so they get no ':' or '@'. */
    if (!valid_id(f[0], GR_DEVICE_ID_MAX, "-_.:@"))
        return fail(c, "bad device_id \"%s\": expected 1 to %d letters, digits or - _ . : @", f[0],
                    GR_DEVICE_ID_MAX);
    if (!valid_id(f[1], GR_AGENCY_ID_MAX, "-_."))
        return fail(c, "bad agency_id \"%s\": expected 1 to %d letters, digits or - _ .", f[1],
                    GR_AGENCY_ID_MAX);
    if (strlen(f[2]) > GR_LABEL_MAX)
        return fail(c, "label longer than %d bytes", GR_LABEL_MAX);

    *r = (struct gr_row){.device = f[0], .agency = f[1], .label = f[2], .line = c->line};
    if (*f[3] != '\0') {
        r->has_addr = true;
        r->family = AF_INET;
        if (inet_pton(AF_INET, f[3], r->addr) != 1) {
            r->family = AF_INET6;
            if (inet_pton(AF_INET6, f[3], r->addr) != 1)
                return fail(c, "bad source_addr \"%s\": expected a numeric IPv4 or IPv6 address",
                            f[3]);
            unmap_v4(&r->family, r->addr);
        }
    }
    return 0;
}

/* Fills rows (room for GR_MAPPING_ROWS_MAX at most) from the file text. */
static int parse_rows(struct gr_csv *c, char *p, char *end, struct gr_row *rows, size_t *n)
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
            if (*n == GR_MAPPING_ROWS_MAX)
                return fail(c, "more than %d rows", GR_MAPPING_ROWS_MAX);
            if (parse_row(c, p, eol, &rows[*n]) < 0)
                return -1;
            (*n)++;
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

/* Two rows that cannot both stand: report at the later one, naming the earlier. */
static int conflict(struct gr_csv *c, const struct gr_row *a, const struct gr_row *b,
                    const char *what)
{
    const struct gr_row *early = a->line < b->line ? a : b, *late = early == a ? b : a;

    c->line = late->line;
    if (strcmp(a->device, b->device) == 0)
        return fail(c, "device \"%s\" has a different %s on line %d", late->device, what,
                    early->line);
    return fail(c, "device \"%s\" has the same %s as device \"%s\" on line %d", late->device, what,
                early->device, early->line);
}

/* Groups the rows (sorted here) into devices; m->agencies stays parallel to rows. */
static int build(struct gr_csv *c, struct gr_mapping *m, struct gr_row *rows, size_t n)
{
    const struct gr_row *first = NULL; /* the first row of the current device's run */
    struct gr_device *d = NULL;

    qsort(rows, n, sizeof(*rows), cmp_rows);
    /* n + 1: an empty mapping still gets arrays, so lookups need no special case. */
    m->agencies = malloc((n + 1) * sizeof(*m->agencies));
    m->devices = calloc(n + 1, sizeof(*m->devices));
    m->by_addr = malloc((n + 1) * sizeof(*m->by_addr));
    if (m->agencies == NULL || m->devices == NULL || m->by_addr == NULL)
        return fail(c, "out of memory");

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

int gr_mapping_load_csv(const char *path, struct gr_mapping **out, char *err, size_t errlen)
{
    struct gr_csv c = {.path = path, .err = err, .errlen = errlen};
    struct gr_mapping *m;
    struct gr_row *rows = NULL;
    size_t len = 0, lines = 1, n = 0;

    *out = NULL;
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return fail(&c, "out of memory");
    if (read_file(&c, &m->text, &len) < 0)
        goto fail;

    /* Rows are at most the lines after the header, and at most GR_MAPPING_ROWS_MAX. */
    for (char *q = m->text; (q = memchr(q, '\n', (size_t)(m->text + len - q))) != NULL; q++)
        lines++;
    rows = malloc((lines < GR_MAPPING_ROWS_MAX ? lines : GR_MAPPING_ROWS_MAX) * sizeof(*rows));
    if (rows == NULL) {
        fail(&c, "out of memory");
        goto fail;
    }
    if (parse_rows(&c, m->text, m->text + len, rows, &n) < 0 || build(&c, m, rows, n) < 0)
        goto fail;
    free(rows);
    *out = m;
    return 0;

fail:
    free(rows);
    gr_mapping_free(m);
    return -1;
}

void gr_mapping_free(struct gr_mapping *m)
{
    if (m == NULL)
        return;
    free(m->by_addr);
    free(m->devices);
    free(m->agencies);
    free(m->text);
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
