#ifndef DM_NODE_SHARE_INTERNAL_H
#define DM_NODE_SHARE_INTERNAL_H

/*
 * Module-only declarations shared by node_share_body.c (canonical body codec,
 * validation, stored record codec) and node_share.c (the service). Pure
 * functions, any thread.
 */
#include "crypto_rsa.h"
#include "dm_buf.h"
#include "net_host.h"
#include "net_msg.h"
#include "node_keys.h"
#include "node_share.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
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

/** The reference's event JSON of a share, exactly as anchored by its origin ("data_share":
 *  data_hash, recipient, timestamp in seconds, share_id, origin). New reference or NULL. */
json_t *node_share__event(const node_share_fields *f);

/*
 * Between the service (node_share.c) and the anchor notices (node_share_anchor.c). All on
 * the loop thread.
 */
typedef struct peer_st peer_st;               /* a ready peer as the service tracks it */
typedef struct share_notices share_notices; /* node_share_anchor.c's state */

/* offered by node_share.c */
const node_share_opts *node_share__opts(const node_share_svc_t *s);
share_notices *node_share__notices(node_share_svc_t *s);
node_share_stats *node_share__stats(node_share_svc_t *s);
bool node_share__closing(const node_share_svc_t *s);
const uint8_t *node_share__self(const node_share_svc_t *s);
/** An origin's key (memory, then STORE_CF_PEERS), with its SPKI; NULL if unknown. Both
 *  stay valid until the service is freed. */
const crypto_rsa_t *node_share__key(node_share_svc_t *s, const uint8_t id[32],
                                    const uint8_t **spki, size_t *spki_len);
/** Ask `ps` for the key of `id` (KEYREQ; bounded and deduplicated per peer). */
void node_share__keyreq(node_share_svc_t *s, peer_st *ps, const uint8_t id[32]);
peer_st *node_share__peer_ref(peer_st *ps);
void node_share__peer_unref(peer_st *ps);
/** The overlay's peer behind `ps`, NULL once it closed. */
net_peer_t *node_share__peer_net(const peer_st *ps);
/** Thread-pool jobs are counted so that closing waits for them; job_end may complete a
 *  pending close (and free the service): call it last. */
void node_share__job_begin(node_share_svc_t *s);
void node_share__job_end(node_share_svc_t *s);

/* offered by node_share_anchor.c */
int node_share__notices_create(share_notices **out);
/** Drop everything queued (the service is closing); jobs in flight finish. */
void node_share__notices_close(node_share_svc_t *s);
void node_share__notices_free(share_notices *n);
void node_share__notices_on_msg(node_share_svc_t *s, peer_st *ps, const net_msg *m,
                                const uint8_t *frame, size_t frame_len);
/** The key of `id` is known now: notices waiting for it go on. */
void node_share__notices_key(node_share_svc_t *s, const uint8_t id[32]);
/** A peer is ready: it gets the notices published or stored lately (it may have missed
 *  them while away). */
void node_share__notices_peer_ready(node_share_svc_t *s, peer_st *ps);
/** Periodic: notices that waited too long for a key are dropped. */
void node_share__notices_tick(node_share_svc_t *s, uint64_t now);
/** Notices queued or being verified (for pending counts). */
size_t node_share__notices_pending(const node_share_svc_t *s);

#endif
