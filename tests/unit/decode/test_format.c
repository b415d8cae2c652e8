/*
 * test_format.c - the table of ingest formats: which line is which format, the line limits,
 * the decoders it hands out, and the source names.
 */
#include <stdlib.h>

#include "check.h"
#include "gpsrelay/format.h"
#include "gpsrelay/report.h"

/* The format gr_report_split gives a line, from an exact-size heap copy (ASan), or NULL. */
static const struct gr_format *format_of(const char *s)
{
    size_t len = strlen(s);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, s, len);
    struct gr_report rep;
    const struct gr_format *f = gr_report_split(copy, len, &rep) == GR_OK ? rep.format : NULL;
    if (f != NULL)
        CHECK_INT(rep.body[0], f->lead); /* every body starts with its format's lead */
    free(copy);
    return f;
}

static void test_lines(void)
{
    CHECK_STR(format_of("$GPRMC,1*00")->name, "nmea");
    CHECK_STR(format_of("AMB-12,$GPRMC,1*00")->name, "nmea");
    CHECK_STR(format_of(">RPV1<")->name, "taip");
    CHECK_STR(format_of("AMB-12>RPV1<")->name, "taip");
    CHECK_STR(format_of("  {\"lat\":1}")->name, "json");
    /* Resynchronisation: the last sentence lead decides, whichever format it is. */
    CHECK_STR(format_of("$GPRMC,12>RPV1<")->name, "taip");
    CHECK_STR(format_of(">RPV1$GPGGA,1")->name, "nmea");
    /* Sentence leads inside a whole-line report mean nothing. */
    CHECK_STR(format_of("{\"a\":\">RPV$GP\"}")->name, "json");
    CHECK(format_of("junk") == NULL);
    CHECK(format_of("") == NULL);

    CHECK(gr_format_whole_line("{", 1) != NULL);
    CHECK(gr_format_whole_line(" {", 2) != NULL);
    CHECK(gr_format_whole_line("x{", 2) == NULL);
    CHECK(gr_format_whole_line("$GPRMC", 6) == NULL);
    CHECK(gr_format_whole_line("   ", 3) == NULL);
}

static void test_line_max(void)
{
    CHECK_INT(gr_format_line_max("$GPRMC", 6), GR_LINE_MAX);
    CHECK_INT(gr_format_line_max("AMB-12,", 7), GR_LINE_MAX); /* an unfinished line */
    CHECK_INT(gr_format_line_max("", 0), GR_LINE_MAX);
    CHECK_INT(gr_format_line_max(" {\"lat\"", 7), GR_JSON_LINE_MAX);
}

/* Every value of enum gr_fix_source has a whole row, with a lead of its own and a limit that
 * fits the buffers sized for the longest line. */
static void test_rows(void)
{
    for (int s = 0; s < GR_SRC_LINE_FORMATS; s++) {
        const struct gr_format *f = gr_format_get((enum gr_fix_source)s);
        CHECK(f != NULL && f->lead != '\0' && f->name != NULL && f->decode != NULL);
        CHECK(f->line_max > 0 && f->line_max <= GR_FORMAT_LINE_MAX);
        CHECK_STR(gr_source_name((enum gr_fix_source)s), f->name);
        for (int t = 0; t < s; t++)
            CHECK(gr_format_get((enum gr_fix_source)t)->lead != f->lead);
    }
    CHECK(gr_format_get(GR_SRC_COUNT) == NULL);
}

/* The decoder a row hands out is its format's, and says what it made. */
static void test_decode(void)
{
    struct gr_decoded d;
    static const char rmc[] =
        "$GPRMC,161229.487,A,3723.2475,N,12158.3416,W,0.13,309.62,120598,,*10";
    static const char rpv[] = ">RPV15714+3739438-1220384601512612;ID=1234;*7F<";
    static const char json[] = "{\"time\":0,\"lat\":1,\"lon\":2}";

    CHECK_INT(format_of(rmc)->decode(rmc, strlen(rmc), &d), GR_OK);
    CHECK_INT(d.kind, GR_DECODED_SENTENCE);
    CHECK_INT(d.sentence.type, GR_SENT_RMC);
    CHECK_INT(format_of(rpv)->decode(rpv, strlen(rpv), &d), GR_OK);
    CHECK_INT(d.kind, GR_DECODED_SENTENCE);
    CHECK_INT(d.sentence.type, GR_SENT_TAIP_RPV);
    CHECK_INT(format_of(json)->decode(json, strlen(json), &d), GR_OK);
    CHECK_INT(d.kind, GR_DECODED_REPORT);
    CHECK_INT(d.report.fix.src, GR_SRC_JSON);
}

static void test_source_names(void)
{
    CHECK_STR(gr_source_name(GR_SRC_NMEA), "nmea");
    CHECK_STR(gr_source_name(GR_SRC_TAIP), "taip");
    CHECK_STR(gr_source_name(GR_SRC_JSON), "json");
    CHECK_STR(gr_source_name(GR_SRC_OSMAND), "osmand");
    CHECK_STR(gr_source_name(GR_SRC_COUNT), "unknown");
    CHECK(gr_format_get(GR_SRC_OSMAND) == NULL); /* no line format */
    for (int s = 0; s < GR_SRC_COUNT; s++)
        CHECK(gr_source_parse(gr_source_name((enum gr_fix_source)s)) == (enum gr_fix_source)s);
    CHECK(gr_source_parse("unknown") == GR_SRC_COUNT);
    CHECK(gr_source_parse("") == GR_SRC_COUNT);
}

int main(void)
{
    test_lines();
    test_line_max();
    test_rows();
    test_decode();
    test_source_names();
    return check_result("test_format");
}
