/*
 * aof_expire.c - which shipped AOF objects retention may delete
 * (tm_redis_log_before, redis.h). Pure: the cutoff snapshot's manifest and
 * an object name in, a yes/no out.
 *
 * A restore to a time T replays the newest shipped AOF base older than T and
 * the incr data of its chain (restore.c); a snapshot restores on its own.
 * The cutoff snapshot is the oldest backup that keeps the PITR window, so
 * the oldest time anyone may ask for is its start. The snapshot recorded
 * the shipped position then ("<chain>:<name>", engine.c): that chain's base
 * was shipped before the snapshot, so it is old enough for any T from the
 * snapshot on, and every later chain serves later times. Objects of older
 * chains (and their gap markers) are needed by nobody: older snapshots kept
 * by GFS or a hold carry their whole dataset. A snapshot taken while
 * nothing was shipped, or an unreadable manifest, names no chain: every
 * object is kept.
 */
#include "agent/engines/redis/redis.h"
#include "agent/result_kv.h"

#include <stdio.h>
#include <string.h>

/* The chain of a position "<chain>:<name>"; -1 when it is not one. */
static int pos_chain(const char *pos, uint64_t *chain)
{
    unsigned long long c;
    int used = 0;
    if (pos == NULL || sscanf(pos, "%10llu:%n", &c, &used) != 1 || used != 11) {
        return -1;
    }
    *chain = c;
    return 0;
}

int tm_redis_log_before(const Tidemark__Manifest *cutoff, const Tidemark__ExpireSpec *spec,
                        const char *rel)
{
    /* The catalog does not record the AOF position (the spec's start
     * position and chain are another engine's), so only the manifest
     * can say: without it, keep. */
    (void)spec;
    uint64_t keep_from = 0, chain = 0;
    if (rel == NULL ||
        pos_chain(tm_info_get(cutoff, TM_REDIS_AOF_POSITION_INFO), &keep_from) != 0) {
        return 0;
    }
    tm_redis_log_name ln;
    if (tm_redis_log_name_parse(rel, &ln) == TM_OK) {
        chain = ln.chain;
    } else if (!tm_redis_log_is_gap(rel, &chain)) {
        return 0; /* not ours to judge: keep */
    }
    return chain < keep_from;
}
