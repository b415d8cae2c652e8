/*
 * form.h - application/x-www-form-urlencoded text, as query strings and form bodies carry
 * it (the history endpoints' parameters, a phone's OsmAnd report): name=value pairs split
 * by '&', values percent-decoded with '+' as a space. Pure: no I/O, no allocation.
 */
#ifndef GPSRELAY_FORM_H
#define GPSRELAY_FORM_H

#include <stdbool.h>
#include <stddef.h>

/* One name=value pair, raw (still encoded), pointing into the text. */
struct gr_form_pair {
    const char *name, *value;
    size_t name_len, value_len;
};

/* The next pair of [*p, end), *p moved past it and its '&'; false at the end. A pair
 * without '=' has an empty value. */
bool gr_form_next(const char **p, const char *end, struct gr_form_pair *out);

/* Whether the pair's (raw) name is name. */
bool gr_form_named(const struct gr_form_pair *p, const char *name);

/* Percent-decodes s[0..n) into out (room for max bytes and a NUL); '+' is a space. Returns
 * the length, or -EINVAL for a bad escape, a NUL or a control byte, or a value too long. */
long gr_form_decode(const char *s, size_t n, char *out, size_t max);

#endif
