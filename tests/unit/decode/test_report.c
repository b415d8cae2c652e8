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

/* Whether the last split() dropped a spliced broken sentence. */
static bool last_spliced;

/* Splits s (from an exact-size copy); *id gets the id or "(none)". */
static enum gr_reason split(const char *s, char *id, const char **body)
{
    size_t len = strlen(s);
    char *copy = malloc(len ? len : 1);
    struct gr_report r;

    memcpy(copy, s, len);
    memset(&r, 0xa5, sizeof(r)); /* the split must set every field */
    enum gr_reason res = gr_report_split(copy, len, &r);
    strcpy(id, "(none)");
    *body = "(none)";
    last_spliced = false;
    if (res == GR_OK) {
        CHECK(r.body >= copy && r.body + r.body_len == copy + len);
        CHECK(r.body[0] == '$' || r.body[0] == '>' || r.body[0] == '{');
        *body = s + (r.body - copy);
        last_spliced = r.spliced;
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

    /* TAIP with a prefix. */
    CHECK_INT(split("CAR7>RPV15714+3739438-1220384601512612<", id, &body), GR_OK);
    CHECK_STR(id, "CAR7");
    CHECK_STR(body, ">RPV15714+3739438-1220384601512612<");
    CHECK(!last_spliced);
    CHECK_INT(split("CAR7,>RPV15714+3739438-1220384601512612<", id, &body), GR_OK);
    CHECK_STR(id, "CAR7");
    /*
     * The prefix ends at the first '$' or '>', the body starts at the last (sentences hold
     * no other): what lies between is a broken sentence, dropped and flagged.
     */
    CHECK_INT(split("CAR7>RPV15714$<", id, &body), GR_OK);
    CHECK_STR(id, "CAR7");
    CHECK_STR(body, "$<");
    CHECK(last_spliced);
    CHECK_INT(split("CAR7,$GPTXT,a>b", id, &body), GR_OK);
    CHECK_STR(id, "CAR7");
    CHECK_STR(body, ">b");
    CHECK(last_spliced);

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

static void test_taip_back_to_back(void)
{
    struct lines l;
    const char *s = ">RPV15714+3739438-1220384601512612;ID=1234;*7F<"
                    ">RPV15715+3739438-1220384601512612<"
                    ">RPV15716+3739438-1220384601512612*4B<\r\n"
                    ">RTM<\r\n";

    CHECK_INT(frame_all(s, strlen(s), &l), 4);
    CHECK_STR(l.text[0], ">RPV15714+3739438-1220384601512612;ID=1234;*7F<");
    CHECK_STR(l.text[1], ">RPV15715+3739438-1220384601512612<");
    CHECK_STR(l.text[2], ">RPV15716+3739438-1220384601512612*4B<");
    CHECK_STR(l.text[3], ">RTM<");

    /* *off stops right after the '<': the next line starts at the '>'. */
    const char *line;
    size_t off = 0, len;
    CHECK(gr_frame_next(s, strlen(s), &off, &line, &len));
    CHECK_INT(off, 47);
    CHECK_INT(s[off], '>');

    /* With a prefix on the first: only that message carries it (each is a line). */
    s = "CAR7,>RPV1<>RPV2<";
    CHECK_INT(frame_all(s, strlen(s), &l), 2);
    CHECK_STR(l.text[0], "CAR7,>RPV1<");
    CHECK_STR(l.text[1], ">RPV2<");

    /* Only a '<' directly followed by '>' cuts. */
    s = ">RPV1< >RPV2<\n>RPV3<$GPRMC\n<<>>\n";
    CHECK_INT(frame_all(s, strlen(s), &l), 4);
    CHECK_STR(l.text[0], ">RPV1< >RPV2<");
    CHECK_STR(l.text[1], ">RPV3<$GPRMC");
    CHECK_STR(l.text[2], "<<");
    CHECK_STR(l.text[3], ">>");

    /* "<>" at the very end, and a cut right before a terminator. */
    s = ">A<>";
    CHECK_INT(frame_all(s, strlen(s), &l), 2);
    CHECK_STR(l.text[0], ">A<");
    CHECK_STR(l.text[1], ">");
    s = ">A<>B<\r\n>C<";
    CHECK_INT(frame_all(s, strlen(s), &l), 3);
    CHECK_STR(l.text[1], ">B<");
    CHECK_STR(l.text[2], ">C<");

    /* A long run of messages: each is its own line, however many. */
    static char many[6 * 1000 + 1];
    for (int i = 0; i < 1000; i++) {
        memcpy(many + 6 * i, ">RPV1<", 6);
    }
    size_t n = 0;
    off = 0;
    while (gr_frame_next(many, sizeof(many) - 1, &off, &line, &len)) {
        CHECK_INT(len, 6);
        n++;
    }
    CHECK_INT(n, 1000);
}

static void test_json_lines(void)
{
    struct lines l;

    /* JSON strings may hold "<>", '$' and '>': a JSON line ends only at CR or LF. */
    const char *s = "{\"id\":\"X\",\"note\":\"a<>b\"}\r\n"
                    "   {\"note\":\"<>$GPRMC>\"}\n"
                    ">RPV1<>RPV2<\r\n";
    CHECK_INT(frame_all(s, strlen(s), &l), 4);
    CHECK_STR(l.text[0], "{\"id\":\"X\",\"note\":\"a<>b\"}");
    CHECK_STR(l.text[1], "   {\"note\":\"<>$GPRMC>\"}");
    CHECK_STR(l.text[2], ">RPV1<");
    CHECK_STR(l.text[3], ">RPV2<");

    /* Not JSON unless '{' comes first: a prefix makes it a sentence line, cut at "<>". */
    s = "X{\"a\":\"<>\"}";
    CHECK_INT(frame_all(s, strlen(s), &l), 2);
    CHECK_STR(l.text[0], "X{\"a\":\"<");

    /* A long JSON line still comes back whole for the caller to count. */
    static char big[GR_LINE_MAX + 100];
    memset(big, ' ', sizeof(big));
    memcpy(big, "{\"a\":\"", 6);
    memcpy(big + 20, "<>", 2);
    big[sizeof(big) - 1] = '}';
    CHECK_INT(frame_all(big, sizeof(big), &l), 1);
    CHECK_INT(l.len[0], sizeof(big));
}

static void test_resync(void)
{
    char id[GR_DEVICE_ID_MAX + 1];
    const char *body;
    const char *gga = "$GPGGA,182001.00,4042.76800,N,07400.36000,W,1,09,0.9,10.2,M,-34.2,M,,*62";
    char line[300];

    /* A truncated RMC spliced before a complete GGA: the GGA, flagged. */
    snprintf(line, sizeof(line), "$GPRMC,1234%s", gga);
    CHECK_INT(split(line, id, &body), GR_OK);
    CHECK_STR(body, gga);
    CHECK_STR(id, "(none)");
    CHECK(last_spliced);

    /* With an id prefix: the id from before the first '$', the body from the last. */
    snprintf(line, sizeof(line), "AMB-12,$GPRMC,1234%s", gga);
    CHECK_INT(split(line, id, &body), GR_OK);
    CHECK_STR(id, "AMB-12");
    CHECK_STR(body, gga);
    CHECK(last_spliced);
    snprintf(line, sizeof(line), "AMB-12$GPRMC,18$GPRMC,1820%s", gga);
    CHECK_INT(split(line, id, &body), GR_OK);
    CHECK_STR(id, "AMB-12");
    CHECK_STR(body, gga);
    CHECK(last_spliced);

    /* Line noise, control bytes included, between a '$' and the sentence. */
    snprintf(line, sizeof(line), "$G\x01\xff>>\x13%s", gga);
    CHECK_INT(split(line, id, &body), GR_OK);
    CHECK_STR(body, gga);
    CHECK_STR(id, "(none)");
    CHECK(last_spliced);

    /* NMEA cut by TAIP and the other way round. */
    CHECK_INT(split("CAR7,$GPRMC,12>RPV15714+3739438-1220384601512612<", id, &body), GR_OK);
    CHECK_STR(id, "CAR7");
    CHECK_STR(body, ">RPV15714+3739438-1220384601512612<");
    CHECK(last_spliced);
    snprintf(line, sizeof(line), ">RPV157%s", gga);
    CHECK_INT(split(line, id, &body), GR_OK);
    CHECK_STR(body, gga);
    CHECK(last_spliced);

    /* A doubled '$' is a dropped byte too. */
    CHECK_INT(split("$$GPRMC,1", id, &body), GR_OK);
    CHECK_STR(body, "$GPRMC,1");
    CHECK(last_spliced);

    /* Nothing dropped: not flagged. */
    CHECK_INT(split(gga, id, &body), GR_OK);
    CHECK(!last_spliced);
    CHECK_INT(split("AMB-12,$GPRMC,1", id, &body), GR_OK);
    CHECK(!last_spliced);
    CHECK_INT(split("$", id, &body), GR_OK);
    CHECK_STR(body, "$");
    CHECK(!last_spliced);

    /* The prefix rules still apply to what precedes the first '$'/'>'. */
    snprintf(line, sizeof(line), "\x01$GPRMC,1%s", gga);
    CHECK_INT(split(line, id, &body), GR_BAD_ID);
    snprintf(line, sizeof(line), ",$GPRMC,1%s", gga);
    CHECK_INT(split(line, id, &body), GR_BAD_ID);
    /* Printable noise before the first '$' cannot be told from an id. */
    snprintf(line, sizeof(line), "noise$x%s", gga);
    CHECK_INT(split(line, id, &body), GR_OK);
    CHECK_STR(id, "noise");
    CHECK_STR(body, gga);
}

static void test_split_json(void)
{
    char id[GR_DEVICE_ID_MAX + 1];
    const char *body;

    /* The whole line from its '{': the id is inside; '$' and '>' in strings mean nothing. */
    const char *j = "{\"id\":\"AMB-12\",\"note\":\"$GPRMC,1>RPV<\",\"lat\":1}";
    CHECK_INT(split(j, id, &body), GR_OK);
    CHECK_STR(body, j);
    CHECK_STR(id, "(none)");
    CHECK(!last_spliced);

    /* Leading spaces: the body starts at the '{', where ingest looks for it. */
    CHECK_INT(split("  {\"a\":\"$>\"}", id, &body), GR_OK);
    CHECK_STR(body, "{\"a\":\"$>\"}");
    CHECK_STR(id, "(none)");
    CHECK(!last_spliced);

    /* Anything that starts with '{' goes to the JSON decoder, which judges it. */
    CHECK_INT(split("{", id, &body), GR_OK);
    CHECK_STR(body, "{");
    CHECK_INT(split("{garbage", id, &body), GR_OK);

    /* A '{' after other text is not a JSON report; without '$' or '>' it is nothing. */
    CHECK_INT(split("AMB-12,{\"lat\":1}", id, &body), GR_MALFORMED);
    CHECK_INT(split("x{\"a\":\"$GPRMC\"}", id, &body), GR_OK);
    CHECK_STR(id, "x{\"a\":\"");
    CHECK_STR(body, "$GPRMC\"}");

    CHECK_INT(split("   ", id, &body), GR_MALFORMED);
    CHECK_INT(split("<<<", id, &body), GR_MALFORMED);
}

/* A whole payload through framing and splitting, as ingest does it. */
static void test_pipeline(void)
{
    const char *p = "AMB-1,$GPRMC,18$GPGGA,1*00\r\n"
                    ">RPV1;ID=A;<>RPV2<\n"
                    " {\"id\":\"J\",\"s\":\"$><>\"}\r\n"
                    "junk\r\n";
    static const struct {
        enum gr_reason r;
        const char *id, *body;
        bool spliced;
    } want[] = {
        {GR_OK, "AMB-1", "$GPGGA,1*00", true},
        {GR_OK, "(none)", ">RPV1;ID=A;<", false},
        {GR_OK, "(none)", ">RPV2<", false},
        {GR_OK, "(none)", "{\"id\":\"J\",\"s\":\"$><>\"}", false},
        {GR_MALFORMED, "(none)", "(none)", false},
    };
    struct lines l;
    char id[GR_DEVICE_ID_MAX + 1];
    const char *body;

    CHECK_INT(frame_all(p, strlen(p), &l), 5);
    for (int i = 0; i < 5; i++) {
        CHECK_INT(split(l.text[i], id, &body), want[i].r);
        CHECK_STR(id, want[i].id);
        CHECK_STR(body, want[i].body);
        CHECK(last_spliced == want[i].spliced);
    }
}

int main(void)
{
    test_terminators();
    test_several_sentences();
    test_overlong();
    test_prefix();
    test_bad_prefix();
    test_taip_back_to_back();
    test_json_lines();
    test_resync();
    test_split_json();
    test_pipeline();
    return check_result("test_report");
}
