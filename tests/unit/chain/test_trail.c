/*
 * Listing the on-chain audit trail (chain/chain_trail.h) against a real anvil started here
 * from the pinned npm package: AuditAnchor deployed, roots anchored by two of anvil's
 * unlocked accounts (one block holding an anchor of each), then listed from block 0 (all,
 * per sender, from a later block, a closed range), in pages of one and two blocks, with
 * pages halved when the reply does not fit the client's max_reply_bytes (a real refusal),
 * and every bound. The decoder is checked on crafted log JSON: each broken field is
 * DM_EPARSE naming it. Groups that need anvil skip with a message if the binary is absent.
 */
#include "dm_test.h"

#include "anvil_util.h"
#include "groups.h"

#include "chain_trail.h"
#include "crypto_eth.h"
#include "crypto_keccak.h"
#include "dm_enc.h"
#include "dm_err.h"

#include <uv.h>

#define NANCH 6

static struct {
    bool have_anvil;
    anvil_proc anvil;
    uv_loop_t loop;
    chain_rpc_t *rpc;
    char acct0[43];
    uint8_t contract[20];
    char contract_hex[43];
    char who[2][43]; /* anvil accounts 1 and 2: senders A and B */
    uint8_t who_addr[2][20];
    chain_trail_anchor exp[NANCH]; /* in (block, log index) order */
    uint64_t head;
} F;

static void hex0x(char *out, const uint8_t *p, size_t n)
{
    out[0] = '0';
    out[1] = 'x';
    dm_hex_encode(out + 2, p, n);
}

static json_t *rpc(const char *method, const char *params)
{
    return anvil_util_rpc(&F.loop, F.rpc, method, params);
}

static void rpc_void(const char *method, const char *params)
{
    json_decref(rpc(method, params));
}

static uint64_t head_now(void)
{
    json_t *r = rpc("eth_blockNumber", NULL);
    uint64_t n;
    assert_int_equal(chain_rpc_parse_u64(r, &n), DM_OK);
    json_decref(r);
    return n;
}

/* Send anchor(root, count) from account `w` (0 = A, 1 = B); the tx hash in `tx`. */
static void send_anchor(int w, const uint8_t root[32], uint64_t count, uint8_t tx[32])
{
    uint8_t data[68] = {0xdb, 0x2c, 0x4a, 0xca}; /* anchor(bytes32,uint64) */
    memcpy(data + 4, root, 32);
    dm_put_u64be(data + 60, count);
    char dh[2 * 68 + 3];
    hex0x(dh, data, sizeof data);
    json_t *p =
        json_pack("[{s:s, s:s, s:s}]", "from", F.who[w], "to", F.contract_hex, "data", dh);
    char *ptxt = json_dumps(p, JSON_COMPACT);
    json_t *h = rpc("eth_sendTransaction", ptxt);
    assert_int_equal(chain_rpc_parse_fixed(h, tx, 32), DM_OK);
    json_decref(h);
    free(ptxt);
    json_decref(p);
}

/* The Anchored log of `tx` as the expected anchor (block time from the block). */
static void expect_from_receipt(const uint8_t tx[32], chain_trail_anchor *a)
{
    chain_rpc_receipt *rc = anvil_util_receipt(&F.loop, F.rpc, tx);
    assert_int_equal(rc->status, 1);
    assert_int_equal(rc->nlogs, 1);
    char err[CHAIN_TRAIL_MSG_MAX];
    if (chain_trail_decode(&rc->logs[0], F.contract, NULL, a, err) != DM_OK)
        fail_msg("decode: %s", err);
    char params[64];
    snprintf(params, sizeof params, "[\"0x%llx\", false]", (unsigned long long)rc->block_number);
    json_t *b = rpc("eth_getBlockByNumber", params);
    chain_rpc_block blk;
    assert_int_equal(chain_rpc_parse_block(b, &blk), DM_OK);
    json_decref(b);
    assert_int_equal(a->block_time, blk.timestamp); /* blockTime is the block's timestamp */
    chain_rpc_receipt_free(rc);
}

static int cmp_anchor(const void *x, const void *y)
{
    const chain_trail_anchor *a = x, *b = y;
    if (a->block_number != b->block_number)
        return a->block_number < b->block_number ? -1 : 1;
    return a->log_index < b->log_index ? -1 : a->log_index > b->log_index;
}

static int group_setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof F);
    char bin[PATH_MAX];
    if (!anvil_util_bin(bin, sizeof bin)) {
        fprintf(stderr, "[ chain_trail ] anvil not found at %s: run scripts/setup-node.sh\n", bin);
        return 0; /* the chain tests skip */
    }
    if (!anvil_util_start(&F.anvil, 0, NULL, 15000)) {
        fprintf(stderr, "[ chain_trail ] anvil %s did not start\n", bin);
        return -1;
    }
    F.have_anvil = true;
    if (uv_loop_init(&F.loop) || chain_rpc_create(&F.rpc, &F.loop, F.anvil.url, NULL))
        return -1;
    uint8_t tx[NANCH][32];
    anvil_util_deploy(&F.loop, F.rpc, F.acct0, F.contract, tx[0]);
    hex0x(F.contract_hex, F.contract, 20);
    json_t *accts = rpc("eth_accounts", NULL);
    for (int w = 0; w < 2; w++) {
        snprintf(F.who[w], sizeof F.who[w], "%s", json_string_value(json_array_get(accts, w + 1)));
        assert_int_equal(crypto_eth_address_parse(F.who[w], F.who_addr[w]), DM_OK);
    }
    json_decref(accts);

    /* who anchors what, with empty blocks between; anchors 3 and 4 share a block */
    static const int sender[NANCH] = {0, 1, 0, 0, 1, 0};
    static const uint64_t count[NANCH] = {1, 5, 16, 2, 3, 4096};
    uint8_t roots[NANCH][32];
    for (int i = 0; i < NANCH; i++) {
        char seed[32];
        snprintf(seed, sizeof seed, "trail root %d", i);
        crypto_keccak256(roots[i], seed, strlen(seed));
    }
    send_anchor(sender[0], roots[0], count[0], tx[0]);
    rpc_void("anvil_mine", "[\"0x3\"]");
    send_anchor(sender[1], roots[1], count[1], tx[1]);
    send_anchor(sender[2], roots[2], count[2], tx[2]);
    rpc_void("evm_setAutomine", "[false]");
    send_anchor(sender[3], roots[3], count[3], tx[3]);
    send_anchor(sender[4], roots[4], count[4], tx[4]);
    rpc_void("anvil_mine", "[\"0x1\"]");
    rpc_void("evm_setAutomine", "[true]");
    rpc_void("anvil_mine", "[\"0x5\"]");
    send_anchor(sender[5], roots[5], count[5], tx[5]);
    rpc_void("anvil_mine", "[\"0x2\"]");
    for (int i = 0; i < NANCH; i++) {
        expect_from_receipt(tx[i], &F.exp[i]);
        assert_memory_equal(F.exp[i].root, roots[i], 32);
        assert_memory_equal(F.exp[i].sender, F.who_addr[sender[i]], 20);
        assert_int_equal(F.exp[i].count, count[i]);
    }
    qsort(F.exp, NANCH, sizeof F.exp[0], cmp_anchor);
    assert_int_equal(F.exp[2].block_number + 1, F.exp[3].block_number); /* 2, then 3 and 4 */
    assert_int_equal(F.exp[3].block_number, F.exp[4].block_number);
    F.head = head_now();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (F.have_anvil)
        anvil_util_client_close(&F.loop, &F.rpc);
    anvil_util_stop(&F.anvil);
    return 0;
}

#define NEED_ANVIL() ANVIL_UTIL_NEED(F.have_anvil, "chain_trail")

/* ---------------------------------------------------------------- helpers */

static void assert_anchor_eq(const chain_trail_anchor *got, const chain_trail_anchor *want)
{
    assert_int_equal(got->block_number, want->block_number);
    assert_memory_equal(got->block_hash, want->block_hash, 32);
    assert_memory_equal(got->tx_hash, want->tx_hash, 32);
    assert_int_equal(got->log_index, want->log_index);
    assert_memory_equal(got->sender, want->sender, 20);
    assert_memory_equal(got->root, want->root, 32);
    assert_int_equal(got->count, want->count);
    assert_int_equal(got->block_time, want->block_time);
}

/* The result holds exactly the expected anchors in [from, to] of `sender` (NULL: all). */
static void assert_listing(const chain_trail_result *res, uint64_t from, uint64_t to,
                           const uint8_t *sender)
{
    size_t k = 0;
    uint64_t events = 0;
    for (int i = 0; i < NANCH; i++) {
        const chain_trail_anchor *e = &F.exp[i];
        if (e->block_number < from || e->block_number > to ||
            (sender && memcmp(e->sender, sender, 20) != 0))
            continue;
        if (k >= res->n)
            fail_msg("anchor %d (block %llu) missing from the listing", i,
                     (unsigned long long)e->block_number);
        assert_anchor_eq(&res->anchors[k++], e);
        events += e->count;
    }
    assert_int_equal(res->n, k);
    assert_int_equal(res->events, events);
    assert_int_equal(res->from_block, from);
    assert_int_equal(res->to_block, to);
    assert_int_equal(res->next_block, to + 1);
}

static chain_trail_query query(uint64_t from, const uint8_t *sender)
{
    return (chain_trail_query){
        .contract = F.contract, .sender = sender, .from_block = from, .to_latest = true};
}

static int run(const chain_trail_query *q, const chain_rpc_opts *o, chain_trail_result *res)
{
    return chain_trail_run(F.anvil.url, q, o, res);
}

/* ---------------------------------------------------------------- tests */

typedef struct {
    bool done;
    int status;
} wait_list;

static void list_done(int status, chain_trail_result *res, void *arg)
{
    (void)res;
    wait_list *w = arg;
    w->done = true;
    w->status = status;
}

/* Every anchor from block 0, on the test's own loop (the asynchronous API). */
static void test_trail_all(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_trail_query q = query(0, NULL);
    chain_trail_result res;
    wait_list w = {0};
    assert_int_equal(chain_trail_list(F.rpc, &q, &res, list_done, &w), DM_OK);
    assert_false(w.done); /* never from inside the call */
    while (!w.done)
        uv_run(&F.loop, UV_RUN_ONCE);
    if (w.status != DM_OK)
        fail_msg("%s: %s", dm_err_name(w.status), res.msg);
    assert_int_equal(res.head, F.head);
    assert_listing(&res, 0, F.head, NULL);
    assert_int_equal(res.n, NANCH);
    assert_int_equal(res.events, 1 + 5 + 16 + 2 + 3 + 4096);
    assert_int_equal(res.calls, 1); /* the whole chain fits the default page */
    assert_int_equal(res.splits, 0);
    assert_int_equal(res.removed, 0);
    chain_trail_result_free(&res);
}

static void test_trail_by_sender(void **state)
{
    (void)state;
    NEED_ANVIL();
    for (int w = 0; w < 2; w++) {
        chain_trail_query q = query(0, F.who_addr[w]);
        chain_trail_result res;
        assert_int_equal(run(&q, NULL, &res), DM_OK);
        assert_listing(&res, 0, F.head, F.who_addr[w]);
        assert_int_equal(res.n, w == 0 ? 4 : 2);
        chain_trail_result_free(&res);
    }
    /* an account that never anchored */
    chain_trail_query q = query(0, F.contract);
    chain_trail_result res;
    assert_int_equal(run(&q, NULL, &res), DM_OK);
    assert_int_equal(res.n, 0);
    assert_int_equal(res.events, 0);
    chain_trail_result_free(&res);
}

static void test_trail_ranges(void **state)
{
    (void)state;
    NEED_ANVIL();
    /* from a later block: the first two anchors are left out */
    chain_trail_query q = query(F.exp[2].block_number, NULL);
    chain_trail_result res;
    assert_int_equal(run(&q, NULL, &res), DM_OK);
    assert_listing(&res, F.exp[2].block_number, F.head, NULL);
    assert_int_equal(res.n, NANCH - 2);
    chain_trail_result_free(&res);
    /* a closed range, one sender */
    q = query(F.exp[1].block_number, F.who_addr[0]);
    q.to_latest = false;
    q.to_block = F.exp[4].block_number;
    assert_int_equal(run(&q, NULL, &res), DM_OK);
    assert_listing(&res, F.exp[1].block_number, F.exp[4].block_number, F.who_addr[0]);
    assert_int_equal(res.n, 2); /* anchors 2 and 3 (or 4): the ones of A in that range */
    chain_trail_result_free(&res);
    /* one block, its two anchors */
    q = query(F.exp[3].block_number, NULL);
    q.to_latest = false;
    q.to_block = F.exp[3].block_number;
    assert_int_equal(run(&q, NULL, &res), DM_OK);
    assert_listing(&res, F.exp[3].block_number, F.exp[3].block_number, NULL);
    assert_int_equal(res.n, 2);
    chain_trail_result_free(&res);
    /* a range past the head is capped at the head */
    q = query(F.exp[5].block_number, NULL);
    q.to_latest = false;
    q.to_block = F.head + 1000;
    assert_int_equal(run(&q, NULL, &res), DM_OK);
    assert_listing(&res, F.exp[5].block_number, F.head, NULL);
    assert_int_equal(res.n, 1);
    chain_trail_result_free(&res);
}

/* Tiny pages: one eth_getLogs per page, the same anchors. */
static void test_trail_pages(void **state)
{
    (void)state;
    NEED_ANVIL();
    for (uint64_t page = 1; page <= 3; page++) {
        chain_trail_query q = query(0, NULL);
        q.page_blocks = page;
        chain_trail_result res;
        assert_int_equal(run(&q, NULL, &res), DM_OK);
        assert_listing(&res, 0, F.head, NULL);
        assert_int_equal(res.calls, (F.head + 1 + page - 1) / page);
        assert_int_equal(res.splits, 0);
        chain_trail_result_free(&res);
    }
    /* and per sender */
    chain_trail_query q = query(1, F.who_addr[1]);
    q.page_blocks = 2;
    chain_trail_result res;
    assert_int_equal(run(&q, NULL, &res), DM_OK);
    assert_listing(&res, 1, F.head, F.who_addr[1]);
    assert_int_equal(res.calls, (F.head + 1) / 2);
    chain_trail_result_free(&res);
}

/* The reply size of eth_getLogs over blocks [lo, hi], as anvil sends it. */
static size_t reply_size(uint64_t lo, uint64_t hi)
{
    char params[256];
    snprintf(params, sizeof params,
             "[{\"address\":\"%s\",\"fromBlock\":\"0x%llx\",\"toBlock\":\"0x%llx\"}]",
             F.contract_hex, (unsigned long long)lo, (unsigned long long)hi);
    json_t *r = rpc("eth_getLogs", params);
    char *t = json_dumps(r, JSON_COMPACT);
    size_t n = strlen(t);
    free(t);
    json_decref(r);
    return n + 64; /* the JSON-RPC envelope around the result */
}

/* Pages refused as too large (the reply above max_reply_bytes) are halved until they fit;
 * a single block that cannot fit ends the listing with the anchors found before it. */
static void test_trail_split(void **state)
{
    (void)state;
    NEED_ANVIL();
    size_t two = reply_size(F.exp[3].block_number, F.exp[3].block_number); /* 2 logs */
    size_t all = reply_size(0, F.head);
    assert_true(all > two + 256);
    chain_rpc_opts o = {.max_reply_bytes = two + 128};
    chain_trail_query q = query(0, NULL);
    chain_trail_result res;
    int rc = run(&q, &o, &res);
    if (rc != DM_OK)
        fail_msg("%s: %s", dm_err_name(rc), res.msg);
    assert_listing(&res, 0, F.head, NULL);
    assert_true(res.splits >= 3); /* 5000 -> 2500 -> ... until the chain's blocks split */
    assert_true(res.calls > res.splits);
    chain_trail_result_free(&res);

    /* the block with two anchors does not fit at all */
    o.max_reply_bytes = (two - 64) * 3 / 4;
    assert_true(reply_size(F.exp[0].block_number, F.exp[0].block_number) < o.max_reply_bytes);
    rc = run(&q, &o, &res);
    assert_int_equal(rc, DM_ETOOBIG);
    char want[64];
    snprintf(want, sizeof want, "blocks %llu..%llu", (unsigned long long)F.exp[3].block_number,
             (unsigned long long)F.exp[3].block_number);
    if (!strstr(res.msg, want))
        fail_msg("message does not name the block: %s", res.msg);
    assert_int_equal(res.next_block, F.exp[3].block_number);
    assert_int_equal(res.n, 3); /* what came before is kept */
    for (int i = 0; i < 3; i++)
        assert_anchor_eq(&res.anchors[i], &F.exp[i]);
    chain_trail_result_free(&res);
}

static void test_trail_bounds(void **state)
{
    (void)state;
    NEED_ANVIL();
    chain_trail_result res;
    /* more anchors than allowed */
    chain_trail_query q = query(0, NULL);
    q.max_anchors = 2;
    assert_int_equal(run(&q, NULL, &res), DM_ELIMIT);
    assert_non_null(strstr(res.msg, "more than 2 anchors"));
    chain_trail_result_free(&res);
    /* more calls than allowed */
    q = query(0, NULL);
    q.page_blocks = 1;
    q.max_calls = 4;
    assert_int_equal(run(&q, NULL, &res), DM_ELIMIT);
    assert_int_equal(res.calls, 4);
    assert_int_equal(res.next_block, 4);
    chain_trail_result_free(&res);
    /* from above the head */
    q = query(F.head + 1, NULL);
    assert_int_equal(run(&q, NULL, &res), DM_EINVAL);
    assert_non_null(strstr(res.msg, "above the chain head"));
    chain_trail_result_free(&res);
    /* a reversed range, no contract: refused at once */
    q = query(10, NULL);
    q.to_latest = false;
    q.to_block = 9;
    assert_int_equal(chain_trail_list(F.rpc, &q, &res, list_done, NULL), DM_EINVAL);
    q = query(0, NULL);
    q.contract = NULL;
    assert_int_equal(chain_trail_list(F.rpc, &q, &res, list_done, NULL), DM_EINVAL);
    /* an endpoint that is down, a bad URL */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", anvil_util_free_port());
    q = query(0, NULL);
    assert_int_equal(chain_trail_run(url, &q, NULL, &res), DM_ECONN);
    assert_non_null(strstr(res.msg, "eth_blockNumber failed"));
    chain_trail_result_free(&res);
    assert_int_equal(chain_trail_run("ftp://x/", &q, NULL, &res), DM_EINVAL);
    chain_trail_result_free(&res);
}

/* ---------------------------------------------------------------- the decoder (no chain) */

static const uint8_t CONTRACT[20] = {0x5f, 0xbd, 0xb2, 0x31, 0x56, 0x78, 0xaf, 0xec, 0xb3, 0x67,
                                     0xf0, 0x32, 0xd9, 0x3f, 0x64, 0x2f, 0x64, 0x18, 0x0a, 0xa3};
#define SENDER_HEX "f39fd6e51aad88f6f4ce6ab8827279cfffb92266"
#define ROOT_HEX "1111111111111111111111111111111111111111111111111111111111111111"
#define SIG_HEX "0bc3d9a227d53e9dc5a02f8ec5f5d447b03b9918113a4b9b1043f3c7fe4f24e4"
#define COUNT_WORD "0000000000000000000000000000000000000000000000000000000000000007"
#define TIME_WORD "0000000000000000000000000000000000000000000000000000000065a4fcd8"

/* One log as eth_getLogs returns it; NULL arguments take the valid value. */
static json_t *log_json(const char *address, json_t *topics, const char *data, uint64_t block,
                        uint64_t log_index)
{
    char addr[43] = "0x", bn[24], li[24];
    if (!address) {
        dm_hex_encode(addr + 2, CONTRACT, 20);
        address = addr;
    }
    if (!topics)
        topics = json_pack("[s, s, s]", "0x" SIG_HEX, "0x000000000000000000000000" SENDER_HEX,
                           "0x" ROOT_HEX);
    snprintf(bn, sizeof bn, "0x%llx", (unsigned long long)block);
    snprintf(li, sizeof li, "0x%llx", (unsigned long long)log_index);
    json_t *j = json_pack(
        "{s:s, s:o, s:s, s:s, s:s, s:s, s:s, s:s, s:b}", "address", address, "topics", topics,
        "data", data ? data : "0x" COUNT_WORD TIME_WORD, "blockNumber", bn, "blockHash",
        "0x2222222222222222222222222222222222222222222222222222222222222222", "transactionHash",
        "0x3333333333333333333333333333333333333333333333333333333333333333", "transactionIndex",
        "0x0", "logIndex", li, "removed", 0);
    assert_non_null(j);
    return j;
}

/* Add the page of `logs` (a JSON array, stolen) for blocks [lo, hi]; the status, and the
 * message in `msg`. */
static int add_json(chain_trail_result *res, const uint8_t *sender, uint64_t lo, uint64_t hi,
                    json_t *logs)
{
    chain_rpc_logs *l = NULL;
    assert_int_equal(chain_rpc_parse_logs(logs, &l), DM_OK);
    json_decref(logs);
    chain_trail_query q = {.contract = CONTRACT, .sender = sender};
    int rc = chain_trail_add_page(res, &q, lo, hi, l);
    chain_rpc_logs_free(l);
    return rc;
}

static void expect_parse_error(json_t *log, const uint8_t *sender, const char *field)
{
    chain_trail_result res = {0};
    int rc = add_json(&res, sender, 0, 100, json_pack("[o]", log));
    if (rc != DM_EPARSE)
        fail_msg("%s: got %s, want DM_EPARSE", field, dm_err_name(rc));
    if (!strstr(res.msg, field))
        fail_msg("%s: message does not name it: %s", field, res.msg);
    assert_int_equal(res.n, 0);
    chain_trail_result_free(&res);
}

static void test_trail_decode(void **state)
{
    (void)state;
    /* the valid log */
    chain_trail_result res = {0};
    assert_int_equal(add_json(&res, NULL, 0, 100, json_pack("[o]", log_json(NULL, NULL, NULL, 9, 2))),
                     DM_OK);
    assert_int_equal(res.n, 1);
    const chain_trail_anchor *a = &res.anchors[0];
    assert_int_equal(a->block_number, 9);
    assert_int_equal(a->log_index, 2);
    assert_int_equal(a->count, 7);
    assert_int_equal(a->block_time, 0x65a4fcd8);
    char s[43];
    hex0x(s, a->sender, 20);
    assert_string_equal(s, "0x" SENDER_HEX);
    uint8_t sig[32];
    crypto_keccak256(sig, CHAIN_TRAIL_EVENT_SIG, strlen(CHAIN_TRAIL_EVENT_SIG));
    char sh[65];
    dm_hex_encode(sh, sig, 32);
    assert_string_equal(sh, SIG_HEX);
    json_t *j = chain_trail_anchor_json(a);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 7);
    assert_string_equal(json_string_value(json_object_get(j, "root")), ROOT_HEX);
    assert_string_equal(json_string_value(json_object_get(j, "sender")),
                        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"); /* EIP-55 */
    json_decref(j);
    /* the next page must follow it; a repeated log is refused and nothing of it kept */
    json_t *two = json_pack("[o, o]", log_json(NULL, NULL, NULL, 10, 0),
                            log_json(NULL, NULL, NULL, 10, 0));
    assert_int_equal(add_json(&res, NULL, 10, 20, two), DM_EPARSE);
    assert_non_null(strstr(res.msg, "logIndex"));
    assert_int_equal(res.n, 1);
    assert_int_equal(res.events, 7);
    assert_int_equal(add_json(&res, NULL, 9, 9, json_pack("[o]", log_json(NULL, NULL, NULL, 9, 1))),
                     DM_EPARSE); /* behind the last one */
    /* a removed log is skipped and counted */
    json_t *rm = log_json(NULL, NULL, NULL, 11, 0);
    json_object_set_new(rm, "removed", json_true());
    assert_int_equal(add_json(&res, NULL, 11, 11, json_pack("[o]", rm)), DM_OK);
    assert_int_equal(res.n, 1);
    assert_int_equal(res.removed, 1);
    chain_trail_result_free(&res);

    /* each broken field */
    expect_parse_error(log_json("0x000000000000000000000000000000000000dead", NULL, NULL, 1, 0),
                       NULL, "address");
    expect_parse_error(log_json(NULL, json_pack("[s, s]", "0x" SIG_HEX, "0x" ROOT_HEX), NULL, 1, 0),
                       NULL, "topics");
    expect_parse_error(
        log_json(NULL,
                 json_pack("[s, s, s, s]", "0x" SIG_HEX, "0x000000000000000000000000" SENDER_HEX,
                           "0x" ROOT_HEX, "0x" ROOT_HEX),
                 NULL, 1, 0),
        NULL, "topics");
    expect_parse_error(log_json(NULL,
                                json_pack("[s, s, s]", "0x" ROOT_HEX,
                                          "0x000000000000000000000000" SENDER_HEX, "0x" ROOT_HEX),
                                NULL, 1, 0),
                       NULL, "topic0");
    expect_parse_error(log_json(NULL,
                                json_pack("[s, s, s]", "0x" SIG_HEX,
                                          "0x000000000000000000000001" SENDER_HEX, "0x" ROOT_HEX),
                                NULL, 1, 0),
                       NULL, "topic1 (sender)");
    uint8_t other[20];
    memset(other, 0x77, 20);
    expect_parse_error(log_json(NULL, NULL, NULL, 1, 0), other, "topic1 (sender)");
    expect_parse_error(log_json(NULL, NULL, "0x" COUNT_WORD, 1, 0), NULL, "data");
    expect_parse_error(log_json(NULL, NULL, "0x" COUNT_WORD TIME_WORD "00", 1, 0), NULL, "data");
    expect_parse_error(log_json(NULL, NULL, "0x", 1, 0), NULL, "data");
    expect_parse_error(
        log_json(NULL, NULL,
                 "0x0000000000000000000000000000000000000000000000010000000000000007" TIME_WORD, 1,
                 0),
        NULL, "count");
    expect_parse_error(
        log_json(NULL, NULL,
                 "0x" COUNT_WORD "0000000000000000000000000000000000000000000000010000000065a4fcd8",
                 1, 0),
        NULL, "blockTime");
    expect_parse_error(log_json(NULL, NULL, NULL, 101, 0), NULL, "blockNumber");

    /* a count beyond a JSON integer is written as a decimal string */
    chain_trail_anchor big = {.count = UINT64_MAX};
    j = chain_trail_anchor_json(&big);
    assert_string_equal(json_string_value(json_object_get(j, "count")), "18446744073709551615");
    json_decref(j);
}

/* Which failed calls shrink the page. */
static void test_trail_refusals(void **state)
{
    (void)state;
    chain_rpc_error e = {.kind = CHAIN_RPC_ERR_REMOTE, .code = -32000};
    static const char *const too_large[] = {
        "query returned more than 10000 results",
        "exceed maximum block range: 5000",
        "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
        "block range is too wide",
        "eth_getLogs is limited to a 10,000 range",
        NULL};
    for (int i = 0; too_large[i]; i++) {
        snprintf(e.message, sizeof e.message, "%s", too_large[i]);
        assert_true(chain_trail_refused_as_too_large(DM_EPROTO, &e));
    }
    static const char *const other[] = {"invalid params", "unknown block", "internal error",
                                        "header not found", NULL};
    for (int i = 0; other[i]; i++) {
        snprintf(e.message, sizeof e.message, "%s", other[i]);
        assert_false(chain_trail_refused_as_too_large(DM_EPROTO, &e));
    }
    e.code = -32005; /* EIP-1474 "limit exceeded", whatever the words */
    snprintf(e.message, sizeof e.message, "try again");
    assert_true(chain_trail_refused_as_too_large(DM_EPROTO, &e));
    chain_rpc_error h = {.kind = CHAIN_RPC_ERR_HTTP, .http_status = 413};
    assert_true(chain_trail_refused_as_too_large(DM_EPROTO, &h));
    h.http_status = 500;
    assert_false(chain_trail_refused_as_too_large(DM_EPROTO, &h));
    chain_rpc_error r = {.kind = CHAIN_RPC_ERR_REPLY};
    assert_true(chain_trail_refused_as_too_large(DM_ETOOBIG, &r));
    chain_rpc_error t = {.kind = CHAIN_RPC_ERR_TRANSPORT};
    assert_false(chain_trail_refused_as_too_large(DM_ETIMEDOUT, &t));
    assert_false(chain_trail_refused_as_too_large(DM_ECONN, &t));
    /* a malformed result is not a size problem */
    chain_rpc_error m = {.kind = CHAIN_RPC_ERR_RESULT};
    snprintf(m.message, sizeof m.message, "eth_getLogs: malformed result (topics)");
    assert_false(chain_trail_refused_as_too_large(DM_EPROTO, &m));
}

int test_chain_trail(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trail_decode),     cmocka_unit_test(test_trail_refusals),
        cmocka_unit_test(test_trail_all),        cmocka_unit_test(test_trail_by_sender),
        cmocka_unit_test(test_trail_ranges),     cmocka_unit_test(test_trail_pages),
        cmocka_unit_test(test_trail_split),      cmocka_unit_test(test_trail_bounds),
    };
    return cmocka_run_group_tests_name("chain_trail", tests, group_setup, group_teardown);
}
