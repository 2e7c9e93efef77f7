/*
 * config.h - agent.yaml `targets[].pg_dump:` (kind: pg_dump): how the agent
 * reaches a PostgreSQL server it has no file access to (RDS, Cloud SQL, any
 * server over the network), which databases it dumps, and the staging
 * server its restore drills restore into. The block is the engine's own
 * schema (tm_dump_target_schema, listed in agent/engine.c); errors come with
 * file:line:column like every other key.
 */
#ifndef TM_DUMP_CONFIG_H
#define TM_DUMP_CONFIG_H

#include <stdint.h>

#include "common/config.h"

/* Where a server is and as whom to log in. */
typedef struct tm_dump_server {
    char *host;     /* host name or address; default 127.0.0.1 */
    uint32_t port;  /* default 5432 */
    char *user;     /* default "postgres" */
    char *password; /* resolved secret (password: env:X | password_file); may be NULL */
    char *sslmode;  /* libpq sslmode; default "prefer" */
} tm_dump_server;

typedef struct tm_dump_target_conf {
    tm_dump_server server;
    char *database;   /* the database to connect to for listing; default "postgres" */
    char **databases; /* the databases to dump; n_databases 0 = every non-template one */
    size_t n_databases;
    char *bindir;           /* pg_dump/pg_restore/pg_dumpall/psql; NULL = `pg_config --bindir` */
    uint32_t compress;      /* pg_dump -Z: 0 (default: the pipeline compresses with zstd) .. 9 */
    uint32_t jobs;          /* pg_restore -j for restores and drills; default 2 */
    tm_dump_server staging; /* staging.host NULL = no staging server: drills refuse */
} tm_dump_target_conf;

/* The pg_dump: block of t; NULL when t is not a pg_dump target. */
const tm_dump_target_conf *tm_dump_target(const tm_target_conf *t);

/* The engine's schema, listed in agent/engine.c. */
extern const tm_target_schema tm_dump_target_schema;

#endif
