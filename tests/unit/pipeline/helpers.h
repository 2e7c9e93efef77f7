/* helpers.h - shared by the pipeline unit tests: temp dirs, data, memory sink. */
#ifndef TM_TEST_PIPELINE_HELPERS_H
#define TM_TEST_PIPELINE_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/pipeline.h"

static inline char *tmp_dir(void)
{
    char *d = strdup("/tmp/tm-pipeline-test-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static inline void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Deterministic data: kind 0 = incompressible, 1 = text-like (compressible). */
static inline void fill_data(uint8_t *p, size_t n, int kind, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    static const char *words[] = {"alpha ", "bravo ", "charlie ", "delta ",  "echo ", "foxtrot ",
                                  "golf ",  "hotel ", "india ",   "juliet ", "1234 ", "tidemark "};
    size_t i = 0;
    while (i < n) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t r = s * 2685821657736338717ULL;
        if (kind == 0) {
            for (int k = 0; k < 8 && i < n; k++) {
                p[i++] = (uint8_t)(r >> (8 * k));
            }
        } else {
            const char *w = words[r % 12];
            for (size_t k = 0; w[k] && i < n; k++) {
                p[i++] = (uint8_t)w[k];
            }
        }
    }
}

/* A plaintext sink into memory (for reading back). */
typedef struct mem_sink {
    uint8_t *buf;
    size_t len, cap;
    int committed, aborted;
} mem_sink;

static inline int mem_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    (void)err;
    mem_sink *m = arg;
    if (m->len + len > m->cap) {
        m->cap = (m->len + len) * 2 + 1024;
        m->buf = realloc(m->buf, m->cap);
        assert_non_null(m->buf);
    }
    memcpy(m->buf + m->len, buf, len);
    m->len += len;
    return TM_OK;
}

static inline int mem_commit(void *arg, tm_err *err)
{
    (void)err;
    ((mem_sink *)arg)->committed = 1;
    return TM_OK;
}

static inline void mem_abort(void *arg)
{
    ((mem_sink *)arg)->aborted = 1;
}

static inline tm_sink mem_sink_of(mem_sink *m)
{
    return (tm_sink){mem_write, mem_commit, mem_abort, m, "mem"};
}

#endif
