/*
 * test_durable_faults.c - durable file replacement (tm_file_write_atomic,
 * tm_secret_file_write, tm_fsync_dir) with each of its write, fsync, close
 * and rename calls failed in turn by the fault shim (tests/fault/tm_fault.h,
 * linked in-process): every failure is an error naming the path and the
 * errno, the file keeps its old content, and no temp file is left. The
 * directory fsync after the rename is checked (it was ignored: a rename that
 * may not survive a crash was reported as done).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/secrets.h"
#include "common/util.h"
#include "fault/tm_fault.h"

static char dir[] = "/tmp/tm-durable-XXXXXX";
static char path[300];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/tm-durable-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    snprintf(path, sizeof(path), "%s/state", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tm_fault_disarm();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static size_t entries(void)
{
    DIR *h = opendir(dir);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(h)) != NULL;) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    closedir(h);
    return n;
}

static void assert_content(const char *want)
{
    char *got = NULL;
    tm_err err = {0};
    assert_int_equal(tm_file_read(path, &got, NULL, &err), TM_OK);
    assert_string_equal(got, want);
    free(got);
}

typedef int (*writer_fn)(const char *content, tm_err *err);

static int write_atomic(const char *content, tm_err *err)
{
    return tm_file_write_atomic(path, content, strlen(content), 0600, err);
}

static int write_secret(const char *content, tm_err *err)
{
    return tm_secret_file_write(path, content, strlen(content), 1, err);
}

/* Fail the nth call of op for every n the operation makes: each is an
 * error with the errno's text, the old content stays, no temp file. */
static void walk(writer_fn fn, const char *op, int err_no, const char *what)
{
    tm_err err = {0};
    assert_int_equal(fn("old", &err), TM_OK);
    /* How many calls of op one replacement makes. */
    assert_int_equal(tm_fault_arm(op, 0, err_no, 0, dir), 0);
    assert_int_equal(fn("old", &err), TM_OK);
    long calls = tm_fault_calls();
    assert_true(calls >= 1);
    for (long n = 1; n <= calls; n++) {
        tm_fault_arm(op, n, err_no, 0, dir);
        tm_err e = {0};
        int rc = fn("new", &e);
        tm_fault_disarm();
        assert_true(tm_fault_injected());
        if (rc == TM_OK) {
            fail_msg("%s: %s #%ld failed with %s, yet the write said ok", what, op, n,
                     strerror(err_no));
        }
        assert_int_equal(rc, tm_err_from_errno(err_no));
        assert_non_null(strstr(e.msg, dir));
        assert_non_null(strstr(e.msg, strerror(err_no)));
        assert_int_equal(entries(), 1); /* no temp file left */
        /* Before the rename the old content stays; a failed directory fsync
         * comes after it, the new content is there but not known durable. */
        char *got = NULL;
        tm_err re = {0};
        assert_int_equal(tm_file_read(path, &got, NULL, &re), TM_OK);
        assert_true(strcmp(got, "old") == 0 || strcmp(got, "new") == 0);
        free(got);
        assert_int_equal(fn("old", &e), TM_OK);
        assert_content("old");
    }
}

static void test_atomic_write_fails(void **state)
{
    (void)state;
    walk(write_atomic, "write", ENOSPC, "tm_file_write_atomic");
    walk(write_atomic, "close", EIO, "tm_file_write_atomic");
    walk(write_atomic, "rename", EDQUOT, "tm_file_write_atomic");
}

/* The file fsync and the directory fsync: two calls, both checked. */
static void test_atomic_fsync_dir_checked(void **state)
{
    (void)state;
    tm_err err = {0};
    assert_int_equal(tm_fault_arm("fsync", 0, EIO, 0, dir), 0);
    assert_int_equal(write_atomic("old", &err), TM_OK);
    assert_int_equal(tm_fault_calls(), 2);
    walk(write_atomic, "fsync", EIO, "tm_file_write_atomic");
    /* The second fsync is the directory's: the message says so. */
    tm_fault_arm("fsync", 2, EIO, 0, dir);
    assert_int_equal(write_atomic("new", &err), TM_EIO);
    tm_fault_disarm();
    assert_non_null(strstr(err.msg, "fsync directory"));
}

static void test_short_write_completes(void **state)
{
    (void)state;
    /* A short write is not an error: the rest is written. */
    tm_err err = {0};
    tm_fault_arm("write", 1, 0, 1, dir);
    assert_int_equal(write_atomic("0123456789", &err), TM_OK);
    tm_fault_disarm();
    assert_true(tm_fault_injected());
    assert_content("0123456789");
}

static void test_secret_write_fails(void **state)
{
    (void)state;
    walk(write_secret, "write", ENOSPC, "tm_secret_file_write");
    walk(write_secret, "fsync", EIO, "tm_secret_file_write");
    walk(write_secret, "close", EDQUOT, "tm_secret_file_write");
    walk(write_secret, "rename", EIO, "tm_secret_file_write");
}

static void test_fsync_dir_errors(void **state)
{
    (void)state;
    tm_err err = {0};
    assert_int_equal(tm_fsync_dir(dir, &err), TM_OK);
    char missing[320];
    snprintf(missing, sizeof(missing), "%s/absent", dir);
    assert_int_equal(tm_fsync_dir(missing, &err), TM_ENOENT);
    assert_non_null(strstr(err.msg, missing));
    tm_fault_arm("fsync", 1, ENOSPC, 0, dir);
    assert_int_equal(tm_fsync_dir(dir, &err), TM_ENOSPC);
    tm_fault_disarm();
    assert_non_null(strstr(err.msg, "fsync directory"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_atomic_write_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_atomic_fsync_dir_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_write_completes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_write_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_dir_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
