/*
 * coord_tasks.c - coordinator.yaml tasks: (leases, retries) and scheduler:
 * (concurrency limits, pause).
 */
#include "common/config/internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const cyaml_schema_field_t tm_cfg_tasks_fields[] = {
    STR("lease", OPT, struct raw_tasks, lease),
    CYAML_FIELD_INT("max_attempts", OPT, struct raw_tasks, max_attempts),
    STR("retry_backoff", OPT, struct raw_tasks, retry_backoff),
    STR("poll_max", OPT, struct raw_tasks, poll_max),
    CYAML_FIELD_END,
};

const cyaml_schema_field_t tm_cfg_scheduler_fields[] = {
    CYAML_FIELD_INT("max_tasks_per_agent", OPT, struct raw_scheduler, max_tasks_per_agent),
    CYAML_FIELD_INT("max_tasks_per_repository", OPT, struct raw_scheduler,
                    max_tasks_per_repository),
    CYAML_FIELD_BOOL("paused", OPT, struct raw_scheduler, paused),
    CYAML_FIELD_END,
};

int tm_cfg_coord_tasks(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const struct raw_tasks *t = &r->tasks;
    int rc = tm_cv_duration(v, "tasks.lease", t->lease, "60s", 1000, 86400000, &c->task_lease_ms);
    if (rc == 0) {
        rc = tm_cv_int(v, "tasks.max_attempts", t->max_attempts, 3, 1, 100, &c->task_max_attempts);
    }
    if (rc == 0) {
        rc = tm_cv_duration(v, "tasks.retry_backoff", t->retry_backoff, "5s", 100, 86400000,
                            &c->task_retry_backoff_ms);
    }
    if (rc == 0) {
        rc = tm_cv_duration(v, "tasks.poll_max", t->poll_max, "25s", 100, 600000,
                            &c->task_poll_max_ms);
    }
    return rc;
}

int tm_cfg_coord_scheduler(tm_cv *v, const struct raw_coordinator *r, tm_coordinator_conf *c)
{
    const struct raw_scheduler *s = &r->scheduler;
    int rc = tm_cv_int(v, "scheduler.max_tasks_per_agent", s->max_tasks_per_agent, 2, 0, 10000,
                       &c->sched_max_per_agent);
    if (rc == 0) {
        rc = tm_cv_int(v, "scheduler.max_tasks_per_repository", s->max_tasks_per_repository, 4, 0,
                       10000, &c->sched_max_per_repo);
    }
    c->sched_paused = s->paused;
    return rc;
}
