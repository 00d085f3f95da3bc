#include "groups.h"

int main(void)
{
    int failed = 0;
    failed += test_node_config();
    failed += test_node_keys();
    failed += test_node_share();
    failed += test_node_audit();
    failed += test_node_ratelimit();
    failed += test_node_metrics();
    failed += test_node_apikeys();
    failed += test_node_api_body();
    return failed ? 1 : 0;
}
