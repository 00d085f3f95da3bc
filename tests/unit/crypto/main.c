#include "groups.h"

int main(void)
{
    int failed = 0;
    failed += test_crypto_hash();
    failed += test_crypto_fernet();
    failed += test_crypto_rsa();
    failed += test_crypto_eth();
    failed += test_crypto_merkle();
    return failed ? 1 : 0;
}
