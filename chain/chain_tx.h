#ifndef DM_CHAIN_TX_H
#define DM_CHAIN_TX_H

#include "chain_hex.h"
#include "crypto_eth.h"
#include "dm_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * EIP-1559 (type 2) transactions with an empty access list.
 *
 *   signing hash = keccak256(0x02 || rlp([chain_id, nonce, max_priority_fee_per_gas,
 *                                         max_fee_per_gas, gas_limit, to, value, data,
 *                                         access_list]))
 *   signed tx    = 0x02 || rlp([... the nine fields ..., y_parity, r, s])
 *   tx hash      = keccak256(signed tx)
 *
 * Integers are RLP integers (no leading zeros, 0 is the empty string); r and s too. `to`
 * is 20 bytes, or the empty string for a contract creation.
 *
 * The daemon signs with the key manager (node_keys_eth_sign), which never hands out the
 * key: compute chain_tx_signing_hash(), sign it there, then chain_tx_encode_signed().
 * chain_tx_sign() does both with a crypto_eth_key, for tools and tests.
 *
 * Pure functions: safe from any thread.
 */

#define CHAIN_TX_TYPE_EIP1559 0x02
/** Upper bound on the encoded size chain_tx_decode_signed() accepts (the data field of an
 *  ordinary transaction is far smaller; nodes cap whole transactions at 128 KiB). */
#define CHAIN_TX_MAX_SIZE (1u << 20)

typedef struct {
    uint64_t chain_id;
    uint64_t nonce;
    chain_u256 max_priority_fee_per_gas; /* wei */
    chain_u256 max_fee_per_gas;          /* wei */
    uint64_t gas_limit;
    bool has_to; /* false: contract creation (`to` encoded as the empty string) */
    uint8_t to[20];
    chain_u256 value;    /* wei */
    const uint8_t *data; /* borrowed; NULL allowed when data_len == 0 */
    size_t data_len;
} chain_tx1559;

/** Append 0x02 || rlp(the nine unsigned fields) — the pre-image of the signing hash. */
int chain_tx_encode_unsigned(const chain_tx1559 *tx, dm_buf *out);
/** keccak256 of the unsigned encoding. DM_ENOMEM. */
int chain_tx_signing_hash(const chain_tx1559 *tx, uint8_t hash[32]);
/** Append the signed transaction 0x02 || rlp([..., y_parity, r, s]) for a signature made
 *  over chain_tx_signing_hash(tx) (e.g. by node_keys_eth_sign), and write its tx hash
 *  (optional, may be NULL). The signature is not checked here: DM_EINVAL only for recid > 1;
 *  DM_ENOMEM. On error `out` keeps its previous length. */
int chain_tx_encode_signed(const chain_tx1559 *tx, const crypto_eth_sig *sig, dm_buf *out,
                           uint8_t tx_hash[32]);
/** Hash, sign with `key` (RFC 6979, low s) and encode, as above. DM_EINVAL for a bad key. */
int chain_tx_sign(const chain_tx1559 *tx, const crypto_eth_key *key, dm_buf *out,
                  uint8_t tx_hash[32]);
/** keccak256 of raw signed transaction bytes (the hash a node reports for them). */
void chain_tx_hash(const uint8_t *raw, size_t n, uint8_t tx_hash[32]);

/** Decode a signed type-2 transaction occupying exactly raw[0..n). tx->data borrows `raw`.
 *  Strict: type byte 0x02, a canonical RLP list of exactly twelve fields, canonical
 *  integers (chain id, nonce and gas limit within 64 bits, fees and value within 256),
 *  `to` empty or 20 bytes, y_parity 0 or 1, r and s non-zero and within 32 bytes.
 *  DM_EPARSE for any of these, DM_ETOOBIG above CHAIN_TX_MAX_SIZE, DM_EUNSUPPORTED for a
 *  well-formed but non-empty access list. */
int chain_tx_decode_signed(const uint8_t *raw, size_t n, chain_tx1559 *tx, crypto_eth_sig *sig);
/** Recover the sender of a decoded transaction. DM_EBADSIG for an invalid signature
 *  (including high s); DM_ENOMEM. */
int chain_tx_sender(const chain_tx1559 *tx, const crypto_eth_sig *sig, uint8_t addr[20]);

#endif
