#include "crypto_mem.h"
#include "dm_err.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

int crypto_random(uint8_t *out, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        if (RAND_bytes(out, chunk) != 1)
            return DM_ECRYPTO;
        out += chunk;
        n -= (size_t)chunk;
    }
    return DM_OK;
}

void crypto_memzero(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

bool crypto_ct_eq(const void *a, const void *b, size_t n)
{
    return n == 0 || CRYPTO_memcmp(a, b, n) == 0;
}

bool crypto_ct_streq(const char *given, const char *expected)
{
    size_t el = strlen(expected);
    size_t gl = strnlen(given, el + 1);
    /* walk the expected length whatever `given` is, so time leaks only |expected| */
    unsigned char diff = (unsigned char)(gl != el);
    for (size_t i = 0; i < el; i++) {
        unsigned char g = i < gl ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)expected[i]);
    }
    return diff == 0;
}
