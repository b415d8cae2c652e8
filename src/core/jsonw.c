/*
 * jsonw.c - the JSON writer (jsonw.h).
 */
#include "gpsrelay/jsonw.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(struct gr_jsonw *w, const char *p, size_t n)
{
    if (w->err == 0 && gr_buf_append(w->b, p, n) < 0)
        w->err = -ENOMEM;
}

/* Before a value: the comma that separates it from the one before. */
static void value_begin(struct gr_jsonw *w)
{
    if (w->comma)
        put(w, ",", 1);
    w->comma = true;
}

void gr_jsonw_object(struct gr_jsonw *w)
{
    value_begin(w);
    put(w, "{", 1);
    w->comma = false;
}

void gr_jsonw_object_end(struct gr_jsonw *w)
{
    put(w, "}", 1);
    w->comma = true;
}

void gr_jsonw_array(struct gr_jsonw *w)
{
    value_begin(w);
    put(w, "[", 1);
    w->comma = false;
}

void gr_jsonw_array_end(struct gr_jsonw *w)
{
    put(w, "]", 1);
    w->comma = true;
}

void gr_jsonw_key(struct gr_jsonw *w, const char *key)
{
    gr_jsonw_string(w, key);
    put(w, ":", 1);
    w->comma = false;
}

void gr_jsonw_string(struct gr_jsonw *w, const char *s)
{
    value_begin(w);
    if (w->err == 0 && gr_buf_json_string(w->b, s, strlen(s)) < 0)
        w->err = -ENOMEM;
}

void gr_jsonw_u64(struct gr_jsonw *w, uint64_t v)
{
    char digits[24]; /* 20 digits at most */
    int n = snprintf(digits, sizeof(digits), "%" PRIu64, v);
    value_begin(w);
    put(w, digits, (size_t)n);
}

void gr_jsonw_bool(struct gr_jsonw *w, bool v)
{
    value_begin(w);
    put(w, v ? "true" : "false", v ? 4 : 5);
}

void gr_jsonw_raw(struct gr_jsonw *w, const char *json, size_t len)
{
    value_begin(w);
    put(w, json, len);
}

char *gr_json_quote(const char *s)
{
    struct gr_buf b = gr_buf_make(0);
    if (gr_buf_json_string(&b, s, strlen(s)) < 0 || gr_buf_append(&b, "", 1) < 0) {
        gr_buf_free(&b);
        return NULL;
    }
    /* Kept for as long as a unit or topic lives: give back the buffer's spare room. */
    char *text = realloc(b.mem, b.len);
    return text != NULL ? text : b.mem; /* head 0: the string starts at mem */
}
