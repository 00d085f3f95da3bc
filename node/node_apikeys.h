#ifndef DM_NODE_APIKEYS_H
#define DM_NODE_APIKEYS_H

#include "node_audit.h"
#include "store.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/*
 * API keys of the external API (DESIGN.md 12, issue 5). A key is
 * "dmk_" + base64url without padding of 32 random bytes (47 characters); it is
 * returned once by node_apikeys_create and never stored: the store keeps only
 * SHA-256(key) with the key's metadata, one record per id in STORE_CF_APIKEYS
 * (layout in docs/STORAGE.md). The listing shows the first 8 characters of the
 * key ("dmk_AbCd", 24 random bits) as its prefix, never more. Audit entries
 * (api_key_created, api_key_revoked) carry id, name, prefix and expiry only.
 *
 * All records are loaded into an in-memory table keyed by the hash, so a check
 * is a SHA-256, a table probe and a constant-time compare, with no store read.
 * Usage (last_used_at, request_count) is counted in memory by check and written
 * by node_apikeys_flush (periodically, and at close).
 *
 * Threads: check runs on the loop thread; create, revoke, flush, list and get
 * on thread-pool workers (they block on RocksDB). A mutex guards the table and
 * is never held across a store write, so check never waits on one; writers are
 * serialised among themselves by a second mutex.
 */
typedef struct node_apikeys node_apikeys_t;

#define NODE_APIKEY_LEN 47                      /* "dmk_" + 43 base64url characters */
#define NODE_APIKEY_PREFIX_LEN 8                /* "dmk_" + 4 characters, shown in listings */
#define NODE_APIKEY_ID_LEN 16                   /* 8 random bytes, lower-case hex */
#define NODE_APIKEY_NAME_MAX 64                 /* 1..64 of [A-Za-z0-9 ._-] */
#define NODE_APIKEYS_MAX 10000                  /* stored keys (revoked ones count) */
#define NODE_APIKEY_EXPIRES_MAX 253402300800ULL /* exclusive: year 10000 */

typedef struct {
    char id[NODE_APIKEY_ID_LEN + 1];
    char name[NODE_APIKEY_NAME_MAX + 1];
    char prefix[NODE_APIKEY_PREFIX_LEN + 1];
    uint64_t created_at;   /* unix seconds */
    uint64_t expires_at;   /* 0 = never */
    uint64_t revoked_at;   /* 0 = not revoked */
    uint64_t last_used_at; /* 0 = never used */
    uint64_t request_count;
} node_apikey_info;

/** Load every record of STORE_CF_APIKEYS. DM_ECORRUPT (nothing opened) if a
 *  record is malformed. `audit` is borrowed; both must outlive the table. */
int node_apikeys_open(node_apikeys_t **out, store_t *store, node_audit_t *audit);
/** Flush usage counters (a failure is logged), then free. NULL-safe. */
void node_apikeys_close(node_apikeys_t *k);

/**
 * Create a key named `name` expiring at `expires_at` (unix seconds; 0 = never)
 * at time `now`. One batch: the record and the audit entry "api_key_created".
 * The key text (NUL-terminated) goes to key_out, shown once: callers wipe it
 * with crypto_memzero after use. DM_EINVAL with a message in errmsg for a bad
 * name (1..64 of [A-Za-z0-9 ._-]) or expiry (must be > now and < year 10000),
 * DM_ELIMIT at NODE_APIKEYS_MAX keys; store errors as returned. Blocking.
 */
int node_apikeys_create(node_apikeys_t *k, const char *name, uint64_t expires_at, uint64_t now,
                        node_apikey_info *info, char key_out[NODE_APIKEY_LEN + 1], char *errmsg,
                        size_t errcap);

/**
 * Revoke key `id` at `now` (> 0): one batch of the record and the audit entry
 * "api_key_revoked"; checks fail from the moment this returns. DM_ENOTFOUND for
 * an unknown id; an already revoked key is DM_OK and nothing is written.
 * Blocking.
 */
int node_apikeys_revoke(node_apikeys_t *k, const char *id, uint64_t now);

/** Every key, sorted by created_at then id, into a malloc'ed array (*out may be
 *  NULL when *n is 0); the caller frees it. Never holds key material. */
int node_apikeys_list(node_apikeys_t *k, node_apikey_info **out, size_t *n);
/** One key by id. DM_ENOTFOUND if unknown. */
int node_apikeys_get(node_apikeys_t *k, const char *id, node_apikey_info *info);

/**
 * Authenticate a presented key at `now`. DM_OK with *info filled (may be NULL)
 * when it is known, not revoked and not expired (expires_at > now or never),
 * and then counts the use in memory (no store write). Otherwise DM_EAUTH, the
 * same code for every failure, with *why (may be NULL) set to "unknown" (also
 * for text of the wrong length or alphabet), "expired" or "revoked" for the
 * audit log; the string is static. The table is probed by SHA-256 of the
 * presented text and the stored hash compared with crypto_ct_eq, so neither
 * the probe nor the compare leaks the key. Loop thread; does not block on I/O.
 */
int node_apikeys_check(node_apikeys_t *k, const char *presented, uint64_t now,
                       node_apikey_info *info, const char **why);

/** Persist changed usage counters in one batch (no audit entry); DM_OK without
 *  a write when nothing changed. Blocking: thread pool, every few seconds. */
int node_apikeys_flush(node_apikeys_t *k);

/**
 * The public JSON of a key, as GET /v1/apikeys lists it:
 * {"id","name","prefix","created_at","expires_at","revoked_at","last_used_at",
 *  "request_count"} with null for the unset times (0). New reference; NULL on
 * allocation failure.
 */
json_t *node_apikey_info_json(const node_apikey_info *info);
/**
 * Parse such an object (or a stored record, or the 201 body of
 * POST /v1/apikeys) into *info: id, name and prefix required and valid,
 * created_at required, the other times null/absent = 0; other fields ignored.
 * DM_EPARSE if anything is malformed.
 */
int node_apikey_info_from_json(const json_t *j, node_apikey_info *info);

#endif
