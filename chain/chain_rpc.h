#ifndef DM_CHAIN_RPC_H
#define DM_CHAIN_RPC_H

#include "chain_hex.h" /* chain_u256 */
#include "dm_buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * A JSON-RPC 2.0 client for Ethereum nodes on the node's libuv loop.
 *
 * Transport: libcurl's multi interface driven by curl_multi_socket_action, one uv_poll_t per
 * socket libcurl asks to watch and one uv_timer_t for libcurl's timeouts; nothing here ever
 * blocks the loop (no curl_easy_perform). One HTTP POST per call, keep-alive connections
 * reused by libcurl. Only http:// and https:// URLs; redirects are not followed (a 3xx is an
 * HTTP error); proxies from the environment are honoured except for loopback addresses;
 * compressed replies are never requested. Every reply is bounded by max_reply_bytes while it
 * is received.
 *
 * Outcome of a call (the `status` given to every callback):
 *   DM_OK         the node answered a result (for the generic call, `result` may be JSON null)
 *   DM_ETIMEDOUT  the call did not complete within timeout_ms (connect included)
 *   DM_ECONN      the endpoint could not be reached or dropped the connection (refused, reset,
 *                 name not resolved, TLS handshake failure, empty reply)
 *   DM_EAUTH      TLS peer verification failed (wrong or untrusted certificate)
 *   DM_ETOOBIG    the reply exceeded max_reply_bytes (kind CHAIN_RPC_ERR_REPLY)
 *   DM_EPROTO     anything else the endpoint got wrong, told apart by err->kind:
 *                   CHAIN_RPC_ERR_HTTP    HTTP status other than 200 (err->http_status);
 *                                         when the body is a JSON-RPC error object its
 *                                         code and data are passed on too, and its
 *                                         message follows the status in err->message
 *                   CHAIN_RPC_ERR_REPLY   not JSON, not a JSON-RPC 2.0 response object, id
 *                                         mismatch, both or neither of result/error, bad
 *                                         error object, broken HTTP framing
 *                   CHAIN_RPC_ERR_REMOTE  a well-formed JSON-RPC error object: err->code,
 *                                         err->message, err->data carry the node's words
 *                                         (e.g. -32000 "nonce too low", 3 "execution
 *                                         reverted" with the revert data)
 *                   CHAIN_RPC_ERR_RESULT  (typed helpers) the result has the wrong shape:
 *                                         non-canonical hex, a value out of range, a missing
 *                                         or inconsistent field
 *   DM_ENOTFOUND  (typed helpers for receipts, blocks and transactions) the node answered
 *                 null: not mined yet, or unknown (kind CHAIN_RPC_ERR_NONE)
 *   DM_ECLOSED    chain_rpc_close() was called while the call was in flight
 *   DM_ENOMEM     allocation failed while finishing the call
 *   DM_EIO        any other libcurl failure (kind CHAIN_RPC_ERR_TRANSPORT)
 * Failed calls are logged at debug level ("chain" category); the caller decides
 * what deserves more (retry with backoff on DM_ETIMEDOUT, DM_ECONN, HTTP 429/5xx).
 * A JSON-RPC error object is DM_EPROTO with kind CHAIN_RPC_ERR_REMOTE rather than a code of
 * its own because common/dm_err.h is shared; callers that react to the node's error (nonce
 * too low, replacement underpriced, already known) test err->kind first.
 *
 * Threads: everything runs on the loop thread of the loop given to chain_rpc_create, and all
 * callbacks fire there, never from inside the function that started the call.
 */

typedef struct chain_rpc chain_rpc_t;

typedef enum {
    CHAIN_RPC_ERR_NONE = 0,  /* status DM_OK (or a synchronous error of a pure function) */
    CHAIN_RPC_ERR_TRANSPORT, /* timeout, connection, TLS, closed */
    CHAIN_RPC_ERR_HTTP,      /* HTTP status other than 200 */
    CHAIN_RPC_ERR_REPLY,     /* malformed, oversize, or not JSON-RPC 2.0 */
    CHAIN_RPC_ERR_REMOTE,    /* the node's JSON-RPC error object */
    CHAIN_RPC_ERR_RESULT,    /* the result does not have the type the method promises */
} chain_rpc_err_kind;

#define CHAIN_RPC_MSG_MAX 256

/**
 * Details of a failed call. `message` is always NUL-terminated printable ASCII (control
 * characters and non-ASCII bytes of a node's message become '?', so it is safe to log) and
 * truncated to CHAIN_RPC_MSG_MAX-1 bytes. `data` is the error object's "data" member (a new
 * reference owned by the struct, NULL if absent); callbacks receive the struct borrowed for
 * the duration of the call; after chain_rpc_parse_reply() release it with
 * chain_rpc_error_clear().
 */
typedef struct {
    chain_rpc_err_kind kind;
    long http_status; /* 0 when no HTTP response was received */
    int64_t code;     /* JSON-RPC error code (CHAIN_RPC_ERR_REMOTE, or HTTP with one), else 0 */
    char message[CHAIN_RPC_MSG_MAX];
    json_t *data;
} chain_rpc_error;

/** Release err->data and reset the struct to zero. NULL-safe. */
void chain_rpc_error_clear(chain_rpc_error *err);

/* Zero fields take the defaults below. */
typedef struct {
    uint32_t timeout_ms;         /* whole call, connect included; default 10000 */
    uint32_t connect_timeout_ms; /* default 5000, never above timeout_ms */
    size_t max_reply_bytes;      /* default 8 MiB; hard ceiling CHAIN_RPC_REPLY_HARD_MAX */
    uint32_t max_in_flight;      /* calls started and not yet called back; default 64 */
} chain_rpc_opts;

#define CHAIN_RPC_DEFAULT_TIMEOUT_MS 10000u
#define CHAIN_RPC_DEFAULT_CONNECT_TIMEOUT_MS 5000u
#define CHAIN_RPC_DEFAULT_MAX_REPLY (8u << 20)
#define CHAIN_RPC_DEFAULT_MAX_IN_FLIGHT 64u
/** chain_rpc_parse_reply() refuses bodies above this whatever the options (DM_ETOOBIG). */
#define CHAIN_RPC_REPLY_HARD_MAX (64u << 20)
/** Longest URL accepted by chain_rpc_create. */
#define CHAIN_RPC_URL_MAX 2048

/**
 * Generic completion callback. Fires exactly once per accepted call, on the loop thread.
 * `result` (borrowed, valid only during the callback; json_incref to keep it) is non-NULL
 * exactly when status == DM_OK. `err` (borrowed, same lifetime) is never NULL; its kind is
 * CHAIN_RPC_ERR_NONE on success. The callback may start new calls and may call
 * chain_rpc_close().
 */
typedef void (*chain_rpc_cb)(chain_rpc_t *rpc, int status, json_t *result,
                             const chain_rpc_error *err, void *arg);

/** Called once the client is freed (every uv handle closed). */
typedef void (*chain_rpc_close_cb)(void *arg);

/**
 * Create a client for the endpoint `url` (copied; "http://host[:port]/path" or https). The
 * loop (borrowed) must outlive the client. `opts` may be NULL for the defaults. Initialises
 * libcurl globally (reference-counted by libcurl; undone when the client is freed).
 * Returns DM_EINVAL for a malformed URL, another scheme, an empty host or a URL longer than
 * CHAIN_RPC_URL_MAX; DM_ETOOBIG if max_reply_bytes exceeds CHAIN_RPC_REPLY_HARD_MAX;
 * DM_ENOMEM. The URL may hold an API key: it is never logged.
 */
int chain_rpc_create(chain_rpc_t **out, uv_loop_t *loop, const char *url,
                     const chain_rpc_opts *opts);

/**
 * Cancel every call in flight and free the client asynchronously. The callbacks of the
 * cancelled calls fire with DM_ECLOSED (kind CHAIN_RPC_ERR_TRANSPORT) after this function
 * returns and before `cb`; then the client is freed and `cb(arg)` (optional) runs. Calls
 * started after this return DM_ECLOSED. May be called from any chain_rpc callback. Calling
 * it twice is a no-op (the second `cb` is not called). NULL-safe.
 */
void chain_rpc_close(chain_rpc_t *rpc, chain_rpc_close_cb cb, void *arg);

/** Number of accepted calls whose callback has not fired yet. */
size_t chain_rpc_in_flight(const chain_rpc_t *rpc);

/**
 * Start the call `method` with `params` (borrowed; a JSON array or object, NULL for []).
 * `method` must be 1..64 characters of [A-Za-z0-9_] (every Ethereum and anvil method is). On DM_OK
 * `cb` fires exactly once later; on any error it never fires. Errors: DM_EINVAL (bad method or
 * params), DM_ELIMIT (max_in_flight calls already in flight: the caller keeps its own queue),
 * DM_ECLOSED (closing), DM_ENOMEM, DM_EIO (libcurl refused the transfer).
 */
int chain_rpc_call(chain_rpc_t *rpc, const char *method, const json_t *params, chain_rpc_cb cb,
                   void *arg);

/** As chain_rpc_call with params given as JSON text (an array or object, NUL-terminated;
 *  NULL for []). DM_EINVAL if the text is not JSON or not an array/object. */
int chain_rpc_call_text(chain_rpc_t *rpc, const char *method, const char *params_json,
                        chain_rpc_cb cb, void *arg);

/**
 * Parse one JSON-RPC 2.0 reply body (n bytes, need not be NUL-terminated) to the call with
 * integer id `expected_id`. Pure: safe from any thread, never reads past body[n-1].
 * Returns DM_OK with *result a new reference (JSON null included) that the caller decrefs,
 * or an error with *result NULL and `err` filled (err is always overwritten; call
 * chain_rpc_error_clear afterwards in every case):
 *   DM_ETOOBIG (n > CHAIN_RPC_REPLY_HARD_MAX) kind CHAIN_RPC_ERR_REPLY;
 *   DM_EPROTO kind CHAIN_RPC_ERR_REPLY: not exactly one JSON object (trailing bytes,
 *     duplicate keys, NUL in strings, depth beyond jansson's limit included), "jsonrpc" not
 *     "2.0", "id" not the integer expected_id (an error object may carry id null, as the
 *     spec allows when the node could not read the request), both or neither of
 *     "result"/"error", an error member that is not {"code": integer, "message": string, ...};
 *   DM_EPROTO kind CHAIN_RPC_ERR_REMOTE: a valid error object (code, message, data filled).
 *   DM_ENOMEM.
 */
int chain_rpc_parse_reply(const char *body, size_t n, uint64_t expected_id, json_t **result,
                          chain_rpc_error *err);

/* ---------------- typed results: strict parsers (pure, any thread) ----------------
 * QUANTITY: a JSON string "0x" + hex digits (either case) without leading zeros, zero being
 * "0x0". DATA: "0x" + an even number of hex digits (either case). Anything else — JSON
 * numbers, missing prefix, "0X", empty digits, spaces, signs, a value too large for its type
 * — is DM_EPROTO. Structured parsers ignore members they do not know.
 */

/** QUANTITY within 64 bits. */
int chain_rpc_parse_u64(const json_t *v, uint64_t *out);
/** QUANTITY within 256 bits. */
int chain_rpc_parse_u256(const json_t *v, chain_u256 *out);
/** DATA of exactly `len` bytes (hashes: 32, addresses: 20). */
int chain_rpc_parse_fixed(const json_t *v, uint8_t *out, size_t len);
/** DATA of any length, appended to `out`. DM_EPROTO, DM_ENOMEM. */
int chain_rpc_parse_data(const json_t *v, dm_buf *out);

/** One log entry (eth_getLogs, receipts). `data` belongs to the enclosing object. */
typedef struct {
    uint8_t address[20];
    size_t ntopics; /* 0..4 */
    uint8_t topics[4][32];
    uint8_t *data;
    size_t data_len;
    uint64_t block_number;
    uint8_t block_hash[32];
    uint8_t tx_hash[32];
    uint64_t tx_index;
    uint64_t log_index;
    bool removed; /* true: dropped by a reorg */
} chain_rpc_log;

/** A list of logs owned as one object. */
typedef struct {
    chain_rpc_log *logs;
    size_t n;
} chain_rpc_logs;

/** Parse an eth_getLogs result (an array of complete, mined logs: pending logs with null
 *  block fields are DM_EPROTO). On DM_OK *out is owned by the caller (chain_rpc_logs_free). */
int chain_rpc_parse_logs(const json_t *v, chain_rpc_logs **out);
void chain_rpc_logs_free(chain_rpc_logs *l);

typedef struct {
    uint8_t tx_hash[32];
    uint8_t block_hash[32];
    uint64_t block_number;
    uint64_t tx_index;
    uint8_t from[20];
    bool has_to; /* false: contract creation */
    uint8_t to[20];
    bool has_contract_address;
    uint8_t contract_address[20];
    uint8_t status; /* 1 success, 0 reverted */
    uint64_t gas_used;
    uint64_t cumulative_gas_used;
    bool has_effective_gas_price;
    chain_u256 effective_gas_price;
    chain_rpc_log *logs; /* each log's tx_hash, block_hash and block_number equal the
                          * receipt's (checked) */
    size_t nlogs;
} chain_rpc_receipt;

/** Parse an eth_getTransactionReceipt result. JSON null is DM_ENOTFOUND (not mined yet). A
 *  "status" other than "0x0"/"0x1" (or a pre-Byzantium "root" receipt) is DM_EPROTO. On DM_OK
 *  *out is owned by the caller (chain_rpc_receipt_free). */
int chain_rpc_parse_receipt(const json_t *v, chain_rpc_receipt **out);
void chain_rpc_receipt_free(chain_rpc_receipt *r);

/** The header fields of a block the anchorer uses. */
typedef struct {
    uint64_t number;
    uint8_t hash[32];
    uint8_t parent_hash[32];
    uint64_t timestamp;
    uint64_t gas_limit;
    uint64_t gas_used;
    bool has_base_fee; /* false before London */
    chain_u256 base_fee_per_gas;
} chain_rpc_block;

/** Parse an eth_getBlockByNumber result. JSON null is DM_ENOTFOUND; a pending block (null
 *  number or hash) is DM_EPROTO. */
int chain_rpc_parse_block(const json_t *v, chain_rpc_block *out);

/** What eth_getTransactionByHash tells about a transaction. */
typedef struct {
    uint8_t hash[32];
    uint8_t from[20];
    uint64_t nonce;
    bool mined; /* blockHash/blockNumber non-null */
    uint64_t block_number;
    uint8_t block_hash[32];
} chain_rpc_tx;

/** Parse an eth_getTransactionByHash result. JSON null is DM_ENOTFOUND (unknown to the
 *  node: never seen, or dropped from its pool). */
int chain_rpc_parse_tx(const json_t *v, chain_rpc_tx *out);

typedef struct {
    uint64_t oldest_block;
    size_t nblocks;               /* blocks covered (may be fewer than asked) */
    chain_u256 *base_fee_per_gas; /* nblocks + 1 entries: the last is the next block's */
    double *gas_used_ratio;       /* nblocks entries, each finite and >= 0 */
    size_t npercentiles;
    chain_u256 *reward; /* nblocks * npercentiles, row by row; NULL if none */
} chain_rpc_fee_history;

/** Parse an eth_feeHistory result asked with `npercentiles` reward percentiles (reward must
 *  then be nblocks rows of npercentiles QUANTITYs; with 0 it is ignored). On DM_OK *out is
 *  owned by the caller (chain_rpc_fee_history_free). */
int chain_rpc_parse_fee_history(const json_t *v, size_t npercentiles, chain_rpc_fee_history **out);
void chain_rpc_fee_history_free(chain_rpc_fee_history *f);

/* ---------------- typed calls ----------------
 * Each encodes its parameters, sends the call, parses the result with the parser above and
 * calls a typed callback exactly once (same rules as chain_rpc_cb): the value pointers are
 * borrowed for the duration of the callback and valid only when status == DM_OK. A result
 * of the wrong shape is DM_EPROTO with kind CHAIN_RPC_ERR_RESULT. Synchronous errors are
 * those of chain_rpc_call (the callback then never fires).
 */

typedef enum {
    CHAIN_RPC_BLOCK_NUMBER = 0, /* the block `number` */
    CHAIN_RPC_BLOCK_LATEST,
    CHAIN_RPC_BLOCK_PENDING,
    CHAIN_RPC_BLOCK_SAFE,
    CHAIN_RPC_BLOCK_FINALIZED,
    CHAIN_RPC_BLOCK_EARLIEST,
} chain_rpc_block_tag;

typedef struct {
    chain_rpc_block_tag tag;
    uint64_t number; /* CHAIN_RPC_BLOCK_NUMBER only */
} chain_rpc_block_ref;

#define CHAIN_RPC_LATEST ((chain_rpc_block_ref){CHAIN_RPC_BLOCK_LATEST, 0})
#define CHAIN_RPC_PENDING ((chain_rpc_block_ref){CHAIN_RPC_BLOCK_PENDING, 0})
#define CHAIN_RPC_FINALIZED ((chain_rpc_block_ref){CHAIN_RPC_BLOCK_FINALIZED, 0})
#define CHAIN_RPC_BLOCK(n) ((chain_rpc_block_ref){CHAIN_RPC_BLOCK_NUMBER, (n)})

typedef void (*chain_rpc_u64_cb)(chain_rpc_t *rpc, int status, uint64_t value,
                                 const chain_rpc_error *err, void *arg);
typedef void (*chain_rpc_u256_cb)(chain_rpc_t *rpc, int status, const chain_u256 *value,
                                  const chain_rpc_error *err, void *arg);
typedef void (*chain_rpc_hash_cb)(chain_rpc_t *rpc, int status, const uint8_t *hash32,
                                  const chain_rpc_error *err, void *arg);
typedef void (*chain_rpc_data_cb)(chain_rpc_t *rpc, int status, const uint8_t *data, size_t n,
                                  const chain_rpc_error *err, void *arg);
typedef void (*chain_rpc_receipt_cb)(chain_rpc_t *rpc, int status, const chain_rpc_receipt *r,
                                     const chain_rpc_error *err, void *arg);
typedef void (*chain_rpc_logs_cb)(chain_rpc_t *rpc, int status, const chain_rpc_logs *logs,
                                  const chain_rpc_error *err, void *arg);
typedef void (*chain_rpc_block_cb)(chain_rpc_t *rpc, int status, const chain_rpc_block *b,
                                   const chain_rpc_error *err, void *arg);
typedef void (*chain_rpc_tx_cb)(chain_rpc_t *rpc, int status, const chain_rpc_tx *tx,
                                const chain_rpc_error *err, void *arg);
typedef void (*chain_rpc_fee_history_cb)(chain_rpc_t *rpc, int status,
                                         const chain_rpc_fee_history *f, const chain_rpc_error *err,
                                         void *arg);

/** A message call (eth_call, eth_estimateGas). Pointers are borrowed until the function
 *  returns (the request is encoded at once). */
typedef struct {
    const uint8_t *from; /* 20 bytes or NULL */
    const uint8_t *to;   /* 20 bytes; NULL for a contract creation */
    const uint8_t *data; /* data_len bytes (NULL when 0) */
    size_t data_len;
    const chain_u256 *value; /* NULL: omitted (zero) */
    uint64_t gas;            /* 0: omitted */
} chain_rpc_call_msg;

/** Event filter for eth_getLogs: topic position i matches anything when topics[i] is NULL. */
typedef struct {
    const uint8_t *address; /* 20 bytes or NULL: any contract */
    const uint8_t *topics[4];
    size_t ntopics; /* positions given, 0..4 */
    chain_rpc_block_ref from_block;
    chain_rpc_block_ref to_block;
} chain_rpc_log_filter;

/** eth_chainId. */
int chain_rpc_chain_id(chain_rpc_t *rpc, chain_rpc_u64_cb cb, void *arg);
/** eth_blockNumber. */
int chain_rpc_block_number(chain_rpc_t *rpc, chain_rpc_u64_cb cb, void *arg);
/** eth_getTransactionCount(address, block): the next nonce at `block` ("pending" counts the
 *  node's pool). */
int chain_rpc_get_transaction_count(chain_rpc_t *rpc, const uint8_t address[20],
                                    chain_rpc_block_ref block, chain_rpc_u64_cb cb, void *arg);
/** eth_getBalance(address, block), in wei. */
int chain_rpc_get_balance(chain_rpc_t *rpc, const uint8_t address[20], chain_rpc_block_ref block,
                          chain_rpc_u256_cb cb, void *arg);
/** eth_maxPriorityFeePerGas, in wei. */
int chain_rpc_max_priority_fee(chain_rpc_t *rpc, chain_rpc_u256_cb cb, void *arg);
/** eth_gasPrice, in wei. */
int chain_rpc_gas_price(chain_rpc_t *rpc, chain_rpc_u256_cb cb, void *arg);
/** eth_feeHistory(block_count, newest, percentiles). block_count 1..1024; up to 100
 *  percentiles, each within [0, 100] and non-decreasing (DM_EINVAL otherwise). */
int chain_rpc_get_fee_history(chain_rpc_t *rpc, uint32_t block_count, chain_rpc_block_ref newest,
                              const double *percentiles, size_t npercentiles,
                              chain_rpc_fee_history_cb cb, void *arg);
/** eth_getBlockByNumber(block, false): header fields including baseFeePerGas. DM_ENOTFOUND
 *  when the node has no such block. */
int chain_rpc_get_block(chain_rpc_t *rpc, chain_rpc_block_ref block, chain_rpc_block_cb cb,
                        void *arg);
/** eth_estimateGas(msg). */
int chain_rpc_estimate_gas(chain_rpc_t *rpc, const chain_rpc_call_msg *msg, chain_rpc_u64_cb cb,
                           void *arg);
/** eth_call(msg, block): the returned bytes. A revert is DM_EPROTO kind
 *  CHAIN_RPC_ERR_REMOTE with the revert data in err->data. */
int chain_rpc_eth_call(chain_rpc_t *rpc, const chain_rpc_call_msg *msg, chain_rpc_block_ref block,
                       chain_rpc_data_cb cb, void *arg);
/** eth_sendRawTransaction("0x" + hex of raw[0..n)): the tx hash the node reports (compare it
 *  with the locally computed one). n must be 1..1 MiB. */
int chain_rpc_send_raw_transaction(chain_rpc_t *rpc, const uint8_t *raw, size_t n,
                                   chain_rpc_hash_cb cb, void *arg);
/** eth_getTransactionReceipt(hash). DM_ENOTFOUND while the transaction is not mined. */
int chain_rpc_get_receipt(chain_rpc_t *rpc, const uint8_t hash[32], chain_rpc_receipt_cb cb,
                          void *arg);
/** eth_getTransactionByHash(hash). DM_ENOTFOUND when the node does not know it. */
int chain_rpc_get_transaction(chain_rpc_t *rpc, const uint8_t hash[32], chain_rpc_tx_cb cb,
                              void *arg);
/** eth_getLogs(filter). */
int chain_rpc_get_logs(chain_rpc_t *rpc, const chain_rpc_log_filter *filter, chain_rpc_logs_cb cb,
                       void *arg);

#endif
