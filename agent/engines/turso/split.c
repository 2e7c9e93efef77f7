/*
 * split.c - an SQL dump cut into complete statements (turso.h), as it
 * streams: lines are gathered until sqlite3_complete() says they end a
 * statement (a ';' outside quotes, comments and trigger bodies), so a
 * string holding newlines or semicolons stays whole.
 */
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "agent/engines/turso/turso.h"

/* One statement larger than this is not a dump of ours. */
#define STMT_MAX (256u << 20)

struct tm_turso_splitter {
    int (*fn)(void *arg, const char *stmt, tm_err *err);
    void *arg;
    char *buf;
    size_t len, cap;
};

int tm_turso_splitter_new(int (*fn)(void *arg, const char *stmt, tm_err *err), void *arg,
                          tm_turso_splitter **out, tm_err *err)
{
    tm_turso_splitter *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    s->fn = fn;
    s->arg = arg;
    *out = s;
    return TM_OK;
}

void tm_turso_splitter_free(tm_turso_splitter *s)
{
    if (s != NULL) {
        free(s->buf);
        free(s);
    }
}

static int only_space(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != ' ' && p[i] != '\n' && p[i] != '\r' && p[i] != '\t') {
            return 0;
        }
    }
    return 1;
}

int tm_turso_splitter_feed(tm_turso_splitter *s, const void *data, size_t len, tm_err *err)
{
    const char *p = data;
    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t take = nl != NULL ? (size_t)(nl - p) + 1 : len;
        if (s->len + take + 1 > s->cap) {
            if (s->len + take + 1 > STMT_MAX) {
                return tm_err_set(err, TM_ECORRUPT,
                                  "dump: a statement longer than %u MiB (not a dump)",
                                  STMT_MAX >> 20);
            }
            size_t nc = s->cap ? s->cap : 65536;
            while (nc < s->len + take + 1) {
                nc *= 2;
            }
            char *nb = realloc(s->buf, nc);
            if (nb == NULL) {
                return tm_err_set(err, TM_ENOMEM, "out of memory");
            }
            s->buf = nb;
            s->cap = nc;
        }
        memcpy(s->buf + s->len, p, take);
        s->len += take;
        s->buf[s->len] = '\0';
        p += take;
        len -= take;
        if (nl == NULL) {
            break; /* the rest of this line comes with the next chunk */
        }
        if (only_space(s->buf, s->len)) {
            s->len = 0;
            continue;
        }
        if (sqlite3_complete(s->buf)) {
            int rc = s->fn(s->arg, s->buf, err);
            s->len = 0;
            if (rc != TM_OK) {
                return rc;
            }
        }
    }
    return TM_OK;
}

int tm_turso_splitter_finish(tm_turso_splitter *s, tm_err *err)
{
    if (s->len == 0 || only_space(s->buf, s->len)) {
        return TM_OK;
    }
    if (sqlite3_complete(s->buf)) {
        int rc = s->fn(s->arg, s->buf, err);
        s->len = 0;
        return rc;
    }
    return tm_err_set(err, TM_ECORRUPT, "dump ends inside a statement (%.60s...): truncated",
                      s->buf);
}
