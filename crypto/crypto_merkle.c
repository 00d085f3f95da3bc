#include "crypto_merkle.h"
#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_err.h"

#include <stdlib.h>
#include <string.h>

/*
 * The tree keeps every level in one array, leaves first, so a proof is one
 * sibling lookup per level (O(log n)) and the build hashes each inner node once.
 * Level k has ceil(count_{k-1} / 2) nodes; the last level has one node, the root.
 */
struct crypto_merkle_tree {
    size_t count;  /* number of leaves */
    size_t nlevel; /* levels including the leaves and the root level */
    size_t off[CRYPTO_MERKLE_MAX_DEPTH + 1];
    size_t len[CRYPTO_MERKLE_MAX_DEPTH + 1];
    uint8_t (*node)[32];
};

static const uint8_t leaf_tag = 0x00;
static const uint8_t node_tag = 0x01;

static int leaf_hash(uint8_t out[32], const void *data, size_t n)
{
    const void *parts[2] = {&leaf_tag, data};
    const size_t lens[2] = {1, n};
    return crypto_sha256_parts(out, parts, lens, n ? 2 : 1);
}

static int node_hash(uint8_t out[32], const uint8_t left[32], const uint8_t right[32])
{
    const void *parts[3] = {&node_tag, left, right};
    const size_t lens[3] = {1, 32, 32};
    return crypto_sha256_parts(out, parts, lens, 3);
}

/* The void wrappers cannot report a failure of the hash backend (only possible
 * when OpenSSL cannot allocate); they leave an all-zero hash, which no real
 * tree produces. Internal paths use the checked helpers above. */
void crypto_merkle_leaf_hash(uint8_t out[32], const void *data, size_t n)
{
    if (leaf_hash(out, data, n) != DM_OK)
        memset(out, 0, 32);
}

void crypto_merkle_node_hash(uint8_t out[32], const uint8_t left[32], const uint8_t right[32])
{
    if (node_hash(out, left, right) != DM_OK)
        memset(out, 0, 32);
}

/* Number of siblings a proof for (index, count) must carry; the shape is a
 * function of the pair alone. Caller guarantees index < count. */
static uint32_t proof_len(uint64_t index, uint64_t count)
{
    uint32_t len = 0;
    while (count > 1) {
        if ((index & 1) || index + 1 < count)
            len++;
        index >>= 1;
        count = (count >> 1) + (count & 1);
    }
    return len;
}

int crypto_merkle_tree_build(crypto_merkle_tree_t **out, const uint8_t (*leaves)[32], size_t count)
{
    int rc = DM_OK;
    crypto_merkle_tree_t *t = NULL;
    *out = NULL;
    if (count == 0 || !leaves)
        return DM_EINVAL;
    /* fewer than 2*count nodes in total */
    if (count > SIZE_MAX / 2 / 32)
        return DM_ETOOBIG;
    t = calloc(1, sizeof *t);
    if (!t)
        return DM_ENOMEM;
    size_t total = 0;
    for (size_t n = count;; n = n / 2 + (n & 1)) {
        t->off[t->nlevel] = total;
        t->len[t->nlevel] = n;
        t->nlevel++;
        total += n;
        if (n == 1)
            break;
    }
    t->node = malloc(total * 32);
    if (!t->node) {
        rc = DM_ENOMEM;
        goto out;
    }
    t->count = count;
    memcpy(t->node, leaves, count * 32);
    for (size_t k = 1; k < t->nlevel; k++) {
        const uint8_t(*below)[32] = t->node + t->off[k - 1];
        uint8_t(*level)[32] = t->node + t->off[k];
        size_t nb = t->len[k - 1];
        for (size_t i = 0; i + 1 < nb; i += 2) {
            rc = node_hash(level[i / 2], below[i], below[i + 1]);
            if (rc != DM_OK)
                goto out;
        }
        if (nb & 1)
            memcpy(level[nb / 2], below[nb - 1], 32);
    }
    *out = t;
    t = NULL;
out:
    crypto_merkle_tree_destroy(t);
    return rc;
}

void crypto_merkle_tree_root(const crypto_merkle_tree_t *t, uint8_t root[32])
{
    memcpy(root, t->node[t->off[t->nlevel - 1]], 32);
}

int crypto_merkle_tree_proof(const crypto_merkle_tree_t *t, size_t index, crypto_merkle_proof *out)
{
    if (!t || !out || index >= t->count)
        return DM_EINVAL;
    memset(out, 0, sizeof *out);
    out->index = index;
    out->count = t->count;
    size_t i = index;
    for (size_t k = 0; k + 1 < t->nlevel; k++) {
        size_t n = t->len[k];
        const uint8_t(*level)[32] = t->node + t->off[k];
        if (i & 1)
            memcpy(out->sib[out->len++], level[i - 1], 32);
        else if (i + 1 < n)
            memcpy(out->sib[out->len++], level[i + 1], 32);
        /* else: last node of an odd level, promoted without a sibling */
        i >>= 1;
    }
    return DM_OK;
}

void crypto_merkle_tree_destroy(crypto_merkle_tree_t *t)
{
    if (!t)
        return;
    free(t->node);
    free(t);
}

int crypto_merkle_root(uint8_t root[32], const uint8_t (*leaves)[32], size_t count)
{
    if (count == 0 || !leaves)
        return DM_EINVAL;
    if (count == 1) {
        memcpy(root, leaves[0], 32);
        return DM_OK;
    }
    /* one scratch level of ceil(count/2), reduced in place */
    size_t n = count / 2 + (count & 1);
    uint8_t(*buf)[32] = malloc(n * 32);
    if (!buf)
        return DM_ENOMEM;
    int rc = DM_OK;
    for (size_t i = 0; i + 1 < count; i += 2) {
        rc = node_hash(buf[i / 2], leaves[i], leaves[i + 1]);
        if (rc != DM_OK)
            goto out;
    }
    if (count & 1)
        memcpy(buf[n - 1], leaves[count - 1], 32);
    while (n > 1) {
        size_t m = n / 2 + (n & 1);
        /* slot i/2 is written after slots i and i+1 are read, so in place is safe */
        for (size_t i = 0; i + 1 < n; i += 2) {
            uint8_t h[32];
            rc = node_hash(h, buf[i], buf[i + 1]);
            if (rc != DM_OK)
                goto out;
            memcpy(buf[i / 2], h, 32);
        }
        if (n & 1)
            memcpy(buf[m - 1], buf[n - 1], 32);
        n = m;
    }
    memcpy(root, buf[0], 32);
out:
    free(buf);
    return rc;
}

int crypto_merkle_proof_verify(const uint8_t leaf[32], const crypto_merkle_proof *p,
                               const uint8_t root[32])
{
    if (!leaf || !p || !root)
        return DM_EINVAL;
    if (p->count == 0 || p->index >= p->count)
        return DM_EINVAL;
    if (p->len > CRYPTO_MERKLE_MAX_DEPTH || p->len != proof_len(p->index, p->count))
        return DM_EINVAL;
    uint8_t h[32], next[32];
    memcpy(h, leaf, 32);
    uint64_t i = p->index, n = p->count;
    uint32_t used = 0;
    while (n > 1) {
        /* the side comes from the position, never from the proof */
        if ((i & 1) || i + 1 < n) {
            const uint8_t *s = p->sib[used++];
            int rc = (i & 1) ? node_hash(next, s, h) : node_hash(next, h, s);
            if (rc != DM_OK)
                return rc;
            memcpy(h, next, 32);
        }
        i >>= 1;
        n = (n >> 1) + (n & 1);
    }
    return crypto_ct_eq(h, root, 32) ? DM_OK : DM_EBADSIG;
}
