/*
 * test_restore_cmd.c - `tidemark-agent restore` finds the engine and hands
 * it the command line (agent/restore_cmd.c), with a test engine beside the
 * real ones: the configured target's kind, --engine (removed from argv), the
 * engine's own name for --dir for a target the agent does not serve, and a
 * usage error (its engine never called) when none of them says which.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/engine.h"
#include "agent/restore_cmd.h"

static char dir[256], conf_path[300];
static int calls;
static char seen[512]; /* the argv the engine got, joined by spaces */

static int test_restore_cli(const tm_agent_conf *conf, int argc, char **argv)
{
    assert_non_null(conf);
    calls++;
    seen[0] = '\0';
    for (int i = 0; i < argc; i++) {
        strncat(seen, i ? " " : "", sizeof(seen) - strlen(seen) - 1);
        strncat(seen, argv[i], sizeof(seen) - strlen(seen) - 1);
    }
    return 42;
}

static const tm_engine test_engine = {
    .kind = TIDEMARK__TARGET_KIND__SQLITE, /* stands in for that kind's engine */
    .name = "seamtest",
    .restore_cli = test_restore_cli,
    .restore_usage = "  --seamdir DIR\n",
    .restore_dir_alias = "--seamdir",
};

static int run(const char *line)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", line);
    char *argv[32];
    int argc = 0;
    for (char *t = strtok(buf, " "); t != NULL && argc < 31; t = strtok(NULL, " ")) {
        argv[argc++] = t;
    }
    argv[argc] = NULL;
    calls = 0;
    seen[0] = '\0';
    return tm_restore_cmd(conf_path, argc, argv);
}

static int setup(void **state)
{
    (void)state;
    setenv("TM_T", "x", 1);
    snprintf(dir, sizeof(dir), "/tmp/tm-restore-cmd-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(conf_path, sizeof(conf_path), "%s/agent.yaml", dir);
    FILE *f = fopen(conf_path, "w");
    assert_non_null(f);
    fprintf(f,
            "coordinator:\n  url: tcp://127.0.0.1:7800\n  enrollment_token: env:TM_T\n"
            "state_dir: %s/state\n"
            "targets:\n"
            "  - name: mine\n    kind: sqlite\n",
            dir);
    fclose(f);
    tm_engine_add_for_test(&test_engine);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tm_engine_add_for_test(NULL);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static void test_configured_target_picks_its_kind(void **state)
{
    (void)state;
    assert_int_equal(run("restore --target mine --dir /r --backup B"), 42);
    assert_int_equal(calls, 1);
    assert_string_equal(seen, "restore --target mine --dir /r --backup B");
}

static void test_engine_option_picks_and_is_removed(void **state)
{
    (void)state;
    assert_int_equal(run("restore --engine seamtest --target other --dir /r"), 42);
    assert_string_equal(seen, "restore --target other --dir /r");
    assert_int_equal(run("restore --target other --engine=seamtest --dir /r"), 42);
    assert_string_equal(seen, "restore --target other --dir /r");
    /* An engine that does not exist: usage error, nothing run. */
    assert_int_equal(run("restore --engine nosuch --target other --dir /r"), 2);
    assert_int_equal(calls, 0);
}

static void test_dir_alias_picks_for_unserved_target(void **state)
{
    (void)state;
    assert_int_equal(run("restore --target other --seamdir /r"), 42);
    assert_string_equal(seen, "restore --target other --seamdir /r");
}

static void test_ambiguous_is_a_usage_error(void **state)
{
    (void)state;
    /* Two engines restore (the first engine and the test one): an
     * unserved target with the neutral --dir does not say which. */
    assert_int_equal(run("restore --target other --dir /r"), 2);
    assert_int_equal(calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configured_target_picks_its_kind),
        cmocka_unit_test(test_engine_option_picks_and_is_removed),
        cmocka_unit_test(test_dir_alias_picks_for_unserved_target),
        cmocka_unit_test(test_ambiguous_is_a_usage_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
