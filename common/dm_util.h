#ifndef DM_COMMON_UTIL_H
#define DM_COMMON_UTIL_H

#include <stddef.h>

/** The struct that contains `ptr` as its member `member` (for uv handle callbacks). */
#define DM_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define DM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
