#include "dm_buf.h"
#include "dm_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dm_buf_reserve(dm_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return DM_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return DM_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return DM_ENOMEM;
    b->data = p;
    b->cap = cap;
    return DM_OK;
}

int dm_buf_append(dm_buf *b, const void *p, size_t n)
{
    int rc = dm_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return DM_OK;
}

int dm_buf_putc(dm_buf *b, uint8_t c)
{
    return dm_buf_append(b, &c, 1);
}

int dm_buf_puts(dm_buf *b, const char *s)
{
    return dm_buf_append(b, s, strlen(s));
}

int dm_buf_printf(dm_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return DM_EINVAL;
    int rc = dm_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return DM_OK;
}

void dm_put_u32be(uint8_t out[4], uint32_t v)
{
    out[0] = (uint8_t)(v >> 24);
    out[1] = (uint8_t)(v >> 16);
    out[2] = (uint8_t)(v >> 8);
    out[3] = (uint8_t)v;
}

void dm_put_u64be(uint8_t out[8], uint64_t v)
{
    dm_put_u32be(out, (uint32_t)(v >> 32));
    dm_put_u32be(out + 4, (uint32_t)v);
}

uint32_t dm_get_u32be(const uint8_t in[4])
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}

uint64_t dm_get_u64be(const uint8_t in[8])
{
    return (uint64_t)dm_get_u32be(in) << 32 | dm_get_u32be(in + 4);
}

int dm_buf_put_u32be(dm_buf *b, uint32_t v)
{
    uint8_t t[4];
    dm_put_u32be(t, v);
    return dm_buf_append(b, t, 4);
}

int dm_buf_put_u64be(dm_buf *b, uint64_t v)
{
    uint8_t t[8];
    dm_put_u64be(t, v);
    return dm_buf_append(b, t, 8);
}

const char *dm_buf_cstr(dm_buf *b)
{
    if (!b->data)
        return "";
    b->data[b->len] = 0; /* the spare byte reserve() always keeps */
    return (const char *)b->data;
}

void dm_buf_reset(dm_buf *b)
{
    b->len = 0;
}

void dm_buf_free(dm_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void dm_buf_free_secure(dm_buf *b)
{
    if (!b)
        return;
    if (b->data)
        explicit_bzero(b->data, b->cap);
    dm_buf_free(b);
}

uint8_t *dm_buf_steal(dm_buf *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
