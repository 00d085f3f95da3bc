#ifndef DM_TESTS_CRYPTO_GROUPS_H
#define DM_TESTS_CRYPTO_GROUPS_H
/* Each tests/unit/crypto/test_*.c defines one group runner returning its failure count. */
int test_crypto_hash(void);
int test_crypto_fernet(void);
int test_crypto_rsa(void);
int test_crypto_eth(void);
int test_crypto_merkle(void);
#endif
