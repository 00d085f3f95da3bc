#ifndef DM_CHAIN_HEX_H
#define DM_CHAIN_HEX_H

#include "dm_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * 256-bit unsigned integers (wei amounts, fees, EVM words) and the text forms Ethereum
 * uses for them: decimal strings in config files and JSON, and JSON-RPC hex QUANTITY /
 * DATA strings. Parsers are strict: anything but the canonical form is DM_EPARSE, a value
 * too large for its type is DM_ERANGE; nothing is ever partially written on error.
 * Pure functions: safe from any thread.
 */

/** An unsigned 256-bit integer, big-endian. A plain value (copy freely). */
typedef struct {
    uint8_t be[32];
} chain_u256;

/** Longest decimal text of a chain_u256 (2^256-1 has 78 digits) plus NUL. */
#define CHAIN_U256_DEC_MAX 79
/** Longest QUANTITY text: "0x" + 64 hex digits + NUL. */
#define CHAIN_U256_HEX_MAX 67
/** Longest u64 QUANTITY text: "0x" + 16 hex digits + NUL. */
#define CHAIN_U64_HEX_MAX 19

void chain_u256_from_u64(chain_u256 *out, uint64_t v);
/** DM_ERANGE if the value exceeds UINT64_MAX. */
int chain_u256_to_u64(const chain_u256 *v, uint64_t *out);
/** -1, 0 or 1 as a <, ==, > b. */
int chain_u256_cmp(const chain_u256 *a, const chain_u256 *b);
bool chain_u256_is_zero(const chain_u256 *v);
/** out = a + b; DM_ERANGE on overflow (out untouched). out may alias a or b. */
int chain_u256_add(chain_u256 *out, const chain_u256 *a, const chain_u256 *b);
/** out = a - b; DM_ERANGE if b > a (out untouched). out may alias a or b. */
int chain_u256_sub(chain_u256 *out, const chain_u256 *a, const chain_u256 *b);
/** out = a * m; DM_ERANGE on overflow (out untouched). out may alias a. */
int chain_u256_mul_u64(chain_u256 *out, const chain_u256 *a, uint64_t m);
/** out = a / d, *rem (optional) = a % d. DM_EINVAL if d == 0. out may alias a. */
int chain_u256_div_u64(chain_u256 *out, const chain_u256 *a, uint64_t d, uint64_t *rem);

/** Decimal text (n bytes, no NUL needed): one or more ASCII digits and nothing else — no
 *  sign, no spaces, no leading zero unless the value is exactly "0". DM_EPARSE for bad
 *  syntax, DM_ERANGE above 2^256-1. */
int chain_u256_from_dec(chain_u256 *out, const char *s, size_t n);
/** Decimal text, NUL-terminated, no leading zeros ("0" for zero). */
void chain_u256_to_dec(const chain_u256 *v, char out[CHAIN_U256_DEC_MAX]);

/*
 * JSON-RPC QUANTITY: "0x" then lower- or upper-case hex digits without leading zeros;
 * zero is "0x0". "0x", "0x01", "1a", "0X1a", signs and spaces are DM_EPARSE. Formatting is
 * lower case.
 */
/** Parse a QUANTITY of n bytes into a u64; DM_ERANGE above UINT64_MAX. */
int chain_hex_quantity_parse_u64(const char *s, size_t n, uint64_t *out);
/** Parse a QUANTITY of n bytes into a u256; DM_ERANGE above 2^256-1. */
int chain_hex_quantity_parse_u256(const char *s, size_t n, chain_u256 *out);
void chain_hex_quantity_format_u64(uint64_t v, char out[CHAIN_U64_HEX_MAX]);
void chain_hex_quantity_format_u256(const chain_u256 *v, char out[CHAIN_U256_HEX_MAX]);

/*
 * JSON-RPC DATA: "0x" then an even number of hex digits (either case), "0x" alone being
 * empty data. Formatting is lower case.
 */
/** Parse DATA of exactly `len` bytes (hash, address, word) into out. DM_EPARSE otherwise. */
int chain_hex_data_parse_fixed(const char *s, size_t n, uint8_t *out, size_t len);
/** Parse DATA of any length, appending the bytes to `out`. DM_EPARSE, DM_ENOMEM. */
int chain_hex_data_parse(const char *s, size_t n, dm_buf *out);
/** Append "0x" + lower-case hex of p[0..len) to `out` (not NUL-terminated; use
 *  dm_buf_cstr). DM_ENOMEM, DM_ETOOBIG. */
int chain_hex_data_append(dm_buf *out, const uint8_t *p, size_t len);

#endif
