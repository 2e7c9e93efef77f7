/*
 * segment.h - the log object the SQLite shipper stores: a run of WAL frames
 * that ends at a commit, with the wall-clock time of each commit in it.
 *
 *   "TMSQLSG1"                      8 bytes
 *   page_size, salt1, salt2, ckpt_seq, s1, s2   u32 each (s1, s2: the WAL
 *                                   checksum before the first frame, so the
 *                                   chain can be checked again on restore)
 *   first_frame                     u64 (its number in its WAL file)
 *   nframes, ncommits               u32 each
 *   prev_last                       u64: a segment at frame 1 of a WAL that
 *                                   followed a restart: the last frame
 *                                   shipped of the WAL before (0 otherwise),
 *                                   so a lost end of that WAL shows
 *   ncommits x { frame (1-based in the segment), db_size u32, time_ms i64 }
 *   nframes x (24-byte frame header + page), as in the WAL
 *
 * Everything big-endian. Object names, per generation ("chain"), all of
 * the form "<gen>/<wal>.<first>-<last>.<time>.<ext>" in fixed-width hex:
 *   <gen>/00000000.0000000000000000-0000000000000000.000000000000.db
 *       the snapshot (a database file)
 *   <gen>/00000000.0000000000000000-<frames>.<snapshot ms>.gen
 *       what the snapshot is (text; frames: its WAL position)
 *   <gen>/<wal>.<first frame>-<last frame>.<last commit ms>.wal
 *       a segment
 * where wal counts the WAL restarts seen within the generation. The names
 * sort in shipping order (the .db before its .gen), and a listing alone
 * shows the runs (frames follow on, or a restart starts at frame 1) and
 * their times.
 */
#ifndef TM_SQLITE_SEGMENT_H
#define TM_SQLITE_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engines/sqlite/wal.h"
#include "common/err.h"

#define TM_SQLITE_SEG_MAGIC "TMSQLSG1"
#define TM_SQLITE_SEG_HDR 56

typedef struct tm_sqlite_commit {
    uint32_t frame; /* 1-based in the segment */
    uint32_t db_size;
    int64_t time_ms;
} tm_sqlite_commit;

typedef struct tm_sqlite_seg {
    tm_sqlite_wal_hdr wal; /* page size, salts, checkpoint sequence of its WAL */
    uint32_t s1, s2;       /* checksum before the first frame */
    uint64_t first_frame;
    uint32_t nframes, ncommits;
    uint64_t prev_last;        /* see above */
    tm_sqlite_commit *commits; /* decode: points into a malloc'd array */
    const uint8_t *frames;     /* decode: points into the object's bytes */
} tm_sqlite_seg;

/* Encode: header + commits + frames (copied from frames, nframes of them)
 * into a malloc'd buffer. */
int tm_sqlite_seg_encode(const tm_sqlite_seg *s, uint8_t **out, size_t *len, tm_err *err);
/* Decode buf (kept alive by the caller while s is used) and check the
 * frames' salts and checksum chain, and the commits (ascending, the last
 * one the last frame). tm_sqlite_seg_free releases s->commits. */
int tm_sqlite_seg_decode(const uint8_t *buf, size_t len, tm_sqlite_seg *s, tm_err *err);
void tm_sqlite_seg_free(tm_sqlite_seg *s);

/* A parsed object name. */
typedef struct tm_sqlite_name {
    char kind; /* 'w' segment, 'd' snapshot database, 'g' generation description */
    uint32_t gen, wal;
    uint64_t first, last; /* frames (a .gen: last = its WAL position) */
    int64_t time_ms;      /* a segment: its last commit; a .gen: the snapshot's time */
} tm_sqlite_name;

#define TM_SQLITE_NAME_MAX 72

/* Format n (cap >= TM_SQLITE_NAME_MAX). */
void tm_sqlite_name_fmt(char *out, size_t cap, const tm_sqlite_name *n);
/* Parse rel: TM_EINVAL when it is not one of ours. */
int tm_sqlite_name_parse(const char *rel, tm_sqlite_name *n);

#endif
