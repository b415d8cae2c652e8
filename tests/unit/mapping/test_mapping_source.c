/*
 * test_mapping_source.c - the mapping sources behind mapping_source.h: which one a
 * configuration names, the CSV source's start (at once), reloads (on the thread pool, one
 * at a time, failures counted), stop with a read in flight, and the -t checks' exit
 * classes. argv[1] is a scratch directory.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "gpsrelay/config.h"
#include "gpsrelay/mapping_source.h"
#include "gpsrelay/stats.h"

#define HEADER "device_id,agency_id,label,source_addr\n"

static char scratch[PATH_MAX];
static char conf_path[PATH_MAX + 16];
static char csv_path[PATH_MAX + 16];

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

/* What the daemon would be given: every delivery, its device count, and whether the
 * source's start was still running (a mapping it had at once). */
struct sink {
    int delivered;
    size_t last_count;
    bool in_start;
    int during_start;
};

static int deliver(void *ctx, struct gr_mapping *m)
{
    struct sink *s = ctx;
    s->delivered++;
    s->during_start += s->in_start;
    s->last_count = gr_mapping_count(m);
    gr_mapping_free(m);
    return 0;
}

static void load_config(const char *text, struct gr_config *cfg)
{
    char err[512];
    put(conf_path, text);
    CHECK_INT(gr_config_load(conf_path, cfg, err, sizeof(err)), 0);
}

static void test_choice_and_check(void)
{
    struct gr_config cfg;
    char err[512], text[PATH_MAX + 256];

    put(csv_path, HEADER "D1,a,,\nD2,a,,\n");
    snprintf(text, sizeof(text),
             "listen_udp 127.0.0.1:0\nlisten_ws 127.0.0.1:0\nauth none\nmapping_file %s\n",
             csv_path);
    load_config(text, &cfg);
    const struct gr_mapping_source_ops *csv = gr_mapping_source_for(&cfg);
    CHECK(csv != NULL && csv->up == NULL);
    CHECK_STR(csv->where(&cfg), csv_path);
    CHECK_INT(csv->check(&cfg, err, sizeof(err)), 2);
    put(csv_path, HEADER "D1,a,,\nD1,a,,\n");
    CHECK_INT(csv->check(&cfg, err, sizeof(err)), -EINVAL); /* the mapping is wrong: exit 78 */
    CHECK(strstr(err, ":3: duplicate row") != NULL);
    gr_config_free(&cfg);

    /* Nothing listens on port 1: unreachable, which is not the configuration's fault. */
    load_config("listen_udp 127.0.0.1:0\nlisten_ws 127.0.0.1:0\nauth none\n"
                "postgres \"hostaddr=127.0.0.1 port=1 dbname=x user=x\"\n",
                &cfg);
    const struct gr_mapping_source_ops *pg = gr_mapping_source_for(&cfg);
    CHECK(pg != NULL && pg != csv && pg->up != NULL);
    CHECK_STR(pg->where(&cfg), "PostgreSQL");
    int rc = pg->check(&cfg, err, sizeof(err));
    CHECK(rc < 0 && rc != -EINVAL);
    CHECK(strncmp(err, "postgres: ", 10) == 0);
    gr_config_free(&cfg);
}

/* A stop's done callback: counts its calls. */
static void count_stop(void *arg)
{
    (*(int *)arg)++;
}

static void test_csv_source(void)
{
    struct gr_config cfg;
    char text[PATH_MAX + 256];
    uv_loop_t loop;
    struct sink sink = {0};
    struct gr_mapping_source_env env = {.loop = &loop, .deliver = deliver, .ctx = &sink};
    void *state = NULL;

    CHECK_INT(uv_loop_init(&loop), 0);
    snprintf(text, sizeof(text),
             "listen_udp 127.0.0.1:0\nlisten_ws 127.0.0.1:0\nauth none\nmapping_file %s\n",
             csv_path);
    load_config(text, &cfg);
    const struct gr_mapping_source_ops *src = gr_mapping_source_for(&cfg);

    /* A bad file refuses the start, with nothing delivered and nothing to stop. */
    put(csv_path, HEADER "D1,a,,\nD1,a,,\n");
    CHECK_INT(src->start(&env, &cfg, &state), -EINVAL);
    CHECK(state == NULL && sink.delivered == 0);

    /* A good one is delivered before start returns. */
    put(csv_path, HEADER "D1,a,,\nD2,a,,\n");
    sink.in_start = true;
    CHECK_INT(src->start(&env, &cfg, &state), 0);
    sink.in_start = false;
    CHECK(state != NULL);
    CHECK_INT(sink.during_start, 1);
    CHECK_INT(sink.last_count, 2);

    /* A reload reads on the thread pool: delivered from the loop. */
    put(csv_path, HEADER "D1,a,,\nD2,a,,\nD3,a,,\n");
    src->reload(state, &cfg);
    CHECK_INT(sink.delivered, 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(sink.delivered, 2);
    CHECK_INT(sink.last_count, 3);

    /* Two SIGHUPs at once: the second read waits for the first, and comes after it. */
    src->reload(state, &cfg);
    src->reload(state, &cfg);
    src->reload(state, &cfg); /* folded into the one waiting */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(sink.delivered, 4);

    /* A bad file on reload: counted, nothing delivered. */
    uint64_t failures = gr_stats.mapping_load_failures;
    put(csv_path, HEADER "D1,a,,\nD1,a,,\n");
    src->reload(state, &cfg);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(sink.delivered, 4);
    CHECK_INT(gr_stats.mapping_load_failures, failures + 1);

    /* Stopped with a read in flight: nothing is delivered; done comes once, later, after
     * the read is back or cancelled; a second stop is a no-op. */
    put(csv_path, HEADER "D1,a,,\n");
    src->reload(state, &cfg);
    src->reload(state, &cfg);
    int stops = 0;
    src->stop(state, count_stop, &stops);
    src->stop(state, count_stop, &stops);
    CHECK_INT(stops, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(stops, 1);
    CHECK_INT(sink.delivered, 4);
    src->free(state);

    CHECK_INT(uv_loop_close(&loop), 0);
    gr_config_free(&cfg);
}

int main(int argc, char **argv)
{
    snprintf(scratch, sizeof(scratch), "%s/test_mapping_source.XXXXXX",
             argc > 1 ? argv[1] : "/tmp");
    if (mkdtemp(scratch) == NULL) {
        perror(scratch);
        return 1;
    }
    snprintf(conf_path, sizeof(conf_path), "%s/t.conf", scratch);
    snprintf(csv_path, sizeof(csv_path), "%s/m.csv", scratch);

    test_choice_and_check();
    test_csv_source();

    unlink(conf_path);
    unlink(csv_path);
    rmdir(scratch);
    return check_result("test_mapping_source");
}
