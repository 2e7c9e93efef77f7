/*
 * engine.c - the engine registry: one line per engine.
 */
#include "agent/engine.h"

#include <stddef.h>

extern const tm_engine tm_engine_postgres; /* agent/engines/postgres/engine.c */
extern const tm_engine tm_engine_redis;    /* agent/engines/redis/engine.c */

static const tm_engine *const engines[] = {
    &tm_engine_postgres,
    &tm_engine_redis,
};

const tm_engine *tm_engine_find(int kind)
{
    for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++) {
        if (engines[i] != NULL && engines[i]->kind == kind) {
            return engines[i];
        }
    }
    return NULL;
}
