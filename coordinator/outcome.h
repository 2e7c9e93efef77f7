/*
 * outcome.h - what a finished BACKUP task is: succeeded, partial or failed.
 *
 * The agent reports where the backup is complete (TaskResult.repositories)
 * and, per repository it wrote to, how it fared (repository_outcomes). The
 * coordinator decides against the target's policy:
 *
 *   every required repository holds it         -> TASK_SUCCEEDED
 *   some required repositories hold it          -> TASK_PARTIAL (restorable
 *                                                  from those; the others
 *                                                  are a replication gap)
 *   no required repository holds it             -> TASK_FAILED
 *
 * Required = the policy's replication.repositories that the agent has
 * (a name the agent lacks is the replication check's "unsatisfied" problem,
 * not a flaw of each backup); with no names, every repository the agent
 * wrote to. replication.min_regions is not judged per backup: when every
 * required repository holds the backup, the regions are as good as the
 * agent's configuration allows, and the check reports a policy it cannot
 * meet. When the agent sent no repository_outcomes (older agents), the
 * repositories it wrote to are its configured ones, as its heartbeats
 * report them, and the outcomes are filled in here from what is known.
 */
#ifndef TM_OUTCOME_H
#define TM_OUTCOME_H

#include <stddef.h>

#include "common/config.h"
#include "common/err.h"
#include "coordinator/catalog.h"

#include "tidemark.pb-c.h"

typedef struct tm_backup_verdict {
    int state;      /* TIDEMARK__TASK_STATE__TASK_SUCCEEDED / _PARTIAL / _FAILED */
    int retryable;  /* FAILED: another attempt may do better (not auth, no space...) */
    char **missing; /* required repositories that lack the backup (malloc'd) */
    size_t n_missing;
    char reason[TM_ERR_MSG_MAX]; /* PARTIAL / FAILED: where it is missing and why */
} tm_backup_verdict;

void tm_backup_verdict_clear(tm_backup_verdict *v);

/* The decision itself, on data alone (unit-tested). r is the agent's
 * result (its repositories, and repository_outcomes when present; when
 * absent, outcomes are added to r for each repository of `known` and
 * `r->repositories`, so `task show` names every one). required: the
 * policy's repository names (0 = every repository written). known: the
 * agent's repositories as its heartbeats reported them (may be empty). */
int tm_outcome_decide(Tidemark__TaskResult *r, char *const *required, size_t n_required,
                      Tidemark__RepositoryStatus *const *known, size_t n_known,
                      tm_backup_verdict *v, tm_err *err);

/* The dispatcher's hook (tm_dispatcher_on_backup): the policy of t's target
 * and its agent's repositories from the catalog, then tm_outcome_decide on
 * t->result. arg is a tm_outcome_ctx. */
typedef struct tm_outcome_ctx {
    const tm_coordinator_conf *conf;
    tm_catalog *cat;
} tm_outcome_ctx;
int tm_outcome_backup(void *arg, Tidemark__Task *t, tm_backup_verdict *v, tm_err *err);

#endif
