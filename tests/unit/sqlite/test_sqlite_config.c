/*
 * test_sqlite_config.c - agent.yaml `targets[].sqlite`: the engine's block
 * (agent/engines/sqlite/config.c): defaults, every key, a relative path
 * made absolute, and each error with its file:line:column (no path, a
 * glob, out of range values).
 */
#include "../config/config_test.h"

#include "agent/engines/sqlite/config.h"

#define F AGENT_NAME

static int setup(void **state)
{
    (void)state;
    test_env_setup();
    static const tm_target_schema *const schemas[] = {&tm_sqlite_target_schema};
    return tm_config_set_target_schemas(schemas, 1);
}

/* MIN_AGENT is 3 lines: "targets:" is 4, "- name" 5, kind 6, sqlite 7. */
#define SQ(extra)                                                                                  \
    MIN_AGENT "targets:\n"                                                                         \
              "  - name: app\n"                                                                    \
              "    kind: sqlite\n"                                                                 \
              "    sqlite:\n" extra

static void test_defaults_and_keys(void **state)
{
    (void)state;
    /* No block: listed, nothing to ship (no path). */
    tm_agent_conf *nb = agent_ok(MIN_AGENT "targets:\n  - name: app\n    kind: sqlite\n");
    assert_non_null(tm_sqlite_target(&nb->targets[0]));
    assert_null(tm_sqlite_target(&nb->targets[0])->path);
    tm_agent_conf_free(nb);
    tm_agent_conf *c = agent_ok(SQ("      path: /var/lib/app/app.db\n"));
    const tm_sqlite_target_conf *s = tm_sqlite_target(&c->targets[0]);
    assert_non_null(s);
    assert_string_equal(s->path, "/var/lib/app/app.db");
    assert_false(s->set_wal);
    assert_int_equal(s->ship_interval_ms, 1000);
    assert_int_equal(s->checkpoint_frames, 1000);
    assert_int_equal(s->truncate_bytes, 64u << 20);
    assert_int_equal(s->busy_timeout_ms, 5000);
    tm_agent_conf_free(c);

    c = agent_ok(SQ("      path: data/app.db\n"
                    "      set_wal: true\n"
                    "      ship_interval: 250ms\n"
                    "      checkpoint_frames: 500\n"
                    "      truncate_size: 16MiB\n"
                    "      busy_timeout: 2s\n"));
    s = tm_sqlite_target(&c->targets[0]);
    assert_string_equal(s->path, TEST_DIR "/data/app.db");
    assert_true(s->set_wal);
    assert_int_equal(s->ship_interval_ms, 250);
    assert_int_equal(s->checkpoint_frames, 500);
    assert_int_equal(s->truncate_bytes, 16u << 20);
    assert_int_equal(s->busy_timeout_ms, 2000);
    tm_agent_conf_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    agent_fails(SQ("      set_wal: true\n"), F ":", "expected the database file");
    agent_fails(SQ("      path: /data/*.db\n"), F ":8:", "glob");
    agent_fails(SQ("      path: /a.db\n      ship_interval: 10ms\n"), F ":9:", "ship_interval");
    agent_fails(SQ("      path: /a.db\n      checkpoint_frames: 1\n"),
                F ":9:", "checkpoint_frames");
    agent_fails(SQ("      path: /a.db\n      nope: 1\n"), F ":", "nope");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_keys),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
