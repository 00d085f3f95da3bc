#include "groups.h"

/* TODO(integration): groups are weak while the module is being written in parallel. */
#pragma weak test_net_msg
#pragma weak test_net_http
#pragma weak test_net_host

int main(void)
{
    int (*groups[])(void) = {test_net_msg, test_net_http, test_net_host};
    int failed = 0;
    for (unsigned i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (groups[i])
            failed += groups[i]();
    return failed ? 1 : 0;
}
