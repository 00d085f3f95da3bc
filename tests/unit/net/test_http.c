/*
 * net_http: a real server on 127.0.0.1 (port 0) in a uv loop on the test thread, driven by
 * a client thread with blocking sockets (SO_RCVTIMEO bounds every wait). cmocka is not
 * thread-safe, so the client thread only records what it saw (responses, timings, the first
 * failed check); the test thread asserts after joining it. Every scenario ends with the
 * server closed and uv_loop_close() == 0.
 */
#include "dm_test.h"
#include "groups.h"

#include "dm_err.h"
#include "net_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#define NOUT 16
#define OUTCAP 8192

typedef struct fx fx;
typedef void (*client_fn)(fx *f);

struct fx {
    uv_loop_t loop;
    net_http_server_t *srv;
    net_http_opts opts;
    uv_async_t done;
    pthread_t th;
    uint16_t port;
    client_fn client;
    bool closed;
    net_http_stats stats; /* snapshot when the client finished */
    /* loop thread */
    atomic_int handled;
    atomic_int responded; /* async responses sent */
    int rcs[16];
    int nrc;
    /* client thread */
    char out[NOUT][OUTCAP];
    int status[NOUT];
    long ms[NOUT];
    char err[512];
};

/* ---------- the handler (loop thread) ---------- */

typedef struct {
    uv_timer_t t;
    net_http_req_t *r;
    fx *f;
} async_resp;

static void record_rc(fx *f, int rc)
{
    if (f->nrc < (int)(sizeof f->rcs / sizeof f->rcs[0]))
        f->rcs[f->nrc++] = rc;
}

static void async_closed(uv_handle_t *h)
{
    free(h->data);
}

static void async_fire(uv_timer_t *t)
{
    async_resp *a = t->data;
    int rc = net_http_respond(a->r, 200, "text/plain", "async-done", 10, NULL);
    record_rc(a->f, rc);
    atomic_fetch_add(&a->f->responded, 1);
    uv_close((uv_handle_t *)&a->t, async_closed);
}

static const char *nz(const char *s)
{
    return s ? s : "(null)";
}

static const char weird_message[] = "no \"such\" thing\\ \n\t\x01 caf\xc3\xa9 \xff!";

static void handler(net_http_req_t *r, void *arg)
{
    fx *f = arg;
    atomic_fetch_add(&f->handled, 1);
    const char *path = net_http_req_path(r);
    char buf[OUTCAP];
    if (strcmp(path, "/async") == 0) {
        char v[16];
        unsigned ms = 50;
        if (net_http_query_param(r, "ms", v, sizeof v) == DM_OK)
            ms = (unsigned)atoi(v);
        async_resp *a = calloc(1, sizeof *a);
        assert_non_null(a);
        a->r = r;
        a->f = f;
        a->t.data = a;
        uv_timer_init(&f->loop, &a->t);
        uv_timer_start(&a->t, async_fire, ms, 0);
    } else if (strcmp(path, "/missing") == 0) {
        record_rc(f, net_http_respond_error(r, 404, "not_found", weird_message));
    } else if (strcmp(path, "/q") == 0) {
        static const char *names[] = {"a", "b", "c", "d", "e", "sp ace", "missing"};
        size_t o = 0;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char v[64];
            int rc = net_http_query_param(r, names[i], v, sizeof v);
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s:%d:%s;", names[i], rc, v);
        }
        char small[4];
        int rc = net_http_query_param(r, "a", small, sizeof small);
        o += (size_t)snprintf(buf + o, sizeof buf - o, "small:%d:%s;", rc, small);
        record_rc(f, net_http_respond(r, 200, "text/plain", buf, o, NULL));
    } else if (strcmp(path, "/hdr") == 0) {
        int n = snprintf(buf, sizeof buf, "x-test=[%s] host=[%s] empty=[%s] auth=[%s]",
                         nz(net_http_req_header(r, "x-test")), nz(net_http_req_header(r, "HOST")),
                         nz(net_http_req_header(r, "X-Empty")),
                         nz(net_http_req_header(r, "Authorization")));
        record_rc(f, net_http_respond(r, 200, "text/plain", buf, (size_t)n, NULL));
    } else if (strcmp(path, "/bad-extra") == 0) {
        record_rc(
            f, net_http_respond(r, 200, "text/plain", "x", 1, "X-A: 1\r\nX-B: a\nInjected: 1\r\n"));
    } else if (strcmp(path, "/bad-extra2") == 0) {
        record_rc(f, net_http_respond(r, 200, "text/plain", "x", 1, "Transfer-Encodingx: 1\r\n"));
    } else if (strcmp(path, "/bad-ctype") == 0) {
        record_rc(f, net_http_respond(r, 200, "text/plain\r\nX-Evil: 1", "x", 1, NULL));
    } else if (strcmp(path, "/retry") == 0) {
        record_rc(f, net_http_respond(r, 429, "application/json", "{}", 2, "Retry-After: 1\r\n"));
    } else {
        size_t bn;
        const uint8_t *body = net_http_req_body(r, &bn);
        int n = snprintf(buf, sizeof buf, "%s|%s|%s|%zu|", net_http_req_method(r), path,
                         net_http_req_query(r), bn);
        size_t o = (size_t)n;
        if (bn > sizeof buf - o)
            bn = sizeof buf - o;
        memcpy(buf + o, body, bn);
        record_rc(f, net_http_respond(r, 200, "text/plain; charset=utf-8", buf, o + bn, NULL));
    }
}

/* ---------- fixture ---------- */

static void on_server_closed(void *arg)
{
    ((fx *)arg)->closed = true;
}

static void on_done(uv_async_t *a)
{
    fx *f = a->data;
    net_http_get_stats(f->srv, &f->stats);
    net_http_close(f->srv, on_server_closed, f);
    uv_close((uv_handle_t *)&f->done, NULL);
}

static void *client_main(void *arg)
{
    fx *f = arg;
    f->client(f);
    uv_async_send(&f->done);
    return NULL;
}

static fx *fx_new(void)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    net_http_opts_default(&f->opts);
    f->opts.name = "test";
    return f;
}

static void run(fx *f, client_fn fn)
{
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(net_http_create(&f->srv, &f->loop, &f->opts, handler, f), DM_OK);
    assert_int_equal(net_http_start(f->srv), DM_OK);
    f->port = net_http_port(f->srv);
    assert_true(f->port > 0);
    assert_int_equal(uv_async_init(&f->loop, &f->done, on_done), 0);
    f->done.data = f;
    f->client = fn;
    assert_int_equal(pthread_create(&f->th, NULL, client_main, f), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pthread_join(f->th, NULL);
    assert_true(f->closed);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    if (f->err[0])
        fail_msg("client: %s", f->err);
}

/* ---------- client side (client thread; no cmocka here) ---------- */

#define CL_CHECK(f, cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (!(f)->err[0])                                                                      \
                snprintf((f)->err, sizeof(f)->err, "%s:%d: %s", __FILE__, __LINE__, #cond);        \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

typedef struct {
    int fd;
    bool head_only; /* the next response answers HEAD: no body follows */
    size_t len;
    char buf[1 << 17];
} cl_t;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static cl_t *cl_open(uint16_t port)
{
    cl_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(c->fd);
        free(c);
        return NULL;
    }
    return c;
}

static void cl_close(cl_t *c)
{
    if (c) {
        close(c->fd);
        free(c);
    }
}

static bool cl_sendn(cl_t *c, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t k = send(c->fd, s, n, MSG_NOSIGNAL);
        if (k <= 0)
            return false;
        s += k;
        n -= (size_t)k;
    }
    return true;
}

static bool cl_send(cl_t *c, const char *s)
{
    return cl_sendn(c, s, strlen(s));
}

static ssize_t cl_fill(cl_t *c)
{
    if (c->len >= sizeof c->buf - 1)
        return -1;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n;
}

static const char *find(const char *h, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(h + i, needle, k) == 0)
            return h + i;
    return NULL;
}

/* Value of header `name` in the head of `resp` into val; false if absent. */
static bool resp_header(const char *resp, const char *name, char *val, size_t cap)
{
    const char *end = strstr(resp, "\r\n\r\n");
    if (!end)
        return false;
    size_t nl = strlen(name);
    const char *line = strstr(resp, "\r\n");
    while (line && line < end) {
        line += 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t n = (size_t)(e - v);
            if (n >= cap)
                n = cap - 1;
            memcpy(val, v, n);
            val[n] = '\0';
            return true;
        }
        line = strstr(line, "\r\n");
    }
    return false;
}

static const char *resp_body(const char *resp)
{
    const char *e = strstr(resp, "\r\n\r\n");
    return e ? e + 4 : "";
}

/* Read one final response (1xx skipped) into out; returns its status, -1 on EOF/error. */
static int cl_response(cl_t *c, char *out, size_t cap)
{
    for (;;) {
        const char *end;
        while (!(end = find(c->buf, c->len, "\r\n\r\n")))
            if (cl_fill(c) <= 0)
                return -1;
        size_t hlen = (size_t)(end - c->buf) + 4;
        if (c->len < 12 || memcmp(c->buf, "HTTP/1.1 ", 9) != 0)
            return -1;
        int status = atoi(c->buf + 9);
        char head[OUTCAP];
        size_t hn = hlen < sizeof head ? hlen : sizeof head - 1;
        memcpy(head, c->buf, hn);
        head[hn] = '\0';
        char v[32];
        size_t clen = 0;
        if (resp_header(head, "content-length", v, sizeof v))
            clen = (size_t)strtoul(v, NULL, 10);
        if (status >= 100 && status < 200) {
            memmove(c->buf, c->buf + hlen, c->len - hlen);
            c->len -= hlen;
            continue;
        }
        size_t total = hlen + (c->head_only ? 0 : clen);
        c->head_only = false;
        while (c->len < total)
            if (cl_fill(c) <= 0)
                return -1;
        size_t n = total < cap ? total : cap - 1;
        memcpy(out, c->buf, n);
        out[n] = '\0';
        memmove(c->buf, c->buf + total, c->len - total);
        c->len -= total;
        return status;
    }
}

/* Wait until the server closes: ms waited, or -1 on timeout / unexpected data. */
static long cl_wait_close(cl_t *c)
{
    long t0 = now_ms();
    if (c->len > 0)
        return -1;
    char b[256];
    ssize_t n = recv(c->fd, b, sizeof b, 0);
    if (n > 0)
        return -1;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -1;
    return now_ms() - t0;
}

/* One request and its response on a fresh connection, then the connection is closed. */
static int one_shot(fx *f, const char *req, char *out)
{
    cl_t *c = cl_open(f->port);
    if (!c)
        return -2;
    int st = cl_send(c, req) ? cl_response(c, out, OUTCAP) : -3;
    cl_close(c);
    return st;
}

/* ---------- scenarios ---------- */

static void cl_get_post(fx *f)
{
    cl_t *c = cl_open(f->port);
    CL_CHECK(f, c);
    CL_CHECK(f, cl_send(c, "GET /echo?x=1 HTTP/1.1\r\nHost: t\r\n\r\n"));
    f->status[0] = cl_response(c, f->out[0], OUTCAP);
    CL_CHECK(f, cl_send(c, "POST /echo/p HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                           "Content-Length: 5\r\n\r\nhello"));
    f->status[1] = cl_response(c, f->out[1], OUTCAP);
    c->head_only = true;
    CL_CHECK(f, cl_send(c, "HEAD /echo HTTP/1.1\r\nHost: t\r\n\r\n"));
    f->status[2] = cl_response(c, f->out[2], OUTCAP);
    /* the connection is still usable after HEAD (no stray body bytes) */
    CL_CHECK(f, cl_send(c, "GET /echo2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    f->status[3] = cl_response(c, f->out[3], OUTCAP);
    f->ms[3] = cl_wait_close(c);
out:
    cl_close(c);
}

static void test_get_post(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_get_post);
    char v[128];
    assert_int_equal(f->status[0], 200);
    assert_string_equal(resp_body(f->out[0]), "GET|/echo|x=1|0|");
    assert_true(resp_header(f->out[0], "Content-Type", v, sizeof v));
    assert_string_equal(v, "text/plain; charset=utf-8");
    assert_true(resp_header(f->out[0], "X-Content-Type-Options", v, sizeof v));
    assert_string_equal(v, "nosniff");
    assert_true(resp_header(f->out[0], "Cache-Control", v, sizeof v));
    assert_string_equal(v, "no-store");
    assert_true(resp_header(f->out[0], "Content-Length", v, sizeof v));
    assert_int_equal(atoi(v), (int)strlen("GET|/echo|x=1|0|"));
    assert_false(resp_header(f->out[0], "Connection", v, sizeof v));
    assert_non_null(strstr(f->out[0], "HTTP/1.1 200 OK\r\n"));
    assert_int_equal(f->status[1], 200);
    assert_string_equal(resp_body(f->out[1]), "POST|/echo/p||5|hello");
    assert_int_equal(f->status[2], 200);
    assert_string_equal(resp_body(f->out[2]), "");
    assert_true(resp_header(f->out[2], "Content-Length", v, sizeof v));
    assert_int_equal(atoi(v), (int)strlen("HEAD|/echo||0|"));
    assert_int_equal(f->status[3], 200);
    assert_true(resp_header(f->out[3], "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    assert_true(f->ms[3] >= 0);
    assert_int_equal(f->handled, 4);
    assert_int_equal(f->stats.requests, 4);
    assert_int_equal(f->stats.responses_2xx, 4);
    free(f);
}

static void cl_keepalive(fx *f)
{
    cl_t *c = cl_open(f->port);
    CL_CHECK(f, c);
    for (int i = 0; i < 5; i++) {
        char req[128];
        snprintf(req, sizeof req, "GET /k/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
        CL_CHECK(f, cl_send(c, req));
        f->status[i] = cl_response(c, f->out[i], OUTCAP);
    }
out:
    cl_close(c);
}

static void test_keepalive(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_keepalive);
    char v[64];
    for (int i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof want, "GET|/k/%d||0|", i);
        assert_int_equal(f->status[i], 200);
        assert_string_equal(resp_body(f->out[i]), want);
        assert_false(resp_header(f->out[i], "Connection", v, sizeof v));
    }
    assert_int_equal(f->stats.requests, 5);
    free(f);
}

static void cl_pipelined(fx *f)
{
    cl_t *c = cl_open(f->port);
    CL_CHECK(f, c);
    /* four requests in one write, the third answered asynchronously */
    CL_CHECK(f, cl_send(c, "GET /p/1 HTTP/1.1\r\nHost: t\r\n\r\n"
                           "POST /p/2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                           "GET /async?ms=30 HTTP/1.1\r\nHost: t\r\n\r\n"
                           "POST /p/4 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "2\r\nxy\r\n1\r\nz\r\n0\r\n\r\n"));
    for (int i = 0; i < 4; i++)
        f->status[i] = cl_response(c, f->out[i], OUTCAP);
out:
    cl_close(c);
}

static void test_pipelined(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_pipelined);
    for (int i = 0; i < 4; i++)
        assert_int_equal(f->status[i], 200);
    assert_string_equal(resp_body(f->out[0]), "GET|/p/1||0|");
    assert_string_equal(resp_body(f->out[1]), "POST|/p/2||3|abc");
    assert_string_equal(resp_body(f->out[2]), "async-done");
    assert_string_equal(resp_body(f->out[3]), "POST|/p/4||3|xyz");
    assert_int_equal(f->stats.requests, 4);
    free(f);
}

static void cl_query(fx *f)
{
    f->status[0] = one_shot(
        f, "GET /q?a=hello+world&b=%41%42%2f%c3%a9&c=&d&e=%zz&sp+ace=1&a=second HTTP/1.1\r\n\r\n",
        f->out[0]);
    f->status[1] = one_shot(f, "GET /q?x%zz=1&a=1 HTTP/1.1\r\n\r\n", f->out[1]);
    f->status[2] = one_shot(f, "GET /q?a=%00&b=%4 HTTP/1.1\r\n\r\n", f->out[2]);
    f->status[3] = one_shot(f, "GET /q HTTP/1.1\r\n\r\n", f->out[3]);
}

static void test_query(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_query);
    char want[512];
    assert_int_equal(f->status[0], 200);
    snprintf(want, sizeof want,
             "a:0:hello world;b:0:AB/\xc3\xa9;c:0:;d:0:;e:%d:;sp ace:0:1;missing:%d:;small:%d:;",
             DM_EPARSE, DM_ENOTFOUND, DM_ETOOBIG);
    assert_string_equal(resp_body(f->out[0]), want);
    /* a malformed name before the match */
    snprintf(want, sizeof want, "a:%d:;b:%d:;c:%d:;d:%d:;e:%d:;sp ace:%d:;missing:%d:;small:%d:;",
             DM_EPARSE, DM_EPARSE, DM_EPARSE, DM_EPARSE, DM_EPARSE, DM_EPARSE, DM_EPARSE,
             DM_EPARSE);
    assert_string_equal(resp_body(f->out[1]), want);
    /* %00 and a truncated escape */
    snprintf(want, sizeof want, "a:%d:;b:%d:;c:%d:;d:%d:;e:%d:;sp ace:%d:;missing:%d:;small:%d:;",
             DM_EPARSE, DM_EPARSE, DM_ENOTFOUND, DM_ENOTFOUND, DM_ENOTFOUND, DM_ENOTFOUND,
             DM_ENOTFOUND, DM_EPARSE);
    assert_string_equal(resp_body(f->out[2]), want);
    snprintf(want, sizeof want, "a:%d:;b:%d:;c:%d:;d:%d:;e:%d:;sp ace:%d:;missing:%d:;small:%d:;",
             DM_ENOTFOUND, DM_ENOTFOUND, DM_ENOTFOUND, DM_ENOTFOUND, DM_ENOTFOUND, DM_ENOTFOUND,
             DM_ENOTFOUND, DM_ENOTFOUND);
    assert_string_equal(resp_body(f->out[3]), want);
    free(f);
}

static void cl_async(fx *f)
{
    long t0 = now_ms();
    f->status[0] = one_shot(f, "GET /async?ms=150 HTTP/1.1\r\nHost: t\r\n\r\n", f->out[0]);
    f->ms[0] = now_ms() - t0;
}

static void test_async(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_async);
    assert_int_equal(f->status[0], 200);
    assert_string_equal(resp_body(f->out[0]), "async-done");
    assert_true(f->ms[0] >= 140);
    assert_int_equal(f->nrc, 1);
    assert_int_equal(f->rcs[0], DM_OK);
    free(f);
}

static void cl_errors(fx *f)
{
    f->status[0] = one_shot(f, "GET /missing HTTP/1.1\r\n\r\n", f->out[0]);
    f->status[1] = one_shot(f, "GET /bad-extra HTTP/1.1\r\n\r\n", f->out[1]);
    f->status[2] = one_shot(f, "GET /bad-ctype HTTP/1.1\r\n\r\n", f->out[2]);
    f->status[3] = one_shot(f, "GET /retry HTTP/1.1\r\n\r\n", f->out[3]);
    f->status[4] = one_shot(f, "GET /bad-extra2 HTTP/1.1\r\n\r\n", f->out[4]);
}

static void test_error_json(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_errors);
    char v[128];
    assert_int_equal(f->status[0], 404);
    assert_non_null(strstr(f->out[0], "HTTP/1.1 404 Not Found\r\n"));
    assert_true(resp_header(f->out[0], "Content-Type", v, sizeof v));
    assert_string_equal(v, "application/json; charset=utf-8");
    json_error_t e;
    json_t *j = json_loads(resp_body(f->out[0]), 0, &e);
    if (!j)
        fail_msg("error body is not JSON: %s (%s)", e.text, resp_body(f->out[0]));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "not_found");
    /* the ill-formed \xff became U+FFFD; everything else round-trips */
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                        "no \"such\" thing\\ \n\t\x01 caf\xc3\xa9 \xef\xbf\xbd!");
    json_decref(j);
    /* invalid extra headers / content type: a 500 instead, DM_EINVAL to the handler */
    assert_int_equal(f->status[1], 500);
    assert_null(strstr(f->out[1], "Injected"));
    assert_int_equal(f->status[2], 500);
    assert_null(strstr(f->out[2], "X-Evil"));
    assert_int_equal(f->status[3], 429);
    assert_true(resp_header(f->out[3], "Retry-After", v, sizeof v));
    assert_string_equal(v, "1");
    assert_int_equal(f->status[4], 500);
    assert_null(strstr(f->out[4], "Transfer-Encodingx"));
    assert_int_equal(f->nrc, 5);
    assert_int_equal(f->rcs[0], DM_OK);
    assert_int_equal(f->rcs[1], DM_EINVAL);
    assert_int_equal(f->rcs[2], DM_EINVAL);
    assert_int_equal(f->rcs[3], DM_OK);
    assert_int_equal(f->rcs[4], DM_EINVAL);
    assert_int_equal(f->stats.responses_4xx, 2);
    assert_int_equal(f->stats.responses_5xx, 3);
    free(f);
}

/* A head of exactly `total` bytes: "GET /echo HTTP/1.1\r\nX-Pad: ppp...\r\n\r\n". */
static char *head_of(size_t total)
{
    static const char pre[] = "GET /echo HTTP/1.1\r\nX-Pad: ";
    size_t fixed = strlen(pre) + 4;
    char *s = malloc(total + 1);
    if (!s || total < fixed + 1) {
        free(s);
        return NULL;
    }
    memcpy(s, pre, strlen(pre));
    memset(s + strlen(pre), 'p', total - fixed);
    memcpy(s + total - 4, "\r\n\r\n", 4);
    s[total] = '\0';
    return s;
}

static void cl_header_limits(fx *f)
{
    char *h = head_of(1024);
    CL_CHECK(f, h);
    f->status[0] = one_shot(f, h, f->out[0]);
    free(h);
    h = head_of(1025);
    CL_CHECK(f, h);
    f->status[1] = one_shot(f, h, f->out[1]);
    free(h);
    /* a 3000-byte request line, sent in small pieces */
    cl_t *c = cl_open(f->port);
    CL_CHECK(f, c);
    CL_CHECK(f, cl_send(c, "GET /"));
    for (int i = 0; i < 30; i++) {
        char chunk[101];
        memset(chunk, 'u', 100);
        chunk[100] = '\0';
        if (!cl_send(c, chunk))
            break; /* the server may already have answered and closed */
    }
    f->status[2] = cl_response(c, f->out[2], OUTCAP);
    f->ms[2] = cl_wait_close(c);
    cl_close(c);
    /* header count: 8 allowed, 9 rejected */
    char req[1024];
    size_t o = (size_t)snprintf(req, sizeof req, "GET /echo HTTP/1.1\r\n");
    for (int i = 0; i < 8; i++)
        o += (size_t)snprintf(req + o, sizeof req - o, "X-H%d: v\r\n", i);
    snprintf(req + o, sizeof req - o, "\r\n");
    f->status[3] = one_shot(f, req, f->out[3]);
    snprintf(req + o, sizeof req - o, "X-H9: v\r\n\r\n");
    f->status[4] = one_shot(f, req, f->out[4]);
out:
    return;
}

static void test_header_limits(void **state)
{
    (void)state;
    fx *f = fx_new();
    f->opts.max_header_bytes = 1024;
    f->opts.max_headers = 8;
    run(f, cl_header_limits);
    char v[64];
    assert_int_equal(f->status[0], 200);
    assert_int_equal(f->status[1], 431);
    assert_true(resp_header(f->out[1], "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    assert_non_null(strstr(resp_body(f->out[1]), "\"code\":\"ETOOBIG\""));
    assert_int_equal(f->status[2], 431);
    assert_true(f->ms[2] >= 0);
    assert_int_equal(f->status[3], 200);
    assert_int_equal(f->status[4], 431);
    assert_int_equal(f->handled, 2);
    assert_int_equal(f->stats.rejected_limits, 3);
    free(f);
}

static void cl_body_limits(fx *f)
{
    char req[4096];
    /* announced too large: rejected before any body byte is sent */
    f->status[0] = one_shot(f, "POST /echo HTTP/1.1\r\nContent-Length: 1025\r\n\r\n", f->out[0]);
    char body[1025];
    memset(body, 'b', sizeof body);
    snprintf(req, sizeof req, "POST /echo HTTP/1.1\r\nContent-Length: 1024\r\n\r\n%.*s", 1024,
             body);
    f->status[1] = one_shot(f, req, f->out[1]);
    /* chunked: 500 + 500 accepted, 600 + 600 rejected */
    snprintf(req, sizeof req,
             "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
             "1f4\r\n%.*s\r\n1f4\r\n%.*s\r\n0\r\n\r\n",
             500, body, 500, body);
    f->status[2] = one_shot(f, req, f->out[2]);
    snprintf(req, sizeof req,
             "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
             "258\r\n%.*s\r\n258\r\n%.*s\r\n0\r\n\r\n",
             600, body, 600, body);
    f->status[3] = one_shot(f, req, f->out[3]);
    /* Content-Length together with chunked is ambiguous framing */
    f->status[4] = one_shot(f,
                            "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                            f->out[4]);
}

static void test_body_limits(void **state)
{
    (void)state;
    fx *f = fx_new();
    f->opts.max_body = 1024;
    run(f, cl_body_limits);
    assert_int_equal(f->status[0], 413);
    assert_non_null(strstr(f->out[0], "Connection: close\r\n"));
    assert_int_equal(f->status[1], 200);
    assert_non_null(strstr(resp_body(f->out[1]), "POST|/echo||1024|bbbb"));
    assert_int_equal(f->status[2], 200);
    assert_non_null(strstr(resp_body(f->out[2]), "POST|/echo||1000|bbbb"));
    assert_int_equal(f->status[3], 413);
    assert_int_equal(f->status[4], 400);
    assert_int_equal(f->handled, 2);
    assert_int_equal(f->stats.rejected_limits, 2);
    free(f);
}

static void cl_bad_requests(fx *f)
{
    static const char *reqs[] = {
        "GARBAGE\r\n\r\n",
        "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx",
        "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nAuthorization: Bearer a\r\nAUTHORIZATION: Bearer b\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET /a\tb HTTP/1.1\r\n\r\n",
        "GET /\xc3\xa9 HTTP/1.1\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        cl_t *c = cl_open(f->port);
        CL_CHECK(f, c);
        if (cl_send(c, reqs[i]))
            f->status[i] = cl_response(c, f->out[i], OUTCAP);
        if (cl_wait_close(c) < 0)
            f->status[i] = -100; /* must close after a 400 */
        cl_close(c);
    }
out:
    return;
}

static void test_bad_requests(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_bad_requests);
    for (int i = 0; i < 13; i++) {
        if (f->status[i] != 400)
            fail_msg("request %d: status %d", i, f->status[i]);
        json_t *j = json_loads(resp_body(f->out[i]), 0, NULL);
        assert_non_null(j);
        json_decref(j);
    }
    assert_int_equal(f->handled, 0);
    assert_int_equal(f->stats.parse_errors, 13);
    free(f);
}

static void cl_headers(fx *f)
{
    f->status[0] = one_shot(f,
                            "GET /hdr HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nx-TEST: one\r\n"
                            "X-Test:   two  \r\nAuthorization: Bearer t\r\n\r\n",
                            f->out[0]);
    f->status[1] = one_shot(f, "GET /hdr HTTP/1.1\r\n\r\n", f->out[1]);
    /* one byte per write: names and values split across reads */
    static const char slow[] = "GET /hdr HTTP/1.1\r\nHost: hh\r\nX-Test: split value\r\n\r\n";
    cl_t *c = cl_open(f->port);
    CL_CHECK(f, c);
    for (size_t i = 0; i < sizeof slow - 1; i++) {
        CL_CHECK(f, cl_sendn(c, slow + i, 1));
        usleep(200);
    }
    f->status[2] = cl_response(c, f->out[2], OUTCAP);
    /* chunked trailers are dropped, not merged into the headers */
    CL_CHECK(f, cl_send(c, "POST /hdr HTTP/1.1\r\nX-Test: head\r\nTransfer-Encoding: chunked\r\n"
                           "\r\n1\r\na\r\n0\r\nX-Test: trailer\r\nHost: t2\r\n\r\n"));
    f->status[3] = cl_response(c, f->out[3], OUTCAP);
out:
    cl_close(c);
}

static void test_headers(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_headers);
    assert_int_equal(f->status[0], 200);
    assert_string_equal(resp_body(f->out[0]), "x-test=[two] host=[h] empty=[] auth=[Bearer t]");
    assert_int_equal(f->status[1], 200);
    assert_string_equal(resp_body(f->out[1]),
                        "x-test=[(null)] host=[(null)] empty=[(null)] auth=[(null)]");
    assert_int_equal(f->status[2], 200);
    assert_string_equal(resp_body(f->out[2]),
                        "x-test=[split value] host=[hh] empty=[(null)] auth=[(null)]");
    assert_int_equal(f->status[3], 200);
    assert_string_equal(resp_body(f->out[3]),
                        "x-test=[head] host=[(null)] empty=[(null)] auth=[(null)]");
    free(f);
}

static void cl_slow_head(fx *f)
{
    cl_t *c = cl_open(f->port);
    CL_CHECK(f, c);
    long t0 = now_ms();
    CL_CHECK(f, cl_send(c, "GET /echo HTTP/1.1\r\nHost: t\r\nX-Part"));
    f->status[0] = cl_response(c, f->out[0], OUTCAP);
    f->ms[0] = now_ms() - t0;
    f->ms[1] = cl_wait_close(c);
    cl_close(c);
    /* the body timeout */
    c = cl_open(f->port);
    CL_CHECK(f, c);
    t0 = now_ms();
    CL_CHECK(f, cl_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"));
    f->status[2] = cl_response(c, f->out[2], OUTCAP);
    f->ms[2] = now_ms() - t0;
    f->ms[3] = cl_wait_close(c);
    cl_close(c);
    /* a connection that never sends anything */
    c = cl_open(f->port);
    CL_CHECK(f, c);
    t0 = now_ms();
    f->ms[4] = cl_wait_close(c);
    f->ms[5] = now_ms() - t0;
out:
    cl_close(c);
}

static void test_slow_client(void **state)
{
    (void)state;
    fx *f = fx_new();
    f->opts.header_timeout_ms = 200;
    f->opts.body_timeout_ms = 300;
    run(f, cl_slow_head);
    assert_int_equal(f->status[0], 408);
    assert_true(f->ms[0] >= 150 && f->ms[0] < 3000);
    assert_true(f->ms[1] >= 0);
    assert_int_equal(f->status[2], 408);
    assert_true(f->ms[2] >= 250 && f->ms[2] < 3000);
    assert_true(f->ms[3] >= 0);
    assert_true(f->ms[4] >= 0); /* closed without a response */
    assert_true(f->ms[5] >= 150 && f->ms[5] < 3000);
    assert_int_equal(f->handled, 0);
    assert_int_equal(f->stats.timeouts, 3);
    free(f);
}

static void cl_idle(fx *f)
{
    cl_t *c = cl_open(f->port);
    CL_CHECK(f, c);
    CL_CHECK(f, cl_send(c, "GET /echo HTTP/1.1\r\n\r\n"));
    f->status[0] = cl_response(c, f->out[0], OUTCAP);
    long t0 = now_ms();
    f->ms[0] = cl_wait_close(c);
    f->ms[1] = now_ms() - t0;
out:
    cl_close(c);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    fx *f = fx_new();
    f->opts.idle_timeout_ms = 200;
    run(f, cl_idle);
    assert_int_equal(f->status[0], 200);
    assert_true(f->ms[0] >= 0); /* plain close, no 408 */
    assert_true(f->ms[1] >= 150 && f->ms[1] < 3000);
    assert_int_equal(f->stats.timeouts, 1);
    free(f);
}

static void cl_disconnect(fx *f)
{
    cl_t *c = cl_open(f->port);
    CL_CHECK(f, c);
    CL_CHECK(f, cl_send(c, "GET /async?ms=100 HTTP/1.1\r\n\r\n"));
    /* RST instead of FIN: the response write will fail */
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    while (atomic_load(&f->handled) < 1)
        usleep(1000);
    cl_close(c);
    c = NULL;
    while (atomic_load(&f->responded) < 1)
        usleep(1000);
    usleep(50000);
    /* the server still serves */
    f->status[0] = one_shot(f, "GET /echo HTTP/1.1\r\n\r\n", f->out[0]);
    /* a request whose server closes while the handler still holds it */
    c = cl_open(f->port);
    CL_CHECK(f, c);
    CL_CHECK(f, cl_send(c, "GET /async?ms=200 HTTP/1.1\r\n\r\n"));
    while (atomic_load(&f->handled) < 3)
        usleep(1000);
out:
    cl_close(c);
}

static void test_disconnect(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_disconnect);
    assert_int_equal(f->status[0], 200);
    assert_int_equal(f->handled, 3);
    assert_int_equal(f->responded, 2); /* the last one answered after the server closed */
    assert_int_equal(f->nrc, 3);
    assert_int_equal(f->rcs[0], DM_OK);
    assert_int_equal(f->rcs[2], DM_OK);
    free(f);
}

static void cl_max_conns(fx *f)
{
    cl_t *a = cl_open(f->port), *b = cl_open(f->port), *c = NULL;
    CL_CHECK(f, a && b);
    CL_CHECK(f, cl_send(a, "GET /a HTTP/1.1\r\n\r\n"));
    f->status[0] = cl_response(a, f->out[0], OUTCAP);
    CL_CHECK(f, cl_send(b, "GET /b HTTP/1.1\r\n\r\n"));
    f->status[1] = cl_response(b, f->out[1], OUTCAP);
    c = cl_open(f->port);
    CL_CHECK(f, c);
    cl_send(c, "GET /c HTTP/1.1\r\n\r\n");
    f->ms[2] = cl_wait_close(c);
    cl_close(c);
    c = NULL;
    CL_CHECK(f, cl_send(a, "GET /a2 HTTP/1.1\r\n\r\n"));
    f->status[3] = cl_response(a, f->out[3], OUTCAP);
    cl_close(a);
    a = NULL;
    /* a slot frees once the server has seen the close */
    for (int i = 0; i < 100 && f->status[4] != 200; i++) {
        f->status[4] = one_shot(f, "GET /d HTTP/1.1\r\n\r\n", f->out[4]);
        if (f->status[4] != 200)
            usleep(20000);
    }
out:
    cl_close(a);
    cl_close(b);
    cl_close(c);
}

static void test_max_connections(void **state)
{
    (void)state;
    fx *f = fx_new();
    f->opts.max_connections = 2;
    run(f, cl_max_conns);
    assert_int_equal(f->status[0], 200);
    assert_int_equal(f->status[1], 200);
    assert_true(f->ms[2] >= 0);
    assert_int_equal(f->status[3], 200);
    assert_int_equal(f->status[4], 200);
    assert_int_equal(f->handled, 4);
    assert_true(f->stats.rejected_limits >= 1);
    free(f);
}

static void cl_http10(fx *f)
{
    cl_t *c = cl_open(f->port);
    CL_CHECK(f, c);
    CL_CHECK(f, cl_send(c, "GET /old HTTP/1.0\r\n\r\n"));
    f->status[0] = cl_response(c, f->out[0], OUTCAP);
    f->ms[0] = cl_wait_close(c);
    cl_close(c);
    c = cl_open(f->port);
    CL_CHECK(f, c);
    CL_CHECK(f, cl_send(c, "GET /ka1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    f->status[1] = cl_response(c, f->out[1], OUTCAP);
    CL_CHECK(f, cl_send(c, "GET /ka2 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    f->status[2] = cl_response(c, f->out[2], OUTCAP);
    CL_CHECK(f, cl_send(c, "GET /ka3 HTTP/1.0\r\n\r\n"));
    f->status[3] = cl_response(c, f->out[3], OUTCAP);
    f->ms[3] = cl_wait_close(c);
out:
    cl_close(c);
}

static void test_http10(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_http10);
    char v[64];
    assert_int_equal(f->status[0], 200);
    assert_true(resp_header(f->out[0], "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    assert_true(f->ms[0] >= 0);
    assert_int_equal(f->status[1], 200);
    assert_true(resp_header(f->out[1], "Connection", v, sizeof v));
    assert_string_equal(v, "keep-alive");
    assert_int_equal(f->status[2], 200);
    assert_string_equal(resp_body(f->out[2]), "GET|/ka2||0|");
    assert_int_equal(f->status[3], 200);
    assert_true(resp_header(f->out[3], "Connection", v, sizeof v));
    assert_string_equal(v, "close");
    assert_true(f->ms[3] >= 0);
    free(f);
}

static void cl_expect(fx *f)
{
    cl_t *c = cl_open(f->port);
    CL_CHECK(f, c);
    CL_CHECK(f,
             cl_send(c, "POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
    /* the interim response arrives before any body byte is sent */
    while (!find(c->buf, c->len, "\r\n\r\n"))
        CL_CHECK(f, cl_fill(c) > 0);
    f->status[0] = strncmp(c->buf, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0 ? 100 : -1;
    CL_CHECK(f, cl_send(c, "body"));
    f->status[1] = cl_response(c, f->out[1], OUTCAP);
out:
    cl_close(c);
}

static void test_expect_continue(void **state)
{
    (void)state;
    fx *f = fx_new();
    run(f, cl_expect);
    assert_int_equal(f->status[0], 100);
    assert_int_equal(f->status[1], 200);
    assert_string_equal(resp_body(f->out[1]), "POST|/e||4|body");
    free(f);
}

static void closed_unstarted(void *arg)
{
    *(int *)arg += 1;
}

static void test_close_unstarted(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    net_http_opts o;
    net_http_opts_default(&o);
    net_http_server_t *s = NULL;
    assert_int_equal(net_http_create(&s, &loop, &o, handler, NULL), DM_OK);
    net_http_stats st;
    net_http_get_stats(s, &st);
    assert_int_equal(st.connections, 0);
    int called = 0;
    net_http_close(s, closed_unstarted, &called);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(called, 1);
    /* a bad listen address */
    snprintf(o.listen.host, sizeof o.listen.host, "not-an-ip");
    assert_int_equal(net_http_create(&s, &loop, &o, handler, NULL), DM_OK);
    assert_int_equal(net_http_start(s), DM_ECONN);
    net_http_close(s, closed_unstarted, &called);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(called, 2);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int test_net_http(void)
{
    signal(SIGPIPE, SIG_IGN); /* libuv leaves it to the process */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_post),        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_pipelined),       cmocka_unit_test(test_query),
        cmocka_unit_test(test_async),           cmocka_unit_test(test_error_json),
        cmocka_unit_test(test_header_limits),   cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_bad_requests),    cmocka_unit_test(test_headers),
        cmocka_unit_test(test_slow_client),     cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_disconnect),      cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_http10),          cmocka_unit_test(test_expect_continue),
        cmocka_unit_test(test_close_unstarted),
    };
    return cmocka_run_group_tests_name("net_http", tests, NULL, NULL);
}
