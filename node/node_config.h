#ifndef DM_NODE_CONFIG_H
#define DM_NODE_CONFIG_H

#include "dm_buf.h"
#include "dm_log.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Strict node configuration (DESIGN.md 13, 14). Sources, applied in order so
 * that the later wins: built-in secure defaults, the config file (a TOML
 * subset, see docs/CONFIG.md), environment variables DMNODE_<SECTION>_<KEY>
 * (dots become '_', upper case: p2p.listen -> DMNODE_P2P_LISTEN), flags
 * --section.key=value. An unknown key, a wrong type, an out-of-range value or
 * a non-loopback internal API bind is a hard failure whose message names the
 * key and where the value came from ("file F line N", "environment VAR",
 * "flag --k"). Single-threaded (start-up only).
 */

typedef struct {
    char host[256]; /* literal IPv4/IPv6 address or host name, no brackets */
    uint16_t port;
} node_hostport;

/* Number of configuration keys (the size of the schema table in node_config.c). */
#define NODE_CONFIG_NKEYS 29

typedef struct {
    char *datadir;                  /* datadir (required by commands that need state) */
    char *network_id;               /* network.id */
    node_hostport p2p_listen;       /* p2p.listen, default 0.0.0.0:8000 */
    node_hostport *p2p_bootstrap;   /* p2p.bootstrap (list of host:port) */
    size_t p2p_bootstrap_len;
    char (*p2p_allowlist)[65];      /* p2p.allowlist (list of 64-hex node ids); empty = open */
    size_t p2p_allowlist_len;
    uint32_t p2p_max_inbound;       /* p2p.max_inbound */
    uint32_t p2p_max_outbound;      /* p2p.max_outbound */
    uint32_t p2p_ban_seconds;       /* p2p.ban_seconds */
    node_hostport api_internal_listen; /* api.internal.listen, loopback only */
    char *api_internal_token_file;  /* api.internal.token_file ("" = <datadir>/admin.token) */
    node_hostport api_external_listen; /* api.external.listen */
    uint32_t api_internal_rate_per_sec; /* api.internal.rate_per_sec, token-bucket refill */
    uint32_t api_internal_rate_burst;   /* api.internal.rate_burst, bucket size */
    uint32_t api_external_rate_per_sec; /* api.external.rate_per_sec */
    uint32_t api_external_rate_burst;   /* api.external.rate_burst */
    char *chain_rpc_url;            /* chain.rpc_url ("" = anchoring disabled) */
    uint64_t chain_chain_id;        /* chain.chain_id (0 = not set) */
    char *chain_contract;           /* chain.contract ("" or 0x + 40 hex) */
    uint32_t chain_batch_max_events;   /* chain.batch_max_events, 1..4096 */
    uint32_t chain_batch_max_delay_ms; /* chain.batch_max_delay_ms */
    uint32_t chain_confirmations;      /* chain.confirmations */
    uint32_t chain_max_fee_gwei;       /* chain.max_fee_gwei */
    bool storage_sync;              /* storage.sync */
    dm_log_level log_level;         /* log.level */
    uint32_t audit_retention_days;  /* audit.retention_days (default 90) */
    uint32_t audit_head_anchor_interval_s; /* audit.head_anchor_interval_s */
    char *keys_master_password_file; /* keys.master_password_file ("" = use KEY_MASTER_PASSWORD) */
    uint32_t keys_rsa_bits;         /* keys.rsa_bits: 2048 or 3072 */
    uint32_t keys_kdf_iterations;   /* keys.kdf_iterations >= 600000 */
    /* private: where each key got its value ("file F line N", "environment V",
     * "flag --k"; NULL = built-in default), for messages. Use node_config_origin(). */
    char *origins[NODE_CONFIG_NKEYS];
} node_config;

/** Fill with the secure defaults (`cfg` may be uninitialised memory). DM_ENOMEM. */
int node_config_init(node_config *cfg);
/** Free everything `cfg` owns and zero it. NULL-safe; idempotent. */
void node_config_free(node_config *cfg);

/** true if `key` ("p2p.listen") is a known configuration key. */
bool node_config_is_key(const char *key);

/** Apply a config file. DM_ENOTFOUND if unreadable, DM_ECONFIG with a message in `err`. */
int node_config_load_file(node_config *cfg, const char *path, dm_buf *err);
/** Parse config text already in memory (`name` is used in messages). Bounded: rejects
 *  files over 1 MiB, lines over 4 KiB, lists over 256 items. */
int node_config_load_text(node_config *cfg, const char *text, size_t n, const char *name,
                          dm_buf *err);
/** Apply every DMNODE_* variable in `envp` (NULL-terminated). A DMNODE_* variable that
 *  names no key is an error, except DMNODE_CONFIG (the config file path). */
int node_config_load_env(node_config *cfg, char *const *envp, dm_buf *err);
/** Set one key from text (flag or environment form; lists are comma-separated).
 *  `origin` describes the source for messages. */
int node_config_set(node_config *cfg, const char *key, const char *value, const char *origin,
                    dm_buf *err);
/** Cross-field checks after all sources are applied (internal API loopback, …). */
int node_config_validate(const node_config *cfg, dm_buf *err);
/** Append the effective configuration in file syntax (no secrets are part of it). */
int node_config_dump(const node_config *cfg, dm_buf *out);

/*
 * Notes common to the functions above: messages are appended to `err` (may be
 * NULL) as "config: <key>: <problem> (<origin>)"; every rejection returns
 * DM_ECONFIG (DM_ENOMEM on allocation failure). The load functions and
 * node_config_set are all-or-nothing: on error `cfg` is left unchanged.
 */

/** Where `key` got its current value: "file F line N", "environment DMNODE_X", "flag --k",
 *  or "default". Borrowed from `cfg` (valid until it changes). "unknown key" if not a key. */
const char *node_config_origin(const node_config *cfg, const char *key);
/** Number of keys, and the i-th key name in schema order (NULL when i is out of range). */
size_t node_config_key_count(void);
const char *node_config_key_name(size_t i);
/** Append the key reference as a Markdown table (key, type, default, range, environment
 *  variable, description): generated from the schema, embedded in docs/CONFIG.md. */
int node_config_describe(dm_buf *out);
/** Format as "host:port", or "[v6]:port" when the host contains ':'. `out` of size >= 264. */
void node_hostport_format(const node_hostport *hp, char *out, size_t n);
/** true if the host is a loopback address (127.0.0.0/8, ::1, "localhost"). */
bool node_hostport_is_loopback(const node_hostport *hp);
/** Parse "host:port" or "[v6]:port". The host is a literal IPv4 address, an IPv6 address
 *  in brackets, or a DNS name (letters, digits, '-', '.'); the port is 1..65535 (the
 *  *.listen keys also accept 0, "any free port", through node_config_set). DM_EINVAL if
 *  malformed, DM_ERANGE if the port is out of range. */
int node_hostport_parse(node_hostport *out, const char *s);

#endif
