/*
 * RLP encoder and strict decoder. See chain_rlp.h for the contract.
 *
 * Header forms (first byte b):
 *   b < 0x80           the byte itself is a one-byte string
 *   0x80 + len         string of len <= 55 bytes
 *   0xb7 + lenlen      string, then lenlen big-endian bytes of its length (> 55)
 *   0xc0 + len         list whose payload is len <= 55 bytes
 *   0xf7 + lenlen      list, long form as for strings
 */
#include "chain_rlp.h"

#include "dm_err.h"

#include <string.h>

/* ---- encoder ---- */

/* Header for a payload of `len` bytes with short-form base `base` (0x80 or 0xc0) into hdr
 * (at most 9 bytes); returns its size. */
static size_t header(uint8_t hdr[9], uint8_t base, size_t len)
{
    if (len <= 55) {
        hdr[0] = (uint8_t)(base + len);
        return 1;
    }
    uint8_t tmp[8];
    size_t k = 0;
    for (size_t v = len; v; v >>= 8)
        tmp[k++] = (uint8_t)(v & 0xff);
    hdr[0] = (uint8_t)(base + 55 + k);
    for (size_t i = 0; i < k; i++)
        hdr[1 + i] = tmp[k - 1 - i];
    return 1 + k;
}

int chain_rlp_put_bytes(dm_buf *b, const uint8_t *p, size_t n)
{
    if (n == 1 && p[0] < 0x80)
        return dm_buf_putc(b, p[0]);
    uint8_t hdr[9];
    size_t h = header(hdr, 0x80, n);
    if (n > SIZE_MAX - h)
        return DM_ETOOBIG;
    int rc = dm_buf_reserve(b, h + n);
    if (rc != DM_OK)
        return rc;
    memcpy(b->data + b->len, hdr, h);
    if (n)
        memcpy(b->data + b->len + h, p, n);
    b->len += h + n;
    return DM_OK;
}

int chain_rlp_put_uint_be(dm_buf *b, const uint8_t *be, size_t n)
{
    while (n && be[0] == 0) {
        be++;
        n--;
    }
    return chain_rlp_put_bytes(b, be, n);
}

int chain_rlp_put_u64(dm_buf *b, uint64_t v)
{
    uint8_t be[8];
    dm_put_u64be(be, v);
    return chain_rlp_put_uint_be(b, be, sizeof be);
}

int chain_rlp_put_raw(dm_buf *b, const uint8_t *p, size_t n)
{
    return dm_buf_append(b, p, n);
}

int chain_rlp_list_begin(dm_buf *b, size_t *mark)
{
    *mark = b->len;
    return DM_OK;
}

int chain_rlp_list_end(dm_buf *b, size_t mark)
{
    if (mark > b->len)
        return DM_EINVAL;
    size_t len = b->len - mark;
    uint8_t hdr[9];
    size_t h = header(hdr, 0xc0, len);
    int rc = dm_buf_reserve(b, h);
    if (rc != DM_OK)
        return rc;
    if (len)
        memmove(b->data + mark + h, b->data + mark, len);
    memcpy(b->data + mark, hdr, h);
    b->len += h;
    return DM_OK;
}

/* ---- decoder ---- */

int chain_rlp_item_read(const uint8_t *p, size_t n, chain_rlp_item *item, size_t *used)
{
    if (n == 0)
        return DM_EPARSE;
    uint8_t b = p[0];
    size_t hlen, len;
    chain_rlp_kind kind;
    if (b < 0x80) {
        item->kind = CHAIN_RLP_BYTES;
        item->payload = p;
        item->len = 1;
        item->raw = p;
        item->raw_len = 1;
        if (used)
            *used = 1;
        return DM_OK;
    }
    kind = b < 0xc0 ? CHAIN_RLP_BYTES : CHAIN_RLP_LIST;
    uint8_t base = b < 0xc0 ? 0x80 : 0xc0;
    if (b - base <= 55) {
        hlen = 1;
        len = (size_t)(b - base);
    } else {
        size_t lenlen = (size_t)(b - base - 55); /* 1..8 */
        if (n - 1 < lenlen)
            return DM_EPARSE;
        if (p[1] == 0)
            return DM_EPARSE; /* leading zero in the length */
        if (lenlen > sizeof(size_t))
            return DM_ETOOBIG;
        len = 0;
        for (size_t i = 0; i < lenlen; i++)
            len = (len << 8) | p[1 + i];
        if (len <= 55)
            return DM_EPARSE; /* long form for a short payload */
        hlen = 1 + lenlen;
    }
    if (len > n - hlen)
        return DM_EPARSE; /* runs past the input */
    if (kind == CHAIN_RLP_BYTES && len == 1 && p[hlen] < 0x80)
        return DM_EPARSE; /* a single byte < 0x80 is its own encoding */
    item->kind = kind;
    item->payload = p + hlen;
    item->len = len;
    item->raw = p;
    item->raw_len = hlen + len;
    if (used)
        *used = hlen + len;
    return DM_OK;
}

int chain_rlp_decode(const uint8_t *p, size_t n, chain_rlp_item *item)
{
    size_t used;
    chain_rlp_item it;
    int rc = chain_rlp_item_read(p, n, &it, &used);
    if (rc != DM_OK)
        return rc;
    if (used != n)
        return DM_EPARSE; /* trailing bytes */
    *item = it;
    return DM_OK;
}

static int validate(const chain_rlp_item *item, unsigned depth)
{
    if (item->kind != CHAIN_RLP_LIST)
        return DM_OK;
    if (depth >= CHAIN_RLP_MAX_DEPTH)
        return DM_ETOOBIG;
    chain_rlp_iter it = {item->payload, item->len};
    while (it.n) {
        chain_rlp_item child;
        int rc = chain_rlp_iter_next(&it, &child);
        if (rc != DM_OK)
            return rc;
        rc = validate(&child, depth + 1);
        if (rc != DM_OK)
            return rc;
    }
    return DM_OK;
}

int chain_rlp_validate(const chain_rlp_item *item)
{
    return validate(item, 0);
}

int chain_rlp_decode_tree(const uint8_t *p, size_t n, chain_rlp_item *item)
{
    chain_rlp_item it;
    int rc = chain_rlp_decode(p, n, &it);
    if (rc == DM_OK)
        rc = chain_rlp_validate(&it);
    if (rc == DM_OK)
        *item = it;
    return rc;
}

int chain_rlp_iter_init(chain_rlp_iter *it, const chain_rlp_item *list)
{
    if (list->kind != CHAIN_RLP_LIST)
        return DM_EINVAL;
    it->p = list->payload;
    it->n = list->len;
    return DM_OK;
}

bool chain_rlp_iter_done(const chain_rlp_iter *it)
{
    return it->n == 0;
}

int chain_rlp_iter_next(chain_rlp_iter *it, chain_rlp_item *out)
{
    if (it->n == 0)
        return DM_ENOTFOUND;
    size_t used;
    int rc = chain_rlp_item_read(it->p, it->n, out, &used);
    if (rc != DM_OK)
        return rc;
    it->p += used;
    it->n -= used;
    return DM_OK;
}

static int iter_kind(chain_rlp_iter *it, chain_rlp_item *out, chain_rlp_kind kind)
{
    chain_rlp_item tmp;
    chain_rlp_iter save = *it;
    int rc = chain_rlp_iter_next(it, &tmp);
    if (rc != DM_OK)
        return rc;
    if (tmp.kind != kind) {
        *it = save;
        return DM_EPARSE;
    }
    *out = tmp;
    return DM_OK;
}

int chain_rlp_iter_bytes(chain_rlp_iter *it, chain_rlp_item *out)
{
    return iter_kind(it, out, CHAIN_RLP_BYTES);
}

int chain_rlp_iter_list(chain_rlp_iter *it, chain_rlp_item *out)
{
    return iter_kind(it, out, CHAIN_RLP_LIST);
}

int chain_rlp_get_uint_be(const chain_rlp_item *item, uint8_t *out, size_t n)
{
    if (item->kind != CHAIN_RLP_BYTES)
        return DM_EPARSE;
    if (item->len && item->payload[0] == 0)
        return DM_EPARSE; /* integers carry no leading zeros; 0 is the empty string */
    if (item->len > n)
        return DM_ERANGE;
    memset(out, 0, n - item->len);
    if (item->len)
        memcpy(out + (n - item->len), item->payload, item->len);
    return DM_OK;
}

int chain_rlp_get_u64(const chain_rlp_item *item, uint64_t *v)
{
    uint8_t be[8];
    int rc = chain_rlp_get_uint_be(item, be, sizeof be);
    if (rc == DM_OK)
        *v = dm_get_u64be(be);
    return rc;
}

int chain_rlp_get_fixed(const chain_rlp_item *item, uint8_t *out, size_t n)
{
    if (item->kind != CHAIN_RLP_BYTES || item->len != n)
        return DM_EPARSE;
    if (n)
        memcpy(out, item->payload, n);
    return DM_OK;
}
