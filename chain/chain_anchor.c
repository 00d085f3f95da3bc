/*
 * The anchoring pipeline: outbox -> Merkle batch -> EIP-1559 anchor(root, count) ->
 * receipt, Anchored log and finality -> per-event anchor records (docs/ANCHORING.md).
 *
 * Shape: a state machine on the loop thread. Each step starts one RPC call or one store
 * job and continues in its callback; a failed call schedules the same step again on
 * `step_timer` with exponential backoff. Store jobs (forming a batch, persisting the
 * batch record, writing the final records) run on the libuv thread pool; while one runs
 * the loop side leaves the batch alone (phase gating), so the job may read it.
 *
 * RPC calls cannot be cancelled one by one (chain_rpc has no such call), so each carries a
 * small token; closing the anchorer detaches the tokens and their replies are dropped.
 */
#include "chain_anchor.h"

#include "chain_tx.h"
#include "crypto_mem.h"
#include "crypto_merkle.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "dm_util.h"
#include "store_keys.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOGC "chain"

const uint8_t chain_anchor_event_topic[32] = {
    0x0b, 0xc3, 0xd9, 0xa2, 0x27, 0xd5, 0x3e, 0x9d, 0xc5, 0xa0, 0x2f, 0x8e, 0xc5, 0xf5, 0xd4, 0x47,
    0xb0, 0x3b, 0x99, 0x18, 0x11, 0x3a, 0x4b, 0x9b, 0x10, 0x43, 0xf3, 0xc7, 0xfe, 0x4f, 0x24, 0xe4};

static const uint8_t anchor_selector[4] = {0xdb, 0x2c, 0x4a, 0xca};
static const uint8_t version_selector[4] = {0x54, 0xfd, 0x4d, 0x50};

#define KEY_BATCH_PREFIX "batch/"
#define KEY_EV_PREFIX "ev/"
#define KEY_SHARE_PREFIX "share/"

#define DEFAULT_BATCH_MAX 256u
#define DEFAULT_POLL_MS 500u
#define DEFAULT_RESUBMIT_MS 60000u
#define DEFAULT_REBROADCAST_MS 10000u
#define DEFAULT_RETRY_MIN_MS 500u
#define DEFAULT_RETRY_MAX_MS 30000u
#define DEFAULT_GAS_MARGIN 25u
#define GWEI 1000000000ull
#define DEFAULT_FEE_CAP_GWEI 1000ull
#define FALLBACK_GAS 100000u /* anchor() needs about 25 000 */
#define MAX_GAS 2000000u     /* beyond this a reverting anchor is a configuration error */
#define IDLE_SCAN_MS 1000u   /* look at the outbox at least this often without kicks */
#define MAX_PREV_HASHES 64u  /* fee-bumped versions remembered per nonce */
#define COUNT_LIMIT 65536u   /* outbox entries counted beyond a batch at each formation */

/* ------------------------------------------------------------------------------------ */

typedef enum {
    PH_NEW = 0,
    PH_CHECK,   /* chain id, contract */
    PH_IDLE,    /* no batch in flight */
    PH_FORM,    /* job: reading the outbox */
    PH_PREPARE, /* RPC: nonce, fees, gas; then signing */
    PH_PERSIST, /* job: writing the batch record */
    PH_SEND,    /* RPC: eth_sendRawTransaction */
    PH_WAIT,    /* polling receipts */
    PH_CONFIRM, /* mined: waiting for finality */
    PH_FINAL,   /* job: writing the records */
    PH_HALTED,
} phase_t;

typedef struct {
    uint64_t id;
    uint64_t *seqs;
    size_t count;
    uint8_t root[32];
    uint64_t created_ms; /* wall clock */
    uint32_t resubmits;
    /* the current transaction */
    uint64_t nonce;
    chain_u256 max_fee;
    chain_u256 prio;
    uint64_t gas;
    dm_buf raw;
    uint8_t hash[32];
    uint64_t sent_ms; /* wall clock when this version was signed */
    uint32_t bumps;
    uint8_t (*prev)[32]; /* earlier versions with the same nonce (may still be mined) */
    size_t nprev;
    bool sent_here; /* sent at least once by this process */
    bool reverted;  /* a version was mined and reverted: re-sign with more gas */
    /* where it was mined */
    bool mined;
    uint8_t mined_hash[32];
    uint64_t block_number;
    uint8_t block_hash[32];
    uint64_t log_index;
} batch_t;

typedef struct call {
    struct call *next;
    chain_anchor_t *a; /* NULL once detached by close */
} call_t;

typedef enum { JOB_FORM, JOB_PERSIST, JOB_FINAL } job_kind;

typedef struct job {
    uv_work_t req;
    chain_anchor_t *a;
    job_kind kind;
    int rc;
    store_t *store;
    /* JOB_FORM */
    uint32_t max;
    uint64_t *seqs;
    size_t n;
    uint8_t root[32];
    uint64_t total;
    bool truncated; /* stopped counting at COUNT_LIMIT */
    uint64_t bad_seq;
    uint64_t queued_ns; /* uv_hrtime at queueing, and the work's own duration */
    uint64_t work_ns;
    /* JOB_PERSIST, JOB_FINAL: the batch is borrowed (the loop leaves it alone) */
    const batch_t *b;
    uint64_t next_batch;
    bool has_nonce;
    uint64_t next_nonce;
    uint64_t chain_id;
    uint8_t contract[20];
    uint8_t sender[20];
    uint64_t now_ms;
    uint64_t shares; /* JOB_FINAL: share index entries written */
    chain_anchor_final_item *fitems; /* JOB_FINAL with on_final: the batch's events */
} job_t;

typedef enum { PREP_NEW_NONCE, PREP_BUMP } prep_mode;

struct chain_anchor {
    uv_loop_t *loop;
    store_t *store;
    chain_rpc_t *rpc;
    chain_anchor_opts o;
    uv_timer_t step_timer;
    uv_timer_t flush_timer;
    int handles_open;
    void (*timer_step)(chain_anchor_t *a);
    phase_t phase;
    bool started;
    bool closing;
    chain_anchor_ready_cb ready_cb;
    void *ready_arg;
    bool ready_fired;
    chain_anchor_close_cb close_cb;
    void *close_arg;
    call_t *calls;
    job_t *job;
    uint64_t backoff_ms;
    bool failing; /* the last RPC failed (log the first failure loudly, then quietly) */
    /* the `state` record */
    uint64_t next_batch;
    bool has_nonce;
    uint64_t next_nonce;
    /* the batch in flight */
    batch_t *batch;
    prep_mode prep;
    chain_u256 base_fee;
    uint64_t tx_since;   /* uv_now when the current version was first sent */
    uint64_t last_send;  /* uv_now of the last send (0: never in this process) */
    uint64_t last_scan;  /* uv_now of the last outbox scan */
    uint64_t form_start; /* uv_now when the batch was formed */
    int nonce_low;       /* a send said "nonce too low": receipt rounds left before re-nonce */
    uint64_t gap_checked;   /* uv_now of the last nonce-gap check of the batch in flight */
    bool trust_chain_nonce; /* next nonce from the chain even below the stored one (gap) */
    bool bump_blocked;   /* the fee cap prevents a bump (logged once per version) */
    bool funds_warned;
    bool dirty;          /* kicked without a count: scan at the next flush */
    uint64_t form_kicks; /* events announced while a formation job ran */
    size_t poll_i;       /* 0: current hash, 1..nprev: earlier versions */
    uint64_t head;       /* confirmation: the head (or finalized) block number */
    chain_anchor_stats st;
};

static void step_check_chain(chain_anchor_t *a);
static void step_form(chain_anchor_t *a);
static void step_prep_nonce(chain_anchor_t *a);
static void step_prep_fees(chain_anchor_t *a);
static void step_send(chain_anchor_t *a);
static void step_poll(chain_anchor_t *a);
static void step_confirm(chain_anchor_t *a);
static void step_finalize(chain_anchor_t *a);
static void go_idle(chain_anchor_t *a);

/* ------------------------------------------------------------------------------------ */
/* small helpers */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void hex0x(char *out, const uint8_t *p, size_t n)
{
    out[0] = '0';
    out[1] = 'x';
    dm_hex_encode(out + 2, p, n);
}

size_t chain_anchor_key_batch(uint8_t *out, uint64_t id)
{
    size_t n = sizeof KEY_BATCH_PREFIX - 1;
    memcpy(out, KEY_BATCH_PREFIX, n);
    dm_put_u64be(out + n, id);
    return n + 8;
}

size_t chain_anchor_key_ev(uint8_t *out, uint64_t seq)
{
    size_t n = sizeof KEY_EV_PREFIX - 1;
    memcpy(out, KEY_EV_PREFIX, n);
    dm_put_u64be(out + n, seq);
    return n + 8;
}

size_t chain_anchor_key_share(uint8_t *out, const uint8_t share_id[32])
{
    size_t n = sizeof KEY_SHARE_PREFIX - 1;
    memcpy(out, KEY_SHARE_PREFIX, n);
    memcpy(out + n, share_id, 32);
    return n + 32;
}

void chain_anchor_calldata(uint8_t out[CHAIN_ANCHOR_CALLDATA_LEN], const uint8_t root[32],
                           uint64_t count)
{
    memcpy(out, anchor_selector, 4);
    memcpy(out + 4, root, 32);
    memset(out + 36, 0, 24);
    dm_put_u64be(out + 60, count);
}

static bool is_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static json_t *json_u64(uint64_t v)
{
    return json_integer((json_int_t)v);
}

static int json_get_u64(const json_t *o, const char *k, uint64_t *out)
{
    const json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return DM_ECORRUPT;
    *out = (uint64_t)json_integer_value(v);
    return DM_OK;
}

/* 64 hex characters (optionally "0x"-prefixed) into 32 bytes. */
static int json_get_hash(const json_t *o, const char *k, uint8_t out[32])
{
    const char *s = json_string_value(json_object_get(o, k));
    if (!s)
        return DM_ECORRUPT;
    if (s[0] == '0' && s[1] == 'x')
        s += 2;
    if (strlen(s) != 64 || dm_hex_decode(out, 32, s, 64))
        return DM_ECORRUPT;
    return DM_OK;
}

static int json_get_dec(const json_t *o, const char *k, chain_u256 *out)
{
    const char *s = json_string_value(json_object_get(o, k));
    if (!s || chain_u256_from_dec(out, s, strlen(s)))
        return DM_ECORRUPT;
    return DM_OK;
}

static json_t *json_dec(const chain_u256 *v)
{
    char d[CHAIN_U256_DEC_MAX];
    chain_u256_to_dec(v, d);
    return json_string(d);
}

static json_t *json_hex(const uint8_t *p, size_t n, bool prefix)
{
    char s[2 + 2 * 32 + 1];
    if (n > 32)
        return NULL;
    if (prefix)
        hex0x(s, p, n);
    else
        dm_hex_encode(s, p, n);
    return json_string(s);
}

static json_t *json_addr(const uint8_t a20[20])
{
    char s[43];
    crypto_eth_address_format(a20, s);
    return json_string(s);
}

/* json_object_set_new that remembers a failure instead of leaking or crashing. */
static void jset(json_t *o, const char *k, json_t *v, bool *ok)
{
    if (!v || json_object_set_new(o, k, v))
        *ok = false;
}

static void batch_free(batch_t *b)
{
    if (!b)
        return;
    free(b->seqs);
    dm_buf_free(&b->raw);
    free(b->prev);
    free(b);
}

/* ------------------------------------------------------------------------------------ */
/* records */

static char *state_json(uint64_t next_batch, bool has_nonce, uint64_t nonce)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    if (ok) {
        jset(o, "next_batch", json_u64(next_batch), &ok);
        if (has_nonce)
            jset(o, "nonce", json_u64(nonce), &ok);
    }
    char *s = ok ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

/* The `batch/<id>` record. `final` adds the anchor and "status":"final". */
static json_t *batch_to_json(const batch_t *b, bool final, uint64_t final_ms)
{
    bool ok = true;
    json_t *o = json_object(), *seqs = json_array(), *tx = json_object(), *prev = json_array();
    if (!o || !seqs || !tx || !prev) {
        json_decref(o);
        json_decref(seqs);
        json_decref(tx);
        json_decref(prev);
        return NULL;
    }
    for (size_t i = 0; i < b->count; i++)
        if (json_array_append_new(seqs, json_u64(b->seqs[i])))
            ok = false;
    for (size_t i = 0; i < b->nprev; i++)
        if (json_array_append_new(prev, json_hex(b->prev[i], 32, true)))
            ok = false;
    dm_buf rawhex = DM_BUF_INIT;
    if (chain_hex_data_append(&rawhex, b->raw.data, b->raw.len))
        ok = false;
    jset(tx, "nonce", json_u64(b->nonce), &ok);
    jset(tx, "raw", json_string(dm_buf_cstr(&rawhex)), &ok);
    dm_buf_free(&rawhex);
    jset(tx, "hash", json_hex(b->hash, 32, true), &ok);
    jset(tx, "max_fee", json_dec(&b->max_fee), &ok);
    jset(tx, "max_priority_fee", json_dec(&b->prio), &ok);
    jset(tx, "gas", json_u64(b->gas), &ok);
    jset(tx, "sent_ms", json_u64(b->sent_ms), &ok);
    jset(tx, "bumps", json_u64(b->bumps), &ok);
    jset(tx, "prev_hashes", prev, &ok);
    jset(o, "id", json_u64(b->id), &ok);
    jset(o, "first_seq", json_u64(b->count ? b->seqs[0] : 0), &ok);
    jset(o, "last_seq", json_u64(b->count ? b->seqs[b->count - 1] : 0), &ok);
    jset(o, "seqs", seqs, &ok);
    jset(o, "count", json_u64(b->count), &ok);
    jset(o, "root", json_hex(b->root, 32, false), &ok);
    jset(o, "created_ms", json_u64(b->created_ms), &ok);
    jset(o, "resubmits", json_u64(b->resubmits), &ok);
    jset(o, "tx", tx, &ok);
    jset(o, "status", json_string(final ? "final" : "pending"), &ok);
    if (final) {
        json_t *an = json_object();
        if (an) {
            jset(an, "tx_hash", json_hex(b->mined_hash, 32, true), &ok);
            jset(an, "block_number", json_u64(b->block_number), &ok);
            jset(an, "block_hash", json_hex(b->block_hash, 32, true), &ok);
            jset(an, "log_index", json_u64(b->log_index), &ok);
        }
        jset(o, "anchor", an, &ok);
        jset(o, "final_ms", json_u64(final_ms), &ok);
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Parse a stored batch record (pending) back into memory. */
static int batch_from_json(const uint8_t *v, size_t n, batch_t **out, bool *final)
{
    int rc = DM_ECORRUPT;
    batch_t *b = calloc(1, sizeof *b);
    json_t *o = json_loadb((const char *)v, n, JSON_REJECT_DUPLICATES, NULL);
    if (!b) {
        rc = DM_ENOMEM;
        goto out;
    }
    json_t *seqs = json_object_get(o, "seqs"), *tx = json_object_get(o, "tx");
    json_t *prev = json_object_get(tx, "prev_hashes");
    const char *status = json_string_value(json_object_get(o, "status"));
    const char *raw = json_string_value(json_object_get(tx, "raw"));
    uint64_t count, bumps, resub;
    if (!json_is_object(o) || !json_is_array(seqs) || !json_is_object(tx) || !status || !raw)
        goto out;
    if (json_get_u64(o, "id", &b->id) || json_get_u64(o, "count", &count) ||
        json_get_hash(o, "root", b->root) || json_get_u64(tx, "nonce", &b->nonce) ||
        json_get_hash(tx, "hash", b->hash) || json_get_dec(tx, "max_fee", &b->max_fee) ||
        json_get_dec(tx, "max_priority_fee", &b->prio) || json_get_u64(tx, "gas", &b->gas) ||
        json_get_u64(tx, "sent_ms", &b->sent_ms) || json_get_u64(tx, "bumps", &bumps))
        goto out;
    if (json_get_u64(o, "created_ms", &b->created_ms))
        b->created_ms = b->sent_ms;
    if (json_get_u64(o, "resubmits", &resub))
        resub = 0;
    b->bumps = (uint32_t)bumps;
    b->resubmits = (uint32_t)resub;
    if (count < 1 || count > CHAIN_ANCHOR_BATCH_MAX || json_array_size(seqs) != count)
        goto out;
    b->count = count;
    if (!(b->seqs = calloc(count, sizeof *b->seqs))) {
        rc = DM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *s = json_array_get(seqs, i);
        if (!json_is_integer(s) || json_integer_value(s) < 1)
            goto out;
        b->seqs[i] = (uint64_t)json_integer_value(s);
        if (i && b->seqs[i] <= b->seqs[i - 1])
            goto out;
    }
    if (prev) {
        size_t np = json_array_size(prev);
        if (!json_is_array(prev) || np > MAX_PREV_HASHES)
            goto out;
        if (np && !(b->prev = calloc(np, 32))) {
            rc = DM_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < np; i++) {
            const char *s = json_string_value(json_array_get(prev, i));
            if (!s || chain_hex_data_parse_fixed(s, strlen(s), b->prev[i], 32))
                goto out;
        }
        b->nprev = np;
    }
    if (chain_hex_data_parse(raw, strlen(raw), &b->raw) || b->raw.len == 0)
        goto out;
    if (!strcmp(status, "final"))
        *final = true;
    else if (!strcmp(status, "pending"))
        *final = false;
    else
        goto out;
    *out = b;
    b = NULL;
    rc = DM_OK;
out:
    json_decref(o);
    batch_free(b);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* reading outbox entries */

typedef struct {
    uint64_t seq;
    json_t *event; /* owned */
    char entry_hash[65];
    uint8_t leaf[32];
} outbox_ev;

/* Parse one outbox value under key `seq` and compute its leaf. */
static int outbox_parse(uint64_t seq, const uint8_t *v, size_t n, outbox_ev *e)
{
    json_t *o = json_loadb((const char *)v, n, JSON_REJECT_DUPLICATES, NULL);
    json_t *ev = json_object_get(o, "event");
    const char *eh = json_string_value(json_object_get(o, "entry_hash"));
    uint64_t s;
    int rc = DM_ECORRUPT;
    uint8_t tmp[32];
    if (!json_is_object(ev) || !eh || strlen(eh) != 64 || dm_hex_decode(tmp, 32, eh, 64) ||
        json_get_u64(o, "audit_seq", &s) || s != seq)
        goto out;
    char *canon = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
    if (!canon) {
        rc = DM_ENOMEM;
        goto out;
    }
    crypto_merkle_leaf_hash(e->leaf, canon, strlen(canon));
    free(canon);
    e->seq = seq;
    e->event = json_incref(ev);
    memcpy(e->entry_hash, eh, 65);
    rc = DM_OK;
out:
    json_decref(o);
    return rc;
}

/* ------------------------------------------------------------------------------------ */
/* store jobs (thread pool) */

static void form_work(job_t *j)
{
    store_iter_t *it = NULL;
    uint8_t(*leaves)[32] = NULL;
    int rc = store_iter_create(&it, j->store, STORE_CF_OUTBOX, NULL, 0, NULL, 0);
    if (rc)
        goto out;
    if (!(j->seqs = calloc(j->max, sizeof *j->seqs)) || !(leaves = calloc(j->max, 32))) {
        rc = DM_ENOMEM;
        goto out;
    }
    const uint8_t *k, *v;
    size_t kl, vl;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        uint64_t seq;
        if (store_key_u64_decode(k, kl, &seq)) {
            rc = DM_ECORRUPT;
            goto out;
        }
        j->total++;
        if (j->n >= j->max) {
            /* only counting from here on, and not a whole backlog each time */
            if (j->total >= (uint64_t)j->max + COUNT_LIMIT) {
                j->truncated = true;
                break;
            }
            continue;
        }
        outbox_ev e;
        memset(&e, 0, sizeof e);
        if ((rc = outbox_parse(seq, v, vl, &e))) {
            j->bad_seq = seq;
            goto out;
        }
        json_decref(e.event);
        j->seqs[j->n] = seq;
        memcpy(leaves[j->n], e.leaf, 32);
        j->n++;
    }
    if ((rc = store_iter_status(it)))
        goto out;
    if (j->n)
        rc = crypto_merkle_root(j->root, (const uint8_t(*)[32])leaves, j->n);
out:
    store_iter_destroy(it);
    free(leaves);
    j->rc = rc;
}

static void persist_work(job_t *j)
{
    store_batch_t *sb = NULL;
    char *bj = NULL, *sj = NULL;
    json_t *o = batch_to_json(j->b, false, 0);
    int rc = DM_ENOMEM;
    if (!o || !(bj = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS)) ||
        !(sj = state_json(j->next_batch, j->has_nonce, j->next_nonce)))
        goto out;
    if ((rc = store_batch_create(&sb)))
        goto out;
    uint8_t key[CHAIN_ANCHOR_KEY_MAX];
    size_t kl = chain_anchor_key_batch(key, j->b->id);
    if ((rc = store_batch_put(sb, STORE_CF_ANCHORS, key, kl, bj, strlen(bj))) ||
        (rc = store_batch_put(sb, STORE_CF_ANCHORS, CHAIN_ANCHOR_KEY_STATE,
                              sizeof CHAIN_ANCHOR_KEY_STATE - 1, sj, strlen(sj))))
        goto out;
    rc = store_write(j->store, sb);
out:
    store_batch_destroy(sb);
    json_decref(o);
    free(bj);
    free(sj);
    j->rc = rc;
}

/* One event's anchor record (docs/ANCHORING.md, `ev/<seq>`). */
static json_t *ev_record(const job_t *j, const outbox_ev *e, const crypto_merkle_proof *p)
{
    bool ok = true;
    json_t *o = json_object(), *m = json_object(), *an = json_object(), *sib = json_array();
    if (!o || !m || !an || !sib) {
        json_decref(o);
        json_decref(m);
        json_decref(an);
        json_decref(sib);
        return NULL;
    }
    for (uint32_t i = 0; i < p->len; i++)
        if (json_array_append_new(sib, json_hex(p->sib[i], 32, false)))
            ok = false;
    jset(m, "index", json_u64(p->index), &ok);
    jset(m, "count", json_u64(p->count), &ok);
    jset(m, "siblings", sib, &ok);
    jset(m, "root", json_hex(j->b->root, 32, false), &ok);
    jset(an, "tx_hash", json_hex(j->b->mined_hash, 32, true), &ok);
    jset(an, "block_number", json_u64(j->b->block_number), &ok);
    jset(an, "block_hash", json_hex(j->b->block_hash, 32, true), &ok);
    jset(an, "log_index", json_u64(j->b->log_index), &ok);
    jset(an, "sender", json_addr(j->sender), &ok);
    jset(o, "event", json_incref(e->event), &ok);
    jset(o, "leaf", json_hex(e->leaf, 32, false), &ok);
    jset(o, "audit_seq", json_u64(e->seq), &ok);
    jset(o, "entry_hash", json_string(e->entry_hash), &ok);
    jset(o, "merkle", m, &ok);
    jset(o, "anchor", an, &ok);
    jset(o, "chain_id", json_u64(j->chain_id), &ok);
    jset(o, "contract", json_addr(j->contract), &ok);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* If `ev/<seq>` already holds a record (it never should: an event leaves the outbox in the
 * batch that records it), keep what it said under "previous" so that an event anchored
 * under two roots says so. */
static int ev_keep_previous(store_t *s, const uint8_t *key, size_t kl, json_t *rec)
{
    dm_buf old = DM_BUF_INIT;
    int rc = store_get(s, STORE_CF_ANCHORS, key, kl, &old);
    if (rc == DM_ENOTFOUND)
        return DM_OK;
    if (rc)
        return rc;
    json_t *o = json_loadb((const char *)old.data, old.len, 0, NULL);
    dm_buf_free(&old);
    json_t *prev = json_array();
    rc = DM_ENOMEM;
    if (prev) {
        json_t *earlier = json_object_get(o, "previous");
        if (json_is_array(earlier))
            json_array_extend(prev, earlier);
        json_t *entry = json_pack("{s:O?, s:O?}", "merkle", json_object_get(o, "merkle"), "anchor",
                                  json_object_get(o, "anchor"));
        if (entry && !json_array_append_new(prev, entry) &&
            !json_object_set_new(rec, "previous", prev))
            rc = DM_OK;
        else if (!entry)
            json_decref(prev);
    }
    json_decref(o);
    dm_log(DM_LOG_WARNING, LOGC, "audit event already had an anchor record; kept as previous");
    return rc;
}

/* The share a data_share event names. */
static bool ev_share_id(const json_t *event, uint8_t id[32])
{
    const char *type = json_string_value(json_object_get(event, "event_type"));
    const char *sid = json_string_value(json_object_get(event, "share_id"));
    return type && !strcmp(type, "data_share") && sid && strlen(sid) == 64 &&
           !dm_hex_decode(id, 32, sid, 64);
}

/* What on_final hands on: the batch's events in leaf order. */
static int final_items(job_t *j, const outbox_ev *evs)
{
    size_t n = j->b->count;
    if (!(j->fitems = calloc(n, sizeof *j->fitems)))
        return DM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        chain_anchor_final_item *it = &j->fitems[i];
        memcpy(it->leaf, evs[i].leaf, 32);
        it->audit_seq = evs[i].seq;
        if (dm_hex_decode(it->entry_hash, 32, evs[i].entry_hash, 64))
            return DM_ECORRUPT;
        it->has_share = ev_share_id(evs[i].event, it->share_id);
    }
    return DM_OK;
}

static void final_work(job_t *j)
{
    const batch_t *b = j->b;
    outbox_ev *evs = calloc(b->count, sizeof *evs);
    uint8_t(*leaves)[32] = calloc(b->count, 32);
    crypto_merkle_tree_t *tree = NULL;
    store_batch_t *sb = NULL;
    json_t *bo = NULL;
    char *bj = NULL, *sj = NULL;
    dm_buf val = DM_BUF_INIT;
    int rc = DM_ENOMEM;
    if (!evs || !leaves)
        goto out;
    for (size_t i = 0; i < b->count; i++) {
        uint8_t key[STORE_KEY_U64_LEN];
        store_key_u64(key, b->seqs[i]);
        dm_buf_reset(&val);
        if ((rc = store_get(j->store, STORE_CF_OUTBOX, key, sizeof key, &val))) {
            if (rc == DM_ENOTFOUND)
                rc = DM_ECORRUPT;
            j->bad_seq = b->seqs[i];
            goto out;
        }
        if ((rc = outbox_parse(b->seqs[i], val.data, val.len, &evs[i]))) {
            j->bad_seq = b->seqs[i];
            goto out;
        }
        memcpy(leaves[i], evs[i].leaf, 32);
    }
    if ((rc = crypto_merkle_tree_build(&tree, (const uint8_t(*)[32])leaves, b->count)))
        goto out;
    uint8_t root[32];
    crypto_merkle_tree_root(tree, root);
    if (memcmp(root, b->root, 32)) {
        rc = DM_ECORRUPT; /* the outbox changed under a pending batch */
        goto out;
    }
    if (j->a->o.on_final && (rc = final_items(j, evs)))
        goto out;
    if ((rc = store_batch_create(&sb)))
        goto out;
    for (size_t i = 0; i < b->count; i++) {
        crypto_merkle_proof p;
        if ((rc = crypto_merkle_tree_proof(tree, i, &p)))
            goto out;
        json_t *rec = ev_record(j, &evs[i], &p);
        if (!rec) {
            rc = DM_ENOMEM;
            goto out;
        }
        uint8_t key[CHAIN_ANCHOR_KEY_MAX];
        size_t kl = chain_anchor_key_ev(key, b->seqs[i]);
        char *txt = NULL;
        rc = ev_keep_previous(j->store, key, kl, rec);
        if (!rc && !(txt = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS)))
            rc = DM_ENOMEM;
        json_decref(rec);
        if (!rc)
            rc = store_batch_put(sb, STORE_CF_ANCHORS, key, kl, txt, strlen(txt));
        free(txt);
        if (rc)
            goto out;
        /* the share index: only data_share events name a share */
        uint8_t id[32];
        if (ev_share_id(evs[i].event, id)) {
            uint8_t v8[8];
            dm_put_u64be(v8, b->seqs[i]);
            kl = chain_anchor_key_share(key, id);
            if ((rc = store_batch_put(sb, STORE_CF_ANCHORS, key, kl, v8, sizeof v8)))
                goto out;
            j->shares++;
        }
        uint8_t okey[STORE_KEY_U64_LEN];
        store_key_u64(okey, b->seqs[i]);
        if ((rc = store_batch_delete(sb, STORE_CF_OUTBOX, okey, sizeof okey)))
            goto out;
    }
    rc = DM_ENOMEM;
    if (!(bo = batch_to_json(b, true, j->now_ms)) ||
        !(bj = json_dumps(bo, JSON_COMPACT | JSON_SORT_KEYS)) ||
        !(sj = state_json(j->next_batch, j->has_nonce, j->next_nonce)))
        goto out;
    uint8_t key[CHAIN_ANCHOR_KEY_MAX];
    size_t kl = chain_anchor_key_batch(key, b->id);
    if ((rc = store_batch_put(sb, STORE_CF_ANCHORS, key, kl, bj, strlen(bj))) ||
        (rc = store_batch_put(sb, STORE_CF_ANCHORS, CHAIN_ANCHOR_KEY_STATE,
                              sizeof CHAIN_ANCHOR_KEY_STATE - 1, sj, strlen(sj))))
        goto out;
    rc = store_write(j->store, sb);
out:
    if (evs)
        for (size_t i = 0; i < b->count; i++)
            json_decref(evs[i].event);
    free(evs);
    free(leaves);
    crypto_merkle_tree_destroy(tree);
    store_batch_destroy(sb);
    json_decref(bo);
    free(bj);
    free(sj);
    dm_buf_free(&val);
    j->rc = rc;
}

static void job_work_cb(uv_work_t *req)
{
    job_t *j = DM_CONTAINER_OF(req, job_t, req);
    uint64_t t0 = uv_hrtime();
    switch (j->kind) {
    case JOB_FORM:
        form_work(j);
        break;
    case JOB_PERSIST:
        persist_work(j);
        break;
    case JOB_FINAL:
        final_work(j);
        break;
    }
    j->work_ns = uv_hrtime() - t0;
}

static void job_free(job_t *j)
{
    if (!j)
        return;
    free(j->seqs);
    free(j->fitems);
    free(j);
}

static void maybe_free(chain_anchor_t *a);
static void form_done(chain_anchor_t *a, job_t *j);
static void persist_done(chain_anchor_t *a, job_t *j);
static void final_done(chain_anchor_t *a, job_t *j);

static void job_after_cb(uv_work_t *req, int status)
{
    job_t *j = DM_CONTAINER_OF(req, job_t, req);
    chain_anchor_t *a = j->a;
    a->job = NULL;
    static const char *const names[] = {"form", "persist", "final"};
    dm_log(DM_LOG_DEBUG, LOGC, "anchor: %s job: %.2f ms of work, %.2f ms from queueing",
           names[j->kind], (double)j->work_ns / 1e6, (double)(uv_hrtime() - j->queued_ns) / 1e6);
    if (status == UV_ECANCELED && !j->rc)
        j->rc = DM_ECLOSED;
    if (a->closing) {
        job_free(j);
        maybe_free(a);
        return;
    }
    switch (j->kind) {
    case JOB_FORM:
        form_done(a, j);
        break;
    case JOB_PERSIST:
        persist_done(a, j);
        break;
    case JOB_FINAL:
        final_done(a, j);
        break;
    }
    job_free(j);
}

static job_t *job_new(chain_anchor_t *a, job_kind kind)
{
    job_t *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->a = a;
    j->kind = kind;
    j->store = a->store;
    j->chain_id = a->o.chain_id;
    memcpy(j->contract, a->o.contract, 20);
    memcpy(j->sender, a->o.sender, 20);
    j->now_ms = wall_ms();
    return j;
}

static int job_queue(chain_anchor_t *a, job_t *j)
{
    j->queued_ns = uv_hrtime();
    int uvrc = uv_queue_work(a->loop, &j->req, job_work_cb, job_after_cb);
    if (uvrc) {
        dm_log(DM_LOG_ERROR, LOGC, "anchor: uv_queue_work: %s", uv_strerror(uvrc));
        job_free(j);
        return DM_EIO;
    }
    a->job = j;
    return DM_OK;
}

/* ------------------------------------------------------------------------------------ */
/* control: timers, retries, halting */

static void step_timer_cb(uv_timer_t *t)
{
    chain_anchor_t *a = DM_CONTAINER_OF(t, chain_anchor_t, step_timer);
    void (*fn)(chain_anchor_t *) = a->timer_step;
    a->timer_step = NULL;
    if (fn && !a->closing && a->phase != PH_HALTED)
        fn(a);
}

static void schedule(chain_anchor_t *a, void (*fn)(chain_anchor_t *), uint64_t ms)
{
    a->timer_step = fn;
    uv_timer_start(&a->step_timer, step_timer_cb, ms, 0);
}

static void fire_ready(chain_anchor_t *a, int status)
{
    if (a->ready_fired)
        return;
    a->ready_fired = true;
    if (a->ready_cb)
        a->ready_cb(a, status, a->ready_arg);
}

static void halt(chain_anchor_t *a, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void halt(chain_anchor_t *a, int rc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dm_log(DM_LOG_ERROR, LOGC, "anchoring stopped: %s", msg);
    a->phase = PH_HALTED;
    a->st.halted = true;
    a->st.last_error = rc;
    a->timer_step = NULL;
    uv_timer_stop(&a->step_timer);
    uv_timer_stop(&a->flush_timer);
    fire_ready(a, rc);
}

/* A failed RPC or store step: try `fn` again after the backoff. */
static void retry(chain_anchor_t *a, void (*fn)(chain_anchor_t *), int rc, const char *what,
                  const chain_rpc_error *err)
{
    a->st.last_error = rc;
    if (err)
        a->st.rpc_errors++;
    a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : a->o.retry_min_ms;
    if (a->backoff_ms > a->o.retry_max_ms)
        a->backoff_ms = a->o.retry_max_ms;
    dm_log(a->failing ? DM_LOG_DEBUG : DM_LOG_WARNING, LOGC,
           "anchor: %s failed: %s%s%s; retrying in %" PRIu64 " ms", what, dm_err_name(rc),
           err && err->message[0] ? ": " : "", err ? err->message : "", a->backoff_ms);
    a->failing = true;
    schedule(a, fn, a->backoff_ms);
}

static void rpc_ok(chain_anchor_t *a)
{
    /* DEBUG: a step can fail after a successful call (a remote error), so this may repeat */
    if (a->failing)
        dm_log(DM_LOG_DEBUG, LOGC, "anchor: RPC endpoint answering again");
    a->failing = false;
    a->backoff_ms = 0;
}

/* ---- RPC call tokens ---- */

static call_t *call_new(chain_anchor_t *a)
{
    call_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->a = a;
    c->next = a->calls;
    a->calls = c;
    return c;
}

static void call_unlink(chain_anchor_t *a, call_t *c)
{
    for (call_t **pp = &a->calls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return;
        }
}

/* In a callback: the anchorer (NULL if it was closed meanwhile); frees the token. */
static chain_anchor_t *call_done(void *arg)
{
    call_t *c = arg;
    chain_anchor_t *a = c->a;
    if (a)
        call_unlink(a, c);
    free(c);
    return a;
}

/* After a synchronous failure to start a call (its callback never fires). */
static void call_abort(chain_anchor_t *a, call_t *c)
{
    call_unlink(a, c);
    free(c);
}

/* Start an RPC: `start` returns the chain_rpc_* result; on a synchronous failure the step
 * is retried later. Used through the START macro below. */
#define START(a, fn, what, expr)                                                                   \
    do {                                                                                           \
        call_t *c_ = call_new(a);                                                                  \
        int rc_ = c_ ? (expr) : DM_ENOMEM;                                                         \
        if (rc_) {                                                                                 \
            if (c_)                                                                                \
                call_abort(a, c_);                                                                 \
            retry(a, fn, rc_, what, NULL);                                                         \
        }                                                                                          \
    } while (0)
#define TOKEN c_

/* ------------------------------------------------------------------------------------ */
/* start-up checks */

static void check_contract_cb(chain_rpc_t *rpc, int status, const uint8_t *data, size_t n,
                              const chain_rpc_error *err, void *arg);
static void step_check_contract(chain_anchor_t *a);

static void check_chain_cb(chain_rpc_t *rpc, int status, uint64_t value, const chain_rpc_error *err,
                           void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    if (status) {
        retry(a, step_check_chain, status, "eth_chainId", err);
        return;
    }
    rpc_ok(a);
    if (value != a->o.chain_id) {
        halt(a, DM_ECONFIG,
             "wrong chain: the RPC endpoint reports chain id %" PRIu64
             " but chain.chain_id is %" PRIu64 "; refusing to anchor",
             value, a->o.chain_id);
        return;
    }
    step_check_contract(a);
}

static void step_check_chain(chain_anchor_t *a)
{
    a->phase = PH_CHECK;
    START(a, step_check_chain, "eth_chainId", chain_rpc_chain_id(a->rpc, check_chain_cb, TOKEN));
}

static void step_check_contract(chain_anchor_t *a)
{
    chain_rpc_call_msg m = {.to = a->o.contract, .data = version_selector, .data_len = 4};
    START(a, step_check_contract, "eth_call version()",
          chain_rpc_eth_call(a->rpc, &m, CHAIN_RPC_LATEST, check_contract_cb, TOKEN));
}

static void resume_or_idle(chain_anchor_t *a);

static void check_contract_cb(chain_rpc_t *rpc, int status, const uint8_t *data, size_t n,
                              const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    char addr[43];
    crypto_eth_address_format(a->o.contract, addr);
    if (status == DM_EPROTO && err->kind == CHAIN_RPC_ERR_REMOTE) {
        halt(a, DM_ECONFIG, "contract %s: version() failed: %s", addr, err->message);
        return;
    }
    if (status) {
        retry(a, step_check_contract, status, "eth_call version()", err);
        return;
    }
    rpc_ok(a);
    uint8_t one[32] = {0};
    one[31] = 1;
    if (n == 0) {
        halt(a, DM_ECONFIG, "no contract code at chain.contract %s on chain %" PRIu64, addr,
             a->o.chain_id);
        return;
    }
    if (n != 32 || memcmp(data, one, 32)) {
        halt(a, DM_ECONFIG, "chain.contract %s is not an AuditAnchor version 1 contract", addr);
        return;
    }
    a->st.ready = true;
    dm_log(DM_LOG_INFO, LOGC, "anchoring on chain %" PRIu64 " to contract %s", a->o.chain_id, addr);
    fire_ready(a, DM_OK);
    if (a->closing || a->phase == PH_HALTED)
        return;
    resume_or_idle(a);
}

/* ------------------------------------------------------------------------------------ */
/* forming a batch */

static void go_idle(chain_anchor_t *a)
{
    a->phase = PH_IDLE;
    a->st.in_flight = false;
}

static void step_form(chain_anchor_t *a)
{
    a->phase = PH_FORM;
    a->st.in_flight = true;
    a->last_scan = uv_now(a->loop);
    a->dirty = false;
    job_t *j = job_new(a, JOB_FORM);
    if (!j) {
        retry(a, step_form, DM_ENOMEM, "forming a batch", NULL);
        return;
    }
    j->max = a->o.batch_max_events;
    if (job_queue(a, j))
        retry(a, step_form, DM_EIO, "forming a batch", NULL);
}

static void form_done(chain_anchor_t *a, job_t *j)
{
    if (j->rc == DM_ECORRUPT) {
        halt(a, DM_ECORRUPT, "outbox entry %" PRIu64 " is unreadable", j->bad_seq);
        return;
    }
    if (j->rc) {
        retry(a, step_form, j->rc, "reading the outbox", NULL);
        return;
    }
    a->backoff_ms = 0;
    /* exact unless the count stopped at COUNT_LIMIT (then the larger of both estimates),
     * plus what was announced meanwhile (an over-estimate only costs one more scan) */
    uint64_t kicks = a->form_kicks;
    uint64_t total = j->total + kicks;
    a->form_kicks = 0;
    if (!j->truncated || total > a->st.pending_events)
        a->st.pending_events = total;
    if (j->n == 0) {
        go_idle(a);
        /* events committed after the scan's snapshot: as if kicked now */
        if (kicks && (a->o.batch_max_delay_ms == 0 || kicks >= a->o.batch_max_events))
            step_form(a);
        return;
    }
    batch_t *b = calloc(1, sizeof *b);
    if (!b) {
        retry(a, step_form, DM_ENOMEM, "forming a batch", NULL);
        return;
    }
    b->id = a->next_batch;
    b->seqs = j->seqs;
    j->seqs = NULL;
    b->count = j->n;
    memcpy(b->root, j->root, 32);
    b->created_ms = wall_ms();
    a->batch = b;
    a->form_start = uv_now(a->loop);
    dm_log(DM_LOG_DEBUG, LOGC,
           "anchor: batch %" PRIu64 ": %zu events (seq %" PRIu64 "..%" PRIu64 ")", b->id, b->count,
           b->seqs[0], b->seqs[b->count - 1]);
    a->prep = PREP_NEW_NONCE;
    step_prep_nonce(a);
}

/* ------------------------------------------------------------------------------------ */
/* preparing and signing a transaction */

static void prep_nonce_cb(chain_rpc_t *rpc, int status, uint64_t value, const chain_rpc_error *err,
                          void *arg);
static void prep_fees_cb(chain_rpc_t *rpc, int status, const chain_rpc_block *blk,
                         const chain_rpc_error *err, void *arg);
static void prep_gas_cb(chain_rpc_t *rpc, int status, uint64_t value, const chain_rpc_error *err,
                        void *arg);
static void step_prep_gas(chain_anchor_t *a);
static void sign_and_persist(chain_anchor_t *a, uint64_t nonce, const chain_u256 *max_fee,
                             const chain_u256 *prio, uint64_t gas);

static void step_prep_nonce(chain_anchor_t *a)
{
    a->phase = PH_PREPARE;
    START(a, step_prep_nonce, "eth_getTransactionCount",
          chain_rpc_get_transaction_count(a->rpc, a->o.sender, CHAIN_RPC_PENDING, prep_nonce_cb,
                                          TOKEN));
}

static void prep_nonce_cb(chain_rpc_t *rpc, int status, uint64_t value, const chain_rpc_error *err,
                          void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    if (status) {
        retry(a, step_prep_nonce, status, "eth_getTransactionCount", err);
        return;
    }
    rpc_ok(a);
    uint64_t nonce = value;
    if (a->trust_chain_nonce) {
        /* a nonce gap was found: the chain lost transactions the stored nonce counts */
        a->trust_chain_nonce = false;
        a->next_nonce = value;
    } else if (a->has_nonce && a->next_nonce > value) {
        dm_log(DM_LOG_WARNING, LOGC,
               "anchor: the endpoint reports nonce %" PRIu64 " below the stored %" PRIu64
               "; using the stored one",
               value, a->next_nonce);
        nonce = a->next_nonce;
    }
    a->batch->nonce = nonce;
    step_prep_fees(a);
}

static void step_prep_fees(chain_anchor_t *a)
{
    a->phase = PH_PREPARE;
    START(a, step_prep_fees, "eth_getBlockByNumber",
          chain_rpc_get_block(a->rpc, CHAIN_RPC_LATEST, prep_fees_cb, TOKEN));
}

/* max_fee = min(cap, 2 * base + prio), prio = min(prio, max_fee). */
static void fees_for(const chain_anchor_t *a, const chain_u256 *base, const chain_u256 *prio_in,
                     chain_u256 *max_fee, chain_u256 *prio)
{
    chain_u256 f;
    *prio = *prio_in;
    if (chain_u256_mul_u64(&f, base, 2) || chain_u256_add(&f, &f, prio) ||
        chain_u256_cmp(&f, &a->o.max_fee_cap_wei) > 0)
        f = a->o.max_fee_cap_wei;
    *max_fee = f;
    if (chain_u256_cmp(prio, max_fee) > 0)
        *prio = *max_fee;
}

/* v + v/8 + 1: at least 12.5% more (nodes want 10%). */
static int bumped(const chain_u256 *v, chain_u256 *out)
{
    chain_u256 eighth, one;
    chain_u256_from_u64(&one, 1);
    if (chain_u256_div_u64(&eighth, v, 8, NULL) || chain_u256_add(out, v, &eighth) ||
        chain_u256_add(out, out, &one))
        return DM_ERANGE;
    return DM_OK;
}

static void prep_fees_cb(chain_rpc_t *rpc, int status, const chain_rpc_block *blk,
                         const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    if (status) {
        retry(a, step_prep_fees, status, "eth_getBlockByNumber(latest)", err);
        return;
    }
    rpc_ok(a);
    if (!blk->has_base_fee) {
        halt(a, DM_EUNSUPPORTED, "the chain has no base fee (pre-London): EIP-1559 needed");
        return;
    }
    a->base_fee = blk->base_fee_per_gas;
    batch_t *b = a->batch;
    if (a->prep == PREP_NEW_NONCE) {
        step_prep_gas(a);
        return;
    }
    /* a fee bump of the same nonce */
    chain_u256 want_prio, want_max, new_prio, new_max, cur_max, cur_prio;
    if (bumped(&b->prio, &want_prio) || bumped(&b->max_fee, &want_max)) {
        want_prio = b->prio;
        want_max = b->max_fee;
    }
    if (chain_u256_cmp(&want_prio, &a->o.priority_fee_wei) < 0)
        want_prio = a->o.priority_fee_wei;
    fees_for(a, &a->base_fee, &want_prio, &cur_max, &cur_prio);
    new_max = chain_u256_cmp(&cur_max, &want_max) > 0 ? cur_max : want_max;
    if (chain_u256_cmp(&new_max, &a->o.max_fee_cap_wei) > 0)
        new_max = a->o.max_fee_cap_wei;
    new_prio = want_prio;
    if (chain_u256_cmp(&new_prio, &new_max) > 0)
        new_prio = new_max;
    if (chain_u256_cmp(&new_max, &want_max) < 0 || chain_u256_cmp(&new_prio, &want_prio) < 0) {
        if (!a->bump_blocked) {
            char cap[CHAIN_U256_DEC_MAX];
            chain_u256_to_dec(&a->o.max_fee_cap_wei, cap);
            dm_log(DM_LOG_WARNING, LOGC,
                   "anchor: batch %" PRIu64 " unmined but its fee cannot be raised "
                   "(max fee cap %s wei); waiting",
                   b->id, cap);
        }
        a->bump_blocked = true;
        a->tx_since = uv_now(a->loop);
        a->phase = PH_WAIT;
        schedule(a, step_poll, a->o.poll_ms);
        return;
    }
    a->st.resubmits++;
    b->bumps++;
    sign_and_persist(a, b->nonce, &new_max, &new_prio, b->gas);
}

static void step_prep_gas(chain_anchor_t *a)
{
    batch_t *b = a->batch;
    uint8_t data[CHAIN_ANCHOR_CALLDATA_LEN];
    chain_anchor_calldata(data, b->root, b->count);
    chain_rpc_call_msg m = {
        .from = a->o.sender, .to = a->o.contract, .data = data, .data_len = sizeof data};
    START(a, step_prep_gas, "eth_estimateGas",
          chain_rpc_estimate_gas(a->rpc, &m, prep_gas_cb, TOKEN));
}

static void prep_gas_cb(chain_rpc_t *rpc, int status, uint64_t value, const chain_rpc_error *err,
                        void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    batch_t *b = a->batch;
    uint64_t gas;
    if (status == DM_EPROTO && err->kind == CHAIN_RPC_ERR_REMOTE) {
        /* e.g. a node that estimates with the account's (empty) balance */
        dm_log(DM_LOG_WARNING, LOGC, "anchor: eth_estimateGas refused (%s); using %u gas",
               err->message, FALLBACK_GAS);
        gas = FALLBACK_GAS;
    } else if (status) {
        retry(a, step_prep_gas, status, "eth_estimateGas", err);
        return;
    } else {
        gas = value + value * a->o.gas_margin_pct / 100;
        if (gas < 21000 || gas > MAX_GAS)
            gas = FALLBACK_GAS;
    }
    rpc_ok(a);
    /* a previous version reverted (out of gas?): never go below twice its gas */
    if (b->reverted && gas < b->gas * 2)
        gas = b->gas * 2;
    b->reverted = false;
    chain_u256 max_fee, prio;
    fees_for(a, &a->base_fee, &a->o.priority_fee_wei, &max_fee, &prio);
    if (chain_u256_cmp(&max_fee, &a->base_fee) < 0) {
        char base[CHAIN_U256_DEC_MAX], cap[CHAIN_U256_DEC_MAX];
        chain_u256_to_dec(&a->base_fee, base);
        chain_u256_to_dec(&a->o.max_fee_cap_wei, cap);
        dm_log(DM_LOG_WARNING, LOGC,
               "anchor: base fee %s wei is above the max fee cap %s wei: batch %" PRIu64
               " waits until it drops",
               base, cap, b->id);
    }
    sign_and_persist(a, b->nonce, &max_fee, &prio, gas);
}

static void persist_batch(chain_anchor_t *a);

static void sign_and_persist(chain_anchor_t *a, uint64_t nonce, const chain_u256 *max_fee,
                             const chain_u256 *prio, uint64_t gas)
{
    batch_t *b = a->batch;
    uint8_t data[CHAIN_ANCHOR_CALLDATA_LEN];
    chain_anchor_calldata(data, b->root, b->count);
    chain_tx1559 tx = {
        .chain_id = a->o.chain_id,
        .nonce = nonce,
        .max_priority_fee_per_gas = *prio,
        .max_fee_per_gas = *max_fee,
        .gas_limit = gas,
        .has_to = true,
        .data = data,
        .data_len = sizeof data,
    };
    memcpy(tx.to, a->o.contract, 20);
    uint8_t h[32], txh[32];
    crypto_eth_sig sig;
    dm_buf raw = DM_BUF_INIT;
    int rc = chain_tx_signing_hash(&tx, h);
    if (!rc)
        rc = a->o.sign(a->o.sign_arg, h, &sig);
    if (!rc)
        rc = chain_tx_encode_signed(&tx, &sig, &raw, txh);
    crypto_memzero(&sig, sizeof sig);
    if (rc) {
        dm_buf_free(&raw);
        dm_log(DM_LOG_ERROR, LOGC, "anchor: signing batch %" PRIu64 " failed: %s", b->id,
               dm_err_name(rc));
        /* start the preparation over after the backoff */
        retry(a, a->prep == PREP_NEW_NONCE ? step_prep_nonce : step_prep_fees, rc, "signing", NULL);
        return;
    }
    if (b->raw.len) {
        if (b->nonce == nonce) {
            /* keep the replaced version: it may still be the one that gets mined */
            if (b->nprev >= MAX_PREV_HASHES) {
                memmove(b->prev[0], b->prev[1], (b->nprev - 1) * 32);
                b->nprev--;
            }
            uint8_t(*np)[32] = realloc(b->prev, (b->nprev + 1) * 32);
            if (np) {
                b->prev = np;
                memcpy(b->prev[b->nprev++], b->hash, 32);
            }
        } else {
            b->nprev = 0; /* the old nonce was taken: its versions can no longer be mined */
        }
    }
    b->nonce = nonce;
    b->max_fee = *max_fee;
    b->prio = *prio;
    b->gas = gas;
    dm_buf_free(&b->raw);
    b->raw = raw;
    memcpy(b->hash, txh, 32);
    b->sent_ms = wall_ms();
    b->mined = false;
    a->bump_blocked = false;
    a->tx_since = 0;
    /* the state record: the next batch id and the next nonce are taken now */
    a->next_batch = b->id + 1 > a->next_batch ? b->id + 1 : a->next_batch;
    if (!a->has_nonce || a->next_nonce < nonce + 1)
        a->next_nonce = nonce + 1;
    a->has_nonce = true;
    persist_batch(a);
}

static void persist_batch(chain_anchor_t *a)
{
    a->phase = PH_PERSIST;
    job_t *j = job_new(a, JOB_PERSIST);
    if (!j) {
        retry(a, persist_batch, DM_ENOMEM, "writing the batch record", NULL);
        return;
    }
    j->b = a->batch;
    j->next_batch = a->next_batch;
    j->has_nonce = a->has_nonce;
    j->next_nonce = a->next_nonce;
    if (job_queue(a, j))
        retry(a, persist_batch, DM_EIO, "writing the batch record", NULL);
}

static void persist_done(chain_anchor_t *a, job_t *j)
{
    if (j->rc) {
        dm_log(DM_LOG_ERROR, LOGC, "anchor: writing batch %" PRIu64 ": %s %s", a->batch->id,
               dm_err_name(j->rc), store_errmsg());
        retry(a, persist_batch, j->rc, "writing the batch record", NULL);
        return;
    }
    a->backoff_ms = 0;
    step_send(a);
}

/* ------------------------------------------------------------------------------------ */
/* sending */

typedef enum { SEND_OTHER, SEND_KNOWN, SEND_NONCE_LOW, SEND_UNDERPRICED, SEND_FUNDS } send_reply;

static bool has_word(const char *lower, const char *w)
{
    return strstr(lower, w) != NULL;
}

/* Nodes word these replies differently (geth, erigon, nethermind, besu, anvil). */
static send_reply classify(const chain_rpc_error *err)
{
    char m[CHAIN_RPC_MSG_MAX];
    size_t i;
    for (i = 0; err->message[i] && i + 1 < sizeof m; i++)
        m[i] = (char)tolower((unsigned char)err->message[i]);
    m[i] = 0;
    if (has_word(m, "already known") || has_word(m, "already imported") ||
        has_word(m, "known transaction") || has_word(m, "alreadyknown") ||
        has_word(m, "already in the pool") || has_word(m, "already exists"))
        return SEND_KNOWN;
    if (has_word(m, "nonce too low") || has_word(m, "nonce is too low") ||
        has_word(m, "oldnonce") || has_word(m, "old nonce") ||
        has_word(m, "nonce has already been used") || has_word(m, "too low nonce"))
        return SEND_NONCE_LOW;
    if (has_word(m, "underpriced") || has_word(m, "fee too low"))
        return SEND_UNDERPRICED;
    if (has_word(m, "insufficient funds"))
        return SEND_FUNDS;
    return SEND_OTHER;
}

static void send_cb(chain_rpc_t *rpc, int status, const uint8_t *hash32, const chain_rpc_error *err,
                    void *arg);

static void step_send(chain_anchor_t *a)
{
    a->phase = PH_SEND;
    batch_t *b = a->batch;
    START(a, step_send, "eth_sendRawTransaction",
          chain_rpc_send_raw_transaction(a->rpc, b->raw.data, b->raw.len, send_cb, TOKEN));
}

static void sent(chain_anchor_t *a)
{
    batch_t *b = a->batch;
    uint64_t now = uv_now(a->loop);
    if (!b->sent_here) {
        b->sent_here = true;
        a->st.batches_sent++;
    }
    if (!a->tx_since)
        a->tx_since = now;
    a->last_send = now;
    a->phase = PH_WAIT;
    a->poll_i = 0;
    schedule(a, step_poll, a->o.poll_ms);
}

static void send_cb(chain_rpc_t *rpc, int status, const uint8_t *hash32, const chain_rpc_error *err,
                    void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    batch_t *b = a->batch;
    char hx[67];
    hex0x(hx, b->hash, 32);
    if (!status) {
        rpc_ok(a);
        if (memcmp(hash32, b->hash, 32))
            dm_log(DM_LOG_WARNING, LOGC, "anchor: the endpoint names tx %s differently", hx);
        dm_log(DM_LOG_DEBUG, LOGC,
               "anchor: batch %" PRIu64 " sent: tx %s nonce %" PRIu64 " gas %" PRIu64, b->id, hx,
               b->nonce, b->gas);
        sent(a);
        return;
    }
    if (status != DM_EPROTO || err->kind != CHAIN_RPC_ERR_REMOTE) {
        retry(a, step_send, status, "eth_sendRawTransaction", err);
        return;
    }
    rpc_ok(a);
    switch (classify(err)) {
    case SEND_KNOWN:
        sent(a);
        return;
    case SEND_NONCE_LOW:
        /* mined already (by us: fine), or the nonce was taken by another transaction */
        dm_log(DM_LOG_DEBUG, LOGC, "anchor: tx %s: %s; checking receipts", hx, err->message);
        if (!b->sent_here) {
            b->sent_here = true;
            a->st.batches_sent++;
        }
        a->last_send = uv_now(a->loop);
        if (!a->tx_since)
            a->tx_since = a->last_send;
        a->nonce_low = 2; /* two rounds: a receipt may lag behind the nonce a moment */
        a->phase = PH_WAIT;
        a->poll_i = 0;
        step_poll(a);
        return;
    case SEND_UNDERPRICED:
        dm_log(DM_LOG_INFO, LOGC, "anchor: tx %s: %s; raising fees", hx, err->message);
        a->prep = PREP_BUMP;
        step_prep_fees(a);
        return;
    case SEND_FUNDS:
        if (!a->funds_warned) {
            char addr[43];
            crypto_eth_address_format(a->o.sender, addr);
            dm_log(DM_LOG_ERROR, LOGC,
                   "anchor: account %s lacks funds for its anchoring transaction (%s); "
                   "will retry",
                   addr, err->message);
            a->funds_warned = true;
        }
        a->failing = true;
        retry(a, step_send, DM_ELIMIT, "eth_sendRawTransaction", err);
        return;
    case SEND_OTHER:
        break;
    }
    retry(a, step_send, status, "eth_sendRawTransaction", err);
}

/* ------------------------------------------------------------------------------------ */
/* waiting for the receipt */

static void poll_cb(chain_rpc_t *rpc, int status, const chain_rpc_receipt *r,
                    const chain_rpc_error *err, void *arg);

static const uint8_t *poll_hash(const chain_anchor_t *a, size_t i)
{
    const batch_t *b = a->batch;
    return i == 0 ? b->hash : b->prev[b->nprev - i]; /* newest versions first */
}

static void step_poll(chain_anchor_t *a)
{
    a->phase = PH_WAIT;
    START(a, step_poll, "eth_getTransactionReceipt",
          chain_rpc_get_receipt(a->rpc, poll_hash(a, a->poll_i), poll_cb, TOKEN));
}

/* The Anchored log of this batch in a receipt: emitted by the contract, topics [event,
 * sender, root], data (count, blockTime). */
static bool find_log(const chain_anchor_t *a, const chain_rpc_receipt *r, uint64_t *log_index)
{
    const batch_t *b = a->batch;
    uint8_t sender_word[32] = {0}, count_word[32] = {0};
    memcpy(sender_word + 12, a->o.sender, 20);
    dm_put_u64be(count_word + 24, b->count);
    for (size_t i = 0; i < r->nlogs; i++) {
        const chain_rpc_log *l = &r->logs[i];
        if (l->removed || memcmp(l->address, a->o.contract, 20) || l->ntopics != 3 ||
            memcmp(l->topics[0], chain_anchor_event_topic, 32) ||
            memcmp(l->topics[1], sender_word, 32) || memcmp(l->topics[2], b->root, 32) ||
            l->data_len != 64 || memcmp(l->data, count_word, 32))
            continue;
        *log_index = l->log_index;
        return true;
    }
    return false;
}

static void gap_cb(chain_rpc_t *rpc, int status, uint64_t value, const chain_rpc_error *err,
                   void *arg);

/* The batch stays unmined: is its nonce beyond the account's next one? That happens when
 * the chain lost transactions this node counted (a reorg deeper than finality, a chain
 * reset); the transaction could then never be mined. */
static void step_gap_check(chain_anchor_t *a)
{
    START(a, step_poll, "eth_getTransactionCount",
          chain_rpc_get_transaction_count(a->rpc, a->o.sender, CHAIN_RPC_PENDING, gap_cb, TOKEN));
}

static void renonce(chain_anchor_t *a);

static void gap_cb(chain_rpc_t *rpc, int status, uint64_t value, const chain_rpc_error *err,
                   void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    if (status) {
        retry(a, step_poll, status, "eth_getTransactionCount", err);
        return;
    }
    rpc_ok(a);
    batch_t *b = a->batch;
    if (value < b->nonce) {
        dm_log(DM_LOG_WARNING, LOGC,
               "anchor: batch %" PRIu64 " holds nonce %" PRIu64 " but the chain's next is %" PRIu64
               " (transactions this node counted are gone: a reorg beyond finality or a reset "
               "chain); re-signing with nonce %" PRIu64,
               b->id, b->nonce, value, value);
        a->st.nonce_gaps++;
        a->trust_chain_nonce = true;
        renonce(a);
        return;
    }
    step_poll(a);
}

static void renonce(chain_anchor_t *a)
{
    batch_t *b = a->batch;
    b->resubmits++;
    a->st.resubmits++;
    a->nonce_low = 0;
    a->prep = PREP_NEW_NONCE;
    step_prep_nonce(a);
}

/* A receipt for one of our versions: check it, then wait for finality. */
static void mined(chain_anchor_t *a, const chain_rpc_receipt *r)
{
    batch_t *b = a->batch;
    char hx[67];
    hex0x(hx, r->tx_hash, 32);
    a->nonce_low = 0;
    if (r->status != 1) {
        dm_log(DM_LOG_WARNING, LOGC,
               "anchor: tx %s of batch %" PRIu64 " reverted (gas %" PRIu64 " used of %" PRIu64
               "); re-signing with a new nonce",
               hx, b->id, r->gas_used, b->gas);
        if (b->gas * 2 > MAX_GAS) {
            halt(a, DM_ECONFIG, "anchor() keeps reverting at contract; check chain.contract");
            return;
        }
        b->resubmits++;
        b->reverted = true;
        a->st.resubmits++;
        a->prep = PREP_NEW_NONCE;
        /* the node may still show the reverted tx as pending for a moment */
        schedule(a, step_prep_nonce, a->o.retry_min_ms);
        return;
    }
    uint64_t li;
    if (!find_log(a, r, &li)) {
        char addr[43];
        crypto_eth_address_format(a->o.contract, addr);
        halt(a, DM_ECONFIG, "tx %s was mined without an Anchored log from %s", hx, addr);
        return;
    }
    if (b->mined && memcmp(b->block_hash, r->block_hash, 32)) {
        a->st.reorgs++;
        dm_log(DM_LOG_INFO, LOGC, "anchor: tx %s moved to block %" PRIu64 " (reorg)", hx,
               r->block_number);
    }
    b->mined = true;
    memcpy(b->mined_hash, r->tx_hash, 32);
    b->block_number = r->block_number;
    memcpy(b->block_hash, r->block_hash, 32);
    b->log_index = li;
    if (!a->o.use_finalized && a->o.confirmations <= 1) {
        step_finalize(a);
        return;
    }
    a->phase = PH_CONFIRM;
    schedule(a, step_confirm, a->o.poll_ms);
}

static void poll_cb(chain_rpc_t *rpc, int status, const chain_rpc_receipt *r,
                    const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    batch_t *b = a->batch;
    if (status == DM_OK) {
        rpc_ok(a);
        mined(a, r);
        return;
    }
    if (status != DM_ENOTFOUND) {
        retry(a, step_poll, status, "eth_getTransactionReceipt", err);
        return;
    }
    rpc_ok(a);
    if (++a->poll_i <= b->nprev) {
        step_poll(a); /* an earlier version may have been mined */
        return;
    }
    a->poll_i = 0;
    uint64_t now = uv_now(a->loop);
    if (a->nonce_low) {
        if (--a->nonce_low > 0) {
            schedule(a, step_poll, a->o.poll_ms); /* one more round first */
            return;
        }
        dm_log(DM_LOG_WARNING, LOGC,
               "anchor: nonce %" PRIu64 " of batch %" PRIu64
               " was used by another transaction; re-signing with a new nonce",
               b->nonce, b->id);
        renonce(a);
        return;
    }
    if (a->tx_since && now - a->tx_since >= a->o.resubmit_after_ms && !a->bump_blocked) {
        a->prep = PREP_BUMP;
        step_prep_fees(a);
        return;
    }
    if (a->tx_since && now - a->tx_since >= a->o.rebroadcast_ms &&
        now - a->gap_checked >= a->o.rebroadcast_ms) {
        a->gap_checked = now;
        step_gap_check(a);
        return;
    }
    if (now - a->last_send >= a->o.rebroadcast_ms) {
        /* dropped from the pool, or removed by a reorg: the same bytes again */
        a->st.rebroadcasts++;
        if (a->bump_blocked && a->tx_since && now - a->tx_since >= a->o.resubmit_after_ms)
            a->bump_blocked = false; /* try raising the fee again later */
        step_send(a);
        return;
    }
    schedule(a, step_poll, a->o.poll_ms);
}

/* ------------------------------------------------------------------------------------ */
/* finality */

static void confirm_head_cb(chain_rpc_t *rpc, int status, uint64_t value,
                            const chain_rpc_error *err, void *arg);
static void confirm_final_cb(chain_rpc_t *rpc, int status, const chain_rpc_block *blk,
                             const chain_rpc_error *err, void *arg);
static void confirm_receipt_cb(chain_rpc_t *rpc, int status, const chain_rpc_receipt *r,
                               const chain_rpc_error *err, void *arg);

static void step_confirm(chain_anchor_t *a)
{
    a->phase = PH_CONFIRM;
    if (a->o.use_finalized)
        START(a, step_confirm, "eth_getBlockByNumber(finalized)",
              chain_rpc_get_block(a->rpc, CHAIN_RPC_FINALIZED, confirm_final_cb, TOKEN));
    else
        START(a, step_confirm, "eth_blockNumber",
              chain_rpc_block_number(a->rpc, confirm_head_cb, TOKEN));
}

static void step_confirm_receipt(chain_anchor_t *a)
{
    START(a, step_confirm, "eth_getTransactionReceipt",
          chain_rpc_get_receipt(a->rpc, a->batch->mined_hash, confirm_receipt_cb, TOKEN));
}

static void confirm_head_cb(chain_rpc_t *rpc, int status, uint64_t value,
                            const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    if (status) {
        retry(a, step_confirm, status, "eth_blockNumber", err);
        return;
    }
    rpc_ok(a);
    a->head = value;
    step_confirm_receipt(a);
}

static void confirm_final_cb(chain_rpc_t *rpc, int status, const chain_rpc_block *blk,
                             const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    if (status == DM_ENOTFOUND) {
        a->head = 0; /* nothing finalized yet */
    } else if (status) {
        retry(a, step_confirm, status, "eth_getBlockByNumber(finalized)", err);
        return;
    } else {
        a->head = blk->number;
    }
    rpc_ok(a);
    step_confirm_receipt(a);
}

static void confirm_receipt_cb(chain_rpc_t *rpc, int status, const chain_rpc_receipt *r,
                               const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    chain_anchor_t *a = call_done(arg);
    if (!a)
        return;
    batch_t *b = a->batch;
    if (status == DM_ENOTFOUND) {
        /* removed by a reorg before finality: send it again at once */
        char hx[67];
        hex0x(hx, b->mined_hash, 32);
        dm_log(DM_LOG_WARNING, LOGC,
               "anchor: tx %s of batch %" PRIu64 " left the chain (block %" PRIu64
               " reorganised); resubmitting",
               hx, b->id, b->block_number);
        rpc_ok(a);
        a->st.reorgs++;
        b->mined = false;
        a->st.rebroadcasts++;
        step_send(a);
        return;
    }
    if (status) {
        retry(a, step_confirm, status, "eth_getTransactionReceipt", err);
        return;
    }
    rpc_ok(a);
    uint64_t old_block = b->block_number;
    uint8_t old_hash[32];
    memcpy(old_hash, b->block_hash, 32);
    mined(a, r); /* may reschedule, halt, or finalize (when confirmations <= 1) */
    if (a->phase != PH_CONFIRM || a->batch != b || !b->mined)
        return;
    if (b->block_number != old_block || memcmp(b->block_hash, old_hash, 32))
        return; /* moved: count again from the new block */
    bool final = a->o.use_finalized ? a->head >= b->block_number
                                    : a->head >= b->block_number &&
                                          a->head - b->block_number + 1 >= a->o.confirmations;
    if (final) {
        a->timer_step = NULL;
        uv_timer_stop(&a->step_timer);
        step_finalize(a);
    }
}

/* ------------------------------------------------------------------------------------ */
/* recording */

static void step_finalize(chain_anchor_t *a)
{
    a->phase = PH_FINAL;
    job_t *j = job_new(a, JOB_FINAL);
    if (!j) {
        retry(a, step_finalize, DM_ENOMEM, "writing the anchor records", NULL);
        return;
    }
    batch_t *b = a->batch;
    j->b = b;
    j->next_batch = a->next_batch;
    j->has_nonce = true;
    j->next_nonce = a->has_nonce && a->next_nonce > b->nonce + 1 ? a->next_nonce : b->nonce + 1;
    if (job_queue(a, j))
        retry(a, step_finalize, DM_EIO, "writing the anchor records", NULL);
}

static void final_done(chain_anchor_t *a, job_t *j)
{
    batch_t *b = a->batch;
    if (j->rc == DM_ECORRUPT) {
        halt(a, DM_ECORRUPT,
             "batch %" PRIu64 ": outbox entry %" PRIu64
             " is missing or altered (the root no longer matches)",
             b->id, j->bad_seq);
        return;
    }
    if (j->rc) {
        dm_log(DM_LOG_ERROR, LOGC, "anchor: recording batch %" PRIu64 ": %s %s", b->id,
               dm_err_name(j->rc), store_errmsg());
        retry(a, step_finalize, j->rc, "writing the anchor records", NULL);
        return;
    }
    a->backoff_ms = 0;
    a->has_nonce = true;
    a->next_nonce = j->next_nonce;
    char hx[67];
    hex0x(hx, b->mined_hash, 32);
    a->st.batches_final++;
    a->st.events_anchored += b->count;
    a->st.pending_events = a->st.pending_events > b->count ? a->st.pending_events - b->count : 0;
    a->st.has_last_tx = true;
    memcpy(a->st.last_tx_hash, b->mined_hash, 32);
    a->st.last_block = b->block_number;
    a->st.last_latency_ms = uv_now(a->loop) - a->form_start;
    dm_log(DM_LOG_INFO, LOGC,
           "anchored batch %" PRIu64 ": %zu events (seq %" PRIu64 "..%" PRIu64 ") in tx %s, block "
           "%" PRIu64,
           b->id, b->count, b->seqs[0], b->seqs[b->count - 1], hx, b->block_number);
    if (a->o.on_final && j->fitems) {
        chain_anchor_final fb = {.batch_id = b->id,
                                 .chain_id = a->o.chain_id,
                                 .block_number = b->block_number,
                                 .log_index = b->log_index,
                                 .count = b->count,
                                 .items = j->fitems};
        memcpy(fb.contract, a->o.contract, 20);
        memcpy(fb.sender, a->o.sender, 20);
        memcpy(fb.tx_hash, b->mined_hash, 32);
        memcpy(fb.block_hash, b->block_hash, 32);
        memcpy(fb.root, b->root, 32);
        a->o.on_final(a->o.on_final_arg, &fb);
    }
    batch_free(b);
    a->batch = NULL;
    go_idle(a);
    /* whatever arrived meanwhile has waited at least one anchoring: go on at once */
    if (a->st.pending_events > 0)
        step_form(a);
}

/* ------------------------------------------------------------------------------------ */
/* start, kick, flush */

static void resume_or_idle(chain_anchor_t *a)
{
    batch_t *b = a->batch;
    if (!b) {
        go_idle(a);
        step_form(a); /* whatever the outbox holds from before */
        return;
    }
    char hx[67];
    hex0x(hx, b->hash, 32);
    dm_log(DM_LOG_INFO, LOGC,
           "anchor: resuming batch %" PRIu64 " (%zu events): resending tx %s nonce %" PRIu64, b->id,
           b->count, hx, b->nonce);
    a->st.in_flight = true;
    a->form_start = uv_now(a->loop);
    a->tx_since = 0;
    step_send(a);
}

static void flush_cb(uv_timer_t *t)
{
    chain_anchor_t *a = DM_CONTAINER_OF(t, chain_anchor_t, flush_timer);
    if (a->closing || a->phase != PH_IDLE)
        return;
    if (a->st.pending_events > 0 || a->dirty || uv_now(a->loop) - a->last_scan >= IDLE_SCAN_MS)
        step_form(a);
}

void chain_anchor_kick(chain_anchor_t *a, size_t added)
{
    if (!a || a->closing)
        return;
    a->st.pending_events += added;
    if (a->phase == PH_FORM)
        a->form_kicks += added; /* maybe not in the job's snapshot: count them again */
    if (!added)
        a->dirty = true;
    if (a->phase != PH_IDLE)
        return;
    if (a->o.batch_max_delay_ms == 0 || a->st.pending_events >= a->o.batch_max_events)
        step_form(a);
}

/* Validate a resumed batch against its own raw transaction and the configuration. */
static int check_resumed(chain_anchor_t *a, const batch_t *b)
{
    chain_tx1559 tx;
    crypto_eth_sig sig;
    uint8_t h[32], data[CHAIN_ANCHOR_CALLDATA_LEN];
    if (chain_tx_decode_signed(b->raw.data, b->raw.len, &tx, &sig))
        return DM_ECORRUPT;
    chain_tx_hash(b->raw.data, b->raw.len, h);
    chain_anchor_calldata(data, b->root, b->count);
    if (memcmp(h, b->hash, 32) || tx.nonce != b->nonce || tx.gas_limit != b->gas ||
        tx.data_len != sizeof data || memcmp(tx.data, data, sizeof data))
        return DM_ECORRUPT;
    if (tx.chain_id != a->o.chain_id || !tx.has_to || memcmp(tx.to, a->o.contract, 20)) {
        char addr[43];
        crypto_eth_address_format(tx.to, addr);
        dm_log(DM_LOG_ERROR, LOGC,
               "anchor: pending batch %" PRIu64 " was signed for chain %" PRIu64
               " and contract %s, not the configured ones; finish it with the old "
               "configuration first",
               b->id, tx.chain_id, addr);
        return DM_ECONFIG;
    }
    return DM_OK;
}

static int load_state(chain_anchor_t *a)
{
    dm_buf v = DM_BUF_INIT, k = DM_BUF_INIT;
    json_t *o = NULL;
    int rc = store_get(a->store, STORE_CF_ANCHORS, CHAIN_ANCHOR_KEY_STATE,
                       sizeof CHAIN_ANCHOR_KEY_STATE - 1, &v);
    if (rc == DM_ENOTFOUND) {
        a->next_batch = 1;
        a->has_nonce = false;
    } else if (rc) {
        goto out;
    } else {
        rc = DM_ECORRUPT;
        o = json_loadb((const char *)v.data, v.len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(o) || json_get_u64(o, "next_batch", &a->next_batch) ||
            a->next_batch < 1)
            goto out;
        json_t *n = json_object_get(o, "nonce");
        if (n) {
            if (json_get_u64(o, "nonce", &a->next_nonce))
                goto out;
            a->has_nonce = true;
        }
    }
    dm_buf_reset(&v);
    rc = store_get_last(a->store, STORE_CF_ANCHORS, KEY_BATCH_PREFIX, sizeof KEY_BATCH_PREFIX - 1,
                        &k, &v);
    if (rc == DM_ENOTFOUND) {
        rc = DM_OK;
        goto out;
    }
    if (rc)
        goto out;
    batch_t *b = NULL;
    bool final = false;
    if (k.len != sizeof KEY_BATCH_PREFIX - 1 + 8 ||
        (rc = batch_from_json(v.data, v.len, &b, &final))) {
        rc = rc ? rc : DM_ECORRUPT;
        goto out;
    }
    if (b->id != dm_get_u64be(k.data + sizeof KEY_BATCH_PREFIX - 1)) {
        batch_free(b);
        rc = DM_ECORRUPT;
        goto out;
    }
    if (a->next_batch <= b->id)
        a->next_batch = b->id + 1;
    if (!a->has_nonce || a->next_nonce <= b->nonce) {
        a->next_nonce = b->nonce + 1;
        a->has_nonce = true;
    }
    if (final) {
        batch_free(b);
        rc = DM_OK;
        goto out;
    }
    if ((rc = check_resumed(a, b))) {
        batch_free(b);
        goto out;
    }
    b->sent_here = false;
    a->batch = b;
    rc = DM_OK;
out:
    if (rc == DM_ECORRUPT)
        dm_log(DM_LOG_ERROR, LOGC, "anchor: the anchoring state or batch record is unreadable");
    json_decref(o);
    dm_buf_free(&v);
    dm_buf_free(&k);
    return rc;
}

static void free_on_close(uv_handle_t *h)
{
    free(h->data);
}

int chain_anchor_create(chain_anchor_t **out, uv_loop_t *loop, store_t *store, chain_rpc_t *rpc,
                        const chain_anchor_opts *opts)
{
    *out = NULL;
    if (!loop || !store || !rpc || !opts || !opts->sign || opts->chain_id == 0 ||
        is_zero(opts->contract, 20) || is_zero(opts->sender, 20) ||
        opts->batch_max_events > CHAIN_ANCHOR_BATCH_MAX)
        return DM_EINVAL;
    chain_anchor_t *a = calloc(1, sizeof *a);
    if (!a)
        return DM_ENOMEM;
    a->loop = loop;
    a->store = store;
    a->rpc = rpc;
    a->o = *opts;
    chain_anchor_opts *o = &a->o;
    if (!o->batch_max_events)
        o->batch_max_events = DEFAULT_BATCH_MAX;
    if (!o->confirmations)
        o->confirmations = 1;
    if (!o->poll_ms)
        o->poll_ms = DEFAULT_POLL_MS;
    if (chain_u256_is_zero(&o->max_fee_cap_wei))
        chain_u256_from_u64(&o->max_fee_cap_wei, DEFAULT_FEE_CAP_GWEI * GWEI);
    if (chain_u256_is_zero(&o->priority_fee_wei))
        chain_u256_from_u64(&o->priority_fee_wei, GWEI);
    if (!o->resubmit_after_ms)
        o->resubmit_after_ms = DEFAULT_RESUBMIT_MS;
    if (!o->rebroadcast_ms)
        o->rebroadcast_ms = DEFAULT_REBROADCAST_MS;
    if (!o->retry_min_ms)
        o->retry_min_ms = DEFAULT_RETRY_MIN_MS;
    if (!o->retry_max_ms)
        o->retry_max_ms = DEFAULT_RETRY_MAX_MS;
    if (o->retry_max_ms < o->retry_min_ms)
        o->retry_max_ms = o->retry_min_ms;
    if (!o->gas_margin_pct)
        o->gas_margin_pct = DEFAULT_GAS_MARGIN;
    if (uv_timer_init(loop, &a->step_timer)) {
        free(a);
        return DM_EIO;
    }
    if (uv_timer_init(loop, &a->flush_timer)) {
        /* the first timer is a live handle now: free the struct in its close callback */
        a->step_timer.data = a;
        uv_close((uv_handle_t *)&a->step_timer, free_on_close);
        return DM_EIO;
    }
    a->handles_open = 2;
    a->phase = PH_NEW;
    *out = a;
    return DM_OK;
}

int chain_anchor_start(chain_anchor_t *a, chain_anchor_ready_cb cb, void *arg)
{
    if (!a || a->started || a->closing)
        return DM_EINVAL;
    int rc = load_state(a);
    if (rc)
        return rc;
    a->started = true;
    a->ready_cb = cb;
    a->ready_arg = arg;
    uint64_t period = a->o.batch_max_delay_ms ? a->o.batch_max_delay_ms : IDLE_SCAN_MS;
    uv_timer_start(&a->flush_timer, flush_cb, period, period);
    a->last_scan = uv_now(a->loop);
    step_check_chain(a);
    return DM_OK;
}

void chain_anchor_stats_get(const chain_anchor_t *a, chain_anchor_stats *out)
{
    *out = a->st;
}

/* ------------------------------------------------------------------------------------ */
/* closing */

static void maybe_free(chain_anchor_t *a)
{
    if (a->handles_open > 0 || a->job)
        return;
    chain_anchor_close_cb cb = a->close_cb;
    void *arg = a->close_arg;
    fire_ready(a, DM_ECLOSED);
    batch_free(a->batch);
    free(a);
    if (cb)
        cb(arg);
}

static void handle_closed(uv_handle_t *h)
{
    chain_anchor_t *a = h->data;
    a->handles_open--;
    maybe_free(a);
}

void chain_anchor_close(chain_anchor_t *a, chain_anchor_close_cb cb, void *arg)
{
    if (!a || a->closing)
        return;
    a->closing = true;
    a->close_cb = cb;
    a->close_arg = arg;
    for (call_t *c = a->calls; c; c = c->next)
        c->a = NULL;
    a->calls = NULL;
    a->step_timer.data = a;
    a->flush_timer.data = a;
    uv_close((uv_handle_t *)&a->step_timer, handle_closed);
    uv_close((uv_handle_t *)&a->flush_timer, handle_closed);
}

/* ------------------------------------------------------------------------------------ */
/* reading records (any thread) */

int chain_anchor_proof(store_t *store, uint64_t audit_seq, const uint8_t *share_id, json_t **record)
{
    *record = NULL;
    uint8_t key[CHAIN_ANCHOR_KEY_MAX];
    size_t kl;
    dm_buf v = DM_BUF_INIT;
    int rc;
    if (share_id) {
        kl = chain_anchor_key_share(key, share_id);
        if ((rc = store_get(store, STORE_CF_ANCHORS, key, kl, &v)))
            goto out;
        if (v.len != 8) {
            rc = DM_ECORRUPT;
            goto out;
        }
        audit_seq = dm_get_u64be(v.data);
        dm_buf_reset(&v);
    }
    kl = chain_anchor_key_ev(key, audit_seq);
    rc = store_get(store, STORE_CF_ANCHORS, key, kl, &v);
    if (rc == DM_ENOTFOUND && !share_id) {
        uint8_t ok[STORE_KEY_U64_LEN];
        store_key_u64(ok, audit_seq);
        dm_buf tmp = DM_BUF_INIT;
        if (store_get(store, STORE_CF_OUTBOX, ok, sizeof ok, &tmp) == DM_OK)
            rc = DM_EAGAIN;
        dm_buf_free(&tmp);
    }
    if (rc)
        goto out;
    json_t *o = json_loadb((const char *)v.data, v.len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        rc = DM_ECORRUPT;
        goto out;
    }
    *record = o;
out:
    dm_buf_free(&v);
    return rc;
}
