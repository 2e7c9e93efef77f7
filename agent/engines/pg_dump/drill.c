/*
 * drill.c - a restore drill of a pg_dump target (task kind DRILL) on the
 * staging agent the coordinator chose:
 *
 *   1. restore the newest backup (or the newest at or before the requested
 *      time) into new databases <name>_tmdrill_<task> on the staging server
 *      (staging_host of the target's block on this agent, else of the first
 *      pg_dump block here that names one); the RTO clock starts here;
 *   2. checks: every restored database answers and its catalog reads (user
 *      tables counted); the user's SQL checks run in the first restored
 *      database (they fail on an error or a first column false);
 *   3. measure: RTO = restore start -> checks passed; recovered point = when
 *      the dumps began (a dump holds the data as of its start); achieved
 *      RPO = drill start (or requested time) - that point: the dump's age,
 *      which the dump interval bounds, since nothing is shipped in between;
 *   4. tear down, also on failure: DROP DATABASE ... WITH (FORCE) of every
 *      database the drill created. Roles the globals created stay: they are
 *      cluster-wide and may be shared with other databases of the server.
 */
#include "agent/engines/pg_dump/dump.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

#define MAX_CHECKS 64

typedef struct checks {
    Tidemark__DrillCheck *c[MAX_CHECKS];
    size_t n;
    int failed;
    char first[512];
} checks;

static void check_add(checks *d, const char *name, int ok, const char *detail, uint64_t t0)
{
    uint64_t ms = (tm_mono_ns() - t0) / 1000000;
    if (!ok && !d->failed) {
        d->failed = 1;
        snprintf(d->first, sizeof(d->first), "check %.100s failed: %.300s", name, detail);
    }
    tm_info("drill", "event=check name=\"%s\" ok=%d ms=%" PRIu64 " detail=\"%.200s\"", name, ok, ms,
            detail);
    Tidemark__DrillCheck *c = d->n < MAX_CHECKS ? malloc(sizeof(*c)) : NULL;
    if (c == NULL) {
        return;
    }
    tidemark__drill_check__init(c);
    c->name = strdup(name);
    c->detail = strdup(detail);
    c->has_ok = c->has_duration_ms = 1;
    c->ok = ok;
    c->duration_ms = ms;
    d->c[d->n++] = c;
}

/* The staging server for target on this agent. */
static const tm_dump_target_conf *staging_of(const tm_agent_conf *conf, const char *target)
{
    const tm_dump_target_conf *d = tm_dump_conf_of(conf, target);
    if (d != NULL && d->staging.host != NULL) {
        return d;
    }
    for (size_t i = 0; i < conf->n_targets; i++) {
        d = tm_dump_target(&conf->targets[i]);
        if (d != NULL && d->staging.host != NULL) {
            return d;
        }
    }
    return NULL;
}

static void db_checks(checks *k, const tm_dump_server *srv, const tm_dump_restore_report *rep,
                      const Tidemark__DrillSpec *spec)
{
    for (size_t i = 0; i < rep->n_dbs; i++) {
        char name[160];
        snprintf(name, sizeof(name), "catalog:%.120s", rep->src[i]);
        uint64_t t = tm_mono_ns();
        tm_err e = {0};
        tm_dump_conn *c = NULL;
        if (tm_dump_connect(srv, rep->created[i], &c, &e) != TM_OK) {
            check_add(k, name, 0, e.msg, t);
            continue;
        }
        char *v = NULL;
        int rc = tm_dump_query_value(
            c,
            "SELECT format('%s user tables, %s relations, %s bytes', "
            "count(*) FILTER (WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN "
            "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'), "
            "count(*), pg_database_size(current_database())) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
            0, NULL, &v, &e);
        check_add(k, name, rc == TM_OK, rc == TM_OK ? v : e.msg, t);
        free(v);
        for (size_t j = 0; i == 0 && spec != NULL && j < spec->n_checks; j++) {
            char cn[32];
            snprintf(cn, sizeof(cn), "sql:%zu", j + 1);
            t = tm_mono_ns();
            rc = tm_dump_query_value(c, spec->checks[j], 0, NULL, &v, &e);
            if (rc == TM_ENOENT) {
                check_add(k, cn, 1, "no row", t);
            } else if (rc != TM_OK) {
                check_add(k, cn, 0, e.msg, t);
            } else {
                int ok = strcmp(v, "f") != 0 && strcmp(v, "false") != 0;
                char detail[300];
                snprintf(detail, sizeof(detail), "%s%.200s", ok ? "" : "returned false: ", v);
                check_add(k, cn, ok, detail, t);
            }
            free(v);
            v = NULL;
        }
        tm_dump_close(c);
    }
}

int tm_dump_drill(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                  tm_err *err)
{
    const tm_agent_conf *conf = tm_task_conf(ctx);
    const Tidemark__DrillSpec *spec = task->drill;
    Tidemark__DrillResult *res = malloc(sizeof(*res));
    if (res == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tidemark__drill_result__init(res);
    result->drill = res;
    checks k = {0};
    const char *time =
        spec != NULL && spec->target_time && spec->target_time[0] ? spec->target_time : NULL;
    int64_t started_ms = tm_now_ms(), target_ms = started_ms;
    int rc = TM_OK;
    if (time != NULL) {
        int64_t ts = 0;
        rc = tm_dump_time_parse(time, &ts) == TM_OK
                 ? TM_OK
                 : tm_err_set(err, TM_EINVAL,
                              "drill target time '%.60s' is not 'YYYY-MM-DD HH:MM:SS+00'", time);
        target_ms = ts * 1000;
    }
    res->target_time = strdup(time ? time : "");
    res->has_started_at_ms = res->has_target_ms = 1;
    res->started_at_ms = started_ms;
    res->target_ms = target_ms;
    const tm_dump_target_conf *sd = staging_of(conf, task->target);
    if (rc == TM_OK && sd == NULL) {
        rc = tm_err_set(err, TM_ECONFIG,
                        "no staging server for the drill of %s on this agent: set "
                        "targets[].pg_dump.staging_host (and staging_port, staging_user, "
                        "staging_password_file) on the staging agent",
                        task->target ? task->target : "?");
    }
    const tm_dump_target_conf *own = tm_dump_conf_of(conf, task->target);
    char suffix[40];
    const char *tid = task->id ? task->id : "x";
    size_t tl = strlen(tid);
    snprintf(suffix, sizeof(suffix), "_tmdrill_%s", tl > 8 ? tid + tl - 8 : tid);
    for (char *p = suffix; *p; p++) {
        if (*p == '-') {
            *p = '_';
        }
    }
    if (sd != NULL) {
        char where[300];
        snprintf(where, sizeof(where), "%s:%u", sd->staging.host, sd->staging.port);
        res->dir = strdup(where);
        res->has_port = 1;
        res->port = sd->staging.port;
    }
    tm_info("drill", "event=started task=%s target=%s server=%s time=\"%s\"", tid, task->target,
            res->dir ? res->dir : "-", time ? time : "latest");

    /* 1. restore (the RTO clock starts here) */
    uint64_t t0 = tm_mono_ns();
    tm_dump_restore_report rep;
    memset(&rep, 0, sizeof(rep));
    if (rc == TM_OK) {
        tm_task_progress(ctx, "drill:restore", 0, 0, 0, 0);
        tm_dump_restore_opts o = {
            .target = task->target,
            .time = time,
            .dest = &sd->staging,
            .suffix = suffix,
            .jobs = own != NULL ? own->jobs : sd->jobs,
            .bindir = own != NULL ? own->bindir : sd->bindir,
            .scratch = spec != NULL && spec->dir && spec->dir[0] ? spec->dir : NULL,
            .ctx = ctx,
        };
        rc = tm_dump_restore(conf, &o, &rep, err);
        if (rep.backup_id[0]) {
            res->backup_id = strdup(rep.backup_id);
            result->backup_id = strdup(rep.backup_id);
            res->chain = strdup(rep.backup_id);
        }
        res->has_restore_files_ms = res->has_recovery_ms = 1;
        res->restore_files_ms = (uint64_t)(rep.fetch_s * 1000.0);
        res->recovery_ms = (uint64_t)((rep.globals_s + rep.restore_s) * 1000.0);
    }

    /* 2. checks */
    if (rc == TM_OK) {
        tm_task_progress(ctx, "drill:checks", 0, 0, 0, 0);
        uint64_t tc0 = tm_mono_ns();
        db_checks(&k, &sd->staging, &rep, spec);
        res->recovered_source = strdup("the dumps' start (a dump holds its start's data)");
        if (rep.dump_start > 0) {
            res->has_recovered_to_ms = res->has_rpo_ms = 1;
            res->recovered_to_ms = rep.dump_start * 1000;
            res->rpo_ms = target_ms - res->recovered_to_ms;
        }
        res->has_checks_ms = res->has_rto_ms = 1;
        res->checks_ms = (tm_mono_ns() - tc0) / 1000000;
        res->rto_ms = (tm_mono_ns() - t0) / 1000000;
        if (k.failed) {
            rc = tm_err_set(err, TM_ECORRUPT, "drill of %s: %s", task->target, k.first);
        }
    }

    /* 3. teardown, whatever happened (a failed restore dropped its own) */
    tm_task_progress(ctx, "drill:teardown", 0, 0, 0, 0);
    uint64_t tt = tm_mono_ns();
    tm_err terr = {0};
    int dropped = sd == NULL || tm_dump_restore_drop(&sd->staging, &rep, &terr) == TM_OK;
    res->has_teardown_ms = res->has_cleaned_up = 1;
    res->teardown_ms = (tm_mono_ns() - tt) / 1000000;
    res->cleaned_up = dropped;
    if (!dropped) {
        tm_error("drill", "event=teardown_failed task=%s msg=\"%s\"", tid, terr.msg);
    }
    if (k.n > 0 && (res->checks = malloc(k.n * sizeof(*res->checks))) != NULL) {
        memcpy(res->checks, k.c, k.n * sizeof(*res->checks));
        res->n_checks = k.n;
    } else {
        for (size_t i = 0; i < k.n; i++) {
            tidemark__drill_check__free_unpacked(k.c[i], NULL);
        }
    }
    res->has_ok = 1;
    res->ok = rc == TM_OK;
    if (rc != TM_OK) {
        res->error = strdup(err->msg);
    }
    tm_info("drill",
            "event=finished task=%s target=%s ok=%d backup=%s rto_ms=%" PRIu64 " rpo_ms=%" PRId64
            " cleaned_up=%d",
            tid, task->target, rc == TM_OK, rep.backup_id, res->rto_ms, res->rpo_ms,
            res->cleaned_up);
    return rc;
}
