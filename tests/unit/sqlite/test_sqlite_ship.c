/*
 * test_sqlite_ship.c - the WAL shipper driven tick by tick against a real
 * database and a writer process (small transactions of (id, time) rows),
 * and the replay of what it stored (a directory standing for the
 * repositories; the log store's own reading is covered by the integration
 * test) onto the chain's base:
 *   - restores to many times: each is a prefix of the writer's rows, none
 *     committed after the time, none missing from before the previous
 *     tick; the latest equals the live database; the WAL restarted under
 *     the shipper's checkpoints and the generation went on;
 *   - a shipper SIGKILLed mid-run resumes from its position: the same
 *     generation, no gap (the restore of the latest equals the live data);
 *   - a database replaced behind its back: a new generation, saying why;
 *   - the application checkpointing (TRUNCATE) while the shipper was not
 *     holding its reader: a new generation, never a silent gap;
 *   - the application's checkpoint storm (automatic every 20 pages, RESTART
 *     from another connection), a VACUUM and a long reader while shipping:
 *     the generation goes on or a new one starts with its reason, and the
 *     latest restore equals the live database either way;
 *   - a hole in the stored log fails the replay, naming it;
 *   - a store that fails (a repository down) only delays: the spool keeps
 *     every segment, the chain goes on, nothing is lost once it is back.
 * Forked children die with the test (PR_SET_PDEATHSIG).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "agent/engines/sqlite/replay.h"
#include "agent/engines/sqlite/segment.h"
#include "agent/engines/sqlite/ship.h"
#include "common/util.h"
#include "sqlite_fixture.h"

/* ---- a directory as the store ---- */

typedef struct store {
    char dir[200];
    int reports;
    int down; /* 1: every store fails, as a repository that is down */
} store;

static int copy_fd(int in, int out)
{
    char buf[65536];
    off_t off = 0;
    for (;;) {
        ssize_t r = pread(in, buf, sizeof(buf), off);
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            return 0;
        }
        if (write(out, buf, (size_t)r) != r) {
            return -1;
        }
        off += r;
    }
}

static int st_store(void *arg, const char *rel, int fd, tm_err *err)
{
    store *s = arg;
    if (s->down) {
        return tm_err_set(err, TM_EUNAVAIL, "repository down (test)");
    }
    char p[300], d[300];
    snprintf(d, sizeof(d), "%s/%.8s", s->dir, rel);
    mkdir(d, 0700);
    snprintf(p, sizeof(p), "%s/%s", s->dir, rel);
    int out = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0 || copy_fd(fd, out) != 0) {
        if (out >= 0) {
            close(out);
        }
        return tm_err_set(err, TM_EIO, "store %s", rel);
    }
    close(out);
    return 0;
}

static void st_report(void *arg, const tm_log_range *r)
{
    (void)r;
    ((store *)arg)->reports++;
}

static int st_list(void *arg, char ***names, size_t *n, tm_err *err)
{
    (void)err;
    store *s = arg;
    *names = calloc(4096, sizeof(char *));
    *n = 0;
    DIR *top = opendir(s->dir);
    struct dirent *g;
    while (top != NULL && (g = readdir(top)) != NULL) {
        if (g->d_name[0] == '.') {
            continue;
        }
        char d[300];
        snprintf(d, sizeof(d), "%s/%.40s", s->dir, g->d_name);
        DIR *sub = opendir(d);
        struct dirent *e;
        while (sub != NULL && (e = readdir(sub)) != NULL && *n < 4096) {
            if (e->d_name[0] != '.') {
                char rel[128];
                snprintf(rel, sizeof(rel), "%.40s/%.60s", g->d_name, e->d_name);
                (*names)[(*n)++] = strdup(rel);
            }
        }
        if (sub != NULL) {
            closedir(sub);
        }
    }
    if (top != NULL) {
        closedir(top);
    }
    return 0;
}

static int st_fetch(void *arg, const char *rel, const char *path, tm_err *err)
{
    store *s = arg;
    char p[300];
    snprintf(p, sizeof(p), "%s/%s", s->dir, rel);
    int in = open(p, O_RDONLY);
    if (in < 0) {
        return tm_err_set(err, TM_ENOENT, "no object %s", rel);
    }
    int out = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    int rc = out >= 0 ? copy_fd(in, out) : -1;
    close(in);
    if (out >= 0) {
        close(out);
    }
    return rc == 0 ? 0 : tm_err_set(err, TM_EIO, "fetch %s", rel);
}

typedef struct env {
    sq_fx f;
    store st;
    char state[200], out[200];
    tm_sqlite_sink sink;
    tm_sqlite_source src;
    tm_sqlite_ship_opts o;
} env;

static void env_new(env *e, int rows)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(sq_fx_new(&e->f, rows, 200), 0);
    snprintf(e->st.dir, sizeof(e->st.dir), "%s/store", e->f.dir);
    /* <state_dir>/ship/<target>, as the daemon lays it out. */
    char ship[200];
    snprintf(ship, sizeof(ship), "%s/ship", e->f.dir);
    mkdir(ship, 0700);
    snprintf(e->state, sizeof(e->state), "%s/ship/app", e->f.dir);
    snprintf(e->out, sizeof(e->out), "%s/restored", e->f.dir);
    mkdir(e->st.dir, 0700);
    mkdir(e->state, 0700);
    mkdir(e->out, 0700);
    e->sink = (tm_sqlite_sink){.store = st_store, .report = st_report, .arg = &e->st};
    e->src = (tm_sqlite_source){.list = st_list, .fetch = st_fetch, .arg = &e->st};
    e->o = (tm_sqlite_ship_opts){.db = e->f.db,
                                 .state_dir = e->state,
                                 .busy_ms = 10000,
                                 .ckpt_frames = 40,
                                 .ckpt_ms = 600000,
                                 .snap_pages = 64};
}

static tm_sqlite_shipper *ship_new(env *e)
{
    tm_sqlite_shipper *s = NULL;
    tm_err err = {0};
    if (tm_sqlite_ship_new(&e->o, &e->sink, &s, &err) != 0) {
        fail_msg("%s", err.msg);
    }
    return s;
}

static void tick(tm_sqlite_shipper *s, tm_sqlite_tick *t)
{
    tm_err err = {0};
    if (tm_sqlite_ship_tick(s, t, &err) != 0) {
        fail_msg("tick: %s", err.msg);
    }
}

/* The chain's base then its frames up to target (0 = all) into out/name,
 * then integrity_check; 0 or the error code. */
static int restore(env *e, const char *name, uint32_t chain, int64_t target, tm_sqlite_replayed *ri,
                   tm_err *err)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/%s", e->out, name);
    tm_sqlite_replayed base;
    int rc = tm_sqlite_restore_base_src(&e->src, chain, p, &base, err);
    if (rc == 0) {
        rc = tm_sqlite_replay_src(&e->src, chain, base.pos, target, p, ri, err);
    }
    if (rc == 0 && ri->time_ms == 0) {
        ri->time_ms = base.time_ms;
    }
    if (rc != 0) {
        unlink(p);
        return rc;
    }
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open_v2(p, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(c, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(c);
    return 0;
}

static sqlite3 *open_restored(env *e, const char *name)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/%s", e->out, name);
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open_v2(p, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    return c;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int64_t live_n(env *e)
{
    sqlite3 *live = NULL;
    assert_int_equal(sqlite3_open(e->f.db, &live), SQLITE_OK);
    int64_t n = sq_int(live, "SELECT n FROM c");
    assert_int_equal(sq_int(live, "SELECT count(*) FROM t"), n);
    sqlite3_close(live);
    return n;
}

/* The latest restore of chain equals the live database (writer stopped). */
static void latest_equals_live(env *e, const char *name, uint32_t chain)
{
    tm_sqlite_replayed ri;
    tm_err err = {0};
    if (restore(e, name, chain, 0, &ri, &err) != 0) {
        fail_msg("%s", err.msg);
    }
    sqlite3 *r = open_restored(e, name);
    int64_t n = live_n(e);
    assert_int_equal(sq_int(r, "SELECT n FROM c"), n);
    assert_int_equal(sq_int(r, "SELECT count(*) FROM t"), n);
    sqlite3_close(r);
}

static void restore_to_times(void **state)
{
    (void)state;
    env e;
    env_new(&e, 500);
    assert_int_equal(sq_writer_start(&e.f, 2000, 1000), 0);
    tm_sqlite_shipper *s = ship_new(&e);
    int64_t ticks[64];
    int nt = 0, restarts = 0, gens = 0;
    tm_sqlite_tick t;
    for (; nt < 30; nt++) {
        tick(s, &t);
        ticks[nt] = sq_now_ms();
        restarts += t.wal_restarted;
        gens += t.new_generation;
        usleep(60000);
    }
    int64_t worst = 0, commits = 0;
    assert_int_equal(sq_writer_stop(&e.f, &worst, &commits), 0);
    tick(s, &t);
    uint32_t chain = tm_sqlite_ship_chain(s);
    tm_sqlite_ship_free(s);
    print_message("writer: %lld commits, worst %lld ms; WAL restarts %d; reports %d\n",
                  (long long)commits, (long long)worst, restarts, e.st.reports);
    assert_int_equal(gens, 1);
    assert_true(restarts >= 1); /* the shipper's checkpoints let the WAL restart */
    assert_true(commits > 50);
    latest_equals_live(&e, "latest.db", chain);

    sqlite3 *live = NULL;
    assert_int_equal(sqlite3_open(e.f.db, &live), SQLITE_OK);
    /* Times between ticks. */
    srand(7);
    for (int k = 0; k < 8; k++) {
        int i = 2 + rand() % (nt - 3);
        int64_t target = ticks[i] + rand() % 50;
        char name[32];
        snprintf(name, sizeof(name), "t%d.db", k);
        tm_sqlite_replayed ri;
        tm_err err = {0};
        if (restore(&e, name, chain, target, &ri, &err) != 0) {
            fail_msg("%s", err.msg);
        }
        sqlite3 *r = open_restored(&e, name);
        int64_t n = sq_int(r, "SELECT n FROM c");
        /* A prefix of the writer's transactions, each whole. */
        assert_int_equal(sq_int(r, "SELECT count(*) FROM t"), n);
        assert_int_equal(sq_int(r, "SELECT max(id) FROM t"), n);
        /* Nothing committed after the target... */
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE ms > %lld", (long long)target);
        assert_int_equal(sq_int(r, sql), 0);
        /* ...and nothing missing that committed before the tick before. */
        /* (ms is when the writer began its transaction: one that waited
         * for the lock past the tick is in the next.) */
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE ms <= %lld",
                 (long long)(ticks[i - 1] - 1 - worst));
        assert_true(n >= sq_int(live, sql));
        assert_true(ri.time_ms <= target);
        sqlite3_close(r);
    }
    /* The base is written to a new file only. */
    tm_sqlite_replayed ri;
    tm_err err = {0};
    char p[300];
    snprintf(p, sizeof(p), "%s/latest.db", e.out);
    assert_int_equal(tm_sqlite_restore_base_src(&e.src, chain, p, &ri, &err), TM_EEXIST);

    /* A damaged segment (the last) is named, with its frame. */
    char **names = NULL;
    size_t n = 0;
    st_list(&e.st, &names, &n, &err);
    qsort(names, n, sizeof(*names), cmp_names);
    snprintf(p, sizeof(p), "%s/%s", e.st.dir, names[n - 1]);
    FILE *fp = fopen(p, "r+b");
    assert_non_null(fp);
    fseek(fp, -100, SEEK_END);
    int ch = fgetc(fp);
    fseek(fp, -100, SEEK_END);
    fputc(ch ^ 0x55, fp);
    fclose(fp);
    assert_int_equal(restore(&e, "bad.db", chain, 0, &ri, &err), TM_ECORRUPT);
    print_message("damaged: %s\n", err.msg);
    assert_non_null(strstr(err.msg, names[n - 1]));
    assert_non_null(strstr(err.msg, "frame"));
    assert_non_null(strstr(err.msg, "checksum"));
    /* A restore to a time before it does not need it. */
    assert_int_equal(restore(&e, "before-bad.db", chain, ticks[nt / 2], &ri, &err), 0);

    /* A hole: a segment in the middle removed. */
    int removed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!removed && i > n / 2 && i < n - 1 && strstr(names[i], ".wal") != NULL) {
            snprintf(p, sizeof(p), "%s/%s", e.st.dir, names[i]);
            assert_int_equal(unlink(p), 0);
            removed = 1;
        }
        free(names[i]);
    }
    free(names);
    assert_true(removed);
    assert_int_equal(restore(&e, "hole.db", chain, 0, &ri, &err), TM_ECORRUPT);
    print_message("hole: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "hole"));
    snprintf(p, sizeof(p), "%s/hole.db", e.out);
    assert_int_equal(access(p, F_OK), -1);
    sqlite3_close(live);
    sq_fx_free(&e.f);
}

/* 1 when a stored object's name ends in suffix. */
static int has_suffix(const char *dir, const char *suffix)
{
    store st;
    memset(&st, 0, sizeof(st));
    snprintf(st.dir, sizeof(st.dir), "%s", dir);
    char **names = NULL;
    size_t n = 0;
    tm_err err = {0};
    st_list(&st, &names, &n, &err);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]), k = strlen(suffix);
        found |= l >= k && strcmp(names[i] + l - k, suffix) == 0;
        free(names[i]);
    }
    free(names);
    return found;
}

/* A shipper in a child process, ticking until killed. */
static pid_t ship_child(env *e, int pause_us)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        tm_sqlite_shipper *s = ship_new(e);
        for (;;) {
            tm_sqlite_tick t;
            tick(s, &t);
            usleep((useconds_t)pause_us);
        }
    }
    return pid;
}

static void killed_resumes(void **state)
{
    (void)state;
    env e;
    env_new(&e, 200);
    /* No automatic checkpoint by the application and none by the shipper
     * while it is down: the WAL still holds the continuation. */
    e.o.ckpt_frames = 1000000;
    assert_int_equal(sq_writer_start(&e.f, 3000, 0), 0);
    uint32_t chain = 0;
    char last[64] = "";
    for (int round = 0; round < 3; round++) {
        pid_t pid = ship_child(&e, 20000);
        if (round == 0) {
            /* The chain's base first: a shipper killed during it must start
             * a new chain (its snapshot did not finish). */
            for (int k = 0; k < 600 && !has_suffix(e.st.dir, ".gen"); k++) {
                usleep(50000);
            }
        }
        usleep(round == 0 ? 500000 : 400000 + 137000 * round);
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        /* The saved position, as a snapshot reads it: the same chain,
         * never going back. */
        tm_err err = {0};
        uint32_t c = 0;
        char pos[64];
        tm_agent_conf conf = {.state_dir = e.f.dir};
        assert_int_equal(tm_sqlite_ship_position(&conf, "app", &c, pos, sizeof(pos), &err), 0);
        if (round == 0) {
            chain = c;
        }
        assert_true(c != 0);
        assert_int_equal(c, chain);
        assert_int_equal(strlen(pos), TM_SQLITE_POS_LEN);
        assert_true(strcmp(pos, last) >= 0);
        memcpy(last, pos, sizeof(last));
    }
    tm_sqlite_shipper *s = ship_new(&e);
    assert_true(chain != 0);
    assert_int_equal(tm_sqlite_ship_chain(s), chain);
    tm_sqlite_tick t;
    tick(s, &t);
    if (t.new_generation) {
        fail_msg("a new chain after the restarts: %s", t.why);
    }
    assert_int_equal(t.upload_failed, 0);
    int64_t worst, commits;
    assert_int_equal(sq_writer_stop(&e.f, &worst, &commits), 0);
    tick(s, &t);
    assert_int_equal(t.new_generation, 0);
    assert_int_equal(tm_sqlite_ship_chain(s), chain);
    latest_equals_live(&e, "latest.db", chain);

    /* The application truncates the WAL while no shipper holds it, and
     * writes on: the next shipper cannot prove continuity. */
    tm_sqlite_ship_free(s);
    sqlite3 *live = NULL;
    assert_int_equal(sqlite3_open(e.f.db, &live), SQLITE_OK);
    assert_int_equal(sq_exec(live, "INSERT INTO t VALUES(100000, 0, NULL); UPDATE c SET n=n+1"),
                     SQLITE_OK);
    assert_int_equal(sq_exec(live, "PRAGMA wal_checkpoint(TRUNCATE)"), SQLITE_OK);
    assert_int_equal(sq_exec(live, "INSERT INTO t VALUES(100001, 0, NULL); UPDATE c SET n=n+1"),
                     SQLITE_OK);
    s = ship_new(&e);
    tick(s, &t);
    assert_int_equal(t.new_generation, 1);
    assert_int_equal(t.reset, 1);
    print_message("new generation: %s\n", t.why);
    assert_non_null(strstr(t.why, "WAL"));
    uint32_t chain2 = tm_sqlite_ship_chain(s);
    assert_true(chain2 > chain);
    latest_equals_live(&e, "second.db", chain2);

    /* Replaced: another file renamed over the database. */
    char other[300];
    snprintf(other, sizeof(other), "%s/other.db", e.f.dir);
    sqlite3 *oc = NULL;
    assert_int_equal(sqlite3_open(other, &oc), SQLITE_OK);
    assert_int_equal(sq_exec(oc, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, "
                                 "ms INTEGER, v BLOB); CREATE TABLE c(n); INSERT INTO c VALUES(0)"),
                     SQLITE_OK);
    sqlite3_close(oc);
    sqlite3_close(live);
    /* As a restore by hand does: the old file's -wal and -shm go too. */
    char side[300];
    snprintf(side, sizeof(side), "%s-wal", e.f.db);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", e.f.db);
    unlink(side);
    assert_int_equal(rename(other, e.f.db), 0);
    tick(s, &t);
    assert_int_equal(t.new_generation, 1);
    assert_int_equal(t.reset, 1);
    print_message("new generation: %s\n", t.why);
    assert_non_null(strstr(t.why, "replaced"));
    uint32_t chain3 = tm_sqlite_ship_chain(s);
    assert_true(chain3 > chain2);
    assert_int_equal(sqlite3_open(e.f.db, &live), SQLITE_OK);
    assert_int_equal(sq_exec(live, "INSERT INTO t VALUES(1, 0, NULL); UPDATE c SET n=n+1"),
                     SQLITE_OK);
    sqlite3_close(live);
    tick(s, &t);
    assert_int_equal(t.new_generation, 0);
    tm_sqlite_ship_free(s);
    latest_equals_live(&e, "third.db", chain3);
    sq_fx_free(&e.f);
}

static void storm(void **state)
{
    (void)state;
    env e;
    env_new(&e, 300);
    assert_int_equal(sq_writer_start(&e.f, 2000, 20), 0);
    tm_sqlite_shipper *s = ship_new(&e);
    sqlite3 *app = NULL;
    assert_int_equal(sqlite3_open(e.f.db, &app), SQLITE_OK);
    sqlite3_busy_timeout(app, 200);
    sqlite3 *reader = NULL;
    assert_int_equal(sqlite3_open(e.f.db, &reader), SQLITE_OK);
    tm_sqlite_tick t;
    int gens = 0, restarts = 0;
    uint32_t first = 0;
    for (int i = 0; i < 36; i++) {
        if (i % 5 == 2) {
            /* BUSY is the expected answer while the shipper reads. */
            sqlite3_exec(app, "PRAGMA wal_checkpoint(RESTART)", NULL, NULL, NULL);
        }
        if (i % 7 == 3) {
            sqlite3_exec(app, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        }
        if (i == 10) {
            assert_int_equal(sq_exec(app, "DELETE FROM t WHERE id <= 100 AND ms = 0"), SQLITE_OK);
            assert_int_equal(sq_exec(app, "UPDATE c SET n = (SELECT count(*) FROM t)"), SQLITE_OK);
            assert_int_equal(sq_exec(app, "VACUUM"), SQLITE_OK);
        }
        if (i == 15) {
            assert_int_equal(sq_exec(reader, "BEGIN; SELECT count(*) FROM t"), SQLITE_OK);
        }
        if (i == 30) {
            assert_int_equal(sq_exec(reader, "COMMIT"), SQLITE_OK);
        }
        tick(s, &t);
        if (i == 0) {
            first = t.chain;
        }
        if (t.new_generation && i > 0) {
            print_message("tick %d: new generation: %s\n", i, t.why);
        }
        gens += t.new_generation;
        restarts += t.wal_restarted;
        usleep(50000);
    }
    int64_t worst = 0, commits = 0;
    assert_int_equal(sq_writer_stop(&e.f, &worst, &commits), 0);
    tick(s, &t);
    uint32_t chain = tm_sqlite_ship_chain(s);
    tm_sqlite_ship_free(s);
    print_message("storm: %d generations, %d WAL restarts, %lld commits, worst %lld ms\n", gens,
                  restarts, (long long)commits, (long long)worst);
    /* Continuity while the shipper holds its reader: one chain. */
    assert_int_equal(gens, 1);
    assert_int_equal(chain, first);
    assert_true(restarts >= 1);
    latest_equals_live(&e, "latest.db", chain);
    sqlite3 *r = open_restored(&e, "latest.db");
    assert_int_equal(sq_int(r, "SELECT count(*) FROM t WHERE id <= 100"), 0);
    sqlite3_close(r);
    sqlite3_close(reader);
    sqlite3_close(app);
    sq_fx_free(&e.f);
}

static void repository_down(void **state)
{
    (void)state;
    env e;
    env_new(&e, 100);
    assert_int_equal(sq_writer_start(&e.f, 2000, 1000), 0);
    tm_sqlite_shipper *s = ship_new(&e);
    tm_sqlite_tick t;
    tick(s, &t);
    uint32_t chain = t.chain;
    e.st.down = 1;
    int failed = 0;
    uint32_t pending = 0;
    for (int i = 0; i < 15; i++) {
        usleep(40000);
        tm_err err = {0};
        int rc = tm_sqlite_ship_tick(s, &t, &err);
        if (rc != 0) {
            assert_int_equal(t.upload_failed, 1);
            assert_non_null(strstr(err.msg, "repository down"));
            failed++;
        }
        assert_int_equal(t.new_generation, 0);
        pending = t.pending;
    }
    assert_int_equal(failed, 15);
    assert_true(pending >= 5); /* spooled, in order, waiting */
    e.st.down = 0;
    int64_t worst, commits;
    assert_int_equal(sq_writer_stop(&e.f, &worst, &commits), 0);
    tick(s, &t);
    assert_int_equal(t.pending, 0);
    assert_int_equal(t.new_generation, 0);
    assert_int_equal(tm_sqlite_ship_chain(s), chain);
    tm_sqlite_ship_free(s);
    latest_equals_live(&e, "latest.db", chain);
    sq_fx_free(&e.f);
}

static void own_truncate(void **state)
{
    (void)state;
    env e;
    env_new(&e, 100);
    /* A tiny bound: the shipper truncates the WAL almost every tick. */
    e.o.truncate_bytes = 16 * 1024;
    e.o.ckpt_frames = 1000000;
    assert_int_equal(sq_writer_start(&e.f, 3000, 0), 0);
    tm_sqlite_shipper *s = ship_new(&e);
    tm_sqlite_tick t;
    int gens = 0, restarts = 0, ckpts = 0;
    for (int i = 0; i < 25; i++) {
        tick(s, &t);
        if (t.new_generation && i > 0) {
            /* Allowed only with its reason: a commit slipped in. */
            print_message("tick %d: new generation: %s\n", i, t.why);
            assert_non_null(strstr(t.why, "TRUNCATE"));
        }
        gens += t.new_generation;
        restarts += t.wal_restarted;
        ckpts += t.checkpointed;
        usleep(40000);
    }
    int64_t worst = 0, commits = 0;
    assert_int_equal(sq_writer_stop(&e.f, &worst, &commits), 0);
    tick(s, &t);
    tick(s, &t);
    uint32_t chain = tm_sqlite_ship_chain(s);
    tm_sqlite_ship_free(s);
    print_message(
        "own TRUNCATE: %d checkpoints, %d WAL restarts followed, %d chains, %lld commits, "
        "worst %lld ms\n",
        ckpts, restarts, gens, (long long)commits, (long long)worst);
    assert_true(ckpts >= 10);
    /* Most truncations keep the chain. How many happen depends on how the
     * writer and the ticks interleave (fewer on a loaded machine: the CI
     * run once saw fewer than 5), so only that some did, and that more
     * were followed than cost a chain. */
    assert_true(restarts >= 1);
    assert_true(restarts > gens);
    struct stat st;
    char wal[300];
    snprintf(wal, sizeof(wal), "%s-wal", e.f.db);
    assert_true(stat(wal, &st) != 0 || st.st_size <= 64 * 1024);
    latest_equals_live(&e, "latest.db", chain);
    sq_fx_free(&e.f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(restore_to_times),
        cmocka_unit_test(killed_resumes),
        cmocka_unit_test(storm),
        cmocka_unit_test(repository_down),
        cmocka_unit_test(own_truncate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
