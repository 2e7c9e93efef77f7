/*
 * engine.c - the pg_dump engine as the task runner sees it: BACKUP
 * (backup.c), RESTORE into a server over the network (restore.c), DRILL
 * (drill.c), and `tidemark-agent restore` (restore_cli.c).
 *
 * Why an engine of its own and not a mode of `postgres`: the postgres
 * engine is built on file access (PGDATA, pg_backup_start/stop, WAL
 * archiving, restore into a directory and a started server); a managed
 * server offers none of that, and its backups (logical dumps, one per
 * database, restored into new databases of any server, an RPO bounded by
 * the dump interval, no log shipping) share no step with them. Its own
 * config block keeps the two sets of keys from mixing.
 */
#include "agent/engines/pg_dump/dump.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/restore_root.h"
#include "common/log.h"

/* Credentials for a server this agent was asked to restore into: a
 * pg_dump block of this agent that names it (as its staging server first,
 * then as its source), else user postgres without a password. */
void tm_dump_creds_for(const tm_agent_conf *conf, const char *host, uint32_t port,
                       tm_dump_server *out)
{
    const tm_dump_server *best = NULL;
    for (int pass = 0; pass < 2 && best == NULL; pass++) {
        for (size_t i = 0; best == NULL && i < conf->n_targets; i++) {
            const tm_dump_target_conf *d = tm_dump_target(&conf->targets[i]);
            const tm_dump_server *s = d == NULL ? NULL : pass == 0 ? &d->staging : &d->server;
            if (s != NULL && s->host != NULL && strcmp(s->host, host) == 0 && s->port == port) {
                best = s;
            }
        }
    }
    memset(out, 0, sizeof(*out));
    out->host = (char *)host;
    out->port = port;
    out->user = best != NULL ? best->user : "postgres";
    out->password = best != NULL ? best->password : NULL;
    out->sslmode = best != NULL ? best->sslmode : "prefer";
}

static int dump_restore_task(tm_task_ctx *ctx, const Tidemark__Task *task,
                             Tidemark__TaskResult *result, tm_err *err)
{
    const Tidemark__RestoreSpec *s = task->restore;
    if (s == NULL || s->dir == NULL || s->dir[0] == '\0') {
        return tm_err_set(err, TM_EINVAL, "restore task without a scratch directory (--dir)");
    }
    if (s->host == NULL || s->host[0] == '\0') {
        return tm_err_set(err, TM_EINVAL,
                          "a pg_dump restore needs the server to restore into (tidemarkctl "
                          "restore --host H --port P)");
    }
    const tm_agent_conf *conf = tm_task_conf(ctx);
    /* The coordinator chose the scratch directory: only under restore_roots. */
    int rc = tm_restore_under_roots("restore directory", s->dir, conf->restore_roots,
                                    conf->n_restore_roots, err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_dump_server dest;
    tm_dump_creds_for(conf, s->host, s->has_port && s->port ? s->port : 5432, &dest);
    const tm_dump_target_conf *d = tm_dump_conf_of(conf, task->target);
    tm_dump_restore_opts o = {
        .target = task->target,
        .backup_id = s->backup_id && s->backup_id[0] ? s->backup_id : NULL,
        .time = s->target_time && s->target_time[0] ? s->target_time : NULL,
        .dest = &dest,
        .into = s->into && s->into[0] ? s->into : NULL,
        .suffix = s->name_suffix && s->name_suffix[0] ? s->name_suffix : NULL,
        .jobs = s->has_jobs && s->jobs ? s->jobs
                : d != NULL            ? d->jobs
                                       : 2,
        .bindir = d != NULL ? d->bindir : NULL,
        .scratch = s->dir,
        .ctx = ctx,
    };
    tm_dump_restore_report rep;
    rc = tm_dump_restore(conf, &o, &rep, err);
    if (rep.backup_id[0]) {
        result->backup_id = strdup(rep.backup_id);
    }
    result->has_bytes = result->has_files = 1;
    result->bytes = rep.bytes;
    result->files = (uint32_t)rep.n_dbs;
    for (size_t i = 0; rc == TM_OK && i < rep.n_dbs; i++) {
        char k[32];
        snprintf(k, sizeof(k), "database_%zu", i + 1);
        tm_dump_result_extra(result, k, "%s -> %s", rep.src[i], rep.created[i]);
    }
    tm_dump_result_extra(result, "globals_failed", "%u", rep.globals_failed);
    tm_dump_result_extra(result, "globals_existed", "%u", rep.globals_existed);
    tm_dump_result_extra(result, "fetch_s", "%.3f", rep.fetch_s);
    tm_dump_result_extra(result, "restore_s", "%.3f", rep.restore_s);
    tm_dump_result_extra(result, "total_s", "%.3f", rep.total_s);
    return rc;
}

const tm_engine tm_engine_pg_dump = {
    .kind = TIDEMARK__TARGET_KIND__PG_DUMP,
    .name = "pg_dump",
    .target_schema = &tm_dump_target_schema,
    .backup = tm_dump_backup,
    .restore = dump_restore_task,
    .drill = tm_dump_drill,
    .restore_cli = tm_dump_restore_cli,
    .restore_usage = tm_dump_restore_usage,
};
