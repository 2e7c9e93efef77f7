/*
 * test_config_repos.c - agent.yaml `repositories:` and `encryption:`:
 * defaults, per-type rules, secrets, ranges, unique names, positions.
 */
#include "config_test.h"

#define F AGENT_NAME

static int setup(void **state)
{
    (void)state;
    test_env_setup();
    setenv("TM_TEST_AK", "AKIDEXAMPLE", 1);
    setenv("TM_TEST_SK", "secret/key\n", 1);
    return 0;
}

static void test_none(void **state)
{
    (void)state;
    tm_agent_conf *c = agent_ok(MIN_AGENT);
    assert_int_equal(c->n_repos, 0);
    assert_null(c->encryption.master_key_ref);
    assert_int_equal(c->encryption.compress_level, 3);
    tm_agent_conf_free(c);
}

static void test_full_set(void **state)
{
    (void)state;
    tm_agent_conf *c = agent_ok(MIN_AGENT "repositories:\n"
                                          "  - name: local\n"
                                          "    type: posix\n"
                                          "    path: repo\n"
                                          "  - name: eu-west\n"
                                          "    region: eu-west-1\n"
                                          "    type: s3\n"
                                          "    endpoint: http://127.0.0.1:8080\n"
                                          "    bucket: b-eu\n"
                                          "    prefix: tm\n"
                                          "    access_key: env:TM_TEST_AK\n"
                                          "    secret_key: env:TM_TEST_SK\n"
                                          "  - name: us-east\n"
                                          "    type: s3\n"
                                          "    signing_region: us-east-2\n"
                                          "    bucket: b-us\n"
                                          "    access_key: env:TM_TEST_AK\n"
                                          "    secret_key: env:TM_TEST_SK\n"
                                          "    ca_file: ca.pem\n"
                                          "    verify_tls: false\n"
                                          "    path_style: false\n"
                                          "    sse: aws:kms\n"
                                          "    sse_kms_key_id: arn:aws:kms:k\n"
                                          "    storage_class: STANDARD_IA\n"
                                          "    object_lock_mode: COMPLIANCE\n"
                                          "    object_lock_days: 35\n"
                                          "    part_size: 64MiB\n"
                                          "    max_retries: 0\n"
                                          "    timeout: 2m\n"
                                          "encryption:\n"
                                          "  master_key_file: keys/master.key\n"
                                          "  old_master_key_files: [/k/old1, env:OLD2]\n"
                                          "  compress_level: 19\n");
    assert_int_equal(c->n_repos, 3);
    tm_repo_conf *r = &c->repos[0];
    assert_string_equal(r->name, "local");
    assert_string_equal(r->region, "local");
    assert_string_equal(r->type, "posix");
    assert_string_equal(r->path, TEST_DIR "/repo");
    r = &c->repos[1];
    assert_string_equal(r->type, "s3");
    assert_string_equal(r->region, "eu-west-1");
    assert_string_equal(r->signing_region, "eu-west-1");
    assert_string_equal(r->endpoint, "http://127.0.0.1:8080");
    assert_string_equal(r->bucket, "b-eu");
    assert_string_equal(r->prefix, "tm");
    assert_string_equal(r->access_key, "AKIDEXAMPLE");
    assert_string_equal(r->secret_key, "secret/key");
    assert_true(r->verify_tls);
    assert_true(r->path_style);
    assert_null(r->sse);
    assert_int_equal(r->part_size, 16 * 1024 * 1024);
    assert_int_equal(r->max_retries, 5);
    assert_int_equal(r->timeout_ms, 60000);
    r = &c->repos[2];
    assert_string_equal(r->region, "us-east");
    assert_string_equal(r->signing_region, "us-east-2");
    assert_null(r->endpoint);
    assert_string_equal(r->ca_file, TEST_DIR "/ca.pem");
    assert_false(r->verify_tls);
    assert_false(r->path_style);
    assert_string_equal(r->sse, "aws:kms");
    assert_string_equal(r->sse_kms_key_id, "arn:aws:kms:k");
    assert_string_equal(r->storage_class, "STANDARD_IA");
    assert_string_equal(r->object_lock_mode, "COMPLIANCE");
    assert_int_equal(r->object_lock_days, 35);
    assert_int_equal(r->part_size, 64 * 1024 * 1024);
    assert_int_equal(r->max_retries, 0);
    assert_int_equal(r->timeout_ms, 120000);
    assert_string_equal(c->encryption.master_key_ref, TEST_DIR "/keys/master.key");
    assert_int_equal(c->encryption.n_old_master_keys, 2);
    assert_string_equal(c->encryption.old_master_key_refs[0], "/k/old1");
    assert_string_equal(c->encryption.old_master_key_refs[1], "env:OLD2");
    assert_int_equal(c->encryption.compress_level, 19);
    tm_agent_conf_free(c);
}

#define POSIX(extra)                                                                               \
    MIN_AGENT "repositories:\n"                                                                    \
              "  - name: local\n"                                                                  \
              "    type: posix\n"                                                                  \
              "    path: /r\n" extra
#define S3(extra)                                                                                  \
    MIN_AGENT "repositories:\n"                                                                    \
              "  - name: eu\n"                                                                     \
              "    type: s3\n"                                                                     \
              "    bucket: b\n"                                                                    \
              "    access_key: env:TM_TEST_AK\n"                                                   \
              "    secret_key: env:TM_TEST_SK\n" extra

static void test_errors(void **state)
{
    (void)state;
    /* Lines: MIN_AGENT is 3, "repositories:" 4, "- name" 5, type 6, ... */
    agent_fails(MIN_AGENT "repositories:\n  - name: x\n", F ":5:5: repositories[0]",
                "posix (a directory) or s3");
    agent_fails(MIN_AGENT "repositories:\n  - name: x\n    type: nfs\n",
                F ":6:11: repositories[0].type: ", "expected posix or s3");
    agent_fails(MIN_AGENT "repositories:\n  - name: x\n    type: posix\n",
                F ":5:5: repositories[0].path: ", "required for type: posix");
    agent_fails(POSIX("    bucket: b\n"),
                F ":8:5: repositories[0].bucket: ", "bucket is a s3 setting");
    agent_fails(POSIX("    colour: red\n"), F ":8:5: repositories[0].colour", "unknown");
    agent_fails(POSIX("  - name: local\n    type: posix\n    path: /q\n"),
                F ":8:11: repositories[1].name: ", "duplicate repository name 'local'");
    agent_fails(POSIX("  - name: 'a b'\n    type: posix\n    path: /q\n"),
                F ":8:11: repositories[1].name: ", "not a valid name");
    agent_fails(MIN_AGENT "repositories:\n  - name: eu\n    type: s3\n"
                          "    access_key: env:TM_TEST_AK\n    secret_key: env:TM_TEST_SK\n",
                F ":5:5: repositories[0].bucket: ", "required for type: s3");
    agent_fails(MIN_AGENT "repositories:\n  - name: eu\n    type: s3\n    bucket: b\n"
                          "    secret_key: env:TM_TEST_SK\n",
                F ":5:5: repositories[0].access_key: ", "required secret is missing");
    agent_fails(S3("    secret_key_file: /x\n"), F ":10:5: repositories[0].secret_key_file: ",
                "both secret_key and secret_key_file");
    agent_fails(MIN_AGENT "repositories:\n  - name: eu\n    type: s3\n    bucket: b\n"
                          "    access_key: AKIDINLINE\n    secret_key: env:TM_TEST_SK\n",
                F ":8:17: repositories[0].access_key: ", "inline secrets are not allowed");
    agent_fails(S3("    endpoint: ftp://x\n"),
                F ":10:15: repositories[0].endpoint: ", "not an http:// or https:// URL");
    agent_fails(S3("    part_size: 1MiB\n"),
                F ":10:16: repositories[0].part_size: ", "out of range, expected 5MiB .. 1GiB");
    agent_fails(S3("    max_retries: 99\n"),
                F ":10:18: repositories[0].max_retries: ", "expected 0 .. 20");
    agent_fails(S3("    timeout: soon\n"), F ":10:14: repositories[0].timeout: ", "duration");
    agent_fails(S3("    verify_tls: maybe\n"),
                F ":10:17: repositories[0].verify_tls: ", "true or false");
    agent_fails(S3("    sse: rot13\n"),
                F ":10:10: repositories[0].sse: ", "expected AES256 or aws:kms");
    agent_fails(S3("    object_lock_mode: GOVERNANCE\n"),
                F ":10:23: repositories[0].object_lock_mode: ", "needs a retention");
    agent_fails(S3("    object_lock_days: 3\n"),
                F ":10:23: repositories[0].object_lock_days: ", "needs object_lock_mode");
    agent_fails(S3("    path: /x\n"), F ":10:5: repositories[0].path: ", "posix setting");
    agent_fails(S3("    secret_key_file: /x\n"), F ":10:5:", NULL);
}

static void test_encryption_errors(void **state)
{
    (void)state;
    agent_fails(MIN_AGENT "encryption:\n  compress_level: 3\n",
                F ":5:3: encryption: ", "no master key");
    agent_fails(MIN_AGENT "encryption:\n  master_key: 00112233\n",
                F ":5:15: encryption.master_key: ", "inline keys are not allowed");
    agent_fails(MIN_AGENT "encryption:\n  master_key: env:K\n  master_key_file: /k\n",
                F ":6:3: encryption.master_key_file: ", "exactly one");
    agent_fails(MIN_AGENT "encryption:\n  master_key_file: /k\n  compress_level: 20\n",
                F ":6:19: encryption.compress_level: ", "expected 1 .. 19");
    agent_fails(MIN_AGENT "encryption:\n  master_key_file: env:K\n",
                F ":5:20: encryption.master_key_file: ", "expected a file path");
    agent_fails(MIN_AGENT "encryption:\n  master_key_file: /k\n  old_master_key_files: /x\n",
                F ":6:25: encryption.old_master_key_files: ", "expected");
    /* An env: master key is kept as a reference, not resolved here. */
    tm_agent_conf *c = agent_ok(MIN_AGENT "encryption:\n  master_key: env:TM_TEST_UNSET\n");
    assert_string_equal(c->encryption.master_key_ref, "env:TM_TEST_UNSET");
    tm_agent_conf_free(c);
}

/* Values that become HTTP headers (x-amz-storage-class, SSE key id) cannot
 * carry CR/LF: a second header (or request) could be smuggled in. */
static void test_header_values(void **state)
{
    (void)state;
    agent_fails(S3("    storage_class: \"STANDARD\\r\\nx-amz-acl: public-read\"\n"), F ":",
                "without spaces");
    agent_fails(S3("    sse: aws:kms\n    sse_kms_key_id: \"k\\nx-evil: 1\"\n"), F ":",
                "without spaces");
    agent_fails(S3("    sse: \"AES256\\r\\n\"\n"), F ":", "AES256 or aws:kms");
}

/* A plain http:// endpoint is allowed but warned about; https is quiet. */
static void test_http_endpoint_warns(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tm_log_set_stream(f);
    tm_agent_conf *c = agent_ok(S3("    endpoint: https://s3.example.net\n"));
    tm_agent_conf_free(c);
    fflush(f);
    assert_int_equal(len, 0);
    c = agent_ok(S3("    endpoint: http://10.1.2.3:9000/s3\n"));
    assert_string_equal(c->repos[0].endpoint, "http://10.1.2.3:9000/s3");
    tm_agent_conf_free(c);
    fflush(f);
    assert_non_null(strstr(buf, "repositories[0].endpoint"));
    assert_non_null(strstr(buf, "plain http"));
    tm_log_set_stream(NULL);
    fclose(f);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_full_set),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_header_values),
        cmocka_unit_test(test_http_endpoint_warns),
        cmocka_unit_test(test_encryption_errors),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
