/*
 * config.c - the configuration file: a table of directives (nginx's ngx_command_t).
 *
 * Each directive is a row: its name, a setter that parses the value into a field of
 * struct gr_config found by offset, flags and a default. A new directive is a new row, a
 * new field in config.h and, at most, a new setter. Defaults go through the setters too,
 * so the table reads like the directive table of SPEC section 3.
 */
#include "gpsrelay/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "gpsrelay/file.h"
#include "gpsrelay/log.h"

/* Longest line, without its newline; longer is an error rather than a silent cut. */
#define GR_CONFIG_LINE_MAX 4096

/* Words kept per line: a directive name and its value (every directive takes one). */
#define GR_CONFIG_WORDS 2

/* Upper bound of the *_SECONDS directives: a day. More is a typo, not a policy. */
#define GR_CONFIG_SECONDS_MAX 86400

#define GR_MULTI 1u /* repeatable; the field is an array with a count */

struct gr_cfg_parse {
    struct gr_config *cfg;
    const char *path;
    int line; /* 0 while the problem is with the whole file */
    char *err;
    size_t errlen;
};

struct gr_directive {
    const char *name;
    int (*set)(struct gr_cfg_parse *p, const struct gr_directive *d, const char *value);
    size_t offset;       /* of the field in struct gr_config */
    size_t count_offset; /* GR_MULTI: of the size_t count of filled array elements */
    unsigned flags;
    const char *def; /* default, applied through set() before the file is read; or NULL */
};

#define GR_FIELD(p, d) ((void *)((char *)(p)->cfg + (d)->offset))

__attribute__((format(printf, 2, 3))) static int fail(struct gr_cfg_parse *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gr_file_verror(p->err, p->errlen, p->path, p->line, fmt, ap);
    va_end(ap);
    return -1;
}

/* Decimal digits only (no sign, no spaces), at most max. */
static int parse_uint(const char *s, long max, long *out)
{
    long v = 0;

    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > max)
            return -1;
    }
    *out = v;
    return 0;
}

/* "127.0.0.1:7000" or "[::1]:7000" into *a. Returns NULL, or why v is refused. */
static const char *parse_addr(const char *v, struct gr_addr *a)
{
    const char *host = v, *colon;
    size_t host_len;
    long port;
    int rc;

    if (strlen(v) >= sizeof(a->text))
        return "too long";
    if (*v == '[') {
        const char *close = strchr(v, ']');
        if (close == NULL || close[1] != ':')
            return "expected \"[IPv6]:PORT\"";
        host = v + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(v, ':');
        if (colon == NULL)
            return "expected \"ADDR:PORT\"";
        host_len = (size_t)(colon - v);
        if (memchr(v, ':', host_len) != NULL)
            return "an IPv6 address needs brackets, as in \"[::1]:7000\"";
    }
    if (parse_uint(colon + 1, 65535, &port) < 0)
        return "the port must be a number from 0 to 65535";
    if (host_len >= sizeof(a->host))
        return "addresses must be numeric (no DNS at start)";
    memcpy(a->host, host, host_len);
    a->host[host_len] = '\0';

    memset(&a->sa, 0, sizeof(a->sa));
    if (*v == '[') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        rc = inet_pton(AF_INET6, a->host, &sin6->sin6_addr);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        rc = inet_pton(AF_INET, a->host, &sin->sin_addr);
    }
    if (rc != 1)
        return "addresses must be numeric (no DNS at start)";
    a->port = (int)port;
    strcpy(a->text, v); /* length checked above */
    return NULL;
}

static int set_listen(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    struct gr_addr *addrs = GR_FIELD(p, d);
    size_t *n = (size_t *)((char *)p->cfg + d->count_offset);
    const char *why;

    if (*n == GR_LISTEN_MAX)
        return fail(p, "more than %d %s directives", GR_LISTEN_MAX, d->name);
    why = parse_addr(v, &addrs[*n]);
    if (why != NULL)
        return fail(p, "bad value \"%s\" for %s: %s", v, d->name, why);
    (*n)++;
    return 0;
}

/* A relative path is taken from the config file's folder, so a config and its files can
 * move together and the daemon's working directory does not matter. */
static int set_path(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    char **field = GR_FIELD(p, d);
    const char *slash = strrchr(p->path, '/');

    if (*v == '\0')
        return fail(p, "bad value \"\" for %s: empty path", d->name);
    if (*v == '/' || slash == NULL)
        *field = strdup(v);
    else if (asprintf(field, "%.*s/%s", (int)(slash - p->path), p->path, v) < 0)
        *field = NULL;
    return *field != NULL ? 0 : fail(p, "out of memory");
}

/* Whether libpq can reach host without a name lookup: a socket directory, or a numeric
 * address. */
static bool host_is_literal(const char *host, size_t len)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char addr[sizeof(struct in6_addr)];

    if (len > 0 && (host[0] == '/' || host[0] == '@'))
        return true;
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, host, len);
    buf[len] = '\0';
    return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

/*
 * A libpq connection string. Checked here rather than at the first connect: its syntax,
 * and that connecting needs no DNS lookup, because libpq resolves host names with a
 * blocking getaddrinfo() inside PQconnectStart(), which would stall the event loop
 * (NOTES.md). A name is fine next to hostaddr, which libpq then uses instead.
 */
static int set_conninfo(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    char **field = GR_FIELD(p, d);
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(v, &perr);

    if (opts == NULL) {
        int rc = perr ? fail(p, "bad value for %s: %s", d->name, strtok(perr, "\n"))
                      : fail(p, "out of memory");
        PQfreemem(perr);
        return rc;
    }
    const char *host = NULL, *hostaddr = NULL;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
    }
    int rc = 0;
    for (const char *h = host; rc == 0 && h != NULL && (hostaddr == NULL || *hostaddr == '\0');) {
        size_t len = strcspn(h, ",");
        if (!host_is_literal(h, len))
            rc = fail(p,
                      "%s: host \"%.*s\" is a name, and libpq would look it up with a "
                      "blocking call on the event loop; give hostaddr=ADDRESS as well (or a "
                      "numeric host, or a socket directory)",
                      d->name, (int)len, h);
        h = h[len] == ',' ? h + len + 1 : NULL;
    }
    PQconninfoFree(opts);
    if (rc == 0 && (*field = strdup(v)) == NULL)
        rc = fail(p, "out of memory");
    return rc;
}

static int set_auth(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    enum gr_auth *field = GR_FIELD(p, d);

    if (strcmp(v, "jwt") == 0)
        *field = GR_AUTH_JWT;
    else if (strcmp(v, "none") == 0)
        *field = GR_AUTH_NONE;
    else
        return fail(p, "bad value \"%s\" for %s: expected jwt or none", v, d->name);
    return 0;
}

static int set_log_level(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    int *field = GR_FIELD(p, d);

    *field = gr_log_level_parse(v);
    if (*field < 0)
        return fail(p, "bad value \"%s\" for %s: expected debug, info, notice, warning or error", v,
                    d->name);
    return 0;
}

static int set_seconds(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    int *field = GR_FIELD(p, d);
    long s;

    if (parse_uint(v, GR_CONFIG_SECONDS_MAX, &s) < 0)
        return fail(p, "bad value \"%s\" for %s: expected whole seconds from 0 to %d", v, d->name,
                    GR_CONFIG_SECONDS_MAX);
    *field = (int)s;
    return 0;
}

/* A speed in whole metres per second; 0 would refuse every moving unit. */
static int set_speed(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    int *field = GR_FIELD(p, d);
    long mps;

    if (parse_uint(v, GR_CONFIG_SPEED_MAX, &mps) < 0 || mps == 0)
        return fail(p, "bad value \"%s\" for %s: expected whole metres per second from 1 to %d", v,
                    d->name, GR_CONFIG_SPEED_MAX);
    *field = (int)mps;
    return 0;
}

/* An exact Origin: scheme://host[:port], no path, no trailing slash (browsers send it so). */
static int set_origin(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    char **origins = GR_FIELD(p, d);
    size_t *n = (size_t *)((char *)p->cfg + d->count_offset);
    const char *host = strstr(v, "://");

    if (*n == GR_ORIGINS_MAX)
        return fail(p, "more than %d %s directives", GR_ORIGINS_MAX, d->name);
    if (host == NULL || host == v || strlen(v) > GR_ORIGIN_LEN_MAX || host[3] == '\0' ||
        strchr(host + 3, '/') != NULL)
        return fail(p,
                    "bad value \"%s\" for %s: expected scheme://host[:port], as a browser "
                    "sends it",
                    v, d->name);
    if ((origins[*n] = strdup(v)) == NULL)
        return fail(p, "out of memory");
    (*n)++;
    return 0;
}

static int set_cidr(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    struct gr_cidr *ranges = GR_FIELD(p, d);
    size_t *n = (size_t *)((char *)p->cfg + d->count_offset);

    if (*n == GR_INGEST_ALLOW_MAX)
        return fail(p, "more than %d %s directives", GR_INGEST_ALLOW_MAX, d->name);
    if (gr_cidr_parse(v, &ranges[*n]) < 0)
        return fail(p,
                    "bad value \"%s\" for %s: expected an address or ADDR/PREFIX with no "
                    "host bits set, as in 10.20.0.0/16",
                    v, d->name);
    (*n)++;
    return 0;
}

/* A positive count (a rate, a limit), at most GR_CONFIG_COUNT_MAX. */
#define GR_CONFIG_COUNT_MAX 1000000
static int set_count(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    int *field = GR_FIELD(p, d);
    long n;

    if (parse_uint(v, GR_CONFIG_COUNT_MAX, &n) < 0 || n == 0)
        return fail(p, "bad value \"%s\" for %s: expected a whole number from 1 to %d", v, d->name,
                    GR_CONFIG_COUNT_MAX);
    *field = (int)n;
    return 0;
}

#define GR_OFF(f) offsetof(struct gr_config, f)

static const struct gr_directive gr_directives[] = {
    {"listen_udp", set_listen, GR_OFF(listen_udp), GR_OFF(n_listen_udp), GR_MULTI, NULL},
    {"listen_tcp", set_listen, GR_OFF(listen_tcp), GR_OFF(n_listen_tcp), GR_MULTI, NULL},
    {"listen_ws", set_listen, GR_OFF(listen_ws), GR_OFF(n_listen_ws), GR_MULTI, NULL},
    {"mapping_file", set_path, GR_OFF(mapping_file), 0, 0, NULL},
    {"postgres", set_conninfo, GR_OFF(postgres), 0, 0, NULL},
    {"mapping_cache", set_path, GR_OFF(mapping_cache), 0, 0, NULL},
    {"auth", set_auth, GR_OFF(auth), 0, 0, "jwt"},
    {"auth_secret_file", set_path, GR_OFF(auth_secret_file), 0, 0, NULL},
    {"tls_cert", set_path, GR_OFF(tls_cert), 0, 0, NULL},
    {"tls_key", set_path, GR_OFF(tls_key), 0, 0, NULL},
    {"allowed_origin", set_origin, GR_OFF(allowed_origin), GR_OFF(n_allowed_origin), GR_MULTI,
     NULL},
    {"ingest_allow", set_cidr, GR_OFF(ingest_allow), GR_OFF(n_ingest_allow), GR_MULTI, NULL},
    {"ingest_rate_limit", set_count, GR_OFF(ingest_rate_limit), 0, 0, "50"},
    {"max_connections_per_source", set_count, GR_OFF(max_connections_per_source), 0, 0, "512"},
    /* A modem needs one connection. 16 leaves room for the ones it leaves behind: one that
     * loses coverage never says goodbye, so its old connection stays open until
     * tcp_idle_timeout while it reconnects; and for a few modems behind one NAT'd router.
     * One host cannot lock out the rest (GR_TCP_CONN_MAX is 10,000); fleets behind one
     * carrier NAT address raise it. */
    {"tcp_max_per_source", set_count, GR_OFF(tcp_max_per_source), 0, 0, "16"},
    {"log_level", set_log_level, GR_OFF(log_level), 0, 0, "info"},
    {"max_future_skew", set_seconds, GR_OFF(max_future_skew), 0, 0, "300"},
    {"max_speed", set_speed, GR_OFF(max_speed), 0, 0, "150"},
    {"tcp_idle_timeout", set_seconds, GR_OFF(tcp_idle_timeout), 0, 0, "300"},
    {"stale_after", set_seconds, GR_OFF(stale_after), 0, 0, "120"},
    {"slow_timeout", set_seconds, GR_OFF(slow_timeout), 0, 0, "30"},
    {"idle_timeout", set_seconds, GR_OFF(idle_timeout), 0, 0, "60"},
    {"static_dir", set_path, GR_OFF(static_dir), 0, 0, NULL},
};

#define GR_N_DIRECTIVES (sizeof(gr_directives) / sizeof(gr_directives[0]))

static const struct gr_directive *find_directive(const char *name)
{
    for (size_t i = 0; i < GR_N_DIRECTIVES; i++) {
        if (strcmp(name, gr_directives[i].name) == 0)
            return &gr_directives[i];
    }
    return NULL;
}

/* The next line of the text [*pos, end), without its newline, into buf (GR_CONFIG_LINE_MAX
 * + 1 bytes) as a string; *pos moves past it. Returns 1, 0 at the end of the text, or -1. */
static int read_line(struct gr_cfg_parse *p, const char **pos, const char *end, char *buf)
{
    const char *s = *pos;
    size_t n = 0;

    if (s == end)
        return 0;
    for (; s < end && *s != '\n'; s++) {
        if (n == GR_CONFIG_LINE_MAX)
            return fail(p, "line longer than %d bytes", GR_CONFIG_LINE_MAX);
        if (*s == '\0')
            return fail(p, "NUL byte in line");
        buf[n++] = *s;
    }
    buf[n] = '\0';
    *pos = s < end ? s + 1 : s;
    return 1;
}

/*
 * Splits s in place into words: blanks separate, '#' starts a comment, "..." holds blanks
 * and '#', with \" and \\ as its only escapes (any other backslash is kept, for paths).
 * Returns the number of words, of which the first GR_CONFIG_WORDS are stored; or -1.
 */
static int split_words(struct gr_cfg_parse *p, char *s, char **words)
{
    int n = 0;

    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        if (*s == '\0' || *s == '#')
            return n;

        char *start = s, *out = s;
        if (*s == '"') {
            for (s++; *s != '"'; s++) {
                if (*s == '\0')
                    return fail(p, "unterminated quote");
                if (*s == '\\' && (s[1] == '"' || s[1] == '\\'))
                    s++;
                *out++ = *s;
            }
            s++;
            if (*s != '\0' && *s != ' ' && *s != '\t' && *s != '\r' && *s != '#')
                return fail(p, "text right after a closing quote");
        } else {
            for (; *s != '\0' && *s != ' ' && *s != '\t' && *s != '\r' && *s != '#'; s++) {
                if (*s == '"')
                    return fail(p, "quote inside a word; quote the whole value");
            }
            out = s;
        }

        /* The terminator may land on the separator (out == s): look at it first. */
        bool last = *s == '\0' || *s == '#';
        *out = '\0';
        if (n < GR_CONFIG_WORDS)
            words[n] = start;
        n++;
        if (last)
            return n;
        s++;
    }
}

static int parse_file(struct gr_cfg_parse *p, const char *text, size_t len)
{
    int first_line[GR_N_DIRECTIVES] = {0}; /* where each directive was first seen */
    char buf[GR_CONFIG_LINE_MAX + 1], *words[GR_CONFIG_WORDS];
    const char *pos = text;
    int rc, n;

    for (p->line = 1; (rc = read_line(p, &pos, text + len, buf)) > 0; p->line++) {
        n = split_words(p, buf, words);
        if (n < 0)
            return -1;
        if (n == 0)
            continue;
        const struct gr_directive *d = find_directive(words[0]);
        if (d == NULL)
            return fail(p, "unknown directive \"%s\"", words[0]);
        size_t i = (size_t)(d - gr_directives);
        if (n != GR_CONFIG_WORDS)
            return fail(p, "directive \"%s\" takes one value, not %d", d->name, n - 1);
        if (!(d->flags & GR_MULTI) && first_line[i] != 0)
            return fail(p, "duplicate directive \"%s\" (first on line %d)", d->name, first_line[i]);
        if (first_line[i] == 0)
            first_line[i] = p->line;
        if (d->set(p, d, words[1]) < 0)
            return -1;
    }
    return rc;
}

static bool is_loopback(const struct gr_addr *a)
{
    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
        return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
    }
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->sa;
    return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
}

bool gr_config_ws_loopback_only(const struct gr_config *cfg)
{
    for (size_t i = 0; i < cfg->n_listen_ws; i++) {
        if (!is_loopback(&cfg->listen_ws[i]))
            return false;
    }
    return true;
}

/* Whole-config rules, checked once every line is read. */
static int validate(struct gr_cfg_parse *p)
{
    const struct gr_config *c = p->cfg;

    p->line = 0;
    if (c->n_listen_ws == 0)
        return fail(p, "no listen_ws: consoles need at least one");
    if (c->n_listen_udp == 0 && c->n_listen_tcp == 0)
        return fail(p, "no listen_udp or listen_tcp: ingest needs at least one");
    if (c->mapping_file == NULL && c->postgres == NULL)
        return fail(p, "no mapping source: set mapping_file (CSV) or postgres");
    if (c->mapping_file != NULL && c->postgres != NULL)
        return fail(p, "mapping_file and postgres are two mapping sources: set one");
    if (c->mapping_cache != NULL && c->postgres == NULL)
        return fail(p, "mapping_cache keeps the last mapping read from postgres: set postgres");
    if (c->auth == GR_AUTH_JWT && c->auth_secret_file == NULL)
        return fail(p, "auth jwt needs auth_secret_file (a key of at least 32 bytes)");
    if ((c->tls_cert == NULL) != (c->tls_key == NULL))
        return fail(p, "tls_cert and tls_key go together: set both or neither");
    /* SPEC section 3: without tokens, consoles must not be reachable from the network. */
    for (size_t i = 0; c->auth == GR_AUTH_NONE && i < c->n_listen_ws; i++) {
        if (!is_loopback(&c->listen_ws[i]))
            return fail(p,
                        "auth none is only allowed when every listen_ws address is loopback "
                        "(127.0.0.0/8 or ::1); \"%s\" is not",
                        c->listen_ws[i].text);
    }
    return 0;
}

int gr_config_load(const char *path, struct gr_config *out, char *err, size_t errlen)
{
    struct gr_cfg_parse p = {.cfg = out, .path = path, .err = err, .errlen = errlen};
    char *text;
    size_t len;
    int rc;

    memset(out, 0, sizeof(*out));
    out->path = strdup(path);
    if (out->path == NULL) {
        fail(&p, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < GR_N_DIRECTIVES; i++) {
        if (gr_directives[i].def != NULL &&
            gr_directives[i].set(&p, &gr_directives[i], gr_directives[i].def) < 0)
            goto fail;
    }

    /* Not a regular file (a FIFO would hold a reload until someone writes to it), or over
     * GR_CONFIG_FILE_MAX: refused, with the reason in err. */
    if (gr_file_read(path, GR_CONFIG_FILE_MAX, &text, &len, err, errlen) < 0)
        goto fail;
    rc = parse_file(&p, text, len);
    free(text);
    if (rc < 0 || validate(&p) < 0)
        goto fail;
    return 0;

fail:
    gr_config_free(out);
    return -1;
}

bool gr_config_origin_ok(const struct gr_config *cfg, const char *origin)
{
    if (origin == NULL || cfg->n_allowed_origin == 0)
        return true;
    for (size_t i = 0; i < cfg->n_allowed_origin; i++)
        if (strcmp(cfg->allowed_origin[i], origin) == 0)
            return true;
    return false;
}

void gr_config_free(struct gr_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    free(cfg->mapping_file);
    free(cfg->postgres);
    free(cfg->mapping_cache);
    free(cfg->auth_secret_file);
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->static_dir);
    for (size_t i = 0; i < cfg->n_allowed_origin; i++)
        free(cfg->allowed_origin[i]);
    memset(cfg, 0, sizeof(*cfg));
}
