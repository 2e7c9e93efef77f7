/*
 * test_restore_config.c - agent.yaml restore_roots: (where restore and
 * drill tasks may write): the default, relative entries, refused entries
 * with file:line:col, and the offline load used by wal-get under the
 * minimal environment of a restored server.
 */
#include "unit/config/config_test.h"

#define F AGENT_NAME

static void test_default_is_the_drill_dir(void **state)
{
    (void)state;
    test_env_setup();
    tm_agent_conf *c = agent_ok(MIN_AGENT);
    assert_int_equal(c->n_restore_roots, 1);
    assert_string_equal(c->restore_roots[0], TEST_DIR "/state/drills");
    tm_agent_conf_free(c);
    c = agent_ok(MIN_AGENT "state_dir: /var/lib/tidemark\n");
    assert_string_equal(c->restore_roots[0], "/var/lib/tidemark/drills");
    tm_agent_conf_free(c);
}

static void test_list(void **state)
{
    (void)state;
    test_env_setup();
    tm_agent_conf *c = agent_ok(MIN_AGENT "restore_roots:\n  - /srv/restores\n  - scratch\n");
    assert_int_equal(c->n_restore_roots, 2);
    assert_string_equal(c->restore_roots[0], "/srv/restores");
    assert_string_equal(c->restore_roots[1], TEST_DIR "/scratch");
    tm_agent_conf_free(c);
}

static void test_refused(void **state)
{
    (void)state;
    test_env_setup();
    agent_fails(MIN_AGENT "restore_roots:\n  - /srv/../etc\n",
                F ":5:5: restore_roots[0]: ", "'..'");
    agent_fails(MIN_AGENT "restore_roots:\n  - /srv/a\n  - /\n",
                F ":6:5: restore_roots[1]: ", "not /");
    agent_fails(MIN_AGENT "restore_roots:\n  - \"\"\n", F ":5:5: restore_roots[0]: ", "empty path");
    agent_fails(MIN_AGENT "restore_roots: /srv\n", F ":4:", NULL);
}

static void test_offline_load(void **state)
{
    (void)state;
    test_env_setup();
    const char *y = "coordinator:\n  url: tcp://h:1\n  enrollment_token: env:TM_TEST_UNSET\n";
    tm_agent_conf *c = NULL;
    tm_err err = {0};
    assert_int_equal(tm_agent_conf_parse(F, y, strlen(y), &c, &err), TM_ECONFIG);
    tm_config_agent_offline(true);
    assert_int_equal(tm_agent_conf_parse(F, y, strlen(y), &c, &err), 0);
    assert_null(c->enrollment_token);
    tm_agent_conf_free(c);
    /* A token file the operator cannot read (repo ls, a local restore). */
    const char *f = "coordinator:\n  url: tcp://h:1\n"
                    "  enrollment_token_file: /nonexistent/tidemark/enroll.token\n";
    assert_int_equal(tm_agent_conf_parse(F, f, strlen(f), &c, &err), 0);
    assert_null(c->enrollment_token);
    tm_agent_conf_free(c);
    tm_config_agent_offline(false);
    assert_int_equal(tm_agent_conf_parse(F, f, strlen(f), &c, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "enroll.token"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_is_the_drill_dir),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_offline_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
