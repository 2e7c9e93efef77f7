/*
 * test_config_postgres.c - agent.yaml `targets[].postgres`: defaults, every
 * key, secrets, ranges, unknown keys, and the block refused on other kinds.
 * The block is the engine's schema (agent/engines/postgres/config.c),
 * registered the way the agent registers it (agent/engine.c).
 */
#include "config_test.h"

#include "agent/engine.h"
#include "agent/engines/postgres/config.h"

#define F AGENT_NAME

static int setup(void **state)
{
    (void)state;
    test_env_setup();
    setenv("TM_TEST_PGPASS", "pg-secret\n", 1);
    tm_engine_config_init();
    return 0;
}

/* MIN_AGENT is 3 lines: "targets:" is 4, "- name" 5, kind 6, postgres 7. */
#define PG(extra)                                                                                  \
    MIN_AGENT "targets:\n"                                                                         \
              "  - name: pg-main\n"                                                                \
              "    kind: postgres\n"                                                               \
              "    postgres:\n" extra

static void test_defaults(void **state)
{
    (void)state;
    /* No postgres: block at all (a target the agent only announces). */
    tm_agent_conf *c = agent_ok(MIN_AGENT "targets:\n  - name: pg\n    kind: postgres\n");
    assert_int_equal(c->n_targets, 1);
    assert_null(tm_pg_target(&c->targets[0])); /* libpq's defaults apply */
    tm_agent_conf_free(c);

    c = agent_ok(PG("      pgdata: /var/lib/postgresql/15/main\n"));
    const tm_pg_target_conf *pg = tm_pg_target(&c->targets[0]);
    assert_non_null(pg);
    assert_string_equal(pg->pgdata, "/var/lib/postgresql/15/main");
    assert_null(pg->host);
    assert_int_equal(pg->port, 5432);
    assert_string_equal(pg->user, "postgres");
    assert_string_equal(pg->database, "postgres");
    assert_null(pg->password);
    assert_null(pg->bindir);
    assert_true(pg->checksum_validation);
    assert_int_equal(pg->parallel, 2);
    tm_agent_conf_free(c);
}

static void test_all_keys(void **state)
{
    (void)state;
    tm_agent_conf *c = agent_ok(PG("      pgdata: /data/pg\n"
                                   "      host: 127.0.0.1\n"
                                   "      port: 5433\n"
                                   "      user: backup\n"
                                   "      database: app\n"
                                   "      password: env:TM_TEST_PGPASS\n"
                                   "      bindir: pgbin\n"
                                   "      checksum_validation: false\n"
                                   "      parallel: 8\n"));
    const tm_pg_target_conf *pg = tm_pg_target(&c->targets[0]);
    assert_non_null(pg);
    assert_string_equal(pg->host, "127.0.0.1");
    assert_int_equal(pg->port, 5433);
    assert_string_equal(pg->user, "backup");
    assert_string_equal(pg->database, "app");
    assert_string_equal(pg->password, "pg-secret");
    assert_string_equal(pg->bindir, TEST_DIR "/pgbin");
    assert_false(pg->checksum_validation);
    assert_int_equal(pg->parallel, 8);
    tm_agent_conf_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    agent_fails(PG("      pgdata: data\n"),
                F ":8:15: targets[0].postgres.pgdata: ", "not an absolute path");
    agent_fails(PG("      port: 70000\n"),
                F ":8:13: targets[0].postgres.port: ", "expected 1 .. 65535");
    agent_fails(PG("      parallel: 0\n"),
                F ":8:17: targets[0].postgres.parallel: ", "expected 1 .. 64");
    agent_fails(PG("      colour: red\n"), F ":8:7: targets[0].postgres.colour", "unknown");
    agent_fails(PG("      password: hunter2\n"),
                F ":8:17: targets[0].postgres.password: ", "inline secrets are not allowed");
    agent_fails(PG("      password: env:TM_TEST_PGPASS\n      password_file: /p\n"),
                F ":9:7: targets[0].postgres.password_file: ", "exactly one");
    agent_fails(PG("      user: 'a b'\n"), F ":8:13: targets[0].postgres.user: ", "without spaces");
    agent_fails(MIN_AGENT "targets:\n  - name: r\n    kind: redis\n    postgres:\n"
                          "      pgdata: /x\n",
                F ":7:5: targets[0].postgres", "kind: postgres");
    /* The secret never appears in a message. */
    agent_fails_hiding(PG("      password: hunter2\n"), "hunter2");
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
