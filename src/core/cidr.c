/*
 * cidr.c - address ranges: parsing "addr/prefix" strictly, matching a sender against one.
 *
 * What the parser accepts, and why:
 * - The address is whatever inet_pton() takes: dotted quads (glibc refuses leading zeros
 *   in an octet, so "010.0.0.0" cannot be misread as octal) and every IPv6 form. No zone
 *   ids ("fe80::1%eth0"), no surrounding spaces.
 * - The prefix is plain decimal with no sign, no spaces and no leading zero ("/8", "/0",
 *   not "/08" or "/+8"): the same rule as the octets, and a range in an allow list should
 *   have one spelling. A trailing "/" with no prefix is refused, not read as the whole
 *   address.
 * - "::ffff:a.b.c.d/n" with n >= 96 is stored as the IPv4 range a.b.c.d/(n-96): senders
 *   are matched after unmapping, so it would otherwise never match anything.
 */
#include "gpsrelay/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int max_prefix(int family)
{
    return family == AF_INET ? 32 : 128;
}

/* The bits of byte i that lie inside a /prefix. */
static unsigned char prefix_mask(int prefix, int i)
{
    int bits = prefix - 8 * i;
    if (bits >= 8)
        return 0xff;
    if (bits <= 0)
        return 0;
    return (unsigned char)(0xff << (8 - bits));
}

/* Digits only, no leading zero, at most max. Returns 0, or -EINVAL. */
static int parse_prefix(const char *p, int max, int *out)
{
    if (*p == '\0' || (p[0] == '0' && p[1] != '\0'))
        return -EINVAL;
    int v = 0;
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (*p - '0');
        if (v > max) /* also stops the sum long before it could overflow */
            return -EINVAL;
    }
    *out = v;
    return 0;
}

int gr_cidr_parse(const char *text, struct gr_cidr *out)
{
    char addr[INET6_ADDRSTRLEN]; /* the longest address text, with its NUL */
    const char *slash = strchr(text, '/');
    size_t len = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (len == 0 || len >= sizeof(addr))
        return -EINVAL;
    memcpy(addr, text, len);
    addr[len] = '\0';

    struct gr_cidr c;
    memset(&c, 0, sizeof(c));
    c.family = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;
    if (inet_pton(c.family, addr, c.addr) != 1)
        return -EINVAL;
    c.prefix = max_prefix(c.family);
    if (slash != NULL && parse_prefix(slash + 1, c.prefix, &c.prefix) < 0)
        return -EINVAL;

    /* "10.0.0.1/8" is a typo for 10.0.0.1/32 or 10.0.0.0/8 more often than not. */
    for (int i = 0; i < 16; i++)
        if (c.addr[i] & (unsigned char)~prefix_mask(c.prefix, i))
            return -EINVAL;

    if (c.family == AF_INET6 && c.prefix >= 96 && memcmp(c.addr, v4mapped, 12) == 0) {
        c.family = AF_INET;
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.prefix -= 96;
    }
    *out = c;
    return 0;
}

bool gr_cidr_match(const struct gr_cidr *c, const struct sockaddr *sa)
{
    unsigned char a[16];
    int family;
    if (sa->sa_family == AF_INET) {
        family = AF_INET;
        memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const unsigned char *s6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(s6, v4mapped, 12) == 0) {
            family = AF_INET;
            memcpy(a, s6 + 12, 4);
        } else {
            family = AF_INET6;
            memcpy(a, s6, 16);
        }
    } else {
        return false;
    }
    /* The prefix bound guards a range not made by gr_cidr_parse() from reading past addr[]. */
    if (family != c->family || c->prefix < 0 || c->prefix > max_prefix(family))
        return false;
    for (int i = 0; 8 * i < c->prefix; i++)
        if ((a[i] ^ c->addr[i]) & prefix_mask(c->prefix, i))
            return false;
    return true;
}
