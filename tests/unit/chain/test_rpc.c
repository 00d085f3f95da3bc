/*
 * chain_rpc: the JSON-RPC client against real servers on 127.0.0.1 in the test's own loop.
 *   - a net_http server (the project's HTTP/1.1 server) that answers JSON-RPC requests by
 *     method name: echo, scripted failures (error objects, HTTP 500, malformed JSON, wrong
 *     id, missing result, oversize), delayed answers, requests it never answers, and canned
 *     eth_* results for the typed helpers (recording the params it received);
 *   - a raw uv_tcp server for what a well-behaved HTTP server cannot send: a connection
 *     closed without a reply, an endless chunked body, a redirect, a truncated body, a
 *     non-HTTP reply;
 *   - a port with nothing listening.
 * Plus table tests of the pure parsers with hostile replies. Every scenario ends with the
 * client and the servers closed and uv_loop_close() == 0.
 */
#include "dm_test.h"
#include "groups.h"

#include "chain_rpc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "dm_util.h"
#include "net_http.h"

#include <arpa/inet.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <uv.h>

#define MAXCALLS 512

typedef struct fx fx;

typedef struct {
    fx *f;
    int idx;
} slot;

typedef struct {
    bool fired;
    int fire_count;
    int order; /* completion order */
    int status;
    chain_rpc_error err; /* data incref'd */
    json_t *result;      /* incref'd */
    /* typed helpers: a summary of what they delivered */
    bool has_value;
    uint64_t u64, a, b, c;
    chain_u256 u256;
    uint8_t bytes[64];
    size_t nbytes;
} outcome;

typedef enum {
    RAW_CLOSE,   /* close the connection as soon as the request is in */
    RAW_HANG,    /* read, never answer */
    RAW_TEXT,    /* write raw_text, then close */
    RAW_ENDLESS, /* 200 with a chunked body far larger than the client's cap */
} raw_mode;

typedef struct raw_conn {
    uv_tcp_t h;
    fx *f;
    char buf[65536];
    size_t len;
    bool answered, closing;
    struct raw_conn *next;
} raw_conn;

struct fx {
    uv_loop_t loop;
    net_http_server_t *srv;
    uint16_t port;
    chain_rpc_t *rpc;
    chain_rpc_opts opts;
    uv_timer_t watchdog;
    bool watchdog_fired;
    int expected, done;
    bool rpc_closed, srv_closed;
    /* net_http side */
    net_http_req_t *hung[MAXCALLS];
    int nhung;
    int requests, bad_requests;
    json_t *canned; /* method -> result */
    json_t *seen;   /* method -> params of the last request */
    int slow_pending;
    /* raw side */
    uv_tcp_t raw;
    bool raw_on;
    uint16_t raw_port;
    raw_mode mode;
    const char *raw_text;
    raw_conn *conns;
    int raw_open;
    /* outcomes */
    slot slots[MAXCALLS];
    outcome out[MAXCALLS];
    /* re-entrancy scenarios */
    int close_in_cb_idx;
    int chain_from_idx; /* this call's callback starts call chain_from_idx + 1 */
    int closed_at_done; /* f->done when the close callback ran */
    /* generic */
    uint64_t t0;
};

/* ------------------------------------------------------------------ net_http server */

static void respond_text(net_http_req_t *r, int status, const char *s)
{
    net_http_respond_json(r, status, s, strlen(s));
}

static void reply_result(net_http_req_t *r, json_int_t id, json_t *result)
{
    json_t *o = json_pack("{s:s, s:I, s:O}", "jsonrpc", "2.0", "id", id, "result", result);
    char *s = json_dumps(o, JSON_COMPACT);
    respond_text(r, 200, s);
    free(s);
    json_decref(o);
}

typedef struct {
    uv_timer_t t;
    net_http_req_t *r;
    json_int_t id;
    json_t *result;
    fx *f;
} slow_resp;

static void slow_closed(uv_handle_t *h)
{
    free(h->data);
}

static void slow_fire(uv_timer_t *t)
{
    slow_resp *s = t->data;
    reply_result(s->r, s->id, s->result);
    json_decref(s->result);
    s->f->slow_pending--;
    uv_close((uv_handle_t *)&s->t, slow_closed);
}

static void handler(net_http_req_t *r, void *arg)
{
    fx *f = arg;
    f->requests++;
    size_t n;
    const uint8_t *b = net_http_req_body(r, &n);
    json_t *req = json_loadb((const char *)b, n, JSON_REJECT_DUPLICATES, NULL);
    const json_t *ver = json_object_get(req, "jsonrpc");
    const json_t *jid = json_object_get(req, "id");
    const char *m = json_string_value(json_object_get(req, "method"));
    json_t *params = json_object_get(req, "params");
    const char *ctype = net_http_req_header(r, "Content-Type");
    if (!req || !json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0 ||
        !json_is_integer(jid) || !m || !(json_is_array(params) || json_is_object(params)) ||
        strcmp(net_http_req_method(r), "POST") != 0 || !ctype ||
        strcmp(ctype, "application/json") != 0 || json_object_size(req) != 4) {
        f->bad_requests++;
        respond_text(r, 400, "{}");
        json_decref(req);
        return;
    }
    json_int_t id = json_integer_value(jid);
    json_object_set(f->seen, m, params);
    char buf[512];
    const json_t *canned = json_object_get(f->canned, m);
    if (canned) {
        reply_result(r, id, (json_t *)canned);
    } else if (strcmp(m, "echo") == 0) {
        reply_result(r, id, params);
    } else if (strcmp(m, "null") == 0) {
        reply_result(r, id, json_null());
    } else if (strcmp(m, "rpc_error") == 0) {
        snprintf(buf, sizeof buf,
                 "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"error\":{\"code\":-32000,"
                 "\"message\":\"nonce too low\\u001b[31m\\n\\u00e9\",\"data\":\"0x08c379a0\"}}",
                 (long long)id);
        respond_text(r, 200, buf);
    } else if (strcmp(m, "rpc_error_null_id") == 0) {
        respond_text(r, 200,
                     "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
                     "\"message\":\"Parse error\"}}");
    } else if (strcmp(m, "http500") == 0) {
        snprintf(buf, sizeof buf, "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"result\":\"0x1\"}",
                 (long long)id);
        respond_text(r, 500, buf);
    } else if (strcmp(m, "http400_rpc") == 0) {
        snprintf(buf, sizeof buf,
                 "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"error\":{\"code\":-32005,"
                 "\"message\":\"rate limited\",\"data\":{\"retry\":1}}}",
                 (long long)id);
        respond_text(r, 400, buf);
    } else if (strcmp(m, "http429") == 0) {
        net_http_respond(r, 429, "application/json", "{}", 2, "Retry-After: 1\r\n");
    } else if (strcmp(m, "malformed") == 0) {
        snprintf(buf, sizeof buf, "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"result\":", (long long)id);
        respond_text(r, 200, buf);
    } else if (strcmp(m, "wrong_id") == 0) {
        snprintf(buf, sizeof buf, "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"result\":\"0x1\"}",
                 (long long)id + 1);
        respond_text(r, 200, buf);
    } else if (strcmp(m, "string_id") == 0) {
        snprintf(buf, sizeof buf, "{\"jsonrpc\":\"2.0\",\"id\":\"%lld\",\"result\":\"0x1\"}",
                 (long long)id);
        respond_text(r, 200, buf);
    } else if (strcmp(m, "missing_result") == 0) {
        snprintf(buf, sizeof buf, "{\"jsonrpc\":\"2.0\",\"id\":%lld}", (long long)id);
        respond_text(r, 200, buf);
    } else if (strcmp(m, "not_v2") == 0) {
        snprintf(buf, sizeof buf, "{\"jsonrpc\":\"1.0\",\"id\":%lld,\"result\":1}", (long long)id);
        respond_text(r, 200, buf);
    } else if (strcmp(m, "array_reply") == 0) {
        snprintf(buf, sizeof buf, "[{\"jsonrpc\":\"2.0\",\"id\":%lld,\"result\":1}]",
                 (long long)id);
        respond_text(r, 200, buf);
    } else if (strcmp(m, "oversize") == 0) {
        /* a valid reply whose result string is 2 MiB: above the test's 1 MiB cap */
        size_t big = 2u << 20;
        char *s = malloc(big + 128);
        assert_non_null(s);
        int h = snprintf(s, 128, "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"result\":\"", (long long)id);
        memset(s + h, 'a', big);
        memcpy(s + h + big, "\"}", 3);
        net_http_respond_json(r, 200, s, strlen(s));
        free(s);
    } else if (strcmp(m, "hang") == 0) {
        assert_true(f->nhung < MAXCALLS);
        f->hung[f->nhung++] = r;
    } else if (strcmp(m, "slow") == 0) {
        /* params: [delay_ms, value] */
        slow_resp *s = calloc(1, sizeof *s);
        assert_non_null(s);
        s->r = r;
        s->id = id;
        s->f = f;
        s->result = json_incref(json_array_get(params, 1));
        s->t.data = s;
        uv_timer_init(&f->loop, &s->t);
        uv_timer_start(&s->t, slow_fire, (uint64_t)json_integer_value(json_array_get(params, 0)),
                       0);
        f->slow_pending++;
    } else {
        snprintf(buf, sizeof buf,
                 "{\"jsonrpc\":\"2.0\",\"id\":%lld,\"error\":{\"code\":-32601,"
                 "\"message\":\"method not found\"}}",
                 (long long)id);
        respond_text(r, 200, buf);
    }
    json_decref(req);
}

/* ------------------------------------------------------------------ raw server */

static void raw_closed(uv_handle_t *h)
{
    raw_conn *c = h->data;
    fx *f = c->f;
    raw_conn **pp = &f->conns;
    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    f->raw_open--;
    free(c);
}

static void raw_close(raw_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->h, raw_closed);
}

typedef struct {
    uv_write_t w;
    raw_conn *c;
    char *data;
} raw_write;

static void raw_written(uv_write_t *w, int status)
{
    (void)status; /* the client may have gone: EPIPE / ECONNRESET are expected */
    raw_write *rw = DM_CONTAINER_OF(w, raw_write, w);
    raw_close(rw->c);
    free(rw->data);
    free(rw);
}

static void raw_send_and_close(raw_conn *c, const char *data, size_t n)
{
    raw_write *rw = calloc(1, sizeof *rw);
    assert_non_null(rw);
    rw->c = c;
    rw->data = malloc(n);
    assert_non_null(rw->data);
    memcpy(rw->data, data, n);
    uv_buf_t b = uv_buf_init(rw->data, (unsigned)n);
    if (uv_write(&rw->w, (uv_stream_t *)&c->h, &b, 1, raw_written) != 0) {
        free(rw->data);
        free(rw);
        raw_close(c);
    }
}

static bool raw_request_complete(raw_conn *c)
{
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end)
        return false;
    size_t clen = 0;
    for (char *p = c->buf; p < end; p++) {
        if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
            clen = (size_t)strtoul(p + 15, NULL, 10);
    }
    return c->len >= (size_t)(end + 4 - c->buf) + clen;
}

static void raw_answer(raw_conn *c)
{
    fx *f = c->f;
    switch (f->mode) {
    case RAW_CLOSE:
        raw_close(c);
        break;
    case RAW_HANG:
        break;
    case RAW_TEXT:
        raw_send_and_close(c, f->raw_text, strlen(f->raw_text));
        break;
    case RAW_ENDLESS: {
        /* 40 chunks of 64 KiB (2.5 MiB) behind a 200: no Content-Length, so only the
         * client's write-callback cap stops it */
        const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n";
        size_t chunk = 65536, nchunks = 40;
        size_t cap = strlen(head) + nchunks * (chunk + 16) + 16;
        char *s = malloc(cap);
        assert_non_null(s);
        size_t o = (size_t)snprintf(s, cap, "%s", head);
        for (size_t i = 0; i < nchunks; i++) {
            o += (size_t)snprintf(s + o, cap - o, "%zx\r\n", chunk);
            memset(s + o, i == 0 ? '[' : ' ', 1);
            memset(s + o + 1, ' ', chunk - 1);
            o += chunk;
            memcpy(s + o, "\r\n", 2);
            o += 2;
        }
        memcpy(s + o, "0\r\n\r\n", 5);
        o += 5;
        raw_send_and_close(c, s, o);
        free(s);
        break;
    }
    }
}

static void raw_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)sz;
    raw_conn *c = h->data;
    size_t room = sizeof c->buf - 1 - c->len;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(room ? room : 0));
}

static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    raw_conn *c = s->data;
    if (nread < 0) {
        raw_close(c);
        return;
    }
    c->len += (size_t)nread;
    if (!c->answered && raw_request_complete(c)) {
        c->answered = true;
        c->len = 0; /* what follows (nothing, for curl) is read and dropped */
        raw_answer(c);
    } else if (c->answered) {
        c->len = 0;
    } else if (c->len >= sizeof c->buf - 1) {
        raw_close(c);
    }
}

static void raw_on_conn(uv_stream_t *l, int status)
{
    fx *f = l->data;
    if (status < 0)
        return;
    raw_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->f = f;
    uv_tcp_init(&f->loop, &c->h);
    c->h.data = c;
    c->next = f->conns;
    f->conns = c;
    f->raw_open++;
    if (uv_accept(l, (uv_stream_t *)&c->h) != 0) {
        raw_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->h, raw_alloc, raw_read);
}

static uint16_t bound_port(uv_tcp_t *t)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void raw_start(fx *f, raw_mode mode, const char *text)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_init(&f->loop, &f->raw), 0);
    f->raw.data = f;
    assert_int_equal(uv_tcp_bind(&f->raw, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->raw, 64, raw_on_conn), 0);
    f->raw_port = bound_port(&f->raw);
    f->raw_on = true;
    f->mode = mode;
    f->raw_text = text;
}

/* ------------------------------------------------------------------ fixture */

static void on_watchdog(uv_timer_t *t)
{
    fx *f = DM_CONTAINER_OF(t, fx, watchdog);
    f->watchdog_fired = true;
}

static fx *fx_new(void)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    net_http_opts o;
    net_http_opts_default(&o);
    snprintf(o.listen.host, sizeof o.listen.host, "127.0.0.1");
    o.listen.port = 0;
    o.name = "rpc-test";
    o.max_body = 4u << 20;
    o.max_connections = 1024; /* test_concurrent opens one connection per call */
    assert_int_equal(net_http_create(&f->srv, &f->loop, &o, handler, f), DM_OK);
    assert_int_equal(net_http_start(f->srv), DM_OK);
    f->port = net_http_port(f->srv);
    assert_true(f->port > 0);
    assert_int_equal(uv_timer_init(&f->loop, &f->watchdog), 0);
    f->canned = json_object();
    f->seen = json_object();
    f->close_in_cb_idx = -1;
    f->chain_from_idx = -1;
    f->opts.timeout_ms = 5000;
    f->opts.max_reply_bytes = 1u << 20;
    for (int i = 0; i < MAXCALLS; i++) {
        f->slots[i].f = f;
        f->slots[i].idx = i;
    }
    f->t0 = uv_now(&f->loop);
    return f;
}

static void fx_connect_port(fx *f, uint16_t port)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/rpc", (unsigned)port);
    assert_int_equal(chain_rpc_create(&f->rpc, &f->loop, url, &f->opts), DM_OK);
}

static void fx_connect(fx *f)
{
    fx_connect_port(f, f->port);
}

/* Run the loop until `n` more callbacks fired (fails after 20 s). */
static void fx_wait(fx *f, int n)
{
    f->expected = f->done + n;
    uv_timer_start(&f->watchdog, on_watchdog, 20000, 0);
    while (f->done < f->expected && !f->watchdog_fired)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->watchdog);
    if (f->watchdog_fired)
        fail_msg("watchdog: %d of %d callbacks", f->done, f->expected);
}

static void on_rpc_closed(void *arg)
{
    fx *f = arg;
    f->rpc_closed = true;
    f->closed_at_done = f->done;
}

static void on_rpc_closed_flag(void *arg)
{
    *(bool *)arg = true;
}

static void on_srv_closed(void *arg)
{
    ((fx *)arg)->srv_closed = true;
}

static void fx_free(fx *f)
{
    if (f->rpc && !f->rpc_closed)
        chain_rpc_close(f->rpc, on_rpc_closed, f);
    for (int i = 0; i < f->nhung; i++)
        net_http_respond_json(f->hung[i], 200, "{}", 2);
    net_http_close(f->srv, on_srv_closed, f);
    if (f->raw_on) {
        uv_close((uv_handle_t *)&f->raw, NULL);
        for (raw_conn *c = f->conns; c; c = c->next)
            raw_close(c);
    }
    uv_close((uv_handle_t *)&f->watchdog, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    if (f->rpc)
        assert_true(f->rpc_closed);
    assert_true(f->srv_closed);
    assert_int_equal(f->raw_open, 0);
    assert_int_equal(f->slow_pending, 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    for (int i = 0; i < MAXCALLS; i++) {
        chain_rpc_error_clear(&f->out[i].err);
        json_decref(f->out[i].result);
    }
    json_decref(f->canned);
    json_decref(f->seen);
    free(f);
}

static void record(slot *s, int status, json_t *result, const chain_rpc_error *err)
{
    fx *f = s->f;
    outcome *o = &f->out[s->idx];
    o->fire_count++;
    if (!o->fired) {
        o->fired = true;
        o->order = f->done;
        o->status = status;
        o->err = *err;
        o->err.data = json_incref(err->data);
        o->result = json_incref(result);
    }
    f->done++;
}

static void on_call(chain_rpc_t *rpc, int status, json_t *result, const chain_rpc_error *err,
                    void *arg)
{
    slot *s = arg;
    assert_ptr_equal(rpc, s->f->rpc);
    assert_non_null(err);
    /* result exactly when DM_OK */
    assert_true((status == DM_OK) == (result != NULL));
    record(s, status, result, err);
    fx *f = s->f;
    if (s->idx == f->chain_from_idx)
        assert_int_equal(
            chain_rpc_call_text(rpc, "echo", "[\"chained\"]", on_call, &f->slots[s->idx + 1]),
            DM_OK);
    if (s->idx == f->close_in_cb_idx)
        chain_rpc_close(rpc, on_rpc_closed, f);
}

static void call(fx *f, int idx, const char *method, const char *params)
{
    assert_int_equal(chain_rpc_call_text(f->rpc, method, params, on_call, &f->slots[idx]), DM_OK);
}

static void assert_outcome(fx *f, int idx, int status, chain_rpc_err_kind kind)
{
    outcome *o = &f->out[idx];
    if (!o->fired)
        fail_msg("call %d never called back", idx);
    assert_int_equal(o->fire_count, 1);
    if (o->status != status || o->err.kind != kind)
        fail_msg("call %d: status %s kind %d (%s), expected %s kind %d", idx,
                 dm_err_name(o->status), o->err.kind, o->err.message, dm_err_name(status), kind);
}

/* ------------------------------------------------------------------ pure parser tables */

typedef struct {
    const char *body;
    uint64_t id;
    int status;
    chain_rpc_err_kind kind;
} reply_case;

static void test_parse_reply_table(void **state)
{
    (void)state;
    static const reply_case cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":\"0x1\"}", 7, DM_OK, CHAIN_RPC_ERR_NONE},
        {" {\"result\":null,\"id\":7,\"jsonrpc\":\"2.0\"}\n", 7, DM_OK, CHAIN_RPC_ERR_NONE},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"a\":[1,2]},\"extra\":1}", 7, DM_OK,
         CHAIN_RPC_ERR_NONE},
        {"{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":false}", 0, DM_OK, CHAIN_RPC_ERR_NONE},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":3,\"message\":\"execution "
         "reverted\",\"data\":\"0x08c379a0\"}}",
         7, DM_EPROTO, CHAIN_RPC_ERR_REMOTE},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"x\"}}", 7,
         DM_EPROTO, CHAIN_RPC_ERR_REMOTE},
        /* hostile or broken */
        {"", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {" ", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"null", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"\"0x1\"", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"[{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":1}]", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":1}x", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":1}{}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":1,\"result\":2}", 7, DM_EPROTO,
         CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":\"a\\u0000b\"}", 7, DM_EPROTO,
         CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":\"\xff\"}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"1.0\",\"id\":7,\"result\":1}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":2.0,\"id\":7,\"result\":1}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"id\":7,\"result\":1}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0 \",\"id\":7,\"result\":1}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":1}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"7\",\"result\":1}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7.0,\"result\":1}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":-7,\"result\":1}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"result\":1}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":1}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":99999999999999999999,\"result\":1}", 7, DM_EPROTO,
         CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":1,\"error\":{\"code\":1,\"message\":\"m\"}}", 7,
         DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":null}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":\"boom\"}", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"message\":\"m\"}}", 7, DM_EPROTO,
         CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":\"1\",\"message\":\"m\"}}", 7,
         DM_EPROTO, CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":1.5,\"message\":\"m\"}}", 7, DM_EPROTO,
         CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":1}}", 7, DM_EPROTO,
         CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":1,\"message\":5}}", 7, DM_EPROTO,
         CHAIN_RPC_ERR_REPLY},
        {"{\"jsonrpc\":\"2.0\",\"id\":8,\"error\":{\"code\":1,\"message\":\"m\"}}", 7, DM_EPROTO,
         CHAIN_RPC_ERR_REPLY},
        {"<html>502 Bad Gateway</html>", 7, DM_EPROTO, CHAIN_RPC_ERR_REPLY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const reply_case *c = &cases[i];
        json_t *res = (json_t *)1;
        chain_rpc_error err;
        memset(&err, 0x5a, sizeof err); /* must be overwritten */
        int st = chain_rpc_parse_reply(c->body, strlen(c->body), c->id, &res, &err);
        if (st != c->status || err.kind != c->kind)
            fail_msg("case %zu %s: status %s kind %d (%s)", i, c->body, dm_err_name(st), err.kind,
                     err.message);
        assert_true((st == DM_OK) == (res != NULL));
        assert_true(strlen(err.message) < CHAIN_RPC_MSG_MAX);
        json_decref(res);
        chain_rpc_error_clear(&err);
    }

    /* the error object's fields, with a hostile message (escape sequences, newline) */
    const char *b = "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000,\"message\":"
                    "\"bad\\u001b[2J\\r\\nInjected: \\u00e9\",\"data\":{\"x\":[1]}}}";
    json_t *res = NULL;
    chain_rpc_error err;
    assert_int_equal(chain_rpc_parse_reply(b, strlen(b), 1, &res, &err), DM_EPROTO);
    assert_null(res);
    assert_int_equal(err.kind, CHAIN_RPC_ERR_REMOTE);
    assert_int_equal(err.code, -32000);
    assert_string_equal(err.message, "bad?[2J??Injected: ??");
    assert_non_null(err.data);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(err.data, "x"), 0)), 1);
    chain_rpc_error_clear(&err);
    assert_null(err.data);

    /* long messages are truncated */
    char *longmsg = malloc(10000);
    assert_non_null(longmsg);
    int o = snprintf(longmsg, 10000,
                     "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1,"
                     "\"message\":\"");
    memset(longmsg + o, 'm', 5000);
    snprintf(longmsg + o + 5000, 100, "\"}}");
    assert_int_equal(chain_rpc_parse_reply(longmsg, strlen(longmsg), 1, &res, &err), DM_EPROTO);
    assert_int_equal(strlen(err.message), CHAIN_RPC_MSG_MAX - 1);
    chain_rpc_error_clear(&err);
    free(longmsg);

    /* the body need not be NUL-terminated: only n bytes are read */
    const char *padded = "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":\"ok\"}GARBAGE";
    assert_int_equal(chain_rpc_parse_reply(padded, strlen(padded) - 7, 3, &res, &err), DM_OK);
    assert_string_equal(json_string_value(res), "ok");
    json_decref(res);
    chain_rpc_error_clear(&err);

    /* deep nesting is refused, not a crash */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 64);
    assert_non_null(deep);
    o = snprintf(deep, 64, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":");
    memset(deep + o, '[', depth);
    memset(deep + o + depth, ']', depth);
    memcpy(deep + o + 2 * depth, "}", 2);
    assert_int_equal(chain_rpc_parse_reply(deep, strlen(deep), 1, &res, &err), DM_EPROTO);
    assert_null(res);
    chain_rpc_error_clear(&err);
    free(deep);

    /* above the hard ceiling: refused before parsing */
    assert_int_equal(
        chain_rpc_parse_reply("{}", (size_t)CHAIN_RPC_REPLY_HARD_MAX + 1, 1, &res, &err),
        DM_ETOOBIG);
    chain_rpc_error_clear(&err);
    assert_int_equal(chain_rpc_parse_reply(NULL, 0, 1, &res, &err), DM_EPROTO);
    chain_rpc_error_clear(&err);
}

typedef struct {
    const char *json;
    int status;
    uint64_t value;
} u64_case;

static json_t *J(const char *text)
{
    json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
    if (!j)
        fail_msg("bad test JSON: %s", text);
    return j;
}

static void test_parse_quantities(void **state)
{
    (void)state;
    static const u64_case cases[] = {
        {"\"0x0\"", DM_OK, 0},
        {"\"0x1\"", DM_OK, 1},
        {"\"0x7a69\"", DM_OK, 31337},
        {"\"0xABCdef\"", DM_OK, 0xabcdef},
        {"\"0xffffffffffffffff\"", DM_OK, UINT64_MAX},
        {"\"0x10000000000000000\"", DM_EPROTO, 0},
        {"\"0x\"", DM_EPROTO, 0},
        {"\"0x00\"", DM_EPROTO, 0},
        {"\"0x01\"", DM_EPROTO, 0},
        {"\"0X1\"", DM_EPROTO, 0},
        {"\"1\"", DM_EPROTO, 0},
        {"\"x1\"", DM_EPROTO, 0},
        {"\"\"", DM_EPROTO, 0},
        {"\" 0x1\"", DM_EPROTO, 0},
        {"\"0x1 \"", DM_EPROTO, 0},
        {"\"-0x1\"", DM_EPROTO, 0},
        {"\"0x-1\"", DM_EPROTO, 0},
        {"\"0x+1\"", DM_EPROTO, 0},
        {"\"0xg\"", DM_EPROTO, 0},
        {"\"0x1\\u0000\"", DM_EPROTO, 0},
        {"1", DM_EPROTO, 0},
        {"null", DM_EPROTO, 0},
        {"[\"0x1\"]", DM_EPROTO, 0},
        {"true", DM_EPROTO, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = json_loads(cases[i].json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        assert_non_null(v);
        uint64_t x = 42;
        int st = chain_rpc_parse_u64(v, &x);
        if (st != cases[i].status)
            fail_msg("u64 case %zu %s: %s", i, cases[i].json, dm_err_name(st));
        assert_int_equal(x, st == DM_OK ? cases[i].value : 42); /* untouched on failure */
        json_decref(v);
    }
    assert_int_equal(chain_rpc_parse_u64(NULL, &(uint64_t){0}), DM_EPROTO);

    /* u256 */
    chain_u256 u;
    json_t *v = J("\"0x"
                  "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\"");
    assert_int_equal(chain_rpc_parse_u256(v, &u), DM_OK);
    for (int i = 0; i < 32; i++)
        assert_int_equal(u.be[i], 0xff);
    json_decref(v);
    v = J("\"0x1"
          "0000000000000000000000000000000000000000000000000000000000000000\"");
    assert_int_equal(chain_rpc_parse_u256(v, &u), DM_EPROTO);
    json_decref(v);
    v = J("\"0x123\"");
    assert_int_equal(chain_rpc_parse_u256(v, &u), DM_OK);
    assert_int_equal(u.be[30], 0x01);
    assert_int_equal(u.be[31], 0x23);
    assert_int_equal(u.be[29], 0);
    json_decref(v);
    v = J("\"0x0123\"");
    assert_int_equal(chain_rpc_parse_u256(v, &u), DM_EPROTO);
    json_decref(v);

    /* fixed DATA */
    uint8_t h[32], a[20];
    memset(a, 0x77, sizeof a);
    v = J("\"0x00112233445566778899aabbccddeeff00112233\"");
    assert_int_equal(chain_rpc_parse_fixed(v, a, 20), DM_OK);
    assert_int_equal(a[0], 0x00);
    assert_int_equal(a[19], 0x33);
    assert_int_equal(chain_rpc_parse_fixed(v, h, 32), DM_EPROTO);
    json_decref(v);
    v = J("\"0x00112233445566778899AABBCCDDEEFF0011223g\"");
    memset(a, 0x77, sizeof a);
    assert_int_equal(chain_rpc_parse_fixed(v, a, 20), DM_EPROTO);
    assert_int_equal(a[0], 0x77); /* untouched */
    json_decref(v);
    v = J("\"00112233445566778899aabbccddeeff0011223344\"");
    assert_int_equal(chain_rpc_parse_fixed(v, a, 20), DM_EPROTO);
    json_decref(v);

    /* any-length DATA */
    dm_buf b = DM_BUF_INIT;
    v = J("\"0x\"");
    assert_int_equal(chain_rpc_parse_data(v, &b), DM_OK);
    assert_int_equal(b.len, 0);
    json_decref(v);
    v = J("\"0xdeadBEEF\"");
    assert_int_equal(chain_rpc_parse_data(v, &b), DM_OK);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "\xde\xad\xbe\xef", 4);
    json_decref(v);
    static const char *bad_data[] = {"\"0x1\"", "\"0xabc\"", "\"dead\"", "\"0xzz\"", "12", "null"};
    for (size_t i = 0; i < sizeof bad_data / sizeof bad_data[0]; i++) {
        v = J(bad_data[i]);
        assert_int_equal(chain_rpc_parse_data(v, &b), DM_EPROTO);
        assert_int_equal(b.len, 4);
        json_decref(v);
    }
    dm_buf_free(&b);
}

#define H32A "0x1111111111111111111111111111111111111111111111111111111111111111"
#define H32B "0x2222222222222222222222222222222222222222222222222222222222222222"
#define H32C "0x3333333333333333333333333333333333333333333333333333333333333333"
#define ADDR1 "0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ADDR2 "0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

#define LOG_JSON(txh, blkh, bn, extra)                                                             \
    "{\"address\":\"" ADDR2 "\",\"topics\":[\"" H32C "\",\"" H32A "\"],\"data\":\"0x0102\","       \
    "\"blockNumber\":\"" bn "\",\"blockHash\":\"" blkh "\",\"transactionHash\":\"" txh "\","       \
    "\"transactionIndex\":\"0x0\",\"logIndex\":\"0x5\",\"removed\":false" extra "}"

#define RECEIPT_JSON(status, logs, extra)                                                          \
    "{\"transactionHash\":\"" H32A "\",\"blockHash\":\"" H32B "\",\"blockNumber\":\"0x10\","       \
    "\"transactionIndex\":\"0x0\",\"from\":\"" ADDR1 "\",\"to\":\"" ADDR2 "\","                    \
    "\"contractAddress\":null,\"status\":\"" status "\",\"gasUsed\":\"0x5208\","                   \
    "\"cumulativeGasUsed\":\"0x5208\",\"effectiveGasPrice\":\"0x3b9aca00\","                       \
    "\"logsBloom\":\"0x00\",\"type\":\"0x2\",\"logs\":[" logs "]" extra "}"

static void test_parse_structures(void **state)
{
    (void)state;
    /* receipt */
    json_t *v = J(RECEIPT_JSON("0x1", LOG_JSON(H32A, H32B, "0x10", ""), ""));
    chain_rpc_receipt *r = NULL;
    assert_int_equal(chain_rpc_parse_receipt(v, &r), DM_OK);
    assert_non_null(r);
    assert_int_equal(r->status, 1);
    assert_int_equal(r->block_number, 16);
    assert_int_equal(r->gas_used, 21000);
    assert_true(r->has_to);
    assert_false(r->has_contract_address);
    assert_true(r->has_effective_gas_price);
    assert_int_equal(r->effective_gas_price.be[31], 0x00);
    assert_int_equal(r->effective_gas_price.be[28], 0x3b);
    assert_int_equal(r->nlogs, 1);
    assert_int_equal(r->logs[0].ntopics, 2);
    assert_int_equal(r->logs[0].log_index, 5);
    assert_int_equal(r->logs[0].data_len, 2);
    assert_int_equal(r->logs[0].data[1], 0x02);
    assert_int_equal(r->logs[0].topics[0][0], 0x33);
    chain_rpc_receipt_free(r);
    json_decref(v);

    static const char *bad_receipts[] = {
        RECEIPT_JSON("0x2", "", ""),                               /* status */
        RECEIPT_JSON("0x01", "", ""),                              /* non-canonical */
        RECEIPT_JSON("0x1", LOG_JSON(H32C, H32B, "0x10", ""), ""), /* log of another tx */
        RECEIPT_JSON("0x1", LOG_JSON(H32A, H32C, "0x10", ""), ""), /* log of another block */
        RECEIPT_JSON("0x1", LOG_JSON(H32A, H32B, "0x11", ""), ""),
        RECEIPT_JSON("0x1", LOG_JSON(H32A, H32B, "0x10", ",\"removed\":1"), ""),
        "{\"transactionHash\":\"" H32A "\"}",
        "[]",
        "\"0x1\"",
    };
    for (size_t i = 0; i < sizeof bad_receipts / sizeof bad_receipts[0]; i++) {
        v = json_loads(bad_receipts[i], JSON_DECODE_ANY, NULL);
        if (!v) /* duplicate "removed" above is legal JSON for jansson without the flag */
            fail_msg("receipt case %zu not JSON", i);
        r = (chain_rpc_receipt *)1;
        int st = chain_rpc_parse_receipt(v, &r);
        if (st != DM_EPROTO)
            fail_msg("receipt case %zu: %s", i, dm_err_name(st));
        assert_null(r);
        json_decref(v);
    }
    v = J("null");
    assert_int_equal(chain_rpc_parse_receipt(v, &r), DM_ENOTFOUND);
    assert_null(r);
    json_decref(v);

    /* logs */
    v = J("[" LOG_JSON(H32A, H32B, "0x10", "") "," LOG_JSON(H32C, H32B, "0x10",
                                                            ",\"data\":\"0x\"") "]");
    chain_rpc_logs *l = NULL;
    /* the second log repeats "data": jansson keeps the last one without the duplicate flag */
    assert_int_equal(chain_rpc_parse_logs(v, &l), DM_OK);
    assert_int_equal(l->n, 2);
    assert_int_equal(l->logs[1].data_len, 0);
    chain_rpc_logs_free(l);
    json_decref(v);
    v = J("[]");
    assert_int_equal(chain_rpc_parse_logs(v, &l), DM_OK);
    assert_int_equal(l->n, 0);
    chain_rpc_logs_free(l);
    json_decref(v);
    static const char *bad_logs[] = {
        "{}",
        "[1]",
        "[" LOG_JSON(H32A, H32B, "null", "") "]",
        "[{\"address\":\"" ADDR2 "\",\"topics\":[\"" H32C "\",\"" H32C "\",\"" H32C "\",\"" H32C
        "\",\"" H32C "\"],\"data\":\"0x\",\"blockNumber\":\"0x1\",\"blockHash\":\"" H32B
        "\",\"transactionHash\":\"" H32A "\",\"transactionIndex\":\"0x0\",\"logIndex\":\"0x0\"}]",
        "[{\"address\":\"" ADDR2 "\",\"topics\":[\"0x12\"],\"data\":\"0x\",\"blockNumber\":\"0x1\","
        "\"blockHash\":\"" H32B "\",\"transactionHash\":\"" H32A
        "\",\"transactionIndex\":\"0x0\",\"logIndex\":\"0x0\"}]",
        "[{\"address\":\"" ADDR2 "\",\"topics\":[],\"data\":\"0x1\",\"blockNumber\":\"0x1\","
        "\"blockHash\":\"" H32B "\",\"transactionHash\":\"" H32A
        "\",\"transactionIndex\":\"0x0\",\"logIndex\":\"0x0\"}]",
    };
    for (size_t i = 0; i < sizeof bad_logs / sizeof bad_logs[0]; i++) {
        v = J(bad_logs[i]);
        l = (chain_rpc_logs *)1;
        assert_int_equal(chain_rpc_parse_logs(v, &l), DM_EPROTO);
        assert_null(l);
        json_decref(v);
    }

    /* block */
    chain_rpc_block blk;
    v = J("{\"number\":\"0x1b4\",\"hash\":\"" H32A "\",\"parentHash\":\"" H32B
          "\",\"timestamp\":\"0x6553f100\",\"gasLimit\":\"0x1c9c380\",\"gasUsed\":\"0x0\","
          "\"baseFeePerGas\":\"0x7\",\"transactions\":[]}");
    assert_int_equal(chain_rpc_parse_block(v, &blk), DM_OK);
    assert_int_equal(blk.number, 0x1b4);
    assert_true(blk.has_base_fee);
    assert_int_equal(blk.base_fee_per_gas.be[31], 7);
    assert_int_equal(blk.gas_limit, 30000000);
    json_decref(v);
    v = J("{\"number\":null,\"hash\":null,\"parentHash\":\"" H32B
          "\",\"timestamp\":\"0x1\",\"gasLimit\":\"0x1\",\"gasUsed\":\"0x0\"}");
    assert_int_equal(chain_rpc_parse_block(v, &blk), DM_EPROTO);
    json_decref(v);
    v = J("{\"number\":\"0x1\",\"hash\":\"" H32A "\",\"parentHash\":\"" H32B
          "\",\"timestamp\":\"0x1\",\"gasLimit\":\"0x1\",\"gasUsed\":\"0x0\"}");
    assert_int_equal(chain_rpc_parse_block(v, &blk), DM_OK);
    assert_false(blk.has_base_fee);
    json_decref(v);
    v = J("null");
    assert_int_equal(chain_rpc_parse_block(v, &blk), DM_ENOTFOUND);
    json_decref(v);

    /* transaction */
    chain_rpc_tx tx;
    v = J("{\"hash\":\"" H32A "\",\"from\":\"" ADDR1 "\",\"nonce\":\"0x3\",\"blockHash\":null,"
          "\"blockNumber\":null}");
    assert_int_equal(chain_rpc_parse_tx(v, &tx), DM_OK);
    assert_false(tx.mined);
    assert_int_equal(tx.nonce, 3);
    json_decref(v);
    v = J("{\"hash\":\"" H32A "\",\"from\":\"" ADDR1 "\",\"nonce\":\"0x3\",\"blockHash\":\"" H32B
          "\",\"blockNumber\":\"0x9\"}");
    assert_int_equal(chain_rpc_parse_tx(v, &tx), DM_OK);
    assert_true(tx.mined);
    assert_int_equal(tx.block_number, 9);
    json_decref(v);
    v = J("{\"hash\":\"" H32A "\",\"from\":\"" ADDR1 "\",\"nonce\":\"0x3\",\"blockHash\":\"" H32B
          "\",\"blockNumber\":null}");
    assert_int_equal(chain_rpc_parse_tx(v, &tx), DM_EPROTO);
    json_decref(v);

    /* fee history */
    chain_rpc_fee_history *fh = NULL;
    v = J("{\"oldestBlock\":\"0x10\",\"baseFeePerGas\":[\"0x1\",\"0x2\",\"0x3\"],"
          "\"gasUsedRatio\":[0.5,1],\"reward\":[[\"0x1\",\"0x2\"],[\"0x3\",\"0x4\"]]}");
    assert_int_equal(chain_rpc_parse_fee_history(v, 2, &fh), DM_OK);
    assert_int_equal(fh->nblocks, 2);
    assert_int_equal(fh->oldest_block, 16);
    assert_int_equal(fh->base_fee_per_gas[2].be[31], 3);
    assert_int_equal(fh->reward[3].be[31], 4);
    assert_true(fh->gas_used_ratio[0] == 0.5);
    chain_rpc_fee_history_free(fh);
    assert_int_equal(chain_rpc_parse_fee_history(v, 3, &fh), DM_EPROTO);
    assert_null(fh);
    assert_int_equal(chain_rpc_parse_fee_history(v, 0, &fh), DM_OK);
    assert_null(fh->reward);
    chain_rpc_fee_history_free(fh);
    json_decref(v);
    static const char *bad_fees[] = {
        "{\"oldestBlock\":\"0x10\",\"baseFeePerGas\":[\"0x1\"],\"gasUsedRatio\":[0.5]}",
        "{\"oldestBlock\":\"0x10\",\"baseFeePerGas\":[\"0x1\",\"0x01\"],\"gasUsedRatio\":[0.5]}",
        "{\"oldestBlock\":\"0x10\",\"baseFeePerGas\":[\"0x1\",\"0x1\"],\"gasUsedRatio\":[-1]}",
        "{\"oldestBlock\":\"0x10\",\"baseFeePerGas\":[\"0x1\",\"0x1\"],\"gasUsedRatio\":[\"x\"]}",
        "{\"oldestBlock\":10,\"baseFeePerGas\":[\"0x1\",\"0x1\"],\"gasUsedRatio\":[0.5]}",
        "[]",
    };
    for (size_t i = 0; i < sizeof bad_fees / sizeof bad_fees[0]; i++) {
        v = J(bad_fees[i]);
        assert_int_equal(chain_rpc_parse_fee_history(v, 0, &fh), DM_EPROTO);
        assert_null(fh);
        json_decref(v);
    }
}

/* ------------------------------------------------------------------ client scenarios */

static void test_create_args(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    chain_rpc_t *rpc = NULL;
    static const char *bad[] = {"",
                                "ftp://127.0.0.1/",
                                "file:///etc/passwd",
                                "gopher://127.0.0.1:70/",
                                "127.0.0.1:8545",
                                "http://",
                                "http:// 127.0.0.1/",
                                "http://127.0.0.1:8545/\r\nX: y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (chain_rpc_create(&rpc, &loop, bad[i], NULL) != DM_EINVAL)
            fail_msg("URL accepted: %s", bad[i]);
        assert_null(rpc);
    }
    assert_int_equal(chain_rpc_create(&rpc, &loop, NULL, NULL), DM_EINVAL);
    chain_rpc_opts o = {.max_reply_bytes = (size_t)CHAIN_RPC_REPLY_HARD_MAX + 1};
    assert_int_equal(chain_rpc_create(&rpc, &loop, "http://127.0.0.1:1/", &o), DM_ETOOBIG);
    /* a client that never called: closes cleanly */
    assert_int_equal(chain_rpc_create(&rpc, &loop, "https://user:key@example.invalid/v3/KEY", NULL),
                     DM_OK);
    bool closed = false;
    chain_rpc_close(rpc, on_rpc_closed_flag, &closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(closed);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_basic(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_connect(f);
    call(f, 0, "echo", "[1,\"two\",{\"3\":null}]");
    call(f, 1, "echo", NULL);
    call(f, 2, "null", "[]");
    call(f, 3, "echo", "{\"named\":true}");
    json_t *p = J("[\"0xab\",false]");
    assert_int_equal(chain_rpc_call(f->rpc, "echo", p, on_call, &f->slots[4]), DM_OK);
    json_decref(p); /* the call keeps its own copy */
    assert_int_equal(chain_rpc_in_flight(f->rpc), 5);

    /* refused synchronously, no callback */
    /* the last: a method name over the length limit */
    static const char long_method[] = "x_123456789_123456789_123456789_123456789_123456789_"
                                      "123456789_123";
    static const char *bad_methods[] = {"", "eth call", "eth\"x", "eth_\\u0000", "a/b", long_method};
    for (size_t i = 0; i < sizeof bad_methods / sizeof bad_methods[0]; i++)
        assert_int_equal(chain_rpc_call_text(f->rpc, bad_methods[i], NULL, on_call, &f->slots[9]),
                         DM_EINVAL);
    assert_int_equal(chain_rpc_call_text(f->rpc, NULL, NULL, on_call, &f->slots[9]), DM_EINVAL);
    static const char *bad_params[] = {"1", "\"s\"", "null", "{", "[1,]", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof bad_params / sizeof bad_params[0]; i++)
        assert_int_equal(chain_rpc_call_text(f->rpc, "echo", bad_params[i], on_call, &f->slots[9]),
                         DM_EINVAL);
    json_t *num = json_integer(1);
    assert_int_equal(chain_rpc_call(f->rpc, "echo", num, on_call, &f->slots[9]), DM_EINVAL);
    json_decref(num);
    assert_int_equal(chain_rpc_call_text(f->rpc, "echo", NULL, NULL, NULL), DM_EINVAL);
    assert_int_equal(chain_rpc_call_text(NULL, "echo", NULL, on_call, &f->slots[9]), DM_EINVAL);

    fx_wait(f, 5);
    for (int i = 0; i < 5; i++) {
        assert_outcome(f, i, DM_OK, CHAIN_RPC_ERR_NONE);
        assert_int_equal(f->out[i].err.http_status, 200);
    }
    assert_false(f->out[9].fired);
    json_t *want = J("[1,\"two\",{\"3\":null}]");
    assert_true(json_equal(f->out[0].result, want));
    json_decref(want);
    assert_true(json_is_array(f->out[1].result));
    assert_int_equal(json_array_size(f->out[1].result), 0);
    assert_true(json_is_null(f->out[2].result));
    assert_true(json_is_true(json_object_get(f->out[3].result, "named")));
    assert_string_equal(json_string_value(json_array_get(f->out[4].result, 0)), "0xab");
    assert_int_equal(chain_rpc_in_flight(f->rpc), 0);
    assert_int_equal(f->bad_requests, 0);
    assert_int_equal(f->requests, 5);
    fx_free(f);
}

static void test_errors(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_connect(f);
    static const char *methods[] = {"rpc_error", "rpc_error_null_id", "http500",   "http429",
                                    "malformed", "wrong_id",          "string_id", "missing_result",
                                    "not_v2",    "array_reply",       "oversize",  "no_such_method",
                                    "echo"};
    int n = (int)(sizeof methods / sizeof methods[0]);
    for (int i = 0; i < n; i++)
        call(f, i, methods[i], "[]");
    fx_wait(f, n);

    assert_outcome(f, 0, DM_EPROTO, CHAIN_RPC_ERR_REMOTE);
    assert_int_equal(f->out[0].err.code, -32000);
    /* escape, newline and the two bytes of U+00E9 are masked for the logs */
    assert_string_equal(f->out[0].err.message, "nonce too low?[31m???");
    assert_string_equal(json_string_value(f->out[0].err.data), "0x08c379a0");
    assert_int_equal(f->out[0].err.http_status, 200);
    assert_outcome(f, 1, DM_EPROTO, CHAIN_RPC_ERR_REMOTE);
    assert_int_equal(f->out[1].err.code, -32700);
    assert_null(f->out[1].err.data);
    assert_outcome(f, 2, DM_EPROTO, CHAIN_RPC_ERR_HTTP);
    assert_int_equal(f->out[2].err.http_status, 500);
    assert_outcome(f, 3, DM_EPROTO, CHAIN_RPC_ERR_HTTP);
    assert_int_equal(f->out[3].err.http_status, 429);
    for (int i = 4; i <= 9; i++)
        assert_outcome(f, i, DM_EPROTO, CHAIN_RPC_ERR_REPLY);
    assert_outcome(f, 10, DM_ETOOBIG, CHAIN_RPC_ERR_REPLY);
    assert_outcome(f, 11, DM_EPROTO, CHAIN_RPC_ERR_REMOTE);
    assert_int_equal(f->out[11].err.code, -32601);
    assert_outcome(f, 12, DM_OK, CHAIN_RPC_ERR_NONE);

    /* the client still works after all that */
    call(f, 13, "echo", "[13]");
    /* an HTTP error carrying a JSON-RPC error object: the node's words are kept */
    call(f, 14, "http400_rpc", NULL);
    fx_wait(f, 2);
    assert_outcome(f, 13, DM_OK, CHAIN_RPC_ERR_NONE);
    assert_outcome(f, 14, DM_EPROTO, CHAIN_RPC_ERR_HTTP);
    assert_int_equal(f->out[14].err.http_status, 400);
    assert_int_equal(f->out[14].err.code, -32005);
    assert_string_equal(f->out[14].err.message, "HTTP status 400: rate limited");
    assert_int_equal(json_integer_value(json_object_get(f->out[14].err.data, "retry")), 1);
    assert_int_equal(f->out[2].err.code, 0); /* a 500 with a result body: nothing to pass on */
    assert_null(f->out[2].err.data);
    assert_int_equal(f->bad_requests, 0);
    fx_free(f);
}

typedef struct {
    raw_mode mode;
    const char *text;
    int status;
    chain_rpc_err_kind kind;
    long http;
} raw_case;

static void test_raw_server(void **state)
{
    (void)state;
    static const raw_case cases[] = {
        {RAW_TEXT,
         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 39\r\n"
         "Connection: close\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"raw\"}",
         DM_OK, CHAIN_RPC_ERR_NONE, 200},
        {RAW_CLOSE, NULL, DM_ECONN, CHAIN_RPC_ERR_TRANSPORT, 0},
        {RAW_ENDLESS, NULL, DM_ETOOBIG, CHAIN_RPC_ERR_REPLY, 200},
        {RAW_TEXT,
         "HTTP/1.1 301 Moved Permanently\r\nLocation: http://127.0.0.1:1/\r\n"
         "Content-Length: 0\r\nConnection: close\r\n\r\n",
         DM_EPROTO, CHAIN_RPC_ERR_HTTP, 301},
        {RAW_TEXT,
         "HTTP/1.1 307 Temporary Redirect\r\nLocation: file:///etc/passwd\r\n"
         "Content-Length: 0\r\nConnection: close\r\n\r\n",
         DM_EPROTO, CHAIN_RPC_ERR_HTTP, 307},
        {RAW_TEXT,
         "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"jsonrpc\"",
         DM_EPROTO, CHAIN_RPC_ERR_REPLY, 200},
        {RAW_TEXT, "HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n",
         DM_ETOOBIG, CHAIN_RPC_ERR_REPLY, 200},
        {RAW_TEXT, "SSH-2.0-OpenSSH_9.2\r\n", DM_EPROTO, CHAIN_RPC_ERR_REPLY, 0},
        {RAW_TEXT,
         "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n"
         "Connection: close\r\n\r\nabcd",
         DM_EPROTO, CHAIN_RPC_ERR_REPLY, 200},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fx *f = fx_new();
        raw_start(f, cases[i].mode, cases[i].text);
        fx_connect_port(f, f->raw_port);
        call(f, 0, "eth_blockNumber", NULL);
        fx_wait(f, 1);
        outcome *o = &f->out[0];
        if (o->status != cases[i].status || o->err.kind != cases[i].kind ||
            o->err.http_status != cases[i].http)
            fail_msg("raw case %zu: %s kind %d http %ld (%s)", i, dm_err_name(o->status),
                     o->err.kind, o->err.http_status, o->err.message);
        fx_free(f);
    }
}

static uint64_t elapsed_ms(fx *f, uint64_t since)
{
    uv_update_time(&f->loop);
    return uv_now(&f->loop) - since;
}

static void test_timeout(void **state)
{
    (void)state;
    /* a server that accepts the request and never answers (net_http holds it) */
    fx *f = fx_new();
    f->opts.timeout_ms = 300;
    fx_connect(f);
    uv_update_time(&f->loop);
    uint64_t t0 = uv_now(&f->loop);
    call(f, 0, "hang", NULL);
    call(f, 1, "slow", "[50,\"meanwhile\"]");
    fx_wait(f, 2);
    uint64_t ms = elapsed_ms(f, t0);
    assert_outcome(f, 0, DM_ETIMEDOUT, CHAIN_RPC_ERR_TRANSPORT);
    assert_outcome(f, 1, DM_OK, CHAIN_RPC_ERR_NONE);
    /* the loop was never blocked: the other call finished first */
    assert_int_equal(f->out[1].order, 0);
    assert_true(ms >= 250 && ms < 3000);
    assert_int_equal(f->nhung, 1);
    fx_free(f);

    /* a raw TCP server that reads and never answers */
    f = fx_new();
    f->opts.timeout_ms = 200;
    raw_start(f, RAW_HANG, NULL);
    fx_connect_port(f, f->raw_port);
    call(f, 0, "eth_chainId", NULL);
    fx_wait(f, 1);
    assert_outcome(f, 0, DM_ETIMEDOUT, CHAIN_RPC_ERR_TRANSPORT);
    fx_free(f);
}

static uint16_t closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* bound, never listening, now closed: connecting is refused */
    return ntohs(a.sin_port);
}

static void test_refused(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_connect_port(f, closed_port());
    call(f, 0, "eth_chainId", NULL);
    call(f, 1, "eth_blockNumber", NULL);
    fx_wait(f, 2);
    assert_outcome(f, 0, DM_ECONN, CHAIN_RPC_ERR_TRANSPORT);
    assert_outcome(f, 1, DM_ECONN, CHAIN_RPC_ERR_TRANSPORT);
    assert_int_equal(f->out[0].err.http_status, 0);
    assert_true(f->out[0].err.message[0] != '\0');
    fx_free(f);
}

static void test_concurrent(void **state)
{
    (void)state;
    fx *f = fx_new();
    const int n = 300;
    f->opts.max_in_flight = (uint32_t)n;
    fx_connect(f);
    for (int i = 0; i < n; i++) {
        char p[64];
        snprintf(p, sizeof p, "[%d,%d]", (i * 37) % 25, i); /* answers out of order */
        call(f, i, "slow", p);
    }
    assert_int_equal(chain_rpc_in_flight(f->rpc), (size_t)n);
    assert_int_equal(chain_rpc_call_text(f->rpc, "echo", NULL, on_call, &f->slots[n]), DM_ELIMIT);
    fx_wait(f, n);
    int reordered = 0;
    for (int i = 0; i < n; i++) {
        assert_outcome(f, i, DM_OK, CHAIN_RPC_ERR_NONE);
        assert_int_equal(json_integer_value(f->out[i].result), i);
        reordered += f->out[i].order != i;
    }
    assert_true(reordered > 0);
    assert_false(f->out[n].fired);
    assert_int_equal(chain_rpc_in_flight(f->rpc), 0);
    /* below the limit again */
    call(f, n, "echo", NULL);
    fx_wait(f, 1);
    assert_outcome(f, n, DM_OK, CHAIN_RPC_ERR_NONE);
    fx_free(f);
}

static void on_u64_unused(chain_rpc_t *rpc, int status, uint64_t v, const chain_rpc_error *err,
                          void *arg)
{
    (void)rpc;
    (void)status;
    (void)v;
    (void)err;
    (void)arg;
    fail_msg("callback of a refused call");
}

static void close_from_timer(uv_timer_t *t)
{
    fx *f = t->data;
    /* a call made in the same tick: not even connecting yet when the close comes */
    call(f, 8, "echo", NULL);
    chain_rpc_close(f->rpc, on_rpc_closed, f);
    chain_rpc_close(f->rpc, on_rpc_closed, f); /* second close: no-op */
    /* refused at once while closing; no callback */
    assert_int_equal(chain_rpc_call_text(f->rpc, "echo", NULL, on_call, &f->slots[100]),
                     DM_ECLOSED);
    assert_int_equal(chain_rpc_chain_id(f->rpc, on_u64_unused, NULL), DM_ECLOSED);
    assert_int_equal(chain_rpc_in_flight(f->rpc), 8);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_close_in_flight(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_connect(f);
    for (int i = 0; i < 5; i++)
        call(f, i, "hang", NULL);
    call(f, 5, "slow", "[1000,1]");
    call(f, 6, "slow", "[1000,2]");
    call(f, 7, "echo", NULL); /* answered before the close */
    fx_wait(f, 1);
    assert_outcome(f, 7, DM_OK, CHAIN_RPC_ERR_NONE);
    /* every request is at the server (waiting for its answer) before the close */
    uv_timer_start(&f->watchdog, on_watchdog, 20000, 0);
    while (f->requests < 8 && !f->watchdog_fired)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->watchdog);
    assert_int_equal(f->requests, 8);
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    t.data = f;
    uv_timer_start(&t, close_from_timer, 0, 0);
    fx_wait(f, 8);
    assert_int_equal(f->out[7].order, 0);
    for (int i = 0; i < 7; i++) {
        assert_outcome(f, i, DM_ECLOSED, CHAIN_RPC_ERR_TRANSPORT);
        assert_int_equal(f->out[i].order, i + 1); /* in the order they were made */
    }
    assert_outcome(f, 8, DM_ECLOSED, CHAIN_RPC_ERR_TRANSPORT);
    assert_int_equal(f->out[8].order, 8);
    /* the close callback ran after every cancelled callback */
    for (int i = 0; i < 100 && !f->rpc_closed; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->rpc_closed);
    assert_int_equal(f->closed_at_done, 9);
    assert_false(f->out[100].fired);
    fx_free(f);
}

static void test_reentrant(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_connect(f);
    /* 0's callback starts 1; 1's callback closes the client while 2 and 3 hang */
    f->chain_from_idx = 0;
    f->close_in_cb_idx = 1;
    call(f, 0, "echo", "[0]");
    call(f, 2, "hang", NULL);
    call(f, 3, "hang", NULL);
    fx_wait(f, 4);
    assert_outcome(f, 0, DM_OK, CHAIN_RPC_ERR_NONE);
    assert_outcome(f, 1, DM_OK, CHAIN_RPC_ERR_NONE);
    assert_string_equal(json_string_value(json_array_get(f->out[1].result, 0)), "chained");
    assert_outcome(f, 2, DM_ECLOSED, CHAIN_RPC_ERR_TRANSPORT);
    assert_outcome(f, 3, DM_ECLOSED, CHAIN_RPC_ERR_TRANSPORT);
    for (int i = 0; i < 100 && !f->rpc_closed; i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(f->rpc_closed);
    fx_free(f);
}

/* ------------------------------------------------------------------ typed helpers */

static outcome *typed_record(void *arg, int status, const chain_rpc_error *err)
{
    slot *s = arg;
    assert_non_null(err);
    record(s, status, NULL, err);
    outcome *o = &s->f->out[s->idx];
    o->has_value = status == DM_OK;
    return o;
}

static void on_u64(chain_rpc_t *rpc, int status, uint64_t v, const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    typed_record(arg, status, err)->u64 = v;
}

static void on_u256(chain_rpc_t *rpc, int status, const chain_u256 *v, const chain_rpc_error *err,
                    void *arg)
{
    (void)rpc;
    assert_true((status == DM_OK) == (v != NULL));
    outcome *o = typed_record(arg, status, err);
    if (v)
        o->u256 = *v;
}

static void on_hash(chain_rpc_t *rpc, int status, const uint8_t *h, const chain_rpc_error *err,
                    void *arg)
{
    (void)rpc;
    assert_true((status == DM_OK) == (h != NULL));
    outcome *o = typed_record(arg, status, err);
    if (h) {
        memcpy(o->bytes, h, 32);
        o->nbytes = 32;
    }
}

static void on_data(chain_rpc_t *rpc, int status, const uint8_t *d, size_t n,
                    const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    assert_true((status == DM_OK) == (d != NULL));
    outcome *o = typed_record(arg, status, err);
    if (d && n <= sizeof o->bytes) {
        memcpy(o->bytes, d, n);
        o->nbytes = n;
    }
}

static void on_receipt(chain_rpc_t *rpc, int status, const chain_rpc_receipt *r,
                       const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    assert_true((status == DM_OK) == (r != NULL));
    outcome *o = typed_record(arg, status, err);
    if (r) {
        o->u64 = r->block_number;
        o->a = r->status;
        o->b = r->nlogs;
        o->c = r->nlogs ? r->logs[0].log_index : 0;
        memcpy(o->bytes, r->tx_hash, 32);
    }
}

static void on_logs(chain_rpc_t *rpc, int status, const chain_rpc_logs *l,
                    const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    assert_true((status == DM_OK) == (l != NULL));
    outcome *o = typed_record(arg, status, err);
    if (l) {
        o->u64 = l->n;
        o->a = l->n ? l->logs[0].ntopics : 0;
        o->b = l->n ? l->logs[0].block_number : 0;
    }
}

static void on_block(chain_rpc_t *rpc, int status, const chain_rpc_block *b,
                     const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    assert_true((status == DM_OK) == (b != NULL));
    outcome *o = typed_record(arg, status, err);
    if (b) {
        o->u64 = b->number;
        o->a = b->has_base_fee;
        o->u256 = b->base_fee_per_gas;
    }
}

static void on_tx(chain_rpc_t *rpc, int status, const chain_rpc_tx *tx, const chain_rpc_error *err,
                  void *arg)
{
    (void)rpc;
    assert_true((status == DM_OK) == (tx != NULL));
    outcome *o = typed_record(arg, status, err);
    if (tx) {
        o->u64 = tx->nonce;
        o->a = tx->mined;
        o->b = tx->block_number;
    }
}

static void on_fees(chain_rpc_t *rpc, int status, const chain_rpc_fee_history *fh,
                    const chain_rpc_error *err, void *arg)
{
    (void)rpc;
    assert_true((status == DM_OK) == (fh != NULL));
    outcome *o = typed_record(arg, status, err);
    if (fh) {
        o->u64 = fh->nblocks;
        o->a = fh->oldest_block;
        o->b = fh->npercentiles;
        o->u256 = fh->reward[fh->nblocks * fh->npercentiles - 1];
    }
}

static void can(fx *f, const char *method, const char *result_json)
{
    json_object_set_new(f->canned, method, J(result_json));
}

static void assert_params(fx *f, const char *method, const char *want_json)
{
    json_t *got = json_object_get(f->seen, method);
    json_t *want = J(want_json);
    if (!json_equal(got, want)) {
        char *g = got ? json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        fail_msg("%s params: got %s, want %s", method, g ? g : "(none)", want_json);
    }
    json_decref(want);
}

static uint64_t u256_low64(const chain_u256 *u)
{
    uint64_t v = 0;
    for (int i = 24; i < 32; i++)
        v = v << 8 | u->be[i];
    return v;
}

static void test_typed(void **state)
{
    (void)state;
    fx *f = fx_new();
    fx_connect(f);
    can(f, "eth_chainId", "\"0x7a69\"");
    can(f, "eth_blockNumber", "\"0x10\"");
    can(f, "eth_getTransactionCount", "\"0x5\"");
    can(f, "eth_getBalance", "\"0xde0b6b3a7640000\"");
    can(f, "eth_maxPriorityFeePerGas", "\"0x3b9aca00\"");
    can(f, "eth_gasPrice", "\"0x0\"");
    can(f, "eth_feeHistory",
        "{\"oldestBlock\":\"0xd\",\"baseFeePerGas\":[\"0x1\",\"0x2\",\"0x3\",\"0x4\",\"0x5\"],"
        "\"gasUsedRatio\":[0,0.1,0.2,0.3],\"reward\":[[\"0x1\",\"0x2\"],[\"0x1\",\"0x2\"],"
        "[\"0x1\",\"0x2\"],[\"0x1\",\"0x77\"]]}");
    can(f, "eth_getBlockByNumber",
        "{\"number\":\"0x10\",\"hash\":\"" H32B "\",\"parentHash\":\"" H32C
        "\",\"timestamp\":\"0x1\",\"gasLimit\":\"0x1c9c380\",\"gasUsed\":\"0x0\","
        "\"baseFeePerGas\":\"0x342770c0\"}");
    can(f, "eth_estimateGas", "\"0x5208\"");
    can(f, "eth_call", "\"0x000000000000000000000000000000000000000000000000000000000000002a\"");
    can(f, "eth_sendRawTransaction", "\"" H32A "\"");
    can(f, "eth_getTransactionReceipt", RECEIPT_JSON("0x1", LOG_JSON(H32A, H32B, "0x10", ""), ""));
    can(f, "eth_getTransactionByHash",
        "{\"hash\":\"" H32A "\",\"from\":\"" ADDR1 "\",\"nonce\":\"0x5\",\"blockHash\":\"" H32B
        "\",\"blockNumber\":\"0x10\",\"input\":\"0x\"}");
    can(f, "eth_getLogs", "[" LOG_JSON(H32A, H32B, "0x10", "") "]");

    uint8_t a1[20], a2[20], h1[32], h3[32];
    memset(a1, 0xaa, sizeof a1);
    memset(a2, 0xbb, sizeof a2);
    memset(h1, 0x11, sizeof h1);
    memset(h3, 0x33, sizeof h3);
    slot *S = f->slots;
    chain_rpc_t *rpc = f->rpc;
    assert_int_equal(chain_rpc_chain_id(rpc, on_u64, &S[0]), DM_OK);
    assert_int_equal(chain_rpc_block_number(rpc, on_u64, &S[1]), DM_OK);
    assert_int_equal(chain_rpc_get_transaction_count(rpc, a1, CHAIN_RPC_PENDING, on_u64, &S[2]),
                     DM_OK);
    assert_int_equal(chain_rpc_get_balance(rpc, a1, CHAIN_RPC_LATEST, on_u256, &S[3]), DM_OK);
    assert_int_equal(chain_rpc_max_priority_fee(rpc, on_u256, &S[4]), DM_OK);
    assert_int_equal(chain_rpc_gas_price(rpc, on_u256, &S[5]), DM_OK);
    const double pct[] = {25, 75};
    assert_int_equal(chain_rpc_get_fee_history(rpc, 4, CHAIN_RPC_LATEST, pct, 2, on_fees, &S[6]),
                     DM_OK);
    assert_int_equal(chain_rpc_get_block(rpc, CHAIN_RPC_LATEST, on_block, &S[7]), DM_OK);
    chain_u256 one;
    memset(&one, 0, sizeof one);
    one.be[31] = 1;
    const uint8_t cd[] = {0x01, 0x02};
    chain_rpc_call_msg msg = {.from = a1, .to = a2, .data = cd, .data_len = 2, .value = &one};
    assert_int_equal(chain_rpc_estimate_gas(rpc, &msg, on_u64, &S[8]), DM_OK);
    chain_rpc_call_msg view = {.to = a2, .data = cd, .data_len = 2, .gas = 100000};
    assert_int_equal(chain_rpc_eth_call(rpc, &view, CHAIN_RPC_BLOCK(16), on_data, &S[9]), DM_OK);
    const uint8_t raw[] = {0x02, 0xf8, 0x01};
    assert_int_equal(chain_rpc_send_raw_transaction(rpc, raw, sizeof raw, on_hash, &S[10]), DM_OK);
    assert_int_equal(chain_rpc_get_receipt(rpc, h1, on_receipt, &S[11]), DM_OK);
    assert_int_equal(chain_rpc_get_transaction(rpc, h1, on_tx, &S[12]), DM_OK);
    chain_rpc_log_filter flt = {.address = a2,
                                .topics = {h3, NULL, h1},
                                .ntopics = 3,
                                .from_block = CHAIN_RPC_BLOCK(1),
                                .to_block = CHAIN_RPC_FINALIZED};
    assert_int_equal(chain_rpc_get_logs(rpc, &flt, on_logs, &S[13]), DM_OK);

    /* argument checks: refused synchronously */
    assert_int_equal(chain_rpc_get_fee_history(rpc, 0, CHAIN_RPC_LATEST, NULL, 0, on_fees, &S[99]),
                     DM_EINVAL);
    assert_int_equal(
        chain_rpc_get_fee_history(rpc, 1025, CHAIN_RPC_LATEST, NULL, 0, on_fees, &S[99]),
        DM_EINVAL);
    const double badpct[] = {75, 25};
    assert_int_equal(
        chain_rpc_get_fee_history(rpc, 4, CHAIN_RPC_LATEST, badpct, 2, on_fees, &S[99]), DM_EINVAL);
    const double nanpct[] = {0.0 / 0.0};
    assert_int_equal(
        chain_rpc_get_fee_history(rpc, 4, CHAIN_RPC_LATEST, nanpct, 1, on_fees, &S[99]), DM_EINVAL);
    chain_rpc_log_filter bad_flt = {.ntopics = 5};
    assert_int_equal(chain_rpc_get_logs(rpc, &bad_flt, on_logs, &S[99]), DM_EINVAL);
    assert_int_equal(chain_rpc_send_raw_transaction(rpc, raw, 0, on_hash, &S[99]), DM_EINVAL);
    chain_rpc_call_msg noto = {.data = cd, .data_len = 2};
    assert_int_equal(chain_rpc_eth_call(rpc, &noto, CHAIN_RPC_LATEST, on_data, &S[99]), DM_EINVAL);
    chain_rpc_block_ref weird = {(chain_rpc_block_tag)99, 0};
    assert_int_equal(chain_rpc_get_block(rpc, weird, on_block, &S[99]), DM_EINVAL);
    assert_int_equal(chain_rpc_get_receipt(rpc, NULL, on_receipt, &S[99]), DM_EINVAL);
    assert_int_equal(chain_rpc_block_number(rpc, NULL, NULL), DM_EINVAL);

    fx_wait(f, 14);
    for (int i = 0; i < 14; i++)
        assert_outcome(f, i, DM_OK, CHAIN_RPC_ERR_NONE);
    assert_false(f->out[99].fired);
    assert_int_equal(chain_rpc_in_flight(rpc), 0);

    assert_int_equal(f->out[0].u64, 31337);
    assert_params(f, "eth_chainId", "[]");
    assert_int_equal(f->out[1].u64, 16);
    assert_int_equal(f->out[2].u64, 5);
    assert_params(f, "eth_getTransactionCount", "[\"" ADDR1 "\",\"pending\"]");
    assert_int_equal(u256_low64(&f->out[3].u256), 1000000000000000000ull);
    assert_params(f, "eth_getBalance", "[\"" ADDR1 "\",\"latest\"]");
    assert_int_equal(u256_low64(&f->out[4].u256), 1000000000);
    assert_int_equal(u256_low64(&f->out[5].u256), 0);
    assert_int_equal(f->out[6].u64, 4);
    assert_int_equal(f->out[6].a, 13);
    assert_int_equal(f->out[6].b, 2);
    assert_int_equal(u256_low64(&f->out[6].u256), 0x77);
    assert_params(f, "eth_feeHistory", "[\"0x4\",\"latest\",[25.0,75.0]]");
    assert_int_equal(f->out[7].u64, 16);
    assert_int_equal(f->out[7].a, 1);
    assert_int_equal(u256_low64(&f->out[7].u256), 875000000);
    assert_params(f, "eth_getBlockByNumber", "[\"latest\",false]");
    assert_int_equal(f->out[8].u64, 21000);
    assert_params(f, "eth_estimateGas",
                  "[{\"from\":\"" ADDR1 "\",\"to\":\"" ADDR2 "\",\"value\":\"0x1\","
                  "\"data\":\"0x0102\"}]");
    assert_int_equal(f->out[9].nbytes, 32);
    assert_int_equal(f->out[9].bytes[31], 42);
    assert_params(f, "eth_call",
                  "[{\"to\":\"" ADDR2 "\",\"gas\":\"0x186a0\",\"data\":\"0x0102\"},\"0x10\"]");
    assert_int_equal(f->out[10].nbytes, 32);
    assert_memory_equal(f->out[10].bytes, h1, 32);
    assert_params(f, "eth_sendRawTransaction", "[\"0x02f801\"]");
    assert_int_equal(f->out[11].u64, 16);
    assert_int_equal(f->out[11].a, 1);
    assert_int_equal(f->out[11].b, 1);
    assert_int_equal(f->out[11].c, 5);
    assert_params(f, "eth_getTransactionReceipt", "[\"" H32A "\"]");
    assert_int_equal(f->out[12].u64, 5);
    assert_int_equal(f->out[12].a, 1);
    assert_int_equal(f->out[12].b, 16);
    assert_int_equal(f->out[13].u64, 1);
    assert_int_equal(f->out[13].a, 2);
    assert_int_equal(f->out[13].b, 16);
    assert_params(f, "eth_getLogs",
                  "[{\"address\":\"" ADDR2 "\",\"topics\":[\"" H32C "\",null,\"" H32A "\"],"
                  "\"fromBlock\":\"0x1\",\"toBlock\":\"finalized\"}]");

    /* the wrong shapes, null answers and node errors */
    can(f, "eth_chainId", "\"0x07a69\"");
    can(f, "eth_blockNumber", "16");
    can(f, "eth_getTransactionReceipt", "null");
    can(f, "eth_getBlockByNumber", "null");
    can(f, "eth_getTransactionByHash", "null");
    can(f, "eth_sendRawTransaction", "\"0x1234\"");
    can(f, "eth_getLogs", "{}");
    can(f, "eth_feeHistory",
        "{\"oldestBlock\":\"0xd\",\"baseFeePerGas\":[\"0x1\",\"0x2\"],\"gasUsedRatio\":[0]}");
    can(f, "eth_gasPrice",
        "\"0x1"
        "0000000000000000000000000000000000000000000000000000000000000000\"");
    json_object_del(f->canned, "eth_call"); /* answered with a JSON-RPC error */
    assert_int_equal(chain_rpc_chain_id(rpc, on_u64, &S[20]), DM_OK);
    assert_int_equal(chain_rpc_block_number(rpc, on_u64, &S[21]), DM_OK);
    assert_int_equal(chain_rpc_get_receipt(rpc, h1, on_receipt, &S[22]), DM_OK);
    assert_int_equal(chain_rpc_get_block(rpc, CHAIN_RPC_BLOCK(99), on_block, &S[23]), DM_OK);
    assert_int_equal(chain_rpc_get_transaction(rpc, h1, on_tx, &S[24]), DM_OK);
    assert_int_equal(chain_rpc_send_raw_transaction(rpc, raw, sizeof raw, on_hash, &S[25]), DM_OK);
    assert_int_equal(chain_rpc_get_logs(rpc, &flt, on_logs, &S[26]), DM_OK);
    assert_int_equal(chain_rpc_get_fee_history(rpc, 1, CHAIN_RPC_LATEST, pct, 2, on_fees, &S[27]),
                     DM_OK);
    assert_int_equal(chain_rpc_gas_price(rpc, on_u256, &S[28]), DM_OK);
    assert_int_equal(chain_rpc_eth_call(rpc, &view, CHAIN_RPC_LATEST, on_data, &S[29]), DM_OK);
    fx_wait(f, 10);
    assert_outcome(f, 20, DM_EPROTO, CHAIN_RPC_ERR_RESULT);
    assert_non_null(strstr(f->out[20].err.message, "eth_chainId"));
    assert_int_equal(f->out[20].err.http_status, 200);
    assert_outcome(f, 21, DM_EPROTO, CHAIN_RPC_ERR_RESULT);
    assert_outcome(f, 22, DM_ENOTFOUND, CHAIN_RPC_ERR_NONE);
    assert_outcome(f, 23, DM_ENOTFOUND, CHAIN_RPC_ERR_NONE);
    assert_outcome(f, 24, DM_ENOTFOUND, CHAIN_RPC_ERR_NONE);
    assert_outcome(f, 25, DM_EPROTO, CHAIN_RPC_ERR_RESULT);
    assert_outcome(f, 26, DM_EPROTO, CHAIN_RPC_ERR_RESULT);
    assert_outcome(f, 27, DM_EPROTO, CHAIN_RPC_ERR_RESULT);
    assert_non_null(strstr(f->out[27].err.message, "reward"));
    assert_outcome(f, 28, DM_EPROTO, CHAIN_RPC_ERR_RESULT);
    assert_outcome(f, 29, DM_EPROTO, CHAIN_RPC_ERR_REMOTE);
    assert_int_equal(f->out[29].err.code, -32601);
    for (int i = 20; i < 30; i++)
        assert_false(f->out[i].has_value);
    assert_int_equal(f->bad_requests, 0);
    fx_free(f);
}

int test_chain_rpc(void)
{
    signal(SIGPIPE, SIG_IGN); /* libuv leaves it to the process */
    dm_log_level saved = dm_log_get_level();
    dm_log_set_level(DM_LOG_WARNING);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_reply_table),
        cmocka_unit_test(test_parse_quantities),
        cmocka_unit_test(test_parse_structures),
        cmocka_unit_test(test_create_args),
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_raw_server),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_close_in_flight),
        cmocka_unit_test(test_reentrant),
        cmocka_unit_test(test_typed),
    };
    int rc = cmocka_run_group_tests_name("chain_rpc", tests, NULL, NULL);
    dm_log_set_level(saved);
    return rc;
}
