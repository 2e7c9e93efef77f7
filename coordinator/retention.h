/*
 * retention.h - the retention plan: which backups to keep, which to drop and
 * why, and how far back logs (each engine's log files) must be kept. A pure,
 * deterministic function of (backup records, policy, now): no clock, no
 * catalog, no I/O. `tidemarkctl retention plan` prints it (dry run); the
 * coordinator applies the same plan on schedule.
 *
 * CALLER RULE: never delete on a failed or partial catalog read. The plan
 * only sees what it is given: a backup missing from the input is a backup
 * the plan cannot protect (and its incrementals look orphaned). If listing
 * the catalog fails, do not compute a plan, do not delete anything.
 *
 * Rules, per target (records of different targets never interact):
 *  - Candidates for the GFS classes are successful (ok) fulls and snapshots
 *    ("bases"): a snapshot is a standalone backup like a full.
 *  - keep_last N: the N newest bases ("last").
 *  - keep_hourly/daily/weekly/monthly/yearly N, restic's `forget --keep-*`:
 *    walk the bases newest first and keep the newest one in each of the N
 *    newest distinct buckets that hold a base. Buckets are UTC: hour, day
 *    ("daily 2026-11-20"), ISO 8601 week with the ISO week-year ("weekly
 *    2026-W53" for 2027-01-01), calendar month ("monthly 2026-11"), year
 *    ("yearly 2026"). Kept by any class = kept; every class that keeps a
 *    backup is named in its reason. A value < 0 means unlimited, 0 off.
 *    (restic >= 0.16 also keeps the oldest backup when a class has counts
 *    left; that extension is NOT applied here: the bucket rule alone.)
 *  - Permanent hold (keep flag, `tidemarkctl backup keep ID`): kept, with its
 *    whole chain of parents, whatever its state.
 *  - Newest: the newest good backup (ok, with an intact chain of ok parents)
 *    is always kept, with its chain ("newest").
 *  - PITR window: restores must stay possible to any point in
 *    [now - pitr_window_s, now]. The anchor is the newest good backup that
 *    finished at or before now - pitr_window_s (or, when none is that old,
 *    the oldest good backup); it is kept with its chain ("PITR window") and
 *    the log cutoff is its start (started_at, or finished_at when 0): logs
 *    older than the cutoff may go. Retained backups older than the anchor
 *    stay restorable to their own consistent point: the log range recorded
 *    inside each backup (the log between its start and stop) belongs to the
 *    backup, not to the continuous log stream, and must be deleted with it
 *    only. With no good backup, there is no cutoff: keep all logs.
 *  - Minimum count: while fewer than min_count good bases are kept, keep the
 *    next newest good base ("minimum count").
 *  - Incrementals live and die with their full: an ok incremental whose
 *    chain parent is kept is kept ("incremental of kept <full-id>"); when an
 *    incremental is kept for its own sake (newest, hold, PITR) its parents
 *    up to the full are kept ("parent of kept incremental <id>"), and then
 *    every good incremental of that full is kept with it. An incremental
 *    whose parent is missing from the input, failed, or dropped is dropped
 *    ("chain broken" / "parent dropped").
 *  - Failed backups (ok = 0) are never candidates; the keep_failed newest
 *    failed ones per target are kept for diagnosis ("failed: keep-failed N"),
 *    the rest dropped ("failed"). Held failed backups stay held.
 *
 * Determinism: items are ordered by target, then finished_at newest first,
 * then id (descending); ties between equal finished_at are broken by id.
 */
#ifndef TM_RETENTION_H
#define TM_RETENTION_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

/* Values equal tidemark.BackupType (proto), so common/names.h's
 * tm_backup_type_name() names them too. */
typedef enum tm_backup_type {
    TM_BACKUP_FULL = 1,
    TM_BACKUP_INCREMENTAL = 2,
    TM_BACKUP_SNAPSHOT = 3,
} tm_backup_type;

typedef struct tm_backup_rec {
    const char *id; /* "20261120T030000Z-full" */
    const char *target;
    tm_backup_type type;
    const char *parent_id; /* incrementals: the backup it is based on; else NULL */
    int64_t started_at;    /* Unix s; 0 = unknown (finished_at is used) */
    int64_t finished_at;   /* Unix s */
    int ok;                /* completed and verified */
    int keep;              /* permanent hold */
} tm_backup_rec;

typedef struct tm_retention_policy {
    int keep_last;         /* 0 = off */
    int keep_hourly;       /* 0 = off */
    int keep_daily;        /* default 7 */
    int keep_weekly;       /* default 4 */
    int keep_monthly;      /* default 12 */
    int keep_yearly;       /* default 7 */
    int min_count;         /* default 1: good bases never go below this */
    int keep_failed;       /* default 3: newest failed runs kept per target; 0 = none */
    int64_t pitr_window_s; /* default 7 days; 0 = no PITR anchor */
} tm_retention_policy;

/* The defaults above. */
void tm_retention_policy_default(tm_retention_policy *p);

typedef struct tm_retention_item {
    char *id;
    char *target;
    tm_backup_type type;
    int64_t finished_at;
    int ok;
    int keep;     /* 1 = keep, 0 = drop */
    char *reason; /* "daily 2026-11-20, weekly 2026-W47, newest" / "not kept by any rule" */
} tm_retention_item;

typedef struct tm_retention_target {
    char *target;
    size_t kept, dropped;
    char *log_cutoff_id; /* backup whose start bounds the logs; NULL = keep all logs */
    int64_t log_cutoff;  /* logs older than this may go; 0 with log_cutoff_id NULL */
} tm_retention_target;

typedef struct tm_retention_plan {
    int64_t now;
    tm_retention_policy policy;
    size_t n_items;
    tm_retention_item *items;
    size_t n_targets;
    tm_retention_target *targets; /* sorted by name */
} tm_retention_plan;

/* Compute the plan. TM_EINVAL on a record without id/target or a duplicate
 * id within a target; TM_ENOMEM. The plan copies what it needs from recs. */
int tm_retention_plan_new(const tm_backup_rec *recs, size_t n, const tm_retention_policy *policy,
                          int64_t now, tm_retention_plan **out, tm_err *err);
void tm_retention_plan_free(tm_retention_plan *plan);

/* Print the plan for humans (json = 0) or as one JSON object (json = 1):
 * {"now":"...","policy":{...},"targets":[{"target":..,"kept":..,"dropped":..,
 *  "log_cutoff":"...|null","log_cutoff_id":"...|null","backups":[{"id":..,
 *  "type":..,"finished_at":..,"ok":..,"action":"keep|drop","reason":..}]}]}
 * Returns 0 or TM_EIO when the stream fails. */
int tm_retention_plan_format(const tm_retention_plan *plan, int json, FILE *f);

#endif
