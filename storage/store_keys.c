#include "store_keys.h"
#include "dm_buf.h"
#include "dm_err.h"

#include <string.h>

void store_key_u64(uint8_t out[STORE_KEY_U64_LEN], uint64_t v)
{
    dm_put_u64be(out, v);
}

int store_key_u64_decode(const void *key, size_t klen, uint64_t *v)
{
    if (!key || klen != STORE_KEY_U64_LEN)
        return DM_EINVAL;
    *v = dm_get_u64be(key);
    return DM_OK;
}

void store_key_seq(uint8_t out[STORE_KEY_SEQ_LEN], const uint8_t origin[STORE_KEY_ID_LEN],
                   uint64_t seq)
{
    memcpy(out, origin, STORE_KEY_ID_LEN);
    dm_put_u64be(out + STORE_KEY_ID_LEN, seq);
}

int store_key_seq_decode(const void *key, size_t klen, uint8_t origin[STORE_KEY_ID_LEN],
                         uint64_t *seq)
{
    if (!key || klen != STORE_KEY_SEQ_LEN)
        return DM_EINVAL;
    const uint8_t *k = key;
    if (origin)
        memcpy(origin, k, STORE_KEY_ID_LEN);
    if (seq)
        *seq = dm_get_u64be(k + STORE_KEY_ID_LEN);
    return DM_OK;
}

int store_key_id_decode(const void *key, size_t klen, uint8_t out[STORE_KEY_ID_LEN])
{
    if (!key || klen != STORE_KEY_ID_LEN)
        return DM_EINVAL;
    if (out)
        memcpy(out, key, STORE_KEY_ID_LEN);
    return DM_OK;
}
