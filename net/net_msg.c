/*
 * Wire messages (docs/PROTOCOL.md): msgpack encoders that write one complete
 * frame straight into a dm_buf, and a strict, zero-copy, allocation-free
 * decoder for hostile input.
 *
 * Why a hand-written reader rather than msgpack_unpack: msgpack-c's unpacker
 * allocates zones sized from the counts a message declares, before it knows
 * whether the bytes exist. Here every declared count or length is compared
 * with the bytes that remain before it is used, the decoder follows the schema
 * of the message type (so no generic recursion and no skipping of unknown
 * values), and the result only borrows slices of the payload.
 *
 * Encoders use msgpack-c's packer (shortest encodings) with a write callback
 * that appends to the caller's dm_buf. Every encoder validates its arguments
 * against the same limits the decoder enforces, so whatever encodes decodes,
 * and on any failure the dm_buf is left exactly as it was.
 */
#include "net_msg.h"

#include "dm_buf.h"
#include "dm_err.h"

#include <msgpack.h>
#include <string.h>

/* A share body is the canonical msgpack array of node/node_share.h: at most
 * NET_SHARE_DATA_MAX bytes of data plus well under 4 KiB of other fields. */
#define NET_SHARE_BODY_MAX (NET_SHARE_DATA_MAX + 4096)

/* ---------------------------------------------------------------- reader */

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
    unsigned depth; /* arrays currently open */
    bool canon;     /* shortest encodings only (anchor notice bodies) */
} rd;

static size_t rd_left(const rd *r)
{
    return (size_t)(r->end - r->p);
}

static int rd_take(rd *r, size_t n, const uint8_t **out)
{
    if (n > rd_left(r))
        return DM_EPARSE;
    *out = r->p;
    r->p += n;
    return DM_OK;
}

static int rd_byte(rd *r, uint8_t *b)
{
    if (r->p == r->end)
        return DM_EPARSE;
    *b = *r->p++;
    return DM_OK;
}

/* A big-endian length or value of 1, 2, 4 or 8 bytes. */
static int rd_be(rd *r, size_t width, uint64_t *v)
{
    const uint8_t *q;
    int rc = rd_take(r, width, &q);
    if (rc)
        return rc;
    uint64_t x = 0;
    for (size_t i = 0; i < width; i++)
        x = x << 8 | q[i];
    *v = x;
    return DM_OK;
}

/*
 * An unsigned integer in any msgpack integer encoding (fixint, uint 8..64, or
 * a signed int 8..64 holding a non-negative value). Senders use the shortest
 * form; accepting the others costs nothing and keeps foreign encoders working.
 * Negative values, and anything that is not an integer, are schema errors.
 */
static int rd_uint(rd *r, uint64_t *v)
{
    uint8_t t;
    if (rd_byte(r, &t))
        return DM_EPARSE;
    if (t <= 0x7f) {
        *v = t;
        return DM_OK;
    }
    /* 0xcc..0xcf: uint 8/16/32/64; 0xd0..0xd3: int 8/16/32/64 */
    if (t < 0xcc || t > 0xd3)
        return DM_EPARSE; /* negative fixint, float, or not a number */
    bool is_signed = t >= 0xd0;
    size_t width = (size_t)1 << (t - (is_signed ? 0xd0 : 0xcc));
    uint64_t x;
    if (rd_be(r, width, &x))
        return DM_EPARSE;
    if (is_signed && (x >> (8 * width - 1)) != 0)
        return DM_EPARSE; /* negative */
    /* canonical: unsigned, and no narrower form would hold the value */
    if (r->canon && (is_signed || (width == 1 ? x < 0x80 : x >> (4 * width) == 0)))
        return DM_EPARSE;
    *v = x;
    return DM_OK;
}

static int rd_uint_max(rd *r, uint64_t max, uint64_t *v)
{
    int rc = rd_uint(r, v);
    if (rc)
        return rc;
    return *v > max ? DM_EPARSE : DM_OK;
}

/* Opens an array: the declared count must fit the remaining bytes (every
 * element takes at least one) and the nesting stays within the limit. Pair
 * with rd_leave once the elements are read. */
static int rd_array(rd *r, size_t *count)
{
    uint8_t t;
    uint64_t n;
    if (rd_byte(r, &t))
        return DM_EPARSE;
    if (t >= 0x90 && t <= 0x9f)
        n = t & 0x0f;
    else if (t == 0xdc) {
        if (rd_be(r, 2, &n))
            return DM_EPARSE;
    } else if (t == 0xdd) {
        if (rd_be(r, 4, &n))
            return DM_EPARSE;
    } else
        return DM_EPARSE;
    if (r->canon && (t == 0xdc ? n < 16 : t == 0xdd ? n <= 0xffff : false))
        return DM_EPARSE; /* a shorter header would do */
    if (n > rd_left(r))
        return DM_EPARSE;
    if (r->depth >= NET_MSGPACK_MAX_DEPTH)
        return DM_EPARSE;
    r->depth++;
    *count = (size_t)n;
    return DM_OK;
}

static void rd_leave(rd *r)
{
    r->depth--;
}

/* An array of exactly `want` elements. */
static int rd_array_n(rd *r, size_t want)
{
    size_t n;
    int rc = rd_array(r, &n);
    if (rc)
        return rc;
    return n == want ? DM_OK : DM_EPARSE;
}

/* A bin of 1..max bytes (0..max if empty_ok). */
static int rd_bin(rd *r, size_t max, bool empty_ok, net_slice *s)
{
    uint8_t t;
    uint64_t n;
    if (rd_byte(r, &t))
        return DM_EPARSE;
    /* 0xc4..0xc6: bin 8/16/32 */
    if (t < 0xc4 || t > 0xc6 || rd_be(r, (size_t)1 << (t - 0xc4), &n))
        return DM_EPARSE;
    if (r->canon && (t == 0xc5 ? n <= 0xff : t == 0xc6 ? n <= 0xffff : false))
        return DM_EPARSE; /* a shorter header would do */
    if (n > rd_left(r))
        return DM_EPARSE; /* declared more than was sent */
    if (n > max)
        return DM_ETOOBIG;
    if (n == 0 && !empty_ok)
        return DM_EPARSE;
    s->n = (size_t)n;
    s->p = r->p;
    r->p += n;
    return DM_OK;
}

/* A bin of exactly `len` bytes (node ids, share ids, nonces), copied out. */
static int rd_bin_fixed(rd *r, size_t len, uint8_t *out)
{
    net_slice s;
    int rc = rd_bin(r, len, false, &s);
    if (rc == DM_ETOOBIG || (rc == DM_OK && s.n != len))
        return DM_EPARSE;
    if (rc)
        return rc;
    memcpy(out, s.p, len);
    return DM_OK;
}

static bool printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            return false;
    return true;
}

/* A str of printable ASCII, at most NET_MAX_STR bytes. Text from peers ends up
 * in logs and the API; control bytes and non-ASCII have no business there. */
static int rd_str(rd *r, bool empty_ok, net_slice *s)
{
    uint8_t t;
    uint64_t n;
    if (rd_byte(r, &t))
        return DM_EPARSE;
    if (t >= 0xa0 && t <= 0xbf)
        n = t & 0x1f;
    else if (t == 0xd9) {
        if (rd_be(r, 1, &n))
            return DM_EPARSE;
    } else if (t == 0xda) {
        if (rd_be(r, 2, &n))
            return DM_EPARSE;
    } else if (t == 0xdb) {
        if (rd_be(r, 4, &n))
            return DM_EPARSE;
    } else
        return DM_EPARSE;
    if (n > rd_left(r))
        return DM_EPARSE;
    if (n > NET_MAX_STR)
        return DM_ETOOBIG;
    if ((n == 0 && !empty_ok) || !printable(r->p, (size_t)n))
        return DM_EPARSE;
    s->n = (size_t)n;
    s->p = r->p;
    r->p += n;
    return DM_OK;
}

static int rd_bool(rd *r, bool *v)
{
    uint8_t t;
    if (rd_byte(r, &t))
        return DM_EPARSE;
    if (t == 0xc2)
        *v = false;
    else if (t == 0xc3)
        *v = true;
    else
        return DM_EPARSE;
    return DM_OK;
}

/* ------------------------------------------------------------- decoders */

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        int try_rc_ = (expr);                                                                      \
        if (try_rc_)                                                                               \
            return try_rc_;                                                                        \
    } while (0)

/* Name and element count (type included) of each message type. */
static const struct {
    const char *name;
    size_t arity;
} MSG_INFO[] = {
    [NET_MSG_HELLO] = {"HELLO", 8},     [NET_MSG_AUTH] = {"AUTH", 2},
    [NET_MSG_PING] = {"PING", 2},       [NET_MSG_PONG] = {"PONG", 2},
    [NET_MSG_SHARE] = {"SHARE", 3},     [NET_MSG_GETPEERS] = {"GETPEERS", 1},
    [NET_MSG_PEERS] = {"PEERS", 2},     [NET_MSG_KEYREQ] = {"KEYREQ", 2},
    [NET_MSG_KEY] = {"KEY", 2},         [NET_MSG_HWM] = {"HWM", 2},
    [NET_MSG_SYNCREQ] = {"SYNCREQ", 4}, [NET_MSG_SYNCRESP] = {"SYNCRESP", 4},
    [NET_MSG_BYE] = {"BYE", 3},         [NET_MSG_ANCHOR] = {"ANCHOR", 4},
};
#define MSG_INFO_N (sizeof MSG_INFO / sizeof MSG_INFO[0])

/* 0 for unknown types */
static size_t msg_arity(uint64_t type)
{
    return type < MSG_INFO_N ? MSG_INFO[type].arity : 0;
}

static int dec_hello(rd *r, net_msg *m)
{
    uint64_t v;
    TRY(rd_uint_max(r, UINT32_MAX, &v));
    m->u.hello.version = (uint32_t)v;
    TRY(rd_str(r, false, &m->u.hello.network_id));
    TRY(rd_bin_fixed(r, NET_ID_LEN, m->u.hello.node_id));
    TRY(rd_bin(r, NET_MAX_SPKI, false, &m->u.hello.spki));
    TRY(rd_bin_fixed(r, NET_NONCE_LEN, m->u.hello.nonce));
    TRY(rd_uint_max(r, UINT16_MAX, &v));
    m->u.hello.listen_port = (uint16_t)v;
    TRY(rd_str(r, true, &m->u.hello.agent));
    return DM_OK;
}

static int dec_peers(rd *r, net_msg *m)
{
    size_t n;
    TRY(rd_array(r, &n));
    if (n > NET_MAX_PEERS_MSG)
        return DM_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        net_peer_addr *a = &m->u.peers.addr[i];
        uint64_t port;
        TRY(rd_array_n(r, 3));
        TRY(rd_bin_fixed(r, NET_ID_LEN, a->node_id));
        TRY(rd_str(r, false, &a->host));
        TRY(rd_uint_max(r, UINT16_MAX, &port));
        if (port == 0)
            return DM_EPARSE; /* only listening addresses are worth telling */
        a->port = (uint16_t)port;
        rd_leave(r);
    }
    rd_leave(r);
    m->u.peers.count = n;
    return DM_OK;
}

static int dec_hwm(rd *r, net_msg *m)
{
    size_t n;
    TRY(rd_array(r, &n));
    if (n > NET_MAX_HWM)
        return DM_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        TRY(rd_array_n(r, 2));
        TRY(rd_bin_fixed(r, NET_ID_LEN, m->u.hwm.e[i].origin));
        TRY(rd_uint(r, &m->u.hwm.e[i].seq));
        rd_leave(r);
    }
    rd_leave(r);
    m->u.hwm.count = n;
    return DM_OK;
}

static int dec_syncreq(rd *r, net_msg *m)
{
    uint64_t v;
    TRY(rd_bin_fixed(r, NET_ID_LEN, m->u.syncreq.origin));
    TRY(rd_uint(r, &m->u.syncreq.from_seq));
    TRY(rd_uint(r, &v));
    if (v == 0)
        return DM_EPARSE;
    if (v > NET_MAX_SYNC_PAGE)
        return DM_ETOOBIG;
    m->u.syncreq.limit = (uint32_t)v;
    return DM_OK;
}

static int dec_syncresp(rd *r, net_msg *m)
{
    size_t n;
    TRY(rd_bin_fixed(r, NET_ID_LEN, m->u.syncresp.origin));
    TRY(rd_array(r, &n));
    if (n > NET_MAX_SYNC_PAGE)
        return DM_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        TRY(rd_array_n(r, 2));
        TRY(rd_bin(r, NET_SHARE_BODY_MAX, false, &m->u.syncresp.body[i]));
        TRY(rd_bin(r, NET_MAX_SIG, false, &m->u.syncresp.sig[i]));
        rd_leave(r);
    }
    rd_leave(r);
    m->u.syncresp.count = n;
    TRY(rd_bool(r, &m->u.syncresp.more));
    return DM_OK;
}

int net_msg_decode(const uint8_t *payload, size_t n, net_msg *out)
{
    if (!out || (!payload && n))
        return DM_EINVAL;
    if (n == 0)
        return DM_EPARSE;
    if (n > NET_FRAME_MAX)
        return DM_ETOOBIG;
    rd r = {payload, payload + n, 0};
    size_t count;
    uint64_t type;
    TRY(rd_array(&r, &count));
    if (count == 0)
        return DM_EPARSE;
    TRY(rd_uint(&r, &type));
    size_t arity = msg_arity(type);
    if (arity == 0)
        return DM_EPROTO;
    if (count != arity)
        return DM_EPARSE;
    out->type = (net_msg_type)type;

    uint64_t v;
    switch (out->type) {
    case NET_MSG_HELLO:
        TRY(dec_hello(&r, out));
        break;
    case NET_MSG_AUTH:
        TRY(rd_bin(&r, NET_MAX_SIG, false, &out->u.auth.sig));
        break;
    case NET_MSG_PING:
    case NET_MSG_PONG:
        TRY(rd_uint(&r, &out->u.ping.nonce));
        break;
    case NET_MSG_SHARE:
        TRY(rd_bin(&r, NET_SHARE_BODY_MAX, false, &out->u.share.body));
        TRY(rd_bin(&r, NET_MAX_SIG, false, &out->u.share.sig));
        break;
    case NET_MSG_GETPEERS:
        break;
    case NET_MSG_PEERS:
        TRY(dec_peers(&r, out));
        break;
    case NET_MSG_KEYREQ:
        TRY(rd_bin_fixed(&r, NET_ID_LEN, out->u.keyreq.node_id));
        break;
    case NET_MSG_KEY:
        TRY(rd_bin(&r, NET_MAX_SPKI, false, &out->u.key.spki));
        break;
    case NET_MSG_HWM:
        TRY(dec_hwm(&r, out));
        break;
    case NET_MSG_SYNCREQ:
        TRY(dec_syncreq(&r, out));
        break;
    case NET_MSG_SYNCRESP:
        TRY(dec_syncresp(&r, out));
        break;
    case NET_MSG_BYE:
        TRY(rd_uint_max(&r, UINT32_MAX, &v));
        out->u.bye.code = (uint32_t)v;
        TRY(rd_str(&r, true, &out->u.bye.reason));
        break;
    case NET_MSG_ANCHOR:
        TRY(rd_bin_fixed(&r, NET_ID_LEN, out->u.anchor.origin));
        TRY(rd_bin(&r, NET_ANCHOR_BODY_MAX, false, &out->u.anchor.body));
        TRY(rd_bin(&r, NET_MAX_SIG, false, &out->u.anchor.sig));
        break;
    }
    rd_leave(&r);
    if (r.p != r.end)
        return DM_EPARSE; /* trailing bytes */
    return DM_OK;
}

const char *net_msg_type_name(int type)
{
    if (type < 0 || (size_t)type >= MSG_INFO_N || !MSG_INFO[type].name)
        return "UNKNOWN";
    return MSG_INFO[type].name;
}

/* ------------------------------------------------------------- encoders */

/* The packer's sink: appends to a dm_buf and remembers why it failed. */
typedef struct {
    dm_buf *b;
    int rc;
    msgpack_packer pk;
} wr;

static int wr_cb(void *data, const char *buf, size_t len)
{
    wr *w = data;
    int rc = dm_buf_append(w->b, buf, len);
    if (rc) {
        if (!w->rc)
            w->rc = rc;
        return -1;
    }
    return 0;
}

/* Starts a frame: remembers where it begins and leaves room for the prefix. */
static int wr_begin(wr *w, dm_buf *out, size_t *start, size_t reserve)
{
    w->b = out;
    w->rc = DM_OK;
    msgpack_packer_init(&w->pk, w, wr_cb);
    *start = out->len;
    int rc = dm_buf_reserve(out, 4 + reserve);
    if (rc)
        return rc;
    static const uint8_t zero[4];
    return dm_buf_append(out, zero, sizeof zero);
}

/* Ends a frame: `ok` is the conjunction of the pack calls. Patches the length
 * prefix, or on any failure (or an oversize frame) drops the partial frame. */
static int wr_end(wr *w, size_t start, bool ok)
{
    dm_buf *out = w->b;
    int rc = DM_OK;
    if (!ok)
        rc = w->rc ? w->rc : DM_ENOMEM;
    else if (out->len - start - 4 > NET_FRAME_MAX)
        rc = DM_ETOOBIG;
    if (rc) {
        out->len = start;
        return rc;
    }
    dm_put_u32be(out->data + start, (uint32_t)(out->len - start - 4));
    return DM_OK;
}

static bool pk_type(wr *w, size_t arity, net_msg_type type)
{
    return msgpack_pack_array(&w->pk, arity) == 0 && msgpack_pack_uint8(&w->pk, (uint8_t)type) == 0;
}

static bool pk_bin(wr *w, const uint8_t *p, size_t n)
{
    return msgpack_pack_bin_with_body(&w->pk, p, n) == 0;
}

static bool pk_str(wr *w, const uint8_t *p, size_t n)
{
    return msgpack_pack_str_with_body(&w->pk, p, n) == 0;
}

/* Bytes a bin of n bytes takes. */
static size_t bin_size(size_t n)
{
    return (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5) + n;
}

/* Encoder-side mirror of rd_str: DM_EINVAL for NULL (when required), empty
 * (when not allowed) or non-printable text, DM_ETOOBIG past NET_MAX_STR. */
static int check_str(const char *s, bool empty_ok, size_t *len)
{
    if (!s) {
        *len = 0;
        return empty_ok ? DM_OK : DM_EINVAL;
    }
    size_t n = strnlen(s, NET_MAX_STR + 1);
    if (n > NET_MAX_STR)
        return DM_ETOOBIG;
    if ((n == 0 && !empty_ok) || !printable((const uint8_t *)s, n))
        return DM_EINVAL;
    *len = n;
    return DM_OK;
}

static int check_bin(const uint8_t *p, size_t n, size_t max)
{
    if (n > max)
        return DM_ETOOBIG;
    if (n == 0 || !p)
        return DM_EINVAL;
    return DM_OK;
}

/** Appends a HELLO frame. Borrowed arguments; agent may be NULL (empty).
 *  DM_EINVAL for a NULL/empty/non-printable network id or a bad spki/agent,
 *  DM_ETOOBIG for a field over its limit, DM_ENOMEM. `out` unchanged on error. */
int net_msg_encode_hello(dm_buf *out, const char *network_id, const uint8_t node_id[NET_ID_LEN],
                         const uint8_t *spki, size_t spki_len, const uint8_t nonce[NET_NONCE_LEN],
                         uint16_t listen_port, const char *agent)
{
    size_t nid_len, agent_len;
    int rc;
    if (!out || !node_id || !nonce)
        return DM_EINVAL;
    if ((rc = check_str(network_id, false, &nid_len)) ||
        (rc = check_str(agent, true, &agent_len)) || (rc = check_bin(spki, spki_len, NET_MAX_SPKI)))
        return rc;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 128 + nid_len + spki_len + agent_len))) {
        out->len = start;
        return rc;
    }
    bool ok = pk_type(&w, 8, NET_MSG_HELLO) && msgpack_pack_uint32(&w.pk, NET_PROTO_VERSION) == 0 &&
              pk_str(&w, (const uint8_t *)network_id, nid_len) && pk_bin(&w, node_id, NET_ID_LEN) &&
              pk_bin(&w, spki, spki_len) && pk_bin(&w, nonce, NET_NONCE_LEN) &&
              msgpack_pack_uint16(&w.pk, listen_port) == 0 &&
              pk_str(&w, (const uint8_t *)(agent ? agent : ""), agent_len);
    return wr_end(&w, start, ok);
}

/** Appends an AUTH frame; sig is 1..NET_MAX_SIG bytes (DM_EINVAL / DM_ETOOBIG). */
int net_msg_encode_auth(dm_buf *out, const uint8_t *sig, size_t sig_len)
{
    int rc;
    if (!out)
        return DM_EINVAL;
    if ((rc = check_bin(sig, sig_len, NET_MAX_SIG)))
        return rc;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 8 + sig_len))) {
        out->len = start;
        return rc;
    }
    return wr_end(&w, start, pk_type(&w, 2, NET_MSG_AUTH) && pk_bin(&w, sig, sig_len));
}

/** Appends a PING or PONG frame (DM_EINVAL for any other type). */
int net_msg_encode_ping(dm_buf *out, net_msg_type type, uint64_t nonce)
{
    int rc;
    if (!out || (type != NET_MSG_PING && type != NET_MSG_PONG))
        return DM_EINVAL;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 16))) {
        out->len = start;
        return rc;
    }
    return wr_end(&w, start, pk_type(&w, 2, type) && msgpack_pack_uint64(&w.pk, nonce) == 0);
}

/** Appends a SHARE frame: body 1..NET_SHARE_DATA_MAX+4096 bytes, sig
 *  1..NET_MAX_SIG bytes. The body is not inspected here (node_share does). */
int net_msg_encode_share(dm_buf *out, const uint8_t *body, size_t body_len, const uint8_t *sig,
                         size_t sig_len)
{
    int rc;
    if (!out)
        return DM_EINVAL;
    if ((rc = check_bin(body, body_len, NET_SHARE_BODY_MAX)) ||
        (rc = check_bin(sig, sig_len, NET_MAX_SIG)))
        return rc;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 16 + body_len + sig_len))) {
        out->len = start;
        return rc;
    }
    return wr_end(&w, start,
                  pk_type(&w, 3, NET_MSG_SHARE) && pk_bin(&w, body, body_len) &&
                      pk_bin(&w, sig, sig_len));
}

int net_msg_encode_getpeers(dm_buf *out)
{
    int rc;
    if (!out)
        return DM_EINVAL;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 2))) {
        out->len = start;
        return rc;
    }
    return wr_end(&w, start, pk_type(&w, 1, NET_MSG_GETPEERS));
}

/** Appends a PEERS frame with `count` (<= NET_MAX_PEERS_MSG, else DM_ETOOBIG)
 *  addresses. Each host must be 1..NET_MAX_STR printable ASCII bytes and each
 *  port non-zero (DM_EINVAL). The node id may be all-zero (not known yet). */
int net_msg_encode_peers(dm_buf *out, const net_peer_addr *addr, size_t count)
{
    int rc;
    if (!out || (count && !addr))
        return DM_EINVAL;
    if (count > NET_MAX_PEERS_MSG)
        return DM_ETOOBIG;
    size_t need = 8;
    for (size_t i = 0; i < count; i++) {
        if (addr[i].host.n > NET_MAX_STR)
            return DM_ETOOBIG;
        if (addr[i].host.n == 0 || !addr[i].host.p || addr[i].port == 0 ||
            !printable(addr[i].host.p, addr[i].host.n))
            return DM_EINVAL;
        need += 48 + addr[i].host.n;
    }
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, need))) {
        out->len = start;
        return rc;
    }
    bool ok = pk_type(&w, 2, NET_MSG_PEERS) && msgpack_pack_array(&w.pk, count) == 0;
    for (size_t i = 0; ok && i < count; i++)
        ok = msgpack_pack_array(&w.pk, 3) == 0 && pk_bin(&w, addr[i].node_id, NET_ID_LEN) &&
             pk_str(&w, addr[i].host.p, addr[i].host.n) &&
             msgpack_pack_uint16(&w.pk, addr[i].port) == 0;
    return wr_end(&w, start, ok);
}

int net_msg_encode_keyreq(dm_buf *out, const uint8_t node_id[NET_ID_LEN])
{
    int rc;
    if (!out || !node_id)
        return DM_EINVAL;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 40))) {
        out->len = start;
        return rc;
    }
    return wr_end(&w, start, pk_type(&w, 2, NET_MSG_KEYREQ) && pk_bin(&w, node_id, NET_ID_LEN));
}

/** Appends a KEY frame; spki is 1..NET_MAX_SPKI bytes (DM_EINVAL / DM_ETOOBIG). */
int net_msg_encode_key(dm_buf *out, const uint8_t *spki, size_t spki_len)
{
    int rc;
    if (!out)
        return DM_EINVAL;
    if ((rc = check_bin(spki, spki_len, NET_MAX_SPKI)))
        return rc;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 8 + spki_len))) {
        out->len = start;
        return rc;
    }
    return wr_end(&w, start, pk_type(&w, 2, NET_MSG_KEY) && pk_bin(&w, spki, spki_len));
}

/** Appends an HWM frame with `count` (<= NET_MAX_HWM, else DM_ETOOBIG) entries. */
int net_msg_encode_hwm(dm_buf *out, const net_hwm_entry *e, size_t count)
{
    int rc;
    if (!out || (count && !e))
        return DM_EINVAL;
    if (count > NET_MAX_HWM)
        return DM_ETOOBIG;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 8 + count * 44))) {
        out->len = start;
        return rc;
    }
    bool ok = pk_type(&w, 2, NET_MSG_HWM) && msgpack_pack_array(&w.pk, count) == 0;
    for (size_t i = 0; ok && i < count; i++)
        ok = msgpack_pack_array(&w.pk, 2) == 0 && pk_bin(&w, e[i].origin, NET_ID_LEN) &&
             msgpack_pack_uint64(&w.pk, e[i].seq) == 0;
    return wr_end(&w, start, ok);
}

/** Appends a SYNCREQ frame; limit must be 1..NET_MAX_SYNC_PAGE (DM_EINVAL for 0,
 *  DM_ETOOBIG above). */
int net_msg_encode_syncreq(dm_buf *out, const uint8_t origin[NET_ID_LEN], uint64_t from_seq,
                           uint32_t limit)
{
    int rc;
    if (!out || !origin || limit == 0)
        return DM_EINVAL;
    if (limit > NET_MAX_SYNC_PAGE)
        return DM_ETOOBIG;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 64))) {
        out->len = start;
        return rc;
    }
    return wr_end(&w, start,
                  pk_type(&w, 4, NET_MSG_SYNCREQ) && pk_bin(&w, origin, NET_ID_LEN) &&
                      msgpack_pack_uint64(&w.pk, from_seq) == 0 &&
                      msgpack_pack_uint32(&w.pk, limit) == 0);
}

/*
 * SYNC_RESP: [12, origin, [[body, sig], ...], more]. begin writes the prefix,
 * the fixarray(4) header, the type, the origin and an array32 header whose
 * count end() patches (array32 is valid msgpack for any count, so the frame
 * never moves). The builder borrows `out`; nothing else may be appended to it
 * between begin and end. To abandon a page, set out->len = b->start.
 */

/** Starts a SYNC_RESP frame at the end of `out`. DM_EINVAL / DM_ENOMEM (out unchanged). */
int net_msg_syncresp_begin(net_syncresp_builder *b, dm_buf *out, const uint8_t origin[NET_ID_LEN])
{
    int rc;
    if (!b || !out || !origin)
        return DM_EINVAL;
    b->out = NULL;
    b->start = out->len;
    if ((rc = dm_buf_reserve(out, 4 + 1 + 1 + 2 + NET_ID_LEN + 5)))
        return rc;
    uint8_t *p = out->data + out->len;
    memset(p, 0, 4); /* length prefix, patched by end */
    p[4] = 0x94;     /* fixarray(4) */
    p[5] = NET_MSG_SYNCRESP;
    p[6] = 0xc4; /* bin8 */
    p[7] = NET_ID_LEN;
    memcpy(p + 8, origin, NET_ID_LEN);
    b->count_at = out->len + 8 + NET_ID_LEN;
    p[8 + NET_ID_LEN] = 0xdd; /* array32, count patched by end */
    memset(p + 9 + NET_ID_LEN, 0, 4);
    out->len += 13 + NET_ID_LEN;
    b->out = out;
    b->count = 0;
    return DM_OK;
}

/**
 * Adds one [body, sig] entry. DM_EINVAL for an empty body/sig or a builder not
 * begun, DM_ETOOBIG for a body over NET_SHARE_DATA_MAX+4096 or a sig over
 * NET_MAX_SIG, DM_ELIMIT when the page is full (NET_MAX_SYNC_PAGE entries, or
 * this entry would push the frame past NET_FRAME_MAX): end the page and put
 * the entry into the next one. On any error the page is as before the call.
 */
int net_msg_syncresp_add(net_syncresp_builder *b, const uint8_t *body, size_t body_len,
                         const uint8_t *sig, size_t sig_len)
{
    int rc;
    if (!b || !b->out)
        return DM_EINVAL;
    if ((rc = check_bin(body, body_len, NET_SHARE_BODY_MAX)) ||
        (rc = check_bin(sig, sig_len, NET_MAX_SIG)))
        return rc;
    if (b->count >= NET_MAX_SYNC_PAGE)
        return DM_ELIMIT;
    dm_buf *out = b->out;
    size_t entry = 1 + bin_size(body_len) + bin_size(sig_len);
    size_t payload = out->len - b->start - 4;
    if (payload + entry + 1 /* the closing bool */ > NET_FRAME_MAX)
        return DM_ELIMIT;
    wr w;
    w.b = out;
    w.rc = DM_OK;
    msgpack_packer_init(&w.pk, &w, wr_cb);
    size_t before = out->len;
    if ((rc = dm_buf_reserve(out, entry)))
        return rc;
    if (!(msgpack_pack_array(&w.pk, 2) == 0 && pk_bin(&w, body, body_len) &&
          pk_bin(&w, sig, sig_len))) {
        out->len = before;
        return w.rc ? w.rc : DM_ENOMEM;
    }
    b->count++;
    return DM_OK;
}

/** Closes the frame (appends `more`, patches the count and the length). The
 *  builder is finished afterwards (b->out = NULL). DM_EINVAL if not begun,
 *  DM_ENOMEM (the page stays open and end may be retried). */
int net_msg_syncresp_end(net_syncresp_builder *b, bool more)
{
    if (!b || !b->out)
        return DM_EINVAL;
    dm_buf *out = b->out;
    int rc = dm_buf_putc(out, more ? 0xc3 : 0xc2);
    if (rc)
        return rc;
    dm_put_u32be(out->data + b->count_at + 1, (uint32_t)b->count);
    dm_put_u32be(out->data + b->start, (uint32_t)(out->len - b->start - 4));
    b->out = NULL;
    return DM_OK;
}

/** Appends a BYE frame; reason may be NULL (empty), else printable ASCII of at
 *  most NET_MAX_STR bytes (DM_EINVAL / DM_ETOOBIG). */
int net_msg_encode_bye(dm_buf *out, uint32_t code, const char *reason)
{
    size_t len;
    int rc;
    if (!out)
        return DM_EINVAL;
    if ((rc = check_str(reason, true, &len)))
        return rc;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 16 + len))) {
        out->len = start;
        return rc;
    }
    return wr_end(&w, start,
                  pk_type(&w, 3, NET_MSG_BYE) && msgpack_pack_uint32(&w.pk, code) == 0 &&
                      pk_str(&w, (const uint8_t *)(reason ? reason : ""), len));
}

/** Appends an ANCHOR frame: body 1..NET_ANCHOR_BODY_MAX bytes, sig 1..NET_MAX_SIG bytes
 *  (DM_EINVAL / DM_ETOOBIG). The body is not inspected here (net_anchor_body_decode). */
int net_msg_encode_anchor(dm_buf *out, const uint8_t origin[NET_ID_LEN], const uint8_t *body,
                          size_t body_len, const uint8_t *sig, size_t sig_len)
{
    int rc;
    if (!out || !origin)
        return DM_EINVAL;
    if ((rc = check_bin(body, body_len, NET_ANCHOR_BODY_MAX)) ||
        (rc = check_bin(sig, sig_len, NET_MAX_SIG)))
        return rc;
    wr w;
    size_t start;
    if ((rc = wr_begin(&w, out, &start, 64 + body_len + sig_len))) {
        out->len = start;
        return rc;
    }
    return wr_end(&w, start,
                  pk_type(&w, 4, NET_MSG_ANCHOR) && pk_bin(&w, origin, NET_ID_LEN) &&
                      pk_bin(&w, body, body_len) && pk_bin(&w, sig, sig_len));
}

/* ------------------------------------------------------ anchor notice body */

#define ANCHOR_BODY_FIELDS 11

/* A bin of exactly `len` bytes, borrowed. */
static int rd_bin_ptr(rd *r, size_t len, const uint8_t **out)
{
    net_slice s;
    int rc = rd_bin(r, len, false, &s);
    if (rc == DM_ETOOBIG || (rc == DM_OK && s.n != len))
        return DM_EPARSE;
    if (rc)
        return rc;
    *out = s.p;
    return DM_OK;
}

static int dec_anchor_item(rd *r, net_anchor_item *it)
{
    TRY(rd_array_n(r, 4));
    TRY(rd_bin_ptr(r, 32, &it->leaf));
    if (r->p < r->end && *r->p == 0xc0) { /* nil: an event that names no share */
        r->p++;
        it->share_id = NULL;
    } else {
        TRY(rd_bin_ptr(r, 32, &it->share_id));
    }
    TRY(rd_uint(r, &it->audit_seq));
    TRY(rd_bin_ptr(r, 32, &it->entry_hash));
    rd_leave(r);
    return DM_OK;
}

int net_anchor_body_decode(const uint8_t *p, size_t n, net_anchor_body *b, net_anchor_item *items,
                           size_t cap)
{
    if (!b || (!p && n))
        return DM_EINVAL;
    if (n == 0)
        return DM_EPARSE;
    if (n > NET_ANCHOR_BODY_MAX)
        return DM_ETOOBIG;
    rd r = {p, p + n, 0, true};
    uint64_t format;
    size_t count;
    TRY(rd_array_n(&r, ANCHOR_BODY_FIELDS));
    TRY(rd_uint(&r, &format));
    if (format != NET_ANCHOR_FORMAT)
        return DM_EPARSE;
    TRY(rd_uint(&r, &b->chain_id));
    if (b->chain_id == 0)
        return DM_EPARSE;
    TRY(rd_bin_fixed(&r, 20, b->contract));
    TRY(rd_bin_fixed(&r, 32, b->tx_hash));
    TRY(rd_uint(&r, &b->block_number));
    TRY(rd_bin_fixed(&r, 32, b->block_hash));
    TRY(rd_uint(&r, &b->log_index));
    TRY(rd_bin_fixed(&r, 20, b->sender));
    TRY(rd_bin(&r, NET_MAX_SIG, false, &b->eth_binding));
    TRY(rd_bin_fixed(&r, 32, b->root));
    TRY(rd_array(&r, &count));
    if (count == 0)
        return DM_EPARSE;
    if (count > NET_ANCHOR_MAX_ITEMS)
        return DM_ETOOBIG;
    if (items && count > cap)
        return DM_ELIMIT;
    uint64_t prev = 0;
    for (size_t i = 0; i < count; i++) {
        net_anchor_item tmp, *it = items ? &items[i] : &tmp;
        TRY(dec_anchor_item(&r, it));
        if (i && it->audit_seq <= prev)
            return DM_EPARSE; /* batch order is audit order */
        prev = it->audit_seq;
    }
    rd_leave(&r);
    rd_leave(&r);
    if (r.p != r.end)
        return DM_EPARSE;
    b->count = count;
    return DM_OK;
}

int net_anchor_body_encode(dm_buf *out, const net_anchor_body *b, const net_anchor_item *items)
{
    if (!out || !b || !items || b->count == 0 || b->chain_id == 0 || !b->eth_binding.p ||
        b->eth_binding.n == 0)
        return DM_EINVAL;
    if (b->count > NET_ANCHOR_MAX_ITEMS || b->eth_binding.n > NET_MAX_SIG)
        return DM_ETOOBIG;
    for (size_t i = 0; i < b->count; i++)
        if (!items[i].leaf || !items[i].entry_hash ||
            (i && items[i].audit_seq <= items[i - 1].audit_seq))
            return DM_EINVAL;
    size_t start = out->len;
    int rc = dm_buf_reserve(out, 720 + b->count * 112);
    if (rc)
        return rc;
    wr w;
    w.b = out;
    w.rc = DM_OK;
    msgpack_packer_init(&w.pk, &w, wr_cb);
    msgpack_packer *pk = &w.pk;
    bool ok = msgpack_pack_array(pk, ANCHOR_BODY_FIELDS) == 0 &&
              msgpack_pack_uint8(pk, NET_ANCHOR_FORMAT) == 0 &&
              msgpack_pack_uint64(pk, b->chain_id) == 0 && pk_bin(&w, b->contract, 20) &&
              pk_bin(&w, b->tx_hash, 32) && msgpack_pack_uint64(pk, b->block_number) == 0 &&
              pk_bin(&w, b->block_hash, 32) && msgpack_pack_uint64(pk, b->log_index) == 0 &&
              pk_bin(&w, b->sender, 20) && pk_bin(&w, b->eth_binding.p, b->eth_binding.n) &&
              pk_bin(&w, b->root, 32) && msgpack_pack_array(pk, b->count) == 0;
    for (size_t i = 0; ok && i < b->count; i++) {
        const net_anchor_item *it = &items[i];
        ok = msgpack_pack_array(pk, 4) == 0 && pk_bin(&w, it->leaf, 32) &&
             (it->share_id ? pk_bin(&w, it->share_id, 32) : msgpack_pack_nil(pk) == 0) &&
             msgpack_pack_uint64(pk, it->audit_seq) == 0 && pk_bin(&w, it->entry_hash, 32);
    }
    if (!ok) {
        out->len = start;
        return w.rc ? w.rc : DM_ENOMEM;
    }
    return DM_OK;
}
