/* Prometheus text format 0.0.4 and a fixed-bucket latency histogram. */
#include "node_metrics.h"

#include "dm_err.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double node_metrics_hist_bounds[NODE_METRICS_HIST_BUCKETS - 1] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

void node_metrics_hist_init(node_metrics_hist *h)
{
    memset(h, 0, sizeof *h);
}

void node_metrics_hist_observe(node_metrics_hist *h, double seconds)
{
    if (isnan(seconds))
        return;
    if (seconds < 0)
        seconds = 0;
    size_t i = 0;
    while (i < NODE_METRICS_HIST_BUCKETS - 1 && seconds > node_metrics_hist_bounds[i])
        i++;
    h->counts[i]++;
    h->sum += seconds;
    h->count++;
}

void node_metrics_hist_observe_ns(node_metrics_hist *h, uint64_t ns)
{
    node_metrics_hist_observe(h, (double)ns / 1e9);
}

/* ---- validation ---- */

static bool name_ok(const char *s, bool colon)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
        if (!alpha && !(p != s && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* Well-formed UTF-8: no overlong forms, surrogates or code points above U+10FFFF. */
static bool utf8_ok(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s;
        int n;
        unsigned min;
        if (c < 0x80) {
            s++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
                return false;
            c = (c << 6) | (s[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        s += n + 1;
    }
    return true;
}

static int labels_ok(const node_metrics_label *labels, size_t n, bool histogram)
{
    if (n && !labels)
        return DM_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const char *k = labels[i].name;
        if (!name_ok(k, false) || strncmp(k, "__", 2) == 0 || !labels[i].value ||
            !utf8_ok(labels[i].value) || (histogram && strcmp(k, "le") == 0))
            return DM_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[j].name, k) == 0)
                return DM_EINVAL;
    }
    return DM_OK;
}

/* ---- writing ---- */

/* Escape \ and newline, and " too when `quote`. */
static int put_escaped(dm_buf *b, const char *s, bool quote)
{
    int rc = DM_OK;
    for (; *s && rc == DM_OK; s++) {
        if (*s == '\\')
            rc = dm_buf_puts(b, "\\\\");
        else if (*s == '\n')
            rc = dm_buf_puts(b, "\\n");
        else if (quote && *s == '"')
            rc = dm_buf_puts(b, "\\\"");
        else
            rc = dm_buf_putc(b, (uint8_t)*s);
    }
    return rc;
}

/* Shortest %g form that reads back as the same double (what Go's 'g', -1 gives
 * for the usual values); the format's spellings of NaN and the infinities. */
static void fmt_double(char out[32], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, 32, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

/* name[suffix]{labels[,le="…"]} (no braces when there are no labels) */
static int put_series(dm_buf *b, const char *name, const char *suffix,
                      const node_metrics_label *labels, size_t n, const char *le)
{
    int rc = dm_buf_puts(b, name);
    if (rc == DM_OK)
        rc = dm_buf_puts(b, suffix);
    if (rc != DM_OK || (n == 0 && !le))
        return rc;
    rc = dm_buf_putc(b, '{');
    for (size_t i = 0; i < n && rc == DM_OK; i++) {
        rc = dm_buf_printf(b, "%s%s=\"", i ? "," : "", labels[i].name);
        if (rc == DM_OK)
            rc = put_escaped(b, labels[i].value, true);
        if (rc == DM_OK)
            rc = dm_buf_putc(b, '"');
    }
    if (rc == DM_OK && le)
        rc = dm_buf_printf(b, "%sle=\"%s\"", n ? "," : "", le);
    if (rc == DM_OK)
        rc = dm_buf_putc(b, '}');
    return rc;
}

/* One "series value" line; on failure the buffer is cut back by the caller. */
static int put_line(dm_buf *b, const char *name, const char *suffix,
                    const node_metrics_label *labels, size_t n, const char *le, const char *value)
{
    int rc = put_series(b, name, suffix, labels, n, le);
    if (rc == DM_OK)
        rc = dm_buf_printf(b, " %s\n", value);
    return rc;
}

static int finish(dm_buf *b, size_t mark, int rc)
{
    if (rc != DM_OK)
        b->len = mark;
    return rc;
}

static const char *type_name(node_metrics_type t)
{
    switch (t) {
    case NODE_METRICS_COUNTER:
        return "counter";
    case NODE_METRICS_GAUGE:
        return "gauge";
    case NODE_METRICS_HISTOGRAM:
        return "histogram";
    }
    return NULL;
}

int node_metrics_begin(node_metrics_family *f, dm_buf *out, const char *name,
                       node_metrics_type type, const char *help)
{
    if (!f)
        return DM_EINVAL;
    f->out = NULL;
    const char *tn = type_name(type);
    if (!out || !tn || !name_ok(name, true) || (help && !utf8_ok(help)))
        return DM_EINVAL;
    size_t mark = out->len;
    int rc = DM_OK;
    if (help && *help) {
        rc = dm_buf_printf(out, "# HELP %s ", name);
        if (rc == DM_OK)
            rc = put_escaped(out, help, false);
        if (rc == DM_OK)
            rc = dm_buf_putc(out, '\n');
    }
    if (rc == DM_OK)
        rc = dm_buf_printf(out, "# TYPE %s %s\n", name, tn);
    if (rc != DM_OK)
        return finish(out, mark, rc);
    f->out = out;
    f->name = name;
    f->type = type;
    return DM_OK;
}

/* A counter or gauge sample whose value text is ready. */
static int sample_text(const node_metrics_family *f, const node_metrics_label *labels, size_t n,
                       const char *value)
{
    if (!f || !f->out || f->type == NODE_METRICS_HISTOGRAM)
        return DM_EINVAL;
    int rc = labels_ok(labels, n, false);
    if (rc != DM_OK)
        return rc;
    size_t mark = f->out->len;
    return finish(f->out, mark, put_line(f->out, f->name, "", labels, n, NULL, value));
}

int node_metrics_sample_u64(const node_metrics_family *f, const node_metrics_label *labels,
                            size_t nlabels, uint64_t v)
{
    char t[24];
    snprintf(t, sizeof t, "%" PRIu64, v);
    return sample_text(f, labels, nlabels, t);
}

int node_metrics_sample_i64(const node_metrics_family *f, const node_metrics_label *labels,
                            size_t nlabels, int64_t v)
{
    if (f && f->type == NODE_METRICS_COUNTER && v < 0)
        return DM_ERANGE;
    char t[24];
    snprintf(t, sizeof t, "%" PRId64, v);
    return sample_text(f, labels, nlabels, t);
}

int node_metrics_sample_double(const node_metrics_family *f, const node_metrics_label *labels,
                               size_t nlabels, double v)
{
    if (f && f->type == NODE_METRICS_COUNTER && (isnan(v) || v < 0))
        return DM_ERANGE;
    char t[32];
    fmt_double(t, v);
    return sample_text(f, labels, nlabels, t);
}

int node_metrics_sample_hist(const node_metrics_family *f, const node_metrics_label *labels,
                             size_t nlabels, const node_metrics_hist *h)
{
    if (!f || !f->out || f->type != NODE_METRICS_HISTOGRAM || !h)
        return DM_EINVAL;
    int rc = labels_ok(labels, nlabels, true);
    if (rc != DM_OK)
        return rc;
    dm_buf *b = f->out;
    size_t mark = b->len;
    uint64_t cum = 0;
    char le[32], v[32];
    for (size_t i = 0; i < NODE_METRICS_HIST_BUCKETS && rc == DM_OK; i++) {
        cum += h->counts[i];
        if (i < NODE_METRICS_HIST_BUCKETS - 1)
            fmt_double(le, node_metrics_hist_bounds[i]);
        else
            strcpy(le, "+Inf");
        snprintf(v, sizeof v, "%" PRIu64, cum);
        rc = put_line(b, f->name, "_bucket", labels, nlabels, le, v);
    }
    if (rc == DM_OK) {
        fmt_double(v, h->sum);
        rc = put_line(b, f->name, "_sum", labels, nlabels, NULL, v);
    }
    if (rc == DM_OK) {
        snprintf(v, sizeof v, "%" PRIu64, h->count);
        rc = put_line(b, f->name, "_count", labels, nlabels, NULL, v);
    }
    return finish(b, mark, rc);
}

/* ---- one-sample families ---- */

typedef struct {
    enum { ONE_U64, ONE_I64, ONE_DOUBLE, ONE_HIST } kind;
    uint64_t u;
    int64_t i;
    double d;
    const node_metrics_hist *h;
} one_value;

/* Begin + one sample; a refused sample takes the header back out. */
static int one(dm_buf *out, const char *name, const char *help, node_metrics_type type,
               const node_metrics_label *labels, size_t n, one_value v)
{
    node_metrics_family f;
    size_t mark = out ? out->len : 0;
    int rc = node_metrics_begin(&f, out, name, type, help);
    if (rc != DM_OK)
        return rc;
    switch (v.kind) {
    case ONE_U64:
        rc = node_metrics_sample_u64(&f, labels, n, v.u);
        break;
    case ONE_I64:
        rc = node_metrics_sample_i64(&f, labels, n, v.i);
        break;
    case ONE_DOUBLE:
        rc = node_metrics_sample_double(&f, labels, n, v.d);
        break;
    case ONE_HIST:
        rc = node_metrics_sample_hist(&f, labels, n, v.h);
        break;
    }
    return finish(out, mark, rc);
}

int node_metrics_counter(dm_buf *out, const char *name, const char *help,
                         const node_metrics_label *labels, size_t nlabels, uint64_t v)
{
    return one(out, name, help, NODE_METRICS_COUNTER, labels, nlabels,
               (one_value){.kind = ONE_U64, .u = v});
}

int node_metrics_gauge(dm_buf *out, const char *name, const char *help,
                       const node_metrics_label *labels, size_t nlabels, double v)
{
    return one(out, name, help, NODE_METRICS_GAUGE, labels, nlabels,
               (one_value){.kind = ONE_DOUBLE, .d = v});
}

int node_metrics_gauge_i64(dm_buf *out, const char *name, const char *help,
                           const node_metrics_label *labels, size_t nlabels, int64_t v)
{
    return one(out, name, help, NODE_METRICS_GAUGE, labels, nlabels,
               (one_value){.kind = ONE_I64, .i = v});
}

int node_metrics_histogram(dm_buf *out, const char *name, const char *help,
                           const node_metrics_label *labels, size_t nlabels,
                           const node_metrics_hist *h)
{
    return one(out, name, help, NODE_METRICS_HISTOGRAM, labels, nlabels,
               (one_value){.kind = ONE_HIST, .h = h});
}
