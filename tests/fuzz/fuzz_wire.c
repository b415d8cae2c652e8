/*
 * fuzz_wire.c - gr_wire_decode (cluster_wire.h) on arbitrary messages of the stream, as a
 * node receives them from NATS: the input's first line is the Gr-Rx header, its second the
 * Gr-Src header, the rest the body.
 *
 * Whatever decodes must encode again and decode to the same fix: the format every node
 * relies on to apply exactly what the accepting node accepted.
 */
#include <string.h>

#include "fuzz.h"
#include "gpsrelay/cluster_wire.h"

/* The next line of [*p, end) as a string in buf (cut at size - 1), *p past it. */
static void take_line(const char **p, const char *end, char *buf, size_t size)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    size_t n = (size_t)((nl ? nl : end) - *p);
    size_t keep = n < size - 1 ? n : size - 1;
    memcpy(buf, *p, keep);
    buf[keep] = '\0';
    *p += n + (nl != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct gr_json_report a, b;
    static struct gr_wire_msg m;
    const char *p = (const char *)data, *end = p + size;
    char rx[32], src[16];
    take_line(&p, end, rx, sizeof(rx));
    take_line(&p, end, src, sizeof(src));

    int64_t rx_ms = -1;
    fuzz_poison(&a, sizeof(a), 0xa5);
    enum gr_reason r = gr_wire_decode(p, (size_t)(end - p), rx, src, &a, &rx_ms);
    FUZZ_CHECK(r == GR_OK || r == GR_MALFORMED || r == GR_BAD_ID || r == GR_ATTRS_TOO_BIG ||
               r == GR_BAD_VALUE || r == GR_BAD_DATE);
    if (r != GR_OK)
        return 0;
    FUZZ_CHECK(a.id[0] != '\0' && rx_ms >= 0 && a.fix.valid && a.fix.src < GR_SRC_COUNT);
    FUZZ_CHECK(fuzz_finite(a.fix.lat) && fuzz_finite(a.fix.lon));
    fuzz_check_fix_fields(&a.fix);

    a.fix.attrs = a.attrs_len ? a.attrs : NULL;
    a.fix.attrs_len = a.attrs_len;
    FUZZ_CHECK(gr_wire_encode("gpsrelay", a.id, &a.fix, rx_ms, &m) == 0);
    FUZZ_CHECK(m.body_len <= GR_WIRE_BODY_MAX && strlen(m.body) == m.body_len);
    int64_t rx2 = -1;
    fuzz_poison(&b, sizeof(b), 0x5a);
    FUZZ_CHECK(gr_wire_decode(m.body, m.body_len, m.rx, m.src, &b, &rx2) == GR_OK);
    FUZZ_CHECK(strcmp(a.id, b.id) == 0 && rx2 == rx_ms && b.fix.src == a.fix.src);
    FUZZ_CHECK(b.fix.time_ms == a.fix.time_ms && b.fix.fields == a.fix.fields);
    FUZZ_CHECK(fuzz_same_double(a.fix.lat, b.fix.lat) && fuzz_same_double(a.fix.lon, b.fix.lon));
    FUZZ_CHECK(!(a.fix.fields & GR_FIX_SPEED) || fuzz_same_double(a.fix.speed, b.fix.speed));
    FUZZ_CHECK(!(a.fix.fields & GR_FIX_ALT) || fuzz_same_double(a.fix.alt, b.fix.alt));
    FUZZ_CHECK(!(a.fix.fields & GR_FIX_SATS) || a.fix.sats == b.fix.sats);
    FUZZ_CHECK(a.attrs_len == b.attrs_len && memcmp(a.attrs, b.attrs, a.attrs_len) == 0);
    return 0;
}
