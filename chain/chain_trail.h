#ifndef DM_CHAIN_TRAIL_H
#define DM_CHAIN_TRAIL_H

#include "chain_rpc.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The on-chain audit trail (docs/ANCHORING.md, "Listing the trail"): every
 * Anchored(address indexed sender, bytes32 indexed root, uint64 count, uint256 blockTime)
 * event of an AuditAnchor contract in a block range, optionally of one sender, read with
 * eth_getLogs in pages of blocks.
 *
 * Paging: the range [from, to] is asked page by page, starting with page_blocks blocks.
 * When the endpoint refuses a page as too large (a JSON-RPC error about the block range or
 * the number or size of results, as providers answer for wide eth_getLogs queries, HTTP
 * 413, or a reply above the client's max_reply_bytes), the page is halved and asked again;
 * after a page succeeds it doubles again, up to page_blocks. A single block that is still
 * refused, or more than max_calls eth_getLogs calls, ends the listing with an error.
 *
 * Decoding is strict: every log must come from the contract, carry exactly the topics
 * [keccak(signature), sender, root] (the sender left-padded with zeros, and equal to the
 * filter's sender when there is one), data of exactly 64 bytes (uint64 count, uint256
 * blockTime, both within 64 bits), lie in the page asked for, and follow the previous log
 * in (block, log index) order. A log that breaks any of this is DM_EPARSE with a message
 * naming the field; a log flagged "removed" (a reorg) is skipped and counted.
 */

/** The event's signature; topic0 is its keccak-256. */
#define CHAIN_TRAIL_EVENT_SIG "Anchored(address,bytes32,uint64,uint256)"
/** Default first page, in blocks. */
#define CHAIN_TRAIL_PAGE_DEFAULT 5000u
/** Default bound on eth_getLogs calls for one listing. */
#define CHAIN_TRAIL_MAX_CALLS_DEFAULT 100000u
/** Default bound on the anchors one listing may return (DM_ELIMIT above). */
#define CHAIN_TRAIL_MAX_ANCHORS_DEFAULT (1u << 20)
/** Message buffer of a result (messages are truncated to fit). */
#define CHAIN_TRAIL_MSG_MAX 320

/** One anchor on the chain. */
typedef struct {
    uint64_t block_number;
    uint8_t block_hash[32];
    uint8_t tx_hash[32];
    uint64_t log_index;
    uint8_t sender[20];
    uint8_t root[32];
    uint64_t count;      /* leaves of the anchored Merkle tree */
    uint64_t block_time; /* the event's blockTime: the including block's timestamp */
} chain_trail_anchor;

/** What to list. Pointers are borrowed until the listing has started (copied). */
typedef struct {
    const uint8_t *contract; /* 20 bytes; required */
    const uint8_t *sender;   /* 20 bytes, or NULL for every sender */
    uint64_t from_block;
    bool to_latest;         /* true: up to the head when the listing starts */
    uint64_t to_block;      /* when !to_latest; >= from_block; above the head it is capped */
    uint64_t page_blocks;   /* first page; 0: CHAIN_TRAIL_PAGE_DEFAULT */
    uint32_t max_calls;     /* 0: CHAIN_TRAIL_MAX_CALLS_DEFAULT */
    size_t max_anchors;     /* 0: CHAIN_TRAIL_MAX_ANCHORS_DEFAULT */
} chain_trail_query;

/** The outcome of a listing. Free with chain_trail_result_free. */
typedef struct {
    chain_trail_anchor *anchors; /* n entries in (block, log index) order */
    size_t n, cap;
    uint64_t events;     /* sum of the anchors' counts */
    uint64_t from_block; /* the range asked, to_block resolved and capped at the head */
    uint64_t to_block;
    uint64_t head;       /* eth_blockNumber when the listing started */
    uint64_t next_block; /* first block not listed yet (to_block + 1 when complete) */
    uint32_t calls;      /* eth_getLogs calls made */
    uint32_t splits;     /* pages halved after a refusal */
    uint64_t removed;    /* logs flagged removed, skipped */
    char msg[CHAIN_TRAIL_MSG_MAX]; /* on failure: what went wrong (printable ASCII) */
} chain_trail_result;

/** Release the anchors and reset the struct to zero. NULL-safe. */
void chain_trail_result_free(chain_trail_result *r);

/**
 * Decode one log as an Anchored event of `contract` (20 bytes), from `sender` if not NULL.
 * Pure. DM_OK and *out filled, or DM_EPARSE with `err` (if not NULL) naming the field
 * ("address", "topics", "topic0", "topic1 (sender)", "data", "count", "blockTime").
 * The log's "removed" flag is not looked at (the caller decides).
 */
int chain_trail_decode(const chain_rpc_log *lg, const uint8_t contract[20], const uint8_t *sender,
                       chain_trail_anchor *out, char err[CHAIN_TRAIL_MSG_MAX]);

/**
 * Add the logs an eth_getLogs call returned for blocks [lo, hi] of query `q` to `res`:
 * each decoded (chain_trail_decode), in that range (else "blockNumber"), after the last
 * anchor already in `res` (else "logIndex": out of order or repeated); removed logs are
 * skipped and counted. Pure. DM_OK; DM_EPARSE (res->msg names the log and the field;
 * nothing of this page is kept); DM_ELIMIT (more than the query's max_anchors); DM_ENOMEM.
 */
int chain_trail_add_page(chain_trail_result *res, const chain_trail_query *q, uint64_t lo,
                         uint64_t hi, const chain_rpc_logs *logs);

/** True if a failed eth_getLogs call means "ask for fewer blocks" (see the paging rule). */
bool chain_trail_refused_as_too_large(int status, const chain_rpc_error *err);

/** Completion of chain_trail_list, on the loop thread, exactly once. `res` is the one given
 *  to chain_trail_list (filled; on failure res->msg says why and the anchors listed before
 *  the failure are kept). */
typedef void (*chain_trail_cb)(int status, chain_trail_result *res, void *arg);

/**
 * Start listing with `rpc`: eth_blockNumber, then eth_getLogs page by page. `res`
 * (caller's, zeroed here) must stay valid until `cb` fires. Returns DM_OK and then `cb`
 * fires exactly once, later, with DM_OK or: DM_EINVAL (from_block above the head: res->msg
 * says so), DM_EPARSE (a malformed log), DM_ELIMIT (max_calls or max_anchors reached), the
 * endpoint's error (DM_ECONN, DM_ETIMEDOUT, DM_EPROTO, DM_ETOOBIG for a single block whose
 * logs do not fit, DM_ECLOSED, …). Or an error at once and `cb` never fires: DM_EINVAL (no
 * contract, to_block below from_block), DM_ENOMEM, or chain_rpc_call's errors.
 * Loop thread only.
 */
int chain_trail_list(chain_rpc_t *rpc, const chain_trail_query *q, chain_trail_result *res,
                     chain_trail_cb cb, void *arg);

/**
 * chain_trail_list against the endpoint `url` on a private uv loop, blocking until done
 * (for the CLI; never on a daemon loop). `opts` may be NULL (chain_rpc defaults). Returns
 * the listing's status (as chain_trail_list), DM_EINVAL for a bad URL, DM_EIO (uv loop).
 */
int chain_trail_run(const char *url, const chain_trail_query *q, const chain_rpc_opts *opts,
                    chain_trail_result *res);

/** One anchor as JSON: {"block_number","block_hash","tx_hash","log_index","sender","root",
 *  "count","block_time"} (hashes "0x" + hex except root, 64 hex; sender EIP-55). New
 *  reference, NULL on allocation failure. */
json_t *chain_trail_anchor_json(const chain_trail_anchor *a);

#endif
