/* SHA-256, HMAC-SHA256 and PBKDF2-HMAC-SHA256 through OpenSSL 3 EVP. */
#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_enc.h"
#include "dm_err.h"

#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>

/*
 * OpenSSL 3 performs an implicit provider fetch (a locked store lookup) every
 * time EVP_sha256() or a MAC name is used to initialise a context. Hashing and
 * HMAC run per share on the hot path, so fetch the implementations once and
 * keep them for the life of the process. They stay reachable from these
 * statics, so leak checkers do not report them.
 */
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;
static EVP_MAC *hmac_mac;

static void fetch_algorithms(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    hmac_mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static const EVP_MD *md_sha256(void)
{
    if (pthread_once(&fetch_once, fetch_algorithms) != 0)
        return NULL;
    return sha256_md;
}

static EVP_MAC *mac_hmac(void)
{
    if (pthread_once(&fetch_once, fetch_algorithms) != 0)
        return NULL;
    return hmac_mac;
}

/* OpenSSL treats (NULL, 0) inconsistently across APIs; give it a real pointer. */
static const uint8_t empty_input[1];

int crypto_sha256(uint8_t out[CRYPTO_SHA256_LEN], const void *data, size_t n)
{
    const EVP_MD *md = md_sha256();
    if (!md)
        return DM_ECRYPTO;
    if (!data) {
        if (n)
            return DM_EINVAL;
        data = empty_input;
    }
    unsigned int len = 0;
    if (EVP_Digest(data, n, out, &len, md, NULL) != 1 || len != CRYPTO_SHA256_LEN)
        return DM_ECRYPTO;
    return DM_OK;
}

int crypto_sha256_parts(uint8_t out[CRYPTO_SHA256_LEN], const void *const *parts,
                        const size_t *lens, size_t count)
{
    const EVP_MD *md = md_sha256();
    if (!md)
        return DM_ECRYPTO;
    if (count && (!parts || !lens))
        return DM_EINVAL;
    int rc = DM_ECRYPTO;
    unsigned int len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return DM_ENOMEM;
    if (EVP_DigestInit_ex2(ctx, md, NULL) != 1)
        goto out;
    for (size_t i = 0; i < count; i++) {
        if (lens[i] == 0)
            continue;
        if (!parts[i]) {
            rc = DM_EINVAL;
            goto out;
        }
        if (EVP_DigestUpdate(ctx, parts[i], lens[i]) != 1)
            goto out;
    }
    if (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != CRYPTO_SHA256_LEN)
        goto out;
    rc = DM_OK;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

int crypto_sha256_hex(char out[65], const void *data, size_t n)
{
    uint8_t h[CRYPTO_SHA256_LEN];
    int rc = crypto_sha256(h, data, n);
    if (rc)
        return rc;
    dm_hex_encode(out, h, sizeof h);
    return DM_OK;
}

int crypto_hmac_sha256(uint8_t out[CRYPTO_SHA256_LEN], const uint8_t *key, size_t keylen,
                       const void *data, size_t n)
{
    EVP_MAC *mac = mac_hmac();
    if (!mac)
        return DM_ECRYPTO;
    if ((!key && keylen) || (!data && n))
        return DM_EINVAL;
    /* EVP_MAC_init(NULL key) means "keep the previous key", not "empty key" */
    if (!key)
        key = empty_input;
    if (!data)
        data = empty_input;

    int rc = DM_ECRYPTO;
    size_t len = 0;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    if (!ctx)
        return DM_ENOMEM;
    if (EVP_MAC_init(ctx, key, keylen, params) != 1)
        goto out;
    if (EVP_MAC_update(ctx, data, n) != 1)
        goto out;
    if (EVP_MAC_final(ctx, out, &len, CRYPTO_SHA256_LEN) != 1 || len != CRYPTO_SHA256_LEN)
        goto out;
    rc = DM_OK;
out:
    /* the context holds the padded key (ipad/opad states); free cleanses it */
    EVP_MAC_CTX_free(ctx);
    return rc;
}

int crypto_pbkdf2_sha256(uint8_t *out, size_t outlen, const char *password, size_t pwlen,
                         const uint8_t *salt, size_t saltlen, uint32_t iterations)
{
    const EVP_MD *md = md_sha256();
    if (!md)
        return DM_ECRYPTO;
    if (iterations == 0 || iterations > INT_MAX || !out || outlen == 0 || outlen > INT_MAX ||
        pwlen > INT_MAX || saltlen > INT_MAX || (!password && pwlen) || (!salt && saltlen))
        return DM_EINVAL;
    if (!password)
        password = (const char *)empty_input;
    if (!salt)
        salt = empty_input;
    if (PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, (int)saltlen, (int)iterations, md,
                          (int)outlen, out) != 1) {
        crypto_memzero(out, outlen);
        return DM_ECRYPTO;
    }
    return DM_OK;
}
