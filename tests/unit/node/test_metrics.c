/* Prometheus text format 0.0.4: exact output, escaping, validation; the latency histogram. */
#include "dm_test.h"
#include "groups.h"

#include "dm_err.h"
#include "dm_util.h"
#include "node_metrics.h"

#include <math.h>

static void expect_text(dm_buf *b, const char *want)
{
    const char *got = dm_buf_cstr(b);
    if (strcmp(got, want) != 0)
        fail_msg("got:\n%s\nwant:\n%s", got, want);
}

static void test_counter_gauge(void **state)
{
    (void)state;
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(node_metrics_counter(&b, "dm_shares_total", "Shares accepted.",
                                          NODE_METRICS_NO_LABELS, 18446744073709551615u),
                     DM_OK);
    assert_int_equal(node_metrics_gauge(&b, "dm_peers", "Connected peers.",
                                        NODE_METRICS_LABELS({"dir", "in"}), 3),
                     DM_OK);
    assert_int_equal(
        node_metrics_gauge_i64(&b, "dm_clock_skew_ms", NULL, NODE_METRICS_NO_LABELS, -42), DM_OK);
    assert_int_equal(node_metrics_gauge(&b, "dm_ratio", "", NODE_METRICS_NO_LABELS, 0.1), DM_OK);
    expect_text(&b, "# HELP dm_shares_total Shares accepted.\n"
                    "# TYPE dm_shares_total counter\n"
                    "dm_shares_total 18446744073709551615\n"
                    "# HELP dm_peers Connected peers.\n"
                    "# TYPE dm_peers gauge\n"
                    "dm_peers{dir=\"in\"} 3\n"
                    "# TYPE dm_clock_skew_ms gauge\n"
                    "dm_clock_skew_ms -42\n"
                    "# TYPE dm_ratio gauge\n"
                    "dm_ratio 0.1\n");
    dm_buf_free(&b);
}

/* One HELP/TYPE header, then a sample per label set. */
static void test_family_samples(void **state)
{
    (void)state;
    dm_buf b = DM_BUF_INIT;
    node_metrics_family f;
    assert_int_equal(node_metrics_begin(&f, &b, "dm_api_responses_total", NODE_METRICS_COUNTER,
                                        "API responses by front and status class."),
                     DM_OK);
    assert_int_equal(
        node_metrics_sample_u64(&f, NODE_METRICS_LABELS({"api", "internal"}, {"code", "2xx"}), 12),
        DM_OK);
    assert_int_equal(
        node_metrics_sample_u64(&f, NODE_METRICS_LABELS({"api", "external"}, {"code", "4xx"}), 0),
        DM_OK);
    assert_int_equal(node_metrics_sample_double(&f, NODE_METRICS_LABELS({"api", "x"}), 1.5), DM_OK);
    node_metrics_family g;
    assert_int_equal(node_metrics_begin(&g, &b, "dm:temp", NODE_METRICS_GAUGE, "Odd values."),
                     DM_OK);
    assert_int_equal(node_metrics_sample_double(&g, NODE_METRICS_LABELS({"v", "nan"}), NAN), DM_OK);
    assert_int_equal(node_metrics_sample_double(&g, NODE_METRICS_LABELS({"v", "+inf"}), INFINITY),
                     DM_OK);
    assert_int_equal(node_metrics_sample_double(&g, NODE_METRICS_LABELS({"v", "-inf"}), -INFINITY),
                     DM_OK);
    assert_int_equal(node_metrics_sample_double(&g, NODE_METRICS_LABELS({"v", "big"}), 1e21),
                     DM_OK);
    assert_int_equal(node_metrics_sample_double(&g, NODE_METRICS_LABELS({"v", "third"}), 1.0 / 3),
                     DM_OK);
    assert_int_equal(node_metrics_sample_i64(&g, NODE_METRICS_LABELS({"v", "min"}), INT64_MIN),
                     DM_OK);
    expect_text(&b, "# HELP dm_api_responses_total API responses by front and status class.\n"
                    "# TYPE dm_api_responses_total counter\n"
                    "dm_api_responses_total{api=\"internal\",code=\"2xx\"} 12\n"
                    "dm_api_responses_total{api=\"external\",code=\"4xx\"} 0\n"
                    "dm_api_responses_total{api=\"x\"} 1.5\n"
                    "# HELP dm:temp Odd values.\n"
                    "# TYPE dm:temp gauge\n"
                    "dm:temp{v=\"nan\"} NaN\n"
                    "dm:temp{v=\"+inf\"} +Inf\n"
                    "dm:temp{v=\"-inf\"} -Inf\n"
                    "dm:temp{v=\"big\"} 1e+21\n"
                    "dm:temp{v=\"third\"} 0.3333333333333333\n"
                    "dm:temp{v=\"min\"} -9223372036854775808\n");
    dm_buf_free(&b);
}

static void test_histogram(void **state)
{
    (void)state;
    /* bounds are inclusive (le is <=) */
    node_metrics_hist h;
    node_metrics_hist_init(&h);
    node_metrics_hist_observe(&h, 0.0005);
    node_metrics_hist_observe(&h, 0.00050000001);
    node_metrics_hist_observe(&h, 5);
    node_metrics_hist_observe(&h, 5.0000001);
    assert_int_equal(h.counts[0], 1);
    assert_int_equal(h.counts[1], 1);
    assert_int_equal(h.counts[NODE_METRICS_HIST_BUCKETS - 2], 1);
    assert_int_equal(h.counts[NODE_METRICS_HIST_BUCKETS - 1], 1);
    assert_int_equal(h.count, 4);

    /* binary fractions, so that the sum is exact */
    node_metrics_hist_init(&h);
    node_metrics_hist_observe(&h, 0.00048828125); /* 2^-11: le 0.0005 */
    node_metrics_hist_observe(&h, 0.0009765625);  /* 2^-10: le 0.001 */
    node_metrics_hist_observe_ns(&h, 3906250);    /* 2^-8 s: le 0.005 */
    node_metrics_hist_observe(&h, 0.1875);        /* le 0.25 */
    node_metrics_hist_observe(&h, 7);             /* +Inf */
    node_metrics_hist_observe(&h, -1);            /* as 0: le 0.0005 */
    node_metrics_hist_observe(&h, NAN);           /* ignored */
    assert_int_equal(h.count, 6);

    dm_buf b = DM_BUF_INIT;
    assert_int_equal(node_metrics_histogram(&b, "dm_api_latency_seconds", "Request latency.",
                                            NODE_METRICS_LABELS({"api", "external"}), &h),
                     DM_OK);
    expect_text(&b, "# HELP dm_api_latency_seconds Request latency.\n"
                    "# TYPE dm_api_latency_seconds histogram\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"0.0005\"} 2\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"0.001\"} 3\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"0.0025\"} 3\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"0.005\"} 4\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"0.01\"} 4\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"0.025\"} 4\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"0.05\"} 4\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"0.1\"} 4\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"0.25\"} 5\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"0.5\"} 5\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"1\"} 5\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"2.5\"} 5\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"5\"} 5\n"
                    "dm_api_latency_seconds_bucket{api=\"external\",le=\"+Inf\"} 6\n"
                    "dm_api_latency_seconds_sum{api=\"external\"} 7.19287109375\n"
                    "dm_api_latency_seconds_count{api=\"external\"} 6\n");

    /* no labels, and an empty histogram; two of one family share the header */
    dm_buf_reset(&b);
    node_metrics_hist empty = {0};
    node_metrics_family f;
    assert_int_equal(node_metrics_begin(&f, &b, "lat", NODE_METRICS_HISTOGRAM, NULL), DM_OK);
    assert_int_equal(node_metrics_sample_hist(&f, NODE_METRICS_NO_LABELS, &empty), DM_OK);
    assert_int_equal(node_metrics_sample_hist(&f, NODE_METRICS_LABELS({"a", "1"}), &empty), DM_OK);
    const char *t = dm_buf_cstr(&b);
    assert_non_null(strstr(t, "# TYPE lat histogram\nlat_bucket{le=\"0.0005\"} 0\n"));
    assert_non_null(strstr(t, "lat_bucket{le=\"+Inf\"} 0\nlat_sum 0\nlat_count 0\n"
                              "lat_bucket{a=\"1\",le=\"0.0005\"} 0\n"));
    assert_non_null(strstr(t, "lat_sum{a=\"1\"} 0\nlat_count{a=\"1\"} 0\n"));
    assert_null(strstr(t, "# HELP"));
    assert_null(strstr(t + 1, "# TYPE"));
    size_t lines = 0;
    for (const char *p = t; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 1 + 2 * (NODE_METRICS_HIST_BUCKETS + 2));
    dm_buf_free(&b);
}

static void test_escaping(void **state)
{
    (void)state;
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(node_metrics_counter(&b, "c", "Back\\slash, \"quotes\"\nand newline.",
                                          NODE_METRICS_LABELS({"path", "C:\\dir\\\"x\"\nnext"},
                                                              {"utf8", "\xc3\xa9t\xc3\xa9"}),
                                          1),
                     DM_OK);
    expect_text(&b, "# HELP c Back\\\\slash, \"quotes\"\\nand newline.\n"
                    "# TYPE c counter\n"
                    "c{path=\"C:\\\\dir\\\\\\\"x\\\"\\nnext\",utf8=\"\xc3\xa9t\xc3\xa9\"} 1\n");
    dm_buf_free(&b);
}

/* Every rejection leaves the buffer as it was. */
static void expect_rejected(dm_buf *b, int rc, int want)
{
    assert_int_equal(rc, want);
    expect_text(b, "KEEP\n");
}

static void test_invalid(void **state)
{
    (void)state;
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(dm_buf_puts(&b, "KEEP\n"), DM_OK);
    const char *bad_names[] = {"", "1abc", "a-b", "a b", "a.b", "é", "a\n", "a{x}"};
    for (size_t i = 0; i < DM_ARRAY_LEN(bad_names); i++) {
        expect_rejected(&b, node_metrics_counter(&b, bad_names[i], "h", NODE_METRICS_NO_LABELS, 1),
                        DM_EINVAL);
        node_metrics_family f;
        expect_rejected(&b, node_metrics_begin(&f, &b, bad_names[i], NODE_METRICS_GAUGE, NULL),
                        DM_EINVAL);
        /* a family whose begin failed takes no samples */
        expect_rejected(&b, node_metrics_sample_u64(&f, NODE_METRICS_NO_LABELS, 1), DM_EINVAL);
    }
    expect_rejected(&b, node_metrics_counter(&b, NULL, "h", NODE_METRICS_NO_LABELS, 1), DM_EINVAL);
    /* bad label names, duplicates, reserved, bad UTF-8 */
    const char *bad_labels[] = {"", "1a", "a:b", "a-b", "__name__"};
    for (size_t i = 0; i < DM_ARRAY_LEN(bad_labels); i++)
        expect_rejected(
            &b, node_metrics_gauge(&b, "g", "h", NODE_METRICS_LABELS({bad_labels[i], "v"}), 1),
            DM_EINVAL);
    expect_rejected(
        &b, node_metrics_gauge(&b, "g", "h", NODE_METRICS_LABELS({"a", "1"}, {"a", "2"}), 1),
        DM_EINVAL);
    expect_rejected(&b, node_metrics_gauge(&b, "g", "h", NODE_METRICS_LABELS({"a", NULL}), 1),
                    DM_EINVAL);
    expect_rejected(&b, node_metrics_gauge(&b, "g", "h", NULL, 1, 1), DM_EINVAL);
    const char *bad_utf8[] = {"\xff",  "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                              "ok\x80"};
    for (size_t i = 0; i < DM_ARRAY_LEN(bad_utf8); i++) {
        expect_rejected(
            &b, node_metrics_gauge(&b, "g", "h", NODE_METRICS_LABELS({"a", bad_utf8[i]}), 1),
            DM_EINVAL);
        expect_rejected(&b, node_metrics_gauge(&b, "g", bad_utf8[i], NODE_METRICS_NO_LABELS, 1),
                        DM_EINVAL);
    }
    /* "le" is the histogram's own label; a type mismatch; negative counters */
    node_metrics_hist h = {0};
    expect_rejected(&b, node_metrics_histogram(&b, "h", "h", NODE_METRICS_LABELS({"le", "1"}), &h),
                    DM_EINVAL);
    expect_rejected(&b, node_metrics_histogram(&b, "h", "h", NODE_METRICS_NO_LABELS, NULL),
                    DM_EINVAL);
    dm_buf scratch = DM_BUF_INIT;
    node_metrics_family f;
    assert_int_equal(node_metrics_begin(&f, &scratch, "c_total", NODE_METRICS_COUNTER, NULL),
                     DM_OK);
    size_t len = scratch.len;
    assert_int_equal(node_metrics_sample_hist(&f, NODE_METRICS_NO_LABELS, &h), DM_EINVAL);
    assert_int_equal(node_metrics_sample_i64(&f, NODE_METRICS_NO_LABELS, -1), DM_ERANGE);
    assert_int_equal(node_metrics_sample_double(&f, NODE_METRICS_NO_LABELS, -0.5), DM_ERANGE);
    assert_int_equal(node_metrics_sample_double(&f, NODE_METRICS_NO_LABELS, NAN), DM_ERANGE);
    assert_int_equal(scratch.len, len);
    assert_int_equal(node_metrics_begin(&f, &scratch, "hh", NODE_METRICS_HISTOGRAM, NULL), DM_OK);
    len = scratch.len;
    assert_int_equal(node_metrics_sample_u64(&f, NODE_METRICS_NO_LABELS, 1), DM_EINVAL);
    assert_int_equal(scratch.len, len);
    assert_int_equal(node_metrics_begin(&f, &scratch, "x", (node_metrics_type)7, NULL), DM_EINVAL);
    assert_int_equal(scratch.len, len);
    dm_buf_free(&scratch);
    dm_buf_free(&b);
}

int test_node_metrics(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge), cmocka_unit_test(test_family_samples),
        cmocka_unit_test(test_histogram),     cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests_name("node_metrics", tests, NULL, NULL);
}
