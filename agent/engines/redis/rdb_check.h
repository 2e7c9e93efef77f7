/*
 * rdb_check.h - a streaming validator for Redis RDB snapshots.
 *
 * Fed the same chunks that go into the pipeline, it checks that the bytes are
 * one structurally whole RDB: the "REDIS00xx" header, every opcode, length
 * and string encoding (LZF payloads are decompressed and their declared size
 * checked), every value type Redis 7.x writes (strings, lists, sets, sorted
 * sets, hashes, streams with their consumer groups, and the compact encodings:
 * listpacks, ziplists, quicklists, intsets, whose inner structure is checked
 * byte by byte), module values and module aux data skipped by their opcode
 * annotations, the EOF opcode, and the CRC-64 (Jones polynomial, as Redis
 * computes it) trailer. A backup counts only when finish() returns 0.
 *
 * It also counts keys and keys with an expire per database, so a restore can
 * be compared with DBSIZE per database.
 *
 * Memory is bounded: the chunks in flight are the caller's (referenced, not
 * copied; one, or the queue depth of tm_rdb_check_set_queue), plus one captured
 * compact-encoding blob of at most TM_RDB_BLOB_MAX bytes (larger blobs are
 * skipped without their inner check; the checksum still covers them).
 *
 * Errors are TM_ECORRUPT with "rdb offset N: what" (N = byte offset in the
 * stream of the element that failed) or TM_EPROTO for versions and types
 * this validator does not know.
 */
#ifndef TM_REDIS_RDB_CHECK_H
#define TM_REDIS_RDB_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* The largest compact-encoding blob (listpack, ziplist, intset, LZF payload)
 * whose inner structure is checked. Redis's defaults keep them at a few KiB. */
#define TM_RDB_BLOB_MAX ((size_t)16 << 20)

/* The newest RDB version understood (Redis 7.2 writes 11). */
#define TM_RDB_VERSION_MAX 11

typedef struct tm_rdb_db_count {
    uint64_t db;
    uint64_t keys;
    uint64_t expires;        /* keys saved with an expire time */
    uint64_t resize_keys;    /* the RESIZEDB hint the server wrote (0 if none) */
    uint64_t resize_expires; /* likewise for expires */
} tm_rdb_db_count;

typedef struct tm_rdb_check tm_rdb_check;

/* The most chunks tm_rdb_check_set_queue() lets the parser hold. */
#define TM_RDB_CHECK_QUEUE_MAX 8

int tm_rdb_check_new(tm_rdb_check **out, tm_err *err);
/* Feed the next chunk. The signature matches a write callback (and
 * tm_sink.write), so a checker can be a fetch's callback by itself. Returns
 * the first error found; after an error every further call returns it.
 * The parser runs on its own thread; by default feed() returns once it has
 * read the whole chunk, so the caller may reuse the buffer at once. */
int tm_rdb_check_feed(void *checker, const void *buf, size_t len, tm_err *err);
/* Let feed() return while up to depth (at most TM_RDB_CHECK_QUEUE_MAX) fed
 * chunks are still unread, so the parser runs alongside the caller. The
 * chunks are queued by reference, not copied: each must stay valid and
 * unchanged until depth further feed() calls have returned, or until
 * tm_rdb_check_drain(), finish() or free() has returned. An error the
 * parser finds meanwhile is returned by a later feed() or by finish().
 * Call before the first feed. */
void tm_rdb_check_set_queue(tm_rdb_check *c, size_t depth);
/* Wait until the parser reads none of the chunks fed so far (it has parsed
 * them, or stopped). The caller may then reuse or free every buffer. */
void tm_rdb_check_drain(tm_rdb_check *c);
/* End of input: 0 only when a whole RDB with a good checksum was seen and
 * nothing followed it. */
int tm_rdb_check_finish(tm_rdb_check *c, tm_err *err);

/* After finish: the RDB version, the bytes seen, and the per-database counts
 * in the order the databases appear. */
int tm_rdb_check_version(const tm_rdb_check *c);
uint64_t tm_rdb_check_bytes(const tm_rdb_check *c);
size_t tm_rdb_check_ndbs(const tm_rdb_check *c);
const tm_rdb_db_count *tm_rdb_check_db(const tm_rdb_check *c, size_t i);
/* A server with rdbchecksum no writes a zero trailer: finish() refuses such a
 * file (it cannot be verified) unless this was called before feeding. */
void tm_rdb_check_allow_no_checksum(tm_rdb_check *c);

void tm_rdb_check_free(tm_rdb_check *c);

/* Redis's CRC-64 (Jones polynomial, reflected, init 0) continued over buf. */
uint64_t tm_redis_crc64(uint64_t crc, const void *buf, size_t len);

#endif
