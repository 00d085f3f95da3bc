#ifndef DM_NODE_RATELIMIT_H
#define DM_NODE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Per-client token buckets for the APIs (DESIGN.md 12: internal 50 req/s
 * burst 100, external 10 req/s burst 20, configurable).
 *
 * Arithmetic is exact: a bucket holds millitokens (1/1000 token) and the
 * clock counts milliseconds, so `rate` tokens/s is exactly `rate` millitokens
 * per ms; there is no rounding and no drift, and after one second exactly
 * `rate` tokens have come back (up to `burst`).
 *
 * Memory is fixed at create: a chained hash table of `max_clients` entries
 * (about 48 bytes each, plus 4 bytes per hash head), never grown. A client is
 * identified by a 128-bit SipHash-2-4 of its string under a random key drawn
 * at create, so a string of any length gets a bucket and an attacker cannot
 * aim clients at one hash chain. When the table is full, a new client evicts
 * first a bucket that has refilled completely (equivalent to an absent one),
 * looking at the NODE_RATELIMIT_EVICT_SCAN least recently used; failing
 * that, the least recently used bucket. Every take, admitted or refused,
 * makes the client most recently used, so a client that keeps hammering while
 * throttled keeps its (empty) bucket under a flood of other clients.
 *
 * Threads: one thread only (the loop thread); no locking inside.
 */
typedef struct node_ratelimit node_ratelimit_t;

/** Upper bound for max_clients (indices are 32-bit; memory stays sane). */
#define NODE_RATELIMIT_MAX_CLIENTS (1u << 22)
/** How many least recently used buckets a new client looks at for a full one. */
#define NODE_RATELIMIT_EVICT_SCAN 32

/**
 * Create a limiter: `rate_per_sec` tokens per second (>= 1), bucket size
 * `burst` (>= 1), at most `max_clients` buckets (1 ..
 * NODE_RATELIMIT_MAX_CLIENTS). DM_EINVAL for a bad argument, DM_ENOMEM,
 * DM_ECRYPTO if no random key could be drawn.
 */
int node_ratelimit_create(node_ratelimit_t **out, uint32_t rate_per_sec, uint32_t burst,
                          size_t max_clients);
/** Free the limiter. NULL-safe. */
void node_ratelimit_destroy(node_ratelimit_t *rl);

/**
 * One request by `client` (borrowed, NUL-terminated, any length; e.g.
 * "key:<id>" or "ip:127.0.0.1") at `now_ms` (a monotonic clock such as
 * uv_now; a value smaller than the client's last one counts as no time
 * passing). true: admitted, one token taken, *retry_after_ms = 0. false: over
 * the limit; *retry_after_ms = milliseconds until a token is available (1 ..
 * 1000). retry_after_ms may be NULL. Never allocates.
 */
bool node_ratelimit_take(node_ratelimit_t *rl, const char *client, uint64_t now_ms,
                         uint32_t *retry_after_ms);

typedef struct {
    uint64_t admitted;  /* takes that got a token */
    uint64_t limited;   /* takes refused */
    uint64_t evictions; /* buckets dropped to make room for a new client */
    size_t clients;     /* buckets in use now (<= max_clients) */
} node_ratelimit_stats;

/** Counters since create. A NULL `rl` gives zeros. */
void node_ratelimit_get_stats(const node_ratelimit_t *rl, node_ratelimit_stats *out);

/** Module-internal (declared here for its vector test): SipHash-2-4 with the
 *  128-bit output of the reference implementation (veorq/SipHash). */
void node__siphash24_128(const uint8_t key[16], const void *in, size_t n, uint8_t out[16]);

#endif
