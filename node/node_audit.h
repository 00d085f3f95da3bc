#ifndef DM_NODE_AUDIT_H
#define DM_NODE_AUDIT_H

#include "dm_log.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * The audit log (DESIGN.md 11): append-only, hash-chained entries in
 * STORE_CF_AUDIT, written in the same RocksDB batch as the operation they
 * record; events to be anchored on chain also get an entry in STORE_CF_OUTBOX
 * in that batch. Entry (canonical JSON, keys sorted, compact):
 *   {"seq":N,"ts_ms":T,"level":"INFO","event":"data_share","fields":{…},"prev":"<hex>"}
 * stored as {"entry":<that object>,"hash":"<hex SHA-256(prev bytes || canonical entry)>"}
 * under key seq (u64 BE). The outbox value is
 *   {"audit_seq":N,"entry_hash":"<hex>","event":{…the reference's event JSON…}}
 * Layout in docs/STORAGE.md.
 *
 * Threads: any thread. Entries get seq numbers in append order, so a writer
 * holds the commit lock (node_audit_lock) from its mark, through its appends,
 * to its store_write, and rolls back to the mark if the write fails; no other
 * writer's entries can then interleave. node_audit_commit does all of that for
 * one entry. Writes block (fsync with storage.sync): loop-thread callers run
 * them on the thread pool.
 */
typedef struct node_audit node_audit_t;

typedef struct {
    uint64_t seq;        /* last appended seq */
    uint8_t hash[32];    /* its hash (all zero before the first entry) */
} node_audit_mark;

/** Load the chain head from the store. */
int node_audit_open(node_audit_t **out, store_t *store);
void node_audit_close(node_audit_t *a);

node_audit_mark node_audit_head(node_audit_t *a);
/** Serialise writers: hold from node_audit_head (the mark) to the store_write. */
void node_audit_lock(node_audit_t *a);
void node_audit_unlock(node_audit_t *a);
/**
 * Append one entry (as node_audit_append) to `b`, which may already hold the
 * operation's own writes, and write `b` to `store`, all under the commit lock;
 * on failure the head is rolled back and nothing is written. Blocking.
 */
int node_audit_commit(node_audit_t *a, store_t *store, store_batch_t *b, dm_log_level level,
                      const char *event, json_t *fields, json_t *anchor_event,
                      const char *message);
void node_audit_rollback(node_audit_t *a, const node_audit_mark *m);

/**
 * Append one entry to `b` (not committed). `fields` is borrowed (may be NULL).
 * When `anchor_event` is non-NULL (borrowed) an outbox entry carrying it is
 * added too. `message`, when non-NULL, is written as a log line (category
 * "security") in the reference's format; it must not contain secrets.
 */
int node_audit_append(node_audit_t *a, store_batch_t *b, dm_log_level level, const char *event,
                      json_t *fields, json_t *anchor_event, const char *message);

/**
 * Walk the whole chain. DM_OK if intact; DM_ETAMPER with *bad_seq naming the
 * first entry that was altered, removed or reordered (its seq, or the seq
 * expected where one is missing).
 */
int node_audit_verify(store_t *store, uint64_t *entries, uint64_t *bad_seq);

#endif
