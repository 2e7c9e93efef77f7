/*
 * test_keys.c - master key files, data key wrap/unwrap, rotation with a
 * keyring, and the failure messages an operator would see.
 */
#include "tests/unit/pipeline/helpers.h"

#include <sys/stat.h>
#include <unistd.h>

#include "common/keys.h"
#include "common/util.h"

static int tm_file_read_for_test(const char *p, char **out, size_t *len)
{
    return tm_file_read(p, out, len, NULL);
}

static void test_generate_and_load(void **state)
{
    (void)state;
    char *dir = tmp_dir();
    char path[300];
    snprintf(path, sizeof(path), "%s/master.key", dir);
    tm_master_key a, b;
    tm_err err = {0};
    assert_int_equal(tm_keys_generate_master(path, &a, &err), TM_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 65); /* 64 hex + newline */
    assert_int_equal(tm_keys_load_master_file(path, &b, &err), TM_OK);
    assert_memory_equal(a.key, b.key, TM_KEY_LEN);
    assert_string_equal(a.id_hex, b.id_hex);
    assert_int_equal(strlen(a.id_hex), 16);
    /* Never overwrites. */
    assert_int_equal(tm_keys_generate_master(path, NULL, &err), TM_EEXIST);
    /* env: reference with the same hex. */
    char *hex = NULL;
    size_t len = 0;
    assert_int_equal(tm_file_read_for_test(path, &hex, &len), 0);
    hex[64] = '\0';
    setenv("TM_TEST_MASTER", hex, 1);
    assert_int_equal(tm_keys_load_master_ref("env:TM_TEST_MASTER", &b, &err), TM_OK);
    assert_memory_equal(a.key, b.key, TM_KEY_LEN);
    /* Raw 32-byte form. */
    snprintf(path, sizeof(path), "%s/raw.key", dir);
    FILE *f = fopen(path, "wb");
    fwrite(a.key, 1, TM_KEY_LEN, f);
    fclose(f);
    /* Readable by group or others: refused, with the fix in the message. */
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(tm_keys_load_master_file(path, &b, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "chmod 600"));
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(tm_keys_load_master_file(path, &b, &err), TM_ECONFIG);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(tm_keys_load_master_file(path, &b, &err), TM_OK);
    assert_string_equal(a.id_hex, b.id_hex);
    /* Garbage is refused with a useful message. */
    snprintf(path, sizeof(path), "%s/bad.key", dir);
    f = fopen(path, "w");
    fputs("not a key\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(tm_keys_load_master_file(path, &b, &err), TM_ECONFIG);
    assert_non_null(strstr(err.msg, "64 hex characters"));
    unsetenv("TM_TEST_MASTER");
    assert_int_equal(tm_keys_load_master_ref("env:TM_TEST_MASTER", &b, &err), TM_ECONFIG);
    free(hex);
    rm_rf(dir);
    free(dir);
}

/* Key generation writes through a random O_EXCL|O_NOFOLLOW temporary name
 * and a no-replace rename: a symlink planted at the old predictable name
 * (path.tmp.<pid>) or at the key path itself is never followed, and the
 * umask cannot widen the mode. */
static void test_generate_planted_links(void **state)
{
    (void)state;
    char *dir = tmp_dir();
    char path[300], victim[300], planted[340];
    snprintf(path, sizeof(path), "%s/master.key", dir);
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    snprintf(planted, sizeof(planted), "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(victim, "w");
    fputs("precious\n", f);
    fclose(f);
    assert_int_equal(symlink(victim, planted), 0);
    mode_t old_mask = umask(0);
    tm_master_key a;
    tm_err err = {0};
    assert_int_equal(tm_keys_generate_master(path, &a, &err), TM_OK);
    umask(old_mask);
    char *got = NULL;
    size_t len = 0;
    assert_int_equal(tm_file_read_for_test(victim, &got, &len), 0);
    assert_string_equal(got, "precious\n");
    free(got);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    /* A dangling symlink at the key path: not followed, not replaced. */
    char path2[300], target[300];
    snprintf(path2, sizeof(path2), "%s/other.key", dir);
    snprintf(target, sizeof(target), "%s/elsewhere", dir);
    assert_int_equal(symlink(target, path2), 0);
    assert_int_equal(tm_keys_generate_master(path2, NULL, &err), TM_EEXIST);
    assert_int_equal(access(target, F_OK), -1);
    rm_rf(dir);
    free(dir);
}

static void test_wrap_unwrap_rotate(void **state)
{
    (void)state;
    uint8_t k1[TM_KEY_LEN], k2[TM_KEY_LEN];
    memset(k1, 1, sizeof(k1));
    memset(k2, 2, sizeof(k2));
    tm_master_key old_mk, new_mk;
    tm_master_key_from_bytes(k1, &old_mk);
    tm_master_key_from_bytes(k2, &new_mk);
    tm_err err = {0};
    uint8_t dk[TM_KEY_LEN], got[TM_KEY_LEN], rec[TM_DATA_KEY_RECORD_LEN],
        rec2[TM_DATA_KEY_RECORD_LEN];
    assert_int_equal(tm_data_key_new(&old_mk, dk, rec, &err), TM_OK);

    tm_keyring *only_old, *only_new, *both;
    assert_int_equal(tm_keyring_new(&only_old, &err), TM_OK);
    assert_int_equal(tm_keyring_new(&only_new, &err), TM_OK);
    assert_int_equal(tm_keyring_new(&both, &err), TM_OK);
    tm_keyring_add(only_old, &old_mk, &err);
    tm_keyring_add(only_new, &new_mk, &err);
    tm_keyring_add(both, &new_mk, &err);
    tm_keyring_add(both, &old_mk, &err);
    tm_keyring_add(both, &old_mk, &err); /* no-op */

    assert_int_equal(tm_data_key_unwrap(only_old, rec, got, &err), TM_OK);
    assert_memory_equal(got, dk, TM_KEY_LEN);
    /* Not yet rotated: the new master alone cannot read it, and says why. */
    assert_int_equal(tm_data_key_unwrap(only_new, rec, got, &err), TM_ENOENT);
    assert_non_null(strstr(err.msg, old_mk.id_hex));
    /* Rotate: rewrap under the new master; the data key is unchanged. */
    assert_int_equal(tm_data_key_rewrap(both, &new_mk, rec, rec2, &err), TM_OK);
    assert_int_equal(tm_data_key_unwrap(only_new, rec2, got, &err), TM_OK);
    assert_memory_equal(got, dk, TM_KEY_LEN);
    /* During rotation the keyring with both reads old and new records. */
    assert_int_equal(tm_data_key_unwrap(both, rec, got, &err), TM_OK);
    assert_int_equal(tm_data_key_unwrap(both, rec2, got, &err), TM_OK);
    uint8_t mid[TM_KEY_ID_LEN];
    assert_int_equal(tm_data_key_record_ids(rec2, mid, NULL, &err), TM_OK);
    assert_memory_equal(mid, new_mk.id, TM_KEY_ID_LEN);

    /* Tampered wrapped key: integrity check fails. */
    rec2[30] ^= 1;
    assert_int_equal(tm_data_key_unwrap(both, rec2, got, &err), TM_EAUTH);
    assert_non_null(strstr(err.msg, "integrity check failed"));
    rec2[30] ^= 1;
    /* A record claiming the wrong master id (but the key is in the ring). */
    memcpy(rec2 + 8, old_mk.id, TM_KEY_ID_LEN);
    assert_int_equal(tm_data_key_unwrap(both, rec2, got, &err), TM_EAUTH);
    /* Not a record. */
    rec2[0] = 'X';
    assert_int_equal(tm_data_key_unwrap(both, rec2, got, &err), TM_ECORRUPT);

    tm_keyring_free(only_old);
    tm_keyring_free(only_new);
    tm_keyring_free(both);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_and_load),
        cmocka_unit_test(test_generate_planted_links),
        cmocka_unit_test(test_wrap_unwrap_rotate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
