#ifndef DM_NODE_CLI_H
#define DM_NODE_CLI_H

/*
 * The dmnode command line (README "CLI"). Exit codes (stable, documented):
 *   0 success
 *   1 runtime failure (I/O, storage, crypto)
 *   2 usage error: unknown command or option, or input rejected as invalid
 *   3 configuration rejected (strict config)
 *   4 master password missing, unreadable or wrong
 *   5 integrity failure: a key record or identity record was altered
 *   6 data directory in use by another process (a running daemon)
 *   7 state conflict: not initialised, or already initialised
 */
enum {
    NODE_EXIT_OK = 0,
    NODE_EXIT_FAILURE = 1,
    NODE_EXIT_USAGE = 2,
    NODE_EXIT_CONFIG = 3,
    NODE_EXIT_PASSWORD = 4,
    NODE_EXIT_TAMPER = 5,
    NODE_EXIT_BUSY = 6,
    NODE_EXIT_STATE = 7,
};

/** Run the CLI; returns the process exit code. */
int node_cli_main(int argc, char **argv);

#endif
