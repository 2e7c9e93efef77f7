/*
 * engine.c - the SQLite engine as the agent sees it (agent/engine.h): one
 * struct naming its kind, its target block and its hooks. The hooks live
 * in their own rooms: snapshot.c (BACKUP), restore.c/restore_cli.c
 * (RESTORE, `tidemark-agent restore`), drill.c (DRILL), in_use.c (restore
 * safety); the WAL shipper and its log hooks are ship.c and log.c.
 */
#include "agent/engine.h"
#include "agent/engines/sqlite/config.h"
#include "agent/engines/sqlite/log.h"
#include "agent/engines/sqlite/ship.h"
#include "agent/engines/sqlite/sqlite.h"

const tm_engine tm_engine_sqlite = {
    .kind = TIDEMARK__TARGET_KIND__SQLITE,
    .name = "sqlite",
    .target_schema = &tm_sqlite_target_schema,
    .backup = tm_sqlite_backup,
    .restore = tm_sqlite_restore_task,
    .drill = tm_sqlite_drill,
    .in_use = tm_sqlite_in_use,
    .expand = tm_sqlite_expand,
    .restore_cli = tm_sqlite_restore_cli,
    .restore_usage = tm_sqlite_restore_usage,
    /* --output names a file, which no other engine restores to: given for a
     * target this agent does not serve, it picks this engine. */
    .restore_dir_alias = "--output",
    .ship = tm_sqlite_ship,
    .log_ranges = tm_sqlite_log_ranges,
    .log_status = tm_sqlite_log_status,
    .log_before = tm_sqlite_log_before,
};
