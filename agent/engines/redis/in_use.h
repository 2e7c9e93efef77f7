/*
 * in_use.h - tm_engine.in_use for Redis: a directory a running redis-server
 * works in (its `dir`: the RDB and the AOF directory) is never restored
 * into. For the Redis engine's tm_engine (.in_use = tm_redis_in_use).
 */
#ifndef TM_REDIS_IN_USE_H
#define TM_REDIS_IN_USE_H

#include <stddef.h>

int tm_redis_in_use(const char *dir, char *why, size_t cap);

#endif
