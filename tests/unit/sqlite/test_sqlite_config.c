/*
 * test_sqlite_config.c - agent.yaml `targets[].sqlite`: the engine's block
 * (agent/engines/sqlite/config.c): defaults with and without a block, every
 * key with its units, a relative path made absolute, a glob flagged, the
 * block refused on another kind, and each error with its file:line:column.
 */
#include "../config/config_test.h"

#include "agent/engines/redis/config.h"
#include "agent/engines/sqlite/config.h"

#define F AGENT_NAME

static int setup(void **state)
{
    (void)state;
    test_env_setup();
    static const tm_target_schema *const schemas[] = {&tm_redis_target_schema,
                                                      &tm_sqlite_target_schema};
    return tm_config_set_target_schemas(schemas, 2);
}

/* MIN_AGENT is 3 lines: "targets:" is 4, "- name" 5, kind 6, sqlite 7,
 * the block's first key 8. */
#define SQ(extra)                                                                                  \
    MIN_AGENT "targets:\n"                                                                         \
              "  - name: app\n"                                                                    \
              "    kind: sqlite\n"                                                                 \
              "    sqlite:\n" extra

static void check_defaults(const tm_sqlite_target *s)
{
    assert_non_null(s);
    assert_false(s->set_wal);
    assert_int_equal(s->ship_interval_ms, 1000);
    assert_int_equal(s->checkpoint_interval_ms, 60000);
    assert_true(s->wal_max_bytes == 64u << 20);
    assert_int_equal(s->busy_timeout_ms, 5000);
}

static void test_defaults(void **state)
{
    (void)state;
    /* No block: listed (a staging host restores it), no file. */
    tm_agent_conf *c = agent_ok(MIN_AGENT "targets:\n  - name: app\n    kind: sqlite\n");
    const tm_sqlite_target *s = tm_sqlite_target_of(&c->targets[0]);
    check_defaults(s);
    assert_string_equal(s->path, "");
    assert_false(s->glob);
    tm_agent_conf_free(c);

    c = agent_ok(SQ("      path: /var/lib/app/app.db\n"));
    s = tm_sqlite_target_of(&c->targets[0]);
    check_defaults(s);
    assert_string_equal(s->path, "/var/lib/app/app.db");
    assert_false(s->glob);
    tm_agent_conf_free(c);
}

static void test_every_key(void **state)
{
    (void)state;
    tm_agent_conf *c = agent_ok(SQ("      path: data/app.db\n"
                                   "      set_wal: true\n"
                                   "      ship_interval: 250ms\n"
                                   "      checkpoint_interval: 10s\n"
                                   "      wal_max_bytes: 16MiB\n"
                                   "      busy_timeout: 2s\n"));
    const tm_sqlite_target *s = tm_sqlite_target_of(&c->targets[0]);
    assert_non_null(s);
    assert_string_equal(s->path, TEST_DIR "/data/app.db");
    assert_true(s->set_wal);
    assert_int_equal(s->ship_interval_ms, 250);
    assert_int_equal(s->checkpoint_interval_ms, 10000);
    assert_true(s->wal_max_bytes == 16u << 20);
    assert_int_equal(s->busy_timeout_ms, 2000);
    tm_agent_conf_free(c);

    c = agent_ok(SQ("      path: /srv/tenants/*.db\n"));
    s = tm_sqlite_target_of(&c->targets[0]);
    assert_string_equal(s->path, "/srv/tenants/*.db");
    assert_true(s->glob);
    tm_agent_conf_free(c);

    /* Another kind's accessor answers NULL. */
    c = agent_ok(MIN_AGENT "targets:\n  - name: cache\n    kind: redis\n");
    assert_null(tm_sqlite_target_of(&c->targets[0]));
    tm_agent_conf_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    agent_fails(SQ("      set_wal: true\n"), F ":8:", "expected the database file");
    agent_fails(SQ("      path: ''\n"), F ":8:13: targets[0].sqlite.path: ", "empty path");
    agent_fails(SQ("      path: /a.db\n      ship_interval: 10ms\n"),
                F ":9:22: targets[0].sqlite.ship_interval: ", "");
    agent_fails(SQ("      path: /a.db\n      ship_interval: soon\n"),
                F ":9:22: targets[0].sqlite.ship_interval: ", "not valid");
    agent_fails(SQ("      path: /a.db\n      checkpoint_interval: 2d\n"),
                F ":9:28: targets[0].sqlite.checkpoint_interval: ", "");
    agent_fails(SQ("      path: /a.db\n      wal_max_bytes: 1KiB\n"),
                F ":9:22: targets[0].sqlite.wal_max_bytes: ", "");
    agent_fails(SQ("      path: /a.db\n      busy_timeout: 1h\n"),
                F ":9:21: targets[0].sqlite.busy_timeout: ", "");
    agent_fails(SQ("      path: /a.db\n      set_wal: maybe\n"), F ":9:", "set_wal");
    agent_fails(SQ("      path: /a.db\n      nope: 1\n"), F ":9:", "nope");
    /* The block on another kind. */
    agent_fails(MIN_AGENT "targets:\n  - name: c\n    kind: redis\n    sqlite:\n"
                          "      path: /x.db\n",
                F ":7:5: targets[0].sqlite", "a sqlite: block on a target of kind redis");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
