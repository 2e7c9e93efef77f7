/*
 * wal_spool.h - the agent's local WAL state for one target, under
 * <state_dir>/wal/<target>/ (mode 0700, owned by the user PostgreSQL runs
 * archive_command as):
 *
 *   done/<file>      "<xxh3-128> <size>": that exact content is durable in the
 *                    repositories (written only after tm_log_push succeeded);
 *                    wal-push of a file whose content matches returns at once
 *   lock/<file>      flock()ed while one process pushes <file>, so the async
 *                    archiver and PostgreSQL's own wal-push never upload the
 *                    same file at once (the second waits, then sees done/)
 *   prefetch/<file>  segments fetched and fully verified ahead of recovery
 *   prefetch.lock    one prefetcher at a time
 *   archiver.json    the async archiver's status: queue depth, lag, counters
 *
 * Nothing here is ever the only copy of anything: done/ records what the
 * repositories hold, prefetch/ what they hold and recovery will ask for.
 */
#ifndef TM_PG_WAL_SPOOL_H
#define TM_PG_WAL_SPOOL_H

#include <stdint.h>

#include "common/err.h"

typedef struct tm_wal_spool tm_wal_spool;

/* Create (mkdir -p, 0700) and open the spool of target under state_dir. */
int tm_wal_spool_open(tm_wal_spool **out, const char *state_dir, const char *target, tm_err *err);
void tm_wal_spool_free(tm_wal_spool *sp);
const char *tm_wal_spool_dir(const tm_wal_spool *sp);
/* "<dir>/<sub>/<name>" (sub may be NULL); malloc'd. */
char *tm_wal_spool_path(const tm_wal_spool *sp, const char *sub, const char *name);

/* Exclusive per-file lock (blocking). Returns an fd to pass to unlock. */
int tm_wal_spool_lock(tm_wal_spool *sp, const char *name, int *fd, tm_err *err);
void tm_wal_spool_unlock(tm_wal_spool *sp, const char *name, int fd);

/* Record that content (xxh3, size) of name is durable in the repositories. */
int tm_wal_spool_done_set(tm_wal_spool *sp, const char *name, const char *xxh3, uint64_t size,
                          tm_err *err);
/* 1 when done/<name> records exactly (xxh3, size); 0 otherwise. */
int tm_wal_spool_done_match(tm_wal_spool *sp, const char *name, const char *xxh3, uint64_t size);
/* 1 when done/<name> exists at all. */
int tm_wal_spool_done_exists(tm_wal_spool *sp, const char *name);

#endif
