/*
 * test_scheduler.c - the scheduler wiring over a real catalog and
 * dispatcher with an injected clock: a policy's full fires once at its time
 * as a "schedule" task, a queued full is not doubled, the fire time survives
 * a restart, a misfire after downtime runs once, a target no policy matches
 * gets nothing, and a pending agent gets nothing; max_tasks_per_repository
 * holds back a second target that writes to the same repository.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "coordinator/catalog.h"
#include "coordinator/dispatcher.h"
#include "coordinator/drills.h"
#include "coordinator/scheduler.h"
#include "tidemark.pb-c.h"

#define DAY0 1795478400LL /* 2026-11-24T00:00:00Z */

typedef struct fixture {
    char dir[256];
    char path[300];
    tm_catalog *cat;
    tm_dispatcher *disp;
    tm_coordinator_conf conf;
    tm_policy_conf policy;
    tm_label_conf label;
    int64_t now;
} fixture;

static int64_t fake_clock(void *arg)
{
    return ((fixture *)arg)->now;
}

static void add_agent(fixture *f, const char *id, int approved, const char *target, int kind)
{
    tm_label labels[] = {{"env", "prod"}};
    tm_target_rec t = {.name = (char *)target, .kind = kind, .engine_version = ""};
    tm_agent_rec rec = {0};
    rec.id = (char *)id;
    rec.hostname = (char *)id;
    rec.version = "test";
    rec.secret_hash = "00";
    rec.enrollment = "t";
    rec.approved = approved;
    rec.state = TIDEMARK__AGENT_STATE__ONLINE;
    rec.registered_at = DAY0;
    rec.last_seen_at = DAY0;
    rec.labels = labels;
    rec.n_labels = 1;
    rec.targets = &t;
    rec.n_targets = 1;
    tm_err err;
    assert_int_equal(tm_catalog_agent_put(f->cat, &rec, &err), TM_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/tm-test-scheduler-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/catalog.db", f->dir);
    tm_err err;
    assert_int_equal(tm_catalog_open(&f->cat, f->path, &err), TM_OK);
    tm_dispatcher_opts o = {0};
    assert_int_equal(tm_dispatcher_new(&f->disp, f->cat, &o, &err), TM_OK);
    f->label = (tm_label_conf){"env", "prod"};
    f->policy = (tm_policy_conf){
        .name = "nightly",
        .match_kind = "postgres",
        .labels = &f->label,
        .n_labels = 1,
        .full = "0 3 * * *",
        .incremental = NULL,
        .full_where = "test.yaml:1:1: policies[0].schedule.full",
        .jitter_s = 0,
    };
    f->conf.policies = &f->policy;
    f->conf.n_policies = 1;
    add_agent(f, "ag-1", 1, "pg", 1);
    add_agent(f, "ag-2", 1, "cache", 2);      /* redis: the postgres policy does not match */
    add_agent(f, "ag-3", 0, "pg-pending", 1); /* not approved */
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

/* Open backup tasks of a target; cancels them when cancel is set, so the
 * target is free for the next run. */
static size_t open_tasks(fixture *f, const char *target, int cancel)
{
    Tidemark__Task **t = NULL;
    size_t n = 0;
    tm_err err;
    assert_int_equal(tm_catalog_task_list(f->cat, target, 1, 0, &t, &n, &err), TM_OK);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(t[i]->requested_by, "schedule");
        assert_int_equal(t[i]->backup_type, TIDEMARK__BACKUP_TYPE__FULL);
        if (cancel) {
            Tidemark__Task *out = NULL;
            assert_int_equal(tm_dispatcher_cancel(f->disp, t[i]->id, &out, &err), TM_OK);
            tidemark__task__free_unpacked(out, NULL);
        }
    }
    tm_catalog_tasks_free(t, n);
    return n;
}

static int tick(tm_scheduler *s)
{
    tm_err err;
    int n = tm_scheduler_tick(s, &err);
    assert_true(n >= 0);
    return n;
}

static void test_fires_once_and_survives_restart(void **state)
{
    fixture *f = *state;
    tm_err err;
    tm_scheduler *s = NULL;
    assert_int_equal(tm_scheduler_new(&s, &f->conf, f->cat, f->disp, fake_clock, f, &err), TM_OK);
    f->now = DAY0 + 2 * 3600; /* 02:00: first sight, nothing due yet */
    assert_int_equal(tick(s), 0);
    f->now = DAY0 + 3 * 3600 - 1;
    assert_int_equal(tick(s), 0);
    f->now = DAY0 + 3 * 3600 + 1; /* 03:00:01 */
    assert_int_equal(tick(s), 1);
    assert_int_equal(tick(s), 0); /* consumed */
    assert_int_equal(open_tasks(f, "pg", 0), 1);
    assert_int_equal(open_tasks(f, "cache", 0), 0);
    assert_int_equal(open_tasks(f, "pg-pending", 0), 0);

    /* Next night while the first full is still queued: deferred, not doubled. */
    f->now += 86400;
    assert_int_equal(tick(s), 0);
    assert_int_equal(open_tasks(f, "pg", 1), 1); /* ...and freed now */
    assert_int_equal(tick(s), 1);                /* the deferred run starts once */
    assert_int_equal(open_tasks(f, "pg", 1), 1);
    tm_scheduler_free(s);

    /* Restart after three nights down: the persisted fire time makes the
     * missed runs one run, not three, and not zero. */
    s = NULL;
    assert_int_equal(tm_scheduler_new(&s, &f->conf, f->cat, f->disp, fake_clock, f, &err), TM_OK);
    f->now += 3 * 86400 + 3600;
    assert_int_equal(tick(s), 1);
    assert_int_equal(tick(s), 0);
    assert_int_equal(open_tasks(f, "pg", 1), 1);
    tm_scheduler_free(s);
}

static void test_bad_cron_names_its_line(void **state)
{
    fixture *f = *state;
    f->policy.full = "0 25 * * *";
    tm_scheduler *s = NULL;
    tm_err err;
    assert_int_equal(tm_scheduler_new(&s, &f->conf, f->cat, f->disp, fake_clock, f, &err),
                     TM_ECONFIG);
    assert_null(s);
    assert_non_null(strstr(err.msg, "test.yaml:1:1: policies[0].schedule.full: "));
    assert_non_null(strstr(err.msg, "hour"));
}

static void put_backup(fixture *f, const char *target, const char *id, char **repos, size_t n)
{
    Tidemark__BackupInfo b = TIDEMARK__BACKUP_INFO__INIT;
    b.id = (char *)id;
    b.target = (char *)target;
    b.has_type = b.has_finished_at = 1;
    b.type = TIDEMARK__BACKUP_TYPE__FULL;
    b.finished_at = DAY0 - 86400;
    b.repositories = repos;
    b.n_repositories = n;
    tm_err err;
    assert_int_equal(tm_catalog_backup_put(f->cat, &b, &err), TM_OK);
}

static void test_repository_limit(void **state)
{
    fixture *f = *state;
    add_agent(f, "ag-4", 1, "pg2", 1);
    add_agent(f, "ag-5", 1, "pg3", 1);
    char *shared[] = {"eu", "shared"}, *own[] = {"us"};
    put_backup(f, "pg", "20261123T030000Z-full", shared, 2);
    put_backup(f, "pg2", "20261123T030100Z-full", shared + 1, 1);
    put_backup(f, "pg3", "20261123T030200Z-full", own, 1);
    f->conf.sched_max_per_repo = 1;
    f->conf.sched_max_per_agent = 0;
    tm_err err;
    tm_scheduler *s = NULL;
    assert_int_equal(tm_scheduler_new(&s, &f->conf, f->cat, f->disp, fake_clock, f, &err), TM_OK);
    f->now = DAY0 + 2 * 3600;
    assert_int_equal(tick(s), 0);
    f->now = DAY0 + 3 * 3600 + 1;
    /* pg and pg2 share "shared": one of them waits; pg3 ("us") is free. */
    assert_int_equal(tick(s), 2);
    assert_int_equal(open_tasks(f, "pg3", 0), 1);
    size_t first = open_tasks(f, "pg", 0), second = open_tasks(f, "pg2", 0);
    assert_int_equal(first + second, 1);
    assert_int_equal(tick(s), 0); /* still held back while the other is open */
    open_tasks(f, first ? "pg" : "pg2", 1);
    assert_int_equal(tick(s), 1); /* the repository is free: the deferred one runs */
    assert_int_equal(open_tasks(f, first ? "pg2" : "pg", 0), 1);
    tm_scheduler_free(s);
}

/* Open DRILL tasks of target (n returned, the first one in *out). */
static size_t open_drills(fixture *f, const char *target, Tidemark__Task **first)
{
    Tidemark__Task **t = NULL;
    size_t n = 0, drills = 0;
    tm_err err;
    assert_int_equal(tm_catalog_task_list(f->cat, target, 1, 0, &t, &n, &err), TM_OK);
    for (size_t i = 0; i < n; i++) {
        if (t[i]->kind == TIDEMARK__TASK_KIND__DRILL) {
            if (drills++ == 0 && first != NULL) {
                *first = t[i];
                t[i] = NULL;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i] != NULL) {
            tidemark__task__free_unpacked(t[i], NULL);
        }
    }
    free(t);
    return drills;
}

/* policies[].drill.schedule: a DRILL task to the staging agent (given by
 * hostname) with the policy's checks and goals; not doubled while one is
 * open (scheduler and RunDrill alike); its result becomes a drills row. */
static void test_drill_schedule(void **state)
{
    fixture *f = *state;
    char *checks[] = {"SELECT true"};
    f->policy.drill = (tm_policy_drill_conf){
        .schedule = "0 5 * * *",
        .schedule_where = "test.yaml:2:1: policies[0].drill.schedule",
        .staging_agent = "ag-2",
        .dir = "/srv/drills",
        .checks = checks,
        .n_checks = 1,
        .rto_goal_s = 1800,
        .rpo_goal_s = 60,
    };
    tm_err err;
    tm_scheduler *s = NULL;
    assert_int_equal(tm_scheduler_new(&s, &f->conf, f->cat, f->disp, fake_clock, f, &err), TM_OK);
    f->now = DAY0 + 4 * 3600; /* 04:00: first sight */
    assert_int_equal(tick(s), 0);
    f->now = DAY0 + 5 * 3600 + 1;
    assert_int_equal(tick(s), 1);
    assert_int_equal(tick(s), 0);
    Tidemark__Task *d = NULL;
    assert_int_equal(open_drills(f, "pg", &d), 1);
    assert_string_equal(d->agent_id, "ag-2");
    assert_string_equal(d->requested_by, "schedule");
    assert_non_null(d->drill);
    assert_int_equal(d->drill->n_checks, 1);
    assert_string_equal(d->drill->checks[0], "SELECT true");
    assert_string_equal(d->drill->dir, "/srv/drills");
    assert_int_equal(d->drill->rto_goal_s, 1800);
    assert_int_equal(d->drill->rpo_goal_s, 60);

    /* On demand while it is queued: refused. */
    Tidemark__Task *t2 = NULL;
    assert_int_equal(
        tm_drills_submit(&f->conf, f->cat, f->disp, "pg", "ag-1", NULL, "admin", &t2, &err),
        TM_EBUSY);
    assert_non_null(strstr(err.msg, "already queued"));
    /* Next day, still queued: the scheduler does not add a second one. */
    f->now += 86400;
    tick(s);
    assert_int_equal(open_drills(f, "pg", NULL), 1);

    /* The drill finishes: a drills row with the agent's figures. */
    Tidemark__DrillResult dr = TIDEMARK__DRILL_RESULT__INIT;
    dr.backup_id = "20261124T030000Z-full";
    dr.has_rto_ms = dr.has_rpo_ms = 1;
    dr.rto_ms = 4200;
    dr.rpo_ms = 1500;
    Tidemark__TaskResult tr = TIDEMARK__TASK_RESULT__INIT;
    tr.drill = &dr;
    d->result = &tr;
    d->state = TIDEMARK__TASK_STATE__TASK_SUCCEEDED;
    assert_int_equal(tm_drills_record(f->cat, d, &err), TM_OK);
    d->result = NULL;
    Tidemark__DrillInfo **rows = NULL;
    size_t n = 0;
    assert_int_equal(tm_catalog_drill_list(f->cat, "pg", 0, &rows, &n, &err), TM_OK);
    assert_int_equal(n, 1);
    assert_true(rows[0]->ok);
    assert_int_equal(rows[0]->rto_ms, 4200);
    assert_int_equal(rows[0]->rpo_ms, 1500);
    assert_int_equal(rows[0]->rto_goal_s, 1800);
    assert_string_equal(rows[0]->agent_id, "ag-2");
    assert_string_equal(rows[0]->backup_id, "20261124T030000Z-full");
    tm_catalog_drills_free(rows, n);
    assert_int_equal(tm_catalog_drill_latest(f->cat, &rows, &n, &err), TM_OK);
    assert_int_equal(n, 1);
    tm_catalog_drills_free(rows, n);
    tm_drill_success *succ = NULL;
    int64_t ok_total = 0, failed_total = 0;
    assert_int_equal(tm_catalog_drill_stats(f->cat, &succ, &n, &ok_total, &failed_total, &err),
                     TM_OK);
    assert_int_equal(n, 1);
    assert_string_equal(succ[0].target, "pg");
    assert_int_equal(ok_total, 1);
    assert_int_equal(failed_total, 0);
    free(succ);
    tidemark__task__free_unpacked(d, NULL);
    tm_scheduler_free(s);
}

/* Open backup tasks of target of one type (none cancelled). */
static size_t open_of_type(fixture *f, const char *target, int type)
{
    Tidemark__Task **t = NULL;
    size_t n = 0, k = 0;
    tm_err err;
    assert_int_equal(tm_catalog_task_list(f->cat, target, 1, 0, &t, &n, &err), TM_OK);
    for (size_t i = 0; i < n; i++) {
        k += t[i]->kind == TIDEMARK__TASK_KIND__BACKUP && (int)t[i]->backup_type == type;
    }
    tm_catalog_tasks_free(t, n);
    return k;
}

/* A policy for any kind: its full schedule applies to the kinds that take
 * full backups only (a redis target gets no full job, which could never
 * run and would only fire backup_late), and a kind that takes snapshots
 * gets its own default snapshot schedule (redis: every 6 hours) unless the
 * policy says schedule.snapshot. */
static void test_kind_takes_what_it_can(void **state)
{
    fixture *f = *state;
    f->policy.match_kind = NULL;
    f->policy.n_labels = 0;
    tm_err err;
    tm_scheduler *s = NULL;
    assert_int_equal(tm_scheduler_new(&s, &f->conf, f->cat, f->disp, fake_clock, f, &err), TM_OK);
    f->now = DAY0 + 2 * 3600;
    tick(s);
    f->now = DAY0 + 3 * 3600 + 1; /* 03:00: the policy's full */
    tick(s);
    assert_int_equal(open_of_type(f, "pg", TIDEMARK__BACKUP_TYPE__FULL), 1);
    assert_int_equal(open_of_type(f, "cache", TIDEMARK__BACKUP_TYPE__FULL), 0);
    assert_int_equal(open_of_type(f, "cache", TIDEMARK__BACKUP_TYPE__SNAPSHOT), 0);
    f->now = DAY0 + 6 * 3600 + 1; /* 06:00: redis' default snapshot */
    tick(s);
    assert_int_equal(open_of_type(f, "cache", TIDEMARK__BACKUP_TYPE__SNAPSHOT), 1);
    assert_int_equal(open_of_type(f, "pg", TIDEMARK__BACKUP_TYPE__SNAPSHOT), 0);
    tm_scheduler_free(s);

    /* schedule.snapshot: "" in the file: no snapshots, not the default. */
    open_tasks(f, "pg", 1);
    f->policy.snapshot_given = true;
    assert_int_equal(tm_scheduler_new(&s, &f->conf, f->cat, f->disp, fake_clock, f, &err), TM_OK);
    f->now = DAY0 + 11 * 3600;
    tick(s);
    f->now = DAY0 + 12 * 3600 + 1;
    tick(s);
    assert_int_equal(open_of_type(f, "cache", TIDEMARK__BACKUP_TYPE__SNAPSHOT),
                     1); /* the old one */
    tm_scheduler_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fires_once_and_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_cron_names_its_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repository_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drill_schedule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kind_takes_what_it_can, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
