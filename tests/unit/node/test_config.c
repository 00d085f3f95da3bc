/* Unit tests for node/node_config.c: strict configuration (DESIGN.md 13, 14). */
#include "dm_test.h"

#include "groups.h"

#include "dm_buf.h"
#include "dm_err.h"
#include "node_config.h"

#define NODE_ID_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define NODE_ID_B "FFEEDDCCBBAA99887766554433221100FFEEDDCCBBAA99887766554433221100"

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected \"%s\" in message:\n  %s", needle, hay);
}

static char *dump_str(const node_config *cfg)
{
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(node_config_dump(cfg, &b), DM_OK);
    dm_buf_cstr(&b);
    size_t n;
    return (char *)dm_buf_steal(&b, &n);
}

/* Load `text` as file "t.toml"; expect DM_ECONFIG with every non-NULL needle in the message,
 * and the configuration unchanged. */
static void expect_text_error(const char *text, size_t n, const char *n1, const char *n2)
{
    node_config cfg;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    char *before = dump_str(&cfg);
    dm_buf err = DM_BUF_INIT;
    int rc = node_config_load_text(&cfg, text, n, "t.toml", &err);
    if (rc != DM_ECONFIG)
        fail_msg("rc %d (%s) for text:\n%.*s\nmessage: %s", rc, dm_err_name(rc), (int)n, text,
                 dm_buf_cstr(&err));
    const char *msg = dm_buf_cstr(&err);
    assert_contains(msg, "config: ");
    if (n1)
        assert_contains(msg, n1);
    if (n2)
        assert_contains(msg, n2);
    char *after = dump_str(&cfg);
    assert_string_equal(before, after); /* all-or-nothing */
    free(before);
    free(after);
    dm_buf_free(&err);
    node_config_free(&cfg);
}

static void expect_set_error(const char *key, const char *value, const char *n1, const char *n2)
{
    node_config cfg;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    char *before = dump_str(&cfg);
    dm_buf err = DM_BUF_INIT;
    char origin[128];
    snprintf(origin, sizeof origin, "flag --%s", key);
    int rc = node_config_set(&cfg, key, value, origin, &err);
    if (rc != DM_ECONFIG)
        fail_msg("rc %d for %s=%s: %s", rc, key, value, dm_buf_cstr(&err));
    const char *msg = dm_buf_cstr(&err);
    assert_contains(msg, origin);
    if (n1)
        assert_contains(msg, n1);
    if (n2)
        assert_contains(msg, n2);
    char *after = dump_str(&cfg);
    assert_string_equal(before, after);
    free(before);
    free(after);
    dm_buf_free(&err);
    node_config_free(&cfg);
}

static void test_defaults(void **state)
{
    (void)state;
    node_config cfg;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    assert_string_equal(cfg.datadir, "");
    assert_string_equal(cfg.network_id, "datamgmt-local");
    assert_string_equal(cfg.p2p_listen.host, "0.0.0.0");
    assert_int_equal(cfg.p2p_listen.port, 8000);
    assert_int_equal(cfg.p2p_bootstrap_len, 0);
    assert_null(cfg.p2p_bootstrap);
    assert_int_equal(cfg.p2p_allowlist_len, 0);
    assert_int_equal(cfg.p2p_max_inbound, 32);
    assert_int_equal(cfg.p2p_max_outbound, 8);
    assert_int_equal(cfg.p2p_ban_seconds, 3600);
    assert_string_equal(cfg.api_internal_listen.host, "127.0.0.1");
    assert_int_equal(cfg.api_internal_listen.port, 8080);
    assert_string_equal(cfg.api_internal_token_file, "");
    assert_int_equal(cfg.api_internal_rate_per_sec, 50);
    assert_int_equal(cfg.api_internal_rate_burst, 100);
    assert_string_equal(cfg.api_external_listen.host, "127.0.0.1");
    assert_int_equal(cfg.api_external_listen.port, 8081);
    assert_int_equal(cfg.api_external_rate_per_sec, 10);
    assert_int_equal(cfg.api_external_rate_burst, 20);
    assert_string_equal(cfg.chain_rpc_url, "");
    assert_int_equal(cfg.chain_chain_id, 0);
    assert_string_equal(cfg.chain_contract, "");
    assert_int_equal(cfg.chain_batch_max_events, 256);
    assert_int_equal(cfg.chain_batch_max_delay_ms, 2000);
    assert_true(cfg.storage_sync);
    assert_int_equal(cfg.log_level, DM_LOG_INFO);
    assert_string_equal(cfg.keys_master_password_file, "");
    assert_int_equal(cfg.keys_rsa_bits, 2048);
    assert_int_equal(cfg.keys_kdf_iterations, 600000);
    assert_true(node_hostport_is_loopback(&cfg.api_internal_listen));

    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_validate(&cfg, &err), DM_OK);
    assert_int_equal(err.len, 0);
    for (size_t i = 0; i < node_config_key_count(); i++) {
        const char *k = node_config_key_name(i);
        assert_true(node_config_is_key(k));
        assert_string_equal(node_config_origin(&cfg, k), "default");
    }
    assert_null(node_config_key_name(node_config_key_count()));
    assert_int_equal(node_config_key_count(), NODE_CONFIG_NKEYS);
    assert_false(node_config_is_key("p2p"));
    assert_false(node_config_is_key("P2P.LISTEN"));
    assert_false(node_config_is_key(""));
    assert_string_equal(node_config_origin(&cfg, "nope"), "unknown key");
    node_config_free(&cfg);
    node_config_free(&cfg); /* idempotent */
    node_config_free(NULL);
    dm_buf_free(&err);
}

static const char FULL[] =
    "# a complete configuration\n"
    "datadir = \"/var/lib/dmnode\"   # top level\n"
    "\n"
    "[network]\n"
    "id = \"prod.net_1-a\"\n"
    "[p2p]\n"
    "listen = \"[::]:9000\"\n"
    "bootstrap = [\"10.0.0.2:8000\", \"[2001:db8::1]:8000\", \"node-3.example.org:8000\",]\n"
    "allowlist = [\"" NODE_ID_A "\", \"" NODE_ID_B "\"]\n"
    "max_inbound = 100\n"
    "max_outbound = 0\n"
    "ban_seconds = 2592000\n"
    "\t[api.internal]  # indented header\n"
    "  listen = \"[::1]:0\"\n"
    "token_file = \"/etc/dmnode/admin.token\"\n"
    "rate_per_sec = 500\n"
    "rate_burst = 1000\n"
    "[api.external]\n"
    "listen=\"0.0.0.0:8443\"\n"
    "rate_per_sec = 1\n"
    "rate_burst = 1\n"
    "[chain]\r\n"
    "rpc_url = \"https://rpc.example.org/v1\"\r\n"
    "chain_id = 9007199254740992\n"
    "contract = \"0x5FbDB2315678afecb367f032d93F642f64180aa3\"\n"
    "batch_max_events = 4096\n"
    "batch_max_delay_ms = 0\n"
    "[storage]\n"
    "sync = false\n"
    "[log]\n"
    "level = \"warning\"\n"
    "[keys]\n"
    "master_password_file = \"/run/secrets/dm \\\"pw\\\"\\\\x\"\n"
    "rsa_bits = 3072\n"
    "kdf_iterations = 100000000\n";

static void check_full(const node_config *cfg)
{
    assert_string_equal(cfg->datadir, "/var/lib/dmnode");
    assert_string_equal(cfg->network_id, "prod.net_1-a");
    assert_string_equal(cfg->p2p_listen.host, "::");
    assert_int_equal(cfg->p2p_listen.port, 9000);
    assert_int_equal(cfg->p2p_bootstrap_len, 3);
    assert_string_equal(cfg->p2p_bootstrap[0].host, "10.0.0.2");
    assert_int_equal(cfg->p2p_bootstrap[0].port, 8000);
    assert_string_equal(cfg->p2p_bootstrap[1].host, "2001:db8::1");
    assert_string_equal(cfg->p2p_bootstrap[2].host, "node-3.example.org");
    assert_int_equal(cfg->p2p_allowlist_len, 2);
    assert_string_equal(cfg->p2p_allowlist[0], NODE_ID_A);
    assert_string_equal(cfg->p2p_allowlist[1],
                        "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100");
    assert_int_equal(cfg->p2p_max_inbound, 100);
    assert_int_equal(cfg->p2p_max_outbound, 0);
    assert_int_equal(cfg->p2p_ban_seconds, 2592000);
    assert_string_equal(cfg->api_internal_listen.host, "::1");
    assert_int_equal(cfg->api_internal_listen.port, 0);
    assert_string_equal(cfg->api_internal_token_file, "/etc/dmnode/admin.token");
    assert_int_equal(cfg->api_internal_rate_per_sec, 500);
    assert_int_equal(cfg->api_internal_rate_burst, 1000);
    assert_string_equal(cfg->api_external_listen.host, "0.0.0.0");
    assert_int_equal(cfg->api_external_listen.port, 8443);
    assert_int_equal(cfg->api_external_rate_per_sec, 1);
    assert_string_equal(cfg->chain_rpc_url, "https://rpc.example.org/v1");
    assert_true(cfg->chain_chain_id == (UINT64_C(1) << 53));
    assert_string_equal(cfg->chain_contract, "0x5FbDB2315678afecb367f032d93F642f64180aa3");
    assert_int_equal(cfg->chain_batch_max_events, 4096);
    assert_int_equal(cfg->chain_batch_max_delay_ms, 0);
    assert_false(cfg->storage_sync);
    assert_int_equal(cfg->log_level, DM_LOG_WARNING);
    assert_string_equal(cfg->keys_master_password_file, "/run/secrets/dm \"pw\"\\x");
    assert_int_equal(cfg->keys_rsa_bits, 3072);
    assert_int_equal(cfg->keys_kdf_iterations, 100000000);
}

static void test_full_file(void **state)
{
    (void)state;
    node_config cfg;
    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    int rc = node_config_load_text(&cfg, FULL, strlen(FULL), "/etc/dmnode.toml", &err);
    if (rc)
        fail_msg("%s", dm_buf_cstr(&err));
    check_full(&cfg);
    /* p2p.max_outbound 0 with bootstrap peers is a cross-field error */
    assert_int_equal(node_config_validate(&cfg, &err), DM_ECONFIG);
    assert_contains(dm_buf_cstr(&err),
                    "config: p2p.max_outbound: is 0 but p2p.bootstrap (file /etc/dmnode.toml "
                    "line 8) lists peers to dial (file /etc/dmnode.toml line 11)");
    dm_buf_reset(&err);
    assert_int_equal(
        node_config_set(&cfg, "p2p.max_outbound", "4", "flag --p2p.max_outbound", &err), DM_OK);
    rc = node_config_validate(&cfg, &err);
    if (rc)
        fail_msg("%s", dm_buf_cstr(&err));
    assert_string_equal(node_config_origin(&cfg, "datadir"), "file /etc/dmnode.toml line 2");
    assert_string_equal(node_config_origin(&cfg, "api.internal.listen"),
                        "file /etc/dmnode.toml line 14");
    assert_string_equal(node_config_origin(&cfg, "chain.rpc_url"), "file /etc/dmnode.toml line 23");
    assert_string_equal(node_config_origin(&cfg, "p2p.max_outbound"), "flag --p2p.max_outbound");

    /* a second file applies over the first, key by key */
    const char *more = "[log]\nlevel = \"debug\"\n";
    assert_int_equal(node_config_load_text(&cfg, more, strlen(more), "b.toml", &err), DM_OK);
    assert_int_equal(cfg.log_level, DM_LOG_DEBUG);
    assert_int_equal(cfg.keys_rsa_bits, 3072);
    assert_string_equal(node_config_origin(&cfg, "log.level"), "file b.toml line 2");

    /* empty text, comments only, a BOM */
    assert_int_equal(node_config_load_text(&cfg, "", 0, "e", &err), DM_OK);
    const char *c = "\xef\xbb\xbf# only a comment \xc3\xa9\n\n   \n# another\t\n";
    assert_int_equal(node_config_load_text(&cfg, c, strlen(c), "c", &err), DM_OK);
    assert_int_equal(err.len, 0);
    node_config_free(&cfg);
    dm_buf_free(&err);
}

static void test_precedence(void **state)
{
    (void)state;
    node_config cfg;
    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    const char *file = "[p2p]\nlisten = \"127.0.0.1:7001\"\nmax_inbound = 5\n"
                       "[log]\nlevel = \"error\"\n";
    assert_int_equal(node_config_load_text(&cfg, file, strlen(file), "f.toml", &err), DM_OK);
    char *envp[] = {"PATH=/usr/bin",
                    "DMNODE_CONFIG=/etc/whatever.toml",
                    "DMNODE_P2P_LISTEN=127.0.0.1:7002",
                    "DMNODE_P2P_MAX_INBOUND=6",
                    "DMNODE_CHAIN_BATCH_MAX_EVENTS=17",
                    "DMNODE_P2P_BOOTSTRAP=10.0.0.1:1, 10.0.0.2:2",
                    "DMNODE_DATADIR=/srv/dm",
                    "dmnode_lower=ignored",
                    NULL};
    int rc = node_config_load_env(&cfg, envp, &err);
    if (rc)
        fail_msg("%s", dm_buf_cstr(&err));
    /* flag over environment over file */
    assert_int_equal(
        node_config_set(&cfg, "p2p.listen", "127.0.0.1:7003", "flag --p2p.listen", &err), DM_OK);
    assert_string_equal(cfg.p2p_listen.host, "127.0.0.1");
    assert_int_equal(cfg.p2p_listen.port, 7003);
    assert_string_equal(node_config_origin(&cfg, "p2p.listen"), "flag --p2p.listen");
    assert_int_equal(cfg.p2p_max_inbound, 6);
    assert_string_equal(node_config_origin(&cfg, "p2p.max_inbound"),
                        "environment DMNODE_P2P_MAX_INBOUND");
    assert_int_equal(cfg.log_level, DM_LOG_ERROR);
    assert_string_equal(node_config_origin(&cfg, "log.level"), "file f.toml line 5");
    assert_int_equal(cfg.chain_batch_max_events, 17);
    assert_string_equal(cfg.datadir, "/srv/dm");
    assert_int_equal(cfg.p2p_bootstrap_len, 2);
    assert_int_equal(cfg.p2p_bootstrap[1].port, 2);
    assert_string_equal(node_config_origin(&cfg, "storage.sync"), "default");

    /* raw-text forms: empty string = empty list, bools exactly true/false */
    assert_int_equal(node_config_set(&cfg, "p2p.bootstrap", "", "flag --p2p.bootstrap", &err),
                     DM_OK);
    assert_int_equal(cfg.p2p_bootstrap_len, 0);
    assert_null(cfg.p2p_bootstrap);
    assert_int_equal(node_config_set(&cfg, "storage.sync", "false", "flag", &err), DM_OK);
    assert_false(cfg.storage_sync);
    assert_int_equal(node_config_set(&cfg, "p2p.allowlist", NODE_ID_A "," NODE_ID_B, "f", &err),
                     DM_OK);
    assert_int_equal(cfg.p2p_allowlist_len, 2);
    assert_int_equal(node_config_set(&cfg, "datadir", "/srv/d\xc3\xa9ta", NULL, &err), DM_OK);
    assert_string_equal(cfg.datadir, "/srv/d\xc3\xa9ta");
    assert_int_equal(node_config_set(&cfg, "datadir", "", NULL, &err), DM_OK);
    assert_string_equal(cfg.datadir, "");
    assert_int_equal(err.len, 0);

    /* a rejected environment leaves everything as it was */
    char *bad_env[] = {"DMNODE_LOG_LEVEL=debug", "DMNODE_P2P_MAX_INBOUND=99999", NULL};
    assert_int_equal(node_config_load_env(&cfg, bad_env, &err), DM_ECONFIG);
    assert_int_equal(cfg.log_level, DM_LOG_ERROR);
    assert_int_equal(cfg.p2p_max_inbound, 6);
    assert_contains(dm_buf_cstr(&err), "config: p2p.max_inbound: 99999 is out of range 0..1024 "
                                       "(environment DMNODE_P2P_MAX_INBOUND)");
    assert_int_equal(node_config_load_env(&cfg, NULL, &err), DM_OK);
    node_config_free(&cfg);
    dm_buf_free(&err);
}

/* Every environment variable name follows DMNODE_<KEY upper, '.' -> '_'> and is unique. */
static void test_env_names(void **state)
{
    (void)state;
    size_t n = node_config_key_count();
    for (size_t i = 0; i < n; i++) {
        const char *k = node_config_key_name(i);
        char var[128], env[256];
        size_t j = 0;
        j += (size_t)snprintf(var, sizeof var, "DMNODE_");
        for (const char *p = k; *p; p++)
            var[j++] = *p == '.' ? '_' : (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
        var[j] = '\0';
        for (size_t m = 0; m < i; m++) {
            char other[128];
            size_t o = (size_t)snprintf(other, sizeof other, "DMNODE_");
            for (const char *p = node_config_key_name(m); *p; p++)
                other[o++] = *p == '.' ? '_' : (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
            other[o] = '\0';
            assert_string_not_equal(var, other);
        }
        /* a value invalid for every key: the message must name this key and variable */
        snprintf(env, sizeof env, "%s=\x01", var);
        char *envp[] = {env, NULL};
        node_config cfg;
        dm_buf err = DM_BUF_INIT;
        assert_int_equal(node_config_init(&cfg), DM_OK);
        assert_int_equal(node_config_load_env(&cfg, envp, &err), DM_ECONFIG);
        char want[256];
        snprintf(want, sizeof want, "config: %s: ", k);
        assert_contains(dm_buf_cstr(&err), want);
        snprintf(want, sizeof want, "(environment %s)", var);
        assert_contains(dm_buf_cstr(&err), want);
        node_config_free(&cfg);
        dm_buf_free(&err);
    }
    struct {
        const char *var, *n1, *n2;
    } bad[] = {
        {"DMNODE_P2P_LISTN=1.2.3.4:5", "unknown configuration variable DMNODE_P2P_LISTN",
         "did you mean DMNODE_P2P_LISTEN?"},
        {"DMNODE_MAX_INBOUND=3", "unknown configuration variable DMNODE_MAX_INBOUND",
         "did you mean DMNODE_P2P_MAX_INBOUND?"},
        {"DMNODE_FOO=1", "unknown configuration variable DMNODE_FOO (environment)", NULL},
        {"DMNODE_p2p_listen=1.2.3.4:5", "unknown configuration variable DMNODE_p2p_listen",
         "did you mean DMNODE_P2P_LISTEN?"},
        {"DMNODE_=x", "unknown configuration variable DMNODE_ ", NULL},
        {"DMNODE_STORAGE_SYNC=yes",
         "config: storage.sync: \"yes\" is not true or false "
         "(environment DMNODE_STORAGE_SYNC)",
         NULL},
        {"DMNODE_P2P_BOOTSTRAP=1.2.3.4:5,,1.2.3.4:6", "config: p2p.bootstrap: empty item 2",
         "(environment DMNODE_P2P_BOOTSTRAP)"},
        {"DMNODE_API_INTERNAL_LISTEN=0.0.0.0:8080",
         "config: api.internal.listen: ", "not a loopback address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", bad[i].var);
        char *envp[] = {"DMNODE_LOG_LEVEL=debug", buf, NULL};
        node_config cfg;
        dm_buf err = DM_BUF_INIT;
        assert_int_equal(node_config_init(&cfg), DM_OK);
        assert_int_equal(node_config_load_env(&cfg, envp, &err), DM_ECONFIG);
        assert_contains(dm_buf_cstr(&err), bad[i].n1);
        if (bad[i].n2)
            assert_contains(dm_buf_cstr(&err), bad[i].n2);
        assert_int_equal(cfg.log_level, DM_LOG_INFO);
        node_config_free(&cfg);
        dm_buf_free(&err);
    }
}

static void test_file_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text, *n1, *n2;
    } cases[] = {
        /* unknown keys, with and without a suggestion */
        {"[p2p]\nlisten = \"1.2.3.4:1\"\nlisen = \"1.2.3.4:2\"\n",
         "config: p2p.lisen: unknown key, did you mean p2p.listen? (file t.toml line 3)", NULL},
        {"[p2p]\nmax_inbund = 3\n", "p2p.max_inbund: unknown key, did you mean p2p.max_inbound?",
         "(file t.toml line 2)"},
        {"[chain]\nbatch_max_event = 3\n", "did you mean chain.batch_max_events?", NULL},
        {"[p2p]\ncolour = \"red\"\n", "config: p2p.colour: unknown key (docs/CONFIG.md", NULL},
        {"datadir = \"/x\"\n[keys]\nrsa = 1\n", "keys.rsa: unknown key", "line 3"},
        {"[p2p]\ndatadir = \"/x\"\n", "datadir is a top-level key and must come before",
         "(file t.toml line 2)"},
        {"listen = \"1.2.3.4:5\"\n", "config: listen: unknown key", NULL},
        /* sections */
        {"[p2q]\nlisten = \"1.2.3.4:1\"\n",
         "unknown section [p2q], did you mean [p2p]? (file t.toml line 1)", NULL},
        {"[api]\n", "unknown section [api]", NULL},
        {"[nonsense]\n", "unknown section [nonsense] (file t.toml line 1)", NULL},
        {"[p2p]\nmax_inbound = 1\n[chain]\n[p2p]\n",
         "section [p2p] appears twice (first at "
         "line 1) (file t.toml line 4)",
         NULL},
        {"[[p2p]]\n", "arrays of tables", NULL},
        {"[p2p\n", "malformed section header [p2p", NULL},
        {"[p2p..x]\n", "malformed section header", NULL},
        {"[p2p] x\n", "unexpected text after the section header: x", NULL},
        /* duplicates */
        {"[p2p]\nmax_inbound = 1\n\nmax_inbound = 2\n",
         "config: p2p.max_inbound: set twice in the file (first at line 2) (file t.toml line 4)",
         NULL},
        {"datadir = \"/a\"\ndatadir = \"/a\"\n", "datadir: set twice", NULL},
        /* wrong types */
        {"[p2p]\nmax_inbound = \"32\"\n",
         "config: p2p.max_inbound: expected an integer, e.g. 32, got a string (file t.toml line 2)",
         NULL},
        {"[p2p]\nlisten = 8000\n",
         "p2p.listen: expected a \"double-quoted string\", got an "
         "integer",
         NULL},
        {"[storage]\nsync = \"true\"\n", "storage.sync: expected true or false, got a string",
         NULL},
        {"[storage]\nsync = 1\n", "storage.sync: expected true or false, got an integer", NULL},
        {"[p2p]\nbootstrap = \"1.2.3.4:5\"\n", "p2p.bootstrap: expected a list", NULL},
        {"[log]\nlevel = [\"info\"]\n",
         "log.level: expected a \"double-quoted string\", got a "
         "list",
         NULL},
        {"[p2p]\nmax_inbound = 3.5\n", "p2p.max_inbound: invalid value 3.5", NULL},
        {"[p2p]\nmax_inbound = 1_000\n", "invalid value 1_000", NULL},
        {"[p2p]\nmax_inbound = 0x10\n", "invalid value 0x10", NULL},
        {"[p2p]\nmax_inbound = -1\n", "\"-1\" is not an unsigned decimal integer", NULL},
        {"[p2p]\nmax_inbound = 010\n", "\"010\" is not an unsigned decimal integer", NULL},
        {"[p2p]\nlisten = 0.0.0.0:8000\n",
         "invalid value 0.0.0.0:8000: expected a "
         "\"double-quoted string\"",
         NULL},
        {"[storage]\nsync = True\n", "invalid value True", NULL},
        {"[p2p]\nlisten = '1.2.3.4:5'\n", "single-quoted strings are not supported", NULL},
        {"[p2p]\nlisten = {a = 1}\n", "inline tables are not supported", NULL},
        {"[p2p]\nlisten =\n", "p2p.listen: missing value", NULL},
        {"[p2p]\nlisten \"x\"\n", "p2p.listen: expected '=' after the key, found \"x\"", NULL},
        {"[p2p]\nlisten\n", "expected '=' after the key, found end of line", NULL},
        {"[p2p]\np2p.listen = \"1.2.3.4:5\"\n", "dotted key p2p.listen is not supported", NULL},
        {"p2p.listen = \"1.2.3.4:5\"\n", "dotted key p2p.listen", NULL},
        {"\"datadir\" = \"/x\"\n", "quoted keys are not supported", NULL},
        {"= 3\n", "expected key = value, [section] or # comment, found = 3", NULL},
        {"datadir = \"/x\" \"/y\"\n", "datadir: unexpected text after the value: \"/y\"", NULL},
        {"datadir = \"/x\" # ok\n[log]\nlevel = \"info\" extra\n",
         "log.level: unexpected text after the value: extra (file t.toml line 3)", NULL},
        /* out of range */
        {"[p2p]\nmax_inbound = 1025\n",
         "config: p2p.max_inbound: 1025 is out of range 0..1024 (file t.toml line 2)", NULL},
        {"[p2p]\nmax_outbound = 257\n", "p2p.max_outbound: 257 is out of range 0..256", NULL},
        {"[p2p]\nban_seconds = 0\n", "p2p.ban_seconds: 0 is out of range 1..2592000", NULL},
        {"[p2p]\nban_seconds = 2592001\n", "out of range 1..2592000", NULL},
        {"[chain]\nchain_id = 9007199254740993\n",
         "chain.chain_id: 9007199254740993 is out of "
         "range 0..9007199254740992",
         NULL},
        {"[chain]\nchain_id = 99999999999999999999999\n", "out of range", NULL},
        {"[chain]\nbatch_max_events = 0\n", "chain.batch_max_events: 0 is out of range 1..4096",
         NULL},
        {"[chain]\nbatch_max_events = 4097\n", "out of range 1..4096", NULL},
        {"[chain]\nbatch_max_delay_ms = 3600001\n", "out of range 0..3600000", NULL},
        {"[keys]\nrsa_bits = 4096\n",
         "keys.rsa_bits: 4096 is not supported: must be 2048 or "
         "3072",
         NULL},
        {"[keys]\nrsa_bits = 1024\n", "must be 2048 or 3072", NULL},
        {"[keys]\nkdf_iterations = 599999\n",
         "keys.kdf_iterations: 599999 is out of range "
         "600000..100000000",
         NULL},
        {"[api.internal]\nrate_burst = 0\n", "api.internal.rate_burst: 0 is out of range", NULL},
        /* strings and enums */
        {"[network]\nid = \"\"\n", "network.id: \"\" is not 1..64 characters", NULL},
        {"[network]\nid = \"a b\"\n", "network.id: \"a b\" is not 1..64", NULL},
        {"[network]\nid = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n",
         "is not 1..64 characters", NULL},
        {"[log]\nlevel = \"verbose\"\n",
         "log.level: \"verbose\" is not one of debug, info, "
         "warning, error",
         NULL},
        {"[log]\nlevel = \"INFO\"\n", "\"INFO\" is not one of", NULL},
        {"[chain]\ncontract = \"0x1234\"\n",
         "chain.contract: \"0x1234\" is not an Ethereum "
         "address",
         NULL},
        {"[chain]\ncontract = \"5FbDB2315678afecb367f032d93F642f64180aa3\"\n",
         "is not an Ethereum address", NULL},
        {"[chain]\ncontract = \"0x5FbDB2315678afecb367f032d93F642f64180aaZ\"\n",
         "is not an Ethereum address", NULL},
        {"[chain]\nrpc_url = \"ftp://x\"\n",
         "chain.rpc_url: \"ftp://x\" is not an http:// or "
         "https:// URL",
         NULL},
        {"[chain]\nrpc_url = \"localhost:8545\"\n", "is not an http:// or https:// URL", NULL},
        {"[chain]\nrpc_url = \"http://\"\n", "has no host", NULL},
        {"[chain]\nrpc_url = \"http://a b\"\n", "contains a space", NULL},
        {"[chain]\nrpc_url = \"https://user:pw@rpc.example\"\n", "must not contain credentials",
         NULL},
        /* host:port */
        {"[p2p]\nlisten = \"1.2.3.4\"\n",
         "p2p.listen: \"1.2.3.4\" is not a valid host:port: "
         "missing :port (file t.toml line 2)",
         NULL},
        {"[p2p]\nlisten = \"1.2.3.4:65536\"\n", "port out of range 0..65535", NULL},
        {"[p2p]\nlisten = \"1.2.3.4:x\"\n", "invalid port", NULL},
        {"[p2p]\nlisten = \"::1:8000\"\n", "IPv6 addresses must be written in brackets", NULL},
        {"[p2p]\nlisten = \"[::1:8000\"\n", "missing ']'", NULL},
        {"[p2p]\nlisten = \"[::1]8000\"\n", "expected [IPv6]:port", NULL},
        {"[p2p]\nlisten = \"[zz::1]:8000\"\n", "invalid IPv6 address", NULL},
        {"[p2p]\nlisten = \"999.1.1.1:8000\"\n", "invalid IPv4 address", NULL},
        {"[p2p]\nlisten = \"1.2.3:8000\"\n", "invalid IPv4 address", NULL},
        {"[p2p]\nlisten = \":8000\"\n", "missing host", NULL},
        {"[p2p]\nlisten = \"-bad.example:8000\"\n", "invalid host", NULL},
        {"[p2p]\nlisten = \"a_b.example:8000\"\n", "invalid host", NULL},
        {"[p2p]\nlisten = \"\"\n", "p2p.listen: \"\" is not a valid host:port: empty", NULL},
        {"[p2p]\nbootstrap = [\"1.2.3.4:0\"]\n",
         "p2p.bootstrap: item 1: \"1.2.3.4:0\" is not a valid host:port: port out of range "
         "1..65535",
         NULL},
        {"[p2p]\nbootstrap = [\"1.2.3.4:1\", \"bad\"]\n", "p2p.bootstrap: item 2: \"bad\"", NULL},
        {"[p2p]\nbootstrap = [\"1.2.3.4:1\", \"1.2.3.4:1\"]\n",
         "item 2: \"1.2.3.4:1\" is listed twice", NULL},
        /* public binds of the internal API */
        {"[api.internal]\nlisten = \"0.0.0.0:8080\"\n",
         "config: api.internal.listen: \"0.0.0.0:8080\" is not a loopback address",
         "(file t.toml line 2)"},
        {"[api.internal]\nlisten = \"192.0.2.1:8080\"\n", "\"192.0.2.1:8080\" is not a loopback",
         NULL},
        {"[api.internal]\nlisten = \"[::]:8080\"\n", "is not a loopback", NULL},
        {"[api.internal]\nlisten = \"[2001:db8::1]:8080\"\n", "is not a loopback", NULL},
        {"[api.internal]\nlisten = \"example.com:8080\"\n", "is not a loopback", NULL},
        {"[api.internal]\nlisten = \"localhost.example.com:8080\"\n", "is not a loopback", NULL},
        {"[api.internal]\nlisten = \"128.0.0.1:8080\"\n", "is not a loopback", NULL},
        /* lists */
        {"[p2p]\nallowlist = [\"abc\"]\n", "p2p.allowlist: item 1: \"abc\" is not a node id", NULL},
        {"[p2p]\nallowlist = [\"" NODE_ID_A "0\"]\n", "is not a node id", NULL},
        {"[p2p]\nallowlist = [\"" NODE_ID_A "\", \"" NODE_ID_A "\"]\n", "is listed twice", NULL},
        {"[p2p]\nallowlist = [1, 2]\n", "a list may only hold \"double-quoted strings\"", NULL},
        {"[p2p]\nallowlist = [\"a\"\n", "unterminated list (a list must fit on one line)", NULL},
        {"[p2p]\nallowlist = [\n", "unterminated list", NULL},
        {"[p2p]\nallowlist = [\"a\" \"b\"]\n", "expected ',' or ']' in list", NULL},
        {"[p2p]\nallowlist = [,]\n", "a list may only hold", NULL},
        {"[p2p]\nallowlist = [[\"a\"]]\n", "a list may only hold", NULL},
        /* strings */
        {"datadir = \"/x\n", "datadir: unterminated string", "(file t.toml line 1)"},
        {"datadir = \"/x\\q\"\n", "unsupported escape \\q", NULL},
        {"datadir = \"/x\\", "unsupported escape", NULL},
        {"datadir = \"\"\"x\"\"\"\n", "multi-line strings", NULL},
        {"datadir = \"/x\ty\"\n", "datadir: control character \\x09 in string", NULL},
        {"datadir = \"/x\x1b[31m\"\n", "control character \\x1b", NULL},
        {"datadir = \"/x\\ny\"\n", "datadir: value contains a control character (\\x0a)", NULL},
        {"[network]\nid = \"a\\tb\"\n", "network.id: value contains a control character", NULL},
        {"# comment with \x07 bell\n", "control character in comment", NULL},
        {"datadir = \"/x\" # \x7f\n", "control character in comment", NULL},
        {"datadir = \"/x\"\r\r\n", "unexpected text after the value: \\x0d", NULL},
        {"datadir = \"\xc3\x28\"\n", "invalid UTF-8 at column 12 (file t.toml line 1)", NULL},
        {"# \xed\xa0\x80 surrogate\n", "invalid UTF-8", NULL},
        {"# \xc0\xaf overlong\n", "invalid UTF-8", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_text_error(cases[i].text, strlen(cases[i].text), cases[i].n1, cases[i].n2);

    /* NUL byte inside a line */
    expect_text_error("datadir = \"/x\0\"\n", 16, "NUL byte at column 14 (file t.toml line 1)",
                      NULL);
}

static void test_limits(void **state)
{
    (void)state;
    /* a 4096-byte line is fine, 4097 is not */
    char *line = malloc(8200);
    assert_non_null(line);
    memset(line, 0, 8200);
    memcpy(line, "datadir = \"", 11);
    memset(line + 11, 'a', 4096 - 12);
    line[4095] = '"';
    line[4096] = '\n';
    node_config cfg;
    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    assert_int_equal(node_config_load_text(&cfg, line, 4097, "t", &err), DM_OK);
    assert_int_equal(strlen(cfg.datadir), 4096 - 12);
    memset(line + 11, 'a', 4096 - 11);
    line[4096] = '"';
    line[4097] = '\n';
    expect_text_error(line, 4098, "line longer than 4096 bytes (file t.toml line 1)", NULL);
    free(line);

    /* file > 1 MiB: rejected before parsing, even if it is only comments */
    size_t big = 1024 * 1024 + 1;
    char *text = malloc(big);
    assert_non_null(text);
    for (size_t i = 0; i < big; i += 64) {
        size_t n = big - i < 64 ? big - i : 64;
        memset(text + i, '#', n);
        text[i + n - 1] = '\n';
    }
    expect_text_error(text, big, "file larger than 1 MiB", "(file t.toml)");
    assert_int_equal(node_config_load_text(&cfg, text, big - 1, "t", &err), DM_OK);
    free(text);

    /* 256 list items are fine, 257 are not (file and flag forms) */
    dm_buf b = DM_BUF_INIT, flag = DM_BUF_INIT;
    assert_int_equal(dm_buf_puts(&b, "[p2p]\nbootstrap = ["), DM_OK);
    for (int i = 0; i < 257; i++) {
        char item[32];
        snprintf(item, sizeof item, "h:%d", 1 + i); /* short: 257 must fit in one line */
        assert_int_equal(dm_buf_printf(&b, "\"%s\",", item), DM_OK);
        assert_int_equal(dm_buf_printf(&flag, "%s%s", i ? "," : "", item), DM_OK);
        if (i == 255) {
            dm_buf ok = DM_BUF_INIT;
            assert_int_equal(dm_buf_append(&ok, b.data, b.len), DM_OK);
            assert_int_equal(dm_buf_puts(&ok, "]\n"), DM_OK);
            int rc = node_config_load_text(&cfg, (const char *)ok.data, ok.len, "t", &err);
            if (rc)
                fail_msg("%s", dm_buf_cstr(&err));
            assert_int_equal(cfg.p2p_bootstrap_len, 256);
            assert_int_equal(
                node_config_set(&cfg, "p2p.bootstrap", dm_buf_cstr(&flag), "flag", &err), DM_OK);
            assert_int_equal(cfg.p2p_bootstrap_len, 256);
            dm_buf_free(&ok);
        }
    }
    assert_int_equal(dm_buf_puts(&b, "]\n"), DM_OK);
    expect_text_error((const char *)b.data, b.len, "p2p.bootstrap: more than 256 items", NULL);
    expect_set_error("p2p.bootstrap", dm_buf_cstr(&flag), "p2p.bootstrap: more than 256 items",
                     NULL);
    dm_buf_free(&b);
    dm_buf_free(&flag);

    /* a string value over 4095 bytes from a flag */
    char *lng = malloc(5000);
    assert_non_null(lng);
    memset(lng, 'x', 4999);
    lng[4999] = '\0';
    expect_set_error("datadir", lng, "datadir: value longer than 4095 bytes", NULL);
    free(lng);
    node_config_free(&cfg);
    dm_buf_free(&err);
}

static void test_set_errors(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value, *n1, *n2;
    } cases[] = {
        {"p2p.lisen", "1.2.3.4:5",
         "config: p2p.lisen: unknown key, did you mean p2p.listen? "
         "(flag --p2p.lisen)",
         NULL},
        {"P2P.LISTEN", "1.2.3.4:5", "did you mean p2p.listen?", NULL},
        {"p2p_listen", "1.2.3.4:5", "did you mean p2p.listen?", NULL},
        {"max_inbound", "3", "did you mean p2p.max_inbound?", NULL},
        {"api.internal.listn", "127.0.0.1:1", "did you mean api.internal.listen?", NULL},
        {"keys.master_passwd_file", "/x", "did you mean keys.master_password_file?", NULL},
        {"zzz", "1", "config: zzz: unknown key (docs/CONFIG.md lists every key) (flag --zzz)",
         NULL},
        {"listen", "1.2.3.4:5", "config: listen: unknown key (docs", NULL},
        {"", "1", "config: : unknown key", NULL},
        {"p2p.max_inbound", "", "\"\" is not an unsigned decimal integer", NULL},
        {"p2p.max_inbound", " 3", "is not an unsigned decimal integer", NULL},
        {"p2p.max_inbound", "+3", "is not an unsigned decimal integer", NULL},
        {"p2p.max_inbound", "1025",
         "config: p2p.max_inbound: 1025 is out of range 0..1024 "
         "(flag --p2p.max_inbound)",
         NULL},
        {"p2p.max_inbound", "18446744073709551616", "is out of range 0..1024", NULL},
        {"storage.sync", "TRUE", "config: storage.sync: \"TRUE\" is not true or false", NULL},
        {"storage.sync", "1", "is not true or false", NULL},
        {"storage.sync", "", "is not true or false", NULL},
        {"log.level", "Debug", "is not one of debug, info, warning, error", NULL},
        {"p2p.listen", "", "p2p.listen: \"\" is not a valid host:port: empty", NULL},
        {"p2p.listen", "1.2.3.4:08000", "invalid port", NULL},
        {"p2p.listen", "1.2.3.4:123456", "invalid port", NULL},
        {"p2p.bootstrap", "1.2.3.4:5,", "p2p.bootstrap: empty item 2", NULL},
        {"p2p.bootstrap", ",", "empty item 1", NULL},
        {"p2p.bootstrap", "1.2.3.4:5;1.2.3.4:6", "item 1: \"1.2.3.4:5;1.2.3.4:6\"", NULL},
        {"p2p.allowlist", NODE_ID_A ",xyz", "p2p.allowlist: item 2: \"xyz\" is not a node id",
         NULL},
        {"api.internal.listen", "0.0.0.0:8080",
         "config: api.internal.listen: \"0.0.0.0:8080\" is not a loopback address",
         "(flag --api.internal.listen)"},
        {"api.internal.listen", "192.0.2.1:8080", "\"192.0.2.1:8080\" is not a loopback address",
         NULL},
        {"network.id", "x/y", "network.id: \"x/y\" is not 1..64 characters", NULL},
        {"datadir", "/tmp/a\nb", "datadir: value contains a control character (\\x0a)", NULL},
        {"datadir", "/tmp/\xff", "datadir: value is not valid UTF-8", NULL},
        {"network.id", "\xc3", "network.id: value is not valid UTF-8", NULL},
        {"chain.contract", "0x", "is not an Ethereum address", NULL},
        {"chain.chain_id", "-1", "is not an unsigned decimal integer", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_set_error(cases[i].key, cases[i].value, cases[i].n1, cases[i].n2);

    node_config cfg;
    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    assert_int_equal(node_config_set(&cfg, "datadir", NULL, "flag --datadir", &err), DM_ECONFIG);
    assert_contains(dm_buf_cstr(&err), "datadir: missing value (flag --datadir)");
    assert_int_equal(node_config_set(&cfg, NULL, "x", "o", &err), DM_EINVAL);
    assert_int_equal(node_config_set(&cfg, "nope", "x", "o", NULL), DM_ECONFIG); /* NULL err ok */
    node_config_free(&cfg);
    dm_buf_free(&err);
}

/* The internal API accepts only loopback binds: 127.0.0.0/8, ::1, localhost. */
static void test_internal_bind(void **state)
{
    (void)state;
    static const char *ok[] = {
        "127.0.0.1:8080", "127.0.0.2:8080", "127.255.255.254:1",       "[::1]:8080",
        "localhost:8080", "LocalHost:8080", "[::ffff:127.0.0.1]:8080", "127.0.0.1:0"};
    static const char *bad[] = {"0.0.0.0:8080",    "192.0.2.1:8080",  "[::]:8080",
                                "10.0.0.1:8080",   "[::2]:8080",      "[::ffff:10.0.0.1]:1",
                                "localhost6:8080", "localhostx:8080", "126.255.255.255:1"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        node_config cfg;
        dm_buf err = DM_BUF_INIT;
        assert_int_equal(node_config_init(&cfg), DM_OK);
        int rc = node_config_set(&cfg, "api.internal.listen", ok[i], "flag", &err);
        if (rc)
            fail_msg("%s: %s", ok[i], dm_buf_cstr(&err));
        assert_true(node_hostport_is_loopback(&cfg.api_internal_listen));
        assert_int_equal(node_config_validate(&cfg, &err), DM_OK);
        node_config_free(&cfg);
        dm_buf_free(&err);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char env[128];
        snprintf(env, sizeof env, "DMNODE_API_INTERNAL_LISTEN=%s", bad[i]);
        char *envp[] = {env, NULL};
        node_config cfg;
        dm_buf err = DM_BUF_INIT;
        assert_int_equal(node_config_init(&cfg), DM_OK);
        assert_int_equal(node_config_load_env(&cfg, envp, &err), DM_ECONFIG);
        assert_contains(dm_buf_cstr(&err), "config: api.internal.listen: ");
        assert_contains(dm_buf_cstr(&err), "is not a loopback address");
        assert_contains(dm_buf_cstr(&err), "(environment DMNODE_API_INTERNAL_LISTEN)");
        node_hostport hp;
        assert_int_equal(node_hostport_parse(&hp, bad[i]), DM_OK);
        assert_false(node_hostport_is_loopback(&hp));
        /* validate() refuses it too if the struct was changed directly */
        cfg.api_internal_listen = hp;
        dm_buf_reset(&err);
        assert_int_equal(node_config_validate(&cfg, &err), DM_ECONFIG);
        assert_contains(dm_buf_cstr(&err), "config: api.internal.listen: ");
        assert_contains(dm_buf_cstr(&err), "(default)");
        node_config_free(&cfg);
        dm_buf_free(&err);
    }
    /* the external API and p2p may bind publicly */
    node_config cfg;
    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    assert_int_equal(node_config_set(&cfg, "api.external.listen", "0.0.0.0:8081", "f", &err),
                     DM_OK);
    assert_int_equal(node_config_validate(&cfg, &err), DM_OK);
    node_config_free(&cfg);
    dm_buf_free(&err);
}

static void test_hostport(void **state)
{
    (void)state;
    static const struct {
        const char *in, *host;
        int port, rc;
        const char *fmt;
    } cases[] = {
        {"1.2.3.4:5", "1.2.3.4", 5, DM_OK, "1.2.3.4:5"},
        {"[::1]:8000", "::1", 8000, DM_OK, "[::1]:8000"},
        {"[2001:db8::a]:65535", "2001:db8::a", 65535, DM_OK, "[2001:db8::a]:65535"},
        {"example.org:443", "example.org", 443, DM_OK, "example.org:443"},
        {"a-b.c1.example:1", "a-b.c1.example", 1, DM_OK, "a-b.c1.example:1"},
        {"localhost:1", "localhost", 1, DM_OK, "localhost:1"},
        {"1.2.3.4:0", NULL, 0, DM_ERANGE, NULL},
        {"1.2.3.4:65536", NULL, 0, DM_ERANGE, NULL},
        {"1.2.3.4:99999", NULL, 0, DM_ERANGE, NULL},
        {"1.2.3.4", NULL, 0, DM_EINVAL, NULL},
        {"1.2.3.4:", NULL, 0, DM_EINVAL, NULL},
        {"1.2.3.4:-1", NULL, 0, DM_EINVAL, NULL},
        {"::1:80", NULL, 0, DM_EINVAL, NULL},
        {"[::1]", NULL, 0, DM_EINVAL, NULL},
        {"[]:80", NULL, 0, DM_EINVAL, NULL},
        {"[1.2.3.4]:80", NULL, 0, DM_EINVAL, NULL},
        {"[fe80::1%eth0]:80", NULL, 0, DM_EINVAL, NULL},
        {"256.0.0.1:80", NULL, 0, DM_EINVAL, NULL},
        {"1.2.3.4.5:80", NULL, 0, DM_EINVAL, NULL},
        {"ex ample:80", NULL, 0, DM_EINVAL, NULL},
        {"a..b:80", NULL, 0, DM_EINVAL, NULL},
        {"a.:80", NULL, 0, DM_EINVAL, NULL},
        {"a-.b:80", NULL, 0, DM_EINVAL, NULL},
        {"http://x:80", NULL, 0, DM_EINVAL, NULL},
        {"", NULL, 0, DM_EINVAL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        node_hostport hp;
        int rc = node_hostport_parse(&hp, cases[i].in);
        if (rc != cases[i].rc)
            fail_msg("%s: rc %d, want %d", cases[i].in, rc, cases[i].rc);
        if (rc)
            continue;
        assert_string_equal(hp.host, cases[i].host);
        assert_int_equal(hp.port, cases[i].port);
        char out[300];
        node_hostport_format(&hp, out, sizeof out);
        assert_string_equal(out, cases[i].fmt);
    }
    char host[300];
    memset(host, 'a', 254);
    strcpy(host + 254, ":1");
    node_hostport hp;
    assert_int_equal(node_hostport_parse(&hp, host), DM_EINVAL);
    /* 63-character labels are the DNS maximum */
    char lbl[80];
    memset(lbl, 'b', 63);
    strcpy(lbl + 63, ".x:1");
    assert_int_equal(node_hostport_parse(&hp, lbl), DM_OK);
    memset(lbl, 'b', 64);
    strcpy(lbl + 64, ".x:1");
    assert_int_equal(node_hostport_parse(&hp, lbl), DM_EINVAL);
    assert_int_equal(node_hostport_parse(NULL, "1.2.3.4:5"), DM_EINVAL);
}

static void test_validate(void **state)
{
    (void)state;
    static const struct {
        const char *k1, *v1, *k2, *v2, *n1, *n2;
    } cases[] = {
        {"api.external.listen", "127.0.0.1:8080", NULL, NULL,
         "config: api.external.listen: 127.0.0.1:8080 conflicts with api.internal.listen "
         "127.0.0.1:8080 (default)",
         "(flag --api.external.listen)"},
        {"p2p.listen", "127.0.0.1:8081", NULL, NULL,
         "api.external.listen: 127.0.0.1:8081 conflicts with p2p.listen 127.0.0.1:8081 (flag "
         "--p2p.listen)",
         "(default)"},
        {"p2p.listen", "0.0.0.0:8080", NULL, NULL,
         "api.internal.listen: 127.0.0.1:8080 conflicts with p2p.listen 0.0.0.0:8080", NULL},
        {"p2p.listen", "[::]:8081", NULL, NULL, "conflicts with p2p.listen [::]:8081", NULL},
        {"api.internal.listen", "[::1]:9", "api.external.listen", "[0:0::1]:9",
         "api.external.listen: [0:0::1]:9 conflicts with api.internal.listen [::1]:9", NULL},
        {"chain.contract", "0x5FbDB2315678afecb367f032d93F642f64180aa3", NULL, NULL,
         "config: chain.contract: requires chain.rpc_url to be set (flag --chain.contract)", NULL},
        {"chain.rpc_url", "http://127.0.0.1:8545", NULL, NULL,
         "config: chain.chain_id: must be set because chain.rpc_url is set (flag "
         "--chain.rpc_url)",
         "(default)"},
        {"p2p.bootstrap", "10.0.0.1:8000", "p2p.max_outbound", "0",
         "config: p2p.max_outbound: is 0 but p2p.bootstrap (flag --p2p.bootstrap) lists peers "
         "to dial (flag --p2p.max_outbound)",
         NULL},
        {"api.internal.token_file", "/etc/dm/secret", "keys.master_password_file", "/etc/dm/secret",
         "api.internal.token_file: must not be the same file as "
         "keys.master_password_file",
         NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        node_config cfg;
        dm_buf err = DM_BUF_INIT;
        char o1[96], o2[96];
        snprintf(o1, sizeof o1, "flag --%s", cases[i].k1);
        assert_int_equal(node_config_init(&cfg), DM_OK);
        assert_int_equal(node_config_set(&cfg, cases[i].k1, cases[i].v1, o1, &err), DM_OK);
        if (cases[i].k2) {
            snprintf(o2, sizeof o2, "flag --%s", cases[i].k2);
            assert_int_equal(node_config_set(&cfg, cases[i].k2, cases[i].v2, o2, &err), DM_OK);
        }
        assert_int_equal(node_config_validate(&cfg, &err), DM_ECONFIG);
        assert_contains(dm_buf_cstr(&err), cases[i].n1);
        if (cases[i].n2)
            assert_contains(dm_buf_cstr(&err), cases[i].n2);
        node_config_free(&cfg);
        dm_buf_free(&err);
    }
    /* port 0 ("any free port") never conflicts; distinct loopback addresses do not either */
    node_config cfg;
    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    assert_int_equal(node_config_set(&cfg, "p2p.listen", "127.0.0.1:0", "f", &err), DM_OK);
    assert_int_equal(node_config_set(&cfg, "api.internal.listen", "127.0.0.1:0", "f", &err), DM_OK);
    assert_int_equal(node_config_set(&cfg, "api.external.listen", "127.0.0.2:8080", "f", &err),
                     DM_OK);
    assert_int_equal(node_config_set(&cfg, "chain.rpc_url", "http://127.0.0.1:8545", "f", &err),
                     DM_OK);
    assert_int_equal(node_config_set(&cfg, "chain.chain_id", "31337", "f", &err), DM_OK);
    assert_int_equal(node_config_validate(&cfg, &err), DM_OK);
    assert_int_equal(err.len, 0);
    node_config_free(&cfg);
    dm_buf_free(&err);
}

static void round_trip(const node_config *cfg)
{
    char *d1 = dump_str(cfg);
    node_config back;
    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_init(&back), DM_OK);
    int rc = node_config_load_text(&back, d1, strlen(d1), "dump", &err);
    if (rc)
        fail_msg("dump does not load back: %s\n%s", dm_buf_cstr(&err), d1);
    char *d2 = dump_str(&back);
    assert_string_equal(d1, d2);
    /* every key was written, so every key now comes from the dump */
    for (size_t i = 0; i < node_config_key_count(); i++)
        assert_memory_equal(node_config_origin(&back, node_config_key_name(i)), "file dump line",
                            14);
    free(d1);
    free(d2);
    dm_buf_free(&err);
    node_config_free(&back);
}

static void test_dump_round_trip(void **state)
{
    (void)state;
    node_config cfg;
    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    round_trip(&cfg);
    char *d = dump_str(&cfg);
    assert_contains(d, "datadir = \"\"\n\n[network]\nid = \"datamgmt-local\"\n");
    assert_contains(d, "[api.internal]\nlisten = \"127.0.0.1:8080\"\n");
    assert_contains(d, "bootstrap = []\n");
    assert_contains(d, "sync = true\n");
    assert_contains(d, "level = \"info\"\n");
    free(d);

    assert_int_equal(node_config_load_text(&cfg, FULL, strlen(FULL), "full", &err), DM_OK);
    round_trip(&cfg);
    d = dump_str(&cfg);
    assert_contains(d, "bootstrap = [\"10.0.0.2:8000\", \"[2001:db8::1]:8000\", "
                       "\"node-3.example.org:8000\"]\n");
    assert_contains(d, "master_password_file = \"/run/secrets/dm \\\"pw\\\"\\\\x\"\n");
    assert_contains(d, "chain_id = 9007199254740992\n");
    free(d);

    /* values from flags with quotes, backslashes and UTF-8 survive the file syntax */
    assert_int_equal(node_config_set(&cfg, "datadir", "/srv/d\xc3\xa9 \"q\" \\b#[x]", "f", &err),
                     DM_OK);
    assert_int_equal(node_config_set(&cfg, "p2p.bootstrap", "[::1]:1, h:2", "f", &err), DM_OK);
    assert_int_equal(node_config_set(&cfg, "api.external.listen", "[::]:0", "f", &err), DM_OK);
    round_trip(&cfg);
    /* the dump holds no secret: the password itself never enters the configuration */
    setenv("KEY_MASTER_PASSWORD", "correct horse battery staple", 1);
    char *envp[] = {"KEY_MASTER_PASSWORD=correct horse battery staple", NULL};
    assert_int_equal(node_config_load_env(&cfg, envp, &err), DM_OK);
    d = dump_str(&cfg);
    assert_null(strstr(d, "horse"));
    free(d);
    unsetenv("KEY_MASTER_PASSWORD");
    node_config_free(&cfg);
    dm_buf_free(&err);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void test_load_file(void **state)
{
    (void)state;
    char *dir = dm_test_mkdtemp("cfg");
    char path[PATH_MAX], want[PATH_MAX + 256];
    node_config cfg;
    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_init(&cfg), DM_OK);

    snprintf(path, sizeof path, "%s/missing.toml", dir);
    assert_int_equal(node_config_load_file(&cfg, path, &err), DM_ENOTFOUND);
    snprintf(want, sizeof want, "(file %s)", path);
    assert_contains(dm_buf_cstr(&err), want);
    dm_buf_reset(&err);
    assert_int_equal(node_config_load_file(&cfg, dir, &err), DM_ENOTFOUND); /* a directory */
    dm_buf_reset(&err);

    snprintf(path, sizeof path, "%s/node.toml", dir);
    write_file(path, "datadir = \"/d\"\n[p2p]\n\nmax_inbound = 7\n", 0600);
    int rc = node_config_load_file(&cfg, path, &err);
    if (rc)
        fail_msg("%s", dm_buf_cstr(&err));
    assert_int_equal(cfg.p2p_max_inbound, 7);
    snprintf(want, sizeof want, "file %s line 4", path);
    assert_string_equal(node_config_origin(&cfg, "p2p.max_inbound"), want);

    write_file(path, "[p2p]\nmax_inbound = 7\nmax_inbound = 8\n", 0644);
    assert_int_equal(node_config_load_file(&cfg, path, &err), DM_ECONFIG);
    snprintf(want, sizeof want,
             "config: p2p.max_inbound: set twice in the file (first at line 2) "
             "(file %s line 3)",
             path);
    assert_contains(dm_buf_cstr(&err), want);
    dm_buf_reset(&err);

    /* others must not be able to edit the file that names the password file */
    write_file(path, "[p2p]\nmax_inbound = 9\n", 0666);
    assert_int_equal(node_config_load_file(&cfg, path, &err), DM_ECONFIG);
    assert_contains(dm_buf_cstr(&err), "writable by other users");
    assert_int_equal(cfg.p2p_max_inbound, 7);
    dm_buf_reset(&err);

    /* an oversize file is refused from its size */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fseek(f, 1024 * 1024, SEEK_SET), 0);
    assert_int_equal(fputc('\n', f), '\n');
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(node_config_load_file(&cfg, path, &err), DM_ECONFIG);
    assert_contains(dm_buf_cstr(&err), "file larger than 1 MiB");
    dm_buf_reset(&err);

    node_config_free(&cfg);
    dm_buf_free(&err);
    dm_test_rmtree(dir);
    free(dir);
}

/* docs/CONFIG.md embeds the key table generated from the schema: keep them in sync. */
static void test_docs_in_sync(void **state)
{
    (void)state;
    char path[PATH_MAX];
    const char *me = __FILE__;
    const char *tail = strstr(me, "tests/unit/node/test_config.c");
    if (!tail || me[0] != '/')
        skip();
    snprintf(path, sizeof path, "%.*sdocs/CONFIG.md", (int)(tail - me), me);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    dm_buf doc = DM_BUF_INIT, table = DM_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(dm_buf_append(&doc, chunk, n), DM_OK);
    fclose(f);
    assert_int_equal(node_config_describe(&table), DM_OK);
    if (!strstr(dm_buf_cstr(&doc), dm_buf_cstr(&table)))
        fail_msg("docs/CONFIG.md does not contain the current key table; regenerate it:\n%s",
                 dm_buf_cstr(&table));
    for (size_t i = 0; i < node_config_key_count(); i++) {
        char k[96];
        snprintf(k, sizeof k, "`%s`", node_config_key_name(i));
        assert_contains(dm_buf_cstr(&doc), k);
    }
    /* the example file of the document is accepted and valid */
    const char *ex = strstr(dm_buf_cstr(&doc), "```toml\n");
    assert_non_null(ex);
    ex += 8;
    const char *end = strstr(ex, "```");
    assert_non_null(end);
    node_config cfg;
    dm_buf err = DM_BUF_INIT;
    assert_int_equal(node_config_init(&cfg), DM_OK);
    int rc = node_config_load_text(&cfg, ex, (size_t)(end - ex), "CONFIG.md", &err);
    if (!rc)
        rc = node_config_validate(&cfg, &err);
    if (rc)
        fail_msg("example in docs/CONFIG.md: %s", dm_buf_cstr(&err));
    assert_string_equal(cfg.network_id, "datamgmt-prod");
    node_config_free(&cfg);
    dm_buf_free(&err);
    dm_buf_free(&doc);
    dm_buf_free(&table);
}

int test_node_config(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_precedence),      cmocka_unit_test(test_env_names),
        cmocka_unit_test(test_file_errors),     cmocka_unit_test(test_limits),
        cmocka_unit_test(test_set_errors),      cmocka_unit_test(test_internal_bind),
        cmocka_unit_test(test_hostport),        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_dump_round_trip), cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_docs_in_sync),
    };
    return cmocka_run_group_tests_name("node_config", tests, NULL, NULL);
}
