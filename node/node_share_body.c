/*
 * Shares: the canonical signed body, the reference's validation table and the
 * stored record. Pure functions, any thread.
 *
 * Why a strict reader: share_id = SHA-256(body) must name exactly one share, so
 * a body has exactly one acceptable byte string. msgpack allows several
 * encodings of the same value (uint 5 as fixint or as uint64, a 20-byte bin as
 * bin8 or bin32); a decoder that accepted them all would let anyone mint new
 * ids for an existing share and defeat duplicate detection. Every reader here
 * accepts only the shortest form, which is what msgpack-c's packer writes.
 */
#include "node_share.h"
#include "node_share_internal.h"

#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "net_msg.h"

#include <msgpack.h>
#include <string.h>

/* ---------------------------------------------------------------- reader */

static size_t rd_left(const share_rd *r)
{
    return (size_t)(r->end - r->p);
}

static int rd_be(share_rd *r, size_t width, uint64_t *v)
{
    if (width > rd_left(r))
        return DM_EPARSE;
    uint64_t x = 0;
    for (size_t i = 0; i < width; i++)
        x = x << 8 | r->p[i];
    r->p += width;
    *v = x;
    return DM_OK;
}

int node_share__rd_array(share_rd *r, uint32_t count)
{
    if (r->p == r->end)
        return DM_EPARSE;
    uint8_t b = *r->p++;
    uint64_t n;
    int rc;
    if ((b & 0xf0) == 0x90) {
        n = b & 0x0f;
    } else if (b == 0xdc) {
        if ((rc = rd_be(r, 2, &n)))
            return rc;
        if (n < 16)
            return DM_EPARSE;
    } else if (b == 0xdd) {
        if ((rc = rd_be(r, 4, &n)))
            return rc;
        if (n < 65536)
            return DM_EPARSE;
    } else {
        return DM_EPARSE;
    }
    return n == count ? DM_OK : DM_EPARSE;
}

int node_share__rd_uint(share_rd *r, uint64_t *v)
{
    if (r->p == r->end)
        return DM_EPARSE;
    uint8_t b = *r->p++;
    if (b <= 0x7f) {
        *v = b;
        return DM_OK;
    }
    size_t width;
    uint64_t min;
    switch (b) {
    case 0xcc:
        width = 1, min = 0x80;
        break;
    case 0xcd:
        width = 2, min = 0x100;
        break;
    case 0xce:
        width = 4, min = 0x10000;
        break;
    case 0xcf:
        width = 8, min = 0x100000000ull;
        break;
    default:
        return DM_EPARSE;
    }
    uint64_t x;
    int rc = rd_be(r, width, &x);
    if (rc)
        return rc;
    if (x < min)
        return DM_EPARSE; /* a shorter encoding exists */
    *v = x;
    return DM_OK;
}

/* bin/str body after its header: length checked against max and what remains. */
static int rd_payload(share_rd *r, uint64_t n, size_t max, const uint8_t **p, size_t *len)
{
    if (n > max)
        return DM_ETOOBIG;
    if (n > rd_left(r))
        return DM_EPARSE;
    *p = r->p;
    *len = (size_t)n;
    r->p += n;
    return DM_OK;
}

int node_share__rd_bin(share_rd *r, const uint8_t **p, size_t *n, size_t max)
{
    if (r->p == r->end)
        return DM_EPARSE;
    uint8_t b = *r->p++;
    uint64_t len, min;
    size_t width;
    switch (b) {
    case 0xc4:
        width = 1, min = 0;
        break;
    case 0xc5:
        width = 2, min = 0x100;
        break;
    case 0xc6:
        width = 4, min = 0x10000;
        break;
    default:
        return DM_EPARSE;
    }
    int rc = rd_be(r, width, &len);
    if (rc)
        return rc;
    if (len < min)
        return DM_EPARSE;
    return rd_payload(r, len, max, p, n);
}

int node_share__rd_str(share_rd *r, const uint8_t **p, size_t *n, size_t max)
{
    if (r->p == r->end)
        return DM_EPARSE;
    uint8_t b = *r->p++;
    uint64_t len, min;
    size_t width;
    if ((b & 0xe0) == 0xa0)
        return rd_payload(r, b & 0x1f, max, p, n);
    switch (b) {
    case 0xd9:
        width = 1, min = 32;
        break;
    case 0xda:
        width = 2, min = 0x100;
        break;
    case 0xdb:
        width = 4, min = 0x10000;
        break;
    default:
        return DM_EPARSE;
    }
    int rc = rd_be(r, width, &len);
    if (rc)
        return rc;
    if (len < min)
        return DM_EPARSE;
    return rd_payload(r, len, max, p, n);
}

int node_share__rd_bool(share_rd *r, int *v)
{
    if (r->p == r->end)
        return DM_EPARSE;
    uint8_t b = *r->p++;
    if (b != 0xc2 && b != 0xc3)
        return DM_EPARSE;
    *v = b == 0xc3;
    return DM_OK;
}

/* ---------------------------------------------------------------- writer */

static int buf_write(void *data, const char *p, size_t n)
{
    return dm_buf_append(data, p, n) ? -1 : 0;
}

/* ------------------------------------------------------- validation table */

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int node_share_parse_recipient(const char *text, size_t n, uint8_t out[20])
{
    /* ^0x[a-fA-F0-9]{40}$ : exactly 42 characters, lower-case "0x". (Python's
     * `$` would also accept one trailing newline; we do not.) */
    if (!text || n != 42 || text[0] != '0' || text[1] != 'x')
        return DM_EINVAL;
    for (size_t i = 2; i < n; i++)
        if (!is_hex(text[i]))
            return DM_EINVAL;
    return dm_hex_decode(out, 20, text + 2, 40) ? DM_EINVAL : DM_OK;
}

int node_share_check_amount(const char *text, size_t n)
{
    /* An integer with 0 < amount < 10^30, as plain decimal digits: no sign, no
     * leading zero, no decimal point, exponent or spaces. Any well-formed
     * number of 31 or more digits is >= 10^30 (DM_ERANGE); so is "0". */
    if (!text || n == 0)
        return DM_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (text[i] < '0' || text[i] > '9')
            return DM_EINVAL;
    if (n == 1 && text[0] == '0')
        return DM_ERANGE;
    if (text[0] == '0')
        return DM_EINVAL;
    if (n > NODE_SHARE_AMOUNT_MAX_DIGITS)
        return DM_ERANGE;
    return DM_OK;
}

int node_share_parse_hash(const char *text, size_t n, uint8_t out[32])
{
    if (!text || n != 64)
        return DM_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!is_hex(text[i]))
            return DM_EINVAL;
    return dm_hex_decode(out, 32, text, 64) ? DM_EINVAL : DM_OK;
}

/* ---------------------------------------------------------------- body */

static int fields_check(const node_share_fields *f)
{
    if (f->seq < 1)
        return DM_EINVAL;
    size_t alen = strnlen(f->amount, sizeof f->amount);
    if (alen == sizeof f->amount)
        return DM_EINVAL; /* not NUL-terminated */
    int rc = node_share_check_amount(f->amount, alen);
    if (rc)
        return rc;
    if (f->data_len > NET_SHARE_DATA_MAX)
        return DM_ETOOBIG;
    if (!f->data && f->data_len)
        return DM_EINVAL;
    uint8_t h[32];
    if ((rc = crypto_sha256(h, f->data, f->data_len)))
        return rc;
    return memcmp(h, f->data_hash, 32) == 0 ? DM_OK : DM_EINVAL;
}

int node_share_body_encode(dm_buf *out, const node_share_fields *f)
{
    if (!out || !f)
        return DM_EINVAL;
    int rc = fields_check(f);
    if (rc)
        return rc;
    size_t start = out->len;
    size_t alen = strlen(f->amount);
    if ((rc = dm_buf_reserve(out, f->data_len + 160)))
        return rc;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    /* the reserve above makes these appends infallible short of a bug */
    int bad = msgpack_pack_array(&pk, 8) || msgpack_pack_uint64(&pk, NODE_SHARE_FORMAT) ||
              msgpack_pack_bin(&pk, 32) || msgpack_pack_bin_body(&pk, f->origin, 32) ||
              msgpack_pack_uint64(&pk, f->seq) || msgpack_pack_uint64(&pk, f->timestamp_ms) ||
              msgpack_pack_bin(&pk, 20) || msgpack_pack_bin_body(&pk, f->recipient, 20) ||
              msgpack_pack_str(&pk, alen) || msgpack_pack_str_body(&pk, f->amount, alen) ||
              msgpack_pack_bin(&pk, f->data_len) ||
              (f->data_len && msgpack_pack_bin_body(&pk, f->data, f->data_len)) ||
              msgpack_pack_bin(&pk, 32) || msgpack_pack_bin_body(&pk, f->data_hash, 32);
    if (bad) {
        out->len = start;
        return DM_ENOMEM;
    }
    return DM_OK;
}

/* The first three fields, shared by peek and decode. */
static int rd_header(share_rd *r, uint8_t origin[32], uint64_t *seq)
{
    uint64_t format;
    const uint8_t *p;
    size_t n;
    int rc;
    if ((rc = node_share__rd_array(r, 8)) || (rc = node_share__rd_uint(r, &format)))
        return rc;
    if (format != NODE_SHARE_FORMAT)
        return DM_EINVAL;
    if ((rc = node_share__rd_bin(r, &p, &n, 32)))
        return rc == DM_ETOOBIG ? DM_EPARSE : rc;
    if (n != 32)
        return DM_EPARSE;
    memcpy(origin, p, 32);
    if ((rc = node_share__rd_uint(r, seq)))
        return rc;
    return *seq >= 1 ? DM_OK : DM_EINVAL;
}

int node_share__body_peek(const uint8_t *body, size_t n, uint8_t origin[32], uint64_t *seq)
{
    if (!body)
        return DM_EINVAL;
    share_rd r = {body, body + n};
    return rd_header(&r, origin, seq);
}

int node_share_body_decode(const uint8_t *body, size_t n, node_share_fields *out)
{
    if (!body || !out)
        return DM_EINVAL;
    node_share_fields f;
    memset(&f, 0, sizeof f);
    share_rd r = {body, body + n};
    const uint8_t *p;
    size_t len;
    int rc;
    if ((rc = rd_header(&r, f.origin, &f.seq)) || (rc = node_share__rd_uint(&r, &f.timestamp_ms)))
        return rc;
    if ((rc = node_share__rd_bin(&r, &p, &len, 20)))
        return rc == DM_ETOOBIG ? DM_EPARSE : rc;
    if (len != 20)
        return DM_EPARSE;
    memcpy(f.recipient, p, 20);
    /* the string may be longer than an amount can be: read it whole (bounded by
     * the input), then apply the amount rule for the right error code */
    if ((rc = node_share__rd_str(&r, &p, &len, n)))
        return rc;
    if ((rc = node_share_check_amount((const char *)p, len)))
        return rc;
    memcpy(f.amount, p, len);
    f.amount[len] = '\0';
    if ((rc = node_share__rd_bin(&r, &f.data, &f.data_len, NET_SHARE_DATA_MAX)))
        return rc;
    if ((rc = node_share__rd_bin(&r, &p, &len, 32)))
        return rc == DM_ETOOBIG ? DM_EPARSE : rc;
    if (len != 32)
        return DM_EPARSE;
    memcpy(f.data_hash, p, 32);
    if (r.p != r.end)
        return DM_EPARSE; /* trailing bytes */
    uint8_t h[32];
    if ((rc = crypto_sha256(h, f.data, f.data_len)))
        return rc;
    if (memcmp(h, f.data_hash, 32) != 0)
        return DM_EINVAL;
    if ((rc = crypto_sha256(f.id, body, n)))
        return rc;
    *out = f;
    return DM_OK;
}

/* ---------------------------------------------------------------- record */

int node_share__record_encode(dm_buf *out, const uint8_t *sealed, size_t sealed_len,
                              const uint8_t *sig, size_t sig_len, uint64_t received_ms)
{
    size_t start = out->len;
    int rc = dm_buf_reserve(out, sealed_len + sig_len + 32);
    if (rc)
        return rc;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    int bad = msgpack_pack_array(&pk, 3) || msgpack_pack_bin(&pk, sealed_len) ||
              msgpack_pack_bin_body(&pk, sealed, sealed_len) || msgpack_pack_bin(&pk, sig_len) ||
              (sig_len && msgpack_pack_bin_body(&pk, sig, sig_len)) ||
              msgpack_pack_uint64(&pk, received_ms);
    if (bad) {
        out->len = start;
        return DM_ENOMEM;
    }
    return DM_OK;
}

int node_share__record_decode(const uint8_t *v, size_t n, const uint8_t **sealed,
                              size_t *sealed_len, const uint8_t **sig, size_t *sig_len,
                              uint64_t *received_ms)
{
    share_rd r = {v, v + n};
    if (node_share__rd_array(&r, 3) || node_share__rd_bin(&r, sealed, sealed_len, n) ||
        node_share__rd_bin(&r, sig, sig_len, NET_MAX_SIG) || node_share__rd_uint(&r, received_ms) ||
        r.p != r.end)
        return DM_ECORRUPT;
    return DM_OK;
}
