/*
 * test_pipeline_mem.c - bounded memory: 256 MiB streamed through the writer
 * must not grow the process's peak RSS by more than a few frames + the zstd
 * context. Its own executable so earlier tests do not set the peak.
 */
#include "tests/unit/pipeline/helpers.h"

#include <sys/resource.h>

static long maxrss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static int count_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    (void)buf;
    (void)err;
    *(uint64_t *)arg += len;
    return TM_OK;
}

static int count_commit(void *arg, tm_err *err)
{
    (void)arg;
    (void)err;
    return TM_OK;
}

static void count_abort(void *arg)
{
    (void)arg;
}

static void test_bounded_memory(void **state)
{
    (void)state;
    size_t est = tm_pipeline_writer_mem_estimate(NULL, 1);
    print_message("writer estimate: %zu KiB\n", est / 1024);
    assert_true(est < 16u << 20);

    uint8_t key[TM_KEY_LEN] = {9};
    size_t bs = 1 << 20;
    uint8_t *buf = malloc(bs);
    long before = maxrss_kib();
    uint64_t stored = 0;
    tm_sink s = {count_write, count_commit, count_abort, &stored, "count"};
    tm_pipeline_writer *w = NULL;
    tm_err err = {0};
    assert_int_equal(tm_pipeline_writer_new(&w, key, "mem", &s, 1, NULL, &err), TM_OK);
    for (uint64_t i = 0; i < 256; i++) {
        fill_data(buf, bs, (int)(i % 3 == 0 ? 0 : 1), i); /* mixed, never repeating */
        assert_int_equal(tm_pipeline_writer_write(w, buf, bs, &err), TM_OK);
    }
    tm_object_digest dg;
    assert_int_equal(tm_pipeline_writer_finish(w, &dg, &err), TM_OK);
    tm_pipeline_writer_free(w);
    assert_int_equal(dg.plain_size, 256u << 20);
    assert_int_equal(dg.stored_size, stored);
    long grew = maxrss_kib() - before;
    print_message("256 MiB streamed, stored %llu MiB, peak RSS grew %ld KiB\n",
                  (unsigned long long)(stored >> 20), grew);
#if !defined(__SANITIZE_ADDRESS__)
    assert_true(grew < 32 * 1024);
#endif
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounded_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
