/*
 * mapping_source.c - which mapping source a configuration names. See mapping_source.h.
 */
#include "gpsrelay/mapping_source.h"

#include "source.h"

/* Every mapping source; config.c makes sure exactly one is configured. */
static const struct gr_mapping_source_ops *const sources[] = {
    &gr_mapping_source_csv,
    &gr_mapping_source_postgres,
};

const struct gr_mapping_source_ops *gr_mapping_source_for(const struct gr_config *cfg)
{
    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++)
        if (sources[i]->configured(cfg))
            return sources[i];
    return NULL;
}
