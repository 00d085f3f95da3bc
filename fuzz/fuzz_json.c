/*
 * libFuzzer target for the APIs' JSON body parsers (node/node_api_body.c): every input is
 * parsed as a POST /v1/shares body and as a POST /v1/apikeys body.
 * Properties checked beyond "no crash, no leak, no UB, no hang":
 *   - only the documented codes come back (DM_OK, DM_EPARSE, DM_EINVAL, DM_ETOOBIG for
 *     shares only, DM_ENOMEM), deterministically (a second parse gives the same code and
 *     message);
 *   - a rejection has a non-empty message of printable ASCII without '"' or '&', which for
 *     DM_EPARSE starts "body is not a JSON object: ", and leaves nothing in the result;
 *   - DM_EPARSE exactly when an independent oracle says so: jansson (strict, duplicates
 *     refused) does not load the input as an object, or the object nests deeper than
 *     NODE_API_JSON_MAX_DEPTH (depth measured on the loaded tree);
 *   - an accepted body obeys the reference's table as restated here (recipient 40 hex
 *     behind "0x", amount 1..30 digits without a leading zero, data <= 1 MiB and the
 *     body's data string is exactly its canonical base64; name 1..64 of [A-Za-z0-9 ._-],
 *     now < expires_at < NODE_APIKEY_EXPIRES_MAX or 0 for never), and the canonical JSON
 *     rebuilt from the result parses back to the same result (round trip).
 * Build: cmake -DDM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
 * Run:   ./fuzz_json -max_total_time=60 fuzz/corpus/json
 */
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "node_api_body.h"
#include "node_apikeys.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000ULL
#define ERRCAP 256

static void check(bool ok)
{
    if (!ok)
        abort();
}

static size_t depth(const json_t *j)
{
    size_t d = 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
        {
            size_t c = depth(v);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            size_t c = depth(v);
            d = c > d ? c : d;
        }
        return d + 1;
    }
    return 0;
}

/* The oracle for DM_EPARSE: loaded by jansson as an object no deeper than the bound. */
static bool is_object(const uint8_t *data, size_t size, json_t **out)
{
    json_error_t e;
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &e);
    bool ok = j && json_is_object(j) && depth(j) <= NODE_API_JSON_MAX_DEPTH;
    if (ok)
        *out = j;
    else
        json_decref(j);
    return ok;
}

static void check_message(int rc, const char *msg)
{
    const char *end = memchr(msg, 0, ERRCAP);
    check(end != NULL && end > msg);
    for (const char *p = msg; p < end; p++)
        check(*p >= 0x20 && *p <= 0x7e && *p != '"' && *p != '&');
    if (rc == DM_EPARSE)
        check(strncmp(msg, "body is not a JSON object: ", 27) == 0);
}

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static void share_round_trip(const node_api_share_req *q, const json_t *in)
{
    char addr[43] = "0x";
    dm_hex_encode(addr + 2, q->recipient, 20);
    dm_buf b64 = DM_BUF_INIT;
    check(dm_b64_encode(&b64, q->data.data, q->data.len, DM_B64_STD) == DM_OK);
    /* data was canonical base64: its text is the encoding of what was decoded */
    const json_t *dj = json_object_get(in, "data");
    check(json_string_length(dj) == b64.len &&
          memcmp(json_string_value(dj), b64.len ? (const char *)b64.data : "", b64.len) == 0);
    /* the recipient text is the address in either case */
    check(strncasecmp(json_string_value(json_object_get(in, "recipient")), addr, 43) == 0);
    check(strcmp(json_string_value(json_object_get(in, "amount")), q->amount) == 0);
    json_t *j = json_pack("{s:s, s:s, s:s#}", "recipient", addr, "amount", q->amount, "data",
                          b64.len ? (const char *)b64.data : "", (int)b64.len);
    check(j != NULL);
    char *text = json_dumps(j, JSON_COMPACT);
    check(text != NULL);
    node_api_share_req back;
    char msg[ERRCAP];
    check(node_api_parse_share((const uint8_t *)text, strlen(text), &back, msg, sizeof msg) == DM_OK);
    check(memcmp(back.recipient, q->recipient, 20) == 0 && strcmp(back.amount, q->amount) == 0);
    check(back.data.len == q->data.len &&
          (q->data.len == 0 || memcmp(back.data.data, q->data.data, q->data.len) == 0));
    node_api_share_req_free(&back);
    free(text);
    json_decref(j);
    dm_buf_free(&b64);
}

static void fuzz_share(const uint8_t *data, size_t size, const json_t *oracle)
{
    node_api_share_req q, q2;
    char msg[ERRCAP], msg2[ERRCAP];
    memset(msg, 'x', sizeof msg);
    int rc = node_api_parse_share(data, size, &q, msg, sizeof msg);
    check(rc == DM_OK || rc == DM_EPARSE || rc == DM_EINVAL || rc == DM_ETOOBIG || rc == DM_ENOMEM);
    check((rc == DM_EPARSE) == (oracle == NULL) || rc == DM_ENOMEM);
    int rc2 = node_api_parse_share(data, size, &q2, msg2, sizeof msg2);
    check(rc2 == rc);
    if (rc) {
        check_message(rc, msg);
        check(strcmp(msg, msg2) == 0);
        check(q.data.data == NULL && q.data.len == 0);
        return;
    }
    size_t alen = strlen(q.amount);
    check(alen >= 1 && alen <= 30 && digits(q.amount, alen) && q.amount[0] != '0');
    check(q.data.len <= 1024 * 1024);
    check(q2.data.len == q.data.len && memcmp(q.recipient, q2.recipient, 20) == 0);
    share_round_trip(&q, oracle);
    node_api_share_req_free(&q);
    node_api_share_req_free(&q2);
}

static void fuzz_apikey(const uint8_t *data, size_t size, const json_t *oracle)
{
    node_api_apikey_req k;
    char msg[ERRCAP];
    int rc = node_api_parse_apikey(data, size, NOW, &k, msg, sizeof msg);
    check(rc == DM_OK || rc == DM_EPARSE || rc == DM_EINVAL || rc == DM_ENOMEM);
    check((rc == DM_EPARSE) == (oracle == NULL) || rc == DM_ENOMEM);
    if (rc) {
        check_message(rc, msg);
        check(k.name[0] == 0 && k.expires_at == 0);
        return;
    }
    size_t n = strlen(k.name);
    check(n >= 1 && n <= 64 && strspn(k.name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                               "0123456789 ._-") == n);
    check(k.expires_at == 0 || (k.expires_at > NOW && k.expires_at < NODE_APIKEY_EXPIRES_MAX));
    check(strcmp(json_string_value(json_object_get(oracle, "name")), k.name) == 0);
    json_t *j = k.expires_at ? json_pack("{s:s, s:I}", "name", k.name, "expires_at",
                                         (json_int_t)k.expires_at)
                             : json_pack("{s:s, s:n}", "name", k.name, "expires_at");
    check(j != NULL);
    char *text = json_dumps(j, JSON_COMPACT);
    check(text != NULL);
    node_api_apikey_req back;
    check(node_api_parse_apikey((const uint8_t *)text, strlen(text), NOW, &back, msg, sizeof msg) ==
          DM_OK);
    check(strcmp(back.name, k.name) == 0 && back.expires_at == k.expires_at);
    free(text);
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *oracle = NULL;
    if (!is_object(data, size, &oracle))
        oracle = NULL;
    fuzz_share(data, size, oracle);
    fuzz_apikey(data, size, oracle);
    json_decref(oracle);
    return 0;
}
