/*
 * libFuzzer target for HTTP request handling (net/net_http.c). Each input is what one client
 * sends on one connection: it is written into one end of a socketpair whose other end is
 * served by a real net_http server through net__http_adopt_fd (the same parser, limits,
 * state machine and handler path as an accepted TCP connection); the client then
 * half-closes, reads everything until EOF, and the loop runs until the connection, the
 * client and any asynchronous answer are gone.
 * Properties checked beyond "no crash, no leak, no UB, no hang":
 *   - the server's output parses as a sequence of HTTP/1.1 responses (http_parser in
 *     response mode, HEAD-aware), with nothing after a "Connection: close" one;
 *   - every final response carries "X-Content-Type-Options: nosniff" and
 *     "Cache-Control: no-store", and every JSON error body (status >= 400) is valid JSON
 *     (jansson), so error bodies are escaped correctly whatever the input;
 *   - requests handed to the handler and responses match one to one, plus at most one
 *     final server-made error (400/408/413/431), which comes last;
 *   - accessors and net_http_query_param return only documented codes and bounded strings;
 *   - extra headers and a content type taken from the request never break the framing
 *     (net_http_respond either accepts them or answers 500).
 * Handler: /async* answers from a 0 ms timer; /err answers respond_error with the raw path
 * and query; /x answers with the request's X-Ctype as content type and its body as extra
 * headers; anything else echoes what the accessors returned.
 * Build: cmake -DDM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
 * Run:   ./fuzz_http -max_total_time=30 fuzz/corpus/http
 */
#include "dm_buf.h"
#include "dm_err.h"
#include "dm_log.h"
#include "net_http.h"
#include "net_http_internal.h"

#include <http_parser.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT (1u << 20)
#define MAX_TRACKED 65536

static uv_loop_t loop;
static net_http_server_t *srv;

/* per input */
static bool head_req[MAX_TRACKED]; /* handled request i was a HEAD */
static size_t nhandled;
static size_t pending_async;

typedef struct {
    uv_timer_t t;
    net_http_req_t *r;
} async_resp;

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void async_closed(uv_handle_t *h)
{
    free(h->data);
    pending_async--;
}

static void async_fire(uv_timer_t *t)
{
    async_resp *a = t->data;
    int rc = net_http_respond(a->r, 202, "text/plain", "later", 5, "Retry-After: 0\r\n");
    check(rc == DM_OK);
    uv_close((uv_handle_t *)&a->t, async_closed);
}

static void probe_param(net_http_req_t *r, const char *name, size_t cap)
{
    char out[256];
    memset(out, 'Z', sizeof out);
    int rc = net_http_query_param(r, name, out, cap);
    check(rc == DM_OK || rc == DM_ENOTFOUND || rc == DM_ETOOBIG || rc == DM_EPARSE);
    check(memchr(out, '\0', cap) != NULL); /* always terminated within cap */
    if (rc == DM_OK)
        check(strlen(out) < cap);
}

static void handler(net_http_req_t *r, void *arg)
{
    (void)arg;
    const char *method = net_http_req_method(r);
    const char *path = net_http_req_path(r);
    const char *query = net_http_req_query(r);
    size_t bn;
    const uint8_t *body = net_http_req_body(r, &bn);
    check(method && path && query && body && net_http_req_remote_ip(r));
    check(path[0] == '/');
    check(bn <= 4096);
    if (nhandled < MAX_TRACKED)
        head_req[nhandled] = strcmp(method, "HEAD") == 0;
    nhandled++;
    static const char *names[] = {"a", "id", "limit", "", "a b", "%"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        probe_param(r, names[i], 1);
        probe_param(r, names[i], 8);
        probe_param(r, names[i], 256);
    }
    static const char *hdrs[] = {"host", "Content-Length", "AUTHORIZATION", "x-api-key", ""};
    dm_buf out = DM_BUF_INIT;
    for (size_t i = 0; i < sizeof hdrs / sizeof hdrs[0]; i++) {
        const char *v = net_http_req_header(r, hdrs[i]);
        if (v)
            check(!strchr(v, '\r') && !strchr(v, '\n'));
        check(dm_buf_printf(&out, "%s=%s\n", hdrs[i], v ? v : "-") == DM_OK);
    }
    if (strncmp(path, "/async", 6) == 0) {
        async_resp *a = calloc(1, sizeof *a);
        check(a != NULL);
        a->r = r;
        a->t.data = a;
        uv_timer_init(&loop, &a->t);
        uv_timer_start(&a->t, async_fire, 0, 0);
        pending_async++;
    } else if (strcmp(path, "/err") == 0 || strncmp(path, "/err/", 5) == 0) {
        int status = 400 + (int)(bn % 200);
        check(net_http_respond_error(r, status, path, query) == DM_OK);
    } else if (strcmp(path, "/x") == 0) {
        char *extra = malloc(bn + 1);
        check(extra != NULL);
        memcpy(extra, body, bn);
        extra[bn] = '\0';
        int rc = net_http_respond(r, 200, net_http_req_header(r, "x-ctype"), "x", 1, extra);
        check(rc == DM_OK || rc == DM_EINVAL);
        free(extra);
    } else {
        check(dm_buf_printf(&out, "%s %s ? %s\n", method, path, query) == DM_OK);
        check(dm_buf_append(&out, body, bn) == DM_OK);
        check(net_http_respond(r, 200, "application/octet-stream", out.data, out.len, NULL) ==
              DM_OK);
    }
    dm_buf_free(&out);
}

/* ---------- the client end ---------- */

typedef struct {
    uv_pipe_t pipe;
    uv_write_t w;
    uv_shutdown_t sd;
    dm_buf in;
    char rbuf[65536];
    bool closed;
} client_t;

static void client_closed(uv_handle_t *h)
{
    ((client_t *)h->data)->closed = true;
}

static void client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    client_t *c = h->data;
    buf->base = c->rbuf;
    buf->len = sizeof c->rbuf;
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *c = s->data;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, client_closed);
        return;
    }
    check(dm_buf_append(&c->in, buf->base, (size_t)n) == DM_OK);
}

static void client_written(uv_write_t *w, int status)
{
    client_t *c = w->data;
    if (status == 0 && !uv_is_closing((uv_handle_t *)&c->pipe))
        uv_shutdown(&c->sd, (uv_stream_t *)&c->pipe, NULL);
}

/* ---------- checking the server's output ---------- */

typedef struct {
    size_t finals;      /* final (non-1xx) responses seen */
    bool after_close;   /* a Connection: close response was complete */
    bool saw_close_hdr; /* in the current response */
    bool nosniff, nostore, json;
    bool head;           /* answers a HEAD: no body */
    int last_field;      /* last callback: 0 none, 1 field, 2 value */
    dm_buf field, value; /* current header */
    dm_buf body;
    size_t server_errors;
} resp_check;

static void finish_header(resp_check *rc)
{
    if (rc->field.len == 0)
        return;
    const char *f = dm_buf_cstr(&rc->field), *v = dm_buf_cstr(&rc->value);
    if (strcasecmp(f, "connection") == 0 && strcasecmp(v, "close") == 0)
        rc->saw_close_hdr = true;
    if (strcasecmp(f, "x-content-type-options") == 0 && strcmp(v, "nosniff") == 0)
        rc->nosniff = true;
    if (strcasecmp(f, "cache-control") == 0 && strcmp(v, "no-store") == 0)
        rc->nostore = true;
    if (strcasecmp(f, "content-type") == 0 && strncmp(v, "application/json", 16) == 0)
        rc->json = true;
    dm_buf_reset(&rc->field);
    dm_buf_reset(&rc->value);
}

static int rp_begin(http_parser *p)
{
    resp_check *rc = p->data;
    check(!rc->after_close);
    rc->saw_close_hdr = rc->nosniff = rc->nostore = rc->json = rc->head = false;
    rc->last_field = 0;
    dm_buf_reset(&rc->field);
    dm_buf_reset(&rc->value);
    dm_buf_reset(&rc->body);
    return 0;
}

static int rp_field(http_parser *p, const char *at, size_t n)
{
    resp_check *rc = p->data;
    if (rc->last_field == 2)
        finish_header(rc);
    rc->last_field = 1;
    check(dm_buf_append(&rc->field, at, n) == DM_OK);
    return 0;
}

static int rp_value(http_parser *p, const char *at, size_t n)
{
    resp_check *rc = p->data;
    rc->last_field = 2;
    check(dm_buf_append(&rc->value, at, n) == DM_OK);
    return 0;
}

static int rp_headers_complete(http_parser *p)
{
    resp_check *rc = p->data;
    finish_header(rc);
    if (p->status_code < 200)
        return 0;
    check(rc->nosniff && rc->nostore);
    /* a HEAD response has a Content-Length but no body */
    size_t i = rc->finals;
    rc->head = i < nhandled && i < MAX_TRACKED && head_req[i];
    return rc->head ? 1 : 0;
}

static int rp_body(http_parser *p, const char *at, size_t n)
{
    resp_check *rc = p->data;
    check(dm_buf_append(&rc->body, at, n) == DM_OK);
    return 0;
}

static int rp_complete(http_parser *p)
{
    resp_check *rc = p->data;
    if (p->status_code < 200)
        return 0;
    if (rc->finals >= nhandled) {
        /* a response the server made itself: an error, and the last one */
        rc->server_errors++;
        check(p->status_code == 400 || p->status_code == 408 || p->status_code == 413 ||
              p->status_code == 431 || p->status_code == 503);
        check(rc->saw_close_hdr);
    }
    /* error bodies (the server's own, respond_error, the 500 for a bad response) */
    if (rc->json && p->status_code >= 400 && !rc->head) {
        json_t *j = json_loadb((const char *)rc->body.data, rc->body.len, 0, NULL);
        check(j != NULL);
        json_decref(j);
    }
    rc->finals++;
    if (rc->saw_close_hdr)
        rc->after_close = true;
    return 0;
}

static void check_output(const dm_buf *out)
{
    static const http_parser_settings st = {
        .on_message_begin = rp_begin,
        .on_header_field = rp_field,
        .on_header_value = rp_value,
        .on_headers_complete = rp_headers_complete,
        .on_body = rp_body,
        .on_message_complete = rp_complete,
    };
    resp_check rc;
    memset(&rc, 0, sizeof rc);
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &rc;
    size_t n = http_parser_execute(&p, &st, (const char *)out->data, out->len);
    check(n == out->len && HTTP_PARSER_ERRNO(&p) == HPE_OK);
    check(rc.server_errors <= 1);
    if (nhandled <= MAX_TRACKED)
        check(rc.finals == nhandled + rc.server_errors);
    dm_buf_free(&rc.field);
    dm_buf_free(&rc.value);
    dm_buf_free(&rc.body);
}

static void init_once(void)
{
    if (srv)
        return;
    signal(SIGPIPE, SIG_IGN);
    /* the server logs every rejected response; keep the fuzzer's output readable */
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull)
        dm_log_set_stream(devnull);
    check(uv_loop_init(&loop) == 0);
    net_http_opts o;
    net_http_opts_default(&o);
    o.name = "fuzz";
    o.max_header_bytes = 2048;
    o.max_headers = 16;
    o.max_body = 4096;
    o.max_connections = 4;
    /* long enough that a connection left waiting shows up as a libFuzzer timeout */
    o.header_timeout_ms = o.body_timeout_ms = o.idle_timeout_ms = 60000;
    check(net_http_create(&srv, &loop, &o, handler, NULL) == DM_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    init_once();
    nhandled = 0;
    pending_async = 0;
    int sv[2];
    check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    check(net__http_adopt_fd(srv, sv[0]) == DM_OK);
    client_t *c = calloc(1, sizeof *c);
    check(c != NULL);
    check(uv_pipe_init(&loop, &c->pipe, 0) == 0);
    c->pipe.data = c;
    c->w.data = c;
    check(uv_pipe_open(&c->pipe, sv[1]) == 0);
    check(uv_read_start((uv_stream_t *)&c->pipe, client_alloc, client_read) == 0);
    if (size > 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)size);
        check(uv_write(&c->w, (uv_stream_t *)&c->pipe, &b, 1, client_written) == 0);
    } else {
        check(uv_shutdown(&c->sd, (uv_stream_t *)&c->pipe, NULL) == 0);
    }
    net_http_stats st;
    for (;;) {
        net_http_get_stats(srv, &st);
        if (c->closed && st.connections == 0 && pending_async == 0)
            break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    if (getenv("FUZZ_HTTP_DEBUG")) /* show what the server sent, to study a failing input */
        fprintf(stderr, "--- %zu handled, server output:\n%.*s\n---\n", nhandled, (int)c->in.len,
                (const char *)c->in.data);
    check_output(&c->in);
    dm_buf_free(&c->in);
    free(c);
    return 0;
}
