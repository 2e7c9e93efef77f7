/*
 * wal_get.h - restore_command: fetch one WAL file from the repositories
 * (first one that has a good copy), and prefetch the next segments into the
 * spool in a detached background process so recovery does not wait on a
 * round trip per segment.
 */
#ifndef TM_PG_WAL_GET_H
#define TM_PG_WAL_GET_H

#include "common/config.h"

/* Exit codes of wal-get (restore_command), as PostgreSQL reads them. */
#define TM_WAL_GET_OK 0
#define TM_WAL_GET_MISSING 1 /* in no repository: "not available", silently */
#define TM_WAL_GET_USAGE 2
/* > 125: PostgreSQL stops recovery (FATAL) instead of taking it as "not
 * available" and ending recovery early at a point nobody asked for: copies
 * exist but all failed their checks, or no repository could answer. */
#define TM_WAL_GET_ERROR 128

/* name = %f, dest = %p. prefetch = how many following segments to fetch
 * ahead (0 = none). */
int tm_wal_get(const tm_agent_conf *conf, const char *target, const char *name, const char *dest,
               int prefetch, int verbose);

/* The prefetcher body (also reachable as the hidden `wal-get --prefetch-only`
 * for tests): fetch segments after `name` into the spool. */
int tm_wal_prefetch(const tm_agent_conf *conf, const char *target, const char *name,
                    uint64_t seg_size, int count);

#endif
