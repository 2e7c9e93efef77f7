/*
 * test_restore_root.c - the restore-root facility (agent/restore_root.c) on
 * a real file system: the manifest path validator, opening beneath the root
 * without following links (openat2 where the kernel has it, and the openat
 * walk, forced in a child with TM_RESTORE_NO_OPENAT2=1), declared links,
 * the in-use check, restore_roots, the minimal server environment, and the
 * postgresql.auto.conf quoting of the PostgreSQL engine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/engines/postgres/pg.h"
#include "agent/restore_root.h"

static char base[256]; /* short: paths below it fit PATH_MAX */

static int ok_path(const char *p)
{
    tm_err e = {0};
    return tm_restore_path_check(p, strlen(p), &e) == TM_OK;
}

static void test_path_check(void **state)
{
    (void)state;
    assert_true(ok_path("PG_VERSION"));
    assert_true(ok_path("base/5/16384"));
    assert_true(ok_path("pg_tblspc/16385/PG_15_202209061/5/16390"));
    assert_true(ok_path("..hidden/x..y/.z"));
    assert_false(ok_path(""));
    assert_false(ok_path("/etc/passwd"));
    assert_false(ok_path("../x"));
    assert_false(ok_path("base/../../x"));
    assert_false(ok_path("base/.."));
    assert_false(ok_path("./x"));
    assert_false(ok_path("a/./b"));
    assert_false(ok_path("a//b"));
    assert_false(ok_path("a/"));
    assert_false(ok_path("a\nb"));
    assert_false(ok_path("a\x7f"));
    char longname[300];
    memset(longname, 'n', 256);
    longname[256] = '\0';
    assert_false(ok_path(longname));
    longname[255] = '\0';
    assert_true(ok_path(longname));
    char longpath[1100];
    for (size_t i = 0; i < 1030; i += 2) {
        longpath[i] = 'a';
        longpath[i + 1] = '/';
    }
    longpath[1029] = 'a';
    longpath[1030] = '\0';
    assert_false(ok_path(longpath));
    /* A NUL inside the bytes of an entry (counted by len). */
    tm_err e = {0};
    assert_int_equal(tm_restore_path_check("base/1\0/../../x", 15, &e), TM_EINVAL);
    assert_non_null(strstr(e.msg, "NUL"));
    assert_non_null(strstr(e.msg, "manifest entry 'base/1\\x00/../../x'"));
    assert_int_equal(tm_restore_path_check("../../etc/cron.d/x", 18, &e), TM_EINVAL);
    assert_non_null(strstr(e.msg, "'../../etc/cron.d/x'"));

    assert_int_equal(tm_restore_dir_check("d", "/srv/restore", &e), TM_OK);
    assert_int_equal(tm_restore_dir_check("d", "/srv/restore/", &e), TM_OK);
    assert_int_equal(tm_restore_dir_check("d", "srv", &e), TM_EINVAL);
    assert_int_equal(tm_restore_dir_check("d", "/", &e), TM_EINVAL);
    assert_int_equal(tm_restore_dir_check("d", "/srv/../etc", &e), TM_EINVAL);
    assert_int_equal(tm_restore_dir_check("d", "/srv//x", &e), TM_EINVAL);
}

static void test_conf_quote(void **state)
{
    (void)state;
    char *q = NULL;
    tm_err e = {0};
    assert_int_equal(tm_pg_conf_quote("v", "2026-01-02 03:04:05+00", &q, &e), TM_OK);
    assert_string_equal(q, "'2026-01-02 03:04:05+00'");
    free(q);
    assert_int_equal(tm_pg_conf_quote("v", "a'b\\c", &q, &e), TM_OK);
    assert_string_equal(q, "'a''b\\\\c'");
    free(q);
    /* A trailing backslash must not escape the closing quote. */
    assert_int_equal(tm_pg_conf_quote("v", "x\\", &q, &e), TM_OK);
    assert_string_equal(q, "'x\\\\'");
    free(q);
    q = (char *)1;
    assert_int_equal(tm_pg_conf_quote("--time", "2026-01-01\narchive_command = 'x'", &q, &e),
                     TM_EINVAL);
    assert_null(q);
    assert_non_null(strstr(e.msg, "--time"));
    assert_int_equal(tm_pg_conf_quote("v", "a\rb", &q, &e), TM_EINVAL);
    assert_int_equal(tm_pg_conf_quote("v", "a\tb", &q, &e), TM_EINVAL);
}

static int only_pg_wal(const char *rel)
{
    return strcmp(rel, "pg_wal") == 0;
}

static int dir_entries(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL) {
        return -1;
    }
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    }
    closedir(d);
    return n;
}

/* The escapes, in a fresh directory named tag; returns the number of checks
 * that failed (0 = all held), so it can run in a child too. */
static int confinement(const char *tag)
{
    int bad = 0;
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s: check failed at line %d: %s\n", tag, __LINE__, #c);               \
            bad++;                                                                                 \
        }                                                                                          \
    } while (0)
    char root[PATH_MAX], canary[PATH_MAX], p[PATH_MAX + 64], wal[PATH_MAX];
    snprintf(root, sizeof(root), "%s/%s-root", base, tag);
    snprintf(canary, sizeof(canary), "%s/%s-canary", base, tag);
    snprintf(wal, sizeof(wal), "%s/%s-wal", base, tag);
    mkdir(canary, 0755);
    tm_restore_root_opts o = {.link_ok = only_pg_wal};
    tm_restore_root *r = NULL;
    tm_err e = {0};
    CHECK(tm_restore_root_new(root, &o, &r, &e) == TM_OK);
    if (r == NULL) {
        return bad + 1;
    }
    /* Links planted inside the root (as a hostile old copy or user might). */
    snprintf(p, sizeof(p), "%s/evil", root);
    CHECK(symlink(canary, p) == 0);
    snprintf(p, sizeof(p), "%s/evilfile", root);
    char cf[PATH_MAX + 16];
    snprintf(cf, sizeof(cf), "%s/victim", canary);
    int vfd = open(cf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(vfd >= 0 && write(vfd, "live", 4) == 4);
    close(vfd);
    CHECK(symlink(cf, p) == 0);
    int fd = -1;
    CHECK(tm_restore_root_create(r, "evil/x", &fd, &e) != TM_OK);
    CHECK(strstr(e.msg, "evil/x") != NULL);
    CHECK(tm_restore_root_create(r, "evilfile", &fd, &e) != TM_OK);
    CHECK(tm_restore_root_mkdir(r, "evil", 0700, &e) != TM_OK);
    CHECK(tm_restore_root_mkdir(r, "evil/sub", 0700, &e) != TM_OK);
    CHECK(tm_restore_root_write(r, "evil/f", "x", 1, 0600, &e) != TM_OK);
    CHECK(tm_restore_root_create(r, "../escape", &fd, &e) == TM_EINVAL);
    CHECK(tm_restore_root_create(r, "/tmp/escape", &fd, &e) == TM_EINVAL);
    /* An undeclared link is refused, whatever its target. */
    CHECK(tm_restore_root_link(r, "pg_tblspc/1", canary, 0, &e) != TM_OK);
    CHECK(strstr(e.msg, "pg_tblspc/1") != NULL);
    /* The canary is untouched: one file, its content. */
    CHECK(dir_entries(canary) == 1);
    char buf[8] = {0};
    vfd = open(cf, O_RDONLY);
    CHECK(vfd >= 0 && read(vfd, buf, sizeof(buf)) == 4 && memcmp(buf, "live", 4) == 0);
    close(vfd);
    /* Normal writes work, with modes through the descriptor. */
    CHECK(tm_restore_root_mkdir(r, "base", 0750, &e) == TM_OK);
    CHECK(tm_restore_root_create(r, "base/1", &fd, &e) == TM_OK);
    if (fd >= 0) {
        CHECK(write(fd, "data", 4) == 4);
        CHECK(tm_restore_root_attrs(r, fd, "base/1", 0640, 1000000000, &e) == TM_OK);
        close(fd);
    }
    struct stat st;
    snprintf(p, sizeof(p), "%s/base/1", root);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0640 && st.st_mtime == 1000000000);
    snprintf(p, sizeof(p), "%s/base", root);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0750);
    /* A declared link: to a non-empty directory refused, to an empty one
     * made, and paths below it land there. */
    CHECK(tm_restore_root_link(r, "pg_wal", canary, 0, &e) == TM_EEXIST);
    CHECK(tm_restore_root_link(r, "pg_wal", wal, 0, &e) == TM_OK);
    CHECK(tm_restore_root_create(r, "pg_wal/000000010000000000000001", &fd, &e) == TM_OK);
    if (fd >= 0) {
        close(fd);
    }
    snprintf(p, sizeof(p), "%s/000000010000000000000001", wal);
    CHECK(access(p, F_OK) == 0);
    CHECK(tm_restore_root_mkdir(r, "pg_wal/archive_status", 0700, &e) == TM_OK);
    snprintf(p, sizeof(p), "%s/archive_status", wal);
    CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode));
    /* A link planted below the declared link's directory is not followed. */
    snprintf(p, sizeof(p), "%s/planted", wal);
    CHECK(symlink(canary, p) == 0);
    CHECK(tm_restore_root_create(r, "pg_wal/planted/x", &fd, &e) != TM_OK);
    CHECK(dir_entries(canary) == 1);
    /* Small atomic files and removal. */
    CHECK(tm_restore_root_write(r, "backup_label", "LABEL\n", 6, 0600, &e) == TM_OK);
    CHECK(tm_restore_root_remove(r, "base/1", 0, &e) == TM_OK);
    CHECK(tm_restore_root_remove(r, "evil", 0, &e) == TM_OK); /* the link, not the canary */
    CHECK(dir_entries(canary) == 1);
    tm_restore_root_free(r);
    /* The root itself may not be a symbolic link. */
    snprintf(p, sizeof(p), "%s/%s-rootlink", base, tag);
    CHECK(symlink(canary, p) == 0);
    CHECK(tm_restore_root_new(p, &o, &r, &e) != TM_OK);
    return bad;
#undef CHECK
}

static void test_confinement(void **state)
{
    (void)state;
    assert_int_equal(confinement(tm_restore_root_uses_openat2() ? "openat2" : "walk"), 0);
}

static void test_confinement_openat_walk(void **state)
{
    (void)state;
    /* The fallback for kernels without openat2: this program again (the
     * probe runs once per process), told to use the openat walk. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("TM_RESTORE_NO_OPENAT2", "1", 1);
        execl("/proc/self/exe", "test_restore_root", "--walk", base, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_busy_and_roots(void **state)
{
    (void)state;
    char d[PATH_MAX], p[PATH_MAX + 32];
    snprintf(d, sizeof(d), "%s/pgdata", base);
    mkdir(d, 0700);
    tm_err e = {0};
    assert_int_equal(tm_restore_dir_busy(d, &e), TM_OK);
    snprintf(p, sizeof(p), "%s/postmaster.pid", d);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "%d\n%s\n", (int)getpid(), d);
    fclose(f);
    assert_int_equal(tm_restore_dir_busy(d, &e), TM_EBUSY);
    assert_non_null(strstr(e.msg, "postmaster.pid"));
    f = fopen(p, "w");
    fprintf(f, "999999999\n");
    fclose(f);
    assert_int_equal(tm_restore_dir_busy(d, &e), TM_OK); /* stale */

    char *roots[] = {d};
    assert_int_equal(tm_restore_under_roots("x", d, roots, 1, &e), TM_OK);
    snprintf(p, sizeof(p), "%s/sub/deeper", d);
    assert_int_equal(tm_restore_under_roots("x", p, roots, 1, &e), TM_OK);
    snprintf(p, sizeof(p), "%sx", d); /* a sibling sharing the prefix */
    assert_int_equal(tm_restore_under_roots("x", p, roots, 1, &e), TM_EPERM);
    assert_non_null(strstr(e.msg, "restore_roots"));
    /* Through a link inside the root to elsewhere: outside. */
    snprintf(p, sizeof(p), "%s/out", d);
    assert_int_equal(symlink("/tmp", p), 0);
    snprintf(p, sizeof(p), "%s/out/x", d);
    assert_int_equal(tm_restore_under_roots("x", p, roots, 1, &e), TM_EPERM);
    assert_int_equal(tm_restore_under_roots("x", "/etc", roots, 1, &e), TM_EPERM);
    snprintf(p, sizeof(p), "%s/../x", d);
    assert_int_equal(tm_restore_under_roots("x", p, roots, 1, &e), TM_EINVAL);
}

static void test_env(void **state)
{
    (void)state;
    setenv("TM_TEST_SECRET_MASTER_KEY", "s3cret", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "s3cret", 1);
    setenv("LC_ALL", "C", 1);
    setenv("TZ", "UTC", 1);
    char **env = NULL;
    tm_err e = {0};
    const char *const extra[] = {"PGDATA=/srv/x", NULL};
    assert_int_equal(tm_restore_env_new("root", extra, &env, &e), TM_OK);
    int path = 0, pgdata = 0, lc = 0, tz = 0, home = 0;
    for (char **v = env; *v; v++) {
        assert_null(strstr(*v, "s3cret"));
        path |= strncmp(*v, "PATH=", 5) == 0;
        pgdata |= strcmp(*v, "PGDATA=/srv/x") == 0;
        lc |= strcmp(*v, "LC_ALL=C") == 0;
        tz |= strcmp(*v, "TZ=UTC") == 0;
        home |= strncmp(*v, "HOME=", 5) == 0;
    }
    assert_true(path && pgdata && lc && tz && home);
    tm_restore_env_free(env);
}

static int setup(void **state)
{
    (void)state;
    snprintf(base, sizeof(base), "/tmp/tm-rroot-XXXXXX");
    return mkdtemp(base) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--walk") == 0) {
        snprintf(base, sizeof(base), "%s", argv[2]);
        int bad = tm_restore_root_uses_openat2() ? 100 : confinement("walk");
        return bad > 100 ? 100 : bad;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_check),     cmocka_unit_test(test_conf_quote),
        cmocka_unit_test(test_confinement),    cmocka_unit_test(test_confinement_openat_walk),
        cmocka_unit_test(test_busy_and_roots), cmocka_unit_test(test_env),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
