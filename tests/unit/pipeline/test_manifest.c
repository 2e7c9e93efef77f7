/*
 * test_manifest.c - build, seal, open a manifest; tampering, moving it to
 * another path and the wrong data key are all refused.
 */
#include "tests/unit/pipeline/helpers.h"

#include "common/manifest.h"

static void test_roundtrip_and_tamper(void **state)
{
    (void)state;
    uint8_t mk_bytes[TM_KEY_LEN], dk[TM_KEY_LEN], other[TM_KEY_LEN], rec[TM_DATA_KEY_RECORD_LEN];
    memset(mk_bytes, 7, sizeof(mk_bytes));
    memset(other, 8, sizeof(other));
    tm_master_key mk;
    tm_master_key_from_bytes(mk_bytes, &mk);
    tm_err err = {0};
    assert_int_equal(tm_data_key_new(&mk, dk, rec, &err), TM_OK);

    tm_manifest *m = NULL;
    assert_int_equal(
        tm_manifest_new(&m, "20260101T030000Z-full", "pg-main", "full", "postgres", &err), TM_OK);
    assert_int_equal(tm_manifest_set_key(m, rec, "pg-main/keys/20260101T030000Z-full", &err),
                     TM_OK);
    for (int i = 0; i < 100; i++) {
        tm_object_digest d = {
            .plain_size = (uint64_t)i * 1000, .stored_size = (uint64_t)i * 500 + 52, .frames = 1};
        memset(d.xxh3_128, 'a' + i % 6, 32);
        memset(d.sha256, '0' + i % 10, 64);
        char key[64];
        snprintf(key, sizeof(key), "pg-main/backup/20260101T030000Z-full/data/%04d", i);
        assert_int_equal(tm_manifest_add_object(m, key, &d, &err), TM_OK);
    }
    const char *path = "pg-main/backup/20260101T030000Z-full/manifest";
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(tm_manifest_seal(m, dk, path, &buf, &len, &err), TM_OK);
    tm_manifest_free(m);

    tm_manifest *o = NULL;
    if (tm_manifest_open(dk, path, buf, len, &o, &err) != TM_OK) {
        fail_msg("%s", err.msg);
    }
    assert_int_equal(tm_manifest_nobjects(o), 100);
    const char *key;
    tm_object_digest d;
    assert_int_equal(tm_manifest_object(o, 42, &key, &d), TM_OK);
    assert_string_equal(key, "pg-main/backup/20260101T030000Z-full/data/0042");
    assert_int_equal(d.plain_size, 42000);
    assert_int_equal(d.stored_size, 42 * 500 + 52);
    Tidemark__Manifest *pb = tm_manifest_proto(o);
    assert_string_equal(pb->backup_id, "20260101T030000Z-full");
    assert_string_equal(pb->engine, "postgres");
    assert_string_equal(pb->master_key_id, mk.id_hex);
    assert_true(pb->has_finished_at);
    tm_manifest_free(o);

    /* Any flipped bit is refused. */
    for (size_t off = 0; off < len; off += len / 13 + 1) {
        buf[off] ^= 0x04;
        assert_int_not_equal(tm_manifest_open(dk, path, buf, len, &o, &err), TM_OK);
        assert_non_null(strstr(err.msg, "manifest"));
        buf[off] ^= 0x04;
    }
    /* Truncated. */
    assert_int_equal(tm_manifest_open(dk, path, buf, len - 20, &o, &err), TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "truncated"));
    /* Moved to another backup's path. */
    assert_int_equal(tm_manifest_open(dk, "pg-main/backup/X/manifest", buf, len, &o, &err),
                     TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "authentication failed"));
    /* Wrong data key. */
    assert_int_equal(tm_manifest_open(other, path, buf, len, &o, &err), TM_EAUTH);
    assert_non_null(strstr(err.msg, "wrong key"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_and_tamper),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
