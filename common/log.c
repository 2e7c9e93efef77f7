#include "common/log.h"
#include "common/err.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

static tm_log_level log_level = TM_LOG_INFO;
static FILE *log_stream;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

void tm_log_set_level(tm_log_level level)
{
    log_level = level;
}

void tm_log_set_stream(FILE *f)
{
    log_stream = f;
}

int tm_log_parse_level(const char *s, tm_log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (tm_log_level)i;
            return TM_OK;
        }
    }
    return TM_EINVAL;
}

int tm_log_enabled(tm_log_level level)
{
    return level >= log_level;
}

void tm_log(tm_log_level level, const char *component, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < log_level) {
        return;
    }
    struct timespec ts;
    struct tm tm;
    char tbuf[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);

    char line[2048];
    int n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s ", tbuf, ts.tv_nsec / 1000000L,
                     names[level], component);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line)) {
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    }
    va_end(ap);

    FILE *f = log_stream != NULL ? log_stream : stderr;
    pthread_mutex_lock(&log_mu);
    fputs(line, f);
    fputc('\n', f);
    fflush(f);
    pthread_mutex_unlock(&log_mu);
}
