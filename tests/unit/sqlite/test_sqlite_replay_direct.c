/*
 * test_sqlite_replay_direct.c - the restore's direct path (a source with
 * get, as the log store is: the base written straight into the database
 * file, segments read into memory, frames pwritten as pages) against the
 * path through files (a source with fetch only), on a chain the real
 * shipper stored while a writer ran:
 *   - the latest and times in between: the same database bytes both ways,
 *     and the latest holds the live database's rows;
 *   - every object's first copy fails half-way (a repository whose copy
 *     is damaged; the next one's is taken): nothing of the failed copy
 *     stays, the bytes are the same;
 *   - a truncated segment and a damaged one are named in the error; a base
 *     that cannot be read leaves no file behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <glob.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "agent/engines/sqlite/replay.h"
#include "agent/engines/sqlite/ship.h"
#include "common/util.h"
#include "sqlite_fixture.h"

/* ---- a directory of objects "<chain>/<name>" ---- */

typedef struct objdir {
    char dir[200];
    int fail_first; /* get: each object's first copy fails half-way */
} objdir;

static int od_store(void *arg, const char *rel, int fd, tm_err *err)
{
    objdir *o = arg;
    char p[512];
    snprintf(p, sizeof(p), "%s/%.8s", o->dir, rel);
    mkdir(p, 0700);
    snprintf(p, sizeof(p), "%s/%s", o->dir, rel);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return tm_err_set(err, TM_EIO, "stat the spool of %s", rel);
    }
    char *b = malloc((size_t)st.st_size + 1);
    ssize_t n = b != NULL ? pread(fd, b, (size_t)st.st_size, 0) : -1;
    int rc = n == st.st_size ? tm_file_write_atomic(p, b, (size_t)n, 0600, err)
                             : tm_err_set(err, TM_EIO, "read the spool of %s", rel);
    free(b);
    return rc;
}

static int od_list(void *arg, char ***names, size_t *n, tm_err *err)
{
    objdir *o = arg;
    char pat[512];
    snprintf(pat, sizeof(pat), "%s/*/*", o->dir);
    glob_t g;
    *names = NULL;
    *n = 0;
    if (glob(pat, 0, NULL, &g) != 0) {
        return TM_OK;
    }
    *names = calloc(g.gl_pathc + 1, sizeof(char *));
    if (*names == NULL) {
        globfree(&g);
        return tm_err_set(err, TM_ENOMEM, "list");
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        (*names)[(*n)++] = strdup(g.gl_pathv[i] + strlen(o->dir) + 1);
    }
    globfree(&g);
    return TM_OK;
}

static int od_read(objdir *o, const char *rel, char **b, size_t *len, tm_err *err)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", o->dir, rel);
    return tm_file_read(p, b, len, err);
}

static int od_fetch(void *arg, const char *rel, const char *path, tm_err *err)
{
    char *b = NULL;
    size_t len = 0;
    int rc = od_read(arg, rel, &b, &len, err);
    if (rc == TM_OK) {
        rc = tm_file_write_atomic(path, b, len, 0600, err);
    }
    free(b);
    return rc;
}

/* As the log store does: a sink per copy tried, committed or aborted. */
static int od_get(void *arg, const char *rel, tm_log_sink_open open, void *open_arg, tm_err *err)
{
    objdir *o = arg;
    char *b = NULL;
    size_t len = 0;
    int rc = od_read(o, rel, &b, &len, err);
    tm_sink s;
    if (rc == TM_OK && o->fail_first) {
        /* The first repository's copy: more than the object, of other
         * bytes, then its check fails. */
        rc = open(open_arg, &s, err);
        char *junk = malloc(len + 4096);
        if (rc == TM_OK && junk != NULL) {
            memset(junk, 0xa5, len + 4096);
            rc = s.write(s.arg, junk, len + 4096, err);
            s.abort(s.arg);
        }
        free(junk);
    }
    if (rc == TM_OK) {
        rc = open(open_arg, &s, err);
    }
    if (rc == TM_OK) {
        /* In three writes of uneven sizes. */
        size_t cut[4] = {0, len / 3, len / 3 + 1 + len / 4, len};
        for (int i = 0; i < 3 && rc == TM_OK; i++) {
            rc = s.write(s.arg, b + cut[i], cut[i + 1] - cut[i], err);
        }
        if (rc == TM_OK) {
            rc = s.commit(s.arg, err);
        } else {
            s.abort(s.arg);
        }
    }
    free(b);
    return rc;
}

/* ---- a shipped chain ---- */

typedef struct env {
    sq_fx f;
    objdir od;
    char out[200];
    tm_sqlite_source files, direct;
    uint32_t chain;
    int64_t ticks[40];
    int nt;
} env;

/* One tick, as the engine's ship hook runs them: a write lock held past
 * busy_timeout (the writer below commits every 2 ms; under ASan on a busy
 * machine it can hold the lock for most of 10 s) fails the tick, and the
 * next tick tries again. */
static int tick(tm_sqlite_shipper *s, tm_sqlite_tick *t, tm_err *err)
{
    int rc = 0;
    for (int i = 0; i < 4; i++) {
        memset(err, 0, sizeof(*err));
        rc = tm_sqlite_ship_tick(s, t, err);
        if (rc == 0 || strstr(err->msg, "database is locked") == NULL) {
            break;
        }
    }
    return rc;
}

static void ship_chain(env *e)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(sq_fx_new(&e->f, 400, 200), 0);
    char state[200];
    snprintf(e->od.dir, sizeof(e->od.dir), "%s/store", e->f.dir);
    snprintf(e->out, sizeof(e->out), "%s/out", e->f.dir);
    snprintf(state, sizeof(state), "%s/ship", e->f.dir);
    mkdir(e->od.dir, 0700);
    mkdir(e->out, 0700);
    mkdir(state, 0700);
    snprintf(state, sizeof(state), "%s/ship/app", e->f.dir);
    mkdir(state, 0700);
    e->files = (tm_sqlite_source){.list = od_list, .fetch = od_fetch, .arg = &e->od};
    e->direct =
        (tm_sqlite_source){.list = od_list, .fetch = od_fetch, .get = od_get, .arg = &e->od};
    tm_sqlite_sink sink = {.store = od_store, .arg = &e->od};
    tm_sqlite_ship_opts o = {.db = e->f.db,
                             .state_dir = state,
                             .busy_ms = 10000,
                             .ckpt_frames = 40,
                             .ckpt_ms = 600000,
                             .snap_pages = 64};
    tm_sqlite_shipper *s = NULL;
    tm_err err = {0};
    if (tm_sqlite_ship_new(&o, &sink, &s, &err) != 0) {
        fail_msg("%s", err.msg);
    }
    assert_int_equal(sq_writer_start(&e->f, 2000, 1000), 0);
    tm_sqlite_tick t;
    for (; e->nt < 20; e->nt++) {
        if (tick(s, &t, &err) != 0) {
            fail_msg("tick: %s", err.msg);
        }
        e->ticks[e->nt] = sq_now_ms();
        usleep(50000);
    }
    int64_t worst = 0, commits = 0;
    assert_int_equal(sq_writer_stop(&e->f, &worst, &commits), 0);
    if (tick(s, &t, &err) != 0) {
        fail_msg("tick: %s", err.msg);
    }
    e->chain = tm_sqlite_ship_chain(s);
    tm_sqlite_ship_free(s);
    assert_true(commits > 50);
}

/* The chain's base, then its frames up to until (0 = all), into out/name. */
static int restore(env *e, const tm_sqlite_source *src, const char *name, int64_t until,
                   tm_sqlite_replayed *ri, tm_err *err)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", e->out, name);
    unlink(p);
    tm_sqlite_replayed base;
    int rc = tm_sqlite_restore_base_src(src, e->chain, p, &base, err);
    if (rc == TM_OK) {
        rc = tm_sqlite_replay_src(src, e->chain, base.pos, until, p, ri, err);
    }
    return rc;
}

static void same_bytes(env *e, const char *a, const char *b)
{
    char pa[512], pb[512];
    snprintf(pa, sizeof(pa), "%s/%s", e->out, a);
    snprintf(pb, sizeof(pb), "%s/%s", e->out, b);
    char *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    tm_err err = {0};
    assert_int_equal(tm_file_read(pa, &x, &lx, &err), 0);
    assert_int_equal(tm_file_read(pb, &y, &ly, &err), 0);
    assert_int_equal(lx, ly);
    assert_true(lx > 0 && memcmp(x, y, lx) == 0);
    free(x);
    free(y);
}

static int64_t count_rows(const char *db, const char *sql)
{
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int64_t v = sq_int(c, sql);
    sqlite3_close(c);
    return v;
}

static void direct_equals_files(void **state)
{
    (void)state;
    env e;
    ship_chain(&e);
    tm_sqlite_replayed a, b;
    tm_err err = {0};
    e.od.fail_first = 1; /* the direct path also recovers from a failed copy */
    /* The base alone. */
    char p[512];
    const char *bases[2] = {"files-base.db", "direct-base.db"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s", e.out, bases[i]);
        if (tm_sqlite_restore_base_src(i == 0 ? &e.files : &e.direct, e.chain, p, &a, &err) != 0) {
            fail_msg("base: %s", err.msg);
        }
    }
    same_bytes(&e, bases[0], bases[1]);
    for (int k = 0; k < 5; k++) {
        int64_t until = k == 0 ? 0 : e.ticks[2 + (k * 7) % (e.nt - 3)] + 13 * k;
        if (restore(&e, &e.files, "files.db", until, &a, &err) != 0 ||
            restore(&e, &e.direct, "direct.db", until, &b, &err) != 0) {
            fail_msg("restore to %lld: %s", (long long)until, err.msg);
        }
        assert_int_equal(a.frames, b.frames);
        assert_int_equal(a.time_ms, b.time_ms);
        assert_string_equal(a.pos, b.pos);
        same_bytes(&e, "files.db", "direct.db");
        snprintf(p, sizeof(p), "%s/direct.db", e.out);
        int64_t n = count_rows(p, "SELECT n FROM c");
        assert_int_equal(count_rows(p, "SELECT count(*) FROM t"), n);
        if (until == 0) {
            /* The latest: the live database's rows. */
            assert_int_equal(n, count_rows(e.f.db, "SELECT count(*) FROM t"));
            assert_true(b.frames > 0);
        } else {
            char sql[96];
            snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE ms > %lld", (long long)until);
            assert_int_equal(count_rows(p, sql), 0);
        }
    }
    sq_fx_free(&e.f);
}

/* The newest segment's name (the one a latest restore reads last). */
static void last_segment(env *e, char *out, size_t cap)
{
    char **names = NULL;
    size_t n = 0;
    tm_err err = {0};
    assert_int_equal(od_list(&e->od, &names, &n, &err), 0);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (strstr(names[i], ".wal") != NULL && strcmp(names[i], out) > 0) {
            snprintf(out, cap, "%s", names[i]);
        }
        free(names[i]);
    }
    free(names);
    assert_true(out[0] != '\0');
}

static void damaged_objects_are_named(void **state)
{
    (void)state;
    env e;
    ship_chain(&e);
    char seg[128], p[512], keep[512];
    last_segment(&e, seg, sizeof(seg));
    snprintf(p, sizeof(p), "%s/%s", e.od.dir, seg);
    snprintf(keep, sizeof(keep), "%s/kept", e.f.dir);
    char *orig = NULL;
    size_t len = 0;
    tm_err err = {0};
    assert_int_equal(tm_file_read(p, &orig, &len, &err), 0);
    tm_sqlite_replayed ri;

    /* Truncated: cut in the middle of its last frame. */
    assert_int_equal(truncate(p, (off_t)len - 100), 0);
    int rc = restore(&e, &e.direct, "cut.db", 0, &ri, &err);
    print_message("truncated: %s\n", err.msg);
    assert_true(rc == TM_EPROTO || rc == TM_ECORRUPT);
    assert_non_null(strstr(err.msg, seg));

    /* A byte of a page changed: its frame's checksum fails. */
    orig[len - 100] ^= 0x55;
    assert_int_equal(tm_file_write_atomic(p, orig, len, 0600, &err), 0);
    memset(&err, 0, sizeof(err));
    assert_int_equal(restore(&e, &e.direct, "flip.db", 0, &ri, &err), TM_ECORRUPT);
    print_message("damaged: %s\n", err.msg);
    assert_non_null(strstr(err.msg, seg));
    assert_non_null(strstr(err.msg, "checksum"));
    /* A time before it does not need it. */
    assert_int_equal(restore(&e, &e.direct, "before.db", e.ticks[e.nt / 2], &ri, &err), 0);

    /* The base unreadable: no file left behind. */
    char **names = NULL;
    size_t n = 0;
    assert_int_equal(od_list(&e.od, &names, &n, &err), 0);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (l > 3 && strcmp(names[i] + l - 3, ".db") == 0) {
            snprintf(p, sizeof(p), "%s/%s", e.od.dir, names[i]);
            assert_int_equal(rename(p, keep), 0);
        }
        free(names[i]);
    }
    free(names);
    assert_int_equal(restore(&e, &e.direct, "nobase.db", 0, &ri, &err), TM_ENOENT);
    print_message("no base: %s\n", err.msg);
    snprintf(p, sizeof(p), "%s/nobase.db", e.out);
    assert_int_equal(access(p, F_OK), -1);
    free(orig);
    sq_fx_free(&e.f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(direct_equals_files),
        cmocka_unit_test(damaged_objects_are_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
