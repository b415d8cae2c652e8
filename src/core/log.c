/*
 * log.c - one line per event on stderr (systemd's daemon(7) new-style logging).
 */
#include "gpsrelay/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/*
 * Longest line written, newline included. Longer messages are cut and end in "...": a
 * runaway message (a hostile device id, a huge label) must not flood the journal.
 */
#define GR_LOG_LINE_MAX 1024

static int log_level = LOG_INFO;
static bool gr_log_journal; /* stderr is the journal: "<N>" prefix, journald adds the time */

/* Indexed by syslog priority (LOG_EMERG = 0 ... LOG_DEBUG = 7). */
static const char *const level_names[] = {"emerg",   "alert",  "crit", "error",
                                          "warning", "notice", "info", "debug"};

void gr_log_init(void)
{
    /* systemd sets JOURNAL_STREAM="dev:ino" of the stream it connected; it is inherited
     * by children whose stderr may have been redirected since, so compare with ours. */
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    gr_log_journal = js != NULL && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
                     fstat(STDERR_FILENO, &st) == 0 && (unsigned long long)st.st_dev == dev &&
                     (unsigned long long)st.st_ino == ino;
}

void gr_log_set_level(int level)
{
    log_level = level;
}

int gr_log_level_parse(const char *name)
{
    for (int i = LOG_ERR; i <= LOG_DEBUG; i++) {
        if (strcmp(name, level_names[i]) == 0)
            return i;
    }
    return -EINVAL;
}

void gr_log(int level, const char *fmt, ...)
{
    char line[GR_LOG_LINE_MAX];
    int saved_errno = errno; /* callers log and then look at errno */
    int n;

    if (level > log_level)
        return;
    level = level < LOG_EMERG ? LOG_EMERG : level > LOG_DEBUG ? LOG_DEBUG : level;

    if (gr_log_journal) {
        n = snprintf(line, sizeof(line), "<%d>", level);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ldZ %s: ", ts.tv_nsec / 1000000,
                      level_names[level]);
    }

    /* The message gets what is left; its terminating NUL becomes the newline. */
    size_t room = sizeof(line) - (size_t)n;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, room, fmt, ap);
    va_end(ap);
    size_t len = m < 0 ? 0 : (size_t)m;
    if (len >= room) {
        len = room - 1;
        memcpy(line + n + len - 3, "...", 3);
    }

    /* One event, one line: device data can carry newlines and escape sequences. */
    for (char *p = line + n; p < line + n + len; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
    line[n + len] = '\n';

    /* stderr is unbuffered: one fwrite is one write(2), so lines are never interleaved. */
    fwrite(line, 1, (size_t)n + len + 1, stderr);
    errno = saved_errno;
}
