/*
 * fuzz_console.c - the console side without sockets: Phoenix sessions (phoenix.h), the
 * LongPoll transport (longpoll.h) and the hub (hub.h) behind them, driven by a sequence of
 * operations that lws, ingest, the mapping and the timers would cause.
 *
 * The input is a list of operations, one opcode byte and its argument bytes each (see
 * ops[]); a text argument runs to the next NUL byte, so dictionary words land whole.
 * CONNS fake HTTP connections (http_recorder.h) carry LongPoll requests: GET and POST with
 * no session token, one seen in an earlier answer or garbage; body pieces, raw or Phoenix
 * frames; body completion; writeable callbacks (owed or spurious); closes; lws deadlines.
 * CONSOLES WebSocket-like consoles take frames and are drained as ws.c does. Time advances
 * in steps of up to 25.5 s, so the 10 s poll window, the 15 s session lifetime, the 20 s
 * staleness and token expiry are all reached; positions are published, units go stale,
 * the mapping changes (at once, or a device per step) and everything is reauthorized,
 * max_connections_per_source is reloaded, and bursts of one frame fill a console's queue.
 *
 * Checks, besides the recorder's (http.h contract) and the sanitizers':
 *   - a session never answers another identity's request: every answer naming a session
 *     token goes to a request of the identity that opened that session;
 *   - every frame a console emits (WebSocket or inside a LongPoll answer) is a JSON array
 *     of 5 with string topic and event; positions and unit_stale only on topics the
 *     console's claims allow under the mapping in force, and positions of an agency topic
 *     only of units mapped to that agency;
 *   - a request is in flight exactly while its connection holds LongPoll state: every
 *     call either answers and frees it or keeps both; a complete POST body is answered;
 *   - after a sweep, every poll past its window has asked for its writeable callback;
 *   - sessions stay within the per-source limit and GR_LONGPOLL_SESSIONS_MAX, and once
 *     every connection is gone a sweep a session lifetime later leaves none;
 *   - a console's wake comes at most once between drains, and a console with output has
 *     woken its transport; a console drained to the end has no output left.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <jansson.h>

#include "fuzz.h"
#include "gpsrelay/addrtable.h"
#include "gpsrelay/admission.h"
#include "gpsrelay/config.h"
#include "gpsrelay/hub.h"
#include "gpsrelay/log.h"
#include "gpsrelay/longpoll.h"
#include "gpsrelay/mapping.h"
#include "gpsrelay/phoenix.h"
#include "gpsrelay/token.h"
#include "http_recorder.h"

#define CONNS           8   /* LongPoll connections at once */
#define CONSOLES        4   /* WebSocket consoles at once */
#define OPS_MAX         256 /* operations per input: an execution stays under a millisecond */
#define DRAIN_MAX       64  /* frames one WebSocket writeable callback takes */
#define BURST_MAX       160 /* frames of one burst: past GR_CONSOLE_CONTROL_MAX */
#define BURSTS_BUDGET   320 /* burst frames per input (an input of bursts ran 16,000) */
#define SESSIONS_KNOWN  32  /* session tokens remembered from answers, newest first */
#define MAX_PER_SOURCE  3   /* max_connections_per_source: small, so the limit is hit */
#define SOURCES         2   /* distinct peer addresses (see peer_of) */
#define STALE_AFTER_MS  20000
#define START_S         1795458001LL /* 2026-11-23T18:20:01Z: the wall clock at every start */
#define EXP_FAR         (START_S + 86400)
#define EXP_SOON        (START_S + 20) /* past, with GR_TOKEN_SKEW_S, 50 s in */
#define GARBAGE_SESSION "0123456789abcdef0123456789abcdef"

/* ---- who a request speaks for --------------------------------------------------------- */

/* What admission decides for a request (lws->auth), by a fuzzer byte. */
enum auth_choice {
    AUTH_COUNTY,      /* dispatch-1, county-ems */
    AUTH_COUNTY_SOON, /* the same identity, a token that expires during the input */
    AUTH_FIRE,        /* dispatch-2, city-fire and county-ems */
    AUTH_FIRE_ONLY,   /* dispatch-1 again, but only city-fire: another identity */
    AUTH_NONE,        /* auth off: every topic, identity "nobody" */
    AUTH_REFUSE,      /* a bad token or Origin: 403 */
    AUTH_CHOICES
};

/* Identities as longpoll.h defines them (sub and agencies, not exp). */
enum identity { ID_NOBODY, ID_COUNTY, ID_FIRE, ID_FIRE_ONLY, ID_COUNT };

static const enum identity identity_of_choice[AUTH_CHOICES] = {
    [AUTH_COUNTY] = ID_COUNTY,       [AUTH_COUNTY_SOON] = ID_COUNTY, [AUTH_FIRE] = ID_FIRE,
    [AUTH_FIRE_ONLY] = ID_FIRE_ONLY, [AUTH_NONE] = ID_NOBODY,        [AUTH_REFUSE] = ID_NOBODY,
};

/* Agencies each identity may see; NULL-terminated. ID_NOBODY sees everything. */
static const char *const agencies_of[ID_COUNT][3] = {
    [ID_COUNTY] = {"county-ems", NULL},
    [ID_FIRE] = {"city-fire", "county-ems", NULL},
    [ID_FIRE_ONLY] = {"city-fire", NULL},
};

static void claims_fill(enum auth_choice a, struct gr_token *t)
{
    memset(t, 0, sizeof(*t));
    enum identity id = identity_of_choice[a];
    snprintf(t->sub, sizeof(t->sub), "%s", id == ID_FIRE ? "dispatch-2" : "dispatch-1");
    t->exp = a == AUTH_COUNTY_SOON ? EXP_SOON : EXP_FAR;
    t->iat = START_S - 60;
    for (size_t i = 0; agencies_of[id][i] != NULL; i++) /* sorted, as gr_token_verify makes */
        snprintf(t->agencies[t->n_agencies++], sizeof(t->agencies[0]), "%s", agencies_of[id][i]);
}

/*
 * The second thing changed in the code under test by the linker (-Wl,--wrap,
 * CMakeLists.txt): longpoll's call of gr_admission_check comes here, so the fuzzer chooses
 * each request's claims without minting and signing tokens. The rest of admission.c (the
 * per-source counts) is the real one.
 */
int __wrap_gr_admission_check(struct gr_admission *a, struct lws *wsi, struct gr_token *claims,
                              bool *authed);

int __wrap_gr_admission_check(struct gr_admission *a, struct lws *wsi, struct gr_token *claims,
                              bool *authed)
{
    (void)a;
    if (wsi->auth == AUTH_REFUSE)
        return 403;
    *authed = wsi->auth != AUTH_NONE;
    if (*authed)
        claims_fill((enum auth_choice)wsi->auth, claims);
    return 0;
}

/* ---- the world of one input ------------------------------------------------------------- */

static const char *const devices[] = {"AMB-12", "E-7", "M-3", "L-9"};
#define N_DEVICES (sizeof(devices) / sizeof(devices[0]))

/* Three mappings to move between: units change agencies, come, go and get relabelled. */
static const char *const mappings[][8] = {
    {"AMB-12 county-ems Medic-12", "AMB-12 city-fire Medic-12", "E-7 city-fire Engine-7",
     "M-3 county-ems Medic-3", NULL},
    {"AMB-12 city-fire Medic-12", "E-7 county-ems Engine-7", "L-9 city-fire Ladder-9", NULL},
    {"AMB-12 county-ems Medic-12b", "M-3 county-ems Medic-3", "M-3 city-fire Medic-3",
     "L-9 city-fire Ladder-9", NULL},
};
#define N_MAPPINGS (sizeof(mappings) / sizeof(mappings[0]))

struct known_session {
    char token[40];
    enum identity identity;
};

struct ws_console {
    struct gr_console *c; /* NULL: none in this slot */
    enum identity identity;
    bool woken; /* the wake callback ran and no drain has emptied the console since */
};

static struct world {
    struct gr_hub *hub;
    struct gr_config cfg;           /* what admission reads: max_connections_per_source */
    struct gr_admission *admission; /* counts sessions per source */
    struct gr_longpoll *lp;
    struct gr_hub_update *update; /* a mapping being applied in steps, or NULL */
    unsigned max_per_source;      /* the largest set in this input */
    unsigned burst_frames_left;   /* of BURSTS_BUDGET */
    uint64_t now_ms;              /* uv_now(): starts at 1 s, as a loop's clock does */
    struct lws *conn[CONNS];
    struct gr_longpoll_request *req[CONNS]; /* each connection's per-session data */
    struct ws_console ws[CONSOLES];
    struct known_session known[SESSIONS_KNOWN];
    size_t n_known;
    const uint8_t *p, *end; /* what is left of the input */
} w;

/* FUZZ_CONSOLE_TRACE=1 prints every answer and frame: what an input does, for people. */
static bool trace;

static int64_t now_s(void)
{
    return START_S + (int64_t)(w.now_ms / 1000);
}

static int64_t wall_ms(void)
{
    return START_S * 1000 + (int64_t)w.now_ms;
}

static uint8_t take(void)
{
    return w.p < w.end ? *w.p++ : 0;
}

/* A text argument: the bytes up to the next NUL (consumed) or the end of the input. */
static const char *take_text(size_t *len)
{
    const char *s = (const char *)w.p;
    const uint8_t *nul = memchr(w.p, 0, (size_t)(w.end - w.p));
    *len = (size_t)((nul ? nul : w.end) - w.p);
    w.p = nul ? nul + 1 : w.end;
    return s;
}

static struct gr_mapping *mapping_build(size_t which)
{
    char err[256], dev[32], agency[32], label[32];
    struct gr_mapping_builder *b = gr_mapping_builder_new();
    FUZZ_CHECK(b != NULL);
    for (size_t i = 0; mappings[which][i] != NULL; i++) {
        FUZZ_CHECK(sscanf(mappings[which][i], "%31s %31s %31s", dev, agency, label) == 3);
        FUZZ_CHECK(gr_mapping_builder_add(b, dev, agency, label, NULL, err, sizeof(err)) == 0);
    }
    struct gr_mapping *m = gr_mapping_builder_finish(b, err, sizeof(err));
    FUZZ_CHECK(m != NULL);
    return m;
}

/* ---- what consoles may see ---------------------------------------------------------------- */

static bool identity_has_agency(enum identity id, const char *agency)
{
    if (id == ID_NOBODY)
        return true;
    for (size_t i = 0; agencies_of[id][i] != NULL; i++)
        if (strcmp(agencies_of[id][i], agency) == 0)
            return true;
    return false;
}

static bool device_in_agency(const struct gr_device *d, const char *agency)
{
    for (size_t i = 0; d != NULL && i < d->n_agencies; i++)
        if (strcmp(d->agencies[i], agency) == 0)
            return true;
    return false;
}

/* docs/protocol.md: agency:<id> for the token's agencies, device:<id> for their units. */
static bool may_see_topic(enum identity id, const char *topic)
{
    if (id == ID_NOBODY)
        return true;
    if (strncmp(topic, "agency:", 7) == 0)
        return identity_has_agency(id, topic + 7);
    if (strncmp(topic, "device:", 7) != 0)
        return false;
    const struct gr_device *d =
        gr_mapping_find(gr_hub_mapping(w.hub), topic + 7, strlen(topic + 7));
    for (size_t i = 0; d != NULL && i < d->n_agencies; i++)
        if (identity_has_agency(id, d->agencies[i]))
            return true;
    return false;
}

/* Every position of a positions frame belongs to the frame's topic under the mapping. */
static void check_positions(const char *topic, json_t *payload)
{
    json_t *list = json_object_get(payload, "positions");
    FUZZ_CHECK(json_is_array(list) && json_array_size(list) > 0);
    size_t i;
    json_t *pos;
    json_array_foreach(list, i, pos)
    {
        const char *device = json_string_value(json_object_get(pos, "device"));
        FUZZ_CHECK(device != NULL);
        FUZZ_CHECK(json_is_integer(json_object_get(pos, "seq")));
        if (strncmp(topic, "device:", 7) == 0) {
            FUZZ_CHECK(strcmp(topic + 7, device) == 0);
        } else {
            const struct gr_device *d =
                gr_mapping_find(gr_hub_mapping(w.hub), device, strlen(device));
            FUZZ_CHECK(device_in_agency(d, topic + 7));
        }
    }
}

/* One frame a console sent to a console of identity id. */
static void check_frame(const char *frame, size_t len, enum identity id)
{
    json_error_t err;
    json_t *msg = json_loadb(frame, len, 0, &err);
    FUZZ_CHECK(json_is_array(msg) && json_array_size(msg) == 5);
    const char *topic = json_string_value(json_array_get(msg, 2));
    const char *event = json_string_value(json_array_get(msg, 3));
    FUZZ_CHECK(topic != NULL && event != NULL);
    if (strcmp(event, "positions") == 0 || strcmp(event, "unit_stale") == 0) {
        FUZZ_CHECK(may_see_topic(id, topic));
        FUZZ_CHECK(json_is_null(json_array_get(msg, 0)) && json_is_null(json_array_get(msg, 1)));
    }
    if (strcmp(event, "positions") == 0)
        check_positions(topic, json_array_get(msg, 4));
    json_decref(msg);
}

/* ---- LongPoll answers ----------------------------------------------------------------------- */

static struct known_session *known_find(const char *token)
{
    for (size_t i = 0; i < w.n_known; i++)
        if (strcmp(w.known[i].token, token) == 0)
            return &w.known[i];
    return NULL;
}

static void known_add(const char *token, enum identity id)
{
    if (w.n_known < SESSIONS_KNOWN)
        w.n_known++;
    memmove(&w.known[1], &w.known[0], (w.n_known - 1) * sizeof(w.known[0]));
    snprintf(w.known[0].token, sizeof(w.known[0].token), "%s", token);
    w.known[0].identity = id;
}

static void on_reply(struct lws *wsi, unsigned http_status, json_t *body)
{
    json_int_t status = json_integer_value(json_object_get(body, "status"));
    const char *token = json_string_value(json_object_get(body, "token"));
    json_t *messages = json_object_get(body, "messages");
    enum identity id = identity_of_choice[wsi->auth];
    if (trace) {
        char *text = json_dumps(body, JSON_COMPACT);
        size_t i = 0;
        while (i < CONNS && w.conn[i] != wsi)
            i++;
        fprintf(stderr, "t=%" PRIu64 " conn %zu %s auth %d: %u %s\n", w.now_ms, i,
                wsi->post ? "POST" : "GET", wsi->auth, http_status, text);
        free(text);
    }

    /* Phoenix answers 200 with the status inside; refusals are real HTTP statuses too. */
    FUZZ_CHECK(http_status == 200 || (json_int_t)http_status == status);
    if (wsi->auth == AUTH_REFUSE)
        FUZZ_CHECK(status == 403);
    if (token == NULL) {
        FUZZ_CHECK(messages == NULL || json_array_size(messages) == 0);
        return;
    }
    FUZZ_CHECK(strlen(token) == 32 && strspn(token, "0123456789abcdef") == 32);
    struct known_session *k = known_find(token);
    if (status == 410) {
        /* A new session, for this identity; its token was never seen before. */
        FUZZ_CHECK(!wsi->post && k == NULL);
        FUZZ_CHECK(messages != NULL && json_array_size(messages) == 0);
        known_add(token, id);
        return;
    }
    /* An answer from a session: only ever to the identity that opened it. */
    FUZZ_CHECK(status == 200 || status == 204);
    FUZZ_CHECK(k == NULL || k->identity == id);
    FUZZ_CHECK(k != NULL || w.n_known == SESSIONS_KNOWN); /* forgotten, else made by a 410 */
    FUZZ_CHECK(wsi->post ? messages == NULL : json_is_array(messages));
    FUZZ_CHECK(status == 200 || json_array_size(messages) == 0);
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        FUZZ_CHECK(json_is_string(m));
        check_frame(json_string_value(m), json_string_length(m), id);
    }
}

/* ---- LongPoll connections -------------------------------------------------------------------- */

/* Peer addresses: 10.0.0.1 and its IPv4-mapped IPv6 form are one source (SOURCES). */
static const union gr_peer *peer_of(uint8_t b)
{
    static union gr_peer peers[3];
    static bool made;
    if (!made) {
        peers[0].in = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(40000)};
        inet_pton(AF_INET, "10.0.0.1", &peers[0].in.sin_addr);
        peers[1].in = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(40001)};
        inet_pton(AF_INET, "10.0.0.2", &peers[1].in.sin_addr);
        peers[2].in6 = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_port = htons(40002)};
        inet_pton(AF_INET6, "::ffff:10.0.0.1", &peers[2].in6.sin6_addr);
        made = true;
    }
    return b % 8 == 7 ? NULL : &peers[b % 3]; /* now and then, a connection going away */
}

/* lws reports the connection closed (LWS_CALLBACK_CLOSED_HTTP); ws.c tells longpoll. */
static void conn_close(size_t i)
{
    if (w.conn[i] == NULL)
        return;
    if (w.req[i] != NULL)
        gr_longpoll_done(&w.req[i], w.now_ms);
    FUZZ_CHECK(w.req[i] == NULL);
    recorder_close(w.conn[i]);
    w.conn[i] = NULL;
}

/* What lws does with a callback's return value: -1 closes the connection. */
static void conn_result(size_t i, int rc)
{
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc != 0)
        conn_close(i);
}

/* A request is in flight exactly while longpoll holds state for it (longpoll.h). */
static void check_conns(void)
{
    for (size_t i = 0; i < CONNS; i++) {
        if (w.conn[i] == NULL) {
            FUZZ_CHECK(w.req[i] == NULL);
            continue;
        }
        FUZZ_CHECK(w.conn[i]->in_request == (w.req[i] != NULL));
        /* A complete POST body is answered by the call that completes it. */
        FUZZ_CHECK(!(w.conn[i]->in_request && w.conn[i]->body_done));
    }
}

/*
 * GET or POST /socket/longpoll on connection i. Argument bits: auth choice; which session
 * token (none, the n-th known, garbage); an auth token= before it; vsn wrong or missing;
 * the peer. A connection with a request in flight is closed first (the client gave up).
 */
static void op_request(bool post)
{
    size_t i = take() % CONNS;
    uint8_t auth = take(), tok = take(), flags = take();
    if (w.conn[i] != NULL && w.conn[i]->in_request)
        conn_close(i);
    if (w.conn[i] == NULL && (w.conn[i] = recorder_open(peer_of(flags >> 3))) == NULL)
        return;
    struct lws *wsi = w.conn[i];
    recorder_begin(wsi, post);
    wsi->auth = auth % AUTH_CHOICES;
    if ((flags & 3) != 3)
        recorder_add_arg(wsi, "vsn", (flags & 3) == 2 && (tok & 0x80) ? "1.0.0" : "2.0.0");
    if (flags & 4) /* the console's own token, which the session's comes after */
        recorder_add_arg(wsi, "token", "eyJhbGciOiJIUzI1NiJ9.e30.c2ln");
    if (tok % 8 == 7)
        recorder_add_arg(wsi, "token", GARBAGE_SESSION);
    else if (tok % 8 != 0 && w.n_known > 0)
        recorder_add_arg(wsi, "token", w.known[(tok >> 3) % w.n_known].token);
    conn_result(i, gr_longpoll_http(w.lp, wsi, &w.req[i], w.now_ms));
}

/* The connection's POST, while its body still arrives (lws's HTTP_BODY callbacks). */
static struct lws *body_target(size_t i)
{
    struct lws *wsi = w.conn[i];
    return wsi != NULL && wsi->in_request && wsi->post && !wsi->body_done ? wsi : NULL;
}

static void op_body_raw(void)
{
    size_t i = take() % CONNS, len;
    const char *text = take_text(&len);
    if (body_target(i) != NULL)
        conn_result(i, gr_longpoll_body(w.req[i], text, len));
}

/* ---- Phoenix frames ---------------------------------------------------------------------- */

static const char *const topics[] = {
    "agency:county-ems", "agency:city-fire", "device:AMB-12", "device:E-7",
    "device:M-3",        "device:L-9",       "agency:other",  "phoenix",
};
static const char *const events[] = {"phx_join", "phx_leave", "heartbeat", "phx_join",
                                     "phx_join", "phx_leave", "custom",    "phx_join"};

/*
 * A well-formed Phoenix frame from three bytes: topic, event, refs (join_ref and ref
 * from a few values, so leaves match joins often), and a join's since: none, this hub's
 * epoch at some seq, or another epoch.
 */
static size_t canned_frame(char *out, size_t cap)
{
    uint8_t t = take(), e = take(), r = take();
    const char *topic = topics[t % 8], *event = events[e % 8];
    char payload[160] = "{}";
    if (strcmp(event, "phx_join") == 0 && (e & 0x18)) {
        uint64_t seq = gr_hub_seq(w.hub), back = (e >> 5) % 4;
        snprintf(payload, sizeof(payload), "{\"since\":{\"epoch\":\"%s\",\"seq\":%" PRIu64 "}}",
                 (e & 0x08) ? gr_hub_epoch(w.hub) : "0000000000000000",
                 seq >= back ? seq - back : 0);
    }
    char join_ref[8] = "null";
    if (strcmp(event, "heartbeat") != 0 && r % 5 != 4)
        snprintf(join_ref, sizeof(join_ref), "\"%u\"", r % 5);
    int n =
        snprintf(out, cap, "[%s,\"%u\",\"%s\",\"%s\",%s]", join_ref, r >> 3, topic, event, payload);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static void op_body_frame(void)
{
    size_t i = take() % CONNS;
    char frame[256];
    size_t len = canned_frame(frame, sizeof(frame) - 1);
    frame[len++] = '\n'; /* newline-delimited, as the Phoenix LongPoll client batches them */
    if (body_target(i) != NULL)
        conn_result(i, gr_longpoll_body(w.req[i], frame, len));
}

static void op_body_done(void)
{
    size_t i = take() % CONNS;
    struct lws *wsi = body_target(i);
    if (wsi == NULL)
        return;
    wsi->body_done = true;
    conn_result(i, gr_longpoll_body_done(&w.req[i], w.now_ms));
}

/* LWS_CALLBACK_HTTP_WRITEABLE: owed, or spurious (never to a POST still reading its
 * body: nothing asks for that one's writeable, and lws writes only what was asked). */
static void deliver_writeable(size_t i, bool spurious)
{
    struct lws *wsi = w.conn[i];
    if (wsi == NULL || !(wsi->want_write || (spurious && body_target(i) == NULL)))
        return;
    wsi->want_write = false;
    if (w.req[i] != NULL) /* ws.c: only a LongPoll request in flight is served */
        conn_result(i, gr_longpoll_writeable(&w.req[i], w.now_ms));
}

static void op_writeable(void)
{
    uint8_t b = take();
    deliver_writeable(b % CONNS, b & 0x80);
}

/* One lws service turn: every owed writeable callback. */
static void op_service(void)
{
    for (size_t i = 0; i < CONNS; i++)
        deliver_writeable(i, false);
}

static void op_close(void)
{
    conn_close(take() % CONNS);
}

/* ---- WebSocket consoles ------------------------------------------------------------------- */

static void ws_wake(void *transport)
{
    struct ws_console *ws = transport;
    FUZZ_CHECK(ws->c != NULL);
    FUZZ_CHECK(!ws->woken); /* "at most once until the next drain" */
    ws->woken = true;
}

static void ws_free(struct ws_console *ws)
{
    gr_console_free(ws->c);
    ws->c = NULL;
    ws->woken = false;
}

static void op_ws_new(void)
{
    uint8_t b = take();
    struct ws_console *ws = &w.ws[b % CONSOLES];
    enum auth_choice a = (enum auth_choice)((b >> 2) % AUTH_CHOICES);
    if (a == AUTH_REFUSE)
        return; /* refused at the upgrade: no console */
    ws_free(ws);
    ws->c = gr_console_new(w.hub, ws_wake, ws);
    FUZZ_CHECK(ws->c != NULL);
    ws->identity = identity_of_choice[a];
    if (a != AUTH_NONE) {
        struct gr_token claims;
        claims_fill(a, &claims);
        FUZZ_CHECK(gr_console_set_auth(ws->c, &claims) == 0);
    }
}

static void ws_receive(struct ws_console *ws, const char *frame, size_t len)
{
    if (ws->c == NULL)
        return;
    int code = gr_console_receive(ws->c, frame, len, w.now_ms);
    FUZZ_CHECK(code == 0 || code == GR_WS_INVALID || code == GR_WS_POLICY);
    if (code != 0)
        ws_free(ws); /* ws.c closes the connection; the console goes with it */
}

static void op_ws_raw(void)
{
    struct ws_console *ws = &w.ws[take() % CONSOLES];
    size_t len;
    const char *text = take_text(&len);
    ws_receive(ws, text, len);
}

static void op_ws_frame(void)
{
    struct ws_console *ws = &w.ws[take() % CONSOLES];
    char frame[256];
    size_t len = canned_frame(frame, sizeof(frame));
    ws_receive(ws, frame, len);
}

/* ws.c's writeable callback: frames until none is left or the budget is spent. */
static void op_ws_drain(void)
{
    struct ws_console *ws = &w.ws[take() % CONSOLES];
    if (ws->c == NULL)
        return;
    struct gr_buf out = gr_buf_make(0);
    for (int n = 0; n < DRAIN_MAX; n++) {
        out.len = 0;
        int more = gr_console_next_frame(ws->c, &out);
        FUZZ_CHECK(more == 0 || more == 1 || more == -EOVERFLOW);
        if (more < 0) {
            ws_free(ws);
            break;
        }
        if (more == 0) {
            ws->woken = false;
            FUZZ_CHECK(!gr_console_has_output(ws->c)); /* drained means nothing left */
            break;
        }
        if (trace)
            fprintf(stderr, "t=%" PRIu64 " ws %zu: %.*s\n", w.now_ms, (size_t)(ws - w.ws),
                    (int)out.len, gr_buf_data(&out));
        check_frame(gr_buf_data(&out), out.len, ws->identity);
    }
    gr_buf_free(&out);
}

static void op_ws_free(void)
{
    ws_free(&w.ws[take() % CONSOLES]);
}

/* Nothing waits in a console without its transport having been woken. */
static void check_consoles(void)
{
    for (size_t i = 0; i < CONSOLES; i++)
        if (w.ws[i].c != NULL && gr_console_has_output(w.ws[i].c))
            FUZZ_CHECK(w.ws[i].woken);
}

/* ---- time, the hub, the mapping ---------------------------------------------------------- */

/* Time passes in steps of 100 ms; lws closes connections whose deadline went by. */
static void op_time(void)
{
    w.now_ms += (uint64_t)take() * 100;
    recorder_now_ms = w.now_ms;
    for (size_t i = 0; i < CONNS; i++)
        if (w.conn[i] != NULL && w.conn[i]->in_request && w.conn[i]->deadline_ms <= w.now_ms)
            conn_close(i);
}

/* ws.c's once-a-second sweep: LongPoll sessions, and WebSocket consoles past their exp. */
static void op_sweep(void)
{
    gr_longpoll_sweep(w.lp, w.now_ms, now_s());
    for (size_t i = 0; i < CONSOLES; i++)
        if (w.ws[i].c != NULL && now_s() - GR_TOKEN_SKEW_S > gr_console_expires(w.ws[i].c))
            ws_free(&w.ws[i]);
    /* A poll past its window is answered (204) by its writeable callback, now owed. */
    for (size_t i = 0; i < CONNS; i++) {
        struct lws *wsi = w.conn[i];
        if (wsi != NULL && wsi->in_request && !wsi->post &&
            w.now_ms - wsi->started_ms >= GR_LONGPOLL_WINDOW_MS)
            FUZZ_CHECK(wsi->want_write);
    }
}

/* A fix of a device from ingest: a little north of the last, up to 15 s old. */
static void op_publish(void)
{
    uint8_t d = take(), age = take(), north = take();
    struct gr_unit *u =
        gr_hub_find_unit(w.hub, devices[d % N_DEVICES], strlen(devices[d % N_DEVICES]));
    if (u == NULL)
        return; /* not mapped now: ingest drops it */
    struct gr_fix f = {.time_ms = wall_ms() - (age % 16) * 1000,
                       .lat = 40.0 + north * 0.00001,
                       .lon = -74.0,
                       .valid = true};
    gr_hub_publish(w.hub, u, &f, wall_ms(), 0);
}

static void op_stale(void)
{
    gr_hub_check_stale(w.hub, wall_ms());
}

static void reauthorize_all(void)
{
    gr_longpoll_reauthorize(w.lp);
    for (size_t i = 0; i < CONSOLES; i++)
        if (w.ws[i].c != NULL)
            gr_console_reauthorize(w.ws[i].c);
}

/* A mapping reload at once (a CSV), and the reauthorization the daemon does right after.
 * It cancels an update in progress (hub.h). */
static void op_mapping(void)
{
    w.update = NULL;
    FUZZ_CHECK(gr_hub_set_mapping(w.hub, mapping_build(take() % N_MAPPINGS)) == 0);
    reauthorize_all();
}

/* A large mapping applied in steps (PostgreSQL): begins one, or prepares one more device
 * of the one in progress; joins, positions and polls go on in between. */
static void op_mapping_step(void)
{
    uint8_t b = take();
    if (w.update == NULL) {
        w.update = gr_hub_update_begin(w.hub, mapping_build(b % N_MAPPINGS));
        FUZZ_CHECK(w.update != NULL);
        return;
    }
    int rc = gr_hub_update_step(w.update, 1);
    FUZZ_CHECK(rc == 0 || rc == 1);
    if (rc == 0) { /* committed and freed */
        w.update = NULL;
        reauthorize_all();
    }
}

/* A reload of max_connections_per_source, for sessions made from now on. */
static void op_max_per_source(void)
{
    unsigned max = 1 + take() % MAX_PER_SOURCE;
    w.cfg.max_connections_per_source = (int)max;
    gr_admission_set_config(w.admission, &w.cfg);
    if (max > w.max_per_source)
        w.max_per_source = max;
}

/*
 * The same Phoenix frame many times in a row, to a POST body (newline-delimited) or a
 * WebSocket console: enough to fill GR_CONSOLE_CONTROL_MAX replies, which no other
 * operation can within an input's length.
 */
static void op_burst(void)
{
    uint8_t target = take(), count = take();
    char frame[256];
    size_t len = canned_frame(frame, sizeof(frame) - 1);
    frame[len++] = '\n';
    for (int n = 0; n <= count % BURST_MAX && w.burst_frames_left > 0; n++) {
        w.burst_frames_left--;
        if (target & 0x80) {
            struct ws_console *ws = &w.ws[target % CONSOLES];
            ws_receive(ws, frame, len - 1);
        } else if (body_target(target % CONNS) != NULL) {
            conn_result(target % CONNS, gr_longpoll_body(w.req[target % CONNS], frame, len));
        }
    }
}

/* ---- the input --------------------------------------------------------------------------- */

static void op_get(void)
{
    op_request(false);
}

static void op_post(void)
{
    op_request(true);
}

static void (*const ops[])(void) = {
    op_get,          op_post,           op_body_raw, op_body_frame, op_body_done, op_writeable,
    op_service,      op_close,          op_time,     op_sweep,      op_publish,   op_stale,
    op_mapping,      op_ws_new,         op_ws_raw,   op_ws_frame,   op_ws_drain,  op_ws_free,
    op_mapping_step, op_max_per_source, op_burst,
};
#define N_OPS (sizeof(ops) / sizeof(ops[0]))

/*
 * The one thing changed in the code under test, by the linker (-Wl,--wrap, CMakeLists.txt):
 * address tables are preallocated, and admission's per-source tables of 65,536 entries
 * (3 MB, touched page by page under ASan) made every execution cost 3 ms. The inputs use
 * SOURCES addresses, so a table of SOURCES_TABLE entries behaves exactly as the big one.
 */
#define SOURCES_TABLE 64
struct gr_addrtable *__real_gr_addrtable_new(size_t max, size_t value_size, bool with_port);
struct gr_addrtable *__wrap_gr_addrtable_new(size_t max, size_t value_size, bool with_port);

struct gr_addrtable *__wrap_gr_addrtable_new(size_t max, size_t value_size, bool with_port)
{
    return __real_gr_addrtable_new(max < SOURCES_TABLE ? max : SOURCES_TABLE, value_size,
                                   with_port);
}

static void setup(void)
{
    static bool quiet;
    if (!quiet) {
        gr_log_set_level(LOG_ERR); /* "ignoring ... stale join_ref" would flood the run */
        quiet = true;
        trace = getenv("FUZZ_CONSOLE_TRACE") != NULL;
    }
    struct gr_hub_options opt = {.max_future_skew_ms = 300000,
                                 .max_speed = 150,
                                 .stale_after_ms = STALE_AFTER_MS,
                                 .notify = gr_console_on_pending,
                                 .event = gr_console_on_event};
    memset(&w, 0, sizeof(w));
    w.now_ms = 1000;
    recorder_now_ms = w.now_ms;
    recorder_reset();
    recorder_on_reply = on_reply;
    w.hub = gr_hub_new(&opt);
    FUZZ_CHECK(w.hub != NULL);
    FUZZ_CHECK(gr_hub_set_mapping(w.hub, mapping_build(0)) == 0);
    w.max_per_source = MAX_PER_SOURCE;
    w.burst_frames_left = BURSTS_BUDGET;
    w.cfg.max_connections_per_source = (int)w.max_per_source;
    w.admission = gr_admission_new(&w.cfg, NULL, 0);
    FUZZ_CHECK(w.admission != NULL);
    w.lp = gr_longpoll_new(w.hub, w.admission);
    FUZZ_CHECK(w.lp != NULL);
}

/* lws lets go of every request, then the daemon frees longpoll, consoles and the hub. */
static void teardown(void)
{
    for (size_t i = 0; i < CONNS; i++)
        conn_close(i);
    /* With no poll left, every session dies within a lifetime: none lives forever. */
    w.now_ms += GR_LONGPOLL_SESSION_MS;
    gr_longpoll_sweep(w.lp, w.now_ms, now_s());
    FUZZ_CHECK(gr_longpoll_sessions(w.lp) == 0);
    gr_longpoll_free(w.lp);
    gr_admission_free(w.admission);
    for (size_t i = 0; i < CONSOLES; i++)
        ws_free(&w.ws[i]);
    FUZZ_CHECK(gr_hub_sub_count(w.hub) == 0); /* "every subscription must have been released" */
    if (w.update != NULL)
        gr_hub_update_cancel(w.update);
    gr_hub_free(w.hub);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    w.p = data;
    w.end = data + size;
    for (int n = 0; n < OPS_MAX && w.p < w.end; n++) {
        ops[take() % N_OPS]();
        check_conns();
        check_consoles();
        FUZZ_CHECK(gr_longpoll_sessions(w.lp) <= GR_LONGPOLL_SESSIONS_MAX);
        FUZZ_CHECK(gr_longpoll_sessions(w.lp) <= SOURCES * w.max_per_source);
    }
    teardown();
    return 0;
}
