/*
 * drill.c - a restore drill of a SQLite target (task kind DRILL) on the
 * staging agent the coordinator chose:
 *
 *   1. restore (tm_sqlite_restore: snapshot + shipped WAL up to the time,
 *      or the latest) into a fresh directory under restore_roots; the RTO
 *      clock starts here. The restore itself runs PRAGMA integrity_check;
 *   2. checks: the integrity check's answer; every table of the schema
 *      counted (SELECT count(*): every page of every table read); the
 *      policy's own SQL checks (a check fails on an error or a first column
 *      NULL, false, f or 0), all on a read-only connection;
 *   3. measure: RTO = restore start -> checks passed; recovered point = the
 *      newest commit the file holds (the last replayed commit's shipped
 *      time, or when the snapshot's read transaction began); achieved RPO
 *      = drill start (or the requested time) - recovered point;
 *   4. tear down, also on failure: remove the directory.
 */
#include "agent/engines/sqlite/sqlite.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "agent/drill_checks.h"
#include "agent/restore_root.h"
#include "common/log.h"
#include "common/util.h"

static uint64_t ms_since(uint64_t t0)
{
    return (tm_mono_ns() - t0) / 1000000;
}

/* Every table counted: a page of the database that does not read fails. */
static void table_checks(tm_drill_checks *d, sqlite3 *c)
{
    uint64_t t = tm_mono_ns();
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c,
                                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT "
                                "LIKE 'sqlite_%' ORDER BY name",
                                -1, &st, NULL);
    uint64_t tables = 0, rows = 0;
    char detail[400] = "";
    int ok = rc == SQLITE_OK;
    while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        char *q = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", name ? name : "");
        sqlite3_stmt *cs = NULL;
        if (q == NULL || sqlite3_prepare_v2(c, q, -1, &cs, NULL) != SQLITE_OK ||
            sqlite3_step(cs) != SQLITE_ROW) {
            snprintf(detail, sizeof(detail), "table %.100s: %.200s", name ? name : "?",
                     sqlite3_errmsg(c));
            ok = 0;
        } else {
            rows += (uint64_t)sqlite3_column_int64(cs, 0);
            tables++;
        }
        sqlite3_finalize(cs);
        sqlite3_free(q);
    }
    if (ok && rc != SQLITE_DONE) {
        snprintf(detail, sizeof(detail), "schema: %.300s", sqlite3_errmsg(c));
        ok = 0;
    }
    if (ok) {
        snprintf(detail, sizeof(detail), "%" PRIu64 " tables, %" PRIu64 " rows", tables, rows);
    }
    sqlite3_finalize(st);
    tm_drill_check_add(d, "tables", ok, detail, ms_since(t));
}

/* The policy's checks: the first column of the first row decides. */
static void user_checks(tm_drill_checks *d, const Tidemark__DrillSpec *spec, sqlite3 *c)
{
    for (size_t i = 0; spec != NULL && i < spec->n_checks; i++) {
        char name[32], detail[300];
        snprintf(name, sizeof(name), "sql:%zu", i + 1);
        uint64_t t = tm_mono_ns();
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(c, spec->checks[i], -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
        }
        if (rc == SQLITE_DONE) {
            tm_drill_check_add(d, name, 1, "no row", ms_since(t));
        } else if (rc != SQLITE_ROW) {
            tm_drill_check_add(d, name, 0, sqlite3_errmsg(c), ms_since(t));
        } else {
            const char *v = (const char *)sqlite3_column_text(st, 0);
            int ok = tm_drill_value_true(v);
            snprintf(detail, sizeof(detail), "%s%.200s",
                     ok ? "" : "returned false: ", v != NULL ? v : "NULL");
            tm_drill_check_add(d, name, ok, detail, ms_since(t));
        }
        sqlite3_finalize(st);
    }
}

static void run_checks(tm_drill_checks *d, const Tidemark__DrillSpec *spec,
                       const tm_sqlite_restore_report *rep)
{
    tm_drill_check_add(d, "integrity_check", strcmp(rep->integrity, "ok") == 0, rep->integrity,
                       (uint64_t)(rep->check_s * 1000.0));
    sqlite3 *c = NULL;
    uint64_t t = tm_mono_ns();
    if (sqlite3_open_v2(rep->output, &c, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        tm_drill_check_add(d, "open", 0, c != NULL ? sqlite3_errmsg(c) : "out of memory",
                           ms_since(t));
        sqlite3_close(c);
        return;
    }
    sqlite3_busy_timeout(c, 5000);
    table_checks(d, c);
    user_checks(d, spec, c);
    sqlite3_close(c);
}

int tm_sqlite_drill(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
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
    tm_drill_checks d = {0};

    const char *target = task->target != NULL ? task->target : "";
    char base[PATH_MAX], dir[PATH_MAX + 256], output[PATH_MAX + 400];
    if (spec != NULL && spec->dir != NULL && spec->dir[0] != '\0') {
        snprintf(base, sizeof(base), "%s", spec->dir);
    } else {
        snprintf(base, sizeof(base), "%s/drills", conf->state_dir ? conf->state_dir : ".");
    }
    snprintf(dir, sizeof(dir), "%s/drill-%.64s-%.64s", base, target[0] ? target : "x",
             task->id ? task->id : "x");
    snprintf(output, sizeof(output), "%s/%.64s.db", dir, target);
    const char *time =
        spec != NULL && spec->target_time && spec->target_time[0] ? spec->target_time : NULL;
    int64_t started_ms = tm_now_ms();
    res->dir = strdup(dir);
    res->target_time = strdup(time ? time : "");
    res->has_started_at_ms = res->has_target_ms = 1;
    res->started_at_ms = started_ms;
    res->target_ms = started_ms;
    int64_t until = 0;
    int rc = TM_OK;
    if (time != NULL && tm_sqlite_time_parse(time, &until) != TM_OK) {
        rc = tm_err_set(err, TM_EINVAL, "drill time '%.60s' is not 'YYYY-MM-DD HH:MM:SS[.mmm]+00'",
                        time);
    } else if (time != NULL) {
        res->target_ms = until; /* RPO is measured against the time asked for */
    }
    if (rc == TM_OK) {
        rc = tm_restore_under_roots("drill directory", base, conf->restore_roots,
                                    conf->n_restore_roots, err);
    }
    if (rc == TM_OK) {
        rc = tm_mkdir_p(base, 0755, err);
    }
    if (rc == TM_OK && access(dir, F_OK) == 0) {
        rc = tm_err_set(err, TM_EEXIST, "drill directory %s already exists", dir);
    }
    int ours = rc == TM_OK;
    tm_info("drill", "event=started task=%s target=%s engine=sqlite dir=%s time=\"%s\"",
            task->id ? task->id : "?", target, dir, time ? time : "latest");

    uint64_t t0 = tm_mono_ns();
    tm_sqlite_restore_report rep;
    memset(&rep, 0, sizeof(rep));
    if (rc == TM_OK) {
        tm_task_progress(ctx, "drill:restore", 0, 0, 0, 0);
        tm_sqlite_restore_opts o = {
            .target = target, .output = output, .until_ms = until, .ctx = ctx};
        rc = tm_sqlite_restore(conf, &o, &rep, err);
        if (rep.backup_id[0]) {
            res->backup_id = strdup(rep.backup_id);
            result->backup_id = strdup(rep.backup_id);
        }
        char chain[16];
        snprintf(chain, sizeof(chain), "%" PRIu32, rep.chain);
        res->chain = strdup(chain);
        res->has_restore_files_ms = res->has_recovery_ms = 1;
        res->restore_files_ms = (uint64_t)(rep.files_s * 1000.0);
        res->recovery_ms = (uint64_t)(rep.replay_s * 1000.0);
    }
    if (rc == TM_OK) {
        tm_task_progress(ctx, "drill:checks", 0, 0, 0, 0);
        uint64_t tc0 = tm_mono_ns();
        run_checks(&d, spec, &rep);
        res->recovered_source = strdup(rep.frames > 0 ? "last replayed commit's shipped time"
                                                      : "snapshot read transaction start");
        res->has_recovered_to_ms = res->has_rpo_ms = 1;
        res->recovered_to_ms = rep.recovered_ms;
        res->rpo_ms = res->target_ms - res->recovered_to_ms;
        res->has_checks_ms = res->has_rto_ms = 1;
        res->checks_ms = (uint64_t)(rep.check_s * 1000.0) + ms_since(tc0);
        res->rto_ms = ms_since(t0);
        if (d.failed) {
            rc = tm_err_set(err, TM_ECORRUPT, "drill of %s: %s", target, d.first);
        }
    }

    tm_task_progress(ctx, "drill:teardown", 0, 0, 0, 0);
    uint64_t tt = tm_mono_ns();
    int removed = !ours || tm_drill_rmtree(dir) == 0;
    res->has_teardown_ms = res->has_cleaned_up = 1;
    res->teardown_ms = ms_since(tt);
    res->cleaned_up = removed;
    if (!removed) {
        tm_error("drill", "event=teardown_failed dir=%s", dir);
    }
    tm_drill_checks_move(&d, res);
    res->has_ok = 1;
    res->ok = rc == TM_OK;
    if (rc != TM_OK) {
        res->error = strdup(err->msg);
    }
    tm_info("drill",
            "event=finished task=%s target=%s engine=sqlite ok=%d backup=%s rto_ms=%" PRIu64
            " rpo_ms=%" PRId64 " cleaned_up=%d",
            task->id ? task->id : "?", target, rc == TM_OK, rep.backup_id, res->rto_ms, res->rpo_ms,
            res->cleaned_up);
    return rc;
}
