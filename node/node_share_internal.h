#ifndef DM_NODE_SHARE_INTERNAL_H
#define DM_NODE_SHARE_INTERNAL_H

/*
 * Module-only declarations shared by node_share_body.c (canonical body codec,
 * validation, stored record codec) and node_share.c (the service). Pure
 * functions, any thread.
 */
#include "dm_buf.h"
#include "node_keys.h"
#include "node_share.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

#define NODE_SHARE_FORMAT 1
#define NODE_SHARE_AMOUNT_MAX_DIGITS 30

/*
 * A strict msgpack reader over a borrowed byte range. Every reader accepts only
 * the shortest encoding of its value (what msgpack-c's packer writes), checks
 * declared lengths against the bytes that remain before using them, and never
 * allocates. Errors: DM_EPARSE (malformed, wrong type, non-shortest, truncated),
 * DM_ETOOBIG (a bin/str longer than the caller's maximum).
 */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} share_rd;

/** Array header with exactly `count` elements. */
int node_share__rd_array(share_rd *r, uint32_t count);
/** Unsigned integer (positive fixint, uint8/16/32/64). Signed types are rejected. */
int node_share__rd_uint(share_rd *r, uint64_t *v);
/** bin 8/16/32 of at most `max` bytes (DM_ETOOBIG beyond); the slice borrows the input. */
int node_share__rd_bin(share_rd *r, const uint8_t **p, size_t *n, size_t max);
/** fixstr/str 8/16/32 of at most `max` bytes. */
int node_share__rd_str(share_rd *r, const uint8_t **p, size_t *n, size_t max);
/** bool (0xc2/0xc3). */
int node_share__rd_bool(share_rd *r, int *v);

/**
 * Read only the header of a body (format, origin, seq) without validating the
 * rest: used to check that a sync page stays in its requested range before
 * the full decode. DM_EPARSE / DM_EINVAL.
 */
int node_share__body_peek(const uint8_t *body, size_t n, uint8_t origin[32], uint64_t *seq);

/**
 * Stored record (STORE_CF_SHARES value): msgpack [sealed body (bin), signature
 * (bin), received_ms (uint)]. encode appends to `out`; decode borrows slices of
 * `v` (DM_ECORRUPT if the value is not exactly such an array).
 */
int node_share__record_encode(dm_buf *out, const uint8_t *sealed, size_t sealed_len,
                              const uint8_t *sig, size_t sig_len, uint64_t received_ms);
int node_share__record_decode(const uint8_t *v, size_t n, const uint8_t **sealed,
                              size_t *sealed_len, const uint8_t **sig, size_t *sig_len,
                              uint64_t *received_ms);

/**
 * Re-seal every stored share whose payload is not under the current data key
 * version (after node_keys_rotate), in atomic batches of at most 256 records;
 * the signature and received time are kept. Safe to interrupt and run again.
 * *moved counts the records rewritten; *total (may be NULL) the records seen.
 * For `keys reencrypt`: run with the daemon stopped (it holds the store).
 * DM_ECORRUPT / DM_ETAMPER if a record cannot be opened (nothing after it is
 * rewritten; earlier batches stay committed).
 */
int node_share__reencrypt(store_t *store, const node_keys_t *keys, uint64_t *moved,
                          uint64_t *total);

#endif
