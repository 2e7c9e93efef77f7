/*
 * test_sqlite_wal.c - the WAL reader against WAL files written by the real
 * SQLite library: every transaction found as a commit frame, the frame
 * count agreeing with SQLite's own, a flipped byte or a torn transaction
 * ending the log at the commit before, a restart (checkpoint RESTART + a
 * write) seen as a new salt and checkpoint sequence, a resume from a stored
 * checksum equal to a whole scan, and a big-endian WAL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "agent/engines/sqlite/wal.h"
#include "common/util.h"

typedef struct fx {
    char dir[64];
    char db[128];
    char wal[140];
    sqlite3 *c;
} fx;

static void exec(sqlite3 *c, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        fail_msg("%s: %s", sql, msg ? msg : "?");
    }
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/tm-sqlite-wal-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/t.db", f->dir);
    snprintf(f->wal, sizeof(f->wal), "%s-wal", f->db);
    assert_int_equal(sqlite3_open(f->db, &f->c), SQLITE_OK);
    /* The test reads the WAL as the application leaves it: no automatic
     * checkpoint moving frames into the database behind its back. */
    exec(f->c, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
               "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sqlite3_close(f->c);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static uint8_t *slurp(const char *path, size_t *len)
{
    char *b = NULL;
    tm_err err = {0};
    assert_int_equal(tm_file_read(path, &b, len, &err), 0);
    return (uint8_t *)b;
}

/* Count the commit frames of a WAL image. */
static int commits(const uint8_t *b, size_t len, tm_sqlite_wal *w)
{
    tm_err err = {0};
    tm_sqlite_wal_hdr h;
    assert_int_equal(tm_sqlite_wal_hdr_parse(b, len, &h, &err), 0);
    tm_sqlite_wal_begin(w, &h);
    size_t fs = tm_sqlite_wal_frame_size(&h);
    int n = 0;
    tm_sqlite_wal_frame fr;
    for (size_t off = TM_SQLITE_WAL_HDR; off + fs <= len; off += fs) {
        if (!tm_sqlite_wal_next(w, b + off, fs, &fr)) {
            break;
        }
        n += fr.db_size != 0;
    }
    return n;
}

static void insert(sqlite3 *c, int id, int bytes)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "INSERT INTO t VALUES(%d, randomblob(%d))", id, bytes);
    exec(c, sql);
}

static void every_commit_found(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 20; i++) {
        insert(f->c, i, i % 3 == 0 ? 9000 : 10); /* some span several pages */
    }
    size_t len;
    uint8_t *b = slurp(f->wal, &len);
    tm_sqlite_wal w;
    /* CREATE TABLE + 20 inserts: 21 transactions. */
    assert_int_equal(commits(b, len, &w), 21);
    assert_int_equal(w.commit, w.frames);
    assert_true(w.h.magic == TM_SQLITE_WAL_MAGIC_LE || w.h.magic == TM_SQLITE_WAL_MAGIC_BE);
    assert_int_equal(w.h.page_size, 4096);

    /* SQLite's own count of frames in the log (a PASSIVE checkpoint only
     * reports it here: nothing else reads). */
    int nlog = -1, nckpt = -1;
    assert_int_equal(
        sqlite3_wal_checkpoint_v2(f->c, NULL, SQLITE_CHECKPOINT_PASSIVE, &nlog, &nckpt), SQLITE_OK);
    assert_int_equal((uint64_t)nlog, w.frames);

    /* The same from the file descriptor, and in two steps: a resume from
     * the checksum stored in frame k. */
    int fd = open(f->wal, O_RDONLY);
    assert_true(fd >= 0);
    tm_err err = {0};
    tm_sqlite_wal_hdr h;
    assert_int_equal(tm_sqlite_wal_read_hdr(fd, &h, &err), 0);
    tm_sqlite_wal a;
    tm_sqlite_wal_begin(&a, &h);
    assert_int_equal(tm_sqlite_wal_scan_fd(fd, &a, 7, &err), 0);
    assert_int_equal(a.frames, 7);
    tm_sqlite_wal r;
    tm_sqlite_wal_resume(&r, &h, a.frames, a.s1, a.s2, a.commit, a.db_size);
    assert_int_equal(tm_sqlite_wal_scan_fd(fd, &r, 0, &err), 0);
    assert_int_equal(r.frames, w.frames);
    assert_int_equal(r.s1, w.s1);
    assert_int_equal(r.s2, w.s2);
    assert_int_equal(r.db_size, w.db_size);
    close(fd);
    free(b);
}

static void damage_ends_log(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 10; i++) {
        insert(f->c, i, 10);
    }
    size_t len;
    uint8_t *b = slurp(f->wal, &len);
    tm_sqlite_wal w;
    int all = commits(b, len, &w);
    assert_int_equal(all, 11);
    size_t fs = tm_sqlite_wal_frame_size(&w.h);
    uint64_t n = w.frames;

    /* A flipped byte in the page of frame 5: the log ends before it, at the
     * last commit of frames 1..4. */
    uint8_t *c = malloc(len);
    memcpy(c, b, len);
    c[tm_sqlite_wal_frame_offset(&w.h, 5) + TM_SQLITE_WAL_FRAME_HDR + 100] ^= 1;
    tm_sqlite_wal d;
    commits(c, len, &d);
    assert_int_equal(d.frames, 4);
    assert_true(d.commit <= 4);

    /* A wrong salt in frame 6. */
    memcpy(c, b, len);
    c[tm_sqlite_wal_frame_offset(&w.h, 6) + 9] ^= 0x40;
    commits(c, len, &d);
    assert_int_equal(d.frames, 5);

    /* A torn last transaction: the file cut inside the last frame. */
    commits(b, len - fs / 2, &d);
    assert_int_equal(d.frames, n - 1);
    assert_true(d.commit < n);

    /* A bad header checksum is refused with a reason. */
    memcpy(c, b, len);
    c[13] ^= 1;
    tm_err err = {0};
    tm_sqlite_wal_hdr h;
    assert_int_equal(tm_sqlite_wal_hdr_parse(c, len, &h, &err), TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "checksum"));
    memcpy(c, "garbage!", 8);
    assert_int_equal(tm_sqlite_wal_hdr_parse(c, len, &h, &err), TM_EPROTO);
    assert_non_null(strstr(err.msg, "magic"));
    free(c);
    free(b);
}

static void restart_seen(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 10; i++) {
        insert(f->c, i, 3000);
    }
    size_t len;
    uint8_t *b = slurp(f->wal, &len);
    tm_sqlite_wal before;
    commits(b, len, &before);
    free(b);

    int nlog = -1, nckpt = -1;
    assert_int_equal(
        sqlite3_wal_checkpoint_v2(f->c, NULL, SQLITE_CHECKPOINT_RESTART, &nlog, &nckpt), SQLITE_OK);
    assert_int_equal(nlog, nckpt);
    insert(f->c, 100, 10);

    b = slurp(f->wal, &len);
    tm_sqlite_wal after;
    assert_int_equal(commits(b, len, &after), 1);
    assert_false(tm_sqlite_wal_same_wal(&before.h, &after.h));
    assert_int_equal(after.h.salt1, before.h.salt1 + 1);
    assert_int_equal(after.h.ckpt_seq, before.h.ckpt_seq + 1);
    /* The old frames after the new one are still in the file, and do not
     * count: their salts are the old ones. */
    assert_true(len > tm_sqlite_wal_frame_offset(&after.h, after.frames + 1));
    assert_int_equal(after.frames, after.commit);
    free(b);
}

/* A big-endian WAL (what a big-endian host writes), built by hand. */
static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void big_endian_wal(void **state)
{
    (void)state;
    size_t ps = 512, fs = TM_SQLITE_WAL_FRAME_HDR + ps;
    uint8_t *b = calloc(1, TM_SQLITE_WAL_HDR + 3 * fs);
    put32(b, TM_SQLITE_WAL_MAGIC_BE);
    put32(b + 4, TM_SQLITE_WAL_VERSION);
    put32(b + 8, (uint32_t)ps);
    put32(b + 16, 0x11111111);
    put32(b + 20, 0x22222222);
    uint32_t s[2] = {0, 0};
    tm_sqlite_wal_cksum(1, b, 24, s);
    put32(b + 24, s[0]);
    put32(b + 28, s[1]);
    for (int i = 0; i < 3; i++) {
        uint8_t *fr = b + TM_SQLITE_WAL_HDR + i * fs;
        put32(fr, (uint32_t)i + 1);
        put32(fr + 4, i == 1 ? 2 : 0); /* frame 2 commits; frame 3 does not */
        put32(fr + 8, 0x11111111);
        put32(fr + 12, 0x22222222);
        memset(fr + TM_SQLITE_WAL_FRAME_HDR, 'a' + i, ps);
        tm_sqlite_wal_cksum(1, fr, 8, s);
        tm_sqlite_wal_cksum(1, fr + TM_SQLITE_WAL_FRAME_HDR, ps, s);
        put32(fr + 16, s[0]);
        put32(fr + 20, s[1]);
    }
    tm_sqlite_wal w;
    tm_err err = {0};
    assert_int_equal(tm_sqlite_wal_scan(b, TM_SQLITE_WAL_HDR + 3 * fs, &w, &err), 0);
    assert_int_equal(w.frames, 3);
    assert_int_equal(w.commit, 2);
    assert_int_equal(w.db_size, 2);
    /* The same bytes read as little-endian do not check. */
    put32(b, TM_SQLITE_WAL_MAGIC_LE);
    assert_int_equal(tm_sqlite_wal_scan(b, TM_SQLITE_WAL_HDR + 3 * fs, &w, &err), TM_ECORRUPT);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_commit_found, setup, teardown),
        cmocka_unit_test_setup_teardown(damage_ends_log, setup, teardown),
        cmocka_unit_test_setup_teardown(restart_seen, setup, teardown),
        cmocka_unit_test(big_endian_wal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
