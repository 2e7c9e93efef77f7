/*
 * snapshot.h - a consistent copy of a live SQLite database into a file.
 *
 * The online backup API, run inside a read transaction that the source
 * connection holds from the first step to the last. Why this and not the
 * plain stepwise backup: sqlite3_backup_step restarts from page 1 whenever
 * another connection (the application) commits between two steps, so on a
 * database written every few milliseconds a paced backup of a large file
 * never finishes; a single backup_step(-1) finishes but cannot be paced.
 * With the read transaction held, every step reads the same snapshot, so
 * the copy can go a few pages at a time with sleeps in between (modest I/O
 * and CPU), and it is never torn. In WAL mode a reader never blocks a
 * writer: the application keeps committing (into the WAL) all along; only
 * checkpoints cannot move past the snapshot while it is copied.
 *
 * The copy is written to a temporary file beside dest and renamed to dest
 * once complete and synced; the caller streams it (tm_ship_store, or the
 * backup pipeline) and removes it.
 */
#ifndef TM_SQLITE_SNAPSHOT_H
#define TM_SQLITE_SNAPSHOT_H

#include <stdint.h>
#include <sqlite3.h>

#include "common/err.h"

typedef struct tm_sqlite_snap_opts {
    int pages_per_step; /* 0 = 256 */
    uint32_t sleep_ms;  /* between steps; 0 = none */
    /* Optional: 1 = stop now (the snapshot fails, nothing left behind). */
    int (*cancelled)(void *arg);
    void *arg;
} tm_sqlite_snap_opts;

typedef struct tm_sqlite_snap_info {
    uint32_t page_size;
    uint64_t pages;
    uint64_t bytes;
    uint32_t steps;
} tm_sqlite_snap_info;

/* Copy the database of connection src ("main") into dest. When src has no
 * transaction open, one read transaction is opened for the copy and ended
 * after; when it has one, the copy is of that transaction's snapshot (the
 * shipper ties a snapshot to a WAL position that way) and it stays open. */
int tm_sqlite_snapshot(sqlite3 *src, const char *dest, const tm_sqlite_snap_opts *o,
                       tm_sqlite_snap_info *info, tm_err *err);

#endif
