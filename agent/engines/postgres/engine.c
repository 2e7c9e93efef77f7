/*
 * engine.c - the PostgreSQL engine as the task runner sees it: a backup or
 * restore task in, a structured TaskResult out.
 */
#include "agent/engines/postgres/pg.h"
#include "agent/engines/postgres/wal_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int pg_task_backup(tm_task_ctx *ctx, const Tidemark__Task *task,
                          Tidemark__TaskResult *result, tm_err *err)
{
    const tm_target_conf *t = tm_task_target(ctx);
    if (t == NULL) {
        return tm_err_set(err, TM_ECONFIG, "this agent does not serve target %s (not in targets:)",
                          task->target ? task->target : "?");
    }
    int incr = task->has_backup_type && task->backup_type == TIDEMARK__BACKUP_TYPE__INCREMENTAL;
    return tm_pg_backup_run(ctx, tm_task_conf(ctx), t, incr, result, err);
}

static void extra(Tidemark__TaskResult *r, const char *key, const char *fmt, double v,
                  const char *s)
{
    Tidemark__KeyValue **nv = realloc(r->extra, (r->n_extra + 1) * sizeof(*nv));
    Tidemark__KeyValue *e = nv ? malloc(sizeof(*e)) : NULL;
    if (nv != NULL) {
        r->extra = nv;
    }
    if (e == NULL) {
        return;
    }
    tidemark__key_value__init(e);
    e->key = strdup(key);
    if (s != NULL) {
        e->value = strdup(s);
    } else if (asprintf(&e->value, fmt, v) < 0) {
        e->value = NULL;
    }
    r->extra[r->n_extra++] = e;
}

static int pg_task_restore(tm_task_ctx *ctx, const Tidemark__Task *task,
                           Tidemark__TaskResult *result, tm_err *err)
{
    const Tidemark__RestoreSpec *s = task->restore;
    if (s == NULL || s->dir == NULL) {
        return tm_err_set(err, TM_EINVAL, "restore task without a destination directory");
    }
    tm_pg_restore_opts o = {
        .target = task->target,
        .pgdata = s->dir,
        .time = s->target_time && s->target_time[0] ? s->target_time : NULL,
        .backup_id = s->backup_id && s->backup_id[0] ? s->backup_id : NULL,
        .lsn = s->position && s->position[0] ? s->position : NULL,
        .immediate = s->has_immediate && s->immediate,
        .delta = s->has_delta && s->delta,
        .start = s->has_start && s->start,
        .port = s->has_port ? s->port : 0,
        .ts_map = (const char *const *)s->tablespace_map,
        .n_ts_map = s->n_tablespace_map,
        .ts_map_all =
            s->tablespace_map_all && s->tablespace_map_all[0] ? s->tablespace_map_all : NULL,
        .ctx = ctx,
    };
    tm_pg_restore_report rep;
    int rc = tm_pg_restore(tm_task_conf(ctx), &o, &rep, err);
    if (rep.backup_id[0]) {
        result->backup_id = strdup(rep.backup_id);
    }
    result->has_bytes = result->has_files = 1;
    result->bytes = rep.bytes;
    result->files = (uint32_t)rep.files;
    extra(result, "chain", NULL, 0, rep.chain);
    extra(result, "reused_files", "%.0f", (double)rep.reused_files, NULL);
    extra(result, "removed", "%.0f", (double)rep.removed, NULL);
    extra(result, "restore_files_s", "%.3f", rep.files_s, NULL);
    extra(result, "recovery_s", "%.3f", rep.recovery_s, NULL);
    extra(result, "total_s", "%.3f", rep.total_s, NULL);
    extra(result, "recovery_target", NULL, 0, rep.recovery_target);
    if (rep.verify[0]) {
        extra(result, "verify", NULL, 0, rep.verify);
    }
    return rc;
}

const tm_engine tm_engine_postgres = {
    .kind = TIDEMARK__TARGET_KIND__POSTGRES,
    .name = "postgres",
    .backup = pg_task_backup,
    .restore = pg_task_restore,
    .drill = tm_pg_drill,
    .log_before = tm_pg_log_before,
    .target_schema = &tm_pg_target_schema,
    .log_ranges = tm_pg_log_ranges,
    .log_status = tm_pg_log_status,
    .in_use = tm_pg_in_use,
    .cmds = tm_pg_cmds,
    .restore_cli = tm_pg_restore_cli,
    .restore_usage = tm_pg_restore_usage,
    .restore_dir_alias = "--pgdata",
};
