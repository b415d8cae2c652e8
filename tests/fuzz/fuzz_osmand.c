/*
 * fuzz_osmand.c - gr_osmand_decode_form and gr_osmand_decode_json (osmand.h) on arbitrary
 * bytes: never a crash, and what is accepted keeps the header's promises.
 */
#include <string.h>

#include "fuzz.h"
#include "gpsrelay/osmand.h"

static void check_report(const struct gr_osmand_report *r)
{
    size_t n = strnlen(r->id, GR_DEVICE_ID_MAX + 1);
    FUZZ_CHECK(n >= 1 && n <= GR_DEVICE_ID_MAX);
    FUZZ_CHECK(r->fix.src == GR_SRC_OSMAND);
    FUZZ_CHECK(gr_fix_check_values(&r->fix) == GR_OK);
    FUZZ_CHECK(r->attrs_len == strlen(r->attrs) && r->attrs_len <= GR_ATTRS_MAX);
    FUZZ_CHECK(r->attrs_len == 0 || (r->attrs[0] == '{' && r->fix.attrs == r->attrs));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct gr_osmand_report r;
    fuzz_poison(&r, sizeof(r), 0xa5);
    if (gr_osmand_decode_form((const char *)data, size, &r) == GR_OK)
        check_report(&r);
    fuzz_poison(&r, sizeof(r), 0x5a);
    if (gr_osmand_decode_json((const char *)data, size, &r) == GR_OK)
        check_report(&r);
    return 0;
}
