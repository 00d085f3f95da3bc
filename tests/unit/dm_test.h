#ifndef DM_TESTS_DM_TEST_H
#define DM_TESTS_DM_TEST_H

/*
 * Shared helpers for the cmocka unit-test programs. Header-only (static
 * functions) so every test program gets its own copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <dirent.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Load ../shared/vectors/<rel> (DM_VECTORS_DIR is set by CMake). Fails the test if absent. */
static inline json_t *dm_test_vectors(const char *rel)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", DM_VECTORS_DIR, rel);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j)
        fail_msg("cannot load vectors %s: %s (line %d)", path, e.text, e.line);
    return j;
}

/* A fresh empty directory under $DM_TEST_TMP (or /tmp). Caller frees the string
 * and removes the tree with dm_test_rmtree. */
static inline char *dm_test_mkdtemp(const char *tag)
{
    const char *base = getenv("DM_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0700);
    char *p = malloc(PATH_MAX);
    assert_non_null(p);
    snprintf(p, PATH_MAX, "%s/%s.XXXXXX", base, tag);
    if (!mkdtemp(p))
        fail_msg("mkdtemp %s: %s", p, strerror(errno));
    return p;
}

static inline int dm_test_rm_cb(const char *path, const struct stat *sb, int flag,
                                struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void dm_test_rmtree(const char *path)
{
    if (path)
        nftw(path, dm_test_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Hex string (optional 0x) to bytes; returns length. Fails the test on bad hex. */
static inline size_t dm_test_unhex(uint8_t *out, size_t cap, const char *hex)
{
    if (hex[0] == '0' && (hex[1] == 'x' || hex[1] == 'X'))
        hex += 2;
    size_t n = strlen(hex);
    assert_true(n % 2 == 0 && n / 2 <= cap);
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n / 2;
}

#endif
