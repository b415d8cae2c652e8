/*
 * chars.h - the byte-level pieces the text decoders share: ASCII classes, fixed-width
 * decimal numbers, fields cut at a separator and trimmed of spaces, and the "*hh" XOR
 * checksum that ends NMEA sentences and TAIP messages. Private to the decoders; pure.
 *
 * Inputs are borrowed buffers that are not NUL-terminated, so nothing here calls strtol,
 * sscanf or <ctype.h> (they read to a NUL, and follow the locale). Everything is static
 * inline: the NMEA decoder calls these per byte and per field, and a call each would show
 * in bench/decode_bench.c.
 */
#ifndef GR_DECODE_CHARS_H
#define GR_DECODE_CHARS_H

#include <stdbool.h>
#include <stddef.h>

#include "gpsrelay/fix.h"

static inline bool gr_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline bool gr_is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

/* Printable ASCII, what sentences are made of: any other byte is line noise. */
static inline bool gr_is_print(char c)
{
    return (unsigned char)c >= 0x20 && (unsigned char)c <= 0x7e;
}

/* The value of a hex digit, either case, or -1. */
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

/* The most digits gr_digits takes: 999,999,999 fits an int. */
#define GR_DIGITS_MAX 9

/* The n (at most GR_DIGITS_MAX) decimal digits at p as a number, or -1 when any is not a
 * digit: fixed-width fields (NMEA "hhmmss", TAIP's "+3739438", ISO 8601's "2026"). */
static inline int gr_digits(const char *p, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!gr_is_digit(p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/*
 * The digits of a fraction of a second, p[0..n) after the point, into *ms: digits past the
 * third are read but dropped (truncated, not rounded: receivers send at most 10 Hz, so
 * .00 or .000). Stops at the first non-digit; returns how many digits it read.
 */
static inline size_t gr_fraction_ms(const char *p, size_t n, int *ms)
{
    int v = 0, scale = 100;
    size_t i = 0;
    for (; i < n && gr_is_digit(p[i]); i++) {
        v += (p[i] - '0') * scale;
        scale /= 10; /* 0 after the third digit */
    }
    *ms = v;
    return i;
}

/* A field of a sentence: len bytes at p, borrowed from the input. */
struct gr_span {
    const char *p;
    size_t len;
};

/* The span without leading and trailing spaces (modems pad ids to a fixed width). */
static inline struct gr_span gr_trim(struct gr_span s)
{
    while (s.len > 0 && s.p[0] == ' ') {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && s.p[s.len - 1] == ' ')
        s.len--;
    return s;
}

/*
 * Cuts the field up to the next sep off the front of *rest into *field. Text with k
 * separators holds k + 1 fields, empty ones included: "a,,b" is "a", "", "b" and "" is one
 * empty field. Returns false when none is left (rest->p is NULL after the last one).
 */
static inline bool gr_field_next(struct gr_span *rest, char sep, struct gr_span *field)
{
    if (rest->p == NULL)
        return false;
    size_t i = 0;
    while (i < rest->len && rest->p[i] != sep)
        i++;
    field->p = rest->p;
    field->len = i;
    if (i == rest->len) {
        rest->p = NULL;
        rest->len = 0;
    } else {
        rest->p += i + 1;
        rest->len -= i + 1;
    }
    return true;
}

/*
 * The checksum that may end an NMEA sentence or a TAIP message: star[0..n) is from the
 * '*' to the end of the checked text (n == 0: none was sent, which is allowed), sum the
 * XOR of the bytes it covers. Returns GR_OK, setting *seen when there was one;
 * GR_BAD_CHECKSUM when it differs; GR_MALFORMED when it is not exactly two hex digits.
 */
static inline enum gr_reason gr_checksum_check(const char *star, size_t n, unsigned sum, bool *seen)
{
    if (n == 0)
        return GR_OK;
    int given = n == 3 ? gr_hex_byte(star + 1) : -1;
    if (given < 0)
        return GR_MALFORMED;
    if ((unsigned)given != sum)
        return GR_BAD_CHECKSUM;
    *seen = true;
    return GR_OK;
}

#endif
