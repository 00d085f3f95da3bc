#ifndef DM_NODE_AUDIT_H
#define DM_NODE_AUDIT_H

#include "dm_log.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/*
 * The audit log (DESIGN.md 11): append-only, hash-chained entries in
 * STORE_CF_AUDIT, written in the same RocksDB batch as the operation they
 * record; events to be anchored on chain also get an entry in STORE_CF_OUTBOX
 * in that batch. Entry (canonical JSON, keys sorted, compact):
 *   {"seq":N,"ts_ms":T,"level":"INFO","event":"data_share","fields":{…},"prev":"<hex>"}
 * stored as {"entry":<that object>,"hash":"<hex SHA-256(prev bytes || canonical entry)>"}
 * under key seq (u64 BE). The outbox value is
 *   {"audit_seq":N,"entry_hash":"<hex>","event":{…the reference's event JSON…}}
 * Retention removes old entries from the start of the chain and keeps a checkpoint
 * (STORE_CF_META "audit_checkpoint") naming the last removed entry. Layout in
 * docs/STORAGE.md.
 *
 * Text log: every entry also becomes one line in the reference's format,
 * category "security" (`2024-01-15 10:30:00 - security - WARNING - …`): the
 * caller's message, or "<event>: k=v, k=v" built from the fields. Field values
 * under secret-looking names (api_key, token, password, secret, authorization,
 * *_key, *_token, …) are masked as dm_log_mask ("abc***") before they are
 * stored or logged (node_audit_mask_fields); callers' messages must be masked
 * already.
 *
 * Threads: any thread, except the post API (loop thread). Entries get seq
 * numbers in append order, so a writer holds the commit lock (node_audit_lock)
 * from its mark, through its appends, to its store_write, and rolls back to the
 * mark if the write fails; no other writer's entries can then interleave.
 * node_audit_commit does all of that for one entry. Writes block (fsync with
 * storage.sync): loop-thread callers use node_audit_post, or run the blocking
 * calls on the thread pool.
 *
 * What verification detects (node_audit_verify), each named by seq:
 *   - an entry altered (any byte of its entry or stored hash), removed from the
 *     middle, or moved/swapped (its seq differs from its key, or its prev from
 *     the previous entry's hash);
 *   - entries removed at the start beyond the retention checkpoint, a checkpoint
 *     altered or deleted (the first remaining entry must link to it, and it must
 *     match the last "audit_pruned" entry in the chain);
 *   - a local anchor record or outbox entry (the hashes sent, or to be sent, on
 *     chain) whose entry_hash differs from the entry's, or that names an entry
 *     past the end of the chain (the tail was cut).
 * What it cannot detect from the database alone: the chain has no secret, so
 * someone who can write the database can rewrite every entry from some seq on
 * with fresh hashes, or cut the tail (remove the last entries), and also remove
 * the local anchor records; the remainder is then a valid chain. Both are only
 * detectable against an anchored head: the head (seq + hash) is anchored on
 * chain periodically (node_audit_anchor_head) and every share event is anchored,
 * so the on-chain trail (dmnode verify) names what the database no longer holds.
 */
typedef struct node_audit node_audit_t;

typedef struct {
    uint64_t seq;        /* last appended seq */
    uint8_t hash[32];    /* its hash (all zero before the first entry) */
} node_audit_mark;

/* Bound of the post queue (entries waiting for the next thread-pool write). */
#define NODE_AUDIT_POST_MAX 4096u
/* Entries removed per prune batch (one RocksDB batch, under the commit lock). */
#define NODE_AUDIT_PRUNE_BATCH 1000u
/* STORE_CF_META key of the retention checkpoint. */
#define NODE_AUDIT_CHECKPOINT_KEY "audit_checkpoint"

/** Load the chain head from the store. */
int node_audit_open(node_audit_t **out, store_t *store);
/** Free. The post API must be detached first. NULL-safe. */
void node_audit_close(node_audit_t *a);

node_audit_mark node_audit_head(node_audit_t *a);
/** Serialise writers: hold from node_audit_head (the mark) to the store_write. */
void node_audit_lock(node_audit_t *a);
void node_audit_unlock(node_audit_t *a);
/**
 * Append one entry (as node_audit_append) to `b`, which may already hold the
 * operation's own writes, and write `b` to `store`, all under the commit lock;
 * on failure the head is rolled back and nothing is written. The text line is
 * written after the commit. Blocking.
 */
int node_audit_commit(node_audit_t *a, store_t *store, store_batch_t *b, dm_log_level level,
                      const char *event, json_t *fields, json_t *anchor_event,
                      const char *message);
void node_audit_rollback(node_audit_t *a, const node_audit_mark *m);

/**
 * Append one entry to `b` (not committed). `fields` is borrowed (may be NULL).
 * When `anchor_event` is non-NULL (borrowed) an outbox entry carrying it is
 * added too. The text line (`message`, or one built from event and fields when
 * NULL) is written at append time, when the level passes the log level.
 */
int node_audit_append(node_audit_t *a, store_batch_t *b, dm_log_level level, const char *event,
                      json_t *fields, json_t *anchor_event, const char *message);

/** Mask, in place, string values under secret-looking names (recursively), as
 *  dm_log_mask does ("abc***"); values already masked ("…***") are kept. */
void node_audit_mask_fields(json_t *fields);

/* ---------- asynchronous entries from the loop thread ---------- */

typedef struct {
    uint64_t posted;  /* accepted by node_audit_post (queued or counted as dropped) */
    uint64_t written; /* posted entries committed to the store */
    uint64_t dropped; /* refused because the queue was full */
    uint64_t failed;  /* lost to a failed write */
    uint64_t overflow_entries; /* audit_overflow entries written */
    size_t queued;    /* waiting now */
} node_audit_post_stats;

/**
 * Enable node_audit_post on `loop` (call from the loop thread). Posted entries
 * are written by a thread-pool job, one RocksDB batch per flush under the
 * commit lock, in post order. DM_EEXIST if attached already.
 */
int node_audit_attach(node_audit_t *a, uv_loop_t *loop);
/**
 * Queue one entry (loop thread; never blocks). `fields` is borrowed (copied and
 * masked). The text line (`message`, already masked, or one built from event and
 * fields) is written now. DM_OK when queued, and also when the queue is full
 * (NODE_AUDIT_POST_MAX): the entry is then counted as dropped and, as soon as
 * the queue drains, an "audit_overflow" entry (WARNING, fields {"dropped":N} and
 * "write_failed":M if a write failed) records how many were lost, so nothing is
 * dropped silently. DM_ECLOSED when not attached (nothing written, no line).
 */
int node_audit_post(node_audit_t *a, dm_log_level level, const char *event, json_t *fields,
                    const char *message);
/** Counters of the post API (loop thread). */
node_audit_post_stats node_audit_stats(node_audit_t *a);
/**
 * Flush what is queued, wait for the write in flight, release the loop's
 * handles, then call `cb(arg)` (may be NULL) on the loop thread. Posts made
 * meanwhile are still written; after cb, node_audit_post returns DM_ECLOSED. A
 * prune running on another thread stops after its current batch.
 */
void node_audit_detach(node_audit_t *a, void (*cb)(void *), void *arg);

/* ---------- retention and head anchoring (blocking; any thread) ---------- */

/**
 * Remove entries with ts_ms < older_than_ms from the start of the chain, in
 * batches of NODE_AUDIT_PRUNE_BATCH, never the head (the last entry stays). Each
 * batch, in one RocksDB write under the commit lock, deletes the entries, sets
 * the checkpoint {"seq":<last removed>,"hash":"<its hash>","ts_ms":<its ts_ms>,
 * "removed_total":N} and appends an "audit_pruned" entry (fields through_seq,
 * hash, count). The removed range is verified first: DM_ETAMPER (nothing removed
 * by that batch, the entry logged) rather than launder a broken chain.
 * *removed (may be NULL) counts what was removed. DM_ECLOSED when stopped by
 * node_audit_detach between batches.
 */
int node_audit_prune(node_audit_t *a, uint64_t older_than_ms, uint64_t *removed);

/**
 * Append an "audit_head" entry whose outbox event
 *   {"event_type":"audit_head","seq":N,"head_hash":"<hex>","timestamp":<unix s>}
 * anchors the current head (seq N, its hash) on chain like any event. DM_OK
 * when written (one outbox entry added: kick the anchorer); DM_EEXIST, nothing
 * written, when the chain is empty or its head is already an audit_head entry
 * (nothing new since the last one).
 */
int node_audit_anchor_head(node_audit_t *a, store_t *store);

/* ---------- verification (read-only; any thread) ---------- */

typedef struct {
    uint64_t entries;        /* entries checked */
    uint64_t first_seq;      /* first entry present (0: none) */
    uint64_t last_seq;       /* last entry present (0: none) */
    uint8_t head_hash[32];   /* hash of last_seq: compare with an anchored head */
    bool has_checkpoint;
    uint64_t checkpoint_seq; /* entries up to here were removed by retention */
    uint64_t anchored_checked; /* anchor records and outbox entries cross-checked */
    uint64_t bad_seq;        /* first broken entry (0 when intact) */
    const char *reason;      /* why bad_seq was named (static text; NULL when intact) */
} node_audit_report;

/**
 * Walk the chain from the checkpoint (or seq 1). DM_OK if intact; DM_ETAMPER
 * with r->bad_seq naming the first entry that was altered, removed or
 * reordered (its seq, or the seq expected where one is missing; for a
 * checkpoint that no audit_pruned entry confirms, the first seq it hides) and
 * r->reason; other codes for read failures.
 */
int node_audit_verify_report(store_t *store, node_audit_report *r);
/** node_audit_verify_report reduced to the entry count and the bad seq. */
int node_audit_verify(store_t *store, uint64_t *entries, uint64_t *bad_seq);

#endif
