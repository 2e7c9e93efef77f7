/*
 * test_redis_aof.c - the AOF blocks without a server: the RESP boundary
 * scanner (every split point, annotations, torn tails, garbage with its
 * offset, MULTI/EXEC), the manifest parser (what Redis writes, and each
 * malformed form refused with its line), and the truncator on in-memory
 * streams (cut at a time, later files dropped, torn tail, unfinished MULTI,
 * base newer than the target). The real-server tests are in
 * tests/integration/test_redis_aof.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/engines/redis/aof_manifest.h"
#include "agent/engines/redis/aof_resp.h"
#include "agent/engines/redis/aof_truncate.h"
#include "agent/engines/redis/redis.h"
#include "agent/repo/repo_log.h"

#define SET(k, v) "*3\r\n$3\r\nset\r\n$1\r\n" k "\r\n$1\r\n" v "\r\n"
static const char AOF[] =
    "#TS:100\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n" SET("a", "1") "#TS:101\r\n" SET(
        "b", "2") "*1\r\n$5\r\nMULTI\r\n" SET("c", "3") "*1\r\n$4\r\nEXEC\r\n"
                                                        "#TS:103\r\n" SET("d", "4");

typedef struct units {
    uint64_t ends[64];
    int64_t ts[64];
    int multi, exec;
    int n;
} units;

static int rec(void *arg, const tm_aof_unit *u, tm_err *err)
{
    (void)err;
    units *s = arg;
    s->ends[s->n] = u->end;
    s->ts[s->n++] = u->ts;
    s->multi += u->multi;
    s->exec += u->exec;
    return 0;
}

static void scan_every_split(void **state)
{
    (void)state;
    size_t len = sizeof(AOF) - 1;
    units whole = {0};
    tm_aof_scan *s = NULL;
    tm_err err = {0};
    assert_int_equal(tm_aof_scan_new(&s, 0, &err), 0);
    assert_int_equal(tm_aof_scan_feed(s, AOF, len, rec, &whole, &err), 0);
    assert_int_equal(whole.n, 10);
    assert_int_equal(whole.ts[0], 100);
    assert_int_equal(whole.ts[3], 101);
    assert_int_equal(whole.ts[1], -1);
    assert_int_equal(whole.multi, 1);
    assert_int_equal(whole.exec, 1);
    assert_int_equal(tm_aof_scan_complete(s), len);
    assert_int_equal(tm_aof_scan_partial(s), 0);
    tm_aof_scan_free(s);
    /* Any two pieces: the same units at the same ends. */
    for (size_t cut = 0; cut <= len; cut++) {
        units u = {0};
        assert_int_equal(tm_aof_scan_new(&s, 0, &err), 0);
        assert_int_equal(tm_aof_scan_feed(s, AOF, cut, rec, &u, &err), 0);
        /* Cut inside a unit: complete is the previous unit's end. */
        uint64_t want = 0;
        for (int i = 0; i < whole.n && whole.ends[i] <= cut; i++) {
            want = whole.ends[i];
        }
        assert_int_equal(tm_aof_scan_complete(s), want);
        assert_int_equal(tm_aof_scan_partial(s) != 0, want != cut);
        assert_int_equal(tm_aof_scan_feed(s, AOF + cut, len - cut, rec, &u, &err), 0);
        assert_int_equal(u.n, whole.n);
        assert_memory_equal(u.ends, whole.ends, sizeof(uint64_t) * (size_t)whole.n);
        tm_aof_scan_free(s);
    }
}

static void scan_rejects_garbage(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        uint64_t at;
    } bad[] = {
        {"set a 1\r\n", 0},           /* inline command: not in an AOF */
        {"*0\r\n", 3},                /* no arguments */
        {"*1\r\n:5\r\n", 4},          /* not a bulk string */
        {"*1\r\n$3\r\nabcd\r\n", 11}, /* longer than declared */
        {"*1\r\n$x\r\n", 5},          /* bad length */
        {"*1\n", 2},                  /* no \r */
        {"#TS:1\n", 5},               /* annotation without \r */
        {"*1\r\n$1\r\na\r\r", 10},    /* \r\r */
        {"*1234567890123456789\r\n", 19},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tm_aof_scan *s = NULL;
        tm_err err = {0};
        assert_int_equal(tm_aof_scan_new(&s, 0, &err), 0);
        int rc = tm_aof_scan_feed(s, bad[i].in, strlen(bad[i].in), NULL, NULL, &err);
        if (rc != TM_EPROTO || tm_aof_scan_offset(s) != bad[i].at) {
            fail_msg("case %zu (%s): rc %d at %llu, want EPROTO at %llu: %s", i, bad[i].in, rc,
                     (unsigned long long)tm_aof_scan_offset(s), (unsigned long long)bad[i].at,
                     err.msg);
        }
        char want[32];
        snprintf(want, sizeof(want), "offset %llu", (unsigned long long)bad[i].at);
        assert_non_null(strstr(err.msg, want));
        tm_aof_scan_free(s);
    }
}

static void scan_big_argument_is_skipped_by_length(void **state)
{
    (void)state;
    size_t n = 5u << 20;
    char hdr[64];
    int h = snprintf(hdr, sizeof(hdr), "*1\r\n$%zu\r\n", n);
    char *body = malloc(n + 2);
    memset(body, '*', n); /* looks like RESP: must be skipped, not parsed */
    memcpy(body + n, "\r\n", 2);
    tm_aof_scan *s = NULL;
    tm_err err = {0};
    units u = {0};
    assert_int_equal(tm_aof_scan_new(&s, 1000, &err), 0);
    assert_int_equal(tm_aof_scan_feed(s, hdr, (size_t)h, rec, &u, &err), 0);
    assert_int_equal(tm_aof_scan_feed(s, body, n + 1, rec, &u, &err), 0);
    assert_int_equal(u.n, 0);
    assert_int_equal(tm_aof_scan_feed(s, body + n + 1, 1, rec, &u, &err), 0);
    assert_int_equal(u.n, 1);
    assert_int_equal(u.ends[0], 1000 + (uint64_t)h + n + 2);
    tm_aof_scan_free(s);
    free(body);
}

static void manifest_parses_what_redis_writes(void **state)
{
    (void)state;
    const char *text = "file appendonly.aof.1.base.rdb seq 1 type b\n"
                       "file appendonly.aof.1.incr.aof seq 1 type h\n"
                       "# a comment\n"
                       "file appendonly.aof.2.incr.aof seq 2 type i\n"
                       "type i seq 3 file appendonly.aof.3.incr.aof\n";
    tm_aof_manifest *m = NULL;
    tm_err err = {0};
    assert_int_equal(tm_aof_manifest_parse(text, strlen(text), &m, &err), 0);
    assert_int_equal(tm_aof_manifest_count(m), 4);
    assert_string_equal(tm_aof_manifest_base(m)->name, "appendonly.aof.1.base.rdb");
    const tm_aof_file *inc[4];
    assert_int_equal(tm_aof_manifest_incrs(m, inc, 4), 2);
    assert_int_equal(inc[0]->seq, 2);
    assert_string_equal(inc[1]->name, "appendonly.aof.3.incr.aof");
    assert_int_equal(tm_aof_manifest_find(m, "appendonly.aof.1.incr.aof")->type, TM_AOF_HISTORY);
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(tm_aof_manifest_format(m, &out, &len, &err), 0);
    assert_string_equal(out, "file appendonly.aof.1.base.rdb seq 1 type b\n"
                             "file appendonly.aof.1.incr.aof seq 1 type h\n"
                             "file appendonly.aof.2.incr.aof seq 2 type i\n"
                             "file appendonly.aof.3.incr.aof seq 3 type i\n");
    /* Round trip. */
    tm_aof_manifest *m2 = NULL;
    assert_int_equal(tm_aof_manifest_parse(out, len, &m2, &err), 0);
    assert_int_equal(tm_aof_manifest_count(m2), 4);
    free(out);
    tm_aof_manifest_free(m2);
    tm_aof_manifest_free(m);
}

static void manifest_rejects_malformed_with_line(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *want;
    } bad[] = {
        {"", "no files"},
        {"file a seq 1 type b", "line 1: no newline"},
        {"file a seq 1 type b\n\n", "line 2: empty line"},
        {"file a seq 1 type b\nfile b seq 2 type x\n", "line 2: bad type"},
        {"file a seq 1 type b\nfile b seq 0 type i\n", "line 2: bad seq"},
        {"file a seq 1 type b\nfile b seq -2 type i\n", "line 2: bad seq"},
        {"file a seq 1x type b\n", "line 1: bad seq"},
        {"file a seq 1\n", "line 1: missing \"type\""},
        {"file a seq 1 type b extra\n", "line 1: 7 fields"},
        {"file a seq 1 type b color red\n", "line 1: unknown key"},
        {"file a  seq 1 type b\n", "line 1: a leading or doubled space"},
        {"file a seq 1 type b \n", "line 1: a trailing space"},
        {"file ../x seq 1 type b\n", "line 1: bad file name"},
        {"file .. seq 1 type b\n", "line 1: bad file name"},
        {"file \"a b\" seq 1 type b\n", "line 1: 7 fields"},
        {"file a seq 1 type b\nfile c seq 2 type b\n", "line 2: a second base"},
        {"file a seq 3 type i\nfile c seq 2 type i\n", "line 2: incr file c has seq 2"},
        {"file a seq 1 type i\nfile a seq 2 type h\n", "line 2: file a is listed twice"},
        {"file a seq 1 type b\r\n", "line 1: a NUL or CR"},
        {"file a seq 1 file b type i\n", "line 1: \"file\" twice"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tm_aof_manifest *m = NULL;
        tm_err err = {0};
        int rc = tm_aof_manifest_parse(bad[i].text, strlen(bad[i].text), &m, &err);
        if (rc != TM_EPROTO || m != NULL || strstr(err.msg, bad[i].want) == NULL) {
            fail_msg("case %zu: rc %d, message \"%s\", want \"%s\"", i, rc, err.msg, bad[i].want);
        }
    }
}

/* ---- truncation on memory streams ---- */

typedef struct mem_src {
    const char *p;
    size_t len, off, step;
} mem_src;

static int mem_read(void *arg, void *buf, size_t cap, size_t *got, tm_err *err)
{
    (void)err;
    mem_src *m = arg;
    size_t n = m->len - m->off;
    n = n < cap ? n : cap;
    n = n < m->step ? n : m->step;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    *got = n;
    return 0;
}

typedef struct mem_out {
    char names[8][64];
    char data[8][1024];
    size_t len[8];
    int n, cur;
} mem_out;

static int o_open(void *arg, const char *name, tm_err *err)
{
    (void)err;
    mem_out *o = arg;
    o->cur = o->n++;
    snprintf(o->names[o->cur], 64, "%s", name);
    o->len[o->cur] = 0;
    return 0;
}

static int o_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    (void)err;
    mem_out *o = arg;
    memcpy(o->data[o->cur] + o->len[o->cur], buf, len);
    o->len[o->cur] += len;
    return 0;
}

static int o_trunc(void *arg, uint64_t len, tm_err *err)
{
    (void)err;
    mem_out *o = arg;
    assert_true(len <= o->len[o->cur]);
    o->len[o->cur] = (size_t)len;
    return 0;
}

static int o_close(void *arg, tm_err *err)
{
    (void)arg;
    (void)err;
    return 0;
}

static int run_trunc(int64_t target, const char *incr1, const char *incr2, size_t step,
                     mem_out *out, tm_aof_truncate_result *res, tm_err *err)
{
    static const char base[] = "#TS:90\r\n" SET("z", "0");
    mem_src b = {base, sizeof(base) - 1, 0, step};
    mem_src i1 = {incr1, strlen(incr1), 0, step};
    mem_src i2 = {incr2, strlen(incr2), 0, step};
    tm_aof_source bs = {"x.1.base.aof", 1, mem_read, &b};
    tm_aof_source is[2] = {{"x.1.incr.aof", 1, mem_read, &i1}, {"x.2.incr.aof", 2, mem_read, &i2}};
    memset(out, 0, sizeof(*out));
    tm_aof_sink sink = {o_open, o_write, o_trunc, o_close, out};
    tm_aof_truncate_opts o = {.target = target, .manifest_name = "x.manifest"};
    return tm_aof_truncate(&o, &bs, is, 2, &sink, res, err);
}

static void truncate_cuts_at_time_and_drops_later_files(void **state)
{
    (void)state;
    static const char incr2[] = "#TS:104\r\n" SET("e", "5");
    size_t steps[] = {1, 3, 7, 64, 4096};
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        mem_out out;
        tm_aof_truncate_result res;
        tm_err err = {0};
        /* T = 101: a, b and the MULTI block (c) kept; d (103) and e cut. */
        assert_int_equal(run_trunc(101, AOF, incr2, steps[k], &out, &res, &err), 0);
        assert_int_equal(out.n, 3); /* base, incr 1, manifest */
        const char *cut = strstr(AOF, "#TS:103");
        assert_int_equal(out.len[1], (size_t)(cut - AOF));
        assert_memory_equal(out.data[1], AOF, out.len[1]);
        assert_true(res.cut);
        assert_int_equal(res.cut_ts, 103);
        assert_int_equal(res.last_ts, 101);
        assert_int_equal(res.kept_incrs, 1);
        assert_int_equal(res.dropped_incrs, 1);
        assert_string_equal(out.names[2], "x.manifest");
        out.data[2][out.len[2]] = '\0';
        assert_string_equal(out.data[2], "file x.1.base.aof seq 1 type b\n"
                                         "file x.1.incr.aof seq 1 type i\n");
    }
    /* T after everything: both files whole. */
    mem_out out;
    tm_aof_truncate_result res;
    tm_err err = {0};
    assert_int_equal(run_trunc(200, AOF, incr2, 5, &out, &res, &err), 0);
    assert_int_equal(out.len[1], sizeof(AOF) - 1);
    assert_int_equal(out.len[2], sizeof(incr2) - 1);
    assert_false(res.cut);
    assert_int_equal(res.kept_incrs, 2);
    /* T before the first write: incr 1 kept empty. */
    assert_int_equal(run_trunc(99, AOF, incr2, 5, &out, &res, &err), 0);
    assert_int_equal(out.len[1], 0);
    assert_int_equal(res.kept_incrs, 1);
    /* Without annotations there is no time to cut at: all is kept, and the
     * result says no annotation was read (the caller refuses to call it a
     * restore to a time). */
    static const char no_ts[] = SET("a", "1") SET("b", "2");
    assert_int_equal(run_trunc(101, no_ts, "", 5, &out, &res, &err), 0);
    assert_int_equal(res.annotations, 0);
    assert_int_equal(out.len[1], sizeof(no_ts) - 1);
    assert_int_equal(run_trunc(101, AOF, "", 5, &out, &res, &err), 0);
    assert_int_equal(res.annotations, 2); /* 100, 101; 103 stops the cut */
    /* A base newer than the target is refused. */
    assert_int_equal(run_trunc(80, AOF, incr2, 5, &out, &res, &err), TM_EINVAL);
    assert_non_null(strstr(err.msg, "after the target"));
}

static void truncate_torn_tail_and_open_multi(void **state)
{
    (void)state;
    size_t full = sizeof(AOF) - 1;
    /* Torn in the middle of the last SET: cut back to the annotation's end. */
    char torn[512];
    memcpy(torn, AOF, full - 5);
    torn[full - 5] = '\0';
    mem_out out;
    tm_aof_truncate_result res;
    tm_err err = {0};
    assert_int_equal(run_trunc(200, torn, "#TS:104\r\n", 4, &out, &res, &err), 0);
    const char *d = strstr(AOF, "#TS:103\r\n") + 9;
    assert_int_equal(out.len[1], (size_t)(d - AOF));
    assert_int_equal(res.torn, full - 5 - (size_t)(d - AOF));
    assert_int_equal(res.kept_incrs, 1); /* after a torn file nothing follows */
    /* Ends between MULTI and EXEC: the transaction goes. */
    const char *exec = strstr(AOF, "*1\r\n$4\r\nEXEC");
    char open_multi[512];
    memcpy(open_multi, AOF, (size_t)(exec - AOF));
    open_multi[exec - AOF] = '\0';
    assert_int_equal(run_trunc(200, open_multi, "", 4, &out, &res, &err), 0);
    const char *multi = strstr(AOF, "*1\r\n$5\r\nMULTI");
    assert_int_equal(out.len[1], (size_t)(multi - AOF));
    assert_int_equal(res.multi_cut, (size_t)(exec - multi));
    /* Garbage in the middle is an error naming the file and offset. */
    char bad[512];
    snprintf(bad, sizeof(bad), "%s", AOF);
    bad[30] = '!';
    assert_int_equal(run_trunc(200, bad, "", 4, &out, &res, &err), TM_EPROTO);
    assert_non_null(strstr(err.msg, "x.1.incr.aof"));
}

/* The shipped AOF as log ranges: one run across a rewrite (a new chain
 * starting at its base), a new run at a gap marker and at a chain whose
 * base was never shipped; positions never hold a '/'. */
static void log_ranges_run_across_rewrites_and_end_at_holes(void **state)
{
    (void)state;
    const char *rels[] = {
        "0000000001/0r00000001-0000000000000000-0000000100-0000000100",
        "0000000001/1i00000001-0000000000000000-0000000101-0000000110",
        "0000000002/0r00000002-0000000000000000-0000000111-0000000111", /* rewrite */
        "0000000002/1i00000002-0000000000000000-0000000111-0000000120",
        "0000000005/0g00000005-0000000000000000-0000000000-0000000000", /* gap marker */
        "0000000005/0r00000005-0000000000000000-0000000200-0000000200",
        "0000000005/1i00000005-0000000000000000-0000000200-0000000210",
        "0000000007/1i00000007-0000000000000040-0000000300-0000000310", /* no base */
    };
    size_t n = sizeof(rels) / sizeof(rels[0]);
    tm_log_item items[8];
    for (size_t i = 0; i < n; i++) {
        items[i] = (tm_log_item){
            .rel = (char *)rels[i], .has_meta = 1, .has_object = 1, .stored_size = 10};
    }
    tm_log_range *r = NULL;
    size_t nr = 0;
    tm_err err = {0};
    assert_int_equal(tm_redis_log_ranges(NULL, items, n, &r, &nr, &err), TM_OK);
    assert_int_equal(nr, 3);
    assert_string_equal(r[0].start, "0000000001:0r00000001-0000000000000000-0000000100-0000000100");
    assert_string_equal(r[0].end, "0000000002:1i00000002-0000000000000000-0000000111-0000000120");
    assert_int_equal(r[0].objects, 4);
    assert_int_equal(r[0].end_time, 120);
    assert_int_equal(r[1].chain, 5);
    assert_int_equal(r[1].objects, 2); /* the marker is no data */
    assert_int_equal(r[2].chain, 7);
    for (size_t i = 0; i < nr; i++) {
        assert_null(strchr(r[i].start, '/'));
        assert_null(strchr(r[i].end, '/'));
    }
    free(r);
}

/* Retention: objects (and markers) of chains before the one the cutoff
 * snapshot recorded go; that chain and later ones stay; without a recorded
 * position nothing goes. */
static void log_before_is_by_the_cutoff_snapshots_chain(void **state)
{
    (void)state;
    Tidemark__Manifest m = TIDEMARK__MANIFEST__INIT;
    Tidemark__Manifest__EngineInfoEntry e = TIDEMARK__MANIFEST__ENGINE_INFO_ENTRY__INIT;
    Tidemark__Manifest__EngineInfoEntry *ep = &e;
    e.key = TM_REDIS_AOF_POSITION_INFO;
    e.value = "0000000005:1i00000005-0000000000000000-0000000200-0000000210";
    m.engine_info = &ep;
    m.n_engine_info = 1;
    assert_int_equal(tm_redis_log_before(
                         &m, NULL, "0000000004/1i00000004-0000000000000000-0000000100-0000000110"),
                     1);
    assert_int_equal(tm_redis_log_before(
                         &m, NULL, "0000000003/0g00000003-0000000000000000-0000000000-0000000000"),
                     1);
    assert_int_equal(tm_redis_log_before(
                         &m, NULL, "0000000005/0r00000005-0000000000000000-0000000200-0000000200"),
                     0);
    assert_int_equal(tm_redis_log_before(
                         &m, NULL, "0000000006/0r00000006-0000000000000000-0000000300-0000000300"),
                     0);
    assert_int_equal(tm_redis_log_before(&m, NULL, "0000000001/not-ours"), 0);
    assert_int_equal(
        tm_redis_log_before(NULL, NULL,
                            "0000000001/0r00000001-0000000000000000-0000000100-0000000100"),
        0);
    e.value = "garbage";
    assert_int_equal(tm_redis_log_before(
                         &m, NULL, "0000000001/0r00000001-0000000000000000-0000000100-0000000100"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scan_every_split),
        cmocka_unit_test(scan_rejects_garbage),
        cmocka_unit_test(scan_big_argument_is_skipped_by_length),
        cmocka_unit_test(manifest_parses_what_redis_writes),
        cmocka_unit_test(manifest_rejects_malformed_with_line),
        cmocka_unit_test(truncate_cuts_at_time_and_drops_later_files),
        cmocka_unit_test(truncate_torn_tail_and_open_multi),
        cmocka_unit_test(log_ranges_run_across_rewrites_and_end_at_holes),
        cmocka_unit_test(log_before_is_by_the_cutoff_snapshots_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
