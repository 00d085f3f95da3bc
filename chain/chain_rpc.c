/*
 * JSON-RPC 2.0 client: libcurl multi socket API on libuv (see chain_rpc.h).
 *
 * Shape (after curl's docs/examples/multi-uv.c): libcurl tells us through CURLMOPT_SOCKETFUNCTION
 * which sockets to watch for what, and we keep one uv_poll_t per socket (its rpc_sock is
 * attached to the socket with curl_multi_assign); through CURLMOPT_TIMERFUNCTION it asks for
 * one timer, which we keep in a single uv_timer_t. Both uv callbacks hand the event back with
 * curl_multi_socket_action and then drain curl_multi_info_read for finished transfers. libcurl
 * must never be re-entered from its own callbacks, so the timer callback only arms the uv
 * timer (a 0 ms timeout fires on the next loop iteration) and the socket callback only starts
 * and stops polls.
 *
 * Lifetimes: a call owns its easy handle, request body and reply buffer; the easy handle is
 * removed and cleaned up before the user's callback runs, so a callback may do anything,
 * chain_rpc_close included. chain_rpc_close cancels the transfers, stops watching every socket
 * *before* curl_multi_cleanup closes them (a uv_poll_t must never outlive its fd), closes the
 * timer, and fires the cancelled callbacks and frees the client from the last close callback.
 */
#include "chain_rpc.h"

#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "dm_util.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METHOD_MAX 64
/* eth_sendRawTransaction payloads: nodes refuse transactions far smaller than this. */
#define RAW_TX_MAX (1u << 20)

typedef struct rpc_sock {
    uv_poll_t poll;
    curl_socket_t fd;
    chain_rpc_t *rpc;
    struct rpc_sock *prev, *next;
} rpc_sock;

typedef struct rpc_call {
    chain_rpc_t *rpc;
    CURL *easy;
    char *body; /* the request; libcurl reads it in place (CURLOPT_POSTFIELDS) */
    size_t body_len;
    dm_buf reply;
    uint64_t id;
    chain_rpc_cb cb;
    void *arg;
    bool too_big, nomem;
    char method[METHOD_MAX + 1];
    char errbuf[CURL_ERROR_SIZE];
    struct rpc_call *prev, *next;
} rpc_call;

struct chain_rpc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    char *url;
    struct curl_slist *headers;
    chain_rpc_opts o;
    uint64_t next_id;
    rpc_call *calls;                      /* transfers in flight */
    rpc_call *cancelled, *cancelled_tail; /* closed before completion, callbacks pending */
    size_t in_flight;                     /* accepted, callback not fired */
    rpc_sock *socks;                      /* polls not yet closing */
    unsigned handles;                     /* uv handles not yet closed (timer + polls) */
    bool closing;
    chain_rpc_close_cb close_cb;
    void *close_arg;
};

/* ------------------------------------------------------------------ errors */

void chain_rpc_error_clear(chain_rpc_error *err)
{
    if (!err)
        return;
    json_decref(err->data);
    memset(err, 0, sizeof *err);
}

/* Copy n bytes of untrusted text as printable ASCII: a node's message ends up in logs. */
static void msg_copy(char out[CHAIN_RPC_MSG_MAX], const char *s, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < CHAIN_RPC_MSG_MAX; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[j++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    out[j] = '\0';
}

__attribute__((format(printf, 3, 4))) static void
err_set(chain_rpc_error *e, chain_rpc_err_kind kind, const char *fmt, ...)
{
    char tmp[CHAIN_RPC_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    e->kind = kind;
    msg_copy(e->message, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ------------------------------------------------------------------ reply parser */

int chain_rpc_parse_reply(const char *body, size_t n, uint64_t expected_id, json_t **result,
                          chain_rpc_error *err)
{
    memset(err, 0, sizeof *err);
    *result = NULL;
    if (n > CHAIN_RPC_REPLY_HARD_MAX) {
        err_set(err, CHAIN_RPC_ERR_REPLY, "reply of %zu bytes exceeds the hard limit", n);
        return DM_ETOOBIG;
    }
    if (n == 0 || !body) {
        err_set(err, CHAIN_RPC_ERR_REPLY, "empty reply");
        return DM_EPROTO;
    }
    json_error_t je;
    /* Duplicate keys are refused: two "result" members would let a proxy and this client
     * see different answers. jansson also refuses NUL in strings, invalid UTF-8, trailing
     * bytes and nesting beyond its depth limit. */
    json_t *root = json_loadb(body, n, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        err_set(err, CHAIN_RPC_ERR_REPLY, "reply is not JSON (%s at byte %d)", je.text,
                je.position);
        return DM_EPROTO;
    }
    int rc = DM_EPROTO;
    if (!json_is_object(root)) {
        err_set(err, CHAIN_RPC_ERR_REPLY, "reply is not a JSON-RPC response object");
        goto out;
    }
    const json_t *ver = json_object_get(root, "jsonrpc");
    if (!json_is_string(ver) || json_string_length(ver) != 3 ||
        memcmp(json_string_value(ver), "2.0", 3) != 0) {
        err_set(err, CHAIN_RPC_ERR_REPLY, "reply is not JSON-RPC 2.0");
        goto out;
    }
    json_t *res = json_object_get(root, "result");
    const json_t *ev = json_object_get(root, "error");
    if (res && ev) {
        err_set(err, CHAIN_RPC_ERR_REPLY, "reply has both result and error");
        goto out;
    }
    if (!res && !ev) {
        err_set(err, CHAIN_RPC_ERR_REPLY, "reply has neither result nor error");
        goto out;
    }
    const json_t *id = json_object_get(root, "id");
    bool id_ok = json_is_integer(id) && json_integer_value(id) >= 0 &&
                 (uint64_t)json_integer_value(id) == expected_id;
    /* JSON-RPC 2.0 §5: id is null when the server could not read the request's id. */
    if (!id_ok && !(ev && json_is_null(id))) {
        err_set(err, CHAIN_RPC_ERR_REPLY, "reply id does not match the request id %" PRIu64,
                expected_id);
        goto out;
    }
    if (ev) {
        const json_t *code = json_object_get(ev, "code");
        const json_t *msg = json_object_get(ev, "message");
        if (!json_is_object(ev) || !json_is_integer(code) || !json_is_string(msg)) {
            err_set(err, CHAIN_RPC_ERR_REPLY, "reply has a malformed error object");
            goto out;
        }
        err->kind = CHAIN_RPC_ERR_REMOTE;
        err->code = (int64_t)json_integer_value(code);
        msg_copy(err->message, json_string_value(msg), json_string_length(msg));
        err->data = json_incref(json_object_get(ev, "data"));
        goto out;
    }
    *result = json_incref(res);
    rc = DM_OK;
out:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ hex values */

/* A QUANTITY is a JSON string in chain_hex's canonical form; any fault is a protocol error. */
int chain_rpc_parse_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_string(v) ||
        chain_hex_quantity_parse_u64(json_string_value(v), json_string_length(v), out) != DM_OK)
        return DM_EPROTO;
    return DM_OK;
}

int chain_rpc_parse_u256(const json_t *v, chain_u256 *out)
{
    if (!json_is_string(v) ||
        chain_hex_quantity_parse_u256(json_string_value(v), json_string_length(v), out) != DM_OK)
        return DM_EPROTO;
    return DM_OK;
}

static int data_digits(const json_t *v, const char **d, size_t *nd)
{
    if (!json_is_string(v))
        return DM_EPROTO;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n < 2 || s[0] != '0' || s[1] != 'x' || n % 2 != 0)
        return DM_EPROTO;
    *d = s + 2;
    *nd = n - 2;
    return DM_OK;
}

/* Decode 2*nbytes digits already checked to be hex. */
static void unhex(uint8_t *out, const char *d, size_t nbytes)
{
    for (size_t i = 0; i < nbytes; i++)
        out[i] = (uint8_t)(dm_hex_digit(d[2 * i]) << 4 | dm_hex_digit(d[2 * i + 1]));
}

int chain_rpc_parse_fixed(const json_t *v, uint8_t *out, size_t len)
{
    const char *d;
    size_t n;
    if (data_digits(v, &d, &n) != DM_OK || n != 2 * len)
        return DM_EPROTO;
    /* check every digit first so that `out` is untouched on failure */
    for (size_t i = 0; i < n; i++)
        if (dm_hex_digit(d[i]) < 0)
            return DM_EPROTO;
    unhex(out, d, len);
    return DM_OK;
}

int chain_rpc_parse_data(const json_t *v, dm_buf *out)
{
    const char *d;
    size_t n;
    if (data_digits(v, &d, &n) != DM_OK)
        return DM_EPROTO;
    for (size_t i = 0; i < n; i++)
        if (dm_hex_digit(d[i]) < 0)
            return DM_EPROTO;
    if (n == 0)
        return DM_OK;
    int rc = dm_buf_reserve(out, n / 2);
    if (rc)
        return rc == DM_ETOOBIG ? DM_ETOOBIG : DM_ENOMEM;
    unhex(out->data + out->len, d, n / 2);
    out->len += n / 2;
    return DM_OK;
}

/* ------------------------------------------------------------------ typed result parsers */

/* Field helpers: on failure they name the field in *bad (a static string) for messages. */
static int f_u64(const json_t *o, const char *k, uint64_t *out, const char **bad)
{
    if (chain_rpc_parse_u64(json_object_get(o, k), out) == DM_OK)
        return DM_OK;
    *bad = k;
    return DM_EPROTO;
}

static int f_u256(const json_t *o, const char *k, chain_u256 *out, const char **bad)
{
    if (chain_rpc_parse_u256(json_object_get(o, k), out) == DM_OK)
        return DM_OK;
    *bad = k;
    return DM_EPROTO;
}

static int f_fixed(const json_t *o, const char *k, uint8_t *out, size_t len, const char **bad)
{
    if (chain_rpc_parse_fixed(json_object_get(o, k), out, len) == DM_OK)
        return DM_OK;
    *bad = k;
    return DM_EPROTO;
}

/* A member that may be absent or null (*has false) or a DATA of len bytes. */
static int f_opt_fixed(const json_t *o, const char *k, bool *has, uint8_t *out, size_t len,
                       const char **bad)
{
    const json_t *v = json_object_get(o, k);
    *has = false;
    if (!v || json_is_null(v))
        return DM_OK;
    if (chain_rpc_parse_fixed(v, out, len) != DM_OK) {
        *bad = k;
        return DM_EPROTO;
    }
    *has = true;
    return DM_OK;
}

static int parse_log(const json_t *v, chain_rpc_log *l, const char **bad)
{
    memset(l, 0, sizeof *l);
    if (!json_is_object(v)) {
        *bad = "log";
        return DM_EPROTO;
    }
    if (f_fixed(v, "address", l->address, 20, bad) ||
        f_u64(v, "blockNumber", &l->block_number, bad) ||
        f_fixed(v, "blockHash", l->block_hash, 32, bad) ||
        f_fixed(v, "transactionHash", l->tx_hash, 32, bad) ||
        f_u64(v, "transactionIndex", &l->tx_index, bad) || f_u64(v, "logIndex", &l->log_index, bad))
        return DM_EPROTO;
    const json_t *topics = json_object_get(v, "topics");
    if (!json_is_array(topics) || json_array_size(topics) > 4) {
        *bad = "topics";
        return DM_EPROTO;
    }
    l->ntopics = json_array_size(topics);
    for (size_t i = 0; i < l->ntopics; i++)
        if (chain_rpc_parse_fixed(json_array_get(topics, i), l->topics[i], 32) != DM_OK) {
            *bad = "topics";
            return DM_EPROTO;
        }
    const json_t *removed = json_object_get(v, "removed");
    if (removed && !json_is_boolean(removed)) {
        *bad = "removed";
        return DM_EPROTO;
    }
    l->removed = json_is_true(removed);
    dm_buf b = DM_BUF_INIT;
    int rc = chain_rpc_parse_data(json_object_get(v, "data"), &b);
    if (rc) {
        dm_buf_free(&b);
        *bad = "data";
        return rc;
    }
    l->data = dm_buf_steal(&b, &l->data_len);
    return DM_OK;
}

static void logs_array_free(chain_rpc_log *logs, size_t n)
{
    if (!logs)
        return;
    for (size_t i = 0; i < n; i++)
        free(logs[i].data);
    free(logs);
}

/* Parse a JSON array of logs into a fresh array (*out NULL when empty). */
static int parse_log_array(const json_t *v, chain_rpc_log **out, size_t *nout, const char **bad)
{
    *out = NULL;
    *nout = 0;
    if (!json_is_array(v)) {
        *bad = "logs";
        return DM_EPROTO;
    }
    size_t n = json_array_size(v);
    if (n == 0)
        return DM_OK;
    chain_rpc_log *logs = calloc(n, sizeof *logs);
    if (!logs)
        return DM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = parse_log(json_array_get(v, i), &logs[i], bad);
        if (rc) {
            logs_array_free(logs, i + 1);
            return rc;
        }
    }
    *out = logs;
    *nout = n;
    return DM_OK;
}

static int parse_logs_why(const json_t *v, chain_rpc_logs **out, const char **bad)
{
    *out = NULL;
    chain_rpc_logs *l = calloc(1, sizeof *l);
    if (!l)
        return DM_ENOMEM;
    int rc = parse_log_array(v, &l->logs, &l->n, bad);
    if (rc) {
        free(l);
        return rc;
    }
    *out = l;
    return DM_OK;
}

int chain_rpc_parse_logs(const json_t *v, chain_rpc_logs **out)
{
    const char *bad = NULL;
    return parse_logs_why(v, out, &bad);
}

void chain_rpc_logs_free(chain_rpc_logs *l)
{
    if (!l)
        return;
    logs_array_free(l->logs, l->n);
    free(l);
}

static int parse_receipt_why(const json_t *v, chain_rpc_receipt **out, const char **bad)
{
    *out = NULL;
    if (json_is_null(v))
        return DM_ENOTFOUND;
    if (!json_is_object(v)) {
        *bad = "receipt";
        return DM_EPROTO;
    }
    chain_rpc_receipt *r = calloc(1, sizeof *r);
    if (!r)
        return DM_ENOMEM;
    int rc = DM_EPROTO;
    uint64_t status = 0;
    if (f_fixed(v, "transactionHash", r->tx_hash, 32, bad) ||
        f_fixed(v, "blockHash", r->block_hash, 32, bad) ||
        f_u64(v, "blockNumber", &r->block_number, bad) ||
        f_u64(v, "transactionIndex", &r->tx_index, bad) || f_fixed(v, "from", r->from, 20, bad) ||
        f_opt_fixed(v, "to", &r->has_to, r->to, 20, bad) ||
        f_opt_fixed(v, "contractAddress", &r->has_contract_address, r->contract_address, 20, bad) ||
        f_u64(v, "gasUsed", &r->gas_used, bad) ||
        f_u64(v, "cumulativeGasUsed", &r->cumulative_gas_used, bad) ||
        f_u64(v, "status", &status, bad))
        goto out;
    /* "to" must be present (null for a creation), not merely absent */
    if (!json_object_get(v, "to")) {
        *bad = "to";
        goto out;
    }
    if (status > 1) {
        *bad = "status";
        goto out;
    }
    r->status = (uint8_t)status;
    const json_t *egp = json_object_get(v, "effectiveGasPrice");
    if (egp) {
        if (f_u256(v, "effectiveGasPrice", &r->effective_gas_price, bad))
            goto out;
        r->has_effective_gas_price = true;
    }
    rc = parse_log_array(json_object_get(v, "logs"), &r->logs, &r->nlogs, bad);
    if (rc)
        goto out;
    rc = DM_EPROTO;
    for (size_t i = 0; i < r->nlogs; i++) {
        const chain_rpc_log *l = &r->logs[i];
        if (memcmp(l->tx_hash, r->tx_hash, 32) != 0 || memcmp(l->block_hash, r->block_hash, 32) ||
            l->block_number != r->block_number || l->tx_index != r->tx_index) {
            *bad = "logs (not of this transaction)";
            goto out;
        }
    }
    rc = DM_OK;
out:
    if (rc)
        chain_rpc_receipt_free(r);
    else
        *out = r;
    return rc;
}

int chain_rpc_parse_receipt(const json_t *v, chain_rpc_receipt **out)
{
    const char *bad = NULL;
    return parse_receipt_why(v, out, &bad);
}

void chain_rpc_receipt_free(chain_rpc_receipt *r)
{
    if (!r)
        return;
    logs_array_free(r->logs, r->nlogs);
    free(r);
}

static int parse_block_why(const json_t *v, chain_rpc_block *out, const char **bad)
{
    memset(out, 0, sizeof *out);
    if (json_is_null(v))
        return DM_ENOTFOUND;
    if (!json_is_object(v)) {
        *bad = "block";
        return DM_EPROTO;
    }
    chain_rpc_block b;
    memset(&b, 0, sizeof b);
    if (f_u64(v, "number", &b.number, bad) || f_fixed(v, "hash", b.hash, 32, bad) ||
        f_fixed(v, "parentHash", b.parent_hash, 32, bad) ||
        f_u64(v, "timestamp", &b.timestamp, bad) || f_u64(v, "gasLimit", &b.gas_limit, bad) ||
        f_u64(v, "gasUsed", &b.gas_used, bad))
        return DM_EPROTO;
    if (json_object_get(v, "baseFeePerGas")) {
        if (f_u256(v, "baseFeePerGas", &b.base_fee_per_gas, bad))
            return DM_EPROTO;
        b.has_base_fee = true;
    }
    *out = b;
    return DM_OK;
}

int chain_rpc_parse_block(const json_t *v, chain_rpc_block *out)
{
    const char *bad = NULL;
    return parse_block_why(v, out, &bad);
}

static int parse_tx_why(const json_t *v, chain_rpc_tx *out, const char **bad)
{
    memset(out, 0, sizeof *out);
    if (json_is_null(v))
        return DM_ENOTFOUND;
    if (!json_is_object(v)) {
        *bad = "transaction";
        return DM_EPROTO;
    }
    chain_rpc_tx t;
    memset(&t, 0, sizeof t);
    bool has_hash;
    if (f_fixed(v, "hash", t.hash, 32, bad) || f_fixed(v, "from", t.from, 20, bad) ||
        f_u64(v, "nonce", &t.nonce, bad) ||
        f_opt_fixed(v, "blockHash", &has_hash, t.block_hash, 32, bad))
        return DM_EPROTO;
    const json_t *bn = json_object_get(v, "blockNumber");
    bool has_number = bn && !json_is_null(bn);
    if (has_number && f_u64(v, "blockNumber", &t.block_number, bad))
        return DM_EPROTO;
    if (has_hash != has_number) {
        *bad = "blockNumber/blockHash";
        return DM_EPROTO;
    }
    t.mined = has_hash;
    *out = t;
    return DM_OK;
}

int chain_rpc_parse_tx(const json_t *v, chain_rpc_tx *out)
{
    const char *bad = NULL;
    return parse_tx_why(v, out, &bad);
}

static int parse_fee_history_why(const json_t *v, size_t npct, chain_rpc_fee_history **out,
                                 const char **bad)
{
    *out = NULL;
    if (!json_is_object(v)) {
        *bad = "feeHistory";
        return DM_EPROTO;
    }
    chain_rpc_fee_history *f = calloc(1, sizeof *f);
    if (!f)
        return DM_ENOMEM;
    int rc = DM_EPROTO;
    if (f_u64(v, "oldestBlock", &f->oldest_block, bad))
        goto out;
    const json_t *ratio = json_object_get(v, "gasUsedRatio");
    const json_t *base = json_object_get(v, "baseFeePerGas");
    if (!json_is_array(ratio)) {
        *bad = "gasUsedRatio";
        goto out;
    }
    f->nblocks = json_array_size(ratio);
    if (!json_is_array(base) || json_array_size(base) != f->nblocks + 1) {
        *bad = "baseFeePerGas";
        goto out;
    }
    rc = DM_ENOMEM;
    f->base_fee_per_gas = calloc(f->nblocks + 1, sizeof *f->base_fee_per_gas);
    f->gas_used_ratio = calloc(f->nblocks ? f->nblocks : 1, sizeof *f->gas_used_ratio);
    if (!f->base_fee_per_gas || !f->gas_used_ratio)
        goto out;
    rc = DM_EPROTO;
    for (size_t i = 0; i <= f->nblocks; i++)
        if (chain_rpc_parse_u256(json_array_get(base, i), &f->base_fee_per_gas[i])) {
            *bad = "baseFeePerGas";
            goto out;
        }
    for (size_t i = 0; i < f->nblocks; i++) {
        const json_t *r = json_array_get(ratio, i);
        double d = json_is_number(r) ? json_number_value(r) : -1.0;
        if (!isfinite(d) || d < 0) {
            *bad = "gasUsedRatio";
            goto out;
        }
        f->gas_used_ratio[i] = d;
    }
    f->npercentiles = npct;
    if (npct > 0 && f->nblocks > 0) {
        const json_t *reward = json_object_get(v, "reward");
        if (!json_is_array(reward) || json_array_size(reward) != f->nblocks) {
            *bad = "reward";
            goto out;
        }
        if (f->nblocks > SIZE_MAX / sizeof(chain_u256) / npct) {
            *bad = "reward";
            goto out;
        }
        rc = DM_ENOMEM;
        f->reward = calloc(f->nblocks * npct, sizeof *f->reward);
        if (!f->reward)
            goto out;
        rc = DM_EPROTO;
        for (size_t i = 0; i < f->nblocks; i++) {
            const json_t *row = json_array_get(reward, i);
            if (!json_is_array(row) || json_array_size(row) != npct) {
                *bad = "reward";
                goto out;
            }
            for (size_t j = 0; j < npct; j++)
                if (chain_rpc_parse_u256(json_array_get(row, j), &f->reward[i * npct + j])) {
                    *bad = "reward";
                    goto out;
                }
        }
    }
    rc = DM_OK;
out:
    if (rc)
        chain_rpc_fee_history_free(f);
    else
        *out = f;
    return rc;
}

int chain_rpc_parse_fee_history(const json_t *v, size_t npercentiles, chain_rpc_fee_history **out)
{
    const char *bad = NULL;
    return parse_fee_history_why(v, npercentiles, out, &bad);
}

void chain_rpc_fee_history_free(chain_rpc_fee_history *f)
{
    if (!f)
        return;
    free(f->base_fee_per_gas);
    free(f->gas_used_ratio);
    free(f->reward);
    free(f);
}

/* ------------------------------------------------------------------ libuv <-> libcurl */

static void check_done(chain_rpc_t *rpc);
static void rpc_maybe_free(chain_rpc_t *rpc);

static void on_sock_closed(uv_handle_t *h)
{
    rpc_sock *k = DM_CONTAINER_OF((uv_poll_t *)h, rpc_sock, poll);
    chain_rpc_t *rpc = k->rpc;
    free(k);
    rpc->handles--;
    rpc_maybe_free(rpc);
}

static void sock_close(rpc_sock *k)
{
    chain_rpc_t *rpc = k->rpc;
    if (k->prev)
        k->prev->next = k->next;
    else
        rpc->socks = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
    /* uv_close stops the watcher at once, so libcurl may close (and the kernel reuse) the fd
     * as soon as we return */
    uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    rpc_sock *k = DM_CONTAINER_OF(h, rpc_sock, poll);
    chain_rpc_t *rpc = k->rpc;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    /* k may be closed inside (CURL_POLL_REMOVE); its memory lives until the close callback */
    curl_multi_socket_action(rpc->multi, k->fd, flags, &running);
    check_done(rpc);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    chain_rpc_t *rpc = userp;
    rpc_sock *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            curl_multi_assign(rpc->multi, s, NULL);
            sock_close(k);
        }
        return 0;
    }
    if (rpc->closing)
        return 0;
    if (!k) {
        k = calloc(1, sizeof *k);
        if (!k)
            return -1;
        int rc = uv_poll_init_socket(rpc->loop, &k->poll, s);
        if (rc) {
            dm_log(DM_LOG_WARNING, "chain", "rpc: cannot watch socket %d: %s", (int)s,
                   uv_strerror(rc));
            free(k);
            return -1; /* libcurl fails the transfer */
        }
        k->fd = s;
        k->rpc = rpc;
        k->next = rpc->socks;
        if (rpc->socks)
            rpc->socks->prev = k;
        rpc->socks = k;
        rpc->handles++;
        curl_multi_assign(rpc->multi, s, k);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    int rc = uv_poll_start(&k->poll, ev, on_poll);
    if (rc) {
        dm_log(DM_LOG_WARNING, "chain", "rpc: cannot poll socket %d: %s", (int)s, uv_strerror(rc));
        return -1;
    }
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    chain_rpc_t *rpc = DM_CONTAINER_OF(t, chain_rpc_t, timer);
    int running;
    curl_multi_socket_action(rpc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(rpc);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    chain_rpc_t *rpc = userp;
    if (rpc->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&rpc->timer);
    else
        uv_timer_start(&rpc->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ------------------------------------------------------------------ calls */

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud)
{
    rpc_call *c = ud;
    size_t n = size * nmemb;
    /* the cap is checked before the bytes are stored: a hostile endpoint gets at most
     * max_reply_bytes of our memory, whatever it declared */
    if (n > c->rpc->o.max_reply_bytes - c->reply.len) {
        c->too_big = true;
        return 0;
    }
    if (dm_buf_append(&c->reply, p, n) != DM_OK) {
        c->nomem = true;
        return 0;
    }
    return n;
}

static void call_free(rpc_call *c)
{
    if (!c)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    free(c->body);
    dm_buf_free(&c->reply);
    free(c);
}

static void call_unlink(chain_rpc_t *rpc, rpc_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        rpc->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Detach the transfer from libcurl (socket callbacks may run), keep the call. */
static void call_detach(chain_rpc_t *rpc, rpc_call *c)
{
    call_unlink(rpc, c);
    if (c->easy) {
        curl_multi_remove_handle(rpc->multi, c->easy);
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
    }
}

static int transport_status(const rpc_call *c, CURLcode cc, chain_rpc_error *e)
{
    const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc);
    switch (cc) {
    case CURLE_OPERATION_TIMEDOUT:
        err_set(e, CHAIN_RPC_ERR_TRANSPORT, "timed out: %s", why);
        return DM_ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
        err_set(e, CHAIN_RPC_ERR_TRANSPORT, "endpoint unreachable: %s", why);
        return DM_ECONN;
    case CURLE_PEER_FAILED_VERIFICATION:
        err_set(e, CHAIN_RPC_ERR_TRANSPORT, "TLS verification failed: %s", why);
        return DM_EAUTH;
    case CURLE_FILESIZE_EXCEEDED:
        err_set(e, CHAIN_RPC_ERR_REPLY, "reply exceeds %zu bytes", c->rpc->o.max_reply_bytes);
        return DM_ETOOBIG;
    case CURLE_WRITE_ERROR:
        if (c->too_big) {
            err_set(e, CHAIN_RPC_ERR_REPLY, "reply exceeds %zu bytes", c->rpc->o.max_reply_bytes);
            return DM_ETOOBIG;
        }
        err_set(e, CHAIN_RPC_ERR_TRANSPORT, "out of memory for the reply");
        return DM_ENOMEM;
    case CURLE_OUT_OF_MEMORY:
        err_set(e, CHAIN_RPC_ERR_TRANSPORT, "out of memory");
        return DM_ENOMEM;
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_UNSUPPORTED_PROTOCOL:
        err_set(e, CHAIN_RPC_ERR_REPLY, "broken HTTP reply: %s", why);
        return DM_EPROTO;
    default:
        err_set(e, CHAIN_RPC_ERR_TRANSPORT, "transfer failed: %s", why);
        return DM_EIO;
    }
}

static void call_complete(chain_rpc_t *rpc, rpc_call *c, CURLcode cc)
{
    long http = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &http);
    call_detach(rpc, c);

    chain_rpc_error err;
    memset(&err, 0, sizeof err);
    json_t *result = NULL;
    int st;
    if (cc != CURLE_OK) {
        st = transport_status(c, cc, &err);
    } else if (http != 200) {
        /* some providers answer 4xx/5xx with a JSON-RPC error object (rate limits, bad
         * requests): keep the HTTP kind, but pass the node's words along */
        json_t *ignored = NULL;
        chain_rpc_error body;
        int bst = chain_rpc_parse_reply((const char *)c->reply.data, c->reply.len, c->id, &ignored,
                                        &body);
        json_decref(ignored);
        st = DM_EPROTO;
        if (bst == DM_EPROTO && body.kind == CHAIN_RPC_ERR_REMOTE) {
            err_set(&err, CHAIN_RPC_ERR_HTTP, "HTTP status %ld: %s", http, body.message);
            err.code = body.code;
            err.data = body.data;
            body.data = NULL;
        } else {
            err_set(&err, CHAIN_RPC_ERR_HTTP, "HTTP status %ld", http);
        }
        chain_rpc_error_clear(&body);
    } else {
        st = chain_rpc_parse_reply((const char *)c->reply.data, c->reply.len, c->id, &result, &err);
    }
    err.http_status = http;
    if (st != DM_OK)
        dm_log(DM_LOG_DEBUG, "chain", "rpc %s (id %" PRIu64 "): %s: %s", c->method, c->id,
               dm_err_name(st), err.message);
    rpc->in_flight--;
    c->cb(rpc, st, result, &err, c->arg);
    json_decref(result);
    chain_rpc_error_clear(&err);
    call_free(c);
}

static void check_done(chain_rpc_t *rpc)
{
    CURLMsg *m;
    int left;
    /* a callback may close the client: stop draining then (the multi handle is gone) */
    while (!rpc->closing && (m = curl_multi_info_read(rpc->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode cc = m->data.result;
        char *priv = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        call_complete(rpc, (rpc_call *)(void *)priv, cc);
    }
}

static bool method_ok(const char *m)
{
    if (!m)
        return false;
    size_t n = strlen(m);
    if (n == 0 || n > METHOD_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = m[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return false;
    }
    return true;
}

static int call_start(chain_rpc_t *rpc, const char *method, const json_t *params, chain_rpc_cb cb,
                      void *arg)
{
    if (!rpc || !cb || !method_ok(method) ||
        (params && !json_is_array(params) && !json_is_object(params)))
        return DM_EINVAL;
    if (rpc->closing)
        return DM_ECLOSED;
    if (rpc->in_flight >= rpc->o.max_in_flight)
        return DM_ELIMIT;

    int rc = DM_ENOMEM;
    char *ptext = NULL;
    dm_buf body = DM_BUF_INIT;
    rpc_call *c = calloc(1, sizeof *c);
    if (!c)
        goto out;
    c->rpc = rpc;
    c->cb = cb;
    c->arg = arg;
    c->id = rpc->next_id;
    /* ids stay within jansson's integer range so the reply's id can match */
    rpc->next_id = rpc->next_id == INT64_MAX ? 1 : rpc->next_id + 1;
    snprintf(c->method, sizeof c->method, "%s", method);
    ptext = params ? json_dumps(params, JSON_COMPACT) : NULL;
    if (params && !ptext)
        goto out;
    /* method is [A-Za-z0-9_]: safe to place between quotes as is */
    if ((rc = dm_buf_printf(&body,
                            "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 ",\"method\":\"%s\","
                            "\"params\":%s}",
                            c->id, method, ptext ? ptext : "[]")) != DM_OK)
        goto out;
    c->body = (char *)dm_buf_steal(&body, &c->body_len);

    rc = DM_ENOMEM;
    CURL *e = c->easy = curl_easy_init();
    if (!e)
        goto out;
    rc = DM_EIO;
    if (curl_easy_setopt(e, CURLOPT_URL, rpc->url) ||
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") ||
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") ||
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) ||
        curl_easy_setopt(e, CURLOPT_NOPROXY, "localhost,127.0.0.0/8,::1") ||
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) || curl_easy_setopt(e, CURLOPT_POST, 1L) ||
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body) ||
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len) ||
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, rpc->headers) ||
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) ||
        curl_easy_setopt(e, CURLOPT_WRITEDATA, c) || curl_easy_setopt(e, CURLOPT_PRIVATE, c) ||
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf) ||
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)rpc->o.timeout_ms) ||
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)rpc->o.connect_timeout_ms) ||
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)rpc->o.max_reply_bytes) ||
        curl_easy_setopt(e, CURLOPT_USERAGENT, "dmnode-chain-rpc"))
        goto out;
    if (curl_multi_add_handle(rpc->multi, e) != CURLM_OK)
        goto out;
    c->next = rpc->calls;
    if (rpc->calls)
        rpc->calls->prev = c;
    rpc->calls = c;
    rpc->in_flight++;
    c = NULL;
    rc = DM_OK;
out:
    free(ptext);
    dm_buf_free(&body);
    call_free(c);
    return rc;
}

int chain_rpc_call(chain_rpc_t *rpc, const char *method, const json_t *params, chain_rpc_cb cb,
                   void *arg)
{
    return call_start(rpc, method, params, cb, arg);
}

int chain_rpc_call_text(chain_rpc_t *rpc, const char *method, const char *params_json,
                        chain_rpc_cb cb, void *arg)
{
    if (!params_json)
        return call_start(rpc, method, NULL, cb, arg);
    json_error_t je;
    json_t *p = json_loads(params_json, JSON_REJECT_DUPLICATES, &je);
    if (!p)
        return DM_EINVAL;
    int rc = call_start(rpc, method, p, cb, arg);
    json_decref(p);
    return rc;
}

size_t chain_rpc_in_flight(const chain_rpc_t *rpc)
{
    return rpc ? rpc->in_flight : 0;
}

/* ------------------------------------------------------------------ lifecycle */

static bool url_ok(const char *url)
{
    if (!url || strlen(url) > CHAIN_RPC_URL_MAX)
        return false;
    CURLU *u = curl_url();
    if (!u)
        return false;
    bool ok = false;
    char *scheme = NULL, *host = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto out;
    ok = (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) && host[0] != '\0';
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

static void rpc_free(chain_rpc_t *rpc)
{
    if (rpc->multi)
        curl_multi_cleanup(rpc->multi);
    curl_slist_free_all(rpc->headers);
    free(rpc->url);
    free(rpc);
    curl_global_cleanup();
}

int chain_rpc_create(chain_rpc_t **out, uv_loop_t *loop, const char *url,
                     const chain_rpc_opts *opts)
{
    *out = NULL;
    if (!loop || !url_ok(url))
        return DM_EINVAL;
    chain_rpc_opts o;
    memset(&o, 0, sizeof o);
    if (opts)
        o = *opts;
    if (!o.timeout_ms)
        o.timeout_ms = CHAIN_RPC_DEFAULT_TIMEOUT_MS;
    if (!o.connect_timeout_ms)
        o.connect_timeout_ms = CHAIN_RPC_DEFAULT_CONNECT_TIMEOUT_MS;
    if (o.connect_timeout_ms > o.timeout_ms)
        o.connect_timeout_ms = o.timeout_ms;
    if (!o.max_reply_bytes)
        o.max_reply_bytes = CHAIN_RPC_DEFAULT_MAX_REPLY;
    if (o.max_reply_bytes > CHAIN_RPC_REPLY_HARD_MAX)
        return DM_ETOOBIG;
    if (!o.max_in_flight)
        o.max_in_flight = CHAIN_RPC_DEFAULT_MAX_IN_FLIGHT;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return DM_ENOMEM;
    chain_rpc_t *rpc = calloc(1, sizeof *rpc);
    if (!rpc) {
        curl_global_cleanup();
        return DM_ENOMEM;
    }
    rpc->loop = loop;
    rpc->o = o;
    rpc->next_id = 1;
    struct curl_slist *h1, *h2, *h3;
    rpc->url = strdup(url);
    rpc->multi = curl_multi_init();
    h1 = rpc->headers = curl_slist_append(NULL, "Content-Type: application/json");
    h2 = h1 ? curl_slist_append(h1, "Accept: application/json") : NULL;
    /* no "Expect: 100-continue" round trip for large bodies (raw transactions) */
    h3 = h2 ? curl_slist_append(h2, "Expect:") : NULL;
    if (!rpc->url || !rpc->multi || !h3) {
        rpc_free(rpc);
        return DM_ENOMEM;
    }
    if (curl_multi_setopt(rpc->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) ||
        curl_multi_setopt(rpc->multi, CURLMOPT_SOCKETDATA, rpc) ||
        curl_multi_setopt(rpc->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) ||
        curl_multi_setopt(rpc->multi, CURLMOPT_TIMERDATA, rpc)) {
        rpc_free(rpc);
        return DM_EIO;
    }
    int rc = uv_timer_init(loop, &rpc->timer);
    if (rc) {
        rpc_free(rpc);
        return DM_EIO;
    }
    rpc->handles = 1;
    *out = rpc;
    return DM_OK;
}

static void rpc_maybe_free(chain_rpc_t *rpc)
{
    if (!rpc->closing || rpc->handles > 0)
        return;
    /* every handle is closed: the cancelled calls learn it now, in the order they were made */
    rpc_call *c;
    while ((c = rpc->cancelled)) {
        rpc->cancelled = c->next;
        chain_rpc_error err;
        memset(&err, 0, sizeof err);
        err_set(&err, CHAIN_RPC_ERR_TRANSPORT, "client closed");
        rpc->in_flight--;
        c->cb(rpc, DM_ECLOSED, NULL, &err, c->arg);
        call_free(c);
    }
    chain_rpc_close_cb cb = rpc->close_cb;
    void *arg = rpc->close_arg;
    rpc_free(rpc);
    if (cb)
        cb(arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    chain_rpc_t *rpc = DM_CONTAINER_OF((uv_timer_t *)h, chain_rpc_t, timer);
    rpc->handles--;
    rpc_maybe_free(rpc);
}

void chain_rpc_close(chain_rpc_t *rpc, chain_rpc_close_cb cb, void *arg)
{
    if (!rpc || rpc->closing)
        return;
    rpc->closing = true;
    rpc->close_cb = cb;
    rpc->close_arg = arg;
    /* calls are linked newest first: walking from the oldest keeps the callbacks in order */
    rpc_call *last = rpc->calls;
    while (last && last->next)
        last = last->next;
    while (last) {
        rpc_call *prev = last->prev;
        call_detach(rpc, last);
        last->next = NULL;
        if (rpc->cancelled_tail)
            rpc->cancelled_tail->next = last;
        else
            rpc->cancelled = last;
        rpc->cancelled_tail = last;
        last = prev;
    }
    /* libcurl closes its cached connections in curl_multi_cleanup: stop watching them first */
    while (rpc->socks) {
        rpc_sock *k = rpc->socks;
        curl_multi_assign(rpc->multi, k->fd, NULL);
        sock_close(k);
    }
    curl_multi_cleanup(rpc->multi);
    rpc->multi = NULL;
    uv_timer_stop(&rpc->timer);
    uv_close((uv_handle_t *)&rpc->timer, on_timer_closed);
}

/* ------------------------------------------------------------------ typed calls */

typedef enum {
    T_U64,
    T_U256,
    T_HASH,
    T_DATA,
    T_RECEIPT,
    T_LOGS,
    T_BLOCK,
    T_TX,
    T_FEES,
} typed_kind;

typedef struct {
    typed_kind kind;
    union {
        chain_rpc_u64_cb u64;
        chain_rpc_u256_cb u256;
        chain_rpc_hash_cb hash;
        chain_rpc_data_cb data;
        chain_rpc_receipt_cb receipt;
        chain_rpc_logs_cb logs;
        chain_rpc_block_cb block;
        chain_rpc_tx_cb tx;
        chain_rpc_fee_history_cb fees;
    } cb;
    void *arg;
    size_t npct;
    const char *method; /* a string literal */
} typed_ctx;

static int typed_parse(typed_ctx *t, const json_t *result, const char **bad, uint64_t *u64,
                       chain_u256 *u256, uint8_t hash[32], dm_buf *data, chain_rpc_receipt **rcpt,
                       chain_rpc_logs **logs, chain_rpc_block *blk, chain_rpc_tx *tx,
                       chain_rpc_fee_history **fees)
{
    switch (t->kind) {
    case T_U64:
        return chain_rpc_parse_u64(result, u64);
    case T_U256:
        return chain_rpc_parse_u256(result, u256);
    case T_HASH:
        return chain_rpc_parse_fixed(result, hash, 32);
    case T_DATA:
        return chain_rpc_parse_data(result, data);
    case T_RECEIPT:
        return parse_receipt_why(result, rcpt, bad);
    case T_LOGS:
        return parse_logs_why(result, logs, bad);
    case T_BLOCK:
        return parse_block_why(result, blk, bad);
    case T_TX:
        return parse_tx_why(result, tx, bad);
    case T_FEES:
        return parse_fee_history_why(result, t->npct, fees, bad);
    }
    return DM_EINVAL;
}

static void on_typed(chain_rpc_t *rpc, int status, json_t *result, const chain_rpc_error *err,
                     void *arg)
{
    typed_ctx *t = arg;
    uint64_t u64 = 0;
    chain_u256 u256;
    uint8_t hash[32];
    dm_buf data = DM_BUF_INIT;
    chain_rpc_receipt *rcpt = NULL;
    chain_rpc_logs *logs = NULL;
    chain_rpc_block blk;
    chain_rpc_tx tx;
    chain_rpc_fee_history *fees = NULL;
    memset(&u256, 0, sizeof u256);
    memset(hash, 0, sizeof hash);
    memset(&blk, 0, sizeof blk);
    memset(&tx, 0, sizeof tx);

    chain_rpc_error perr;
    memset(&perr, 0, sizeof perr);
    if (status == DM_OK) {
        const char *bad = NULL;
        status =
            typed_parse(t, result, &bad, &u64, &u256, hash, &data, &rcpt, &logs, &blk, &tx, &fees);
        if (status != DM_OK) {
            perr.http_status = err->http_status;
            if (status == DM_ENOTFOUND)
                err_set(&perr, CHAIN_RPC_ERR_NONE, "%s: null result", t->method);
            else if (status == DM_EPROTO)
                err_set(&perr, CHAIN_RPC_ERR_RESULT, "%s: malformed result%s%s%s", t->method,
                        bad ? " (" : "", bad ? bad : "", bad ? ")" : "");
            else
                err_set(&perr, CHAIN_RPC_ERR_TRANSPORT, "%s: %s", t->method, dm_strerror(status));
            if (status == DM_EPROTO)
                dm_log(DM_LOG_DEBUG, "chain", "rpc %s", perr.message);
            err = &perr;
        }
    }
    bool ok = status == DM_OK;
    switch (t->kind) {
    case T_U64:
        t->cb.u64(rpc, status, u64, err, t->arg);
        break;
    case T_U256:
        t->cb.u256(rpc, status, ok ? &u256 : NULL, err, t->arg);
        break;
    case T_HASH:
        t->cb.hash(rpc, status, ok ? hash : NULL, err, t->arg);
        break;
    case T_DATA:
        t->cb.data(rpc, status, ok ? (data.data ? data.data : (const uint8_t *)"") : NULL, data.len,
                   err, t->arg);
        break;
    case T_RECEIPT:
        t->cb.receipt(rpc, status, rcpt, err, t->arg);
        break;
    case T_LOGS:
        t->cb.logs(rpc, status, logs, err, t->arg);
        break;
    case T_BLOCK:
        t->cb.block(rpc, status, ok ? &blk : NULL, err, t->arg);
        break;
    case T_TX:
        t->cb.tx(rpc, status, ok ? &tx : NULL, err, t->arg);
        break;
    case T_FEES:
        t->cb.fees(rpc, status, fees, err, t->arg);
        break;
    }
    dm_buf_free(&data);
    chain_rpc_receipt_free(rcpt);
    chain_rpc_logs_free(logs);
    chain_rpc_fee_history_free(fees);
    chain_rpc_error_clear(&perr);
    free(t);
}

/* Send `method` with `params` (taken: decref'd here in every case; NULL means allocation
 * failed while building them). */
static int typed_call(chain_rpc_t *rpc, const char *method, json_t *params, typed_kind kind,
                      void (*cb)(void), void *arg, size_t npct)
{
    if (!params)
        return DM_ENOMEM;
    if (!cb) {
        json_decref(params);
        return DM_EINVAL;
    }
    typed_ctx *t = calloc(1, sizeof *t);
    if (!t) {
        json_decref(params);
        return DM_ENOMEM;
    }
    t->kind = kind;
    t->arg = arg;
    t->npct = npct;
    t->method = method;
    /* the union member matching `kind` is the one read back in on_typed */
    switch (kind) {
    case T_U64:
        t->cb.u64 = (chain_rpc_u64_cb)cb;
        break;
    case T_U256:
        t->cb.u256 = (chain_rpc_u256_cb)cb;
        break;
    case T_HASH:
        t->cb.hash = (chain_rpc_hash_cb)cb;
        break;
    case T_DATA:
        t->cb.data = (chain_rpc_data_cb)cb;
        break;
    case T_RECEIPT:
        t->cb.receipt = (chain_rpc_receipt_cb)cb;
        break;
    case T_LOGS:
        t->cb.logs = (chain_rpc_logs_cb)cb;
        break;
    case T_BLOCK:
        t->cb.block = (chain_rpc_block_cb)cb;
        break;
    case T_TX:
        t->cb.tx = (chain_rpc_tx_cb)cb;
        break;
    case T_FEES:
        t->cb.fees = (chain_rpc_fee_history_cb)cb;
        break;
    }
    int rc = call_start(rpc, method, params, on_typed, t);
    json_decref(params);
    if (rc)
        free(t);
    return rc;
}

#define CB(f) ((void (*)(void))(f))

/* JSON string helpers for parameters; NULL on allocation failure. */
static json_t *j_hex(const uint8_t *p, size_t n)
{
    if (n > (SIZE_MAX - 3) / 2)
        return NULL;
    char *s = malloc(2 * n + 3);
    if (!s)
        return NULL;
    static const char hx[] = "0123456789abcdef";
    s[0] = '0';
    s[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        s[2 + 2 * i] = hx[p[i] >> 4];
        s[3 + 2 * i] = hx[p[i] & 15];
    }
    json_t *j = json_stringn(s, 2 * n + 2);
    free(s);
    return j;
}

static json_t *j_u64(uint64_t v)
{
    char s[CHAIN_U64_HEX_MAX];
    snprintf(s, sizeof s, "0x%" PRIx64, v);
    return json_string(s);
}

static json_t *j_u256(const chain_u256 *v)
{
    char s[CHAIN_U256_HEX_MAX];
    static const char hx[] = "0123456789abcdef";
    size_t j = 2;
    s[0] = '0';
    s[1] = 'x';
    for (size_t i = 0; i < 64; i++) {
        unsigned nib = (v->be[i / 2] >> (i % 2 ? 0 : 4)) & 15;
        if (j == 2 && nib == 0 && i != 63)
            continue;
        s[j++] = hx[nib];
    }
    s[j] = '\0';
    return json_string(s);
}

static json_t *j_block(chain_rpc_block_ref b)
{
    switch (b.tag) {
    case CHAIN_RPC_BLOCK_NUMBER:
        return j_u64(b.number);
    case CHAIN_RPC_BLOCK_LATEST:
        return json_string("latest");
    case CHAIN_RPC_BLOCK_PENDING:
        return json_string("pending");
    case CHAIN_RPC_BLOCK_SAFE:
        return json_string("safe");
    case CHAIN_RPC_BLOCK_FINALIZED:
        return json_string("finalized");
    case CHAIN_RPC_BLOCK_EARLIEST:
        return json_string("earliest");
    }
    return NULL;
}

static bool block_ref_ok(chain_rpc_block_ref b)
{
    return b.tag >= CHAIN_RPC_BLOCK_NUMBER && b.tag <= CHAIN_RPC_BLOCK_EARLIEST;
}

/* json_array_append_new / json_object_set_new steal even on failure; this keeps a failed
 * build as NULL so typed_call reports DM_ENOMEM. */
static json_t *arr_add(json_t *a, json_t *v)
{
    if (!a || !v) {
        json_decref(a);
        json_decref(v);
        return NULL;
    }
    if (json_array_append_new(a, v) != 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

static json_t *obj_add(json_t *o, const char *k, json_t *v)
{
    if (!o || !v) {
        json_decref(o);
        json_decref(v);
        return NULL;
    }
    if (json_object_set_new(o, k, v) != 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

int chain_rpc_chain_id(chain_rpc_t *rpc, chain_rpc_u64_cb cb, void *arg)
{
    return typed_call(rpc, "eth_chainId", json_array(), T_U64, CB(cb), arg, 0);
}

int chain_rpc_block_number(chain_rpc_t *rpc, chain_rpc_u64_cb cb, void *arg)
{
    return typed_call(rpc, "eth_blockNumber", json_array(), T_U64, CB(cb), arg, 0);
}

int chain_rpc_get_transaction_count(chain_rpc_t *rpc, const uint8_t address[20],
                                    chain_rpc_block_ref block, chain_rpc_u64_cb cb, void *arg)
{
    if (!address || !block_ref_ok(block))
        return DM_EINVAL;
    json_t *p = arr_add(arr_add(json_array(), j_hex(address, 20)), j_block(block));
    return typed_call(rpc, "eth_getTransactionCount", p, T_U64, CB(cb), arg, 0);
}

int chain_rpc_get_balance(chain_rpc_t *rpc, const uint8_t address[20], chain_rpc_block_ref block,
                          chain_rpc_u256_cb cb, void *arg)
{
    if (!address || !block_ref_ok(block))
        return DM_EINVAL;
    json_t *p = arr_add(arr_add(json_array(), j_hex(address, 20)), j_block(block));
    return typed_call(rpc, "eth_getBalance", p, T_U256, CB(cb), arg, 0);
}

int chain_rpc_max_priority_fee(chain_rpc_t *rpc, chain_rpc_u256_cb cb, void *arg)
{
    return typed_call(rpc, "eth_maxPriorityFeePerGas", json_array(), T_U256, CB(cb), arg, 0);
}

int chain_rpc_gas_price(chain_rpc_t *rpc, chain_rpc_u256_cb cb, void *arg)
{
    return typed_call(rpc, "eth_gasPrice", json_array(), T_U256, CB(cb), arg, 0);
}

int chain_rpc_get_fee_history(chain_rpc_t *rpc, uint32_t block_count, chain_rpc_block_ref newest,
                              const double *percentiles, size_t npercentiles,
                              chain_rpc_fee_history_cb cb, void *arg)
{
    if (block_count < 1 || block_count > 1024 || !block_ref_ok(newest) || npercentiles > 100 ||
        (npercentiles && !percentiles))
        return DM_EINVAL;
    for (size_t i = 0; i < npercentiles; i++)
        if (!(percentiles[i] >= 0 && percentiles[i] <= 100) ||
            (i > 0 && percentiles[i] < percentiles[i - 1]))
            return DM_EINVAL;
    json_t *pct = json_array();
    for (size_t i = 0; i < npercentiles && pct; i++)
        pct = arr_add(pct, json_real(percentiles[i]));
    json_t *p = arr_add(arr_add(json_array(), j_u64(block_count)), j_block(newest));
    p = arr_add(p, pct);
    return typed_call(rpc, "eth_feeHistory", p, T_FEES, CB(cb), arg, npercentiles);
}

int chain_rpc_get_block(chain_rpc_t *rpc, chain_rpc_block_ref block, chain_rpc_block_cb cb,
                        void *arg)
{
    if (!block_ref_ok(block))
        return DM_EINVAL;
    json_t *p = arr_add(arr_add(json_array(), j_block(block)), json_false());
    return typed_call(rpc, "eth_getBlockByNumber", p, T_BLOCK, CB(cb), arg, 0);
}

static json_t *call_msg_json(const chain_rpc_call_msg *m)
{
    if (m->data_len > RAW_TX_MAX || (m->data_len && !m->data))
        return NULL;
    json_t *o = json_object();
    if (m->from)
        o = obj_add(o, "from", j_hex(m->from, 20));
    if (m->to)
        o = obj_add(o, "to", j_hex(m->to, 20));
    if (m->gas)
        o = obj_add(o, "gas", j_u64(m->gas));
    if (m->value)
        o = obj_add(o, "value", j_u256(m->value));
    if (m->data_len)
        o = obj_add(o, "data", j_hex(m->data, m->data_len));
    return o;
}

int chain_rpc_estimate_gas(chain_rpc_t *rpc, const chain_rpc_call_msg *msg, chain_rpc_u64_cb cb,
                           void *arg)
{
    if (!msg || msg->data_len > RAW_TX_MAX || (msg->data_len && !msg->data))
        return DM_EINVAL;
    /* no block parameter: some nodes accept only the message */
    json_t *p = arr_add(json_array(), call_msg_json(msg));
    return typed_call(rpc, "eth_estimateGas", p, T_U64, CB(cb), arg, 0);
}

int chain_rpc_eth_call(chain_rpc_t *rpc, const chain_rpc_call_msg *msg, chain_rpc_block_ref block,
                       chain_rpc_data_cb cb, void *arg)
{
    if (!msg || !msg->to || msg->data_len > RAW_TX_MAX || (msg->data_len && !msg->data) ||
        !block_ref_ok(block))
        return DM_EINVAL;
    json_t *p = arr_add(arr_add(json_array(), call_msg_json(msg)), j_block(block));
    return typed_call(rpc, "eth_call", p, T_DATA, CB(cb), arg, 0);
}

int chain_rpc_send_raw_transaction(chain_rpc_t *rpc, const uint8_t *raw, size_t n,
                                   chain_rpc_hash_cb cb, void *arg)
{
    if (!raw || n == 0 || n > RAW_TX_MAX)
        return DM_EINVAL;
    json_t *p = arr_add(json_array(), j_hex(raw, n));
    return typed_call(rpc, "eth_sendRawTransaction", p, T_HASH, CB(cb), arg, 0);
}

int chain_rpc_get_receipt(chain_rpc_t *rpc, const uint8_t hash[32], chain_rpc_receipt_cb cb,
                          void *arg)
{
    if (!hash)
        return DM_EINVAL;
    json_t *p = arr_add(json_array(), j_hex(hash, 32));
    return typed_call(rpc, "eth_getTransactionReceipt", p, T_RECEIPT, CB(cb), arg, 0);
}

int chain_rpc_get_transaction(chain_rpc_t *rpc, const uint8_t hash[32], chain_rpc_tx_cb cb,
                              void *arg)
{
    if (!hash)
        return DM_EINVAL;
    json_t *p = arr_add(json_array(), j_hex(hash, 32));
    return typed_call(rpc, "eth_getTransactionByHash", p, T_TX, CB(cb), arg, 0);
}

int chain_rpc_get_logs(chain_rpc_t *rpc, const chain_rpc_log_filter *f, chain_rpc_logs_cb cb,
                       void *arg)
{
    if (!f || f->ntopics > 4 || !block_ref_ok(f->from_block) || !block_ref_ok(f->to_block))
        return DM_EINVAL;
    json_t *o = json_object();
    if (f->address)
        o = obj_add(o, "address", j_hex(f->address, 20));
    json_t *topics = json_array();
    for (size_t i = 0; i < f->ntopics && topics; i++)
        topics = arr_add(topics, f->topics[i] ? j_hex(f->topics[i], 32) : json_null());
    o = obj_add(o, "topics", topics);
    o = obj_add(o, "fromBlock", j_block(f->from_block));
    o = obj_add(o, "toBlock", j_block(f->to_block));
    json_t *p = arr_add(json_array(), o);
    return typed_call(rpc, "eth_getLogs", p, T_LOGS, CB(cb), arg, 0);
}
