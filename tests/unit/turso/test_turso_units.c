/*
 * test_turso_units.c - the Turso engine's pieces without a server: the
 * turso: block (defaults, database xor group, secrets never echoed, every
 * error at its file:line), the JSON reader (API shapes, escapes and
 * surrogates, hostile input refused with an offset, depth bounded), and the
 * dump splitter (statements cut at their real end whatever the chunking,
 * strings holding ';' and newlines kept whole, a truncated dump refused).
 */
#include "../config/config_test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/engines/turso/config.h"
#include "agent/engines/turso/json.h"
#include "agent/engines/turso/turso.h"

#define F AGENT_NAME

static int setup(void **state)
{
    (void)state;
    test_env_setup();
    setenv("TM_TEST_TURSO", "turso-api-secret-value\n", 1);
    static const tm_target_schema *const schemas[] = {&tm_turso_target_schema};
    return tm_config_set_target_schemas(schemas, 1);
}

/* MIN_AGENT is 3 lines: "targets:" is 4, "- name" 5, kind 6, turso 7. */
#define TU(extra)                                                                                  \
    MIN_AGENT "targets:\n"                                                                         \
              "  - name: app\n"                                                                    \
              "    kind: turso\n"                                                                  \
              "    turso:\n" extra

static void test_config_defaults(void **state)
{
    (void)state;
    tm_agent_conf *c = agent_ok(TU("      organization: acme\n      database: app-db\n"
                                   "      api_token: env:TM_TEST_TURSO\n"));
    const tm_turso_target_conf *t = tm_turso_target(&c->targets[0]);
    assert_non_null(t);
    assert_string_equal(t->organization, "acme");
    assert_string_equal(t->database, "app-db");
    assert_null(t->group);
    assert_string_equal(t->api_token, "turso-api-secret-value");
    assert_string_equal(t->api_url, "https://api.turso.tech");
    assert_string_equal(t->db_url, "https://{hostname}");
    assert_null(t->db_token);
    assert_int_equal(t->timeout_ms, 60000);
    assert_int_equal(t->retries, 5);
    assert_int_equal(t->check_interval_ms, 300000);
    assert_int_equal(t->provider_pitr_s, 0);
    tm_agent_conf_free(c);
    c = agent_ok(TU("      organization: acme\n      group: tenants\n"
                    "      api_token: env:TM_TEST_TURSO\n      api_url: http://127.0.0.1:9/\n"
                    "      db_url: http://127.0.0.1:9/db/{name}\n      provider_pitr: 7d\n"
                    "      retries: 0\n      check_interval: 2s\n"));
    t = tm_turso_target(&c->targets[0]);
    assert_string_equal(t->group, "tenants");
    assert_null(t->database);
    assert_string_equal(t->api_url, "http://127.0.0.1:9");
    assert_int_equal(t->provider_pitr_s, 7 * 86400);
    assert_int_equal(t->retries, 0);
    assert_int_equal(t->check_interval_ms, 2000);
    tm_agent_conf_free(c);
}

static void test_config_errors(void **state)
{
    (void)state;
    agent_fails(TU("      database: x\n      api_token: env:TM_TEST_TURSO\n"),
                F ":7:", "organization is missing");
    agent_fails(TU("      organization: acme\n      api_token: env:TM_TEST_TURSO\n"),
                F ":7:", "exactly one of database");
    agent_fails(TU("      organization: acme\n      database: a\n      group: g\n"
                   "      api_token: env:TM_TEST_TURSO\n"),
                F ":10:", "exactly one of database");
    agent_fails(TU("      organization: acme\n      database: a\n"),
                F ":8:", "api_token: env:NAME or api_token_file");
    agent_fails(
        TU("      organization: acme\n      database: a\n      api_token: env:TM_TEST_TURSO\n"
           "      api_url: ftp://x\n"),
        F ":11:", "not an http");
    agent_fails(
        TU("      organization: acme\n      database: a\n      api_token: env:TM_TEST_TURSO\n"
           "      db_url: https://fixed.example\n"),
        F ":11:", "names no database");
    agent_fails(
        TU("      organization: acme\n      database: a\n      api_token: env:TM_TEST_TURSO\n"
           "      retries: 99\n"),
        F ":11:", "retries");
    agent_fails(TU("      organization: acme\n      database: a/b\n"
                   "      api_token: env:TM_TEST_TURSO\n"),
                F ":9:", "database");
    agent_fails(
        TU("      organization: acme\n      database: a\n      api_token: env:TM_TEST_TURSO\n"
           "      token: x\n"),
        F ":11:", "unknown key");
    /* An inline secret is refused without being echoed. */
    agent_fails_hiding(TU("      organization: acme\n      database: a\n"
                          "      api_token: sk-inline-secret-1234\n"),
                       "sk-inline-secret-1234");
}

static tm_tj *parse_ok(const char *s)
{
    tm_tj *j = NULL;
    tm_err err = {0};
    int rc = tm_tj_parse(s, strlen(s), &j, &err);
    if (rc != TM_OK) {
        fail_msg("parse '%s': %s", s, err.msg);
    }
    return j;
}

static void parse_bad(const char *s, size_t len, const char *part)
{
    tm_tj *j = (tm_tj *)1;
    tm_err err = {0};
    assert_int_equal(tm_tj_parse(s, len, &j, &err), TM_EPROTO);
    assert_null(j);
    if (strstr(err.msg, part) == NULL) {
        fail_msg("'%s' does not contain '%s'", err.msg, part);
    }
}

static void test_json(void **state)
{
    (void)state;
    tm_tj *j = parse_ok("{\"database\":{\"Name\":\"app\",\"DbId\":\"0c1\",\"Hostname\":"
                        "\"app-acme.turso.io\",\"group\":\"default\",\"regions\":[\"fra\"],"
                        "\"sleeping\":false,\"schema\":null}}");
    const tm_tj *d = tm_tj_get(j, "database");
    assert_string_equal(tm_tj_str(tm_tj_get(d, "Name")), "app");
    assert_string_equal(tm_tj_str(tm_tj_at(tm_tj_get(d, "regions"), 0)), "fra");
    assert_null(tm_tj_at(tm_tj_get(d, "regions"), 1));
    assert_int_equal(tm_tj_get(d, "sleeping")->type, TM_TJ_BOOL);
    assert_int_equal(tm_tj_get(d, "schema")->type, TM_TJ_NULL);
    assert_null(tm_tj_get(d, "missing"));
    assert_null(tm_tj_str(tm_tj_get(d, "sleeping")));
    tm_tj_free(j);
    /* Hrana values: integers as strings, floats as numbers. */
    j = parse_ok("{\"results\":[{\"type\":\"ok\",\"response\":{\"result\":{\"rows\":[[{\"type\":"
                 "\"integer\",\"value\":\"9007199254740993\"},{\"type\":\"float\",\"value\":1.5e3}"
                 "]]}}}]}");
    const tm_tj *row = tm_tj_at(
        tm_tj_get(tm_tj_get(tm_tj_get(tm_tj_at(tm_tj_get(j, "results"), 0), "response"), "result"),
                  "rows"),
        0);
    assert_int_equal(tm_tj_int(tm_tj_get(tm_tj_at(row, 0), "value"), 0), 9007199254740993LL);
    assert_string_equal(tm_tj_get(tm_tj_at(row, 1), "value")->str, "1.5e3");
    tm_tj_free(j);
    /* Escapes, a surrogate pair, an embedded NUL. */
    j = parse_ok("\"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\\u0000z\"");
    assert_int_equal(j->len, 14);
    assert_memory_equal(j->str, "a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80\0z", 14);
    tm_tj_free(j);
    j = parse_ok("  [ ]  ");
    assert_int_equal(j->n, 0);
    tm_tj_free(j);

    parse_bad("", 0, "unexpected end");
    parse_bad("{\"a\":1", 6, "expected ',' or '}'");
    parse_bad("{\"a\" 1}", 7, "expected ':'");
    parse_bad("[1,]", 4, "expected a value");
    parse_bad("\"abc", 4, "unterminated");
    parse_bad("\"\\ud83d\"", 8, "surrogate");
    parse_bad("\"\\x\"", 4, "bad escape");
    parse_bad("\"a\nb\"", 5, "control character");
    parse_bad("tru", 3, "literal");
    parse_bad("{} x", 4, "trailing");
    parse_bad("8\0\0001", 4, "trailing"); /* a NUL is not a digit (found by fuzzing) */
    parse_bad("{\"a\":1}", 3, "");
    char deep[200];
    memset(deep, '[', sizeof(deep));
    parse_bad(deep, sizeof(deep), "too deep");
}

typedef struct got {
    char *s[16];
    size_t n;
} got;

static int on_stmt(void *arg, const char *stmt, tm_err *err)
{
    (void)err;
    got *g = arg;
    if (g->n < 16) {
        g->s[g->n++] = strdup(stmt);
    }
    return TM_OK;
}

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n; i++) {
        free(g->s[i]);
    }
    g->n = 0;
}

static const char dump[] = "PRAGMA foreign_keys=OFF;\n"
                           "BEGIN TRANSACTION;\n"
                           "CREATE TABLE t (a TEXT);\n"
                           "INSERT INTO t VALUES('semi; colon\n"
                           "and a newline; -- not a comment');\n"
                           "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n"
                           "  UPDATE t SET a = a;\n"
                           "END;\n"
                           "\n"
                           "COMMIT;\n";

static void test_split(void **state)
{
    (void)state;
    /* Every chunk size gives the same five statements. */
    for (size_t step = 1; step <= sizeof(dump); step++) {
        got g = {0};
        tm_turso_splitter *s = NULL;
        tm_err err = {0};
        assert_int_equal(tm_turso_splitter_new(on_stmt, &g, &s, &err), TM_OK);
        for (size_t off = 0; off < sizeof(dump) - 1; off += step) {
            size_t n = sizeof(dump) - 1 - off < step ? sizeof(dump) - 1 - off : step;
            assert_int_equal(tm_turso_splitter_feed(s, dump + off, n, &err), TM_OK);
        }
        assert_int_equal(tm_turso_splitter_finish(s, &err), TM_OK);
        assert_int_equal(g.n, 6);
        assert_string_equal(g.s[3], "INSERT INTO t VALUES('semi; colon\n"
                                    "and a newline; -- not a comment');\n");
        assert_string_equal(g.s[4], "CREATE TRIGGER tr AFTER INSERT ON t BEGIN\n"
                                    "  UPDATE t SET a = a;\nEND;\n");
        assert_string_equal(g.s[5], "COMMIT;\n");
        got_free(&g);
        tm_turso_splitter_free(s);
    }
    /* Cut inside the string: refused as truncated. */
    got g = {0};
    tm_turso_splitter *s = NULL;
    tm_err err = {0};
    assert_int_equal(tm_turso_splitter_new(on_stmt, &g, &s, &err), TM_OK);
    assert_int_equal(tm_turso_splitter_feed(s, dump, 90, &err), TM_OK);
    assert_int_equal(tm_turso_splitter_finish(s, &err), TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "truncated"));
    got_free(&g);
    tm_turso_splitter_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
