/*
 * replay.h - apply a chain's shipped WAL frames onto a database file.
 *
 * A chain (a generation) starts with its base snapshot ("<chain>/...db")
 * and its description (".gen": the WAL position the snapshot was taken at,
 * and its time); segments follow. Replay reads the segments after a
 * position in name order, checks each (segment.h: salts, checksum chain,
 * whole transactions) and that it continues the one before (the next frame
 * of the same WAL, or frame 1 of the WAL that followed its restart, whose
 * prev_last is where the previous one ended): a hole fails the replay,
 * naming it; it never skips history silently. Each transaction whose
 * commit time is at or before until_ms is applied: its pages written at
 * (pgno - 1) * page_size, the file cut or grown to the commit's database
 * size. The file is fsync'd at the end. Frames are page images, so
 * replaying from a position older than a snapshot onto that snapshot is
 * correct once the replay passes the snapshot's own position.
 *
 * Objects come from the first repository of the agent's configuration that
 * holds an authentic copy (the log store, agent/repo/repo_log.h); tests use
 * a source of their own.
 */
#ifndef TM_SQLITE_REPLAY_H
#define TM_SQLITE_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engine.h"
#include "agent/repo/repo_log.h"
#include "common/config.h"
#include "common/err.h"

typedef struct tm_sqlite_replayed {
    uint32_t chain;
    char pos[TM_LOG_POS_MAX]; /* after the last applied commit (or the start) */
    int64_t time_ms;          /* that commit's time (the base: the snapshot's); 0 = none */
    uint64_t frames;          /* frames applied */
    uint32_t objects;         /* log objects read */
} tm_sqlite_replayed;

/* Start database file db (it must not exist) from the chain's own base
 * snapshot; out->pos is the base's position, out->time_ms its time. */
int tm_sqlite_restore_base(const tm_agent_conf *conf, const char *target, uint32_t chain,
                           const char *db, tm_sqlite_replayed *out, tm_err *err);
/* Apply the chain's frames after position from ("" = from the base's
 * position) onto db (a file nobody has open) up to the last commit at or
 * before until_ms (0 = all). */
int tm_sqlite_replay(const tm_agent_conf *conf, const char *target, uint32_t chain,
                     const char *from, int64_t until_ms, const char *db, tm_sqlite_replayed *out,
                     tm_err *err);

/* ---- for a restore: one opening of the log, files the caller holds ----
 * The repositories are opened and the log listed once; the base and the
 * frames are written into a file the caller created and holds open (fd),
 * write-back started as it goes; nothing is fsync'd (the
 * caller syncs once, at the end). Segments are read into memory, never
 * through a scratch file. Every check is the one above. */
typedef struct tm_sqlite_log tm_sqlite_log;
int tm_sqlite_log_open(const tm_agent_conf *conf, const char *target, tm_sqlite_log **out,
                       tm_err *err);
void tm_sqlite_log_close(tm_sqlite_log *l);
/* A sink into the file open on fd, from offset 0, write-back started as
 * it goes: tm_sqlite_fd_sink_open (arg = a tm_sqlite_fd_sink {.fd = fd};
 * a tm_log_sink_open) empties the file and starts a copy; abort empties
 * it again. Nothing is fsync'd. */
typedef struct tm_sqlite_fd_sink tm_sqlite_fd_sink;
struct tm_sqlite_fd_sink {
    int fd;
    uint64_t off, started; /* the sink's */
};
int tm_sqlite_fd_sink_open(void *arg, tm_sink *out, tm_err *err);
/* The chain's base into fd (emptied first). */
int tm_sqlite_log_base(tm_sqlite_log *l, uint32_t chain, int fd, tm_sqlite_replayed *out,
                       tm_err *err);
/* tm_sqlite_replay's work onto fd. */
int tm_sqlite_log_replay(tm_sqlite_log *l, uint32_t chain, const char *from, int64_t until_ms,
                         int fd, tm_sqlite_replayed *out, tm_err *err);

/* ---- the same over any source of objects (tests, tools) ---- */
typedef struct tm_sqlite_source {
    /* Every object name of the target (any order): malloc'd array of
     * malloc'd strings. */
    int (*list)(void *arg, char ***names, size_t *n, tm_err *err);
    /* Write object rel to the new file path, complete or not at all. */
    int (*fetch)(void *arg, const char *rel, const char *path, tm_err *err);
    /* Optional: object rel into sinks made by open, tm_log_get_sink's
     * rule (one per copy tried, committed only once every check passed).
     * With it, segments go straight into memory and a base straight into
     * the database file; without it, through fetch. */
    int (*get)(void *arg, const char *rel, tm_log_sink_open open, void *open_arg, tm_err *err);
    void *arg;
} tm_sqlite_source;

int tm_sqlite_restore_base_src(const tm_sqlite_source *src, uint32_t chain, const char *db,
                               tm_sqlite_replayed *out, tm_err *err);
int tm_sqlite_replay_src(const tm_sqlite_source *src, uint32_t chain, const char *from,
                         int64_t until_ms, const char *db, tm_sqlite_replayed *out, tm_err *err);

/* The text of a chain's description (.gen): its fields. */
typedef struct tm_sqlite_gen {
    uint32_t chain, page_size, salt1, salt2, ckpt, s1, s2;
    int hdr; /* 0: the chain began on an empty WAL */
    uint64_t frames;
    int64_t time_ms;
    uint64_t bytes;
} tm_sqlite_gen;
int tm_sqlite_gen_parse(const char *text, tm_sqlite_gen *g);

#endif
