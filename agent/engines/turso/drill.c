/*
 * drill.c - a restore drill of a Turso target (task kind DRILL) through the
 * provider's own point-in-time recovery, for each database of the target:
 *
 *   1. create a new database seeded from the source at a timestamp (the
 *      time asked for, else the drill's start): POST .../databases with a
 *      seed {type: database, name, timestamp}; the RTO clock starts here;
 *   2. wait until it answers a query over its HTTP endpoint;
 *   3. checks over that endpoint: row counts of every table (at least one
 *      table), the drill's SQL checks (an error or a first column of
 *      false/f/0 fails), PRAGMA integrity_check = ok;
 *   4. delete it, whatever happened in 2 and 3. A delete that fails makes
 *      the drill fail (drill_failed alerts, naming the database left
 *      behind), even when every check passed.
 *
 * The source database is only named as the seed: no call here writes to
 * it. RPO: the provider restores to the timestamp, minus up to 15 s of its
 * own checkpoint batching (docs.turso.tech, Point-in-Time Recovery), so the
 * recovered point is recorded as timestamp - 15 s, an upper bound of the
 * loss, and said so in recovered_source.
 */
#include "agent/engines/turso/turso.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/drill_checks.h"
#include "agent/result_kv.h"
#include "common/log.h"
#include "common/util.h"

#define PROVIDER_GAP_MS 15000

static int falsy(const char *v)
{
    return strcmp(v, "0") == 0 || strcasecmp(v, "f") == 0 || strcasecmp(v, "false") == 0 ||
           v[0] == '\0';
}

/* Checks are named after the source database (src): the drill copy's name
 * changes every run. */
static void run_checks(tm_drill_checks *d, tm_turso_http *h, const tm_turso_conn *c,
                       const char *src, const Tidemark__DrillSpec *spec)
{
    char name[TM_TURSO_NAME_MAX + 200], detail[400];
    uint64_t t = tm_mono_ns();
    const char *list = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                       "'sqlite_%' AND name NOT LIKE '_litestream%' AND name NOT LIKE 'libsql_%' "
                       "ORDER BY name";
    tm_turso_stmt ls;
    tm_err e = {0};
    /* The table names: one statement per row would need a cursor; ask for
     * the names joined instead. */
    const char *joined = "SELECT group_concat(name, char(10)) FROM (SELECT name FROM "
                         "sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND "
                         "name NOT LIKE 'libsql_%' ORDER BY name)";
    (void)list;
    int rc = tm_turso_exec(h, c, &joined, 1, &ls, &e);
    snprintf(name, sizeof(name), "tables:%s", src);
    if (rc != TM_OK || !ls.ok || ls.first[0] == '\0') {
        tm_drill_check_add(d, name, 0,
                           rc != TM_OK ? e.msg
                           : ls.ok     ? "no table at all"
                                       : ls.error,
                           tm_drill_ms_since(t));
        return;
    }
    /* Row counts: one pipeline of count(*) per table. */
    char *names[64];
    char *sqls[64];
    size_t n = 0;
    char *copy = strdup(ls.first), *save = NULL;
    for (char *tb = copy ? strtok_r(copy, "\n", &save) : NULL; tb != NULL && n < 64;
         tb = strtok_r(NULL, "\n", &save)) {
        size_t q = 0;
        char quoted[300];
        for (const char *p = tb; *p && q + 3 < sizeof(quoted); p++) {
            if (*p == '"') {
                quoted[q++] = '"';
            }
            quoted[q++] = *p;
        }
        quoted[q] = '\0';
        names[n] = tb;
        if (asprintf(&sqls[n], "SELECT count(*) FROM \"%s\"", quoted) < 0) {
            break;
        }
        n++;
    }
    snprintf(detail, sizeof(detail), "%zu tables", n);
    tm_drill_check_add(d, name, n > 0, detail, tm_drill_ms_since(t));
    tm_turso_stmt *res = calloc(n ? n : 1, sizeof(*res));
    t = tm_mono_ns();
    rc = res != NULL ? tm_turso_exec(h, c, (const char *const *)sqls, n, res, &e) : TM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "rows:%s.%s", src, names[i]);
        if (rc != TM_OK || !res[i].ok) {
            tm_drill_check_add(d, name, 0, rc != TM_OK ? e.msg : res[i].error,
                               tm_drill_ms_since(t));
        } else {
            snprintf(detail, sizeof(detail), "%s rows", res[i].first);
            tm_drill_check_add(d, name, 1, detail, tm_drill_ms_since(t));
        }
        free(sqls[i]);
    }
    free(res);
    free(copy);
    /* The drill's own SQL checks. */
    for (size_t i = 0; spec != NULL && i < spec->n_checks; i++) {
        t = tm_mono_ns();
        const char *q = spec->checks[i];
        tm_turso_stmt s;
        snprintf(name, sizeof(name), "sql:%s:%zu", src, i + 1);
        rc = tm_turso_exec(h, c, &q, 1, &s, &e);
        if (rc != TM_OK || !s.ok) {
            tm_drill_check_add(d, name, 0, rc != TM_OK ? e.msg : s.error, tm_drill_ms_since(t));
        } else {
            snprintf(detail, sizeof(detail), "%.60s -> %.200s", q, s.rows ? s.first : "no row");
            tm_drill_check_add(d, name, s.rows > 0 && !falsy(s.first), detail,
                               tm_drill_ms_since(t));
        }
    }
    t = tm_mono_ns();
    const char *ic = "PRAGMA integrity_check";
    tm_turso_stmt s;
    snprintf(name, sizeof(name), "integrity:%s", src);
    rc = tm_turso_exec(h, c, &ic, 1, &s, &e);
    tm_drill_check_add(d, name, rc == TM_OK && s.ok && strcmp(s.first, "ok") == 0,
                       rc != TM_OK ? e.msg
                       : s.ok      ? s.first
                                   : s.error,
                       tm_drill_ms_since(t));
}

int tm_turso_drill(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                   tm_err *err)
{
    const Tidemark__DrillSpec *spec = task->drill;
    const tm_target_conf *t = tm_task_target(ctx);
    const tm_turso_target_conf *tc = t != NULL ? tm_turso_target(t) : NULL;
    Tidemark__DrillResult *res = malloc(sizeof(*res));
    if (res == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tidemark__drill_result__init(res);
    result->drill = res;
    tm_drill_checks d = {0};
    const char *time =
        spec != NULL && spec->target_time && spec->target_time[0] ? spec->target_time : NULL;
    int64_t started_ms = tm_now_ms();
    res->target_time = strdup(time ? time : "");
    res->has_started_at_ms = res->has_target_ms = 1;
    res->started_at_ms = started_ms;
    res->target_ms = started_ms;
    int rc = TM_OK;
    int64_t ts = 0;
    if (tc == NULL) {
        rc = tm_err_set(err, TM_ECONFIG,
                        "a Turso drill runs on an agent that serves target %s (its turso: block "
                        "names the organization and the API token); run it --to that agent",
                        task->target ? task->target : "?");
    } else if (time != NULL) {
        if (tm_turso_time_parse(time, &ts) != TM_OK) {
            rc = tm_err_set(err, TM_EINVAL, "drill time '%.60s' is not 'YYYY-MM-DD HH:MM:SS+00'",
                            time);
        }
        res->target_ms = ts * 1000;
    } else {
        ts = started_ms / 1000;
    }
    char seed_ts[32];
    struct tm tmv;
    time_t tt = (time_t)ts;
    gmtime_r(&tt, &tmv);
    strftime(seed_ts, sizeof(seed_ts), "%Y-%m-%dT%H:%M:%SZ", &tmv);
    tm_turso_http *h = NULL;
    tm_turso_db *dbs = NULL;
    size_t ndb = 0;
    if (rc == TM_OK) {
        rc = tm_turso_http_for(tc, ctx, &h, err);
    }
    if (rc == TM_OK) {
        rc = tm_turso_api_targets(tc, h, &dbs, &ndb, err);
    }
    if (rc == TM_OK && ndb == 0) {
        rc = tm_err_set(err, TM_ENOENT, "group %s holds no database", tc->group);
    }
    tm_info("drill", "event=started task=%s target=%s engine=turso databases=%zu seed=%s", task->id,
            task->target, ndb, seed_ts);
    uint64_t rto_ns = 0, restore_ns = 0, ready_ns = 0, checks_ns = 0, teardown_ns = 0;
    int cleaned = 1;
    char left[512] = "";
    char suffix[16];
    unsigned char rnd[3];
    tm_random_bytes(rnd, sizeof(rnd));
    snprintf(suffix, sizeof(suffix), "%02x%02x%02x", rnd[0], rnd[1], rnd[2]);
    for (size_t i = 0; rc == TM_OK && i < ndb; i++) {
        char name[TM_TURSO_NAME_MAX];
        /* Turso names: at most 64 characters, lowercase, digits, dashes. */
        snprintf(name, sizeof(name), "%.40s-drill-%s", dbs[i].name, suffix);
        tm_task_progress(ctx, "drill:create", 0, 0, (uint32_t)i, (uint32_t)ndb);
        uint64_t t0 = tm_mono_ns();
        tm_turso_db nd;
        int created = 0;
        rc = tm_turso_api_create(tc, h, name, dbs[i].group, dbs[i].name, seed_ts, &nd, err);
        created = rc == TM_OK;
        uint64_t t1 = tm_mono_ns();
        tm_turso_conn c = {0};
        if (rc == TM_OK) {
            rc = tm_turso_conn_open(tc, h, &nd, 0, &c, err);
        }
        if (rc == TM_OK) {
            tm_task_progress(ctx, "drill:wait", 0, 0, (uint32_t)i, (uint32_t)ndb);
            rc = tm_turso_wait_ready(h, &c, ctx, err);
        }
        uint64_t t2 = tm_mono_ns();
        if (rc == TM_OK) {
            tm_task_progress(ctx, "drill:checks", 0, 0, (uint32_t)i, (uint32_t)ndb);
            run_checks(&d, h, &c, dbs[i].name, spec);
            if (d.failed) {
                rc = tm_err_set(err, TM_ECORRUPT, "drill of %s (database %s): %s", task->target,
                                dbs[i].name, d.first);
            }
        }
        uint64_t t3 = tm_mono_ns();
        restore_ns += t1 - t0;
        ready_ns += t2 - t1;
        checks_ns += t3 - t2;
        rto_ns += t3 - t0;
        tm_turso_conn_close(&c);
        /* Teardown, whatever happened above. */
        if (created) {
            tm_task_progress(ctx, "drill:teardown", 0, 0, (uint32_t)i, (uint32_t)ndb);
            tm_err de = {0};
            if (tm_turso_api_delete(tc, h, name, &de) != TM_OK) {
                cleaned = 0;
                size_t l = strlen(left);
                snprintf(left + l, sizeof(left) - l, "%s%s (%.150s)", l ? "; " : "", name, de.msg);
                tm_error("drill", "event=teardown_failed database=%s msg=\"%s\"", name, de.msg);
            }
        }
        teardown_ns += tm_mono_ns() - t3;
    }
    if (!cleaned) {
        tm_err ce = {0};
        /* Final, not retryable: another attempt would leave another one. */
        tm_err_set(&ce, TM_EEXIST, "drill databases left behind, delete them by hand: %s", left);
        if (rc == TM_OK) {
            rc = tm_err_set(err, TM_EEXIST, "%s", ce.msg);
        } else {
            tm_err_prefix(err, "%s; and", ce.msg);
        }
    }
    res->has_restore_files_ms = res->has_recovery_ms = res->has_checks_ms = 1;
    res->restore_files_ms = restore_ns / 1000000;
    res->recovery_ms = ready_ns / 1000000;
    res->checks_ms = checks_ns / 1000000;
    res->has_teardown_ms = res->has_cleaned_up = 1;
    res->teardown_ms = teardown_ns / 1000000;
    res->cleaned_up = cleaned;
    if (!d.failed && ndb > 0 && rto_ns > 0) {
        res->has_rto_ms = 1;
        res->rto_ms = rto_ns / 1000000;
        res->has_recovered_to_ms = res->has_rpo_ms = 1;
        res->recovered_to_ms = ts * 1000 - PROVIDER_GAP_MS;
        res->rpo_ms = res->target_ms - res->recovered_to_ms;
        res->recovered_source =
            strdup("provider point-in-time seed timestamp minus the provider's stated 15 s "
                   "checkpoint gap (an upper bound)");
    }
    res->backup_id = strdup(seed_ts);
    res->chain = strdup("provider-pitr");
    tm_drill_checks_move(&d, res);
    res->has_ok = 1;
    res->ok = rc == TM_OK;
    if (rc != TM_OK) {
        res->error = strdup(err->msg);
    }
    tm_info("drill",
            "event=finished task=%s target=%s engine=turso ok=%d seed=%s rto_ms=%" PRIu64
            " rpo_ms=%" PRId64 " cleaned_up=%d",
            task->id, task->target, rc == TM_OK, seed_ts, res->rto_ms, res->rpo_ms, cleaned);
    free(dbs);
    tm_turso_http_free(h);
    return rc;
}
