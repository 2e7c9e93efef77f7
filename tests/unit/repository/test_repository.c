/*
 * test_repository.c - the repository set on two posix repositories: write a
 * backup to both, read it back, scan, verify (with and without the key, and
 * after damage), a failed repository gets no manifest, rotation.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/repo/repository.h"
#include "common/util.h"

static char dir[256];

static tm_agent_conf *conf_for(const char *key)
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
    return c;
}

static tm_repo_set *open_set(const char *key)
{
    tm_agent_conf *c = conf_for(key);
    tm_repo_set *rs = NULL;
    tm_err err = {0};
    if (tm_repo_set_open(&rs, c, TM_REPO_KEYS, &err) != 0) {
        fail_msg("%s", err.msg);
    }
    tm_agent_conf_free(c);
    return rs;
}

static char key1[300], key2[300];

static int setup(void **state)
{
    (void)state;
    setenv("TM_T", "x", 1);
    snprintf(dir, sizeof(dir), "/tmp/tm-repo-unit-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        return -1;
    }
    snprintf(key1, sizeof(key1), "%s/k1", dir);
    snprintf(key2, sizeof(key2), "%s/k2", dir);
    tm_master_key k;
    tm_err err = {0};
    if (tm_keys_generate_master(key1, &k, &err) != 0 ||
        tm_keys_generate_master(key2, &k, &err) != 0) {
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A memory sink for get. */
typedef struct mem {
    uint8_t *buf;
    size_t len;
    int committed;
} mem;

static int mem_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    (void)err;
    mem *m = arg;
    m->buf = realloc(m->buf, m->len + len);
    memcpy(m->buf + m->len, buf, len);
    m->len += len;
    return 0;
}

static int mem_commit(void *arg, tm_err *err)
{
    (void)err;
    ((mem *)arg)->committed = 1;
    return 0;
}

static void mem_abort(void *arg)
{
    (void)arg;
}

static void write_backup(tm_repo_set *rs, const char *target, const char *id, const uint8_t *data,
                         size_t len)
{
    tm_backup_writer *w = NULL;
    tm_backup_object *o = NULL;
    tm_err err = {0};
    assert_int_equal(tm_backup_begin(rs, target, id, "full", "test", &w, &err), 0);
    assert_int_equal(tm_backup_object_open(w, "dir/obj", &o, &err), 0);
    assert_int_equal(tm_backup_object_write(o, data, len, &err), 0);
    assert_int_equal(tm_backup_object_close(o, NULL, &err), 0);
    assert_int_equal(tm_backup_finish(w, &err), 0);
    tm_backup_writer_free(w);
}

typedef struct counts {
    int ok, bad;
    char last[1024];
} counts;

static void count(void *arg, const tm_verify_item *it)
{
    counts *c = arg;
    if (it->ok) {
        c->ok++;
    } else {
        c->bad++;
        snprintf(c->last, sizeof(c->last), "%s %s %s", it->repo, it->object ? it->object : "-",
                 it->msg);
    }
}

static void test_roundtrip_verify_rotate(void **state)
{
    (void)state;
    tm_repo_set *rs = open_set(key1);
    size_t len = 3 * 1024 * 1024 + 5;
    uint8_t *data = malloc(len);
    /* Incompressible, so byte 2 MiB of the stored copy lies in frame 2. */
    tm_random_bytes(data, len);
    write_backup(rs, "t1", "B1", data, len);
    tm_err err = {0};
    tm_backup_writer *w = NULL;
    /* The same id again: refused, nothing overwritten. */
    assert_int_equal(tm_backup_begin(rs, "t1", "B1", "full", "", &w, &err), TM_EEXIST);
    /* Invalid names. */
    assert_int_equal(tm_backup_begin(rs, "../x", NULL, "full", "", &w, &err), TM_EINVAL);
    assert_int_equal(tm_backup_begin(rs, "t1", "B2", "full", "", &w, &err), 0);
    tm_backup_object *o = NULL;
    assert_int_equal(tm_backup_object_open(w, "a/../b", &o, &err), TM_EINVAL);
    tm_backup_writer_free(w); /* never finished: B2 does not exist */

    for (int r = 0; r < 2; r++) {
        tm_backup_reader *rd = NULL;
        assert_int_equal(tm_backup_open(rs, "t1", "B1", r ? "b" : "a", &rd, &err), 0);
        mem m = {0};
        tm_sink s = {mem_write, mem_commit, mem_abort, &m, "mem"};
        assert_int_equal(tm_backup_get(rd, "dir/obj", &s, &err), 0);
        assert_true(m.committed);
        assert_int_equal(m.len, len);
        assert_memory_equal(m.buf, data, len);
        free(m.buf);
        tm_backup_reader_free(rd);
    }
    tm_backup_reader *rd = NULL;
    assert_int_equal(tm_backup_open(rs, "t1", "B2", NULL, &rd, &err), TM_ENOENT);

    tm_backup_info *infos = NULL;
    size_t n = 0;
    assert_int_equal(tm_repo_scan(rs, 0, NULL, &infos, &n, &err), 0);
    /* B1 complete; the unfinished B2 left nothing, not even its key record. */
    assert_int_equal(n, 1);
    assert_string_equal(infos[0].backup_id, "B1");
    assert_true(infos[0].has_manifest && infos[0].has_digests);
    assert_int_equal(infos[0].n_objects, 1);
    tm_backup_infos_free(infos, n);

    tm_verify_opts vo = {.use_key = 1};
    tm_verify_summary sum;
    counts c = {0};
    assert_int_equal(tm_repo_verify(rs, &vo, count, &c, &sum, &err), 0);
    assert_int_equal(c.ok, 2);
    vo.use_key = 0;
    assert_int_equal(tm_repo_verify(rs, &vo, count, &c, &sum, &err), 0);

    /* Flip one byte in repository b's copy. */
    char path[512];
    snprintf(path, sizeof(path), "%s/b/t1/backup/B1/data/dir/obj", dir);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 2 * 1024 * 1024, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, 2 * 1024 * 1024, SEEK_SET);
    fputc(ch ^ 0x10, f);
    fclose(f);
    vo.use_key = 1;
    memset(&c, 0, sizeof(c));
    assert_int_equal(tm_repo_verify(rs, &vo, count, &c, &sum, &err), TM_ECORRUPT);
    assert_int_equal(c.bad, 1);
    assert_non_null(strstr(c.last, "b t1/backup/B1/data/dir/obj"));
    assert_non_null(strstr(c.last, "frame"));
    vo.use_key = 0;
    memset(&c, 0, sizeof(c));
    assert_int_equal(tm_repo_verify(rs, &vo, count, &c, &sum, &err), TM_ECORRUPT);
    assert_int_equal(c.bad, 1);
    assert_non_null(strstr(c.last, "SHA-256"));

    /* Rotation: rewrap to key2; key2 alone then reads repository a. */
    tm_master_key k2;
    assert_int_equal(tm_keys_load_master_file(key2, &k2, &err), 0);
    tm_rotate_stats st;
    assert_int_equal(tm_repo_rotate(rs, &k2, 0, count, &c, &st, &err), 0);
    assert_int_equal(st.rewrapped, 2); /* B1 in two repositories (B2 left nothing) */
    assert_int_equal(st.deleted, 2);
    assert_int_equal(tm_repo_rotate(rs, &k2, 0, count, &c, &st, &err), 0);
    assert_int_equal(st.already, 2);
    assert_int_equal(st.rewrapped, 0);
    tm_repo_set_free(rs);
    rs = open_set(key2);
    assert_int_equal(tm_backup_open(rs, "t1", "B1", "a", &rd, &err), 0);
    tm_backup_reader_free(rd);
    tm_repo_set_free(rs);
    rs = open_set(key1);
    assert_int_equal(tm_backup_open(rs, "t1", "B1", "a", &rd, &err), TM_EAUTH);
    assert_non_null(strstr(err.msg, k2.id_hex));
    tm_repo_set_free(rs);
    free(data);
}

static void test_failed_repo_gets_no_manifest(void **state)
{
    (void)state;
    tm_repo_set *rs = open_set(key2);
    /* Repository b refuses writes: its target directory is a file. */
    char path[512];
    snprintf(path, sizeof(path), "%s/b/t2", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    tm_backup_writer *w = NULL;
    tm_backup_object *o = NULL;
    tm_err err = {0};
    assert_int_equal(tm_backup_begin(rs, "t2", "X", "full", "", &w, &err), 0);
    assert_int_equal(tm_backup_object_open(w, "o", &o, &err), 0);
    assert_int_equal(tm_backup_object_write(o, "hello", 5, &err), 0);
    assert_int_equal(tm_backup_object_close(o, NULL, &err), 0);
    assert_int_equal(tm_backup_finish(w, &err), TM_EIO);
    assert_non_null(strstr(err.msg, "1 of 2"));
    size_t n = 0;
    const tm_repo_result *res = tm_backup_results(w, &n);
    assert_int_equal(n, 2);
    assert_int_equal(res[0].code, 0);
    assert_int_not_equal(res[1].code, 0);
    /* Every repository's outcome, the failed one with class, operation and
     * a message naming it. */
    Tidemark__TaskResult tr = TIDEMARK__TASK_RESULT__INIT;
    assert_int_equal(tm_backup_outcomes(w, &tr), 0);
    assert_int_equal(tr.n_repository_outcomes, 2);
    assert_string_equal(tr.repository_outcomes[0]->repository, "a");
    assert_true(tr.repository_outcomes[0]->has_ok && tr.repository_outcomes[0]->ok);
    assert_null(tr.repository_outcomes[0]->error_class);
    assert_string_equal(tr.repository_outcomes[1]->repository, "b");
    assert_false(tr.repository_outcomes[1]->ok);
    assert_string_equal(tr.repository_outcomes[1]->error_class, "io");
    assert_string_equal(tr.repository_outcomes[1]->operation, "put data key record");
    assert_non_null(strstr(tr.repository_outcomes[1]->message, "repository b: "));
    assert_non_null(strstr(tr.repository_outcomes[1]->message, "Not a directory"));
    for (size_t i = 0; i < tr.n_repository_outcomes; i++) {
        Tidemark__RepositoryOutcome *o = tr.repository_outcomes[i];
        free(o->repository);
        free(o->region);
        free(o->error_class);
        free(o->operation);
        free(o->message);
        free(o);
    }
    free(tr.repository_outcomes);
    tm_backup_writer_free(w);
    snprintf(path, sizeof(path), "%s/a/t2/backup/X/manifest", dir);
    assert_int_equal(access(path, F_OK), 0);
    tm_repo_set_free(rs);
}

/* Once every repository has failed, the next object's open says why each
 * failed (test_diskfull under ASan: a parallel copy's next open became the
 * task's error, "every repository has failed" without the repository, path
 * or errno). */
static void test_open_after_all_failed_says_why(void **state)
{
    (void)state;
    tm_repo_set *rs = open_set(key2);
    tm_backup_writer *w = NULL;
    tm_backup_object *o = NULL;
    tm_err err = {0};
    assert_int_equal(tm_backup_begin(rs, "t3", "Y", "full", "", &w, &err), 0);
    /* Both repositories refuse the object: its directory is a file. */
    char path[1200];
    for (const char *r = "ab"; *r; r++) {
        snprintf(path, sizeof(path),
                 "mkdir -p %s/%c/t3/backup/Y/data && : > %s/%c/t3/backup/Y/data/d", dir, *r, dir,
                 *r);
        assert_int_equal(system(path), 0);
    }
    assert_int_not_equal(tm_backup_object_open(w, "d/o1", &o, &err), 0);
    const char *why = strstr(err.msg, "object: ");
    assert_non_null(why);
    char reasons[TM_ERR_MSG_MAX];
    snprintf(reasons, sizeof(reasons), "%s", why + strlen("object: "));
    assert_true(strlen(reasons) > 0);
    tm_err err2 = {0};
    assert_int_not_equal(tm_backup_object_open(w, "e", &o, &err2), 0);
    if (strstr(err2.msg, reasons) == NULL) {
        fail_msg("the next open does not say why: '%s' (the failures: '%s')", err2.msg, reasons);
    }
    tm_backup_writer_free(w);
    tm_repo_set_free(rs);
}

/* Objects of one backup written from several threads at once (the
 * PostgreSQL engine's parallel copy): every object lands in the manifest
 * once, reads back intact, and finish refuses while one is still open. */
typedef struct par {
    tm_backup_writer *w;
    int first;
    int failures;
} par;

static void *par_main(void *arg)
{
    par *p = arg;
    for (int i = p->first; i < p->first + 25; i++) {
        char name[32], data[64];
        snprintf(name, sizeof(name), "f/%03d", i);
        int len = snprintf(data, sizeof(data), "content of object %d", i);
        tm_backup_object *o = NULL;
        tm_err err = {0};
        if (tm_backup_object_open(p->w, name, &o, &err) != 0 ||
            tm_backup_object_write(o, data, (size_t)len, &err) != 0 ||
            tm_backup_object_close(o, NULL, &err) != 0) {
            p->failures++;
        }
    }
    return NULL;
}

static void test_parallel_objects(void **state)
{
    (void)state;
    tm_repo_set *rs = open_set(key2);
    tm_backup_writer *w = NULL;
    tm_err err = {0};
    assert_int_equal(tm_backup_begin(rs, "t3", "P", "full", "test", &w, &err), 0);
    tm_backup_object *held = NULL;
    assert_int_equal(tm_backup_object_open(w, "held", &held, &err), 0);
    pthread_t th[4];
    par ps[4];
    for (int k = 0; k < 4; k++) {
        ps[k] = (par){.w = w, .first = k * 25};
        assert_int_equal(pthread_create(&th[k], NULL, par_main, &ps[k]), 0);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        assert_int_equal(ps[k].failures, 0);
    }
    /* One object still open: finishing now would seal a manifest without it. */
    assert_int_equal(tm_backup_finish(w, &err), TM_EINVAL);
    tm_backup_object_abort(held);
    tm_backup_writer_free(w);

    /* Again, finished this time, and read back. */
    assert_int_equal(tm_backup_begin(rs, "t3", "Q", "full", "test", &w, &err), 0);
    for (int k = 0; k < 4; k++) {
        ps[k] = (par){.w = w, .first = k * 25};
        assert_int_equal(pthread_create(&th[k], NULL, par_main, &ps[k]), 0);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        assert_int_equal(ps[k].failures, 0);
    }
    assert_int_equal(tm_manifest_nobjects(tm_backup_writer_manifest(w)), 100);
    assert_int_equal(tm_backup_finish(w, &err), 0);
    tm_backup_writer_free(w);
    tm_backup_reader *r = NULL;
    assert_int_equal(tm_backup_open(rs, "t3", "Q", NULL, &r, &err), 0);
    for (int i = 0; i < 100; i += 33) {
        char name[32], want[64];
        snprintf(name, sizeof(name), "f/%03d", i);
        int len = snprintf(want, sizeof(want), "content of object %d", i);
        mem m = {0};
        tm_sink sink = {.write = mem_write, .commit = mem_commit, .abort = mem_abort, .arg = &m};
        assert_int_equal(tm_backup_get(r, name, &sink, &err), 0);
        assert_int_equal(m.len, (size_t)len);
        assert_memory_equal(m.buf, want, (size_t)len);
        free(m.buf);
    }
    tm_backup_reader_free(r);
    tm_repo_set_free(rs);
}

/* Two backups of one target started in the same second (two tasks, two
 * repository sets): each gets its own id, and each reads back its own
 * content. Before ids were claimed by a create-only key record, both took
 * the same id and the second key record replaced the first, leaving the
 * first backup undecryptable. */
typedef struct racer {
    pthread_barrier_t *bar;
    char id[80];
    char data[64];
    int rc;
    tm_err err;
} racer;

static void *racer_main(void *arg)
{
    racer *r = arg;
    tm_repo_set *rs = open_set(key2);
    tm_backup_writer *w = NULL;
    tm_backup_object *o = NULL;
    pthread_barrier_wait(r->bar);
    r->rc = tm_backup_begin(rs, "t4", NULL, "full", "", &w, &r->err);
    if (r->rc == 0) {
        snprintf(r->id, sizeof(r->id), "%s", tm_backup_writer_id(w));
        r->rc = tm_backup_object_open(w, "o", &o, &r->err);
    }
    if (r->rc == 0) {
        r->rc = tm_backup_object_write(o, r->data, strlen(r->data), &r->err);
        int rc2 = tm_backup_object_close(o, NULL, &r->err);
        r->rc = r->rc ? r->rc : rc2;
    }
    if (r->rc == 0) {
        r->rc = tm_backup_finish(w, &r->err);
    }
    tm_backup_writer_free(w);
    tm_repo_set_free(rs);
    return NULL;
}

static void test_same_second_ids_unique(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, 2);
        racer r[2] = {{.bar = &bar}, {.bar = &bar}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            snprintf(r[i].data, sizeof(r[i].data), "round %d writer %d", round, i);
            assert_int_equal(pthread_create(&th[i], NULL, racer_main, &r[i]), 0);
        }
        for (int i = 0; i < 2; i++) {
            pthread_join(th[i], NULL);
            if (r[i].rc != 0) {
                fail_msg("writer %d: %s", i, r[i].err.msg);
            }
            /* DESIGN's sortable form: YYYYMMDDTHHMMSSZ-<kind>. */
            assert_int_equal(strlen(r[i].id), strlen("20260101T000000Z-full"));
            assert_string_equal(r[i].id + 15, "Z-full");
        }
        pthread_barrier_destroy(&bar);
        assert_string_not_equal(r[0].id, r[1].id);
        tm_repo_set *rs = open_set(key2);
        for (int i = 0; i < 2; i++) {
            for (int repo = 0; repo < 2; repo++) {
                tm_backup_reader *rd = NULL;
                tm_err err = {0};
                if (tm_backup_open(rs, "t4", r[i].id, repo ? "b" : "a", &rd, &err) != 0) {
                    fail_msg("backup %s in %s: %s", r[i].id, repo ? "b" : "a", err.msg);
                }
                mem m = {0};
                tm_sink sink = {mem_write, mem_commit, mem_abort, &m, "mem"};
                assert_int_equal(tm_backup_get(rd, "o", &sink, &err), 0);
                assert_int_equal(m.len, strlen(r[i].data));
                assert_memory_equal(m.buf, r[i].data, m.len);
                free(m.buf);
                tm_backup_reader_free(rd);
            }
        }
        tm_repo_set_free(rs);
    }
}

/* No repository takes the key record: begin fails, and every repository
 * still gets an outcome naming it. */
static void test_begin_fails_everywhere_outcomes(void **state)
{
    (void)state;
    tm_repo_set *rs = open_set(key2);
    for (int r = 0; r < 2; r++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s/t6", dir, r ? "b" : "a");
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
    }
    tm_backup_writer *w = NULL;
    tm_err err = {0};
    int rc = tm_backup_begin(rs, "t6", NULL, "full", "", &w, &err);
    assert_int_not_equal(rc, 0);
    assert_null(w);
    assert_non_null(strstr(err.msg, "repository a: put data key record"));
    assert_non_null(strstr(err.msg, "repository b: put data key record"));
    Tidemark__TaskResult tr = TIDEMARK__TASK_RESULT__INIT;
    assert_int_equal(tm_repo_outcomes_failed(rs, &err, &tr), 0);
    assert_int_equal(tr.n_repository_outcomes, 2);
    for (size_t i = 0; i < tr.n_repository_outcomes; i++) {
        Tidemark__RepositoryOutcome *o = tr.repository_outcomes[i];
        assert_string_equal(o->repository, i ? "b" : "a");
        assert_false(o->ok);
        assert_string_equal(o->error_class, "io");
        assert_non_null(strstr(o->message, "Not a directory"));
        free(o->repository);
        free(o->region);
        free(o->error_class);
        free(o->operation);
        free(o->message);
        free(o);
    }
    free(tr.repository_outcomes);
    tm_repo_set_free(rs);
}

/* A manifest or key record already in place is never replaced. */
static void test_put_new_never_replaces(void **state)
{
    (void)state;
    tm_repo_set *rs = open_set(key2);
    tm_storage *st = tm_repo_set_storage(rs, 0);
    tm_err err = {0};
    assert_int_equal(tm_storage_put_new(st, "t5/keys/K/m", "first", 5, &err), 0);
    assert_int_equal(tm_storage_put_new(st, "t5/keys/K/m", "second", 6, &err), TM_EEXIST);
    assert_non_null(strstr(err.msg, "never overwritten"));
    void *buf = NULL;
    size_t len = 0;
    assert_int_equal(tm_storage_get(st, "t5/keys/K/m", &buf, &len, &err), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "first", 5);
    free(buf);
    /* No temp file left beside it. */
    tm_storage_info *items = NULL;
    size_t n = 0;
    char *next = NULL;
    assert_int_equal(tm_storage_list(st, "t5/", NULL, 10, &items, &n, &next, &err), 0);
    assert_int_equal(n, 1);
    tm_storage_infos_free(items, n);
    char path[512];
    snprintf(path, sizeof(path), "%s/a/t5/keys/K", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    snprintf(path, sizeof(path), "%s/a/t5/keys/K/m", dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    /* A key record is claimed the same way: an id whose record exists is
     * taken, even without a manifest. */
    tm_backup_writer *w = NULL;
    assert_int_equal(tm_storage_put_new(st, "t5/keys/Y/somekey", "x", 1, &err), 0);
    assert_int_equal(tm_backup_begin(rs, "t5", "Y", "full", "", &w, &err), TM_EEXIST);
    assert_null(w);
    tm_repo_set_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_verify_rotate),
        cmocka_unit_test(test_failed_repo_gets_no_manifest),
        cmocka_unit_test(test_open_after_all_failed_says_why),
        cmocka_unit_test(test_parallel_objects),
        cmocka_unit_test(test_same_second_ids_unique),
        cmocka_unit_test(test_put_new_never_replaces),
        cmocka_unit_test(test_begin_fails_everywhere_outcomes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
