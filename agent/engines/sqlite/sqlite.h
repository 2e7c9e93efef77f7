/*
 * sqlite.h - the SQLite engine's task pieces as the rest of the engine sees
 * them: the snapshot backup (snapshot.c), the restore (restore.c,
 * restore_cli.c), the drill (drill.c) and the live-database check
 * (in_use.c). The WAL side (wal, segment, ship, log, replay) has its own
 * headers.
 */
#ifndef TM_SQLITE_ENGINE_H
#define TM_SQLITE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engine.h"
#include "agent/engines/sqlite/config.h"
#include "agent/repo/repository.h"
#include "common/config.h"
#include "common/err.h"

/* The one object of a snapshot backup: the database file. */
#define TM_SQLITE_DB_OBJECT "database.sqlite"

/* The database file of target t: its sqlite.path. A target without one, or
 * a glob pattern itself (its matches are the targets), is TM_ECONFIG saying
 * so. */
int tm_sqlite_target_file(const tm_target_conf *t, char *out, size_t cap, tm_err *err);

/* ---- snapshot.c ---- */

int tm_sqlite_backup(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                     tm_err *err);

/* ---- restore.c ---- */

typedef struct tm_sqlite_restore_opts {
    const char *target;
    const char *output;    /* the database file to create: absolute */
    const char *backup_id; /* NULL = the newest snapshot taken at or before until_ms */
    int64_t until_ms;      /* unix ms; 0 = the latest */
    int force;             /* replace an existing (even live) output file */
    tm_task_ctx *ctx;      /* progress and cancellation; may be NULL */
} tm_sqlite_restore_opts;

typedef struct tm_sqlite_restore_report {
    char output[4096];
    char backup_id[96];
    char source[32];      /* "snapshot", "snapshot+log", "chain base+log" */
    uint32_t chain;       /* the log chain replayed (0 = none) */
    int64_t snapshot_ms;  /* when the snapshot's read transaction began (its stop_ms) */
    int64_t recovered_ms; /* time of the newest commit the file holds (0 = unknown) */
    uint64_t bytes;       /* database bytes restored */
    uint64_t frames;      /* WAL frames replayed */
    uint32_t objects;     /* log objects read */
    char integrity[256];  /* what PRAGMA integrity_check said */
    double files_s, replay_s, check_s, total_s;
} tm_sqlite_restore_report;

int tm_sqlite_restore(const tm_agent_conf *conf, const tm_sqlite_restore_opts *o,
                      tm_sqlite_restore_report *rep, tm_err *err);
int tm_sqlite_restore_task(tm_task_ctx *ctx, const Tidemark__Task *task,
                           Tidemark__TaskResult *result, tm_err *err);
/* Open snapshot id of target, or (id NULL) the newest SQLite snapshot whose
 * read transaction began at or before until_ms (0 = the newest). */
int tm_sqlite_open_snapshot(tm_repo_set *rs, const char *target, const char *id, int64_t until_ms,
                            tm_backup_reader **out, tm_err *err);
/* PRAGMA integrity_check of db (opened immutable: nothing created beside
 * it); detail gets what it said. TM_ECORRUPT unless "ok". */
int tm_sqlite_integrity(const char *db, char *detail, size_t cap, tm_err *err);
/* "YYYY-MM-DD HH:MM:SS[.mmm]+00" (or Z, +00:00, or a T between) <-> unix ms. */
int tm_sqlite_time_parse(const char *s, int64_t *ms);
void tm_sqlite_time_fmt(int64_t ms, char *out, size_t cap);

/* ---- plan.c ---- */

/* Every log object name of target stored whole in some repository (the
 * union of their listings), sorted, each once. Free with
 * tm_sqlite_names_free. _in: in an open repository set. */
int tm_sqlite_log_names_in(tm_repo_set *rs, const char *target, char ***out, size_t *n,
                           tm_err *err);
int tm_sqlite_log_names(const tm_agent_conf *conf, const char *target, char ***out, size_t *n,
                        tm_err *err);
void tm_sqlite_names_free(char **names, size_t n);

typedef struct tm_sqlite_plan {
    int from_snapshot;         /* 1: the snapshot backup; 0: the chain's own base */
    uint32_t chain;            /* the chain replayed; 0 = none */
    char from[TM_LOG_POS_MAX]; /* replay from here ("" = the base's position) */
    int exact;                 /* from is the snapshot's own point */
    int64_t snap_stop_ms;      /* the snapshot's stop_ms */
    uint32_t fallback_chain;   /* the newest chain begun by then (its base); 0 = none */
    int64_t base_ms;           /* that base's time */
} tm_sqlite_plan;

/* The plan for a restore to until_ms (0 = the latest) from the log names
 * and snap, the newest snapshot at or before it (NULL = none). */
void tm_sqlite_plan_make(char *const *names, size_t n, const Tidemark__Manifest *snap,
                         int64_t until_ms, tm_sqlite_plan *p);

/* 1 when a replay from the plan's start that applied frames, the last
 * commit stamped last_ms, gives a consistent file (plan.c says why); 0:
 * start again from the fallback chain's base. */
int tm_sqlite_plan_passed(const tm_sqlite_plan *p, uint64_t frames, int64_t last_ms);

/* ---- restore_cli.c ---- */

int tm_sqlite_restore_cli(const tm_agent_conf *conf, int argc, char **argv);
extern const char tm_sqlite_restore_usage[];

/* ---- drill.c ---- */

int tm_sqlite_drill(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                    tm_err *err);

/* ---- discover.c ---- */

/* The engine's expand hook: a glob path -> one target per database file. */
int tm_sqlite_expand(const tm_target_conf *t, tm_target_conf **out, size_t *n, tm_err *err);
/* "<target>-<the part of path the pattern matched, without extension>",
 * as a target name (discover.c says how). */
void tm_sqlite_discovered_name(const char *target, const char *pattern, const char *path, char *out,
                               size_t cap);

/* ---- in_use.c ---- */

/* The engine's in_use hook: 1 (why filled) when a process has a SQLite
 * database file (or its -wal, -shm, -journal) open in dir or beneath it. */
int tm_sqlite_in_use(const char *dir, char *why, size_t cap);
/* 1 (why filled) when a process has database file db, or its -wal, -shm or
 * -journal, open. */
int tm_sqlite_file_live(const char *db, char *why, size_t cap);

#endif
