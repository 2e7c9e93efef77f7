/*
 * aof_truncate.h - restore a multi-part AOF to a point in time: a base and
 * the incr files that follow it, in order, each read through a callback,
 * come out through a sink as the base, the incr data cut at the first
 * "#TS:" annotation newer than the target (as `redis-check-aof
 * --truncate-to-timestamp` does; the incr files after the cut are dropped),
 * and a new manifest listing exactly what was kept. A redis-server started
 * on the result has exactly the writes up to the target.
 *
 * Everything is checked as it streams: an RDB base by rdb_check (structure
 * and CRC-64), an AOF base and the incr files by the RESP scanner. A torn
 * last command (a crash mid-write) is cut at the last complete command and
 * reported, and so is a MULTI without its EXEC at the cut (Redis would
 * refuse or revert it); anything else that is not RESP is an error with its
 * file and offset. The sink sees file names from the caller, never paths:
 * the agent's restore writer decides where the bytes go. After an error the
 * sink's files are incomplete: the caller discards them.
 */
#ifndef TM_REDIS_AOF_TRUNCATE_H
#define TM_REDIS_AOF_TRUNCATE_H

#include <stddef.h>
#include <stdint.h>

#include "agent/engines/redis/aof_manifest.h"
#include "common/err.h"

typedef struct tm_aof_source {
    const char *name; /* as it will be named in the manifest */
    int64_t seq;
    /* Up to cap bytes into buf; *got = 0 at the end. */
    int (*read)(void *arg, void *buf, size_t cap, size_t *got, tm_err *err);
    void *arg;
} tm_aof_source;

typedef struct tm_aof_sink {
    int (*open)(void *arg, const char *name, tm_err *err); /* a new file */
    int (*write)(void *arg, const void *buf, size_t len, tm_err *err);
    /* Cut the open file to len bytes (the stream is written as it is read;
     * a cut can fall behind what was written). */
    int (*truncate)(void *arg, uint64_t len, tm_err *err);
    int (*close)(void *arg, tm_err *err);
    void *arg;
} tm_aof_sink;

typedef struct tm_aof_truncate_opts {
    /* Unix seconds: keep writes with a time <= target; INT64_MAX = keep all.
     * A time means something only with aof-timestamp-enabled (see
     * annotations in the result). */
    int64_t target;
    const char *manifest_name; /* e.g. "appendonly.aof.manifest" */
    /* The base's time when known (a shipped base range's last_ts): a base
     * newer than the target cannot serve it. 0 = unknown; a .base.aof's own
     * leading "#TS:" is checked regardless. */
    int64_t base_ts;
} tm_aof_truncate_opts;

typedef struct tm_aof_truncate_result {
    int cut;                            /* stopped at an annotation newer than the target */
    char cut_file[TM_AOF_NAME_MAX + 1]; /* where the kept data ends */
    uint64_t cut_offset;
    int64_t cut_ts;    /* the first annotation not kept (when cut) */
    int64_t last_ts;   /* the newest annotation kept; 0 = none */
    size_t kept_incrs; /* incr files in the new manifest */
    size_t dropped_incrs;
    uint64_t torn;      /* bytes of a torn last command cut off */
    uint64_t multi_cut; /* bytes of an unfinished MULTI block cut off */
    uint64_t bytes;     /* bytes kept, base included */
    /* "#TS:" annotations kept from the incr data; 0 with data = the timestamps
     * were off, and a cut means nothing: not a restore to a time. */
    uint64_t annotations;
} tm_aof_truncate_result;

int tm_aof_truncate(const tm_aof_truncate_opts *o, const tm_aof_source *base,
                    const tm_aof_source *incrs, size_t nincrs, const tm_aof_sink *sink,
                    tm_aof_truncate_result *res, tm_err *err);

#endif
