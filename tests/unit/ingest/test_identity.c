/*
 * test_identity.c - the sender -> device id table: TTL, update, bound and eviction order.
 */
#include "gpsrelay/identity.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>

#include "check.h"

static struct sockaddr_in v4(const char *addr, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, addr, &sa.sin_addr);
    return sa;
}

#define SA(x)  ((const struct sockaddr *)&(x))
#define MIN_MS (60 * 1000)

static void test_ttl_and_ports(void)
{
    struct gr_identity *t = gr_identity_new(8);
    struct sockaddr_in a = v4("10.0.0.7", 5000), a_other_port = v4("10.0.0.7", 5001);
    struct sockaddr_in6 six = {.sin6_family = AF_INET6, .sin6_port = htons(5000)};
    inet_pton(AF_INET6, "2001:db8::7", &six.sin6_addr);

    CHECK(gr_identity_get(t, SA(a), 0) == NULL);
    CHECK_INT(gr_identity_put(t, SA(a), "0x00A0F8", 8, 0), 0);
    CHECK_STR(gr_identity_get(t, SA(a), 9 * MIN_MS), "0x00A0F8");
    CHECK(gr_identity_get(t, SA(a_other_port), 0) == NULL); /* address AND port */
    CHECK_INT(gr_identity_put(t, SA(six), "CP-1", 4, 0), 0);
    CHECK_STR(gr_identity_get(t, SA(six), 0), "CP-1");

    /* A new identity sentence renews the ten minutes and may change the id. */
    CHECK_INT(gr_identity_put(t, SA(a), "0x00A0F9", 8, 5 * MIN_MS), 0);
    CHECK_STR(gr_identity_get(t, SA(a), 14 * MIN_MS), "0x00A0F9");
    CHECK(gr_identity_get(t, SA(a), 15 * MIN_MS) == NULL); /* expired and forgotten */
    CHECK_INT(gr_identity_count(t), 1);

    char long_id[80];
    memset(long_id, 'x', sizeof long_id);
    CHECK_INT(gr_identity_put(t, SA(a), long_id, sizeof long_id, 0), -EINVAL);
    struct sockaddr unix_sa = {.sa_family = AF_UNIX};
    CHECK_INT(gr_identity_put(t, &unix_sa, "x", 1, 0), -EINVAL);
    gr_identity_free(t);
}

static void test_bound(void)
{
    enum { MAX = 100 };
    struct gr_identity *t = gr_identity_new(MAX);
    char id[16];
    int evicted = 0;
    /* A spray of 10x the bound: memory stays fixed, the newest senders stay known. */
    for (int i = 0; i < 10 * MAX; i++) {
        struct sockaddr_in sa = v4("192.0.2.1", 1000 + i);
        int n = snprintf(id, sizeof id, "D%d", i);
        int rc = gr_identity_put(t, SA(sa), id, (size_t)n, i);
        CHECK(rc == 0 || rc == 1);
        evicted += rc;
    }
    CHECK_INT(gr_identity_count(t), MAX);
    CHECK_INT(evicted, 9 * MAX);
    struct sockaddr_in newest = v4("192.0.2.1", 1000 + 10 * MAX - 1);
    struct sockaddr_in oldest_kept = v4("192.0.2.1", 1000 + 9 * MAX);
    struct sockaddr_in forgotten = v4("192.0.2.1", 1000 + 9 * MAX - 1);
    CHECK_STR(gr_identity_get(t, SA(newest), 0), "D999");
    CHECK_STR(gr_identity_get(t, SA(oldest_kept), 0), "D900");
    CHECK(gr_identity_get(t, SA(forgotten), 0) == NULL);

    /* Updating an entry makes it the newest: it survives the next eviction. */
    CHECK_INT(gr_identity_put(t, SA(oldest_kept), "D900", 4, 0), 0);
    struct sockaddr_in extra = v4("192.0.2.2", 1);
    CHECK_INT(gr_identity_put(t, SA(extra), "X", 1, 0), 1);
    CHECK_STR(gr_identity_get(t, SA(oldest_kept), 0), "D900");
    struct sockaddr_in next_oldest = v4("192.0.2.1", 1000 + 9 * MAX + 1);
    CHECK(gr_identity_get(t, SA(next_oldest), 0) == NULL);
    gr_identity_free(t);
}

int main(void)
{
    test_ttl_and_ports();
    test_bound();
    return check_result("test_identity");
}
