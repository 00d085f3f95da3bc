/*
 * libFuzzer target for the message decoder: the input is one frame payload
 * (without its length prefix), fed straight to net_msg_decode. Properties:
 *  - only DM_EPARSE / DM_EPROTO / DM_ETOOBIG come back on failure, and the
 *    same input always gives the same answer;
 *  - a decoded message re-encodes with its own encoder (whatever decodes is
 *    within every encoder's limits), the re-encoded frame decodes to the same
 *    fields (HELLO's version excepted: the encoder always writes
 *    NET_PROTO_VERSION), and encoding that again gives the same bytes (the
 *    encoders are canonical even where the input was not);
 *  - an ANCHOR's body either fails net_anchor_body_decode with DM_EPARSE /
 *    DM_ETOOBIG or decodes, and then encodes back to exactly the same bytes (a
 *    notice body has one encoding only).
 */
#include "dm_buf.h"
#include "dm_err.h"
#include "net_msg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static net_msg m1, m2, m3; /* large: keep them off the stack */

static bool slice_eq(net_slice a, net_slice b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static bool msg_eq(const net_msg *a, const net_msg *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case NET_MSG_HELLO:
        return slice_eq(a->u.hello.network_id, b->u.hello.network_id) &&
               !memcmp(a->u.hello.node_id, b->u.hello.node_id, NET_ID_LEN) &&
               slice_eq(a->u.hello.spki, b->u.hello.spki) &&
               !memcmp(a->u.hello.nonce, b->u.hello.nonce, NET_NONCE_LEN) &&
               a->u.hello.listen_port == b->u.hello.listen_port &&
               slice_eq(a->u.hello.agent, b->u.hello.agent);
    case NET_MSG_AUTH:
        return slice_eq(a->u.auth.sig, b->u.auth.sig);
    case NET_MSG_PING:
    case NET_MSG_PONG:
        return a->u.ping.nonce == b->u.ping.nonce;
    case NET_MSG_SHARE:
        return slice_eq(a->u.share.body, b->u.share.body) &&
               slice_eq(a->u.share.sig, b->u.share.sig);
    case NET_MSG_GETPEERS:
        return true;
    case NET_MSG_PEERS:
        if (a->u.peers.count != b->u.peers.count)
            return false;
        for (size_t i = 0; i < a->u.peers.count; i++)
            if (memcmp(a->u.peers.addr[i].node_id, b->u.peers.addr[i].node_id, NET_ID_LEN) ||
                !slice_eq(a->u.peers.addr[i].host, b->u.peers.addr[i].host) ||
                a->u.peers.addr[i].port != b->u.peers.addr[i].port)
                return false;
        return true;
    case NET_MSG_KEYREQ:
        return !memcmp(a->u.keyreq.node_id, b->u.keyreq.node_id, NET_ID_LEN);
    case NET_MSG_KEY:
        return slice_eq(a->u.key.spki, b->u.key.spki);
    case NET_MSG_HWM:
        if (a->u.hwm.count != b->u.hwm.count)
            return false;
        for (size_t i = 0; i < a->u.hwm.count; i++)
            if (memcmp(a->u.hwm.e[i].origin, b->u.hwm.e[i].origin, NET_ID_LEN) ||
                a->u.hwm.e[i].seq != b->u.hwm.e[i].seq)
                return false;
        return true;
    case NET_MSG_SYNCREQ:
        return !memcmp(a->u.syncreq.origin, b->u.syncreq.origin, NET_ID_LEN) &&
               a->u.syncreq.from_seq == b->u.syncreq.from_seq &&
               a->u.syncreq.limit == b->u.syncreq.limit;
    case NET_MSG_SYNCRESP:
        if (memcmp(a->u.syncresp.origin, b->u.syncresp.origin, NET_ID_LEN) ||
            a->u.syncresp.count != b->u.syncresp.count || a->u.syncresp.more != b->u.syncresp.more)
            return false;
        for (size_t i = 0; i < a->u.syncresp.count; i++)
            if (!slice_eq(a->u.syncresp.body[i], b->u.syncresp.body[i]) ||
                !slice_eq(a->u.syncresp.sig[i], b->u.syncresp.sig[i]))
                return false;
        return true;
    case NET_MSG_BYE:
        return a->u.bye.code == b->u.bye.code && slice_eq(a->u.bye.reason, b->u.bye.reason);
    case NET_MSG_ANCHOR:
        return !memcmp(a->u.anchor.origin, b->u.anchor.origin, NET_ID_LEN) &&
               slice_eq(a->u.anchor.body, b->u.anchor.body) &&
               slice_eq(a->u.anchor.sig, b->u.anchor.sig);
    }
    return false;
}

/* A decoded str slice as a C string for the encoders that take one. */
static const char *cstr(char *buf, net_slice s)
{
    if (s.n)
        memcpy(buf, s.p, s.n);
    buf[s.n] = '\0';
    return buf;
}

static int encode(dm_buf *out, const net_msg *m)
{
    char s1[NET_MAX_STR + 1], s2[NET_MAX_STR + 1];
    switch (m->type) {
    case NET_MSG_HELLO:
        return net_msg_encode_hello(out, cstr(s1, m->u.hello.network_id), m->u.hello.node_id,
                                    m->u.hello.spki.p, m->u.hello.spki.n, m->u.hello.nonce,
                                    m->u.hello.listen_port, cstr(s2, m->u.hello.agent));
    case NET_MSG_AUTH:
        return net_msg_encode_auth(out, m->u.auth.sig.p, m->u.auth.sig.n);
    case NET_MSG_PING:
    case NET_MSG_PONG:
        return net_msg_encode_ping(out, m->type, m->u.ping.nonce);
    case NET_MSG_SHARE:
        return net_msg_encode_share(out, m->u.share.body.p, m->u.share.body.n, m->u.share.sig.p,
                                    m->u.share.sig.n);
    case NET_MSG_GETPEERS:
        return net_msg_encode_getpeers(out);
    case NET_MSG_PEERS:
        return net_msg_encode_peers(out, m->u.peers.addr, m->u.peers.count);
    case NET_MSG_KEYREQ:
        return net_msg_encode_keyreq(out, m->u.keyreq.node_id);
    case NET_MSG_KEY:
        return net_msg_encode_key(out, m->u.key.spki.p, m->u.key.spki.n);
    case NET_MSG_HWM:
        return net_msg_encode_hwm(out, m->u.hwm.e, m->u.hwm.count);
    case NET_MSG_SYNCREQ:
        return net_msg_encode_syncreq(out, m->u.syncreq.origin, m->u.syncreq.from_seq,
                                      m->u.syncreq.limit);
    case NET_MSG_SYNCRESP: {
        net_syncresp_builder b;
        int rc = net_msg_syncresp_begin(&b, out, m->u.syncresp.origin);
        for (size_t i = 0; !rc && i < m->u.syncresp.count; i++)
            rc = net_msg_syncresp_add(&b, m->u.syncresp.body[i].p, m->u.syncresp.body[i].n,
                                      m->u.syncresp.sig[i].p, m->u.syncresp.sig[i].n);
        if (!rc)
            rc = net_msg_syncresp_end(&b, m->u.syncresp.more);
        return rc;
    }
    case NET_MSG_BYE:
        return net_msg_encode_bye(out, m->u.bye.code, cstr(s1, m->u.bye.reason));
    case NET_MSG_ANCHOR:
        return net_msg_encode_anchor(out, m->u.anchor.origin, m->u.anchor.body.p,
                                     m->u.anchor.body.n, m->u.anchor.sig.p, m->u.anchor.sig.n);
    }
    abort();
}

static net_anchor_item items[NET_ANCHOR_MAX_ITEMS];

/* A notice body decodes only if it is the one canonical encoding of its fields. */
static void check_anchor_body(net_slice body)
{
    net_anchor_body b;
    int rc = net_anchor_body_decode(body.p, body.n, &b, items, NET_ANCHOR_MAX_ITEMS);
    if (rc == DM_EPARSE || rc == DM_ETOOBIG)
        return;
    if (rc != DM_OK)
        abort();
    dm_buf e = DM_BUF_INIT;
    rc = net_anchor_body_encode(&e, &b, items);
    if (rc == DM_ENOMEM) {
        dm_buf_free(&e);
        return;
    }
    if (rc != DM_OK || e.len != body.n || memcmp(e.data, body.p, body.n) != 0)
        abort();
    dm_buf_free(&e);
}

/* Decode the single frame held in `f` (prefix checked too). */
static void decode_frame(const dm_buf *f, net_msg *m)
{
    size_t len;
    if (net_frame_header(f->data, f->len, &len) != DM_OK || len != f->len - 4 ||
        net_msg_decode(f->data + 4, len, m) != DM_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int rc = net_msg_decode(data, size, &m1);
    if (rc != net_msg_decode(data, size, &m2))
        abort(); /* deterministic */
    if (rc == DM_EPARSE || rc == DM_EPROTO || rc == DM_ETOOBIG)
        return 0;
    if (rc != DM_OK)
        abort();
    if (m1.type == NET_MSG_ANCHOR)
        check_anchor_body(m1.u.anchor.body);

    dm_buf e1 = DM_BUF_INIT, e2 = DM_BUF_INIT;
    rc = encode(&e1, &m1);
    if (rc == DM_ENOMEM)
        goto out;
    /* a SYNCRESP page within a few bytes of the frame cap may not fit again
     * behind the builder's array32 header; nothing else may fail */
    if (rc == DM_ELIMIT && m1.type == NET_MSG_SYNCRESP && size > NET_FRAME_MAX - 8)
        goto out;
    if (rc != DM_OK)
        abort();
    decode_frame(&e1, &m2);
    if (!msg_eq(&m1, &m2))
        abort();
    if (m2.type == NET_MSG_HELLO && m2.u.hello.version != NET_PROTO_VERSION)
        abort();
    if (encode(&e2, &m2) != DM_OK || e1.len != e2.len || memcmp(e1.data, e2.data, e1.len) != 0)
        abort();
    decode_frame(&e2, &m3);
    if (!msg_eq(&m2, &m3))
        abort();
out:
    dm_buf_free(&e1);
    dm_buf_free(&e2);
    return 0;
}
