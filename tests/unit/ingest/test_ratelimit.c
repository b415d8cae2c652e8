/*
 * test_ratelimit.c - token buckets per source address: burst, refill, independence,
 * a clock stepping back, and what a spray of sources buys.
 *
 * Rates and steps are chosen so every refill is exact in binary (4 per second in steps of
 * 125 ms is half a token), so the counts asserted are exact too.
 */
#include "gpsrelay/ratelimit.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "addr.h"
#include "check.h"

#define SA(x) ((const struct sockaddr *)&(x))

/* How many of n reports from sa at now_ms pass. */
static int passed(struct gr_ratelimit *rl, const struct sockaddr *sa, int64_t now_ms, int n)
{
    int ok = 0;
    for (int i = 0; i < n; i++)
        ok += gr_ratelimit_allow(rl, sa, now_ms, NULL);
    return ok;
}

static void test_arguments(void)
{
    CHECK(gr_ratelimit_new(16, 1, 0.5) == NULL); /* a burst below one passes nothing */
    CHECK(gr_ratelimit_new(16, -1, 5) == NULL);
    CHECK(gr_ratelimit_new(16, NAN, 5) == NULL);
    CHECK(gr_ratelimit_new(16, 1, INFINITY) == NULL);
    CHECK(gr_ratelimit_new(0, 1, 5) == NULL);
    struct gr_ratelimit *rl = gr_ratelimit_new(16, 0, 1); /* a rate of 0: one report, ever */
    CHECK(rl != NULL);
    struct sockaddr_storage a = addr("192.0.2.1", 1);
    CHECK_INT(passed(rl, SA(a), 0, 3), 1);
    CHECK_INT(passed(rl, SA(a), 1000000000, 3), 0);
    gr_ratelimit_free(rl);
    gr_ratelimit_free(NULL);
}

static void test_burst_and_refill(void)
{
    struct gr_ratelimit *rl = gr_ratelimit_new(16, 4, 2);
    struct sockaddr_storage a = addr("192.0.2.1", 5000);

    /* A new source starts full, whatever the clock reads. */
    CHECK_INT(passed(rl, SA(a), 1000, 5), 2);
    CHECK_INT(passed(rl, SA(a), 1125, 5), 0); /* half a token: not enough */
    CHECK_INT(passed(rl, SA(a), 1250, 5), 1); /* the second half */
    CHECK_INT(passed(rl, SA(a), 1500, 5), 1);
    CHECK_INT(passed(rl, SA(a), 2000, 5), 2);

    /* Refusals take nothing: a steady sender at the rate gets through every time. */
    int ok = 0;
    for (int64_t t = 2250; t <= 4000; t += 250)
        ok += gr_ratelimit_allow(rl, SA(a), t, NULL);
    CHECK_INT(ok, 8);

    /* A long silence refills to the burst, not beyond. */
    CHECK_INT(passed(rl, SA(a), 4000 + 3600 * 1000, 10), 2);
    gr_ratelimit_free(rl);

    /* A fractional burst: 2.5 lets two through, then half a token more makes a third. */
    rl = gr_ratelimit_new(16, 4, 2.5);
    CHECK_INT(passed(rl, SA(a), 0, 5), 2);
    CHECK_INT(passed(rl, SA(a), 125, 5), 1);
    CHECK_INT(passed(rl, SA(a), 250, 5), 0);
    gr_ratelimit_free(rl);
}

static void test_sources(void)
{
    struct gr_ratelimit *rl = gr_ratelimit_new(16, 1, 3);
    struct sockaddr_storage a = addr("192.0.2.1", 5000), a_port = addr("192.0.2.1", 6000);
    struct sockaddr_storage a_mapped = addr("::ffff:192.0.2.1", 7000);
    struct sockaddr_storage b = addr("192.0.2.2", 5000), six = addr("2001:db8::1", 5000);

    CHECK_INT(passed(rl, SA(a), 0, 2), 2);
    CHECK_INT(passed(rl, SA(a_port), 0, 5), 1);   /* one source per address, any port */
    CHECK_INT(passed(rl, SA(a_mapped), 0, 5), 0); /* and on either socket */
    CHECK_INT(passed(rl, SA(b), 0, 5), 3);
    CHECK_INT(passed(rl, SA(six), 0, 5), 3);
    CHECK_INT(passed(rl, SA(a), 1000, 5), 1);

    /* No IP address, nothing to limit; nothing is remembered or evicted for it. */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    bool evicted = true;
    CHECK(gr_ratelimit_allow(rl, (const struct sockaddr *)&un, 0, &evicted));
    CHECK(!evicted);
    CHECK_INT(passed(rl, (const struct sockaddr *)&un, 0, 10), 10);
    gr_ratelimit_free(rl);
}

static void test_clock_steps_back(void)
{
    struct gr_ratelimit *rl = gr_ratelimit_new(16, 4, 2);
    struct sockaddr_storage a = addr("192.0.2.1", 5000);

    CHECK_INT(passed(rl, SA(a), 10000, 5), 2);
    CHECK_INT(passed(rl, SA(a), 5000, 5), 0); /* back five seconds: no refill */
    /* The bucket follows the new time: 250 ms later is one token, not five seconds' wait. */
    CHECK_INT(passed(rl, SA(a), 5250, 5), 1);
    CHECK_INT(passed(rl, SA(a), 5250, 5), 0);
    CHECK_INT(passed(rl, SA(a), -100000, 5), 0); /* even before the epoch */
    CHECK_INT(passed(rl, SA(a), -99750, 5), 1);

    /* Extreme readings refill at most the burst and do not overflow. */
    CHECK_INT(passed(rl, SA(a), INT64_MIN, 5), 0);
    CHECK_INT(passed(rl, SA(a), INT64_MAX, 5), 2);
    CHECK_INT(passed(rl, SA(a), INT64_MAX, 5), 0);
    gr_ratelimit_free(rl);
}

static void test_spray(void)
{
    enum { MAX = 8 };
    struct gr_ratelimit *rl = gr_ratelimit_new(MAX, 0, 1); /* no refill: counts stay exact */
    struct sockaddr_storage victim = addr("203.0.113.1", 1), busy = addr("203.0.113.2", 1);
    char text[32];
    int n_evicted = 0, sprayed_passed = 0, busy_passed = 0;
    bool evicted;

    CHECK(gr_ratelimit_allow(rl, SA(victim), 0, &evicted));
    CHECK(!evicted);
    CHECK(gr_ratelimit_allow(rl, SA(busy), 0, &evicted));
    CHECK(!gr_ratelimit_allow(rl, SA(victim), 0, NULL));

    /* Ten tables' worth of spoofed sources, while `busy` keeps sending (and being
     * refused): every sprayed source gets its one burst, `busy` stays remembered. */
    for (int i = 0; i < 10 * MAX; i++) {
        snprintf(text, sizeof text, "198.51.100.%d", i + 1);
        struct sockaddr_storage s = addr(text, 1);
        sprayed_passed += gr_ratelimit_allow(rl, SA(s), 0, &evicted);
        n_evicted += evicted;
        busy_passed += gr_ratelimit_allow(rl, SA(busy), 0, &evicted);
        n_evicted += evicted;
    }
    CHECK_INT(sprayed_passed, 10 * MAX);
    CHECK_INT(busy_passed, 0);
    /* The table held victim and busy: the first MAX - 2 sprayed sources fitted, every one
     * after that (and nothing else) forgot someone. */
    CHECK_INT(n_evicted, 10 * MAX - (MAX - 2));

    /* victim was forgotten, so it starts again with a full bucket: the documented price. */
    CHECK(gr_ratelimit_allow(rl, SA(victim), 0, &evicted));
    CHECK(evicted);
    CHECK(!gr_ratelimit_allow(rl, SA(victim), 0, NULL));
    gr_ratelimit_free(rl);
}

int main(void)
{
    test_arguments();
    test_burst_and_refill();
    test_sources();
    test_clock_steps_back();
    test_spray();
    return check_result("test_ratelimit");
}
