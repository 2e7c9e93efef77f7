/*
 * bench_pipeline.c - throughput and peak RSS of the write pipeline.
 *
 *   bench_pipeline gen SIZE_MIB SEED FILE       realistic mixed-compressibility data
 *   bench_pipeline run [-l LEVEL] OUTDIR FILE... one stream (thread) per FILE, each to a
 *                                                file sink in OUTDIR; prints one line
 *   bench_pipeline verify OUTDIR FILE...         read back and check what run wrote
 *
 * The generated data imitates PostgreSQL heap files: 8 KiB pages of pgbench-like
 * rows (digits, padding), free space, and ~12% incompressible pages (TOAST'd or
 * already compressed data), so zstd -3 lands near its pgbench ratio.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/pipeline.h"
#include "common/util.h"

static const uint8_t bench_key[TM_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

static uint64_t rng(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static int gen(long mib, uint64_t seed, const char *path)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
    uint8_t page[8192];
    long pages = mib * 128;
    for (long p = 0; p < pages; p++) {
        memset(page, 0, sizeof(page));
        if (rng(&s) % 100 < 12) {
            for (size_t i = 0; i < sizeof(page); i += 8) {
                uint64_t r = rng(&s);
                memcpy(page + i, &r, 8);
            }
        } else {
            /* Header, then rows from the end like a heap page, free space in the middle. */
            memcpy(page, &p, sizeof(p));
            size_t end = sizeof(page), used = 24 + rng(&s) % 400;
            while (end > used + 128) {
                char row[128];
                int n =
                    snprintf(row, sizeof(row), "%08lu|%lu|%lu|%-6ld|%-60s",
                             (unsigned long)(rng(&s) % 100000000), (unsigned long)(rng(&s) % 100),
                             (unsigned long)(rng(&s) % 10), (long)(rng(&s) % 20000) - 10000, "");
                end -= (size_t)n + 24;
                uint64_t hdr = rng(&s) & 0xffff;
                memcpy(page + end, &hdr, 8);
                memcpy(page + end + 24, row, (size_t)n);
                if (used < 4 * 200) {
                    used += 4;
                }
            }
        }
        if (fwrite(page, 1, sizeof(page), f) != sizeof(page)) {
            perror("write");
            return 1;
        }
    }
    return fclose(f) == 0 ? 0 : 1;
}

typedef struct stream {
    const char *in;
    char out[512];
    int level;
    int rc;
    tm_err err;
    tm_object_digest dg;
} stream;

static void *run_stream(void *arg)
{
    stream *st = arg;
    int fd = open(st->in, O_RDONLY);
    if (fd < 0) {
        st->rc = tm_err_set(&st->err, TM_EIO, "open %s", st->in);
        return NULL;
    }
    tm_sink s;
    st->rc = tm_sink_file_open(&s, st->out, &st->err);
    if (st->rc == TM_OK) {
        tm_pipeline_opts o = {.zstd_level = st->level};
        st->rc = tm_pipeline_put_fd(bench_key, st->out, fd, &s, 1, &o, &st->dg, NULL, &st->err);
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "gen") == 0) {
        return gen(atol(argv[2]), strtoull(argv[3], NULL, 10), argv[4]);
    }
    int verify = argc >= 4 && strcmp(argv[1], "verify") == 0;
    if (argc < 4 || (!verify && strcmp(argv[1], "run") != 0)) {
        fprintf(stderr, "usage: bench_pipeline gen SIZE_MIB SEED FILE | run [-l LEVEL] OUTDIR "
                        "FILE... | verify OUTDIR FILE...\n");
        return 2;
    }
    int a = 2, level = 3;
    if (strcmp(argv[a], "-l") == 0) {
        level = atoi(argv[a + 1]);
        a += 2;
    }
    const char *outdir = argv[a++];
    int n = argc - a;
    stream *st = calloc((size_t)n, sizeof(*st));
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    uint64_t t0 = tm_mono_ns();
    for (int i = 0; i < n; i++) {
        st[i].in = argv[a + i];
        st[i].level = level;
        snprintf(st[i].out, sizeof(st[i].out), "%s/stream%d", outdir, i);
        if (verify) {
            int fd = open(st[i].out, O_RDONLY);
            st[i].rc = tm_pipeline_read(bench_key, st[i].out, tm_source_fd, &fd, NULL, NULL,
                                        &st[i].dg, &st[i].err);
            close(fd);
        } else {
            pthread_create(&th[i], NULL, run_stream, &st[i]);
        }
    }
    uint64_t plain = 0, stored = 0;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (!verify) {
            pthread_join(th[i], NULL);
        }
        if (st[i].rc != TM_OK) {
            fprintf(stderr, "stream %d: %s\n", i, st[i].err.msg);
            bad = 1;
        }
        plain += st[i].dg.plain_size;
        stored += st[i].dg.stored_size;
    }
    double secs = (double)(tm_mono_ns() - t0) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("streams=%d plain_bytes=%llu stored_bytes=%llu ratio=%.3f seconds=%.3f MBps=%.1f "
           "maxrss_kib=%ld\n",
           n, (unsigned long long)plain, (unsigned long long)stored,
           plain ? (double)stored / (double)plain : 0.0, secs, (double)plain / 1e6 / secs,
           ru.ru_maxrss);
    free(st);
    free(th);
    return bad;
}
