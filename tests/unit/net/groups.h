#ifndef DM_TESTS_NET_GROUPS_H
#define DM_TESTS_NET_GROUPS_H
/* Each tests/unit/net/test_*.c defines one group runner returning its failure count. */
int test_net_msg(void);
int test_net_http(void);
int test_net_host(void);
#endif
