#ifndef DM_NET_HOST_INTERNAL_H
#define DM_NET_HOST_INTERNAL_H

/*
 * Shared between net_host.c (listener, dialer, address book, bans, timers,
 * reaping) and net_peer.c (one connection: read buffer, frames, handshake,
 * writes). Module-private: nothing outside net/ includes this.
 *
 * Lifetime of a peer (STYLE.md "Close asynchronously"):
 *   net__peer_new -> [dial/accept] -> net__peer_begin -> handshake -> READY
 *   net__peer_disconnect only marks it closing (reading stops, new sends fail);
 *   the host's reap timer later fires on_peer_closed (if it was ready) and
 *   calls uv_close; the memory is freed once the handle is closed AND no
 *   thread-pool job or getaddrinfo request still refers to it.
 */

#include "crypto_rsa.h"
#include "net_host.h"
#include "net_msg.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define NET__RBUF_MIN ((size_t)16 * 1024) /* read buffer kept by every connection */
#define NET__HS_FRAME_MAX ((size_t)8192)  /* frame cap before the handshake completes */
#define NET__SCORE_PROTO 50               /* one protocol violation; two ban at the default */
#define NET__ADDR_MAX 1024                /* addresses with a score or a ban */
#define NET__LEARNED_MAX_FAILS 5          /* a learned address that never answered is dropped */
#define NET__IP_LEN 46                    /* INET6_ADDRSTRLEN */
#define NET__AUTH_LABEL "dmnode-auth-v1"
#define NET__AUTH_LABEL_LEN 14
#define NET__AUTH_MSG_MAX (NET__AUTH_LABEL_LEN + NET_MAX_STR + 2 * NET_ID_LEN + 2 * NET_NONCE_LEN)
#define NET__AGENT "dmnode-net/1"
#define NET__OUTQ_MAX 64                     /* frames gathered per peer before one write */
#define NET__OUTQ_BYTES ((size_t)256 * 1024) /* ... or this many bytes */

struct net_frame {
    uint32_t refs; /* loop thread only: no atomics needed */
    size_t len;
    uint8_t data[];
};

typedef enum {
    NET__ST_CONNECTING, /* dialling: resolving or connecting */
    NET__ST_HELLO,      /* connected, waiting for the peer's HELLO */
    NET__ST_AUTH,       /* HELLO accepted, waiting for its AUTH */
    NET__ST_VERIFY,     /* AUTH received, verification on the pool: reading paused */
    NET__ST_READY,
} net__peer_state;

/* Why a connection ends: drives stats, logging, backoff, and the BYE code. */
typedef enum {
    NET__CL_NONE = 0,
    NET__CL_SHUTDOWN = NET_BYE_SHUTDOWN,
    NET__CL_DUPLICATE = NET_BYE_DUPLICATE, /* no penalty */
    NET__CL_CONFIG = NET_BYE_CONFIG,       /* network id / version mismatch: no penalty */
    NET__CL_NOTALLOWED = NET_BYE_NOT_ALLOWED,
    NET__CL_SELF = NET_BYE_SELF,
    NET__CL_PROTOCOL = NET_BYE_PROTOCOL, /* misbehaviour: scored */
    NET__CL_TIMEOUT = NET_BYE_TIMEOUT,
    NET__CL_SLOW = NET_BYE_SLOW,
    NET__CL_FULL = NET_BYE_FULL,
    NET__CL_BANNED = NET_BYE_BANNED,
    NET__CL_REMOTE = NET_BYE_LOST, /* EOF, BYE, reset, connect failure */
    NET__CL_INTERNAL = NET_BYE_INTERNAL,
} net__close_reason;

/* One address we may dial (bootstrap, learned from PEERS, or injected). */
typedef struct {
    bool used;
    bool bootstrap;
    bool has_id; /* node_id is a hint until a handshake confirms it */
    uint8_t node_id[NET_ID_LEN];
    net_addr addr;
    uint64_t last_seen;    /* Unix seconds of the last completed handshake */
    uint32_t backoff_ms;   /* next delay after a failure */
    uint64_t next_attempt; /* uv_now() when it may be dialled again */
    uint32_t fails;        /* consecutive failures */
    net_peer_t *peer;      /* the connection dialled to it, if any */
} net__known;

/* Misbehaviour score and ban per IP address (text form). */
typedef struct {
    bool used;
    char ip[NET__IP_LEN];
    uint32_t score;
    uint64_t last_ms;      /* uv_now of the last offence: scores older than ban_seconds lapse */
    uint64_t banned_until; /* uv_now; 0 if not banned */
} net__addr_rec;

struct net_peer {
    net_host_t *h;
    net_peer_t *prev, *next;
    uv_tcp_t tcp;
    uv_connect_t conn_req;
    uv_getaddrinfo_t gai;
    net__peer_state state;
    bool outbound;
    bool connected;     /* TCP established */
    bool counted;       /* counted in n_in / n_out */
    bool begun;         /* HELLO sent: a close before READY is a failed handshake */
    bool gai_pending;   /* getaddrinfo in flight */
    bool closing;       /* marked: no more reading or sending */
    bool close_started; /* uv_close called */
    bool tcp_closed;    /* close callback ran */
    bool ready;
    bool auth_sent, auth_ok;
    bool has_id; /* node_id from a HELLO that matched its SPKI */
    bool getpeers_pending;
    bool ping_outstanding;
    net__close_reason reason;
    char why[64];     /* what ended it, for the log */
    unsigned pending; /* thread-pool jobs and getaddrinfo requests holding this peer */
    long entry;       /* index in h->known for an outbound dial, -1 otherwise */

    char ip[NET__IP_LEN];
    uint16_t port;
    char remote[64];

    uint8_t *rbuf;
    size_t rlen, rcap, rneed;

    uint8_t my_nonce[NET_NONCE_LEN];
    uint8_t their_nonce[NET_NONCE_LEN];
    uint8_t node_id[NET_ID_LEN];
    char node_id_hex[65];
    uint8_t *spki;
    size_t spki_len;
    crypto_rsa_t *pub;
    uint16_t listen_port;

    size_t sendq; /* bytes gathered plus bytes handed to libuv and not yet written */
    /* frames gathered in this loop iteration: the host flushes them with one write
     * (a writev) per peer before the loop next waits (net__peer_flush) */
    net_frame_t *outq[NET__OUTQ_MAX];
    size_t nout, outbytes;
    uint64_t bytes_in, bytes_out, frames_in, frames_out;
    uint32_t score;
    uint32_t rtt_ms;
    uint64_t hs_deadline, connected_ms, last_rx, ping_sent, last_getpeers;
    uint64_t ping_nonce;
    void *data;
};

struct net_host {
    uv_loop_t *loop;
    net_host_opts o; /* copied; pointer members cleared */
    char network_id[NET_MAX_STR + 1];
    size_t network_id_len;
    const crypto_rsa_t *key;
    uint8_t *spki;
    size_t spki_len;
    uint8_t node_id[NET_ID_LEN];
    char node_id_hex[65];
    uint8_t (*allow)[NET_ID_LEN];
    size_t allow_len;
    net_host_cbs cbs;
    void *arg;

    uv_tcp_t listener;
    uv_timer_t tick; /* timeouts, pings, dialling */
    uv_timer_t kick; /* one-shot: dial soon */
    uv_timer_t reap; /* one-shot: finish closing marked peers */
    uv_prepare_t flush_prep; /* write gathered frames before the loop waits ... */
    uv_check_t flush_check;  /* ... and right after the I/O callbacks that queued them */
    bool flush_armed;
    unsigned handles_open;
    bool listening, started, closing, reap_closed;
    uint16_t port;

    net_peer_t *peers; /* every connection, any state */
    uint32_t n_in, n_out;

    net__known *known;
    size_t known_cap;
    net__addr_rec *addrs;

    net_host_stats stats;
    uint64_t rng;
    net_msg msg; /* decode scratch (large: keep it off the stack) */

    void (*close_cb)(void *arg);
    void *close_arg;
};

/* ---- net_peer.c ---- */
net_peer_t *net__peer_new(net_host_t *h, bool outbound);
/** TCP is up (accepted or connected): fill the remote address, send HELLO, read. */
void net__peer_begin(net_peer_t *p);
/** Mark the peer closing (idempotent). `bye` sends a best-effort BYE first. */
void net__peer_disconnect(net_peer_t *p, net__close_reason why, bool bye, const char *detail);
/** A protocol violation: log, score the address, disconnect (bans past the threshold). */
void net__peer_violation(net_peer_t *p, uint32_t score, const char *what);
/** Start uv_close on the peer's handle (called by the reaper only). */
void net__peer_close_handle(net_peer_t *p);
/** Free the peer if its handle is closed and nothing else refers to it. */
void net__peer_maybe_free(net_peer_t *p);
/** Fill ip/port/remote from the connected socket. */
void net__peer_fill_remote(net_peer_t *p);
/** Queue an already-built frame regardless of handshake state. */
int net__peer_write(net_peer_t *p, net_frame_t *f);
/** Write the frames gathered for `p` (one uv_write of several buffers). */
void net__peer_flush(net_peer_t *p);
/** Encode-and-queue helpers for the host's own messages. */
int net__peer_send_buf(net_peer_t *p, const dm_buf *b);
void net__peer_ping(net_peer_t *p);
void net__peer_getpeers(net_peer_t *p);
/** "ip:port" or "[ip]:port" from a sockaddr; the IP alone into ip. */
void net__sockaddr_str(const struct sockaddr *sa, char ip[NET__IP_LEN], uint16_t *port);

/* ---- net_host.c ---- */
void net__host_schedule_reap(net_host_t *h);
void net__host_kick(net_host_t *h);
/** Some peer has gathered frames: flush them before the loop next waits for I/O. */
void net__host_want_flush(net_host_t *h);
void net__host_unlink_peer(net_host_t *h, net_peer_t *p);
/** Free a closing host once its handles are closed and its peers gone. */
void net__host_maybe_finish(net_host_t *h);
bool net__host_is_banned(net_host_t *h, const char *ip);
/** Add `score` to the address; true if that banned it. */
bool net__host_score(net_host_t *h, const char *ip, uint32_t score);
bool net__host_allowed(const net_host_t *h, const uint8_t id[NET_ID_LEN]);
/** True if `a` should survive over `b`, two connections to the same node id. */
bool net__host_preferred(const net_host_t *h, const net_peer_t *a, const net_peer_t *b);
/** A ready (or, with `any`, handshaking with a verified id) peer with this id, other than `not`. */
net_peer_t *net__host_find_id(net_host_t *h, const uint8_t id[NET_ID_LEN], const net_peer_t * not,
                              bool any);
void net__host_on_hello(net_host_t *h, net_peer_t *p); /* outbound: remember the node id */
void net__host_on_ready(net_host_t *h, net_peer_t *p); /* backoff reset, last_seen */
void net__host_on_self(net_host_t *h, net_peer_t *p);  /* forget the address */
void net__host_learn(net_host_t *h, net_peer_t *from, const net_msg *m);
int net__host_answer_getpeers(net_host_t *h, net_peer_t *to);
uint64_t net__host_rand(net_host_t *h);

#endif
