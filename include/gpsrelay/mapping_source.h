/*
 * mapping_source.h - where the mapping comes from: one interface, one implementation per
 * source (docs/mapping.md).
 *
 * A source is chosen by the configuration (exactly one of its directives is set: config.c
 * checks that) and delivers every mapping it builds through one callback; the daemon
 * decides how a mapping goes in force, counts it and says when it is ready. Today's
 * sources: the CSV file of mapping_file (src/mapping/csv_source.c) and PostgreSQL
 * (src/mapping/pgmap.c, with mapping_cache for starts during an outage). A new source is
 * one file with its gr_mapping_source_ops, one directive row in config.c flagged
 * GR_DIR_SOURCE, and one line in the table of src/mapping/mapping_source.c.
 */
#ifndef GPSRELAY_MAPPING_SOURCE_H
#define GPSRELAY_MAPPING_SOURCE_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "gpsrelay/config.h"
#include "gpsrelay/mapping.h"
#include "gpsrelay/stop.h"

/* What a running source is given at start; the source keeps a copy. */
struct gr_mapping_source_env {
    uv_loop_t *loop; /* borrowed: the daemon's, outlives the source */
    /*
     * A new mapping for the daemon, which takes m in every case. Called from the loop;
     * from inside start() only for a mapping the source has at once (the CSV file), which
     * then goes in force before start() returns. Returns 0, or <0 when m could not be put
     * in force (logged): start() then fails with it; later deliveries ignore it.
     */
    int (*deliver)(void *ctx, struct gr_mapping *m);
    void *ctx;
};

struct gr_mapping_source_ops {
    /* Whether cfg (borrowed) names this source. */
    bool (*configured)(const struct gr_config *cfg);

    /* Where the mapping comes from, for log lines and `gpsrelayd -t`: a path, a name.
     * Borrowed from cfg or static. */
    const char *(*where)(const struct gr_config *cfg);

    /*
     * Starts the source on env->loop with cfg (borrowed: copy what is kept). Returns 0 and
     * the source's state in *state, or <0 (logged): the daemon then does not start.
     */
    int (*start)(const struct gr_mapping_source_env *env, const struct gr_config *cfg,
                 void **state);

    /* SIGHUP: build the mapping again from cfg, the configuration now in force (borrowed).
     * Failures are logged and leave the mapping in force as it is. */
    void (*reload)(void *state, const struct gr_config *cfg);

    /* Whether the source's connection is up (gpsrelay_postgres_up); NULL: never. */
    bool (*up)(const void *state);

    /* Stops the source; nothing is delivered afterwards. done(arg) once its handles have
     * closed and a read or build on the thread pool has finished or been cancelled
     * (stop.h). */
    void (*stop)(void *state, gr_stopped_fn done, void *arg);

    /* Frees a stopped source's state, once stop's done has been called. */
    void (*free)(void *state);

    /*
     * `gpsrelayd -t`: builds the mapping once, blocking, within a bounded time. Returns the
     * number of devices, or <0 with the reason in err: -EINVAL when cfg names a mapping that
     * is wrong (exit 78), any other when the source cannot be reached (exit 1).
     */
    int (*check)(const struct gr_config *cfg, char *err, size_t errlen);
};

/* The source cfg names. A configuration that gr_config_load accepted always names one. */
const struct gr_mapping_source_ops *gr_mapping_source_for(const struct gr_config *cfg);

#endif
