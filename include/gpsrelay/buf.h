/*
 * buf.h - a growable byte buffer with reserved headroom.
 *
 * The headroom lets a transport write in place: libwebsockets needs LWS_PRE bytes before
 * the payload it frames, so the WebSocket transport creates its buffers with that head.
 */
#ifndef GPSRELAY_BUF_H
#define GPSRELAY_BUF_H

#include <stddef.h>
#include <string.h>

struct gr_buf {
    char *mem; /* head bytes of headroom, then len bytes of data, then spare */
    size_t head;
    size_t len;
    size_t cap; /* bytes of data area allocated */
};

/* A buffer with head bytes of headroom and nothing allocated yet. */
static inline struct gr_buf gr_buf_make(size_t head)
{
    struct gr_buf b = {NULL, head, 0, 0};
    return b;
}

/* The data; a buffer that never held any gives an empty string, not NULL + head. */
static inline char *gr_buf_data(const struct gr_buf *b)
{
    static char none[1];
    return b->mem != NULL ? b->mem + b->head : none;
}

/* gr_buf_append when the bytes do not fit: grows b, then appends. */
int gr_buf_append_grow(struct gr_buf *b, const void *p, size_t n);

/*
 * Appends n bytes, growing as needed; p may be NULL when n is 0 (an empty WebSocket frame
 * or HTTP body, as lws passes them). Returns 0 or -ENOMEM (then b is unchanged). Inline
 * while there is room: console frames are made of many small appends (the JSON writer's
 * punctuation, one per position), and with a call each a frame of 50 positions took
 * about 10% longer than the hand-built frame the writer replaced.
 */
static inline int gr_buf_append(struct gr_buf *b, const void *p, size_t n)
{
    if (n == 0 || n > b->cap - b->len)
        return gr_buf_append_grow(b, p, n);
    memcpy(b->mem + b->head + b->len, p, n);
    b->len += n;
    return 0;
}

int gr_buf_puts(struct gr_buf *b, const char *s);

/* Appends s[0..len) as a JSON string literal, quotes included. 0 or -ENOMEM. */
int gr_buf_json_string(struct gr_buf *b, const char *s, size_t len);

void gr_buf_free(struct gr_buf *b);

#endif
