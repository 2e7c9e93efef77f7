/*
 * test_config_pg_dump.c - agent.yaml `targets[].pg_dump` (managed
 * PostgreSQL by pg_dump): defaults, every key, the staging server and what
 * it inherits, secrets, ranges, unknown keys, file:line errors, and the
 * block refused on other kinds (agent/engines/pg_dump/config.c).
 */
#include "config_test.h"

#include "agent/engine.h"
#include "agent/engines/pg_dump/config.h"

#define F AGENT_NAME

static int setup(void **state)
{
    (void)state;
    test_env_setup();
    setenv("TM_TEST_DUMPPASS", "dump-secret\n", 1);
    setenv("TM_TEST_STAGEPASS", "stage-secret\n", 1);
    tm_engine_config_init();
    return 0;
}

/* MIN_AGENT is 3 lines: "targets:" is 4, "- name" 5, kind 6, pg_dump 7. */
#define PD(extra)                                                                                  \
    MIN_AGENT "targets:\n"                                                                         \
              "  - name: rds-main\n"                                                               \
              "    kind: pg_dump\n"                                                                \
              "    pg_dump:\n" extra

static void test_defaults(void **state)
{
    (void)state;
    tm_agent_conf *c = agent_ok(MIN_AGENT "targets:\n  - name: rds\n    kind: pg_dump\n");
    const tm_dump_target_conf *d = tm_dump_target(&c->targets[0]);
    assert_non_null(d);
    assert_string_equal(d->server.host, "127.0.0.1");
    assert_int_equal(d->server.port, 5432);
    assert_string_equal(d->server.user, "postgres");
    assert_null(d->server.password);
    assert_string_equal(d->server.sslmode, "prefer");
    assert_string_equal(d->database, "postgres");
    assert_int_equal(d->n_databases, 0); /* every non-template database */
    assert_null(d->bindir);              /* found with pg_config at run time */
    assert_int_equal(d->compress, 1);
    assert_int_equal(d->jobs, 2);
    assert_null(d->staging.host);
    tm_agent_conf_free(c);
}

static void test_all_keys(void **state)
{
    (void)state;
    tm_agent_conf *c = agent_ok(PD("      host: db.example.rds.amazonaws.com\n"
                                   "      port: 5433\n"
                                   "      user: backup\n"
                                   "      password: env:TM_TEST_DUMPPASS\n"
                                   "      sslmode: verify-full\n"
                                   "      database: app\n"
                                   "      databases: [app, 'odd name']\n"
                                   "      bindir: pgbin\n"
                                   "      compress: 6\n"
                                   "      jobs: 4\n"
                                   "      staging_host: staging.internal\n"));
    const tm_dump_target_conf *d = tm_dump_target(&c->targets[0]);
    assert_non_null(d);
    assert_string_equal(d->server.host, "db.example.rds.amazonaws.com");
    assert_int_equal(d->server.port, 5433);
    assert_string_equal(d->server.user, "backup");
    assert_string_equal(d->server.password, "dump-secret");
    assert_string_equal(d->server.sslmode, "verify-full");
    assert_string_equal(d->database, "app");
    assert_int_equal(d->n_databases, 2);
    assert_string_equal(d->databases[1], "odd name");
    assert_string_equal(d->bindir, TEST_DIR "/pgbin");
    assert_int_equal(d->compress, 6);
    assert_int_equal(d->jobs, 4);
    /* The staging server inherits port, user, password and sslmode. */
    assert_string_equal(d->staging.host, "staging.internal");
    assert_int_equal(d->staging.port, 5433);
    assert_string_equal(d->staging.user, "backup");
    assert_string_equal(d->staging.password, "dump-secret");
    assert_string_equal(d->staging.sslmode, "verify-full");
    tm_agent_conf_free(c);

    c = agent_ok(PD("      password: env:TM_TEST_DUMPPASS\n"
                    "      staging_host: 10.0.0.9\n"
                    "      staging_port: 6543\n"
                    "      staging_user: drill\n"
                    "      staging_password: env:TM_TEST_STAGEPASS\n"));
    d = tm_dump_target(&c->targets[0]);
    assert_int_equal(d->staging.port, 6543);
    assert_string_equal(d->staging.user, "drill");
    assert_string_equal(d->staging.password, "stage-secret");
    tm_agent_conf_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    agent_fails(PD("      port: 70000\n"),
                F ":8:13: targets[0].pg_dump.port: ", "expected 1 .. 65535");
    agent_fails(PD("      sslmode: maybe\n"), F ":8:16: targets[0].pg_dump.sslmode: ",
                "expected disable, allow, prefer, require, verify-ca or verify-full");
    agent_fails(PD("      jobs: 0\n"), F ":8:13: targets[0].pg_dump.jobs: ", "expected 1 .. 64");
    agent_fails(PD("      compress: 10\n"),
                F ":8:17: targets[0].pg_dump.compress: ", "expected 0 .. 9");
    agent_fails(PD("      databases: []\n"),
                F ":8:18: targets[0].pg_dump.databases: ", "an empty list");
    agent_fails(PD("      databases: [a, b, a]\n"), F ":8:", "'a' is listed twice");
    agent_fails(PD("      colour: red\n"), F ":8:7: targets[0].pg_dump.colour", "unknown");
    agent_fails(PD("      password: hunter2\n"),
                F ":8:17: targets[0].pg_dump.password: ", "inline secrets are not allowed");
    agent_fails(PD("      staging_user: drill\n"), F ":7:5: targets[0].pg_dump",
                "without staging_host");
    agent_fails(MIN_AGENT "targets:\n  - name: r\n    kind: redis\n    pg_dump:\n"
                          "      host: x\n",
                F ":7:5: targets[0].pg_dump", "kind: pg_dump");
    /* The secret never appears in a message. */
    agent_fails_hiding(PD("      password: hunter2\n"), "hunter2");
    agent_fails_hiding(PD("      staging_host: s\n      staging_password: hunter2\n"), "hunter2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
