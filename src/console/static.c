/*
 * static.c - static_dir, the demo console's files. See static.h.
 *
 * The demo console: a few small files (an HTML page, one JS and one CSS bundle). They are
 * opened per request, so rebuilding the console needs no restart, and streamed in
 * STATIC_CHUNK pieces from the writeable callback: a download costs one descriptor and a
 * 16-byte struct however large the file, each callback does one bounded read and write,
 * and a client that stops reading holds only its own connection. Files are read with
 * plain read(2): they are local and small, like lws's own file serving, which does the
 * same; static_dir is a convenience for the demo, not a file server for large media.
 *
 * Only GET and HEAD. Paths are confined to static_dir twice: request paths with a ".."
 * or hidden ("." first) segment are refused before any file system call, and the file is
 * opened with openat2(RESOLVE_BENEATH), so the kernel refuses anything (a symlink
 * included) that resolves outside the folder.
 */
#include "gpsrelay/static.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "gpsrelay/http.h"
#include "gpsrelay/log.h"

/* Read and written per writeable callback for one download. */
#define STATIC_CHUNK (16 * 1024)

/* A download whose client took nothing for this long is cut; each chunk it takes starts
 * the count again, so a large file over a slow link is not (lws's own limit is 5 s from
 * the request, whatever the progress). */
#define STATIC_STALL_S 30

/* Longest request path served from static_dir; longer ones get 404. */
#define STATIC_PATH_MAX 512

/* A download in flight: 16 bytes however large the file. */
struct gr_static_file {
    int fd;     /* opened beneath static_dir, closed by gr_static_done() */
    off_t left; /* bytes still to send */
};

/* Content types by file name extension; anything else is application/octet-stream. */
static const struct {
    const char *ext;
    const char *type;
} static_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".map", "application/json"},
    {".png", "image/png"},
    {".svg", "image/svg+xml"},
    {".ico", "image/x-icon"},
    {".txt", "text/plain; charset=utf-8"},
    {".woff2", "font/woff2"},
};

static const char *static_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot != NULL && i < sizeof(static_types) / sizeof(static_types[0]); i++) {
        if (strcasecmp(dot, static_types[i].ext) == 0)
            return static_types[i].type;
    }
    return "application/octet-stream";
}

/*
 * Whether a request path may name a file under static_dir: absolute, no empty-name
 * tricks, no ".." and no hidden files or folders (".git", ".env") in any segment, no
 * backslashes (some tools treat them as separators).
 */
static bool static_path_ok(const char *path)
{
    if (path[0] != '/' || strlen(path) >= STATIC_PATH_MAX || strchr(path, '\\') != NULL)
        return false;
    for (const char *seg = path; seg != NULL; seg = strchr(seg + 1, '/')) {
        if (seg[1] == '.')
            return false;
    }
    return true;
}

void gr_static_done(struct gr_static_file **filep)
{
    if (filep == NULL || *filep == NULL)
        return;
    close((*filep)->fd);
    free(*filep);
    *filep = NULL;
}

/* Opens name (relative) under dir without leaving it. Returns the descriptor or -errno. */
static int static_open(const char *dir, const char *name)
{
    int root = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return -errno;
    struct open_how how = {
        .flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, /* a FIFO must not block */
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, root, name, &how, sizeof(how));
    int err = errno;
    close(root);
    return fd < 0 ? -err : fd;
}

/* The response head of a static file: status 200, its type and length, no caching
 * without revalidation (a rebuilt console must show at the next load). */
static int static_head(struct lws *wsi, const char *type, off_t size)
{
    static const char nosniff[] = "nosniff", nocache[] = "no-cache";
    unsigned char hdr[LWS_PRE + 512];
    unsigned char *start = hdr + LWS_PRE, *p = start, *end = hdr + sizeof(hdr) - 1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, type, (lws_filepos_t)size, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)nocache, sizeof(nocache) - 1, &p,
                                     end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"x-content-type-options:",
                                    (const unsigned char *)nosniff, sizeof(nosniff) - 1, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    return 0;
}

int gr_static_serve(const char *dir, struct lws *wsi, const char *path,
                    struct gr_static_file **filep)
{
    static bool warned_missing, warned_openat2;
    bool head = lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0;
    if (!head && lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return gr_http_reply(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, "text/plain",
                             "method not allowed\n", 19);
    if (!static_path_ok(path))
        return gr_http_reply(wsi, 404, "text/plain", "not found\n", 10);

    /* "/" and "/dir/" mean their index.html. */
    char name[STATIC_PATH_MAX + sizeof("index.html")];
    snprintf(name, sizeof(name), "%s%s", path[1] ? path + 1 : ".",
             path[strlen(path) - 1] == '/' ? (path[1] ? "index.html" : "/index.html") : "");
    int fd = static_open(dir, name);
    if (fd == -ENOSYS && !warned_openat2) {
        warned_openat2 = true;
        gr_error("static: this kernel has no openat2 (Linux 5.6+); static_dir is not served");
    } else if (fd < 0 && fd != -ENOENT && fd != -ENOTDIR && fd != -EXDEV && fd != -ELOOP &&
               !warned_missing) {
        warned_missing = true; /* once: a missing or unreadable folder is an operator's typo */
        gr_warn("static: static_dir %s: %s (logged once)", dir, strerror(-fd));
    }
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1; /* folders are not listed; "/dir" without its slash is not found either */
    }
    if (fd < 0)
        return gr_http_reply(wsi, 404, "text/plain", "not found\n", 10);

    if (static_head(wsi, static_type(name), st.st_size) < 0) {
        close(fd);
        return -1;
    }
    if (head || st.st_size == 0) {
        close(fd);
        return gr_http_completed(wsi);
    }
    struct gr_static_file *f = malloc(sizeof(*f));
    if (f == NULL) {
        close(fd);
        return -1;
    }
    f->fd = fd;
    f->left = st.st_size;
    *filep = f;
    gr_http_set_deadline(wsi, STATIC_STALL_S);
    gr_http_want_write(wsi);
    return 0;
}

int gr_static_writeable(struct lws *wsi, struct gr_static_file **filep)
{
    unsigned char buf[LWS_PRE + STATIC_CHUNK];
    struct gr_static_file *f = *filep;
    size_t want = f->left < STATIC_CHUNK ? (size_t)f->left : STATIC_CHUNK;
    ssize_t n = read(f->fd, buf + LWS_PRE, want);
    if (n <= 0) { /* the file shrank or failed under us: the length sent is now a lie */
        gr_static_done(filep);
        return -1;
    }
    f->left -= n;
    bool last = f->left == 0;
    if (lws_write(wsi, buf + LWS_PRE, (size_t)n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) <
        (int)n) {
        gr_static_done(filep);
        return -1;
    }
    if (!last) {
        gr_http_set_deadline(wsi, STATIC_STALL_S); /* it took the last chunk: progress */
        gr_http_want_write(wsi);
        return 0;
    }
    gr_static_done(filep);
    return gr_http_completed(wsi);
}
