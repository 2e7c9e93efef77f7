/*
 * test_storage_posix.c - the posix backend through the storage.h interface:
 * put/get/ranged get, list order and pagination, stat, delete, copy, bad
 * keys, abort, and a writer killed with SIGKILL mid-object.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "common/storage.h"

typedef struct fixture {
    char dir[256];
    tm_storage *s;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/tm-posix-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char root[300];
    snprintf(root, sizeof(root), "%s/repo", f->dir); /* created by open */
    tm_storage_opts o = {.backend = "posix", .path = root};
    tm_err err = {0};
    assert_int_equal(tm_storage_open(&f->s, &o, &err), TM_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tm_storage_free(f->s);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void test_put_get_stat(void **state)
{
    fixture *f = *state;
    tm_err err = {0};
    assert_string_equal(tm_storage_describe(f->s) + strlen("posix:"),
                        strcat(strcpy((char[300]){0}, f->dir), "/repo"));
    assert_int_equal(tm_storage_put(f->s, "a/b/c", "hello world", 11, &err), TM_OK);
    void *buf;
    size_t len;
    assert_int_equal(tm_storage_get(f->s, "a/b/c", &buf, &len, &err), TM_OK);
    assert_int_equal(len, 11);
    assert_memory_equal(buf, "hello world", 11);
    free(buf);
    tm_storage_info info;
    assert_int_equal(tm_storage_stat(f->s, "a/b/c", &info, &err), TM_OK);
    assert_int_equal(info.size, 11);
    assert_true(info.mtime > 0);
    assert_int_equal(tm_storage_stat(f->s, "a/b/missing", &info, &err), TM_ENOENT);
    assert_non_null(strstr(err.msg, "a/b/missing"));
    assert_int_equal(tm_storage_stat(f->s, "a/b", &info, &err), TM_ENOENT); /* a directory */
    /* overwrite */
    assert_int_equal(tm_storage_put(f->s, "a/b/c", "x", 1, &err), TM_OK);
    assert_int_equal(tm_storage_get(f->s, "a/b/c", &buf, &len, &err), TM_OK);
    assert_int_equal(len, 1);
    free(buf);
    /* empty object */
    assert_int_equal(tm_storage_put(f->s, "empty", "", 0, &err), TM_OK);
    assert_int_equal(tm_storage_get(f->s, "empty", &buf, &len, &err), TM_OK);
    assert_int_equal(len, 0);
    free(buf);
}

static void read_range(tm_storage *s, const char *key, uint64_t off, uint64_t length, char *out,
                       size_t *n)
{
    tm_err err = {0};
    tm_storage_reader *r;
    assert_int_equal(tm_storage_get_open(s, key, off, length, &r, &err), TM_OK);
    *n = 0;
    for (;;) {
        size_t got;
        assert_int_equal(tm_storage_read(r, out + *n, 3, &got, &err), TM_OK); /* small reads */
        if (got == 0) {
            break;
        }
        *n += got;
    }
    tm_storage_get_close(r);
}

static void test_ranged_get(void **state)
{
    fixture *f = *state;
    tm_err err = {0};
    const char *data = "0123456789abcdefghij";
    assert_int_equal(tm_storage_put(f->s, "r", data, 20, &err), TM_OK);
    char out[64];
    size_t n;
    read_range(f->s, "r", 5, 4, out, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(out, "5678", 4);
    read_range(f->s, "r", 15, 0, out, &n);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "fghij", 5);
    read_range(f->s, "r", 18, 100, out, &n);
    assert_int_equal(n, 2);
    read_range(f->s, "r", 40, 0, out, &n);
    assert_int_equal(n, 0);
    tm_storage_reader *r;
    assert_int_equal(tm_storage_get_open(f->s, "nope", 0, 0, &r, &err), TM_ENOENT);
}

static void test_streaming_write_and_abort(void **state)
{
    fixture *f = *state;
    tm_err err = {0};
    tm_storage_writer *w;
    assert_int_equal(tm_storage_put_open(f->s, "s/obj", &w, &err), TM_OK);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(tm_storage_write(w, "abcdefghij", 10, &err), TM_OK);
    }
    /* not visible before commit */
    tm_storage_info info;
    assert_int_equal(tm_storage_stat(f->s, "s/obj", &info, &err), TM_ENOENT);
    assert_int_equal(tm_storage_put_commit(w, &err), TM_OK);
    assert_int_equal(tm_storage_stat(f->s, "s/obj", &info, &err), TM_OK);
    assert_int_equal(info.size, 1000);

    assert_int_equal(tm_storage_put_open(f->s, "s/aborted", &w, &err), TM_OK);
    assert_int_equal(tm_storage_write(w, "zzz", 3, &err), TM_OK);
    tm_storage_put_abort(w);
    assert_int_equal(tm_storage_stat(f->s, "s/aborted", &info, &err), TM_ENOENT);
    /* nothing left on disk either: only obj in s/ */
    char path[400];
    snprintf(path, sizeof(path), "%s/repo/s", f->dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
            count++;
            assert_string_equal(de->d_name, "obj");
        }
    }
    closedir(d);
    assert_int_equal(count, 1);
}

static void test_bad_keys(void **state)
{
    fixture *f = *state;
    tm_err err = {0};
    const char *bad[] = {"",    "/abs",  "a//b", "a/../b", "..",           "a/..",
                         "./a", "a/./b", "a/",   "a/.",    "x/.tmp.y.123", ".tmp.z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tm_storage_put(f->s, bad[i], "x", 1, &err), TM_EINVAL);
        tm_storage_info info;
        assert_int_equal(tm_storage_stat(f->s, bad[i], &info, &err), TM_EINVAL);
    }
    assert_int_equal(tm_storage_put(f->s, NULL, "x", 1, &err), TM_EINVAL);
    const char *keys[] = {"ok", "../x"};
    assert_int_equal(tm_storage_delete(f->s, keys, 2, &err), TM_EINVAL);
    assert_int_equal(tm_storage_copy(f->s, "ok", "/x", &err), TM_EINVAL);
    /* odd but valid */
    assert_int_equal(tm_storage_put(f->s, "a..b/.hidden/x y", "x", 1, &err), TM_OK);
}

static void test_list_order_and_pagination(void **state)
{
    fixture *f = *state;
    tm_err err = {0};
    /* Lexical order across directories: "a.b" < "a/..." < "a0" ('.' < '/' < '0'). */
    const char *keys[] = {"p/a0", "p/a/z", "p/a.b", "p/a/b/c", "p/b", "q/x", "p/a/b0"};
    const char *want[] = {"p/a.b", "p/a/b/c", "p/a/b0", "p/a/z", "p/a0", "p/b"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        assert_int_equal(tm_storage_put(f->s, keys[i], "12", 2, &err), TM_OK);
    }
    /* a temp file of an in-flight put is not listed */
    tm_storage_writer *w;
    assert_int_equal(tm_storage_put_open(f->s, "p/a/inflight", &w, &err), TM_OK);

    for (size_t page = 1; page <= 7; page++) {
        char *token = NULL;
        size_t seen = 0;
        for (;;) {
            tm_storage_info *items;
            size_t n;
            char *next;
            assert_int_equal(tm_storage_list(f->s, "p/", token, page, &items, &n, &next, &err),
                             TM_OK);
            free(token);
            assert_true(n <= page);
            for (size_t i = 0; i < n; i++) {
                assert_true(seen < 6);
                assert_string_equal(items[i].key, want[seen]);
                assert_int_equal(items[i].size, 2);
                seen++;
            }
            tm_storage_infos_free(items, n);
            if (next == NULL) {
                break;
            }
            token = next;
        }
        assert_int_equal(seen, 6);
    }
    tm_storage_put_abort(w);
    /* prefix that is not a directory boundary */
    tm_storage_info *items;
    size_t n;
    char *next;
    assert_int_equal(tm_storage_list(f->s, "p/a/b", NULL, 100, &items, &n, &next, &err), TM_OK);
    assert_int_equal(n, 2);
    assert_string_equal(items[0].key, "p/a/b/c");
    assert_string_equal(items[1].key, "p/a/b0");
    assert_null(next);
    tm_storage_infos_free(items, n);
    /* everything */
    assert_int_equal(tm_storage_list(f->s, "", NULL, 0, &items, &n, &next, &err), TM_OK);
    assert_int_equal(n, 7);
    assert_string_equal(items[6].key, "q/x");
    tm_storage_infos_free(items, n);
    /* a token between keys */
    assert_int_equal(tm_storage_list(f->s, "p/", "p/a/c", 100, &items, &n, &next, &err), TM_OK);
    assert_int_equal(n, 3);
    assert_string_equal(items[0].key, "p/a/z");
    tm_storage_infos_free(items, n);
}

static void test_delete_and_copy(void **state)
{
    fixture *f = *state;
    tm_err err = {0};
    assert_int_equal(tm_storage_put(f->s, "d/1/x", "abc", 3, &err), TM_OK);
    assert_int_equal(tm_storage_put(f->s, "d/2", "def", 3, &err), TM_OK);
    assert_int_equal(tm_storage_copy(f->s, "d/1/x", "e/copy", &err), TM_OK);
    void *buf;
    size_t len;
    assert_int_equal(tm_storage_get(f->s, "e/copy", &buf, &len, &err), TM_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "abc", 3);
    free(buf);
    assert_int_equal(tm_storage_copy(f->s, "d/none", "e/x", &err), TM_ENOENT);
    const char *keys[] = {"d/1/x", "d/2", "d/absent"};
    assert_int_equal(tm_storage_delete(f->s, keys, 3, &err), TM_OK);
    tm_storage_info info;
    assert_int_equal(tm_storage_stat(f->s, "d/2", &info, &err), TM_ENOENT);
    /* empty directories were pruned */
    char path[400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/repo/d", f->dir);
    assert_int_not_equal(stat(path, &st), 0);
    /* and a put into a pruned directory works again */
    assert_int_equal(tm_storage_put(f->s, "d/1/x", "abc", 3, &err), TM_OK);
}

static void test_permission_error(void **state)
{
    fixture *f = *state;
    tm_err err = {0};
    char path[400];
    snprintf(path, sizeof(path), "%s/repo/ro", f->dir);
    assert_int_equal(mkdir(path, 0555), 0);
    if (geteuid() != 0) {
        assert_int_equal(tm_storage_put(f->s, "ro/x", "a", 1, &err), TM_EPERM);
        assert_non_null(strstr(err.msg, "ro"));
        return;
    }
    /* Root ignores permissions (and CI runs as root): the put runs in a
     * child that has dropped to nobody, so the test runs, never skips. */
    assert_int_equal(chmod(f->dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/repo", f->dir);
    assert_int_equal(chmod(path, 0755), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) {
            _exit(10);
        }
        int rc = tm_storage_put(f->s, "ro/x", "a", 1, &err);
        _exit(rc != TM_EPERM ? 11 : strstr(err.msg, "ro") == NULL ? 12 : 0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* A forked writer is killed with SIGKILL in the middle of an object: no
 * visible object, at most a temp file that list() ignores. */
static void test_kill9_mid_write(void **state)
{
    fixture *f = *state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        tm_err err = {0};
        tm_storage_writer *w;
        if (tm_storage_put_open(f->s, "k/victim", &w, &err) != TM_OK) {
            _exit(1);
        }
        char chunk[4096];
        memset(chunk, 'v', sizeof(chunk));
        for (int i = 0;; i++) {
            tm_storage_write(w, chunk, sizeof(chunk), &err);
            if (i == 256) {
                (void)!write(pfd[1], "x", 1); /* 1 MiB written: kill me now */
            }
            if (i > 256) {
                usleep(1000);
            }
        }
    }
    close(pfd[1]);
    char c;
    assert_int_equal(read(pfd[0], &c, 1), 1);
    close(pfd[0]);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));

    tm_err err = {0};
    tm_storage_info info;
    assert_int_equal(tm_storage_stat(f->s, "k/victim", &info, &err), TM_ENOENT);
    tm_storage_info *items;
    size_t n;
    char *next;
    assert_int_equal(tm_storage_list(f->s, "", NULL, 100, &items, &n, &next, &err), TM_OK);
    for (size_t i = 0; i < n; i++) {
        assert_null(strstr(items[i].key, "victim"));
    }
    tm_storage_infos_free(items, n);
    /* the temp file is there, named so that list ignores it */
    char path[400];
    snprintf(path, sizeof(path), "%s/repo/k", f->dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    int temps = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] != '.' || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        assert_int_equal(strncmp(de->d_name, ".tmp.victim.", 12), 0);
        temps++;
    }
    closedir(d);
    assert_int_equal(temps, 1);

    /* The sweep: a fresh temporary stays (its writer may be alive), an old
     * one goes, visible objects and other prefixes are never touched. */
    assert_int_equal(tm_storage_put(f->s, "k/keep", "x", 1, &err), TM_OK);
    assert_int_equal(tm_storage_put(f->s, "other/keep", "y", 1, &err), TM_OK);
    char other_tmp[400];
    snprintf(other_tmp, sizeof(other_tmp), "%s/repo/other/.tmp.orphan.1234", f->dir);
    FILE *fp = fopen(other_tmp, "w");
    assert_non_null(fp);
    fclose(fp);
    uint64_t removed = 99;
    assert_int_equal(tm_storage_sweep_temps(f->s, "k/", 3600, &removed, &err), TM_OK);
    assert_int_equal(removed, 0);
    struct timespec old[2] = {{.tv_sec = time(NULL) - 7200}, {.tv_sec = time(NULL) - 7200}};
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, ".tmp.", 5) == 0) {
            assert_int_equal(utimensat(dirfd(d), de->d_name, old, 0), 0);
        }
    }
    closedir(d);
    assert_int_equal(utimensat(AT_FDCWD, other_tmp, old, 0), 0);
    assert_int_equal(tm_storage_sweep_temps(f->s, "k/", 3600, &removed, &err), TM_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(tm_storage_stat(f->s, "k/keep", &info, &err), TM_OK);
    assert_int_equal(tm_storage_stat(f->s, "other/keep", &info, &err), TM_OK);
    assert_int_equal(access(other_tmp, F_OK), 0); /* another prefix: untouched */
    d = opendir(path);
    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        assert_int_not_equal(strncmp(de->d_name, ".tmp.", 5), 0);
    }
    closedir(d);
    /* A prefix that is not a folder, or escapes the repository, is refused. */
    assert_int_equal(tm_storage_sweep_temps(f->s, "k", 3600, &removed, &err), TM_EINVAL);
    assert_int_equal(tm_storage_sweep_temps(f->s, "../", 3600, &removed, &err), TM_EINVAL);
    assert_int_equal(tm_storage_sweep_temps(f->s, "absent/", 3600, &removed, &err), TM_OK);
    assert_int_equal(removed, 0);
}

static void test_bad_config(void **state)
{
    (void)state;
    tm_storage *s;
    tm_err err = {0};
    tm_storage_opts o = {.backend = "nope"};
    assert_int_equal(tm_storage_open(&s, &o, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "nope"));
    tm_storage_opts p = {.backend = "posix"};
    assert_int_equal(tm_storage_open(&s, &p, &err), TM_ECONFIG);
    tm_storage_opts q = {
        .backend = "s3", .bucket = "b", .access_key = "a", .secret_key = "s", .part_size = 1024};
    assert_int_equal(tm_storage_open(&s, &q, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "5 MiB"));
    tm_storage_opts r = {.backend = "s3", .bucket = "b"};
    assert_int_equal(tm_storage_open(&s, &r, &err), TM_ECONFIG);
}

/* A full filesystem (a real 256 KiB tmpfs) fails the write or the commit
 * with TM_ENOSPC and a message naming the path and the system's reason; the
 * object does not exist, no temp file is left, and an object already there
 * is untouched. */
static void test_disk_full(void **state)
{
    fixture *f = *state;
    if (geteuid() != 0) {
        skip(); /* mounting a tmpfs needs root (CI runs as root) */
    }
    char mnt[300];
    snprintf(mnt, sizeof(mnt), "%s/small", f->dir);
    assert_int_equal(mkdir(mnt, 0700), 0);
    assert_int_equal(mount("tmpfs", mnt, "tmpfs", 0, "size=256k"), 0);
    tm_storage *s = NULL;
    tm_storage_opts o = {.backend = "posix", .path = mnt};
    tm_err err = {0};
    assert_int_equal(tm_storage_open(&s, &o, &err), TM_OK);
    assert_int_equal(tm_storage_put(s, "keep", "old", 3, &err), TM_OK);
    size_t n = 1 << 20;
    char *big = calloc(1, n);
    tm_storage_writer *w = NULL;
    assert_int_equal(tm_storage_put_open(s, "big", &w, &err), TM_OK);
    int rc = tm_storage_write(w, big, n, &err);
    if (rc == TM_OK) {
        rc = tm_storage_put_commit(w, &err);
    } else {
        tm_storage_put_abort(w);
    }
    assert_int_equal(rc, TM_ENOSPC);
    assert_non_null(strstr(err.msg, "No space left on device"));
    assert_non_null(strstr(err.msg, mnt));
    assert_string_equal(tm_storage_error_class(rc), "no_space");
    /* The whole-buffer paths say the same. */
    assert_int_equal(tm_storage_put(s, "big2", big, n, &err), TM_ENOSPC);
    assert_int_equal(tm_storage_put_new(s, "big3", big, n, &err), TM_ENOSPC);
    tm_storage_info info;
    assert_int_equal(tm_storage_stat(s, "big", &info, &err), TM_ENOENT);
    DIR *d = opendir(mnt);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        assert_true(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                    strcmp(de->d_name, "keep") == 0);
    }
    closedir(d);
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(tm_storage_get(s, "keep", &buf, &len, &err), TM_OK);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "old", 3);
    free(buf);
    free(big);
    tm_storage_free(s);
    umount(mnt);
}

/* Create-only puts never replace, and repositories are private. */
static void test_put_new_and_modes(void **state)
{
    fixture *f = *state;
    tm_err err = {0};
    assert_int_equal(tm_storage_put_new(f->s, "a/manifest", "one", 3, &err), TM_OK);
    assert_int_equal(tm_storage_put_new(f->s, "a/manifest", "two", 3, &err), TM_EEXIST);
    assert_string_equal(tm_storage_error_class(TM_EEXIST), "exists");
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(tm_storage_get(f->s, "a/manifest", &buf, &len, &err), TM_OK);
    assert_memory_equal(buf, "one", 3);
    free(buf);
    char path[400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/repo", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/repo/a", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/repo/a/manifest", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

/* A repository root that disappeared is not_found, not an empty listing. */
static void test_missing_root(void **state)
{
    fixture *f = *state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/repo'", f->dir);
    assert_int_equal(system(cmd), 0);
    tm_storage_info *items = NULL;
    size_t n = 0;
    char *next = NULL;
    tm_err err = {0};
    int rc = tm_storage_list(f->s, "", NULL, 10, &items, &n, &next, &err);
    assert_int_equal(rc, TM_ENOENT);
    assert_string_equal(tm_storage_error_class(rc), "not_found");
    assert_non_null(strstr(err.msg, "repository root"));
    /* A file in its place (a failed mount, a mistake) is no repository. */
    char path[400];
    snprintf(path, sizeof(path), "%s/repo", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    rc = tm_storage_list(f->s, "", NULL, 10, &items, &n, &next, &err);
    assert_int_not_equal(rc, TM_OK);
    assert_non_null(strstr(err.msg, "Not a directory"));
}

/* Error classes and hints for every code a backend returns. */
static void test_error_classes(void **state)
{
    (void)state;
    assert_string_equal(tm_storage_error_class(TM_EAUTH), "auth");
    assert_string_equal(tm_storage_error_class(TM_EPERM), "permission");
    assert_string_equal(tm_storage_error_class(TM_EBUSY), "throttled");
    assert_string_equal(tm_storage_error_class(TM_EUNAVAIL), "unreachable");
    assert_string_equal(tm_storage_error_class(TM_ETIMEDOUT), "unreachable");
    assert_string_equal(tm_storage_error_class(TM_ECORRUPT), "corrupt");
    assert_string_equal(tm_storage_error_class(TM_EIO), "io");
    assert_non_null(strstr(tm_storage_error_hint(TM_EAUTH), "secret key"));
    assert_non_null(strstr(tm_storage_error_hint(TM_ENOSPC), "free space"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_stat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ranged_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streaming_write_and_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_order_and_pagination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permission_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_mid_write, setup, teardown),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_new_and_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_root, setup, teardown),
        cmocka_unit_test(test_error_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
