/*
 * test_sqlite_watch.c - the commit observer (agent/engines/sqlite/watch.h):
 *   - it reads the "-shm" header of a real database: the last commit's
 *     frame, salts and checksum, exactly as the WAL file has them;
 *   - timing: an observation that matches a commit byte for byte gives its
 *     time (and the commits before it in the same WAL); one that does not
 *     (another checksum, or another WAL reusing the frame numbers after a
 *     restart) leaves the tick's time; never later than the tick;
 *   - through the shipper, commits made 50 ms apart in one 1 s tick carry
 *     their own times: each at or after its BEGIN and before the next
 *     transaction's (a restore to a time between two commits holds exactly
 *     those before it); without the observer they all carry the tick's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "agent/engines/sqlite/segment.h"
#include "agent/engines/sqlite/ship.h"
#include "agent/engines/sqlite/wal.h"
#include "agent/engines/sqlite/watch.h"
#include "sqlite_fixture.h"

/* The WAL of db scanned: its header and last commit (frame and checksum). */
static void scan_wal(const char *db, tm_sqlite_wal *w, uint32_t ck[2])
{
    char p[200];
    snprintf(p, sizeof(p), "%s-wal", db);
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    tm_err err = {0};
    tm_sqlite_wal_hdr h;
    assert_int_equal(tm_sqlite_wal_read_hdr(fd, &h, &err), TM_OK);
    tm_sqlite_wal_begin(w, &h);
    assert_int_equal(tm_sqlite_wal_scan_fd(fd, w, 0, &err), TM_OK);
    assert_true(w->commit > 0);
    uint8_t fh[TM_SQLITE_WAL_FRAME_HDR];
    assert_int_equal(pread(fd, fh, sizeof(fh), (off_t)tm_sqlite_wal_frame_offset(&h, w->commit)),
                     (ssize_t)sizeof(fh));
    close(fd);
    ck[0] = tm_sqlite_wal_be32(fh + 16);
    ck[1] = tm_sqlite_wal_be32(fh + 20);
}

static void reads_the_shm_header(void **state)
{
    (void)state;
    sq_fx f;
    assert_int_equal(sq_fx_new(&f, 10, 100), 0);
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open(f.db, &c), SQLITE_OK);
    sq_exec(c, "PRAGMA wal_autocheckpoint=0");
    tm_sqlite_watch_opts o = {.no_thread = 1};
    tm_sqlite_watch *w = NULL;
    tm_err err = {0};
    assert_int_equal(tm_sqlite_watch_new(f.db, &o, &w, &err), TM_OK);
    tm_sqlite_watch_look(w);
    uint64_t n0 = tm_sqlite_watch_count(w);
    for (int i = 0; i < 3; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "INSERT INTO t VALUES(%d, 0, randomblob(3000))", 100 + i);
        assert_int_equal(sq_exec(c, sql), SQLITE_OK);
        int64_t t0 = sq_now_ms();
        assert_int_equal(tm_sqlite_watch_look(w), 1);
        assert_int_equal(tm_sqlite_watch_look(w), 0); /* the same header: no new observation */
        tm_sqlite_wal wal;
        uint32_t ck[2];
        scan_wal(f.db, &wal, ck);
        tm_sqlite_watch_commit cm = {.frame = wal.commit, .cksum1 = ck[0], .cksum2 = ck[1]};
        int64_t later = sq_now_ms() + 5000;
        assert_int_equal(tm_sqlite_watch_stamp(w, wal.h.salt1, wal.h.salt2, &cm, 1, later), 1);
        assert_true(cm.time_ms >= t0 && cm.time_ms <= t0 + 1000);
    }
    assert_int_equal(tm_sqlite_watch_count(w), n0 + 3);
    tm_sqlite_watch_free(w);
    sqlite3_close(c);
    sq_fx_free(&f);
}

static void stamp_matches_or_falls_back(void **state)
{
    (void)state;
    tm_sqlite_watch_opts o = {.no_thread = 1};
    tm_sqlite_watch *w = NULL;
    tm_err err = {0};
    assert_int_equal(tm_sqlite_watch_new("/nonexistent/app.db", &o, &w, &err), TM_OK);
    assert_int_equal(tm_sqlite_watch_look(w), 0); /* no "-shm": nothing */
    const int64_t now = 10000;
    /* WAL A (salts 7, 9): commits at frames 3, 5, 8. */
    tm_sqlite_seen a5 = {
        .salt1 = 7, .salt2 = 9, .frame = 5, .cksum1 = 55, .cksum2 = 56, .time_ms = 9100};
    tm_sqlite_seen a8_other = {
        .salt1 = 7, .salt2 = 9, .frame = 8, .cksum1 = 1, .cksum2 = 2, .time_ms = 9200};
    tm_sqlite_watch_note(w, &a5);
    tm_sqlite_watch_note(w, &a8_other);
    tm_sqlite_watch_commit c[3] = {{.frame = 3, .cksum1 = 33, .cksum2 = 34},
                                   {.frame = 5, .cksum1 = 55, .cksum2 = 56},
                                   {.frame = 8, .cksum1 = 88, .cksum2 = 89}};
    assert_int_equal(tm_sqlite_watch_stamp(w, 7, 9, c, 3, now), 1);
    assert_int_equal(c[0].time_ms, 9100); /* before the commit seen at 9100 */
    assert_int_equal(c[1].time_ms, 9100);
    assert_int_equal(c[2].time_ms, now); /* another checksum at frame 8: the tick's time */
    /* The WAL restarted: B (salts 8, 4) reuses frame numbers 3 and 5; A's
     * observations say nothing about it. */
    tm_sqlite_watch_commit b[2] = {{.frame = 3, .cksum1 = 33, .cksum2 = 34},
                                   {.frame = 5, .cksum1 = 55, .cksum2 = 56}};
    assert_int_equal(tm_sqlite_watch_stamp(w, 8, 4, b, 2, now), 0);
    assert_int_equal(b[0].time_ms, now);
    assert_int_equal(b[1].time_ms, now);
    /* Same salts, same frame, one checksum word differs: no match. */
    tm_sqlite_watch_commit d = {.frame = 5, .cksum1 = 55, .cksum2 = 57};
    assert_int_equal(tm_sqlite_watch_stamp(w, 7, 9, &d, 1, now), 0);
    assert_int_equal(d.time_ms, now);
    /* Never later than the tick. */
    tm_sqlite_watch_commit e = {.frame = 5, .cksum1 = 55, .cksum2 = 56};
    assert_int_equal(tm_sqlite_watch_stamp(w, 7, 9, &e, 1, 9000), 0);
    assert_int_equal(e.time_ms, 9000);
    /* The bound: the oldest observations go, the newest stay. */
    for (uint32_t i = 0; i < TM_SQLITE_WATCH_CAP; i++) {
        tm_sqlite_seen s = {.salt1 = 1, .salt2 = 1, .frame = i + 1, .time_ms = 1};
        tm_sqlite_watch_note(w, &s);
    }
    tm_sqlite_watch_commit g = {.frame = 5, .cksum1 = 55, .cksum2 = 56};
    assert_int_equal(tm_sqlite_watch_stamp(w, 7, 9, &g, 1, now), 0);
    assert_int_equal(g.time_ms, now);
    assert_int_equal(tm_sqlite_watch_stamp(NULL, 7, 9, &g, 1, now), 0);
    tm_sqlite_watch_free(w);
}

/* ---- through the shipper ---- */

typedef struct got {
    int64_t times[256];
    int n;
    int64_t tick_ms;
} got;

/* The store: the commit times of every segment stored. */
static int keep_times(void *arg, const char *rel, int fd, tm_err *err)
{
    got *g = arg;
    size_t len = strlen(rel);
    if (len < 4 || strcmp(rel + len - 4, ".wal") != 0) {
        return TM_OK;
    }
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *buf = malloc((size_t)st.st_size);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    tm_sqlite_seg seg;
    assert_int_equal(tm_sqlite_seg_decode(buf, (size_t)st.st_size, &seg, err), TM_OK);
    for (uint32_t i = 0; i < seg.ncommits && g->n < 256; i++) {
        g->times[g->n++] = seg.commits[i].time_ms;
    }
    tm_sqlite_seg_free(&seg);
    free(buf);
    return TM_OK;
}

/* Ten commits 50 ms apart between two ticks; began[i] is when commit i's
 * transaction began, began[10] after the last one returned. */
static void ship_ten_commits(int no_watch, got *g, int64_t began[11])
{
    sq_fx f;
    assert_int_equal(sq_fx_new(&f, 10, 100), 0);
    char state[200];
    snprintf(state, sizeof(state), "%s/state", f.dir);
    mkdir(state, 0700);
    memset(g, 0, sizeof(*g));
    tm_sqlite_sink sink = {.store = keep_times, .arg = g};
    tm_sqlite_ship_opts o = {
        .db = f.db, .state_dir = state, .busy_ms = 10000, .no_watch = no_watch};
    tm_sqlite_shipper *s = NULL;
    tm_err err = {0};
    assert_int_equal(tm_sqlite_ship_new(&o, &sink, &s, &err), TM_OK);
    tm_sqlite_tick t;
    assert_int_equal(tm_sqlite_ship_tick(s, &t, &err), TM_OK); /* the chain and its base */
    assert_int_equal(t.new_generation, 1);
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open(f.db, &c), SQLITE_OK);
    sqlite3_busy_timeout(c, 10000);
    sq_exec(c, "PRAGMA synchronous=FULL");
    for (int i = 0; i < 10; i++) {
        began[i] = sq_now_ms();
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "BEGIN IMMEDIATE; INSERT INTO t VALUES(%d, %lld, randomblob(100)); COMMIT",
                 1000 + i, (long long)began[i]);
        assert_int_equal(sq_exec(c, sql), SQLITE_OK);
        usleep(50000);
    }
    began[10] = sq_now_ms();
    usleep(200000); /* the rest of the 1 s interval */
    g->tick_ms = sq_now_ms();
    assert_int_equal(tm_sqlite_ship_tick(s, &t, &err), TM_OK);
    assert_int_equal(t.commits, 10);
    tm_sqlite_ship_free(s);
    sqlite3_close(c);
    sq_fx_free(&f);
    assert_int_equal(g->n, 10);
}

static void shipper_times_each_commit(void **state)
{
    (void)state;
    got g;
    int64_t began[11];
    ship_ten_commits(0, &g, began);
    for (int i = 0; i < 10; i++) {
        print_message("commit %d: began %+lld, timed %+lld ms\n", i,
                      (long long)(began[i] - began[0]), (long long)(g.times[i] - began[0]));
        /* Never before it began; before the next one began (45+ ms later). */
        assert_true(g.times[i] >= began[i]);
        assert_true(g.times[i] < began[i + 1]);
    }
    /* The fallback: every commit gets the time of the tick that read it. */
    ship_ten_commits(1, &g, began);
    for (int i = 0; i < 10; i++) {
        assert_true(g.times[i] >= g.tick_ms);
        assert_int_equal(g.times[i], g.times[0]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_the_shm_header),
        cmocka_unit_test(stamp_matches_or_falls_back),
        cmocka_unit_test(shipper_times_each_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
