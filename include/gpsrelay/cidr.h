/*
 * cidr.h - address ranges for ingest_allow. Pure.
 */
#ifndef GPSRELAY_CIDR_H
#define GPSRELAY_CIDR_H

#include <stdbool.h>
#include <sys/socket.h>

struct gr_cidr {
    int family;             /* AF_INET or AF_INET6 */
    unsigned char addr[16]; /* network order, host bits zero */
    int prefix;             /* 0-32 or 0-128 */
};

/*
 * Parses "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128). Refuses host
 * bits set beyond the prefix ("10.0.0.1/8": a typo more often than not). Returns 0, or
 * -EINVAL.
 */
int gr_cidr_parse(const char *text, struct gr_cidr *out);

/* True when sa's address is inside c. An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * matches IPv4 ranges. */
bool gr_cidr_match(const struct gr_cidr *c, const struct sockaddr *sa);

#endif
