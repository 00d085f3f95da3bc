/* dmnode entry point: see node_cli.c. */
#include "node_cli.h"

#include <signal.h>

int main(int argc, char **argv)
{
    /* a peer or API client that resets its connection must not kill the node: writes to
     * it then fail with EPIPE, which libuv reports to the write callback */
    signal(SIGPIPE, SIG_IGN);
    return node_cli_main(argc, argv);
}
