/*
 * test_pg.c - the PostgreSQL engine's pure parts: exclusion rules, relation
 * file names, backup ids, LSNs and WAL names, backup_label parsing, target
 * times, the incremental copy-or-reference decision, and the page checksum
 * (against values pg_checksums --check accepted on a real data directory).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/engines/postgres/pg.h"

static void test_exclusions(void **state)
{
    (void)state;
    assert_int_equal(tm_pg_exclude("postmaster.pid", 0), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("postmaster.opts", 0), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("backup_label", 0), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("backup_label.old", 0), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("tablespace_map", 0), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("recovery.signal", 0), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("standby.signal", 0), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("postgresql.auto.conf.tmp", 0), TM_PG_SKIP);
    const char *empty[] = {"pg_wal",    "pg_replslot",  "pg_dynshmem", "pg_notify",
                           "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans"};
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++) {
        assert_int_equal(tm_pg_exclude(empty[i], 1), TM_PG_EMPTY_DIR);
        /* Only the top-level ones: a file of that name elsewhere is data. */
        char deeper[64];
        snprintf(deeper, sizeof(deeper), "base/5/%s", empty[i]);
        assert_int_equal(tm_pg_exclude(deeper, 1), TM_PG_KEEP);
    }
    assert_int_equal(tm_pg_exclude("base/pgsql_tmp", 1), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("pg_tblspc/16385/PG_15_202209061/pgsql_tmp", 1), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("base/5/pgsql_tmp1234.0", 0), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("base/5/pg_internal.init", 0), TM_PG_SKIP);
    assert_int_equal(tm_pg_exclude("global/pg_internal.init", 0), TM_PG_SKIP);
    /* Kept: data, config, control, commit log, the directory itself. */
    assert_int_equal(tm_pg_exclude("base/5/16384", 0), TM_PG_KEEP);
    assert_int_equal(tm_pg_exclude("global/pg_control", 0), TM_PG_KEEP);
    assert_int_equal(tm_pg_exclude("postgresql.auto.conf", 0), TM_PG_KEEP);
    assert_int_equal(tm_pg_exclude("pg_xact", 1), TM_PG_KEEP);
    assert_int_equal(tm_pg_exclude("PG_VERSION", 0), TM_PG_KEEP);
    /* A file (not a directory) named like an emptied directory is kept. */
    assert_int_equal(tm_pg_exclude("pg_wal", 0), TM_PG_KEEP);
}

static void test_relation_files(void **state)
{
    (void)state;
    uint32_t seg = 99;
    assert_true(tm_pg_is_relation_file("base/5/16384", &seg));
    assert_int_equal(seg, 0);
    assert_true(tm_pg_is_relation_file("base/5/16384.3", &seg));
    assert_int_equal(seg, 3);
    assert_true(tm_pg_is_relation_file("base/5/16384_fsm", &seg));
    assert_true(tm_pg_is_relation_file("base/5/16384_vm.1", &seg));
    assert_int_equal(seg, 1);
    assert_true(tm_pg_is_relation_file("global/1262", &seg));
    assert_true(tm_pg_is_relation_file("pg_tblspc/16385/PG_15_202209061/5/16390", &seg));
    assert_false(tm_pg_is_relation_file("global/pg_control", &seg));
    assert_false(tm_pg_is_relation_file("global/pg_filenode.map", &seg));
    assert_false(tm_pg_is_relation_file("base/5/PG_VERSION", &seg));
    assert_false(tm_pg_is_relation_file("base/5/16384_foo", &seg));
    assert_false(tm_pg_is_relation_file("base/5/16384.", &seg));
    assert_false(tm_pg_is_relation_file("pg_xact/0000", &seg));
}

static void test_backup_id(void **state)
{
    (void)state;
    char id[64];
    tm_pg_backup_id(1764000000, 0, id, sizeof(id)); /* 2025-11-24 16:00:00 UTC */
    assert_string_equal(id, "20251124T160000Z-full");
    tm_pg_backup_id(1764000000 + 59, 1, id, sizeof(id));
    assert_string_equal(id, "20251124T160059Z-incr");
    assert_true(tm_repo_valid_name(id));
}

static void test_lsn_and_wal(void **state)
{
    (void)state;
    uint64_t l = 0;
    assert_int_equal(tm_pg_lsn_parse("16/B374D848", &l), TM_OK);
    assert_true(l == ((uint64_t)0x16 << 32 | 0xB374D848u));
    char s[32];
    tm_pg_lsn_fmt(l, s, sizeof(s));
    assert_string_equal(s, "16/B374D848");
    assert_int_equal(tm_pg_lsn_parse("0/3000028", &l), TM_OK);
    assert_true(l == 0x3000028);
    assert_int_not_equal(tm_pg_lsn_parse("3000028", &l), TM_OK);
    assert_int_not_equal(tm_pg_lsn_parse("0/", &l), TM_OK);
    assert_int_not_equal(tm_pg_lsn_parse("0/XYZ", &l), TM_OK);
    char w[25];
    /* 16 MiB segments: 256 per "log id". */
    tm_pg_wal_name(1, 0x3000028 / (16u << 20), 16u << 20, w);
    assert_string_equal(w, "000000010000000000000003");
    tm_pg_wal_name(2, 0x1600 + 0xB3, 16u << 20, w);
    assert_string_equal(w, "0000000200000016000000B3");
    uint32_t tli;
    uint64_t segno;
    assert_int_equal(tm_pg_wal_parse("0000000200000016000000B3", 16u << 20, &tli, &segno), TM_OK);
    assert_int_equal(tli, 2);
    assert_true(segno == 0x16B3);
    assert_int_not_equal(tm_pg_wal_parse("000000020000001600000100", 16u << 20, &tli, &segno),
                         TM_OK);
    assert_int_not_equal(tm_pg_wal_parse("00000002.history", 16u << 20, &tli, &segno), TM_OK);
}

static void test_label(void **state)
{
    (void)state;
    const char *text = "START WAL LOCATION: 0/D000028 (file 00000001000000000000000D)\n"
                       "CHECKPOINT LOCATION: 0/D000060\n"
                       "BACKUP METHOD: streamed\n"
                       "BACKUP FROM: primary\n"
                       "START TIME: 2026-11-24 06:23:55 UTC\n"
                       "LABEL: tidemark 20261124T062355Z-full\n"
                       "START TIMELINE: 1\n";
    tm_pg_label lab;
    tm_err err = {0};
    assert_int_equal(tm_pg_label_parse(text, &lab, &err), TM_OK);
    assert_true(lab.start_lsn == 0xD000028);
    assert_true(lab.checkpoint_lsn == 0xD000060);
    assert_int_equal(lab.timeline, 1);
    assert_string_equal(lab.start_wal, "00000001000000000000000D");
    assert_string_equal(lab.method, "streamed");
    assert_string_equal(lab.label, "tidemark 20261124T062355Z-full");
    assert_int_equal(tm_pg_label_parse("CHECKPOINT LOCATION: 0/1\n", &lab, &err), TM_EPROTO);
    assert_non_null(strstr(err.msg, "START WAL LOCATION"));
    assert_int_equal(tm_pg_label_parse("START WAL LOCATION: 0/1 (file 000000010000000000000000)\n"
                                       "CHECKPOINT LOCATION: 0/1\nSTART TIMELINE: x\n",
                                       &lab, &err),
                     TM_EPROTO);
}

static void test_time(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_int_equal(tm_pg_time_parse("2025-11-24 16:00:00+00", &t), TM_OK);
    assert_true(t == 1764000000);
    assert_int_equal(tm_pg_time_parse("2025-11-24T16:00:00Z", &t), TM_OK);
    assert_true(t == 1764000000);
    assert_int_equal(tm_pg_time_parse("2025-11-24 18:00:00+02:00", &t), TM_OK);
    assert_true(t == 1764000000);
    assert_int_equal(tm_pg_time_parse("2025-11-24 16:00:00.25+00", &t), TM_OK);
    assert_true(t == 1764000001); /* a fraction rounds up */
    assert_int_not_equal(tm_pg_time_parse("2025-11-24 16:00:00", &t), TM_OK); /* no zone */
    assert_int_not_equal(tm_pg_time_parse("yesterday", &t), TM_OK);
    assert_int_not_equal(tm_pg_time_parse("2025-13-24 16:00:00+00", &t), TM_OK);
    char s[40];
    tm_pg_time_fmt(1764000000, s, sizeof(s));
    assert_string_equal(s, "2025-11-24 16:00:00+00");
}

static void test_incremental_decision(void **state)
{
    (void)state;
    Tidemark__FileEntry prev = TIDEMARK__FILE_ENTRY__INIT;
    prev.type = TM_PG_FILE;
    prev.object = "pgdata/base/5/16384";
    prev.size = 8192;
    prev.mtime = 1000;
    const int64_t prev_start = 2000;
    /* New file, or no previous backup of it. */
    assert_true(tm_pg_incr_must_copy(NULL, 8192, 1000, prev_start));
    /* Unchanged and quiet long before the previous backup: reference. */
    assert_false(tm_pg_incr_must_copy(&prev, 8192, 1000, prev_start));
    /* Size or mtime changed. */
    assert_true(tm_pg_incr_must_copy(&prev, 16384, 1000, prev_start));
    assert_true(tm_pg_incr_must_copy(&prev, 8192, 1001, prev_start));
    /* Same-second write: the previous copy saw mtime 1999..2005 (modified
     * within the slack of, or during, the previous backup). A later write
     * in that same second keeps size and mtime, so it is copied again. */
    prev.mtime = prev_start - TM_PG_MTIME_SLACK_S;
    assert_true(tm_pg_incr_must_copy(&prev, 8192, prev.mtime, prev_start));
    prev.mtime = prev_start + 5;
    assert_true(tm_pg_incr_must_copy(&prev, 8192, prev.mtime, prev_start));
    prev.mtime = prev_start - TM_PG_MTIME_SLACK_S - 1;
    assert_false(tm_pg_incr_must_copy(&prev, 8192, prev.mtime, prev_start));
    /* A previous entry that is not a stored file is never referenced. */
    prev.object = "";
    assert_true(tm_pg_incr_must_copy(&prev, 8192, prev.mtime, prev_start));
    prev.object = "x";
    prev.type = TM_PG_DIR;
    assert_true(tm_pg_incr_must_copy(&prev, 8192, prev.mtime, prev_start));
}

/* The page the values below were checked with: pg_checksums --check (PG 15)
 * accepted it as block 0 and block 3 of a relation with these checksums. */
static void build_page(uint8_t *p)
{
    for (int i = 0; i < TM_PG_BLCKSZ; i++) {
        p[i] = (uint8_t)(i * 7 + 3);
    }
    uint16_t lower = 40, upper = 7000, special = 8192, psv = 8192 | 4;
    memset(p, 0, 24);
    p[4] = 0x28;
    p[5] = 0x01;
    memcpy(p + 12, &lower, 2);
    memcpy(p + 14, &upper, 2);
    memcpy(p + 16, &special, 2);
    memcpy(p + 18, &psv, 2);
}

static void test_page_checksum(void **state)
{
    (void)state;
    static uint8_t page[TM_PG_BLCKSZ];
    build_page(page);
    assert_int_equal(tm_pg_checksum_page(page, 0), 0xaa08);
    assert_int_equal(tm_pg_checksum_page(page, 3), 0xaa09);
    /* The stored checksum field does not take part. */
    page[8] = 0x12;
    page[9] = 0x34;
    assert_int_equal(tm_pg_checksum_page(page, 0), 0xaa08);
    uint16_t c = 0xaa08, have = 0, want = 0;
    memcpy(page + 8, &c, 2);
    assert_false(tm_pg_page_bad(page, 0, 0, &have, &want));
    /* Wrong block (a transposed page) and a flipped bit both fail. */
    assert_true(tm_pg_page_bad(page, 1, 0, &have, &want));
    page[4000] ^= 0x01;
    assert_true(tm_pg_page_bad(page, 0, 0, &have, &want));
    assert_int_equal(have, 0xaa08);
    assert_int_not_equal(want, 0xaa08);
    /* ... unless the page was written after the backup started (pd_lsn =
     * 0/128 here): WAL replay rewrites it, a torn read is expected. */
    assert_false(tm_pg_page_bad(page, 0, 0x100, &have, &want));
    /* A new page (pd_upper = 0) has no checksum to check. */
    memset(page + 14, 0, 2);
    assert_false(tm_pg_page_bad(page, 0, 0, &have, &want));
}

/* The walk follows pg_tblspc/<oid> into the tablespace's directory (a
 * regression: the link was recorded but its files were left out), records
 * other links as links, and skips excluded files. */
static void test_walk_tablespace(void **state)
{
    (void)state;
    char root[] = "/tmp/tm-unit-walk-XXXXXX";
    assert_non_null(mkdtemp(root));
    char p[512], q[512];
#define MK(fmt, ...) (snprintf(p, sizeof(p), fmt, __VA_ARGS__), assert_int_equal(mkdir(p, 0700), 0))
#define PUT(fmt, ...)                                                                              \
    do {                                                                                           \
        snprintf(p, sizeof(p), fmt, __VA_ARGS__);                                                  \
        FILE *f = fopen(p, "w");                                                                   \
        assert_non_null(f);                                                                        \
        fputs("x", f);                                                                             \
        fclose(f);                                                                                 \
    } while (0)
    MK("%s/pgdata", root);
    MK("%s/pgdata/base", root);
    MK("%s/pgdata/pg_tblspc", root);
    MK("%s/ts", root);
    MK("%s/ts/PG_15_202209061", root);
    MK("%s/ts/PG_15_202209061/5", root);
    PUT("%s/pgdata/PG_VERSION", root);
    PUT("%s/pgdata/postmaster.pid", root);
    PUT("%s/ts/PG_15_202209061/5/16413", root);
    snprintf(p, sizeof(p), "%s/ts", root);
    snprintf(q, sizeof(q), "%s/pgdata/pg_tblspc/16412", root);
    assert_int_equal(symlink(p, q), 0);
    snprintf(q, sizeof(q), "%s/pgdata", root);
    tm_pg_entry *e = NULL;
    size_t n = 0;
    tm_err err = {0};
    assert_int_equal(tm_pg_walk(q, &e, &n, &err), TM_OK);
    int link = 0, rel = 0, pid = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].rel, "pg_tblspc/16412") == 0) {
            link = e[i].type == TM_PG_LINK && strcmp(e[i].link, p) == 0;
        }
        if (strcmp(e[i].rel, "pg_tblspc/16412/PG_15_202209061/5/16413") == 0) {
            rel = e[i].type == TM_PG_FILE && e[i].size == 1;
        }
        pid |= strcmp(e[i].rel, "postmaster.pid") == 0;
    }
    assert_true(link);
    assert_true(rel);
    assert_false(pid);
    tm_pg_entries_free(e, n);
#undef MK
#undef PUT
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exclusions),
        cmocka_unit_test(test_relation_files),
        cmocka_unit_test(test_backup_id),
        cmocka_unit_test(test_lsn_and_wal),
        cmocka_unit_test(test_label),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_incremental_decision),
        cmocka_unit_test(test_page_checksum),
        cmocka_unit_test(test_walk_tablespace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
