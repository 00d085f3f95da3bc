#define _GNU_SOURCE /* memmem */
/*
 * Share tests: the canonical body codec and the reference's validation table,
 * then the service with real RocksDB on disk, real node keys (PBKDF2 at the
 * production count, created once per group), the real audit log, and real
 * net_host instances talking over loopback. Every loop test runs under a
 * deadline and ends with uv_loop_close() == 0.
 */
#include "dm_test.h"
#include "groups.h"

#include "chain_verify.h"
#include "crypto_eth.h"
#include "crypto_hash.h"
#include "crypto_merkle.h"
#include "crypto_rsa.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "dm_util.h"
#include "net_host.h"
#include "net_msg.h"
#include "node_audit.h"
#include "node_keys.h"
#include "node_share.h"
#include "node_share_internal.h"
#include "store.h"
#include "store_keys.h"

#include <uv.h>

static const char PW[] = "share tests master password 0001";
#define NKEYS 3

/* one key manager per simulated node, created once (600 000 PBKDF2 iterations) */
static struct {
    char *dir;
    store_t *store;
    node_keys_t *km;
    uint8_t id[32];
} g_keys[NKEYS];

static dm_log_level g_level;

static int group_setup(void **state)
{
    (void)state;
    g_level = dm_log_get_level();
    dm_log_set_level(DM_LOG_ERROR);
    for (int i = 0; i < NKEYS; i++) {
        g_keys[i].dir = dm_test_mkdtemp("share-keys");
        store_opts o = {.create = true};
        if (store_open(&g_keys[i].store, g_keys[i].dir, &o))
            return -1;
        if (node_keys_create(&g_keys[i].km, g_keys[i].store, PW, strlen(PW),
                             NODE_KEYS_MIN_ITERATIONS, 2048))
            return -1;
        if (dm_hex_decode(g_keys[i].id, 32, node_keys_node_id(g_keys[i].km), 64))
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < NKEYS; i++) {
        node_keys_close(g_keys[i].km);
        store_close(g_keys[i].store);
        dm_test_rmtree(g_keys[i].dir);
        free(g_keys[i].dir);
    }
    dm_log_set_level(g_level);
    return 0;
}

/* ================================================================ body codec */

static uint8_t g_data[64];

static void sample_fields(node_share_fields *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < 32; i++)
        f->origin[i] = (uint8_t)(0xa0 + i);
    f->seq = 7;
    f->timestamp_ms = 1705312200123ull;
    for (int i = 0; i < 20; i++)
        f->recipient[i] = (uint8_t)(0x74 + i);
    strcpy(f->amount, "1000000000000000000");
    for (size_t i = 0; i < sizeof g_data; i++)
        g_data[i] = (uint8_t)(i * 7);
    f->data = g_data;
    f->data_len = sizeof g_data;
    crypto_sha256(f->data_hash, g_data, sizeof g_data);
}

static void test_body_roundtrip(void **state)
{
    (void)state;
    node_share_fields f, g;
    sample_fields(&f);
    dm_buf b = DM_BUF_INIT, b2 = DM_BUF_INIT;
    assert_int_equal(node_share_body_encode(&b, &f), DM_OK);
    /* fixarray(8), format 1, bin8(32) origin ... */
    assert_int_equal(b.data[0], 0x98);
    assert_int_equal(b.data[1], 0x01);
    assert_int_equal(b.data[2], 0xc4);
    assert_int_equal(b.data[3], 32);
    assert_int_equal(node_share_body_decode(b.data, b.len, &g), DM_OK);
    assert_memory_equal(g.origin, f.origin, 32);
    assert_int_equal(g.seq, f.seq);
    assert_int_equal(g.timestamp_ms, f.timestamp_ms);
    assert_memory_equal(g.recipient, f.recipient, 20);
    assert_string_equal(g.amount, f.amount);
    assert_int_equal(g.data_len, f.data_len);
    assert_memory_equal(g.data, g_data, sizeof g_data);
    assert_true(g.data >= b.data && g.data < b.data + b.len); /* borrows the body */
    assert_memory_equal(g.data_hash, f.data_hash, 32);
    uint8_t id[32];
    crypto_sha256(id, b.data, b.len);
    assert_memory_equal(g.id, id, 32);
    /* canonical: re-encoding gives the same bytes */
    assert_int_equal(node_share_body_encode(&b2, &g), DM_OK);
    assert_int_equal(b2.len, b.len);
    assert_memory_equal(b2.data, b.data, b.len);
    /* large seq / timestamp use the shortest uint form and still round-trip */
    f.seq = UINT64_MAX;
    f.timestamp_ms = 0;
    dm_buf_reset(&b);
    assert_int_equal(node_share_body_encode(&b, &f), DM_OK);
    assert_int_equal(node_share_body_decode(b.data, b.len, &g), DM_OK);
    assert_int_equal(g.seq, UINT64_MAX);
    assert_int_equal(g.timestamp_ms, 0);
    /* empty data is allowed */
    f.seq = 1;
    f.data = NULL;
    f.data_len = 0;
    crypto_sha256(f.data_hash, "", 0);
    dm_buf_reset(&b);
    assert_int_equal(node_share_body_encode(&b, &f), DM_OK);
    assert_int_equal(node_share_body_decode(b.data, b.len, &g), DM_OK);
    assert_int_equal(g.data_len, 0);
    /* peek reads the header only */
    uint8_t o[32];
    uint64_t seq;
    assert_int_equal(node_share__body_peek(b.data, b.len, o, &seq), DM_OK);
    assert_int_equal(seq, 1);
    assert_memory_equal(o, f.origin, 32);
    dm_buf_free(&b);
    dm_buf_free(&b2);
}

/* A hand-written body writer so that each field's encoding can be chosen. */
typedef struct {
    int count;          /* array count */
    int array16;        /* array header as array16 */
    int format;         /* value of the format field */
    int seq_wide;       /* seq as uint8 0xcc even though it fits a fixint */
    int seq_signed;     /* seq as int8 0xd0 */
    int origin_len;     /* bytes of origin */
    int origin_str;     /* origin as str8 */
    int amount_str8;    /* amount as str8 although it fits a fixstr */
    int amount_bin;     /* amount as bin */
    const char *amount; /* amount text */
    int data_bin16;     /* data as bin16 although < 256 */
    int bad_hash;       /* flip a bit of data_hash */
    int trailing;       /* append one byte */
    uint64_t seq;
} body_spec;

static void put_bin(dm_buf *b, const uint8_t *p, size_t n, int wide)
{
    if (wide) {
        dm_buf_putc(b, 0xc5);
        dm_buf_putc(b, (uint8_t)(n >> 8));
        dm_buf_putc(b, (uint8_t)n);
    } else {
        dm_buf_putc(b, 0xc4);
        dm_buf_putc(b, (uint8_t)n);
    }
    dm_buf_append(b, p, n);
}

static void mk_body(dm_buf *b, const body_spec *sp)
{
    node_share_fields f;
    sample_fields(&f);
    dm_buf_reset(b);
    int count = sp->count ? sp->count : 8;
    if (sp->array16) {
        dm_buf_putc(b, 0xdc);
        dm_buf_putc(b, 0);
        dm_buf_putc(b, (uint8_t)count);
    } else {
        dm_buf_putc(b, (uint8_t)(0x90 | count));
    }
    dm_buf_putc(b, (uint8_t)(sp->format ? sp->format : 1));
    int olen = sp->origin_len ? sp->origin_len : 32;
    if (sp->origin_str) {
        dm_buf_putc(b, 0xd9);
        dm_buf_putc(b, (uint8_t)olen);
        dm_buf_append(b, f.origin, (size_t)olen);
    } else {
        put_bin(b, f.origin, (size_t)olen, 0);
    }
    uint64_t seq = sp->seq ? sp->seq : 7;
    if (sp->seq_wide) {
        dm_buf_putc(b, 0xcc);
        dm_buf_putc(b, (uint8_t)seq);
    } else if (sp->seq_signed) {
        dm_buf_putc(b, 0xd0);
        dm_buf_putc(b, (uint8_t)seq);
    } else if (sp->seq == UINT64_MAX) {
        dm_buf_putc(b, 0x00); /* seq 0 */
    } else {
        dm_buf_putc(b, (uint8_t)seq);
    }
    /* timestamp as uint64 (1705312200123 needs 8 bytes: shortest) */
    dm_buf_putc(b, 0xcf);
    dm_buf_put_u64be(b, f.timestamp_ms);
    put_bin(b, f.recipient, 20, 0);
    const char *am = sp->amount ? sp->amount : f.amount;
    size_t al = strlen(am);
    if (sp->amount_bin) {
        put_bin(b, (const uint8_t *)am, al, 0);
    } else if (sp->amount_str8 || al >= 32) {
        dm_buf_putc(b, 0xd9);
        dm_buf_putc(b, (uint8_t)al);
        dm_buf_append(b, am, al);
    } else {
        dm_buf_putc(b, (uint8_t)(0xa0 | al));
        dm_buf_append(b, am, al);
    }
    if (count >= 7)
        put_bin(b, g_data, sizeof g_data, sp->data_bin16);
    uint8_t h[32];
    memcpy(h, f.data_hash, 32);
    if (sp->bad_hash)
        h[5] ^= 1;
    if (count >= 8)
        put_bin(b, h, 32, 0);
    if (count >= 9)
        dm_buf_putc(b, 0x01);
    if (sp->trailing)
        dm_buf_putc(b, 0x00);
}

static int decode_spec(const body_spec *sp)
{
    dm_buf b = DM_BUF_INIT;
    mk_body(&b, sp);
    node_share_fields f;
    memset(&f, 0x5a, sizeof f);
    int rc = node_share_body_decode(b.data, b.len, &f);
    dm_buf_free(&b);
    return rc;
}

static void test_body_canonical(void **state)
{
    (void)state;
    /* the hand-written default matches the real encoder byte for byte */
    body_spec ok = {0};
    dm_buf b = DM_BUF_INIT, e = DM_BUF_INIT;
    mk_body(&b, &ok);
    node_share_fields f;
    sample_fields(&f);
    assert_int_equal(node_share_body_encode(&e, &f), DM_OK);
    assert_int_equal(b.len, e.len);
    assert_memory_equal(b.data, e.data, b.len);
    assert_int_equal(decode_spec(&ok), DM_OK);

    assert_int_equal(decode_spec(&(body_spec){.seq_wide = 1}), DM_EPARSE);   /* non-shortest int */
    assert_int_equal(decode_spec(&(body_spec){.seq_signed = 1}), DM_EPARSE); /* wrong int type */
    assert_int_equal(decode_spec(&(body_spec){.count = 7}), DM_EPARSE);      /* field count */
    assert_int_equal(decode_spec(&(body_spec){.count = 9}), DM_EPARSE);
    assert_int_equal(decode_spec(&(body_spec){.array16 = 1}), DM_EPARSE); /* non-shortest array */
    assert_int_equal(decode_spec(&(body_spec){.origin_str = 1}), DM_EPARSE); /* wrong type */
    assert_int_equal(decode_spec(&(body_spec){.origin_len = 31}), DM_EPARSE);
    assert_int_equal(decode_spec(&(body_spec){.amount_bin = 1}), DM_EPARSE);
    assert_int_equal(decode_spec(&(body_spec){.amount_str8 = 1}), DM_EPARSE);
    assert_int_equal(decode_spec(&(body_spec){.data_bin16 = 1}), DM_EPARSE); /* non-shortest bin */
    assert_int_equal(decode_spec(&(body_spec){.bad_hash = 1}), DM_EINVAL); /* data_hash mismatch */
    assert_int_equal(decode_spec(&(body_spec){.trailing = 1}), DM_EPARSE); /* trailing bytes */
    assert_int_equal(decode_spec(&(body_spec){.format = 2}), DM_EINVAL);
    assert_int_equal(decode_spec(&(body_spec){.seq = UINT64_MAX}), DM_EINVAL); /* seq 0 */
    assert_int_equal(decode_spec(&(body_spec){.amount = "0"}), DM_ERANGE);
    assert_int_equal(decode_spec(&(body_spec){.amount = "01"}), DM_EINVAL);
    assert_int_equal(decode_spec(&(body_spec){.amount = "1000000000000000000000000000000"}),
                     DM_ERANGE);

    /* every truncation of a valid body is rejected, never read past the end */
    for (size_t n = 0; n < e.len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, e.data, n);
        node_share_fields g;
        int rc = node_share_body_decode(copy, n, &g);
        assert_true(rc == DM_EPARSE || rc == DM_ETOOBIG);
        free(copy);
    }
    /* single-byte corruptions never decode to a different share with the same id */
    for (size_t i = 0; i < e.len; i++) {
        e.data[i] ^= 0x01;
        node_share_fields g;
        int rc = node_share_body_decode(e.data, e.len, &g);
        if (rc == DM_OK) {
            uint8_t id[32];
            crypto_sha256(id, e.data, e.len);
            assert_memory_equal(g.id, id, 32);
        }
        e.data[i] ^= 0x01;
    }
    dm_buf_free(&b);
    dm_buf_free(&e);
}

static void test_body_encode_checks(void **state)
{
    (void)state;
    node_share_fields f;
    dm_buf b = DM_BUF_INIT;
    sample_fields(&f);
    f.seq = 0;
    assert_int_equal(node_share_body_encode(&b, &f), DM_EINVAL);
    sample_fields(&f);
    f.data_hash[0] ^= 1;
    assert_int_equal(node_share_body_encode(&b, &f), DM_EINVAL);
    sample_fields(&f);
    strcpy(f.amount, "-1");
    assert_int_equal(node_share_body_encode(&b, &f), DM_EINVAL);
    assert_int_equal(b.len, 0);

    /* data: 1 MiB accepted, 1 MiB + 1 rejected (encode and decode) */
    size_t mib = (size_t)1 << 20;
    uint8_t *big = malloc(mib + 1);
    for (size_t i = 0; i <= mib; i++)
        big[i] = (uint8_t)(i * 31 + 7);
    sample_fields(&f);
    f.data = big;
    f.data_len = mib;
    crypto_sha256(f.data_hash, big, mib);
    assert_int_equal(node_share_body_encode(&b, &f), DM_OK);
    node_share_fields g;
    assert_int_equal(node_share_body_decode(b.data, b.len, &g), DM_OK);
    assert_int_equal(g.data_len, mib);
    f.data_len = mib + 1;
    crypto_sha256(f.data_hash, big, mib + 1);
    dm_buf_reset(&b);
    assert_int_equal(node_share_body_encode(&b, &f), DM_ETOOBIG);
    /* a hand-made body with 1 MiB + 1 of data */
    dm_buf_reset(&b);
    dm_buf_putc(&b, 0x98);
    dm_buf_putc(&b, 0x01);
    put_bin(&b, f.origin, 32, 0);
    dm_buf_putc(&b, 0x07);
    dm_buf_putc(&b, 0x05);
    put_bin(&b, f.recipient, 20, 0);
    dm_buf_putc(&b, 0xa1);
    dm_buf_putc(&b, '5');
    dm_buf_putc(&b, 0xc6);
    dm_buf_put_u32be(&b, (uint32_t)(mib + 1));
    dm_buf_append(&b, big, mib + 1);
    put_bin(&b, f.data_hash, 32, 0);
    assert_int_equal(node_share_body_decode(b.data, b.len, &g), DM_ETOOBIG);
    free(big);
    dm_buf_free(&b);
}

static void test_validation_table(void **state)
{
    (void)state;
    uint8_t r[20];
    const char *good_rcpt[] = {
        "0x742d35Cc6634C0532925a3b844Bc454e4438f44e", "0x0000000000000000000000000000000000000000",
        "0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF", "0xabcdefABCDEF0123456789abcdefABCDEF012345"};
    for (size_t i = 0; i < DM_ARRAY_LEN(good_rcpt); i++)
        assert_int_equal(node_share_parse_recipient(good_rcpt[i], strlen(good_rcpt[i]), r), DM_OK);
    assert_int_equal(r[0], 0xab);
    assert_int_equal(r[19], 0x45);
    const char *bad_rcpt[] = {
        "",
        "0x",
        "742d35Cc6634C0532925a3b844Bc454e4438f44e",     /* no prefix */
        "0X742d35Cc6634C0532925a3b844Bc454e4438f44e",   /* upper-case X */
        "0x742d35Cc6634C0532925a3b844Bc454e4438f44",    /* 39 hex */
        "0x742d35Cc6634C0532925a3b844Bc454e4438f44e0",  /* 41 hex */
        "0x742d35Cc6634C0532925a3b844Bc454e4438f44g",   /* not hex */
        " 0x742d35Cc6634C0532925a3b844Bc454e4438f44e",  /* space */
        "0x742d35Cc6634C0532925a3b844Bc454e4438f44e\n", /* trailing newline */
        "0x742d35Cc6634C0532925a3b844Bc454e4438f4 e",
    };
    for (size_t i = 0; i < DM_ARRAY_LEN(bad_rcpt); i++)
        assert_int_equal(node_share_parse_recipient(bad_rcpt[i], strlen(bad_rcpt[i]), r),
                         DM_EINVAL);
    /* an embedded NUL is not hex */
    assert_int_equal(
        node_share_parse_recipient("0x742d35Cc6634C0532925a3b844Bc454e4438f4\0e", 42, r),
        DM_EINVAL);

    struct {
        const char *a;
        int rc;
    } amounts[] = {
        {"1", DM_OK},
        {"42", DM_OK},
        {"999999999999999999999999999999", DM_OK}, /* 10^30 - 1: 30 nines */
        {"100000000000000000000000000000", DM_OK}, /* 10^29 */
        {"0", DM_ERANGE},
        {"1000000000000000000000000000000", DM_ERANGE}, /* 10^30 */
        {"9999999999999999999999999999999", DM_ERANGE}, /* 31 digits */
        {"12345678901234567890123456789012345678901234567890", DM_ERANGE},
        {"", DM_EINVAL},
        {"01", DM_EINVAL}, /* leading zero */
        {"00", DM_EINVAL},
        {"-1", DM_EINVAL}, /* sign */
        {"+1", DM_EINVAL},
        {"1.0", DM_EINVAL}, /* decimal point */
        {"1.", DM_EINVAL},
        {".5", DM_EINVAL},
        {"1e3", DM_EINVAL}, /* exponent */
        {" 1", DM_EINVAL},  /* spaces */
        {"1 ", DM_EINVAL},
        {"1 000", DM_EINVAL},
        {"0x10", DM_EINVAL},
        {"１", DM_EINVAL}, /* full-width digit */
    };
    for (size_t i = 0; i < DM_ARRAY_LEN(amounts); i++) {
        int rc = node_share_check_amount(amounts[i].a, strlen(amounts[i].a));
        if (rc != amounts[i].rc)
            fail_msg("amount \"%s\": got %d, want %d", amounts[i].a, rc, amounts[i].rc);
    }
    assert_int_equal(node_share_check_amount("12", 1), DM_OK); /* length is honoured */
    assert_int_equal(node_share_check_amount("1\0", 2), DM_EINVAL);

    uint8_t h[32];
    const char *hx = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_int_equal(node_share_parse_hash(hx, 64, h), DM_OK);
    assert_int_equal(h[0], 0xe3);
    assert_int_equal(h[31], 0x55);
    const char *HX = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
    assert_int_equal(node_share_parse_hash(HX, 64, h), DM_OK);
    assert_int_equal(node_share_parse_hash(hx, 63, h), DM_EINVAL);
    char h65[66];
    snprintf(h65, sizeof h65, "%s0", hx);
    assert_int_equal(node_share_parse_hash(h65, 65, h), DM_EINVAL);
    char hbad[65];
    memcpy(hbad, hx, 65);
    hbad[10] = 'g';
    assert_int_equal(node_share_parse_hash(hbad, 64, h), DM_EINVAL);
    char h0x[67];
    snprintf(h0x, sizeof h0x, "0x%.62s", hx);
    assert_int_equal(node_share_parse_hash(h0x, 64, h), DM_EINVAL);
    assert_int_equal(node_share_parse_hash("", 0, h), DM_EINVAL);
}

static void test_record_codec(void **state)
{
    (void)state;
    dm_buf b = DM_BUF_INIT;
    uint8_t sealed[300], sig[256];
    for (size_t i = 0; i < sizeof sealed; i++)
        sealed[i] = (uint8_t)i;
    memset(sig, 0x33, sizeof sig);
    assert_int_equal(node_share__record_encode(&b, sealed, sizeof sealed, sig, sizeof sig, 12345),
                     DM_OK);
    const uint8_t *s1, *s2;
    size_t n1, n2;
    uint64_t ms;
    assert_int_equal(node_share__record_decode(b.data, b.len, &s1, &n1, &s2, &n2, &ms), DM_OK);
    assert_int_equal(n1, sizeof sealed);
    assert_memory_equal(s1, sealed, sizeof sealed);
    assert_int_equal(n2, sizeof sig);
    assert_int_equal(ms, 12345);
    assert_int_equal(node_share__record_decode(b.data, b.len - 1, &s1, &n1, &s2, &n2, &ms),
                     DM_ECORRUPT);
    dm_buf_putc(&b, 0);
    assert_int_equal(node_share__record_decode(b.data, b.len, &s1, &n1, &s2, &n2, &ms),
                     DM_ECORRUPT);
    dm_buf_free(&b);
}

/* ================================================================ service harness */

#define MAXPEERS 8

typedef struct tnode {
    int k; /* key set */
    char *dir;
    store_t *store;
    node_audit_t *audit;
    net_host_t *host;
    node_share_svc_t *svc;
    net_peer_t *peers[MAXPEERS];
    size_t npeers;
    bool svc_closed, host_closed;
    uint16_t port;
} tnode;

static void h_ready(net_peer_t *p, void *arg)
{
    tnode *n = arg;
    if (n->npeers < MAXPEERS)
        n->peers[n->npeers++] = p;
    if (n->svc)
        node_share_on_peer_ready(n->svc, p);
}

static void h_closed(net_peer_t *p, void *arg)
{
    tnode *n = arg;
    for (size_t i = 0; i < n->npeers; i++)
        if (n->peers[i] == p) {
            n->peers[i] = n->peers[--n->npeers];
            break;
        }
    if (n->svc)
        node_share_on_peer_closed(n->svc, p);
}

/* what a bare host (no share service) received */
static struct {
    size_t syncreqs, keyreqs, hwms, anchors;
    uint8_t syncreq_origin[32];
    uint64_t syncreq_from;
    uint32_t syncreq_limit;
    uint8_t keyreq_id[32];
} g_h;

static void h_message(net_peer_t *p, const net_msg *m, const uint8_t *frame, size_t len, void *arg)
{
    tnode *n = arg;
    if (n->svc) {
        node_share_on_message(n->svc, p, m, frame, len);
        return;
    }
    if (m->type == NET_MSG_SYNCREQ) {
        g_h.syncreqs++;
        memcpy(g_h.syncreq_origin, m->u.syncreq.origin, 32);
        g_h.syncreq_from = m->u.syncreq.from_seq;
        g_h.syncreq_limit = m->u.syncreq.limit;
    } else if (m->type == NET_MSG_KEYREQ) {
        g_h.keyreqs++;
        memcpy(g_h.keyreq_id, m->u.keyreq.node_id, 32);
    } else if (m->type == NET_MSG_HWM) {
        g_h.hwms++;
    } else if (m->type == NET_MSG_ANCHOR) {
        g_h.anchors++;
    }
}

static const char *NET_ID = "dm-share-test";

typedef struct {
    int k;
    bool with_host;
    const tnode *bootstrap;  /* dial this node */
    const tnode *bootstrap2; /* and this one */
    uint32_t max_in, max_out;
    uint32_t sync_page;
    size_t max_pending;
    size_t seen_cache;
    bool no_svc;     /* a bare host driven by the test (a hostile peer) */
    const char *dir; /* reuse an existing store directory */
} node_cfg;

static void node_open_store(tnode *n)
{
    store_opts so = {.create = true};
    assert_int_equal(store_open(&n->store, n->dir, &so), DM_OK);
    assert_int_equal(node_audit_open(&n->audit, n->store), DM_OK);
}

static void node_start(uv_loop_t *loop, tnode *n, const node_cfg *c)
{
    memset(n, 0, sizeof *n);
    n->k = c->k;
    n->dir = c->dir ? strdup(c->dir) : dm_test_mkdtemp("share-node");
    node_open_store(n);
    if (c->with_host) {
        net_host_opts ho;
        net_host_opts_default(&ho);
        ho.network_id = NET_ID;
        ho.key = node_keys_rsa(g_keys[c->k].km);
        snprintf(ho.listen.host, sizeof ho.listen.host, "127.0.0.1");
        ho.listen.port = 0;
        ho.ban_threshold = 100000; /* one loopback address: never ban it */
        ho.reconnect_min_ms = 50;
        ho.reconnect_max_ms = 200;
        net_addr boot[2];
        const tnode *bs[2] = {c->bootstrap, c->bootstrap2};
        for (int b = 0; b < 2; b++) {
            if (!bs[b])
                continue;
            snprintf(boot[ho.bootstrap_len].host, sizeof boot[0].host, "127.0.0.1");
            boot[ho.bootstrap_len].port = bs[b]->port;
            ho.bootstrap_len++;
        }
        ho.bootstrap = ho.bootstrap_len ? boot : NULL;
        if (c->max_in || c->max_out) {
            ho.max_inbound = c->max_in == UINT32_MAX ? 0 : c->max_in;
            ho.max_outbound = c->max_out == UINT32_MAX ? 0 : c->max_out;
        }
        net_host_cbs cbs = {h_ready, h_closed, h_message};
        assert_int_equal(net_host_create(&n->host, loop, &ho, &cbs, n), DM_OK);
    }
    node_share_opts so;
    node_share_opts_default(&so);
    if (c->seen_cache)
        so.seen_cache = c->seen_cache;
    so.loop = loop;
    so.store = n->store;
    so.keys = g_keys[c->k].km;
    so.audit = n->audit;
    so.host = n->host;
    so.sync_interval_ms = 200;
    if (c->sync_page)
        so.sync_page = c->sync_page;
    if (c->max_pending)
        so.max_pending = c->max_pending;
    if (!c->no_svc)
        assert_int_equal(node_share_svc_create(&n->svc, &so), DM_OK);
    if (n->host) {
        assert_int_equal(net_host_start(n->host), DM_OK);
        n->port = net_host_listen_port(n->host);
        assert_true(n->port > 0);
    }
}

static void on_host_closed(void *arg)
{
    tnode *n = arg;
    n->host_closed = true;
    n->host = NULL;
}

static void on_svc_closed(void *arg)
{
    tnode *n = arg;
    n->svc_closed = true;
    n->svc = NULL;
    if (n->host)
        net_host_close(n->host, on_host_closed, n);
    else
        n->host_closed = true;
}

/* ---- running the loop under a deadline ---- */

typedef bool (*pred_fn)(void *ctx);
typedef struct {
    uv_timer_t t;
    pred_fn p;
    void *ctx;
    uint64_t deadline;
    bool ok;
} waiter;

static void waiter_cb(uv_timer_t *t)
{
    waiter *w = t->data;
    if (w->p(w->ctx)) {
        w->ok = true;
        uv_stop(t->loop);
    } else if (uv_now(t->loop) >= w->deadline) {
        uv_stop(t->loop);
    }
}

static void waiter_closed(uv_handle_t *h)
{
    (void)h;
}

static bool run_until(uv_loop_t *loop, pred_fn p, void *ctx, uint64_t ms)
{
    static waiter w;
    memset(&w, 0, sizeof w);
    w.p = p;
    w.ctx = ctx;
    uv_update_time(loop);
    w.deadline = uv_now(loop) + ms;
    uv_timer_init(loop, &w.t);
    w.t.data = &w;
    uv_timer_start(&w.t, waiter_cb, 2, 2);
    if (p(ctx))
        w.ok = true;
    else
        uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&w.t, waiter_closed);
    uv_run(loop, UV_RUN_NOWAIT);
    return w.ok;
}

typedef struct {
    tnode *n;
    size_t count;
} nodes_t;

static bool all_closed(void *ctx)
{
    nodes_t *ns = ctx;
    for (size_t i = 0; i < ns->count; i++)
        if (!ns->n[i].svc_closed || !ns->n[i].host_closed)
            return false;
    return true;
}

/* Close services, then hosts; close stores; remove directories unless kept. */
static void nodes_stop(uv_loop_t *loop, tnode *n, size_t count, bool keep_dirs)
{
    for (size_t i = 0; i < count; i++) {
        if (n[i].svc)
            node_share_svc_close(n[i].svc, on_svc_closed, &n[i]);
        else if (!n[i].svc_closed)
            on_svc_closed(&n[i]);
    }
    nodes_t ns = {n, count};
    assert_true(run_until(loop, all_closed, &ns, 20000));
    for (size_t i = 0; i < count; i++) {
        node_audit_close(n[i].audit);
        store_close(n[i].store);
        if (!keep_dirs)
            dm_test_rmtree(n[i].dir);
        free(n[i].dir);
        n[i].dir = NULL;
    }
}

static void loop_finish(uv_loop_t *loop)
{
    /* let any remaining close callbacks run, then the loop must be empty */
    uv_run(loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* ---- submissions ---- */

typedef struct {
    tnode *n;
    int status;
    bool done;
    bool readable_at_ack; /* the share could be read when the receipt arrived */
    node_share_receipt r;
} sub_t;

static size_t g_acked, g_failed;

static void on_sub(int status, const node_share_receipt *r, void *arg)
{
    sub_t *s = arg;
    assert_false(s->done);
    s->done = true;
    s->status = status;
    if (status == DM_OK) {
        g_acked++;
        s->r = *r;
        node_share_record rec;
        s->readable_at_ack = node_share_read(s->n->svc, r->id, &rec) == DM_OK;
        if (s->readable_at_ack)
            node_share_record_free(&rec);
    } else {
        g_failed++;
    }
}

static const uint8_t RCPT[20] = {0x74, 0x2d, 0x35, 0xcc, 0x66, 0x34, 0xc0, 0x53, 0x29, 0x25,
                                 0xa3, 0xb8, 0x44, 0xbc, 0x45, 0x4e, 0x44, 0x38, 0xf4, 0x4e};

static void payload(uint8_t *buf, size_t n, size_t i)
{
    for (size_t k = 0; k < n; k++)
        buf[k] = (uint8_t)(k * 13 + i * 7 + (i >> 8));
    if (n >= 8)
        memcpy(buf, &i, sizeof i < n ? sizeof i : n);
}

/* Submit `count` shares of `size` bytes on `n`; subs must hold count entries. */
static void submit_many(tnode *n, sub_t *subs, size_t count, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    for (size_t i = 0; i < count; i++) {
        payload(buf, size, i);
        subs[i].n = n;
        char amount[32];
        snprintf(amount, sizeof amount, "%zu", i + 1);
        assert_int_equal(node_share_submit(n->svc, RCPT, amount, buf, size, on_sub, &subs[i]),
                         DM_OK);
    }
    free(buf);
}

typedef struct {
    sub_t *subs;
    size_t count;
} subs_t;

static bool subs_done(void *ctx)
{
    subs_t *s = ctx;
    for (size_t i = 0; i < s->count; i++)
        if (!s->subs[i].done)
            return false;
    return true;
}

typedef struct {
    tnode *n;
    uint64_t stored;
} stored_t;

static bool has_stored(void *ctx)
{
    stored_t *s = ctx;
    node_share_stats st;
    node_share_get_stats(s->n->svc, &st);
    return st.stored >= s->stored && st.pending_commit == 0 && st.pending_verify == 0;
}

typedef struct {
    tnode *n;
    size_t count;
    size_t peers;
} peers_t;

static bool peers_ready(void *ctx)
{
    peers_t *p = ctx;
    for (size_t i = 0; i < p->count; i++)
        if (p->n[i].npeers < p->peers)
            return false;
    return true;
}

static node_share_stats stats_of(const tnode *n)
{
    node_share_stats st;
    node_share_get_stats(n->svc, &st);
    return st;
}

static uint64_t hwm_for(const tnode *n, const uint8_t origin[32])
{
    node_share_origin_info info[16];
    size_t k = node_share_origins(n->svc, info, 16);
    for (size_t i = 0; i < k; i++)
        if (!memcmp(info[i].origin, origin, 32))
            return info[i].hwm;
    return 0;
}

/* ================================================================ service tests */

static void test_svc_local_commit(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    tnode n[1];
    node_start(&loop, &n[0], &(node_cfg){.k = 0});
    char *dir = strdup(n[0].dir);

    enum { N = 60 };
    sub_t subs[N];
    memset(subs, 0, sizeof subs);
    g_acked = g_failed = 0;
    submit_many(&n[0], subs, N, 100);
    /* nothing is acknowledged or stored before the loop has committed it */
    assert_int_equal(g_acked, 0);
    node_share_stats st = stats_of(&n[0]);
    assert_int_equal(st.pending_local, N);
    assert_int_equal(st.stored, 0);
    subs_t sw = {subs, N};
    assert_true(run_until(&loop, subs_done, &sw, 30000));
    assert_int_equal(g_acked, N);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(subs[i].status, DM_OK);
        assert_true(subs[i].readable_at_ack);
        assert_int_equal(subs[i].r.seq, i + 1); /* per-origin seq, in submission order */
        uint8_t d[100], h[32];
        payload(d, sizeof d, i);
        crypto_sha256(h, d, sizeof d);
        assert_memory_equal(subs[i].r.data_hash, h, 32);
    }
    st = stats_of(&n[0]);
    assert_int_equal(st.stored, N);
    assert_int_equal(st.local_submitted, N);
    assert_int_equal(st.pending_local, 0);
    assert_int_equal(hwm_for(&n[0], g_keys[0].id), N);
    nodes_stop(&loop, n, 1, true);
    loop_finish(&loop);

    /* reopen: every acknowledged share is there, decrypts and verifies */
    assert_int_equal(uv_loop_init(&loop), 0);
    node_start(&loop, &n[0], &(node_cfg){.k = 0, .dir = dir});
    st = stats_of(&n[0]);
    assert_int_equal(st.stored, N);
    assert_int_equal(hwm_for(&n[0], g_keys[0].id), N);
    const crypto_rsa_t *key = node_keys_rsa(g_keys[0].km);
    for (size_t i = 0; i < N; i++) {
        node_share_record rec;
        assert_int_equal(node_share_read(n[0].svc, subs[i].r.id, &rec), DM_OK);
        assert_memory_equal(rec.f.id, subs[i].r.id, 32);
        assert_memory_equal(rec.f.origin, g_keys[0].id, 32);
        assert_int_equal(rec.f.seq, i + 1);
        assert_int_equal(rec.f.data_len, 100);
        uint8_t d[100];
        payload(d, sizeof d, i);
        assert_memory_equal(rec.f.data, d, 100);
        char amount[32];
        snprintf(amount, sizeof amount, "%zu", i + 1);
        assert_string_equal(rec.f.amount, amount);
        assert_memory_equal(rec.f.recipient, RCPT, 20);
        assert_int_equal(
            crypto_rsa_verify(key, rec.body.data, rec.body.len, rec.sig.data, rec.sig.len), DM_OK);
        node_share_record_free(&rec);
    }
    /* list pages by origin and seq */
    uint8_t ids[25][32];
    uint64_t seqs[25];
    size_t cnt;
    assert_int_equal(node_share_list(n[0].svc, g_keys[0].id, 0, 25, ids, seqs, &cnt), DM_OK);
    assert_int_equal(cnt, 25);
    assert_int_equal(seqs[0], 1);
    assert_memory_equal(ids[0], subs[0].r.id, 32);
    assert_int_equal(node_share_list(n[0].svc, g_keys[0].id, 50, 25, ids, seqs, &cnt), DM_OK);
    assert_int_equal(cnt, 10);
    assert_int_equal(seqs[0], 51);
    assert_int_equal(seqs[9], 60);
    assert_int_equal(node_share_list(n[0].svc, g_keys[1].id, 0, 25, ids, seqs, &cnt), DM_OK);
    assert_int_equal(cnt, 0);
    uint8_t missing[32] = {1};
    node_share_record rec;
    assert_int_equal(node_share_read(n[0].svc, missing, &rec), DM_ENOTFOUND);

    /* numbering continues after a restart */
    sub_t more[3];
    memset(more, 0, sizeof more);
    submit_many(&n[0], more, 3, 10);
    subs_t mw = {more, 3};
    assert_true(run_until(&loop, subs_done, &mw, 20000));
    assert_int_equal(more[0].r.seq, N + 1);
    assert_int_equal(more[2].r.seq, N + 3);
    nodes_stop(&loop, n, 1, true);
    loop_finish(&loop);

    /* one audit entry per local share, the chain intact */
    store_t *s = NULL;
    store_opts so = {.create = false};
    assert_int_equal(store_open(&s, dir, &so), DM_OK);
    uint64_t entries = 0, bad = 0;
    assert_int_equal(node_audit_verify(s, &entries, &bad), DM_OK);
    assert_int_equal(entries, N + 3);
    /* and one outbox entry per share, carrying the reference's event */
    store_iter_t *it;
    assert_int_equal(store_iter_create(&it, s, STORE_CF_OUTBOX, NULL, 0, NULL, 0), DM_OK);
    const uint8_t *k, *v;
    size_t kl, vl, outbox = 0;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        json_t *j = json_loadb((const char *)v, vl, 0, NULL);
        assert_non_null(j);
        json_t *ev = json_object_get(j, "event");
        assert_string_equal(json_string_value(json_object_get(ev, "event_type")), "data_share");
        assert_int_equal(json_string_length(json_object_get(ev, "data_hash")), 64);
        assert_int_equal(json_string_length(json_object_get(ev, "share_id")), 64);
        assert_string_equal(json_string_value(json_object_get(ev, "origin")),
                            node_keys_node_id(g_keys[0].km));
        assert_string_equal(json_string_value(json_object_get(ev, "recipient")),
                            "0x742d35cc6634c0532925a3b844bc454e4438f44e");
        assert_true(json_is_integer(json_object_get(ev, "timestamp")));
        json_decref(j);
        outbox++;
    }
    assert_int_equal(store_iter_status(it), DM_OK);
    store_iter_destroy(it);
    assert_int_equal(outbox, N + 3);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

static bool contains_marker(const uint8_t *p, size_t n, const uint8_t *m, size_t mlen)
{
    return n >= mlen && memmem(p, n, m, mlen) != NULL;
}

static void test_svc_encrypted_at_rest(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    tnode n[1];
    node_start(&loop, &n[0], &(node_cfg){.k = 1});
    char *dir = strdup(n[0].dir);
    static const char MARK[] = "PLAINTEXT-PAYLOAD-MUST-NOT-BE-STORED-0123456789";
    size_t mlen = strlen(MARK);
    enum { N = 5 };
    sub_t subs[N];
    memset(subs, 0, sizeof subs);
    for (size_t i = 0; i < N; i++) {
        uint8_t data[400];
        for (size_t k = 0; k + mlen <= sizeof data; k += mlen)
            memcpy(data + k, MARK, mlen);
        subs[i].n = &n[0];
        assert_int_equal(
            node_share_submit(n[0].svc, RCPT, "5", data, sizeof data, on_sub, &subs[i]), DM_OK);
    }
    subs_t sw = {subs, N};
    assert_true(run_until(&loop, subs_done, &sw, 20000));
    /* readable through the service */
    node_share_record rec;
    assert_int_equal(node_share_read(n[0].svc, subs[0].r.id, &rec), DM_OK);
    assert_true(contains_marker(rec.f.data, rec.f.data_len, (const uint8_t *)MARK, mlen));
    node_share_record_free(&rec);
    /* but no raw value in any column family holds the payload */
    for (int cf = 0; cf < STORE_CF__COUNT; cf++) {
        store_iter_t *it;
        assert_int_equal(store_iter_create(&it, n[0].store, (store_cf)cf, NULL, 0, NULL, 0), DM_OK);
        const uint8_t *k, *v;
        size_t kl, vl;
        size_t seen = 0;
        while (store_iter_next(it, &k, &kl, &v, &vl)) {
            assert_false(contains_marker(v, vl, (const uint8_t *)MARK, mlen));
            assert_false(contains_marker(k, kl, (const uint8_t *)MARK, mlen));
            seen++;
        }
        store_iter_destroy(it);
        if (cf == STORE_CF_SHARES)
            assert_int_equal(seen, N);
    }
    nodes_stop(&loop, n, 1, true);
    loop_finish(&loop);
    /* nor any file RocksDB wrote (WAL, SST, manifest) */
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    size_t files = 0;
    while ((e = readdir(d))) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) || !S_ISREG(sb.st_mode))
            continue;
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t *buf = malloc((size_t)sb.st_size + 1);
        size_t got = fread(buf, 1, (size_t)sb.st_size, f);
        fclose(f);
        assert_false(contains_marker(buf, got, (const uint8_t *)MARK, mlen));
        free(buf);
        files++;
    }
    closedir(d);
    assert_true(files > 0);
    dm_test_rmtree(dir);
    free(dir);
}

static void test_svc_reencrypt(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    tnode n[1];
    node_start(&loop, &n[0], &(node_cfg){.k = 2});
    char *dir = strdup(n[0].dir);
    enum { N = 300 }; /* more than one re-encryption batch */
    sub_t *subs = calloc(N, sizeof *subs);
    submit_many(&n[0], subs, N, 64);
    subs_t sw = {subs, N};
    assert_true(run_until(&loop, subs_done, &sw, 30000));
    nodes_stop(&loop, n, 1, true);
    loop_finish(&loop);

    node_keys_t *km = g_keys[2].km;
    uint32_t old = node_keys_current_version(km), ver = 0;
    assert_int_equal(node_keys_rotate(km, &ver), DM_OK);
    assert_int_equal(ver, old + 1);
    store_t *st = NULL;
    store_opts so = {.create = false};
    assert_int_equal(store_open(&st, dir, &so), DM_OK);
    uint64_t moved = 0, total = 0;
    assert_int_equal(node_share__reencrypt(st, km, &moved, &total), DM_OK);
    assert_int_equal(moved, N);
    assert_int_equal(total, N);
    /* every record is now under the new version */
    store_iter_t *it;
    assert_int_equal(store_iter_create(&it, st, STORE_CF_SHARES, NULL, 0, NULL, 0), DM_OK);
    const uint8_t *k, *v;
    size_t kl, vl;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        const uint8_t *sv, *sig;
        size_t sl, sigl;
        uint64_t rms;
        uint32_t sver;
        assert_int_equal(node_share__record_decode(v, vl, &sv, &sl, &sig, &sigl, &rms), DM_OK);
        assert_int_equal(node_keys_sealed_version(sv, sl, &sver), DM_OK);
        assert_int_equal(sver, ver);
    }
    store_iter_destroy(it);
    /* running again moves nothing */
    assert_int_equal(node_share__reencrypt(st, km, &moved, &total), DM_OK);
    assert_int_equal(moved, 0);
    assert_int_equal(total, N);
    store_close(st);

    /* the shares read back unchanged, signature and all */
    assert_int_equal(uv_loop_init(&loop), 0);
    node_start(&loop, &n[0], &(node_cfg){.k = 2, .dir = dir});
    for (size_t i = 0; i < N; i += 29) {
        node_share_record rec;
        assert_int_equal(node_share_read(n[0].svc, subs[i].r.id, &rec), DM_OK);
        assert_int_equal(rec.f.seq, i + 1);
        uint8_t d[64];
        payload(d, sizeof d, i);
        assert_memory_equal(rec.f.data, d, sizeof d);
        assert_int_equal(crypto_rsa_verify(node_keys_rsa(km), rec.body.data, rec.body.len,
                                           rec.sig.data, rec.sig.len),
                         DM_OK);
        node_share_record_free(&rec);
    }
    nodes_stop(&loop, n, 1, false);
    loop_finish(&loop);
    free(subs);
    free(dir);
}

static void test_svc_limits_and_close(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    tnode n[1];
    node_start(&loop, &n[0], &(node_cfg){.k = 2, .max_pending = 4});
    sub_t subs[6];
    memset(subs, 0, sizeof subs);
    g_acked = g_failed = 0;
    uint8_t d[16] = {1, 2, 3};
    for (int i = 0; i < 4; i++) {
        subs[i].n = &n[0];
        assert_int_equal(node_share_submit(n[0].svc, RCPT, "7", d, sizeof d, on_sub, &subs[i]),
                         DM_OK);
    }
    /* a burst beyond max_pending is refused at once */
    assert_int_equal(node_share_submit(n[0].svc, RCPT, "7", d, sizeof d, on_sub, &subs[4]),
                     DM_ELIMIT);
    /* invalid input is refused before anything is queued */
    assert_int_equal(node_share_submit(n[0].svc, RCPT, "0", d, sizeof d, on_sub, &subs[5]),
                     DM_ERANGE);
    assert_int_equal(node_share_submit(n[0].svc, RCPT, "1.5", d, sizeof d, on_sub, &subs[5]),
                     DM_EINVAL);
    uint8_t *big = calloc(1, ((size_t)1 << 20) + 1);
    assert_int_equal(
        node_share_submit(n[0].svc, RCPT, "1", big, ((size_t)1 << 20) + 1, on_sub, &subs[5]),
        DM_ETOOBIG);
    free(big);
    subs_t sw = {subs, 4};
    assert_true(run_until(&loop, subs_done, &sw, 20000));
    assert_int_equal(g_acked, 4);
    assert_false(subs[4].done);

    /* closing with submissions in flight: each gets exactly one answer, and
     * whatever was acknowledged is in the store */
    sub_t late[4];
    memset(late, 0, sizeof late);
    for (int i = 0; i < 4; i++) {
        late[i].n = &n[0];
        assert_int_equal(node_share_submit(n[0].svc, RCPT, "9", d, sizeof d, on_sub, &late[i]),
                         DM_OK);
    }
    node_share_svc_t *svc = n[0].svc;
    node_share_svc_close(svc, on_svc_closed, &n[0]);
    assert_int_equal(node_share_submit(svc, RCPT, "9", d, sizeof d, on_sub, &subs[5]), DM_ECLOSED);
    nodes_t ns = {n, 1};
    assert_true(run_until(&loop, all_closed, &ns, 20000));
    for (int i = 0; i < 4; i++) {
        assert_true(late[i].done);
        assert_true(late[i].status == DM_OK || late[i].status == DM_ECLOSED);
    }
    nodes_stop(&loop, n, 1, false);
    loop_finish(&loop);
}

/* ---- two or more nodes over loopback ---- */

static void frame_of_share(node_share_svc_t *svc, const uint8_t id[32], dm_buf *frame)
{
    node_share_record rec;
    assert_int_equal(node_share_read(svc, id, &rec), DM_OK);
    assert_int_equal(
        net_msg_encode_share(frame, rec.body.data, rec.body.len, rec.sig.data, rec.sig.len), DM_OK);
    node_share_record_free(&rec);
}

typedef struct {
    tnode *n;
    uint64_t invalid, conflicts, duplicates;
} counts_t;

static bool counts_reached(void *ctx)
{
    counts_t *c = ctx;
    node_share_stats st = stats_of(c->n);
    return st.invalid >= c->invalid && st.conflicts >= c->conflicts &&
           st.duplicates >= c->duplicates && st.pending_verify == 0 && st.pending_commit == 0;
}

static bool never(void *ctx)
{
    (void)ctx;
    return false;
}

typedef struct {
    tnode *a, *b;
    uint64_t duplicates; /* together */
} pair_dups_t;

static bool pair_dups_reached(void *ctx)
{
    pair_dups_t *c = ctx;
    node_share_stats x = stats_of(c->a), y = stats_of(c->b);
    return x.duplicates + y.duplicates >= c->duplicates && x.pending_verify == 0 &&
           x.pending_commit == 0 && y.pending_verify == 0 && y.pending_commit == 0;
}

static void test_svc_gossip_pair(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    tnode n[2];
    node_start(&loop, &n[0], &(node_cfg){.k = 0, .with_host = true});
    /* B remembers only 16 ids: replays are then caught by the store check */
    node_start(&loop, &n[1],
               &(node_cfg){.k = 1, .with_host = true, .bootstrap = &n[0], .seen_cache = 16});
    peers_t pw = {n, 2, 1};
    assert_true(run_until(&loop, peers_ready, &pw, 10000));

    enum { N = 200 };
    sub_t *subs = calloc(N, sizeof *subs);
    g_acked = g_failed = 0;
    submit_many(&n[0], subs, N, 1024);
    subs_t sw = {subs, N};
    assert_true(run_until(&loop, subs_done, &sw, 30000));
    stored_t sb = {&n[1], N};
    assert_true(run_until(&loop, has_stored, &sb, 30000));
    node_share_stats a = stats_of(&n[0]), b = stats_of(&n[1]);
    assert_int_equal(b.stored, N);
    assert_int_equal(b.verify_calls, N); /* one verification per share */
    assert_int_equal(b.invalid, 0);
    assert_int_equal(b.conflicts, 0);
    assert_int_equal(a.relayed, N);      /* the origin sends each once */
    assert_int_equal(a.verify_calls, 0); /* and never verifies its own */
    assert_int_equal(hwm_for(&n[1], g_keys[0].id), N);
    /* B holds the same share bytes (body and signature) as A */
    for (size_t i = 0; i < N; i += 37) {
        node_share_record ra, rb;
        assert_int_equal(node_share_read(n[0].svc, subs[i].r.id, &ra), DM_OK);
        assert_int_equal(node_share_read(n[1].svc, subs[i].r.id, &rb), DM_OK);
        assert_int_equal(ra.body.len, rb.body.len);
        assert_memory_equal(ra.body.data, rb.body.data, ra.body.len);
        assert_memory_equal(ra.sig.data, rb.sig.data, ra.sig.len);
        node_share_record_free(&ra);
        node_share_record_free(&rb);
    }

    /* replaying every share is dropped as a duplicate before any crypto */
    assert_int_equal(n[0].npeers, 1);
    net_peer_t *ab = n[0].peers[0];
    for (size_t i = 0; i < N; i++) {
        dm_buf f = DM_BUF_INIT;
        frame_of_share(n[0].svc, subs[i].r.id, &f);
        assert_int_equal(net_peer_send_bytes(ab, f.data, f.len), DM_OK);
        dm_buf_free(&f);
    }
    counts_t c = {&n[1], 0, 0, b.duplicates + N};
    assert_true(run_until(&loop, counts_reached, &c, 10000));
    node_share_stats b2 = stats_of(&n[1]);
    assert_int_equal(b2.verify_calls, N); /* not one more verification */
    /* at least the N replays; a periodic sync exchange running meanwhile (slow machines,
     * sanitizers) may add copies of its own, dropped the same way */
    assert_true(b2.duplicates >= b.duplicates + N);
    assert_int_equal(b2.stored, N);

    /* a conflicting body for an (origin, seq) B holds, validly signed by A:
     * rejected before verification, scored, not stored */
    node_share_fields f;
    memset(&f, 0, sizeof f);
    memcpy(f.origin, g_keys[0].id, 32);
    f.seq = 5;
    f.timestamp_ms = 1;
    memcpy(f.recipient, RCPT, 20);
    strcpy(f.amount, "3");
    uint8_t pd[10] = {9, 9, 9};
    f.data = pd;
    f.data_len = sizeof pd;
    crypto_sha256(f.data_hash, pd, sizeof pd);
    dm_buf body = DM_BUF_INIT, sig = DM_BUF_INIT, fr = DM_BUF_INIT;
    assert_int_equal(node_share_body_encode(&body, &f), DM_OK);
    assert_int_equal(crypto_rsa_sign(node_keys_rsa(g_keys[0].km), body.data, body.len, &sig),
                     DM_OK);
    assert_int_equal(net_msg_encode_share(&fr, body.data, body.len, sig.data, sig.len), DM_OK);
    assert_int_equal(net_peer_send_bytes(ab, fr.data, fr.len), DM_OK);
    c = (counts_t){&n[1], 0, 1, 0};
    assert_true(run_until(&loop, counts_reached, &c, 10000));
    uint8_t cid[32];
    crypto_sha256(cid, body.data, body.len);
    node_share_record rec;
    assert_int_equal(node_share_read(n[1].svc, cid, &rec), DM_ENOTFOUND);
    assert_int_equal(stats_of(&n[1]).verify_calls, N);

    /* a new share with a bad signature: verified once, rejected, not stored */
    f.seq = N + 1;
    dm_buf_reset(&body);
    dm_buf_reset(&sig);
    dm_buf_reset(&fr);
    assert_int_equal(node_share_body_encode(&body, &f), DM_OK);
    assert_int_equal(crypto_rsa_sign(node_keys_rsa(g_keys[0].km), body.data, body.len, &sig),
                     DM_OK);
    sig.data[10] ^= 0x40;
    assert_int_equal(net_msg_encode_share(&fr, body.data, body.len, sig.data, sig.len), DM_OK);
    assert_int_equal(net_peer_send_bytes(ab, fr.data, fr.len), DM_OK);
    c = (counts_t){&n[1], 1, 1, 0};
    assert_true(run_until(&loop, counts_reached, &c, 10000));
    crypto_sha256(cid, body.data, body.len);
    assert_int_equal(node_share_read(n[1].svc, cid, &rec), DM_ENOTFOUND);
    node_share_stats b3 = stats_of(&n[1]);
    assert_int_equal(b3.verify_calls, N + 1);
    assert_int_equal(b3.stored, N);
    assert_int_equal(hwm_for(&n[1], g_keys[0].id), N);

    /* the bad signature cost A its connection; it dials again, and the genuine
     * share (same body, good signature) is still accepted afterwards */
    assert_true(run_until(&loop, peers_ready, &pw, 10000));
    dm_buf_reset(&sig);
    dm_buf_reset(&fr);
    assert_int_equal(crypto_rsa_sign(node_keys_rsa(g_keys[0].km), body.data, body.len, &sig),
                     DM_OK);
    assert_int_equal(net_msg_encode_share(&fr, body.data, body.len, sig.data, sig.len), DM_OK);
    assert_int_equal(net_peer_send_bytes(n[0].peers[0], fr.data, fr.len), DM_OK);
    sb = (stored_t){&n[1], N + 1};
    assert_true(run_until(&loop, has_stored, &sb, 10000));
    assert_int_equal(node_share_read(n[1].svc, cid, &rec), DM_OK);
    node_share_record_free(&rec);
    assert_int_equal(stats_of(&n[1]).verify_calls, N + 2);

    /* a malformed body: invalid without any verification */
    uint64_t inv = stats_of(&n[1]).invalid;
    assert_true(run_until(&loop, peers_ready, &pw, 10000));
    dm_buf_reset(&fr);
    body.data[body.len - 1] ^= 1; /* data_hash no longer matches */
    assert_int_equal(net_msg_encode_share(&fr, body.data, body.len, sig.data, sig.len), DM_OK);
    assert_int_equal(net_peer_send_bytes(n[0].peers[0], fr.data, fr.len), DM_OK);
    c = (counts_t){&n[1], inv + 1, 1, 0};
    assert_true(run_until(&loop, counts_reached, &c, 10000));
    assert_int_equal(stats_of(&n[1]).verify_calls, N + 2);

    dm_buf_free(&body);
    dm_buf_free(&sig);
    dm_buf_free(&fr);
    free(subs);
    nodes_stop(&loop, n, 2, false);
    loop_finish(&loop);
}

static void test_svc_gossip_mesh_and_line(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    /* line A - B - C: C never talks to A, so it must ask B for A's key (KEYREQ) */
    tnode n[3];
    node_start(&loop, &n[0],
               &(node_cfg){.k = 0, .with_host = true, .max_in = 8, .max_out = UINT32_MAX});
    node_start(
        &loop, &n[1],
        &(node_cfg){.k = 1, .with_host = true, .bootstrap = &n[0], .max_in = 8, .max_out = 1});
    node_start(
        &loop, &n[2],
        &(node_cfg){
            .k = 2, .with_host = true, .bootstrap = &n[1], .max_in = UINT32_MAX, .max_out = 1});
    peers_t pw = {n, 3, 1};
    assert_true(run_until(&loop, peers_ready, &pw, 10000));
    peers_t pb = {&n[1], 1, 2};
    assert_true(run_until(&loop, peers_ready, &pb, 10000));

    enum { N = 50 };
    sub_t subs[N];
    memset(subs, 0, sizeof subs);
    submit_many(&n[0], subs, N, 256);
    subs_t sw = {subs, N};
    assert_true(run_until(&loop, subs_done, &sw, 30000));
    stored_t sc = {&n[2], N};
    assert_true(run_until(&loop, has_stored, &sc, 30000));
    stored_t sb = {&n[1], N};
    assert_true(run_until(&loop, has_stored, &sb, 30000));
    for (int i = 1; i < 3; i++) {
        node_share_stats st = stats_of(&n[i]);
        assert_int_equal(st.stored, N);
        assert_int_equal(st.verify_calls, N);
        assert_int_equal(st.invalid, 0);
    }
    assert_int_equal(n[2].npeers, 1);
    /* C learned A's key from B and persisted it */
    uint8_t kk[36];
    memcpy(kk, "key/", 4);
    memcpy(kk + 4, g_keys[0].id, 32);
    dm_buf spki = DM_BUF_INIT, own = DM_BUF_INIT;
    assert_int_equal(store_get(n[2].store, STORE_CF_PEERS, kk, sizeof kk, &spki), DM_OK);
    assert_int_equal(crypto_rsa_spki(node_keys_rsa(g_keys[0].km), &own), DM_OK);
    assert_int_equal(spki.len, own.len);
    assert_memory_equal(spki.data, own.data, own.len);
    dm_buf_free(&spki);
    dm_buf_free(&own);

    /* shares from the middle reach both ends; C relays nothing back to B twice */
    sub_t mid[10];
    memset(mid, 0, sizeof mid);
    submit_many(&n[1], mid, 10, 64);
    subs_t mw = {mid, 10};
    assert_true(run_until(&loop, subs_done, &mw, 20000));
    stored_t s0 = {&n[0], N + 10}, s2 = {&n[2], N + 10};
    assert_true(run_until(&loop, has_stored, &s0, 20000));
    assert_true(run_until(&loop, has_stored, &s2, 20000));
    assert_int_equal(stats_of(&n[0]).verify_calls, 10);
    assert_int_equal(stats_of(&n[2]).verify_calls, N + 10);
    nodes_stop(&loop, n, 3, false);
    loop_finish(&loop);

    /* full mesh of three: every node gets each share from two sides; the second
     * copy is a duplicate dropped before verification */
    assert_int_equal(uv_loop_init(&loop), 0);
    node_start(&loop, &n[0], &(node_cfg){.k = 0, .with_host = true});
    node_start(&loop, &n[1], &(node_cfg){.k = 1, .with_host = true, .bootstrap = &n[0]});
    node_start(&loop, &n[2], &(node_cfg){.k = 2, .with_host = true, .bootstrap = &n[0]});
    peers_t pm = {n, 3, 2};
    assert_true(run_until(&loop, peers_ready, &pm, 15000)); /* peer exchange fills the mesh */
    sub_t ms[N];
    memset(ms, 0, sizeof ms);
    submit_many(&n[0], ms, N, 512);
    subs_t msw = {ms, N};
    assert_true(run_until(&loop, subs_done, &msw, 30000));
    stored_t m1 = {&n[1], N}, m2 = {&n[2], N};
    assert_true(run_until(&loop, has_stored, &m1, 30000));
    assert_true(run_until(&loop, has_stored, &m2, 30000));
    /* the relays arrive too. A node does not relay a share back to its origin, nor
     * to a peer that sent it a copy while it was in the pipeline, so of the two
     * relays between B and C at least one is sent (whoever commits first cannot
     * have B's or C's copy yet): wait for N duplicates between them, then check
     * that no share was verified twice and that the origin got nothing back */
    assert_true(run_until(&loop, pair_dups_reached, &(pair_dups_t){&n[1], &n[2], N}, 20000));
    assert_false(run_until(&loop, never, NULL, 200)); /* stragglers */
    for (int i = 1; i < 3; i++) {
        node_share_stats st = stats_of(&n[i]);
        assert_int_equal(st.verify_calls, N);
        assert_int_equal(st.stored, N);
        assert_true(st.duplicates <= N);
    }
    assert_int_equal(stats_of(&n[0]).received, 0);
    assert_int_equal(stats_of(&n[0]).duplicates, 0);
    nodes_stop(&loop, n, 3, false);
    loop_finish(&loop);
}

/* A signed share of key set k (valid unless the caller alters it). */
static void make_share(int k, uint64_t seq, dm_buf *body, dm_buf *sig)
{
    node_share_fields f;
    memset(&f, 0, sizeof f);
    memcpy(f.origin, g_keys[k].id, 32);
    f.seq = seq;
    f.timestamp_ms = 1705312200000ull + seq;
    memcpy(f.recipient, RCPT, 20);
    snprintf(f.amount, sizeof f.amount, "%llu", (unsigned long long)seq);
    uint8_t d[32];
    memset(d, (int)seq, sizeof d);
    f.data = d;
    f.data_len = sizeof d;
    crypto_sha256(f.data_hash, d, sizeof d);
    dm_buf_reset(body);
    dm_buf_reset(sig);
    assert_int_equal(node_share_body_encode(body, &f), DM_OK);
    assert_int_equal(crypto_rsa_sign(node_keys_rsa(g_keys[k].km), body->data, body->len, sig),
                     DM_OK);
}

typedef struct {
    size_t *counter;
    size_t want;
} count_t;

static bool counter_reached(void *ctx)
{
    count_t *c = ctx;
    return *c->counter >= c->want;
}

static uint32_t score_of(const tnode *n)
{
    net_peer_info info[MAXPEERS];
    size_t k = net_host_peers(n->host, info, MAXPEERS);
    return k ? info[0].score : 0;
}

typedef struct {
    tnode *n;
    uint64_t disc;
} disc_t;

static bool disconnected(void *ctx)
{
    disc_t *d = ctx;
    net_host_stats st;
    net_host_get_stats(d->n->host, &st);
    return st.disconnects_misbehaviour >= d->disc;
}

static void test_svc_hostile_sync_peer(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    memset(&g_h, 0, sizeof g_h);
    tnode n[2];
    node_start(&loop, &n[0], &(node_cfg){.k = 1, .with_host = true, .sync_page = 16});
    node_start(&loop, &n[1],
               &(node_cfg){.k = 2, .with_host = true, .bootstrap = &n[0], .no_svc = true});
    tnode *B = &n[0], *H = &n[1];
    peers_t pw = {n, 2, 1};
    assert_true(run_until(&loop, peers_ready, &pw, 10000));
    const uint8_t *A = g_keys[0].id; /* an origin B has never met */
    dm_buf fr = DM_BUF_INIT, body = DM_BUF_INIT, sig = DM_BUF_INIT;

    /* a SYNC_RESP nobody asked for: scored, not disconnected */
    net_syncresp_builder sb;
    assert_int_equal(net_msg_syncresp_begin(&sb, &fr, A), DM_OK);
    assert_int_equal(net_msg_syncresp_end(&sb, false), DM_OK);
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    run_until(&loop, never, NULL, 200);
    assert_true(score_of(B) >= 10);
    assert_int_equal(B->npeers, 1);

    /* H claims five shares of A, three times: B asks once (one request per peer) */
    net_hwm_entry e;
    memcpy(e.origin, A, 32);
    e.seq = 5;
    for (int i = 0; i < 3; i++) {
        dm_buf_reset(&fr);
        assert_int_equal(net_msg_encode_hwm(&fr, &e, 1), DM_OK);
        assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
        run_until(&loop, never, NULL, 300);
    }
    assert_int_equal(g_h.syncreqs, 1);
    assert_memory_equal(g_h.syncreq_origin, A, 32);
    assert_int_equal(g_h.syncreq_from, 1);
    assert_int_equal(g_h.syncreq_limit, 16);

    /* a page outside the requested range: misbehaviour, disconnect, nothing stored */
    make_share(0, 200, &body, &sig);
    dm_buf_reset(&fr);
    assert_int_equal(net_msg_syncresp_begin(&sb, &fr, A), DM_OK);
    assert_int_equal(net_msg_syncresp_add(&sb, body.data, body.len, sig.data, sig.len), DM_OK);
    assert_int_equal(net_msg_syncresp_end(&sb, false), DM_OK);
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    disc_t dw = {B, 1};
    assert_true(run_until(&loop, disconnected, &dw, 5000));
    assert_int_equal(stats_of(B).invalid, 1);
    assert_int_equal(stats_of(B).verify_calls, 0);

    /* H dials again; this time it answers properly, but B does not know A's key:
     * it parks the page and asks H with KEYREQ */
    assert_true(run_until(&loop, peers_ready, &pw, 10000));
    dm_buf_reset(&fr);
    assert_int_equal(net_msg_encode_hwm(&fr, &e, 1), DM_OK);
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    count_t cw = {&g_h.syncreqs, 2};
    assert_true(run_until(&loop, counter_reached, &cw, 5000));
    assert_int_equal(g_h.syncreq_from, 1);
    dm_buf page = DM_BUF_INIT;
    assert_int_equal(net_msg_syncresp_begin(&sb, &page, A), DM_OK);
    for (uint64_t q = 1; q <= 5; q++) {
        make_share(0, q, &body, &sig);
        assert_int_equal(net_msg_syncresp_add(&sb, body.data, body.len, sig.data, sig.len), DM_OK);
    }
    assert_int_equal(net_msg_syncresp_end(&sb, false), DM_OK);
    assert_int_equal(net_peer_send_bytes(H->peers[0], page.data, page.len), DM_OK);
    count_t kw = {&g_h.keyreqs, 1};
    assert_true(run_until(&loop, counter_reached, &kw, 5000));
    assert_memory_equal(g_h.keyreq_id, A, 32);
    assert_int_equal(stats_of(B).stored, 0);
    assert_int_equal(stats_of(B).pending_verify, 5); /* parked */
    /* a KEY that does not hash to the requested id is not accepted */
    dm_buf spki = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_spki(node_keys_rsa(g_keys[2].km), &spki), DM_OK);
    dm_buf_reset(&fr);
    assert_int_equal(net_msg_encode_key(&fr, spki.data, spki.len), DM_OK);
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    run_until(&loop, never, NULL, 200);
    assert_int_equal(stats_of(B).stored, 0);
    assert_int_equal(stats_of(B).verify_calls, 0);
    /* the right key: the parked page is verified once each and committed */
    dm_buf_reset(&spki);
    assert_int_equal(crypto_rsa_spki(node_keys_rsa(g_keys[0].km), &spki), DM_OK);
    dm_buf_reset(&fr);
    assert_int_equal(net_msg_encode_key(&fr, spki.data, spki.len), DM_OK);
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    stored_t sw = {B, 5};
    assert_true(run_until(&loop, has_stored, &sw, 5000));
    node_share_stats st = stats_of(B);
    assert_int_equal(st.verify_calls, 5);
    assert_int_equal(st.synced_in, 5);
    assert_int_equal(st.relayed, 0);
    assert_int_equal(hwm_for(B, A), 5);
    /* the same page again: all duplicates, no crypto */
    dm_buf_reset(&fr);
    assert_int_equal(net_msg_encode_hwm(&fr, &e, 1), DM_OK); /* still claims only 5: no request */
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    run_until(&loop, never, NULL, 300);
    assert_int_equal(g_h.syncreqs, 2);
    dm_buf_free(&page);
    dm_buf_free(&spki);
    dm_buf_free(&fr);
    dm_buf_free(&body);
    dm_buf_free(&sig);
    nodes_stop(&loop, n, 2, false);
    loop_finish(&loop);
}

/* a submission whose callback submits once more */
typedef struct {
    sub_t first, again;
} resub_t;

static void on_resub(int status, const node_share_receipt *r, void *arg)
{
    resub_t *rs = arg;
    on_sub(status, r, &rs->first);
    uint8_t d[8] = {4, 3, 2, 1};
    rs->again.n = rs->first.n;
    assert_int_equal(
        node_share_submit(rs->first.n->svc, RCPT, "8", d, sizeof d, on_sub, &rs->again), DM_OK);
}

static bool resub_done(void *ctx)
{
    resub_t *rs = ctx;
    return rs->first.done && rs->again.done;
}

static void test_svc_local_conflict(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    tnode n[2];
    node_start(&loop, &n[0], &(node_cfg){.k = 1, .with_host = true});
    node_start(&loop, &n[1],
               &(node_cfg){.k = 2, .with_host = true, .bootstrap = &n[0], .no_svc = true});
    tnode *B = &n[0];
    peers_t pw = {n, 2, 1};
    assert_true(run_until(&loop, peers_ready, &pw, 10000));
    /* B's own seq 1 as the network knows it (B lost its data, say) arrives as
     * gossip and is verified first ... */
    dm_buf body = DM_BUF_INIT, sig = DM_BUF_INIT, fr = DM_BUF_INIT;
    make_share(1, 1, &body, &sig);
    assert_int_equal(net_msg_encode_share(&fr, body.data, body.len, sig.data, sig.len), DM_OK);
    net_msg m;
    assert_int_equal(net_msg_decode(fr.data + 4, fr.len - 4, &m), DM_OK);
    node_share_on_message(B->svc, B->peers[0], &m, fr.data, fr.len);
    usleep(50000); /* the verification job has finished */
    /* ... while a local submission was given seq 1 too: it is signed after the
     * gossiped share was verified, so it reaches the commit second and conflicts */
    resub_t rs;
    memset(&rs, 0, sizeof rs);
    rs.first.n = B;
    uint8_t d[8] = {1, 2, 3, 4};
    assert_int_equal(node_share_submit(B->svc, RCPT, "8", d, sizeof d, on_resub, &rs), DM_OK);
    usleep(50000);
    assert_true(run_until(&loop, resub_done, &rs, 10000));
    assert_int_equal(rs.first.status, DM_EEXIST);
    /* the callback's new submission got a fresh seq after the one now held */
    assert_int_equal(rs.again.status, DM_OK);
    assert_int_equal(rs.again.r.seq, 2);
    assert_true(rs.again.readable_at_ack);
    stored_t sw = {B, 2};
    assert_true(run_until(&loop, has_stored, &sw, 5000));
    assert_int_equal(hwm_for(B, g_keys[1].id), 2);
    node_share_stats st = stats_of(B);
    assert_int_equal(st.stored, 2);
    assert_int_equal(st.pending_local, 0);
    /* the network's seq 1 is what B holds */
    uint8_t id[32];
    crypto_sha256(id, body.data, body.len);
    node_share_record rec;
    assert_int_equal(node_share_read(B->svc, id, &rec), DM_OK);
    assert_int_equal(rec.f.seq, 1);
    node_share_record_free(&rec);
    dm_buf_free(&body);
    dm_buf_free(&sig);
    dm_buf_free(&fr);
    nodes_stop(&loop, n, 2, false);
    loop_finish(&loop);
}

typedef struct {
    tnode *n;
    const uint8_t *origin;
    uint64_t hwm;
} hwm_t;

static bool hwm_reached(void *ctx)
{
    hwm_t *h = ctx;
    node_share_stats st = stats_of(h->n);
    return hwm_for(h->n, h->origin) >= h->hwm && st.pending_commit == 0 && st.pending_verify == 0;
}

static void sync_catch_up(size_t count, size_t size, uint32_t page, uint64_t deadline_ms)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    tnode n[2];
    node_start(&loop, &n[0], &(node_cfg){.k = 0, .with_host = true, .sync_page = page});
    sub_t *subs = calloc(count, sizeof *subs);
    /* submit in chunks below max_pending */
    for (size_t done = 0; done < count;) {
        size_t chunk = count - done < 2000 ? count - done : 2000;
        uint8_t *buf = malloc(size);
        for (size_t i = done; i < done + chunk; i++) {
            payload(buf, size, i);
            subs[i].n = &n[0];
            assert_int_equal(node_share_submit(n[0].svc, RCPT, "1", buf, size, on_sub, &subs[i]),
                             DM_OK);
        }
        free(buf);
        subs_t sw = {subs + done, chunk};
        assert_true(run_until(&loop, subs_done, &sw, 120000));
        done += chunk;
    }
    assert_int_equal(stats_of(&n[0]).stored, count);
    /* a late joiner with an empty store: nothing is gossiped any more, it pulls
     * everything in pages through HWM / SYNCREQ */
    node_start(&loop, &n[1],
               &(node_cfg){.k = 1, .with_host = true, .bootstrap = &n[0], .sync_page = page});
    uint64_t t0 = uv_hrtime();
    hwm_t hw = {&n[1], g_keys[0].id, count};
    assert_true(run_until(&loop, hwm_reached, &hw, deadline_ms));
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    node_share_stats a = stats_of(&n[0]), b = stats_of(&n[1]);
    assert_int_equal(b.stored, count);
    assert_int_equal(b.synced_in, count);
    assert_int_equal(b.verify_calls, count);
    assert_int_equal(b.invalid, 0);
    assert_int_equal(b.relayed, 0); /* synced shares are not re-flooded */
    assert_true(a.synced_out >= count);
    print_message("      sync of %zu shares (%zu B, page %u): %.2f s, %.0f shares/s\n", count, size,
                  page, secs, (double)count / secs);
    /* spot-check contents */
    for (size_t i = 0; i < count; i += count / 7 + 1) {
        node_share_record rec;
        assert_int_equal(node_share_read(n[1].svc, subs[i].r.id, &rec), DM_OK);
        assert_int_equal(rec.f.seq, i + 1);
        node_share_record_free(&rec);
    }
    free(subs);
    nodes_stop(&loop, n, 2, false);
    loop_finish(&loop);
}

static void test_svc_sync_two_sources(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    enum { N = 600, PAGE = 64 };
    tnode n[3];
    node_start(&loop, &n[0], &(node_cfg){.k = 0, .with_host = true, .sync_page = PAGE});
    sub_t *subs = calloc(N, sizeof *subs);
    submit_many(&n[0], subs, N, 300);
    subs_t sw = {subs, N};
    assert_true(run_until(&loop, subs_done, &sw, 60000));
    node_start(&loop, &n[1],
               &(node_cfg){.k = 1, .with_host = true, .bootstrap = &n[0], .sync_page = PAGE});
    hwm_t hb = {&n[1], g_keys[0].id, N};
    assert_true(run_until(&loop, hwm_reached, &hb, 30000));
    uint64_t a_before = stats_of(&n[0]).synced_out;
    /* C dials both at once: each advertises origin A at N, but C pages A's range
     * from one of them at a time */
    node_start(
        &loop, &n[2],
        &(node_cfg){
            .k = 2, .with_host = true, .bootstrap = &n[0], .bootstrap2 = &n[1], .sync_page = PAGE});
    hwm_t hc = {&n[2], g_keys[0].id, N};
    assert_true(run_until(&loop, hwm_reached, &hc, 30000));
    node_share_stats c = stats_of(&n[2]);
    assert_int_equal(c.stored, N);
    assert_int_equal(c.verify_calls, N);
    uint64_t served = stats_of(&n[0]).synced_out - a_before + stats_of(&n[1]).synced_out;
    print_message("      late joiner with two sources: %llu shares served for %d\n",
                  (unsigned long long)served, N);
    assert_true(served >= N);
    assert_true(served <= N + 2 * PAGE);
    assert_true(c.duplicates <= 2 * PAGE);
    free(subs);
    nodes_stop(&loop, n, 3, false);
    loop_finish(&loop);
}

static void test_svc_sync_pages(void **state)
{
    (void)state;
    sync_catch_up(300, 200, 64, 30000);
}

static void test_svc_sync_late_joiner_10k(void **state)
{
    (void)state;
    sync_catch_up(10000, 1024, 128, 120000);
}

/* ================================================================ anchor notices */

static void leaf_of_event(const json_t *ev, uint8_t leaf[32])
{
    char *canon = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(canon);
    crypto_merkle_leaf_hash(leaf, canon, strlen(canon));
    free(canon);
}

/* The batch the anchorer would form from a node's outbox (every entry, in seq order), and
 * one more event that names no share. Returns the count. */
static size_t final_from_outbox(store_t *st, chain_anchor_final_item *items, size_t max)
{
    store_iter_t *it;
    assert_int_equal(store_iter_create(&it, st, STORE_CF_OUTBOX, NULL, 0, NULL, 0), DM_OK);
    const uint8_t *k, *v;
    size_t kl, vl, n = 0;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        assert_true(n + 1 < max);
        json_t *o = json_loadb((const char *)v, vl, 0, NULL);
        json_t *ev = json_object_get(o, "event");
        chain_anchor_final_item *x = &items[n++];
        memset(x, 0, sizeof *x);
        leaf_of_event(ev, x->leaf);
        x->audit_seq = (uint64_t)json_integer_value(json_object_get(o, "audit_seq"));
        assert_int_equal(
            dm_hex_decode(x->entry_hash, 32, json_string_value(json_object_get(o, "entry_hash")), 64),
            DM_OK);
        assert_int_equal(
            dm_hex_decode(x->share_id, 32, json_string_value(json_object_get(ev, "share_id")), 64),
            DM_OK);
        x->has_share = true;
        json_decref(o);
    }
    assert_int_equal(store_iter_status(it), DM_OK);
    store_iter_destroy(it);
    chain_anchor_final_item *x = &items[n++];
    memset(x, 0, sizeof *x);
    memset(x->leaf, 0xee, 32); /* an audit event of another kind */
    x->audit_seq = items[n - 2].audit_seq + 1;
    memset(x->entry_hash, 0x11, 32);
    return n;
}

static void bind_of(int k, dm_buf *out)
{
    dm_buf_reset(out);
    assert_int_equal(store_get(g_keys[k].store, STORE_CF_META, "eth_binding", 11, out), DM_OK);
}

/* A hand-made notice: `n` shares (their fields) plus one item naming no share, signed by
 * key `signer`, claiming origin `origin`, with the binding of key `binder`. */
typedef struct {
    int signer, origin, binder;
    bool bad_root, bad_leaf;
    uint8_t tag; /* makes the anchor (and so the body) differ */
} notice_spec;

static void make_notice(const notice_spec *sp, const node_share_fields *f, size_t n, dm_buf *frame)
{
    uint8_t leaves[8][32], eh[8][32];
    net_anchor_item it[8];
    assert_true(n + 1 <= 8);
    for (size_t i = 0; i <= n; i++) {
        memset(&it[i], 0, sizeof it[i]);
        if (i < n) {
            json_t *ev = node_share__event(&f[i]);
            leaf_of_event(ev, leaves[i]);
            json_decref(ev);
            it[i].share_id = f[i].id;
        } else {
            memset(leaves[i], 0xee, 32);
        }
        memset(eh[i], (int)i + 1, 32);
        it[i].leaf = leaves[i];
        it[i].audit_seq = 10 + i;
        it[i].entry_hash = eh[i];
    }
    if (sp->bad_leaf)
        leaves[0][7] ^= 1; /* the root is computed over the changed leaf: only the leaf lies */
    net_anchor_body b;
    memset(&b, 0, sizeof b);
    b.chain_id = 31337;
    memset(b.contract, 0xc0, 20);
    memset(b.tx_hash, sp->tag, 32);
    b.block_number = 100 + sp->tag;
    memset(b.block_hash, 0xb0 + sp->tag, 32);
    b.log_index = 1;
    node_keys_eth_address(g_keys[sp->origin].km, b.sender);
    dm_buf bind = DM_BUF_INIT, body = DM_BUF_INIT, sig = DM_BUF_INIT;
    bind_of(sp->binder, &bind);
    b.eth_binding = (net_slice){bind.data, bind.len};
    assert_int_equal(crypto_merkle_root(b.root, (const uint8_t(*)[32])leaves, n + 1), DM_OK);
    if (sp->bad_root)
        b.root[0] ^= 1;
    b.count = n + 1;
    assert_int_equal(net_anchor_body_encode(&body, &b, it), DM_OK);
    assert_int_equal(crypto_rsa_sign(node_keys_rsa(g_keys[sp->signer].km), body.data, body.len, &sig),
                     DM_OK);
    dm_buf_reset(frame);
    assert_int_equal(net_msg_encode_anchor(frame, g_keys[sp->origin].id, body.data, body.len,
                                           sig.data, sig.len),
                     DM_OK);
    dm_buf_free(&bind);
    dm_buf_free(&body);
    dm_buf_free(&sig);
}

/* A served bundle (record + the origin's identity) passes the offline checks of
 * `dmnode verify proof` (leaf, Merkle path, node id, origin, binding, sender). */
static void assert_bundle_offline_ok(json_t *rec, json_t *origin)
{
    json_object_set_new(rec, "format", json_string("dmnode-proof-v1"));
    json_object_set(rec, "origin", origin);
    char *txt = json_dumps(rec, JSON_COMPACT);
    assert_non_null(txt);
    chain_verify_bundle *b = NULL;
    char err[CHAIN_VERIFY_MSG_MAX];
    if (chain_verify_bundle_parse(txt, strlen(txt), &b, err))
        fail_msg("bundle does not parse: %s", err);
    chain_verify_report r;
    chain_verify_report_init(&r);
    assert_int_equal(chain_verify_offline(b, &r), DM_OK);
    assert_true(chain_verify_report_offline_ok(&r));
    chain_verify_bundle_free(b);
    free(txt);
}

typedef struct {
    tnode *n;
    size_t count;
    uint64_t stored;
} notices_t;

static bool notices_stored(void *ctx)
{
    notices_t *w = ctx;
    for (size_t i = 0; i < w->count; i++) {
        node_share_stats st = stats_of(&w->n[i]);
        if (st.notices_stored < w->stored || st.notices_pending)
            return false;
    }
    return true;
}

typedef struct {
    tnode *n;
    uint64_t invalid, stored, verified, duplicate;
} nstat_t;

static bool nstat_reached(void *ctx)
{
    nstat_t *w = ctx;
    node_share_stats st = stats_of(w->n);
    return st.notices_invalid >= w->invalid && st.notices_stored >= w->stored &&
           st.notices_verified >= w->verified && st.notices_duplicate >= w->duplicate;
}

/* The peer is reported, disconnected, and dials again. */
static void expect_rejected(uv_loop_t *loop, tnode *n, nstat_t *w, uint64_t disc)
{
    assert_true(run_until(loop, nstat_reached, w, 10000));
    disc_t dw = {w->n, disc};
    assert_true(run_until(loop, disconnected, &dw, 5000));
    peers_t pw = {n, 2, 1};
    assert_true(run_until(loop, peers_ready, &pw, 10000));
}

/* Three nodes in a triangle: the origin publishes a batch's notice, the two others verify
 * it once each, store a record per share and relay it once; their bundles verify. */
static void test_svc_anchor_notice_gossip(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    tnode n[3];
    node_start(&loop, &n[0], &(node_cfg){.k = 0, .with_host = true});
    node_start(&loop, &n[1], &(node_cfg){.k = 1, .with_host = true, .bootstrap = &n[0]});
    node_start(&loop, &n[2],
               &(node_cfg){.k = 2, .with_host = true, .bootstrap = &n[0], .bootstrap2 = &n[1]});
    peers_t pw = {n, 3, 2};
    assert_true(run_until(&loop, peers_ready, &pw, 10000));
    enum { N = 6 };
    sub_t subs[N];
    memset(subs, 0, sizeof subs);
    submit_many(&n[0], subs, N, 200);
    subs_t sw = {subs, N};
    assert_true(run_until(&loop, subs_done, &sw, 20000));
    for (int i = 1; i < 3; i++) {
        stored_t sb = {&n[i], N};
        assert_true(run_until(&loop, has_stored, &sb, 20000));
    }

    /* the daemon keeps the identity records (the binding) in the same store as the shares */
    dm_buf bind0 = DM_BUF_INIT;
    bind_of(0, &bind0);
    assert_int_equal(store_put(n[0].store, STORE_CF_META, "eth_binding", 11, bind0.data, bind0.len),
                     DM_OK);
    dm_buf_free(&bind0);
    /* the anchorer's batch, as chain_anchor's on_final gives it */
    chain_anchor_final_item items[N + 2];
    size_t count = final_from_outbox(n[0].store, items, N + 2);
    assert_int_equal(count, N + 1);
    uint8_t leaves[N + 1][32];
    for (size_t i = 0; i < count; i++)
        memcpy(leaves[i], items[i].leaf, 32);
    chain_anchor_final fb;
    memset(&fb, 0, sizeof fb);
    fb.batch_id = 7;
    fb.chain_id = 31337;
    memset(fb.contract, 0xc0, 20);
    node_keys_eth_address(g_keys[0].km, fb.sender);
    memset(fb.tx_hash, 0x7a, 32);
    fb.block_number = 42;
    memset(fb.block_hash, 0xbb, 32);
    fb.log_index = 2;
    assert_int_equal(crypto_merkle_root(fb.root, (const uint8_t(*)[32])leaves, count), DM_OK);
    fb.count = count;
    fb.items = items;
    assert_int_equal(node_share_anchor_notice_publish(n[0].svc, &fb), DM_OK);
    /* a batch naming no share is not worth a notice */
    chain_anchor_final none = fb;
    none.items = &items[count - 1];
    none.count = 1;
    assert_int_equal(node_share_anchor_notice_publish(n[0].svc, &none), DM_OK);
    none.count = 0;
    assert_int_equal(node_share_anchor_notice_publish(n[0].svc, &none), DM_EINVAL);

    notices_t nw = {&n[1], 2, 1};
    assert_true(run_until(&loop, notices_stored, &nw, 20000));
    run_until(&loop, never, NULL, 300); /* relayed copies arrive and are dropped */
    assert_int_equal(stats_of(&n[0]).notices_sent, 1);
    for (int i = 1; i < 3; i++) {
        node_share_stats st = stats_of(&n[i]);
        assert_int_equal(st.notices_stored, 1);
        assert_int_equal(st.notices_verified, 1); /* once, whatever the copies */
        assert_int_equal(st.notices_relayed, 1);
        assert_int_equal(st.notices_invalid, 0);
        assert_int_equal(st.anchor_records, N);
        assert_true(st.notices_received >= 2); /* from the origin and from the other */
        assert_true(st.notices_duplicate >= 1);
    }
    /* the origin keeps its own records (chain_anchor's), none of these */
    json_t *rec = NULL, *origin = NULL;
    assert_int_equal(node_share_anchor_record(n[0].svc, subs[0].r.id, &rec, &origin),
                     DM_ENOTFOUND);

    dm_buf spki = DM_BUF_INIT, bind = DM_BUF_INIT, b64 = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_spki(node_keys_rsa(g_keys[0].km), &spki), DM_OK);
    bind_of(0, &bind);
    char addr[43], tx[67];
    crypto_eth_address_format(fb.sender, addr);
    tx[0] = '0';
    tx[1] = 'x';
    dm_hex_encode(tx + 2, fb.tx_hash, 32);
    for (int k = 1; k < 3; k++) {
        for (size_t i = 0; i < N; i++) {
            assert_int_equal(node_share_anchor_record(n[k].svc, items[i].share_id, &rec, &origin),
                             DM_OK);
            /* the event is the origin's, the path leads to the root */
            node_share_record sr;
            assert_int_equal(node_share_read(n[k].svc, items[i].share_id, &sr), DM_OK);
            json_t *ev = node_share__event(&sr.f);
            assert_true(json_equal(ev, json_object_get(rec, "event")));
            json_decref(ev);
            node_share_record_free(&sr);
            json_t *m = json_object_get(rec, "merkle");
            assert_int_equal(json_integer_value(json_object_get(m, "index")), i);
            assert_int_equal(json_integer_value(json_object_get(m, "count")), count);
            assert_int_equal(json_integer_value(json_object_get(rec, "audit_seq")),
                             items[i].audit_seq);
            json_t *an = json_object_get(rec, "anchor");
            assert_string_equal(json_string_value(json_object_get(an, "tx_hash")), tx);
            assert_string_equal(json_string_value(json_object_get(an, "sender")), addr);
            assert_int_equal(json_integer_value(json_object_get(an, "block_number")), 42);
            assert_null(json_object_get(rec, "origin")); /* given apart */
            assert_null(json_object_get(rec, "notice"));
            /* the origin's identity, not this node's */
            assert_string_equal(json_string_value(json_object_get(origin, "node_id")),
                                node_keys_node_id(g_keys[0].km));
            assert_string_equal(json_string_value(json_object_get(origin, "eth_address")), addr);
            dm_buf_reset(&b64);
            dm_b64_encode(&b64, spki.data, spki.len, DM_B64_STD);
            assert_int_equal(json_string_length(json_object_get(origin, "spki")), b64.len);
            assert_memory_equal(json_string_value(json_object_get(origin, "spki")), b64.data,
                                b64.len);
            dm_buf_reset(&b64);
            dm_b64_encode(&b64, bind.data, bind.len, DM_B64_STD);
            assert_memory_equal(json_string_value(json_object_get(origin, "eth_binding")), b64.data,
                                b64.len);
            assert_bundle_offline_ok(rec, origin);
            json_decref(rec);
            json_decref(origin);
        }
    }
    /* the same body again (signed anew: PSS salts differ): dropped before any verification */
    uint64_t dup1 = stats_of(&n[1]).notices_duplicate, dup2 = stats_of(&n[2]).notices_duplicate;
    assert_int_equal(node_share_anchor_notice_publish(n[0].svc, &fb), DM_OK);
    nstat_t dw = {&n[1], 0, 0, 0, dup1 + 1};
    assert_true(run_until(&loop, nstat_reached, &dw, 10000));
    dw = (nstat_t){&n[2], 0, 0, 0, dup2 + 1};
    assert_true(run_until(&loop, nstat_reached, &dw, 10000));
    for (int i = 1; i < 3; i++) {
        assert_int_equal(stats_of(&n[i]).notices_verified, 1);
        assert_int_equal(stats_of(&n[i]).notices_stored, 1);
    }
    nodes_stop(&loop, n, 3, false);
    loop_finish(&loop);
    dm_buf_free(&spki);
    dm_buf_free(&bind);
    dm_buf_free(&b64);
}

/* A peer that sends notices: an unknown origin's key is asked for and the notice waits;
 * forged signatures, wrong roots, lying leaves and foreign bindings are rejected and cost
 * the peer its connection; a valid one is stored once. */
static void test_svc_anchor_notice_hostile(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    memset(&g_h, 0, sizeof g_h);
    tnode n[2];
    node_start(&loop, &n[0], &(node_cfg){.k = 1, .with_host = true});
    node_start(&loop, &n[1],
               &(node_cfg){.k = 2, .with_host = true, .bootstrap = &n[0], .no_svc = true});
    tnode *B = &n[0], *H = &n[1];
    peers_t pw = {n, 2, 1};
    assert_true(run_until(&loop, peers_ready, &pw, 10000));
    /* shares of A (key 0), an origin B has never met */
    enum { NS = 4 };
    dm_buf body[NS], sig[NS], fr = DM_BUF_INIT;
    node_share_fields f[NS];
    for (int i = 0; i < NS; i++) {
        body[i] = (dm_buf)DM_BUF_INIT;
        sig[i] = (dm_buf)DM_BUF_INIT;
        make_share(0, (uint64_t)i + 1, &body[i], &sig[i]);
        assert_int_equal(node_share_body_decode(body[i].data, body[i].len, &f[i]), DM_OK);
    }

    /* 1. a valid notice for shares 1-2 of A, whose key B lacks: it asks H and waits */
    make_notice(&(notice_spec){.signer = 0, .origin = 0, .binder = 0, .tag = 1}, f, 2, &fr);
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    count_t kw = {&g_h.keyreqs, 1};
    assert_true(run_until(&loop, counter_reached, &kw, 5000));
    assert_memory_equal(g_h.keyreq_id, g_keys[0].id, 32);
    assert_int_equal(stats_of(B).notices_pending, 1);
    assert_int_equal(stats_of(B).notices_verified, 0);
    /* the waiting list is bounded: notices of an origin nobody knows, one too many */
    dm_buf junk = DM_BUF_INIT;
    uint8_t nobody[32];
    memset(nobody, 0x5a, 32);
    for (int i = 0; i < 16; i++) {
        dm_buf_reset(&junk);
        uint8_t jb[40], js[64];
        memset(jb, i, sizeof jb);
        memset(js, 1, sizeof js);
        assert_int_equal(net_msg_encode_anchor(&junk, nobody, jb, sizeof jb, js, sizeof js), DM_OK);
        assert_int_equal(net_peer_send_bytes(H->peers[0], junk.data, junk.len), DM_OK);
    }
    run_until(&loop, never, NULL, 300);
    assert_int_equal(stats_of(B).notices_dropped, 1);
    assert_int_equal(stats_of(B).notices_pending, 16);
    /* the key comes: the first notice is verified and stored, the shares are not held */
    dm_buf spki = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_spki(node_keys_rsa(g_keys[0].km), &spki), DM_OK);
    dm_buf_reset(&junk);
    assert_int_equal(net_msg_encode_key(&junk, spki.data, spki.len), DM_OK);
    assert_int_equal(net_peer_send_bytes(H->peers[0], junk.data, junk.len), DM_OK);
    nstat_t w = {B, 0, 1, 1, 0};
    assert_true(run_until(&loop, nstat_reached, &w, 10000));
    assert_int_equal(stats_of(B).notices_pending, 15); /* the unknown origin's */
    assert_int_equal(stats_of(B).anchor_records, 2);
    assert_int_equal(stats_of(B).notices_relayed, 0); /* no other peer */
    json_t *rec = NULL, *origin = NULL;
    assert_int_equal(node_share_anchor_record(B->svc, f[0].id, &rec, &origin), DM_EAGAIN);

    /* 2. the shares arrive: the records now give bundles with the rebuilt event */
    for (int i = 0; i < NS; i++) {
        dm_buf_reset(&junk);
        assert_int_equal(net_msg_encode_share(&junk, body[i].data, body[i].len, sig[i].data,
                                              sig[i].len),
                         DM_OK);
        assert_int_equal(net_peer_send_bytes(H->peers[0], junk.data, junk.len), DM_OK);
    }
    stored_t sw = {B, NS};
    assert_true(run_until(&loop, has_stored, &sw, 10000));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(node_share_anchor_record(B->svc, f[i].id, &rec, &origin), DM_OK);
        json_t *ev = node_share__event(&f[i]);
        assert_true(json_equal(ev, json_object_get(rec, "event")));
        json_decref(ev);
        assert_bundle_offline_ok(rec, origin);
        json_decref(rec);
        json_decref(origin);
    }
    assert_int_equal(node_share_anchor_record(B->svc, f[2].id, &rec, &origin), DM_ENOTFOUND);

    /* 3-6. rejected, each costing H its connection; nothing is recorded */
    struct {
        const char *what;
        notice_spec sp;
    } bad[] = {
        {"signed by another key", {.signer = 2, .origin = 0, .binder = 0, .tag = 2}},
        {"root not of its leaves", {.signer = 0, .origin = 0, .binder = 0, .bad_root = true, .tag = 3}},
        {"a leaf that is not the share's", {.signer = 0, .origin = 0, .binder = 0, .bad_leaf = true, .tag = 4}},
        {"another node's binding", {.signer = 0, .origin = 0, .binder = 1, .tag = 5}},
    };
    for (size_t i = 0; i < DM_ARRAY_LEN(bad); i++) {
        make_notice(&bad[i].sp, f + 2, 2, &fr);
        assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
        nstat_t bw = {B, i + 1, 1, 2 + i, 0};
        expect_rejected(&loop, n, &bw, i + 1);
        node_share_stats st = stats_of(B);
        if (st.notices_invalid != i + 1 || st.notices_stored != 1)
            fail_msg("%s: invalid %llu stored %llu", bad[i].what,
                     (unsigned long long)st.notices_invalid, (unsigned long long)st.notices_stored);
        assert_int_equal(node_share_anchor_record(B->svc, f[2].id, &rec, &origin), DM_ENOTFOUND);
    }
    /* a malformed body: rejected without any verification */
    uint8_t mb[3] = {0x91, 0x01, 0x00}, ms[8] = {1};
    dm_buf_reset(&fr);
    assert_int_equal(net_msg_encode_anchor(&fr, g_keys[0].id, mb, sizeof mb, ms, sizeof ms), DM_OK);
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    nstat_t mw = {B, DM_ARRAY_LEN(bad) + 1, 1, 0, 0};
    expect_rejected(&loop, n, &mw, DM_ARRAY_LEN(bad) + 1);
    assert_int_equal(stats_of(B).notices_verified, 1 + DM_ARRAY_LEN(bad));

    /* 7. a valid notice for the held shares 3-4: stored with their events */
    make_notice(&(notice_spec){.signer = 0, .origin = 0, .binder = 0, .tag = 6}, f + 2, 2, &fr);
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    nstat_t vw = {B, 0, 2, 2 + DM_ARRAY_LEN(bad), 0};
    assert_true(run_until(&loop, nstat_reached, &vw, 10000));
    assert_int_equal(stats_of(B).anchor_records, 4);
    for (int i = 2; i < 4; i++) {
        assert_int_equal(node_share_anchor_record(B->svc, f[i].id, &rec, &origin), DM_OK);
        assert_bundle_offline_ok(rec, origin);
        json_decref(rec);
        json_decref(origin);
    }
    /* 8. replayed: a duplicate, no second verification */
    uint64_t dups = stats_of(B).notices_duplicate;
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    nstat_t rw = {B, 0, 2, 0, dups + 1};
    assert_true(run_until(&loop, nstat_reached, &rw, 10000));
    assert_int_equal(stats_of(B).notices_verified, 2 + DM_ARRAY_LEN(bad));
    assert_int_equal(stats_of(B).notices_stored, 2);

    /* 9. H comes back after a disconnect: B sends it the two notices it stored lately */
    size_t before = g_h.anchors;
    make_notice(&bad[0].sp, f + 2, 2, &fr);
    assert_int_equal(net_peer_send_bytes(H->peers[0], fr.data, fr.len), DM_OK);
    nstat_t xw = {B, DM_ARRAY_LEN(bad) + 2, 2, 0, 0};
    expect_rejected(&loop, n, &xw, DM_ARRAY_LEN(bad) + 2);
    count_t aw = {&g_h.anchors, before + 2};
    assert_true(run_until(&loop, counter_reached, &aw, 5000));
    assert_true(stats_of(B).notices_replayed >= 2);
    dm_buf_free(&junk);
    dm_buf_free(&spki);
    for (int i = 0; i < NS; i++) {
        dm_buf_free(&body[i]);
        dm_buf_free(&sig[i]);
    }
    dm_buf_free(&fr);
    nodes_stop(&loop, n, 2, false);
    loop_finish(&loop);
}

int test_node_share(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_roundtrip),
        cmocka_unit_test(test_body_canonical),
        cmocka_unit_test(test_body_encode_checks),
        cmocka_unit_test(test_validation_table),
        cmocka_unit_test(test_record_codec),
        cmocka_unit_test(test_svc_local_commit),
        cmocka_unit_test(test_svc_encrypted_at_rest),
        cmocka_unit_test(test_svc_limits_and_close),
        cmocka_unit_test(test_svc_reencrypt),
        cmocka_unit_test(test_svc_gossip_pair),
        cmocka_unit_test(test_svc_gossip_mesh_and_line),
        cmocka_unit_test(test_svc_hostile_sync_peer),
        cmocka_unit_test(test_svc_local_conflict),
        cmocka_unit_test(test_svc_sync_pages),
        cmocka_unit_test(test_svc_sync_two_sources),
        cmocka_unit_test(test_svc_sync_late_joiner_10k),
        cmocka_unit_test(test_svc_anchor_notice_gossip),
        cmocka_unit_test(test_svc_anchor_notice_hostile),
    };
    return cmocka_run_group_tests_name("node_share", tests, group_setup, group_teardown);
}
