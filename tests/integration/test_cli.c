/*
 * test_cli.c - the command line and start-up failures of the real gpsrelayd
 * (docs/configuration.md): exit statuses, -t with file:line errors, and bind failures that exit 1
 * with the address named instead of hanging or crashing.
 *
 * Usage: itest_cli /path/to/gpsrelayd
 */
#include "../unit/check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_TIMEOUT_MS 10000
#define OUTPUT_MAX     8192

static const char *binary;
static char dir[] = "/tmp/gpsrelay-cli-XXXXXX";

struct run {
    int status;           /* exit status, or -1 when killed or timed out */
    char out[OUTPUT_MAX]; /* stdout and stderr together */
};

/* When set, run() makes the child's stderr look like the journal's stream to it, as
 * systemd does: JOURNAL_STREAM names the pipe's device and inode. */
static bool as_journal;

/* Runs gpsrelayd with args (NULL-terminated) and collects its status and output. */
static void run(struct run *r, const char *const *args)
{
    r->status = -1;
    r->out[0] = '\0';
    int pipefd[2];
    if (pipe(pipefd) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("JOURNAL_STREAM");
        struct stat st;
        char stream[64];
        if (as_journal && fstat(2, &st) == 0) {
            snprintf(stream, sizeof stream, "%llu:%llu", (unsigned long long)st.st_dev,
                     (unsigned long long)st.st_ino);
            setenv("JOURNAL_STREAM", stream, 1);
        }
        const char *argv[16] = {binary};
        for (int i = 0; args[i] && i < 14; i++)
            argv[i + 1] = args[i];
        execv(binary, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);

    size_t len = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = RUN_TIMEOUT_MS -
                    ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        struct pollfd p = {pipefd[0], POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = read(pipefd[0], r->out + len, sizeof(r->out) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        r->out[len] = '\0';
    }
    close(pipefd[0]);
    /* EOF comes as the child exits; give it the rest of the deadline to be reaped. */
    int ws;
    pid_t done;
    for (int waited = 0; (done = waitpid(pid, &ws, WNOHANG)) == 0 && waited < RUN_TIMEOUT_MS;
         waited += 10)
        poll(NULL, 0, 10);
    if (done != pid) {
        fprintf(stderr, "gpsrelayd did not exit within %d ms\n", RUN_TIMEOUT_MS);
        kill(pid, SIGKILL);
        waitpid(pid, &ws, 0);
        return;
    }
    if (WIFEXITED(ws))
        r->status = WEXITSTATUS(ws);
    fprintf(stderr, "--- gpsrelayd exited %d:\n%s", r->status, r->out);
}

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static const char *conf_path(void)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/gpsrelay.conf", dir);
    return path;
}

/* A loopback socket holding a port (bound, and listening for TCP); its port in *port. */
static int hold_port(int type, int *port)
{
    int fd = socket(AF_INET, type, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        (type == SOCK_STREAM && listen(fd, 1) < 0) ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        perror("hold_port");
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static const char CSV[] = "device_id,agency_id,label,source_addr\nAMB-12,county-ems,Medic 12,\n";

static void test_usage(void)
{
    struct run r;
    run(&r, (const char *[]){"--version", NULL});
    CHECK_INT(r.status, 0);
    CHECK(strstr(r.out, "gpsrelayd ") != NULL);

    run(&r, (const char *[]){"--help", NULL});
    CHECK_INT(r.status, 0);
    CHECK(strstr(r.out, "usage:") != NULL);

    run(&r, (const char *[]){"--no-such-option", NULL});
    CHECK_INT(r.status, 64);

    run(&r, (const char *[]){"-l", "loud", NULL});
    CHECK_INT(r.status, 64);
}

static void test_check_mode(void)
{
    struct run r;
    write_file("devices.csv", CSV);
    write_file("gpsrelay.conf", "listen_udp 127.0.0.1:0\n"
                                "listen_ws 127.0.0.1:0\n"
                                "mapping_file devices.csv\n"
                                "auth none\n");
    run(&r, (const char *[]){"-t", "-c", conf_path(), NULL});
    CHECK_INT(r.status, 0);
    CHECK(strstr(r.out, "is ok (1 devices") != NULL);

    /* A bad directive: exit 78 and the file and line named. */
    write_file("gpsrelay.conf", "listen_udp 127.0.0.1:0\n"
                                "listen_ws 127.0.0.1:0\n"
                                "no_such_directive 1\n");
    run(&r, (const char *[]){"-t", "-c", conf_path(), NULL});
    CHECK_INT(r.status, 78);
    CHECK(strstr(r.out, "gpsrelay.conf:3:") != NULL);
    CHECK(strstr(r.out, "no_such_directive") != NULL);

    /* A bad mapping is a configuration error too, found by -t before any start. */
    write_file("devices.csv", "device_id,agency_id,label,source_addr\nAMB-12,,Medic 12,\n");
    write_file("gpsrelay.conf", "listen_udp 127.0.0.1:0\n"
                                "listen_ws 127.0.0.1:0\n"
                                "mapping_file devices.csv\n"
                                "auth none\n");
    run(&r, (const char *[]){"-t", "-c", conf_path(), NULL});
    CHECK_INT(r.status, 78);
    CHECK(strstr(r.out, "devices.csv:2:") != NULL);

    /* The same refusal without -t: the daemon does not start on a bad mapping. */
    run(&r, (const char *[]){"-c", conf_path(), NULL});
    CHECK_INT(r.status, 78);

    /* A FIFO where the mapping or the configuration should be: refused at once (exit 78,
     * "not a regular file"), where opening it used to wait for a writer, forever. */
    char fifo[256];
    snprintf(fifo, sizeof fifo, "%s/devices.csv", dir);
    CHECK_INT(unlink(fifo), 0);
    CHECK_INT(mkfifo(fifo, 0600), 0);
    run(&r, (const char *[]){"-t", "-c", conf_path(), NULL});
    CHECK_INT(r.status, 78);
    CHECK(strstr(r.out, "devices.csv: is not a regular file (a FIFO)") != NULL);
    run(&r, (const char *[]){"-c", conf_path(), NULL});
    CHECK_INT(r.status, 78);
    CHECK_INT(unlink(fifo), 0);
    snprintf(fifo, sizeof fifo, "%s/fifo.conf", dir);
    CHECK_INT(mkfifo(fifo, 0600), 0);
    run(&r, (const char *[]){"-t", "-c", fifo, NULL});
    CHECK_INT(r.status, 78);
    CHECK(strstr(r.out, "fifo.conf: is not a regular file (a FIFO)") != NULL);
    CHECK_INT(unlink(fifo), 0);

    /* A missing file. */
    run(&r, (const char *[]){"-t", "-c", "/nonexistent/gpsrelay.conf", NULL});
    CHECK_INT(r.status, 78);
    CHECK(strstr(r.out, "/nonexistent/gpsrelay.conf") != NULL);
}

/* A port already taken: exit 1 promptly, naming the address; no hang, no crash, no leak. */
static void test_bind_failure(int type, const char *directive)
{
    int port;
    int held = hold_port(type, &port);
    CHECK(held >= 0);
    int other_udp, other_tcp;
    int free_udp = hold_port(SOCK_DGRAM, &other_udp);
    int free_tcp = hold_port(SOCK_STREAM, &other_tcp);
    close(free_udp); /* free again: only the held one conflicts */
    close(free_tcp);

    char conf[512], want[64];
    snprintf(conf, sizeof conf,
             "listen_udp 127.0.0.1:%d\nlisten_ws 127.0.0.1:%d\nmapping_file devices.csv\n"
             "auth none\n",
             strcmp(directive, "listen_udp") == 0 ? port : other_udp,
             strcmp(directive, "listen_ws") == 0 ? port : other_tcp);
    write_file("devices.csv", CSV);
    write_file("gpsrelay.conf", conf);
    snprintf(want, sizeof want, "127.0.0.1:%d", port);

    struct run r;
    run(&r, (const char *[]){"-c", conf_path(), NULL});
    CHECK_INT(r.status, 1);
    CHECK(strstr(r.out, want) != NULL);
    CHECK(strstr(r.out, "Z error: ") != NULL); /* a terminal: a timestamp and the level */

    /* Under systemd: "<3>" (LOG_ERR) for journald and no timestamp (journald adds one). */
    as_journal = true;
    run(&r, (const char *[]){"-c", conf_path(), NULL});
    as_journal = false;
    CHECK_INT(r.status, 1);
    CHECK(strstr(r.out, "<3>") != NULL && strstr(r.out, want) != NULL);
    CHECK(strstr(r.out, "Z error: ") == NULL);
    close(held);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to/gpsrelayd\n", argv[0]);
        return 2;
    }
    binary = argv[1];
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    test_usage();
    test_check_mode();
    test_bind_failure(SOCK_DGRAM, "listen_udp");
    test_bind_failure(SOCK_STREAM, "listen_ws");

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return check_result("integration_cli");
}
