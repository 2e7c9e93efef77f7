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
 *   ncommits x { frame (1-based in the segment), db_size u32, time_ms i64 }
 *   nframes x (24-byte frame header + page), as in the WAL
 *
 * Everything big-endian. Object names, per generation ("chain"):
 *   <gen %08x>/00000000.0000000000000000.db    the snapshot (a database file)
 *   <gen %08x>/00000000.0000000000000000.gen   what the snapshot is (text)
 *   <gen %08x>/<wal %08x>.<first frame %016llx>.wal   a segment
 * where wal counts the WAL restarts seen within the generation: the names
 * sort in shipping order, and a generation is restorable from its .gen on.
 */
#ifndef TM_SQLITE_SEGMENT_H
#define TM_SQLITE_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engines/sqlite/wal.h"
#include "common/err.h"

#define TM_SQLITE_SEG_MAGIC "TMSQLSG1"
#define TM_SQLITE_SEG_HDR 48

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

/* Names of a generation's objects (cap >= 64). */
void tm_sqlite_seg_name(char *out, size_t cap, uint32_t gen, uint32_t wal, uint64_t first_frame);
void tm_sqlite_snap_name(char *out, size_t cap, uint32_t gen, const char *ext);
/* Parse a name: *kind 'w' (segment), 'd' (snapshot db), 'g' (generation). */
int tm_sqlite_name_parse(const char *rel, uint32_t *gen, uint32_t *wal, uint64_t *frame,
                         char *kind);

#endif
