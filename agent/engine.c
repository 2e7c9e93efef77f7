/*
 * engine.c - the engine registry: one line per engine.
 */
#include "agent/engine.h"

#include "common/names.h"

#include <stddef.h>
#include <string.h>

extern const tm_engine tm_engine_postgres; /* agent/engines/postgres/engine.c */
extern const tm_engine tm_engine_redis;    /* agent/engines/redis/engine.c */
extern const tm_engine tm_engine_sqlite;   /* agent/engines/sqlite/engine.c */
extern const tm_engine tm_engine_turso;    /* agent/engines/turso/engine.c */
extern const tm_engine tm_engine_pg_dump;  /* agent/engines/pg_dump/engine.c */

static const tm_engine *const engines[] = {
    &tm_engine_postgres, &tm_engine_redis, &tm_engine_sqlite, &tm_engine_turso, &tm_engine_pg_dump,
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
    /* A test engine stands in for a real engine of its kind. */
    if (extra != NULL && extra->kind == kind) {
        return extra;
    }
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

#define N_ENGINES (sizeof(engines) / sizeof(engines[0]))
_Static_assert(N_ENGINES <= TM_TARGET_SCHEMAS_MAX, "more engines than config schema slots");

const tm_target_schema *const *tm_engine_target_schemas(size_t *n)
{
    static const tm_target_schema *list[N_ENGINES];
    size_t k = 0;
    for (size_t i = 0; i < N_ENGINES; i++) {
        if (engines[i] != NULL && engines[i]->target_schema != NULL) {
            list[k++] = engines[i]->target_schema;
        }
    }
    *n = k;
    return list;
}

void tm_engine_config_init(void)
{
    size_t n = 0;
    const tm_target_schema *const *list = tm_engine_target_schemas(&n);
    (void)tm_config_set_target_schemas(list, n); /* fits: asserted above */
}
