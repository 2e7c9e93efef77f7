/*
 * log.h - one line per event: "ts level component key=value ...".
 *
 * ts is RFC 3339 UTC with milliseconds. Callers write the key=value part
 * themselves; every %s value is escaped by the logger so a value it did not
 * write cannot add a field or a line: after "key=" a value with spaces, '=',
 * quotes, backslashes or control characters (or an empty one) is quoted;
 * after a '"' (key="%s") quotes and backslashes are backslash-escaped;
 * control characters are escaped everywhere (\n, \r, \t, \xNN). Secrets are
 * never passed here.
 */
#ifndef TM_LOG_H
#define TM_LOG_H

#include <stdio.h>

typedef enum { TM_LOG_DEBUG = 0, TM_LOG_INFO, TM_LOG_WARN, TM_LOG_ERROR } tm_log_level;

void tm_log_set_level(tm_log_level level);
/* Default stderr. The stream is not closed by the logger. */
void tm_log_set_stream(FILE *f);
/* "debug"|"info"|"warn"|"error" -> level; returns 0 or TM_EINVAL. */
int tm_log_parse_level(const char *s, tm_log_level *out);
int tm_log_enabled(tm_log_level level);
void tm_log(tm_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define tm_debug(comp, ...) tm_log(TM_LOG_DEBUG, comp, __VA_ARGS__)
#define tm_info(comp, ...) tm_log(TM_LOG_INFO, comp, __VA_ARGS__)
#define tm_warn(comp, ...) tm_log(TM_LOG_WARN, comp, __VA_ARGS__)
#define tm_error(comp, ...) tm_log(TM_LOG_ERROR, comp, __VA_ARGS__)

#endif
