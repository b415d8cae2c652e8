/*
 * test_addrtable.c - the bounded address table: keys (port or not, IPv4-mapped), zeroed
 * values, eviction order, the bound under a spray, and a random run against a model.
 */
#include "gpsrelay/addrtable.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/un.h>

#include "addr.h"
#include "check.h"

/* The i-th of many distinct senders: 10.x.y.z, or 2001:db8::x:y for odd i. */
static struct sockaddr_storage nth(unsigned i)
{
    char text[64];
    if (i % 2)
        snprintf(text, sizeof text, "2001:db8::%x:%x", i >> 16, i & 0xffff);
    else
        snprintf(text, sizeof text, "10.%u.%u.%u", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
    return addr(text, 4000);
}

#define SA(x) ((const struct sockaddr *)&(x))

struct value {
    int64_t n;
    char tag[20];
};

static bool all_zero(const void *p, size_t len)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < len; i++)
        if (b[i] != 0)
            return false;
    return true;
}

static void test_basics(void)
{
    CHECK(gr_addrtable_new(0, sizeof(struct value), true) == NULL);

    struct gr_addrtable *t = gr_addrtable_new(8, sizeof(struct value), true);
    struct sockaddr_storage a = addr("192.0.2.7", 5000);
    bool evicted = true;

    CHECK(gr_addrtable_get(t, SA(a)) == NULL);
    CHECK_INT(gr_addrtable_count(t), 0);
    struct value *v = gr_addrtable_touch(t, SA(a), &evicted);
    CHECK(v != NULL);
    CHECK(!evicted);
    CHECK(all_zero(v, sizeof(*v)));
    CHECK_INT(gr_addrtable_count(t), 1);
    v->n = 42;
    memset(v->tag, 0xab, sizeof v->tag);

    CHECK(gr_addrtable_get(t, SA(a)) == v);
    CHECK(gr_addrtable_touch(t, SA(a), NULL) == v); /* refreshed, not recreated */
    CHECK_INT(v->n, 42);
    CHECK_INT(gr_addrtable_count(t), 1);

    gr_addrtable_remove(t, SA(a));
    CHECK(gr_addrtable_get(t, SA(a)) == NULL);
    CHECK_INT(gr_addrtable_count(t), 0);
    gr_addrtable_remove(t, SA(a)); /* absent: nothing happens */
    CHECK_INT(gr_addrtable_count(t), 0);

    /* The slot is reused from the free list, and still comes back zeroed. */
    v = gr_addrtable_touch(t, SA(a), NULL);
    CHECK(v != NULL && all_zero(v, sizeof(*v)));
    gr_addrtable_free(t);
    gr_addrtable_free(NULL);
}

/* Counts of what each address holds: up, down, and the entry gone at zero. */
static void test_held(void)
{
    struct gr_addrtable *t = gr_addrtable_new(8, sizeof(unsigned), false);
    struct sockaddr_storage a = addr("192.0.2.7", 5000), b = addr("192.0.2.7", 6000);
    struct sockaddr_storage mapped = addr("::ffff:192.0.2.7", 1), other = addr("2001:db8::1", 1);

    CHECK_INT(gr_addrtable_held(t, SA(a)), 0);
    CHECK(gr_addrtable_hold(t, SA(a)));
    CHECK(gr_addrtable_hold(t, SA(b))); /* without port: the same address */
    CHECK(gr_addrtable_hold(t, SA(other)));
    CHECK_INT(gr_addrtable_held(t, SA(mapped)), 2);
    CHECK_INT(gr_addrtable_count(t), 2);
    gr_addrtable_release(t, SA(mapped));
    CHECK_INT(gr_addrtable_held(t, SA(a)), 1);
    gr_addrtable_release(t, SA(a));
    CHECK_INT(gr_addrtable_held(t, SA(a)), 0);
    CHECK_INT(gr_addrtable_count(t), 1); /* forgotten at zero */
    gr_addrtable_release(t, SA(a));      /* absent: nothing happens */
    CHECK_INT(gr_addrtable_count(t), 1);

    struct sockaddr unix_sa = {.sa_family = AF_UNIX};
    CHECK(!gr_addrtable_hold(t, &unix_sa));
    CHECK_INT(gr_addrtable_held(t, &unix_sa), 0);
    gr_addrtable_free(t);
}

static void test_keys(void)
{
    struct gr_addrtable *by_port = gr_addrtable_new(16, sizeof(int), true);
    struct gr_addrtable *by_addr = gr_addrtable_new(16, sizeof(int), false);
    struct sockaddr_storage a = addr("10.0.0.7", 5000), a2 = addr("10.0.0.7", 5001);
    struct sockaddr_storage b = addr("10.0.0.8", 5000);
    struct sockaddr_storage s6 = addr("2001:db8::7", 5000), s6p = addr("2001:db8::7", 6000);
    struct sockaddr_storage mapped = addr("::ffff:10.0.0.7", 5000);
    struct sockaddr_storage mapped2 = addr("::ffff:10.0.0.7", 5001);
    struct sockaddr_storage compat = addr("::10.0.0.7", 5000); /* not mapped: IPv6 */

    int *va = gr_addrtable_touch(by_port, SA(a), NULL);
    *va = 1;
    CHECK(gr_addrtable_get(by_port, SA(a2)) == NULL); /* address and port */
    CHECK(gr_addrtable_get(by_port, SA(b)) == NULL);
    CHECK(gr_addrtable_get(by_port, SA(mapped)) == va); /* one sender on either socket */
    CHECK(gr_addrtable_get(by_port, SA(mapped2)) == NULL);
    CHECK(gr_addrtable_get(by_port, SA(compat)) == NULL);
    CHECK(gr_addrtable_touch(by_port, SA(mapped), NULL) == va);
    int *v6 = gr_addrtable_touch(by_port, SA(s6), NULL);
    CHECK(v6 != NULL && v6 != va);
    CHECK(gr_addrtable_get(by_port, SA(s6p)) == NULL);
    CHECK_INT(gr_addrtable_count(by_port), 2);
    gr_addrtable_remove(by_port, SA(mapped)); /* removes the IPv4 entry */
    CHECK(gr_addrtable_get(by_port, SA(a)) == NULL);
    CHECK_INT(gr_addrtable_count(by_port), 1);

    va = gr_addrtable_touch(by_addr, SA(a), NULL);
    CHECK(gr_addrtable_get(by_addr, SA(a2)) == va); /* the address only */
    CHECK(gr_addrtable_get(by_addr, SA(mapped2)) == va);
    CHECK(gr_addrtable_get(by_addr, SA(b)) == NULL);
    CHECK(gr_addrtable_get(by_addr, SA(compat)) == NULL);
    v6 = gr_addrtable_touch(by_addr, SA(s6), NULL);
    CHECK(gr_addrtable_get(by_addr, SA(s6p)) == v6);
    CHECK_INT(gr_addrtable_count(by_addr), 2);

    /* Neither IPv4 nor IPv6: no entry, nothing evicted, nothing changed. */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    bool evicted = true;
    CHECK(gr_addrtable_touch(by_addr, (const struct sockaddr *)&un, &evicted) == NULL);
    CHECK(!evicted);
    CHECK(gr_addrtable_get(by_addr, (const struct sockaddr *)&un) == NULL);
    gr_addrtable_remove(by_addr, (const struct sockaddr *)&un);
    CHECK_INT(gr_addrtable_count(by_addr), 2);

    gr_addrtable_free(by_port);
    gr_addrtable_free(by_addr);
}

static void test_eviction_order(void)
{
    struct gr_addrtable *t = gr_addrtable_new(3, sizeof(int), true);
    struct sockaddr_storage a = addr("192.0.2.1", 1), b = addr("192.0.2.2", 1);
    struct sockaddr_storage c = addr("192.0.2.3", 1), d = addr("192.0.2.4", 1);
    struct sockaddr_storage e = addr("192.0.2.5", 1);
    bool evicted;

    gr_addrtable_touch(t, SA(a), NULL);
    gr_addrtable_touch(t, SA(b), NULL);
    gr_addrtable_touch(t, SA(c), &evicted);
    CHECK(!evicted);
    *(int *)gr_addrtable_touch(t, SA(a), &evicted) = 7; /* a is now the newest */
    CHECK(!evicted);

    int *vd = gr_addrtable_touch(t, SA(d), &evicted);
    CHECK(evicted);
    CHECK(vd != NULL && *vd == 0); /* b's slot, zeroed */
    CHECK(gr_addrtable_get(t, SA(b)) == NULL);
    CHECK_INT(gr_addrtable_count(t), 3);

    /* get is a lookup, not a touch: c stays the oldest. */
    CHECK(gr_addrtable_get(t, SA(c)) != NULL);
    gr_addrtable_touch(t, SA(e), &evicted);
    CHECK(evicted);
    CHECK(gr_addrtable_get(t, SA(c)) == NULL);
    CHECK_INT(*(int *)gr_addrtable_get(t, SA(a)), 7);
    CHECK(gr_addrtable_get(t, SA(d)) != NULL);
    CHECK(gr_addrtable_get(t, SA(e)) != NULL);

    /* A removed entry leaves room: the next new one evicts nobody. */
    gr_addrtable_remove(t, SA(d));
    gr_addrtable_touch(t, SA(b), &evicted);
    CHECK(!evicted);
    gr_addrtable_touch(t, SA(c), &evicted); /* full again: a is the oldest now */
    CHECK(evicted);
    CHECK(gr_addrtable_get(t, SA(a)) == NULL);
    gr_addrtable_free(t);
}

static void test_spray(void)
{
    enum { MAX = 100 };
    struct gr_addrtable *t = gr_addrtable_new(MAX, sizeof(unsigned), false);
    int n_evicted = 0;
    size_t peak = 0;
    for (unsigned i = 0; i < 10 * MAX; i++) {
        struct sockaddr_storage s = nth(i);
        bool evicted;
        unsigned *v = gr_addrtable_touch(t, SA(s), &evicted);
        CHECK(v != NULL && *v == 0);
        *v = i + 1;
        n_evicted += evicted;
        if (gr_addrtable_count(t) > peak)
            peak = gr_addrtable_count(t);
    }
    CHECK_INT(gr_addrtable_count(t), MAX);
    CHECK_INT(peak, MAX);
    CHECK_INT(n_evicted, 9 * MAX);
    int kept = 0, right = 0;
    for (unsigned i = 0; i < 10 * MAX; i++) {
        struct sockaddr_storage s = nth(i);
        unsigned *v = gr_addrtable_get(t, SA(s));
        kept += v != NULL;
        right += v != NULL && *v == i + 1 && i >= 9 * MAX; /* the newest MAX, intact */
    }
    CHECK_INT(kept, MAX);
    CHECK_INT(right, MAX);

    for (unsigned i = 9 * MAX; i < 10 * MAX; i++) {
        struct sockaddr_storage s = nth(i);
        gr_addrtable_remove(t, SA(s));
    }
    CHECK_INT(gr_addrtable_count(t), 0);
    gr_addrtable_free(t);
}

/* Values of awkward sizes start aligned for any type and do not overlap one another. */
static void test_layout(void)
{
    static const size_t sizes[] = {0, 1, 7, 17, 73, 200};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        enum { N = 20 };
        size_t size = sizes[k];
        struct gr_addrtable *t = gr_addrtable_new(N, size, true);
        unsigned char *v[N];
        int aligned = 0;
        for (unsigned i = 0; i < N; i++) {
            struct sockaddr_storage s = nth(i);
            v[i] = gr_addrtable_touch(t, SA(s), NULL);
            aligned += v[i] != NULL && (uintptr_t)v[i] % alignof(max_align_t) == 0;
            memset(v[i], (int)i + 1, size);
        }
        CHECK_INT(aligned, N);
        int intact = 0;
        for (unsigned i = 0; i < N; i++) {
            struct sockaddr_storage s = nth(i);
            bool ok = gr_addrtable_get(t, SA(s)) == v[i];
            for (size_t j = 0; j < size; j++)
                ok = ok && v[i][j] == i + 1;
            intact += ok;
        }
        CHECK_INT(intact, N);
        gr_addrtable_free(t);
    }
}

/* A small deterministic generator: the run is the same every time. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

/*
 * Random touches, gets and removes over a pool of keys larger than the table, checked
 * against the obvious model: an array of (key, value, last touch) searched in full.
 */
static void test_against_model(void)
{
    enum { MAX = 32, KEYS = 100, OPS = 200000 };
    struct gr_addrtable *t = gr_addrtable_new(MAX, sizeof(unsigned), true);
    struct {
        bool present;
        unsigned value;
        unsigned long touched;
    } model[KEYS];
    memset(model, 0, sizeof model);
    struct sockaddr_storage keys[KEYS]; /* one address in each family, many ports */
    for (unsigned i = 0; i < KEYS; i++)
        keys[i] = addr(i % 3 ? "198.51.100.1" : "2001:db8::1", 1000 + (int)i);
    size_t n = 0;
    int mismatches = 0;

    for (unsigned long op = 1; op <= OPS; op++) {
        unsigned key = rnd(KEYS);
        const struct sockaddr_storage s = keys[key];
        unsigned what = rnd(10);
        if (what < 6) {
            bool evicted, expect_evicted = false;
            if (!model[key].present && n == MAX) {
                unsigned oldest = KEYS;
                for (unsigned i = 0; i < KEYS; i++)
                    if (model[i].present &&
                        (oldest == KEYS || model[i].touched < model[oldest].touched))
                        oldest = i;
                model[oldest].present = false;
                n--;
                expect_evicted = true;
            }
            if (!model[key].present) {
                model[key].present = true;
                model[key].value = 0;
                n++;
            }
            model[key].touched = op;
            unsigned *v = gr_addrtable_touch(t, SA(s), &evicted);
            mismatches += v == NULL || *v != model[key].value || evicted != expect_evicted;
            if (v != NULL)
                *v = model[key].value = (unsigned)op;
        } else if (what < 9) {
            unsigned *v = gr_addrtable_get(t, SA(s));
            mismatches += model[key].present ? v == NULL || *v != model[key].value : v != NULL;
        } else {
            gr_addrtable_remove(t, SA(s));
            n -= model[key].present;
            model[key].present = false;
        }
        mismatches += gr_addrtable_count(t) != n;
    }
    CHECK_INT(mismatches, 0);
    gr_addrtable_free(t);
}

int main(void)
{
    test_basics();
    test_held();
    test_keys();
    test_eviction_order();
    test_spray();
    test_layout();
    test_against_model();
    return check_result("test_addrtable");
}
