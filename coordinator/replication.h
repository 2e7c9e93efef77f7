/*
 * replication.h - the coordinator's replication checker.
 *
 * A policy with `replication:` names the repositories that must hold every
 * backup and log file of its targets (or a number of regions). A check is a
 * VERIFY task with a ReplicationCheckSpec, queued on the policy's cron, after
 * every successful backup, after every copy, and on demand; at most one is
 * queued per target. The agent's report becomes one ReplicationState per
 * (target, repository) in the catalog. A repository that lacks items gets a
 * COPY task for exactly those items from a repository that holds them; the
 * check that follows the copy decides. Still missing after a copy, a failed
 * copy, no good copy anywhere, or a policy the agent cannot satisfy marks the
 * state unresolved: the replication_gap alert (alert_rules.c) fires until a
 * clean check clears it.
 *
 * Repository health arrives with heartbeats (HeartbeatRequest.repositories);
 * it is kept in memory, and in the catalog when a result changes.
 */
#ifndef TM_REPLICATION_H
#define TM_REPLICATION_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"
#include "common/metrics.h"
#include "coordinator/catalog.h"
#include "coordinator/dispatcher.h"

#include "tidemark.pb-c.h"

/* Copies queued for one repository before its gap counts as unresolved
 * without another try. */
#define TM_REPL_MAX_COPIES 3

typedef struct tm_replication tm_replication;

int tm_replication_new(tm_replication **out, const tm_coordinator_conf *conf, tm_catalog *cat,
                       tm_dispatcher *d, tm_err *err);
void tm_replication_free(tm_replication *r);

/* tm_dispatcher_ended_fn: follows finished backups, checks and copies. */
void tm_replication_task_done(void *arg, const Tidemark__Task *t);

/* Repository probe results an agent's heartbeat carried. */
void tm_replication_health(tm_replication *r, const char *agent_id,
                           Tidemark__RepositoryStatus *const *v, size_t n);

/* Queue the checks whose cron fired (call every few seconds). */
void tm_replication_tick(tm_replication *r, int64_t now_s);

/* Queue a check of target now (why: "admin", "backup", ...). A check
 * already queued for the target is returned instead of a second one. */
int tm_replication_queue_check(tm_replication *r, const char *target, const char *why,
                               Tidemark__Task **out, tm_err *err);

/* Repository health as last reported, malloc'd copies (free with
 * tm_catalog_repo_health_free). */
int tm_replication_health_list(tm_replication *r, Tidemark__RepositoryStatus ***out, size_t *n,
                               tm_err *err);

/* tidemark_replication_* and tidemark_repository_up. */
void tm_replication_collect(tm_metrics_writer *w, void *arg);

#endif
