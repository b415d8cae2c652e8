/*
 * token.c - console tokens (docs/protocol.md): JWT compact form, HS256 only.
 *
 * Debian's libwebsockets 4.1 package is built without JOSE (LWS_WITH_JOSE off), so this
 * is OpenSSL's HMAC, jansson and a small base64url codec. The order of the checks is the
 * security argument:
 *
 *   1. format: length, exactly three parts, strict unpadded base64url in each part, and a
 *      header that is a JSON object;
 *   2. alg: exactly "HS256", no "crit", typ absent or "JWT": refused before any HMAC work,
 *      so "none", HS512, RS256 (the public-key-as-HMAC-secret confusion) never get as far
 *      as a signature comparison;
 *   3. signature: HMAC-SHA256 over the received "header.payload" bytes, compared in
 *      constant time;
 *   4. claims: the payload JSON is parsed only now, so nothing an unauthenticated sender
 *      wrote beyond the header ever reaches a JSON parser;
 *   5. expiry, last, on claims already known to be well-formed.
 *
 * Nothing here logs: a token is a bearer credential for police and EMS positions.
 */
#include "gpsrelay/token.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpsrelay/file.h"

#define GR_HS256_LEN 32 /* SHA-256 output: the only signature length HS256 has */

/* The JOSE header mint writes, and the one every gpsrelay token carries. */
#define GR_TOKEN_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* ---- base64url (RFC 4648 section 5), unpadded, as JWS requires (RFC 7515 section 2) ---- */

static const char gr_b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Value of one base64url character, or -1: '+', '/', '=', whitespace and NUL are refused. */
static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

static size_t b64url_encoded_len(size_t n)
{
    return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

/* Writes b64url_encoded_len(n) characters to out (no NUL). */
static void b64url_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = gr_b64url_chars[v >> 18];
        *out++ = gr_b64url_chars[v >> 12 & 63];
        *out++ = gr_b64url_chars[v >> 6 & 63];
        *out++ = gr_b64url_chars[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = gr_b64url_chars[v >> 18];
        *out++ = gr_b64url_chars[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = gr_b64url_chars[v >> 18];
        *out++ = gr_b64url_chars[v >> 12 & 63];
        *out++ = gr_b64url_chars[v >> 6 & 63];
    }
}

/*
 * Decodes s[0..n) into out (room for n * 3 / 4 bytes) and returns the decoded length, or -1
 * when s is not canonical unpadded base64url. Canonical means the unused low bits of the
 * last character are zero: otherwise "...A" and "...B" would decode to one signature and a
 * token would have several spellings, which defeats anyone comparing or revoking tokens as
 * strings.
 */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (n % 4 == 1) /* 6 bits cannot end a byte */
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* leftover bits must be zero padding */
        return -1;
    return (long)o;
}

/* ---- claims ---- */

/* Agency ids become topic names "agency:<id>": the same rule as the mapping (mapping.c). */
bool gr_token_agency_id_valid(const char *id, size_t len)
{
    if (id == NULL || len == 0 || len > GR_AGENCY_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.';
        if (!ok)
            return false;
    }
    return true;
}

/*
 * A NumericDate (RFC 7519 section 2) as whole seconds: a JSON integer, or a real with no
 * fraction (some minting libraries write 4102444800.0). Fractions, strings, booleans and
 * values outside int64_t are refused rather than rounded.
 */
static bool numeric_date(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* The range test comes first (and is false for NaN): converting a double outside
         * int64_t is undefined. +-2^63 are exact doubles. Then the round trip tells
         * whether there was a fraction, without libm. */
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
            return false;
        int64_t i = (int64_t)d;
        if ((double)i != d)
            return false;
        *out = i;
        return true;
    }
    return false;
}

static int cmp_agency(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Sorted and unique, so gr_token_has_agency can binary-search. */
static bool parse_agencies(const json_t *arr, struct gr_token *out)
{
    size_t n = json_array_size(arr);

    /* Refuse an oversized array as it is, before de-duplication could hide its size. */
    if (!json_is_array(arr) || n == 0 || n > GR_TOKEN_AGENCIES_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_array_get(arr, i);
        if (!json_is_string(s))
            return false;
        const char *id = json_string_value(s);
        size_t len = json_string_length(s);
        if (!gr_token_agency_id_valid(id, len))
            return false;
        memcpy(out->agencies[i], id, len);
        out->agencies[i][len] = '\0';
    }
    qsort(out->agencies, n, sizeof(out->agencies[0]), cmp_agency);
    size_t k = 1;
    for (size_t i = 1; i < n; i++) {
        if (strcmp(out->agencies[i], out->agencies[k - 1]) != 0)
            memmove(out->agencies[k++], out->agencies[i], sizeof(out->agencies[0]));
    }
    out->n_agencies = k;
    return true;
}

/* sub ends up in log lines: keep printable ASCII, '?' for anything else (UTF-8 included). */
static void copy_sub(const char *s, size_t len, char *out)
{
    if (len > GR_TOKEN_SUB_MAX)
        len = GR_TOKEN_SUB_MAX;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    out[len] = '\0';
}

/* Everything but exp's comparison with now: claims first, expiry last. */
static enum gr_token_error parse_claims(const json_t *claims, int64_t now_s, struct gr_token *out)
{
    const json_t *v;

    if (!numeric_date(json_object_get(claims, "exp"), &out->exp))
        return GR_TOKEN_BAD_CLAIMS;
    if (!parse_agencies(json_object_get(claims, "agencies"), out))
        return GR_TOKEN_BAD_CLAIMS;
    if ((v = json_object_get(claims, "sub")) != NULL) {
        if (!json_is_string(v))
            return GR_TOKEN_BAD_CLAIMS;
        copy_sub(json_string_value(v), json_string_length(v), out->sub);
    }
    /* A token issued in the future comes from a host whose clock is wrong, or was minted
     * to be held back: neither is honoured beyond the skew. */
    if ((v = json_object_get(claims, "iat")) != NULL) {
        if (!numeric_date(v, &out->iat))
            return GR_TOKEN_BAD_CLAIMS;
        if (now_s <= INT64_MAX - GR_TOKEN_SKEW_S && out->iat > now_s + GR_TOKEN_SKEW_S)
            return GR_TOKEN_BAD_CLAIMS;
    }
    /* gpsrelayctl never writes nbf, but a token that says "not before" must not be
     * accepted before (RFC 7519 section 4.1.5); ignoring it would widen what a key holder
     * minted. Same skew as iat. */
    if ((v = json_object_get(claims, "nbf")) != NULL) {
        int64_t nbf;
        if (!numeric_date(v, &nbf))
            return GR_TOKEN_BAD_CLAIMS;
        if (now_s <= INT64_MAX - GR_TOKEN_SKEW_S && nbf > now_s + GR_TOKEN_SKEW_S)
            return GR_TOKEN_BAD_CLAIMS;
    }
    return GR_TOKEN_OK;
}

/* The JOSE header: HS256 and nothing we would have to understand to verify it. */
static enum gr_token_error check_header(const json_t *h)
{
    const json_t *alg = json_object_get(h, "alg");
    const json_t *typ = json_object_get(h, "typ");

    /* Length and bytes, so "HS256" followed by anything can never compare equal. */
    if (!json_is_string(alg) || json_string_length(alg) != 5 ||
        memcmp(json_string_value(alg), "HS256", 5) != 0)
        return GR_TOKEN_BAD_ALG;
    /* RFC 7515 section 4.1.11: a recipient that does not understand every extension named
     * in crit must refuse the token; we understand none. */
    if (json_object_get(h, "crit") != NULL)
        return GR_TOKEN_BAD_ALG;
    /* typ is advisory, but anything but JWT (JWE, "at+jwt", ...) is a token meant for some
     * other verifier: refused with the other header problems. */
    if (typ != NULL && (!json_is_string(typ) || json_string_length(typ) != 3 ||
                        strcasecmp(json_string_value(typ), "JWT") != 0))
        return GR_TOKEN_BAD_ALG;
    return GR_TOKEN_OK;
}

static bool key_ok(const unsigned char *key, size_t key_len)
{
    /* The same bounds gr_token_load_secret enforces: a short or empty key here is a bug in
     * the caller, and verifying with it would make tokens forgeable. */
    return key != NULL && key_len >= GR_TOKEN_SECRET_MIN && key_len <= GR_TOKEN_SECRET_MAX;
}

static enum gr_token_error verify(const char *jwt, size_t len, const unsigned char *key,
                                  size_t key_len, int64_t now_s, struct gr_token *out)
{
    /* Decoded parts are at most 3/4 of the token; one buffer holds any of them. */
    unsigned char buf[GR_TOKEN_MAX / 4 * 3 + 3];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    enum gr_token_error rc;

    if (jwt == NULL || len == 0)
        return GR_TOKEN_MISSING;
    if (len > GR_TOKEN_MAX)
        return GR_TOKEN_MALFORMED;

    /* 1. Format: exactly two dots, three non-empty-where-needed base64url parts. */
    const char *dot1 = memchr(jwt, '.', len);
    if (dot1 == NULL)
        return GR_TOKEN_MALFORMED;
    const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - jwt));
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - jwt)) != NULL)
        return GR_TOKEN_MALFORMED;
    const char *h64 = jwt, *p64 = dot1 + 1, *s64 = dot2 + 1;
    size_t h64_len = (size_t)(dot1 - jwt), p64_len = (size_t)(dot2 - p64);
    size_t s64_len = len - (size_t)(s64 - jwt);
    if (h64_len == 0 || p64_len == 0)
        return GR_TOKEN_MALFORMED;
    /* The payload and signature are only checked for their alphabet here; they are decoded
     * after the header passed. An empty signature is well-formed (alg "none" sends one)
     * and is refused by the alg check. */
    if (b64url_decode(p64, p64_len, buf) < 0 || b64url_decode(s64, s64_len, buf) < 0)
        return GR_TOKEN_MALFORMED;
    long n = b64url_decode(h64, h64_len, buf);
    if (n < 0)
        return GR_TOKEN_MALFORMED;
    json_t *header = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(header)) {
        json_decref(header);
        return GR_TOKEN_MALFORMED;
    }

    /* 2. alg, before any signature work. */
    rc = check_header(header);
    json_decref(header);
    if (rc != GR_TOKEN_OK)
        return rc;

    /* 3. Signature over the ASCII "header.payload" exactly as received. */
    if (!key_ok(key, key_len))
        return GR_TOKEN_BAD_SIGNATURE;
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)jwt, (size_t)(dot2 - jwt), mac,
             &mac_len) == NULL ||
        mac_len != GR_HS256_LEN)
        return GR_TOKEN_BAD_SIGNATURE;
    n = b64url_decode(s64, s64_len, buf);
    if (n != GR_HS256_LEN || CRYPTO_memcmp(mac, buf, GR_HS256_LEN) != 0)
        return GR_TOKEN_BAD_SIGNATURE;

    /* 4. Claims, now that the payload is known to come from a key holder. Not JSON, or
     * duplicate keys (which would let two readers see two different exp), is malformed. */
    n = b64url_decode(p64, p64_len, buf);
    json_t *claims = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(claims)) {
        json_decref(claims);
        return GR_TOKEN_MALFORMED;
    }
    rc = parse_claims(claims, now_s, out);
    json_decref(claims);
    if (rc != GR_TOKEN_OK)
        return rc;

    /* 5. Expiry. exp near INT64_MAX never expires rather than overflowing. */
    if (out->exp <= INT64_MAX - GR_TOKEN_SKEW_S && now_s > out->exp + GR_TOKEN_SKEW_S)
        return GR_TOKEN_EXPIRED;
    return GR_TOKEN_OK;
}

enum gr_token_error gr_token_verify(const char *jwt, size_t len, const unsigned char *key,
                                    size_t key_len, int64_t now_s, struct gr_token *out)
{
    memset(out, 0, sizeof(*out));
    enum gr_token_error rc = verify(jwt, len, key, key_len, now_s, out);
    /* A refused token leaves nothing behind a caller could mistake for claims. */
    if (rc != GR_TOKEN_OK)
        memset(out, 0, sizeof(*out));
    return rc;
}

bool gr_token_has_agency(const struct gr_token *t, const char *agency)
{
    if (t == NULL || agency == NULL || t->n_agencies == 0)
        return false;
    return bsearch(agency, t->agencies, t->n_agencies, sizeof(t->agencies[0]), cmp_agency) != NULL;
}

/* ---- minting ---- */

/* Appends the base64url of json's compact text at *p; false when it would pass end. */
static bool append_b64(char **p, const char *end, const char *text)
{
    size_t n = strlen(text);
    size_t m = b64url_encoded_len(n);
    if (m > (size_t)(end - *p))
        return false;
    b64url_encode((const unsigned char *)text, n, *p);
    *p += m;
    return true;
}

char *gr_token_mint(const unsigned char *key, size_t key_len, const char *const *agencies,
                    size_t n_agencies, const char *sub, int64_t iat, int64_t exp)
{
    char *token = NULL, *payload = NULL;
    json_t *claims = NULL, *list = NULL;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;

    /* Refuse to mint what gr_token_verify would refuse, so a minted token always works. */
    if (!key_ok(key, key_len) || agencies == NULL || n_agencies == 0 ||
        n_agencies > GR_TOKEN_AGENCIES_MAX)
        return NULL;
    if ((list = json_array()) == NULL)
        return NULL;
    for (size_t i = 0; i < n_agencies; i++) {
        if (agencies[i] == NULL || !gr_token_agency_id_valid(agencies[i], strlen(agencies[i])) ||
            json_array_append_new(list, json_string(agencies[i])) != 0)
            goto fail_list;
    }
    /* Insertion order is the serialisation order (jansson >= 2.8): agencies, exp, iat, sub. */
    if ((claims = json_object()) == NULL)
        goto fail_list;
    if (json_object_set(claims, "agencies", list) != 0 ||
        json_object_set_new(claims, "exp", json_integer((json_int_t)exp)) != 0 ||
        json_object_set_new(claims, "iat", json_integer((json_int_t)iat)) != 0)
        goto fail_claims;
    /* json_string() is NULL for invalid UTF-8, and set_new then fails: no token. */
    if (sub != NULL && json_object_set_new(claims, "sub", json_string(sub)) != 0)
        goto fail_claims;
    payload = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (payload == NULL)
        goto fail_claims;

    /* One more for the NUL; a token verify would refuse as too long is not minted. */
    if ((token = malloc(GR_TOKEN_MAX + 1)) == NULL)
        goto fail_payload;
    char *p = token, *end = token + GR_TOKEN_MAX;
    if (!append_b64(&p, end, GR_TOKEN_HEADER) || p == end)
        goto fail_token;
    *p++ = '.';
    if (!append_b64(&p, end, payload))
        goto fail_token;
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)token, (size_t)(p - token),
             mac, &mac_len) == NULL ||
        mac_len != GR_HS256_LEN)
        goto fail_token;
    if (b64url_encoded_len(GR_HS256_LEN) + 1 > (size_t)(end - p))
        goto fail_token;
    *p++ = '.';
    b64url_encode(mac, GR_HS256_LEN, p);
    p += b64url_encoded_len(GR_HS256_LEN);
    *p = '\0';

    free(payload);
    json_decref(claims);
    json_decref(list);
    return token;

fail_token:
    free(token);
fail_payload:
    free(payload);
fail_claims:
    json_decref(claims);
fail_list:
    json_decref(list);
    return NULL;
}

/* ---- the secret file ---- */

/* Says why the key file at path is refused; returns -error, for "rc = fail()". */
__attribute__((format(printf, 5, 6))) static int fail(int error, char *err, size_t errlen,
                                                      const char *path, const char *fmt, ...)
{
    if (err != NULL && errlen > 0) {
        int n = snprintf(err, errlen, "%s: ", path);
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -error;
}

int gr_token_load_secret(const char *path, unsigned char **key, size_t *key_len, char *err,
                         size_t errlen)
{
    /* Two bytes for a "\r\n" that is dropped, one more to notice a file that is too long
     * even if it grew after fstat. */
    unsigned char buf[GR_TOKEN_SECRET_MAX + 3];
    struct stat st;
    size_t n = 0;
    int fd, rc;

    *key = NULL;
    *key_len = 0;
    if ((fd = gr_file_open_regular(path, &st, err, errlen)) < 0)
        return fd;
    /* The key signs every console's access to police and EMS positions: anyone who can
     * read it can mint tokens, anyone who can write it can lock consoles out. */
    if ((st.st_mode & 007) != 0) {
        rc = fail(EACCES, err, errlen, path,
                  "is readable or writable by others (mode %04o); chmod o-rwx it",
                  (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if (st.st_size > (off_t)(GR_TOKEN_SECRET_MAX + 2)) {
        rc = fail(EFBIG, err, errlen, path, "is %lld bytes; an HS256 key file holds at most %d",
                  (long long)st.st_size, GR_TOKEN_SECRET_MAX);
        goto out;
    }
    while (n < sizeof(buf)) {
        ssize_t r = read(fd, buf + n, sizeof(buf) - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = fail(errno, err, errlen, path, "cannot read: %s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    /* Exactly one line ending, so `openssl rand -hex 32 > F` and editors both work; any
     * other byte, whitespace included, is key material. */
    if (n > 0 && buf[n - 1] == '\n') {
        n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
    }
    if (n > GR_TOKEN_SECRET_MAX) {
        rc = fail(EFBIG, err, errlen, path,
                  "holds more than %d bytes; an HS256 key file holds at most %d",
                  GR_TOKEN_SECRET_MAX, GR_TOKEN_SECRET_MAX);
        goto out;
    }
    if (n < GR_TOKEN_SECRET_MIN) {
        rc = fail(EINVAL, err, errlen, path,
                  "holds %zu bytes; an HS256 key needs at least %d (openssl rand -hex 32 > FILE)",
                  n, GR_TOKEN_SECRET_MIN);
        goto out;
    }
    if ((*key = malloc(n)) == NULL) {
        rc = fail(ENOMEM, err, errlen, path, "out of memory");
        goto out;
    }
    memcpy(*key, buf, n);
    *key_len = n;
    rc = 0;
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    close(fd);
    return rc;
}
