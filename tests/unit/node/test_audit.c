#define _GNU_SOURCE /* memmem */
/* Audit log: hash chain in RocksDB, outbox entries, tamper detection. */
#include "dm_test.h"
#include "groups.h"

#include "dm_err.h"
#include "node_audit.h"
#include "store.h"
#include "store_keys.h"

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

/* Append n entries, one batch per `per` entries; every 3rd carries an anchor event. */
static void append_n(store_t *s, node_audit_t *a, int n, int per)
{
    store_batch_t *b;
    assert_int_equal(store_batch_create(&b), DM_OK);
    for (int i = 0; i < n; i++) {
        json_t *fields = json_pack("{s:i, s:s}", "i", i, "who", "node1");
        json_t *ev = i % 3 == 0 ? json_pack("{s:s, s:i}", "event_type", "data_share", "timestamp", i)
                                : NULL;
        assert_int_equal(node_audit_append(a, b, DM_LOG_INFO, "test_event", fields, ev, NULL), DM_OK);
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

static void expect_verify(store_t *s, int want, uint64_t want_bad)
{
    uint64_t n, bad;
    int rc = node_audit_verify(s, &n, &bad);
    if (rc != want || bad != want_bad)
        fail_msg("verify: got %s bad=%llu, want %s bad=%llu", dm_err_name(rc),
                 (unsigned long long)bad, dm_err_name(want), (unsigned long long)want_bad);
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
    uint64_t n, bad;
    assert_int_equal(node_audit_verify(f->s, &n, &bad), DM_OK);
    assert_int_equal(n, 30);

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

static void test_tampering_named(void **state)
{
    fx *f = *state;
    node_audit_t *a;
    assert_int_equal(node_audit_open(&a, f->s), DM_OK);
    append_n(f->s, a, 10, 10);
    node_audit_close(a);
    dm_buf e4 = DM_BUF_INIT, e5 = DM_BUF_INIT, v = DM_BUF_INIT;
    get_seq(f->s, 4, &e4);
    get_seq(f->s, 5, &e5);

    /* edit a field of entry 4 */
    dm_buf_append(&v, e4.data, e4.len);
    char *p = memmem(v.data, v.len, "node1", 5);
    assert_non_null(p);
    p[4] = '9';
    put_seq(f->s, 4, &v);
    expect_verify(f->s, DM_ETAMPER, 4);
    put_seq(f->s, 4, &e4);
    expect_verify(f->s, DM_OK, 0);

    /* remove entry 4 */
    uint8_t k[8];
    store_key_u64(k, 4);
    assert_int_equal(store_delete(f->s, STORE_CF_AUDIT, k, 8), DM_OK);
    expect_verify(f->s, DM_ETAMPER, 4);
    put_seq(f->s, 4, &e4);

    /* swap entries 4 and 5 */
    put_seq(f->s, 4, &e5);
    put_seq(f->s, 5, &e4);
    expect_verify(f->s, DM_ETAMPER, 4);
    put_seq(f->s, 4, &e4);
    put_seq(f->s, 5, &e5);

    /* replace entry 5 by a self-consistent forgery: its hash matches its own text, but
     * its prev does not match entry 4 */
    dm_buf_reset(&v);
    dm_buf_puts(&v, "{\"entry\":{\"event\":\"x\",\"prev\":\"");
    for (int i = 0; i < 64; i++)
        dm_buf_putc(&v, '0');
    dm_buf_puts(&v, "\",\"seq\":5},\"hash\":\"");
    for (int i = 0; i < 64; i++)
        dm_buf_putc(&v, 'a');
    dm_buf_puts(&v, "\"}");
    put_seq(f->s, 5, &v);
    expect_verify(f->s, DM_ETAMPER, 5);
    put_seq(f->s, 5, &e5);

    /* garbage value, and the last entry removed (a truncated tail is still a valid chain
     * prefix: anchoring the head on chain is what detects truncation) */
    dm_buf_reset(&v);
    dm_buf_puts(&v, "not json");
    put_seq(f->s, 7, &v);
    expect_verify(f->s, DM_ETAMPER, 7);
    dm_buf_free(&e4);
    dm_buf_free(&e5);
    dm_buf_free(&v);
}

int test_node_audit(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chain_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tampering_named, setup, teardown),
    };
    return cmocka_run_group_tests_name("node_audit", tests, NULL, NULL);
}
