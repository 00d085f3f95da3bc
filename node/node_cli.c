/*
 * dmnode command line. Parses global flags (--config, --section.key=value,
 * --json, --help), builds the strict configuration, and dispatches to a
 * command. Private key material is never printed by any command.
 */
#include "node_cli.h"

#include "chain_trail.h"
#include "chain_verify.h"
#include "crypto_eth.h"
#include "crypto_mem.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"
#include "node_api.h"
#include "node_apikeys.h"
#include "node_audit.h"
#include "node_chain.h"
#include "node_config.h"
#include "node_daemon.h"
#include "node_keys.h"
#include "node_share.h"
#include "store.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_WORDS 8
#define MAX_OPTS 8

typedef struct {
    char name[32];
    const char *value;
} cli_opt;

typedef struct {
    node_config cfg;
    bool json;
    bool help;
    const char *words[MAX_WORDS]; /* command words and positional arguments */
    int nwords;
    cli_opt opts[MAX_OPTS]; /* command-specific --name value options */
    int nopts;
    int nargs; /* positional arguments after the command words */
    const char *const *args;
} cli_ctx;

typedef struct {
    const char *name; /* "keys rotate" */
    int (*run)(cli_ctx *c);
    const char *summary;
    const char *help;
    const char *options; /* space-separated command options it accepts, "" if none */
    int nargs;           /* positional arguments it takes */
} cli_command;

static int api_simple(cli_ctx *c, const char *method, const char *path, const char *body);

static const char *opt(const cli_ctx *c, const char *name)
{
    for (int i = 0; i < c->nopts; i++)
        if (strcmp(c->opts[i].name, name) == 0)
            return c->opts[i].value;
    return NULL;
}

/* ---------- error reporting ---------- */

static int exit_code_for(int rc)
{
    switch (rc) {
    case DM_OK:
        return NODE_EXIT_OK;
    case DM_ECONFIG:
        return NODE_EXIT_CONFIG;
    case DM_EINVAL:
    case DM_ETOOBIG:
        return NODE_EXIT_USAGE;
    case DM_ENOPASS:
    case DM_EBADPASS:
    case DM_EPERM:
        return NODE_EXIT_PASSWORD;
    case DM_ETAMPER:
    case DM_ECORRUPT:
        return NODE_EXIT_TAMPER;
    case DM_EBUSY:
        return NODE_EXIT_BUSY;
    case DM_ENOTINIT:
    case DM_EEXIST:
        return NODE_EXIT_STATE;
    default:
        return NODE_EXIT_FAILURE;
    }
}

static int fail(int rc, const char *what)
{
    const char *extra = "";
    if (rc == DM_ESTORE || rc == DM_ECORRUPT || rc == DM_EBUSY)
        extra = store_errmsg();
    fprintf(stderr, "dmnode: %s: %s%s%s\n", what, dm_strerror(rc), *extra ? ": " : "", extra);
    return exit_code_for(rc);
}

/* ---------- shared steps ---------- */

static int require_datadir(cli_ctx *c)
{
    const char *d = c->cfg.datadir;
    if (!d || !*d) {
        fprintf(stderr, "dmnode: no data directory: pass --datadir DIR (or set DMNODE_DATADIR)\n");
        return DM_ECONFIG;
    }
    return DM_OK;
}

/* The RocksDB directory inside the data directory. */
static void db_path(const cli_ctx *c, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/db", c->cfg.datadir);
}

static int open_store(cli_ctx *c, store_t **s, bool read_only)
{
    char path[PATH_MAX];
    db_path(c, path);
    store_opts o = {.create = false, .read_only = read_only, .sync = c->cfg.storage_sync};
    int rc = store_open(s, path, &o);
    if (rc == DM_ENOTFOUND) {
        fprintf(stderr, "dmnode: %s is not an initialised data directory (run dmnode init)\n",
                c->cfg.datadir);
        return DM_ENOTINIT;
    }
    if (rc == DM_EBUSY)
        fprintf(stderr, "dmnode: data directory %s is in use by a running dmnode daemon\n",
                c->cfg.datadir);
    return rc;
}

static int load_password(cli_ctx *c, dm_buf *pw)
{
    int rc = node_keys_password_load(pw, c->cfg.keys_master_password_file);
    switch (rc) {
    case DM_OK:
        break;
    case DM_ENOPASS:
        fprintf(stderr,
                "dmnode: master password not provided: set %s or keys.master_password_file\n",
                NODE_KEYS_ENV);
        break;
    case DM_EPERM:
        fprintf(stderr,
                "dmnode: %s: password file must not be accessible by group or others (chmod 600)\n",
                c->cfg.keys_master_password_file);
        break;
    default:
        fprintf(stderr, "dmnode: cannot read master password file %s: %s\n",
                c->cfg.keys_master_password_file, dm_strerror(rc));
    }
    return rc;
}

static int unlock(cli_ctx *c, store_t *s, node_keys_t **km)
{
    dm_buf pw = DM_BUF_INIT;
    int rc = load_password(c, &pw);
    if (rc) {
        dm_buf_free_secure(&pw);
        return rc;
    }
    rc = node_keys_unlock(km, s, (const char *)pw.data, pw.len);
    dm_buf_free_secure(&pw);
    switch (rc) {
    case DM_OK:
        break;
    case DM_EBADPASS:
        dm_log(DM_LOG_WARNING, "security",
               "Failed key store unlock: wrong master password (datadir=%s)", c->cfg.datadir);
        fprintf(stderr, "dmnode: wrong master password: the key store was not unlocked and nothing "
                        "was changed\n");
        break;
    case DM_ETAMPER:
        dm_log(DM_LOG_ERROR, "security", "Key store integrity failure (datadir=%s)",
               c->cfg.datadir);
        fprintf(stderr, "dmnode: key store integrity check failed: a key or identity record was "
                        "altered; refusing to use it\n");
        break;
    case DM_ENOTINIT:
        fprintf(stderr, "dmnode: %s holds no key store (run dmnode init)\n", c->cfg.datadir);
        break;
    default:
        fail(rc, "unlocking key store");
    }
    return rc;
}

static void print_identity(cli_ctx *c, const char *node_id, const uint8_t eth[20])
{
    char addr[43];
    crypto_eth_address_format(eth, addr);
    if (c->json)
        printf("{\"node_id\":\"%s\",\"eth_address\":\"%s\"}\n", node_id, addr);
    else
        printf("node_id: %s\neth_address: %s\n", node_id, addr);
}

/* ---------- commands ---------- */

static int cmd_init(cli_ctx *c)
{
    int rc = require_datadir(c);
    if (rc)
        return rc;
    if (mkdir(c->cfg.datadir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "dmnode: cannot create %s: %s\n", c->cfg.datadir, strerror(errno));
        return DM_EIO;
    }
    char path[PATH_MAX];
    db_path(c, path);
    struct stat st;
    if (stat(path, &st) == 0) {
        fprintf(stderr, "dmnode: %s is already initialised\n", c->cfg.datadir);
        return DM_EEXIST;
    }
    dm_buf pw = DM_BUF_INIT;
    if ((rc = load_password(c, &pw))) {
        dm_buf_free_secure(&pw);
        return rc;
    }
    if (pw.len < NODE_KEYS_MIN_PASSWORD) {
        dm_buf_free_secure(&pw);
        fprintf(stderr,
                "dmnode: master password too short: at least %d characters (32+ recommended)\n",
                NODE_KEYS_MIN_PASSWORD);
        return DM_EPERM;
    }
    store_t *s = NULL;
    node_keys_t *km = NULL;
    store_opts o = {.create = true, .read_only = false, .sync = true};
    if ((rc = store_open(&s, path, &o))) {
        dm_buf_free_secure(&pw);
        fail(rc, "creating database");
        return rc;
    }
    rc = node_keys_create(&km, s, (const char *)pw.data, pw.len, c->cfg.keys_kdf_iterations,
                          c->cfg.keys_rsa_bits);
    dm_buf_free_secure(&pw);
    if (rc) {
        fail(rc, "creating keys");
    } else {
        uint8_t eth[20];
        node_keys_eth_address(km, eth);
        print_identity(c, node_keys_node_id(km), eth);
    }
    node_keys_close(km);
    store_close(s);
    return rc;
}

/* The node's public identity records (no password; works beside a running daemon). */
static int read_identity(cli_ctx *c, char id[65], uint8_t eth[20])
{
    int rc = require_datadir(c);
    store_t *s = NULL;
    if (rc || (rc = open_store(c, &s, true)))
        return rc;
    rc = node_keys_identity(s, id, eth);
    if (rc == DM_ENOTINIT)
        fprintf(stderr, "dmnode: %s holds no node identity (run dmnode init)\n", c->cfg.datadir);
    else if (rc)
        fail(rc, "reading identity");
    store_close(s);
    return rc;
}

static int cmd_id(cli_ctx *c)
{
    char id[65];
    uint8_t eth[20];
    int rc = read_identity(c, id, eth);
    if (rc == DM_OK)
        print_identity(c, id, eth);
    return rc;
}

static void fmt_time(char out[32], uint64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int cmd_keys_list(cli_ctx *c)
{
    int rc = require_datadir(c);
    store_t *s = NULL;
    node_keys_t *km = NULL;
    if (rc || (rc = open_store(c, &s, true)))
        return rc;
    if ((rc = unlock(c, s, &km)))
        goto out;
    node_keys_version_info *v = NULL;
    size_t n = 0;
    if ((rc = node_keys_list(km, &v, &n))) {
        fail(rc, "listing keys");
        goto out;
    }
    if (n) {
        /* sealed share payloads count too */
        uint64_t *per = calloc(n, sizeof *per);
        if (per && node_share_count_versions(s, per, n) == DM_OK)
            for (size_t i = 0; i < n; i++)
                v[i].records += per[i];
        free(per);
    }
    if (c->json)
        printf("{\"kdf\":\"pbkdf2-hmac-sha256\",\"iterations\":%u,\"current_version\":%u,"
               "\"versions\":[",
               node_keys_iterations(km), node_keys_current_version(km));
    else
        printf("KDF pbkdf2-hmac-sha256, %u iterations\nVERSION  CREATED               CURRENT  "
               "RECORDS\n",
               node_keys_iterations(km));
    for (size_t i = 0; i < n; i++) {
        char ts[32];
        fmt_time(ts, v[i].created);
        if (c->json)
            printf("%s{\"version\":%u,\"created\":\"%s\",\"current\":%s,\"records\":%llu}",
                   i ? "," : "", v[i].version, ts, v[i].current ? "true" : "false",
                   (unsigned long long)v[i].records);
        else
            printf("%-8u %-21s %-8s %llu\n", v[i].version, ts, v[i].current ? "yes" : "",
                   (unsigned long long)v[i].records);
    }
    if (c->json)
        printf("]}\n");
    free(v);
out:
    node_keys_close(km);
    store_close(s);
    return rc;
}

/* Open for writing; when a daemon holds the directory, say so quietly and let the
 * caller go through its internal API instead (*via_api). */
static int open_store_or_api(cli_ctx *c, store_t **s, bool *via_api)
{
    char path[PATH_MAX];
    db_path(c, path);
    store_opts o = {.create = false, .read_only = false, .sync = c->cfg.storage_sync};
    int rc = store_open(s, path, &o);
    *via_api = rc == DM_EBUSY;
    if (rc == DM_EBUSY || rc == DM_OK)
        return DM_OK;
    return open_store(c, s, false); /* reports the error */
}

/* A key-store write: done locally when no daemon holds the directory, else through
 * the daemon's internal API at `api_path` (the daemon's key manager must make it). */
static int keys_write(cli_ctx *c, const char *api_path,
                      int (*op)(cli_ctx *c, store_t *s, node_keys_t *km))
{
    int rc = require_datadir(c);
    store_t *s = NULL;
    node_keys_t *km = NULL;
    bool via_api;
    if (rc || (rc = open_store_or_api(c, &s, &via_api)))
        return rc;
    if (via_api)
        return api_simple(c, "POST", api_path, "{}");
    if ((rc = unlock(c, s, &km)) == DM_OK)
        rc = op(c, s, km);
    node_keys_close(km);
    store_close(s);
    return rc;
}

static int rotate_op(cli_ctx *c, store_t *s, node_keys_t *km)
{
    (void)s;
    uint32_t v;
    int rc = node_keys_rotate(km, &v);
    if (rc)
        fail(rc, "rotating data key");
    else if (c->json)
        printf("{\"current_version\":%u}\n", v);
    else
        printf("rotated: data key version %u is now current (older versions stay readable; run "
               "'dmnode keys reencrypt' to move data forward)\n",
               v);
    return rc;
}

static int reencrypt_op(cli_ctx *c, store_t *s, node_keys_t *km)
{
    uint64_t moved, shares = 0;
    int rc = node_keys_reencrypt(km, &moved);
    if (!rc)
        rc = node_share_reencrypt(s, km, &shares);
    moved += shares;
    if (rc)
        fail(rc, "re-encrypting");
    else if (c->json)
        printf("{\"reencrypted\":%llu,\"current_version\":%u}\n", (unsigned long long)moved,
               node_keys_current_version(km));
    else
        printf("re-encrypted %llu records under data key version %u\n", (unsigned long long)moved,
               node_keys_current_version(km));
    return rc;
}

static int cmd_keys_rotate(cli_ctx *c)
{
    return keys_write(c, "/v1/keys/rotate", rotate_op);
}

static int cmd_keys_reencrypt(cli_ctx *c)
{
    return keys_write(c, "/v1/keys/reencrypt", reencrypt_op);
}

static int cmd_run(cli_ctx *c)
{
    int rc = require_datadir(c);
    store_t *s = NULL;
    node_keys_t *km = NULL;
    if (rc || (rc = open_store(c, &s, false)))
        return rc;
    if ((rc = unlock(c, s, &km)) == DM_OK) {
        rc = node_daemon_run(&c->cfg, s, km, stdout);
        if (rc)
            fail(rc, "running the node");
    }
    node_keys_close(km);
    store_close(s);
    return rc;
}

static int cmd_config_show(cli_ctx *c)
{
    dm_buf out = DM_BUF_INIT;
    int rc = node_config_dump(&c->cfg, &out);
    if (!rc)
        fwrite(out.data, 1, out.len, stdout);
    dm_buf_free(&out);
    return rc;
}

static int cmd_config_keys(cli_ctx *c)
{
    (void)c;
    dm_buf out = DM_BUF_INIT;
    int rc = node_config_describe(&out);
    if (!rc)
        fwrite(out.data, 1, out.len, stdout);
    dm_buf_free(&out);
    return rc;
}

static int cmd_version(cli_ctx *c)
{
    (void)c;
    printf("dmnode %s\n", DM_VERSION);
    return DM_OK;
}

/* ---------- talking to a running daemon (internal API) ---------- */

static size_t curl_sink(char *p, size_t sz, size_t n, void *arg)
{
    dm_buf *b = arg;
    if (b->len + sz * n > ((size_t)64 << 20))
        return 0; /* a reply this large is not from our API */
    return dm_buf_append(b, p, sz * n) == DM_OK ? sz * n : 0;
}

/*
 * One request to the internal API of the daemon on this data directory. The
 * reply body is appended to `reply`, the HTTP status to *status. DM_ECONN if
 * the daemon is not reachable. Only loopback addresses are ever contacted:
 * api.internal.listen is validated as loopback by the configuration.
 */
static int api_call(cli_ctx *c, const char *method, const char *path, const char *body,
                    dm_buf *reply, long *status)
{
    char token_path[PATH_MAX];
    node_api_token_path(&c->cfg, token_path, sizeof token_path);
    dm_buf token = DM_BUF_INIT, auth = DM_BUF_INIT;
    int rc = node_api_token_load(token_path, &token);
    if (rc) {
        fprintf(stderr, "dmnode: cannot read the admin token %s: %s\n", token_path,
                dm_strerror(rc));
        dm_buf_free_secure(&token);
        return rc == DM_EPERM ? DM_EPERM : DM_ECONFIG;
    }
    const node_hostport *hp = &c->cfg.api_internal_listen;
    const char *host = hp->host;
    if (strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    char url[512];
    snprintf(url, sizeof url, strchr(host, ':') ? "http://[%s]:%u%s" : "http://%s:%u%s", host,
             hp->port, path);
    dm_buf_printf(&auth, "Authorization: Bearer %s", dm_buf_cstr(&token));
    dm_buf_free_secure(&token);
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, dm_buf_cstr(&auth));
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    dm_buf_free_secure(&auth);
    if (!h || !hdrs) {
        rc = DM_ENOMEM;
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 600000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, curl_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, reply);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        fprintf(stderr, "dmnode: the daemon's internal API at %s is not reachable: %s\n", url,
                curl_easy_strerror(cc));
        rc = DM_ECONN;
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return rc;
}

/* Print a reply (indented JSON) and map an error reply to an error code. */
static int api_print(const dm_buf *reply, long status)
{
    json_t *j = json_loadb((const char *)reply->data, reply->len, 0, NULL);
    if (status >= 200 && status < 300) {
        char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(j);
        return text ? DM_OK : DM_EPARSE;
    }
    json_t *e = json_object_get(j, "error");
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    fprintf(stderr, "dmnode: the daemon answered %ld %s: %s\n", status, code ? code : "?",
            msg ? msg : "(no message)");
    json_decref(j);
    switch (status) {
    case 400:
    case 404:
    case 413:
        return DM_EINVAL;
    case 401:
        return DM_EAUTH;
    case 503:
        return DM_ELIMIT;
    default:
        return DM_EIO;
    }
}

static int api_simple(cli_ctx *c, const char *method, const char *path, const char *body)
{
    int rc = require_datadir(c);
    if (rc)
        return rc;
    dm_buf reply = DM_BUF_INIT;
    long status = 0;
    rc = api_call(c, method, path, body, &reply, &status);
    if (!rc)
        rc = api_print(&reply, status);
    dm_buf_free(&reply);
    return rc;
}

static int read_data(cli_ctx *c, dm_buf *out)
{
    const char *file = opt(c, "data-file"), *inline_data = opt(c, "data");
    if (!!file == !!inline_data) {
        fprintf(stderr,
                "dmnode: give exactly one of --data-file FILE or --data - (stdin) / --data TEXT\n");
        return DM_EINVAL;
    }
    FILE *f = NULL;
    if (inline_data && strcmp(inline_data, "-") != 0)
        return dm_buf_puts(out, inline_data);
    f = file ? fopen(file, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "dmnode: cannot open %s: %s\n", file, strerror(errno));
        return DM_EIO;
    }
    char buf[65536];
    size_t n;
    int rc = DM_OK;
    while (!rc && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (out->len + n > NET_SHARE_DATA_MAX) {
            fprintf(stderr, "dmnode: data exceeds 1 MiB\n");
            rc = DM_ETOOBIG;
            break;
        }
        rc = dm_buf_append(out, buf, n);
    }
    if (!rc && ferror(f))
        rc = DM_EIO;
    if (f != stdin)
        fclose(f);
    return rc;
}

static int cmd_share_submit(cli_ctx *c)
{
    const char *recipient = opt(c, "recipient"), *amount = opt(c, "amount");
    if (!recipient || !amount) {
        fprintf(stderr, "dmnode: --recipient and --amount are required\n");
        return DM_EINVAL;
    }
    dm_buf data = DM_BUF_INIT, b64 = DM_BUF_INIT;
    int rc = read_data(c, &data);
    if (!rc)
        rc = dm_b64_encode(&b64, data.data, data.len, DM_B64_STD);
    char *body = NULL;
    if (!rc) {
        json_t *j = json_pack("{s:s, s:s, s:s%}", "recipient", recipient, "amount", amount, "data",
                              b64.len ? (const char *)b64.data : "", b64.len);
        body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        rc = body ? api_simple(c, "POST", "/v1/shares", body) : DM_EINVAL;
    }
    free(body);
    dm_buf_free(&data);
    dm_buf_free(&b64);
    return rc;
}

static int cmd_share_get(cli_ctx *c)
{
    const char *id = c->args[0];
    size_t n = strlen(id);
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)id[i]))
            n = 0;
    if (n != 64) {
        fprintf(stderr, "dmnode: a share id is 64 hex characters\n");
        return DM_EINVAL;
    }
    char path[128];
    snprintf(path, sizeof path, "/v1/shares/%s", id);
    return api_simple(c, "GET", path, NULL);
}

static int cmd_peers(cli_ctx *c)
{
    return api_simple(c, "GET", "/v1/peers", NULL);
}

static int cmd_status(cli_ctx *c)
{
    return api_simple(c, "GET", "/v1/status", NULL);
}

/* ---------- API keys: through the daemon, or the store when none runs ---------- */

static bool apikey_id_ok(const char *id)
{
    if (strlen(id) == NODE_APIKEY_ID_LEN && strspn(id, "0123456789abcdef") == NODE_APIKEY_ID_LEN)
        return true;
    fprintf(stderr, "dmnode: an API key id is %d lower-case hex characters\n", NODE_APIKEY_ID_LEN);
    return false;
}

static void fmt_time_or(char out[32], uint64_t t, const char *none)
{
    if (t)
        fmt_time(out, t);
    else
        snprintf(out, 32, "%s", none);
}

/* Print the JSON of --json output on one line. */
static int print_json(json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text)
        printf("%s\n", text);
    free(text);
    return text ? DM_OK : DM_ENOMEM;
}

static int apikey_print_created(cli_ctx *c, const node_apikey_info *i, const char *key)
{
    int rc = DM_OK;
    if (c->json) {
        json_t *j =
            json_pack("{s:s, s:s, s:s, s:s, s:I, s:o}", "id", i->id, "key", key, "name", i->name,
                      "prefix", i->prefix, "created_at", (json_int_t)i->created_at, "expires_at",
                      i->expires_at ? json_integer((json_int_t)i->expires_at) : json_null());
        rc = print_json(j);
        json_decref(j);
    } else {
        char created[32], expires[32];
        fmt_time(created, i->created_at);
        fmt_time_or(expires, i->expires_at, "never");
        printf("id:      %s\nname:    %s\nprefix:  %s\ncreated: %s\nexpires: %s\nkey:     %s\n",
               i->id, i->name, i->prefix, created, expires, key);
    }
    fprintf(stderr, "dmnode: store this API key now: it is shown only once and cannot be shown "
                    "again (the node keeps only its hash)\n");
    return rc;
}

static int apikey_print_list(cli_ctx *c, const node_apikey_info *v, size_t n)
{
    if (c->json) {
        json_t *arr = json_array();
        bool ok = arr != NULL;
        for (size_t i = 0; ok && i < n; i++)
            ok = json_array_append_new(arr, node_apikey_info_json(&v[i])) == 0;
        json_t *j = ok ? json_pack("{s:O}", "api_keys", arr) : NULL;
        json_decref(arr);
        int rc = print_json(j);
        json_decref(j);
        return rc;
    }
    int w = 4;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(v[i].name) > w)
            w = (int)strlen(v[i].name);
    printf("%-16s  %-*s  %-8s  %-20s  %-20s  %-20s  %-8s  %s\n", "ID", w, "NAME", "PREFIX",
           "CREATED", "EXPIRES", "LAST USED", "STATUS", "REQUESTS");
    uint64_t now = (uint64_t)time(NULL);
    for (size_t i = 0; i < n; i++) {
        char created[32], expires[32], used[32];
        fmt_time(created, v[i].created_at);
        fmt_time_or(expires, v[i].expires_at, "never");
        fmt_time_or(used, v[i].last_used_at, "never");
        const char *status = "active";
        if (v[i].revoked_at)
            status = "revoked";
        else if (v[i].expires_at && v[i].expires_at <= now)
            status = "expired";
        printf("%-16s  %-*s  %-8s  %-20s  %-20s  %-20s  %-8s  %llu\n", v[i].id, w, v[i].name,
               v[i].prefix, created, expires, used, status, (unsigned long long)v[i].request_count);
    }
    return DM_OK;
}

static int apikey_print_revoked(cli_ctx *c, const char *id, uint64_t revoked_at)
{
    char t[32];
    fmt_time(t, revoked_at);
    if (c->json)
        printf("{\"id\":\"%s\",\"revoked_at\":%llu}\n", id, (unsigned long long)revoked_at);
    else
        printf("revoked API key %s (at %s); it is refused from now on\n", id, t);
    return DM_OK;
}

/* What one `apikey` command does: on the daemon's internal API, or on the store. */
typedef struct apikey_op apikey_op;
struct apikey_op {
    const char *method, *path, *body;
    int (*remote)(cli_ctx *c, json_t *reply); /* a 2xx reply */
    int (*local)(cli_ctx *c, node_apikeys_t *k, const apikey_op *op);
    const char *name;    /* create */
    uint64_t expires_at; /* create; 0 = never */
};

static int apikey_run(cli_ctx *c, const apikey_op *op)
{
    int rc = require_datadir(c);
    store_t *s = NULL;
    bool via_api;
    if (rc || (rc = open_store_or_api(c, &s, &via_api)))
        return rc;
    if (via_api) {
        dm_buf reply = DM_BUF_INIT;
        long status = 0;
        rc = api_call(c, op->method, op->path, op->body, &reply, &status);
        if (!rc && (status < 200 || status > 299)) {
            rc = api_print(&reply, status);
        } else if (!rc) {
            json_t *j = json_loadb((const char *)reply.data, reply.len, 0, NULL);
            rc = j ? op->remote(c, j) : DM_EPARSE;
            if (rc == DM_EPARSE)
                fprintf(stderr, "dmnode: the daemon's reply is not what %s %s answers\n",
                        op->method, op->path);
            json_decref(j);
        }
        dm_buf_free_secure(&reply); /* a created key */
        return rc;
    }
    node_audit_t *a = NULL;
    node_apikeys_t *k = NULL;
    if ((rc = node_audit_open(&a, s)) || (rc = node_apikeys_open(&k, s, a)))
        fail(rc, "opening the API key store");
    else
        rc = op->local(c, k, op);
    node_apikeys_close(k);
    node_audit_close(a);
    store_close(s);
    return rc;
}

static int apikey_create_remote(cli_ctx *c, json_t *reply)
{
    node_apikey_info i;
    json_t *jk = json_object_get(reply, "key");
    const char *key = json_string_value(jk);
    int rc = DM_EPARSE;
    if (key && strlen(key) == NODE_APIKEY_LEN && node_apikey_info_from_json(reply, &i) == DM_OK)
        rc = apikey_print_created(c, &i, key);
    if (key)
        crypto_memzero((char *)key, strlen(key)); /* jansson's own copy */
    return rc;
}

static int apikey_create_local(cli_ctx *c, node_apikeys_t *k, const apikey_op *op)
{
    node_apikey_info i;
    char key[NODE_APIKEY_LEN + 1], err[256];
    int rc = node_apikeys_create(k, op->name, op->expires_at, (uint64_t)time(NULL), &i, key, err,
                                 sizeof err);
    if (rc == DM_OK)
        rc = apikey_print_created(c, &i, key);
    else
        fprintf(stderr, "dmnode: API key not created: %s\n", err[0] ? err : dm_strerror(rc));
    crypto_memzero(key, sizeof key);
    return rc;
}

/* A whole number of at most `max`, digits only. */
static int parse_count(const char *s, const char *what, uint64_t max, uint64_t *out)
{
    size_t n = strlen(s);
    unsigned long long v =
        n && n <= 20 && strspn(s, "0123456789") == n ? strtoull(s, NULL, 10) : ULLONG_MAX;
    if (v > max) {
        fprintf(stderr, "dmnode: %s takes a whole number of at most %llu\n", what,
                (unsigned long long)max);
        return DM_EINVAL;
    }
    *out = v;
    return DM_OK;
}

static int cmd_apikey_create(cli_ctx *c)
{
    const char *name = opt(c, "name"), *at = opt(c, "expires-at"), *in = opt(c, "expires-in");
    if (!name) {
        fprintf(stderr, "dmnode: --name NAME is required\n");
        return DM_EINVAL;
    }
    if (at && in) {
        fprintf(stderr, "dmnode: give at most one of --expires-at and --expires-in\n");
        return DM_EINVAL;
    }
    uint64_t expires = 0, days = 0;
    int rc = DM_OK;
    if (at)
        rc = parse_count(at, "--expires-at (unix seconds)", NODE_APIKEY_EXPIRES_MAX, &expires);
    else if (in &&
             !(rc = parse_count(in, "--expires-in (days)", NODE_APIKEY_EXPIRES_MAX / 86400, &days)))
        expires = days ? (uint64_t)time(NULL) + days * 86400 : 0;
    if (!rc && in && !days) {
        fprintf(stderr, "dmnode: --expires-in takes at least 1 day (omit it for no expiry)\n");
        rc = DM_EINVAL;
    }
    if (!rc && at && !expires) {
        fprintf(stderr, "dmnode: --expires-at takes a unix time (omit it for no expiry)\n");
        rc = DM_EINVAL;
    }
    if (rc)
        return rc;
    json_t *j = json_pack("{s:s}", "name", name);
    if (j && expires)
        json_object_set_new(j, "expires_at", json_integer((json_int_t)expires));
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!body)
        return DM_ENOMEM;
    apikey_op op = {"POST", "/v1/apikeys", body, apikey_create_remote, apikey_create_local};
    op.name = name;
    op.expires_at = expires;
    rc = apikey_run(c, &op);
    free(body);
    return rc;
}

static int apikey_list_remote(cli_ctx *c, json_t *reply)
{
    json_t *arr = json_object_get(reply, "api_keys");
    if (!json_is_array(arr))
        return DM_EPARSE;
    size_t n = json_array_size(arr);
    node_apikey_info *v = n ? calloc(n, sizeof *v) : NULL;
    if (n && !v)
        return DM_ENOMEM;
    int rc = DM_OK;
    for (size_t i = 0; !rc && i < n; i++)
        rc = node_apikey_info_from_json(json_array_get(arr, i), &v[i]);
    if (!rc)
        rc = apikey_print_list(c, v, n);
    free(v);
    return rc;
}

static int apikey_list_local(cli_ctx *c, node_apikeys_t *k, const apikey_op *op)
{
    (void)op;
    node_apikey_info *v = NULL;
    size_t n = 0;
    int rc = node_apikeys_list(k, &v, &n);
    if (rc)
        fail(rc, "listing API keys");
    else
        rc = apikey_print_list(c, v, n);
    free(v);
    return rc;
}

static int cmd_apikey_list(cli_ctx *c)
{
    apikey_op op = {"GET", "/v1/apikeys", NULL, apikey_list_remote, apikey_list_local};
    return apikey_run(c, &op);
}

static int apikey_revoke_remote(cli_ctx *c, json_t *reply)
{
    json_t *t = json_object_get(reply, "revoked_at");
    const char *id = json_string_value(json_object_get(reply, "id"));
    if (!id || strcmp(id, c->args[0]) != 0 || !json_is_integer(t) || json_integer_value(t) <= 0)
        return DM_EPARSE;
    return apikey_print_revoked(c, id, (uint64_t)json_integer_value(t));
}

static int apikey_revoke_local(cli_ctx *c, node_apikeys_t *k, const apikey_op *op)
{
    (void)op;
    node_apikey_info i;
    int rc = node_apikeys_revoke(k, c->args[0], (uint64_t)time(NULL));
    if (!rc)
        rc = node_apikeys_get(k, c->args[0], &i);
    if (rc == DM_ENOTFOUND) {
        fprintf(stderr, "dmnode: no API key with id %s\n", c->args[0]);
        return DM_EINVAL;
    }
    if (rc) {
        fail(rc, "revoking the API key");
        return rc;
    }
    return apikey_print_revoked(c, i.id, i.revoked_at);
}

static int cmd_apikey_revoke(cli_ctx *c)
{
    if (!apikey_id_ok(c->args[0]))
        return DM_EINVAL;
    char path[64];
    snprintf(path, sizeof path, "/v1/apikeys/%s", c->args[0]);
    apikey_op op = {"DELETE", path, NULL, apikey_revoke_remote, apikey_revoke_local};
    return apikey_run(c, &op);
}

/* ---------- chain: deploy, verify ---------- */

static int cmd_chain_deploy(cli_ctx *c)
{
    const char *url = opt(c, "rpc") ? opt(c, "rpc") : c->cfg.chain_rpc_url;
    if (!url || !*url) {
        fprintf(stderr, "dmnode: no RPC endpoint: pass --rpc URL or set chain.rpc_url\n");
        return DM_ECONFIG;
    }
    int rc = require_datadir(c);
    store_t *s = NULL;
    node_keys_t *km = NULL;
    if (rc || (rc = open_store(c, &s, true)))
        return rc;
    if ((rc = unlock(c, s, &km)) == DM_OK) {
        char addr[43];
        uint8_t txh[32];
        rc =
            node_chain_deploy(url, c->cfg.chain_chain_id, km, c->cfg.chain_max_fee_gwei, addr, txh);
        char h[65];
        dm_hex_encode(h, txh, 32);
        if (rc)
            fail(rc, "deploying the audit contract");
        else if (c->json)
            printf("{\"contract\":\"%s\",\"tx_hash\":\"0x%s\"}\n", addr, h);
        else
            printf("contract: %s\ntx_hash: 0x%s\n(set chain.contract = \"%s\")\n", addr, h, addr);
    }
    node_keys_close(km);
    store_close(s);
    return rc;
}

static int read_file_all(const char *path, dm_buf *out, size_t max)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "dmnode: cannot open %s: %s\n", path, strerror(errno));
        return DM_EIO;
    }
    char buf[65536];
    size_t n;
    int rc = DM_OK;
    while (!rc && (n = fread(buf, 1, sizeof buf, f)) > 0)
        rc = out->len + n > max ? DM_ETOOBIG : dm_buf_append(out, buf, n);
    if (f != stdin)
        fclose(f);
    return rc;
}

static int verify_bundle_text(cli_ctx *c, const char *url, const dm_buf *text)
{
    uint64_t conf = c->cfg.chain_confirmations;
    const char *co = opt(c, "confirmations");
    if (co) {
        char *end;
        conf = strtoull(co, &end, 10);
        if (*end || !*co) {
            fprintf(stderr, "dmnode: --confirmations takes a number\n");
            return DM_EINVAL;
        }
    }
    chain_verify_report rep;
    int rc = chain_verify_run(url, (const char *)text->data, text->len, conf, NULL, &rep);
    if (c->json) {
        json_t *j = chain_verify_report_json(&rep);
        char *t = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
        if (t)
            printf("%s\n", t);
        free(t);
        json_decref(j);
    } else {
        dm_buf out = DM_BUF_INIT;
        chain_verify_report_format(&rep, &out);
        fwrite(out.data, 1, out.len, stdout);
        printf("%s\n", rc == DM_OK ? "VERIFIED" : "NOT VERIFIED");
        dm_buf_free(&out);
    }
    return rc;
}

static int cmd_verify_proof(cli_ctx *c)
{
    const char *url = opt(c, "rpc") ? opt(c, "rpc") : c->cfg.chain_rpc_url;
    if (!url || !*url) {
        fprintf(stderr, "dmnode: no RPC endpoint: pass --rpc URL\n");
        return DM_ECONFIG;
    }
    dm_buf text = DM_BUF_INIT;
    int rc = read_file_all(c->args[0], &text, CHAIN_VERIFY_BUNDLE_MAX);
    if (!rc)
        rc = verify_bundle_text(c, url, &text);
    dm_buf_free(&text);
    return rc;
}

static int cmd_verify_share(cli_ctx *c)
{
    const char *id = c->args[0];
    if (strlen(id) != 64 || strspn(id, "0123456789abcdefABCDEF") != 64) {
        fprintf(stderr, "dmnode: a share id is 64 hex characters\n");
        return DM_EINVAL;
    }
    int rc = require_datadir(c);
    if (rc)
        return rc;
    char path[128];
    snprintf(path, sizeof path, "/v1/shares/%s/proof", id);
    dm_buf reply = DM_BUF_INIT;
    long status = 0;
    rc = api_call(c, "GET", path, NULL, &reply, &status);
    if (!rc && status != 200)
        rc = api_print(&reply, status);
    if (!rc) {
        const char *url = opt(c, "rpc") ? opt(c, "rpc") : c->cfg.chain_rpc_url;
        if (opt(c, "bundle-out")) {
            FILE *f = fopen(opt(c, "bundle-out"), "wb");
            if (!f || fwrite(reply.data, 1, reply.len, f) != reply.len)
                rc = DM_EIO;
            if (f)
                fclose(f);
        }
        if (!rc && url && *url)
            rc = verify_bundle_text(c, url, &reply);
        else if (!rc)
            printf("%.*s\n", (int)reply.len, (const char *)reply.data);
    }
    dm_buf_free(&reply);
    return rc;
}

static int cmd_audit_verify(cli_ctx *c)
{
    int rc = require_datadir(c);
    store_t *s = NULL;
    if (rc || (rc = open_store(c, &s, true)))
        return rc;
    node_audit_report r;
    rc = node_audit_verify_report(s, &r);
    char head[65];
    dm_hex_encode(head, r.head_hash, 32);
    if (rc == DM_OK && c->json)
        printf("{\"ok\":true,\"entries\":%llu,\"first_seq\":%llu,\"last_seq\":%llu,"
               "\"head_hash\":\"%s\",\"checkpoint_seq\":%llu,\"anchored_checked\":%llu}\n",
               (unsigned long long)r.entries, (unsigned long long)r.first_seq,
               (unsigned long long)r.last_seq, head,
               (unsigned long long)(r.has_checkpoint ? r.checkpoint_seq : 0),
               (unsigned long long)r.anchored_checked);
    else if (rc == DM_OK)
        printf("audit log intact: %llu entries (seq %llu..%llu), head %s\n%s%llu entries "
               "cross-checked against anchoring records\n",
               (unsigned long long)r.entries, (unsigned long long)r.first_seq,
               (unsigned long long)r.last_seq, head,
               r.has_checkpoint ? "retention checkpoint present; " : "",
               (unsigned long long)r.anchored_checked);
    else if (rc == DM_ETAMPER && c->json)
        printf("{\"ok\":false,\"first_bad_seq\":%llu,\"reason\":\"%s\"}\n",
               (unsigned long long)r.bad_seq, r.reason ? r.reason : "");
    else if (rc == DM_ETAMPER)
        printf("audit log BROKEN at entry %llu: %s\n", (unsigned long long)r.bad_seq,
               r.reason ? r.reason : "altered, removed or reordered");
    else
        fail(rc, "verifying the audit log");
    store_close(s);
    return rc;
}

/* ---------- audit trail: the anchors on the chain ---------- */

static int block_opt(const cli_ctx *c, const char *name, uint64_t *out)
{
    const char *v = opt(c, name);
    char *end = NULL;
    if (!v) {
        fprintf(stderr, "dmnode: --%s BLOCK is required\n", name);
        return DM_EINVAL;
    }
    errno = 0;
    if (v && isdigit((unsigned char)*v))
        *out = strtoull(v, &end, 10);
    if (!end || *end || errno) {
        fprintf(stderr, "dmnode: --%s takes a block number\n", name);
        return DM_EINVAL;
    }
    return DM_OK;
}

/* Whose anchors: --node ADDRESS, --all (*all), or this node's account (public identity
 * record of the data directory: no password needed). */
static int trail_sender(cli_ctx *c, bool *all, uint8_t sender[20])
{
    const char *node = opt(c, "node");
    *all = opt(c, "all") != NULL;
    if (node && *all) {
        fprintf(stderr, "dmnode: give --node ADDRESS or --all, not both\n");
        return DM_EINVAL;
    }
    if (*all)
        return DM_OK;
    if (node) {
        if (crypto_eth_address_parse(node, sender) != DM_OK) {
            fprintf(stderr, "dmnode: --node takes an Ethereum address (0x + 40 hex, valid "
                            "EIP-55 checksum if mixed case)\n");
            return DM_EINVAL;
        }
        return DM_OK;
    }
    if (!c->cfg.datadir || !*c->cfg.datadir) {
        fprintf(stderr, "dmnode: whose anchors? give --node ADDRESS or --all, or --datadir DIR "
                        "for this node's\n");
        return DM_EINVAL;
    }
    char id[65];
    return read_identity(c, id, sender);
}

static void print_trail(const cli_ctx *c, const chain_trail_result *r, bool all,
                        const uint8_t sender[20])
{
    if (c->json) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < r->n; i++)
            if (json_array_append_new(arr, chain_trail_anchor_json(&r->anchors[i])))
                break;
        char *t = arr ? json_dumps(arr, JSON_INDENT(2)) : NULL;
        printf("%s\n", t ? t : "[]");
        free(t);
        json_decref(arr);
        return;
    }
    printf("%-9s %-20s %-66s %-4s %-42s %-7s %s\n", "BLOCK", "TIME", "TX", "LOG", "SENDER",
           "COUNT", "ROOT");
    for (size_t i = 0; i < r->n; i++) {
        const chain_trail_anchor *a = &r->anchors[i];
        char ts[32], tx[67] = "0x", from[43], root[65];
        fmt_time(ts, a->block_time);
        dm_hex_encode(tx + 2, a->tx_hash, 32);
        crypto_eth_address_format(a->sender, from);
        dm_hex_encode(root, a->root, 32);
        printf("%-9llu %-20s %-66s %-4llu %-42s %-7llu %s\n", (unsigned long long)a->block_number,
               ts, tx, (unsigned long long)a->log_index, from, (unsigned long long)a->count, root);
    }
    char who[43] = "";
    if (!all)
        crypto_eth_address_format(sender, who);
    printf("anchors: %zu, events: %llu (blocks %llu..%llu, %s%s)\n", r->n,
           (unsigned long long)r->events, (unsigned long long)r->from_block,
           (unsigned long long)r->to_block, all ? "every sender" : "sender ", all ? "" : who);
}

static int cmd_audit_trail(cli_ctx *c)
{
    const char *url = opt(c, "rpc") ? opt(c, "rpc") : c->cfg.chain_rpc_url;
    const char *contract = opt(c, "contract") ? opt(c, "contract") : c->cfg.chain_contract;
    if (!url || !*url) {
        fprintf(stderr, "dmnode: no RPC endpoint: pass --rpc URL or set chain.rpc_url\n");
        return DM_ECONFIG;
    }
    if (!contract || !*contract) {
        fprintf(stderr, "dmnode: no audit contract: pass --contract ADDRESS or set "
                        "chain.contract\n");
        return DM_ECONFIG;
    }
    uint8_t addr[20], sender[20];
    if (crypto_eth_address_parse(contract, addr) != DM_OK) {
        fprintf(stderr, "dmnode: --contract takes an Ethereum address\n");
        return DM_EINVAL;
    }
    chain_trail_query q = {.contract = addr, .to_latest = true};
    bool all;
    int rc = block_opt(c, "from", &q.from_block);
    if (!rc && opt(c, "to")) {
        q.to_latest = false;
        if (!(rc = block_opt(c, "to", &q.to_block)) && q.to_block < q.from_block) {
            fprintf(stderr, "dmnode: --to is below --from\n");
            rc = DM_EINVAL;
        }
    }
    if (!rc)
        rc = trail_sender(c, &all, sender);
    if (rc)
        return rc;
    q.sender = all ? NULL : sender;
    chain_trail_result r;
    rc = chain_trail_run(url, &q, NULL, &r);
    if (rc == DM_OK)
        print_trail(c, &r, all, sender);
    else
        fprintf(stderr, "dmnode: listing the audit trail: %s\n", r.msg[0] ? r.msg : dm_strerror(rc));
    chain_trail_result_free(&r);
    return rc;
}

static int cmd_help(cli_ctx *c);

static const cli_command COMMANDS[] = {
    {"init", cmd_init, "create a node: key store, RSA and Ethereum keys; print its identity",
     "usage: dmnode init --datadir DIR [--keys.rsa_bits=2048|3072]\n\n"
     "Creates DIR (mode 0700) and its RocksDB database, derives the key-encryption key from\n"
     "the master password (KEY_MASTER_PASSWORD or keys.master_password_file; at least 16\n"
     "characters), creates data key version 1, the node's RSA key and secp256k1 account key\n"
     "(stored only encrypted), and prints the node id and Ethereum address.\n"},
    {"run", cmd_run, "run the node daemon in the foreground until SIGINT/SIGTERM",
     "usage: dmnode run --datadir DIR\n\n"
     "Opens the database (a second instance on the same directory is refused), unlocks the\n"
     "key store, starts the P2P overlay (p2p.listen, p2p.bootstrap) and the internal API\n"
     "(api.internal.listen; admin token in api.internal.token_file or DIR/admin.token,\n"
     "created on first run), prints one JSON status line and runs until SIGINT or SIGTERM,\n"
     "then flushes pending commits and stops. SIGHUP logs the status.\n"},
    {"id", cmd_id, "print the node id and Ethereum address (no password needed)",
     "usage: dmnode id --datadir DIR [--json]\n\n"
     "Reads the public identity records; works while the daemon runs.\n"},
    {"keys list", cmd_keys_list, "list data-key versions with dates and record counts",
     "usage: dmnode keys list --datadir DIR [--json]\n\n"
     "Unlocks the key store (verifying its integrity) and lists each data-key version, its\n"
     "creation time, whether it is current and how many sealed records use it. Key material\n"
     "is never shown. Works while the daemon runs (read-only).\n"},
    {"keys rotate", cmd_keys_rotate, "add a new data-key version and make it current",
     "usage: dmnode keys rotate --datadir DIR\n\n"
     "Data sealed under older versions stays readable. When the daemon is running the\n"
     "rotation goes through its internal API.\n"},
    {"keys reencrypt", cmd_keys_reencrypt, "re-seal every record under the current data key",
     "usage: dmnode keys reencrypt --datadir DIR\n\n"
     "Moves records written under older versions forward, in atomic batches; safe to\n"
     "interrupt and repeat. When the daemon is running it goes through its internal API.\n"},
    {"apikey create", cmd_apikey_create, "create an API key for the external API (shown once)",
     "usage: dmnode apikey create --datadir DIR --name NAME\n"
     "       [--expires-at UNIX_SECONDS | --expires-in DAYS] [--json]\n\n"
     "Creates a key for clients of the external API and prints it once: only its hash is\n"
     "stored, so it cannot be shown again. NAME: 1 to 64 of letters, digits, space, '.', '_',\n"
     "'-'. Without an expiry the key never expires. Through the daemon's internal API when it\n"
     "runs (POST /v1/apikeys), else on the data directory. Audited (api_key_created).\n",
     "name expires-at expires-in", 0},
    {"apikey list", cmd_apikey_list, "list API keys: name, prefix, dates, usage (never the key)",
     "usage: dmnode apikey list --datadir DIR [--json]\n\n"
     "Id, name, prefix (first 8 characters), created, expires, last used, status and request\n"
     "count of every key. Through the daemon's internal API when it runs (GET /v1/apikeys).\n"},
    {"apikey revoke", cmd_apikey_revoke, "revoke an API key at once",
     "usage: dmnode apikey revoke ID --datadir DIR\n\n"
     "The key is refused from this moment on; revoking it again changes nothing. Through the\n"
     "daemon's internal API when it runs (DELETE /v1/apikeys/ID). Audited (api_key_revoked).\n",
     "", 1},
    {"share submit", cmd_share_submit, "submit a share to the running daemon",
     "usage: dmnode share submit --recipient 0xADDRESS --amount N (--data-file F | --data - | "
     "--data TEXT)\n\n"
     "Sends the share to the daemon's internal API (POST /v1/shares); prints its id and\n"
     "data hash once it is committed. --data - reads the payload from standard input.\n"
     "Limits: recipient ^0x[a-fA-F0-9]{40}$, 0 < amount < 10^30 (decimal), data <= 1 MiB.\n",
     "recipient amount data-file data", 0},
    {"share get", cmd_share_get, "show a share by id (data in base64)",
     "usage: dmnode share get ID\n\nAsks the running daemon for the share with this 64-hex id.\n",
     "", 1},
    {"peers", cmd_peers, "list the daemon's connected peers",
     "usage: dmnode peers --datadir DIR\n\nConnected peers with traffic counters (GET "
     "/v1/peers).\n"},
    {"status", cmd_status, "show the daemon's status",
     "usage: dmnode status --datadir DIR\n\n"
     "Node id, ports, peers, share counters and per-origin high-water marks (GET /v1/status).\n"},
    {"chain deploy", cmd_chain_deploy, "deploy the audit contract from the node's account",
     "usage: dmnode chain deploy --datadir DIR [--rpc URL]\n\n"
     "Signs a contract-creation transaction for contracts/AuditAnchor.sol (bytecode built into\n"
     "dmnode) with the node's Ethereum key, sends it to --rpc (default chain.rpc_url), waits\n"
     "for the receipt and prints the contract address for chain.contract. The account must\n"
     "hold enough ether for the gas.\n",
     "rpc", 0},
    {"verify proof", cmd_verify_proof, "verify a proof bundle against the chain",
     "usage: dmnode verify proof FILE --rpc URL [--confirmations N] [--json]\n\n"
     "Checks a proof bundle (docs/ANCHORING.md) with nothing but a JSON-RPC endpoint: the\n"
     "leaf, the Merkle path, the receipt and its log from the audit contract, the sender's\n"
     "binding to the origin node, and the confirmations. Each failed check is named. FILE -\n"
     "reads standard input. Exit 0 verified, 5 a check failed.\n",
     "rpc confirmations", 1},
    {"verify share", cmd_verify_share, "fetch a share's proof bundle and verify it",
     "usage: dmnode verify share ID [--rpc URL] [--bundle-out FILE] [--json]\n\n"
     "Asks the running daemon for the share's proof bundle (GET /v1/shares/ID/proof) and\n"
     "verifies it against --rpc (default chain.rpc_url); without an endpoint prints it.\n",
     "rpc bundle-out confirmations", 1},
    {"audit verify", cmd_audit_verify, "check the hash chain of the audit log",
     "usage: dmnode audit verify --datadir DIR [--json]\n\n"
     "Walks the audit log and names the first entry that was altered, removed or reordered\n"
     "(exit 5). Works beside a running daemon (read-only).\n"},
    {"audit trail", cmd_audit_trail, "list the anchors on the chain (a node's or everyone's)",
     "usage: dmnode audit trail --from BLOCK [--to BLOCK] [--node ETH_ADDRESS | --all]\n"
     "                          [--rpc URL] [--contract ADDRESS] [--json]\n\n"
     "Lists the Anchored events of the audit contract (--contract, default chain.contract)\n"
     "from block --from to --to (default: the head) with eth_getLogs on --rpc (default\n"
     "chain.rpc_url), in pages of blocks that shrink when the endpoint refuses a range as\n"
     "too large. By default the anchors sent by this node's Ethereum account (read from\n"
     "--datadir, no password needed); --node ADDRESS for another node's, --all for every\n"
     "sender's. One line per anchor (block, time, tx hash, log index, sender, count, root)\n"
     "and a summary; --json prints an array. A log that is not a well-formed Anchored event\n"
     "of the contract fails the listing (exit 1) naming the field.\n",
     "from to node all rpc contract", 0},
    {"config show", cmd_config_show, "print the effective configuration",
     "usage: dmnode [--config FILE] [--section.key=value ...] config show\n\n"
     "Prints the configuration after file, environment and flags are applied, in file\n"
     "syntax. Contains no secrets.\n"},
    {"config keys", cmd_config_keys, "list every configuration key (Markdown table)",
     "usage: dmnode config keys\n\n"
     "Every key with its type, default, allowed values, environment variable and meaning\n"
     "(the table in docs/CONFIG.md is this output).\n"},
    {"version", cmd_version, "print the version", "usage: dmnode version\n"},
    {"help", cmd_help, "show help for a command", "usage: dmnode help [COMMAND]\n"},
};
#define NCOMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: dmnode [--config FILE] [--section.key=value ...] [--json] COMMAND [ARGS]\n\n"
               "DataMgmt Node: a peer-to-peer data-sharing node with on-chain audit anchoring.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-16s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\nEvery configuration key can be given as --section.key=value, as environment\n"
               "variable DMNODE_SECTION_KEY or in the file named by --config / DMNODE_CONFIG\n"
               "(flag over environment over file); see docs/CONFIG.md. 'dmnode COMMAND --help'\n"
               "describes a command. Exit codes: 0 ok, 1 failure, 2 usage, 3 configuration,\n"
               "4 master password, 5 integrity, 6 data directory busy, 7 (not) initialised.\n");
}

/* Match the longest command name against the leading words. */
static const cli_command *find_command(const char *const *words, int n, int *used)
{
    const cli_command *best = NULL;
    int best_used = 0;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", COMMANDS[i].name);
        int k = 0;
        bool ok = true;
        for (char *save = NULL, *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
            if (k >= n || strcmp(words[k], w) != 0) {
                ok = false;
                break;
            }
            k++;
        }
        if (ok && k > best_used) {
            best = &COMMANDS[i];
            best_used = k;
        }
    }
    *used = best_used;
    return best;
}

static int cmd_help(cli_ctx *c)
{
    int used;
    const cli_command *cmd =
        c->nwords > 1 ? find_command(c->words + 1, c->nwords - 1, &used) : NULL;
    if (cmd)
        fputs(cmd->help, stdout);
    else
        usage(stdout);
    return DM_OK;
}

/* ---------- argument parsing ---------- */

static bool options_allowed(const cli_ctx *c, const cli_command *cmd)
{
    for (int i = 0; i < c->nopts; i++) {
        const char *o = cmd->options, *name = c->opts[i].name;
        size_t n = strlen(name);
        bool ok = false;
        while (o && *o) {
            const char *end = strchr(o, ' ');
            size_t len = end ? (size_t)(end - o) : strlen(o);
            if (len == n && strncmp(o, name, n) == 0)
                ok = true;
            o = end ? end + 1 : NULL;
        }
        if (!ok) {
            fprintf(stderr, "dmnode: unknown option --%s for '%s'\n%s", name, cmd->name, cmd->help);
            return false;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(c->opts[j].name, name) == 0) {
                fprintf(stderr, "dmnode: option --%s given twice\n", name);
                return false;
            }
    }
    return true;
}

static int parse_args(cli_ctx *c, int argc, char **argv, const char **config_file)
{
    dm_buf err = DM_BUF_INIT;
    int rc = DM_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == 0) {
            if (c->nwords == MAX_WORDS) {
                fprintf(stderr, "dmnode: too many arguments\n");
                return DM_EINVAL;
            }
            c->words[c->nwords++] = a;
            continue;
        }
        char name[128];
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (nl >= sizeof name) {
            fprintf(stderr, "dmnode: unknown option %.40s...\n", a);
            return DM_EINVAL;
        }
        memcpy(name, a + 2, nl);
        name[nl] = 0;
        if (strcmp(name, "help") == 0 || strcmp(name, "json") == 0) {
            if (eq) {
                fprintf(stderr, "dmnode: option --%s takes no value\n", name);
                return DM_EINVAL;
            }
            *(strcmp(name, "help") == 0 ? &c->help : &c->json) = true;
            continue;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value && strcmp(name, "all") == 0)
            value = ""; /* a command flag (audit trail --all): takes no value */
        if (!value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "dmnode: option --%s needs a value\n", name);
                return DM_EINVAL;
            }
            value = argv[++i];
        }
        if (strcmp(name, "config") == 0) {
            *config_file = value;
            continue;
        }
        if (!node_config_is_key(name) && !strchr(name, '.')) {
            /* a command option: checked against the command once it is known */
            if (c->nopts == MAX_OPTS) {
                fprintf(stderr, "dmnode: too many options\n");
                return DM_EINVAL;
            }
            if (nl >= sizeof c->opts[0].name) {
                fprintf(stderr, "dmnode: unknown option --%s\n", name);
                return DM_EINVAL;
            }
            memcpy(c->opts[c->nopts].name, name, nl + 1);
            c->opts[c->nopts].value = value;
            c->nopts++;
            continue;
        }
        char origin[160];
        snprintf(origin, sizeof origin, "flag --%s", name);
        dm_buf_reset(&err);
        if ((rc = node_config_set(&c->cfg, name, value, origin, &err))) {
            fprintf(stderr, "dmnode: %s\n", dm_buf_cstr(&err));
            break;
        }
    }
    dm_buf_free(&err);
    return rc;
}

int node_cli_main(int argc, char **argv)
{
    cli_ctx c;
    memset(&c, 0, sizeof c);
    int rc = node_config_init(&c.cfg);
    if (rc)
        return fail(rc, "configuration defaults");

    /* Flags are parsed into a scratch config first, so the file and environment
     * can be applied underneath them in the documented order. */
    const char *config_file = getenv("DMNODE_CONFIG");
    cli_ctx flags;
    memset(&flags, 0, sizeof flags);
    node_config_init(&flags.cfg);
    rc = parse_args(&flags, argc, argv, &config_file);
    node_config_free(&flags.cfg);
    if (rc) {
        node_config_free(&c.cfg);
        return rc == DM_ECONFIG ? NODE_EXIT_CONFIG : NODE_EXIT_USAGE;
    }

    dm_buf err = DM_BUF_INIT;
    if (config_file && *config_file) {
        rc = node_config_load_file(&c.cfg, config_file, &err);
        if (rc == DM_ENOTFOUND)
            fprintf(stderr, "dmnode: cannot read config file %s\n", config_file);
    }
    if (!rc)
        rc = node_config_load_env(&c.cfg, environ, &err);
    if (!rc)
        rc = parse_args(&c, argc, argv, &config_file);
    if (!rc)
        rc = node_config_validate(&c.cfg, &err);
    if (rc) {
        if (err.len)
            fprintf(stderr, "dmnode: %s\n", dm_buf_cstr(&err));
        dm_buf_free(&err);
        node_config_free(&c.cfg);
        return rc == DM_EINVAL ? NODE_EXIT_USAGE : NODE_EXIT_CONFIG;
    }
    dm_buf_free(&err);
    dm_log_set_level(c.cfg.log_level);

    int used = 0;
    const cli_command *cmd = c.nwords ? find_command(c.words, c.nwords, &used) : NULL;
    int code;
    if (!cmd) {
        if (c.nwords)
            fprintf(stderr, "dmnode: unknown command '%s'\n\n", c.words[0]);
        usage(c.nwords || !c.help ? stderr : stdout);
        code = c.nwords || !c.help ? NODE_EXIT_USAGE : NODE_EXIT_OK;
    } else if (c.help) {
        fputs(cmd->help, stdout);
        code = NODE_EXIT_OK;
    } else if (cmd->run != cmd_help && c.nwords - used != cmd->nargs) {
        if (c.nwords - used > cmd->nargs)
            fprintf(stderr, "dmnode: unexpected argument '%s'\n%s", c.words[used + cmd->nargs],
                    cmd->help);
        else
            fprintf(stderr, "dmnode: missing argument\n%s", cmd->help);
        code = NODE_EXIT_USAGE;
    } else if (!options_allowed(&c, cmd)) {
        code = NODE_EXIT_USAGE;
    } else {
        c.args = c.words + used;
        c.nargs = c.nwords - used;
        code = exit_code_for(cmd->run(&c));
    }
    node_config_free(&c.cfg);
    return code;
}
