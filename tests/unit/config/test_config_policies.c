/*
 * test_config_policies.c - coordinator.yaml `policies:`, `scheduler:` and
 * `alerts:`: defaults, ranges, cron errors with their line, sink secrets,
 * and first-match policy selection.
 */
#include "config_test.h"

#include "coordinator/cron.h"
#include "coordinator/policy.h"

#define F COORD_NAME

static int check_cron(const char *expr, tm_err *err)
{
    tm_cron *c = NULL;
    int rc = tm_cron_parse(expr, &c, err);
    tm_cron_free(c);
    return rc;
}

static int setup(void **state)
{
    (void)state;
    test_env_setup();
    setenv("TM_TEST_SLACK", "https://hooks.example/T000/SECRETTOKEN\n", 1);
    tm_config_set_cron_check(check_cron);
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    tm_coordinator_conf *c = coord_ok(MIN_COORD "policies:\n  - name: all\n");
    assert_int_equal(c->n_policies, 1);
    const tm_policy_conf *p = &c->policies[0];
    assert_string_equal(p->full, "0 3 * * *");
    assert_string_equal(p->incremental, "@hourly");
    assert_int_equal(p->jitter_s, 600);
    assert_int_equal(p->retention.keep_daily, 7);
    assert_int_equal(p->retention.keep_weekly, 4);
    assert_int_equal(p->retention.keep_monthly, 12);
    assert_int_equal(p->retention.keep_yearly, 7);
    assert_int_equal(p->retention.min_count, 1);
    assert_int_equal(p->retention.keep_failed, 3);
    assert_int_equal(p->retention.pitr_window_s, 7 * 86400);
    assert_string_equal(p->retention.apply, "@hourly");
    assert_int_equal(p->rpo_goal_s, 900);
    assert_int_equal(p->backup_max_age_s, 26 * 3600);
    assert_null(p->match_kind);
    assert_int_equal(c->sched_max_per_agent, 2);
    assert_int_equal(c->sched_max_per_repo, 4);
    assert_false(c->sched_paused);
    assert_int_equal(c->alerts_evaluate_ms, 30000);
    assert_int_equal(c->alerts_repeat_ms, 4 * 3600000);
    assert_int_equal(c->n_sinks, 0);
    tm_coordinator_conf_free(c);
}

static void test_full_and_match(void **state)
{
    (void)state;
    tm_coordinator_conf *c = coord_ok(MIN_COORD "policies:\n"
                                                "  - name: prod-pg\n"
                                                "    match:\n"
                                                "      kind: postgres\n"
                                                "      labels:\n"
                                                "        env: prod\n"
                                                "    schedule:\n"
                                                "      full: \"*/5 * * * *\"\n"
                                                "      incremental: \"\"\n"
                                                "      jitter: 0s\n"
                                                "    retention:\n"
                                                "      keep_daily: 3\n"
                                                "      pitr_window: 2d\n"
                                                "      apply: \"\"\n"
                                                "    rpo_goal: 5m\n"
                                                "    backup_max_age: 2h\n"
                                                "  - name: rest\n"
                                                "scheduler:\n"
                                                "  max_tasks_per_agent: 1\n"
                                                "  paused: true\n"
                                                "alerts:\n"
                                                "  evaluate_every: 1s\n"
                                                "  sinks:\n"
                                                "    - name: am\n"
                                                "      kind: alertmanager\n"
                                                "      url: http://127.0.0.1:9093\n"
                                                "      send_resolved: false\n"
                                                "    - name: slack\n"
                                                "      kind: slack\n"
                                                "      url: env:TM_TEST_SLACK\n"
                                                "      min_severity: critical\n");
    assert_int_equal(c->n_policies, 2);
    assert_null(c->policies[0].incremental);
    assert_int_equal(c->policies[0].retention.pitr_window_s, 2 * 86400);
    assert_null(c->policies[0].retention.apply); /* "": manual only */
    assert_int_equal(c->policies[0].rpo_goal_s, 300);
    assert_true(c->sched_paused);
    assert_int_equal(c->sched_max_per_agent, 1);
    assert_int_equal(c->alerts_evaluate_ms, 1000);
    assert_int_equal(c->n_sinks, 2);
    assert_false(c->sinks[0].send_resolved);
    assert_true(c->sinks[1].send_resolved);
    assert_string_equal(c->sinks[1].url, "https://hooks.example/T000/SECRETTOKEN");

    tm_label prod[] = {{"env", "prod"}, {"role", "db"}};
    tm_label dev[] = {{"env", "dev"}};
    assert_ptr_equal(tm_policy_match(c, 1, prod, 2), &c->policies[0]); /* postgres */
    assert_ptr_equal(tm_policy_match(c, 1, dev, 1), &c->policies[1]);  /* labels differ */
    assert_ptr_equal(tm_policy_match(c, 2, prod, 2), &c->policies[1]); /* redis */
    tm_retention_policy rp;
    tm_policy_retention(&c->policies[0], &rp);
    assert_int_equal(rp.keep_daily, 3);
    assert_int_equal(rp.pitr_window_s, 2 * 86400);
    tm_coordinator_conf_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    coord_fails(MIN_COORD "policies:\n  - name: a\n    schedule:\n      full: \"0 25 * * *\"\n",
                F ":8:13: policies[0].schedule.full: ", "hour");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    schedule:\n      jitter: 5x\n",
                F ":8:15: policies[0].schedule.jitter: ", "not valid");
    coord_fails(MIN_COORD "policies:\n  - name: a\n  - name: a\n",
                F ":7:11: policies[1].name: ", "duplicate");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    match:\n      kind: mysql\n",
                F ":8:13: policies[0].match.kind: ", "not a target kind");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    retention:\n      keep_daily: -2\n",
                F ":8:19: policies[0].retention.keep_daily: ", "out of range");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    retention:\n      apply: \"61 * * * *\"\n",
                F ":8:14: policies[0].retention.apply: ", "minute");
    coord_fails(MIN_COORD "alerts:\n  evaluate_every: 10m\n",
                F ":6:19: alerts.evaluate_every: ", "1s .. 5m");
    coord_fails(MIN_COORD "alerts:\n  sinks:\n    - name: x\n      kind: pager\n",
                F ":8:13: alerts.sinks[0].kind: ", "webhook, alertmanager or slack");
    coord_fails(MIN_COORD "alerts:\n  sinks:\n    - name: x\n      kind: slack\n",
                F ":7:7: alerts.sinks[0].url: ", "required secret");
    coord_fails(MIN_COORD "scheduler:\n  max_tasks_per_agent: -1\n",
                F ":6:24: scheduler.max_tasks_per_agent: ", "out of range");
}

/* policies[].drill: defaults (monthly, 1h RTO, the policy's RPO goal),
 * explicit values, and errors with their line. */
static void test_drill(void **state)
{
    (void)state;
    tm_coordinator_conf *c = coord_ok(MIN_COORD "policies:\n"
                                                "  - name: a\n"
                                                "    rpo_goal: 2m\n"
                                                "  - name: b\n"
                                                "    drill:\n"
                                                "      schedule: \"*/10 * * * *\"\n"
                                                "      staging_agent: staging-1\n"
                                                "      dir: /srv/drills\n"
                                                "      checks:\n"
                                                "        - SELECT count(*) > 0 FROM orders\n"
                                                "        - SELECT true\n"
                                                "      rto_goal: 20m\n"
                                                "      rpo_goal: 30s\n"
                                                "  - name: off\n"
                                                "    drill:\n"
                                                "      schedule: \"\"\n");
    const tm_policy_drill_conf *a = &c->policies[0].drill;
    assert_string_equal(a->schedule, "0 5 1 * *");
    assert_null(a->staging_agent);
    assert_null(a->dir);
    assert_int_equal(a->n_checks, 0);
    assert_int_equal(a->rto_goal_s, 3600);
    assert_int_equal(a->rpo_goal_s, 120);
    const tm_policy_drill_conf *b = &c->policies[1].drill;
    assert_string_equal(b->schedule, "*/10 * * * *");
    assert_string_equal(b->staging_agent, "staging-1");
    assert_string_equal(b->dir, "/srv/drills");
    assert_int_equal(b->n_checks, 2);
    assert_string_equal(b->checks[0], "SELECT count(*) > 0 FROM orders");
    assert_int_equal(b->rto_goal_s, 1200);
    assert_int_equal(b->rpo_goal_s, 30);
    assert_null(c->policies[2].drill.schedule);
    tm_coordinator_conf_free(c);
    coord_fails(MIN_COORD "policies:\n  - name: a\n    drill:\n      schedule: \"0 5 32 * *\"\n",
                F ":8:17: policies[0].drill.schedule: ", NULL);
    coord_fails(MIN_COORD "policies:\n  - name: a\n    drill:\n      dir: drills\n",
                F ":8:12: policies[0].drill.dir: ", "absolute");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    drill:\n      checks:\n        - \"\"\n",
                F ":9:11: policies[0].drill.checks[0]: ", "empty check");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    drill:\n      rto_goal: 2y\n",
                F ":8:17: policies[0].drill.rto_goal: ", NULL);
    coord_fails(MIN_COORD "policies:\n  - name: a\n    drill:\n      staging: x\n",
                F ":8:7: ", "staging");
}

static void test_replication(void **state)
{
    (void)state;
    tm_coordinator_conf *c = coord_ok(MIN_COORD "policies:\n"
                                                "  - name: a\n"
                                                "    replication:\n"
                                                "      min_regions: 2\n"
                                                "  - name: b\n"
                                                "    replication:\n"
                                                "      repositories: [eu, us]\n"
                                                "      check: \"*/5 * * * *\"\n"
                                                "      lag_threshold: 10m\n"
                                                "  - name: c\n");
    const tm_policy_conf *a = &c->policies[0], *b = &c->policies[1];
    assert_true(a->has_replication);
    assert_int_equal(a->repl_min_regions, 2);
    assert_int_equal(a->n_repl_repositories, 0);
    assert_string_equal(a->repl_check, "*/30 * * * *");
    assert_int_equal(a->repl_lag_max_s, 3600);
    assert_true(b->has_replication);
    assert_int_equal(b->n_repl_repositories, 2);
    assert_string_equal(b->repl_repositories[1], "us");
    assert_string_equal(b->repl_check, "*/5 * * * *");
    assert_int_equal(b->repl_lag_max_s, 600);
    assert_int_equal(b->repl_min_regions, 0);
    assert_false(c->policies[2].has_replication);
    tm_coordinator_conf_free(c);

    coord_fails(MIN_COORD "policies:\n  - name: a\n    replication:\n      check: \"61 * * * *\"\n",
                F ":8:14: policies[0].replication.check: ", "minute");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    replication:\n      min_regions: 65\n",
                F ":8:20: policies[0].replication.min_regions: ", "0 .. 64");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    replication:\n      lag_threshold: 5x\n",
                F ":8:22: policies[0].replication.lag_threshold: ", "not valid");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    replication:\n"
                          "      repositories:\n        - eu\n        - eu\n",
                F ":10:11: policies[0].replication.repositories[1]: ", "listed twice");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    replication:\n"
                          "      repositories:\n        - \"e u\"\n",
                F ":9:11: policies[0].replication.repositories[0]: ", "not a valid name");
    coord_fails(MIN_COORD "policies:\n  - name: a\n    replication:\n      regions: 2\n",
                F ":8:7: ", "regions");
}

/* A URL is a secret: an error about it never shows it. */
/* schedule.snapshot follows the kind table (common/engine_kinds.c): the
 * kind's default schedule, and refused for a kind without snapshots. */
static void test_snapshot(void **state)
{
    (void)state;
    tm_coordinator_conf *c = coord_ok(MIN_COORD "policies:\n"
                                                "  - name: cache\n"
                                                "    match:\n"
                                                "      kind: redis\n"
                                                "  - name: cache-hourly\n"
                                                "    match:\n"
                                                "      kind: redis\n"
                                                "    schedule:\n"
                                                "      snapshot: '@hourly'\n"
                                                "  - name: cache-none\n"
                                                "    match:\n"
                                                "      kind: redis\n"
                                                "    schedule:\n"
                                                "      snapshot: ''\n"
                                                "  - name: db\n"
                                                "    match:\n"
                                                "      kind: postgres\n"
                                                "  - name: any\n");
    assert_int_equal(c->n_policies, 5);
    assert_string_equal(c->policies[0].snapshot, "0 */6 * * *");
    assert_non_null(strstr(c->policies[0].snapshot_where, "policies[0].schedule.snapshot"));
    assert_string_equal(c->policies[1].snapshot, "@hourly");
    assert_null(c->policies[2].snapshot);
    assert_null(c->policies[3].snapshot);
    assert_null(c->policies[4].snapshot);
    tm_coordinator_conf_free(c);
    coord_fails(MIN_COORD "policies:\n"
                          "  - name: db\n"
                          "    match:\n"
                          "      kind: postgres\n"
                          "    schedule:\n"
                          "      snapshot: '@hourly'\n",
                F ":10:17: policies[0].schedule.snapshot: ",
                "postgres targets have no snapshots (their full backup is one)");
    coord_fails(MIN_COORD "policies:\n"
                          "  - name: c\n"
                          "    match:\n"
                          "      kind: redis\n"
                          "    schedule:\n"
                          "      snapshot: 'every day'\n",
                F ":10:17: policies[0].schedule.snapshot: ", NULL);
    coord_fails(
        MIN_COORD "policies:\n  - name: m\n    match:\n      kind: mysql\n",
        F ":8:13: policies[0].match.kind: ", "expected postgres, redis, sqlite, turso or pg_dump");
}

static void test_url_not_echoed(void **state)
{
    (void)state;
    setenv("TM_TEST_BADURL", "ftp://hooks.example/SECRETTOKEN", 1);
    const char *yaml = MIN_COORD "alerts:\n  sinks:\n    - name: x\n      kind: webhook\n"
                                 "      url: env:TM_TEST_BADURL\n";
    tm_coordinator_conf *c = NULL;
    tm_err err;
    tm_err_clear(&err);
    int rc = tm_coordinator_conf_parse(COORD_NAME, yaml, strlen(yaml), &c, &err);
    check_msg(rc, &err, F ":9:12: alerts.sinks[0].url: ", "http", "SECRETTOKEN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), cmocka_unit_test(test_full_and_match),
        cmocka_unit_test(test_errors),   cmocka_unit_test(test_url_not_echoed),
        cmocka_unit_test(test_drill),    cmocka_unit_test(test_replication),
        cmocka_unit_test(test_snapshot),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
