/*
 * libFuzzer target for the frame layer: the input is what a peer could send on
 * one connection, a byte stream of frames. Like the peer's read loop, it reads
 * each 4-byte length prefix with net_frame_header (which must refuse zero and
 * oversize lengths before anything is allocated), then hands the payload to
 * net_msg_decode, and stops at the first error or incomplete frame.
 *
 * Each payload is copied into an allocation of exactly its size, so that
 * AddressSanitizer catches a decoder read past the payload even where the
 * stream continues. Invariants checked: only the documented error codes come
 * back, a decoded message's counts respect their limits, and every slice it
 * returns lies inside its payload.
 */
#include "dm_err.h"
#include "net_msg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static net_msg msg; /* large: keep it off the stack */

static void check_slice(net_slice s, const uint8_t *p, size_t n)
{
    if (s.n == 0)
        return;
    if (s.p < p || s.n > n || s.p > p + n - s.n)
        abort();
}

static void check_msg(const net_msg *m, const uint8_t *p, size_t n)
{
    switch (m->type) {
    case NET_MSG_HELLO:
        check_slice(m->u.hello.network_id, p, n);
        check_slice(m->u.hello.spki, p, n);
        check_slice(m->u.hello.agent, p, n);
        if (m->u.hello.network_id.n == 0 || m->u.hello.network_id.n > NET_MAX_STR ||
            m->u.hello.spki.n == 0 || m->u.hello.spki.n > NET_MAX_SPKI)
            abort();
        break;
    case NET_MSG_AUTH:
        check_slice(m->u.auth.sig, p, n);
        if (m->u.auth.sig.n == 0 || m->u.auth.sig.n > NET_MAX_SIG)
            abort();
        break;
    case NET_MSG_PING:
    case NET_MSG_PONG:
    case NET_MSG_GETPEERS:
    case NET_MSG_KEYREQ:
        break;
    case NET_MSG_SHARE:
        check_slice(m->u.share.body, p, n);
        check_slice(m->u.share.sig, p, n);
        if (m->u.share.body.n == 0 || m->u.share.sig.n == 0 || m->u.share.sig.n > NET_MAX_SIG)
            abort();
        break;
    case NET_MSG_PEERS:
        if (m->u.peers.count > NET_MAX_PEERS_MSG)
            abort();
        for (size_t i = 0; i < m->u.peers.count; i++) {
            check_slice(m->u.peers.addr[i].host, p, n);
            if (m->u.peers.addr[i].port == 0 || m->u.peers.addr[i].host.n == 0)
                abort();
        }
        break;
    case NET_MSG_KEY:
        check_slice(m->u.key.spki, p, n);
        break;
    case NET_MSG_HWM:
        if (m->u.hwm.count > NET_MAX_HWM)
            abort();
        break;
    case NET_MSG_SYNCREQ:
        if (m->u.syncreq.limit == 0 || m->u.syncreq.limit > NET_MAX_SYNC_PAGE)
            abort();
        break;
    case NET_MSG_SYNCRESP:
        if (m->u.syncresp.count > NET_MAX_SYNC_PAGE)
            abort();
        for (size_t i = 0; i < m->u.syncresp.count; i++) {
            check_slice(m->u.syncresp.body[i], p, n);
            check_slice(m->u.syncresp.sig[i], p, n);
        }
        break;
    case NET_MSG_BYE:
        check_slice(m->u.bye.reason, p, n);
        break;
    case NET_MSG_ANCHOR:
        check_slice(m->u.anchor.body, p, n);
        check_slice(m->u.anchor.sig, p, n);
        if (m->u.anchor.body.n == 0 || m->u.anchor.body.n > NET_ANCHOR_BODY_MAX ||
            m->u.anchor.sig.n == 0)
            abort();
        break;
    default:
        abort(); /* decoded into a type that does not exist */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        size_t len = 0;
        int rc = net_frame_header(data + off, size - off, &len);
        if (rc == DM_EAGAIN) {
            if (size - off >= 4)
                abort();
            break;
        }
        if (rc == DM_EPROTO || rc == DM_ETOOBIG)
            break;
        if (rc != DM_OK || len == 0 || len > NET_FRAME_MAX)
            abort();
        if (len > size - off - 4)
            break; /* the rest of the frame has not arrived */
        uint8_t *payload = malloc(len);
        if (!payload)
            abort();
        memcpy(payload, data + off + 4, len);
        rc = net_msg_decode(payload, len, &msg);
        if (rc == DM_OK)
            check_msg(&msg, payload, len);
        else if (rc != DM_EPARSE && rc != DM_EPROTO && rc != DM_ETOOBIG)
            abort();
        free(payload);
        if (rc)
            break; /* a peer that sent this is disconnected */
        off += 4 + len;
    }
    return 0;
}
