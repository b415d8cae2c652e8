/*
 * link.c - the cluster's NATS side: one connection to the NATS servers, the position
 * stream, publishing accepted fixes into it and receiving every position from it. Built
 * as the loadable module GR_LINK_MODULE, the only code linked with libnats. See link.h for
 * the threads; cluster.c is the loop side.
 *
 * The library runs on its own threads, not on the daemon's loop through its libuv adapter:
 * every JetStream call that waits for a reply deadlocks when made on the loop thread that
 * also reads the socket, and the known libnats 3.4 bugs around socket close and parser
 * reset (nats.c #814, #1007) are in the event-loop mode. The loop never calls libnats.
 *
 * Publishing is at least once, stored once: each fix carries a message id made of its
 * device and fix time, JetStream drops a second message with an id it stored within its
 * de-duplication window (2 minutes), and a publish whose acknowledgement does not come
 * within GR_LINK_ACK_WAIT_MS, or that fails (no stream leader during an election, a lost
 * connection), is queued again with the same id.
 *
 * Receiving is an ordered consumer (libnats): an ephemeral consumer that starts with the
 * last position of every unit, then every new one, in stream order; the library checks the
 * consumer sequence of each message and the idle heartbeats, and on a gap or a silence of
 * two heartbeats makes a new consumer from the next stream sequence. That is what fills a
 * gap from the stream, whatever caused it (a lost server, a slow consumer).
 */
#include "link.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>

#include <nats/nats.h>

#include "gpsrelay/clock.h"

/* Idle heartbeat of the ordered consumer: two missed (0.3 s) and the library makes a new
 * consumer, which starts delivering some 0.6 s later (measured: kill -9 of the server that
 * held it, consoles of the node paused 1.25 s with a 300 ms heartbeat). The library's own
 * default, 5 s, would leave consoles without positions for over 10 s. Only an idle
 * consumer sends heartbeats: a few a second per node. */
#define HEARTBEAT_MS 150

/* Client settings that notice a dead or hung server within about three seconds, and never
 * stop reconnecting (libnats' defaults: pings every 2 minutes, 60 reconnects). */
#define PING_INTERVAL_MS   1000
#define PINGS_OUT_MAX      2
#define RECONNECT_WAIT_MS  200
#define CONNECT_TIMEOUT_MS 2000
#define REQUEST_WAIT_MS    2000

/* How long the link thread sleeps when it has nothing to do or must retry later. */
#define IDLE_WAIT_MS  100
#define RETRY_WAIT_MS 500

/* How long a failed publish waits before it is sent again. */
#define RETRY_DELAY_MS 100

/* At most one log line about failed publishes per this long. */
#define FAILURE_LOG_MS 5000

/* How often the link thread asks for the stream's info while receiving it: a stream
 * deleted and made anew (a new epoch) is noticed within this. */
#define STREAM_CHECK_MS 5000

/* Fixes taken from the queue and handed to libnats per round. */
#define PUBLISH_BATCH 512

/* One fix to publish: the strings point into the same allocation. */
struct out {
    char *subject, *msg_id, *rx, *src, *data;
    size_t len;
    int64_t failed_ms; /* monotonic: when its publish last failed; 0 if never */
};

struct gr_link {
    struct gr_link_config cfg; /* deep copy: the strings are in `strings` */
    char **urls;
    char *strings;
    struct gr_link_callbacks cb;

    pthread_t thread;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t wake;
    bool stopping;
    struct out **ring; /* GR_LINK_QUEUE_MAX slots */
    size_t head, count;
    /* Failed publishes, sent again first and in the order they failed (a fix stored after
     * a newer one of its unit is not applied); a ring of GR_LINK_INFLIGHT_MAX slots. */
    struct out **retry;
    size_t retry_head, n_retry;
    size_t inflight;
    bool lost_inflight; /* the connection went with publishes unacknowledged */
    bool recovering;    /* a publish failed: order is restored before anything new goes */
    bool retry_sorted;  /* ...and the retry ring is in accepted order */
    int64_t failure_logged_ms, error_logged_ms;
    struct gr_link_state st;

    /* Owned by the link thread. */
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
};

static void out_free(struct out *o)
{
    free(o); /* one allocation */
}

static struct out *out_new(const char *subject, const char *msg_id, const char *rx, const char *src,
                           const char *data, size_t len)
{
    size_t ls = strlen(subject) + 1, li = strlen(msg_id) + 1, lr = strlen(rx) + 1,
           lc = strlen(src) + 1;
    struct out *o = malloc(sizeof(*o) + ls + li + lr + lc + len + 1);
    if (o == NULL)
        return NULL;
    char *p = (char *)(o + 1);
    o->subject = memcpy(p, subject, ls);
    o->msg_id = memcpy(p += ls, msg_id, li);
    o->rx = memcpy(p += li, rx, lr);
    o->src = memcpy(p += lr, src, lc);
    o->data = memcpy(p += lc, data, len);
    o->data[len] = '\0';
    o->len = len;
    o->failed_ms = 0;
    return o;
}

static int64_t monotonic_ms(void)
{
    return gr_monotonic_ns() / 1000000;
}

/* What went wrong: libnats' last error text for this thread, or the status's (the text is
 * empty for some, such as JetStream without a metadata leader yet). */
static const char *why(natsStatus s)
{
    const char *text = nats_GetLastError(NULL);
    return text != NULL && *text != '\0' ? text : natsStatus_GetText(s);
}

static void lock(struct gr_link *l)
{
    pthread_mutex_lock(&l->mu);
}

static void unlock(struct gr_link *l)
{
    pthread_mutex_unlock(&l->mu);
}

/* Waits on l->wake for up to ms, l->mu held. */
static void wait_ms(struct gr_link *l, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&l->wake, &l->mu, &ts);
}

static void set_connected(struct gr_link *l, bool connected)
{
    lock(l);
    l->st.connected = connected;
    unlock(l);
    l->cb.changed(l->cb.arg);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    struct gr_link *l = closure;
    lock(l);
    bool stopping = l->stopping;
    unlock(l);
    if (!stopping)
        l->cb.log(LOG_WARNING, "cluster: lost the NATS connection; reconnecting");
    lock(l);
    l->lost_inflight = l->inflight > 0;
    unlock(l);
    set_connected(l, false);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    struct gr_link *l = closure;
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    l->cb.log(LOG_NOTICE, "cluster: connected to NATS at %s", url);
    set_connected(l, true);
}

/* Whether a line about something that recurs (*last: when its kind was last logged) is
 * logged now: one per FAILURE_LOG_MS, the counters say how many. */
static bool log_now(struct gr_link *l, int64_t *last)
{
    int64_t now = monotonic_ms();
    lock(l);
    bool log = now - *last >= FAILURE_LOG_MS;
    if (log)
        *last = now;
    unlock(l);
    return log;
}

static void on_nats_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    struct gr_link *l = closure;
    /* Missed heartbeats, timeouts re-making the consumer, slow-consumer drops: what the
     * ordered consumer recovers from by itself, several times a second while a server is
     * away. */
    if (log_now(l, &l->error_logged_ms))
        l->cb.log(LOG_WARNING, "cluster: NATS: %s (further ones for %d s not logged)",
                  natsStatus_GetText(err), FAILURE_LOG_MS / 1000);
}

/* A fix to publish again, rebuilt from the message libnats sent (which is not sent again as
 * it is); NULL on ENOMEM. */
static struct out *out_from_msg(natsMsg *msg)
{
    const char *id = NULL, *rx = NULL, *src = NULL;
    natsMsgHeader_Get(msg, "Nats-Msg-Id", &id);
    natsMsgHeader_Get(msg, "Gr-Rx", &rx);
    natsMsgHeader_Get(msg, "Gr-Src", &src);
    return out_new(natsMsg_GetSubject(msg), id ? id : "", rx ? rx : "", src ? src : "",
                   natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
}

/* An acknowledgement, or its failure (libnats' reply or timer thread). */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    struct gr_link *l = closure;
    struct out *again = NULL;
    if (pa == NULL)
        again = out_from_msg(msg);
    lock(l);
    if (pa != NULL && l->inflight + l->n_retry == GR_LINK_INFLIGHT_MAX)
        pthread_cond_signal(&l->wake); /* room again: the link thread need not wait it out */
    l->inflight--;
    if (pa == NULL) {
        l->recovering = true;
        l->retry_sorted = false;
    }
    if (l->recovering && l->inflight == 0)
        pthread_cond_signal(&l->wake); /* the last answer a recovery waits for */
    if (pa != NULL) {
        l->st.published++;
    } else {
        l->st.failures++;
        if (again != NULL)
            again->failed_ms = monotonic_ms();
        if (again != NULL) /* room: it was in flight */
            l->retry[(l->retry_head + l->n_retry++) % GR_LINK_INFLIGHT_MAX] = again;
        pthread_cond_signal(&l->wake);
    }
    unlock(l);
    if (pa == NULL && again == NULL)
        l->cb.log(LOG_ERR, "cluster: out of memory retrying a publish; one fix lost");
    if (pae != NULL && log_now(l, &l->failure_logged_ms)) /* an election fails thousands */
        l->cb.log(LOG_INFO, "cluster: publish failed (%s%s%s), retrying (%llu failures so far)",
                  natsStatus_GetText(pae->Err), pae->ErrText ? ": " : "",
                  pae->ErrText ? pae->ErrText : "", (unsigned long long)l->st.failures);
    natsMsg_Destroy(msg);
}

/* A message of the stream (libnats' delivery thread), in stream order. */
static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    struct gr_link *l = closure;
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        struct gr_delivery d = {
            .seq = meta->Sequence.Stream,
            .pending = meta->NumPending,
            .stored_ns = meta->Timestamp,
            .data = natsMsg_GetData(msg),
            .len = (size_t)natsMsg_GetDataLength(msg),
        };
        natsMsgHeader_Get(msg, "Gr-Rx", &d.rx);
        natsMsgHeader_Get(msg, "Gr-Src", &d.src);
        l->cb.deliver(l->cb.arg, &d);
        jsMsgMetaData_Destroy(meta);
    }
    natsMsg_Destroy(msg);
}

static int connect_nats(struct gr_link *l, bool retry, char *err, size_t errlen)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetServers(o, (const char **)l->urls, (int)l->cfg.n_urls);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, l->cfg.node);
    /* Only the servers cluster_nats lists: a server advertises its cluster peers by the
     * addresses it sees, which need not be the ones this node may use (another network,
     * a public address a firewall drops). */
    if (s == NATS_OK)
        s = natsOptions_SetIgnoreDiscoveredServers(o, true);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(o, PING_INTERVAL_MS);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(o, PINGS_OUT_MAX);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, RECONNECT_WAIT_MS);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, CONNECT_TIMEOUT_MS);
    if (s == NATS_OK && retry) {
        s = natsOptions_SetRetryOnFailedConnect(o, true, on_reconnected, l);
        if (s == NATS_OK)
            s = natsOptions_SetDisconnectedCB(o, on_disconnected, l);
        if (s == NATS_OK)
            s = natsOptions_SetReconnectedCB(o, on_reconnected, l);
        if (s == NATS_OK)
            s = natsOptions_SetErrorHandler(o, on_nats_error, l);
    }
    if (s == NATS_OK) {
        s = natsConnection_Connect(&l->nc, o);
        if (s == NATS_NOT_YET_CONNECTED) /* retry: it goes on in the background */
            s = NATS_OK;
        else if (s == NATS_OK && retry)
            on_reconnected(l->nc, l);
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = REQUEST_WAIT_MS;
    jo.PublishAsync.MaxPending = GR_LINK_INFLIGHT_MAX;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = l;
    if (s == NATS_OK)
        s = natsConnection_JetStream(&l->js, l->nc, &jo);
    natsOptions_Destroy(o);
    if (s != NATS_OK)
        snprintf(err, errlen, "cannot connect to NATS (%s): %s", l->urls[0], why(s));
    return s == NATS_OK ? 0 : -EIO;
}

/*
 * The stream's identity, the epoch every node serves. It is written into the stream's
 * description when the stream is made, because the stream has no identity of its own
 * that all servers agree on: its creation time is each server's own clock at the moment
 * it took its replica (it changes with the server that answers).
 */
#define EPOCH_PREFIX "gpsrelay position stream, epoch "

/* The epoch in si's description into epoch (17 bytes); false when it holds none. */
static bool epoch_of(const jsStreamInfo *si, char *epoch)
{
    const char *d = si->Config->Description;
    size_t n = strlen(EPOCH_PREFIX);
    if (d == NULL || strncmp(d, EPOCH_PREFIX, n) != 0 || strlen(d + n) != 16 ||
        strspn(d + n, "0123456789abcdef") != 16)
        return false;
    memcpy(epoch, d + n, 17);
    return true;
}

static void new_description(char *out, size_t len)
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint64_t)monotonic_ms() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)time(NULL);
    snprintf(out, len, EPOCH_PREFIX "%016" PRIx64, r);
}

/* A stream made by someone else, without an epoch: given one, so every node serves the
 * same. Two nodes doing this at once each give their own; the one that finds its epoch
 * overwritten stops serving (cluster.c: "made anew"), and a restart puts it right. */
static natsStatus add_epoch(struct gr_link *l, jsStreamInfo **si, jsErrCode *jerr)
{
    char description[64];
    new_description(description, sizeof(description));
    jsStreamConfig sc = *(*si)->Config;
    sc.Description = description;
    jsStreamInfo *updated = NULL;
    natsStatus s = js_UpdateStream(&updated, l->js, &sc, NULL, jerr);
    if (s == NATS_OK) {
        jsStreamInfo_Destroy(*si);
        *si = updated;
        l->cb.log(LOG_WARNING, "cluster: stream %s had no epoch in its description: gave it one",
                  l->cfg.stream);
    }
    return s;
}

/* The stream as found (its differences from ours logged), or made. Link thread. */
static natsStatus ensure_stream(struct gr_link *l, jsStreamInfo **si, bool create, char *err,
                                size_t errlen)
{
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(si, l->js, l->cfg.stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND && create) {
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        const char *subjects[1] = {l->cfg.subjects};
        char description[64];
        new_description(description, sizeof(description));
        sc.Description = description;
        sc.Name = l->cfg.stream;
        sc.Subjects = subjects;
        sc.SubjectsLen = 1;
        sc.Storage = js_FileStorage;
        sc.Replicas = l->cfg.replicas;
        sc.MaxAge = l->cfg.history_s * 1000000000LL;
        s = js_AddStream(si, l->js, &sc, NULL, &jerr);
        if (s == NATS_OK)
            l->cb.log(LOG_NOTICE, "cluster: made stream %s (%d replicas, %" PRId64 " s)",
                      l->cfg.stream, l->cfg.replicas, l->cfg.history_s);
        else if (jerr == JSStreamNameExistErr) /* another node made it meanwhile */
            s = js_GetStreamInfo(si, l->js, l->cfg.stream, NULL, &jerr);
    }
    if (s != NATS_OK) {
        snprintf(err, errlen, "stream %s: %s", l->cfg.stream, why(s));
        return s;
    }
    char epoch[17];
    if (create && !epoch_of(*si, epoch) && (s = add_epoch(l, si, &jerr)) != NATS_OK) {
        snprintf(err, errlen, "stream %s: cannot give it an epoch: %s", l->cfg.stream, why(s));
        jsStreamInfo_Destroy(*si);
        *si = NULL;
        return s;
    }
    const jsStreamConfig *c = (*si)->Config;
    if (c->Replicas != l->cfg.replicas)
        l->cb.log(LOG_WARNING, "cluster: stream %s has %" PRId64 " replicas, not %d: used as is",
                  l->cfg.stream, c->Replicas, l->cfg.replicas);
    if (c->MaxAge != l->cfg.history_s * 1000000000LL)
        l->cb.log(LOG_WARNING,
                  "cluster: stream %s keeps %" PRId64 " s, not %" PRId64 ": used as is",
                  l->cfg.stream, (int64_t)(c->MaxAge / 1000000000), l->cfg.history_s);
    if (c->SubjectsLen != 1 || strcmp(c->Subjects[0], l->cfg.subjects) != 0)
        l->cb.log(LOG_WARNING, "cluster: stream %s does not take exactly %s: used as is",
                  l->cfg.stream, l->cfg.subjects);
    return NATS_OK;
}

/* The stream found or made, and its positions delivered to on_msg. Link thread. */
static bool subscribe(struct gr_link *l)
{
    char err[256];
    jsStreamInfo *si = NULL;
    if (ensure_stream(l, &si, true, err, sizeof(err)) != NATS_OK) {
        l->cb.log(LOG_WARNING, "cluster: %s; trying again", err);
        return false;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = l->cfg.stream;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverLastPerSubject;
    so.Config.Heartbeat = (int64_t)HEARTBEAT_MS * 1000000LL;
    jsErrCode jerr = 0;
    /* libnats' own bound on messages waiting for on_msg stays (65,536): past it the
     * library drops, the ordered consumer sees the gap and fetches them again. */
    natsStatus s = js_Subscribe(&l->sub, l->js, l->cfg.subjects, on_msg, l, NULL, &so, &jerr);
    if (s != NATS_OK) {
        l->cb.log(LOG_WARNING, "cluster: cannot receive stream %s: %s; trying again", l->cfg.stream,
                  why(s));
        natsSubscription_Destroy(l->sub);
        l->sub = NULL;
        jsStreamInfo_Destroy(si);
        return false;
    }
    lock(l);
    l->st.subscribed = true;
    epoch_of(si, l->st.epoch); /* ensure_stream made sure it has one */
    l->st.last_seq = si->State.LastSeq;
    unlock(l);
    l->cb.log(LOG_NOTICE,
              "cluster: receiving stream %s (epoch %s, %" PRIu64 " messages, last %" PRIu64 ")",
              l->cfg.stream, l->st.epoch, si->State.Msgs, si->State.LastSeq);
    jsStreamInfo_Destroy(si);
    l->cb.changed(l->cb.arg);
    return true;
}

/* The stream's identity now: a stream deleted and made anew has another (cluster.c stops
 * serving it). Link thread, l->mu not held. */
static void check_epoch(struct gr_link *l)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, l->js, l->cfg.stream, NULL, &jerr) != NATS_OK)
        return; /* no answer (an election, a lost server): asked again later */
    char epoch[sizeof(l->st.epoch)] = "";
    epoch_of(si, epoch);
    jsStreamInfo_Destroy(si);
    lock(l);
    bool changed = strcmp(epoch, l->st.epoch) != 0;
    if (changed)
        strcpy(l->st.epoch, epoch);
    unlock(l);
    if (changed)
        l->cb.changed(l->cb.arg);
}

/* Receive time, then fix time (the message id's tail): the order fixes were accepted in. */
static int accepted_order(const void *a, const void *b)
{
    const struct out *x = *(struct out *const *)a, *y = *(struct out *const *)b;
    long long rx = strtoll(x->rx, NULL, 10), ry = strtoll(y->rx, NULL, 10);
    if (rx != ry)
        return rx < ry ? -1 : 1;
    const char *tx = strrchr(x->msg_id, '/'), *ty = strrchr(y->msg_id, '/');
    long long fx = tx ? strtoll(tx + 1, NULL, 10) : 0, fy = ty ? strtoll(ty + 1, NULL, 10) : 0;
    return (fx > fy) - (fx < fy);
}

/* The retry ring in accepted order, from its head. l->mu held. */
static void sort_retries(struct gr_link *l)
{
    struct out *tmp[256], **all = l->n_retry <= 256 ? tmp : malloc(l->n_retry * sizeof(*all));
    if (all == NULL)
        return; /* out of memory: sent in the order they failed */
    for (size_t i = 0; i < l->n_retry; i++)
        all[i] = l->retry[(l->retry_head + i) % GR_LINK_INFLIGHT_MAX];
    qsort(all, l->n_retry, sizeof(*all), accepted_order);
    for (size_t i = 0; i < l->n_retry; i++)
        l->retry[(l->retry_head + i) % GR_LINK_INFLIGHT_MAX] = all[i];
    if (all != tmp)
        free(all);
}

/*
 * After a reconnect: the publishes the lost connection carried may or may not have been
 * stored, and their acknowledgements will never come. Left alone they would time out 2 s
 * later, behind fixes accepted since. So they are taken back now and join the retries,
 * which go first, in accepted order (publish_round), with their message ids (stored once).
 * Link thread, l->mu not held.
 */
static void reclaim_inflight(struct gr_link *l)
{
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, l->js) != NATS_OK)
        return; /* none: they were acknowledged or failed meanwhile */
    size_t lost = 0;
    lock(l);
    l->inflight -= (size_t)pending.Count; /* their acknowledgements are discarded now */
    for (int i = 0; i < pending.Count; i++) {
        struct out *o = out_from_msg(pending.Msgs[i]);
        if (o == NULL) {
            lost++;
            continue;
        }
        l->retry[(l->retry_head + l->n_retry++) % GR_LINK_INFLIGHT_MAX] = o; /* was in flight */
    }
    l->recovering = true;
    l->retry_sorted = false;
    unlock(l);
    if (lost > 0)
        l->cb.log(LOG_ERR, "cluster: out of memory taking back publishes; %zu fixes lost", lost);
    natsMsgList_Destroy(&pending);
}

/* Hands one fix to libnats. Link thread, l->mu not held. */
static natsStatus send_one(struct gr_link *l, const struct out *o)
{
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, o->subject, NULL, o->data, (int)o->len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Gr-Rx", o->rx);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Gr-Src", o->src);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = o->msg_id;
    po.MaxWait = GR_LINK_ACK_WAIT_MS;
    if (s == NATS_OK) {
        lock(l);
        l->inflight++; /* before: the acknowledgement may come before the call returns */
        unlock(l);
        s = js_PublishMsgAsync(l->js, &m, &po);
        if (s != NATS_OK) {
            lock(l);
            l->inflight--;
            unlock(l);
        }
    }
    natsMsg_Destroy(m); /* NULL when libnats took it */
    return s;
}

/*
 * One round: failed publishes first, then the queue, while connected and under
 * GR_LINK_INFLIGHT_MAX. Returns whether it sent anything. l->mu held on entry and exit.
 */
static bool publish_round(struct gr_link *l)
{
    /*
     * After a failure, order before speed. Publishes sent after the one that failed may be
     * stored before it is sent again (a hung leader times out the early ones while a new
     * leader takes the later ones), and a unit's older fix stored after its newer one is
     * applied by no node. So nothing new goes out until every publish in flight has been
     * answered; then the failed ones go again, in the order they were accepted, and new
     * fixes only once those are stored.
     */
    if (l->recovering) {
        if (l->inflight > 0)
            return false; /* on_ack wakes the thread when the last is answered */
        if (l->n_retry == 0) {
            l->recovering = false;
        } else if (!l->retry_sorted) {
            sort_retries(l);
            l->retry_sorted = true;
        }
    }
    bool sent = false;
    for (int n = 0; n < PUBLISH_BATCH && l->st.connected && !l->stopping; n++) {
        /* A publish in flight comes back to the retry list when it fails, so the two
         * together stay within the list's GR_LINK_INFLIGHT_MAX slots. */
        struct out *o;
        bool from_retry = l->n_retry > 0;
        /* A stream without a leader (an election) refuses at once: failed publishes
         * wait RETRY_DELAY_MS, and newer fixes behind them, rather than spin. */
        if (from_retry && monotonic_ms() - l->retry[l->retry_head]->failed_ms < RETRY_DELAY_MS)
            break;
        if (from_retry) { /* taken now: on_ack may add others meanwhile */
            o = l->retry[l->retry_head];
            l->retry_head = (l->retry_head + 1) % GR_LINK_INFLIGHT_MAX;
            l->n_retry--;
        } else if (!l->recovering && l->count > 0 &&
                   l->inflight + l->n_retry < GR_LINK_INFLIGHT_MAX)
            o = l->ring[l->head]; /* only this thread takes from the ring */
        else
            break;
        unlock(l);
        natsStatus s = send_one(l, o);
        lock(l);
        if (s != NATS_OK) {
            l->st.failures++;
            if (from_retry) { /* back in front: its slot is still free */
                l->retry_head = (l->retry_head + GR_LINK_INFLIGHT_MAX - 1) % GR_LINK_INFLIGHT_MAX;
                l->retry[l->retry_head] = o;
                l->n_retry++;
            }
            break; /* sent again on a later round */
        }
        if (!from_retry) {
            l->head = (l->head + 1) % GR_LINK_QUEUE_MAX;
            l->count--;
        }
        out_free(o);
        sent = true;
    }
    return sent;
}

/* The subscription (its ephemeral consumer goes at once), the JetStream context and the
 * connection, whichever exist. */
static void hang_up(struct gr_link *l)
{
    if (l->sub != NULL) {
        natsSubscription_Unsubscribe(l->sub);
        natsSubscription_Destroy(l->sub);
    }
    jsCtx_Destroy(l->js);
    if (l->nc != NULL) {
        natsConnection_Close(l->nc);
        natsConnection_Destroy(l->nc);
    }
}

static void *link_main(void *arg)
{
    struct gr_link *l = arg;
    char err[256];
    if (connect_nats(l, true, err, sizeof(err)) < 0)
        l->cb.log(LOG_ERR, "cluster: %s", err); /* options only: a bad URL, out of memory */

    int64_t last_check = monotonic_ms();
    lock(l);
    while (!l->stopping) {
        if (l->st.subscribed && l->st.connected && monotonic_ms() - last_check >= STREAM_CHECK_MS) {
            last_check = monotonic_ms();
            unlock(l);
            check_epoch(l);
            lock(l);
        }
        if (l->lost_inflight && l->st.connected) {
            l->lost_inflight = false;
            unlock(l);
            reclaim_inflight(l);
            lock(l);
        }
        if (l->js != NULL && !l->st.subscribed && l->st.connected) {
            unlock(l);
            bool ok = subscribe(l);
            lock(l);
            if (!ok) {
                wait_ms(l, RETRY_WAIT_MS);
                continue;
            }
        }
        if (l->js == NULL || !publish_round(l))
            wait_ms(l, IDLE_WAIT_MS);
    }
    unlock(l);

    hang_up(l);
    return NULL;
}

static void link_free(struct gr_link *l)
{
    for (size_t i = 0; i < l->count; i++)
        out_free(l->ring[(l->head + i) % GR_LINK_QUEUE_MAX]);
    for (size_t i = 0; i < l->n_retry; i++)
        out_free(l->retry[(l->retry_head + i) % GR_LINK_INFLIGHT_MAX]);
    free(l->ring);
    free(l->retry);
    free(l->urls);
    free(l->strings);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->wake);
    free(l);
}

/* A copy of cfg's strings in one allocation, so the caller's may go. */
static int copy_config(struct gr_link *l, const struct gr_link_config *cfg)
{
    size_t n = strlen(cfg->stream) + strlen(cfg->subjects) + strlen(cfg->node) + 3;
    for (size_t i = 0; i < cfg->n_urls; i++)
        n += strlen(cfg->urls[i]) + 1;
    l->strings = malloc(n);
    l->urls = calloc(cfg->n_urls, sizeof(*l->urls));
    if (l->strings == NULL || l->urls == NULL)
        return -ENOMEM;
    char *p = l->strings;
#define COPY(dst, src) (dst = strcpy(p, src), p += strlen(src) + 1)
    l->cfg = *cfg;
    COPY(l->cfg.stream, cfg->stream);
    COPY(l->cfg.subjects, cfg->subjects);
    COPY(l->cfg.node, cfg->node);
    for (size_t i = 0; i < cfg->n_urls; i++)
        COPY(l->urls[i], cfg->urls[i]);
#undef COPY
    l->cfg.urls = (const char *const *)l->urls;
    return 0;
}

static struct gr_link *link_new(const struct gr_link_config *cfg,
                                const struct gr_link_callbacks *cb)
{
    struct gr_link *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->wake, NULL);
    if (cb != NULL)
        l->cb = *cb;
    if (copy_config(l, cfg) < 0) {
        link_free(l);
        return NULL;
    }
    return l;
}

static int link_start(const struct gr_link_config *cfg, const struct gr_link_callbacks *cb,
                      struct gr_link **out, char *err, size_t errlen)
{
    struct gr_link *l = link_new(cfg, cb);
    if (l != NULL) {
        l->ring = calloc(GR_LINK_QUEUE_MAX, sizeof(*l->ring));
        l->retry = calloc(GR_LINK_INFLIGHT_MAX, sizeof(*l->retry));
    }
    if (l == NULL || l->ring == NULL || l->retry == NULL) {
        if (l != NULL)
            link_free(l);
        snprintf(err, errlen, "cluster: out of memory");
        return -ENOMEM;
    }
    int rc = pthread_create(&l->thread, NULL, link_main, l);
    if (rc != 0) {
        link_free(l);
        snprintf(err, errlen, "cluster: cannot start a thread: %s", strerror(rc));
        return -rc;
    }
    *out = l;
    return 0;
}

static int link_publish(struct gr_link *l, const struct gr_outgoing *m)
{
    struct out *o = out_new(m->subject, m->msg_id, m->rx, m->src, m->data, m->len);
    if (o == NULL)
        return -ENOMEM;
    lock(l);
    if (l->count == GR_LINK_QUEUE_MAX) { /* counted by the caller */
        unlock(l);
        out_free(o);
        return -ENOSPC;
    }
    l->ring[(l->head + l->count) % GR_LINK_QUEUE_MAX] = o;
    l->count++;
    pthread_cond_signal(&l->wake);
    unlock(l);
    return 0;
}

static void link_state(struct gr_link *l, struct gr_link_state *out)
{
    lock(l);
    *out = l->st;
    out->queued = l->count + l->n_retry + l->inflight;
    unlock(l);
}

static void link_destroy(struct gr_link *l)
{
    lock(l);
    l->stopping = true;
    pthread_cond_signal(&l->wake);
    unlock(l);
    pthread_join(l->thread, NULL);
    /* libnats delivers its callbacks (a disconnect, a late acknowledgement, a message) on
     * its own threads, after the connection is closed: l must outlive them, so the library
     * is stopped first, waiting for every one of its threads. It is loaded once per
     * process, and stopped once. */
    nats_CloseAndWait(CONNECT_TIMEOUT_MS);
    link_free(l);
}

static void log_nowhere(int level, const char *fmt, ...)
{
    (void)level;
    (void)fmt;
}

static int link_check(const struct gr_link_config *cfg, char *err, size_t errlen)
{
    struct gr_link_callbacks cb = {.log = log_nowhere};
    struct gr_link *l = link_new(cfg, &cb);
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc = connect_nats(l, false, err, errlen);
    if (rc == 0) {
        jsStreamInfo *si = NULL;
        natsStatus s = ensure_stream(l, &si, false, err, errlen);
        if (s == NATS_NOT_FOUND) {
            jsAccountInfo *ai = NULL; /* no stream yet: JetStream must be there to make it */
            s = js_GetAccountInfo(&ai, l->js, NULL, NULL);
            jsAccountInfo_Destroy(ai);
            if (s != NATS_OK)
                snprintf(err, errlen, "NATS at %s has no JetStream: %s", l->urls[0],
                         natsStatus_GetText(s));
        }
        jsStreamInfo_Destroy(si);
        rc = s == NATS_OK ? 0 : -EIO;
    }
    hang_up(l);
    nats_CloseAndWait(CONNECT_TIMEOUT_MS);
    link_free(l);
    return rc;
}

__attribute__((visibility("default"))) const struct gr_link_ops gr_link_ops = {
    .start = link_start,
    .publish = link_publish,
    .state = link_state,
    .destroy = link_destroy,
    .check = link_check,
};
