/*
 * Anchor notices (node/node_share.h; docs/ANCHORING.md "Anchor notices"): the origin of a
 * batch tells every node where its shares were anchored, so that any node can serve their
 * proof bundles.
 *
 *   publish: batch recorded final -> [pool] body, RSA-PSS signature, frame -> every peer
 *   receive: ANCHOR -> origin is us? seen id? -> origin's key known? (else KEYREQ and wait,
 *            bounded) -> ready queue -> [pool] decode, signature, Merkle root, Ethereum
 *            binding, each leaf against the share when it is held, `rshare/` records in one
 *            write batch -> relay the frame as received to the other peers
 *
 * Everything here runs on the loop thread except the bodies of the thread-pool jobs, which
 * touch only their own job, the store, the key manager and the origin key (read-only).
 * Cheapest checks first, as for shares: a duplicate costs one SHA-256 and no RSA, and a
 * notice enters the seen list before verification but leaves it again if it fails, so a
 * forged copy cannot hide the genuine one. Notices are rare (one per anchored batch per
 * origin), so the bounds are small: a few waiting for a key, a few queued, two verifying.
 */
#include "node_share.h"
#include "node_share_internal.h"

#include "chain_anchor.h"
#include "crypto_eth.h"
#include "crypto_hash.h"
#include "crypto_merkle.h"
#include "crypto_rsa.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "dm_util.h"
#include "net_msg.h"
#include "store.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define NOTICE_SEEN_MAX 1024 /* notice ids remembered (a ring) */
#define NOTICE_WAIT_MAX 16   /* notices waiting for their origin's key */
#define NOTICE_WAIT_MS 30000
#define NOTICE_QUEUE_MAX 16 /* verified notices wait for one of the job slots */
#define NOTICE_JOBS_MAX 2
#define SCORE_NOTICE 50 /* an invalid notice, like an invalid share */
/* notices stored or published lately go again to every peer that becomes ready: a peer
 * that was away (or not yet connected after a restart) while they flew */
#define NOTICE_RECENT_MAX 16
#define NOTICE_RECENT_BYTES ((size_t)4 << 20)
#define NOTICE_RECENT_MS (10u * 60u * 1000u)

#define RC_INVALID 1 /* job outcome: the notice is wrong (why says what) */

#define META_BINDING "eth_binding"

typedef struct notice {
    struct notice *next;
    uv_work_t req;
    node_share_svc_t *s;
    uint8_t id[32]; /* SHA-256(body) */
    uint8_t origin[32];
    net_frame_t *frame; /* as received: relayed byte for byte */
    const uint8_t *body, *sig;
    size_t body_len, sig_len;
    peer_st *src;
    uint64_t since; /* uv_now when it began waiting for the key */
    const crypto_rsa_t *key;
    const uint8_t *spki; /* the origin's, for the records */
    size_t spki_len;
    /* the job's outcome */
    int rc;
    const char *why;
    bool verified;  /* the signature was checked */
    size_t written; /* records written */
    size_t shares;  /* items naming a share */
} notice;

typedef struct {
    notice *head, *tail;
    size_t n;
} notice_q;

struct share_notices {
    notice_q waiting; /* for the origin's key */
    notice_q ready;   /* for a job slot */
    unsigned jobs;
    uint8_t (*seen)[32];
    size_t seen_n, seen_head;
    struct {
        net_frame_t *f;
        uint64_t at; /* uv_now */
    } recent[NOTICE_RECENT_MAX]; /* oldest first */
    size_t nrecent, recent_bytes;
};

/* ---------------------------------------------------------------- small helpers */

static void nq_push(notice_q *q, notice *x)
{
    x->next = NULL;
    if (q->tail)
        q->tail->next = x;
    else
        q->head = x;
    q->tail = x;
    q->n++;
}

static notice *nq_pop(notice_q *q)
{
    notice *x = q->head;
    if (x) {
        q->head = x->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        x->next = NULL;
    }
    return x;
}

static void notice_free(notice *x)
{
    if (!x)
        return;
    if (x->frame)
        net_frame_release(x->frame);
    node_share__peer_unref(x->src);
    free(x);
}

static bool seen_find(const share_notices *n, const uint8_t id[32], size_t *at)
{
    for (size_t i = 0; i < n->seen_n; i++)
        if (!memcmp(n->seen[i], id, 32)) {
            if (at)
                *at = i;
            return true;
        }
    return false;
}

static void seen_add(share_notices *n, const uint8_t id[32])
{
    if (seen_find(n, id, NULL))
        return;
    memcpy(n->seen[n->seen_head], id, 32);
    n->seen_head = (n->seen_head + 1) % NOTICE_SEEN_MAX;
    if (n->seen_n < NOTICE_SEEN_MAX)
        n->seen_n++;
}

static void seen_remove(share_notices *n, const uint8_t id[32])
{
    size_t i;
    if (seen_find(n, id, &i))
        memset(n->seen[i], 0, 32); /* an all-zero SHA-256 never comes */
}

static void hex_into(char *out, const uint8_t *p, size_t n, bool prefix)
{
    if (prefix) {
        out[0] = '0';
        out[1] = 'x';
        out += 2;
    }
    dm_hex_encode(out, p, n);
}

static json_t *json_hex(const uint8_t *p, size_t n, bool prefix)
{
    char s[2 + 64 + 1];
    hex_into(s, p, n, prefix);
    return json_string(s);
}

static json_t *json_addr(const uint8_t a[20])
{
    char s[43];
    crypto_eth_address_format(a, s);
    return json_string(s);
}

static json_t *json_b64(const uint8_t *p, size_t n)
{
    dm_buf b = DM_BUF_INIT;
    json_t *j = NULL;
    if (dm_b64_encode(&b, p, n, DM_B64_STD) == DM_OK)
        j = json_stringn(b.len ? (const char *)b.data : "", b.len);
    dm_buf_free(&b);
    return j;
}

static json_t *json_u64(uint64_t v)
{
    return json_integer((json_int_t)v);
}

void node_share_rshare_key(uint8_t out[NODE_SHARE_RSHARE_KEY_LEN], const uint8_t id[32])
{
    memcpy(out, NODE_SHARE_RSHARE_PREFIX, 7);
    memcpy(out + 7, id, 32);
}

/* leaf = SHA256(0x00 || canonical(event)) (docs/ANCHORING.md, "Leaves") */
static int event_leaf(const json_t *event, uint8_t leaf[32])
{
    char *canon = json_dumps(event, JSON_COMPACT | JSON_SORT_KEYS);
    if (!canon)
        return DM_ENOMEM;
    crypto_merkle_leaf_hash(leaf, canon, strlen(canon));
    free(canon);
    return DM_OK;
}

/* ---------------------------------------------------------------- recent notices */

static size_t frame_len(const net_frame_t *f)
{
    size_t n = 0;
    net_frame_data(f, &n);
    return n;
}

static void recent_drop_oldest(share_notices *n)
{
    n->recent_bytes -= frame_len(n->recent[0].f);
    net_frame_release(n->recent[0].f);
    memmove(&n->recent[0], &n->recent[1], (n->nrecent - 1) * sizeof n->recent[0]);
    n->nrecent--;
}

static void recent_add(node_share_svc_t *s, net_frame_t *f)
{
    share_notices *n = node_share__notices(s);
    size_t len = frame_len(f);
    if (len > NOTICE_RECENT_BYTES)
        return;
    while (n->nrecent && (n->nrecent == NOTICE_RECENT_MAX ||
                          n->recent_bytes + len > NOTICE_RECENT_BYTES))
        recent_drop_oldest(n);
    n->recent[n->nrecent].f = net_frame_retain(f);
    n->recent[n->nrecent].at = uv_now(node_share__opts(s)->loop);
    n->nrecent++;
    n->recent_bytes += len;
}

void node_share__notices_peer_ready(node_share_svc_t *s, peer_st *ps)
{
    share_notices *n = node_share__notices(s);
    net_peer_t *p = node_share__peer_net(ps);
    uint64_t now = uv_now(node_share__opts(s)->loop);
    while (n->nrecent && now - n->recent[0].at >= NOTICE_RECENT_MS)
        recent_drop_oldest(n);
    for (size_t i = 0; p && i < n->nrecent; i++)
        if (net_peer_send(p, n->recent[i].f) == DM_OK)
            node_share__stats(s)->notices_replayed++;
}

/* ---------------------------------------------------------------- lifecycle */

int node_share__notices_create(share_notices **out)
{
    share_notices *n = calloc(1, sizeof *n);
    if (!n || !(n->seen = calloc(NOTICE_SEEN_MAX, 32))) {
        free(n);
        return DM_ENOMEM;
    }
    *out = n;
    return DM_OK;
}

void node_share__notices_close(node_share_svc_t *s)
{
    share_notices *n = node_share__notices(s);
    notice *x;
    while ((x = nq_pop(&n->waiting)))
        notice_free(x);
    while ((x = nq_pop(&n->ready)))
        notice_free(x);
}

void node_share__notices_free(share_notices *n)
{
    if (!n)
        return;
    notice *x;
    while ((x = nq_pop(&n->waiting)))
        notice_free(x);
    while ((x = nq_pop(&n->ready)))
        notice_free(x);
    while (n->nrecent)
        recent_drop_oldest(n);
    free(n->seen);
    free(n);
}

size_t node_share__notices_pending(const node_share_svc_t *s)
{
    const share_notices *n = node_share__notices((node_share_svc_t *)s);
    return n->waiting.n + n->ready.n + n->jobs;
}

/* ---------------------------------------------------------------- publishing */

typedef struct {
    uv_work_t req;
    node_share_svc_t *s;
    chain_anchor_final b; /* items point at `items` */
    chain_anchor_final_item *items;
    size_t shares;
    int rc;
    uint8_t id[32];
    dm_buf frame;
} publish_job;

static void publish_work(uv_work_t *req)
{
    publish_job *j = DM_CONTAINER_OF(req, publish_job, req);
    const node_share_opts *o = node_share__opts(j->s);
    dm_buf bind = DM_BUF_INIT, body = DM_BUF_INIT, sig = DM_BUF_INIT;
    net_anchor_item *it = calloc(j->b.count, sizeof *it);
    int rc = it ? DM_OK : DM_ENOMEM;
    if (!rc)
        rc = store_get(o->store, STORE_CF_META, META_BINDING, sizeof META_BINDING - 1, &bind);
    if (rc)
        goto out;
    net_anchor_body nb;
    memset(&nb, 0, sizeof nb);
    nb.chain_id = j->b.chain_id;
    memcpy(nb.contract, j->b.contract, 20);
    memcpy(nb.tx_hash, j->b.tx_hash, 32);
    nb.block_number = j->b.block_number;
    memcpy(nb.block_hash, j->b.block_hash, 32);
    nb.log_index = j->b.log_index;
    memcpy(nb.sender, j->b.sender, 20);
    nb.eth_binding = (net_slice){bind.data, bind.len};
    memcpy(nb.root, j->b.root, 32);
    nb.count = j->b.count;
    for (size_t i = 0; i < j->b.count; i++) {
        it[i].leaf = j->items[i].leaf;
        it[i].share_id = j->items[i].has_share ? j->items[i].share_id : NULL;
        it[i].audit_seq = j->items[i].audit_seq;
        it[i].entry_hash = j->items[i].entry_hash;
    }
    if ((rc = net_anchor_body_encode(&body, &nb, it)) ||
        (rc = crypto_rsa_sign(node_keys_rsa(o->keys), body.data, body.len, &sig)) ||
        (rc = crypto_sha256(j->id, body.data, body.len)))
        goto out;
    rc = net_msg_encode_anchor(&j->frame, node_share__self(j->s), body.data, body.len, sig.data,
                               sig.len);
out:
    j->rc = rc;
    free(it);
    dm_buf_free(&bind);
    dm_buf_free(&body);
    dm_buf_free(&sig);
}

static void publish_done(uv_work_t *req, int status)
{
    publish_job *j = DM_CONTAINER_OF(req, publish_job, req);
    node_share_svc_t *s = j->s;
    const node_share_opts *o = node_share__opts(s);
    int rc = status ? DM_ECLOSED : j->rc;
    if (rc) {
        dm_log(DM_LOG_ERROR, "chain", "anchor notice for batch %llu not sent: %s",
               (unsigned long long)j->b.batch_id, dm_strerror(rc));
    } else if (!node_share__closing(s)) {
        seen_add(node_share__notices(s), j->id); /* echoes of it are duplicates */
        net_frame_t *f = net_frame_new(j->frame.data, j->frame.len);
        size_t peers = f && o->host ? net_host_broadcast(o->host, f, NULL) : 0;
        if (f)
            recent_add(s, f);
        net_frame_release(f);
        node_share__stats(s)->notices_sent++;
        dm_log(DM_LOG_INFO, "chain", "anchor notice for batch %llu (%zu shares) sent to %zu peers",
               (unsigned long long)j->b.batch_id, j->shares, peers);
    }
    dm_buf_free(&j->frame);
    free(j->items);
    free(j);
    node_share__job_end(s);
}

int node_share_anchor_notice_publish(node_share_svc_t *s, const chain_anchor_final *batch)
{
    if (!s || !batch || !batch->items || batch->count == 0 ||
        batch->count > NET_ANCHOR_MAX_ITEMS)
        return DM_EINVAL;
    if (node_share__closing(s))
        return DM_ECLOSED;
    size_t shares = 0;
    for (size_t i = 0; i < batch->count; i++)
        shares += batch->items[i].has_share;
    if (!shares)
        return DM_OK; /* nothing another node could serve */
    publish_job *j = calloc(1, sizeof *j);
    if (!j || !(j->items = malloc(batch->count * sizeof *j->items))) {
        free(j);
        return DM_ENOMEM;
    }
    j->s = s;
    j->b = *batch;
    memcpy(j->items, batch->items, batch->count * sizeof *j->items);
    j->b.items = j->items;
    j->shares = shares;
    if (uv_queue_work(node_share__opts(s)->loop, &j->req, publish_work, publish_done)) {
        free(j->items);
        free(j);
        return DM_EIO;
    }
    node_share__job_begin(s);
    return DM_OK;
}

/* ---------------------------------------------------------------- receiving: the job */

/* The origin's identity as a proof bundle's "origin" names it. */
static json_t *origin_json(const notice *x, const net_anchor_body *b)
{
    char id[65];
    dm_hex_encode(id, x->origin, 32);
    return json_pack("{s:s, s:o, s:o, s:o}", "node_id", id, "spki", json_b64(x->spki, x->spki_len),
                     "eth_address", json_addr(b->sender), "eth_binding",
                     json_b64(b->eth_binding.p, b->eth_binding.n));
}

/* One share's foreign anchor record (docs/ANCHORING.md, `rshare/<id>`). */
static json_t *item_record(const notice *x, const net_anchor_body *b, const net_anchor_item *it,
                           const crypto_merkle_proof *p, json_t *event, json_t *origin)
{
    json_t *sib = json_array();
    for (uint32_t k = 0; sib && k < p->len; k++)
        if (json_array_append_new(sib, json_hex(p->sib[k], 32, false))) {
            json_decref(sib);
            sib = NULL;
        }
    if (!sib)
        return NULL;
    json_t *rec = json_pack(
        "{s:o, s:o, s:o, s:{s:o, s:o, s:o, s:o}, s:{s:o, s:o, s:o, s:o, s:o}, s:o, s:o, s:O, s:o}",
        "leaf", json_hex(it->leaf, 32, false), "audit_seq", json_u64(it->audit_seq), "entry_hash",
        json_hex(it->entry_hash, 32, false), "merkle", "index", json_u64(p->index), "count",
        json_u64(p->count), "siblings", sib, "root", json_hex(b->root, 32, false), "anchor",
        "tx_hash", json_hex(b->tx_hash, 32, true), "block_number", json_u64(b->block_number),
        "block_hash", json_hex(b->block_hash, 32, true), "log_index", json_u64(b->log_index),
        "sender", json_addr(b->sender), "chain_id", json_u64(b->chain_id), "contract",
        json_addr(b->contract), "origin", origin, "notice", json_hex(x->id, 32, false));
    if (rec && event && json_object_set(rec, "event", event)) {
        json_decref(rec);
        rec = NULL;
    }
    return rec;
}

static bool same_str(const json_t *a, const json_t *b, const char *k)
{
    const char *x = json_string_value(json_object_get(a, k));
    const char *y = json_string_value(json_object_get(b, k));
    return x && y && !strcmp(x, y);
}

/*
 * Compare with what `rshare/<id>` already holds. DM_EEXIST: the same anchor, nothing to
 * write. DM_OK: write `rec`, which keeps a different earlier anchor under "previous" (an
 * origin never anchors a share twice, but if it did the records would say so).
 */
static int merge_previous(store_t *st, const uint8_t *key, size_t kl, json_t *rec)
{
    dm_buf v = DM_BUF_INIT;
    int rc = store_get(st, STORE_CF_ANCHORS, key, kl, &v);
    if (rc == DM_ENOTFOUND)
        return DM_OK;
    if (rc)
        return rc;
    json_t *old = json_loadb((const char *)v.data, v.len, 0, NULL);
    dm_buf_free(&v);
    if (!json_is_object(old)) {
        json_decref(old);
        return DM_OK; /* unreadable: replaced */
    }
    const json_t *oa = json_object_get(old, "anchor"), *na = json_object_get(rec, "anchor");
    const json_t *om = json_object_get(old, "merkle"), *nm = json_object_get(rec, "merkle");
    if (same_str(old, rec, "leaf") && same_str(oa, na, "tx_hash") && same_str(om, nm, "root") &&
        (json_object_get(old, "event") || !json_object_get(rec, "event"))) {
        json_decref(old);
        return DM_EEXIST;
    }
    rc = DM_OK;
    if (!same_str(oa, na, "tx_hash") || !same_str(om, nm, "root")) {
        json_t *prev = json_array(), *earlier = json_object_get(old, "previous");
        if (json_is_array(earlier))
            json_array_extend(prev, earlier);
        json_t *entry = json_pack("{s:O?, s:O?}", "merkle", om, "anchor", oa);
        if (!prev || !entry || json_array_append_new(prev, entry) ||
            json_object_set_new(rec, "previous", prev))
            rc = DM_ENOMEM;
        dm_log(DM_LOG_WARNING, "security",
               "a share's origin anchored it again under another root; kept as previous");
    }
    json_decref(old);
    return rc;
}

/*
 * The item's share, if held: it must come from the notice's origin and give the item's
 * leaf. *event is then the share's event (new reference), else NULL.
 */
static int item_event(notice *x, const net_anchor_item *it, json_t **event)
{
    *event = NULL;
    node_share_record sr;
    int rc = node_share_read(x->s, it->share_id, &sr);
    if (rc == DM_ENOTFOUND)
        return DM_OK;
    if (rc) {
        dm_log(DM_LOG_WARNING, "storage", "a stored share is unreadable (%s): its anchor record "
               "is kept without the event", dm_strerror(rc));
        return DM_OK;
    }
    if (memcmp(sr.f.origin, x->origin, 32)) {
        node_share_record_free(&sr);
        x->why = "it names a share of another origin";
        return RC_INVALID;
    }
    json_t *ev = node_share__event(&sr.f);
    node_share_record_free(&sr);
    uint8_t leaf[32];
    if (!ev || (rc = event_leaf(ev, leaf))) {
        json_decref(ev);
        return rc ? rc : DM_ENOMEM;
    }
    if (memcmp(leaf, it->leaf, 32)) {
        json_decref(ev);
        x->why = "a leaf does not match the share it names";
        return RC_INVALID;
    }
    *event = ev;
    return DM_OK;
}

/* dmnode-eth-binding-v1:<node id>:<EIP-55 sender>, signed by the origin key (node_keys). */
static int check_binding(const notice *x, const net_anchor_body *b)
{
    char id[65], addr[43];
    dm_hex_encode(id, x->origin, 32);
    crypto_eth_address_format(b->sender, addr);
    dm_buf msg = DM_BUF_INIT;
    int rc = dm_buf_printf(&msg, "dmnode-eth-binding-v1:%s:%s", id, addr);
    if (!rc)
        rc = crypto_rsa_verify(x->key, msg.data, msg.len, b->eth_binding.p, b->eth_binding.n);
    dm_buf_free(&msg);
    return rc;
}

static void verify_work(uv_work_t *req)
{
    notice *x = DM_CONTAINER_OF(req, notice, req);
    store_t *st = node_share__opts(x->s)->store;
    net_anchor_body b;
    net_anchor_item *it = NULL;
    uint8_t(*leaves)[32] = NULL;
    crypto_merkle_tree_t *tree = NULL;
    store_batch_t *sb = NULL;
    json_t *origin = NULL;
    int rc = net_anchor_body_decode(x->body, x->body_len, &b, NULL, 0);
    if (rc) {
        x->why = "its body is malformed";
        rc = RC_INVALID;
        goto out;
    }
    if (!(it = calloc(b.count, sizeof *it)) || !(leaves = calloc(b.count, 32))) {
        rc = DM_ENOMEM;
        goto out;
    }
    if ((rc = net_anchor_body_decode(x->body, x->body_len, &b, it, b.count)))
        goto out;
    rc = crypto_rsa_verify(x->key, x->body, x->body_len, x->sig, x->sig_len);
    x->verified = true;
    if (rc == DM_EBADSIG) {
        x->why = "its signature does not verify with the origin's key";
        rc = RC_INVALID;
    }
    if (rc)
        goto out;
    /* the records hold JSON integers: anything beyond int64 cannot be a real anchor */
    bool range = b.chain_id <= INT64_MAX && b.block_number <= INT64_MAX &&
                 b.log_index <= INT64_MAX && it[b.count - 1].audit_seq <= INT64_MAX;
    for (size_t i = 0; i < b.count; i++)
        memcpy(leaves[i], it[i].leaf, 32);
    uint8_t root[32];
    if ((rc = crypto_merkle_tree_build(&tree, (const uint8_t(*)[32])leaves, b.count)))
        goto out;
    crypto_merkle_tree_root(tree, root);
    if (!range || memcmp(root, b.root, 32)) {
        x->why = range ? "its Merkle root is not the root of its leaves" : "a number is out of range";
        rc = RC_INVALID;
        goto out;
    }
    rc = check_binding(x, &b);
    if (rc == DM_EBADSIG) {
        x->why = "the origin's key does not bind its node id to the sender";
        rc = RC_INVALID;
    }
    if (rc || (rc = store_batch_create(&sb)))
        goto out;
    if (!(origin = origin_json(x, &b))) {
        rc = DM_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < b.count; i++) {
        if (!it[i].share_id)
            continue;
        x->shares++;
        json_t *event = NULL;
        crypto_merkle_proof p;
        if ((rc = item_event(x, &it[i], &event)) || (rc = crypto_merkle_tree_proof(tree, i, &p)))
            goto out;
        json_t *rec = item_record(x, &b, &it[i], &p, event, origin);
        json_decref(event);
        uint8_t key[NODE_SHARE_RSHARE_KEY_LEN];
        node_share_rshare_key(key, it[i].share_id);
        char *txt = NULL;
        rc = rec ? merge_previous(st, key, sizeof key, rec) : DM_ENOMEM;
        if (!rc && !(txt = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS)))
            rc = DM_ENOMEM;
        json_decref(rec);
        if (!rc) {
            rc = store_batch_put(sb, STORE_CF_ANCHORS, key, sizeof key, txt, strlen(txt));
            x->written++;
        }
        free(txt);
        if (rc == DM_EEXIST)
            rc = DM_OK; /* already recorded */
        if (rc)
            goto out;
    }
    if (x->written)
        rc = store_write(st, sb);
out:
    if (rc)
        x->written = 0;
    x->rc = rc;
    json_decref(origin);
    store_batch_destroy(sb);
    crypto_merkle_tree_destroy(tree);
    free(leaves);
    free(it);
}

/* ---------------------------------------------------------------- receiving: the loop */

static void verify_kick(node_share_svc_t *s);

static void verify_done(uv_work_t *req, int status)
{
    notice *x = DM_CONTAINER_OF(req, notice, req);
    node_share_svc_t *s = x->s;
    share_notices *n = node_share__notices(s);
    node_share_stats *st = node_share__stats(s);
    const node_share_opts *o = node_share__opts(s);
    n->jobs--;
    int rc = status ? DM_ECLOSED : x->rc;
    char origin[17];
    dm_hex_encode(origin, x->origin, 8);
    net_peer_t *src = node_share__peer_net(x->src);
    if (x->verified)
        st->notices_verified++;
    if (rc == RC_INVALID) {
        st->notices_invalid++;
        seen_remove(n, x->id);
        dm_log(DM_LOG_WARNING, "security", "invalid anchor notice (origin %s...) from %s: %s",
               origin, src ? net_peer_node_id_hex(src) : "a closed peer", x->why);
        if (src)
            net_peer_misbehave(src, SCORE_NOTICE, true, "invalid anchor notice");
    } else if (rc) {
        seen_remove(n, x->id); /* may come again */
        if (rc != DM_ECLOSED)
            dm_log(DM_LOG_ERROR, "storage", "anchor notice (origin %s...) not recorded: %s %s",
                   origin, dm_strerror(rc), store_errmsg());
    } else if (!x->written) {
        st->notices_duplicate++;
    } else {
        st->notices_stored++;
        st->anchor_records += x->written;
        dm_log(DM_LOG_INFO, "chain", "anchor notice from origin %s...: %zu share records", origin,
               x->written);
        if (!node_share__closing(s)) {
            recent_add(s, x->frame);
            if (o->host && net_host_broadcast(o->host, x->frame, src) > 0)
                st->notices_relayed++;
        }
    }
    notice_free(x);
    verify_kick(s);
    node_share__job_end(s); /* last: it may finish a close */
}

static void verify_kick(node_share_svc_t *s)
{
    share_notices *n = node_share__notices(s);
    while (!node_share__closing(s) && n->jobs < NOTICE_JOBS_MAX && n->ready.n) {
        notice *x = nq_pop(&n->ready);
        if (uv_queue_work(node_share__opts(s)->loop, &x->req, verify_work, verify_done)) {
            seen_remove(n, x->id);
            node_share__stats(s)->notices_dropped++;
            notice_free(x);
            return;
        }
        n->jobs++;
        node_share__job_begin(s);
    }
}

/* A notice whose origin key is known goes to the job queue, if there is room. */
static void enqueue(node_share_svc_t *s, notice *x)
{
    share_notices *n = node_share__notices(s);
    if (n->ready.n >= NOTICE_QUEUE_MAX) {
        seen_remove(n, x->id);
        node_share__stats(s)->notices_dropped++;
        notice_free(x);
        return;
    }
    nq_push(&n->ready, x);
    verify_kick(s);
}

/* Keep the frame as received (relayed unchanged) and point body and sig into it. */
static bool notice_frame(notice *x, const uint8_t *frame, size_t flen, net_slice body,
                         net_slice sig)
{
    size_t boff, soff;
    if (frame && body.p >= frame && body.p + body.n <= frame + flen && sig.p >= frame &&
        sig.p + sig.n <= frame + flen) {
        x->frame = net_frame_new(frame, flen);
        boff = (size_t)(body.p - frame);
        soff = (size_t)(sig.p - frame);
    } else {
        /* a caller without the frame: encode one; the signature is last, after its bin
         * header (2 bytes up to 255 bytes, else 3), and the body comes right before */
        dm_buf b = DM_BUF_INIT;
        if (net_msg_encode_anchor(&b, x->origin, body.p, body.n, sig.p, sig.n) == DM_OK)
            x->frame = net_frame_new(b.data, b.len);
        soff = b.len - sig.n;
        boff = soff - (sig.n < 0x100 ? 2 : 3) - body.n;
        dm_buf_free(&b);
    }
    if (!x->frame)
        return false;
    size_t len;
    const uint8_t *d = net_frame_data(x->frame, &len);
    x->body = d + boff;
    x->sig = d + soff;
    x->body_len = body.n;
    x->sig_len = sig.n;
    return true;
}

void node_share__notices_on_msg(node_share_svc_t *s, peer_st *ps, const net_msg *m,
                                const uint8_t *frame, size_t frame_len)
{
    share_notices *n = node_share__notices(s);
    node_share_stats *st = node_share__stats(s);
    const net_slice body = m->u.anchor.body, sig = m->u.anchor.sig;
    st->notices_received++;
    uint8_t id[32];
    if (!memcmp(m->u.anchor.origin, node_share__self(s), 32) ||
        crypto_sha256(id, body.p, body.n) || seen_find(n, id, NULL)) {
        st->notices_duplicate++; /* our own come back, or seen already */
        return;
    }
    notice *x = calloc(1, sizeof *x);
    if (!x)
        return;
    x->s = s;
    memcpy(x->id, id, 32);
    memcpy(x->origin, m->u.anchor.origin, 32);
    if (!notice_frame(x, frame, frame_len, body, sig)) {
        free(x);
        return;
    }
    x->src = node_share__peer_ref(ps);
    seen_add(n, id);
    x->key = node_share__key(s, x->origin, &x->spki, &x->spki_len);
    if (x->key) {
        enqueue(s, x);
    } else if (n->waiting.n >= NOTICE_WAIT_MAX) {
        seen_remove(n, id);
        st->notices_dropped++;
        notice_free(x);
    } else {
        x->since = uv_now(node_share__opts(s)->loop);
        nq_push(&n->waiting, x);
        node_share__keyreq(s, ps, x->origin);
    }
}

void node_share__notices_key(node_share_svc_t *s, const uint8_t id[32])
{
    share_notices *n = node_share__notices(s);
    notice_q keep = {0};
    notice *x;
    while ((x = nq_pop(&n->waiting))) {
        if (memcmp(x->origin, id, 32) ||
            !(x->key = node_share__key(s, x->origin, &x->spki, &x->spki_len)))
            nq_push(&keep, x);
        else
            enqueue(s, x);
    }
    n->waiting = keep;
}

void node_share__notices_tick(node_share_svc_t *s, uint64_t now)
{
    share_notices *n = node_share__notices(s);
    notice_q keep = {0};
    notice *x;
    while ((x = nq_pop(&n->waiting))) {
        if (now - x->since < NOTICE_WAIT_MS) {
            nq_push(&keep, x);
            continue;
        }
        seen_remove(n, x->id);
        node_share__stats(s)->notices_dropped++;
        dm_log(DM_LOG_WARNING, "p2p", "anchor notice dropped: the origin's key never came");
        notice_free(x);
    }
    n->waiting = keep;
}

/* ---------------------------------------------------------------- reading records */

int node_share_anchor_record(node_share_svc_t *s, const uint8_t id[32], json_t **record,
                             json_t **origin)
{
    if (!s || !id || !record || !origin)
        return DM_EINVAL;
    *record = *origin = NULL;
    uint8_t key[NODE_SHARE_RSHARE_KEY_LEN];
    node_share_rshare_key(key, id);
    dm_buf v = DM_BUF_INIT;
    int rc = store_get(node_share__opts(s)->store, STORE_CF_ANCHORS, key, sizeof key, &v);
    if (rc) {
        dm_buf_free(&v);
        return rc;
    }
    json_t *o = json_loadb((const char *)v.data, v.len, JSON_REJECT_DUPLICATES, NULL);
    dm_buf_free(&v);
    json_t *org = json_object_get(o, "origin"), *event = json_object_get(o, "event");
    const char *onid = json_string_value(json_object_get(org, "node_id"));
    uint8_t oid[32];
    if (!json_is_object(o) || !json_is_object(org) || !onid || strlen(onid) != 64 ||
        dm_hex_decode(oid, 32, onid, 64)) {
        json_decref(o);
        return DM_ECORRUPT;
    }
    json_incref(event);
    if (!event) {
        /* the notice came before the share: rebuild its event now, as the origin did */
        node_share_record sr;
        if ((rc = node_share_read(s, id, &sr))) {
            json_decref(o);
            return rc == DM_ENOTFOUND ? DM_EAGAIN : rc;
        }
        bool ours = !memcmp(sr.f.origin, oid, 32);
        event = ours ? node_share__event(&sr.f) : NULL;
        node_share_record_free(&sr);
        uint8_t leaf[32], want[32];
        const char *lh = json_string_value(json_object_get(o, "leaf"));
        rc = !ours ? DM_ETAMPER : !event ? DM_ENOMEM : event_leaf(event, leaf);
        if (!rc && (!lh || strlen(lh) != 64 || dm_hex_decode(want, 32, lh, 64)))
            rc = DM_ECORRUPT;
        if (!rc && memcmp(leaf, want, 32))
            rc = DM_ETAMPER;
        if (rc) {
            json_decref(event);
            json_decref(o);
            return rc;
        }
    }
    static const char *const KEEP[] = {"leaf",  "audit_seq", "entry_hash", "merkle",
                                       "anchor", "chain_id", "contract"};
    json_t *r = json_object();
    rc = r && !json_object_set_new(r, "event", event) ? DM_OK : DM_ENOMEM;
    for (size_t i = 0; !rc && i < DM_ARRAY_LEN(KEEP); i++) {
        json_t *m = json_object_get(o, KEEP[i]);
        if (!m)
            rc = DM_ECORRUPT;
        else if (json_object_set(r, KEEP[i], m))
            rc = DM_ENOMEM;
    }
    if (!rc) {
        *record = r;
        *origin = json_incref(org);
    } else {
        json_decref(r);
    }
    json_decref(o);
    return rc;
}
