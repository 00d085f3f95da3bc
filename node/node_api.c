/*
 * Internal API handlers (node_api.h). Requests arrive on the loop thread from
 * net_http; share submissions answer asynchronously after their commit.
 */
#include "node_api_internal.h"

#include "node_api_body.h"

#include "crypto_eth.h"
#include "crypto_mem.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOKEN_BYTES 32
/* base64 of a 1 MiB payload plus the JSON around it */
#define API_MAX_BODY ((size_t)1024 * 1024 * 4 / 3 + 8192)
/* token buckets kept per API; beyond, the least recently used idle client is forgotten */
#define API_MAX_CLIENTS 65536
#define LIST_MAX 1000


/* ---------- token file ---------- */

void node_api_token_path(const node_config *cfg, char *out, size_t n)
{
    if (cfg->api_internal_token_file && *cfg->api_internal_token_file)
        snprintf(out, n, "%s", cfg->api_internal_token_file);
    else
        snprintf(out, n, "%s/admin.token", cfg->datadir);
}

int node_api_token_create(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return errno == EEXIST ? DM_EEXIST : DM_EIO;
    uint8_t raw[TOKEN_BYTES];
    char hex[2 * TOKEN_BYTES + 2];
    int rc = crypto_random(raw, sizeof raw);
    if (!rc) {
        dm_hex_encode(hex, raw, sizeof raw);
        hex[2 * TOKEN_BYTES] = '\n';
        if (write(fd, hex, 2 * TOKEN_BYTES + 1) != 2 * TOKEN_BYTES + 1)
            rc = DM_EIO;
    }
    crypto_memzero(raw, sizeof raw);
    crypto_memzero(hex, sizeof hex);
    if (close(fd) != 0 && !rc)
        rc = DM_EIO;
    if (rc)
        unlink(path);
    return rc;
}

int node_api_token_load(const char *path, dm_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? DM_ENOTFOUND : DM_EIO;
    struct stat st;
    int rc = DM_OK;
    char buf[257];
    ssize_t n = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = DM_EIO;
    else if (st.st_mode & (S_IRWXG | S_IRWXO))
        rc = DM_EPERM;
    else if ((n = read(fd, buf, sizeof buf)) < 0)
        rc = DM_EIO;
    else if (n == (ssize_t)sizeof buf)
        rc = DM_ETOOBIG;
    close(fd);
    while (!rc && n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (!rc && n < 16)
        rc = DM_EINVAL; /* too short to be a secret */
    if (!rc)
        rc = dm_buf_append(out, buf, (size_t)n);
    crypto_memzero(buf, sizeof buf);
    return rc;
}

/* ---------- helpers ---------- */

static void front_free(api_front *f);

static void api_free(node_api_t *a)
{
    for (int k = 0; k < API__COUNT; k++)
        front_free(&a->front[k]);
    if (a->close_cb)
        a->close_cb(a->close_arg);
    free(a);
}

void api__reply_json(net_http_req_t *r, int status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!text)
        net_http_respond_error(r, 500, "ENOMEM", "out of memory");
    else
        net_http_respond_json(r, status, text, strlen(text));
    free(text);
    json_decref(j);
}

static int status_for(int rc)
{
    switch (rc) {
    case DM_EINVAL:
    case DM_EPARSE:
    case DM_ERANGE:
        return 400;
    case DM_EAUTH:
        return 401;
    case DM_ENOTFOUND:
        return 404;
    case DM_ETOOBIG:
        return 413;
    case DM_ELIMIT:
    case DM_EBUSY:
    case DM_ECLOSED:
        return 503;
    default:
        return 500;
    }
}

void api__reply_err(net_http_req_t *r, int rc, const char *message)
{
    net_http_respond_error(r, status_for(rc), dm_err_name(rc), message ? message : dm_strerror(rc));
}

static void hex32(char out[65], const uint8_t in[32])
{
    dm_hex_encode(out, in, 32);
}

static json_t *b64_json(const uint8_t *p, size_t n)
{
    dm_buf b = DM_BUF_INIT;
    json_t *j = NULL;
    if (dm_b64_encode(&b, p, n, DM_B64_STD) == DM_OK)
        j = json_stringn(b.len ? (const char *)b.data : "", b.len);
    dm_buf_free(&b);
    return j;
}

/* ---------- POST /v1/shares ---------- */

typedef struct {
    net_http_req_t *req;
    uint8_t origin[32];
} submit_ctx;

static void on_submitted(int status, const node_share_receipt *rc, void *arg)
{
    submit_ctx *sc = arg;
    if (status) {
        api__reply_err(sc->req, status,
                  status == DM_ELIMIT ? "too many shares pending; retry later" : NULL);
    } else {
        char id[65], dh[65], origin[65];
        hex32(id, rc->id);
        hex32(dh, rc->data_hash);
        hex32(origin, sc->origin);
        api__reply_json(sc->req, 201,
                   json_pack("{s:s, s:s, s:s, s:I, s:I}", "id", id, "data_hash", dh, "origin",
                             origin, "seq", (json_int_t)rc->seq, "timestamp_ms",
                             (json_int_t)rc->timestamp_ms));
    }
    free(sc);
}

bool api__is_json(net_http_req_t *r)
{
    const char *ct = net_http_req_header(r, "content-type");
    if (!ct)
        return false;
    size_t n = strlen("application/json");
    if (strncasecmp(ct, "application/json", n) != 0)
        return false;
    /* media-type = type "/" subtype *( OWS ";" OWS parameter )  (RFC 9110 8.3.1) */
    ct += n + strspn(ct + n, " \t");
    return *ct == 0 || *ct == ';';
}

void api__post_share(node_api_t *a, net_http_req_t *r)
{
    if (!api__is_json(r)) {
        net_http_respond_error(r, 415, "EUNSUPPORTED", "Content-Type must be application/json");
        return;
    }
    size_t n;
    const uint8_t *body = net_http_req_body(r, &n);
    node_api_share_req q;
    char msg[256];
    int rc = node_api_parse_share(body, n, &q, msg, sizeof msg);
    if (rc) {
        api__reply_err(r, rc, msg[0] ? msg : NULL);
        return;
    }
    submit_ctx *sc = calloc(1, sizeof *sc);
    if (!sc) {
        api__reply_err(r, DM_ENOMEM, NULL);
        goto out;
    }
    sc->req = r;
    if (dm_hex_decode(sc->origin, 32, node_keys_node_id(a->ctx.keys), 64)) {
        free(sc);
        api__reply_err(r, DM_EINVAL, "bad node id");
        goto out;
    }
    rc = node_share_submit(a->ctx.shares, q.recipient, q.amount, q.data.data, q.data.len,
                           on_submitted, sc);
    if (rc) {
        free(sc);
        api__reply_err(r, rc, rc == DM_ELIMIT ? "too many shares pending; retry later" : NULL);
    }
out:
    node_api_share_req_free(&q);
}

/* ---------- GET /v1/shares/{id}, GET /v1/shares ---------- */

static json_t *share_json(const node_share_record *rec)
{
    const node_share_fields *f = &rec->f;
    char id[65], origin[65], dh[65], addr[43];
    hex32(id, f->id);
    hex32(origin, f->origin);
    hex32(dh, f->data_hash);
    crypto_eth_address_format(f->recipient, addr);
    return json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:o, s:s, s:o, s:I}", "id", id, "origin",
                     origin, "seq", (json_int_t)f->seq, "timestamp_ms", (json_int_t)f->timestamp_ms,
                     "recipient", addr, "amount", f->amount, "data", b64_json(f->data, f->data_len),
                     "data_hash", dh, "signature", b64_json(rec->sig.data, rec->sig.len),
                     "received_ms", (json_int_t)rec->received_ms);
}

void api__get_share(node_api_t *a, net_http_req_t *r, const char *idtext)
{
    uint8_t id[32];
    if (node_share_parse_hash(idtext, strlen(idtext), id)) {
        net_http_respond_error(r, 400, "EINVAL", "share id must be 64 hex characters");
        return;
    }
    node_share_record rec;
    int rc = node_share_read(a->ctx.shares, id, &rec);
    if (rc) {
        api__reply_err(r, rc, rc == DM_ENOTFOUND ? "no such share" : NULL);
        return;
    }
    api__reply_json(r, 200, share_json(&rec));
    node_share_record_free(&rec);
}

static int query_u64(net_http_req_t *r, const char *name, uint64_t *out, uint64_t def, uint64_t max)
{
    char v[32];
    int rc = net_http_query_param(r, name, v, sizeof v);
    if (rc == DM_ENOTFOUND) {
        *out = def;
        return DM_OK;
    }
    if (rc || !v[0])
        return DM_EINVAL;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || errno || v[0] == '-' || x > max)
        return DM_EINVAL;
    *out = x;
    return DM_OK;
}

static void list_shares(node_api_t *a, net_http_req_t *r)
{
    char otext[80];
    uint8_t origin[32];
    int rc = net_http_query_param(r, "origin", otext, sizeof otext);
    if (rc == DM_ENOTFOUND)
        snprintf(otext, sizeof otext, "%s", node_keys_node_id(a->ctx.keys));
    else if (rc) {
        net_http_respond_error(r, 400, "EINVAL", "bad origin parameter");
        return;
    }
    uint64_t after, limit;
    if (node_share_parse_hash(otext, strlen(otext), origin)) {
        net_http_respond_error(r, 400, "EINVAL", "origin must be a 64-hex node id");
        return;
    }
    if (query_u64(r, "after", &after, 0, UINT64_MAX - 1) ||
        query_u64(r, "limit", &limit, 100, LIST_MAX) || limit == 0) {
        net_http_respond_error(r, 400, "EINVAL", "after must be an integer; 1 <= limit <= 1000");
        return;
    }
    uint8_t(*ids)[32] = calloc(limit, 32);
    uint64_t *seqs = calloc(limit, sizeof *seqs);
    size_t count = 0;
    if (!ids || !seqs) {
        api__reply_err(r, DM_ENOMEM, NULL);
        goto out;
    }
    if ((rc = node_share_list(a->ctx.shares, origin, after, limit, ids, seqs, &count))) {
        api__reply_err(r, rc, NULL);
        goto out;
    }
    /* detail=1 adds the timing fields (for latency measurement): one read per share */
    char detail[4] = "0";
    net_http_query_param(r, "detail", detail, sizeof detail);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < count; i++) {
        char id[65];
        hex32(id, ids[i]);
        json_t *item = json_pack("{s:s, s:I}", "id", id, "seq", (json_int_t)seqs[i]);
        node_share_record rec;
        if (item && strcmp(detail, "1") == 0 && node_share_read(a->ctx.shares, ids[i], &rec) == 0) {
            json_object_set_new(item, "timestamp_ms", json_integer((json_int_t)rec.f.timestamp_ms));
            json_object_set_new(item, "received_ms", json_integer((json_int_t)rec.received_ms));
            node_share_record_free(&rec);
        }
        json_array_append_new(arr, item);
    }
    json_t *next = count == limit ? json_integer((json_int_t)seqs[count - 1]) : json_null();
    api__reply_json(r, 200,
               json_pack("{s:s, s:o, s:o}", "origin", otext, "shares", arr, "next_after", next));
out:
    free(ids);
    free(seqs);
}

/* ---------- GET /v1/shares/{id}/proof ---------- */

/* The origin part of a bundle: this node's public identity records. */
static json_t *origin_json(node_api_t *a)
{
    dm_buf spki = DM_BUF_INIT, bind = DM_BUF_INIT;
    json_t *j = NULL;
    if (store_get(a->ctx.store, STORE_CF_META, "rsa_spki", 8, &spki) == DM_OK &&
        store_get(a->ctx.store, STORE_CF_META, "eth_binding", 11, &bind) == DM_OK) {
        uint8_t eth[20];
        char addr[43];
        node_keys_eth_address(a->ctx.keys, eth);
        crypto_eth_address_format(eth, addr);
        j = json_pack("{s:s, s:o, s:s, s:o}", "node_id", node_keys_node_id(a->ctx.keys), "spki",
                      b64_json(spki.data, spki.len), "eth_address", addr, "eth_binding",
                      b64_json(bind.data, bind.len));
    }
    dm_buf_free(&spki);
    dm_buf_free(&bind);
    return j;
}

void api__get_proof(node_api_t *a, net_http_req_t *r, const char *idtext)
{
    uint8_t id[32];
    if (node_share_parse_hash(idtext, strlen(idtext), id)) {
        net_http_respond_error(r, 400, "EINVAL", "share id must be 64 hex characters");
        return;
    }
    json_t *rec = NULL, *origin = NULL;
    int rc = chain_anchor_proof(a->ctx.store, 0, id, &rec);
    if (rc == DM_ENOTFOUND) /* anchored by another node: its signed anchor notice */
        rc = node_share_anchor_record(a->ctx.shares, id, &rec, &origin);
    if (rc == DM_EAGAIN) {
        net_http_respond_error(r, 404, "ENOTFOUND",
                               "anchored by its origin, but the share has not reached this node");
        return;
    }
    if (rc == DM_ENOTFOUND) {
        node_share_record sr;
        bool known = node_share_read(a->ctx.shares, id, &sr) == DM_OK;
        uint8_t self[32];
        bool ours = known && dm_hex_decode(self, 32, node_keys_node_id(a->ctx.keys), 64) == DM_OK &&
                    memcmp(self, sr.f.origin, 32) == 0;
        if (known)
            node_share_record_free(&sr);
        net_http_respond_error(
            r, 404, "ENOTFOUND",
            !known ? "no such share"
            : ours ? (a->ctx.anchor ? "not anchored yet" : "anchoring is disabled on this node")
                   : "no anchor notice from the share's origin has reached this node yet");
        return;
    }
    if (rc) {
        api__reply_err(r, rc, NULL);
        return;
    }
    json_object_set_new(rec, "format", json_string("dmnode-proof-v1"));
    json_object_set_new(rec, "origin", origin ? origin : origin_json(a));
    api__reply_json(r, 200, rec);
}

/* ---------- peers, status ---------- */

static json_t *peers_json(node_api_t *a)
{
    size_t n = net_host_peer_count(a->ctx.host);
    net_peer_info *info = calloc(n ? n : 1, sizeof *info);
    json_t *arr = json_array();
    if (info && arr) {
        n = net_host_peers(a->ctx.host, info, n);
        for (size_t i = 0; i < n; i++)
            json_array_append_new(
                arr,
                json_pack("{s:s, s:s, s:i, s:b, s:I, s:I, s:I, s:I, s:I, s:i, s:i}", "node_id",
                          info[i].node_id, "remote", info[i].remote, "listen_port",
                          info[i].listen_port, "outbound", info[i].outbound, "bytes_in",
                          (json_int_t)info[i].bytes_in, "bytes_out", (json_int_t)info[i].bytes_out,
                          "frames_in", (json_int_t)info[i].frames_in, "frames_out",
                          (json_int_t)info[i].frames_out, "send_queue",
                          (json_int_t)info[i].send_queue, "score", info[i].score, "rtt_ms",
                          info[i].rtt_ms));
    }
    free(info);
    return arr;
}

static json_t *status_json(node_api_t *a)
{
    uint8_t eth[20];
    char addr[43];
    node_keys_eth_address(a->ctx.keys, eth);
    crypto_eth_address_format(eth, addr);
    node_share_stats st;
    node_share_get_stats(a->ctx.shares, &st);
    net_host_stats hs;
    net_host_get_stats(a->ctx.host, &hs);
    node_share_origin_info *o = calloc(NET_MAX_HWM, sizeof *o);
    json_t *origins = json_object();
    if (o && origins) {
        size_t n = node_share_origins(a->ctx.shares, o, NET_MAX_HWM);
        for (size_t i = 0; i < n; i++) {
            char id[65];
            hex32(id, o[i].origin);
            json_object_set_new(origins, id,
                                json_pack("{s:I, s:I}", "hwm", (json_int_t)o[i].hwm, "max_seq",
                                          (json_int_t)o[i].max_seq));
        }
    }
    free(o);
    json_t *chain = json_null();
    if (a->ctx.anchor) {
        chain_anchor_stats cs;
        chain_anchor_stats_get(a->ctx.anchor, &cs);
        char last[67] = "";
        if (cs.has_last_tx) {
            memcpy(last, "0x", 2);
            dm_hex_encode(last + 2, cs.last_tx_hash, 32);
        }
        chain = json_pack(
            "{s:b, s:b, s:I, s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "ready", cs.ready,
            "halted", cs.halted, "pending_events", (json_int_t)cs.pending_events, "batches_sent",
            (json_int_t)cs.batches_sent, "batches_final", (json_int_t)cs.batches_final,
            "events_anchored", (json_int_t)cs.events_anchored, "last_tx_hash", last, "last_block",
            (json_int_t)cs.last_block, "last_latency_ms", (json_int_t)cs.last_latency_ms,
            "resubmits", (json_int_t)cs.resubmits, "rebroadcasts", (json_int_t)cs.rebroadcasts,
            "reorgs", (json_int_t)cs.reorgs, "rpc_errors", (json_int_t)cs.rpc_errors);
    }
    char ts[32];
    uv_timeval64_t now;
    uv_gettimeofday(&now);
    uint64_t now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_usec / 1000;
    snprintf(ts, sizeof ts, "%llu", (unsigned long long)(now_ms - a->ctx.started_ms) / 1000);
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:I, s:i,"
        " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I},"
        " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:o, s:o}",
        "node_id", node_keys_node_id(a->ctx.keys), "eth_address", addr, "network_id",
        a->ctx.cfg->network_id, "version", DM_VERSION, "uptime_s",
        (json_int_t)((now_ms - a->ctx.started_ms) / 1000), "p2p_port",
        (int)net_host_listen_port(a->ctx.host), "api_port", (int)node_api_port(a), "peers",
        (json_int_t)net_host_peer_count(a->ctx.host), "data_key_version",
        (int)node_keys_current_version(a->ctx.keys), "shares", "stored", (json_int_t)st.stored,
        "local_submitted", (json_int_t)st.local_submitted, "received", (json_int_t)st.received,
        "duplicates", (json_int_t)st.duplicates, "invalid", (json_int_t)st.invalid, "verify_calls",
        (json_int_t)st.verify_calls, "relayed", (json_int_t)st.relayed, "synced_in",
        (json_int_t)st.synced_in, "synced_out", (json_int_t)st.synced_out, "conflicts",
        (json_int_t)st.conflicts, "pending_local", (json_int_t)st.pending_local, "pending_commit",
        (json_int_t)st.pending_commit, "p2p", "accepted", (json_int_t)hs.accepted, "dialed",
        (json_int_t)hs.dialed, "handshakes_ok", (json_int_t)hs.handshakes_ok, "handshakes_failed",
        (json_int_t)hs.handshakes_failed, "disconnects_misbehaviour",
        (json_int_t)hs.disconnects_misbehaviour, "bans", (json_int_t)hs.bans, "banned_now",
        (json_int_t)hs.banned_now, "origins", origins, "chain", chain);
}

/* ---------- keys ---------- */

static json_t *keys_json(node_api_t *a)
{
    node_keys_version_info *v = NULL;
    size_t n = 0;
    if (node_keys_list(a->ctx.keys, &v, &n))
        return NULL;
    /* scanning the shares is bulk work: keys_json runs on the thread pool */
    uint64_t *per = calloc(n ? n : 1, sizeof *per);
    if (per && node_share_count_versions(a->ctx.store, per, n) == DM_OK)
        for (size_t i = 0; i < n; i++)
            v[i].records += per[i];
    free(per);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, json_pack("{s:i, s:I, s:b, s:I}", "version", (int)v[i].version,
                                             "created", (json_int_t)v[i].created, "current",
                                             v[i].current, "records", (json_int_t)v[i].records));
    free(v);
    return json_pack("{s:s, s:i, s:i, s:o}", "kdf", "pbkdf2-hmac-sha256", "iterations",
                     (int)node_keys_iterations(a->ctx.keys), "current_version",
                     (int)node_keys_current_version(a->ctx.keys), "versions", arr);
}

/* ---------- thread-pool jobs ---------- */

static void job_work(uv_work_t *w)
{
    api_job *j = w->data;
    j->fn(j);
}

static void job_done(uv_work_t *w, int status)
{
    api_job *j = w->data;
    node_api_t *a = j->api;
    a->pool_jobs--;
    j->done(j, status);
    if (!a->open_fronts && !a->pool_jobs)
        api_free(a);
}

int api__queue(node_api_t *a, api_job *j)
{
    j->api = a;
    j->work.data = j;
    if (uv_queue_work(a->ctx.loop, &j->work, job_work, job_done))
        return DM_EIO;
    a->pool_jobs++;
    return DM_OK;
}

/* ---------- keys ---------- */

static void keys_list_fn(api_job *j)
{
    j->reply = keys_json(j->api);
}

static void reply_job(api_job *j, int status)
{
    if (status || j->rc || !j->reply) {
        api__reply_err(j->req, status ? DM_ECLOSED : j->rc ? j->rc : DM_ENOMEM, NULL);
        json_decref(j->reply);
    } else {
        api__reply_json(j->req, j->http_status ? j->http_status : 200, j->reply);
    }
    free(j);
}

static void run_job(node_api_t *a, net_http_req_t *r, void (*fn)(api_job *),
                    void (*done)(api_job *, int))
{
    api_job *j = calloc(1, sizeof *j);
    if (!j) {
        api__reply_err(r, DM_ENOMEM, NULL);
        return;
    }
    j->req = r;
    j->fn = fn;
    j->done = done;
    if (api__queue(a, j)) {
        free(j);
        api__reply_err(r, DM_EIO, NULL);
    }
}

static void keys_rotate_fn(api_job *j)
{
    uint32_t v = 0;
    j->rc = node_keys_rotate(j->api->ctx.keys, &v);
    if (!j->rc)
        j->reply = json_pack("{s:i}", "current_version", (int)v);
}

static void keys_rotate_done(api_job *j, int status)
{
    if (!status && !j->rc) {
        json_t *f = json_pack("{s:O}", "version", json_object_get(j->reply, "current_version"));
        char msg[96];
        snprintf(msg, sizeof msg, "Data key rotated to version %d",
                 (int)json_integer_value(json_object_get(j->reply, "current_version")));
        api__audit(j->api, DM_LOG_INFO, "key_rotated", f, msg);
        json_decref(f);
    }
    reply_job(j, status);
}

static void reencrypt_fn(api_job *j)
{
    uint64_t moved = 0, shares = 0;
    j->rc = node_keys_reencrypt(j->api->ctx.keys, &moved);
    if (!j->rc)
        j->rc = node_share_reencrypt(j->api->ctx.store, j->api->ctx.keys, &shares);
    if (!j->rc)
        j->reply = json_pack("{s:I, s:i}", "reencrypted", (json_int_t)(moved + shares),
                             "current_version", (int)node_keys_current_version(j->api->ctx.keys));
}

static void reencrypt_done(api_job *j, int status)
{
    j->api->reencrypt_busy = false;
    if (!status && !j->rc) {
        json_t *f = json_pack("{s:O, s:O}", "records", json_object_get(j->reply, "reencrypted"),
                              "version", json_object_get(j->reply, "current_version"));
        api__audit(j->api, DM_LOG_INFO, "key_reencrypted", f, "Data re-encrypted under the current key");
        json_decref(f);
    }
    reply_job(j, status);
}

static void keys_reencrypt(node_api_t *a, net_http_req_t *r)
{
    if (a->reencrypt_busy) {
        net_http_respond_error(r, 409, "EBUSY", "a re-encryption is already running");
        return;
    }
    a->reencrypt_busy = true;
    run_job(a, r, reencrypt_fn, reencrypt_done);
}

/* ---------- routing ---------- */

void api__method_not_allowed(net_http_req_t *r, const char *allowed)
{
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allowed);
    static const char body[] =
        "{\"error\":{\"code\":\"EMETHOD\",\"message\":\"method not allowed\"}}";
    net_http_respond(r, 405, "application/json; charset=utf-8", body, sizeof body - 1, hdr);
}

bool api__proof_path(const char *p, char idt[65])
{
    if (strncmp(p, "/v1/shares/", 11) || strlen(p) != 11 + 64 + 6 || strcmp(p + 11 + 64, "/proof"))
        return false;
    memcpy(idt, p + 11, 64);
    idt[64] = 0;
    return true;
}

bool api__share_item_route(node_api_t *a, net_http_req_t *r, const char *p, bool get)
{
    char idt[65];
    bool proof = api__proof_path(p, idt);
    if (!proof && (strncmp(p, "/v1/shares/", 11) || strchr(p + 11, '/')))
        return false;
    if (!get)
        api__method_not_allowed(r, "GET, HEAD");
    else if (proof)
        api__get_proof(a, r, idt);
    else
        api__get_share(a, r, p + 11);
    return true;
}

static void internal_route(node_api_t *a, net_http_req_t *r)
{
    const char *m = net_http_req_method(r), *p = net_http_req_path(r);
    /* HEAD is GET without the body (net_http drops it; RFC 9110 9.3.2) */
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
    const char *allowed = NULL;
    if (strcmp(p, "/v1/shares") == 0) {
        if (post)
            api__post_share(a, r);
        else if (get)
            list_shares(a, r);
        else
            allowed = "GET, HEAD, POST";
    } else if (api__share_item_route(a, r, p, get)) {
        /* answered */
    } else if (strcmp(p, "/v1/peers") == 0) {
        if (get)
            api__reply_json(r, 200, json_pack("{s:o}", "peers", peers_json(a)));
        else
            allowed = "GET, HEAD";
    } else if (strcmp(p, "/v1/status") == 0) {
        if (get)
            api__reply_json(r, 200, status_json(a));
        else
            allowed = "GET, HEAD";
    } else if (strcmp(p, "/metrics") == 0) {
        if (get)
            api__metrics(a, r);
        else
            allowed = "GET, HEAD";
    } else if (strcmp(p, "/v1/keys") == 0) {
        if (get)
            run_job(a, r, keys_list_fn, reply_job);
        else
            allowed = "GET, HEAD";
    } else if (strcmp(p, "/v1/keys/rotate") == 0) {
        if (post)
            run_job(a, r, keys_rotate_fn, keys_rotate_done);
        else
            allowed = "POST";
    } else if (strcmp(p, "/v1/keys/reencrypt") == 0) {
        if (post)
            keys_reencrypt(a, r);
        else
            allowed = "POST";
    } else if (!api__apikeys_route(a, r)) {
        net_http_respond_error(r, 404, "ENOTFOUND", "no such endpoint");
    }
    if (allowed)
        api__method_not_allowed(r, allowed);
}

static void handle(net_http_req_t *r, void *arg)
{
    api_front *f = arg;
    api_client who;
    if (!api__admit(f, r, &who))
        return;
    if (f->kind == API_INTERNAL)
        internal_route(f->api, r);
    else
        api__ext_route(f, r, &who);
}

static void on_response(void *arg, int status, uint64_t elapsed_ns)
{
    api_front *f = arg;
    node_metrics_hist_observe(&f->latency, (double)elapsed_ns / 1e9);
    if (status >= 100 && status < 600)
        f->status_class[status / 100]++;
}

static int front_start(node_api_t *a, api_kind kind, const node_hostport *listen, uint32_t rate,
                       uint32_t burst)
{
    api_front *f = &a->front[kind];
    f->api = a;
    f->kind = kind;
    node_metrics_hist_init(&f->latency);
    int rc = node_ratelimit_create(&f->limit, rate, burst, API_MAX_CLIENTS);
    if (!rc)
        rc = node_ratelimit_create(&f->audit_gate, 1, 5, API_MAX_CLIENTS);
    if (rc)
        return rc;
    net_http_opts o;
    net_http_opts_default(&o);
    snprintf(o.listen.host, sizeof o.listen.host, "%s", listen->host);
    o.listen.port = listen->port;
    o.max_body = API_MAX_BODY;
    o.name = kind == API_INTERNAL ? "internal" : "external";
    o.on_response = on_response;
    rc = net_http_create(&f->http, a->ctx.loop, &o, handle, f);
    if (!rc)
        rc = net_http_start(f->http);
    if (!rc)
        a->open_fronts++;
    return rc;
}

static void front_free(api_front *f)
{
    node_ratelimit_destroy(f->limit);
    node_ratelimit_destroy(f->audit_gate);
    f->limit = f->audit_gate = NULL;
}

static void http_closed(void *arg)
{
    api_front *f = arg;
    node_api_t *a = f->api;
    f->closed = true;
    a->open_fronts--;
    if (!a->open_fronts && !a->pool_jobs)
        api_free(a);
}

static void close_fronts(node_api_t *a)
{
    for (int k = 0; k < API__COUNT; k++)
        if (a->front[k].http && !a->front[k].closed)
            net_http_close(a->front[k].http, http_closed, &a->front[k]);
}

int node_api_start(node_api_t **out, const node_api_ctx *ctx)
{
    node_api_t *a = calloc(1, sizeof *a);
    if (!a)
        return DM_ENOMEM;
    a->ctx = *ctx;
    const node_config *c = ctx->cfg;
    int rc = front_start(a, API_INTERNAL, &c->api_internal_listen, c->api_internal_rate_per_sec,
                         c->api_internal_rate_burst);
    if (rc)
        dm_log(DM_LOG_ERROR, "node", "cannot listen on api.internal.listen: %s", dm_strerror(rc));
    if (!rc && ctx->apikeys) {
        rc = front_start(a, API_EXTERNAL, &c->api_external_listen, c->api_external_rate_per_sec,
                         c->api_external_rate_burst);
        if (rc)
            dm_log(DM_LOG_ERROR, "node", "cannot listen on api.external.listen: %s",
                   dm_strerror(rc));
    }
    if (rc) {
        /* nothing was dispatched yet: close what opened and free at once */
        for (int k = 0; k < API__COUNT; k++) {
            if (a->front[k].http)
                net_http_close(a->front[k].http, NULL, NULL);
            front_free(&a->front[k]);
        }
        free(a);
        return rc;
    }
    *out = a;
    return DM_OK;
}

uint16_t node_api_port(const node_api_t *a)
{
    return net_http_port(a->front[API_INTERNAL].http);
}

uint16_t node_api_external_port(const node_api_t *a)
{
    return a->front[API_EXTERNAL].http ? net_http_port(a->front[API_EXTERNAL].http) : 0;
}

void node_api_close(node_api_t *a, void (*cb)(void *arg), void *arg)
{
    a->close_cb = cb;
    a->close_arg = arg;
    close_fronts(a);
}
