/*
 * config.h - agent.yaml `targets[].sqlite:` (kind: sqlite): which database
 * file the agent ships, and how. The block is the engine's own schema
 * (tm_sqlite_target_schema, registered in agent/engine.c).
 *
 *   targets:
 *     - name: app
 *       kind: sqlite
 *       sqlite:
 *         path: /var/lib/app/app.db   # the database file (required)
 *         set_wal: false              # switch a non-WAL database to WAL
 *         ship_interval: 1s           # how often new WAL frames are shipped
 *         checkpoint_frames: 1000     # PASSIVE checkpoint past this many frames
 *         truncate_size: 64MiB        # TRUNCATE checkpoint past this WAL size
 *         busy_timeout: 5s            # how long the agent waits for a lock
 *
 * A glob in path (one target per matching file) is not supported yet: a
 * path with *, ? or [ is refused with that message.
 */
#ifndef TM_SQLITE_CONFIG_H
#define TM_SQLITE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"

typedef struct tm_sqlite_target_conf {
    char *path;                 /* absolute; NULL when the target has no sqlite: block */
    bool set_wal;               /* default false */
    uint32_t ship_interval_ms;  /* default 1s; 100ms .. 1h */
    uint32_t checkpoint_frames; /* default 1000; 10 .. 10000000 */
    uint32_t truncate_bytes;    /* default 64MiB; 1MiB .. 4GiB-1 */
    uint32_t busy_timeout_ms;   /* default 5s; 10ms .. 10m */
} tm_sqlite_target_conf;

/* The sqlite: block of a kind: sqlite target; NULL when t is not one. */
const tm_sqlite_target_conf *tm_sqlite_target(const tm_target_conf *t);

extern const tm_target_schema tm_sqlite_target_schema;

#endif
