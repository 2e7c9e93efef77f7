/*
 * test_pipeline.c - the streaming pipeline end to end through real files:
 * round trips of many sizes, digests, verify without key, tamper at the
 * pipeline level, and fan-out with one destination failing for real.
 */
#include "tests/unit/pipeline/helpers.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/frame.h"

static uint8_t key[TM_KEY_LEN];

static int setup(void **state)
{
    (void)state;
    memset(key, 0x5a, sizeof(key));
    return 0;
}

static void write_object(const char *path, const char *obj, const uint8_t *data, size_t n,
                         tm_object_digest *dg)
{
    tm_sink s;
    tm_err err = {0};
    tm_pipeline_writer *w = NULL;
    assert_int_equal(tm_sink_file_open(&s, path, &err), TM_OK);
    assert_int_equal(tm_pipeline_writer_new(&w, key, obj, &s, 1, NULL, &err), TM_OK);
    /* Odd write sizes: the pipeline must not care how input is cut. */
    size_t pos = 0, step = 1;
    while (pos < n) {
        size_t k = n - pos < step ? n - pos : step;
        assert_int_equal(tm_pipeline_writer_write(w, data + pos, k, &err), TM_OK);
        pos += k;
        step = step * 3 + 7;
    }
    if (tm_pipeline_writer_finish(w, dg, &err) != TM_OK) {
        fail_msg("finish: %s", err.msg);
    }
    tm_pipeline_writer_free(w);
}

static int read_object(const char *path, const char *obj, const tm_object_digest *expect,
                       mem_sink *m, tm_err *err)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    tm_sink out = mem_sink_of(m);
    int rc = tm_pipeline_read(key, obj, tm_source_fd, &fd, &out, expect, NULL, err);
    close(fd);
    return rc;
}

static void test_roundtrips(void **state)
{
    (void)state;
    char *dir = tmp_dir();
    struct {
        size_t n;
        int kind;
    } cases[] = {{0, 1}, {1, 1}, {1 << 20, 0}, {1 << 20, 1}, {(3 << 20) + 5, 0}, {16 << 20, 1}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = cases[i].n;
        uint8_t *data = malloc(n + 1);
        fill_data(data, n, cases[i].kind, i);
        char path[300];
        snprintf(path, sizeof(path), "%s/obj%zu", dir, i);
        tm_object_digest dg;
        write_object(path, "t/backup/x/data/f", data, n, &dg);
        assert_int_equal(dg.plain_size, n);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal((uint64_t)st.st_size, dg.stored_size);
        if (cases[i].kind == 0) {
            assert_true(dg.frames >= n / (1 << 20) + 1); /* incompressible: >= n/1MiB frames */
        } else if (n > 1000) {
            assert_true(dg.stored_size < n / 3); /* compressible */
        }
        mem_sink m = {0};
        tm_err err = {0};
        if (read_object(path, "t/backup/x/data/f", &dg, &m, &err) != TM_OK) {
            fail_msg("read back %zu: %s", n, err.msg);
        }
        assert_true(m.committed);
        assert_int_equal(m.len, n);
        if (n > 0) {
            assert_memory_equal(m.buf, data, n);
        }
        free(m.buf);
        /* Verify without the key. */
        int fd = open(path, O_RDONLY);
        assert_int_equal(tm_pipeline_verify_stored("f", tm_source_fd, &fd, dg.sha256,
                                                   dg.stored_size, NULL, &err),
                         TM_OK);
        close(fd);
        free(data);
    }
    rm_rf(dir);
    free(dir);
}

static void test_empty_has_one_last_frame(void **state)
{
    (void)state;
    char *dir = tmp_dir();
    char path[300];
    snprintf(path, sizeof(path), "%s/empty", dir);
    tm_object_digest dg;
    write_object(path, "e", (const uint8_t *)"", 0, &dg);
    assert_int_equal(dg.frames, 1);
    /* XXH3-128 of nothing, canonical form. */
    assert_string_equal(dg.xxh3_128, "99aa06d3014798d86001c324468d497f");
    rm_rf(dir);
    free(dir);
}

static void test_tamper_and_digests(void **state)
{
    (void)state;
    char *dir = tmp_dir();
    char path[300];
    snprintf(path, sizeof(path), "%s/obj", dir);
    size_t n = 3 << 20;
    uint8_t *data = malloc(n);
    fill_data(data, n, 0, 7);
    tm_object_digest dg;
    write_object(path, "o", data, n, &dg);
    assert_true(dg.frames >= 4);
    tm_err err = {0};
    mem_sink m = {0};

    /* Wrong expected digests: named. */
    tm_object_digest bad = dg;
    bad.xxh3_128[0] = bad.xxh3_128[0] == '0' ? '1' : '0';
    assert_int_equal(read_object(path, "o", &bad, &m, &err), TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "plaintext XXH3-128 digest mismatch"));
    assert_true(m.aborted && !m.committed);
    free(m.buf);
    bad = dg;
    bad.sha256[5] = bad.sha256[5] == 'a' ? 'b' : 'a';
    m = (mem_sink){0};
    assert_int_equal(read_object(path, "o", &bad, &m, &err), TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "stored SHA-256 digest mismatch"));
    free(m.buf);

    /* A flipped bit in frame 2's ciphertext. */
    int fd = open(path, O_RDWR);
    off_t off = TM_FRAME_HEADER_LEN + 2 * (TM_FRAME_OVERHEAD + (1 << 20)) + 100;
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
    m = (mem_sink){0};
    assert_int_equal(read_object(path, "o", &dg, &m, &err), TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "object o: frame 2: authentication failed"));
    assert_true(m.aborted);
    free(m.buf);
    /* Without the key, the stored digest catches it too. */
    fd = open(path, O_RDONLY);
    assert_int_equal(
        tm_pipeline_verify_stored("o", tm_source_fd, &fd, dg.sha256, dg.stored_size, NULL, &err),
        TM_ECORRUPT);
    assert_non_null(strstr(err.msg, "stored SHA-256 digest mismatch"));
    close(fd);
    free(data);
    rm_rf(dir);
    free(dir);
}

/*
 * Fan-out to three file sinks; the second sits on a real destination that
 * fails: a 2 MiB tmpfs that fills up mid-object (needs CAP_SYS_ADMIN), or,
 * without privileges, a directory made read-only after the temp file is open,
 * so the commit (rename) fails.
 */
static void test_fanout_one_fails(void **state)
{
    (void)state;
    char *dir = tmp_dir();
    char full[300], paths[3][320];
    snprintf(full, sizeof(full), "%s/full", dir);
    assert_int_equal(mkdir(full, 0755), 0);
    int mounted = mount("tmpfs", full, "tmpfs", 0, "size=2m") == 0;
    snprintf(paths[0], sizeof(paths[0]), "%s/a", dir);
    snprintf(paths[1], sizeof(paths[1]), "%s/b", full);
    snprintf(paths[2], sizeof(paths[2]), "%s/c", dir);
    tm_sink sinks[3];
    tm_err err = {0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tm_sink_file_open(&sinks[i], paths[i], &err), TM_OK);
        sinks[i].name = i == 0 ? "local" : i == 1 ? "eu-west" : "us-east";
    }
    if (!mounted) {
        assert_int_equal(chmod(full, 0555), 0);
    }
    size_t n = 24 << 20;
    uint8_t *data = malloc(n);
    fill_data(data, n, 0, 3); /* incompressible: 24 MiB stored > 2 MiB tmpfs */
    tm_pipeline_writer *w = NULL;
    assert_int_equal(tm_pipeline_writer_new(&w, key, "fan", sinks, 3, NULL, &err), TM_OK);
    for (size_t pos = 0; pos < n; pos += 1 << 18) {
        assert_int_equal(tm_pipeline_writer_write(w, data + pos, 1 << 18, &err), TM_OK);
    }
    tm_object_digest dg;
    int rc = tm_pipeline_writer_finish(w, &dg, &err);
    assert_int_not_equal(rc, TM_OK);
    assert_non_null(strstr(err.msg, "1 of 3 sinks failed: eu-west"));
    assert_int_equal(tm_pipeline_writer_result(w, 0)->code, TM_OK);
    assert_int_not_equal(tm_pipeline_writer_result(w, 1)->code, TM_OK);
    assert_int_equal(tm_pipeline_writer_result(w, 2)->code, TM_OK);
    if (mounted) {
        assert_int_equal(tm_pipeline_writer_result(w, 1)->code, TM_ENOSPC);
    }
    print_message("failed sink: %s\n", tm_pipeline_writer_result(w, 1)->msg);
    tm_pipeline_writer_free(w);
    /* The healthy copies verify; the failed one left nothing visible. */
    for (int i = 0; i < 3; i += 2) {
        mem_sink m = {0};
        assert_int_equal(read_object(paths[i], "fan", &dg, &m, &err), TM_OK);
        assert_int_equal(m.len, n);
        assert_memory_equal(m.buf, data, n);
        free(m.buf);
    }
    struct stat st;
    assert_int_not_equal(stat(paths[1], &st), 0);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s')\"", full);
    assert_int_equal(system(cmd), 0);
    if (mounted) {
        umount(full);
    } else {
        chmod(full, 0755);
    }
    free(data);
    rm_rf(dir);
    free(dir);
}

/* Every sink failing stops the writer early with a clear error. */
static void test_all_sinks_fail(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        skip(); /* needs a tmpfs */
    }
    char *dir = tmp_dir();
    assert_int_equal(mount("tmpfs", dir, "tmpfs", 0, "size=1m"), 0);
    char path[300];
    snprintf(path, sizeof(path), "%s/x", dir);
    tm_sink s;
    tm_err err = {0};
    assert_int_equal(tm_sink_file_open(&s, path, &err), TM_OK);
    tm_pipeline_writer *w = NULL;
    assert_int_equal(tm_pipeline_writer_new(&w, key, "x", &s, 1, NULL, &err), TM_OK);
    size_t n = 1 << 20;
    uint8_t *data = malloc(n);
    fill_data(data, n, 0, 9);
    int rc = TM_OK;
    for (int i = 0; i < 64 && rc == TM_OK; i++) {
        fill_data(data, n, 0, 100 + (uint64_t)i); /* no repeats for zstd to find */
        rc = tm_pipeline_writer_write(w, data, n, &err);
    }
    /* The sink's own code survives: a full disk is TM_ENOSPC, not TM_EIO. */
    assert_int_equal(rc, TM_ENOSPC);
    assert_non_null(strstr(err.msg, "every sink failed"));
    assert_non_null(strstr(err.msg, "No space left on device"));
    tm_pipeline_writer_free(w);
    free(data);
    umount(dir);
    rm_rf(dir);
    free(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrips),         cmocka_unit_test(test_empty_has_one_last_frame),
        cmocka_unit_test(test_tamper_and_digests), cmocka_unit_test(test_fanout_one_fails),
        cmocka_unit_test(test_all_sinks_fail),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
