#ifndef DM_NODE_METRICS_H
#define DM_NODE_METRICS_H

#include "dm_buf.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Prometheus text exposition format, version 0.0.4, rendered into a dm_buf,
 * and a fixed-bucket latency histogram.
 *
 * A metric family is begun once (its "# HELP" and "# TYPE" lines) and then
 * takes any number of samples, one per label set:
 *
 *   node_metrics_family f;
 *   node_metrics_begin(&f, &out, "dm_api_requests_total", NODE_METRICS_COUNTER, "Requests.");
 *   node_metrics_sample_u64(&f, NODE_METRICS_LABELS({"api", "internal"}), 12);
 *   node_metrics_sample_u64(&f, NODE_METRICS_LABELS({"api", "external"}), 3);
 *
 * gives
 *
 *   # HELP dm_api_requests_total Requests.
 *   # TYPE dm_api_requests_total counter
 *   dm_api_requests_total{api="internal"} 12
 *   dm_api_requests_total{api="external"} 3
 *
 * The caller keeps a family's samples together and begins each family once
 * per document (the format requires both; nothing here remembers families).
 * Metric names must match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* and not start with "__"; label names are unique
 * within a sample, and a histogram's labels must not include "le". Label
 * values and HELP text must be UTF-8; label values are escaped (\\ \" \n),
 * HELP text too (\\ \n). Every function returns DM_OK, DM_EINVAL for a bad
 * name / label / type / UTF-8, DM_ERANGE for a negative counter value, or
 * DM_ENOMEM; on an error nothing is appended (the buffer keeps its length).
 *
 * Threads: pure functions over caller-owned memory. A node_metrics_hist is a
 * plain value without locking: observe and render it on one thread (the loop
 * thread), or copy it under the caller's own lock.
 */

/** The Content-Type of a response carrying this format. */
#define NODE_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef enum {
    NODE_METRICS_COUNTER,
    NODE_METRICS_GAUGE,
    NODE_METRICS_HISTOGRAM,
} node_metrics_type;

typedef struct {
    const char *name;  /* borrowed */
    const char *value; /* borrowed, UTF-8 */
} node_metrics_label;

/** `labels, nlabels` arguments from a list of {name, value} pairs. */
#define NODE_METRICS_LABELS(...)                                                                   \
    ((const node_metrics_label[]){__VA_ARGS__}),                                                   \
        (sizeof((const node_metrics_label[]){__VA_ARGS__}) / sizeof(node_metrics_label))
/** `labels, nlabels` arguments for a sample without labels. */
#define NODE_METRICS_NO_LABELS NULL, 0

/* ---- histogram ---- */

/** Buckets including +Inf. */
#define NODE_METRICS_HIST_BUCKETS 14
/** Upper bounds (seconds, inclusive) of the finite buckets: 0.0005 0.001 0.0025 0.005 0.01
 *  0.025 0.05 0.1 0.25 0.5 1 2.5 5; the last bucket is +Inf. */
extern const double node_metrics_hist_bounds[NODE_METRICS_HIST_BUCKETS - 1];

/** A zeroed struct is an empty histogram. */
typedef struct {
    /* observations per bucket, NOT cumulative: counts[i] holds values v with
     * bounds[i-1] < v <= bounds[i]; counts[NODE_METRICS_HIST_BUCKETS - 1]
     * those above the largest bound */
    uint64_t counts[NODE_METRICS_HIST_BUCKETS];
    double sum;     /* of all observations, seconds */
    uint64_t count; /* number of observations */
} node_metrics_hist;

/** Empty `h`. */
void node_metrics_hist_init(node_metrics_hist *h);
/** Record one duration in seconds. NaN is ignored; a negative value counts as 0. */
void node_metrics_hist_observe(node_metrics_hist *h, double seconds);
/** Record one duration in nanoseconds (e.g. a uv_hrtime() difference). */
void node_metrics_hist_observe_ns(node_metrics_hist *h, uint64_t ns);

/* ---- renderer ---- */

/** A family being written: from node_metrics_begin; plain value, no cleanup. */
typedef struct {
    dm_buf *out;      /* borrowed; NULL after a failed begin */
    const char *name; /* borrowed: must outlive the family's samples */
    node_metrics_type type;
} node_metrics_family;

/**
 * Write the family's "# HELP" (omitted when `help` is NULL or empty) and
 * "# TYPE" lines to `out` and set up `f` for its samples.
 */
int node_metrics_begin(node_metrics_family *f, dm_buf *out, const char *name,
                       node_metrics_type type, const char *help);

/** One sample of a counter or gauge family (`labels` may be NULL when nlabels is 0). */
int node_metrics_sample_u64(const node_metrics_family *f, const node_metrics_label *labels,
                            size_t nlabels, uint64_t v);
/** As node_metrics_sample_u64; a counter's value must not be negative (DM_ERANGE). */
int node_metrics_sample_i64(const node_metrics_family *f, const node_metrics_label *labels,
                            size_t nlabels, int64_t v);
/** As node_metrics_sample_u64; NaN, +Inf, -Inf are written as such. A counter
 *  must not be negative or NaN (DM_ERANGE). */
int node_metrics_sample_double(const node_metrics_family *f, const node_metrics_label *labels,
                               size_t nlabels, double v);
/** One histogram of a histogram family: cumulative name_bucket{…,le="…"}
 *  lines up to le="+Inf", then name_sum and name_count. */
int node_metrics_sample_hist(const node_metrics_family *f, const node_metrics_label *labels,
                             size_t nlabels, const node_metrics_hist *h);

/** A whole family with one sample (begin + sample). */
int node_metrics_counter(dm_buf *out, const char *name, const char *help,
                         const node_metrics_label *labels, size_t nlabels, uint64_t v);
int node_metrics_gauge(dm_buf *out, const char *name, const char *help,
                       const node_metrics_label *labels, size_t nlabels, double v);
int node_metrics_gauge_i64(dm_buf *out, const char *name, const char *help,
                           const node_metrics_label *labels, size_t nlabels, int64_t v);
int node_metrics_histogram(dm_buf *out, const char *name, const char *help,
                           const node_metrics_label *labels, size_t nlabels,
                           const node_metrics_hist *h);

#endif
