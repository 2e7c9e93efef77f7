/*
 * test_sqlite_in_use.c - when a SQLite database is live (in_use.c): a
 * process (here: this one) has the file or its -wal/-shm open, found by
 * device and inode also after a rename; a closed database is not; a
 * directory holding an open database (or a -wal) is in use, a plain file
 * open there does not make it so.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "agent/engines/sqlite/sqlite.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/tm-sqlite-inuse-XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd);
}

static sqlite3 *open_wal(const char *path)
{
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open(path, &c), SQLITE_OK);
    assert_int_equal(sqlite3_exec(c,
                                  "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(x);"
                                  "INSERT INTO t VALUES (1);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    return c;
}

static void test_file_live(void **state)
{
    (void)state;
    char db[128], moved[128], why[512];
    snprintf(db, sizeof(db), "%s/a.db", dir);
    snprintf(moved, sizeof(moved), "%s/b.db", dir);
    assert_int_equal(tm_sqlite_file_live(db, why, sizeof(why)), 0); /* nothing there */
    sqlite3 *c = open_wal(db);
    assert_int_equal(tm_sqlite_file_live(db, why, sizeof(why)), 1);
    char pid[32];
    snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
    assert_non_null(strstr(why, pid));
    assert_non_null(strstr(why, "live"));
    /* Its -wal/-shm stay open under their names after the file moves. */
    assert_int_equal(rename(db, moved), 0);
    assert_int_equal(tm_sqlite_file_live(db, why, sizeof(why)), 1);
    assert_int_equal(sqlite3_close(c), SQLITE_OK);
    assert_int_equal(tm_sqlite_file_live(moved, why, sizeof(why)), 0);
}

static void test_dir_in_use(void **state)
{
    (void)state;
    char sub[128], db[160], txt[160], why[512];
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(txt, sizeof(txt), "%s/notes.txt", sub);
    int fd = open(txt, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "hello", 5), 5);
    assert_int_equal(tm_sqlite_in_use(dir, why, sizeof(why)), 0); /* not a database */
    snprintf(db, sizeof(db), "%s/c.db", sub);
    sqlite3 *c = open_wal(db);
    assert_int_equal(tm_sqlite_in_use(dir, why, sizeof(why)), 1); /* beneath it */
    assert_non_null(strstr(why, "c.db"));
    assert_int_equal(tm_sqlite_in_use(sub, why, sizeof(why)), 1);
    char other[128];
    snprintf(other, sizeof(other), "%s/subway", dir); /* a prefix that is not a parent */
    assert_int_equal(tm_sqlite_in_use(other, why, sizeof(why)), 0);
    assert_int_equal(sqlite3_close(c), SQLITE_OK);
    assert_int_equal(tm_sqlite_in_use(dir, why, sizeof(why)), 0);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_live),
        cmocka_unit_test(test_dir_in_use),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
