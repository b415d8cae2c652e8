/*
 * udp.c - the listen_udp sockets: every datagram is one payload for the pipeline
 * (pipeline.h).
 */
#include <linux/sock_diag.h>
#include <netinet/in.h>

#include "gpsrelay/log.h"
#include "listeners.h"
#include "pipeline.h"

/* UDP sockets read with recvmmsg(2): libuv cuts the buffer into 64 KiB slots, one datagram
 * each, and fills up to this many per system call (its own maximum is 20). */
#define UDP_MMSG_SLOTS 20

/* Reads are handled before the next one starts, so one buffer serves every UDP socket. */
static char read_buf[UDP_MMSG_SLOTS * GR_DATAGRAM_MAX];

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_datagram(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
    if (nread < 0) {
        struct gr_ingest *in = h->data;
        /* The first of an interval is logged at once; the summary counts the rest. */
        if (gr_stats.ingest_receive_errors++ == in->summarized_receive_errors)
            gr_warn("ingest: udp receive error: %s", uv_strerror((int)nread));
        return;
    }
    if (from == NULL)
        return; /* libuv's "nothing more to read" */
    gr_stats.ingest_datagrams++;
    struct gr_ingest *in = h->data;
    if (!gr_ingest_allowed(in, from)) {
        gr_stats.ingest_not_allowed++;
        return;
    }
    if (flags & UV_UDP_PARTIAL) {
        gr_stats.ingest_rejected[GR_LINE_TOO_LONG]++;
        return;
    }
    struct gr_ingest_batch b = gr_ingest_batch_begin(in, from);
    gr_ingest_batch_add(&b, buf->base, (size_t)nread);
    gr_ingest_batch_end(&b);
}

int gr_ingest_udp_start(struct gr_ingest *in, const struct gr_addr *a)
{
    uv_udp_t *h = &in->udp[in->n_udp];
    int rc = uv_udp_init_ex(in->loop, h, AF_UNSPEC | UV_UDP_RECVMMSG);
    if (rc == 0) {
        in->n_udp++; /* a handle to close from now on */
        h->data = in;
        rc = uv_udp_bind(h, (const struct sockaddr *)&a->sa, 0);
    }
    if (rc == 0)
        rc = uv_udp_recv_start(h, on_udp_alloc, on_datagram);
    if (rc < 0) {
        gr_error("ingest: cannot listen on udp %s: %s", a->text, uv_strerror(rc));
        return rc;
    }
    struct sockaddr_storage bound = a->sa;
    int len = sizeof(bound);
    uv_udp_getsockname(h, (struct sockaddr *)&bound, &len); /* the kernel's port for :0 */
    gr_ingest_log_listening("udp", (struct sockaddr *)&bound,
                            ntohs(((struct sockaddr_in *)&bound)->sin_port)); /* same in v6 */
    return 0;
}

void gr_ingest_udp_stop(struct gr_ingest *in)
{
    for (size_t i = 0; i < in->n_udp; i++)
        gr_ingest_close_once((uv_handle_t *)&in->udp[i]);
}

uint64_t gr_ingest_udp_drops(const struct gr_ingest *in)
{
    uint64_t drops = 0;
    for (size_t i = 0; i < in->n_udp; i++) {
        uv_os_fd_t fd;
        uint32_t meminfo[SK_MEMINFO_VARS];
        socklen_t len = sizeof(meminfo);
        if (uv_fileno((const uv_handle_t *)&in->udp[i], &fd) == 0 &&
            getsockopt(fd, SOL_SOCKET, SO_MEMINFO, meminfo, &len) == 0 &&
            len > SK_MEMINFO_DROPS * sizeof(uint32_t))
            drops += meminfo[SK_MEMINFO_DROPS];
    }
    return drops;
}
