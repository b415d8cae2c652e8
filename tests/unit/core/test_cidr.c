/*
 * test_cidr.c - address ranges: what parses (and what is refused, with cidr.c's reasons),
 * and matching at the edges of ranges, /0, IPv6 and IPv4-mapped senders.
 */
#include "gpsrelay/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "addr.h"
#include "check.h"

/* Parses text, which must be valid, and checks the result against family, prefix and
 * the network address written out as text. */
static void check_parse(const char *text, int family, const char *network, int prefix)
{
    struct gr_cidr c;
    unsigned char expect[16] = {0};
    CHECK_INT(inet_pton(family, network, expect), 1);
    int rc = gr_cidr_parse(text, &c);
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  refused: \"%s\"\n", text);
        return;
    }
    CHECK_INT(c.family, family);
    CHECK_INT(c.prefix, prefix);
    CHECK(memcmp(c.addr, expect, sizeof(expect)) == 0);
}

static void test_parse_good(void)
{
    check_parse("10.0.0.0/8", AF_INET, "10.0.0.0", 8);
    check_parse("192.0.2.7", AF_INET, "192.0.2.7", 32); /* a bare address is one host */
    check_parse("192.0.2.7/32", AF_INET, "192.0.2.7", 32);
    check_parse("192.0.2.4/31", AF_INET, "192.0.2.4", 31);
    check_parse("0.0.0.0/0", AF_INET, "0.0.0.0", 0);
    check_parse("255.255.255.255", AF_INET, "255.255.255.255", 32);
    check_parse("2001:db8::/32", AF_INET6, "2001:db8::", 32);
    check_parse("2001:db8:8000::/33", AF_INET6, "2001:db8:8000::", 33);
    check_parse("2001:DB8::1", AF_INET6, "2001:db8::1", 128);
    check_parse("2001:0db8:0000:0000:0000:0000:0000:0001/128", AF_INET6, "2001:db8::1", 128);
    check_parse("fe80::/10", AF_INET6, "fe80::", 10);
    check_parse("::/0", AF_INET6, "::", 0);
    check_parse("::1", AF_INET6, "::1", 128);
    /* IPv4-mapped ranges become the IPv4 ranges they name: senders are unmapped. */
    check_parse("::ffff:10.0.0.0/104", AF_INET, "10.0.0.0", 8);
    check_parse("::ffff:192.0.2.7", AF_INET, "192.0.2.7", 32);
    check_parse("::ffff:0:0/96", AF_INET, "0.0.0.0", 0);
    check_parse("::fffe:0:0/95", AF_INET6, "::fffe:0:0", 95); /* wider: stays IPv6 */
    check_parse("::10.0.0.1", AF_INET6, "::10.0.0.1", 128);   /* not mapped */
}

static void test_parse_bad(void)
{
    static const char *const bad[] = {
        "",
        "10.0.0.1/8",          /* host bits set: a typo for /32 or for 10.0.0.0/8 */
        "10.0.0.0/0",          /* likewise */
        "10.0.0.0/33",         /* beyond the address */
        "10.0.0.0/",           /* no prefix */
        "/8",                  /* no address */
        "10.0.0.0/08",         /* leading zero, refused as inet_pton refuses "010" */
        "10.0.0.0/+8",         /* digits only */
        "10.0.0.0/-1",         /* digits only */
        "10.0.0.0/8 ",         /* no surrounding space */
        " 10.0.0.0/8",         /* likewise */
        "10.0.0.0 /8",         /* likewise */
        "10.0.0.0/8/8",        /* one prefix */
        "10.0.0.0/0x8",        /* decimal */
        "10.0.0/8",            /* four octets */
        "10.0.0.0.0/8",        /* four octets */
        "010.0.0.0/8",         /* no octal octets */
        "256.0.0.0/8",         /* octets to 255 */
        "10.0.0.0/4294967304", /* 2^32 + 8: no wrap-around to 8 */
        "2001:db8::/129",
        "2001:db8::/032",
        "2001:db8:8000::/32", /* host bits */
        "2001:db8::1/127",
        "::/",
        "fe80::1%eth0", /* zone ids name an interface, not a range */
        "2001:db8:::/48",
        "gateway.example/24",
        "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555", /* longer than any address */
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/8",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* Refused, and the output is left alone. */
        struct gr_cidr c = {.family = 12345, .prefix = -7};
        int rc = gr_cidr_parse(bad[i], &c);
        CHECK_INT(rc, -EINVAL);
        CHECK(c.family == 12345 && c.prefix == -7);
        if (rc != -EINVAL)
            fprintf(stderr, "  accepted: \"%s\"\n", bad[i]);
    }
}

/* Whether the address text falls inside the range text (both valid). */
static bool in(const char *range, const char *address)
{
    struct gr_cidr c;
    CHECK_INT(gr_cidr_parse(range, &c), 0);
    struct sockaddr_storage ss = addr(address, 5000);
    return gr_cidr_match(&c, (const struct sockaddr *)&ss);
}

static void test_match(void)
{
    CHECK(in("10.0.0.0/8", "10.0.0.0"));
    CHECK(in("10.0.0.0/8", "10.255.255.255"));
    CHECK(!in("10.0.0.0/8", "9.255.255.255"));
    CHECK(!in("10.0.0.0/8", "11.0.0.0"));
    CHECK(in("172.16.0.0/12", "172.31.255.255")); /* a prefix inside a byte */
    CHECK(!in("172.16.0.0/12", "172.32.0.0"));
    CHECK(!in("172.16.0.0/12", "172.15.255.255"));
    CHECK(in("192.0.2.4/31", "192.0.2.4"));
    CHECK(in("192.0.2.4/31", "192.0.2.5"));
    CHECK(!in("192.0.2.4/31", "192.0.2.3"));
    CHECK(!in("192.0.2.4/31", "192.0.2.6"));
    CHECK(in("192.0.2.7", "192.0.2.7"));
    CHECK(!in("192.0.2.7", "192.0.2.6"));
    CHECK(!in("192.0.2.7", "192.0.2.8"));
    CHECK(in("128.0.0.0/1", "255.255.255.255"));
    CHECK(!in("128.0.0.0/1", "127.255.255.255"));

    CHECK(in("0.0.0.0/0", "0.0.0.0"));
    CHECK(in("0.0.0.0/0", "255.255.255.255"));
    CHECK(!in("0.0.0.0/0", "2001:db8::1")); /* families must agree */
    CHECK(in("::/0", "2001:db8::1"));
    CHECK(in("::/0", "::"));
    CHECK(!in("::/0", "10.0.0.1"));
    CHECK(!in("::/0", "::ffff:10.0.0.1")); /* an IPv4 sender, whichever socket */

    CHECK(in("2001:db8::/32", "2001:db8::"));
    CHECK(in("2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK(!in("2001:db8::/32", "2001:db9::"));
    CHECK(!in("2001:db8::/32", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK(in("fe80::/10", "febf:ffff::1"));
    CHECK(!in("fe80::/10", "fec0::1"));
    CHECK(!in("fe80::/10", "fe7f:ffff::1"));
    CHECK(in("2001:db8::1", "2001:db8::1"));
    CHECK(!in("2001:db8::1", "2001:db8::"));
    CHECK(!in("2001:db8::1", "2001:db8::2"));
    CHECK(in("2001:db8::/127", "2001:db8::1"));
    CHECK(!in("2001:db8::/127", "2001:db8::2"));

    /* IPv4-mapped senders (a dual-stack socket) match IPv4 ranges, at the edges too. */
    CHECK(in("10.0.0.0/8", "::ffff:10.0.0.0"));
    CHECK(in("10.0.0.0/8", "::ffff:10.255.255.255"));
    CHECK(!in("10.0.0.0/8", "::ffff:11.0.0.0"));
    CHECK(in("0.0.0.0/0", "::ffff:1.2.3.4"));
    CHECK(!in("10.0.0.0/8", "::10.0.0.1")); /* compatible, not mapped: an IPv6 address */
    CHECK(!in("10.0.0.0/8", "64:ff9b::10.0.0.1"));
    CHECK(in("::ffff:10.0.0.0/104", "10.1.2.3"));
    CHECK(in("::ffff:10.0.0.0/104", "::ffff:10.1.2.3"));
    CHECK(!in("::ffff:10.0.0.0/104", "11.1.2.3"));
    CHECK(in("::fffe:0:0/95", "::fffe:1.2.3.4"));
    CHECK(!in("::fffe:0:0/95", "::ffff:1.2.3.4")); /* unmapped first: now IPv4 */

    struct gr_cidr all;
    CHECK_INT(gr_cidr_parse("0.0.0.0/0", &all), 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    CHECK(!gr_cidr_match(&all, (const struct sockaddr *)&un));
    struct gr_cidr broken = {.family = AF_INET, .prefix = 200}; /* not from gr_cidr_parse */
    struct sockaddr_storage a = addr("10.0.0.1", 5000);
    CHECK(!gr_cidr_match(&broken, (const struct sockaddr *)&a));
}

int main(void)
{
    test_parse_good();
    test_parse_bad();
    test_match();
    return check_result("test_cidr");
}
