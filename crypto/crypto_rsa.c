/*
 * RSA node keys through OpenSSL 3 EVP: RSA-PSS, MGF1-SHA256, maximum salt
 * length, SHA-256 message digest. 2048 and 3072-bit keys only.
 *
 * Thread safety: a crypto_rsa_t is immutable after creation. Every sign or
 * verify builds its own EVP_MD_CTX/EVP_PKEY_CTX, and OpenSSL 3 allows one
 * EVP_PKEY to be used by many such contexts at once, so the object needs no
 * lock. The SPKI DER is computed once at creation and kept (public data).
 */
#include "crypto_rsa.h"
#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_err.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

struct crypto_rsa {
    EVP_PKEY *pkey;
    bool priv;
    unsigned bits;
    uint8_t *spki; /* SubjectPublicKeyInfo DER (OPENSSL_malloc'd) */
    size_t spki_len;
};

static bool bits_supported(int bits)
{
    return bits == 2048 || bits == 3072;
}

/* Take ownership of `pkey` (freed on failure) and wrap it after checking that it
 * is a plain RSA key (not RSA-PSS-restricted, not EC) of a supported size. */
static int wrap_pkey(crypto_rsa_t **out, EVP_PKEY *pkey, bool priv)
{
    int rc = DM_OK;
    unsigned char *der = NULL;
    crypto_rsa_t *k = NULL;

    if (!EVP_PKEY_is_a(pkey, "RSA") || !bits_supported(EVP_PKEY_get_bits(pkey))) {
        rc = DM_EUNSUPPORTED;
        goto out;
    }
    int len = i2d_PUBKEY(pkey, &der);
    if (len <= 0) {
        rc = DM_ECRYPTO;
        goto out;
    }
    k = calloc(1, sizeof *k);
    if (!k) {
        rc = DM_ENOMEM;
        goto out;
    }
    k->pkey = pkey;
    k->priv = priv;
    k->bits = (unsigned)EVP_PKEY_get_bits(pkey);
    k->spki = der;
    k->spki_len = (size_t)len;
    *out = k;
    return DM_OK;
out:
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    return rc;
}

int crypto_rsa_generate(crypto_rsa_t **out, unsigned bits)
{
    *out = NULL;
    if (bits != 2048 && bits != 3072)
        return DM_EUNSUPPORTED;
    /* public exponent 65537 (OpenSSL's default) */
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    if (!pkey) {
        ERR_clear_error();
        return DM_ECRYPTO;
    }
    return wrap_pkey(out, pkey, true);
}

int crypto_rsa_from_pkcs8(crypto_rsa_t **out, const uint8_t *der, size_t n)
{
    int rc = DM_OK;
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    EVP_PKEY *pkey = NULL;

    *out = NULL;
    if (!der || n == 0 || n > LONG_MAX)
        return DM_EINVAL;
    /* Parse exactly one PrivateKeyInfo and nothing after it: d2i_AutoPrivateKey
     * would also take PKCS#1 and other legacy forms. */
    const unsigned char *p = der;
    p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)n);
    if (!p8 || p != der + n) {
        rc = DM_EINVAL;
        goto out;
    }
    pkey = EVP_PKCS82PKEY(p8);
    if (!pkey) {
        rc = DM_EINVAL;
        goto out;
    }
    if (!EVP_PKEY_is_a(pkey, "RSA") || !bits_supported(EVP_PKEY_get_bits(pkey))) {
        rc = DM_EUNSUPPORTED;
        goto out;
    }
    /* Consistency of n, e, d, p, q and the CRT values, so a damaged key fails here and
     * not as wrong signatures later. No primality tests: those cost tens of ms. */
    EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    int ok = chk && EVP_PKEY_pairwise_check(chk) == 1;
    EVP_PKEY_CTX_free(chk);
    if (!ok) {
        rc = DM_EINVAL;
        goto out;
    }
    rc = wrap_pkey(out, pkey, true);
    pkey = NULL; /* taken, also on failure */
out:
    if (rc)
        ERR_clear_error();
    EVP_PKEY_free(pkey);
    PKCS8_PRIV_KEY_INFO_free(p8); /* clears its key octets */
    return rc;
}

int crypto_rsa_to_pkcs8(const crypto_rsa_t *k, dm_buf *out)
{
    int rc = DM_OK;
    PKCS8_PRIV_KEY_INFO *p8 = NULL;

    if (!k->priv)
        return DM_EINVAL;
    p8 = EVP_PKEY2PKCS8(k->pkey);
    if (!p8) {
        rc = DM_ECRYPTO;
        goto out;
    }
    int len = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
    if (len <= 0) {
        rc = DM_ECRYPTO;
        goto out;
    }
    /* Encode straight into the caller's buffer, so no other copy of the key
     * exists outside OpenSSL's own (cleared) structures. */
    rc = dm_buf_reserve(out, (size_t)len);
    if (rc)
        goto out;
    unsigned char *w = out->data + out->len;
    if (i2d_PKCS8_PRIV_KEY_INFO(p8, &w) != len) {
        crypto_memzero(out->data + out->len, (size_t)len);
        rc = DM_ECRYPTO;
        goto out;
    }
    out->len += (size_t)len;
out:
    if (rc)
        ERR_clear_error();
    PKCS8_PRIV_KEY_INFO_free(p8);
    return rc;
}

int crypto_rsa_from_spki(crypto_rsa_t **out, const uint8_t *der, size_t n)
{
    *out = NULL;
    if (!der || n == 0 || n > LONG_MAX)
        return DM_EINVAL;
    const unsigned char *p = der;
    EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)n);
    if (!pkey || p != der + n) {
        ERR_clear_error();
        EVP_PKEY_free(pkey);
        return DM_EINVAL;
    }
    return wrap_pkey(out, pkey, false);
}

int crypto_rsa_spki(const crypto_rsa_t *k, dm_buf *out)
{
    return dm_buf_append(out, k->spki, k->spki_len);
}

int crypto_rsa_node_id(const crypto_rsa_t *k, char out[65])
{
    return crypto_sha256_hex(out, k->spki, k->spki_len);
}

unsigned crypto_rsa_bits(const crypto_rsa_t *k)
{
    return k->bits;
}

bool crypto_rsa_is_private(const crypto_rsa_t *k)
{
    return k->priv;
}

/* PSS / MGF1-SHA256 / maximum salt on a fresh per-call context. */
static int pss_setup(EVP_PKEY_CTX *pctx)
{
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_MAX) <= 0)
        return DM_ECRYPTO;
    return DM_OK;
}

int crypto_rsa_sign(const crypto_rsa_t *k, const void *msg, size_t n, dm_buf *sig)
{
    int rc = DM_OK;
    EVP_MD_CTX *mctx = NULL;
    EVP_PKEY_CTX *pctx = NULL; /* owned by mctx */
    size_t siglen = k->bits / 8;

    if (!k->priv)
        return DM_EINVAL;
    mctx = EVP_MD_CTX_new();
    if (!mctx) {
        rc = DM_ENOMEM;
        goto out;
    }
    if (EVP_DigestSignInit(mctx, &pctx, EVP_sha256(), NULL, k->pkey) != 1) {
        rc = DM_ECRYPTO;
        goto out;
    }
    rc = pss_setup(pctx);
    if (rc)
        goto out;
    rc = dm_buf_reserve(sig, siglen);
    if (rc)
        goto out;
    if (EVP_DigestSign(mctx, sig->data + sig->len, &siglen, msg, n) != 1 || siglen != k->bits / 8) {
        rc = DM_ECRYPTO;
        goto out;
    }
    sig->len += siglen;
out:
    if (rc)
        ERR_clear_error();
    EVP_MD_CTX_free(mctx);
    return rc;
}

int crypto_rsa_verify(const crypto_rsa_t *k, const void *msg, size_t n, const uint8_t *sig,
                      size_t siglen)
{
    int rc = DM_OK;
    EVP_MD_CTX *mctx = NULL;
    EVP_PKEY_CTX *pctx = NULL;

    if (!sig || siglen != k->bits / 8)
        return DM_EBADSIG;
    mctx = EVP_MD_CTX_new();
    if (!mctx) {
        rc = DM_ENOMEM;
        goto out;
    }
    if (EVP_DigestVerifyInit(mctx, &pctx, EVP_sha256(), NULL, k->pkey) != 1) {
        rc = DM_ECRYPTO;
        goto out;
    }
    /* RSA_PSS_SALTLEN_MAX on verify makes OpenSSL demand exactly emLen - hLen - 2
     * bytes of salt, as cryptography's PSS.MAX_LENGTH does */
    rc = pss_setup(pctx);
    if (rc)
        goto out;
    if (EVP_DigestVerify(mctx, sig, siglen, msg, n) != 1)
        rc = DM_EBADSIG;
out:
    ERR_clear_error(); /* a failed verify leaves errors on the thread's queue */
    EVP_MD_CTX_free(mctx);
    return rc;
}

void crypto_rsa_destroy(crypto_rsa_t *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey); /* OpenSSL clears private key material on free */
    OPENSSL_free(k->spki);
    free(k);
}
