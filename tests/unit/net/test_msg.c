/*
 * Unit tests for the wire codec (net/net_msg.h): frame headers, every message
 * type's round trip at its boundaries, encoder argument checks, and the
 * decoder against hostile input (truncations, byte mutations, huge declared
 * counts, nesting bombs, trailing bytes, unknown types, oversize and
 * out-of-range fields) and against frames built with msgpack-c itself.
 *
 * With DM_NET_SEED_DIR=<dir> set, test_write_seeds also writes the fuzz seed
 * corpora (<dir>/frame/, <dir>/msg/) from the same sample frames; that is how
 * fuzz/corpus/frame and fuzz/corpus/msg were made.
 */
#include "dm_test.h"
#include "groups.h"

#include "dm_buf.h"
#include "dm_err.h"
#include "net_msg.h"

#include <malloc.h>
#include <msgpack.h>

/* net_msg is large (a full HWM page): keep the working copies off the stack. */
static net_msg g_a, g_b;

#define SHARE_BODY_MAX (NET_SHARE_DATA_MAX + 4096)

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + seed * 13 + (i >> 8));
}

static void fill_str(char *s, size_t n, char c)
{
    memset(s, c, n);
    s[n] = '\0';
}

static bool slice_eq(net_slice a, net_slice b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static bool slice_is(net_slice a, const void *p, size_t n)
{
    return a.n == n && (n == 0 || memcmp(a.p, p, n) == 0);
}

/* Field-by-field equality of two decoded messages (slices by content). */
static bool msg_eq_v(const net_msg *a, const net_msg *b, bool ignore_version)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case NET_MSG_HELLO:
        return (ignore_version || a->u.hello.version == b->u.hello.version) &&
               slice_eq(a->u.hello.network_id, b->u.hello.network_id) &&
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

static bool msg_eq(const net_msg *a, const net_msg *b)
{
    return msg_eq_v(a, b, false);
}

/* Re-encode a decoded message with its own encoder (HELLO's version is always
 * NET_PROTO_VERSION: the encoder has no parameter for it). */
static int encode_msg(dm_buf *out, const net_msg *m)
{
    char s1[NET_MAX_STR + 1], s2[NET_MAX_STR + 1];
    switch (m->type) {
    case NET_MSG_HELLO:
        memcpy(s1, m->u.hello.network_id.p, m->u.hello.network_id.n);
        s1[m->u.hello.network_id.n] = '\0';
        if (m->u.hello.agent.n)
            memcpy(s2, m->u.hello.agent.p, m->u.hello.agent.n);
        s2[m->u.hello.agent.n] = '\0';
        return net_msg_encode_hello(out, s1, m->u.hello.node_id, m->u.hello.spki.p,
                                    m->u.hello.spki.n, m->u.hello.nonce, m->u.hello.listen_port,
                                    s2);
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
        memcpy(s1, m->u.bye.reason.p ? (const char *)m->u.bye.reason.p : "", m->u.bye.reason.n);
        s1[m->u.bye.reason.n] = '\0';
        return net_msg_encode_bye(out, m->u.bye.code, s1);
    case NET_MSG_ANCHOR:
        return net_msg_encode_anchor(out, m->u.anchor.origin, m->u.anchor.body.p,
                                     m->u.anchor.body.n, m->u.anchor.sig.p, m->u.anchor.sig.n);
    }
    return DM_EINVAL;
}

/* Decode a whole frame from `f` (prefix included), checking the header. */
static int decode_frame(const dm_buf *f, net_msg *m)
{
    size_t len = 0;
    int rc = net_frame_header(f->data, f->len, &len);
    if (rc)
        return rc;
    assert_int_equal(len, f->len - 4);
    return net_msg_decode(f->data + 4, len, m);
}

/* Every slice of a decoded message lies inside [p, p+n). */
static void assert_slices_within(const net_msg *m, const uint8_t *p, size_t n)
{
    const net_slice *s[2 * NET_MAX_SYNC_PAGE + NET_MAX_PEERS_MSG + 4];
    size_t k = 0;
    switch (m->type) {
    case NET_MSG_HELLO:
        s[k++] = &m->u.hello.network_id;
        s[k++] = &m->u.hello.spki;
        s[k++] = &m->u.hello.agent;
        break;
    case NET_MSG_AUTH:
        s[k++] = &m->u.auth.sig;
        break;
    case NET_MSG_SHARE:
        s[k++] = &m->u.share.body;
        s[k++] = &m->u.share.sig;
        break;
    case NET_MSG_PEERS:
        for (size_t i = 0; i < m->u.peers.count; i++)
            s[k++] = &m->u.peers.addr[i].host;
        break;
    case NET_MSG_KEY:
        s[k++] = &m->u.key.spki;
        break;
    case NET_MSG_SYNCRESP:
        for (size_t i = 0; i < m->u.syncresp.count; i++) {
            s[k++] = &m->u.syncresp.body[i];
            s[k++] = &m->u.syncresp.sig[i];
        }
        break;
    case NET_MSG_BYE:
        s[k++] = &m->u.bye.reason;
        break;
    case NET_MSG_ANCHOR:
        s[k++] = &m->u.anchor.body;
        s[k++] = &m->u.anchor.sig;
        break;
    default:
        break;
    }
    for (size_t i = 0; i < k; i++) {
        if (s[i]->n == 0)
            continue;
        assert_true(s[i]->p >= p && s[i]->p + s[i]->n <= p + n);
    }
}

/* ------------------------------------------------------------ samples */

#define MAX_SAMPLES 32

typedef struct {
    const char *name;
    dm_buf f;
} sample;

static const char *const AGENT = "dmnode/0.1.0";

/* ---- anchor notice bodies ---- */

#define ANCHOR_N 3
static uint8_t g_leaf[ANCHOR_N][32], g_sid[ANCHOR_N][32], g_eh[ANCHOR_N][32], g_bind[256];

/* A valid body: 3 items, the second naming no share. */
static void anchor_sample(net_anchor_body *b, net_anchor_item *it)
{
    memset(b, 0, sizeof *b);
    b->chain_id = 31337;
    fill(b->contract, 20, 40);
    fill(b->tx_hash, 32, 41);
    b->block_number = 70000;
    fill(b->block_hash, 32, 42);
    b->log_index = 3;
    fill(b->sender, 20, 43);
    fill(g_bind, sizeof g_bind, 44);
    b->eth_binding = (net_slice){g_bind, sizeof g_bind};
    fill(b->root, 32, 45);
    b->count = ANCHOR_N;
    for (size_t i = 0; i < ANCHOR_N; i++) {
        fill(g_leaf[i], 32, 50 + (unsigned)i);
        fill(g_sid[i], 32, 60 + (unsigned)i);
        fill(g_eh[i], 32, 70 + (unsigned)i);
        it[i].leaf = g_leaf[i];
        it[i].share_id = i == 1 ? NULL : g_sid[i];
        it[i].audit_seq = i == 2 ? UINT64_MAX : 127 + i; /* fixint, uint8, uint64 */
        it[i].entry_hash = g_eh[i];
    }
}

/* A valid frame of every type, small enough to mutate byte by byte. */
static size_t make_samples(sample *s)
{
    size_t n = 0;
    uint8_t id[NET_ID_LEN], id2[NET_ID_LEN], nonce[NET_NONCE_LEN], spki[294], sig[256], body[300];
    fill(id, sizeof id, 1);
    fill(id2, sizeof id2, 2);
    fill(nonce, sizeof nonce, 3);
    fill(spki, sizeof spki, 4);
    fill(sig, sizeof sig, 5);
    fill(body, sizeof body, 6);
    memset(s, 0, sizeof *s * MAX_SAMPLES);

    s[n].name = "hello";
    assert_int_equal(
        net_msg_encode_hello(&s[n++].f, "testnet", id, spki, sizeof spki, nonce, 8000, AGENT),
        DM_OK);
    s[n].name = "hello_noport";
    assert_int_equal(net_msg_encode_hello(&s[n++].f, "n", id2, spki, 16, nonce, 0, NULL), DM_OK);
    s[n].name = "auth";
    assert_int_equal(net_msg_encode_auth(&s[n++].f, sig, sizeof sig), DM_OK);
    s[n].name = "ping";
    assert_int_equal(net_msg_encode_ping(&s[n++].f, NET_MSG_PING, 0x0123456789abcdefULL), DM_OK);
    s[n].name = "pong";
    assert_int_equal(net_msg_encode_ping(&s[n++].f, NET_MSG_PONG, 7), DM_OK);
    s[n].name = "share";
    assert_int_equal(net_msg_encode_share(&s[n++].f, body, sizeof body, sig, sizeof sig), DM_OK);
    s[n].name = "getpeers";
    assert_int_equal(net_msg_encode_getpeers(&s[n++].f), DM_OK);
    net_peer_addr pa[3] = {
        {.host = {(const uint8_t *)"127.0.0.1", 9}, .port = 8000},
        {.host = {(const uint8_t *)"::1", 3}, .port = 65535},
        {.host = {(const uint8_t *)"node-c.example", 14}, .port = 1},
    };
    memcpy(pa[0].node_id, id, NET_ID_LEN);
    memcpy(pa[1].node_id, id2, NET_ID_LEN);
    memset(pa[2].node_id, 0, NET_ID_LEN);
    s[n].name = "peers";
    assert_int_equal(net_msg_encode_peers(&s[n++].f, pa, 3), DM_OK);
    s[n].name = "peers_empty";
    assert_int_equal(net_msg_encode_peers(&s[n++].f, NULL, 0), DM_OK);
    s[n].name = "keyreq";
    assert_int_equal(net_msg_encode_keyreq(&s[n++].f, id), DM_OK);
    s[n].name = "key";
    assert_int_equal(net_msg_encode_key(&s[n++].f, spki, sizeof spki), DM_OK);
    net_hwm_entry he[3];
    memcpy(he[0].origin, id, NET_ID_LEN);
    he[0].seq = 1;
    memcpy(he[1].origin, id2, NET_ID_LEN);
    he[1].seq = 300;
    memcpy(he[2].origin, nonce, NET_ID_LEN);
    he[2].seq = UINT64_MAX;
    s[n].name = "hwm";
    assert_int_equal(net_msg_encode_hwm(&s[n++].f, he, 3), DM_OK);
    s[n].name = "syncreq";
    assert_int_equal(net_msg_encode_syncreq(&s[n++].f, id, 42, 128), DM_OK);
    net_syncresp_builder b;
    s[n].name = "syncresp";
    assert_int_equal(net_msg_syncresp_begin(&b, &s[n].f, id), DM_OK);
    assert_int_equal(net_msg_syncresp_add(&b, body, 40, sig, 32), DM_OK);
    assert_int_equal(net_msg_syncresp_add(&b, body + 1, 70, sig + 1, 20), DM_OK);
    assert_int_equal(net_msg_syncresp_end(&b, true), DM_OK);
    n++;
    s[n].name = "syncresp_empty";
    assert_int_equal(net_msg_syncresp_begin(&b, &s[n].f, id2), DM_OK);
    assert_int_equal(net_msg_syncresp_end(&b, false), DM_OK);
    n++;
    s[n].name = "bye";
    assert_int_equal(net_msg_encode_bye(&s[n++].f, 3, "bad signature"), DM_OK);
    s[n].name = "bye_empty";
    assert_int_equal(net_msg_encode_bye(&s[n++].f, 0, NULL), DM_OK);
    net_anchor_body ab;
    net_anchor_item ai[ANCHOR_N];
    anchor_sample(&ab, ai);
    dm_buf abody = DM_BUF_INIT;
    assert_int_equal(net_anchor_body_encode(&abody, &ab, ai), DM_OK);
    s[n].name = "anchor";
    assert_int_equal(net_msg_encode_anchor(&s[n++].f, id, abody.data, abody.len, sig, sizeof sig),
                     DM_OK);
    dm_buf_free(&abody);
    assert_true(n <= MAX_SAMPLES);
    return n;
}

static void free_samples(sample *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dm_buf_free(&s[i].f);
}

/* decode -> re-encode -> decode gives the same fields, and the second encoding
 * is byte-identical to the first re-encoding (the encoders are canonical). */
static void assert_roundtrip_stable(const net_msg *m)
{
    dm_buf e1 = DM_BUF_INIT, e2 = DM_BUF_INIT;
    assert_int_equal(encode_msg(&e1, m), DM_OK);
    assert_int_equal(decode_frame(&e1, &g_b), DM_OK);
    if (m->type == NET_MSG_HELLO)
        assert_int_equal(g_b.u.hello.version, NET_PROTO_VERSION);
    assert_true(msg_eq_v(m, &g_b, true));
    assert_int_equal(encode_msg(&e2, &g_b), DM_OK);
    assert_int_equal(e1.len, e2.len);
    assert_memory_equal(e1.data, e2.data, e1.len);
    dm_buf_free(&e1);
    dm_buf_free(&e2);
}

/* --------------------------------------------------------------- tests */

static void test_frame_header(void **state)
{
    (void)state;
    uint8_t b[8] = {0};
    size_t len = 12345;
    for (size_t n = 0; n < 4; n++)
        assert_int_equal(net_frame_header(b, n, &len), DM_EAGAIN);
    assert_int_equal(net_frame_header(b, 4, &len), DM_EPROTO); /* zero length */
    dm_put_u32be(b, 1);
    assert_int_equal(net_frame_header(b, 4, &len), DM_OK);
    assert_int_equal(len, 1);
    dm_put_u32be(b, (uint32_t)NET_FRAME_MAX);
    assert_int_equal(net_frame_header(b, 5, &len), DM_OK);
    assert_int_equal(len, NET_FRAME_MAX);
    len = 7;
    dm_put_u32be(b, (uint32_t)NET_FRAME_MAX + 1);
    assert_int_equal(net_frame_header(b, 8, &len), DM_ETOOBIG);
    dm_put_u32be(b, UINT32_MAX);
    assert_int_equal(net_frame_header(b, 4, &len), DM_ETOOBIG);
    assert_int_equal(len, 7); /* untouched on error */

    /* the decoder refuses a payload past the frame cap without looking at it */
    static const uint8_t ping[] = {0x92, 0x03, 0x00};
    assert_int_equal(net_msg_decode(ping, NET_FRAME_MAX + 1, &g_a), DM_ETOOBIG);
    assert_int_equal(net_msg_decode(NULL, 0, &g_a), DM_EPARSE);
    assert_int_equal(net_msg_decode(ping, sizeof ping, NULL), DM_EINVAL);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(net_msg_type_name(NET_MSG_HELLO), "HELLO");
    assert_string_equal(net_msg_type_name(NET_MSG_SHARE), "SHARE");
    assert_string_equal(net_msg_type_name(NET_MSG_SYNCRESP), "SYNCRESP");
    assert_string_equal(net_msg_type_name(NET_MSG_BYE), "BYE");
    assert_string_equal(net_msg_type_name(NET_MSG_ANCHOR), "ANCHOR");
    assert_string_equal(net_msg_type_name(0), "UNKNOWN");
    assert_string_equal(net_msg_type_name(15), "UNKNOWN");
    assert_string_equal(net_msg_type_name(-1), "UNKNOWN");
    for (int t = NET_MSG_HELLO; t <= NET_MSG_ANCHOR; t++)
        assert_string_not_equal(net_msg_type_name(t), "UNKNOWN");
}

static void test_roundtrip_samples(void **state)
{
    (void)state;
    sample s[MAX_SAMPLES];
    size_t n = make_samples(s);
    int seen[NET_MSG_ANCHOR + 1] = {0};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(decode_frame(&s[i].f, &g_a), DM_OK);
        seen[g_a.type]++;
        assert_slices_within(&g_a, s[i].f.data + 4, s[i].f.len - 4);
        assert_roundtrip_stable(&g_a);
    }
    for (int t = NET_MSG_HELLO; t <= NET_MSG_ANCHOR; t++)
        assert_true(seen[t] > 0);

    /* spot-check the decoded values of a few */
    assert_int_equal(decode_frame(&s[0].f, &g_a), DM_OK);
    assert_int_equal(g_a.type, NET_MSG_HELLO);
    assert_int_equal(g_a.u.hello.version, NET_PROTO_VERSION);
    assert_true(slice_is(g_a.u.hello.network_id, "testnet", 7));
    assert_int_equal(g_a.u.hello.listen_port, 8000);
    assert_true(slice_is(g_a.u.hello.agent, AGENT, strlen(AGENT)));
    assert_int_equal(g_a.u.hello.spki.n, 294);
    assert_int_equal(decode_frame(&s[1].f, &g_a), DM_OK);
    assert_int_equal(g_a.u.hello.listen_port, 0);
    assert_int_equal(g_a.u.hello.agent.n, 0);
    assert_int_equal(decode_frame(&s[3].f, &g_a), DM_OK);
    assert_int_equal(g_a.type, NET_MSG_PING);
    assert_true(g_a.u.ping.nonce == 0x0123456789abcdefULL);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s[i].name, "peers") == 0) {
            assert_int_equal(decode_frame(&s[i].f, &g_a), DM_OK);
            assert_int_equal(g_a.u.peers.count, 3);
            assert_true(slice_is(g_a.u.peers.addr[1].host, "::1", 3));
            assert_int_equal(g_a.u.peers.addr[1].port, 65535);
        } else if (strcmp(s[i].name, "hwm") == 0) {
            assert_int_equal(decode_frame(&s[i].f, &g_a), DM_OK);
            assert_int_equal(g_a.u.hwm.count, 3);
            assert_true(g_a.u.hwm.e[2].seq == UINT64_MAX);
        } else if (strcmp(s[i].name, "syncresp") == 0) {
            assert_int_equal(decode_frame(&s[i].f, &g_a), DM_OK);
            assert_int_equal(g_a.u.syncresp.count, 2);
            assert_true(g_a.u.syncresp.more);
            assert_int_equal(g_a.u.syncresp.body[1].n, 70);
            assert_int_equal(g_a.u.syncresp.sig[1].n, 20);
        } else if (strcmp(s[i].name, "bye") == 0) {
            assert_int_equal(decode_frame(&s[i].f, &g_a), DM_OK);
            assert_int_equal(g_a.u.bye.code, 3);
            assert_true(slice_is(g_a.u.bye.reason, "bad signature", 13));
        }
    }
    free_samples(s, n);
}

/* Encode, decode, compare with what went in; the frame is appended after
 * whatever `out` already held. */
static void test_roundtrip_boundaries(void **state)
{
    (void)state;
    dm_buf f = DM_BUF_INIT;
    uint8_t id[NET_ID_LEN], nonce[NET_NONCE_LEN];
    fill(id, sizeof id, 9);
    fill(nonce, sizeof nonce, 10);
    uint8_t *big = malloc(SHARE_BODY_MAX + 1);
    assert_non_null(big);
    fill(big, SHARE_BODY_MAX + 1, 11);
    char s256[NET_MAX_STR + 1], s1[2];
    fill_str(s256, NET_MAX_STR, '~');
    fill_str(s1, 1, ' ');

    /* HELLO: longest strings, largest spki, highest port */
    assert_int_equal(net_msg_encode_hello(&f, s256, id, big, NET_MAX_SPKI, nonce, 65535, s256),
                     DM_OK);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_true(slice_is(g_a.u.hello.network_id, s256, NET_MAX_STR));
    assert_true(slice_is(g_a.u.hello.agent, s256, NET_MAX_STR));
    assert_true(slice_is(g_a.u.hello.spki, big, NET_MAX_SPKI));
    assert_memory_equal(g_a.u.hello.node_id, id, NET_ID_LEN);
    assert_memory_equal(g_a.u.hello.nonce, nonce, NET_NONCE_LEN);
    assert_int_equal(g_a.u.hello.listen_port, 65535);
    /* shortest */
    dm_buf_reset(&f);
    assert_int_equal(net_msg_encode_hello(&f, s1, id, big, 1, nonce, 0, ""), DM_OK);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_true(slice_is(g_a.u.hello.network_id, " ", 1));
    assert_int_equal(g_a.u.hello.spki.n, 1);

    /* AUTH / KEY at their limits and at one byte */
    size_t lens[] = {1, 255, 256, NET_MAX_SIG};
    for (size_t i = 0; i < 4; i++) {
        dm_buf_reset(&f);
        assert_int_equal(net_msg_encode_auth(&f, big, lens[i]), DM_OK);
        assert_int_equal(decode_frame(&f, &g_a), DM_OK);
        assert_true(slice_is(g_a.u.auth.sig, big, lens[i]));
    }
    dm_buf_reset(&f);
    assert_int_equal(net_msg_encode_key(&f, big, NET_MAX_SPKI), DM_OK);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_true(slice_is(g_a.u.key.spki, big, NET_MAX_SPKI));

    /* PING / PONG nonces */
    uint64_t nonces[] = {
        0, 127, 128, 255, 256, 65535, 65536, UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof nonces / sizeof nonces[0]; i++) {
        dm_buf_reset(&f);
        assert_int_equal(net_msg_encode_ping(&f, i % 2 ? NET_MSG_PONG : NET_MSG_PING, nonces[i]),
                         DM_OK);
        assert_int_equal(decode_frame(&f, &g_a), DM_OK);
        assert_int_equal(g_a.type, i % 2 ? NET_MSG_PONG : NET_MSG_PING);
        assert_true(g_a.u.ping.nonce == nonces[i]);
    }

    /* SHARE with the largest body and signature */
    dm_buf_reset(&f);
    assert_int_equal(net_msg_encode_share(&f, big, SHARE_BODY_MAX, big + 1, NET_MAX_SIG), DM_OK);
    assert_true(f.len < NET_FRAME_MAX);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_true(slice_is(g_a.u.share.body, big, SHARE_BODY_MAX));
    assert_true(slice_is(g_a.u.share.sig, big + 1, NET_MAX_SIG));
    /* zero-copy: the slices point into the frame */
    assert_ptr_equal(g_a.u.share.body.p, f.data + 4 + 1 + 1 + 5);

    /* PEERS: a full message of longest hosts */
    static net_peer_addr pa[NET_MAX_PEERS_MSG];
    for (size_t i = 0; i < NET_MAX_PEERS_MSG; i++) {
        fill(pa[i].node_id, NET_ID_LEN, (unsigned)i);
        pa[i].host.p = (const uint8_t *)s256;
        pa[i].host.n = NET_MAX_STR - i;
        pa[i].port = (uint16_t)(1 + i * 1000);
    }
    dm_buf_reset(&f);
    assert_int_equal(net_msg_encode_peers(&f, pa, NET_MAX_PEERS_MSG), DM_OK);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_int_equal(g_a.u.peers.count, NET_MAX_PEERS_MSG);
    for (size_t i = 0; i < NET_MAX_PEERS_MSG; i++) {
        assert_memory_equal(g_a.u.peers.addr[i].node_id, pa[i].node_id, NET_ID_LEN);
        assert_true(slice_eq(g_a.u.peers.addr[i].host, pa[i].host));
        assert_int_equal(g_a.u.peers.addr[i].port, pa[i].port);
    }

    /* HWM: a full message */
    static net_hwm_entry he[NET_MAX_HWM];
    for (size_t i = 0; i < NET_MAX_HWM; i++) {
        fill(he[i].origin, NET_ID_LEN, (unsigned)i + 100);
        he[i].seq = i % 3 == 0 ? UINT64_MAX - i : i * 977;
    }
    dm_buf_reset(&f);
    assert_int_equal(net_msg_encode_hwm(&f, he, NET_MAX_HWM), DM_OK);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_int_equal(g_a.u.hwm.count, NET_MAX_HWM);
    for (size_t i = 0; i < NET_MAX_HWM; i++) {
        assert_memory_equal(g_a.u.hwm.e[i].origin, he[i].origin, NET_ID_LEN);
        assert_true(g_a.u.hwm.e[i].seq == he[i].seq);
    }
    dm_buf_reset(&f);
    assert_int_equal(net_msg_encode_hwm(&f, NULL, 0), DM_OK);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_int_equal(g_a.u.hwm.count, 0);

    /* SYNCREQ limits */
    uint32_t limits[] = {1, NET_MAX_SYNC_PAGE};
    for (size_t i = 0; i < 2; i++) {
        dm_buf_reset(&f);
        assert_int_equal(net_msg_encode_syncreq(&f, id, UINT64_MAX, limits[i]), DM_OK);
        assert_int_equal(decode_frame(&f, &g_a), DM_OK);
        assert_memory_equal(g_a.u.syncreq.origin, id, NET_ID_LEN);
        assert_true(g_a.u.syncreq.from_seq == UINT64_MAX);
        assert_int_equal(g_a.u.syncreq.limit, limits[i]);
    }

    /* ANCHOR: the largest body and signature */
    dm_buf_reset(&f);
    assert_int_equal(
        net_msg_encode_anchor(&f, id, big, NET_ANCHOR_BODY_MAX, big + 1, NET_MAX_SIG), DM_OK);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_int_equal(g_a.type, NET_MSG_ANCHOR);
    assert_memory_equal(g_a.u.anchor.origin, id, NET_ID_LEN);
    assert_true(slice_is(g_a.u.anchor.body, big, NET_ANCHOR_BODY_MAX));
    assert_true(slice_is(g_a.u.anchor.sig, big + 1, NET_MAX_SIG));

    /* BYE */
    dm_buf_reset(&f);
    assert_int_equal(net_msg_encode_bye(&f, UINT32_MAX, s256), DM_OK);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_int_equal(g_a.u.bye.code, UINT32_MAX);
    assert_true(slice_is(g_a.u.bye.reason, s256, NET_MAX_STR));

    /* KEYREQ, GETPEERS after existing content: the frame is appended */
    dm_buf_reset(&f);
    assert_int_equal(dm_buf_puts(&f, "xyz"), DM_OK);
    assert_int_equal(net_msg_encode_keyreq(&f, id), DM_OK);
    size_t len;
    assert_int_equal(net_frame_header(f.data + 3, f.len - 3, &len), DM_OK);
    assert_int_equal(len, f.len - 7);
    assert_int_equal(net_msg_decode(f.data + 7, len, &g_a), DM_OK);
    assert_int_equal(g_a.type, NET_MSG_KEYREQ);
    assert_memory_equal(g_a.u.keyreq.node_id, id, NET_ID_LEN);
    assert_memory_equal(f.data, "xyz", 3);
    size_t mark = f.len;
    assert_int_equal(net_msg_encode_getpeers(&f), DM_OK);
    assert_int_equal(f.len - mark, 4 + 2); /* [6] */
    assert_int_equal(net_msg_decode(f.data + mark + 4, 2, &g_a), DM_OK);
    assert_int_equal(g_a.type, NET_MSG_GETPEERS);

    free(big);
    dm_buf_free(&f);
}

static void test_syncresp_builder(void **state)
{
    (void)state;
    dm_buf f = DM_BUF_INIT;
    uint8_t origin[NET_ID_LEN], sig[NET_MAX_SIG];
    fill(origin, sizeof origin, 20);
    fill(sig, sizeof sig, 21);
    uint8_t *big = malloc(SHARE_BODY_MAX);
    assert_non_null(big);
    fill(big, SHARE_BODY_MAX, 22);
    net_syncresp_builder b;

    /* a page bounded by count: NET_MAX_SYNC_PAGE entries, then DM_ELIMIT */
    assert_int_equal(net_msg_syncresp_begin(&b, &f, origin), DM_OK);
    for (size_t i = 0; i < NET_MAX_SYNC_PAGE; i++)
        assert_int_equal(net_msg_syncresp_add(&b, big + i, 1 + i, sig, 1 + i % NET_MAX_SIG), DM_OK);
    size_t before = f.len;
    assert_int_equal(net_msg_syncresp_add(&b, big, 1, sig, 1), DM_ELIMIT);
    assert_int_equal(f.len, before);
    assert_int_equal(net_msg_syncresp_end(&b, true), DM_OK);
    assert_null(b.out);
    assert_int_equal(net_msg_syncresp_add(&b, big, 1, sig, 1), DM_EINVAL); /* ended */
    assert_int_equal(net_msg_syncresp_end(&b, true), DM_EINVAL);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_int_equal(g_a.type, NET_MSG_SYNCRESP);
    assert_memory_equal(g_a.u.syncresp.origin, origin, NET_ID_LEN);
    assert_int_equal(g_a.u.syncresp.count, NET_MAX_SYNC_PAGE);
    assert_true(g_a.u.syncresp.more);
    for (size_t i = 0; i < NET_MAX_SYNC_PAGE; i++) {
        assert_true(slice_is(g_a.u.syncresp.body[i], big + i, 1 + i));
        assert_true(slice_is(g_a.u.syncresp.sig[i], sig, 1 + i % NET_MAX_SIG));
    }
    assert_roundtrip_stable(&g_a);

    /* a page bounded by bytes: one maximal share fits, the second does not */
    dm_buf_reset(&f);
    assert_int_equal(net_msg_syncresp_begin(&b, &f, origin), DM_OK);
    assert_int_equal(net_msg_syncresp_add(&b, big, SHARE_BODY_MAX, sig, NET_MAX_SIG), DM_OK);
    before = f.len;
    assert_int_equal(net_msg_syncresp_add(&b, big, SHARE_BODY_MAX, sig, NET_MAX_SIG), DM_ELIMIT);
    assert_int_equal(f.len, before);
    /* smaller entries still fit, up to the frame cap */
    size_t added = 1;
    int rc;
    while ((rc = net_msg_syncresp_add(&b, big, 200000, sig, NET_MAX_SIG)) == DM_OK)
        added++;
    assert_int_equal(rc, DM_ELIMIT);
    assert_int_equal(net_msg_syncresp_end(&b, false), DM_OK);
    assert_true(f.len - 4 <= NET_FRAME_MAX);
    assert_true(f.len - 4 + 200000 + 600 > NET_FRAME_MAX); /* it really was full */
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_int_equal(g_a.u.syncresp.count, added);
    assert_false(g_a.u.syncresp.more);

    /* argument checks leave the page untouched */
    dm_buf_reset(&f);
    assert_int_equal(net_msg_syncresp_begin(&b, &f, origin), DM_OK);
    before = f.len;
    assert_int_equal(net_msg_syncresp_add(&b, big, 0, sig, 1), DM_EINVAL);
    assert_int_equal(net_msg_syncresp_add(&b, big, 1, sig, 0), DM_EINVAL);
    assert_int_equal(net_msg_syncresp_add(&b, NULL, 1, sig, 1), DM_EINVAL);
    assert_int_equal(net_msg_syncresp_add(&b, big, SHARE_BODY_MAX + 1, sig, 1), DM_ETOOBIG);
    assert_int_equal(net_msg_syncresp_add(&b, big, 1, sig, NET_MAX_SIG + 1), DM_ETOOBIG);
    assert_int_equal(f.len, before);
    assert_int_equal(net_msg_syncresp_end(&b, false), DM_OK);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK);
    assert_int_equal(g_a.u.syncresp.count, 0);
    assert_int_equal(net_msg_syncresp_begin(NULL, &f, origin), DM_EINVAL);
    assert_int_equal(net_msg_syncresp_begin(&b, &f, NULL), DM_EINVAL);

    /* the array32 header of a builder frame is exactly what a decoder must accept */
    assert_int_equal(f.data[4 + 3 + NET_ID_LEN], 0xdd);

    free(big);
    dm_buf_free(&f);
}

static void test_encoder_rejects(void **state)
{
    (void)state;
    dm_buf f = DM_BUF_INIT;
    assert_int_equal(dm_buf_puts(&f, "keep"), DM_OK);
    uint8_t id[NET_ID_LEN] = {1}, nonce[NET_NONCE_LEN] = {2};
    static uint8_t big[SHARE_BODY_MAX + 1];
    char s257[NET_MAX_STR + 2];
    fill_str(s257, NET_MAX_STR + 1, 'a');

    assert_int_equal(net_msg_encode_hello(&f, NULL, id, big, 10, nonce, 1, NULL), DM_EINVAL);
    assert_int_equal(net_msg_encode_hello(&f, "", id, big, 10, nonce, 1, NULL), DM_EINVAL);
    assert_int_equal(net_msg_encode_hello(&f, "a\nb", id, big, 10, nonce, 1, NULL), DM_EINVAL);
    assert_int_equal(net_msg_encode_hello(&f, "caf\xc3\xa9", id, big, 10, nonce, 1, NULL),
                     DM_EINVAL);
    assert_int_equal(net_msg_encode_hello(&f, "del\x7f", id, big, 10, nonce, 1, NULL), DM_EINVAL);
    assert_int_equal(net_msg_encode_hello(&f, s257, id, big, 10, nonce, 1, NULL), DM_ETOOBIG);
    assert_int_equal(net_msg_encode_hello(&f, "n", id, big, 10, nonce, 1, s257), DM_ETOOBIG);
    assert_int_equal(net_msg_encode_hello(&f, "n", id, big, 10, nonce, 1, "\t"), DM_EINVAL);
    assert_int_equal(net_msg_encode_hello(&f, "n", id, big, 0, nonce, 1, NULL), DM_EINVAL);
    assert_int_equal(net_msg_encode_hello(&f, "n", id, big, NET_MAX_SPKI + 1, nonce, 1, NULL),
                     DM_ETOOBIG);
    assert_int_equal(net_msg_encode_hello(&f, "n", NULL, big, 10, nonce, 1, NULL), DM_EINVAL);
    assert_int_equal(net_msg_encode_hello(&f, "n", id, big, 10, NULL, 1, NULL), DM_EINVAL);
    assert_int_equal(net_msg_encode_hello(NULL, "n", id, big, 10, nonce, 1, NULL), DM_EINVAL);
    assert_int_equal(net_msg_encode_auth(&f, big, 0), DM_EINVAL);
    assert_int_equal(net_msg_encode_auth(&f, NULL, 10), DM_EINVAL);
    assert_int_equal(net_msg_encode_auth(&f, big, NET_MAX_SIG + 1), DM_ETOOBIG);
    assert_int_equal(net_msg_encode_ping(&f, NET_MSG_SHARE, 1), DM_EINVAL);
    assert_int_equal(net_msg_encode_share(&f, big, 0, big, 1), DM_EINVAL);
    assert_int_equal(net_msg_encode_share(&f, big, 1, big, 0), DM_EINVAL);
    assert_int_equal(net_msg_encode_share(&f, big, SHARE_BODY_MAX + 1, big, 1), DM_ETOOBIG);
    assert_int_equal(net_msg_encode_share(&f, big, 1, big, NET_MAX_SIG + 1), DM_ETOOBIG);
    net_peer_addr pa[NET_MAX_PEERS_MSG + 1];
    memset(pa, 0, sizeof pa);
    for (size_t i = 0; i <= NET_MAX_PEERS_MSG; i++) {
        pa[i].host.p = (const uint8_t *)"h";
        pa[i].host.n = 1;
        pa[i].port = 1;
    }
    assert_int_equal(net_msg_encode_peers(&f, pa, NET_MAX_PEERS_MSG + 1), DM_ETOOBIG);
    assert_int_equal(net_msg_encode_peers(&f, NULL, 1), DM_EINVAL);
    pa[1].port = 0;
    assert_int_equal(net_msg_encode_peers(&f, pa, 2), DM_EINVAL);
    pa[1].port = 1;
    pa[1].host.n = 0;
    assert_int_equal(net_msg_encode_peers(&f, pa, 2), DM_EINVAL);
    pa[1].host.p = (const uint8_t *)"a b\r";
    pa[1].host.n = 4;
    assert_int_equal(net_msg_encode_peers(&f, pa, 2), DM_EINVAL);
    pa[1].host.p = (const uint8_t *)s257;
    pa[1].host.n = NET_MAX_STR + 1;
    assert_int_equal(net_msg_encode_peers(&f, pa, 2), DM_ETOOBIG);
    assert_int_equal(net_msg_encode_keyreq(&f, NULL), DM_EINVAL);
    assert_int_equal(net_msg_encode_key(&f, big, 0), DM_EINVAL);
    assert_int_equal(net_msg_encode_key(&f, big, NET_MAX_SPKI + 1), DM_ETOOBIG);
    static net_hwm_entry he[NET_MAX_HWM + 1];
    assert_int_equal(net_msg_encode_hwm(&f, he, NET_MAX_HWM + 1), DM_ETOOBIG);
    assert_int_equal(net_msg_encode_hwm(&f, NULL, 1), DM_EINVAL);
    assert_int_equal(net_msg_encode_syncreq(&f, id, 1, 0), DM_EINVAL);
    assert_int_equal(net_msg_encode_syncreq(&f, id, 1, NET_MAX_SYNC_PAGE + 1), DM_ETOOBIG);
    assert_int_equal(net_msg_encode_syncreq(&f, NULL, 1, 1), DM_EINVAL);
    assert_int_equal(net_msg_encode_bye(&f, 1, s257), DM_ETOOBIG);
    assert_int_equal(net_msg_encode_bye(&f, 1, "\x01"), DM_EINVAL);
    assert_int_equal(net_msg_encode_getpeers(NULL), DM_EINVAL);
    assert_int_equal(net_msg_encode_anchor(&f, NULL, big, 1, big, 1), DM_EINVAL);
    assert_int_equal(net_msg_encode_anchor(&f, id, big, 0, big, 1), DM_EINVAL);
    assert_int_equal(net_msg_encode_anchor(&f, id, big, 1, NULL, 1), DM_EINVAL);
    assert_int_equal(net_msg_encode_anchor(&f, id, big, NET_ANCHOR_BODY_MAX + 1, big, 1),
                     DM_ETOOBIG);
    assert_int_equal(net_msg_encode_anchor(&f, id, big, 1, big, NET_MAX_SIG + 1), DM_ETOOBIG);

    /* nothing was appended by any failed call */
    assert_int_equal(f.len, 4);
    assert_memory_equal(f.data, "keep", 4);
    dm_buf_free(&f);
}

/* Every strict prefix of every valid payload fails cleanly. */
static void test_truncations(void **state)
{
    (void)state;
    sample s[MAX_SAMPLES];
    size_t n = make_samples(s);
    size_t len;
    for (size_t i = 0; i < n; i++) {
        const dm_buf *f = &s[i].f;
        for (size_t k = 0; k < 4; k++)
            assert_int_equal(net_frame_header(f->data, k, &len), DM_EAGAIN);
        for (size_t k = 0; k < f->len - 4; k++) {
            int rc = net_msg_decode(f->data + 4, k, &g_a);
            if (rc != DM_EPARSE)
                fail_msg("%s truncated to %zu: %s", s[i].name, k, dm_err_name(rc));
        }
    }
    free_samples(s, n);

    /* large frames: every truncation near the ends, a stride in between */
    dm_buf f = DM_BUF_INIT;
    uint8_t *big = calloc(1, SHARE_BODY_MAX);
    assert_non_null(big);
    static net_hwm_entry he[NET_MAX_HWM];
    for (size_t i = 0; i < NET_MAX_HWM; i++)
        he[i].seq = i * 100003;
    for (int which = 0; which < 2; which++) {
        dm_buf_reset(&f);
        if (which == 0)
            assert_int_equal(net_msg_encode_share(&f, big, SHARE_BODY_MAX, big, NET_MAX_SIG),
                             DM_OK);
        else
            assert_int_equal(net_msg_encode_hwm(&f, he, NET_MAX_HWM), DM_OK);
        size_t pn = f.len - 4;
        for (size_t k = 0; k < pn; k += (k < 600 || k > pn - 600) ? 1 : 4099)
            assert_int_equal(net_msg_decode(f.data + 4, k, &g_a), DM_EPARSE);
        assert_int_equal(net_msg_decode(f.data + 4, pn, &g_a), DM_OK);
    }
    free(big);
    dm_buf_free(&f);
}

/* Every single-byte change of every small valid payload either decodes (and
 * then round-trips) or fails with a decoder error; ASan watches the reads. */
static void test_mutations(void **state)
{
    (void)state;
    sample s[MAX_SAMPLES];
    size_t n = make_samples(s);
    size_t ok = 0, bad = 0;
    uint8_t *p = malloc(4096);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        size_t pn = s[i].f.len - 4;
        assert_true(pn <= 4096);
        for (size_t pos = 0; pos < pn; pos++) {
            for (unsigned v = 0; v < 256; v++) {
                memcpy(p, s[i].f.data + 4, pn);
                if (p[pos] == v)
                    continue;
                p[pos] = (uint8_t)v;
                int rc = net_msg_decode(p, pn, &g_a);
                if (rc == DM_OK) {
                    ok++;
                    assert_slices_within(&g_a, p, pn);
                    assert_roundtrip_stable(&g_a);
                } else {
                    bad++;
                    if (rc != DM_EPARSE && rc != DM_EPROTO && rc != DM_ETOOBIG)
                        fail_msg("%s[%zu]=%u: %s", s[i].name, pos, v, dm_err_name(rc));
                }
            }
        }
    }
    assert_true(ok > 0 && bad > 0);
    free(p);
    free_samples(s, n);
}

/* Hand-made hostile payloads and the code each must give. */
typedef struct {
    const char *what;
    const uint8_t *p;
    size_t n;
    int want;
} hostile;

#define H(what, want, ...)                                                                         \
    {                                                                                              \
        what, (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}), want         \
    }
#define ID32                                                                                       \
    0xc4, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, \
        24, 25, 26, 27, 28, 29, 30, 31, 32

static const hostile HOSTILE[] = {
    /* not a message at all */
    H("nil", DM_EPARSE, 0xc0),
    H("bare int", DM_EPARSE, 0x05),
    H("map", DM_EPARSE, 0x81, 0x01, 0x02),
    H("empty array", DM_EPARSE, 0x90),
    H("nil type", DM_EPARSE, 0x91, 0xc0),
    H("str type", DM_EPARSE, 0x91, 0xa1, 0x33),
    H("negative type", DM_EPARSE, 0x91, 0xff),
    H("int8 negative type", DM_EPARSE, 0x91, 0xd0, 0x80),
    H("float type", DM_EPARSE, 0x91, 0xca, 0x40, 0x40, 0x00, 0x00),
    /* unknown types */
    H("type 0", DM_EPROTO, 0x91, 0x00),
    H("type 15", DM_EPROTO, 0x91, 0x0f),
    H("type 127", DM_EPROTO, 0x91, 0x7f),
    H("type 255 as u8", DM_EPROTO, 0x91, 0xcc, 0xff),
    H("type 2^64-1", DM_EPROTO, 0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
    H("type 2^32+3", DM_EPROTO, 0x91, 0xcf, 0, 0, 0, 1, 0, 0, 0, 3),
    H("unknown type with fields", DM_EPROTO, 0x93, 0x0f, 0xa1, 0x78, 0x01),
    /* known types in the wrong shape */
    H("ping without nonce", DM_EPARSE, 0x91, 0x03),
    H("ping with extra", DM_EPARSE, 0x93, 0x03, 0x01, 0x02),
    H("getpeers with arg", DM_EPARSE, 0x92, 0x06, 0x00),
    H("negative nonce", DM_EPARSE, 0x92, 0x03, 0xff),
    H("int64 negative nonce", DM_EPARSE, 0x92, 0x03, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0),
    H("float nonce", DM_EPARSE, 0x92, 0x03, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0),
    H("nil nonce", DM_EPARSE, 0x92, 0x03, 0xc0),
    H("str sig", DM_EPARSE, 0x92, 0x02, 0xa1, 0x41),
    H("empty sig", DM_EPARSE, 0x92, 0x02, 0xc4, 0x00),
    H("empty share body", DM_EPARSE, 0x93, 0x05, 0xc4, 0x00, 0xc4, 0x01, 0x00),
    H("keyreq id 31", DM_EPARSE, 0x92, 0x08, 0xc4, 0x1f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
      14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31),
    H("keyreq id 33", DM_EPARSE, 0x92, 0x08, 0xc4, 0x21, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
      14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33),
    H("syncreq limit 0", DM_EPARSE, 0x94, 0x0b, ID32, 0x01, 0x00),
    H("syncreq limit 257", DM_ETOOBIG, 0x94, 0x0b, ID32, 0x01, 0xcd, 0x01, 0x01),
    H("syncreq limit 2^32", DM_ETOOBIG, 0x94, 0x0b, ID32, 0x01, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0),
    H("bye code 2^32", DM_EPARSE, 0x93, 0x0d, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0xa0),
    H("bye reason control", DM_EPARSE, 0x93, 0x0d, 0x01, 0xa2, 0x41, 0x0a),
    H("bye reason bin", DM_EPARSE, 0x93, 0x0d, 0x01, 0xc4, 0x01, 0x41),
    H("peers entry short", DM_EPARSE, 0x92, 0x07, 0x91, 0x92, ID32, 0xa1, 0x68),
    H("peers port 0", DM_EPARSE, 0x92, 0x07, 0x91, 0x93, ID32, 0xa1, 0x68, 0x00),
    H("peers port 65536", DM_EPARSE, 0x92, 0x07, 0x91, 0x93, ID32, 0xa1, 0x68, 0xce, 0, 1, 0, 0),
    H("peers empty host", DM_EPARSE, 0x92, 0x07, 0x91, 0x93, ID32, 0xa0, 0x01),
    H("peers host utf8", DM_EPARSE, 0x92, 0x07, 0x91, 0x93, ID32, 0xa2, 0xc3, 0xa9, 0x01),
    H("hwm seq negative", DM_EPARSE, 0x92, 0x0a, 0x91, 0x92, ID32, 0xe0),
    H("syncresp more not bool", DM_EPARSE, 0x94, 0x0c, ID32, 0x90, 0x01),
    H("syncresp entry 3 elems", DM_EPARSE, 0x94, 0x0c, ID32, 0x91, 0x93, 0xc4, 0x01, 0x00, 0xc4,
      0x01, 0x00, 0xc4, 0x01, 0x00, 0xc2),
    /* declared counts and lengths far beyond the bytes sent */
    H("top array32 2^32-1", DM_EPARSE, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x07),
    H("top array16 65535", DM_EPARSE, 0xdc, 0xff, 0xff, 0x07),
    H("peers array32 2^32-1", DM_EPARSE, 0x92, 0x07, 0xdd, 0xff, 0xff, 0xff, 0xff),
    H("hwm array32 2^32-1", DM_EPARSE, 0x92, 0x0a, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x92),
    H("syncresp array32 2^32-1", DM_EPARSE, 0x94, 0x0c, ID32, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc2),
    H("key bin32 4GiB", DM_EPARSE, 0x92, 0x09, 0xc6, 0xff, 0xff, 0xff, 0xff),
    H("share bin32 4GiB", DM_EPARSE, 0x93, 0x05, 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00),
    H("auth bin16 64KiB", DM_EPARSE, 0x92, 0x02, 0xc5, 0xff, 0xff, 0x00, 0x00),
    H("bye str32 4GiB", DM_EPARSE, 0x93, 0x0d, 0x00, 0xdb, 0xff, 0xff, 0xff, 0xff),
    H("hello str32 4GiB", DM_EPARSE, 0x98, 0x01, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 0x41),
    H("bin8 past end", DM_EPARSE, 0x92, 0x02, 0xc4, 0x05, 0x01, 0x02),
    H("u64 cut", DM_EPARSE, 0x92, 0x03, 0xcf, 0x01, 0x02),
    /* trailing bytes */
    H("trailing nil", DM_EPARSE, 0x92, 0x03, 0x01, 0xc0),
    H("trailing frame", DM_EPARSE, 0x92, 0x03, 0x01, 0x92, 0x04, 0x01),
    H("getpeers trailing", DM_EPARSE, 0x91, 0x06, 0x00),
    /* ANCHOR frames (the body is checked by net_anchor_body_decode, not here) */
    H("anchor without sig", DM_EPARSE, 0x93, 0x0e, ID32, 0xc4, 0x01, 0x90),
    H("anchor origin 31", DM_EPARSE, 0x94, 0x0e, 0xc4, 0x1f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
      13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 0xc4, 0x01, 0x90,
      0xc4, 0x01, 0x00),
    H("anchor empty body", DM_EPARSE, 0x94, 0x0e, ID32, 0xc4, 0x00, 0xc4, 0x01, 0x00),
    H("anchor empty sig", DM_EPARSE, 0x94, 0x0e, ID32, 0xc4, 0x01, 0x90, 0xc4, 0x00),
    H("anchor body str", DM_EPARSE, 0x94, 0x0e, ID32, 0xa1, 0x41, 0xc4, 0x01, 0x00),
    H("anchor body bin32 4GiB", DM_EPARSE, 0x94, 0x0e, ID32, 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00),
    H("anchor extra field", DM_EPARSE, 0x95, 0x0e, ID32, 0xc4, 0x01, 0x90, 0xc4, 0x01, 0x00, 0x00),
};

static void test_hostile(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof HOSTILE / sizeof HOSTILE[0]; i++) {
        int rc = net_msg_decode(HOSTILE[i].p, HOSTILE[i].n, &g_a);
        if (rc != HOSTILE[i].want)
            fail_msg("%s: got %s, want %s", HOSTILE[i].what, dm_err_name(rc),
                     dm_err_name(HOSTILE[i].want));
    }
}

/* Trailing bytes after each valid sample are refused. */
static void test_trailing(void **state)
{
    (void)state;
    sample s[MAX_SAMPLES];
    size_t n = make_samples(s);
    for (size_t i = 0; i < n; i++) {
        dm_buf p = DM_BUF_INIT;
        assert_int_equal(dm_buf_append(&p, s[i].f.data + 4, s[i].f.len - 4), DM_OK);
        assert_int_equal(dm_buf_putc(&p, 0x00), DM_OK);
        assert_int_equal(net_msg_decode(p.data, p.len, &g_a), DM_EPARSE);
        /* two messages in one payload */
        p.len--;
        assert_int_equal(dm_buf_append(&p, s[i].f.data + 4, s[i].f.len - 4), DM_OK);
        assert_int_equal(net_msg_decode(p.data, p.len, &g_a), DM_EPARSE);
        dm_buf_free(&p);
    }
    free_samples(s, n);
}

static void test_nesting_bomb(void **state)
{
    (void)state;
    size_t depth = 100000;
    uint8_t *p = malloc(depth + 8);
    assert_non_null(p);
    /* [[[[...]]]] as the whole message */
    memset(p, 0x91, depth);
    p[depth] = 0x90;
    assert_int_equal(net_msg_decode(p, depth + 1, &g_a), DM_EPARSE);
    /* [7, [[[[...]]]]] and [10, ...]: nested where a list of entries goes */
    uint8_t types[] = {NET_MSG_PEERS, NET_MSG_HWM};
    for (size_t t = 0; t < 2; t++) {
        p[0] = 0x92;
        p[1] = types[t];
        memset(p + 2, 0x91, depth);
        p[depth + 2] = 0x90;
        assert_int_equal(net_msg_decode(p, depth + 3, &g_a), DM_EPARSE);
        /* array32 headers all the way down */
        size_t k = 2;
        while (k + 5 < depth) {
            p[k] = 0xdd;
            dm_put_u32be(p + k + 1, 1);
            k += 5;
        }
        p[k++] = 0x90;
        assert_int_equal(net_msg_decode(p, k, &g_a), DM_EPARSE);
    }
    /* depth is bounded even inside a list whose entries look right at first */
    static const uint8_t deep_entry[] = {0x92, 0x0a, 0x91, 0x92, 0x91, 0x91, 0x91, 0x91,
                                         0x91, 0x91, 0x91, 0x91, 0x91, 0x90, 0x00};
    assert_int_equal(net_msg_decode(deep_entry, sizeof deep_entry, &g_a), DM_EPARSE);
    free(p);
}

/* ---- frames built with msgpack-c's own packer (the interop direction a
 * foreign implementation would take) ---- */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mp;

static void mp_init(mp *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static int mp_decode(mp *m, net_msg *out)
{
    return net_msg_decode((const uint8_t *)m->sb.data, m->sb.size, out);
}

static void mp_reset(mp *m)
{
    msgpack_sbuffer_clear(&m->sb);
}

/* Raw msgpack headers that msgpack_pack_* would never choose for small values. */
static void raw(mp *m, const uint8_t *p, size_t n)
{
    assert_int_equal(msgpack_sbuffer_write(&m->sb, (const char *)p, n), 0);
}

static void test_interop_msgpack_c(void **state)
{
    (void)state;
    uint8_t id[NET_ID_LEN], nonce[NET_NONCE_LEN], spki[270];
    fill(id, sizeof id, 30);
    fill(nonce, sizeof nonce, 31);
    fill(spki, sizeof spki, 32);
    mp m;
    mp_init(&m);

    /* a HELLO field by field, in msgpack-c's shortest encodings */
    msgpack_pack_array(&m.pk, 8);
    msgpack_pack_int(&m.pk, NET_MSG_HELLO);
    msgpack_pack_unsigned_int(&m.pk, NET_PROTO_VERSION);
    msgpack_pack_str_with_body(&m.pk, "mainnet", 7);
    msgpack_pack_bin_with_body(&m.pk, id, sizeof id);
    msgpack_pack_bin_with_body(&m.pk, spki, sizeof spki);
    msgpack_pack_bin_with_body(&m.pk, nonce, sizeof nonce);
    msgpack_pack_unsigned_short(&m.pk, 8000);
    msgpack_pack_str_with_body(&m.pk, "other-impl/2", 12);
    assert_int_equal(mp_decode(&m, &g_a), DM_OK);
    assert_int_equal(g_a.type, NET_MSG_HELLO);
    assert_int_equal(g_a.u.hello.version, NET_PROTO_VERSION);
    assert_true(slice_is(g_a.u.hello.network_id, "mainnet", 7));
    assert_memory_equal(g_a.u.hello.node_id, id, NET_ID_LEN);
    assert_true(slice_is(g_a.u.hello.spki, spki, sizeof spki));
    assert_memory_equal(g_a.u.hello.nonce, nonce, NET_NONCE_LEN);
    assert_int_equal(g_a.u.hello.listen_port, 8000);
    assert_true(slice_is(g_a.u.hello.agent, "other-impl/2", 12));
    /* and our encoder produces the very same bytes */
    dm_buf f = DM_BUF_INIT;
    assert_int_equal(
        net_msg_encode_hello(&f, "mainnet", id, spki, sizeof spki, nonce, 8000, "other-impl/2"),
        DM_OK);
    assert_int_equal(f.len - 4, m.sb.size);
    assert_memory_equal(f.data + 4, m.sb.data, m.sb.size);

    /* the same HELLO in the longest encodings msgpack allows: still the same fields */
    mp_reset(&m);
    raw(&m, (const uint8_t[]){0xdd, 0, 0, 0, 8}, 5);             /* array32 */
    raw(&m, (const uint8_t[]){0xcf, 0, 0, 0, 0, 0, 0, 0, 1}, 9); /* type u64 */
    raw(&m, (const uint8_t[]){0xd3, 0, 0, 0, 0, 0, 0, 0, NET_PROTO_VERSION}, 9); /* int64 */
    raw(&m, (const uint8_t[]){0xdb, 0, 0, 0, 7}, 5);             /* str32 */
    raw(&m, (const uint8_t *)"mainnet", 7);
    raw(&m, (const uint8_t[]){0xc6, 0, 0, 0, 32}, 5); /* bin32 */
    raw(&m, id, sizeof id);
    raw(&m, (const uint8_t[]){0xc5, 0x01, 0x0e}, 3); /* bin16 */
    raw(&m, spki, sizeof spki);
    raw(&m, (const uint8_t[]){0xc4, 32}, 2);
    raw(&m, nonce, sizeof nonce);
    raw(&m, (const uint8_t[]){0xd1, 0x1f, 0x40}, 3); /* port int16 */
    raw(&m, (const uint8_t[]){0xd9, 12}, 2);         /* str8 */
    raw(&m, (const uint8_t *)"other-impl/2", 12);
    assert_int_equal(mp_decode(&m, &g_b), DM_OK);
    assert_int_equal(decode_frame(&f, &g_a), DM_OK); /* g_a's slices pointed into m.sb */
    assert_true(msg_eq(&g_a, &g_b));

    /* out-of-range numbers in an otherwise valid HELLO */
    struct {
        uint64_t version, port;
        int want;
    } range[] = {
        {UINT32_MAX, 65535, DM_OK},
        {(uint64_t)UINT32_MAX + 1, 1, DM_EPARSE},
        {1, 65536, DM_EPARSE},
        {1, UINT64_MAX, DM_EPARSE},
    };
    for (size_t i = 0; i < sizeof range / sizeof range[0]; i++) {
        mp_reset(&m);
        msgpack_pack_array(&m.pk, 8);
        msgpack_pack_uint8(&m.pk, NET_MSG_HELLO);
        msgpack_pack_uint64(&m.pk, range[i].version);
        msgpack_pack_str_with_body(&m.pk, "n", 1);
        msgpack_pack_bin_with_body(&m.pk, id, sizeof id);
        msgpack_pack_bin_with_body(&m.pk, spki, 10);
        msgpack_pack_bin_with_body(&m.pk, nonce, sizeof nonce);
        msgpack_pack_uint64(&m.pk, range[i].port);
        msgpack_pack_str_with_body(&m.pk, "", 0);
        assert_int_equal(mp_decode(&m, &g_a), range[i].want);
    }
    /* a negative port, as msgpack_pack_int would write it */
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 8);
    msgpack_pack_uint8(&m.pk, NET_MSG_HELLO);
    msgpack_pack_uint8(&m.pk, 1);
    msgpack_pack_str_with_body(&m.pk, "n", 1);
    msgpack_pack_bin_with_body(&m.pk, id, sizeof id);
    msgpack_pack_bin_with_body(&m.pk, spki, 10);
    msgpack_pack_bin_with_body(&m.pk, nonce, sizeof nonce);
    msgpack_pack_int(&m.pk, -8000);
    msgpack_pack_str_with_body(&m.pk, "", 0);
    assert_int_equal(mp_decode(&m, &g_a), DM_EPARSE);

    /* a SYNCRESP whose share list msgpack-c packs as a fixarray (ours uses array32) */
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 4);
    msgpack_pack_uint8(&m.pk, NET_MSG_SYNCRESP);
    msgpack_pack_bin_with_body(&m.pk, id, sizeof id);
    msgpack_pack_array(&m.pk, 2);
    for (int i = 0; i < 2; i++) {
        msgpack_pack_array(&m.pk, 2);
        msgpack_pack_bin_with_body(&m.pk, spki + i, 100);
        msgpack_pack_bin_with_body(&m.pk, nonce, 16);
    }
    msgpack_pack_true(&m.pk);
    assert_int_equal(mp_decode(&m, &g_a), DM_OK);
    dm_buf_reset(&f);
    net_syncresp_builder b;
    assert_int_equal(net_msg_syncresp_begin(&b, &f, id), DM_OK);
    assert_int_equal(net_msg_syncresp_add(&b, spki, 100, nonce, 16), DM_OK);
    assert_int_equal(net_msg_syncresp_add(&b, spki + 1, 100, nonce, 16), DM_OK);
    assert_int_equal(net_msg_syncresp_end(&b, true), DM_OK);
    assert_int_equal(decode_frame(&f, &g_b), DM_OK);
    assert_true(msg_eq(&g_a, &g_b));
    assert_int_equal(f.len - 4, m.sb.size + 4); /* array32 vs fixarray: 4 bytes more */

    /* oversize fields built with msgpack-c: DM_ETOOBIG (the bytes are all there) */
    uint8_t *big = calloc(1, SHARE_BODY_MAX + 1);
    assert_non_null(big);
    char s257[NET_MAX_STR + 2];
    fill_str(s257, NET_MAX_STR + 1, 'x');
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_uint8(&m.pk, NET_MSG_AUTH);
    msgpack_pack_bin_with_body(&m.pk, big, NET_MAX_SIG + 1);
    assert_int_equal(mp_decode(&m, &g_a), DM_ETOOBIG);
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_uint8(&m.pk, NET_MSG_KEY);
    msgpack_pack_bin_with_body(&m.pk, big, NET_MAX_SPKI + 1);
    assert_int_equal(mp_decode(&m, &g_a), DM_ETOOBIG);
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_uint8(&m.pk, NET_MSG_SHARE);
    msgpack_pack_bin_with_body(&m.pk, big, SHARE_BODY_MAX + 1);
    msgpack_pack_bin_with_body(&m.pk, big, 10);
    assert_int_equal(mp_decode(&m, &g_a), DM_ETOOBIG);
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_uint8(&m.pk, NET_MSG_BYE);
    msgpack_pack_uint8(&m.pk, 1);
    msgpack_pack_str_with_body(&m.pk, s257, NET_MAX_STR + 1);
    assert_int_equal(mp_decode(&m, &g_a), DM_ETOOBIG);
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 8);
    msgpack_pack_uint8(&m.pk, NET_MSG_HELLO);
    msgpack_pack_uint8(&m.pk, 1);
    msgpack_pack_str_with_body(&m.pk, s257, NET_MAX_STR + 1);
    msgpack_pack_bin_with_body(&m.pk, id, sizeof id);
    msgpack_pack_bin_with_body(&m.pk, spki, 10);
    msgpack_pack_bin_with_body(&m.pk, nonce, sizeof nonce);
    msgpack_pack_uint8(&m.pk, 1);
    msgpack_pack_str_with_body(&m.pk, "", 0);
    assert_int_equal(mp_decode(&m, &g_a), DM_ETOOBIG);
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 8);
    msgpack_pack_uint8(&m.pk, NET_MSG_HELLO);
    msgpack_pack_uint8(&m.pk, 1);
    msgpack_pack_str_with_body(&m.pk, "n", 1);
    msgpack_pack_bin_with_body(&m.pk, id, sizeof id);
    msgpack_pack_bin_with_body(&m.pk, big, NET_MAX_SPKI + 1);
    msgpack_pack_bin_with_body(&m.pk, nonce, sizeof nonce);
    msgpack_pack_uint8(&m.pk, 1);
    msgpack_pack_str_with_body(&m.pk, "", 0);
    assert_int_equal(mp_decode(&m, &g_a), DM_ETOOBIG);
    /* lists one entry over their limits */
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_uint8(&m.pk, NET_MSG_PEERS);
    msgpack_pack_array(&m.pk, NET_MAX_PEERS_MSG + 1);
    for (size_t i = 0; i <= NET_MAX_PEERS_MSG; i++) {
        msgpack_pack_array(&m.pk, 3);
        msgpack_pack_bin_with_body(&m.pk, id, sizeof id);
        msgpack_pack_str_with_body(&m.pk, "h", 1);
        msgpack_pack_uint16(&m.pk, 1);
    }
    assert_int_equal(mp_decode(&m, &g_a), DM_ETOOBIG);
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_uint8(&m.pk, NET_MSG_HWM);
    msgpack_pack_array(&m.pk, NET_MAX_HWM + 1);
    for (size_t i = 0; i <= NET_MAX_HWM; i++) {
        msgpack_pack_array(&m.pk, 2);
        msgpack_pack_bin_with_body(&m.pk, id, sizeof id);
        msgpack_pack_uint64(&m.pk, i);
    }
    assert_int_equal(mp_decode(&m, &g_a), DM_ETOOBIG);
    mp_reset(&m);
    msgpack_pack_array(&m.pk, 4);
    msgpack_pack_uint8(&m.pk, NET_MSG_SYNCRESP);
    msgpack_pack_bin_with_body(&m.pk, id, sizeof id);
    msgpack_pack_array(&m.pk, NET_MAX_SYNC_PAGE + 1);
    for (size_t i = 0; i <= NET_MAX_SYNC_PAGE; i++) {
        msgpack_pack_array(&m.pk, 2);
        msgpack_pack_bin_with_body(&m.pk, big, 1);
        msgpack_pack_bin_with_body(&m.pk, big, 1);
    }
    msgpack_pack_false(&m.pk);
    assert_int_equal(mp_decode(&m, &g_a), DM_ETOOBIG);
    /* ANCHOR body and signature one byte over their limits */
    for (int which = 0; which < 2; which++) {
        mp_reset(&m);
        msgpack_pack_array(&m.pk, 4);
        msgpack_pack_uint8(&m.pk, NET_MSG_ANCHOR);
        msgpack_pack_bin_with_body(&m.pk, id, sizeof id);
        msgpack_pack_bin_with_body(&m.pk, big, which ? 10 : NET_ANCHOR_BODY_MAX + 1);
        msgpack_pack_bin_with_body(&m.pk, big, which ? NET_MAX_SIG + 1 : 10);
        assert_int_equal(mp_decode(&m, &g_a), DM_ETOOBIG);
    }
    free(big);

    /* the other direction: msgpack-c's unpacker reads our frames */
    sample s[MAX_SAMPLES];
    size_t n = make_samples(s);
    for (size_t i = 0; i < n; i++) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        size_t off = 0;
        assert_int_equal(
            msgpack_unpack_next(&u, (const char *)s[i].f.data + 4, s[i].f.len - 4, &off),
            MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(off, s[i].f.len - 4);
        assert_int_equal(u.data.type, MSGPACK_OBJECT_ARRAY);
        assert_true(u.data.via.array.size >= 1);
        assert_int_equal(u.data.via.array.ptr[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        assert_int_equal(decode_frame(&s[i].f, &g_a), DM_OK);
        assert_int_equal(u.data.via.array.ptr[0].via.u64, g_a.type);
        msgpack_unpacked_destroy(&u);
    }
    free_samples(s, n);
    dm_buf_free(&f);
    msgpack_sbuffer_destroy(&m.sb);
}

/* The decoder takes no heap memory, whatever the input declares. */
static void test_decode_allocates_nothing(void **state)
{
    (void)state;
    sample s[MAX_SAMPLES];
    size_t n = make_samples(s);
    struct mallinfo2 before = mallinfo2();
    for (size_t i = 0; i < n; i++)
        assert_int_equal(net_msg_decode(s[i].f.data + 4, s[i].f.len - 4, &g_a), DM_OK);
    for (size_t i = 0; i < sizeof HOSTILE / sizeof HOSTILE[0]; i++)
        (void)net_msg_decode(HOSTILE[i].p, HOSTILE[i].n, &g_a);
    struct mallinfo2 after = mallinfo2();
    assert_int_equal(before.uordblks, after.uordblks);
    assert_int_equal(before.hblkhd, after.hblkhd);
    free_samples(s, n);
}

/* ---- anchor notice bodies (net_anchor_body_decode / _encode) ---- */

/* A body written field by field with msgpack-c, each field's encoding chosen by the spec
 * (the default spec gives the canonical body of anchor_sample). */
typedef struct {
    int fields;          /* array count (default 11) */
    int array16;         /* body header as array16 */
    int format;          /* format value (default 1) */
    int chain_zero;      /* chain_id 0 */
    int chain_wide;      /* chain_id 31337 as uint32 */
    int chain_signed;    /* chain_id as int16 */
    int contract_len;    /* bytes of contract (default 20) */
    int txhash_str;      /* tx_hash as a str */
    int txhash_bin16;    /* tx_hash as bin16 */
    int logidx_nil;      /* log_index as nil */
    int binding_len;     /* default 256; -1: empty */
    int root_missing;    /* leave out root (with fields 10) */
    int items;           /* number of items (default 3); -1: none */
    int items_array16;   /* items header as array16 */
    int item_fields;     /* elements of item 0 (default 4) */
    int sid_str;         /* share id of item 0 as a str */
    int sid_false;       /* share id of item 0 as false */
    int seq_order;       /* 1: item 1's seq equal to item 0's; 2: lower */
    int seq_wide;        /* item 0's seq (127) as uint16 */
    int entry_len;       /* bytes of item 2's entry hash (default 32) */
    int trailing;        /* one byte after the body */
    int trailing_item;   /* an extra element after the items, inside the body */
} anchor_spec;

static void mk_anchor(mp *m, const anchor_spec *sp)
{
    net_anchor_body b;
    net_anchor_item it[ANCHOR_N];
    anchor_sample(&b, it);
    mp_reset(m);
    msgpack_packer *pk = &m->pk;
    int fields = sp->fields ? sp->fields : 11;
    if (sp->array16)
        raw(m, (const uint8_t[]){0xdc, 0, (uint8_t)fields}, 3);
    else
        msgpack_pack_array(pk, (size_t)fields);
    msgpack_pack_uint64(pk, (uint64_t)(sp->format ? sp->format : 1));
    if (sp->chain_zero)
        msgpack_pack_uint64(pk, 0);
    else if (sp->chain_wide)
        raw(m, (const uint8_t[]){0xce, 0, 0, 0x7a, 0x69}, 5);
    else if (sp->chain_signed)
        raw(m, (const uint8_t[]){0xd1, 0x7a, 0x69}, 3);
    else
        msgpack_pack_uint64(pk, b.chain_id);
    uint8_t wide[40] = {0}; /* a field one byte longer than its source */
    memcpy(wide, b.contract, 20);
    msgpack_pack_bin_with_body(pk, wide, (size_t)(sp->contract_len ? sp->contract_len : 20));
    if (sp->txhash_str)
        msgpack_pack_str_with_body(pk, b.tx_hash, 32);
    else if (sp->txhash_bin16) {
        raw(m, (const uint8_t[]){0xc5, 0, 32}, 3);
        raw(m, b.tx_hash, 32);
    } else
        msgpack_pack_bin_with_body(pk, b.tx_hash, 32);
    msgpack_pack_uint64(pk, b.block_number);
    msgpack_pack_bin_with_body(pk, b.block_hash, 32);
    if (sp->logidx_nil)
        msgpack_pack_nil(pk);
    else
        msgpack_pack_uint64(pk, b.log_index);
    msgpack_pack_bin_with_body(pk, b.sender, 20);
    size_t bl = sp->binding_len < 0 ? 0 : sp->binding_len ? (size_t)sp->binding_len : 256;
    static uint8_t bigbind[NET_MAX_SIG + 1];
    msgpack_pack_bin_with_body(pk, bl <= sizeof g_bind ? g_bind : bigbind, bl);
    if (!sp->root_missing)
        msgpack_pack_bin_with_body(pk, b.root, 32);
    size_t n = sp->items < 0 ? 0 : sp->items ? (size_t)sp->items : ANCHOR_N;
    if (sp->items_array16)
        raw(m, (const uint8_t[]){0xdc, (uint8_t)(n >> 8), (uint8_t)n}, 3);
    else
        msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        const net_anchor_item *x = &it[i % ANCHOR_N];
        uint64_t seq = i < ANCHOR_N ? x->audit_seq : 1000 + i;
        if (i == 2 && n > ANCHOR_N)
            seq = 129;
        if (i == 1 && sp->seq_order)
            seq = sp->seq_order == 1 ? 127 : 100;
        int nf = i == 0 && sp->item_fields ? sp->item_fields : 4;
        msgpack_pack_array(pk, (size_t)nf);
        msgpack_pack_bin_with_body(pk, x->leaf, 32);
        if (nf < 2)
            continue;
        if (i == 0 && sp->sid_str)
            msgpack_pack_str_with_body(pk, x->share_id, 32);
        else if (i == 0 && sp->sid_false)
            msgpack_pack_false(pk);
        else if (x->share_id)
            msgpack_pack_bin_with_body(pk, x->share_id, 32);
        else
            msgpack_pack_nil(pk);
        if (nf < 3)
            continue;
        if (i == 0 && sp->seq_wide)
            raw(m, (const uint8_t[]){0xcd, 0, 127}, 3);
        else
            msgpack_pack_uint64(pk, seq);
        if (nf < 4)
            continue;
        size_t el = i == 2 && sp->entry_len ? (size_t)sp->entry_len : 32;
        memcpy(wide, x->entry_hash, 32);
        msgpack_pack_bin_with_body(pk, wide, el);
        for (int k = 4; k < nf; k++)
            msgpack_pack_uint8(pk, 0);
    }
    if (sp->trailing_item)
        msgpack_pack_uint8(pk, 7);
    if (sp->trailing)
        msgpack_pack_uint8(pk, 0);
}

static int anchor_decode_spec(const anchor_spec *sp)
{
    mp m;
    mp_init(&m);
    mk_anchor(&m, sp);
    net_anchor_body b;
    static net_anchor_item it[NET_ANCHOR_MAX_ITEMS + 1];
    int rc = net_anchor_body_decode((const uint8_t *)m.sb.data, m.sb.size, &b, it,
                                    NET_ANCHOR_MAX_ITEMS + 1);
    /* validating without items gives the same verdict */
    int rc2 = net_anchor_body_decode((const uint8_t *)m.sb.data, m.sb.size, &b, NULL, 0);
    assert_int_equal(rc, rc2);
    msgpack_sbuffer_destroy(&m.sb);
    return rc;
}

static void test_anchor_body(void **state)
{
    (void)state;
    net_anchor_body b, d;
    net_anchor_item it[ANCHOR_N], dt[ANCHOR_N];
    anchor_sample(&b, it);
    dm_buf e = DM_BUF_INIT, e2 = DM_BUF_INIT;
    assert_int_equal(dm_buf_puts(&e, "xy"), DM_OK);
    assert_int_equal(net_anchor_body_encode(&e, &b, it), DM_OK);
    assert_memory_equal(e.data, "xy", 2); /* appended */
    const uint8_t *p = e.data + 2;
    size_t n = e.len - 2;
    assert_int_equal(p[0], 0x9b); /* fixarray(11) */
    assert_int_equal(net_anchor_body_decode(p, n, &d, dt, ANCHOR_N), DM_OK);
    assert_int_equal(d.chain_id, 31337);
    assert_memory_equal(d.contract, b.contract, 20);
    assert_memory_equal(d.tx_hash, b.tx_hash, 32);
    assert_int_equal(d.block_number, 70000);
    assert_memory_equal(d.block_hash, b.block_hash, 32);
    assert_int_equal(d.log_index, 3);
    assert_memory_equal(d.sender, b.sender, 20);
    assert_true(slice_is(d.eth_binding, g_bind, sizeof g_bind));
    assert_true(d.eth_binding.p >= p && d.eth_binding.p < p + n); /* borrowed */
    assert_memory_equal(d.root, b.root, 32);
    assert_int_equal(d.count, ANCHOR_N);
    for (size_t i = 0; i < ANCHOR_N; i++) {
        assert_memory_equal(dt[i].leaf, g_leaf[i], 32);
        assert_true(dt[i].leaf >= p && dt[i].leaf < p + n);
        if (i == 1)
            assert_null(dt[i].share_id);
        else
            assert_memory_equal(dt[i].share_id, g_sid[i], 32);
        assert_true(dt[i].audit_seq == it[i].audit_seq);
        assert_memory_equal(dt[i].entry_hash, g_eh[i], 32);
    }
    /* canonical: what decodes encodes to the same bytes */
    assert_int_equal(net_anchor_body_encode(&e2, &d, dt), DM_OK);
    assert_int_equal(e2.len, n);
    assert_memory_equal(e2.data, p, n);
    /* the hand-written default is byte for byte the encoder's output */
    mp m;
    mp_init(&m);
    mk_anchor(&m, &(anchor_spec){0});
    assert_int_equal(m.sb.size, n);
    assert_memory_equal(m.sb.data, p, n);
    /* too small an item array; validation alone */
    assert_int_equal(net_anchor_body_decode(p, n, &d, dt, ANCHOR_N - 1), DM_ELIMIT);
    assert_int_equal(net_anchor_body_decode(p, n, &d, NULL, 0), DM_OK);
    assert_int_equal(d.count, ANCHOR_N);
    assert_int_equal(net_anchor_body_decode(NULL, 0, &d, NULL, 0), DM_EPARSE);
    assert_int_equal(net_anchor_body_decode(p, n, NULL, NULL, 0), DM_EINVAL);

    /* every malformed or non-canonical variant is rejected */
    struct {
        const char *what;
        anchor_spec sp;
        int want;
    } bad[] = {
        {"format 2", {.format = 2}, DM_EPARSE},
        {"10 fields", {.fields = 10, .root_missing = 1}, DM_EPARSE},
        {"12 fields", {.fields = 12, .trailing_item = 1}, DM_EPARSE},
        {"count says 12, 11 given", {.fields = 12}, DM_EPARSE},
        {"array16 header", {.array16 = 1}, DM_EPARSE},
        {"chain id 0", {.chain_zero = 1}, DM_EPARSE},
        {"chain id as uint32", {.chain_wide = 1}, DM_EPARSE},
        {"chain id signed", {.chain_signed = 1}, DM_EPARSE},
        {"contract 19", {.contract_len = 19}, DM_EPARSE},
        {"contract 21", {.contract_len = 21}, DM_EPARSE},
        {"tx hash as str", {.txhash_str = 1}, DM_EPARSE},
        {"tx hash as bin16", {.txhash_bin16 = 1}, DM_EPARSE},
        {"log index nil", {.logidx_nil = 1}, DM_EPARSE},
        {"empty binding", {.binding_len = -1}, DM_EPARSE},
        {"binding 513", {.binding_len = NET_MAX_SIG + 1}, DM_ETOOBIG},
        {"no items", {.items = -1}, DM_EPARSE},
        {"items 4097", {.items = NET_ANCHOR_MAX_ITEMS + 1}, DM_ETOOBIG},
        {"items array16 for 3", {.items_array16 = 1}, DM_EPARSE},
        {"item of 3", {.item_fields = 3}, DM_EPARSE},
        {"item of 5", {.item_fields = 5}, DM_EPARSE},
        {"share id as str", {.sid_str = 1}, DM_EPARSE},
        {"share id false", {.sid_false = 1}, DM_EPARSE},
        {"audit seq repeated", {.seq_order = 1}, DM_EPARSE},
        {"audit seq descending", {.seq_order = 2}, DM_EPARSE},
        {"audit seq as uint16", {.seq_wide = 1}, DM_EPARSE},
        {"entry hash 31", {.entry_len = 31}, DM_EPARSE},
        {"entry hash 33", {.entry_len = 33}, DM_EPARSE},
        {"trailing byte", {.trailing = 1}, DM_EPARSE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = anchor_decode_spec(&bad[i].sp);
        if (rc != bad[i].want)
            fail_msg("%s: got %s, want %s", bad[i].what, dm_err_name(rc), dm_err_name(bad[i].want));
    }
    /* the full 4096 items: valid, canonical, within the body limit */
    assert_int_equal(anchor_decode_spec(&(anchor_spec){.items = NET_ANCHOR_MAX_ITEMS}), DM_OK);
    static net_anchor_item many[NET_ANCHOR_MAX_ITEMS];
    for (size_t i = 0; i < NET_ANCHOR_MAX_ITEMS; i++) {
        many[i] = it[0];
        many[i].audit_seq = UINT64_MAX - NET_ANCHOR_MAX_ITEMS + i;
    }
    b.count = NET_ANCHOR_MAX_ITEMS;
    static uint8_t bind512[NET_MAX_SIG];
    b.eth_binding = (net_slice){bind512, sizeof bind512};
    b.chain_id = b.block_number = b.log_index = UINT64_MAX;
    dm_buf_reset(&e);
    assert_int_equal(net_anchor_body_encode(&e, &b, many), DM_OK);
    assert_true(e.len <= NET_ANCHOR_BODY_MAX);
    static net_anchor_item back[NET_ANCHOR_MAX_ITEMS];
    assert_int_equal(net_anchor_body_decode(e.data, e.len, &d, back, NET_ANCHOR_MAX_ITEMS), DM_OK);
    assert_int_equal(d.count, NET_ANCHOR_MAX_ITEMS);
    assert_true(back[NET_ANCHOR_MAX_ITEMS - 1].audit_seq == UINT64_MAX - 1);
    /* one more item is refused by the encoder; so is everything else out of schema */
    size_t keep = e.len;
    b.count = NET_ANCHOR_MAX_ITEMS + 1;
    assert_int_equal(net_anchor_body_encode(&e, &b, many), DM_ETOOBIG);
    anchor_sample(&b, it);
    b.count = 0;
    assert_int_equal(net_anchor_body_encode(&e, &b, it), DM_EINVAL);
    anchor_sample(&b, it);
    b.chain_id = 0;
    assert_int_equal(net_anchor_body_encode(&e, &b, it), DM_EINVAL);
    anchor_sample(&b, it);
    b.eth_binding.n = 0;
    assert_int_equal(net_anchor_body_encode(&e, &b, it), DM_EINVAL);
    b.eth_binding = (net_slice){bind512, NET_MAX_SIG + 1};
    assert_int_equal(net_anchor_body_encode(&e, &b, it), DM_ETOOBIG);
    anchor_sample(&b, it);
    it[1].audit_seq = it[0].audit_seq;
    assert_int_equal(net_anchor_body_encode(&e, &b, it), DM_EINVAL);
    anchor_sample(&b, it);
    it[2].leaf = NULL;
    assert_int_equal(net_anchor_body_encode(&e, &b, it), DM_EINVAL);
    anchor_sample(&b, it);
    assert_int_equal(net_anchor_body_encode(&e, &b, NULL), DM_EINVAL);
    assert_int_equal(e.len, keep); /* nothing appended by a failed call */

    /* every truncation fails; every single-byte change fails or is again canonical */
    anchor_sample(&b, it);
    dm_buf_reset(&e);
    assert_int_equal(net_anchor_body_encode(&e, &b, it), DM_OK);
    for (size_t k = 0; k < e.len; k++) {
        int rc = net_anchor_body_decode(e.data, k, &d, dt, ANCHOR_N);
        if (rc != DM_EPARSE)
            fail_msg("body truncated to %zu: %s", k, dm_err_name(rc));
    }
    size_t ok = 0;
    uint8_t *q = malloc(e.len);
    assert_non_null(q);
    for (size_t pos = 0; pos < e.len; pos++) {
        for (unsigned v = 0; v < 256; v += 3) {
            memcpy(q, e.data, e.len);
            if (q[pos] == v)
                continue;
            q[pos] = (uint8_t)v;
            int rc = net_anchor_body_decode(q, e.len, &d, dt, ANCHOR_N);
            if (rc == DM_OK) {
                ok++;
                dm_buf_reset(&e2);
                assert_int_equal(net_anchor_body_encode(&e2, &d, dt), DM_OK);
                assert_int_equal(e2.len, e.len);
                assert_memory_equal(e2.data, q, e.len);
            } else if (rc != DM_EPARSE && rc != DM_ETOOBIG && rc != DM_ELIMIT) {
                fail_msg("body[%zu]=%u: %s", pos, v, dm_err_name(rc));
            }
        }
    }
    assert_true(ok > 0);
    free(q);
    msgpack_sbuffer_destroy(&m.sb);
    dm_buf_free(&e);
    dm_buf_free(&e2);
}

/* ---- seed corpora for fuzz/fuzz_frame.c and fuzz/fuzz_msg.c ---- */

static void write_file(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(p, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void test_write_seeds(void **state)
{
    (void)state;
    const char *base = getenv("DM_NET_SEED_DIR");
    if (!base || !*base)
        skip();
    char fdir[PATH_MAX], mdir[PATH_MAX], name[64];
    snprintf(fdir, sizeof fdir, "%s/frame", base);
    snprintf(mdir, sizeof mdir, "%s/msg", base);
    mkdir(base, 0755);
    mkdir(fdir, 0755);
    mkdir(mdir, 0755);
    sample s[MAX_SAMPLES];
    size_t n = make_samples(s);
    dm_buf stream = DM_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        write_file(fdir, s[i].name, s[i].f.data, s[i].f.len);
        write_file(mdir, s[i].name, s[i].f.data + 4, s[i].f.len - 4);
        assert_int_equal(dm_buf_append(&stream, s[i].f.data, s[i].f.len), DM_OK);
    }
    /* a connection's worth of frames, and its truncation */
    write_file(fdir, "stream_all", stream.data, stream.len);
    write_file(fdir, "stream_cut", stream.data, stream.len - 3);
    /* the handshake pair */
    dm_buf_reset(&stream);
    dm_buf_append(&stream, s[0].f.data, s[0].f.len);
    dm_buf_append(&stream, s[2].f.data, s[2].f.len);
    write_file(fdir, "stream_handshake", stream.data, stream.len);
    /* bad prefixes */
    static const uint8_t zero_len[] = {0, 0, 0, 0, 0x91, 0x06};
    static const uint8_t huge_len[] = {0xff, 0xff, 0xff, 0xff, 0x91, 0x06};
    static const uint8_t over_len[] = {0x00, 0x20, 0x00, 0x01, 0x91, 0x06};
    write_file(fdir, "zero_len", zero_len, sizeof zero_len);
    write_file(fdir, "huge_len", huge_len, sizeof huge_len);
    write_file(fdir, "over_len", over_len, sizeof over_len);
    /* non-canonical but valid encodings, and a few hostile payloads */
    static const uint8_t ping_long[] = {0xdd, 0, 0,    0, 2, 0xcf, 0, 0, 0, 0, 0, 0,
                                        0,    3, 0xd3, 0, 0, 0,    0, 0, 0, 0, 9};
    write_file(mdir, "ping_long_forms", ping_long, sizeof ping_long);
    for (size_t i = 0; i < sizeof HOSTILE / sizeof HOSTILE[0]; i += 6) {
        snprintf(name, sizeof name, "hostile_%02zu", i);
        write_file(mdir, name, HOSTILE[i].p, HOSTILE[i].n);
    }
    dm_buf_free(&stream);
    free_samples(s, n);
}

int test_net_msg(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_roundtrip_samples),
        cmocka_unit_test(test_roundtrip_boundaries),
        cmocka_unit_test(test_syncresp_builder),
        cmocka_unit_test(test_encoder_rejects),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_trailing),
        cmocka_unit_test(test_nesting_bomb),
        cmocka_unit_test(test_interop_msgpack_c),
        cmocka_unit_test(test_decode_allocates_nothing),
        cmocka_unit_test(test_anchor_body),
        cmocka_unit_test(test_write_seeds),
    };
    return cmocka_run_group_tests_name("net_msg", tests, NULL, NULL);
}
