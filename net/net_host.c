/*
 * The overlay host: listener, dialer, address book with per-address backoff,
 * misbehaviour scores and bans per IP address, the periodic tick (handshake
 * and idle timeouts, pings, dialling) and the reaper that finishes closing
 * peers outside of their own callbacks.
 *
 * Policy decisions (documented in net_host.h as well):
 * - A wrong network id or protocol version is a configuration mismatch: the
 *   connection is closed with a BYE, without score or ban, and a bootstrap
 *   address keeps being retried with backoff.
 * - Handshake timeouts, allowlist refusals, self-connections and duplicates
 *   are closed without score. Malformed, oversize, unknown or out-of-order
 *   frames, a node id that is not SHA-256(SPKI), an unusable key and a bad
 *   AUTH signature score NET__SCORE_PROTO (50) against the IP address; the
 *   address is banned when its score reaches ban_threshold (two violations
 *   at the default 100). Scores lapse after ban_seconds without offence.
 * - Addresses learnt from PEERS are candidates only: IP literals only (a
 *   stranger never makes us resolve names), never our own node id, never a
 *   node id or address we already have, and dropped after
 *   NET__LEARNED_MAX_FAILS failures if they never completed a handshake.
 */
#include "net_host_internal.h"

#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "dm_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void net_host_opts_default(net_host_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_inbound = 32;
    o->max_outbound = 8;
    o->ban_seconds = 3600;
    o->ping_interval_ms = 15000;
    o->idle_timeout_ms = 60000;
    o->handshake_timeout_ms = 10000;
    o->send_queue_max = (size_t)64 * 1024 * 1024;
    o->reconnect_min_ms = 500;
    o->reconnect_max_ms = 60000;
    o->ban_threshold = 100;
    o->known_max = 1024;
}

uint64_t net__host_rand(net_host_t *h)
{
    /* xorshift64*: jitter and ping nonces only, nothing secret */
    uint64_t x = h->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    h->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t jitter(net_host_t *h, uint32_t ms)
{
    return (uint64_t)ms * (75 + net__host_rand(h) % 51) / 100; /* +-25% */
}

/* Parse an IP literal (IPv4 or IPv6) into a sockaddr. 0 or DM_EINVAL. */
static int parse_ip(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return DM_OK;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return DM_OK;
    return DM_EINVAL;
}

static bool printable_str(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

/* ---------------------------------------------------------- address book */

static long known_find_addr(const net_host_t *h, const char *host, uint16_t port)
{
    for (size_t i = 0; i < h->known_cap; i++)
        if (h->known[i].used && h->known[i].addr.port == port &&
            strcmp(h->known[i].addr.host, host) == 0)
            return (long)i;
    return -1;
}

static long known_find_id(const net_host_t *h, const uint8_t id[NET_ID_LEN])
{
    for (size_t i = 0; i < h->known_cap; i++)
        if (h->known[i].used && h->known[i].has_id &&
            memcmp(h->known[i].node_id, id, NET_ID_LEN) == 0)
            return (long)i;
    return -1;
}

/* A free slot, evicting the least useful learned entry if the table is full. */
static long known_slot(net_host_t *h)
{
    long best = -1;
    for (size_t i = 0; i < h->known_cap; i++) {
        net__known *e = &h->known[i];
        if (!e->used)
            return (long)i;
        if (e->bootstrap || e->peer)
            continue;
        if (best < 0) {
            best = (long)i;
            continue;
        }
        net__known *b = &h->known[best];
        /* never-connected before connected; then more failures; then older */
        if ((e->last_seen == 0) != (b->last_seen == 0)) {
            if (e->last_seen == 0)
                best = (long)i;
        } else if (e->fails != b->fails) {
            if (e->fails > b->fails)
                best = (long)i;
        } else if (e->last_seen < b->last_seen) {
            best = (long)i;
        }
    }
    if (best >= 0)
        memset(&h->known[best], 0, sizeof h->known[best]);
    return best;
}

static long known_add(net_host_t *h, const uint8_t *id, const char *host, uint16_t port,
                      bool bootstrap, uint64_t last_seen)
{
    long i = known_find_addr(h, host, port);
    if (i >= 0) {
        net__known *e = &h->known[i];
        e->bootstrap |= bootstrap;
        if (id && !e->has_id) {
            memcpy(e->node_id, id, NET_ID_LEN);
            e->has_id = true;
        }
        if (last_seen > e->last_seen)
            e->last_seen = last_seen;
        return i;
    }
    i = known_slot(h);
    if (i < 0)
        return -1;
    net__known *e = &h->known[i];
    memset(e, 0, sizeof *e);
    e->used = true;
    e->bootstrap = bootstrap;
    if (id) {
        memcpy(e->node_id, id, NET_ID_LEN);
        e->has_id = true;
    }
    snprintf(e->addr.host, sizeof e->addr.host, "%s", host);
    e->addr.port = port;
    e->last_seen = last_seen;
    e->backoff_ms = h->o.reconnect_min_ms;
    e->next_attempt = 0;
    return i;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

int net_host_add_known(net_host_t *h, const net_known_addr *a)
{
    if (!h || !a)
        return DM_EINVAL;
    size_t hl = strnlen(a->addr.host, sizeof a->addr.host);
    if (hl == 0 || hl == sizeof a->addr.host || a->addr.port == 0 ||
        !printable_str(a->addr.host, hl))
        return DM_EINVAL;
    const uint8_t *id = all_zero(a->node_id, NET_ID_LEN) ? NULL : a->node_id;
    if (id && memcmp(id, h->node_id, NET_ID_LEN) == 0)
        return DM_EINVAL;
    if (known_add(h, id, a->addr.host, a->addr.port, false, a->last_seen) < 0)
        return DM_ELIMIT;
    net__host_kick(h);
    return DM_OK;
}

size_t net_host_known(const net_host_t *h, net_known_addr *out, size_t max)
{
    size_t n = 0;
    if (!h || !out)
        return 0;
    for (size_t i = 0; i < h->known_cap && n < max; i++) {
        const net__known *e = &h->known[i];
        if (!e->used)
            continue;
        memset(&out[n], 0, sizeof out[n]);
        if (e->has_id)
            memcpy(out[n].node_id, e->node_id, NET_ID_LEN);
        out[n].addr = e->addr;
        out[n].last_seen = e->last_seen;
        n++;
    }
    return n;
}

void net__host_on_hello(net_host_t *h, net_peer_t *p)
{
    if (p->entry < 0)
        return;
    net__known *e = &h->known[p->entry];
    memcpy(e->node_id, p->node_id, NET_ID_LEN);
    e->has_id = true;
}

void net__host_on_ready(net_host_t *h, net_peer_t *p)
{
    if (p->entry < 0)
        return;
    net__known *e = &h->known[p->entry];
    e->backoff_ms = h->o.reconnect_min_ms;
    e->fails = 0;
    e->last_seen = (uint64_t)time(NULL);
}

void net__host_on_self(net_host_t *h, net_peer_t *p)
{
    if (p->entry < 0)
        return;
    memset(&h->known[p->entry], 0, sizeof h->known[p->entry]);
    p->entry = -1;
}

/* The dialled connection of an address book entry ended: schedule the next try. */
static void entry_closed(net_host_t *h, net_peer_t *p)
{
    if (p->entry < 0)
        return;
    net__known *e = &h->known[p->entry];
    p->entry = -1;
    if (!e->used || e->peer != p)
        return;
    e->peer = NULL;
    uint64_t now = uv_now(h->loop);
    e->next_attempt = now + jitter(h, e->backoff_ms);
    if (p->reason == NET__CL_DUPLICATE || p->reason == NET__CL_SHUTDOWN)
        return; /* no penalty */
    if (!p->ready)
        e->fails++;
    e->backoff_ms =
        e->backoff_ms > h->o.reconnect_max_ms / 2 ? h->o.reconnect_max_ms : e->backoff_ms * 2;
    if (!e->bootstrap && e->last_seen == 0 && e->fails >= NET__LEARNED_MAX_FAILS)
        memset(e, 0, sizeof *e);
}

void net__host_learn(net_host_t *h, net_peer_t *from, const net_msg *m)
{
    size_t added = 0;
    for (size_t i = 0; i < m->u.peers.count; i++) {
        const net_peer_addr *a = &m->u.peers.addr[i];
        char lit[NET__IP_LEN], ip[NET__IP_LEN];
        uint16_t port;
        struct sockaddr_storage ss;
        if (memcmp(a->node_id, h->node_id, NET_ID_LEN) == 0 || a->host.n >= sizeof lit)
            continue;
        memcpy(lit, a->host.p, a->host.n);
        lit[a->host.n] = '\0';
        if (parse_ip(lit, a->port, &ss))
            continue;                                               /* IP literals only */
        net__sockaddr_str((const struct sockaddr *)&ss, ip, &port); /* canonical text */
        if (strcmp(ip, "0.0.0.0") == 0 || strcmp(ip, "::") == 0 || port == 0)
            continue;
        bool has_id = !all_zero(a->node_id, NET_ID_LEN);
        if (has_id && known_find_id(h, a->node_id) >= 0)
            continue;
        if (known_find_addr(h, ip, port) >= 0 || net__host_is_banned(h, ip))
            continue;
        if (known_add(h, has_id ? a->node_id : NULL, ip, port, false, 0) >= 0)
            added++;
    }
    if (added) {
        dm_log(DM_LOG_DEBUG, "p2p", "learned %zu address(es) from %s", added, from->remote);
        net__host_kick(h);
    }
}

int net__host_answer_getpeers(net_host_t *h, net_peer_t *to)
{
    net_peer_addr a[NET_MAX_PEERS_MSG];
    size_t n = 0;
    for (net_peer_t *q = h->peers; q && n < NET_MAX_PEERS_MSG; q = q->next) {
        if (q == to || !q->ready || q->closing || q->listen_port == 0 || q->ip[0] == '?' ||
            memcmp(q->node_id, to->node_id, NET_ID_LEN) == 0)
            continue;
        memcpy(a[n].node_id, q->node_id, NET_ID_LEN);
        a[n].host.p = (const uint8_t *)q->ip;
        a[n].host.n = strlen(q->ip);
        a[n].port = q->listen_port;
        n++;
    }
    dm_buf b = DM_BUF_INIT;
    int rc = net_msg_encode_peers(&b, a, n);
    if (rc == DM_OK)
        rc = net__peer_send_buf(to, &b);
    dm_buf_free(&b);
    return rc;
}

/* ------------------------------------------------------ scores and bans */

static net__addr_rec *addr_find(net_host_t *h, const char *ip, bool create)
{
    net__addr_rec *freer = NULL, *victim = NULL;
    uint64_t now = uv_now(h->loop);
    for (size_t i = 0; i < NET__ADDR_MAX; i++) {
        net__addr_rec *r = &h->addrs[i];
        if (!r->used) {
            if (!freer)
                freer = r;
            continue;
        }
        if (strcmp(r->ip, ip) == 0)
            return r;
        if (!create)
            continue;
        /* eviction order: unbanned oldest offence first, then the earliest-expiring ban */
        bool rb = r->banned_until > now;
        if (!victim) {
            victim = r;
        } else {
            bool vb = victim->banned_until > now;
            if (rb != vb
                    ? !rb
                    : (rb ? r->banned_until < victim->banned_until : r->last_ms < victim->last_ms))
                victim = r;
        }
    }
    if (!create)
        return NULL;
    net__addr_rec *r = freer ? freer : victim;
    if (!r)
        return NULL;
    memset(r, 0, sizeof *r);
    r->used = true;
    snprintf(r->ip, sizeof r->ip, "%s", ip);
    return r;
}

bool net__host_is_banned(net_host_t *h, const char *ip)
{
    net__addr_rec *r = addr_find(h, ip, false);
    return r && r->banned_until > uv_now(h->loop);
}

bool net__host_score(net_host_t *h, const char *ip, uint32_t score)
{
    if (!ip[0] || ip[0] == '?')
        return false;
    net__addr_rec *r = addr_find(h, ip, true);
    if (!r)
        return false;
    uint64_t now = uv_now(h->loop);
    uint64_t window = (uint64_t)h->o.ban_seconds * 1000;
    if (r->banned_until > now)
        return true;
    if (r->last_ms && now - r->last_ms > window)
        r->score = 0;
    r->score = score > UINT32_MAX - r->score ? UINT32_MAX : r->score + score;
    r->last_ms = now;
    if (r->score < h->o.ban_threshold)
        return false;
    r->banned_until = now + window;
    r->score = 0;
    h->stats.bans++;
    if (h->cbs.on_banned)
        h->cbs.on_banned(ip, h->o.ban_seconds, h->arg);
    else
        dm_log(DM_LOG_WARNING, "security", "Banned address %s for %u s after repeated misbehaviour",
               ip, h->o.ban_seconds);
    return true;
}

bool net__host_allowed(const net_host_t *h, const uint8_t id[NET_ID_LEN])
{
    if (!h->allow_len)
        return true;
    for (size_t i = 0; i < h->allow_len; i++)
        if (memcmp(h->allow[i], id, NET_ID_LEN) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------ peers */

bool net__host_preferred(const net_host_t *h, const net_peer_t *a, const net_peer_t *b)
{
    /* both ends compute the same answer: the connection dialled by the lower node id
     * survives; two dialled by the same node are ordered by the dialler's nonce */
    const uint8_t *da = a->outbound ? h->node_id : a->node_id;
    const uint8_t *db = b->outbound ? h->node_id : b->node_id;
    int c = memcmp(da, db, NET_ID_LEN);
    if (c)
        return c < 0;
    const uint8_t *na = a->outbound ? a->my_nonce : a->their_nonce;
    const uint8_t *nb = b->outbound ? b->my_nonce : b->their_nonce;
    return memcmp(na, nb, NET_NONCE_LEN) < 0;
}

net_peer_t *net__host_find_id(net_host_t *h, const uint8_t id[NET_ID_LEN], const net_peer_t * not,
                              bool any)
{
    for (net_peer_t *q = h->peers; q; q = q->next)
        if (q != not &&!q->closing && q->has_id && (any || q->ready) &&
            memcmp(q->node_id, id, NET_ID_LEN) == 0)
            return q;
    return NULL;
}

void net__host_unlink_peer(net_host_t *h, net_peer_t *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        h->peers = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

/* ----------------------------------------------------------------- dialer */

static void on_connected(uv_connect_t *req, int status)
{
    net_peer_t *p = DM_CONTAINER_OF(req, net_peer_t, conn_req);
    if (status == UV_ECANCELED || p->closing)
        return;
    if (status < 0) {
        dm_log(DM_LOG_DEBUG, "p2p", "dial %s failed: %s", p->remote, uv_strerror(status));
        net__peer_disconnect(p, NET__CL_REMOTE, false, uv_strerror(status));
        return;
    }
    p->connected = true;
    net__peer_fill_remote(p);
    net__peer_begin(p);
}

static void start_connect(net_peer_t *p, const struct sockaddr *sa)
{
    int rc = uv_tcp_connect(&p->conn_req, &p->tcp, sa, on_connected);
    if (rc) {
        dm_log(DM_LOG_DEBUG, "p2p", "dial %s failed: %s", p->remote, uv_strerror(rc));
        net__peer_disconnect(p, NET__CL_REMOTE, false, uv_strerror(rc));
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    net_peer_t *p = DM_CONTAINER_OF(req, net_peer_t, gai);
    net_host_t *h = p->h;
    p->pending--;
    p->gai_pending = false;
    if (p->closing) {
        uv_freeaddrinfo(res);
        net__peer_maybe_free(p);
        return;
    }
    if (status < 0 || !res || res->ai_addrlen > sizeof(struct sockaddr_storage)) {
        dm_log(DM_LOG_DEBUG, "p2p", "cannot resolve %s: %s", p->remote,
               status < 0 ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        net__peer_disconnect(p, NET__CL_REMOTE, false, "name resolution failed");
        return;
    }
    struct sockaddr_storage ss;
    char ip[NET__IP_LEN];
    uint16_t port;
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    net__sockaddr_str((const struct sockaddr *)&ss, ip, &port);
    if (net__host_is_banned(h, ip)) {
        net__peer_disconnect(p, NET__CL_BANNED, false, "address banned");
        return;
    }
    start_connect(p, (const struct sockaddr *)&ss);
}

static void dial(net_host_t *h, size_t idx)
{
    net__known *e = &h->known[idx];
    net_peer_t *p = net__peer_new(h, true);
    if (!p) {
        e->next_attempt = uv_now(h->loop) + jitter(h, e->backoff_ms);
        return;
    }
    p->entry = (long)idx;
    e->peer = p;
    p->counted = true;
    h->n_out++;
    h->stats.dialed++;
    if (strchr(e->addr.host, ':'))
        snprintf(p->remote, sizeof p->remote, "[%.40s]:%u", e->addr.host, e->addr.port);
    else
        snprintf(p->remote, sizeof p->remote, "%.50s:%u", e->addr.host, e->addr.port);
    dm_log(DM_LOG_DEBUG, "p2p", "dialling %s", p->remote);
    struct sockaddr_storage ss;
    if (parse_ip(e->addr.host, e->addr.port, &ss) == DM_OK) {
        start_connect(p, (const struct sockaddr *)&ss);
        return;
    }
    /* a host name (bootstrap or operator-supplied): resolve on the thread pool */
    char port[8];
    snprintf(port, sizeof port, "%u", e->addr.port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(h->loop, &p->gai, on_resolved, e->addr.host, port, &hints);
    if (rc) {
        net__peer_disconnect(p, NET__CL_REMOTE, false, uv_strerror(rc));
        return;
    }
    p->pending++;
    p->gai_pending = true;
}

static void maintain(net_host_t *h)
{
    if (h->closing || !h->started)
        return;
    uint64_t now = uv_now(h->loop);
    for (size_t i = 0; i < h->known_cap && h->n_out < h->o.max_outbound; i++) {
        net__known *e = &h->known[i];
        if (!e->used || e->peer || e->next_attempt > now)
            continue;
        if (e->has_id && net__host_find_id(h, e->node_id, NULL, true))
            continue; /* already connected (either direction) */
        if (net__host_is_banned(h, e->addr.host))
            continue;
        dial(h, i);
    }
}

static void kick_cb(uv_timer_t *t)
{
    maintain(DM_CONTAINER_OF(t, net_host_t, kick));
}

void net__host_kick(net_host_t *h)
{
    if (!h->closing && h->started)
        uv_timer_start(&h->kick, kick_cb, 0, 0);
}

/* Write what the peers gathered in this iteration (net__peer_flush). The check handle
 * runs right after the I/O callbacks (reads, thread-pool completions) that queue most
 * frames; the prepare handle catches frames queued by timers and other callbacks
 * before the loop blocks. Both stop once nothing is left. */
static void flush_all(net_host_t *h)
{
    h->flush_armed = false;
    uv_prepare_stop(&h->flush_prep);
    uv_check_stop(&h->flush_check);
    for (net_peer_t *p = h->peers; p; p = p->next)
        net__peer_flush(p);
}

static void flush_prep_cb(uv_prepare_t *hd)
{
    flush_all(hd->data);
}

static void flush_check_cb(uv_check_t *hd)
{
    flush_all(hd->data);
}

void net__host_want_flush(net_host_t *h)
{
    if (h->flush_armed || h->closing)
        return;
    h->flush_armed = true;
    uv_prepare_start(&h->flush_prep, flush_prep_cb);
    uv_check_start(&h->flush_check, flush_check_cb);
}

/* --------------------------------------------------------- timers, reaper */

static void tick_cb(uv_timer_t *t)
{
    net_host_t *h = DM_CONTAINER_OF(t, net_host_t, tick);
    uint64_t now = uv_now(h->loop);
    for (net_peer_t *p = h->peers; p; p = p->next) {
        if (p->closing)
            continue;
        if (!p->ready) {
            if (now >= p->hs_deadline)
                net__peer_disconnect(p, NET__CL_TIMEOUT, true, "handshake timeout");
            continue;
        }
        if (now - p->last_rx >= h->o.idle_timeout_ms) {
            dm_log(DM_LOG_INFO, "p2p", "node %s at %s idle for %llu ms", p->node_id_hex, p->remote,
                   (unsigned long long)(now - p->last_rx));
            net__peer_disconnect(p, NET__CL_TIMEOUT, true, "idle timeout");
            continue;
        }
        if (now - p->ping_sent >= h->o.ping_interval_ms)
            net__peer_ping(p);
        /* looking for more peers: ask again now and then */
        if (!p->closing && h->n_out < h->o.max_outbound &&
            now - p->last_getpeers >= 4 * (uint64_t)h->o.ping_interval_ms)
            net__peer_getpeers(p);
    }
    maintain(h);
}

static const char *reason_name(net__close_reason r)
{
    switch (r) {
    case NET__CL_NONE:
        return "closed";
    case NET__CL_SHUTDOWN:
        return "shutdown";
    case NET__CL_DUPLICATE:
        return "duplicate";
    case NET__CL_CONFIG:
        return "configuration mismatch";
    case NET__CL_NOTALLOWED:
        return "not allowed";
    case NET__CL_SELF:
        return "self";
    case NET__CL_PROTOCOL:
        return "misbehaviour";
    case NET__CL_TIMEOUT:
        return "timeout";
    case NET__CL_SLOW:
        return "send queue full";
    case NET__CL_FULL:
        return "too many peers";
    case NET__CL_BANNED:
        return "banned";
    case NET__CL_REMOTE:
        return "connection lost";
    case NET__CL_INTERNAL:
        return "internal error";
    }
    return "closed";
}

static void on_host_handle_close(uv_handle_t *hd)
{
    net_host_t *h = hd->data;
    h->handles_open--;
    net__host_maybe_finish(h);
}

static void reap_cb(uv_timer_t *t)
{
    net_host_t *h = DM_CONTAINER_OF(t, net_host_t, reap);
    bool again;
    do {
        /* callbacks may mark more peers (or close the host): loop until none is left.
         * Nothing is unlinked synchronously here, so walking the list stays safe. */
        again = false;
        for (net_peer_t *p = h->peers; p; p = p->next) {
            if (!p->closing || p->close_started)
                continue;
            again = true;
            entry_closed(h, p);
            net__peer_close_handle(p);
            if (p->ready) {
                dm_log(DM_LOG_INFO, "p2p", "Disconnected from node %s at %s: %s (%s)",
                       p->node_id_hex, p->remote, reason_name(p->reason), p->why);
                if (h->cbs.on_peer_closed)
                    h->cbs.on_peer_closed(p, h->arg);
            }
        }
    } while (again);
    if (h->closing) {
        if (!h->reap_closed) {
            h->reap_closed = true;
            uv_close((uv_handle_t *)&h->reap, on_host_handle_close);
        }
    } else {
        net__host_kick(h);
    }
}

void net__host_schedule_reap(net_host_t *h)
{
    if (!h->reap_closed)
        uv_timer_start(&h->reap, reap_cb, 0, 0);
}

/* ------------------------------------------------------------- listener */

static void on_connection(uv_stream_t *srv, int status)
{
    net_host_t *h = DM_CONTAINER_OF((uv_tcp_t *)srv, net_host_t, listener);
    if (status < 0) {
        dm_log(DM_LOG_WARNING, "p2p", "accept failed: %s", uv_strerror(status));
        return;
    }
    if (h->closing)
        return;
    net_peer_t *p = net__peer_new(h, false);
    if (!p) {
        dm_log(DM_LOG_ERROR, "p2p", "out of memory accepting a connection");
        return;
    }
    if (uv_accept(srv, (uv_stream_t *)&p->tcp)) {
        net__peer_disconnect(p, NET__CL_INTERNAL, false, "accept failed");
        return;
    }
    h->stats.accepted++;
    p->connected = true;
    net__peer_fill_remote(p);
    if (net__host_is_banned(h, p->ip)) {
        h->stats.rejected_banned++;
        dm_log(DM_LOG_DEBUG, "security", "rejected connection from banned address %s", p->ip);
        net__peer_disconnect(p, NET__CL_BANNED, false, "address banned");
        return;
    }
    if (h->n_in >= h->o.max_inbound) {
        dm_log(DM_LOG_INFO, "p2p", "refused %s: %u inbound connections already", p->remote,
               h->n_in);
        net__peer_disconnect(p, NET__CL_FULL, true, "too many connections");
        return;
    }
    p->counted = true;
    h->n_in++;
    dm_log(DM_LOG_DEBUG, "p2p", "accepted connection from %s", p->remote);
    net__peer_begin(p);
}

/* ------------------------------------------------------------ lifecycle */

static void host_free(net_host_t *h)
{
    free(h->spki);
    free(h->allow);
    free(h->known);
    free(h->addrs);
    free(h);
}

int net_host_create(net_host_t **out, uv_loop_t *loop, const net_host_opts *o,
                    const net_host_cbs *cbs, void *arg)
{
    if (!out)
        return DM_EINVAL;
    *out = NULL;
    if (!loop || !o || !o->network_id || !o->key || !crypto_rsa_is_private(o->key) ||
        (o->bootstrap_len && !o->bootstrap) || (o->allowlist_len && !o->allowlist))
        return DM_EINVAL;
    size_t nid_len = strlen(o->network_id);
    if (nid_len == 0 || nid_len > NET_MAX_STR || !printable_str(o->network_id, nid_len))
        return DM_EINVAL;
    if (!o->ping_interval_ms || !o->idle_timeout_ms || !o->handshake_timeout_ms ||
        !o->send_queue_max || !o->reconnect_min_ms || o->reconnect_max_ms < o->reconnect_min_ms ||
        !o->ban_threshold || !o->known_max)
        return DM_EINVAL;
    for (size_t i = 0; i < o->bootstrap_len; i++) {
        size_t hl = strnlen(o->bootstrap[i].host, sizeof o->bootstrap[i].host);
        if (hl == 0 || hl == sizeof o->bootstrap[i].host || o->bootstrap[i].port == 0 ||
            !printable_str(o->bootstrap[i].host, hl))
            return DM_EINVAL;
    }

    int rc = DM_ENOMEM;
    dm_buf spki = DM_BUF_INIT;
    net_host_t *h = calloc(1, sizeof *h);
    if (!h)
        goto out;
    h->loop = loop;
    h->o = *o;
    h->o.bootstrap = NULL;
    h->o.bootstrap_len = 0;
    h->o.allowlist = NULL;
    memcpy(h->network_id, o->network_id, nid_len + 1);
    h->network_id_len = nid_len;
    h->o.network_id = h->network_id;
    h->key = o->key;
    if (cbs)
        h->cbs = *cbs;
    h->arg = arg;
    if ((rc = crypto_rsa_spki(o->key, &spki)))
        goto out;
    if ((rc = crypto_sha256(h->node_id, spki.data, spki.len)))
        goto out;
    dm_hex_encode(h->node_id_hex, h->node_id, NET_ID_LEN);
    h->spki_len = spki.len;
    h->spki = dm_buf_steal(&spki, &h->spki_len);
    rc = DM_ENOMEM;
    if (o->allowlist_len) {
        h->allow = malloc(o->allowlist_len * sizeof *h->allow);
        if (!h->allow)
            goto out;
        memcpy(h->allow, o->allowlist, o->allowlist_len * sizeof *h->allow);
        h->allow_len = o->allowlist_len;
    }
    if (o->known_max > SIZE_MAX / sizeof(net__known) - o->bootstrap_len)
        goto out;
    h->known_cap = o->known_max + o->bootstrap_len; /* bootstrap entries always fit */
    h->known = calloc(h->known_cap, sizeof *h->known);
    h->addrs = calloc(NET__ADDR_MAX, sizeof *h->addrs);
    if (!h->known || !h->addrs)
        goto out;
    for (size_t i = 0; i < o->bootstrap_len; i++)
        known_add(h, NULL, o->bootstrap[i].host, o->bootstrap[i].port, true, 0);
    if ((rc = crypto_random((uint8_t *)&h->rng, sizeof h->rng)))
        goto out;
    h->rng |= 1;
    if (uv_tcp_init(loop, &h->listener)) {
        rc = DM_EIO;
        goto out;
    }
    uv_timer_init(loop, &h->tick);
    uv_timer_init(loop, &h->kick);
    uv_timer_init(loop, &h->reap);
    uv_prepare_init(loop, &h->flush_prep);
    uv_check_init(loop, &h->flush_check);
    h->listener.data = h->tick.data = h->kick.data = h->reap.data = h;
    h->flush_prep.data = h->flush_check.data = h;
    h->handles_open = 6;
    *out = h;
    h = NULL;
    rc = DM_OK;
out:
    dm_buf_free(&spki);
    if (h)
        host_free(h);
    return rc;
}

int net_host_start(net_host_t *h)
{
    if (!h || h->closing || h->started)
        return DM_EINVAL;
    const char *host = h->o.listen.host[0] ? h->o.listen.host : "0.0.0.0";
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_storage ss;
    if (parse_ip(host, h->o.listen.port, &ss)) {
        dm_log(DM_LOG_ERROR, "p2p", "cannot listen on %.64s: not an IP address", host);
        return DM_ECONN;
    }
    int rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 128, on_connection);
    if (rc) {
        dm_log(DM_LOG_ERROR, "p2p", "cannot listen on %.64s:%u: %s", host, h->o.listen.port,
               uv_strerror(rc));
        return DM_ECONN;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    char ip[NET__IP_LEN];
    if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &len) == 0)
        net__sockaddr_str((const struct sockaddr *)&bound, ip, &h->port);
    h->listening = true;
    h->started = true;
    dm_log(DM_LOG_INFO, "p2p", "Listening on %.64s:%u as node %s (network %s)", host, h->port,
           h->node_id_hex, h->network_id);
    /* one tick serves every peer: a quarter of the shortest period, within [5 ms, 1 s] */
    uint64_t period = h->o.ping_interval_ms;
    if (h->o.idle_timeout_ms < period)
        period = h->o.idle_timeout_ms;
    if (h->o.handshake_timeout_ms < period)
        period = h->o.handshake_timeout_ms;
    if (h->o.reconnect_min_ms < period)
        period = h->o.reconnect_min_ms;
    period /= 4;
    period = period < 5 ? 5 : period > 1000 ? 1000 : period;
    uv_timer_start(&h->tick, tick_cb, period, period);
    net__host_kick(h);
    return DM_OK;
}

uint16_t net_host_listen_port(const net_host_t *h)
{
    return h ? h->port : 0;
}

void net__host_maybe_finish(net_host_t *h)
{
    if (!h->closing || h->handles_open || h->peers)
        return;
    void (*cb)(void *) = h->close_cb;
    void *arg = h->close_arg;
    host_free(h);
    if (cb)
        cb(arg);
}

void net_host_close(net_host_t *h, void (*cb)(void *arg), void *arg)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    h->close_cb = cb;
    h->close_arg = arg;
    dm_log(DM_LOG_INFO, "p2p", "Closing the P2P host (node %s)", h->node_id_hex);
    for (net_peer_t *p = h->peers; p; p = p->next)
        net__peer_disconnect(p, NET__CL_SHUTDOWN, true, "shutdown");
    uv_close((uv_handle_t *)&h->listener, on_host_handle_close);
    uv_close((uv_handle_t *)&h->tick, on_host_handle_close);
    uv_close((uv_handle_t *)&h->kick, on_host_handle_close);
    uv_close((uv_handle_t *)&h->flush_prep, on_host_handle_close);
    uv_close((uv_handle_t *)&h->flush_check, on_host_handle_close);
    net__host_schedule_reap(h); /* the reaper closes the peers, then itself */
}

/* ------------------------------------------------------- sending, queries */

size_t net_host_broadcast(net_host_t *h, net_frame_t *f, const net_peer_t *except)
{
    size_t n = 0;
    if (!h || !f)
        return 0;
    for (net_peer_t *p = h->peers; p; p = p->next)
        if (p != except && p->ready && !p->closing && net_peer_send(p, f) == DM_OK)
            n++;
    return n;
}

size_t net_host_peers(const net_host_t *h, net_peer_info *out, size_t max)
{
    size_t n = 0;
    if (!h || !out)
        return 0;
    for (const net_peer_t *p = h->peers; p && n < max; p = p->next) {
        if (!p->ready || p->closing)
            continue;
        net_peer_info *i = &out[n++];
        memset(i, 0, sizeof *i);
        memcpy(i->node_id, p->node_id_hex, sizeof i->node_id);
        snprintf(i->remote, sizeof i->remote, "%s", p->remote);
        i->listen_port = p->listen_port;
        i->outbound = p->outbound;
        i->connected_ms = p->connected_ms;
        i->bytes_in = p->bytes_in;
        i->bytes_out = p->bytes_out;
        i->frames_in = p->frames_in;
        i->frames_out = p->frames_out;
        i->send_queue = p->sendq;
        i->score = p->score;
        i->rtt_ms = p->rtt_ms;
    }
    return n;
}

size_t net_host_peer_count(const net_host_t *h)
{
    size_t n = 0;
    if (!h)
        return 0;
    for (const net_peer_t *p = h->peers; p; p = p->next)
        if (p->ready && !p->closing)
            n++;
    return n;
}

void net_host_get_stats(const net_host_t *h, net_host_stats *out)
{
    if (!h || !out)
        return;
    *out = h->stats;
    out->banned_now = 0;
    uint64_t now = uv_now(h->loop);
    for (size_t i = 0; i < NET__ADDR_MAX; i++)
        if (h->addrs[i].used && h->addrs[i].banned_until > now)
            out->banned_now++;
}
