/*
 * test_mapping_skip.c - gr_mapping_builder_finish_skipping, the PostgreSQL source's way of
 * finishing a mapping: each conflict leaves out only what cannot stand, with one report per
 * row or device, where gr_mapping_builder_finish refuses the whole mapping.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "check.h"
#include "gpsrelay/mapping.h"

struct reports {
    int n;
    char last[512];
};

static void on_skipped(void *ctx, const char *why)
{
    struct reports *r = ctx;
    r->n++;
    snprintf(r->last, sizeof(r->last), "%s", why);
}

struct row {
    const char *device, *agency, *label, *source_addr;
};

/* rows: up to one with a NULL device. */
static struct gr_mapping_builder *builder(const struct row *rows)
{
    struct gr_mapping_builder *b = gr_mapping_builder_new();
    char err[256];
    for (; rows->device != NULL; rows++)
        CHECK_INT(gr_mapping_builder_add(b, rows->device, rows->agency, rows->label,
                                         rows->source_addr, err, sizeof(err)),
                  0);
    return b;
}

/* The same rows: refused whole by the strict finish; the skipping one's mapping. */
static struct gr_mapping *finish_both(const struct row *rows, struct reports *rep)
{
    char err[256] = "";
    CHECK(gr_mapping_builder_finish(builder(rows), err, sizeof(err)) == NULL);
    CHECK(err[0] != '\0');
    err[0] = '\0';
    *rep = (struct reports){0};
    struct gr_mapping *m =
        gr_mapping_builder_finish_skipping(builder(rows), on_skipped, rep, err, sizeof(err));
    CHECK(m != NULL);
    CHECK_STR(err, "");
    return m;
}

static const struct gr_device *from(const struct gr_mapping *m, const char *ip)
{
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    struct sockaddr_in sin = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, ip, &sin.sin_addr) == 1)
        return gr_mapping_find_addr(m, (struct sockaddr *)&sin);
    CHECK_INT(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
    return gr_mapping_find_addr(m, (struct sockaddr *)&sin6);
}

/* 10.0.0.7 and ::ffff:10.0.0.7 are one sender: neither device keeps it, both stay. */
static void test_shared_addr(void)
{
    static const struct row rows[] = {
        {"D7", "a1", "", "10.0.0.7"},
        {"D8", "a1", "", "::ffff:10.0.0.7"},
        {"D8", "a2", "", "::ffff:10.0.0.7"},
        {"D9", "a1", "", "10.0.0.9"},
        {"E1", "a1", "", NULL},
        {NULL},
    };
    struct reports rep;
    struct gr_mapping *m = finish_both(rows, &rep);
    CHECK_INT(rep.n, 2);
    CHECK_STR(rep.last, "device \"D8\": source_addr 10.0.0.7 is also device \"D7\"'s; neither "
                        "keeps it");
    CHECK_INT(gr_mapping_count(m), 4);
    CHECK(from(m, "10.0.0.7") == NULL);
    CHECK(from(m, "::ffff:10.0.0.7") == NULL);
    CHECK(from(m, "10.0.0.9") == gr_mapping_find(m, "D9", 2));
    const struct gr_device *d8 = gr_mapping_find(m, "D8", 2);
    CHECK(d8 != NULL && !d8->has_source_addr && d8->n_agencies == 2);
    gr_mapping_free(m);
}

/* Three devices on one address: all three lose it, one report each. */
static void test_three_share(void)
{
    static const struct row rows[] = {
        {"A", "a1", "", "2001:db8::1"},
        {"B", "a1", "", "2001:db8::1"},
        {"C", "a1", "", "2001:db8::1"},
        {NULL},
    };
    struct reports rep;
    struct gr_mapping *m = finish_both(rows, &rep);
    CHECK_INT(rep.n, 3);
    CHECK_INT(gr_mapping_count(m), 3);
    CHECK(from(m, "2001:db8::1") == NULL);
    gr_mapping_free(m);
}

/* A repeated pair is left out, the device kept with its one agency. */
static void test_duplicate_pair(void)
{
    static const struct row rows[] = {
        {"D1", "a1", "L", "10.0.0.1"},
        {"D1", "a1", "L", "10.0.0.1"},
        {NULL},
    };
    struct reports rep;
    struct gr_mapping *m = finish_both(rows, &rep);
    CHECK_INT(rep.n, 1);
    CHECK_STR(rep.last, "device \"D1\", agency \"a1\": a duplicate row; left out");
    const struct gr_device *d1 = gr_mapping_find(m, "D1", 2);
    CHECK(d1 != NULL && d1->n_agencies == 1);
    CHECK(from(m, "10.0.0.1") == d1);
    gr_mapping_free(m);
}

/* A device whose rows disagree on its address keeps none; on its label, the odd row goes. */
static void test_device_disagrees(void)
{
    static const struct row addr_rows[] = {
        {"D1", "a1", "", "10.0.0.1"},
        {"D1", "a2", "", "10.0.0.2"},
        {NULL},
    };
    struct reports rep;
    struct gr_mapping *m = finish_both(addr_rows, &rep);
    CHECK_INT(rep.n, 1);
    CHECK_STR(rep.last, "device \"D1\": rows with different source_addr values; it keeps none");
    CHECK(from(m, "10.0.0.1") == NULL);
    CHECK(from(m, "10.0.0.2") == NULL);
    CHECK_INT(gr_mapping_find(m, "D1", 2)->n_agencies, 2);
    gr_mapping_free(m);

    static const struct row label_rows[] = {
        {"D1", "a1", "One", NULL},
        {"D1", "a2", "Other", NULL},
        {"D1", "a3", "One", NULL},
        {NULL},
    };
    m = finish_both(label_rows, &rep);
    CHECK_INT(rep.n, 1);
    CHECK_STR(rep.last,
              "device \"D1\", agency \"a2\": another label than in its other rows; left out");
    const struct gr_device *d1 = gr_mapping_find(m, "D1", 2);
    CHECK(d1 != NULL && d1->n_agencies == 2);
    CHECK_STR(d1->label, "One");
    gr_mapping_free(m);
}

/* Nothing to skip: the same mapping as the strict finish, and no report. */
static void test_clean(void)
{
    static const struct row rows[] = {
        {"D1", "a1", "", "10.0.0.1"},
        {"D2", "a1", "", "::ffff:10.0.0.2"},
        {NULL},
    };
    struct reports rep = {0};
    char err[256] = "";
    struct gr_mapping *m =
        gr_mapping_builder_finish_skipping(builder(rows), on_skipped, &rep, err, sizeof(err));
    CHECK(m != NULL);
    CHECK_INT(rep.n, 0);
    CHECK(from(m, "10.0.0.2") == gr_mapping_find(m, "D2", 2));
    gr_mapping_free(m);
}

int main(void)
{
    test_shared_addr();
    test_three_share();
    test_duplicate_pair();
    test_device_disagrees();
    test_clean();
    return check_result("unit_mapping_skip");
}
