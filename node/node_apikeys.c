/*
 * API-key store: records in STORE_CF_APIKEYS, an in-memory table keyed by
 * SHA-256(key), usage counted in memory and flushed in batches.
 *
 * Why a plain SHA-256 and not a password hash (PBKDF2, salt): a key carries 256
 * random bits, so its hash cannot be inverted by guessing, and a slow hash would
 * only slow down every request. A salt would defeat the hash-keyed lookup.
 */
#include "node_apikeys.h"

#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_TAG "dmk_"
#define KEY_TAG_LEN 4
#define KEY_RAW_LEN 32
#define KEY_B64_LEN 43 /* 32 bytes in unpadded base64 */

typedef struct {
    node_apikey_info info;
    uint8_t hash[CRYPTO_SHA256_LEN];
    uint64_t saved_used, saved_count; /* usage as last written to the store */
} ak_entry;

struct node_apikeys {
    store_t *store;
    node_audit_t *audit;
    pthread_mutex_t lock;  /* guards everything below; never held across a store write */
    pthread_mutex_t write; /* serialises create / revoke / flush (their store writes) */
    ak_entry *v;
    size_t n, cap;
    uint32_t *slots; /* open addressing on the hash: 0 empty, else index + 1 */
    size_t nslots;   /* power of two, > 2 n */
};

/* ---------- validation and JSON ---------- */

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > NODE_APIKEY_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == ' ' || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool id_valid(const char *s)
{
    return strlen(s) == NODE_APIKEY_ID_LEN && strspn(s, "0123456789abcdef") == NODE_APIKEY_ID_LEN;
}

static bool b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static bool prefix_valid(const char *s)
{
    if (strlen(s) != NODE_APIKEY_PREFIX_LEN || memcmp(s, KEY_TAG, KEY_TAG_LEN) != 0)
        return false;
    for (size_t i = KEY_TAG_LEN; i < NODE_APIKEY_PREFIX_LEN; i++)
        if (!b64url_char(s[i]))
            return false;
    return true;
}

/* A time field: null / absent = 0, else a non-negative integer below year 10000. */
static int time_field(const json_t *j, const char *name, uint64_t *out)
{
    json_t *v = json_object_get(j, name);
    *out = 0;
    if (!v || json_is_null(v))
        return DM_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (uint64_t)json_integer_value(v) >= NODE_APIKEY_EXPIRES_MAX)
        return DM_EPARSE;
    *out = (uint64_t)json_integer_value(v);
    return DM_OK;
}

static int copy_str(const json_t *j, const char *name, char *out, size_t cap,
                    bool (*valid)(const char *))
{
    const char *s = json_string_value(json_object_get(j, name));
    if (!s || strlen(s) >= cap || !valid(s))
        return DM_EPARSE;
    memcpy(out, s, strlen(s) + 1);
    return DM_OK;
}

int node_apikey_info_from_json(const json_t *j, node_apikey_info *info)
{
    memset(info, 0, sizeof *info);
    json_t *cnt = json_object_get(j, "request_count");
    if (!json_is_object(j) || !json_is_integer(json_object_get(j, "created_at")) ||
        (cnt && !json_is_null(cnt) && (!json_is_integer(cnt) || json_integer_value(cnt) < 0)))
        return DM_EPARSE;
    if (copy_str(j, "id", info->id, sizeof info->id, id_valid) ||
        copy_str(j, "name", info->name, sizeof info->name, name_valid) ||
        copy_str(j, "prefix", info->prefix, sizeof info->prefix, prefix_valid) ||
        time_field(j, "created_at", &info->created_at) ||
        time_field(j, "expires_at", &info->expires_at) ||
        time_field(j, "revoked_at", &info->revoked_at) ||
        time_field(j, "last_used_at", &info->last_used_at))
        return DM_EPARSE;
    info->request_count = json_is_integer(cnt) ? (uint64_t)json_integer_value(cnt) : 0;
    return DM_OK;
}

static json_t *time_json(uint64_t t)
{
    return t ? json_integer((json_int_t)t) : json_null();
}

json_t *node_apikey_info_json(const node_apikey_info *i)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:I}", "id", i->id, "name", i->name,
                     "prefix", i->prefix, "created_at", (json_int_t)i->created_at, "expires_at",
                     time_json(i->expires_at), "revoked_at", time_json(i->revoked_at),
                     "last_used_at", time_json(i->last_used_at), "request_count",
                     (json_int_t)i->request_count);
}

/* The stored record: the public JSON plus the hex hash, canonical (compact, sorted keys). */
static char *record_text(const node_apikey_info *i, const uint8_t hash[CRYPTO_SHA256_LEN])
{
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    dm_hex_encode(hex, hash, CRYPTO_SHA256_LEN);
    json_t *j = node_apikey_info_json(i);
    char *text = NULL;
    if (j && json_object_set_new(j, "hash", json_string(hex)) == 0)
        text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return text;
}

static int batch_record(store_batch_t *b, const node_apikey_info *i,
                        const uint8_t hash[CRYPTO_SHA256_LEN])
{
    char *text = record_text(i, hash);
    if (!text)
        return DM_ENOMEM;
    int rc = store_batch_put(b, STORE_CF_APIKEYS, i->id, NODE_APIKEY_ID_LEN, text, strlen(text));
    free(text);
    return rc;
}

/* ---------- the table (callers hold k->lock) ---------- */

static size_t slot_of(const node_apikeys_t *k, const uint8_t hash[CRYPTO_SHA256_LEN])
{
    /* the hash of a 256-bit random key is uniform: its first bytes index the table */
    return (size_t)dm_get_u64be(hash) & (k->nslots - 1);
}

/* Index of the entry with this hash, or -1. Every occupied slot on the probe
 * path is compared in constant time. */
static long find_hash(const node_apikeys_t *k, const uint8_t hash[CRYPTO_SHA256_LEN])
{
    if (!k->nslots)
        return -1;
    for (size_t s = slot_of(k, hash), probes = 0; probes < k->nslots;
         s = (s + 1) & (k->nslots - 1), probes++) {
        uint32_t e = k->slots[s];
        if (!e)
            return -1;
        if (crypto_ct_eq(k->v[e - 1].hash, hash, CRYPTO_SHA256_LEN))
            return (long)e - 1;
    }
    return -1;
}

static long find_id(const node_apikeys_t *k, const char *id)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->v[i].info.id, id) == 0)
            return (long)i;
    return -1;
}

static void slots_place(uint32_t *slots, size_t nslots, const uint8_t *hash, uint32_t val)
{
    size_t s = (size_t)dm_get_u64be(hash) & (nslots - 1);
    while (slots[s])
        s = (s + 1) & (nslots - 1);
    slots[s] = val;
}

/* Make room for one more entry (array and slots). */
static int table_reserve(node_apikeys_t *k)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 16;
        ak_entry *v = realloc(k->v, cap * sizeof *v);
        if (!v)
            return DM_ENOMEM;
        k->v = v;
        k->cap = cap;
    }
    if (2 * (k->n + 1) >= k->nslots) {
        size_t ns = k->nslots ? 2 * k->nslots : 32;
        uint32_t *slots = calloc(ns, sizeof *slots);
        if (!slots)
            return DM_ENOMEM;
        for (size_t i = 0; i < k->n; i++)
            slots_place(slots, ns, k->v[i].hash, (uint32_t)i + 1);
        free(k->slots);
        k->slots = slots;
        k->nslots = ns;
    }
    return DM_OK;
}

/* Add an entry whose hash and id are not in the table. */
static int table_add(node_apikeys_t *k, const ak_entry *e)
{
    int rc = table_reserve(k);
    if (rc)
        return rc;
    k->v[k->n] = *e;
    slots_place(k->slots, k->nslots, e->hash, (uint32_t)k->n + 1);
    k->n++;
    return DM_OK;
}

/* ---------- open / close ---------- */

static int load_record(node_apikeys_t *k, const uint8_t *key, size_t klen, const uint8_t *val,
                       size_t vlen)
{
    json_t *j = json_loadb((const char *)val, vlen, JSON_REJECT_DUPLICATES, NULL);
    ak_entry e;
    memset(&e, 0, sizeof e);
    const char *hex = json_string_value(json_object_get(j, "hash"));
    int rc = DM_ECORRUPT;
    if (!j || node_apikey_info_from_json(j, &e.info) || !hex ||
        dm_hex_decode(e.hash, CRYPTO_SHA256_LEN, hex, strlen(hex)) || klen != NODE_APIKEY_ID_LEN ||
        memcmp(key, e.info.id, klen) != 0 || find_hash(k, e.hash) >= 0 ||
        find_id(k, e.info.id) >= 0) {
        char kid[NODE_APIKEY_ID_LEN + 1] = "?";
        if (klen == NODE_APIKEY_ID_LEN) {
            memcpy(kid, key, klen);
            kid[klen] = 0;
            if (!id_valid(kid))
                snprintf(kid, sizeof kid, "?");
        }
        dm_log(DM_LOG_ERROR, "security", "API key record %s (key of %zu bytes) is malformed", kid,
               klen);
        goto out;
    }
    e.saved_used = e.info.last_used_at;
    e.saved_count = e.info.request_count;
    rc = table_add(k, &e);
out:
    json_decref(j);
    return rc;
}

int node_apikeys_open(node_apikeys_t **out, store_t *store, node_audit_t *audit)
{
    node_apikeys_t *k = calloc(1, sizeof *k);
    if (!k)
        return DM_ENOMEM;
    k->store = store;
    k->audit = audit;
    pthread_mutex_init(&k->lock, NULL);
    pthread_mutex_init(&k->write, NULL);
    store_iter_t *it = NULL;
    int rc = store_iter_create(&it, store, STORE_CF_APIKEYS, NULL, 0, NULL, 0);
    const uint8_t *key, *val;
    size_t kl, vl;
    while (!rc && store_iter_next(it, &key, &kl, &val, &vl))
        rc = load_record(k, key, kl, val, vl);
    if (!rc)
        rc = store_iter_status(it);
    store_iter_destroy(it);
    if (rc) {
        k->n = 0; /* nothing to flush */
        node_apikeys_close(k);
        return rc;
    }
    *out = k;
    return DM_OK;
}

void node_apikeys_close(node_apikeys_t *k)
{
    if (!k)
        return;
    int rc = node_apikeys_flush(k);
    if (rc)
        dm_log(DM_LOG_WARNING, "security", "API key usage counters not saved: %s", dm_strerror(rc));
    if (k->v)
        crypto_memzero(k->v, k->cap * sizeof *k->v);
    free(k->v);
    free(k->slots);
    pthread_mutex_destroy(&k->lock);
    pthread_mutex_destroy(&k->write);
    free(k);
}

/* ---------- create / revoke ---------- */

static int set_err(char *errmsg, size_t errcap, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int set_err(char *errmsg, size_t errcap, int rc, const char *fmt, ...)
{
    if (errmsg && errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, errcap, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Write `b` (holding the record) with the audit entry of a create or revoke. The
 * entry and the log line carry id, name and prefix (and the expiry on create),
 * never the key or its hash. */
static int audit_commit(node_apikeys_t *k, store_batch_t *b, const node_apikey_info *i,
                        const char *event, const char *verb, bool with_expiry)
{
    json_t *fields =
        json_pack("{s:s, s:s, s:s}", "id", i->id, "name", i->name, "prefix", i->prefix);
    if (!fields ||
        (with_expiry && json_object_set_new(fields, "expires_at", time_json(i->expires_at)))) {
        json_decref(fields);
        return DM_ENOMEM;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "API key %s: id=%s name=%s api_key=%s***", verb, i->id, i->name,
             i->prefix);
    int rc = node_audit_commit(k->audit, k->store, b, DM_LOG_INFO, event, fields, NULL, msg);
    json_decref(fields);
    return rc;
}

/* A fresh key, its hash and an id that are not in the table. Caller holds k->write. */
static int new_key(node_apikeys_t *k, char key[NODE_APIKEY_LEN + 1], ak_entry *e)
{
    uint8_t raw[KEY_RAW_LEN], rid[NODE_APIKEY_ID_LEN / 2];
    dm_buf b64 = DM_BUF_INIT;
    int rc;
    for (;;) {
        dm_buf_reset(&b64);
        if ((rc = crypto_random(raw, sizeof raw)) || (rc = crypto_random(rid, sizeof rid)) ||
            (rc = dm_b64_encode(&b64, raw, sizeof raw, DM_B64_URL)))
            break;
        /* 44 padded characters: drop the single '=' */
        memcpy(key, KEY_TAG, KEY_TAG_LEN);
        memcpy(key + KEY_TAG_LEN, b64.data, KEY_B64_LEN);
        key[NODE_APIKEY_LEN] = 0;
        dm_hex_encode(e->info.id, rid, sizeof rid);
        if ((rc = crypto_sha256(e->hash, key, NODE_APIKEY_LEN)))
            break;
        pthread_mutex_lock(&k->lock);
        bool taken = find_hash(k, e->hash) >= 0 || find_id(k, e->info.id) >= 0;
        pthread_mutex_unlock(&k->lock);
        if (!taken)
            break;
    }
    memcpy(e->info.prefix, key, NODE_APIKEY_PREFIX_LEN);
    e->info.prefix[NODE_APIKEY_PREFIX_LEN] = 0;
    crypto_memzero(raw, sizeof raw);
    dm_buf_free_secure(&b64);
    return rc;
}

int node_apikeys_create(node_apikeys_t *k, const char *name, uint64_t expires_at, uint64_t now,
                        node_apikey_info *info, char key_out[NODE_APIKEY_LEN + 1], char *errmsg,
                        size_t errcap)
{
    if (errmsg && errcap)
        errmsg[0] = 0;
    key_out[0] = 0;
    if (!name || !name_valid(name))
        return set_err(errmsg, errcap, DM_EINVAL,
                       "name must be 1 to %d characters of letters, digits, space, '.', '_', '-'",
                       NODE_APIKEY_NAME_MAX);
    if (expires_at && (expires_at <= now || expires_at >= NODE_APIKEY_EXPIRES_MAX))
        return set_err(errmsg, errcap, DM_EINVAL,
                       "expires_at must be a unix time after now (%llu) and before %llu, or "
                       "absent for a key that never expires",
                       (unsigned long long)now, (unsigned long long)NODE_APIKEY_EXPIRES_MAX);
    ak_entry e;
    memset(&e, 0, sizeof e);
    snprintf(e.info.name, sizeof e.info.name, "%s", name);
    e.info.created_at = now;
    e.info.expires_at = expires_at;

    pthread_mutex_lock(&k->write);
    pthread_mutex_lock(&k->lock);
    size_t count = k->n;
    pthread_mutex_unlock(&k->lock);
    store_batch_t *b = NULL;
    int rc;
    if (count >= NODE_APIKEYS_MAX) {
        rc = set_err(errmsg, errcap, DM_ELIMIT, "at most %d API keys (revoked ones count)",
                     NODE_APIKEYS_MAX);
        goto out;
    }
    pthread_mutex_lock(&k->lock);
    rc = table_reserve(k); /* only writers add, and this one holds k->write */
    pthread_mutex_unlock(&k->lock);
    if (rc || (rc = new_key(k, key_out, &e)) || (rc = store_batch_create(&b)) ||
        (rc = batch_record(b, &e.info, e.hash)))
        goto fail;
    if ((rc = audit_commit(k, b, &e.info, "api_key_created", "created", true)))
        goto fail;
    pthread_mutex_lock(&k->lock);
    table_add(k, &e); /* room reserved above: cannot fail */
    pthread_mutex_unlock(&k->lock);
    if (info)
        *info = e.info;
    goto out;
fail:
    crypto_memzero(key_out, NODE_APIKEY_LEN + 1);
    set_err(errmsg, errcap, rc, "storing the API key failed: %s", dm_strerror(rc));
out:
    pthread_mutex_unlock(&k->write);
    crypto_memzero(e.hash, sizeof e.hash);
    store_batch_destroy(b);
    return rc;
}

int node_apikeys_revoke(node_apikeys_t *k, const char *id, uint64_t now)
{
    if (!id || !id_valid(id))
        return DM_ENOTFOUND;
    if (!now)
        return DM_EINVAL; /* 0 means "not revoked" */
    pthread_mutex_lock(&k->write);
    pthread_mutex_lock(&k->lock);
    long i = find_id(k, id);
    ak_entry e;
    if (i >= 0)
        e = k->v[i];
    pthread_mutex_unlock(&k->lock);
    store_batch_t *b = NULL;
    int rc = DM_OK;
    if (i < 0) {
        rc = DM_ENOTFOUND;
        goto out;
    }
    if (e.info.revoked_at)
        goto out; /* idempotent: nothing written, no second audit entry */
    e.info.revoked_at = now;
    if ((rc = store_batch_create(&b)) || (rc = batch_record(b, &e.info, e.hash)))
        goto out;
    if ((rc = audit_commit(k, b, &e.info, "api_key_revoked", "revoked", false)))
        goto out;
    pthread_mutex_lock(&k->lock);
    k->v[i].info.revoked_at = now;
    /* the record holds the usage of the copy; later uses of this key are refused */
    k->v[i].saved_used = e.info.last_used_at;
    k->v[i].saved_count = e.info.request_count;
    pthread_mutex_unlock(&k->lock);
out:
    pthread_mutex_unlock(&k->write);
    crypto_memzero(&e, sizeof e);
    store_batch_destroy(b);
    return rc;
}

/* ---------- queries ---------- */

static int info_cmp(const void *pa, const void *pb)
{
    const node_apikey_info *a = pa, *b = pb;
    if (a->created_at != b->created_at)
        return a->created_at < b->created_at ? -1 : 1;
    return strcmp(a->id, b->id);
}

int node_apikeys_list(node_apikeys_t *k, node_apikey_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&k->lock);
    size_t cnt = k->n;
    node_apikey_info *v = cnt ? malloc(cnt * sizeof *v) : NULL;
    for (size_t i = 0; v && i < cnt; i++)
        v[i] = k->v[i].info;
    pthread_mutex_unlock(&k->lock);
    if (cnt && !v)
        return DM_ENOMEM;
    if (cnt)
        qsort(v, cnt, sizeof *v, info_cmp);
    *out = v;
    *n = cnt;
    return DM_OK;
}

int node_apikeys_get(node_apikeys_t *k, const char *id, node_apikey_info *info)
{
    if (!id || !id_valid(id))
        return DM_ENOTFOUND;
    pthread_mutex_lock(&k->lock);
    long i = find_id(k, id);
    if (i >= 0)
        *info = k->v[i].info;
    pthread_mutex_unlock(&k->lock);
    return i >= 0 ? DM_OK : DM_ENOTFOUND;
}

/* ---------- check ---------- */

static bool key_shape_ok(const char *p)
{
    size_t n = strnlen(p, NODE_APIKEY_LEN + 1);
    if (n != NODE_APIKEY_LEN || memcmp(p, KEY_TAG, KEY_TAG_LEN) != 0)
        return false;
    for (size_t i = KEY_TAG_LEN; i < NODE_APIKEY_LEN; i++)
        if (!b64url_char(p[i]))
            return false;
    return true;
}

int node_apikeys_check(node_apikeys_t *k, const char *presented, uint64_t now,
                       node_apikey_info *info, const char **why)
{
    const char *reason = "unknown";
    uint8_t h[CRYPTO_SHA256_LEN];
    int rc = DM_EAUTH;
    if (!presented || !key_shape_ok(presented) ||
        crypto_sha256(h, presented, NODE_APIKEY_LEN) != DM_OK)
        goto out;
    pthread_mutex_lock(&k->lock);
    long i = find_hash(k, h);
    if (i >= 0) {
        node_apikey_info *ki = &k->v[i].info;
        if (ki->revoked_at) {
            reason = "revoked";
        } else if (ki->expires_at && ki->expires_at <= now) {
            reason = "expired";
        } else {
            reason = NULL;
            rc = DM_OK;
            if (now > ki->last_used_at)
                ki->last_used_at = now;
            ki->request_count++;
            if (info)
                *info = *ki;
        }
    }
    pthread_mutex_unlock(&k->lock);
out:
    crypto_memzero(h, sizeof h);
    if (why)
        *why = reason;
    return rc;
}

/* ---------- flush ---------- */

static bool usage_changed(const ak_entry *e)
{
    return e->info.request_count != e->saved_count || e->info.last_used_at != e->saved_used;
}

int node_apikeys_flush(node_apikeys_t *k)
{
    /* Holding k->write, no entry is added, so indexes stay valid throughout. The
     * changed entries are copied under the table lock and written outside it. */
    pthread_mutex_lock(&k->write);
    pthread_mutex_lock(&k->lock);
    size_t dirty = 0;
    for (size_t i = 0; i < k->n; i++)
        dirty += usage_changed(&k->v[i]);
    ak_entry *copy = dirty ? malloc(dirty * sizeof *copy) : NULL;
    size_t *idx = dirty ? malloc(dirty * sizeof *idx) : NULL;
    size_t m = 0;
    for (size_t i = 0; copy && idx && i < k->n; i++)
        if (usage_changed(&k->v[i])) {
            idx[m] = i;
            copy[m++] = k->v[i];
        }
    pthread_mutex_unlock(&k->lock);
    int rc = dirty && (!copy || !idx) ? DM_ENOMEM : DM_OK;
    store_batch_t *b = NULL;
    if (rc || !m || (rc = store_batch_create(&b)))
        goto out;
    for (size_t i = 0; !rc && i < m; i++)
        rc = batch_record(b, &copy[i].info, copy[i].hash);
    if (rc || (rc = store_write(k->store, b)))
        goto out;
    pthread_mutex_lock(&k->lock);
    for (size_t i = 0; i < m; i++) {
        k->v[idx[i]].saved_used = copy[i].info.last_used_at;
        k->v[idx[i]].saved_count = copy[i].info.request_count;
    }
    pthread_mutex_unlock(&k->lock);
out:
    pthread_mutex_unlock(&k->write);
    if (copy)
        crypto_memzero(copy, dirty * sizeof *copy);
    free(copy);
    free(idx);
    store_batch_destroy(b);
    return rc;
}
