/*
 * test_wal_expire.c - which archived WAL files retention may delete
 * (tm_pg_log_before): segments, .partial and .backup files of the cutoff
 * backup's timeline before its start segment; never history files, other
 * timelines, or anything when the start is unknown. The start comes from the
 * manifest's start_wal, else its start_lsn + timeline + segment size, else
 * the catalog's values in the spec.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agent/engines/postgres/pg.h"

static Tidemark__Manifest *manifest(const char *const *kv, size_t n)
{
    static Tidemark__Manifest m;
    static Tidemark__Manifest__EngineInfoEntry e[8], *ep[8];
    tidemark__manifest__init(&m);
    for (size_t i = 0; i < n; i++) {
        tidemark__manifest__engine_info_entry__init(&e[i]);
        e[i].key = (char *)kv[2 * i];
        e[i].value = (char *)kv[2 * i + 1];
        ep[i] = &e[i];
    }
    m.engine_info = ep;
    m.n_engine_info = n;
    return &m;
}

static void test_start_wal(void **state)
{
    (void)state;
    const char *kv[] = {"start_wal", "000000020000000A00000010"};
    Tidemark__Manifest *m = manifest(kv, 1);
    assert_true(tm_pg_log_before(m, NULL, "00000002/000000020000000A0000000F"));
    assert_true(tm_pg_log_before(m, NULL, "00000002/0000000200000009000000FF"));
    assert_true(tm_pg_log_before(m, NULL, "00000002/000000020000000A0000000F.partial"));
    assert_true(tm_pg_log_before(m, NULL, "00000002/000000020000000A00000001.00000028.backup"));
    /* the start segment itself and later: needed */
    assert_false(tm_pg_log_before(m, NULL, "00000002/000000020000000A00000010"));
    assert_false(tm_pg_log_before(m, NULL, "00000002/000000020000000A00000010.00000028.backup"));
    assert_false(tm_pg_log_before(m, NULL, "00000002/000000020000000B00000000"));
    /* history files and other timelines: kept */
    assert_false(tm_pg_log_before(m, NULL, "00000002/00000002.history"));
    assert_false(tm_pg_log_before(m, NULL, "00000001/000000010000000000000001"));
    assert_false(tm_pg_log_before(m, NULL, "00000003/000000030000000000000001"));
    /* not WAL names: kept */
    assert_false(tm_pg_log_before(m, NULL, "00000002/garbage"));
    assert_false(tm_pg_log_before(m, NULL, ""));
}

static void test_lsn_fallbacks(void **state)
{
    (void)state;
    /* 64 MiB segments: 0/C000000 is segment 3 of log 0. */
    const char *kv[] = {"start_lsn", "0/C000028", "timeline", "1", "wal_segment_size", "67108864"};
    Tidemark__Manifest *m = manifest(kv, 3);
    assert_true(tm_pg_log_before(m, NULL, "00000001/000000010000000000000002"));
    assert_false(tm_pg_log_before(m, NULL, "00000001/000000010000000000000003"));
    /* No manifest: the catalog's LSN and timeline with 16 MiB segments. */
    Tidemark__ExpireSpec spec = TIDEMARK__EXPIRE_SPEC__INIT;
    spec.log_cutoff_start_position = "1/2000028";
    spec.has_log_cutoff_chain = 1;
    spec.log_cutoff_chain = 1;
    assert_true(tm_pg_log_before(NULL, &spec, "00000001/000000010000000100000001"));
    assert_false(tm_pg_log_before(NULL, &spec, "00000001/000000010000000100000002"));
    /* Nothing says where the backup started: keep everything. */
    spec.has_log_cutoff_chain = 0;
    assert_false(tm_pg_log_before(NULL, &spec, "00000001/000000010000000000000001"));
    assert_false(tm_pg_log_before(manifest(kv, 0), NULL, "00000001/000000010000000000000001"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_wal),
        cmocka_unit_test(test_lsn_fallbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
