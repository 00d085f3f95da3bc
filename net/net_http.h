#ifndef DM_NET_HTTP_H
#define DM_NET_HTTP_H

#include "net_host.h" /* net_addr */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * A small HTTP/1.1 server on the node's libuv loop, parsing with Debian's
 * libhttp-parser; the internal and external APIs ride on it. Keep-alive,
 * one request at a time per connection (reading pauses until the response is
 * queued), hard limits checked while parsing (request line + headers size,
 * header count, body size: DM_ETOOBIG answers 431/413 and closes), timeouts
 * that defeat slow clients (headers, body, idle keep-alive), and a bound on
 * connections. Malformed requests get 400 with a JSON error and the connection
 * closes. Handlers may answer later (after async work): the request stays
 * valid until net_http_respond*, even if the client went away meanwhile (the
 * response is then dropped).
 *
 * Details (net/net_http.c has the full state machine): chunked request bodies are
 * accepted and count against max_body after de-chunking; only origin-form targets
 * ("/path?query") are served (absolute-form, "*" and CONNECT get 400); Upgrade is
 * never honoured (the connection closes after the response); "Expect: 100-continue"
 * gets an interim 100 once the head is accepted; extra connections beyond
 * max_connections are accepted and closed at once, without handler calls.
 * libuv does not ignore SIGPIPE: the process must (signal(SIGPIPE, SIG_IGN)).
 *
 * Threads: loop thread only.
 */

typedef struct net_http_server net_http_server_t;
typedef struct net_http_req net_http_req_t;

/** Called once per complete request. Must eventually call a net_http_respond*. */
typedef void (*net_http_handler)(net_http_req_t *req, void *arg);

/* Zero limits and timeouts passed to net_http_create take the defaults below. */
typedef struct {
    net_addr listen;            /* port 0: any free port */
    size_t max_header_bytes;    /* request line + headers; default 16 KiB */
    size_t max_headers;         /* default 64 */
    size_t max_body;            /* default 1 MiB */
    size_t max_connections;     /* default 256 */
    uint32_t header_timeout_ms; /* whole head must arrive within; default 10000 */
    uint32_t body_timeout_ms;   /* whole body must arrive within; default 30000 */
    uint32_t idle_timeout_ms;   /* keep-alive idle; default 60000 */
    const char *name;           /* for logs: "internal", "external" */
    /** Optional: called (loop thread) for each response sent, with its status and the time
     *  from the request's dispatch to the handler until the response was queued. */
    void (*on_response)(void *arg, int status, uint64_t elapsed_ns);
} net_http_opts;

void net_http_opts_default(net_http_opts *o);
int net_http_create(net_http_server_t **out, uv_loop_t *loop, const net_http_opts *o,
                    net_http_handler handler, void *arg);
/** Bind and listen. DM_ECONN if the address cannot be bound. */
int net_http_start(net_http_server_t *s);
uint16_t net_http_port(const net_http_server_t *s);
/** Close the listener and every connection; free when all handles closed. */
void net_http_close(net_http_server_t *s, void (*cb)(void *arg), void *arg);

/* Request accessors: valid until the response. */
const char *net_http_req_method(const net_http_req_t *r); /* "GET", "POST", … */
const char *net_http_req_path(const net_http_req_t *r);   /* raw path, no query */
const char *net_http_req_query(const net_http_req_t *r);  /* raw query, "" if none */
const uint8_t *net_http_req_body(const net_http_req_t *r, size_t *n);
/** Case-insensitive header lookup; NULL if absent. The last value wins for duplicates
 *  except Content-Length, Host and Authorization, where a duplicate is a 400. */
const char *net_http_req_header(const net_http_req_t *r, const char *name);
const char *net_http_req_remote_ip(const net_http_req_t *r);
/** Decode one query parameter (percent-decoding, '+' as space) into out (NUL-terminated).
 *  DM_ENOTFOUND if absent, DM_ETOOBIG if longer than cap-1, DM_EPARSE if malformed. */
int net_http_query_param(const net_http_req_t *r, const char *name, char *out, size_t cap);

/**
 * Send a response and finish the request. `extra_headers` is NULL or complete
 * "Name: value\r\n" lines (e.g. "Retry-After: 1\r\n"). The body is copied.
 * The request is consumed in every case: never touch it after this call (nor call
 * respond twice). DM_OK also when the client has gone (the response is dropped).
 * DM_EINVAL when the status is outside 200..599, content_type or extra_headers hold
 * CR/LF/controls or a name starting with Content-Length, Transfer-Encoding or
 * Connection, or a 204/304 has a body: a JSON 500 is sent instead. DM_ENOMEM: the
 * connection is closed.
 */
int net_http_respond(net_http_req_t *r, int status, const char *content_type, const void *body,
                     size_t n, const char *extra_headers);
/** application/json; charset=utf-8 */
int net_http_respond_json(net_http_req_t *r, int status, const char *json, size_t n);
/** {"error":{"code":"<code>","message":"<message>"}} with proper escaping. */
int net_http_respond_error(net_http_req_t *r, int status, const char *code, const char *message);

typedef struct {
    uint64_t requests, responses_2xx, responses_4xx, responses_5xx;
    uint64_t rejected_limits, timeouts, parse_errors;
    size_t connections;
} net_http_stats;
void net_http_get_stats(const net_http_server_t *s, net_http_stats *out);

#endif
