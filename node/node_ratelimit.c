/* Per-client token buckets: exact millitoken arithmetic, fixed-size keyed hash table. */
#include "node_ratelimit.h"

#include "crypto_mem.h"
#include "dm_err.h"

#include <stdlib.h>
#include <string.h>

#define MILLI 1000u /* millitokens per token */

/* Index 0 is "none" in every link, so calloc'd memory is an empty table and
 * untouched pages of a large table are never faulted in. */
typedef struct {
    uint8_t key[16];  /* SipHash-2-4-128 of the client string */
    uint64_t tokens;  /* millitokens at last_ms, <= cap */
    uint64_t last_ms; /* latest clock value seen for this client */
    uint32_t chain;   /* next entry in the same hash chain */
    uint32_t newer;   /* LRU neighbour towards the most recently used */
    uint32_t older;   /* LRU neighbour towards the least recently used */
} rl_entry;

struct node_ratelimit {
    uint64_t rate; /* tokens/s == millitokens/ms */
    uint64_t cap;  /* burst in millitokens */
    uint8_t sipkey[16];
    uint32_t max;  /* entries 1..max */
    uint32_t used; /* entries 1..used have been handed out (they stay in use) */
    uint32_t mask; /* heads has mask + 1 slots (a power of two >= max) */
    uint32_t *heads;
    rl_entry *e;
    uint32_t mru, lru; /* ends of the LRU list */
    node_ratelimit_stats st;
};

/* ---- SipHash-2-4, 128-bit output ---- */

static uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void sip_rounds(uint64_t v[4], int n)
{
    while (n--) {
        v[0] += v[1];
        v[1] = rotl(v[1], 13);
        v[1] ^= v[0];
        v[0] = rotl(v[0], 32);
        v[2] += v[3];
        v[3] = rotl(v[3], 16);
        v[3] ^= v[2];
        v[0] += v[3];
        v[3] = rotl(v[3], 21);
        v[3] ^= v[0];
        v[2] += v[1];
        v[1] = rotl(v[1], 17);
        v[1] ^= v[2];
        v[2] = rotl(v[2], 32);
    }
}

void node__siphash24_128(const uint8_t key[16], const void *in, size_t n, uint8_t out[16])
{
    const uint8_t *p = in;
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v[4] = {0x736f6d6570736575ULL ^ k0, 0x646f72616e646f6dULL ^ k1,
                     0x6c7967656e657261ULL ^ k0, 0x7465646279746573ULL ^ k1};
    v[1] ^= 0xee;
    size_t full = n - n % 8;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = le64(p + i);
        v[3] ^= m;
        sip_rounds(v, 2);
        v[0] ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    for (size_t i = 0; i < n % 8; i++)
        b |= (uint64_t)p[full + i] << (8 * i);
    v[3] ^= b;
    sip_rounds(v, 2);
    v[0] ^= b;
    v[2] ^= 0xee;
    sip_rounds(v, 4);
    put_le64(out, v[0] ^ v[1] ^ v[2] ^ v[3]);
    v[1] ^= 0xdd;
    sip_rounds(v, 4);
    put_le64(out + 8, v[0] ^ v[1] ^ v[2] ^ v[3]);
}

/* ---- table ---- */

int node_ratelimit_create(node_ratelimit_t **out, uint32_t rate_per_sec, uint32_t burst,
                          size_t max_clients)
{
    if (!out)
        return DM_EINVAL;
    *out = NULL;
    if (rate_per_sec == 0 || burst == 0 || max_clients == 0 ||
        max_clients > NODE_RATELIMIT_MAX_CLIENTS)
        return DM_EINVAL;
    node_ratelimit_t *rl = calloc(1, sizeof *rl);
    if (!rl)
        return DM_ENOMEM;
    rl->rate = rate_per_sec;
    rl->cap = (uint64_t)burst * MILLI;
    rl->max = (uint32_t)max_clients;
    uint32_t slots = 1;
    while (slots < rl->max)
        slots <<= 1;
    rl->mask = slots - 1;
    rl->heads = calloc(slots, sizeof *rl->heads);
    rl->e = calloc((size_t)rl->max + 1, sizeof *rl->e);
    if (!rl->heads || !rl->e) {
        node_ratelimit_destroy(rl);
        return DM_ENOMEM;
    }
    int rc = crypto_random(rl->sipkey, sizeof rl->sipkey);
    if (rc != DM_OK) {
        node_ratelimit_destroy(rl);
        return rc;
    }
    *out = rl;
    return DM_OK;
}

void node_ratelimit_destroy(node_ratelimit_t *rl)
{
    if (!rl)
        return;
    free(rl->heads);
    free(rl->e);
    crypto_memzero(rl->sipkey, sizeof rl->sipkey);
    free(rl);
}

static uint32_t slot_of(const node_ratelimit_t *rl, const uint8_t key[16])
{
    return (uint32_t)le64(key) & rl->mask;
}

static void lru_unlink(node_ratelimit_t *rl, uint32_t i)
{
    rl_entry *x = &rl->e[i];
    if (x->newer)
        rl->e[x->newer].older = x->older;
    else
        rl->mru = x->older;
    if (x->older)
        rl->e[x->older].newer = x->newer;
    else
        rl->lru = x->newer;
    x->newer = x->older = 0;
}

static void lru_push_front(node_ratelimit_t *rl, uint32_t i)
{
    rl_entry *x = &rl->e[i];
    x->newer = 0;
    x->older = rl->mru;
    if (rl->mru)
        rl->e[rl->mru].newer = i;
    rl->mru = i;
    if (!rl->lru)
        rl->lru = i;
}

static void chain_unlink(node_ratelimit_t *rl, uint32_t i)
{
    uint32_t *link = &rl->heads[slot_of(rl, rl->e[i].key)];
    while (*link != i)
        link = &rl->e[*link].chain;
    *link = rl->e[i].chain;
    rl->e[i].chain = 0;
}

/* Milliseconds from last_ms until the bucket is full. */
static uint64_t ms_to_full(const node_ratelimit_t *rl, const rl_entry *x)
{
    uint64_t need = rl->cap - x->tokens;
    return need / rl->rate + (need % rl->rate != 0);
}

/* Bring the bucket to `now`. A clock that went back adds nothing and does not
 * move last_ms back, so no time is ever credited twice. */
static void refill(const node_ratelimit_t *rl, rl_entry *x, uint64_t now)
{
    if (now <= x->last_ms)
        return;
    uint64_t dt = now - x->last_ms;
    x->last_ms = now;
    /* dt < ms_to_full bounds dt * rate by need + rate: no overflow for any jump */
    if (dt >= ms_to_full(rl, x))
        x->tokens = rl->cap;
    else
        x->tokens += dt * rl->rate;
}

static bool is_full_at(const node_ratelimit_t *rl, const rl_entry *x, uint64_t now)
{
    return now >= x->last_ms && now - x->last_ms >= ms_to_full(rl, x);
}

/* Free an entry for a new client: a refilled one among the least recently
 * used (dropping it forgets nothing), else the least recently used. */
static uint32_t evict(node_ratelimit_t *rl, uint64_t now)
{
    uint32_t victim = rl->lru, i = rl->lru;
    for (int n = 0; i && n < NODE_RATELIMIT_EVICT_SCAN; n++, i = rl->e[i].newer) {
        if (is_full_at(rl, &rl->e[i], now)) {
            victim = i;
            break;
        }
    }
    lru_unlink(rl, victim);
    chain_unlink(rl, victim);
    rl->st.evictions++;
    return victim;
}

bool node_ratelimit_take(node_ratelimit_t *rl, const char *client, uint64_t now_ms,
                         uint32_t *retry_after_ms)
{
    uint32_t dummy;
    if (!retry_after_ms)
        retry_after_ms = &dummy;
    *retry_after_ms = 0;
    if (!rl || !client) {
        *retry_after_ms = 1000;
        return false;
    }
    uint8_t key[16];
    node__siphash24_128(rl->sipkey, client, strlen(client), key);
    uint32_t *head = &rl->heads[slot_of(rl, key)];
    uint32_t i = *head;
    while (i && memcmp(rl->e[i].key, key, sizeof key) != 0)
        i = rl->e[i].chain;
    rl_entry *x;
    if (i) {
        x = &rl->e[i];
        refill(rl, x, now_ms);
        lru_unlink(rl, i);
    } else {
        /* absent == a full bucket */
        i = rl->used < rl->max ? ++rl->used : evict(rl, now_ms);
        x = &rl->e[i];
        memcpy(x->key, key, sizeof key);
        x->tokens = rl->cap;
        x->last_ms = now_ms;
        x->chain = *head; /* read after evict(), which may have unlinked from this chain */
        *head = i;
    }
    lru_push_front(rl, i);
    if (x->tokens >= MILLI) {
        x->tokens -= MILLI;
        rl->st.admitted++;
        return true;
    }
    rl->st.limited++;
    /* (MILLI - tokens) <= 1000 and rate >= 1: fits, and is >= 1 */
    uint64_t need = MILLI - x->tokens;
    *retry_after_ms = (uint32_t)(need / rl->rate + (need % rl->rate != 0));
    return false;
}

void node_ratelimit_get_stats(const node_ratelimit_t *rl, node_ratelimit_stats *out)
{
    if (!out)
        return;
    if (!rl) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = rl->st;
    out->clients = rl->used;
}
