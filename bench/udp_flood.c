/*
 * udp_flood.c - sends NMEA datagrams (RMC+GGA of one cycle, id-prefixed) to a gpsrelayd
 * UDP listener as fast as one core allows, for a fixed time, with sendmmsg batches.
 * The daemon's own counters (/metrics) tell what it took; this tool says what it sent.
 *
 * usage: udp_flood PORT DEVICES SECONDS [RATE]    (to 127.0.0.1 only)
 *
 * RATE (datagrams/s over all devices) paces the sending, batch by batch, for benches that
 * offer a fixed load (bench/run-archive.sh); without it, or 0, as fast as one core allows.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH        64 /* datagrams per sendmmsg */
#define DATAGRAM_MAX 256

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t sentence(char *out, size_t cap, const char *prefix, const char *body)
{
    unsigned sum = 0;
    for (const char *p = body; *p; p++)
        sum ^= (unsigned char)*p;
    return (size_t)snprintf(out, cap, "%s$%s*%02X\r\n", prefix, body, sum);
}

/* One cycle of device d at time t: RMC and GGA with a position moving east. */
static size_t datagram(char *out, int d, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    char prefix[32], rmc[160], gga[160];
    snprintf(prefix, sizeof prefix, "BENCH-%d,", d);
    double lon_min = 0.36 + (double)(t % 3600) * 0.001;
    snprintf(rmc, sizeof rmc,
             "GPRMC,%02d%02d%02d.00,A,4042.%04d,N,074%07.4f,W,12.0,271.5,%02d%02d%02d,,,A",
             tm.tm_hour, tm.tm_min, tm.tm_sec, d % 10000, lon_min, tm.tm_mday, tm.tm_mon + 1,
             tm.tm_year % 100);
    snprintf(gga, sizeof gga, "GPGGA,%02d%02d%02d.00,4042.%04d,N,074%07.4f,W,1,09,0.9,10.2,M,,M,,",
             tm.tm_hour, tm.tm_min, tm.tm_sec, d % 10000, lon_min);
    size_t n = sentence(out, DATAGRAM_MAX, prefix, rmc);
    return n + sentence(out + n, DATAGRAM_MAX - n, prefix, gga);
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s PORT DEVICES SECONDS [RATE]\n", argv[0]);
        return 64;
    }
    int port = atoi(argv[1]), devices = atoi(argv[2]);
    double seconds = atof(argv[3]), rate = argc == 5 ? atof(argv[4]) : 0;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
        perror("socket");
        return 1;
    }

    /* Every device sends one cycle per second of fix time; fix times start an hour back
     * and advance by one each round, so every datagram is a new, acceptable fix. */
    static char bufs[BATCH][DATAGRAM_MAX];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    memset(msgs, 0, sizeof msgs);
    time_t t = time(NULL) - 3600;
    int d = 0;
    unsigned long long sent = 0;
    double start = now_s(), end = start + seconds;
    while (now_s() < end) {
        /* Paced: this batch waits for the moment the rate says it is due. */
        double due = rate > 0 ? start + (double)sent / rate : 0, t_now = now_s();
        if (due > t_now) {
            double w = due - t_now;
            struct timespec ts = {(time_t)w, (long)((w - (double)(time_t)w) * 1e9)};
            while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
        }
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = datagram(bufs[i], d, t);
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            if (++d == devices) {
                d = 0;
                t++;
            }
        }
        int n = sendmmsg(fd, msgs, BATCH, 0);
        if (n > 0)
            sent += (unsigned)n;
    }
    double took = now_s() - start;
    printf("sent %llu datagrams in %.2f s: %.0f/s\n", sent, took, (double)sent / took);
    return 0;
}
