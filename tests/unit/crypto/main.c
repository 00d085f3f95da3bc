#include "groups.h"

/* TODO(integration): groups are weak while the module is being written in parallel. */
#pragma weak test_crypto_hash
#pragma weak test_crypto_fernet
#pragma weak test_crypto_rsa
#pragma weak test_crypto_eth
#pragma weak test_crypto_merkle

int main(void)
{
    int (*groups[])(void) = {test_crypto_hash, test_crypto_fernet, test_crypto_rsa,
                             test_crypto_eth, test_crypto_merkle};
    int failed = 0;
    for (unsigned i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (groups[i])
            failed += groups[i]();
    return failed ? 1 : 0;
}
