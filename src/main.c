/*
 * main.c - command line (docs/configuration.md): parse, check or run.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "gpsrelay/archive.h"
#include "gpsrelay/cluster.h"
#include "gpsrelay/config.h"
#include "gpsrelay/daemon.h"
#include "gpsrelay/log.h"
#include "gpsrelay/mapping_source.h"
#include "gpsrelay/token.h"

#define DEFAULT_CONFIG "/etc/gpsrelay/gpsrelay.conf"

static void usage(FILE *f)
{
    fprintf(f, "usage: gpsrelayd [-c FILE] [-l LEVEL]   run in the foreground\n"
               "       gpsrelayd -t [-c FILE]           check the configuration and exit\n"
               "       gpsrelayd --version | --help\n"
               "\n"
               "  -c, --config FILE   configuration file (default " DEFAULT_CONFIG ")\n"
               "  -l, --log-level L   debug, info, notice, warning or error;\n"
               "                      overrides log_level in the file\n"
               "  -t, --test          check the configuration and the mapping it names\n");
}

/* -t: everything a start would read, without binding anything. */
static int check_only(const struct gr_config *cfg)
{
    char err[512];
    const struct gr_mapping_source_ops *source = gr_mapping_source_for(cfg);
    /* Bounded in time: a database that does not answer is an error, not a hang. */
    int devices = source->check(cfg, err, sizeof(err));
    if (devices < 0) {
        fprintf(stderr, "gpsrelayd: %s\n", err);
        /* A wrong mapping is the configuration's fault; an unreachable source may not be. */
        return devices == -EINVAL ? GR_EXIT_CONFIG : GR_EXIT_FAILURE;
    }
    if (cfg->auth == GR_AUTH_JWT) {
        unsigned char *key;
        size_t key_len;
        if (gr_token_load_secret(cfg->auth_secret_file, &key, &key_len, err, sizeof(err)) < 0) {
            fprintf(stderr, "gpsrelayd: %s\n", err);
            return GR_EXIT_CONFIG;
        }
        free(key);
    }
    /* Bounded too: each server is given the connect timeout, each request its wait. */
    if (cfg->n_cluster_nats > 0 && gr_cluster_check(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "gpsrelayd: cluster: %s\n", err);
        return GR_EXIT_FAILURE;
    }
    if (cfg->archive_postgres != NULL && gr_archive_check(cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "gpsrelayd: %s\n", err);
        return GR_EXIT_FAILURE;
    }
    printf("gpsrelayd: configuration %s is ok (%d devices in %s%s%s)\n", cfg->path, devices,
           source->where(cfg), cfg->n_cluster_nats > 0 ? "; cluster stream usable" : "",
           cfg->archive_postgres != NULL ? "; archive schema in place" : "");
    return GR_EXIT_OK;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'}, {"log-level", required_argument, NULL, 'l'},
        {"test", no_argument, NULL, 't'},         {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *path = DEFAULT_CONFIG;
    int level = -1;
    int test = 0;

    int opt;
    while ((opt = getopt_long(argc, argv, "c:l:t", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'l':
            level = gr_log_level_parse(optarg);
            if (level < 0) {
                fprintf(stderr, "gpsrelayd: unknown log level \"%s\"\n", optarg);
                return GR_EXIT_USAGE;
            }
            break;
        case 't':
            test = 1;
            break;
        case 'V':
            printf("gpsrelayd %s\n", GR_VERSION);
            return GR_EXIT_OK;
        case 'h':
            usage(stdout);
            return GR_EXIT_OK;
        default:
            usage(stderr);
            return GR_EXIT_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return GR_EXIT_USAGE;
    }

    gr_log_init();
    struct gr_config cfg;
    char err[512];
    if (gr_config_load(path, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "gpsrelayd: %s\n", err);
        return GR_EXIT_CONFIG;
    }
    if (test) {
        int status = check_only(&cfg);
        gr_config_free(&cfg);
        return status;
    }
    gr_log_set_level(level >= 0 ? level : cfg.log_level);

    /* Every console and modem is a descriptor; nothing here uses select(), so take all
     * the hard limit allows (systemd's LimitNOFILE= sets it). */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }

    /* Writes to a console that vanished must fail with EPIPE, not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);
    int status = gr_daemon_run(&cfg, level >= 0);
    gr_config_free(&cfg);
    return status;
}
