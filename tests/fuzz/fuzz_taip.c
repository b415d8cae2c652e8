/*
 * fuzz_taip.c - gr_taip_decode (taip.h) on arbitrary bytes: one message as the framer
 * hands it over, from '>' through '<', not NUL-terminated.
 */
#include "fuzz.h"
#include "gpsrelay/taip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct gr_sentence a, b;

    fuzz_poison(&a, sizeof(a), 0xa5);
    enum gr_reason r = gr_taip_decode(p, size, &a);
    FUZZ_CHECK(r == GR_OK || r == GR_MALFORMED || r == GR_BAD_CHECKSUM || r == GR_UNSUPPORTED ||
               r == GR_BAD_VALUE);

    fuzz_poison(&b, sizeof(b), 0x5a);
    FUZZ_CHECK(gr_taip_decode(p, size, &b) == r);
    if (r != GR_OK) {
        return 0;
    }
    FUZZ_CHECK(p[0] == '>');
    FUZZ_CHECK(a.type == GR_SENT_TAIP_RPV); /* "GR_OK with type GR_SENT_TAIP_RPV" */
    fuzz_check_sentence(&a, p, size);
    fuzz_check_same_sentence(&a, &b);
    return 0;
}
