/*
 * HTTP/1.1 server on libuv and Debian's libhttp-parser 2.9 (contract in net_http.h).
 *
 * Per connection: one uv stream (TCP, or a pipe for the fuzz harness), one uv timer, one
 * http_parser, and at most one request in flight. The parser is paused in
 * on_message_complete, reading stops while the handler runs, and bytes already received
 * behind the request (pipelining) are kept in `pending` and parsed once the response has
 * been written. The state machine:
 *
 *   IDLE --first byte--> HEAD --headers--> BODY --complete--> HANDLING --respond--> WRITING
 *     ^                                                                               |
 *     +---------------------- written, keep-alive ---------------------------------- -+
 *                             written, close  --> LINGER (FIN sent, input discarded) --> closed
 *
 * Timer per state: IDLE idle_timeout_ms (header_timeout_ms on a fresh connection, so a client
 * that connects must start promptly), HEAD header_timeout_ms from the first byte, BODY
 * body_timeout_ms from the end of the head, HANDLING none (the handler owns the time),
 * WRITING idle_timeout_ms (a client that does not read its response), LINGER LINGER_MS.
 * A timeout in HEAD/BODY answers 408; otherwise the connection just closes.
 *
 * Limits are checked while parsing, before anything grows: the parser is fed at most the
 * remaining head allowance while a head is in progress, so a head that is not complete
 * within max_header_bytes (request line, headers, CRLFs, and blank lines before it) is a 431
 * however the bytes are split; a header count above max_headers is a 431; a Content-Length
 * above max_body, or more body bytes than max_body (chunked bodies are supported and
 * counted the same way, after de-chunking), is a 413. Any such error closes the connection
 * after the response.
 *
 * Lifetimes: a connection is freed in the close callback of the last of its two handles. A
 * request handed to the handler is owned by the handler until net_http_respond*; if the
 * connection goes first it detaches the request (req->c = NULL) and respond then just
 * frees it. The server is freed once the listener, every connection and every rejected
 * socket are closed.
 *
 * SIGPIPE: libuv does not ignore it; the process (dmnode main, tests) must, or a write to a
 * reset connection kills it.
 */
#include "net_http.h"
#include "net_http_internal.h"

#include "dm_buf.h"
#include "dm_err.h"
#include "dm_log.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define READ_BUF_SIZE 16384
#define LINGER_MS 2000
#define LISTEN_BACKLOG 128

typedef enum {
    ST_IDLE,     /* between requests, nothing received */
    ST_HEAD,     /* receiving request line and headers */
    ST_BODY,     /* receiving the body */
    ST_HANDLING, /* request with the handler; not reading */
    ST_WRITING,  /* response queued */
    ST_LINGER,   /* final response sent, FIN sent, discarding input until EOF */
} conn_state;

enum { CB_NONE, CB_FIELD, CB_VALUE };

typedef struct conn conn;

typedef struct {
    size_t name, value; /* offsets into hbuf (both NUL-terminated) */
} hdr_off;

struct net_http_req {
    conn *c;          /* NULL once the connection is gone */
    bool dispatched;  /* handed to the handler: it owns the request now */
    bool keep_alive;  /* the client allows another request after this one */
    bool http10;      /* HTTP/1.0 client: keep-alive must be announced */
    bool head_method; /* HEAD: send the head only */
    bool expect_continue;
    const char *method;
    dm_buf url;
    char *path, *query; /* split copy of url */
    dm_buf hbuf;        /* name\0value\0 ... */
    hdr_off *hdrs;
    size_t nhdrs, hdrs_cap;
    int last_cb;
    dm_buf body;
    size_t trailer_bytes; /* chunked trailers, ignored but counted */
    char remote_ip[64];
    uint64_t started_ns; /* uv_hrtime() when handed to the handler */
};

struct conn {
    net_http_server_t *srv;
    conn *prev, *next;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } io;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    int open_handles; /* io + timer; freed when both closed */
    bool closing, reading;
    conn_state state;
    http_parser parser;
    net_http_req_t *req; /* being parsed, or with the handler */
    size_t head_bytes;   /* bytes fed to the parser since the last head completed */
    size_t nheaders;
    int fail_status; /* set by a parser callback that rejects the request */
    const char *fail_code, *fail_msg;
    dm_buf pending; /* received bytes not yet parsed (behind a request in flight) */
    size_t pending_off;
    char remote_ip[64];
    char rbuf[READ_BUF_SIZE];
};

typedef struct {
    uv_write_t w;
    conn *c;
    uint8_t *data; /* owned (NULL for static data) */
    bool response; /* false: an interim 100 Continue */
    bool close_after;
} wctx;

struct net_http_server {
    uv_loop_t *loop;
    net_http_opts o;
    char name[32];
    net_http_handler handler;
    void *arg;
    uv_tcp_t listener;
    bool started, closing;
    uint16_t port;
    conn *conns;
    size_t nconns;
    size_t handles; /* listener + rejected sockets being closed + connections */
    net_http_stats st;
    void (*close_cb)(void *arg);
    void *close_arg;
};

static void conn_close(conn *c);
static void conn_fail(conn *c, int status, const char *code, const char *msg);
static void conn_resume(conn *c);

/* ---------- small text helpers ---------- */

static int lower(int ch)
{
    return (ch >= 'A' && ch <= 'Z') ? ch + ('a' - 'A') : ch;
}

/* ASCII case-insensitive compare of s[0..n) with the NUL-terminated t. */
static bool name_eq(const char *s, size_t n, const char *t)
{
    for (size_t i = 0; i < n; i++, t++)
        if (*t == '\0' || lower((unsigned char)s[i]) != lower((unsigned char)*t))
            return false;
    return *t == '\0';
}

/* Does s[0..n) start with the NUL-terminated t (ASCII case-insensitive)? */
static bool name_prefix(const char *s, size_t n, const char *t)
{
    size_t k = strlen(t);
    return n >= k && name_eq(s, k, t);
}

static bool is_tchar(int ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Field-value octets: HT, visible ASCII, SP, obs-text. No CR, LF, NUL or other controls. */
static bool is_value_char(int ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        break;
    }
    const char *s = http_status_str((enum http_status)status);
    return (s && s[0] != '<') ? s : "Unknown";
}

/* Length of the well-formed UTF-8 sequence at s (NUL-terminated), 0 if ill-formed. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned c1 = s[1];
        if ((c1 & 0xc0) != 0x80 || (c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f))
            return 0;
        return (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned c1 = s[1];
        if ((c1 & 0xc0) != 0x80 || (c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 > 0x8f))
            return 0;
        if ((s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

/* Append s as the contents of a JSON string: quotes, backslashes and controls escaped;
 * ill-formed UTF-8 becomes U+FFFD so the document always parses. */
static int json_escape(dm_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    int rc = DM_OK;
    while (*p && rc == DM_OK) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            rc = dm_buf_append(b, e, 2);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = dm_buf_append(b, e, 6);
            p++;
        } else {
            size_t n = utf8_seq(p);
            if (n == 0) {
                rc = dm_buf_puts(b, "\\ufffd");
                p++;
            } else {
                rc = dm_buf_append(b, p, n);
                p += n;
            }
        }
    }
    return rc;
}

/* ---------- requests ---------- */

static net_http_req_t *req_new(conn *c)
{
    net_http_req_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->c = c;
    r->method = "";
    memcpy(r->remote_ip, c->remote_ip, sizeof r->remote_ip);
    return r;
}

static void req_free(net_http_req_t *r)
{
    if (!r)
        return;
    dm_buf_free(&r->url);
    free(r->path);
    dm_buf_free_secure(&r->hbuf); /* headers carry credentials (Authorization, X-API-Key) */
    free(r->hdrs);
    /* bodies may carry credentials or payloads: wipe them */
    dm_buf_free_secure(&r->body);
    free(r);
}

/* ---------- parser callbacks (c = parser->data; -1 stops the parser) ---------- */

static int reject(conn *c, int status, const char *code, const char *msg)
{
    c->fail_status = status;
    c->fail_code = code;
    c->fail_msg = msg;
    return -1;
}

static int on_message_begin(http_parser *p)
{
    conn *c = p->data;
    if (!c->req && !(c->req = req_new(c)))
        return reject(c, 503, "ENOMEM", "out of memory");
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    conn *c = p->data;
    if (dm_buf_append(&c->req->url, at, n) != DM_OK)
        return reject(c, 503, "ENOMEM", "out of memory");
    return 0;
}

/* Chunked trailers come through the header callbacks after the body: they are dropped,
 * but their bytes count against max_body so that they stay bounded. */
static int trailer(conn *c, size_t n)
{
    net_http_req_t *r = c->req;
    r->trailer_bytes += n;
    if (r->trailer_bytes > c->srv->o.max_body - r->body.len)
        return reject(c, 413, "ETOOBIG", "request body too large");
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    conn *c = p->data;
    net_http_req_t *r = c->req;
    if (c->state == ST_BODY)
        return trailer(c, n);
    if (r->last_cb != CB_FIELD) {
        /* a new header starts; terminate the previous value */
        if (r->last_cb == CB_VALUE && dm_buf_putc(&r->hbuf, 0) != DM_OK)
            return reject(c, 503, "ENOMEM", "out of memory");
        if (++c->nheaders > c->srv->o.max_headers)
            return reject(c, 431, "ETOOBIG", "too many header fields");
        if (r->nhdrs == r->hdrs_cap) {
            size_t cap = r->hdrs_cap ? r->hdrs_cap * 2 : 16;
            hdr_off *h = realloc(r->hdrs, cap * sizeof *h);
            if (!h)
                return reject(c, 503, "ENOMEM", "out of memory");
            r->hdrs = h;
            r->hdrs_cap = cap;
        }
        r->hdrs[r->nhdrs].name = r->hbuf.len;
        r->hdrs[r->nhdrs].value = SIZE_MAX;
        r->nhdrs++;
        r->last_cb = CB_FIELD;
    }
    /* the Debian build of the parser is lenient about names: insist on RFC 9110 tokens */
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)at[i]))
            return reject(c, 400, "EPARSE", "invalid character in a header name");
    if (dm_buf_append(&r->hbuf, at, n) != DM_OK)
        return reject(c, 503, "ENOMEM", "out of memory");
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    conn *c = p->data;
    net_http_req_t *r = c->req;
    if (c->state == ST_BODY)
        return trailer(c, n);
    if (r->last_cb == CB_NONE)
        return reject(c, 400, "EPARSE", "malformed header");
    if (r->last_cb == CB_FIELD) {
        if (dm_buf_putc(&r->hbuf, 0) != DM_OK)
            return reject(c, 503, "ENOMEM", "out of memory");
        r->hdrs[r->nhdrs - 1].value = r->hbuf.len;
        r->last_cb = CB_VALUE;
    }
    for (size_t i = 0; i < n; i++)
        if (!is_value_char((unsigned char)at[i]))
            return reject(c, 400, "EPARSE", "invalid character in a header value");
    if (dm_buf_append(&r->hbuf, at, n) != DM_OK)
        return reject(c, 503, "ENOMEM", "out of memory");
    return 0;
}

static size_t count_header(const net_http_req_t *r, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < r->nhdrs; i++) {
        const char *h = (const char *)r->hbuf.data + r->hdrs[i].name;
        if (name_eq(h, strlen(h), name))
            k++;
    }
    return k;
}

/* Origin-form only ("/path?query"); split into path and query, dropping any fragment. */
static int split_url(net_http_req_t *r)
{
    size_t n = r->url.len;
    const char *u = (const char *)r->url.data;
    if (n == 0 || u[0] != '/')
        return DM_EINVAL;
    /* the lenient parser build lets through tabs, controls and raw 8-bit bytes */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || (unsigned char)u[i] >= 0x7f)
            return DM_EINVAL;
    const char *hash = memchr(u, '#', n);
    if (hash)
        n = (size_t)(hash - u);
    const char *q = memchr(u, '?', n);
    size_t plen = q ? (size_t)(q - u) : n;
    size_t qlen = q ? n - plen - 1 : 0;
    char *pq = malloc(plen + qlen + 2);
    if (!pq)
        return DM_ENOMEM;
    memcpy(pq, u, plen);
    pq[plen] = '\0';
    if (qlen)
        memcpy(pq + plen + 1, q + 1, qlen);
    pq[plen + 1 + qlen] = '\0';
    r->path = pq;
    r->query = pq + plen + 1;
    return DM_OK;
}

static int on_headers_complete(http_parser *p)
{
    conn *c = p->data;
    net_http_req_t *r = c->req;
    net_http_server_t *s = c->srv;
    if (r->last_cb == CB_FIELD) /* a name without a value: the parser would not allow it */
        return reject(c, 400, "EPARSE", "malformed header");
    if (r->last_cb == CB_VALUE && dm_buf_putc(&r->hbuf, 0) != DM_OK)
        return reject(c, 503, "ENOMEM", "out of memory");
    /* Trim trailing whitespace of each value (the parser drops the leading one). */
    for (size_t i = 0; i < r->nhdrs; i++) {
        if (r->hdrs[i].value == SIZE_MAX)
            return reject(c, 400, "EPARSE", "malformed header");
        char *v = (char *)r->hbuf.data + r->hdrs[i].value;
        size_t len = strlen(v);
        while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
            v[--len] = '\0';
    }
    if (count_header(r, "content-length") > 1 || count_header(r, "host") > 1 ||
        count_header(r, "authorization") > 1)
        return reject(c, 400, "EPARSE", "duplicate Content-Length, Host or Authorization");
    if (p->method == HTTP_CONNECT)
        return reject(c, 400, "EPARSE", "CONNECT is not supported");
    int rc = split_url(r);
    if (rc == DM_ENOMEM)
        return reject(c, 503, "ENOMEM", "out of memory");
    if (rc != DM_OK)
        return reject(c, 400, "EPARSE", "the request target must be an absolute path");
    r->method = http_method_str((enum http_method)p->method);
    r->head_method = p->method == HTTP_HEAD;
    r->http10 = p->http_major == 1 && p->http_minor == 0;
    if (p->http_major != 1)
        return reject(c, 400, "EPARSE", "unsupported HTTP version");
    /* An Upgrade is never honoured; the connection closes after the response instead of
     * letting the parser treat what follows as another protocol. */
    r->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > s->o.max_body)
        return reject(c, 413, "ETOOBIG", "request body too large");
    const char *expect = net_http_req_header(r, "expect");
    r->expect_continue = expect && !r->http10 && name_eq(expect, strlen(expect), "100-continue");
    c->state = ST_BODY;
    c->head_bytes = 0;
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    conn *c = p->data;
    net_http_req_t *r = c->req;
    if (n > c->srv->o.max_body - r->body.len)
        return reject(c, 413, "ETOOBIG", "request body too large");
    if (dm_buf_append(&r->body, at, n) != DM_OK)
        return reject(c, 503, "ENOMEM", "out of memory");
    return 0;
}

static int on_message_complete(http_parser *p)
{
    conn *c = p->data;
    c->state = ST_HANDLING;
    /* Stop here: the rest of the input waits until the response is written. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---------- connection I/O ---------- */

static void on_timer(uv_timer_t *t);

static void timer_set(conn *c, uint32_t ms)
{
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = CONTAINER_OF(h, conn, io.handle);
    buf->base = c->rbuf;
    buf->len = sizeof c->rbuf;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void read_start(conn *c)
{
    if (c->reading || c->closing)
        return;
    if (uv_read_start(&c->io.stream, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    c->reading = true;
}

static void read_stop(conn *c)
{
    if (!c->reading)
        return;
    uv_read_stop(&c->io.stream);
    c->reading = false;
}

static void count_status(net_http_server_t *s, int status)
{
    if (status >= 200 && status < 300)
        s->st.responses_2xx++;
    else if (status >= 400 && status < 500)
        s->st.responses_4xx++;
    else if (status >= 500)
        s->st.responses_5xx++;
}

static void on_write(uv_write_t *w, int status)
{
    wctx *wc = CONTAINER_OF(w, wctx, w);
    conn *c = wc->c;
    bool response = wc->response, close_after = wc->close_after;
    free(wc->data);
    free(wc);
    if (c->closing) /* cancelled by uv_close; the connection is on its way out */
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (!response)
        return;
    if (close_after) {
        /* Half-close and drain what the client still sends, so that closing with
         * unread input does not turn into a RST that destroys the response. */
        c->state = ST_LINGER;
        timer_set(c, LINGER_MS);
        if (uv_shutdown(&c->shutdown, &c->io.stream, NULL) != 0) {
            conn_close(c);
            return;
        }
        read_start(c);
        return;
    }
    conn_resume(c);
}

/* Queue `data` (taken, even on failure), or the static `sdata` when data is NULL. */
static int conn_write(conn *c, uint8_t *data, size_t n, bool response, bool close_after,
                      const char *sdata, size_t sn)
{
    wctx *wc = calloc(1, sizeof *wc);
    if (!wc) {
        free(data);
        conn_close(c);
        return DM_ENOMEM;
    }
    wc->c = c;
    wc->data = data;
    wc->response = response;
    wc->close_after = close_after;
    uv_buf_t b =
        data ? uv_buf_init((char *)data, (unsigned)n) : uv_buf_init((char *)sdata, (unsigned)sn);
    if (uv_write(&wc->w, &c->io.stream, &b, 1, on_write) != 0) {
        free(wc->data);
        free(wc);
        conn_close(c);
        return DM_ECLOSED;
    }
    return DM_OK;
}

static void http_date(char out[40])
{
    time_t now = time(NULL);
    struct tm tm;
    if (!gmtime_r(&now, &tm) || strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
        out[0] = '\0';
}

/* Status line and the fixed headers. */
static int build_head(dm_buf *b, int status, const char *ctype, size_t n, bool has_length,
                      bool keep_alive, bool http10, const char *extra)
{
    char date[40];
    http_date(date);
    int rc = dm_buf_printf(b, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    if (!rc && date[0])
        rc = dm_buf_printf(b, "Date: %s\r\n", date);
    if (!rc && ctype)
        rc = dm_buf_printf(b, "Content-Type: %s\r\n", ctype);
    if (!rc && has_length)
        rc = dm_buf_printf(b, "Content-Length: %zu\r\n", n);
    if (!rc)
        rc = dm_buf_puts(b, "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n");
    if (!rc && !keep_alive)
        rc = dm_buf_puts(b, "Connection: close\r\n");
    else if (!rc && http10)
        rc = dm_buf_puts(b, "Connection: keep-alive\r\n");
    if (!rc && extra)
        rc = dm_buf_puts(b, extra);
    if (!rc)
        rc = dm_buf_puts(b, "\r\n");
    return rc;
}

static int error_json(dm_buf *b, const char *code, const char *message)
{
    int rc = dm_buf_puts(b, "{\"error\":{\"code\":\"");
    if (!rc)
        rc = json_escape(b, code ? code : "");
    if (!rc)
        rc = dm_buf_puts(b, "\",\"message\":\"");
    if (!rc)
        rc = json_escape(b, message ? message : "");
    if (!rc)
        rc = dm_buf_puts(b, "\"}}");
    return rc;
}

/* A response the server makes itself (parse errors, limits, timeouts); always closes. */
static void conn_fail(conn *c, int status, const char *code, const char *msg)
{
    net_http_server_t *s = c->srv;
    if (c->closing)
        return;
    read_stop(c);
    if (c->req) {
        /* never dispatched here: failures happen only while a request is being read */
        req_free(c->req);
        c->req = NULL;
    }
    c->state = ST_WRITING;
    timer_set(c, s->o.idle_timeout_ms);
    dm_log(DM_LOG_DEBUG, "http", "%s: %s: %d %s", s->name, c->remote_ip, status, msg);
    dm_buf body = DM_BUF_INIT, out = DM_BUF_INIT;
    int rc = error_json(&body, code, msg);
    if (!rc)
        rc = build_head(&out, status, "application/json; charset=utf-8", body.len, true, false,
                        false, NULL);
    if (!rc)
        rc = dm_buf_append(&out, body.data, body.len);
    dm_buf_free(&body);
    if (rc) {
        dm_buf_free(&out);
        conn_close(c);
        return;
    }
    count_status(s, status);
    size_t n;
    uint8_t *data = dm_buf_steal(&out, &n);
    conn_write(c, data, n, true, true, NULL, 0);
}

static void conn_dispatch(conn *c)
{
    net_http_server_t *s = c->srv;
    net_http_req_t *r = c->req;
    read_stop(c);
    uv_timer_stop(&c->timer);
    if (s->closing || c->closing)
        return;
    r->dispatched = true;
    r->started_ns = uv_hrtime();
    s->st.requests++;
    s->handler(r, s->arg);
}

/*
 * Feed data to the parser. Returns the bytes consumed: all of them unless a request was
 * completed (state HANDLING, the parser paused) or the connection failed.
 */
static size_t conn_parse(conn *c, const char *data, size_t len)
{
    net_http_server_t *s = c->srv;
    size_t off = 0;
    while (off < len) {
        if (c->state == ST_IDLE) {
            c->state = ST_HEAD;
            timer_set(c, s->o.header_timeout_ms);
        }
        bool in_head = c->state == ST_HEAD;
        size_t chunk = len - off;
        if (in_head) {
            size_t allow = s->o.max_header_bytes - c->head_bytes;
            if (allow == 0) {
                s->st.rejected_limits++;
                conn_fail(c, 431, "ETOOBIG", "request head too large");
                return off;
            }
            if (chunk > allow)
                chunk = allow;
        }
        size_t n = http_parser_execute(&c->parser, &parser_settings, data + off, chunk);
        off += n;
        if (in_head && c->state == ST_HEAD)
            c->head_bytes += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (c->fail_status) {
            int st = c->fail_status;
            if (st == 413 || st == 431)
                s->st.rejected_limits++;
            else if (st == 400)
                s->st.parse_errors++;
            c->fail_status = 0;
            conn_fail(c, st, c->fail_code, c->fail_msg);
            return off;
        }
        if (e == HPE_PAUSED)
            return off; /* request complete */
        if (e == HPE_HEADER_OVERFLOW) {
            s->st.rejected_limits++;
            conn_fail(c, 431, "ETOOBIG", "request head too large");
            return off;
        }
        if (e != HPE_OK || n != chunk) {
            s->st.parse_errors++;
            conn_fail(c, 400, "EPARSE", http_errno_description(e));
            return off;
        }
        if (c->state == ST_BODY && in_head) {
            timer_set(c, s->o.body_timeout_ms);
            if (c->req->expect_continue) {
                /* the client waits for this before sending the body it announced */
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                if (conn_write(c, NULL, 0, false, false, cont, sizeof cont - 1) != DM_OK)
                    return off;
            }
        }
    }
    return off;
}

/* Bytes straight from the socket (pending is empty whenever we read). */
static void conn_consume(conn *c, const char *data, size_t len)
{
    size_t n = conn_parse(c, data, len);
    if (c->state != ST_HANDLING || c->closing)
        return;
    if (n < len && dm_buf_append(&c->pending, data + n, len - n) != DM_OK) {
        conn_close(c);
        return;
    }
    conn_dispatch(c);
}

/* The response went out and the connection stays: next request from pending, or read. */
static void conn_resume(conn *c)
{
    net_http_server_t *s = c->srv;
    c->state = ST_IDLE;
    c->head_bytes = 0;
    c->nheaders = 0;
    http_parser_pause(&c->parser, 0);
    timer_set(c, s->o.idle_timeout_ms);
    if (c->pending_off < c->pending.len) {
        size_t n = conn_parse(c, (const char *)c->pending.data + c->pending_off,
                              c->pending.len - c->pending_off);
        c->pending_off += n;
        if (c->pending_off == c->pending.len) {
            dm_buf_reset(&c->pending);
            c->pending_off = 0;
        }
        if (c->closing)
            return;
        if (c->state == ST_HANDLING) {
            conn_dispatch(c);
            return;
        }
        if (c->state != ST_IDLE && c->state != ST_HEAD && c->state != ST_BODY)
            return; /* failed */
    }
    read_start(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = CONTAINER_OF(st, conn, io.stream);
    if (c->closing)
        return;
    if (nread < 0) {
        /* EOF or error; a half-sent request is simply dropped */
        conn_close(c);
        return;
    }
    if (nread == 0 || c->state == ST_LINGER)
        return;
    conn_consume(c, buf->base, (size_t)nread);
}

static void on_timer(uv_timer_t *t)
{
    conn *c = CONTAINER_OF(t, conn, timer);
    net_http_server_t *s = c->srv;
    if (c->closing)
        return;
    switch (c->state) {
    case ST_HEAD:
    case ST_BODY:
        s->st.timeouts++;
        conn_fail(c, 408, "ETIMEDOUT", "request not received in time");
        break;
    case ST_IDLE:
    case ST_WRITING:
        s->st.timeouts++;
        conn_close(c);
        break;
    case ST_LINGER:
        conn_close(c);
        break;
    case ST_HANDLING:
        break;
    }
}

static void server_maybe_free(net_http_server_t *s)
{
    if (!s->closing || s->handles > 0)
        return;
    void (*cb)(void *) = s->close_cb;
    void *arg = s->close_arg;
    free(s);
    if (cb)
        cb(arg);
}

static void conn_free(conn *c)
{
    net_http_server_t *s = c->srv;
    if (c->req) {
        if (c->req->dispatched)
            c->req->c = NULL; /* the handler still owns it; respond will free it */
        else
            req_free(c->req);
        c->req = NULL;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    dm_buf_free_secure(&c->pending);
    free(c);
    s->handles--;
    server_maybe_free(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->open_handles == 0)
        conn_free(c);
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    uv_close(&c->io.handle, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

/* Allocate a connection whose stream the caller initialises (io.handle.data = c after). */
static conn *conn_new(net_http_server_t *s)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = s;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->state = ST_IDLE;
    uv_timer_init(s->loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    s->handles++;
    return c;
}

static void conn_start(conn *c)
{
    /* a fresh connection gets the head timeout: connecting and sending nothing is not
     * a keep-alive pause */
    timer_set(c, c->srv->o.header_timeout_ms);
    read_start(c);
}

static void peer_ip(uv_tcp_t *t, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(out, cap, "unknown");
    if (uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)&ss, out, cap);
    else if (ss.ss_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)&ss, out, cap);
}

static void on_reject_closed(uv_handle_t *h)
{
    net_http_server_t *s = h->data;
    free(h);
    s->handles--;
    server_maybe_free(s);
}

/* Accept and close at once: no handler, no parsing, no buffer. */
static void reject_connection(net_http_server_t *s, uv_stream_t *l)
{
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t)
        return; /* libuv retries the accept later */
    uv_tcp_init(s->loop, t);
    t->data = s;
    s->handles++;
    uv_accept(l, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_reject_closed);
    s->st.rejected_limits++;
}

static void on_connection(uv_stream_t *l, int status)
{
    net_http_server_t *s = CONTAINER_OF(l, net_http_server_t, listener);
    if (status < 0) {
        dm_log(DM_LOG_WARNING, "http", "%s: accept: %s", s->name, uv_strerror(status));
        return;
    }
    if (s->closing)
        return;
    if (s->nconns >= s->o.max_connections) {
        dm_log(DM_LOG_DEBUG, "http", "%s: connection limit reached", s->name);
        reject_connection(s, l);
        return;
    }
    conn *c = conn_new(s);
    if (!c) {
        reject_connection(s, l);
        return;
    }
    uv_tcp_init(s->loop, &c->io.tcp);
    c->io.handle.data = c;
    if (uv_accept(l, &c->io.stream) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->io.tcp, 1);
    peer_ip(&c->io.tcp, c->remote_ip, sizeof c->remote_ip);
    conn_start(c);
}

/* ---------- public API ---------- */

void net_http_opts_default(net_http_opts *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->listen.host, sizeof o->listen.host, "127.0.0.1");
    o->listen.port = 0;
    o->max_header_bytes = 16 * 1024;
    o->max_headers = 64;
    o->max_body = 1024 * 1024;
    o->max_connections = 256;
    o->header_timeout_ms = 10000;
    o->body_timeout_ms = 30000;
    o->idle_timeout_ms = 60000;
    o->name = "http";
}

/**
 * Zero limits and timeouts in `o` take the defaults. `o` is copied (name too). On failure
 * *out is untouched. Loop thread. DM_EINVAL, DM_ENOMEM.
 */
int net_http_create(net_http_server_t **out, uv_loop_t *loop, const net_http_opts *o,
                    net_http_handler handler, void *arg)
{
    if (!out || !loop || !o || !handler)
        return DM_EINVAL;
    net_http_opts d;
    net_http_opts_default(&d);
    net_http_server_t *s = calloc(1, sizeof *s);
    if (!s)
        return DM_ENOMEM;
    s->loop = loop;
    s->o = *o;
    if (!s->o.max_header_bytes)
        s->o.max_header_bytes = d.max_header_bytes;
    if (!s->o.max_headers)
        s->o.max_headers = d.max_headers;
    if (!s->o.max_body)
        s->o.max_body = d.max_body;
    if (!s->o.max_connections)
        s->o.max_connections = d.max_connections;
    if (!s->o.header_timeout_ms)
        s->o.header_timeout_ms = d.header_timeout_ms;
    if (!s->o.body_timeout_ms)
        s->o.body_timeout_ms = d.body_timeout_ms;
    if (!s->o.idle_timeout_ms)
        s->o.idle_timeout_ms = d.idle_timeout_ms;
    snprintf(s->name, sizeof s->name, "%s", o->name ? o->name : "http");
    s->o.name = s->name;
    s->handler = handler;
    s->arg = arg;
    uv_tcp_init(loop, &s->listener);
    s->handles = 1;
    *out = s;
    return DM_OK;
}

int net_http_start(net_http_server_t *s)
{
    if (!s || s->closing || s->started)
        return DM_EINVAL;
    const char *host = s->o.listen.host;
    if (host[0] == '\0')
        host = "0.0.0.0";
    else if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(host, s->o.listen.port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, s->o.listen.port, (struct sockaddr_in6 *)&ss) != 0) {
        dm_log(DM_LOG_ERROR, "http", "%s: listen address %s is not a numeric IP", s->name, host);
        return DM_ECONN;
    }
    int rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, LISTEN_BACKLOG, on_connection);
    if (rc != 0) {
        dm_log(DM_LOG_ERROR, "http", "%s: cannot listen on %s:%u: %s", s->name, host,
               (unsigned)s->o.listen.port, uv_strerror(rc));
        return DM_ECONN;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len) == 0) {
        if (bound.ss_family == AF_INET)
            s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        else if (bound.ss_family == AF_INET6)
            s->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    s->started = true;
    dm_log(DM_LOG_INFO, "http", "%s API listening on %s:%u", s->name, host, (unsigned)s->port);
    return DM_OK;
}

uint16_t net_http_port(const net_http_server_t *s)
{
    return s ? s->port : 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    net_http_server_t *s = CONTAINER_OF(h, net_http_server_t, listener);
    s->handles--;
    server_maybe_free(s);
}

void net_http_close(net_http_server_t *s, void (*cb)(void *arg), void *arg)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    s->close_cb = cb;
    s->close_arg = arg;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    for (conn *c = s->conns; c; c = c->next)
        conn_close(c);
}

int net__http_adopt_fd(net_http_server_t *s, uv_os_sock_t fd)
{
    if (!s || s->closing) {
        close(fd);
        return DM_ECLOSED;
    }
    if (s->nconns >= s->o.max_connections) {
        close(fd);
        s->st.rejected_limits++;
        return DM_ELIMIT;
    }
    conn *c = conn_new(s);
    if (!c) {
        close(fd);
        return DM_ENOMEM;
    }
    uv_pipe_init(s->loop, &c->io.pipe, 0);
    c->io.handle.data = c;
    snprintf(c->remote_ip, sizeof c->remote_ip, "local");
    if (uv_pipe_open(&c->io.pipe, fd) != 0) {
        close(fd);
        conn_close(c);
        return DM_EIO;
    }
    conn_start(c);
    return DM_OK;
}

const char *net_http_req_method(const net_http_req_t *r)
{
    return r->method;
}

const char *net_http_req_path(const net_http_req_t *r)
{
    return r->path ? r->path : "";
}

const char *net_http_req_query(const net_http_req_t *r)
{
    return r->query ? r->query : "";
}

const uint8_t *net_http_req_body(const net_http_req_t *r, size_t *n)
{
    if (n)
        *n = r->body.len;
    return r->body.data ? r->body.data : (const uint8_t *)"";
}

const char *net_http_req_header(const net_http_req_t *r, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = r->nhdrs; i-- > 0;) {
        const char *h = (const char *)r->hbuf.data + r->hdrs[i].name;
        if (name_eq(h, strlen(h), name))
            return (const char *)r->hbuf.data + r->hdrs[i].value;
    }
    return NULL;
}

const char *net_http_req_remote_ip(const net_http_req_t *r)
{
    return r->remote_ip;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = lower(ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Decode one character of s[0..n) at *i: %XX or '+' or itself. DM_EPARSE if malformed. */
static int decode_char(const char *s, size_t n, size_t *i, int *ch)
{
    int c = (unsigned char)s[*i];
    if (c == '%') {
        if (n - *i < 3)
            return DM_EPARSE;
        int hi = hexval((unsigned char)s[*i + 1]), lo = hexval((unsigned char)s[*i + 2]);
        if (hi < 0 || lo < 0)
            return DM_EPARSE;
        c = hi * 16 + lo;
        *i += 3;
    } else {
        if (c == '+')
            c = ' ';
        *i += 1;
    }
    if (c == 0)
        return DM_EPARSE;
    *ch = c;
    return DM_OK;
}

/**
 * The first parameter whose decoded name equals `name` wins. A malformed escape in any
 * parameter name met before the match, or in the matched value, is DM_EPARSE.
 */
int net_http_query_param(const net_http_req_t *r, const char *name, char *out, size_t cap)
{
    if (!r || !name || !out || cap == 0)
        return DM_EINVAL;
    out[0] = '\0';
    const char *q = net_http_req_query(r);
    size_t qlen = strlen(q);
    size_t pos = 0;
    while (pos <= qlen) {
        const char *amp = memchr(q + pos, '&', qlen - pos);
        size_t end = amp ? (size_t)(amp - q) : qlen;
        const char *seg = q + pos;
        size_t slen = end - pos;
        pos = end + 1;
        if (slen == 0)
            continue;
        const char *eq = memchr(seg, '=', slen);
        size_t nlen = eq ? (size_t)(eq - seg) : slen;
        /* compare the decoded name with `name` */
        bool match = true;
        size_t j = 0;
        for (size_t i = 0; i < nlen;) {
            int ch;
            if (decode_char(seg, nlen, &i, &ch) != DM_OK)
                return DM_EPARSE;
            if (match && ((unsigned char)name[j] == '\0' || (unsigned char)name[j] != ch))
                match = false;
            else if (match)
                j++;
        }
        if (!match || name[j] != '\0')
            continue;
        const char *v = eq ? eq + 1 : seg + slen;
        size_t vlen = eq ? slen - nlen - 1 : 0;
        size_t o = 0;
        for (size_t i = 0; i < vlen;) {
            int ch;
            if (decode_char(v, vlen, &i, &ch) != DM_OK) {
                out[0] = '\0';
                return DM_EPARSE;
            }
            if (o + 1 >= cap) {
                out[0] = '\0';
                return DM_ETOOBIG;
            }
            out[o++] = (char)ch;
        }
        out[o] = '\0';
        return DM_OK;
    }
    return DM_ENOTFOUND;
}

/* "Name: value\r\n"*, with no bare CR/LF, no controls, and nothing that reframes the
 * response (Content-Length, Transfer-Encoding, Connection are the server's). */
static bool extra_headers_ok(const char *h)
{
    const char *p = h;
    while (*p) {
        const char *ns = p;
        while (is_tchar((unsigned char)*p))
            p++;
        size_t nlen = (size_t)(p - ns);
        if (nlen == 0 || *p != ':')
            return false;
        /* prefixes too: http-parser 2.9 takes "Transfer-Encodingx" for Transfer-Encoding */
        if (name_prefix(ns, nlen, "content-length") || name_prefix(ns, nlen, "transfer-encoding") ||
            name_prefix(ns, nlen, "connection"))
            return false;
        p++;
        while (*p && *p != '\r' && *p != '\n') {
            if (!is_value_char((unsigned char)*p))
                return false;
            p++;
        }
        if (p[0] != '\r' || p[1] != '\n')
            return false;
        p += 2;
    }
    return true;
}

static bool content_type_ok(const char *ct)
{
    if (!ct)
        return true;
    if (!*ct)
        return false;
    for (const unsigned char *p = (const unsigned char *)ct; *p; p++)
        if (!is_value_char(*p))
            return false;
    return true;
}

/**
 * The request is consumed in every case: never touch it after this call. Returns DM_OK
 * also when the client has gone (the response is then dropped). DM_EINVAL if the status
 * is outside 200..599, the content type or extra headers are malformed, or a 204/304 has a
 * body: a 500 JSON error is sent instead. DM_ENOMEM: the connection is closed.
 */
int net_http_respond(net_http_req_t *r, int status, const char *content_type, const void *body,
                     size_t n, const char *extra_headers)
{
    if (!r)
        return DM_EINVAL;
    conn *c = r->c;
    if (!c || c->closing || c->state != ST_HANDLING || c->req != r) {
        if (c && c->req == r)
            c->req = NULL;
        req_free(r);
        return DM_OK;
    }
    net_http_server_t *s = c->srv;
    int result = DM_OK;
    bool no_body = status == 204 || status == 304;
    if (status < 200 || status > 599 || !content_type_ok(content_type) ||
        (extra_headers && !extra_headers_ok(extra_headers)) || (no_body && n > 0) ||
        (n > 0 && !body)) {
        dm_log(DM_LOG_ERROR, "http", "%s: handler gave an invalid response (status %d)", s->name,
               status);
        result = DM_EINVAL;
    }
    bool keep = r->keep_alive && !s->closing;
    bool head_only = r->head_method;
    bool http10 = r->http10;
    dm_buf out = DM_BUF_INIT;
    int rc;
    if (result == DM_OK) {
        rc = build_head(&out, status, content_type, n, !no_body, keep, http10, extra_headers);
        if (!rc && !head_only && n > 0)
            rc = dm_buf_append(&out, body, n);
    } else {
        status = 500;
        dm_buf eb = DM_BUF_INIT;
        rc = error_json(&eb, "EINTERNAL", "internal error");
        if (!rc)
            rc = build_head(&out, status, "application/json; charset=utf-8", eb.len, true, keep,
                            http10, NULL);
        if (!rc && !head_only)
            rc = dm_buf_append(&out, eb.data, eb.len);
        dm_buf_free(&eb);
    }
    c->req = NULL;
    uint64_t elapsed_ns = uv_hrtime() - r->started_ns;
    req_free(r);
    if (rc) {
        dm_buf_free(&out);
        conn_close(c);
        return DM_ENOMEM;
    }
    count_status(s, status);
    if (s->o.on_response)
        s->o.on_response(s->arg, status, elapsed_ns);
    c->state = ST_WRITING;
    timer_set(c, s->o.idle_timeout_ms);
    size_t len;
    uint8_t *data = dm_buf_steal(&out, &len);
    rc = conn_write(c, data, len, true, !keep, NULL, 0);
    return result != DM_OK ? result : rc;
}

int net_http_respond_json(net_http_req_t *r, int status, const char *json, size_t n)
{
    return net_http_respond(r, status, "application/json; charset=utf-8", json, n, NULL);
}

int net_http_respond_error(net_http_req_t *r, int status, const char *code, const char *message)
{
    dm_buf b = DM_BUF_INIT;
    if (error_json(&b, code, message) != DM_OK) {
        dm_buf_free(&b);
        (void)net_http_respond(r, 500, NULL, NULL, 0, NULL); /* still consume the request */
        return DM_ENOMEM;
    }
    int rc = net_http_respond_json(r, status, (const char *)b.data, b.len);
    dm_buf_free(&b);
    return rc;
}

void net_http_get_stats(const net_http_server_t *s, net_http_stats *out)
{
    if (!s || !out)
        return;
    *out = s->st;
    out->connections = s->nconns;
}
