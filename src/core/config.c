/*
 * config.c - the configuration file: a table of directives (nginx's ngx_command_t).
 *
 * Each directive is a row: its name, a setter that parses the value into a field of
 * struct gr_config found by offset, the kind of value the field holds (which says how it
 * is compared, copied and freed), flags and a default. GR_DIR_RESTART marks what a running
 * daemon cannot change, GR_DIR_SOURCE the directives that name the mapping source; the
 * code that frees a configuration and keeps restart-only values on a reload walks the
 * table. A new directive is a new row, a new field in config.h and, at most, a new setter.
 * Defaults go through the setters too, so the table reads like the directive table of
 * docs/configuration.md.
 */
#include "gpsrelay/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "gpsrelay/file.h"
#include "gpsrelay/log.h"

/* Longest line, without its newline; longer is an error rather than a silent cut. */
#define GR_CONFIG_LINE_MAX 4096

/* Words kept per line: a directive name and its value (every directive takes one). */
#define GR_CONFIG_WORDS 2

/* Upper bound of the *_SECONDS directives: a day. More is a typo, not a policy. */
#define GR_CONFIG_SECONDS_MAX 86400

/*
 * What a directive's field holds: how it is compared, copied back on a reload and freed.
 * The array kinds are repeatable directives, with a size_t count of filled elements.
 */
enum gr_value {
    GR_VAL_INT,   /* an int, or an enum (int-sized) */
    GR_VAL_U64,   /* a uint64_t (sizes in bytes) */
    GR_VAL_TEXT,  /* a char * the configuration owns, or NULL */
    GR_VAL_TEXTS, /* an array of owned char * */
    GR_VAL_ADDRS, /* an array of struct gr_addr: sockets bound at start */
    GR_VAL_CIDRS, /* an array of struct gr_cidr */
};

/* A running daemon keeps its value: a reload that changes it warns and keeps the old. */
#define GR_DIR_RESTART 1u
/* Names the mapping source (mapping_source.h): exactly one is set, and a reload cannot
 * switch to another source (all of them then keep their running values). */
#define GR_DIR_SOURCE 2u

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
    enum gr_value kind;
    size_t offset;       /* of the field in struct gr_config */
    size_t count_offset; /* the array kinds: of the size_t count of filled elements */
    unsigned flags;      /* GR_DIR_* */
    const char *def;     /* default, applied through set() before the file is read; or NULL */
};

_Static_assert(sizeof(enum gr_auth) == sizeof(int), "GR_VAL_INT holds enum gr_auth");

static bool is_multi(const struct gr_directive *d)
{
    return d->kind == GR_VAL_TEXTS || d->kind == GR_VAL_ADDRS || d->kind == GR_VAL_CIDRS;
}

/* The address of d's field in cfg, and of its count (the array kinds). Not const: the
 * setters and the reload write through them; the comparisons only read. */
static void *field_of(const struct gr_config *cfg, const struct gr_directive *d)
{
    return (char *)cfg + d->offset;
}

static size_t *count_of(const struct gr_config *cfg, const struct gr_directive *d)
{
    return (size_t *)((char *)cfg + d->count_offset);
}

/* Whether the file gave d a value (or its default did); an int always has one. */
static bool is_set(const struct gr_config *cfg, const struct gr_directive *d)
{
    if (is_multi(d))
        return *count_of(cfg, d) > 0;
    if (d->kind == GR_VAL_TEXT)
        return *(char *const *)field_of(cfg, d) != NULL;
    return true;
}

/* Says what is wrong with the file, at p's line; returns -EINVAL, for "return fail()". */
__attribute__((format(printf, 2, 3))) static int fail(struct gr_cfg_parse *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = gr_file_verror(p->err, p->errlen, p->path, p->line, fmt, ap);
    va_end(ap);
    return rc;
}

/* Out of memory while reading the file: said as such, -ENOMEM. */
static int fail_oom(struct gr_cfg_parse *p)
{
    fail(p, "out of memory");
    return -ENOMEM;
}

/* Decimal digits only (no sign, no spaces), at most max. Returns 0, or -EINVAL. */
static int parse_uint(const char *s, long max, long *out)
{
    long v = 0;

    if (*s == '\0')
        return -EINVAL;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (*s - '0');
        if (v > max)
            return -EINVAL;
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
    struct gr_addr *addrs = field_of(p->cfg, d);
    size_t *n = count_of(p->cfg, d);
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
    char **field = field_of(p->cfg, d);
    const char *slash = strrchr(p->path, '/');

    if (*v == '\0')
        return fail(p, "bad value \"\" for %s: empty path", d->name);
    if (*v == '/' || slash == NULL)
        *field = strdup(v);
    else if (asprintf(field, "%.*s/%s", (int)(slash - p->path), p->path, v) < 0)
        *field = NULL;
    return *field != NULL ? 0 : fail_oom(p);
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
 * blocking getaddrinfo() inside PQconnectStart(), which would stall the event loop for as
 * long as the resolver takes (libpq's PQconnectPoll has no asynchronous lookup). A name is
 * fine next to hostaddr, which libpq then uses instead.
 */
static int set_conninfo(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    char **field = field_of(p->cfg, d);
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(v, &perr);

    if (opts == NULL) {
        int rc = perr ? fail(p, "bad value for %s: %s", d->name, strtok(perr, "\n")) : fail_oom(p);
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
        rc = fail_oom(p);
    return rc;
}

static int set_auth(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    enum gr_auth *field = field_of(p->cfg, d);

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
    int *field = field_of(p->cfg, d);

    *field = gr_log_level_parse(v);
    if (*field < 0)
        return fail(p, "bad value \"%s\" for %s: expected debug, info, notice, warning or error", v,
                    d->name);
    return 0;
}

static int set_seconds(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    int *field = field_of(p->cfg, d);
    long s;

    if (parse_uint(v, GR_CONFIG_SECONDS_MAX, &s) < 0)
        return fail(p, "bad value \"%s\" for %s: expected whole seconds from 0 to %d", v, d->name,
                    GR_CONFIG_SECONDS_MAX);
    *field = (int)s;
    return 0;
}

/* merge_window: whole milliseconds, 0 (publish per payload) to GR_CONFIG_MERGE_WINDOW_MAX. */
static int set_window(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    int *field = field_of(p->cfg, d);
    long ms;

    if (parse_uint(v, GR_CONFIG_MERGE_WINDOW_MAX, &ms) < 0)
        return fail(p, "bad value \"%s\" for %s: expected whole milliseconds from 0 to %d", v,
                    d->name, GR_CONFIG_MERGE_WINDOW_MAX);
    *field = (int)ms;
    return 0;
}

/* A speed in whole metres per second; 0 would refuse every moving unit. */
static int set_speed(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    int *field = field_of(p->cfg, d);
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
    char **origins = field_of(p->cfg, d);
    size_t *n = count_of(p->cfg, d);
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
        return fail_oom(p);
    (*n)++;
    return 0;
}

static int set_cidr(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    struct gr_cidr *ranges = field_of(p->cfg, d);
    size_t *n = count_of(p->cfg, d);

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
    int *field = field_of(p->cfg, d);
    long n;

    if (parse_uint(v, GR_CONFIG_COUNT_MAX, &n) < 0 || n == 0)
        return fail(p, "bad value \"%s\" for %s: expected a whole number from 1 to %d", v, d->name,
                    GR_CONFIG_COUNT_MAX);
    *field = (int)n;
    return 0;
}

#define GR_OFF(f) offsetof(struct gr_config, f)

/* A NATS server: nats://HOST:PORT (libnats resolves names on its own threads, so a host
 * name is fine here, unlike postgres). */
static int set_nats_url(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    char **urls = field_of(p->cfg, d);
    size_t *n = count_of(p->cfg, d);
    const char *host = v + strlen("nats://"), *colon = strrchr(v, ':');
    long port;

    if (*n == GR_CLUSTER_NATS_MAX)
        return fail(p, "more than %d %s directives", GR_CLUSTER_NATS_MAX, d->name);
    if (strncmp(v, "nats://", 7) != 0 || colon == NULL || colon < host + 1 || strlen(v) > 256 ||
        strpbrk(host, "/@ ") != NULL || parse_uint(colon + 1, 65535, &port) < 0 || port == 0)
        return fail(p, "bad value \"%s\" for %s: expected nats://HOST:PORT", v, d->name);
    if ((urls[*n] = strdup(v)) == NULL)
        return fail_oom(p);
    (*n)++;
    return 0;
}

/* A name made of [A-Za-z0-9_-], 1 to max bytes: cluster_name is a stream name and a NATS
 * subject token, node_name goes into logs, /readyz and join replies as is. */
static int set_name(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v, size_t max)
{
    char **field = field_of(p->cfg, d);
    size_t len = strlen(v);

    if (len == 0 || len > max ||
        strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789_-") != len)
        return fail(p, "bad value \"%s\" for %s: expected 1 to %zu of A-Z a-z 0-9 _ -", v, d->name,
                    max);
    free(*field); /* the default */
    return (*field = strdup(v)) != NULL ? 0 : fail_oom(p);
}

static int set_cluster_name(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    return set_name(p, d, v, GR_CLUSTER_NAME_MAX);
}

static int set_node_name(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    return set_name(p, d, v, GR_NODE_NAME_MAX);
}

static int set_replicas(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    int *field = field_of(p->cfg, d);
    long n;

    if (parse_uint(v, GR_CLUSTER_REPLICAS_MAX, &n) < 0 || n == 0)
        return fail(p, "bad value \"%s\" for %s: expected 1 to %d", v, d->name,
                    GR_CLUSTER_REPLICAS_MAX);
    *field = (int)n;
    return 0;
}

/* cluster_history: at least a minute (a console's reconnect), at most 30 days: a unit
 * parked for a long weekend still has its position on a node that starts meanwhile. */
#define GR_CLUSTER_HISTORY_MAX (30 * 86400)
static int set_history(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    int *field = field_of(p->cfg, d);
    long s;

    if (parse_uint(v, GR_CLUSTER_HISTORY_MAX, &s) < 0 || s < 60)
        return fail(p, "bad value \"%s\" for %s: expected whole seconds from 60 to %d", v, d->name,
                    GR_CLUSTER_HISTORY_MAX);
    *field = (int)s;
    return 0;
}

/* archive_retention_days: at least a day (today's partition is never dropped), at most
 * ten years of daily partitions. */
static int set_retention(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    int *field = field_of(p->cfg, d);
    long n;

    if (parse_uint(v, GR_ARCHIVE_RETENTION_MAX, &n) < 0 || n == 0)
        return fail(p, "bad value \"%s\" for %s: expected whole days from 1 to %d", v, d->name,
                    GR_ARCHIVE_RETENTION_MAX);
    *field = (int)n;
    return 0;
}

/* archive_spool_max: bytes, from GR_ARCHIVE_SPOOL_MIN (thousands of positions) to 1 TiB. */
static int set_spool_max(struct gr_cfg_parse *p, const struct gr_directive *d, const char *v)
{
    uint64_t *field = field_of(p->cfg, d);
    long n;

    if (parse_uint(v, GR_ARCHIVE_SPOOL_MAX, &n) < 0 || n < GR_ARCHIVE_SPOOL_MIN)
        return fail(p, "bad value \"%s\" for %s: expected bytes from %ld to %ld", v, d->name,
                    (long)GR_ARCHIVE_SPOOL_MIN, (long)GR_ARCHIVE_SPOOL_MAX);
    *field = (uint64_t)n;
    return 0;
}

#define GR_OFF(f)   offsetof(struct gr_config, f)
#define GR_MULTI(f) GR_OFF(f), GR_OFF(n_##f)
#define GR_ONE(f)   GR_OFF(f), 0

static const struct gr_directive directives[] = {
    {"listen_udp", set_listen, GR_VAL_ADDRS, GR_MULTI(listen_udp), GR_DIR_RESTART, NULL},
    {"listen_tcp", set_listen, GR_VAL_ADDRS, GR_MULTI(listen_tcp), GR_DIR_RESTART, NULL},
    {"listen_ws", set_listen, GR_VAL_ADDRS, GR_MULTI(listen_ws), GR_DIR_RESTART, NULL},
    {"listen_http_ingest", set_listen, GR_VAL_ADDRS, GR_MULTI(listen_http_ingest), GR_DIR_RESTART,
     NULL},
    /* A CSV file may be renamed on a reload; a connection string takes a restart. */
    {"mapping_file", set_path, GR_VAL_TEXT, GR_ONE(mapping_file), GR_DIR_SOURCE, NULL},
    {"postgres", set_conninfo, GR_VAL_TEXT, GR_ONE(postgres), GR_DIR_SOURCE | GR_DIR_RESTART, NULL},
    {"mapping_cache", set_path, GR_VAL_TEXT, GR_ONE(mapping_cache), GR_DIR_RESTART, NULL},
    {"auth", set_auth, GR_VAL_INT, GR_ONE(auth), GR_DIR_RESTART, "jwt"},
    {"auth_secret_file", set_path, GR_VAL_TEXT, GR_ONE(auth_secret_file), GR_DIR_RESTART, NULL},
    {"tls_cert", set_path, GR_VAL_TEXT, GR_ONE(tls_cert), GR_DIR_RESTART, NULL},
    {"tls_key", set_path, GR_VAL_TEXT, GR_ONE(tls_key), GR_DIR_RESTART, NULL},
    {"allowed_origin", set_origin, GR_VAL_TEXTS, GR_MULTI(allowed_origin), 0, NULL},
    {"ingest_allow", set_cidr, GR_VAL_CIDRS, GR_MULTI(ingest_allow), 0, NULL},
    {"ingest_rate_limit", set_count, GR_VAL_INT, GR_ONE(ingest_rate_limit), 0, "50"},
    {"merge_window", set_window, GR_VAL_INT, GR_ONE(merge_window), 0, "100"},
    {"max_connections_per_source", set_count, GR_VAL_INT, GR_ONE(max_connections_per_source), 0,
     "512"},
    /* A modem needs one connection. 16 leaves room for the ones it leaves behind: one that
     * loses coverage never says goodbye, so its old connection stays open until
     * tcp_idle_timeout while it reconnects; and for a few modems behind one NAT'd router.
     * One host cannot lock out the rest (GR_TCP_CONN_MAX is 10,000); fleets behind one
     * carrier NAT address raise it. */
    {"tcp_max_per_source", set_count, GR_VAL_INT, GR_ONE(tcp_max_per_source), 0, "16"},
    {"log_level", set_log_level, GR_VAL_INT, GR_ONE(log_level), 0, "info"},
    {"max_future_skew", set_seconds, GR_VAL_INT, GR_ONE(max_future_skew), 0, "300"},
    {"max_speed", set_speed, GR_VAL_INT, GR_ONE(max_speed), 0, "150"},
    {"tcp_idle_timeout", set_seconds, GR_VAL_INT, GR_ONE(tcp_idle_timeout), 0, "300"},
    {"stale_after", set_seconds, GR_VAL_INT, GR_ONE(stale_after), 0, "120"},
    {"slow_timeout", set_seconds, GR_VAL_INT, GR_ONE(slow_timeout), 0, "30"},
    {"idle_timeout", set_seconds, GR_VAL_INT, GR_ONE(idle_timeout), 0, "60"},
    {"static_dir", set_path, GR_VAL_TEXT, GR_ONE(static_dir), 0, NULL},
    {"cluster_nats", set_nats_url, GR_VAL_TEXTS, GR_MULTI(cluster_nats), GR_DIR_RESTART, NULL},
    {"cluster_name", set_cluster_name, GR_VAL_TEXT, GR_ONE(cluster_name), GR_DIR_RESTART,
     "gpsrelay"},
    {"node_name", set_node_name, GR_VAL_TEXT, GR_ONE(node_name), GR_DIR_RESTART, NULL},
    {"cluster_replicas", set_replicas, GR_VAL_INT, GR_ONE(cluster_replicas), GR_DIR_RESTART, "3"},
    {"cluster_history", set_history, GR_VAL_INT, GR_ONE(cluster_history), GR_DIR_RESTART, "86400"},
    {"archive_postgres", set_conninfo, GR_VAL_TEXT, GR_ONE(archive_postgres), GR_DIR_RESTART, NULL},
    {"archive_retention_days", set_retention, GR_VAL_INT, GR_ONE(archive_retention_days), 0, "90"},
    {"archive_spool", set_path, GR_VAL_TEXT, GR_ONE(archive_spool), GR_DIR_RESTART, NULL},
    {"archive_spool_max", set_spool_max, GR_VAL_U64, GR_ONE(archive_spool_max), GR_DIR_RESTART,
     "1073741824"},
};

#define GR_N_DIRECTIVES (sizeof(directives) / sizeof(directives[0]))

static const struct gr_directive *find_directive(const char *name)
{
    for (size_t i = 0; i < GR_N_DIRECTIVES; i++) {
        if (strcmp(name, directives[i].name) == 0)
            return &directives[i];
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
 * Returns the number of words, of which the first GR_CONFIG_WORDS are stored; or -EINVAL.
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
            return n;
        if (n == 0)
            continue;
        const struct gr_directive *d = find_directive(words[0]);
        if (d == NULL)
            return fail(p, "unknown directive \"%s\"", words[0]);
        size_t i = (size_t)(d - directives);
        if (n != GR_CONFIG_WORDS)
            return fail(p, "directive \"%s\" takes one value, not %d", d->name, n - 1);
        if (!is_multi(d) && first_line[i] != 0)
            return fail(p, "duplicate directive \"%s\" (first on line %d)", d->name, first_line[i]);
        if (first_line[i] == 0)
            first_line[i] = p->line;
        if ((n = d->set(p, d, words[1])) < 0)
            return n;
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

/* Whole-config rules, checked once every line is read. */
static int validate(struct gr_cfg_parse *p)
{
    const struct gr_config *c = p->cfg;

    p->line = 0;
    if (c->n_listen_ws == 0)
        return fail(p, "no listen_ws: consoles need at least one");
    if (c->n_listen_udp == 0 && c->n_listen_tcp == 0 && c->n_listen_http_ingest == 0)
        return fail(p,
                    "no listen_udp, listen_tcp or listen_http_ingest: ingest needs at least one");
    const struct gr_directive *source[2]; /* the first two mapping sources set */
    size_t n_source = 0;
    for (size_t i = 0; i < GR_N_DIRECTIVES; i++) {
        if (!(directives[i].flags & GR_DIR_SOURCE) || !is_set(c, &directives[i]))
            continue;
        if (n_source < 2)
            source[n_source] = &directives[i];
        n_source++;
    }
    if (n_source == 0)
        return fail(p, "no mapping source: set mapping_file (CSV) or postgres");
    if (n_source > 1)
        return fail(p, "%s and %s are two mapping sources: set one", source[0]->name,
                    source[1]->name);
    if (c->mapping_cache != NULL && c->postgres == NULL)
        return fail(p, "mapping_cache keeps the last mapping read from postgres: set postgres");
    if (c->archive_spool != NULL && c->archive_postgres == NULL)
        return fail(p, "archive_spool holds positions on their way to archive_postgres: set "
                       "archive_postgres");
    if (c->auth == GR_AUTH_JWT && c->auth_secret_file == NULL)
        return fail(p, "auth jwt needs auth_secret_file (a key of at least 32 bytes)");
    if ((c->tls_cert == NULL) != (c->tls_key == NULL))
        return fail(p, "tls_cert and tls_key go together: set both or neither");
    /* Without tokens, consoles must not be reachable from the network. */
    for (size_t i = 0; c->auth == GR_AUTH_NONE && i < c->n_listen_ws; i++) {
        if (!is_loopback(&c->listen_ws[i]))
            return fail(p,
                        "auth none is only allowed when every listen_ws address is loopback "
                        "(127.0.0.0/8 or ::1); \"%s\" is not",
                        c->listen_ws[i].text);
    }
    return 0;
}

/* node_name's default, the host name: the first label, in node_name's alphabet. */
static int default_node_name(struct gr_cfg_parse *p)
{
    char host[256] = "";
    size_t n;

    if (p->cfg->node_name != NULL)
        return 0;
    gethostname(host, sizeof(host) - 1);
    n = strspn(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
    if (n > GR_NODE_NAME_MAX)
        n = GR_NODE_NAME_MAX;
    host[n] = '\0';
    return (p->cfg->node_name = strdup(n > 0 ? host : "node")) != NULL ? 0 : fail_oom(p);
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
        rc = fail_oom(&p);
        goto fail;
    }
    for (size_t i = 0; i < GR_N_DIRECTIVES; i++) {
        if (directives[i].def != NULL &&
            (rc = directives[i].set(&p, &directives[i], directives[i].def)) < 0)
            goto fail;
    }

    /* Not a regular file (a FIFO would hold a reload until someone writes to it), or over
     * GR_CONFIG_FILE_MAX: refused, with the reason in err. */
    if ((rc = gr_file_read(path, GR_CONFIG_FILE_MAX, &text, &len, err, errlen)) < 0)
        goto fail;
    rc = parse_file(&p, text, len);
    free(text);
    if (rc < 0 || (rc = validate(&p)) < 0 || (rc = default_node_name(&p)) < 0)
        goto fail;
    return 0;

fail:
    gr_config_free(out);
    return rc;
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

static bool same_text(const char *a, const char *b)
{
    return a == NULL || b == NULL ? a == b : strcmp(a, b) == 0;
}

/* Whether d has the same value in a and b. Addresses compare as written: "127.0.0.1:0"
 * is a new ephemeral port each time it is bound. */
static bool same_value(const struct gr_config *a, const struct gr_config *b,
                       const struct gr_directive *d)
{
    const void *fa = field_of(a, d), *fb = field_of(b, d);
    size_t n = is_multi(d) ? *count_of(a, d) : 0;

    if (is_multi(d) && n != *count_of(b, d))
        return false;
    switch (d->kind) {
    case GR_VAL_INT:
        return *(const int *)fa == *(const int *)fb;
    case GR_VAL_U64:
        return *(const uint64_t *)fa == *(const uint64_t *)fb;
    case GR_VAL_TEXT:
        return same_text(*(char *const *)fa, *(char *const *)fb);
    case GR_VAL_TEXTS:
        for (size_t i = 0; i < n; i++)
            if (!same_text(((char *const *)fa)[i], ((char *const *)fb)[i]))
                return false;
        return true;
    case GR_VAL_ADDRS:
        for (size_t i = 0; i < n; i++)
            if (strcmp(((const struct gr_addr *)fa)[i].text, ((const struct gr_addr *)fb)[i].text))
                return false;
        return true;
    case GR_VAL_CIDRS:
        for (size_t i = 0; i < n; i++) {
            const struct gr_cidr *x = &((const struct gr_cidr *)fa)[i];
            const struct gr_cidr *y = &((const struct gr_cidr *)fb)[i];
            if (x->family != y->family || x->prefix != y->prefix ||
                memcmp(x->addr, y->addr, sizeof(x->addr)) != 0)
                return false;
        }
        return true;
    }
    return false;
}

/* Frees what d's field in cfg owns, leaving it empty. */
static void free_value(struct gr_config *cfg, const struct gr_directive *d)
{
    if (d->kind == GR_VAL_TEXT) {
        char **text = field_of(cfg, d);
        free(*text);
        *text = NULL;
    } else if (d->kind == GR_VAL_TEXTS) {
        char **texts = field_of(cfg, d);
        for (size_t i = 0; i < *count_of(cfg, d); i++)
            free(texts[i]);
        *count_of(cfg, d) = 0;
    }
}

/* Replaces d's value in to by a copy of from's. Returns 0, or -ENOMEM with d empty in to. */
static int copy_value(struct gr_config *to, const struct gr_config *from,
                      const struct gr_directive *d)
{
    free_value(to, d);
    if (is_multi(d))
        *count_of(to, d) = *count_of(from, d);
    switch (d->kind) {
    case GR_VAL_INT:
        *(int *)field_of(to, d) = *(const int *)field_of(from, d);
        return 0;
    case GR_VAL_U64:
        *(uint64_t *)field_of(to, d) = *(const uint64_t *)field_of(from, d);
        return 0;
    case GR_VAL_TEXT: {
        const char *old = *(char *const *)field_of(from, d);
        char **text = field_of(to, d);
        *text = old != NULL ? strdup(old) : NULL;
        return old != NULL && *text == NULL ? -ENOMEM : 0;
    }
    case GR_VAL_TEXTS: {
        char *const *old = field_of(from, d);
        char **texts = field_of(to, d);
        for (size_t i = 0; i < *count_of(to, d); i++) {
            if ((texts[i] = strdup(old[i])) == NULL) {
                *count_of(to, d) = i;
                return -ENOMEM;
            }
        }
        return 0;
    }
    case GR_VAL_ADDRS:
        memcpy(field_of(to, d), field_of(from, d), *count_of(to, d) * sizeof(struct gr_addr));
        return 0;
    case GR_VAL_CIDRS:
        memcpy(field_of(to, d), field_of(from, d), *count_of(to, d) * sizeof(struct gr_cidr));
        return 0;
    }
    return 0;
}

int gr_config_keep_running(const struct gr_config *old, struct gr_config *fresh)
{
    /* Another mapping source than the running one: each of them keeps its running value,
     * so the running source goes on and the new one is not half set. */
    bool source_changed = false;
    for (size_t i = 0; i < GR_N_DIRECTIVES; i++) {
        const struct gr_directive *d = &directives[i];
        if ((d->flags & GR_DIR_SOURCE) && is_set(old, d) != is_set(fresh, d))
            source_changed = true;
    }
    for (size_t i = 0; i < GR_N_DIRECTIVES; i++) {
        const struct gr_directive *d = &directives[i];
        bool keep = (d->flags & GR_DIR_RESTART) || (source_changed && (d->flags & GR_DIR_SOURCE));
        if (!keep || same_value(old, fresh, d))
            continue;
        gr_warn("reload: %s changed: that takes a restart; %s", d->name,
                d->kind == GR_VAL_ADDRS ? "the bound sockets stay" : "the running value stays");
        if (copy_value(fresh, old, d) < 0)
            return -ENOMEM;
    }
    return 0;
}

void gr_config_free(struct gr_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->path);
    for (size_t i = 0; i < GR_N_DIRECTIVES; i++)
        free_value(cfg, &directives[i]);
    memset(cfg, 0, sizeof(*cfg));
}
