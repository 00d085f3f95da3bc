#ifndef DM_CRYPTO_KECCAK_H
#define DM_CRYPTO_KECCAK_H

#include <stddef.h>
#include <stdint.h>

/** Keccak-256 with Ethereum's original padding (0x01), not SHA3-256 (0x06). */
void crypto_keccak256(uint8_t out[32], const void *data, size_t n);

/*
 * Incremental Keccak-256, for inputs built in pieces (RLP, Merkle nodes).
 * A plain value: no allocation, may live on the stack, one owner at a time;
 * final() wipes it. Feeding the same bytes in any split gives the one-shot hash.
 */
typedef struct {
    uint64_t st[25]; /* Keccak-f[1600] state, lane (x, y) at st[x + 5y] */
    size_t pos;      /* bytes absorbed into the current 136-byte block */
    uint8_t pad;     /* domain byte: 0x01 Keccak, 0x06 SHA3 */
} crypto_keccak256_ctx;

void crypto_keccak256_init(crypto_keccak256_ctx *c);
void crypto_keccak256_update(crypto_keccak256_ctx *c, const void *data, size_t n);
void crypto_keccak256_final(crypto_keccak256_ctx *c, uint8_t out[32]);

/** Module-internal: the same sponge with SHA3-256's domain byte (0x06), so the tests can
 *  check the permutation and block handling against OpenSSL's SHA3-256. */
void crypto__sha3_256_init(crypto_keccak256_ctx *c);

#endif
