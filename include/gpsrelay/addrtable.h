/*
 * addrtable.h - a bounded hash table keyed by a sender's address (and optionally its
 * port), with least-recently-touched eviction. Entries hold a fixed-size value the
 * caller defines. Preallocated: a full table never allocates, so a flood of spoofed
 * sources costs a fixed amount of memory.
 *
 * Used for ids remembered per sender (identity.h), per-source rate limits (ratelimit.h)
 * and per-source connection counts.
 */
#ifndef GPSRELAY_ADDRTABLE_H
#define GPSRELAY_ADDRTABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct gr_addrtable;

/*
 * A table of at most max entries, each with value_size bytes of value (zeroed when an
 * entry is created). with_port: the key is address and port, else the address only
 * (an IPv4-mapped IPv6 address is keyed as the IPv4 address). NULL on ENOMEM.
 */
struct gr_addrtable *gr_addrtable_new(size_t max, size_t value_size, bool with_port);
void gr_addrtable_free(struct gr_addrtable *t);

/* The value for sa, or NULL when absent or sa is neither IPv4 nor IPv6. */
void *gr_addrtable_get(struct gr_addrtable *t, const struct sockaddr *sa);

/*
 * The value for sa, created when absent (zeroed), and made the most recently touched.
 * When the table is full, the least recently touched entry is forgotten first and
 * *evicted (may be NULL) set true. NULL only for an address family other than IPv4/IPv6.
 */
void *gr_addrtable_touch(struct gr_addrtable *t, const struct sockaddr *sa, bool *evicted);

/* Forgets sa's entry, if any. */
void gr_addrtable_remove(struct gr_addrtable *t, const struct sockaddr *sa);

size_t gr_addrtable_count(const struct gr_addrtable *t);

/*
 * What each address holds (connections, sessions), in a table made with value_size
 * sizeof(unsigned): how many sa holds now (0 when absent); one more (false, and nothing
 * counted, when sa is neither IPv4 nor IPv6); one fewer, the entry forgotten at 0. A table
 * of counts should have room for every address that can hold one, or an eviction forgets a
 * count (the table stays consistent; that source just starts again from 0).
 */
unsigned gr_addrtable_held(struct gr_addrtable *t, const struct sockaddr *sa);
bool gr_addrtable_hold(struct gr_addrtable *t, const struct sockaddr *sa);
void gr_addrtable_release(struct gr_addrtable *t, const struct sockaddr *sa);

#endif
