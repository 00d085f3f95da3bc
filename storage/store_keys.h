#ifndef DM_STORAGE_STORE_KEYS_H
#define DM_STORAGE_STORE_KEYS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Typed key encodings for the column families of store.h. Integers are
 * big-endian so that RocksDB's byte order is numeric order and a prefix scan
 * walks a range in sequence. Encoders write fixed-size arrays and cannot fail;
 * decoders check the length and return DM_EINVAL on a key of the wrong size.
 * Pure functions, any thread. The per-CF layout is in docs/STORAGE.md.
 */

#define STORE_KEY_U64_LEN 8
#define STORE_KEY_ID_LEN 32 /* raw SHA-256: share_id, origin node id */
#define STORE_KEY_SEQ_LEN (STORE_KEY_ID_LEN + STORE_KEY_U64_LEN)

/* STORE_CF_META keys (ASCII, no terminator) and the layout version this code writes. */
#define STORE_META_SCHEMA_VERSION "schema_version" /* value: u64 BE */
#define STORE_SCHEMA_VERSION 1

/** u64 as 8 bytes big-endian: STORE_CF_AUDIT and STORE_CF_OUTBOX keys. */
void store_key_u64(uint8_t out[STORE_KEY_U64_LEN], uint64_t v);
/** DM_EINVAL unless klen == 8. */
int store_key_u64_decode(const void *key, size_t klen, uint64_t *v);

/** origin node id (32 raw bytes) || seq (u64 BE): STORE_CF_SEQ keys. The
 *  first 32 bytes alone are the prefix that iterates one origin in seq order. */
void store_key_seq(uint8_t out[STORE_KEY_SEQ_LEN], const uint8_t origin[STORE_KEY_ID_LEN],
                   uint64_t seq);
/** DM_EINVAL unless klen == 40. `origin` may be NULL. */
int store_key_seq_decode(const void *key, size_t klen, uint8_t origin[STORE_KEY_ID_LEN],
                         uint64_t *seq);

/** A 32-byte id key (STORE_CF_SHARES: share_id): DM_EINVAL unless klen == 32;
 *  copies it to `out` (may be NULL to only check). */
int store_key_id_decode(const void *key, size_t klen, uint8_t out[STORE_KEY_ID_LEN]);

#endif
