/*
 * RSA node keys: round trips, tamper detection, key-size policy, serialisation,
 * and interoperability with OpenSSL's own EVP API configured independently
 * here, which pins the padding to exactly PSS / MGF1-SHA256 / maximum salt.
 */
#include "dm_test.h"

#include "groups.h"

#include "crypto_rsa.h"
#include "dm_buf.h"
#include "dm_err.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <pthread.h>

typedef struct {
    crypto_rsa_t *k2048;
    crypto_rsa_t *k2048b; /* a second, unrelated 2048-bit key */
    crypto_rsa_t *k3072;
} rsa_keys;

static const char msg[] = "share body: recipient 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

static int keys_setup(void **state)
{
    rsa_keys *ks = calloc(1, sizeof *ks);
    if (!ks || crypto_rsa_generate(&ks->k2048, 2048) || crypto_rsa_generate(&ks->k2048b, 2048) ||
        crypto_rsa_generate(&ks->k3072, 3072))
        return -1;
    *state = ks;
    return 0;
}

static int keys_teardown(void **state)
{
    rsa_keys *ks = *state;
    if (ks) {
        crypto_rsa_destroy(ks->k2048);
        crypto_rsa_destroy(ks->k2048b);
        crypto_rsa_destroy(ks->k3072);
        free(ks);
    }
    return 0;
}

/* ---- helpers using OpenSSL directly (independent of crypto_rsa.c) ---- */

/* The private key as an OpenSSL EVP_PKEY, via our PKCS#8 export. */
static EVP_PKEY *ossl_priv(const crypto_rsa_t *k)
{
    dm_buf der = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_to_pkcs8(k, &der), DM_OK);
    const unsigned char *p = der.data;
    EVP_PKEY *pk = d2i_AutoPrivateKey(NULL, &p, (long)der.len);
    assert_non_null(pk);
    dm_buf_free_secure(&der);
    return pk;
}

/* Sign with OpenSSL configured by OSSL_PARAMs (not the EVP_PKEY_CTX_set_* calls
 * the module uses). saltlen is "max", "digest" or a decimal number. */
static void ossl_sign(EVP_PKEY *pk, const char *saltlen, const void *m, size_t n, uint8_t *sig,
                      size_t *siglen)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, "pss", 0),
        OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, (char *)saltlen, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    assert_non_null(mctx);
    assert_int_equal(EVP_DigestSignInit_ex(mctx, NULL, "SHA256", NULL, NULL, pk, params), 1);
    assert_int_equal(EVP_DigestSign(mctx, sig, siglen, m, n), 1);
    EVP_MD_CTX_free(mctx);
}

static int ossl_verify(EVP_PKEY *pk, const char *saltlen, const void *m, size_t n,
                       const uint8_t *sig, size_t siglen)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, "pss", 0),
        OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, (char *)saltlen, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    assert_non_null(mctx);
    assert_int_equal(EVP_DigestVerifyInit_ex(mctx, NULL, "SHA256", NULL, NULL, pk, params), 1);
    int r = EVP_DigestVerify(mctx, sig, siglen, m, n);
    EVP_MD_CTX_free(mctx);
    return r;
}

static void sha256(uint8_t out[32], const void *d, size_t n)
{
    unsigned len = 0;
    assert_int_equal(EVP_Digest(d, n, out, &len, EVP_sha256(), NULL), 1);
    assert_int_equal(len, 32);
}

static dm_buf pkey_der(EVP_PKEY *pk, bool priv)
{
    dm_buf b = DM_BUF_INIT;
    unsigned char *der = NULL;
    int len;
    if (priv) {
        PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
        assert_non_null(p8);
        len = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
        PKCS8_PRIV_KEY_INFO_free(p8);
    } else {
        len = i2d_PUBKEY(pk, &der);
    }
    assert_true(len > 0);
    assert_int_equal(dm_buf_append(&b, der, (size_t)len), DM_OK);
    OPENSSL_clear_free(der, (size_t)len);
    return b;
}

/* ---- tests ---- */

static void check_round_trip(crypto_rsa_t *k, unsigned bits)
{
    assert_int_equal(crypto_rsa_bits(k), bits);
    assert_true(crypto_rsa_is_private(k));
    dm_buf sig = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_sign(k, msg, sizeof msg - 1, &sig), DM_OK);
    assert_int_equal(sig.len, bits / 8);
    assert_int_equal(crypto_rsa_verify(k, msg, sizeof msg - 1, sig.data, sig.len), DM_OK);
    /* randomised salt: a second signature of the same message differs, and verifies */
    dm_buf sig2 = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_sign(k, msg, sizeof msg - 1, &sig2), DM_OK);
    assert_int_equal(sig2.len, bits / 8);
    assert_memory_not_equal(sig.data, sig2.data, sig.len);
    assert_int_equal(crypto_rsa_verify(k, msg, sizeof msg - 1, sig2.data, sig2.len), DM_OK);
    /* sign appends */
    assert_int_equal(crypto_rsa_sign(k, "", 0, &sig2), DM_OK);
    assert_int_equal(sig2.len, 2 * (bits / 8));
    assert_int_equal(crypto_rsa_verify(k, "", 0, sig2.data + bits / 8, bits / 8), DM_OK);
    assert_int_equal(crypto_rsa_verify(k, msg, sizeof msg - 1, sig2.data + bits / 8, bits / 8),
                     DM_EBADSIG);
    dm_buf_free(&sig);
    dm_buf_free(&sig2);
}

static void test_rsa_round_trip_2048(void **state)
{
    check_round_trip(((rsa_keys *)*state)->k2048, 2048);
}

static void test_rsa_round_trip_3072(void **state)
{
    check_round_trip(((rsa_keys *)*state)->k3072, 3072);
}

static void test_rsa_tamper(void **state)
{
    rsa_keys *ks = *state;
    crypto_rsa_t *k = ks->k2048;
    uint8_t m[sizeof msg - 1];
    memcpy(m, msg, sizeof m);
    dm_buf sig = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_sign(k, m, sizeof m, &sig), DM_OK);

    /* every one-bit change of the message */
    for (size_t bit = 0; bit < 8 * sizeof m; bit++) {
        m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(crypto_rsa_verify(k, m, sizeof m, sig.data, sig.len), DM_EBADSIG);
        m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    /* every one-bit change of the signature */
    for (size_t bit = 0; bit < 8 * sig.len; bit++) {
        sig.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(crypto_rsa_verify(k, m, sizeof m, sig.data, sig.len), DM_EBADSIG);
        sig.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(crypto_rsa_verify(k, m, sizeof m, sig.data, sig.len), DM_OK);
    /* truncated, extended, empty, shorter message */
    assert_int_equal(crypto_rsa_verify(k, m, sizeof m, sig.data, sig.len - 1), DM_EBADSIG);
    assert_int_equal(crypto_rsa_verify(k, m, sizeof m, sig.data + 1, sig.len - 1), DM_EBADSIG);
    assert_int_equal(dm_buf_putc(&sig, 0), DM_OK);
    assert_int_equal(crypto_rsa_verify(k, m, sizeof m, sig.data, sig.len), DM_EBADSIG);
    assert_int_equal(crypto_rsa_verify(k, m, sizeof m, sig.data, 0), DM_EBADSIG);
    assert_int_equal(crypto_rsa_verify(k, m, sizeof m, NULL, 0), DM_EBADSIG);
    assert_int_equal(crypto_rsa_verify(k, m, sizeof m - 1, sig.data, sig.len - 1), DM_EBADSIG);
    /* a signature from another key, and a signature of the wrong size for this key */
    dm_buf other = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_sign(ks->k2048b, m, sizeof m, &other), DM_OK);
    assert_int_equal(crypto_rsa_verify(ks->k2048b, m, sizeof m, other.data, other.len), DM_OK);
    assert_int_equal(crypto_rsa_verify(k, m, sizeof m, other.data, other.len), DM_EBADSIG);
    dm_buf big = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_sign(ks->k3072, m, sizeof m, &big), DM_OK);
    assert_int_equal(crypto_rsa_verify(k, m, sizeof m, big.data, 256), DM_EBADSIG);
    assert_int_equal(crypto_rsa_verify(ks->k3072, m, sizeof m, other.data, other.len), DM_EBADSIG);
    dm_buf_free(&sig);
    dm_buf_free(&other);
    dm_buf_free(&big);
}

static void check_pkcs8_round_trip(crypto_rsa_t *k)
{
    dm_buf der = DM_BUF_INIT, der2 = DM_BUF_INIT, sig = DM_BUF_INIT;
    char id1[65], id2[65];
    crypto_rsa_t *k2 = NULL;
    assert_int_equal(crypto_rsa_to_pkcs8(k, &der), DM_OK);
    assert_int_equal(crypto_rsa_from_pkcs8(&k2, der.data, der.len), DM_OK);
    assert_true(crypto_rsa_is_private(k2));
    assert_int_equal(crypto_rsa_bits(k2), crypto_rsa_bits(k));
    assert_int_equal(crypto_rsa_node_id(k, id1), DM_OK);
    assert_int_equal(crypto_rsa_node_id(k2, id2), DM_OK);
    assert_string_equal(id1, id2);
    /* the re-export is byte-identical */
    assert_int_equal(crypto_rsa_to_pkcs8(k2, &der2), DM_OK);
    assert_int_equal(der2.len, der.len);
    assert_memory_equal(der2.data, der.data, der.len);
    /* signatures verify across the two objects, both ways */
    assert_int_equal(crypto_rsa_sign(k, msg, sizeof msg - 1, &sig), DM_OK);
    assert_int_equal(crypto_rsa_verify(k2, msg, sizeof msg - 1, sig.data, sig.len), DM_OK);
    dm_buf_reset(&sig);
    assert_int_equal(crypto_rsa_sign(k2, msg, sizeof msg - 1, &sig), DM_OK);
    assert_int_equal(crypto_rsa_verify(k, msg, sizeof msg - 1, sig.data, sig.len), DM_OK);
    crypto_rsa_destroy(k2);
    dm_buf_free_secure(&der);
    dm_buf_free_secure(&der2);
    dm_buf_free(&sig);
}

static void test_rsa_pkcs8_round_trip(void **state)
{
    rsa_keys *ks = *state;
    check_pkcs8_round_trip(ks->k2048);
    check_pkcs8_round_trip(ks->k3072);
}

static void test_rsa_spki_public_only(void **state)
{
    rsa_keys *ks = *state;
    crypto_rsa_t *k = ks->k2048, *pub = NULL;
    dm_buf spki = DM_BUF_INIT, spki2 = DM_BUF_INIT, sig = DM_BUF_INIT, p8 = DM_BUF_INIT;
    char id1[65], id2[65];

    assert_int_equal(crypto_rsa_spki(k, &spki), DM_OK);
    assert_int_equal(crypto_rsa_from_spki(&pub, spki.data, spki.len), DM_OK);
    assert_false(crypto_rsa_is_private(pub));
    assert_int_equal(crypto_rsa_bits(pub), 2048);
    assert_int_equal(crypto_rsa_spki(pub, &spki2), DM_OK);
    assert_int_equal(spki2.len, spki.len);
    assert_memory_equal(spki2.data, spki.data, spki.len);
    assert_int_equal(crypto_rsa_node_id(k, id1), DM_OK);
    assert_int_equal(crypto_rsa_node_id(pub, id2), DM_OK);
    assert_string_equal(id1, id2);

    /* a public key verifies but can neither sign nor export a private key */
    assert_int_equal(crypto_rsa_sign(k, msg, sizeof msg - 1, &sig), DM_OK);
    assert_int_equal(crypto_rsa_verify(pub, msg, sizeof msg - 1, sig.data, sig.len), DM_OK);
    size_t before = sig.len;
    assert_int_equal(crypto_rsa_sign(pub, msg, sizeof msg - 1, &sig), DM_EINVAL);
    assert_int_equal(sig.len, before);
    assert_int_equal(crypto_rsa_to_pkcs8(pub, &p8), DM_EINVAL);
    assert_int_equal(p8.len, 0);
    /* an SPKI is not a PKCS#8 private key */
    crypto_rsa_t *bad = (crypto_rsa_t *)1;
    assert_int_equal(crypto_rsa_from_pkcs8(&bad, spki.data, spki.len), DM_EINVAL);
    assert_null(bad);
    crypto_rsa_destroy(pub);
    dm_buf_free(&spki);
    dm_buf_free(&spki2);
    dm_buf_free(&sig);
}

/* node_id = hex SHA-256 of the SPKI DER, computed here with OpenSSL alone. */
static void test_rsa_node_id_independent(void **state)
{
    rsa_keys *ks = *state;
    crypto_rsa_t *keys[] = {ks->k2048, ks->k3072};
    for (int i = 0; i < 2; i++) {
        EVP_PKEY *pk = ossl_priv(keys[i]);
        dm_buf spki = pkey_der(pk, false);
        uint8_t h[32];
        sha256(h, spki.data, spki.len);
        char want[65];
        for (int j = 0; j < 32; j++)
            snprintf(want + 2 * j, 3, "%02x", h[j]);
        char got[65];
        assert_int_equal(crypto_rsa_node_id(keys[i], got), DM_OK);
        assert_int_equal(strlen(got), 64);
        assert_string_equal(got, want);
        /* and the module's SPKI is the same DER OpenSSL writes */
        dm_buf ours = DM_BUF_INIT;
        assert_int_equal(crypto_rsa_spki(keys[i], &ours), DM_OK);
        assert_int_equal(ours.len, spki.len);
        assert_memory_equal(ours.data, spki.data, spki.len);
        dm_buf_free(&ours);
        dm_buf_free(&spki);
        EVP_PKEY_free(pk);
    }
}

static void expect_unsupported(EVP_PKEY *pk)
{
    crypto_rsa_t *k = (crypto_rsa_t *)1;
    dm_buf priv = pkey_der(pk, true), pub = pkey_der(pk, false);
    assert_int_equal(crypto_rsa_from_pkcs8(&k, priv.data, priv.len), DM_EUNSUPPORTED);
    assert_null(k);
    k = (crypto_rsa_t *)1;
    assert_int_equal(crypto_rsa_from_spki(&k, pub.data, pub.len), DM_EUNSUPPORTED);
    assert_null(k);
    dm_buf_free_secure(&priv);
    dm_buf_free(&pub);
}

static void test_rsa_unsupported_keys(void **state)
{
    (void)state;
    static const unsigned sizes[] = {0, 512, 1024, 2047, 2049, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        crypto_rsa_t *k = (crypto_rsa_t *)1;
        assert_int_equal(crypto_rsa_generate(&k, sizes[i]), DM_EUNSUPPORTED);
        assert_null(k);
    }
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    assert_non_null(pk);
    expect_unsupported(pk);
    EVP_PKEY_free(pk);
    pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
    assert_non_null(pk);
    expect_unsupported(pk);
    EVP_PKEY_free(pk);
    pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(pk);
    expect_unsupported(pk);
    EVP_PKEY_free(pk);
    /* an RSASSA-PSS-restricted key (different OID) is not a plain RSA node key */
    EVP_PKEY_CTX *gen = EVP_PKEY_CTX_new_from_name(NULL, "RSA-PSS", NULL);
    assert_non_null(gen);
    assert_int_equal(EVP_PKEY_keygen_init(gen), 1);
    assert_true(EVP_PKEY_CTX_set_rsa_keygen_bits(gen, 2048) > 0);
    pk = NULL;
    assert_int_equal(EVP_PKEY_generate(gen, &pk), 1);
    EVP_PKEY_CTX_free(gen);
    assert_int_equal(EVP_PKEY_get_bits(pk), 2048);
    expect_unsupported(pk);
    EVP_PKEY_free(pk);
}

static void test_rsa_garbage_der(void **state)
{
    rsa_keys *ks = *state;
    crypto_rsa_t *k = (crypto_rsa_t *)1;
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    assert_int_equal(crypto_rsa_from_pkcs8(&k, junk, sizeof junk), DM_EINVAL);
    assert_null(k);
    assert_int_equal(crypto_rsa_from_spki(&k, junk, sizeof junk), DM_EINVAL);
    assert_int_equal(crypto_rsa_from_pkcs8(&k, junk, 0), DM_EINVAL);
    assert_int_equal(crypto_rsa_from_spki(&k, NULL, 0), DM_EINVAL);

    dm_buf p8 = DM_BUF_INIT, spki = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_to_pkcs8(ks->k2048, &p8), DM_OK);
    assert_int_equal(crypto_rsa_spki(ks->k2048, &spki), DM_OK);
    /* truncated at every length in the header region and a few beyond */
    for (size_t n = 1; n < p8.len; n += (n < 64 ? 1 : 97)) {
        assert_int_equal(crypto_rsa_from_pkcs8(&k, p8.data, n), DM_EINVAL);
        assert_null(k);
    }
    for (size_t n = 1; n < spki.len; n += (n < 64 ? 1 : 31))
        assert_int_equal(crypto_rsa_from_spki(&k, spki.data, n), DM_EINVAL);
    /* trailing bytes after a valid structure */
    assert_int_equal(dm_buf_putc(&p8, 0), DM_OK);
    assert_int_equal(crypto_rsa_from_pkcs8(&k, p8.data, p8.len), DM_EINVAL);
    assert_int_equal(dm_buf_putc(&spki, 0), DM_OK);
    assert_int_equal(crypto_rsa_from_spki(&k, spki.data, spki.len), DM_EINVAL);
    /* a damaged private exponent: still parses as DER, fails the consistency check */
    p8.len--;
    p8.data[p8.len / 2] ^= 0x01;
    assert_int_equal(crypto_rsa_from_pkcs8(&k, p8.data, p8.len), DM_EINVAL);
    assert_null(k);

    /* PKCS#1 RSAPrivateKey (not PKCS#8) is refused */
    EVP_PKEY *pk = ossl_priv(ks->k2048);
    unsigned char *pkcs1 = NULL;
    int len = i2d_PrivateKey(pk, &pkcs1);
    assert_true(len > 0);
    assert_int_equal(crypto_rsa_from_pkcs8(&k, pkcs1, (size_t)len), DM_EINVAL);
    OPENSSL_clear_free(pkcs1, (size_t)len);
    EVP_PKEY_free(pk);
    dm_buf_free_secure(&p8);
    dm_buf_free(&spki);
}

/* Signatures made by OpenSSL with max salt verify; salt 32 (or digest length) does not. */
static void test_rsa_interop_openssl(void **state)
{
    rsa_keys *ks = *state;
    crypto_rsa_t *keys[] = {ks->k2048, ks->k3072};
    for (int i = 0; i < 2; i++) {
        crypto_rsa_t *k = keys[i];
        size_t klen = crypto_rsa_bits(k) / 8;
        EVP_PKEY *pk = ossl_priv(k);
        uint8_t sig[384];
        size_t siglen = sizeof sig;
        ossl_sign(pk, "max", msg, sizeof msg - 1, sig, &siglen);
        assert_int_equal(siglen, klen);
        assert_int_equal(crypto_rsa_verify(k, msg, sizeof msg - 1, sig, siglen), DM_OK);

        siglen = sizeof sig;
        ossl_sign(pk, "32", msg, sizeof msg - 1, sig, &siglen);
        assert_int_equal(ossl_verify(pk, "32", msg, sizeof msg - 1, sig, siglen), 1);
        assert_int_equal(crypto_rsa_verify(k, msg, sizeof msg - 1, sig, siglen), DM_EBADSIG);

        char one_less[16];
        snprintf(one_less, sizeof one_less, "%zu", klen - 32 - 2 - 1);
        siglen = sizeof sig;
        ossl_sign(pk, one_less, msg, sizeof msg - 1, sig, &siglen);
        assert_int_equal(crypto_rsa_verify(k, msg, sizeof msg - 1, sig, siglen), DM_EBADSIG);

        /* and OpenSSL, demanding the exact maximum salt, accepts ours */
        dm_buf ours = DM_BUF_INIT;
        assert_int_equal(crypto_rsa_sign(k, msg, sizeof msg - 1, &ours), DM_OK);
        char exact[16];
        snprintf(exact, sizeof exact, "%zu", klen - 32 - 2);
        assert_int_equal(ossl_verify(pk, exact, msg, sizeof msg - 1, ours.data, ours.len), 1);
        assert_int_equal(ossl_verify(pk, one_less, msg, sizeof msg - 1, ours.data, ours.len), 0);
        dm_buf_free(&ours);
        EVP_PKEY_free(pk);
    }
}

/* MGF1 with SHA-256 (RFC 8017 B.2.1), XORed into `out`. */
static void mgf1_xor(uint8_t *out, size_t n, const uint8_t seed[32])
{
    for (uint32_t counter = 0; n > 0; counter++) {
        uint8_t in[36], h[32];
        memcpy(in, seed, 32);
        in[32] = (uint8_t)(counter >> 24);
        in[33] = (uint8_t)(counter >> 16);
        in[34] = (uint8_t)(counter >> 8);
        in[35] = (uint8_t)counter;
        sha256(h, in, sizeof in);
        size_t take = n < 32 ? n : 32;
        for (size_t i = 0; i < take; i++)
            *out++ ^= h[i];
        n -= take;
    }
}

/* Open a signature with the raw public operation and decode EMSA-PSS by hand
 * (RFC 8017 9.1.2): the salt must be emLen - hLen - 2 bytes = bits/8 - 34. */
static void test_rsa_salt_length_is_max(void **state)
{
    rsa_keys *ks = *state;
    crypto_rsa_t *keys[] = {ks->k2048, ks->k3072};
    for (int i = 0; i < 2; i++) {
        crypto_rsa_t *k = keys[i];
        size_t em_len = crypto_rsa_bits(k) / 8; /* modBits % 8 == 0: emBits = modBits - 1 */
        dm_buf sig = DM_BUF_INIT;
        assert_int_equal(crypto_rsa_sign(k, msg, sizeof msg - 1, &sig), DM_OK);

        EVP_PKEY *pk = ossl_priv(k);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_verify_recover_init(ctx), 1);
        assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) > 0);
        uint8_t em[384];
        size_t em_got = sizeof em;
        assert_int_equal(EVP_PKEY_verify_recover(ctx, em, &em_got, sig.data, sig.len), 1);
        assert_int_equal(em_got, em_len);
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(pk);

        assert_int_equal(em[em_len - 1], 0xbc);
        size_t db_len = em_len - 32 - 1;
        const uint8_t *h = em + db_len;
        assert_int_equal(em[0] & 0x80, 0); /* 8*emLen - emBits = 1 leftmost bit */
        uint8_t db[384];
        memcpy(db, em, db_len);
        mgf1_xor(db, db_len, h);
        db[0] &= 0x7f;
        size_t one = 0;
        while (one < db_len && db[one] == 0)
            one++;
        assert_true(one < db_len);
        assert_int_equal(db[one], 0x01);
        size_t salt_len = db_len - one - 1;
        assert_int_equal(salt_len, crypto_rsa_bits(k) / 8 - 32 - 2);

        /* H = SHA-256(0x00 * 8 || SHA-256(msg) || salt) */
        uint8_t mprime[8 + 32 + 384];
        memset(mprime, 0, 8);
        sha256(mprime + 8, msg, sizeof msg - 1);
        memcpy(mprime + 40, db + one + 1, salt_len);
        uint8_t h2[32];
        sha256(h2, mprime, 40 + salt_len);
        assert_memory_equal(h2, h, 32);
        dm_buf_free(&sig);
    }
}

/* One key object signing and verifying from several threads at once. */
typedef struct {
    const crypto_rsa_t *k;
    int id;
    int failures;
} rsa_thread_arg;

static void *rsa_thread(void *p)
{
    rsa_thread_arg *a = p;
    for (int i = 0; i < 6; i++) {
        char m[64];
        int n = snprintf(m, sizeof m, "thread %d message %d", a->id, i);
        dm_buf sig = DM_BUF_INIT;
        if (crypto_rsa_sign(a->k, m, (size_t)n, &sig) != DM_OK ||
            crypto_rsa_verify(a->k, m, (size_t)n, sig.data, sig.len) != DM_OK ||
            crypto_rsa_verify(a->k, m, (size_t)n - 1, sig.data, sig.len) != DM_EBADSIG)
            a->failures++;
        dm_buf_free(&sig);
    }
    return NULL;
}

static void test_rsa_threads(void **state)
{
    rsa_keys *ks = *state;
    pthread_t th[4];
    rsa_thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (rsa_thread_arg){ks->k2048, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, rsa_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
}

int test_crypto_rsa(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rsa_round_trip_2048),  cmocka_unit_test(test_rsa_round_trip_3072),
        cmocka_unit_test(test_rsa_tamper),           cmocka_unit_test(test_rsa_pkcs8_round_trip),
        cmocka_unit_test(test_rsa_spki_public_only), cmocka_unit_test(test_rsa_node_id_independent),
        cmocka_unit_test(test_rsa_unsupported_keys), cmocka_unit_test(test_rsa_garbage_der),
        cmocka_unit_test(test_rsa_interop_openssl),  cmocka_unit_test(test_rsa_salt_length_is_max),
        cmocka_unit_test(test_rsa_threads),
    };
    return cmocka_run_group_tests_name("crypto_rsa", tests, keys_setup, keys_teardown);
}
