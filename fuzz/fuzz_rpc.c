/*
 * libFuzzer target for the JSON-RPC reply parser and the typed result parsers
 * (chain/chain_rpc.c): what a hostile Ethereum endpoint can make the node read.
 * Input: byte 0 is the expected request id, byte 1 (mod 8) the number of fee-history reward
 * percentiles asked, the rest is the HTTP body of the reply.
 * Properties checked beyond "no crash, no leak, no UB":
 *   - chain_rpc_parse_reply returns only DM_OK, DM_EPROTO or DM_ETOOBIG (DM_ENOMEM aside),
 *     gives a result exactly on DM_OK, an error kind that matches the status, error data only
 *     for a node's error object, and a NUL-terminated printable-ASCII message;
 *   - every typed parser, run both on the reply's result and on the body itself, returns
 *     only its documented codes, leaves its out-pointer NULL on failure, and on success
 *     yields values within their documented bounds (at most 4 topics, receipt logs that
 *     belong to the receipt, fee-history arrays of the announced sizes, status 0 or 1);
 *   - QUANTITY and fixed DATA values are canonical: a value parsed from a string formats
 *     back to the same string (ignoring hex case).
 * Build: cmake -DDM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
 * Run:   ./fuzz_rpc -max_total_time=30 fuzz/corpus/rpc
 */
#include "chain_rpc.h"
#include "dm_buf.h"
#include "dm_err.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_rpc: check failed: %s (line %d)\n", #c, __LINE__);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_message(const chain_rpc_error *e)
{
    size_t n = strnlen(e->message, CHAIN_RPC_MSG_MAX);
    CHECK(n < CHAIN_RPC_MSG_MAX);
    for (size_t i = 0; i < n; i++)
        CHECK(e->message[i] >= 0x20 && e->message[i] < 0x7f);
}

static void check_u64_canonical(const json_t *v, uint64_t x)
{
    char s[32];
    snprintf(s, sizeof s, "0x%" PRIx64, x);
    CHECK(json_is_string(v));
    CHECK(json_string_length(v) == strlen(s));
    CHECK(strcasecmp(json_string_value(v), s) == 0);
}

static void check_u256_canonical(const json_t *v, const chain_u256 *x)
{
    char s[80];
    size_t j = 2, i = 0;
    s[0] = '0';
    s[1] = 'x';
    while (i < 63 && ((x->be[i / 2] >> (i % 2 ? 0 : 4)) & 15) == 0)
        i++;
    for (; i < 64; i++)
        s[j++] = "0123456789abcdef"[(x->be[i / 2] >> (i % 2 ? 0 : 4)) & 15];
    s[j] = '\0';
    CHECK(json_is_string(v));
    CHECK(json_string_length(v) == j);
    CHECK(strcasecmp(json_string_value(v), s) == 0);
}

static void check_log(const chain_rpc_log *l)
{
    CHECK(l->ntopics <= 4);
    CHECK((l->data_len == 0) == (l->data == NULL));
}

/* Run every typed parser on v. */
static void typed(const json_t *v, size_t npct)
{
    uint64_t u = 0;
    int rc = chain_rpc_parse_u64(v, &u);
    CHECK(rc == DM_OK || rc == DM_EPROTO);
    if (rc == DM_OK)
        check_u64_canonical(v, u);

    chain_u256 w;
    rc = chain_rpc_parse_u256(v, &w);
    CHECK(rc == DM_OK || rc == DM_EPROTO);
    if (rc == DM_OK)
        check_u256_canonical(v, &w);

    uint8_t h[32];
    rc = chain_rpc_parse_fixed(v, h, 32);
    CHECK(rc == DM_OK || rc == DM_EPROTO);
    if (rc == DM_OK)
        CHECK(json_string_length(v) == 66);

    dm_buf b = DM_BUF_INIT;
    rc = chain_rpc_parse_data(v, &b);
    CHECK(rc == DM_OK || rc == DM_EPROTO || rc == DM_ENOMEM);
    if (rc == DM_OK)
        CHECK(json_string_length(v) == 2 + 2 * b.len);
    else
        CHECK(b.len == 0);
    dm_buf_free(&b);

    chain_rpc_logs *logs = (chain_rpc_logs *)1;
    rc = chain_rpc_parse_logs(v, &logs);
    CHECK(rc == DM_OK || rc == DM_EPROTO || rc == DM_ENOMEM);
    CHECK((rc == DM_OK) == (logs != NULL));
    if (logs) {
        CHECK(logs->n == json_array_size(v));
        for (size_t i = 0; i < logs->n; i++)
            check_log(&logs->logs[i]);
    }
    chain_rpc_logs_free(logs);

    chain_rpc_receipt *r = (chain_rpc_receipt *)1;
    rc = chain_rpc_parse_receipt(v, &r);
    CHECK(rc == DM_OK || rc == DM_EPROTO || rc == DM_ENOTFOUND || rc == DM_ENOMEM);
    CHECK((rc == DM_OK) == (r != NULL));
    if (r) {
        CHECK(r->status <= 1);
        for (size_t i = 0; i < r->nlogs; i++) {
            check_log(&r->logs[i]);
            CHECK(memcmp(r->logs[i].tx_hash, r->tx_hash, 32) == 0);
            CHECK(r->logs[i].block_number == r->block_number);
        }
    }
    chain_rpc_receipt_free(r);

    chain_rpc_block blk;
    rc = chain_rpc_parse_block(v, &blk);
    CHECK(rc == DM_OK || rc == DM_EPROTO || rc == DM_ENOTFOUND);
    if (rc == DM_OK)
        check_u64_canonical(json_object_get(v, "number"), blk.number);

    chain_rpc_tx tx;
    rc = chain_rpc_parse_tx(v, &tx);
    CHECK(rc == DM_OK || rc == DM_EPROTO || rc == DM_ENOTFOUND);
    if (rc == DM_OK && !tx.mined)
        CHECK(tx.block_number == 0);

    chain_rpc_fee_history *f = (chain_rpc_fee_history *)1;
    rc = chain_rpc_parse_fee_history(v, npct, &f);
    CHECK(rc == DM_OK || rc == DM_EPROTO || rc == DM_ENOMEM);
    CHECK((rc == DM_OK) == (f != NULL));
    if (f) {
        CHECK(json_array_size(json_object_get(v, "baseFeePerGas")) == f->nblocks + 1);
        for (size_t i = 0; i < f->nblocks; i++)
            CHECK(isfinite(f->gas_used_ratio[i]) && f->gas_used_ratio[i] >= 0);
        CHECK(f->npercentiles == npct);
        CHECK((f->reward != NULL) == (npct > 0 && f->nblocks > 0));
    }
    chain_rpc_fee_history_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint64_t id = data[0];
    size_t npct = data[1] % 8;
    const char *body = (const char *)data + 2;
    size_t n = size - 2;

    json_t *result = (json_t *)1;
    chain_rpc_error err;
    int rc = chain_rpc_parse_reply(body, n, id, &result, &err);
    CHECK(rc == DM_OK || rc == DM_EPROTO || rc == DM_ETOOBIG || rc == DM_ENOMEM);
    CHECK((rc == DM_OK) == (result != NULL));
    check_message(&err);
    if (rc == DM_OK)
        CHECK(err.kind == CHAIN_RPC_ERR_NONE && err.data == NULL);
    else if (rc == DM_EPROTO)
        CHECK(err.kind == CHAIN_RPC_ERR_REPLY || err.kind == CHAIN_RPC_ERR_REMOTE);
    if (err.kind != CHAIN_RPC_ERR_REMOTE)
        CHECK(err.data == NULL && err.code == 0);
    if (result)
        typed(result, npct);
    json_decref(result);
    chain_rpc_error_clear(&err);
    CHECK(err.data == NULL && err.kind == CHAIN_RPC_ERR_NONE);

    /* the typed parsers straight on the body, without the envelope */
    json_t *any = json_loadb(body, n, JSON_DECODE_ANY, NULL);
    if (any) {
        typed(any, npct);
        json_decref(any);
    }
    return 0;
}
