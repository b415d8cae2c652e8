/*
 * admission.h - who may become a console, the same for both transports (WebSocket and
 * LongPoll): the Origin check, the token check, and the per-source connection limits.
 *
 *   - Origin: a request with an Origin header must carry one of allowed_origin (none
 *     configured: any); a request without one (not a browser) passes.
 *   - Token (auth jwt only): the first token= query argument, verified with the HS256
 *     key; its claims go to the console. The Phoenix authToken subprotocol is not read
 *     (libwebsockets 4.1 cannot carry a signed token in it; docs/protocol.md).
 *   - Per source: at most max_connections_per_source of each kind at once from one peer
 *     address: connections still waiting for their first request, WebSocket consoles,
 *     LongPoll sessions. Each kind is counted on its own.
 *
 * Every refusal is counted here, in gpsrelay_consoles_refused_total under its reason.
 * The request is read through http.h only (no libwebsockets.h), so the console fuzzer runs
 * LongPoll with this module linked. The rest (vsn, paths, stopping) is the transport's.
 *
 * Ownership: gr_admission_new() returns a new object, freed by gr_admission_free() once no
 * connection or session counted in it is left to release (the console server frees it
 * after lws and LongPoll have let go of theirs). cfg and key are borrowed: cfg until the
 * next gr_admission_set_config(), key for the object's life.
 */
#ifndef GPSRELAY_ADMISSION_H
#define GPSRELAY_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>

#include "gpsrelay/config.h"
#include "gpsrelay/http.h"
#include "gpsrelay/token.h"

/* Source addresses counted at once, per kind; preallocated (addrtable.h). */
#define GR_ADMISSION_SOURCES_MAX 65536

/* What a source's count is of: each kind has its own table and the same limit. */
enum gr_admission_kind {
    GR_ADMIT_EARLY,     /* connections accepted, their first request not yet in */
    GR_ADMIT_WEBSOCKET, /* WebSocket consoles */
    GR_ADMIT_LONGPOLL,  /* LongPoll sessions */
    GR_ADMIT_KINDS
};

struct gr_admission;

/* NULL on ENOMEM. key (key_len bytes): the HS256 secret, or NULL for auth none. */
struct gr_admission *gr_admission_new(const struct gr_config *cfg, const unsigned char *key,
                                      size_t key_len);
void gr_admission_free(struct gr_admission *a);

/* A reloaded configuration: allowed_origin and max_connections_per_source from now on
 * (counts already held stay). */
void gr_admission_set_config(struct gr_admission *a, const struct gr_config *cfg);

/* Whether tokens are checked (auth jwt): then an admitted request has claims. */
bool gr_admission_auth_on(const struct gr_admission *a);

/*
 * The Origin and token checks of a request (its headers still there: an upgrade until
 * LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION, a plain request in LWS_CALLBACK_HTTP).
 * Returns 0 when admitted, with the token's claims in *claims and *authed true when auth
 * is on (false, *claims untouched, when it is off); else 403, the refusal counted.
 */
int gr_admission_check(struct gr_admission *a, struct lws *wsi, struct gr_token *claims,
                       bool *authed);

/*
 * The same checks for the HTTP API (history.h), with HTTP's statuses: 0 when admitted (as
 * above), 403 for an Origin refused, 401 for a token missing or refused. The token is
 * bearer[0..bearer_len) when the caller found an "Authorization: Bearer" header (bearer NULL:
 * none; a length over GR_TOKEN_MAX is malformed), else the first token= query argument.
 * Counts nothing: the API counts its answers by status, and its clients are no consoles.
 */
int gr_admission_check_api(struct gr_admission *a, struct lws *wsi, const char *bearer,
                           size_t bearer_len, struct gr_token *claims, bool *authed);

/*
 * Whether peer may hold one more of kind: false (the refusal counted, reason per_source)
 * when it already holds max_connections_per_source. Takes nothing: gr_admission_hold()
 * does, once the connection or session exists.
 */
bool gr_admission_source_ok(struct gr_admission *a, enum gr_admission_kind kind,
                            const union gr_peer *peer);

/* Counts one more of kind for peer; false (nothing counted, nothing to release) for an
 * address that is neither IPv4 nor IPv6. */
bool gr_admission_hold(struct gr_admission *a, enum gr_admission_kind kind,
                       const union gr_peer *peer);

/* Gives back one gr_admission_hold() of kind for peer. */
void gr_admission_release(struct gr_admission *a, enum gr_admission_kind kind,
                          const union gr_peer *peer);

#endif
