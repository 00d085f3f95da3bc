#ifndef DM_TESTS_CHAIN_ANVIL_UTIL_H
#define DM_TESTS_CHAIN_ANVIL_UTIL_H
/*
 * A real anvil for the chain tests, from the pinned npm package (scripts/setup-node.sh),
 * started as a child process on a free loopback port, and the few synchronous JSON-RPC
 * steps every such test needs (a call, waiting for a receipt, deploying AuditAnchor).
 * The child dies with the test program (PR_SET_PDEATHSIG).
 */
#include "chain_rpc.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#define ANVIL_UTIL_REL "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
#define ANVIL_UTIL_CHAIN_ID 31337

typedef struct {
    pid_t pid; /* 0: not running */
    uint16_t port;
    char url[64]; /* http://127.0.0.1:PORT/ */
} anvil_proc;

/** The anvil binary ($DM_SOURCE_DIR or .., then ANVIL_UTIL_REL); false if not executable. */
bool anvil_util_bin(char *out, size_t cap);
/** A loopback port that was free a moment ago. */
uint16_t anvil_util_free_port(void);

/**
 * Start anvil on `port` (0: a free one) with chain id 31337, silent, plus `extra`
 * arguments (NULL-terminated list, or NULL), and wait up to `wait_ms` for its port.
 * With port 0 up to three ports are tried. False if it did not come up (the child is
 * reaped). Fills `a` on success.
 */
bool anvil_util_start(anvil_proc *a, uint16_t port, const char *const *extra, unsigned wait_ms);
/** In a test that needs anvil: skip it, saying why, when the group found none. */
#define ANVIL_UTIL_NEED(have_anvil, group)                                                         \
    do {                                                                                           \
        if (!(have_anvil)) {                                                                       \
            fprintf(stderr, "[ %s ] SKIP: no anvil (run scripts/setup-node.sh)\n", group);         \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/** SIGTERM, then SIGKILL after 2 s; reaps. No-op when not running. */
void anvil_util_stop(anvil_proc *a);
/** SIGKILL at once (a crash); reaps. No-op when not running. */
void anvil_util_kill(anvil_proc *a);

/**
 * One call with `rpc` on `loop`, run until it completes (fails the test after `wait_ms`).
 * Returns its status; *out is the result (new reference) on DM_OK, else NULL; `msg`
 * (CHAIN_RPC_MSG_MAX bytes, may be NULL) gets the error message.
 */
int anvil_util_call(uv_loop_t *loop, chain_rpc_t *rpc, const char *method, const char *params,
                    json_t **out, char *msg, unsigned wait_ms);
/** Close the client *rpc (if any) on `loop`, run the loop until everything is closed and
 *  close the loop (asserting it closes). *rpc is NULL afterwards. */
void anvil_util_client_close(uv_loop_t *loop, chain_rpc_t **rpc);
/** As anvil_util_call, failing the test on any error (60 s). */
json_t *anvil_util_rpc(uv_loop_t *loop, chain_rpc_t *rpc, const char *method, const char *params);
/** The receipt of `tx`, polled for up to 10 s (anvil answers eth_send* before it mines);
 *  fails the test if none. Free with chain_rpc_receipt_free. */
chain_rpc_receipt *anvil_util_receipt(uv_loop_t *loop, chain_rpc_t *rpc, const uint8_t tx[32]);
/** Deploy contracts/AuditAnchor.json from anvil's unlocked account 0 (its address text in
 *  `acct0`), waiting for the receipt: the contract address and the deployment tx. */
void anvil_util_deploy(uv_loop_t *loop, chain_rpc_t *rpc, char acct0[43], uint8_t contract[20],
                       uint8_t tx[32]);

#endif
