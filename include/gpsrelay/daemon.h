/*
 * daemon.h - owns every module's lifetime and the one loop.
 */
#ifndef GPSRELAY_DAEMON_H
#define GPSRELAY_DAEMON_H

#include "gpsrelay/config.h"

/* Exit statuses (SPEC section 2; sysexits.h values). */
#define GR_EXIT_OK      0
#define GR_EXIT_FAILURE 1
#define GR_EXIT_USAGE   64
#define GR_EXIT_CONFIG  78

/*
 * Loads the mapping, starts ingest and the console server on one loop, serves until
 * SIGINT or SIGTERM, and tears everything down. cfg is borrowed. Returns the process
 * exit status.
 */
int gr_daemon_run(const struct gr_config *cfg);

#endif
