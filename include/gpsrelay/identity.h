/*
 * identity.h - device ids remembered per sender (docs/ingest.md, device identity).
 *
 * Sierra's $DEVID and Cradlepoint's $PCPTI name the device once; the reports that follow
 * from the same address and port carry no id. This table remembers the id for
 * GR_IDENTITY_TTL_MS. It is bounded, in two classes of at most `max` senders each:
 *
 * - proven: the remembered id found a device in the mapping for a report from the sender
 *   (gr_identity_confirm). Only another proven sender takes its place when the class is
 *   full (the one that reported least recently goes), or the TTL.
 * - unproven: every other sender that named itself. When full, the one named least
 *   recently is forgotten.
 *
 * So a flood of spoofed sources costs a fixed amount of memory and recycles only among
 * unproven senders: the real modems that report keep their ids.
 */
#ifndef GPSRELAY_IDENTITY_H
#define GPSRELAY_IDENTITY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define GR_IDENTITY_TTL_MS (10 * 60 * 1000) /* ten minutes (docs/ingest.md) */
#define GR_IDENTITY_MAX    65536            /* senders per class: about 8 MiB when full */

struct gr_identity;

/* A table for at most max senders in each class, or NULL on ENOMEM. */
struct gr_identity *gr_identity_new(size_t max);
void gr_identity_free(struct gr_identity *t);

/*
 * Remembers id[0..len) for the sender at sa (address and port) as of now_ms. A proven
 * sender naming the same id again stays proven; naming another id, it is unproven until
 * that one proves itself. Returns 1 when another (unproven) sender had to be forgotten to
 * make room, 0 otherwise, -EINVAL for an id longer than GR_DEVICE_ID_MAX or an address
 * family other than IPv4/IPv6.
 */
int gr_identity_put(struct gr_identity *t, const struct sockaddr *sa, const char *id, size_t len,
                    int64_t now_ms);

/* The id remembered for sa, NUL-terminated, if set less than the TTL ago; else NULL. */
const char *gr_identity_get(struct gr_identity *t, const struct sockaddr *sa, int64_t now_ms);

/*
 * The id remembered for sa (gr_identity_get) found a device for a report from sa at
 * now_ms: sa becomes proven, or stays proven as the most recent to report. Returns 1 when
 * another proven sender had to be forgotten to make room, 0 otherwise (sa not remembered
 * included).
 */
int gr_identity_confirm(struct gr_identity *t, const struct sockaddr *sa, int64_t now_ms);

/* Senders remembered, both classes; and the proven ones among them. */
size_t gr_identity_count(const struct gr_identity *t);
size_t gr_identity_proven_count(const struct gr_identity *t);

#endif
