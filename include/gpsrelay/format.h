/*
 * format.h - the ingest formats, in one table (format.c): the byte a report of each starts
 * with, its line limit, its decoder and its source name. Framing and prefix splitting
 * (report.h) and ingest ask the table; nothing else looks at lead bytes. Pure.
 *
 * A new format is a decoder (src/decode/<format>.c and its header), a value in enum
 * gr_fix_source (fix.h), its row in format.c, and their tests.
 */
#ifndef GPSRELAY_FORMAT_H
#define GPSRELAY_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

#include "gpsrelay/fix.h"
#include "gpsrelay/json_report.h"

/* Longest sentence line (NMEA, TAIP) accepted, id prefix included, without its line
 * terminator (docs/ingest.md). */
#define GR_LINE_MAX 256

enum gr_decoded_kind {
    GR_DECODED_SENTENCE, /* one sentence: the assembler merges a device's sentences (NMEA,
                          * TAIP) into fixes */
    GR_DECODED_REPORT,   /* a whole fix, with the device's id when it names one (JSON) */
};

/* What a format's decoder made of one report. */
struct gr_decoded {
    enum gr_decoded_kind kind;
    union {
        struct gr_sentence sentence;  /* GR_DECODED_SENTENCE */
        struct gr_json_report report; /* GR_DECODED_REPORT */
    };
};

struct gr_format {
    char lead; /* the byte a report of this format starts with */
    /*
     * true: the report is the whole line, lead first after spaces (JSON). It has no id
     * prefix, is never cut at "<>", and sentence leads inside it ('$' in a string) mean
     * nothing. false: a sentence (NMEA, TAIP): it may follow an id prefix, and a line with
     * several sentence leads is taken from the last (gr_report_split, report.h).
     */
    bool whole_line;
    size_t line_max;  /* longest line of this format, terminator excluded */
    const char *name; /* the source name consoles see ("src":"nmea") */
    /* Decodes p[0..len), from the lead byte on, into *out; see the format's header for
     * the reasons it returns. */
    enum gr_reason (*decode)(const char *p, size_t len, struct gr_decoded *out);
};

/* The longest line_max in the table: a buffer this big holds any line ingest accepts
 * (test_format checks every row against it). */
#define GR_FORMAT_LINE_MAX GR_JSON_LINE_MAX

/* The format of a line that is a whole report (its lead first after spaces), or NULL:
 * then the line holds sentences, or nothing usable. */
const struct gr_format *gr_format_whole_line(const char *line, size_t len);

/*
 * Where sentences start in line[0..len): *first is the first sentence lead; the last one's
 * format is returned, and *last is where it stands. NULL, and both left alone, when the
 * line holds none.
 */
const struct gr_format *gr_format_sentences(const char *line, size_t len, const char **first,
                                            const char **last);

/* The longest a line may be that starts with line[0..len): its whole-line format's limit,
 * else the longest a sentence line may be, id prefix included. len may be a line's start
 * only (a stream's unfinished line). */
size_t gr_format_line_max(const char *line, size_t len);

/* The row of a format; NULL for a value out of range. */
const struct gr_format *gr_format_get(enum gr_fix_source src);

/* The source name of a fix ("nmea"); "unknown" for a value out of range, never NULL. */
const char *gr_source_name(enum gr_fix_source src);

/* The source a name names ("osmand": GR_SRC_OSMAND); GR_SRC_COUNT for none. */
enum gr_fix_source gr_source_parse(const char *name);

#endif
