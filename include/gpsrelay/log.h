/*
 * log.h - one line per event on stderr.
 *
 * Levels are syslog priorities. When stderr is the journal (JOURNAL_STREAM names our
 * stderr), lines carry a "<N>" priority prefix and no timestamp; otherwise a UTC
 * timestamp and the level name.
 */
#ifndef GPSRELAY_LOG_H
#define GPSRELAY_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <syslog.h>

/* Call once at start; decides the line format. */
void gr_log_init(void);

/* Messages less important than level (numerically greater) are not printed. */
void gr_log_set_level(int level);
int gr_log_get_level(void);

/* "debug", "info", "notice", "warning", "error" -> LOG_*; -1 when unknown. */
int gr_log_level_parse(const char *name);

void gr_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Formats "path:line: message" (or "path: message" when line is 0) into err, the shape of
 * every configuration and mapping error (SPEC section 2). Returns -1, for "return fail()".
 */
int gr_file_verror(char *err, size_t errlen, const char *path, int line, const char *fmt,
                   va_list ap) __attribute__((format(printf, 5, 0)));

#define gr_debug(...)  gr_log(LOG_DEBUG, __VA_ARGS__)
#define gr_info(...)   gr_log(LOG_INFO, __VA_ARGS__)
#define gr_notice(...) gr_log(LOG_NOTICE, __VA_ARGS__)
#define gr_warn(...)   gr_log(LOG_WARNING, __VA_ARGS__)
#define gr_error(...)  gr_log(LOG_ERR, __VA_ARGS__)

#endif
