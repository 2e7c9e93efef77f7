/*
 * restore.h - restore a SQLite database to a time from its shipped log:
 * the snapshot of the generation in effect at that time, then the WAL
 * segments' transactions in order, each applied (its pages written into
 * the file, the file cut to the commit's size) only when its commit time
 * is at or before the target. The work is done on a scratch file in the
 * destination directory (through agent/restore_root.h), checked with
 * PRAGMA integrity_check, then renamed into place atomically. An existing
 * file is never replaced without force; with force, its stale -wal and
 * -shm are removed first (SQLite would replay an old WAL onto the
 * restored file).
 *
 * A hole in the chosen generation (a segment that does not continue the
 * previous one) fails the restore, naming it: a restore never silently
 * skips history.
 */
#ifndef TM_SQLITE_RESTORE_H
#define TM_SQLITE_RESTORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Where the log objects come from (the log store, or a directory in tests). */
typedef struct tm_sqlite_source {
    /* Every object name of the target (any order); malloc'd array of
     * malloc'd strings. */
    int (*list)(void *arg, char ***names, size_t *n, tm_err *err);
    /* Write object rel into fd (at its current offset). */
    int (*fetch)(void *arg, const char *rel, int fd, tm_err *err);
    void *arg;
} tm_sqlite_source;

typedef struct tm_sqlite_restore_opts {
    const char *dir;     /* destination directory (created if missing) */
    const char *name;    /* file name in it (one path component) */
    int64_t target_ms;   /* unix ms; INT64_MAX = the latest */
    int force;           /* replace an existing file */
    uint32_t generation; /* 0 = the newest whose snapshot is at or before the target */
} tm_sqlite_restore_opts;

typedef struct tm_sqlite_restore_info {
    uint32_t generation;
    int64_t snapshot_ms;    /* when the generation's snapshot was taken */
    int64_t last_commit_ms; /* the newest commit applied (snapshot_ms if none) */
    uint64_t commits, segments;
    uint64_t bytes; /* of the restored file */
} tm_sqlite_restore_info;

int tm_sqlite_restore(const tm_sqlite_source *src, const tm_sqlite_restore_opts *o,
                      tm_sqlite_restore_info *info, tm_err *err);

#endif
