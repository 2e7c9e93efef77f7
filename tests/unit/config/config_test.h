/*
 * config_test.h - shared helpers for the config unit tests: parse a YAML
 * string under a fixed fake path and check the one-line error.
 */
#ifndef TM_CONFIG_TEST_H
#define TM_CONFIG_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/config.h"

/* Every test parses as if the file lived here: relative paths resolve to it. */
#define TEST_DIR "/etc/tidemark"
#define COORD_NAME TEST_DIR "/coordinator.yaml"
#define AGENT_NAME TEST_DIR "/agent.yaml"

/* Four lines: the least a coordinator.yaml needs. Tests append to it, so
 * their own lines start at 5. */
#define MIN_COORD                                                                                  \
    "admin_token: env:TM_TEST_ADMIN\n"                                                             \
    "enrollment:\n"                                                                                \
    "  - name: default\n"                                                                          \
    "    token: env:TM_TEST_ENROLL\n"

/* Three lines: the least an agent.yaml needs; appended lines start at 4. */
#define MIN_AGENT                                                                                  \
    "coordinator:\n"                                                                               \
    "  url: tcp://coord.example:7800\n"                                                            \
    "  enrollment_token: env:TM_TEST_ENROLL\n"

static inline void test_env_setup(void)
{
    setenv("TM_TEST_ADMIN", "admin-secret-value-0123456789abcdef", 1);
    setenv("TM_TEST_ENROLL", "enroll-secret-value-0123456789abcdef\n", 1);
    unsetenv("TM_TEST_UNSET");
}

/* The error must start with `prefix` ("file:line:col: key.path: ") and
 * contain `part`; it must be one line and must not contain `forbidden`. */
static inline void check_msg(int rc, const tm_err *err, const char *prefix, const char *part,
                             const char *forbidden)
{
    if (rc != TM_ECONFIG || err->code != TM_ECONFIG) {
        fail_msg("rc=%d code=%d msg='%s', expected TM_ECONFIG", rc, err->code, err->msg);
    }
    if (strncmp(err->msg, prefix, strlen(prefix)) != 0) {
        fail_msg("message '%s'\n   does not start with '%s'", err->msg, prefix);
    }
    if (part != NULL && strstr(err->msg, part) == NULL) {
        fail_msg("message '%s'\n   does not contain '%s'", err->msg, part);
    }
    if (forbidden != NULL && strstr(err->msg, forbidden) != NULL) {
        fail_msg("message '%s'\n   contains '%s'", err->msg, forbidden);
    }
    if (strchr(err->msg, '\n') != NULL) {
        fail_msg("message '%s' is more than one line", err->msg);
    }
}

static inline void coord_fails(const char *yaml, const char *prefix, const char *part)
{
    tm_coordinator_conf *c = (tm_coordinator_conf *)1;
    tm_err err;
    tm_err_clear(&err);
    int rc = tm_coordinator_conf_parse(COORD_NAME, yaml, strlen(yaml), &c, &err);
    assert_null(c);
    check_msg(rc, &err, prefix, part, NULL);
}

static inline void agent_fails(const char *yaml, const char *prefix, const char *part)
{
    tm_agent_conf *c = (tm_agent_conf *)1;
    tm_err err;
    tm_err_clear(&err);
    int rc = tm_agent_conf_parse(AGENT_NAME, yaml, strlen(yaml), &c, &err);
    assert_null(c);
    check_msg(rc, &err, prefix, part, NULL);
}

/* The agent.yaml fails and its message does not echo `secret`. */
static inline void agent_fails_hiding(const char *yaml, const char *secret)
{
    tm_agent_conf *c = (tm_agent_conf *)1;
    tm_err err;
    tm_err_clear(&err);
    int rc = tm_agent_conf_parse(AGENT_NAME, yaml, strlen(yaml), &c, &err);
    assert_null(c);
    check_msg(rc, &err, AGENT_NAME, NULL, secret);
}

static inline tm_coordinator_conf *coord_ok(const char *yaml)
{
    tm_coordinator_conf *c = NULL;
    tm_err err;
    tm_err_clear(&err);
    int rc = tm_coordinator_conf_parse(COORD_NAME, yaml, strlen(yaml), &c, &err);
    if (rc != 0) {
        fail_msg("parse failed: rc=%d %s", rc, err.msg);
    }
    assert_non_null(c);
    return c;
}

static inline tm_agent_conf *agent_ok(const char *yaml)
{
    tm_agent_conf *c = NULL;
    tm_err err;
    tm_err_clear(&err);
    int rc = tm_agent_conf_parse(AGENT_NAME, yaml, strlen(yaml), &c, &err);
    if (rc != 0) {
        fail_msg("parse failed: rc=%d %s", rc, err.msg);
    }
    assert_non_null(c);
    return c;
}

#endif
