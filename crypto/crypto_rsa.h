#ifndef DM_CRYPTO_RSA_H
#define DM_CRYPTO_RSA_H

#include "dm_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * RSA node keys. Signatures are RSA-PSS with MGF1-SHA256 and the maximum salt
 * length over SHA-256 of the message, exactly as the reference's snippet
 * (padding.PSS(mgf=MGF1(SHA256), salt_length=PSS.MAX_LENGTH), SHA256); verify
 * requires that same salt length. A key object is immutable after creation and
 * may be used from several threads at once (sign/verify on the thread pool).
 */
typedef struct crypto_rsa crypto_rsa_t;

/** Generate a key (e = 65537). bits must be 2048 or 3072 (DM_EUNSUPPORTED otherwise);
 *  DM_ECRYPTO if OpenSSL fails. The caller owns *out (crypto_rsa_destroy); *out is NULL on
 *  failure. Blocking (tens to hundreds of ms): not on the event loop. Any thread. */
int crypto_rsa_generate(crypto_rsa_t **out, unsigned bits);
/** Load a private key from unencrypted PKCS#8 DER (the key manager decrypts it first).
 *  `der` is borrowed (the caller wipes it). Exactly one PrivateKeyInfo, no trailing bytes;
 *  PKCS#1 or encrypted forms, garbage and keys whose parts are inconsistent (pairwise check)
 *  are DM_EINVAL; a non-RSA key (EC, RSASSA-PSS OID) or a size other than 2048/3072 is
 *  DM_EUNSUPPORTED. Caller owns *out; NULL on failure. */
int crypto_rsa_from_pkcs8(crypto_rsa_t **out, const uint8_t *der, size_t n);
/** Serialise the private key as PKCS#8 DER into `out` (secret: dm_buf_free_secure).
 *  Only the key manager calls this, to encrypt the key at rest. */
int crypto_rsa_to_pkcs8(const crypto_rsa_t *k, dm_buf *out);
/** Load a public key from SubjectPublicKeyInfo DER (borrowed; no trailing bytes).
 *  DM_EINVAL if malformed, DM_EUNSUPPORTED as for crypto_rsa_from_pkcs8. The key can only
 *  verify. Caller owns *out; NULL on failure. */
int crypto_rsa_from_spki(crypto_rsa_t **out, const uint8_t *der, size_t n);
/** Append the SubjectPublicKeyInfo DER of the public key. */
int crypto_rsa_spki(const crypto_rsa_t *k, dm_buf *out);
/** node_id = lower-case hex SHA-256 of the SPKI DER. */
int crypto_rsa_node_id(const crypto_rsa_t *k, char out[65]);
unsigned crypto_rsa_bits(const crypto_rsa_t *k);
bool crypto_rsa_is_private(const crypto_rsa_t *k);
/** Append the signature (bits/8 bytes) of `msg`. DM_EINVAL for a public-only key (nothing
 *  appended), DM_ENOMEM, DM_ECRYPTO. Any thread, concurrently on one key. */
int crypto_rsa_sign(const crypto_rsa_t *k, const void *msg, size_t n, dm_buf *sig);
/** 0 if valid, DM_EBADSIG otherwise (including wrong length / salt length); DM_ENOMEM or
 *  DM_ECRYPTO only if OpenSSL itself fails. Any thread, concurrently on one key. */
int crypto_rsa_verify(const crypto_rsa_t *k, const void *msg, size_t n, const uint8_t *sig,
                      size_t siglen);
/** NULL-safe. Not while another thread still uses `k`. */
void crypto_rsa_destroy(crypto_rsa_t *k);

#endif
