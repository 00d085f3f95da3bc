/*
 * Proof bundle verification (chain/chain_verify.h) against a real anvil started here from
 * the pinned npm package (scripts/setup-node.sh): the AuditAnchor contract is deployed from
 * contracts/AuditAnchor.json by anvil's unlocked account 0, a batch of five audit events is
 * anchored by a transaction signed here with a fresh secp256k1 key (funded with
 * anvil_setBalance) whose address a fresh RSA node key binds, and the bundles of every leaf
 * verify. Then every field of a bundle is altered in turn and verification fails with the
 * check that names it; malformed bundles are refused by the strict parser; an anchor
 * removed with evm_snapshot/evm_revert is "transaction not found"; an endpoint that is down
 * is an RPC failure, not a verdict. Groups that need anvil skip with a message if the
 * binary is absent.
 */
#include "dm_test.h"

#include "anvil_util.h"
#include "groups.h"

#include "chain_hex.h"
#include "chain_rpc.h"
#include "chain_tx.h"
#include "chain_verify.h"
#include "crypto_eth.h"
#include "crypto_hash.h"
#include "crypto_merkle.h"
#include "crypto_rsa.h"
#include "dm_enc.h"
#include "dm_err.h"

#include <time.h>
#include <uv.h>

#define NEV 5
#define CHAIN_ID 31337

typedef struct {
    uint8_t tx[32];
    uint64_t block;
    uint8_t block_hash[32];
    uint64_t log_index;
} anchor_info;

typedef struct {
    size_t n;
    json_t *events[NEV];
    uint8_t leaves[NEV][32];
    crypto_merkle_tree_t *tree;
    uint8_t root[32];
} batch;

static struct {
    /* identity */
    crypto_rsa_t *rsa, *rsa2;
    char node_id[65];
    dm_buf spki, spki2, binding;
    crypto_eth_key eth;
    uint8_t eth_addr[20];
    batch main;
    /* chain (valid only when have_anvil) */
    bool have_anvil;
    anvil_proc anvil;
    uv_loop_t loop;
    chain_rpc_t *rpc;
    char acct0[43];
    uint8_t acct0_addr[20];
    uint8_t contract[20];
    uint8_t deploy_tx[32];
    anchor_info anchor;
    uint8_t reverted_tx[32]; /* a call to the contract that reverts (status 0) */
    uint8_t foreign_tx[32];  /* the same root and count anchored by account 0 */
    json_t *good;            /* the bundle of leaf 3 */
} F;

/* ---------------------------------------------------------------- helpers */

static void hex0x(char *out, const uint8_t *p, size_t n)
{
    out[0] = '0';
    out[1] = 'x';
    dm_hex_encode(out + 2, p, n);
}

static void batch_build(batch *b, size_t n, const char *tag)
{
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        char seed[64], dh[65], sid[65], rcpt[43];
        uint8_t r20[32];
        snprintf(seed, sizeof seed, "%s data %zu", tag, i);
        assert_int_equal(crypto_sha256_hex(dh, seed, strlen(seed)), DM_OK);
        snprintf(seed, sizeof seed, "%s share %zu", tag, i);
        assert_int_equal(crypto_sha256_hex(sid, seed, strlen(seed)), DM_OK);
        snprintf(seed, sizeof seed, "%s recipient %zu", tag, i);
        assert_int_equal(crypto_sha256(r20, seed, strlen(seed)), DM_OK);
        hex0x(rcpt, r20, 20);
        b->events[i] =
            json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "event_type", "data_share", "data_hash", dh,
                      "recipient", rcpt, "timestamp", (json_int_t)(1705312200 + i), "share_id", sid,
                      "origin", F.node_id);
        assert_non_null(b->events[i]);
        char *canon = json_dumps(b->events[i], JSON_COMPACT | JSON_SORT_KEYS);
        assert_non_null(canon);
        crypto_merkle_leaf_hash(b->leaves[i], canon, strlen(canon));
        free(canon);
    }
    assert_int_equal(crypto_merkle_tree_build(&b->tree, (const uint8_t(*)[32])b->leaves, n), DM_OK);
    crypto_merkle_tree_root(b->tree, b->root);
}

static void batch_free(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        json_decref(b->events[i]);
    crypto_merkle_tree_destroy(b->tree);
    memset(b, 0, sizeof *b);
}

static json_t *b64_json(const dm_buf *b)
{
    dm_buf t = DM_BUF_INIT;
    assert_int_equal(dm_b64_encode(&t, b->data, b->len, DM_B64_STD), DM_OK);
    json_t *j = json_string(dm_buf_cstr(&t));
    dm_buf_free(&t);
    return j;
}

/* The bundle of leaf i of `b` anchored by `a`, as the node writes it (docs/ANCHORING.md). */
static json_t *bundle_json(const batch *b, size_t i, const anchor_info *a)
{
    crypto_merkle_proof p;
    assert_int_equal(crypto_merkle_tree_proof(b->tree, i, &p), DM_OK);
    json_t *sibs = json_array();
    for (uint32_t k = 0; k < p.len; k++) {
        char h[65];
        dm_hex_encode(h, p.sib[k], 32);
        json_array_append_new(sibs, json_string(h));
    }
    char leaf[65], root[65], entry[65], tx[67], bh[67], contract[43], sender[43];
    dm_hex_encode(leaf, b->leaves[i], 32);
    dm_hex_encode(root, b->root, 32);
    assert_int_equal(crypto_sha256_hex(entry, "entry", 5), DM_OK);
    hex0x(tx, a->tx, 32);
    hex0x(bh, a->block_hash, 32);
    crypto_eth_address_format(F.contract, contract);
    crypto_eth_address_format(F.eth_addr, sender);
    json_t *j = json_pack("{s:s, s:I, s:s, s:o, s:s, s:I, s:s,"
                          " s:{s:I, s:I, s:o, s:s},"
                          " s:{s:s, s:I, s:s, s:I, s:s},"
                          " s:{s:s, s:o, s:s, s:o}}",
                          "format", "dmnode-proof-v1", "chain_id", (json_int_t)CHAIN_ID, "contract",
                          contract, "event", json_deep_copy(b->events[i]), "leaf", leaf,
                          "audit_seq", (json_int_t)(12 + i), "entry_hash", entry, "merkle", "index",
                          (json_int_t)i, "count", (json_int_t)b->n, "siblings", sibs, "root", root,
                          "anchor", "tx_hash", tx, "block_number", (json_int_t)a->block,
                          "block_hash", bh, "log_index", (json_int_t)a->log_index, "sender", sender,
                          "origin", "node_id", F.node_id, "spki", b64_json(&F.spki), "eth_address",
                          sender, "eth_binding", b64_json(&F.binding));
    assert_non_null(j);
    return j;
}

static char *dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    assert_non_null(s);
    return s;
}

/* ---------------------------------------------------------------- anvil */

static bool anvil_start(void)
{
    char bin[PATH_MAX];
    if (!anvil_util_bin(bin, sizeof bin)) {
        fprintf(stderr, "[ chain_verify ] anvil not found at %s: run scripts/setup-node.sh\n", bin);
        return false;
    }
    if (!anvil_util_start(&F.anvil, 0, NULL, 15000))
        fail_msg("anvil %s did not start", bin);
    return true;
}

/* ---------------------------------------------------------------- synchronous RPC */

static void run_until(const bool *done)
{
    time_t start = time(NULL);
    while (!*done) {
        uv_run(&F.loop, UV_RUN_ONCE);
        if (time(NULL) - start > 60)
            fail_msg("loop did not complete within 60 s");
    }
}

/* Call and return the result (new reference); fails the test on any error. */
static json_t *rpc(const char *method, const char *params)
{
    return anvil_util_rpc(&F.loop, F.rpc, method, params);
}

static void rpc_void(const char *method, const char *params)
{
    json_decref(rpc(method, params));
}

static chain_rpc_receipt *receipt(const uint8_t tx[32])
{
    return anvil_util_receipt(&F.loop, F.rpc, tx);
}

static uint64_t nonce_of(const uint8_t addr[20])
{
    char a[43], params[80];
    hex0x(a, addr, 20);
    snprintf(params, sizeof params, "[\"%s\", \"pending\"]", a);
    json_t *r = rpc("eth_getTransactionCount", params);
    uint64_t n;
    assert_int_equal(chain_rpc_parse_u64(r, &n), DM_OK);
    json_decref(r);
    return n;
}

/* Sign with F.eth and send a type-2 call to the contract; the tx hash in `tx`. */
static void send_signed(const uint8_t *data, size_t n, uint8_t tx[32])
{
    chain_tx1559 t = {.chain_id = CHAIN_ID,
                      .nonce = nonce_of(F.eth_addr),
                      .gas_limit = 200000,
                      .has_to = true,
                      .data = data,
                      .data_len = n};
    memcpy(t.to, F.contract, 20);
    chain_u256_from_u64(&t.max_priority_fee_per_gas, 1000000000ull);
    chain_u256_from_u64(&t.max_fee_per_gas, 50000000000ull);
    dm_buf raw = DM_BUF_INIT, params = DM_BUF_INIT;
    assert_int_equal(chain_tx_sign(&t, &F.eth, &raw, tx), DM_OK);
    assert_int_equal(dm_buf_puts(&params, "[\""), DM_OK);
    assert_int_equal(chain_hex_data_append(&params, raw.data, raw.len), DM_OK);
    assert_int_equal(dm_buf_puts(&params, "\"]"), DM_OK);
    json_t *r = rpc("eth_sendRawTransaction", dm_buf_cstr(&params));
    uint8_t got[32];
    assert_int_equal(chain_rpc_parse_fixed(r, got, 32), DM_OK);
    assert_memory_equal(got, tx, 32); /* the locally computed hash is the chain's */
    json_decref(r);
    dm_buf_free(&raw);
    dm_buf_free(&params);
}

static void anchor_calldata(uint8_t out[68], const uint8_t root[32], uint64_t count)
{
    static const uint8_t sel[4] = {0xdb, 0x2c, 0x4a, 0xca}; /* anchor(bytes32,uint64) */
    memset(out, 0, 68);
    memcpy(out, sel, 4);
    memcpy(out + 4, root, 32);
    dm_put_u64be(out + 60, count);
}

/* Anchor `b` from F.eth; fills `a` from the receipt (status 1, one Anchored log). */
static void anchor_batch(const batch *b, anchor_info *a)
{
    uint8_t data[68];
    anchor_calldata(data, b->root, b->n);
    send_signed(data, sizeof data, a->tx);
    chain_rpc_receipt *rc = receipt(a->tx);
    assert_int_equal(rc->status, 1);
    assert_int_equal(rc->nlogs, 1);
    a->block = rc->block_number;
    memcpy(a->block_hash, rc->block_hash, 32);
    a->log_index = rc->logs[0].log_index;
    chain_rpc_receipt_free(rc);
}

static void deploy(void)
{
    anvil_util_deploy(&F.loop, F.rpc, F.acct0, F.contract, F.deploy_tx);
    assert_int_equal(crypto_eth_address_parse(F.acct0, F.acct0_addr), DM_OK);
}

/* ---------------------------------------------------------------- fixture */

static int identity_setup(void)
{
    if (crypto_rsa_generate(&F.rsa, 2048) || crypto_rsa_generate(&F.rsa2, 2048) ||
        crypto_rsa_node_id(F.rsa, F.node_id) || crypto_rsa_spki(F.rsa, &F.spki) ||
        crypto_rsa_spki(F.rsa2, &F.spki2) || crypto_eth_key_generate(&F.eth) ||
        crypto_eth_address(&F.eth, F.eth_addr))
        return -1;
    /* the binding exactly as node_keys makes it at `dmnode init` */
    char addr[43];
    crypto_eth_address_format(F.eth_addr, addr);
    dm_buf msg = DM_BUF_INIT;
    int rc = dm_buf_printf(&msg, "dmnode-eth-binding-v1:%s:%s", F.node_id, addr);
    if (!rc)
        rc = crypto_rsa_sign(F.rsa, msg.data, msg.len, &F.binding);
    dm_buf_free(&msg);
    return rc ? -1 : 0;
}

static int group_setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    if (identity_setup())
        return -1;
    batch_build(&F.main, NEV, "main");
    /* offline-only bundles carry a made-up anchor */
    for (int i = 0; i < 32; i++) {
        F.anchor.tx[i] = (uint8_t)(0xa0 + i);
        F.anchor.block_hash[i] = (uint8_t)(0x10 + i);
    }
    F.anchor.block = 7;
    F.anchor.log_index = 0;
    memset(F.contract, 0x42, 20);

    if (!anvil_start())
        return 0; /* the chain tests skip */
    F.have_anvil = true;
    if (uv_loop_init(&F.loop) || chain_rpc_create(&F.rpc, &F.loop, F.anvil.url, NULL))
        return -1;
    deploy();

    /* fund the node's account and anchor the batch from it */
    char a[43], params[128];
    hex0x(a, F.eth_addr, 20);
    snprintf(params, sizeof params, "[\"%s\", \"0x56bc75e2d63100000\"]", a); /* 100 ETH */
    rpc_void("anvil_setBalance", params);
    anchor_batch(&F.main, &F.anchor);

    /* a reverting call (unknown selector) from the same account */
    const uint8_t bad[4] = {0x12, 0x34, 0x56, 0x78};
    send_signed(bad, sizeof bad, F.reverted_tx);
    chain_rpc_receipt *rc = receipt(F.reverted_tx);
    assert_int_equal(rc->status, 0);
    chain_rpc_receipt_free(rc);

    /* the same root and count anchored by someone else (account 0) */
    uint8_t data[68];
    char ctr[43], dh[2 * 68 + 3];
    anchor_calldata(data, F.main.root, F.main.n);
    hex0x(ctr, F.contract, 20);
    hex0x(dh, data, 68);
    json_t *p = json_pack("[{s:s, s:s, s:s}]", "from", F.acct0, "to", ctr, "data", dh);
    char *ptxt = json_dumps(p, JSON_COMPACT);
    json_t *h = rpc("eth_sendTransaction", ptxt);
    assert_int_equal(chain_rpc_parse_fixed(h, F.foreign_tx, 32), DM_OK);
    json_decref(h);
    free(ptxt);
    json_decref(p);

    rpc_void("anvil_mine", "[\"0x2\"]"); /* a few confirmations */
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (F.have_anvil)
        anvil_util_client_close(&F.loop, &F.rpc);
    anvil_util_stop(&F.anvil);
    batch_free(&F.main);
    json_decref(F.good);
    crypto_rsa_destroy(F.rsa);
    crypto_rsa_destroy(F.rsa2);
    dm_buf_free(&F.spki);
    dm_buf_free(&F.spki2);
    dm_buf_free(&F.binding);
    crypto_eth_key_wipe(&F.eth);
    return 0;
}

#define NEED_ANVIL() ANVIL_UTIL_NEED(F.have_anvil, "chain_verify")

/* ---------------------------------------------------------------- verification helpers */

static int verify_json(const json_t *bundle, uint64_t min_conf, chain_verify_report *rep)
{
    char *t = dump(bundle);
    int rc = chain_verify_run(F.anvil.url, t, strlen(t), min_conf, NULL, rep);
    free(t);
    return rc;
}

static void print_report(const chain_verify_report *rep)
{
    dm_buf out = DM_BUF_INIT;
    assert_int_equal(chain_verify_report_format(rep, &out), DM_OK);
    fprintf(stderr, "%s", dm_buf_cstr(&out));
    dm_buf_free(&out);
}

static void expect_fail(const chain_verify_report *rep, chain_verify_check_id id,
                        const char *needle, const char *what)
{
    const chain_verify_check *c = &rep->checks[id];
    if (c->result != CHAIN_VERIFY_FAIL || (needle && !strstr(c->msg, needle))) {
        print_report(rep);
        fail_msg("%s: check %s is %s (%s), expected FAIL%s%s", what, chain_verify_check_name(id),
                 chain_verify_result_name(c->result), c->msg, needle ? " with " : "",
                 needle ? needle : "");
    }
}

/* ---------------------------------------------------------------- offline tests */

static void test_verify_offline_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < NEV; i++) {
        json_t *j = bundle_json(&F.main, i, &F.anchor);
        char *t = dump(j);
        chain_verify_bundle *b = NULL;
        char err[CHAIN_VERIFY_MSG_MAX];
        assert_int_equal(chain_verify_bundle_parse(t, strlen(t), &b, err), DM_OK);
        assert_int_equal(b->chain_id, CHAIN_ID);
        assert_int_equal(b->merkle.index, i);
        assert_int_equal(b->merkle.count, NEV);
        assert_memory_equal(b->leaf, F.main.leaves[i], 32);
        assert_memory_equal(b->root, F.main.root, 32);
        assert_memory_equal(b->anchor.tx_hash, F.anchor.tx, 32);
        assert_int_equal(b->anchor.block_number, F.anchor.block);
        assert_memory_equal(b->anchor.sender, F.eth_addr, 20);
        assert_memory_equal(b->origin.eth_address, F.eth_addr, 20);
        assert_string_equal(b->origin.node_id, F.node_id);
        assert_int_equal(b->origin.spki_len, F.spki.len);
        assert_memory_equal(b->origin.spki, F.spki.data, F.spki.len);
        assert_int_equal(b->audit_seq, 12 + i);
        chain_verify_report rep;
        chain_verify_report_init(&rep);
        assert_int_equal(chain_verify_offline(b, &rep), DM_OK);
        assert_true(chain_verify_report_offline_ok(&rep));
        assert_false(chain_verify_report_ok(&rep)); /* the chain was not asked */
        assert_int_equal(rep.checks[CHAIN_VERIFY_CHECK_CHAIN_ID].result, CHAIN_VERIFY_NOT_RUN);
        chain_verify_bundle_free(b);
        free(t);
        json_decref(j);
    }
}

/* Parse, run the offline checks, return the report. */
static int offline(const json_t *j, chain_verify_report *rep)
{
    char *t = dump(j);
    chain_verify_bundle *b = NULL;
    char err[CHAIN_VERIFY_MSG_MAX];
    chain_verify_report_init(rep);
    int rc = chain_verify_bundle_parse(t, strlen(t), &b, err);
    free(t);
    if (rc)
        fail_msg("parse: %s", err);
    rc = chain_verify_offline(b, rep);
    chain_verify_bundle_free(b);
    return rc;
}

static void test_verify_offline_messages(void **state)
{
    (void)state;
    chain_verify_report rep;
    /* a sibling altered: the message names both roots */
    json_t *j = bundle_json(&F.main, 3, &F.anchor);
    json_t *sibs = json_object_get(json_object_get(j, "merkle"), "siblings");
    json_array_set_new(sibs, 1,
                       json_string("00000000000000000000000000000000000000000000000000"
                                   "00000000000000"));
    assert_int_equal(offline(j, &rep), DM_ETAMPER);
    char root[65];
    dm_hex_encode(root, F.main.root, 32);
    expect_fail(&rep, CHAIN_VERIFY_CHECK_MERKLE, "merkle root mismatch: path gives ", "sibling");
    assert_non_null(strstr(rep.checks[CHAIN_VERIFY_CHECK_MERKLE].msg, root));
    assert_int_equal(rep.checks[CHAIN_VERIFY_CHECK_LEAF].result, CHAIN_VERIFY_PASS);
    assert_int_equal(rep.checks[CHAIN_VERIFY_CHECK_BINDING].result, CHAIN_VERIFY_PASS);
    json_decref(j);

    /* index beyond count, and a path of the wrong length */
    j = bundle_json(&F.main, 3, &F.anchor);
    json_object_set_new(json_object_get(j, "merkle"), "index", json_integer(5));
    assert_int_equal(offline(j, &rep), DM_ETAMPER);
    expect_fail(&rep, CHAIN_VERIFY_CHECK_MERKLE, "out of range", "index");
    json_object_set_new(json_object_get(j, "merkle"), "index", json_integer(4));
    assert_int_equal(offline(j, &rep), DM_ETAMPER);
    expect_fail(&rep, CHAIN_VERIFY_CHECK_MERKLE, "needs 1", "index 4 of 5");
    json_decref(j);

    /* a batch of one: no siblings, root = leaf */
    batch one;
    batch_build(&one, 1, "one");
    j = bundle_json(&one, 0, &F.anchor);
    assert_int_equal(json_array_size(json_object_get(json_object_get(j, "merkle"), "siblings")), 0);
    assert_int_equal(offline(j, &rep), DM_OK);
    json_decref(j);
    batch_free(&one);

    /* the report's text and JSON forms */
    j = bundle_json(&F.main, 0, &F.anchor);
    json_object_set_new(json_object_get(j, "event"), "timestamp", json_integer(1));
    assert_int_equal(offline(j, &rep), DM_ETAMPER);
    expect_fail(&rep, CHAIN_VERIFY_CHECK_LEAF, "leaf mismatch: canonical event hashes to ",
                "event");
    dm_buf out = DM_BUF_INIT;
    assert_int_equal(chain_verify_report_format(&rep, &out), DM_OK);
    assert_non_null(strstr(dm_buf_cstr(&out), "leaf"));
    assert_non_null(strstr(dm_buf_cstr(&out), "FAIL"));
    dm_buf_free(&out);
    json_t *rj = chain_verify_report_json(&rep);
    assert_non_null(rj);
    assert_true(json_is_false(json_object_get(rj, "ok")));
    json_t *c1 = json_array_get(json_object_get(rj, "checks"), CHAIN_VERIFY_CHECK_LEAF);
    assert_string_equal(json_string_value(json_object_get(c1, "check")), "leaf");
    assert_string_equal(json_string_value(json_object_get(c1, "result")), "fail");
    json_decref(rj);
    json_decref(j);
}

/* Set `path` ("a.b" or "merkle.siblings.2") of j to v (taken). */
static void jset(json_t *j, const char *path, json_t *v)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL, *tok = strtok_r(buf, ".", &save), *next;
    json_t *cur = j;
    while ((next = strtok_r(NULL, ".", &save))) {
        cur =
            json_is_array(cur) ? json_array_get(cur, (size_t)atoi(tok)) : json_object_get(cur, tok);
        assert_non_null(cur);
        tok = next;
    }
    if (json_is_array(cur))
        assert_int_equal(json_array_set_new(cur, (size_t)atoi(tok), v), 0);
    else
        assert_int_equal(json_object_set_new(cur, tok, v), 0);
}

static const json_t *jget(const json_t *j, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    const json_t *cur = j;
    for (char *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save))
        cur =
            json_is_array(cur) ? json_array_get(cur, (size_t)atoi(tok)) : json_object_get(cur, tok);
    assert_non_null(cur);
    return cur;
}

typedef struct {
    const char *text;
    const char *needle; /* in the parse error */
} bad_case;

static void test_verify_parse_strict(void **state)
{
    (void)state;
    json_t *good = bundle_json(&F.main, 2, &F.anchor);
    char *t = dump(good);
    chain_verify_bundle *b = NULL;
    char err[CHAIN_VERIFY_MSG_MAX];
    assert_int_equal(chain_verify_bundle_parse(t, strlen(t), &b, err), DM_OK);
    chain_verify_bundle_free(b);
    free(t);

    struct {
        const char *path;
        const char *json; /* the new value, as JSON text; NULL: delete the member */
        const char *needle;
    } cases[] = {
        {"format", "\"dmnode-proof-v2\"", "format"},
        {"chain_id", "0", "chain_id"},
        {"chain_id", "-1", "chain_id"},
        {"chain_id", "\"31337\"", "chain_id"},
        {"chain_id", "31337.0", "chain_id"},
        {"contract", "\"0x42\"", "contract"},
        {"contract", "\"4242424242424242424242424242424242424242\"", "contract"},
        {"contract", "\"0x4242424242424242424242424242424242424g42\"", "contract"},
        {"leaf", "\"00\"", "leaf"},
        {"leaf", "\"0x0000000000000000000000000000000000000000000000000000000000000000\"", "leaf"},
        {"leaf", "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"", "leaf"},
        {"audit_seq", "-3", "audit_seq"},
        {"audit_seq", "null", "audit_seq"},
        {"entry_hash", "\"\"", "entry_hash"},
        {"event", "[]", "event"},
        {"event.event_type", "\"\"", "event.event_type"},
        {"event.event_type", "7", "event.event_type"},
        {"event.origin", "\"abc\"", "event.origin"},
        {"event.timestamp", "1705312200.5", "real"},
        {"event.extra", "{\"a\":{\"b\":{\"c\":{\"d\":1}}}}", "deeper"},
        {"merkle", "[]", "merkle"},
        {"merkle.index", "-1", "merkle.index"},
        {"merkle.count", "0", "merkle.count"},
        {"merkle.count", "true", "merkle.count"},
        {"merkle.siblings", "\"x\"", "merkle.siblings"},
        {"merkle.siblings.1", "\"00\"", "merkle.siblings[1]"},
        {"merkle.siblings.0", "1", "merkle.siblings[0]"},
        {"merkle.root", "null", "merkle.root"},
        {"merkle.extra", "1", "unknown member \"extra\""},
        {"merkle.root", NULL, "missing member \"root\""},
        {"anchor.tx_hash", "\"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf\"",
         "anchor.tx_hash"},
        {"anchor.tx_hash", "\"0xA0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF\"",
         "anchor.tx_hash"},
        {"anchor.block_number", "\"0x7\"", "anchor.block_number"},
        {"anchor.block_hash", "\"0x\"", "anchor.block_hash"},
        {"anchor.log_index", "-1", "anchor.log_index"},
        {"anchor.sender", "\"0x0\"", "anchor.sender"},
        {"anchor.sender", NULL, "missing member \"sender\""},
        {"anchor.extra", "null", "unknown member"},
        {"origin.node_id", "\"ABCDEF\"", "origin.node_id"},
        {"origin.spki", "\"not base64!\"", "origin.spki"},
        {"origin.spki", "\"\"", "origin.spki"},
        {"origin.spki", "\"QUJD\\n\"", "origin.spki"},
        {"origin.eth_binding", "\"QUJDRA\"", "origin.eth_binding"},   /* no padding */
        {"origin.eth_binding", "\"QUJDRB==\"", "origin.eth_binding"}, /* non-zero tail bits */
        {"origin.eth_binding", "\"QUJD-_==\"", "origin.eth_binding"}, /* URL alphabet */
        {"origin.eth_address", "1", "origin.eth_address"},
        {"origin.extra", "1", "unknown member"},
        {"origin", NULL, "missing member \"origin\""},
        {"extra", "1", "unknown member \"extra\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = json_deep_copy(good);
        if (cases[i].json) {
            json_error_t je;
            json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY, &je);
            assert_non_null(v);
            jset(j, cases[i].path, v);
        } else {
            const char *dot = strrchr(cases[i].path, '.');
            if (dot) {
                char parent[64];
                snprintf(parent, sizeof parent, "%.*s", (int)(dot - cases[i].path), cases[i].path);
                json_object_del((json_t *)jget(j, parent), dot + 1);
            } else {
                json_object_del(j, cases[i].path);
            }
        }
        t = dump(j);
        b = (chain_verify_bundle *)1;
        int rc = chain_verify_bundle_parse(t, strlen(t), &b, err);
        if (rc != DM_EPARSE || !strstr(err, cases[i].needle))
            fail_msg("case %zu (%s = %s): rc %s, err \"%s\", expected \"%s\"", i, cases[i].path,
                     cases[i].json ? cases[i].json : "(deleted)", dm_err_name(rc), err,
                     cases[i].needle);
        assert_null(b);
        free(t);
        json_decref(j);
    }

    /* EIP-55: mixed case must be the checksum; all-lower and all-upper are fine */
    char addr[43];
    crypto_eth_address_format(F.eth_addr, addr);
    bool mixed = false;
    for (int k = 2; k < 42; k++)
        if (addr[k] >= 'a' && addr[k] <= 'f') {
            addr[k] = (char)(addr[k] - 'a' + 'A');
            mixed = true;
            break;
        }
    if (mixed) {
        json_t *j = json_deep_copy(good);
        jset(j, "anchor.sender", json_string(addr));
        t = dump(j);
        assert_int_equal(chain_verify_bundle_parse(t, strlen(t), &b, err), DM_EPARSE);
        assert_non_null(strstr(err, "anchor.sender"));
        free(t);
        json_decref(j);
    }

    /* too many siblings */
    {
        json_t *j = json_deep_copy(good);
        json_t *sibs = json_array();
        for (int k = 0; k < CRYPTO_MERKLE_MAX_DEPTH + 1; k++)
            json_array_append_new(sibs, json_string("0000000000000000000000000000000000000000"
                                                    "000000000000000000000000"));
        jset(j, "merkle.siblings", sibs);
        t = dump(j);
        assert_int_equal(chain_verify_bundle_parse(t, strlen(t), &b, err), DM_EPARSE);
        assert_non_null(strstr(err, "at most 64"));
        free(t);
        json_decref(j);
    }

    /* text-level defects */
    t = dump(good);
    size_t n = strlen(t);
    const char *texts[] = {"", "[]", "{", "null", "\"x\""};
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++)
        assert_int_equal(chain_verify_bundle_parse(texts[k], strlen(texts[k]), &b, err), DM_EPARSE);
    assert_int_equal(chain_verify_bundle_parse(NULL, 0, &b, err), DM_EPARSE);
    char *trail = malloc(n + 3);
    memcpy(trail, t, n);
    memcpy(trail + n, " {", 2);
    assert_int_equal(chain_verify_bundle_parse(trail, n + 2, &b, err), DM_EPARSE);
    trail[n] = '\0'; /* an embedded NUL after the object */
    assert_int_equal(chain_verify_bundle_parse(trail, n + 1, &b, err), DM_EPARSE);
    free(trail);
    /* a duplicate key */
    char *dup = malloc(n + 64);
    snprintf(dup, n + 64, "{\"chain_id\": 1, %s", t + 1);
    assert_int_equal(chain_verify_bundle_parse(dup, strlen(dup), &b, err), DM_EPARSE);
    free(dup);
    /* a truncated bundle is never accepted */
    for (size_t cut = 0; cut < n; cut += 7)
        assert_int_equal(chain_verify_bundle_parse(t, cut, &b, err), DM_EPARSE);
    /* the size cap */
    char *big = malloc(CHAIN_VERIFY_BUNDLE_MAX + 2);
    memset(big, ' ', CHAIN_VERIFY_BUNDLE_MAX + 1);
    memcpy(big, t, n);
    assert_int_equal(chain_verify_bundle_parse(big, CHAIN_VERIFY_BUNDLE_MAX, &b, err), DM_OK);
    chain_verify_bundle_free(b);
    assert_int_equal(chain_verify_bundle_parse(big, CHAIN_VERIFY_BUNDLE_MAX + 1, &b, err),
                     DM_ETOOBIG);
    assert_null(b);
    free(big);
    free(t);
    /* err may be NULL */
    assert_int_equal(chain_verify_bundle_parse("{}", 2, &b, NULL), DM_EPARSE);
    json_decref(good);
}

/* ---------------------------------------------------------------- chain tests */

static void test_verify_online_valid(void **state)
{
    (void)state;
    NEED_ANVIL();
    for (size_t i = 0; i < NEV; i++) {
        json_t *j = bundle_json(&F.main, i, &F.anchor);
        chain_verify_report rep;
        int rc = verify_json(j, 3, &rep);
        if (rc != DM_OK || !chain_verify_report_ok(&rep)) {
            print_report(&rep);
            fail_msg("bundle %zu: %s", i, dm_err_name(rc));
        }
        /* its block, the reverted call's, the foreign anchor's and two mined blocks */
        assert_int_equal(rep.confirmations, 5);
        assert_int_equal(rep.rpc_status, DM_OK);
        if (i == 3)
            F.good = json_incref(j);
        json_decref(j);
    }
    /* min_confirmations 0 means 1 */
    chain_verify_report rep;
    assert_int_equal(verify_json(F.good, 0, &rep), DM_OK);
}

typedef enum { FLIP, BUMP, SET, B64FLIP, DROP_LAST } tamper_op;

typedef struct {
    const char *path;
    tamper_op op;
    const char *value; /* SET: JSON text; BUMP: decimal delta */
    chain_verify_check_id expect;
    const char *needle;
    chain_verify_check_id also; /* a second check that must fail too, or FORMAT for none */
} tamper_case;

/* Change the last hex digit of a hex string (lower-cased: an address stays valid). */
static json_t *flipped(const json_t *v)
{
    char s[256];
    snprintf(s, sizeof s, "%s", json_string_value(v));
    for (char *p = s; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    size_t n = strlen(s);
    assert_true(n > 2);
    s[n - 1] = s[n - 1] == '0' ? '1' : '0';
    return json_string(s);
}

static json_t *b64_flipped(const json_t *v)
{
    const char *s = json_string_value(v);
    dm_buf raw = DM_BUF_INIT, out = DM_BUF_INIT;
    assert_int_equal(dm_b64_decode(&raw, s, strlen(s), DM_B64_STD), DM_OK);
    raw.data[raw.len / 2] ^= 0x01;
    assert_int_equal(dm_b64_encode(&out, raw.data, raw.len, DM_B64_STD), DM_OK);
    json_t *j = json_string(dm_buf_cstr(&out));
    dm_buf_free(&raw);
    dm_buf_free(&out);
    return j;
}

static void apply(json_t *j, const tamper_case *c)
{
    const json_t *old = c->op == SET ? NULL : jget(j, c->path);
    switch (c->op) {
    case FLIP:
        jset(j, c->path, flipped(old));
        break;
    case BUMP:
        jset(j, c->path, json_integer(json_integer_value(old) + atoi(c->value)));
        break;
    case SET: {
        json_error_t je;
        json_t *v = json_loads(c->value, JSON_DECODE_ANY, &je);
        assert_non_null(v);
        jset(j, c->path, v);
        break;
    }
    case B64FLIP:
        jset(j, c->path, b64_flipped(old));
        break;
    case DROP_LAST:
        assert_int_equal(json_array_remove((json_t *)old, json_array_size(old) - 1), 0);
        break;
    }
}

static void test_verify_tampered(void **state)
{
    (void)state;
    NEED_ANVIL();
    assert_non_null(F.good);
    char tx_other[67], deploy_tx[67], reverted[67], foreign[67], spki2[1024], other_id[67];
    hex0x(tx_other, F.foreign_tx, 32);
    char q_deploy[80], q_reverted[80], q_foreign[80], q_spki2[1100], q_acct0[50], q_id[80];
    hex0x(deploy_tx, F.deploy_tx, 32);
    hex0x(reverted, F.reverted_tx, 32);
    hex0x(foreign, F.foreign_tx, 32);
    snprintf(q_deploy, sizeof q_deploy, "\"%s\"", deploy_tx);
    snprintf(q_reverted, sizeof q_reverted, "\"%s\"", reverted);
    snprintf(q_foreign, sizeof q_foreign, "\"%s\"", foreign);
    snprintf(q_acct0, sizeof q_acct0, "\"%s\"", F.acct0);
    {
        dm_buf t = DM_BUF_INIT;
        assert_int_equal(dm_b64_encode(&t, F.spki2.data, F.spki2.len, DM_B64_STD), DM_OK);
        snprintf(spki2, sizeof spki2, "%s", dm_buf_cstr(&t));
        dm_buf_free(&t);
        snprintf(q_spki2, sizeof q_spki2, "\"%s\"", spki2);
        char id2[65];
        assert_int_equal(crypto_rsa_node_id(F.rsa2, id2), DM_OK);
        snprintf(other_id, sizeof other_id, "%s", id2);
        snprintf(q_id, sizeof q_id, "\"%s\"", other_id);
    }
    (void)tx_other;

    const tamper_case cases[] = {
        /* the event, each field */
        {"event.event_type", SET, "\"data_delete\"", CHAIN_VERIFY_CHECK_LEAF, "leaf mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"event.data_hash", FLIP, NULL, CHAIN_VERIFY_CHECK_LEAF, "leaf mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"event.recipient", FLIP, NULL, CHAIN_VERIFY_CHECK_LEAF, "leaf mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"event.timestamp", BUMP, "1", CHAIN_VERIFY_CHECK_LEAF, "leaf mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"event.share_id", FLIP, NULL, CHAIN_VERIFY_CHECK_LEAF, "leaf mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"event.origin", FLIP, NULL, CHAIN_VERIFY_CHECK_LEAF, "leaf mismatch",
         CHAIN_VERIFY_CHECK_ORIGIN},
        {"event.note", SET, "\"added\"", CHAIN_VERIFY_CHECK_LEAF, "leaf mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        /* the Merkle part */
        {"leaf", FLIP, NULL, CHAIN_VERIFY_CHECK_LEAF, "leaf mismatch", CHAIN_VERIFY_CHECK_MERKLE},
        {"merkle.index", BUMP, "-1", CHAIN_VERIFY_CHECK_MERKLE, "merkle root mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"merkle.index", BUMP, "1", CHAIN_VERIFY_CHECK_MERKLE, "needs 1",
         CHAIN_VERIFY_CHECK_FORMAT},
        /* index 3 of 6 has the same path as 3 of 5: only the anchored count tells */
        {"merkle.count", BUMP, "1", CHAIN_VERIFY_CHECK_COUNT,
         "anchored count mismatch: log says 5 leaves, bundle says 6", CHAIN_VERIFY_CHECK_FORMAT},
        {"merkle.count", BUMP, "-1", CHAIN_VERIFY_CHECK_MERKLE, "needs 2",
         CHAIN_VERIFY_CHECK_COUNT},
        {"merkle.siblings.0", FLIP, NULL, CHAIN_VERIFY_CHECK_MERKLE, "merkle root mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"merkle.siblings.1", FLIP, NULL, CHAIN_VERIFY_CHECK_MERKLE, "merkle root mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"merkle.siblings.2", FLIP, NULL, CHAIN_VERIFY_CHECK_MERKLE, "merkle root mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"merkle.siblings", DROP_LAST, NULL, CHAIN_VERIFY_CHECK_MERKLE, "has 2 siblings",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"merkle.root", FLIP, NULL, CHAIN_VERIFY_CHECK_MERKLE, "merkle root mismatch",
         CHAIN_VERIFY_CHECK_TOPICS},
        /* the anchor */
        {"anchor.tx_hash", FLIP, NULL, CHAIN_VERIFY_CHECK_RECEIPT, "transaction not found",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"anchor.tx_hash", SET, q_deploy, CHAIN_VERIFY_CHECK_LOG, "receipt has no log with index",
         CHAIN_VERIFY_CHECK_FROM},
        {"anchor.tx_hash", SET, q_reverted, CHAIN_VERIFY_CHECK_STATUS, "transaction reverted",
         CHAIN_VERIFY_CHECK_LOG},
        {"anchor.tx_hash", SET, q_foreign, CHAIN_VERIFY_CHECK_TOPICS, "log sender topic",
         CHAIN_VERIFY_CHECK_FROM},
        {"anchor.block_number", BUMP, "1", CHAIN_VERIFY_CHECK_BLOCK, "block number mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"anchor.block_number", BUMP, "-1", CHAIN_VERIFY_CHECK_BLOCK, "block number mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"anchor.block_hash", FLIP, NULL, CHAIN_VERIFY_CHECK_BLOCK, "block hash mismatch",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"anchor.log_index", BUMP, "1", CHAIN_VERIFY_CHECK_LOG, "receipt has no log with index",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"anchor.sender", FLIP, NULL, CHAIN_VERIFY_CHECK_SENDER, "is not the anchor sender",
         CHAIN_VERIFY_CHECK_FROM},
        {"anchor.sender", SET, q_acct0, CHAIN_VERIFY_CHECK_TOPICS, "log sender topic",
         CHAIN_VERIFY_CHECK_SENDER},
        {"contract", FLIP, NULL, CHAIN_VERIFY_CHECK_CONTRACT, "log not emitted by contract 0x",
         CHAIN_VERIFY_CHECK_FORMAT},
        {"chain_id", BUMP, "1", CHAIN_VERIFY_CHECK_CHAIN_ID,
         "chain id mismatch: the endpoint is chain 31337, bundle says 31338",
         CHAIN_VERIFY_CHECK_FORMAT},
        /* the origin */
        {"origin.node_id", SET, q_id, CHAIN_VERIFY_CHECK_NODE_ID, "node_id mismatch",
         CHAIN_VERIFY_CHECK_ORIGIN},
        {"origin.spki", B64FLIP, NULL, CHAIN_VERIFY_CHECK_NODE_ID, "node_id mismatch",
         CHAIN_VERIFY_CHECK_BINDING},
        {"origin.spki", SET, q_spki2, CHAIN_VERIFY_CHECK_NODE_ID, "node_id mismatch",
         CHAIN_VERIFY_CHECK_BINDING},
        {"origin.eth_binding", B64FLIP, NULL, CHAIN_VERIFY_CHECK_BINDING,
         "eth_binding signature does not verify", CHAIN_VERIFY_CHECK_FORMAT},
        {"origin.eth_address", FLIP, NULL, CHAIN_VERIFY_CHECK_SENDER, "is not the anchor sender",
         CHAIN_VERIFY_CHECK_BINDING},
        {"origin.eth_address", SET, q_acct0, CHAIN_VERIFY_CHECK_BINDING,
         "eth_binding signature does not verify", CHAIN_VERIFY_CHECK_SENDER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const tamper_case *c = &cases[i];
        json_t *j = json_deep_copy(F.good);
        apply(j, c);
        chain_verify_report rep;
        char what[96];
        snprintf(what, sizeof what, "case %zu (%s)", i, c->path);
        int rc = verify_json(j, 1, &rep);
        if (rc != DM_ETAMPER) {
            print_report(&rep);
            fail_msg("%s: %s, expected ETAMPER", what, dm_err_name(rc));
        }
        assert_false(chain_verify_report_ok(&rep));
        assert_int_equal(rep.rpc_status, DM_OK);
        if (getenv("DM_TEST_VERBOSE")) {
            fprintf(stderr, "%s\n", what);
            print_report(&rep);
        }
        expect_fail(&rep, c->expect, c->needle, what);
        if (c->also != CHAIN_VERIFY_CHECK_FORMAT)
            expect_fail(&rep, c->also, NULL, what);
        json_decref(j);
    }

    /* not enough confirmations */
    chain_verify_report rep;
    assert_int_equal(verify_json(F.good, 1000, &rep), DM_ETAMPER);
    expect_fail(&rep, CHAIN_VERIFY_CHECK_CONFIRMATIONS, "5 confirmations", "confirmations");
    expect_fail(&rep, CHAIN_VERIFY_CHECK_CONFIRMATIONS, "1000 required", "confirmations");
    for (int k = 0; k < CHAIN_VERIFY_CHECK_CONFIRMATIONS; k++)
        assert_int_equal(rep.checks[k].result, CHAIN_VERIFY_PASS);
}

/* chain_verify_online on the caller's loop and client. */
typedef struct {
    bool done;
    int status;
    chain_verify_report *rep;
} online_wait;

static void online_cb(int status, chain_verify_report *report, void *arg)
{
    online_wait *w = arg;
    w->done = true;
    w->status = status;
    w->rep = report;
}

static void test_verify_online_async(void **state)
{
    (void)state;
    NEED_ANVIL();
    char *t = dump(F.good);
    chain_verify_bundle *b = NULL;
    char err[CHAIN_VERIFY_MSG_MAX];
    assert_int_equal(chain_verify_bundle_parse(t, strlen(t), &b, err), DM_OK);
    free(t);
    chain_verify_report rep;
    chain_verify_report_init(&rep);
    online_wait w = {0};
    assert_int_equal(chain_verify_online(F.rpc, b, 2, &rep, online_cb, &w), DM_OK);
    assert_false(w.done); /* never called back from inside */
    run_until(&w.done);
    assert_int_equal(w.status, DM_OK);
    assert_ptr_equal(w.rep, &rep);
    assert_int_equal(rep.confirmations, 5);
    /* only the online checks were written */
    assert_int_equal(rep.checks[CHAIN_VERIFY_CHECK_LEAF].result, CHAIN_VERIFY_NOT_RUN);
    for (int k = CHAIN_VERIFY_CHECK_CHAIN_ID; k < CHAIN_VERIFY_CHECK_COUNT_ALL; k++)
        assert_int_equal(rep.checks[k].result, CHAIN_VERIFY_PASS);
    assert_int_equal(chain_verify_offline(b, &rep), DM_OK);
    assert_true(chain_verify_report_ok(&rep));

    /* several verifications at once on one client */
    chain_verify_report reps[4];
    online_wait ws[4] = {{0}};
    for (int k = 0; k < 4; k++) {
        chain_verify_report_init(&reps[k]);
        assert_int_equal(chain_verify_online(F.rpc, b, 1, &reps[k], online_cb, &ws[k]), DM_OK);
    }
    for (int k = 0; k < 4; k++) {
        run_until(&ws[k].done);
        assert_int_equal(ws[k].status, DM_OK);
    }
    chain_verify_bundle_free(b);
}

static void test_verify_endpoint_down(void **state)
{
    (void)state;
    json_t *j = bundle_json(&F.main, 1, &F.anchor);
    char *t = dump(j);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", anvil_util_free_port()); /* nobody listens */
    chain_verify_report rep;
    int rc = chain_verify_run(url, t, strlen(t), 1, NULL, &rep);
    assert_int_equal(rc, DM_ECONN);
    assert_int_equal(rep.rpc_status, DM_ECONN);
    expect_fail(&rep, CHAIN_VERIFY_CHECK_CHAIN_ID, "eth_chainId failed", "endpoint down");
    for (int k = CHAIN_VERIFY_CHECK_RECEIPT; k < CHAIN_VERIFY_CHECK_COUNT_ALL; k++)
        assert_int_equal(rep.checks[k].result, CHAIN_VERIFY_SKIP);
    assert_true(chain_verify_report_offline_ok(&rep)); /* the offline part still ran */
    /* a malformed URL and a malformed bundle */
    assert_int_equal(chain_verify_run("ftp://x/", t, strlen(t), 1, NULL, &rep), DM_EINVAL);
    assert_int_equal(chain_verify_run(url, "{}", 2, 1, NULL, &rep), DM_EPARSE);
    expect_fail(&rep, CHAIN_VERIFY_CHECK_FORMAT, "missing member", "malformed");
    assert_int_equal(rep.checks[CHAIN_VERIFY_CHECK_LEAF].result, CHAIN_VERIFY_SKIP);
    free(t);
    json_decref(j);
}

/* Last: evm_revert removes blocks. */
static void test_verify_reverted_anchor(void **state)
{
    (void)state;
    NEED_ANVIL();
    json_t *snap = rpc("evm_snapshot", NULL);
    assert_true(json_is_string(snap));
    batch one;
    batch_build(&one, 1, "reverted");
    anchor_info a;
    anchor_batch(&one, &a);
    json_t *j = bundle_json(&one, 0, &a);
    chain_verify_report rep;
    int rc = verify_json(j, 1, &rep);
    if (rc != DM_OK) {
        print_report(&rep);
        fail_msg("fresh anchor: %s", dm_err_name(rc));
    }
    assert_int_equal(rep.confirmations, 1);

    char params[96];
    snprintf(params, sizeof params, "[\"%s\"]", json_string_value(snap));
    json_t *ok = rpc("evm_revert", params);
    assert_true(json_is_true(ok));
    json_decref(ok);
    json_decref(snap);

    assert_int_equal(verify_json(j, 1, &rep), DM_ETAMPER);
    expect_fail(&rep, CHAIN_VERIFY_CHECK_RECEIPT, "transaction not found", "reverted anchor");
    assert_true(chain_verify_report_offline_ok(&rep));
    assert_int_equal(rep.checks[CHAIN_VERIFY_CHECK_CHAIN_ID].result, CHAIN_VERIFY_PASS);
    for (int k = CHAIN_VERIFY_CHECK_STATUS; k < CHAIN_VERIFY_CHECK_COUNT_ALL; k++)
        assert_int_equal(rep.checks[k].result, CHAIN_VERIFY_SKIP);
    /* the anchor before the snapshot still verifies */
    assert_int_equal(verify_json(F.good, 1, &rep), DM_OK);
    json_decref(j);
    batch_free(&one);
}

int test_chain_verify(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verify_offline_valid), cmocka_unit_test(test_verify_offline_messages),
        cmocka_unit_test(test_verify_parse_strict),  cmocka_unit_test(test_verify_online_valid),
        cmocka_unit_test(test_verify_tampered),      cmocka_unit_test(test_verify_online_async),
        cmocka_unit_test(test_verify_endpoint_down), cmocka_unit_test(test_verify_reverted_anchor),
    };
    return cmocka_run_group_tests_name("chain_verify", tests, group_setup, group_teardown);
}
