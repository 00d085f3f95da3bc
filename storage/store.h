#ifndef DM_STORAGE_STORE_H
#define DM_STORAGE_STORE_H

#include "dm_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The RocksDB layer: one database per node, one column family per kind of
 * record, typed big-endian key encodings, atomic write batches. Knows nothing
 * of the network. Layout documented in docs/STORAGE.md.
 *
 * Threads: a store_t may be used from several threads at once (RocksDB is
 * thread-safe); a store_batch_t or store_iter_t belongs to one thread at a time.
 * Errors: RocksDB failures become DM_ESTORE (DM_EBUSY when the database LOCK is
 * held by another process, DM_ECORRUPT for corruption) and the RocksDB message
 * is kept, readable through store_errmsg() until the next failing call on the
 * same thread.
 */

typedef enum {
    STORE_CF_DEFAULT = 0, /* unused by the node; RocksDB requires it */
    STORE_CF_META,        /* node metadata: schema version, node id, created time */
    STORE_CF_KEYS,        /* key manager: key store document, encrypted private keys */
    STORE_CF_SHARES,      /* share_id -> share record (payload encrypted) */
    STORE_CF_SEQ,         /* origin node id || seq (u64 BE) -> share_id */
    STORE_CF_AUDIT,       /* seq (u64 BE) -> hash-chained audit entry */
    STORE_CF_OUTBOX,      /* anchoring outbox: seq (u64 BE) -> pending event */
    STORE_CF_ANCHORS,     /* anchor records and per-event proofs */
    STORE_CF_PEERS,       /* peer table */
    STORE_CF_APIKEYS,     /* API key hashes and metadata */
    STORE_CF__COUNT
} store_cf;

typedef struct store store_t;
typedef struct store_batch store_batch_t;
typedef struct store_iter store_iter_t;

typedef struct {
    bool create;    /* create the database and missing column families */
    bool read_only; /* open without taking the LOCK (works beside a running daemon) */
    bool sync;      /* fsync the WAL on every write (storage.sync) */
} store_opts;

/** Name of a column family as stored in RocksDB ("meta", "keys", …). */
const char *store_cf_name(store_cf cf);

/**
 * Open (or create) the database in directory `path`. DM_ENOTFOUND if it does
 * not exist and !create; DM_EBUSY if another process holds it.
 */
int store_open(store_t **out, const char *path, const store_opts *opts);
/** Flush and close. NULL-safe. */
void store_close(store_t *s);
/** The RocksDB message of this thread's last failure ("" if none). */
const char *store_errmsg(void);

/** Read one value into `out` (appended). DM_ENOTFOUND if absent. */
int store_get(store_t *s, store_cf cf, const void *key, size_t klen, dm_buf *out);
/** Single-record write (a one-entry batch). */
int store_put(store_t *s, store_cf cf, const void *key, size_t klen, const void *val,
              size_t vlen);
int store_delete(store_t *s, store_cf cf, const void *key, size_t klen);

/** Atomic batches: every put/delete in a batch commits together or not at all. */
int store_batch_create(store_batch_t **out);
int store_batch_put(store_batch_t *b, store_cf cf, const void *key, size_t klen,
                    const void *val, size_t vlen);
int store_batch_delete(store_batch_t *b, store_cf cf, const void *key, size_t klen);
size_t store_batch_count(const store_batch_t *b);
void store_batch_clear(store_batch_t *b);
/** Commit. With opts.sync the call returns after the WAL is on disk. */
int store_write(store_t *s, store_batch_t *b);
void store_batch_destroy(store_batch_t *b);

/**
 * Iterate over the keys of `cf` that start with `prefix` (plen may be 0 for
 * all), in byte order, from `start` (NULL: from the prefix) on. Slices
 * returned by store_iter_next are borrowed until the next call.
 */
int store_iter_create(store_iter_t **out, store_t *s, store_cf cf, const void *prefix,
                      size_t plen, const void *start, size_t slen);
/** true and the next entry, or false at the end (check store_iter_status). */
bool store_iter_next(store_iter_t *it, const uint8_t **key, size_t *klen, const uint8_t **val,
                     size_t *vlen);
int store_iter_status(const store_iter_t *it);
/** The last entry (highest key) of `cf` starting with `prefix` (plen may be 0):
 *  key and value appended to `key` / `val` (either may be NULL). DM_ENOTFOUND
 *  if the range is empty. */
int store_get_last(store_t *s, store_cf cf, const void *prefix, size_t plen, dm_buf *key,
                   dm_buf *val);
void store_iter_destroy(store_iter_t *it);

#endif
