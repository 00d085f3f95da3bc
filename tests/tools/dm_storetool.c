/*
 * dm_storetool: read and write a node's RocksDB directly, for tests that tamper
 * with a copy of a data directory (the daemon must not be running on it).
 *
 *   dm_storetool DB list   CF [PREFIX]       one line per record: KEY<TAB>VALUE
 *   dm_storetool DB get    CF KEY            the value, raw, on stdout
 *   dm_storetool DB put    CF KEY VALUE      VALUE "-": read it from stdin
 *   dm_storetool DB delete CF KEY
 *
 * DB is the database directory (<datadir>/db); CF a column family name as
 * stored ("meta", "audit", "outbox", "anchors", …). KEY, PREFIX and VALUE are
 * text, or "hex:<hex>" for raw bytes, or "u64:<decimal>" for the 8-byte
 * big-endian keys of audit and outbox. list prints keys as text when
 * printable, else keys of 8 bytes as "u64:<n>", else "hex:…"; values as text
 * when printable, else "hex:…". Exit 0, 1 on a failure (message on stderr),
 * 2 on a usage error, 3 when get finds nothing.
 */
#include "dm_buf.h"
#include "dm_enc.h"
#include "dm_err.h"
#include "store.h"
#include "store_keys.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr, "usage: dm_storetool DB list CF [PREFIX] | get CF KEY | put CF KEY VALUE|- | "
                    "delete CF KEY\n");
    return 2;
}

/* text, hex:…, or u64:N into bytes */
static int parse_arg(const char *s, dm_buf *out)
{
    if (!strncmp(s, "hex:", 4))
        return dm_hex_decode_buf(out, s + 4, strlen(s + 4));
    if (!strncmp(s, "u64:", 4)) {
        char *end;
        unsigned long long v = strtoull(s + 4, &end, 10);
        if (!s[4] || *end)
            return DM_EINVAL;
        uint8_t k[STORE_KEY_U64_LEN];
        store_key_u64(k, v);
        return dm_buf_append(out, k, sizeof k);
    }
    return dm_buf_puts(out, s);
}

static bool printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            return false;
    return true;
}

static void print_bytes(const uint8_t *p, size_t n, bool as_key)
{
    uint64_t v;
    if (printable(p, n)) {
        fwrite(p, 1, n, stdout);
    } else if (as_key && n == STORE_KEY_U64_LEN && store_key_u64_decode(p, n, &v) == DM_OK) {
        printf("u64:%" PRIu64, v);
    } else {
        char *hex = malloc(2 * n + 1);
        if (!hex)
            return;
        dm_hex_encode(hex, p, n);
        printf("hex:%s", hex);
        free(hex);
    }
}

static int read_stdin(dm_buf *out)
{
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (dm_buf_append(out, chunk, n))
            return DM_ENOMEM;
    return ferror(stdin) ? DM_EIO : DM_OK;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return usage();
    const char *db = argv[1], *cmd = argv[2], *cfname = argv[3];
    store_cf cf = STORE_CF__COUNT;
    for (int i = 0; i < STORE_CF__COUNT; i++)
        if (!strcmp(cfname, store_cf_name((store_cf)i)))
            cf = (store_cf)i;
    if (cf == STORE_CF__COUNT) {
        fprintf(stderr, "dm_storetool: unknown column family %s\n", cfname);
        return 2;
    }
    bool list = !strcmp(cmd, "list"), get = !strcmp(cmd, "get"), put = !strcmp(cmd, "put"),
         del = !strcmp(cmd, "delete");
    if (!(list && argc <= 5) && !(get && argc == 5) && !(put && argc == 6) && !(del && argc == 5))
        return usage();
    dm_buf key = DM_BUF_INIT, val = DM_BUF_INIT;
    if (argc >= 5 && parse_arg(argv[4], &key)) {
        fprintf(stderr, "dm_storetool: bad key %s\n", argv[4]);
        return 2;
    }
    int rc = DM_OK;
    if (put)
        rc = strcmp(argv[5], "-") ? parse_arg(argv[5], &val) : read_stdin(&val);
    if (rc) {
        fprintf(stderr, "dm_storetool: bad value: %s\n", dm_strerror(rc));
        return 2;
    }
    store_t *s = NULL;
    store_opts o = {.create = false, .read_only = list || get, .sync = true};
    if ((rc = store_open(&s, db, &o))) {
        fprintf(stderr, "dm_storetool: cannot open %s: %s %s\n", db, dm_strerror(rc),
                store_errmsg());
        return 1;
    }
    int exit_code = 0;
    if (list) {
        store_iter_t *it;
        if (!(rc = store_iter_create(&it, s, cf, key.data, key.len, NULL, 0))) {
            const uint8_t *k, *v;
            size_t kl, vl;
            while (store_iter_next(it, &k, &kl, &v, &vl)) {
                print_bytes(k, kl, true);
                putchar('\t');
                print_bytes(v, vl, false);
                putchar('\n');
            }
            rc = store_iter_status(it);
            store_iter_destroy(it);
        }
    } else if (get) {
        rc = store_get(s, cf, key.data, key.len, &val);
        if (rc == DM_ENOTFOUND) {
            exit_code = 3;
            rc = DM_OK;
        } else if (!rc) {
            fwrite(val.data, 1, val.len, stdout);
        }
    } else if (put) {
        rc = store_put(s, cf, key.data, key.len, val.data, val.len);
    } else {
        rc = store_delete(s, cf, key.data, key.len);
    }
    if (rc) {
        fprintf(stderr, "dm_storetool: %s failed: %s %s\n", cmd, dm_strerror(rc), store_errmsg());
        exit_code = 1;
    }
    store_close(s);
    dm_buf_free(&key);
    dm_buf_free(&val);
    return exit_code;
}
