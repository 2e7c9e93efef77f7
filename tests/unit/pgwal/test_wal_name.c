/*
 * test_wal_name.c - WAL file names (parse, order, timeline and segment
 * math), gap detection, the push idempotency decision and the sidecar.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/engines/postgres/wal_name.h"
#include "agent/repo/repo_log.h"

static void test_parse(void **state)
{
    (void)state;
    tm_wal_name n;
    assert_int_equal(tm_wal_name_parse("000000010000000A000000FF", &n), 0);
    assert_int_equal(n.kind, TM_WAL_SEGMENT);
    assert_int_equal(n.tli, 1);
    assert_int_equal(n.log, 10);
    assert_int_equal(n.seg, 255);
    assert_int_equal(tm_wal_name_parse("00000002.history", &n), 0);
    assert_int_equal(n.kind, TM_WAL_HISTORY);
    assert_int_equal(n.tli, 2);
    assert_int_equal(tm_wal_name_parse("000000010000000000000005.partial", &n), 0);
    assert_int_equal(n.kind, TM_WAL_PARTIAL);
    assert_int_equal(tm_wal_name_parse("000000010000000000000002.00000028.backup", &n), 0);
    assert_int_equal(n.kind, TM_WAL_BACKUP);
    assert_int_equal(n.offset, 0x28);
    /* Refused: lower case, short, timeline 0, unknown suffix, paths. */
    assert_int_equal(tm_wal_name_parse("000000010000000a000000ff", &n), -1);
    assert_int_equal(tm_wal_name_parse("00000001000000000000000", &n), -1);
    assert_int_equal(tm_wal_name_parse("000000000000000000000001", &n), -1);
    assert_int_equal(tm_wal_name_parse("000000010000000000000001.tmp", &n), -1);
    assert_int_equal(tm_wal_name_parse("../00000001.history", &n), -1);
    assert_int_equal(tm_wal_name_parse("RECOVERYXLOG", &n), -1);
    assert_int_equal(tm_wal_name_parse("", &n), -1);
}

static void test_segment_math(void **state)
{
    (void)state;
    tm_wal_name n;
    char out[25];
    uint64_t mb16 = 16u << 20, mb64 = 64u << 20;
    assert_int_equal(tm_wal_name_parse("0000000100000000000000FF", &n), 0);
    assert_int_equal(tm_wal_segno(&n, mb16), 255);
    assert_int_equal(tm_wal_next(&n, mb16, out), 0);
    assert_string_equal(out, "000000010000000100000000");
    /* 64 MiB segments: 64 per log id. */
    assert_int_equal(tm_wal_name_parse("00000003000000020000003F", &n), 0);
    assert_int_equal(tm_wal_segno(&n, mb64), 2 * 64 + 63);
    assert_int_equal(tm_wal_next(&n, mb64, out), 0);
    assert_string_equal(out, "000000030000000300000000");
    tm_wal_seg_name(2, 256 + 5, mb16, out);
    assert_string_equal(out, "000000020000000100000005");
    assert_int_equal(tm_wal_name_parse("00000002.history", &n), 0);
    assert_int_equal(tm_wal_next(&n, mb16, out), -1);
    assert_true(tm_wal_valid_seg_size(1u << 20));
    assert_true(tm_wal_valid_seg_size(1u << 30));
    assert_false(tm_wal_valid_seg_size(3u << 20));
    assert_false(tm_wal_valid_seg_size(512u << 10));
    char tli[9];
    tm_wal_tli_hex(10, tli);
    assert_string_equal(tli, "0000000A");
}

static void test_order(void **state)
{
    (void)state;
    const char *in[] = {
        "000000020000000000000005", "000000010000000100000000",         "00000002.history",
        "0000000100000000000000FF", "000000010000000000000005.partial", "000000010000000000000005"};
    tm_wal_name v[6];
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(tm_wal_name_parse(in[i], &v[i]), 0);
    }
    qsort(v, 6, sizeof(v[0]), tm_wal_cmp);
    assert_string_equal(v[0].name, "000000010000000000000005");
    assert_string_equal(v[1].name, "000000010000000000000005.partial");
    assert_string_equal(v[2].name, "0000000100000000000000FF");
    assert_string_equal(v[3].name, "000000010000000100000000");
    assert_string_equal(v[4].name, "00000002.history");
    assert_string_equal(v[5].name, "000000020000000000000005");
    /* Archiving order: history files first, then by name. */
    qsort(v, 6, sizeof(v[0]), tm_wal_cmp_archive);
    assert_string_equal(v[0].name, "00000002.history");
    assert_string_equal(v[1].name, "000000010000000000000005");
}

static void test_ranges(void **state)
{
    (void)state;
    uint64_t s[] = {7, 3, 4, 5, 5, 10, 11, 1};
    tm_wal_range r[8];
    size_t n = tm_wal_ranges(s, 8, r);
    assert_int_equal(n, 4);
    assert_int_equal(r[0].first, 1);
    assert_int_equal(r[0].last, 1);
    assert_int_equal(r[1].first, 3);
    assert_int_equal(r[1].last, 5);
    assert_int_equal(r[2].first, 7);
    assert_int_equal(r[2].last, 7);
    assert_int_equal(r[3].first, 10);
    assert_int_equal(r[3].last, 11);
    assert_int_equal(tm_wal_ranges(s, 0, r), 0);
    uint64_t one[] = {42};
    assert_int_equal(tm_wal_ranges(one, 1, r), 1);
}

static void test_decide(void **state)
{
    (void)state;
    tm_log_meta m = {.plain_size = 100};
    memset(m.mac, 'a', 64);
    char same[65], other[65];
    memset(same, 'a', 64);
    same[64] = '\0';
    memset(other, 'b', 64);
    other[64] = '\0';
    assert_int_equal(tm_log_decide(0, &m, 0, 100, NULL), TM_LOG_UPLOAD);
    assert_int_equal(tm_log_decide(0, &m, 1, 100, NULL), TM_LOG_CHECK_OBJECT);
    assert_int_equal(tm_log_decide(1, &m, 1, 100, same), TM_LOG_SAME);
    assert_int_equal(tm_log_decide(1, &m, 1, 100, other), TM_LOG_CONFLICT);
    assert_int_equal(tm_log_decide(1, &m, 1, 99, same), TM_LOG_CONFLICT);
    assert_int_equal(tm_log_decide(1, &m, 0, 100, same), TM_LOG_REPAIR);
    assert_int_equal(tm_log_decide(1, &m, 0, 100, other), TM_LOG_CONFLICT);
}

static void test_meta(void **state)
{
    (void)state;
    tm_log_meta m = {.plain_size = 16777216, .stored_size = 1234};
    memset(m.mac, 'c', 64);
    memcpy(m.key_id, "0123456789abcdef", 17);
    memset(m.sha256, 'd', 64);
    char buf[TM_LOG_META_MAX];
    size_t l = tm_log_meta_format(&m, buf, sizeof(buf));
    assert_true(l > 0);
    tm_log_meta p;
    tm_err err = {0};
    assert_int_equal(tm_log_meta_parse(buf, l, &p, &err), 0);
    assert_int_equal(p.plain_size, m.plain_size);
    assert_int_equal(p.stored_size, m.stored_size);
    assert_string_equal(p.mac, m.mac);
    assert_string_equal(p.key_id, m.key_id);
    assert_int_equal(tm_log_meta_parse("tidemark-log 1 1 x", 18, &p, &err), TM_ECORRUPT);
    buf[20] = 'Z';
    assert_int_equal(tm_log_meta_parse(buf, l, &p, &err), TM_ECORRUPT);
    /* The mac depends on key, name, digest and size. */
    uint8_t k1[32] = {1}, k2[32] = {2};
    char a[65], b[65];
    assert_int_equal(tm_log_mac(k1, "00000001/x", "00ff", 10, a, &err), 0);
    assert_int_equal(tm_log_mac(k2, "00000001/x", "00ff", 10, b, &err), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(tm_log_mac(k1, "00000001/y", "00ff", 10, b, &err), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(tm_log_mac(k1, "00000001/x", "00ff", 11, b, &err), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(tm_log_mac(k1, "00000001/x", "00ff", 10, b, &err), 0);
    assert_string_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),  cmocka_unit_test(test_segment_math),
        cmocka_unit_test(test_order),  cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_decide), cmocka_unit_test(test_meta),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
