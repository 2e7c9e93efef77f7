/*
 * scheduler.h - the scheduler loop's body: policies x targets -> backup
 * tasks.
 *
 * Each tick builds the jobs (one full and, when the policy has one, one
 * incremental per target that a policy matches; targets come from the
 * catalog with their agent's labels), feeds them with their persisted state
 * and the open tasks to tm_sched_decide (schedule.h: misfire, jitter,
 * overlap and limits live there) and submits every START as a backup task
 * with requested_by "schedule". A fire time handled (START or SKIP) is
 * written to the catalog (sched_state) so a restart neither repeats nor
 * loses a run.
 *
 * Not thread-safe except tm_scheduler_collect: one loop thread ticks.
 */
#ifndef TM_SCHEDULER_H
#define TM_SCHEDULER_H

#include <stdint.h>

#include "common/config.h"
#include "common/err.h"
#include "common/metrics.h"
#include "coordinator/catalog.h"
#include "coordinator/dispatcher.h"
#include "coordinator/schedule.h"

typedef struct tm_scheduler tm_scheduler;

/* Parses every policy's schedules (TM_ECONFIG "file:line:col: path: ..." on
 * a bad one) and loads the persisted state. clock NULL = wall time. conf,
 * cat and d must outlive the scheduler. */
int tm_scheduler_new(tm_scheduler **out, const tm_coordinator_conf *conf, tm_catalog *cat,
                     tm_dispatcher *d, tm_clock_fn clock, void *clock_arg, tm_err *err);
void tm_scheduler_free(tm_scheduler *s);

/* One pass at the clock's now. Returns the number of tasks submitted, or a
 * negative TM_E* when the catalog could not be read (then nothing starts:
 * a partial view of the open tasks could start a second backup). */
int tm_scheduler_tick(tm_scheduler *s, tm_err *err);

/* Each scheduled job as of the last tick, for the backup_late rule. Call
 * on the thread that ticks (the coordinator loop). */
typedef struct tm_sched_job_status {
    const char *target;
    tm_job_kind kind;
    const tm_policy_conf *policy;
    int64_t last_fire; /* newest fire time started (0 = never) */
    int64_t next_due;  /* next fire time incl. jitter; <= now: due, not started yet */
    int paused;        /* scheduler.paused */
} tm_sched_job_status;
typedef void (*tm_sched_job_fn)(const tm_sched_job_status *st, void *arg);
void tm_scheduler_each_job(tm_scheduler *s, tm_sched_job_fn fn, void *arg);

/* tidemark_targets_without_policy and tidemark_scheduled_tasks_total. */
void tm_scheduler_collect(tm_metrics_writer *w, void *arg);

#endif
