/*
 * daemon.h - owns every module's lifetime and the one loop.
 */
#ifndef GPSRELAY_DAEMON_H
#define GPSRELAY_DAEMON_H

#include <stdbool.h>

#include "gpsrelay/config.h"

/* Exit statuses (docs/configuration.md; sysexits.h values). */
#define GR_EXIT_OK      0
#define GR_EXIT_FAILURE 1
#define GR_EXIT_USAGE   64
#define GR_EXIT_CONFIG  78

/*
 * Loads the mapping, starts ingest and the console server on one loop, serves until
 * SIGINT or SIGTERM, and tears everything down. cfg is borrowed. SIGHUP reads cfg->path
 * again and puts what a running daemon can change in force (the log level only when
 * log_level_fixed is false: -l on the command line wins), and reloads the mapping.
 * Returns the process exit status.
 */
int gr_daemon_run(const struct gr_config *cfg, bool log_level_fixed);

#endif
