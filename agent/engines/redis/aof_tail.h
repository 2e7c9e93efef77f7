/*
 * aof_tail.h - follow a Redis 7 multi-part AOF directory and hand out what
 * is new as "ranges" for continuous shipping.
 *
 * Each poll reads the manifest, pins the files it needs with hard links in a
 * pin directory beside the AOF directory (same filesystem), and delivers:
 *   - the base file, whole, each time a rewrite installs a new one;
 *   - the bytes appended to the incr file being followed, up to the last
 *     complete command (a command Redis is still writing waits for the next
 *     poll), with the time span learnt from "#TS:" annotations.
 * A rewrite (BGREWRITEAOF, or the automatic one) opens a new incr file and
 * later installs a new base; the old incr files become history and Redis
 * deletes them. The pin keeps the followed file alive, so it is finished to
 * its final length before the tail moves to the next incr file: no gap.
 * Pins persist on disk, so an agent killed mid-ship and restarted with its
 * last position still finds the file. A file that is gone before it was
 * pinned (the agent was down across a rewrite and lost its pins) is a gap:
 * the gap callback hears it, and a new chain starts at the current base.
 *
 * Positions are engine-opaque strings "<file>:<offset>".
 */
#ifndef TM_REDIS_AOF_TAIL_H
#define TM_REDIS_AOF_TAIL_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engines/redis/aof_manifest.h"
#include "common/err.h"

#define TM_AOF_POS_MAX (TM_AOF_NAME_MAX + 24)

typedef struct tm_aof_range {
    const char *file;      /* the file's name in the AOF directory */
    tm_aof_file_type type; /* TM_AOF_BASE (whole file) or TM_AOF_INCR */
    int64_t seq;
    uint64_t start, end;   /* byte offsets in that file: [start, end) */
    const char *start_pos; /* "<file>:<start>" */
    const char *end_pos;   /* "<file>:<end>" */
    /* Unix seconds. An incr range: the time in effect for its first and its
     * last command ("#TS:" annotations, carried across files); a base: the
     * newest time its data can be from (the base covers everything up to
     * the rewrite's fork). 0 = unknown (aof-timestamp-enabled is off). */
    int64_t first_ts, last_ts;
    uint64_t bytes;
    int final;     /* the file ends here: nothing more will be appended */
    uint64_t torn; /* a final file's trailing bytes that are not a whole command
                      (not shipped) */
    int fd;        /* the pinned file, for pread of [start, end) */
} tm_aof_range;

typedef struct tm_aof_tail_cbs {
    /* A range to ship; a failure stops the poll, and the same bytes come again
     * on the next one. A range may be empty when it only marks a file final. */
    int (*range)(void *arg, const tm_aof_range *r, tm_err *err);
    /* Optional: the manifest's text whenever it changed (the restore needs the
     * chain: which incr files follow which base). */
    int (*manifest)(void *arg, const char *text, size_t len, tm_err *err);
    /* Optional: a gap (what is lost, as a message). With it the poll goes on
     * with a new chain (the current base, then its incr files); without it
     * the poll fails with TM_ENOENT and the next one does that. */
    int (*gap)(void *arg, const char *what, tm_err *err);
    void *arg;
} tm_aof_tail_cbs;

typedef struct tm_aof_tail_opts {
    const char *dir;      /* the AOF directory (<dir>/<appenddirname>) */
    const char *manifest; /* its manifest's file name; NULL = the only *.manifest */
    const char *pin_dir;  /* NULL = "<dir>.tidemark-pin" */
    /* Resume: the last end_pos shipped of an incr file, and the last base
     * shipped (NULL for both = start from scratch: the base, then its incr). */
    const char *position;
    const char *base;
    int64_t last_ts;    /* resume: the last range's last_ts (the time in effect) */
    uint64_t max_range; /* split larger ranges; 0 = 64 MiB */
} tm_aof_tail_opts;

typedef struct tm_aof_tail tm_aof_tail;

int tm_aof_tail_new(const tm_aof_tail_opts *o, tm_aof_tail **out, tm_err *err);
/* Releases every pin. */
void tm_aof_tail_free(tm_aof_tail *t);

/* Ship everything available now. *ranges = how many ranges were delivered. */
int tm_aof_tail_poll(tm_aof_tail *t, const tm_aof_tail_cbs *cbs, int *ranges, tm_err *err);

/* Where the next poll continues ("<file>:<offset>", "" before the first
 * incr), and the last base delivered ("" = none). */
const char *tm_aof_tail_position(const tm_aof_tail *t);
const char *tm_aof_tail_base(const tm_aof_tail *t);
/* 1: "#TS:" annotations seen (PITR possible); 0: commands seen without any
 * (aof-timestamp-enabled is off: snapshot-only); -1: nothing seen yet. By
 * what this tail read since it was made (a resume's carried-over time is
 * used only until then). */
int tm_aof_tail_timestamps(const tm_aof_tail *t);

/* Read a range's bytes from its pinned file, in pieces, into fn. */
int tm_aof_range_copy(const tm_aof_range *r,
                      int (*fn)(void *arg, const void *buf, size_t len, tm_err *err), void *arg,
                      tm_err *err);

/* Split "<file>:<offset>". */
int tm_aof_pos_parse(const char *pos, char *file, size_t cap, uint64_t *off, tm_err *err);

#endif
