/*
 * EIP-1559 transactions against ethereum/signing.json (eip1559_example byte for byte, both
 * through chain_tx_sign and through the daemon's path: signing hash, external signature,
 * chain_tx_encode_signed), the EIP-155 legacy example's signing data and signed bytes
 * rebuilt with the RLP encoder, round trips at the extremes, contract creation, rejection of
 * malformed signed transactions, and the decimal / JSON-RPC hex helpers of chain_hex.h.
 */
#include "dm_test.h"

#include "groups.h"

#include "chain_hex.h"
#include "chain_rlp.h"
#include "chain_tx.h"
#include "crypto_eth.h"
#include "crypto_keccak.h"
#include "dm_err.h"

#include <stdbool.h>

static json_t *vectors;

static int tx_setup(void **state)
{
    (void)state;
    vectors = dm_test_vectors("ethereum/signing.json");
    return vectors ? 0 : -1;
}

static int tx_teardown(void **state)
{
    (void)state;
    json_decref(vectors);
    vectors = NULL;
    return 0;
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s)
        fail_msg("vector field %s missing", key);
    return s;
}

static uint64_t jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        fail_msg("vector field %s missing or not a non-negative integer", key);
    return (uint64_t)json_integer_value(v);
}

static void jdec(chain_u256 *out, const json_t *o, const char *key)
{
    const char *s = jstr(o, key);
    assert_int_equal(chain_u256_from_dec(out, s, strlen(s)), DM_OK);
}

static void key_from_hex(crypto_eth_key *k, const char *hex)
{
    uint8_t priv[32];
    assert_int_equal(dm_test_unhex(priv, sizeof priv, hex), 32);
    assert_int_equal(crypto_eth_key_from_bytes(k, priv), DM_OK);
}

/* The example's fields; tx->data points into *data (caller frees). */
static void example_tx(const json_t *ex, chain_tx1559 *tx, dm_buf *data)
{
    memset(tx, 0, sizeof *tx);
    tx->chain_id = jint(ex, "chain_id");
    tx->nonce = jint(ex, "nonce");
    jdec(&tx->max_priority_fee_per_gas, ex, "max_priority_fee_per_gas");
    jdec(&tx->max_fee_per_gas, ex, "max_fee_per_gas");
    tx->gas_limit = jint(ex, "gas_limit");
    tx->has_to = true;
    assert_int_equal(crypto_eth_address_parse(jstr(ex, "to"), tx->to), DM_OK);
    jdec(&tx->value, ex, "value");
    const char *d = jstr(ex, "data");
    assert_int_equal(chain_hex_data_parse(d, strlen(d), data), DM_OK);
    tx->data = data->data;
    tx->data_len = data->len;
    assert_true(json_is_array(json_object_get(ex, "access_list")));
    assert_int_equal(json_array_size(json_object_get(ex, "access_list")), 0);
}

static void assert_hex_equal(const uint8_t *p, size_t n, const char *want_hex)
{
    dm_buf h = DM_BUF_INIT;
    assert_int_equal(chain_hex_data_append(&h, p, n), DM_OK);
    assert_string_equal(dm_buf_cstr(&h), want_hex);
    dm_buf_free(&h);
}

static void assert_tx_equal(const chain_tx1559 *a, const chain_tx1559 *b)
{
    assert_true(a->chain_id == b->chain_id);
    assert_true(a->nonce == b->nonce);
    assert_memory_equal(a->max_priority_fee_per_gas.be, b->max_priority_fee_per_gas.be, 32);
    assert_memory_equal(a->max_fee_per_gas.be, b->max_fee_per_gas.be, 32);
    assert_true(a->gas_limit == b->gas_limit);
    assert_int_equal(a->has_to, b->has_to);
    if (a->has_to)
        assert_memory_equal(a->to, b->to, 20);
    assert_memory_equal(a->value.be, b->value.be, 32);
    assert_int_equal(a->data_len, b->data_len);
    if (a->data_len)
        assert_memory_equal(a->data, b->data, a->data_len);
}

static void test_tx_eip1559_example(void **state)
{
    (void)state;
    const json_t *ex = json_object_get(vectors, "eip1559_example");
    assert_non_null(ex);
    chain_tx1559 tx;
    dm_buf data = DM_BUF_INIT;
    example_tx(ex, &tx, &data);
    crypto_eth_key key;
    key_from_hex(&key, jstr(ex, "private_key"));

    /* one call */
    dm_buf signed_tx = DM_BUF_INIT;
    uint8_t tx_hash[32];
    assert_int_equal(chain_tx_sign(&tx, &key, &signed_tx, tx_hash), DM_OK);
    assert_hex_equal(signed_tx.data, signed_tx.len, jstr(ex, "signed_tx"));
    assert_hex_equal(tx_hash, 32, jstr(ex, "tx_hash"));

    /* the daemon's path: hash, sign elsewhere, assemble; appended after existing bytes */
    uint8_t sighash[32], tx_hash2[32];
    crypto_eth_sig sig;
    assert_int_equal(chain_tx_signing_hash(&tx, sighash), DM_OK);
    assert_int_equal(crypto_eth_sign_hash(&key, sighash, &sig), DM_OK);
    assert_int_equal(sig.recid, jint(ex, "y_parity"));
    assert_hex_equal(sig.r, 32, jstr(ex, "r"));
    assert_hex_equal(sig.s, 32, jstr(ex, "s"));
    dm_buf b2 = DM_BUF_INIT;
    assert_int_equal(dm_buf_puts(&b2, "xyz"), DM_OK);
    assert_int_equal(chain_tx_encode_signed(&tx, &sig, &b2, tx_hash2), DM_OK);
    assert_int_equal(b2.len, 3 + signed_tx.len);
    assert_memory_equal(b2.data, "xyz", 3);
    assert_memory_equal(b2.data + 3, signed_tx.data, signed_tx.len);
    assert_memory_equal(tx_hash2, tx_hash, 32);
    uint8_t h3[32];
    chain_tx_hash(signed_tx.data, signed_tx.len, h3);
    assert_memory_equal(h3, tx_hash, 32);

    /* the signing hash is keccak256 of the unsigned encoding, which starts with 0x02 */
    dm_buf unsigned_tx = DM_BUF_INIT;
    assert_int_equal(chain_tx_encode_unsigned(&tx, &unsigned_tx), DM_OK);
    assert_int_equal(unsigned_tx.data[0], 0x02);
    crypto_keccak256(h3, unsigned_tx.data, unsigned_tx.len);
    assert_memory_equal(h3, sighash, 32);

    /* decode back */
    chain_tx1559 back;
    crypto_eth_sig bsig;
    assert_int_equal(chain_tx_decode_signed(signed_tx.data, signed_tx.len, &back, &bsig), DM_OK);
    assert_tx_equal(&back, &tx);
    assert_true(back.data >= signed_tx.data && back.data < signed_tx.data + signed_tx.len);
    assert_memory_equal(bsig.r, sig.r, 32);
    assert_memory_equal(bsig.s, sig.s, 32);
    assert_int_equal(bsig.recid, sig.recid);
    uint8_t sender[20], want_sender[20];
    assert_int_equal(chain_tx_sender(&back, &bsig, sender), DM_OK);
    assert_int_equal(crypto_eth_address_parse(jstr(ex, "sender"), want_sender), DM_OK);
    assert_memory_equal(sender, want_sender, 20);

    /* a signature over another transaction recovers someone else */
    back.nonce++;
    assert_int_equal(chain_tx_sender(&back, &bsig, sender), DM_OK);
    assert_memory_not_equal(sender, want_sender, 20);

    /* recid > 1 cannot be encoded */
    sig.recid = 2;
    size_t before = b2.len;
    assert_int_equal(chain_tx_encode_signed(&tx, &sig, &b2, NULL), DM_EINVAL);
    assert_int_equal(b2.len, before);

    crypto_eth_key_wipe(&key);
    dm_buf_free(&unsigned_tx);
    dm_buf_free(&b2);
    dm_buf_free(&signed_tx);
    dm_buf_free(&data);
}

/* The EIP-155 legacy example rebuilt with the RLP encoder: proves integer and byte-string
 * encodings (and the list header) on an independent reference. */
static void test_tx_eip155_legacy_rlp(void **state)
{
    (void)state;
    const json_t *ex = json_object_get(vectors, "eip155_legacy_example");
    assert_non_null(ex);
    chain_u256 gas_price, value, r, s;
    jdec(&gas_price, ex, "gas_price");
    jdec(&value, ex, "value");
    jdec(&r, ex, "r");
    jdec(&s, ex, "s");
    uint8_t to[20];
    assert_int_equal(crypto_eth_address_parse(jstr(ex, "to"), to), DM_OK);
    dm_buf data = DM_BUF_INIT;
    const char *d = jstr(ex, "data");
    assert_int_equal(chain_hex_data_parse(d, strlen(d), &data), DM_OK);
    assert_int_equal(data.len, 0);
    uint64_t chain_id = jint(ex, "chain_id");

    /* [nonce, gas_price, gas_limit, to, value, data, chain_id, 0, 0] */
    dm_buf b = DM_BUF_INIT;
    size_t mark;
    assert_int_equal(chain_rlp_list_begin(&b, &mark), DM_OK);
    assert_int_equal(chain_rlp_put_u64(&b, jint(ex, "nonce")), DM_OK);
    assert_int_equal(chain_rlp_put_uint_be(&b, gas_price.be, 32), DM_OK);
    assert_int_equal(chain_rlp_put_u64(&b, jint(ex, "gas_limit")), DM_OK);
    assert_int_equal(chain_rlp_put_bytes(&b, to, 20), DM_OK);
    assert_int_equal(chain_rlp_put_uint_be(&b, value.be, 32), DM_OK);
    assert_int_equal(chain_rlp_put_bytes(&b, data.data, data.len), DM_OK);
    assert_int_equal(chain_rlp_put_u64(&b, chain_id), DM_OK);
    assert_int_equal(chain_rlp_put_u64(&b, 0), DM_OK);
    assert_int_equal(chain_rlp_put_u64(&b, 0), DM_OK);
    assert_int_equal(chain_rlp_list_end(&b, mark), DM_OK);
    assert_hex_equal(b.data, b.len, jstr(ex, "signing_data"));
    uint8_t hash[32];
    crypto_keccak256(hash, b.data, b.len);
    assert_hex_equal(hash, 32, jstr(ex, "signing_hash"));

    /* our signer gives the example's r, s and v = recid + 35 + 2 * chain_id */
    crypto_eth_key key;
    crypto_eth_sig sig;
    key_from_hex(&key, jstr(ex, "private_key"));
    assert_int_equal(crypto_eth_sign_hash(&key, hash, &sig), DM_OK);
    assert_memory_equal(sig.r, r.be, 32);
    assert_memory_equal(sig.s, s.be, 32);
    assert_true(sig.recid + 35 + 2 * chain_id == jint(ex, "v"));
    crypto_eth_key_wipe(&key);

    /* the signed legacy tx: the first six fields, then v, r, s */
    dm_buf sb = DM_BUF_INIT;
    assert_int_equal(chain_rlp_list_begin(&sb, &mark), DM_OK);
    chain_rlp_item list, item;
    chain_rlp_iter it;
    assert_int_equal(chain_rlp_decode_tree(b.data, b.len, &list), DM_OK);
    assert_int_equal(chain_rlp_iter_init(&it, &list), DM_OK);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(chain_rlp_iter_next(&it, &item), DM_OK);
        assert_int_equal(chain_rlp_put_raw(&sb, item.raw, item.raw_len), DM_OK);
    }
    assert_int_equal(chain_rlp_put_u64(&sb, jint(ex, "v")), DM_OK);
    assert_int_equal(chain_rlp_put_uint_be(&sb, r.be, 32), DM_OK);
    assert_int_equal(chain_rlp_put_uint_be(&sb, s.be, 32), DM_OK);
    assert_int_equal(chain_rlp_list_end(&sb, mark), DM_OK);
    assert_hex_equal(sb.data, sb.len, jstr(ex, "signed_tx"));

    dm_buf_free(&sb);
    dm_buf_free(&b);
    dm_buf_free(&data);
}

static void round_trip(const chain_tx1559 *tx, const crypto_eth_key *key)
{
    dm_buf b = DM_BUF_INIT;
    uint8_t h[32], h2[32], addr[20], sender[20];
    assert_int_equal(chain_tx_sign(tx, key, &b, h), DM_OK);
    chain_tx_hash(b.data, b.len, h2);
    assert_memory_equal(h, h2, 32);
    chain_tx1559 back;
    crypto_eth_sig sig;
    assert_int_equal(chain_tx_decode_signed(b.data, b.len, &back, &sig), DM_OK);
    assert_tx_equal(&back, tx);
    assert_int_equal(crypto_eth_address(key, addr), DM_OK);
    assert_int_equal(chain_tx_sender(&back, &sig, sender), DM_OK);
    assert_memory_equal(sender, addr, 20);
    /* re-encoding the decoded transaction gives the same bytes */
    dm_buf again = DM_BUF_INIT;
    assert_int_equal(chain_tx_encode_signed(&back, &sig, &again, h2), DM_OK);
    assert_int_equal(again.len, b.len);
    assert_memory_equal(again.data, b.data, b.len);
    assert_memory_equal(h, h2, 32);
    dm_buf_free(&again);
    dm_buf_free(&b);
}

static void test_tx_round_trips(void **state)
{
    (void)state;
    crypto_eth_key key;
    key_from_hex(&key, jstr(json_object_get(vectors, "eip1559_example"), "private_key"));
    uint8_t big[5000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 31 + 7);

    chain_tx1559 tx;
    memset(&tx, 0, sizeof tx); /* all zero: every integer is the empty string */
    tx.has_to = true;
    round_trip(&tx, &key);

    /* the extremes: 64-bit fields at UINT64_MAX, value 2^256-1, long data */
    tx.chain_id = UINT64_MAX;
    tx.nonce = UINT64_MAX;
    tx.gas_limit = UINT64_MAX;
    memset(tx.max_priority_fee_per_gas.be, 0xff, 32);
    memset(tx.max_fee_per_gas.be, 0xff, 32);
    memset(tx.value.be, 0xff, 32);
    memset(tx.to, 0xab, 20);
    tx.data = big;
    tx.data_len = sizeof big;
    round_trip(&tx, &key);

    /* a one-byte data field below 0x80 (encoded as itself), small values */
    tx.chain_id = 1;
    tx.nonce = 0x7f;
    tx.gas_limit = 0x80;
    chain_u256_from_u64(&tx.value, 1);
    chain_u256_from_u64(&tx.max_fee_per_gas, 0x100);
    chain_u256_from_u64(&tx.max_priority_fee_per_gas, 0);
    tx.data = (const uint8_t *)"\x01";
    tx.data_len = 1;
    round_trip(&tx, &key);

    /* contract creation: `to` is the empty string */
    tx.has_to = false;
    memset(tx.to, 0, 20);
    tx.data = big;
    tx.data_len = 100;
    round_trip(&tx, &key);
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(chain_tx_encode_unsigned(&tx, &b), DM_OK);
    chain_rlp_item list, item;
    chain_rlp_iter it;
    assert_int_equal(chain_rlp_decode_tree(b.data + 1, b.len - 1, &list), DM_OK);
    assert_int_equal(chain_rlp_iter_init(&it, &list), DM_OK);
    for (int i = 0; i < 6; i++)
        assert_int_equal(chain_rlp_iter_next(&it, &item), DM_OK);
    assert_int_equal(item.kind, CHAIN_RLP_BYTES);
    assert_int_equal(item.len, 0); /* field 6 is `to` */
    dm_buf_free(&b);

    crypto_eth_key_wipe(&key);
}

/* Build 0x02 || rlp(list of pre-encoded fields). */
static void build_tx(dm_buf *b, uint8_t type, const char *const *fields, size_t n)
{
    size_t mark;
    dm_buf_reset(b);
    assert_int_equal(dm_buf_putc(b, type), DM_OK);
    assert_int_equal(chain_rlp_list_begin(b, &mark), DM_OK);
    for (size_t i = 0; i < n; i++) {
        uint8_t tmp[200];
        size_t len = dm_test_unhex(tmp, sizeof tmp, fields[i]);
        assert_int_equal(chain_rlp_put_raw(b, tmp, len), DM_OK);
    }
    assert_int_equal(chain_rlp_list_end(b, mark), DM_OK);
}

static int decode_fields(const char *const *fields, size_t n)
{
    dm_buf b = DM_BUF_INIT;
    build_tx(&b, 0x02, fields, n);
    chain_tx1559 tx;
    crypto_eth_sig sig;
    memset(&tx, 0x77, sizeof tx);
    chain_tx1559 before = tx;
    int rc = chain_tx_decode_signed(b.data, b.len, &tx, &sig);
    if (rc != DM_OK)
        assert_memory_equal(&tx, &before, sizeof tx); /* untouched on failure */
    dm_buf_free(&b);
    return rc;
}

#define R32 "a0f21ab4c8a90e33bb3c3642c9510f68a550f3bf9eed6579c1e4df9ed6cec6ad52"
#define S32 "a0059f4c25c414c9b8a3d423d507cd01dc70db5d54d7a35c7f5085377d2debab17"
#define TO20 "945fbdb2315678afecb367f032d93f642f64180aa3"

static void test_tx_reject_malformed(void **state)
{
    (void)state;
    /* a well-formed baseline built the same way */
    const char *good[] = {"827a69", "07", "843b9aca00", "8477359400", "82ea60", TO20,
                          "80",     "80", "c0",         "80",         R32,      S32};
    assert_int_equal(decode_fields(good, 12), DM_OK);

    const char *f[13];
#define WITH(idx, val)                                                                             \
    do {                                                                                           \
        memcpy(f, good, sizeof good);                                                              \
        f[idx] = val;                                                                              \
    } while (0)
    WITH(0, "820001"); /* chain id with a leading zero */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(0, "00"); /* the byte 0x00 is not the integer zero */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(1, "89010000000000000000"); /* nonce above 64 bits */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(2, "a1010000000000000000000000000000000000000000000000000000000000000000");
    assert_int_equal(decode_fields(f, 12), DM_EPARSE); /* fee above 256 bits */
    WITH(4, "c0");                                     /* gas limit as a list */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(5, "935fbdb2315678afecb367f032d93f642f64180a"); /* 19-byte to */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(5, "955fbdb2315678afecb367f032d93f642f64180aa3aa"); /* 21-byte to */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(7, "c0"); /* data as a list */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(8, "80"); /* access list as a string */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(8, "d7d6" TO20 "c0"); /* a real, non-empty access list */
    assert_int_equal(decode_fields(f, 12), DM_EUNSUPPORTED);
    WITH(8, "c28100"); /* non-canonical inside the access list */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(9, "02"); /* y parity 2 */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(9, "1b"); /* a legacy v */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(10, "80"); /* r zero */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(11, "80"); /* s zero */
    assert_int_equal(decode_fields(f, 12), DM_EPARSE);
    WITH(10, "a100f21ab4c8a90e33bb3c3642c9510f68a550f3bf9eed6579c1e4df9ed6cec6ad52");
    assert_int_equal(decode_fields(f, 12), DM_EPARSE); /* r with a leading zero */
    WITH(11, "a1ff059f4c25c414c9b8a3d423d507cd01dc70db5d54d7a35c7f5085377d2debab17");
    assert_int_equal(decode_fields(f, 12), DM_EPARSE); /* s of 33 bytes */
    WITH(11, "a0059f4c25c414c9b8a3d423d507cd01dc70db5d54d7a35c7f5085377d2deb");
    assert_int_equal(decode_fields(f, 12), DM_EPARSE); /* s shorter than its header says */
    memcpy(f, good, sizeof good);
    assert_int_equal(decode_fields(f, 11), DM_EPARSE); /* missing s */
    assert_int_equal(decode_fields(f, 9), DM_EPARSE);  /* unsigned */
    f[12] = "80";
    assert_int_equal(decode_fields(f, 13), DM_EPARSE); /* an extra field */
#undef WITH

    /* the example itself, damaged */
    const char *hex = jstr(json_object_get(vectors, "eip1559_example"), "signed_tx");
    uint8_t raw[512];
    size_t n = dm_test_unhex(raw, sizeof raw, hex);
    chain_tx1559 tx;
    crypto_eth_sig sig;
    assert_int_equal(chain_tx_decode_signed(raw, n, &tx, &sig), DM_OK);
    for (size_t k = 0; k < n; k++) /* every truncation */
        assert_int_equal(chain_tx_decode_signed(raw, k, &tx, &sig), DM_EPARSE);
    raw[n] = 0x80; /* a trailing byte */
    assert_int_equal(chain_tx_decode_signed(raw, n + 1, &tx, &sig), DM_EPARSE);
    assert_int_equal(chain_tx_decode_signed(raw + 1, n - 1, &tx, &sig), DM_EPARSE); /* no type */
    for (unsigned t = 0; t < 256; t++) { /* any other type byte */
        if (t == 2)
            continue;
        raw[0] = (uint8_t)t;
        assert_int_equal(chain_tx_decode_signed(raw, n, &tx, &sig), DM_EPARSE);
    }
    raw[0] = 0x02;
    /* every single-bit flip: rejected, or decoded to something that encodes back the same */
    for (size_t k = 0; k < n; k++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            raw[k] ^= (uint8_t)(1u << bit);
            if (chain_tx_decode_signed(raw, n, &tx, &sig) == DM_OK) {
                dm_buf again = DM_BUF_INIT;
                assert_int_equal(chain_tx_encode_signed(&tx, &sig, &again, NULL), DM_OK);
                assert_int_equal(again.len, n);
                assert_memory_equal(again.data, raw, n);
                dm_buf_free(&again);
            }
            raw[k] ^= (uint8_t)(1u << bit);
        }
    }
    /* over the size cap: refused before parsing */
    uint8_t *huge = calloc(1, CHAIN_TX_MAX_SIZE + 1);
    assert_non_null(huge);
    huge[0] = 0x02;
    assert_int_equal(chain_tx_decode_signed(huge, CHAIN_TX_MAX_SIZE + 1, &tx, &sig), DM_ETOOBIG);
    free(huge);
}

static void test_hex_quantity(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0x0", 0},
        {"0x1", 1},
        {"0x1a", 0x1a},
        {"0x1A", 0x1a},
        {"0x400", 0x400},
        {"0xffffffffffffffff", UINT64_MAX},
        {"0x8000000000000000", 1ull << 63},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 12345;
        assert_int_equal(chain_hex_quantity_parse_u64(good[i].s, strlen(good[i].s), &v), DM_OK);
        assert_true(v == good[i].v);
        chain_u256 u;
        assert_int_equal(chain_hex_quantity_parse_u256(good[i].s, strlen(good[i].s), &u), DM_OK);
        assert_int_equal(chain_u256_to_u64(&u, &v), DM_OK);
        assert_true(v == good[i].v);
    }
    static const char *const bad[] = {"",     "0x",   "0",    "1a",   "0X1a",
                                      "0x01", "0x00", "0xg",  " 0x1", "0x1 ",
                                      "-0x1", "+0x1", "0x-1", "x1",   "0x1\x01"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 7;
        chain_u256 u;
        memset(&u, 0x33, sizeof u);
        assert_int_equal(chain_hex_quantity_parse_u64(bad[i], strlen(bad[i]), &v), DM_EPARSE);
        assert_true(v == 7);
        assert_int_equal(chain_hex_quantity_parse_u256(bad[i], strlen(bad[i]), &u), DM_EPARSE);
        assert_int_equal(u.be[0], 0x33);
    }
    /* the length is respected: no reading past n, embedded NUL refused */
    uint64_t v;
    assert_int_equal(chain_hex_quantity_parse_u64("0x1a", 3, &v), DM_OK);
    assert_true(v == 1);
    assert_int_equal(chain_hex_quantity_parse_u64("0x1\0a", 5, &v), DM_EPARSE);
    /* ranges */
    assert_int_equal(chain_hex_quantity_parse_u64("0x10000000000000000", 19, &v), DM_ERANGE);
    chain_u256 u;
    const char *max = "0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    assert_int_equal(chain_hex_quantity_parse_u256(max, strlen(max), &u), DM_OK);
    for (int i = 0; i < 32; i++)
        assert_int_equal(u.be[i], 0xff);
    assert_int_equal(chain_u256_to_u64(&u, &v), DM_ERANGE);
    const char *over = "0x10000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(chain_hex_quantity_parse_u256(over, strlen(over), &u), DM_ERANGE);
    const char *odd = "0xabc";
    assert_int_equal(chain_hex_quantity_parse_u256(odd, strlen(odd), &u), DM_OK);
    assert_int_equal(u.be[30], 0x0a);
    assert_int_equal(u.be[31], 0xbc);

    /* formatting */
    char out[CHAIN_U64_HEX_MAX];
    chain_hex_quantity_format_u64(0, out);
    assert_string_equal(out, "0x0");
    chain_hex_quantity_format_u64(0x1a, out);
    assert_string_equal(out, "0x1a");
    chain_hex_quantity_format_u64(0x100, out);
    assert_string_equal(out, "0x100");
    chain_hex_quantity_format_u64(UINT64_MAX, out);
    assert_string_equal(out, "0xffffffffffffffff");
    char o256[CHAIN_U256_HEX_MAX];
    chain_hex_quantity_format_u256(&u, o256);
    assert_string_equal(o256, "0xabc");
    assert_int_equal(chain_hex_quantity_parse_u256(max, strlen(max), &u), DM_OK);
    chain_hex_quantity_format_u256(&u, o256);
    assert_string_equal(o256, max);
    memset(&u, 0, sizeof u);
    chain_hex_quantity_format_u256(&u, o256);
    assert_string_equal(o256, "0x0");
    /* format → parse round trip over many values */
    for (uint64_t x = 1, i = 0; i < 200; i++, x = x * 3 + i) {
        chain_hex_quantity_format_u64(x, out);
        assert_int_equal(chain_hex_quantity_parse_u64(out, strlen(out), &v), DM_OK);
        assert_true(v == x);
    }
}

static void test_hex_data(void **state)
{
    (void)state;
    uint8_t h[4];
    assert_int_equal(chain_hex_data_parse_fixed("0x0102aBfF", 10, h, 4), DM_OK);
    assert_memory_equal(h, "\x01\x02\xab\xff", 4);
    assert_int_equal(chain_hex_data_parse_fixed("0x0102ab", 8, h, 4), DM_EPARSE);
    assert_int_equal(chain_hex_data_parse_fixed("0x0102abff00", 12, h, 4), DM_EPARSE);
    assert_int_equal(chain_hex_data_parse_fixed("0102abff", 8, h, 4), DM_EPARSE);
    assert_int_equal(chain_hex_data_parse_fixed("0x0102abf", 9, h, 4), DM_EPARSE);
    assert_int_equal(chain_hex_data_parse_fixed("0x0102abfg", 10, h, 4), DM_EPARSE);
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(chain_hex_data_parse("0x", 2, &b), DM_OK);
    assert_int_equal(b.len, 0);
    assert_int_equal(chain_hex_data_parse("0xdead", 6, &b), DM_OK);
    assert_int_equal(chain_hex_data_parse("0xBEEF", 6, &b), DM_OK);
    assert_int_equal(chain_hex_data_parse("0xBEE", 5, &b), DM_EPARSE);
    assert_int_equal(chain_hex_data_parse("0x 1", 4, &b), DM_EPARSE);
    assert_int_equal(chain_hex_data_parse("", 0, &b), DM_EPARSE);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "\xde\xad\xbe\xef", 4);
    dm_buf t = DM_BUF_INIT;
    assert_int_equal(chain_hex_data_append(&t, b.data, b.len), DM_OK);
    assert_string_equal(dm_buf_cstr(&t), "0xdeadbeef");
    dm_buf_reset(&t);
    assert_int_equal(chain_hex_data_append(&t, NULL, 0), DM_OK);
    assert_string_equal(dm_buf_cstr(&t), "0x");
    dm_buf_free(&t);
    dm_buf_free(&b);
}

static void test_u256_decimal_and_arith(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "0",
        "1",
        "9",
        "10",
        "1000000000",
        "18446744073709551615",
        "18446744073709551616",
        "10000000000000000000",
        "9999999999999999999",
        "1000000000000000000000000000000",
        "115792089237316195423570985008687907853269984665640564039457584007913129639935",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        chain_u256 u;
        char dec[CHAIN_U256_DEC_MAX];
        assert_int_equal(chain_u256_from_dec(&u, ok[i], strlen(ok[i])), DM_OK);
        chain_u256_to_dec(&u, dec);
        assert_string_equal(dec, ok[i]);
    }
    chain_u256 u, w, one, max;
    uint64_t v;
    assert_int_equal(chain_u256_from_dec(&u, "18446744073709551616", 20), DM_OK);
    assert_int_equal(chain_u256_to_u64(&u, &v), DM_ERANGE);
    assert_int_equal(u.be[23], 1);
    static const char *const range[] = {
        "115792089237316195423570985008687907853269984665640564039457584007913129639936",
        "999999999999999999999999999999999999999999999999999999999999999999999999999999",
        "1157920892373161954235709850086879078532699846656405640394575840079131296399350",
    };
    for (size_t i = 0; i < sizeof range / sizeof range[0]; i++)
        assert_int_equal(chain_u256_from_dec(&u, range[i], strlen(range[i])), DM_ERANGE);
    static const char *const bad[] = {"",   "+1",  "-1",  " 1",  "1 ",    "01",      "00",
                                      "1a", "0x1", "1.0", "1e3", "1_000", "\xd9\xa1"};
    memset(&u, 0x44, sizeof u);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(chain_u256_from_dec(&u, bad[i], strlen(bad[i])), DM_EPARSE);
        assert_int_equal(u.be[31], 0x44);
    }
    assert_int_equal(chain_u256_from_dec(&u, "12", 1), DM_OK); /* n bounds the text */
    assert_int_equal(chain_u256_to_u64(&u, &v), DM_OK);
    assert_true(v == 1);

    /* arithmetic and overflow */
    chain_u256_from_u64(&one, 1);
    memset(max.be, 0xff, 32);
    assert_int_equal(chain_u256_add(&w, &max, &one), DM_ERANGE);
    assert_int_equal(chain_u256_sub(&w, &max, &max), DM_OK);
    assert_true(chain_u256_is_zero(&w));
    assert_int_equal(chain_u256_sub(&w, &one, &max), DM_ERANGE);
    assert_int_equal(chain_u256_sub(&w, &max, &one), DM_OK);
    assert_int_equal(chain_u256_add(&w, &w, &one), DM_OK);
    assert_int_equal(chain_u256_cmp(&w, &max), 0);
    assert_int_equal(chain_u256_cmp(&one, &max), -1);
    assert_int_equal(chain_u256_cmp(&max, &one), 1);
    assert_int_equal(chain_u256_mul_u64(&w, &max, 2), DM_ERANGE);
    assert_int_equal(chain_u256_mul_u64(&w, &max, 1), DM_OK);
    assert_int_equal(chain_u256_mul_u64(&w, &max, 0), DM_OK);
    assert_true(chain_u256_is_zero(&w));
    /* (2^256-1) / 2^64-1 * (2^64-1) + rem == 2^256-1 */
    uint64_t rem;
    assert_int_equal(chain_u256_div_u64(&w, &max, UINT64_MAX, &rem), DM_OK);
    assert_int_equal(chain_u256_mul_u64(&w, &w, UINT64_MAX), DM_OK);
    chain_u256 r;
    chain_u256_from_u64(&r, rem);
    assert_int_equal(chain_u256_add(&w, &w, &r), DM_OK);
    assert_int_equal(chain_u256_cmp(&w, &max), 0);
    assert_int_equal(chain_u256_div_u64(&w, &max, 0, NULL), DM_EINVAL);
    /* a fee bump: 2 gwei * 9 / 8 */
    assert_int_equal(chain_u256_from_dec(&u, "2000000000", 10), DM_OK);
    assert_int_equal(chain_u256_mul_u64(&u, &u, 9), DM_OK);
    assert_int_equal(chain_u256_div_u64(&u, &u, 8, &rem), DM_OK);
    assert_int_equal(chain_u256_to_u64(&u, &v), DM_OK);
    assert_true(v == 2250000000ull && rem == 0);
}

int test_chain_tx(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tx_eip1559_example), /* the shared vectors first */
        cmocka_unit_test(test_tx_eip155_legacy_rlp),
        cmocka_unit_test(test_tx_round_trips),
        cmocka_unit_test(test_tx_reject_malformed),
        cmocka_unit_test(test_hex_quantity),
        cmocka_unit_test(test_hex_data),
        cmocka_unit_test(test_u256_decimal_and_arith),
    };
    return cmocka_run_group_tests_name("chain_tx", tests, tx_setup, tx_teardown);
}
