/*
 * test_config.c - coordinator.yaml: defaults, every kind of error with its
 * exact file:line:column, secrets. Agent-specific cases and the shipped
 * examples live in test_config_agent.c.
 */
#include "config_test.h"

#include <unistd.h>

#define F COORD_NAME

static int setup(void **state)
{
    (void)state;
    test_env_setup();
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    tm_coordinator_conf *c = coord_ok(MIN_COORD);
    assert_string_equal(c->path, F);
    assert_string_equal(c->listen, "tcp://127.0.0.1:7800");
    assert_string_equal(c->http_listen, "http://127.0.0.1:9187");
    assert_string_equal(c->catalog_path, TEST_DIR "/catalog.db");
    assert_string_equal(c->admin_token, "admin-secret-value-0123456789abcdef");
    assert_int_equal(c->n_enrollments, 1);
    assert_string_equal(c->enrollments[0].name, "default");
    /* trailing newline of the env value stripped */
    assert_string_equal(c->enrollments[0].token, "enroll-secret-value-0123456789abcdef");
    assert_false(c->enrollments[0].auto_approve);
    assert_int_equal(c->enrollments[0].expires_at, 0);
    assert_int_equal(c->heartbeat_interval_ms, 10000);
    assert_int_equal(c->stale_after_missed, 3);
    assert_int_equal(c->lost_after_missed, 10);
    assert_int_equal(c->rpc_max_message_bytes, 4 * 1024 * 1024);
    assert_int_equal(c->rpc_contexts, 64);
    assert_int_equal(c->rpc_max_unauth_message_bytes, 64 * 1024);
    assert_int_equal(c->rpc_send_timeout_ms, 10000);
    assert_int_equal(c->rpc_first_request_timeout_ms, 10000);
    assert_int_equal(c->rpc_idle_timeout_ms, 300000);
    assert_int_equal(c->rpc_max_pending_per_addr, 128);
    assert_int_equal(c->rpc_max_calls_per_conn, 64);
    assert_false(c->tls_enabled);
    assert_null(c->tls.cert_file);
    assert_int_equal(c->log_level, TM_LOG_INFO);
    tm_coordinator_conf_free(c);
}

static void test_full(void **state)
{
    (void)state;
    tm_coordinator_conf *c =
        coord_ok("listen: tls+tcp://0.0.0.0:7801\n"
                 "http:\n"
                 "  listen: \"\"\n"
                 "catalog:\n"
                 "  path: /var/lib/tidemark/catalog.db\n" MIN_COORD "    auto_approve: true\n"
                 "    expires: 2027-01-01T00:00:00Z\n"
                 "  - name: ops.team_2\n"
                 "    token: env:TM_TEST_ADMIN\n"
                 "heartbeat:\n"
                 "  interval: 500ms\n"
                 "  stale_after_missed: 5\n"
                 "  lost_after_missed: 6\n"
                 "rpc:\n"
                 "  max_message_size: 64KiB\n"
                 "  contexts: 4096\n"
                 "  max_unauthenticated_message_size: 16KiB\n"
                 "  send_timeout: 2s\n"
                 "  first_request_timeout: 3s\n"
                 "  idle_timeout: 1m\n"
                 "  max_pending_connections_per_address: 8\n"
                 "  max_calls_per_connection: 16\n"
                 "tls:\n"
                 "  cert_file: tls/c.crt\n"
                 "  key_file: /k/c.key\n"
                 "  ca_file: ca.crt\n"
                 "  require_client_cert: true\n"
                 "log:\n"
                 "  level: debug\n");
    assert_string_equal(c->listen, "tls+tcp://0.0.0.0:7801");
    assert_string_equal(c->http_listen, "");
    assert_string_equal(c->catalog_path, "/var/lib/tidemark/catalog.db");
    assert_int_equal(c->n_enrollments, 2);
    assert_true(c->enrollments[0].auto_approve);
    assert_int_equal(c->enrollments[0].expires_at, 1798761600);
    assert_string_equal(c->enrollments[1].name, "ops.team_2");
    assert_string_equal(c->enrollments[1].token, "admin-secret-value-0123456789abcdef");
    assert_int_equal(c->heartbeat_interval_ms, 500);
    assert_int_equal(c->stale_after_missed, 5);
    assert_int_equal(c->lost_after_missed, 6);
    assert_int_equal(c->rpc_max_message_bytes, 65536);
    assert_int_equal(c->rpc_contexts, 4096);
    assert_int_equal(c->rpc_max_unauth_message_bytes, 16 * 1024);
    assert_int_equal(c->rpc_send_timeout_ms, 2000);
    assert_int_equal(c->rpc_first_request_timeout_ms, 3000);
    assert_int_equal(c->rpc_idle_timeout_ms, 60000);
    assert_int_equal(c->rpc_max_pending_per_addr, 8);
    assert_int_equal(c->rpc_max_calls_per_conn, 16);
    assert_true(c->tls_enabled);
    assert_string_equal(c->tls.cert_file, TEST_DIR "/tls/c.crt");
    assert_string_equal(c->tls.key_file, "/k/c.key");
    assert_string_equal(c->tls.ca_file, TEST_DIR "/ca.crt");
    assert_true(c->tls.require_client_cert);
    assert_int_equal(c->log_level, TM_LOG_DEBUG);
    tm_coordinator_conf_free(c);
}

static void test_units(void **state)
{
    (void)state;
    tm_coordinator_conf *c = coord_ok(MIN_COORD "heartbeat:\n  interval: 5m\n"
                                                "rpc:\n  max_message_size: 4096\n");
    assert_int_equal(c->heartbeat_interval_ms, 300000);
    assert_int_equal(c->rpc_max_message_bytes, 4096);
    tm_coordinator_conf_free(c);
    c = coord_ok(MIN_COORD "heartbeat:\n  interval: 1h\nrpc:\n  max_message_size: 256MiB\n");
    assert_int_equal(c->heartbeat_interval_ms, 3600000);
    assert_int_equal(c->rpc_max_message_bytes, 256u * 1024 * 1024);
    tm_coordinator_conf_free(c);
}

static void test_unknown_key(void **state)
{
    (void)state;
    coord_fails(MIN_COORD "listn: tcp://x:1\n",
                F ":5:1: listn: ", "unknown key, expected one of: listen, http, catalog");
    coord_fails(MIN_COORD "heartbeat:\n  interval: 5s\n  intervl: 5s\n",
                F ":7:3: heartbeat.intervl: ", "unknown key, expected one of: interval, ");
    coord_fails("admin_token: env:TM_TEST_ADMIN\n"
                "enrollment:\n"
                "  - name: default\n"
                "    tokn: env:X\n",
                F ":4:5: enrollment[0].tokn: ", "unknown key");
    /* server_name is a client-side TLS setting only */
    coord_fails(MIN_COORD "tls:\n  server_name: x\n", F ":6:3: tls.server_name: ", "unknown key");
}

static void test_wrong_type(void **state)
{
    (void)state;
    coord_fails(MIN_COORD "heartbeat: 5s\n",
                F ":5:12: heartbeat: ", "expected a mapping of keys, got a single value");
    coord_fails(MIN_COORD "rpc:\n  contexts: lots\n",
                F ":6:13: rpc.contexts: ", "expected a whole number, got 'lots'");
    coord_fails(MIN_COORD "rpc:\n  contexts: 010\n",
                F ":6:13: rpc.contexts: ", "expected a whole number");
    coord_fails(MIN_COORD "    auto_approve: yes\n",
                F ":5:19: enrollment[0].auto_approve: ", "expected true or false, got 'yes'");
    coord_fails(MIN_COORD "listen: [a, b]\n", F ":5:9: listen: ", "expected a string, got a list");
    coord_fails("admin_token: env:TM_TEST_ADMIN\nenrollment:\n  name: x\n",
                F ":3:3: enrollment: ", "expected a list, got a mapping");
    coord_fails(MIN_COORD "heartbeat:\n", F ":5:11: heartbeat: ", "got an empty value");
}

static void test_missing_required(void **state)
{
    (void)state;
    coord_fails("admin_token: env:TM_TEST_ADMIN\n", F ":1:1: enrollment: ",
                "required key is missing, expected a list of enrollment tokens");
    coord_fails("admin_token: env:TM_TEST_ADMIN\nenrollment: []\n",
                F ":2:13: enrollment: ", "expected at least 1 entry, got 0");
    coord_fails("admin_token: env:TM_TEST_ADMIN\n"
                "enrollment:\n"
                "  - token: env:TM_TEST_ENROLL\n",
                F ":3:5: enrollment[0].name: ", "required key is missing");
    coord_fails("enrollment:\n  - name: a\n    token: env:TM_TEST_ENROLL\n",
                F ":1:1: admin_token: ",
                "required secret is missing, expected admin_token: env:NAME or "
                "admin_token_file: /path");
    coord_fails("admin_token: env:TM_TEST_ADMIN\nenrollment:\n  - name: a\n",
                F ":3:5: enrollment[0].token: ", "required secret is missing");
}

static void test_out_of_range(void **state)
{
    (void)state;
    coord_fails(MIN_COORD "rpc:\n  contexts: 0\n",
                F ":6:13: rpc.contexts: ", "0 is out of range, expected 1 .. 4096");
    coord_fails(MIN_COORD "rpc:\n  contexts: 4097\n", F ":6:13: rpc.contexts: ", "out of range");
    coord_fails(MIN_COORD "rpc:\n  contexts: -1\n", F ":6:13: rpc.contexts: ", "out of range");
    coord_fails(MIN_COORD "heartbeat:\n  stale_after_missed: 1001\n",
                F ":6:23: heartbeat.stale_after_missed: ", "expected 1 .. 1000");
    coord_fails(MIN_COORD "heartbeat:\n  interval: 50ms\n",
                F ":6:13: heartbeat.interval: ", "50ms is out of range, expected 100ms .. 1h");
    coord_fails(MIN_COORD "heartbeat:\n  interval: 2h\n",
                F ":6:13: heartbeat.interval: ", "out of range");
    coord_fails(MIN_COORD "rpc:\n  max_message_size: 1KiB\n",
                F ":6:21: rpc.max_message_size: ", "1KiB is out of range, expected 4KiB .. 256MiB");
    /* lost must exceed stale; points at the key the user wrote */
    coord_fails(MIN_COORD "heartbeat:\n  stale_after_missed: 5\n  lost_after_missed: 5\n",
                F ":7:22: heartbeat.lost_after_missed: ",
                "lost_after_missed (5) must be greater than stale_after_missed (5)");
    coord_fails(MIN_COORD "heartbeat:\n  stale_after_missed: 20\n",
                F ":6:23: heartbeat.stale_after_missed: ", "must be greater than");
}

static void test_bad_duration_size(void **state)
{
    (void)state;
    coord_fails(MIN_COORD "heartbeat:\n  interval: 10\n", F ":6:13: heartbeat.interval: ",
                "'10' is not valid, expected a duration such as 500ms, 10s, 5m or 1h");
    coord_fails(MIN_COORD "heartbeat:\n  interval: 10 s\n",
                F ":6:13: heartbeat.interval: ", "not valid");
    coord_fails(MIN_COORD "heartbeat:\n  interval: 1.5s\n",
                F ":6:13: heartbeat.interval: ", "not valid");
    coord_fails(MIN_COORD "rpc:\n  max_message_size: 4MB\n", F ":6:21: rpc.max_message_size: ",
                "'4MB' is not valid, expected a size such as 4096, 64KiB or 4MiB");
    coord_fails(MIN_COORD "rpc:\n  max_message_size: 99999999999999999MiB\n",
                F ":6:21: rpc.max_message_size: ", "not valid");
}

static void test_inline_secret(void **state)
{
    (void)state;
    const char *y = "admin_token: hunter2\n"
                    "enrollment:\n  - name: a\n    token: env:TM_TEST_ENROLL\n";
    tm_coordinator_conf *c = NULL;
    tm_err err;
    int rc = tm_coordinator_conf_parse(F, y, strlen(y), &c, &err);
    check_msg(rc, &err, F ":1:14: admin_token: ",
              "inline secrets are not allowed, expected admin_token: env:NAME or "
              "admin_token_file: /path",
              "hunter2");
    coord_fails(MIN_COORD "  - name: b\n    token: s3cr3t\n",
                F ":6:12: enrollment[1].token: ", "inline secrets are not allowed");
}

static void test_env_unset(void **state)
{
    (void)state;
    coord_fails("admin_token: env:TM_TEST_UNSET\n"
                "enrollment:\n  - name: a\n    token: env:TM_TEST_ENROLL\n",
                F ":1:14: admin_token: ", "environment variable TM_TEST_UNSET is not set");
    setenv("TM_TEST_EMPTY", " \n", 1);
    coord_fails("admin_token: env:TM_TEST_EMPTY\n"
                "enrollment:\n  - name: a\n    token: env:TM_TEST_ENROLL\n",
                F ":1:14: admin_token: ", "environment variable TM_TEST_EMPTY is empty");
    coord_fails("admin_token: env:1BAD\n"
                "enrollment:\n  - name: a\n    token: env:TM_TEST_ENROLL\n",
                F ":1:14: admin_token: ", "not a valid environment variable name");
}

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void test_secret_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/tm-config-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char name[128], tok[128], yaml[512];
    snprintf(name, sizeof(name), "%s/coordinator.yaml", dir);
    snprintf(tok, sizeof(tok), "%s/admin.token", dir);
    write_file(tok, "file-secret-0123456789abcdef-0123456789\r\n\n");

    /* relative *_file resolves against the config's directory */
    snprintf(yaml, sizeof(yaml),
             "admin_token_file: admin.token\n"
             "enrollment:\n  - name: a\n    token_file: %s\n",
             tok);
    tm_coordinator_conf *c = NULL;
    tm_err err;
    assert_int_equal(tm_coordinator_conf_parse(name, yaml, strlen(yaml), &c, &err), 0);
    assert_string_equal(c->admin_token, "file-secret-0123456789abcdef-0123456789");
    assert_string_equal(c->enrollments[0].token, "file-secret-0123456789abcdef-0123456789");
    char want[160];
    snprintf(want, sizeof(want), "%s/catalog.db", dir);
    assert_string_equal(c->catalog_path, want);
    tm_coordinator_conf_free(c);

    /* missing file: named, positioned at the _file value */
    const char *y2 = "admin_token_file: nope.token\n"
                     "enrollment:\n  - name: a\n    token: env:TM_TEST_ENROLL\n";
    c = NULL;
    int rc = tm_coordinator_conf_parse(name, y2, strlen(y2), &c, &err);
    char prefix[160], part[160];
    snprintf(prefix, sizeof(prefix), "%s:1:19: admin_token_file: ", name);
    snprintf(part, sizeof(part), "cannot read secret file: open %s/nope.token: No such file", dir);
    check_msg(rc, &err, prefix, part, NULL);
    assert_null(c);

    /* empty file */
    write_file(tok, "\n");
    c = NULL;
    rc = tm_coordinator_conf_parse(name, yaml, strlen(yaml), &c, &err);
    snprintf(prefix, sizeof(prefix), "%s:1:19: admin_token_file: ", name);
    check_msg(rc, &err, prefix, "is empty", NULL);

    unlink(tok);
    rmdir(dir);
}

static void test_secret_both(void **state)
{
    (void)state;
    coord_fails("admin_token: env:TM_TEST_ADMIN\n"
                "enrollment:\n"
                "  - name: a\n"
                "    token: env:TM_TEST_ENROLL\n"
                "    token_file: /x\n",
                F ":5:5: enrollment[0].token_file: ",
                "both token and token_file are set, expected exactly one");
    coord_fails("admin_token_file: /x\n" MIN_COORD,
                F ":1:1: admin_token_file: ", "both admin_token and admin_token_file are set");
}

static void test_secret_resolve_api(void **state)
{
    (void)state;
    char *s = NULL;
    tm_err err;
    assert_int_equal(tm_secret_resolve("env:TM_TEST_ADMIN", NULL, &s, &err), 0);
    assert_string_equal(s, "admin-secret-value-0123456789abcdef");
    free(s);
    assert_int_equal(tm_secret_resolve("plain", NULL, &s, &err), TM_ECONFIG);
    assert_null(s);
    assert_int_equal(tm_secret_resolve(NULL, NULL, &s, &err), TM_EINVAL);
    assert_int_equal(tm_secret_resolve("env:A", "/x", &s, &err), TM_EINVAL);
    assert_int_equal(tm_secret_resolve(NULL, "/nonexistent/tm", &s, NULL), TM_ECONFIG);
}

static void test_bad_url(void **state)
{
    (void)state;
    coord_fails(MIN_COORD "listen: udp://127.0.0.1:7800\n", F ":5:9: listen: ",
                "unsupported URL 'udp://127.0.0.1:7800', expected tcp:// or tls+tcp:// or ipc://");
    coord_fails(MIN_COORD "listen: tcp://127.0.0.1\n", F ":5:9: listen: ", "has no port");
    coord_fails(MIN_COORD "listen: tcp://127.0.0.1:99999\n", F ":5:9: listen: ", "bad port");
    coord_fails(MIN_COORD "http:\n  listen: https://x:1\n",
                F ":6:11: http.listen: ", "expected http://");
    coord_fails(MIN_COORD "listen: ipc://\n", F ":5:9: listen: ", "socket path");
    tm_coordinator_conf *c = coord_ok(MIN_COORD "listen: ipc:///run/tidemark.sock\n");
    assert_string_equal(c->listen, "ipc:///run/tidemark.sock");
    tm_coordinator_conf_free(c);
    c = coord_ok(MIN_COORD "listen: tcp://[::1]:0\n");
    tm_coordinator_conf_free(c);
}

static void test_tls_rules(void **state)
{
    (void)state;
    coord_fails(MIN_COORD "listen: tls+tcp://h:1\ntls:\n  cert_file: c.crt\n",
                F ":7:3: tls.cert_file: ", "cert_file is set without key_file, expected both");
    coord_fails(MIN_COORD "listen: tls+tcp://h:1\n",
                F ":5:9: listen: ", "tls+tcp:// needs a certificate");
    coord_fails(MIN_COORD "tls:\n  cert_file: c\n  key_file: k\n",
                F ":6:14: tls.cert_file: ", "not tls+tcp://");
    coord_fails(MIN_COORD "listen: tcp://h:1\ntls:\n  cert_file: c\n  key_file: k\n",
                F ":5:9: listen: ", "not tls+tcp://");
    coord_fails(MIN_COORD "listen: tls+tcp://h:1\n"
                          "tls:\n  cert_file: c\n  key_file: k\n  require_client_cert: true\n",
                F ":9:24: tls.require_client_cert: ", "expected tls.ca_file");
}

static void test_enrollment_rules(void **state)
{
    (void)state;
    coord_fails(MIN_COORD "  - name: default\n    token: env:TM_TEST_ENROLL\n",
                F ":5:11: enrollment[1].name: ", "duplicate enrollment name 'default'");
    coord_fails(MIN_COORD "    expires: 2027-02-30T00:00:00Z\n",
                F ":5:14: enrollment[0].expires: ", "expected RFC 3339 like 2027-01-01T00:00:00Z");
    coord_fails(MIN_COORD "    expires: 2027-01-01T00:00:00+01:00\n",
                F ":5:14: enrollment[0].expires: ", "not a UTC time");
    coord_fails("admin_token: env:TM_TEST_ADMIN\nenrollment:\n  - name: has space\n"
                "    token: env:TM_TEST_ENROLL\n",
                F ":3:11: enrollment[0].name: ", "not a valid name");
}

static void test_log_level(void **state)
{
    (void)state;
    coord_fails(MIN_COORD "log:\n  level: loud\n", F ":6:10: log.level: ",
                "'loud' is not a level, expected debug, info, warn or error");
}

static void test_malformed_yaml(void **state)
{
    (void)state;
    coord_fails(MIN_COORD "listen: [unclosed\n", F ":6:1: (document): ", "invalid YAML:");
    coord_fails("a: b\n c: d\n",
                F ":2:3: (document): ", "invalid YAML: mapping values are not allowed");
    coord_fails("key: \"unterminated\n", F ":2:1: (document): ", "invalid YAML");
    coord_fails("x: \x01\n", F ":1:4: (document): ", "invalid YAML");
    coord_fails("- a\n- b\n",
                F ":1:1: (document): ", "expected a mapping of keys at the top level");
    coord_fails(MIN_COORD "---\nlisten: x\n",
                F ":5:1: (document): ", "more than one YAML document");
    coord_fails("base: &b {a: 1}\nother: *b\n", F ":2:8: (document): ", "aliases");
    coord_fails(MIN_COORD "listen: tcp://a:1\nlisten: tcp://b:2\n",
                F ":6:1: listen: ", "duplicate key");
    coord_fails(MIN_COORD "[a]: b\n", F ":5:1: (document): ", "a key must be a plain name");
    /* depth limit: refused by the pre-scan, not by recursion */
    char deep[200];
    memset(deep, '[', 100);
    deep[100] = '\0';
    coord_fails(deep, F ":1:33: (document): ", "nesting deeper than 32 levels");
}

static void test_empty(void **state)
{
    (void)state;
    coord_fails("", F ":1:1: (document): ", "empty configuration");
    coord_fails("# only a comment\n\n", F ":1:1: (document): ", "empty configuration");
    coord_fails("---\n", F ":1:1: (document): ", "empty configuration");
}

static void test_load_missing_file(void **state)
{
    (void)state;
    tm_coordinator_conf *c = NULL;
    tm_err err;
    int rc = tm_coordinator_conf_load("/nonexistent/coordinator.yaml", &c, &err);
    assert_int_equal(rc, TM_ECONFIG);
    assert_null(c);
    assert_non_null(strstr(err.msg, "/nonexistent/coordinator.yaml"));
}

static void test_null_err(void **state)
{
    (void)state;
    tm_coordinator_conf *c = NULL;
    const char *y = "admin_token: x\n";
    assert_int_equal(tm_coordinator_conf_parse(F, y, strlen(y), &c, NULL), TM_ECONFIG);
    assert_null(c);
}

/* Admin and enrollment tokens are guessed over the network: at least
 * TM_TOKEN_MIN_LEN characters, the error at the key, the value not echoed. */
static void test_token_min_length(void **state)
{
    (void)state;
    setenv("TM_TEST_SHORT", "0123456789abcdef0123456789abcde", 1); /* 31 */
    setenv("TM_TEST_32", "0123456789abcdef0123456789abcdef", 1);
    coord_fails("admin_token: env:TM_TEST_SHORT\n"
                "enrollment:\n  - name: a\n    token: env:TM_TEST_ENROLL\n",
                F ":1:14: admin_token: ", "token is 31 characters, expected at least 32");
    coord_fails("admin_token: env:TM_TEST_ADMIN\n"
                "enrollment:\n  - name: a\n    token: env:TM_TEST_SHORT\n",
                F ":4:12: enrollment[0].token: ", "expected at least 32");
    tm_err err;
    tm_coordinator_conf *c = NULL;
    const char *y = "admin_token: env:TM_TEST_SHORT\n"
                    "enrollment:\n  - name: a\n    token: env:TM_TEST_ENROLL\n";
    check_msg(tm_coordinator_conf_parse(F, y, strlen(y), &c, &err), &err, F ":1:14: ", NULL,
              "0123456789abcdef");
    c = coord_ok("admin_token: env:TM_TEST_32\n"
                 "enrollment:\n  - name: a\n    token: env:TM_TEST_32\n");
    tm_coordinator_conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_bad_duration_size),
        cmocka_unit_test(test_inline_secret),
        cmocka_unit_test(test_env_unset),
        cmocka_unit_test(test_secret_file),
        cmocka_unit_test(test_secret_both),
        cmocka_unit_test(test_secret_resolve_api),
        cmocka_unit_test(test_bad_url),
        cmocka_unit_test(test_tls_rules),
        cmocka_unit_test(test_enrollment_rules),
        cmocka_unit_test(test_log_level),
        cmocka_unit_test(test_malformed_yaml),
        cmocka_unit_test(test_token_min_length),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_null_err),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
