#ifndef DM_CRYPTO_FERNET_H
#define DM_CRYPTO_FERNET_H

#include "dm_buf.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Fernet (https://github.com/fernet/spec): AES-128-CBC + HMAC-SHA256, tokens
 * are base64url with padding of  0x80 | ts(8, BE) | IV(16) | ciphertext | HMAC(32).
 * A key is 32 bytes: signing key (first 16) then encryption key (last 16); it
 * is a secret and is wiped with crypto_fernet_key_wipe().
 */
#define CRYPTO_FERNET_MAX_CLOCK_SKEW 60
/* Largest token accepted by decrypt: enough for a 4 MiB plaintext. */
#define CRYPTO_FERNET_MAX_TOKEN ((size_t)6 * 1024 * 1024)

typedef struct {
    uint8_t signing[16];
    uint8_t encryption[16];
} crypto_fernet_key;

int crypto_fernet_key_generate(crypto_fernet_key *k);
/** From 32 raw bytes. */
void crypto_fernet_key_from_bytes(crypto_fernet_key *k, const uint8_t raw[32]);
/** Parse the base64url text form (44 chars). DM_EPARSE if malformed. */
int crypto_fernet_key_decode(crypto_fernet_key *k, const char *b64, size_t n);
/** Append the base64url text form. The output is secret: free it with dm_buf_free_secure. */
int crypto_fernet_key_encode(dm_buf *out, const crypto_fernet_key *k);
void crypto_fernet_key_wipe(crypto_fernet_key *k);

/** Encrypt with a random IV and the current time; appends the token text to `out`. */
int crypto_fernet_encrypt(dm_buf *out, const crypto_fernet_key *k, const uint8_t *pt, size_t n);
/** Encrypt with an explicit timestamp and IV (tests, vectors). */
int crypto_fernet_encrypt_at(dm_buf *out, const crypto_fernet_key *k, const uint8_t *pt,
                             size_t n, uint64_t ts, const uint8_t iv[16]);
/**
 * Verify and decrypt `token` (not NUL-terminated, `n` chars), appending the
 * plaintext to `out`. `ttl_sec` = 0 disables the age check. `now` is the
 * current Unix time (pass time(NULL)).
 * Errors: DM_EBADTOKEN (bad base64, version, length, MAC or padding — the
 * same code for all so nothing is learned from which), DM_EEXPIRED (older
 * than ttl, or more than 60 s in the future), DM_ETOOBIG (> MAX_TOKEN).
 */
int crypto_fernet_decrypt(dm_buf *out, const crypto_fernet_key *k, const char *token, size_t n,
                          uint64_t ttl_sec, uint64_t now);
/** Timestamp field of a token whose MAC verifies (for re-encryption policies). */
int crypto_fernet_token_time(const crypto_fernet_key *k, const char *token, size_t n,
                             uint64_t *ts);

#endif
