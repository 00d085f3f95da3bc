#ifndef DM_CRYPTO_ETH_H
#define DM_CRYPTO_ETH_H

#include <stddef.h>
#include <stdint.h>

/*
 * Ethereum account keys on secp256k1 (libsecp256k1 with its recovery module).
 * crypto_eth_key holds a secret: wipe it with crypto_eth_key_wipe().
 * All functions are safe from any thread (one shared, randomised context).
 */
typedef struct {
    uint8_t priv[32];
} crypto_eth_key;

typedef struct {
    uint8_t r[32];
    uint8_t s[32];
    uint8_t recid; /* 0 or 1 (y parity); low-s normalised */
} crypto_eth_sig;

/** A fresh key from OpenSSL's CSPRNG. DM_ECRYPTO if the RNG or the context fails. */
int crypto_eth_key_generate(crypto_eth_key *k);
/** DM_EINVAL if the scalar is zero or >= the curve order (k is then zeroed). */
int crypto_eth_key_from_bytes(crypto_eth_key *k, const uint8_t priv[32]);
void crypto_eth_key_wipe(crypto_eth_key *k);
/** Uncompressed public key without the 0x04 prefix. DM_EINVAL for an invalid scalar. */
int crypto_eth_pubkey(const crypto_eth_key *k, uint8_t pub[64]);
/** address = last 20 bytes of keccak256(pub64). */
void crypto_eth_address_from_pub(const uint8_t pub[64], uint8_t addr[20]);
int crypto_eth_address(const crypto_eth_key *k, uint8_t addr[20]);
/** EIP-55 checksummed text "0x…" (42 chars + NUL). */
void crypto_eth_address_format(const uint8_t addr[20], char out[43]);
/** Parse "0x" + 40 hex. All-lower or all-upper hex accepted; mixed case must
 *  be a valid EIP-55 checksum (DM_EINVAL otherwise). */
int crypto_eth_address_parse(const char *s, uint8_t addr[20]);
/** Sign a 32-byte hash with RFC 6979 deterministic nonces (same key and hash, same
 *  signature); s is low (EIP-2). DM_EINVAL for an invalid key. */
int crypto_eth_sign_hash(const crypto_eth_key *k, const uint8_t hash[32], crypto_eth_sig *sig);
/** Recover the signer's address. DM_EBADSIG if the signature is invalid: recid > 1,
 *  r or s zero or >= the order, or s > order/2 (high-s, rejected as Ethereum does). */
int crypto_eth_recover(const uint8_t hash[32], const crypto_eth_sig *sig, uint8_t addr[20]);

#endif
