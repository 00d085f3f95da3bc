/*
 * 256-bit integers and Ethereum's text forms for them. See chain_hex.h.
 *
 * Arithmetic works on the big-endian bytes directly with 16-bit (add/sub) or 128-bit
 * (mul/div by a u64) intermediates; values are small fixed arrays, so clarity beats speed.
 */
#include "chain_hex.h"

#include "dm_enc.h"
#include "dm_err.h"

#include <string.h>

void chain_u256_from_u64(chain_u256 *out, uint64_t v)
{
    memset(out->be, 0, 24);
    dm_put_u64be(out->be + 24, v);
}

int chain_u256_to_u64(const chain_u256 *v, uint64_t *out)
{
    for (size_t i = 0; i < 24; i++)
        if (v->be[i])
            return DM_ERANGE;
    *out = dm_get_u64be(v->be + 24);
    return DM_OK;
}

int chain_u256_cmp(const chain_u256 *a, const chain_u256 *b)
{
    int c = memcmp(a->be, b->be, 32);
    return (c > 0) - (c < 0);
}

bool chain_u256_is_zero(const chain_u256 *v)
{
    for (size_t i = 0; i < 32; i++)
        if (v->be[i])
            return false;
    return true;
}

int chain_u256_add(chain_u256 *out, const chain_u256 *a, const chain_u256 *b)
{
    chain_u256 r;
    unsigned carry = 0;
    for (size_t i = 32; i-- > 0;) {
        unsigned s = (unsigned)a->be[i] + b->be[i] + carry;
        r.be[i] = (uint8_t)s;
        carry = s >> 8;
    }
    if (carry)
        return DM_ERANGE;
    *out = r;
    return DM_OK;
}

int chain_u256_sub(chain_u256 *out, const chain_u256 *a, const chain_u256 *b)
{
    if (chain_u256_cmp(a, b) < 0)
        return DM_ERANGE;
    chain_u256 r;
    int borrow = 0;
    for (size_t i = 32; i-- > 0;) {
        int d = (int)a->be[i] - b->be[i] - borrow;
        borrow = d < 0;
        r.be[i] = (uint8_t)(d + (borrow ? 256 : 0));
    }
    *out = r;
    return DM_OK;
}

int chain_u256_mul_u64(chain_u256 *out, const chain_u256 *a, uint64_t m)
{
    chain_u256 r;
    unsigned __int128 carry = 0;
    for (size_t i = 32; i-- > 0;) {
        unsigned __int128 p = (unsigned __int128)a->be[i] * m + carry;
        r.be[i] = (uint8_t)p;
        carry = p >> 8;
    }
    if (carry)
        return DM_ERANGE;
    *out = r;
    return DM_OK;
}

int chain_u256_div_u64(chain_u256 *out, const chain_u256 *a, uint64_t d, uint64_t *rem)
{
    if (d == 0)
        return DM_EINVAL;
    chain_u256 q;
    unsigned __int128 r = 0;
    for (size_t i = 0; i < 32; i++) {
        r = (r << 8) | a->be[i];
        q.be[i] = (uint8_t)(r / d);
        r %= d;
    }
    *out = q;
    if (rem)
        *rem = (uint64_t)r;
    return DM_OK;
}

int chain_u256_from_dec(chain_u256 *out, const char *s, size_t n)
{
    if (n == 0)
        return DM_EPARSE;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return DM_EPARSE;
    if (n > 1 && s[0] == '0')
        return DM_EPARSE;
    chain_u256 v;
    memset(&v, 0, sizeof v);
    for (size_t i = 0; i < n; i++) {
        chain_u256 digit;
        chain_u256_from_u64(&digit, (uint64_t)(s[i] - '0'));
        if (chain_u256_mul_u64(&v, &v, 10) != DM_OK || chain_u256_add(&v, &v, &digit) != DM_OK)
            return DM_ERANGE;
    }
    *out = v;
    return DM_OK;
}

void chain_u256_to_dec(const chain_u256 *v, char out[CHAIN_U256_DEC_MAX])
{
    char tmp[CHAIN_U256_DEC_MAX];
    size_t k = 0;
    chain_u256 x = *v;
    /* 19 decimal digits per division keep the number of 256-bit passes small */
    const uint64_t chunk = 10000000000000000000ull;
    do {
        uint64_t r;
        chain_u256_div_u64(&x, &x, chunk, &r);
        bool last = chain_u256_is_zero(&x);
        for (int i = 0; i < 19 && (!last || r || i == 0); i++) {
            tmp[k++] = (char)('0' + r % 10);
            r /= 10;
        }
    } while (!chain_u256_is_zero(&x));
    for (size_t i = 0; i < k; i++)
        out[i] = tmp[k - 1 - i];
    out[k] = '\0';
}

/* Validate QUANTITY syntax; on success *digits and *nd are the hex digits after "0x". */
static int quantity_digits(const char *s, size_t n, const char **digits, size_t *nd)
{
    if (n < 3 || s[0] != '0' || s[1] != 'x')
        return DM_EPARSE;
    s += 2;
    n -= 2;
    for (size_t i = 0; i < n; i++)
        if (dm_hex_digit(s[i]) < 0)
            return DM_EPARSE;
    if (n > 1 && s[0] == '0')
        return DM_EPARSE; /* leading zero */
    *digits = s;
    *nd = n;
    return DM_OK;
}

int chain_hex_quantity_parse_u64(const char *s, size_t n, uint64_t *out)
{
    const char *d;
    size_t nd;
    int rc = quantity_digits(s, n, &d, &nd);
    if (rc != DM_OK)
        return rc;
    if (nd > 16)
        return DM_ERANGE;
    uint64_t v = 0;
    for (size_t i = 0; i < nd; i++)
        v = (v << 4) | (uint64_t)dm_hex_digit(d[i]);
    *out = v;
    return DM_OK;
}

int chain_hex_quantity_parse_u256(const char *s, size_t n, chain_u256 *out)
{
    const char *d;
    size_t nd;
    int rc = quantity_digits(s, n, &d, &nd);
    if (rc != DM_OK)
        return rc;
    if (nd > 64)
        return DM_ERANGE;
    chain_u256 v;
    memset(&v, 0, sizeof v);
    /* digit i from the right goes to byte 31 - i/2, high nibble when i is odd */
    for (size_t i = 0; i < nd; i++) {
        unsigned x = (unsigned)dm_hex_digit(d[nd - 1 - i]);
        v.be[31 - i / 2] |= (uint8_t)(i % 2 ? x << 4 : x);
    }
    *out = v;
    return DM_OK;
}

static const char hexdig[] = "0123456789abcdef";

/* "0x" + the hex of be[0..n) without leading zeros ("0x0" for zero). */
static void quantity_format(const uint8_t *be, size_t n, char *out)
{
    size_t k = 0;
    out[k++] = '0';
    out[k++] = 'x';
    bool started = false;
    for (size_t i = 0; i < 2 * n; i++) {
        unsigned x = i % 2 ? be[i / 2] & 0xf : be[i / 2] >> 4;
        if (!x && !started)
            continue;
        started = true;
        out[k++] = hexdig[x];
    }
    if (!started)
        out[k++] = '0';
    out[k] = '\0';
}

void chain_hex_quantity_format_u64(uint64_t v, char out[CHAIN_U64_HEX_MAX])
{
    uint8_t be[8];
    dm_put_u64be(be, v);
    quantity_format(be, sizeof be, out);
}

void chain_hex_quantity_format_u256(const chain_u256 *v, char out[CHAIN_U256_HEX_MAX])
{
    quantity_format(v->be, sizeof v->be, out);
}

/* Validate DATA syntax; on success *digits and *nd are the (even number of) hex digits. */
static int data_digits(const char *s, size_t n, const char **digits, size_t *nd)
{
    if (n < 2 || s[0] != '0' || s[1] != 'x' || n % 2)
        return DM_EPARSE;
    for (size_t i = 2; i < n; i++)
        if (dm_hex_digit(s[i]) < 0)
            return DM_EPARSE;
    *digits = s + 2;
    *nd = n - 2;
    return DM_OK;
}

int chain_hex_data_parse_fixed(const char *s, size_t n, uint8_t *out, size_t len)
{
    const char *d;
    size_t nd;
    int rc = data_digits(s, n, &d, &nd);
    if (rc != DM_OK)
        return rc;
    if (nd / 2 != len)
        return DM_EPARSE;
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)(dm_hex_digit(d[2 * i]) << 4 | dm_hex_digit(d[2 * i + 1]));
    return DM_OK;
}

int chain_hex_data_parse(const char *s, size_t n, dm_buf *out)
{
    const char *d;
    size_t nd;
    int rc = data_digits(s, n, &d, &nd);
    if (rc != DM_OK)
        return rc;
    rc = dm_buf_reserve(out, nd / 2);
    if (rc != DM_OK)
        return rc;
    for (size_t i = 0; i < nd / 2; i++)
        out->data[out->len + i] = (uint8_t)(dm_hex_digit(d[2 * i]) << 4 | dm_hex_digit(d[2 * i + 1]));
    out->len += nd / 2;
    return DM_OK;
}

int chain_hex_data_append(dm_buf *out, const uint8_t *p, size_t len)
{
    if (len > (SIZE_MAX - 2) / 2)
        return DM_ETOOBIG;
    int rc = dm_buf_reserve(out, 2 + 2 * len);
    if (rc != DM_OK)
        return rc;
    char *w = (char *)out->data + out->len;
    *w++ = '0';
    *w++ = 'x';
    for (size_t i = 0; i < len; i++) {
        *w++ = hexdig[p[i] >> 4];
        *w++ = hexdig[p[i] & 0xf];
    }
    out->len += 2 + 2 * len;
    return DM_OK;
}
