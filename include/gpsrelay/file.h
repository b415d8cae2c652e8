/*
 * file.h - reading a whole configuration-type file (the configuration, a CSV mapping, the
 * mapping cache) without ever waiting for something that is not a disk.
 *
 * A FIFO with no writer, a terminal or a device would hold open(2) or read(2) for as long
 * as it likes; a file of gigabytes would be slurped whole. So the file is opened with
 * O_NONBLOCK (a FIFO opens at once), refused unless fstat on that same descriptor says it
 * is a regular file, and refused when it holds more than the caller's bound.
 */
#ifndef GPSRELAY_FILE_H
#define GPSRELAY_FILE_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

/*
 * Opens path for reading without waiting for anything that is not a disk, and refuses it
 * unless fstat on that very descriptor says it is a regular file (what is checked is what
 * is read, even if the path is replaced meanwhile). Returns the descriptor, with its stat
 * in *st; or a negative errno with "path: why" in err: open(2)'s or fstat(2)'s, or
 * -EINVAL for "is not a regular file (a FIFO)" (a directory, a device...).
 */
int gr_file_open_regular(const char *path, struct stat *st, char *err, size_t errlen);

/*
 * Reads the regular file at path, at most max bytes (a named bound, far below SIZE_MAX),
 * into a new buffer: *out_len bytes and a NUL after them; free() it. Returns 0; or a
 * negative errno with *out NULL and "path: why" in err: what gr_file_open_regular()
 * returns, -EFBIG for "is N bytes, more than the limit of max" (or grew past it), read(2)'s
 * error, -ENOMEM. Does not log and touches no global state: safe on libuv's thread pool.
 */
int gr_file_read(const char *path, size_t max, char **out, size_t *out_len, char *err,
                 size_t errlen);

/*
 * Formats "path:line: message" (or "path: message" when line is 0) into err, the shape of
 * every configuration and mapping error (docs/configuration.md). Returns -EINVAL (what a
 * file says is wrong), for "return fail()".
 */
int gr_file_verror(char *err, size_t errlen, const char *path, int line, const char *fmt,
                   va_list ap) __attribute__((format(printf, 5, 0)));

#endif
