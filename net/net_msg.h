#ifndef DM_NET_MSG_H
#define DM_NET_MSG_H

#include "dm_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Wire format (docs/PROTOCOL.md). Every frame is a 4-byte big-endian length
 * followed by that many bytes holding exactly one msgpack array whose first
 * element is the message type (a positive fixint). Limits are checked before
 * anything is allocated: frame payload <= NET_FRAME_MAX, share data <=
 * NET_SHARE_DATA_MAX, msgpack nesting <= NET_MSGPACK_MAX_DEPTH, and every
 * declared array/str/bin length must fit in the bytes that remain.
 *
 * Decoding is zero-copy: net_slice fields of a decoded net_msg borrow the
 * payload buffer passed to net_msg_decode and are valid as long as it is.
 * Encoders append one complete frame (length prefix included) to a dm_buf.
 * Pure functions, any thread.
 */

#define NET_PROTO_VERSION 2 /* 2: ANCHOR (type 14) added */
#define NET_FRAME_MAX ((size_t)2 * 1024 * 1024)     /* payload bytes after the length prefix */
#define NET_SHARE_DATA_MAX ((size_t)1024 * 1024)    /* share payload (reference: data <= 1 MiB) */
#define NET_MSGPACK_MAX_DEPTH 8
#define NET_NONCE_LEN 32
#define NET_ID_LEN 32                               /* node ids and share ids: SHA-256 */
#define NET_MAX_PEERS_MSG 64                        /* addresses in one PEERS message */
#define NET_MAX_HWM 1024                            /* origins in one HWM message */
#define NET_MAX_SYNC_PAGE 256                       /* shares in one SYNC_RESP */
#define NET_MAX_STR 256                             /* network id, host, agent, reason */
#define NET_MAX_SPKI 1024
#define NET_MAX_SIG 512
#define NET_ANCHOR_FORMAT 1
#define NET_ANCHOR_MAX_ITEMS 4096                   /* events in one anchor notice (one batch) */
#define NET_ANCHOR_BODY_MAX ((size_t)512 * 1024)    /* 4096 items take < 460 KiB */

typedef enum {
    NET_MSG_HELLO = 1,     /* [1, version, network_id, node_id, spki, nonce, listen_port, agent] */
    NET_MSG_AUTH = 2,      /* [2, signature] */
    NET_MSG_PING = 3,      /* [3, nonce:u64] */
    NET_MSG_PONG = 4,      /* [4, nonce:u64] */
    NET_MSG_SHARE = 5,     /* [5, body:bin, signature:bin] */
    NET_MSG_GETPEERS = 6,  /* [6] */
    NET_MSG_PEERS = 7,     /* [7, [[node_id, host, port], ...]] */
    NET_MSG_KEYREQ = 8,    /* [8, node_id] */
    NET_MSG_KEY = 9,       /* [9, spki] */
    NET_MSG_HWM = 10,      /* [10, [[origin, seq], ...]] */
    NET_MSG_SYNCREQ = 11,  /* [11, origin, from_seq, limit] */
    NET_MSG_SYNCRESP = 12, /* [12, origin, [[body, signature], ...], more:bool] */
    NET_MSG_BYE = 13,      /* [13, code:uint, reason:str] */
    NET_MSG_ANCHOR = 14,   /* [14, origin, body:bin, signature:bin]: an anchor notice */
} net_msg_type;

typedef struct {
    const uint8_t *p;
    size_t n;
} net_slice;

typedef struct {
    uint8_t node_id[NET_ID_LEN];
    net_slice host;
    uint16_t port;
} net_peer_addr;

typedef struct {
    uint8_t origin[NET_ID_LEN];
    uint64_t seq;
} net_hwm_entry;

typedef struct {
    net_msg_type type;
    union {
        struct {
            uint32_t version;
            net_slice network_id;
            uint8_t node_id[NET_ID_LEN];
            net_slice spki;
            uint8_t nonce[NET_NONCE_LEN];
            uint16_t listen_port; /* 0: the peer does not accept connections */
            net_slice agent;
        } hello;
        struct {
            net_slice sig;
        } auth;
        struct {
            uint64_t nonce;
        } ping; /* PING and PONG */
        struct {
            net_slice body;
            net_slice sig;
        } share;
        struct {
            size_t count;
            net_peer_addr addr[NET_MAX_PEERS_MSG];
        } peers;
        struct {
            uint8_t node_id[NET_ID_LEN];
        } keyreq;
        struct {
            net_slice spki;
        } key;
        struct {
            size_t count;
            net_hwm_entry e[NET_MAX_HWM];
        } hwm;
        struct {
            uint8_t origin[NET_ID_LEN];
            uint64_t from_seq;
            uint32_t limit; /* 1..NET_MAX_SYNC_PAGE */
        } syncreq;
        struct {
            uint8_t origin[NET_ID_LEN];
            size_t count;
            net_slice body[NET_MAX_SYNC_PAGE];
            net_slice sig[NET_MAX_SYNC_PAGE];
            bool more;
        } syncresp;
        struct {
            uint32_t code;
            net_slice reason;
        } bye;
        struct {
            uint8_t origin[NET_ID_LEN]; /* the node whose key signed the body */
            net_slice body;             /* 1..NET_ANCHOR_BODY_MAX; net_anchor_body_decode */
            net_slice sig;
        } anchor;
    } u;
} net_msg;

/**
 * Read the 4-byte length prefix at the start of `buf` (`n` bytes available).
 * Returns DM_OK with *payload_len set, DM_EAGAIN if fewer than 4 bytes are
 * available, DM_ETOOBIG if the declared length exceeds
 * NET_FRAME_MAX, DM_EPROTO for a zero length. Call before allocating.
 */
int net_frame_header(const uint8_t *buf, size_t n, size_t *payload_len);

/**
 * Decode one frame payload (without the length prefix). Errors: DM_EPARSE for
 * malformed msgpack or a schema violation (wrong element types or counts,
 * trailing bytes, a count larger than the remaining bytes, nesting too deep),
 * DM_EPROTO for an unknown message type, DM_ETOOBIG for a field over its
 * limit. `out` is only meaningful on DM_OK. Never allocates.
 */
int net_msg_decode(const uint8_t *payload, size_t n, net_msg *out);

/** Human-readable name of a message type ("SHARE"), "UNKNOWN" otherwise. */
const char *net_msg_type_name(int type);

/* Encoders: append one complete frame (4-byte length + payload) to `out`. */
int net_msg_encode_hello(dm_buf *out, const char *network_id, const uint8_t node_id[NET_ID_LEN],
                         const uint8_t *spki, size_t spki_len,
                         const uint8_t nonce[NET_NONCE_LEN], uint16_t listen_port,
                         const char *agent);
int net_msg_encode_auth(dm_buf *out, const uint8_t *sig, size_t sig_len);
int net_msg_encode_ping(dm_buf *out, net_msg_type type /* PING or PONG */, uint64_t nonce);
int net_msg_encode_share(dm_buf *out, const uint8_t *body, size_t body_len, const uint8_t *sig,
                         size_t sig_len);
int net_msg_encode_getpeers(dm_buf *out);
int net_msg_encode_peers(dm_buf *out, const net_peer_addr *addr, size_t count);
int net_msg_encode_keyreq(dm_buf *out, const uint8_t node_id[NET_ID_LEN]);
int net_msg_encode_key(dm_buf *out, const uint8_t *spki, size_t spki_len);
int net_msg_encode_hwm(dm_buf *out, const net_hwm_entry *e, size_t count);
int net_msg_encode_syncreq(dm_buf *out, const uint8_t origin[NET_ID_LEN], uint64_t from_seq,
                           uint32_t limit);
/** SYNC_RESP is built incrementally so a page can be bounded by bytes:
 *  begin, add up to NET_MAX_SYNC_PAGE shares, end. */
typedef struct {
    dm_buf *out;
    size_t start;  /* offset of this frame in out */
    size_t count;
    size_t count_at; /* offset of the array header to patch */
} net_syncresp_builder;
int net_msg_syncresp_begin(net_syncresp_builder *b, dm_buf *out, const uint8_t origin[NET_ID_LEN]);
int net_msg_syncresp_add(net_syncresp_builder *b, const uint8_t *body, size_t body_len,
                         const uint8_t *sig, size_t sig_len);
int net_msg_syncresp_end(net_syncresp_builder *b, bool more);
int net_msg_encode_bye(dm_buf *out, uint32_t code, const char *reason);
/** ANCHOR: body 1..NET_ANCHOR_BODY_MAX bytes (not inspected here), sig 1..NET_MAX_SIG. */
int net_msg_encode_anchor(dm_buf *out, const uint8_t origin[NET_ID_LEN], const uint8_t *body,
                          size_t body_len, const uint8_t *sig, size_t sig_len);

/*
 * Anchor notice body (docs/PROTOCOL.md, "Anchor notices"): what the origin of a batch of
 * audit events tells every node once the batch's Merkle root is final on the chain. One
 * msgpack array, every value in its shortest encoding (the decoder rejects anything else,
 * so a notice has exactly one byte string and the SHA-256 of the body identifies it):
 *   [1 (format), chain_id:uint >= 1, contract:bin20, tx_hash:bin32, block_number:uint,
 *    block_hash:bin32, log_index:uint, sender:bin20, eth_binding:bin(1..NET_MAX_SIG),
 *    root:bin32, [[leaf:bin32, share_id:bin32|nil, audit_seq:uint, entry_hash:bin32], ...]]
 * with 1..NET_ANCHOR_MAX_ITEMS items in batch (leaf) order, audit_seq strictly ascending.
 * The body says nothing about validity: the receiver checks the signature, the root and
 * the binding (node/node_share.h).
 */
typedef struct {
    const uint8_t *leaf;       /* 32 bytes */
    const uint8_t *share_id;   /* 32 bytes, or NULL: the event names no share */
    uint64_t audit_seq;
    const uint8_t *entry_hash; /* 32 bytes */
} net_anchor_item;

typedef struct {
    uint64_t chain_id;
    uint8_t contract[20];
    uint8_t tx_hash[32];
    uint64_t block_number;
    uint8_t block_hash[32];
    uint64_t log_index;
    uint8_t sender[20];    /* the account that sent the anchoring transaction */
    net_slice eth_binding; /* the origin key's signature binding its node id to `sender` */
    uint8_t root[32];
    size_t count;          /* items */
} net_anchor_body;

/** Append the canonical body of `b` and its b->count `items` to `out` (nothing else).
 *  DM_EINVAL (chain_id 0, no items, a NULL pointer, audit_seq not ascending, empty
 *  binding), DM_ETOOBIG (more than NET_ANCHOR_MAX_ITEMS items, binding over NET_MAX_SIG),
 *  DM_ENOMEM. `out` unchanged on error. */
int net_anchor_body_encode(dm_buf *out, const net_anchor_body *b, const net_anchor_item *items);
/**
 * Decode and check a body: exactly the schema above, shortest encodings only, no trailing
 * bytes. `items` may be NULL (validate and count only); otherwise it must hold `cap`
 * entries and receives pointers into `p` (DM_ELIMIT if the body has more than `cap`).
 * DM_EPARSE (malformed, not canonical, wrong format), DM_ETOOBIG (over a limit), DM_EINVAL.
 * Never allocates; `b` and `items` are meaningful only on DM_OK.
 */
int net_anchor_body_decode(const uint8_t *p, size_t n, net_anchor_body *b, net_anchor_item *items,
                           size_t cap);

#endif
