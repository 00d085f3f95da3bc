#ifndef DM_COMMON_BUF_H
#define DM_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

/*
 * A growable byte buffer. The struct owns `data`; a zero-initialised dm_buf
 * (or DM_BUF_INIT) is a valid empty buffer. The buffer always keeps one spare
 * byte so that dm_buf_cstr() can NUL-terminate text without reallocating.
 */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
} dm_buf;

#define DM_BUF_INIT {NULL, 0, 0}

/** Ensure room for `extra` more bytes (+1 spare). DM_ENOMEM / DM_ETOOBIG on overflow. */
int dm_buf_reserve(dm_buf *b, size_t extra);
/** Append `n` bytes (borrowed). */
int dm_buf_append(dm_buf *b, const void *p, size_t n);
/** Append one byte. */
int dm_buf_putc(dm_buf *b, uint8_t c);
/** Append a NUL-terminated string (without its NUL). */
int dm_buf_puts(dm_buf *b, const char *s);
/** Append printf-formatted text. */
int dm_buf_printf(dm_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Append a big-endian integer of 4 / 8 bytes. */
int dm_buf_put_u32be(dm_buf *b, uint32_t v);
int dm_buf_put_u64be(dm_buf *b, uint64_t v);
/** NUL-terminate in the spare byte and return data as a string ("" if empty). */
const char *dm_buf_cstr(dm_buf *b);
/** Forget the contents, keep the allocation. */
void dm_buf_reset(dm_buf *b);
/** Free the allocation. NULL-safe. */
void dm_buf_free(dm_buf *b);
/** Zero the whole allocation, then free it: for buffers that held secrets. */
void dm_buf_free_secure(dm_buf *b);
/** Transfer ownership of the data out; the buffer becomes empty. */
uint8_t *dm_buf_steal(dm_buf *b, size_t *len);

/** Big-endian helpers for typed encodings. */
void dm_put_u32be(uint8_t out[4], uint32_t v);
void dm_put_u64be(uint8_t out[8], uint64_t v);
uint32_t dm_get_u32be(const uint8_t in[4]);
uint64_t dm_get_u64be(const uint8_t in[8]);

#endif
