#include "common/log.h"
#include "common/err.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
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

/* Where a %s sits decides how its value is escaped (see log.h). */
enum { CTX_FREE, CTX_VALUE, CTX_QUOTED };

typedef struct out {
    char *p;
    size_t cap, n; /* n may pass cap: the line is truncated, not overrun */
} out;

static void put(out *o, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++, o->n++) {
        if (o->n + 1 < o->cap) {
            o->p[o->n] = s[i];
        }
    }
}

static int needs_quotes(const char *s, size_t len)
{
    if (len == 0) {
        return 1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f || c == '=' || c == '"' || c == '\\') {
            return 1;
        }
    }
    return 0;
}

/* A value the caller did not write (a hostname an agent chose, a message
 * from an S3 server) must not add fields or lines: control characters are
 * always escaped; inside quotes '"' and '\\' are too; a bare key=value
 * value that would not read back as one token is quoted. */
static void put_escaped(out *o, const char *s, size_t len, int ctx)
{
    int quote = ctx == CTX_VALUE && needs_quotes(s, len);
    if (quote) {
        put(o, "\"", 1);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '\n') {
            put(o, "\\n", 2);
        } else if (c == '\r') {
            put(o, "\\r", 2);
        } else if (c == '\t') {
            put(o, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            put(o, esc, 4);
        } else if ((c == '"' || c == '\\') && (quote || ctx == CTX_QUOTED)) {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(o, esc, 2);
        } else {
            put(o, (const char *)&c, 1);
        }
    }
    if (quote) {
        put(o, "\"", 1);
    }
}

/* vsnprintf with every %s escaped by put_escaped. Conversions other than %s
 * are handed to snprintf one at a time, so their formatting is libc's. */
static void format_escaped(out *o, const char *fmt, va_list ap, int saved_errno)
{
    const char *f = fmt;
    while (*f != '\0') {
        const char *pct = strchr(f, '%');
        if (pct == NULL) {
            put(o, f, strlen(f));
            return;
        }
        put(o, f, (size_t)(pct - f));
        char spec[48];
        size_t sn = 0;
        const char *q = pct + 1;
        int left = 0, width = -1, prec = -1;
        spec[sn++] = '%';
        while (*q != '\0' && strchr("-+ #0", *q) != NULL) {
            left |= *q == '-';
            if (sn < 8) {
                spec[sn++] = *q;
            }
            q++;
        }
        if (*q == '*') {
            width = va_arg(ap, int);
            q++;
        } else if (*q >= '0' && *q <= '9') {
            width = (int)strtol(q, (char **)&q, 10);
        }
        if (*q == '.') {
            q++;
            if (*q == '*') {
                prec = va_arg(ap, int);
                q++;
            } else {
                prec = (int)strtol(q, (char **)&q, 10);
            }
        }
        if (width >= 0) {
            sn += (size_t)snprintf(spec + sn, sizeof(spec) - sn, "%d", width);
        }
        if (prec >= 0) {
            sn += (size_t)snprintf(spec + sn, sizeof(spec) - sn, ".%d", prec);
        }
        char len[3] = {0};
        size_t ln = 0;
        while (*q != '\0' && strchr("hlzjtL", *q) != NULL && ln < 2) {
            len[ln++] = *q++;
        }
        char conv = *q;
        if (conv == '\0') {
            return;
        }
        f = q + 1;
        memcpy(spec + sn, len, ln);
        sn += ln;
        spec[sn++] = conv;
        spec[sn] = '\0';

        char buf[512];
        int n = -1;
        if (conv == '%') {
            put(o, "%", 1);
            continue;
        }
        if (conv == 's' || conv == 'm') {
            const char *v = conv == 'm' ? strerror(saved_errno) : va_arg(ap, const char *);
            if (v == NULL) {
                v = "(null)";
            }
            size_t vl = prec >= 0 ? strnlen(v, (size_t)prec) : strlen(v);
            int ctx = CTX_FREE;
            if (pct > fmt && pct[-1] == '"') {
                ctx = CTX_QUOTED;
            } else if (pct > fmt && pct[-1] == '=') {
                ctx = CTX_VALUE;
            }
            size_t start = o->n;
            if (left || width < 0) {
                put_escaped(o, v, vl, ctx);
            }
            size_t shown = o->n - start;
            if (!left && width > 0) {
                /* Right-aligned: pad by the escaped width, measured first. */
                out probe = {NULL, 0, 0};
                put_escaped(&probe, v, vl, ctx);
                shown = probe.n;
            }
            for (size_t i = shown; width > 0 && i < (size_t)width; i++) {
                put(o, " ", 1);
            }
            if (!left && width >= 0) {
                put_escaped(o, v, vl, ctx);
            }
            continue;
        }
        if (strchr("diouxXc", conv) != NULL) {
            if (conv == 'c' || ln == 0 || (len[0] == 'h')) {
                n = snprintf(buf, sizeof(buf), spec, va_arg(ap, int));
            } else if (len[0] == 'l' && len[1] == 'l') {
                n = snprintf(buf, sizeof(buf), spec, va_arg(ap, long long));
            } else if (len[0] == 'l') {
                n = snprintf(buf, sizeof(buf), spec, va_arg(ap, long));
            } else if (len[0] == 'z') {
                n = snprintf(buf, sizeof(buf), spec, va_arg(ap, size_t));
            } else if (len[0] == 'j') {
                n = snprintf(buf, sizeof(buf), spec, va_arg(ap, intmax_t));
            } else {
                n = snprintf(buf, sizeof(buf), spec, va_arg(ap, ptrdiff_t));
            }
        } else if (strchr("fFeEgGaA", conv) != NULL) {
            if (len[0] == 'L') {
                n = snprintf(buf, sizeof(buf), spec, va_arg(ap, long double));
            } else {
                n = snprintf(buf, sizeof(buf), spec, va_arg(ap, double));
            }
        } else if (conv == 'p') {
            n = snprintf(buf, sizeof(buf), spec, va_arg(ap, void *));
        } else {
            return; /* %n or unknown: stop rather than misread the arguments */
        }
        if (n > 0) {
            put(o, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
        }
    }
}

void tm_log(tm_log_level level, const char *component, const char *fmt, ...)
{
    int saved_errno = errno;
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
        out o = {line + n, sizeof(line) - (size_t)n, 0};
        format_escaped(&o, fmt, ap, saved_errno);
        o.p[o.n < o.cap ? o.n : o.cap - 1] = '\0';
    }
    va_end(ap);

    FILE *f = log_stream != NULL ? log_stream : stderr;
    pthread_mutex_lock(&log_mu);
    fputs(line, f);
    fputc('\n', f);
    fflush(f);
    pthread_mutex_unlock(&log_mu);
}
