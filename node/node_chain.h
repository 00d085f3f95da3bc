#ifndef DM_NODE_CHAIN_H
#define DM_NODE_CHAIN_H

#include "node_keys.h"

#include <stdint.h>

/*
 * One-shot chain operations for CLI commands (not the daemon's pipeline, which is
 * chain/chain_anchor). Each runs its own short-lived libuv loop with the
 * non-blocking JSON-RPC client and returns when done; call them from a command,
 * never from the daemon's loop.
 */

/**
 * Deploy the audit contract (the bytecode embedded from contracts/AuditAnchor.json)
 * from the node's Ethereum account, signed by the key manager, and wait for its
 * receipt. `expect_chain_id` 0 accepts any chain. On DM_OK `address` holds the
 * EIP-55 address and `tx_hash` the deployment transaction. Errors: DM_ECONN (endpoint
 * unreachable), DM_ECONFIG (chain id mismatch), DM_EPROTO (the node refused the
 * transaction or it reverted; a message is logged), DM_ETIMEDOUT (not mined in 120 s).
 */
int node_chain_deploy(const char *rpc_url, uint64_t expect_chain_id, const node_keys_t *km,
                      uint32_t max_fee_gwei, char address[43], uint8_t tx_hash[32]);

#endif
