#ifndef DM_CRYPTO_KECCAK_H
#define DM_CRYPTO_KECCAK_H

#include <stddef.h>
#include <stdint.h>

/** Keccak-256 with Ethereum's original padding (0x01), not SHA3-256 (0x06). */
void crypto_keccak256(uint8_t out[32], const void *data, size_t n);

#endif
