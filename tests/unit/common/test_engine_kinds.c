/*
 * test_engine_kinds.c - the kind table: name <-> TargetKind both ways, the
 * backup types each kind takes, the default snapshot schedule, the lists in
 * messages, and names.c reading the same table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/engine_kinds.h"
#include "common/names.h"
#include "tidemark.pb-c.h"

static void test_round_trip(void **state)
{
    (void)state;
    size_t n = 0;
    const tm_engine_kind *all = tm_engine_kinds(&n);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(tm_engine_kind_by_name(all[i].name), &all[i]);
        assert_ptr_equal(tm_engine_kind_by_kind(all[i].kind), &all[i]);
        assert_string_equal(tm_target_kind_name(all[i].kind), all[i].name);
        assert_int_equal(tm_target_kind_parse(all[i].name), all[i].kind);
    }
    assert_int_equal(tm_engine_kind_by_name("postgres")->kind, TIDEMARK__TARGET_KIND__POSTGRES);
    assert_int_equal(tm_engine_kind_by_name("redis")->kind, TIDEMARK__TARGET_KIND__REDIS);
    assert_null(tm_engine_kind_by_name("mysql"));
    assert_null(tm_engine_kind_by_name(NULL));
    assert_null(tm_engine_kind_by_kind(0));
    assert_string_equal(tm_target_kind_name(0), "unknown");
    assert_string_equal(tm_target_kind_name(99), "unknown");
    assert_int_equal(tm_target_kind_parse("mysql"), 0);
    assert_int_equal(tm_target_kind_parse(NULL), 0);
}

static void test_traits(void **state)
{
    (void)state;
    const tm_engine_kind *pg = tm_engine_kind_by_name("postgres");
    const tm_engine_kind *rd = tm_engine_kind_by_name("redis");
    assert_true(tm_engine_kind_takes(pg, TIDEMARK__BACKUP_TYPE__FULL));
    assert_true(tm_engine_kind_takes(pg, TIDEMARK__BACKUP_TYPE__INCREMENTAL));
    assert_false(tm_engine_kind_takes(pg, TIDEMARK__BACKUP_TYPE__SNAPSHOT));
    assert_null(pg->default_snapshot);
    assert_true(tm_engine_kind_takes(rd, TIDEMARK__BACKUP_TYPE__SNAPSHOT));
    assert_false(tm_engine_kind_takes(rd, TIDEMARK__BACKUP_TYPE__FULL));
    assert_string_equal(rd->default_snapshot, "0 */6 * * *");
    /* Turso: an off-provider dump (a snapshot) daily at 03:00 UTC, nothing else. */
    const tm_engine_kind *tu = tm_engine_kind_by_name("turso");
    assert_true(tm_engine_kind_takes(tu, TIDEMARK__BACKUP_TYPE__SNAPSHOT));
    assert_false(tm_engine_kind_takes(tu, TIDEMARK__BACKUP_TYPE__FULL));
    assert_false(tm_engine_kind_takes(tu, TIDEMARK__BACKUP_TYPE__INCREMENTAL));
    assert_string_equal(tu->default_snapshot, "0 3 * * *");
    /* pg_dump: daily logical dumps at 03:00 UTC, nothing else. */
    const tm_engine_kind *pd = tm_engine_kind_by_name("pg_dump");
    assert_int_equal(pd->kind, TIDEMARK__TARGET_KIND__PG_DUMP);
    assert_true(tm_engine_kind_takes(pd, TIDEMARK__BACKUP_TYPE__SNAPSHOT));
    assert_false(tm_engine_kind_takes(pd, TIDEMARK__BACKUP_TYPE__FULL));
    assert_false(tm_engine_kind_takes(pd, TIDEMARK__BACKUP_TYPE__INCREMENTAL));
    assert_string_equal(pd->default_snapshot, "0 3 * * *");
    assert_false(tm_engine_kind_takes(NULL, TIDEMARK__BACKUP_TYPE__FULL));
    assert_false(tm_engine_kind_takes(pg, -1));
    assert_false(tm_engine_kind_takes(pg, 40));
}

static void test_lists(void **state)
{
    (void)state;
    assert_string_equal(tm_engine_kind_list(true), "postgres, redis, sqlite, turso or pg_dump");
    assert_string_equal(tm_engine_kind_list(false), "postgres, redis, sqlite, turso, pg_dump");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_traits),
        cmocka_unit_test(test_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
