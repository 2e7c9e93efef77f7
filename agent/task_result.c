/*
 * task_result.c - task result builders shared by the engines (task_result.h).
 */
#include "agent/task_result.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

void tm_result_extra(Tidemark__TaskResult *r, const char *key, const char *fmt, ...)
{
    Tidemark__KeyValue **nv = realloc(r->extra, (r->n_extra + 1) * sizeof(*nv));
    if (nv == NULL) {
        return;
    }
    r->extra = nv;
    Tidemark__KeyValue *e = malloc(sizeof(*e));
    if (e == NULL) {
        return;
    }
    tidemark__key_value__init(e);
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&e->value, fmt, ap);
    va_end(ap);
    e->key = strdup(key);
    if (n < 0 || e->key == NULL) {
        free(e->key);
        free(n < 0 ? NULL : e->value);
        free(e);
        return;
    }
    r->extra[r->n_extra++] = e;
}

void tm_drill_check_add(tm_drill_checks *d, const char *name, int ok, const char *detail,
                        uint64_t t0)
{
    uint64_t ms = (tm_mono_ns() - t0) / 1000000;
    if (!ok && !d->failed) {
        d->failed = 1;
        snprintf(d->first, sizeof(d->first), "check %.100s failed: %.300s", name, detail);
    }
    tm_info("drill", "event=check name=\"%s\" ok=%d ms=%" PRIu64 " detail=\"%.200s\"", name, ok, ms,
            detail);
    Tidemark__DrillCheck *c = d->n < TM_DRILL_CHECKS_MAX ? malloc(sizeof(*c)) : NULL;
    if (c == NULL) {
        return;
    }
    tidemark__drill_check__init(c);
    c->name = strdup(name);
    c->detail = strdup(detail);
    c->has_ok = c->has_duration_ms = 1;
    c->ok = ok;
    c->duration_ms = ms;
    d->c[d->n++] = c;
}

void tm_drill_checks_move(tm_drill_checks *d, Tidemark__DrillResult *res)
{
    if (d->n > 0 && (res->checks = malloc(d->n * sizeof(*res->checks))) != NULL) {
        memcpy(res->checks, d->c, d->n * sizeof(*res->checks));
        res->n_checks = d->n;
    } else {
        for (size_t i = 0; i < d->n; i++) {
            tidemark__drill_check__free_unpacked(d->c[i], NULL);
        }
    }
    d->n = 0;
}
