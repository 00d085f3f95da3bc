/* Unit tests for crypto_hash (SHA-256, HMAC-SHA256, PBKDF2) and crypto_mem. */
#include "dm_test.h"
#include "groups.h"

#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_err.h"

static void assert_hex_eq(const uint8_t *got, size_t n, const char *want_hex)
{
    uint8_t want[128];
    size_t wn = dm_test_unhex(want, sizeof want, want_hex);
    assert_int_equal(wn, n);
    assert_memory_equal(got, want, n);
}

/* FIPS 180-2 appendix B plus the empty message. */
static void test_sha256_known_answers(void **state)
{
    (void)state;
    static const struct {
        const char *msg;
        const char *hex;
    } kat[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint8_t h[CRYPTO_SHA256_LEN];
        assert_int_equal(crypto_sha256(h, kat[i].msg, strlen(kat[i].msg)), DM_OK);
        assert_hex_eq(h, sizeof h, kat[i].hex);
        char hex[65];
        assert_int_equal(crypto_sha256_hex(hex, kat[i].msg, strlen(kat[i].msg)), DM_OK);
        assert_string_equal(hex, kat[i].hex);
    }
    /* the empty message also through a NULL pointer */
    uint8_t h[CRYPTO_SHA256_LEN];
    assert_int_equal(crypto_sha256(h, NULL, 0), DM_OK);
    assert_hex_eq(h, sizeof h, kat[1].hex);
}

static void test_sha256_million_a(void **state)
{
    (void)state;
    size_t n = 1000000;
    char *m = malloc(n);
    assert_non_null(m);
    memset(m, 'a', n);
    uint8_t h[CRYPTO_SHA256_LEN];
    assert_int_equal(crypto_sha256(h, m, n), DM_OK);
    assert_hex_eq(h, sizeof h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    /* the same million bytes in uneven parts (incl. empty and NULL/0 parts) */
    const void *parts[] = {m, NULL, m + 1, m + 64, m + 65, m + 999999};
    size_t lens[] = {1, 0, 63, 1, 999934, 1};
    uint8_t hp[CRYPTO_SHA256_LEN];
    assert_int_equal(crypto_sha256_parts(hp, parts, lens, 6), DM_OK);
    assert_memory_equal(hp, h, sizeof h);
    free(m);
}

static void test_sha256_parts(void **state)
{
    (void)state;
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    size_t n = strlen(msg);
    uint8_t one[CRYPTO_SHA256_LEN], parts_h[CRYPTO_SHA256_LEN];
    assert_int_equal(crypto_sha256(one, msg, n), DM_OK);
    for (size_t cut = 0; cut <= n; cut++) {
        const void *parts[] = {msg, msg + cut};
        size_t lens[] = {cut, n - cut};
        assert_int_equal(crypto_sha256_parts(parts_h, parts, lens, 2), DM_OK);
        assert_memory_equal(parts_h, one, sizeof one);
    }
    /* no parts is the empty message */
    uint8_t empty[CRYPTO_SHA256_LEN];
    assert_int_equal(crypto_sha256(empty, "", 0), DM_OK);
    assert_int_equal(crypto_sha256_parts(parts_h, NULL, NULL, 0), DM_OK);
    assert_memory_equal(parts_h, empty, sizeof empty);
    /* a different split of different bytes must differ */
    const void *p2[] = {"ab", "d"};
    size_t l2[] = {2, 1};
    assert_int_equal(crypto_sha256_parts(parts_h, p2, l2, 2), DM_OK);
    uint8_t abc[CRYPTO_SHA256_LEN];
    assert_int_equal(crypto_sha256(abc, "abc", 3), DM_OK);
    assert_memory_not_equal(parts_h, abc, sizeof abc);
}

/* RFC 4231 test cases 1-4, 6, 7 (case 5 is a truncated output, not offered by the API). */
static void test_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t k0b[20], kaa20[20], kaa131[131], k25[25], ddd[50], dcd[50];
    memset(k0b, 0x0b, sizeof k0b);
    memset(kaa20, 0xaa, sizeof kaa20);
    memset(kaa131, 0xaa, sizeof kaa131);
    for (int i = 0; i < 25; i++)
        k25[i] = (uint8_t)(i + 1);
    memset(ddd, 0xdd, sizeof ddd);
    memset(dcd, 0xcd, sizeof dcd);
    static const char t6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    static const char t7[] = "This is a test using a larger than block-size key and a larger than "
                             "block-size data. The key needs to be hashed before being used by "
                             "the HMAC algorithm.";
    const struct {
        int tc;
        const uint8_t *key;
        size_t keylen;
        const void *data;
        size_t n;
        const char *hex;
    } v[] = {
        {1, k0b, sizeof k0b, "Hi There", 8,
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
        {2, (const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28,
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {3, kaa20, sizeof kaa20, ddd, sizeof ddd,
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
        {4, k25, sizeof k25, dcd, sizeof dcd,
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
        {6, kaa131, sizeof kaa131, t6, sizeof t6 - 1,
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
        {7, kaa131, sizeof kaa131, t7, sizeof t7 - 1,
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t mac[CRYPTO_SHA256_LEN];
        assert_int_equal(crypto_hmac_sha256(mac, v[i].key, v[i].keylen, v[i].data, v[i].n), DM_OK);
        uint8_t want[CRYPTO_SHA256_LEN];
        dm_test_unhex(want, sizeof want, v[i].hex);
        if (memcmp(mac, want, sizeof want) != 0)
            fail_msg("RFC 4231 test case %d mismatch", v[i].tc);
    }
    /* empty key and empty message (a NULL key with length 0 is the empty key) */
    uint8_t mac[CRYPTO_SHA256_LEN];
    assert_int_equal(crypto_hmac_sha256(mac, NULL, 0, NULL, 0), DM_OK);
    assert_hex_eq(mac, sizeof mac,
                  "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
    assert_int_equal(crypto_hmac_sha256(mac, NULL, 5, "x", 1), DM_EINVAL);
}

/* RFC 7914 §11 PBKDF2-HMAC-SHA256 vectors. */
static void test_pbkdf2_rfc7914(void **state)
{
    (void)state;
    uint8_t dk[64];
    assert_int_equal(
        crypto_pbkdf2_sha256(dk, sizeof dk, "passwd", 6, (const uint8_t *)"salt", 4, 1), DM_OK);
    assert_hex_eq(dk, sizeof dk,
                  "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
                  "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783");
    assert_int_equal(
        crypto_pbkdf2_sha256(dk, sizeof dk, "Password", 8, (const uint8_t *)"NaCl", 4, 80000),
        DM_OK);
    assert_hex_eq(dk, sizeof dk,
                  "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
                  "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d");
    /* iterations must be >= 1 */
    assert_int_equal(
        crypto_pbkdf2_sha256(dk, sizeof dk, "passwd", 6, (const uint8_t *)"salt", 4, 0), DM_EINVAL);
    assert_int_equal(crypto_pbkdf2_sha256(dk, 0, "passwd", 6, (const uint8_t *)"salt", 4, 1),
                     DM_EINVAL);
}

static void test_ct_eq(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    for (int i = 0; i < 32; i++)
        a[i] = b[i] = (uint8_t)(i * 7);
    assert_true(crypto_ct_eq(a, b, sizeof a));
    b[31] ^= 1;
    assert_false(crypto_ct_eq(a, b, sizeof a));
    assert_true(crypto_ct_eq(a, b, 31));
    b[31] ^= 1;
    b[0] ^= 0x80;
    assert_false(crypto_ct_eq(a, b, sizeof a));
    assert_true(crypto_ct_eq(a, b, 0));

    assert_true(crypto_ct_streq("secret-token", "secret-token"));
    assert_false(crypto_ct_streq("secret-tokeN", "secret-token"));
    assert_false(crypto_ct_streq("secret-toke", "secret-token"));
    assert_false(crypto_ct_streq("secret-token!", "secret-token"));
    assert_false(crypto_ct_streq("", "secret-token"));
    assert_false(crypto_ct_streq("x", ""));
    assert_true(crypto_ct_streq("", ""));
}

static void test_memzero(void **state)
{
    (void)state;
    uint8_t buf[64];
    memset(buf, 0xa5, sizeof buf);
    crypto_memzero(buf + 8, 48);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], (i < 8 || i >= 56) ? 0xa5 : 0);
    crypto_memzero(NULL, 10); /* NULL-safe */
    crypto_memzero(buf, 0);
    assert_int_equal(buf[0], 0xa5);
}

static void test_random(void **state)
{
    (void)state;
    uint8_t a[32], b[32], zero[32] = {0};
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    assert_int_equal(crypto_random(a, sizeof a), DM_OK);
    assert_int_equal(crypto_random(b, sizeof b), DM_OK);
    assert_memory_not_equal(a, b, sizeof a);
    assert_memory_not_equal(a, zero, sizeof a);
    assert_int_equal(crypto_random(a, 0), DM_OK);
}

int test_crypto_hash(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_known_answers),
        cmocka_unit_test(test_sha256_million_a),
        cmocka_unit_test(test_sha256_parts),
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_pbkdf2_rfc7914),
        cmocka_unit_test(test_ct_eq),
        cmocka_unit_test(test_memzero),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests_name("crypto_hash", tests, NULL, NULL);
}
