#ifndef DM_NODE_KEYS_H
#define DM_NODE_KEYS_H

#include "crypto_eth.h"
#include "crypto_rsa.h"
#include "dm_buf.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The key manager (DESIGN.md 3, 4). The master password derives the KEK with
 * PBKDF2-HMAC-SHA256 (16-byte salt, >= 600 000 iterations, recorded). The key
 * store is one JSON document in STORE_CF_KEYS shaped like the reference's
 * (salt, current_version, keys{version: Fernet token of the data key under the
 * KEK}) plus the KDF parameters, creation times, a password check value and a
 * MAC over the whole document (docs/STORAGE.md). Data keys are versioned Fernet
 * keys; sealed values carry their version so old data stays readable after a
 * rotation. The node's RSA and secp256k1 private keys are created at init and
 * kept only sealed; no function returns private key material.
 *
 * Threads: create/unlock/rotate/reencrypt block (PBKDF2, RocksDB) and run at
 * start-up or from a CLI command; seal/open and the accessors may be called
 * from any thread once unlocked: a rwlock guards the key set, and a rotation
 * (by the CLI, or by the daemon's loop thread for POST /v1/keys/rotate) writes
 * the new key store before installing the new version. Rotations themselves
 * must not run concurrently with each other.
 */
typedef struct node_keys node_keys_t;

#define NODE_KEYS_MIN_ITERATIONS 600000u
#define NODE_KEYS_MIN_PASSWORD 16
#define NODE_KEYS_ENV "KEY_MASTER_PASSWORD"

/**
 * Read the master password: from the file `password_file` when it is not
 * NULL/empty (it must not be readable by group or others: DM_EPERM), else from
 * the environment variable KEY_MASTER_PASSWORD, which is then wiped from the
 * process environment. A trailing newline is removed. The result is secret:
 * free with dm_buf_free_secure. DM_ENOPASS if there is none (or it is empty).
 */
int node_keys_password_load(dm_buf *out, const char *password_file);

/**
 * Initialise a new node in `store`: key store with data key v1, RSA key of
 * `rsa_bits`, secp256k1 account key, and the node's identity records in
 * STORE_CF_META (node id, SPKI, Ethereum address, signed address binding), all
 * in one atomic batch. DM_EEXIST if the store already holds a key store,
 * DM_EINVAL if the password is shorter than NODE_KEYS_MIN_PASSWORD or the
 * iteration count below the minimum. On success *out is the unlocked manager.
 */
int node_keys_create(node_keys_t **out, store_t *store, const char *password, size_t pwlen,
                     uint32_t iterations, unsigned rsa_bits);

/**
 * Unlock an existing key store. DM_ENOTINIT if there is none, DM_EBADPASS for a
 * wrong password (nothing is changed), DM_ETAMPER if the document, a key token,
 * a sealed private key or the identity records were altered.
 */
int node_keys_unlock(node_keys_t **out, store_t *store, const char *password, size_t pwlen);

/** Wipe every secret and free. NULL-safe. */
void node_keys_close(node_keys_t *km);

/** Borrowed for the manager's lifetime. */
const crypto_rsa_t *node_keys_rsa(const node_keys_t *km);
const char *node_keys_node_id(const node_keys_t *km);
void node_keys_eth_address(const node_keys_t *km, uint8_t addr[20]);
uint32_t node_keys_current_version(const node_keys_t *km);
/** Sign a 32-byte hash with the node's Ethereum account key. */
int node_keys_eth_sign(const node_keys_t *km, const uint8_t hash[32], crypto_eth_sig *sig);

/**
 * Sealed values: "DMS1" | version (u32 BE) | Fernet token under that data key.
 * seal appends to `out` with the current version; open appends the plaintext
 * (secret if the input was: free accordingly). open: DM_ETAMPER if the token
 * does not verify, DM_ECORRUPT if the framing is wrong or the version unknown.
 */
int node_keys_seal(const node_keys_t *km, const void *pt, size_t n, dm_buf *out);
int node_keys_open(const node_keys_t *km, const void *sealed, size_t n, dm_buf *out);
/** The data-key version a sealed value was written under (DM_ECORRUPT if malformed). */
int node_keys_sealed_version(const void *sealed, size_t n, uint32_t *version);

/** Add a new data key version and make it current. Old versions stay readable. */
int node_keys_rotate(node_keys_t *km, uint32_t *new_version);

typedef struct {
    uint32_t version;
    uint64_t created;  /* Unix time */
    bool current;
    uint64_t records;  /* sealed records currently under this version */
} node_keys_version_info;

/** List the data-key versions (ascending). *out is malloc'd: free(). */
int node_keys_list(const node_keys_t *km, node_keys_version_info **out, size_t *n);

/**
 * Re-encrypt every sealed record not under the current version, in atomic
 * batches of at most 256 records. Safe to interrupt and run again.
 * *moved counts the records rewritten.
 */
int node_keys_reencrypt(node_keys_t *km, uint64_t *moved);

/** KDF iteration count recorded in the key store. */
uint32_t node_keys_iterations(const node_keys_t *km);

/**
 * Identity read without the password (public records only, for `dmnode id`).
 * node_id: 64 hex + NUL; eth: 20 bytes.
 */
int node_keys_identity(store_t *store, char node_id[65], uint8_t eth[20]);

#endif
