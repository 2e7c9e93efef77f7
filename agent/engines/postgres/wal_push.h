/*
 * wal_push.h - push one WAL file (segment, .history, .partial, .backup) to
 * every repository, as archive_command and the async archiver do. One
 * pusher per thread (the repository set is not thread-safe).
 *
 * The rule both modes keep: success is returned only when the file's exact
 * content is durable in the repositories (every one, or `quorum`); the
 * local done/ marker (wal_spool.h) is written after that, never before, so
 * a fast "already archived" answer is never about a copy that is only local.
 */
#ifndef TM_PG_WAL_PUSH_H
#define TM_PG_WAL_PUSH_H

#include <stddef.h>

#include "agent/engines/postgres/wal_spool.h"
#include "common/config.h"

typedef struct tm_wal_pusher tm_wal_pusher;

/* conf and sp must outlive the pusher. The repository set is opened on the
 * first push that needs it (a spool hit needs none). */
int tm_wal_pusher_new(tm_wal_pusher **out, const tm_agent_conf *conf, tm_wal_spool *sp,
                      const char *target, size_t quorum, tm_err *err);
void tm_wal_pusher_free(tm_wal_pusher *p);

/* Push the file at path (its base name is the WAL file name). use_spool: a
 * done/ marker with the same content answers at once. *already (may be
 * NULL) = 1 when nothing had to be uploaded. Errors: TM_EINVAL (not a WAL
 * file name), TM_EEXIST (different content already archived under that
 * name), TM_ENOENT (no such file), TM_EIO and others (not durable: retry). */
int tm_wal_pusher_push(tm_wal_pusher *p, const char *path, int use_spool, int *already,
                       tm_err *err);

#endif
