#ifndef DM_CHAIN_ANCHOR_H
#define DM_CHAIN_ANCHOR_H

#include "chain_hex.h"
#include "chain_rpc.h"
#include "crypto_eth.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * The anchoring pipeline (DESIGN.md 9; formats in docs/ANCHORING.md): audit events waiting
 * in the outbox (STORE_CF_OUTBOX, written by node/node_audit.c) are gathered into batches,
 * a batch's Merkle root is anchored by one EIP-1559 transaction calling the audit contract,
 * and once the transaction is mined, its Anchored log checked and the configured finality
 * reached, every event of the batch gets its anchor record (`ev/<seq>`, `share/<id>`) in
 * STORE_CF_ANCHORS, in the same RocksDB batch that deletes its outbox entries.
 *
 * One batch is in flight at a time. Its record (`batch/<id>`, with the signed raw
 * transaction) is written before the transaction is sent, so a restart resends the same
 * bytes; the account nonce is kept in the `state` record. Faults: RPC failures are retried
 * with exponential backoff (nothing is dropped: the outbox persists); a transaction that
 * stays unmined is re-broadcast and, after resubmit_after_ms, replaced with higher fees
 * (same nonce); a transaction removed by a reorg or dropped is re-broadcast, and if its
 * nonce was taken by another transaction the batch is re-signed with a fresh nonce. The
 * records always name the transaction that finally anchored the batch.
 *
 * Threads: everything runs on the loop thread given to chain_anchor_create (callbacks
 * too). Reads and writes of whole batches (up to 4096 events) run on the libuv thread pool;
 * the component never blocks the loop. chain_anchor_proof() may be called from any thread.
 */

typedef struct chain_anchor chain_anchor_t;

/**
 * Sign a 32-byte transaction signing hash with the node's Ethereum key (the daemon passes
 * node_keys_eth_sign). Called on the loop thread; 0 or a DM_E* code.
 */
typedef int (*chain_anchor_sign_fn)(void *arg, const uint8_t hash[32], crypto_eth_sig *sig);

#define CHAIN_ANCHOR_BATCH_MAX 4096u

/** One event of a batch whose records were just written (chain_anchor_final). */
typedef struct {
    uint8_t leaf[32];
    uint64_t audit_seq;
    uint8_t entry_hash[32];
    bool has_share;       /* a data_share event: share_id names its share */
    uint8_t share_id[32];
} chain_anchor_final_item;

/** A batch recorded final: what an anchor notice (node/node_share.h) tells other nodes.
 *  Everything is borrowed for the duration of the call. */
typedef struct {
    uint64_t batch_id;
    uint64_t chain_id;
    uint8_t contract[20];
    uint8_t sender[20];
    uint8_t tx_hash[32]; /* the transaction that anchored the batch */
    uint64_t block_number;
    uint8_t block_hash[32];
    uint64_t log_index;
    uint8_t root[32];
    size_t count;
    const chain_anchor_final_item *items; /* count events, in batch (leaf) order */
} chain_anchor_final;

/** Called on the loop thread right after a batch's records are committed. It must not
 *  close the anchorer. */
typedef void (*chain_anchor_final_fn)(void *arg, const chain_anchor_final *batch);

/* Zero fields take the defaults named. */
typedef struct {
    uint64_t chain_id;         /* required: eth_chainId must equal it at start */
    uint8_t contract[20];      /* the AuditAnchor contract (required, non-zero) */
    uint8_t sender[20];        /* the node's account, whose key `sign` uses (required) */
    chain_anchor_sign_fn sign; /* required */
    void *sign_arg;
    uint32_t batch_max_events;   /* 1..CHAIN_ANCHOR_BATCH_MAX; default 256 */
    uint32_t batch_max_delay_ms; /* flush period; 0: a batch is formed at every kick */
    uint32_t confirmations;      /* head - block + 1 needed before records; default 1 */
    bool use_finalized;          /* wait for the `finalized` block tag instead */
    uint32_t poll_ms;            /* receipt / head polling; default 500 */
    chain_u256 max_fee_cap_wei;  /* ceiling of maxFeePerGas; default 1000 gwei */
    chain_u256 priority_fee_wei; /* maxPriorityFeePerGas; default 1 gwei */
    uint32_t resubmit_after_ms;  /* unmined this long: fee bump (>= 12.5%); default 60000 */
    uint32_t rebroadcast_ms;     /* unmined this long since the last send: resend the same
                                  * bytes (dropped from a pool, removed by a reorg);
                                  * default 10000 */
    uint32_t retry_min_ms;       /* backoff after an RPC failure; default 500 */
    uint32_t retry_max_ms;       /* backoff ceiling; default 30000 */
    uint32_t gas_margin_pct;     /* added to eth_estimateGas; default 25 */
    chain_anchor_final_fn on_final; /* optional: each batch once recorded (anchor notices) */
    void *on_final_arg;
} chain_anchor_opts;

/** Counters for /v1/status and metrics (a plain value). */
typedef struct {
    uint64_t pending_events;  /* outbox entries not anchored yet: counted at each batch
                               * formation (up to 65536 beyond the batch), plus the
                               * events announced by kicks since */
    uint64_t batches_sent;    /* batches whose first transaction was sent */
    uint64_t batches_final;   /* batches recorded */
    uint64_t events_anchored; /* events recorded */
    bool has_last_tx;
    uint8_t last_tx_hash[32]; /* transaction of the last recorded batch */
    uint64_t last_block;      /* its block */
    uint64_t last_latency_ms; /* batch formed -> records written, for the last batch */
    uint64_t resubmits;       /* fee bumps and re-signings with a new nonce */
    uint64_t rebroadcasts;    /* the same bytes sent again */
    uint64_t reorgs;          /* mined transactions that disappeared before finality */
    uint64_t rpc_errors;      /* failed RPC calls (each one retried) */
    uint64_t nonce_gaps;      /* batches re-signed because the chain's next nonce fell below
                               * theirs (transactions lost beyond finality) */
    bool in_flight;           /* a batch is being anchored */
    bool ready;               /* chain id and contract checked; the pipeline runs */
    bool halted;              /* stopped on a configuration or storage error (see logs) */
    int last_error;           /* last error (DM_E*), 0 if none */
} chain_anchor_stats;

/** Fires once when the start-up checks end: DM_OK (running), DM_ECONFIG (wrong chain id,
 *  no AuditAnchor contract at the address: the pipeline is halted), DM_ECLOSED (closed
 *  before the checks ended). */
typedef void (*chain_anchor_ready_cb)(chain_anchor_t *a, int status, void *arg);
/** Fires once the component is freed. */
typedef void (*chain_anchor_close_cb)(void *arg);

/**
 * Create the anchorer. `loop`, `store` and `rpc` are borrowed and must outlive it (close
 * the anchorer before the rpc client). `opts` is copied. Nothing runs until
 * chain_anchor_start. DM_EINVAL for a missing or out-of-range option; DM_ENOMEM; DM_EIO
 * (uv timer init).
 */
int chain_anchor_create(chain_anchor_t **out, uv_loop_t *loop, store_t *store, chain_rpc_t *rpc,
                        const chain_anchor_opts *opts);

/**
 * Load the `state` record and the pending batch (synchronous, small reads), then start:
 * eth_chainId must equal opts.chain_id and the contract must answer version() = 1 (checked
 * with retries while the endpoint is unreachable), then a pending batch is resumed by
 * resending its stored raw transaction, and new batches are formed from the outbox.
 * `cb` (optional) reports the outcome of the checks; with DM_ECLOSED it fires from inside
 * chain_anchor_close's completion, and `a` must not be used any more. Returns DM_OK,
 * DM_EINVAL (started twice), DM_ECORRUPT (an unreadable record), DM_ECONFIG (the pending
 * batch was signed for another chain id or contract: finish it with that configuration
 * first), DM_ESTORE.
 */
int chain_anchor_start(chain_anchor_t *a, chain_anchor_ready_cb cb, void *arg);

/**
 * Tell the anchorer that a commit added `added` outbox entries (0 if unknown: the outbox
 * is read at the next flush). A batch is formed at once when batch_max_events are pending
 * (or batch_max_delay_ms is 0), otherwise at the next flush (every batch_max_delay_ms), or
 * right after the batch in flight is recorded. Loop thread only; never fails.
 */
void chain_anchor_kick(chain_anchor_t *a, size_t added);

/** Current counters. Loop thread. */
void chain_anchor_stats_get(const chain_anchor_t *a, chain_anchor_stats *out);

/**
 * Stop and free asynchronously: timers closed, RPC calls in flight detached (their replies
 * are ignored), a store job in flight finished; then `cb(arg)` (optional) fires on the
 * loop. A batch in flight stays recorded and resumes at the next start. NULL-safe.
 */
void chain_anchor_close(chain_anchor_t *a, chain_anchor_close_cb cb, void *arg);

/**
 * Read the anchor record of an event (`ev/<seq>`, docs/ANCHORING.md): by audit seq, or by
 * share id when `share_id` (32 bytes) is non-NULL (then `audit_seq` is ignored). On DM_OK
 * *record is a new reference. DM_ENOTFOUND if not anchored (DM_EAGAIN by seq while the
 * event is still pending in the outbox), DM_ECORRUPT, DM_ESTORE, DM_ENOMEM. Any thread.
 */
int chain_anchor_proof(store_t *store, uint64_t audit_seq, const uint8_t *share_id,
                       json_t **record);

/** Keys of STORE_CF_ANCHORS (docs/ANCHORING.md). `out` sizes: CHAIN_ANCHOR_KEY_MAX. */
#define CHAIN_ANCHOR_KEY_MAX 48
size_t chain_anchor_key_batch(uint8_t *out, uint64_t id);
size_t chain_anchor_key_ev(uint8_t *out, uint64_t seq);
size_t chain_anchor_key_share(uint8_t *out, const uint8_t share_id[32]);
#define CHAIN_ANCHOR_KEY_STATE "state"

/** The calldata of anchor(root, count): 0xdb2c4aca || root || uint64 count as a 32-byte
 *  word (68 bytes). */
#define CHAIN_ANCHOR_CALLDATA_LEN 68
void chain_anchor_calldata(uint8_t out[CHAIN_ANCHOR_CALLDATA_LEN], const uint8_t root[32],
                           uint64_t count);
/** keccak256("Anchored(address,bytes32,uint64,uint256)"). */
extern const uint8_t chain_anchor_event_topic[32];

#endif
