/*
 * hex.h - the two hex digits of an NMEA or TAIP checksum ("*hh", either case). Private
 * to the decoders; pure.
 */
#ifndef GR_DECODE_HEX_H
#define GR_DECODE_HEX_H

static inline int gr_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* p[0..2) as a byte, or -1 when either is not a hex digit. */
static inline int gr_hex_byte(const char *p)
{
    int hi = gr_hex_digit(p[0]), lo = gr_hex_digit(p[1]);
    return hi < 0 || lo < 0 ? -1 : hi << 4 | lo;
}

#endif
