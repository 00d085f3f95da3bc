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

/** bits must be 2048 or 3072 (DM_EUNSUPPORTED otherwise). */
int crypto_rsa_generate(crypto_rsa_t **out, unsigned bits);
/** Load a private key from unencrypted PKCS#8 DER (the key manager decrypts it first). */
int crypto_rsa_from_pkcs8(crypto_rsa_t **out, const uint8_t *der, size_t n);
/** Serialise the private key as PKCS#8 DER into `out` (secret: dm_buf_free_secure).
 *  Only the key manager calls this, to encrypt the key at rest. */
int crypto_rsa_to_pkcs8(const crypto_rsa_t *k, dm_buf *out);
/** Load a public key from SubjectPublicKeyInfo DER. */
int crypto_rsa_from_spki(crypto_rsa_t **out, const uint8_t *der, size_t n);
/** Append the SubjectPublicKeyInfo DER of the public key. */
int crypto_rsa_spki(const crypto_rsa_t *k, dm_buf *out);
/** node_id = lower-case hex SHA-256 of the SPKI DER. */
int crypto_rsa_node_id(const crypto_rsa_t *k, char out[65]);
unsigned crypto_rsa_bits(const crypto_rsa_t *k);
bool crypto_rsa_is_private(const crypto_rsa_t *k);
/** Append the signature (bits/8 bytes) of `msg`. DM_EINVAL for a public-only key. */
int crypto_rsa_sign(const crypto_rsa_t *k, const void *msg, size_t n, dm_buf *sig);
/** 0 if valid, DM_EBADSIG otherwise (including wrong length / salt length). */
int crypto_rsa_verify(const crypto_rsa_t *k, const void *msg, size_t n, const uint8_t *sig,
                      size_t siglen);
void crypto_rsa_destroy(crypto_rsa_t *k);

#endif
