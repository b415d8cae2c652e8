/*
 * acceptor.c - listeners that empty the kernel's accept queue every loop turn and hand
 * connections on at a bounded pace (see acceptor.h for why).
 */
#include "gpsrelay/acceptor.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpsrelay/log.h"

struct listener {
    uv_poll_t poll;
    int fd;
    void *ctx;
    struct gr_acceptor *acceptor; /* not polled while its FIFO is full or accept(2) rests */
};

struct waiting {
    int fd;
    struct listener *from;
};

struct gr_acceptor {
    uv_loop_t *loop;
    struct gr_acceptor_config cfg;
    gr_accept_fn fn;
    void *ctx;
    size_t budget;        /* what is left of this turn's cfg.per_turn hand-ons */
    struct waiting *fifo; /* ring of cfg.max_waiting */
    size_t head, n_waiting;
    struct listener *listeners[GR_ACCEPT_LISTENERS_MAX];
    size_t n_listeners;
    uv_check_t hand_on; /* end of each turn: a new budget, spent on waiting ones first */
    uv_timer_t rest;    /* resumes listeners after an accept(2) failure */
    bool closing;
    size_t open_handles; /* while closing: handles whose close callback has not run */
    gr_stopped_fn stopped;
    void *stopped_arg;
};

static void hand_on(struct gr_acceptor *a, int fd, struct listener *from)
{
    a->budget--;
    a->fn(a->ctx, from->ctx, fd);
}

static void on_readable(uv_poll_t *h, int status, int events);

static void resume_listeners(struct gr_acceptor *a)
{
    for (size_t i = 0; i < a->n_listeners; i++) {
        struct listener *l = a->listeners[i];
        if (!uv_is_active((uv_handle_t *)&l->poll) && !a->closing)
            uv_poll_start(&l->poll, UV_READABLE, on_readable);
    }
}

static void on_rest_over(uv_timer_t *t)
{
    resume_listeners(t->data);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct listener *l = h->data;
    struct gr_acceptor *a = l->acceptor;
    for (int n = 0; n < GR_ACCEPT_BATCH; n++) {
        if (a->n_waiting == a->cfg.max_waiting) {
            if (a->cfg.waiting_full != NULL)
                (*a->cfg.waiting_full)++;
            uv_poll_stop(&l->poll); /* the kernel's queue holds the rest; drain() resumes */
            return;
        }
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            int err = errno;
            if (a->cfg.errors != NULL)
                (*a->cfg.errors)++;
            if (a->cfg.on_error != NULL)
                a->cfg.on_error(a->ctx, err);
            else
                gr_warn("%s: accept: %s; not accepting for %d ms", a->cfg.name, strerror(err),
                        GR_ACCEPT_RETRY_MS);
            for (size_t i = 0; i < a->n_listeners; i++)
                uv_poll_stop(&a->listeners[i]->poll);
            uv_timer_start(&a->rest, on_rest_over, GR_ACCEPT_RETRY_MS, 0);
            return;
        }
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        if (a->budget > 0 && a->n_waiting == 0) {
            hand_on(a, fd, l);
            continue;
        }
        a->fifo[(a->head + a->n_waiting++) % a->cfg.max_waiting] = (struct waiting){fd, l};
        uv_ref((uv_handle_t *)&a->hand_on); /* work pending: the loop must turn for it */
    }
}

/* End of a loop turn: a new turn's worth of hand-ons, waiting connections first. */
static void drain(uv_check_t *h)
{
    struct gr_acceptor *a = h->data;
    bool had_full_fifo = a->n_waiting == a->cfg.max_waiting;
    a->budget = a->cfg.per_turn;
    while (a->n_waiting > 0 && a->budget > 0) {
        struct waiting w = a->fifo[a->head];
        a->head = (a->head + 1) % a->cfg.max_waiting;
        a->n_waiting--;
        hand_on(a, w.fd, w.from);
    }
    if (a->n_waiting == 0)
        uv_unref((uv_handle_t *)&a->hand_on);
    if (had_full_fifo && a->n_waiting < a->cfg.max_waiting &&
        !uv_is_active((uv_handle_t *)&a->rest))
        resume_listeners(a);
}

struct gr_acceptor *gr_acceptor_new(uv_loop_t *loop, const struct gr_acceptor_config *cfg,
                                    gr_accept_fn fn, void *ctx)
{
    struct gr_acceptor *a = calloc(1, sizeof(*a));
    if (a == NULL || cfg->per_turn == 0 || cfg->max_waiting == 0 ||
        (a->fifo = calloc(cfg->max_waiting, sizeof(*a->fifo))) == NULL) {
        free(a);
        return NULL;
    }
    a->loop = loop;
    a->cfg = *cfg;
    a->fn = fn;
    a->ctx = ctx;
    a->budget = cfg->per_turn;
    uv_check_init(loop, &a->hand_on);
    a->hand_on.data = a;
    uv_check_start(&a->hand_on, drain);
    uv_unref((uv_handle_t *)&a->hand_on);
    uv_timer_init(loop, &a->rest); /* referenced: while it runs, connections wait on it */
    a->rest.data = a;
    return a;
}

/* Says once if the kernel caps our backlog low (Debian's default is 4096). Once per
 * process, whichever acceptor listens first: the cap is the whole system's. */
static void check_somaxconn(void)
{
    static bool checked;
    if (checked)
        return;
    checked = true;
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    long cap = 0;
    if (f == NULL)
        return;
    if (fscanf(f, "%ld", &cap) == 1 && cap < GR_ACCEPT_BACKLOG_ADVISED)
        gr_warn("ws: net.core.somaxconn is %ld: no more console connections than that can wait "
                "to be accepted, so a larger reconnect storm costs consoles 1-3 s of SYN "
                "retries; set net.core.somaxconn = %d (sysctl.d)",
                cap, GR_ACCEPT_BACKLOG);
    fclose(f);
}

int gr_acceptor_listen(struct gr_acceptor *a, const struct sockaddr *sa, void *listener_ctx)
{
    check_somaxconn();
    if (a->n_listeners == GR_ACCEPT_LISTENERS_MAX)
        return -ENOSPC;
    socklen_t len =
        sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int on = 1, v6only = !a->cfg.dual_stack;
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof(bound);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
        (sa->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0) ||
        bind(fd, sa, len) < 0 || listen(fd, GR_ACCEPT_BACKLOG) < 0 ||
        getsockname(fd, (struct sockaddr *)&bound, &bound_len) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    struct listener *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        close(fd);
        return -ENOMEM;
    }
    *l = (struct listener){.fd = fd, .ctx = listener_ctx, .acceptor = a};
    uv_poll_init_socket(a->loop, &l->poll, fd);
    l->poll.data = l;
    uv_poll_start(&l->poll, UV_READABLE, on_readable);
    a->listeners[a->n_listeners++] = l;
    return ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                             : ((struct sockaddr_in *)&bound)->sin_port);
}

size_t gr_acceptor_waiting(const struct gr_acceptor *a)
{
    return a->n_waiting;
}

/* A handle of a's has closed; the last one tells the owner (stop.h). */
static void handle_closed(struct gr_acceptor *a)
{
    if (--a->open_handles == 0)
        a->stopped(a->stopped_arg);
}

static void listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    struct gr_acceptor *a = l->acceptor;
    close(l->fd);
    free(l);
    handle_closed(a);
}

static void own_handle_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

void gr_acceptor_stop(struct gr_acceptor *a, gr_stopped_fn done, void *arg)
{
    if (a->closing)
        return;
    a->closing = true;
    a->stopped = done;
    a->stopped_arg = arg;
    a->open_handles = a->n_listeners + 2;
    for (size_t i = 0; i < a->n_listeners; i++)
        uv_close((uv_handle_t *)&a->listeners[i]->poll, listener_closed);
    a->n_listeners = 0;
    for (; a->n_waiting > 0; a->n_waiting--, a->head = (a->head + 1) % a->cfg.max_waiting)
        close(a->fifo[a->head].fd);
    uv_close((uv_handle_t *)&a->hand_on, own_handle_closed);
    uv_close((uv_handle_t *)&a->rest, own_handle_closed);
}

void gr_acceptor_free(struct gr_acceptor *a)
{
    if (a == NULL)
        return;
    free(a->fifo);
    free(a);
}
