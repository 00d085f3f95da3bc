#ifndef DM_NODE_API_INTERNAL_H
#define DM_NODE_API_INTERNAL_H

/*
 * Shared between the API's source files: node_api.c (start/close, the internal
 * API's routes, the share handlers both APIs serve), node_api_ext.c (the
 * external API, client authentication, rate limits, API-key routes) and
 * node_api_metrics.c (GET /metrics). Loop thread only.
 */
#include "node_api.h"
#include "node_metrics.h"
#include "node_ratelimit.h"

#include <jansson.h>

typedef enum { API_INTERNAL = 0, API_EXTERNAL = 1, API__COUNT } api_kind;

/* One listener: the internal or the external API. */
typedef struct {
    node_api_t *api;
    api_kind kind;
    net_http_server_t *http;
    node_ratelimit_t *limit;      /* per-client token buckets */
    node_ratelimit_t *audit_gate; /* at most ~1 audit entry per client per second for floods */
    node_metrics_hist latency;    /* request dispatch to response */
    uint64_t status_class[6];     /* responses by status / 100 */
    uint64_t rate_limited, auth_failures, audit_suppressed;
    bool closed;
} api_front;

struct node_api {
    node_api_ctx ctx;
    api_front front[API__COUNT];
    void (*close_cb)(void *);
    void *close_arg;
    bool reencrypt_busy; /* one re-encryption at a time */
    unsigned pool_jobs;  /* thread-pool jobs holding a request */
    unsigned open_fronts;
};

/* Who made a request, once authenticated: the admin, or an API key. */
typedef struct {
    bool admin;
    node_apikey_info key; /* external: the key used */
} api_client;

void api__reply_json(net_http_req_t *r, int status, json_t *j);
void api__reply_err(net_http_req_t *r, int rc, const char *message);
void api__method_not_allowed(net_http_req_t *r, const char *allowed);
/** Content-Type is application/json (with an optional parameter). */
bool api__is_json(net_http_req_t *r);

/* share handlers served by both APIs */
void api__post_share(node_api_t *a, net_http_req_t *r);
void api__get_share(node_api_t *a, net_http_req_t *r, const char *idtext);
void api__get_proof(node_api_t *a, net_http_req_t *r, const char *idtext);
/** GET|HEAD /v1/shares/{id} and /v1/shares/{id}/proof for both APIs: answers and returns
 *  true when `p` is one of those paths (405 for another method), else false. */
bool api__share_item_route(node_api_t *a, net_http_req_t *r, const char *p, bool get);
/** "/v1/shares/{64 hex}/proof" -> true and the id text. */
bool api__proof_path(const char *p, char idt[65]);

/** Run fn on the thread pool, then done on the loop; keeps the API alive meanwhile. */
typedef struct api_job api_job;
struct api_job {
    node_api_t *api;
    net_http_req_t *req;
    int rc;
    int http_status; /* of a successful reply; 0 = 200 */
    void *arg;
    json_t *reply;
    void (*fn)(api_job *j);           /* thread pool */
    void (*done)(api_job *j, int st); /* loop; st != 0 if the job was cancelled */
    uv_work_t work;
};
int api__queue(node_api_t *a, api_job *j);

/* Authenticate + rate-limit + audit (node_api_ext.c). false: the request was answered. */
bool api__admit(api_front *f, net_http_req_t *r, api_client *who);
/** The external API's routes (node_api_ext.c). */
void api__ext_route(api_front *f, net_http_req_t *r, const api_client *who);
/** /v1/apikeys routes on the internal API (node_api_ext.c); false if the path is not theirs. */
bool api__apikeys_route(node_api_t *a, net_http_req_t *r);
/** GET /metrics (node_api_metrics.c). */
void api__metrics(node_api_t *a, net_http_req_t *r);
/** Post an audit entry without blocking the loop (no-op without an audit log). */
void api__audit(node_api_t *a, dm_log_level lvl, const char *event, json_t *fields,
                const char *message);

#endif
