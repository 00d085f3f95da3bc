/*
 * bench_crypto: operations per second of the project's crypto API (the crypto/ headers).
 *
 * Each measurement warms up (a tenth of the run, at most 0.5 s), then calls the
 * operation in batches until the requested time has passed on CLOCK_MONOTONIC,
 * and prints one JSON object per line on stdout:
 *
 *   {"bench":"crypto","op":"rsa2048_sign","ops_per_s":3650.2,"bytes":32,"seconds":1.000,
 *    "ops":3651,"us_per_op":273.9,"cpu_seconds":0.998,"ops_per_cpu_s":3657.5}
 *
 * plus "mb_per_s" for the ops on 1 KiB or more and "iterations"/"ms_per_op" for
 * PBKDF2. `bytes` is the input size of one op (RSA: the message; PBKDF2: the
 * derived key). `cpu_seconds` is the process CPU time over the same span: when
 * other processes compete for the cores, ops per CPU second is the steadier figure.
 *
 * Single thread. Every operation's result is checked (a verify must accept, a
 * decrypt must give the plaintext back), so a broken primitive fails the run
 * instead of producing a fast number. bench/crypto/run.sh sets these figures
 * against `openssl speed` measured in the same run.
 *
 * Usage: bench_crypto [--seconds N] [--only NAME[,NAME...]] [--list]
 *   --seconds N may be fractional; --only matches an op name exactly or as a
 *   prefix ("fernet", "rsa2048"). Exit status 0, 1 if an op failed, 2 on usage.
 */
#include "crypto_fernet.h"
#include "crypto_hash.h"
#include "crypto_keccak.h"
#include "crypto_mem.h"
#include "crypto_rsa.h"
#include "dm_buf.h"
#include "dm_err.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)
#define RSA_MSG_LEN 32
#define PBKDF2_ITERATIONS 600000u
#define PBKDF2_OUT_LEN 32

/*
 * Fernet tokens to decrypt, `count` of them back to back in `all`, each `len` chars.
 * The 1 KiB case cycles through many distinct tokens: decoding the same token
 * again and again would let the branch predictor learn its characters and
 * report a speed that real, ever-different tokens never see.
 */
#define TOKENS_1K 256
typedef struct {
    dm_buf all;
    size_t len;
    size_t count;
    size_t next;
} token_set;

/* Shared state of all benchmarks: built lazily, only for the ops selected. */
typedef struct {
    crypto_rsa_t *rsa;
    dm_buf rsa_sig;
    uint8_t rsa_msg[RSA_MSG_LEN];
    crypto_fernet_key fkey;
    bool have_fkey;
    uint8_t *pt;           /* MIB bytes of plaintext input (also hash input) */
    token_set tokens[2];   /* for the 1 KiB and the 1 MiB plaintexts */
    dm_buf out;            /* scratch output, reset per op */
    volatile uint8_t sink; /* keeps hash results observable */
} bench_ctx;

typedef int (*bench_fn)(bench_ctx *c, size_t bytes);

typedef struct {
    const char *name;
    size_t bytes; /* input size per op (RSA: message; PBKDF2: derived key) */
    bench_fn setup;
    bench_fn run;
} bench_def;

/* ---- time ---- */

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU time (user + system) of this process: on a shared machine where other
 * processes compete for the cores, ops per CPU second is the steadier figure */
static double cpu_s(void)
{
    return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

/* ---- setup ---- */

static int setup_rsa(bench_ctx *c, size_t bytes)
{
    (void)bytes;
    int rc = DM_OK;
    if (c->rsa)
        return DM_OK;
    rc = crypto_rsa_generate(&c->rsa, 2048);
    if (rc)
        goto out;
    rc = crypto_random(c->rsa_msg, sizeof c->rsa_msg);
    if (rc)
        goto out;
    rc = crypto_rsa_sign(c->rsa, c->rsa_msg, sizeof c->rsa_msg, &c->rsa_sig);
    if (rc)
        goto out;
    rc = crypto_rsa_verify(c->rsa, c->rsa_msg, sizeof c->rsa_msg, c->rsa_sig.data, c->rsa_sig.len);
out:
    return rc;
}

static int setup_input(bench_ctx *c, size_t bytes)
{
    (void)bytes;
    if (c->pt)
        return DM_OK;
    c->pt = malloc(MIB);
    if (!c->pt)
        return DM_ENOMEM;
    return crypto_random(c->pt, MIB);
}

static int setup_fernet(bench_ctx *c, size_t bytes)
{
    int rc = setup_input(c, bytes);
    if (rc)
        return rc;
    token_set *ts = &c->tokens[bytes == KIB ? 0 : 1];
    if (ts->count)
        return DM_OK;
    /* the key is generated once and shared by all four fernet ops */
    if (!c->have_fkey) {
        rc = crypto_fernet_key_generate(&c->fkey);
        if (rc)
            return rc;
        c->have_fkey = true;
    }
    size_t count = bytes == KIB ? TOKENS_1K : 1;
    for (size_t i = 0; i < count; i++) {
        size_t before = ts->all.len;
        /* distinct plaintexts: successive 1 KiB slices of the random input */
        rc = crypto_fernet_encrypt(&ts->all, &c->fkey, c->pt + i * bytes, bytes);
        if (rc)
            return rc;
        if (i == 0)
            ts->len = ts->all.len - before;
        else if (ts->all.len - before != ts->len)
            return DM_ECRYPTO; /* same plaintext size, so the same token size */
    }
    ts->count = count;
    return DM_OK;
}

/* ---- operations ---- */

static int op_rsa_sign(bench_ctx *c, size_t bytes)
{
    (void)bytes;
    dm_buf_reset(&c->out);
    int rc = crypto_rsa_sign(c->rsa, c->rsa_msg, sizeof c->rsa_msg, &c->out);
    if (rc == DM_OK && c->out.len != 256)
        rc = DM_ECRYPTO;
    return rc;
}

static int op_rsa_verify(bench_ctx *c, size_t bytes)
{
    (void)bytes;
    return crypto_rsa_verify(c->rsa, c->rsa_msg, sizeof c->rsa_msg, c->rsa_sig.data,
                             c->rsa_sig.len);
}

static int op_fernet_encrypt(bench_ctx *c, size_t bytes)
{
    dm_buf_reset(&c->out);
    return crypto_fernet_encrypt(&c->out, &c->fkey, c->pt, bytes);
}

static int op_fernet_decrypt(bench_ctx *c, size_t bytes)
{
    token_set *ts = &c->tokens[bytes == KIB ? 0 : 1];
    const char *tok = (const char *)ts->all.data + ts->next * ts->len;
    ts->next = (ts->next + 1) % ts->count;
    dm_buf_reset(&c->out);
    int rc = crypto_fernet_decrypt(&c->out, &c->fkey, tok, ts->len, 0, (uint64_t)time(NULL));
    if (rc == DM_OK && c->out.len != bytes)
        rc = DM_ECRYPTO;
    return rc;
}

static int op_keccak256(bench_ctx *c, size_t bytes)
{
    uint8_t h[32];
    crypto_keccak256(h, c->pt, bytes);
    c->sink ^= h[0];
    return DM_OK;
}

static int op_sha256(bench_ctx *c, size_t bytes)
{
    uint8_t h[CRYPTO_SHA256_LEN];
    int rc = crypto_sha256(h, c->pt, bytes);
    c->sink ^= h[0];
    return rc;
}

static int op_pbkdf2(bench_ctx *c, size_t bytes)
{
    /* the same password/salt as run.sh's `openssl kdf ... pass:x salt:y` */
    static const uint8_t salt[] = {'y'};
    uint8_t dk[PBKDF2_OUT_LEN];
    int rc = crypto_pbkdf2_sha256(dk, bytes, "x", 1, salt, sizeof salt, PBKDF2_ITERATIONS);
    c->sink ^= dk[0];
    crypto_memzero(dk, sizeof dk);
    return rc;
}

static const bench_def benches[] = {
    {"rsa2048_sign", RSA_MSG_LEN, setup_rsa, op_rsa_sign},
    {"rsa2048_verify", RSA_MSG_LEN, setup_rsa, op_rsa_verify},
    {"fernet_encrypt_1k", KIB, setup_fernet, op_fernet_encrypt},
    {"fernet_decrypt_1k", KIB, setup_fernet, op_fernet_decrypt},
    {"fernet_encrypt_1m", MIB, setup_fernet, op_fernet_encrypt},
    {"fernet_decrypt_1m", MIB, setup_fernet, op_fernet_decrypt},
    {"keccak256_32", 32, setup_input, op_keccak256},
    {"keccak256_1k", KIB, setup_input, op_keccak256},
    {"sha256_1k", KIB, setup_input, op_sha256},
    {"pbkdf2_sha256_600k", PBKDF2_OUT_LEN, NULL, op_pbkdf2},
};

/* ---- driver ---- */

typedef struct {
    uint64_t ops;
    double elapsed; /* CLOCK_MONOTONIC seconds */
    double cpu;     /* CPU seconds of the process over the same span */
} bench_result;

/*
 * Run `d` in batches until `seconds` have passed. The batch grows until one
 * batch takes about 1/100 of the run, so the clock is read rarely for fast ops
 * while a slow op (PBKDF2, ~0.2 s) is still timed per call.
 */
static int run_timed(bench_ctx *c, const bench_def *d, double seconds, bench_result *r)
{
    uint64_t batch = 1;
    uint64_t ops = 0;
    double c0 = cpu_s();
    double t0 = now_s();
    double t = t0;
    while (t - t0 < seconds) {
        double tb = t;
        for (uint64_t i = 0; i < batch; i++) {
            int rc = d->run(c, d->bytes);
            if (rc)
                return rc;
        }
        ops += batch;
        t = now_s();
        if (t - tb < seconds / 100 && batch < (UINT64_C(1) << 30))
            batch *= 2;
    }
    r->ops = ops;
    r->elapsed = t - t0;
    r->cpu = cpu_s() - c0;
    return DM_OK;
}

static bool selected(const char *name, const char *only)
{
    if (!only)
        return true;
    const char *p = only;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n && strncmp(name, p, n) == 0)
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_crypto [--seconds N] [--only NAME[,NAME...]] [--list]\n"
               "  --seconds N  measure each op for N seconds (default 1; warm-up is extra)\n"
               "  --only NAME  run the ops whose name equals or starts with NAME\n"
               "  --list       print the op names and exit\n");
}

static int parse_seconds(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !(v > 0) || v > 3600)
        return DM_EINVAL;
    *out = v;
    return DM_OK;
}

static void ctx_free(bench_ctx *c)
{
    crypto_rsa_destroy(c->rsa);
    dm_buf_free(&c->rsa_sig);
    crypto_fernet_key_wipe(&c->fkey);
    free(c->pt);
    dm_buf_free(&c->tokens[0].all);
    dm_buf_free(&c->tokens[1].all);
    dm_buf_free_secure(&c->out);
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    const char *only = NULL;
    size_t nbench = sizeof benches / sizeof benches[0];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            if (parse_seconds(argv[++i], &seconds)) {
                fprintf(stderr, "bench_crypto: bad --seconds '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--list") == 0) {
            for (size_t j = 0; j < nbench; j++)
                printf("%s\n", benches[j].name);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    size_t matched = 0;
    for (size_t j = 0; j < nbench; j++)
        matched += selected(benches[j].name, only);
    if (matched == 0) {
        fprintf(stderr, "bench_crypto: --only '%s' matches no op (see --list)\n", only);
        return 2;
    }

    /* warm-up: a tenth of the run, at most 0.5 s, and always at least one op */
    double warm = seconds / 10 > 0.5 ? 0.5 : seconds / 10;
    int rc = DM_OK;
    bench_ctx c = {0};
    const char *failed = NULL;
    for (size_t j = 0; j < nbench; j++) {
        const bench_def *d = &benches[j];
        failed = d->name;
        if (!selected(d->name, only))
            continue;
        bench_result r = {0};
        if (d->setup && (rc = d->setup(&c, d->bytes)) != DM_OK)
            goto out;
        if ((rc = run_timed(&c, d, warm, &r)) != DM_OK)
            goto out;
        if ((rc = run_timed(&c, d, seconds, &r)) != DM_OK)
            goto out;
        double ops_s = (double)r.ops / r.elapsed;
        printf("{\"bench\":\"crypto\",\"op\":\"%s\",\"ops_per_s\":%.3f,\"bytes\":%zu,"
               "\"seconds\":%.3f,\"ops\":%llu,\"us_per_op\":%.3f,\"cpu_seconds\":%.3f,"
               "\"ops_per_cpu_s\":%.3f",
               d->name, ops_s, d->bytes, r.elapsed, (unsigned long long)r.ops, 1e6 / ops_s, r.cpu,
               r.cpu > 0 ? (double)r.ops / r.cpu : 0.0);
        if (d->run == op_pbkdf2)
            printf(",\"iterations\":%u,\"ms_per_op\":%.3f", PBKDF2_ITERATIONS, 1e3 / ops_s);
        else if (d->bytes >= KIB)
            printf(",\"mb_per_s\":%.3f", ops_s * (double)d->bytes / 1e6);
        printf("}\n");
        fflush(stdout);
    }
out:
    if (rc)
        fprintf(stderr, "bench_crypto: %s failed: %s (%s)\n", failed, dm_err_name(rc),
                dm_strerror(rc));
    ctx_free(&c);
    return rc ? 1 : 0;
}
