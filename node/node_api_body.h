#ifndef DM_NODE_API_BODY_H
#define DM_NODE_API_BODY_H

#include "dm_buf.h"

#include <stddef.h>
#include <stdint.h>

/*
 * The JSON request bodies of the APIs, parsed and validated by pure functions
 * (no I/O, no HTTP, no clock: callers pass the time), so that the handlers in
 * node_api.c / node_api_ext.c and fuzz/fuzz_json.c run the very same code.
 *
 * Both parsers accept exactly one JSON object (jansson, strict: UTF-8 only,
 * "\u0000" and raw control characters in strings rejected, duplicate keys
 * rejected, nothing but white space after the object, nesting deeper than
 * NODE_API_JSON_MAX_DEPTH rejected before jansson sees the body), every field
 * of the schema with its JSON type, and no other field. Results:
 *   DM_OK      *out filled;
 *   DM_EPARSE  not a JSON object (HTTP 400 EPARSE);
 *   DM_EINVAL  a field is missing, unknown, of the wrong type or invalid (400 EINVAL);
 *   DM_ETOOBIG the decoded data exceeds 1 MiB (413 ETOOBIG);
 *   DM_ENOMEM  allocation failed.
 * On failure `err` (if errcap > 0) holds a message for the client that never
 * repeats the request's bytes except a field name reduced to [A-Za-z0-9_.-]
 * (others shown as '?'), and *out holds nothing to free.
 */

/* Nesting bound: the schemas are flat, so anything deeper is refused unparsed. */
#define NODE_API_JSON_MAX_DEPTH 8

/*
 * POST /v1/shares: {"recipient":"0x<40 hex>","amount":"<decimal>","data":"<base64>"}.
 * recipient ^0x[a-fA-F0-9]{40}$ (lower-case "0x"; either case of hex digits;
 * no checksum test). amount a JSON string of decimal digits without sign,
 * leading zero, point, exponent or blanks, with 0 < amount < 10^30 (30 digits
 * at most). data standard base64 with padding, canonical (zero pad bits),
 * at most 1 MiB decoded; "" (empty data) is valid.
 */
typedef struct {
    uint8_t recipient[20];
    char amount[31]; /* NUL-terminated decimal text */
    dm_buf data;     /* decoded payload; node_api_share_req_free */
} node_api_share_req;

int node_api_parse_share(const uint8_t *body, size_t n, node_api_share_req *out, char *err,
                         size_t errcap);
/** Free out->data. NULL-safe; leaves an empty request. */
void node_api_share_req_free(node_api_share_req *q);

/*
 * POST /v1/apikeys: {"name":"<1..64 of A-Z a-z 0-9 space . _ ->","expires_at":<Unix s>|null}.
 * expires_at absent or null: the key never expires (out->expires_at = 0); else
 * a JSON integer with now < expires_at < NODE_APIKEY_EXPIRES_MAX (year 10000).
 */
typedef struct {
    char name[65];
    uint64_t expires_at; /* 0 = never */
} node_api_apikey_req;

int node_api_parse_apikey(const uint8_t *body, size_t n, uint64_t now, node_api_apikey_req *out,
                          char *err, size_t errcap);

#endif
