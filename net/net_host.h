#ifndef DM_NET_HOST_H
#define DM_NET_HOST_H

#include "crypto_rsa.h"
#include "net_msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * The P2P overlay host: one TCP listener, outbound dialer, and the set of
 * peers, all on one libuv loop (DESIGN.md 1, 5). It owns the connection
 * lifecycle — authenticated handshake, ping/pong keepalive, idle timeouts,
 * bounded send queues, reconnect with exponential backoff and jitter, peer
 * exchange (GETPEERS/PEERS), inbound/outbound limits, misbehaviour scores and
 * address bans — and hands every other authenticated message to the owner
 * through on_message. It knows nothing of shares or storage.
 *
 * Handshake (docs/PROTOCOL.md): both sides send HELLO (version, network id,
 * node id, SPKI, fresh 32-byte nonce, listen port); each checks the network id
 * and version, that node_id == SHA-256(SPKI), that the node id is not its own,
 * and the allowlist if one is set; then each sends AUTH = RSA-PSS signature
 * over "dmnode-auth-v1" || network_id || signer node id || verifier node id ||
 * verifier's nonce || signer's nonce. Signing and verification run on the
 * libuv thread pool. A peer that fails any step, or sends anything else
 * before the handshake ends, is disconnected and scored. A second connection
 * to an already connected node id is closed (the one dialled by the lower
 * node id survives).
 *
 * Threads: every function must be called on the loop thread. Callbacks run on
 * the loop thread. A net_peer_t pointer is valid from on_peer_ready until
 * on_peer_closed returns; never keep it longer.
 *
 * Misbehaviour policy. Scores are kept per IP address (a connection that
 * offends is closed, so per-connection scores would never add up); an
 * address is banned for ban_seconds when its score reaches ban_threshold,
 * and a score lapses after ban_seconds without offence. Each of these scores
 * 50 (two offences ban at the default threshold of 100) and disconnects: an
 * undecodable frame (malformed msgpack, unknown type, field over its limit),
 * a length prefix over NET_FRAME_MAX (checked before allocating; before the
 * handshake ends, frames over 8 KiB count as oversize too), any message other
 * than HELLO then AUTH during the handshake, HELLO/AUTH after it, a node id
 * that is not SHA-256 of its SPKI, an unusable key, and an AUTH signature
 * that does not verify. Closed without score: a wrong network id or protocol
 * version (a configuration mismatch, not an attack: the address keeps being
 * retried with backoff), a node not on the allowlist, a connection to
 * ourselves (the address is then forgotten), handshake and idle timeouts,
 * duplicates, and a full send queue. A banned address is closed right after
 * accept (stats.rejected_banned) and not dialled. Addresses learnt from PEERS
 * are only candidates: IP literals only, never our own node id, bounded by
 * known_max, and forgotten after 5 failed dials if they never completed a
 * handshake. PEERS is accepted only in answer to our GETPEERS.
 */

/** Codes carried by BYE: informational (the receiver logs the code and reason, then
 *  closes); they are also why this host closes a connection. */
typedef enum {
    NET_BYE_SHUTDOWN = 1,    /* the sender is stopping */
    NET_BYE_DUPLICATE = 2,   /* another connection between the same two nodes survives */
    NET_BYE_CONFIG = 3,      /* network id or protocol version differs */
    NET_BYE_NOT_ALLOWED = 4, /* not on the sender's allowlist */
    NET_BYE_SELF = 5,        /* a node connected to itself */
    NET_BYE_PROTOCOL = 6,    /* misbehaviour (see above) */
    NET_BYE_TIMEOUT = 7,     /* handshake or idle timeout */
    NET_BYE_SLOW = 8,        /* send queue over send_queue_max */
    NET_BYE_FULL = 9,        /* inbound limit reached */
    NET_BYE_BANNED = 10,     /* address banned */
    NET_BYE_LOST = 11,       /* (not sent) connection lost, EOF, BYE received */
    NET_BYE_INTERNAL = 12,   /* the sender failed locally (memory, crypto) */
} net_bye_code;

typedef struct net_host net_host_t;
typedef struct net_peer net_peer_t;

typedef struct {
    /** Handshake completed; the peer may now be sent messages. */
    void (*on_peer_ready)(net_peer_t *p, void *arg);
    /** The peer is gone (only for peers that were ready). */
    void (*on_peer_closed)(net_peer_t *p, void *arg);
    /**
     * An authenticated message other than HELLO/AUTH/PING/PONG/GETPEERS/PEERS/BYE.
     * `frame` (with its length prefix) and the slices in `m` are borrowed for the
     * duration of the call only; copy or net_frame_retain to keep them.
     */
    void (*on_message)(net_peer_t *p, const net_msg *m, const uint8_t *frame, size_t frame_len,
                       void *arg);
    /** Optional: an address was banned for `seconds` after repeated misbehaviour (for the
     *  audit log). */
    void (*on_banned)(const char *ip, uint32_t seconds, void *arg);
} net_host_cbs;

typedef struct {
    char host[256];
    uint16_t port;
} net_addr;

typedef struct {
    const char *network_id;      /* borrowed for the host's lifetime */
    const crypto_rsa_t *key;     /* the node key (borrowed): signs AUTH */
    net_addr listen;             /* port 0: pick a free port (see net_host_listen_port) */
    const net_addr *bootstrap;   /* copied */
    size_t bootstrap_len;
    const uint8_t (*allowlist)[NET_ID_LEN]; /* copied; NULL/0: open network */
    size_t allowlist_len;
    uint32_t max_inbound;        /* default 32 */
    uint32_t max_outbound;       /* default 8: dial known addresses up to this many */
    uint32_t ban_seconds;        /* default 3600 */
    uint32_t ping_interval_ms;   /* default 15000 */
    uint32_t idle_timeout_ms;    /* default 60000: no frame for this long -> close */
    uint32_t handshake_timeout_ms; /* default 10000 */
    size_t send_queue_max;       /* bytes queued to one peer before it is dropped; default 64 MiB */
    uint32_t reconnect_min_ms;   /* default 500 */
    uint32_t reconnect_max_ms;   /* default 60000 */
    uint32_t ban_threshold;      /* misbehaviour score that bans; default 100 */
    size_t known_max;            /* bounded table of known addresses; default 1024 */
} net_host_opts;

/** Fill `o` with the defaults above (zeros elsewhere). */
void net_host_opts_default(net_host_opts *o);

int net_host_create(net_host_t **out, uv_loop_t *loop, const net_host_opts *o,
                    const net_host_cbs *cbs, void *arg);
/** Bind, listen and start dialling bootstrap and known addresses. DM_ECONN with a
 *  logged reason if the listen address cannot be bound. */
int net_host_start(net_host_t *h);
/** The bound port (after start). */
uint16_t net_host_listen_port(const net_host_t *h);
/** Stop accepting and dialling, close every peer (sending BYE), and free the host
 *  once all its handles are closed; `cb` (may be NULL) fires then. */
void net_host_close(net_host_t *h, void (*cb)(void *arg), void *arg);

/** Known addresses (for persistence by the owner) and their injection at start. */
typedef struct {
    uint8_t node_id[NET_ID_LEN]; /* all-zero if not known yet */
    net_addr addr;
    uint64_t last_seen;          /* Unix seconds, 0 if never connected */
} net_known_addr;
int net_host_add_known(net_host_t *h, const net_known_addr *a);
/** Copy up to `max` known addresses into `out`; returns the count. */
size_t net_host_known(const net_host_t *h, net_known_addr *out, size_t max);

/**
 * Frames shared by many peers without copying: a reference-counted buffer
 * holding one complete frame. net_frame_new copies `n` bytes; each send takes
 * a reference until its write completes.
 */
typedef struct net_frame net_frame_t;
net_frame_t *net_frame_new(const uint8_t *frame, size_t n);
net_frame_t *net_frame_retain(net_frame_t *f);
void net_frame_release(net_frame_t *f);
const uint8_t *net_frame_data(const net_frame_t *f, size_t *n);

/** Queue a frame to one peer. DM_ELIMIT if its send queue is over the limit (the
 *  peer is then disconnected: a peer that does not read is dropped rather
 *  than growing memory), DM_ECLOSED if it is closing. */
int net_peer_send(net_peer_t *p, net_frame_t *f);
/** Copying convenience for small frames. */
int net_peer_send_bytes(net_peer_t *p, const uint8_t *frame, size_t n);
/** Queue to every ready peer except `except` (may be NULL); returns how many. */
size_t net_host_broadcast(net_host_t *h, net_frame_t *f, const net_peer_t *except);

/**
 * Report misbehaviour (the owner found an invalid share, a bad sync reply…).
 * Adds `score`; the peer is disconnected when `disconnect` is set or the score
 * reaches the ban threshold, in which case its address is banned for
 * ban_seconds. Safe to call from on_message: the close happens after the
 * callback returns. `reason` is logged (category "security").
 */
void net_peer_misbehave(net_peer_t *p, uint32_t score, bool disconnect, const char *reason);

const uint8_t *net_peer_node_id(const net_peer_t *p);      /* 32 bytes */
const char *net_peer_node_id_hex(const net_peer_t *p);     /* 64 hex */
const uint8_t *net_peer_spki(const net_peer_t *p, size_t *n);
const char *net_peer_remote(const net_peer_t *p);          /* "ip:port" */
bool net_peer_outbound(const net_peer_t *p);
/** Owner data slot (e.g. the share service's per-peer sync state). */
void net_peer_set_data(net_peer_t *p, void *data);
void *net_peer_data(const net_peer_t *p);

typedef struct {
    char node_id[65];
    char remote[64];
    uint16_t listen_port;
    bool outbound;
    uint64_t connected_ms;       /* uv_now at ready */
    uint64_t bytes_in, bytes_out, frames_in, frames_out;
    size_t send_queue;           /* bytes queued */
    uint32_t score;
    uint32_t rtt_ms;             /* last ping round trip */
} net_peer_info;

/** Snapshot of ready peers into `out` (up to max); returns the count. */
size_t net_host_peers(const net_host_t *h, net_peer_info *out, size_t max);
size_t net_host_peer_count(const net_host_t *h);

typedef struct {
    uint64_t accepted, dialed, handshakes_ok, handshakes_failed;
    uint64_t disconnects_misbehaviour, bans, rejected_banned, dropped_slow;
    size_t banned_now;
} net_host_stats;
void net_host_get_stats(const net_host_t *h, net_host_stats *out);

#endif
