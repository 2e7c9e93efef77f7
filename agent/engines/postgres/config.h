/*
 * config.h - agent.yaml `targets[].postgres:` (kind: postgres): how the agent
 * reaches a PostgreSQL cluster. The block is the engine's own schema
 * (tm_pg_target_schema, registered in agent/engine.c); common/config parses
 * it with the same file:line:column errors as every other key.
 *
 * Every key is optional: a target listed only so the coordinator knows it is
 * served gets its errors when a backup runs.
 */
#ifndef TM_PG_CONFIG_H
#define TM_PG_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"

typedef struct tm_pg_target_conf {
    char *pgdata;             /* absolute data directory; NULL = not set */
    char *host;               /* NULL = libpq default (unix socket) */
    uint32_t port;            /* default 5432 */
    char *user;               /* default "postgres" */
    char *database;           /* default "postgres" */
    char *password;           /* resolved secret (password: env:X | password_file); may be NULL */
    char *bindir;             /* NULL = `pg_config --bindir` at run time */
    bool checksum_validation; /* default true: verify page checksums while reading */
    uint32_t parallel;        /* copy workers; default 2; 1 .. 64 */
} tm_pg_target_conf;

/* The postgres: block of t; NULL when t is not a postgres target or has no
 * postgres: block (then libpq's defaults apply). */
const tm_pg_target_conf *tm_pg_target(const tm_target_conf *t);

/* The engine's schema, listed in agent/engine.c. */
extern const tm_target_schema tm_pg_target_schema;

#endif
