#ifndef DM_CRYPTO_MEM_H
#define DM_CRYPTO_MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Fill `out` with `n` bytes from OpenSSL's CSPRNG. DM_ECRYPTO on failure. Any thread. */
int crypto_random(uint8_t *out, size_t n);
/** Zero `n` bytes in a way the compiler cannot elide. NULL-safe. */
void crypto_memzero(void *p, size_t n);
/** Constant-time equality of two equal-length buffers (time depends only on n). */
bool crypto_ct_eq(const void *a, const void *b, size_t n);
/** Constant-time equality of two strings of possibly different lengths; the
 *  time depends only on the length of `expected` (the secret side). */
bool crypto_ct_streq(const char *given, const char *expected);

#endif
