/*
 * redis.h - the Redis engine's pieces as the rest of the engine sees them:
 * the snapshot backup (engine.c), the restore (restore.c), the drill
 * (drill.c) and the server they start on restored files.
 */
#ifndef TM_REDIS_ENGINE_H
#define TM_REDIS_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "agent/engine.h"
#include "agent/engines/redis/config.h"
#include "agent/engines/redis/conn.h"
#include "common/config.h"
#include "common/err.h"

/* The one object of a snapshot backup. */
#define TM_REDIS_RDB_OBJECT "dump.rdb"
/* A restore to a time: the AOF directory and file name it writes. */
#define TM_REDIS_AOF_DIR "appendonlydir"
#define TM_REDIS_AOF_NAME "appendonly.aof"
/* Databases whose key counts a backup records (Redis's default is 16). */
#define TM_REDIS_MAX_DBS 64

typedef struct tm_redis_keyspace {
    size_t n;
    struct {
        uint64_t db, keys, expires;
    } db[TM_REDIS_MAX_DBS];
} tm_redis_keyspace;

/* "db0=10:2,db3=5:0" <-> the per-database key and expire counts. */
void tm_redis_keyspace_fmt(const tm_redis_keyspace *k, char *out, size_t cap);
int tm_redis_keyspace_parse(const char *s, tm_redis_keyspace *k);

/* write() all of buf to fd (EINTR retried); what names it in messages. */
int tm_redis_write_all(int fd, const void *buf, size_t len, const char *what, tm_err *err);

/* Connection options for target t (its strings stay owned by t). */
void tm_redis_conn_opts_for(const tm_redis_target_conf *rc, tm_redis_conn_opts *o);

/* ---- restore.c ---- */

typedef struct tm_redis_restore_opts {
    const char *target;
    const char *dir;        /* where dump.rdb goes */
    const char *backup_id;  /* NULL = the newest snapshot */
    const char *time;       /* "YYYY-MM-DD HH:MM:SS+00"; needs shipped AOF */
    int start;              /* start redis-server on the restored files */
    uint32_t port;          /* for start; 0 = 6379 */
    const char *server_bin; /* NULL = "redis-server" from PATH */
    tm_task_ctx *ctx;       /* progress and cancellation; may be NULL */
} tm_redis_restore_opts;

typedef struct tm_redis_restore_report {
    char backup_id[96];
    uint64_t bytes;
    int rdb_version;
    int64_t snapshot_time;      /* unix seconds: when the snapshot was taken */
    tm_redis_keyspace recorded; /* as the backup recorded it */
    tm_redis_keyspace checked;  /* as the restored RDB holds it */
    double files_s, start_s, total_s;
    pid_t pid; /* the started server (start) */
} tm_redis_restore_report;

int tm_redis_restore(const tm_agent_conf *conf, const tm_redis_restore_opts *o,
                     tm_redis_restore_report *rep, tm_err *err);

/* "YYYY-MM-DD HH:MM:SS+00" (or Z) to unix seconds. */
int tm_redis_time_parse(const char *s, int64_t *out);

/* Stop a server tm_redis_restore started in dir (SHUTDOWN NOSAVE, then the
 * pid file's process by signal). */
int tm_redis_server_stop(const char *dir, uint32_t port, tm_err *err);

/* ---- ship.c ---- */

/* A shipped AOF object's name: "<chain>/<k><seq>-<start>-<first_ts>-<last_ts>"
 * (ship.c says why). */
typedef struct tm_redis_log_name {
    uint64_t chain; /* the seq of the base the data builds on */
    int base;       /* 1: a base file (whole), 0: incr data */
    char kind;      /* 'r' RDB base, 'a' AOF base, 'i' incr */
    int64_t seq;
    uint64_t start; /* byte offset in that file */
    int64_t first_ts, last_ts;
} tm_redis_log_name;

int tm_redis_log_name_parse(const char *rel, tm_redis_log_name *out);
/* The kind letter of a gap marker object (<chain>/0g<seq>-...): that chain
 * starts after a hole in the shipped AOF. */
#define TM_REDIS_GAP_KIND "g"
/* 1 (and *chain) when rel is a gap marker. */
int tm_redis_log_is_gap(const char *rel, uint64_t *chain);
/* A log position as the coordinator sees it: rel with ':' for '/'. */
void tm_redis_log_pos(const char *rel, char *out, size_t cap);

/* ---- aof_expire.c ---- */

/* The snapshot manifest's engine_info key: the shipped AOF position
 * ("<chain>:<name>") when the snapshot was taken. */
#define TM_REDIS_AOF_POSITION_INFO "aof_position"
/* engine.h's log_before: 1 when the shipped AOF object rel belongs to a
 * chain older than the one the cutoff snapshot was taken in. */
int tm_redis_log_before(const Tidemark__Manifest *cutoff, const Tidemark__ExpireSpec *spec,
                        const char *rel);
int tm_redis_ship(tm_ship_ctx *ctx, const tm_target_conf *t, tm_err *err);
int tm_redis_log_ranges(const tm_target_conf *t, const tm_log_item *items, size_t n,
                        tm_log_range **out, size_t *nout, tm_err *err);

/* ---- restore_cli.c ---- */

int tm_redis_restore_cli(const tm_agent_conf *conf, int argc, char **argv);
extern const char tm_redis_restore_usage[];

/* ---- drill.c ---- */

int tm_redis_drill(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                   tm_err *err);

#endif
