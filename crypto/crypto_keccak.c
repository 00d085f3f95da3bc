/*
 * Keccak-256 (the pre-FIPS padding Ethereum uses), written from the Keccak
 * reference: Keccak-f[1600], rate 136 bytes, capacity 512 bits. Lanes are
 * loaded and stored little-endian byte by byte, so the code does not depend
 * on the host's byte order.
 */
#include "crypto_keccak.h"
#include "crypto_mem.h"

#include <string.h>

#define RATE 136

static const uint64_t round_consts[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* rho rotation offsets, indexed x + 5y */
static const unsigned rho[25] = {
    0,  1,  62, 28, 27, /* y = 0 */
    36, 44, 6,  55, 20, /* y = 1 */
    3,  10, 43, 25, 39, /* y = 2 */
    41, 45, 15, 21, 8,  /* y = 3 */
    18, 2,  61, 56, 14, /* y = 4 */
};

static uint64_t rotl64(uint64_t v, unsigned n)
{
    /* the mask keeps n == 0 defined (v | v) */
    return (v << n) | (v >> ((64 - n) & 63));
}

static void keccak_f1600(uint64_t a[25])
{
    uint64_t c[5], d[5], b[25];
    for (int round = 0; round < 24; round++) {
        /* theta */
        for (int x = 0; x < 5; x++)
            c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
        for (int x = 0; x < 5; x++)
            d[x] = c[(x + 4) % 5] ^ rotl64(c[(x + 1) % 5], 1);
        for (int i = 0; i < 25; i++)
            a[i] ^= d[i % 5];
        /* rho and pi: B[y, 2x + 3y] = rot(A[x, y], r[x, y]) */
        for (int x = 0; x < 5; x++)
            for (int y = 0; y < 5; y++)
                b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl64(a[x + 5 * y], rho[x + 5 * y]);
        /* chi */
        for (int y = 0; y < 5; y++)
            for (int x = 0; x < 5; x++)
                a[x + 5 * y] = b[x + 5 * y] ^ (~b[(x + 1) % 5 + 5 * y] & b[(x + 2) % 5 + 5 * y]);
        /* iota */
        a[0] ^= round_consts[round];
    }
    /* b held rotated state words; they may derive from secret input */
    crypto_memzero(b, sizeof b);
    crypto_memzero(c, sizeof c);
    crypto_memzero(d, sizeof d);
}

static uint64_t load64_le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void ctx_init(crypto_keccak256_ctx *c, uint8_t pad)
{
    memset(c->st, 0, sizeof c->st);
    c->pos = 0;
    c->pad = pad;
}

void crypto_keccak256_init(crypto_keccak256_ctx *c)
{
    ctx_init(c, 0x01);
}

void crypto__sha3_256_init(crypto_keccak256_ctx *c)
{
    ctx_init(c, 0x06);
}

void crypto_keccak256_update(crypto_keccak256_ctx *c, const void *data, size_t n)
{
    const uint8_t *p = data;
    /* finish a partial block byte by byte */
    while (n > 0 && c->pos != 0) {
        c->st[c->pos / 8] ^= (uint64_t)*p++ << (8 * (c->pos % 8));
        n--;
        if (++c->pos == RATE) {
            keccak_f1600(c->st);
            c->pos = 0;
        }
    }
    /* whole blocks a lane at a time */
    while (n >= RATE) {
        for (int i = 0; i < RATE / 8; i++)
            c->st[i] ^= load64_le(p + 8 * i);
        keccak_f1600(c->st);
        p += RATE;
        n -= RATE;
    }
    /* the tail starts a new block (pos is 0 here whenever n > 0) */
    for (; n > 0; n--, p++, c->pos++)
        c->st[c->pos / 8] ^= (uint64_t)*p << (8 * (c->pos % 8));
}

void crypto_keccak256_final(crypto_keccak256_ctx *c, uint8_t out[32])
{
    /* pad10*1 with the domain bits: first padding byte gets `pad`, last gets 0x80
     * (the same byte when pos == RATE - 1, so XOR both in) */
    c->st[c->pos / 8] ^= (uint64_t)c->pad << (8 * (c->pos % 8));
    c->st[(RATE - 1) / 8] ^= (uint64_t)0x80 << (8 * ((RATE - 1) % 8));
    keccak_f1600(c->st);
    for (int i = 0; i < 32; i++)
        out[i] = (uint8_t)(c->st[i / 8] >> (8 * (i % 8)));
    crypto_memzero(c, sizeof *c);
}

void crypto_keccak256(uint8_t out[32], const void *data, size_t n)
{
    crypto_keccak256_ctx c;
    crypto_keccak256_init(&c);
    crypto_keccak256_update(&c, data, n);
    crypto_keccak256_final(&c, out);
}
