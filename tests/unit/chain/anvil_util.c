/* A real anvil for the chain tests (anvil_util.h). */
#include "dm_test.h"

#include "anvil_util.h"

#include "chain_hex.h"
#include "dm_enc.h"
#include "dm_err.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *source_dir(void)
{
    const char *src = getenv("DM_SOURCE_DIR");
    return src && *src ? src : "..";
}

bool anvil_util_bin(char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", source_dir(), ANVIL_UTIL_REL);
    return access(out, X_OK) == 0;
}

uint16_t anvil_util_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static bool port_open(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* One attempt on `port`. */
static bool launch(anvil_proc *a, const char *bin, uint16_t port, const char *const *extra,
                   unsigned wait_ms)
{
    char ports[8], chain[16];
    snprintf(ports, sizeof ports, "%u", port);
    snprintf(chain, sizeof chain, "%u", ANVIL_UTIL_CHAIN_ID);
    const char *argv[32] = {bin, "--host", "127.0.0.1", "--port", ports, "--silent", "--chain-id",
                            chain};
    size_t n = 8;
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    uint64_t start = now_ms();
    while (now_ms() - start < wait_ms) {
        if (port_open(port)) {
            a->pid = pid;
            a->port = port;
            snprintf(a->url, sizeof a->url, "http://127.0.0.1:%u/", port);
            return true;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return false; /* exited: the port was taken meanwhile? */
        usleep(50 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return false;
}

bool anvil_util_start(anvil_proc *a, uint16_t port, const char *const *extra, unsigned wait_ms)
{
    char bin[PATH_MAX];
    if (!anvil_util_bin(bin, sizeof bin))
        return false;
    if (port)
        return launch(a, bin, port, extra, wait_ms);
    for (int attempt = 0; attempt < 3; attempt++)
        if (launch(a, bin, anvil_util_free_port(), extra, wait_ms))
            return true;
    return false;
}

void anvil_util_stop(anvil_proc *a)
{
    if (a->pid <= 0)
        return;
    kill(a->pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(a->pid, NULL, WNOHANG) == a->pid) {
            a->pid = 0;
            return;
        }
        usleep(20 * 1000);
    }
    anvil_util_kill(a);
}

void anvil_util_kill(anvil_proc *a)
{
    if (a->pid <= 0)
        return;
    kill(a->pid, SIGKILL);
    waitpid(a->pid, NULL, 0);
    a->pid = 0;
}

/* ---------------------------------------------------------------- synchronous RPC */

typedef struct {
    bool done;
    int status;
    json_t *result;
    char msg[CHAIN_RPC_MSG_MAX];
} sync_call;

static void sync_cb(chain_rpc_t *rpc, int status, json_t *result, const chain_rpc_error *err,
                    void *arg)
{
    (void)rpc;
    sync_call *s = arg;
    s->done = true;
    s->status = status;
    s->result = json_incref(result);
    snprintf(s->msg, sizeof s->msg, "%s", err->message);
}

int anvil_util_call(uv_loop_t *loop, chain_rpc_t *rpc, const char *method, const char *params,
                    json_t **out, char *msg, unsigned wait_ms)
{
    sync_call s = {0};
    assert_int_equal(chain_rpc_call_text(rpc, method, params, sync_cb, &s), DM_OK);
    uint64_t start = now_ms();
    while (!s.done) {
        uv_run(loop, UV_RUN_ONCE);
        if (now_ms() - start > wait_ms)
            fail_msg("%s did not complete within %u ms", method, wait_ms);
    }
    if (msg)
        snprintf(msg, CHAIN_RPC_MSG_MAX, "%s", s.msg);
    *out = s.result;
    return s.status;
}

static void closed_cb(void *arg)
{
    *(bool *)arg = true;
}

void anvil_util_client_close(uv_loop_t *loop, chain_rpc_t **rpc)
{
    if (*rpc) {
        bool closed = false;
        chain_rpc_close(*rpc, closed_cb, &closed);
        while (!closed)
            uv_run(loop, UV_RUN_ONCE);
        *rpc = NULL;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

json_t *anvil_util_rpc(uv_loop_t *loop, chain_rpc_t *rpc, const char *method, const char *params)
{
    json_t *r = NULL;
    char msg[CHAIN_RPC_MSG_MAX];
    int st = anvil_util_call(loop, rpc, method, params, &r, msg, 60000);
    if (st != DM_OK)
        fail_msg("%s %s: %s %s", method, params ? params : "[]", dm_err_name(st), msg);
    return r;
}

chain_rpc_receipt *anvil_util_receipt(uv_loop_t *loop, chain_rpc_t *rpc, const uint8_t tx[32])
{
    char h[67] = "0x", params[80];
    dm_hex_encode(h + 2, tx, 32);
    snprintf(params, sizeof params, "[\"%s\"]", h);
    for (int i = 0; i < 500; i++) {
        json_t *r = anvil_util_rpc(loop, rpc, "eth_getTransactionReceipt", params);
        chain_rpc_receipt *rc = NULL;
        int st = chain_rpc_parse_receipt(r, &rc);
        json_decref(r);
        if (st == DM_OK)
            return rc;
        assert_int_equal(st, DM_ENOTFOUND);
        usleep(20 * 1000);
    }
    fail_msg("no receipt for %s after 10 s", h);
    return NULL;
}

void anvil_util_deploy(uv_loop_t *loop, chain_rpc_t *rpc, char acct0[43], uint8_t contract[20],
                       uint8_t tx[32])
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/contracts/AuditAnchor.json", source_dir());
    json_error_t je;
    json_t *art = json_load_file(path, 0, &je);
    if (!art)
        fail_msg("cannot load %s: %s", path, je.text);
    const char *code = json_string_value(json_object_get(art, "bytecode"));
    assert_non_null(code);
    json_t *accts = anvil_util_rpc(loop, rpc, "eth_accounts", NULL);
    snprintf(acct0, 43, "%s", json_string_value(json_array_get(accts, 0)));
    json_decref(accts);
    json_t *params = json_pack("[{s:s, s:s}]", "from", acct0, "data", code);
    char *ptxt = json_dumps(params, JSON_COMPACT);
    json_t *h = anvil_util_rpc(loop, rpc, "eth_sendTransaction", ptxt);
    assert_int_equal(chain_rpc_parse_fixed(h, tx, 32), DM_OK);
    json_decref(h);
    free(ptxt);
    json_decref(params);
    json_decref(art);
    chain_rpc_receipt *r = anvil_util_receipt(loop, rpc, tx);
    assert_int_equal(r->status, 1);
    assert_true(r->has_contract_address);
    memcpy(contract, r->contract_address, 20);
    chain_rpc_receipt_free(r);
}
