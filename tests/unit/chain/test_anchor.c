/*
 * The anchoring pipeline (chain/chain_anchor.h) against a real anvil started here from the
 * pinned npm package (scripts/setup-node.sh), with --state and --state-interval so that it
 * can be killed and brought back. The AuditAnchor contract is deployed from
 * contracts/AuditAnchor.json by anvil's unlocked account 0 (test only); each test anchors
 * from a fresh secp256k1 account funded with anvil_setBalance, out of a real RocksDB store
 * whose outbox is written by node_audit_append.
 *
 * Every test ends with every event recorded: each ev/ record's leaf is the hash of its
 * canonical event, its Merkle path reaches its root, its transaction's receipt holds the
 * Anchored log of that root and count in the recorded block, the root was anchored exactly
 * once on the chain, the share index points at it, and the outbox is empty.
 *
 * The anchorer runs on its own loop; the test talks to anvil through a second client on a
 * private loop, so the anchorer is frozen while the test rearranges the chain (snapshot,
 * revert, mine, kill). Tests that need anvil skip with a message if the binary is absent.
 */
#include "dm_test.h"

#include "anvil_util.h"
#include "groups.h"

#include "chain_anchor.h"
#include "chain_hex.h"
#include "chain_rpc.h"
#include "chain_tx.h"
#include "crypto_eth.h"
#include "crypto_hash.h"
#include "crypto_keccak.h"
#include "crypto_merkle.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "node_audit.h"
#include "store.h"
#include "store_keys.h"

#include <inttypes.h>
#include <time.h>
#include <uv.h>

#define CHAIN_ID 31337
#define MAX_EV (CHAIN_ANCHOR_BATCH_MAX + 64)
#define WAIT_MS 60000

static struct {
    bool have_anvil;
    anvil_proc anvil;
    char *anvil_dir;
    char state_path[PATH_MAX];
    uv_loop_t tloop; /* the test's own client: anvil is driven while the anchorer waits */
    chain_rpc_t *trpc;
    uv_loop_t loop;  /* the anchorer's */
    uv_timer_t tick; /* wakes the loop while a test waits (outlives a failed wait) */
    chain_rpc_t *arpc;
    uint8_t contract[20];
    char contract_hex[43];
    char acct0[43];
    /* per test */
    char *dir;
    store_t *store;
    node_audit_t *audit;
    crypto_eth_key key;
    uint8_t addr[20];
    chain_anchor_t *an;
    bool ready_done;
    int ready_status;
    size_t nev;
    uint64_t seqs[MAX_EV];
    uint8_t share_ids[MAX_EV][32];
    uint64_t counter;
} F;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void hex0x(char *out, const uint8_t *p, size_t n)
{
    out[0] = '0';
    out[1] = 'x';
    dm_hex_encode(out + 2, p, n);
}

/* ---------------------------------------------------------------- anvil */

/* Start anvil on `port` (0: a free one) with the state file (loaded if present, dumped
 * every second). */
static bool anvil_launch(uint16_t port)
{
    const char *const extra[] = {"--state", F.state_path, "--state-interval", "1", NULL};
    return anvil_util_start(&F.anvil, port, extra, 30000);
}

/* ---------------------------------------------------------------- the test's RPC */

static int rpc_try(const char *method, const char *params, json_t **out, char *msg)
{
    return anvil_util_call(&F.tloop, F.trpc, method, params, out, msg, WAIT_MS);
}

/* Call and return the result (new reference); fails the test on any error. */
static json_t *rpc(const char *method, const char *params)
{
    json_t *r = NULL;
    char msg[CHAIN_RPC_MSG_MAX];
    int st = rpc_try(method, params, &r, msg);
    if (st != DM_OK)
        fail_msg("%s %s: %s %s", method, params ? params : "[]", dm_err_name(st), msg);
    return r;
}

static void rpc_void(const char *method, const char *params)
{
    json_decref(rpc(method, params));
}

static uint64_t rpc_u64(const char *method, const char *params)
{
    json_t *r = rpc(method, params);
    uint64_t v;
    assert_int_equal(chain_rpc_parse_u64(r, &v), DM_OK);
    json_decref(r);
    return v;
}

/* The receipt of `tx`, or NULL if the node has none. */
static chain_rpc_receipt *receipt_now(const uint8_t tx[32])
{
    char h[67], params[80];
    hex0x(h, tx, 32);
    snprintf(params, sizeof params, "[\"%s\"]", h);
    json_t *r = rpc("eth_getTransactionReceipt", params);
    chain_rpc_receipt *rc = NULL;
    int st = chain_rpc_parse_receipt(r, &rc);
    json_decref(r);
    if (st == DM_ENOTFOUND)
        return NULL;
    assert_int_equal(st, DM_OK);
    return rc;
}

static chain_rpc_receipt *receipt_wait(const uint8_t tx[32])
{
    return anvil_util_receipt(&F.tloop, F.trpc, tx);
}

static void mine(unsigned n)
{
    char p[32];
    snprintf(p, sizeof p, "[\"0x%x\"]", n);
    rpc_void("anvil_mine", p);
}

static void automine(bool on)
{
    rpc_void("evm_setAutomine", on ? "[true]" : "[false]");
}

static void deploy(void)
{
    uint8_t tx[32];
    anvil_util_deploy(&F.tloop, F.trpc, F.acct0, F.contract, tx);
    hex0x(F.contract_hex, F.contract, 20);
}

/* Anchored logs of `root` by the contract, over the whole chain. */
static size_t logs_for_root(const uint8_t root[32])
{
    char r[67], params[400];
    hex0x(r, root, 32);
    snprintf(params, sizeof params,
             "[{\"address\":\"%s\",\"fromBlock\":\"0x0\",\"toBlock\":\"latest\","
             "\"topics\":[\"0x0bc3d9a227d53e9dc5a02f8ec5f5d447b03b9918113a4b9b1043f3c7fe4f24e4\","
             "null,\"%s\"]}]",
             F.contract_hex, r);
    json_t *res = rpc("eth_getLogs", params);
    chain_rpc_logs *logs = NULL;
    assert_int_equal(chain_rpc_parse_logs(res, &logs), DM_OK);
    size_t n = logs->n;
    chain_rpc_logs_free(logs);
    json_decref(res);
    return n;
}

/* ---------------------------------------------------------------- the anchorer's loop */

static void tick_cb(uv_timer_t *t)
{
    (void)t;
}

typedef bool (*pred_fn)(void *arg);

/* Run the anchorer's loop until pred(arg) holds (checked every 10 ms at least). */
static void wait_for(pred_fn pred, void *arg, uint64_t timeout_ms, const char *what)
{
    uv_timer_start(&F.tick, tick_cb, 10, 10);
    uint64_t start = mono_ms();
    while (!pred(arg)) {
        if (mono_ms() - start > timeout_ms) {
            uv_timer_stop(&F.tick);
            fail_msg("timed out after %" PRIu64 " ms waiting for %s", timeout_ms, what);
        }
        uv_run(&F.loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&F.tick);
}

/* Run the anchorer's loop for `ms` milliseconds. */
static void run_for(uint64_t ms)
{
    uv_timer_start(&F.tick, tick_cb, 10, 10);
    uint64_t start = mono_ms();
    while (mono_ms() - start < ms)
        uv_run(&F.loop, UV_RUN_ONCE);
    uv_timer_stop(&F.tick);
}

static bool flag_set(void *arg)
{
    return *(bool *)arg;
}

static int test_sign(void *arg, const uint8_t hash[32], crypto_eth_sig *sig)
{
    return crypto_eth_sign_hash(arg, hash, sig);
}

static void ready_cb(chain_anchor_t *a, int status, void *arg)
{
    (void)a;
    (void)arg;
    F.ready_done = true;
    F.ready_status = status;
}

static void base_opts(chain_anchor_opts *o)
{
    memset(o, 0, sizeof *o);
    o->chain_id = CHAIN_ID;
    memcpy(o->contract, F.contract, 20);
    memcpy(o->sender, F.addr, 20);
    o->sign = test_sign;
    o->sign_arg = &F.key;
    o->batch_max_events = 8;
    o->batch_max_delay_ms = 30;
    o->poll_ms = 25;
    o->rebroadcast_ms = 400;
    o->resubmit_after_ms = 60000;
    o->retry_min_ms = 20;
    o->retry_max_ms = 300;
}

/* Create and start an anchorer; wait for its start-up checks; return their status. */
static int anchor_open(const chain_anchor_opts *o)
{
    assert_null(F.an);
    assert_int_equal(chain_anchor_create(&F.an, &F.loop, F.store, F.arpc, o), DM_OK);
    F.ready_done = false;
    F.ready_status = 1;
    assert_int_equal(chain_anchor_start(F.an, ready_cb, NULL), DM_OK);
    wait_for(flag_set, &F.ready_done, WAIT_MS, "the start-up checks");
    return F.ready_status;
}

static void closed_cb(void *arg)
{
    *(bool *)arg = true;
}

static void anchor_close(void)
{
    if (!F.an)
        return;
    bool closed = false;
    chain_anchor_close(F.an, closed_cb, &closed);
    F.an = NULL;
    wait_for(flag_set, &closed, WAIT_MS, "the anchorer to close");
}

static chain_anchor_stats stats(void)
{
    chain_anchor_stats s;
    chain_anchor_stats_get(F.an, &s);
    return s;
}

/* ---------------------------------------------------------------- events */

/* Append n data_share events in one committed batch (as the share service does), then
 * kick the anchorer. */
static void add_events(size_t n)
{
    assert_true(F.nev + n <= MAX_EV);
    store_batch_t *b = NULL;
    assert_int_equal(store_batch_create(&b), DM_OK);
    char origin[65];
    uint8_t o[32];
    crypto_sha256(o, "origin node", 11);
    dm_hex_encode(origin, o, 32);
    for (size_t i = 0; i < n; i++) {
        uint64_t c = ++F.counter;
        uint8_t id[32], dh[32];
        char tag[64], sid[65], dhx[65], rcpt[43];
        int tl = snprintf(tag, sizeof tag, "share %" PRIu64 " %p", c, (void *)F.dir);
        crypto_sha256(id, tag, (size_t)tl);
        crypto_sha256(dh, id, 32);
        dm_hex_encode(sid, id, 32);
        dm_hex_encode(dhx, dh, 32);
        hex0x(rcpt, dh, 20);
        json_t *ev = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "event_type", "data_share",
                               "data_hash", dhx, "recipient", rcpt, "timestamp",
                               (json_int_t)(1705312200 + c), "share_id", sid, "origin", origin);
        json_t *fields = json_pack("{s:s}", "share_id", sid);
        assert_non_null(ev);
        assert_int_equal(node_audit_append(F.audit, b, DM_LOG_INFO, "data_share", fields, ev, NULL),
                         DM_OK);
        json_decref(ev);
        json_decref(fields);
        F.seqs[F.nev] = node_audit_head(F.audit).seq;
        memcpy(F.share_ids[F.nev], id, 32);
        F.nev++;
    }
    assert_int_equal(store_write(F.store, b), DM_OK);
    store_batch_destroy(b);
    if (F.an)
        chain_anchor_kick(F.an, n);
}

static size_t outbox_count(void)
{
    store_iter_t *it = NULL;
    assert_int_equal(store_iter_create(&it, F.store, STORE_CF_OUTBOX, NULL, 0, NULL, 0), DM_OK);
    size_t n = 0;
    const uint8_t *k, *v;
    size_t kl, vl;
    while (store_iter_next(it, &k, &kl, &v, &vl))
        n++;
    assert_int_equal(store_iter_status(it), DM_OK);
    store_iter_destroy(it);
    return n;
}

/* Every event recorded and, if an anchorer runs, its counters caught up (the records
 * are written on the thread pool before the loop learns of it). */
static bool all_anchored(void *arg)
{
    (void)arg;
    if (F.an) {
        chain_anchor_stats s;
        chain_anchor_stats_get(F.an, &s);
        if (s.in_flight || s.pending_events)
            return false;
    }
    for (size_t i = 0; i < F.nev; i++) {
        json_t *rec = NULL;
        int rc = chain_anchor_proof(F.store, F.seqs[i], NULL, &rec);
        json_decref(rec);
        if (rc)
            return false;
    }
    return true;
}

/* Read the batch record `id` (new reference, NULL if absent). */
static json_t *batch_record(uint64_t id)
{
    uint8_t key[CHAIN_ANCHOR_KEY_MAX];
    size_t kl = chain_anchor_key_batch(key, id);
    dm_buf v = DM_BUF_INIT;
    int rc = store_get(F.store, STORE_CF_ANCHORS, key, kl, &v);
    if (rc == DM_ENOTFOUND)
        return NULL;
    assert_int_equal(rc, DM_OK);
    json_t *o = json_loadb((const char *)v.data, v.len, 0, NULL);
    dm_buf_free(&v);
    assert_non_null(o);
    return o;
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (!s)
        fail_msg("record member %s missing", k);
    return s;
}

static uint64_t jint(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        fail_msg("record member %s missing", k);
    return (uint64_t)json_integer_value(v);
}

static void jhash(const json_t *o, const char *k, uint8_t out[32])
{
    const char *s = jstr(o, k);
    if (s[0] == '0' && s[1] == 'x')
        s += 2;
    assert_int_equal(strlen(s), 64);
    assert_int_equal(dm_hex_decode(out, 32, s, 64), DM_OK);
}

/* The pending batch `id`'s current tx hash; false if the record is absent or final. */
static bool pending_tx(uint64_t id, uint8_t tx[32])
{
    json_t *b = batch_record(id);
    if (!b)
        return false;
    bool pending = !strcmp(jstr(b, "status"), "pending");
    if (pending)
        jhash(json_object_get(b, "tx"), "hash", tx);
    json_decref(b);
    return pending;
}

/* Every event recorded, every record verified against the chain, each root anchored
 * exactly once, the outbox empty. Returns the number of distinct transactions. */
static size_t verify_all(void)
{
    static uint8_t roots[MAX_EV][32];
    size_t nroots = 0;
    chain_rpc_receipt *r = NULL; /* the receipt of the previous record (batches share one) */
    for (size_t i = 0; i < F.nev; i++) {
        json_t *rec = NULL, *rec2 = NULL;
        assert_int_equal(chain_anchor_proof(F.store, F.seqs[i], NULL, &rec), DM_OK);
        assert_int_equal(chain_anchor_proof(F.store, 0, F.share_ids[i], &rec2), DM_OK);
        assert_int_equal(jint(rec, "audit_seq"), F.seqs[i]);
        assert_int_equal(jint(rec2, "audit_seq"), F.seqs[i]);
        assert_true(json_equal(rec, rec2));
        assert_null(json_object_get(rec, "previous"));
        assert_int_equal(jint(rec, "chain_id"), CHAIN_ID);
        uint8_t c[20];
        assert_int_equal(crypto_eth_address_parse(jstr(rec, "contract"), c), DM_OK);
        assert_memory_equal(c, F.contract, 20);
        uint8_t eh[32];
        jhash(rec, "entry_hash", eh);

        /* leaf = SHA256(0x00 || canonical event) */
        char *canon = json_dumps(json_object_get(rec, "event"), JSON_COMPACT | JSON_SORT_KEYS);
        assert_non_null(canon);
        uint8_t leaf[32], rleaf[32];
        crypto_merkle_leaf_hash(leaf, canon, strlen(canon));
        free(canon);
        jhash(rec, "leaf", rleaf);
        assert_memory_equal(leaf, rleaf, 32);
        char sid[65];
        dm_hex_encode(sid, F.share_ids[i], 32);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(rec, "event"), "share_id")), sid);

        /* the Merkle path reaches the root */
        json_t *m = json_object_get(rec, "merkle");
        crypto_merkle_proof p;
        memset(&p, 0, sizeof p);
        p.index = jint(m, "index");
        p.count = jint(m, "count");
        json_t *sib = json_object_get(m, "siblings");
        assert_true(json_array_size(sib) <= CRYPTO_MERKLE_MAX_DEPTH);
        p.len = (uint32_t)json_array_size(sib);
        for (size_t k = 0; k < p.len; k++) {
            const char *s = json_string_value(json_array_get(sib, k));
            assert_non_null(s);
            assert_int_equal(dm_hex_decode(p.sib[k], 32, s, strlen(s)), DM_OK);
        }
        uint8_t root[32];
        jhash(m, "root", root);
        assert_int_equal(crypto_merkle_proof_verify(leaf, &p, root), DM_OK);
        root[0] ^= 1;
        assert_int_equal(crypto_merkle_proof_verify(leaf, &p, root), DM_EBADSIG);
        root[0] ^= 1;

        /* the receipt holds the Anchored log of that root and count */
        json_t *an = json_object_get(rec, "anchor");
        uint8_t tx[32], bh[32], sender[20];
        jhash(an, "tx_hash", tx);
        jhash(an, "block_hash", bh);
        assert_int_equal(crypto_eth_address_parse(jstr(an, "sender"), sender), DM_OK);
        assert_memory_equal(sender, F.addr, 20);
        if (!r || memcmp(r->tx_hash, tx, 32)) {
            chain_rpc_receipt_free(r);
            r = receipt_now(tx);
            if (!r)
                fail_msg("event %" PRIu64 ": the recorded tx has no receipt", F.seqs[i]);
        }
        assert_int_equal(r->status, 1);
        assert_memory_equal(r->block_hash, bh, 32);
        assert_int_equal(r->block_number, jint(an, "block_number"));
        assert_memory_equal(r->from, F.addr, 20);
        uint64_t li = jint(an, "log_index");
        const chain_rpc_log *l = NULL;
        for (size_t k = 0; k < r->nlogs; k++)
            if (r->logs[k].log_index == li)
                l = &r->logs[k];
        assert_non_null(l);
        assert_memory_equal(l->address, F.contract, 20);
        assert_int_equal(l->ntopics, 3);
        assert_memory_equal(l->topics[0], chain_anchor_event_topic, 32);
        assert_memory_equal(l->topics[1] + 12, F.addr, 20);
        assert_memory_equal(l->topics[2], root, 32);
        assert_int_equal(l->data_len, 64);
        assert_int_equal(dm_get_u64be(l->data + 24), p.count);

        bool seen = false;
        for (size_t k = 0; k < nroots; k++)
            seen |= !memcmp(roots[k], root, 32);
        if (!seen) {
            memcpy(roots[nroots++], root, 32);
            assert_int_equal(logs_for_root(root), 1); /* anchored exactly once */
        }
        json_decref(rec);
        json_decref(rec2);
    }
    chain_rpc_receipt_free(r);
    assert_int_equal(outbox_count(), 0);
    return nroots;
}

/* ---------------------------------------------------------------- fixtures */

static int group_setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    char bin[PATH_MAX];
    if (!anvil_util_bin(bin, sizeof bin)) {
        fprintf(stderr, "[ chain_anchor ] anvil not found at %s: run scripts/setup-node.sh\n", bin);
        return 0; /* the tests skip */
    }
    F.anvil_dir = dm_test_mkdtemp("anchor-anvil");
    snprintf(F.state_path, sizeof F.state_path, "%s/state.json", F.anvil_dir);
    if (!anvil_launch(0)) {
        fprintf(stderr, "[ chain_anchor ] anvil %s did not start\n", bin);
        return -1;
    }
    F.have_anvil = true;
    if (uv_loop_init(&F.tloop) || uv_loop_init(&F.loop) || uv_timer_init(&F.loop, &F.tick))
        return -1;
    chain_rpc_opts ro = {.timeout_ms = 5000, .connect_timeout_ms = 2000};
    if (chain_rpc_create(&F.trpc, &F.tloop, F.anvil.url, &ro) ||
        chain_rpc_create(&F.arpc, &F.loop, F.anvil.url, &ro))
        return -1;
    deploy();
    return 0;
}

/* After a failed test: close the anchorer without the assertions of anchor_close. */
static void anchor_close_quiet(void)
{
    if (!F.an)
        return;
    bool closed = false;
    chain_anchor_close(F.an, closed_cb, &closed);
    F.an = NULL;
    while (!closed)
        uv_run(&F.loop, UV_RUN_ONCE);
}

static int group_teardown(void **state)
{
    (void)state;
    if (F.have_anvil) {
        bool c1 = false, c2 = false;
        anchor_close_quiet();
        uv_close((uv_handle_t *)&F.tick, NULL);
        chain_rpc_close(F.trpc, closed_cb, &c1);
        chain_rpc_close(F.arpc, closed_cb, &c2);
        while (!c1)
            uv_run(&F.tloop, UV_RUN_ONCE);
        while (!c2)
            uv_run(&F.loop, UV_RUN_ONCE);
        uv_run(&F.tloop, UV_RUN_DEFAULT);
        uv_run(&F.loop, UV_RUN_DEFAULT);
        assert_int_equal(uv_loop_close(&F.tloop), 0);
        assert_int_equal(uv_loop_close(&F.loop), 0);
    }
    anvil_util_kill(&F.anvil);
    dm_test_rmtree(F.anvil_dir);
    free(F.anvil_dir);
    return 0;
}

static int test_setup(void **state)
{
    (void)state;
    if (!F.have_anvil)
        return 0;
    F.dir = dm_test_mkdtemp("anchor");
    store_opts so = {.create = true};
    if (store_open(&F.store, F.dir, &so) || node_audit_open(&F.audit, F.store))
        return -1;
    if (crypto_eth_key_generate(&F.key) || crypto_eth_address(&F.key, F.addr))
        return -1;
    char a[43], params[128];
    hex0x(a, F.addr, 20);
    snprintf(params, sizeof params, "[\"%s\", \"0x56bc75e2d63100000\"]", a); /* 100 ETH */
    rpc_void("anvil_setBalance", params);
    F.nev = 0;
    F.an = NULL;
    return 0;
}

static int test_teardown(void **state)
{
    (void)state;
    if (!F.have_anvil)
        return 0;
    anchor_close_quiet();
    if (F.anvil.pid > 0)
        automine(true);
    node_audit_close(F.audit);
    store_close(F.store);
    F.audit = NULL;
    F.store = NULL;
    dm_test_rmtree(F.dir);
    free(F.dir);
    F.dir = NULL;
    crypto_eth_key_wipe(&F.key);
    return 0;
}

#define NEED_ANVIL()                                                                               \
    do {                                                                                           \
        if (!F.have_anvil) {                                                                       \
            fprintf(stderr, "[ chain_anchor ] SKIP: no anvil (run scripts/setup-node.sh)\n");      \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------- tests */

/* The fixed encodings: the event topic is keccak of the signature; the calldata is the
 * ABI encoding of anchor(bytes32, uint64). */
static void test_anchor_encodings(void **state)
{
    (void)state;
    const char *sig = "Anchored(address,bytes32,uint64,uint256)";
    uint8_t t[32];
    crypto_keccak256(t, sig, strlen(sig));
    assert_memory_equal(t, chain_anchor_event_topic, 32);
    const char *fn = "anchor(bytes32,uint64)";
    crypto_keccak256(t, fn, strlen(fn));
    uint8_t root[32], cd[CHAIN_ANCHOR_CALLDATA_LEN];
    for (int i = 0; i < 32; i++)
        root[i] = (uint8_t)(0xa0 + i);
    chain_anchor_calldata(cd, root, 0x0102030405060708ull);
    assert_memory_equal(cd, t, 4);
    assert_memory_equal(cd + 4, root, 32);
    for (int i = 36; i < 60; i++)
        assert_int_equal(cd[i], 0);
    assert_int_equal(dm_get_u64be(cd + 60), 0x0102030405060708ull);
    uint8_t k[CHAIN_ANCHOR_KEY_MAX];
    assert_int_equal(chain_anchor_key_ev(k, 5), 11);
    assert_memory_equal(k, "ev/\0\0\0\0\0\0\0\5", 11);
    assert_int_equal(chain_anchor_key_batch(k, 1), 14);
    assert_memory_equal(k, "batch/\0\0\0\0\0\0\0\1", 14);
    assert_int_equal(chain_anchor_key_share(k, root), 38);
    assert_memory_equal(k + 6, root, 32);
}

/* Options are checked at creation. */
static void test_anchor_create_invalid(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    chain_rpc_t *rpc = NULL;
    assert_int_equal(chain_rpc_create(&rpc, &loop, "http://127.0.0.1:9/", NULL), DM_OK);
    char *dir = dm_test_mkdtemp("anchor-inv");
    store_t *st = NULL;
    store_opts so = {.create = true};
    assert_int_equal(store_open(&st, dir, &so), DM_OK);
    chain_anchor_opts o;
    memset(&o, 0, sizeof o);
    o.chain_id = 1;
    memset(o.contract, 1, 20);
    memset(o.sender, 2, 20);
    o.sign = test_sign;
    chain_anchor_t *a = NULL;
    o.batch_max_events = CHAIN_ANCHOR_BATCH_MAX + 1;
    assert_int_equal(chain_anchor_create(&a, &loop, st, rpc, &o), DM_EINVAL);
    o.batch_max_events = 0;
    o.sign = NULL;
    assert_int_equal(chain_anchor_create(&a, &loop, st, rpc, &o), DM_EINVAL);
    o.sign = test_sign;
    memset(o.contract, 0, 20);
    assert_int_equal(chain_anchor_create(&a, &loop, st, rpc, &o), DM_EINVAL);
    memset(o.contract, 1, 20);
    o.chain_id = 0;
    assert_int_equal(chain_anchor_create(&a, &loop, st, rpc, &o), DM_EINVAL);
    assert_null(a);

    /* an unreachable endpoint: start-up retries until closed; ready says DM_ECLOSED */
    o.chain_id = 1;
    o.retry_min_ms = 10;
    o.retry_max_ms = 40;
    assert_int_equal(chain_anchor_create(&a, &loop, st, rpc, &o), DM_OK);
    int ready = 1;
    assert_int_equal(chain_anchor_start(a, ready_cb, NULL), DM_OK);
    assert_int_equal(chain_anchor_start(a, ready_cb, NULL), DM_EINVAL);
    F.ready_done = false;
    uint64_t t0 = mono_ms();
    chain_anchor_stats s;
    do {
        uv_run(&loop, UV_RUN_ONCE);
        chain_anchor_stats_get(a, &s);
    } while (s.rpc_errors < 3 && mono_ms() - t0 < 10000);
    assert_true(s.rpc_errors >= 3);
    assert_false(s.ready);
    assert_false(F.ready_done);
    bool closed = false;
    chain_anchor_close(a, closed_cb, &closed);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(F.ready_done);
    ready = F.ready_status;
    assert_int_equal(ready, DM_ECLOSED);
    bool rc = false;
    chain_rpc_close(rpc, closed_cb, &rc);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(rc);
    assert_int_equal(uv_loop_close(&loop), 0);
    store_close(st);
    dm_test_rmtree(dir);
    free(dir);
}

/* A wrong chain id, or no contract at the address: refused at start. */
static void test_anchor_refuses_wrong_chain(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_anchor_opts o;
    base_opts(&o);
    o.chain_id = 1;
    add_events(1);
    assert_int_equal(anchor_open(&o), DM_ECONFIG);
    chain_anchor_stats s = stats();
    assert_true(s.halted);
    assert_false(s.ready);
    assert_int_equal(s.last_error, DM_ECONFIG);
    run_for(100);
    assert_int_equal(stats().batches_sent, 0);
    anchor_close();

    base_opts(&o);
    memset(o.contract, 0x77, 20); /* no code there */
    assert_int_equal(anchor_open(&o), DM_ECONFIG);
    anchor_close();
    assert_int_equal(outbox_count(), 1); /* nothing lost */

    /* the right configuration anchors it */
    base_opts(&o);
    assert_int_equal(anchor_open(&o), DM_OK);
    wait_for(all_anchored, NULL, WAIT_MS, "the event to be anchored");
    assert_int_equal(verify_all(), 1);
}

/* Batches of one: one transaction per event, as the reference. */
static void test_anchor_batch_of_one(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_anchor_opts o;
    base_opts(&o);
    o.batch_max_events = 1;
    assert_int_equal(anchor_open(&o), DM_OK);
    add_events(1);
    add_events(2);
    wait_for(all_anchored, NULL, WAIT_MS, "3 events anchored");
    assert_int_equal(verify_all(), 3);
    for (size_t i = 0; i < F.nev; i++) {
        json_t *rec = NULL;
        assert_int_equal(chain_anchor_proof(F.store, F.seqs[i], NULL, &rec), DM_OK);
        json_t *m = json_object_get(rec, "merkle");
        assert_int_equal(jint(m, "count"), 1);
        assert_int_equal(json_array_size(json_object_get(m, "siblings")), 0);
        assert_string_equal(jstr(m, "root"), jstr(rec, "leaf"));
        json_decref(rec);
    }
    chain_anchor_stats s = stats();
    assert_int_equal(s.batches_final, 3);
    assert_int_equal(s.events_anchored, 3);
    assert_int_equal(s.pending_events, 0);
    assert_true(s.has_last_tx);
    assert_false(s.in_flight);
    assert_int_equal(s.resubmits, 0);
    /* the state record: three batches, three nonces */
    dm_buf v = DM_BUF_INIT;
    assert_int_equal(store_get(F.store, STORE_CF_ANCHORS, "state", 5, &v), DM_OK);
    json_t *st = json_loadb((const char *)v.data, v.len, 0, NULL);
    assert_int_equal(jint(st, "next_batch"), 4);
    assert_int_equal(jint(st, "nonce"), 3);
    json_decref(st);
    dm_buf_free(&v);
    json_t *b = batch_record(3);
    assert_non_null(b);
    assert_string_equal(jstr(b, "status"), "final");
    json_decref(b);
    /* a seq that never existed, and one still pending */
    json_t *rec = NULL;
    assert_int_equal(chain_anchor_proof(F.store, 999, NULL, &rec), DM_ENOTFOUND);
    uint8_t unknown[32] = {1};
    assert_int_equal(chain_anchor_proof(F.store, 0, unknown, &rec), DM_ENOTFOUND);
    anchor_close();
    add_events(1);
    assert_int_equal(chain_anchor_proof(F.store, F.seqs[3], NULL, &rec), DM_EAGAIN);
    assert_null(rec);
}

/* Several events per batch: a commit of 20 becomes 8 + 8 + 4, later ones their own. */
/* on_final: every batch handed on once its records are written, matching them */
static size_t g_final_events, g_final_batches;

static void on_final(void *arg, const chain_anchor_final *fb)
{
    (void)arg;
    g_final_batches++;
    assert_int_equal(fb->chain_id, CHAIN_ID);
    assert_memory_equal(fb->contract, F.contract, 20);
    assert_memory_equal(fb->sender, F.addr, 20);
    static uint8_t leaves[CHAIN_ANCHOR_BATCH_MAX][32];
    for (size_t i = 0; i < fb->count; i++) {
        const chain_anchor_final_item *it = &fb->items[i];
        json_t *rec = NULL;
        assert_int_equal(chain_anchor_proof(F.store, it->audit_seq, NULL, &rec), DM_OK);
        uint8_t h[32], tx[32];
        jhash(rec, "leaf", h);
        assert_memory_equal(h, it->leaf, 32);
        jhash(rec, "entry_hash", h);
        assert_memory_equal(h, it->entry_hash, 32);
        jhash(json_object_get(rec, "anchor"), "tx_hash", tx);
        assert_memory_equal(tx, fb->tx_hash, 32);
        assert_int_equal(jint(json_object_get(rec, "merkle"), "index"), i);
        assert_int_equal(jint(json_object_get(rec, "merkle"), "count"), fb->count);
        assert_true(it->has_share);
        size_t k = 0;
        while (k < F.nev && F.seqs[k] != it->audit_seq)
            k++;
        assert_true(k < F.nev);
        assert_memory_equal(it->share_id, F.share_ids[k], 32);
        memcpy(leaves[i], it->leaf, 32);
        json_decref(rec);
        g_final_events++;
    }
    uint8_t root[32];
    assert_int_equal(crypto_merkle_root(root, (const uint8_t(*)[32])leaves, fb->count), DM_OK);
    assert_memory_equal(root, fb->root, 32);
}

static void test_anchor_batches(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_anchor_opts o;
    base_opts(&o);
    o.batch_max_events = 8;
    o.batch_max_delay_ms = 50;
    o.on_final = on_final;
    g_final_events = g_final_batches = 0;
    add_events(20); /* before start: found in the outbox */
    assert_int_equal(anchor_open(&o), DM_OK);
    wait_for(all_anchored, NULL, WAIT_MS, "20 events anchored");
    assert_int_equal(verify_all(), 3);
    add_events(5);
    add_events(2);
    wait_for(all_anchored, NULL, WAIT_MS, "27 events anchored");
    size_t batches = verify_all();
    assert_true(batches >= 4 && batches <= 5);
    chain_anchor_stats s = stats();
    assert_int_equal(s.events_anchored, 27);
    assert_int_equal(s.batches_final, batches);
    assert_int_equal(g_final_events, 27);
    assert_int_equal(g_final_batches, batches);
    json_t *b = batch_record(1);
    assert_int_equal(jint(b, "count"), 8);
    assert_int_equal(json_array_size(json_object_get(b, "seqs")), 8);
    assert_int_equal(jint(b, "first_seq"), F.seqs[0]);
    assert_int_equal(jint(b, "last_seq"), F.seqs[7]);
    json_decref(b);
    b = batch_record(3);
    assert_int_equal(jint(b, "count"), 4);
    json_decref(b);
}

static bool sent_at_least(void *arg)
{
    return stats().batches_sent >= *(uint64_t *)arg;
}

/* The pool (or the chain) knows `tx`. */
static bool node_knows(const uint8_t tx[32], bool *mined)
{
    char h[67], params[80];
    hex0x(h, tx, 32);
    snprintf(params, sizeof params, "[\"%s\"]", h);
    json_t *r = rpc("eth_getTransactionByHash", params);
    chain_rpc_tx t;
    int st = chain_rpc_parse_tx(r, &t);
    json_decref(r);
    if (st == DM_ENOTFOUND)
        return false;
    assert_int_equal(st, DM_OK);
    if (mined)
        *mined = t.mined;
    return true;
}

/* Mine a block at every check until every event is anchored. */
static bool anchored_mining(void *arg)
{
    (void)arg;
    if (all_anchored(NULL))
        return true;
    mine(1);
    return false;
}

/* The largest batch: 4096 events under one root, one transaction. */
static void test_anchor_large_batch(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_anchor_opts o;
    base_opts(&o);
    o.batch_max_events = CHAIN_ANCHOR_BATCH_MAX;
    o.batch_max_delay_ms = 100;
    assert_int_equal(anchor_open(&o), DM_OK);
    dm_log_level lvl = dm_log_get_level();
    dm_log_set_level(DM_LOG_DEBUG); /* the store jobs log their durations */
    add_events(CHAIN_ANCHOR_BATCH_MAX);
    add_events(3); /* the next batch */
    uint64_t t0 = mono_ms();
    wait_for(all_anchored, NULL, WAIT_MS, "4099 events anchored");
    dm_log_set_level(lvl);
    fprintf(stderr, "[ chain_anchor ] 4099 events anchored in %" PRIu64 " ms\n", mono_ms() - t0);
    assert_int_equal(verify_all(), 2);
    json_t *rec = NULL;
    assert_int_equal(chain_anchor_proof(F.store, F.seqs[4095], NULL, &rec), DM_OK);
    json_t *m = json_object_get(rec, "merkle");
    assert_int_equal(jint(m, "count"), CHAIN_ANCHOR_BATCH_MAX);
    assert_int_equal(jint(m, "index"), CHAIN_ANCHOR_BATCH_MAX - 1);
    assert_int_equal(json_array_size(json_object_get(m, "siblings")), 12);
    json_decref(rec);
    assert_int_equal(stats().batches_final, 2);
}

/* A restart (close, new anchorer on the same store) while the batch's transaction waits in
 * the pool: the stored bytes are resent and the batch is anchored exactly once. */
static void test_anchor_restart_pending(void **state)
{
    (void)state;
    NEED_ANVIL();
    automine(false);
    chain_anchor_opts o;
    base_opts(&o);
    assert_int_equal(anchor_open(&o), DM_OK);
    add_events(5);
    uint64_t one = 1;
    wait_for(sent_at_least, &one, WAIT_MS, "the batch to be sent");
    uint8_t tx[32];
    assert_true(pending_tx(1, tx));
    bool mined = true;
    assert_true(node_knows(tx, &mined));
    assert_false(mined);
    run_for(100); /* polling, nothing mined */
    assert_int_equal(outbox_count(), 5);
    anchor_close();
    /* as if it had never been sent (or the pool lost it while the node was down) */
    char h[67], params[80];
    hex0x(h, tx, 32);
    snprintf(params, sizeof params, "[\"%s\"]", h);
    rpc_void("anvil_dropTransaction", params);
    assert_false(node_knows(tx, NULL));

    /* a new process: the pending batch is resumed, not formed again */
    assert_int_equal(anchor_open(&o), DM_OK);
    wait_for(sent_at_least, &one, WAIT_MS, "the batch to be resent");
    assert_true(node_knows(tx, &mined));
    assert_false(mined);
    assert_true(stats().in_flight);
    add_events(2); /* wait behind the pending batch */
    run_for(100);
    mine(1);
    wait_for(anchored_mining, NULL, WAIT_MS, "7 events anchored");
    assert_int_equal(verify_all(), 2);
    json_t *rec = NULL;
    assert_int_equal(chain_anchor_proof(F.store, F.seqs[0], NULL, &rec), DM_OK);
    uint8_t got[32];
    jhash(json_object_get(rec, "anchor"), "tx_hash", got);
    assert_memory_equal(got, tx, 32); /* the very bytes sent before the restart */
    json_decref(rec);
    json_t *b = batch_record(1);
    assert_string_equal(jstr(b, "status"), "final");
    assert_int_equal(jint(b, "count"), 5);
    json_decref(b);
    assert_null(batch_record(3));
}

typedef struct {
    uint64_t id;
    uint8_t hash[32];
} bump_wait;

/* The pending batch was re-priced and the pool holds the new version. */
static bool bumped_in_pool(void *arg)
{
    bump_wait *w = arg;
    json_t *b = batch_record(w->id);
    if (!b)
        return false;
    json_t *tx = json_object_get(b, "tx");
    bool ok = !strcmp(jstr(b, "status"), "pending") && jint(tx, "bumps") >= 1;
    if (ok) {
        jhash(tx, "hash", w->hash);
        ok = node_knows(w->hash, NULL);
    }
    json_decref(b);
    return ok;
}

/* Unmined for resubmit_after_ms: the fee is raised by at least 12.5% under the same nonce;
 * the replacement is what gets mined and recorded. */
static void test_anchor_fee_bump(void **state)
{
    (void)state;
    NEED_ANVIL();
    automine(false);
    chain_anchor_opts o;
    base_opts(&o);
    o.resubmit_after_ms = 300;
    o.rebroadcast_ms = 150;
    assert_int_equal(anchor_open(&o), DM_OK);
    add_events(3);
    uint64_t one = 1;
    wait_for(sent_at_least, &one, WAIT_MS, "the batch to be sent");
    uint8_t first[32];
    assert_true(pending_tx(1, first));
    json_t *b = batch_record(1);
    chain_u256 fee1, prio1;
    const char *s = jstr(json_object_get(b, "tx"), "max_fee");
    assert_int_equal(chain_u256_from_dec(&fee1, s, strlen(s)), DM_OK);
    s = jstr(json_object_get(b, "tx"), "max_priority_fee");
    assert_int_equal(chain_u256_from_dec(&prio1, s, strlen(s)), DM_OK);
    json_decref(b);

    bump_wait w = {.id = 1};
    wait_for(bumped_in_pool, &w, WAIT_MS, "a fee bump");
    assert_memory_not_equal(w.hash, first, 32);
    assert_true(stats().resubmits >= 1);
    b = batch_record(1);
    json_t *tx = json_object_get(b, "tx");
    json_t *prev = json_object_get(tx, "prev_hashes");
    assert_true(json_array_size(prev) >= 1);
    uint8_t p0[32];
    assert_int_equal(
        chain_hex_data_parse_fixed(json_string_value(json_array_get(prev, 0)), 66, p0, 32), DM_OK);
    assert_memory_equal(p0, first, 32);
    /* >= 12.5% more on both fees */
    chain_u256 fee2, prio2, min;
    s = jstr(tx, "max_fee");
    assert_int_equal(chain_u256_from_dec(&fee2, s, strlen(s)), DM_OK);
    s = jstr(tx, "max_priority_fee");
    assert_int_equal(chain_u256_from_dec(&prio2, s, strlen(s)), DM_OK);
    assert_int_equal(chain_u256_mul_u64(&min, &fee1, 9), DM_OK);
    assert_int_equal(chain_u256_div_u64(&min, &min, 8, NULL), DM_OK);
    assert_true(chain_u256_cmp(&fee2, &min) >= 0);
    assert_int_equal(chain_u256_mul_u64(&min, &prio1, 9), DM_OK);
    assert_int_equal(chain_u256_div_u64(&min, &min, 8, NULL), DM_OK);
    assert_true(chain_u256_cmp(&prio2, &min) >= 0);
    json_decref(b);

    mine(1);
    wait_for(all_anchored, NULL, WAIT_MS, "3 events anchored");
    assert_int_equal(verify_all(), 1);
    json_t *rec = NULL;
    assert_int_equal(chain_anchor_proof(F.store, F.seqs[0], NULL, &rec), DM_OK);
    uint8_t got[32];
    jhash(json_object_get(rec, "anchor"), "tx_hash", got);
    assert_memory_equal(got, w.hash, 32);
    json_decref(rec);
    chain_rpc_receipt *r = receipt_now(first);
    assert_null(r); /* the replaced version never made it */
}

typedef struct {
    uint64_t id;
    uint8_t tx[32];
    uint64_t block;
    uint8_t block_hash[32];
} mined_wait;

/* The pending batch's current transaction is mined (not yet final). */
static bool batch_mined(void *arg)
{
    mined_wait *w = arg;
    if (!pending_tx(w->id, w->tx))
        return false;
    chain_rpc_receipt *r = receipt_now(w->tx);
    if (!r)
        return false;
    w->block = r->block_number;
    memcpy(w->block_hash, r->block_hash, 32);
    chain_rpc_receipt_free(r);
    return true;
}

/* evm_revert removes the mined anchor before its confirmations: detected, the same
 * transaction is sent again and lands in another block; the records name that block. */
static void test_anchor_reorg_resend(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_anchor_opts o;
    base_opts(&o);
    o.confirmations = 3;
    assert_int_equal(anchor_open(&o), DM_OK);
    json_t *snap = rpc("evm_snapshot", NULL);
    char sp[80];
    snprintf(sp, sizeof sp, "[\"%s\"]", json_string_value(snap));
    json_decref(snap);
    add_events(4);
    mined_wait w = {.id = 1};
    wait_for(batch_mined, &w, WAIT_MS, "the anchor to be mined");
    run_for(100);
    assert_false(all_anchored(NULL)); /* 1 of 3 confirmations */

    /* the anchorer is frozen while the chain is rearranged */
    json_t *ok = rpc("evm_revert", sp);
    assert_true(json_is_true(ok));
    json_decref(ok);
    assert_null(receipt_now(w.tx));
    mine(1); /* another block at that height */

    mined_wait w2 = {.id = 1};
    wait_for(batch_mined, &w2, WAIT_MS, "the anchor to be resent and mined");
    assert_memory_equal(w2.tx, w.tx, 32);
    assert_true(w2.block > w.block);
    /* exactly three confirmations: not at one, not at two */
    run_for(150);
    assert_false(all_anchored(NULL));
    mine(1);
    run_for(150);
    assert_false(all_anchored(NULL));
    mine(1);
    wait_for(all_anchored, NULL, WAIT_MS, "the anchor to be confirmed");
    assert_int_equal(verify_all(), 1);
    json_t *rec = NULL;
    assert_int_equal(chain_anchor_proof(F.store, F.seqs[0], NULL, &rec), DM_OK);
    json_t *an = json_object_get(rec, "anchor");
    uint8_t got[32], bh[32];
    jhash(an, "tx_hash", got);
    jhash(an, "block_hash", bh);
    assert_memory_equal(got, w.tx, 32); /* same nonce, same bytes */
    assert_memory_not_equal(bh, w.block_hash, 32);
    assert_true(jint(an, "block_number") > w.block);
    json_decref(rec);
    chain_anchor_stats s = stats();
    assert_true(s.reorgs >= 1);
    assert_true(s.rebroadcasts >= 1);
    /* head - block + 1 >= 3 when the records were written */
    uint64_t head = rpc_u64("eth_blockNumber", NULL);
    json_t *b = batch_record(1);
    assert_true(head - jint(json_object_get(b, "anchor"), "block_number") + 1 >= 3);
    json_decref(b);
}

/* As above, but the reverted nonce is then taken by another transaction of the same
 * account: the batch is re-signed with a new nonce, and the records name the new tx. */
static void test_anchor_reorg_nonce_taken(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_anchor_opts o;
    base_opts(&o);
    o.confirmations = 2;
    assert_int_equal(anchor_open(&o), DM_OK);
    json_t *snap = rpc("evm_snapshot", NULL);
    char sp[80];
    snprintf(sp, sizeof sp, "[\"%s\"]", json_string_value(snap));
    json_decref(snap);
    add_events(3);
    mined_wait w = {.id = 1};
    wait_for(batch_mined, &w, WAIT_MS, "the anchor to be mined");
    json_t *ok = rpc("evm_revert", sp);
    json_decref(ok);
    assert_null(receipt_now(w.tx));

    /* a transfer from the node's account with the anchor's nonce */
    char a[43], params[80];
    hex0x(a, F.addr, 20);
    snprintf(params, sizeof params, "[\"%s\", \"pending\"]", a);
    uint64_t nonce = rpc_u64("eth_getTransactionCount", params);
    chain_tx1559 t = {.chain_id = CHAIN_ID, .nonce = nonce, .gas_limit = 21000, .has_to = true};
    chain_u256_from_u64(&t.max_priority_fee_per_gas, 2000000000u);
    chain_u256_from_u64(&t.max_fee_per_gas, 100000000000u);
    memcpy(t.to, F.addr, 20);
    dm_buf raw = DM_BUF_INIT, hx = DM_BUF_INIT;
    uint8_t other[32];
    assert_int_equal(chain_tx_sign(&t, &F.key, &raw, other), DM_OK);
    assert_int_equal(chain_hex_data_append(&hx, raw.data, raw.len), DM_OK);
    dm_buf p = DM_BUF_INIT;
    assert_int_equal(dm_buf_printf(&p, "[\"%s\"]", dm_buf_cstr(&hx)), DM_OK);
    rpc_void("eth_sendRawTransaction", dm_buf_cstr(&p));
    dm_buf_free(&p);
    dm_buf_free(&raw);
    dm_buf_free(&hx);
    chain_rpc_receipt *r = receipt_wait(other);
    assert_int_equal(r->status, 1);
    chain_rpc_receipt_free(r);

    wait_for(anchored_mining, NULL, WAIT_MS, "the anchor to be re-signed and confirmed");
    assert_int_equal(verify_all(), 1);
    json_t *rec = NULL;
    assert_int_equal(chain_anchor_proof(F.store, F.seqs[0], NULL, &rec), DM_OK);
    uint8_t got[32];
    jhash(json_object_get(rec, "anchor"), "tx_hash", got);
    assert_memory_not_equal(got, w.tx, 32);
    json_decref(rec);
    assert_null(receipt_now(w.tx));
    json_t *b = batch_record(1);
    assert_true(jint(b, "resubmits") >= 1);
    assert_int_equal(jint(json_object_get(b, "tx"), "nonce"), nonce + 1);
    json_decref(b);
    assert_true(stats().resubmits >= 1);
}

/* A revert deeper than finality takes a final anchor (and its nonce) off the chain: the
 * stored nonce is now ahead of the account's, so the next batch's transaction could never
 * be mined. The gap is found while the batch waits, and it is re-signed with the chain's
 * nonce. (The reverted batch's records still name the vanished transaction: verification
 * reports them; anchoring cannot undo finality.) */
static void test_anchor_nonce_gap(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_anchor_opts o;
    base_opts(&o);
    assert_int_equal(anchor_open(&o), DM_OK);
    json_t *snap = rpc("evm_snapshot", NULL);
    char sp[80];
    snprintf(sp, sizeof sp, "[\"%s\"]", json_string_value(snap));
    json_decref(snap);
    add_events(2);
    wait_for(all_anchored, NULL, WAIT_MS, "the first batch final");
    json_t *b1 = batch_record(1);
    uint64_t n1 = jint(json_object_get(b1, "tx"), "nonce");
    json_decref(b1);
    json_t *ok = rpc("evm_revert", sp);
    assert_true(json_is_true(ok));
    json_decref(ok);

    add_events(3);
    wait_for(all_anchored, NULL, WAIT_MS, "the second batch re-signed below the gap and final");
    json_t *b2 = batch_record(2);
    assert_string_equal(jstr(b2, "status"), "final");
    assert_int_equal(jint(json_object_get(b2, "tx"), "nonce"), n1);
    assert_true(jint(b2, "resubmits") >= 1);
    json_decref(b2);
    assert_true(stats().nonce_gaps >= 1);
    /* the state follows the chain again: the next batch takes a nonce above (the stale
     * version at the old nonce may still be in anvil's pool and get mined once the gap is
     * filled: the same root a second time, which the records' own tx outranks) */
    add_events(1);
    wait_for(all_anchored, NULL, WAIT_MS, "a third batch");
    json_t *b3 = batch_record(3);
    assert_string_equal(jstr(b3, "status"), "final");
    assert_true(jint(json_object_get(b3, "tx"), "nonce") >= n1 + 1);
    json_decref(b3);
}

/* anvil_reorg replaces the anchor's block and the one after it, putting the same
 * transaction in the second replacement block: the receipt's block changes before
 * finality; the records name the new block, counted from there. */
static void test_anchor_reorg_moved(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_anchor_opts o;
    base_opts(&o);
    o.confirmations = 4;
    assert_int_equal(anchor_open(&o), DM_OK);
    add_events(6);
    mined_wait w = {.id = 1};
    wait_for(batch_mined, &w, WAIT_MS, "the anchor to be mined");
    mine(1);
    run_for(100); /* 2 of 4 confirmations seen */
    assert_false(all_anchored(NULL));
    json_t *b = batch_record(1);
    json_t *params = json_pack("[i, [[s, i]]]", 2, jstr(json_object_get(b, "tx"), "raw"), 1);
    char *ptxt = json_dumps(params, JSON_COMPACT);
    rpc_void("anvil_reorg", ptxt);
    free(ptxt);
    json_decref(params);
    json_decref(b);
    chain_rpc_receipt *r = receipt_now(w.tx);
    assert_non_null(r);
    uint64_t moved_block = r->block_number;
    uint8_t moved_hash[32];
    memcpy(moved_hash, r->block_hash, 32);
    chain_rpc_receipt_free(r);
    assert_int_equal(moved_block, w.block + 1);

    wait_for(anchored_mining, NULL, WAIT_MS, "the moved anchor to be confirmed");
    assert_int_equal(verify_all(), 1);
    json_t *rec = NULL;
    assert_int_equal(chain_anchor_proof(F.store, F.seqs[5], NULL, &rec), DM_OK);
    json_t *an = json_object_get(rec, "anchor");
    uint8_t got[32], bh[32];
    jhash(an, "tx_hash", got);
    jhash(an, "block_hash", bh);
    assert_memory_equal(got, w.tx, 32);
    assert_memory_equal(bh, moved_hash, 32);
    assert_int_equal(jint(an, "block_number"), moved_block);
    json_decref(rec);
    assert_true(stats().reorgs >= 1);
}

/* Finality by the `finalized` block tag (anvil: 64 blocks behind the head). */
static void test_anchor_finalized(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_anchor_opts o;
    base_opts(&o);
    o.use_finalized = true;
    assert_int_equal(anchor_open(&o), DM_OK);
    add_events(2);
    mined_wait w = {.id = 1};
    wait_for(batch_mined, &w, WAIT_MS, "the anchor to be mined");
    mine(10);
    run_for(150);
    assert_false(all_anchored(NULL)); /* mined, confirmed 11 times, not finalized */
    json_t *fin = rpc("eth_getBlockByNumber", "[\"finalized\", false]");
    chain_rpc_block blk;
    assert_int_equal(chain_rpc_parse_block(fin, &blk), DM_OK);
    json_decref(fin);
    assert_true(blk.number < w.block);
    mine(64);
    wait_for(all_anchored, NULL, WAIT_MS, "the anchor to be finalized");
    assert_int_equal(verify_all(), 1);
}

/* A transaction dropped from the pool while it waits is sent again. */
static void test_anchor_dropped(void **state)
{
    (void)state;
    NEED_ANVIL();
    automine(false);
    chain_anchor_opts o;
    base_opts(&o);
    o.rebroadcast_ms = 200;
    assert_int_equal(anchor_open(&o), DM_OK);
    add_events(2);
    uint64_t one = 1;
    wait_for(sent_at_least, &one, WAIT_MS, "the batch to be sent");
    uint8_t tx[32];
    assert_true(pending_tx(1, tx));
    assert_true(node_knows(tx, NULL));
    char h[67], params[80];
    hex0x(h, tx, 32);
    snprintf(params, sizeof params, "[\"%s\"]", h);
    rpc_void("anvil_dropTransaction", params);
    assert_false(node_knows(tx, NULL));
    uint64_t rb0 = stats().rebroadcasts;
    run_for(600);
    assert_true(stats().rebroadcasts > rb0);
    assert_true(node_knows(tx, NULL));
    mine(1);
    wait_for(all_anchored, NULL, WAIT_MS, "2 events anchored");
    assert_int_equal(verify_all(), 1);
}

/* The state file was rewritten after `since` (anvil dumps it every second). */
static bool state_dumped_after(struct timespec since)
{
    struct stat st;
    if (stat(F.state_path, &st))
        return false;
    return st.st_mtim.tv_sec > since.tv_sec ||
           (st.st_mtim.tv_sec == since.tv_sec && st.st_mtim.tv_nsec > since.tv_nsec);
}

/* anvil killed with SIGKILL in the middle of a stream of events and brought back on the
 * same port from its state file: the anchorer retries through the outage, resends what
 * the dead node lost, and in the end every event is anchored exactly once. */
static void test_anchor_anvil_killed(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_anchor_opts o;
    base_opts(&o);
    o.batch_max_events = 4;
    o.batch_max_delay_ms = 20;
    assert_int_equal(anchor_open(&o), DM_OK);
    add_events(6);
    wait_for(all_anchored, NULL, WAIT_MS, "the first 6 events");
    add_events(3);
    run_for(30); /* a batch may be on its way */

    /* freeze the chain, let anvil dump it, then kill it */
    automine(false);
    add_events(2);
    /* the anchorer sends into a pool that will be lost */
    uint64_t nsent = stats().batches_sent + 1;
    wait_for(sent_at_least, &nsent, WAIT_MS, "a batch sent into the frozen chain");
    struct stat st0;
    assert_int_equal(stat(F.state_path, &st0), 0);
    uint64_t t0 = mono_ms();
    while (!state_dumped_after(st0.st_mtim)) {
        if (mono_ms() - t0 > 10000)
            fail_msg("anvil did not rewrite its state file");
        usleep(50 * 1000);
    }
    usleep(200 * 1000); /* well inside the 1 s between dumps */
    anvil_util_kill(&F.anvil);

    uint64_t errs0 = stats().rpc_errors;
    add_events(3);
    run_for(600); /* the endpoint is down */
    assert_true(stats().rpc_errors > errs0);
    assert_false(all_anchored(NULL));

    assert_true(anvil_launch(F.anvil.port)); /* the clients keep their URL */
    wait_for(all_anchored, NULL, WAIT_MS, "every event after anvil came back");
    size_t batches = verify_all();
    assert_true(batches >= 4);
    chain_anchor_stats s = stats();
    assert_int_equal(s.events_anchored, 14);
    assert_int_equal(s.pending_events, 0);
    assert_false(s.halted);
}

int test_chain_anchor(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anchor_encodings),
        cmocka_unit_test(test_anchor_create_invalid),
        cmocka_unit_test_setup_teardown(test_anchor_refuses_wrong_chain, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_batch_of_one, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_batches, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_large_batch, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_restart_pending, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_fee_bump, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_reorg_resend, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_reorg_nonce_taken, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_nonce_gap, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_reorg_moved, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_finalized, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_dropped, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_anchor_anvil_killed, test_setup, test_teardown),
    };
    return cmocka_run_group_tests_name("chain_anchor", tests, group_setup, group_teardown);
}
