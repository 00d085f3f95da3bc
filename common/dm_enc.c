#include "dm_enc.h"
#include "dm_err.h"

#include <pthread.h>
#include <string.h>

static const char HEX[] = "0123456789abcdef";

void dm_hex_encode(char *out, const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX[in[i] >> 4];
        out[2 * i + 1] = HEX[in[i] & 15];
    }
    out[2 * n] = 0;
}

int dm_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int dm_hex_decode(uint8_t *out, size_t n, const char *hex, size_t hexlen)
{
    if (hexlen != 2 * n)
        return DM_EPARSE;
    for (size_t i = 0; i < n; i++) {
        int hi = dm_hex_digit(hex[2 * i]), lo = dm_hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return DM_EPARSE;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return DM_OK;
}

int dm_hex_decode_buf(dm_buf *out, const char *hex, size_t hexlen)
{
    if (hexlen >= 2 && hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X')) {
        hex += 2;
        hexlen -= 2;
    }
    if (hexlen % 2)
        return DM_EPARSE;
    int rc = dm_buf_reserve(out, hexlen / 2);
    if (rc)
        return rc;
    rc = dm_hex_decode(out->data + out->len, hexlen / 2, hex, hexlen);
    if (rc)
        return rc;
    out->len += hexlen / 2;
    return DM_OK;
}

static const char B64S[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64U[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int dm_b64_encode(dm_buf *out, const uint8_t *in, size_t n, dm_b64_alphabet a)
{
    const char *t = a == DM_B64_URL ? B64U : B64S;
    if (n > (SIZE_MAX / 4) * 3 - 3)
        return DM_ETOOBIG;
    int rc = dm_buf_reserve(out, (n + 2) / 3 * 4);
    if (rc)
        return rc;
    char *o = (char *)out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = t[v >> 18];
        *o++ = t[(v >> 12) & 63];
        *o++ = t[(v >> 6) & 63];
        *o++ = t[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *o++ = t[v >> 18];
        *o++ = t[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = t[v >> 18];
        *o++ = t[(v >> 12) & 63];
        *o++ = t[(v >> 6) & 63];
        *o++ = '=';
    }
    out->len = (size_t)(o - (char *)out->data);
    return DM_OK;
}

/* Decoding tables: 0..63 for alphabet characters, 0xff for everything else. A table
 * lookup instead of a chain of range tests: base64 text is random, so branches
 * mispredict (this was most of a Fernet decrypt's time). */
static uint8_t DEC_STD[256], DEC_URL[256];

static void b64_tables_init(void)
{
    memset(DEC_STD, 0xff, sizeof DEC_STD);
    memset(DEC_URL, 0xff, sizeof DEC_URL);
    for (int i = 0; i < 64; i++) {
        DEC_STD[(uint8_t)B64S[i]] = (uint8_t)i;
        DEC_URL[(uint8_t)B64U[i]] = (uint8_t)i;
    }
}

static pthread_once_t b64_once = PTHREAD_ONCE_INIT;

int dm_b64_decode(dm_buf *out, const char *in, size_t n, dm_b64_alphabet a)
{
    if (n % 4)
        return DM_EPARSE;
    int rc = dm_buf_reserve(out, n / 4 * 3);
    if (rc)
        return rc;
    pthread_once(&b64_once, b64_tables_init);
    const uint8_t *dec = a == DM_B64_URL ? DEC_URL : DEC_STD;
    size_t start = out->len;
    uint8_t *o = out->data + out->len;
    /* all quanta but the last cannot hold padding: decode them without per-char branches */
    size_t body = n >= 4 ? n - 4 : 0;
    for (size_t i = 0; i < body; i += 4) {
        const uint8_t *q = (const uint8_t *)in + i;
        uint8_t c0 = dec[q[0]], c1 = dec[q[1]], c2 = dec[q[2]], c3 = dec[q[3]];
        if ((c0 | c1 | c2 | c3) & 0x80)
            goto bad;
        uint32_t w = (uint32_t)c0 << 18 | (uint32_t)c1 << 12 | (uint32_t)c2 << 6 | c3;
        o[0] = (uint8_t)(w >> 16);
        o[1] = (uint8_t)(w >> 8);
        o[2] = (uint8_t)w;
        o += 3;
    }
    for (size_t i = body; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = in[i + j];
            if (c == '=' && i + 4 == n && j >= 2) {
                /* padding only in the last quantum, and only trailing */
                if (j == 2 && in[i + 3] != '=')
                    goto bad;
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad)
                goto bad;
            v[j] = dec[(uint8_t)c];
            if (v[j] == 0xff)
                goto bad;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        *o++ = (uint8_t)(w >> 16);
        if (pad < 2)
            *o++ = (uint8_t)(w >> 8);
        if (pad < 1)
            *o++ = (uint8_t)w;
        /* canonical form: the bits dropped by padding must be zero */
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
            goto bad;
    }
    out->len = (size_t)(o - out->data);
    return DM_OK;
bad:
    memset(out->data + start, 0, (size_t)(o - (out->data + start)));
    out->len = start;
    return DM_EPARSE;
}
