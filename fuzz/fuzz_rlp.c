/*
 * libFuzzer target for the strict RLP decoder (chain_rlp_decode_tree) and the signed
 * EIP-1559 transaction decoder built on it (chain_tx_decode_signed).
 * Properties checked beyond "no crash, no leak, no UB":
 *   - an accepted RLP input re-encodes, item by item through the encoder, to exactly the
 *     input bytes (the decoder accepts canonical encodings only, so there is one per tree);
 *   - every integer accessor agrees with the payload it read (no leading zero accepted,
 *     right-aligned copy);
 *   - an accepted transaction re-encodes to exactly the input bytes.
 * Build: cmake -DDM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
 * Run:   ./fuzz_rlp -max_total_time=30 fuzz/corpus/rlp
 * Seeds: fuzz/corpus/rlp holds a few encodings taken from the `out` fields of
 *        ethereum/rlptest.json and the signed eip1559_example, plus deep and long lists.
 */
#include "chain_rlp.h"
#include "chain_tx.h"
#include "dm_buf.h"
#include "dm_err.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_integer(const chain_rlp_item *it)
{
    uint8_t be[40];
    uint64_t v;
    int rc = chain_rlp_get_uint_be(it, be, sizeof be);
    bool canonical = it->len == 0 || it->payload[0] != 0;
    if (!canonical) {
        if (rc != DM_EPARSE || chain_rlp_get_u64(it, &v) != DM_EPARSE)
            abort();
        return;
    }
    if (it->len > sizeof be) {
        if (rc != DM_ERANGE)
            abort();
        return;
    }
    if (rc != DM_OK || memcmp(be + sizeof be - it->len, it->payload, it->len) != 0)
        abort();
    for (size_t i = 0; i < sizeof be - it->len; i++)
        if (be[i])
            abort();
    rc = chain_rlp_get_u64(it, &v);
    if (it->len > 8) {
        if (rc != DM_ERANGE)
            abort();
    } else if (rc != DM_OK || v != dm_get_u64be(be + sizeof be - 8)) {
        abort();
    }
}

static void reencode(dm_buf *b, const chain_rlp_item *it)
{
    if (it->kind == CHAIN_RLP_BYTES) {
        check_integer(it);
        if (chain_rlp_put_bytes(b, it->payload, it->len) != DM_OK)
            abort();
        return;
    }
    size_t mark;
    chain_rlp_iter iter;
    chain_rlp_item child;
    if (chain_rlp_list_begin(b, &mark) != DM_OK || chain_rlp_iter_init(&iter, it) != DM_OK)
        abort();
    while (!chain_rlp_iter_done(&iter)) {
        if (chain_rlp_iter_next(&iter, &child) != DM_OK)
            abort(); /* the tree was validated: every element must read */
        if (child.raw < it->payload || child.raw + child.raw_len > it->payload + it->len)
            abort();
        reencode(b, &child);
    }
    if (chain_rlp_list_end(b, mark) != DM_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chain_rlp_item top;
    int rc = chain_rlp_decode_tree(data, size, &top);
    if (rc == DM_OK) {
        if (top.raw != data || top.raw_len != size)
            abort();
        dm_buf b = DM_BUF_INIT;
        reencode(&b, &top);
        if (b.len != size || memcmp(b.data, data, size) != 0)
            abort();
        dm_buf_free(&b);
    } else if (rc != DM_EPARSE && rc != DM_ETOOBIG) {
        abort();
    }

    chain_tx1559 tx;
    crypto_eth_sig sig;
    rc = chain_tx_decode_signed(data, size, &tx, &sig);
    if (rc == DM_OK) {
        dm_buf b = DM_BUF_INIT;
        uint8_t h1[32], h2[32];
        if (chain_tx_encode_signed(&tx, &sig, &b, h1) != DM_OK)
            abort();
        if (b.len != size || memcmp(b.data, data, size) != 0)
            abort();
        chain_tx_hash(data, size, h2);
        if (memcmp(h1, h2, 32) != 0)
            abort();
        dm_buf_free(&b);
    } else if (rc != DM_EPARSE && rc != DM_ETOOBIG && rc != DM_EUNSUPPORTED) {
        abort();
    }
    return 0;
}
