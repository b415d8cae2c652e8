/*
 * js_stream.c - the position stream without gpsrelay: what NATS JetStream itself carries,
 * and how late, on this machine, used the way the cluster uses it (src/cluster/link.c).
 * bench/run-cluster.sh compares it with the nodes' end-to-end figures, to tell the
 * stream's share from the daemons'.
 *
 * One connection per server (a node each): each publishes its share of the reports with
 * js_PublishMsgAsync (a Nats-Msg-Id per message, at most 8,192 awaiting their
 * acknowledgement, as GR_LINK_INFLIGHT_MAX) and reads the whole stream through an ordered
 * push consumer, as every node does. The stream is made afresh: file storage, --replicas.
 * A message is ~200 bytes (a position's size) and starts with its send time; latency is
 * js_PublishMsgAsync() to the consumer's callback. The window is a span of send times, as
 * in cluster_probe: a rate is carried when every consumer got every message sent in it.
 *
 * Output: one "result ..." line of key=value pairs.
 *
 * usage: js_stream --servers URL[,URL...] --rate R [--seconds S] [--replicas N]
 *                  [--stream NAME]
 */
#include <nats/nats.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"

#define MAX_SERVERS  5
#define INFLIGHT_MAX 8192 /* as GR_LINK_INFLIGHT_MAX */
#define ACK_WAIT_MS  2000 /* as GR_LINK_ACK_WAIT_MS */
#define UNITS        3000
#define BODY_BYTES   200
#define WARMUP_S     2.0
#define DRAIN_S      5.0
#define TICK_NS      1000000

/* A node: its connection, its publisher context, its consumer and what it received. */
struct node {
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    atomic_uint_fast64_t in_window; /* written by the consumer's thread only */
    struct hist latency;
};

static struct node nodes[MAX_SERVERS];
static int n_nodes;
static _Atomic uint64_t window_start_us = UINT64_MAX, window_end_us = UINT64_MAX;
static atomic_uint_fast64_t acked, ack_failures;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pae;
    (void)closure;
    atomic_fetch_add(pa != NULL ? &acked : &ack_failures, 1);
    natsMsg_Destroy(msg);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct node *n = closure;
    uint64_t now = wall_us(), sent = strtoull(natsMsg_GetData(msg), NULL, 10);
    if (sent >= window_start_us && sent < window_end_us) {
        n->in_window++;
        hist_add(&n->latency, now > sent ? now - sent : 0);
    }
    natsMsg_Destroy(msg);
}

static int fail(const char *what, natsStatus s)
{
    fprintf(stderr, "js_stream: %s: %s (%s)\n", what, natsStatus_GetText(s),
            nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
    return 1;
}

int main(int argc, char **argv)
{
    const char *servers = NULL, *stream = "jsbench";
    double rate = 0, seconds = 10;
    int replicas = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--servers") == 0)
            servers = argv[i + 1];
        else if (strcmp(argv[i], "--rate") == 0)
            rate = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--replicas") == 0)
            replicas = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--stream") == 0)
            stream = argv[i + 1];
    }
    if (servers == NULL || rate <= 0 || seconds <= 0 || argc % 2 == 0) {
        fprintf(stderr, "usage: js_stream --servers URL[,URL...] --rate R [--seconds S]"
                        " [--replicas N] [--stream NAME]\n");
        return 64;
    }
    char *list = strdup(servers), *save = NULL;
    char subjects[96], filter[96];
    snprintf(subjects, sizeof(subjects), "%s.pos.>", stream);
    snprintf(filter, sizeof(filter), "%s.pos.>", stream);
    for (char *url = strtok_r(list, ",", &save); url && n_nodes < MAX_SERVERS;
         url = strtok_r(NULL, ",", &save)) {
        struct node *n = &nodes[n_nodes++];
        natsStatus s = natsConnection_ConnectTo(&n->nc, url);
        if (s != NATS_OK)
            return fail(url, s);
        jsOptions jo;
        jsOptions_Init(&jo);
        jo.PublishAsync.MaxPending = INFLIGHT_MAX;
        jo.PublishAsync.AckHandler = on_ack;
        if ((s = natsConnection_JetStream(&n->js, n->nc, &jo)) != NATS_OK)
            return fail("JetStream context", s);
    }

    /* A fresh stream, as the cluster's: file storage, the replicas asked for. */
    jsErrCode jerr = 0;
    js_DeleteStream(nodes[0].js, stream, NULL, &jerr);
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subj[1] = {subjects};
    sc.Name = stream;
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = replicas;
    sc.MaxAge = 300 * 1000000000LL;
    jsStreamInfo *si = NULL;
    natsStatus s = js_AddStream(&si, nodes[0].js, &sc, NULL, &jerr);
    if (s != NATS_OK)
        return fail("add stream", s);
    jsStreamInfo_Destroy(si);
    for (int k = 0; k < n_nodes; k++) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = stream;
        so.Ordered = true;
        so.Config.Heartbeat = 5000 * 1000000LL;
        s = js_Subscribe(&nodes[k].sub, nodes[k].js, filter, on_msg, &nodes[k], NULL, &so, &jerr);
        if (s == NATS_OK)
            s = natsSubscription_SetPendingLimits(nodes[k].sub, -1, -1);
        if (s != NATS_OK)
            return fail("subscribe", s);
    }

    /* Publish at the rate, round-robin over the nodes' connections. */
    uint64_t t0_us = wall_us();
    window_end_us = t0_us + (uint64_t)((WARMUP_S + seconds) * 1e6);
    window_start_us = t0_us + (uint64_t)(WARMUP_S * 1e6);
    double t0 = mono_s();
    uint64_t sent = 0, in_window = 0, refused = 0;
    char body[BODY_BYTES + 1], subject[96], id[64];
    memset(body, 'x', BODY_BYTES);
    body[BODY_BYTES] = '\0';
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = ACK_WAIT_MS;
    struct timespec tick;
    clock_gettime(CLOCK_MONOTONIC, &tick);
    while (mono_s() - t0 < WARMUP_S + seconds) {
        uint64_t due = (uint64_t)((mono_s() - t0) * rate);
        for (; sent < due; sent++) {
            uint64_t now = wall_us();
            int u = (int)(sent % UNITS);
            int len = snprintf(body, sizeof(body), "%" PRIu64, now);
            body[len] = ' '; /* the rest of the body stays padding */
            snprintf(subject, sizeof(subject), "%s.pos.U-%d", stream, u);
            snprintf(id, sizeof(id), "U-%d-%" PRIu64, u, sent);
            natsMsg *m = NULL;
            s = natsMsg_Create(&m, subject, NULL, body, BODY_BYTES);
            po.MsgId = id;
            if (s == NATS_OK)
                s = js_PublishMsgAsync(nodes[u % n_nodes].js, &m, &po);
            natsMsg_Destroy(m);
            if (s != NATS_OK)
                refused++;
            else if (now >= window_start_us && now < window_end_us)
                in_window++;
        }
        sleep_next_tick(&tick, TICK_NS);
    }
    double publish_s = mono_s() - t0;
    for (double end = mono_s() + DRAIN_S; mono_s() < end;) {
        bool all = true;
        for (int k = 0; k < n_nodes; k++)
            all &= nodes[k].in_window >= in_window;
        if (all)
            break;
        nats_Sleep(50);
    }
    uint64_t worst = UINT64_MAX;
    struct hist *all = calloc(1, sizeof(*all));
    for (int k = 0; k < n_nodes; k++) {
        if (nodes[k].in_window < worst)
            worst = nodes[k].in_window;
        for (size_t i = 0; i < HIST_SIZE; i++)
            all->bucket[i] += nodes[k].latency.bucket[i];
        all->n += nodes[k].latency.n;
        if (nodes[k].latency.max > all->max)
            all->max = nodes[k].latency.max;
    }
    printf("result servers=%d replicas=%d rate=%.0f offered_per_s=%.0f sent_in_window=%" PRIu64
           " worst=%.5f acked=%" PRIu64 " ack_failures=%" PRIu64 " refused=%" PRIu64
           " p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
           n_nodes, replicas, rate, (double)sent / publish_s, in_window,
           in_window ? (double)worst / (double)in_window : 0, (uint64_t)atomic_load(&acked),
           (uint64_t)atomic_load(&ack_failures), refused, hist_ms(all, 0.5), hist_ms(all, 0.99),
           (double)all->max / 1000.0);
    fflush(stdout);
    for (int k = 0; k < n_nodes; k++) {
        natsSubscription_Unsubscribe(nodes[k].sub);
        natsSubscription_Destroy(nodes[k].sub);
    }
    js_DeleteStream(nodes[0].js, stream, NULL, &jerr);
    for (int k = 0; k < n_nodes; k++) {
        jsCtx_Destroy(nodes[k].js);
        natsConnection_Destroy(nodes[k].nc);
    }
    free(all);
    free(list);
    return 0;
}
