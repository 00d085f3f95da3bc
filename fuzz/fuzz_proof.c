/*
 * libFuzzer target for the proof bundle parser and the offline verification
 * (chain_verify_bundle_parse, chain_verify_offline; chain/chain_verify.h).
 * Properties checked beyond "no crash, no leak, no UB":
 *   - a rejected input gives DM_EPARSE (with a message) or DM_ETOOBIG / DM_ENOMEM, and no
 *     bundle;
 *   - an accepted bundle respects every bound the header promises (chain_id and count >= 1,
 *     at most CRYPTO_MERKLE_MAX_DEPTH siblings, SPKI and signature sizes, a 64-hex node_id,
 *     an event object with a string event_type and a 64-hex origin);
 *   - the offline checks all run (each one PASS or FAIL, none left NOT_RUN, no online check
 *     touched), their verdict matches the return code, and a second run gives the same
 *     report byte for byte;
 *   - the text and JSON forms of the report build.
 * Seeds in fuzz/corpus/proof: valid bundles (RSA-2048 node key, real binding signature,
 * Merkle paths of batches of 1, 5 and 1000), the same with one field altered, and malformed
 * ones.
 * Build: cmake -DDM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
 * Run:   ./fuzz_proof -max_total_time=30 fuzz/corpus/proof
 */
#include "chain_verify.h"
#include "dm_buf.h"
#include "dm_err.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool hex64(const char *s)
{
    if (!s || strlen(s) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

static void check_bundle(const chain_verify_bundle *b)
{
    if (b->chain_id < 1 || b->merkle.count < 1 || b->merkle.len > CRYPTO_MERKLE_MAX_DEPTH)
        abort();
    if (b->origin.spki_len < 1 || b->origin.spki_len > CHAIN_VERIFY_SPKI_MAX ||
        b->origin.eth_binding_len < 1 || b->origin.eth_binding_len > CHAIN_VERIFY_SIG_MAX)
        abort();
    if (!hex64(b->origin.node_id))
        abort();
    if (!json_is_object(b->event) || !json_is_string(json_object_get(b->event, "event_type")) ||
        !hex64(json_string_value(json_object_get(b->event, "origin"))))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chain_verify_bundle *b = (chain_verify_bundle *)(uintptr_t)1;
    char err[CHAIN_VERIFY_MSG_MAX];
    int rc = chain_verify_bundle_parse((const char *)data, size, &b, err);
    if (rc != DM_OK) {
        if (b != NULL)
            abort();
        if (rc == DM_EPARSE &&
            (err[0] == '\0' || strlen(err) >= CHAIN_VERIFY_MSG_MAX || !printable(err)))
            abort(); /* a message, printable ASCII (safe to log and to put in JSON) */
        if (rc != DM_EPARSE && rc != DM_ETOOBIG && rc != DM_ENOMEM)
            abort();
        return 0;
    }
    check_bundle(b);

    chain_verify_report r1, r2;
    chain_verify_report_init(&r1);
    chain_verify_report_init(&r2);
    int v1 = chain_verify_offline(b, &r1);
    int v2 = chain_verify_offline(b, &r2);
    if (v1 != v2 || memcmp(&r1, &r2, sizeof r1) != 0)
        abort(); /* deterministic */
    if (v1 != DM_OK && v1 != DM_ETAMPER && v1 != DM_ENOMEM && v1 != DM_ECRYPTO)
        abort();
    for (int i = CHAIN_VERIFY_CHECK_FORMAT; i <= CHAIN_VERIFY_CHECK_SENDER; i++)
        if (r1.checks[i].result != CHAIN_VERIFY_PASS && r1.checks[i].result != CHAIN_VERIFY_FAIL)
            abort();
    for (int i = CHAIN_VERIFY_CHECK_CHAIN_ID; i < CHAIN_VERIFY_CHECK_COUNT_ALL; i++)
        if (r1.checks[i].result != CHAIN_VERIFY_NOT_RUN)
            abort();
    for (int i = 0; i < CHAIN_VERIFY_CHECK_COUNT_ALL; i++) {
        if (strnlen(r1.checks[i].msg, CHAIN_VERIFY_MSG_MAX) == CHAIN_VERIFY_MSG_MAX ||
            !printable(r1.checks[i].msg))
            abort();
        if (r1.checks[i].result == CHAIN_VERIFY_FAIL && r1.checks[i].msg[0] == '\0')
            abort(); /* a failure always says what did not match */
    }
    if ((v1 == DM_OK) != chain_verify_report_offline_ok(&r1))
        abort();
    if (chain_verify_report_ok(&r1))
        abort(); /* the chain was not asked */

    dm_buf out = DM_BUF_INIT;
    if (chain_verify_report_format(&r1, &out) != DM_OK)
        abort();
    dm_buf_free(&out);
    json_t *j = chain_verify_report_json(&r1);
    if (!j || json_array_size(json_object_get(j, "checks")) != CHAIN_VERIFY_CHECK_COUNT_ALL)
        abort();
    json_decref(j);
    chain_verify_bundle_free(b);
    return 0;
}
