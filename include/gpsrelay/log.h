/*
 * log.h - one line per event on stderr.
 *
 * Levels are syslog priorities. When stderr is the journal (JOURNAL_STREAM names our
 * stderr), lines carry a "<N>" priority prefix and no timestamp; otherwise a UTC
 * timestamp and the level name.
 */
#ifndef GPSRELAY_LOG_H
#define GPSRELAY_LOG_H

#include <syslog.h>

/* Call once at start; decides the line format. */
void gr_log_init(void);

/* Messages less important than level (numerically greater) are not printed. */
void gr_log_set_level(int level);

/* "debug", "info", "notice", "warning", "error" -> LOG_*; -EINVAL when unknown. */
int gr_log_level_parse(const char *name);

void gr_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define gr_debug(...)  gr_log(LOG_DEBUG, __VA_ARGS__)
#define gr_info(...)   gr_log(LOG_INFO, __VA_ARGS__)
#define gr_notice(...) gr_log(LOG_NOTICE, __VA_ARGS__)
#define gr_warn(...)   gr_log(LOG_WARNING, __VA_ARGS__)
#define gr_error(...)  gr_log(LOG_ERR, __VA_ARGS__)

#endif
