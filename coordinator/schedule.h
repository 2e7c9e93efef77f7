/*
 * schedule.h - the scheduler's decision function: which scheduled jobs to
 * start now. Pure logic: no clock of its own, no catalog, no I/O; the
 * coordinator's scheduler loop feeds it the jobs, their persisted state, the
 * tasks in flight and "now", and turns the START decisions into tasks.
 *
 * Rules
 *  - Fire times come from the job's cron (UTC). A job is due once the newest
 *    fire time F it has not handled satisfies F + jitter <= now.
 *  - Jitter: a per-target offset in [0, jitter_max_s), from a hash (FNV-1a
 *    64, mixed) of the target name, not from a random source: a fleet with
 *    "0 3 * * *" spreads over the jitter window, and a restart keeps every
 *    target's offset. The backup kinds (full, incremental, snapshot) of one
 *    target hash the target alone, so with equal jitter_max_s they share the
 *    offset and a full and an incremental due at 03:00 meet in one decision
 *    (the full wins, see below) instead of the incremental starting first
 *    and making the full wait. Drill, retention and replication-check hash
 *    target + kind. tm_sched_jitter() exposes the offset.
 *  - Misfire: after downtime a job whose fire times were missed runs ONCE on
 *    return (the decision reports how many fire times it stands for), and its
 *    next fire time is computed from now, not from the missed ones.
 *  - Overlap, per target ("backup" = full, incremental, snapshot):
 *      * a full or snapshot due while another backup of the target is queued
 *        or running is DEFERRED: it stays due and starts once the target is
 *        free (still once, however long it waited);
 *      * an incremental due while a backup of the target is queued or
 *        running, or while a full/snapshot of the target starts in the same
 *        decision, is SKIPPED (the fire time is consumed; the next hourly
 *        incremental follows the full's chain). Incrementals never pile up
 *        behind a long full;
 *      * drill, retention and replication-check do not conflict with backups;
 *        one of them due while the same (target, kind) is still in flight is
 *        SKIPPED (coalesced).
 *  - Concurrency limits, counted over queued + running tasks plus the starts
 *    of this decision: per agent (tm_sched_job.agent) and per repository
 *    (each of tm_sched_job.repos). A job over a limit is DEFERRED. Retention
 *    and replication-check run in the coordinator and ignore the limits.
 *    An incremental due while a full/snapshot of its target is due but
 *    deferred (by a limit) is SKIPPED too: the full has precedence.
 *  - Order of starts when slots are scarce: fulls and snapshots first, then
 *    incrementals, then the others; within a class earliest due first, then
 *    target name, then job index. Deterministic for the same inputs.
 *  - Paused jobs produce no decision; their fire times are consumed silently,
 *    so resuming does not fire at once for the paused period.
 *
 * State: the caller persists tm_sched_state.last_fire per (target, kind)
 * (the catalog). A job whose last_fire is 0 (never ran) starts from now: its
 * first run is its next fire time, not a catch-up. After a job's cron or
 * jitter changes (config reload), set its next_due to 0 so it is recomputed.
 */
#ifndef TM_SCHEDULE_H
#define TM_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "coordinator/cron.h"

/* Injectable clock: the scheduler loop reads "now" (Unix seconds) through it,
 * tests pass a simulated one. */
typedef int64_t (*tm_clock_fn)(void *arg);
/* The wall clock (arg unused). */
int64_t tm_clock_system(void *arg);

typedef enum tm_job_kind {
    TM_JOB_FULL = 0,
    TM_JOB_INCREMENTAL,
    TM_JOB_SNAPSHOT,
    TM_JOB_DRILL,
    TM_JOB_RETENTION,
    TM_JOB_REPLICATION_CHECK,
    TM_JOB_KIND_COUNT
} tm_job_kind;

/* "full", "incremental", ... ; NULL for an out-of-range value. */
const char *tm_job_kind_name(tm_job_kind k);
/* Parse a kind name; TM_EINVAL listing the valid names. */
int tm_job_kind_parse(const char *s, tm_job_kind *out, tm_err *err);

typedef struct tm_sched_job {
    const char *target;
    tm_job_kind kind;
    const tm_cron *cron;
    int64_t jitter_max_s;     /* 0 = none */
    const char *agent;        /* agent that runs the task; NULL = no agent limit */
    const char *const *repos; /* repositories the task writes; may be NULL */
    size_t n_repos;
    int paused;
} tm_sched_job;

typedef struct tm_sched_state {
    int64_t last_fire; /* newest nominal fire time handled; 0 = never (persist this) */
    int64_t next_due;  /* cache: next fire + jitter; 0 = recompute (do not persist) */
} tm_sched_state;

/* A task in flight (queued or running), as the dispatcher knows it. */
typedef struct tm_sched_active {
    const char *target;
    tm_job_kind kind;
    const char *agent; /* may be NULL */
    const char *const *repos;
    size_t n_repos;
    int running; /* 0 = queued */
} tm_sched_active;

typedef struct tm_sched_limit {
    const char *name; /* agent id or repository name */
    int max;          /* > 0 */
} tm_sched_limit;

typedef struct tm_sched_limits {
    int per_agent;                /* default for every agent; 0 = unlimited */
    int per_repo;                 /* default for every repository; 0 = unlimited */
    const tm_sched_limit *agents; /* overrides by agent */
    size_t n_agents;
    const tm_sched_limit *repos; /* overrides by repository */
    size_t n_repos;
} tm_sched_limits;

typedef enum tm_sched_action {
    TM_SCHED_START = 0, /* create the task now */
    TM_SCHED_SKIP,      /* fire time consumed without a task (see reason) */
    TM_SCHED_DEFER,     /* still due; asked again next time */
} tm_sched_action;

typedef struct tm_sched_decision {
    size_t job; /* index into jobs[] */
    tm_sched_action action;
    int64_t fire_time;  /* nominal (cron) fire time handled: the newest missed one */
    int64_t due_at;     /* fire_time + jitter */
    int64_t missed;     /* START/SKIP: fire times consumed (>= 1, capped at 10000);
                           DEFER: 0 (counted when the job finally starts) */
    const char *reason; /* static text: "scheduled", "misfire: ran once for missed runs",
                           "target busy: ...", "agent limit", "repository limit" */
} tm_sched_decision;

/* The job's jitter offset in [0, jitter_max_s): stable across restarts. */
int64_t tm_sched_jitter(const char *target, tm_job_kind kind, int64_t jitter_max_s);

/*
 * Decide at time now. Writes at most cap decisions to out (one per due job;
 * jobs not due produce none) and their count to *n_out; updates states[] for
 * START and SKIP (DEFER leaves the job due). states[i] belongs to jobs[i].
 * TM_EINVAL on a NULL cron/target or when cap is too small (then no decision
 * is applied; cap >= n_jobs always suffices).
 */
int tm_sched_decide(const tm_sched_job *jobs, tm_sched_state *states, size_t n_jobs,
                    const tm_sched_active *active, size_t n_active, const tm_sched_limits *limits,
                    int64_t now, tm_sched_decision *out, size_t cap, size_t *n_out, tm_err *err);

/* tm_sched_decide at clock(clock_arg). */
int tm_sched_tick(tm_clock_fn clock, void *clock_arg, const tm_sched_job *jobs,
                  tm_sched_state *states, size_t n_jobs, const tm_sched_active *active,
                  size_t n_active, const tm_sched_limits *limits, tm_sched_decision *out,
                  size_t cap, size_t *n_out, tm_err *err);

/* The earliest due time over the (unpaused) jobs, for the loop's sleep; may
 * be <= now when jobs are deferred (then also wake on task completion).
 * TM_CRON_NEVER with no jobs. Fills the states' next_due caches. */
int64_t tm_sched_next_wakeup(const tm_sched_job *jobs, tm_sched_state *states, size_t n_jobs,
                             int64_t now);

#endif
