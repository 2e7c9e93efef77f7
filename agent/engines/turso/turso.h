/*
 * turso.h - the Turso Cloud engine's pieces as the rest of the engine sees
 * them: the off-provider copy (engine.c), its restore to a local SQLite file
 * or into a new Turso database (restore.c, restore_cli.c), the drill through
 * the provider's point-in-time recovery (drill.c) and the provider's window
 * for status (status.c).
 *
 * A target is one database, or a group: a group target is one target in
 * the catalog, and each of its backups holds one object per database the
 * group had when the backup ran (`<database>.sql`), so a database added to
 * the group is in the next backup without a config change.
 */
#ifndef TM_TURSO_ENGINE_H
#define TM_TURSO_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engine.h"
#include "agent/engines/turso/api.h"
#include "agent/engines/turso/config.h"
#include "common/config.h"
#include "common/err.h"

/* A backup's object for database NAME: NAME TM_TURSO_DUMP_EXT. */
#define TM_TURSO_DUMP_EXT ".sql"
/* Manifest engine_info: the databases of the backup, comma-separated. */
#define TM_TURSO_INFO_DATABASES "databases"

/* The HTTP client for target tc (its timeout and retries). */
int tm_turso_http_for(const tm_turso_target_conf *tc, tm_task_ctx *ctx, tm_turso_http **out,
                      tm_err *err);

/* Feed SQL text of a dump; fn gets each complete statement (NUL-ended). */
typedef struct tm_turso_splitter tm_turso_splitter;
int tm_turso_splitter_new(int (*fn)(void *arg, const char *stmt, tm_err *err), void *arg,
                          tm_turso_splitter **out, tm_err *err);
int tm_turso_splitter_feed(tm_turso_splitter *s, const void *buf, size_t len, tm_err *err);
/* The end of the text: TM_ECORRUPT when an unfinished statement remains. */
int tm_turso_splitter_finish(tm_turso_splitter *s, tm_err *err);
void tm_turso_splitter_free(tm_turso_splitter *s);

/* ---- restore.c ---- */

typedef struct tm_turso_restore_opts {
    const char *target;
    const char *backup_id;          /* NULL = the newest (or newest at or before time) */
    const char *time;               /* "YYYY-MM-DD HH:MM:SS+00": newest backup finished by then */
    const char *database;           /* which database of the backup; NULL = the only one */
    const char *output;             /* a local SQLite file (absolute), or NULL */
    const char *dir;                /* or: every database into DIR/<database>.db */
    const char *to_turso;           /* a new Turso database of this name, or NULL */
    const char *group;              /* its group (to_turso); NULL = the source's */
    const tm_turso_target_conf *tc; /* for to_turso */
    tm_task_ctx *ctx;
} tm_turso_restore_opts;

typedef struct tm_turso_restore_report {
    char backup_id[96];
    char database[TM_TURSO_NAME_MAX];
    uint64_t bytes;      /* SQL bytes read */
    uint64_t statements; /* executed */
    uint64_t tables, rows;
    int64_t backup_time; /* unix seconds: when the dump ended */
    double total_s;
} tm_turso_restore_report;

int tm_turso_restore(const tm_agent_conf *conf, const tm_turso_restore_opts *o,
                     tm_turso_restore_report *rep, tm_err *err);
int tm_turso_time_parse(const char *s, int64_t *out);

int tm_turso_restore_cli(const tm_agent_conf *conf, int argc, char **argv);
extern const char tm_turso_restore_usage[];

/* ---- drill.c ---- */

int tm_turso_drill(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                   tm_err *err);

/* ---- status.c ---- */

void tm_turso_provider_window(const tm_target_conf *t, tm_provider_window *w);

#endif
