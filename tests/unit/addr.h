/*
 * addr.h - socket addresses from text, for unit tests of address-keyed tables.
 */
#ifndef GR_TEST_ADDR_H
#define GR_TEST_ADDR_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"

/* Either family, by whether text has a ':'; the test addresses are all valid. */
static inline struct sockaddr_storage addr(const char *text, int port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':') != NULL) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        CHECK_INT(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        CHECK_INT(inet_pton(AF_INET, text, &in->sin_addr), 1);
    }
    return ss;
}

#endif
