/*
 * libFuzzer target for the configuration file parser (node_config_load_text).
 * Properties checked beyond "no crash, no leak, no UB":
 *   - a rejected input leaves the configuration exactly as it was (all-or-nothing), and
 *     always produces a "config: " message;
 *   - an accepted input dumps to text that loads back to the same dump (round trip) and
 *     that contains no control characters other than newlines.
 * Build: cmake -DDM_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
 * Run:   ./fuzz_config -max_total_time=30 fuzz/corpus/config
 */
#include "dm_buf.h"
#include "dm_err.h"
#include "node_config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dump(const node_config *cfg)
{
    dm_buf b = DM_BUF_INIT;
    if (node_config_dump(cfg, &b) != DM_OK)
        abort();
    dm_buf_cstr(&b);
    size_t n;
    return (char *)dm_buf_steal(&b, &n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    node_config cfg;
    dm_buf err = DM_BUF_INIT;
    if (node_config_init(&cfg) != DM_OK)
        abort();
    char *before = dump(&cfg);
    int rc = node_config_load_text(&cfg, (const char *)data, size, "fuzz", &err);
    char *after = dump(&cfg);
    if (rc != DM_OK) {
        if (rc != DM_ECONFIG && rc != DM_ENOMEM)
            abort();
        if (rc == DM_ECONFIG && strncmp(dm_buf_cstr(&err), "config: ", 8) != 0)
            abort();
        if (strcmp(before, after) != 0)
            abort(); /* a rejected file changed the configuration */
    } else {
        for (const char *p = after; *p; p++)
            if ((unsigned char)*p < 0x20 && *p != '\n')
                abort();
        node_config back;
        if (node_config_init(&back) != DM_OK)
            abort();
        dm_buf_reset(&err);
        if (node_config_load_text(&back, after, strlen(after), "dump", &err) != DM_OK)
            abort(); /* the dump of an accepted file must load */
        char *again = dump(&back);
        if (strcmp(after, again) != 0)
            abort();
        free(again);
        dm_buf_reset(&err);
        (void)node_config_validate(&cfg, &err);
        node_config_free(&back);
    }
    free(before);
    free(after);
    dm_buf_free(&err);
    node_config_free(&cfg);
    return 0;
}
