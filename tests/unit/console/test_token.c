/*
 * test_token.c - console tokens: JWT HS256 verification (format, alg, signature, claims,
 * expiry, in that order), minting, agency lookup and the secret file. argv[1] is a scratch
 * directory.
 *
 * The literal tokens below do not come from gr_token_mint: they were made independently
 * with Python's hmac/hashlib/base64 (and VALID cross-checked with Node's crypto), so a bug
 * shared by our encoder and our verifier cannot hide. Each comment gives the header JSON,
 * the payload JSON and how it was signed; H and P are:
 *
 *   H = {"alg":"HS256","typ":"JWT"}
 *   P = {"agencies":["county-ems","city-fire","county-ems"],"exp":4102444800,
 *        "iat":1700000000,"sub":"console-7"}          (one line, no spaces)
 *
 * made with (KEY and KEY2 as below):
 *
 *   import hmac, hashlib, base64
 *   def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
 *   def tok(h, p, key=KEY, md=hashlib.sha256, sig=True):
 *       si = b64(h.encode()) + "." + b64(p.encode())
 *       return si + "." + (b64(hmac.new(key, si.encode(), md).digest()) if sig else "")
 *
 * Tokens whose size is the point (64 and 65 agencies, exactly GR_TOKEN_MAX bytes) are
 * signed at run time by sign() below, which shares no code with src/console/token.c (OpenSSL's
 * EVP_EncodeBlock for base64) and is itself checked against the Python-made VALID.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "gpsrelay/token.h"

/* 32 bytes, GR_TOKEN_SECRET_MIN: the shortest key the daemon accepts. */
#define KEY  "gpsrelay unit test key, 32 bytes"
#define KEY2 "gpsrelay unit test key, 32 BYTES"
#define NOW  INT64_C(1700000000) /* 2023-11-14T22:13:20Z, fixed so nothing depends on the clock */
#define EXP  INT64_C(4102444800) /* 2100-01-01T00:00:00Z */

/* VALID: H P, HS256 */
static const char VALID[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiw"
    "iY291bnR5LWVtcyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0"
    ".XcTdnYNnOzTMTFAZN5zs9JhakgSaI1LTVrhtffm-ev0";
/* MINTED: H
 * {"agencies":["city-fire","county-ems"],"exp":4102444800,"iat":1700000000,"sub":"console-7"},
 * HS256 */
static const char MINTED[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiLCJjb3VudHktZW1zIl0"
    "sImV4cCI6NDEwMjQ0NDgwMCwiaWF0IjoxNzAwMDAwMDAwLCJzdWIiOiJjb25zb2xlLTcifQ.D2_oftri0XCowYik"
    "xPl8jNm_9MZmQ5DgSzzmkh9ePbU";
/* FORGED: VALID's header and signature, payload
 * {"agencies":["state-police"],"exp":4102444800,"iat":1700000000,"sub":"console-7"} */
static const char FORGED[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJzdGF0ZS1wb2xpY2UiXSwiZXhwIjo0MTA"
    "yNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsInN1YiI6ImNvbnNvbGUtNyJ9.XcTdnYNnOzTMTFAZN5zs9JhakgSaI1"
    "LTVrhtffm-ev0";
/* WRONG_KEY: H P, HS256 under KEY2 */
static const char WRONG_KEY[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiw"
    "iY291bnR5LWVtcyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0"
    ".Hj2xrRQBErQOJrUjJhXg40agg65UWnSWb1UusxSQYMo";
/* NONE_EMPTY: {"alg":"none","typ":"JWT"} P, no signature */
static const char NONE_EMPTY[] =
    "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiwi"
    "Y291bnR5LWVtcyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0.";
/* NONE_SIGNED: {"alg":"none"} P, HS256 */
static const char NONE_SIGNED[] =
    "eyJhbGciOiJub25lIn0.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiwiY291bnR5LWVtcyJd"
    "LCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0.mngVZmsrYLfJrXXZ"
    "z_WwveltbyCV3l7xv5NaOByFlK8";
/* HS512: {"alg":"HS512","typ":"JWT"} P, HMAC-SHA512 */
static const char HS512[] =
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiw"
    "iY291bnR5LWVtcyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0"
    ".ZoLxEV8t02F4R7VleEMZjbrU57hPHcpBQXZAkkoBZGo9zNhBwKimIYcvoFbBj7yCIxrcuHbKbj-6vMBWi_7UFw";
/* RS256: {"alg":"RS256","typ":"JWT"} P, HS256 */
static const char RS256[] =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiw"
    "iY291bnR5LWVtcyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0"
    ".Cv5yK8HNks1Xx_3i-s0rNoqPLkTqtSYQxrJtC0SYsu4";
/* LOWER_ALG: {"alg":"hs256","typ":"JWT"} P, HS256 */
static const char LOWER_ALG[] =
    "eyJhbGciOiJoczI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiw"
    "iY291bnR5LWVtcyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0"
    ".9gIfSYAvHRtF3-GqI61QVi4vpodoMQ5rA_jGnesLsXs";
/* NO_ALG: {"typ":"JWT"} P, HS256 */
static const char NO_ALG[] =
    "eyJ0eXAiOiJKV1QifQ.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiwiY291bnR5LWVtcyJdL"
    "CJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0.cftSv3t39_uomz0hu"
    "7J70VkEnup5mGdrqpOGYEjH0GQ";
/* ALG_ARRAY: {"alg":["HS256"]} P, HS256 */
static const char ALG_ARRAY[] =
    "eyJhbGciOlsiSFMyNTYiXX0.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiwiY291bnR5LWVt"
    "cyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0.iUiK_5Hk0UQM"
    "JD8E_0KTHLEiRkQQf9uV-jXUHGn3BnQ";
/* TYP_JWS: {"alg":"HS256","typ":"JWS"} P, HS256 */
static const char TYP_JWS[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXUyJ9.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiw"
    "iY291bnR5LWVtcyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0"
    ".-vdcJ6wiDq0uAebrS0QXDrE_ndDB51EYaFL2JkpiRLo";
/* TYP_LOWER: {"alg":"HS256","typ":"jwt"} P, HS256 */
static const char TYP_LOWER[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6Imp3dCJ9.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiw"
    "iY291bnR5LWVtcyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0"
    ".EUwKPHvhxZzpFdNq3-jZDxJfNgIWnjL9KhgtndmI1ng";
/* CRIT: {"alg":"HS256","crit":["exp"]} P, HS256 */
static const char CRIT[] =
    "eyJhbGciOiJIUzI1NiIsImNyaXQiOlsiZXhwIl19.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJ"
    "lIiwiY291bnR5LWVtcyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS0"
    "3In0.tlR-JkNVCbdi9aMCUFFJ1jAnRN72mU2qHJRsIKDme9U";
/* DUP_ALG: {"alg":"HS256","alg":"none"} P, HS256 */
static const char DUP_ALG[] =
    "eyJhbGciOiJIUzI1NiIsImFsZyI6Im5vbmUifQ.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlI"
    "iwiY291bnR5LWVtcyJdLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03I"
    "n0.i81uIOSij10POfSETl2g0gyQgtskYXZl3e-KMD4fTXM";
/* HDR_ARRAY: ["HS256"] P, HS256 */
static const char HDR_ARRAY[] =
    "WyJIUzI1NiJd.eyJhZ2VuY2llcyI6WyJjb3VudHktZW1zIiwiY2l0eS1maXJlIiwiY291bnR5LWVtcyJdLCJleHA"
    "iOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMCwic3ViIjoiY29uc29sZS03In0.A1Z82RS1RxQ1drq2PZfP4yL"
    "rRU31cciMi5UYyPpsFWY";
/* EXPIRED: H {"agencies":["city-fire"],"exp":1699999969}, HS256 */
static const char EXPIRED[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiXSwiZXhwIjoxNjk5OTk"
    "5OTY5fQ.YlsFWHmk7kZw7yLdAQC8blWZhm_EHTW0aqKab0TOWlI";
/* EXP_SKEW: H {"agencies":["city-fire"],"exp":1699999970}, HS256 */
static const char EXP_SKEW[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiXSwiZXhwIjoxNjk5OTk"
    "5OTcwfQ.cH4fWm6mGjNulgYhaz66BvdGFLBfoNZQgaplVCaoeGg";
/* NO_EXP: H {"agencies":["city-fire"],"iat":1700000000}, HS256 */
static const char NO_EXP[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiXSwiaWF0IjoxNzAwMDA"
    "wMDAwfQ.sh7lGeaMz8qQ9IFNTy_NRH6OF4JiBW2ZRVCkA7g2108";
/* EXP_STRING: H {"agencies":["city-fire"],"exp":"4102444800"}, HS256 */
static const char EXP_STRING[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiXSwiZXhwIjoiNDEwMjQ"
    "0NDgwMCJ9.dCOa914aPyYjoX9cXWiyFbigUUXAaWVMmDMkuui60lQ";
/* EXP_REAL: H {"agencies":["city-fire"],"exp":4102444800.0}, HS256 */
static const char EXP_REAL[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiXSwiZXhwIjo0MTAyNDQ"
    "0ODAwLjB9.49WjAXTaGoel-vbBzgsBvWKVVzJcjzvraihPuQTYUZU";
/* EXP_FRACTION: H {"agencies":["city-fire"],"exp":4102444800.5}, HS256 */
static const char EXP_FRACTION[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiXSwiZXhwIjo0MTAyNDQ"
    "0ODAwLjV9.UkqUK_uUVNCajyP7B77Zl7ALeQk6vNJKLHLzRV-Nklw";
/* NO_AGENCIES: H {"exp":4102444800}, HS256 */
static const char NO_AGENCIES[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDB9.yQBN_IThePLf9HUzf632vxtSu0"
    "Rs0GCwsIYHo6Rnmyg";
/* AGENCIES_EMPTY: H {"agencies":[],"exp":4102444800}, HS256 */
static const char AGENCIES_EMPTY[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6W10sImV4cCI6NDEwMjQ0NDgwMH0.8Huk4-F"
    "MpdYc-HPh4oHEQ8i65DtKSe00-2mllILarIs";
/* AGENCY_SPACE: H {"agencies":["city-fire","a b"],"exp":4102444800}, HS256 */
static const char AGENCY_SPACE[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiLCJhIGIiXSwiZXhwIjo"
    "0MTAyNDQ0ODAwfQ.HFD0Io1puDZ-mg6QIk-FWbGT306DzfTj8bcQP2Fz1QI";
/* AGENCY_COLON: H {"agencies":["x:y"],"exp":4102444800}, HS256 */
static const char AGENCY_COLON[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJ4OnkiXSwiZXhwIjo0MTAyNDQ0ODAwfQ."
    "jQTAxLqA6gq8pZYgTFbwBIq2fvZTtZKwGhCDvwHssuY";
/* AGENCIES_STRING: H {"agencies":"city-fire","exp":4102444800}, HS256 */
static const char AGENCIES_STRING[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6ImNpdHktZmlyZSIsImV4cCI6NDEwMjQ0NDg"
    "wMH0.x9hfqJ1fsI6SyjPnFfeyB8cJ6rdkjyaNOrAomkTphOQ";
/* IAT_FUTURE: H {"agencies":["city-fire"],"exp":4102444800,"iat":1700000031}, HS256 */
static const char IAT_FUTURE[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiXSwiZXhwIjo0MTAyNDQ"
    "0ODAwLCJpYXQiOjE3MDAwMDAwMzF9.q1e4gokyAS2oW_wIcO063syS7TLhlMCu8KmpnP5Kufo";
/* IAT_SKEW: H {"agencies":["city-fire"],"exp":4102444800,"iat":1700000030}, HS256 */
static const char IAT_SKEW[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiXSwiZXhwIjo0MTAyNDQ"
    "0ODAwLCJpYXQiOjE3MDAwMDAwMzB9.y_BgrB4taebawWKSEak999lU9CSrbWaTbj0IcvTWZ3o";
/* DUP_EXP: H {"agencies":["city-fire"],"exp":1,"exp":4102444800}, HS256 */
static const char DUP_EXP[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiXSwiZXhwIjoxLCJleHA"
    "iOjQxMDI0NDQ4MDB9.kcH13uaBbY1i7tm7FyypIINlMAp0eha5ElnWpfRUprI";
/* SUB_CONTROL: H {"agencies":["city-fire"],"exp":4102444800,"sub":"ops\u0001\ttab\u00e9!"},
 * HS256 */
static const char SUB_CONTROL[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhZ2VuY2llcyI6WyJjaXR5LWZpcmUiXSwiZXhwIjo0MTAyNDQ"
    "0ODAwLCJzdWIiOiJvcHNcdTAwMDFcdHRhYlx1MDBlOSEifQ.RvEAbzexGAid0hcMZE58Tckla6bSow9Li7X56eYh"
    "inM";
/* PAYLOAD_ARRAY: H ["city-fire"], HS256 */
static const char PAYLOAD_ARRAY[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.WyJjaXR5LWZpcmUiXQ.Oal41woXGnFA-SE7Q2tHvoPgCq3RmUZD"
    "B6Oji_n-hcA";

static char scratch[PATH_MAX];
static struct gr_token tok;

static enum gr_token_error verify_key(const char *jwt, const char *key)
{
    return gr_token_verify(jwt, strlen(jwt), (const unsigned char *)key, strlen(key), NOW, &tok);
}

static enum gr_token_error verify(const char *jwt)
{
    return verify_key(jwt, KEY);
}

/* base64url through OpenSSL's standard base64, translated: independent of src/console/token.c. */
static char *b64url(const char *s, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    int m = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    while (m > 0 && out[m - 1] == '=')
        m--;
    out[m] = '\0';
    for (char *p = out; *p != '\0'; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    return out;
}

/* The token of header and payload JSON (as given, byte for byte) signed HS256 under key. */
static char *sign_key(const char *key, const char *header, const char *payload)
{
    unsigned char mac[32];
    unsigned int mac_len = 0;
    char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
    size_t n = strlen(h) + 1 + strlen(p);
    char *t = malloc(n + 1 + 44 + 1);
    snprintf(t, n + 1, "%s.%s", h, p);
    HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)t, n, mac, &mac_len);
    char *s = b64url((const char *)mac, mac_len);
    snprintf(t + n, 1 + 44 + 1, ".%s", s);
    free(h);
    free(p);
    free(s);
    return t;
}

static char *sign(const char *header, const char *payload)
{
    return sign_key(KEY, header, payload);
}

/* Claims signed under KEY2 and verified with KEY. */
static enum gr_token_error verify_forged(const char *payload)
{
    char *t = sign_key(KEY2, "{\"alg\":\"HS256\"}", payload);
    enum gr_token_error rc = verify(t);
    free(t);
    return rc;
}

static enum gr_token_error verify_signed(const char *header, const char *payload)
{
    char *t = sign(header, payload);
    enum gr_token_error rc = verify(t);
    free(t);
    return rc;
}

static enum gr_token_error verify_claims(const char *payload)
{
    return verify_signed("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload);
}

/* A JSON array of n agency ids "a00", "a01", ... (n <= 100). */
static void agency_list(char *out, size_t size, int n)
{
    size_t o = (size_t)snprintf(out, size, "[");
    for (int i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, size - o, "%s\"a%02d\"", i ? "," : "", i);
    snprintf(out + o, size - o, "]");
}

static bool is_zeroed(const struct gr_token *t)
{
    static const struct gr_token zero;
    return memcmp(t, &zero, sizeof(zero)) == 0;
}

static void test_valid(void)
{
    char *t = sign("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                   "{\"agencies\":[\"county-ems\",\"city-fire\",\"county-ems\"],"
                   "\"exp\":4102444800,\"iat\":1700000000,\"sub\":\"console-7\"}");
    CHECK_STR(t, VALID); /* the run-time signer agrees with Python */
    free(t);

    CHECK_INT(verify(VALID), GR_TOKEN_OK);
    CHECK_INT(tok.exp, EXP);
    CHECK_INT(tok.iat, NOW);
    CHECK_STR(tok.sub, "console-7");
    CHECK_INT(tok.n_agencies, 2); /* sorted, the duplicate county-ems dropped */
    CHECK_STR(tok.agencies[0], "city-fire");
    CHECK_STR(tok.agencies[1], "county-ems");

    CHECK(gr_token_has_agency(&tok, "city-fire"));
    CHECK(gr_token_has_agency(&tok, "county-ems"));
    CHECK(!gr_token_has_agency(&tok, "state-police"));
    CHECK(!gr_token_has_agency(&tok, "city"));
    CHECK(!gr_token_has_agency(&tok, "city-fire-2"));
    CHECK(!gr_token_has_agency(&tok, ""));
    CHECK(!gr_token_has_agency(&tok, NULL));
    CHECK(!gr_token_has_agency(NULL, "city-fire"));

    /* Only jwt[0..len) counts: whatever follows in the caller's buffer is not the token. */
    char buf[sizeof(VALID) + 16];
    snprintf(buf, sizeof(buf), "%s&vsn=2.0.0", VALID);
    CHECK_INT(gr_token_verify(buf, strlen(VALID), (const unsigned char *)KEY, 32, NOW, &tok),
              GR_TOKEN_OK);
    CHECK_INT(verify(buf), GR_TOKEN_MALFORMED);

    /* typ is optional and case-insensitive. */
    CHECK_INT(verify(TYP_LOWER), GR_TOKEN_OK);
    CHECK_INT(verify_signed("{\"alg\":\"HS256\"}", "{\"agencies\":[\"a\"],\"exp\":4102444800}"),
              GR_TOKEN_OK);
    CHECK_INT(tok.iat, 0); /* absent */
    CHECK_STR(tok.sub, "");
    /* Unknown header members (kid, ...) are ignored. */
    CHECK_INT(verify_signed("{\"kid\":\"k1\",\"alg\":\"HS256\"}",
                            "{\"agencies\":[\"a\"],\"exp\":4102444800}"),
              GR_TOKEN_OK);
}

static void test_signature(void)
{
    char t[sizeof(VALID)];

    CHECK_INT(verify(FORGED), GR_TOKEN_BAD_SIGNATURE);
    CHECK(is_zeroed(&tok)); /* nothing of a refused token is left in *out */
    CHECK_INT(verify(WRONG_KEY), GR_TOKEN_BAD_SIGNATURE);
    CHECK_INT(verify_key(VALID, KEY2), GR_TOKEN_BAD_SIGNATURE);
    CHECK_INT(verify_key(WRONG_KEY, KEY2), GR_TOKEN_OK);

    /* Nothing of the payload counts before the signature holds: expired, bad or no claims
     * at all under the wrong key are all BAD_SIGNATURE. */
    CHECK_INT(verify_forged("{\"agencies\":[\"a\"],\"exp\":1}"), GR_TOKEN_BAD_SIGNATURE);
    CHECK_INT(verify_forged("{\"agencies\":[\"x:y\"],\"exp\":4102444800}"), GR_TOKEN_BAD_SIGNATURE);
    CHECK_INT(verify_forged("{\"exp\":4102444800}"), GR_TOKEN_BAD_SIGNATURE);
    CHECK_INT(verify_forged("{\"exp\":1,\"exp\":2}"), GR_TOKEN_BAD_SIGNATURE);
    CHECK_INT(verify_forged("not json"), GR_TOKEN_BAD_SIGNATURE);
    CHECK_INT(verify_forged("[]"), GR_TOKEN_BAD_SIGNATURE);

    /* A key the daemon would never load is refused outright, not used. */
    CHECK_INT(verify_key(VALID, "gpsrelay unit test key, 32 byte"), GR_TOKEN_BAD_SIGNATURE);
    CHECK_INT(gr_token_verify(VALID, strlen(VALID), NULL, 0, NOW, &tok), GR_TOKEN_BAD_SIGNATURE);

    /* One signature character changed (to another with the same low bits, so it stays
     * canonical base64url): a 32-byte signature that is wrong. */
    memcpy(t, VALID, sizeof(VALID));
    char *sig = strrchr(t, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    CHECK_INT(verify(t), GR_TOKEN_BAD_SIGNATURE);

    /* Signatures that are not 32 bytes: truncated to 30, empty. */
    memcpy(t, VALID, sizeof(VALID));
    sig = strrchr(t, '.') + 1;
    sig[40] = '\0';
    CHECK_INT(verify(t), GR_TOKEN_BAD_SIGNATURE);
    sig[0] = '\0';
    CHECK_INT(verify(t), GR_TOKEN_BAD_SIGNATURE);

    /* The 32 right bytes followed by more: 33 and 34 bytes are no HS256 signature. */
    char longer[sizeof(VALID) + 4];
    snprintf(longer, sizeof(longer), "%sA", VALID);
    CHECK_INT(verify(longer), GR_TOKEN_BAD_SIGNATURE);
    snprintf(longer, sizeof(longer), "%sAAA", VALID);
    CHECK_INT(verify(longer), GR_TOKEN_BAD_SIGNATURE);
}

static void test_alg(void)
{
    /* Each of these would pass the HMAC check under KEY if alg were ignored. */
    CHECK_INT(verify(NONE_EMPTY), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify(NONE_SIGNED), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify(HS512), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify(RS256), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify(LOWER_ALG), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify(NO_ALG), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify(ALG_ARRAY), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify(TYP_JWS), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify(CRIT), GR_TOKEN_BAD_ALG);
    CHECK(is_zeroed(&tok));

    const char *claims = "{\"agencies\":[\"a\"],\"exp\":4102444800}";
    CHECK_INT(verify_signed("{\"alg\":\"HS256 \"}", claims), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify_signed("{\"alg\":\"HS2\"}", claims), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify_signed("{\"alg\":\"\"}", claims), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify_signed("{\"alg\":null}", claims), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify_signed("{\"alg\":\"HS256\",\"typ\":7}", claims), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify_signed("{\"alg\":\"HS256\",\"typ\":\"JWTX\"}", claims), GR_TOKEN_BAD_ALG);
    CHECK_INT(verify_signed("{\"alg\":\"HS256\",\"crit\":[]}", claims), GR_TOKEN_BAD_ALG);
    /* jansson refuses \u0000 in strings: "HS256\0..." can never be compared as "HS256". */
    CHECK_INT(verify_signed("{\"alg\":\"HS256\\u0000x\"}", claims), GR_TOKEN_MALFORMED);

    /* A header that says alg twice means different things to different parsers. */
    CHECK_INT(verify(DUP_ALG), GR_TOKEN_MALFORMED);
    CHECK_INT(verify(HDR_ARRAY), GR_TOKEN_MALFORMED);
    CHECK_INT(verify_signed("not json", claims), GR_TOKEN_MALFORMED);
    CHECK_INT(verify_signed("{\"alg\":\"HS256\"} x", claims), GR_TOKEN_MALFORMED);
}

static void test_format(void)
{
    char t[sizeof(VALID) + 8];
    const char *dot2 = strrchr(VALID, '.');
    size_t hp = (size_t)(dot2 - VALID); /* "header.payload" */

    CHECK_INT(verify(""), GR_TOKEN_MISSING);
    CHECK_INT(gr_token_verify(NULL, 0, (const unsigned char *)KEY, 32, NOW, &tok),
              GR_TOKEN_MISSING);
    CHECK_INT(verify("abc"), GR_TOKEN_MALFORMED);
    CHECK_INT(verify("."), GR_TOKEN_MALFORMED);
    CHECK_INT(verify(".."), GR_TOKEN_MALFORMED);
    CHECK_INT(verify("..."), GR_TOKEN_MALFORMED);
    CHECK_INT(verify("...."), GR_TOKEN_MALFORMED);

    /* One dot: header.payload with no signature part. */
    snprintf(t, sizeof(t), "%.*s", (int)hp, VALID);
    CHECK_INT(verify(t), GR_TOKEN_MALFORMED);
    /* Three and four dots: an extra part, or an empty one. */
    snprintf(t, sizeof(t), "%s.", VALID);
    CHECK_INT(verify(t), GR_TOKEN_MALFORMED);
    snprintf(t, sizeof(t), "%s.e30", VALID);
    CHECK_INT(verify(t), GR_TOKEN_MALFORMED);
    snprintf(t, sizeof(t), "%s.e30.e30", VALID);
    CHECK_INT(verify(t), GR_TOKEN_MALFORMED);
    /* Empty header, empty payload. */
    CHECK_INT(verify(strchr(VALID, '.')), GR_TOKEN_MALFORMED);
    snprintf(t, sizeof(t), "%.*s.%s", (int)(strchr(VALID, '.') - VALID), VALID, dot2);
    CHECK_INT(verify(t), GR_TOKEN_MALFORMED);

    /* Padding: 43 signature characters plus '=' is what padded base64url looks like. */
    snprintf(t, sizeof(t), "%s=", VALID);
    CHECK_INT(verify(t), GR_TOKEN_MALFORMED);
    /* eyJhbGciOiJIUzI1NiJ9 is {"alg":"HS256"}, 20 characters: "==" after it is padding
     * a lenient decoder would skip. */
    CHECK_INT(verify("eyJhbGciOiJIUzI1NiJ9==.e30.AAAA"), GR_TOKEN_MALFORMED);

    /* Characters outside the base64url alphabet: standard base64's + and /, space, NUL. */
    const char bad[] = {'+', '/', ' ', '\n', '=', '\0', '%', (char)0xc3};
    for (size_t i = 0; i < sizeof(bad); i++) {
        memcpy(t, VALID, sizeof(VALID));
        t[hp + 5] = bad[i]; /* in the signature */
        CHECK_INT(gr_token_verify(t, sizeof(VALID) - 1, (const unsigned char *)KEY, 32, NOW, &tok),
                  GR_TOKEN_MALFORMED);
        memcpy(t, VALID, sizeof(VALID));
        t[hp - 5] = bad[i]; /* in the payload: refused before any signature work */
        CHECK_INT(gr_token_verify(t, sizeof(VALID) - 1, (const unsigned char *)KEY, 32, NOW, &tok),
                  GR_TOKEN_MALFORMED);
        memcpy(t, VALID, sizeof(VALID));
        t[3] = bad[i]; /* in the header */
        CHECK_INT(gr_token_verify(t, sizeof(VALID) - 1, (const unsigned char *)KEY, 32, NOW, &tok),
                  GR_TOKEN_MALFORMED);
    }

    /* Non-canonical: the signature's last character with an unused low bit set decodes to
     * the same 32 bytes; accepting it would give one token two spellings. */
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    memcpy(t, VALID, sizeof(VALID));
    char *last = t + sizeof(VALID) - 2;
    *last = alphabet[(strchr(alphabet, *last) - alphabet) | 1];
    CHECK_INT(verify(t), GR_TOKEN_MALFORMED);

    /* Length: exactly GR_TOKEN_MAX is accepted, one more byte is not. sub pads the payload
     * (and is cut to GR_TOKEN_SUB_MAX on the way). */
    char *sub = malloc(GR_TOKEN_MAX);
    char *payload = malloc(GR_TOKEN_MAX + 64);
    bool seen_max = false, seen_over = false;
    for (size_t n = 2900; n < 3100 && !(seen_max && seen_over); n++) {
        memset(sub, 'x', n);
        sub[n] = '\0';
        snprintf(payload, GR_TOKEN_MAX + 64,
                 "{\"agencies\":[\"a\"],\"exp\":4102444800,\"sub\":\"%s\"}", sub);
        char *big = sign("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", payload);
        if (strlen(big) == GR_TOKEN_MAX) {
            seen_max = true;
            CHECK_INT(verify(big), GR_TOKEN_OK);
            CHECK_INT(strlen(tok.sub), GR_TOKEN_SUB_MAX);
            CHECK(strspn(tok.sub, "x") == GR_TOKEN_SUB_MAX);
        } else if (strlen(big) == GR_TOKEN_MAX + 1) {
            seen_over = true;
            CHECK_INT(verify(big), GR_TOKEN_MALFORMED);
        }
        free(big);
    }
    CHECK(seen_max);
    CHECK(seen_over);
    free(sub);
    free(payload);
}

static void test_claims(void)
{
    char payload[4096], list[1024];

    CHECK_INT(verify(EXPIRED), GR_TOKEN_EXPIRED); /* 31 s past: beyond GR_TOKEN_SKEW_S */
    CHECK(is_zeroed(&tok));
    CHECK_INT(verify(EXP_SKEW), GR_TOKEN_OK); /* 30 s past: within it */
    CHECK_INT(tok.exp, NOW - 30);
    CHECK_INT(verify(NO_EXP), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify(EXP_STRING), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify(EXP_FRACTION), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify(EXP_REAL), GR_TOKEN_OK);
    CHECK_INT(tok.exp, EXP);
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":true}"), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":null}"), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":1e300}"), GR_TOKEN_BAD_CLAIMS);
    /* The largest exp never expires instead of overflowing exp + skew. */
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":9223372036854775807}"), GR_TOKEN_OK);
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":-9223372036854775808}"),
              GR_TOKEN_EXPIRED);
    /* Beyond int64: jansson refuses the number, so the payload is no JSON. */
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":9223372036854775808}"),
              GR_TOKEN_MALFORMED);

    CHECK_INT(verify(NO_AGENCIES), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify(AGENCIES_EMPTY), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify(AGENCY_SPACE), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify(AGENCY_COLON), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify(AGENCIES_STRING), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify_claims("{\"agencies\":[7],\"exp\":4102444800}"), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify_claims("{\"agencies\":[\"\"],\"exp\":4102444800}"), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify_claims("{\"agencies\":[\"a@b\"],\"exp\":4102444800}"), GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify_claims("{\"agencies\":[\"caf\\u00e9\"],\"exp\":4102444800}"),
              GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify_claims("{\"agencies\":[\"A-z_0.9\"],\"exp\":4102444800}"), GR_TOKEN_OK);

    /* Agency id length: GR_AGENCY_ID_MAX (64) characters, then one more. */
    char id[GR_AGENCY_ID_MAX + 2];
    memset(id, 'q', GR_AGENCY_ID_MAX);
    id[GR_AGENCY_ID_MAX] = '\0';
    snprintf(payload, sizeof(payload), "{\"agencies\":[\"%s\"],\"exp\":4102444800}", id);
    CHECK_INT(verify_claims(payload), GR_TOKEN_OK);
    CHECK_STR(tok.agencies[0], id);
    strcat(id, "q");
    snprintf(payload, sizeof(payload), "{\"agencies\":[\"%s\"],\"exp\":4102444800}", id);
    CHECK_INT(verify_claims(payload), GR_TOKEN_BAD_CLAIMS);

    /* GR_TOKEN_AGENCIES_MAX agencies, then one more. */
    agency_list(list, sizeof(list), GR_TOKEN_AGENCIES_MAX);
    snprintf(payload, sizeof(payload), "{\"agencies\":%s,\"exp\":4102444800}", list);
    CHECK_INT(verify_claims(payload), GR_TOKEN_OK);
    CHECK_INT(tok.n_agencies, GR_TOKEN_AGENCIES_MAX);
    CHECK_STR(tok.agencies[GR_TOKEN_AGENCIES_MAX - 1], "a63");
    CHECK(gr_token_has_agency(&tok, "a00"));
    CHECK(gr_token_has_agency(&tok, "a37"));
    CHECK(!gr_token_has_agency(&tok, "a64"));
    agency_list(list, sizeof(list), GR_TOKEN_AGENCIES_MAX + 1);
    snprintf(payload, sizeof(payload), "{\"agencies\":%s,\"exp\":4102444800}", list);
    CHECK_INT(verify_claims(payload), GR_TOKEN_BAD_CLAIMS);
    /* Counted before de-duplication: 65 copies of one id are still too many. */
    size_t o = (size_t)snprintf(payload, sizeof(payload), "{\"agencies\":[");
    for (int i = 0; i <= GR_TOKEN_AGENCIES_MAX; i++)
        o += (size_t)snprintf(payload + o, sizeof(payload) - o, "%s\"a\"", i ? "," : "");
    snprintf(payload + o, sizeof(payload) - o, "],\"exp\":4102444800}");
    CHECK_INT(verify_claims(payload), GR_TOKEN_BAD_CLAIMS);

    CHECK_INT(verify(IAT_FUTURE), GR_TOKEN_BAD_CLAIMS); /* 31 s ahead */
    CHECK_INT(verify(IAT_SKEW), GR_TOKEN_OK);           /* 30 s ahead */
    CHECK_INT(tok.iat, NOW + 30);
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":4102444800,\"iat\":\"1\"}"),
              GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":4102444800,\"nbf\":1700000031}"),
              GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":4102444800,\"nbf\":1700000000}"),
              GR_TOKEN_OK);

    CHECK_INT(verify(SUB_CONTROL), GR_TOKEN_OK);
    /* \u0001, \t, then the two UTF-8 bytes of e-acute ("??!" split: it is a C11 trigraph). */
    CHECK_STR(tok.sub, "ops??tab??"
                       "!");
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":4102444800,\"sub\":7}"),
              GR_TOKEN_BAD_CLAIMS);
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":4102444800,\"sub\":\"\"}"), GR_TOKEN_OK);

    /* Payload JSON problems are found after the signature, and are MALFORMED. */
    CHECK_INT(verify(DUP_EXP), GR_TOKEN_MALFORMED);
    CHECK_INT(verify(PAYLOAD_ARRAY), GR_TOKEN_MALFORMED);
    CHECK_INT(verify_claims("{\"agencies\":[\"a\"],\"exp\":4102444800"), GR_TOKEN_MALFORMED);

    /* Order: claims before expiry (expired and bad agencies: BAD_CLAIMS). */
    CHECK_INT(verify_claims("{\"agencies\":[\"x:y\"],\"exp\":1}"), GR_TOKEN_BAD_CLAIMS);
}

static void test_mint(void)
{
    static const char *const two[] = {"city-fire", "county-ems"};
    const unsigned char *key = (const unsigned char *)KEY;

    /* Byte for byte what Python made: same JSON member order, same encoding. */
    char *t = gr_token_mint(key, 32, two, 2, "console-7", NOW, EXP);
    CHECK_STR(t, MINTED);
    free(t);

    static const char *const messy[] = {"zulu", "alpha", "zulu", "mike"};
    t = gr_token_mint(key, 32, messy, 4, NULL, NOW, NOW + 3600);
    CHECK(t != NULL);
    if (t != NULL) {
        CHECK(strlen(t) <= GR_TOKEN_MAX);
        CHECK(strchr(t, '=') == NULL);
        CHECK_INT(verify(t), GR_TOKEN_OK);
        CHECK_INT(tok.exp, NOW + 3600);
        CHECK_INT(tok.iat, NOW);
        CHECK_STR(tok.sub, "");
        CHECK_INT(tok.n_agencies, 3);
        CHECK_STR(tok.agencies[0], "alpha");
        CHECK_STR(tok.agencies[1], "mike");
        CHECK_STR(tok.agencies[2], "zulu");
        CHECK(gr_token_has_agency(&tok, "mike"));
        CHECK(!gr_token_has_agency(&tok, "november"));
        CHECK_INT(verify_key(t, KEY2), GR_TOKEN_BAD_SIGNATURE);
        /* One hour and a skew later, no longer. */
        CHECK_INT(gr_token_verify(t, strlen(t), key, 32, NOW + 3600 + GR_TOKEN_SKEW_S, &tok),
                  GR_TOKEN_OK);
        CHECK_INT(gr_token_verify(t, strlen(t), key, 32, NOW + 3600 + GR_TOKEN_SKEW_S + 1, &tok),
                  GR_TOKEN_EXPIRED);
    }
    free(t);

    /* A sub with a quote and a backslash survives JSON escaping. */
    t = gr_token_mint(key, 32, two, 1, "ops \"night\" \\ 2", NOW, EXP);
    CHECK(t != NULL && verify(t) == GR_TOKEN_OK);
    CHECK_STR(tok.sub, "ops \"night\" \\ 2");
    free(t);

    /* 64 agencies fit; 64 agencies of 64 characters would exceed GR_TOKEN_MAX: not minted. */
    static char ids[GR_TOKEN_AGENCIES_MAX + 1][GR_AGENCY_ID_MAX + 1];
    const char *ptrs[GR_TOKEN_AGENCIES_MAX + 1];
    for (int i = 0; i <= GR_TOKEN_AGENCIES_MAX; i++) {
        snprintf(ids[i], sizeof(ids[i]), "a%02d", i);
        ptrs[i] = ids[i];
    }
    t = gr_token_mint(key, 32, ptrs, GR_TOKEN_AGENCIES_MAX, NULL, NOW, EXP);
    CHECK(t != NULL && verify(t) == GR_TOKEN_OK);
    CHECK_INT(tok.n_agencies, GR_TOKEN_AGENCIES_MAX);
    free(t);
    CHECK(gr_token_mint(key, 32, ptrs, GR_TOKEN_AGENCIES_MAX + 1, NULL, NOW, EXP) == NULL);
    for (int i = 0; i < GR_TOKEN_AGENCIES_MAX; i++) {
        memset(ids[i], 'a' + i % 26, GR_AGENCY_ID_MAX);
        snprintf(ids[i], 3, "%02d", i);
        ids[i][2] = 'a';
    }
    CHECK(gr_token_mint(key, 32, ptrs, GR_TOKEN_AGENCIES_MAX, NULL, NOW, EXP) == NULL);

    /* Refused: what verify would refuse, and what cannot be said in JSON. */
    static const char *const bad_id[] = {"city-fire", "a b"};
    static const char *const colon[] = {"x:y"};
    static const char *const with_null[] = {NULL};
    CHECK(gr_token_mint(key, 32, bad_id, 2, NULL, NOW, EXP) == NULL);
    CHECK(gr_token_mint(key, 32, colon, 1, NULL, NOW, EXP) == NULL);
    CHECK(gr_token_mint(key, 32, with_null, 1, NULL, NOW, EXP) == NULL);
    CHECK(gr_token_mint(key, 32, two, 0, NULL, NOW, EXP) == NULL);
    CHECK(gr_token_mint(key, 31, two, 2, NULL, NOW, EXP) == NULL);
    CHECK(gr_token_mint(NULL, 32, two, 2, NULL, NOW, EXP) == NULL);
    CHECK(gr_token_mint(key, 32, two, 2, "\xff\xfe", NOW, EXP) == NULL);

    CHECK(gr_token_agency_id_valid("county-ems", 10));
    CHECK(gr_token_agency_id_valid("county-ems:x", 10)); /* only len bytes count */
    CHECK(!gr_token_agency_id_valid("county-ems:x", 12));
    CHECK(!gr_token_agency_id_valid("", 0));
    CHECK(!gr_token_agency_id_valid(NULL, 3));
}

/* Writes len bytes to path with exactly this mode (whatever the umask). */
static void put_file(const char *path, const char *text, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK_INT(write(fd, text, len), (long long)len);
    CHECK_INT(fchmod(fd, mode), 0);
    close(fd);
}

/* Loads path; on success returns the key as a NUL-terminated copy, else NULL with err. */
static char *load(const char *path, size_t *len, char *err, size_t errlen)
{
    unsigned char *key = (unsigned char *)"not touched";
    *len = 99;
    err[0] = '\0';
    if (gr_token_load_secret(path, &key, len, err, errlen) < 0) {
        CHECK(key == NULL);
        CHECK_INT(*len, 0);
        CHECK(err[0] != '\0');
        return NULL;
    }
    char *s = malloc(*len + 1);
    memcpy(s, key, *len);
    s[*len] = '\0';
    free(key);
    return s;
}

static void test_secret(void)
{
    char path[PATH_MAX + 32], dir[PATH_MAX + 32], fifo[PATH_MAX + 32], err[PATH_MAX + 256],
        want[PATH_MAX + 256];
    char big[GR_TOKEN_SECRET_MAX + 4];
    size_t len;
    char *key;
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    snprintf(path, sizeof(path), "%s/secret", scratch);
    snprintf(dir, sizeof(dir), "%s/secret.d", scratch);
    snprintf(fifo, sizeof(fifo), "%s/secret.fifo", scratch);

    /* `openssl rand -hex 32 > F`: 64 characters and "\n", which is dropped. */
    put_file(path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 65, 0600);
    key = load(path, &len, err, sizeof(err));
    CHECK_STR(key, hex);
    CHECK_INT(len, 64);
    free(key);
    /* No newline at all; "\r\n"; and only one of two newlines. */
    put_file(path, KEY, 32, 0600);
    key = load(path, &len, err, sizeof(err));
    CHECK_STR(key, KEY);
    free(key);
    put_file(path, KEY "\r\n", 34, 0600);
    key = load(path, &len, err, sizeof(err));
    CHECK_STR(key, KEY);
    free(key);
    put_file(path, KEY "\n\n", 34, 0600);
    key = load(path, &len, err, sizeof(err));
    CHECK_STR(key, KEY "\n");
    CHECK_INT(len, 33);
    free(key);
    /* Binary keys are keys: a NUL byte is kept. */
    put_file(path, "\0" KEY, 33, 0400);
    key = load(path, &len, err, sizeof(err));
    CHECK_INT(len, 33);
    CHECK(key != NULL && key[0] == '\0' && memcmp(key + 1, KEY, 32) == 0);
    free(key);
    /* Group access is the operator's business (a gpsrelay group); others are not. */
    put_file(path, KEY, 32, 0640);
    key = load(path, &len, err, sizeof(err));
    CHECK_STR(key, KEY);
    free(key);

    put_file(path, KEY, 32, 0644);
    CHECK(load(path, &len, err, sizeof(err)) == NULL);
    snprintf(want, sizeof(want),
             "%s: is readable or writable by others (mode 0644); chmod o-rwx it", path);
    CHECK_STR(err, want);
    put_file(path, KEY, 32, 0602);
    CHECK(load(path, &len, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "(mode 0602)") != NULL);
    put_file(path, KEY, 32, 0601);
    CHECK(load(path, &len, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "(mode 0601)") != NULL);

    /* Too short: 31 bytes once the newline is gone, and empty. */
    put_file(path, "gpsrelay unit test key, 32 byte\n", 32, 0600);
    CHECK(load(path, &len, err, sizeof(err)) == NULL);
    snprintf(want, sizeof(want),
             "%s: holds 31 bytes; an HS256 key needs at least 32 (openssl rand -hex 32 > FILE)",
             path);
    CHECK_STR(err, want);
    put_file(path, "", 0, 0600);
    CHECK(load(path, &len, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "holds 0 bytes") != NULL);
    put_file(path, "\r\n", 2, 0600);
    CHECK(load(path, &len, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "holds 0 bytes") != NULL);

    /* Too long: GR_TOKEN_SECRET_MAX bytes (plus "\r\n") is the most. */
    memset(big, 'k', sizeof(big));
    memcpy(big + GR_TOKEN_SECRET_MAX, "\r\n", 2);
    put_file(path, big, GR_TOKEN_SECRET_MAX + 2, 0600);
    key = load(path, &len, err, sizeof(err));
    CHECK(key != NULL);
    CHECK_INT(len, GR_TOKEN_SECRET_MAX);
    free(key);
    memset(big, 'k', sizeof(big));
    put_file(path, big, GR_TOKEN_SECRET_MAX + 1, 0600);
    CHECK(load(path, &len, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "at most 4096") != NULL);
    put_file(path, big, GR_TOKEN_SECRET_MAX + 3, 0600);
    CHECK(load(path, &len, err, sizeof(err)) == NULL);
    snprintf(want, sizeof(want), "%s: is 4099 bytes; an HS256 key file holds at most 4096", path);
    CHECK_STR(err, want);

    /* Not regular files: a directory, a FIFO (which must not block the open). */
    CHECK_INT(mkdir(dir, 0700), 0);
    CHECK(load(dir, &len, err, sizeof(err)) == NULL);
    snprintf(want, sizeof(want), "%s: is not a regular file (a directory)", dir);
    CHECK_STR(err, want);
    CHECK_INT(mkfifo(fifo, 0600), 0);
    CHECK(load(fifo, &len, err, sizeof(err)) == NULL);
    snprintf(want, sizeof(want), "%s: is not a regular file (a FIFO)", fifo);
    CHECK_STR(err, want);

    /* Missing. */
    unlink(path);
    CHECK(load(path, &len, err, sizeof(err)) == NULL);
    snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
    CHECK_STR(err, want);

    /* A tiny error buffer is cut, never overrun. */
    char small[8];
    CHECK(load(path, &len, small, sizeof(small)) == NULL);
    CHECK_INT(strlen(small), 7);

    rmdir(dir);
    unlink(fifo);
}

int main(int argc, char **argv)
{
    snprintf(scratch, sizeof(scratch), "%s/test_token.XXXXXX", argc > 1 ? argv[1] : "/tmp");
    if (mkdtemp(scratch) == NULL) {
        perror(scratch);
        return 1;
    }

    test_valid();
    test_signature();
    test_alg();
    test_format();
    test_claims();
    test_mint();
    test_secret();

    rmdir(scratch);
    return check_result("test_token");
}
