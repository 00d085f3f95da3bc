/*
 * Listing the on-chain audit trail: the Anchored events of an AuditAnchor contract, read
 * back with eth_getLogs in pages of blocks that shrink when the endpoint refuses a page
 * as too large (chain_trail.h).
 */
#include "chain_trail.h"

#include "crypto_eth.h"
#include "crypto_keccak.h"
#include "dm_enc.h"
#include "dm_err.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void msgf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void msgf(char *out, const char *fmt, ...)
{
    if (!out)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, CHAIN_TRAIL_MSG_MAX, fmt, ap);
    va_end(ap);
    for (char *p = out; *p; p++)
        if (!isprint((unsigned char)*p))
            *p = '?';
}

static void hex0x(char *out, const uint8_t *p, size_t n)
{
    out[0] = '0';
    out[1] = 'x';
    dm_hex_encode(out + 2, p, n);
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

void chain_trail_result_free(chain_trail_result *r)
{
    if (!r)
        return;
    free(r->anchors);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------ decoding */

int chain_trail_decode(const chain_rpc_log *lg, const uint8_t contract[20], const uint8_t *sender,
                       chain_trail_anchor *out, char err[CHAIN_TRAIL_MSG_MAX])
{
    char got[67], want[67];
    if (memcmp(lg->address, contract, 20) != 0) {
        crypto_eth_address_format(lg->address, got);
        crypto_eth_address_format(contract, want);
        msgf(err, "address: log emitted by %s, not by the contract %s", got, want);
        return DM_EPARSE;
    }
    if (lg->ntopics != 3) {
        msgf(err, "topics: %zu topics, an Anchored event has 3 [signature, sender, root]",
             lg->ntopics);
        return DM_EPARSE;
    }
    uint8_t sig[32];
    crypto_keccak256(sig, CHAIN_TRAIL_EVENT_SIG, strlen(CHAIN_TRAIL_EVENT_SIG));
    if (memcmp(lg->topics[0], sig, 32) != 0) {
        hex0x(got, lg->topics[0], 32);
        msgf(err, "topic0: %s is not the " CHAIN_TRAIL_EVENT_SIG " signature", got);
        return DM_EPARSE;
    }
    if (!all_zero(lg->topics[1], 12)) {
        hex0x(got, lg->topics[1], 32);
        msgf(err, "topic1 (sender): %s is not a left-padded address", got);
        return DM_EPARSE;
    }
    if (sender && memcmp(lg->topics[1] + 12, sender, 20) != 0) {
        crypto_eth_address_format(lg->topics[1] + 12, got);
        crypto_eth_address_format(sender, want);
        msgf(err, "topic1 (sender): %s, but the filter asked for %s", got, want);
        return DM_EPARSE;
    }
    /* data = abi.encode(uint64 count, uint256 blockTime) */
    if (lg->data_len != 64) {
        msgf(err, "data: %zu bytes, an Anchored event has 64 (uint64 count, uint256 blockTime)",
             lg->data_len);
        return DM_EPARSE;
    }
    if (!all_zero(lg->data, 24)) {
        msgf(err, "count: the first data word is not a uint64");
        return DM_EPARSE;
    }
    if (!all_zero(lg->data + 32, 24)) {
        msgf(err, "blockTime: the second data word exceeds 64 bits");
        return DM_EPARSE;
    }
    memset(out, 0, sizeof *out);
    out->block_number = lg->block_number;
    memcpy(out->block_hash, lg->block_hash, 32);
    memcpy(out->tx_hash, lg->tx_hash, 32);
    out->log_index = lg->log_index;
    memcpy(out->sender, lg->topics[1] + 12, 20);
    memcpy(out->root, lg->topics[2], 32);
    out->count = dm_get_u64be(lg->data + 24);
    out->block_time = dm_get_u64be(lg->data + 56);
    return DM_OK;
}

static size_t max_anchors(const chain_trail_query *q)
{
    return q->max_anchors ? q->max_anchors : CHAIN_TRAIL_MAX_ANCHORS_DEFAULT;
}

int chain_trail_add_page(chain_trail_result *res, const chain_trail_query *q, uint64_t lo,
                         uint64_t hi, const chain_rpc_logs *logs)
{
    size_t n0 = res->n;
    uint64_t events0 = res->events, removed0 = res->removed;
    size_t nlogs = logs ? logs->n : 0;
    int rc = DM_OK;
    for (size_t i = 0; i < nlogs && rc == DM_OK; i++) {
        const chain_rpc_log *lg = &logs->logs[i];
        if (lg->removed) {
            res->removed++;
            continue;
        }
        char why[CHAIN_TRAIL_MSG_MAX];
        chain_trail_anchor a;
        if (lg->block_number < lo || lg->block_number > hi) {
            msgf(why, "blockNumber: %llu is outside the blocks asked for",
                 (unsigned long long)lg->block_number);
            rc = DM_EPARSE;
        } else if (res->n && (lg->block_number < res->anchors[res->n - 1].block_number ||
                              (lg->block_number == res->anchors[res->n - 1].block_number &&
                               lg->log_index <= res->anchors[res->n - 1].log_index))) {
            msgf(why, "logIndex: log %llu of block %llu is out of order or repeated",
                 (unsigned long long)lg->log_index, (unsigned long long)lg->block_number);
            rc = DM_EPARSE;
        } else {
            rc = chain_trail_decode(lg, q->contract, q->sender, &a, why);
        }
        if (rc) {
            msgf(res->msg, "eth_getLogs blocks %llu..%llu, log %zu: %s", (unsigned long long)lo,
                 (unsigned long long)hi, i, why);
            break;
        }
        if (res->n >= max_anchors(q)) {
            msgf(res->msg, "more than %zu anchors in the range: narrow it with --from/--to",
                 max_anchors(q));
            rc = DM_ELIMIT;
            break;
        }
        if (res->n == res->cap) {
            size_t cap = res->cap ? res->cap * 2 : 64;
            chain_trail_anchor *v = realloc(res->anchors, cap * sizeof *v);
            if (!v) {
                rc = DM_ENOMEM;
                msgf(res->msg, "out of memory");
                break;
            }
            res->anchors = v;
            res->cap = cap;
        }
        res->anchors[res->n++] = a;
        res->events = a.count > UINT64_MAX - res->events ? UINT64_MAX : res->events + a.count;
    }
    if (rc) { /* nothing of a bad page is kept */
        res->n = n0;
        res->events = events0;
        res->removed = removed0;
    }
    return rc;
}

/* ------------------------------------------------------------------ paging */

/* Words providers use when a log query is too wide: geth "query returned more than 10000
 * results", "exceed maximum block range"; Alchemy "Log response size exceeded"; others
 * "block range is too wide", "limited to a 10,000 range", "query timeout exceeded". */
static const char *const TOO_LARGE_WORDS[] = {"range",      "too many", "too large", "too wide",
                                              "exceed",     "limit",    "more than", "response size",
                                              "too big",    NULL};

bool chain_trail_refused_as_too_large(int status, const chain_rpc_error *err)
{
    if (status == DM_ETOOBIG)
        return true; /* above our own max_reply_bytes */
    if (status != DM_EPROTO || !err)
        return false;
    if (err->kind == CHAIN_RPC_ERR_HTTP && err->http_status == 413)
        return true;
    if (err->kind != CHAIN_RPC_ERR_REMOTE && err->kind != CHAIN_RPC_ERR_HTTP)
        return false;
    if (err->code == -32005) /* "limit exceeded" (EIP-1474) */
        return true;
    char low[CHAIN_RPC_MSG_MAX];
    size_t i = 0;
    for (; err->message[i] && i < sizeof low - 1; i++)
        low[i] = (char)tolower((unsigned char)err->message[i]);
    low[i] = 0;
    for (const char *const *w = TOO_LARGE_WORDS; *w; w++)
        if (strstr(low, *w))
            return true;
    return false;
}

typedef struct {
    chain_rpc_t *rpc;
    chain_trail_query q;
    uint8_t contract[20];
    uint8_t sender[20];
    uint8_t sig[32];
    uint8_t sender_topic[32];
    chain_trail_result *res;
    uint64_t page;    /* current page size in blocks, >= 1 */
    uint64_t page_hi; /* last block of the page in flight */
    chain_trail_cb cb;
    void *arg;
} trail_req;

static void finish(trail_req *t, int status)
{
    chain_trail_cb cb = t->cb;
    void *arg = t->arg;
    chain_trail_result *res = t->res;
    free(t);
    cb(status, res, arg);
}

static void rpc_failed(trail_req *t, const char *method, int status, const chain_rpc_error *err)
{
    const char *detail = err && err->message[0] ? err->message : "";
    if (err && err->kind == CHAIN_RPC_ERR_HTTP)
        msgf(t->res->msg, "%s failed: HTTP %ld%s%s", method, err->http_status,
             detail[0] ? ": " : "", detail);
    else if (err && err->kind == CHAIN_RPC_ERR_REMOTE)
        msgf(t->res->msg, "%s failed: node error %lld: %s", method, (long long)err->code, detail);
    else
        msgf(t->res->msg, "%s failed: %s%s%s", method, dm_strerror(status), detail[0] ? ": " : "",
             detail);
    /* a malformed log structure is a parse error of the trail, named by chain_rpc */
    finish(t, status == DM_EPROTO && err && err->kind == CHAIN_RPC_ERR_RESULT ? DM_EPARSE
                                                                              : status);
}

static void logs_cb(chain_rpc_t *rpc, int status, const chain_rpc_logs *logs,
                    const chain_rpc_error *err, void *arg);

static void next_page(trail_req *t)
{
    chain_trail_result *res = t->res;
    uint32_t max_calls = t->q.max_calls ? t->q.max_calls : CHAIN_TRAIL_MAX_CALLS_DEFAULT;
    if (res->calls >= max_calls) {
        msgf(res->msg, "stopped after %u eth_getLogs calls at block %llu (of %llu..%llu)",
             res->calls, (unsigned long long)res->next_block, (unsigned long long)res->from_block,
             (unsigned long long)res->to_block);
        finish(t, DM_ELIMIT);
        return;
    }
    uint64_t lo = res->next_block;
    t->page_hi = res->to_block - lo < t->page ? res->to_block : lo + t->page - 1;
    chain_rpc_log_filter f = {.address = t->contract,
                              .topics = {t->sig, t->q.sender ? t->sender_topic : NULL},
                              .ntopics = t->q.sender ? 2 : 1,
                              .from_block = CHAIN_RPC_BLOCK(lo),
                              .to_block = CHAIN_RPC_BLOCK(t->page_hi)};
    res->calls++;
    int rc = chain_rpc_get_logs(t->rpc, &f, logs_cb, t);
    if (rc)
        rpc_failed(t, "eth_getLogs", rc, NULL);
}

static void logs_cb(chain_rpc_t *rpc, int status, const chain_rpc_logs *logs,
                    const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    trail_req *t = arg;
    chain_trail_result *res = t->res;
    uint64_t lo = res->next_block, span = t->page_hi - lo + 1;
    if (status != DM_OK) {
        if (span > 1 && chain_trail_refused_as_too_large(status, err)) {
            t->page = span / 2;
            res->splits++;
            next_page(t);
            return;
        }
        char method[96];
        snprintf(method, sizeof method, "eth_getLogs blocks %llu..%llu", (unsigned long long)lo,
                 (unsigned long long)t->page_hi);
        rpc_failed(t, method, status, err);
        return;
    }
    int rc = chain_trail_add_page(res, &t->q, lo, t->page_hi, logs);
    if (rc) {
        finish(t, rc);
        return;
    }
    if (t->page_hi == res->to_block) {
        res->next_block = res->to_block + 1;
        finish(t, DM_OK);
        return;
    }
    res->next_block = t->page_hi + 1;
    uint64_t first = t->q.page_blocks ? t->q.page_blocks : CHAIN_TRAIL_PAGE_DEFAULT;
    if (t->page < first)
        t->page = t->page > first / 2 ? first : t->page * 2;
    next_page(t);
}

static void head_cb(chain_rpc_t *rpc, int status, uint64_t head, const chain_rpc_error *err,
                    void *arg)
{
    (void)rpc;
    trail_req *t = arg;
    chain_trail_result *res = t->res;
    if (status != DM_OK) {
        rpc_failed(t, "eth_blockNumber", status, err);
        return;
    }
    res->head = head;
    if (t->q.from_block > head) {
        msgf(res->msg, "from block %llu is above the chain head %llu",
             (unsigned long long)t->q.from_block, (unsigned long long)head);
        finish(t, DM_EINVAL);
        return;
    }
    res->to_block = t->q.to_latest || t->q.to_block > head ? head : t->q.to_block;
    next_page(t);
}

int chain_trail_list(chain_rpc_t *rpc, const chain_trail_query *q, chain_trail_result *res,
                     chain_trail_cb cb, void *arg)
{
    if (!rpc || !q || !q->contract || !res || !cb ||
        (!q->to_latest && q->to_block < q->from_block))
        return DM_EINVAL;
    trail_req *t = calloc(1, sizeof *t);
    if (!t)
        return DM_ENOMEM;
    t->rpc = rpc;
    t->q = *q;
    memcpy(t->contract, q->contract, 20);
    t->q.contract = t->contract;
    if (q->sender) {
        memcpy(t->sender, q->sender, 20);
        memcpy(t->sender_topic + 12, q->sender, 20);
        t->q.sender = t->sender;
    }
    crypto_keccak256(t->sig, CHAIN_TRAIL_EVENT_SIG, strlen(CHAIN_TRAIL_EVENT_SIG));
    t->page = q->page_blocks ? q->page_blocks : CHAIN_TRAIL_PAGE_DEFAULT;
    t->res = res;
    t->cb = cb;
    t->arg = arg;
    memset(res, 0, sizeof *res);
    res->from_block = res->next_block = q->from_block;
    res->to_block = q->to_latest ? 0 : q->to_block;
    int rc = chain_rpc_block_number(rpc, head_cb, t);
    if (rc)
        free(t);
    return rc;
}

/* ------------------------------------------------------------------ blocking wrapper */

typedef struct {
    int status;
    bool done;
} trail_wait;

static void trail_done(int status, chain_trail_result *res, void *arg)
{
    (void)res;
    trail_wait *w = arg;
    w->status = status;
    w->done = true;
}

int chain_trail_run(const char *url, const chain_trail_query *q, const chain_rpc_opts *opts,
                    chain_trail_result *res)
{
    memset(res, 0, sizeof *res);
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return DM_EIO;
    chain_rpc_t *rpc = NULL;
    trail_wait w = {0};
    int rc = chain_rpc_create(&rpc, &loop, url, opts);
    if (rc == DM_OK) {
        if ((rc = chain_trail_list(rpc, q, res, trail_done, &w)) == DM_OK) {
            while (!w.done && uv_run(&loop, UV_RUN_ONCE))
                ;
            rc = w.done ? w.status : DM_EIO;
        }
        chain_rpc_close(rpc, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT); /* until every handle of the client is closed */
    } else {
        msgf(res->msg, "cannot use the RPC endpoint: %s", dm_strerror(rc));
    }
    if (uv_loop_close(&loop) != 0 && rc == DM_OK)
        rc = DM_EIO;
    return rc;
}

/* A JSON integer, or its decimal string above what a JSON integer of jansson holds (anyone
 * may anchor a count up to 2^64-1). */
static json_t *j_u64(uint64_t v)
{
    if (v <= (uint64_t)INT64_MAX)
        return json_integer((json_int_t)v);
    char s[24];
    snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    return json_string(s);
}

json_t *chain_trail_anchor_json(const chain_trail_anchor *a)
{
    char bh[67], tx[67], sender[43], root[65];
    hex0x(bh, a->block_hash, 32);
    hex0x(tx, a->tx_hash, 32);
    crypto_eth_address_format(a->sender, sender);
    dm_hex_encode(root, a->root, 32);
    return json_pack("{s:o, s:s, s:s, s:o, s:s, s:s, s:o, s:o}", "block_number",
                     j_u64(a->block_number), "block_hash", bh, "tx_hash", tx, "log_index",
                     j_u64(a->log_index), "sender", sender, "root", root, "count", j_u64(a->count),
                     "block_time", j_u64(a->block_time));
}
