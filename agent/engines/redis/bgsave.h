/*
 * bgsave.h - the snapshot fallback for a server that refuses the replication
 * protocol (tm_redis_rdb_fetch's verdict TM_REDIS_FALLBACK): ask for BGSAVE,
 * wait until LASTSAVE moves past its value from before, and read the file
 * named by CONFIG GET dir + dbfilename.
 *
 * Consistency: Redis writes the snapshot to a temporary file and renames it
 * over dbfilename before LASTSAVE changes, so once LASTSAVE has advanced the
 * name points at a whole snapshot; the file is opened once and read through
 * that descriptor, so a later save renaming a newer file over it cannot mix
 * two snapshots. This path needs the agent on the Redis host (the file is on
 * the server's disk) and costs at least one second: LASTSAVE counts whole
 * seconds, so the BGSAVE is asked for only after a second has passed since
 * the LASTSAVE read, or a save finishing in the same second would go unseen.
 *
 * ACL: +bgsave +lastsave +config|get +info (INFO persistence tells a failed
 * BGSAVE from a slow one).
 */
#ifndef TM_REDIS_BGSAVE_H
#define TM_REDIS_BGSAVE_H

#include "agent/engines/redis/conn.h"
#include "agent/engines/redis/rdb_stream.h"

typedef struct tm_redis_bgsave_opts {
    int poll_ms;    /* LASTSAVE polling interval; 0 = 200 ms */
    int timeout_ms; /* the whole save; 0 = 1 hour */
} tm_redis_bgsave_opts;

/* Same contract as tm_redis_rdb_fetch: the file's bytes go to write() in
 * chunks; res->declared is the file's size, res->diskless 0. */
int tm_redis_bgsave_fetch(const tm_redis_conn_opts *o, const tm_redis_bgsave_opts *bo,
                          tm_redis_write_fn write, void *arg, tm_redis_fetch_result *res,
                          tm_err *err);

#endif
