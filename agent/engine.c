/*
 * engine.c - the engine registry: one line per engine.
 */
#include "agent/engine.h"

#include "common/names.h"

#include <stddef.h>
#include <string.h>

extern const tm_engine tm_engine_postgres; /* agent/engines/postgres/engine.c */

static const tm_engine *const engines[] = {
    &tm_engine_postgres,
};

/* One more engine, set by the seam's tests only (tm_engine_add_for_test). */
static const tm_engine *extra;

void tm_engine_add_for_test(const tm_engine *e)
{
    extra = e;
}

const tm_engine *tm_engine_at(size_t i)
{
    size_t n = sizeof(engines) / sizeof(engines[0]);
    return i < n ? engines[i] : i == n ? extra : NULL;
}

const tm_engine *tm_engine_find(int kind)
{
    const tm_engine *e;
    for (size_t i = 0; (e = tm_engine_at(i)) != NULL; i++) {
        if (e->kind == kind) {
            return e;
        }
    }
    return NULL;
}

const tm_engine *tm_engine_by_name(const char *name)
{
    const tm_engine *e;
    for (size_t i = 0; name != NULL && (e = tm_engine_at(i)) != NULL; i++) {
        if (strcmp(e->name, name) == 0) {
            return e;
        }
    }
    return NULL;
}

const tm_engine *tm_engine_of(const tm_target_conf *t)
{
    return t != NULL && t->kind != NULL ? tm_engine_find(tm_target_kind_parse(t->kind)) : NULL;
}
