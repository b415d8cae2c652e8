/*
 * test_report.c - framing of payloads into lines, and the device-id prefix.
 */
#include <stdbool.h>
#include <stdlib.h>

#include "check.h"
#include "gpsrelay/report.h"

/* Up to 8 lines of a payload, NUL-terminated for CHECK_STR. */
struct lines {
    char text[8][400];
    size_t len[8];
};

/*
 * Frames s from an exact-size heap copy with no NUL, so ASan catches any read past len;
 * returns the number of lines.
 */
static int frame_all(const char *s, size_t len, struct lines *out)
{
    char *copy = malloc(len ? len : 1);
    const char *line;
    size_t off = 0, line_len;
    int n = 0;

    memcpy(copy, s, len);
    while (n < 8 && gr_frame_next(copy, len, &off, &line, &line_len)) {
        CHECK(line >= copy && line + line_len <= copy + len);
        CHECK(off <= len);
        out->len[n] = line_len;
        memcpy(out->text[n], line, line_len < 399 ? line_len : 399);
        out->text[n][line_len < 399 ? line_len : 399] = '\0';
        n++;
    }
    CHECK_INT(off, len); /* everything consumed once no line is left */
    free(copy);
    return n;
}

static void test_terminators(void)
{
    struct lines l;
    const char *s = "a\r\nbb\ncc\rd";

    CHECK_INT(frame_all(s, strlen(s), &l), 4);
    CHECK_STR(l.text[0], "a");
    CHECK_STR(l.text[1], "bb");
    CHECK_STR(l.text[2], "cc");
    CHECK_STR(l.text[3], "d"); /* the last line needs no terminator */

    /* *off moves past the line and exactly one terminator. */
    const char *line;
    size_t off = 0, len;
    CHECK(gr_frame_next(s, strlen(s), &off, &line, &len));
    CHECK_INT(off, 3);
    CHECK(gr_frame_next(s, strlen(s), &off, &line, &len));
    CHECK_INT(off, 6);
    CHECK(gr_frame_next(s, strlen(s), &off, &line, &len));
    CHECK_INT(off, 9);
    CHECK(gr_frame_next(s, strlen(s), &off, &line, &len));
    CHECK_INT(off, 10);
    CHECK(!gr_frame_next(s, strlen(s), &off, &line, &len));
}

static void test_several_sentences(void)
{
    struct lines l;
    const char *s = "\r\n\r\n$GPRMC,123519,A*00\r\n\n\n\r$GPGGA,123519*00\r\n\r\r\n";

    CHECK_INT(frame_all(s, strlen(s), &l), 2);
    CHECK_STR(l.text[0], "$GPRMC,123519,A*00");
    CHECK_STR(l.text[1], "$GPGGA,123519*00");

    CHECK_INT(frame_all("", 0, &l), 0);
    CHECK_INT(frame_all("\r\n\n\r", 4, &l), 0);
    /* A NUL is not a terminator: it stays in the line for the decoder to refuse. */
    CHECK_INT(frame_all("a\0b\n", 4, &l), 1);
    CHECK_INT(l.len[0], 3);
}

static void test_overlong(void)
{
    struct lines l;
    char s[GR_LINE_MAX + 50];

    memset(s, 'x', GR_LINE_MAX + 44);
    memcpy(s + GR_LINE_MAX + 44, "\r\n$a\r\n", 6);
    CHECK_INT(frame_all(s, sizeof(s), &l), 2);
    CHECK_INT(l.len[0], GR_LINE_MAX + 44);
    CHECK_STR(l.text[1], "$a");
}

/* Splits s (from an exact-size copy); *id gets the id or "(none)". */
static enum gr_reason split(const char *s, char *id, const char **body)
{
    size_t len = strlen(s);
    char *copy = malloc(len ? len : 1);
    struct gr_report r;

    memcpy(copy, s, len);
    enum gr_reason res = gr_report_split(copy, len, &r);
    strcpy(id, "(none)");
    *body = "(none)";
    if (res == GR_OK) {
        CHECK(r.body >= copy && r.body + r.body_len == copy + len);
        *body = s + (r.body - copy);
        if (r.id != NULL) {
            CHECK(r.id >= copy && r.id + r.id_len <= r.body);
            memcpy(id, r.id, r.id_len);
            id[r.id_len] = '\0';
        }
    }
    free(copy);
    return res;
}

static void test_prefix(void)
{
    char id[GR_DEVICE_ID_MAX + 1];
    const char *body;

    CHECK_INT(split("AMB-12,$GPRMC,123519,A", id, &body), GR_OK);
    CHECK_STR(id, "AMB-12");
    CHECK_STR(body, "$GPRMC,123519,A");
    CHECK_INT(split("AMB-12$GPRMC,123519,A", id, &body), GR_OK);
    CHECK_STR(id, "AMB-12");
    CHECK_STR(body, "$GPRMC,123519,A");
    CHECK_INT(split("  AMB-12 , $GPRMC", id, &body), GR_OK);
    CHECK_STR(id, "AMB-12");
    CHECK_STR(body, "$GPRMC");
    CHECK_INT(split("0x00a0f8123456789a,$GPRMC", id, &body), GR_OK);
    CHECK_STR(id, "0x00a0f8123456789a");

    /* No prefix. */
    CHECK_INT(split("$GPRMC,123519,A", id, &body), GR_OK);
    CHECK_STR(id, "(none)");
    CHECK_STR(body, "$GPRMC,123519,A");
    CHECK_INT(split(">RPV15714+3739438-1220384601512612;ID=1234;*7F<", id, &body), GR_OK);
    CHECK_STR(id, "(none)");

    /* TAIP with a prefix; whichever of '$' and '>' comes first starts the body. */
    CHECK_INT(split("CAR7>RPV15714$<", id, &body), GR_OK);
    CHECK_STR(id, "CAR7");
    CHECK_STR(body, ">RPV15714$<");
    CHECK_INT(split("CAR7,$GPTXT,a>b", id, &body), GR_OK);
    CHECK_STR(body, "$GPTXT,a>b");

    /* Exactly GR_DEVICE_ID_MAX is fine. */
    char line[GR_DEVICE_ID_MAX + 16];
    memset(line, 'A', GR_DEVICE_ID_MAX);
    strcpy(line + GR_DEVICE_ID_MAX, ",$GPRMC");
    CHECK_INT(split(line, id, &body), GR_OK);
    CHECK_INT(strlen(id), GR_DEVICE_ID_MAX);
}

static void test_bad_prefix(void)
{
    char id[GR_DEVICE_ID_MAX + 1];
    const char *body;
    char line[GR_DEVICE_ID_MAX + 16];

    memset(line, 'A', GR_DEVICE_ID_MAX + 1);
    strcpy(line + GR_DEVICE_ID_MAX + 1, ",$GPRMC");
    CHECK_INT(split(line, id, &body), GR_BAD_ID);
    CHECK_INT(split(",$GPRMC", id, &body), GR_BAD_ID);
    CHECK_INT(split(" , $GPRMC", id, &body), GR_BAD_ID);
    CHECK_INT(split("   $GPRMC", id, &body), GR_BAD_ID);
    CHECK_INT(split("AMB\x01-12,$GPRMC", id, &body), GR_BAD_ID);
    CHECK_INT(split("\xff\xfe$GPRMC", id, &body), GR_BAD_ID);

    CHECK_INT(split("AMB-12,GPRMC,123519", id, &body), GR_MALFORMED);
    CHECK_INT(split("", id, &body), GR_MALFORMED);
    CHECK_INT(split("hello", id, &body), GR_MALFORMED);
}

int main(void)
{
    test_terminators();
    test_several_sentences();
    test_overlong();
    test_prefix();
    test_bad_prefix();
    return check_result("test_report");
}
