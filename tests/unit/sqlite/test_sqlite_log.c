/*
 * test_sqlite_log.c - the SQLite log hooks on listings: runs per chain from
 * names alone (base, description, segments across a WAL restart), a
 * missing segment splitting a run, objects without their sidecar not
 * counted, a chain whose description is not stored yet not a run; and
 * retention deleting whole chains older than the cutoff snapshot's chain
 * only (from the manifest, else the catalog's spec, else nothing).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/engines/sqlite/log.h"
#include "agent/engines/sqlite/segment.h"
#include "agent/repo/repo_log.h"

#define C1 0x6b000001u
#define C2 0x6b000100u

static char *nm(char kind, uint32_t chain, uint32_t wal, uint64_t first, uint64_t last, int64_t ms)
{
    tm_sqlite_name n = {
        .kind = kind, .chain = chain, .wal = wal, .first = first, .last = last, .time_ms = ms};
    char *b = malloc(TM_SQLITE_NAME_MAX);
    tm_sqlite_name_fmt(b, TM_SQLITE_NAME_MAX, &n);
    return b;
}

static int cmp_item(const void *a, const void *b)
{
    return strcmp(((const tm_log_item *)a)->rel, ((const tm_log_item *)b)->rel);
}

static void ranges(void **state)
{
    (void)state;
    tm_log_item it[] = {
        {.rel = nm('d', C1, 0, 0, 0, 0), .has_meta = 1, .has_object = 1, .stored_size = 1000},
        {.rel = nm('g', C1, 0, 0, 10, 1765000000000),
         .has_meta = 1,
         .has_object = 1,
         .stored_size = 100},
        {.rel = nm('w', C1, 0, 11, 20, 1765000001000),
         .has_meta = 1,
         .has_object = 1,
         .stored_size = 10},
        {.rel = nm('w', C1, 0, 21, 30, 1765000002000),
         .has_meta = 1,
         .has_object = 1,
         .stored_size = 10},
        /* the WAL restarted: frame 1 of the next */
        {.rel = nm('w', C1, 1, 1, 5, 1765000003000),
         .has_meta = 1,
         .has_object = 1,
         .stored_size = 10},
        /* frames 6..9 missing: a hole */
        {.rel = nm('w', C1, 1, 10, 12, 1765000005000),
         .has_meta = 1,
         .has_object = 1,
         .stored_size = 10},
        /* no sidecar yet: not counted */
        {.rel = nm('w', C1, 1, 13, 14, 1765000006000),
         .has_meta = 0,
         .has_object = 1,
         .stored_size = 10},
        {.rel = nm('d', C2, 0, 0, 0, 0), .has_meta = 1, .has_object = 1, .stored_size = 1000},
        {.rel = nm('g', C2, 0, 0, 0, 1765000100000),
         .has_meta = 1,
         .has_object = 1,
         .stored_size = 100},
        {.rel = nm('w', C2, 0, 1, 3, 1765000101000),
         .has_meta = 1,
         .has_object = 1,
         .stored_size = 10},
        /* a third chain whose description is not there yet */
        {.rel = nm('d', C2 + 5, 0, 0, 0, 0), .has_meta = 1, .has_object = 1, .stored_size = 1000},
        {.rel = strdup("6b000001/garbage"), .has_meta = 1, .has_object = 1, .stored_size = 1},
    };
    size_t n = sizeof(it) / sizeof(it[0]);
    qsort(it, n, sizeof(it[0]), cmp_item);
    tm_log_range *r = NULL;
    size_t nr = 0;
    tm_err err = {0};
    tm_target_conf t = {.name = "app", .kind = "sqlite"};
    assert_int_equal(tm_sqlite_log_ranges(&t, it, n, &r, &nr, &err), 0);
    assert_int_equal(nr, 3);
    assert_int_equal(r[0].chain, C1);
    assert_string_equal(r[0].start, "00000000.000000000000000a");
    assert_string_equal(r[0].end, "00000001.0000000000000005");
    assert_int_equal(r[0].start_time, 1765000000);
    assert_int_equal(r[0].end_time, 1765000003);
    assert_int_equal(r[0].objects, 5);
    assert_int_equal(r[0].bytes, 1130);
    assert_int_equal(r[1].chain, C1);
    assert_string_equal(r[1].start, "00000001.0000000000000009");
    assert_string_equal(r[1].end, "00000001.000000000000000c");
    assert_int_equal(r[1].objects, 1);
    assert_int_equal(r[2].chain, C2);
    assert_string_equal(r[2].start, "00000000.0000000000000000");
    assert_string_equal(r[2].end, "00000000.0000000000000003");
    assert_int_equal(r[2].end_time, 1765000101);
    free(r);
    for (size_t i = 0; i < n; i++) {
        free(it[i].rel);
    }
    /* Nothing listed: no runs. */
    assert_int_equal(tm_sqlite_log_ranges(&t, NULL, 0, &r, &nr, &err), 0);
    assert_int_equal(nr, 0);
}

static void retention(void **state)
{
    (void)state;
    char *old = nm('w', C1, 0, 11, 20, 1), *base = nm('d', C1, 0, 0, 0, 0),
         *cur = nm('w', C2, 0, 1, 3, 1), *newer = nm('g', C2 + 9, 0, 0, 0, 1);
    Tidemark__Manifest m = TIDEMARK__MANIFEST__INIT;
    Tidemark__Manifest__EngineInfoEntry e = TIDEMARK__MANIFEST__ENGINE_INFO_ENTRY__INIT;
    Tidemark__Manifest__EngineInfoEntry *ep = &e;
    char chain[16];
    snprintf(chain, sizeof(chain), "%u", C2);
    e.key = "log_chain";
    e.value = chain;
    m.engine_info = &ep;
    m.n_engine_info = 1;
    assert_int_equal(tm_sqlite_log_before(&m, NULL, old), 1);
    assert_int_equal(tm_sqlite_log_before(&m, NULL, base), 1);
    assert_int_equal(tm_sqlite_log_before(&m, NULL, cur), 0);
    assert_int_equal(tm_sqlite_log_before(&m, NULL, newer), 0);
    assert_int_equal(tm_sqlite_log_before(&m, NULL, "6b000001/not-ours"), 0);
    /* No manifest fact: the catalog's chain. */
    Tidemark__ExpireSpec sp = TIDEMARK__EXPIRE_SPEC__INIT;
    sp.has_log_cutoff_chain = 1;
    sp.log_cutoff_chain = C2;
    assert_int_equal(tm_sqlite_log_before(NULL, &sp, old), 1);
    assert_int_equal(tm_sqlite_log_before(NULL, &sp, cur), 0);
    /* Neither: everything kept. A malformed fact counts as none. */
    assert_int_equal(tm_sqlite_log_before(NULL, NULL, old), 0);
    e.value = "12x";
    assert_int_equal(tm_sqlite_log_before(&m, NULL, old), 0);
    free(old);
    free(base);
    free(cur);
    free(newer);
}

static void status_of_missing_file(void **state)
{
    (void)state;
    tm_target_conf t = {.name = "nobody", .kind = "sqlite"};
    tm_log_status st = {0};
    /* No sqlite: block (no path): readable, nothing noted. */
    tm_sqlite_log_status(&t, &st);
    assert_int_equal(st.readable, 1);
    assert_int_equal(st.failed_count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ranges),
        cmocka_unit_test(retention),
        cmocka_unit_test(status_of_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
