/*
 * dump.h - the pg_dump engine's internal contract (managed PostgreSQL: a
 * server the agent reaches over the network only, RDS or Cloud SQL). Rooms:
 *
 *   config.c       the targets[].pg_dump: block
 *   tools.c        the client programs (found with pg_config, versions),
 *                  child processes with a private password file, libpq
 *                  sessions, connection strings, object names, times
 *   backup.c       pg_dumpall --globals-only + pg_dump -Fc per database,
 *                  each streamed through the pipeline into one backup
 *   restore.c      choose a backup (id, or newest at or before a time),
 *                  globals, then pg_restore -j into new databases
 *   restore_cli.c  `tidemark-agent restore` for such a target
 *   drill.c        restore drills into the staging server
 *   engine.c       the tm_engine glue
 *
 * A backup of a target (engine "pg_dump", kind snapshot) holds the objects
 * "globals.sql" and "db/<name>.dump" (one custom-format archive per
 * database; <name> escaped by tm_dump_obj_name), and in its manifest's
 * engine info the databases, the times the dumps began and ended, and the
 * server's and pg_dump's versions.
 */
#ifndef TM_ENGINES_PG_DUMP_DUMP_H
#define TM_ENGINES_PG_DUMP_DUMP_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/engine.h"
#include "agent/engines/pg_dump/config.h"
#include "common/err.h"

#define TM_DUMP_ENGINE "pg_dump"
#define TM_DUMP_GLOBALS "globals.sql"
#define TM_DUMP_MAX_DBS 256

/* ---- tools.c ---------------------------------------------------------- */

/* The client programs' directory: conf_bindir, else `pg_config --bindir`
 * (pg_config found on PATH); it must hold pg_dump. */
int tm_dump_bindir(const char *conf_bindir, char *out, size_t cap, tm_err *err);
/* The major version of <bindir>/<prog> (--version), e.g. 15. */
int tm_dump_tool_major(const char *bindir, const char *prog, int *major, tm_err *err);

/* A private scratch directory (0700) under base (NULL = $TMPDIR or /tmp),
 * holding the password file children read. */
typedef struct tm_dump_scratch {
    char dir[PATH_MAX];
    char passfile[PATH_MAX + 16]; /* "" = no password */
} tm_dump_scratch;
int tm_dump_scratch_new(const char *base, const char *password, tm_dump_scratch *s, tm_err *err);
/* Removes the directory and everything in it. */
void tm_dump_scratch_free(tm_dump_scratch *s);

/* A child program: argv[0] is run from bindir, stdin from /dev/null (or
 * in_fd), stdout into a pipe (*out_fd, with want_stdout) or /dev/null,
 * stderr kept for the message; PGPASSFILE = the scratch's password file,
 * plus extra_env ("NAME=value", NULL-ended; may be NULL). It
 * dies with the agent (PR_SET_PDEATHSIG). */
typedef struct tm_dump_child {
    pid_t pid;
    int out_fd; /* -1 without want_stdout */
    int err_fd; /* memfd holding stderr */
    int status; /* wait status, once tm_dump_kill reaped it (pid -1) */
} tm_dump_child;
int tm_dump_spawn(const char *bindir, char *const argv[], const tm_dump_scratch *s,
                  const char *const *extra_env, int want_stdout, tm_dump_child *c, tm_err *err);
/* Wait for it (closing out_fd). 0 when it exited 0; otherwise an error naming
 * prog and the last lines of its stderr. *errtext (errtext may be NULL):
 * all of its stderr, malloc'd. */
int tm_dump_wait(tm_dump_child *c, const char *prog, char **errtext, tm_err *err);
/* Its stderr so far (malloc'd, NUL-ended). */
char *tm_dump_child_stderr(const tm_dump_child *c);
/* Stop it: SIGTERM (pg_dump sends the server a cancel and exits), then
 * SIGKILL after 3 s (a program that does not answer). */
void tm_dump_kill(tm_dump_child *c);

/* A libpq connection string (malloc'd) for s and database db. */
int tm_dump_conninfo(const tm_dump_server *s, const char *db, char **out, tm_err *err);

/* A libpq session (opaque). Wrong credentials: TM_EAUTH naming host, port
 * and user; an unreachable server: TM_EUNAVAIL. */
typedef struct tm_dump_conn tm_dump_conn;
int tm_dump_connect(const tm_dump_server *s, const char *db, tm_dump_conn **out, tm_err *err);
void tm_dump_close(tm_dump_conn *c);
/* First column of every row, as a malloc'd array of malloc'd strings. */
int tm_dump_query_list(tm_dump_conn *c, const char *sql, int nparams, const char *const *params,
                       char ***out, size_t *n, tm_err *err);
void tm_dump_list_free(char **v, size_t n);
/* First column of the first row (malloc'd); TM_ENOENT for no row. */
int tm_dump_query_value(tm_dump_conn *c, const char *sql, int nparams, const char *const *params,
                        char **out, tm_err *err);
/* A statement without rows (CREATE/DROP DATABASE). */
int tm_dump_exec(tm_dump_conn *c, const char *sql, tm_err *err);
/* An identifier quoted for SQL (malloc'd). */
char *tm_dump_ident(tm_dump_conn *c, const char *name);

/* "db/<escaped>.dump": bytes outside [A-Za-z0-9_-] become %XX. */
void tm_dump_obj_name(const char *db, char *out, size_t cap);
/* The escaped name back (0, or TM_EINVAL). */
int tm_dump_unescape(const char *esc, char *out, size_t cap);
void tm_dump_escape(const char *db, char *out, size_t cap);

/* "YYYY-MM-DD HH:MM:SS" [+00 | +00:00 | Z | UTC] (also with T) -> unix s. */
int tm_dump_time_parse(const char *s, int64_t *out);

/* Append key = printf(fmt, ...) to r->extra (best effort: dropped when
 * out of memory). */
void tm_dump_result_extra(Tidemark__TaskResult *r, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- backup.c --------------------------------------------------------- */

int tm_dump_backup(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                   tm_err *err);

/* ---- restore.c -------------------------------------------------------- */

typedef struct tm_dump_restore_opts {
    const char *target;
    const char *backup_id;      /* NULL = newest (at or before time) */
    const char *time;           /* NULL = newest */
    const tm_dump_server *dest; /* the server to restore into */
    const char *into;           /* one database: its new name */
    const char *suffix;         /* else each database as <name><suffix>; NULL = "_restored" */
    uint32_t jobs;              /* pg_restore -j; 0 = 2 */
    const char *bindir;         /* NULL = discovered */
    const char *scratch;        /* where the temporary archive goes; NULL = $TMPDIR */
    int no_globals;             /* skip roles and tablespaces */
    tm_task_ctx *ctx;           /* progress + cancel when run as a task; may be NULL */
} tm_dump_restore_opts;

typedef struct tm_dump_restore_report {
    char backup_id[80];
    int64_t dump_start; /* unix s: when the dumps began (what the copy holds) */
    int64_t dump_stop;
    size_t n_dbs;
    char src[TM_DUMP_MAX_DBS][64];     /* source database names */
    char created[TM_DUMP_MAX_DBS][64]; /* the new databases, in order */
    uint64_t bytes;                    /* archive bytes fetched */
    uint32_t globals_failed;           /* statements of globals.sql that failed */
    uint32_t globals_existed;          /* ... of them because the role already existed */
    double fetch_s, globals_s, restore_s, total_s;
} tm_dump_restore_report;

int tm_dump_restore(const tm_agent_conf *conf, const tm_dump_restore_opts *o,
                    tm_dump_restore_report *rep, tm_err *err);
/* DROP DATABASE ... WITH (FORCE) of every database rep created. */
int tm_dump_restore_drop(const tm_dump_server *dest, const tm_dump_restore_report *rep,
                         tm_err *err);

/* ---- restore_cli.c / drill.c ------------------------------------------ */

int tm_dump_restore_cli(const tm_agent_conf *conf, int argc, char **argv);
extern const char tm_dump_restore_usage[];
int tm_dump_drill(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                  tm_err *err);
/* Credentials for restoring into host:port (engine.c): the pg_dump block
 * of this agent naming that server (staging first); else user postgres
 * without a password. Strings point into conf. */
void tm_dump_creds_for(const tm_agent_conf *conf, const char *host, uint32_t port,
                       tm_dump_server *out);
/* The pg_dump target named target on this agent, or NULL. */
const tm_dump_target_conf *tm_dump_conf_of(const tm_agent_conf *conf, const char *target);

#endif
