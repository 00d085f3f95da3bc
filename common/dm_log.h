#ifndef DM_COMMON_LOG_H
#define DM_COMMON_LOG_H

#include <stddef.h>
#include <stdio.h>

/*
 * Logging in the reference's line format:
 *   2024-01-15 10:30:00 - security - WARNING - Rate limit exceeded for 192.168.1.100
 * Lines go to stderr (or a stream set with dm_log_set_stream). Callers never
 * pass secrets unmasked: use dm_log_mask() for anything credential-like.
 */
typedef enum {
    DM_LOG_DEBUG = 0,
    DM_LOG_INFO = 1,
    DM_LOG_WARNING = 2,
    DM_LOG_ERROR = 3,
} dm_log_level;

void dm_log_set_level(dm_log_level lvl);
dm_log_level dm_log_get_level(void);
/** Borrowed stream; NULL restores stderr. */
void dm_log_set_stream(FILE *f);
/** Parse "debug" / "info" / "warning" / "error". Returns 0 or DM_EINVAL. */
int dm_log_level_parse(const char *s, dm_log_level *out);
const char *dm_log_level_name(dm_log_level lvl);

/** Emit one line; `category` is e.g. "security", "node", "storage". Thread-safe. */
void dm_log(dm_log_level lvl, const char *category, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Mask a secret for display: the first three characters followed by "***"
 * ("abc***"); secrets shorter than 8 characters show only "***". Writes a
 * NUL-terminated string of at most 7 characters into `out` (size >= 8).
 */
void dm_log_mask(char out[8], const char *secret);

#endif
