#include "node_keys.h"

#include "crypto_fernet.h"
#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Record names (docs/STORAGE.md). */
#define K_KEYSTORE "keystore"
#define K_NODE_RSA "node/rsa"
#define K_NODE_ETH "node/eth"
#define SEALED_PREFIX "node/" /* every value under it in STORE_CF_KEYS is sealed */
#define M_NODE_ID "node_id"
#define M_SPKI "rsa_spki"
#define M_ETH "eth_address"
#define M_BINDING "eth_binding"
#define M_CREATED "created"

#define SEAL_MAGIC "DMS1"
#define SALT_LEN 16
#define MAX_VERSIONS 100000u
#define MAX_DOC (4u << 20)
#define REENCRYPT_BATCH 256
/* "now" for tokens whose age is irrelevant: far enough ahead that no timestamp is in its future */
#define NO_CLOCK (UINT64_MAX / 2)

static const char CHECK_LABEL[] = "dmnode/keystore/check/v1";
static const char MAC_LABEL[] = "dmnode/keystore/mac/v1";

typedef struct {
    crypto_fernet_key key;
    uint64_t created;
} data_key;

struct node_keys {
    store_t *store; /* borrowed */
    /* seal/open/list read the key set from any thread; rotate replaces it */
    pthread_rwlock_t lock;
    uint8_t salt[SALT_LEN];
    uint32_t iterations;
    uint8_t kek_raw[32];
    crypto_fernet_key kek;
    uint8_t check[32];
    data_key *keys; /* keys[i] is version i + 1 */
    uint32_t nkeys; /* == current version */
    crypto_rsa_t *rsa;
    crypto_eth_key eth;
    uint8_t eth_addr[20];
    char node_id[65];
};

/* ---------- password ---------- */

int node_keys_password_load(dm_buf *out, const char *password_file)
{
    if (password_file && *password_file) {
        int fd = open(password_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            return errno == ENOENT ? DM_ENOPASS : DM_EIO;
        struct stat st;
        int rc = DM_OK;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            rc = DM_EIO;
        } else if (st.st_mode & (S_IRWXG | S_IRWXO)) {
            rc = DM_EPERM; /* a password readable by others is not a secret */
        } else if (st.st_size > 4096) {
            rc = DM_ETOOBIG;
        } else {
            char tmp[4097];
            ssize_t n = read(fd, tmp, sizeof tmp);
            if (n < 0 || n > 4096)
                rc = n < 0 ? DM_EIO : DM_ETOOBIG;
            while (rc == 0 && n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r'))
                n--;
            if (rc == 0 && n == 0)
                rc = DM_ENOPASS;
            if (rc == 0)
                rc = dm_buf_append(out, tmp, (size_t)n);
            crypto_memzero(tmp, sizeof tmp);
        }
        close(fd);
        return rc;
    }
    char *v = getenv(NODE_KEYS_ENV);
    if (!v || !*v)
        return DM_ENOPASS;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == '\n' || v[n - 1] == '\r'))
        n--;
    int rc = dm_buf_append(out, v, n);
    /* wipe the inherited copy too, so it is gone from /proc/<pid>/environ */
    crypto_memzero(v, strlen(v));
    unsetenv(NODE_KEYS_ENV);
    return rc;
}

/* ---------- sealing ---------- */

static const data_key *key_for(const node_keys_t *km, uint32_t version)
{
    if (version == 0 || version > km->nkeys)
        return NULL;
    return &km->keys[version - 1];
}

int node_keys_sealed_version(const void *sealed, size_t n, uint32_t *version)
{
    const uint8_t *p = sealed;
    if (n < 8 || memcmp(p, SEAL_MAGIC, 4) != 0)
        return DM_ECORRUPT;
    *version = dm_get_u32be(p + 4);
    return DM_OK;
}

static int seal_with(const crypto_fernet_key *k, uint32_t version, const void *pt, size_t n,
                     dm_buf *out)
{
    int rc = dm_buf_append(out, SEAL_MAGIC, 4);
    if (!rc)
        rc = dm_buf_put_u32be(out, version);
    if (!rc)
        rc = crypto_fernet_encrypt(out, k, pt, n);
    return rc;
}

static void rdlock(const node_keys_t *km)
{
    pthread_rwlock_rdlock((pthread_rwlock_t *)&km->lock);
}

static void unlock_keys(const node_keys_t *km)
{
    pthread_rwlock_unlock((pthread_rwlock_t *)&km->lock);
}

int node_keys_seal(const node_keys_t *km, const void *pt, size_t n, dm_buf *out)
{
    rdlock(km);
    int rc = seal_with(&km->keys[km->nkeys - 1].key, km->nkeys, pt, n, out);
    unlock_keys(km);
    return rc;
}

int node_keys_open(const node_keys_t *km, const void *sealed, size_t n, dm_buf *out)
{
    uint32_t version;
    int rc = node_keys_sealed_version(sealed, n, &version);
    if (rc)
        return rc;
    rdlock(km);
    const data_key *dk = key_for(km, version);
    if (!dk) {
        unlock_keys(km);
        return DM_ECORRUPT;
    }
    /* A sealed record never expires and may come from a node whose clock ran
     * ahead: only its MAC matters, so neither the TTL nor the skew check applies. */
    rc = crypto_fernet_decrypt(out, &dk->key, (const char *)sealed + 8, n - 8, 0, NO_CLOCK);
    unlock_keys(km);
    return rc == DM_EBADTOKEN ? DM_ETAMPER : rc;
}

/* ---------- key store document ---------- */

static int derive_kek(node_keys_t *km, const char *pw, size_t pwlen)
{
    int rc = crypto_pbkdf2_sha256(km->kek_raw, sizeof km->kek_raw, pw, pwlen, km->salt, SALT_LEN,
                                  km->iterations);
    if (rc)
        return rc;
    crypto_fernet_key_from_bytes(&km->kek, km->kek_raw);
    return crypto_hmac_sha256(km->check, km->kek_raw, 32, CHECK_LABEL, sizeof CHECK_LABEL - 1);
}

static int b64_field(json_t *obj, const char *name, const uint8_t *p, size_t n)
{
    dm_buf b = DM_BUF_INIT;
    int rc = dm_b64_encode(&b, p, n, DM_B64_STD);
    if (!rc && json_object_set_new(obj, name, json_stringn((const char *)b.data, b.len)))
        rc = DM_ENOMEM;
    dm_buf_free(&b);
    return rc;
}

static int b64_read(json_t *obj, const char *name, uint8_t *out, size_t n)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_string(v))
        return DM_ETAMPER;
    dm_buf b = DM_BUF_INIT;
    int rc = dm_b64_decode(&b, json_string_value(v), json_string_length(v), DM_B64_STD);
    if (rc || b.len != n)
        rc = DM_ETAMPER;
    else
        memcpy(out, b.data, n);
    dm_buf_free(&b);
    return rc;
}

static int doc_mac(const node_keys_t *km, json_t *doc, uint8_t mac[32])
{
    uint8_t mac_key[32];
    int rc = crypto_hmac_sha256(mac_key, km->kek_raw, 32, MAC_LABEL, sizeof MAC_LABEL - 1);
    if (rc)
        return rc;
    json_t *copy = json_copy(doc);
    if (!copy) {
        rc = DM_ENOMEM;
        goto out;
    }
    json_object_del(copy, "mac");
    char *canon = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(copy);
    if (!canon) {
        rc = DM_ENOMEM;
        goto out;
    }
    rc = crypto_hmac_sha256(mac, mac_key, 32, canon, strlen(canon));
    free(canon);
out:
    crypto_memzero(mac_key, sizeof mac_key);
    return rc;
}

/* Build the document for the key set `keys[0..nkeys)` (the installed one, or one
 * about to be installed); the caller writes it. */
static int doc_build(const node_keys_t *km, const data_key *keys, uint32_t nkeys, dm_buf *out)
{
    int rc = DM_ENOMEM;
    dm_buf tok = DM_BUF_INIT;
    json_t *doc = json_object(), *jkeys = json_object(), *created = json_object();
    if (!doc || !jkeys || !created)
        goto out;
    if (json_object_set_new(doc, "format", json_integer(1)) ||
        json_object_set_new(doc, "kdf", json_string("pbkdf2-hmac-sha256")) ||
        json_object_set_new(doc, "iterations", json_integer(km->iterations)) ||
        json_object_set_new(doc, "current_version", json_integer(nkeys)))
        goto out;
    if ((rc = b64_field(doc, "salt", km->salt, SALT_LEN)) ||
        (rc = b64_field(doc, "check", km->check, 32)))
        goto out;
    rc = DM_ENOMEM;
    for (uint32_t v = 1; v <= nkeys; v++) {
        char name[16];
        snprintf(name, sizeof name, "%u", v);
        uint8_t raw[32];
        memcpy(raw, keys[v - 1].key.signing, 16);
        memcpy(raw + 16, keys[v - 1].key.encryption, 16);
        dm_buf_reset(&tok);
        int erc = crypto_fernet_encrypt(&tok, &km->kek, raw, sizeof raw);
        crypto_memzero(raw, sizeof raw);
        if (erc) {
            rc = erc;
            goto out;
        }
        if (json_object_set_new(jkeys, name, json_stringn((const char *)tok.data, tok.len)) ||
            json_object_set_new(created, name, json_integer((json_int_t)keys[v - 1].created)))
            goto out;
    }
    if (json_object_set(doc, "keys", jkeys) || json_object_set(doc, "created", created))
        goto out;
    uint8_t mac[32];
    if ((rc = doc_mac(km, doc, mac)) || (rc = b64_field(doc, "mac", mac, 32)))
        goto out;
    char *text = json_dumps(doc, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (!text) {
        rc = DM_ENOMEM;
        goto out;
    }
    rc = dm_buf_puts(out, text);
    free(text);
out:
    dm_buf_free(&tok);
    json_decref(jkeys);
    json_decref(created);
    json_decref(doc);
    return rc;
}

static uint32_t json_u32(json_t *obj, const char *name, int *rc)
{
    json_t *v = json_object_get(obj, name);
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > (json_int_t)UINT32_MAX) {
        *rc = DM_ETAMPER;
        return 0;
    }
    return (uint32_t)json_integer_value(v);
}

/* Parse and authenticate the document; fills km (salt, iterations, keys). */
static int doc_load(node_keys_t *km, const uint8_t *text, size_t n, const char *pw, size_t pwlen)
{
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)text, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc || !json_is_object(doc)) {
        dm_log(DM_LOG_ERROR, "security", "key store is not valid JSON: %s", jerr.text);
        json_decref(doc);
        return DM_ETAMPER;
    }
    int rc = DM_OK;
    uint8_t check[32], mac[32], want[32];
    uint32_t format = json_u32(doc, "format", &rc);
    json_t *kdf = json_object_get(doc, "kdf");
    km->iterations = json_u32(doc, "iterations", &rc);
    uint32_t current = json_u32(doc, "current_version", &rc);
    json_t *keys = json_object_get(doc, "keys"), *created = json_object_get(doc, "created");
    if (rc || format != 1 || !json_is_string(kdf) ||
        strcmp(json_string_value(kdf), "pbkdf2-hmac-sha256") != 0 || !json_is_object(keys) ||
        !json_is_object(created) || current == 0 || current > MAX_VERSIONS ||
        json_object_size(keys) != current || json_object_size(created) != current) {
        rc = DM_ETAMPER;
        goto out;
    }
    if (km->iterations < NODE_KEYS_MIN_ITERATIONS) {
        /* a lowered count would weaken the KEK: never accept a downgrade */
        dm_log(DM_LOG_ERROR, "security", "key store KDF iteration count %u below minimum",
               km->iterations);
        rc = DM_ETAMPER;
        goto out;
    }
    if ((rc = b64_read(doc, "salt", km->salt, SALT_LEN)) ||
        (rc = b64_read(doc, "check", check, 32)) || (rc = b64_read(doc, "mac", mac, 32)))
        goto out;
    if ((rc = derive_kek(km, pw, pwlen)))
        goto out;
    if (!crypto_ct_eq(check, km->check, 32)) {
        rc = DM_EBADPASS;
        goto out;
    }
    if ((rc = doc_mac(km, doc, want)))
        goto out;
    if (!crypto_ct_eq(mac, want, 32)) {
        dm_log(DM_LOG_ERROR, "security", "key store MAC does not verify: record altered");
        rc = DM_ETAMPER;
        goto out;
    }
    km->keys = calloc(current, sizeof *km->keys);
    if (!km->keys) {
        rc = DM_ENOMEM;
        goto out;
    }
    km->nkeys = current;
    for (uint32_t v = 1; v <= current; v++) {
        char name[16];
        snprintf(name, sizeof name, "%u", v);
        json_t *tok = json_object_get(keys, name), *ts = json_object_get(created, name);
        if (!json_is_string(tok) || !json_is_integer(ts) || json_integer_value(ts) < 0) {
            rc = DM_ETAMPER;
            goto out;
        }
        dm_buf raw = DM_BUF_INIT;
        rc = crypto_fernet_decrypt(&raw, &km->kek, json_string_value(tok), json_string_length(tok),
                                   0, NO_CLOCK);
        if (rc || raw.len != 32) {
            dm_buf_free_secure(&raw);
            rc = rc == DM_ENOMEM ? rc : DM_ETAMPER;
            goto out;
        }
        crypto_fernet_key_from_bytes(&km->keys[v - 1].key, raw.data);
        km->keys[v - 1].created = (uint64_t)json_integer_value(ts);
        dm_buf_free_secure(&raw);
    }
out:
    crypto_memzero(want, sizeof want);
    json_decref(doc);
    return rc;
}

/* ---------- identity ---------- */

static int binding_message(dm_buf *out, const char *node_id, const uint8_t eth[20])
{
    char addr[43];
    crypto_eth_address_format(eth, addr);
    return dm_buf_printf(out, "dmnode-eth-binding-v1:%s:%s", node_id, addr);
}

void node_keys_close(node_keys_t *km)
{
    if (!km)
        return;
    pthread_rwlock_destroy(&km->lock);
    if (km->keys)
        crypto_memzero(km->keys, km->nkeys * sizeof *km->keys);
    free(km->keys);
    crypto_rsa_destroy(km->rsa);
    crypto_memzero(km, sizeof *km);
    free(km);
}

int node_keys_create(node_keys_t **out, store_t *store, const char *password, size_t pwlen,
                     uint32_t iterations, unsigned rsa_bits)
{
    *out = NULL;
    if (pwlen < NODE_KEYS_MIN_PASSWORD || iterations < NODE_KEYS_MIN_ITERATIONS)
        return DM_EINVAL;
    dm_buf existing = DM_BUF_INIT;
    int rc = store_get(store, STORE_CF_KEYS, K_KEYSTORE, strlen(K_KEYSTORE), &existing);
    dm_buf_free(&existing);
    if (rc == DM_OK)
        return DM_EEXIST;
    if (rc != DM_ENOTFOUND)
        return rc;

    node_keys_t *km = calloc(1, sizeof *km);
    if (!km)
        return DM_ENOMEM;
    pthread_rwlock_init(&km->lock, NULL);
    dm_buf doc = DM_BUF_INIT, der = DM_BUF_INIT, sealed_rsa = DM_BUF_INIT, sealed_eth = DM_BUF_INIT,
           spki = DM_BUF_INIT, bind = DM_BUF_INIT, sig = DM_BUF_INIT;
    store_batch_t *b = NULL;
    km->store = store;
    km->iterations = iterations;
    uint64_t now = (uint64_t)time(NULL);
    if ((rc = crypto_random(km->salt, SALT_LEN)) || (rc = derive_kek(km, password, pwlen)))
        goto out;
    km->keys = calloc(1, sizeof *km->keys);
    if (!km->keys) {
        rc = DM_ENOMEM;
        goto out;
    }
    km->nkeys = 1;
    km->keys[0].created = now;
    if ((rc = crypto_fernet_key_generate(&km->keys[0].key)))
        goto out;
    if ((rc = crypto_rsa_generate(&km->rsa, rsa_bits)) ||
        (rc = crypto_rsa_node_id(km->rsa, km->node_id)) ||
        (rc = crypto_eth_key_generate(&km->eth)) ||
        (rc = crypto_eth_address(&km->eth, km->eth_addr)))
        goto out;
    if ((rc = crypto_rsa_to_pkcs8(km->rsa, &der)) ||
        (rc = node_keys_seal(km, der.data, der.len, &sealed_rsa)) ||
        (rc = node_keys_seal(km, km->eth.priv, 32, &sealed_eth)) ||
        (rc = crypto_rsa_spki(km->rsa, &spki)) ||
        (rc = binding_message(&bind, km->node_id, km->eth_addr)) ||
        (rc = crypto_rsa_sign(km->rsa, bind.data, bind.len, &sig)) ||
        (rc = doc_build(km, km->keys, km->nkeys, &doc)))
        goto out;
    uint8_t created[8];
    dm_put_u64be(created, now);
    if ((rc = store_batch_create(&b)))
        goto out;
#define PUT(cf, k, v, n) store_batch_put(b, cf, k, strlen(k), v, n)
    if ((rc = PUT(STORE_CF_KEYS, K_KEYSTORE, doc.data, doc.len)) ||
        (rc = PUT(STORE_CF_KEYS, K_NODE_RSA, sealed_rsa.data, sealed_rsa.len)) ||
        (rc = PUT(STORE_CF_KEYS, K_NODE_ETH, sealed_eth.data, sealed_eth.len)) ||
        (rc = PUT(STORE_CF_META, M_NODE_ID, km->node_id, 64)) ||
        (rc = PUT(STORE_CF_META, M_SPKI, spki.data, spki.len)) ||
        (rc = PUT(STORE_CF_META, M_ETH, km->eth_addr, 20)) ||
        (rc = PUT(STORE_CF_META, M_BINDING, sig.data, sig.len)) ||
        (rc = PUT(STORE_CF_META, M_CREATED, created, 8)))
        goto out;
#undef PUT
    if ((rc = store_write(store, b)))
        goto out;
    dm_log(DM_LOG_INFO, "security",
           "key store created: node_id=%s data_key_version=1 kdf_iterations=%u", km->node_id,
           iterations);
    *out = km;
    km = NULL;
out:
    store_batch_destroy(b);
    dm_buf_free(&doc);
    dm_buf_free_secure(&der);
    dm_buf_free(&sealed_rsa);
    dm_buf_free(&sealed_eth);
    dm_buf_free(&spki);
    dm_buf_free(&bind);
    dm_buf_free(&sig);
    node_keys_close(km);
    return rc;
}

static int meta_get(store_t *s, const char *k, dm_buf *out)
{
    int rc = store_get(s, STORE_CF_META, k, strlen(k), out);
    return rc == DM_ENOTFOUND ? DM_ETAMPER : rc;
}

int node_keys_unlock(node_keys_t **out, store_t *store, const char *password, size_t pwlen)
{
    *out = NULL;
    dm_buf doc = DM_BUF_INIT, der = DM_BUF_INIT, eth = DM_BUF_INIT, sealed = DM_BUF_INIT,
           spki = DM_BUF_INIT, spki_now = DM_BUF_INIT, id = DM_BUF_INIT, addr = DM_BUF_INIT,
           bind = DM_BUF_INIT, sig = DM_BUF_INIT;
    node_keys_t *km = calloc(1, sizeof *km);
    if (!km)
        return DM_ENOMEM;
    pthread_rwlock_init(&km->lock, NULL);
    km->store = store;
    int rc = store_get(store, STORE_CF_KEYS, K_KEYSTORE, strlen(K_KEYSTORE), &doc);
    if (rc) {
        rc = rc == DM_ENOTFOUND ? DM_ENOTINIT : rc;
        goto out;
    }
    if (doc.len > MAX_DOC) {
        rc = DM_ETAMPER;
        goto out;
    }
    if ((rc = doc_load(km, doc.data, doc.len, password, pwlen)))
        goto out;

    /* private keys: their MACs prove them authentic */
    if ((rc = store_get(store, STORE_CF_KEYS, K_NODE_RSA, strlen(K_NODE_RSA), &sealed)))
        goto tamper_if_missing;
    if ((rc = node_keys_open(km, sealed.data, sealed.len, &der)))
        goto out;
    if ((rc = crypto_rsa_from_pkcs8(&km->rsa, der.data, der.len))) {
        rc = DM_ETAMPER;
        goto out;
    }
    dm_buf_reset(&sealed);
    if ((rc = store_get(store, STORE_CF_KEYS, K_NODE_ETH, strlen(K_NODE_ETH), &sealed)))
        goto tamper_if_missing;
    if ((rc = node_keys_open(km, sealed.data, sealed.len, &eth)))
        goto out;
    if (eth.len != 32 || crypto_eth_key_from_bytes(&km->eth, eth.data) ||
        crypto_eth_address(&km->eth, km->eth_addr)) {
        rc = DM_ETAMPER;
        goto out;
    }
    /* public identity records must match the private keys */
    if ((rc = crypto_rsa_node_id(km->rsa, km->node_id)) ||
        (rc = crypto_rsa_spki(km->rsa, &spki_now)))
        goto out;
    if ((rc = meta_get(store, M_SPKI, &spki)) || (rc = meta_get(store, M_NODE_ID, &id)) ||
        (rc = meta_get(store, M_ETH, &addr)) || (rc = meta_get(store, M_BINDING, &sig)))
        goto out;
    if (spki.len != spki_now.len || memcmp(spki.data, spki_now.data, spki.len) != 0 ||
        id.len != 64 || memcmp(id.data, km->node_id, 64) != 0 || addr.len != 20 ||
        memcmp(addr.data, km->eth_addr, 20) != 0) {
        dm_log(DM_LOG_ERROR, "security", "node identity records do not match the node's keys");
        rc = DM_ETAMPER;
        goto out;
    }
    if ((rc = binding_message(&bind, km->node_id, km->eth_addr)))
        goto out;
    if (crypto_rsa_verify(km->rsa, bind.data, bind.len, sig.data, sig.len) != DM_OK) {
        dm_log(DM_LOG_ERROR, "security", "Ethereum address binding signature invalid");
        rc = DM_ETAMPER;
        goto out;
    }
    *out = km;
    km = NULL;
    goto out;
tamper_if_missing:
    if (rc == DM_ENOTFOUND)
        rc = DM_ETAMPER;
out:
    dm_buf_free(&doc);
    dm_buf_free_secure(&der);
    dm_buf_free_secure(&eth);
    dm_buf_free(&sealed);
    dm_buf_free(&spki);
    dm_buf_free(&spki_now);
    dm_buf_free(&id);
    dm_buf_free(&addr);
    dm_buf_free(&bind);
    dm_buf_free(&sig);
    node_keys_close(km);
    return rc;
}

/* ---------- accessors ---------- */

const crypto_rsa_t *node_keys_rsa(const node_keys_t *km)
{
    return km->rsa;
}

const char *node_keys_node_id(const node_keys_t *km)
{
    return km->node_id;
}

void node_keys_eth_address(const node_keys_t *km, uint8_t addr[20])
{
    memcpy(addr, km->eth_addr, 20);
}

uint32_t node_keys_current_version(const node_keys_t *km)
{
    rdlock(km);
    uint32_t n = km->nkeys;
    unlock_keys(km);
    return n;
}

uint32_t node_keys_iterations(const node_keys_t *km)
{
    return km->iterations;
}

int node_keys_eth_sign(const node_keys_t *km, const uint8_t hash[32], crypto_eth_sig *sig)
{
    return crypto_eth_sign_hash(&km->eth, hash, sig);
}

int node_keys_identity(store_t *store, char node_id[65], uint8_t eth[20])
{
    dm_buf id = DM_BUF_INIT, addr = DM_BUF_INIT;
    int rc = store_get(store, STORE_CF_META, M_NODE_ID, strlen(M_NODE_ID), &id);
    if (!rc)
        rc = store_get(store, STORE_CF_META, M_ETH, strlen(M_ETH), &addr);
    if (rc == DM_ENOTFOUND)
        rc = DM_ENOTINIT;
    if (!rc && (id.len != 64 || addr.len != 20))
        rc = DM_ECORRUPT;
    if (!rc) {
        memcpy(node_id, id.data, 64);
        node_id[64] = 0;
        memcpy(eth, addr.data, 20);
    }
    dm_buf_free(&id);
    dm_buf_free(&addr);
    return rc;
}

/* ---------- rotation and re-encryption ---------- */

int node_keys_rotate(node_keys_t *km, uint32_t *new_version)
{
    /* Writers are serialised by the caller (CLI, or the daemon's loop thread);
     * readers on other threads only ever see a key set that is already on disk. */
    uint32_t n = km->nkeys;
    if (n >= MAX_VERSIONS)
        return DM_ERANGE;
    data_key *grown = calloc(n + 1, sizeof *grown);
    if (!grown)
        return DM_ENOMEM;
    rdlock(km);
    memcpy(grown, km->keys, n * sizeof *grown);
    unlock_keys(km);
    dm_buf doc = DM_BUF_INIT;
    int rc = crypto_fernet_key_generate(&grown[n].key);
    grown[n].created = (uint64_t)time(NULL);
    if (!rc)
        rc = doc_build(km, grown, n + 1, &doc);
    /* persist before installing: nothing may be sealed under a version the store lacks */
    if (!rc)
        rc = store_put(km->store, STORE_CF_KEYS, K_KEYSTORE, strlen(K_KEYSTORE), doc.data, doc.len);
    dm_buf_free(&doc);
    if (rc) {
        crypto_memzero(grown, (n + 1) * sizeof *grown);
        free(grown);
        return rc;
    }
    pthread_rwlock_wrlock(&km->lock);
    data_key *old = km->keys;
    km->keys = grown;
    km->nkeys = n + 1;
    pthread_rwlock_unlock(&km->lock);
    crypto_memzero(old, n * sizeof *old);
    free(old);
    *new_version = n + 1;
    dm_log(DM_LOG_INFO, "security", "data key rotated: node_id=%s new_version=%u", km->node_id,
           n + 1);
    return DM_OK;
}

int node_keys_list(const node_keys_t *km, node_keys_version_info **out, size_t *n)
{
    rdlock(km);
    uint32_t nk = km->nkeys;
    node_keys_version_info *v = calloc(nk, sizeof *v);
    for (uint32_t i = 0; v && i < nk; i++) {
        v[i].version = i + 1;
        v[i].created = km->keys[i].created;
        v[i].current = i + 1 == nk;
    }
    unlock_keys(km);
    if (!v)
        return DM_ENOMEM;
    store_iter_t *it = NULL;
    int rc = store_iter_create(&it, km->store, STORE_CF_KEYS, SEALED_PREFIX, strlen(SEALED_PREFIX),
                               NULL, 0);
    if (rc) {
        free(v);
        return rc;
    }
    const uint8_t *k, *val;
    size_t kl, vl;
    while (store_iter_next(it, &k, &kl, &val, &vl)) {
        uint32_t ver;
        if (node_keys_sealed_version(val, vl, &ver) == DM_OK && ver >= 1 && ver <= nk)
            v[ver - 1].records++;
    }
    rc = store_iter_status(it);
    store_iter_destroy(it);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = nk;
    return DM_OK;
}

int node_keys_reencrypt(node_keys_t *km, uint64_t *moved)
{
    *moved = 0;
    store_batch_t *b = NULL;
    store_iter_t *it = NULL;
    dm_buf pt = DM_BUF_INIT, sealed = DM_BUF_INIT;
    int rc = store_batch_create(&b);
    if (rc)
        return rc;
    if ((rc = store_iter_create(&it, km->store, STORE_CF_KEYS, SEALED_PREFIX, strlen(SEALED_PREFIX),
                                NULL, 0)))
        goto out;
    const uint8_t *k, *val;
    size_t kl, vl;
    uint64_t pending = 0;
    while (store_iter_next(it, &k, &kl, &val, &vl)) {
        uint32_t ver;
        if ((rc = node_keys_sealed_version(val, vl, &ver)))
            goto out;
        if (ver == node_keys_current_version(km))
            continue;
        dm_buf_reset(&pt);
        dm_buf_reset(&sealed);
        if ((rc = node_keys_open(km, val, vl, &pt)) ||
            (rc = node_keys_seal(km, pt.data, pt.len, &sealed)) ||
            (rc = store_batch_put(b, STORE_CF_KEYS, k, kl, sealed.data, sealed.len)))
            goto out;
        crypto_memzero(pt.data, pt.len);
        if (++pending == REENCRYPT_BATCH) {
            if ((rc = store_write(km->store, b)))
                goto out;
            *moved += pending;
            pending = 0;
            store_batch_clear(b);
        }
    }
    if ((rc = store_iter_status(it)))
        goto out;
    if (pending) {
        if ((rc = store_write(km->store, b)))
            goto out;
        *moved += pending;
    }
    dm_log(DM_LOG_INFO, "security", "re-encrypted %llu records under data key version %u",
           (unsigned long long)*moved, node_keys_current_version(km));
out:
    store_iter_destroy(it);
    store_batch_destroy(b);
    dm_buf_free_secure(&pt);
    dm_buf_free(&sealed);
    return rc;
}
