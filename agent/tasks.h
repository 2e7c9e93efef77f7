/*
 * tasks.h - the agent's task runner: long-polls the coordinator for work,
 * runs it through the target's engine, keeps the lease alive while it runs,
 * and reports the result until the coordinator has it.
 */
#ifndef TM_AGENT_TASKS_H
#define TM_AGENT_TASKS_H

#include "common/config.h"
#include "common/rpc.h"

typedef struct tm_runner tm_runner;

/* Starts the runner thread. The client must already carry the agent's
 * credential and outlive the runner. */
int tm_runner_start(tm_runner **out, const tm_agent_conf *conf, tm_rpc_client *rpc, tm_err *err);
/* Ask it to stop (a running task is told it is cancelled). */
void tm_runner_stop(tm_runner *r);
/* Join and free; call after tm_runner_stop and after the client's calls
 * have been interrupted (tm_rpc_client_shutdown). */
void tm_runner_free(tm_runner *r);

#endif
