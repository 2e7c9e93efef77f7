/*
 * repo_health.h - the agent probes each repository periodically (one cheap
 * metadata request: a stat of a fixed key, where "not found" is healthy)
 * and the heartbeat carries the results to the coordinator, only when one
 * changed or every few beats, so beats stay small.
 */
#ifndef TM_AGENT_REPO_HEALTH_H
#define TM_AGENT_REPO_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"
#include "common/storage.h"

#include "tidemark.pb-c.h"

#define TM_HEALTH_MAX_REPOS 64
#define TM_HEALTH_PROBE_KEY "tidemark-probe"

/* One probe: TM_OK when the repository answered (the probe key being absent
 * is an answer), else the storage error. */
int tm_repo_probe(tm_storage *st, tm_err *err);

typedef struct tm_repo_health tm_repo_health;

/* Probe every interval_ms (first probe at once) on a thread of its own. */
int tm_repo_health_start(tm_repo_health **out, const tm_agent_conf *conf, uint32_t interval_ms,
                         tm_err *err);
void tm_repo_health_stop(tm_repo_health *h);
void tm_repo_health_free(tm_repo_health *h);

/* What a heartbeat carries: the latest results, valid until the next call. */
typedef struct tm_health_snapshot {
    Tidemark__RepositoryStatus msgs[TM_HEALTH_MAX_REPOS];
    Tidemark__RepositoryStatus *ptrs[TM_HEALTH_MAX_REPOS];
    char names[TM_HEALTH_MAX_REPOS][72];
    char regions[TM_HEALTH_MAX_REPOS][72];
    char errors[TM_HEALTH_MAX_REPOS][256];
    size_t n;
} tm_health_snapshot;

/* Fill snap when a result changed since the last taken snapshot, or force.
 * Returns snap->n (0 = nothing to send). */
size_t tm_repo_health_take(tm_repo_health *h, int force, tm_health_snapshot *snap);

#endif
