/* The API request-body parsers (node_api_body.h): the reference's validation table,
 * strict JSON (types, duplicates, unknown fields, NUL, trailing bytes, depth), and
 * messages that never reflect the request. Table-driven. */
#include "dm_test.h"
#include "groups.h"

#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "node_api_body.h"
#include "node_apikeys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADDR "0x742d35Cc6634C0532925a3b844Bc454e4438f44e"
/* a literal with embedded NUL bytes, and its exact length */
#define LIT(s) s, sizeof(s) - 1
#define NINES30 "999999999999999999999999999999"

typedef struct {
    const char *body;
    size_t len; /* 0: strlen(body) */
    int rc;
    const char *msg; /* substring of the message, or NULL */
} body_case;

/* shares: one row per input the reference's table and strict JSON decide */
static const body_case share_cases[] = {
    /* accepted */
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"aGVsbG8=\"}", 0, DM_OK, NULL},
    {"{\"recipient\":\"0x0000000000000000000000000000000000000000\",\"amount\":\"" NINES30
     "\",\"data\":\"\"}", 0, DM_OK, NULL},
    {" \n{\"data\":\"AA==\",\"amount\":\"42\",\"recipient\":\"0xABCDEFabcdef0123456789ABCDEFabcdef012345\"}\r\n\t",
     0, DM_OK, NULL},
    {"{\"recipient\":\"\\u0030x742d35Cc6634C0532925a3b844Bc454e4438f44e\",\"amount\":\"7\",\"data\":\"\"}",
     0, DM_OK, NULL}, /* JSON escapes are decoded before validation */
    /* recipient */
    {"{\"recipient\":\"0x742d35Cc6634C0532925a3b844Bc454e4438f44\",\"amount\":\"1\",\"data\":\"\"}", 0,
     DM_EINVAL, "recipient"}, /* 39 hex */
    {"{\"recipient\":\"" ADDR "0\",\"amount\":\"1\",\"data\":\"\"}", 0, DM_EINVAL, "recipient"},
    {"{\"recipient\":\"742d35Cc6634C0532925a3b844Bc454e4438f44e00\",\"amount\":\"1\",\"data\":\"\"}", 0,
     DM_EINVAL, "recipient"}, /* no 0x */
    {"{\"recipient\":\"0X742d35Cc6634C0532925a3b844Bc454e4438f44e\",\"amount\":\"1\",\"data\":\"\"}", 0,
     DM_EINVAL, "recipient"}, /* 0X */
    {"{\"recipient\":\"0x742d35Cc6634C0532925a3b844Bc454e4438f44g\",\"amount\":\"1\",\"data\":\"\"}", 0,
     DM_EINVAL, "recipient"}, /* non-hex */
    {"{\"recipient\":\"0x742d35Cc6634C0532925a3b844Bc454e4438f4\xef\xbc\x91\",\"amount\":\"1\",\"data\":\"\"}",
     0, DM_EINVAL, "recipient"}, /* a full-width digit */
    {"{\"recipient\":\"" ADDR "\\n\",\"amount\":\"1\",\"data\":\"\"}", 0, DM_EINVAL, "recipient"},
    {"{\"recipient\":\" " ADDR "\",\"amount\":\"1\",\"data\":\"\"}", 0, DM_EINVAL, "recipient"},
    {"{\"recipient\":12,\"amount\":\"1\",\"data\":\"\"}", 0, DM_EINVAL, "recipient"},
    {"{\"recipient\":null,\"amount\":\"1\",\"data\":\"\"}", 0, DM_EINVAL, "recipient"},
    {"{\"recipient\":[\"" ADDR "\"],\"amount\":\"1\",\"data\":\"\"}", 0, DM_EINVAL, "recipient"},
    {"{\"amount\":\"1\",\"data\":\"\"}", 0, DM_EINVAL, "recipient"},
    {"{\"recipient\":\"' OR 1=1; DROP TABLE shares; --\",\"amount\":\"1\",\"data\":\"\"}", 0, DM_EINVAL,
     "recipient"},
    /* amount */
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"0\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"-1\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1" "000000000000000000000000000000\",\"data\":\"\"}", 0,
     DM_EINVAL, "amount"}, /* 10^30 */
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1.5\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1e3\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"007\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"+5\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\" 5\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"0x10\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":5,\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":1.5,\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":true,\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"١٢\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    {"{\"recipient\":\"" ADDR "\",\"data\":\"\"}", 0, DM_EINVAL, "amount"},
    /* data */
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"not base64!\"}", 0, DM_EINVAL, "base64"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"aGVsbG8\"}", 0, DM_EINVAL, "base64"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"aGVsbG9=\"}", 0, DM_EINVAL, "base64"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"aGVs-G8_\"}", 0, DM_EINVAL, "base64"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"aGVs bG8=\"}", 0, DM_EINVAL, "base64"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":123}", 0, DM_EINVAL, "base64"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":{\"a\":1}}", 0, DM_EINVAL, "base64"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\"}", 0, DM_EINVAL, "base64"},
    /* JSON shape */
    {"", 0, DM_EPARSE, "JSON object"},
    {"[]", 0, DM_EPARSE, "wrong type"},
    {"\"x\"", 0, DM_EPARSE, "JSON object"},
    {"42", 0, DM_EPARSE, "JSON object"},
    {"null", 0, DM_EPARSE, "JSON object"},
    {"{", 0, DM_EPARSE, "JSON object"},
    {"{\"recipient\":\"" ADDR "\",}", 0, DM_EPARSE, "JSON object"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"\"}x", 0, DM_EPARSE, "JSON object"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"\"}{}", 0, DM_EPARSE, "JSON object"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"amount\":\"2\",\"data\":\"\"}", 0, DM_EPARSE,
     "duplicate"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"\",\"extra\":1}", 0, DM_EINVAL,
     "unknown field 'extra'"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"\",\"Amount\":\"1\"}", 0, DM_EINVAL,
     "unknown field 'Amount'"},
    {"{\"<script>alert(1)</script>\":1}", 0, DM_EINVAL, "unknown field '?script?alert?1???script?'"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"a\\u0000\"}", 0, DM_EPARSE, "JSON object"},
    {LIT("{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"a\0b\"}"), DM_EPARSE, "JSON object"},
    {LIT("{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"\"}\0"), DM_EPARSE, "JSON object"},
    {LIT("\0{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"\"}"), DM_EPARSE, "JSON object"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"\xff\xfe\"}", 0, DM_EPARSE, "JSON object"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"\",\"x\":[[[[[[[[[[1]]]]]]]]]]}", 0,
     DM_EPARSE, "nested deeper"},
    {"{\"a\":[[[[[[[1]]]]]]]}", 0, DM_EINVAL, "unknown field 'a'"}, /* depth 8: parsed */
    {"{\"a\":\"[[[[[[[[[[[[[[[[[[[[\"}", 0, DM_EINVAL, "unknown field"}, /* brackets in strings */
    {"{\"a\":\"\\\"[[[[[[[[[[[[[[[[[[[[\"}", 0, DM_EINVAL, "unknown field"},
    {"{\"recipient\":\"" ADDR "\",\"amount\":\"1\",\"data\":\"\",\"amount\":12345678901234567890123}", 0,
     DM_EPARSE, "JSON object"},
};

static const body_case apikey_cases[] = {
    {"{\"name\":\"ci-bot 1.0_x\"}", 0, DM_OK, NULL},
    {"{\"name\":\"n\",\"expires_at\":null}", 0, DM_OK, NULL},
    {"{\"name\":\"n\",\"expires_at\":1000001}", 0, DM_OK, NULL},
    {"{\"name\":\"n\",\"expires_at\":253402300799}", 0, DM_OK, NULL},
    {"{\"name\":\"0123456789012345678901234567890123456789012345678901234567890123\"}", 0, DM_OK,
     NULL},
    {"{\"name\":\"01234567890123456789012345678901234567890123456789012345678901234\"}", 0, DM_EINVAL,
     "1..64"},
    {"{\"name\":\"\"}", 0, DM_EINVAL, "1..64"},
    {"{\"name\":7}", 0, DM_EINVAL, "1..64"},
    {"{\"expires_at\":1000001}", 0, DM_EINVAL, "1..64"},
    {"{\"name\":\"a/b\"}", 0, DM_EINVAL, "letters, digits"},
    {"{\"name\":\"<script>\"}", 0, DM_EINVAL, "letters, digits"},
    {"{\"name\":\"caf\xc3\xa9\"}", 0, DM_EINVAL, "letters, digits"},
    {"{\"name\":\"a\\u0000b\"}", 0, DM_EPARSE, "JSON object"},
    {"{\"name\":\"n\",\"expires_at\":0}", 0, DM_EINVAL, "after now"},
    {"{\"name\":\"n\",\"expires_at\":1000000}", 0, DM_EINVAL, "after now"},
    {"{\"name\":\"n\",\"expires_at\":253402300800}", 0, DM_EINVAL, "after now"},
    {"{\"name\":\"n\",\"expires_at\":-5}", 0, DM_EINVAL, "an integer"},
    {"{\"name\":\"n\",\"expires_at\":1000001.0}", 0, DM_EINVAL, "an integer"},
    {"{\"name\":\"n\",\"expires_at\":\"1000001\"}", 0, DM_EINVAL, "an integer"},
    {"{\"name\":\"n\",\"expires_at\":true}", 0, DM_EINVAL, "an integer"},
    {"{\"name\":\"n\",\"key\":\"dmk_x\"}", 0, DM_EINVAL, "unknown field 'key'"},
    {"{\"name\":\"n\",\"name\":\"m\"}", 0, DM_EPARSE, "duplicate"},
    {"[{\"name\":\"n\"}]", 0, DM_EPARSE, "wrong type"},
    {"{\"name\":\"n\"} trailing", 0, DM_EPARSE, "JSON object"},
};

static void run_case(const body_case *c, bool share, size_t idx)
{
    size_t len = c->len ? c->len : strlen(c->body);
    char msg[256];
    memset(msg, 'Q', sizeof msg);
    int rc;
    node_api_share_req s;
    node_api_apikey_req k;
    if (share)
        rc = node_api_parse_share((const uint8_t *)c->body, len, &s, msg, sizeof msg);
    else
        rc = node_api_parse_apikey((const uint8_t *)c->body, len, 1000000, &k, msg, sizeof msg);
    if (rc != c->rc)
        fail_msg("%s case %zu: rc %s, want %s (%s)", share ? "share" : "apikey", idx,
                 dm_err_name(rc), dm_err_name(c->rc), rc ? msg : "");
    assert_non_null(memchr(msg, 0, sizeof msg));
    if (rc) {
        if (c->msg && !strstr(msg, c->msg))
            fail_msg("case %zu: message '%s' lacks '%s'", idx, msg, c->msg);
        /* nothing of the request is reflected as is */
        if (strpbrk(msg, "\"&") || strstr(msg, "<script") || strstr(msg, "DROP"))
            fail_msg("case %zu: message reflects: %s", idx, msg);
        if (share)
            assert_null(s.data.data);
        else
            assert_int_equal(k.name[0], 0);
    } else if (share) {
        node_api_share_req_free(&s);
    }
}

static void test_share_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof share_cases / sizeof share_cases[0]; i++)
        run_case(&share_cases[i], true, i);
}

static void test_apikey_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof apikey_cases / sizeof apikey_cases[0]; i++)
        run_case(&apikey_cases[i], false, i);
}

static void test_share_values(void **state)
{
    (void)state;
    const char *b = "{\"recipient\":\"0xABCDEFabcdef0123456789ABCDEFabcdef012345\",\"amount\":\"" NINES30
                    "\",\"data\":\"aGVsbG8=\"}";
    node_api_share_req q;
    char msg[64];
    assert_int_equal(node_api_parse_share((const uint8_t *)b, strlen(b), &q, msg, sizeof msg), DM_OK);
    static const uint8_t want[20] = {0xab, 0xcd, 0xef, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67,
                                     0x89, 0xab, 0xcd, 0xef, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45};
    assert_memory_equal(q.recipient, want, 20);
    assert_string_equal(q.amount, NINES30);
    assert_int_equal(q.data.len, 5);
    assert_memory_equal(q.data.data, "hello", 5);
    node_api_share_req_free(&q);
    node_api_share_req_free(NULL);

    node_api_apikey_req k;
    b = "{\"expires_at\":2000000000,\"name\":\"reader\"}";
    assert_int_equal(node_api_parse_apikey((const uint8_t *)b, strlen(b), 5, &k, msg, sizeof msg), DM_OK);
    assert_string_equal(k.name, "reader");
    assert_int_equal(k.expires_at, 2000000000);
    /* NULL body, no message buffer */
    assert_int_equal(node_api_parse_share(NULL, 0, &q, NULL, 0), DM_EPARSE);
    assert_int_equal(node_api_parse_apikey(NULL, 0, 5, &k, msg, 1), DM_EPARSE);
    assert_int_equal(msg[0], 0);
}

/* a JSON share body with `len` bytes of data (a base64 string of them) */
static char *share_with(size_t len, size_t *n)
{
    uint8_t *raw = calloc(1, len ? len : 1);
    dm_buf b64 = DM_BUF_INIT, out = DM_BUF_INIT;
    assert_non_null(raw);
    assert_int_equal(dm_b64_encode(&b64, raw, len, DM_B64_STD), DM_OK);
    assert_int_equal(dm_buf_printf(&out, "{\"recipient\":\"%s\",\"amount\":\"5\",\"data\":\"%s\"}", ADDR,
                                   dm_buf_cstr(&b64)),
                     DM_OK);
    free(raw);
    dm_buf_free(&b64);
    *n = out.len;
    return (char *)out.data;
}

static void test_share_data_limit(void **state)
{
    (void)state;
    node_api_share_req q;
    char msg[128];
    size_t n;
    char *b = share_with(1024 * 1024, &n);
    assert_int_equal(node_api_parse_share((const uint8_t *)b, n, &q, msg, sizeof msg), DM_OK);
    assert_int_equal(q.data.len, 1024 * 1024);
    node_api_share_req_free(&q);
    free(b);
    b = share_with(1024 * 1024 + 1, &n);
    assert_int_equal(node_api_parse_share((const uint8_t *)b, n, &q, msg, sizeof msg), DM_ETOOBIG);
    assert_string_equal(msg, "data exceeds 1 MiB");
    assert_null(q.data.data);
    free(b);
}

/* Deep nesting is refused by the pre-scan, however deep (no recursion in jansson). */
static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 100000;
    char *b = malloc(2 * depth + 8);
    assert_non_null(b);
    size_t n = 0;
    b[n++] = '{';
    memcpy(b + n, "\"a\":", 4);
    n += 4;
    for (size_t i = 0; i < depth; i++)
        b[n++] = '[';
    node_api_share_req q;
    char msg[128];
    assert_int_equal(node_api_parse_share((const uint8_t *)b, n, &q, msg, sizeof msg), DM_EPARSE);
    assert_non_null(strstr(msg, "nested deeper than 8"));
    free(b);
}

int test_node_api_body(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_share_table),     cmocka_unit_test(test_apikey_table),
        cmocka_unit_test(test_share_values),    cmocka_unit_test(test_share_data_limit),
        cmocka_unit_test(test_deep_nesting),
    };
    return cmocka_run_group_tests_name("node_api_body", tests, NULL, NULL);
}
