/*
 * test_apply.c - publishing as accept then apply (hub.h), the way a cluster node runs it:
 * a relay takes accepted fixes instead of the hub; positions are applied with the stream's
 * seq, which may skip numbers; apply refuses what acceptance would have (a fix twice, one
 * older than an on-time position) so two nodes' fixes of one unit come out the same on
 * every node; a subscription resumes from a seq the node has not applied yet.
 */
#include "gpsrelay/hub.h"
#include "hub_fixture.h"

static int notified;

static void on_notify(void *owner)
{
    (void)owner;
    notified++;
}

static void on_event(void *owner, const struct gr_topic *t, enum gr_event e, const char *payload)
{
    (void)owner, (void)t, (void)e, (void)payload;
}

/* The relay: what gr_hub_publish hands over instead of applying. */
static struct {
    int calls;
    struct gr_unit *unit;
    struct gr_fix fix;
    int64_t rx_ms;
    enum gr_reason answer;
} relayed;

static enum gr_reason relay(void *arg, struct gr_unit *u, const struct gr_fix *f, int64_t rx_ms)
{
    CHECK(arg == &relayed);
    relayed.calls++;
    relayed.unit = u;
    relayed.fix = *f;
    relayed.rx_ms = rx_ms;
    return relayed.answer;
}

static uint64_t drained_seq;

static bool take(void *ctx, const struct gr_position *p)
{
    (void)ctx;
    drained_seq = p->seq;
    return true;
}

int main(void)
{
    struct gr_hub *hub = fixture_hub(on_notify, on_event);
    CHECK_INT(gr_hub_set_mapping(hub, fixture_mapping("A a1;B a1")), 0);
    struct gr_unit *a = gr_hub_find_unit(hub, "A", 1), *b = gr_hub_find_unit(hub, "B", 1);
    int64_t t = T0_MS;

    /* With a relay: acceptance runs, the fix goes to the relay, nothing is applied. */
    gr_hub_set_relay(hub, relay, &relayed);
    struct gr_fix f = fixture_fix(t, 40.0, -74.0);
    CHECK_INT(gr_hub_publish(hub, a, &f, t + 200, 0), GR_OK);
    CHECK_INT(relayed.calls, 1);
    CHECK(relayed.unit == a && relayed.fix.time_ms == t && relayed.rx_ms == t + 200);
    CHECK_INT(gr_hub_seq(hub), 0);
    struct gr_fix bad = fixture_fix(t, 0.0, 0.0); /* refused before the relay */
    CHECK_INT(gr_hub_publish(hub, a, &bad, t + 200, 0), GR_NULL_ISLAND);
    CHECK_INT(relayed.calls, 1);
    relayed.answer = GR_CLUSTER_QUEUE_FULL; /* the relay's refusal is the publish's */
    CHECK_INT(gr_hub_publish(hub, b, &f, t + 200, 0), GR_CLUSTER_QUEUE_FULL);

    /* Applied with the stream's seqs, gaps and all; the hub's seq follows them. */
    struct gr_sub *s = gr_sub_new(hub, gr_hub_topic(hub, "agency:a1"), NULL);
    notified = 0;
    CHECK_INT(gr_hub_apply(hub, a, &f, 3, t + 200, 0), GR_OK);
    CHECK_INT(gr_hub_seq(hub), 3);
    CHECK_INT(notified, 1);
    CHECK_INT(gr_sub_drain(s, take, NULL), 1);
    CHECK_INT(drained_seq, 3);
    struct gr_fix later = fixture_fix(t + 1000, 40.0001, -74.0);
    CHECK_INT(gr_hub_apply(hub, b, &later, 3, t + 1200, 0), GR_DUPLICATE); /* seq not above */
    CHECK_INT(gr_hub_apply(hub, b, &later, 9, t + 1200, 0), GR_OK);
    CHECK_INT(gr_hub_seq(hub), 9);

    /* What acceptance would refuse, apply refuses on every node alike. */
    CHECK_INT(gr_hub_apply(hub, a, &f, 10, t + 300, 0), GR_DUPLICATE);
    struct gr_fix older = fixture_fix(t - 1000, 40.0, -74.0);
    CHECK_INT(gr_hub_apply(hub, a, &older, 11, t + 300, 0), GR_OUT_OF_ORDER);
    CHECK_INT(gr_hub_seq(hub), 9); /* refused: not numbered */
    /* ...but not an older fix after one dated ahead of its receipt (filter.c outvotes
     * those on the accepting node, and every node must follow it). */
    struct gr_fix ahead = fixture_fix(t + 200000, 40.0, -74.0);
    CHECK_INT(gr_hub_apply(hub, a, &ahead, 12, t + 2000, 0), GR_OK);
    struct gr_fix after_ahead = fixture_fix(t + 3000, 40.0, -74.0);
    CHECK_INT(gr_hub_apply(hub, a, &after_ahead, 13, t + 3000, 0), GR_OK);

    /* Resuming from a seq this node has heard of but not applied: the cursor starts there,
     * and nothing at or below it is delivered when it is applied. */
    gr_hub_set_seq_known(hub, 20);
    CHECK_INT(gr_hub_seq_known(hub), 20);
    gr_hub_set_seq_known(hub, 15); /* never backwards */
    CHECK_INT(gr_hub_seq_known(hub), 20);
    struct gr_sub *r = gr_sub_new(hub, gr_hub_topic(hub, "agency:a1"), NULL);
    gr_sub_skip_to(r, 18);
    gr_sub_skip_to(r, 10); /* never backwards */
    struct gr_fix f17 = fixture_fix(t + 4000, 40.0, -74.0),
                  f19 = fixture_fix(t + 5000, 40.0, -74.0);
    CHECK_INT(gr_hub_apply(hub, b, &f17, 17, t + 4000, 0), GR_OK);
    CHECK(!gr_sub_pending(r));
    CHECK_INT(gr_hub_apply(hub, b, &f19, 19, t + 5000, 0), GR_OK);
    CHECK(gr_sub_pending(r));
    CHECK_INT(gr_sub_drain(r, take, NULL), 1);
    CHECK_INT(drained_seq, 19);

    /* The epoch and the node name a cluster gives the hub. */
    CHECK_INT(gr_hub_set_epoch(hub, "0123456789abcdef"), 0);
    CHECK_STR(gr_hub_epoch(hub), "0123456789abcdef");
    CHECK(gr_hub_set_epoch(hub, "0123456789abcdef0") < 0);
    CHECK(gr_hub_node(hub) == NULL);
    CHECK_INT(gr_hub_set_node(hub, "n1"), 0);
    CHECK_STR(gr_hub_node(hub), "n1");

    gr_sub_free(hub, s);
    gr_sub_free(hub, r);
    gr_hub_free(hub);
    return check_result("test_apply");
}
