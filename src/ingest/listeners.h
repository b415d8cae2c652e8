/*
 * listeners.h - the ingest listeners, private to src/ingest/: each receives bytes from its
 * sockets and hands them to the pipeline (pipeline.h); ingest.c starts and stops them.
 */
#ifndef GR_INGEST_LISTENERS_H
#define GR_INGEST_LISTENERS_H

#include "pipeline.h"

/* udp.c: a listen_udp socket; closing every one; the datagrams the kernel dropped at their
 * full receive buffers (SO_MEMINFO). */
int gr_ingest_udp_start(struct gr_ingest *in, const struct gr_addr *a);
void gr_ingest_udp_stop(struct gr_ingest *in);
uint64_t gr_ingest_udp_drops(const struct gr_ingest *in);

/*
 * tcp.c: gr_ingest_tcp_init readies what modem connections need whether or not any
 * listen_tcp is set (-ENOMEM or 0); gr_ingest_tcp_start listens on one listen_tcp address;
 * gr_ingest_tcp_set_idle applies tcp_idle_timeout from in->cfg; gr_ingest_tcp_stop closes
 * the listeners and lets every connection go; gr_ingest_tcp_free frees what is left.
 */
int gr_ingest_tcp_init(struct gr_ingest *in);
int gr_ingest_tcp_start(struct gr_ingest *in, const struct gr_addr *a);
void gr_ingest_tcp_set_idle(struct gr_ingest *in);
void gr_ingest_tcp_stop(struct gr_ingest *in);
void gr_ingest_tcp_free(struct gr_ingest *in);

#endif
