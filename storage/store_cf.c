#include "store.h"

const char *store_cf_name(store_cf cf)
{
    switch (cf) {
    case STORE_CF_DEFAULT: return "default";
    case STORE_CF_META: return "meta";
    case STORE_CF_KEYS: return "keys";
    case STORE_CF_SHARES: return "shares";
    case STORE_CF_SEQ: return "share_seq";
    case STORE_CF_AUDIT: return "audit";
    case STORE_CF_OUTBOX: return "outbox";
    case STORE_CF_ANCHORS: return "anchors";
    case STORE_CF_PEERS: return "peers";
    case STORE_CF_APIKEYS: return "apikeys";
    case STORE_CF__COUNT: break;
    }
    return "invalid";
}
