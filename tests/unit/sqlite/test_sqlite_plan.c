/*
 * test_sqlite_plan.c - the pure parts of a SQLite restore and of glob
 * targets: which start a restore to a time takes (plan.c: a snapshot that
 * knows its exact WAL point on a chain at least as new as the newest chain
 * begun by then, else that chain's own base, else the snapshot alone), the
 * time format, and the names of discovered targets (discover.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/engines/sqlite/sqlite.h"

/* A chain's base (db + gen) at time ms, and one segment after it. */
#define BASE(c, ms)                                                                                \
    c "/00000000.0000000000000000-0000000000000000.000000000000.db",                               \
        c "/00000000.0000000000000000-0000000000000003." ms ".gen"

static char *names[] = {
    BASE("00000001", "000000000064"), /* chain 1 at 100 ms */
    "00000001/00000000.0000000000000004-0000000000000009.0000000000c8.wal",
    BASE("00000002", "0000000003e8"), /* chain 2 at 1000 ms */
    "00000002/00000000.0000000000000004-0000000000000006.0000000007d0.wal",
    "00000003/00000000.0000000000000000-0000000000000002.000000000bb8.gen", /* no db: no base */
};
#define NN (sizeof(names) / sizeof(names[0]))

static Tidemark__Manifest snap(Tidemark__Manifest__EngineInfoEntry **e, size_t n)
{
    Tidemark__Manifest m = TIDEMARK__MANIFEST__INIT;
    m.engine_info = e;
    m.n_engine_info = n;
    return m;
}

static void test_plan(void **state)
{
    (void)state;
    tm_sqlite_plan p;
    /* No snapshot: the newest chain begun by the time, from its base. */
    tm_sqlite_plan_make(names, NN, NULL, 0, &p);
    assert_false(p.from_snapshot);
    assert_int_equal(p.chain, 2);
    assert_true(p.base_ms == 1000);
    tm_sqlite_plan_make(names, NN, NULL, 999, &p);
    assert_int_equal(p.chain, 1);
    tm_sqlite_plan_make(names, NN, NULL, 50, &p);
    assert_false(p.from_snapshot);
    assert_int_equal(p.chain, 0); /* nothing: the caller says so */

    Tidemark__Manifest__EngineInfoEntry c2 = TIDEMARK__MANIFEST__ENGINE_INFO_ENTRY__INIT,
                                        ex = TIDEMARK__MANIFEST__ENGINE_INFO_ENTRY__INIT;
    c2.key = "log_chain";
    c2.value = "2";
    ex.key = "log_exact";
    ex.value = "00000000.0000000000000005";
    Tidemark__Manifest__EngineInfoEntry *both[] = {&c2, &ex}, *only_chain[] = {&c2};
    /* A snapshot with its exact point on the newest chain: the shortest replay. */
    Tidemark__Manifest m = snap(both, 2);
    tm_sqlite_plan_make(names, NN, &m, 0, &p);
    assert_true(p.from_snapshot);
    assert_int_equal(p.chain, 2);
    assert_string_equal(p.from, "00000000.0000000000000005");
    assert_true(p.exact);
    assert_true(tm_sqlite_plan_passed(&p, 10, 1));
    /* Neither its point nor a start: the chain's base. */
    m = snap(only_chain, 1);
    tm_sqlite_plan_make(names, NN, &m, 0, &p);
    assert_false(p.from_snapshot);
    assert_int_equal(p.chain, 2);
    /* The shipper's position before it and its stop time: from the
     * snapshot, kept only once the replay passed a tick stamped after
     * stop_ms, or applied nothing; the fallback is chain 2's base. */
    Tidemark__Manifest__EngineInfoEntry st = TIDEMARK__MANIFEST__ENGINE_INFO_ENTRY__INIT,
                                        sp = TIDEMARK__MANIFEST__ENGINE_INFO_ENTRY__INIT;
    st.key = "log_start";
    st.value = "00000000.0000000000000004";
    sp.key = "stop_ms";
    sp.value = "1500";
    Tidemark__Manifest__EngineInfoEntry *started[] = {&c2, &st, &sp};
    m = snap(started, 3);
    tm_sqlite_plan_make(names, NN, &m, 0, &p);
    assert_true(p.from_snapshot);
    assert_false(p.exact);
    assert_string_equal(p.from, "00000000.0000000000000004");
    assert_int_equal(p.fallback_chain, 2);
    assert_true(tm_sqlite_plan_passed(&p, 0, 0));
    assert_true(tm_sqlite_plan_passed(&p, 3, 1501));
    assert_false(tm_sqlite_plan_passed(&p, 3, 1500));
    assert_false(tm_sqlite_plan_passed(&p, 3, 1200));
    /* A snapshot of an older chain than the newest begun by then: the
     * newer chain's base (the older chain stops short). */
    c2.value = "1";
    m = snap(both, 2);
    tm_sqlite_plan_make(names, NN, &m, 0, &p);
    assert_false(p.from_snapshot);
    assert_int_equal(p.chain, 2);
    /* ... but for a time before chain 2 began, chain 1 from the snapshot. */
    tm_sqlite_plan_make(names, NN, &m, 500, &p);
    assert_true(p.from_snapshot);
    assert_int_equal(p.chain, 1);
    /* No log at all: the snapshot alone. */
    tm_sqlite_plan_make(NULL, 0, &m, 0, &p);
    assert_true(p.from_snapshot);
}

static void test_time(void **state)
{
    (void)state;
    int64_t ms = 0;
    assert_int_equal(tm_sqlite_time_parse("2026-12-07 22:00:01+00", &ms), TM_OK);
    assert_true(ms == 1796680801000LL);
    assert_int_equal(tm_sqlite_time_parse("2026-12-07 22:00:01.25Z", &ms), TM_OK);
    assert_true(ms == 1796680801250LL);
    assert_int_equal(tm_sqlite_time_parse("2026-12-07T22:00:01.123456+00:00", &ms), TM_OK);
    assert_true(ms == 1796680801123LL);
    assert_int_equal(tm_sqlite_time_parse("2026-12-07 22:00:01", &ms), TM_EINVAL);
    assert_int_equal(tm_sqlite_time_parse("2026-12-07 22:00:01.+00", &ms), TM_EINVAL);
    assert_int_equal(tm_sqlite_time_parse("yesterday", &ms), TM_EINVAL);
    char s[40];
    tm_sqlite_time_fmt(1796680801250LL, s, sizeof(s));
    assert_string_equal(s, "2026-12-07 22:00:01.250+00");
}

static void test_discovered_names(void **state)
{
    (void)state;
    char n[80];
    tm_sqlite_discovered_name("tenants", "/srv/t/*.db", "/srv/t/acme.db", n, sizeof(n));
    assert_string_equal(n, "tenants-acme");
    tm_sqlite_discovered_name("sqld", "/v/dbs/*/data", "/v/dbs/ns-1/data", n, sizeof(n));
    assert_string_equal(n, "sqld-ns-1.data");
    tm_sqlite_discovered_name("t", "/srv/t/*", "/srv/t/a b+c.sqlite3", n, sizeof(n));
    assert_string_equal(n, "t-a_b_c");
    /* Never longer than a target name may be. */
    tm_sqlite_discovered_name(
        "t", "/x/*", "/x/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.db",
        n, sizeof(n));
    assert_int_equal(strlen(n), 64);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_discovered_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
