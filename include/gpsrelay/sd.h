/*
 * sd.h - the systemd notify protocol (sd_notify(3)), our own twenty lines.
 *
 * Why not libsystemd: the protocol is one datagram to the unix socket named by
 * $NOTIFY_SOCKET, and tests use the same socket to learn when the daemon is ready.
 */
#ifndef GPSRELAY_SD_H
#define GPSRELAY_SD_H

#include <stdint.h>

/* Opens the notify socket when $NOTIFY_SOCKET is set. Returns 0, or a negative errno. */
int gr_sd_init(void);

/* Sends state ("READY=1", "STOPPING=1\nSTATUS=..."); a no-op without a notify socket. */
void gr_sd_notify(const char *state);

/*
 * The watchdog interval systemd asked for (WatchdogSec=), in microseconds, or 0: none, or
 * meant for another process (WATCHDOG_PID). Ping with "WATCHDOG=1" at half of it.
 */
uint64_t gr_sd_watchdog_usec(void);

void gr_sd_close(void);

#endif
