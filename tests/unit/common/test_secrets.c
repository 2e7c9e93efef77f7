/*
 * test_secrets.c - secrets at rest and in memory: token comparison, secret
 * file creation and mode checks, the agent identity file, core dumps off.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/identity.h"
#include "common/secrets.h"
#include "common/util.h"

static char dir[] = "/tmp/tm-secrets-XXXXXX";

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/tm-secrets-XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static size_t entries(const char *d)
{
    DIR *h = opendir(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(h)) != NULL;) {
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    }
    closedir(h);
    return n;
}

static void test_str_eq_ct(void **state)
{
    (void)state;
    assert_true(
        tm_str_eq_ct("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"));
    assert_false(
        tm_str_eq_ct("0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdeF"));
    /* A prefix, a longer string, the empty string, NULL: all unequal. */
    assert_false(tm_str_eq_ct("0123456789abcdef", "0123456789abcdef0123456789abcdef"));
    assert_false(
        tm_str_eq_ct("0123456789abcdef0123456789abcdef0", "0123456789abcdef0123456789abcdef"));
    assert_false(tm_str_eq_ct("", "x"));
    assert_true(tm_str_eq_ct("", ""));
    assert_false(tm_str_eq_ct(NULL, "x"));
    assert_false(tm_str_eq_ct("x", NULL));
}

static void test_secret_file_write(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/token", dir);
    mode_t old = umask(0); /* the mode must not depend on the umask */
    tm_err err = {0};
    assert_int_equal(tm_secret_file_write(path, "one\n", 4, 0, &err), TM_OK);
    umask(old);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    /* No replace: refused, content kept, no temporary left behind. */
    assert_int_equal(tm_secret_file_write(path, "two\n", 4, 0, &err), TM_EEXIST);
    char *got = NULL;
    size_t len = 0;
    assert_int_equal(tm_file_read(path, &got, &len, &err), TM_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(got, "one\n", 4);
    free(got);
    assert_int_equal(entries(dir), 1);
    /* Replace: atomic rename over it. */
    assert_int_equal(tm_secret_file_write(path, "three\n", 6, 1, &err), TM_OK);
    assert_int_equal(tm_file_read(path, &got, &len, &err), TM_OK);
    assert_int_equal(len, 6);
    free(got);
    assert_int_equal(entries(dir), 1);
}

static void test_secret_file_check(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof(path), "%s/key", dir);
    tm_err err = {0};
    assert_int_equal(tm_secret_file_write(path, "k", 1, 0, &err), TM_OK);
    assert_int_equal(tm_secret_file_check(path, "master key", TM_SECRET_REFUSE, &err), TM_OK);
    static const mode_t bad[] = {0640, 0604, 0660, 0644, 0620};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(chmod(path, bad[i]), 0);
        assert_int_equal(tm_secret_file_check(path, "master key", TM_SECRET_REFUSE, &err),
                         TM_ECONFIG);
        assert_non_null(strstr(err.msg, "chmod 600"));
        assert_int_equal(tm_secret_file_check(path, "token file", TM_SECRET_WARN, &err), TM_OK);
    }
    /* A directory is not a secret file. */
    assert_int_equal(tm_secret_file_check(dir, "master key", TM_SECRET_REFUSE, &err), TM_ECONFIG);
}

static void test_identity_file(void **state)
{
    (void)state;
    tm_identity id = {0}, back = {0};
    snprintf(id.id, sizeof(id.id), "agt-0123456789abcdef");
    snprintf(id.secret, sizeof(id.secret), "%064d", 7);
    tm_err err = {0};
    assert_int_equal(tm_identity_save(dir, &id, &err), TM_OK);
    char path[256];
    snprintf(path, sizeof(path), "%s/identity", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(tm_identity_load(dir, &back, &err), TM_OK);
    assert_string_equal(back.id, id.id);
    /* Readable by others: refused (whoever reads it can act as this agent). */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(tm_identity_load(dir, &back, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "agent identity"));
    /* Saving again replaces it, 0600 again. */
    assert_int_equal(tm_identity_save(dir, &id, &err), TM_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(tm_identity_load(dir, &back, &err), TM_OK);
}

static void test_harden_process(void **state)
{
    (void)state;
    tm_secrets_harden_process();
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_CORE, &rl), 0);
    assert_int_equal(rl.rlim_cur, 0);
    assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_str_eq_ct),
        cmocka_unit_test_setup_teardown(test_secret_file_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_file_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_file, setup, teardown),
        cmocka_unit_test(test_harden_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
