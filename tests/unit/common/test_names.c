/*
 * test_names.c - the enum words (common/names.c): target kinds are checked
 * and listed from the one names table, so the coordinator's validation and
 * its error message follow a kind added there without naming any kind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/names.h"
#include "tidemark.pb-c.h"

static void test_kind_valid(void **state)
{
    (void)state;
    assert_false(tm_target_kind_valid(TIDEMARK__TARGET_KIND__TARGET_KIND_UNSPECIFIED));
    assert_false(tm_target_kind_valid(-1));
    for (int k = 1; k < 5; k++) {
        assert_true(tm_target_kind_valid(k));
        assert_int_equal(tm_target_kind_parse(tm_target_kind_name(k)), k);
    }
    /* protobuf-c keeps an enum value it does not know: refused. */
    assert_false(tm_target_kind_valid(5));
    assert_false(tm_target_kind_valid(1000));
}

static void test_kinds_list(void **state)
{
    (void)state;
    char out[128];
    tm_target_kinds_list(out, sizeof(out));
    assert_string_equal(out, "postgres, redis, sqlite or turso");
    /* Truncated, still terminated. */
    char small[10];
    tm_target_kinds_list(small, sizeof(small));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, "postgres,", 9);
    tm_target_kinds_list(small, 0); /* nothing written, no crash */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_valid),
        cmocka_unit_test(test_kinds_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
