/*
 * config.h - the `redis:` block of a target in agent.yaml, as the Redis
 * engine sees it (the loader and its validation live beside it, config.c).
 */
#ifndef TM_REDIS_CONFIG_H
#define TM_REDIS_CONFIG_H

#include <stdint.h>

#include "common/config.h"

typedef struct tm_redis_target_conf {
    char *host;
    uint32_t port;
    char *socket;
    char *user;
    char *password; /* resolved secret */
    char *aof_dir;  /* NULL = ask the server when local */
    char *method;   /* "auto" | "sync" | "bgsave" */
    uint32_t timeout_ms;
    char *server_bin;
    uint32_t ship_interval_ms;
} tm_redis_target_conf;

const tm_redis_target_conf *tm_redis_target(const tm_target_conf *t); /* NULL when not redis */

#endif
