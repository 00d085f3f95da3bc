/* chain/: Ethereum JSON-RPC, RLP, EIP-1559 transactions, anchoring, verification. */
#include "dm_err.h"

/** The chain module's version of the anchoring format (docs/ANCHORING.md). */
int chain_format_version(void);
int chain_format_version(void)
{
    return 1;
}
