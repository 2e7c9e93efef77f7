/*
 * test_redis_rdb_check.c - the RDB validator on hand-built files (every split
 * point of the input, per-database counts, checksum, compact encodings with
 * a recomputed checksum so the structure check alone must catch them), the
 * CRC-64 check value, and how server errors are sorted into retry / final /
 * fallback. The real-server tests are in tests/integration/test_redis_rdb.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/engines/redis/conn.h"
#include "agent/engines/redis/rdb_check.h"

typedef struct rdb {
    uint8_t b[512];
    size_t n;
    size_t lp_off; /* where the hash's listpack bytes start */
    size_t is_off; /* where the intset's values start */
} rdb;

static void put(rdb *r, const void *p, size_t n)
{
    memcpy(r->b + r->n, p, n);
    r->n += n;
}

static void put1(rdb *r, uint8_t v)
{
    put(r, &v, 1);
}

static void str(rdb *r, const char *s)
{
    put1(r, (uint8_t)strlen(s)); /* 6-bit length */
    put(r, s, strlen(s));
}

static void seal(rdb *r, uint64_t crc)
{
    for (int i = 0; i < 8; i++) {
        put1(r, (uint8_t)(crc >> (8 * i)));
    }
}

static void reseal(rdb *r)
{
    r->n -= 8;
    seal(r, tm_redis_crc64(0, r->b, r->n));
}

/* db 0: "k1" (expires) = "v1", "n" = 5 (int-encoded); db 2: an intset {1, 3}
 * and a listpack hash {a: 1}. */
static void build(rdb *r)
{
    memset(r, 0, sizeof(*r));
    put(r, "REDIS0010", 9);
    put1(r, 0xfa);
    str(r, "redis-ver");
    str(r, "7.0.15");
    put1(r, 0xfe);
    put1(r, 0);
    put1(r, 0xfb);
    put1(r, 2);
    put1(r, 1);
    put1(r, 0xfc);
    put(r, "\x00\x10\x20\x30\x40\x50\x00\x00", 8);
    put1(r, 0);
    str(r, "k1");
    str(r, "v1");
    put1(r, 0);
    str(r, "n");
    put1(r, 0xc0);
    put1(r, 5);
    put1(r, 0xfe);
    put1(r, 2);
    put1(r, 11); /* intset */
    str(r, "s");
    put1(r, 12);
    put(r, "\x02\x00\x00\x00\x02\x00\x00\x00", 8);
    r->is_off = r->n;
    put(r, "\x01\x00\x03\x00", 4);
    put1(r, 16); /* hash listpack */
    str(r, "h");
    put1(r, 12);
    r->lp_off = r->n;
    put(r, "\x0c\x00\x00\x00\x02\x00", 6);
    put(r,
        "\x81"
        "a"
        "\x02",
        3);
    put(r, "\x01\x01", 2);
    put1(r, 0xff);
    put1(r, 0xff); /* EOF */
    seal(r, tm_redis_crc64(0, r->b, r->n));
}

/* Feed r in pieces of step bytes. depth > 0: the queued mode, each piece
 * copied into a ring of depth + 1 buffers that is scribbled over as soon as
 * the contract lets the caller reuse a buffer, so a parser reading a released
 * buffer fails the check. */
static int check_split_q(const rdb *r, size_t step, size_t depth, tm_rdb_check **out, tm_err *err)
{
    tm_rdb_check *c = NULL;
    assert_int_equal(tm_rdb_check_new(&c, err), 0);
    uint8_t ring[TM_RDB_CHECK_QUEUE_MAX + 1][sizeof(r->b)];
    if (depth > 0) {
        tm_rdb_check_set_queue(c, depth);
    }
    int rc = 0;
    size_t i = 0;
    for (size_t off = 0; off < r->n && rc == 0; off += step, i = (i + 1) % (depth + 1)) {
        size_t n = r->n - off < step ? r->n - off : step;
        const uint8_t *p = r->b + off;
        if (depth > 0) {
            memset(ring[i], 0xa5, sizeof(ring[i]));
            memcpy(ring[i], p, n);
            p = ring[i];
        }
        rc = tm_rdb_check_feed(c, p, n, err);
    }
    if (rc == 0) {
        rc = tm_rdb_check_finish(c, err);
    }
    tm_rdb_check_drain(c); /* the ring goes out of scope */
    if (out != NULL) {
        *out = c;
    } else {
        tm_rdb_check_free(c);
    }
    return rc;
}

static void test_crc64_check_value(void **state)
{
    (void)state;
    /* The check value of Redis's crc64 (Jones): its own self-test's. */
    assert_true(tm_redis_crc64(0, "123456789", 9) == 0xe9c6d914c4b8d9caULL);
    /* Slicing and byte paths agree at every length. */
    uint8_t buf[40];
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)(i * 37 + 1);
    }
    for (size_t n = 0; n <= sizeof(buf); n++) {
        uint64_t a = tm_redis_crc64(0, buf, n), b = 0;
        for (size_t i = 0; i < n; i++) {
            b = tm_redis_crc64(b, buf + i, 1);
        }
        assert_true(a == b);
    }
}

static void test_whole_rdb_every_split(void **state)
{
    (void)state;
    rdb r;
    build(&r);
    for (size_t k = 0; k < 3 * r.n; k++) {
        size_t step = k % r.n + 1, depth = k / r.n == 0 ? 0 : k / r.n == 1 ? 1 : 3;
        tm_err err = {0};
        tm_rdb_check *c = NULL;
        assert_int_equal(check_split_q(&r, step, depth, &c, &err), 0);
        assert_int_equal(tm_rdb_check_version(c), 10);
        assert_int_equal(tm_rdb_check_ndbs(c), 2);
        const tm_rdb_db_count *d0 = tm_rdb_check_db(c, 0), *d2 = tm_rdb_check_db(c, 1);
        assert_true(d0->db == 0 && d0->keys == 2 && d0->expires == 1);
        assert_true(d0->resize_keys == 2 && d0->resize_expires == 1);
        assert_true(d2->db == 2 && d2->keys == 2 && d2->expires == 0);
        assert_true(tm_rdb_check_bytes(c) == r.n);
        tm_rdb_check_free(c);
    }
}

/* Synchronous and queued feeding find the same damage. */
static void expect_fail(const rdb *r, const char *what)
{
    for (size_t depth = 0; depth <= 3; depth += 3) {
        tm_err err = {0};
        assert_int_equal(check_split_q(r, 7, depth, NULL, &err), TM_ECORRUPT);
        if (strstr(err.msg, what) == NULL || strncmp(err.msg, "rdb offset ", 11) != 0) {
            fail_msg("depth %zu: '%s' does not name '%s' with an offset", depth, err.msg, what);
        }
    }
}

static void test_damage(void **state)
{
    (void)state;
    rdb r;
    build(&r);
    r.b[r.n - 1] ^= 1;
    expect_fail(&r, "checksum mismatch");

    build(&r);
    r.b[r.lp_off + 8] = 0x03; /* back-length of "a" */
    reseal(&r);
    expect_fail(&r, "listpack back-length");

    build(&r);
    r.b[r.lp_off + 4] = 3; /* element count */
    reseal(&r);
    expect_fail(&r, "listpack element count");

    build(&r);
    r.b[r.is_off] = 4; /* {4, 3}: not ascending */
    reseal(&r);
    expect_fail(&r, "intset values");

    build(&r);
    r.n--; /* truncated trailer */
    expect_fail(&r, "truncated");

    build(&r);
    r.b[r.n++] = 0; /* a byte after the trailer */
    expect_fail(&r, "after the end of the RDB");
}

static void test_no_checksum(void **state)
{
    (void)state;
    rdb r;
    build(&r);
    memset(r.b + r.n - 8, 0, 8);
    expect_fail(&r, "rdbchecksum no");
    tm_rdb_check *c = NULL;
    tm_err err = {0};
    assert_int_equal(tm_rdb_check_new(&c, &err), 0);
    tm_rdb_check_allow_no_checksum(c);
    assert_int_equal(tm_rdb_check_feed(c, r.b, r.n, &err), 0);
    assert_int_equal(tm_rdb_check_finish(c, &err), 0);
    tm_rdb_check_free(c);
}

static void test_free_mid_stream(void **state)
{
    (void)state;
    rdb r;
    build(&r);
    tm_rdb_check *c = NULL;
    tm_err err = {0};
    assert_int_equal(tm_rdb_check_new(&c, &err), 0);
    assert_int_equal(tm_rdb_check_feed(c, r.b, 20, &err), 0);
    tm_rdb_check_free(c); /* the parser thread stops; no leak, no hang */

    /* Queued: chunks still unread are dropped, the parser stops. */
    assert_int_equal(tm_rdb_check_new(&c, &err), 0);
    tm_rdb_check_set_queue(c, 3);
    for (size_t off = 0; off < 40; off += 10) {
        assert_int_equal(tm_rdb_check_feed(c, r.b + off, 10, &err), 0);
    }
    tm_rdb_check_free(c);
}

/* A queued checker keeps reporting: damage found after feed() returned comes
 * back from a later feed() or from finish(), and bytes fed after the parser
 * stopped count as trailing data. */
static void test_queued_late_errors(void **state)
{
    (void)state;
    rdb r;
    build(&r);
    r.b[5] = 'X'; /* version "00X0" */
    tm_rdb_check *c = NULL;
    tm_err err = {0};
    assert_int_equal(tm_rdb_check_new(&c, &err), 0);
    tm_rdb_check_set_queue(c, 3);
    int rc = 0;
    for (size_t off = 0; off < r.n && rc == 0; off += 16) {
        rc = tm_rdb_check_feed(c, r.b + off, r.n - off < 16 ? r.n - off : 16, &err);
    }
    if (rc == 0) {
        rc = tm_rdb_check_finish(c, &err);
    }
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(err.msg, "rdb offset 0"));
    assert_int_not_equal(tm_rdb_check_finish(c, &err), 0); /* and stays failed */
    tm_rdb_check_free(c);

    build(&r);
    assert_int_equal(tm_rdb_check_new(&c, &err), 0);
    tm_rdb_check_set_queue(c, 3);
    assert_int_equal(tm_rdb_check_feed(c, r.b, r.n, &err), 0);
    tm_rdb_check_drain(c);
    rc = tm_rdb_check_feed(c, "xy", 2, &err);
    if (rc == 0) {
        rc = tm_rdb_check_finish(c, &err);
    }
    assert_int_equal(rc, TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "2 bytes after the end of the RDB"));
    tm_rdb_check_free(c);
}

static void test_classify(void **state)
{
    (void)state;
    int code;
    assert_int_equal(
        tm_redis_classify_error("LOADING Redis is loading the dataset in memory", &code),
        TM_REDIS_RETRY);
    assert_int_equal(code, TM_EUNAVAIL);
    assert_int_equal(tm_redis_classify_error("-OOM command not allowed when used memory > "
                                             "'maxmemory'.",
                                             &code),
                     TM_REDIS_RETRY);
    assert_int_equal(tm_redis_classify_error("BUSY Redis is busy running a script.", &code),
                     TM_REDIS_RETRY);
    assert_int_equal(tm_redis_classify_error("NOMASTERLINK Can't SYNC while not connected with "
                                             "my master",
                                             &code),
                     TM_REDIS_RETRY);
    assert_int_equal(tm_redis_classify_error(
                         "WRONGPASS invalid username-password pair or user is disabled.", &code),
                     TM_REDIS_FINAL);
    assert_int_equal(code, TM_EAUTH);
    assert_int_equal(tm_redis_classify_error("NOPERM User tm has no permissions to run the "
                                             "'sync' command",
                                             &code),
                     TM_REDIS_FINAL);
    assert_int_equal(code, TM_EPERM);
    assert_int_equal(tm_redis_classify_error("ERR unknown command 'SYNC', with args beginning "
                                             "with: ",
                                             &code),
                     TM_REDIS_FALLBACK);
    assert_int_equal(
        tm_redis_classify_error("ERR BGSAVE failed, replication can't continue", &code),
        TM_REDIS_RETRY);
    assert_int_equal(tm_redis_classify_error("ERR syntax error", &code), TM_REDIS_FINAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc64_check_value),
        cmocka_unit_test(test_whole_rdb_every_split),
        cmocka_unit_test(test_damage),
        cmocka_unit_test(test_no_checksum),
        cmocka_unit_test(test_free_mid_stream),
        cmocka_unit_test(test_queued_late_errors),
        cmocka_unit_test(test_classify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
