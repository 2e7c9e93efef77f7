/*
 * test_sqlite_segment.c - the shipped log object: segments built from WAL
 * files written by the real SQLite library round-trip; damaged, truncated
 * or inconsistent bytes are refused with an error that names the frame;
 * a run that ends inside a transaction is refused; object names and
 * positions parse back to what was formatted, and sort in shipping order.
 * With TM_SQLITE_SEED_DIR set it also writes fuzz seeds there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "agent/engines/sqlite/segment.h"
#include "common/util.h"

typedef struct fx {
    char dir[64];
    uint8_t *wal;
    size_t len;
    tm_sqlite_wal w; /* after a whole scan */
} fx;

static void exec(sqlite3 *c, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(c, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fail_msg("%s: %s", sql, msg ? msg : "?");
    }
}

/* A WAL of 8 transactions, some of several pages. */
static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/tm-sqlite-seg-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char db[128], wal[140];
    snprintf(db, sizeof(db), "%s/t.db", f->dir);
    snprintf(wal, sizeof(wal), "%s-wal", db);
    sqlite3 *c = NULL;
    assert_int_equal(sqlite3_open(db, &c), SQLITE_OK);
    exec(c, "PRAGMA page_size=1024; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
    for (int i = 0; i < 7; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "INSERT INTO t VALUES(%d, randomblob(%d))", i,
                 i % 2 ? 3000 : 20);
        exec(c, sql);
    }
    char *b = NULL;
    tm_err err = {0};
    assert_int_equal(tm_file_read(wal, &b, &f->len, &err), 0);
    sqlite3_close(c);
    f->wal = (uint8_t *)b;
    assert_int_equal(tm_sqlite_wal_scan(f->wal, f->len, &f->w, &err), 0);
    assert_int_equal(f->w.commit, f->w.frames);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f->wal);
    free(f);
    return 0;
}

/* A segment of WAL frames from..to (1-based, to a commit), commit times
 * 1000 + frame. */
static void build(fx *f, uint64_t from, uint64_t to, tm_sqlite_seg *s, tm_sqlite_commit *cs)
{
    tm_sqlite_wal w;
    tm_sqlite_wal_begin(&w, &f->w.h);
    size_t fs = tm_sqlite_wal_frame_size(&f->w.h);
    memset(s, 0, sizeof(*s));
    s->chain = 0x1234;
    s->wal = f->w.h;
    s->first_frame = from;
    s->frames = f->wal + tm_sqlite_wal_frame_offset(&f->w.h, from);
    for (uint64_t n = 1; n <= to; n++) {
        if (n == from) {
            s->s1 = w.s1;
            s->s2 = w.s2;
        }
        tm_sqlite_wal_frame fr;
        assert_true(tm_sqlite_wal_next(&w, f->wal + tm_sqlite_wal_frame_offset(&w.h, n), fs, &fr));
        if (n >= from && fr.db_size != 0) {
            cs[s->ncommits++] = (tm_sqlite_commit){.frame = (uint32_t)(n - from + 1),
                                                   .db_size = fr.db_size,
                                                   .time_ms = 1000 + (int64_t)n};
        }
    }
    s->nframes = (uint32_t)(to - from + 1);
    s->commits = cs;
}

static void seed(const char *name, const uint8_t *b, size_t len)
{
    const char *dir = getenv("TM_SQLITE_SEED_DIR");
    if (dir == NULL) {
        return;
    }
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, len, fp), len);
    fclose(fp);
}

static void round_trip(void **state)
{
    fx *f = *state;
    tm_sqlite_commit cs[64];
    tm_sqlite_seg s, d;
    tm_err err = {0};
    /* The whole WAL, then a piece from a commit boundary in the middle. */
    uint64_t mid = 0;
    for (int part = 0; part < 2; part++) {
        if (part == 0) {
            build(f, 1, f->w.frames, &s, cs);
            mid = cs[3].frame + 1;
        } else {
            build(f, mid, f->w.frames, &s, cs);
        }
        uint8_t *b = NULL;
        size_t len = 0;
        assert_int_equal(tm_sqlite_seg_encode(&s, &b, &len, &err), 0);
        seed(part == 0 ? "whole" : "middle", b, len);
        int rc = tm_sqlite_seg_decode(b, len, &d, &err);
        if (rc != 0) {
            fail_msg("%s", err.msg);
        }
        assert_int_equal(d.chain, 0x1234);
        assert_int_equal(d.first_frame, s.first_frame);
        assert_int_equal(d.nframes, s.nframes);
        assert_int_equal(d.ncommits, s.ncommits);
        assert_int_equal(d.wal.salt1, f->w.h.salt1);
        assert_int_equal(d.wal.magic, f->w.h.magic);
        for (uint32_t i = 0; i < d.ncommits; i++) {
            assert_int_equal(d.commits[i].frame, cs[i].frame);
            assert_int_equal(d.commits[i].time_ms, cs[i].time_ms);
        }
        assert_memory_equal(d.frames, s.frames,
                            (size_t)s.nframes * tm_sqlite_wal_frame_size(&s.wal));
        tm_sqlite_seg_free(&d);
        free(b);
    }
    assert_int_equal(s.ncommits, 8 - 4);
}

static void bad_input_named(void **state)
{
    fx *f = *state;
    tm_sqlite_commit cs[64];
    tm_sqlite_seg s, d;
    tm_err err = {0};
    build(f, 1, f->w.frames, &s, cs);
    uint8_t *b = NULL, *c = NULL;
    size_t len = 0;
    assert_int_equal(tm_sqlite_seg_encode(&s, &b, &len, &err), 0);
    c = malloc(len);
    size_t fs = tm_sqlite_wal_frame_size(&s.wal);
    size_t frames_at = TM_SQLITE_SEG_HDR + (size_t)s.ncommits * TM_SQLITE_SEG_COMMIT;

    /* A flipped byte in the page of frame 3. */
    memcpy(c, b, len);
    c[frames_at + 2 * fs + TM_SQLITE_WAL_FRAME_HDR + 50] ^= 1;
    assert_int_equal(tm_sqlite_seg_decode(c, len, &d, &err), TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "frame 3 of"));
    assert_non_null(strstr(err.msg, "checksum"));
    seed("bad-checksum", c, len);

    /* A salt changed in frame 2. */
    memcpy(c, b, len);
    c[frames_at + fs + 9] ^= 4;
    assert_int_equal(tm_sqlite_seg_decode(c, len, &d, &err), TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "frame 2 of"));
    assert_non_null(strstr(err.msg, "salt"));

    /* Truncated inside frame 4: named. */
    for (size_t cut = frames_at + 3 * fs + 10; cut < len; cut += len) {
        assert_int_equal(tm_sqlite_seg_decode(b, cut, &d, &err), TM_EPROTO);
        assert_non_null(strstr(err.msg, "truncated at frame 4 of"));
    }
    /* Truncated in the commit table, and in the header. */
    assert_int_equal(tm_sqlite_seg_decode(b, TM_SQLITE_SEG_HDR + 5, &d, &err), TM_EPROTO);
    assert_non_null(strstr(err.msg, "commit table"));
    assert_int_equal(tm_sqlite_seg_decode(b, 20, &d, &err), TM_EPROTO);
    /* Extra bytes after the last frame. */
    uint8_t *longer = calloc(1, len + fs);
    memcpy(longer, b, len);
    assert_int_equal(tm_sqlite_seg_decode(longer, len + fs, &d, &err), TM_EPROTO);
    free(longer);

    /* The commit table lists a frame that is not a commit. */
    memcpy(c, b, len);
    c[TM_SQLITE_SEG_HDR + 3] = (uint8_t)(c[TM_SQLITE_SEG_HDR + 3] + 1); /* commit 1's frame + 1 */
    assert_true(tm_sqlite_seg_decode(c, len, &d, &err) < 0);
    assert_non_null(strstr(err.msg, "frame"));

    /* A different commit time does not pass unnoticed as bytes, but is
     * legal content: only order is checked. Out of order is refused. */
    memcpy(c, b, len);
    memset(c + TM_SQLITE_SEG_HDR + TM_SQLITE_SEG_COMMIT + 8, 0, 8); /* commit 2 at time 0 */
    assert_int_equal(tm_sqlite_seg_decode(c, len, &d, &err), TM_EPROTO);
    assert_non_null(strstr(err.msg, "commit 2"));

    /* A run that ends inside a transaction (the frames of the last
     * transaction minus its commit frame) cannot even be described: the
     * last commit must be the last frame. */
    memcpy(c, b, len);
    uint32_t nf = s.nframes + 1;
    c[48] = (uint8_t)(nf >> 24);
    c[49] = (uint8_t)(nf >> 16);
    c[50] = (uint8_t)(nf >> 8);
    c[51] = (uint8_t)nf;
    assert_int_equal(tm_sqlite_seg_decode(c, len, &d, &err), TM_EPROTO);

    /* Wrong magic, page size. */
    memcpy(c, b, len);
    c[0] = 'X';
    assert_int_equal(tm_sqlite_seg_decode(c, len, &d, &err), TM_EPROTO);
    memcpy(c, b, len);
    c[17] = 3;
    assert_int_equal(tm_sqlite_seg_decode(c, len, &d, &err), TM_EPROTO);
    assert_non_null(strstr(err.msg, "page size"));
    free(c);
    free(b);
}

static void names_and_positions(void **state)
{
    (void)state;
    tm_sqlite_name in[] = {
        {.kind = 'd', .chain = 0x65a1b2c3},
        {.kind = 'g', .chain = 0x65a1b2c3, .last = 17, .time_ms = 1765000000123},
        {.kind = 'w',
         .chain = 0x65a1b2c3,
         .wal = 0,
         .first = 18,
         .last = 40,
         .time_ms = 1765000000999},
        {.kind = 'w',
         .chain = 0x65a1b2c3,
         .wal = 1,
         .first = 1,
         .last = 3,
         .time_ms = 1765000001999},
    };
    char prev[TM_SQLITE_NAME_MAX] = "";
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char rel[TM_SQLITE_NAME_MAX];
        tm_sqlite_name_fmt(rel, sizeof(rel), &in[i]);
        tm_sqlite_name out;
        assert_int_equal(tm_sqlite_name_parse(rel, &out), 0);
        assert_int_equal(out.kind, in[i].kind);
        assert_int_equal(out.chain, in[i].chain);
        assert_int_equal(out.wal, in[i].wal);
        assert_int_equal(out.first, in[i].first);
        assert_int_equal(out.last, in[i].last);
        assert_int_equal(out.time_ms, in[i].time_ms);
        assert_true(strcmp(prev, rel) < 0); /* shipping order */
        memcpy(prev, rel, sizeof(prev));
    }
    tm_sqlite_name n;
    assert_int_equal(tm_sqlite_name_parse("65a1b2c3/x", &n), TM_EINVAL);
    assert_int_equal(
        tm_sqlite_name_parse("65a1b2c3/00000000.0000000000000001-0000000000000002.000000000000.WAL",
                             &n),
        TM_EINVAL);
    assert_int_equal(
        tm_sqlite_name_parse("65a1b2c3/00000000.0000000000000003-0000000000000002.000000000000.wal",
                             &n),
        TM_EINVAL);
    char a[32], b[32];
    tm_sqlite_pos_fmt(a, sizeof(a), 0, 0xff);
    tm_sqlite_pos_fmt(b, sizeof(b), 1, 1);
    assert_true(strcmp(a, b) < 0);
    uint32_t w = 9;
    uint64_t fr = 9;
    assert_int_equal(tm_sqlite_pos_parse(b, &w, &fr), 0);
    assert_int_equal(w, 1);
    assert_int_equal(fr, 1);
    assert_int_equal(tm_sqlite_pos_parse("", &w, &fr), 0);
    assert_int_equal(fr, 0);
    assert_int_equal(tm_sqlite_pos_parse("00000001.zz", &w, &fr), TM_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_input_named, setup, teardown),
        cmocka_unit_test(names_and_positions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
