/*
 * The audit contract (contracts/AuditAnchor.sol) and its committed artifact
 * (contracts/AuditAnchor.json): `node contracts/build.js --check` recompiles the source
 * with the pinned solc-js and must reproduce the artifact byte for byte (skipped, with a
 * message, only where node or node_modules/solc is absent). Without node, the artifact is
 * still checked against the committed source (sha256) and against what the node relies
 * on: the ABI has anchor(bytes32,uint64) and the Anchored event, the selector is
 * keccak256("anchor(bytes32,uint64)")[0..4] = db2c4aca, the event topic is the one the
 * anchorer filters logs on (chain_anchor_event_topic), and the runtime code pushes both.
 * The repository root comes from DM_SOURCE_DIR (set by CMake for test_chain).
 */
#include "dm_test.h"

#include "groups.h"

#include "chain_anchor.h"
#include "crypto_hash.h"
#include "crypto_keccak.h"

#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

#define BUILD_CHECK_TIMEOUT_S 120
#define ANCHOR_SIG "anchor(bytes32,uint64)"
#define EVENT_SIG "Anchored(address,bytes32,uint64,uint256)"

static const char *source_dir(void)
{
    const char *d = getenv("DM_SOURCE_DIR");
    if (!d || !*d)
        fail_msg("DM_SOURCE_DIR is not set (run test_chain through ctest)");
    return d;
}

/* The first executable `name` on PATH, into out; false if none. */
static bool find_on_path(const char *name, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && (size_t)snprintf(out, cap, "%.*s/%s", (int)n, path, name) < cap &&
            access(out, X_OK) == 0)
            return true;
        path += n;
        if (*path == ':')
            path++;
    }
    return false;
}

static json_t *load_artifact(void)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/contracts/AuditAnchor.json", source_dir());
    json_error_t e;
    json_t *j = json_load_file(p, JSON_REJECT_DUPLICATES, &e);
    if (!j)
        fail_msg("cannot load %s: %s (line %d)", p, e.text, e.line);
    return j;
}

/* 0x-prefixed lower-case hex of n bytes. */
static void hex0x(char *out, const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    out[0] = '0';
    out[1] = 'x';
    for (size_t i = 0; i < n; i++) {
        out[2 + 2 * i] = digits[b[i] >> 4];
        out[3 + 2 * i] = digits[b[i] & 15];
    }
    out[2 + 2 * n] = '\0';
}

/* The ABI entry of `type` named `name`; fails the test if absent or repeated. */
static json_t *abi_entry(json_t *abi, const char *type, const char *name)
{
    json_t *found = NULL, *it;
    size_t i;
    json_array_foreach(abi, i, it)
    {
        const char *t = json_string_value(json_object_get(it, "type"));
        const char *nm = json_string_value(json_object_get(it, "name"));
        if (t && nm && !strcmp(t, type) && !strcmp(nm, name)) {
            if (found)
                fail_msg("abi has two %s entries named %s", type, name);
            found = it;
        }
    }
    if (!found)
        fail_msg("abi has no %s named %s", type, name);
    return found;
}

/* "name(type,type,...)" from an ABI entry, as Solidity hashes it. */
static void abi_signature(char *out, size_t cap, const json_t *entry)
{
    json_t *inputs = json_object_get(entry, "inputs"), *in;
    size_t i,
        len = (size_t)snprintf(out, cap, "%s(", json_string_value(json_object_get(entry, "name")));
    assert_true(json_is_array(inputs));
    json_array_foreach(inputs, i, in)
    {
        const char *t = json_string_value(json_object_get(in, "type"));
        assert_non_null(t);
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", t);
        assert_true(len < cap);
    }
    len += (size_t)snprintf(out + len, cap - len, ")");
    assert_true(len < cap);
}

static void assert_input(const json_t *entry, size_t i, const char *name, const char *type,
                         int indexed)
{
    const json_t *in = json_array_get(json_object_get(entry, "inputs"), i);
    assert_non_null(in);
    assert_string_equal(json_string_value(json_object_get(in, "name")), name);
    assert_string_equal(json_string_value(json_object_get(in, "type")), type);
    if (indexed >= 0)
        assert_int_equal(json_is_true(json_object_get(in, "indexed")), indexed);
}

/* Does the hex string `code` (0x...) contain the bytes `needle` at a byte boundary? */
static bool code_contains(const char *code, const uint8_t *needle, size_t n)
{
    char hx[2 * 33 + 3];
    assert_true(n <= 33);
    hex0x(hx, needle, n);
    assert_true(!strncmp(code, "0x", 2));
    for (const char *p = code + 2; (p = strstr(p, hx + 2)) != NULL; p++)
        if ((p - (code + 2)) % 2 == 0)
            return true;
    return false;
}

/* node contracts/build.js --check, no shell, bounded in time: exit 0 = artifact matches. */
static void test_build_check(void **state)
{
    (void)state;
    const char *src = source_dir();
    char node[PATH_MAX], solc[PATH_MAX], script[PATH_MAX];
    if (!find_on_path("node", node, sizeof node)) {
        print_message("chain_contract: SKIP build check: no `node` on PATH "
                      "(scripts/setup-node.sh installs it)\n");
        skip();
    }
    snprintf(solc, sizeof solc, "%s/node_modules/solc/package.json", src);
    if (access(solc, R_OK) != 0) {
        print_message("chain_contract: SKIP build check: %s is absent "
                      "(run scripts/setup-node.sh)\n",
                      solc);
        skip();
    }
    snprintf(script, sizeof script, "%s/contracts/build.js", src);
    char *argv[] = {node, script, "--check", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, node, NULL, NULL, argv, environ);
    if (rc != 0)
        fail_msg("posix_spawn %s: %s", node, strerror(rc));

    int status = 0;
    struct timespec tick = {0, 50 * 1000 * 1000};
    for (int waited = 0;; waited++) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            fail_msg("waitpid: %s", strerror(errno));
        if (waited >= BUILD_CHECK_TIMEOUT_S * 20) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("node contracts/build.js --check ran over %d s", BUILD_CHECK_TIMEOUT_S);
        }
        nanosleep(&tick, NULL);
    }
    if (!WIFEXITED(status))
        fail_msg("node contracts/build.js --check died (status 0x%x)", status);
    if (WEXITSTATUS(status) != 0)
        fail_msg("contracts/AuditAnchor.json does not match a fresh compile of "
                 "contracts/AuditAnchor.sol (build.js --check exit %d): run "
                 "`node contracts/build.js` and commit the artifact",
                 WEXITSTATUS(status));
}

/* The artifact was built from the committed source, with the pinned compiler settings. */
static void test_artifact_source(void **state)
{
    (void)state;
    json_t *art = load_artifact();
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/contracts/AuditAnchor.sol", source_dir());
    FILE *f = fopen(p, "rb");
    if (!f)
        fail_msg("cannot open %s: %s", p, strerror(errno));
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text, f);
    assert_true(feof(f));
    fclose(f);
    char hex[65];
    assert_int_equal(crypto_sha256_hex(hex, text, n), 0);
    assert_string_equal(json_string_value(json_object_get(art, "sourceSha256")), hex);
    assert_string_equal(json_string_value(json_object_get(art, "contractName")), "AuditAnchor");

    /* the pragma pins the compiler that built the artifact */
    const char *ver =
        json_string_value(json_object_get(json_object_get(art, "compiler"), "version"));
    assert_non_null(ver);
    char pragma[64];
    snprintf(pragma, sizeof pragma, "pragma solidity %.*s;", (int)strcspn(ver, "+"), ver);
    text[n < sizeof text ? n : sizeof text - 1] = '\0';
    if (!strstr(text, pragma))
        fail_msg("AuditAnchor.sol lacks \"%s\" (the artifact's compiler is %s)", pragma, ver);
    json_decref(art);
}

/* ABI, selector and event topic: what the node encodes and filters on. */
static void test_artifact_abi(void **state)
{
    (void)state;
    json_t *art = load_artifact();
    json_t *abi = json_object_get(art, "abi");
    assert_true(json_is_array(abi));
    char sig[256], hx[67];
    uint8_t h[32];

    /* anchor(bytes32 root, uint64 count): non-payable, returns nothing */
    json_t *fn = abi_entry(abi, "function", "anchor");
    abi_signature(sig, sizeof sig, fn);
    assert_string_equal(sig, ANCHOR_SIG);
    assert_input(fn, 0, "root", "bytes32", -1);
    assert_input(fn, 1, "count", "uint64", -1);
    assert_int_equal(json_array_size(json_object_get(fn, "outputs")), 0);
    assert_string_equal(json_string_value(json_object_get(fn, "stateMutability")), "nonpayable");
    crypto_keccak256(h, ANCHOR_SIG, strlen(ANCHOR_SIG));
    static const uint8_t selector[4] = {0xdb, 0x2c, 0x4a, 0xca};
    assert_memory_equal(h, selector, 4);
    hex0x(hx, h, 4);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(art, "methodIdentifiers"), ANCHOR_SIG)),
        hx);

    /* version() = 1 is what the anchorer checks at start */
    json_t *ver = abi_entry(abi, "function", "version");
    assert_int_equal(json_array_size(json_object_get(ver, "inputs")), 0);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(ver, "outputs"), 0), "type")),
                        "uint256");

    /* Anchored(address indexed sender, bytes32 indexed root, uint64 count, uint256 blockTime) */
    json_t *ev = abi_entry(abi, "event", "Anchored");
    abi_signature(sig, sizeof sig, ev);
    assert_string_equal(sig, EVENT_SIG);
    assert_false(json_is_true(json_object_get(ev, "anonymous")));
    assert_input(ev, 0, "sender", "address", 1);
    assert_input(ev, 1, "root", "bytes32", 1);
    assert_input(ev, 2, "count", "uint64", 0);
    assert_input(ev, 3, "blockTime", "uint256", 0);
    crypto_keccak256(h, EVENT_SIG, strlen(EVENT_SIG));
    assert_memory_equal(h, chain_anchor_event_topic, 32);
    hex0x(hx, h, 32);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(art, "eventTopics"), EVENT_SIG)), hx);

    /* the runtime code dispatches on the selector (PUSH4) and logs the topic (PUSH32) */
    const char *code = json_string_value(json_object_get(art, "deployedBytecode"));
    const char *init = json_string_value(json_object_get(art, "bytecode"));
    assert_non_null(code);
    assert_non_null(init);
    uint8_t push4[5] = {0x63}, push32[33] = {0x7f};
    memcpy(push4 + 1, selector, 4);
    memcpy(push32 + 1, h, 32);
    assert_true(code_contains(code, push4, sizeof push4));
    assert_true(code_contains(code, push32, sizeof push32));
    /* the creation code returns the runtime code, which it carries at its end */
    assert_true(strlen(init) > strlen(code) &&
                !strcmp(init + strlen(init) - (strlen(code) - 2), code + 2));
    json_decref(art);
}

/* The node's anchor() calldata is selector || root || count word, as in the shared
 * EIP-1559 vector that calls anchor(0x11..11, 42). */
static void test_calldata_vector(void **state)
{
    (void)state;
    json_t *v = dm_test_vectors("ethereum/signing.json");
    const char *data =
        json_string_value(json_object_get(json_object_get(v, "eip1559_example"), "data"));
    assert_non_null(data);
    uint8_t want[CHAIN_ANCHOR_CALLDATA_LEN], got[CHAIN_ANCHOR_CALLDATA_LEN], root[32];
    assert_int_equal(dm_test_unhex(want, sizeof want, data), CHAIN_ANCHOR_CALLDATA_LEN);
    memset(root, 0x11, sizeof root);
    chain_anchor_calldata(got, root, 42);
    assert_memory_equal(got, want, sizeof want);
    json_decref(v);
}

int test_chain_contract(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_check),
        cmocka_unit_test(test_artifact_source),
        cmocka_unit_test(test_artifact_abi),
        cmocka_unit_test(test_calldata_vector),
    };
    return cmocka_run_group_tests_name("chain_contract", tests, NULL, NULL);
}
