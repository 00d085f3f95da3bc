/*
 * Unit tests for storage/: the RocksDB layer on real database directories.
 * Child processes (lock holders, crash writers) are this program re-executed
 * with a mode argument, so they start without RocksDB's threads of the parent.
 */
#include "dm_test.h"

#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "store.h"
#include "store_keys.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <time.h>

static const store_opts opts_create = {.create = true};
static const store_opts opts_rw = {0};
static const store_opts opts_ro = {.read_only = true};

static store_t *open_ok(const char *dir, const store_opts *o)
{
    store_t *s = NULL;
    int rc = store_open(&s, dir, o);
    if (rc != DM_OK)
        fail_msg("store_open %s: %s (%s)", dir, dm_err_name(rc), store_errmsg());
    assert_non_null(s);
    return s;
}

static void put_str(store_t *s, store_cf cf, const char *k, const char *v)
{
    assert_int_equal(store_put(s, cf, k, strlen(k), v, strlen(v)), DM_OK);
}

static void expect_str(store_t *s, store_cf cf, const char *k, const char *v)
{
    dm_buf b = DM_BUF_INIT;
    int rc = store_get(s, cf, k, strlen(k), &b);
    if (rc != DM_OK)
        fail_msg("get %s/%s: %s", store_cf_name(cf), k, dm_err_name(rc));
    assert_string_equal(dm_buf_cstr(&b), v);
    dm_buf_free(&b);
}

static void expect_absent(store_t *s, store_cf cf, const void *k, size_t klen)
{
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(store_get(s, cf, k, klen, &b), DM_ENOTFOUND);
    assert_int_equal(b.len, 0);
    dm_buf_free(&b);
}

static size_t count_cf(store_t *s, store_cf cf, const void *prefix, size_t plen)
{
    store_iter_t *it = NULL;
    assert_int_equal(store_iter_create(&it, s, cf, prefix, plen, NULL, 0), DM_OK);
    size_t n = 0;
    while (store_iter_next(it, NULL, NULL, NULL, NULL))
        n++;
    assert_int_equal(store_iter_status(it), DM_OK);
    store_iter_destroy(it);
    return n;
}

/* ---- basic records ---- */

static void test_roundtrip_and_isolation(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-rt");
    store_t *s = open_ok(dir, &opts_create);
    /* the same key in every CF holds that CF's own value */
    for (int c = 0; c < STORE_CF__COUNT; c++) {
        char v[64];
        snprintf(v, sizeof v, "value-in-%s", store_cf_name((store_cf)c));
        put_str(s, (store_cf)c, "k", v);
    }
    for (int c = 0; c < STORE_CF__COUNT; c++) {
        char v[64];
        snprintf(v, sizeof v, "value-in-%s", store_cf_name((store_cf)c));
        expect_str(s, (store_cf)c, "k", v);
    }
    /* a delete in one CF leaves the others alone */
    assert_int_equal(store_delete(s, STORE_CF_SHARES, "k", 1), DM_OK);
    expect_absent(s, STORE_CF_SHARES, "k", 1);
    expect_str(s, STORE_CF_AUDIT, "k", "value-in-audit");
    expect_str(s, STORE_CF_SEQ, "k", "value-in-share_seq");
    /* a key written to one CF only is absent from the others */
    put_str(s, STORE_CF_PEERS, "only-peers", "p");
    for (int c = 0; c < STORE_CF__COUNT; c++)
        if (c != STORE_CF_PEERS)
            expect_absent(s, (store_cf)c, "only-peers", 10);
    expect_absent(s, STORE_CF_KEYS, "missing", 7);
    assert_int_equal(store_delete(s, STORE_CF_KEYS, "missing", 7), DM_OK);

    /* binary keys and values, empty value, overwrite, append to a non-empty buffer */
    uint8_t bk[5] = {0, 0xff, 0, 1, 0};
    uint8_t bv[300];
    for (size_t i = 0; i < sizeof bv; i++)
        bv[i] = (uint8_t)(i * 7);
    assert_int_equal(store_put(s, STORE_CF_ANCHORS, bk, sizeof bk, bv, sizeof bv), DM_OK);
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(dm_buf_puts(&b, "pre"), DM_OK);
    assert_int_equal(store_get(s, STORE_CF_ANCHORS, bk, sizeof bk, &b), DM_OK);
    assert_int_equal(b.len, 3 + sizeof bv);
    assert_memory_equal(b.data, "pre", 3);
    assert_memory_equal(b.data + 3, bv, sizeof bv);
    assert_int_equal(store_put(s, STORE_CF_ANCHORS, bk, sizeof bk, NULL, 0), DM_OK);
    dm_buf_reset(&b);
    assert_int_equal(store_get(s, STORE_CF_ANCHORS, bk, sizeof bk, &b), DM_OK);
    assert_int_equal(b.len, 0);
    /* a 1 MiB value */
    size_t big = 1u << 20;
    uint8_t *bigv = malloc(big);
    assert_non_null(bigv);
    for (size_t i = 0; i < big; i++)
        bigv[i] = (uint8_t)(i ^ (i >> 8));
    assert_int_equal(store_put(s, STORE_CF_SHARES, "big", 3, bigv, big), DM_OK);
    dm_buf_reset(&b);
    assert_int_equal(store_get(s, STORE_CF_SHARES, "big", 3, &b), DM_OK);
    assert_int_equal(b.len, big);
    assert_memory_equal(b.data, bigv, big);
    free(bigv);

    /* arguments */
    assert_int_equal(store_get(s, STORE_CF__COUNT, "k", 1, &b), DM_EINVAL);
    assert_int_equal(store_get(s, (store_cf)-1, "k", 1, &b), DM_EINVAL);
    assert_int_equal(store_put(s, STORE_CF__COUNT, "k", 1, "v", 1), DM_EINVAL);
    assert_int_equal(store_put(s, STORE_CF_META, NULL, 1, "v", 1), DM_EINVAL);
    assert_int_equal(store_get(s, STORE_CF_META, "k", 1, NULL), DM_EINVAL);
    dm_buf_free(&b);

    store_close(s);
    store_close(NULL);
    dm_test_rmtree(dir);
    free(dir);
}

static void test_cf_names(void **state)
{
    (void)state;
    static const char *const want[] = {"default", "meta",   "keys",    "shares", "share_seq",
                                       "audit",   "outbox", "anchors", "peers",  "apikeys"};
    assert_int_equal(sizeof want / sizeof want[0], STORE_CF__COUNT);
    for (int c = 0; c < STORE_CF__COUNT; c++)
        assert_string_equal(store_cf_name((store_cf)c), want[c]);
    assert_string_equal(store_cf_name(STORE_CF__COUNT), "invalid");
}

static void test_reopen_persistence(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-reopen");
    for (int sync = 0; sync < 2; sync++) {
        store_opts o = {.create = true, .sync = sync};
        store_t *s = open_ok(dir, &o);
        char k[32], v[32];
        for (int i = 0; i < 200; i++) {
            snprintf(k, sizeof k, "s%d-k%03d", sync, i);
            snprintf(v, sizeof v, "v%d", i * i);
            put_str(s, STORE_CF_AUDIT, k, v);
        }
        snprintf(k, sizeof k, "s%d-k%03d", sync, 7);
        assert_int_equal(store_delete(s, STORE_CF_AUDIT, k, strlen(k)), DM_OK);
        store_close(s);
    }
    /* reopened without create: everything from both runs is there */
    store_t *s = open_ok(dir, &opts_rw);
    for (int sync = 0; sync < 2; sync++) {
        for (int i = 0; i < 200; i++) {
            char k[32], v[32];
            snprintf(k, sizeof k, "s%d-k%03d", sync, i);
            snprintf(v, sizeof v, "v%d", i * i);
            if (i == 7)
                expect_absent(s, STORE_CF_AUDIT, k, strlen(k));
            else
                expect_str(s, STORE_CF_AUDIT, k, v);
        }
    }
    assert_int_equal(count_cf(s, STORE_CF_AUDIT, NULL, 0), 398);
    /* the layout version is recorded at creation */
    dm_buf b = DM_BUF_INIT;
    const char *sk = STORE_META_SCHEMA_VERSION;
    assert_int_equal(store_get(s, STORE_CF_META, sk, strlen(sk), &b), DM_OK);
    assert_int_equal(b.len, 8);
    assert_int_equal(dm_get_u64be(b.data), STORE_SCHEMA_VERSION);
    dm_buf_free(&b);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

static void test_schema_newer_refused(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-schema");
    store_t *s = open_ok(dir, &opts_create);
    uint8_t v[8];
    dm_put_u64be(v, STORE_SCHEMA_VERSION + 1);
    const char *sk = STORE_META_SCHEMA_VERSION;
    assert_int_equal(store_put(s, STORE_CF_META, sk, strlen(sk), v, 8), DM_OK);
    store_close(s);
    s = NULL;
    assert_int_equal(store_open(&s, dir, &opts_rw), DM_EUNSUPPORTED);
    assert_null(s);
    assert_non_null(strstr(store_errmsg(), "newer"));
    assert_int_equal(store_open(&s, dir, &opts_ro), DM_EUNSUPPORTED);
    dm_test_rmtree(dir);
    free(dir);
}

/* ---- batches ---- */

static void test_batch_atomic(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-batch");
    store_t *s = open_ok(dir, &opts_create);
    for (int i = 0; i < 100; i++) {
        uint8_t k[8];
        store_key_u64(k, (uint64_t)i);
        assert_int_equal(store_put(s, STORE_CF_OUTBOX, k, 8, "old", 3), DM_OK);
    }
    store_batch_t *b = NULL;
    assert_int_equal(store_batch_create(&b), DM_OK);
    assert_int_equal(store_batch_count(b), 0);
    assert_int_equal(store_write(s, b), DM_OK); /* empty: a no-op */
    for (int i = 0; i < 500; i++) {
        uint8_t k[8];
        char v[16];
        store_key_u64(k, (uint64_t)i);
        int n = snprintf(v, sizeof v, "a%d", i);
        assert_int_equal(store_batch_put(b, STORE_CF_AUDIT, k, 8, v, (size_t)n), DM_OK);
        assert_int_equal(store_batch_put(b, STORE_CF_SHARES, k, 8, v, (size_t)n), DM_OK);
    }
    for (int i = 0; i < 100; i++) {
        uint8_t k[8];
        store_key_u64(k, (uint64_t)i);
        assert_int_equal(store_batch_delete(b, STORE_CF_OUTBOX, k, 8), DM_OK);
    }
    assert_int_equal(store_batch_count(b), 1100);
    assert_int_equal(store_batch_put(b, STORE_CF__COUNT, "k", 1, "v", 1), DM_EINVAL);
    assert_int_equal(store_batch_count(b), 1100);

    /* nothing is visible before the commit; an iterator opened before it
     * (an implicit snapshot) sees none of it afterwards either */
    assert_int_equal(count_cf(s, STORE_CF_AUDIT, NULL, 0), 0);
    store_iter_t *before = NULL;
    assert_int_equal(store_iter_create(&before, s, STORE_CF_AUDIT, NULL, 0, NULL, 0), DM_OK);
    assert_int_equal(store_write(s, b), DM_OK);
    assert_false(store_iter_next(before, NULL, NULL, NULL, NULL));
    assert_int_equal(store_iter_status(before), DM_OK);
    store_iter_destroy(before);
    assert_int_equal(count_cf(s, STORE_CF_AUDIT, NULL, 0), 500);
    assert_int_equal(count_cf(s, STORE_CF_SHARES, NULL, 0), 500);
    assert_int_equal(count_cf(s, STORE_CF_OUTBOX, NULL, 0), 0);

    /* the batch is kept after a commit until cleared, and can be reused */
    assert_int_equal(store_batch_count(b), 1100);
    store_batch_clear(b);
    assert_int_equal(store_batch_count(b), 0);
    assert_int_equal(store_batch_put(b, STORE_CF_META, "x", 1, "y", 1), DM_OK);
    assert_int_equal(store_batch_delete(b, STORE_CF_AUDIT, "\0\0\0\0\0\0\0\0", 8), DM_OK);
    assert_int_equal(store_write(s, b), DM_OK);
    expect_str(s, STORE_CF_META, "x", "y");
    assert_int_equal(count_cf(s, STORE_CF_AUDIT, NULL, 0), 499);
    store_batch_destroy(b);
    store_batch_destroy(NULL);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

/* A reader that counts a CF while batches of BATCH_N records land must only
 * ever see whole batches. */
#define BATCH_N 50
#define BATCH_MAX_ROUNDS 400

struct reader_arg {
    store_t *s;
    atomic_int stop;
    atomic_int reads;
    int bad;
};

static void *reader_main(void *p)
{
    struct reader_arg *a = p;
    while (!atomic_load(&a->stop)) {
        store_iter_t *it = NULL;
        if (store_iter_create(&it, a->s, STORE_CF_AUDIT, NULL, 0, NULL, 0) != DM_OK) {
            a->bad++;
            break;
        }
        size_t n = 0;
        while (store_iter_next(it, NULL, NULL, NULL, NULL))
            n++;
        if (store_iter_status(it) != DM_OK || n % BATCH_N != 0)
            a->bad++;
        store_iter_destroy(it);
        atomic_fetch_add(&a->reads, 1);
    }
    return NULL;
}

static void test_batch_concurrent_reader(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-conc");
    store_t *s = open_ok(dir, &opts_create);
    struct reader_arg a = {.s = s};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader_main, &a), 0);
    while (atomic_load(&a.reads) == 0)
        sched_yield();
    store_batch_t *b = NULL;
    assert_int_equal(store_batch_create(&b), DM_OK);
    /* keep writing until the reader has scanned many times during the writes */
    int start_reads = atomic_load(&a.reads), r = 0;
    for (; r < BATCH_MAX_ROUNDS && (r < 20 || atomic_load(&a.reads) - start_reads < 50); r++) {
        store_batch_clear(b);
        for (int i = 0; i < BATCH_N; i++) {
            uint8_t k[8];
            store_key_u64(k, (uint64_t)(r * BATCH_N + i));
            assert_int_equal(store_batch_put(b, STORE_CF_AUDIT, k, 8, "e", 1), DM_OK);
        }
        assert_int_equal(store_write(s, b), DM_OK);
    }
    atomic_store(&a.stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(a.bad, 0);
    assert_true(atomic_load(&a.reads) - start_reads > 1);
    assert_int_equal(count_cf(s, STORE_CF_AUDIT, NULL, 0), (size_t)(BATCH_N * r));
    store_batch_destroy(b);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

static void test_batch_readonly_leaves_nothing(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-robatch");
    store_t *s = open_ok(dir, &opts_create);
    put_str(s, STORE_CF_META, "marker", "1");
    store_close(s);

    s = open_ok(dir, &opts_ro);
    expect_str(s, STORE_CF_META, "marker", "1");
    store_batch_t *b = NULL;
    assert_int_equal(store_batch_create(&b), DM_OK);
    for (int i = 0; i < 20; i++) {
        uint8_t k[8];
        store_key_u64(k, (uint64_t)i);
        assert_int_equal(store_batch_put(b, STORE_CF_AUDIT, k, 8, "x", 1), DM_OK);
        assert_int_equal(store_batch_put(b, STORE_CF_SHARES, k, 8, "x", 1), DM_OK);
    }
    assert_int_equal(store_batch_delete(b, STORE_CF_META, "marker", 6), DM_OK);
    int rc = store_write(s, b);
    assert_int_equal(rc, DM_ESTORE);
    assert_true(strlen(store_errmsg()) > 0);
    assert_int_equal(store_put(s, STORE_CF_META, "p", 1, "q", 1), DM_ESTORE);
    assert_int_equal(store_delete(s, STORE_CF_META, "marker", 6), DM_ESTORE);
    store_batch_destroy(b);
    store_close(s);

    s = open_ok(dir, &opts_rw);
    expect_str(s, STORE_CF_META, "marker", "1");
    expect_absent(s, STORE_CF_META, "p", 1);
    assert_int_equal(count_cf(s, STORE_CF_AUDIT, NULL, 0), 0);
    assert_int_equal(count_cf(s, STORE_CF_SHARES, NULL, 0), 0);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

/* ---- key encodings and iteration ---- */

static void test_key_encodings(void **state)
{
    (void)state;
    uint8_t k[STORE_KEY_SEQ_LEN];
    uint64_t v = 0;
    store_key_u64(k, 0x0102030405060708ull);
    static const uint8_t be[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(k, be, 8);
    assert_int_equal(store_key_u64_decode(k, 8, &v), DM_OK);
    assert_int_equal(v, 0x0102030405060708ull);
    assert_int_equal(store_key_u64_decode(k, 7, &v), DM_EINVAL);
    assert_int_equal(store_key_u64_decode(k, 9, &v), DM_EINVAL);

    uint8_t origin[32], o2[32];
    for (int i = 0; i < 32; i++)
        origin[i] = (uint8_t)(0xa0 + i);
    store_key_seq(k, origin, 258);
    assert_memory_equal(k, origin, 32);
    static const uint8_t seq_be[8] = {0, 0, 0, 0, 0, 0, 1, 2};
    assert_memory_equal(k + 32, seq_be, 8);
    assert_int_equal(store_key_seq_decode(k, 40, o2, &v), DM_OK);
    assert_memory_equal(o2, origin, 32);
    assert_int_equal(v, 258);
    assert_int_equal(store_key_seq_decode(k, 39, o2, &v), DM_EINVAL);
    assert_int_equal(store_key_seq_decode(k, 41, o2, &v), DM_EINVAL);
    assert_int_equal(store_key_seq_decode(k, 40, NULL, &v), DM_OK);
    assert_int_equal(store_key_id_decode(k, 32, o2), DM_OK);
    assert_memory_equal(o2, origin, 32);
    assert_int_equal(store_key_id_decode(k, 31, o2), DM_EINVAL);
    assert_int_equal(store_key_id_decode(k, 32, NULL), DM_OK);
}

static void test_u64_numeric_order(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-order");
    store_t *s = open_ok(dir, &opts_create);
    static const uint64_t vals[] = {256, UINT64_MAX, 0,     1ull << 32,       255,
                                    1,   65535,      65536, (1ull << 63) + 5, 1ull << 63,
                                    2,   1000,       999,   UINT32_MAX,       (1ull << 32) + 1};
    const size_t nv = sizeof vals / sizeof vals[0];
    for (size_t i = 0; i < nv; i++) {
        uint8_t k[8];
        store_key_u64(k, vals[i]);
        assert_int_equal(store_put(s, STORE_CF_AUDIT, k, 8, &vals[i], sizeof vals[i]), DM_OK);
    }
    /* also after a reopen, when the data comes back from the WAL */
    for (int round = 0; round < 2; round++) {
        store_iter_t *it = NULL;
        assert_int_equal(store_iter_create(&it, s, STORE_CF_AUDIT, NULL, 0, NULL, 0), DM_OK);
        const uint8_t *key, *val;
        size_t klen, vlen, n = 0;
        uint64_t prev = 0;
        while (store_iter_next(it, &key, &klen, &val, &vlen)) {
            uint64_t cur;
            assert_int_equal(store_key_u64_decode(key, klen, &cur), DM_OK);
            if (n > 0)
                assert_true(cur > prev);
            uint64_t stored;
            assert_int_equal(vlen, sizeof stored);
            memcpy(&stored, val, sizeof stored);
            assert_int_equal(stored, cur);
            prev = cur;
            n++;
        }
        assert_int_equal(store_iter_status(it), DM_OK);
        assert_int_equal(n, nv);
        assert_int_equal(prev, UINT64_MAX);
        store_iter_destroy(it);
        store_close(s);
        s = open_ok(dir, &opts_rw);
    }
    /* start key: from 1000 on, numerically */
    uint8_t start[8];
    store_key_u64(start, 1000);
    store_iter_t *it = NULL;
    assert_int_equal(store_iter_create(&it, s, STORE_CF_AUDIT, NULL, 0, start, 8), DM_OK);
    const uint8_t *key;
    size_t klen;
    uint64_t first = 0;
    assert_true(store_iter_next(it, &key, &klen, NULL, NULL));
    assert_int_equal(store_key_u64_decode(key, klen, &first), DM_OK);
    assert_int_equal(first, 1000);
    store_iter_destroy(it);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

/* Collect the keys an iterator returns, as "k1|k2|..." with bytes in hex. */
static void collect(store_t *s, store_cf cf, const void *prefix, size_t plen, const void *start,
                    size_t slen, char *out, size_t cap)
{
    store_iter_t *it = NULL;
    assert_int_equal(store_iter_create(&it, s, cf, prefix, plen, start, slen), DM_OK);
    const uint8_t *k;
    size_t kl;
    size_t o = 0;
    out[0] = 0;
    while (store_iter_next(it, &k, &kl, NULL, NULL)) {
        if (o)
            o += (size_t)snprintf(out + o, cap - o, "|");
        for (size_t i = 0; i < kl; i++)
            o += (size_t)snprintf(out + o, cap - o, "%02x", k[i]);
        assert_true(o < cap);
    }
    assert_int_equal(store_iter_status(it), DM_OK);
    /* stays at the end */
    assert_false(store_iter_next(it, &k, &kl, NULL, NULL));
    store_iter_destroy(it);
}

static void test_prefix_bounds(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-prefix");
    store_t *s = open_ok(dir, &opts_create);
    /* keys around the prefixes below, in byte order */
    static const char *const hex[] = {"61",       "6161ff", "6162",   "616200", "6162ff",
                                      "6162ffff", "6163",   "62",     "fe",     "feff",
                                      "ff",       "ffff",   "ffff00", "ffffff", "ffffffff01"};
    for (size_t i = 0; i < sizeof hex / sizeof hex[0]; i++) {
        uint8_t k[8];
        size_t n = dm_test_unhex(k, sizeof k, hex[i]);
        assert_int_equal(store_put(s, STORE_CF_PEERS, k, n, "v", 1), DM_OK);
        /* the same keys in a neighbouring CF must not leak into the scan */
        assert_int_equal(store_put(s, STORE_CF_ANCHORS, k, n, "w", 1), DM_OK);
    }
    char got[512];
    collect(s, STORE_CF_PEERS, "ab", 2, NULL, 0, got, sizeof got);
    assert_string_equal(got, "6162|616200|6162ff|6162ffff");
    /* a prefix ending in 0xff: the bound carries into the byte before it */
    collect(s, STORE_CF_PEERS, "ab\xff", 3, NULL, 0, got, sizeof got);
    assert_string_equal(got, "6162ff|6162ffff");
    collect(s, STORE_CF_PEERS, "a", 1, NULL, 0, got, sizeof got);
    assert_string_equal(got, "61|6161ff|6162|616200|6162ff|6162ffff|6163");
    /* all-0xff prefixes have no successor: no upper bound, still only the prefix */
    collect(s, STORE_CF_PEERS, "\xff", 1, NULL, 0, got, sizeof got);
    assert_string_equal(got, "ff|ffff|ffff00|ffffff|ffffffff01");
    collect(s, STORE_CF_PEERS, "\xff\xff", 2, NULL, 0, got, sizeof got);
    assert_string_equal(got, "ffff|ffff00|ffffff|ffffffff01");
    collect(s, STORE_CF_PEERS, "\xfe", 1, NULL, 0, got, sizeof got);
    assert_string_equal(got, "fe|feff");
    collect(s, STORE_CF_PEERS, "zz", 2, NULL, 0, got, sizeof got);
    assert_string_equal(got, "");
    collect(s, STORE_CF_PEERS, NULL, 0, NULL, 0, got, sizeof got);
    assert_string_equal(got, "61|6161ff|6162|616200|6162ff|6162ffff|6163|62|fe|feff|ff|ffff|"
                             "ffff00|ffffff|ffffffff01");

    /* start keys inside, before and after the prefix range */
    collect(s, STORE_CF_PEERS, "ab", 2, "ab\x00", 3, got, sizeof got);
    assert_string_equal(got, "616200|6162ff|6162ffff");
    collect(s, STORE_CF_PEERS, "ab", 2, "ab\x01", 3, got, sizeof got);
    assert_string_equal(got, "6162ff|6162ffff");
    collect(s, STORE_CF_PEERS, "ab", 2, "a", 1, got, sizeof got);
    assert_string_equal(got, "6162|616200|6162ff|6162ffff");
    collect(s, STORE_CF_PEERS, "ab", 2, "b", 1, got, sizeof got);
    assert_string_equal(got, "");
    collect(s, STORE_CF_PEERS, "\xff\xff", 2, "\xff\xff\x01", 3, got, sizeof got);
    assert_string_equal(got, "ffffff|ffffffff01");
    collect(s, STORE_CF_PEERS, NULL, 0, "fe", 2, got, sizeof got);
    assert_string_equal(got, "fe|feff|ff|ffff|ffff00|ffffff|ffffffff01");
    collect(s, STORE_CF_PEERS, NULL, 0, "\xfe\xff\x00", 3, got, sizeof got);
    assert_string_equal(got, "ff|ffff|ffff00|ffffff|ffffffff01");

    /* store_get_last: the highest key under a prefix */
    static const struct {
        const char *prefix;
        size_t plen;
        const char *want; /* hex, NULL: none */
    } last[] = {
        {"ab", 2, "6162ffff"}, {"a", 1, "6163"},          {"\xff", 1, "ffffffff01"},
        {"\xfe", 1, "feff"},    {"zz", 2, NULL},           {NULL, 0, "ffffffff01"},
        {"ab\x00", 3, "616200"}, {"aa", 2, "6161ff"},
    };
    for (size_t i = 0; i < sizeof last / sizeof last[0]; i++) {
        dm_buf k = DM_BUF_INIT, v = DM_BUF_INIT;
        int rc = store_get_last(s, STORE_CF_PEERS, last[i].prefix, last[i].plen, &k, &v);
        if (!last[i].want) {
            assert_int_equal(rc, DM_ENOTFOUND);
        } else {
            assert_int_equal(rc, DM_OK);
            char hx[64];
            dm_hex_encode(hx, k.data, k.len);
            assert_string_equal(hx, last[i].want);
            assert_int_equal(v.len, 1);
            assert_int_equal(v.data[0], 'v');
        }
        dm_buf_free(&k);
        dm_buf_free(&v);
    }
    assert_int_equal(store_get_last(s, STORE_CF_APIKEYS, NULL, 0, NULL, NULL), DM_ENOTFOUND);

    store_iter_t *it = NULL;
    assert_int_equal(store_iter_create(&it, s, STORE_CF__COUNT, NULL, 0, NULL, 0), DM_EINVAL);
    assert_int_equal(store_iter_create(&it, s, STORE_CF_PEERS, NULL, 3, NULL, 0), DM_EINVAL);
    store_iter_destroy(NULL);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

/* Per-origin sequence keys: one origin's range, in seq order, from a start. */
static void test_seq_ranges(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-seq");
    store_t *s = open_ok(dir, &opts_create);
    uint8_t oa[32], ob[32];
    memset(oa, 0x11, 32);
    memset(ob, 0x11, 32);
    ob[31] = 0x12; /* adjacent origin: a prefix scan of oa must stop before it */
    for (uint64_t q = 0; q < 300; q++) {
        uint8_t k[STORE_KEY_SEQ_LEN];
        uint64_t seq = (q * 7919) % 300; /* insertion order scrambled */
        store_key_seq(k, oa, seq);
        assert_int_equal(store_put(s, STORE_CF_SEQ, k, sizeof k, "a", 1), DM_OK);
        store_key_seq(k, ob, seq);
        assert_int_equal(store_put(s, STORE_CF_SEQ, k, sizeof k, "b", 1), DM_OK);
    }
    uint8_t start[STORE_KEY_SEQ_LEN];
    store_key_seq(start, oa, 256);
    store_iter_t *it = NULL;
    assert_int_equal(store_iter_create(&it, s, STORE_CF_SEQ, oa, 32, start, sizeof start), DM_OK);
    const uint8_t *k, *v;
    size_t kl, vl;
    uint64_t want = 256;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        uint8_t o[32];
        uint64_t seq;
        assert_int_equal(store_key_seq_decode(k, kl, o, &seq), DM_OK);
        assert_memory_equal(o, oa, 32);
        assert_int_equal(seq, want++);
        assert_int_equal(vl, 1);
        assert_int_equal(v[0], 'a');
    }
    assert_int_equal(want, 300);
    store_iter_destroy(it);
    assert_int_equal(count_cf(s, STORE_CF_SEQ, ob, 32), 300);
    assert_int_equal(count_cf(s, STORE_CF_SEQ, oa, 31), 600);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

/* ---- open modes and errors ---- */

static void test_open_missing(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-missing");
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/nothing-here", dir);
    store_t *s = (store_t *)1;
    assert_int_equal(store_open(&s, sub, &opts_rw), DM_ENOTFOUND);
    assert_null(s);
    assert_true(strlen(store_errmsg()) > 0);
    assert_int_equal(store_open(&s, sub, NULL), DM_ENOTFOUND);
    assert_int_equal(store_open(&s, sub, &opts_ro), DM_ENOTFOUND);
    /* read-only never creates, even when asked to */
    store_opts ro_create = {.create = true, .read_only = true};
    assert_int_equal(store_open(&s, sub, &ro_create), DM_ENOTFOUND);
    /* an existing but empty directory is not a database either */
    assert_int_equal(store_open(&s, dir, &opts_rw), DM_ENOTFOUND);
    assert_int_equal(store_open(&s, "", &opts_create), DM_EINVAL);
    assert_int_equal(store_open(&s, NULL, &opts_create), DM_EINVAL);
    /* nothing was created by the failed opens */
    struct stat st;
    assert_int_not_equal(stat(sub, &st), 0);
    s = open_ok(sub, &opts_create);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

static void test_open_corrupt(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-corrupt");
    store_t *s = open_ok(dir, &opts_create);
    store_close(s);
    char cur[PATH_MAX];
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);
    FILE *f = fopen(cur, "w");
    assert_non_null(f);
    fputs("garbage-without-newline", f);
    fclose(f);
    s = NULL;
    int rc = store_open(&s, dir, &opts_rw);
    assert_null(s);
    if (rc != DM_ECORRUPT)
        fail_msg("want ECORRUPT, got %s: %s", dm_err_name(rc), store_errmsg());
    assert_non_null(strstr(store_errmsg(), "Corruption"));
    dm_test_rmtree(dir);
    free(dir);
}

static void test_lock_same_process(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-lock");
    store_t *a = open_ok(dir, &opts_create);
    put_str(a, STORE_CF_KEYS, "doc", "v1");
    /* a read-only handle opens beside the writer and sees what it wrote */
    store_t *r = open_ok(dir, &opts_ro);
    expect_str(r, STORE_CF_KEYS, "doc", "v1");
    assert_int_equal(count_cf(r, STORE_CF_KEYS, NULL, 0), 1);
    /* a second writer does not */
    store_t *b = (store_t *)1;
    assert_int_equal(store_open(&b, dir, &opts_rw), DM_EBUSY);
    assert_null(b);
    assert_true(strlen(store_errmsg()) > 0);
    store_close(r);
    store_close(a);
    /* released by close */
    b = open_ok(dir, &opts_rw);
    expect_str(b, STORE_CF_KEYS, "doc", "v1");
    store_close(b);
    dm_test_rmtree(dir);
    free(dir);
}

/* ---- child processes ---- */

static char self_exe[PATH_MAX];

/* Pipes are close-on-exec so a child only keeps the ends it is given; a
 * holder that inherited the write end of its own wait pipe would never see EOF. */
static void cloexec_pipe(int p[2])
{
    assert_int_equal(pipe(p), 0);
    assert_int_equal(fcntl(p[0], F_SETFD, FD_CLOEXEC), 0);
    assert_int_equal(fcntl(p[1], F_SETFD, FD_CLOEXEC), 0);
}

static pid_t spawn(char *const argv[], int keep1, int keep2)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (fcntl(keep1, F_SETFD, 0) != 0 || (keep2 >= 0 && fcntl(keep2, F_SETFD, 0) != 0))
            _exit(126);
        execv(self_exe, argv);
        _exit(127);
    }
    return pid;
}

static void fd_arg(char buf[16], int fd)
{
    snprintf(buf, 16, "%d", fd);
}

/* Hold the database read-write until `waitfd` reaches EOF. */
static int child_hold(const char *dir, int readyfd, int waitfd)
{
    store_opts o = {.create = true};
    store_t *s = NULL;
    if (store_open(&s, dir, &o) != DM_OK)
        return 2;
    if (store_put(s, STORE_CF_META, "holder", 6, "yes", 3) != DM_OK)
        return 3;
    char c = 'R';
    if (write(readyfd, &c, 1) != 1)
        return 4;
    while (read(waitfd, &c, 1) > 0) {
    }
    store_close(s);
    return 0;
}

static void test_lock_other_process(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-lock2");
    int ready[2], hold[2];
    cloexec_pipe(ready);
    cloexec_pipe(hold);
    char rfd[16], wfd[16];
    fd_arg(rfd, ready[1]);
    fd_arg(wfd, hold[0]);
    char *argv[] = {self_exe, "--hold", dir, rfd, wfd, NULL};
    pid_t pid = spawn(argv, ready[1], hold[0]);
    close(ready[1]);
    close(hold[0]);
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'R');

    store_t *s = (store_t *)1;
    assert_int_equal(store_open(&s, dir, &opts_rw), DM_EBUSY);
    assert_null(s);
    const char *msg = store_errmsg();
    assert_true(strstr(msg, "lock") || strstr(msg, "LOCK"));
    assert_int_equal(store_open(&s, dir, &opts_create), DM_EBUSY);
    /* read-only works while the other process holds the LOCK */
    s = open_ok(dir, &opts_ro);
    expect_str(s, STORE_CF_META, "holder", "yes");
    store_close(s);

    close(hold[1]); /* let the holder close and exit */
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    close(ready[0]);
    s = open_ok(dir, &opts_rw);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

/*
 * Crash writer: batch i writes, across CFs, shares/"c"+i, share_seq/(origin, i),
 * audit/i, outbox/i, meta/"last" = i, and deletes outbox/(i-1). After each
 * store_write returns it reports i to the parent, which kills it with SIGKILL
 * mid-stream and checks that every acknowledged batch is complete and that no
 * batch is partial.
 */
static const uint8_t crash_origin[32] = {0xc0, 0xff, 0xee};

static void crash_vals(uint64_t i, uint8_t share[600], uint8_t audit[200])
{
    for (size_t j = 0; j < 600; j++)
        share[j] = (uint8_t)(i * 31 + j);
    for (size_t j = 0; j < 200; j++)
        audit[j] = (uint8_t)(i * 17 + j * 3);
}

static void share_key(uint8_t k[9], uint64_t i)
{
    k[0] = 'c';
    store_key_u64(k + 1, i);
}

static int child_crash(const char *dir, int sync, int ackfd)
{
    store_opts o = {.create = true, .sync = sync != 0};
    store_t *s = NULL;
    if (store_open(&s, dir, &o) != DM_OK)
        return 2;
    store_batch_t *b = NULL;
    if (store_batch_create(&b) != DM_OK)
        return 3;
    uint8_t share[600], audit[200];
    for (uint64_t i = 0;; i++) {
        uint8_t k9[9], k8[8], ks[STORE_KEY_SEQ_LEN], prev[8];
        crash_vals(i, share, audit);
        share_key(k9, i);
        store_key_u64(k8, i);
        store_key_seq(ks, crash_origin, i);
        store_batch_clear(b);
        int rc = store_batch_put(b, STORE_CF_SHARES, k9, 9, share, sizeof share);
        rc = rc ? rc : store_batch_put(b, STORE_CF_SEQ, ks, sizeof ks, k9, 9);
        rc = rc ? rc : store_batch_put(b, STORE_CF_AUDIT, k8, 8, audit, sizeof audit);
        rc = rc ? rc : store_batch_put(b, STORE_CF_OUTBOX, k8, 8, "pending", 7);
        rc = rc ? rc : store_batch_put(b, STORE_CF_META, "last", 4, k8, 8);
        if (i > 0) {
            store_key_u64(prev, i - 1);
            rc = rc ? rc : store_batch_delete(b, STORE_CF_OUTBOX, prev, 8);
        }
        if (rc != DM_OK)
            return 4;
        if (store_write(s, b) != DM_OK)
            return 5;
        if (write(ackfd, &i, sizeof i) != (ssize_t)sizeof i)
            return 6;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void crash_run(int sync)
{
    char *dir = dm_test_mkdtemp(sync ? "store-crash-sync" : "store-crash-nosync");
    int p[2];
    cloexec_pipe(p);
    char afd[16];
    fd_arg(afd, p[1]);
    char *argv[] = {self_exe, "--crash", dir, sync ? "1" : "0", afd, NULL};
    pid_t pid = spawn(argv, p[1], -1);
    close(p[1]);

    /* read acks: wait up to 30 s for the first (open under ASan is slow), then
     * until 2000 acks or 2 s, then kill without warning */
    uint8_t acc[8];
    size_t have = 0;
    uint64_t acked = 0, nacks = 0;
    double t0 = now_s(), first = 0;
    bool killed = false;
    for (;;) {
        double t = now_s();
        if (!killed &&
            ((nacks == 0 && t - t0 > 30) || (nacks > 0 && t - first > 2.0) || nacks >= 2000)) {
            kill(pid, SIGKILL);
            killed = true;
        }
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int pr = poll(&pf, 1, 100);
        if (pr <= 0)
            continue;
        uint8_t buf[4096];
        ssize_t n = read(p[0], buf, sizeof buf);
        if (n <= 0)
            break; /* EOF: the child is gone */
        for (ssize_t j = 0; j < n; j++) {
            acc[have++] = buf[j];
            if (have == 8) {
                uint64_t v;
                memcpy(&v, acc, 8);
                if (v != nacks)
                    fail_msg("ack %llu out of order (want %llu)", (unsigned long long)v,
                             (unsigned long long)nacks);
                acked = v;
                if (nacks++ == 0)
                    first = now_s();
                have = 0;
            }
        }
    }
    close(p[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
        fail_msg("crash child ended otherwise (status %d)", st);
    if (nacks == 0)
        fail_msg("crash child acknowledged nothing");
    print_message("sync=%d: %llu batches acknowledged before SIGKILL\n", sync,
                  (unsigned long long)nacks);

    store_t *s = open_ok(dir, &opts_rw);
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(store_get(s, STORE_CF_META, "last", 4, &b), DM_OK);
    assert_int_equal(b.len, 8);
    uint64_t last = dm_get_u64be(b.data);
    /* one batch may have committed without its ack reaching the pipe */
    assert_true(last == acked || last == acked + 1);
    uint8_t share[600], audit[200];
    for (uint64_t i = 0; i <= last; i++) {
        uint8_t k9[9], k8[8], ks[STORE_KEY_SEQ_LEN];
        crash_vals(i, share, audit);
        share_key(k9, i);
        store_key_u64(k8, i);
        store_key_seq(ks, crash_origin, i);
        dm_buf_reset(&b);
        assert_int_equal(store_get(s, STORE_CF_SHARES, k9, 9, &b), DM_OK);
        assert_int_equal(b.len, sizeof share);
        assert_memory_equal(b.data, share, sizeof share);
        dm_buf_reset(&b);
        assert_int_equal(store_get(s, STORE_CF_SEQ, ks, sizeof ks, &b), DM_OK);
        assert_int_equal(b.len, 9);
        assert_memory_equal(b.data, k9, 9);
        dm_buf_reset(&b);
        assert_int_equal(store_get(s, STORE_CF_AUDIT, k8, 8, &b), DM_OK);
        assert_int_equal(b.len, sizeof audit);
        assert_memory_equal(b.data, audit, sizeof audit);
    }
    /* nothing of a later batch, and the deletes of the last one applied */
    assert_int_equal(count_cf(s, STORE_CF_SHARES, NULL, 0), last + 1);
    assert_int_equal(count_cf(s, STORE_CF_SEQ, NULL, 0), last + 1);
    assert_int_equal(count_cf(s, STORE_CF_AUDIT, NULL, 0), last + 1);
    store_iter_t *it = NULL;
    assert_int_equal(store_iter_create(&it, s, STORE_CF_OUTBOX, NULL, 0, NULL, 0), DM_OK);
    const uint8_t *k;
    size_t kl;
    assert_true(store_iter_next(it, &k, &kl, NULL, NULL));
    uint64_t ob = 0;
    assert_int_equal(store_key_u64_decode(k, kl, &ob), DM_OK);
    assert_int_equal(ob, last);
    assert_false(store_iter_next(it, &k, &kl, NULL, NULL));
    assert_int_equal(store_iter_status(it), DM_OK);
    store_iter_destroy(it);
    dm_buf_free(&b);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

static void test_crash_sync(void **state)
{
    (void)state;
    crash_run(1);
}

static void test_crash_nosync(void **state)
{
    (void)state;
    crash_run(0);
}

/* ---- older and newer layouts ---- */

/* A database made by an older version: only "default" and "meta", plus a CF
 * from a newer version this one does not know. */
static void make_old_db(const char *dir)
{
    char *err = NULL;
    rocksdb_options_t *o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_t *db = rocksdb_open(o, dir, &err);
    if (err)
        fail_msg("rocksdb_open: %s", err);
    rocksdb_column_family_handle_t *meta = rocksdb_create_column_family(db, o, "meta", &err);
    assert_null(err);
    rocksdb_column_family_handle_t *fut = rocksdb_create_column_family(db, o, "future", &err);
    assert_null(err);
    rocksdb_writeoptions_t *w = rocksdb_writeoptions_create();
    rocksdb_put_cf(db, w, meta, "old", 3, "yes", 3, &err);
    assert_null(err);
    rocksdb_put_cf(db, w, fut, "f", 1, "x", 1, &err);
    assert_null(err);
    rocksdb_writeoptions_destroy(w);
    rocksdb_column_family_handle_destroy(meta);
    rocksdb_column_family_handle_destroy(fut);
    rocksdb_close(db);
    rocksdb_options_destroy(o);
}

static void test_missing_cfs(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("store-oldcf");
    make_old_db(dir);
    /* read-only: the absent CFs read as empty, writes fail */
    store_t *s = open_ok(dir, &opts_ro);
    expect_str(s, STORE_CF_META, "old", "yes");
    expect_absent(s, STORE_CF_SHARES, "k", 1);
    assert_int_equal(count_cf(s, STORE_CF_SHARES, NULL, 0), 0);
    assert_int_equal(count_cf(s, STORE_CF_SEQ, "p", 1), 0);
    assert_int_equal(store_put(s, STORE_CF_SHARES, "k", 1, "v", 1), DM_ESTORE);
    assert_non_null(strstr(store_errmsg(), "shares"));
    store_batch_t *b = NULL;
    assert_int_equal(store_batch_create(&b), DM_OK);
    assert_int_equal(store_batch_put(b, STORE_CF_AUDIT, "k", 1, "v", 1), DM_OK);
    assert_int_equal(store_write(s, b), DM_ESTORE);
    store_close(s);
    /* read-write without create: the missing CFs are added, the unknown one kept */
    s = open_ok(dir, &opts_rw);
    expect_str(s, STORE_CF_META, "old", "yes");
    for (int c = 0; c < STORE_CF__COUNT; c++)
        put_str(s, (store_cf)c, "new", store_cf_name((store_cf)c));
    assert_int_equal(store_write(s, b), DM_OK);
    store_close(s);
    s = open_ok(dir, &opts_rw);
    for (int c = 0; c < STORE_CF__COUNT; c++)
        expect_str(s, (store_cf)c, "new", store_cf_name((store_cf)c));
    expect_str(s, STORE_CF_AUDIT, "k", "v");
    store_close(s);
    store_batch_destroy(b);
    /* the unknown CF survived with its data */
    char *err = NULL;
    rocksdb_options_t *o = rocksdb_options_create();
    size_t n = 0;
    char **names = rocksdb_list_column_families(o, dir, &n, &err);
    assert_null(err);
    assert_int_equal(n, STORE_CF__COUNT + 1);
    bool fut = false;
    for (size_t i = 0; i < n; i++)
        fut = fut || strcmp(names[i], "future") == 0;
    assert_true(fut);
    rocksdb_list_column_families_destroy(names, n);
    rocksdb_options_destroy(o);
    dm_test_rmtree(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--hold") == 0)
        return child_hold(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc == 5 && strcmp(argv[1], "--crash") == 0)
        return child_crash(argv[2], atoi(argv[3]), atoi(argv[4]));
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0) {
        perror("readlink /proc/self/exe");
        return 1;
    }
    self_exe[n] = 0;
    signal(SIGPIPE, SIG_IGN);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cf_names),
        cmocka_unit_test(test_key_encodings),
        cmocka_unit_test(test_roundtrip_and_isolation),
        cmocka_unit_test(test_reopen_persistence),
        cmocka_unit_test(test_schema_newer_refused),
        cmocka_unit_test(test_batch_atomic),
        cmocka_unit_test(test_batch_concurrent_reader),
        cmocka_unit_test(test_batch_readonly_leaves_nothing),
        cmocka_unit_test(test_u64_numeric_order),
        cmocka_unit_test(test_prefix_bounds),
        cmocka_unit_test(test_seq_ranges),
        cmocka_unit_test(test_open_missing),
        cmocka_unit_test(test_open_corrupt),
        cmocka_unit_test(test_lock_same_process),
        cmocka_unit_test(test_lock_other_process),
        cmocka_unit_test(test_missing_cfs),
        cmocka_unit_test(test_crash_sync),
        cmocka_unit_test(test_crash_nosync),
    };
    return cmocka_run_group_tests_name("storage", tests, NULL, NULL) ? 1 : 0;
}
