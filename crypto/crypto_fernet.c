/*
 * Fernet tokens (https://github.com/fernet/spec/blob/master/Spec.md).
 *
 *   token = base64url(0x80 | ts(8, BE) | IV(16) | AES-128-CBC-PKCS7(pt) | HMAC-SHA256(32))
 *
 * The HMAC, keyed with the signing half of the key, covers every byte before
 * it. Decryption authenticates first and only then touches the ciphertext, so
 * the CBC padding check can never serve as an oracle.
 */
#include "crypto_fernet.h"
#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_enc.h"
#include "dm_err.h"

#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define FERNET_VERSION 0x80
#define FERNET_TS_LEN 8
#define FERNET_IV_LEN 16
#define FERNET_BLOCK 16
#define FERNET_MAC_LEN CRYPTO_SHA256_LEN
#define FERNET_HDR_LEN (1 + FERNET_TS_LEN + FERNET_IV_LEN)
/* the shortest token carries one block of ciphertext (an empty plaintext is one pad block) */
#define FERNET_MIN_RAW (FERNET_HDR_LEN + FERNET_BLOCK + FERNET_MAC_LEN)
#define FERNET_KEY_B64_LEN 44

/* Fetch AES-128-CBC once rather than implicitly on every context init (see crypto_hash.c). */
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *aes128cbc;

static void fetch_cipher(void)
{
    aes128cbc = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL);
}

static const EVP_CIPHER *cipher_aes128cbc(void)
{
    if (pthread_once(&fetch_once, fetch_cipher) != 0)
        return NULL;
    return aes128cbc;
}

/* Length of the base64 (padded) text for `raw` bytes. */
static size_t b64_len(size_t raw)
{
    return (raw + 2) / 3 * 4;
}

int crypto_fernet_key_generate(crypto_fernet_key *k)
{
    uint8_t raw[32];
    int rc = crypto_random(raw, sizeof raw);
    if (rc == DM_OK)
        crypto_fernet_key_from_bytes(k, raw);
    crypto_memzero(raw, sizeof raw);
    return rc;
}

void crypto_fernet_key_from_bytes(crypto_fernet_key *k, const uint8_t raw[32])
{
    memcpy(k->signing, raw, sizeof k->signing);
    memcpy(k->encryption, raw + sizeof k->signing, sizeof k->encryption);
}

int crypto_fernet_key_decode(crypto_fernet_key *k, const char *b64, size_t n)
{
    /* the length check first, so arbitrary input never reaches the allocator */
    if (!b64 || n != FERNET_KEY_B64_LEN)
        return DM_EPARSE;
    dm_buf raw = DM_BUF_INIT;
    int rc = dm_b64_decode(&raw, b64, n, DM_B64_URL);
    if (rc == DM_ENOMEM)
        goto out;
    if (rc || raw.len != 32) {
        rc = DM_EPARSE;
        goto out;
    }
    crypto_fernet_key_from_bytes(k, raw.data);
    rc = DM_OK;
out:
    dm_buf_free_secure(&raw);
    return rc;
}

int crypto_fernet_key_encode(dm_buf *out, const crypto_fernet_key *k)
{
    uint8_t raw[32];
    memcpy(raw, k->signing, sizeof k->signing);
    memcpy(raw + sizeof k->signing, k->encryption, sizeof k->encryption);
    int rc = dm_b64_encode(out, raw, sizeof raw, DM_B64_URL);
    crypto_memzero(raw, sizeof raw);
    return rc;
}

void crypto_fernet_key_wipe(crypto_fernet_key *k)
{
    crypto_memzero(k, sizeof *k);
}

/*
 * Contract (both encrypt functions): `out` is borrowed and the token text is
 * appended to it; on any error `out` is left as it was. `pt` is borrowed. Any
 * thread; pure CPU (bulk use belongs on the thread pool). Errors: DM_ETOOBIG
 * when the token would exceed CRYPTO_FERNET_MAX_TOKEN (so every token made here
 * is accepted by crypto_fernet_decrypt), DM_EINVAL for NULL arguments,
 * DM_ENOMEM, DM_ECRYPTO (OpenSSL or the CSPRNG failed).
 */
int crypto_fernet_encrypt_at(dm_buf *out, const crypto_fernet_key *k, const uint8_t *pt, size_t n,
                             uint64_t ts, const uint8_t iv[16])
{
    if (!out || !k || !iv || (!pt && n))
        return DM_EINVAL;
    if (n > CRYPTO_FERNET_MAX_TOKEN)
        return DM_ETOOBIG;
    size_t ctlen = (n / FERNET_BLOCK + 1) * FERNET_BLOCK;
    size_t rawlen = FERNET_HDR_LEN + ctlen + FERNET_MAC_LEN;
    if (b64_len(rawlen) > CRYPTO_FERNET_MAX_TOKEN)
        return DM_ETOOBIG;
    const EVP_CIPHER *cipher = cipher_aes128cbc();
    if (!cipher)
        return DM_ECRYPTO;

    int rc = DM_ECRYPTO;
    dm_buf raw = DM_BUF_INIT;
    EVP_CIPHER_CTX *ctx = NULL;
    rc = dm_buf_reserve(&raw, rawlen);
    if (rc)
        goto out;
    uint8_t *p = raw.data;
    p[0] = FERNET_VERSION;
    dm_put_u64be(p + 1, ts);
    memcpy(p + 1 + FERNET_TS_LEN, iv, FERNET_IV_LEN);

    rc = DM_ECRYPTO;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx) {
        rc = DM_ENOMEM;
        goto out;
    }
    /* PKCS#7 padding is the EVP default */
    if (EVP_EncryptInit_ex2(ctx, cipher, k->encryption, iv, NULL) != 1)
        goto out;
    uint8_t *ct = p + FERNET_HDR_LEN;
    int l1 = 0, l2 = 0;
    /* n <= MAX_TOKEN, far below INT_MAX */
    if (EVP_EncryptUpdate(ctx, ct, &l1, n ? pt : (const uint8_t *)"", (int)n) != 1)
        goto out;
    if (EVP_EncryptFinal_ex(ctx, ct + l1, &l2) != 1)
        goto out;
    if ((size_t)l1 + (size_t)l2 != ctlen)
        goto out;
    rc = crypto_hmac_sha256(ct + ctlen, k->signing, sizeof k->signing, p, FERNET_HDR_LEN + ctlen);
    if (rc)
        goto out;
    raw.len = rawlen;
    rc = dm_b64_encode(out, raw.data, raw.len, DM_B64_URL);
out:
    EVP_CIPHER_CTX_free(ctx);
    /* the buffer only ever held ciphertext, but a failed run may have left partial state */
    dm_buf_free_secure(&raw);
    return rc;
}

int crypto_fernet_encrypt(dm_buf *out, const crypto_fernet_key *k, const uint8_t *pt, size_t n)
{
    uint8_t iv[FERNET_IV_LEN];
    int rc = crypto_random(iv, sizeof iv);
    if (rc)
        return rc;
    time_t now = time(NULL);
    return crypto_fernet_encrypt_at(out, k, pt, n, now < 0 ? 0 : (uint64_t)now, iv);
}

/*
 * Decode `token` into `raw` and authenticate it. Every structural or MAC
 * failure is DM_EBADTOKEN so a caller learns nothing from which check failed.
 * The structural checks (length, version, block multiple) run before the MAC
 * because they depend on public data only and spare an HMAC of junk.
 */
static int fernet_open(dm_buf *raw, const crypto_fernet_key *k, const char *token, size_t n)
{
    if (n > CRYPTO_FERNET_MAX_TOKEN)
        return DM_ETOOBIG;
    if (!token || n < b64_len(FERNET_MIN_RAW))
        return DM_EBADTOKEN;
    int rc = dm_b64_decode(raw, token, n, DM_B64_URL);
    if (rc == DM_ENOMEM)
        return rc;
    if (rc)
        return DM_EBADTOKEN;
    if (raw->len < FERNET_MIN_RAW || raw->data[0] != FERNET_VERSION ||
        (raw->len - FERNET_HDR_LEN - FERNET_MAC_LEN) % FERNET_BLOCK != 0)
        return DM_EBADTOKEN;

    size_t signed_len = raw->len - FERNET_MAC_LEN;
    uint8_t mac[FERNET_MAC_LEN];
    rc = crypto_hmac_sha256(mac, k->signing, sizeof k->signing, raw->data, signed_len);
    if (rc == DM_OK && !crypto_ct_eq(mac, raw->data + signed_len, FERNET_MAC_LEN))
        rc = DM_EBADTOKEN;
    crypto_memzero(mac, sizeof mac);
    return rc;
}

/* Age policy of the spec: at most 60 s in the future, and no older than ttl (0 = any age). */
static int fernet_check_time(uint64_t ts, uint64_t ttl_sec, uint64_t now)
{
    if (ts > now && ts - now > CRYPTO_FERNET_MAX_CLOCK_SKEW)
        return DM_EEXPIRED;
    if (ttl_sec && now > ts && now - ts > ttl_sec)
        return DM_EEXPIRED;
    return DM_OK;
}

/*
 * Contract: `out` is borrowed; the plaintext is appended and on any error `out`
 * is left as it was (no partial plaintext, the scratch area is wiped). `token`
 * and `k` are borrowed. Any thread; pure CPU. Errors as in the header, plus
 * DM_EINVAL for NULL `out`/`k`, DM_ENOMEM and DM_ECRYPTO.
 */
int crypto_fernet_decrypt(dm_buf *out, const crypto_fernet_key *k, const char *token, size_t n,
                          uint64_t ttl_sec, uint64_t now)
{
    if (!out || !k)
        return DM_EINVAL;
    const EVP_CIPHER *cipher = cipher_aes128cbc();
    if (!cipher)
        return DM_ECRYPTO;

    dm_buf raw = DM_BUF_INIT;
    EVP_CIPHER_CTX *ctx = NULL;
    uint8_t *dst = NULL;
    size_t ctlen = 0;
    int rc = fernet_open(&raw, k, token, n);
    if (rc)
        goto out;
    rc = fernet_check_time(dm_get_u64be(raw.data + 1), ttl_sec, now);
    if (rc)
        goto out;

    const uint8_t *iv = raw.data + 1 + FERNET_TS_LEN;
    const uint8_t *ct = raw.data + FERNET_HDR_LEN;
    ctlen = raw.len - FERNET_HDR_LEN - FERNET_MAC_LEN;
    /* EVP asks for inl + block_size of room on update */
    rc = dm_buf_reserve(out, ctlen + FERNET_BLOCK);
    if (rc)
        goto out;
    dst = out->data + out->len;

    rc = DM_ECRYPTO;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx) {
        rc = DM_ENOMEM;
        goto out;
    }
    if (EVP_DecryptInit_ex2(ctx, cipher, k->encryption, iv, NULL) != 1)
        goto out;
    int l1 = 0, l2 = 0;
    /* ctlen < MAX_TOKEN, far below INT_MAX */
    if (EVP_DecryptUpdate(ctx, dst, &l1, ct, (int)ctlen) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(ctx, dst + l1, &l2) != 1) {
        /* bad PKCS#7 padding under a valid MAC: the key or the producer is wrong */
        rc = DM_EBADTOKEN;
        goto out;
    }
    out->len += (size_t)l1 + (size_t)l2;
    dst = NULL;
    rc = DM_OK;
out:
    if (dst)
        crypto_memzero(dst, ctlen + FERNET_BLOCK);
    EVP_CIPHER_CTX_free(ctx);
    dm_buf_free(&raw);
    return rc;
}

/*
 * Contract: `k` and `token` borrowed; `*ts` set only on success. Any thread.
 * Errors: DM_ETOOBIG, DM_EBADTOKEN (malformed or MAC fails), DM_EINVAL, DM_ENOMEM,
 * DM_ECRYPTO. No age check: the caller applies its own policy.
 */
int crypto_fernet_token_time(const crypto_fernet_key *k, const char *token, size_t n, uint64_t *ts)
{
    if (!k || !ts)
        return DM_EINVAL;
    dm_buf raw = DM_BUF_INIT;
    int rc = fernet_open(&raw, k, token, n);
    if (rc == DM_OK)
        *ts = dm_get_u64be(raw.data + 1);
    dm_buf_free(&raw);
    return rc;
}
