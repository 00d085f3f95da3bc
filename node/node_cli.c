/* TODO(integration): the CLI is being written; this placeholder only lets the tree build. */
#include <stdio.h>
int node_cli_main(int argc, char **argv);
int node_cli_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "dmnode: not built yet\n");
    return 1;
}
