/* Unit tests for crypto_fernet: the spec's vectors, round trips, tampering, limits. */
#include "dm_test.h"
#include "groups.h"

#include "crypto_fernet.h"
#include "crypto_hash.h"
#include "crypto_mem.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"

#include <ctype.h>
#include <time.h>

/* ---- helpers ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Read exactly `width` decimal digits. */
static int read_digits(const char **s, int width, int *out)
{
    int v = 0;
    for (int i = 0; i < width; i++) {
        if (!isdigit((unsigned char)(*s)[i]))
            return -1;
        v = v * 10 + ((*s)[i] - '0');
    }
    *s += width;
    *out = v;
    return 0;
}

static int expect_char(const char **s, const char *set)
{
    if (**s == 0 || !strchr(set, **s))
        return -1;
    (*s)++;
    return 0;
}

/*
 * RFC 3339 date-time ("1985-10-26T01:20:00-07:00", "...Z", optional fraction,
 * which is truncated) to Unix seconds. Returns 0 or -1 if malformed.
 */
static int rfc3339_to_unix(const char *s, uint64_t *out)
{
    int Y, M, D, h, m, sec, oh = 0, om = 0, sign = 0;
    if (read_digits(&s, 4, &Y) || expect_char(&s, "-") || read_digits(&s, 2, &M) ||
        expect_char(&s, "-") || read_digits(&s, 2, &D) || expect_char(&s, "Tt ") ||
        read_digits(&s, 2, &h) || expect_char(&s, ":") || read_digits(&s, 2, &m) ||
        expect_char(&s, ":") || read_digits(&s, 2, &sec))
        return -1;
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s))
            return -1;
        while (isdigit((unsigned char)*s))
            s++;
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        sign = *s == '-' ? -1 : 1;
        s++;
        if (read_digits(&s, 2, &oh) || expect_char(&s, ":") || read_digits(&s, 2, &om))
            return -1;
    } else {
        return -1;
    }
    if (*s || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60 || oh > 23 ||
        om > 59)
        return -1;
    /* local = UTC + offset, so UTC = local - offset */
    int64_t t = days_from_civil(Y, M, D) * 86400 + h * 3600 + m * 60 + sec -
                (int64_t)sign * (oh * 3600 + om * 60);
    if (t < 0)
        return -1;
    *out = (uint64_t)t;
    return 0;
}

static uint64_t vec_now(json_t *v)
{
    const char *s = json_string_value(json_object_get(v, "now"));
    assert_non_null(s);
    uint64_t t = 0;
    if (rfc3339_to_unix(s, &t) != 0)
        fail_msg("bad RFC 3339 time in vector: %s", s);
    return t;
}

static const char *vec_str(json_t *v, const char *field)
{
    const char *s = json_string_value(json_object_get(v, field));
    if (!s)
        fail_msg("vector lacks string field %s", field);
    return s;
}

static void vec_key(json_t *v, crypto_fernet_key *k)
{
    const char *secret = vec_str(v, "secret");
    assert_int_equal(crypto_fernet_key_decode(k, secret, strlen(secret)), DM_OK);
}

/* Decode a token to its raw bytes (the test's own view of the wire form). */
static void token_raw(dm_buf *raw, const char *tok, size_t n)
{
    dm_buf_reset(raw);
    assert_int_equal(dm_b64_decode(raw, tok, n, DM_B64_URL), DM_OK);
}

static size_t expected_token_len(size_t ptlen)
{
    size_t raw = 1 + 8 + 16 + (ptlen / 16 + 1) * 16 + 32;
    return (raw + 2) / 3 * 4;
}

/* ---- tests ---- */

static void test_rfc3339_helper(void **state)
{
    (void)state;
    uint64_t t;
    assert_int_equal(rfc3339_to_unix("1970-01-01T00:00:00Z", &t), 0);
    assert_int_equal(t, 0);
    assert_int_equal(rfc3339_to_unix("1985-10-26T01:20:00-07:00", &t), 0);
    assert_int_equal(t, 499162800);
    assert_int_equal(rfc3339_to_unix("1985-10-26T08:20:00Z", &t), 0);
    assert_int_equal(t, 499162800);
    assert_int_equal(rfc3339_to_unix("2000-03-01T00:00:00+01:00", &t), 0);
    assert_int_equal(t, 951865200);
    assert_int_equal(rfc3339_to_unix("2024-02-29T12:34:56.789Z", &t), 0);
    assert_int_equal(t, 1709210096);
    assert_int_equal(rfc3339_to_unix("1985-10-26T01:20:00", &t), -1);
    assert_int_equal(rfc3339_to_unix("1985-10-26 01:20:00+0700", &t), -1);
}

static void test_vectors_generate(void **state)
{
    (void)state;
    json_t *vs = dm_test_vectors("fernet/generate.json");
    assert_true(json_array_size(vs) > 0);
    size_t i;
    json_t *v;
    json_array_foreach(vs, i, v)
    {
        crypto_fernet_key k;
        vec_key(v, &k);
        json_t *ivj = json_object_get(v, "iv");
        assert_int_equal(json_array_size(ivj), 16);
        uint8_t iv[16];
        for (size_t j = 0; j < 16; j++)
            iv[j] = (uint8_t)json_integer_value(json_array_get(ivj, j));
        const char *src = vec_str(v, "src");
        const char *want = vec_str(v, "token");
        uint64_t now = vec_now(v);

        dm_buf tok = DM_BUF_INIT;
        assert_int_equal(
            crypto_fernet_encrypt_at(&tok, &k, (const uint8_t *)src, strlen(src), now, iv), DM_OK);
        assert_string_equal(dm_buf_cstr(&tok), want);

        uint64_t ts = 0;
        assert_int_equal(crypto_fernet_token_time(&k, want, strlen(want), &ts), DM_OK);
        assert_int_equal(ts, now);

        dm_buf pt = DM_BUF_INIT;
        assert_int_equal(crypto_fernet_decrypt(&pt, &k, want, strlen(want), 0, now), DM_OK);
        assert_int_equal(pt.len, strlen(src));
        assert_memory_equal(pt.data, src, pt.len);
        dm_buf_free_secure(&pt);
        dm_buf_free(&tok);
        crypto_fernet_key_wipe(&k);
    }
    json_decref(vs);
}

static void test_vectors_verify(void **state)
{
    (void)state;
    json_t *vs = dm_test_vectors("fernet/verify.json");
    assert_true(json_array_size(vs) > 0);
    size_t i;
    json_t *v;
    json_array_foreach(vs, i, v)
    {
        crypto_fernet_key k;
        vec_key(v, &k);
        const char *tok = vec_str(v, "token");
        const char *src = vec_str(v, "src");
        json_int_t ttl = json_integer_value(json_object_get(v, "ttl_sec"));
        assert_true(ttl > 0);
        dm_buf pt = DM_BUF_INIT;
        assert_int_equal(
            crypto_fernet_decrypt(&pt, &k, tok, strlen(tok), (uint64_t)ttl, vec_now(v)), DM_OK);
        assert_int_equal(pt.len, strlen(src));
        assert_memory_equal(pt.data, src, pt.len);
        dm_buf_free_secure(&pt);
        crypto_fernet_key_wipe(&k);
    }
    json_decref(vs);
}

static void test_vectors_invalid(void **state)
{
    (void)state;
    json_t *vs = dm_test_vectors("fernet/invalid.json");
    assert_int_equal(json_array_size(vs), 8);
    size_t i;
    json_t *v;
    int n_expired = 0;
    json_array_foreach(vs, i, v)
    {
        crypto_fernet_key k;
        vec_key(v, &k);
        const char *desc = vec_str(v, "desc");
        const char *tok = vec_str(v, "token");
        json_int_t ttl = json_integer_value(json_object_get(v, "ttl_sec"));
        bool time_case = strstr(desc, "expired TTL") || strstr(desc, "far-future");
        int want = time_case ? DM_EEXPIRED : DM_EBADTOKEN;
        n_expired += time_case;

        dm_buf pt = DM_BUF_INIT;
        assert_int_equal(dm_buf_puts(&pt, "keep"), DM_OK);
        int rc = crypto_fernet_decrypt(&pt, &k, tok, strlen(tok), (uint64_t)ttl, vec_now(v));
        if (rc != want)
            fail_msg("invalid vector \"%s\": got %s, want %s", desc, dm_err_name(rc),
                     dm_err_name(want));
        /* the output buffer is untouched on failure */
        if (pt.len != 4 || memcmp(pt.data, "keep", 4) != 0)
            fail_msg("invalid vector \"%s\": output buffer modified", desc);
        dm_buf_free_secure(&pt);
        crypto_fernet_key_wipe(&k);
    }
    assert_int_equal(n_expired, 2);
    json_decref(vs);
}

static void test_round_trip_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 15, 16, 17, 1024, 1024 * 1024};
    uint64_t now = (uint64_t)time(NULL);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        crypto_fernet_key k;
        assert_int_equal(crypto_fernet_key_generate(&k), DM_OK);
        uint8_t *msg = malloc(n ? n : 1);
        assert_non_null(msg);
        assert_int_equal(crypto_random(msg, n), DM_OK);

        dm_buf tok = DM_BUF_INIT;
        assert_int_equal(crypto_fernet_encrypt(&tok, &k, msg, n), DM_OK);
        assert_int_equal(tok.len, expected_token_len(n));
        assert_int_equal(tok.data[0], 'g'); /* 0x80 encodes to 'g' */

        dm_buf pt = DM_BUF_INIT;
        assert_int_equal(dm_buf_puts(&pt, "prefix"), DM_OK);
        assert_int_equal(crypto_fernet_decrypt(&pt, &k, (const char *)tok.data, tok.len, 60, now),
                         DM_OK);
        assert_int_equal(pt.len, 6 + n);
        assert_memory_equal(pt.data, "prefix", 6);
        if (n)
            assert_memory_equal(pt.data + 6, msg, n);

        /* a random IV: the same plaintext encrypts differently */
        dm_buf tok2 = DM_BUF_INIT;
        assert_int_equal(crypto_fernet_encrypt(&tok2, &k, msg, n), DM_OK);
        assert_int_equal(tok2.len, tok.len);
        assert_memory_not_equal(tok2.data, tok.data, tok.len);

        dm_buf_free(&tok2);
        dm_buf_free_secure(&pt);
        dm_buf_free(&tok);
        free(msg);
        crypto_fernet_key_wipe(&k);
    }
}

/* The header promises room for a 4 MiB plaintext; beyond the token cap encrypt refuses. */
static void test_size_limits(void **state)
{
    (void)state;
    crypto_fernet_key k;
    assert_int_equal(crypto_fernet_key_generate(&k), DM_OK);
    size_t big = (size_t)4 * 1024 * 1024;
    uint8_t *msg = calloc(1, CRYPTO_FERNET_MAX_TOKEN);
    assert_non_null(msg);
    dm_buf tok = DM_BUF_INIT;
    assert_int_equal(crypto_fernet_encrypt(&tok, &k, msg, big), DM_OK);
    assert_true(tok.len <= CRYPTO_FERNET_MAX_TOKEN);
    uint64_t now = (uint64_t)time(NULL);
    dm_buf pt = DM_BUF_INIT;
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, (const char *)tok.data, tok.len, 0, now),
                     DM_OK);
    assert_int_equal(pt.len, big);
    dm_buf_free(&pt);

    /* the largest plaintext whose token fits the cap round-trips; one byte more is refused */
    size_t max_pt = CRYPTO_FERNET_MAX_TOKEN / 4 * 3;
    while (expected_token_len(max_pt) > CRYPTO_FERNET_MAX_TOKEN)
        max_pt--;
    dm_buf_reset(&tok);
    assert_int_equal(crypto_fernet_encrypt(&tok, &k, msg, max_pt), DM_OK);
    assert_true(tok.len <= CRYPTO_FERNET_MAX_TOKEN);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, (const char *)tok.data, tok.len, 0, now),
                     DM_OK);
    assert_int_equal(pt.len, max_pt);
    dm_buf_free(&pt);
    dm_buf_reset(&tok);
    assert_int_equal(crypto_fernet_encrypt(&tok, &k, msg, max_pt + 1), DM_ETOOBIG);
    assert_int_equal(tok.len, 0);

    /* oversize token text: refused by length before anything is decoded */
    char *huge = malloc(CRYPTO_FERNET_MAX_TOKEN + 4);
    assert_non_null(huge);
    memset(huge, 'A', CRYPTO_FERNET_MAX_TOKEN + 4);
    huge[0] = 'g';
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, huge, CRYPTO_FERNET_MAX_TOKEN + 4, 0, 0),
                     DM_ETOOBIG);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, huge, CRYPTO_FERNET_MAX_TOKEN + 1, 0, 0),
                     DM_ETOOBIG);
    uint64_t ts;
    assert_int_equal(crypto_fernet_token_time(&k, huge, CRYPTO_FERNET_MAX_TOKEN + 1, &ts),
                     DM_ETOOBIG);
    /* at the cap it is merely a bad token */
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, huge, CRYPTO_FERNET_MAX_TOKEN, 0, 0),
                     DM_EBADTOKEN);
    assert_int_equal(pt.len, 0);
    free(huge);
    free(msg);
    dm_buf_free(&pt);
    dm_buf_free(&tok);
    crypto_fernet_key_wipe(&k);
}

static void test_key_encode_decode(void **state)
{
    (void)state;
    for (int i = 0; i < 16; i++) {
        crypto_fernet_key k, k2;
        assert_int_equal(crypto_fernet_key_generate(&k), DM_OK);
        dm_buf txt = DM_BUF_INIT;
        assert_int_equal(crypto_fernet_key_encode(&txt, &k), DM_OK);
        assert_int_equal(txt.len, 44);
        assert_int_equal(txt.data[43], '=');
        assert_int_equal(crypto_fernet_key_decode(&k2, (const char *)txt.data, txt.len), DM_OK);
        assert_memory_equal(&k, &k2, sizeof k);
        dm_buf_free_secure(&txt);
        crypto_fernet_key_wipe(&k);
        crypto_fernet_key_wipe(&k2);
        uint8_t zero[sizeof k] = {0};
        assert_memory_equal(&k, zero, sizeof k);
    }

    /* the spec's key: raw layout is signing || encryption */
    const char *secret = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
    crypto_fernet_key k;
    assert_int_equal(crypto_fernet_key_decode(&k, secret, strlen(secret)), DM_OK);
    dm_buf raw = DM_BUF_INIT;
    assert_int_equal(dm_b64_decode(&raw, secret, strlen(secret), DM_B64_URL), DM_OK);
    assert_int_equal(raw.len, 32);
    assert_memory_equal(k.signing, raw.data, 16);
    assert_memory_equal(k.encryption, raw.data + 16, 16);
    dm_buf txt = DM_BUF_INIT;
    assert_int_equal(crypto_fernet_key_encode(&txt, &k), DM_OK);
    assert_string_equal(dm_buf_cstr(&txt), secret);
    dm_buf_free_secure(&txt);

    crypto_fernet_key k3;
    uint8_t bytes[32];
    memcpy(bytes, raw.data, 32);
    crypto_fernet_key_from_bytes(&k3, bytes);
    assert_memory_equal(&k3, &k, sizeof k);
    dm_buf_free_secure(&raw);

    /* malformed text forms */
    static const char *bad[] = {
        "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4",   /* no padding */
        "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4==", /* 45 chars */
        "cw/0x689RpI+jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=",  /* standard alphabet */
        "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e5=",  /* non-zero trailing bits */
        "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e==",  /* 31 bytes + garbage padding */
        "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpw F4e=",  /* space */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        crypto_fernet_key kb;
        if (crypto_fernet_key_decode(&kb, bad[i], strlen(bad[i])) != DM_EPARSE)
            fail_msg("key text accepted: \"%s\"", bad[i]);
    }
    crypto_fernet_key_wipe(&k);
    crypto_fernet_key_wipe(&k3);
}

/* Flip every bit of the generate vector's token bytes: each variant must be refused. */
static void test_bit_flips(void **state)
{
    (void)state;
    json_t *vs = dm_test_vectors("fernet/generate.json");
    json_t *v = json_array_get(vs, 0);
    assert_non_null(v);
    crypto_fernet_key k;
    vec_key(v, &k);
    const char *tok = vec_str(v, "token");
    uint64_t now = vec_now(v);

    dm_buf raw = DM_BUF_INIT, txt = DM_BUF_INIT, pt = DM_BUF_INIT;
    token_raw(&raw, tok, strlen(tok));
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, tok, strlen(tok), 0, now), DM_OK);
    for (size_t pos = 0; pos < raw.len; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            raw.data[pos] ^= (uint8_t)(1u << bit);
            dm_buf_reset(&txt);
            assert_int_equal(dm_b64_encode(&txt, raw.data, raw.len, DM_B64_URL), DM_OK);
            dm_buf_reset(&pt);
            int rc = crypto_fernet_decrypt(&pt, &k, (const char *)txt.data, txt.len, 0, now);
            if (rc != DM_EBADTOKEN)
                fail_msg("flip byte %zu bit %d: got %s", pos, bit, dm_err_name(rc));
            assert_int_equal(pt.len, 0);
            uint64_t ts;
            assert_int_equal(crypto_fernet_token_time(&k, (const char *)txt.data, txt.len, &ts),
                             DM_EBADTOKEN);
            raw.data[pos] ^= (uint8_t)(1u << bit);
        }
    }
    /* an appended byte (a whole extra block would still fail the MAC) */
    assert_int_equal(dm_buf_putc(&raw, 0), DM_OK);
    dm_buf_reset(&txt);
    assert_int_equal(dm_b64_encode(&txt, raw.data, raw.len, DM_B64_URL), DM_OK);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, (const char *)txt.data, txt.len, 0, now),
                     DM_EBADTOKEN);
    dm_buf_free(&raw);
    dm_buf_free(&txt);
    dm_buf_free_secure(&pt);
    crypto_fernet_key_wipe(&k);
    json_decref(vs);
}

static void test_wrong_key_and_truncation(void **state)
{
    (void)state;
    crypto_fernet_key k, other;
    assert_int_equal(crypto_fernet_key_generate(&k), DM_OK);
    assert_int_equal(crypto_fernet_key_generate(&other), DM_OK);
    const char *msg = "the quick brown fox jumps over the lazy dog";
    dm_buf tok = DM_BUF_INIT, pt = DM_BUF_INIT;
    assert_int_equal(crypto_fernet_encrypt(&tok, &k, (const uint8_t *)msg, strlen(msg)), DM_OK);
    const char *t = (const char *)tok.data;
    uint64_t now = (uint64_t)time(NULL);

    assert_int_equal(crypto_fernet_decrypt(&pt, &other, t, tok.len, 0, now), DM_EBADTOKEN);
    assert_int_equal(pt.len, 0);
    uint64_t ts;
    assert_int_equal(crypto_fernet_token_time(&other, t, tok.len, &ts), DM_EBADTOKEN);

    /* right signing key, wrong encryption key: the MAC passes, so this is the only
     * path to the padding check; the result must never be the original plaintext */
    crypto_fernet_key mixed = k;
    mixed.encryption[0] ^= 1;
    int rc = crypto_fernet_decrypt(&pt, &mixed, t, tok.len, 0, now);
    assert_true(rc == DM_EBADTOKEN || rc == DM_OK);
    if (rc == DM_OK)
        assert_memory_not_equal(pt.data, msg, pt.len < strlen(msg) ? pt.len : strlen(msg));
    dm_buf_reset(&pt);

    for (size_t n = 0; n < tok.len; n++) {
        rc = crypto_fernet_decrypt(&pt, &k, t, n, 0, now);
        if (rc != DM_EBADTOKEN)
            fail_msg("token truncated to %zu chars: got %s", n, dm_err_name(rc));
        assert_int_equal(pt.len, 0);
    }
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, NULL, 0, 0, now), DM_EBADTOKEN);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, 0, now), DM_OK);
    assert_int_equal(pt.len, strlen(msg));
    assert_memory_equal(pt.data, msg, pt.len);

    dm_buf_free(&tok);
    dm_buf_free_secure(&pt);
    crypto_fernet_key_wipe(&k);
    crypto_fernet_key_wipe(&other);
    crypto_fernet_key_wipe(&mixed);
}

/* Re-sign `raw` (its last 32 bytes are the MAC) with the key's signing half and encode it. */
static void resign(dm_buf *txt, dm_buf *raw, const crypto_fernet_key *k)
{
    assert_true(raw->len >= 32);
    assert_int_equal(crypto_hmac_sha256(raw->data + raw->len - 32, k->signing, sizeof k->signing,
                                        raw->data, raw->len - 32),
                     DM_OK);
    dm_buf_reset(txt);
    assert_int_equal(dm_b64_encode(txt, raw->data, raw->len, DM_B64_URL), DM_OK);
}

/* Malformed tokens that carry a valid MAC: the structural checks must catch them on their own. */
static void test_mac_valid_malformed(void **state)
{
    (void)state;
    crypto_fernet_key k;
    assert_int_equal(crypto_fernet_key_generate(&k), DM_OK);
    uint8_t iv[16] = {1, 2, 3};
    const uint64_t now = 1700000000;
    dm_buf tok = DM_BUF_INIT, raw = DM_BUF_INIT, txt = DM_BUF_INIT, pt = DM_BUF_INIT;
    assert_int_equal(
        crypto_fernet_encrypt_at(&tok, &k, (const uint8_t *)"0123456789abcdefXYZ", 19, now, iv),
        DM_OK);
    token_raw(&raw, (const char *)tok.data, tok.len);
    assert_int_equal(raw.len, 25 + 32 + 32);

    /* sanity: re-signing an intact token keeps it valid */
    resign(&txt, &raw, &k);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, (const char *)txt.data, txt.len, 0, now),
                     DM_OK);
    assert_int_equal(pt.len, 19);
    dm_buf_reset(&pt);

    /* other version bytes */
    static const uint8_t versions[] = {0x00, 0x7f, 0x81, 0xff};
    for (size_t i = 0; i < sizeof versions; i++) {
        raw.data[0] = versions[i];
        resign(&txt, &raw, &k);
        assert_int_equal(crypto_fernet_decrypt(&pt, &k, (const char *)txt.data, txt.len, 0, now),
                         DM_EBADTOKEN);
        uint64_t ts;
        assert_int_equal(crypto_fernet_token_time(&k, (const char *)txt.data, txt.len, &ts),
                         DM_EBADTOKEN);
    }
    raw.data[0] = 0x80;

    /* ciphertext not a multiple of the block size (drop 1..15 bytes of the last block) */
    uint8_t mac_room[32] = {0};
    for (size_t cut = 1; cut < 16; cut++) {
        dm_buf r2 = DM_BUF_INIT;
        assert_int_equal(dm_buf_append(&r2, raw.data, 25 + 32 - cut), DM_OK);
        assert_int_equal(dm_buf_append(&r2, mac_room, 32), DM_OK);
        resign(&txt, &r2, &k);
        int rc = crypto_fernet_decrypt(&pt, &k, (const char *)txt.data, txt.len, 0, now);
        if (rc != DM_EBADTOKEN)
            fail_msg("ciphertext of %zu bytes: got %s", 32 - cut, dm_err_name(rc));
        dm_buf_free(&r2);
    }

    /* no ciphertext at all */
    dm_buf r3 = DM_BUF_INIT;
    assert_int_equal(dm_buf_append(&r3, raw.data, 25), DM_OK);
    assert_int_equal(dm_buf_append(&r3, mac_room, 32), DM_OK);
    resign(&txt, &r3, &k);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, (const char *)txt.data, txt.len, 0, now),
                     DM_EBADTOKEN);
    dm_buf_free(&r3);

    /* valid MAC, corrupted padding: the last plaintext byte is steered through the IV of the
     * last block (CBC malleability), so only the padding check can refuse it */
    for (int delta = 1; delta < 256; delta++) {
        raw.data[25 + 15] ^= (uint8_t)delta; /* previous ciphertext block's last byte */
        resign(&txt, &raw, &k);
        dm_buf_reset(&pt);
        int rc = crypto_fernet_decrypt(&pt, &k, (const char *)txt.data, txt.len, 0, now);
        /* the block is "XYZ" + 13 x 0x0d; its last byte becomes 13 ^ delta. Only 1 makes a
         * valid pad (2..16 would need that many equal bytes before it, which differ) */
        uint8_t padv = (uint8_t)(13 ^ delta);
        if (padv == 1) {
            assert_int_equal(rc, DM_OK);
            assert_int_equal(pt.len, 31);
        } else {
            if (rc != DM_EBADTOKEN)
                fail_msg("pad byte %u accepted: %s", padv, dm_err_name(rc));
            assert_int_equal(pt.len, 0);
        }
        raw.data[25 + 15] ^= (uint8_t)delta;
    }

    dm_buf_free(&tok);
    dm_buf_free(&raw);
    dm_buf_free(&txt);
    dm_buf_free_secure(&pt);
    crypto_fernet_key_wipe(&k);
}

/* Boundaries of the age policy and crypto_fernet_token_time. */
static void test_token_time(void **state)
{
    (void)state;
    crypto_fernet_key k;
    assert_int_equal(crypto_fernet_key_generate(&k), DM_OK);
    uint8_t iv[16] = {0};
    const uint64_t ts = 1700000000;
    dm_buf tok = DM_BUF_INIT, pt = DM_BUF_INIT;
    assert_int_equal(crypto_fernet_encrypt_at(&tok, &k, (const uint8_t *)"x", 1, ts, iv), DM_OK);
    const char *t = (const char *)tok.data;

    uint64_t got = 0;
    assert_int_equal(crypto_fernet_token_time(&k, t, tok.len, &got), DM_OK);
    assert_int_equal(got, ts);

    /* clock skew: up to 60 s in the future is accepted */
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, 0, ts - 60), DM_OK);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, 0, ts - 61), DM_EEXPIRED);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, 10, ts - 61), DM_EEXPIRED);
    /* ttl: exactly ttl old is fine, one second more is expired; 0 disables the check */
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, 100, ts + 100), DM_OK);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, 100, ts + 101), DM_EEXPIRED);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, 0, ts + 100000000), DM_OK);
    assert_int_equal(pt.len, 3);
    assert_memory_equal(pt.data, "xxx", 3);

    /* extreme timestamps do not overflow the checks */
    dm_buf_reset(&tok);
    assert_int_equal(crypto_fernet_encrypt_at(&tok, &k, (const uint8_t *)"y", 1, UINT64_MAX, iv),
                     DM_OK);
    t = (const char *)tok.data;
    assert_int_equal(crypto_fernet_token_time(&k, t, tok.len, &got), DM_OK);
    assert_int_equal(got, UINT64_MAX);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, 0, 0), DM_EEXPIRED);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, 0, UINT64_MAX - 60), DM_OK);
    dm_buf_reset(&tok);
    assert_int_equal(crypto_fernet_encrypt_at(&tok, &k, (const uint8_t *)"z", 1, 0, iv), DM_OK);
    t = (const char *)tok.data;
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, 1, UINT64_MAX), DM_EEXPIRED);
    assert_int_equal(crypto_fernet_decrypt(&pt, &k, t, tok.len, UINT64_MAX, UINT64_MAX), DM_OK);

    dm_buf_free(&tok);
    dm_buf_free_secure(&pt);
    crypto_fernet_key_wipe(&k);
}

int test_crypto_fernet(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339_helper),
        cmocka_unit_test(test_vectors_generate),
        cmocka_unit_test(test_vectors_verify),
        cmocka_unit_test(test_vectors_invalid),
        cmocka_unit_test(test_round_trip_sizes),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_key_encode_decode),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_wrong_key_and_truncation),
        cmocka_unit_test(test_mac_valid_malformed),
        cmocka_unit_test(test_token_time),
    };
    return cmocka_run_group_tests_name("crypto_fernet", tests, NULL, NULL);
}
