#include "node_chain.h"

#include "chain_hex.h"
#include "chain_rpc.h"
#include "chain_tx.h"
#include "crypto_eth.h"
#include "dm_contract.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"

#include <jansson.h>
#include <string.h>
#include <uv.h>

#define DEPLOY_WAIT_MS 120000
#define GWEI 1000000000ull

typedef struct {
    bool done;
    int rc;
    json_t *result;
    char message[CHAIN_RPC_MSG_MAX];
} sync_call;

static void sync_cb(chain_rpc_t *rpc, int status, json_t *result, const chain_rpc_error *err,
                    void *arg)
{
    (void)rpc;
    sync_call *c = arg;
    c->done = true;
    c->rc = status;
    c->result = result ? json_incref(result) : NULL;
    snprintf(c->message, sizeof c->message, "%s", err ? err->message : "");
}

/* One JSON-RPC call, run to completion on the private loop. *out owned by the caller. */
static int call(uv_loop_t *loop, chain_rpc_t *rpc, const char *method, const char *params,
                json_t **out)
{
    sync_call c = {0};
    int rc = chain_rpc_call_text(rpc, method, params, sync_cb, &c);
    if (rc)
        return rc;
    while (!c.done)
        uv_run(loop, UV_RUN_ONCE);
    if (c.rc) {
        dm_log(DM_LOG_ERROR, "chain", "%s failed: %s: %s", method, dm_strerror(c.rc), c.message);
        json_decref(c.result);
        return c.rc;
    }
    *out = c.result;
    return DM_OK;
}

static int call_u64(uv_loop_t *loop, chain_rpc_t *rpc, const char *method, const char *params,
                    uint64_t *v)
{
    json_t *r = NULL;
    int rc = call(loop, rpc, method, params, &r);
    if (!rc)
        rc = chain_rpc_parse_u64(r, v);
    json_decref(r);
    return rc;
}

static void closed(void *arg)
{
    *(bool *)arg = true;
}

int node_chain_deploy(const char *rpc_url, uint64_t expect_chain_id, const node_keys_t *km,
                      uint32_t max_fee_gwei, char address[43], uint8_t tx_hash[32])
{
    uv_loop_t loop;
    if (uv_loop_init(&loop))
        return DM_EIO;
    chain_rpc_t *rpc = NULL;
    dm_buf code = DM_BUF_INIT, raw = DM_BUF_INIT, params = DM_BUF_INIT;
    json_t *r = NULL;
    uint8_t from[20];
    char from_text[43];
    node_keys_eth_address(km, from);
    crypto_eth_address_format(from, from_text);
    int rc = chain_rpc_create(&rpc, &loop, rpc_url, NULL);
    if (rc)
        goto out;
    uint64_t chain_id, nonce, gas;
    if ((rc = call_u64(&loop, rpc, "eth_chainId", "[]", &chain_id)))
        goto out;
    if (expect_chain_id && chain_id != expect_chain_id) {
        dm_log(DM_LOG_ERROR, "chain", "chain id %llu, but chain.chain_id is %llu",
               (unsigned long long)chain_id, (unsigned long long)expect_chain_id);
        rc = DM_ECONFIG;
        goto out;
    }
    dm_buf_printf(&params, "[\"%s\",\"pending\"]", from_text);
    if ((rc = call_u64(&loop, rpc, "eth_getTransactionCount", dm_buf_cstr(&params), &nonce)))
        goto out;
    if ((rc = dm_hex_decode_buf(&code, DM_AUDIT_ANCHOR_BYTECODE, strlen(DM_AUDIT_ANCHOR_BYTECODE))))
        goto out;
    dm_buf_reset(&params);
    dm_buf_printf(&params, "[{\"from\":\"%s\",\"data\":\"%s\"}]", from_text,
                  DM_AUDIT_ANCHOR_BYTECODE);
    if ((rc = call_u64(&loop, rpc, "eth_estimateGas", dm_buf_cstr(&params), &gas)))
        goto out;
    /* fees: twice the latest base fee plus a 1 gwei tip, within the configured cap */
    chain_rpc_block blk;
    if ((rc = call(&loop, rpc, "eth_getBlockByNumber", "[\"latest\",false]", &r)) ||
        (rc = chain_rpc_parse_block(r, &blk)))
        goto out;
    chain_tx1559 tx;
    memset(&tx, 0, sizeof tx);
    tx.chain_id = chain_id;
    tx.nonce = nonce;
    chain_u256_from_u64(&tx.max_priority_fee_per_gas, GWEI);
    chain_u256 cap;
    chain_u256_from_u64(&cap, (uint64_t)max_fee_gwei * GWEI);
    if (blk.has_base_fee)
        chain_u256_mul_u64(&tx.max_fee_per_gas, &blk.base_fee_per_gas, 2);
    chain_u256_add(&tx.max_fee_per_gas, &tx.max_fee_per_gas, &tx.max_priority_fee_per_gas);
    if (chain_u256_cmp(&tx.max_fee_per_gas, &cap) > 0)
        tx.max_fee_per_gas = cap;
    if (chain_u256_cmp(&tx.max_priority_fee_per_gas, &tx.max_fee_per_gas) > 0)
        tx.max_priority_fee_per_gas = tx.max_fee_per_gas;
    tx.gas_limit = gas + gas / 4;
    tx.has_to = false;
    tx.data = code.data;
    tx.data_len = code.len;
    uint8_t hash[32];
    crypto_eth_sig sig;
    if ((rc = chain_tx_signing_hash(&tx, hash)) || (rc = node_keys_eth_sign(km, hash, &sig)) ||
        (rc = chain_tx_encode_signed(&tx, &sig, &raw, tx_hash)))
        goto out;
    dm_buf_reset(&params);
    dm_buf_puts(&params, "[\"");
    chain_hex_data_append(&params, raw.data, raw.len);
    dm_buf_puts(&params, "\"]");
    json_decref(r);
    r = NULL;
    if ((rc = call(&loop, rpc, "eth_sendRawTransaction", dm_buf_cstr(&params), &r)))
        goto out;
    char hash_hex[67] = "0x";
    dm_hex_encode(hash_hex + 2, tx_hash, 32);
    dm_buf_reset(&params);
    dm_buf_printf(&params, "[\"%s\"]", hash_hex);
    uint64_t waited = 0;
    for (;;) {
        json_decref(r);
        r = NULL;
        if ((rc = call(&loop, rpc, "eth_getTransactionReceipt", dm_buf_cstr(&params), &r)))
            goto out;
        chain_rpc_receipt *rec = NULL;
        rc = chain_rpc_parse_receipt(r, &rec);
        if (rc == DM_OK) {
            if (rec->status != 1 || !rec->has_contract_address) {
                dm_log(DM_LOG_ERROR, "chain", "deployment %s reverted", hash_hex);
                rc = DM_EPROTO;
            } else {
                crypto_eth_address_format(rec->contract_address, address);
            }
            chain_rpc_receipt_free(rec);
            break;
        }
        if (rc != DM_ENOTFOUND)
            goto out;
        if (waited >= DEPLOY_WAIT_MS) {
            rc = DM_ETIMEDOUT;
            goto out;
        }
        uv_sleep(250);
        waited += 250;
    }
out:
    json_decref(r);
    dm_buf_free(&code);
    dm_buf_free(&raw);
    dm_buf_free(&params);
    bool done = rpc == NULL;
    if (rpc)
        chain_rpc_close(rpc, closed, &done);
    while (!done)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return rc;
}
