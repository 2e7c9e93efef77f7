/*
 * copy.h - a consistent copy of a live SQLite database into a new file.
 *
 * The online backup API, run inside one read transaction that the source
 * connection holds from the first step to the last. Why not the plain
 * stepwise backup: sqlite3_backup_step restarts from page 1 whenever another
 * connection commits between two steps, so on a database written every few
 * milliseconds a paced copy of a large file never finishes, and a single
 * step(-1) cannot be paced. With the read transaction held every step reads
 * the same snapshot, so the copy goes a few pages at a time (bounded I/O,
 * no long lock) and is never torn. In WAL mode a reader never blocks a
 * writer: the application keeps committing into the WAL all along; only
 * checkpoints cannot copy past the snapshot while it is held (Litestream
 * #1332: a copy that holds the write lock stalls writers on large files).
 *
 * The copy is written back to disk as it goes, at most two 4 MiB chunks
 * dirty or in flight (tm_writeback): the final fsync has little left and
 * no backlog stalls the application's own fsyncs (its commits).
 *
 * The copy is written to "<dst>.tmp" (created 0600), synced, renamed to dst
 * (which must not exist) and the directory synced: dst appears complete or
 * not at all.
 */
#ifndef TM_SQLITE_COPY_H
#define TM_SQLITE_COPY_H

#include <sqlite3.h>
#include <stdint.h>

#include "common/err.h"

typedef struct tm_sqlite_copy_opts {
    int pages_per_step; /* 0 = 256 */
    uint32_t sleep_ms;  /* between steps; 0 = none */
    int busy_ms;        /* how long a step may wait for a lock in total; 0 = 5000 */
    /* Optional: 1 = stop now (the copy fails, nothing left behind). */
    int (*cancelled)(void *arg);
    void *arg;
} tm_sqlite_copy_opts;

typedef struct tm_sqlite_copy_info {
    uint32_t page_size;
    uint64_t pages;
    uint64_t bytes;
    uint32_t steps;
} tm_sqlite_copy_info;

/* Copy database file db (opened read-write without creating it; its journal
 * mode is left alone) into the new file dst. *bytes (may be NULL) gets the
 * copy's size. */
int tm_sqlite_copy(const char *db, const char *dst, uint64_t *bytes, tm_err *err);

/* The same from an open connection src ("main"): when src has no
 * transaction open, one read transaction is opened for the copy and ended
 * after; when it has one, the copy is of that transaction's snapshot and it
 * stays open (the shipper ties a base snapshot to a WAL position that way).
 * o and info may be NULL. */
int tm_sqlite_copy_conn(sqlite3 *src, const char *dst, const tm_sqlite_copy_opts *o,
                        tm_sqlite_copy_info *info, tm_err *err);

#endif
