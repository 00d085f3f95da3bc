#ifndef DM_TESTS_CHAIN_GROUPS_H
#define DM_TESTS_CHAIN_GROUPS_H
/* Each tests/unit/chain/test_*.c defines one group runner returning its failure count. */
int test_chain_rlp(void);
int test_chain_tx(void);
int test_chain_rpc(void);
int test_chain_contract(void);
int test_chain_verify(void);
int test_chain_anchor(void);
int test_chain_trail(void);
#endif
