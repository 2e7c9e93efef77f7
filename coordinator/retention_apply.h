/*
 * retention_apply.h - applying the retention plan (retention.h): the
 * coordinator computes each target's plan from the catalog and queues one
 * EXPIRE task for the agent that serves the target (the coordinator has no
 * repository access); the agent deletes the dropped backups and the logs
 * older than the cutoff in every repository (agent/expire.c) and, when it
 * succeeds, the dropped backups leave the catalog and every deletion is
 * recorded (retention_deletions) and counted
 * (tidemark_retention_deletions_total).
 *
 * When: per target, at the fire times of its policy's `retention.apply`
 * cron (default "@hourly"; "" = only on request). The newest fire time
 * handled is kept in the catalog's sched_state (kind "retention"), so a
 * restart neither repeats nor forgets a run; a target seen for the first
 * time starts at its next fire time (the operator gets a dry-run window:
 * `tidemarkctl retention plan`). A missed fire time runs once.
 *
 * Safety (retention.h's caller rule): nothing is queued when listing the
 * catalog fails or returns fewer records than the catalog holds (a record
 * that cannot be read is a backup the plan cannot protect); never a second
 * EXPIRE for a target while one is queued or running; targets without a
 * policy are never applied automatically.
 */
#ifndef TM_RETENTION_APPLY_H
#define TM_RETENTION_APPLY_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"
#include "common/metrics.h"
#include "coordinator/catalog.h"
#include "coordinator/dispatcher.h"
#include "coordinator/retention.h"
#include "coordinator/schedule.h"

#include "tidemark.pb-c.h"

typedef struct tm_retention_apply tm_retention_apply;

/* Parses every policy's retention.apply cron (TM_ECONFIG "file:line:col:
 * policies[i].retention.apply: ..." on a bad one). clock NULL = wall time.
 * conf, cat and d must outlive it. */
int tm_retention_apply_new(tm_retention_apply **out, const tm_coordinator_conf *conf,
                           tm_catalog *cat, tm_dispatcher *d, tm_clock_fn clock, void *clock_arg,
                           tm_err *err);
void tm_retention_apply_free(tm_retention_apply *ra);

/* One pass at the clock's now: queue EXPIRE for every target whose apply
 * time came. Returns the number of tasks queued, or a negative TM_E* when
 * the catalog could not be read (nothing queued). */
int tm_retention_apply_tick(tm_retention_apply *ra, tm_err *err);

/* Queue the EXPIRE task of one target now (requested_by: "admin",
 * "schedule"). *out: the queued task, or the EXPIRE task already open for
 * the target (*was_open = 1), or NULL when the plan drops nothing and cuts
 * no logs (*why says so). */
int tm_retention_apply_target(tm_retention_apply *ra, const char *target, const char *requested_by,
                              Tidemark__Task **out, int *was_open, char *why, size_t why_cap,
                              tm_err *err);

/* Dispatcher completion hook for a succeeded EXPIRE task: remove the dropped
 * backups from the catalog, record each deletion, count and log it. Other
 * kinds are ignored. An error makes the agent report again. */
int tm_retention_apply_completed(const Tidemark__Task *t, void *arg, tm_err *err);

/* tidemark_retention_deletions_total, tidemark_retention_tasks_total. */
void tm_retention_apply_collect(tm_metrics_writer *w, void *arg);

/* ---- shared with `retention plan` (admin_alerts.c) ---- */

/* Every backup record of target (NULL = all), refusing a partial read:
 * TM_EIO when a record could not be read. Free with tm_catalog_backups_free. */
int tm_retention_read(tm_catalog *cat, const char *target, Tidemark__BackupInfo ***bs, size_t *n,
                      tm_err *err);
/* The plan of one target over bs (records of other targets are skipped),
 * under its policy (*policy NULL: none matches, retention defaults). */
int tm_retention_plan_for(const tm_coordinator_conf *conf, tm_catalog *cat, const char *target,
                          Tidemark__BackupInfo *const *bs, size_t n, int64_t now,
                          const tm_policy_conf **policy, tm_retention_plan **out, tm_err *err);

#endif
