#ifndef DM_TESTS_NODE_GROUPS_H
#define DM_TESTS_NODE_GROUPS_H
/* Each tests/unit/node/test_*.c defines one group runner returning its failure count. */
int test_node_config(void);
int test_node_keys(void);
int test_node_share(void);
int test_node_audit(void);
int test_node_ratelimit(void);
int test_node_metrics(void);
int test_node_apikeys(void);
int test_node_api_body(void);
#endif
