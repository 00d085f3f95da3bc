#ifndef DM_NODE_SHARE_H
#define DM_NODE_SHARE_H

#include "chain_anchor.h"
#include "dm_buf.h"
#include "net_host.h"
#include "net_msg.h"
#include "node_audit.h"
#include "node_keys.h"
#include "store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * Shares (DESIGN.md 6, 7, 8) and the service that creates, validates, stores,
 * gossips and synchronises them.
 *
 * Canonical signed body: one msgpack array in this fixed order, each field in
 * its shortest msgpack encoding (decoders re-check this, so one share has one
 * byte string and one id):
 *   [1 (format), origin node id (bin 32), seq (uint, >= 1), timestamp_ms (uint),
 *    recipient (bin 20), amount (str: decimal, 1..30 digits, no leading zero, > 0),
 *    data (bin, <= 1 MiB), data_hash (bin 32 = SHA-256(data))]
 * share_id = SHA-256(body). signature = RSA-PSS (crypto_rsa_sign) over the body
 * by the origin's node key. Per-origin seq numbers start at 1 and increase by 1,
 * so gaps are detectable; a second body for an (origin, seq) already held is a
 * conflict and is rejected.
 *
 * Validation follows the reference's table: recipient ^0x[a-fA-F0-9]{40}$,
 * amount an integer with 0 < amount < 10^30 (as decimal text, never a double),
 * data <= 1 MiB, hashes 64 hex in the APIs.
 */

typedef struct {
    uint8_t id[32];           /* SHA-256(body) */
    uint8_t origin[32];
    uint64_t seq;
    uint64_t timestamp_ms;
    uint8_t recipient[20];
    char amount[31];          /* decimal text, NUL-terminated */
    const uint8_t *data;      /* borrowed from the body */
    size_t data_len;
    uint8_t data_hash[32];
} node_share_fields;

/** Encode the canonical body of `f` (id is ignored) into `out`. Validates first. */
int node_share_body_encode(dm_buf *out, const node_share_fields *f);
/** Decode and fully validate a body (schema, canonical encoding, data_hash,
 *  amount); computes f->id. `data` borrows `body`. DM_EINVAL / DM_EPARSE /
 *  DM_ETOOBIG / DM_ERANGE with no partial result on failure. */
int node_share_body_decode(const uint8_t *body, size_t n, node_share_fields *f);
/** Reference validation table, usable by the APIs. */
int node_share_parse_recipient(const char *text, size_t n, uint8_t out[20]); /* DM_EINVAL */
int node_share_check_amount(const char *text, size_t n);  /* DM_EINVAL / DM_ERANGE */
int node_share_parse_hash(const char *text, size_t n, uint8_t out[32]);     /* 64 hex */

typedef struct node_share_svc node_share_svc_t;

typedef struct {
    uv_loop_t *loop;
    store_t *store;            /* borrowed */
    node_keys_t *keys;         /* borrowed: node key (sign) and data key (seal at rest) */
    node_audit_t *audit;       /* borrowed: audit entries + anchoring outbox in the same batch */
    net_host_t *host;          /* borrowed: broadcast, misbehaviour reports */
    size_t seen_cache;         /* share ids remembered for duplicate drops; default 262144 */
    uint32_t sign_batch;       /* shares per thread-pool signing job; default 32 */
    uint32_t verify_batch;     /* default 32 */
    uint32_t commit_max;       /* shares per RocksDB batch; default 512 */
    uint32_t sync_interval_ms; /* periodic HWM exchange; default 5000 */
    uint32_t sync_page;        /* shares per SYNC_RESP, <= NET_MAX_SYNC_PAGE; default 128 */
    size_t max_pending;        /* local submissions not yet committed; beyond: DM_ELIMIT */
    /** Called on the loop after a commit that added anchoring outbox entries (the
     *  anchorer's cue); may be NULL. */
    void (*on_outbox)(void *arg, size_t added);
    void *on_outbox_arg;
} node_share_opts;

void node_share_opts_default(node_share_opts *o);
/** Loads per-origin high-water marks and this node's next seq from the store. */
int node_share_svc_create(node_share_svc_t **out, const node_share_opts *o);
/** Stop timers, wait for in-flight thread-pool jobs and commits, then free and
 *  call cb. Nothing acknowledged is lost. */
void node_share_svc_close(node_share_svc_t *s, void (*cb)(void *arg), void *arg);

/**
 * Local submission (API). Assigns the next seq, signs on the thread pool (in
 * batches), commits share + seq index + audit entry + outbox entry in one
 * RocksDB batch (group commit with other shares), and only then calls `cb`
 * with DM_OK and gossips the share. On failure cb gets the error and nothing
 * is stored. DM_ELIMIT immediately if too many submissions are pending.
 * `data` is copied.
 */
typedef struct {
    uint8_t id[32];
    uint8_t data_hash[32];
    uint64_t seq;
    uint64_t timestamp_ms;
} node_share_receipt;
typedef void (*node_share_submit_cb)(int status, const node_share_receipt *r, void *arg);
int node_share_submit(node_share_svc_t *s, const uint8_t recipient[20], const char *amount,
                      const uint8_t *data, size_t data_len, node_share_submit_cb cb, void *arg);

/** Wire the overlay: call from net_host callbacks. */
void node_share_on_peer_ready(node_share_svc_t *s, net_peer_t *p);
void node_share_on_peer_closed(node_share_svc_t *s, net_peer_t *p);
void node_share_on_message(node_share_svc_t *s, net_peer_t *p, const net_msg *m,
                           const uint8_t *frame, size_t frame_len);

/** A stored share, decrypted. Free with node_share_record_free. */
typedef struct {
    node_share_fields f;       /* data points into `body` */
    dm_buf body;
    dm_buf sig;
    uint64_t received_ms;
} node_share_record;
/** DM_ENOTFOUND if absent; DM_ETAMPER if the sealed record fails its MAC. Any thread. */
int node_share_read(node_share_svc_t *s, const uint8_t id[32], node_share_record *out);
void node_share_record_free(node_share_record *r);
/** Ids of `origin`'s shares with seq > after, ascending, at most `limit`. */
int node_share_list(node_share_svc_t *s, const uint8_t origin[32], uint64_t after, size_t limit,
                    uint8_t (*ids)[32], uint64_t *seqs, size_t *count);

typedef struct {
    uint8_t origin[32];
    uint64_t hwm;              /* highest contiguous committed seq */
    uint64_t max_seq;          /* highest committed seq (> hwm when there are gaps) */
} node_share_origin_info;
typedef struct {
    uint64_t stored;           /* shares in the store */
    uint64_t local_submitted, received, duplicates, invalid, verify_calls, relayed;
    uint64_t synced_in, synced_out, conflicts;
    size_t pending_local, pending_verify, pending_commit;
    /* anchor notices (node_share_anchor_notice_publish, ANCHOR frames) */
    uint64_t notices_sent;       /* published by this node */
    uint64_t notices_received;   /* ANCHOR frames from peers */
    uint64_t notices_duplicate;  /* already seen or already applied: nothing done */
    uint64_t notices_verified;   /* notices whose signature was checked (RSA) */
    uint64_t notices_stored;     /* verified notices that added foreign anchor records */
    uint64_t notices_invalid;    /* bad signature, root, binding or leaf: peer reported */
    uint64_t notices_dropped;    /* queue full, or the origin's key never came */
    uint64_t notices_relayed;    /* forwarded as received */
    uint64_t notices_replayed;   /* recent notices sent again to a peer that became ready */
    uint64_t anchor_records;     /* `rshare/` records written */
    size_t notices_pending;      /* waiting for a key, queued or being verified */
} node_share_stats;
void node_share_get_stats(const node_share_svc_t *s, node_share_stats *out);
/**
 * Data keys at rest (`keys reencrypt`, `keys list`): re-seal every stored share
 * not under the current data-key version, in atomic batches (safe to interrupt
 * and repeat; safe beside a running service, whose new shares are already
 * current), and count stored shares per version (counts[v-1] for v in 1..n).
 * Any thread.
 */
int node_share_reencrypt(store_t *store, const node_keys_t *keys, uint64_t *moved);
int node_share_count_versions(store_t *store, uint64_t *counts, size_t n);

/** Per-origin marks; returns the count written (up to max). */
size_t node_share_origins(const node_share_svc_t *s, node_share_origin_info *out, size_t max);

/*
 * Anchor notices (docs/ANCHORING.md "Anchor notices", wire in docs/PROTOCOL.md): when a
 * batch of this node's audit events is recorded final, the node signs the batch's anchor,
 * root and leaves (net_anchor_body) with its node key and gossips it as ANCHOR. Every node
 * that receives one drops duplicates by SHA-256(body), obtains the origin's key (KEYREQ;
 * the notice waits, bounded, for the answer), verifies on the thread pool the signature,
 * the Merkle root of the leaves and the origin's Ethereum binding for the sender, checks
 * every leaf against the share when it holds it, then stores for every share the notice
 * names a foreign anchor record (STORE_CF_ANCHORS `rshare/<id>`, one write batch) and
 * relays the frame as received to its other peers. An invalid notice is misbehaviour of
 * the peer that sent it. The notices published or stored in the last 10 minutes (at most
 * 16, 4 MiB) go again to every peer that becomes ready, so a node that was away briefly,
 * or not yet connected when its peer restarted, still gets them; beyond that there is no
 * anti-entropy for notices.
 */

/**
 * Publish the notice of one of this node's batches (the daemon's chain_anchor on_final).
 * `batch` is copied; batches naming no share are not published (DM_OK, nothing sent).
 * Encoding and RSA signing run on the thread pool, then the frame goes to every ready
 * peer. Loop thread. DM_EINVAL (no events, more than NET_ANCHOR_MAX_ITEMS), DM_ECLOSED,
 * DM_ENOMEM, DM_EIO.
 */
int node_share_anchor_notice_publish(node_share_svc_t *s, const chain_anchor_final *batch);

/**
 * The anchor record of a share that another node anchored, from a verified notice:
 * *record has the members of chain_anchor_proof's record (event, leaf, audit_seq,
 * entry_hash, merkle, anchor, chain_id, contract; the event rebuilt from the stored share
 * when the notice came before it, and checked against the leaf), *origin the anchoring
 * node's identity as a proof bundle names it (node_id, spki, eth_address, eth_binding).
 * New references. DM_ENOTFOUND (no notice names the share), DM_EAGAIN (the notice is here
 * but not the share, so its event is unknown), DM_ETAMPER (the stored share does not give
 * the notice's leaf), DM_ECORRUPT, DM_ESTORE, DM_ENOMEM. Any thread.
 */
int node_share_anchor_record(node_share_svc_t *s, const uint8_t id[32], json_t **record,
                             json_t **origin);

/** STORE_CF_ANCHORS key of a foreign anchor record: "rshare/" || 32-byte share id. */
#define NODE_SHARE_RSHARE_PREFIX "rshare/"
#define NODE_SHARE_RSHARE_KEY_LEN (7 + 32)
void node_share_rshare_key(uint8_t out[NODE_SHARE_RSHARE_KEY_LEN], const uint8_t id[32]);

#endif
