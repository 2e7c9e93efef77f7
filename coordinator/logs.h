/*
 * logs.h - the restorable window as a pure function of the catalog's
 * records (logs.c), so it is tested without a coordinator. Engine-neutral:
 * a backup ends in the log object its engine names in stop_log; an archived
 * run (LogRange) covers it when first <= stop_log <= last (engines name
 * their log objects so that names sort in log order within a chain).
 */
#ifndef TM_LOGS_H
#define TM_LOGS_H

#include <stddef.h>
#include <stdint.h>

#include "tidemark.pb-c.h"

/* From the backups (oldest first) and the archived runs: start = the oldest
 * backup's end, end = the newest backup's end, extended to the newest
 * last_time of a run that contains the log object where the newest backup
 * ends. Returns whether such a run exists; stop_log receives that object's
 * name ("" when the backup names none). */
int tm_logs_span(Tidemark__BackupInfo *const *bs, size_t nb, Tidemark__LogRange *const *rs,
                 size_t nr, int64_t *start, int64_t *end, char *stop_log, size_t cap);

#endif
