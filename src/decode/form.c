/*
 * form.c - application/x-www-form-urlencoded text. See form.h.
 */
#include "gpsrelay/form.h"

#include <errno.h>
#include <string.h>

static int hex(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

long gr_form_decode(const char *s, size_t n, char *out, size_t max)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (n - i < 3)
                return -EINVAL;
            int h = hex(s[i + 1]), l = hex(s[i + 2]);
            if (h < 0 || l < 0)
                return -EINVAL;
            c = h * 16 + l;
            i += 2;
        }
        if (c < 0x20 || c == 0x7f || len == max)
            return -EINVAL;
        out[len++] = (char)c;
    }
    out[len] = '\0';
    return (long)len;
}

bool gr_form_next(const char **p, const char *end, struct gr_form_pair *out)
{
    while (*p < end && **p == '&')
        (*p)++;
    if (*p == end)
        return false;
    const char *amp = memchr(*p, '&', (size_t)(end - *p));
    const char *stop = amp ? amp : end;
    const char *eq = memchr(*p, '=', (size_t)(stop - *p));
    out->name = *p;
    out->name_len = (size_t)((eq ? eq : stop) - *p);
    out->value = eq ? eq + 1 : stop;
    out->value_len = eq ? (size_t)(stop - eq - 1) : 0;
    *p = stop;
    return true;
}

bool gr_form_named(const struct gr_form_pair *p, const char *name)
{
    return p->name_len == strlen(name) && memcmp(p->name, name, p->name_len) == 0;
}
