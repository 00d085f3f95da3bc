#ifndef DM_CHAIN_RLP_H
#define DM_CHAIN_RLP_H

#include "dm_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Recursive Length Prefix (Ethereum yellow paper, appendix B).
 *
 * Encoder: appends to a dm_buf. Byte strings and integers are single calls; a list is
 * chain_rlp_list_begin() ... items ... chain_rlp_list_end(), which moves the payload to
 * make room for the header once its length is known (so nested lists cost one memmove
 * per level). All encoder functions return 0, DM_ENOMEM or DM_ETOOBIG.
 *
 * Decoder: zero-copy and strict. An item borrows slices of the caller's input, which must
 * outlive it. Every non-canonical encoding is DM_EPARSE: a long form for a payload that
 * fits the short form, a length with leading zero bytes, a single byte < 0x80 written as
 * 0x81 xx, a length reaching past the input (or past the enclosing list), trailing bytes
 * after the single expected item. Lengths that do not fit size_t are DM_ETOOBIG, and so is
 * nesting deeper than CHAIN_RLP_MAX_DEPTH when a whole tree is validated.
 *
 * Pure functions, no global state: safe from any thread.
 */

/** Deepest list nesting chain_rlp_validate() and chain_rlp_decode_tree() accept (the top
 *  item is depth 1 if it is a list). */
#define CHAIN_RLP_MAX_DEPTH 64

/* ---- encoder ---- */

/** Append a byte string (`p` borrowed; NULL allowed when n == 0). */
int chain_rlp_put_bytes(dm_buf *b, const uint8_t *p, size_t n);
/** Append an unsigned integer: big-endian without leading zeros, 0 is the empty string. */
int chain_rlp_put_u64(dm_buf *b, uint64_t v);
/** Append a big unsigned integer given as `n` big-endian bytes (any width, e.g. 32 for a
 *  uint256). Leading zero bytes of the input are stripped; all-zero is the empty string. */
int chain_rlp_put_uint_be(dm_buf *b, const uint8_t *be, size_t n);
/** Append bytes that are already one or more complete RLP items (no checks). */
int chain_rlp_put_raw(dm_buf *b, const uint8_t *p, size_t n);
/** Open a list: stores in *mark where its payload starts. Close it with the same mark. */
int chain_rlp_list_begin(dm_buf *b, size_t *mark);
/** Close the list opened at `mark`: everything appended since becomes its payload and the
 *  header is inserted before it. Lists nest (close inner before outer). DM_EINVAL if
 *  `mark` is past the end of the buffer. */
int chain_rlp_list_end(dm_buf *b, size_t mark);

/* ---- decoder ---- */

typedef enum {
    CHAIN_RLP_BYTES = 0,
    CHAIN_RLP_LIST = 1,
} chain_rlp_kind;

/** One decoded item; all pointers borrow the input. */
typedef struct {
    chain_rlp_kind kind;
    const uint8_t *payload; /* string bytes, or the encoded elements of a list */
    size_t len;             /* payload length */
    const uint8_t *raw;     /* the whole item, header included */
    size_t raw_len;
} chain_rlp_item;

/** Read the item at the start of p[0..n): its header is checked for canonical form and its
 *  payload must fit in n (the payload of a list is not looked into). Trailing bytes after
 *  the item are allowed; *used (optional) gets header + payload length.
 *  DM_EPARSE (also for n == 0), DM_ETOOBIG. */
int chain_rlp_item_read(const uint8_t *p, size_t n, chain_rlp_item *item, size_t *used);
/** Exactly one item covering all of p[0..n): chain_rlp_item_read plus no trailing bytes.
 *  List contents are not validated (see chain_rlp_validate). */
int chain_rlp_decode(const uint8_t *p, size_t n, chain_rlp_item *item);
/** Validate the whole tree of `item` recursively: every nested item canonical, every list
 *  exactly filled by its elements, nesting at most CHAIN_RLP_MAX_DEPTH levels. */
int chain_rlp_validate(const chain_rlp_item *item);
/** chain_rlp_decode + chain_rlp_validate: p[0..n) is exactly one valid item tree. */
int chain_rlp_decode_tree(const uint8_t *p, size_t n, chain_rlp_item *item);

/** A cursor over the elements of a list item (borrows the list's payload). */
typedef struct {
    const uint8_t *p;
    size_t n; /* bytes left */
} chain_rlp_iter;

/** Start iterating `list`. DM_EINVAL if the item is not a list. */
int chain_rlp_iter_init(chain_rlp_iter *it, const chain_rlp_item *list);
/** True when every element has been read. */
bool chain_rlp_iter_done(const chain_rlp_iter *it);
/** Read the next element (header-checked as chain_rlp_item_read). DM_ENOTFOUND at the end;
 *  DM_EPARSE if the next element is malformed or overruns the list. */
int chain_rlp_iter_next(chain_rlp_iter *it, chain_rlp_item *out);
/** Read the next element and require it to be a byte string / a list (DM_EPARSE otherwise;
 *  DM_ENOTFOUND at the end of the list). */
int chain_rlp_iter_bytes(chain_rlp_iter *it, chain_rlp_item *out);
int chain_rlp_iter_list(chain_rlp_iter *it, chain_rlp_item *out);

/** An integer item: a byte string with no leading zero byte (0 is the empty string).
 *  DM_EPARSE for a list or a leading zero; DM_ERANGE if it needs more than 8 bytes. */
int chain_rlp_get_u64(const chain_rlp_item *item, uint64_t *v);
/** An integer item into a big-endian field of `n` bytes, right-aligned and zero-padded.
 *  DM_EPARSE for a list or a leading zero; DM_ERANGE if it needs more than n bytes. */
int chain_rlp_get_uint_be(const chain_rlp_item *item, uint8_t *out, size_t n);
/** A byte string of exactly `n` bytes copied to `out`. DM_EPARSE otherwise. */
int chain_rlp_get_fixed(const chain_rlp_item *item, uint8_t *out, size_t n);

#endif
