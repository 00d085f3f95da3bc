/*
 * Proof bundle verification (docs/ANCHORING.md). The offline part follows each link of the
 * trail on its own: event -> leaf, leaf -> root, spki -> node_id, node_id -> event origin,
 * binding signature -> eth address, eth address -> anchor sender; the online part asks the
 * chain about the anchor. Each link that breaks fails its own named check, so a report says
 * exactly which field of a bundle was altered.
 */
#include "chain_verify.h"

#include "crypto_eth.h"
#include "crypto_hash.h"
#include "crypto_keccak.h"
#include "crypto_mem.h"
#include "crypto_rsa.h"
#include "dm_enc.h"
#include "dm_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVENT_MAX_DEPTH 4
#define ANCHORED_SIG "Anchored(address,bytes32,uint64,uint256)"

static const char *const CHECK_NAMES[CHAIN_VERIFY_CHECK_COUNT_ALL] = {
    [CHAIN_VERIFY_CHECK_FORMAT] = "format",
    [CHAIN_VERIFY_CHECK_LEAF] = "leaf",
    [CHAIN_VERIFY_CHECK_MERKLE] = "merkle",
    [CHAIN_VERIFY_CHECK_NODE_ID] = "node_id",
    [CHAIN_VERIFY_CHECK_ORIGIN] = "origin",
    [CHAIN_VERIFY_CHECK_BINDING] = "eth_binding",
    [CHAIN_VERIFY_CHECK_SENDER] = "sender",
    [CHAIN_VERIFY_CHECK_CHAIN_ID] = "chain_id",
    [CHAIN_VERIFY_CHECK_RECEIPT] = "receipt",
    [CHAIN_VERIFY_CHECK_STATUS] = "status",
    [CHAIN_VERIFY_CHECK_BLOCK] = "block",
    [CHAIN_VERIFY_CHECK_LOG] = "log",
    [CHAIN_VERIFY_CHECK_CONTRACT] = "contract",
    [CHAIN_VERIFY_CHECK_TOPICS] = "topics",
    [CHAIN_VERIFY_CHECK_COUNT] = "count",
    [CHAIN_VERIFY_CHECK_FROM] = "from",
    [CHAIN_VERIFY_CHECK_CONFIRMATIONS] = "confirmations",
};

const char *chain_verify_check_name(chain_verify_check_id id)
{
    if ((unsigned)id >= CHAIN_VERIFY_CHECK_COUNT_ALL)
        return "?";
    return CHECK_NAMES[id];
}

const char *chain_verify_result_name(chain_verify_result r)
{
    switch (r) {
    case CHAIN_VERIFY_NOT_RUN:
        return "not run";
    case CHAIN_VERIFY_PASS:
        return "pass";
    case CHAIN_VERIFY_FAIL:
        return "fail";
    case CHAIN_VERIFY_SKIP:
        return "skip";
    }
    return "?";
}

void chain_verify_report_init(chain_verify_report *r)
{
    memset(r, 0, sizeof *r);
}

static bool range_ok(const chain_verify_report *r, int first, int last)
{
    for (int i = first; i <= last; i++)
        if (r->checks[i].result != CHAIN_VERIFY_PASS)
            return false;
    return true;
}

bool chain_verify_report_ok(const chain_verify_report *r)
{
    return range_ok(r, 0, CHAIN_VERIFY_CHECK_COUNT_ALL - 1);
}

bool chain_verify_report_offline_ok(const chain_verify_report *r)
{
    return range_ok(r, CHAIN_VERIFY_CHECK_FORMAT, CHAIN_VERIFY_CHECK_SENDER);
}

int chain_verify_report_format(const chain_verify_report *r, dm_buf *out)
{
    for (int i = 0; i < CHAIN_VERIFY_CHECK_COUNT_ALL; i++) {
        const chain_verify_check *c = &r->checks[i];
        const char *res =
            c->result == CHAIN_VERIFY_FAIL ? "FAIL" : chain_verify_result_name(c->result);
        int rc = c->msg[0] ? dm_buf_printf(out, "  %-14s %-8s %s\n", CHECK_NAMES[i], res, c->msg)
                           : dm_buf_printf(out, "  %-14s %s\n", CHECK_NAMES[i], res);
        if (rc)
            return rc;
    }
    return DM_OK;
}

json_t *chain_verify_report_json(const chain_verify_report *r)
{
    json_t *checks = json_array();
    if (!checks)
        return NULL;
    for (int i = 0; i < CHAIN_VERIFY_CHECK_COUNT_ALL; i++) {
        const chain_verify_check *c = &r->checks[i];
        if (json_array_append_new(checks, json_pack("{s:s, s:s, s:s}", "check", CHECK_NAMES[i],
                                                    "result", chain_verify_result_name(c->result),
                                                    "message", c->msg))) {
            json_decref(checks);
            return NULL;
        }
    }
    return json_pack("{s:b, s:I, s:o}", "ok", chain_verify_report_ok(r), "confirmations",
                     (json_int_t)r->confirmations, "checks", checks);
}

/* Messages may quote input (a member name, jansson's token): keep them printable ASCII so
 * they are safe to log and always valid UTF-8 in the JSON report. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

__attribute__((format(printf, 4, 5))) static void
set(chain_verify_report *r, chain_verify_check_id id, chain_verify_result res, const char *fmt, ...)
{
    chain_verify_check *c = &r->checks[id];
    c->result = res;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    sanitize(c->msg);
}

/* "0x" + lower-case hex, or plain hex when prefix is false; out holds 2 + 2n + 1. */
static void hex_str(char *out, const uint8_t *p, size_t n, bool prefix)
{
    if (prefix) {
        out[0] = '0';
        out[1] = 'x';
        out += 2;
    }
    dm_hex_encode(out, p, n);
}

/* ------------------------------------------------------------------ parsing */

__attribute__((format(printf, 2, 3))) static int perr(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, CHAIN_VERIFY_MSG_MAX, fmt, ap);
        va_end(ap);
        sanitize(err);
    }
    return DM_EPARSE;
}

/* Exactly the members `names` (NULL-terminated), no others. */
static int members(const json_t *o, const char *path, const char *const *names, char *err)
{
    if (!json_is_object(o))
        return perr(err, "%s: expected an object", path);
    size_t n = 0;
    for (; names[n]; n++)
        if (!json_object_get(o, names[n]))
            return perr(err, "%s: missing member \"%s\"", path, names[n]);
    if (json_object_size(o) != n) {
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)o, k, v)
        {
            size_t i = 0;
            while (names[i] && strcmp(names[i], k) != 0)
                i++;
            if (!names[i])
                return perr(err, "%s: unknown member \"%.64s\"", path, k);
        }
    }
    return DM_OK;
}

static int get_uint(const json_t *o, const char *key, const char *path, uint64_t min, uint64_t *out,
                    char *err)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return perr(err, "%s%s: expected an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < 0 || (uint64_t)x < min)
        return perr(err, "%s%s: %lld out of range (min %llu)", path, key, (long long)x,
                    (unsigned long long)min);
    *out = (uint64_t)x;
    return DM_OK;
}

static bool lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* 32-byte hash: 64 lower-case hex digits, "0x"-prefixed when prefixed is true. */
static int hash_value(const json_t *v, const char *what, bool prefixed, uint8_t out[32], char *err)
{
    const char *s = json_string_value(v);
    size_t pre = prefixed ? 2 : 0;
    if (!s || json_string_length(v) != 64 + pre || (prefixed && (s[0] != '0' || s[1] != 'x')) ||
        !lower_hex(s + pre, 64))
        return perr(err, "%s: expected %s64 lower-case hex digits", what,
                    prefixed ? "\"0x\" + " : "");
    return dm_hex_decode(out, 32, s + pre, 64) ? perr(err, "%s: bad hex", what) : DM_OK;
}

static int get_hash(const json_t *o, const char *key, const char *path, bool prefixed,
                    uint8_t out[32], char *err)
{
    char what[64];
    snprintf(what, sizeof what, "%s%s", path, key);
    return hash_value(json_object_get(o, key), what, prefixed, out, err);
}

static int get_address(const json_t *o, const char *key, const char *path, uint8_t out[20],
                       char *err)
{
    const json_t *v = json_object_get(o, key);
    const char *s = json_string_value(v);
    if (!s || json_string_length(v) != 42 || crypto_eth_address_parse(s, out) != DM_OK)
        return perr(err, "%s%s: expected an address \"0x\" + 40 hex digits (EIP-55 if mixed case)",
                    path, key);
    return DM_OK;
}

static int get_b64(const json_t *o, const char *key, const char *path, uint8_t *out, size_t cap,
                   size_t *outlen, char *err)
{
    const json_t *v = json_object_get(o, key);
    const char *s = json_string_value(v);
    if (!s)
        return perr(err, "%s%s: expected a base64 string", path, key);
    size_t n = json_string_length(v);
    if (n == 0 || n > (cap + 2) / 3 * 4)
        return perr(err, "%s%s: %zu base64 characters, at most %zu bytes allowed", path, key, n,
                    cap);
    dm_buf b = DM_BUF_INIT;
    int rc = dm_b64_decode(&b, s, n, DM_B64_STD);
    if (rc == DM_ENOMEM)
        return rc;
    if (rc || b.len == 0 || b.len > cap) {
        dm_buf_free(&b);
        return perr(err, "%s%s: not padded standard base64 of 1..%zu bytes", path, key, cap);
    }
    memcpy(out, b.data, b.len);
    *outlen = b.len;
    dm_buf_free(&b);
    return DM_OK;
}

/* Event values: anything but real numbers (whose canonical text jansson would not keep). */
static int event_value(const json_t *v, int depth, char *err)
{
    if (depth > EVENT_MAX_DEPTH)
        return perr(err, "event: nested deeper than %d", EVENT_MAX_DEPTH);
    if (json_is_real(v))
        return perr(err, "event: real numbers are not allowed (canonical form is ambiguous)");
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            int rc = event_value(x, depth + 1, err);
            if (rc)
                return rc;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            int rc = event_value(x, depth + 1, err);
            if (rc)
                return rc;
        }
    }
    return DM_OK;
}

static int parse_event(const json_t *ev, char *err)
{
    if (!json_is_object(ev))
        return perr(err, "event: expected an object");
    const json_t *t = json_object_get(ev, "event_type");
    if (!json_is_string(t) || json_string_length(t) == 0)
        return perr(err, "event.event_type: expected a non-empty string");
    const json_t *o = json_object_get(ev, "origin");
    if (!json_is_string(o) || json_string_length(o) != 64 || !lower_hex(json_string_value(o), 64))
        return perr(err, "event.origin: expected 64 lower-case hex digits");
    return event_value(ev, 1, err);
}

static const char *const TOP[] = {"format", "chain_id",  "contract",   "event",
                                  "leaf",   "audit_seq", "entry_hash", "merkle",
                                  "anchor", "origin",    NULL};
static const char *const MERKLE[] = {"index", "count", "siblings", "root", NULL};
static const char *const ANCHOR[] = {"tx_hash",   "block_number", "block_hash",
                                     "log_index", "sender",       NULL};
static const char *const ORIGIN[] = {"node_id", "spki", "eth_address", "eth_binding", NULL};

static int parse_doc(const json_t *j, chain_verify_bundle *b, char *err)
{
    int rc;
    if ((rc = members(j, "bundle", TOP, err)))
        return rc;
    const json_t *fmt = json_object_get(j, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), CHAIN_VERIFY_FORMAT) != 0 ||
        json_string_length(fmt) != strlen(CHAIN_VERIFY_FORMAT))
        return perr(err, "format: expected \"%s\"", CHAIN_VERIFY_FORMAT);
    if ((rc = get_uint(j, "chain_id", "", 1, &b->chain_id, err)) ||
        (rc = get_address(j, "contract", "", b->contract, err)) ||
        (rc = parse_event(json_object_get(j, "event"), err)) ||
        (rc = get_hash(j, "leaf", "", false, b->leaf, err)) ||
        (rc = get_uint(j, "audit_seq", "", 0, &b->audit_seq, err)) ||
        (rc = get_hash(j, "entry_hash", "", false, b->entry_hash, err)))
        return rc;

    const json_t *m = json_object_get(j, "merkle");
    if ((rc = members(m, "merkle", MERKLE, err)) ||
        (rc = get_uint(m, "index", "merkle.", 0, &b->merkle.index, err)) ||
        (rc = get_uint(m, "count", "merkle.", 1, &b->merkle.count, err)) ||
        (rc = get_hash(m, "root", "merkle.", false, b->root, err)))
        return rc;
    const json_t *sibs = json_object_get(m, "siblings");
    if (!json_is_array(sibs))
        return perr(err, "merkle.siblings: expected an array");
    if (json_array_size(sibs) > CRYPTO_MERKLE_MAX_DEPTH)
        return perr(err, "merkle.siblings: %zu entries, at most %d", json_array_size(sibs),
                    CRYPTO_MERKLE_MAX_DEPTH);
    b->merkle.len = (uint32_t)json_array_size(sibs);
    for (uint32_t i = 0; i < b->merkle.len; i++) {
        char what[32];
        snprintf(what, sizeof what, "merkle.siblings[%u]", i);
        if ((rc = hash_value(json_array_get(sibs, i), what, false, b->merkle.sib[i], err)))
            return rc;
    }

    const json_t *a = json_object_get(j, "anchor");
    if ((rc = members(a, "anchor", ANCHOR, err)) ||
        (rc = get_hash(a, "tx_hash", "anchor.", true, b->anchor.tx_hash, err)) ||
        (rc = get_uint(a, "block_number", "anchor.", 0, &b->anchor.block_number, err)) ||
        (rc = get_hash(a, "block_hash", "anchor.", true, b->anchor.block_hash, err)) ||
        (rc = get_uint(a, "log_index", "anchor.", 0, &b->anchor.log_index, err)) ||
        (rc = get_address(a, "sender", "anchor.", b->anchor.sender, err)))
        return rc;

    const json_t *o = json_object_get(j, "origin");
    if ((rc = members(o, "origin", ORIGIN, err)))
        return rc;
    const json_t *id = json_object_get(o, "node_id");
    if (!json_is_string(id) || json_string_length(id) != 64 ||
        !lower_hex(json_string_value(id), 64))
        return perr(err, "origin.node_id: expected 64 lower-case hex digits");
    memcpy(b->origin.node_id, json_string_value(id), 65);
    if ((rc = get_b64(o, "spki", "origin.", b->origin.spki, sizeof b->origin.spki,
                      &b->origin.spki_len, err)) ||
        (rc = get_address(o, "eth_address", "origin.", b->origin.eth_address, err)) ||
        (rc = get_b64(o, "eth_binding", "origin.", b->origin.eth_binding,
                      sizeof b->origin.eth_binding, &b->origin.eth_binding_len, err)))
        return rc;
    return DM_OK;
}

int chain_verify_bundle_parse(const char *text, size_t n, chain_verify_bundle **out,
                              char err[CHAIN_VERIFY_MSG_MAX])
{
    *out = NULL;
    if (err)
        err[0] = '\0';
    if (n > CHAIN_VERIFY_BUNDLE_MAX) {
        if (err)
            snprintf(err, CHAIN_VERIFY_MSG_MAX, "bundle: %zu bytes, at most %u", n,
                     CHAIN_VERIFY_BUNDLE_MAX);
        return DM_ETOOBIG;
    }
    json_error_t je;
    json_t *j = json_loadb(text ? text : "", n, JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return perr(err, "bundle: not one JSON object: %s (line %d, column %d)", je.text, je.line,
                    je.column);
    chain_verify_bundle *b = calloc(1, sizeof *b);
    int rc = DM_ENOMEM;
    if (!b)
        goto out;
    if ((rc = parse_doc(j, b, err)))
        goto out;
    b->event = json_incref(json_object_get(j, "event"));
    *out = b;
    b = NULL;
out:
    free(b);
    json_decref(j);
    return rc;
}

void chain_verify_bundle_free(chain_verify_bundle *b)
{
    if (!b)
        return;
    json_decref(b->event);
    free(b);
}

/* ------------------------------------------------------------------ offline */

/* Walk the path as crypto_merkle_proof_verify does, to name the root it reaches. Only
 * called for a proof whose shape that function accepted. */
static void merkle_walk(const uint8_t leaf[32], const crypto_merkle_proof *p, uint8_t out[32])
{
    uint8_t h[32];
    memcpy(h, leaf, 32);
    uint64_t i = p->index, n = p->count;
    uint32_t used = 0;
    while (n > 1) {
        if ((i & 1) || i + 1 < n) {
            const uint8_t *s = p->sib[used++];
            if (i & 1)
                crypto_merkle_node_hash(h, s, h);
            else
                crypto_merkle_node_hash(h, h, s);
        }
        i >>= 1;
        n = (n >> 1) + (n & 1);
    }
    memcpy(out, h, 32);
}

static uint32_t merkle_path_len(uint64_t i, uint64_t n)
{
    uint32_t len = 0;
    while (n > 1) {
        if ((i & 1) || i + 1 < n)
            len++;
        i >>= 1;
        n = (n >> 1) + (n & 1);
    }
    return len;
}

static int check_leaf(const chain_verify_bundle *b, chain_verify_report *r)
{
    char *canon = json_dumps(b->event, JSON_COMPACT | JSON_SORT_KEYS);
    if (!canon) {
        set(r, CHAIN_VERIFY_CHECK_LEAF, CHAIN_VERIFY_FAIL, "out of memory");
        return DM_ENOMEM;
    }
    uint8_t h[32];
    crypto_merkle_leaf_hash(h, canon, strlen(canon));
    free(canon);
    char want[65], got[65];
    hex_str(got, h, 32, false);
    hex_str(want, b->leaf, 32, false);
    if (memcmp(h, b->leaf, 32) != 0)
        set(r, CHAIN_VERIFY_CHECK_LEAF, CHAIN_VERIFY_FAIL,
            "leaf mismatch: canonical event hashes to %s, bundle says %s", got, want);
    else
        set(r, CHAIN_VERIFY_CHECK_LEAF, CHAIN_VERIFY_PASS, "%s", got);
    return DM_OK;
}

static void check_merkle(const chain_verify_bundle *b, chain_verify_report *r)
{
    const crypto_merkle_proof *p = &b->merkle;
    int rc = crypto_merkle_proof_verify(b->leaf, p, b->root);
    char want[65], got[65];
    hex_str(want, b->root, 32, false);
    if (rc == DM_OK) {
        set(r, CHAIN_VERIFY_CHECK_MERKLE, CHAIN_VERIFY_PASS, "leaf %llu of %llu reaches root %s",
            (unsigned long long)p->index, (unsigned long long)p->count, want);
        return;
    }
    if (p->index >= p->count) {
        set(r, CHAIN_VERIFY_CHECK_MERKLE, CHAIN_VERIFY_FAIL,
            "merkle index %llu out of range for count %llu", (unsigned long long)p->index,
            (unsigned long long)p->count);
        return;
    }
    uint32_t need = merkle_path_len(p->index, p->count);
    if (rc == DM_EINVAL || p->len != need) {
        set(r, CHAIN_VERIFY_CHECK_MERKLE, CHAIN_VERIFY_FAIL,
            "merkle path has %u siblings, leaf %llu of %llu needs %u", p->len,
            (unsigned long long)p->index, (unsigned long long)p->count, need);
        return;
    }
    uint8_t h[32];
    merkle_walk(b->leaf, p, h);
    hex_str(got, h, 32, false);
    set(r, CHAIN_VERIFY_CHECK_MERKLE, CHAIN_VERIFY_FAIL,
        "merkle root mismatch: path gives %s, bundle says %s", got, want);
}

static int check_identity(const chain_verify_bundle *b, chain_verify_report *r)
{
    char id[65];
    int rc = crypto_sha256_hex(id, b->origin.spki, b->origin.spki_len);
    if (rc) {
        set(r, CHAIN_VERIFY_CHECK_NODE_ID, CHAIN_VERIFY_FAIL, "SHA-256 failed: %s",
            dm_strerror(rc));
        return rc;
    }
    if (strcmp(id, b->origin.node_id) != 0)
        set(r, CHAIN_VERIFY_CHECK_NODE_ID, CHAIN_VERIFY_FAIL,
            "node_id mismatch: SHA-256(spki) is %s, bundle says %s", id, b->origin.node_id);
    else
        set(r, CHAIN_VERIFY_CHECK_NODE_ID, CHAIN_VERIFY_PASS, "%s", id);

    const char *origin = json_string_value(json_object_get(b->event, "origin"));
    if (!origin || strcmp(origin, b->origin.node_id) != 0)
        set(r, CHAIN_VERIFY_CHECK_ORIGIN, CHAIN_VERIFY_FAIL,
            "event origin %s is not the bundle's node_id %s", origin ? origin : "(none)",
            b->origin.node_id);
    else
        set(r, CHAIN_VERIFY_CHECK_ORIGIN, CHAIN_VERIFY_PASS, "event from node %.16s...", origin);
    return DM_OK;
}

static int check_binding(const chain_verify_bundle *b, chain_verify_report *r)
{
    char addr[43];
    crypto_eth_address_format(b->origin.eth_address, addr);
    crypto_rsa_t *k = NULL;
    dm_buf msg = DM_BUF_INIT;
    int rc = crypto_rsa_from_spki(&k, b->origin.spki, b->origin.spki_len);
    if (rc == DM_EINVAL || rc == DM_EUNSUPPORTED) {
        set(r, CHAIN_VERIFY_CHECK_BINDING, CHAIN_VERIFY_FAIL,
            "origin spki is not an RSA 2048/3072 public key (%s)", dm_err_name(rc));
        rc = DM_OK;
        goto out;
    }
    if (rc)
        goto fail;
    /* exactly the message node_keys signs at `dmnode init` */
    if ((rc = dm_buf_printf(&msg, "dmnode-eth-binding-v1:%s:%s", b->origin.node_id, addr)))
        goto fail;
    rc = crypto_rsa_verify(k, msg.data, msg.len, b->origin.eth_binding, b->origin.eth_binding_len);
    if (rc == DM_EBADSIG) {
        set(r, CHAIN_VERIFY_CHECK_BINDING, CHAIN_VERIFY_FAIL,
            "eth_binding signature does not verify: origin key did not bind node %.16s... to %s",
            b->origin.node_id, addr);
        rc = DM_OK;
        goto out;
    }
    if (rc)
        goto fail;
    set(r, CHAIN_VERIFY_CHECK_BINDING, CHAIN_VERIFY_PASS, "node key binds %s", addr);
    goto out;
fail:
    set(r, CHAIN_VERIFY_CHECK_BINDING, CHAIN_VERIFY_FAIL, "could not verify: %s", dm_strerror(rc));
out:
    dm_buf_free(&msg);
    crypto_rsa_destroy(k);
    return rc;
}

static void check_sender(const chain_verify_bundle *b, chain_verify_report *r)
{
    char a[43], s[43];
    crypto_eth_address_format(b->origin.eth_address, a);
    crypto_eth_address_format(b->anchor.sender, s);
    if (memcmp(b->origin.eth_address, b->anchor.sender, 20) != 0)
        set(r, CHAIN_VERIFY_CHECK_SENDER, CHAIN_VERIFY_FAIL,
            "origin eth_address %s is not the anchor sender %s", a, s);
    else
        set(r, CHAIN_VERIFY_CHECK_SENDER, CHAIN_VERIFY_PASS, "%s", s);
}

int chain_verify_offline(const chain_verify_bundle *b, chain_verify_report *report)
{
    set(report, CHAIN_VERIFY_CHECK_FORMAT, CHAIN_VERIFY_PASS, "%s", CHAIN_VERIFY_FORMAT);
    int rc = check_leaf(b, report), rc2;
    check_merkle(b, report);
    if ((rc2 = check_identity(b, report)) && !rc)
        rc = rc2;
    if ((rc2 = check_binding(b, report)) && !rc)
        rc = rc2;
    check_sender(b, report);
    if (rc)
        return rc;
    return chain_verify_report_offline_ok(report) ? DM_OK : DM_ETAMPER;
}

/* ------------------------------------------------------------------ online */

typedef struct {
    chain_rpc_t *rpc;
    const chain_verify_bundle *b;
    chain_verify_report *rep;
    uint64_t min_conf;
    uint64_t mined_block; /* the receipt's block */
    chain_verify_cb cb;
    void *arg;
} online_req;

static void online_finish(online_req *q, int status)
{
    chain_verify_report *rep = q->rep;
    chain_verify_cb cb = q->cb;
    void *arg = q->arg;
    if (status == DM_OK) {
        for (int i = CHAIN_VERIFY_CHECK_CHAIN_ID; i < CHAIN_VERIFY_CHECK_COUNT_ALL; i++)
            if (rep->checks[i].result != CHAIN_VERIFY_PASS)
                status = DM_ETAMPER;
    }
    free(q);
    cb(status, rep, arg);
}

/* Mark every online check not yet decided as SKIP with `why`. */
static void skip_rest(chain_verify_report *r, const char *why)
{
    for (int i = CHAIN_VERIFY_CHECK_CHAIN_ID; i < CHAIN_VERIFY_CHECK_COUNT_ALL; i++)
        if (r->checks[i].result == CHAIN_VERIFY_NOT_RUN)
            set(r, (chain_verify_check_id)i, CHAIN_VERIFY_SKIP, "%s", why);
}

/* A call failed for a reason other than the answer itself: the endpoint's fault. */
static void rpc_failed(online_req *q, chain_verify_check_id id, const char *method, int status,
                       const chain_rpc_error *err)
{
    const char *detail = err && err->message[0] ? err->message : "";
    if (err && err->kind == CHAIN_RPC_ERR_HTTP)
        set(q->rep, id, CHAIN_VERIFY_FAIL, "%s failed: HTTP %ld", method, err->http_status);
    else if (err && err->kind == CHAIN_RPC_ERR_REMOTE)
        set(q->rep, id, CHAIN_VERIFY_FAIL, "%s failed: node error %lld: %s", method,
            (long long)err->code, detail);
    else
        set(q->rep, id, CHAIN_VERIFY_FAIL, "%s failed: %s%s%s", method, dm_strerror(status),
            detail[0] ? ": " : "", detail);
    q->rep->rpc_status = status;
    skip_rest(q->rep, "not run: the endpoint failed");
    online_finish(q, status);
}

/* Start the next call from a callback; a synchronous refusal ends the verification. */
static bool started(online_req *q, chain_verify_check_id id, const char *method, int rc)
{
    if (rc == DM_OK)
        return true;
    rpc_failed(q, id, method, rc, NULL);
    return false;
}

static void head_cb(chain_rpc_t *rpc, int status, uint64_t head, const chain_rpc_error *err,
                    void *arg)
{
    (void)rpc;
    online_req *q = arg;
    if (status != DM_OK) {
        rpc_failed(q, CHAIN_VERIFY_CHECK_CONFIRMATIONS, "eth_blockNumber", status, err);
        return;
    }
    uint64_t conf = head >= q->mined_block ? head - q->mined_block + 1 : 0;
    uint64_t need = q->min_conf ? q->min_conf : 1;
    q->rep->confirmations = conf;
    if (conf < need)
        set(q->rep, CHAIN_VERIFY_CHECK_CONFIRMATIONS, CHAIN_VERIFY_FAIL,
            "%llu confirmations (head %llu, block %llu), %llu required", (unsigned long long)conf,
            (unsigned long long)head, (unsigned long long)q->mined_block, (unsigned long long)need);
    else
        set(q->rep, CHAIN_VERIFY_CHECK_CONFIRMATIONS, CHAIN_VERIFY_PASS,
            "%llu confirmations (%llu required)", (unsigned long long)conf,
            (unsigned long long)need);
    online_finish(q, DM_OK);
}

static void start_head(online_req *q)
{
    started(q, CHAIN_VERIFY_CHECK_CONFIRMATIONS, "eth_blockNumber",
            chain_rpc_block_number(q->rpc, head_cb, q));
}

static void block_cb(chain_rpc_t *rpc, int status, const chain_rpc_block *blk,
                     const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    online_req *q = arg;
    const chain_verify_bundle *b = q->b;
    char want[67], got[67];
    hex_str(want, b->anchor.block_hash, 32, true);
    if (status == DM_ENOTFOUND) {
        set(q->rep, CHAIN_VERIFY_CHECK_BLOCK, CHAIN_VERIFY_FAIL,
            "block %llu is not on the chain (head is below it)",
            (unsigned long long)b->anchor.block_number);
    } else if (status != DM_OK) {
        rpc_failed(q, CHAIN_VERIFY_CHECK_BLOCK, "eth_getBlockByNumber", status, err);
        return;
    } else if (blk->number != b->anchor.block_number ||
               memcmp(blk->hash, b->anchor.block_hash, 32) != 0) {
        hex_str(got, blk->hash, 32, true);
        set(q->rep, CHAIN_VERIFY_CHECK_BLOCK, CHAIN_VERIFY_FAIL,
            "block %llu is not canonical: the chain has %s at that height, bundle says %s",
            (unsigned long long)b->anchor.block_number, got, want);
    } else {
        set(q->rep, CHAIN_VERIFY_CHECK_BLOCK, CHAIN_VERIFY_PASS, "block %llu %s",
            (unsigned long long)b->anchor.block_number, want);
    }
    start_head(q);
}

static void check_log(online_req *q, const chain_rpc_receipt *rc)
{
    const chain_verify_bundle *b = q->b;
    chain_verify_report *r = q->rep;
    const chain_rpc_log *lg = NULL;
    char idx[128] = "";
    size_t used = 0;
    for (size_t i = 0; i < rc->nlogs; i++) {
        if (rc->logs[i].log_index == b->anchor.log_index)
            lg = &rc->logs[i];
        if (used < sizeof idx - 24)
            used += (size_t)snprintf(idx + used, sizeof idx - used, "%s%llu", i ? ", " : "",
                                     (unsigned long long)rc->logs[i].log_index);
    }
    if (!lg) {
        set(r, CHAIN_VERIFY_CHECK_LOG, CHAIN_VERIFY_FAIL,
            "receipt has no log with index %llu (its logs: %s)",
            (unsigned long long)b->anchor.log_index, rc->nlogs ? idx : "none");
        return; /* contract, topics, count: skipped by the caller */
    }
    if (lg->removed) {
        set(r, CHAIN_VERIFY_CHECK_LOG, CHAIN_VERIFY_FAIL, "log %llu was removed by a reorg",
            (unsigned long long)lg->log_index);
        return;
    }
    set(r, CHAIN_VERIFY_CHECK_LOG, CHAIN_VERIFY_PASS, "log %llu",
        (unsigned long long)lg->log_index);

    char want[43], got[43];
    crypto_eth_address_format(b->contract, want);
    crypto_eth_address_format(lg->address, got);
    if (memcmp(lg->address, b->contract, 20) != 0)
        set(r, CHAIN_VERIFY_CHECK_CONTRACT, CHAIN_VERIFY_FAIL,
            "log not emitted by contract %s (emitted by %s)", want, got);
    else
        set(r, CHAIN_VERIFY_CHECK_CONTRACT, CHAIN_VERIFY_PASS, "%s", want);

    uint8_t sig[32], sender[32] = {0};
    crypto_keccak256(sig, ANCHORED_SIG, strlen(ANCHORED_SIG));
    memcpy(sender + 12, b->anchor.sender, 20);
    char x[67], y[67];
    if (lg->ntopics != 3) {
        set(r, CHAIN_VERIFY_CHECK_TOPICS, CHAIN_VERIFY_FAIL,
            "log has %zu topics, an Anchored event has 3", lg->ntopics);
    } else if (memcmp(lg->topics[0], sig, 32) != 0) {
        hex_str(x, lg->topics[0], 32, true);
        set(r, CHAIN_VERIFY_CHECK_TOPICS, CHAIN_VERIFY_FAIL,
            "log is not an " ANCHORED_SIG " event (topic0 %s)", x);
    } else if (memcmp(lg->topics[1], sender, 32) != 0) {
        hex_str(x, lg->topics[1], 32, true);
        crypto_eth_address_format(b->anchor.sender, got);
        set(r, CHAIN_VERIFY_CHECK_TOPICS, CHAIN_VERIFY_FAIL,
            "log sender topic %s is not the bundle sender %s", x, got);
    } else if (memcmp(lg->topics[2], b->root, 32) != 0) {
        hex_str(x, lg->topics[2], 32, false);
        hex_str(y, b->root, 32, false);
        set(r, CHAIN_VERIFY_CHECK_TOPICS, CHAIN_VERIFY_FAIL,
            "anchored root mismatch: log has %s, bundle says %s", x, y);
    } else {
        set(r, CHAIN_VERIFY_CHECK_TOPICS, CHAIN_VERIFY_PASS, "Anchored(sender, root)");
    }

    /* data = abi.encode(uint64 count, uint256 blockTime) */
    static const uint8_t zero[24];
    if (lg->data_len != 64 || memcmp(lg->data, zero, 24) != 0) {
        set(r, CHAIN_VERIFY_CHECK_COUNT, CHAIN_VERIFY_FAIL,
            "log data is not (uint64 count, uint256 blockTime) (%zu bytes)", lg->data_len);
        return;
    }
    uint64_t count = dm_get_u64be(lg->data + 24);
    if (count != b->merkle.count)
        set(r, CHAIN_VERIFY_CHECK_COUNT, CHAIN_VERIFY_FAIL,
            "anchored count mismatch: log says %llu leaves, bundle says %llu",
            (unsigned long long)count, (unsigned long long)b->merkle.count);
    else
        set(r, CHAIN_VERIFY_CHECK_COUNT, CHAIN_VERIFY_PASS, "%llu leaves",
            (unsigned long long)count);
}

static void receipt_cb(chain_rpc_t *rpc, int status, const chain_rpc_receipt *rc,
                       const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    online_req *q = arg;
    const chain_verify_bundle *b = q->b;
    chain_verify_report *r = q->rep;
    char tx[67];
    hex_str(tx, b->anchor.tx_hash, 32, true);
    if (status == DM_ENOTFOUND) {
        set(r, CHAIN_VERIFY_CHECK_RECEIPT, CHAIN_VERIFY_FAIL,
            "transaction not found: no receipt for %s (never mined, pending or reorged out)", tx);
        skip_rest(r, "not run: no receipt");
        online_finish(q, DM_ETAMPER);
        return;
    }
    if (status != DM_OK) {
        rpc_failed(q, CHAIN_VERIFY_CHECK_RECEIPT, "eth_getTransactionReceipt", status, err);
        return;
    }
    if (memcmp(rc->tx_hash, b->anchor.tx_hash, 32) != 0) {
        char got[67];
        hex_str(got, rc->tx_hash, 32, true);
        set(r, CHAIN_VERIFY_CHECK_RECEIPT, CHAIN_VERIFY_FAIL,
            "the node answered the receipt of %s when asked for %s", got, tx);
        skip_rest(r, "not run: wrong receipt");
        online_finish(q, DM_ETAMPER);
        return;
    }
    set(r, CHAIN_VERIFY_CHECK_RECEIPT, CHAIN_VERIFY_PASS, "%s", tx);
    q->mined_block = rc->block_number;

    if (rc->status != 1)
        set(r, CHAIN_VERIFY_CHECK_STATUS, CHAIN_VERIFY_FAIL,
            "transaction reverted (receipt status %u)", rc->status);
    else
        set(r, CHAIN_VERIFY_CHECK_STATUS, CHAIN_VERIFY_PASS, "1");

    bool block_ok = false;
    char want[67], got[67];
    hex_str(want, b->anchor.block_hash, 32, true);
    hex_str(got, rc->block_hash, 32, true);
    if (rc->block_number != b->anchor.block_number)
        set(r, CHAIN_VERIFY_CHECK_BLOCK, CHAIN_VERIFY_FAIL,
            "block number mismatch: mined in block %llu, bundle says %llu",
            (unsigned long long)rc->block_number, (unsigned long long)b->anchor.block_number);
    else if (memcmp(rc->block_hash, b->anchor.block_hash, 32) != 0)
        set(r, CHAIN_VERIFY_CHECK_BLOCK, CHAIN_VERIFY_FAIL,
            "block hash mismatch: mined in %s, bundle says %s", got, want);
    else
        block_ok = true; /* decided once the block is seen canonical */

    check_log(q, rc);
    if (r->checks[CHAIN_VERIFY_CHECK_LOG].result != CHAIN_VERIFY_PASS) {
        const char *why = "not run: no such log";
        set(r, CHAIN_VERIFY_CHECK_CONTRACT, CHAIN_VERIFY_SKIP, "%s", why);
        set(r, CHAIN_VERIFY_CHECK_TOPICS, CHAIN_VERIFY_SKIP, "%s", why);
        set(r, CHAIN_VERIFY_CHECK_COUNT, CHAIN_VERIFY_SKIP, "%s", why);
    }

    char s[43], f[43];
    crypto_eth_address_format(b->anchor.sender, s);
    crypto_eth_address_format(rc->from, f);
    if (memcmp(rc->from, b->anchor.sender, 20) != 0)
        set(r, CHAIN_VERIFY_CHECK_FROM, CHAIN_VERIFY_FAIL,
            "transaction sent by %s, bundle sender is %s", f, s);
    else
        set(r, CHAIN_VERIFY_CHECK_FROM, CHAIN_VERIFY_PASS, "%s", f);

    if (block_ok) {
        started(q, CHAIN_VERIFY_CHECK_BLOCK, "eth_getBlockByNumber",
                chain_rpc_get_block(q->rpc, CHAIN_RPC_BLOCK(b->anchor.block_number), block_cb, q));
        return;
    }
    start_head(q);
}

static void chain_id_cb(chain_rpc_t *rpc, int status, uint64_t id, const chain_rpc_error *err,
                        void *arg)
{
    (void)rpc;
    online_req *q = arg;
    if (status != DM_OK) {
        rpc_failed(q, CHAIN_VERIFY_CHECK_CHAIN_ID, "eth_chainId", status, err);
        return;
    }
    if (id != q->b->chain_id)
        set(q->rep, CHAIN_VERIFY_CHECK_CHAIN_ID, CHAIN_VERIFY_FAIL,
            "chain id mismatch: the endpoint is chain %llu, bundle says %llu",
            (unsigned long long)id, (unsigned long long)q->b->chain_id);
    else
        set(q->rep, CHAIN_VERIFY_CHECK_CHAIN_ID, CHAIN_VERIFY_PASS, "%llu", (unsigned long long)id);
    started(q, CHAIN_VERIFY_CHECK_RECEIPT, "eth_getTransactionReceipt",
            chain_rpc_get_receipt(q->rpc, q->b->anchor.tx_hash, receipt_cb, q));
}

int chain_verify_online(chain_rpc_t *rpc, const chain_verify_bundle *bundle,
                        uint64_t min_confirmations, chain_verify_report *report, chain_verify_cb cb,
                        void *arg)
{
    if (!rpc || !bundle || !report || !cb)
        return DM_EINVAL;
    online_req *q = calloc(1, sizeof *q);
    if (!q)
        return DM_ENOMEM;
    *q = (online_req){.rpc = rpc,
                      .b = bundle,
                      .rep = report,
                      .min_conf = min_confirmations,
                      .cb = cb,
                      .arg = arg};
    for (int i = CHAIN_VERIFY_CHECK_CHAIN_ID; i < CHAIN_VERIFY_CHECK_COUNT_ALL; i++)
        report->checks[i] = (chain_verify_check){0};
    report->confirmations = 0;
    report->rpc_status = DM_OK;
    int rc = chain_rpc_chain_id(rpc, chain_id_cb, q);
    if (rc)
        free(q);
    return rc;
}

/* ------------------------------------------------------------------ sync wrapper */

typedef struct {
    chain_rpc_t *rpc;
    int status;
    bool done;
    bool closed;
} run_state;

static void run_closed(void *arg)
{
    ((run_state *)arg)->closed = true;
}

static void run_done(int status, chain_verify_report *report, void *arg)
{
    (void)report;
    run_state *s = arg;
    s->status = status;
    s->done = true;
    /* closing the client lets uv_run return: no handle of ours stays active */
    chain_rpc_close(s->rpc, run_closed, s);
}

int chain_verify_run(const char *url, const char *bundle_text, size_t n, uint64_t min_confirmations,
                     const chain_rpc_opts *opts, chain_verify_report *report)
{
    chain_verify_report_init(report);
    char err[CHAIN_VERIFY_MSG_MAX];
    chain_verify_bundle *b = NULL;
    int rc = chain_verify_bundle_parse(bundle_text, n, &b, err);
    if (rc) {
        set(report, CHAIN_VERIFY_CHECK_FORMAT, CHAIN_VERIFY_FAIL, "%s",
            rc == DM_ENOMEM ? "out of memory" : err);
        for (int i = CHAIN_VERIFY_CHECK_LEAF; i < CHAIN_VERIFY_CHECK_COUNT_ALL; i++)
            set(report, (chain_verify_check_id)i, CHAIN_VERIFY_SKIP, "not run: bundle malformed");
        return rc;
    }
    int off = chain_verify_offline(b, report);

    uv_loop_t loop;
    chain_rpc_t *rpc = NULL;
    run_state st = {0};
    if (uv_loop_init(&loop) != 0) {
        rc = DM_EIO;
        goto out_b;
    }
    if ((rc = chain_rpc_create(&rpc, &loop, url, opts)))
        goto out_loop;
    st.rpc = rpc;
    if ((rc = chain_verify_online(rpc, b, min_confirmations, report, run_done, &st)) == DM_OK) {
        uv_run(&loop, UV_RUN_DEFAULT);
        rc = st.done ? st.status : DM_EIO;
    }
    if (!st.closed) {
        chain_rpc_close(rpc, run_closed, &st); /* no-op if run_done already closed it */
        uv_run(&loop, UV_RUN_DEFAULT);
    }
out_loop:
    if (uv_loop_close(&loop) != 0 && rc == DM_OK)
        rc = DM_EIO;
out_b:
    chain_verify_bundle_free(b);
    if (rc != DM_OK && rc != DM_ETAMPER) {
        if (report->checks[CHAIN_VERIFY_CHECK_CHAIN_ID].result == CHAIN_VERIFY_NOT_RUN) {
            set(report, CHAIN_VERIFY_CHECK_CHAIN_ID, CHAIN_VERIFY_FAIL,
                "could not start the RPC client: %s", dm_strerror(rc));
            skip_rest(report, "not run: no RPC client");
            report->rpc_status = rc;
        }
        return rc;
    }
    if (off != DM_OK && off != DM_ETAMPER)
        return off;
    return off == DM_ETAMPER || rc == DM_ETAMPER ? DM_ETAMPER : DM_OK;
}
