/*
 * Admission for both APIs (authentication, per-client token buckets, audit of
 * failures and violations), the external API's routes, and the internal API's
 * /v1/apikeys routes. See node_api.h for the contract.
 */
#include "node_api_internal.h"

#include "node_api_body.h"

#include "crypto_mem.h"
#include "dm_err.h"
#include "dm_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define CLIENT_MAX 96

static uint64_t unix_now(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (uint64_t)tv.tv_sec;
}

void api__audit(node_api_t *a, dm_log_level lvl, const char *event, json_t *fields,
                const char *message)
{
    if (a->ctx.audit && node_audit_post(a->ctx.audit, lvl, event, fields, message) == DM_OK)
        return;
    if (message) /* no audit log (tests) or its queue refused: keep the text line */
        dm_log(lvl, "security", "%s", message);
}

/* Flood control for the audit itself: the first few events per client and second are
 * recorded, the rest only counted (f->audit_suppressed, GET /metrics). */
static bool audit_gate(api_front *f, const char *client)
{
    uint32_t retry;
    if (node_ratelimit_take(f->audit_gate, client, uv_now(f->api->ctx.loop), &retry))
        return true;
    f->audit_suppressed++;
    return false;
}

static const char *api_name(const api_front *f)
{
    return f->kind == API_INTERNAL ? "internal" : "external";
}

/* The credential a request presents: `Authorization: Bearer X` or `X-API-Key: X`
 * (external API only). NULL if none; "" if the header is malformed. */
static const char *presented_key(api_front *f, net_http_req_t *r)
{
    const char *h = net_http_req_header(r, "authorization");
    if (h) {
        /* the scheme is case-insensitive and followed by 1*SP (RFC 9110 11.4, RFC 6750 2.1) */
        if (strncasecmp(h, "Bearer ", 7) != 0)
            return "";
        h += 7;
        while (*h == ' ')
            h++;
        return h;
    }
    if (f->kind == API_EXTERNAL)
        return net_http_req_header(r, "x-api-key");
    return NULL;
}

static void reply_429(net_http_req_t *r, uint32_t retry_ms)
{
    char hdr[48];
    snprintf(hdr, sizeof hdr, "Retry-After: %u\r\n", (retry_ms + 999) / 1000);
    static const char body[] =
        "{\"error\":{\"code\":\"ERATELIMIT\",\"message\":\"rate limit exceeded; retry later\"}}";
    net_http_respond(r, 429, "application/json; charset=utf-8", body, sizeof body - 1, hdr);
}

static void reply_401(net_http_req_t *r)
{
    static const char body[] =
        "{\"error\":{\"code\":\"EAUTH\",\"message\":\"missing or invalid credentials\"}}";
    net_http_respond(r, 401, "application/json; charset=utf-8", body, sizeof body - 1,
                     "WWW-Authenticate: Bearer\r\n");
}

bool api__admit(api_front *f, net_http_req_t *r, api_client *who)
{
    node_api_t *a = f->api;
    memset(who, 0, sizeof *who);
    const char *ip = net_http_req_remote_ip(r);
    bool open_route = f->kind == API_EXTERNAL && strcmp(net_http_req_path(r), "/v1/health") == 0;
    const char *key = open_route ? NULL : presented_key(f, r);
    const char *why = key ? NULL : "no credentials";
    bool ok = open_route;
    if (key && f->kind == API_INTERNAL) {
        ok = crypto_ct_streq(key, a->ctx.admin_token);
        who->admin = ok;
        why = ok ? NULL : "invalid admin token";
    } else if (key) {
        ok = node_apikeys_check(a->ctx.apikeys, key, unix_now(), &who->key, &why) == DM_OK;
    }
    char client[CLIENT_MAX];
    if (ok && who->admin)
        snprintf(client, sizeof client, "admin");
    else if (ok && !open_route)
        snprintf(client, sizeof client, "key:%s", who->key.id);
    else
        snprintf(client, sizeof client, "ip:%s", ip); /* unauthenticated: by address */

    uint32_t retry_ms = 0;
    if (!node_ratelimit_take(f->limit, client, uv_now(a->ctx.loop), &retry_ms)) {
        f->rate_limited++;
        char gate[CLIENT_MAX + 4];
        snprintf(gate, sizeof gate, "rl:%s", client);
        if (audit_gate(f, gate)) {
            char msg[192];
            if (ok && !who->admin && !open_route)
                snprintf(msg, sizeof msg, "Rate limit exceeded for %s (api key %s) on %s API", ip,
                         who->key.id, api_name(f));
            else
                snprintf(msg, sizeof msg, "Rate limit exceeded for %s on %s API", ip, api_name(f));
            json_t *fl = json_pack("{s:s, s:s, s:s, s:s}", "api", api_name(f), "client", client,
                                   "remote", ip, "path", net_http_req_path(r));
            api__audit(a, DM_LOG_WARNING, "rate_limit_exceeded", fl, msg);
            json_decref(fl);
        }
        reply_429(r, retry_ms);
        return false;
    }
    if (!ok) {
        f->auth_failures++;
        char gate[CLIENT_MAX + 4];
        snprintf(gate, sizeof gate, "af:%s", client);
        if (audit_gate(f, gate)) {
            char masked[8], msg[192];
            dm_log_mask(masked, key ? key : "");
            snprintf(msg, sizeof msg, "Failed authentication on %s API from %s: %s%s%s",
                     api_name(f), ip, why ? why : "invalid credentials",
                     key ? ", api_key=" : "", key ? masked : "");
            json_t *fl = json_pack("{s:s, s:s, s:s, s:s}", "api", api_name(f), "remote", ip,
                                   "reason", why ? why : "invalid credentials", "path",
                                   net_http_req_path(r));
            api__audit(a, DM_LOG_WARNING, "auth_failure", fl, msg);
            json_decref(fl);
        }
        reply_401(r);
        return false;
    }
    if (!open_route) {
        char gate[CLIENT_MAX + 4];
        snprintf(gate, sizeof gate, "ok:%s", client);
        if (audit_gate(f, gate)) {
            char msg[192];
            if (who->admin)
                snprintf(msg, sizeof msg, "Successful authentication: admin token from %s", ip);
            else
                snprintf(msg, sizeof msg, "Successful authentication: api_key=%s*** id=%s from %s",
                         who->key.prefix, who->key.id, ip);
            json_t *fl = json_pack("{s:s, s:s, s:s}", "api", api_name(f), "remote", ip, "client",
                                   client);
            api__audit(a, DM_LOG_INFO, "auth_success", fl, msg);
            json_decref(fl);
        }
    }
    return true;
}

/* ---------- external API ---------- */

void api__ext_route(api_front *f, net_http_req_t *r, const api_client *who)
{
    (void)who;
    node_api_t *a = f->api;
    const char *m = net_http_req_method(r), *p = net_http_req_path(r);
    /* HEAD is GET without the body (net_http drops it; RFC 9110 9.3.2) */
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
    const char *allowed = NULL;
    if (strcmp(p, "/v1/health") == 0) {
        if (get)
            api__reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
        else
            allowed = "GET, HEAD";
    } else if (strcmp(p, "/v1/shares") == 0) {
        if (post)
            api__post_share(a, r);
        else
            allowed = "POST";
    } else if (api__share_item_route(a, r, p, get)) {
        /* answered */
    } else {
        net_http_respond_error(r, 404, "ENOTFOUND", "no such endpoint");
    }
    if (allowed)
        api__method_not_allowed(r, allowed);
}

/* ---------- /v1/apikeys on the internal API ---------- */

typedef struct {
    char name[65];
    uint64_t expires_at;
    char id[17];
} apikey_req;

static void create_fn(api_job *j)
{
    apikey_req *q = j->arg;
    node_apikey_info info;
    char key[48], err[160] = "";
    j->rc = node_apikeys_create(j->api->ctx.apikeys, q->name, q->expires_at, unix_now(), &info,
                                key, err, sizeof err);
    if (!j->rc) {
        j->reply = node_apikey_info_json(&info);
        json_object_set_new(j->reply, "key", json_string(key));
        json_object_del(j->reply, "revoked_at");
        json_object_del(j->reply, "last_used_at");
        json_object_del(j->reply, "request_count");
        j->http_status = 201;
    } else if (err[0]) {
        j->reply = json_pack("{s:s}", "message", err);
    }
    crypto_memzero(key, sizeof key);
}

static void finish(api_job *j, int status)
{
    if (!status && !j->rc && j->reply) {
        api__reply_json(j->req, j->http_status ? j->http_status : 200, j->reply);
    } else {
        const char *msg = json_string_value(json_object_get(j->reply, "message"));
        api__reply_err(j->req, status ? DM_ECLOSED : j->rc ? j->rc : DM_ENOMEM,
                       j->rc == DM_ENOTFOUND ? "no such API key" : msg);
        json_decref(j->reply);
    }
    free(j->arg);
    free(j);
}

static void revoke_fn(api_job *j)
{
    apikey_req *q = j->arg;
    uint64_t now = unix_now();
    j->rc = node_apikeys_revoke(j->api->ctx.apikeys, q->id, now);
    if (!j->rc) {
        /* report the revocation time on record (an earlier one if it was revoked before) */
        node_apikey_info info;
        uint64_t at = now;
        if (node_apikeys_get(j->api->ctx.apikeys, q->id, &info) == DM_OK && info.revoked_at)
            at = info.revoked_at;
        j->reply = json_pack("{s:s, s:I}", "id", q->id, "revoked_at", (json_int_t)at);
    }
}

static void queue_apikey_job(node_api_t *a, net_http_req_t *r, apikey_req *q,
                             void (*fn)(api_job *))
{
    api_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(q);
        api__reply_err(r, DM_ENOMEM, NULL);
        return;
    }
    j->req = r;
    j->arg = q;
    j->fn = fn;
    j->done = finish;
    if (api__queue(a, j)) {
        free(q);
        free(j);
        api__reply_err(r, DM_EIO, NULL);
    }
}

static void apikey_create(node_api_t *a, net_http_req_t *r)
{
    if (!api__is_json(r)) {
        net_http_respond_error(r, 415, "EUNSUPPORTED", "Content-Type must be application/json");
        return;
    }
    size_t n;
    const uint8_t *body = net_http_req_body(r, &n);
    node_api_apikey_req in;
    char msg[256];
    int rc = node_api_parse_apikey(body, n, unix_now(), &in, msg, sizeof msg);
    if (rc) {
        api__reply_err(r, rc, msg[0] ? msg : NULL);
        return;
    }
    apikey_req *q = calloc(1, sizeof *q);
    if (!q) {
        api__reply_err(r, DM_ENOMEM, NULL);
        return;
    }
    memcpy(q->name, in.name, sizeof q->name);
    q->expires_at = in.expires_at;
    queue_apikey_job(a, r, q, create_fn);
}

static void apikey_list(node_api_t *a, net_http_req_t *r)
{
    node_apikey_info *list = NULL;
    size_t n = 0;
    int rc = node_apikeys_list(a->ctx.apikeys, &list, &n);
    if (rc) {
        api__reply_err(r, rc, NULL);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, node_apikey_info_json(&list[i]));
    free(list);
    api__reply_json(r, 200, json_pack("{s:o}", "api_keys", arr));
}

static bool is_key_id(const char *s)
{
    if (strlen(s) != 16)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

bool api__apikeys_route(node_api_t *a, net_http_req_t *r)
{
    const char *m = net_http_req_method(r), *p = net_http_req_path(r);
    if (strcmp(p, "/v1/apikeys") && strncmp(p, "/v1/apikeys/", 12))
        return false;
    if (!a->ctx.apikeys) {
        net_http_respond_error(r, 404, "ENOTFOUND", "API keys are not enabled on this node");
        return true;
    }
    if (strcmp(p, "/v1/apikeys") == 0) {
        if (strcmp(m, "POST") == 0)
            apikey_create(a, r);
        else if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
            apikey_list(a, r);
        else
            api__method_not_allowed(r, "GET, HEAD, POST");
        return true;
    }
    const char *id = p + 12;
    if (strcmp(m, "DELETE")) {
        api__method_not_allowed(r, "DELETE");
    } else if (!is_key_id(id)) {
        net_http_respond_error(r, 400, "EINVAL", "API key id must be 16 lowercase hex characters");
    } else {
        apikey_req *q = calloc(1, sizeof *q);
        if (!q) {
            api__reply_err(r, DM_ENOMEM, NULL);
            return true;
        }
        memcpy(q->id, id, 16);
        queue_apikey_job(a, r, q, revoke_fn);
    }
    return true;
}
