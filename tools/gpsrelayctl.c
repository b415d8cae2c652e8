/*
 * gpsrelayctl.c - operator tool (docs/configuration.md): mints console tokens with the daemon's
 * own secret file.
 *
 *   gpsrelayctl token --secret-file F --agency ID [--agency ID ...] [--ttl SECONDS]
 *                     [--sub NAME]
 *
 * The token goes to stdout and nowhere else: it is a bearer credential for police and EMS
 * positions, so nothing here echoes it to stderr or a log.
 */
#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpsrelay/daemon.h"
#include "gpsrelay/token.h"

/* An hour: a console shift re-authenticates often enough that a leaked token ages out. */
#define GR_CTL_TTL_DEFAULT 3600
/* A leap year: the longest lived token anyone should mint (a kiosk console, renewed
 * yearly). Longer is almost certainly a typo for a shorter unit. */
#define GR_CTL_TTL_MAX (366 * 86400)

static void usage(FILE *f)
{
    fprintf(f,
            "usage: gpsrelayctl token --secret-file FILE --agency ID [--agency ID ...]\n"
            "                         [--ttl SECONDS] [--sub NAME]\n"
            "       gpsrelayctl --version | --help\n"
            "\n"
            "token: print a signed console token (JWT HS256) on stdout.\n"
            "  --secret-file FILE  the daemon's auth_secret_file (a regular file, at least %d\n"
            "                      bytes, not readable or writable by others)\n"
            "  --agency ID         an agency whose units the console may see; repeatable, up\n"
            "                      to %d; letters, digits, '-', '_' and '.'\n"
            "  --ttl SECONDS       lifetime, 1 to %d (366 days); default %d (one hour)\n"
            "  --sub NAME          console or user name, written to the daemon's logs;\n"
            "                      printable ASCII, at most %d characters\n"
            "\n"
            "exit status: 0 ok, 64 usage error, 78 secret file refused, 1 other failure\n",
            GR_TOKEN_SECRET_MIN, GR_TOKEN_AGENCIES_MAX, GR_CTL_TTL_MAX, GR_CTL_TTL_DEFAULT,
            GR_TOKEN_SUB_MAX);
}

/* After a specific message: one line, so the message is not lost above the usage text. */
static int usage_hint(void)
{
    fprintf(stderr, "gpsrelayctl: run 'gpsrelayctl --help' for usage\n");
    return GR_EXIT_USAGE;
}

/* Whole decimal seconds only: "1h", "3600s", " 60", "+60" and "0x10" are refused. */
static int parse_ttl(const char *s, int64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > GR_CTL_TTL_MAX)
        return -1;
    *out = v;
    return 0;
}

/* The daemon would turn anything else into '?' in its logs; refuse it here instead. */
static int valid_sub(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > GR_TOKEN_SUB_MAX)
        return 0;
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    }
    return 1;
}

static int cmd_token(int argc, char **argv)
{
    static const struct option options[] = {
        {"secret-file", required_argument, NULL, 'f'},
        {"agency", required_argument, NULL, 'a'},
        {"ttl", required_argument, NULL, 't'},
        {"sub", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *agencies[GR_TOKEN_AGENCIES_MAX];
    size_t n_agencies = 0;
    const char *secret_file = NULL, *sub = NULL;
    int64_t ttl = GR_CTL_TTL_DEFAULT;
    int opt;

    /* argv[1] is "token": options start after it, and getopt's messages still say
     * "gpsrelayctl: ..." because argv[0] is untouched. */
    optind = 2;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (opt) {
        case 'f':
            secret_file = optarg;
            break;
        case 'a': {
            if (!gr_token_agency_id_valid(optarg, strlen(optarg))) {
                fprintf(stderr,
                        "gpsrelayctl: bad agency id \"%s\": expected 1 to %d letters, digits "
                        "or - _ .\n",
                        optarg, GR_AGENCY_ID_MAX);
                return GR_EXIT_USAGE;
            }
            /* The same agency twice is harmless (the daemon de-duplicates): keep the token
             * short and the limit about distinct agencies. */
            size_t i = 0;
            while (i < n_agencies && strcmp(agencies[i], optarg) != 0)
                i++;
            if (i < n_agencies)
                break;
            if (n_agencies == GR_TOKEN_AGENCIES_MAX) {
                fprintf(stderr, "gpsrelayctl: more than %d agencies\n", GR_TOKEN_AGENCIES_MAX);
                return GR_EXIT_USAGE;
            }
            agencies[n_agencies++] = optarg;
            break;
        }
        case 't':
            if (parse_ttl(optarg, &ttl) < 0) {
                fprintf(stderr, "gpsrelayctl: bad --ttl \"%s\": expected whole seconds, 1 to %d\n",
                        optarg, GR_CTL_TTL_MAX);
                return GR_EXIT_USAGE;
            }
            break;
        case 's':
            if (!valid_sub(optarg)) {
                fprintf(stderr,
                        "gpsrelayctl: bad --sub: expected 1 to %d printable ASCII characters\n",
                        GR_TOKEN_SUB_MAX);
                return GR_EXIT_USAGE;
            }
            sub = optarg;
            break;
        case 'h':
            usage(stdout);
            return GR_EXIT_OK;
        default: /* getopt_long has said what was wrong */
            return usage_hint();
        }
    }
    if (optind != argc) {
        fprintf(stderr, "gpsrelayctl: unexpected argument \"%s\"\n", argv[optind]);
        return usage_hint();
    }
    if (secret_file == NULL || n_agencies == 0) {
        fprintf(stderr, "gpsrelayctl: token needs --secret-file and at least one --agency\n");
        return usage_hint();
    }

    unsigned char *key;
    size_t key_len;
    char err[1024];
    if (gr_token_load_secret(secret_file, &key, &key_len, err, sizeof(err)) < 0) {
        fprintf(stderr, "gpsrelayctl: %s\n", err);
        return GR_EXIT_CONFIG;
    }

    int64_t now = (int64_t)time(NULL);
    char *token = gr_token_mint(key, key_len, agencies, n_agencies, sub, now, now + ttl);
    OPENSSL_cleanse(key, key_len);
    free(key);
    if (token == NULL) {
        /* Every input was checked above, so the only way left is a token over the size the
         * daemon accepts (many long agency ids) or memory. */
        fprintf(stderr,
                "gpsrelayctl: cannot mint the token: it would be longer than the %d bytes "
                "the daemon accepts (fewer or shorter agency ids)\n",
                GR_TOKEN_MAX);
        return GR_EXIT_FAILURE;
    }
    int status = GR_EXIT_OK;
    if (printf("%s\n", token) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "gpsrelayctl: cannot write the token: %s\n", strerror(errno));
        status = GR_EXIT_FAILURE;
    }
    OPENSSL_cleanse(token, strlen(token));
    free(token);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };

    if (argc >= 2 && strcmp(argv[1], "token") == 0)
        return cmd_token(argc, argv);

    /* "+": stop at the first non-option, so "gpsrelayctl frob" is an unknown command. */
    int opt;
    while ((opt = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
        switch (opt) {
        case 'V':
            printf("gpsrelayctl %s\n", GR_VERSION);
            return GR_EXIT_OK;
        case 'h':
            usage(stdout);
            return GR_EXIT_OK;
        default:
            return usage_hint();
        }
    }
    if (optind < argc) {
        fprintf(stderr, "gpsrelayctl: unknown command \"%s\"\n", argv[optind]);
        return usage_hint();
    }
    usage(stderr); /* no command at all: the whole text is the useful answer */
    return GR_EXIT_USAGE;
}
