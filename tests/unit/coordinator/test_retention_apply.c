/*
 * test_retention_apply.c - retention applied by the coordinator, over a real
 * catalog and dispatcher with an injected clock.
 *
 * The core test runs 8 simulated years of days: a full every day at 03:00
 * (two incrementals on every fifth day), a permanent hold on an early
 * backup; the policy's retention.apply ("@daily") fires at midnight, the
 * EXPIRE task it queues is completed as an agent would (every drop deleted
 * in two repositories), and after every day the catalog must hold exactly
 * the set an independent reference computes: libc strftime buckets (%Y-%m-%d,
 * %G-W%V, %Y-%m, %Y) over the fulls, "newest per bucket in the N newest
 * buckets", plus the hold, the newest backup's full, the PITR anchor's full,
 * and incrementals exactly with their full. Every deletion must be in the
 * deletion log. Then the rules one by one: first sight waits for the next
 * fire time, no second EXPIRE while one is open, nothing on a partial
 * catalog read, nothing for a target without a policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/config.h"
#include "coordinator/catalog.h"
#include "coordinator/dispatcher.h"
#include "coordinator/retention_apply.h"
#include "tidemark.pb-c.h"

#define DAY0 1577836800LL /* 2020-01-01T00:00:00Z: crosses leap years and W53 years */

typedef struct fixture {
    char dir[256];
    char path[300];
    tm_catalog *cat;
    tm_dispatcher *disp;
    tm_coordinator_conf conf;
    tm_policy_conf policy;
    int64_t now;
} fixture;

static int64_t fake_clock(void *arg)
{
    return ((fixture *)arg)->now;
}

static void add_agent(fixture *f, const char *id, const char *target, int kind)
{
    tm_target_rec t = {.name = (char *)target, .kind = kind, .engine_version = ""};
    tm_agent_rec rec = {0};
    rec.id = (char *)id;
    rec.hostname = (char *)id;
    rec.version = "test";
    rec.secret_hash = "00";
    rec.enrollment = "t";
    rec.approved = 1;
    rec.state = TIDEMARK__AGENT_STATE__ONLINE;
    rec.targets = &t;
    rec.n_targets = 1;
    tm_err err;
    assert_int_equal(tm_catalog_agent_put(f->cat, &rec, &err), TM_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "%s/tm-test-retapply-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/catalog.db", f->dir);
    tm_err err;
    assert_int_equal(tm_catalog_open(&f->cat, f->path, &err), TM_OK);
    tm_dispatcher_opts o = {0};
    assert_int_equal(tm_dispatcher_new(&f->disp, f->cat, &o, &err), TM_OK);
    f->policy = (tm_policy_conf){
        .name = "pg",
        .match_kind = "postgres",
        .retention = {.keep_daily = 7,
                      .keep_weekly = 4,
                      .keep_monthly = 12,
                      .keep_yearly = 7,
                      .min_count = 1,
                      .keep_failed = 3,
                      .pitr_window_s = 7 * 86400,
                      .apply = "@daily",
                      .apply_where = "test.yaml:1:1: policies[0].retention.apply"},
    };
    f->conf.policies = &f->policy;
    f->conf.n_policies = 1;
    add_agent(f, "ag-1", "pg", 1);
    add_agent(f, "ag-2", "cache", 2); /* redis: no policy matches */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tm_dispatcher_free(f->disp);
    tm_catalog_free(f->cat);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* ---- the simulated history and the reference ---- */

typedef struct sim {
    char id[48];
    char parent[48];
    int type;
    int64_t finished;
    int full_ix; /* index of its full (itself for a full) */
    int alive;   /* the test's belief: 1 until the reference drops it */
    int keep;
} sim;

static sim *S;
static size_t NS, CAPS;

static sim *add(fixture *f, int type, int64_t finished, int full_ix, const char *parent_in)
{
    /* parent_in may point into S, which the realloc below can move. */
    char parent_buf[sizeof(S[0].parent)];
    const char *parent = NULL;
    if (parent_in != NULL) {
        snprintf(parent_buf, sizeof(parent_buf), "%s", parent_in);
        parent = parent_buf;
    }
    if (NS == CAPS) {
        CAPS = CAPS ? CAPS * 2 : 1024;
        S = realloc(S, CAPS * sizeof(*S));
    }
    sim *s = &S[NS];
    memset(s, 0, sizeof(*s));
    struct tm tmv;
    time_t t = (time_t)finished;
    gmtime_r(&t, &tmv);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tmv);
    snprintf(s->id, sizeof(s->id), "%s-%s", ts, type == 1 ? "full" : "incremental");
    snprintf(s->parent, sizeof(s->parent), "%s", parent ? parent : "");
    s->type = type;
    s->finished = finished;
    s->full_ix = full_ix < 0 ? (int)NS : full_ix;
    s->alive = 1;
    Tidemark__BackupInfo b = TIDEMARK__BACKUP_INFO__INIT;
    b.id = s->id;
    b.target = "pg";
    b.has_type = b.has_started_at = b.has_finished_at = 1;
    b.type = (Tidemark__BackupType)type;
    b.parent_id = parent ? (char *)parent : NULL;
    b.started_at = finished - 600;
    b.finished_at = finished;
    b.start_position = "0/2000028";
    b.has_chain = 1;
    b.chain = 1;
    tm_err err;
    assert_int_equal(tm_catalog_backup_put(f->cat, &b, &err), TM_OK);
    NS++;
    return s;
}

static void bucket(int64_t t, const char *fmt, char *out, size_t cap)
{
    struct tm tmv;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tmv);
    strftime(out, cap, fmt, &tmv);
}

/* want[i] = 1 for the backups retention must keep at now: computed over the
 * whole history (dropped backups were dropped by these same rules, and a
 * dropped full stays dropped: GFS buckets only move forward). */
static void reference(int64_t now, char *want)
{
    memset(want, 0, NS);
    static const struct {
        const char *fmt;
        int n;
    } cls[] = {{"%Y-%m-%d", 7}, {"%G-W%V", 4}, {"%Y-%m", 12}, {"%Y", 7}};
    for (size_t c = 0; c < 4; c++) {
        char last[32] = "";
        int got = 0;
        for (size_t i = NS; i-- > 0 && got < cls[c].n;) {
            if (S[i].type != 1) {
                continue;
            }
            char b[32];
            bucket(S[i].finished, cls[c].fmt, b, sizeof(b));
            if (strcmp(b, last) != 0) {
                want[i] = 1;
                got++;
                snprintf(last, sizeof(last), "%s", b);
            }
        }
    }
    for (size_t i = 0; i < NS; i++) {
        if (S[i].keep) {
            want[S[i].full_ix] = 1;
        }
    }
    want[S[NS - 1].full_ix] = 1; /* newest */
    int anchor = -1;             /* PITR: newest finished at or before now - 7d */
    for (size_t i = 0; i < NS; i++) {
        if (S[i].finished <= now - 7 * 86400) {
            anchor = (int)i;
        }
    }
    if (anchor < 0) {
        anchor = 0;
    }
    want[S[anchor].full_ix] = 1;
    for (size_t i = 0; i < NS; i++) {
        if (S[i].type == 2 && want[S[i].full_ix]) {
            want[i] = 1;
        }
    }
}

static Tidemark__Task *only_open_expire(fixture *f, size_t *count)
{
    Tidemark__Task **t = NULL;
    size_t n = 0;
    tm_err err;
    assert_int_equal(tm_catalog_task_list(f->cat, "pg", 1, 0, &t, &n, &err), TM_OK);
    *count = n;
    Tidemark__Task *out = n > 0 ? t[0] : NULL;
    for (size_t i = 1; i < n; i++) {
        tidemark__task__free_unpacked(t[i], NULL);
    }
    free(t);
    if (out != NULL) {
        assert_int_equal(out->kind, TIDEMARK__TASK_KIND__EXPIRE);
        assert_non_null(out->expire);
    }
    return out;
}

/* What an agent reports: every drop deleted in repositories r1 and r2. */
static void complete_as_agent(fixture *f, tm_retention_apply *ra, Tidemark__Task *t)
{
    Tidemark__TaskResult res = TIDEMARK__TASK_RESULT__INIT;
    Tidemark__ExpireResult er = TIDEMARK__EXPIRE_RESULT__INIT;
    Tidemark__ExpireRepoResult r1 = TIDEMARK__EXPIRE_REPO_RESULT__INIT;
    Tidemark__ExpireRepoResult r2 = TIDEMARK__EXPIRE_REPO_RESULT__INIT;
    Tidemark__ExpireRepoResult *rr[2] = {&r1, &r2};
    char **ids = calloc(t->expire->n_drop + 1, sizeof(*ids));
    for (size_t i = 0; i < t->expire->n_drop; i++) {
        ids[i] = t->expire->drop[i]->id;
    }
    r1.repository = "r1";
    r2.repository = "r2";
    r1.backups = r2.backups = ids;
    r1.n_backups = r2.n_backups = t->expire->n_drop;
    er.repositories = rr;
    er.n_repositories = 2;
    res.expire = &er;
    Tidemark__TaskResult *saved = t->result;
    t->result = &res;
    tm_err err;
    assert_int_equal(tm_retention_apply_completed(t, ra, &err), TM_OK);
    t->result = saved;
    t->state = TIDEMARK__TASK_STATE__TASK_SUCCEEDED;
    assert_int_equal(tm_catalog_task_put(f->cat, t, &err), TM_OK);
    free(ids);
}

static void check_catalog(fixture *f, const char *want, int day)
{
    Tidemark__BackupInfo **bs = NULL;
    size_t n = 0;
    tm_err err;
    assert_int_equal(tm_catalog_backup_list(f->cat, "pg", &bs, &n, &err), TM_OK);
    size_t expect = 0;
    for (size_t i = 0; i < NS; i++) {
        expect += want[i] != 0;
        if (S[i].alive != want[i]) {
            fail_msg("day %d: %s is %s, reference says %s", day, S[i].id,
                     S[i].alive ? "in the catalog" : "gone", want[i] ? "keep" : "drop");
        }
    }
    if (n != expect) {
        fail_msg("day %d: catalog holds %zu backups, reference keeps %zu", day, n, expect);
    }
    tm_catalog_backups_free(bs, n);
}

static void test_years_of_days(void **state)
{
    fixture *f = *state;
    tm_err err;
    free(S);
    S = NULL;
    NS = CAPS = 0;
    tm_retention_apply *ra = NULL;
    f->now = DAY0;
    assert_int_equal(tm_retention_apply_new(&ra, &f->conf, f->cat, f->disp, fake_clock, f, &err),
                     TM_OK);
    const int days = 8 * 365 + 2; /* 2020-01-01 .. 2027-12-31 */
    char *want = malloc((size_t)days * 4);
    size_t deleted = 0, tasks = 0;
    int first_sight = 1, hold = -1;
    for (int d = 0; d < days; d++) {
        int64_t day = DAY0 + (int64_t)d * 86400;
        sim *full = add(f, 1, day + 3 * 3600, -1, NULL);
        int fi = (int)(full - S);
        if (d == 10) {
            full->keep = 1; /* permanent hold */
            hold = fi;
            assert_int_equal(tm_catalog_backup_set_keep(f->cat, "pg", full->id, 1, NULL, &err),
                             TM_OK);
        }
        if (d % 5 == 0) {
            sim *i1 = add(f, 2, day + 4 * 3600, fi, S[fi].id);
            add(f, 2, day + 5 * 3600, fi, i1->id);
        }
        /* Midnight: the apply schedule fires. */
        f->now = day + 86400 + 30;
        int q = tm_retention_apply_tick(ra, &err);
        assert_true(q >= 0);
        size_t open = 0;
        Tidemark__Task *t = only_open_expire(f, &open);
        if (first_sight) {
            /* The first tick only learns the fire time. */
            assert_int_equal(q, 0);
            assert_int_equal(open, 0);
            first_sight = 0;
            continue;
        }
        reference(f->now, want);
        size_t ndrop = 0;
        for (size_t i = 0; i < NS; i++) {
            ndrop += S[i].alive && !want[i];
        }
        /* A plan with a log cutoff queues a task even with nothing to drop
         * (old logs may go): there is one every day. */
        assert_non_null(t);
        assert_int_equal(q, 1);
        assert_int_equal(open, 1);
        tasks++;
        assert_string_equal(t->requested_by, "schedule");
        assert_string_equal(t->agent_id, "ag-1");
        assert_int_equal(t->expire->n_drop, ndrop);
        for (size_t k = 0; k < t->expire->n_drop; k++) {
            const Tidemark__ExpireBackup *e = t->expire->drop[k];
            assert_non_null(e->reason);
            assert_true(e->reason[0] != '\0');
            size_t i = 0;
            while (i < NS && strcmp(S[i].id, e->id) != 0) {
                i++;
            }
            assert_true(i < NS);
            if (!S[i].alive || want[i]) {
                fail_msg("day %d: EXPIRE drops %s, reference keeps it", d, e->id);
            }
            S[i].alive = 0;
        }
        /* The log cutoff is the PITR anchor's start, with its LSN. */
        assert_non_null(t->expire->log_cutoff_id);
        assert_string_equal(t->expire->log_cutoff_start_position, "0/2000028");
        /* A second tick in the same period queues nothing more. */
        assert_int_equal(tm_retention_apply_tick(ra, &err), 0);
        complete_as_agent(f, ra, t);
        deleted += t->expire->n_drop;
        tidemark__task__free_unpacked(t, NULL);
        check_catalog(f, want, d);
    }
    /* Every deletion is in the log, with both repositories and a reason. */
    tm_retention_deletion *log = NULL;
    size_t nlog = 0;
    assert_int_equal(tm_catalog_retention_log(f->cat, "pg", 0, &log, &nlog, &err), TM_OK);
    assert_int_equal(nlog, deleted);
    for (size_t i = 0; i < nlog; i++) {
        assert_string_equal(log[i].repositories, "r1,r2");
        assert_true(log[i].reason[0] != '\0');
    }
    tm_retention_deletions_free(log, nlog);
    /* The hold survived eight years. */
    assert_true(hold >= 0 && S[hold].alive);
    size_t kept = 0;
    for (size_t i = 0; i < NS; i++) {
        kept += S[i].alive;
    }
    printf("%d simulated days: %zu backups made, %zu EXPIRE tasks, %zu deleted, %zu kept\n", days,
           NS, tasks, deleted, kept);
    assert_true(deleted > 1000);
    free(want);
    tm_retention_apply_free(ra);
}

static void test_rules(void **state)
{
    fixture *f = *state;
    tm_err err;
    free(S);
    S = NULL;
    NS = CAPS = 0;
    for (int d = 0; d < 40; d++) {
        add(f, 1, DAY0 + (int64_t)d * 86400 + 3 * 3600, -1, NULL);
    }
    tm_retention_apply *ra = NULL;
    f->now = DAY0 + 40 * 86400 + 3600;
    assert_int_equal(tm_retention_apply_new(&ra, &f->conf, f->cat, f->disp, fake_clock, f, &err),
                     TM_OK);
    /* First sight: nothing yet (dry-run window until the next fire time). */
    assert_int_equal(tm_retention_apply_tick(ra, &err), 0);
    f->now += 86400;
    /* scheduler.paused: nothing is deleted, and the run is not lost. */
    f->conf.sched_paused = true;
    assert_int_equal(tm_retention_apply_tick(ra, &err), 0);
    f->conf.sched_paused = false;
    assert_int_equal(tm_retention_apply_tick(ra, &err), 1);
    /* The same fire time is not handled twice; on request, the open task
     * is returned instead of a second one. */
    assert_int_equal(tm_retention_apply_tick(ra, &err), 0);
    Tidemark__Task *t = NULL;
    int was_open = 0;
    char why[160];
    assert_int_equal(
        tm_retention_apply_target(ra, "pg", "admin", &t, &was_open, why, sizeof(why), &err), TM_OK);
    assert_non_null(t);
    assert_int_equal(was_open, 1);
    size_t open = 0;
    Tidemark__Task *o = only_open_expire(f, &open);
    assert_int_equal(open, 1);
    assert_string_equal(o->id, t->id);
    tidemark__task__free_unpacked(o, NULL);
    Tidemark__Task *c = NULL;
    assert_int_equal(tm_dispatcher_cancel(f->disp, t->id, &c, &err), TM_OK);
    tidemark__task__free_unpacked(c, NULL);
    tidemark__task__free_unpacked(t, NULL);

    /* A record that cannot be read: no plan, nothing queued. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "INSERT INTO backups(target, id, type, finished_at, record) "
                                  "VALUES ('pg', 'garbled', 1, 1, X'ffffffff')",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    t = NULL;
    assert_int_equal(
        tm_retention_apply_target(ra, "pg", "admin", &t, &was_open, why, sizeof(why), &err),
        TM_EIO);
    assert_null(t);
    assert_non_null(strstr(err.msg, "partial read"));
    f->now += 86400;
    assert_int_equal(tm_retention_apply_tick(ra, &err), 0);
    only_open_expire(f, &open);
    assert_int_equal(open, 0);
    assert_int_equal(sqlite3_exec(db, "DELETE FROM backups WHERE id = 'garbled'", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    /* The redis target has no policy: never applied on schedule. */
    Tidemark__Task **ct = NULL;
    size_t nct = 0;
    assert_int_equal(tm_catalog_task_list(f->cat, "cache", 0, 0, &ct, &nct, &err), TM_OK);
    assert_int_equal(nct, 0);
    tm_catalog_tasks_free(ct, nct);

    /* A held backup is never in a drop list. */
    assert_int_equal(tm_catalog_backup_set_keep(f->cat, "pg", S[0].id, 1, NULL, &err), TM_OK);
    assert_int_equal(tm_catalog_backup_set_keep(f->cat, NULL, "nope", 1, NULL, &err), TM_ENOENT);
    t = NULL;
    assert_int_equal(
        tm_retention_apply_target(ra, "pg", "admin", &t, &was_open, why, sizeof(why), &err), TM_OK);
    assert_non_null(t);
    assert_int_equal(was_open, 0);
    assert_true(t->expire->n_drop > 0);
    for (size_t i = 0; i < t->expire->n_drop; i++) {
        assert_string_not_equal(t->expire->drop[i]->id, S[0].id);
        assert_string_not_equal(t->expire->drop[i]->id, S[NS - 1].id); /* newest */
    }
    tidemark__task__free_unpacked(t, NULL);
    tm_retention_apply_free(ra);
}

/* A first run over a long history is split: at most 5000 drops per task,
 * newest first, so a dropped full never goes while one of its dropped
 * incrementals stays; the next task takes the rest. */
static void test_capped_newest_first(void **state)
{
    fixture *f = *state;
    tm_err err;
    free(S);
    S = NULL;
    NS = CAPS = 0;
    const int days = 5600;
    for (int d = 0; d < days; d++) {
        sim *full = add(f, 1, DAY0 + (int64_t)d * 86400 + 3 * 3600, -1, NULL);
        if (d % 50 == 0) {
            int fi = (int)(full - S);
            sim *i1 = add(f, 2, DAY0 + (int64_t)d * 86400 + 4 * 3600, fi, S[fi].id);
            add(f, 2, DAY0 + (int64_t)d * 86400 + 5 * 3600, fi, i1->id);
        }
    }
    tm_retention_apply *ra = NULL;
    f->now = DAY0 + (int64_t)days * 86400;
    assert_int_equal(tm_retention_apply_new(&ra, &f->conf, f->cat, f->disp, fake_clock, f, &err),
                     TM_OK);
    Tidemark__Task *t = NULL;
    int was_open = 0;
    char why[160];
    assert_int_equal(
        tm_retention_apply_target(ra, "pg", "admin", &t, &was_open, why, sizeof(why), &err), TM_OK);
    assert_int_equal(t->expire->n_drop, 5000);
    int64_t prev = INT64_MAX;
    for (size_t i = 0; i < t->expire->n_drop; i++) {
        const Tidemark__ExpireBackup *e = t->expire->drop[i];
        assert_true(e->finished_at <= prev); /* newest first */
        prev = e->finished_at;
        if (e->type == TIDEMARK__BACKUP_TYPE__FULL) {
            /* its incrementals (newer) are in this same task */
            for (size_t k = 0; k < NS; k++) {
                if (S[k].type == 2 && strcmp(S[S[k].full_ix].id, e->id) == 0) {
                    int found = 0;
                    for (size_t j = 0; j < i && !found; j++) {
                        found = strcmp(t->expire->drop[j]->id, S[k].id) == 0;
                    }
                    assert_true(found);
                }
            }
        }
    }
    complete_as_agent(f, ra, t);
    tidemark__task__free_unpacked(t, NULL);
    assert_int_equal(
        tm_retention_apply_target(ra, "pg", "admin", &t, &was_open, why, sizeof(why), &err), TM_OK);
    assert_int_equal(was_open, 0);
    assert_true(t->expire->n_drop > 0 && t->expire->n_drop < 5000);
    tidemark__task__free_unpacked(t, NULL);
    tm_retention_apply_free(ra);
}

static void test_bad_cron(void **state)
{
    fixture *f = *state;
    tm_err err;
    tm_retention_apply *ra = NULL;
    f->policy.retention.apply = "0 25 * * *";
    assert_int_equal(tm_retention_apply_new(&ra, &f->conf, f->cat, f->disp, fake_clock, f, &err),
                     TM_ECONFIG);
    assert_non_null(strstr(err.msg, "test.yaml:1:1: policies[0].retention.apply: "));
    f->policy.retention.apply = "@daily";
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_years_of_days, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capped_newest_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_cron, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(S);
    return rc;
}
