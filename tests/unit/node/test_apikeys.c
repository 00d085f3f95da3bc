#define _GNU_SOURCE /* memmem */
/* API-key store: create/check/revoke/list/flush on a real RocksDB store, audit entries,
 * no key material at rest or in listings, validation, the key limit, concurrency. */
#include "dm_test.h"
#include "groups.h"

#include "crypto_hash.h"
#include "dm_err.h"
#include "dm_log.h"
#include "dm_util.h"
#include "node_apikeys.h"
#include "node_audit.h"
#include "store.h"

#include <pthread.h>
#include <time.h>

#define T0 1700000000ULL

typedef struct {
    char *dir;
    store_t *s;
    node_audit_t *a;
    node_apikeys_t *k;
} fx;

static void fx_open(fx *f)
{
    store_opts o = {.create = true};
    assert_int_equal(store_open(&f->s, f->dir, &o), DM_OK);
    assert_int_equal(node_audit_open(&f->a, f->s), DM_OK);
    assert_int_equal(node_apikeys_open(&f->k, f->s, f->a), DM_OK);
}

static void fx_close(fx *f)
{
    node_apikeys_close(f->k);
    node_audit_close(f->a);
    store_close(f->s);
    f->k = NULL;
    f->a = NULL;
    f->s = NULL;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->dir = dm_test_mkdtemp("apikeys");
    fx_open(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    fx_close(f);
    dm_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void create_ok(fx *f, const char *name, uint64_t expires, uint64_t now,
                      node_apikey_info *info, char key[NODE_APIKEY_LEN + 1])
{
    char err[256];
    int rc = node_apikeys_create(f->k, name, expires, now, info, key, err, sizeof err);
    if (rc)
        fail_msg("create %s: %s (%s)", name, dm_err_name(rc), err);
    assert_int_equal(strlen(key), NODE_APIKEY_LEN);
}

static void want_check(fx *f, const char *key, uint64_t now, int want, const char *want_why)
{
    node_apikey_info info;
    const char *why = "unset";
    int rc = node_apikeys_check(f->k, key, now, &info, &why);
    if (rc != want)
        fail_msg("check: got %s, want %s", dm_err_name(rc), dm_err_name(want));
    if (want_why)
        assert_string_equal(why, want_why);
    else
        assert_null(why);
}

static void key_hash_hex(const char *key, char hex[65])
{
    assert_int_equal(crypto_sha256_hex(hex, key, strlen(key)), DM_OK);
}

/* true if any raw value of `cf` contains `needle` */
static bool cf_contains(store_t *s, store_cf cf, const char *needle)
{
    store_iter_t *it;
    assert_int_equal(store_iter_create(&it, s, cf, NULL, 0, NULL, 0), DM_OK);
    const uint8_t *k, *v;
    size_t kl, vl;
    bool found = false;
    while (!found && store_iter_next(it, &k, &kl, &v, &vl))
        found = memmem(v, vl, needle, strlen(needle)) || memmem(k, kl, needle, strlen(needle));
    assert_int_equal(store_iter_status(it), DM_OK);
    store_iter_destroy(it);
    return found;
}

static uint64_t audit_seq(fx *f)
{
    return node_audit_head(f->a).seq;
}

static size_t key_count(fx *f)
{
    node_apikey_info *v;
    size_t n;
    assert_int_equal(node_apikeys_list(f->k, &v, &n), DM_OK);
    free(v);
    return n;
}

/* ---------- tests ---------- */

static void test_create_check(void **state)
{
    fx *f = *state;
    node_apikey_info info, got;
    char key[NODE_APIKEY_LEN + 1], key2[NODE_APIKEY_LEN + 1];
    create_ok(f, "ci runner", 0, T0, &info, key);
    assert_memory_equal(key, "dmk_", 4);
    for (int i = 4; i < NODE_APIKEY_LEN; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", key[i]));
    assert_int_equal(strlen(info.id), 16);
    assert_int_equal(strspn(info.id, "0123456789abcdef"), 16);
    assert_string_equal(info.name, "ci runner");
    assert_memory_equal(info.prefix, key, 8);
    assert_int_equal(strlen(info.prefix), 8);
    assert_int_equal(info.created_at, T0);
    assert_int_equal(info.expires_at, 0);
    assert_int_equal(info.revoked_at, 0);
    assert_int_equal(info.last_used_at, 0);
    assert_int_equal(info.request_count, 0);

    create_ok(f, "other", 0, T0, NULL, key2);
    assert_string_not_equal(key, key2);

    /* valid: counted in memory */
    const char *why = "unset";
    assert_int_equal(node_apikeys_check(f->k, key, T0 + 5, &got, &why), DM_OK);
    assert_null(why);
    assert_string_equal(got.id, info.id);
    assert_int_equal(got.request_count, 1);
    assert_int_equal(got.last_used_at, T0 + 5);
    assert_int_equal(node_apikeys_check(f->k, key, T0 + 9, &got, NULL), DM_OK);
    assert_int_equal(got.request_count, 2);
    assert_int_equal(got.last_used_at, T0 + 9);
    assert_int_equal(node_apikeys_check(f->k, key, T0 + 7, NULL, NULL), DM_OK);
    assert_int_equal(node_apikeys_get(f->k, info.id, &got), DM_OK);
    assert_int_equal(got.request_count, 3);
    assert_int_equal(got.last_used_at, T0 + 9); /* never goes back */

    /* a different valid-looking key, and corruptions of the real one: all "unknown" */
    char bad[2048];
    snprintf(bad, sizeof bad, "%s", key);
    bad[NODE_APIKEY_LEN - 1] = bad[NODE_APIKEY_LEN - 1] == 'A' ? 'B' : 'A';
    want_check(f, bad, T0, DM_EAUTH, "unknown");
    snprintf(bad, sizeof bad, "%s", key);
    bad[4] = bad[4] == 'x' ? 'y' : 'x';
    want_check(f, bad, T0, DM_EAUTH, "unknown");
    want_check(f, "", T0, DM_EAUTH, "unknown");
    want_check(f, "dmk_", T0, DM_EAUTH, "unknown");
    snprintf(bad, sizeof bad, "%.46s", key); /* truncated */
    want_check(f, bad, T0, DM_EAUTH, "unknown");
    snprintf(bad, sizeof bad, "%sA", key); /* one extra */
    want_check(f, bad, T0, DM_EAUTH, "unknown");
    memset(bad, 'A', sizeof bad - 1);
    bad[sizeof bad - 1] = 0;
    memcpy(bad, key, NODE_APIKEY_LEN); /* the key followed by 2000 more characters */
    want_check(f, bad, T0, DM_EAUTH, "unknown");
    snprintf(bad, sizeof bad, "%s", key);
    bad[10] = '+'; /* standard base64, not url */
    want_check(f, bad, T0, DM_EAUTH, "unknown");
    bad[10] = '=';
    want_check(f, bad, T0, DM_EAUTH, "unknown");
    snprintf(bad, sizeof bad, "DMK_%s", key + 4);
    want_check(f, bad, T0, DM_EAUTH, "unknown");
    snprintf(bad, sizeof bad, "dmk_%s", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    want_check(f, bad, T0, DM_EAUTH, "unknown");
    snprintf(bad, sizeof bad, " %.46s", key);
    want_check(f, bad, T0, DM_EAUTH, "unknown");
    want_check(f, NULL, T0, DM_EAUTH, "unknown");
    /* the hash of the key presented as a key */
    char hex[65];
    key_hash_hex(key, hex);
    want_check(f, hex, T0, DM_EAUTH, "unknown");

    /* failures did not count */
    assert_int_equal(node_apikeys_get(f->k, info.id, &got), DM_OK);
    assert_int_equal(got.request_count, 3);
    want_check(f, key2, T0, DM_OK, NULL);
    assert_int_equal(node_apikeys_get(f->k, "0000000000000000", &got), DM_ENOTFOUND);
    assert_int_equal(node_apikeys_get(f->k, "../../etc", &got), DM_ENOTFOUND);
}

static void test_expiry(void **state)
{
    fx *f = *state;
    node_apikey_info info;
    char key[NODE_APIKEY_LEN + 1];
    create_ok(f, "short-lived", T0 + 100, T0, &info, key);
    assert_int_equal(info.expires_at, T0 + 100);
    want_check(f, key, T0, DM_OK, NULL);
    want_check(f, key, T0 + 99, DM_OK, NULL);
    want_check(f, key, T0 + 100, DM_EAUTH, "expired");
    want_check(f, key, T0 + 1000000, DM_EAUTH, "expired");
    /* a clock that goes back makes it valid again: expiry is a comparison with now */
    want_check(f, key, T0 + 50, DM_OK, NULL);
    node_apikey_info got;
    assert_int_equal(node_apikeys_get(f->k, info.id, &got), DM_OK);
    assert_int_equal(got.request_count, 3);
}

static void test_revoke(void **state)
{
    fx *f = *state;
    node_apikey_info a, b, got;
    char ka[NODE_APIKEY_LEN + 1], kb[NODE_APIKEY_LEN + 1];
    create_ok(f, "a", 0, T0, &a, ka);
    create_ok(f, "b", T0 + 10, T0, &b, kb);
    want_check(f, ka, T0 + 1, DM_OK, NULL);
    uint64_t seq = audit_seq(f);
    assert_int_equal(node_apikeys_revoke(f->k, a.id, T0 + 2), DM_OK);
    assert_int_equal(audit_seq(f), seq + 1);
    want_check(f, ka, T0 + 2, DM_EAUTH, "revoked");
    want_check(f, kb, T0 + 2, DM_OK, NULL);
    assert_int_equal(node_apikeys_get(f->k, a.id, &got), DM_OK);
    assert_int_equal(got.revoked_at, T0 + 2);
    assert_int_equal(got.request_count, 1);

    /* idempotent: the first revocation time stays, no second audit entry */
    assert_int_equal(node_apikeys_revoke(f->k, a.id, T0 + 50), DM_OK);
    assert_int_equal(audit_seq(f), seq + 1);
    assert_int_equal(node_apikeys_get(f->k, a.id, &got), DM_OK);
    assert_int_equal(got.revoked_at, T0 + 2);

    /* revoked wins over expired in the reason */
    assert_int_equal(node_apikeys_revoke(f->k, b.id, T0 + 3), DM_OK);
    want_check(f, kb, T0 + 20, DM_EAUTH, "revoked");

    assert_int_equal(node_apikeys_revoke(f->k, "0123456789abcdef", T0), DM_ENOTFOUND);
    assert_int_equal(node_apikeys_revoke(f->k, "", T0), DM_ENOTFOUND);
    assert_int_equal(node_apikeys_revoke(f->k, "0123456789ABCDEF", T0), DM_ENOTFOUND);
    assert_int_equal(node_apikeys_revoke(f->k, "../x", T0), DM_ENOTFOUND);
    assert_int_equal(audit_seq(f), seq + 2);
}

static void test_reopen_persists(void **state)
{
    fx *f = *state;
    node_apikey_info a, b, c;
    char ka[NODE_APIKEY_LEN + 1], kb[NODE_APIKEY_LEN + 1], kc[NODE_APIKEY_LEN + 1];
    create_ok(f, "a", 0, T0, &a, ka);
    create_ok(f, "b", T0 + 1000, T0 + 1, &b, kb);
    create_ok(f, "c", 0, T0 + 2, &c, kc);
    for (int i = 0; i < 3; i++)
        want_check(f, ka, T0 + 10 + (uint64_t)i, DM_OK, NULL);
    want_check(f, kb, T0 + 20, DM_OK, NULL);
    want_check(f, kc, T0 + 21, DM_OK, NULL);
    assert_int_equal(node_apikeys_revoke(f->k, c.id, T0 + 30), DM_OK);

    /* a flush writes the counters but no audit entry */
    uint64_t seq = audit_seq(f);
    assert_int_equal(node_apikeys_flush(f->k), DM_OK);
    assert_int_equal(node_apikeys_flush(f->k), DM_OK); /* nothing changed */
    assert_int_equal(audit_seq(f), seq);

    /* used after the flush: close flushes again */
    want_check(f, ka, T0 + 40, DM_OK, NULL);
    fx_close(f);
    fx_open(f);

    node_apikey_info *v;
    size_t n;
    assert_int_equal(node_apikeys_list(f->k, &v, &n), DM_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].id, a.id);
    assert_string_equal(v[0].name, "a");
    assert_string_equal(v[0].prefix, a.prefix);
    assert_int_equal(v[0].created_at, T0);
    assert_int_equal(v[0].expires_at, 0);
    assert_int_equal(v[0].request_count, 4);
    assert_int_equal(v[0].last_used_at, T0 + 40);
    assert_int_equal(v[0].revoked_at, 0);
    assert_string_equal(v[1].id, b.id);
    assert_int_equal(v[1].expires_at, T0 + 1000);
    assert_int_equal(v[1].request_count, 1);
    assert_int_equal(v[1].last_used_at, T0 + 20);
    assert_string_equal(v[2].id, c.id);
    assert_int_equal(v[2].revoked_at, T0 + 30);
    assert_int_equal(v[2].request_count, 1);
    free(v);
    want_check(f, kc, T0 + 50, DM_EAUTH, "revoked");
    want_check(f, kb, T0 + 1000, DM_EAUTH, "expired");
    want_check(f, ka, T0 + 50, DM_OK, NULL);

    /* the audit chain written by create/revoke is intact */
    uint64_t entries, bad;
    assert_int_equal(node_audit_verify(f->s, &entries, &bad), DM_OK);
    assert_int_equal(entries, 4);
}

static void test_list_without_secrets(void **state)
{
    fx *f = *state;
    enum { N = 6 };
    char keys[N][NODE_APIKEY_LEN + 1];
    node_apikey_info info[N];
    /* created out of order; two share a creation time (then ordered by id) */
    const uint64_t at[N] = {T0 + 5, T0 + 1, T0 + 3, T0 + 3, T0 + 9, T0};
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "key-%d", i);
        create_ok(f, name, i % 2 ? at[i] + 86400 : 0, at[i], &info[i], keys[i]);
    }
    node_apikey_info *v;
    size_t n;
    assert_int_equal(node_apikeys_list(f->k, &v, &n), DM_OK);
    assert_int_equal(n, N);
    for (size_t i = 1; i < n; i++)
        assert_true(v[i - 1].created_at < v[i].created_at ||
                    (v[i - 1].created_at == v[i].created_at && strcmp(v[i - 1].id, v[i].id) < 0));

    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *j = node_apikey_info_json(&v[i]);
        assert_non_null(j);
        /* exactly the public fields */
        assert_int_equal(json_object_size(j), 8);
        node_apikey_info back;
        assert_int_equal(node_apikey_info_from_json(j, &back), DM_OK);
        assert_memory_equal(&back, &v[i], sizeof back);
        json_array_append_new(arr, j);
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    for (int i = 0; i < N; i++) {
        char hex[65], tail[40];
        key_hash_hex(keys[i], hex);
        snprintf(tail, sizeof tail, "%.20s", keys[i] + 8); /* key text beyond the prefix */
        assert_null(strstr(text, keys[i]));
        assert_null(strstr(text, hex));
        assert_null(strstr(text, tail));
        assert_non_null(strstr(text, info[i].prefix));
        /* the whole key is nowhere in the database; its hash only in the apikeys CF */
        for (int cf = 0; cf < STORE_CF__COUNT; cf++) {
            assert_false(cf_contains(f->s, (store_cf)cf, keys[i]));
            assert_false(cf_contains(f->s, (store_cf)cf, tail));
            assert_int_equal(cf_contains(f->s, (store_cf)cf, hex), cf == STORE_CF_APIKEYS);
        }
    }
    /* the listing's time fields: null when unset */
    json_t *j0 = json_array_get(arr, 0);
    assert_true(json_is_null(json_object_get(j0, "revoked_at")));
    assert_true(json_is_null(json_object_get(j0, "last_used_at")));
    free(text);
    json_decref(arr);
    free(v);

    /* the parser refuses what is not a key's public record */
    const char *badj[] = {
        "{\"name\":\"x\",\"prefix\":\"dmk_AAAA\",\"created_at\":1}",
        "{\"id\":\"0123456789abcdeg\",\"name\":\"x\",\"prefix\":\"dmk_AAAA\",\"created_at\":1}",
        "{\"id\":\"0123456789abcdef\",\"name\":\"\",\"prefix\":\"dmk_AAAA\",\"created_at\":1}",
        "{\"id\":\"0123456789abcdef\",\"name\":\"x\",\"prefix\":\"dmk_AAA\",\"created_at\":1}",
        "{\"id\":\"0123456789abcdef\",\"name\":\"x\",\"prefix\":\"dmk_AAAA\"}",
        "{\"id\":\"0123456789abcdef\",\"name\":\"x\",\"prefix\":\"dmk_AAAA\",\"created_at\":-1}",
        "{\"id\":\"0123456789abcdef\",\"name\":\"x\",\"prefix\":\"dmk_AAAA\",\"created_at\":1,"
        "\"expires_at\":\"soon\"}",
        "{\"id\":\"0123456789abcdef\",\"name\":\"x\",\"prefix\":\"dmk_AAAA\",\"created_at\":1,"
        "\"request_count\":-3}",
        "[]",
    };
    for (size_t i = 0; i < DM_ARRAY_LEN(badj); i++) {
        json_t *j = json_loads(badj[i], 0, NULL);
        assert_non_null(j);
        node_apikey_info x;
        if (node_apikey_info_from_json(j, &x) != DM_EPARSE)
            fail_msg("accepted %s", badj[i]);
        json_decref(j);
    }
}

static void test_validation(void **state)
{
    fx *f = *state;
    char n64[65], n65[66];
    memset(n64, 'n', 64);
    n64[64] = 0;
    memset(n65, 'n', 65);
    n65[65] = 0;
    const struct {
        const char *name;
        uint64_t expires_at;
        int want;
    } rows[] = {
        {"ok name._-1", 0, DM_OK},
        {"x", 0, DM_OK},
        {n64, 0, DM_OK},
        {"never", 0, DM_OK},
        {"soon", T0 + 1, DM_OK},
        {"last year 9999", NODE_APIKEY_EXPIRES_MAX - 1, DM_OK},
        {"", 0, DM_EINVAL},
        {NULL, 0, DM_EINVAL},
        {n65, 0, DM_EINVAL},
        {"line\nbreak", 0, DM_EINVAL},
        {"tab\t", 0, DM_EINVAL},
        {"nul\x01", 0, DM_EINVAL},
        {"del\x7f", 0, DM_EINVAL},
        {"caf\xc3\xa9", 0, DM_EINVAL},
        {"a/b", 0, DM_EINVAL},
        {"../etc", 0, DM_EINVAL},
        {"a;b", 0, DM_EINVAL},
        {"<script>", 0, DM_EINVAL},
        {"quote\"", 0, DM_EINVAL},
        {"pct%s", 0, DM_EINVAL},
        {"now", T0, DM_EINVAL},
        {"past", T0 - 1, DM_EINVAL},
        {"year 10000", NODE_APIKEY_EXPIRES_MAX, DM_EINVAL},
        {"huge", UINT64_MAX, DM_EINVAL},
    };
    size_t ok = 0;
    for (size_t i = 0; i < DM_ARRAY_LEN(rows); i++) {
        char key[NODE_APIKEY_LEN + 1] = "unchanged";
        char err[256] = "unchanged";
        node_apikey_info info;
        uint64_t seq = audit_seq(f);
        size_t before = key_count(f);
        int rc = node_apikeys_create(f->k, rows[i].name, rows[i].expires_at, T0, &info, key, err,
                                     sizeof err);
        if (rc != rows[i].want)
            fail_msg("row %zu: got %s, want %s (%s)", i, dm_err_name(rc), dm_err_name(rows[i].want),
                     err);
        if (rc == DM_OK) {
            ok++;
            assert_string_equal(err, "");
            assert_int_equal(strlen(key), NODE_APIKEY_LEN);
            assert_string_equal(info.name, rows[i].name);
            assert_int_equal(audit_seq(f), seq + 1);
            assert_int_equal(key_count(f), before + 1);
        } else {
            assert_true(strlen(err) > 10); /* a message */
            assert_string_equal(key, "");  /* no key handed out */
            assert_int_equal(audit_seq(f), seq);
            assert_int_equal(key_count(f), before);
        }
    }
    assert_int_equal(key_count(f), ok);
    /* nothing from a rejected row reached the store either */
    fx_close(f);
    fx_open(f);
    assert_int_equal(key_count(f), ok);
    assert_false(cf_contains(f->s, STORE_CF_APIKEYS, "<script>"));
    assert_false(cf_contains(f->s, STORE_CF_AUDIT, "<script>"));
}

static void test_audit_entries(void **state)
{
    fx *f = *state;
    node_apikey_info a;
    char ka[NODE_APIKEY_LEN + 1], hex[65];
    /* the text log lines too */
    char *text = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&text, &len);
    assert_non_null(log);
    dm_log_level lvl = dm_log_get_level();
    dm_log_set_stream(log);
    dm_log_set_level(DM_LOG_INFO);
    create_ok(f, "audited", T0 + 3600, T0, &a, ka);
    want_check(f, ka, T0 + 1, DM_OK, NULL);
    assert_int_equal(node_apikeys_flush(f->k), DM_OK);
    assert_int_equal(node_apikeys_revoke(f->k, a.id, T0 + 2), DM_OK);
    assert_int_equal(node_apikeys_revoke(f->k, a.id, T0 + 3), DM_OK);
    dm_log_set_stream(NULL);
    dm_log_set_level(lvl);
    fclose(log);
    key_hash_hex(ka, hex);
    char line[128];
    snprintf(line, sizeof line,
             "- security - INFO - API key created: id=%s name=audited api_key=%s***\n", a.id,
             a.prefix);
    assert_non_null(strstr(text, line));
    snprintf(line, sizeof line,
             "- security - INFO - API key revoked: id=%s name=audited api_key=%s***\n", a.id,
             a.prefix);
    assert_non_null(strstr(text, line));
    assert_null(strstr(text, ka + 8));
    assert_null(strstr(text, hex));
    free(text);

    uint64_t entries, bad;
    assert_int_equal(node_audit_verify(f->s, &entries, &bad), DM_OK);
    assert_int_equal(entries, 2);
    const char *want[] = {"api_key_created", "api_key_revoked"};
    store_iter_t *it;
    assert_int_equal(store_iter_create(&it, f->s, STORE_CF_AUDIT, NULL, 0, NULL, 0), DM_OK);
    const uint8_t *k, *v;
    size_t kl, vl;
    int i = 0;
    while (store_iter_next(it, &k, &kl, &v, &vl)) {
        assert_true(i < 2);
        json_t *doc = json_loadb((const char *)v, vl, 0, NULL);
        json_t *e = json_object_get(doc, "entry");
        json_t *fl = json_object_get(e, "fields");
        assert_string_equal(json_string_value(json_object_get(e, "event")), want[i]);
        assert_string_equal(json_string_value(json_object_get(fl, "id")), a.id);
        assert_string_equal(json_string_value(json_object_get(fl, "name")), "audited");
        assert_string_equal(json_string_value(json_object_get(fl, "prefix")), a.prefix);
        if (i == 0) {
            assert_int_equal(json_integer_value(json_object_get(fl, "expires_at")), T0 + 3600);
            assert_int_equal(json_object_size(fl), 4);
        } else {
            assert_int_equal(json_object_size(fl), 3);
        }
        json_decref(doc);
        i++;
    }
    store_iter_destroy(it);
    assert_int_equal(i, 2);
    assert_false(cf_contains(f->s, STORE_CF_AUDIT, ka));
    assert_false(cf_contains(f->s, STORE_CF_AUDIT, hex));
    assert_false(cf_contains(f->s, STORE_CF_AUDIT, ka + 8)); /* beyond the prefix */
    assert_false(cf_contains(f->s, STORE_CF_OUTBOX, hex));
    /* the stored record: the hash, never the key */
    assert_true(cf_contains(f->s, STORE_CF_APIKEYS, hex));
    assert_false(cf_contains(f->s, STORE_CF_APIKEYS, ka + 8));
}

static void test_corrupt_record(void **state)
{
    fx *f = *state;
    node_apikey_info a;
    char ka[NODE_APIKEY_LEN + 1];
    create_ok(f, "good", 0, T0, &a, ka);
    dm_buf good = DM_BUF_INIT;
    assert_int_equal(store_get(f->s, STORE_CF_APIKEYS, a.id, 16, &good), DM_OK);
    const char *bad[] = {"not json", "{}", "{\"id\":\"x\"}"};
    for (size_t i = 0; i < DM_ARRAY_LEN(bad) + 2; i++) {
        fx_close(f);
        store_opts o = {.create = false};
        assert_int_equal(store_open(&f->s, f->dir, &o), DM_OK);
        if (i < DM_ARRAY_LEN(bad)) {
            assert_int_equal(store_put(f->s, STORE_CF_APIKEYS, a.id, 16, bad[i], strlen(bad[i])),
                             DM_OK);
        } else if (i == DM_ARRAY_LEN(bad)) {
            /* a good record under another id */
            assert_int_equal(
                store_put(f->s, STORE_CF_APIKEYS, "ffffffffffffffff", 16, good.data, good.len),
                DM_OK);
        } else {
            /* the hash field altered to non-hex */
            assert_int_equal(store_delete(f->s, STORE_CF_APIKEYS, "ffffffffffffffff", 16), DM_OK);
            dm_buf v = DM_BUF_INIT;
            dm_buf_append(&v, good.data, good.len);
            char *h = memmem(v.data, v.len, "\"hash\":\"", 8);
            assert_non_null(h);
            h[8] = 'z';
            assert_int_equal(store_put(f->s, STORE_CF_APIKEYS, a.id, 16, v.data, v.len), DM_OK);
            dm_buf_free(&v);
        }
        assert_int_equal(node_audit_open(&f->a, f->s), DM_OK);
        assert_int_equal(node_apikeys_open(&f->k, f->s, f->a), DM_ECORRUPT);
        f->k = NULL;
        if (i < DM_ARRAY_LEN(bad))
            assert_int_equal(store_put(f->s, STORE_CF_APIKEYS, a.id, 16, good.data, good.len),
                             DM_OK);
    }
    /* restored */
    assert_int_equal(store_put(f->s, STORE_CF_APIKEYS, a.id, 16, good.data, good.len), DM_OK);
    assert_int_equal(node_apikeys_open(&f->k, f->s, f->a), DM_OK);
    want_check(f, ka, T0, DM_OK, NULL);
    dm_buf_free(&good);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_limit(void **state)
{
    fx *f = *state;
    char first[NODE_APIKEY_LEN + 1], last[NODE_APIKEY_LEN + 1], key[NODE_APIKEY_LEN + 1];
    node_apikey_info info, a;
    double t = now_s();
    create_ok(f, "first", 0, T0, &a, first);
    for (int i = 1; i < NODE_APIKEYS_MAX - 1; i++)
        create_ok(f, "bulk", 0, T0 + (uint64_t)i, &info, key);
    create_ok(f, "last", 0, T0 + NODE_APIKEYS_MAX, &info, last);
    double t_create = now_s() - t;
    char err[256] = "";
    assert_int_equal(node_apikeys_create(f->k, "one too many", 0, T0 + NODE_APIKEYS_MAX + 1, &info,
                                         key, err, sizeof err),
                     DM_ELIMIT);
    assert_non_null(strstr(err, "10000"));
    assert_string_equal(key, "");
    /* revoked keys still count */
    assert_int_equal(node_apikeys_revoke(f->k, a.id, T0 + 1), DM_OK);
    assert_int_equal(node_apikeys_create(f->k, "still too many", 0, T0 + NODE_APIKEYS_MAX + 1,
                                         &info, key, err, sizeof err),
                     DM_ELIMIT);

    /* checks stay cheap with a full table */
    t = now_s();
    for (int i = 0; i < 10000; i++)
        want_check(f, last, T0 + NODE_APIKEYS_MAX + 2, DM_OK, NULL);
    double t_check = now_s() - t;
    print_message("[          ] %d creates %.2f s, 10000 checks %.1f ms\n", NODE_APIKEYS_MAX,
                  t_create, t_check * 1e3);

    fx_close(f);
    fx_open(f);
    assert_int_equal(key_count(f), NODE_APIKEYS_MAX);
    want_check(f, first, T0 + 1, DM_EAUTH, "revoked");
    want_check(f, last, T0 + 1, DM_OK, NULL);
    assert_int_equal(node_apikeys_get(f->k, info.id, &info), DM_OK);
    assert_int_equal(info.request_count, 10001);
    uint64_t entries, bad;
    assert_int_equal(node_audit_verify(f->s, &entries, &bad), DM_OK);
    assert_int_equal(entries, NODE_APIKEYS_MAX + 1);
}

/* ---------- concurrency: checks on one thread, writers on another ---------- */

typedef struct {
    node_apikeys_t *k;
    const char *key;
    int n;
    int ok;
} checker;

static void *check_thread(void *arg)
{
    checker *c = arg;
    for (int i = 0; i < c->n; i++)
        if (node_apikeys_check(c->k, c->key, T0 + 1 + (uint64_t)i, NULL, NULL) == DM_OK)
            c->ok++;
    return NULL;
}

static void test_concurrent(void **state)
{
    fx *f = *state;
    node_apikey_info a;
    char ka[NODE_APIKEY_LEN + 1], key[NODE_APIKEY_LEN + 1];
    create_ok(f, "hot", 0, T0, &a, ka);
    checker c = {.k = f->k, .key = ka, .n = 200000};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, check_thread, &c), 0);
    /* creates grow the table (moving entries) while checks count and flushes copy */
    for (int i = 0; i < 300; i++) {
        node_apikey_info info;
        create_ok(f, "grow", 0, T0, &info, key);
        if (i % 3 == 0)
            assert_int_equal(node_apikeys_revoke(f->k, info.id, T0 + 1), DM_OK);
        if (i % 10 == 0)
            assert_int_equal(node_apikeys_flush(f->k), DM_OK);
    }
    pthread_join(th, NULL);
    assert_int_equal(c.ok, c.n);
    fx_close(f);
    fx_open(f);
    node_apikey_info got;
    assert_int_equal(node_apikeys_get(f->k, a.id, &got), DM_OK);
    assert_int_equal(got.request_count, (uint64_t)c.n);
    assert_int_equal(got.last_used_at, T0 + (uint64_t)c.n);
    assert_int_equal(key_count(f), 301);
}

int test_node_apikeys(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_without_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
    };
    dm_log_level lvl = dm_log_get_level();
    dm_log_set_level(DM_LOG_WARNING); /* one INFO line per key created otherwise */
    int failed = cmocka_run_group_tests_name("node_apikeys", tests, NULL, NULL);
    dm_log_set_level(lvl);
    return failed;
}
