#include "groups.h"

int main(void)
{
    int failed = 0;
    failed += test_net_msg();
    failed += test_net_http();
    failed += test_net_host();
    return failed ? 1 : 0;
}
