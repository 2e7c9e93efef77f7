/*
 * bench_rdb_pipe.c - the snapshot backup's data path without a server: an RDB
 * file read in TM_RDB_STREAM_CHUNK pieces (as the replication socket delivers
 * them), through the RDB checker and the write pipeline into a file sink, the
 * way the engine's backup does it. For profiling (perf, callgrind) and
 * per-stage CPU time; not a test.
 *
 *   bench_rdb_pipe [--sync] RDB OUT
 *
 * By default the checker queues TM_RDB_STREAM_BUFS - 1 chunks by reference
 * while the chunks rotate through TM_RDB_STREAM_BUFS buffers, as the backup
 * over SYNC does; --sync makes every feed wait for the parser (the BGSAVE
 * path).
 *
 * Prints wall time, process CPU (user + sys), MB/s and peak RSS.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "agent/engines/redis/rdb_check.h"
#include "agent/engines/redis/rdb_stream.h"
#include "common/pipeline.h"
#include "common/util.h"

static const uint8_t bench_key[TM_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

/* CPU seconds of each live thread, by name (before the stages stop). */
static void thread_cpu(char *out, size_t cap)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    size_t n = 0;
    out[0] = '\0';
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[300], line[1024];
        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
        FILE *f = e->d_name[0] != '.' ? fopen(path, "r") : NULL;
        if (f == NULL) {
            continue;
        }
        if (fgets(line, sizeof(line), f) != NULL) {
            char *name = strchr(line, '('), *rp = strrchr(line, ')');
            unsigned long ut = 0, st = 0;
            if (name != NULL && rp != NULL &&
                sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) ==
                    2) {
                *rp = '\0';
                double hz = (double)sysconf(_SC_CLK_TCK);
                n += (size_t)snprintf(out + n, n < cap ? cap - n : 0, " %s=%.2fs", name + 1,
                                      (double)(ut + st) / hz);
            }
        }
        fclose(f);
    }
    if (d != NULL) {
        closedir(d);
    }
}

static double tv_s(struct timeval t)
{
    return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    int sync = argc > 1 && strcmp(argv[1], "--sync") == 0;
    argv += sync;
    argc -= sync;
    if (argc != 3) {
        fprintf(stderr, "usage: bench_rdb_pipe [--sync] RDB OUT\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    tm_err err = {0};
    tm_sink sink;
    tm_rdb_check *chk = NULL;
    tm_pipeline_writer *w = NULL;
    if (tm_sink_file_open(&sink, argv[2], &err) != TM_OK || tm_rdb_check_new(&chk, &err) != TM_OK ||
        tm_pipeline_writer_new(&w, bench_key, "bench/rdb", &sink, 1, NULL, &err) != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (!sync) {
        tm_rdb_check_set_queue(chk, TM_RDB_STREAM_BUFS - 1);
    }
    uint8_t *bufs = malloc(TM_RDB_STREAM_BUFS * TM_RDB_STREAM_CHUNK);
    uint64_t t0 = tm_mono_ns(), total = 0;
    int rc = TM_OK;
    for (size_t i = 0;; i = (i + 1) % TM_RDB_STREAM_BUFS) {
        uint8_t *buf = bufs + i * TM_RDB_STREAM_CHUNK;
        ssize_t n = read(fd, buf, TM_RDB_STREAM_CHUNK);
        if (n <= 0) {
            break;
        }
        total += (uint64_t)n;
        rc = tm_rdb_check_feed(chk, buf, (size_t)n, &err);
        if (rc == TM_OK) {
            rc = tm_pipeline_writer_write(w, buf, (size_t)n, &err);
        }
        if (rc != TM_OK) {
            break;
        }
    }
    char threads[1024];
    thread_cpu(threads, sizeof(threads)); /* the stages' threads end below */
    if (rc == TM_OK) {
        rc = tm_rdb_check_finish(chk, &err);
    }
    tm_rdb_check_drain(chk);
    tm_object_digest dg = {0};
    uint64_t t1 = tm_mono_ns();
    if (rc == TM_OK) {
        rc = tm_pipeline_writer_finish(w, &dg, &err);
    }
    double fin = (double)(tm_mono_ns() - t1) / 1e9;
    double wall = (double)(tm_mono_ns() - t0) / 1e9;
    tm_pipeline_writer_free(w);
    tm_rdb_check_free(chk);
    free(bufs);
    close(fd);
    if (rc != TM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("bytes=%llu stored=%llu wall=%.2fs (finish+commit %.2fs) cpu=%.2fs (user %.2f sys %.2f) "
           "%.0f MB/s "
           "rss=%ld KiB\n  threads:%s\n",
           (unsigned long long)total, (unsigned long long)dg.stored_size, wall, fin,
           tv_s(ru.ru_utime) + tv_s(ru.ru_stime), tv_s(ru.ru_utime), tv_s(ru.ru_stime),
           (double)total / wall / 1e6, ru.ru_maxrss, threads);
    return 0;
}
