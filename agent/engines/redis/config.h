/*
 * config.h - agent.yaml `targets[].redis:` (kind: redis): how the agent
 * reaches a Redis server. The block is the engine's own schema
 * (tm_redis_target_schema, registered in agent/engine.c); common/config
 * parses it with the same file:line:column errors as every other key.
 *
 *   targets:
 *     - name: cache
 *       kind: redis
 *       redis:
 *         host: 127.0.0.1          # or socket: /run/redis/redis.sock
 *         port: 6379
 *         user: tidemark           # ACL user (README-acl.md)
 *         password_file: /etc/tidemark/redis.pass   # or password: env:NAME
 *         aof_dir: /var/lib/redis/appendonlydir
 *         method: auto             # auto | sync | bgsave
 *         timeout: 60s
 *         server_bin: /usr/bin/redis-server
 *         ship_interval: 1s
 *
 * A redis target without a redis: block gets every default.
 */
#ifndef TM_REDIS_CONFIG_H
#define TM_REDIS_CONFIG_H

#include <stdint.h>

#include "common/config.h"

typedef struct tm_redis_target_conf {
    char *host;          /* default "127.0.0.1" (when socket is not set) */
    uint32_t port;       /* default 6379 */
    char *socket;        /* unix socket path; instead of host/port */
    char *user;          /* ACL user; NULL = default user */
    char *password;      /* resolved secret (password: env:X | password_file: /path); NULL = none */
    char *aof_dir;       /* absolute; the server's appendonlydir for AOF shipping; NULL = ask the
                            server (CONFIG GET dir + appenddirname) when it is local */
    char *method;        /* "auto" (default) | "sync" (replication protocol only) | "bgsave" */
    uint32_t timeout_ms; /* `timeout: 60s` default; 1s .. 1h */
    char *server_bin;    /* redis-server for restore --start and drills; NULL = from PATH */
    uint32_t ship_interval_ms; /* `ship_interval: 1s` default; 100ms .. 1h: how often AOF is
                                  tailed */
} tm_redis_target_conf;

/* The redis: block of a kind: redis target (defaults when the block is
 * absent); NULL when t is not a redis target. */
const tm_redis_target_conf *tm_redis_target(const tm_target_conf *t);

/* The engine's schema, listed in agent/engine.c. */
extern const tm_target_schema tm_redis_target_schema;

#endif
