/*
 * idle_consoles.c - holds N idle consoles on a gpsrelayd (WebSocket upgrade + one join
 * each), spread over 127.0.0.x source addresses, and reports the daemon's resident memory
 * per console from its own /metrics (process_resident_memory_bytes), before and after.
 *
 * usage: idle_consoles WS_PORT N [TOPIC]      (127.0.0.1 only)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define PER_SOURCE 20000 /* connections per 127.0.0.x source, inside the ephemeral range */

static int connect_from(int n, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in src = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(0x7f000001 + (uint32_t)(n / PER_SOURCE))};
    struct sockaddr_in dst = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ||
        connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
        perror("connect");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Reads an HTTP response head; returns its status code. */
static int read_head(int fd)
{
    char buf[2048];
    size_t len = 0;
    while (len < sizeof buf - 1) {
        ssize_t r = read(fd, buf + len, 1); /* byte by byte: stop exactly at the blank line */
        if (r <= 0)
            return -1;
        len++;
        buf[len] = '\0';
        if (len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    return atoi(buf + 9);
}

static int send_text(int fd, const char *text)
{
    size_t n = strlen(text);
    unsigned char frame[256] = {0x81, (unsigned char)(0x80 | n), 1, 2, 3, 4};
    for (size_t i = 0; i < n; i++)
        frame[6 + i] = (unsigned char)text[i] ^ frame[2 + i % 4];
    return write(fd, frame, 6 + n) == (ssize_t)(6 + n) ? 0 : -1;
}

static long long metric(int port, const char *name)
{
    int fd = connect_from(0, port);
    char req[128], buf[1 << 16];
    snprintf(req, sizeof req, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if (fd < 0 || write(fd, req, strlen(req)) < 0)
        return -1;
    size_t len = 0;
    for (ssize_t r; len < sizeof buf - 1 && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0;)
        len += (size_t)r;
    buf[len] = '\0';
    close(fd);
    char needle[128]; /* the sample line, not the # HELP / # TYPE lines naming it */
    snprintf(needle, sizeof needle, "\n%s ", name);
    char *at = strstr(buf, needle);
    return at ? atoll(at + strlen(needle)) : -1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s WS_PORT N [TOPIC]\n", argv[0]);
        return 64;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]);
    const char *topic = argc > 3 ? argv[3] : "agency:county-ems";
    struct rlimit nofile;
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);

    long long before = metric(port, "process_resident_memory_bytes");
    char join[160];
    snprintf(join, sizeof join, "[\"1\",\"1\",\"%s\",\"phx_join\",{}]", topic);
    int *fds = calloc((size_t)n, sizeof(int));
    int opened = 0;
    for (int i = 0; i < n; i++) {
        int fd = connect_from(i, port);
        static const char upgrade[] = "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: x\r\n"
                                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                      "Sec-WebSocket-Version: 13\r\n\r\n";
        if (fd < 0 || write(fd, upgrade, sizeof upgrade - 1) < 0 || read_head(fd) != 101 ||
            send_text(fd, join) < 0) {
            fprintf(stderr, "console %d failed\n", i);
            break;
        }
        fds[opened++] = fd;
    }
    long long connected = metric(port, "gpsrelay_consoles_connected");
    long long after = metric(port, "process_resident_memory_bytes");
    printf("consoles %d (daemon reports %lld): RSS %.1f MiB -> %.1f MiB, %.0f bytes per console\n",
           opened, connected, before / 1048576.0, after / 1048576.0,
           opened ? (double)(after - before) / opened : 0);
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    free(fds);
    return 0;
}
