#ifndef DM_COMMON_ENC_H
#define DM_COMMON_ENC_H

#include "dm_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Text encodings of bytes. Decoders are strict: any character outside the
 * alphabet, a wrong length or bad padding is DM_EPARSE, never a partial result.
 */

/** Lower-case hex of `n` bytes into `out` (2n+1 bytes, NUL-terminated). */
void dm_hex_encode(char *out, const uint8_t *in, size_t n);
/** The value of one hex digit (either case), or -1. */
int dm_hex_digit(char c);
/** Decode exactly `n` bytes from hex text of length `hexlen` (must be 2n). Upper/lower case. */
int dm_hex_decode(uint8_t *out, size_t n, const char *hex, size_t hexlen);
/** Decode hex of any even length, appending to `out`. An optional "0x" prefix is accepted. */
int dm_hex_decode_buf(dm_buf *out, const char *hex, size_t hexlen);

typedef enum {
    DM_B64_STD,    /* RFC 4648 §4, '+' '/', padded */
    DM_B64_URL,    /* RFC 4648 §5, '-' '_', padded (Fernet) */
} dm_b64_alphabet;

/** Append base64 text (padded) of `n` bytes to `out`. */
int dm_b64_encode(dm_buf *out, const uint8_t *in, size_t n, dm_b64_alphabet a);
/** Decode padded base64 text, appending bytes to `out`. Rejects missing padding,
 *  non-zero trailing bits and characters of the other alphabet. */
int dm_b64_decode(dm_buf *out, const char *in, size_t n, dm_b64_alphabet a);

#endif
