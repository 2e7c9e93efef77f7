/*
 * engine.c - the SQLite engine as the agent sees it (agent/engine.h): so
 * far the continuous WAL shipper (ship.c under the daemon's ship hook) and
 * the target block. Backup, restore and drill tasks, log_ranges and the
 * restore command are the next part of issue #15.
 */
#include "agent/engine.h"
#include "agent/engines/sqlite/config.h"
#include "agent/engines/sqlite/ship.h"

#include "common/log.h"

#include <stdio.h>

static int sink_store(void *arg, const char *rel, int fd, tm_err *err)
{
    return tm_ship_store(arg, rel, fd, err);
}

static void sink_report(void *arg, const tm_log_range *r)
{
    tm_ship_report(arg, r);
}

static int sqlite_ship(tm_ship_ctx *ctx, const tm_target_conf *t, tm_err *err)
{
    const tm_sqlite_target_conf *c = tm_sqlite_target(t);
    if (c == NULL || c->path == NULL) {
        /* Said once, then quiet until the agent stops: not a failure to
         * retry every minute. */
        tm_warn("sqlite", "event=not_shipping target=%s why=\"no sqlite.path in its block\"",
                t->name);
        while (!tm_ship_wait(ctx, 60000)) {
        }
        return TM_OK;
    }
    char dir[4096];
    int rc = tm_ship_state_dir(ctx, dir, sizeof(dir), err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_sqlite_ship_opts o = {.db = c->path,
                             .state_dir = dir,
                             .busy_ms = (int)c->busy_timeout_ms,
                             .set_wal = c->set_wal,
                             .ckpt_frames = c->checkpoint_frames,
                             .truncate_bytes = c->truncate_bytes,
                             .snap_pages = 256,
                             .snap_sleep_ms = 1};
    tm_sqlite_sink sink = {.store = sink_store, .report = sink_report, .arg = ctx};
    tm_sqlite_ship *s = NULL;
    rc = tm_sqlite_ship_new(&o, &sink, &s, err);
    while (rc == TM_OK && !tm_ship_stopping(ctx)) {
        tm_sqlite_tick info;
        rc = tm_sqlite_ship_tick(s, &info, err);
        if (rc == TM_OK && info.new_generation) {
            /* Never silent: a new generation is a break in the restorable
             * history of this target. */
            tm_warn("sqlite", "event=new_generation target=%s generation=%u why=\"%s\"", t->name,
                    info.generation, info.why);
        }
        if (rc == TM_OK) {
            tm_ship_wait(ctx, c->ship_interval_ms);
        }
    }
    tm_sqlite_ship_free(s);
    return rc;
}

const tm_engine tm_engine_sqlite = {
    .kind = TIDEMARK__TARGET_KIND__SQLITE,
    .name = "sqlite",
    .target_schema = &tm_sqlite_target_schema,
    .ship = sqlite_ship,
};
