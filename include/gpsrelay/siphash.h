/*
 * siphash.h - a keyed hash for tables whose keys outsiders choose.
 *
 * With an unkeyed hash (FNV-1a, say) anyone who knows the table layout can pick keys that
 * share one bucket and turn every lookup into a walk of a long chain (hash flooding).
 * SipHash with a secret 128-bit key drawn once per table prevents that; the 1-3 variant is
 * the one Rust's HashMap and CPython's str hash use.
 */
#ifndef GPSRELAY_SIPHASH_H
#define GPSRELAY_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-1-3 of in[0..len) under the key (k0, k1). */
uint64_t gr_siphash13(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len);

#endif
