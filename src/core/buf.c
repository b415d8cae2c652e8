/*
 * buf.c - growable byte buffer.
 */
#include "gpsrelay/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int gr_buf_append_grow(struct gr_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0; /* memcpy(dst, NULL, 0) is undefined behaviour */
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        char *mem = realloc(b->mem, b->head + cap);
        if (mem == NULL)
            return -ENOMEM;
        b->mem = mem;
        b->cap = cap;
    }
    memcpy(b->mem + b->head + b->len, p, n);
    b->len += n;
    return 0;
}

int gr_buf_puts(struct gr_buf *b, const char *s)
{
    return gr_buf_append(b, s, strlen(s));
}

int gr_buf_json_string(struct gr_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    int err = gr_buf_append(b, "\"", 1);
    size_t plain = 0; /* start of the run of bytes that need no escape */
    for (size_t i = 0; i < len && !err; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        err |= gr_buf_append(b, s + plain, i - plain);
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (c == '"' || c == '\\')
            esc[1] = (char)c;
        err |= gr_buf_append(b, esc, c == '"' || c == '\\' ? 2 : 6);
        plain = i + 1;
    }
    err |= gr_buf_append(b, s + plain, len - plain);
    err |= gr_buf_append(b, "\"", 1);
    return err ? -ENOMEM : 0;
}

void gr_buf_free(struct gr_buf *b)
{
    free(b->mem);
    b->mem = NULL;
    b->len = b->cap = 0;
}
