/*
 * test_config_yaml.c - the libyaml side on its own: key-path map positions
 * and the translation of real libcyaml 1.3 error logs (the fallback used
 * when libcyaml rejects something the schema walk let through).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/config/yaml.h"

struct sub {
    char *m;
    int64_t n;
};
struct top {
    struct sub sub;
    struct sub *list;
    uint32_t list_count;
};

/* Two schemas over the same struct: the walk sees strings everywhere (so it
 * passes and maps every key), libcyaml wants an integer for `n`. */
#define SUB_FIELDS(ntype)                                                                          \
    {                                                                                              \
        CYAML_FIELD_STRING_PTR("m", CYAML_FLAG_OPTIONAL, struct sub, m, 0, CYAML_UNLIMITED),       \
            ntype, CYAML_FIELD_END                                                                 \
    }

static const cyaml_schema_field_t sub_loose[] =
    SUB_FIELDS(CYAML_FIELD_STRING_PTR("n", CYAML_FLAG_OPTIONAL, struct sub, m, 0, CYAML_UNLIMITED));
static const cyaml_schema_field_t sub_strict[] =
    SUB_FIELDS(CYAML_FIELD_INT("n", CYAML_FLAG_OPTIONAL, struct sub, n));

static const cyaml_schema_value_t entry_loose = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct sub, sub_loose)};
static const cyaml_schema_value_t entry_strict = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, struct sub, sub_strict)};

static const cyaml_schema_field_t top_loose[] = {
    CYAML_FIELD_MAPPING("sub", CYAML_FLAG_OPTIONAL, struct top, sub, sub_loose),
    CYAML_FIELD_SEQUENCE("list", CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER, struct top, list,
                         &entry_loose, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END};
static const cyaml_schema_field_t top_strict[] = {
    CYAML_FIELD_MAPPING("sub", CYAML_FLAG_OPTIONAL, struct top, sub, sub_strict),
    CYAML_FIELD_SEQUENCE("list", CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER, struct top, list,
                         &entry_strict, 0, CYAML_UNLIMITED),
    CYAML_FIELD_END};
static const cyaml_schema_value_t schema_loose = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct top, top_loose)};
static const cyaml_schema_value_t schema_strict = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, struct top, top_strict)};

typedef struct logbuf {
    char text[2048];
    size_t len;
} logbuf;

static void capture(cyaml_log_t level, void *ctx, const char *fmt, va_list ap)
{
    logbuf *b = ctx;
    if (level >= CYAML_LOG_ERROR && b->len < sizeof(b->text)) {
        int n = vsnprintf(b->text + b->len, sizeof(b->text) - b->len, fmt, ap);
        b->len += n > 0 ? (size_t)n : 0;
        if (b->len >= sizeof(b->text)) {
            b->len = sizeof(b->text) - 1;
        }
    }
}

/* Run the real libcyaml on `yaml` with the strict schema; translate. */
static void translate(const char *yaml, const char *want)
{
    tm_ydoc d;
    tm_err err;
    assert_int_equal(tm_ydoc_load(&d, "t.yaml", yaml, strlen(yaml), &err), 0);
    assert_int_equal(tm_ydoc_check(&d, &schema_loose, &err), 0);
    logbuf lb = {.len = 0};
    lb.text[0] = '\0';
    cyaml_config_t cfg = {
        .log_fn = capture, .log_ctx = &lb, .mem_fn = cyaml_mem, .log_level = CYAML_LOG_ERROR};
    struct top *t = NULL;
    cyaml_err_t ce = cyaml_load_data((const uint8_t *)yaml, strlen(yaml), &cfg, &schema_strict,
                                     (cyaml_data_t **)&t, NULL);
    assert_int_not_equal(ce, CYAML_OK);
    assert_int_equal(tm_ydoc_cyaml_error(&d, lb.text, &err), TM_ECONFIG);
    if (strncmp(err.msg, want, strlen(want)) != 0) {
        fail_msg("got '%s'\nwant prefix '%s'\nlibcyaml log:\n%s", err.msg, want, lb.text);
    }
    tm_ydoc_free(&d);
}

static void test_cyaml_nested_field(void **state)
{
    (void)state;
    translate("sub:\n  m: x\n  n: abc\n", "t.yaml:3:6: sub.n: Invalid INT value");
}

static void test_cyaml_sequence_entry(void **state)
{
    (void)state;
    translate("list:\n  - n: 1\n  - m: y\n    n: zz\n", "t.yaml:4:8: list[1].n: Invalid INT value");
}

static void test_synthetic_unknown_key(void **state)
{
    (void)state;
    const char *yaml = "sub:\n  m: x\n";
    tm_ydoc d;
    tm_err err;
    assert_int_equal(tm_ydoc_load(&d, "t.yaml", yaml, strlen(yaml), &err), 0);
    assert_int_equal(tm_ydoc_check(&d, &schema_loose, &err), 0);
    tm_ydoc_cyaml_error(&d,
                        "Load: Unexpected key: zz\nLoad: Backtrace:\n  in mapping:\n"
                        "  in mapping field: sub\n",
                        &err);
    assert_string_equal(err.msg, "t.yaml:1:1: sub.zz: unknown key");
    tm_ydoc_free(&d);
}

static void test_map_positions(void **state)
{
    (void)state;
    const char *yaml = "# comment\nsub:\n    m:   hello\nlist:\n  - {m: a}\n";
    tm_ydoc d;
    tm_err err;
    assert_int_equal(tm_ydoc_load(&d, "t.yaml", yaml, strlen(yaml), &err), 0);
    assert_int_equal(tm_ydoc_check(&d, &schema_loose, &err), 0);
    const tm_yentry *e = tm_ydoc_find(&d, "sub.m");
    assert_non_null(e);
    assert_int_equal(e->key.line, 3);
    assert_int_equal(e->key.col, 5);
    assert_int_equal(e->val.line, 3);
    assert_int_equal(e->val.col, 10);
    e = tm_ydoc_find(&d, "list[0].m");
    assert_non_null(e);
    assert_int_equal(e->val.line, 5);
    assert_int_equal(e->val.col, 9);
    assert_null(tm_ydoc_find(&d, "sub.n"));
    tm_ydoc_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cyaml_nested_field),
        cmocka_unit_test(test_cyaml_sequence_entry),
        cmocka_unit_test(test_synthetic_unknown_key),
        cmocka_unit_test(test_map_positions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
