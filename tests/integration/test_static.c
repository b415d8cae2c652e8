/*
 * test_static.c - static_dir (docs/configuration.md, docs/protocol.md): the real gpsrelayd serves a
 * folder at "/" without letting anyone out of it, and its own endpoints keep precedence.
 *
 * The folder holds one file of each content type, a sub-folder with its own index.html, a
 * 1 MiB file (sent in chunks: it must arrive byte for byte), a hidden file, a symlink that
 * stays inside (served) and symlinks that lead out (refused), and files named like the
 * daemon's endpoints (never served). A secret file sits next to the folder: no request
 * may return it, however the path is spelled.
 *
 * Usage: itest_static /path/to/gpsrelayd
 */
#include "harness.h"
#include "../unit/check.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 5                   /* bound on every read and write of a request */
#define BIG_SIZE     (1024 * 1024 + 123) /* larger than any chunk the server sends */
#define RESPONSE_MAX (2 * 1024 * 1024)   /* the biggest response read: BIG_SIZE and headers */
#define SECRET       "secret-outside-static-dir"

static char top[64]; /* temp folder: static/ (the static_dir) and outside.txt */

struct response {
    int status;
    char *head; /* status line and headers, NUL-terminated, lower-cased */
    char *body;
    size_t body_len;
};

static void response_free(struct response *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/*
 * Sends "METHOD target HTTP/1.1" exactly as given (no normalisation by a client library:
 * the point is to send what an attacker would) with Connection: close, and reads the
 * response to EOF. Returns the status, or -1.
 */
static int request(int port, const char *method, const char *target, struct response *r)
{
    memset(r, 0, sizeof(*r));
    r->status = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[1024];
    int n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Length: 0\r\n\r\n",
                     method, target);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        perror("request");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char *buf = malloc(RESPONSE_MAX + 1);
    size_t len = 0;
    ssize_t got;
    while (len < RESPONSE_MAX && (got = recv(fd, buf + len, RESPONSE_MAX - len, 0)) > 0)
        len += (size_t)got;
    close(fd);
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1) {
        fprintf(stderr, "%s %s: no HTTP response\n", method, target);
        free(buf);
        return -1;
    }
    size_t head_len = (size_t)(end - buf);
    r->head = strndup(buf, head_len);
    for (char *p = r->head; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    r->body_len = len - head_len - 4;
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, end + 4, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
    return r->status;
}

/* The value of header name (lower case, without the colon) in r, or "" when absent. */
static const char *header(const struct response *r, const char *name, char *out, size_t cap)
{
    char key[64];
    snprintf(key, sizeof(key), "\r\n%s:", name);
    const char *p = r->head ? strstr(r->head, key) : NULL;
    out[0] = '\0';
    if (p != NULL) {
        p += strlen(key);
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, "\r");
        snprintf(out, cap, "%.*s", (int)n, p);
    }
    return out;
}

static void write_file(const char *rel, const void *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", top, rel);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

static void write_text(const char *rel, const char *text)
{
    write_file(rel, text, strlen(text));
}

static void make_tree(void)
{
    static const char *dirs[] = {"static", "static/sub", "static/socket"};
    strcpy(top, "/tmp/gr-static-XXXXXX");
    if (mkdtemp(top) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/%s", top, dirs[i]);
        mkdir(path, 0755);
    }
    write_text("outside.txt", SECRET "\n");
    write_text("static/index.html", "<!doctype html><title>console</title>\n");
    write_text("static/app.js", "console.log('app');\n");
    write_text("static/app.css", "body { margin: 0 }\n");
    write_text("static/data.json", "{\"ok\":true}\n");
    write_text("static/icon.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n");
    write_file("static/logo.png", "\x89PNG\r\n\x1a\n", 8);
    write_text("static/blob.bin", "bytes\n");
    write_text("static/.hidden", SECRET "\n");
    write_text("static/sub/index.html", "<p>sub</p>\n");
    write_text("static/healthz", "a file named like an endpoint\n");
    write_text("static/socket/websocket", "a file under /socket/\n");
    char *big = malloc(BIG_SIZE);
    for (size_t i = 0; i < BIG_SIZE; i++)
        big[i] = (char)('a' + (i * 7 + i / 1000) % 26);
    write_file("static/big.txt", big, BIG_SIZE);
    free(big);

    char link[128], target[128];
    static const struct {
        const char *name, *target;
    } links[] = {
        {"static/inner.js", "app.js"},           /* stays inside: served */
        {"static/escape.txt", "../outside.txt"}, /* relative, leads out */
        {"static/up", ".."},                     /* a folder link out */
        {"static/abs.txt", NULL},                /* absolute, leads out */
        {"static/passwd.txt", "/etc/passwd"},    /* absolute, elsewhere */
    };
    for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
        snprintf(link, sizeof(link), "%s/%s", top, links[i].name);
        if (links[i].target != NULL)
            snprintf(target, sizeof(target), "%s", links[i].target);
        else
            snprintf(target, sizeof(target), "%s/outside.txt", top);
        if (symlink(target, link) < 0) {
            perror(link);
            exit(1);
        }
    }
}

static void remove_tree(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", top);
}

/* GET path: 200, the content type, and the body the file holds. */
static void check_file(int port, const char *path, const char *type, const char *file)
{
    struct response r;
    char value[128], fpath[256];
    CHECK_INT(request(port, "GET", path, &r), 200);
    CHECK_STR(header(&r, "content-type", value, sizeof(value)), type);
    snprintf(fpath, sizeof(fpath), "%s/static/%s", top, file);
    struct stat st;
    FILE *f = fopen(fpath, "rb");
    CHECK(f != NULL && stat(fpath, &st) == 0);
    if (f != NULL) {
        char *want = malloc((size_t)st.st_size + 1);
        size_t n = fread(want, 1, (size_t)st.st_size, f);
        fclose(f);
        CHECK_INT(r.body_len, n);
        CHECK(r.body != NULL && r.body_len == n && memcmp(r.body, want, n) == 0);
        free(want);
    }
    response_free(&r);
}

/* path must be refused with 404, and nothing of the secret may come back. */
static void check_refused(int port, const char *path)
{
    struct response r;
    int status = request(port, "GET", path, &r);
    if (status != 404)
        fprintf(stderr, "GET %s: %d, expected 404\n", path, status);
    CHECK_INT(status, 404);
    CHECK(r.body == NULL || strstr(r.body, SECRET) == NULL);
    CHECK(r.body == NULL || strstr(r.body, "root:") == NULL);
    response_free(&r);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s GPSRELAYD\n", argv[0]);
        return 2;
    }
    make_tree();
    char conf[256];
    snprintf(conf, sizeof(conf), "static_dir %s/static\n", top);
    struct gr_daemon d;
    if (daemon_start(&d, argv[1], conf, NULL) < 0) {
        remove_tree();
        return 1;
    }
    int port = d.ws_port;
    struct response r;
    char value[128];

    /* "/" is index.html; every content type the console uses; a sub-folder's index. */
    check_file(port, "/", "text/html; charset=utf-8", "index.html");
    check_file(port, "/index.html", "text/html; charset=utf-8", "index.html");
    check_file(port, "/app.js", "text/javascript; charset=utf-8", "app.js");
    check_file(port, "/app.js?v=2", "text/javascript; charset=utf-8", "app.js");
    check_file(port, "/app.css", "text/css; charset=utf-8", "app.css");
    check_file(port, "/data.json", "application/json", "data.json");
    check_file(port, "/icon.svg", "image/svg+xml", "icon.svg");
    check_file(port, "/logo.png", "image/png", "logo.png");
    check_file(port, "/blob.bin", "application/octet-stream", "blob.bin");
    check_file(port, "/sub/", "text/html; charset=utf-8", "sub/index.html");
    check_file(port, "/inner.js", "text/javascript; charset=utf-8", "app.js");
    check_file(port, "/big.txt", "text/plain; charset=utf-8", "big.txt");

    /* HEAD: the same head, no body. Other methods: 405. */
    CHECK_INT(request(port, "HEAD", "/app.js", &r), 200);
    CHECK_STR(header(&r, "content-length", value, sizeof(value)), "20");
    CHECK_STR(header(&r, "x-content-type-options", value, sizeof(value)), "nosniff");
    CHECK_INT(r.body_len, 0);
    response_free(&r);
    CHECK_INT(request(port, "POST", "/app.js", &r), 405);
    response_free(&r);
    CHECK_INT(request(port, "DELETE", "/app.js", &r), 405);
    response_free(&r);

    /* Missing files, folders without their slash, hidden files: 404. */
    check_refused(port, "/missing.js");
    check_refused(port, "/sub");
    check_refused(port, "/.hidden");
    check_refused(port, "/sub/.hidden");

    /* Ways out of the folder, as an attacker spells them: all 404, the secret never. */
    check_refused(port, "/../outside.txt");
    check_refused(port, "/sub/../../outside.txt");
    check_refused(port, "/%2e%2e/outside.txt");
    check_refused(port, "/%2E%2E%2Foutside.txt");
    check_refused(port, "/..%2foutside.txt");
    check_refused(port, "/sub/..%2f..%2foutside.txt");
    check_refused(port, "/..\\outside.txt");
    check_refused(port, "//etc/passwd");
    check_refused(port, "/escape.txt");
    check_refused(port, "/abs.txt");
    check_refused(port, "/passwd.txt");
    check_refused(port, "/up/outside.txt");
    check_refused(port, "/up/static/app.js");

    /* The daemon's own endpoints win over files of the same name; /socket/ is never
     * static. */
    CHECK_INT(request(port, "GET", "/healthz", &r), 200);
    CHECK_STR(r.body, "ok\n");
    response_free(&r);
    CHECK_INT(request(port, "GET", "/readyz", &r), 200);
    response_free(&r);
    CHECK_INT(request(port, "GET", "/metrics", &r), 200);
    CHECK(r.body != NULL && strstr(r.body, "gpsrelay_ingest_reports_total") != NULL);
    response_free(&r);
    CHECK_INT(request(port, "GET", "/socket/websocket", &r), 404);
    response_free(&r);
    int status = 0;
    int ws = ws_connect(port, "/socket/websocket?vsn=2.0.0", NULL, &status);
    CHECK(ws >= 0);
    if (ws >= 0)
        close(ws);

    CHECK_INT(daemon_stop(&d), 0);
    remove_tree();
    return check_result("integration_static");
}
