/*
 * cluster_wire.h - an accepted fix as a message of the cluster's position stream, and back.
 *
 * Subject  <cluster_name>.pos.<device>, the device id with every byte outside
 *          [A-Za-z0-9_-] written %XX (a NATS subject token takes no '.', '*', '>' or
 *          blank), so the stream holds each unit under its own subject.
 * Id       Nats-Msg-Id <device, as in the subject>/<fix time in ms>: one fix of one unit
 *          is one id, so a fix published twice (a retry, or a modem that sent it to two
 *          nodes) is stored once.
 * Headers  Gr-Rx: the accepting node's receive time (ms since 1970); Gr-Src: the format
 *          ("nmea", "taip", "json").
 * Body     the fix as a JSON report (docs/ingest.md) with the id, and the time to the
 *          millisecond: the format every node already decodes and the fuzzers already
 *          exercise; numbers with 17 significant digits, so every node decodes exactly the
 *          doubles the accepting node had.
 *
 * Pure: no I/O, no NATS.
 */
#ifndef GPSRELAY_CLUSTER_WIRE_H
#define GPSRELAY_CLUSTER_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "gpsrelay/fix.h"
#include "gpsrelay/json_report.h"

/* Longest subject: a cluster name, ".pos.", and a device id of which every byte is %XX. */
#define GR_WIRE_NAME_MAX    32
#define GR_WIRE_SUBJECT_MAX (GR_WIRE_NAME_MAX + 5 + 3 * GR_DEVICE_ID_MAX)
#define GR_WIRE_ID_MAX      (3 * GR_DEVICE_ID_MAX + 1 + 20)
/* Longest body: the fixed fields with their names, and attrs. */
#define GR_WIRE_BODY_MAX (GR_ATTRS_MAX + 512 + 6 * GR_DEVICE_ID_MAX)

struct gr_wire_msg {
    char subject[GR_WIRE_SUBJECT_MAX + 1];
    char msg_id[GR_WIRE_ID_MAX + 1];
    char rx[24];
    const char *src;
    char body[GR_WIRE_BODY_MAX + 1];
    size_t body_len;
};

/*
 * Encodes fix of device id (at most GR_DEVICE_ID_MAX bytes) received at rx_ms into out,
 * for the cluster named name. Returns 0, or -EINVAL for a name or id out of bounds.
 */
int gr_wire_encode(const char *name, const char *id, const struct gr_fix *fix, int64_t rx_ms,
                   struct gr_wire_msg *out);

/*
 * Decodes a message's body and headers (rx, src: NULL when absent) into out (the device id
 * in out->id, out->fix with its source) and *rx_ms. Returns GR_OK, or the reason it cannot
 * be applied: GR_MALFORMED (the body is no report, a header is missing or wrong) or the
 * JSON report decoder's (json_report.h).
 */
enum gr_reason gr_wire_decode(const char *body, size_t len, const char *rx, const char *src,
                              struct gr_json_report *out, int64_t *rx_ms);

#endif
