#include "node_daemon.h"

#include "chain_anchor.h"
#include "chain_rpc.h"
#include "crypto_eth.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "dm_util.h"
#include "net_host.h"
#include "node_api.h"
#include "node_audit.h"
#include "node_share.h"

#include <jansson.h>
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define PEER_PREFIX "addr/"
#define PEER_SAVE_MS 60000
#define APIKEYS_FLUSH_MS 5000
#define AUDIT_PRUNE_MS (24u * 3600u * 1000u) /* retention runs at start and daily */

/* a periodic audit job on the thread pool (head anchoring, retention) */
typedef struct {
    void *d; /* daemon_t */
    uv_timer_t timer;
    uv_work_t work;
    bool busy;
    int rc;
    uint64_t removed;
} audit_job;

typedef struct {
    const node_config *cfg;
    store_t *store;
    node_keys_t *keys;
    uv_loop_t loop;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t save_timer;
    net_host_t *host;
    node_share_svc_t *shares;
    node_api_t *api;
    node_audit_t *audit;
    node_apikeys_t *apikeys;
    uv_timer_t apikeys_timer;
    uv_work_t apikeys_work;
    bool apikeys_flushing;
    audit_job audit_head, audit_prune;
    chain_rpc_t *rpc; /* NULL when chain.rpc_url is empty: anchoring disabled */
    chain_anchor_t *anchor;
    dm_buf token;
    int stopping;
    int exit_rc; /* a fatal error found after start (e.g. wrong chain id) */
} daemon_t;

/* ---------- overlay callbacks -> share service ---------- */

static void on_ready(net_peer_t *p, void *arg)
{
    daemon_t *d = arg;
    if (d->shares)
        node_share_on_peer_ready(d->shares, p);
}

static void on_closed(net_peer_t *p, void *arg)
{
    daemon_t *d = arg;
    if (d->shares)
        node_share_on_peer_closed(d->shares, p);
}

static void on_message(net_peer_t *p, const net_msg *m, const uint8_t *frame, size_t n, void *arg)
{
    daemon_t *d = arg;
    if (d->shares)
        node_share_on_message(d->shares, p, m, frame, n);
}

/* ---------- the persisted peer table ---------- */

static void load_known(daemon_t *d)
{
    store_iter_t *it;
    if (store_iter_create(&it, d->store, STORE_CF_PEERS, PEER_PREFIX, strlen(PEER_PREFIX), NULL, 0))
        return;
    const uint8_t *k, *v;
    size_t kl, vl;
    size_t loaded = 0;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        json_t *j = json_loadb((const char *)v, vl, 0, NULL);
        net_known_addr a;
        memset(&a, 0, sizeof a);
        const char *host = json_string_value(json_object_get(j, "host"));
        const char *id = json_string_value(json_object_get(j, "node_id"));
        json_int_t port = json_integer_value(json_object_get(j, "port"));
        if (host && strlen(host) < sizeof a.addr.host && port > 0 && port < 65536 &&
            (!id || dm_hex_decode(a.node_id, 32, id, strlen(id)) == DM_OK)) {
            snprintf(a.addr.host, sizeof a.addr.host, "%s", host);
            a.addr.port = (uint16_t)port;
            a.last_seen = (uint64_t)json_integer_value(json_object_get(j, "last_seen"));
            if (net_host_add_known(d->host, &a) == DM_OK)
                loaded++;
        }
        json_decref(j);
    }
    store_iter_destroy(it);
    dm_log(DM_LOG_DEBUG, "p2p", "loaded %zu known peer addresses", loaded);
}

static void save_known(daemon_t *d)
{
    size_t max = 1024;
    net_known_addr *a = calloc(max, sizeof *a);
    store_batch_t *b = NULL;
    if (!a || store_batch_create(&b))
        goto out;
    size_t n = net_host_known(d->host, a, max);
    /* replace the table: delete what is stored, then write the current set */
    store_iter_t *it;
    if (store_iter_create(&it, d->store, STORE_CF_PEERS, PEER_PREFIX, strlen(PEER_PREFIX), NULL,
                          0) == 0) {
        const uint8_t *k, *v;
        size_t kl, vl;
        while (store_iter_next(it, &k, &kl, &v, &vl))
            store_batch_delete(b, STORE_CF_PEERS, k, kl);
        store_iter_destroy(it);
    }
    for (size_t i = 0; i < n; i++) {
        char key[300], id[65];
        snprintf(key, sizeof key, PEER_PREFIX "%s:%u", a[i].addr.host, a[i].addr.port);
        dm_hex_encode(id, a[i].node_id, 32);
        static const uint8_t zero[32];
        json_t *j = json_pack("{s:s, s:i, s:I}", "host", a[i].addr.host, "port", a[i].addr.port,
                              "last_seen", (json_int_t)a[i].last_seen);
        if (j && memcmp(a[i].node_id, zero, 32) != 0)
            json_object_set_new(j, "node_id", json_string(id));
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (text)
            store_batch_put(b, STORE_CF_PEERS, key, strlen(key), text, strlen(text));
        free(text);
        json_decref(j);
    }
    if (store_write(d->store, b))
        dm_log(DM_LOG_WARNING, "p2p", "saving the peer table failed: %s", store_errmsg());
out:
    store_batch_destroy(b);
    free(a);
}

static void on_save_timer(uv_timer_t *t)
{
    daemon_t *d = DM_CONTAINER_OF(t, daemon_t, save_timer);
    save_known(d);
}

/* ---------- API keys: usage counters persisted on the pool ---------- */

static void apikeys_flush_work(uv_work_t *w)
{
    daemon_t *d = DM_CONTAINER_OF(w, daemon_t, apikeys_work);
    int rc = node_apikeys_flush(d->apikeys);
    if (rc)
        dm_log(DM_LOG_WARNING, "security", "saving API key usage failed: %s", dm_strerror(rc));
}

static void apikeys_flush_done(uv_work_t *w, int status)
{
    (void)status;
    daemon_t *d = DM_CONTAINER_OF(w, daemon_t, apikeys_work);
    d->apikeys_flushing = false;
}

static void on_apikeys_timer(uv_timer_t *t)
{
    daemon_t *d = DM_CONTAINER_OF(t, daemon_t, apikeys_timer);
    if (d->apikeys_flushing)
        return;
    if (uv_queue_work(&d->loop, &d->apikeys_work, apikeys_flush_work, apikeys_flush_done) == 0)
        d->apikeys_flushing = true;
}

/* ---------- audit of lifecycle events ---------- */

static void audit_event(daemon_t *d, const char *event, const char *message)
{
    store_batch_t *b;
    if (store_batch_create(&b))
        return;
    json_t *fields =
        json_pack("{s:s, s:i}", "node_id", node_keys_node_id(d->keys), "pid", (int)getpid());
    int rc = node_audit_commit(d->audit, d->store, b, DM_LOG_INFO, event, fields, NULL, message);
    if (rc) {
        dm_log(DM_LOG_ERROR, "security", "audit entry %s not written: %s", event, dm_strerror(rc));
    }
    json_decref(fields);
    store_batch_destroy(b);
}

/* ---------- configuration changes between starts ---------- */

/* The effective configuration as {"section.key": "value text"} from node_config_dump
 * (which holds no secrets: only paths to them). */
static json_t *config_map(const node_config *cfg)
{
    dm_buf dump = DM_BUF_INIT;
    json_t *m = json_object();
    if (!m || node_config_dump(cfg, &dump)) {
        json_decref(m);
        dm_buf_free(&dump);
        return NULL;
    }
    char section[64] = "";
    char *save = NULL;
    for (char *line = strtok_r((char *)dm_buf_cstr(&dump), "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        size_t n = strlen(line);
        if (line[0] == '#' || n == 0)
            continue;
        if (line[0] == '[' && line[n - 1] == ']') {
            snprintf(section, sizeof section, "%.*s.", (int)(n - 2), line + 1);
            continue;
        }
        char *eq = strstr(line, " = ");
        if (!eq)
            continue;
        *eq = 0;
        char key[160];
        snprintf(key, sizeof key, "%s%s", section, line);
        json_object_set_new(m, key, json_string(eq + 3));
    }
    dm_buf_free(&dump);
    return m;
}

/* Audit what changed in the configuration since the last start ("config_changed", with
 * every changed key's old and new value), in the batch that records the new one. */
static void audit_config(daemon_t *d)
{
    json_t *now = config_map(d->cfg), *before = NULL, *changed = json_object();
    dm_buf old = DM_BUF_INIT;
    store_batch_t *b = NULL;
    char *text = NULL;
    if (!now || !changed || store_batch_create(&b))
        goto out;
    if (store_get(d->store, STORE_CF_META, "config_last", 11, &old) == DM_OK)
        before = json_loadb((const char *)old.data, old.len, 0, NULL);
    const char *k;
    json_t *v;
    json_object_foreach(now, k, v)
    {
        json_t *o = json_object_get(before, k);
        if (before && (!o || !json_equal(o, v)))
            json_object_set_new(changed, k, json_pack("{s:O?, s:O}", "from", o, "to", v));
    }
    json_object_foreach(before, k, v)
    {
        if (!json_object_get(now, k))
            json_object_set_new(changed, k, json_pack("{s:O, s:n}", "from", v, "to"));
    }
    if (before && json_object_size(changed) == 0)
        goto out; /* nothing changed: nothing to record */
    if (!(text = json_dumps(now, JSON_COMPACT | JSON_SORT_KEYS)) ||
        store_batch_put(b, STORE_CF_META, "config_last", 11, text, strlen(text)))
        goto out;
    char msg[160];
    snprintf(msg, sizeof msg, before ? "Configuration changed since the last start: %zu keys"
                                     : "Configuration recorded at first start (%zu keys)",
             before ? json_object_size(changed) : json_object_size(now));
    json_t *fields = json_pack("{s:o}", "changed", before ? json_incref(changed) : json_object());
    int rc = node_audit_commit(d->audit, d->store, b, DM_LOG_INFO,
                               before ? "config_changed" : "config_recorded", fields, NULL, msg);
    json_decref(fields);
    if (rc)
        dm_log(DM_LOG_ERROR, "security", "audit of the configuration not written: %s",
               dm_strerror(rc));
out:
    free(text);
    store_batch_destroy(b);
    dm_buf_free(&old);
    json_decref(now);
    json_decref(before);
    json_decref(changed);
}

/* ---------- peer bans ---------- */

static void on_banned(const char *ip, uint32_t seconds, void *arg)
{
    daemon_t *d = arg;
    char msg[160];
    snprintf(msg, sizeof msg, "Banned address %s for %u s after repeated misbehaviour", ip,
             seconds);
    json_t *f = json_pack("{s:s, s:i}", "remote", ip, "seconds", (int)seconds);
    if (node_audit_post(d->audit, DM_LOG_WARNING, "peer_banned", f, msg) != DM_OK)
        dm_log(DM_LOG_WARNING, "security", "%s", msg);
    json_decref(f);
}

/* ---------- audit head anchoring and retention (thread pool) ---------- */

static void audit_head_work(uv_work_t *w)
{
    audit_job *j = DM_CONTAINER_OF(w, audit_job, work);
    daemon_t *d = j->d;
    j->rc = node_audit_anchor_head(d->audit, d->store);
}

static void audit_prune_work(uv_work_t *w)
{
    audit_job *j = DM_CONTAINER_OF(w, audit_job, work);
    daemon_t *d = j->d;
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    uint64_t now = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    uint64_t keep = (uint64_t)d->cfg->audit_retention_days * 86400000ull;
    j->rc = node_audit_prune(d->audit, now > keep ? now - keep : 0, &j->removed);
}

static void audit_job_done(uv_work_t *w, int status)
{
    audit_job *j = DM_CONTAINER_OF(w, audit_job, work);
    daemon_t *d = j->d;
    j->busy = false;
    int rc = status ? DM_EIO : j->rc;
    if (j == &d->audit_head && rc == DM_OK && d->anchor)
        chain_anchor_kick(d->anchor, 1); /* the head's outbox entry */
    else if (rc && rc != DM_EEXIST && rc != DM_ECLOSED)
        dm_log(DM_LOG_ERROR, "security", "audit %s failed: %s",
               j == &d->audit_head ? "head anchoring" : "retention", dm_strerror(rc));
}

static void on_audit_timer(uv_timer_t *t)
{
    audit_job *j = DM_CONTAINER_OF(t, audit_job, timer);
    daemon_t *d = j->d;
    if (j->busy || d->stopping)
        return;
    uv_work_cb fn = j == &d->audit_head ? audit_head_work : audit_prune_work;
    if (uv_queue_work(&d->loop, &j->work, fn, audit_job_done) == 0)
        j->busy = true;
}

static void audit_job_start(daemon_t *d, audit_job *j, uint64_t first_ms, uint64_t every_ms)
{
    j->d = d;
    uv_timer_init(&d->loop, &j->timer);
    uv_timer_start(&j->timer, on_audit_timer, first_ms, every_ms);
}

/* ---------- shutdown: API, then shares (flush), then the overlay ---------- */

static void on_host_closed(void *arg)
{
    daemon_t *d = arg;
    d->host = NULL;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
    uv_close((uv_handle_t *)&d->save_timer, NULL);
    uv_close((uv_handle_t *)&d->apikeys_timer, NULL);
    uv_close((uv_handle_t *)&d->audit_head.timer, NULL);
    uv_close((uv_handle_t *)&d->audit_prune.timer, NULL);
    node_audit_detach(d->audit, NULL, NULL); /* flushes posted entries */
}

static void on_rpc_closed(void *arg)
{
    daemon_t *d = arg;
    d->rpc = NULL;
    save_known(d);
    net_host_close(d->host, on_host_closed, d);
}

static void on_anchor_closed(void *arg)
{
    daemon_t *d = arg;
    d->anchor = NULL;
    if (d->rpc)
        chain_rpc_close(d->rpc, on_rpc_closed, d);
    else
        on_rpc_closed(d);
}

static void on_shares_closed(void *arg)
{
    daemon_t *d = arg;
    d->shares = NULL;
    if (d->anchor)
        chain_anchor_close(d->anchor, on_anchor_closed, d);
    else
        on_anchor_closed(d);
}

static void on_api_closed(void *arg)
{
    daemon_t *d = arg;
    d->api = NULL;
    if (d->shares)
        node_share_svc_close(d->shares, on_shares_closed, d);
    else
        on_shares_closed(d);
}

static void shutdown_start(daemon_t *d)
{
    if (d->stopping++)
        return;
    dm_log(DM_LOG_INFO, "node", "stopping: closing API, flushing shares, closing peers");
    uv_timer_stop(&d->save_timer);
    uv_timer_stop(&d->apikeys_timer);
    uv_timer_stop(&d->audit_head.timer);
    uv_timer_stop(&d->audit_prune.timer);
    if (d->api)
        node_api_close(d->api, on_api_closed, d);
    else
        on_api_closed(d);
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_t *d = s->data;
    if (signum == SIGHUP) {
        dm_log(DM_LOG_INFO, "node", "status: node_id=%s peers=%zu", node_keys_node_id(d->keys),
               net_host_peer_count(d->host));
        return;
    }
    dm_log(DM_LOG_INFO, "node", "received signal %d", signum);
    shutdown_start(d);
}

/* ---------- anchoring ---------- */

static int anchor_sign(void *arg, const uint8_t hash[32], crypto_eth_sig *sig)
{
    return node_keys_eth_sign(arg, hash, sig);
}

static void on_outbox(void *arg, size_t added)
{
    daemon_t *d = arg;
    if (d->anchor)
        chain_anchor_kick(d->anchor, added);
}

/* A batch of ours is final: tell every node where its shares are anchored. */
static void on_anchor_final(void *arg, const chain_anchor_final *batch)
{
    daemon_t *d = arg;
    int rc = d->shares ? node_share_anchor_notice_publish(d->shares, batch) : DM_OK;
    if (rc)
        dm_log(DM_LOG_WARNING, "chain", "anchor notice not published: %s", dm_strerror(rc));
}

static void on_anchor_ready(chain_anchor_t *a, int status, void *arg)
{
    (void)a;
    daemon_t *d = arg;
    if (status == DM_OK) {
        dm_log(DM_LOG_INFO, "chain", "anchoring to contract %s on chain %llu",
               d->cfg->chain_contract, (unsigned long long)d->cfg->chain_chain_id);
        return;
    }
    /* a wrong chain id or an unusable contract: refuse to run rather than anchor nowhere */
    char msg[160];
    snprintf(msg, sizeof msg, "Anchoring cannot start: %s; stopping", dm_strerror(status));
    json_t *f = json_pack("{s:s, s:I}", "error", dm_err_name(status), "chain_id",
                          (json_int_t)d->cfg->chain_chain_id);
    if (node_audit_post(d->audit, DM_LOG_ERROR, "anchoring_failed", f, msg) != DM_OK)
        dm_log(DM_LOG_ERROR, "chain", "%s", msg);
    json_decref(f);
    d->exit_rc = status == DM_ECONFIG ? DM_ECONFIG : status;
    shutdown_start(d);
}

static int anchor_create(daemon_t *d)
{
    const node_config *cfg = d->cfg;
    if (!cfg->chain_rpc_url || !*cfg->chain_rpc_url)
        return DM_OK;
    chain_anchor_opts o;
    memset(&o, 0, sizeof o);
    if (!cfg->chain_contract || !*cfg->chain_contract ||
        crypto_eth_address_parse(cfg->chain_contract, o.contract)) {
        dm_log(DM_LOG_ERROR, "chain",
               "chain.rpc_url is set but chain.contract is not: deploy the audit contract with "
               "'dmnode chain deploy' and set chain.contract");
        return DM_ECONFIG;
    }
    int rc = chain_rpc_create(&d->rpc, &d->loop, cfg->chain_rpc_url, NULL);
    if (rc)
        return rc;
    o.chain_id = cfg->chain_chain_id;
    node_keys_eth_address(d->keys, o.sender);
    o.sign = anchor_sign;
    o.sign_arg = d->keys;
    o.on_final = on_anchor_final;
    o.on_final_arg = d;
    o.batch_max_events = cfg->chain_batch_max_events;
    o.batch_max_delay_ms = cfg->chain_batch_max_delay_ms;
    o.confirmations = cfg->chain_confirmations;
    chain_u256_from_u64(&o.max_fee_cap_wei, (uint64_t)cfg->chain_max_fee_gwei * 1000000000ull);
    return chain_anchor_create(&d->anchor, &d->loop, d->store, d->rpc, &o);
}

/* ---------- start ---------- */

static int host_start(daemon_t *d)
{
    const node_config *cfg = d->cfg;
    net_host_opts o;
    net_host_opts_default(&o);
    o.network_id = cfg->network_id;
    o.key = node_keys_rsa(d->keys);
    snprintf(o.listen.host, sizeof o.listen.host, "%s", cfg->p2p_listen.host);
    o.listen.port = cfg->p2p_listen.port;
    net_addr *boot = calloc(cfg->p2p_bootstrap_len ? cfg->p2p_bootstrap_len : 1, sizeof *boot);
    uint8_t(*allow)[NET_ID_LEN] =
        calloc(cfg->p2p_allowlist_len ? cfg->p2p_allowlist_len : 1, NET_ID_LEN);
    int rc = DM_ENOMEM;
    if (!boot || !allow)
        goto out;
    for (size_t i = 0; i < cfg->p2p_bootstrap_len; i++) {
        snprintf(boot[i].host, sizeof boot[i].host, "%s", cfg->p2p_bootstrap[i].host);
        boot[i].port = cfg->p2p_bootstrap[i].port;
    }
    for (size_t i = 0; i < cfg->p2p_allowlist_len; i++)
        if ((rc = dm_hex_decode(allow[i], NET_ID_LEN, cfg->p2p_allowlist[i], 64)))
            goto out;
    o.bootstrap = boot;
    o.bootstrap_len = cfg->p2p_bootstrap_len;
    o.allowlist = (const uint8_t(*)[NET_ID_LEN])allow;
    o.allowlist_len = cfg->p2p_allowlist_len;
    o.max_inbound = cfg->p2p_max_inbound;
    o.max_outbound = cfg->p2p_max_outbound;
    o.ban_seconds = cfg->p2p_ban_seconds;
    net_host_cbs cbs = {on_ready, on_closed, on_message, on_banned};
    rc = net_host_create(&d->host, &d->loop, &o, &cbs, d);
out:
    free(boot);
    free(allow);
    return rc;
}

int node_daemon_run(const node_config *cfg, store_t *store, node_keys_t *keys, FILE *status_out)
{
    /* RSA batches, commits and sync reads share the pool with DNS: size it before first use */
    setenv("UV_THREADPOOL_SIZE", "4", 0);
    /* glibc gives each thread its own arena, and each spare arena holds freed memory (eight
     * nodes share one machine): one arena measured 122 MiB PSS for 8 nodes at full gossip
     * speed against 137 with two and ~160 unbounded, at no measurable CPU cost
     * (bench/RESULTS.md, gossip) */
    mallopt(M_ARENA_MAX, 1);
    daemon_t d;
    memset(&d, 0, sizeof d);
    d.cfg = cfg;
    d.store = store;
    d.keys = keys;
    int rc = uv_loop_init(&d.loop) ? DM_EIO : DM_OK;
    if (rc)
        return rc;
    char token_path[PATH_MAX];
    node_api_token_path(cfg, token_path, sizeof token_path);
    rc = node_api_token_create(token_path);
    if (rc == DM_OK)
        dm_log(DM_LOG_INFO, "security", "created admin token file %s (mode 0600)", token_path);
    if (rc == DM_EEXIST || rc == DM_OK)
        rc = node_api_token_load(token_path, &d.token);
    if (rc) {
        dm_log(DM_LOG_ERROR, "security", "admin token file %s unusable: %s%s", token_path,
               dm_strerror(rc), rc == DM_EPERM ? " (must be mode 0600)" : "");
        goto out;
    }
    if ((rc = node_audit_open(&d.audit, store)))
        goto out;
    if ((rc = node_apikeys_open(&d.apikeys, store, d.audit)))
        goto out;
    if ((rc = host_start(&d)))
        goto out;
    if ((rc = anchor_create(&d)))
        goto out_host;
    if ((rc = node_audit_attach(d.audit, &d.loop))) /* node_audit_post from the loop */
        goto out_host;
    node_share_opts so;
    node_share_opts_default(&so);
    so.loop = &d.loop;
    so.store = store;
    so.keys = keys;
    so.audit = d.audit;
    so.host = d.host;
    so.on_outbox = on_outbox;
    so.on_outbox_arg = &d;
    if ((rc = node_share_svc_create(&d.shares, &so)))
        goto out_host;
    load_known(&d);
    if ((rc = net_host_start(d.host))) {
        dm_log(DM_LOG_ERROR, "p2p", "cannot listen on p2p.listen: %s", dm_strerror(rc));
        goto out_shares;
    }
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    node_api_ctx actx = {.loop = &d.loop,
                         .cfg = cfg,
                         .store = store,
                         .keys = keys,
                         .shares = d.shares,
                         .host = d.host,
                         .audit = d.audit,
                         .anchor = d.anchor,
                         .apikeys = d.apikeys,
                         .admin_token = dm_buf_cstr(&d.token),
                         .started_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000};
    if ((rc = node_api_start(&d.api, &actx))) /* it names the address that failed */
        goto out_shares;
    uv_signal_init(&d.loop, &d.sigint);
    uv_signal_init(&d.loop, &d.sigterm);
    uv_signal_init(&d.loop, &d.sighup);
    d.sigint.data = d.sigterm.data = d.sighup.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sighup, on_signal, SIGHUP);
    uv_timer_init(&d.loop, &d.save_timer);
    uv_timer_start(&d.save_timer, on_save_timer, PEER_SAVE_MS, PEER_SAVE_MS);
    uv_timer_init(&d.loop, &d.apikeys_timer);
    uv_timer_start(&d.apikeys_timer, on_apikeys_timer, APIKEYS_FLUSH_MS, APIKEYS_FLUSH_MS);
    uint64_t head_ms = (uint64_t)cfg->audit_head_anchor_interval_s * 1000;
    audit_job_start(&d, &d.audit_head, head_ms, head_ms);
    audit_job_start(&d, &d.audit_prune, 0, AUDIT_PRUNE_MS);
    if (d.anchor && (rc = chain_anchor_start(d.anchor, on_anchor_ready, &d))) {
        dm_log(DM_LOG_ERROR, "chain", "anchoring cannot start: %s", dm_strerror(rc));
        d.exit_rc = rc;
        shutdown_start(&d);
    }

    uint8_t eth[20];
    char addr[43];
    node_keys_eth_address(keys, eth);
    crypto_eth_address_format(eth, addr);
    audit_event(&d, "node_start", NULL);
    audit_config(&d);
    dm_log(DM_LOG_INFO, "node",
           "started: node_id=%s eth_address=%s network=%s p2p_port=%u api_port=%u "
           "external_api_port=%u",
           node_keys_node_id(keys), addr, cfg->network_id, net_host_listen_port(d.host),
           node_api_port(d.api), node_api_external_port(d.api));
    if (status_out) {
        fprintf(status_out,
                "{\"status\":\"running\",\"node_id\":\"%s\",\"eth_address\":\"%s\",\"network_id\":"
                "\"%s\","
                "\"p2p_port\":%u,\"api_port\":%u,\"external_api_port\":%u,"
                "\"data_key_version\":%u,\"storage_sync\":%s,\"pid\":%ld}\n",
                node_keys_node_id(keys), addr, cfg->network_id, net_host_listen_port(d.host),
                node_api_port(d.api), node_api_external_port(d.api), node_keys_current_version(keys),
                cfg->storage_sync ? "true" : "false", (long)getpid());
        fflush(status_out);
    }
    uv_run(&d.loop, UV_RUN_DEFAULT);
    audit_event(&d, "node_stop", NULL);
    rc = d.exit_rc;
    if (!rc)
        dm_log(DM_LOG_INFO, "node", "stopped cleanly");
    goto out;

out_shares:
    /* start-up failed after the service existed: close it and the host, drain the loop */
    node_share_svc_close(d.shares, NULL, NULL);
    d.shares = NULL;
out_host:
    if (d.anchor)
        chain_anchor_close(d.anchor, NULL, NULL);
    if (d.rpc)
        chain_rpc_close(d.rpc, NULL, NULL);
    if (d.host)
        net_host_close(d.host, NULL, NULL);
    d.host = NULL;
    node_audit_detach(d.audit, NULL, NULL);
    uv_run(&d.loop, UV_RUN_DEFAULT);
out:
    if (uv_loop_close(&d.loop) != 0)
        dm_log(DM_LOG_WARNING, "node", "event loop closed with handles still open");
    node_apikeys_close(d.apikeys); /* flushes usage counters */
    node_audit_close(d.audit);
    dm_buf_free_secure(&d.token);
    return rc;
}
