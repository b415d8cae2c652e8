/*
 * buf.c - growable byte buffer.
 */
#include "gpsrelay/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int gr_buf_append(struct gr_buf *b, const void *p, size_t n)
{
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

void gr_buf_free(struct gr_buf *b)
{
    free(b->mem);
    b->mem = NULL;
    b->len = b->cap = 0;
}
