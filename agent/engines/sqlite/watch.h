/*
 * watch.h - the commit observer of one SQLite database: when each commit
 * became visible, to the millisecond, so that a restore to a time T holds
 * exactly the commits made at or before T (the shipper reads commits only
 * once per ship_interval).
 *
 * A thread per shipper reads the wal-index header at the start of the
 * "-shm" file (two copies of 48 bytes, https://sqlite.org/walformat.html)
 * with pread, never through SQLite and without any of its locks. A writer
 * rewrites that header after its commit frame is in the WAL (and synced,
 * with synchronous=FULL): it names the WAL's salts, the last commit frame
 * (mxFrame) and that frame's checksum. So each header the observer sees for
 * the first time records (salts, frame, checksum, time seen): the commit at
 * that frame, and every commit before it in the same WAL, was committed by
 * then. A header read while it is being rewritten (the two copies differ,
 * or its checksum fails) is skipped.
 *
 * It wakes when the WAL file is written (inotify on its directory) and then
 * reads the header for hot_ms (it changes only after the WAL sync): every
 * millisecond at first, then every tenth of the time since the write, so
 * the time seen stays within ~10% of a slow sync's and few wakeups are
 * spent; idle, every idle_ms (a safety net); without inotify, every
 * poll_ms. The
 * "-shm" file may be missing, replaced or truncated (a WAL restart, the
 * database replaced, the last connection closed): it is opened again when
 * its inode changes, and a short read is no observation. Memory is bounded:
 * the newest TM_SQLITE_WATCH_CAP observations are kept.
 *
 * The shipper then times the commits it read (tm_sqlite_watch_stamp): a
 * commit gets the earliest time at which an observation matched it or a
 * later commit of the same WAL byte for byte (salts, frame number, both
 * checksums, which chain over every frame before), and never later than
 * the tick that read it; a commit nothing matched (the observer was late,
 * not running, or saw another WAL that reused the frame numbers) keeps the
 * tick's time, as before. Every time is at or after the commit: a restore
 * to T never holds a commit made after T.
 */
#ifndef TM_SQLITE_WATCH_H
#define TM_SQLITE_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define TM_SQLITE_WATCH_CAP 4096

typedef struct tm_sqlite_seen {
    uint32_t salt1, salt2;   /* of the WAL (as in its header) */
    uint32_t frame;          /* the last commit frame then (1-based) */
    uint32_t cksum1, cksum2; /* that frame's checksum */
    int64_t time_ms;         /* wall clock when first seen */
} tm_sqlite_seen;

typedef struct tm_sqlite_watch_opts {
    uint32_t poll_ms; /* the poll without inotify; 0 = 20 */
    uint32_t idle_ms; /* the poll with inotify, when the WAL is not written; 0 = 250 */
    uint32_t hot_ms;  /* after a write to the WAL, read often for this long; 0 = 250 */
    int no_thread;    /* tests: observations only through tm_sqlite_watch_note */
} tm_sqlite_watch_opts;

typedef struct tm_sqlite_watch tm_sqlite_watch;

/* Observe database file db (its "-wal" and "-shm" need not exist yet). o
 * may be NULL. */
int tm_sqlite_watch_new(const char *db, const tm_sqlite_watch_opts *o, tm_sqlite_watch **out,
                        tm_err *err);
/* Stops and joins the thread. */
void tm_sqlite_watch_free(tm_sqlite_watch *w);

/* Record an observation (the thread does; tests inject their own). */
void tm_sqlite_watch_note(tm_sqlite_watch *w, const tm_sqlite_seen *seen);
/* Read the "-shm" header once now: 1 when it showed a commit not seen
 * before (recorded), 0 otherwise. */
int tm_sqlite_watch_look(tm_sqlite_watch *w);
/* Observations recorded so far (including those dropped for the bound). */
uint64_t tm_sqlite_watch_count(tm_sqlite_watch *w);

/* One commit read by the shipper. */
typedef struct tm_sqlite_watch_commit {
    uint64_t frame;          /* its number in its WAL file */
    uint32_t cksum1, cksum2; /* from its frame header */
    int64_t time_ms;         /* out */
} tm_sqlite_watch_commit;

/* Time the n commits c (increasing frames) of the WAL with salts salt1,
 * salt2 as above, none later than now_ms. w may be NULL (all get now_ms).
 * Returns how many an observation of their own frame timed before now_ms. */
uint32_t tm_sqlite_watch_stamp(tm_sqlite_watch *w, uint32_t salt1, uint32_t salt2,
                               tm_sqlite_watch_commit *c, uint32_t n, int64_t now_ms);

#endif
