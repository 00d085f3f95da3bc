/*
 * Request-body parsers of the APIs (node_api_body.h): pure functions over the
 * bytes of a body, shared by the handlers and the fuzz target.
 */
#include "node_api_body.h"

#include "dm_enc.h"
#include "dm_err.h"
#include "net_msg.h" /* NET_SHARE_DATA_MAX */
#include "node_apikeys.h"
#include "node_share.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

__attribute__((format(printf, 4, 5))) static int fail(char *err, size_t errcap, int rc,
                                                      const char *fmt, ...)
{
    if (err && errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errcap, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Copy at most cap-1 bytes of s, every byte outside `keep` shown as '?'. */
static void sanitize(char *out, size_t cap, const char *s, size_t n, const char *keep)
{
    size_t i = 0;
    for (; i + 1 < cap && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (c && strchr(keep, c));
        out[i] = ok ? (char)c : '?';
    }
    if (cap)
        out[i] = 0;
}

/* Deeper than NODE_API_JSON_MAX_DEPTH? A scan that tracks strings and escapes; exact
 * for valid JSON, and whatever it concludes about invalid JSON, jansson refuses that. */
static bool too_deep(const uint8_t *p, size_t n)
{
    unsigned depth = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > NODE_API_JSON_MAX_DEPTH)
                return true;
        } else if ((c == '}' || c == ']') && depth) {
            depth--;
        }
    }
    return false;
}

/* The body as one JSON object (a new reference in *out) or DM_EPARSE with a message. */
static int load_object(const uint8_t *body, size_t n, json_t **out, char *err, size_t errcap)
{
    *out = NULL;
    if (too_deep(body, n))
        return fail(err, errcap, DM_EPARSE,
                    "body is not a JSON object: nested deeper than %d levels",
                    NODE_API_JSON_MAX_DEPTH);
    json_error_t jerr;
    json_t *j = json_loadb(body ? (const char *)body : "", body ? n : 0, JSON_REJECT_DUPLICATES,
                           &jerr);
    if (!j) {
        /* jansson quotes the offending input ("... near '<text>'"): drop the quote and
         * report the position instead, so that no request bytes are reflected */
        char *near = strstr(jerr.text, " near ");
        if (near)
            *near = 0;
        char text[JSON_ERROR_TEXT_LENGTH];
        sanitize(text, sizeof text, jerr.text, strlen(jerr.text), " _.,:;'()[]{}\\-/");
        if (jerr.line > 0)
            return fail(err, errcap, DM_EPARSE,
                        "body is not a JSON object: %s (line %d, column %d)", text, jerr.line,
                        jerr.column);
        return fail(err, errcap, DM_EPARSE, "body is not a JSON object: %s", text);
    }
    if (!json_is_object(j)) {
        json_decref(j);
        return fail(err, errcap, DM_EPARSE, "body is not a JSON object: wrong type");
    }
    *out = j;
    return DM_OK;
}

/* Every key of j is one of `names` (NULL-terminated); else DM_EINVAL naming it. */
static int only_fields(const json_t *j, const char *const *names, char *err, size_t errcap)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)j, key, val)
    {
        bool known = false;
        for (const char *const *k = names; *k && !known; k++)
            known = strcmp(key, *k) == 0;
        if (!known) {
            char shown[65];
            sanitize(shown, sizeof shown, key, strlen(key), "_.-");
            return fail(err, errcap, DM_EINVAL, "unknown field '%s'", shown);
        }
    }
    return DM_OK;
}

/* Common start of the parsers: clear the result and the message, load the object,
 * refuse unknown fields. DM_OK with *j set (the caller drops it). */
static int begin(const uint8_t *body, size_t n, const char *const *fields, json_t **j, char *err,
                 size_t errcap)
{
    if (err && errcap)
        err[0] = 0;
    int rc = load_object(body, n, j, err, errcap);
    if (!rc && (rc = only_fields(*j, fields, err, errcap))) {
        json_decref(*j);
        *j = NULL;
    }
    return rc;
}

void node_api_share_req_free(node_api_share_req *q)
{
    if (q)
        dm_buf_free(&q->data);
}

int node_api_parse_share(const uint8_t *body, size_t n, node_api_share_req *out, char *err,
                         size_t errcap)
{
    static const char *const fields[] = {"recipient", "amount", "data", NULL};
    memset(out, 0, sizeof *out);
    json_t *j;
    int rc = begin(body, n, fields, &j, err, errcap);
    if (rc)
        return rc;
    json_t *rj = json_object_get(j, "recipient"), *aj = json_object_get(j, "amount"),
           *dj = json_object_get(j, "data");
    if (!json_is_string(rj) ||
        node_share_parse_recipient(json_string_value(rj), json_string_length(rj), out->recipient)) {
        rc = fail(err, errcap, DM_EINVAL, "recipient must match ^0x[a-fA-F0-9]{40}$");
        goto out;
    }
    /* node_share_check_amount admits at most 30 digits: the text fits out->amount */
    if (!json_is_string(aj) || node_share_check_amount(json_string_value(aj), json_string_length(aj)) ||
        json_string_length(aj) >= sizeof out->amount) {
        rc = fail(err, errcap, DM_EINVAL,
                  "amount must be a decimal integer string with 0 < amount < 10^30");
        goto out;
    }
    memcpy(out->amount, json_string_value(aj), json_string_length(aj) + 1);
    if (!json_is_string(dj)) {
        rc = fail(err, errcap, DM_EINVAL, "data must be a base64 string");
        goto out;
    }
    rc = dm_b64_decode(&out->data, json_string_value(dj), json_string_length(dj), DM_B64_STD);
    if (rc) {
        rc = rc == DM_ENOMEM ? fail(err, errcap, DM_ENOMEM, "out of memory")
                             : fail(err, errcap, DM_EINVAL, "data must be a base64 string");
        goto out;
    }
    if (out->data.len > NET_SHARE_DATA_MAX)
        rc = fail(err, errcap, DM_ETOOBIG, "data exceeds 1 MiB");
out:
    json_decref(j);
    if (rc)
        node_api_share_req_free(out);
    return rc;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == ' ' || c == '.' || c == '_' || c == '-';
}

int node_api_parse_apikey(const uint8_t *body, size_t n, uint64_t now, node_api_apikey_req *out,
                          char *err, size_t errcap)
{
    static const char *const fields[] = {"name", "expires_at", NULL};
    memset(out, 0, sizeof *out);
    json_t *j;
    int rc = begin(body, n, fields, &j, err, errcap);
    if (rc)
        return rc;
    json_t *nj = json_object_get(j, "name"), *ej = json_object_get(j, "expires_at");
    size_t len = json_string_length(nj);
    if (!json_is_string(nj) || len == 0 || len >= sizeof out->name) {
        rc = fail(err, errcap, DM_EINVAL, "name must be a string of 1..64 characters");
        goto out;
    }
    const char *name = json_string_value(nj);
    for (size_t i = 0; i < len; i++)
        if (!name_char(name[i])) {
            rc = fail(err, errcap, DM_EINVAL,
                      "name must be 1 to %d characters of letters, digits, space, '.', '_', '-'",
                      NODE_APIKEY_NAME_MAX);
            goto out;
        }
    if (ej && !json_is_null(ej) && (!json_is_integer(ej) || json_integer_value(ej) < 0)) {
        rc = fail(err, errcap, DM_EINVAL, "expires_at must be Unix seconds (an integer) or null");
        goto out;
    }
    uint64_t exp = json_is_integer(ej) ? (uint64_t)json_integer_value(ej) : 0;
    /* 0 is a time like any other (long past), not "never": only null/absent means never */
    if (json_is_integer(ej) && (exp <= now || exp >= NODE_APIKEY_EXPIRES_MAX)) {
        rc = fail(err, errcap, DM_EINVAL,
                  "expires_at must be a unix time after now (%llu) and before %llu, or absent "
                  "for a key that never expires",
                  (unsigned long long)now, (unsigned long long)NODE_APIKEY_EXPIRES_MAX);
        goto out;
    }
    memcpy(out->name, name, len + 1);
    out->expires_at = exp;
out:
    json_decref(j);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}
