/*
 * test_config.c - the configuration file: values, defaults, path resolution, and the
 * exact "file:line: message" of each error. argv[1] is a scratch directory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "gpsrelay/config.h"
#include "gpsrelay/log.h"

static char scratch[PATH_MAX];
static char conf_path[PATH_MAX + 16];

/* The smallest config that validates; error tests change one thing in it. */
#define GOOD_BASE "listen_udp 127.0.0.1:7000\nlisten_ws 127.0.0.1:8080\nmapping_file m.csv\n"

/* Writes text to the scratch config file and returns its path. */
static const char *put(const char *text)
{
    FILE *f = fopen(conf_path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
    return conf_path;
}

/* text must fail to load with "<path>" followed by suffix, leaving nothing behind. */
static void check_error(const char *text, const char *suffix)
{
    struct gr_config cfg;
    char err[512], expect[PATH_MAX + 512];

    snprintf(expect, sizeof(expect), "%s%s", conf_path, suffix);
    int rc = gr_config_load(put(text), &cfg, err, sizeof(err));
    CHECK_INT(rc, -EINVAL);
    if (rc == 0) {
        gr_config_free(&cfg);
        return;
    }
    CHECK_STR(err, expect);
    CHECK(cfg.path == NULL && cfg.mapping_file == NULL && cfg.n_listen_udp == 0);
}

static void test_good(void)
{
    struct gr_config cfg;
    char err[512], expect[PATH_MAX + 64];
    const char *path = put("# gpsrelay test config\r\n"
                           "\n"
                           "   \t\n"
                           "listen_udp 127.0.0.1:7000\n"
                           "listen_udp [::1]:0    # any free port\n"
                           "listen_ws \"127.0.0.1:8080\"\r\n"
                           "\tlisten_ws\t[::1]:65535#no space before the comment\n"
                           "mapping_file \"maps/my \\\"best\\\" map #1\\\\.csv\"\n"
                           "auth none\n"
                           "log_level \"warning\"\n"
                           "max_future_skew 86400\n"
                           "listen_tcp 127.0.0.1:7001\n"
                           "max_speed 90\n"
                           "merge_window 250\n");

    CHECK_INT(gr_config_load(path, &cfg, err, sizeof(err)), 0);
    CHECK_STR(cfg.path, path);

    CHECK_INT(cfg.n_listen_udp, 2);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg.listen_udp[0].sa;
    CHECK_INT(sin->sin_family, AF_INET);
    CHECK_INT(sin->sin_port, htons(7000));
    CHECK_INT(sin->sin_addr.s_addr, htonl(0x7f000001));
    CHECK_STR(cfg.listen_udp[0].host, "127.0.0.1");
    CHECK_INT(cfg.listen_udp[0].port, 7000);
    CHECK_STR(cfg.listen_udp[0].text, "127.0.0.1:7000");
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&cfg.listen_udp[1].sa;
    CHECK_INT(sin6->sin6_family, AF_INET6);
    CHECK_INT(sin6->sin6_port, 0);
    CHECK(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    CHECK_STR(cfg.listen_udp[1].host, "::1");
    CHECK_INT(cfg.listen_udp[1].port, 0);
    CHECK_STR(cfg.listen_udp[1].text, "[::1]:0");

    CHECK_INT(cfg.n_listen_ws, 2);
    CHECK_STR(cfg.listen_ws[0].text, "127.0.0.1:8080");
    CHECK_INT(cfg.listen_ws[1].port, 65535);
    sin6 = (const struct sockaddr_in6 *)&cfg.listen_ws[1].sa;
    CHECK_INT(sin6->sin6_port, htons(65535));

    snprintf(expect, sizeof(expect), "%s/maps/my \"best\" map #1\\.csv", scratch);
    CHECK_STR(cfg.mapping_file, expect);
    CHECK_INT(cfg.auth, GR_AUTH_NONE);
    CHECK_INT(cfg.log_level, LOG_WARNING);
    CHECK_INT(cfg.max_future_skew, 86400);
    CHECK_INT(cfg.max_speed, 90);
    CHECK_INT(cfg.merge_window, 250);
    CHECK_INT(cfg.n_listen_tcp, 1);
    CHECK_INT(cfg.listen_tcp[0].port, 7001);

    gr_config_free(&cfg);
    CHECK(cfg.path == NULL && cfg.mapping_file == NULL && cfg.n_listen_ws == 0);
    gr_config_free(&cfg); /* safe on a zeroed struct */
}

static void test_defaults(void)
{
    struct gr_config cfg;
    char err[512];

    CHECK_INT(gr_config_load(put(GOOD_BASE "auth none\n"), &cfg, err, sizeof(err)), 0);
    CHECK_INT(cfg.log_level, LOG_INFO);
    CHECK_INT(cfg.max_future_skew, 300);
    CHECK_INT(cfg.max_speed, 150);
    CHECK_INT(cfg.n_listen_tcp, 0);
    CHECK_INT(cfg.tcp_idle_timeout, 300);
    CHECK_INT(cfg.stale_after, 120);
    CHECK_INT(cfg.slow_timeout, 30);
    CHECK_INT(cfg.idle_timeout, 60);
    CHECK_INT(cfg.ingest_rate_limit, 50);
    CHECK_INT(cfg.merge_window, 100);
    CHECK_INT(cfg.max_connections_per_source, 512);
    CHECK_INT(cfg.n_allowed_origin, 0);
    CHECK(gr_config_origin_ok(&cfg, "https://anything.example"));
    gr_config_free(&cfg);

    /* merge_window 0: publish per payload, as before merging across payloads. */
    CHECK_INT(gr_config_load(put(GOOD_BASE "auth none\nmerge_window 0\n"), &cfg, err, sizeof(err)),
              0);
    CHECK_INT(cfg.merge_window, 0);
    gr_config_free(&cfg);

    /* auth defaults to jwt, which needs a key. */
    check_error(GOOD_BASE, ": auth jwt needs auth_secret_file (a key of at least 32 bytes)");
}

static void test_security_directives(void)
{
    struct gr_config cfg;
    char err[512];

    CHECK_INT(gr_config_load(put(GOOD_BASE "auth jwt\nauth_secret_file keys/hs256\n"
                                           "allowed_origin https://cad.county.example\n"
                                           "allowed_origin http://127.0.0.1:8080\n"
                                           "ingest_allow 10.20.0.0/16\ningest_allow 2001:db8::/32\n"
                                           "ingest_rate_limit 5\nmax_connections_per_source 3\n"
                                           "tls_cert c.pem\ntls_key k.pem\n"
                                           "listen_ws 0.0.0.0:8443\n"),
                             &cfg, err, sizeof(err)),
              0);
    CHECK_INT(cfg.auth, GR_AUTH_JWT);
    CHECK(strstr(cfg.auth_secret_file, "/keys/hs256") != NULL);
    CHECK_INT(cfg.n_allowed_origin, 2);
    CHECK(gr_config_origin_ok(&cfg, "https://cad.county.example"));
    CHECK(gr_config_origin_ok(&cfg, NULL)); /* no Origin header: not a browser */
    CHECK(!gr_config_origin_ok(&cfg, "https://cad.county.example.evil"));
    CHECK(!gr_config_origin_ok(&cfg, "http://cad.county.example"));
    CHECK_INT(cfg.n_ingest_allow, 2);
    CHECK_INT(cfg.ingest_allow[0].prefix, 16);
    CHECK_INT(cfg.ingest_rate_limit, 5);
    CHECK_INT(cfg.max_connections_per_source, 3);
    CHECK(cfg.tls_cert != NULL && cfg.tls_key != NULL);
    gr_config_free(&cfg);

    check_error(GOOD_BASE "auth none\ntls_cert c.pem\n",
                ": tls_cert and tls_key go together: set both or neither");
    check_error(GOOD_BASE "auth none\nallowed_origin cad.example\n",
                ":5: bad value \"cad.example\" for allowed_origin: expected scheme://host[:port], "
                "as a browser sends it");
    check_error(GOOD_BASE "auth none\nallowed_origin https://cad.example/\n",
                ":5: bad value \"https://cad.example/\" for allowed_origin: expected "
                "scheme://host[:port], as a browser sends it");
    check_error(GOOD_BASE "auth none\ningest_allow 10.0.0.1/8\n",
                ":5: bad value \"10.0.0.1/8\" for ingest_allow: expected an address or "
                "ADDR/PREFIX with no host bits set, as in 10.20.0.0/16");
    check_error(GOOD_BASE "auth none\ningest_rate_limit 0\n",
                ":5: bad value \"0\" for ingest_rate_limit: expected a whole number from 1 to "
                "1000000");
}

static void test_mapping_path(void)
{
    struct gr_config cfg;
    char err[512], expect[PATH_MAX + 64], cwd[PATH_MAX];

    CHECK_INT(gr_config_load(put(GOOD_BASE "auth none\n"), &cfg, err, sizeof(err)), 0);
    snprintf(expect, sizeof(expect), "%s/m.csv", scratch);
    CHECK_STR(cfg.mapping_file, expect);
    gr_config_free(&cfg);

    const char *abs = "listen_udp 127.0.0.1:7000\nlisten_ws 127.0.0.1:8080\n"
                      "mapping_file /srv/gpsrelay/m.csv\nauth none\n";
    CHECK_INT(gr_config_load(put(abs), &cfg, err, sizeof(err)), 0);
    CHECK_STR(cfg.mapping_file, "/srv/gpsrelay/m.csv");
    gr_config_free(&cfg);

    /* A config named without a folder is in the working directory, and so is its map. */
    CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
    CHECK_INT(chdir(scratch), 0);
    CHECK_INT(gr_config_load("t.conf", &cfg, err, sizeof(err)), 0);
    CHECK_STR(cfg.mapping_file, "/srv/gpsrelay/m.csv");
    gr_config_free(&cfg);
    put(GOOD_BASE "auth none\n");
    CHECK_INT(gr_config_load("t.conf", &cfg, err, sizeof(err)), 0);
    CHECK_STR(cfg.mapping_file, "m.csv");
    gr_config_free(&cfg);
    CHECK_INT(chdir(cwd), 0);
}

static void test_syntax_errors(void)
{
    char text[8192];

    check_error(GOOD_BASE "auth none\n\nfoo bar\n", ":6: unknown directive \"foo\"");
    check_error("# x\nauth\n", ":2: directive \"auth\" takes one value, not 0");
    check_error("auth none jwt\n", ":1: directive \"auth\" takes one value, not 2");
    check_error("log_level \"info\" # \"x\"\n  # c\nauth none\r\nlog_level debug\n",
                ":4: duplicate directive \"log_level\" (first on line 1)");
    check_error("auth none\nmapping_file \"a b.csv\n", ":2: unterminated quote");
    check_error("mapping_file \"a\\\"\n", ":1: unterminated quote");
    check_error("mapping_file \"a\"b\n", ":1: text right after a closing quote");
    check_error("mapping_file a\"b\"\n", ":1: quote inside a word; quote the whole value");

    /* 4096 bytes is the longest line: a comment that long is fine, one byte more is not. */
    struct gr_config cfg;
    char err[512];
    memset(text, 'x', 4096);
    memcpy(text, "# ", 2);
    strcpy(text + 4096, "\n" GOOD_BASE "auth none\n");
    CHECK_INT(gr_config_load(put(text), &cfg, err, sizeof(err)), 0);
    gr_config_free(&cfg);
    strcpy(text, "auth none\n# ");
    memset(text + 12, 'x', 4097 - 2);
    strcpy(text + 10 + 4097, "\n");
    check_error(text, ":2: line longer than 4096 bytes");

    /* More than GR_LISTEN_MAX of one kind; the other kind has its own count. */
    text[0] = '\0';
    for (int i = 0; i < GR_LISTEN_MAX; i++) {
        snprintf(text + strlen(text), sizeof(text) - strlen(text),
                 "listen_udp 127.0.0.1:%d\nlisten_ws 127.0.0.1:%d\n", 7000 + i, 8000 + i);
    }
    strcat(text, "listen_udp 127.0.0.1:7999\n");
    check_error(text, ":33: more than 16 listen_udp directives");
}

static void test_value_errors(void)
{
    check_error("auth maybe\n", ":1: bad value \"maybe\" for auth: expected jwt or none");
    check_error("\nlog_level loud\n", ":2: bad value \"loud\" for log_level: expected debug, "
                                      "info, notice, warning or error");
    check_error("mapping_file \"\"\n", ":1: bad value \"\" for mapping_file: empty path");

    check_error("max_speed 0\n", ":1: bad value \"0\" for max_speed: expected whole metres per "
                                 "second from 1 to 100000");
    check_error("max_speed fast\n", ":1: bad value \"fast\" for max_speed: expected whole "
                                    "metres per second from 1 to 100000");

    check_error("merge_window 1001\n", ":1: bad value \"1001\" for merge_window: expected whole "
                                       "milliseconds from 0 to 1000");
    check_error("merge_window 0.1\n", ":1: bad value \"0.1\" for merge_window: expected whole "
                                      "milliseconds from 0 to 1000");

    static const char *const bad_seconds[] = {"-1", "86401", "1.5", "", "+5", "5s", " 5"};
    for (size_t i = 0; i < sizeof(bad_seconds) / sizeof(bad_seconds[0]); i++) {
        char text[64], suffix[128];
        snprintf(text, sizeof(text), "max_future_skew \"%s\"\n", bad_seconds[i]);
        snprintf(suffix, sizeof(suffix),
                 ":1: bad value \"%s\" for max_future_skew: expected whole seconds from 0 to "
                 "86400",
                 bad_seconds[i]);
        check_error(text, suffix);
    }

    check_error("listen_udp localhost:7000\n", ":1: bad value \"localhost:7000\" for "
                                               "listen_udp: addresses must be numeric (no DNS "
                                               "at start)");
    check_error("listen_ws [localhost]:7000\n", ":1: bad value \"[localhost]:7000\" for "
                                                "listen_ws: addresses must be numeric (no DNS "
                                                "at start)");
    check_error("listen_udp 127.0.0.1:65536\n", ":1: bad value \"127.0.0.1:65536\" for "
                                                "listen_udp: the port must be a number from 0 "
                                                "to 65535");
    check_error("listen_udp 127.0.0.1:\n", ":1: bad value \"127.0.0.1:\" for listen_udp: the "
                                           "port must be a number from 0 to 65535");
    check_error("listen_udp 127.0.0.1\n", ":1: bad value \"127.0.0.1\" for listen_udp: "
                                          "expected \"ADDR:PORT\"");
    check_error("listen_udp ::1:7000\n", ":1: bad value \"::1:7000\" for listen_udp: an IPv6 "
                                         "address needs brackets, as in \"[::1]:7000\"");
    check_error("listen_udp [::1]7000\n", ":1: bad value \"[::1]7000\" for listen_udp: "
                                          "expected \"[IPv6]:PORT\"");
    check_error("listen_udp [127.0.0.1]:7000\n", ":1: bad value \"[127.0.0.1]:7000\" for "
                                                 "listen_udp: addresses must be numeric (no "
                                                 "DNS at start)");
}

static void test_validation_errors(void)
{
    struct gr_config cfg;
    char err[512];

    check_error("listen_udp 127.0.0.1:7000\nmapping_file m.csv\nauth none\n",
                ": no listen_ws: consoles need at least one");
    check_error("listen_ws 127.0.0.1:8080\nmapping_file m.csv\nauth none\n",
                ": no listen_udp, listen_tcp or listen_http_ingest: ingest needs at least one");
    check_error("listen_udp 127.0.0.1:7000\nlisten_ws 127.0.0.1:8080\nauth none\n",
                ": no mapping source: set mapping_file (CSV) or postgres");
    check_error(GOOD_BASE "auth none\nlisten_ws [::1]:8081\nlisten_ws 0.0.0.0:8082\n",
                ": auth none is only allowed when every listen_ws address is loopback "
                "(127.0.0.0/8 or ::1); \"0.0.0.0:8082\" is not");
    check_error("auth none\nmapping_file m.csv\nlisten_udp 0.0.0.0:7000\nlisten_ws [::]:8080\n",
                ": auth none is only allowed when every listen_ws address is loopback "
                "(127.0.0.0/8 or ::1); \"[::]:8080\" is not");

    /* Only listen_ws matters to auth none; any 127/8 address is loopback. */
    CHECK_INT(gr_config_load(put("auth none\nmapping_file m.csv\nlisten_udp 0.0.0.0:7000\n"
                                 "listen_ws 127.1.2.3:8080\n"),
                             &cfg, err, sizeof(err)),
              0);
    CHECK_INT(cfg.auth, GR_AUTH_NONE);
    gr_config_free(&cfg);

    char missing[PATH_MAX + 32], expect[PATH_MAX + 96];
    snprintf(missing, sizeof(missing), "%s/missing.conf", scratch);
    snprintf(expect, sizeof(expect), "%s: cannot open: No such file or directory", missing);
    CHECK_INT(gr_config_load(missing, &cfg, err, sizeof(err)), -ENOENT);
    CHECK_STR(err, expect);
    CHECK(cfg.path == NULL);

    /* A short err buffer gets a cut message, never an overflow. */
    char tiny[8];
    CHECK_INT(gr_config_load(put("foo\n"), &cfg, tiny, sizeof(tiny)), -EINVAL);
    CHECK_INT(strlen(tiny), sizeof(tiny) - 1);
}

#define PG_BASE "listen_udp 127.0.0.1:7000\nlisten_ws 127.0.0.1:8080\nauth none\n"

/* postgres and mapping_cache: one mapping source, and no connection string that would make
 * libpq look a name up on the loop. */
static void test_postgres_directives(void)
{
    struct gr_config cfg;
    char err[512];

    CHECK_INT(gr_config_load(put(PG_BASE "postgres \"host=127.0.0.1 port=5432 dbname=gpsrelay "
                                         "user=relay password='a b'\"\n"
                                         "mapping_cache /var/lib/gpsrelay/mapping.csv\n"),
                             &cfg, err, sizeof(err)),
              0);
    CHECK_STR(cfg.postgres, "host=127.0.0.1 port=5432 dbname=gpsrelay user=relay password='a b'");
    CHECK_STR(cfg.mapping_cache, "/var/lib/gpsrelay/mapping.csv");
    CHECK(cfg.mapping_file == NULL);
    gr_config_free(&cfg);

    /* Socket directories, IPv6, URIs, host lists of literals, and names next to hostaddr. */
    static const char *const good[] = {
        "postgres \"host=/var/run/postgresql dbname=gpsrelay\"\n",
        "postgres \"host=::1,127.0.0.1 dbname=gpsrelay\"\n",
        "postgres \"dbname=gpsrelay\"\n",
        "postgres postgresql://127.0.0.1:5432/gpsrelay\n",
        "postgres \"host=db.county.example hostaddr=10.0.0.5 dbname=gpsrelay\"\n",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), PG_BASE "%s", good[i]);
        CHECK_INT(gr_config_load(put(text), &cfg, err, sizeof(err)), 0);
        gr_config_free(&cfg);
    }

    check_error(PG_BASE "postgres \"host=db.county.example dbname=gpsrelay\"\n",
                ":4: postgres: host \"db.county.example\" is a name, and libpq would look it "
                "up with a blocking call on the event loop; give hostaddr=ADDRESS as well (or "
                "a numeric host, or a socket directory)");
    check_error(PG_BASE "postgres \"host=127.0.0.1,db dbname=x\"\n",
                ":4: postgres: host \"db\" is a name, and libpq would look it up with a blocking "
                "call on the event loop; give hostaddr=ADDRESS as well (or a numeric host, or a "
                "socket directory)");
    check_error(PG_BASE "postgres \"hots=127.0.0.1\"\n",
                ":4: bad value for postgres: invalid connection option \"hots\"");
    check_error(PG_BASE "postgres \"host=127.0.0.1\"\nmapping_file m.csv\n",
                ": mapping_file and postgres are two mapping sources: set one");
    check_error(GOOD_BASE "auth none\nmapping_cache c.csv\n",
                ": mapping_cache keeps the last mapping read from postgres: set postgres");
}

/* The file itself is refused, at once, with its path: what is not a regular file (a FIFO
 * with no writer would hold the reader forever) and what is over GR_CONFIG_FILE_MAX. */
static void test_file_refusals(void)
{
    struct gr_config cfg;
    char path[PATH_MAX + 32], err[512], expect[PATH_MAX + 512];

    snprintf(path, sizeof(path), "%s/fifo.conf", scratch);
    CHECK_INT(mkfifo(path, 0600), 0);
    CHECK_INT(gr_config_load(path, &cfg, err, sizeof(err)), -EINVAL);
    snprintf(expect, sizeof(expect), "%s: is not a regular file (a FIFO)", path);
    CHECK_STR(err, expect);
    CHECK(cfg.path == NULL);
    unlink(path);

    CHECK_INT(gr_config_load(scratch, &cfg, err, sizeof(err)), -EINVAL);
    snprintf(expect, sizeof(expect), "%s: is not a regular file (a directory)", scratch);
    CHECK_STR(err, expect);

    CHECK_INT(gr_config_load("/dev/null", &cfg, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "/dev/null: is not a regular file (a character device)");

    /* A sparse file: its size is what counts, and nothing of it is read. Exactly at the
     * bound it is read (and refused for its content: NUL bytes), one byte over it is not. */
    put(GOOD_BASE "auth none\n");
    CHECK_INT(truncate(conf_path, GR_CONFIG_FILE_MAX), 0);
    CHECK_INT(gr_config_load(conf_path, &cfg, err, sizeof(err)), -EINVAL);
    snprintf(expect, sizeof(expect), "%s:5: NUL byte in line", conf_path);
    CHECK_STR(err, expect);
    CHECK_INT(truncate(conf_path, GR_CONFIG_FILE_MAX + 1), 0);
    CHECK_INT(gr_config_load(conf_path, &cfg, err, sizeof(err)), -EFBIG);
    snprintf(expect, sizeof(expect), "%s: is %u bytes, more than the limit of %u", conf_path,
             GR_CONFIG_FILE_MAX + 1, GR_CONFIG_FILE_MAX);
    CHECK_STR(err, expect);
    CHECK(cfg.path == NULL);

    snprintf(path, sizeof(path), "%s/missing.conf", scratch);
    CHECK_INT(gr_config_load(path, &cfg, err, sizeof(err)), -ENOENT);
    snprintf(expect, sizeof(expect), "%s: cannot open: No such file or directory", path);
    CHECK_STR(err, expect);
}

/* Loads text into *cfg, which must validate. */
static void load(const char *text, struct gr_config *cfg)
{
    char err[512];
    CHECK_INT(gr_config_load(put(text), cfg, err, sizeof(err)), 0);
}

/* A reload keeps what takes a restart and takes the rest; one mapping source throughout. */
static void test_keep_running(void)
{
    struct gr_config old, fresh;
    char expect[PATH_MAX + 64];

    load("listen_udp 127.0.0.1:7000\nlisten_ws 127.0.0.1:8080\nmapping_file a.csv\n"
         "auth none\nallowed_origin https://a.example\nlog_level info\n",
         &old);
    load("listen_udp 127.0.0.1:7000\nlisten_ws 127.0.0.1:8081\nmapping_file b.csv\n"
         "auth none\nallowed_origin https://b.example\nallowed_origin https://c.example\n"
         "log_level debug\ntls_cert c.pem\ntls_key k.pem\n",
         &fresh);
    CHECK_INT(gr_config_keep_running(&old, &fresh), 0);
    CHECK_INT(fresh.n_listen_ws, 1);
    CHECK_STR(fresh.listen_ws[0].text, "127.0.0.1:8080"); /* bound at start */
    CHECK(fresh.tls_cert == NULL && fresh.tls_key == NULL);
    snprintf(expect, sizeof(expect), "%s/b.csv", scratch); /* a CSV file may move */
    CHECK_STR(fresh.mapping_file, expect);
    CHECK_INT(fresh.log_level, LOG_DEBUG);
    CHECK_INT(fresh.n_allowed_origin, 2);
    CHECK_STR(fresh.allowed_origin[1], "https://c.example");
    gr_config_free(&fresh);

    /* CSV to PostgreSQL is another source: the CSV file stays, nothing of PostgreSQL's. */
    load(PG_BASE "postgres \"host=127.0.0.1\"\nmapping_cache c.csv\n", &fresh);
    CHECK_INT(gr_config_keep_running(&old, &fresh), 0);
    CHECK(fresh.postgres == NULL && fresh.mapping_cache == NULL);
    snprintf(expect, sizeof(expect), "%s/a.csv", scratch);
    CHECK_STR(fresh.mapping_file, expect);
    gr_config_free(&fresh);
    gr_config_free(&old);

    /* PostgreSQL to CSV, and another connection string: PostgreSQL stays as it was. */
    load(PG_BASE "postgres \"host=127.0.0.1\"\n", &old);
    load(GOOD_BASE "auth none\n", &fresh);
    CHECK_INT(gr_config_keep_running(&old, &fresh), 0);
    CHECK(fresh.mapping_file == NULL);
    CHECK_STR(fresh.postgres, "host=127.0.0.1");
    gr_config_free(&fresh);
    load(PG_BASE "postgres \"host=127.0.0.2\"\n", &fresh);
    CHECK_INT(gr_config_keep_running(&old, &fresh), 0);
    CHECK_STR(fresh.postgres, "host=127.0.0.1");
    gr_config_free(&fresh);
    gr_config_free(&old);
}

int main(int argc, char **argv)
{
    snprintf(scratch, sizeof(scratch), "%s/test_config.XXXXXX", argc > 1 ? argv[1] : "/tmp");
    if (mkdtemp(scratch) == NULL) {
        perror(scratch);
        return 1;
    }
    snprintf(conf_path, sizeof(conf_path), "%s/t.conf", scratch);

    test_good();
    test_defaults();
    test_mapping_path();
    test_security_directives();
    test_syntax_errors();
    test_value_errors();
    test_validation_errors();
    test_postgres_directives();
    test_file_refusals();
    test_keep_running();

    unlink(conf_path);
    rmdir(scratch);
    return check_result("test_config");
}
