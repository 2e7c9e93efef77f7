/*
 * replication.h - the agent's side of cross-repository replication: the
 * VERIFY task with a ReplicationCheckSpec (is every backup and log file of
 * the target in every required repository, with the same stored digest?)
 * and the COPY task that repairs a repository from a good one. Neither
 * needs the master key: stored digests are compared, bytes copied verbatim.
 */
#ifndef TM_AGENT_REPLICATION_H
#define TM_AGENT_REPLICATION_H

#include "agent/engine.h"

/* Log files younger than this may still be on their way to the other
 * repositories (a push writes to all in parallel): not a gap yet. */
#define TM_REPL_SETTLE_S 10
/* Gap items reported per repository (the counts are always complete). */
#define TM_REPL_MAX_GAPS 1000

int tm_replication_check_task(tm_task_ctx *ctx, const Tidemark__Task *task,
                              Tidemark__TaskResult *result, tm_err *err);
int tm_replication_copy_task(tm_task_ctx *ctx, const Tidemark__Task *task,
                             Tidemark__TaskResult *result, tm_err *err);

#endif
