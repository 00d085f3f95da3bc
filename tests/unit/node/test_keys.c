#define _GNU_SOURCE /* memmem */
/* Key manager tests: real RocksDB on disk, real PBKDF2 at the production count. */
#include "dm_test.h"
#include "groups.h"

#include "crypto_mem.h"
#include "crypto_rsa.h"
#include "dm_err.h"
#include "node_keys.h"
#include "store.h"

#include <fcntl.h>

static const char PW[] = "correct horse battery staple 42!";
static const char BAD_PW[] = "correct horse battery staple 43!";

typedef struct {
    char *dir;
    store_t *s;
} fixture;

static store_t *open_db(const char *dir)
{
    store_t *s = NULL;
    store_opts o = {.create = true, .sync = false};
    assert_int_equal(store_open(&s, dir, &o), DM_OK);
    return s;
}

/* One initialised store, copied per test so that tampering never leaks between tests. */
static char *g_template;

static int group_setup(void **state)
{
    (void)state;
    g_template = dm_test_mkdtemp("keys-template");
    store_t *s = open_db(g_template);
    node_keys_t *km = NULL;
    assert_int_equal(node_keys_create(&km, s, PW, strlen(PW), NODE_KEYS_MIN_ITERATIONS, 2048), DM_OK);
    node_keys_close(km);
    store_close(s);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    dm_test_rmtree(g_template);
    free(g_template);
    return 0;
}

static void copy_tree(const char *from, const char *to)
{
    /* RocksDB directories are flat: copy every regular file */
    char cmdless[PATH_MAX];
    DIR *d = opendir(from);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "LOCK") == 0)
            continue;
        snprintf(cmdless, sizeof cmdless, "%s/%s", from, e->d_name);
        FILE *in = fopen(cmdless, "rb");
        assert_non_null(in);
        snprintf(cmdless, sizeof cmdless, "%s/%s", to, e->d_name);
        FILE *out = fopen(cmdless, "wb");
        assert_non_null(out);
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            assert_int_equal(fwrite(buf, 1, n, out), n);
        fclose(in);
        fclose(out);
    }
    closedir(d);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = dm_test_mkdtemp("keys");
    copy_tree(g_template, f->dir);
    f->s = open_db(f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    store_close(f->s);
    dm_test_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void get(store_t *s, store_cf cf, const char *k, dm_buf *out)
{
    dm_buf_reset(out);
    assert_int_equal(store_get(s, cf, k, strlen(k), out), DM_OK);
}

static void put(store_t *s, store_cf cf, const char *k, const dm_buf *v)
{
    assert_int_equal(store_put(s, cf, k, strlen(k), v->data, v->len), DM_OK);
}

static void test_unlock_identity(void **state)
{
    fixture *f = *state;
    node_keys_t *km = NULL;
    assert_int_equal(node_keys_unlock(&km, f->s, PW, strlen(PW)), DM_OK);
    assert_int_equal(strlen(node_keys_node_id(km)), 64);
    assert_int_equal(crypto_rsa_bits(node_keys_rsa(km)), 2048);
    assert_true(crypto_rsa_is_private(node_keys_rsa(km)));
    char id[65];
    uint8_t eth[20], eth2[20];
    assert_int_equal(node_keys_identity(f->s, id, eth), DM_OK);
    assert_string_equal(id, node_keys_node_id(km));
    node_keys_eth_address(km, eth2);
    assert_memory_equal(eth, eth2, 20);
    assert_int_equal(node_keys_iterations(km), NODE_KEYS_MIN_ITERATIONS);
    assert_int_equal(node_keys_current_version(km), 1);

    /* the Ethereum key signs and recovers to the recorded address */
    uint8_t hash[32] = {1, 2, 3};
    crypto_eth_sig sig;
    assert_int_equal(node_keys_eth_sign(km, hash, &sig), DM_OK);
    uint8_t rec[20];
    assert_int_equal(crypto_eth_recover(hash, &sig, rec), DM_OK);
    assert_memory_equal(rec, eth, 20);

    /* nothing in the database holds private key bytes in the clear */
    dm_buf der = DM_BUF_INIT, v = DM_BUF_INIT;
    assert_int_equal(crypto_rsa_to_pkcs8(node_keys_rsa(km), &der), DM_OK);
    store_iter_t *it;
    for (int cf = 0; cf < STORE_CF__COUNT; cf++) {
        assert_int_equal(store_iter_create(&it, f->s, (store_cf)cf, NULL, 0, NULL, 0), DM_OK);
        const uint8_t *k, *val;
        size_t kl, vl;
        while (store_iter_next(it, &k, &kl, &val, &vl))
            assert_null(memmem(val, vl, der.data + der.len - 64, 32));
        store_iter_destroy(it);
    }
    dm_buf_free_secure(&der);
    dm_buf_free(&v);
    node_keys_close(km);
}

static void test_create_refuses_existing_and_weak(void **state)
{
    fixture *f = *state;
    node_keys_t *km = NULL;
    assert_int_equal(node_keys_create(&km, f->s, PW, strlen(PW), NODE_KEYS_MIN_ITERATIONS, 2048),
                     DM_EEXIST);
    assert_null(km);
    char *dir = dm_test_mkdtemp("keys-new");
    store_t *s = open_db(dir);
    assert_int_equal(node_keys_create(&km, s, "short", 5, NODE_KEYS_MIN_ITERATIONS, 2048), DM_EINVAL);
    assert_int_equal(node_keys_create(&km, s, PW, strlen(PW), 1000, 2048), DM_EINVAL);
    assert_int_equal(node_keys_create(&km, s, PW, strlen(PW), NODE_KEYS_MIN_ITERATIONS, 1024),
                     DM_EUNSUPPORTED);
    /* nothing was written by the failed attempts */
    assert_int_equal(node_keys_unlock(&km, s, PW, strlen(PW)), DM_ENOTINIT);
    dm_buf v = DM_BUF_INIT;
    assert_int_equal(store_get(s, STORE_CF_META, "node_id", 7, &v), DM_ENOTFOUND);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

/* Snapshot of every record, to prove a failed operation changed nothing. */
static void snapshot(store_t *s, dm_buf *out)
{
    dm_buf_reset(out);
    for (int cf = 0; cf < STORE_CF__COUNT; cf++) {
        store_iter_t *it;
        assert_int_equal(store_iter_create(&it, s, (store_cf)cf, NULL, 0, NULL, 0), DM_OK);
        const uint8_t *k, *v;
        size_t kl, vl;
        while (store_iter_next(it, &k, &kl, &v, &vl)) {
            dm_buf_put_u32be(out, (uint32_t)kl);
            dm_buf_append(out, k, kl);
            dm_buf_put_u32be(out, (uint32_t)vl);
            dm_buf_append(out, v, vl);
        }
        store_iter_destroy(it);
    }
}

static void test_wrong_password(void **state)
{
    fixture *f = *state;
    dm_buf before = DM_BUF_INIT, after = DM_BUF_INIT;
    snapshot(f->s, &before);
    node_keys_t *km = NULL;
    assert_int_equal(node_keys_unlock(&km, f->s, BAD_PW, strlen(BAD_PW)), DM_EBADPASS);
    assert_null(km);
    assert_int_equal(node_keys_unlock(&km, f->s, "", 0), DM_EBADPASS);
    snapshot(f->s, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    dm_buf_free(&before);
    dm_buf_free(&after);
}

/* Rewrite one field of the key store document, then expect `want` on unlock. */
static void tamper_doc(store_t *s, const char *field, json_t *value, int want)
{
    dm_buf v = DM_BUF_INIT;
    get(s, STORE_CF_KEYS, "keystore", &v);
    json_t *doc = json_loadb((const char *)v.data, v.len, 0, NULL);
    assert_non_null(doc);
    if (value)
        json_object_set_new(doc, field, value);
    else
        json_object_del(doc, field);
    char *text = json_dumps(doc, JSON_COMPACT);
    dm_buf_reset(&v);
    dm_buf_puts(&v, text);
    put(s, STORE_CF_KEYS, "keystore", &v);
    free(text);
    json_decref(doc);
    node_keys_t *km = NULL;
    int rc = node_keys_unlock(&km, s, PW, strlen(PW));
    if (rc != want)
        fail_msg("tampering with '%s': got %s, want %s", field, dm_err_name(rc), dm_err_name(want));
    node_keys_close(km);
    dm_buf_free(&v);
}

static void test_tamper_document(void **state)
{
    fixture *f = *state;
    dm_buf orig = DM_BUF_INIT;
    get(f->s, STORE_CF_KEYS, "keystore", &orig);
    struct {
        const char *field;
        json_t *(*make)(void);
        int want;
    } rows[] = {
        {"current_version", NULL, DM_ETAMPER},
        {"mac", NULL, DM_ETAMPER},
        {"keys", NULL, DM_ETAMPER},
        {"iterations", NULL, DM_ETAMPER},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        put(f->s, STORE_CF_KEYS, "keystore", &orig);
        tamper_doc(f->s, rows[i].field, NULL, rows[i].want);
    }
    /* altered values */
    put(f->s, STORE_CF_KEYS, "keystore", &orig);
    tamper_doc(f->s, "iterations", json_integer(1000), DM_ETAMPER); /* downgrade refused */
    put(f->s, STORE_CF_KEYS, "keystore", &orig);
    tamper_doc(f->s, "iterations", json_integer(700000), DM_EBADPASS); /* KEK differs */
    put(f->s, STORE_CF_KEYS, "keystore", &orig);
    tamper_doc(f->s, "created", json_pack("{s:i}", "1", 12345), DM_ETAMPER);
    put(f->s, STORE_CF_KEYS, "keystore", &orig);
    tamper_doc(f->s, "format", json_integer(2), DM_ETAMPER);
    put(f->s, STORE_CF_KEYS, "keystore", &orig);
    tamper_doc(f->s, "extra", json_string("x"), DM_ETAMPER); /* covered by the MAC */

    /* a flipped character inside the data key token */
    put(f->s, STORE_CF_KEYS, "keystore", &orig);
    json_t *doc = json_loadb((const char *)orig.data, orig.len, 0, NULL);
    char tok[512];
    snprintf(tok, sizeof tok, "%s", json_string_value(json_object_get(json_object_get(doc, "keys"), "1")));
    tok[40] = tok[40] == 'A' ? 'B' : 'A';
    tamper_doc(f->s, "keys", json_pack("{s:s}", "1", tok), DM_ETAMPER);
    json_decref(doc);

    /* not JSON at all */
    dm_buf junk = DM_BUF_INIT;
    dm_buf_puts(&junk, "{\"salt\": ");
    put(f->s, STORE_CF_KEYS, "keystore", &junk);
    node_keys_t *km = NULL;
    assert_int_equal(node_keys_unlock(&km, f->s, PW, strlen(PW)), DM_ETAMPER);

    /* restored: works again */
    put(f->s, STORE_CF_KEYS, "keystore", &orig);
    assert_int_equal(node_keys_unlock(&km, f->s, PW, strlen(PW)), DM_OK);
    node_keys_close(km);
    dm_buf_free(&junk);
    dm_buf_free(&orig);
}

static void expect_unlock(store_t *s, int want, const char *what)
{
    node_keys_t *km = NULL;
    int rc = node_keys_unlock(&km, s, PW, strlen(PW));
    if (rc != want)
        fail_msg("%s: got %s, want %s", what, dm_err_name(rc), dm_err_name(want));
    node_keys_close(km);
}

static void test_tamper_records(void **state)
{
    fixture *f = *state;
    dm_buf rsa = DM_BUF_INIT, eth = DM_BUF_INIT, v = DM_BUF_INIT;
    get(f->s, STORE_CF_KEYS, "node/rsa", &rsa);
    get(f->s, STORE_CF_KEYS, "node/eth", &eth);

    /* a flipped byte in the sealed RSA key */
    dm_buf_reset(&v);
    dm_buf_append(&v, rsa.data, rsa.len);
    v.data[v.len / 2] ^= 1;
    put(f->s, STORE_CF_KEYS, "node/rsa", &v);
    expect_unlock(f->s, DM_ETAMPER, "sealed rsa flipped");
    put(f->s, STORE_CF_KEYS, "node/rsa", &rsa);

    /* swapped sealed records: each is authentic, but in the wrong place */
    put(f->s, STORE_CF_KEYS, "node/eth", &rsa);
    expect_unlock(f->s, DM_ETAMPER, "sealed records swapped");
    put(f->s, STORE_CF_KEYS, "node/eth", &eth);

    /* deleted private key */
    assert_int_equal(store_delete(f->s, STORE_CF_KEYS, "node/eth", 8), DM_OK);
    expect_unlock(f->s, DM_ETAMPER, "eth key deleted");
    put(f->s, STORE_CF_KEYS, "node/eth", &eth);

    /* identity records that no longer match the keys */
    const char *meta[] = {"node_id", "rsa_spki", "eth_address", "eth_binding"};
    for (size_t i = 0; i < 4; i++) {
        dm_buf orig = DM_BUF_INIT;
        get(f->s, STORE_CF_META, meta[i], &orig);
        dm_buf_reset(&v);
        dm_buf_append(&v, orig.data, orig.len);
        v.data[v.len - 1] ^= 0x01;
        put(f->s, STORE_CF_META, meta[i], &v);
        expect_unlock(f->s, DM_ETAMPER, meta[i]);
        put(f->s, STORE_CF_META, meta[i], &orig);
        dm_buf_free(&orig);
    }
    expect_unlock(f->s, DM_OK, "restored");
    dm_buf_free(&rsa);
    dm_buf_free(&eth);
    dm_buf_free(&v);
}

static void test_seal_rotate_reencrypt(void **state)
{
    fixture *f = *state;
    node_keys_t *km = NULL;
    assert_int_equal(node_keys_unlock(&km, f->s, PW, strlen(PW)), DM_OK);

    dm_buf s1 = DM_BUF_INIT, pt = DM_BUF_INIT;
    assert_int_equal(node_keys_seal(km, "payload one", 11, &s1), DM_OK);
    uint32_t ver;
    assert_int_equal(node_keys_sealed_version(s1.data, s1.len, &ver), DM_OK);
    assert_int_equal(ver, 1);
    assert_int_equal(store_put(f->s, STORE_CF_KEYS, "node/test1", 10, s1.data, s1.len), DM_OK);

    uint32_t nv = 0;
    assert_int_equal(node_keys_rotate(km, &nv), DM_OK);
    assert_int_equal(nv, 2);
    dm_buf s2 = DM_BUF_INIT;
    assert_int_equal(node_keys_seal(km, "payload two", 11, &s2), DM_OK);
    assert_int_equal(node_keys_sealed_version(s2.data, s2.len, &ver), DM_OK);
    assert_int_equal(ver, 2);
    /* old data stays readable */
    assert_int_equal(node_keys_open(km, s1.data, s1.len, &pt), DM_OK);
    assert_int_equal(pt.len, 11);
    assert_memory_equal(pt.data, "payload one", 11);
    node_keys_close(km);

    /* a fresh unlock sees both versions */
    assert_int_equal(node_keys_unlock(&km, f->s, PW, strlen(PW)), DM_OK);
    assert_int_equal(node_keys_current_version(km), 2);
    dm_buf_reset(&pt);
    assert_int_equal(node_keys_open(km, s2.data, s2.len, &pt), DM_OK);
    node_keys_version_info *v;
    size_t n;
    assert_int_equal(node_keys_list(km, &v, &n), DM_OK);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].records, 3); /* node/rsa, node/eth, node/test1 */
    assert_int_equal(v[1].records, 0);
    assert_true(v[1].current && !v[0].current);
    assert_true(v[1].created >= v[0].created);
    free(v);

    uint64_t moved;
    assert_int_equal(node_keys_reencrypt(km, &moved), DM_OK);
    assert_int_equal(moved, 3);
    assert_int_equal(node_keys_reencrypt(km, &moved), DM_OK);
    assert_int_equal(moved, 0);
    assert_int_equal(node_keys_list(km, &v, &n), DM_OK);
    assert_int_equal(v[0].records, 0);
    assert_int_equal(v[1].records, 3);
    free(v);
    dm_buf rec = DM_BUF_INIT;
    get(f->s, STORE_CF_KEYS, "node/test1", &rec);
    dm_buf_reset(&pt);
    assert_int_equal(node_keys_open(km, rec.data, rec.len, &pt), DM_OK);
    assert_memory_equal(pt.data, "payload one", 11);
    node_keys_close(km);
    /* the re-sealed private keys still unlock */
    expect_unlock(f->s, DM_OK, "after reencrypt");

    dm_buf_free(&rec);
    dm_buf_free(&s1);
    dm_buf_free(&s2);
    dm_buf_free(&pt);
}

static void test_open_rejects(void **state)
{
    fixture *f = *state;
    node_keys_t *km = NULL;
    assert_int_equal(node_keys_unlock(&km, f->s, PW, strlen(PW)), DM_OK);
    dm_buf s = DM_BUF_INIT, pt = DM_BUF_INIT;
    assert_int_equal(node_keys_seal(km, "abc", 3, &s), DM_OK);
    s.data[s.len - 5] ^= 1;
    assert_int_equal(node_keys_open(km, s.data, s.len, &pt), DM_ETAMPER);
    s.data[s.len - 5] ^= 1;
    s.data[7] = 9; /* unknown version */
    assert_int_equal(node_keys_open(km, s.data, s.len, &pt), DM_ECORRUPT);
    assert_int_equal(node_keys_open(km, "DMS1", 4, &pt), DM_ECORRUPT);
    assert_int_equal(node_keys_open(km, "XXXX\0\0\0\1abc", 11, &pt), DM_ECORRUPT);
    assert_int_equal(pt.len, 0);
    dm_buf_free(&s);
    dm_buf_free(&pt);
    node_keys_close(km);
}

static void test_password_sources(void **state)
{
    (void)state;
    dm_buf pw = DM_BUF_INIT;
    unsetenv(NODE_KEYS_ENV);
    assert_int_equal(node_keys_password_load(&pw, NULL), DM_ENOPASS);
    setenv(NODE_KEYS_ENV, "", 1);
    assert_int_equal(node_keys_password_load(&pw, ""), DM_ENOPASS);
    setenv(NODE_KEYS_ENV, "from-the-environment\n", 1);
    assert_int_equal(node_keys_password_load(&pw, NULL), DM_OK);
    assert_int_equal(pw.len, strlen("from-the-environment"));
    assert_memory_equal(pw.data, "from-the-environment", pw.len);
    assert_null(getenv(NODE_KEYS_ENV)); /* consumed and wiped */
    dm_buf_free_secure(&pw);

    char *dir = dm_test_mkdtemp("pwfile");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/pw", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "file-password\n", 14), 14);
    close(fd);
    assert_int_equal(node_keys_password_load(&pw, path), DM_OK);
    assert_int_equal(pw.len, 13);
    dm_buf_free_secure(&pw);
    chmod(path, 0644);
    assert_int_equal(node_keys_password_load(&pw, path), DM_EPERM);
    chmod(path, 0600);
    fd = open(path, O_WRONLY | O_TRUNC);
    close(fd);
    assert_int_equal(node_keys_password_load(&pw, path), DM_ENOPASS);
    snprintf(path, sizeof path, "%s/absent", dir);
    assert_int_equal(node_keys_password_load(&pw, path), DM_ENOPASS);
    assert_int_equal(pw.len, 0);
    dm_test_rmtree(dir);
    free(dir);
}

static void test_not_initialised(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("keys-empty");
    store_t *s = open_db(dir);
    node_keys_t *km = NULL;
    char id[65];
    uint8_t eth[20];
    assert_int_equal(node_keys_unlock(&km, s, PW, strlen(PW)), DM_ENOTINIT);
    assert_int_equal(node_keys_identity(s, id, eth), DM_ENOTINIT);
    store_close(s);
    dm_test_rmtree(dir);
    free(dir);
}

int test_node_keys(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unlock_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_refuses_existing_and_weak, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_document, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_seal_rotate_reencrypt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_rejects, setup, teardown),
        cmocka_unit_test(test_password_sources),
        cmocka_unit_test(test_not_initialised),
    };
    return cmocka_run_group_tests_name("node_keys", tests, group_setup, group_teardown);
}
