#include "groups.h"

int main(void)
{
    int failed = 0;
    failed += test_chain_rlp();
    failed += test_chain_tx();
    failed += test_chain_rpc();
    failed += test_chain_contract();
    failed += test_chain_verify();
    failed += test_chain_anchor();
    failed += test_chain_trail();
    return failed ? 1 : 0;
}
