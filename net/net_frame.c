/* Frame boundaries: the 4-byte big-endian length prefix, checked before allocation. */
#include "dm_buf.h"
#include "dm_err.h"
#include "net_msg.h"

int net_frame_header(const uint8_t *buf, size_t n, size_t *payload_len)
{
    if (n < 4)
        return DM_EAGAIN;
    uint32_t len = dm_get_u32be(buf);
    if (len == 0)
        return DM_EPROTO;
    if (len > NET_FRAME_MAX)
        return DM_ETOOBIG;
    *payload_len = len;
    return DM_OK;
}
