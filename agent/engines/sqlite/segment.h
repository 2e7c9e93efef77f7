/*
 * segment.h - the log object the SQLite shipper stores: the frames of whole
 * committed transactions of one WAL file, with the wall-clock time at which
 * the shipper saw each commit, and the names of the objects of a chain.
 *
 *   "TMSQLSG2"                          8 bytes
 *   chain, magic, page_size, salt1, salt2, ckpt_seq, s1, s2
 *                                       u32 each; magic: the WAL's (it says the
 *                                       checksum byte order); s1, s2: the WAL
 *                                       checksum before the first frame, so the
 *                                       chain of checksums is checked again on
 *                                       restore
 *   first_frame                         u64 (its number in its WAL file)
 *   nframes, ncommits                   u32 each
 *   prev_last                           u64: in a segment at frame 1 of a WAL
 *                                       that followed a restart, the last frame
 *                                       shipped of the WAL before (0 otherwise):
 *                                       a lost end of that WAL shows as a hole
 *   ncommits x { frame (1-based in the segment), db_size u32, time_ms i64 }
 *   nframes x (24-byte frame header + page), as in the WAL
 *
 * Everything big-endian. The decoder treats the bytes as hostile (a
 * repository is storage someone else runs): every length is checked before
 * it is read, and an error names the frame that fails.
 *
 * Object names of one chain (a generation), fixed-width lower-case hex, so
 * that they sort in shipping order and a listing alone shows runs, holes
 * and times:
 *   <chain>/00000000.0000000000000000-0000000000000000.000000000000.db
 *       the chain's base snapshot (a database file)
 *   <chain>/00000000.0000000000000000-<frame>.<snapshot ms>.gen
 *       what the snapshot is (text: its WAL position, its time)
 *   <chain>/<wal>.<first frame>-<last frame>.<last commit ms>.wal
 *       a segment; wal counts the WAL restarts seen within the chain
 */
#ifndef TM_SQLITE_SEGMENT_H
#define TM_SQLITE_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engines/sqlite/wal.h"
#include "common/err.h"

#define TM_SQLITE_SEG_MAGIC "TMSQLSG2"
#define TM_SQLITE_SEG_HDR 64
#define TM_SQLITE_SEG_COMMIT 16

typedef struct tm_sqlite_commit {
    uint32_t frame; /* 1-based in the segment */
    uint32_t db_size;
    int64_t time_ms;
} tm_sqlite_commit;

typedef struct tm_sqlite_seg {
    uint32_t chain;
    tm_sqlite_wal_hdr wal; /* magic, page size, salts, checkpoint sequence of its WAL */
    uint32_t s1, s2;       /* checksum before the first frame */
    uint64_t first_frame;
    uint32_t nframes, ncommits;
    uint64_t prev_last;        /* see above */
    tm_sqlite_commit *commits; /* decode: a malloc'd array */
    const uint8_t *frames;     /* decode: points into the object's bytes */
} tm_sqlite_seg;

/* Encode: header + commits + frames (nframes of them, copied from
 * s->frames) into a malloc'd buffer. */
int tm_sqlite_seg_encode(const tm_sqlite_seg *s, uint8_t **out, size_t *len, tm_err *err);
/* Decode buf (kept alive by the caller while s is used) and check it all:
 * sizes, the frames' salts and checksum chain, and that the commit table
 * lists exactly the commit frames, the last one the last frame (whole
 * transactions only). TM_EPROTO (malformed, truncated) or TM_ECORRUPT
 * (a frame fails its checks), the message naming the frame. On success
 * tm_sqlite_seg_free releases s->commits. */
int tm_sqlite_seg_decode(const uint8_t *buf, size_t len, tm_sqlite_seg *s, tm_err *err);
void tm_sqlite_seg_free(tm_sqlite_seg *s);

/* A parsed object name. */
typedef struct tm_sqlite_name {
    char kind; /* 'w' segment, 'd' base snapshot, 'g' generation description */
    uint32_t chain, wal;
    uint64_t first, last; /* frames (a .gen: last = its WAL position) */
    int64_t time_ms;      /* a segment: its last commit; a .gen: the snapshot's time */
} tm_sqlite_name;

#define TM_SQLITE_NAME_MAX 72

/* Format n (cap >= TM_SQLITE_NAME_MAX). */
void tm_sqlite_name_fmt(char *out, size_t cap, const tm_sqlite_name *n);
/* Parse rel: TM_EINVAL when it is not one of ours. */
int tm_sqlite_name_parse(const char *rel, tm_sqlite_name *n);

/* Positions (opaque outside the engine; they sort within a chain):
 * "<wal %08x>.<frame %016x>", the position after that frame. */
#define TM_SQLITE_POS_LEN 25
void tm_sqlite_pos_fmt(char *out, size_t cap, uint32_t wal, uint64_t frame);
/* "" parses as wal 0, frame 0 (nothing). TM_EINVAL when malformed. */
int tm_sqlite_pos_parse(const char *pos, uint32_t *wal, uint64_t *frame);

#endif
