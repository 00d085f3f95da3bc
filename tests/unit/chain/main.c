#include "groups.h"

/* TODO(integration): groups are weak while the module is being written in parallel. */
#pragma weak test_chain_rlp
#pragma weak test_chain_tx
#pragma weak test_chain_rpc
#pragma weak test_chain_contract

int main(void)
{
    int (*groups[])(void) = {test_chain_rlp, test_chain_tx, test_chain_rpc, test_chain_contract,
                             test_chain_verify, test_chain_anchor};
    int failed = 0;
    for (unsigned i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (groups[i])
            failed += groups[i]();
    return failed ? 1 : 0;
}
