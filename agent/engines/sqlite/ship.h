/*
 * ship.h - the continuous WAL shipper of one SQLite database, as a tick
 * the engine's ship hook calls every interval (and tests drive directly).
 *
 * Continuity rests on what SQLite's WAL locks guarantee to a reader:
 *   - a read transaction whose snapshot uses WAL frames (read mark m >= 1)
 *     stops checkpoints from copying frames after m and stops any restart
 *     of the WAL, so no frame after m is ever overwritten;
 *   - one on an entirely checkpointed WAL (read mark 0) stops every
 *     checkpoint from copying anything, so at most one restart can happen,
 *     and only of a WAL whose frames were all checkpointed when it began.
 * So each tick, holding the write lock briefly (BEGIN IMMEDIATE: the
 * application's writers wait, typically a few ms), the shipper reads the
 * frames committed since its position, writes them as one segment to a
 * local spool (fsync) and saves its position, then (re)takes its read
 * transaction at exactly that position, and lets the writers go. Uploads
 * run after, from the spool, outside the lock. Whatever happens to the WAL
 * until the next tick, the frames not yet shipped are still in it, or the
 * WAL was restarted exactly once right at the shipped position (seen as
 * salt-1 + 1 and checkpoint sequence + 1): the same generation goes on in
 * the new WAL.
 *
 * Anything else (the agent was not holding its reader: restarted after a
 * kill while the WAL was restarted; a different salt; the database file
 * replaced: another inode; a TRUNCATE that found frames it had not
 * shipped) starts a new generation with a fresh snapshot, taken under the
 * read transaction at the new generation's first position: never a silent
 * gap. A SIGKILLed agent resumes from its saved position when the WAL was
 * not restarted meanwhile (the spool is uploaded first).
 *
 * Checkpoints: the application's own (automatic or not) are harmless. The
 * shipper runs a PASSIVE checkpoint outside the lock once the WAL holds
 * ckpt_frames, and a short one under the lock so that the next write can
 * restart the WAL; TRUNCATE only when the WAL file exceeds truncate_bytes.
 * Commit times are the wall clock of the tick that saw them (a restore to
 * T is exact up to the interval).
 */
#ifndef TM_SQLITE_SHIP_H
#define TM_SQLITE_SHIP_H

#include <stdint.h>

#include "agent/engine.h"
#include "common/err.h"

typedef struct tm_sqlite_sink {
    /* Store the file open on fd under rel, durably (tm_ship_store). */
    int (*store)(void *arg, const char *rel, int fd, tm_err *err);
    /* A range is stored (tm_ship_report). Optional. */
    void (*report)(void *arg, const tm_log_range *r);
    void *arg;
} tm_sqlite_sink;

typedef struct tm_sqlite_ship_opts {
    const char *db;          /* the database file */
    const char *state_dir;   /* position and spool (tm_ship_state_dir) */
    int busy_ms;             /* lock waits; 0 = 5000 */
    int set_wal;             /* switch a non-WAL database to WAL */
    uint32_t ckpt_frames;    /* PASSIVE checkpoint past this many frames; 0 = 1000 */
    uint64_t truncate_bytes; /* TRUNCATE past this WAL size; 0 = 64 MiB */
    int snap_pages;          /* snapshot pacing (snapshot.h) */
    uint32_t snap_sleep_ms;
} tm_sqlite_ship_opts;

typedef struct tm_sqlite_tick {
    int new_generation;       /* a generation started (and its snapshot stored) */
    char why[TM_ERR_MSG_MAX]; /* why a new generation */
    uint32_t generation;
    uint32_t commits, frames; /* shipped by this tick */
    uint64_t bytes;
    int wal_restarted; /* the WAL restarted and the generation went on */
    int checkpointed;  /* the shipper ran a checkpoint */
} tm_sqlite_tick;

typedef struct tm_sqlite_ship tm_sqlite_ship;

int tm_sqlite_ship_new(const tm_sqlite_ship_opts *o, const tm_sqlite_sink *sink,
                       tm_sqlite_ship **out, tm_err *err);
/* Releases the read transaction (checkpoints may then pass it). */
void tm_sqlite_ship_free(tm_sqlite_ship *s);
/* One round: ship what is committed, checkpoint when due, upload. */
int tm_sqlite_ship_tick(tm_sqlite_ship *s, tm_sqlite_tick *info, tm_err *err);
/* The current generation and position ("<wal %08x>.<frame %016llx>"). */
uint32_t tm_sqlite_ship_generation(const tm_sqlite_ship *s);

#endif
