/*
 * test_sqlite_copy.c - tm_sqlite_copy of a database a writer process
 * commits to all along: the copy is consistent (its rows match its counter,
 * integrity_check ok), it is of one moment, it is paced (many steps) yet
 * finishes while the writer commits (a plain stepwise backup restarts on
 * every commit), the writer is never blocked long, the file is 0600, and an
 * existing destination or a missing source is refused without harm.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "agent/engines/sqlite/copy.h"
#include "agent/engines/sqlite/db.h"
#include "sqlite_fixture.h"

static void check_copy(const char *path, int64_t *rows_out)
{
    sqlite3 *s = NULL;
    assert_int_equal(sqlite3_open(path, &s), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(s, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    int64_t rows = sq_int(s, "SELECT count(*) FROM t"), n = sq_int(s, "SELECT n FROM c");
    sqlite3_close(s);
    /* One moment: rows and counter agree. */
    assert_int_equal(rows, n);
    *rows_out = rows;
}

static void paced_under_writer(void **state)
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
    snprintf(dest, sizeof(dest), "%s/copy.db", f.dir);
    tm_sqlite_copy_opts o = {.pages_per_step = 16, .sleep_ms = 2};
    tm_sqlite_copy_info info;
    int64_t t0 = sq_now_ms();
    int rc = tm_sqlite_copy_conn(c, dest, &o, &info, &err);
    int64_t took = sq_now_ms() - t0;
    if (rc != 0) {
        fail_msg("%s", err.msg);
    }
    int64_t live_after = sq_int(c, "SELECT n FROM c");
    sqlite3_close(c);
    int64_t worst = -1, commits = -1;
    assert_int_equal(sq_writer_stop(&f, &worst, &commits), 0);
    print_message("copy: %llu pages in %u steps, %lld ms; writer: %lld commits, worst %lld ms\n",
                  (unsigned long long)info.pages, info.steps, (long long)took, (long long)commits,
                  (long long)worst);
    assert_true(info.steps > 50);
    assert_int_equal(info.page_size, 4096);
    assert_true(info.bytes > 4u << 20);
    struct stat st;
    assert_int_equal(stat(dest, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal((uint64_t)st.st_size, info.bytes);
    int64_t rows = 0;
    check_copy(dest, &rows);
    assert_true(rows >= 3000);
    assert_true(live_after > rows); /* the writer went on during the copy */
    /* Generous for a shared machine: the point is no stall of the copy's length. */
    assert_true(worst < 1000);
    sq_fx_free(&f);
}

static void by_path(void **state)
{
    (void)state;
    sq_fx f;
    assert_int_equal(sq_fx_new(&f, 200, 100), 0);
    assert_int_equal(sq_writer_start(&f, 1000, 1000), 0);
    usleep(50000);
    char dest[200], tmp[220];
    snprintf(dest, sizeof(dest), "%s/copy.db", f.dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", dest);
    /* A leftover temporary file of a killed copy does not stop the next. */
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fputs("junk", fp);
    fclose(fp);
    tm_err err = {0};
    uint64_t bytes = 0;
    int rc = tm_sqlite_copy(f.db, dest, &bytes, &err);
    if (rc != 0) {
        fail_msg("%s", err.msg);
    }
    int64_t worst = -1, commits = -1;
    assert_int_equal(sq_writer_stop(&f, &worst, &commits), 0);
    assert_true(bytes > 0);
    assert_int_equal(access(tmp, F_OK), -1);
    int64_t rows = 0;
    check_copy(dest, &rows);
    assert_true(rows > 200);
    /* The copy's connection never checkpoints on close: with no other
     * connection open, a WAL with frames stays as it is. */
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open(f.db, &c), SQLITE_OK);
    sqlite3_db_config(c, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    assert_int_equal(sq_exec(c, "PRAGMA wal_autocheckpoint=0; INSERT INTO t VALUES(-1, 0, 'x')"),
                     SQLITE_OK);
    sqlite3_close(c);
    char wal[200], d3[200];
    snprintf(wal, sizeof(wal), "%s-wal", f.db);
    snprintf(d3, sizeof(d3), "%s/c3.db", f.dir);
    struct stat w0, w1;
    assert_int_equal(stat(wal, &w0), 0);
    assert_true(w0.st_size > 0);
    assert_int_equal(tm_sqlite_copy(f.db, d3, NULL, &err), 0);
    assert_int_equal(stat(wal, &w1), 0);
    assert_int_equal(w1.st_size, w0.st_size);
    assert_int_equal(w1.st_ino, w0.st_ino);

    /* Never over an existing file. */
    assert_int_equal(tm_sqlite_copy(f.db, dest, NULL, &err), TM_EEXIST);
    assert_non_null(strstr(err.msg, "exists"));
    check_copy(dest, &rows);
    /* A missing source is an error, never a new empty database. */
    char gone[200], d2[200];
    snprintf(gone, sizeof(gone), "%s/none.db", f.dir);
    snprintf(d2, sizeof(d2), "%s/c2.db", f.dir);
    assert_int_equal(tm_sqlite_copy(gone, d2, NULL, &err), TM_ENOENT);
    assert_non_null(strstr(err.msg, "none.db"));
    assert_int_equal(access(gone, F_OK), -1);
    assert_int_equal(access(d2, F_OK), -1);
    sq_fx_free(&f);
}

static void not_wal_refused_by_open(void **state)
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
    /* tm_sqlite_copy copies whatever the mode, and leaves it alone. */
    char dest[200];
    snprintf(dest, sizeof(dest), "%s/copy.db", f.dir);
    assert_int_equal(tm_sqlite_copy(f.db, dest, NULL, &err), 0);
    int64_t rows = 0;
    check_copy(dest, &rows);
    assert_int_equal(rows, 10);
    assert_int_equal(tm_sqlite_db_open(f.db, 1000, 1, &c, &err), 0);
    assert_int_equal(sq_int(c, "SELECT count(*) FROM t"), 10);
    sqlite3_close(c);
    sq_fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(paced_under_writer),
        cmocka_unit_test(by_path),
        cmocka_unit_test(not_wal_refused_by_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
