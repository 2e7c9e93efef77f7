/*
 * wal.h - a reader of the SQLite WAL file format (https://sqlite.org/fileformat2.html#walformat).
 *
 * A WAL file is a 32-byte header then frames of a 24-byte header and one
 * page. Every frame carries the header's two salts and a checksum that
 * accumulates over the header and every frame before it, so a frame is
 * valid only if its salts match the header's and its checksum continues the
 * chain. A frame whose "database size" field is not zero is a commit: the
 * transaction ends there. SQLite itself ignores frames after the last
 * commit (a transaction still being written, or stale frames of an earlier
 * use of the file), and so does this reader.
 *
 * When SQLite restarts the WAL (after a complete checkpoint) it rewrites the
 * header with salt-1 plus one, a new random salt-2 and the checkpoint
 * sequence plus one; old frames stay in the file but no longer match. A
 * reader that knew the old salts sees a restart (tm_sqlite_wal_same_wal).
 *
 * The reader works on bytes handed to it (a file read, a fuzz input): one
 * header, then frame after frame, keeping the running checksum, so that a
 * shipper resumes at any frame from the checksum stored in the frame before.
 */
#ifndef TM_SQLITE_WAL_H
#define TM_SQLITE_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define TM_SQLITE_WAL_HDR 32
#define TM_SQLITE_WAL_FRAME_HDR 24
#define TM_SQLITE_WAL_MAGIC_LE 0x377f0682u /* checksums over little-endian words */
#define TM_SQLITE_WAL_MAGIC_BE 0x377f0683u /* checksums over big-endian words */
#define TM_SQLITE_WAL_VERSION 3007000u

typedef struct tm_sqlite_wal_hdr {
    uint32_t magic;
    uint32_t version;
    uint32_t page_size; /* bytes, 512 to 65536 */
    uint32_t ckpt_seq;  /* checkpoint sequence: +1 at each restart */
    uint32_t salt1, salt2;
    uint32_t cksum1, cksum2; /* of the first 24 bytes: the chain's start */
} tm_sqlite_wal_hdr;

typedef struct tm_sqlite_wal_frame {
    uint32_t pgno;    /* the page this frame holds */
    uint32_t db_size; /* pages in the database after this commit; 0 = not a commit */
    uint32_t cksum1, cksum2;
} tm_sqlite_wal_frame;

/* The running state over one WAL file. */
typedef struct tm_sqlite_wal {
    tm_sqlite_wal_hdr h;
    uint32_t s1, s2;  /* the checksum after the last valid frame */
    uint64_t frames;  /* valid frames read so far (frame numbers are 1-based) */
    uint64_t commit;  /* the last commit frame among them; 0 = none */
    uint32_t db_size; /* its database size in pages */
} tm_sqlite_wal;

/* Parse and check a WAL header: magic, version, page size (a power of two
 * from 512 to 65536), header checksum. TM_EPROTO with the reason. */
int tm_sqlite_wal_hdr_parse(const uint8_t *buf, size_t len, tm_sqlite_wal_hdr *h, tm_err *err);
/* Start reading frames after header h (frame 1 next). */
void tm_sqlite_wal_begin(tm_sqlite_wal *w, const tm_sqlite_wal_hdr *h);
/* Resume after frame `frames`, whose checksum fields were s1, s2, and whose
 * last commit was frame `commit` (db_size pages). */
void tm_sqlite_wal_resume(tm_sqlite_wal *w, const tm_sqlite_wal_hdr *h, uint64_t frames,
                          uint32_t s1, uint32_t s2, uint64_t commit, uint32_t db_size);
/* Bytes of one frame (header + page). */
size_t tm_sqlite_wal_frame_size(const tm_sqlite_wal_hdr *h);
/* Byte offset of frame n (1-based) in the file. */
uint64_t tm_sqlite_wal_frame_offset(const tm_sqlite_wal_hdr *h, uint64_t n);
/* Check the next frame (len must be tm_sqlite_wal_frame_size): 1 and the
 * state advanced when it is valid (salts and checksum), 0 when it is not
 * (the end of the log: nothing after it counts). */
int tm_sqlite_wal_next(tm_sqlite_wal *w, const uint8_t *frame, size_t len,
                       tm_sqlite_wal_frame *out);
/* 1 when b is the same use of the WAL file as a (same salts and checkpoint
 * sequence), 0 when the WAL was restarted or replaced in between. */
int tm_sqlite_wal_same_wal(const tm_sqlite_wal_hdr *a, const tm_sqlite_wal_hdr *b);
/* The big-endian 32-bit number at p (every field of the WAL file). */
uint32_t tm_sqlite_wal_be32(const uint8_t *p);
/* The WAL checksum over n bytes (n a multiple of 8), continuing s[0], s[1]. */
void tm_sqlite_wal_cksum(int big_endian, const uint8_t *p, size_t n, uint32_t s[2]);

/* Scan a whole WAL image in memory: the header, then frames while valid.
 * *w ends after the last valid frame (w->commit: the last commit). */
int tm_sqlite_wal_scan(const uint8_t *buf, size_t len, tm_sqlite_wal *w, tm_err *err);

/* Read frames from fd (a WAL file) after w's position while they are valid,
 * up to max_frames (0 = no bound); w advances. TM_OK also when nothing new. */
int tm_sqlite_wal_scan_fd(int fd, tm_sqlite_wal *w, uint64_t max_frames, tm_err *err);
/* pread len bytes at off, fewer only at EOF (*got). */
int tm_sqlite_wal_pread(int fd, void *buf, size_t len, uint64_t off, size_t *got, tm_err *err);
/* Read and parse the header of the WAL file open on fd. TM_ENOENT when the
 * file is shorter than a header (empty WAL: nothing written since the
 * last restart or truncation). */
int tm_sqlite_wal_read_hdr(int fd, tm_sqlite_wal_hdr *h, tm_err *err);

#endif
