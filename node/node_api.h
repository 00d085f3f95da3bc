#ifndef DM_NODE_API_H
#define DM_NODE_API_H

#include "dm_buf.h"
#include "chain_anchor.h"
#include "net_host.h"
#include "net_http.h"
#include "node_apikeys.h"
#include "node_audit.h"
#include "node_config.h"
#include "node_keys.h"
#include "node_share.h"
#include "store.h"

#include <uv.h>

/*
 * The node's two HTTP APIs (DESIGN.md 12), served by net_http. JSON only; errors
 * are {"error":{"code":"<stable code>","message":"…"}}. Every client gets a token
 * bucket (api.*.rate_per_sec / rate_burst): over it, 429 + Retry-After, code
 * ERATELIMIT, counted and audited.
 *
 * Internal API on api.internal.listen (loopback only): every request needs
 * `Authorization: Bearer <admin token>`, compared in constant time. Routes:
 *   POST /v1/shares            {"recipient","amount","data"(base64)} -> 201
 *   GET  /v1/shares/{id}       the share, data in base64
 *   GET  /v1/shares/{id}/proof its proof bundle (docs/ANCHORING.md), once anchored
 *   GET  /v1/shares?origin=&after=&limit=
 *   GET  /v1/peers, GET /v1/status, GET /metrics (Prometheus text)
 *   GET  /v1/keys, POST /v1/keys/rotate, POST /v1/keys/reencrypt
 *   POST /v1/apikeys {"name","expires_at"?} -> 201 {"id","key",…} (key shown once)
 *   GET  /v1/apikeys, DELETE /v1/apikeys/{id}
 *
 * External API on api.external.listen (when ctx.apikeys is set): an API key in
 * `Authorization: Bearer <key>` or `X-API-Key: <key>` on every route but health:
 *   GET /v1/health, POST /v1/shares, GET /v1/shares/{id}, GET /v1/shares/{id}/proof
 * Unknown, expired and revoked keys all get the same 401.
 * Loop thread only.
 */
typedef struct node_api node_api_t;

typedef struct {
    uv_loop_t *loop;
    const node_config *cfg;
    store_t *store;
    node_keys_t *keys;
    node_share_svc_t *shares;
    net_host_t *host;
    node_audit_t *audit;
    chain_anchor_t *anchor;   /* NULL when anchoring is disabled */
    node_apikeys_t *apikeys;  /* NULL: no external API */
    const char *admin_token;  /* borrowed; the daemon wipes it at exit */
    uint64_t started_ms;      /* Unix ms */
} node_api_ctx;

int node_api_start(node_api_t **out, const node_api_ctx *ctx);
uint16_t node_api_port(const node_api_t *a);
/** The external API's port; 0 when it is not running. */
uint16_t node_api_external_port(const node_api_t *a);
void node_api_close(node_api_t *a, void (*cb)(void *arg), void *arg);

/** Path of the admin token file: api.internal.token_file, or <datadir>/admin.token. */
void node_api_token_path(const node_config *cfg, char *out, size_t n);
/** Create a new random token file (0600) unless it exists. */
int node_api_token_create(const char *path);
/** Read the token (must not be group/other accessible). Secret: dm_buf_free_secure. */
int node_api_token_load(const char *path, dm_buf *out);

#endif
