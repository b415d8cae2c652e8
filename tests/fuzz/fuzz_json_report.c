/*
 * fuzz_json_report.c - gr_json_report_decode (json_report.h) on arbitrary bytes.
 *
 * Besides the contract checks, jansson's allocations are watched by LeakSanitizer: every
 * path through the decoder must release what it loaded.
 */
#include <jansson.h>

#include "fuzz.h"
#include "gpsrelay/json_report.h"

static void check_fix(const struct gr_json_report *rep)
{
    const struct gr_fix *f = &rep->fix;

    FUZZ_CHECK(f->valid && f->src == GR_SRC_JSON); /* "valid true; src GR_SRC_JSON" */
    FUZZ_CHECK(fuzz_finite(f->lat) && fuzz_finite(f->lon));
    fuzz_check_fix_fields(f);
    /* fix.h: attrs is "borrowed from the decoder's output; NULL when none". */
    FUZZ_CHECK(f->attrs == NULL || (f->attrs == rep->attrs && f->attrs_len == rep->attrs_len));
}

/* id: NUL-terminated, at most GR_DEVICE_ID_MAX bytes, no control characters. */
static void check_id(const struct gr_json_report *rep)
{
    const char *end = memchr(rep->id, '\0', sizeof(rep->id));

    FUZZ_CHECK(end != NULL);
    for (const char *c = rep->id; c < end; c++) {
        FUZZ_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f);
    }
}

/* attrs: "compact JSON object text, "" when absent", at most GR_ATTRS_MAX bytes. */
static void check_attrs(const struct gr_json_report *rep)
{
    FUZZ_CHECK(rep->attrs_len <= GR_ATTRS_MAX);
    FUZZ_CHECK(rep->attrs[rep->attrs_len] == '\0' && strlen(rep->attrs) == rep->attrs_len);
    if (rep->attrs_len == 0) {
        return;
    }
    json_error_t err;
    json_t *v = json_loadb(rep->attrs, rep->attrs_len, 0, &err);
    FUZZ_CHECK(v != NULL && json_is_object(v));
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Static: two reports are 2.3 KB, and libFuzzer runs this millions of times. */
    static struct gr_json_report a, b;
    const char *p = (const char *)data;

    fuzz_poison(&a, sizeof(a), 0xa5);
    enum gr_reason r = gr_json_report_decode(p, size, &a);
    FUZZ_CHECK(r == GR_OK || r == GR_MALFORMED || r == GR_BAD_ID || r == GR_ATTRS_TOO_BIG ||
               r == GR_BAD_VALUE || r == GR_BAD_DATE);

    fuzz_poison(&b, sizeof(b), 0x5a);
    FUZZ_CHECK(gr_json_report_decode(p, size, &b) == r);
    if (r != GR_OK) {
        return 0;
    }
    check_id(&a);
    check_attrs(&a);
    check_fix(&a);

    /* Pure: the same report again, whatever *out held. */
    FUZZ_CHECK(strcmp(a.id, b.id) == 0);
    FUZZ_CHECK(a.attrs_len == b.attrs_len && memcmp(a.attrs, b.attrs, a.attrs_len) == 0);
    FUZZ_CHECK(a.fix.time_ms == b.fix.time_ms && a.fix.fields == b.fix.fields);
    FUZZ_CHECK(fuzz_same_double(a.fix.lat, b.fix.lat) && fuzz_same_double(a.fix.lon, b.fix.lon));
    FUZZ_CHECK(!(a.fix.fields & GR_FIX_SATS) || a.fix.sats == b.fix.sats);
    return 0;
}
