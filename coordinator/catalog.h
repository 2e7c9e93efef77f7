/*
 * catalog.h - the coordinator's durable state, SQL hidden behind verbs.
 *
 * Embedded SQLite (WAL mode, synchronous=FULL) today; a server-backed catalog
 * for HA comes later behind this same interface. The schema is versioned:
 * migrations are applied in order at open, each in a transaction, so a
 * catalog from any earlier version is brought up to date.
 *
 * Thread-safe: every call takes the catalog's lock.
 */
#ifndef TM_CATALOG_H
#define TM_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct tm_catalog tm_catalog;

typedef struct tm_label {
    char *key;
    char *value;
} tm_label;

typedef struct tm_target_rec {
    char *name; /* unique across the fleet */
    int kind;   /* tidemark.TargetKind */
    char *engine_version;
} tm_target_rec;

typedef struct tm_agent_rec {
    char *id;
    char *hostname;
    char *version;
    char *secret_hash; /* hex SHA-256 of the per-agent secret; never the secret */
    char *enrollment;  /* enrollment token name */
    char *address;     /* last peer address, may be NULL */
    int approved;      /* 0 pending, 1 approved */
    int state;         /* tidemark.AgentState: liveness (ONLINE/STALE/LOST), or PENDING */
    int64_t registered_at;
    int64_t last_seen_at;
    tm_label *labels;
    size_t n_labels;
    tm_target_rec *targets;
    size_t n_targets;
    /* A pending agent's target names, bound only on approval (read only:
     * agent_put takes a pending agent's names from targets). */
    tm_target_rec *claims;
    size_t n_claims;
} tm_agent_rec;

typedef struct tm_agent_event {
    char *agent_id;
    int64_t at;
    int from_state;
    int to_state;
    char *reason;
} tm_agent_event;

typedef struct tm_catalog_stats {
    uint64_t agents;
    uint64_t targets;
    uint64_t events;
    uint64_t bytes; /* size of the database file(s) */
    int schema_version;
} tm_catalog_stats;

/* Open (creating if needed) and migrate to the latest schema. */
int tm_catalog_open(tm_catalog **out, const char *path, tm_err *err);
/* Open and migrate only up to `version` (tests of migrations). A catalog already
 * past `version` is left as it is; verbs that need a later table then fail. */
int tm_catalog_open_at(tm_catalog **out, const char *path, int version, tm_err *err);
void tm_catalog_free(tm_catalog *c);
int tm_catalog_latest_version(void);

/* Insert or replace an agent with its labels and targets, in one transaction.
 * TM_EEXIST (nothing written) if a target name belongs to another agent.
 * Logs an event when the agent is new ("registered", at registered_at) or its
 * (approved, state) changed ("re-registered"). Times are unix seconds. */
int tm_catalog_agent_put(tm_catalog *c, const tm_agent_rec *a, tm_err *err);
/* TM_ENOENT if no such agent. Free with tm_agent_rec_free. */
int tm_catalog_agent_get(tm_catalog *c, const char *id, tm_agent_rec **out, tm_err *err);
/* All agents ordered by hostname, id. Free with tm_agent_recs_free. */
int tm_catalog_agent_list(tm_catalog *c, tm_agent_rec ***out, size_t *n, tm_err *err);
/* Change state (and approval) and record an event; no-op event if unchanged. */
int tm_catalog_agent_set_state(tm_catalog *c, const char *id, int approved, int state, int64_t at,
                               const char *reason, tm_err *err);
/* Approve a pending agent: its claimed target names are bound to it in the
 * same transaction. TM_EEXIST (nothing changed) if another agent already
 * serves one of them; TM_ENOENT if no such agent; no-op if approved. */
int tm_catalog_agent_approve(tm_catalog *c, const char *id, int64_t at, const char *reason,
                             tm_err *err);
/* Batched last-seen update: one transaction for n agents. last_seen_at only
 * moves forward; ids not in the catalog are skipped (not an error). */
int tm_catalog_agent_touch(tm_catalog *c, const char *const *ids, const int64_t *last_seen,
                           size_t n, tm_err *err);
/* Delete an agent, its targets and labels (events are kept). TM_ENOENT if none. */
int tm_catalog_agent_delete(tm_catalog *c, const char *id, tm_err *err);
/* Events, newest first; agent_id NULL = all; limit 0 = no limit.
 * Free with tm_agent_events_free. */
int tm_catalog_agent_events(tm_catalog *c, const char *agent_id, size_t limit, tm_agent_event **out,
                            size_t *n, tm_err *err);
int tm_catalog_stats_get(tm_catalog *c, tm_catalog_stats *out, tm_err *err);

/* ---- tasks and backups (catalog_tasks.c) ----
 * Records are the proto messages themselves; getters return unpacked copies
 * to free with tidemark__task__free_unpacked / tidemark__backup_info__free_unpacked
 * (or the _free helpers for arrays). */
struct Tidemark__Task;
struct Tidemark__BackupInfo;

/* Insert or replace a task (by id). */
int tm_catalog_task_put(tm_catalog *c, const struct Tidemark__Task *t, tm_err *err);
/* TM_ENOENT if absent. */
int tm_catalog_task_get(tm_catalog *c, const char *id, struct Tidemark__Task **out, tm_err *err);
/* Newest first. target NULL = all; open_only = QUEUED or RUNNING only. */
int tm_catalog_task_list(tm_catalog *c, const char *target, int open_only, size_t limit,
                         struct Tidemark__Task ***out, size_t *n, tm_err *err);
/* QUEUED tasks for agent_id with not_before <= now_ms, oldest first. */
int tm_catalog_task_queued(tm_catalog *c, const char *agent_id, int64_t now_ms,
                           struct Tidemark__Task ***out, size_t *n, tm_err *err);
/* RUNNING tasks whose lease expired before now_ms. */
int tm_catalog_task_expired(tm_catalog *c, int64_t now_ms, struct Tidemark__Task ***out, size_t *n,
                            tm_err *err);
/* Count of tasks of one kind in one state for a target (e.g. running backups). */
int tm_catalog_task_count(tm_catalog *c, const char *target, int kind, int state, int64_t *n,
                          tm_err *err);
/* counts[state] for states 0..6 (TASK_PARTIAL is 6). */
#define TM_TASK_STATES 7
int tm_catalog_task_counts(tm_catalog *c, int64_t counts[TM_TASK_STATES], tm_err *err);
void tm_catalog_tasks_free(struct Tidemark__Task **t, size_t n);

int tm_catalog_backup_put(tm_catalog *c, const struct Tidemark__BackupInfo *b, tm_err *err);
int tm_catalog_backup_get(tm_catalog *c, const char *target, const char *id,
                          struct Tidemark__BackupInfo **out, tm_err *err);
/* Oldest first. target NULL = all. */
int tm_catalog_backup_list(tm_catalog *c, const char *target, struct Tidemark__BackupInfo ***out,
                           size_t *n, tm_err *err);
void tm_catalog_backups_free(struct Tidemark__BackupInfo **b, size_t n);
/* The partial backups (BackupInfo.partial) of target (NULL = all), oldest
 * first: those a copy has yet to complete. */
int tm_catalog_backup_partial_list(tm_catalog *c, const char *target,
                                   struct Tidemark__BackupInfo ***out, size_t *n, tm_err *err);
/* The agent that serves a target and the target's kind; TM_ENOENT if none. */
int tm_catalog_target_owner(tm_catalog *c, const char *target, char **agent_id, int *kind,
                            tm_err *err);

/* ---- log ranges (catalog_tasks.c) ---- */
struct Tidemark__LogRange;
/* Replace every range of (target, repository) with these, in one transaction. */
int tm_catalog_log_replace(tm_catalog *c, const char *target, const char *repository,
                           struct Tidemark__LogRange *const *ranges, size_t n, uint32_t queue_depth,
                           int64_t now, tm_err *err);
/* All ranges of a target (every repository), ordered by repository, chain, first. */
int tm_catalog_log_list(tm_catalog *c, const char *target, struct Tidemark__LogRange ***out,
                        size_t *n, tm_err *err);
/* Sum of reported queue depths of a target. */
int tm_catalog_log_queue(tm_catalog *c, const char *target, uint32_t *depth, tm_err *err);
void tm_catalog_log_free(struct Tidemark__LogRange **r, size_t n);

/* Freshness per target, for metrics and alerts: the newest successful backup
 * of each type (type = tidemark.BackupType) and, as type -1, the newest
 * archived log point. Free the array with free(). */
typedef struct tm_freshness {
    char target[72];
    int type;
    int64_t last;   /* unix seconds */
    uint64_t bytes; /* of that newest backup */
    uint64_t stored_bytes;
    int64_t duration_s;
} tm_freshness;
int tm_catalog_freshness(tm_catalog *c, tm_freshness **out, size_t *n, tm_err *err);

/* Failed tasks per target and kind ("full" / "incremental" / "snapshot" for
 * backups, else the task kind: "restore", "verify", "drill", ...), for
 * tidemark_backup_failures_total. Free the array with free(). */
typedef struct tm_failure_count {
    char target[72];
    char kind[24];
    int64_t n;
} tm_failure_count;
int tm_catalog_task_failures(tm_catalog *c, tm_failure_count **out, size_t *n, tm_err *err);
/* The same for tasks that ended partial (tidemark_backup_partial_total). */
int tm_catalog_task_partials(tm_catalog *c, tm_failure_count **out, size_t *n, tm_err *err);

/* The repositories each target writes to, as far as the catalog knows:
 * those of its newest backup and those its log shipping reports. Sorted by
 * target; free the array with free(). */
typedef struct tm_target_repo {
    char target[72];
    char repository[72];
} tm_target_repo;
int tm_catalog_target_repos(tm_catalog *c, tm_target_repo **out, size_t *n, tm_err *err);

/* ---- scheduler state (catalog_sched.c) ---- */
typedef struct tm_sched_row {
    char target[72];
    char kind[24]; /* tm_job_kind_name */
    int64_t last_fire;
} tm_sched_row;
/* Every row; free the array with free(). */
int tm_catalog_sched_list(tm_catalog *c, tm_sched_row **out, size_t *n, tm_err *err);
/* Insert or update the newest fire time handled for (target, kind). */
int tm_catalog_sched_put(tm_catalog *c, const char *target, const char *kind, int64_t last_fire,
                         tm_err *err);

/* ---- alert notifications (catalog_sched.c) ----
 * One row per notification per sink; error NULL when delivered. */
int tm_catalog_alert_notification_add(tm_catalog *c, int64_t at_ms, const char *rule,
                                      const char *target, const char *status, const char *sink,
                                      int ok, const char *error, tm_err *err);
int tm_catalog_alert_notification_count(tm_catalog *c, int64_t *n, tm_err *err);

/* ---- restore drills (catalog_drills.c) ---- */
struct Tidemark__DrillInfo;
/* Insert or replace the drill of d->task_id. */
int tm_catalog_drill_put(tm_catalog *c, const struct Tidemark__DrillInfo *d, tm_err *err);
/* Newest first (by finished_at); target NULL = all; limit 0 = 100. */
int tm_catalog_drill_list(tm_catalog *c, const char *target, size_t limit,
                          struct Tidemark__DrillInfo ***out, size_t *n, tm_err *err);
/* The newest drill of every target. */
int tm_catalog_drill_latest(tm_catalog *c, struct Tidemark__DrillInfo ***out, size_t *n,
                            tm_err *err);
void tm_catalog_drills_free(struct Tidemark__DrillInfo **d, size_t n);
/* Per target: when its newest successful drill finished (unix ms). */
typedef struct tm_drill_success {
    char target[72];
    int64_t finished_ms;
} tm_drill_success;
/* Also the fleet totals by result. Free *out with free(). */
int tm_catalog_drill_stats(tm_catalog *c, tm_drill_success **out, size_t *n, int64_t *ok_total,
                           int64_t *failed_total, tm_err *err);
/* ---- retention (catalog_retention.c) ---- */
/* Number of backup rows of a target (NULL = all): retention compares it with
 * what a list returned, so a row that could not be read is never mistaken
 * for a backup that does not exist. */
int tm_catalog_backup_count(tm_catalog *c, const char *target, int64_t *n, tm_err *err);
/* Set or clear the permanent hold of a backup (column and record). target
 * may be NULL when the id is unique. TM_ENOENT if no such backup. *out (may
 * be NULL) gets the updated record. */
int tm_catalog_backup_set_keep(tm_catalog *c, const char *target, const char *id, int keep,
                               struct Tidemark__BackupInfo **out, tm_err *err);

typedef struct tm_retention_deletion {
    int64_t at; /* unix s */
    char *target;
    char *backup_id;
    int backup_type; /* tidemark.BackupType */
    int64_t finished_at;
    char *repositories; /* comma-separated */
    char *reason;
    char *task_id;
} tm_retention_deletion;

/* In one transaction: delete each backup's row and record the deletion.
 * A backup already gone from the catalog is still recorded once (a
 * re-delivered completion adds nothing: rows are unique per task and
 * backup). */
int tm_catalog_retention_record(tm_catalog *c, const tm_retention_deletion *d, size_t n,
                                tm_err *err);
/* Deletions, newest first; target NULL = all; limit 0 = no limit. */
int tm_catalog_retention_log(tm_catalog *c, const char *target, size_t limit,
                             tm_retention_deletion **out, size_t *n, tm_err *err);
void tm_retention_deletions_free(tm_retention_deletion *d, size_t n);

void tm_agent_rec_free(tm_agent_rec *a);
void tm_agent_recs_free(tm_agent_rec **a, size_t n);
void tm_agent_events_free(tm_agent_event *e, size_t n);

/* ---- replication (catalog_repl.c) ---- */
struct Tidemark__ReplicationState;
struct Tidemark__RepositoryStatus;
/* Replace the row of (s->target, s->repository). */
int tm_catalog_repl_put(tm_catalog *c, const struct Tidemark__ReplicationState *s, tm_err *err);
/* Rows of target (NULL = all), by target then repository. */
int tm_catalog_repl_list(tm_catalog *c, const char *target,
                         struct Tidemark__ReplicationState ***out, size_t *n, tm_err *err);
void tm_catalog_repl_free(struct Tidemark__ReplicationState **v, size_t n);
/* Replace the row of (s->agent_id, s->name). */
int tm_catalog_repo_health_put(tm_catalog *c, const struct Tidemark__RepositoryStatus *s,
                               tm_err *err);
int tm_catalog_repo_health_list(tm_catalog *c, struct Tidemark__RepositoryStatus ***out, size_t *n,
                                tm_err *err);
void tm_catalog_repo_health_free(struct Tidemark__RepositoryStatus **v, size_t n);

#endif
