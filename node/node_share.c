/*
 * The share service (DESIGN.md 1, 6, 7, 8): local submissions, gossip intake,
 * anti-entropy, and the single commit pipeline that all of them end in.
 *
 * Everything here runs on the loop thread except the bodies of uv_queue_work
 * jobs, which touch only their own job (and the thread-safe store, key manager
 * and audit log). Stages and their bounds:
 *
 *   local submit -> fifo (seq order) --sign jobs--> commit queue
 *   network SHARE / SYNC_RESP -> seen-cache, store check, decode, conflict
 *       check -> [parked until the origin's key is known] -> verify queue
 *       --verify jobs--> commit queue
 *   commit queue --one commit job at a time (group commit)--> marks, acks, relay
 *
 * Why the local fifo: a local share's seq is fixed before it is signed, and
 * signing jobs run in parallel, so jobs can finish out of order. Shares enter
 * the commit queue strictly in seq order (the head of the fifo only leaves when
 * it is signed), so a failure never leaves a committed share above a gap: the
 * failed share and everything after it are failed and the seq is reused.
 *
 * Why the seen-cache entry is taken before verification and dropped again on a
 * bad signature: a second copy of a share that is still being verified must
 * not cost a second verification, but a forged signature on someone else's body
 * must not make us ignore the genuine copy later.
 */
#include "node_share.h"
#include "node_share_internal.h"

#include "crypto_hash.h"
#include "crypto_mem.h"
#include "crypto_rsa.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "dm_util.h"
#include "store_keys.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIGN_JOBS_MAX 3
#define VERIFY_JOBS_MAX 3
#define SERVE_JOBS_MAX 2
#define REMOTE_ITEMS_MAX 16384 /* network shares between intake and commit */
#define REMOTE_BYTES_MAX ((uint64_t)96 << 20)
#define LOCAL_BYTES_MAX ((uint64_t)128 << 20) /* local submissions not yet committed */
#define PARK_MAX 4096                         /* shares waiting for their origin's key */
#define PARK_TIMEOUT_MS 30000
#define KEYREQ_MAX 16 /* outstanding KEYREQs per peer */
#define KEYREQ_TIMEOUT_MS 10000
#define KEYDIR_MAX 65536 /* origin keys held in memory */
#define SYNC_TIMEOUT_MS 10000
#define SYNC_BACKOFF_MIN_MS 1000
#define SYNC_BACKOFF_MAX_MS 60000
#define SYNC_RESP_BYTES ((size_t)1 << 20) /* page budget; one share always fits */
#define TICK_MS 250

#define SCORE_INVALID 50     /* malformed or invalid body */
#define SCORE_BADSIG 50      /* signature does not verify */
#define SCORE_CONFLICT 20    /* second body for an (origin, seq) */
#define SCORE_SYNC 50        /* SYNC_RESP outside the requested origin/range */
#define SCORE_UNSOLICITED 10 /* a reply nobody asked for */

#define PEER_KEY_PREFIX "key/"
#define MARK_PREFIX "share_mark/"
#define MARK_PREFIX_LEN 11

/* internal commit outcomes besides DM_OK / DM_E* */
#define RC_DUP 1
#define RC_CONFLICT 2

enum { K_LOCAL, K_GOSSIP, K_SYNC };
enum { ST_QUEUED, ST_SIGNING, ST_DONE };

typedef struct {
    uint8_t id[32];
    crypto_rsa_t *rsa; /* owned unless own */
    dm_buf spki;
    bool own;
} keyent;

typedef struct {
    uint8_t origin[32];
    uint64_t hwm, max_seq, count;
} mark_t;

typedef struct item {
    struct item *next;
    uint8_t kind, state;
    bool verified; /* loop only: the signature was checked (a verify or commit job did it) */
    bool doomed;  /* loop only: failed because an earlier local share failed */
    int doom_rc;  /* loop only */
    int rc;       /* written by the job that owns the item */
    int vrc;      /* the signature check, when a commit job made it */
    size_t bytes; /* accounted against the pending-bytes bounds */
    uint8_t id[32];
    node_share_fields f; /* f.data is not kept (NULL) */
    const uint8_t *body, *sig;
    size_t body_len, sig_len;
    dm_buf buf;         /* LOCAL: body; SYNC and copied GOSSIP: body || sig */
    dm_buf sigbuf;      /* LOCAL: signature */
    net_frame_t *frame; /* GOSSIP: the frame as received, relayed as is */
    peer_st *src;       /* reference */
    uint64_t have;      /* peers (by slot) that sent us a copy: not relayed to */
    const keyent *key;
    uint64_t received_ms;
    uint64_t parked_at;
    node_share_submit_cb cb;
    void *arg;
} item;

typedef struct {
    item *head, *tail;
    size_t n;
} item_q;

struct peer_st {
    node_share_svc_t *s;
    net_peer_t *p; /* NULL once closed */
    int refs;
    int slot;             /* bit in item.have, -1 if none was free */
    peer_st *prev, *next; /* live peers */
    struct {
        uint8_t id[32];
        uint64_t at;
    } keyreq[KEYREQ_MAX];
    size_t nkeyreq;
    /* sync client */
    net_hwm_entry *wants;
    size_t nwants;
    bool req_out, req_stale;
    uint8_t req_origin[32];
    uint64_t req_from, req_at;
    uint32_t req_limit;
    bool cont;
    uint8_t cont_origin[32];
    uint64_t cont_from;
    uint32_t fails;
    uint64_t backoff_until;
    size_t sync_inflight;
    /* sync server */
    bool serving, serve_pending, waiting;
    uint8_t sv_origin[32];
    uint64_t sv_from;
    uint32_t sv_limit;
    peer_st *wait_next;
};

typedef struct {
    uint8_t key[32];
    uint32_t val; /* 0: empty */
} idslot;

typedef struct {
    idslot *slots;
    size_t cap, n;
} idmap;

/* Seen-cache: FIFO ring of ids plus a linear-probing index of ring positions.
 * The ring is calloc'd at full size but written in order, so only its used part
 * is resident; the index grows with the ids it holds (load <= 1/2), because a
 * hash index is touched everywhere at once and would cost its full size. */
typedef struct {
    uint8_t (*ring)[32];
    size_t cap, head, filled;
    uint32_t *tab; /* ring position + 1; 0 empty */
    size_t mask, n, tmax;
} seen_cache;

typedef struct {
    uv_work_t req;
    node_share_svc_t *s;
    size_t n;
    item *items[];
} batch_job;

typedef struct {
    uint32_t mark; /* index into s->marks, or UINT32_MAX for a new origin */
    uint8_t origin[32];
    uint64_t hwm, max_seq, count; /* in: current; out: after the batch */
} mark_upd;

typedef struct {
    uv_work_t req;
    node_share_svc_t *s;
    int rc;
    size_t nmarks;
    mark_upd *marks;
    size_t n;
    item *items[];
} commit_job;

typedef struct {
    uv_work_t req;
    node_share_svc_t *s;
    peer_st *ps;
    uint8_t origin[32];
    uint64_t from;
    uint32_t limit;
    size_t count;
    int rc;
    dm_buf out;
} serve_job;

struct node_share_svc {
    node_share_opts o;
    uint8_t self[32];
    uv_timer_t tick;
    bool tick_closed, closing, freed;
    void (*close_cb)(void *arg);
    void *close_arg;
    size_t jobs;
    uint64_t rng;
    /* local */
    item_q fifo;
    item *sign_cursor;
    unsigned sign_jobs;
    uint64_t own_next;
    uint64_t local_bytes;
    /* remote */
    item_q verify_q, parked;
    unsigned verify_jobs;
    size_t verifying;
    size_t remote_items;
    uint64_t remote_bytes;
    /* commit */
    item_q commit_q;
    bool committing;
    size_t commit_n;
    /* sync serving */
    unsigned serve_jobs;
    peer_st *wait_head, *wait_tail;
    peer_st *peers;
    uint64_t slots; /* peer slots in use (item.have) */
    uint64_t last_hwm;
    size_t hwm_rotate;
    /* directories */
    seen_cache seen;
    struct {
        struct item **tab; /* shares in the pipeline, by id */
        size_t mask, n;
    } pins;
    idmap keymap;
    keyent **keys;
    size_t nkeys, capkeys;
    idmap markmap;
    mark_t *marks;
    size_t nmarks, capmarks;
    uint64_t salt;
    dm_buf tmp;
    node_share_stats st;
    share_notices *notices; /* anchor notices (node_share_anchor.c) */
};

static void sign_kick(node_share_svc_t *s);
static void verify_kick(node_share_svc_t *s);
static void commit_kick(node_share_svc_t *s);
static void sync_drive(node_share_svc_t *s, peer_st *ps);
static void maybe_finish_close(node_share_svc_t *s);

/* ---------------------------------------------------------------- utils */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* Ids are SHA-256 outputs, but a peer can grind them: key the index with a
 * per-process secret so that clustering attacks need to guess it. */
static size_t id_hash(const node_share_svc_t *s, const uint8_t id[32])
{
    uint64_t x;
    memcpy(&x, id, 8);
    return (size_t)mix64(x ^ s->salt);
}

static uint64_t rnd(node_share_svc_t *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static void q_push(item_q *q, item *it)
{
    it->next = NULL;
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    q->n++;
}

static item *q_pop(item_q *q)
{
    item *it = q->head;
    if (it) {
        q->head = it->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        it->next = NULL;
    }
    return it;
}

/* ---------------------------------------------------------------- idmap */

static int idmap_grow(const node_share_svc_t *s, idmap *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    idslot *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return DM_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].val)
            continue;
        size_t j = id_hash(s, m->slots[i].key) & (ncap - 1);
        while (ns[j].val)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return DM_OK;
}

static uint32_t idmap_get(const node_share_svc_t *s, const idmap *m, const uint8_t id[32])
{
    if (!m->cap)
        return 0;
    size_t j = id_hash(s, id) & (m->cap - 1);
    while (m->slots[j].val) {
        if (memcmp(m->slots[j].key, id, 32) == 0)
            return m->slots[j].val;
        j = (j + 1) & (m->cap - 1);
    }
    return 0;
}

static int idmap_put(const node_share_svc_t *s, idmap *m, const uint8_t id[32], uint32_t val)
{
    int rc;
    if ((m->n + 1) * 2 > m->cap && (rc = idmap_grow(s, m)))
        return rc;
    size_t j = id_hash(s, id) & (m->cap - 1);
    while (m->slots[j].val)
        j = (j + 1) & (m->cap - 1);
    memcpy(m->slots[j].key, id, 32);
    m->slots[j].val = val;
    m->n++;
    return DM_OK;
}

/* ---------------------------------------------------------------- seen-cache */

static int seen_init(seen_cache *c, size_t cap)
{
    if (cap < 16)
        cap = 16;
    if (cap > ((size_t)1 << 30))
        cap = (size_t)1 << 30;
    size_t tmax = 32;
    while (tmax < cap * 2)
        tmax <<= 1;
    size_t tcap = tmax < 4096 ? tmax : 4096;
    c->ring = calloc(cap, 32);
    c->tab = calloc(tcap, sizeof *c->tab);
    if (!c->ring || !c->tab)
        return DM_ENOMEM;
    c->cap = cap;
    c->mask = tcap - 1;
    c->tmax = tmax;
    return DM_OK;
}

static void seen_free(seen_cache *c)
{
    free(c->ring);
    free(c->tab);
}

/* Slot of `id` in the index, or SIZE_MAX. */
static size_t seen_slot(const node_share_svc_t *s, const uint8_t id[32])
{
    const seen_cache *c = &s->seen;
    size_t j = id_hash(s, id) & c->mask;
    while (c->tab[j]) {
        if (memcmp(c->ring[c->tab[j] - 1], id, 32) == 0)
            return j;
        j = (j + 1) & c->mask;
    }
    return SIZE_MAX;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void seen_del_slot(node_share_svc_t *s, size_t i)
{
    seen_cache *c = &s->seen;
    size_t j = i;
    c->n--;
    for (;;) {
        c->tab[i] = 0;
        for (;;) {
            j = (j + 1) & c->mask;
            if (!c->tab[j])
                return;
            size_t k = id_hash(s, c->ring[c->tab[j] - 1]) & c->mask;
            bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
            if (!stays)
                break;
        }
        c->tab[i] = c->tab[j];
        i = j;
    }
}

static bool seen_has(const node_share_svc_t *s, const uint8_t id[32])
{
    return seen_slot(s, id) != SIZE_MAX;
}

static void seen_remove(node_share_svc_t *s, const uint8_t id[32])
{
    size_t j = seen_slot(s, id);
    if (j != SIZE_MAX)
        seen_del_slot(s, j);
}

/* Double the index (keeps the old one if memory is short: probing still works,
 * only slower as the load rises). */
static void seen_grow(node_share_svc_t *s)
{
    seen_cache *c = &s->seen;
    size_t ncap = (c->mask + 1) * 2;
    uint32_t *nt = calloc(ncap, sizeof *nt);
    if (!nt)
        return;
    for (size_t i = 0; i <= c->mask; i++) {
        if (!c->tab[i])
            continue;
        size_t j = id_hash(s, c->ring[c->tab[i] - 1]) & (ncap - 1);
        while (nt[j])
            j = (j + 1) & (ncap - 1);
        nt[j] = c->tab[i];
    }
    free(c->tab);
    c->tab = nt;
    c->mask = ncap - 1;
}

static void seen_add(node_share_svc_t *s, const uint8_t id[32])
{
    seen_cache *c = &s->seen;
    if (seen_has(s, id))
        return;
    if ((c->n + 1) * 2 > c->mask + 1 && c->mask + 1 < c->tmax)
        seen_grow(s);
    if (c->n + 1 > c->mask)
        return; /* cannot grow and full: not remembered (the store check still works) */
    size_t pos = c->head;
    if (c->filled == c->cap) {
        /* evict the oldest: its index entry, if still there, points at pos */
        const uint8_t *old = c->ring[pos];
        size_t j = id_hash(s, old) & c->mask;
        while (c->tab[j]) {
            if (c->tab[j] == pos + 1) {
                seen_del_slot(s, j);
                break;
            }
            j = (j + 1) & c->mask;
        }
    } else {
        c->filled++;
    }
    memcpy(c->ring[pos], id, 32);
    size_t j = id_hash(s, id) & c->mask;
    while (c->tab[j])
        j = (j + 1) & c->mask;
    c->tab[j] = (uint32_t)(pos + 1);
    c->n++;
    c->head = (pos + 1) % c->cap;
}

/*
 * Pins: the ids of shares between intake and the end of their commit. The
 * seen-cache forgets in FIFO order and may be small; a pinned id is never
 * forgotten, so a second copy of a share still being verified or committed is
 * always a duplicate (at most one verification per share, whatever the cache
 * size).
 */
static size_t pin_find(const node_share_svc_t *s, const uint8_t id[32])
{
    if (!s->pins.tab)
        return SIZE_MAX;
    size_t j = id_hash(s, id) & s->pins.mask;
    while (s->pins.tab[j]) {
        if (!memcmp(s->pins.tab[j]->id, id, 32))
            return j;
        j = (j + 1) & s->pins.mask;
    }
    return SIZE_MAX;
}

static int pin_add(node_share_svc_t *s, item *it)
{
    if (!s->pins.tab || (s->pins.n + 1) * 2 > s->pins.mask + 1) {
        size_t ncap = s->pins.tab ? (s->pins.mask + 1) * 2 : 256;
        item **nt = calloc(ncap, sizeof *nt);
        if (!nt)
            return DM_ENOMEM;
        for (size_t i = 0; s->pins.tab && i <= s->pins.mask; i++) {
            if (!s->pins.tab[i])
                continue;
            size_t j = id_hash(s, s->pins.tab[i]->id) & (ncap - 1);
            while (nt[j])
                j = (j + 1) & (ncap - 1);
            nt[j] = s->pins.tab[i];
        }
        free(s->pins.tab);
        s->pins.tab = nt;
        s->pins.mask = ncap - 1;
    }
    size_t j = id_hash(s, it->id) & s->pins.mask;
    while (s->pins.tab[j])
        j = (j + 1) & s->pins.mask;
    s->pins.tab[j] = it;
    s->pins.n++;
    return DM_OK;
}

static void pin_del(node_share_svc_t *s, const item *it)
{
    size_t i = pin_find(s, it->id);
    if (i == SIZE_MAX || s->pins.tab[i] != it)
        return;
    size_t j = i, mask = s->pins.mask;
    s->pins.n--;
    for (;;) {
        s->pins.tab[i] = NULL;
        for (;;) {
            j = (j + 1) & mask;
            if (!s->pins.tab[j])
                return;
            size_t k = id_hash(s, s->pins.tab[j]->id) & mask;
            bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
            if (!stays)
                break;
        }
        s->pins.tab[i] = s->pins.tab[j];
        i = j;
    }
}

/* ---------------------------------------------------------------- marks */

static mark_t *mark_find(node_share_svc_t *s, const uint8_t origin[32])
{
    uint32_t v = idmap_get(s, &s->markmap, origin);
    return v ? &s->marks[v - 1] : NULL;
}

static uint64_t hwm_of(node_share_svc_t *s, const uint8_t origin[32])
{
    mark_t *m = mark_find(s, origin);
    return m ? m->hwm : 0;
}

static int mark_add(node_share_svc_t *s, const uint8_t origin[32], mark_t **out)
{
    if (s->nmarks == s->capmarks) {
        size_t ncap = s->capmarks ? s->capmarks * 2 : 16;
        mark_t *nm = realloc(s->marks, ncap * sizeof *nm);
        if (!nm)
            return DM_ENOMEM;
        s->marks = nm;
        s->capmarks = ncap;
    }
    int rc = idmap_put(s, &s->markmap, origin, (uint32_t)s->nmarks + 1);
    if (rc)
        return rc;
    mark_t *m = &s->marks[s->nmarks++];
    memset(m, 0, sizeof *m);
    memcpy(m->origin, origin, 32);
    *out = m;
    return DM_OK;
}

static void mark_key(uint8_t key[MARK_PREFIX_LEN + 32], const uint8_t origin[32])
{
    memcpy(key, MARK_PREFIX, MARK_PREFIX_LEN);
    memcpy(key + MARK_PREFIX_LEN, origin, 32);
}

static int marks_load(node_share_svc_t *s)
{
    store_iter_t *it = NULL;
    int rc =
        store_iter_create(&it, s->o.store, STORE_CF_META, MARK_PREFIX, MARK_PREFIX_LEN, NULL, 0);
    if (rc)
        return rc;
    const uint8_t *k, *v;
    size_t kl, vl;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        if (kl != MARK_PREFIX_LEN + 32 || vl != 24) {
            rc = DM_ECORRUPT;
            break;
        }
        mark_t *m;
        if ((rc = mark_add(s, k + MARK_PREFIX_LEN, &m)))
            break;
        m->hwm = dm_get_u64be(v);
        m->max_seq = dm_get_u64be(v + 8);
        m->count = dm_get_u64be(v + 16);
        s->st.stored += m->count;
    }
    if (!rc)
        rc = store_iter_status(it);
    store_iter_destroy(it);
    return rc;
}

/* ---------------------------------------------------------------- key directory */

static void keyent_free(keyent *k)
{
    if (!k)
        return;
    if (!k->own)
        crypto_rsa_destroy(k->rsa);
    dm_buf_free(&k->spki);
    free(k);
}

static int key_add(node_share_svc_t *s, const uint8_t id[32], crypto_rsa_t *rsa,
                   const uint8_t *spki, size_t n, bool own, const keyent **out)
{
    if (s->nkeys >= KEYDIR_MAX)
        return DM_ELIMIT;
    if (s->nkeys == s->capkeys) {
        size_t ncap = s->capkeys ? s->capkeys * 2 : 16;
        keyent **nk = realloc(s->keys, ncap * sizeof *nk);
        if (!nk)
            return DM_ENOMEM;
        s->keys = nk;
        s->capkeys = ncap;
    }
    keyent *k = calloc(1, sizeof *k);
    if (!k)
        return DM_ENOMEM;
    memcpy(k->id, id, 32);
    k->own = own;
    int rc = dm_buf_append(&k->spki, spki, n);
    if (!rc)
        rc = idmap_put(s, &s->keymap, id, (uint32_t)s->nkeys + 1);
    if (rc) {
        dm_buf_free(&k->spki);
        free(k);
        return rc;
    }
    k->rsa = rsa;
    s->keys[s->nkeys++] = k;
    *out = k;
    return DM_OK;
}

/* Parse a candidate key for `id`: SHA-256(spki) must equal the id. */
static int key_parse(const uint8_t id[32], const uint8_t *spki, size_t n, crypto_rsa_t **rsa)
{
    uint8_t h[32];
    if (!spki || n == 0 || n > NET_MAX_SPKI || crypto_sha256(h, spki, n) || memcmp(h, id, 32))
        return DM_EAUTH;
    return crypto_rsa_from_spki(rsa, spki, n);
}

static void key_store_key(uint8_t key[4 + 32], const uint8_t id[32])
{
    memcpy(key, PEER_KEY_PREFIX, 4);
    memcpy(key + 4, id, 32);
}

/* Memory, then the persisted directory. NULL if unknown. */
static const keyent *key_find(node_share_svc_t *s, const uint8_t id[32])
{
    uint32_t v = idmap_get(s, &s->keymap, id);
    if (v)
        return s->keys[v - 1];
    uint8_t key[36];
    key_store_key(key, id);
    dm_buf_reset(&s->tmp);
    if (store_get(s->o.store, STORE_CF_PEERS, key, sizeof key, &s->tmp))
        return NULL;
    crypto_rsa_t *rsa = NULL;
    if (key_parse(id, s->tmp.data, s->tmp.len, &rsa)) {
        dm_log(DM_LOG_WARNING, "security", "stored key for an origin does not match its id");
        return NULL;
    }
    const keyent *k = NULL;
    if (key_add(s, id, rsa, s->tmp.data, s->tmp.len, false, &k)) {
        crypto_rsa_destroy(rsa);
        return NULL;
    }
    return k;
}

static void unpark(node_share_svc_t *s, const keyent *k);

/* A key from a handshake or a KEY answer: remember and persist it. */
static int key_learn(node_share_svc_t *s, const uint8_t id[32], const uint8_t *spki, size_t n)
{
    if (key_find(s, id))
        return DM_OK;
    crypto_rsa_t *rsa = NULL;
    int rc = key_parse(id, spki, n, &rsa);
    if (rc)
        return rc;
    const keyent *k = NULL;
    if ((rc = key_add(s, id, rsa, spki, n, false, &k))) {
        crypto_rsa_destroy(rsa);
        return rc;
    }
    uint8_t key[36];
    key_store_key(key, id);
    if (store_put(s->o.store, STORE_CF_PEERS, key, sizeof key, spki, n))
        dm_log(DM_LOG_WARNING, "storage", "cannot persist an origin key: %s", store_errmsg());
    unpark(s, k);
    return DM_OK;
}

/* ---------------------------------------------------------------- peers */

static peer_st *peer_ref(peer_st *ps)
{
    if (ps)
        ps->refs++;
    return ps;
}

static void peer_unref(peer_st *ps)
{
    if (ps && --ps->refs == 0) {
        free(ps->wants);
        free(ps);
    }
}

static peer_st *peer_of(net_peer_t *p)
{
    return p ? net_peer_data(p) : NULL;
}

static void misbehave(peer_st *ps, uint32_t score, bool disconnect, const char *reason)
{
    if (ps && ps->p)
        net_peer_misbehave(ps->p, score, disconnect, reason);
}

static void send_bytes(peer_st *ps, const dm_buf *b)
{
    if (ps && ps->p && b->len)
        net_peer_send_bytes(ps->p, b->data, b->len);
}

/* ---------------------------------------------------------------- items */

static void item_free(item *it)
{
    if (!it)
        return;
    dm_buf_free(&it->buf);
    dm_buf_free(&it->sigbuf);
    if (it->frame)
        net_frame_release(it->frame);
    peer_unref(it->src);
    free(it);
}

/* A network share leaves the pipeline without being stored. `forget` drops it
 * from the seen-cache too, so a genuine copy can still be accepted later. */
static void remote_drop(node_share_svc_t *s, item *it, bool forget)
{
    pin_del(s, it);
    if (forget)
        seen_remove(s, it->id);
    s->remote_items--;
    s->remote_bytes -= it->bytes;
    if (it->kind == K_SYNC && it->src)
        it->src->sync_inflight--;
    item_free(it);
}

static void local_finish(node_share_svc_t *s, item *it, int rc)
{
    pin_del(s, it);
    if (rc)
        seen_remove(s, it->id);
    s->local_bytes -= it->bytes;
    s->st.pending_local--;
    node_share_receipt r;
    memcpy(r.id, it->id, 32);
    memcpy(r.data_hash, it->f.data_hash, 32);
    r.seq = it->f.seq;
    r.timestamp_ms = it->f.timestamp_ms;
    node_share_submit_cb cb = it->cb;
    void *arg = it->arg;
    item_free(it);
    if (cb)
        cb(rc, rc ? NULL : &r, arg);
}

/* Fail every local share still in the signing stage: they hold seqs above a
 * share that failed. Those inside a running job are failed when it returns. */
static void fifo_doom(node_share_svc_t *s, int rc)
{
    for (item *it = s->fifo.head; it; it = it->next) {
        if (it->doomed)
            continue;
        it->doomed = true;
        it->doom_rc = rc;
        if (it->state == ST_QUEUED)
            it->state = ST_DONE;
    }
    s->sign_cursor = NULL;
}

/* Move signed shares from the head of the fifo to the commit queue, in seq order. */
static void fifo_advance(node_share_svc_t *s)
{
    item *h;
    while ((h = s->fifo.head) && h->state == ST_DONE) {
        q_pop(&s->fifo);
        if (h->doomed) {
            local_finish(s, h, h->doom_rc ? h->doom_rc : DM_ECLOSED);
        } else if (h->rc) {
            int rc = h->rc;
            uint64_t seq = h->f.seq;
            dm_log(DM_LOG_ERROR, "node", "signing share seq %llu failed: %s",
                   (unsigned long long)seq, dm_strerror(rc));
            /* reset before the callback, which may submit again */
            fifo_doom(s, rc);
            s->own_next = seq; /* everything below is queued or committed */
            local_finish(s, h, rc);
        } else {
            q_push(&s->commit_q, h);
        }
    }
}

/* A local share failed in a commit: every later local share must fail too, and
 * the numbering restarts right after what is committed. The later shares still
 * queued for commit move to `failed`; the caller answers them after the reset,
 * so that a callback submitting again gets a fresh seq. */
static void local_reset(node_share_svc_t *s, int rc, item_q *failed)
{
    item_q keep = {0};
    item *it;
    while ((it = q_pop(&s->commit_q)))
        q_push(it->kind == K_LOCAL ? failed : &keep, it);
    s->commit_q = keep;
    fifo_doom(s, rc);
    mark_t *m = mark_find(s, s->self);
    s->own_next = (m ? m->max_seq : 0) + 1;
}

/* ---------------------------------------------------------------- local submit */

void node_share_opts_default(node_share_opts *o)
{
    memset(o, 0, sizeof *o);
    o->seen_cache = 262144;
    o->sign_batch = 32;
    o->verify_batch = 32;
    o->commit_max = 512;
    o->sync_interval_ms = 5000;
    o->sync_page = 128;
    o->max_pending = 4096;
}

int node_share_submit(node_share_svc_t *s, const uint8_t recipient[20], const char *amount,
                      const uint8_t *data, size_t data_len, node_share_submit_cb cb, void *arg)
{
    if (!s || !recipient || !amount || (!data && data_len))
        return DM_EINVAL;
    if (s->closing)
        return DM_ECLOSED;
    size_t alen = strnlen(amount, NODE_SHARE_AMOUNT_MAX_DIGITS + 2);
    int rc = node_share_check_amount(amount, alen);
    if (rc)
        return rc;
    if (data_len > NET_SHARE_DATA_MAX)
        return DM_ETOOBIG;
    if (s->st.pending_local >= s->o.max_pending ||
        s->local_bytes + data_len + 1024 > LOCAL_BYTES_MAX)
        return DM_ELIMIT;
    item *it = calloc(1, sizeof *it);
    if (!it)
        return DM_ENOMEM;
    it->kind = K_LOCAL;
    it->state = ST_QUEUED;
    node_share_fields *f = &it->f;
    memcpy(f->origin, s->self, 32);
    f->seq = s->own_next;
    f->timestamp_ms = wall_ms();
    memcpy(f->recipient, recipient, 20);
    memcpy(f->amount, amount, alen + 1);
    f->data = data;
    f->data_len = data_len;
    if ((rc = crypto_sha256(f->data_hash, data, data_len)) ||
        (rc = node_share_body_encode(&it->buf, f)) ||
        (rc = crypto_sha256(it->id, it->buf.data, it->buf.len))) {
        item_free(it);
        return rc;
    }
    f->data = NULL;
    memcpy(f->id, it->id, 32);
    it->body = it->buf.data;
    it->body_len = it->buf.len;
    it->received_ms = f->timestamp_ms;
    it->bytes = it->buf.len + 512;
    it->cb = cb;
    it->arg = arg;
    if ((rc = pin_add(s, it))) {
        item_free(it);
        return rc;
    }
    s->own_next++;
    s->local_bytes += it->bytes;
    s->st.pending_local++;
    s->st.local_submitted++;
    seen_add(s, it->id);
    q_push(&s->fifo, it);
    if (!s->sign_cursor)
        s->sign_cursor = it;
    sign_kick(s);
    return DM_OK;
}

/* ---------------------------------------------------------------- signing */

static void sign_work(uv_work_t *req)
{
    batch_job *j = DM_CONTAINER_OF(req, batch_job, req);
    const crypto_rsa_t *k = node_keys_rsa(j->s->o.keys);
    for (size_t i = 0; i < j->n; i++) {
        item *it = j->items[i];
        it->rc = crypto_rsa_sign(k, it->body, it->body_len, &it->sigbuf);
    }
}

static void sign_done(uv_work_t *req, int status)
{
    batch_job *j = DM_CONTAINER_OF(req, batch_job, req);
    node_share_svc_t *s = j->s;
    s->jobs--;
    s->sign_jobs--;
    for (size_t i = 0; i < j->n; i++) {
        item *it = j->items[i];
        if (status && !it->rc)
            it->rc = DM_ECLOSED;
        if (!it->doomed && !it->rc) {
            it->sig = it->sigbuf.data;
            it->sig_len = it->sigbuf.len;
        }
        it->state = ST_DONE;
    }
    free(j);
    fifo_advance(s);
    sign_kick(s);
    commit_kick(s);
    maybe_finish_close(s);
}

static void sign_kick(node_share_svc_t *s)
{
    while (!s->closing && s->sign_jobs < SIGN_JOBS_MAX) {
        while (s->sign_cursor && s->sign_cursor->state != ST_QUEUED)
            s->sign_cursor = s->sign_cursor->next;
        if (!s->sign_cursor)
            return;
        uint32_t max = s->o.sign_batch;
        batch_job *j = malloc(sizeof *j + max * sizeof(item *));
        if (!j)
            return;
        j->s = s;
        j->n = 0;
        item *it = s->sign_cursor;
        for (; it && j->n < max; it = it->next) {
            if (it->state != ST_QUEUED)
                continue;
            it->state = ST_SIGNING;
            j->items[j->n++] = it;
        }
        s->sign_cursor = it;
        if (uv_queue_work(s->o.loop, &j->req, sign_work, sign_done)) {
            for (size_t i = 0; i < j->n; i++) {
                j->items[i]->state = ST_DONE;
                j->items[i]->rc = DM_ENOMEM;
            }
            free(j);
            fifo_advance(s);
            return;
        }
        s->jobs++;
        s->sign_jobs++;
    }
}

/* ---------------------------------------------------------------- verification */

static void verify_work(uv_work_t *req)
{
    batch_job *j = DM_CONTAINER_OF(req, batch_job, req);
    for (size_t i = 0; i < j->n; i++) {
        item *it = j->items[i];
        it->rc = crypto_rsa_verify(it->key->rsa, it->body, it->body_len, it->sig, it->sig_len);
    }
}

static void peers_drive(node_share_svc_t *s);

/* A share whose signature does not verify: counted, logged, its sender scored. */
static void bad_signature(node_share_svc_t *s, const item *it)
{
    s->st.invalid++;
    char idhex[65];
    dm_hex_encode(idhex, it->id, 32);
    dm_log(DM_LOG_WARNING, "security", "invalid signature on share %s", idhex);
    misbehave(it->src, SCORE_BADSIG, true, "share with an invalid signature");
}

static void verify_done(uv_work_t *req, int status)
{
    batch_job *j = DM_CONTAINER_OF(req, batch_job, req);
    node_share_svc_t *s = j->s;
    s->jobs--;
    s->verify_jobs--;
    s->verifying -= j->n;
    for (size_t i = 0; i < j->n; i++) {
        item *it = j->items[i];
        if (status) {
            remote_drop(s, it, true);
            continue;
        }
        s->st.verify_calls++;
        it->verified = true;
        if (it->rc == DM_OK && !s->closing) {
            q_push(&s->commit_q, it);
            continue;
        }
        if (it->rc == DM_EBADSIG)
            bad_signature(s, it);
        remote_drop(s, it, true);
    }
    free(j);
    commit_kick(s);
    verify_kick(s);
    peers_drive(s);
    maybe_finish_close(s);
}

static void verify_kick(node_share_svc_t *s)
{
    while (!s->closing && s->verify_jobs < VERIFY_JOBS_MAX && s->verify_q.n > s->o.commit_max) {
        uint32_t max = s->o.verify_batch;
        batch_job *j = malloc(sizeof *j + max * sizeof(item *));
        if (!j)
            return;
        j->s = s;
        j->n = 0;
        item *it;
        while (j->n < max && (it = q_pop(&s->verify_q)))
            j->items[j->n++] = it;
        if (uv_queue_work(s->o.loop, &j->req, verify_work, verify_done)) {
            for (size_t i = 0; i < j->n; i++)
                remote_drop(s, j->items[i], true);
            free(j);
            return;
        }
        s->jobs++;
        s->verify_jobs++;
        s->verifying += j->n;
    }
}

/* ---------------------------------------------------------------- commit */

/* Hex texts of a share's identifying fields, as its events and API replies name them. */
typedef struct {
    char id[65], origin[65], dh[65], rcpt[43];
} share_texts;

static void share_texts_of(const node_share_fields *f, share_texts *t)
{
    dm_hex_encode(t->id, f->id, 32);
    dm_hex_encode(t->origin, f->origin, 32);
    dm_hex_encode(t->dh, f->data_hash, 32);
    t->rcpt[0] = '0';
    t->rcpt[1] = 'x';
    dm_hex_encode(t->rcpt + 2, f->recipient, 20);
}

json_t *node_share__event(const node_share_fields *f)
{
    share_texts t;
    share_texts_of(f, &t);
    return json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "event_type", "data_share", "data_hash",
                     t.dh, "recipient", t.rcpt, "timestamp", (json_int_t)(f->timestamp_ms / 1000),
                     "share_id", t.id, "origin", t.origin);
}

static json_t *audit_fields(const item *it, json_t **anchor)
{
    share_texts t;
    share_texts_of(&it->f, &t);
    json_t *f = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "share_id", t.id, "origin", t.origin,
                          "seq", (json_int_t)it->f.seq, "data_hash", t.dh, "recipient", t.rcpt,
                          "amount", it->f.amount);
    *anchor = node_share__event(&it->f);
    if (!f || !*anchor) {
        json_decref(f);
        json_decref(*anchor);
        *anchor = NULL;
        return NULL;
    }
    return f;
}

typedef struct {
    uint32_t m;
    uint64_t seq;
} seq_ent;

static int seq_ent_cmp(const void *a, const void *b)
{
    const seq_ent *x = a, *y = b;
    if (x->m != y->m)
        return x->m < y->m ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* New marks for one origin: the batch's seqs (sorted) merged with what the
 * store already holds above the old high-water mark. */
static int mark_advance(store_t *st, mark_upd *u, const seq_ent *e, size_t n)
{
    uint64_t old_max = u->max_seq;
    u->count += n;
    if (e[n - 1].seq > u->max_seq)
        u->max_seq = e[n - 1].seq;
    uint64_t next = u->hwm + 1;
    if (e[0].seq != next)
        return DM_OK; /* the batch does not touch the low end: hwm stays */
    store_iter_t *it = NULL;
    int rc;
    if (old_max > u->hwm) { /* committed shares above a gap this batch may close */
        uint8_t start[STORE_KEY_SEQ_LEN];
        store_key_seq(start, u->origin, next);
        if ((rc = store_iter_create(&it, st, STORE_CF_SEQ, u->origin, 32, start, sizeof start)))
            return rc;
    }
    bool have = false;
    uint64_t sseq = 0;
    const uint8_t *k, *v;
    size_t kl, vl;
    if (it && store_iter_next(it, &k, &kl, &v, &vl))
        have = store_key_seq_decode(k, kl, NULL, &sseq) == DM_OK;
    size_t a = 0;
    for (;;) {
        if (a < n && e[a].seq == next) {
            next++;
            a++;
        } else if (have && sseq == next) {
            next++;
            have = store_iter_next(it, &k, &kl, &v, &vl) &&
                   store_key_seq_decode(k, kl, NULL, &sseq) == DM_OK;
        } else {
            break;
        }
    }
    rc = it ? store_iter_status(it) : DM_OK;
    store_iter_destroy(it);
    u->hwm = next - 1;
    return rc;
}

static void commit_work(uv_work_t *req)
{
    commit_job *j = DM_CONTAINER_OF(req, commit_job, req);
    node_share_svc_t *s = j->s;
    store_t *st = s->o.store;
    store_batch_t *b = NULL;
    dm_buf val = DM_BUF_INIT, sealed = DM_BUF_INIT, rec = DM_BUF_INIT;
    seq_ent *ents = NULL;
    node_audit_mark amark;
    bool audited = false, local_failed = false;
    int rc = store_batch_create(&b);
    if (rc)
        goto out;
    if (!(ents = malloc(j->n * sizeof *ents))) {
        rc = DM_ENOMEM;
        goto out;
    }
    size_t nents = 0;
    for (size_t i = 0; i < j->n; i++) {
        item *it = j->items[i];
        if (it->kind != K_LOCAL && !it->verified) {
            it->vrc = crypto_rsa_verify(it->key->rsa, it->body, it->body_len, it->sig, it->sig_len);
            if (it->vrc) {
                it->rc = it->vrc;
                continue; /* not stored; commit_done reports it */
            }
        }
        it->rc = DM_OK;
        if (it->kind == K_LOCAL && local_failed) {
            it->rc = DM_EEXIST; /* above a local share that could not be stored */
            continue;
        }
        /* the same (origin, seq) earlier in this batch */
        for (size_t k = 0; k < i; k++) {
            item *o = j->items[k];
            if (o->rc == DM_OK && o->f.seq == it->f.seq && !memcmp(o->f.origin, it->f.origin, 32)) {
                it->rc = memcmp(o->id, it->id, 32) ? RC_CONFLICT : RC_DUP;
                break;
            }
        }
        /* which mark this origin uses */
        uint32_t m = 0;
        while (memcmp(j->marks[m].origin, it->f.origin, 32))
            m++;
        /* above the origin's max_seq as the job started, nothing is stored yet
         * (one commit job at a time; the marks change only after the loop) */
        if (it->rc == DM_OK && it->f.seq <= j->marks[m].max_seq) {
            uint8_t key[STORE_KEY_SEQ_LEN];
            store_key_seq(key, it->f.origin, it->f.seq);
            dm_buf_reset(&val);
            int g = store_get(st, STORE_CF_SEQ, key, sizeof key, &val);
            if (g == DM_OK)
                it->rc = val.len == 32 && !memcmp(val.data, it->id, 32) ? RC_DUP : RC_CONFLICT;
            else if (g != DM_ENOTFOUND)
                it->rc = g;
        }
        if (it->rc) {
            if (it->kind == K_LOCAL) {
                local_failed = true;
                if (it->rc == RC_DUP || it->rc == RC_CONFLICT)
                    it->rc = DM_EEXIST;
            }
            continue;
        }
        dm_buf_reset(&sealed);
        dm_buf_reset(&rec);
        uint8_t skey[STORE_KEY_SEQ_LEN];
        store_key_seq(skey, it->f.origin, it->f.seq);
        if ((rc = node_keys_seal(s->o.keys, it->body, it->body_len, &sealed)) ||
            (rc = node_share__record_encode(&rec, sealed.data, sealed.len, it->sig, it->sig_len,
                                            it->received_ms)) ||
            (rc = store_batch_put(b, STORE_CF_SHARES, it->id, 32, rec.data, rec.len)) ||
            (rc = store_batch_put(b, STORE_CF_SEQ, skey, sizeof skey, it->id, 32)))
            goto out;
        if (it->kind == K_LOCAL && s->o.audit) {
            if (!audited) {
                node_audit_lock(s->o.audit);
                amark = node_audit_head(s->o.audit);
                audited = true;
            }
            json_t *anchor = NULL;
            json_t *fields = audit_fields(it, &anchor);
            if (!fields) {
                rc = DM_ENOMEM;
                goto out;
            }
            rc = node_audit_append(s->o.audit, b, DM_LOG_INFO, "data_share", fields, anchor, NULL);
            json_decref(fields);
            json_decref(anchor);
            if (rc)
                goto out;
        }
        ents[nents].m = m;
        ents[nents].seq = it->f.seq;
        nents++;
    }
    qsort(ents, nents, sizeof *ents, seq_ent_cmp);
    for (size_t a = 0; a < nents;) {
        size_t e = a;
        while (e < nents && ents[e].m == ents[a].m)
            e++;
        mark_upd *u = &j->marks[ents[a].m];
        if ((rc = mark_advance(st, u, ents + a, e - a)))
            goto out;
        uint8_t mk[MARK_PREFIX_LEN + 32], mv[24];
        mark_key(mk, u->origin);
        dm_put_u64be(mv, u->hwm);
        dm_put_u64be(mv + 8, u->max_seq);
        dm_put_u64be(mv + 16, u->count);
        if ((rc = store_batch_put(b, STORE_CF_META, mk, sizeof mk, mv, sizeof mv)))
            goto out;
        a = e;
    }
    if (store_batch_count(b))
        rc = store_write(st, b);
out:
    if (rc && audited)
        node_audit_rollback(s->o.audit, &amark);
    if (audited)
        node_audit_unlock(s->o.audit);
    if (rc) {
        dm_log(DM_LOG_ERROR, "storage", "share commit of %zu failed: %s %s", j->n, dm_strerror(rc),
               store_errmsg());
    }
    j->rc = rc;
    free(ents);
    dm_buf_free(&val);
    dm_buf_free(&sealed);
    dm_buf_free(&rec);
    store_batch_destroy(b);
}

/* Flood to every peer except those known to hold the share already: the one it
 * came from, those that sent a copy while it was being verified and committed,
 * and its origin. The frame is relayed as received. */
static void relay(node_share_svc_t *s, item *it)
{
    if (!s->o.host)
        return;
    net_frame_t *f = it->frame ? net_frame_retain(it->frame) : NULL;
    for (peer_st *ps = s->peers; ps; ps = ps->next) {
        if (ps == it->src || !ps->p || (ps->slot >= 0 && (it->have >> ps->slot & 1)) ||
            !memcmp(net_peer_node_id(ps->p), it->f.origin, 32))
            continue;
        if (!f) {
            dm_buf b = DM_BUF_INIT;
            if (net_msg_encode_share(&b, it->body, it->body_len, it->sig, it->sig_len) == DM_OK)
                f = net_frame_new(b.data, b.len);
            dm_buf_free(&b);
            if (!f)
                return;
        }
        net_peer_send(ps->p, f);
    }
    net_frame_release(f);
    s->st.relayed++;
}

static void commit_done(uv_work_t *req, int status)
{
    commit_job *j = DM_CONTAINER_OF(req, commit_job, req);
    node_share_svc_t *s = j->s;
    s->jobs--;
    s->committing = false;
    s->commit_n = 0;
    int jrc = status ? DM_ECLOSED : j->rc;
    if (!jrc) {
        for (size_t m = 0; m < j->nmarks; m++) {
            mark_upd *u = &j->marks[m];
            mark_t *mk = u->mark == UINT32_MAX ? NULL : &s->marks[u->mark];
            if (!mk && u->count && mark_add(s, u->origin, &mk))
                mk = NULL;
            if (mk) {
                mk->hwm = u->hwm;
                mk->max_seq = u->max_seq;
                mk->count = u->count;
            }
        }
        mark_t *own = mark_find(s, s->self);
        if (own && own->max_seq >= s->own_next)
            s->own_next = own->max_seq + 1; /* our own shares learned from the network */
    }
    int local_rc = 0;
    size_t outbox_added = 0;
    for (size_t i = 0; i < j->n; i++) {
        if (j->items[i]->kind == K_LOCAL && (jrc || j->items[i]->rc) && !local_rc)
            local_rc = jrc ? jrc : j->items[i]->rc;
        if (j->items[i]->kind == K_LOCAL && !jrc && !j->items[i]->rc && s->o.audit)
            outbox_added++;
    }
    item_q failed = {0};
    if (local_rc)
        local_reset(s, local_rc, &failed);
    for (size_t i = 0; i < j->n; i++) {
        item *it = j->items[i];
        int rc = jrc ? jrc : it->rc;
        if (it->kind != K_LOCAL && !it->verified) { /* checked by this job */
            s->verifying--;
            it->verified = true;
            if (!status)
                s->st.verify_calls++;
            if (status || it->vrc) {
                if (!status && it->vrc == DM_EBADSIG)
                    bad_signature(s, it);
                remote_drop(s, it, true);
                continue;
            }
        }
        if (it->kind == K_LOCAL) {
            if (rc == DM_OK) {
                s->st.stored++;
                relay(s, it);
            }
            local_finish(s, it, rc);
            continue;
        }
        if (rc == DM_OK) {
            s->st.stored++;
            if (it->kind == K_SYNC)
                s->st.synced_in++;
            else
                relay(s, it);
            remote_drop(s, it, false);
        } else if (rc == RC_DUP) {
            s->st.duplicates++;
            remote_drop(s, it, false);
        } else if (rc == RC_CONFLICT) {
            s->st.conflicts++;
            misbehave(it->src, SCORE_CONFLICT, false, "conflicting share for an origin and seq");
            remote_drop(s, it, false);
        } else {
            remote_drop(s, it, true);
        }
    }
    free(j->marks);
    free(j);
    item *it;
    while ((it = q_pop(&failed)))
        local_finish(s, it, local_rc);
    if (outbox_added && !local_rc && s->o.on_outbox)
        s->o.on_outbox(s->o.on_outbox_arg, outbox_added);
    commit_kick(s);
    verify_kick(s);
    peers_drive(s);
    maybe_finish_close(s);
}

static void commit_kick(node_share_svc_t *s)
{
    if (s->committing || s->closing || (!s->commit_q.n && !s->verify_q.n))
        return;
    size_t n = s->commit_q.n + s->verify_q.n;
    if (n > s->o.commit_max)
        n = s->o.commit_max;
    commit_job *j = malloc(sizeof *j + n * sizeof(item *));
    mark_upd *marks = calloc(n, sizeof *marks);
    if (!j || !marks) {
        free(j);
        free(marks);
        return;
    }
    j->s = s;
    j->rc = 0;
    j->n = 0;
    j->marks = marks;
    j->nmarks = 0;
    item *it;
    size_t unverified = 0;
    while (j->n < n && ((it = q_pop(&s->commit_q)) || (it = q_pop(&s->verify_q)))) {
        j->items[j->n++] = it;
        unverified += it->kind != K_LOCAL && !it->verified;
        size_t m = 0;
        while (m < j->nmarks && memcmp(marks[m].origin, it->f.origin, 32))
            m++;
        if (m == j->nmarks) {
            mark_upd *u = &marks[j->nmarks++];
            memcpy(u->origin, it->f.origin, 32);
            uint32_t v = idmap_get(s, &s->markmap, it->f.origin);
            u->mark = v ? v - 1 : UINT32_MAX;
            if (v) {
                u->hwm = s->marks[v - 1].hwm;
                u->max_seq = s->marks[v - 1].max_seq;
                u->count = s->marks[v - 1].count;
            }
        }
    }
    if (uv_queue_work(s->o.loop, &j->req, commit_work, commit_done)) {
        /* put them back; the next event retries */
        item_q back = {0};
        for (size_t i = 0; i < j->n; i++)
            q_push(&back, j->items[i]);
        if (back.tail) {
            back.tail->next = s->commit_q.head;
            back.tail = s->commit_q.tail ? s->commit_q.tail : back.tail;
            back.n += s->commit_q.n;
            s->commit_q = back;
        }
        free(marks);
        free(j);
        return;
    }
    s->jobs++;
    s->committing = true;
    s->commit_n = j->n;
    s->verifying += unverified;
}

/* ---------------------------------------------------------------- intake */

static void keyreq_send(node_share_svc_t *s, peer_st *ps, const uint8_t origin[32])
{
    if (!ps || !ps->p)
        return;
    for (size_t i = 0; i < ps->nkeyreq; i++)
        if (!memcmp(ps->keyreq[i].id, origin, 32))
            return;
    if (ps->nkeyreq == KEYREQ_MAX)
        return;
    memcpy(ps->keyreq[ps->nkeyreq].id, origin, 32);
    ps->keyreq[ps->nkeyreq].at = uv_now(s->o.loop);
    ps->nkeyreq++;
    dm_buf b = DM_BUF_INIT;
    if (net_msg_encode_keyreq(&b, origin) == DM_OK)
        send_bytes(ps, &b);
    dm_buf_free(&b);
}

static void unpark(node_share_svc_t *s, const keyent *k)
{
    item_q keep = {0};
    item *it;
    bool moved = false;
    while ((it = q_pop(&s->parked))) {
        if (!memcmp(it->f.origin, k->id, 32)) {
            it->key = k;
            q_push(&s->verify_q, it);
            moved = true;
        } else {
            q_push(&keep, it);
        }
    }
    s->parked = keep;
    if (moved) {
        commit_kick(s);
        verify_kick(s);
    }
    node_share__notices_key(s, k->id);
}

typedef enum { IN_OK, IN_INVALID, IN_CONFLICT } intake_rc;

/*
 * One share from the network, in the order that keeps crypto last: id, then
 * the seen-cache, then the store, then decoding and the conflict check, and
 * only then the queue for verification.
 */
static intake_rc share_intake(node_share_svc_t *s, peer_st *ps, int kind, const uint8_t *body,
                              size_t blen, const uint8_t *sig, size_t slen, const uint8_t *frame,
                              size_t flen)
{
    uint8_t id[32];
    s->st.received++;
    if (crypto_sha256(id, body, blen))
        return IN_OK;
    size_t pin = pin_find(s, id);
    if (pin != SIZE_MAX) {
        /* still being verified or committed: this peer need not get it from us */
        if (ps && ps->slot >= 0)
            s->pins.tab[pin]->have |= (uint64_t)1 << ps->slot;
        s->st.duplicates++;
        return IN_OK;
    }
    if (seen_has(s, id)) {
        s->st.duplicates++;
        return IN_OK;
    }
    node_share_fields f;
    if (node_share_body_decode(body, blen, &f)) {
        s->st.invalid++;
        return IN_INVALID;
    }
    if (!sig || slen == 0 || slen > NET_MAX_SIG) {
        s->st.invalid++;
        return IN_INVALID;
    }
    /* Nothing of this origin is stored above its max_seq (every share and its mark are
     * written in one batch, and shares being committed are pinned): a new share, the
     * common case, needs no store lookup. Below it, the share may be stored already
     * (by id) or its (origin, seq) may hold another body. */
    const mark_t *mk = mark_find(s, f.origin);
    if (mk && f.seq <= mk->max_seq) {
        dm_buf_reset(&s->tmp);
        int g = store_get(s->o.store, STORE_CF_SHARES, id, 32, &s->tmp);
        if (g == DM_OK) {
            s->st.duplicates++;
            seen_add(s, id);
            return IN_OK;
        }
        if (g != DM_ENOTFOUND)
            return IN_OK; /* cannot tell now; anti-entropy brings it again */
        uint8_t skey[STORE_KEY_SEQ_LEN];
        store_key_seq(skey, f.origin, f.seq);
        dm_buf_reset(&s->tmp);
        g = store_get(s->o.store, STORE_CF_SEQ, skey, sizeof skey, &s->tmp);
        if (g == DM_OK) {
            if (s->tmp.len == 32 && !memcmp(s->tmp.data, id, 32)) {
                s->st.duplicates++;
                seen_add(s, id);
                return IN_OK;
            }
            s->st.conflicts++;
            return IN_CONFLICT;
        }
        if (g != DM_ENOTFOUND)
            return IN_OK;
    }
    size_t bytes = blen + slen + sizeof(item) + 64;
    if (s->closing || s->remote_items >= REMOTE_ITEMS_MAX ||
        s->remote_bytes + bytes > REMOTE_BYTES_MAX) {
        dm_log(DM_LOG_DEBUG, "p2p", "share intake full: dropped (anti-entropy will bring it)");
        return IN_OK;
    }
    item *it = calloc(1, sizeof *it);
    if (!it)
        return IN_OK;
    it->kind = (uint8_t)kind;
    f.data = NULL;
    it->f = f;
    memcpy(it->id, id, 32);
    it->received_ms = wall_ms();
    it->bytes = bytes;
    bool in_frame = frame && body >= frame && body + blen <= frame + flen && sig >= frame &&
                    sig + slen <= frame + flen;
    if (kind == K_GOSSIP && in_frame) {
        it->frame = net_frame_new(frame, flen);
        if (!it->frame) {
            free(it);
            return IN_OK;
        }
        size_t n;
        const uint8_t *d = net_frame_data(it->frame, &n);
        it->body = d + (body - frame);
        it->sig = d + (sig - frame);
    } else {
        if (dm_buf_append(&it->buf, body, blen) || dm_buf_append(&it->buf, sig, slen)) {
            item_free(it);
            return IN_OK;
        }
        it->body = it->buf.data;
        it->sig = it->buf.data + blen;
    }
    it->body_len = blen;
    it->sig_len = slen;
    if (pin_add(s, it)) {
        item_free(it);
        return IN_OK;
    }
    it->src = peer_ref(ps);
    if (ps && ps->slot >= 0)
        it->have = (uint64_t)1 << ps->slot;
    if (kind == K_SYNC && ps)
        ps->sync_inflight++;
    s->remote_items++;
    s->remote_bytes += bytes;
    seen_add(s, id);
    it->key = key_find(s, f.origin);
    if (it->key) {
        q_push(&s->verify_q, it);
        commit_kick(s);
        verify_kick(s);
    } else if (s->parked.n >= PARK_MAX) {
        remote_drop(s, it, true);
    } else {
        it->parked_at = uv_now(s->o.loop);
        q_push(&s->parked, it);
        keyreq_send(s, ps, f.origin);
    }
    return IN_OK;
}

/* ---------------------------------------------------------------- anti-entropy */

static void hwm_send(node_share_svc_t *s, peer_st *only)
{
    if (!s->o.host)
        return;
    size_t n = 0, total = 0;
    for (size_t i = 0; i < s->nmarks; i++)
        total += s->marks[i].hwm > 0;
    net_hwm_entry *e = malloc((total < NET_MAX_HWM ? total : NET_MAX_HWM) * sizeof *e + 1);
    if (!e)
        return;
    /* with more origins than fit, rotate the window between rounds */
    size_t start = s->nmarks ? s->hwm_rotate % s->nmarks : 0;
    for (size_t k = 0; k < s->nmarks && n < NET_MAX_HWM; k++) {
        const mark_t *m = &s->marks[(start + k) % s->nmarks];
        if (!m->hwm)
            continue;
        memcpy(e[n].origin, m->origin, 32);
        e[n].seq = m->hwm;
        n++;
    }
    if (total > NET_MAX_HWM)
        s->hwm_rotate += NET_MAX_HWM;
    dm_buf b = DM_BUF_INIT;
    if (n && net_msg_encode_hwm(&b, e, n) == DM_OK) {
        if (only) {
            send_bytes(only, &b);
        } else {
            net_frame_t *f = net_frame_new(b.data, b.len);
            for (peer_st *ps = s->peers; f && ps; ps = ps->next)
                if (ps->p)
                    net_peer_send(ps->p, f);
            net_frame_release(f);
        }
    }
    dm_buf_free(&b);
    free(e);
}

static void sync_backoff(node_share_svc_t *s, peer_st *ps)
{
    uint64_t d = SYNC_BACKOFF_MIN_MS;
    for (uint32_t i = 1; i < ps->fails && d < SYNC_BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > SYNC_BACKOFF_MAX_MS)
        d = SYNC_BACKOFF_MAX_MS;
    d += rnd(s) % (d / 2 + 1); /* jitter */
    ps->backoff_until = uv_now(s->o.loop) + d;
}

static void want_remove(peer_st *ps, const uint8_t origin[32])
{
    for (size_t i = 0; i < ps->nwants; i++)
        if (!memcmp(ps->wants[i].origin, origin, 32)) {
            ps->wants[i] = ps->wants[--ps->nwants];
            return;
        }
}

static void sync_request(node_share_svc_t *s, peer_st *ps, const uint8_t origin[32], uint64_t from)
{
    dm_buf b = DM_BUF_INIT;
    uint32_t limit = s->o.sync_page;
    if (net_msg_encode_syncreq(&b, origin, from, limit) == DM_OK && b.len) {
        ps->req_out = true;
        ps->req_stale = false;
        memcpy(ps->req_origin, origin, 32);
        ps->req_from = from;
        ps->req_limit = limit;
        ps->req_at = uv_now(s->o.loop);
        send_bytes(ps, &b);
    }
    dm_buf_free(&b);
}

/* Another peer is already paging `origin` for us: pulling the same range from
 * every peer would only multiply serving work and duplicates. A peer that stops
 * answering times out (req_out clears) and the origin becomes free again. */
static bool origin_busy(const node_share_svc_t *s, const peer_st *ps, const uint8_t origin[32])
{
    for (const peer_st *q = s->peers; q; q = q->next) {
        if (q == ps || !q->p)
            continue;
        if ((q->req_out || q->sync_inflight) && !memcmp(q->req_origin, origin, 32))
            return true;
        if (q->cont && !memcmp(q->cont_origin, origin, 32))
            return true;
    }
    return false;
}

static void sync_drive(node_share_svc_t *s, peer_st *ps)
{
    if (s->closing || !ps->p || ps->req_out || uv_now(s->o.loop) < ps->backoff_until)
        return;
    /* flow control: at most about two pages from one peer in the pipeline */
    if (ps->sync_inflight > s->o.sync_page)
        return;
    if (ps->cont) {
        ps->cont = false;
        for (size_t i = 0; i < ps->nwants; i++) {
            if (memcmp(ps->wants[i].origin, ps->cont_origin, 32))
                continue;
            uint64_t hwm = hwm_of(s, ps->cont_origin);
            if (hwm >= ps->wants[i].seq)
                break;
            uint64_t from = ps->cont_from > hwm + 1 ? ps->cont_from : hwm + 1;
            sync_request(s, ps, ps->cont_origin, from);
            return;
        }
    }
    if (ps->sync_inflight)
        return; /* a fresh range starts from the hwm: wait until it settles */
    for (size_t i = 0; i < ps->nwants;) {
        uint64_t hwm = hwm_of(s, ps->wants[i].origin);
        if (hwm >= ps->wants[i].seq) {
            ps->wants[i] = ps->wants[--ps->nwants];
            continue;
        }
        if (origin_busy(s, ps, ps->wants[i].origin)) {
            i++;
            continue;
        }
        sync_request(s, ps, ps->wants[i].origin, hwm + 1);
        return;
    }
}

static void peers_drive(node_share_svc_t *s)
{
    for (peer_st *ps = s->peers; ps; ps = ps->next)
        sync_drive(s, ps);
}

static void on_hwm(node_share_svc_t *s, peer_st *ps, const net_msg *m)
{
    size_t n = m->u.hwm.count;
    net_hwm_entry *w = n ? malloc(n * sizeof *w) : NULL;
    size_t k = 0;
    for (size_t i = 0; w && i < n; i++)
        if (m->u.hwm.e[i].seq > hwm_of(s, m->u.hwm.e[i].origin))
            w[k++] = m->u.hwm.e[i];
    free(ps->wants);
    ps->wants = w;
    ps->nwants = k;
    sync_drive(s, ps);
}

static void on_syncresp(node_share_svc_t *s, peer_st *ps, const net_msg *m)
{
    if (!ps->req_out && !ps->req_stale) {
        misbehave(ps, SCORE_UNSOLICITED, false, "unsolicited SYNC_RESP");
        return;
    }
    const uint8_t *origin = ps->req_origin;
    uint64_t from = ps->req_from;
    uint32_t limit = ps->req_limit;
    ps->req_out = ps->req_stale = false;
    size_t n = m->u.syncresp.count;
    uint64_t prev = 0, last = 0;
    bool bad = memcmp(m->u.syncresp.origin, origin, 32) != 0 || n > limit;
    /* range first: a page outside the request is rejected as a whole */
    for (size_t i = 0; !bad && i < n; i++) {
        uint8_t o[32];
        uint64_t seq;
        if (node_share__body_peek(m->u.syncresp.body[i].p, m->u.syncresp.body[i].n, o, &seq) ||
            memcmp(o, origin, 32) || seq < from || seq - from >= limit || (i && seq <= prev))
            bad = true;
        prev = last = seq;
    }
    if (bad) {
        s->st.invalid++;
        misbehave(ps, SCORE_SYNC, true, "SYNC_RESP outside the requested origin or range");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        intake_rc r = share_intake(s, ps, K_SYNC, m->u.syncresp.body[i].p, m->u.syncresp.body[i].n,
                                   m->u.syncresp.sig[i].p, m->u.syncresp.sig[i].n, NULL, 0);
        if (r == IN_INVALID) {
            misbehave(ps, SCORE_INVALID, true, "invalid share in SYNC_RESP");
            return;
        }
        if (r == IN_CONFLICT)
            misbehave(ps, SCORE_CONFLICT, false, "conflicting share in SYNC_RESP");
    }
    if (n)
        ps->fails = 0;
    if (m->u.syncresp.more) {
        ps->cont = true;
        memcpy(ps->cont_origin, origin, 32);
        ps->cont_from = n ? last + 1 : from + limit;
    } else if (n == 0) {
        /* it advertised more than it can serve: stop asking for a while */
        want_remove(ps, origin);
        ps->fails++;
        sync_backoff(s, ps);
    }
    sync_drive(s, ps);
}

static void serve_start(node_share_svc_t *s, peer_st *ps);

static void serve_work(uv_work_t *req)
{
    serve_job *j = DM_CONTAINER_OF(req, serve_job, req);
    node_share_svc_t *s = j->s;
    store_iter_t *it = NULL;
    dm_buf rec = DM_BUF_INIT, body = DM_BUF_INIT;
    net_syncresp_builder sb;
    bool more = false;
    uint8_t start[STORE_KEY_SEQ_LEN];
    store_key_seq(start, j->origin, j->from);
    int rc = store_iter_create(&it, s->o.store, STORE_CF_SEQ, j->origin, 32, start, sizeof start);
    if (!rc)
        rc = net_msg_syncresp_begin(&sb, &j->out, j->origin);
    const uint8_t *k, *v;
    size_t kl, vl;
    while (!rc && store_iter_next(it, &k, &kl, &v, &vl)) {
        uint64_t seq;
        if (store_key_seq_decode(k, kl, NULL, &seq) || vl != 32)
            continue;
        if (seq < j->from)
            continue;
        if (seq - j->from >= j->limit) {
            more = true;
            break;
        }
        dm_buf_reset(&rec);
        dm_buf_reset(&body);
        const uint8_t *sealed, *sig;
        size_t sealed_len, sig_len;
        uint64_t rms;
        if (store_get(s->o.store, STORE_CF_SHARES, v, 32, &rec) ||
            node_share__record_decode(rec.data, rec.len, &sealed, &sealed_len, &sig, &sig_len,
                                      &rms) ||
            node_keys_open(s->o.keys, sealed, sealed_len, &body)) {
            dm_log(DM_LOG_WARNING, "storage", "stored share unreadable; not served");
            continue;
        }
        if (j->count && j->out.len + body.len + sig_len + 16 > SYNC_RESP_BYTES) {
            more = true;
            break;
        }
        if ((rc = net_msg_syncresp_add(&sb, body.data, body.len, sig, sig_len)))
            break;
        j->count++;
    }
    if (!rc)
        rc = store_iter_status(it);
    if (!rc)
        rc = net_msg_syncresp_end(&sb, more);
    if (rc)
        dm_buf_reset(&j->out);
    j->rc = rc;
    store_iter_destroy(it);
    dm_buf_free(&rec);
    dm_buf_free_secure(&body);
}

static void serve_done(uv_work_t *req, int status)
{
    serve_job *j = DM_CONTAINER_OF(req, serve_job, req);
    node_share_svc_t *s = j->s;
    peer_st *ps = j->ps;
    s->jobs--;
    s->serve_jobs--;
    ps->serving = false;
    if (!status && !j->rc && ps->p && j->out.len) {
        net_frame_t *f = net_frame_new(j->out.data, j->out.len);
        if (f) {
            if (net_peer_send(ps->p, f) == DM_OK)
                s->st.synced_out += j->count;
            net_frame_release(f);
        }
    }
    dm_buf_free(&j->out);
    free(j);
    if (ps->serve_pending && ps->p && !s->closing)
        serve_start(s, ps);
    /* a slot is free: the longest-waiting peer */
    while (!s->closing && s->serve_jobs < SERVE_JOBS_MAX && s->wait_head) {
        peer_st *w = s->wait_head;
        s->wait_head = w->wait_next;
        if (!s->wait_head)
            s->wait_tail = NULL;
        w->waiting = false;
        if (w->p && w->serve_pending && !w->serving)
            serve_start(s, w);
        peer_unref(w);
    }
    peer_unref(ps);
    maybe_finish_close(s);
}

static void serve_start(node_share_svc_t *s, peer_st *ps)
{
    if (s->serve_jobs >= SERVE_JOBS_MAX) {
        if (!ps->waiting) {
            ps->waiting = true;
            ps->wait_next = NULL;
            if (s->wait_tail)
                s->wait_tail->wait_next = ps;
            else
                s->wait_head = ps;
            s->wait_tail = peer_ref(ps);
        }
        return;
    }
    serve_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->s = s;
    j->ps = peer_ref(ps);
    memcpy(j->origin, ps->sv_origin, 32);
    j->from = ps->sv_from;
    j->limit = ps->sv_limit;
    ps->serve_pending = false;
    if (uv_queue_work(s->o.loop, &j->req, serve_work, serve_done)) {
        peer_unref(ps);
        free(j);
        return;
    }
    ps->serving = true;
    s->jobs++;
    s->serve_jobs++;
}

static void on_syncreq(node_share_svc_t *s, peer_st *ps, const net_msg *m)
{
    uint32_t limit = m->u.syncreq.limit;
    if (limit == 0)
        return;
    if (limit > NET_MAX_SYNC_PAGE)
        limit = NET_MAX_SYNC_PAGE;
    /* one request per peer in service; a newer one replaces a waiting one */
    memcpy(ps->sv_origin, m->u.syncreq.origin, 32);
    ps->sv_from = m->u.syncreq.from_seq ? m->u.syncreq.from_seq : 1;
    ps->sv_limit = limit;
    ps->serve_pending = true;
    if (!ps->serving)
        serve_start(s, ps);
}

static void on_keyreq(node_share_svc_t *s, peer_st *ps, const net_msg *m)
{
    const keyent *k = key_find(s, m->u.keyreq.node_id);
    if (!k)
        return;
    dm_buf b = DM_BUF_INIT;
    if (net_msg_encode_key(&b, k->spki.data, k->spki.len) == DM_OK)
        send_bytes(ps, &b);
    dm_buf_free(&b);
}

static void on_key(node_share_svc_t *s, peer_st *ps, const net_msg *m)
{
    uint8_t id[32];
    if (crypto_sha256(id, m->u.key.spki.p, m->u.key.spki.n))
        return;
    size_t i = 0;
    while (i < ps->nkeyreq && memcmp(ps->keyreq[i].id, id, 32))
        i++;
    if (i == ps->nkeyreq) {
        misbehave(ps, SCORE_UNSOLICITED, false, "KEY that was not requested");
        return;
    }
    ps->keyreq[i] = ps->keyreq[--ps->nkeyreq];
    int rc = key_learn(s, id, m->u.key.spki.p, m->u.key.spki.n);
    if (rc == DM_EAUTH || rc == DM_EINVAL || rc == DM_EUNSUPPORTED)
        misbehave(ps, SCORE_INVALID, true, "unusable KEY");
}

/* ---------------------------------------------------------------- overlay entry points */

void node_share_on_peer_ready(node_share_svc_t *s, net_peer_t *p)
{
    if (!s || !p || s->closing)
        return;
    peer_st *ps = calloc(1, sizeof *ps);
    if (!ps)
        return;
    ps->s = s;
    ps->p = p;
    ps->refs = 1;
    ps->slot = -1;
    if (~s->slots) {
        ps->slot = __builtin_ctzll(~s->slots);
        s->slots |= (uint64_t)1 << ps->slot;
    }
    ps->next = s->peers;
    if (s->peers)
        s->peers->prev = ps;
    s->peers = ps;
    net_peer_set_data(p, ps);
    size_t n = 0;
    const uint8_t *spki = net_peer_spki(p, &n);
    if (spki && key_learn(s, net_peer_node_id(p), spki, n))
        dm_log(DM_LOG_WARNING, "security", "peer %s: key does not match its node id",
               net_peer_node_id_hex(p));
    hwm_send(s, ps);
    node_share__notices_peer_ready(s, ps);
}

void node_share_on_peer_closed(node_share_svc_t *s, net_peer_t *p)
{
    peer_st *ps = peer_of(p);
    if (!s || !ps)
        return;
    net_peer_set_data(p, NULL);
    ps->p = NULL;
    if (ps->slot >= 0) {
        /* the slot may go to a new peer: no share in the pipeline claims it has them */
        uint64_t bit = (uint64_t)1 << ps->slot;
        for (size_t i = 0; s->pins.tab && i <= s->pins.mask; i++)
            if (s->pins.tab[i])
                s->pins.tab[i]->have &= ~bit;
        s->slots &= ~bit;
        ps->slot = -1;
    }
    if (ps->prev)
        ps->prev->next = ps->next;
    else
        s->peers = ps->next;
    if (ps->next)
        ps->next->prev = ps->prev;
    ps->prev = ps->next = NULL;
    peer_unref(ps);
}

void node_share_on_message(node_share_svc_t *s, net_peer_t *p, const net_msg *m,
                           const uint8_t *frame, size_t frame_len)
{
    peer_st *ps = peer_of(p);
    if (!s || !ps || !m || s->closing)
        return;
    switch (m->type) {
    case NET_MSG_SHARE: {
        intake_rc r = share_intake(s, ps, K_GOSSIP, m->u.share.body.p, m->u.share.body.n,
                                   m->u.share.sig.p, m->u.share.sig.n, frame, frame_len);
        if (r == IN_INVALID)
            misbehave(ps, SCORE_INVALID, true, "invalid share");
        else if (r == IN_CONFLICT)
            misbehave(ps, SCORE_CONFLICT, false, "conflicting share for an origin and seq");
        break;
    }
    case NET_MSG_KEYREQ:
        on_keyreq(s, ps, m);
        break;
    case NET_MSG_KEY:
        on_key(s, ps, m);
        break;
    case NET_MSG_HWM:
        on_hwm(s, ps, m);
        break;
    case NET_MSG_SYNCREQ:
        on_syncreq(s, ps, m);
        break;
    case NET_MSG_SYNCRESP:
        on_syncresp(s, ps, m);
        break;
    case NET_MSG_ANCHOR:
        node_share__notices_on_msg(s, ps, m, frame, frame_len);
        break;
    default:
        break; /* the host handles the rest */
    }
}

/* ---------------------------------------------------------------- timers */

static void on_tick(uv_timer_t *t)
{
    node_share_svc_t *s = DM_CONTAINER_OF(t, node_share_svc_t, tick);
    uint64_t now = uv_now(s->o.loop);
    for (peer_st *ps = s->peers; ps; ps = ps->next) {
        if (ps->req_out && now - ps->req_at >= SYNC_TIMEOUT_MS) {
            ps->req_out = false;
            ps->req_stale = true; /* a late answer is still welcome */
            ps->fails++;
            sync_backoff(s, ps);
        }
        for (size_t i = 0; i < ps->nkeyreq;) {
            if (now - ps->keyreq[i].at >= KEYREQ_TIMEOUT_MS)
                ps->keyreq[i] = ps->keyreq[--ps->nkeyreq];
            else
                i++;
        }
    }
    item_q keep = {0};
    item *it;
    while ((it = q_pop(&s->parked))) {
        if (now - it->parked_at >= PARK_TIMEOUT_MS)
            remote_drop(s, it, true);
        else
            q_push(&keep, it);
    }
    s->parked = keep;
    node_share__notices_tick(s, now);
    if (now - s->last_hwm >= s->o.sync_interval_ms) {
        s->last_hwm = now;
        hwm_send(s, NULL);
    }
    peers_drive(s);
}

/* ---------------------------------------------------------------- lifecycle */

int node_share_svc_create(node_share_svc_t **out, const node_share_opts *o)
{
    if (!out || !o || !o->loop || !o->store || !o->keys)
        return DM_EINVAL;
    *out = NULL;
    node_share_svc_t *s = calloc(1, sizeof *s);
    if (!s)
        return DM_ENOMEM;
    s->o = *o;
    node_share_opts d;
    node_share_opts_default(&d);
    if (!s->o.seen_cache)
        s->o.seen_cache = d.seen_cache;
    if (!s->o.sign_batch)
        s->o.sign_batch = d.sign_batch;
    if (!s->o.verify_batch)
        s->o.verify_batch = d.verify_batch;
    if (!s->o.commit_max)
        s->o.commit_max = d.commit_max;
    if (!s->o.sync_interval_ms)
        s->o.sync_interval_ms = d.sync_interval_ms;
    if (!s->o.sync_page || s->o.sync_page > NET_MAX_SYNC_PAGE)
        s->o.sync_page = s->o.sync_page ? NET_MAX_SYNC_PAGE : d.sync_page;
    if (!s->o.max_pending)
        s->o.max_pending = d.max_pending;
    uint8_t r[16];
    int rc = crypto_random(r, sizeof r);
    if (rc)
        goto fail;
    memcpy(&s->salt, r, 8);
    memcpy(&s->rng, r + 8, 8);
    s->rng |= 1;
    const char *hex = node_keys_node_id(o->keys);
    if (!hex || dm_hex_decode(s->self, 32, hex, strlen(hex))) {
        rc = DM_EINVAL;
        goto fail;
    }
    if ((rc = seen_init(&s->seen, s->o.seen_cache)) || (rc = marks_load(s)) ||
        (rc = node_share__notices_create(&s->notices)))
        goto fail;
    /* our own key, so that our shares coming back verify like any other */
    dm_buf spki = DM_BUF_INIT;
    const keyent *k;
    rc = crypto_rsa_spki(node_keys_rsa(o->keys), &spki);
    if (!rc)
        rc = key_add(s, s->self, (crypto_rsa_t *)node_keys_rsa(o->keys), spki.data, spki.len, true,
                     &k);
    dm_buf_free(&spki);
    if (rc)
        goto fail;
    mark_t *own = mark_find(s, s->self);
    s->own_next = (own ? own->max_seq : 0) + 1;
    if (uv_timer_init(o->loop, &s->tick)) {
        rc = DM_ENOMEM;
        goto fail;
    }
    unsigned tick = s->o.sync_interval_ms < TICK_MS ? s->o.sync_interval_ms : TICK_MS;
    uv_timer_start(&s->tick, on_tick, tick, tick);
    s->last_hwm = uv_now(o->loop);
    *out = s;
    return DM_OK;
fail:
    node_share__notices_free(s->notices);
    for (size_t i = 0; i < s->nkeys; i++)
        keyent_free(s->keys[i]);
    free(s->keys);
    free(s->keymap.slots);
    free(s->marks);
    free(s->markmap.slots);
    seen_free(&s->seen);
    free(s);
    return rc;
}

static void svc_free(node_share_svc_t *s)
{
    item *it;
    while ((it = q_pop(&s->fifo)))
        item_free(it);
    while ((it = q_pop(&s->commit_q)))
        item_free(it);
    while ((it = q_pop(&s->verify_q)))
        item_free(it);
    while ((it = q_pop(&s->parked)))
        item_free(it);
    while (s->wait_head) {
        peer_st *w = s->wait_head;
        s->wait_head = w->wait_next;
        peer_unref(w);
    }
    while (s->peers) {
        peer_st *ps = s->peers;
        s->peers = ps->next;
        if (ps->p)
            net_peer_set_data(ps->p, NULL);
        ps->p = NULL;
        peer_unref(ps);
    }
    for (size_t i = 0; i < s->nkeys; i++)
        keyent_free(s->keys[i]);
    free(s->keys);
    free(s->keymap.slots);
    free(s->marks);
    free(s->markmap.slots);
    seen_free(&s->seen);
    free(s->pins.tab);
    dm_buf_free(&s->tmp);
    node_share__notices_free(s->notices);
    free(s);
}

static void maybe_finish_close(node_share_svc_t *s)
{
    if (!s->closing || s->jobs || !s->tick_closed || s->freed)
        return;
    s->freed = true;
    void (*cb)(void *) = s->close_cb;
    void *arg = s->close_arg;
    svc_free(s);
    if (cb)
        cb(arg);
}

static void on_tick_closed(uv_handle_t *h)
{
    node_share_svc_t *s = DM_CONTAINER_OF((uv_timer_t *)h, node_share_svc_t, tick);
    s->tick_closed = true;
    maybe_finish_close(s);
}

void node_share_svc_close(node_share_svc_t *s, void (*cb)(void *arg), void *arg)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    s->close_cb = cb;
    s->close_arg = arg;
    uv_timer_stop(&s->tick);
    uv_close((uv_handle_t *)&s->tick, on_tick_closed);
    /* what is not committed yet is failed (never acknowledged, so nothing is lost) */
    fifo_doom(s, DM_ECLOSED);
    fifo_advance(s);
    item_q keep = {0};
    item *it;
    while ((it = q_pop(&s->commit_q))) {
        if (it->kind == K_LOCAL)
            local_finish(s, it, DM_ECLOSED);
        else
            remote_drop(s, it, true);
    }
    s->commit_q = keep;
    while ((it = q_pop(&s->verify_q)))
        remote_drop(s, it, true);
    while ((it = q_pop(&s->parked)))
        remote_drop(s, it, true);
    while (s->wait_head) {
        peer_st *w = s->wait_head;
        s->wait_head = w->wait_next;
        w->waiting = false;
        peer_unref(w);
    }
    s->wait_tail = NULL;
    node_share__notices_close(s);
}

/* ---------------------------------------------------------------- for node_share_anchor.c */

const node_share_opts *node_share__opts(const node_share_svc_t *s)
{
    return &s->o;
}

share_notices *node_share__notices(node_share_svc_t *s)
{
    return s->notices;
}

node_share_stats *node_share__stats(node_share_svc_t *s)
{
    return &s->st;
}

bool node_share__closing(const node_share_svc_t *s)
{
    return s->closing;
}

const uint8_t *node_share__self(const node_share_svc_t *s)
{
    return s->self;
}

const crypto_rsa_t *node_share__key(node_share_svc_t *s, const uint8_t id[32],
                                    const uint8_t **spki, size_t *spki_len)
{
    const keyent *k = key_find(s, id);
    if (!k)
        return NULL;
    *spki = k->spki.data;
    *spki_len = k->spki.len;
    return k->rsa;
}

void node_share__keyreq(node_share_svc_t *s, peer_st *ps, const uint8_t id[32])
{
    keyreq_send(s, ps, id);
}

peer_st *node_share__peer_ref(peer_st *ps)
{
    return peer_ref(ps);
}

void node_share__peer_unref(peer_st *ps)
{
    peer_unref(ps);
}

net_peer_t *node_share__peer_net(const peer_st *ps)
{
    return ps ? ps->p : NULL;
}

void node_share__job_begin(node_share_svc_t *s)
{
    s->jobs++;
}

void node_share__job_end(node_share_svc_t *s)
{
    s->jobs--;
    maybe_finish_close(s);
}

/* ---------------------------------------------------------------- reads (any thread) */

int node_share_read(node_share_svc_t *s, const uint8_t id[32], node_share_record *out)
{
    if (!s || !id || !out)
        return DM_EINVAL;
    memset(out, 0, sizeof *out);
    dm_buf rec = DM_BUF_INIT;
    int rc = store_get(s->o.store, STORE_CF_SHARES, id, 32, &rec);
    if (rc)
        goto out;
    const uint8_t *sealed, *sig;
    size_t sealed_len, sig_len;
    if ((rc = node_share__record_decode(rec.data, rec.len, &sealed, &sealed_len, &sig, &sig_len,
                                        &out->received_ms)))
        goto out;
    if ((rc = node_keys_open(s->o.keys, sealed, sealed_len, &out->body)))
        goto out;
    if ((rc = dm_buf_append(&out->sig, sig, sig_len)))
        goto out;
    if (node_share_body_decode(out->body.data, out->body.len, &out->f) ||
        memcmp(out->f.id, id, 32)) {
        rc = DM_ETAMPER; /* a valid seal around a body that is not this share */
        goto out;
    }
out:
    dm_buf_free(&rec);
    if (rc)
        node_share_record_free(out);
    return rc;
}

void node_share_record_free(node_share_record *r)
{
    if (!r)
        return;
    dm_buf_free_secure(&r->body);
    dm_buf_free(&r->sig);
    memset(&r->f, 0, sizeof r->f);
}

int node_share_list(node_share_svc_t *s, const uint8_t origin[32], uint64_t after, size_t limit,
                    uint8_t (*ids)[32], uint64_t *seqs, size_t *count)
{
    if (!s || !origin || !count || (limit && !ids))
        return DM_EINVAL;
    *count = 0;
    if (limit == 0 || after == UINT64_MAX)
        return DM_OK;
    uint8_t start[STORE_KEY_SEQ_LEN];
    store_key_seq(start, origin, after + 1);
    store_iter_t *it = NULL;
    int rc = store_iter_create(&it, s->o.store, STORE_CF_SEQ, origin, 32, start, sizeof start);
    if (rc)
        return rc;
    const uint8_t *k, *v;
    size_t kl, vl;
    size_t n = 0;
    while (n < limit && store_iter_next(it, &k, &kl, &v, &vl)) {
        uint64_t seq;
        if (store_key_seq_decode(k, kl, NULL, &seq) || vl != 32) {
            rc = DM_ECORRUPT;
            break;
        }
        memcpy(ids[n], v, 32);
        if (seqs)
            seqs[n] = seq;
        n++;
    }
    if (!rc)
        rc = store_iter_status(it);
    store_iter_destroy(it);
    if (!rc)
        *count = n;
    return rc;
}

#define REENCRYPT_BATCH 256

int node_share__reencrypt(store_t *store, const node_keys_t *keys, uint64_t *moved, uint64_t *total)
{
    if (!store || !keys || !moved)
        return DM_EINVAL;
    *moved = 0;
    if (total)
        *total = 0;
    uint32_t cur = node_keys_current_version(keys);
    store_batch_t *b = NULL;
    store_iter_t *it = NULL;
    dm_buf pt = DM_BUF_INIT, sealed = DM_BUF_INIT, rec = DM_BUF_INIT;
    uint64_t pending = 0;
    int rc = store_batch_create(&b);
    if (rc)
        return rc;
    /* the iterator reads a snapshot, so the batches written meanwhile do not disturb it */
    if ((rc = store_iter_create(&it, store, STORE_CF_SHARES, NULL, 0, NULL, 0)))
        goto out;
    const uint8_t *k, *v;
    size_t kl, vl;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        const uint8_t *sv, *sig;
        size_t sl, sigl;
        uint64_t rms;
        uint32_t ver;
        if (total)
            (*total)++;
        if ((rc = node_share__record_decode(v, vl, &sv, &sl, &sig, &sigl, &rms)) ||
            (rc = node_keys_sealed_version(sv, sl, &ver)))
            goto out;
        if (ver == cur)
            continue;
        dm_buf_reset(&pt);
        dm_buf_reset(&sealed);
        dm_buf_reset(&rec);
        if ((rc = node_keys_open(keys, sv, sl, &pt)) ||
            (rc = node_keys_seal(keys, pt.data, pt.len, &sealed)) ||
            (rc = node_share__record_encode(&rec, sealed.data, sealed.len, sig, sigl, rms)) ||
            (rc = store_batch_put(b, STORE_CF_SHARES, k, kl, rec.data, rec.len)))
            goto out;
        crypto_memzero(pt.data, pt.len);
        if (++pending == REENCRYPT_BATCH) {
            if ((rc = store_write(store, b)))
                goto out;
            *moved += pending;
            pending = 0;
            store_batch_clear(b);
        }
    }
    if ((rc = store_iter_status(it)))
        goto out;
    if (pending) {
        if ((rc = store_write(store, b)))
            goto out;
        *moved += pending;
    }
out:
    store_iter_destroy(it);
    store_batch_destroy(b);
    dm_buf_free_secure(&pt);
    dm_buf_free(&sealed);
    dm_buf_free(&rec);
    return rc;
}

/* ---------------------------------------------------------------- stats (loop thread) */

void node_share_get_stats(const node_share_svc_t *s, node_share_stats *out)
{
    *out = s->st;
    out->pending_verify = s->verify_q.n + s->verifying + s->parked.n;
    out->notices_pending = node_share__notices_pending(s);
    out->pending_commit = s->commit_q.n + s->commit_n;
}

size_t node_share_origins(const node_share_svc_t *s, node_share_origin_info *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nmarks && n < max; i++) {
        memcpy(out[n].origin, s->marks[i].origin, 32);
        out[n].hwm = s->marks[i].hwm;
        out[n].max_seq = s->marks[i].max_seq;
        n++;
    }
    return n;
}

int node_share_reencrypt(store_t *store, const node_keys_t *keys, uint64_t *moved)
{
    return node_share__reencrypt(store, keys, moved, NULL);
}

int node_share_count_versions(store_t *store, uint64_t *counts, size_t n)
{
    store_iter_t *it = NULL;
    int rc = store_iter_create(&it, store, STORE_CF_SHARES, NULL, 0, NULL, 0);
    if (rc)
        return rc;
    const uint8_t *k, *v;
    size_t kl, vl;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        const uint8_t *sv, *sig;
        size_t sl, sigl;
        uint64_t rms;
        uint32_t ver;
        if (node_share__record_decode(v, vl, &sv, &sl, &sig, &sigl, &rms) == DM_OK &&
            node_keys_sealed_version(sv, sl, &ver) == DM_OK && ver >= 1 && ver <= n)
            counts[ver - 1]++;
    }
    rc = store_iter_status(it);
    store_iter_destroy(it);
    return rc;
}
