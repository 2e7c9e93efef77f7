/*
 * test_sqlite_snapshot.c - the paced snapshot of a database a writer
 * process commits to all along: the copy is consistent (its rows match its
 * counter, integrity_check ok), it is the snapshot of one moment, it is
 * paced (many steps) yet finishes while the writer commits (a plain
 * stepwise backup would restart on every commit), and the writer is never
 * blocked long. Also: a database not in WAL mode is refused unless set_wal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "agent/engines/sqlite/db.h"
#include "agent/engines/sqlite/snapshot.h"
#include "sqlite_fixture.h"

static void consistent_under_writer(void **state)
{
    (void)state;
    sq_fx f;
    assert_int_equal(sq_fx_new(&f, 3000, 1500), 0); /* ~5 MB */
    assert_int_equal(sq_writer_start(&f, 500, 1000), 0);
    usleep(100000);

    sqlite3 *c = NULL;
    tm_err err = {0};
    assert_int_equal(tm_sqlite_db_open(f.db, 5000, 0, &c, &err), 0);
    char dest[200];
    snprintf(dest, sizeof(dest), "%s/snap.db", f.dir);
    tm_sqlite_snap_opts o = {.pages_per_step = 16, .sleep_ms = 2};
    tm_sqlite_snap_info info;
    int64_t t0 = sq_now_ms();
    int rc = tm_sqlite_snapshot(c, dest, &o, &info, &err);
    int64_t took = sq_now_ms() - t0;
    if (rc != 0) {
        fail_msg("%s", err.msg);
    }
    int64_t live_after = sq_int(c, "SELECT n FROM c");
    sqlite3_close(c);
    int64_t worst = -1, commits = -1;
    assert_int_equal(sq_writer_stop(&f, &worst, &commits), 0);
    print_message(
        "snapshot: %llu pages in %u steps, %lld ms; writer: %lld commits, worst %lld ms\n",
        (unsigned long long)info.pages, info.steps, (long long)took, (long long)commits,
        (long long)worst);
    assert_true(info.steps > 50);
    assert_int_equal(info.page_size, 4096);
    assert_true(info.bytes > 4u << 20);

    sqlite3 *s = NULL;
    assert_int_equal(sqlite3_open(dest, &s), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(s, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    int64_t rows = sq_int(s, "SELECT count(*) FROM t"), n = sq_int(s, "SELECT n FROM c");
    sqlite3_close(s);
    /* One moment: rows and counter agree; the writer went on after it. */
    assert_int_equal(rows, n);
    assert_true(n >= 3000);
    assert_true(live_after > n);
    /* Generous for a shared machine: the point is no stall of the copy's length. */
    assert_true(worst < 1000);
    sq_fx_free(&f);
}

static void not_wal_refused(void **state)
{
    (void)state;
    sq_fx f;
    assert_int_equal(sq_fx_new(&f, 10, 10), 0);
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open(f.db, &c), SQLITE_OK);
    assert_int_equal(sq_exec(c, "PRAGMA journal_mode=DELETE"), SQLITE_OK);
    sqlite3_close(c);
    tm_err err = {0};
    assert_int_equal(tm_sqlite_db_open(f.db, 1000, 0, &c, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "not WAL"));
    assert_non_null(strstr(err.msg, "set_wal"));
    assert_int_equal(tm_sqlite_db_open(f.db, 1000, 1, &c, &err), 0);
    assert_int_equal(sq_int(c, "SELECT count(*) FROM t"), 10);
    sqlite3_close(c);
    assert_int_equal(sqlite3_open(f.db, &c), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(c, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(c);
    /* A file that is not there is not created. */
    char gone[200];
    snprintf(gone, sizeof(gone), "%s/none.db", f.dir);
    assert_int_equal(tm_sqlite_db_open(gone, 1000, 1, &c, &err), TM_ENOENT);
    assert_int_equal(access(gone, F_OK), -1);
    sq_fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(consistent_under_writer),
        cmocka_unit_test(not_wal_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
