#include "node_audit.h"

#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "store_keys.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct node_audit {
    store_t *store;
    pthread_mutex_t lock;   /* guards head */
    pthread_mutex_t commit; /* held by a writer from its first append to its store_write */
    node_audit_mark head;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* hash = SHA-256(prev hash bytes || canonical entry text) */
static int entry_hash(const uint8_t prev[32], const char *canon, uint8_t out[32])
{
    const void *parts[2] = {prev, canon};
    size_t lens[2] = {32, strlen(canon)};
    return crypto_sha256_parts(out, parts, lens, 2);
}

/* Parse a stored value into its canonical entry text, seq, prev and hash. */
static int entry_parse(const uint8_t *v, size_t n, char **canon, uint64_t *seq, uint8_t prev[32],
                       uint8_t hash[32])
{
    json_t *doc = json_loadb((const char *)v, n, JSON_REJECT_DUPLICATES, NULL);
    json_t *entry = json_object_get(doc, "entry");
    json_t *h = json_object_get(doc, "hash");
    json_t *s = json_object_get(entry, "seq");
    json_t *p = json_object_get(entry, "prev");
    int rc = DM_ETAMPER;
    if (!json_is_object(entry) || !json_is_string(h) || !json_is_integer(s) || !json_is_string(p) ||
        json_integer_value(s) < 1 || json_string_length(h) != 64 || json_string_length(p) != 64)
        goto out;
    if (dm_hex_decode(hash, 32, json_string_value(h), 64) ||
        dm_hex_decode(prev, 32, json_string_value(p), 64))
        goto out;
    *seq = (uint64_t)json_integer_value(s);
    *canon = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS);
    rc = *canon ? DM_OK : DM_ENOMEM;
out:
    json_decref(doc);
    return rc;
}

int node_audit_open(node_audit_t **out, store_t *store)
{
    node_audit_t *a = calloc(1, sizeof *a);
    if (!a)
        return DM_ENOMEM;
    a->store = store;
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->commit, NULL);
    dm_buf last = DM_BUF_INIT;
    int rc = store_get_last(store, STORE_CF_AUDIT, NULL, 0, NULL, &last);
    if (rc == DM_ENOTFOUND) {
        rc = DM_OK; /* an empty log: the head is seq 0 with an all-zero hash */
    } else if (!rc) {
        char *canon = NULL;
        uint8_t prev[32];
        rc = entry_parse(last.data, last.len, &canon, &a->head.seq, prev, a->head.hash);
        free(canon);
    }
    dm_buf_free(&last);
    if (rc) {
        node_audit_close(a);
        return rc;
    }
    *out = a;
    return DM_OK;
}

void node_audit_close(node_audit_t *a)
{
    if (!a)
        return;
    pthread_mutex_destroy(&a->lock);
    pthread_mutex_destroy(&a->commit);
    free(a);
}

node_audit_mark node_audit_head(node_audit_t *a)
{
    pthread_mutex_lock(&a->lock);
    node_audit_mark m = a->head;
    pthread_mutex_unlock(&a->lock);
    return m;
}

void node_audit_rollback(node_audit_t *a, const node_audit_mark *m)
{
    pthread_mutex_lock(&a->lock);
    a->head = *m;
    pthread_mutex_unlock(&a->lock);
}

void node_audit_lock(node_audit_t *a)
{
    pthread_mutex_lock(&a->commit);
}

void node_audit_unlock(node_audit_t *a)
{
    pthread_mutex_unlock(&a->commit);
}

int node_audit_commit(node_audit_t *a, store_t *store, store_batch_t *b, dm_log_level level,
                      const char *event, json_t *fields, json_t *anchor_event, const char *message)
{
    node_audit_lock(a);
    node_audit_mark m = node_audit_head(a);
    int rc = node_audit_append(a, b, level, event, fields, anchor_event, NULL);
    if (!rc)
        rc = store_write(store, b);
    if (rc)
        node_audit_rollback(a, &m);
    node_audit_unlock(a);
    if (!rc && message)
        dm_log(level, "security", "%s", message);
    return rc;
}

int node_audit_append(node_audit_t *a, store_batch_t *b, dm_log_level level, const char *event,
                      json_t *fields, json_t *anchor_event, const char *message)
{
    int rc = DM_ENOMEM;
    char *canon = NULL, *stored = NULL, *ob = NULL;
    json_t *entry = NULL, *doc = NULL, *outbox = NULL;
    pthread_mutex_lock(&a->lock);
    uint64_t seq = a->head.seq + 1;
    char prev_hex[65], hash_hex[65];
    uint8_t hash[32];
    dm_hex_encode(prev_hex, a->head.hash, 32);
    entry = json_pack("{s:I, s:I, s:s, s:s, s:O?, s:s}", "seq", (json_int_t)seq, "ts_ms",
                      (json_int_t)now_ms(), "level", dm_log_level_name(level), "event", event,
                      "fields", fields, "prev", prev_hex);
    if (!entry || !(canon = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS)))
        goto out;
    if ((rc = entry_hash(a->head.hash, canon, hash)))
        goto out;
    dm_hex_encode(hash_hex, hash, 32);
    rc = DM_ENOMEM;
    doc = json_pack("{s:O, s:s}", "entry", entry, "hash", hash_hex);
    if (!doc || !(stored = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS)))
        goto out;
    uint8_t key[STORE_KEY_U64_LEN];
    store_key_u64(key, seq);
    if ((rc = store_batch_put(b, STORE_CF_AUDIT, key, sizeof key, stored, strlen(stored))))
        goto out;
    if (anchor_event) {
        rc = DM_ENOMEM;
        outbox = json_pack("{s:I, s:s, s:O}", "audit_seq", (json_int_t)seq, "entry_hash", hash_hex,
                           "event", anchor_event);
        if (!outbox || !(ob = json_dumps(outbox, JSON_COMPACT | JSON_SORT_KEYS)))
            goto out;
        if ((rc = store_batch_put(b, STORE_CF_OUTBOX, key, sizeof key, ob, strlen(ob))))
            goto out;
    }
    a->head.seq = seq;
    memcpy(a->head.hash, hash, 32);
    rc = DM_OK;
out:
    pthread_mutex_unlock(&a->lock);
    if (!rc && message)
        dm_log(level, "security", "%s", message);
    free(canon);
    free(stored);
    free(ob);
    json_decref(entry);
    json_decref(doc);
    json_decref(outbox);
    return rc;
}

int node_audit_verify(store_t *store, uint64_t *entries, uint64_t *bad_seq)
{
    *entries = 0;
    *bad_seq = 0;
    store_iter_t *it = NULL;
    int rc = store_iter_create(&it, store, STORE_CF_AUDIT, NULL, 0, NULL, 0);
    if (rc)
        return rc;
    uint8_t prev[32] = {0};
    uint64_t expect = 1;
    const uint8_t *k, *v;
    size_t kl, vl;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        uint64_t kseq, seq;
        char *canon = NULL;
        uint8_t p[32], h[32], want[32];
        if (store_key_u64_decode(k, kl, &kseq) || kseq != expect) {
            /* a gap (removed entry) or an out-of-place key */
            *bad_seq = expect;
            rc = DM_ETAMPER;
            break;
        }
        rc = entry_parse(v, vl, &canon, &seq, p, h);
        if (!rc && (seq != kseq || !crypto_ct_eq(p, prev, 32)))
            rc = DM_ETAMPER;
        if (!rc && (rc = entry_hash(prev, canon, want)) == DM_OK && !crypto_ct_eq(want, h, 32))
            rc = DM_ETAMPER;
        free(canon);
        if (rc) {
            *bad_seq = kseq;
            rc = rc == DM_ENOMEM ? rc : DM_ETAMPER;
            break;
        }
        memcpy(prev, h, 32);
        expect++;
        (*entries)++;
    }
    if (!rc)
        rc = store_iter_status(it);
    store_iter_destroy(it);
    return rc;
}
