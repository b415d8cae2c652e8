/*
 * test_admission.c - the per-source limits admission keeps for both console transports:
 * each kind counted on its own, refusals counted under per_source_limit, a reload taking
 * effect for what comes next. (The Origin and token checks read a live request: the
 * integration tests and security_js cover them through both transports.)
 */
#include <string.h>

#include "addr.h"
#include "check.h"
#include "gpsrelay/admission.h"
#include "gpsrelay/stats.h"

static union gr_peer peer(const char *text)
{
    struct sockaddr_storage ss = addr(text, 40000);
    union gr_peer p;
    memcpy(&p, &ss, sizeof(p));
    return p;
}

static void test_limits(void)
{
    struct gr_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.max_connections_per_source = 2;
    struct gr_admission *a = gr_admission_new(&cfg, NULL, 0);
    CHECK(a != NULL);
    CHECK(!gr_admission_auth_on(a));
    union gr_peer one = peer("192.0.2.1"), mapped = peer("::ffff:192.0.2.1"),
                  two = peer("2001:db8::2");
    uint64_t refused = gr_stats.consoles_refused[GR_REFUSED_PER_SOURCE];

    /* Two WebSocket consoles from one address; the third is refused and counted. */
    CHECK(gr_admission_source_ok(a, GR_ADMIT_WEBSOCKET, &one));
    CHECK(gr_admission_hold(a, GR_ADMIT_WEBSOCKET, &one));
    CHECK(gr_admission_source_ok(a, GR_ADMIT_WEBSOCKET, &one));
    CHECK(gr_admission_hold(a, GR_ADMIT_WEBSOCKET, &mapped)); /* the same address */
    CHECK(!gr_admission_source_ok(a, GR_ADMIT_WEBSOCKET, &one));
    CHECK_INT(gr_stats.consoles_refused[GR_REFUSED_PER_SOURCE], refused + 1);

    /* Another address, and the other kinds, have counts of their own. */
    CHECK(gr_admission_source_ok(a, GR_ADMIT_WEBSOCKET, &two));
    CHECK(gr_admission_source_ok(a, GR_ADMIT_LONGPOLL, &one));
    CHECK(gr_admission_source_ok(a, GR_ADMIT_EARLY, &one));
    CHECK_INT(gr_stats.consoles_refused[GR_REFUSED_PER_SOURCE], refused + 1);

    /* One gone: room for one more. */
    gr_admission_release(a, GR_ADMIT_WEBSOCKET, &one);
    CHECK(gr_admission_source_ok(a, GR_ADMIT_WEBSOCKET, &one));

    /* A reload applies to the next console; what is held stays held. */
    struct gr_config fewer = cfg;
    fewer.max_connections_per_source = 1;
    gr_admission_set_config(a, &fewer);
    CHECK(!gr_admission_source_ok(a, GR_ADMIT_WEBSOCKET, &one));
    CHECK(gr_admission_source_ok(a, GR_ADMIT_LONGPOLL, &one));
    CHECK_INT(gr_stats.consoles_refused[GR_REFUSED_PER_SOURCE], refused + 2);
    gr_admission_release(a, GR_ADMIT_WEBSOCKET, &one);
    CHECK(gr_admission_source_ok(a, GR_ADMIT_WEBSOCKET, &one));

    /* An address that is neither IPv4 nor IPv6 is not counted. */
    union gr_peer none;
    memset(&none, 0, sizeof(none));
    CHECK(!gr_admission_hold(a, GR_ADMIT_LONGPOLL, &none));
    gr_admission_free(a);
}

static void test_auth_on(void)
{
    static const unsigned char key[32] = "0123456789abcdef0123456789abcdef";
    struct gr_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    struct gr_admission *a = gr_admission_new(&cfg, key, sizeof(key));
    CHECK(a != NULL && gr_admission_auth_on(a));
    gr_admission_free(a);
    gr_admission_free(NULL);
}

int main(void)
{
    test_limits();
    test_auth_on();
    return check_result("test_admission");
}
