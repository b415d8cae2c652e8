/*
 * fix.c - metric labels of the rejection reasons, from the GR_REASONS table in fix.h.
 */
#include "gpsrelay/fix.h"

static const char *const reason_labels[GR_REASON_COUNT] = {
#define GR_REASON_LABEL(name, label) [GR_##name] = label,
    GR_REASONS(GR_REASON_LABEL)
#undef GR_REASON_LABEL
};

const char *gr_reason_label(enum gr_reason r)
{
    /* An out-of-range value is a bug upstream, but a metric label must never be NULL. */
    if ((unsigned)r >= GR_REASON_COUNT) {
        return "unknown";
    }
    return reason_labels[r];
}
