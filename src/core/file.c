/*
 * file.c - reading a whole configuration-type file without blocking on what is not a disk.
 * See file.h.
 */
#include "gpsrelay/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Says why path cannot be read; returns -error, for "return fail()". */
__attribute__((format(printf, 5, 6))) static int fail(int error, char *err, size_t errlen,
                                                      const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gr_file_verror(err, errlen, path, 0, fmt, ap);
    va_end(ap);
    return -error;
}

/* What a file that is not regular is, for the refusal. */
static const char *kind(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "a special file";
}

int gr_file_open_regular(const char *path, struct stat *st, char *err, size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO with no writer returns at once (it is refused below);
     * without it, open(2) waits for a writer, forever. O_NOCTTY: a terminal named here
     * must not become our controlling terminal. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY), rc;
    if (fd < 0)
        return fail(errno, err, errlen, path, "cannot open: %s", strerror(errno));
    if (fstat(fd, st) < 0)
        rc = fail(errno, err, errlen, path, "cannot stat: %s", strerror(errno));
    else if (!S_ISREG(st->st_mode))
        rc = fail(EINVAL, err, errlen, path, "is not a regular file (%s)", kind(st->st_mode));
    else
        return fd;
    close(fd);
    return rc;
}

int gr_file_read(const char *path, size_t max, char **out, size_t *out_len, char *err,
                 size_t errlen)
{
    struct stat st;
    char *buf = NULL, *grown;
    size_t len = 0, cap;
    int fd, rc;

    *out = NULL;
    *out_len = 0;
    if ((fd = gr_file_open_regular(path, &st, err, errlen)) < 0)
        return fd;
    if ((unsigned long long)st.st_size > max) {
        rc = fail(EFBIG, err, errlen, path, "is %lld bytes, more than the limit of %zu",
                  (long long)st.st_size, max);
        goto out;
    }

    /* One byte more than fstat said, so that reading to the end takes no second allocation
     * and a file that grew since is noticed; it may grow up to max, and no further. */
    cap = (size_t)st.st_size + 1;
    buf = malloc(cap + 1);
    if (buf == NULL) {
        rc = fail(ENOMEM, err, errlen, path, "out of memory");
        goto out;
    }
    for (;;) {
        if (len == cap) {
            if (len > max) {
                rc = fail(EFBIG, err, errlen, path,
                          "grew past the limit of %zu bytes while being read", max);
                goto out;
            }
            cap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
            grown = realloc(buf, cap + 1);
            if (grown == NULL) {
                rc = fail(ENOMEM, err, errlen, path, "out of memory");
                goto out;
            }
            buf = grown;
        }
        ssize_t got = read(fd, buf + len, cap - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = fail(errno, err, errlen, path, "cannot read: %s", strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    close(fd);
    return rc;
}

int gr_file_verror(char *err, size_t errlen, const char *path, int line, const char *fmt,
                   va_list ap)
{
    int n = line > 0 ? snprintf(err, errlen, "%s:%d: ", path, line)
                     : snprintf(err, errlen, "%s: ", path);
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    return -EINVAL;
}
