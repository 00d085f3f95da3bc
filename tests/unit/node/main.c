#include "groups.h"

/* TODO(integration): groups are weak while the module is being written in parallel. */
#pragma weak test_node_share
#pragma weak test_node_audit

int main(void)
{
    int failed = 0;
    failed += test_node_config();
    failed += test_node_keys();
    int (*later[])(void) = {test_node_share, test_node_audit};
    for (unsigned i = 0; i < sizeof later / sizeof later[0]; i++)
        if (later[i])
            failed += later[i]();
    return failed ? 1 : 0;
}
