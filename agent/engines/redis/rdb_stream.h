/*
 * rdb_stream.h - fetch an RDB snapshot over the replication protocol, as
 * `redis-cli --rdb` does, without a file on either side.
 *
 * The exchange: AUTH as an ACL user, `REPLCONF capa eof` (we accept the
 * diskless form), `REPLCONF rdb-only 1` (we want the snapshot, not the
 * replication stream after it), `SYNC`. The server answers with newlines
 * while it prepares the snapshot, then either `$<len>\r\n` and len bytes
 * (disk-backed sync), or `$EOF:<40 random bytes>\r\n`, the RDB, and the same
 * 40 bytes (diskless sync), which are trimmed here. Works against a primary
 * and against a replica (which serves SYNC from its own dataset).
 *
 * The bytes go to write() in chunks of at most TM_RDB_STREAM_CHUNK as they
 * arrive: write() has the shape of tm_sink.write, so a pipeline writer (or a
 * checker, or both through a small tee) takes them directly. Memory:
 * TM_RDB_STREAM_BUFS chunks (read into in turn), each with room for the
 * 40-byte marker window.
 *
 * Note: a primary with repl-diskless-sync yes waits repl-diskless-sync-delay
 * (5 s by default) before it starts a diskless transfer, sending a newline
 * each second meanwhile; the idle timeout is reset by those newlines, so the
 * delay costs time but never fails a fetch.
 */
#ifndef TM_REDIS_RDB_STREAM_H
#define TM_REDIS_RDB_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engines/redis/conn.h"
#include "common/err.h"

#define TM_RDB_STREAM_CHUNK ((size_t)256 << 10)
/* The socket's low-water mark during the transfer: reads wait for this
 * much (briefly), so chunks are large however the server writes. */
#define TM_RDB_STREAM_BATCH ((size_t)128 << 10)
/* Buffers read into in turn (tm_redis_rdb_fetch_queued). */
#define TM_RDB_STREAM_BUFS 4

/* Where the snapshot's bytes go; a non-zero return stops the fetch (verdict
 * TM_REDIS_FINAL, the callback's code and message). Same shape as
 * tm_sink.write. */
typedef int (*tm_redis_write_fn)(void *arg, const void *buf, size_t len, tm_err *err);

typedef struct tm_redis_fetch_result {
    tm_redis_verdict verdict; /* what a failure means; TM_REDIS_OK on success */
    int diskless;             /* 1: the EOF-marker form, 0: the $<len> form */
    uint64_t bytes;           /* RDB bytes delivered to write() */
    uint64_t chunks;          /* write() calls */
    uint64_t declared;        /* the $<len> form's length (0 for diskless) */
    uint64_t wait_ms;         /* from SYNC to the first RDB byte (delay + fork) */
} tm_redis_fetch_result;

/* Fetch one snapshot. Returns 0 when the whole RDB was delivered; otherwise
 * the error, with res->verdict saying whether to retry, give up, or use the
 * BGSAVE fallback (bgsave.h). The RDB's own integrity is the checker's job. */
int tm_redis_rdb_fetch(const tm_redis_conn_opts *o, tm_redis_write_fn write, void *arg,
                       tm_redis_fetch_result *res, tm_err *err);

/* The same, for a consumer that keeps reading a chunk after write() returned
 * (a queue of references, e.g. tm_rdb_check_set_queue): a delivered chunk
 * stays valid and unchanged until TM_RDB_STREAM_BUFS - 1 further write()
 * calls have returned, and drain(arg), when not NULL, is called before the
 * buffers are freed (once the transfer began, on success and on failure);
 * it must return only when the consumer reads none of them any more.
 * Memory: TM_RDB_STREAM_BUFS chunks. */
int tm_redis_rdb_fetch_queued(const tm_redis_conn_opts *o, tm_redis_write_fn write,
                              void (*drain)(void *arg), void *arg, tm_redis_fetch_result *res,
                              tm_err *err);

#endif
