/*
 * sd.c - sd_notify without libsystemd.
 */
#include "gpsrelay/sd.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "gpsrelay/log.h"

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_addr_len;

int gr_sd_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 0;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(notify_addr.sun_path)) {
        gr_warn("sd: ignoring NOTIFY_SOCKET \"%s\": not a unix socket path", path);
        return -EINVAL;
    }
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, path, len);
    if (path[0] == '@')
        notify_addr.sun_path[0] = '\0'; /* abstract namespace */
    notify_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);

    notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    return notify_fd < 0 ? -errno : 0;
}

void gr_sd_notify(const char *state)
{
    if (notify_fd < 0)
        return;
    if (sendto(notify_fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&notify_addr,
               notify_addr_len) < 0)
        gr_debug("sd: notify failed: %s", strerror(errno));
}

uint64_t gr_sd_watchdog_usec(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (usec == NULL || (pid != NULL && strtol(pid, NULL, 10) != (long)getpid()))
        return 0;
    return strtoull(usec, NULL, 10);
}

void gr_sd_close(void)
{
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
}
