/*
 * token.h - console tokens (docs/protocol.md): JWT signed with HS256, nothing else.
 *
 * Verified with OpenSSL's HMAC and jansson (Debian's libwebsockets has no JOSE built in).
 * The header's alg must be exactly "HS256": "none", RS256, HS512 and anything else are
 * refused before any signature work. The signature is compared in constant time. Claims:
 * exp (required), agencies (required, an array of agency id strings), sub, iat.
 */
#ifndef GPSRELAY_TOKEN_H
#define GPSRELAY_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpsrelay/mapping.h"

#define GR_TOKEN_MAX          4096 /* longest token accepted, in bytes */
#define GR_TOKEN_AGENCIES_MAX 64   /* agencies one token may name */
#define GR_TOKEN_SUB_MAX      128  /* longest sub kept (for logs) */
#define GR_TOKEN_SKEW_S                                                                            \
    30                         /* clock skew tolerated: exp is honoured this late, and             \
                                * an iat up to this far in the future is accepted */
#define GR_TOKEN_SECRET_MIN 32 /* bytes of HS256 key required (docs/configuration.md) */
#define GR_TOKEN_SECRET_MAX 4096

struct gr_token {
    int64_t exp;                    /* seconds since the epoch */
    int64_t iat;                    /* 0 when absent */
    char sub[GR_TOKEN_SUB_MAX + 1]; /* "" when absent; printable ASCII only, else "?" */
    size_t n_agencies;
    char agencies[GR_TOKEN_AGENCIES_MAX][GR_AGENCY_ID_MAX + 1]; /* sorted, unique */
};

/* Why a token was refused; admission.c counts each under its own reason of
 * gpsrelay_consoles_refused_total (token_missing, token_malformed, ...). */
enum gr_token_error {
    GR_TOKEN_OK,
    GR_TOKEN_MISSING,       /* no token where one is required */
    GR_TOKEN_MALFORMED,     /* not three base64url parts of JSON objects, too long */
    GR_TOKEN_BAD_ALG,       /* alg other than HS256, none included */
    GR_TOKEN_BAD_SIGNATURE, /* HMAC mismatch */
    GR_TOKEN_EXPIRED,       /* exp + GR_TOKEN_SKEW_S is past */
    GR_TOKEN_BAD_CLAIMS,    /* exp or agencies missing or of the wrong type, an agency id
                             * that is no valid id, iat in the future */
    GR_TOKEN_ERROR_COUNT
};

/*
 * Verifies jwt[0..len) with key at now_s and fills *out. Returns GR_TOKEN_OK or the
 * reason. Never logs, and never copies the token anywhere but *out's claims.
 *
 * Checked in this order, the first failure wins: MISSING (jwt NULL or len 0); MALFORMED
 * (longer than GR_TOKEN_MAX, not exactly three parts, a part that is not canonical unpadded
 * base64url, a header that is not a JSON object); BAD_ALG (alg not exactly "HS256", a
 * "crit" member, a typ other than "JWT" in any case); BAD_SIGNATURE (HMAC mismatch, a
 * signature that is not 32 bytes, or key_len outside GR_TOKEN_SECRET_MIN..MAX); then the
 * payload, parsed only once the signature holds: MALFORMED (not a JSON object, duplicate
 * keys), BAD_CLAIMS (exp, agencies, sub, iat or nbf wrong; iat or nbf later than now_s +
 * GR_TOKEN_SKEW_S); EXPIRED last. exp and iat are JSON integers or reals without a fraction.
 * On any refusal *out is zeroed.
 */
enum gr_token_error gr_token_verify(const char *jwt, size_t len, const unsigned char *key,
                                    size_t key_len, int64_t now_s, struct gr_token *out);

/* True when agency is one of t's agencies (binary search). */
bool gr_token_has_agency(const struct gr_token *t, const char *agency);

/*
 * True when id[0..len) is a valid agency id: 1 to GR_AGENCY_ID_MAX letters, digits, '-',
 * '_' or '.' (the mapping's rule; ids become topic names "agency:<id>"). Added so that
 * gpsrelayctl can refuse a bad --agency as a usage error before minting.
 */
bool gr_token_agency_id_valid(const char *id, size_t len);

/*
 * Mints a token: {"alg":"HS256","typ":"JWT"} and claims agencies, exp, iat and sub (when
 * not NULL). Returns a new NUL-terminated string (caller frees), or NULL: a key of the
 * wrong length, no or more than GR_TOKEN_AGENCIES_MAX agencies, an invalid agency id, a sub
 * that is not UTF-8, or a token that would be longer than GR_TOKEN_MAX. Agencies are written
 * as given (the verifier sorts and de-duplicates).
 */
char *gr_token_mint(const unsigned char *key, size_t key_len, const char *const *agencies,
                    size_t n_agencies, const char *sub, int64_t iat, int64_t exp);

/*
 * Reads an HS256 key file: refused unless it is a regular file, not readable or writable
 * by others (mode & 007 == 0), and holds GR_TOKEN_SECRET_MIN to GR_TOKEN_SECRET_MAX bytes
 * after one trailing "\n" or "\r\n" is dropped (so `openssl rand -hex 32 > F` works).
 * Returns 0 with a new buffer in *key (caller frees, after wiping), or a negative errno
 * with "FILE: what is wrong" in err: gr_file_open_regular()'s, -EACCES (others may read
 * or write it), -EFBIG (too long), -EINVAL (too short), read(2)'s, -ENOMEM.
 */
int gr_token_load_secret(const char *path, unsigned char **key, size_t *key_len, char *err,
                         size_t errlen);

#endif
