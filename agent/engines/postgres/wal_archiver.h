/*
 * wal_archiver.h - async WAL archiving: watch <pgdata>/pg_wal/archive_status
 * for *.ready files and push the waiting files with N workers in parallel,
 * ahead of PostgreSQL's own (serial) archive_command calls. Each pushed file
 * gets a done/ marker in the spool only once it is durable in the
 * repositories; `wal-push --async` then answers from the marker at once, and
 * does the upload itself for anything the archiver has not finished, so a
 * dead or slow archiver costs speed, never safety.
 *
 * Status (queue depth, archive lag, counters) is rewritten to
 * <spool>/archiver.json after every scan for `wal-show` and monitoring.
 */
#ifndef TM_PG_WAL_ARCHIVER_H
#define TM_PG_WAL_ARCHIVER_H

#include <signal.h>
#include <stddef.h>

#include "common/config.h"

typedef struct tm_wal_archiver_opts {
    const char *target;
    const char *pgdata;
    int workers;     /* default 4 */
    int interval_ms; /* between scans of archive_status; default 200 */
    int once;        /* push what is ready now, then return */
    size_t quorum;   /* 0 = every repository */
} tm_wal_archiver_opts;

/* Runs until *stop is set (or, with once, the queue is empty). 0, or an
 * error that prevented it from running at all. */
int tm_wal_archiver_run(const tm_agent_conf *conf, const tm_wal_archiver_opts *o,
                        volatile sig_atomic_t *stop, tm_err *err);

#endif
