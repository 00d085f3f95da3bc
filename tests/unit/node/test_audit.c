#define _GNU_SOURCE /* memmem */
/* Audit log: hash chain in RocksDB, outbox entries, async posts from the loop,
 * retention with a checkpoint, head anchoring, and tamper detection named by seq. */
#include "dm_test.h"
#include "groups.h"

#include "crypto_hash.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_util.h"
#include "node_audit.h"
#include "store.h"
#include "store_keys.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <uv.h>

typedef struct {
    char *dir;
    store_t *s;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = dm_test_mkdtemp("audit");
    store_opts o = {.create = true};
    assert_int_equal(store_open(&f->s, f->dir, &o), DM_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    store_close(f->s);
    dm_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Append n entries, one batch per `per` entries; every 3rd carries an anchor event. */
static void append_n(store_t *s, node_audit_t *a, int n, int per)
{
    store_batch_t *b;
    assert_int_equal(store_batch_create(&b), DM_OK);
    for (int i = 0; i < n; i++) {
        json_t *fields = json_pack("{s:i, s:s}", "i", i, "who", "node1");
        json_t *ev = i % 3 == 0 ? json_pack("{s:s, s:i}", "event_type", "data_share", "timestamp", i)
                                : NULL;
        assert_int_equal(node_audit_append(a, b, DM_LOG_DEBUG, "test_event", fields, ev, NULL), DM_OK);
        json_decref(fields);
        json_decref(ev);
        if ((i + 1) % per == 0) {
            assert_int_equal(store_write(s, b), DM_OK);
            store_batch_clear(b);
        }
    }
    if (store_batch_count(b))
        assert_int_equal(store_write(s, b), DM_OK);
    store_batch_destroy(b);
}

/* Entries without outbox records (nothing anchored names them). */
static void append_plain(store_t *s, node_audit_t *a, int n)
{
    for (int i = 0; i < n; i++) {
        store_batch_t *b;
        assert_int_equal(store_batch_create(&b), DM_OK);
        json_t *fields = json_pack("{s:i, s:s}", "i", i, "who", "node1");
        assert_int_equal(
            node_audit_commit(a, s, b, DM_LOG_DEBUG, "plain_event", fields, NULL, NULL), DM_OK);
        json_decref(fields);
        store_batch_destroy(b);
    }
}

static void expect_verify(store_t *s, int want, uint64_t want_bad)
{
    node_audit_report r;
    int rc = node_audit_verify_report(s, &r);
    if (rc != want || r.bad_seq != want_bad)
        fail_msg("verify: got %s bad=%llu (%s), want %s bad=%llu", dm_err_name(rc),
                 (unsigned long long)r.bad_seq, r.reason ? r.reason : "-", dm_err_name(want),
                 (unsigned long long)want_bad);
    if (rc == DM_ETAMPER)
        assert_non_null(r.reason);
    /* the short form agrees */
    uint64_t n, bad;
    assert_int_equal(node_audit_verify(s, &n, &bad), rc);
    assert_int_equal(bad, r.bad_seq);
}

static uint64_t count_cf(store_t *s, store_cf cf)
{
    store_iter_t *it;
    assert_int_equal(store_iter_create(&it, s, cf, NULL, 0, NULL, 0), DM_OK);
    const uint8_t *k, *v;
    size_t kl, vl;
    uint64_t n = 0;
    while (store_iter_next(it, &k, &kl, &v, &vl))
        n++;
    store_iter_destroy(it);
    return n;
}

static void put_seq(store_t *s, uint64_t seq, const dm_buf *v)
{
    uint8_t k[8];
    store_key_u64(k, seq);
    assert_int_equal(store_put(s, STORE_CF_AUDIT, k, 8, v->data, v->len), DM_OK);
}

static void get_seq(store_t *s, uint64_t seq, dm_buf *v)
{
    uint8_t k[8];
    store_key_u64(k, seq);
    dm_buf_reset(v);
    assert_int_equal(store_get(s, STORE_CF_AUDIT, k, 8, v), DM_OK);
}

static void del_seq(store_t *s, uint64_t seq)
{
    uint8_t k[8];
    store_key_u64(k, seq);
    assert_int_equal(store_delete(s, STORE_CF_AUDIT, k, 8), DM_OK);
}

/* The stored entry document at seq (caller decrefs). */
static json_t *load_seq(store_t *s, uint64_t seq)
{
    dm_buf v = DM_BUF_INIT;
    get_seq(s, seq, &v);
    json_t *j = json_loadb((const char *)v.data, v.len, 0, NULL);
    assert_non_null(j);
    dm_buf_free(&v);
    return j;
}

static void hash_of(store_t *s, uint64_t seq, uint8_t out[32])
{
    json_t *j = load_seq(s, seq);
    assert_int_equal(dm_hex_decode(out, 32, json_string_value(json_object_get(j, "hash")), 64),
                     DM_OK);
    json_decref(j);
}

/*
 * What a forger who can write the database does: change entry `from`'s field
 * "who", then recompute it and every later entry up to `to` with fresh hashes.
 */
static void rewrite_from(store_t *s, uint64_t from, uint64_t to)
{
    uint8_t prev[32];
    for (uint64_t q = from; q <= to; q++) {
        json_t *doc = load_seq(s, q);
        json_t *entry = json_object_get(doc, "entry");
        if (q == from) {
            dm_hex_decode(prev, 32, json_string_value(json_object_get(entry, "prev")), 64);
            json_object_set_new(json_object_get(entry, "fields"), "who", json_string("evil"));
        }
        char ph[65], hh[65];
        dm_hex_encode(ph, prev, 32);
        json_object_set_new(entry, "prev", json_string(ph));
        char *canon = json_dumps(entry, JSON_COMPACT | JSON_SORT_KEYS);
        const void *parts[2] = {prev, canon};
        size_t lens[2] = {32, strlen(canon)};
        assert_int_equal(crypto_sha256_parts(prev, parts, lens, 2), DM_OK);
        dm_hex_encode(hh, prev, 32);
        json_object_set_new(doc, "hash", json_string(hh));
        char *t = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        dm_buf v = DM_BUF_INIT;
        dm_buf_puts(&v, t);
        put_seq(s, q, &v);
        dm_buf_free(&v);
        free(t);
        free(canon);
        json_decref(doc);
    }
}

static void test_chain_and_reopen(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    assert_int_equal(node_audit_head(a).seq, 0);
    append_n(f->s, a, 25, 4);
    node_audit_mark m = node_audit_head(a);
    assert_int_equal(m.seq, 25);
    node_audit_close(a);

    /* reopening continues the chain from the stored head */
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    node_audit_mark m2 = node_audit_head(a);
    assert_int_equal(m2.seq, 25);
    assert_memory_equal(m2.hash, m.hash, 32);
    append_n(f->s, a, 5, 5);
    node_audit_close(a);
    node_audit_report r;
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    assert_int_equal(r.entries, 30);
    assert_int_equal(r.first_seq, 1);
    assert_int_equal(r.last_seq, 30);
    assert_int_equal(r.anchored_checked, 9 + 2);
    assert_null(r.reason);

    /* the outbox holds the anchor events, keyed by audit seq */
    int outbox = 0;
    store_iter_t *it;
    assert_int_equal(store_iter_create(&it, f->s, STORE_CF_OUTBOX, NULL, 0, NULL, 0), DM_OK);
    const uint8_t *k, *v;
    size_t kl, vl;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        uint64_t seq;
        assert_int_equal(store_key_u64_decode(k, kl, &seq), DM_OK);
        json_t *j = json_loadb((const char *)v, vl, 0, NULL);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "audit_seq")), (json_int_t)seq);
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "event"), "event_type")),
                            "data_share");
        assert_int_equal(json_string_length(json_object_get(j, "entry_hash")), 64);
        json_decref(j);
        outbox++;
    }
    store_iter_destroy(it);
    assert_int_equal(outbox, 9 + 2); /* i%3==0 of 25 entries, then of 5 */
}

static void test_rollback(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    append_n(f->s, a, 3, 3);
    node_audit_mark m = node_audit_head(a);
    store_batch_t *b;
    assert_int_equal(store_batch_create(&b), DM_OK);
    assert_int_equal(node_audit_append(a, b, DM_LOG_INFO, "lost", NULL, NULL, NULL), DM_OK);
    store_batch_destroy(b); /* the commit "failed": the entry never reached the store */
    node_audit_rollback(a, &m);
    append_n(f->s, a, 2, 1);
    node_audit_close(a);
    expect_verify(f->s, DM_OK, 0);
}

static void test_tampering_named(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    append_n(f->s, a, 10, 10);
    node_audit_close(a);
    dm_buf e4 = DM_BUF_INIT, e5 = DM_BUF_INIT, e7 = DM_BUF_INIT, e8 = DM_BUF_INIT,
           v = DM_BUF_INIT;
    get_seq(f->s, 4, &e4);
    get_seq(f->s, 5, &e5);
    get_seq(f->s, 7, &e7);
    get_seq(f->s, 8, &e8);

    /* edit a field of entry 4 */
    dm_buf_append(&v, e4.data, e4.len);
    char *p = memmem(v.data, v.len, "node1", 5);
    assert_non_null(p);
    p[4] = '9';
    put_seq(f->s, 4, &v);
    expect_verify(f->s, DM_ETAMPER, 4);
    put_seq(f->s, 4, &e4);
    expect_verify(f->s, DM_OK, 0);

    /* alter the stored hash of entry 8 (one hex digit) */
    dm_buf_reset(&v);
    dm_buf_append(&v, e8.data, e8.len);
    p = memmem(v.data, v.len, "\"hash\":\"", 8);
    assert_non_null(p);
    p[8] = p[8] == '0' ? '1' : '0';
    put_seq(f->s, 8, &v);
    expect_verify(f->s, DM_ETAMPER, 8);
    put_seq(f->s, 8, &e8);

    /* remove entry 4 */
    del_seq(f->s, 4);
    expect_verify(f->s, DM_ETAMPER, 4);
    put_seq(f->s, 4, &e4);

    /* swap entries 4 and 5 */
    put_seq(f->s, 4, &e5);
    put_seq(f->s, 5, &e4);
    expect_verify(f->s, DM_ETAMPER, 4);
    put_seq(f->s, 4, &e4);
    put_seq(f->s, 5, &e5);

    /* replace entry 5 by a forgery: its prev does not match entry 4 */
    dm_buf_reset(&v);
    dm_buf_puts(&v, "{\"entry\":{\"event\":\"x\",\"prev\":\"");
    for (int i = 0; i < 64; i++)
        dm_buf_putc(&v, '0');
    dm_buf_puts(&v, "\",\"seq\":5,\"ts_ms\":1},\"hash\":\"");
    for (int i = 0; i < 64; i++)
        dm_buf_putc(&v, 'a');
    dm_buf_puts(&v, "\"}");
    put_seq(f->s, 5, &v);
    expect_verify(f->s, DM_ETAMPER, 5);
    put_seq(f->s, 5, &e5);

    /* garbage value */
    dm_buf_reset(&v);
    dm_buf_puts(&v, "not json");
    put_seq(f->s, 7, &v);
    expect_verify(f->s, DM_ETAMPER, 7);
    dm_buf_reset(&v);
    get_seq(f->s, 6, &v);
    put_seq(f->s, 7, &v); /* entry 6 duplicated under key 7 */
    expect_verify(f->s, DM_ETAMPER, 7);
    put_seq(f->s, 7, &e7);
    expect_verify(f->s, DM_OK, 0);
    dm_buf_free(&e4);
    dm_buf_free(&e5);
    dm_buf_free(&e7);
    dm_buf_free(&e8);
    dm_buf_free(&v);
}

/*
 * What a database writer can and cannot hide. Without records outside the chain,
 * cutting the tail or rewriting a suffix with fresh hashes leaves a valid chain;
 * once an entry's hash is recorded for anchoring (outbox, anchor record; the
 * head through audit_head), both are named.
 */
static void test_truncation_and_rewrite(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    append_plain(f->s, a, 5);
    node_audit_close(a);
    dm_buf orig[9];
    for (int i = 0; i < 9; i++)
        orig[i] = (dm_buf)DM_BUF_INIT;
    for (uint64_t q = 1; q <= 5; q++)
        get_seq(f->s, q, &orig[q]);

    /* not detectable from the database alone: documented in node_audit.h and the README */
    del_seq(f->s, 5);
    node_audit_report r;
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    assert_int_equal(r.entries, 4);
    put_seq(f->s, 5, &orig[5]);
    rewrite_from(f->s, 2, 5);
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    for (uint64_t q = 2; q <= 5; q++)
        put_seq(f->s, q, &orig[q]);
    expect_verify(f->s, DM_OK, 0);

    /* anchor the head (seq 6 records entry 5's hash), then two more entries */
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    assert_int_equal(node_audit_anchor_head(a, f->s), DM_OK);
    append_plain(f->s, a, 2);
    node_audit_close(a);
    for (uint64_t q = 6; q <= 8; q++)
        get_seq(f->s, q, &orig[q]);

    /* cutting 7..8 still leaves the anchored part whole; cutting 6 too is named */
    del_seq(f->s, 8);
    del_seq(f->s, 7);
    expect_verify(f->s, DM_OK, 0);
    del_seq(f->s, 6);
    expect_verify(f->s, DM_ETAMPER, 6);
    for (uint64_t q = 6; q <= 8; q++)
        put_seq(f->s, q, &orig[q]);
    expect_verify(f->s, DM_OK, 0);

    /* a rewrite from entry 2 with fresh hashes changes entry 6's hash: named there (the
     * first entry whose hash went on chain; the rewrite began at or before it) */
    rewrite_from(f->s, 2, 8);
    expect_verify(f->s, DM_ETAMPER, 6);
    for (uint64_t q = 2; q <= 8; q++)
        put_seq(f->s, q, &orig[q]);

    /* anchor records (ev/<seq>, written by the anchorer) are cross-checked the same way */
    uint8_t k[3 + 8], h3[32];
    memcpy(k, "ev/", 3);
    store_key_u64(k + 3, 3);
    hash_of(f->s, 3, h3);
    char hex[65];
    dm_hex_encode(hex, h3, 32);
    char rec[200];
    snprintf(rec, sizeof rec, "{\"audit_seq\":3,\"entry_hash\":\"%s\"}", hex);
    assert_int_equal(store_put(f->s, STORE_CF_ANCHORS, k, sizeof k, rec, strlen(rec)), DM_OK);
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    assert_int_equal(r.anchored_checked, 2);
    hex[0] = hex[0] == 'a' ? 'b' : 'a';
    snprintf(rec, sizeof rec, "{\"audit_seq\":3,\"entry_hash\":\"%s\"}", hex);
    assert_int_equal(store_put(f->s, STORE_CF_ANCHORS, k, sizeof k, rec, strlen(rec)), DM_OK);
    expect_verify(f->s, DM_ETAMPER, 3);
    for (int i = 0; i < 9; i++)
        dm_buf_free(&orig[i]);
}

/* ---------------------------------------------------------------- head anchoring */

static void test_anchor_head(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    assert_int_equal(node_audit_anchor_head(a, f->s), DM_EEXIST); /* nothing to anchor */
    append_plain(f->s, a, 3);
    uint64_t t0 = wall_ms() / 1000;
    assert_int_equal(node_audit_anchor_head(a, f->s), DM_OK);
    assert_int_equal(node_audit_head(a).seq, 4);
    assert_int_equal(count_cf(f->s, STORE_CF_OUTBOX), 1);

    uint8_t k[8], h3[32], h4[32];
    store_key_u64(k, 4);
    dm_buf v = DM_BUF_INIT;
    assert_int_equal(store_get(f->s, STORE_CF_OUTBOX, k, 8, &v), DM_OK);
    json_t *ob = json_loadb((const char *)v.data, v.len, 0, NULL);
    json_t *ev = json_object_get(ob, "event");
    hash_of(f->s, 3, h3);
    hash_of(f->s, 4, h4);
    char hex3[65], hex4[65];
    dm_hex_encode(hex3, h3, 32);
    dm_hex_encode(hex4, h4, 32);
    assert_string_equal(json_string_value(json_object_get(ev, "event_type")), "audit_head");
    assert_int_equal(json_integer_value(json_object_get(ev, "seq")), 3);
    assert_string_equal(json_string_value(json_object_get(ev, "head_hash")), hex3);
    json_int_t ts = json_integer_value(json_object_get(ev, "timestamp"));
    assert_true(ts >= (json_int_t)t0 && ts <= (json_int_t)t0 + 5);
    assert_int_equal(json_integer_value(json_object_get(ob, "audit_seq")), 4);
    assert_string_equal(json_string_value(json_object_get(ob, "entry_hash")), hex4);
    json_decref(ob);
    json_t *e4 = load_seq(f->s, 4);
    json_t *en = json_object_get(e4, "entry");
    assert_string_equal(json_string_value(json_object_get(en, "event")), "audit_head");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(en, "fields"), "seq")), 3);
    json_decref(e4);

    /* nothing new since: no entry, also after a reopen */
    assert_int_equal(node_audit_anchor_head(a, f->s), DM_EEXIST);
    node_audit_close(a);
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    assert_int_equal(node_audit_anchor_head(a, f->s), DM_EEXIST);
    append_plain(f->s, a, 1);
    assert_int_equal(node_audit_anchor_head(a, f->s), DM_OK);
    assert_int_equal(node_audit_head(a).seq, 6);
    node_audit_close(a);
    node_audit_report r;
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    assert_int_equal(r.entries, 6);
    assert_int_equal(r.anchored_checked, 2);
    assert_int_equal(count_cf(f->s, STORE_CF_OUTBOX), 2);
    dm_buf_free(&v);
}

/* ---------------------------------------------------------------- retention */

static json_t *load_checkpoint(store_t *s)
{
    dm_buf v = DM_BUF_INIT;
    if (store_get(s, STORE_CF_META, NODE_AUDIT_CHECKPOINT_KEY, strlen(NODE_AUDIT_CHECKPOINT_KEY),
                  &v) != DM_OK)
        return NULL;
    json_t *j = json_loadb((const char *)v.data, v.len, 0, NULL);
    dm_buf_free(&v);
    return j;
}

static void put_checkpoint(store_t *s, const char *text)
{
    assert_int_equal(store_put(s, STORE_CF_META, NODE_AUDIT_CHECKPOINT_KEY,
                               strlen(NODE_AUDIT_CHECKPOINT_KEY), text, strlen(text)),
                     DM_OK);
}

static void test_prune_checkpoint(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    uint64_t removed = 99;
    assert_int_equal(node_audit_prune(a, wall_ms(), &removed), DM_OK); /* empty log */
    assert_int_equal(removed, 0);
    append_plain(f->s, a, 30);
    sleep_ms(10);
    uint64_t cutoff = wall_ms();
    sleep_ms(10);
    append_plain(f->s, a, 20);
    uint8_t h30[32];
    hash_of(f->s, 30, h30);
    assert_int_equal(node_audit_prune(a, cutoff, &removed), DM_OK);
    assert_int_equal(removed, 30);
    assert_int_equal(node_audit_head(a).seq, 51);
    assert_int_equal(node_audit_prune(a, cutoff, &removed), DM_OK); /* nothing more */
    assert_int_equal(removed, 0);
    node_audit_close(a);

    /* the checkpoint names entry 30; entry 51 records the prune */
    json_t *cp = load_checkpoint(f->s);
    assert_non_null(cp);
    char hex30[65];
    dm_hex_encode(hex30, h30, 32);
    assert_int_equal(json_integer_value(json_object_get(cp, "seq")), 30);
    assert_string_equal(json_string_value(json_object_get(cp, "hash")), hex30);
    assert_int_equal(json_integer_value(json_object_get(cp, "removed_total")), 30);
    assert_true((uint64_t)json_integer_value(json_object_get(cp, "ts_ms")) < cutoff);
    char *cp_text = json_dumps(cp, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(cp);
    json_t *e51 = load_seq(f->s, 51);
    json_t *en = json_object_get(e51, "entry"), *fl = json_object_get(en, "fields");
    assert_string_equal(json_string_value(json_object_get(en, "event")), "audit_pruned");
    assert_int_equal(json_integer_value(json_object_get(fl, "through_seq")), 30);
    assert_int_equal(json_integer_value(json_object_get(fl, "count")), 30);
    assert_string_equal(json_string_value(json_object_get(fl, "hash")), hex30);
    json_decref(e51);

    node_audit_report r;
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    assert_int_equal(r.entries, 21);
    assert_int_equal(r.first_seq, 31);
    assert_int_equal(r.last_seq, 51);
    assert_true(r.has_checkpoint);
    assert_int_equal(r.checkpoint_seq, 30);

    /* reopening continues after the checkpoint */
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    assert_int_equal(node_audit_head(a).seq, 51);
    node_audit_close(a);

    /* the checkpoint's hash altered: entry 31 no longer links to it */
    char *bad = strdup(cp_text);
    char *p = strstr(bad, hex30);
    p[0] = p[0] == 'a' ? 'b' : 'a';
    put_checkpoint(f->s, bad);
    expect_verify(f->s, DM_ETAMPER, 31);
    free(bad);
    /* unreadable */
    put_checkpoint(f->s, "junk");
    expect_verify(f->s, DM_ETAMPER, 31);
    /* deleted: the chain must then start at 1 */
    assert_int_equal(store_delete(f->s, STORE_CF_META, NODE_AUDIT_CHECKPOINT_KEY,
                                  strlen(NODE_AUDIT_CHECKPOINT_KEY)),
                     DM_OK);
    expect_verify(f->s, DM_ETAMPER, 1);
    put_checkpoint(f->s, cp_text);
    expect_verify(f->s, DM_OK, 0);

    /* a removal beyond the checkpoint */
    dm_buf e31 = DM_BUF_INIT, e32 = DM_BUF_INIT, e33 = DM_BUF_INIT, e35 = DM_BUF_INIT;
    get_seq(f->s, 31, &e31);
    get_seq(f->s, 32, &e32);
    get_seq(f->s, 33, &e33);
    get_seq(f->s, 35, &e35);
    del_seq(f->s, 31);
    expect_verify(f->s, DM_ETAMPER, 31);
    /* ... hidden by moving the checkpoint forward consistently (seq 33, entry 33's hash):
     * the chain from 34 links, but the last audit_pruned entry says 30 */
    del_seq(f->s, 32);
    del_seq(f->s, 33);
    uint8_t h33[32];
    json_t *d33 = json_loadb((const char *)e33.data, e33.len, 0, NULL);
    dm_hex_decode(h33, 32, json_string_value(json_object_get(d33, "hash")), 64);
    json_decref(d33);
    char hex33[65], forged[300];
    dm_hex_encode(hex33, h33, 32);
    snprintf(forged, sizeof forged,
             "{\"hash\":\"%s\",\"removed_total\":33,\"seq\":33,\"ts_ms\":1}", hex33);
    put_checkpoint(f->s, forged);
    expect_verify(f->s, DM_ETAMPER, 31);
    put_checkpoint(f->s, cp_text);
    put_seq(f->s, 31, &e31);
    put_seq(f->s, 32, &e32);
    put_seq(f->s, 33, &e33);
    expect_verify(f->s, DM_OK, 0);

    /* a prune never launders a broken chain: entry 35 edited, nothing removed */
    dm_buf v = DM_BUF_INIT;
    dm_buf_append(&v, e35.data, e35.len);
    char *w = memmem(v.data, v.len, "node1", 5);
    w[0] = 'N';
    put_seq(f->s, 35, &v);
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    assert_int_equal(node_audit_prune(a, UINT64_MAX, &removed), DM_ETAMPER);
    assert_int_equal(removed, 0);
    expect_verify(f->s, DM_ETAMPER, 35);
    put_seq(f->s, 35, &e35);

    /* everything older than "the future": all but the head go */
    assert_int_equal(node_audit_prune(a, UINT64_MAX, &removed), DM_OK);
    assert_int_equal(removed, 20); /* 31..50; 51 was the head */
    assert_int_equal(node_audit_head(a).seq, 52);
    node_audit_close(a);
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    assert_int_equal(r.entries, 2);
    assert_int_equal(r.first_seq, 51);
    assert_int_equal(r.checkpoint_seq, 50);
    free(cp_text);
    dm_buf_free(&e31);
    dm_buf_free(&e32);
    dm_buf_free(&e33);
    dm_buf_free(&e35);
    dm_buf_free(&v);
}

static void test_prune_batches(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    append_n(f->s, a, 2500, 500);
    sleep_ms(5);
    uint64_t removed;
    assert_int_equal(node_audit_prune(a, wall_ms(), &removed), DM_OK);
    /* 1000 + 1000 + 500: each batch leaves its audit_pruned entry, which is the new head,
     * so the old head goes too */
    assert_int_equal(removed, 2500);
    assert_int_equal(node_audit_head(a).seq, 2503);
    node_audit_close(a);
    json_t *cp = load_checkpoint(f->s);
    assert_int_equal(json_integer_value(json_object_get(cp, "seq")), 2500);
    assert_int_equal(json_integer_value(json_object_get(cp, "removed_total")), 2500);
    json_decref(cp);
    node_audit_report r;
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    assert_int_equal(r.entries, 3);
    /* the outbox is the anchorer's: pruning the chain leaves pending events alone */
    assert_int_equal(count_cf(f->s, STORE_CF_OUTBOX), 834);
}

/* ---------------------------------------------------------------- posts from the loop */

typedef struct {
    node_audit_t *a;
    uv_timer_t t;
    int ticks, per, left;
    uint64_t posted;
    bool detached;
} poster;

static void on_detached(void *arg)
{
    ((poster *)arg)->detached = true;
}

static void on_post_tick(uv_timer_t *t)
{
    poster *p = DM_CONTAINER_OF(t, poster, t);
    for (int i = 0; i < p->per; i++) {
        json_t *fl = json_pack("{s:I, s:s}", "n", (json_int_t)p->posted, "api_key",
                               "supersecretkey123");
        assert_int_equal(node_audit_post(p->a, DM_LOG_DEBUG, "posted", fl, NULL), DM_OK);
        json_decref(fl); /* borrowed: the post copied it */
        p->posted++;
    }
    if (--p->left == 0) {
        uv_close((uv_handle_t *)t, NULL);
        node_audit_detach(p->a, on_detached, p);
    }
}

static void run_poster(uv_loop_t *loop, poster *p, node_audit_t *a, int ticks, int per)
{
    memset(p, 0, sizeof *p);
    p->a = a;
    p->per = per;
    p->left = ticks;
    assert_int_equal(node_audit_attach(a, loop), DM_OK);
    assert_int_equal(node_audit_attach(a, loop), DM_EEXIST);
    uv_timer_init(loop, &p->t);
    uv_timer_start(&p->t, on_post_tick, 0, 1);
}

/* Posted entries in chain order: their "n" strictly increases, secrets masked. */
static uint64_t check_posted_order(store_t *s, uint64_t *overflow_dropped)
{
    store_iter_t *it;
    assert_int_equal(store_iter_create(&it, s, STORE_CF_AUDIT, NULL, 0, NULL, 0), DM_OK);
    const uint8_t *k, *v;
    size_t kl, vl;
    json_int_t last = -1;
    uint64_t n = 0;
    *overflow_dropped = 0;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        assert_null(memmem(v, vl, "supersecret", 11));
        json_t *j = json_loadb((const char *)v, vl, 0, NULL);
        json_t *en = json_object_get(j, "entry"), *fl = json_object_get(en, "fields");
        const char *ev = json_string_value(json_object_get(en, "event"));
        if (!strcmp(ev, "posted")) {
            json_int_t x = json_integer_value(json_object_get(fl, "n"));
            assert_true(x > last);
            last = x;
            assert_string_equal(json_string_value(json_object_get(fl, "api_key")), "sup***");
            n++;
        } else if (!strcmp(ev, "audit_overflow")) {
            assert_string_equal(json_string_value(json_object_get(en, "level")), "WARNING");
            *overflow_dropped += (uint64_t)json_integer_value(json_object_get(fl, "dropped"));
        }
        json_decref(j);
    }
    store_iter_destroy(it);
    return n;
}

static void test_post_from_loop(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    uv_loop_t loop;
    uv_loop_init(&loop);
    assert_int_equal(node_audit_post(a, DM_LOG_INFO, "early", NULL, NULL), DM_ECLOSED);
    poster p;
    run_poster(&loop, &p, a, 40, 100);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_true(p.detached);
    assert_int_equal(node_audit_post(a, DM_LOG_INFO, "late", NULL, NULL), DM_ECLOSED);
    node_audit_post_stats st = node_audit_stats(a);
    assert_int_equal(st.posted, 4000);
    assert_int_equal(st.written + st.dropped, 4000);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.queued, 0);
    uint64_t od;
    assert_int_equal(check_posted_order(f->s, &od), st.written);
    assert_int_equal(od, st.dropped); /* every drop is accounted for on the chain */
    node_audit_report r;
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    assert_int_equal(r.entries, st.written + st.overflow_entries);
    assert_int_equal(node_audit_head(a).seq, r.entries);

    /* attach again on the same loop: posts go on after the earlier ones */
    run_poster(&loop, &p, a, 3, 10);
    p.posted = 4000;
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(check_posted_order(f->s, &od), node_audit_stats(a).written);
    expect_verify(f->s, DM_OK, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    node_audit_close(a);
}

static void test_post_overflow(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    uv_loop_t loop;
    uv_loop_init(&loop);
    assert_int_equal(node_audit_attach(a, &loop), DM_OK);
    /* fill the queue within one loop iteration: the rest is counted, not queued */
    for (uint64_t i = 0; i < NODE_AUDIT_POST_MAX + 37; i++) {
        json_t *fl = json_pack("{s:I}", "n", (json_int_t)i);
        assert_int_equal(node_audit_post(a, DM_LOG_DEBUG, "posted", fl, NULL), DM_OK);
        json_decref(fl);
    }
    node_audit_post_stats st = node_audit_stats(a);
    assert_int_equal(st.queued, NODE_AUDIT_POST_MAX);
    assert_int_equal(st.dropped, 37);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* one flush, then idle */
    st = node_audit_stats(a);
    assert_int_equal(st.written, NODE_AUDIT_POST_MAX);
    assert_int_equal(st.overflow_entries, 1);
    assert_int_equal(st.queued, 0);
    /* the overflow entry follows the queued entries: seq MAX+1 */
    json_t *e = load_seq(f->s, NODE_AUDIT_POST_MAX + 1);
    json_t *en = json_object_get(e, "entry");
    assert_string_equal(json_string_value(json_object_get(en, "event")), "audit_overflow");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(en, "fields"), "dropped")),
                     37);
    json_decref(e);
    for (int i = 0; i < 5; i++)
        assert_int_equal(node_audit_post(a, DM_LOG_DEBUG, "after", NULL, NULL), DM_OK);
    node_audit_detach(a, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    st = node_audit_stats(a);
    assert_int_equal(st.written, NODE_AUDIT_POST_MAX + 5);
    assert_int_equal(st.overflow_entries, 1);
    node_audit_report r;
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    assert_int_equal(r.entries, NODE_AUDIT_POST_MAX + 1 + 5);
    assert_int_equal(uv_loop_close(&loop), 0);
    node_audit_close(a);
}

/* The text lines: reference format, category security, secrets masked. */
static void test_text_lines(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    FILE *log = tmpfile();
    assert_non_null(log);
    dm_log_level old = dm_log_get_level();
    dm_log_set_level(DM_LOG_INFO);
    dm_log_set_stream(log);
    uv_loop_t loop;
    uv_loop_init(&loop);
    assert_int_equal(node_audit_attach(a, &loop), DM_OK);
    json_t *fl = json_pack("{s:s, s:s, s:{s:s}}", "remote", "192.168.1.100", "api_key",
                           "abcdefghijkl", "inner", "password", "hunter22hunter22");
    assert_int_equal(node_audit_post(a, DM_LOG_INFO, "auth_success", fl, NULL), DM_OK);
    assert_int_equal(node_audit_post(a, DM_LOG_WARNING, "rate_limit_exceeded", NULL,
                                     "Rate limit exceeded for 192.168.1.100"),
                     DM_OK);
    assert_int_equal(node_audit_post(a, DM_LOG_DEBUG, "below_level", NULL, "not shown"), DM_OK);
    node_audit_detach(a, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    store_batch_t *b;
    assert_int_equal(store_batch_create(&b), DM_OK);
    assert_int_equal(node_audit_commit(a, f->s, b, DM_LOG_ERROR, "share_rejected", fl, NULL, NULL),
                     DM_OK);
    store_batch_destroy(b);
    /* the caller's object is unchanged (borrowed) */
    assert_string_equal(json_string_value(json_object_get(fl, "api_key")), "abcdefghijkl");
    json_decref(fl);
    dm_log_set_stream(NULL);
    dm_log_set_level(old);

    char text[4096];
    rewind(log);
    size_t n = fread(text, 1, sizeof text - 1, log);
    text[n] = 0;
    fclose(log);
    assert_non_null(strstr(text, " - security - INFO - auth_success: remote=192.168.1.100, "
                                 "api_key=abc***, inner={\"password\":\"hun***\"}\n"));
    assert_non_null(strstr(text, " - security - WARNING - Rate limit exceeded for "
                                 "192.168.1.100\n"));
    assert_non_null(strstr(text, " - security - ERROR - share_rejected: remote="));
    assert_null(strstr(text, "not shown"));
    assert_null(strstr(text, "defghijkl"));
    assert_null(strstr(text, "hunter22"));
    /* a line starts with the reference's timestamp: "YYYY-MM-DD HH:MM:SS - " */
    int y, mo, d, h, mi, s;
    assert_int_equal(sscanf(text, "%4d-%2d-%2d %2d:%2d:%2d - ", &y, &mo, &d, &h, &mi, &s), 6);
    /* and the chain holds the masked values only */
    for (uint64_t q = 1; q <= 4; q++) {
        json_t *e = load_seq(f->s, q);
        char *t = json_dumps(e, JSON_COMPACT);
        assert_null(strstr(t, "defghijkl"));
        assert_null(strstr(t, "hunter22"));
        free(t);
        json_decref(e);
    }
    expect_verify(f->s, DM_OK, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    node_audit_close(a);
}

/* ---------------------------------------------------------------- concurrent writers */

typedef struct {
    fx *f;
    node_audit_t *a;
    atomic_bool stop;
    atomic_int heads_ok, verify_bad, prunes;
    atomic_ullong bad_seq;
    int share_rounds;
} conc;

/* node_share.c's commit: lock, mark, several appends with the operation's writes, one
 * store_write, rollback on failure, unlock */
static void *share_writer(void *arg)
{
    conc *c = arg;
    for (int i = 0; i < c->share_rounds; i++) {
        store_batch_t *b;
        assert_int_equal(store_batch_create(&b), DM_OK);
        char key[32];
        snprintf(key, sizeof key, "op/%p/%d", (void *)pthread_self(), i);
        store_batch_put(b, STORE_CF_PEERS, key, strlen(key), "x", 1); /* the operation */
        node_audit_lock(c->a);
        node_audit_mark m = node_audit_head(c->a);
        int rc = DM_OK;
        for (int j = 0; j < 3 && !rc; j++) {
            json_t *fl = json_pack("{s:i, s:i}", "round", i, "j", j);
            json_t *ev = j == 0 ? json_pack("{s:s, s:i}", "event_type", "data_share",
                                            "timestamp", i)
                                : NULL;
            rc = node_audit_append(c->a, b, DM_LOG_DEBUG, "share", fl, ev, NULL);
            json_decref(fl);
            json_decref(ev);
        }
        if (!rc)
            rc = store_write(c->f->s, b);
        if (rc)
            node_audit_rollback(c->a, &m);
        node_audit_unlock(c->a);
        assert_int_equal(rc, DM_OK);
        store_batch_destroy(b);
    }
    return NULL;
}

static void *commit_writer(void *arg)
{
    conc *c = arg;
    for (int i = 0; i < c->share_rounds; i++) {
        store_batch_t *b;
        assert_int_equal(store_batch_create(&b), DM_OK);
        json_t *fl = json_pack("{s:i}", "i", i);
        assert_int_equal(node_audit_commit(c->a, c->f->s, b, DM_LOG_DEBUG, "commit", fl, NULL,
                                           NULL),
                         DM_OK);
        json_decref(fl);
        store_batch_destroy(b);
    }
    return NULL;
}

static void *head_anchorer(void *arg)
{
    conc *c = arg;
    while (!atomic_load(&c->stop)) {
        int rc = node_audit_anchor_head(c->a, c->f->s);
        assert_true(rc == DM_OK || rc == DM_EEXIST);
        if (rc == DM_OK)
            atomic_fetch_add(&c->heads_ok, 1);
        sleep_ms(2);
    }
    return NULL;
}

static void *pruner(void *arg)
{
    conc *c = arg;
    while (!atomic_load(&c->stop)) {
        uint64_t removed;
        int rc = node_audit_prune(c->a, wall_ms() - 3, &removed);
        assert_true(rc == DM_OK || rc == DM_ECLOSED);
        atomic_fetch_add(&c->prunes, 1);
        sleep_ms(3);
    }
    return NULL;
}

static void *verifier(void *arg)
{
    conc *c = arg;
    while (!atomic_load(&c->stop)) {
        node_audit_report r;
        int rc = node_audit_verify_report(c->f->s, &r);
        if (rc != DM_OK) {
            atomic_fetch_add(&c->verify_bad, 1);
            atomic_store(&c->bad_seq, r.bad_seq);
        }
    }
    return NULL;
}

static void test_concurrent_writers(void **state)
{
    fx *f = *state;
    conc c;
    memset(&c, 0, sizeof c);
    c.f = f;
    c.share_rounds = 150;
    assert_int_equal(node_audit_open(&c.a, f->s), DM_OK);
    uv_loop_t loop;
    uv_loop_init(&loop);
    poster p;
    run_poster(&loop, &p, c.a, 100, 20);
    pthread_t w[3], bg[3];
    pthread_create(&w[0], NULL, share_writer, &c);
    pthread_create(&w[1], NULL, share_writer, &c);
    pthread_create(&w[2], NULL, commit_writer, &c);
    pthread_create(&bg[0], NULL, head_anchorer, &c);
    pthread_create(&bg[1], NULL, pruner, &c);
    pthread_create(&bg[2], NULL, verifier, &c);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(w[i], NULL);
    sleep_ms(20);
    atomic_store(&c.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(bg[i], NULL);
    if (atomic_load(&c.verify_bad))
        fail_msg("a concurrent verify failed %d times (bad seq %llu)", atomic_load(&c.verify_bad),
                 (unsigned long long)atomic_load(&c.bad_seq));
    assert_true(atomic_load(&c.prunes) > 0);

    node_audit_report r;
    assert_int_equal(node_audit_verify_report(f->s, &r), DM_OK);
    node_audit_mark head = node_audit_head(c.a);
    assert_int_equal(r.last_seq, head.seq);
    assert_memory_equal(r.head_hash, head.hash, 32);
    assert_int_equal(r.entries, r.last_seq - r.checkpoint_seq);
    node_audit_post_stats st = node_audit_stats(c.a);
    assert_int_equal(st.posted, 2000);
    assert_int_equal(st.written + st.dropped, 2000);
    /* outbox: one per share round, one per head anchor; pruning leaves it alone */
    assert_int_equal(count_cf(f->s, STORE_CF_OUTBOX),
                     2 * c.share_rounds + (uint64_t)atomic_load(&c.heads_ok));
    assert_int_equal(uv_loop_close(&loop), 0);
    node_audit_close(c.a);
}

int test_node_audit(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chain_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampering_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncation_and_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anchor_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_from_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
    };
    return cmocka_run_group_tests_name("node_audit", tests, NULL, NULL);
}
