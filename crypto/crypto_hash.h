#ifndef DM_CRYPTO_HASH_H
#define DM_CRYPTO_HASH_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SHA256_LEN 32

/** SHA-256 of one buffer through OpenSSL EVP. 0 or DM_ECRYPTO. Any thread. */
int crypto_sha256(uint8_t out[CRYPTO_SHA256_LEN], const void *data, size_t n);
/** SHA-256 of the concatenation of `count` parts (no copy). */
int crypto_sha256_parts(uint8_t out[CRYPTO_SHA256_LEN], const void *const *parts,
                        const size_t *lens, size_t count);
/** Lower-case hex SHA-256 (64 chars + NUL). */
int crypto_sha256_hex(char out[65], const void *data, size_t n);
/** HMAC-SHA256. */
int crypto_hmac_sha256(uint8_t out[CRYPTO_SHA256_LEN], const uint8_t *key, size_t keylen,
                       const void *data, size_t n);
/** PBKDF2-HMAC-SHA256 (RFC 8018). iterations >= 1; DM_EINVAL otherwise. Blocking: call it
 *  off the event loop in the daemon. */
int crypto_pbkdf2_sha256(uint8_t *out, size_t outlen, const char *password, size_t pwlen,
                         const uint8_t *salt, size_t saltlen, uint32_t iterations);

#endif
