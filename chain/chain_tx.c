/*
 * EIP-1559 transaction encoding, signing and decoding. See chain_tx.h.
 */
#include "chain_tx.h"

#include "chain_rlp.h"
#include "crypto_keccak.h"
#include "dm_err.h"

#include <string.h>

/* The nine unsigned fields, appended inside an already opened list. */
static int put_fields(dm_buf *b, const chain_tx1559 *tx)
{
    int rc;
    size_t al;
    if ((rc = chain_rlp_put_u64(b, tx->chain_id)) != DM_OK ||
        (rc = chain_rlp_put_u64(b, tx->nonce)) != DM_OK ||
        (rc = chain_rlp_put_uint_be(b, tx->max_priority_fee_per_gas.be, 32)) != DM_OK ||
        (rc = chain_rlp_put_uint_be(b, tx->max_fee_per_gas.be, 32)) != DM_OK ||
        (rc = chain_rlp_put_u64(b, tx->gas_limit)) != DM_OK ||
        (rc = chain_rlp_put_bytes(b, tx->to, tx->has_to ? 20 : 0)) != DM_OK ||
        (rc = chain_rlp_put_uint_be(b, tx->value.be, 32)) != DM_OK ||
        (rc = chain_rlp_put_bytes(b, tx->data, tx->data_len)) != DM_OK ||
        (rc = chain_rlp_list_begin(b, &al)) != DM_OK || /* empty access list */
        (rc = chain_rlp_list_end(b, al)) != DM_OK)
        return rc;
    return DM_OK;
}

int chain_tx_encode_unsigned(const chain_tx1559 *tx, dm_buf *out)
{
    size_t start = out->len, mark;
    int rc;
    if ((rc = dm_buf_putc(out, CHAIN_TX_TYPE_EIP1559)) != DM_OK ||
        (rc = chain_rlp_list_begin(out, &mark)) != DM_OK || (rc = put_fields(out, tx)) != DM_OK ||
        (rc = chain_rlp_list_end(out, mark)) != DM_OK)
        out->len = start;
    return rc;
}

int chain_tx_signing_hash(const chain_tx1559 *tx, uint8_t hash[32])
{
    dm_buf b = DM_BUF_INIT;
    int rc = chain_tx_encode_unsigned(tx, &b);
    if (rc == DM_OK)
        crypto_keccak256(hash, b.data, b.len);
    dm_buf_free(&b);
    return rc;
}

int chain_tx_encode_signed(const chain_tx1559 *tx, const crypto_eth_sig *sig, dm_buf *out,
                           uint8_t tx_hash[32])
{
    if (sig->recid > 1)
        return DM_EINVAL;
    size_t start = out->len, mark;
    int rc;
    if ((rc = dm_buf_putc(out, CHAIN_TX_TYPE_EIP1559)) != DM_OK ||
        (rc = chain_rlp_list_begin(out, &mark)) != DM_OK || (rc = put_fields(out, tx)) != DM_OK ||
        (rc = chain_rlp_put_u64(out, sig->recid)) != DM_OK ||
        (rc = chain_rlp_put_uint_be(out, sig->r, 32)) != DM_OK ||
        (rc = chain_rlp_put_uint_be(out, sig->s, 32)) != DM_OK ||
        (rc = chain_rlp_list_end(out, mark)) != DM_OK) {
        out->len = start;
        return rc;
    }
    if (tx_hash)
        chain_tx_hash(out->data + start, out->len - start, tx_hash);
    return DM_OK;
}

int chain_tx_sign(const chain_tx1559 *tx, const crypto_eth_key *key, dm_buf *out,
                  uint8_t tx_hash[32])
{
    uint8_t hash[32];
    crypto_eth_sig sig;
    int rc = chain_tx_signing_hash(tx, hash);
    if (rc != DM_OK)
        return rc;
    rc = crypto_eth_sign_hash(key, hash, &sig);
    if (rc != DM_OK)
        return rc;
    return chain_tx_encode_signed(tx, &sig, out, tx_hash);
}

void chain_tx_hash(const uint8_t *raw, size_t n, uint8_t tx_hash[32])
{
    crypto_keccak256(tx_hash, raw, n);
}

static int get_u256(chain_rlp_iter *it, chain_u256 *v)
{
    chain_rlp_item item;
    int rc = chain_rlp_iter_bytes(it, &item);
    if (rc == DM_OK)
        rc = chain_rlp_get_uint_be(&item, v->be, 32);
    return rc;
}

static int get_u64(chain_rlp_iter *it, uint64_t *v)
{
    chain_rlp_item item;
    int rc = chain_rlp_iter_bytes(it, &item);
    if (rc == DM_OK)
        rc = chain_rlp_get_u64(&item, v);
    return rc;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

int chain_tx_decode_signed(const uint8_t *raw, size_t n, chain_tx1559 *tx, crypto_eth_sig *sig)
{
    if (n > CHAIN_TX_MAX_SIZE)
        return DM_ETOOBIG;
    if (n < 1 || raw[0] != CHAIN_TX_TYPE_EIP1559)
        return DM_EPARSE;
    chain_rlp_item list, item;
    chain_rlp_iter it;
    chain_tx1559 t;
    crypto_eth_sig s;
    uint64_t parity;
    bool access_list;
    memset(&t, 0, sizeof t);
    memset(&s, 0, sizeof s);
    /* the whole tree first, so even an access list we do not read must be canonical */
    int rc = chain_rlp_decode_tree(raw + 1, n - 1, &list);
    if (rc != DM_OK)
        goto out;
    if ((rc = chain_rlp_iter_init(&it, &list)) != DM_OK ||
        (rc = get_u64(&it, &t.chain_id)) != DM_OK || (rc = get_u64(&it, &t.nonce)) != DM_OK ||
        (rc = get_u256(&it, &t.max_priority_fee_per_gas)) != DM_OK ||
        (rc = get_u256(&it, &t.max_fee_per_gas)) != DM_OK ||
        (rc = get_u64(&it, &t.gas_limit)) != DM_OK ||
        (rc = chain_rlp_iter_bytes(&it, &item)) != DM_OK)
        goto out;
    if (item.len == 20) {
        t.has_to = true;
        memcpy(t.to, item.payload, 20);
    } else if (item.len != 0) {
        rc = DM_EPARSE;
        goto out;
    }
    if ((rc = get_u256(&it, &t.value)) != DM_OK || (rc = chain_rlp_iter_bytes(&it, &item)) != DM_OK)
        goto out;
    t.data = item.len ? item.payload : NULL;
    t.data_len = item.len;
    if ((rc = chain_rlp_iter_list(&it, &item)) != DM_OK)
        goto out;
    access_list = item.len != 0;
    if ((rc = get_u64(&it, &parity)) != DM_OK)
        goto out;
    if ((rc = chain_rlp_iter_bytes(&it, &item)) != DM_OK ||
        (rc = chain_rlp_get_uint_be(&item, s.r, 32)) != DM_OK ||
        (rc = chain_rlp_iter_bytes(&it, &item)) != DM_OK ||
        (rc = chain_rlp_get_uint_be(&item, s.s, 32)) != DM_OK)
        goto out;
    if (parity > 1 || all_zero(s.r, 32) || all_zero(s.s, 32) || !chain_rlp_iter_done(&it)) {
        rc = DM_EPARSE;
        goto out;
    }
    s.recid = (uint8_t)parity;
    if (access_list) {
        rc = DM_EUNSUPPORTED;
        goto out;
    }
    *tx = t;
    *sig = s;
out:
    /* a missing field (ENOTFOUND), an oversized integer (ERANGE), a wrong kind: all malformed */
    if (rc != DM_OK && rc != DM_ETOOBIG && rc != DM_EUNSUPPORTED)
        rc = DM_EPARSE;
    return rc;
}

int chain_tx_sender(const chain_tx1559 *tx, const crypto_eth_sig *sig, uint8_t addr[20])
{
    uint8_t hash[32];
    int rc = chain_tx_signing_hash(tx, hash);
    if (rc != DM_OK)
        return rc;
    return crypto_eth_recover(hash, sig, addr);
}
