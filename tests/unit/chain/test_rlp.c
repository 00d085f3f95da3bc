/*
 * RLP against the shared Ethereum vectors (ethereum/rlptest.json must encode byte for
 * byte and decode back to the same structure; every case of ethereum/invalidRLPTest.json
 * must be rejected), plus each strictness rule of the decoder on its own, the depth bound,
 * the list header patching of the encoder and a randomised encode/decode round trip.
 */
#include "dm_test.h"

#include "groups.h"

#include "chain_hex.h"
#include "chain_rlp.h"
#include "dm_err.h"

#include <openssl/bn.h>
#include <stdbool.h>

/* rlptest.json holds "\u0000", which jansson refuses unless asked (dm_test_vectors loads
 * with no flags), so this file is loaded here with JSON_ALLOW_NUL. */
static json_t *load_vectors_nul(const char *rel)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", DM_VECTORS_DIR, rel);
    json_error_t e;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &e);
    if (!j)
        fail_msg("cannot load vectors %s: %s (line %d)", path, e.text, e.line);
    return j;
}

/* Hex with or without 0x, either case, into a malloc'd buffer. */
static uint8_t *unhex_alloc(const char *hex, size_t *n)
{
    size_t len = strlen(hex);
    uint8_t *p = malloc(len / 2 + 1);
    assert_non_null(p);
    *n = dm_test_unhex(p, len / 2 + 1, hex);
    return p;
}

/* Big-endian bytes of a decimal string through OpenSSL's BIGNUM (independent of chain_hex). */
static uint8_t *dec_to_be(const char *dec, size_t *n)
{
    BIGNUM *bn = NULL;
    assert_int_equal(BN_dec2bn(&bn, dec), (int)strlen(dec));
    *n = (size_t)BN_num_bytes(bn);
    uint8_t *p = malloc(*n + 1);
    assert_non_null(p);
    BN_bn2bin(bn, p);
    BN_free(bn);
    return p;
}

/* Encode a vector's "in" value: strings, integers, "#decimal" big integers, lists. */
static void encode_json(dm_buf *b, const json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (n > 0 && s[0] == '#') {
            size_t bn;
            uint8_t *be = dec_to_be(s + 1, &bn);
            assert_int_equal(chain_rlp_put_uint_be(b, be, bn), DM_OK);
            free(be);
        } else {
            assert_int_equal(chain_rlp_put_bytes(b, (const uint8_t *)s, n), DM_OK);
        }
    } else if (json_is_integer(v)) {
        assert_true(json_integer_value(v) >= 0);
        assert_int_equal(chain_rlp_put_u64(b, (uint64_t)json_integer_value(v)), DM_OK);
    } else if (json_is_array(v)) {
        size_t mark, i;
        json_t *e;
        assert_int_equal(chain_rlp_list_begin(b, &mark), DM_OK);
        json_array_foreach(v, i, e)
        {
            encode_json(b, e);
        }
        assert_int_equal(chain_rlp_list_end(b, mark), DM_OK);
    } else {
        fail_msg("unexpected JSON type in rlptest.json");
    }
}

/* The decoded item must be the structure of `v`. */
static void check_decoded(const chain_rlp_item *it, const json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        assert_int_equal(it->kind, CHAIN_RLP_BYTES);
        if (n > 0 && s[0] == '#') {
            size_t bn;
            uint8_t *be = dec_to_be(s + 1, &bn);
            uint8_t *got = malloc(bn + 1);
            assert_non_null(got);
            assert_int_equal(chain_rlp_get_uint_be(it, got, bn), DM_OK);
            assert_memory_equal(got, be, bn);
            if (bn > 1) /* one byte narrower does not fit */
                assert_int_equal(chain_rlp_get_uint_be(it, got, bn - 1), DM_ERANGE);
            /* and the same value through the u256 decimal parser when it fits */
            chain_u256 u;
            int rc = chain_u256_from_dec(&u, s + 1, n - 1);
            if (bn <= 32) {
                assert_int_equal(rc, DM_OK);
                assert_memory_equal(u.be + 32 - bn, be, bn);
                char dec[CHAIN_U256_DEC_MAX];
                chain_u256_to_dec(&u, dec);
                assert_string_equal(dec, s + 1);
            } else {
                assert_int_equal(rc, DM_ERANGE);
            }
            free(got);
            free(be);
        } else {
            assert_int_equal(it->len, n);
            if (n)
                assert_memory_equal(it->payload, s, n);
        }
    } else if (json_is_integer(v)) {
        uint64_t got;
        assert_int_equal(chain_rlp_get_u64(it, &got), DM_OK);
        assert_true(got == (uint64_t)json_integer_value(v));
    } else {
        assert_true(json_is_array(v));
        assert_int_equal(it->kind, CHAIN_RLP_LIST);
        chain_rlp_iter iter;
        chain_rlp_item child;
        size_t i;
        json_t *e;
        assert_int_equal(chain_rlp_iter_init(&iter, it), DM_OK);
        json_array_foreach(v, i, e)
        {
            assert_int_equal(chain_rlp_iter_next(&iter, &child), DM_OK);
            check_decoded(&child, e);
        }
        assert_true(chain_rlp_iter_done(&iter));
        assert_int_equal(chain_rlp_iter_next(&iter, &child), DM_ENOTFOUND);
    }
}

/* Re-encode a decoded tree from its parts only (no raw copies). */
static void reencode(dm_buf *b, const chain_rlp_item *it)
{
    if (it->kind == CHAIN_RLP_BYTES) {
        assert_int_equal(chain_rlp_put_bytes(b, it->payload, it->len), DM_OK);
        return;
    }
    size_t mark;
    chain_rlp_iter iter;
    chain_rlp_item child;
    assert_int_equal(chain_rlp_list_begin(b, &mark), DM_OK);
    assert_int_equal(chain_rlp_iter_init(&iter, it), DM_OK);
    while (!chain_rlp_iter_done(&iter)) {
        assert_int_equal(chain_rlp_iter_next(&iter, &child), DM_OK);
        reencode(b, &child);
    }
    assert_int_equal(chain_rlp_list_end(b, mark), DM_OK);
}

static void test_rlp_vectors_valid(void **state)
{
    (void)state;
    json_t *vec = load_vectors_nul("ethereum/rlptest.json");
    const char *name;
    json_t *c;
    size_t count = 0;
    json_object_foreach(vec, name, c)
    {
        const json_t *in = json_object_get(c, "in");
        const char *out = json_string_value(json_object_get(c, "out"));
        if (!in || !out)
            fail_msg("%s: missing in/out", name);
        size_t wn;
        uint8_t *want = unhex_alloc(out, &wn);

        dm_buf b = DM_BUF_INIT;
        encode_json(&b, in);
        if (b.len != wn || memcmp(b.data, want, wn) != 0)
            fail_msg("%s: encoding differs", name);

        chain_rlp_item it;
        assert_int_equal(chain_rlp_decode_tree(want, wn, &it), DM_OK);
        assert_ptr_equal(it.raw, want);
        assert_int_equal(it.raw_len, wn);
        check_decoded(&it, in);

        dm_buf again = DM_BUF_INIT;
        reencode(&again, &it);
        assert_int_equal(again.len, wn);
        assert_memory_equal(again.data, want, wn);

        /* every proper prefix is rejected (the length reaches past the input) */
        for (size_t k = 0; k < wn; k++)
            assert_int_not_equal(chain_rlp_decode_tree(want, k, &it), DM_OK);

        dm_buf_free(&again);
        dm_buf_free(&b);
        free(want);
        count++;
    }
    assert_true(count >= 28);
    json_decref(vec);
}

static void test_rlp_vectors_invalid(void **state)
{
    (void)state;
    json_t *vec = dm_test_vectors("ethereum/invalidRLPTest.json");
    const char *name;
    json_t *c;
    size_t count = 0;
    json_object_foreach(vec, name, c)
    {
        const char *out = json_string_value(json_object_get(c, "out"));
        if (!out)
            fail_msg("%s: missing out", name);
        size_t n;
        uint8_t *raw = unhex_alloc(out, &n);
        chain_rlp_item it;
        memset(&it, 0x5a, sizeof it);
        int rc = chain_rlp_decode_tree(raw, n, &it);
        if (rc == DM_OK)
            fail_msg("%s: accepted", name);
        assert_true(rc == DM_EPARSE || rc == DM_ETOOBIG);
        free(raw);
        count++;
    }
    assert_true(count >= 17);
    json_decref(vec);
}

static int decode_hex(const char *hex)
{
    uint8_t buf[128];
    size_t n = dm_test_unhex(buf, sizeof buf, hex);
    chain_rlp_item it;
    return chain_rlp_decode_tree(buf, n, &it);
}

static void test_rlp_strict_rules(void **state)
{
    (void)state;
    /* canonical forms are accepted */
    assert_int_equal(decode_hex("00"), DM_OK);
    assert_int_equal(decode_hex("7f"), DM_OK);
    assert_int_equal(decode_hex("8180"), DM_OK);
    assert_int_equal(decode_hex("80"), DM_OK);
    assert_int_equal(decode_hex("c0"), DM_OK);
    /* empty input */
    assert_int_equal(chain_rlp_decode_tree((const uint8_t *)"", 0, &(chain_rlp_item){0}),
                     DM_EPARSE);
    /* single byte < 0x80 as 0x81 xx */
    assert_int_equal(decode_hex("8100"), DM_EPARSE);
    assert_int_equal(decode_hex("817f"), DM_EPARSE);
    /* long form for a short payload (string and list), 55 bytes being the boundary */
    assert_int_equal(decode_hex("b80100"), DM_EPARSE);
    assert_int_equal(decode_hex("f80180"), DM_EPARSE);
    {
        uint8_t buf[2 + 56];
        memset(buf, 'a', sizeof buf);
        buf[0] = 0xb8;
        buf[1] = 55;
        assert_int_equal(chain_rlp_decode_tree(buf, 2 + 55, &(chain_rlp_item){0}), DM_EPARSE);
        buf[1] = 56;
        assert_int_equal(chain_rlp_decode_tree(buf, 2 + 56, &(chain_rlp_item){0}), DM_OK);
    }
    /* leading zero in a long length */
    assert_int_equal(decode_hex("b9003800"), DM_EPARSE);
    assert_int_equal(decode_hex("f90000"), DM_EPARSE);
    /* length of the length runs past the input */
    assert_int_equal(decode_hex("b9"), DM_EPARSE);
    assert_int_equal(decode_hex("bf01"), DM_EPARSE);
    /* payload runs past the input, including lengths near SIZE_MAX */
    assert_int_equal(decode_hex("83646f"), DM_EPARSE);
    assert_int_equal(decode_hex("bfffffffffffffffff00"), DM_EPARSE);
    assert_int_equal(decode_hex("ffffffffffffffffff00"), DM_EPARSE);
    assert_int_equal(decode_hex("bf7fffffffffffffff00"), DM_EPARSE);
    /* trailing bytes where one item is expected */
    assert_int_equal(decode_hex("8000"), DM_EPARSE);
    assert_int_equal(decode_hex("c000"), DM_EPARSE);
    /* an element overrunning its list (the outer item itself is well delimited) */
    assert_int_equal(decode_hex("c283646f"), DM_EPARSE);
    /* a non-canonical element deep inside */
    assert_int_equal(decode_hex("c3c28100"), DM_EPARSE);
    /* ...which chain_rlp_decode alone (no tree walk) does not look at */
    {
        uint8_t buf[4];
        dm_test_unhex(buf, sizeof buf, "c3c28100");
        chain_rlp_item it;
        assert_int_equal(chain_rlp_decode(buf, 4, &it), DM_OK);
        assert_int_equal(chain_rlp_validate(&it), DM_EPARSE);
    }
    /* item_read allows trailing bytes and reports what it used */
    {
        uint8_t buf[5];
        dm_test_unhex(buf, sizeof buf, "83646f6701");
        chain_rlp_item it;
        size_t used = 0;
        assert_int_equal(chain_rlp_item_read(buf, 5, &it, &used), DM_OK);
        assert_int_equal(used, 4);
        assert_int_equal(it.len, 3);
        assert_ptr_equal(it.payload, buf + 1);
        assert_int_equal(chain_rlp_decode(buf, 5, &it), DM_EPARSE);
    }
}

static void test_rlp_depth(void **state)
{
    (void)state;
    /* exactly the bound is accepted, one more level is not */
    for (size_t depth = CHAIN_RLP_MAX_DEPTH; depth <= CHAIN_RLP_MAX_DEPTH + 1; depth++) {
        dm_buf b = DM_BUF_INIT;
        size_t marks[CHAIN_RLP_MAX_DEPTH + 1];
        for (size_t i = 0; i < depth; i++)
            assert_int_equal(chain_rlp_list_begin(&b, &marks[i]), DM_OK);
        assert_int_equal(chain_rlp_put_bytes(&b, (const uint8_t *)"x", 1), DM_OK);
        for (size_t i = depth; i-- > 0;)
            assert_int_equal(chain_rlp_list_end(&b, marks[i]), DM_OK);
        chain_rlp_item it;
        int rc = chain_rlp_decode_tree(b.data, b.len, &it);
        assert_int_equal(rc, depth <= CHAIN_RLP_MAX_DEPTH ? DM_OK : DM_ETOOBIG);
        /* the top header alone is fine either way */
        assert_int_equal(chain_rlp_decode(b.data, b.len, &it), DM_OK);
        dm_buf_free(&b);
    }
}

static void test_rlp_integers(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        const char *hex;
    } cases[] = {
        {0, "80"},
        {1, "01"},
        {0x7f, "7f"},
        {0x80, "8180"},
        {0xff, "81ff"},
        {0x100, "820100"},
        {0xffffffffffffffffull, "88ffffffffffffffff"},
        {0x0100000000000000ull, "880100000000000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dm_buf b = DM_BUF_INIT;
        uint8_t want[16];
        size_t wn = dm_test_unhex(want, sizeof want, cases[i].hex);
        assert_int_equal(chain_rlp_put_u64(&b, cases[i].v), DM_OK);
        assert_int_equal(b.len, wn);
        assert_memory_equal(b.data, want, wn);
        chain_rlp_item it;
        uint64_t got;
        assert_int_equal(chain_rlp_decode_tree(b.data, b.len, &it), DM_OK);
        assert_int_equal(chain_rlp_get_u64(&it, &got), DM_OK);
        assert_true(got == cases[i].v);
        dm_buf_free(&b);
    }
    /* put_uint_be strips leading zeros of any width */
    {
        dm_buf b = DM_BUF_INIT;
        uint8_t be[32] = {0};
        assert_int_equal(chain_rlp_put_uint_be(&b, be, 32), DM_OK);
        be[31] = 5;
        assert_int_equal(chain_rlp_put_uint_be(&b, be, 32), DM_OK);
        be[30] = 1;
        assert_int_equal(chain_rlp_put_uint_be(&b, be, 32), DM_OK);
        assert_int_equal(chain_rlp_put_uint_be(&b, NULL, 0), DM_OK);
        uint8_t want[8];
        size_t wn = dm_test_unhex(want, sizeof want, "800582010580");
        assert_int_equal(b.len, wn);
        assert_memory_equal(b.data, want, wn);
        dm_buf_free(&b);
    }
    /* decoding integers: leading zero, too wide, a list */
    uint8_t buf[16];
    chain_rlp_item it;
    uint64_t v;
    uint8_t be4[4];
    size_t n = dm_test_unhex(buf, sizeof buf, "00"); /* the byte 0x00 is not the integer 0 */
    assert_int_equal(chain_rlp_decode_tree(buf, n, &it), DM_OK);
    assert_int_equal(chain_rlp_get_u64(&it, &v), DM_EPARSE);
    n = dm_test_unhex(buf, sizeof buf, "820001");
    assert_int_equal(chain_rlp_decode_tree(buf, n, &it), DM_OK);
    assert_int_equal(chain_rlp_get_u64(&it, &v), DM_EPARSE);
    assert_int_equal(chain_rlp_get_uint_be(&it, be4, 4), DM_EPARSE);
    n = dm_test_unhex(buf, sizeof buf, "89010000000000000000");
    assert_int_equal(chain_rlp_decode_tree(buf, n, &it), DM_OK);
    assert_int_equal(chain_rlp_get_u64(&it, &v), DM_ERANGE);
    n = dm_test_unhex(buf, sizeof buf, "850100000000");
    assert_int_equal(chain_rlp_decode_tree(buf, n, &it), DM_OK);
    assert_int_equal(chain_rlp_get_uint_be(&it, be4, 4), DM_ERANGE);
    n = dm_test_unhex(buf, sizeof buf, "c0");
    assert_int_equal(chain_rlp_decode_tree(buf, n, &it), DM_OK);
    assert_int_equal(chain_rlp_get_u64(&it, &v), DM_EPARSE);
    n = dm_test_unhex(buf, sizeof buf, "83010203");
    assert_int_equal(chain_rlp_decode_tree(buf, n, &it), DM_OK);
    assert_int_equal(chain_rlp_get_uint_be(&it, be4, 4), DM_OK);
    assert_memory_equal(be4, "\x00\x01\x02\x03", 4);
    assert_int_equal(chain_rlp_get_fixed(&it, be4, 3), DM_OK);
    assert_int_equal(chain_rlp_get_fixed(&it, be4, 4), DM_EPARSE);
}

static void test_rlp_lists_and_iter(void **state)
{
    (void)state;
    /* list headers at the short/long boundary and with 1-, 2- and 3-byte lengths */
    static const size_t sizes[] = {0, 1, 55, 56, 255, 256, 65535, 65536, 100000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t len = sizes[s];
        uint8_t *payload = malloc(len + 1);
        assert_non_null(payload);
        for (size_t i = 0; i < len; i++)
            payload[i] = (uint8_t)(i * 7 + 1);
        dm_buf b = DM_BUF_INIT;
        size_t outer, inner;
        assert_int_equal(dm_buf_putc(&b, 0xee), DM_OK); /* list not at the buffer's start */
        assert_int_equal(chain_rlp_list_begin(&b, &outer), DM_OK);
        assert_int_equal(chain_rlp_put_bytes(&b, payload, len), DM_OK);
        assert_int_equal(chain_rlp_list_begin(&b, &inner), DM_OK);
        assert_int_equal(chain_rlp_put_u64(&b, len), DM_OK);
        assert_int_equal(chain_rlp_list_end(&b, inner), DM_OK);
        assert_int_equal(chain_rlp_list_end(&b, outer), DM_OK);
        assert_int_equal(b.data[0], 0xee);

        chain_rlp_item top, e;
        chain_rlp_iter it;
        assert_int_equal(chain_rlp_decode_tree(b.data + 1, b.len - 1, &top), DM_OK);
        assert_int_equal(top.kind, CHAIN_RLP_LIST);
        assert_int_equal(chain_rlp_iter_init(&it, &top), DM_OK);
        assert_int_equal(chain_rlp_iter_list(&it, &e), DM_EPARSE); /* wrong kind, no advance */
        assert_int_equal(chain_rlp_iter_bytes(&it, &e), DM_OK);
        assert_int_equal(e.len, len);
        if (len)
            assert_memory_equal(e.payload, payload, len);
        assert_int_equal(chain_rlp_iter_bytes(&it, &e), DM_EPARSE);
        assert_int_equal(chain_rlp_iter_list(&it, &e), DM_OK);
        assert_true(chain_rlp_iter_done(&it));
        assert_int_equal(chain_rlp_iter_bytes(&it, &e), DM_ENOTFOUND);
        chain_rlp_iter in;
        uint64_t v;
        assert_int_equal(chain_rlp_iter_init(&in, &e), DM_OK);
        assert_int_equal(chain_rlp_iter_next(&in, &e), DM_OK);
        assert_int_equal(chain_rlp_get_u64(&e, &v), DM_OK);
        assert_true(v == len);
        assert_int_equal(chain_rlp_iter_init(&in, &e), DM_EINVAL); /* e is bytes now */

        dm_buf_free(&b);
        free(payload);
    }
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(chain_rlp_list_end(&b, 1), DM_EINVAL);
    assert_int_equal(chain_rlp_put_raw(&b, (const uint8_t *)"\xc0", 1), DM_OK);
    assert_int_equal(b.len, 1);
    dm_buf_free(&b);
}

/* Deterministic pseudo-random trees: encode, strict decode, re-encode. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void random_tree(dm_buf *b, unsigned depth)
{
    uint32_t r = rnd() % 10;
    if (depth < 6 && r < 3) {
        size_t mark;
        unsigned n = rnd() % 6;
        assert_int_equal(chain_rlp_list_begin(b, &mark), DM_OK);
        for (unsigned i = 0; i < n; i++)
            random_tree(b, depth + 1);
        assert_int_equal(chain_rlp_list_end(b, mark), DM_OK);
    } else if (r < 6) {
        assert_int_equal(chain_rlp_put_u64(b, ((uint64_t)rnd() << 32 | rnd()) >> (rnd() % 64)),
                         DM_OK);
    } else {
        static const size_t lens[] = {0, 1, 2, 54, 55, 56, 57, 300};
        size_t len = lens[rnd() % 8];
        uint8_t tmp[300];
        for (size_t i = 0; i < len; i++)
            tmp[i] = (uint8_t)(rnd() % (r == 9 ? 0x80 : 0x100));
        assert_int_equal(chain_rlp_put_bytes(b, tmp, len), DM_OK);
    }
}

static void test_rlp_random_round_trip(void **state)
{
    (void)state;
    for (int i = 0; i < 2000; i++) {
        dm_buf b = DM_BUF_INIT, again = DM_BUF_INIT;
        random_tree(&b, 0);
        chain_rlp_item it;
        assert_int_equal(chain_rlp_decode_tree(b.data, b.len, &it), DM_OK);
        reencode(&again, &it);
        assert_int_equal(again.len, b.len);
        assert_memory_equal(again.data, b.data, b.len);
        /* a flipped byte either breaks the encoding or gives another canonical one */
        size_t pos = rnd() % b.len;
        b.data[pos] ^= (uint8_t)(1u << (rnd() % 8));
        if (chain_rlp_decode_tree(b.data, b.len, &it) == DM_OK) {
            dm_buf_reset(&again);
            reencode(&again, &it);
            assert_int_equal(again.len, b.len);
            assert_memory_equal(again.data, b.data, b.len);
        }
        dm_buf_free(&again);
        dm_buf_free(&b);
    }
}

int test_chain_rlp(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rlp_vectors_valid), /* the shared vectors first */
        cmocka_unit_test(test_rlp_vectors_invalid), cmocka_unit_test(test_rlp_strict_rules),
        cmocka_unit_test(test_rlp_depth),           cmocka_unit_test(test_rlp_integers),
        cmocka_unit_test(test_rlp_lists_and_iter),  cmocka_unit_test(test_rlp_random_round_trip),
    };
    return cmocka_run_group_tests_name("chain_rlp", tests, NULL, NULL);
}
