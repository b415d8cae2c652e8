/*
 * jsonw.h - a small JSON writer over a gr_buf, for what the daemon sends consoles that is
 * not a position: Phoenix frames, replies and event payloads.
 *
 * It places the commas and escapes strings itself (gr_buf_json_string), so no caller
 * writes JSON punctuation by hand. gr_jsonw_raw splices text that is JSON already: a
 * position encoded once for every console, a ref echoed as the console sent it. jansson
 * cannot splice such text without parsing it again, which join snapshots of thousands of
 * positions would pay for.
 *
 * Errors stick: after the first failed append every call does nothing, and w->err holds
 * -ENOMEM. What was written by then stays in the buffer; the caller drops it.
 */
#ifndef GPSRELAY_JSONW_H
#define GPSRELAY_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpsrelay/buf.h"

struct gr_jsonw {
    struct gr_buf *b; /* borrowed: the writer appends to it */
    bool comma;       /* a value ended at this level: the next one needs a comma first */
    int err;          /* 0, or -ENOMEM from the first append that failed */
};

/* A writer appending to b (borrowed; b keeps what is in it already). */
static inline struct gr_jsonw gr_jsonw_make(struct gr_buf *b)
{
    struct gr_jsonw w = {b, false, 0};
    return w;
}

void gr_jsonw_object(struct gr_jsonw *w);     /* { */
void gr_jsonw_object_end(struct gr_jsonw *w); /* } */
void gr_jsonw_array(struct gr_jsonw *w);      /* [ */
void gr_jsonw_array_end(struct gr_jsonw *w);  /* ] */

/* A member's name inside an object; its value comes next. */
void gr_jsonw_key(struct gr_jsonw *w, const char *key);

void gr_jsonw_string(struct gr_jsonw *w, const char *s);
void gr_jsonw_u64(struct gr_jsonw *w, uint64_t v);
void gr_jsonw_bool(struct gr_jsonw *w, bool v);

/* A value that is JSON text already, json[0..len), copied as it is. */
void gr_jsonw_raw(struct gr_jsonw *w, const char *json, size_t len);

/* s as a JSON string literal, quotes included, in a new string (caller frees); NULL on
 * ENOMEM. */
char *gr_json_quote(const char *s);

#endif
