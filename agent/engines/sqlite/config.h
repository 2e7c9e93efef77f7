/*
 * config.h - agent.yaml `targets[].sqlite:` (kind: sqlite): which database
 * file the agent backs up and ships, and how. The block is the engine's own
 * schema (tm_sqlite_target_schema, registered in agent/engine.c); the
 * config loader reports its errors as file:line:column like every other key.
 *
 *   targets:
 *     - name: app
 *       kind: sqlite
 *       sqlite:
 *         path: /var/lib/app/app.db  # the database file, or a glob (*.db):
 *                                    # one target per matching file
 *         set_wal: false             # switch a non-WAL database to WAL
 *         ship_interval: 1s          # how often new WAL frames are shipped
 *         checkpoint_interval: 1m    # PASSIVE checkpoints by the shipper
 *         wal_max_bytes: 64MiB       # TRUNCATE checkpoint above this WAL size
 *         busy_timeout: 5s           # how long the agent waits for a lock
 *
 * A sqlite target without the block is listed (the coordinator knows it, a
 * staging host can restore it) but has no file: a backup or the shipper
 * says so and does nothing.
 */
#ifndef TM_SQLITE_CONFIG_H
#define TM_SQLITE_CONFIG_H

#include <stdint.h>

#include "common/config.h"

typedef struct tm_sqlite_target {
    char path[4096];                 /* absolute; "" when the target has no sqlite: block */
    int glob;                        /* 1: path holds *, ? or [ (one target per match) */
    int set_wal;                     /* 1: switch a non-WAL database to WAL (default 0: refuse) */
    uint32_t ship_interval_ms;       /* default 1s; 100ms .. 1h */
    uint32_t checkpoint_interval_ms; /* PASSIVE checkpoints; default 1m; 1s .. 1d */
    uint64_t wal_max_bytes;   /* TRUNCATE checkpoint above this; default 64MiB; 1MiB .. 4GiB */
    uint32_t busy_timeout_ms; /* default 5s; 10ms .. 10m */
} tm_sqlite_target;

/* The sqlite: block of a kind: sqlite target (defaults and path "" when
 * the block is absent); NULL when t is not a sqlite target. */
const tm_sqlite_target *tm_sqlite_target_of(const tm_target_conf *t);

/* The engine's schema, listed in agent/engine.c. */
extern const tm_target_schema tm_sqlite_target_schema;

#endif
