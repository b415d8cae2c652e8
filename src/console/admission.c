/*
 * admission.c - Origin, token and per-source limits for both console transports. See
 * admission.h.
 */
#include "gpsrelay/admission.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpsrelay/addrtable.h"
#include "gpsrelay/stats.h"

struct gr_admission {
    const struct gr_config *cfg; /* borrowed: allowed_origin, max_connections_per_source */
    const unsigned char *key;    /* borrowed HS256 key; NULL: auth none */
    size_t key_len;
    struct gr_addrtable *per_source[GR_ADMIT_KINDS]; /* unsigned counts per peer address */
};

struct gr_admission *gr_admission_new(const struct gr_config *cfg, const unsigned char *key,
                                      size_t key_len)
{
    struct gr_admission *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->cfg = cfg;
    a->key = key;
    a->key_len = key_len;
    for (size_t k = 0; k < GR_ADMIT_KINDS; k++) {
        a->per_source[k] = gr_addrtable_new(GR_ADMISSION_SOURCES_MAX, sizeof(unsigned), false);
        if (a->per_source[k] == NULL) {
            gr_admission_free(a);
            return NULL;
        }
    }
    return a;
}

void gr_admission_free(struct gr_admission *a)
{
    if (a == NULL)
        return;
    for (size_t k = 0; k < GR_ADMIT_KINDS; k++)
        gr_addrtable_free(a->per_source[k]);
    free(a);
}

void gr_admission_set_config(struct gr_admission *a, const struct gr_config *cfg)
{
    a->cfg = cfg;
}

bool gr_admission_auth_on(const struct gr_admission *a)
{
    return a->key != NULL;
}

/*
 * The console's token: the first token= query argument (LongPoll appends its session
 * token as a later one). Returns its length, 0 when there is none, or a length over cap
 * when it is too long to be a token. The Phoenix authToken subprotocol is not read:
 * libwebsockets 4.1 drops a Sec-WebSocket-Protocol header over 128 bytes before any
 * callback runs, and no signed token fits (docs/protocol.md), so a request offering it
 * without token= is refused as having no token.
 */
static size_t request_token(struct lws *wsi, char *out, size_t cap)
{
    char arg[GR_HTTP_ARG_MAX];
    const char *v = gr_http_arg(wsi, "token", false, arg);
    if (v == NULL)
        return 0;
    size_t len = strlen(v);
    if (len < cap)
        memcpy(out, v, len + 1);
    return len;
}

/*
 * The Origin and token checks: the refusal (enum gr_console_refusal), or -1 when admitted.
 * The token is bearer[0..bearer_len) when bearer is not NULL, else request_token()'s.
 */
static int admit(struct gr_admission *a, struct lws *wsi, const char *bearer, size_t bearer_len,
                 struct gr_token *claims)
{
    static const enum gr_console_refusal token_refusal[GR_TOKEN_ERROR_COUNT] = {
        [GR_TOKEN_MISSING] = GR_REFUSED_TOKEN_MISSING,
        [GR_TOKEN_MALFORMED] = GR_REFUSED_TOKEN_MALFORMED,
        [GR_TOKEN_BAD_ALG] = GR_REFUSED_TOKEN_BAD_ALG,
        [GR_TOKEN_BAD_SIGNATURE] = GR_REFUSED_TOKEN_BAD_SIGNATURE,
        [GR_TOKEN_EXPIRED] = GR_REFUSED_TOKEN_EXPIRED,
        [GR_TOKEN_BAD_CLAIMS] = GR_REFUSED_TOKEN_BAD_CLAIMS,
    };
    char origin[GR_ORIGIN_LEN_MAX + 1];
    int n = gr_http_origin(wsi, origin, sizeof(origin));
    if (n != 0 && (n < 0 || !gr_config_origin_ok(a->cfg, origin)))
        return GR_REFUSED_BAD_ORIGIN;
    if (a->key == NULL)
        return -1;
    char token[GR_TOKEN_MAX + 1];
    const char *jwt = token;
    size_t len;
    if (bearer != NULL) {
        jwt = bearer;
        len = bearer_len;
    } else {
        len = request_token(wsi, token, sizeof(token));
    }
    enum gr_token_error e = len == 0 ? GR_TOKEN_MISSING
                            : len > GR_TOKEN_MAX
                                ? GR_TOKEN_MALFORMED
                                : gr_token_verify(jwt, len, a->key, a->key_len, time(NULL), claims);
    return e == GR_TOKEN_OK ? -1 : (int)token_refusal[e];
}

int gr_admission_check(struct gr_admission *a, struct lws *wsi, struct gr_token *claims,
                       bool *authed)
{
    int refusal = admit(a, wsi, NULL, 0, claims);
    if (refusal >= 0) {
        gr_stats.consoles_refused[refusal]++;
        return 403;
    }
    *authed = a->key != NULL;
    return 0;
}

int gr_admission_check_api(struct gr_admission *a, struct lws *wsi, const char *bearer,
                           size_t bearer_len, struct gr_token *claims, bool *authed)
{
    int refusal = admit(a, wsi, bearer, bearer_len, claims);
    if (refusal >= 0)
        return refusal == GR_REFUSED_BAD_ORIGIN ? 403 : 401;
    *authed = a->key != NULL;
    return 0;
}

bool gr_admission_source_ok(struct gr_admission *a, enum gr_admission_kind kind,
                            const union gr_peer *peer)
{
    if (gr_addrtable_held(a->per_source[kind], &peer->sa) <
        (unsigned)a->cfg->max_connections_per_source)
        return true;
    gr_stats.consoles_refused[GR_REFUSED_PER_SOURCE]++;
    return false;
}

bool gr_admission_hold(struct gr_admission *a, enum gr_admission_kind kind,
                       const union gr_peer *peer)
{
    return gr_addrtable_hold(a->per_source[kind], &peer->sa);
}

void gr_admission_release(struct gr_admission *a, enum gr_admission_kind kind,
                          const union gr_peer *peer)
{
    gr_addrtable_release(a->per_source[kind], &peer->sa);
}
