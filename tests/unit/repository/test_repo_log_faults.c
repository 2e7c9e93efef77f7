/*
 * test_repo_log_faults.c - the log archive (agent/repo/repo_log.c) over two
 * posix repositories with one of them failing on purpose (the fault shim,
 * tests/fault/tm_fault.h, in-process): every write, fsync, rename and mkdir
 * of a push into repository b fails in turn. Each push then reports b as
 * failed with the repository, the path and the errno, succeeds with a
 * quorum of one, and the next push without a fault completes b (nothing
 * half-visible is taken for a stored copy). A fetch whose destination
 * cannot be written leaves no file; a damaged copy is skipped for the
 * other repository's. Master key rotation rewraps the log data keys too
 * (the new key alone then reads the archive), and a damaged log key record
 * is reported, not used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"
#include "common/util.h"
#include "fault/tm_fault.h"

static char dir[256], key1[300], key2[300], src[300], rb[300];

static tm_repo_set *open_set(const char *key)
{
    char yaml[2048];
    snprintf(yaml, sizeof(yaml),
             "coordinator:\n  url: tcp://127.0.0.1:7800\n  enrollment_token: env:TM_T\n"
             "repositories:\n"
             "  - name: a\n    type: posix\n    path: %s/a\n"
             "  - name: b\n    type: posix\n    path: %s/b\n"
             "encryption:\n  master_key_file: %s\n",
             dir, dir, key);
    tm_agent_conf *c = NULL;
    tm_err err = {0};
    if (tm_agent_conf_parse("/t/agent.yaml", yaml, strlen(yaml), &c, &err) != 0) {
        fail_msg("%s", err.msg);
    }
    tm_repo_set *rs = NULL;
    if (tm_repo_set_open(&rs, c, TM_REPO_KEYS, &err) != 0) {
        fail_msg("%s", err.msg);
    }
    tm_agent_conf_free(c);
    return rs;
}

static int setup(void **state)
{
    (void)state;
    setenv("TM_T", "x", 1);
    snprintf(dir, sizeof(dir), "/tmp/tm-repo-log-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    snprintf(key1, sizeof(key1), "%s/k1", dir);
    snprintf(key2, sizeof(key2), "%s/k2", dir);
    snprintf(src, sizeof(src), "%s/segment", dir);
    snprintf(rb, sizeof(rb), "%s/b/", dir);
    tm_master_key k;
    tm_err err = {0};
    if (tm_keys_generate_master(key1, &k, &err) != 0 ||
        tm_keys_generate_master(key2, &k, &err) != 0) {
        return -1;
    }
    /* 300 KiB: several pipeline frames, part of it compressible. */
    size_t len = 300 * 1024;
    uint8_t *data = malloc(len);
    tm_random_bytes(data, len / 2);
    memset(data + len / 2, 'x', len - len / 2);
    int rc = tm_file_write_atomic(src, data, len, 0600, &err);
    free(data);
    return rc;
}

static int teardown(void **state)
{
    (void)state;
    tm_fault_disarm();
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int push(tm_log_store *ls, const char *rel, size_t quorum, tm_log_push_result res[2],
                tm_err *err)
{
    int fd = open(src, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    int rc = tm_log_push(ls, rel, fd, quorum, res, NULL, err);
    close(fd);
    return rc;
}

/* The file at path holds exactly the source's bytes. */
static void assert_same_as_src(const char *path)
{
    char *a = NULL, *b = NULL;
    size_t la = 0, lb = 0;
    tm_err err = {0};
    assert_int_equal(tm_file_read(src, &a, &la, &err), TM_OK);
    assert_int_equal(tm_file_read(path, &b, &lb, &err), TM_OK);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    free(a);
    free(b);
}

/* The fetched file equals the source. */
static void assert_fetched(tm_log_store *ls, const char *rel, size_t want_repo)
{
    char out[400];
    snprintf(out, sizeof(out), "%s/fetched", dir);
    unlink(out);
    size_t used = 9;
    tm_err err = {0};
    if (tm_log_get_file(ls, rel, out, NULL, &used, &err) != TM_OK) {
        fail_msg("get %s: %s", rel, err.msg);
    }
    assert_int_equal(used, want_repo);
    assert_same_as_src(out);
    unlink(out);
}

/* Walk every call of op that a push into b makes: each failure is heard. */
static void walk_push(tm_log_store *ls, const char *op, int err_no, int *seq)
{
    tm_log_push_result res[2];
    tm_err err = {0};
    char rel[64];
    snprintf(rel, sizeof(rel), "%03d/seg", (*seq)++);
    assert_int_equal(tm_fault_arm(op, 0, err_no, 0, rb), 0);
    assert_int_equal(push(ls, rel, 0, res, &err), TM_OK);
    long calls = tm_fault_calls();
    tm_fault_disarm();
    for (long n = 1; n <= calls; n++) {
        snprintf(rel, sizeof(rel), "%03d/seg", (*seq)++);
        tm_fault_arm(op, n, err_no, 0, rb);
        int rc = push(ls, rel, 0, res, &err);
        tm_fault_disarm();
        if (!tm_fault_injected()) {
            fail_msg("%s #%ld of %ld in b never came", op, n, calls);
        }
        if (rc == TM_OK) {
            fail_msg("%s #%ld in b failed with %s, yet the push said every repository holds it", op,
                     n, strerror(err_no));
        }
        if (res[0].state != TM_LOG_R_STORED || res[1].state != TM_LOG_R_FAILED) {
            fail_msg("%s #%ld: a %d \"%s\", b %d \"%s\"; %s", op, n, res[0].state, res[0].msg,
                     res[1].state, res[1].msg, err.msg);
        }
        assert_non_null(strstr(err.msg, "b"));
        assert_non_null(strstr(res[1].msg, strerror(err_no)));
        /* The same push again without the fault completes b. */
        assert_int_equal(push(ls, rel, 0, res, &err), TM_OK);
        assert_int_equal(res[0].state, TM_LOG_R_ALREADY);
        assert_true(res[1].state == TM_LOG_R_STORED || res[1].state == TM_LOG_R_ALREADY);
        assert_fetched(ls, rel, 0);
    }
}

static void test_push_faults_in_one_repository(void **state)
{
    (void)state;
    tm_repo_set *rs = open_set(key1);
    tm_log_store *ls = NULL;
    tm_err err = {0};
    assert_int_equal(tm_log_store_open(&ls, rs, "pg", &err), TM_OK);
    /* A first push writes the log data key record to both: the walks then
     * count the same calls for every push (one new directory each). */
    int seq = 0;
    tm_log_push_result res[2];
    assert_int_equal(push(ls, "000/first", 0, res, &err), TM_OK);
    seq = 1;
    walk_push(ls, "write", ENOSPC, &seq);
    walk_push(ls, "fsync", EIO, &seq);
    walk_push(ls, "rename", EDQUOT, &seq);
    walk_push(ls, "mkdir", EIO, &seq);
    walk_push(ls, "close", EIO, &seq);
    /* A quorum of one: the push succeeds with b failing, and says so. */
    tm_fault_arm("fsync", 1, EIO, 0, rb);
    assert_int_equal(push(ls, "1/quorum", 1, res, &err), TM_OK);
    tm_fault_disarm();
    assert_int_equal(res[1].state, TM_LOG_R_FAILED);
    /* Different content under a stored name is refused, never replaced. */
    char other[300];
    snprintf(other, sizeof(other), "%s/other", dir);
    assert_int_equal(tm_file_write_atomic(other, "different", 9, 0600, &err), TM_OK);
    int fd = open(other, O_RDONLY | O_CLOEXEC);
    assert_int_equal(tm_log_push(ls, "1/quorum", fd, 0, res, NULL, &err), TM_EEXIST);
    close(fd);
    assert_int_equal(res[0].state, TM_LOG_R_CONFLICT);
    assert_non_null(strstr(err.msg, "1/quorum"));
    /* Names that are not log names. */
    fd = open(src, O_RDONLY | O_CLOEXEC);
    assert_int_equal(tm_log_push(ls, "../x", fd, 0, res, NULL, &err), TM_EINVAL);
    close(fd);
    tm_log_store_free(ls);
    assert_int_equal(tm_log_store_open(&ls, rs, "../t", &err), TM_EINVAL);
    tm_repo_set_free(rs);
}

static void test_get_faults_and_damage(void **state)
{
    (void)state;
    tm_repo_set *rs = open_set(key1);
    tm_log_store *ls = NULL;
    tm_err err = {0};
    assert_int_equal(tm_log_store_open(&ls, rs, "pg", &err), TM_OK);
    tm_log_push_result res[2];
    assert_int_equal(push(ls, "1/seg", 0, res, &err), TM_OK);
    /* The destination cannot be written: an error naming it, no file. */
    char outdir[300], out[400];
    snprintf(outdir, sizeof(outdir), "%s/out", dir);
    assert_int_equal(mkdir(outdir, 0700), 0);
    snprintf(out, sizeof(out), "%s/seg", outdir);
    static const char *const ops[] = {"write", "fsync", "rename", "close"};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        tm_fault_arm(ops[i], 1, ENOSPC, 0, outdir);
        size_t used = 9;
        int rc = tm_log_get_file(ls, "1/seg", out, NULL, &used, &err);
        tm_fault_disarm();
        if (!tm_fault_injected()) {
            continue; /* the fetch makes no such call */
        }
        if (rc == TM_OK) {
            /* a's copy failed to land, b's was taken: complete and equal */
            assert_int_equal(used, 1);
            assert_same_as_src(out);
            unlink(out);
            continue;
        }
        assert_non_null(strstr(err.msg, strerror(ENOSPC)));
        DIR *d = opendir(outdir);
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (e->d_name[0] != '.') {
                fail_msg("get: after a failed %s, %s is left in the destination", ops[i],
                         e->d_name);
            }
        }
        closedir(d);
    }
    /* A copy in a damaged in the middle: the fetch takes b's. */
    char obj[400];
    snprintf(obj, sizeof(obj), "%s/a/pg/log/1/seg", dir);
    FILE *f = fopen(obj, "r+b");
    assert_non_null(f);
    fseek(f, 100 * 1024, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 100 * 1024, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
    assert_fetched(ls, "1/seg", 1);
    /* Absent everywhere: ENOENT saying where it looked. */
    assert_int_equal(tm_log_get_file(ls, "1/none", out, NULL, NULL, &err), TM_ENOENT);
    assert_non_null(strstr(err.msg, "1/none"));
    /* Damaged in b as well: an error, not a file. */
    snprintf(obj, sizeof(obj), "%s/b/pg/log/1/seg", dir);
    f = fopen(obj, "r+b");
    assert_non_null(f);
    fseek(f, 100 * 1024, SEEK_SET);
    ch = fgetc(f);
    fseek(f, 100 * 1024, SEEK_SET);
    fputc(ch ^ 0x40, f);
    fclose(f);
    int rc = tm_log_get_file(ls, "1/seg", out, NULL, NULL, &err);
    assert_true(rc != TM_OK && rc != TM_ENOENT);
    assert_int_equal(access(out, F_OK), -1);
    tm_log_store_free(ls);
    tm_repo_set_free(rs);
}

static void count_problem(void *arg, const tm_verify_item *it)
{
    if (!it->ok) {
        (*(int *)arg)++;
    }
}

static void test_rotation_rewraps_log_keys(void **state)
{
    (void)state;
    tm_repo_set *rs = open_set(key1);
    tm_log_store *ls = NULL;
    tm_err err = {0};
    assert_int_equal(tm_log_store_open(&ls, rs, "pg", &err), TM_OK);
    tm_log_push_result res[2];
    assert_int_equal(push(ls, "1/seg", 0, res, &err), TM_OK);
    tm_log_store_free(ls);
    tm_master_key k2;
    assert_int_equal(tm_keys_load_master_file(key2, &k2, &err), TM_OK);
    tm_rotate_stats st;
    int problems = 0;
    /* keep_old: both keys read the archive afterwards. */
    assert_int_equal(tm_repo_rotate(rs, &k2, 1, count_problem, &problems, &st, &err), TM_OK);
    assert_int_equal(problems, 0);
    assert_int_equal(st.rewrapped, 2); /* the log key, in a and in b */
    assert_int_equal(st.deleted, 0);
    assert_int_equal(tm_repo_rotate(rs, &k2, 0, count_problem, &problems, &st, &err), TM_OK);
    assert_int_equal(st.already, 2);
    assert_int_equal(st.deleted, 2);
    tm_repo_set_free(rs);
    rs = open_set(key2);
    assert_int_equal(tm_log_store_open(&ls, rs, "pg", &err), TM_OK);
    assert_fetched(ls, "1/seg", 0);
    tm_log_store_free(ls);
    tm_repo_set_free(rs);

    /* A log key record of the wrong size in b: rotation to key1 reports it
     * and still rewraps a's. */
    char kdir[400];
    snprintf(kdir, sizeof(kdir), "%s/b/pg/keys/log", dir);
    DIR *d = opendir(kdir);
    assert_non_null(d);
    char rec[700] = "";
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] != '.') {
            snprintf(rec, sizeof(rec), "%s/%s", kdir, e->d_name);
        }
    }
    closedir(d);
    DIR *d2 = opendir(rec);
    assert_non_null(d2);
    char file[1000] = "";
    for (struct dirent *e; (e = readdir(d2)) != NULL;) {
        if (e->d_name[0] != '.') {
            snprintf(file, sizeof(file), "%s/%s", rec, e->d_name);
        }
    }
    closedir(d2);
    assert_int_equal(truncate(file, 10), 0);
    rs = open_set(key2);
    tm_master_key k1;
    assert_int_equal(tm_keys_load_master_file(key1, &k1, &err), TM_OK);
    problems = 0;
    assert_int_not_equal(tm_repo_rotate(rs, &k1, 1, count_problem, &problems, &st, &err), TM_OK);
    assert_true(problems >= 1);
    assert_true(st.failed >= 1);
    assert_int_equal(st.rewrapped, 1);
    /* The archive still reads from a with key2. */
    assert_int_equal(tm_log_store_open(&ls, rs, "pg", &err), TM_OK);
    tm_log_store_free(ls);
    tm_repo_set_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_push_faults_in_one_repository, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_faults_and_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation_rewraps_log_keys, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
