/*
 * Ethereum account keys, addresses and recoverable signatures on secp256k1.
 *
 * One libsecp256k1 context serves the whole process. It is created and
 * randomised (side-channel blinding) exactly once under pthread_once; after
 * that it is only passed as `const`, which the library documents as safe to
 * share between threads.
 */
#include "crypto_eth.h"
#include "crypto_keccak.h"
#include "crypto_mem.h"
#include "dm_err.h"
#include "dm_log.h"

#include <pthread.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>
#include <stdbool.h>
#include <string.h>

static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static secp256k1_context *ctx_shared;
static int ctx_err;

static void ctx_init(void)
{
    uint8_t seed[32];
    secp256k1_context *c = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    if (!c) {
        ctx_err = DM_ENOMEM;
        return;
    }
    if (crypto_random(seed, sizeof seed) != DM_OK || !secp256k1_context_randomize(c, seed)) {
        /* an unblinded context would still be correct, but we promised blinding */
        dm_log(DM_LOG_ERROR, "crypto", "secp256k1 context randomisation failed");
        secp256k1_context_destroy(c);
        ctx_err = DM_ECRYPTO;
    } else {
        ctx_shared = c;
    }
    crypto_memzero(seed, sizeof seed);
}

/* The process-wide context, or NULL with *err set. Any thread. */
static const secp256k1_context *ctx_get(int *err)
{
    pthread_once(&ctx_once, ctx_init);
    *err = ctx_shared ? DM_OK : (ctx_err ? ctx_err : DM_ECRYPTO);
    return ctx_shared;
}

int crypto_eth_key_generate(crypto_eth_key *k)
{
    int rc;
    const secp256k1_context *c = ctx_get(&rc);
    if (!c)
        return rc;
    /* a uniformly random 32-byte string is out of range with probability ~2^-128;
     * the retry bound only guards against a broken RNG */
    for (int tries = 0; tries < 16; tries++) {
        rc = crypto_random(k->priv, sizeof k->priv);
        if (rc)
            break;
        if (secp256k1_ec_seckey_verify(c, k->priv))
            return DM_OK;
        rc = DM_ECRYPTO;
    }
    crypto_eth_key_wipe(k);
    return rc;
}

int crypto_eth_key_from_bytes(crypto_eth_key *k, const uint8_t priv[32])
{
    int rc;
    const secp256k1_context *c = ctx_get(&rc);
    if (!c)
        return rc;
    if (!secp256k1_ec_seckey_verify(c, priv)) {
        crypto_eth_key_wipe(k);
        return DM_EINVAL;
    }
    memcpy(k->priv, priv, sizeof k->priv);
    return DM_OK;
}

void crypto_eth_key_wipe(crypto_eth_key *k)
{
    if (k)
        crypto_memzero(k->priv, sizeof k->priv);
}

static int pubkey_serialize(const secp256k1_context *c, const secp256k1_pubkey *pk, uint8_t pub[64])
{
    uint8_t ser[65];
    size_t len = sizeof ser;
    if (!secp256k1_ec_pubkey_serialize(c, ser, &len, pk, SECP256K1_EC_UNCOMPRESSED) || len != 65 ||
        ser[0] != 0x04)
        return DM_ECRYPTO;
    memcpy(pub, ser + 1, 64);
    return DM_OK;
}

int crypto_eth_pubkey(const crypto_eth_key *k, uint8_t pub[64])
{
    int rc;
    const secp256k1_context *c = ctx_get(&rc);
    if (!c)
        return rc;
    secp256k1_pubkey pk;
    if (!secp256k1_ec_pubkey_create(c, &pk, k->priv))
        return DM_EINVAL; /* zero or >= order: a key not made by our constructors */
    return pubkey_serialize(c, &pk, pub);
}

void crypto_eth_address_from_pub(const uint8_t pub[64], uint8_t addr[20])
{
    uint8_t h[32];
    crypto_keccak256(h, pub, 64);
    memcpy(addr, h + 12, 20);
}

int crypto_eth_address(const crypto_eth_key *k, uint8_t addr[20])
{
    uint8_t pub[64];
    int rc = crypto_eth_pubkey(k, pub);
    if (rc)
        return rc;
    crypto_eth_address_from_pub(pub, addr);
    return DM_OK;
}

void crypto_eth_address_format(const uint8_t addr[20], char out[43])
{
    static const char hex[] = "0123456789abcdef";
    char *h = out + 2;
    uint8_t digest[32];
    out[0] = '0';
    out[1] = 'x';
    for (int i = 0; i < 20; i++) {
        h[2 * i] = hex[addr[i] >> 4];
        h[2 * i + 1] = hex[addr[i] & 0x0f];
    }
    /* EIP-55: keccak256 of the lower-case hex (no 0x); a letter is upper case
     * when the matching nibble of the digest is >= 8 */
    crypto_keccak256(digest, h, 40);
    for (int i = 0; i < 40; i++) {
        unsigned nib = (i % 2 == 0) ? (digest[i / 2] >> 4) : (digest[i / 2] & 0x0f);
        if (h[i] >= 'a' && h[i] <= 'f' && nib >= 8)
            h[i] = (char)(h[i] - 'a' + 'A');
    }
    out[42] = '\0';
}

static int hex_val(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

int crypto_eth_address_parse(const char *s, uint8_t addr[20])
{
    uint8_t tmp[20];
    bool lower = false, upper = false;
    if (!s || strnlen(s, 43) != 42 || s[0] != '0' || s[1] != 'x')
        return DM_EINVAL;
    for (int i = 0; i < 40; i++) {
        char ch = s[2 + i];
        int v = hex_val(ch);
        if (v < 0)
            return DM_EINVAL;
        lower |= (ch >= 'a' && ch <= 'f');
        upper |= (ch >= 'A' && ch <= 'F');
        if (i % 2 == 0)
            tmp[i / 2] = (uint8_t)(v << 4);
        else
            tmp[i / 2] |= (uint8_t)v;
    }
    if (lower && upper) {
        /* mixed case claims a checksum: it must be exactly the EIP-55 form */
        char canon[43];
        crypto_eth_address_format(tmp, canon);
        if (memcmp(canon, s, 42) != 0)
            return DM_EINVAL;
    }
    memcpy(addr, tmp, 20);
    return DM_OK;
}

int crypto_eth_sign_hash(const crypto_eth_key *k, const uint8_t hash[32], crypto_eth_sig *sig)
{
    int rc;
    const secp256k1_context *c = ctx_get(&rc);
    if (!c)
        return rc;
    secp256k1_ecdsa_recoverable_signature rs;
    uint8_t compact[64];
    int recid = -1;
    /* NULL nonce function = RFC 6979 (deterministic); the library emits low-s */
    if (!secp256k1_ecdsa_sign_recoverable(c, &rs, hash, k->priv, NULL, NULL))
        return DM_EINVAL;
    if (!secp256k1_ecdsa_recoverable_signature_serialize_compact(c, compact, &recid, &rs))
        return DM_ECRYPTO;
    /* recid 2/3 (r overflowed the order) cannot be expressed in Ethereum's v;
     * it happens with probability ~2^-127 */
    if (recid < 0 || recid > 1)
        return DM_ECRYPTO;
    memcpy(sig->r, compact, 32);
    memcpy(sig->s, compact + 32, 32);
    sig->recid = (uint8_t)recid;
    return DM_OK;
}

int crypto_eth_recover(const uint8_t hash[32], const crypto_eth_sig *sig, uint8_t addr[20])
{
    int rc;
    const secp256k1_context *c = ctx_get(&rc);
    if (!c)
        return rc;
    if (sig->recid > 1)
        return DM_EBADSIG;
    uint8_t compact[64];
    memcpy(compact, sig->r, 32);
    memcpy(compact + 32, sig->s, 32);
    secp256k1_ecdsa_recoverable_signature rs;
    secp256k1_ecdsa_signature plain;
    secp256k1_pubkey pk;
    /* parse rejects r or s >= order; recover rejects zero r or s */
    if (!secp256k1_ecdsa_recoverable_signature_parse_compact(c, &rs, compact, sig->recid))
        return DM_EBADSIG;
    /* EIP-2: a high-s signature is malleable and Ethereum rejects it; so do we */
    if (!secp256k1_ecdsa_recoverable_signature_convert(c, &plain, &rs) ||
        secp256k1_ecdsa_signature_normalize(c, NULL, &plain))
        return DM_EBADSIG;
    if (!secp256k1_ecdsa_recover(c, &pk, &rs, hash))
        return DM_EBADSIG;
    uint8_t pub[64];
    rc = pubkey_serialize(c, &pk, pub);
    if (rc)
        return rc;
    crypto_eth_address_from_pub(pub, addr);
    return DM_OK;
}
