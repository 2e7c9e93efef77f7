/*
 * ship.h - the continuous WAL shipper of one SQLite database: a tick every
 * ship_interval, driven by the engine's ship hook (tests drive ticks
 * directly).
 *
 * Continuity rests on what SQLite's WAL locks guarantee to a reader:
 *   - a read transaction whose snapshot uses WAL frames (read mark m >= 1)
 *     stops checkpoints from copying frames after m and stops any restart
 *     of the WAL, so no frame after m is overwritten while it is held;
 *   - one on an entirely checkpointed WAL (read mark 0) stops every
 *     checkpoint from copying anything, so at most one restart can happen,
 *     and only of a WAL whose frames were all checkpointed when it began.
 * So each tick, holding the write lock briefly (BEGIN IMMEDIATE: the
 * application's writers wait a few ms, at most busy_timeout), the shipper
 * reads the frames committed since its position, writes them as one
 * segment to a local spool (fsync) and saves its position, then (re)takes
 * its read transaction at exactly that position and lets the writers go.
 * Uploads run after, from the spool, outside the lock; a repository that
 * is down only delays them (the spool keeps them, in order). Whatever
 * happens to the WAL until the next tick, the frames not yet shipped are
 * still in it, or the WAL was restarted exactly once right at the shipped
 * position (salt-1 + 1 and checkpoint sequence + 1): the chain goes on in
 * the new WAL.
 *
 * Anything else starts a new chain (a generation) whose first objects are
 * a base snapshot and its description, taken under the read transaction at
 * the chain's first position: never a silent gap. That is: the WAL was
 * restarted while no reader of ours held it (the agent was down, or the
 * shipper had to let go) and the saved position cannot be proven to be its
 * end; a salt or page size the shipper did not see coming; the database
 * file replaced (another inode or device); a TRUNCATE that found frames
 * not yet shipped; an unreadable saved position; a snapshot that did not
 * finish. A restarted agent (also after SIGKILL) goes on with the same
 * chain when the WAL is still the one it saved (same salts and checkpoint
 * sequence) and the frames after its position continue the checksum of the
 * last shipped frame; spooled objects beyond the saved position are
 * dropped (their frames are read again).
 *
 * Checkpoints: the application's own (automatic or not) are harmless. The
 * shipper runs a PASSIVE checkpoint outside the lock every
 * checkpoint_interval (or once the WAL holds ckpt_frames), then a short one
 * under the lock with its reader released, so that the next write restarts
 * the WAL at the shipped position; TRUNCATE only when the WAL file exceeds
 * wal_max_bytes, with busy_timeout as the bound of its wait.
 *
 * Commit times: a commit observer (watch.h, a thread, no SQLite lock) sees
 * each commit within milliseconds in the wal-index header; a commit the
 * tick reads gets the time its observation (or that of a later commit of
 * the same WAL) matched it byte for byte, never later than the tick, so a
 * restore to T holds exactly the commits made at or before T. A commit the
 * observer missed keeps the wall clock of the tick that read it (then a
 * restore to T is exact to the interval, never holding a later commit).
 */
#ifndef TM_SQLITE_SHIP_H
#define TM_SQLITE_SHIP_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engine.h"
#include "common/config.h"
#include "common/err.h"

/* ---- the engine hook and the contract with snapshots ---- */
int tm_sqlite_ship(tm_ship_ctx *ctx, const tm_target_conf *t, tm_err *err);
/* The newest position the shipper has durably saved for target (under
 * <state_dir>/ship/<target>: spooled on the host, uploaded within a tick),
 * chain = generation: a snapshot records it as its start position before
 * it opens its read transaction (replaying from there onto the snapshot is
 * correct: frames are page images, replay is idempotent). *chain = 0 and
 * pos = "" when nothing was shipped yet. */
int tm_sqlite_ship_position(const tm_agent_conf *conf, const char *target, uint32_t *chain,
                            char *pos, size_t cap, tm_err *err);

/* ---- the shipper itself ---- */
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
    uint32_t ckpt_ms;        /* PASSIVE checkpoint interval; 0 = 60000 */
    uint32_t ckpt_frames;    /* ... or once the WAL holds this many frames; 0 = 1000 */
    uint64_t truncate_bytes; /* TRUNCATE past this WAL size; 0 = 64 MiB */
    int snap_pages;          /* base snapshot pacing (copy.h) */
    int no_watch;            /* 1: no commit observer (watch.h): commits get the tick's time */
    uint32_t snap_sleep_ms;
    /* Optional: 1 = stop a base snapshot now (the agent is stopping; the
     * next run starts a new chain, the snapshot having not finished). */
    int (*cancelled)(void *arg);
    void *cancel_arg;
} tm_sqlite_ship_opts;

typedef struct tm_sqlite_tick {
    int new_generation;       /* a chain started (its snapshot is spooled) */
    int reset;                /* ... and it replaced a chain (not the first run) */
    char why[TM_ERR_MSG_MAX]; /* why a new chain */
    uint32_t chain;
    uint32_t commits, frames; /* spooled by this tick */
    uint64_t bytes;
    int wal_restarted; /* the WAL restarted and the chain went on */
    int checkpointed;  /* the shipper ran a checkpoint */
    int handed_over;   /* ... and let go of its reader so that the WAL can restart: until a tick
                        * sees the restart, a killed agent costs a new chain, so the next
                        * tick comes soon */
    int upload_failed; /* the spool could not be stored: err says why; retried */
    uint32_t pending;  /* objects still in the spool */
    uint64_t pending_bytes;
} tm_sqlite_tick;

typedef struct tm_sqlite_shipper tm_sqlite_shipper;

int tm_sqlite_ship_new(const tm_sqlite_ship_opts *o, const tm_sqlite_sink *sink,
                       tm_sqlite_shipper **out, tm_err *err);
/* Releases the read transaction (checkpoints may then pass it). */
void tm_sqlite_ship_free(tm_sqlite_shipper *s);
/* One round: spool what is committed, checkpoint when due, upload. An
 * error with info->upload_failed: everything is spooled, the upload is
 * retried by the next tick. */
int tm_sqlite_ship_tick(tm_sqlite_shipper *s, tm_sqlite_tick *info, tm_err *err);
uint32_t tm_sqlite_ship_chain(const tm_sqlite_shipper *s);

/* ---- what the shipper saw, for log_status (log.c) ---- */
typedef struct tm_sqlite_ship_note {
    uint64_t resets;                /* chains replaced by a new generation */
    int64_t last_reset_ms;          /* unix ms; 0 = never */
    char reset_why[TM_ERR_MSG_MAX]; /* "generation reset: ..." */
    char reset_pos[TM_LOG_POS_MAX]; /* "<old chain>:<position>": where the old chain ended */
    uint64_t upload_failures;
    int64_t last_upload_failure_ms;
    char upload_why[TM_ERR_MSG_MAX];
    uint32_t pending;
    uint64_t pending_bytes;
} tm_sqlite_ship_note;
/* The notes of target's shipper in this process; 0 when it has none. */
int tm_sqlite_ship_note_get(const char *target, tm_sqlite_ship_note *out);

#endif
