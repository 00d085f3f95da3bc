/* Token buckets per client: exact refill, eviction under floods, clock edge cases. */
#include "dm_test.h"
#include "groups.h"

#include "dm_enc.h"
#include "dm_err.h"
#include "dm_util.h"
#include "node_ratelimit.h"

static node_ratelimit_t *mk(uint32_t rate, uint32_t burst, size_t max)
{
    node_ratelimit_t *rl = NULL;
    assert_int_equal(node_ratelimit_create(&rl, rate, burst, max), DM_OK);
    assert_non_null(rl);
    return rl;
}

/* Take until refused (at most `limit` times); returns how many were admitted. */
static unsigned drain(node_ratelimit_t *rl, const char *client, uint64_t now, unsigned limit,
                      uint32_t *retry)
{
    unsigned n = 0;
    while (n < limit && node_ratelimit_take(rl, client, now, retry)) {
        assert_int_equal(*retry, 0);
        n++;
    }
    return n;
}

static node_ratelimit_stats stats(const node_ratelimit_t *rl)
{
    node_ratelimit_stats st;
    node_ratelimit_get_stats(rl, &st);
    return st;
}

static void expect_refused(node_ratelimit_t *rl, const char *client, uint64_t now,
                           uint32_t want_retry)
{
    uint32_t retry = 0;
    assert_false(node_ratelimit_take(rl, client, now, &retry));
    assert_int_equal(retry, want_retry);
}

static void test_create_args(void **state)
{
    (void)state;
    static int marker;
    node_ratelimit_t *rl = (node_ratelimit_t *)&marker; /* must come back NULL */
    assert_int_equal(node_ratelimit_create(NULL, 10, 20, 16), DM_EINVAL);
    assert_int_equal(node_ratelimit_create(&rl, 0, 20, 16), DM_EINVAL);
    assert_null(rl);
    assert_int_equal(node_ratelimit_create(&rl, 10, 0, 16), DM_EINVAL);
    assert_int_equal(node_ratelimit_create(&rl, 10, 20, 0), DM_EINVAL);
    assert_int_equal(node_ratelimit_create(&rl, 10, 20, (size_t)NODE_RATELIMIT_MAX_CLIENTS + 1),
                     DM_EINVAL);
    node_ratelimit_destroy(NULL);
    node_ratelimit_stats st;
    memset(&st, 0xff, sizeof st);
    node_ratelimit_get_stats(NULL, &st);
    assert_int_equal(st.admitted + st.limited + st.evictions + st.clients, 0);
    /* a NULL limiter or client refuses rather than crashing */
    uint32_t retry = 0;
    assert_false(node_ratelimit_take(NULL, "ip:1.2.3.4", 0, &retry));
    assert_true(retry >= 1);
}

/* The design's two configurations: exactly `burst` at t=0, then refusals
 * whose retry_after is the time to one token; after that time, exactly one. */
static void check_burst(uint32_t rate, uint32_t burst)
{
    node_ratelimit_t *rl = mk(rate, burst, 1024);
    uint32_t retry = 99;
    assert_int_equal(drain(rl, "ip:127.0.0.1", 0, burst + 10, &retry), burst);
    uint32_t one_token_ms = (1000 + rate - 1) / rate;
    assert_int_equal(retry, one_token_ms);
    expect_refused(rl, "ip:127.0.0.1", one_token_ms - 1, 1);
    assert_int_equal(drain(rl, "ip:127.0.0.1", one_token_ms, 100, &retry), 1);

    node_ratelimit_stats st = stats(rl);
    assert_int_equal(st.admitted, burst + 1);
    assert_int_equal(st.limited, 3);
    assert_int_equal(st.clients, 1);
    assert_int_equal(st.evictions, 0);
    node_ratelimit_destroy(rl);
}

static void test_burst_then_refused(void **state)
{
    (void)state;
    check_burst(50, 100); /* internal API */
    check_burst(10, 20);  /* external API */
    check_burst(3, 7);    /* 1000/3 is not whole: retry rounds up */
}

/* Refill is exact: after 1 s exactly `rate` tokens, never more than burst,
 * and many small steps add up to the same as one big step (no drift). */
static void test_refill_rate(void **state)
{
    (void)state;
    node_ratelimit_t *rl = mk(10, 20, 64);
    uint32_t retry;
    uint64_t t = 5000;
    assert_int_equal(drain(rl, "key:a", t, 100, &retry), 20);
    assert_int_equal(drain(rl, "key:a", t + 1000, 100, &retry), 10);
    assert_int_equal(drain(rl, "key:a", t + 3000, 100, &retry), 20); /* capped at burst */

    /* 3 tokens/s: 1000 steps of 1 ms give exactly 3 tokens, one as soon as
     * each 333.33 ms of credit is complete (334, 667, 1000) */
    node_ratelimit_t *r3 = mk(3, 3, 4);
    assert_int_equal(drain(r3, "c", 0, 10, &retry), 3);
    unsigned got = 0;
    uint64_t at[3] = {0};
    for (uint64_t ms = 1; ms <= 1000; ms++) {
        if (node_ratelimit_take(r3, "c", ms, &retry)) {
            assert_true(got < 3);
            at[got++] = ms;
        }
    }
    assert_int_equal(got, 3);
    assert_int_equal(at[0], 334);
    assert_int_equal(at[1], 667);
    assert_int_equal(at[2], 1000);
    expect_refused(r3, "c", 1000, 334);

    /* 10 s of steady load at exactly the rate is all admitted, over it is not */
    node_ratelimit_t *r = mk(50, 100, 4);
    assert_int_equal(drain(r, "k", 0, 1000, &retry), 100);
    unsigned admitted = 0;
    for (uint64_t ms = 20; ms <= 10000; ms += 20)
        admitted += node_ratelimit_take(r, "k", ms, &retry);
    assert_int_equal(admitted, 500);
    expect_refused(r, "k", 10000, 20);
    node_ratelimit_destroy(r);
    node_ratelimit_destroy(r3);
    node_ratelimit_destroy(rl);
}

static void test_independent_clients(void **state)
{
    (void)state;
    node_ratelimit_t *rl = mk(10, 20, 64);
    uint32_t retry;
    assert_int_equal(drain(rl, "ip:10.0.0.1", 0, 100, &retry), 20);
    assert_int_equal(retry, 100);
    /* others are untouched, including near-identical names */
    assert_int_equal(drain(rl, "ip:10.0.0.2", 0, 100, &retry), 20);
    assert_int_equal(drain(rl, "ip:10.0.0.1 ", 0, 100, &retry), 20);
    assert_int_equal(drain(rl, "key:ip:10.0.0.1", 0, 100, &retry), 20);
    assert_int_equal(drain(rl, "", 0, 100, &retry), 20);
    /* and the first is still empty */
    expect_refused(rl, "ip:10.0.0.1", 50, 50);
    node_ratelimit_stats st = stats(rl);
    assert_int_equal(st.clients, 5);
    assert_int_equal(st.admitted, 100);
    node_ratelimit_destroy(rl);
}

/* A flood of 10x max_clients distinct clients: the table never holds more
 * than max_clients, and a throttled client that keeps hammering meanwhile
 * keeps its empty bucket (it is always recently used). */
static void test_flood_bounded_hammered_kept(void **state)
{
    (void)state;
    const size_t max = 256;
    node_ratelimit_t *rl = mk(10, 20, max);
    uint32_t retry;
    assert_int_equal(drain(rl, "ip:6.6.6.6", 0, 100, &retry), 20);
    char name[64];
    uint64_t hammered = 1; /* drain's refusal */
    for (size_t i = 0; i < 10 * max; i++) {
        snprintf(name, sizeof name, "ip:10.%zu.%zu.%zu", i >> 16, (i >> 8) & 255, i & 255);
        /* each flood client is new: admitted, and left one token short of full */
        assert_true(node_ratelimit_take(rl, name, 50, &retry));
        if (i % 16 == 0) {
            expect_refused(rl, "ip:6.6.6.6", 50, 50);
            hammered++;
        }
        assert_true(stats(rl).clients <= max);
    }
    node_ratelimit_stats st = stats(rl);
    assert_int_equal(st.clients, max);
    assert_int_equal(st.admitted, 20 + 10 * max);
    assert_int_equal(st.limited, hammered);
    assert_int_equal(st.evictions, 10 * max + 1 - max);
    /* the hammered client is still throttled: an evicted one would get 20 again */
    expect_refused(rl, "ip:6.6.6.6", 50, 50);
    assert_int_equal(drain(rl, "ip:6.6.6.6", 100, 100, &retry), 1);
    /* the oldest flood clients were evicted (fresh bucket again), the newest kept */
    assert_int_equal(drain(rl, "ip:10.0.0.0", 50, 100, &retry), 20);
    snprintf(name, sizeof name, "ip:10.%zu.%zu.%zu", (10 * max - 1) >> 16,
             ((10 * max - 1) >> 8) & 255, (10 * max - 1) & 255);
    assert_int_equal(drain(rl, name, 50, 100, &retry), 19);
    node_ratelimit_destroy(rl);
}

/* A new client evicts a bucket that has refilled (forgets nothing) before a
 * less recently used one that is still short of tokens; with none refilled,
 * the least recently used goes. */
static void test_evict_full_first(void **state)
{
    (void)state;
    node_ratelimit_t *rl = mk(1, 2, 3);
    uint32_t retry;
    assert_int_equal(drain(rl, "A", 0, 10, &retry), 2);   /* least recent, empty */
    assert_true(node_ratelimit_take(rl, "B", 0, &retry)); /* full again at t=1000 */
    assert_int_equal(drain(rl, "C", 0, 10, &retry), 2);   /* most recent, empty */
    assert_true(node_ratelimit_take(rl, "D", 1000, &retry));
    node_ratelimit_stats st = stats(rl);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.clients, 3);
    /* A and C kept their state: one token each at t=1000, not a fresh two */
    assert_int_equal(drain(rl, "A", 1000, 10, &retry), 1);
    assert_int_equal(retry, 1000);
    assert_int_equal(drain(rl, "C", 1000, 10, &retry), 1);
    st = stats(rl);
    assert_int_equal(st.evictions, 1);

    /* now nobody is full: E evicts the least recently used, D */
    assert_true(node_ratelimit_take(rl, "E", 1000, &retry));
    st = stats(rl);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(drain(rl, "A", 1000, 10, &retry), 0); /* kept */
    assert_int_equal(drain(rl, "D", 1000, 10, &retry), 2); /* forgotten: fresh bucket */
    node_ratelimit_destroy(rl);
}

/* Client strings of any length get their own bucket: identity is the whole string. */
static void test_long_clients(void **state)
{
    (void)state;
    node_ratelimit_t *rl = mk(1, 3, 64);
    uint32_t retry;
    size_t lens[] = {127, 128, 129, 4096, 100000};
    for (size_t k = 0; k < DM_ARRAY_LEN(lens); k++) {
        char *a = malloc(lens[k] + 1);
        assert_non_null(a);
        memset(a, 'a' + (int)k, lens[k]); /* no string repeats another length's */
        a[lens[k]] = 0;
        assert_int_equal(drain(rl, a, 0, 10, &retry), 3);
        /* same string again (a new copy): same bucket */
        char *copy = strdup(a);
        expect_refused(rl, copy, 0, 1000);
        /* differs only in the last byte, or one byte shorter: other buckets */
        a[lens[k] - 1] = 'y';
        assert_int_equal(drain(rl, a, 0, 10, &retry), 3);
        a[lens[k] - 1] = 0;
        assert_int_equal(drain(rl, a, 0, 10, &retry), 3);
        free(copy);
        free(a);
    }
    node_ratelimit_destroy(rl);
}

static void test_rate1_burst1(void **state)
{
    (void)state;
    node_ratelimit_t *rl = mk(1, 1, 1);
    assert_true(node_ratelimit_take(rl, "a", 0, NULL)); /* retry may be NULL */
    expect_refused(rl, "a", 0, 1000);
    expect_refused(rl, "a", 1, 999);
    expect_refused(rl, "a", 999, 1);
    assert_true(node_ratelimit_take(rl, "a", 1000, NULL));
    expect_refused(rl, "a", 1000, 1000);
    /* a long idle period still gives one token only */
    assert_true(node_ratelimit_take(rl, "a", 1000000, NULL));
    expect_refused(rl, "a", 1000000, 1000);
    /* one slot: each new client takes it over; a throttled one is forgotten */
    assert_false(node_ratelimit_take(rl, "a", 1000001, NULL));
    assert_true(node_ratelimit_take(rl, "b", 1000001, NULL));
    assert_true(node_ratelimit_take(rl, "a", 1000001, NULL));
    node_ratelimit_stats st = stats(rl);
    assert_int_equal(st.clients, 1);
    assert_int_equal(st.evictions, 2);
    node_ratelimit_destroy(rl);
}

/* Huge clock values and jumps: no overflow, refill capped at burst; a clock
 * that goes back credits nothing, now or later. */
static void test_clock_extremes(void **state)
{
    (void)state;
    node_ratelimit_t *rl = mk(UINT32_MAX, UINT32_MAX, 8);
    uint32_t retry;
    /* 4e9 tokens/s: a fresh bucket at 0, a jump to the end of time */
    assert_true(node_ratelimit_take(rl, "big", 0, &retry));
    assert_true(node_ratelimit_take(rl, "big", UINT64_MAX, &retry));
    node_ratelimit_destroy(rl);

    rl = mk(10, 20, 8);
    assert_int_equal(drain(rl, "j", 0, 100, &retry), 20);
    assert_int_equal(drain(rl, "j", UINT64_MAX, 100, &retry), 20);
    assert_int_equal(retry, 100);
    expect_refused(rl, "j", UINT64_MAX, 100);

    uint64_t t0 = UINT64_MAX - 5000;
    assert_int_equal(drain(rl, "k", t0, 100, &retry), 20);
    assert_int_equal(drain(rl, "k", t0 + 500, 100, &retry), 5);
    /* backwards: nothing added, and last seen time stays at t0 + 500 */
    expect_refused(rl, "k", 1, 100);
    expect_refused(rl, "k", t0, 100);
    assert_int_equal(drain(rl, "k", t0 + 600, 100, &retry), 1);
    assert_int_equal(drain(rl, "k", UINT64_MAX, 100, &retry), 20);
    node_ratelimit_destroy(rl);
}

/* The keyed hash is the reference SipHash-2-4-128 (veorq/SipHash vectors.h,
 * key 00..0f, message 00..len-1). */
static void test_siphash_vectors(void **state)
{
    (void)state;
    static const struct {
        size_t len;
        const char *hex;
    } v[] = {
        {0, "a3817f04ba25a8e66df67214c7550293"},  {1, "da87c1d86b99af44347659119b22fc45"},
        {7, "a1f1ebbed8dbc153c0b84aa61ff08239"},  {8, "3b62a9ba6258f5610f83e264f31497b4"},
        {15, "5493e99933b0a8117e08ec0f97cfc3d9"}, {63, "5150d1772f50834a503e069a973fbd7c"},
    };
    uint8_t key[16], msg[64], want[16], got[16];
    for (int i = 0; i < 16; i++)
        key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++)
        msg[i] = (uint8_t)i;
    for (size_t k = 0; k < DM_ARRAY_LEN(v); k++) {
        assert_int_equal(dm_hex_decode(want, 16, v[k].hex, 32), DM_OK);
        node__siphash24_128(key, msg, v[k].len, got);
        assert_memory_equal(got, want, 16);
    }
}

int test_node_ratelimit(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_args),
        cmocka_unit_test(test_burst_then_refused),
        cmocka_unit_test(test_refill_rate),
        cmocka_unit_test(test_independent_clients),
        cmocka_unit_test(test_flood_bounded_hammered_kept),
        cmocka_unit_test(test_evict_full_first),
        cmocka_unit_test(test_long_clients),
        cmocka_unit_test(test_rate1_burst1),
        cmocka_unit_test(test_clock_extremes),
        cmocka_unit_test(test_siphash_vectors),
    };
    return cmocka_run_group_tests_name("node_ratelimit", tests, NULL, NULL);
}
