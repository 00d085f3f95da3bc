#include "node_audit.h"

#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_util.h"
#include "store_keys.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define EV_PREFIX "ev/" /* STORE_CF_ANCHORS: anchor record of one audit seq (docs/ANCHORING.md) */

typedef struct {
    dm_log_level level;
    char *event;
    json_t *fields; /* owned, masked */
} post_item;

enum { ST_DETACHED = 0, ST_ATTACHED, ST_DETACHING };

struct node_audit {
    store_t *store;
    pthread_mutex_t lock;   /* guards head, anchor_seq */
    pthread_mutex_t commit; /* held by a writer from its first append to its store_write */
    node_audit_mark head;
    uint64_t anchor_seq;    /* seq of the last audit_head entry appended, 0 if not the head */
    atomic_bool closing;    /* set by detach: a running prune stops between batches */

    /* post API: loop thread, except job/jn/job_* while the work is in flight */
    uv_loop_t *loop;
    uv_idle_t idle; /* flushes at the next loop iteration: one batch for a burst */
    uv_work_t work;
    int state;
    bool scheduled, in_flight;
    post_item *q, *job; /* NODE_AUDIT_POST_MAX each; swapped at a flush */
    size_t qn, jn;
    uint64_t pend_dropped, pend_failed; /* not yet recorded by an audit_overflow entry */
    uint64_t job_dropped, job_failed;
    int job_rc;
    store_batch_t *jb;
    node_audit_post_stats stats;
    void (*detach_cb)(void *);
    void *detach_arg;
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

/* ---------------------------------------------------------------- masking and text lines */

static bool secret_name(const char *k)
{
    static const char *const exact[] = {"key",    "api_key", "apikey",        "token",
                                        "secret", "password", "passphrase", "authorization"};
    static const char *const suffix[] = {"_key", "_token", "_secret", "_password", "_passphrase"};
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (!strcasecmp(k, exact[i]))
            return true;
    size_t n = strlen(k);
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
        size_t m = strlen(suffix[i]);
        if (n > m && !strcasecmp(k + n - m, suffix[i]))
            return true;
    }
    return false;
}

static bool already_masked(const char *v)
{
    size_t n = strlen(v);
    return n >= 3 && n <= 7 && !strcmp(v + n - 3, "***");
}

/* true if mask_fields would change something */
static bool has_secret(json_t *j)
{
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v)
        {
            if (json_is_string(v) ? secret_name(k) && !already_masked(json_string_value(v))
                                  : has_secret(v))
                return true;
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
        {
            if (has_secret(v))
                return true;
        }
    }
    return false;
}

void node_audit_mask_fields(json_t *fields)
{
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_object(fields)) {
        json_object_foreach(fields, k, v)
        {
            if (json_is_string(v) && secret_name(k) && !already_masked(json_string_value(v))) {
                char m[8];
                dm_log_mask(m, json_string_value(v));
                json_string_set(v, m); /* in place: the object's key order is kept */
            } else {
                node_audit_mask_fields(v);
            }
        }
    } else if (json_is_array(fields)) {
        json_array_foreach(fields, i, v) node_audit_mask_fields(v);
    }
}

/* A new reference to fields with secrets masked (a copy only when there are any). */
static json_t *masked_ref(json_t *fields)
{
    if (!fields)
        return NULL;
    if (!has_secret(fields))
        return json_incref(fields);
    json_t *c = json_deep_copy(fields);
    node_audit_mask_fields(c);
    return c;
}

/* The entry's text line: the caller's message, or "event: k=v, k=v". */
static void log_entry(dm_log_level level, const char *event, json_t *fields, const char *message)
{
    if (level < dm_log_get_level())
        return;
    if (message) {
        dm_log(level, "security", "%s", message);
        return;
    }
    dm_buf line = DM_BUF_INIT;
    dm_buf_puts(&line, event);
    const char *k;
    json_t *v;
    const char *sep = ": ";
    json_object_foreach(fields, k, v)
    {
        dm_buf_printf(&line, "%s%s=", sep, k);
        sep = ", ";
        if (json_is_string(v)) {
            dm_buf_puts(&line, json_string_value(v));
        } else {
            char *t = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
            dm_buf_puts(&line, t ? t : "?");
            free(t);
        }
        if (line.len > 900)
            break; /* dm_log keeps 1 KiB of a line */
    }
    dm_log(level, "security", "%s", dm_buf_cstr(&line));
    dm_buf_free(&line);
}

/* ---------------------------------------------------------------- parsing */

typedef struct {
    json_t *doc; /* owned */
    json_t *entry;
    uint64_t seq, ts_ms;
    const char *event;
    uint8_t prev[32], hash[32];
    char *canon;
} parsed_entry;

static void pe_free(parsed_entry *p)
{
    json_decref(p->doc);
    free(p->canon);
    memset(p, 0, sizeof *p);
}

/* Parse a stored value into its canonical entry text, seq, ts, event, prev and hash. */
static int entry_parse(const uint8_t *v, size_t n, parsed_entry *p)
{
    memset(p, 0, sizeof *p);
    p->doc = json_loadb((const char *)v, n, JSON_REJECT_DUPLICATES, NULL);
    json_t *entry = json_object_get(p->doc, "entry");
    json_t *h = json_object_get(p->doc, "hash");
    json_t *s = json_object_get(entry, "seq");
    json_t *t = json_object_get(entry, "ts_ms");
    json_t *e = json_object_get(entry, "event");
    json_t *pv = json_object_get(entry, "prev");
    if (!json_is_object(entry) || !json_is_string(h) || !json_is_integer(s) ||
        !json_is_integer(t) || !json_is_string(e) || !json_is_string(pv) ||
        json_integer_value(s) < 1 || json_integer_value(t) < 0 || json_string_length(h) != 64 ||
        json_string_length(pv) != 64 || dm_hex_decode(p->hash, 32, json_string_value(h), 64) ||
        dm_hex_decode(p->prev, 32, json_string_value(pv), 64)) {
        pe_free(p);
        return DM_ETAMPER;
    }
    p->entry = entry;
    p->seq = (uint64_t)json_integer_value(s);
    p->ts_ms = (uint64_t)json_integer_value(t);
    p->event = json_string_value(e);
    p->canon = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS);
    if (!p->canon) {
        pe_free(p);
        return DM_ENOMEM;
    }
    return DM_OK;
}

/*
 * Check one entry read under key `kseq` against the chain so far (`prev` is
 * the hash it must link to). NULL if it holds, else why not.
 */
static const char *entry_check(const parsed_entry *p, uint64_t kseq, const uint8_t prev[32])
{
    uint8_t want[32];
    if (p->seq != kseq)
        return "entry out of place: its seq differs from its key (moved or swapped)";
    if (entry_hash(p->prev, p->canon, want) || !crypto_ct_eq(want, p->hash, 32))
        return "entry altered: its hash does not match its contents";
    if (!crypto_ct_eq(p->prev, prev, 32))
        return "entry does not link to the previous one (this entry or the one before it "
               "was replaced, or entries were reordered)";
    return NULL;
}

typedef struct {
    bool present;
    uint64_t seq, ts_ms, removed_total;
    uint8_t hash[32];
} checkpoint;

/* DM_OK (cp->present false when absent), DM_ETAMPER when unreadable. `raw` gets the bytes. */
static int checkpoint_read(store_t *s, checkpoint *cp, dm_buf *raw)
{
    memset(cp, 0, sizeof *cp);
    dm_buf_reset(raw);
    int rc = store_get(s, STORE_CF_META, NODE_AUDIT_CHECKPOINT_KEY,
                       strlen(NODE_AUDIT_CHECKPOINT_KEY), raw);
    if (rc == DM_ENOTFOUND)
        return DM_OK;
    if (rc)
        return rc;
    json_t *j = json_loadb((const char *)raw->data, raw->len, JSON_REJECT_DUPLICATES, NULL);
    json_t *seq = json_object_get(j, "seq"), *h = json_object_get(j, "hash");
    json_t *ts = json_object_get(j, "ts_ms"), *tot = json_object_get(j, "removed_total");
    rc = DM_ETAMPER;
    if (json_is_integer(seq) && json_integer_value(seq) >= 1 && json_is_string(h) &&
        json_string_length(h) == 64 && json_is_integer(ts) && json_is_integer(tot) &&
        !dm_hex_decode(cp->hash, 32, json_string_value(h), 64)) {
        cp->present = true;
        cp->seq = (uint64_t)json_integer_value(seq);
        cp->ts_ms = (uint64_t)json_integer_value(ts);
        cp->removed_total = (uint64_t)json_integer_value(tot);
        rc = DM_OK;
    }
    json_decref(j);
    return rc;
}

/* ---------------------------------------------------------------- open / head */

int node_audit_open(node_audit_t **out, store_t *store)
{
    node_audit_t *a = calloc(1, sizeof *a);
    if (!a)
        return DM_ENOMEM;
    a->store = store;
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->commit, NULL);
    atomic_init(&a->closing, false);
    dm_buf last = DM_BUF_INIT;
    int rc = store_get_last(store, STORE_CF_AUDIT, NULL, 0, NULL, &last);
    if (rc == DM_ENOTFOUND) {
        /* an empty log: the head is seq 0 with an all-zero hash, or the checkpoint
         * (retention never removes the last entry, but be exact if it is gone) */
        checkpoint cp;
        rc = checkpoint_read(store, &cp, &last);
        if (!rc && cp.present) {
            a->head.seq = cp.seq;
            memcpy(a->head.hash, cp.hash, 32);
        }
    } else if (!rc) {
        parsed_entry p;
        if (!(rc = entry_parse(last.data, last.len, &p))) {
            a->head.seq = p.seq;
            memcpy(a->head.hash, p.hash, 32);
            if (!strcmp(p.event, "audit_head"))
                a->anchor_seq = p.seq;
            pe_free(&p);
        }
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
    free(a->q);
    free(a->job);
    store_batch_destroy(a->jb);
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

/* ---------------------------------------------------------------- append */

/* Append one entry to `b` (no text line). */
static int append_entry(node_audit_t *a, store_batch_t *b, dm_log_level level, const char *event,
                        json_t *fields_in, json_t *anchor_event)
{
    int rc = DM_ENOMEM;
    char *canon = NULL, *stored = NULL, *ob = NULL;
    json_t *entry = NULL, *doc = NULL, *outbox = NULL;
    json_t *fields = masked_ref(fields_in);
    if (fields_in && !fields)
        return DM_ENOMEM;
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
    a->anchor_seq = strcmp(event, "audit_head") ? 0 : seq;
    rc = DM_OK;
out:
    pthread_mutex_unlock(&a->lock);
    free(canon);
    free(stored);
    free(ob);
    json_decref(entry);
    json_decref(doc);
    json_decref(outbox);
    json_decref(fields);
    return rc;
}

int node_audit_append(node_audit_t *a, store_batch_t *b, dm_log_level level, const char *event,
                      json_t *fields, json_t *anchor_event, const char *message)
{
    int rc = append_entry(a, b, level, event, fields, anchor_event);
    if (!rc && level >= dm_log_get_level()) {
        json_t *f = message ? NULL : masked_ref(fields);
        log_entry(level, event, f, message);
        json_decref(f);
    }
    return rc;
}

/* Append under the commit lock, write, roll back on failure; the line after the commit. */
static int commit_locked(node_audit_t *a, store_t *store, store_batch_t *b, dm_log_level level,
                         const char *event, json_t *fields, json_t *anchor_event,
                         const char *message)
{
    node_audit_mark m = node_audit_head(a);
    int rc = append_entry(a, b, level, event, fields, anchor_event);
    if (!rc)
        rc = store_write(store, b);
    if (rc) {
        node_audit_rollback(a, &m);
    } else if (level >= dm_log_get_level()) {
        json_t *f = message ? NULL : masked_ref(fields);
        log_entry(level, event, f, message);
        json_decref(f);
    }
    return rc;
}

int node_audit_commit(node_audit_t *a, store_t *store, store_batch_t *b, dm_log_level level,
                      const char *event, json_t *fields, json_t *anchor_event, const char *message)
{
    node_audit_lock(a);
    int rc = commit_locked(a, store, b, level, event, fields, anchor_event, message);
    node_audit_unlock(a);
    return rc;
}

/* ---------------------------------------------------------------- post API (loop thread) */

static void post_items_free(post_item *it, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(it[i].event);
        json_decref(it[i].fields);
        it[i].event = NULL;
        it[i].fields = NULL;
    }
}

static json_t *overflow_fields(uint64_t dropped, uint64_t failed)
{
    json_t *f = json_pack("{s:I}", "dropped", (json_int_t)dropped);
    if (f && failed)
        json_object_set_new(f, "write_failed", json_integer((json_int_t)failed));
    return f;
}

/* thread pool: one batch for everything taken at the flush */
static void post_work(uv_work_t *w)
{
    node_audit_t *a = DM_CONTAINER_OF(w, node_audit_t, work);
    int rc = DM_OK;
    if (!a->jb && (rc = store_batch_create(&a->jb)))
        goto out;
    store_batch_clear(a->jb);
    node_audit_lock(a);
    node_audit_mark m = node_audit_head(a);
    for (size_t i = 0; i < a->jn && !rc; i++)
        rc = append_entry(a, a->jb, a->job[i].level, a->job[i].event, a->job[i].fields, NULL);
    if (!rc && (a->job_dropped || a->job_failed)) {
        json_t *f = overflow_fields(a->job_dropped, a->job_failed);
        rc = f ? append_entry(a, a->jb, DM_LOG_WARNING, "audit_overflow", f, NULL) : DM_ENOMEM;
        json_decref(f);
    }
    if (!rc)
        rc = store_write(a->store, a->jb);
    if (rc)
        node_audit_rollback(a, &m);
    node_audit_unlock(a);
out:
    a->job_rc = rc;
    post_items_free(a->job, a->jn);
}

static void post_flush(node_audit_t *a);

static void detach_closed(uv_handle_t *h)
{
    node_audit_t *a = DM_CONTAINER_OF((uv_idle_t *)h, node_audit_t, idle);
    post_items_free(a->q, a->qn); /* nothing is left unless a write failed at the end */
    a->qn = 0;
    a->loop = NULL;
    void (*cb)(void *) = a->detach_cb;
    void *arg = a->detach_arg;
    a->detach_cb = NULL;
    if (cb)
        cb(arg);
}

static void detach_finish(node_audit_t *a)
{
    a->state = ST_DETACHED;
    if (a->pend_dropped || a->pend_failed || a->qn)
        dm_log(DM_LOG_ERROR, "security",
               "audit log detached with %llu entries not recorded (%llu dropped, %llu lost to "
               "failed writes)",
               (unsigned long long)(a->pend_dropped + a->pend_failed + a->qn),
               (unsigned long long)a->pend_dropped, (unsigned long long)a->pend_failed);
    uv_close((uv_handle_t *)&a->idle, detach_closed);
}

static void post_after(uv_work_t *w, int status)
{
    node_audit_t *a = DM_CONTAINER_OF(w, node_audit_t, work);
    a->in_flight = false;
    int rc = status ? DM_EIO : a->job_rc;
    if (rc) {
        a->stats.failed += a->jn;
        a->pend_failed += a->job_failed + a->jn;
        a->pend_dropped += a->job_dropped;
        dm_log(DM_LOG_ERROR, "security", "audit: %zu entries not written: %s %s", a->jn,
               dm_strerror(rc), store_errmsg());
    } else {
        a->stats.written += a->jn;
        if (a->job_dropped || a->job_failed) {
            a->stats.overflow_entries++;
            json_t *f = overflow_fields(a->job_dropped, a->job_failed);
            log_entry(DM_LOG_WARNING, "audit_overflow", f, NULL);
            json_decref(f);
        }
    }
    a->jn = 0;
    a->job_dropped = a->job_failed = 0;
    /* more to write: at once (posts arrived meanwhile). After a failure only new posts
     * trigger a retry, so a broken store does not spin. */
    if (a->qn || (!rc && (a->pend_dropped || a->pend_failed)))
        post_flush(a);
    else if (a->state == ST_DETACHING)
        detach_finish(a);
}

/* Take the queue and write it on the thread pool. */
static void post_flush(node_audit_t *a)
{
    if (a->in_flight)
        return; /* post_after flushes again */
    if (a->scheduled) {
        uv_idle_stop(&a->idle);
        a->scheduled = false;
    }
    post_item *t = a->job;
    a->job = a->q;
    a->q = t;
    a->jn = a->qn;
    a->qn = 0;
    a->job_dropped = a->pend_dropped;
    a->job_failed = a->pend_failed;
    a->pend_dropped = a->pend_failed = 0;
    a->in_flight = true;
    if (uv_queue_work(a->loop, &a->work, post_work, post_after)) {
        a->job_rc = DM_EIO;
        post_items_free(a->job, a->jn);
        post_after(&a->work, 0);
    }
}

static void on_idle(uv_idle_t *h)
{
    node_audit_t *a = DM_CONTAINER_OF(h, node_audit_t, idle);
    uv_idle_stop(h);
    a->scheduled = false;
    post_flush(a);
}

int node_audit_attach(node_audit_t *a, uv_loop_t *loop)
{
    if (a->state != ST_DETACHED || a->loop)
        return DM_EEXIST;
    if (!a->q)
        a->q = calloc(NODE_AUDIT_POST_MAX, sizeof *a->q);
    if (!a->job)
        a->job = calloc(NODE_AUDIT_POST_MAX, sizeof *a->job);
    if (!a->q || !a->job)
        return DM_ENOMEM;
    if (uv_idle_init(loop, &a->idle))
        return DM_EIO;
    a->loop = loop;
    a->state = ST_ATTACHED;
    atomic_store(&a->closing, false);
    return DM_OK;
}

int node_audit_post(node_audit_t *a, dm_log_level level, const char *event, json_t *fields,
                    const char *message)
{
    if (a->state == ST_DETACHED)
        return DM_ECLOSED;
    if (!event || !*event)
        return DM_EINVAL;
    json_t *copy = NULL;
    if (fields) {
        copy = json_deep_copy(fields);
        node_audit_mask_fields(copy);
    }
    log_entry(level, event, copy, message);
    a->stats.posted++;
    char *ev = a->qn < NODE_AUDIT_POST_MAX && (!fields || copy) ? strdup(event) : NULL;
    if (!ev) {
        if (!a->pend_dropped)
            dm_log(DM_LOG_WARNING, "security",
                   "audit queue full (%u entries): counting dropped entries for an "
                   "audit_overflow entry",
                   NODE_AUDIT_POST_MAX);
        a->stats.dropped++;
        a->pend_dropped++;
        json_decref(copy);
        return DM_OK;
    }
    a->q[a->qn].level = level;
    a->q[a->qn].event = ev;
    a->q[a->qn].fields = copy;
    a->qn++;
    if (!a->in_flight && !a->scheduled) {
        uv_idle_start(&a->idle, on_idle);
        a->scheduled = true;
    }
    return DM_OK;
}

node_audit_post_stats node_audit_stats(node_audit_t *a)
{
    node_audit_post_stats s = a->stats;
    s.queued = a->qn;
    return s;
}

void node_audit_detach(node_audit_t *a, void (*cb)(void *), void *arg)
{
    if (a->state != ST_ATTACHED) {
        if (cb)
            cb(arg);
        return;
    }
    a->state = ST_DETACHING;
    a->detach_cb = cb;
    a->detach_arg = arg;
    atomic_store(&a->closing, true);
    if (a->in_flight)
        return; /* post_after continues */
    if (a->qn || a->pend_dropped || a->pend_failed)
        post_flush(a);
    else {
        if (a->scheduled) {
            uv_idle_stop(&a->idle);
            a->scheduled = false;
        }
        detach_finish(a);
    }
}

/* ---------------------------------------------------------------- retention */

/* One prune batch, under the commit lock. */
static int prune_batch(node_audit_t *a, store_batch_t *b, uint64_t cutoff, uint64_t *n)
{
    *n = 0;
    node_audit_mark head = node_audit_head(a);
    checkpoint cp;
    dm_buf raw = DM_BUF_INIT;
    store_iter_t *it = NULL;
    const char *why = NULL;
    uint64_t bad = 0;
    int rc = checkpoint_read(a->store, &cp, &raw);
    dm_buf_free(&raw);
    if (rc) {
        if (rc == DM_ETAMPER)
            dm_log(DM_LOG_ERROR, "security", "audit prune refused: the checkpoint is unreadable");
        return rc;
    }
    if ((rc = store_iter_create(&it, a->store, STORE_CF_AUDIT, NULL, 0, NULL, 0)))
        return rc;
    uint64_t expect = cp.seq + 1, last_ts = 0;
    uint8_t prev[32];
    memcpy(prev, cp.hash, 32); /* all zero without a checkpoint */
    const uint8_t *k, *v;
    size_t kl, vl;
    store_batch_clear(b);
    while (*n < NODE_AUDIT_PRUNE_BATCH && store_iter_next(it, &k, &kl, &v, &vl)) {
        uint64_t kseq;
        if (store_key_u64_decode(k, kl, &kseq) || kseq != expect) {
            bad = expect;
            why = "entry missing";
            break;
        }
        if (kseq >= head.seq)
            break; /* the head always stays */
        parsed_entry p;
        if ((rc = entry_parse(v, vl, &p))) {
            if (rc == DM_ETAMPER) {
                bad = kseq;
                why = "entry unreadable";
            }
            break;
        }
        if (p.ts_ms >= cutoff) {
            pe_free(&p);
            break;
        }
        if ((why = entry_check(&p, kseq, prev))) {
            bad = kseq;
            pe_free(&p);
            break;
        }
        memcpy(prev, p.hash, 32);
        last_ts = p.ts_ms;
        pe_free(&p);
        if ((rc = store_batch_delete(b, STORE_CF_AUDIT, k, kl)))
            break;
        (*n)++;
        expect++;
    }
    if (!rc)
        rc = store_iter_status(it);
    store_iter_destroy(it);
    if (!rc && why) {
        dm_log(DM_LOG_ERROR, "security",
               "audit prune refused: entry %llu fails verification (%s); run dmnode audit verify",
               (unsigned long long)bad, why);
        rc = DM_ETAMPER;
    }
    if (rc || !*n) {
        *n = 0;
        return rc;
    }
    uint64_t through = expect - 1;
    char hex[65];
    dm_hex_encode(hex, prev, 32);
    json_t *cpj = json_pack("{s:I, s:s, s:I, s:I}", "seq", (json_int_t)through, "hash", hex,
                            "ts_ms", (json_int_t)last_ts, "removed_total",
                            (json_int_t)(cp.removed_total + *n));
    json_t *f = json_pack("{s:I, s:s, s:I}", "through_seq", (json_int_t)through, "hash", hex,
                          "count", (json_int_t)*n);
    char *cps = cpj ? json_dumps(cpj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    rc = DM_ENOMEM;
    if (cps && f &&
        !(rc = store_batch_put(b, STORE_CF_META, NODE_AUDIT_CHECKPOINT_KEY,
                               strlen(NODE_AUDIT_CHECKPOINT_KEY), cps, strlen(cps))))
        rc = commit_locked(a, a->store, b, DM_LOG_INFO, "audit_pruned", f, NULL, NULL);
    free(cps);
    json_decref(cpj);
    json_decref(f);
    if (rc)
        *n = 0;
    return rc;
}

int node_audit_prune(node_audit_t *a, uint64_t older_than_ms, uint64_t *removed)
{
    uint64_t total = 0;
    store_batch_t *b = NULL;
    int rc = store_batch_create(&b);
    while (!rc) {
        if (atomic_load(&a->closing)) {
            rc = DM_ECLOSED;
            break;
        }
        uint64_t n;
        node_audit_lock(a);
        rc = prune_batch(a, b, older_than_ms, &n);
        node_audit_unlock(a);
        total += n;
        if (n < NODE_AUDIT_PRUNE_BATCH)
            break;
    }
    store_batch_destroy(b);
    if (removed)
        *removed = total;
    return rc;
}

/* ---------------------------------------------------------------- head anchoring */

int node_audit_anchor_head(node_audit_t *a, store_t *store)
{
    node_audit_lock(a);
    pthread_mutex_lock(&a->lock);
    node_audit_mark m = a->head;
    bool anchored = a->anchor_seq && a->anchor_seq == a->head.seq;
    pthread_mutex_unlock(&a->lock);
    int rc = DM_EEXIST;
    store_batch_t *b = NULL;
    json_t *f = NULL, *ev = NULL;
    if (m.seq == 0 || anchored)
        goto out;
    char hex[65];
    dm_hex_encode(hex, m.hash, 32);
    f = json_pack("{s:I, s:s}", "seq", (json_int_t)m.seq, "head_hash", hex);
    ev = json_pack("{s:s, s:I, s:s, s:I}", "event_type", "audit_head", "seq", (json_int_t)m.seq,
                   "head_hash", hex, "timestamp", (json_int_t)(now_ms() / 1000));
    rc = DM_ENOMEM;
    if (f && ev && !(rc = store_batch_create(&b)))
        rc = commit_locked(a, store, b, DM_LOG_INFO, "audit_head", f, ev, NULL);
out:
    node_audit_unlock(a);
    store_batch_destroy(b);
    json_decref(f);
    json_decref(ev);
    return rc;
}

/* ---------------------------------------------------------------- verification */

/* Records that hold an entry's hash outside the chain: outbox entries (queued for
 * anchoring) and anchor records (anchored). Walked beside the chain in seq order. */
typedef struct {
    store_iter_t *it;
    size_t plen;
    bool have;
    uint64_t seq;
    bool hash_ok;
    uint8_t hash[32];
} xref;

static void xref_next(xref *x)
{
    const uint8_t *k, *v;
    size_t kl, vl;
    x->have = false;
    while (x->it && store_iter_next(x->it, &k, &kl, &v, &vl)) {
        if (store_key_u64_decode(k + x->plen, kl - x->plen, &x->seq))
            continue; /* not a per-seq record */
        json_t *j = json_loadb((const char *)v, vl, 0, NULL);
        json_t *h = json_object_get(j, "entry_hash");
        x->hash_ok = json_is_string(h) && json_string_length(h) == 64 &&
                     !dm_hex_decode(x->hash, 32, json_string_value(h), 64);
        json_decref(j);
        x->have = true;
        return;
    }
}

static int xref_open(xref *x, store_t *s, store_cf cf, const char *prefix)
{
    memset(x, 0, sizeof *x);
    x->plen = prefix ? strlen(prefix) : 0;
    int rc = store_iter_create(&x->it, s, cf, prefix, x->plen, NULL, 0);
    if (!rc)
        xref_next(x);
    return rc;
}

/* Check the records for seq (after skipping those for earlier, pruned, seqs). */
static const char *xref_check(xref *x, uint64_t seq, const uint8_t hash[32], uint64_t *checked)
{
    while (x->have && x->seq < seq)
        xref_next(x);
    const char *why = NULL;
    while (x->have && x->seq == seq) {
        (*checked)++;
        if (!why && (!x->hash_ok || !crypto_ct_eq(x->hash, hash, 32)))
            why = "entry differs from the hash recorded for anchoring (outbox or anchor record): "
                  "rewritten with fresh hashes";
        xref_next(x);
    }
    return why;
}

static int verify_walk(store_t *store, node_audit_report *r, xref *xr, size_t nx)
{
    checkpoint cp;
    dm_buf raw = DM_BUF_INIT, raw2 = DM_BUF_INIT;
    store_iter_t *it = NULL;
    int rc;
    /* the chain and the checkpoint from one state: a prune changes both in one batch, so
     * an unchanged checkpoint around the iterator's creation belongs to its snapshot */
    for (int tries = 0;; tries++) {
        if ((rc = checkpoint_read(store, &cp, &raw)) && rc != DM_ETAMPER)
            goto out;
        int cprc = rc;
        if ((rc = store_iter_create(&it, store, STORE_CF_AUDIT, NULL, 0, NULL, 0)))
            goto out;
        checkpoint cp2;
        int rc2 = checkpoint_read(store, &cp2, &raw2);
        if ((rc2 == cprc && raw.len == raw2.len &&
             (!raw.len || !memcmp(raw.data, raw2.data, raw.len))) ||
            tries == 4) {
            rc = cprc;
            break;
        }
        store_iter_destroy(it);
        it = NULL;
    }
    const uint8_t *k, *v;
    size_t kl, vl;
    if (rc == DM_ETAMPER) {
        /* name the first entry it would have to vouch for */
        uint64_t first = 1;
        if (store_iter_next(it, &k, &kl, &v, &vl))
            store_key_u64_decode(k, kl, &first);
        r->bad_seq = first;
        r->reason = "retention checkpoint unreadable";
        goto out;
    }
    r->has_checkpoint = cp.present;
    r->checkpoint_seq = cp.seq;
    uint8_t prev[32];
    memcpy(prev, cp.hash, 32);
    uint64_t expect = cp.seq + 1;
    bool pruned_seen = false;
    uint64_t pruned_through = 0;
    uint8_t pruned_hash[32] = {0};
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        uint64_t kseq;
        if (store_key_u64_decode(k, kl, &kseq)) {
            r->bad_seq = expect;
            r->reason = "malformed key in the audit log";
            rc = DM_ETAMPER;
            break;
        }
        if (kseq != expect) {
            r->bad_seq = kseq < expect ? kseq : expect;
            r->reason = kseq > expect
                            ? (cp.present && expect == cp.seq + 1
                                   ? "entry missing: removed beyond the retention checkpoint"
                                   : "entry missing")
                            : "entry at or below the retention checkpoint";
            rc = DM_ETAMPER;
            break;
        }
        parsed_entry p;
        if ((rc = entry_parse(v, vl, &p))) {
            if (rc == DM_ETAMPER) {
                r->bad_seq = kseq;
                r->reason = "entry unreadable";
            }
            break;
        }
        const char *why = entry_check(&p, kseq, prev);
        if (why && kseq == cp.seq + 1 && cp.present && !crypto_ct_eq(p.prev, prev, 32) &&
            p.seq == kseq)
            why = "first entry does not link to the retention checkpoint (the checkpoint or this "
                  "entry was altered)";
        for (size_t i = 0; i < nx && !why; i++)
            why = xref_check(&xr[i], kseq, p.hash, &r->anchored_checked);
        if (!why && !strcmp(p.event, "audit_pruned")) {
            json_t *f = json_object_get(p.entry, "fields");
            json_t *ts = json_object_get(f, "through_seq"), *th = json_object_get(f, "hash");
            pruned_seen = json_is_integer(ts) && json_is_string(th) &&
                          json_string_length(th) == 64 &&
                          !dm_hex_decode(pruned_hash, 32, json_string_value(th), 64);
            pruned_through = pruned_seen ? (uint64_t)json_integer_value(ts) : 0;
        }
        if (why) {
            r->bad_seq = kseq;
            r->reason = why;
            pe_free(&p);
            rc = DM_ETAMPER;
            break;
        }
        if (!r->first_seq)
            r->first_seq = kseq;
        r->last_seq = kseq;
        memcpy(r->head_hash, p.hash, 32);
        memcpy(prev, p.hash, 32);
        pe_free(&p);
        expect++;
        r->entries++;
    }
    if (!rc)
        rc = store_iter_status(it);
    if (rc)
        goto out;
    /* the checkpoint must be the one the last prune recorded in the chain */
    if (cp.present && (!pruned_seen || pruned_through != cp.seq ||
                       !crypto_ct_eq(pruned_hash, cp.hash, 32))) {
        rc = DM_ETAMPER;
        if (cp.seq > pruned_through) {
            r->bad_seq = pruned_through + 1;
            r->reason = "entries removed beyond the last recorded prune (the checkpoint was moved)";
        } else {
            r->bad_seq = cp.seq + 1;
            r->reason = "retention checkpoint differs from the last audit_pruned entry";
        }
        goto out;
    }
    /* records naming entries past the end: the tail was cut */
    for (size_t i = 0; i < nx; i++) {
        while (xr[i].have && xr[i].seq <= r->last_seq)
            xref_next(&xr[i]);
        if (xr[i].have) {
            rc = DM_ETAMPER;
            r->bad_seq = expect;
            r->reason = "the tail was cut: an outbox entry or anchor record names a later entry";
            break;
        }
    }
out:
    store_iter_destroy(it);
    dm_buf_free(&raw);
    dm_buf_free(&raw2);
    return rc;
}

int node_audit_verify_report(store_t *store, node_audit_report *r)
{
    memset(r, 0, sizeof *r);
    xref xr[2];
    memset(xr, 0, sizeof xr);
    /* the cross-check records first: everything they name was committed before the
     * chain's snapshot is taken */
    int rc = xref_open(&xr[0], store, STORE_CF_ANCHORS, EV_PREFIX);
    if (!rc)
        rc = xref_open(&xr[1], store, STORE_CF_OUTBOX, NULL);
    if (!rc)
        rc = verify_walk(store, r, xr, 2);
    for (int i = 0; i < 2; i++) {
        if (!rc && xr[i].it)
            rc = store_iter_status(xr[i].it);
        store_iter_destroy(xr[i].it);
    }
    if (rc && rc != DM_ETAMPER) {
        r->bad_seq = 0;
        r->reason = NULL;
    }
    return rc;
}

int node_audit_verify(store_t *store, uint64_t *entries, uint64_t *bad_seq)
{
    node_audit_report r;
    int rc = node_audit_verify_report(store, &r);
    *entries = r.entries;
    *bad_seq = r.bad_seq;
    return rc;
}
