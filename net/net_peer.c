/*
 * One overlay connection: the read buffer and frame parser, the handshake
 * state machine (RSA on the thread pool), keepalive replies, the bounded send
 * queue, and the shared reference-counted frames it writes.
 *
 * Memory rules: a peer owns its read buffer and the decoder borrows slices of
 * it for one dispatch; every uv_write request owns one frame reference until
 * its callback. A peer is only marked closing here; the host's reaper closes
 * the handle and the memory goes once the handle is closed and no thread-pool
 * job or getaddrinfo request refers to it (net__peer_maybe_free).
 */
#include "net_host_internal.h"

#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "dm_util.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ frames */

net_frame_t *net_frame_new(const uint8_t *frame, size_t n)
{
    if ((n && !frame) || n > SIZE_MAX - sizeof(net_frame_t))
        return NULL;
    net_frame_t *f = malloc(sizeof *f + n);
    if (!f)
        return NULL;
    f->refs = 1;
    f->len = n;
    if (n)
        memcpy(f->data, frame, n);
    return f;
}

net_frame_t *net_frame_retain(net_frame_t *f)
{
    if (f)
        f->refs++;
    return f;
}

void net_frame_release(net_frame_t *f)
{
    if (f && --f->refs == 0)
        free(f);
}

const uint8_t *net_frame_data(const net_frame_t *f, size_t *n)
{
    if (n)
        *n = f ? f->len : 0;
    return f ? f->data : NULL;
}

/* ------------------------------------------------------------- lifecycle */

static void outq_drop(net_peer_t *p);

net_peer_t *net__peer_new(net_host_t *h, bool outbound)
{
    net_peer_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->rbuf = malloc(NET__RBUF_MIN);
    if (!p->rbuf || crypto_random(p->my_nonce, sizeof p->my_nonce) ||
        uv_tcp_init(h->loop, &p->tcp)) {
        free(p->rbuf);
        free(p);
        return NULL;
    }
    p->rcap = NET__RBUF_MIN;
    p->h = h;
    p->outbound = outbound;
    p->entry = -1;
    p->state = outbound ? NET__ST_CONNECTING : NET__ST_HELLO;
    p->hs_deadline = uv_now(h->loop) + h->o.handshake_timeout_ms;
    snprintf(p->remote, sizeof p->remote, "?");
    p->next = h->peers;
    if (h->peers)
        h->peers->prev = p;
    h->peers = p;
    return p;
}

static void on_tcp_close(uv_handle_t *hd)
{
    net_peer_t *p = DM_CONTAINER_OF(hd, net_peer_t, tcp);
    p->tcp_closed = true;
    net__peer_maybe_free(p);
}

void net__peer_close_handle(net_peer_t *p)
{
    if (p->close_started)
        return;
    p->close_started = true;
    if (p->gai_pending)
        uv_cancel((uv_req_t *)&p->gai); /* fails harmlessly if already resolving */
    uv_close((uv_handle_t *)&p->tcp, on_tcp_close);
}

void net__peer_maybe_free(net_peer_t *p)
{
    if (!p->tcp_closed || p->pending)
        return;
    net_host_t *h = p->h;
    net__host_unlink_peer(h, p);
    outq_drop(p);
    crypto_rsa_destroy(p->pub);
    free(p->spki);
    free(p->rbuf);
    free(p);
    net__host_maybe_finish(h);
}

void net__sockaddr_str(const struct sockaddr *sa, char ip[NET__IP_LEN], uint16_t *port)
{
    snprintf(ip, NET__IP_LEN, "?");
    *port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        uv_ip4_name(s4, ip, NET__IP_LEN);
        *port = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        /* a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: one address, one ban */
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, NET__IP_LEN);
        else
            uv_ip6_name(s6, ip, NET__IP_LEN);
        *port = ntohs(s6->sin6_port);
    }
}

void net__peer_fill_remote(net_peer_t *p)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&p->tcp, (struct sockaddr *)&ss, &len) == 0)
        net__sockaddr_str((const struct sockaddr *)&ss, p->ip, &p->port);
    else
        snprintf(p->ip, sizeof p->ip, "?");
    if (strchr(p->ip, ':'))
        snprintf(p->remote, sizeof p->remote, "[%s]:%u", p->ip, p->port);
    else
        snprintf(p->remote, sizeof p->remote, "%s:%u", p->ip, p->port);
}

/* For logs: a node id is only a claim until the AUTH signature has verified. */
static const char *who(const net_peer_t *p, char buf[80])
{
    if (!p->has_id)
        return "unauthenticated";
    if (p->ready)
        return p->node_id_hex;
    snprintf(buf, 80, "claimed %s", p->node_id_hex);
    return buf;
}

void net__peer_disconnect(net_peer_t *p, net__close_reason why, bool bye, const char *detail)
{
    if (p->closing)
        return;
    net_host_t *h = p->h;
    net__peer_flush(p); /* what was queued before the close goes out as it did unbatched */
    if (p->closing)
        return; /* the flush failed and closed it */
    p->closing = true;
    p->reason = why;
    snprintf(p->why, sizeof p->why, "%s", detail ? detail : "");
    if (bye && p->connected && p->sendq == 0) {
        /* best effort and never queued: only if the socket takes it right now */
        dm_buf b = DM_BUF_INIT;
        if (net_msg_encode_bye(&b, (uint32_t)why, p->why) == DM_OK) {
            uv_buf_t ub = uv_buf_init((char *)b.data, (unsigned)b.len);
            (void)uv_try_write((uv_stream_t *)&p->tcp, &ub, 1);
        }
        dm_buf_free(&b);
    }
    if (p->connected)
        uv_read_stop((uv_stream_t *)&p->tcp);
    if (p->counted) {
        if (p->outbound)
            h->n_out--;
        else
            h->n_in--;
        p->counted = false;
    }
    if (p->begun && !p->ready && why != NET__CL_SHUTDOWN && why != NET__CL_DUPLICATE)
        h->stats.handshakes_failed++;
    char wb[80];
    dm_log(DM_LOG_DEBUG, "p2p", "closing connection %s (%s, %s): %s", p->remote,
           p->outbound ? "outbound" : "inbound", who(p, wb), p->why);
    net__host_schedule_reap(h);
}

static void misbehave(net_peer_t *p, uint32_t score, bool disconnect, const char *reason)
{
    net_host_t *h = p->h;
    char wb[80];
    p->score = score > UINT32_MAX - p->score ? UINT32_MAX : p->score + score;
    dm_log(DM_LOG_WARNING, "security", "Misbehaviour by peer %s (node %s): %s (score +%u)",
           p->remote, who(p, wb), reason, score);
    bool banned = net__host_score(h, p->ip, score);
    if (banned || disconnect) {
        if (!p->closing)
            h->stats.disconnects_misbehaviour++;
        net__peer_disconnect(p, NET__CL_PROTOCOL, true, banned ? "banned" : "protocol violation");
    }
}

void net__peer_violation(net_peer_t *p, uint32_t score, const char *what)
{
    misbehave(p, score, true, what);
}

void net_peer_misbehave(net_peer_t *p, uint32_t score, bool disconnect, const char *reason)
{
    if (!p)
        return;
    misbehave(p, score, disconnect, reason ? reason : "unspecified");
}

/* ------------------------------------------------------------------ writes */

/* One uv_write of the frames a peer gathered in a loop iteration: it owns one
 * reference to each until its callback. */
typedef struct {
    uv_write_t req;
    size_t n, bytes;
    net_frame_t *f[];
} write_req;

static void on_write(uv_write_t *req, int status)
{
    write_req *w = DM_CONTAINER_OF(req, write_req, req);
    net_peer_t *p = DM_CONTAINER_OF((uv_tcp_t *)req->handle, net_peer_t, tcp);
    p->sendq -= w->bytes;
    for (size_t i = 0; i < w->n; i++)
        net_frame_release(w->f[i]);
    free(w);
    if (status < 0 && status != UV_ECANCELED && !p->closing)
        net__peer_disconnect(p, NET__CL_REMOTE, false, uv_strerror(status));
}

static void outq_drop(net_peer_t *p)
{
    for (size_t i = 0; i < p->nout; i++)
        net_frame_release(p->outq[i]);
    p->sendq -= p->outbytes;
    p->nout = 0;
    p->outbytes = 0;
}

/*
 * Frames are gathered per peer and written together: every frame relayed to a
 * peer within one loop iteration (a commit of hundreds of shares relays them
 * all) goes out in one writev instead of one system call each, and the
 * receiver reads them with fewer reads too. Flushed before the loop next waits
 * (net_host.c's prepare and check handles), when the queue is full, and before
 * a disconnect, so nothing waits longer than the iteration that queued it.
 */
void net__peer_flush(net_peer_t *p)
{
    if (!p->nout)
        return;
    if (p->closing || !p->connected) {
        outq_drop(p);
        return;
    }
    size_t n = p->nout;
    write_req *w = malloc(sizeof *w + n * sizeof(net_frame_t *));
    if (!w) {
        outq_drop(p);
        net__peer_disconnect(p, NET__CL_INTERNAL, false, "out of memory");
        return;
    }
    uv_buf_t b[NET__OUTQ_MAX];
    for (size_t i = 0; i < n; i++) {
        w->f[i] = p->outq[i];
        b[i] = uv_buf_init((char *)p->outq[i]->data, (unsigned)p->outq[i]->len);
    }
    w->n = n;
    w->bytes = p->outbytes;
    p->nout = 0;
    p->outbytes = 0;
    int rc = uv_write(&w->req, (uv_stream_t *)&p->tcp, b, (unsigned)n, on_write);
    if (rc) {
        p->sendq -= w->bytes;
        for (size_t i = 0; i < n; i++)
            net_frame_release(w->f[i]);
        free(w);
        net__peer_disconnect(p, NET__CL_REMOTE, false, uv_strerror(rc));
    }
}

int net__peer_write(net_peer_t *p, net_frame_t *f)
{
    if (p->closing || !p->connected)
        return DM_ECLOSED;
    net_host_t *h = p->h;
    if (f->len > h->o.send_queue_max || p->sendq > h->o.send_queue_max - f->len) {
        h->stats.dropped_slow++;
        char wb[80];
        dm_log(DM_LOG_WARNING, "p2p",
               "Dropping peer %s (node %s): %zu bytes queued, limit %zu (not reading)", p->remote,
               who(p, wb), p->sendq + f->len, h->o.send_queue_max);
        net__peer_disconnect(p, NET__CL_SLOW, false, "send queue over its limit");
        return DM_ELIMIT;
    }
    p->outq[p->nout++] = net_frame_retain(f);
    p->outbytes += f->len;
    p->sendq += f->len;
    p->frames_out++;
    p->bytes_out += f->len;
    if (p->nout == NET__OUTQ_MAX || p->outbytes >= NET__OUTQ_BYTES)
        net__peer_flush(p);
    else if (p->nout == 1)
        net__host_want_flush(h);
    return p->closing ? DM_ECLOSED : DM_OK;
}

int net__peer_send_buf(net_peer_t *p, const dm_buf *b)
{
    net_frame_t *f = net_frame_new(b->data, b->len);
    if (!f)
        return DM_ENOMEM;
    int rc = net__peer_write(p, f);
    net_frame_release(f);
    return rc;
}

static int check_frame(const net_frame_t *f)
{
    if (f->len < 5)
        return DM_EINVAL;
    if (f->len > NET_FRAME_MAX + 4)
        return DM_ETOOBIG;
    return DM_OK;
}

int net_peer_send(net_peer_t *p, net_frame_t *f)
{
    if (!p || !f)
        return DM_EINVAL;
    if (p->closing || !p->ready)
        return DM_ECLOSED;
    int rc = check_frame(f);
    return rc ? rc : net__peer_write(p, f);
}

int net_peer_send_bytes(net_peer_t *p, const uint8_t *frame, size_t n)
{
    if (!p || !frame)
        return DM_EINVAL;
    if (p->closing || !p->ready)
        return DM_ECLOSED;
    net_frame_t *f = net_frame_new(frame, n);
    if (!f)
        return DM_ENOMEM;
    int rc = net_peer_send(p, f);
    net_frame_release(f);
    return rc;
}

void net__peer_ping(net_peer_t *p)
{
    net_host_t *h = p->h;
    p->ping_nonce = net__host_rand(h);
    p->ping_sent = uv_now(h->loop);
    p->ping_outstanding = true;
    dm_buf b = DM_BUF_INIT;
    if (net_msg_encode_ping(&b, NET_MSG_PING, p->ping_nonce) == DM_OK)
        (void)net__peer_send_buf(p, &b);
    dm_buf_free(&b);
}

void net__peer_getpeers(net_peer_t *p)
{
    p->getpeers_pending = true;
    p->last_getpeers = uv_now(p->h->loop);
    dm_buf b = DM_BUF_INIT;
    if (net_msg_encode_getpeers(&b) == DM_OK)
        (void)net__peer_send_buf(p, &b);
    dm_buf_free(&b);
}

/* -------------------------------------------------------------- handshake */

typedef struct {
    uv_work_t req;
    net_peer_t *p; /* only the after-work callback (loop thread) looks at it */
    bool sign;
    const crypto_rsa_t *key; /* immutable; kept alive by p->pending / the host */
    uint8_t msg[NET__AUTH_MSG_MAX];
    size_t msg_len;
    uint8_t sig[NET_MAX_SIG];
    size_t sig_len;
    int rc;
} hs_work;

/* "dmnode-auth-v1" || network_id || signer id || verifier id || verifier nonce || signer nonce */
static size_t auth_transcript(const net_host_t *h, uint8_t out[NET__AUTH_MSG_MAX],
                              const uint8_t *signer, const uint8_t *verifier,
                              const uint8_t *verifier_nonce, const uint8_t *signer_nonce)
{
    size_t n = 0;
    memcpy(out + n, NET__AUTH_LABEL, NET__AUTH_LABEL_LEN);
    n += NET__AUTH_LABEL_LEN;
    memcpy(out + n, h->network_id, h->network_id_len);
    n += h->network_id_len;
    memcpy(out + n, signer, NET_ID_LEN);
    n += NET_ID_LEN;
    memcpy(out + n, verifier, NET_ID_LEN);
    n += NET_ID_LEN;
    memcpy(out + n, verifier_nonce, NET_NONCE_LEN);
    n += NET_NONCE_LEN;
    memcpy(out + n, signer_nonce, NET_NONCE_LEN);
    n += NET_NONCE_LEN;
    return n;
}

/* Thread pool: touches only its own request (and the immutable key it names). */
static void hs_work_cb(uv_work_t *req)
{
    hs_work *w = DM_CONTAINER_OF(req, hs_work, req);
    if (w->sign) {
        dm_buf sig = DM_BUF_INIT;
        w->rc = crypto_rsa_sign(w->key, w->msg, w->msg_len, &sig);
        if (w->rc == DM_OK && sig.len > sizeof w->sig)
            w->rc = DM_ETOOBIG;
        if (w->rc == DM_OK) {
            memcpy(w->sig, sig.data, sig.len);
            w->sig_len = sig.len;
        }
        dm_buf_free(&sig);
    } else {
        w->rc = crypto_rsa_verify(w->key, w->msg, w->msg_len, w->sig, w->sig_len);
    }
}

static void process(net_peer_t *p);

static void maybe_ready(net_peer_t *p)
{
    net_host_t *h = p->h;
    if (!p->auth_sent || !p->auth_ok || p->ready || p->closing)
        return;
    net_peer_t *q = net__host_find_id(h, p->node_id, p, false);
    if (q) {
        if (net__host_preferred(h, q, p)) {
            net__peer_disconnect(p, NET__CL_DUPLICATE, true, "duplicate connection");
            return;
        }
        net__peer_disconnect(q, NET__CL_DUPLICATE, true, "duplicate connection");
    }
    uint64_t now = uv_now(h->loop);
    p->ready = true;
    p->state = NET__ST_READY;
    p->connected_ms = now;
    p->last_rx = now;
    p->ping_sent = now;
    h->stats.handshakes_ok++;
    dm_log(DM_LOG_INFO, "p2p", "Connected to node %s at %s (%s)", p->node_id_hex, p->remote,
           p->outbound ? "outbound" : "inbound");
    net__host_on_ready(h, p);
    net__peer_getpeers(p);
    if (!p->closing && h->cbs.on_peer_ready)
        h->cbs.on_peer_ready(p, h->arg);
}

static void hs_after_cb(uv_work_t *req, int status);

static int queue_hs(net_peer_t *p, bool sign, const uint8_t *sig, size_t sig_len)
{
    net_host_t *h = p->h;
    hs_work *w = calloc(1, sizeof *w);
    if (!w)
        return DM_ENOMEM;
    w->p = p;
    w->sign = sign;
    if (sign) {
        w->key = h->key;
        w->msg_len =
            auth_transcript(h, w->msg, h->node_id, p->node_id, p->their_nonce, p->my_nonce);
    } else {
        w->key = p->pub;
        w->msg_len =
            auth_transcript(h, w->msg, p->node_id, h->node_id, p->my_nonce, p->their_nonce);
        memcpy(w->sig, sig, sig_len);
        w->sig_len = sig_len;
    }
    if (uv_queue_work(h->loop, &w->req, hs_work_cb, hs_after_cb)) {
        free(w);
        return DM_ENOMEM;
    }
    p->pending++;
    return DM_OK;
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void resume(net_peer_t *p)
{
    int rc = uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
    if (rc) {
        net__peer_disconnect(p, NET__CL_REMOTE, false, uv_strerror(rc));
        return;
    }
    process(p); /* frames that arrived while the handshake was being checked */
}

static void hs_after_cb(uv_work_t *req, int status)
{
    hs_work *w = DM_CONTAINER_OF(req, hs_work, req);
    net_peer_t *p = w->p;
    int rc = status ? DM_ECLOSED : w->rc;
    p->pending--;
    if (p->closing) {
        free(w);
        net__peer_maybe_free(p);
        return;
    }
    if (w->sign) {
        dm_buf b = DM_BUF_INIT;
        if (rc == DM_OK)
            rc = net_msg_encode_auth(&b, w->sig, w->sig_len);
        if (rc == DM_OK)
            rc = net__peer_send_buf(p, &b);
        dm_buf_free(&b);
        if (rc) {
            if (!p->closing) {
                dm_log(DM_LOG_ERROR, "p2p", "cannot sign the handshake for %s: %s", p->remote,
                       dm_err_name(rc));
                net__peer_disconnect(p, NET__CL_INTERNAL, true, "internal error");
            }
        } else {
            p->auth_sent = true;
        }
    } else if (rc == DM_EBADSIG) {
        net__peer_violation(p, NET__SCORE_PROTO, "handshake signature does not verify");
    } else if (rc) {
        dm_log(DM_LOG_ERROR, "p2p", "cannot verify the handshake of %s: %s", p->remote,
               dm_err_name(rc));
        net__peer_disconnect(p, NET__CL_INTERNAL, true, "internal error");
    } else {
        p->auth_ok = true;
    }
    free(w);
    bool was_ready = p->ready;
    maybe_ready(p);
    if (!was_ready && p->ready && !p->closing)
        resume(p);
}

static bool slice_eq(net_slice s, const char *str, size_t n)
{
    return s.n == n && memcmp(s.p, str, n) == 0;
}

static void on_hello(net_peer_t *p, const net_msg *m)
{
    net_host_t *h = p->h;
    uint8_t digest[CRYPTO_SHA256_LEN];
    char hex[65];
    if (m->u.hello.version != NET_PROTO_VERSION) {
        dm_log(DM_LOG_INFO, "p2p", "peer %s speaks protocol version %u, not %u", p->remote,
               m->u.hello.version, NET_PROTO_VERSION);
        net__peer_disconnect(p, NET__CL_CONFIG, true, "protocol version mismatch");
        return;
    }
    if (!slice_eq(m->u.hello.network_id, h->network_id, h->network_id_len)) {
        /* a configuration mismatch, not an attack: no score, no ban */
        dm_log(DM_LOG_INFO, "p2p", "peer %s is on network '%.*s', not '%s'", p->remote,
               (int)m->u.hello.network_id.n, (const char *)m->u.hello.network_id.p, h->network_id);
        net__peer_disconnect(p, NET__CL_CONFIG, true, "network id mismatch");
        return;
    }
    if (crypto_sha256(digest, m->u.hello.spki.p, m->u.hello.spki.n)) {
        net__peer_disconnect(p, NET__CL_INTERNAL, false, "hash failed");
        return;
    }
    if (memcmp(digest, m->u.hello.node_id, NET_ID_LEN) != 0) {
        net__peer_violation(p, NET__SCORE_PROTO, "node id does not match its public key");
        return;
    }
    dm_hex_encode(hex, m->u.hello.node_id, NET_ID_LEN);
    if (memcmp(m->u.hello.node_id, h->node_id, NET_ID_LEN) == 0) {
        dm_log(DM_LOG_INFO, "p2p", "%s is this node itself; forgetting the address", p->remote);
        net__host_on_self(h, p);
        net__peer_disconnect(p, NET__CL_SELF, false, "connected to self");
        return;
    }
    if (!net__host_allowed(h, m->u.hello.node_id)) {
        dm_log(DM_LOG_WARNING, "security", "Refused node %s from %s: not on the allowlist", hex,
               p->remote);
        net__peer_disconnect(p, NET__CL_NOTALLOWED, true, "not on the allowlist");
        return;
    }
    int rc = crypto_rsa_from_spki(&p->pub, m->u.hello.spki.p, m->u.hello.spki.n);
    if (rc == DM_EINVAL || rc == DM_EUNSUPPORTED) {
        net__peer_violation(p, NET__SCORE_PROTO, "unusable public key in HELLO");
        return;
    }
    if (rc == DM_OK) {
        p->spki = malloc(m->u.hello.spki.n);
        rc = p->spki ? DM_OK : DM_ENOMEM;
    }
    if (rc) {
        net__peer_disconnect(p, NET__CL_INTERNAL, false, "out of memory");
        return;
    }
    memcpy(p->spki, m->u.hello.spki.p, m->u.hello.spki.n);
    p->spki_len = m->u.hello.spki.n;
    memcpy(p->node_id, m->u.hello.node_id, NET_ID_LEN);
    memcpy(p->node_id_hex, hex, sizeof hex);
    memcpy(p->their_nonce, m->u.hello.nonce, NET_NONCE_LEN);
    p->listen_port = m->u.hello.listen_port;
    p->has_id = true;
    net__host_on_hello(h, p);
    /* an existing authenticated connection that wins the tie stays; an unauthenticated
     * newcomer can never push it out (that is decided only once it has proven its key) */
    net_peer_t *q = net__host_find_id(h, p->node_id, p, false);
    if (q && net__host_preferred(h, q, p)) {
        net__peer_disconnect(p, NET__CL_DUPLICATE, true, "duplicate connection");
        return;
    }
    p->state = NET__ST_AUTH;
    if (queue_hs(p, true, NULL, 0))
        net__peer_disconnect(p, NET__CL_INTERNAL, false, "cannot queue signing");
}

static void on_auth(net_peer_t *p, const net_msg *m)
{
    if (m->u.auth.sig.n > NET_MAX_SIG) {
        net__peer_violation(p, NET__SCORE_PROTO, "oversize AUTH signature");
        return;
    }
    /* later frames wait in the buffer until the peer has proven its key */
    p->state = NET__ST_VERIFY;
    uv_read_stop((uv_stream_t *)&p->tcp);
    if (queue_hs(p, false, m->u.auth.sig.p, m->u.auth.sig.n))
        net__peer_disconnect(p, NET__CL_INTERNAL, false, "cannot queue verification");
}

/* ------------------------------------------------------------------- reads */

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    net_peer_t *p = DM_CONTAINER_OF((uv_tcp_t *)hd, net_peer_t, tcp);
    (void)suggested;
    /* grow only to what a checked length prefix asked for */
    size_t want = p->rneed > NET__RBUF_MIN ? p->rneed : NET__RBUF_MIN;
    if (p->rcap < want) {
        uint8_t *nb = realloc(p->rbuf, want);
        if (!nb) {
            *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
            return;
        }
        p->rbuf = nb;
        p->rcap = want;
    }
    *buf = uv_buf_init((char *)p->rbuf + p->rlen, (unsigned)(p->rcap - p->rlen));
}

static void log_bye(const net_peer_t *p, const net_msg *m)
{
    char wb[80];
    dm_log(DM_LOG_INFO, "p2p", "peer %s (node %s) said goodbye: code %u, %.*s", p->remote,
           who(p, wb), m->u.bye.code, (int)(m->u.bye.reason.n > 128 ? 128 : m->u.bye.reason.n),
           m->u.bye.reason.n ? (const char *)m->u.bye.reason.p : "");
}

static void handle_frame(net_peer_t *p, const uint8_t *frame, size_t flen)
{
    net_host_t *h = p->h;
    net_msg *m = &h->msg;
    char what[96];
    p->frames_in++;
    p->last_rx = uv_now(h->loop);
    int rc = net_msg_decode(frame + 4, flen - 4, m);
    if (rc) {
        snprintf(what, sizeof what, "undecodable frame (%s)", dm_err_name(rc));
        net__peer_violation(p, NET__SCORE_PROTO, what);
        return;
    }
    if (m->type == NET_MSG_BYE) {
        log_bye(p, m);
        net__peer_disconnect(p, NET__CL_REMOTE, false, "peer said goodbye");
        return;
    }
    if (p->state == NET__ST_HELLO || p->state == NET__ST_AUTH) {
        net_msg_type want = p->state == NET__ST_HELLO ? NET_MSG_HELLO : NET_MSG_AUTH;
        if (m->type != want) {
            snprintf(what, sizeof what, "%s during the handshake (expected %s)",
                     net_msg_type_name(m->type), net_msg_type_name(want));
            net__peer_violation(p, NET__SCORE_PROTO, what);
        } else if (want == NET_MSG_HELLO) {
            on_hello(p, m);
        } else {
            on_auth(p, m);
        }
        return;
    }
    if (p->state != NET__ST_READY)
        return; /* not reached: reading is paused in the other states */
    switch (m->type) {
    case NET_MSG_HELLO:
    case NET_MSG_AUTH:
        snprintf(what, sizeof what, "%s after the handshake", net_msg_type_name(m->type));
        net__peer_violation(p, NET__SCORE_PROTO, what);
        return;
    case NET_MSG_PING: {
        dm_buf b = DM_BUF_INIT;
        if (net_msg_encode_ping(&b, NET_MSG_PONG, m->u.ping.nonce) == DM_OK)
            (void)net__peer_send_buf(p, &b);
        dm_buf_free(&b);
        return;
    }
    case NET_MSG_PONG:
        if (p->ping_outstanding && m->u.ping.nonce == p->ping_nonce) {
            p->ping_outstanding = false;
            p->rtt_ms = (uint32_t)(uv_now(h->loop) - p->ping_sent);
        }
        return;
    case NET_MSG_GETPEERS:
        (void)net__host_answer_getpeers(h, p);
        return;
    case NET_MSG_PEERS:
        if (!p->getpeers_pending) {
            dm_log(DM_LOG_DEBUG, "p2p", "ignoring unsolicited PEERS from %s", p->remote);
            return;
        }
        p->getpeers_pending = false;
        net__host_learn(h, p, m);
        return;
    case NET_MSG_BYE:
        return; /* handled above */
    case NET_MSG_SHARE:
    case NET_MSG_KEYREQ:
    case NET_MSG_KEY:
    case NET_MSG_HWM:
    case NET_MSG_SYNCREQ:
    case NET_MSG_SYNCRESP:
    case NET_MSG_ANCHOR:
        if (h->cbs.on_message)
            h->cbs.on_message(p, m, frame, flen, h->arg);
        return;
    }
}

static void process(net_peer_t *p)
{
    size_t off = 0;
    p->rneed = 0;
    while (!p->closing &&
           (p->state == NET__ST_HELLO || p->state == NET__ST_AUTH || p->state == NET__ST_READY)) {
        size_t plen;
        int rc = net_frame_header(p->rbuf + off, p->rlen - off, &plen);
        if (rc == DM_EAGAIN)
            break;
        /* nobody needs big frames before proving who they are */
        if (rc == DM_OK && !p->ready && plen > NET__HS_FRAME_MAX)
            rc = DM_ETOOBIG;
        if (rc) {
            net__peer_violation(p, NET__SCORE_PROTO,
                                rc == DM_ETOOBIG ? "oversize frame length" : "empty frame");
            break;
        }
        if (p->rlen - off - 4 < plen) {
            p->rneed = 4 + plen;
            break;
        }
        handle_frame(p, p->rbuf + off, 4 + plen);
        off += 4 + plen;
    }
    if (off) {
        memmove(p->rbuf, p->rbuf + off, p->rlen - off);
        p->rlen -= off;
    }
    /* give back a large frame's buffer once it has been consumed */
    if (p->rcap > NET__RBUF_MIN && p->rlen <= NET__RBUF_MIN && p->rneed <= NET__RBUF_MIN) {
        uint8_t *nb = realloc(p->rbuf, NET__RBUF_MIN);
        if (nb) {
            p->rbuf = nb;
            p->rcap = NET__RBUF_MIN;
        }
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    net_peer_t *p = DM_CONTAINER_OF((uv_tcp_t *)s, net_peer_t, tcp);
    (void)buf;
    if (nread == 0 || p->closing)
        return;
    if (nread < 0) {
        if (nread == UV_ENOBUFS)
            net__peer_disconnect(p, NET__CL_INTERNAL, false, "out of memory");
        else
            net__peer_disconnect(p, NET__CL_REMOTE, false,
                                 nread == UV_EOF ? "closed by the peer" : uv_strerror((int)nread));
        return;
    }
    p->rlen += (size_t)nread;
    p->bytes_in += (uint64_t)nread;
    process(p);
}

void net__peer_begin(net_peer_t *p)
{
    net_host_t *h = p->h;
    p->begun = true;
    p->state = NET__ST_HELLO;
    uv_tcp_nodelay(&p->tcp, 1);
    dm_buf b = DM_BUF_INIT;
    int rc = net_msg_encode_hello(&b, h->network_id, h->node_id, h->spki, h->spki_len, p->my_nonce,
                                  h->port, NET__AGENT);
    if (rc == DM_OK)
        rc = net__peer_send_buf(p, &b);
    dm_buf_free(&b);
    if (rc == DM_OK)
        rc = uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read) ? DM_ECONN : DM_OK;
    if (rc && !p->closing)
        net__peer_disconnect(p, NET__CL_INTERNAL, false, "cannot start the handshake");
}

/* --------------------------------------------------------------- accessors */

const uint8_t *net_peer_node_id(const net_peer_t *p)
{
    return p->node_id;
}

const char *net_peer_node_id_hex(const net_peer_t *p)
{
    return p->node_id_hex;
}

const uint8_t *net_peer_spki(const net_peer_t *p, size_t *n)
{
    if (n)
        *n = p->spki_len;
    return p->spki;
}

const char *net_peer_remote(const net_peer_t *p)
{
    return p->remote;
}

bool net_peer_outbound(const net_peer_t *p)
{
    return p->outbound;
}

void net_peer_set_data(net_peer_t *p, void *data)
{
    p->data = data;
}

void *net_peer_data(const net_peer_t *p)
{
    return p->data;
}
