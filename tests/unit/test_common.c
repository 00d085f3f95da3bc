/* Unit tests for common/: byte buffers, hex/base64 codecs, log masking and format. */
#include "dm_test.h"

#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "dm_log.h"

static void test_buf_grow_and_print(void **state)
{
    (void)state;
    dm_buf b = DM_BUF_INIT;
    assert_string_equal(dm_buf_cstr(&b), "");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(dm_buf_printf(&b, "%d,", i), DM_OK);
    assert_true(b.len > 1000);
    assert_memory_equal(b.data, "0,1,2,", 6);
    assert_int_equal(dm_buf_put_u64be(&b, 0x0102030405060708ull), DM_OK);
    assert_int_equal(dm_get_u64be(b.data + b.len - 8), 0x0102030405060708ull);
    assert_int_equal(b.data[b.len - 8], 1);
    dm_buf_reset(&b);
    assert_int_equal(dm_buf_puts(&b, "abc"), DM_OK);
    assert_string_equal(dm_buf_cstr(&b), "abc");
    size_t n;
    uint8_t *p = dm_buf_steal(&b, &n);
    assert_int_equal(n, 3);
    assert_null(b.data);
    free(p);
    assert_int_equal(dm_buf_reserve(&b, SIZE_MAX), DM_ETOOBIG);
    dm_buf_free_secure(&b);
}

static void test_hex(void **state)
{
    (void)state;
    uint8_t in[] = {0x00, 0xab, 0xff, 0x10};
    char out[9];
    dm_hex_encode(out, in, 4);
    assert_string_equal(out, "00abff10");
    uint8_t back[4];
    assert_int_equal(dm_hex_decode(back, 4, "00ABff10", 8), DM_OK);
    assert_memory_equal(back, in, 4);
    assert_int_equal(dm_hex_decode(back, 4, "00abff1", 7), DM_EPARSE);
    assert_int_equal(dm_hex_decode(back, 4, "00abff1g", 8), DM_EPARSE);
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(dm_hex_decode_buf(&b, "0x0102", 6), DM_OK);
    assert_int_equal(b.len, 2);
    assert_int_equal(dm_hex_decode_buf(&b, "0x010", 5), DM_EPARSE);
    assert_int_equal(b.len, 2);
    dm_buf_free(&b);
}

/* RFC 4648 §10 test vectors, both alphabets, and strictness. */
static void test_base64(void **state)
{
    (void)state;
    static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        dm_buf b = DM_BUF_INIT;
        assert_int_equal(dm_b64_encode(&b, (const uint8_t *)plain[i], strlen(plain[i]), DM_B64_STD),
                         DM_OK);
        assert_string_equal(dm_buf_cstr(&b), enc[i]);
        dm_buf d = DM_BUF_INIT;
        assert_int_equal(dm_b64_decode(&d, enc[i], strlen(enc[i]), DM_B64_URL), DM_OK);
        assert_int_equal(d.len, strlen(plain[i]));
        if (d.len)
            assert_memory_equal(d.data, plain[i], d.len);
        dm_buf_free(&b);
        dm_buf_free(&d);
    }
    uint8_t bin[] = {0xfb, 0xff, 0xfe};
    dm_buf b = DM_BUF_INIT;
    assert_int_equal(dm_b64_encode(&b, bin, 3, DM_B64_URL), DM_OK);
    assert_string_equal(dm_buf_cstr(&b), "-__-");
    dm_buf_reset(&b);
    assert_int_equal(dm_b64_encode(&b, bin, 3, DM_B64_STD), DM_OK);
    assert_string_equal(dm_buf_cstr(&b), "+//+");
    dm_buf_reset(&b);
    static const char *bad[] = {"Zg=", "Zg", "Z===", "Zh==", "Zm9=v", "=Zm9", "Zm9v\n", "-__-"};
    for (int i = 0; i < 8; i++) {
        assert_int_equal(dm_b64_decode(&b, bad[i], strlen(bad[i]), DM_B64_STD), DM_EPARSE);
        assert_int_equal(b.len, 0);
    }
    assert_int_equal(dm_b64_decode(&b, "+//+", 4, DM_B64_URL), DM_EPARSE);
    dm_buf_free(&b);
}

static void test_log_mask_and_format(void **state)
{
    (void)state;
    char m[8];
    dm_log_mask(m, "abcdef123456");
    assert_string_equal(m, "abc***");
    dm_log_mask(m, "short");
    assert_string_equal(m, "***");
    dm_log_mask(m, NULL);
    assert_string_equal(m, "***");

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    dm_log_set_stream(f);
    dm_log_set_level(DM_LOG_INFO);
    dm_log(DM_LOG_DEBUG, "security", "hidden");
    dm_log(DM_LOG_WARNING, "security", "Rate limit exceeded for %s\ninjected", "192.0.2.1");
    dm_log_set_stream(NULL);
    fclose(f);
    /* 2024-01-15 10:30:00 - security - WARNING - Rate limit exceeded for 192.0.2.1 injected */
    int y, mo, d, h, mi, s;
    char rest[200];
    assert_int_equal(sscanf(text, "%4d-%2d-%2d %2d:%2d:%2d - %199[^\n]", &y, &mo, &d, &h, &mi, &s, rest), 7);
    assert_string_equal(rest, "security - WARNING - Rate limit exceeded for 192.0.2.1 injected");
    assert_null(strstr(text, "hidden"));
    assert_int_equal(strchr(text, '\n') - text + 1, (long)len); /* exactly one line */
    free(text);

    dm_log_level lvl;
    assert_int_equal(dm_log_level_parse("WARNING", &lvl), DM_OK);
    assert_int_equal(lvl, DM_LOG_WARNING);
    assert_int_equal(dm_log_level_parse("verbose", &lvl), DM_EINVAL);
}

static void test_err_names(void **state)
{
    (void)state;
    for (int e = 0; e >= DM_EBANNED; e--) {
        assert_string_not_equal(dm_err_name(e), "EUNKNOWN");
        assert_string_not_equal(dm_strerror(e), "unknown error");
    }
    assert_string_equal(dm_err_name(DM_EBADPASS), "EBADPASS");
    assert_string_equal(dm_err_name(12345), "EUNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_grow_and_print),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_log_mask_and_format),
        cmocka_unit_test(test_err_names),
    };
    return cmocka_run_group_tests_name("common", tests, NULL, NULL);
}
