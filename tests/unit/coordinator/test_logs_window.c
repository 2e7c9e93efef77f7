/*
 * test_logs_window.c - the restorable window (coordinator/logs.c,
 * tm_logs_span) in engine-neutral terms: a backup's stop_log, named by its
 * engine, extends the window through the archived run that contains it,
 * whatever the engine's names look like; records written before stop_log
 * existed keep their window.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "coordinator/logs.h"
#include "tidemark.pb-c.h"

static Tidemark__BackupInfo backup(int64_t finished_at, const char *stop_position, uint32_t chain,
                                   const char *stop_log)
{
    Tidemark__BackupInfo b = TIDEMARK__BACKUP_INFO__INIT;
    b.id = "b";
    b.has_finished_at = b.has_chain = 1;
    b.finished_at = finished_at;
    b.stop_position = (char *)stop_position;
    b.chain = chain;
    b.stop_log = (char *)stop_log;
    return b;
}

static Tidemark__LogRange range(const char *first, const char *last, int64_t last_time)
{
    Tidemark__LogRange r = TIDEMARK__LOG_RANGE__INIT;
    r.repository = "local";
    r.first = (char *)first;
    r.last = (char *)last;
    r.has_last_time = 1;
    r.last_time = last_time;
    return r;
}

/* One old backup (ended at 100), the newest one and one archived run: the
 * window, whether the run covers the newest backup's end, and the log
 * object that end is in. */
static void expect_span(Tidemark__BackupInfo newest, Tidemark__LogRange run, int covered,
                        int64_t end, const char *stop_log)
{
    Tidemark__BackupInfo old = backup(100, NULL, 0, NULL);
    Tidemark__BackupInfo *bs[2] = {&old, &newest};
    Tidemark__LogRange *rs[1] = {&run};
    int64_t s = 0, e = 0;
    char seg[160];
    assert_int_equal(tm_logs_span(bs, 2, rs, 1, &s, &e, seg, sizeof(seg)), covered);
    assert_int_equal(s, 100);
    assert_int_equal(e, end);
    assert_string_equal(seg, stop_log);
}

static void test_stop_log_inside_run_extends_window(void **state)
{
    (void)state;
    expect_span(backup(1000, "0/5000028", 1, "000000010000000000000005"),
                range("000000010000000000000003", "000000010000000000000009", 2000), 1, 2000,
                "000000010000000000000005");
}

static void test_stop_log_outside_run_stops_at_backup(void **state)
{
    (void)state;
    expect_span(backup(1000, "0/A000028", 1, "00000001000000000000000A"),
                range("000000010000000000000003", "000000010000000000000009", 2000), 0, 1000,
                "00000001000000000000000A");
}

/* An engine whose positions and log names look nothing like the first
 * engine's: the coordinator compares names only. */
static void test_other_engine_names(void **state)
{
    (void)state;
    Tidemark__BackupInfo b = backup(1000, "offset 73128", 4, "gen-0004/incr-000012");
    expect_span(b, range("gen-0004/incr-000010", "gen-0004/incr-000020", 3000), 1, 3000,
                "gen-0004/incr-000012");
    expect_span(b, range("gen-0004/incr-000013", "gen-0004/incr-000020", 3000), 0, 1000,
                "gen-0004/incr-000012");
    /* No stop_log and a position in no known notation: no log object. */
    expect_span(backup(1000, "offset 73128", 4, NULL),
                range("gen-0004/incr-000010", "gen-0004/incr-000020", 3000), 0, 1000, "");
}

/* Catalog records written before stop_log existed: derived from the stop
 * position and chain as the first engine names its 16 MiB log files. */
static void test_record_without_stop_log(void **state)
{
    (void)state;
    expect_span(backup(1000, "1/7000100", 2, NULL),
                range("000000020000000100000001", "000000020000000100000009", 2500), 1, 2500,
                "000000020000000100000007");
}

static void test_no_backup_no_window(void **state)
{
    (void)state;
    int64_t start = 7, end = 7;
    char seg[160] = "x";
    Tidemark__LogRange r = range("a", "b", 2000);
    Tidemark__LogRange *rs[1] = {&r};
    assert_false(tm_logs_span(NULL, 0, rs, 1, &start, &end, seg, sizeof(seg)));
    assert_int_equal(start, 0);
    assert_int_equal(end, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_log_inside_run_extends_window),
        cmocka_unit_test(test_stop_log_outside_run_stops_at_backup),
        cmocka_unit_test(test_other_engine_names),
        cmocka_unit_test(test_record_without_stop_log),
        cmocka_unit_test(test_no_backup_no_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
