/*
 * fuzz_history_query.c - gr_history_query_parse and gr_snapshot_query_parse
 * (history_query.h) on arbitrary query strings: never a crash, and what is accepted keeps
 * the header's promises.
 */
#include <string.h>

#include "fuzz.h"
#include "gpsrelay/history_query.h"

static void check_id(const char *id, size_t max)
{
    size_t n = strnlen(id, max + 1);
    FUZZ_CHECK(n >= 1 && n <= max);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)id[i] >= 0x20 && id[i] != 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct gr_history_query h;
    static struct gr_snapshot_query s;
    const char *qs = (const char *)data;

    fuzz_poison(&h, sizeof(h), 0xa5);
    const char *why = gr_history_query_parse(qs, size, &h);
    if (why == NULL) {
        check_id(h.device, GR_DEVICE_ID_MAX);
        FUZZ_CHECK(h.from_ms >= 0 && h.from_ms <= h.to_ms);
        FUZZ_CHECK(h.limit >= 1 && h.limit <= GR_HISTORY_LIMIT_MAX);
        FUZZ_CHECK(h.format == GR_HISTORY_NDJSON || h.format == GR_HISTORY_GEOJSON);
    } else {
        FUZZ_CHECK(strlen(why) > 0);
    }
    fuzz_poison(&s, sizeof(s), 0x5a);
    if (gr_snapshot_query_parse(qs, size, &s) == NULL) {
        check_id(s.agency, GR_AGENCY_ID_MAX);
        FUZZ_CHECK(s.at_ms >= 0);
    }
    return 0;
}
