#ifndef DM_NODE_DAEMON_H
#define DM_NODE_DAEMON_H

#include "node_config.h"
#include "node_keys.h"
#include "store.h"

#include <stdio.h>

/*
 * The daemon (`dmnode run`): the composition root of the running node. One
 * libuv loop carries the P2P host, the share service and the internal API;
 * RSA and bulk crypto go to the thread pool. Prints one JSON status line
 * to `status_out` once listening, then runs until SIGINT/SIGTERM, when it
 * stops accepting, flushes pending commits, persists the peer table and
 * returns. `store` and `keys` are borrowed (the caller opened and unlocked
 * them). Returns 0 or a DM_E* code (e.g. DM_ECONN if a port cannot be bound).
 */
int node_daemon_run(const node_config *cfg, store_t *store, node_keys_t *keys, FILE *status_out);

#endif
