/*
 * test_mapping.c - the CSV device-to-agency mapping: grouping, lookups by id and by
 * source address, CSV quoting and line endings, and the exact "file:line: message" of each
 * error. argv[1] is a scratch directory.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "gpsrelay/mapping.h"
#include "gpsrelay/report.h"

#define HEADER "device_id,agency_id,label,source_addr\n"

static char scratch[PATH_MAX];
static char csv_path[PATH_MAX + 16];

/* Writes text (len bytes) to the scratch CSV file and returns its path. */
static const char *put_n(const char *text, size_t len)
{
    FILE *f = fopen(csv_path, "wb");
    CHECK(f != NULL);
    if (f != NULL) {
        fwrite(text, 1, len, f);
        fclose(f);
    }
    return csv_path;
}

static const char *put(const char *text)
{
    return put_n(text, strlen(text));
}

static struct gr_mapping *load(const char *text)
{
    struct gr_mapping *m = NULL;
    char err[512] = "";

    CHECK_INT(gr_mapping_load_csv(put(text), &m, err, sizeof(err)), 0);
    CHECK_STR(err, "");
    return m;
}

/* text must fail to load with "<path>" followed by suffix. */
static void check_error(const char *text, const char *suffix)
{
    struct gr_mapping *m = (struct gr_mapping *)&m; /* anything but NULL */
    char err[512], expect[PATH_MAX + 512];

    snprintf(expect, sizeof(expect), "%s%s", csv_path, suffix);
    int rc = gr_mapping_load_csv(put(text), &m, err, sizeof(err));
    CHECK_INT(rc, -EINVAL);
    if (rc == 0) {
        gr_mapping_free(m);
        return;
    }
    CHECK_STR(err, expect);
    CHECK(m == NULL);
}

static struct sockaddr_in v4(const char *addr, int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    CHECK_INT(inet_pton(AF_INET, addr, &sin.sin_addr), 1);
    return sin;
}

static struct sockaddr_in6 v6(const char *addr, int port)
{
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    CHECK_INT(inet_pton(AF_INET6, addr, &sin6.sin6_addr), 1);
    return sin6;
}

static void test_spec_example(void)
{
    struct gr_mapping *m = load(HEADER "AMB-12,county-ems,Medic 12,\n"
                                       "AMB-12,city-fire,Medic 12,\n"
                                       "E-7,city-fire,Engine 7,10.20.0.7\n");
    if (m == NULL)
        return;

    CHECK_INT(gr_mapping_count(m), 2);
    const struct gr_device *amb = gr_mapping_device(m, 0), *e7 = gr_mapping_device(m, 1);
    CHECK_STR(amb->id, "AMB-12");
    CHECK_STR(amb->label, "Medic 12");
    CHECK_INT(amb->n_agencies, 2);
    CHECK_STR(amb->agencies[0], "city-fire"); /* sorted */
    CHECK_STR(amb->agencies[1], "county-ems");
    CHECK(!amb->has_source_addr);
    CHECK_STR(e7->id, "E-7");
    CHECK_STR(e7->label, "Engine 7");
    CHECK_INT(e7->n_agencies, 1);
    CHECK_STR(e7->agencies[0], "city-fire");
    CHECK(e7->has_source_addr);
    CHECK_INT(e7->source_family, AF_INET);
    CHECK(memcmp(e7->source_addr, "\x0a\x14\x00\x07", 4) == 0);

    /* By id, given with a length: the id is often a prefix of a report line. */
    CHECK(gr_mapping_find(m, "AMB-12,$GPRMC,...", 6) == amb);
    CHECK(gr_mapping_find(m, "E-7", 3) == e7);
    CHECK(gr_mapping_find(m, "AMB-1", 5) == NULL);
    CHECK(gr_mapping_find(m, "AMB-123", 7) == NULL);
    CHECK(gr_mapping_find(m, "E-7\0", 4) == NULL);
    CHECK(gr_mapping_find(m, "", 0) == NULL);
    CHECK(gr_mapping_find(m, "ZZZ", 3) == NULL);

    /* By address, port ignored; a dual-stack socket's ::ffff:a.b.c.d is the IPv4 sender. */
    struct sockaddr_in sin = v4("10.20.0.7", 40000);
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin) == e7);
    sin = v4("10.20.0.8", 40000);
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin) == NULL);
    struct sockaddr_in6 sin6 = v6("::ffff:10.20.0.7", 1);
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin6) == e7);
    sin6 = v6("::a14:7", 1); /* IPv4-compatible is not IPv4-mapped */
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin6) == NULL);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sun) == NULL);

    gr_mapping_free(m);
}

static void test_ipv6_and_order(void)
{
    struct gr_mapping *m = load(HEADER "z.9,b,,2001:db8::7\n"
                                       "y@x,a,,::ffff:10.1.1.1\n"
                                       "a:1,c,,10.1.1.2\n"
                                       "z.9,a,,2001:db8::7\n"
                                       "M_2,a,,2001:db8::6\n");
    if (m == NULL)
        return;

    CHECK_INT(gr_mapping_count(m), 4);
    CHECK_STR(gr_mapping_device(m, 0)->id, "M_2"); /* byte order: upper case first */
    CHECK_STR(gr_mapping_device(m, 1)->id, "a:1");
    CHECK_STR(gr_mapping_device(m, 2)->id, "y@x");
    CHECK_STR(gr_mapping_device(m, 3)->id, "z.9");
    CHECK_STR(gr_mapping_device(m, 3)->agencies[0], "a");
    CHECK_STR(gr_mapping_device(m, 3)->agencies[1], "b");

    struct sockaddr_in6 sin6 = v6("2001:db8::7", 0);
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin6) == gr_mapping_device(m, 3));
    sin6 = v6("2001:db8::6", 0);
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin6) == gr_mapping_device(m, 0));
    sin6 = v6("2001:db8::8", 0);
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin6) == NULL);

    /* Written as IPv4-mapped, stored and found as IPv4. */
    const struct gr_device *yx = gr_mapping_find(m, "y@x", 3);
    CHECK(yx != NULL && yx->source_family == AF_INET);
    struct sockaddr_in sin = v4("10.1.1.1", 0);
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin) == yx);
    sin = v4("10.1.1.2", 0);
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin) == gr_mapping_find(m, "a:1", 3));
    gr_mapping_free(m);
}

static void test_quoting_and_line_ends(void)
{
    /* A BOM, CRLF, quoted fields with "" and commas, blank lines, no final newline. */
    struct gr_mapping *m = load("\xEF\xBB\xBF"
                                "device_id,agency_id,label,source_addr\r\n"
                                "\"AMB-12\",county-ems,\"Medic 12, \"\"north\"\"\",\"\"\r\n"
                                "\r\n"
                                "\n"
                                "AMB-12,\"city-fire\",\"Medic 12, \"\"north\"\"\",\r\n"
                                "E-7,city-fire,\"\",\"10.20.0.7\"");
    if (m == NULL)
        return;

    CHECK_INT(gr_mapping_count(m), 2);
    const struct gr_device *amb = gr_mapping_find(m, "AMB-12", 6);
    CHECK(amb != NULL);
    if (amb != NULL) {
        CHECK_STR(amb->label, "Medic 12, \"north\"");
        CHECK_INT(amb->n_agencies, 2);
        CHECK(!amb->has_source_addr);
    }
    const struct gr_device *e7 = gr_mapping_find(m, "E-7", 3);
    CHECK(e7 != NULL && e7->has_source_addr);
    if (e7 != NULL)
        CHECK_STR(e7->label, "");
    gr_mapping_free(m);

    /* A header alone is an empty mapping, not an error. */
    m = load("device_id,agency_id,label,source_addr\r\n");
    if (m != NULL) {
        struct sockaddr_in sin = v4("10.20.0.7", 0);
        CHECK_INT(gr_mapping_count(m), 0);
        CHECK(gr_mapping_find(m, "E-7", 3) == NULL);
        CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin) == NULL);
        gr_mapping_free(m);
    }
}

static void test_bounds(void)
{
    char text[1024], id[GR_DEVICE_ID_MAX + 2], label[GR_LABEL_MAX + 2];
    struct gr_mapping *m;

    memset(id, 'd', sizeof(id) - 2);
    id[sizeof(id) - 2] = '\0';
    memset(label, 'l', sizeof(label) - 2);
    label[sizeof(label) - 2] = '\0';
    snprintf(text, sizeof(text), HEADER "%s,%s,%s,\n", id, id, label);
    m = load(text);
    CHECK(m != NULL && gr_mapping_find(m, id, strlen(id)) != NULL);
    gr_mapping_free(m);

    strcat(id, "d");
    snprintf(text, sizeof(text), HEADER "%s,a,,\n", id);
    check_error(text, ":2: bad device_id \"ddddddddddddddddddddddddddddddddddddddddddddddddddd"
                      "dddddddddddddd\": expected 1 to 64 letters, digits or - _ . : @");
    snprintf(text, sizeof(text), HEADER "a,%s,,\n", id);
    check_error(text, ":2: bad agency_id \"ddddddddddddddddddddddddddddddddddddddddddddddddddd"
                      "dddddddddddddd\": expected 1 to 64 letters, digits or - _ .");
    strcat(label, "l");
    snprintf(text, sizeof(text), HEADER "a,a,%s,\n", label);
    check_error(text, ":2: label longer than 128 bytes");
}

static void test_errors(void)
{
    check_error("", ": empty file; expected the header \"device_id,agency_id,label,source_addr\"");
    check_error("\xEF\xBB\xBF", ": empty file; expected the header "
                                "\"device_id,agency_id,label,source_addr\"");
    check_error("AMB-12,county-ems,Medic 12,\n",
                ":1: expected the header \"device_id,agency_id,label,source_addr\"");
    check_error("device_id,agency_id,label\n",
                ":1: expected the header \"device_id,agency_id,label,source_addr\"");
    check_error("\n" HEADER, ":1: expected the header \"device_id,agency_id,label,source_addr\"");

    check_error(HEADER "E-7,city-fire,Engine 7,10.20.0.300\n",
                ":2: bad source_addr \"10.20.0.300\": expected a numeric IPv4 or IPv6 address");
    check_error(HEADER "E-7,city-fire,Engine 7,engine7.example\n",
                ":2: bad source_addr \"engine7.example\": expected a numeric IPv4 or IPv6 "
                "address");
    check_error(HEADER "E-7,city-fire,Engine 7\n",
                ":2: expected 4 fields (device_id,agency_id,label,source_addr), got 3");
    check_error(HEADER "\nE-7,city-fire,Engine 7,,\n",
                ":3: expected 4 fields (device_id,agency_id,label,source_addr), got 5");
    check_error(HEADER "E-7,city-fire,\"Engine 7,\n", ":2: unterminated quote");
    check_error(HEADER "E-7,city-fire,\"Engine\" 7,\n", ":2: text right after a closing quote");
    check_error(HEADER "E-7,city-fire,Engine \"7\",\n", ":2: quote inside an unquoted field");

    check_error(HEADER "AMB 12,county-ems,,\n", ":2: bad device_id \"AMB 12\": expected 1 to 64 "
                                                "letters, digits or - _ . : @");
    check_error(HEADER "\"AMB,12\",county-ems,,\n", ":2: bad device_id \"AMB,12\": expected 1 to "
                                                    "64 letters, digits or - _ . : @");
    check_error(HEADER ",county-ems,,\n",
                ":2: bad device_id \"\": expected 1 to 64 letters, digits or - _ . : @");
    check_error(HEADER "AMB-12,agency:county,,\n", ":2: bad agency_id \"agency:county\": "
                                                   "expected 1 to 64 letters, digits or - _ .");
    check_error(HEADER "AMB-12,,,\n",
                ":2: bad agency_id \"\": expected 1 to 64 letters, digits or - _ .");

    check_error(HEADER "AMB-12,county-ems,Medic 12,\n"
                       "E-7,city-fire,Engine 7,10.20.0.7\n"
                       "AMB-12,county-ems,Medic 12,\n",
                ":4: duplicate row for device \"AMB-12\" and agency \"county-ems\" (first on "
                "line 2)");
    check_error(HEADER "AMB-12,county-ems,Medic 12,\n"
                       "AMB-12,city-fire,Medic 13,\n",
                ":3: device \"AMB-12\" has a different label on line 2");
    check_error(HEADER "AMB-12,county-ems,Medic 12,\n"
                       "AMB-12,city-fire,,\n",
                ":3: device \"AMB-12\" has a different label on line 2");
    check_error(HEADER "E-7,city-fire,Engine 7,10.20.0.7\n"
                       "E-7,county-ems,Engine 7,10.20.0.8\n",
                ":3: device \"E-7\" has a different source_addr on line 2");
    check_error(HEADER "E-7,county-ems,Engine 7,10.20.0.7\n"
                       "E-7,city-fire,Engine 7,\n",
                ":3: device \"E-7\" has a different source_addr on line 2");
    check_error(HEADER "E-8,city-fire,Engine 8,::ffff:10.20.0.7\n"
                       "E-7,city-fire,Engine 7,10.20.0.7\n",
                ":3: device \"E-7\" has the same source_addr as device \"E-8\" on line 2");

    put_n(HEADER "E-7,city-fire,Engine\0 7,\n", sizeof(HEADER "E-7,city-fire,Engine\0 7,\n") - 1);
    struct gr_mapping *m = NULL;
    char err[512], expect[PATH_MAX + 64];
    snprintf(expect, sizeof(expect), "%s:2: NUL byte in line", csv_path);
    CHECK_INT(gr_mapping_load_csv(csv_path, &m, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, expect);

    char missing[PATH_MAX + 32], expect2[PATH_MAX + 96];
    snprintf(missing, sizeof(missing), "%s/missing.csv", scratch);
    snprintf(expect2, sizeof(expect2), "%s: cannot open: No such file or directory", missing);
    CHECK_INT(gr_mapping_load_csv(missing, &m, err, sizeof(err)), -ENOENT);
    CHECK_STR(err, expect2);
    CHECK(m == NULL);
}

/* Two mappings hold the same devices, agencies, labels and addresses. */
static void check_same(const struct gr_mapping *a, const struct gr_mapping *b)
{
    CHECK_INT(gr_mapping_count(a), gr_mapping_count(b));
    for (size_t i = 0; i < gr_mapping_count(a) && i < gr_mapping_count(b); i++) {
        const struct gr_device *x = gr_mapping_device(a, i), *y = gr_mapping_device(b, i);
        CHECK_STR(x->id, y->id);
        CHECK_STR(x->label, y->label);
        CHECK_INT(x->n_agencies, y->n_agencies);
        for (size_t j = 0; j < x->n_agencies && j < y->n_agencies; j++)
            CHECK_STR(x->agencies[j], y->agencies[j]);
        CHECK_INT(x->has_source_addr, y->has_source_addr);
        if (x->has_source_addr && y->has_source_addr) {
            CHECK_INT(x->source_family, y->source_family);
            CHECK(memcmp(x->source_addr, y->source_addr, sizeof(x->source_addr)) == 0);
        }
    }
}

/* Adds a row that must be accepted. */
static void add(struct gr_mapping_builder *b, const char *device, const char *agency,
                const char *label, const char *addr)
{
    char err[256] = "";

    CHECK_INT(gr_mapping_builder_add(b, device, agency, label, addr, err, sizeof(err)), 0);
    CHECK_STR(err, "");
}

/* A row that must be refused with exactly message (no file:line). */
static void add_error(struct gr_mapping_builder *b, const char *device, const char *agency,
                      const char *label, const char *addr, const char *message)
{
    char err[256] = "";

    CHECK_INT(gr_mapping_builder_add(b, device, agency, label, addr, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, message);
}

/* A label of 2-, 3- and 4-byte UTF-8: "Z\u00fclu \u20ac\U0001f691". */
#define ZULU                                                                                       \
    "Z\xc3\xbc"                                                                                    \
    "lu \xe2\x82\xac\xf0\x9f\x9a\x91"

static void test_builder(void)
{
    struct gr_mapping_builder *b = gr_mapping_builder_new();
    char buf[64], err[256] = "";

    CHECK(b != NULL);
    if (b == NULL)
        return;
    /* Unordered, NULL and "" for "none"; the builder copies: buf is reused between rows. */
    snprintf(buf, sizeof(buf), "%s", "z.9");
    add(b, buf, "b", ZULU, "2001:db8::7");
    snprintf(buf, sizeof(buf), "%s", "AMB-12");
    add(b, buf, "county-ems", "Medic 12", NULL);
    snprintf(buf, sizeof(buf), "%s", "z.9");
    add(b, buf, "a", ZULU, "2001:db8::7");
    snprintf(buf, sizeof(buf), "%s", "county-ems");
    add(b, "E-7", buf, NULL, "::ffff:10.20.0.7");
    add(b, "AMB-12", "city-fire", "Medic 12", "");
    memset(buf, 'x', sizeof(buf));

    /* The CSV checks, without file:line; a refused row changes nothing. */
    add_error(b, "AMB 12", "a", "", "",
              "bad device_id \"AMB 12\": expected 1 to 64 letters, digits or - _ . : @");
    add_error(b, NULL, "a", "", "",
              "bad device_id \"\": expected 1 to 64 letters, digits or - _ . : @");
    add_error(b, "A", "agency:x", "", "",
              "bad agency_id \"agency:x\": expected 1 to 64 letters, digits or - _ .");
    add_error(b, "A", NULL, "", "",
              "bad agency_id \"\": expected 1 to 64 letters, digits or - _ .");
    add_error(b, "A", "a", "Engine\n7", "", "label contains a line break");
    add_error(b, "A", "a", "Engine\r", "", "label contains a line break");
    /* Labels reach consoles in JSON text: Latin-1, overlong forms, surrogates, truncated
     * sequences and code points past U+10FFFF are refused; any other UTF-8 is fine. */
    add_error(b, "A", "a",
              "M\xe9"
              "dic 12",
              "", "label is not UTF-8");
    add_error(b, "A", "a", "\xc0\xaf", "", "label is not UTF-8");
    add_error(b, "A", "a", "\xed\xa0\x80", "", "label is not UTF-8");
    add_error(b, "A", "a", "Medic \xe2\x82", "", "label is not UTF-8");
    add_error(b, "A", "a", "\xf4\x90\x80\x80", "", "label is not UTF-8");
    add_error(b, "A", "a", "\xff", "", "label is not UTF-8");
    add_error(b, "A", "a", "", "10.0.0.0/8",
              "bad source_addr \"10.0.0.0/8\": expected a numeric IPv4 or IPv6 address");
    char label[GR_LABEL_MAX + 2];
    memset(label, 'l', sizeof(label) - 1);
    label[sizeof(label) - 1] = '\0';
    add_error(b, "A", "a", label, "", "label longer than 128 bytes");

    struct gr_mapping *m = gr_mapping_builder_finish(b, err, sizeof(err));
    CHECK(m != NULL);
    CHECK_STR(err, "");
    if (m == NULL)
        return;
    CHECK_INT(gr_mapping_count(m), 3);
    const struct gr_device *amb = gr_mapping_device(m, 0), *e7 = gr_mapping_device(m, 1),
                           *z9 = gr_mapping_device(m, 2);
    CHECK_STR(amb->id, "AMB-12");
    CHECK_STR(amb->label, "Medic 12");
    CHECK_INT(amb->n_agencies, 2);
    CHECK_STR(amb->agencies[0], "city-fire");
    CHECK_STR(amb->agencies[1], "county-ems");
    CHECK(!amb->has_source_addr);
    CHECK_STR(e7->id, "E-7");
    CHECK_STR(e7->label, "");
    CHECK_INT(e7->n_agencies, 1);
    CHECK_STR(e7->agencies[0], "county-ems");
    CHECK_INT(e7->source_family, AF_INET); /* IPv4-mapped is stored as IPv4 */
    CHECK_STR(z9->id, "z.9");
    CHECK_STR(z9->label, ZULU);
    CHECK_INT(z9->n_agencies, 2);
    CHECK_STR(z9->agencies[0], "a");
    CHECK_STR(z9->agencies[1], "b");

    CHECK(gr_mapping_find(m, "AMB-12", 6) == amb);
    struct sockaddr_in sin = v4("10.20.0.7", 1);
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin) == e7);
    struct sockaddr_in6 sin6 = v6("2001:db8::7", 1);
    CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin6) == z9);
    gr_mapping_free(m);

    /* An empty builder is an empty mapping. */
    m = gr_mapping_builder_finish(gr_mapping_builder_new(), err, sizeof(err));
    CHECK(m != NULL && gr_mapping_count(m) == 0);
    if (m != NULL)
        CHECK(gr_mapping_find_addr(m, (struct sockaddr *)&sin) == NULL);
    gr_mapping_free(m);

    /* An abandoned builder frees its rows and copies (ASan's leak check sees to it). */
    b = gr_mapping_builder_new();
    if (b != NULL)
        add(b, "E-7", "city-fire", "Engine 7", "10.20.0.7");
    gr_mapping_builder_free(b);
    gr_mapping_builder_free(NULL);
}

/* The rows, in this order, must fail to finish with message. */
static void check_finish_error(const char *rows[][4], size_t n, const char *message)
{
    struct gr_mapping_builder *b = gr_mapping_builder_new();
    char err[256] = "";

    CHECK(b != NULL);
    if (b == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        add(b, rows[i][0], rows[i][1], rows[i][2], rows[i][3]);
    struct gr_mapping *m = gr_mapping_builder_finish(b, err, sizeof(err));
    CHECK(m == NULL);
    gr_mapping_free(m);
    CHECK_STR(err, message);
}

static void test_builder_conflicts(void)
{
    const char *dup[][4] = {{"AMB-12", "county-ems", "Medic 12", NULL},
                            {"E-7", "city-fire", "Engine 7", "10.20.0.7"},
                            {"AMB-12", "county-ems", "Medic 12", NULL}};
    check_finish_error(dup, 3, "duplicate row for device \"AMB-12\" and agency \"county-ems\"");

    const char *label[][4] = {{"AMB-12", "county-ems", "Medic 12", NULL},
                              {"AMB-12", "city-fire", NULL, NULL}};
    check_finish_error(label, 2, "device \"AMB-12\" has a different label in another row");

    const char *addr[][4] = {{"E-7", "city-fire", "Engine 7", "10.20.0.7"},
                             {"E-7", "county-ems", "Engine 7", "10.20.0.8"}};
    check_finish_error(addr, 2, "device \"E-7\" has a different source_addr in another row");

    /* The later row is the one blamed, whatever the id order. */
    const char *shared[][4] = {{"E-8", "city-fire", "Engine 8", "::ffff:10.20.0.7"},
                               {"E-7", "city-fire", "Engine 7", "10.20.0.7"}};
    check_finish_error(shared, 2, "device \"E-7\" has the same source_addr as device \"E-8\"");
}

/* Saves m to path, loads it back and compares; no temporary file may be left over. */
static void check_save_load(const struct gr_mapping *m, const char *path)
{
    struct gr_mapping *back = NULL;
    char err[PATH_MAX + 256] = "";

    CHECK_INT(gr_mapping_save_csv(m, path, err, sizeof(err)), 0);
    CHECK_STR(err, "");
    CHECK_INT(gr_mapping_load_csv(path, &back, err, sizeof(err)), 0);
    CHECK_STR(err, "");
    if (back != NULL)
        check_same(m, back);
    gr_mapping_free(back);

    /* Only the saved file itself is in the directory, besides the loader's test file. */
    DIR *dir = opendir(scratch);
    int others = 0;
    CHECK(dir != NULL);
    for (struct dirent *e; dir != NULL && (e = readdir(dir)) != NULL;) {
        char full[PATH_MAX + 300];
        snprintf(full, sizeof(full), "%s/%s", scratch, e->d_name);
        if (e->d_name[0] != '.' && strcmp(full, path) != 0 && strcmp(full, csv_path) != 0) {
            fprintf(stderr, "left over: %s\n", full);
            others++;
        }
    }
    if (dir != NULL)
        closedir(dir);
    CHECK_INT(others, 0);
}

static void test_save_csv(void)
{
    char path[PATH_MAX + 32], err[PATH_MAX + 256] = "";
    struct gr_mapping_builder *b = gr_mapping_builder_new();

    snprintf(path, sizeof(path), "%s/cache.csv", scratch);
    CHECK(b != NULL);
    if (b == NULL)
        return;
    add(b, "AMB-12", "county-ems", "Medic 12, \"north\"", NULL);
    add(b, "AMB-12", "city-fire", "Medic 12, \"north\"", NULL);
    add(b, "E-7", "city-fire", "\"Engine\" 7", "10.20.0.7");
    add(b, "z.9", "a", " spaced, ", "2001:db8::7");
    add(b, "y@x", "a", "", "fe80::1:2:3:4");
    add(b, "a:1", "c", "one \"\" two", "::ffff:10.1.1.2");
    add(b, "M_2", "a", "tab\there", "::");
    struct gr_mapping *m = gr_mapping_builder_finish(b, err, sizeof(err));
    CHECK(m != NULL);
    if (m == NULL)
        return;
    check_save_load(m, path);
    check_save_load(m, path); /* replaces the file */

    /* What was written is the CSV a person would write, quoted only where needed. */
    FILE *f = fopen(path, "rb");
    char text[1024] = "";
    CHECK(f != NULL);
    if (f != NULL) {
        size_t len = fread(text, 1, sizeof(text) - 1, f);
        text[len] = '\0';
        fclose(f);
    }
    CHECK_STR(text, HEADER "AMB-12,city-fire,\"Medic 12, \"\"north\"\"\",\n"
                           "AMB-12,county-ems,\"Medic 12, \"\"north\"\"\",\n"
                           "E-7,city-fire,\"\"\"Engine\"\" 7\",10.20.0.7\n"
                           "M_2,a,tab\there,::\n"
                           "a:1,c,\"one \"\"\"\" two\",10.1.1.2\n"
                           "y@x,a,,fe80::1:2:3:4\n"
                           "z.9,a,\" spaced, \",2001:db8::7\n");
    gr_mapping_free(m);

    /* A CSV-loaded mapping round-trips too, and so does an empty one. */
    m = load("\xEF\xBB\xBF"
             "device_id,agency_id,label,source_addr\r\n"
             "\"AMB-12\",county-ems,\"Medic 12, \"\"north\"\"\",\"\"\r\n"
             "E-7,city-fire,\"\",\"10.20.0.7\"");
    if (m != NULL)
        check_save_load(m, path);
    gr_mapping_free(m);
    m = load(HEADER);
    if (m != NULL)
        check_save_load(m, path);
    gr_mapping_free(m);
    unlink(path);
}

static void test_csv_line_break(void)
{
    /* The builder's rule reaches CSV too: a lone CR inside a label could not be saved. */
    check_error(HEADER "E-7,city-fire,\"Engine\r7\",\n", ":2: label contains a line break");
}

static void test_save_csv_errors(void)
{
    char path[PATH_MAX + 32], err[PATH_MAX + 256] = "", expect[PATH_MAX + 256];
    struct gr_mapping *m = load(HEADER "E-7,city-fire,Engine 7,10.20.0.7\n");
    struct stat st;

    if (m == NULL)
        return;
    snprintf(path, sizeof(path), "%s/missing/cache.csv", scratch);
    snprintf(expect, sizeof(expect),
             "%s: cannot create a temporary file: No such file or directory", path);
    CHECK_INT(gr_mapping_save_csv(m, path, err, sizeof(err)), -ENOENT);
    CHECK_STR(err, expect);
    snprintf(path, sizeof(path), "%s/missing", scratch);
    CHECK_INT(stat(path, &st), -1);

    /* A directory where the file should be: the rename fails, the temporary file goes. */
    snprintf(path, sizeof(path), "%s/dir.csv", scratch);
    CHECK_INT(mkdir(path, 0700), 0);
    CHECK_INT(gr_mapping_save_csv(m, path, err, sizeof(err)), -EISDIR);
    CHECK(strncmp(err, path, strlen(path)) == 0 && strstr(err, ": cannot rename ") != NULL &&
          strstr(err, "Is a directory") != NULL);
    rmdir(path);
    check_save_load(m, csv_path); /* and nothing else was left in scratch */
    gr_mapping_free(m);
}

/* What a write killed between open and rename left behind: one file under the fixed
 * temporary name, which the next write reuses (so kills cannot pile files up); and a
 * symlink planted under that name is refused, not written through. */
static void test_save_csv_leftovers(void)
{
    char path[PATH_MAX + 32], tmp[PATH_MAX + 64], victim[PATH_MAX + 32];
    char err[PATH_MAX + 256] = "", expect[PATH_MAX + 256], text[64] = "";
    struct gr_mapping *m = load(HEADER "E-7,city-fire,Engine 7,10.20.0.7\n");

    if (m == NULL)
        return;
    snprintf(path, sizeof(path), "%s/cache.csv", scratch);
    snprintf(tmp, sizeof(tmp), "%s" GR_MAPPING_TMP_SUFFIX, path);
    for (int kill = 0; kill < 3; kill++) {
        FILE *f = fopen(tmp, "w"); /* longer than the mapping: truncated, not overwritten */
        CHECK(f != NULL);
        if (f != NULL) {
            fputs(HEADER "half-written,row,of a much longer mapping than the one saved next", f);
            fclose(f);
        }
        check_save_load(m, path); /* the cache and nothing else: the leftover was reused */
    }

    snprintf(victim, sizeof(victim), "%s/victim", scratch);
    FILE *f = fopen(victim, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs("untouched", f);
        fclose(f);
    }
    CHECK_INT(symlink(victim, tmp), 0);
    CHECK_INT(gr_mapping_save_csv(m, path, err, sizeof(err)), -ELOOP);
    snprintf(expect, sizeof(expect),
             "%s: cannot create a temporary file: Too many levels of symbolic links", path);
    CHECK_STR(err, expect);
    f = fopen(victim, "r");
    CHECK(f != NULL);
    if (f != NULL) {
        CHECK(fgets(text, sizeof(text), f) != NULL);
        fclose(f);
    }
    CHECK_STR(text, "untouched");
    unlink(tmp);
    unlink(victim);
    unlink(path);
    gr_mapping_free(m);
}

/* The file itself is refused, at once, naming it: a FIFO with no writer (which would hold
 * the reader until one came), a directory, a device, and a file over GR_MAPPING_FILE_MAX. */
static void test_file_refusals(void)
{
    struct gr_mapping *m = (struct gr_mapping *)&m; /* anything but NULL */
    char path[PATH_MAX + 32], err[PATH_MAX + 256], expect[PATH_MAX + 256];

    snprintf(path, sizeof(path), "%s/fifo.csv", scratch);
    CHECK_INT(mkfifo(path, 0600), 0);
    CHECK_INT(gr_mapping_load_csv(path, &m, err, sizeof(err)), -EINVAL);
    snprintf(expect, sizeof(expect), "%s: is not a regular file (a FIFO)", path);
    CHECK_STR(err, expect);
    CHECK(m == NULL);
    unlink(path);

    CHECK_INT(gr_mapping_load_csv(scratch, &m, err, sizeof(err)), -EINVAL);
    snprintf(expect, sizeof(expect), "%s: is not a regular file (a directory)", scratch);
    CHECK_STR(err, expect);

    CHECK_INT(gr_mapping_load_csv("/dev/zero", &m, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "/dev/zero: is not a regular file (a character device)");

    /* Sparse: its size is refused without a byte of it being read. */
    put(HEADER);
    CHECK_INT(truncate(csv_path, (off_t)GR_MAPPING_FILE_MAX + 1), 0);
    CHECK_INT(gr_mapping_load_csv(csv_path, &m, err, sizeof(err)), -EFBIG);
    snprintf(expect, sizeof(expect), "%s: is %u bytes, more than the limit of %u", csv_path,
             GR_MAPPING_FILE_MAX + 1, GR_MAPPING_FILE_MAX);
    CHECK_STR(err, expect);
    CHECK(m == NULL);
    put(HEADER);
}

int main(int argc, char **argv)
{
    snprintf(scratch, sizeof(scratch), "%s/test_mapping.XXXXXX", argc > 1 ? argv[1] : "/tmp");
    if (mkdtemp(scratch) == NULL) {
        perror(scratch);
        return 1;
    }
    snprintf(csv_path, sizeof(csv_path), "%s/m.csv", scratch);

    test_spec_example();
    test_ipv6_and_order();
    test_quoting_and_line_ends();
    test_bounds();
    test_errors();
    test_builder();
    test_builder_conflicts();
    test_save_csv();
    test_save_csv_errors();
    test_csv_line_break();
    test_file_refusals();
    test_save_csv_leftovers();

    unlink(csv_path);
    rmdir(scratch);
    return check_result("test_mapping");
}
