#ifndef DM_CHAIN_VERIFY_H
#define DM_CHAIN_VERIFY_H

#include "chain_rpc.h"
#include "crypto_merkle.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Verification of a proof bundle (docs/ANCHORING.md, "Proof bundle"; DESIGN.md decision 10):
 * the trail from one audit event to an anchor on the chain, checked with nothing but the
 * bundle and, for the on-chain part, a JSON-RPC endpoint.
 *
 *   chain_verify_bundle_parse   strict parse of the bundle JSON (pure)
 *   chain_verify_offline        event -> leaf -> Merkle root, origin identity and the
 *                               RSA-PSS binding of its Ethereum address (pure, CPU only:
 *                               one RSA verification, so keep it off the event loop in the
 *                               daemon)
 *   chain_verify_online         the chain: chain id, receipt, block, log, sender,
 *                               confirmations (async, on the chain_rpc client's loop)
 *   chain_verify_run            all of the above, synchronously, on a private uv loop (the
 *                               `dmnode verify proof FILE --rpc URL` command)
 *
 * Every check lands in a chain_verify_report under a stable name with PASS, FAIL or SKIP
 * (not run because something it depends on failed) and, for a failure, a message naming
 * what did not match ("merkle root mismatch: path gives X, bundle says Y", "log not emitted
 * by contract 0x…"). The verdict is a pass only if every check ran and passed.
 */

/** Longest bundle text accepted (DM_ETOOBIG above). */
#define CHAIN_VERIFY_BUNDLE_MAX (256u * 1024u)
/** The bundle's "format" member. */
#define CHAIN_VERIFY_FORMAT "dmnode-proof-v1"
/** Message buffer of each check (messages are truncated to fit). */
#define CHAIN_VERIFY_MSG_MAX 320
/** SPKI DER and binding signature bounds (RSA 2048/3072 keys). */
#define CHAIN_VERIFY_SPKI_MAX 1024
#define CHAIN_VERIFY_SIG_MAX 512

/** A parsed bundle. Every field was validated for syntax and range; nothing was verified. */
typedef struct {
    uint64_t chain_id; /* >= 1 */
    uint8_t contract[20];
    json_t *event; /* owned: the event object as parsed (duplicate keys, reals refused) */
    uint8_t leaf[32];
    uint64_t audit_seq;     /* informational: the origin's audit seq, not covered by the anchor */
    uint8_t entry_hash[32]; /* informational, as audit_seq */
    crypto_merkle_proof merkle; /* index, count, len = number of siblings, sib[] */
    uint8_t root[32];
    struct {
        uint8_t tx_hash[32];
        uint64_t block_number;
        uint8_t block_hash[32];
        uint64_t log_index;
        uint8_t sender[20];
    } anchor;
    struct {
        char node_id[65]; /* 64 lower-case hex characters */
        uint8_t spki[CHAIN_VERIFY_SPKI_MAX];
        size_t spki_len;
        uint8_t eth_address[20];
        uint8_t eth_binding[CHAIN_VERIFY_SIG_MAX];
        size_t eth_binding_len;
    } origin;
} chain_verify_bundle;

/** The checks, in the order they run. The names are stable (JSON output, tests). */
typedef enum {
    CHAIN_VERIFY_CHECK_FORMAT = 0,    /* "format": the bundle parses */
    CHAIN_VERIFY_CHECK_LEAF,          /* "leaf": leaf = SHA256(0x00 || canonical(event)) */
    CHAIN_VERIFY_CHECK_MERKLE,        /* "merkle": (index, count, siblings) lead leaf to root */
    CHAIN_VERIFY_CHECK_NODE_ID,       /* "node_id": node_id = SHA-256(spki) */
    CHAIN_VERIFY_CHECK_ORIGIN,        /* "origin": event.origin = node_id */
    CHAIN_VERIFY_CHECK_BINDING,       /* "eth_binding": RSA-PSS over the binding message */
    CHAIN_VERIFY_CHECK_SENDER,        /* "sender": eth_address = anchor.sender */
    CHAIN_VERIFY_CHECK_CHAIN_ID,      /* "chain_id": eth_chainId = chain_id */
    CHAIN_VERIFY_CHECK_RECEIPT,       /* "receipt": the transaction is mined */
    CHAIN_VERIFY_CHECK_STATUS,        /* "status": receipt status 1 */
    CHAIN_VERIFY_CHECK_BLOCK,         /* "block": block number/hash match, block canonical */
    CHAIN_VERIFY_CHECK_LOG,           /* "log": the receipt holds a log at log_index */
    CHAIN_VERIFY_CHECK_CONTRACT,      /* "contract": that log was emitted by the contract */
    CHAIN_VERIFY_CHECK_TOPICS,        /* "topics": [Anchored signature, sender, root] */
    CHAIN_VERIFY_CHECK_COUNT,         /* "count": the log's count = merkle.count */
    CHAIN_VERIFY_CHECK_FROM,          /* "from": the receipt's from = anchor.sender */
    CHAIN_VERIFY_CHECK_CONFIRMATIONS, /* "confirmations": head - block + 1 >= required */
    CHAIN_VERIFY_CHECK_COUNT_ALL
} chain_verify_check_id;

typedef enum {
    CHAIN_VERIFY_NOT_RUN = 0, /* not reached yet (e.g. offline only) */
    CHAIN_VERIFY_PASS,
    CHAIN_VERIFY_FAIL,
    CHAIN_VERIFY_SKIP, /* not run: a check it depends on failed or the endpoint failed */
} chain_verify_result;

typedef struct {
    chain_verify_result result;
    /* failure or skip reason, or a short note on a pass; printable ASCII, NUL-terminated */
    char msg[CHAIN_VERIFY_MSG_MAX];
} chain_verify_check;

/** A plain value (no allocation): indexed by chain_verify_check_id. */
typedef struct {
    chain_verify_check checks[CHAIN_VERIFY_CHECK_COUNT_ALL];
    uint64_t confirmations; /* set by the confirmations check */
    int rpc_status; /* DM_OK, or the transport/protocol error that stopped the online part */
} chain_verify_report;

/** Stable name of a check ("merkle", "log", …); "?" for an unknown id. */
const char *chain_verify_check_name(chain_verify_check_id id);
/** "pass", "fail", "skip" or "not run". */
const char *chain_verify_result_name(chain_verify_result r);
/** Reset every check to NOT_RUN. */
void chain_verify_report_init(chain_verify_report *r);
/** True if every check passed (offline and online). */
bool chain_verify_report_ok(const chain_verify_report *r);
/** True if every check of the offline part passed (format to sender). */
bool chain_verify_report_offline_ok(const chain_verify_report *r);
/** Append one line per check ("  merkle        pass" / "  log           FAIL  receipt has
 *  no log with index 3") to `out`. DM_ENOMEM. */
int chain_verify_report_format(const chain_verify_report *r, dm_buf *out);
/** The report as JSON: {"ok":bool,"confirmations":N,"checks":[{"check","result","message"}]}.
 *  New reference, NULL on allocation failure. */
json_t *chain_verify_report_json(const chain_verify_report *r);

/**
 * Parse bundle text (n bytes, need not be NUL-terminated). Strict: exactly one JSON object
 * with exactly the members of docs/ANCHORING.md (unknown or missing members, duplicate keys,
 * wrong types are errors); hashes are 64 lower-case hex digits ("0x"-prefixed for tx_hash
 * and block_hash); addresses "0x" + 40 hex (all lower, all upper or valid EIP-55);
 * integers non-negative JSON integers (chain_id and count >= 1); at most
 * CRYPTO_MERKLE_MAX_DEPTH siblings; spki and eth_binding padded standard base64 within the
 * bounds above; the event an object with a string "event_type", a 64-hex "origin" and no
 * real numbers (its canonical form must be unambiguous), nesting at most 4 deep.
 * On DM_OK *out is owned by the caller (chain_verify_bundle_free). Errors (then *out is NULL
 * and `err`, if not NULL, holds a message naming the member, printable ASCII): DM_EPARSE,
 * DM_ETOOBIG (text longer than CHAIN_VERIFY_BUNDLE_MAX), DM_ENOMEM. Pure; any thread.
 * Fuzzed by fuzz/fuzz_proof.c.
 */
int chain_verify_bundle_parse(const char *text, size_t n, chain_verify_bundle **out,
                              char err[CHAIN_VERIFY_MSG_MAX]);
/** NULL-safe. */
void chain_verify_bundle_free(chain_verify_bundle *b);

/**
 * The offline checks (leaf, merkle, node_id, origin, eth_binding, sender), each recorded in
 * `report` (its other checks are left as they are; marks "format" as passed). Returns
 * DM_OK if all of them passed, DM_ETAMPER if any failed, DM_ENOMEM / DM_ECRYPTO if they
 * could not be run (then the check concerned is FAIL with the reason). The bundle is
 * borrowed. Pure; any thread (one RSA-PSS verification: not on the event loop).
 */
int chain_verify_offline(const chain_verify_bundle *b, chain_verify_report *report);

/**
 * Completion of chain_verify_online, on the loop thread, exactly once. `status` is DM_OK if
 * every online check passed, DM_ETAMPER if the chain contradicts the bundle (the report
 * names the checks), or the error that stopped the calls (DM_ECONN, DM_ETIMEDOUT,
 * DM_EPROTO, DM_ECLOSED, …; also in report->rpc_status, and the checks not reached are
 * SKIP). `report` is the one given to chain_verify_online.
 */
typedef void (*chain_verify_cb)(int status, chain_verify_report *report, void *arg);

/**
 * Start the on-chain checks (chain_id, receipt, status, block, log, contract, topics, count,
 * from, confirmations) with `rpc`: eth_chainId, eth_getTransactionReceipt,
 * eth_getBlockByNumber(block_number), eth_blockNumber, one after the other. `bundle` and
 * `report` are borrowed and must stay valid until `cb` fires; only the online checks of
 * the report are written. `min_confirmations` 0 is taken as 1 (the block must exist).
 * Returns DM_OK and then `cb` fires exactly once, later, on the loop thread (also with
 * DM_ECLOSED if rpc is closed meanwhile); or an error of chain_rpc_call (DM_ELIMIT,
 * DM_ECLOSED, DM_ENOMEM, …) and `cb` never fires. Loop thread only.
 */
int chain_verify_online(chain_rpc_t *rpc, const chain_verify_bundle *bundle,
                        uint64_t min_confirmations, chain_verify_report *report, chain_verify_cb cb,
                        void *arg);

/**
 * Parse `bundle_text` (n bytes), run the offline checks, then the online checks against
 * the JSON-RPC endpoint `url` on a private uv loop (blocking: for the CLI, never on a
 * daemon loop). `report` (caller's) is initialised and filled. `opts` may be NULL (the
 * chain_rpc defaults). The online part runs even when an offline check failed, so the
 * report is complete. Returns DM_OK if the bundle verifies, DM_ETAMPER if a check failed,
 * DM_EPARSE / DM_ETOOBIG for a malformed bundle ("format" says why), DM_EINVAL for a bad
 * URL, or the endpoint's error (DM_ECONN, DM_ETIMEDOUT, DM_EPROTO, …; checks not reached
 * are SKIP); DM_ENOMEM, DM_EIO (uv loop).
 */
int chain_verify_run(const char *url, const char *bundle_text, size_t n, uint64_t min_confirmations,
                     const chain_rpc_opts *opts, chain_verify_report *report);

#endif
