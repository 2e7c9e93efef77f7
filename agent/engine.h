/*
 * engine.h - the interface every database engine implements.
 *
 * An engine lives in its own folder (agent/engines/<kind>/) and is listed
 * once in agent/engine.c. The task runner hands it a task and a context for
 * progress and cancellation; the engine fills a structured result (sizes,
 * digests, LSNs, times) that the coordinator records. The coordinator, not
 * the engine's log, decides whether the task succeeded.
 */
#ifndef TM_ENGINE_H
#define TM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"

#include "repository.pb-c.h"
#include "tidemark.pb-c.h"

typedef struct tm_task_ctx tm_task_ctx;

typedef struct tm_engine {
    int kind;         /* tidemark.TargetKind */
    const char *name; /* "postgres" */
    /* Each returns TM_OK with *result filled (strings malloc'd; freed by the
     * runner with tidemark__task_result__free_unpacked semantics), or an error
     * in err. NULL = the engine does not support that task kind. */
    int (*backup)(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                  tm_err *err);
    int (*restore)(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                   tm_err *err);
    /* Restore drill: result->drill filled even when the drill fails. */
    int (*drill)(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                 tm_err *err);
    /* Retention (agent/expire.c): 1 when the archived log file rel (as the
     * log store names it, repo_log.h) is older than the start of the log
     * cutoff backup and no backup kept from the cutoff on needs it. cutoff:
     * that backup's manifest, or NULL when it could not be read (then the
     * spec's catalog values); when neither says where the backup started,
     * every file is kept (0). NULL = the engine keeps every log file. */
    int (*log_before)(const Tidemark__Manifest *cutoff, const Tidemark__ExpireSpec *spec,
                      const char *rel);
    /* Its `targets[].<name>:` block in agent.yaml (agent/engines/<name>/config.c);
     * NULL = the kind has no block. */
    const tm_target_schema *target_schema;
} tm_engine;

/* The engine for a target kind, or NULL. */
const tm_engine *tm_engine_find(int kind);
/* Every registered engine's target schema; *n gets the count. */
const tm_target_schema *const *tm_engine_target_schemas(size_t *n);
/* Hands those schemas to the config loader (tm_config_set_target_schemas):
 * call once at start, before an agent.yaml is loaded. */
void tm_engine_config_init(void);

/* ---- what an engine may use while it runs ---- */
const tm_agent_conf *tm_task_conf(tm_task_ctx *ctx);
/* The configured target the task is about (NULL for a restore of a target
 * this agent does not serve, e.g. on a staging host). */
const tm_target_conf *tm_task_target(tm_task_ctx *ctx);
/* Record progress; the runner reports it to the coordinator (and keeps the
 * lease alive) on its own schedule. Cheap: call it as often as you like. */
void tm_task_progress(tm_task_ctx *ctx, const char *phase, uint64_t bytes_done,
                      uint64_t bytes_total, uint32_t files_done, uint32_t files_total);
/* 1 once the operator cancelled the task or the agent is stopping: stop
 * soon, leave nothing half-visible, return an error. */
int tm_task_cancelled(tm_task_ctx *ctx);

#endif
