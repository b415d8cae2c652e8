/*
 * test_acceptor.c - the acceptor on real loopback sockets: connections are taken from
 * the kernel at once and handed on in arrival order, at most per_turn per loop turn; a
 * full FIFO leaves the rest in the kernel's queue; stopping closes what still waits and
 * tells its done callback once, later, when every handle is closed (stop.h); the config
 * decides where failures are counted and told, and whether [::] takes IPv4.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "gpsrelay/acceptor.h"
#include "gpsrelay/stats.h"

#define CLIENTS 6

struct consumer {
    int fds[CLIENTS];
    int n;
};

static void take(void *ctx, void *listener_ctx, int fd)
{
    struct consumer *c = ctx;
    CHECK(listener_ctx == &c->n);
    CHECK(c->n < CLIENTS);
    if (c->n < CLIENTS)
        c->fds[c->n++] = fd;
}

static int client(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    return fd;
}

/* Turns the loop until nothing is ready: every queued connection has been looked at. */
static void settle(uv_loop_t *loop)
{
    for (int i = 0; i < 20; i++)
        uv_run(loop, UV_RUN_NOWAIT);
}

/* The peer of fd closed its end: reads see EOF or a reset. */
static int peer_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 1000) != 1)
        return 0;
    char b;
    return recv(fd, &b, 1, MSG_DONTWAIT) <= 0;
}

/* As the consoles' acceptor counts (ws.c), with a pace of our own. */
static struct gr_acceptor_config paced(size_t per_turn, size_t max_waiting)
{
    return (struct gr_acceptor_config){.name = "test",
                                       .per_turn = per_turn,
                                       .max_waiting = max_waiting,
                                       .errors = &gr_stats.accept_errors,
                                       .waiting_full = &gr_stats.accept_waiting_full};
}

static struct gr_acceptor *start_with(uv_loop_t *loop, const struct gr_acceptor_config *cfg,
                                      struct consumer *c, int *port)
{
    uv_loop_init(loop);
    struct gr_acceptor *a = gr_acceptor_new(loop, cfg, take, c);
    CHECK(a != NULL);
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    *port = gr_acceptor_listen(a, (struct sockaddr *)&lo, &c->n);
    CHECK(*port > 0);
    return a;
}

static struct gr_acceptor *start(uv_loop_t *loop, size_t per_turn, size_t max_waiting,
                                 struct consumer *c, int *port)
{
    struct gr_acceptor_config cfg = paced(per_turn, max_waiting);
    return start_with(loop, &cfg, c, port);
}

/* A stop's done callback: counts the calls, and frees the acceptor from inside it, as the
 * contract allows. */
struct stopped {
    struct gr_acceptor *a;
    int calls;
};

static void on_stopped(void *arg)
{
    struct stopped *s = arg;
    s->calls++;
    gr_acceptor_free(s->a);
}

/* The test's own descriptors, once the acceptor is gone. */
static void release(uv_loop_t *loop, struct consumer *c, int *clients, int n_clients)
{
    CHECK_INT(uv_loop_close(loop), 0);
    for (int i = 0; i < n_clients; i++)
        close(clients[i]);
    for (int i = 0; i < c->n; i++)
        close(c->fds[i]);
}

/* Stops a: done comes later, from the loop, once; the loop then has nothing left. */
static void stop(uv_loop_t *loop, struct gr_acceptor *a, struct consumer *c, int *clients,
                 int n_clients)
{
    struct stopped s = {.a = a};
    gr_acceptor_stop(a, on_stopped, &s);
    CHECK_INT(s.calls, 0);
    CHECK_INT(uv_run(loop, UV_RUN_DEFAULT), 0);
    CHECK_INT(s.calls, 1);
    release(loop, c, clients, n_clients);
}

static void test_paced_hand_on(void)
{
    uv_loop_t loop;
    struct consumer c = {.n = 0};
    int port;
    struct gr_acceptor *a = start(&loop, 2, 3, &c, &port);

    /* The same port again: the bind error comes back as such. */
    struct sockaddr_in same = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_INT(gr_acceptor_listen(a, (struct sockaddr *)&same, NULL), -EADDRINUSE);

    int clients[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        clients[i] = client(port);
    /* One loop turn: two handed on at once, three accepted into the FIFO (full: the
     * sixth stays with the kernel), and at the end of the turn two more from the FIFO. */
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_INT(c.n, 4);
    CHECK_INT(gr_acceptor_waiting(a), 1);
    CHECK_INT(gr_stats.accept_waiting_full, 1);
    /* The next turn: the listener was resumed and takes the sixth; both are handed on. */
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_INT(c.n, 6);
    CHECK_INT(gr_acceptor_waiting(a), 0);
    for (int i = 0; i < c.n; i++) {
        /* In arrival order: c.fds[i] is the server end of clients[i]. */
        char b = (char)('a' + i), got = 0;
        CHECK(send(clients[i], &b, 1, 0) == 1);
        CHECK(recv(c.fds[i], &got, 1, 0) == 1);
        CHECK_INT(got, b);
    }
    stop(&loop, a, &c, clients, CLIENTS);
}

/* Stopping closes the connections still waiting at once; handed-on ones are the
 * consumer's. A second stop is a no-op: done is told once, for the first. */
static void test_close_waiting(void)
{
    uv_loop_t loop;
    struct consumer c = {.n = 0};
    int port;
    struct gr_acceptor *a = start(&loop, 1, 8, &c, &port);
    int clients[4];
    for (int i = 0; i < 4; i++)
        clients[i] = client(port);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_INT(c.n, 2);
    CHECK_INT(gr_acceptor_waiting(a), 2);
    struct stopped first = {.a = a}, second = {.a = a};
    gr_acceptor_stop(a, on_stopped, &first);
    gr_acceptor_stop(a, on_stopped, &second);
    CHECK(peer_closed(clients[2]));
    CHECK(peer_closed(clients[3]));
    CHECK_INT(first.calls, 0);
    CHECK_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_INT(first.calls, 1);
    CHECK_INT(second.calls, 0);
    CHECK(!peer_closed(clients[0]));
    CHECK(!peer_closed(clients[1]));
    release(&loop, &c, clients, 4);
}

/* Each failure told to on_error, with its errno; ctx is the acceptor's. */
static int told_errors, told_errno;

static void told(void *ctx, int err)
{
    struct consumer *c = ctx;
    CHECK_INT(c->n, 0); /* the consumer's, before anything was handed on */
    told_errors++;
    told_errno = err;
}

/* Out of descriptors: accept(2) fails, the failure is counted, the listeners rest for
 * GR_ACCEPT_RETRY_MS instead of spinning, then take the connection that waited. */
static void out_of_descriptors(const struct gr_acceptor_config *cfg, uint64_t *counter)
{
    uv_loop_t loop;
    struct consumer c = {.n = 0};
    int port;
    struct gr_acceptor *a = start_with(&loop, cfg, &c, &port);
    int clients[1] = {client(port)};
    struct rlimit saved, tight;
    getrlimit(RLIMIT_NOFILE, &saved);
    tight = saved;
    tight.rlim_cur = (rlim_t)clients[0] + 1; /* no descriptor above the client's is free */
    setrlimit(RLIMIT_NOFILE, &tight);
    uint64_t errors = *counter;
    uv_run(&loop, UV_RUN_NOWAIT);
    setrlimit(RLIMIT_NOFILE, &saved);
    CHECK_INT(*counter, errors + 1);
    CHECK_INT(c.n, 0);
    uv_run(&loop, UV_RUN_NOWAIT); /* resting: the connection is left alone */
    CHECK_INT(c.n, 0);
    CHECK_INT(*counter, errors + 1);
    uv_run(&loop, UV_RUN_ONCE); /* the rest timer */
    settle(&loop);
    CHECK_INT(c.n, 1);
    stop(&loop, a, &c, clients, 1);
}

static void test_out_of_descriptors(void)
{
    struct gr_acceptor_config cfg = paced(8, 8);
    told_errors = 0;
    out_of_descriptors(&cfg, &gr_stats.accept_errors);
    CHECK_INT(told_errors, 0); /* no on_error: logged by the acceptor */
}

/* Another user's counters and on_error: the failure goes there and is told, with its
 * errno; the consoles' counters do not move. */
static void test_own_counters(void)
{
    uint64_t errors = 0, waiting_full = 0;
    uint64_t consoles_errors = gr_stats.accept_errors;
    uint64_t consoles_full = gr_stats.accept_waiting_full;
    struct gr_acceptor_config cfg = {.name = "ingest",
                                     .per_turn = 8,
                                     .max_waiting = 8,
                                     .errors = &errors,
                                     .waiting_full = &waiting_full,
                                     .on_error = told};
    told_errors = 0;
    out_of_descriptors(&cfg, &errors);
    CHECK_INT(told_errors, 1);
    CHECK_INT(told_errno, EMFILE);

    /* A full FIFO counts there too (paced as in test_paced_hand_on). */
    uv_loop_t loop;
    struct consumer c = {.n = 0};
    int port;
    cfg.per_turn = 2;
    cfg.max_waiting = 3;
    struct gr_acceptor *a = start_with(&loop, &cfg, &c, &port);
    int clients[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        clients[i] = client(port);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_INT(c.n, 4);
    CHECK_INT(waiting_full, 1);
    stop(&loop, a, &c, clients, CLIENTS);
    CHECK_INT(gr_stats.accept_errors, consoles_errors);
    CHECK_INT(gr_stats.accept_waiting_full, consoles_full);
}

/*
 * [::]: without dual_stack an IPv6 listener is IPv6 only, so it can stand beside an IPv4
 * one on the same port (the consoles' listen_ws); with dual_stack it takes IPv4
 * connections itself and the IPv4 address is its own (listen_tcp [::]:PORT and its IPv4
 * modems). An IPv4 client gets through either way. The port is picked where both
 * families are checked (the IPv4 listener first, or the dual-stack one), so it cannot
 * collide with some other IPv4 socket on this machine.
 */
static void any_address(bool dual_stack)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct consumer c = {.n = 0};
    struct gr_acceptor_config cfg = paced(4, 4);
    cfg.dual_stack = dual_stack;
    struct gr_acceptor *a = gr_acceptor_new(&loop, &cfg, take, &c);
    struct sockaddr_in any4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    struct sockaddr_in6 any6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
    int port = dual_stack ? gr_acceptor_listen(a, (struct sockaddr *)&any6, &c.n)
                          : gr_acceptor_listen(a, (struct sockaddr *)&any4, &c.n);
    int clients[1] = {-1};
    CHECK(port > 0 || port == -EAFNOSUPPORT || port == -EADDRNOTAVAIL);
    any4.sin_port = any6.sin6_port = htons((uint16_t)port);
    int second = port <= 0    ? port
                 : dual_stack ? gr_acceptor_listen(a, (struct sockaddr *)&any4, &c.n)
                              : gr_acceptor_listen(a, (struct sockaddr *)&any6, &c.n);
    if (port == -EAFNOSUPPORT || port == -EADDRNOTAVAIL || second == -EAFNOSUPPORT ||
        second == -EADDRNOTAVAIL) {
        fprintf(stderr, "no IPv6 here: [::] not checked\n");
    } else {
        CHECK_INT(second, dual_stack ? -EADDRINUSE : port);
        clients[0] = client(port);
        settle(&loop);
        CHECK_INT(c.n, 1);
    }
    stop(&loop, a, &c, clients, clients[0] >= 0 ? 1 : 0);
}

int main(void)
{
    test_paced_hand_on();
    test_close_waiting();
    test_out_of_descriptors();
    test_own_counters();
    any_address(false);
    any_address(true);
    return check_result("test_acceptor");
}
