#include "dm_log.h"
#include "dm_err.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static dm_log_level g_level = DM_LOG_INFO;
static FILE *g_stream;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

void dm_log_set_level(dm_log_level lvl)
{
    g_level = lvl;
}

dm_log_level dm_log_get_level(void)
{
    return g_level;
}

void dm_log_set_stream(FILE *f)
{
    pthread_mutex_lock(&g_lock);
    g_stream = f;
    pthread_mutex_unlock(&g_lock);
}

const char *dm_log_level_name(dm_log_level lvl)
{
    switch (lvl) {
    case DM_LOG_DEBUG: return "DEBUG";
    case DM_LOG_INFO: return "INFO";
    case DM_LOG_WARNING: return "WARNING";
    case DM_LOG_ERROR: return "ERROR";
    }
    return "INFO";
}

int dm_log_level_parse(const char *s, dm_log_level *out)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (dm_log_level)i;
            return DM_OK;
        }
    }
    return DM_EINVAL;
}

void dm_log(dm_log_level lvl, const char *category, const char *fmt, ...)
{
    if (lvl < g_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* a log line is one line: neutralise control characters an attacker might inject */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    pthread_mutex_lock(&g_lock);
    FILE *f = g_stream ? g_stream : stderr;
    fprintf(f, "%s - %s - %s - %s\n", ts, category, dm_log_level_name(lvl), msg);
    fflush(f);
    pthread_mutex_unlock(&g_lock);
}

void dm_log_mask(char out[8], const char *secret)
{
    size_t n = secret ? strlen(secret) : 0;
    if (n < 8) {
        memcpy(out, "***", 4);
        return;
    }
    memcpy(out, secret, 3);
    memcpy(out + 3, "***", 4);
}
