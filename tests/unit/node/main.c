#include "groups.h"

/* TODO(integration): groups are weak while the module is being written in parallel. */
#pragma weak test_node_config
#pragma weak test_node_keys

int main(void)
{
    int (*groups[])(void) = {test_node_config, test_node_keys};
    int failed = 0;
    for (unsigned i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (groups[i])
            failed += groups[i]();
    return failed ? 1 : 0;
}
