/*
 * log.h - what the coordinator sees of a SQLite target's shipped log: the
 * engine hooks log_ranges, log_status and log_before (agent/engine.h).
 *
 * Runs come from the repository listing alone (segment.h: the names carry
 * chain, WAL number, frames and the last commit's time): one run per chain
 * while the names follow on; a missing segment splits it. Positions are
 * "<wal>.<frame>" (the position after that frame), the start of a run being
 * the position before its first frame (a chain's base: the base's own).
 *
 * A generation reset (a new chain that replaced one: the shipper could not
 * prove continuity) is a failure in the status: failed_count counts it,
 * last_failure reads "generation reset: <why>; new chain <hex>" and
 * last_failed is "<old chain>:<position>" where the old chain ended, so the
 * coordinator's shipping-failure rule alerts on it.
 *
 * Retention deletes whole chains older than the cutoff snapshot's chain:
 * the snapshot backup records it in its manifest's engine_info as
 * "log_chain" (decimal) and its start position as "log_start"; without
 * them, the catalog's values in the expire spec; without either, nothing
 * is deleted.
 */
#ifndef TM_SQLITE_LOG_H
#define TM_SQLITE_LOG_H

#include <stddef.h>

#include "agent/engine.h"

int tm_sqlite_log_ranges(const tm_target_conf *t, const tm_log_item *items, size_t n,
                         tm_log_range **out, size_t *nout, tm_err *err);
void tm_sqlite_log_status(const tm_target_conf *t, tm_log_status *st);
int tm_sqlite_log_before(const Tidemark__Manifest *cutoff, const Tidemark__ExpireSpec *spec,
                         const char *rel);

#endif
