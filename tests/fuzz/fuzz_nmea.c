/*
 * fuzz_nmea.c - gr_nmea_decode (nmea.h) on arbitrary bytes.
 *
 * The input is the sentence as the framer would hand it over: no CR/LF, not NUL-terminated
 * (libFuzzer and the replay both pass an exact-size heap buffer, so ASan sees any read
 * past len).
 */
#include "fuzz.h"
#include "gpsrelay/nmea.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    struct gr_sentence a, b;

    fuzz_poison(&a, sizeof(a), 0xa5);
    enum gr_reason r = gr_nmea_decode(p, size, &a);
    FUZZ_CHECK(r == GR_OK || r == GR_MALFORMED || r == GR_BAD_CHECKSUM || r == GR_UNSUPPORTED ||
               r == GR_BAD_VALUE || r == GR_BAD_DATE || r == GR_BAD_ID);

    /* Pure: the same answer again, whatever *out held. */
    fuzz_poison(&b, sizeof(b), 0x5a);
    FUZZ_CHECK(gr_nmea_decode(p, size, &b) == r);
    if (r != GR_OK) {
        return 0;
    }
    FUZZ_CHECK(p[0] == '$'); /* "one sentence starting at '$'" */
    FUZZ_CHECK(a.type != GR_SENT_TAIP_RPV);
    fuzz_check_sentence(&a, p, size);
    fuzz_check_same_sentence(&a, &b);
    return 0;
}
