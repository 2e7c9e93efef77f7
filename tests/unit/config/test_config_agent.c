/*
 * test_config_agent.c - agent.yaml: defaults, labels, targets, TLS rules,
 * and the shipped examples in deploy/examples/ (so they never rot).
 */
#include "config_test.h"

#include <unistd.h>

#define F AGENT_NAME

static int setup(void **state)
{
    (void)state;
    test_env_setup();
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    tm_agent_conf *c = agent_ok(MIN_AGENT);
    assert_string_equal(c->path, F);
    assert_string_equal(c->coordinator_url, "tcp://coord.example:7800");
    assert_string_equal(c->enrollment_token, "enroll-secret-value-0123456789abcdef");
    assert_false(c->tls_enabled);
    assert_string_equal(c->state_dir, TEST_DIR "/state");
    char host[256];
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    assert_string_equal(c->hostname, host);
    assert_int_equal(c->n_labels, 0);
    assert_int_equal(c->n_targets, 0);
    assert_int_equal(c->rpc_timeout_ms, 10000);
    assert_int_equal(c->backoff_max_ms, 30000);
    assert_int_equal(c->log_level, TM_LOG_INFO);
    tm_agent_conf_free(c);
}

static void test_full(void **state)
{
    (void)state;
    tm_agent_conf *c = agent_ok("coordinator:\n"
                                "  url: tls+tcp://coord.example:7800\n"
                                "  enrollment_token: env:TM_TEST_ENROLL\n"
                                "  timeout: 2s\n"
                                "  backoff_max: 1m\n"
                                "  tls:\n"
                                "    ca_file: tls/ca.crt\n"
                                "    cert_file: /pki/agent.crt\n"
                                "    key_file: /pki/agent.key\n"
                                "    server_name: coordinator.internal\n"
                                "state_dir: /var/lib/tidemark\n"
                                "hostname: db-1\n"
                                "labels:\n"
                                "  region: eu-west\n"
                                "  app.kubernetes.io/name: \"billing db\"\n"
                                "  tier: 1\n"
                                "targets:\n"
                                "  - name: pg-main\n"
                                "    kind: postgres\n"
                                "    engine_version: \"15\"\n"
                                "  - name: cache_1.b\n"
                                "    kind: redis\n"
                                "  - name: s\n"
                                "    kind: sqlite\n"
                                "  - name: t\n"
                                "    kind: turso\n"
                                "log:\n"
                                "  level: warn\n");
    assert_true(c->tls_enabled);
    assert_string_equal(c->tls.ca_file, TEST_DIR "/tls/ca.crt");
    assert_string_equal(c->tls.cert_file, "/pki/agent.crt");
    assert_string_equal(c->tls.key_file, "/pki/agent.key");
    assert_string_equal(c->tls.server_name, "coordinator.internal");
    assert_int_equal(c->rpc_timeout_ms, 2000);
    assert_int_equal(c->backoff_max_ms, 60000);
    assert_string_equal(c->state_dir, "/var/lib/tidemark");
    assert_string_equal(c->hostname, "db-1");
    assert_int_equal(c->n_labels, 3);
    assert_string_equal(c->labels[0].key, "region");
    assert_string_equal(c->labels[0].value, "eu-west");
    assert_string_equal(c->labels[1].key, "app.kubernetes.io/name");
    assert_string_equal(c->labels[1].value, "billing db");
    assert_string_equal(c->labels[2].key, "tier");
    assert_string_equal(c->labels[2].value, "1");
    assert_int_equal(c->n_targets, 4);
    assert_string_equal(c->targets[0].name, "pg-main");
    assert_string_equal(c->targets[0].kind, "postgres");
    assert_string_equal(c->targets[0].engine_version, "15");
    assert_string_equal(c->targets[1].name, "cache_1.b");
    assert_null(c->targets[1].engine_version);
    assert_string_equal(c->targets[3].kind, "turso");
    assert_int_equal(c->log_level, TM_LOG_WARN);
    tm_agent_conf_free(c);

    /* tls+tcp:// alone turns TLS on (system trust); empty labels is fine */
    c = agent_ok("coordinator:\n  url: tls+tcp://h:1\n  enrollment_token: env:TM_TEST_ENROLL\n"
                 "labels:\n");
    assert_true(c->tls_enabled);
    assert_int_equal(c->n_labels, 0);
    tm_agent_conf_free(c);
}

static void test_missing_required(void **state)
{
    (void)state;
    agent_fails("state_dir: s\n", F ":1:1: coordinator: ",
                "required key is missing, expected a mapping with at least url:");
    agent_fails(
        "coordinator:\n  enrollment_token: env:TM_TEST_ENROLL\n",
        F ":2:3: coordinator.url: ", "required key is missing, expected the coordinator's RPC URL");
    agent_fails("coordinator:\n  url: tcp://h:1\n",
                F ":2:3: coordinator.enrollment_token: ", "required secret is missing");
    agent_fails(MIN_AGENT "targets:\n  - name: a\n", F ":5:5: targets[0].kind: ",
                "required key is missing, expected one of postgres, redis, sqlite, turso, pg_dump");
}

static void test_unknown_and_type(void **state)
{
    (void)state;
    agent_fails(MIN_AGENT "  tls:\n    require_client_cert: true\n",
                F ":5:5: coordinator.tls.require_client_cert: ", "unknown key");
    agent_fails(
        MIN_AGENT "targets:\n  - name: a\n    kind: redis\n    port: 6379\n",
        F ":7:5: targets[0].port: ", "unknown key, expected one of: name, kind, engine_version");
    agent_fails(MIN_AGENT "targets:\n  name: a\n",
                F ":5:3: targets: ", "expected a list, got a mapping");
    agent_fails(MIN_AGENT "targets:\n  - pg-main\n",
                F ":5:5: targets[0]: ", "expected a mapping of keys, got a single value");
    agent_fails(MIN_AGENT "  timeout: [1s]\n",
                F ":4:12: coordinator.timeout: ", "expected a string, got a list");
}

static void test_targets(void **state)
{
    (void)state;
    agent_fails(
        MIN_AGENT "targets:\n"
                  "  - name: pg-main\n"
                  "    kind: postgres\n"
                  "  - name: pg-main\n"
                  "    kind: redis\n",
        F ":7:11: targets[1].name: ", "duplicate target name 'pg-main', also used by targets[0]");
    agent_fails(MIN_AGENT "targets:\n  - name: pg/main\n    kind: postgres\n",
                F ":5:11: targets[0].name: ", "expected 1 to 64 of [A-Za-z0-9._-]");
    agent_fails(MIN_AGENT "targets:\n  - name: \"\"\n    kind: postgres\n",
                F ":5:11: targets[0].name: ", "not a valid name");
    agent_fails(MIN_AGENT "targets:\n  - name: "
                          "a12345678901234567890123456789012345678901234567890123456789012345\n"
                          "    kind: postgres\n",
                F ":5:11: targets[0].name: ", "not a valid name");
    agent_fails(MIN_AGENT "targets:\n  - name: m\n    kind: mysql\n", F ":6:11: targets[0].kind: ",
                "unknown kind 'mysql', expected postgres, redis, sqlite, turso or pg_dump");
}

static void test_labels(void **state)
{
    (void)state;
    agent_fails(MIN_AGENT "labels:\n  - a\n",
                F ":5:3: labels: ", "expected a mapping of name: value, got a list");
    agent_fails(MIN_AGENT "labels:\n  a: {b: c}\n",
                F ":5:6: labels.a: ", "expected a string value, got a mapping");
    agent_fails(MIN_AGENT "labels:\n  a: x\n  a: y\n", F ":6:3: labels.a: ", "duplicate label");
    agent_fails(MIN_AGENT "labels:\n  \"bad key\": x\n", F ":5:3: labels: ", "bad label name");
}

static void test_url_and_tls(void **state)
{
    (void)state;
    agent_fails("coordinator:\n  url: http://h:1\n  enrollment_token: env:TM_TEST_ENROLL\n",
                F ":2:8: coordinator.url: ",
                "unsupported URL 'http://h:1', expected tcp:// or tls+tcp:// or ipc://");
    agent_fails("coordinator:\n  url: tcp://:7800\n  enrollment_token: env:TM_TEST_ENROLL\n",
                F ":2:8: coordinator.url: ", "has no host");
    agent_fails("coordinator:\n  url: tcp://h:0\n  enrollment_token: env:TM_TEST_ENROLL\n",
                F ":2:8: coordinator.url: ", "bad port in 'tcp://h:0', expected 1 .. 65535");
    agent_fails(MIN_AGENT "  tls:\n    ca_file: ca.crt\n",
                F ":2:8: coordinator.url: ", "not tls+tcp://");
    agent_fails("coordinator:\n  url: tls+tcp://h:1\n  enrollment_token: env:TM_TEST_ENROLL\n"
                "  tls:\n    key_file: k\n",
                F ":5:5: coordinator.tls.key_file: ", "key_file is set without cert_file");
    agent_fails(MIN_AGENT "  timeout: 20m\n",
                F ":4:12: coordinator.timeout: ", "20m is out of range, expected 100ms .. 10m");
    agent_fails(MIN_AGENT "  backoff_max: soon\n",
                F ":4:16: coordinator.backoff_max: ", "expected a duration");
    agent_fails(MIN_AGENT "hostname: \"db 1\"\n", F ":4:11: hostname: ", "not a host name");
}

static void test_secrets(void **state)
{
    (void)state;
    agent_fails("coordinator:\n  url: tcp://h:1\n  enrollment_token: abc123\n",
                F ":3:21: coordinator.enrollment_token: ",
                "inline secrets are not allowed, expected enrollment_token: env:NAME or "
                "enrollment_token_file: /path");
    agent_fails(MIN_AGENT "  enrollment_token_file: /t\n",
                F ":4:3: coordinator.enrollment_token_file: ",
                "both enrollment_token and enrollment_token_file are set");
    agent_fails("coordinator:\n  url: tcp://h:1\n  enrollment_token_file: tok\n",
                F ":3:26: coordinator.enrollment_token_file: ",
                "cannot read secret file: open " TEST_DIR "/tok:");
}

/* Relative paths of a config loaded by a relative name become absolute. */
static void test_relative_name(void **state)
{
    (void)state;
    tm_agent_conf *c = NULL;
    tm_err err;
    const char *y = MIN_AGENT;
    assert_int_equal(tm_agent_conf_parse("conf/agent.yaml", y, strlen(y), &c, &err), 0);
    char cwd[4096], want[4200];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(want, sizeof(want), "%s/conf/state", cwd);
    assert_string_equal(c->state_dir, want);
    tm_agent_conf_free(c);
}

static const char *source_dir(void)
{
    const char *d = getenv("TM_SOURCE_DIR");
    return d != NULL ? d : ".";
}

static void test_example_coordinator(void **state)
{
    (void)state;
    setenv("TIDEMARK_ADMIN_TOKEN", "example-admin-0123456789abcdef-0123456789", 1);
    setenv("TIDEMARK_ENROLL_TOKEN", "example-enroll-0123456789abcdef-0123456789", 1);
    char path[4096], want[4200];
    snprintf(path, sizeof(path), "%s/deploy/examples/coordinator.yaml", source_dir());
    tm_coordinator_conf *c = NULL;
    tm_err err;
    tm_err_clear(&err);
    int rc = tm_coordinator_conf_load(path, &c, &err);
    if (rc != 0) {
        fail_msg("%s", err.msg);
    }
    assert_string_equal(c->admin_token, "example-admin-0123456789abcdef-0123456789");
    assert_string_equal(c->enrollments[0].token, "example-enroll-0123456789abcdef-0123456789");
    /* The packaged layout (debian/): state under /var/lib/tidemark. */
    snprintf(want, sizeof(want), "/var/lib/tidemark/coordinator/catalog.db");
    assert_string_equal(c->catalog_path, want);
    tm_coordinator_conf_free(c);
}

static void test_example_agent(void **state)
{
    (void)state;
    setenv("TIDEMARK_ENROLL_TOKEN", "example-enroll-0123456789abcdef-0123456789", 1);
    char path[4096];
    snprintf(path, sizeof(path), "%s/deploy/examples/agent.yaml", source_dir());
    tm_agent_conf *c = NULL;
    tm_err err;
    tm_err_clear(&err);
    int rc = tm_agent_conf_load(path, &c, &err);
    if (rc != 0) {
        fail_msg("%s", err.msg);
    }
    assert_string_equal(c->enrollment_token, "example-enroll-0123456789abcdef-0123456789");
    assert_string_equal(c->state_dir, "/var/lib/tidemark/agent");
    assert_true(c->n_labels >= 1);
    assert_true(c->n_targets >= 1);
    assert_true(c->n_repos >= 1);
    assert_string_equal(c->repos[0].name, "local");
    assert_non_null(c->encryption.master_key_ref);
    tm_agent_conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),         cmocka_unit_test(test_full),
        cmocka_unit_test(test_missing_required), cmocka_unit_test(test_unknown_and_type),
        cmocka_unit_test(test_targets),          cmocka_unit_test(test_labels),
        cmocka_unit_test(test_url_and_tls),      cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_relative_name),    cmocka_unit_test(test_example_coordinator),
        cmocka_unit_test(test_example_agent),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
