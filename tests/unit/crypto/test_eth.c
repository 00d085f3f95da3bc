/*
 * Keccak-256 and Ethereum keys/addresses/signatures against the shared vectors
 * (ethereum/signing.json), plus the sponge checked against OpenSSL's SHA3-256
 * (same permutation and rate, different domain byte) at block boundaries.
 */
#include "dm_test.h"

#include "groups.h"

#include "crypto_eth.h"
#include "crypto_keccak.h"
#include "dm_err.h"

#include <ctype.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>

/* secp256k1 group order n */
static const uint8_t curve_n[32] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
};

static json_t *vectors;

static int eth_setup(void **state)
{
    (void)state;
    vectors = dm_test_vectors("ethereum/signing.json");
    return vectors ? 0 : -1;
}

static int eth_teardown(void **state)
{
    (void)state;
    json_decref(vectors);
    vectors = NULL;
    return 0;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s)
        fail_msg("vector field %s missing", key);
    return s;
}

/* 32-byte big-endian value of a decimal string, through OpenSSL's BIGNUM. */
static void dec_to_be32(uint8_t out[32], const char *dec)
{
    BIGNUM *bn = NULL;
    assert_int_equal(BN_dec2bn(&bn, dec), (int)strlen(dec));
    assert_int_equal(BN_bn2binpad(bn, out, 32), 32);
    BN_free(bn);
}

static void key_from_hex(crypto_eth_key *k, const char *hex)
{
    uint8_t priv[32];
    assert_int_equal(dm_test_unhex(priv, sizeof priv, hex), 32);
    assert_int_equal(crypto_eth_key_from_bytes(k, priv), DM_OK);
}

/* ---- Keccak-256 ---- */

static void keccak_split_check(const uint8_t *in, size_t n, const uint8_t want[32])
{
    uint8_t got[32];
    crypto_keccak256(got, in, n);
    assert_memory_equal(got, want, 32);
    /* byte at a time */
    crypto_keccak256_ctx c;
    crypto_keccak256_init(&c);
    for (size_t i = 0; i < n; i++)
        crypto_keccak256_update(&c, in + i, 1);
    crypto_keccak256_final(&c, got);
    assert_memory_equal(got, want, 32);
    /* every two-piece split */
    for (size_t s = 0; s <= n; s++) {
        crypto_keccak256_init(&c);
        crypto_keccak256_update(&c, in, s);
        crypto_keccak256_update(&c, in + s, n - s);
        crypto_keccak256_final(&c, got);
        assert_memory_equal(got, want, 32);
    }
}

static void test_keccak_vectors(void **state)
{
    (void)state;
    json_t *arr = json_object_get(vectors, "keccak256");
    assert_true(json_array_size(arr) >= 4);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        uint8_t want[32];
        assert_int_equal(dm_test_unhex(want, sizeof want, jstr(v, "hash")), 32);
        uint8_t *in = NULL;
        size_t n = 0;
        json_t *rep = json_object_get(v, "input_ascii_repeat");
        if (json_object_get(v, "input_hex")) {
            const char *hex = jstr(v, "input_hex");
            in = malloc(strlen(hex) / 2 + 1);
            assert_non_null(in);
            n = dm_test_unhex(in, strlen(hex) / 2 + 1, hex);
        } else if (json_object_get(v, "input_ascii")) {
            const char *s = jstr(v, "input_ascii");
            n = strlen(s);
            in = malloc(n + 1);
            assert_non_null(in);
            memcpy(in, s, n);
        } else if (rep) {
            const char *ch = json_string_value(json_object_get(rep, "char"));
            json_int_t count = json_integer_value(json_object_get(rep, "count"));
            assert_non_null(ch);
            assert_int_equal(strlen(ch), 1);
            assert_true(count > 0 && count < 100000);
            n = (size_t)count;
            in = malloc(n);
            assert_non_null(in);
            memset(in, ch[0], n);
        } else {
            fail_msg("keccak256 vector %zu has no input form", i);
        }
        keccak_split_check(in, n, want);
        free(in);
    }
}

/* The same sponge with SHA3's domain byte must equal OpenSSL's SHA3-256 for lengths
 * around the 136-byte rate; this checks the permutation and block handling
 * independently of the (few) official Keccak vectors. */
static void test_keccak_sponge_vs_openssl_sha3(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 7, 8, 9, 134, 135, 136, 137, 271, 272, 273, 408, 1000};
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        uint8_t want[32], got[32];
        unsigned wl = 0;
        assert_int_equal(EVP_Digest(buf, n, want, &wl, EVP_sha3_256(), NULL), 1);
        crypto_keccak256_ctx c;
        crypto__sha3_256_init(&c);
        crypto_keccak256_update(&c, buf, n);
        crypto_keccak256_final(&c, got);
        assert_memory_equal(got, want, 32);
        /* three pieces with an unaligned middle */
        size_t a = n / 3, b = n / 2;
        crypto__sha3_256_init(&c);
        crypto_keccak256_update(&c, buf, a);
        crypto_keccak256_update(&c, buf + a, b - a);
        crypto_keccak256_update(&c, buf + b, n - b);
        crypto_keccak256_final(&c, got);
        assert_memory_equal(got, want, 32);
        /* and the Keccak (0x01) result is a different hash */
        crypto_keccak256(got, buf, n);
        assert_memory_not_equal(got, want, 32);
    }
}

/* Lengths 135/136/137/272: the one-shot result must match every incremental split,
 * and the 200 x 'a' vector pins the multi-block path to a known answer. */
static void test_keccak_block_boundaries(void **state)
{
    (void)state;
    static const size_t lens[] = {135, 136, 137, 272};
    uint8_t buf[272];
    memset(buf, 'a', sizeof buf);
    uint8_t prev[32] = {0};
    for (size_t li = 0; li < 4; li++) {
        uint8_t want[32];
        crypto_keccak256(want, buf, lens[li]);
        keccak_split_check(buf, lens[li], want);
        assert_memory_not_equal(want, prev, 32);
        memcpy(prev, want, 32);
    }
    uint8_t a200[32];
    assert_int_equal(
        dm_test_unhex(a200, 32, "96ea54061def936c4be90b518992fdc6f12f535068a256229aca54267b4d084d"),
        32);
    uint8_t got[32];
    crypto_keccak256_ctx c;
    crypto_keccak256_init(&c);
    crypto_keccak256_update(&c, buf, 135);
    crypto_keccak256_update(&c, buf, 65);
    crypto_keccak256_final(&c, got);
    assert_memory_equal(got, a200, 32);
}

/* ---- keys and addresses ---- */

static void test_eth_addresses(void **state)
{
    (void)state;
    json_t *arr = json_object_get(vectors, "addresses");
    assert_true(json_array_size(arr) >= 3);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        crypto_eth_key k;
        key_from_hex(&k, jstr(v, "private_key"));
        uint8_t addr[20], parsed[20], pub[64];
        char text[43];
        assert_int_equal(crypto_eth_address(&k, addr), DM_OK);
        crypto_eth_address_format(addr, text);
        assert_string_equal(text, jstr(v, "address"));
        assert_int_equal(crypto_eth_address_parse(jstr(v, "address"), parsed), DM_OK);
        assert_memory_equal(parsed, addr, 20);
        /* pubkey -> address path agrees */
        assert_int_equal(crypto_eth_pubkey(&k, pub), DM_OK);
        uint8_t addr2[20];
        crypto_eth_address_from_pub(pub, addr2);
        assert_memory_equal(addr2, addr, 20);
        crypto_eth_key_wipe(&k);
        uint8_t zero[32] = {0};
        assert_memory_equal(k.priv, zero, 32);
    }
}

static void test_eth_eip55(void **state)
{
    (void)state;
    json_t *arr = json_object_get(vectors, "eip55_checksum");
    assert_true(json_array_size(arr) >= 1);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *lower = jstr(v, "lower"), *sum = jstr(v, "checksummed");
        uint8_t a[20], b[20];
        char text[43];
        assert_int_equal(crypto_eth_address_parse(lower, a), DM_OK);
        crypto_eth_address_format(a, text);
        assert_string_equal(text, sum);
        assert_int_equal(crypto_eth_address_parse(sum, b), DM_OK);
        assert_memory_equal(a, b, 20);
        /* all upper-case hex (with the "0x" prefix kept lower) is accepted */
        char upper[43];
        strcpy(upper, lower);
        for (int j = 2; j < 42; j++)
            upper[j] = (char)toupper((unsigned char)upper[j]);
        memset(b, 0, sizeof b);
        assert_int_equal(crypto_eth_address_parse(upper, b), DM_OK);
        assert_memory_equal(a, b, 20);
        /* any single letter with the wrong case breaks the checksum */
        int flipped = 0;
        for (int j = 2; j < 42; j++) {
            char bad[43];
            strcpy(bad, sum);
            if (!isalpha((unsigned char)bad[j]))
                continue;
            bad[j] = (char)(islower((unsigned char)bad[j]) ? toupper((unsigned char)bad[j])
                                                           : tolower((unsigned char)bad[j]));
            /* skip the two flips that make the text all-lower or all-upper */
            bool has_l = false, has_u = false;
            for (int m = 2; m < 42; m++) {
                has_l |= islower((unsigned char)bad[m]) != 0;
                has_u |= isupper((unsigned char)bad[m]) != 0;
            }
            if (!(has_l && has_u))
                continue;
            assert_int_equal(crypto_eth_address_parse(bad, b), DM_EINVAL);
            flipped++;
        }
        assert_true(flipped > 10);
        /* wrong length, prefix, characters */
        char s[64];
        snprintf(s, sizeof s, "%.41s", sum);
        assert_int_equal(crypto_eth_address_parse(s, b), DM_EINVAL);
        snprintf(s, sizeof s, "%s0", lower);
        assert_int_equal(crypto_eth_address_parse(s, b), DM_EINVAL);
        assert_int_equal(crypto_eth_address_parse(lower + 2, b), DM_EINVAL);
        snprintf(s, sizeof s, "00%s", lower + 2);
        assert_int_equal(crypto_eth_address_parse(s, b), DM_EINVAL);
        strcpy(s, lower);
        s[20] = 'g';
        assert_int_equal(crypto_eth_address_parse(s, b), DM_EINVAL);
        strcpy(s, lower);
        s[41] = ' ';
        assert_int_equal(crypto_eth_address_parse(s, b), DM_EINVAL);
        assert_int_equal(crypto_eth_address_parse("", b), DM_EINVAL);
        assert_int_equal(crypto_eth_address_parse(NULL, b), DM_EINVAL);
    }
    /* an address with no letters at all is accepted (no case to check) */
    uint8_t d[20];
    assert_int_equal(crypto_eth_address_parse("0x0123456789012345678901234567890123456789", d),
                     DM_OK);
    assert_int_equal(d[0], 0x01);
    assert_int_equal(d[19], 0x89);
}

static void test_eth_key_range(void **state)
{
    (void)state;
    crypto_eth_key k;
    uint8_t v[32];
    memset(v, 0, 32);
    memset(k.priv, 0xaa, 32);
    assert_int_equal(crypto_eth_key_from_bytes(&k, v), DM_EINVAL);
    memcpy(v, curve_n, 32);
    assert_int_equal(crypto_eth_key_from_bytes(&k, v), DM_EINVAL);
    v[31]++; /* n + 1 */
    assert_int_equal(crypto_eth_key_from_bytes(&k, v), DM_EINVAL);
    memset(v, 0xff, 32);
    assert_int_equal(crypto_eth_key_from_bytes(&k, v), DM_EINVAL);
    memcpy(v, curve_n, 32);
    v[31]--; /* n - 1: the largest valid scalar */
    assert_int_equal(crypto_eth_key_from_bytes(&k, v), DM_OK);
    uint8_t addr[20];
    assert_int_equal(crypto_eth_address(&k, addr), DM_OK);
    crypto_eth_key_wipe(&k);
}

static void test_eth_generate(void **state)
{
    (void)state;
    enum { N = 8 };
    crypto_eth_key keys[N];
    uint8_t addrs[N][20];
    uint8_t hash[32];
    crypto_keccak256(hash, "generated", 9);
    for (int i = 0; i < N; i++) {
        assert_int_equal(crypto_eth_key_generate(&keys[i]), DM_OK);
        crypto_eth_key copy;
        assert_int_equal(crypto_eth_key_from_bytes(&copy, keys[i].priv), DM_OK);
        assert_int_equal(crypto_eth_address(&keys[i], addrs[i]), DM_OK);
        for (int j = 0; j < i; j++) {
            assert_memory_not_equal(keys[i].priv, keys[j].priv, 32);
            assert_memory_not_equal(addrs[i], addrs[j], 20);
        }
        crypto_eth_sig sig;
        uint8_t rec[20];
        assert_int_equal(crypto_eth_sign_hash(&keys[i], hash, &sig), DM_OK);
        assert_int_equal(crypto_eth_recover(hash, &sig, rec), DM_OK);
        assert_memory_equal(rec, addrs[i], 20);
        crypto_eth_key_wipe(&copy);
    }
    for (int i = 0; i < N; i++)
        crypto_eth_key_wipe(&keys[i]);
}

/* ---- signatures ---- */

/* EIP-155 example: signing hash, deterministic r/s/v, signed_tx bytes, recovery. */
static void test_eth_eip155_example(void **state)
{
    (void)state;
    json_t *ex = json_object_get(vectors, "eip155_legacy_example");
    assert_non_null(ex);
    uint8_t data[256], want_hash[32], hash[32];
    size_t n = dm_test_unhex(data, sizeof data, jstr(ex, "signing_data"));
    assert_int_equal(dm_test_unhex(want_hash, 32, jstr(ex, "signing_hash")), 32);
    crypto_keccak256(hash, data, n);
    assert_memory_equal(hash, want_hash, 32);

    crypto_eth_key k;
    key_from_hex(&k, jstr(ex, "private_key"));
    crypto_eth_sig sig, sig2;
    assert_int_equal(crypto_eth_sign_hash(&k, hash, &sig), DM_OK);
    assert_int_equal(crypto_eth_sign_hash(&k, hash, &sig2), DM_OK);
    assert_memory_equal(&sig, &sig2, sizeof sig); /* RFC 6979: deterministic */

    json_int_t chain_id = json_integer_value(json_object_get(ex, "chain_id"));
    json_int_t v = json_integer_value(json_object_get(ex, "v"));
    assert_int_equal(sig.recid + 35 + 2 * chain_id, v);
    uint8_t r[32], s[32];
    dec_to_be32(r, jstr(ex, "r"));
    dec_to_be32(s, jstr(ex, "s"));
    assert_memory_equal(sig.r, r, 32);
    assert_memory_equal(sig.s, s, 32);

    /* signed_tx ends with the RLP items v (one byte, < 0x80), r and s (0xa0 + 32 bytes
     * each, as both have no leading zero here) */
    uint8_t tx[512];
    size_t txn = dm_test_unhex(tx, sizeof tx, jstr(ex, "signed_tx"));
    assert_true(txn > 67);
    assert_int_equal(tx[txn - 67], (uint8_t)v);
    assert_int_equal(tx[txn - 66], 0xa0);
    assert_memory_equal(tx + txn - 65, sig.r, 32);
    assert_int_equal(tx[txn - 33], 0xa0);
    assert_memory_equal(tx + txn - 32, sig.s, 32);

    uint8_t addr[20], rec[20];
    assert_int_equal(crypto_eth_address(&k, addr), DM_OK);
    assert_int_equal(crypto_eth_recover(hash, &sig, rec), DM_OK);
    assert_memory_equal(rec, addr, 20);
    char text[43];
    crypto_eth_address_format(rec, text);
    assert_string_equal(text, "0x9d8A62f656a8d1615C1294fd71e9CFb3E4855A4F");

    /* a modified hash recovers someone else (or nothing), never the signer */
    for (int bit = 0; bit < 256; bit += 37) {
        uint8_t h2[32];
        memcpy(h2, hash, 32);
        h2[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        int rc = crypto_eth_recover(h2, &sig, rec);
        if (rc == DM_OK)
            assert_memory_not_equal(rec, addr, 20);
        else
            assert_int_equal(rc, DM_EBADSIG);
    }
    crypto_eth_key_wipe(&k);
}

/* EIP-1559 example: tx_hash = keccak(signed_tx), and our signature reproduces the
 * independent signer's y_parity/r/s byte for byte, recovering the sender. The
 * unsigned payload is the signed list minus its last three items under a new list
 * header; only the one header form this vector needs is written here (RLP proper
 * lives in chain/). */
static void test_eth_eip1559_example(void **state)
{
    (void)state;
    json_t *ex = json_object_get(vectors, "eip1559_example");
    assert_non_null(ex);
    uint8_t tx[1024], want[32], got[32];
    size_t n = dm_test_unhex(tx, sizeof tx, jstr(ex, "signed_tx"));
    assert_int_equal(dm_test_unhex(want, 32, jstr(ex, "tx_hash")), 32);
    crypto_keccak256(got, tx, n);
    assert_memory_equal(got, want, 32);

    uint8_t r[32], s[32];
    assert_int_equal(dm_test_unhex(r, 32, jstr(ex, "r")), 32);
    assert_int_equal(dm_test_unhex(s, 32, jstr(ex, "s")), 32);
    json_int_t yp = json_integer_value(json_object_get(ex, "y_parity"));
    assert_true(yp == 0 || yp == 1);
    /* 0x02 || 0xf8 len || fields... || y_parity || 0xa0 r || 0xa0 s */
    assert_int_equal(tx[0], 0x02);
    assert_int_equal(tx[1], 0xf8);
    assert_int_equal(tx[2], n - 3);
    assert_int_equal(tx[n - 67], yp == 0 ? 0x80 : 0x01);
    assert_int_equal(tx[n - 66], 0xa0);
    assert_memory_equal(tx + n - 65, r, 32);
    assert_int_equal(tx[n - 33], 0xa0);
    assert_memory_equal(tx + n - 32, s, 32);
    size_t body = n - 3 - 67;
    assert_true(body >= 56 && body <= 255);
    uint8_t unsigned_tx[1024];
    unsigned_tx[0] = 0x02;
    unsigned_tx[1] = 0xf8;
    unsigned_tx[2] = (uint8_t)body;
    memcpy(unsigned_tx + 3, tx + 3, body);
    uint8_t hash[32];
    crypto_keccak256(hash, unsigned_tx, 3 + body);

    crypto_eth_key k;
    key_from_hex(&k, jstr(ex, "private_key"));
    crypto_eth_sig sig;
    assert_int_equal(crypto_eth_sign_hash(&k, hash, &sig), DM_OK);
    assert_int_equal(sig.recid, yp);
    assert_memory_equal(sig.r, r, 32);
    assert_memory_equal(sig.s, s, 32);
    uint8_t rec[20];
    char text[43];
    assert_int_equal(crypto_eth_recover(hash, &sig, rec), DM_OK);
    crypto_eth_address_format(rec, text);
    assert_string_equal(text, jstr(ex, "sender"));
    crypto_eth_key_wipe(&k);
}

/* Malformed signatures: recid out of range, r or s zero or >= n, high s. */
static void test_eth_recover_rejects(void **state)
{
    (void)state;
    crypto_eth_key k;
    uint8_t one[32] = {0};
    one[31] = 1;
    assert_int_equal(crypto_eth_key_from_bytes(&k, one), DM_OK);
    uint8_t hash[32], addr[20], rec[20];
    crypto_keccak256(hash, "recover", 7);
    assert_int_equal(crypto_eth_address(&k, addr), DM_OK);
    crypto_eth_sig sig, bad;
    assert_int_equal(crypto_eth_sign_hash(&k, hash, &sig), DM_OK);
    assert_true(sig.recid <= 1);
    assert_true(sig.s[0] < 0x80); /* low-s: s <= n/2 < 2^255 */
    assert_int_equal(crypto_eth_recover(hash, &sig, rec), DM_OK);
    assert_memory_equal(rec, addr, 20);

    /* the other parity recovers a different key */
    bad = sig;
    bad.recid ^= 1;
    int rc = crypto_eth_recover(hash, &bad, rec);
    assert_true(rc == DM_EBADSIG || (rc == DM_OK && memcmp(rec, addr, 20) != 0));
    for (uint8_t id = 2; id < 6; id++) {
        bad = sig;
        bad.recid = id;
        assert_int_equal(crypto_eth_recover(hash, &bad, rec), DM_EBADSIG);
    }
    bad = sig;
    memset(bad.r, 0, 32);
    assert_int_equal(crypto_eth_recover(hash, &bad, rec), DM_EBADSIG);
    bad = sig;
    memset(bad.s, 0, 32);
    assert_int_equal(crypto_eth_recover(hash, &bad, rec), DM_EBADSIG);
    bad = sig;
    memcpy(bad.r, curve_n, 32);
    assert_int_equal(crypto_eth_recover(hash, &bad, rec), DM_EBADSIG);
    bad = sig;
    memcpy(bad.s, curve_n, 32);
    assert_int_equal(crypto_eth_recover(hash, &bad, rec), DM_EBADSIG);
    /* high-s twin (n - s, flipped parity) is the same point maths but rejected (EIP-2) */
    BIGNUM *bn_n = BN_bin2bn(curve_n, 32, NULL), *bn_s = BN_bin2bn(sig.s, 32, NULL);
    assert_non_null(bn_n);
    assert_non_null(bn_s);
    assert_int_equal(BN_sub(bn_s, bn_n, bn_s), 1);
    bad = sig;
    assert_int_equal(BN_bn2binpad(bn_s, bad.s, 32), 32);
    bad.recid ^= 1;
    assert_int_equal(crypto_eth_recover(hash, &bad, rec), DM_EBADSIG);
    BN_free(bn_n);
    BN_free(bn_s);
    crypto_eth_key_wipe(&k);
}

/* The shared context from several threads at once (first use races pthread_once). */
typedef struct {
    int id;
    int failures;
} eth_thread_arg;

static void *eth_thread(void *p)
{
    eth_thread_arg *a = p;
    for (int i = 0; i < 50; i++) {
        crypto_eth_key k;
        uint8_t hash[32], addr[20], rec[20];
        char m[32];
        int n = snprintf(m, sizeof m, "%d/%d", a->id, i);
        crypto_keccak256(hash, m, (size_t)n);
        crypto_eth_sig sig;
        if (crypto_eth_key_generate(&k) || crypto_eth_address(&k, addr) ||
            crypto_eth_sign_hash(&k, hash, &sig) || crypto_eth_recover(hash, &sig, rec) ||
            memcmp(rec, addr, 20) != 0)
            a->failures++;
        crypto_eth_key_wipe(&k);
    }
    return NULL;
}

static void test_eth_threads(void **state)
{
    (void)state;
    pthread_t th[4];
    eth_thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (eth_thread_arg){i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, eth_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
}

int test_crypto_eth(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eth_threads), /* first: exercises the pthread_once race */
        cmocka_unit_test(test_keccak_vectors),
        cmocka_unit_test(test_keccak_sponge_vs_openssl_sha3),
        cmocka_unit_test(test_keccak_block_boundaries),
        cmocka_unit_test(test_eth_addresses),
        cmocka_unit_test(test_eth_eip55),
        cmocka_unit_test(test_eth_key_range),
        cmocka_unit_test(test_eth_generate),
        cmocka_unit_test(test_eth_eip155_example),
        cmocka_unit_test(test_eth_eip1559_example),
        cmocka_unit_test(test_eth_recover_rejects),
    };
    return cmocka_run_group_tests_name("crypto_eth", tests, eth_setup, eth_teardown);
}
