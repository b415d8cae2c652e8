/*
 * test_identity.c - the sender -> device id table: TTL, update, bound and eviction order,
 * and the proven senders a spray of unknown ones cannot push out.
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

/*
 * The spray: an AirLink modem named itself with $DEVID and reports; then 70,000
 * spoofed senders of $DEVID, more than the table holds. The modem's id is still known.
 */
static void test_spray(void)
{
    struct gr_identity *t = gr_identity_new(GR_IDENTITY_MAX);
    struct sockaddr_in modem = v4("10.0.0.7", 5000);
    CHECK_INT(gr_identity_put(t, SA(modem), "0x00A0F4D2C3B4E5F6", 18, 0), 0);
    CHECK_STR(gr_identity_get(t, SA(modem), 1000), "0x00A0F4D2C3B4E5F6");
    CHECK_INT(gr_identity_confirm(t, SA(modem), 1000), 0); /* its report found the device */
    long evicted = 0;
    for (int i = 0; i < 70000; i++) {
        struct sockaddr_in sa = v4("198.51.100.1", 0);
        sa.sin_addr.s_addr = htonl(0xc6336400u + (uint32_t)(i >> 16));
        sa.sin_port = htons((uint16_t)i);
        evicted += gr_identity_put(t, SA(sa), "0xDEADBEEF", 10, 2000);
    }
    CHECK_STR(gr_identity_get(t, SA(modem), 3000), "0x00A0F4D2C3B4E5F6");
    CHECK_INT(evicted, 70000 - GR_IDENTITY_MAX); /* the spray filled its class: counted */
    CHECK_INT(gr_identity_count(t), GR_IDENTITY_MAX + 1);
    gr_identity_free(t);
}

/* The proven class: entered by a confirm, left by age, by naming another id, or to make
 * room for another proven sender (the one that reported least recently). */
static void test_proven(void)
{
    enum { MAX = 4 };
    struct gr_identity *t = gr_identity_new(MAX);
    struct sockaddr_in m[MAX + 1];
    char id[8];
    for (int i = 0; i <= MAX; i++) {
        m[i] = v4("10.0.0.1", 100 + i);
        int n = snprintf(id, sizeof id, "M%d", i);
        CHECK_INT(gr_identity_put(t, SA(m[i]), id, (size_t)n, 0), 0);
        if (i == 0)
            CHECK_INT(gr_identity_proven_count(t), 0);
        if (i < MAX) /* each report moves it to the proven class: room for the next */
            CHECK_INT(gr_identity_confirm(t, SA(m[i]), i), 0);
    }
    struct sockaddr_in stranger = v4("10.0.0.2", 1);
    CHECK_INT(gr_identity_confirm(t, SA(stranger), 0), 0); /* nothing remembered: nothing */
    CHECK_INT(gr_identity_proven_count(t), MAX);
    CHECK_INT(gr_identity_confirm(t, SA(m[0]), 10), 0);   /* m[0] reports again: the newest */
    CHECK_INT(gr_identity_confirm(t, SA(m[MAX]), 11), 1); /* full: m[1] goes, counted */
    CHECK(gr_identity_get(t, SA(m[1]), 12) == NULL);
    CHECK_STR(gr_identity_get(t, SA(m[0]), 12), "M0");
    CHECK_STR(gr_identity_get(t, SA(m[MAX]), 12), "M4");

    /* The same id again renews the TTL and keeps m[0] proven; another id demotes m[2]. */
    CHECK_INT(gr_identity_put(t, SA(m[0]), "M0", 2, 5 * MIN_MS), 0);
    CHECK_INT(gr_identity_put(t, SA(m[2]), "N2", 2, 5 * MIN_MS), 0);
    CHECK_INT(gr_identity_proven_count(t), MAX - 1);
    CHECK_STR(gr_identity_get(t, SA(m[2]), 5 * MIN_MS), "N2");
    /* Age: m[3] was named at 0, so at 10 min it is forgotten, proven or not. */
    CHECK(gr_identity_get(t, SA(m[3]), 10 * MIN_MS) == NULL);
    CHECK_STR(gr_identity_get(t, SA(m[0]), 10 * MIN_MS), "M0");
    CHECK_INT(gr_identity_proven_count(t), MAX - 2);
    gr_identity_free(t);
}

int main(void)
{
    test_ttl_and_ports();
    test_bound();
    test_spray();
    test_proven();
    return check_result("test_identity");
}
