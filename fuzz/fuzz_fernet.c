/*
 * libFuzzer target for the Fernet token parser and the base64 decoder it sits
 * on. Arbitrary bytes go to crypto_fernet_decrypt / crypto_fernet_token_time
 * under a fixed key (the key of the spec's vectors, so seeds made from those
 * vectors reach the MAC and padding checks), to crypto_fernet_key_decode, and
 * to dm_b64_decode in both alphabets. Invariants checked: only the documented
 * error codes come back, a failed call leaves its output untouched, and a
 * successful decode re-encodes to the same text.
 */
#include "crypto_fernet.h"
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the key of the spec's vectors */
static const char KEY_TEXT[] = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
/* the spec vectors' "now" (1985-10-26T01:20:01-07:00) */
static const uint64_t NOW = 499162801;

static void check_b64(const char *s, size_t n, dm_b64_alphabet a)
{
    dm_buf out = DM_BUF_INIT;
    dm_buf_puts(&out, "x");
    int rc = dm_b64_decode(&out, s, n, a);
    if (rc == DM_OK) {
        dm_buf re = DM_BUF_INIT;
        if (dm_b64_encode(&re, out.data + 1, out.len - 1, a) != DM_OK || re.len != n ||
            memcmp(re.data, s, n) != 0)
            abort(); /* strict decoding must be canonical */
        dm_buf_free(&re);
    } else if (rc == DM_EPARSE) {
        if (out.len != 1)
            abort();
    } else if (rc != DM_ENOMEM && rc != DM_ETOOBIG) {
        abort();
    }
    dm_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    crypto_fernet_key k;
    if (crypto_fernet_key_decode(&k, KEY_TEXT, sizeof KEY_TEXT - 1) != DM_OK)
        abort();

    dm_buf pt = DM_BUF_INIT;
    int rc = crypto_fernet_decrypt(&pt, &k, s, size, 60, NOW);
    if (rc != DM_OK && rc != DM_EBADTOKEN && rc != DM_EEXPIRED && rc != DM_ETOOBIG &&
        rc != DM_ENOMEM)
        abort();
    if (rc != DM_OK && pt.len != 0)
        abort();
    if (rc == DM_OK) {
        /* an authentic token: its time must be readable and within the policy */
        uint64_t ts = 0;
        if (crypto_fernet_token_time(&k, s, size, &ts) != DM_OK || ts > NOW + 60 ||
            (ts < NOW && NOW - ts > 60))
            abort();
    }
    dm_buf_free_secure(&pt);

    /* without an age limit, only malformed tokens and future ones fail */
    rc = crypto_fernet_decrypt(&pt, &k, s, size, 0, NOW);
    if (rc != DM_OK && rc != DM_EBADTOKEN && rc != DM_EEXPIRED && rc != DM_ETOOBIG &&
        rc != DM_ENOMEM)
        abort();
    dm_buf_free_secure(&pt);

    crypto_fernet_key k2;
    rc = crypto_fernet_key_decode(&k2, s, size);
    if (rc != DM_OK && rc != DM_EPARSE && rc != DM_ENOMEM)
        abort();
    crypto_fernet_key_wipe(&k2);

    check_b64(s, size, DM_B64_URL);
    check_b64(s, size, DM_B64_STD);
    crypto_fernet_key_wipe(&k);
    return 0;
}
