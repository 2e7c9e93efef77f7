/*
 * sqlite_fixture.h - what the SQLite engine's unit tests share: a temporary
 * directory with a WAL-mode database, and a writer process (fork) that
 * commits small transactions continuously, each inserting row (id, time)
 * and bumping a counter in the same transaction (a copy whose count of rows
 * differs from the counter is torn). The writer dies with the test
 * process (PR_SET_PDEATHSIG): a failing test never leaves it running.
 */
#ifndef TM_TEST_SQLITE_FIXTURE_H
#define TM_TEST_SQLITE_FIXTURE_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

typedef struct sq_fx {
    char dir[64];
    char db[128];
    pid_t writer;
    char stats[160]; /* the writer's max commit latency, written at exit */
} sq_fx;

static inline int64_t sq_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int sq_exec(sqlite3 *c, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
    }
    return rc;
}

static inline int64_t sq_int(sqlite3 *c, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(c, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

/* A fresh directory and database in WAL mode with rows rows of blob bytes. */
static inline int sq_fx_new(sq_fx *f, int rows, int blob)
{
    memset(f, 0, sizeof(*f));
    strcpy(f->dir, "/tmp/tm-sqlite-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        return -1;
    }
    snprintf(f->db, sizeof(f->db), "%s/app.db", f->dir);
    snprintf(f->stats, sizeof(f->stats), "%s/writer.stats", f->dir);
    sqlite3 *c = NULL;
    if (sqlite3_open(f->db, &c) != SQLITE_OK) {
        return -1;
    }
    int rc = sq_exec(c, "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, ms "
                        "INTEGER, v BLOB); CREATE TABLE c(n INTEGER); INSERT INTO c VALUES(0)");
    char sql[256];
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM r WHERE i<%d) "
             "INSERT INTO t SELECT i, 0, randomblob(%d) FROM r; UPDATE c SET n=%d",
             rows, blob, rows);
    rc = rc != SQLITE_OK ? rc : sq_exec(c, sql);
    sqlite3_close(c);
    return rc == SQLITE_OK ? 0 : -1;
}

static inline void sq_fx_free(sq_fx *f)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cleanup of %s failed\n", f->dir);
    }
}

static volatile sig_atomic_t sq_stop;
static void sq_on_term(int sig)
{
    (void)sig;
    sq_stop = 1;
}

/* Start the writer: one transaction every pause_us (0 = back to back),
 * application-style (its own automatic checkpoints unless autockpt is 0). */
static inline int sq_writer_start(sq_fx *f, int pause_us, int autockpt)
{
    f->writer = fork();
    if (f->writer != 0) {
        return f->writer > 0 ? 0 : -1;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) {
        _exit(4); /* the test is already gone */
    }
    signal(SIGTERM, sq_on_term);
    sqlite3 *c = NULL;
    if (sqlite3_open(f->db, &c) != SQLITE_OK) {
        _exit(2);
    }
    sqlite3_busy_timeout(c, 10000);
    char sql[160];
    snprintf(sql, sizeof(sql), "PRAGMA wal_autocheckpoint=%d", autockpt);
    sq_exec(c, sql);
    int64_t id = sq_int(c, "SELECT max(id) FROM t") + 1, worst = 0, n = 0;
    while (!sq_stop) {
        int64_t t0 = sq_now_ms();
        snprintf(sql, sizeof(sql),
                 "BEGIN IMMEDIATE; INSERT INTO t VALUES(%lld, %lld, randomblob(100)); "
                 "UPDATE c SET n=n+1; COMMIT",
                 (long long)id, (long long)t0);
        if (sq_exec(c, sql) != SQLITE_OK) {
            sq_exec(c, "ROLLBACK");
            _exit(3);
        }
        int64_t dt = sq_now_ms() - t0;
        worst = dt > worst ? dt : worst;
        id++;
        n++;
        if (pause_us > 0) {
            usleep((useconds_t)pause_us);
        }
    }
    sqlite3_close(c);
    FILE *fp = fopen(f->stats, "w");
    if (fp != NULL) {
        fprintf(fp, "%lld %lld\n", (long long)worst, (long long)n);
        fclose(fp);
    }
    _exit(0);
}

/* Stop the writer; its worst commit latency (ms) and commits. 0 = it ran fine. */
static inline int sq_writer_stop(sq_fx *f, int64_t *worst_ms, int64_t *commits)
{
    int st = 0;
    kill(f->writer, SIGTERM);
    if (waitpid(f->writer, &st, 0) != f->writer || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        return -1;
    }
    FILE *fp = fopen(f->stats, "r");
    long long w = -1, n = -1;
    if (fp == NULL || fscanf(fp, "%lld %lld", &w, &n) != 2) {
        if (fp != NULL) {
            fclose(fp);
        }
        return -1;
    }
    fclose(fp);
    *worst_ms = w;
    *commits = n;
    return 0;
}

#endif
