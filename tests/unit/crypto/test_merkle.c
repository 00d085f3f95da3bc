/* Merkle trees and proofs: hand-computed roots, then properties over many tree sizes. */
#include "dm_test.h"
#include "groups.h"

#include "crypto_merkle.h"
#include "dm_err.h"

#include <openssl/sha.h>
#include <stdbool.h>

/* Roots computed independently (Python hashlib) for leaves "a", "b", "c", "d", "e". */
static const char *const leaf_a_hex =
    "022a6979e6dab7aa5ae4c3e5e45f7e977112a7e63593820dbec1ec738a24f93c";
static const char *const root2_hex =
    "b137985ff484fb600db93107c77b0365c80d78f5b429ded0fd97361d077999eb";
static const char *const root3_hex =
    "36642e73c2540ab121e3a6bf9545b0a24982cd830eb13d3cd19de3ce6c021ec1";
static const char *const root5_hex =
    "fe14a5426fbd70c0fa73f52342afed0da0bd23c4838662ccf6b88a3070ead97b";

/* ---- an independent reference built on OpenSSL's one-shot SHA256() ---- */

static void ref_leaf(uint8_t out[32], const void *data, size_t n)
{
    uint8_t buf[64];
    assert_true(n < sizeof buf);
    buf[0] = 0x00;
    memcpy(buf + 1, data, n);
    SHA256(buf, n + 1, out);
}

static void ref_node(uint8_t out[32], const uint8_t l[32], const uint8_t r[32])
{
    uint8_t buf[65];
    buf[0] = 0x01;
    memcpy(buf + 1, l, 32);
    memcpy(buf + 33, r, 32);
    SHA256(buf, sizeof buf, out);
}

static void ref_root(uint8_t root[32], const uint8_t (*leaves)[32], size_t n)
{
    uint8_t(*lv)[32] = malloc(n * 32);
    assert_non_null(lv);
    memcpy(lv, leaves, n * 32);
    while (n > 1) {
        size_t m = 0;
        for (size_t i = 0; i < n; i += 2, m++) {
            if (i + 1 < n) {
                uint8_t h[32];
                ref_node(h, lv[i], lv[i + 1]);
                memcpy(lv[m], h, 32);
            } else {
                memmove(lv[m], lv[i], 32);
            }
        }
        n = m;
    }
    memcpy(root, lv[0], 32);
    free(lv);
}

/* Per level: 0 = promoted (no sibling), 1 = sibling on the right, 2 = on the left. */
static size_t ref_shape(uint8_t shape[CRYPTO_MERKLE_MAX_DEPTH + 1], uint64_t index, uint64_t count)
{
    size_t k = 0;
    while (count > 1) {
        shape[k++] = (index & 1) ? 2 : (index + 1 < count ? 1 : 0);
        index >>= 1;
        count = count / 2 + (count & 1);
    }
    return k;
}

static bool same_shape(uint64_t i1, uint64_t c1, uint64_t i2, uint64_t c2)
{
    uint8_t a[CRYPTO_MERKLE_MAX_DEPTH + 1], b[CRYPTO_MERKLE_MAX_DEPTH + 1];
    size_t na = ref_shape(a, i1, c1), nb = ref_shape(b, i2, c2);
    return na == nb && memcmp(a, b, na) == 0;
}

/* Distinct leaf hashes: leaf i = SHA256(0x00 || "leaf-<i>"). */
static uint8_t (*make_leaves(size_t n))[32]
{
    uint8_t(*lv)[32] = malloc(n * 32);
    assert_non_null(lv);
    for (size_t i = 0; i < n; i++) {
        char d[32];
        int len = snprintf(d, sizeof d, "leaf-%zu", i);
        crypto_merkle_leaf_hash(lv[i], d, (size_t)len);
    }
    return lv;
}

static void flip(uint8_t *p, unsigned bit)
{
    p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
}

/* ---- hand-computed roots ---- */

static void test_hash_domains(void **state)
{
    (void)state;
    uint8_t h[32], want[32], ref[32];
    crypto_merkle_leaf_hash(h, "", 0);
    dm_test_unhex(want, 32, "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    assert_memory_equal(h, want, 32);
    crypto_merkle_leaf_hash(h, "a", 1);
    dm_test_unhex(want, 32, leaf_a_hex);
    assert_memory_equal(h, want, 32);
    ref_leaf(ref, "a", 1);
    assert_memory_equal(h, ref, 32);
    /* the node tag separates a node from a leaf over the same 64 bytes */
    uint8_t l[32], r[32], both[64];
    crypto_merkle_leaf_hash(l, "l", 1);
    crypto_merkle_leaf_hash(r, "r", 1);
    memcpy(both, l, 32);
    memcpy(both + 32, r, 32);
    crypto_merkle_node_hash(h, l, r);
    ref_node(ref, l, r);
    assert_memory_equal(h, ref, 32);
    uint8_t as_leaf[32];
    crypto_merkle_leaf_hash(as_leaf, both, 64);
    assert_memory_not_equal(h, as_leaf, 32);
    /* order matters */
    crypto_merkle_node_hash(ref, r, l);
    assert_memory_not_equal(h, ref, 32);
}

static void check_root(const char *const *data, size_t n, const char *hex)
{
    uint8_t leaves[8][32], want[32], got[32];
    for (size_t i = 0; i < n; i++)
        crypto_merkle_leaf_hash(leaves[i], data[i], strlen(data[i]));
    dm_test_unhex(want, 32, hex);
    assert_int_equal(crypto_merkle_root(got, (const uint8_t(*)[32])leaves, n), DM_OK);
    assert_memory_equal(got, want, 32);
    crypto_merkle_tree_t *t = NULL;
    assert_int_equal(crypto_merkle_tree_build(&t, (const uint8_t(*)[32])leaves, n), DM_OK);
    crypto_merkle_tree_root(t, got);
    assert_memory_equal(got, want, 32);
    for (size_t i = 0; i < n; i++) {
        crypto_merkle_proof p;
        assert_int_equal(crypto_merkle_tree_proof(t, i, &p), DM_OK);
        assert_int_equal(crypto_merkle_proof_verify(leaves[i], &p, want), DM_OK);
    }
    crypto_merkle_tree_destroy(t);
}

static void test_known_roots(void **state)
{
    (void)state;
    static const char *const d[] = {"a", "b", "c", "d", "e"};
    check_root(d, 1, leaf_a_hex); /* a single leaf is its own root */
    check_root(d, 2, root2_hex);
    check_root(d, 3, root3_hex); /* "c" promoted: N(N(a,b), c) */
    check_root(d, 5, root5_hex); /* N(N(N(a,b),N(c,d)), e) */
}

/* The exact shape of the proofs of a 5-leaf tree. */
static void test_proof_shape(void **state)
{
    (void)state;
    uint8_t(*lv)[32] = make_leaves(5);
    crypto_merkle_tree_t *t = NULL;
    assert_int_equal(crypto_merkle_tree_build(&t, (const uint8_t(*)[32])lv, 5), DM_OK);
    uint8_t n01[32], n23[32], n0123[32];
    ref_node(n01, lv[0], lv[1]);
    ref_node(n23, lv[2], lv[3]);
    ref_node(n0123, n01, n23);
    crypto_merkle_proof p;
    assert_int_equal(crypto_merkle_tree_proof(t, 0, &p), DM_OK);
    assert_int_equal(p.index, 0);
    assert_int_equal(p.count, 5);
    assert_int_equal(p.len, 3);
    assert_memory_equal(p.sib[0], lv[1], 32);
    assert_memory_equal(p.sib[1], n23, 32);
    assert_memory_equal(p.sib[2], lv[4], 32);
    /* leaf 4 is promoted twice and meets the left subtree at the top */
    assert_int_equal(crypto_merkle_tree_proof(t, 4, &p), DM_OK);
    assert_int_equal(p.len, 1);
    assert_memory_equal(p.sib[0], n0123, 32);
    assert_int_equal(crypto_merkle_tree_proof(t, 5, &p), DM_EINVAL);
    crypto_merkle_tree_destroy(t);
    free(lv);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    uint8_t(*lv)[32] = make_leaves(4);
    crypto_merkle_tree_t *t = (crypto_merkle_tree_t *)1;
    uint8_t root[32];
    assert_int_equal(crypto_merkle_tree_build(&t, (const uint8_t(*)[32])lv, 0), DM_EINVAL);
    assert_null(t);
    assert_int_equal(crypto_merkle_root(root, (const uint8_t(*)[32])lv, 0), DM_EINVAL);
    crypto_merkle_tree_destroy(NULL);

    assert_int_equal(crypto_merkle_tree_build(&t, (const uint8_t(*)[32])lv, 4), DM_OK);
    crypto_merkle_tree_root(t, root);
    crypto_merkle_proof p;
    assert_int_equal(crypto_merkle_tree_proof(t, 1, &p), DM_OK);
    assert_int_equal(crypto_merkle_proof_verify(lv[1], &p, root), DM_OK);

    crypto_merkle_proof q = p;
    q.count = 0;
    assert_int_equal(crypto_merkle_proof_verify(lv[1], &q, root), DM_EINVAL);
    q = p;
    q.index = 4; /* == count */
    assert_int_equal(crypto_merkle_proof_verify(lv[1], &q, root), DM_EINVAL);
    q = p;
    q.index = UINT64_MAX;
    assert_int_equal(crypto_merkle_proof_verify(lv[1], &q, root), DM_EINVAL);
    q = p;
    q.len = 1; /* too short for (1, 4) */
    assert_int_equal(crypto_merkle_proof_verify(lv[1], &q, root), DM_EINVAL);
    q = p;
    q.len = 3; /* too long */
    assert_int_equal(crypto_merkle_proof_verify(lv[1], &q, root), DM_EINVAL);
    q = p;
    q.len = CRYPTO_MERKLE_MAX_DEPTH + 1;
    assert_int_equal(crypto_merkle_proof_verify(lv[1], &q, root), DM_EINVAL);
    q = p;
    q.len = UINT32_MAX;
    assert_int_equal(crypto_merkle_proof_verify(lv[1], &q, root), DM_EINVAL);
    /* the largest count still gives a well-formed 64-level shape */
    memset(&q, 0, sizeof q);
    q.count = UINT64_MAX;
    q.index = 0;
    q.len = 64;
    assert_int_equal(crypto_merkle_proof_verify(lv[0], &q, root), DM_EBADSIG);
    crypto_merkle_tree_destroy(t);
    free(lv);
}

/* Every property for one tree size. `full` flips every bit; otherwise a few
 * positions that move with the leaf index so all bit positions get covered. */
static void check_count(size_t count, bool full, bool all_pairs)
{
    uint8_t(*lv)[32] = make_leaves(count);
    crypto_merkle_tree_t *t = NULL;
    assert_int_equal(crypto_merkle_tree_build(&t, (const uint8_t(*)[32])lv, count), DM_OK);
    uint8_t root[32], root2[32], ref[32];
    crypto_merkle_tree_root(t, root);
    assert_int_equal(crypto_merkle_root(root2, (const uint8_t(*)[32])lv, count), DM_OK);
    assert_memory_equal(root, root2, 32);
    ref_root(ref, (const uint8_t(*)[32])lv, count);
    assert_memory_equal(root, ref, 32);

    unsigned nbits = full ? 256 : 3;
    for (size_t i = 0; i < count; i++) {
        crypto_merkle_proof p;
        assert_int_equal(crypto_merkle_tree_proof(t, i, &p), DM_OK);
        assert_int_equal(p.index, i);
        assert_int_equal(p.count, count);
        uint8_t shape[CRYPTO_MERKLE_MAX_DEPTH + 1];
        size_t levels = ref_shape(shape, i, count);
        size_t want_len = 0;
        for (size_t k = 0; k < levels; k++)
            want_len += shape[k] != 0;
        assert_int_equal(p.len, want_len);
        assert_int_equal(crypto_merkle_proof_verify(lv[i], &p, root), DM_OK);

        for (unsigned b = 0; b < nbits; b++) {
            unsigned bit = full ? b : (unsigned)((i * 37 + b * 101) % 256);
            uint8_t x[32];
            memcpy(x, lv[i], 32);
            flip(x, bit);
            assert_int_equal(crypto_merkle_proof_verify(x, &p, root), DM_EBADSIG);
            memcpy(x, root, 32);
            flip(x, bit);
            assert_int_equal(crypto_merkle_proof_verify(lv[i], &p, x), DM_EBADSIG);
            for (uint32_t s = 0; s < p.len; s++) {
                crypto_merkle_proof q = p;
                flip(q.sib[s], bit);
                assert_int_equal(crypto_merkle_proof_verify(lv[i], &q, root), DM_EBADSIG);
            }
        }

        /* another position in the same tree never verifies (its side pattern
         * differs somewhere), whether the shape check or the hash catches it */
        size_t jmax = all_pairs ? count : (i + 3 < count ? i + 3 : count);
        for (size_t j = all_pairs ? 0 : (i >= 2 ? i - 2 : 0); j < jmax; j++) {
            if (j == i)
                continue;
            crypto_merkle_proof q = p;
            q.index = j;
            assert_int_not_equal(crypto_merkle_proof_verify(lv[i], &q, root), DM_OK);
            /* nor does this proof carry another leaf, at either index */
            assert_int_not_equal(crypto_merkle_proof_verify(lv[j], &p, root), DM_OK);
            assert_int_not_equal(crypto_merkle_proof_verify(lv[j], &q, root), DM_OK);
        }
        /* An altered count fails unless it leaves the side pattern of this
         * index unchanged (e.g. index 0 of 5 vs 6): then the claim is about
         * the same path, and the count must come from the anchor record. */
        const uint64_t counts[] = {count - 1, count + 1, count * 2, count + 7, (uint64_t)1 << 40};
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            crypto_merkle_proof q = p;
            q.count = counts[c];
            int rc = crypto_merkle_proof_verify(lv[i], &q, root);
            if (q.count <= i)
                assert_int_equal(rc, DM_EINVAL);
            else if (!same_shape(i, count, i, q.count))
                assert_int_not_equal(rc, DM_OK);
            else
                assert_int_equal(rc, DM_OK);
        }
    }
    crypto_merkle_tree_destroy(t);
    free(lv);
}

static void test_counts_small(void **state)
{
    (void)state;
    for (size_t n = 1; n <= 130; n++)
        check_count(n, n <= 17, n <= 40);
}

static void test_counts_large(void **state)
{
    (void)state;
    check_count(1000, false, false);
    check_count(1025, false, false);
    check_count(4096, false, false);
    check_count(4097, false, false);
}

/* Two trees that differ in one leaf: proofs of the other leaves from one
 * tree do not verify against the other's root. */
static void test_cross_tree(void **state)
{
    (void)state;
    uint8_t(*a)[32] = make_leaves(9);
    uint8_t(*b)[32] = make_leaves(9);
    flip(b[6], 0);
    crypto_merkle_tree_t *ta = NULL, *tb = NULL;
    assert_int_equal(crypto_merkle_tree_build(&ta, (const uint8_t(*)[32])a, 9), DM_OK);
    assert_int_equal(crypto_merkle_tree_build(&tb, (const uint8_t(*)[32])b, 9), DM_OK);
    uint8_t ra[32], rb[32];
    crypto_merkle_tree_root(ta, ra);
    crypto_merkle_tree_root(tb, rb);
    assert_memory_not_equal(ra, rb, 32);
    for (size_t i = 0; i < 9; i++) {
        crypto_merkle_proof p;
        assert_int_equal(crypto_merkle_tree_proof(ta, i, &p), DM_OK);
        assert_int_equal(crypto_merkle_proof_verify(a[i], &p, ra), DM_OK);
        assert_int_equal(crypto_merkle_proof_verify(a[i], &p, rb), DM_EBADSIG);
    }
    crypto_merkle_tree_destroy(ta);
    crypto_merkle_tree_destroy(tb);
    free(a);
    free(b);
}

int test_crypto_merkle(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_domains), cmocka_unit_test(test_known_roots),
        cmocka_unit_test(test_proof_shape),  cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_counts_small), cmocka_unit_test(test_counts_large),
        cmocka_unit_test(test_cross_tree),
    };
    return cmocka_run_group_tests_name("crypto_merkle", tests, NULL, NULL);
}
