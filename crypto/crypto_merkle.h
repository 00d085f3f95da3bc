#ifndef DM_CRYPTO_MERKLE_H
#define DM_CRYPTO_MERKLE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Binary Merkle tree over SHA-256 with domain separation:
 *   leaf = SHA256(0x00 || data)      node = SHA256(0x01 || left || right)
 * A level with an odd count promotes its last node unchanged to the next
 * level (no duplication, so no CVE-2012-2459-style second preimage). A proof
 * is bound to (index, count): the verifier derives each step's side and
 * whether a level has a sibling from them, so a proof cannot be replayed for
 * another position. Documented in docs/ANCHORING.md.
 */
#define CRYPTO_MERKLE_MAX_DEPTH 64

typedef struct crypto_merkle_tree crypto_merkle_tree_t;

typedef struct {
    uint64_t index;
    uint64_t count;
    uint32_t len; /* number of siblings used */
    uint8_t sib[CRYPTO_MERKLE_MAX_DEPTH][32];
} crypto_merkle_proof;

void crypto_merkle_leaf_hash(uint8_t out[32], const void *data, size_t n);
void crypto_merkle_node_hash(uint8_t out[32], const uint8_t left[32], const uint8_t right[32]);
/** Build over `count` >= 1 leaf hashes (borrowed, copied). */
int crypto_merkle_tree_build(crypto_merkle_tree_t **out, const uint8_t (*leaves)[32],
                             size_t count);
void crypto_merkle_tree_root(const crypto_merkle_tree_t *t, uint8_t root[32]);
int crypto_merkle_tree_proof(const crypto_merkle_tree_t *t, size_t index,
                             crypto_merkle_proof *out);
void crypto_merkle_tree_destroy(crypto_merkle_tree_t *t);
/** Root without keeping the tree. */
int crypto_merkle_root(uint8_t root[32], const uint8_t (*leaves)[32], size_t count);
/** DM_OK if `leaf` (a leaf hash) at proof->index of proof->count reaches `root`;
 *  DM_EBADSIG if not; DM_EINVAL if the proof's shape is impossible. */
int crypto_merkle_proof_verify(const uint8_t leaf[32], const crypto_merkle_proof *p,
                               const uint8_t root[32]);

#endif
