/*
 * dispatcher.h - tasks from submission to a terminal state.
 *
 * A task is queued in the catalog for the agent that serves its target (or
 * the agent a restore is sent to), leased to that agent when it asks
 * (NextTask, long-polled: a task reaches a waiting agent at once), kept alive
 * by progress reports, and finished by CompleteTask. An expired lease or a
 * retryable failure queues it again with exponential backoff until
 * max_attempts; then it fails. The coordinator, not a log line, decides
 * success: a backup task succeeds only with a result naming its backup.
 */
#ifndef TM_DISPATCHER_H
#define TM_DISPATCHER_H

#include <stdint.h>

#include "common/err.h"
#include "common/rpc.h"
#include "coordinator/catalog.h"

#include "coordinator/outcome.h"

#include "tidemark.pb-c.h"

typedef struct tm_dispatcher tm_dispatcher;

typedef struct tm_dispatcher_opts {
    uint32_t lease_ms;         /* default 60000 */
    uint32_t max_attempts;     /* default 3 */
    uint32_t retry_backoff_ms; /* first retry delay, doubled each attempt; default 5000 */
    uint32_t poll_max_ms;      /* longest NextTask park; default 25000 */
    /* Injected clock in unix ms (unit tests); NULL = wall time. */
    int64_t (*clock)(void *arg);
    void *clock_arg;
} tm_dispatcher_opts;

int tm_dispatcher_new(tm_dispatcher **out, tm_catalog *cat, const tm_dispatcher_opts *opts,
                      tm_err *err);
/* Answer every parked NextTask with "nothing to do" and park no more (a poll
 * is then answered UNAVAILABLE at once). Call while the RPC server can still
 * send; free the dispatcher only after the RPC server is gone, since nng
 * reports closing connections until then. */
void tm_dispatcher_shutdown(tm_dispatcher *d);
void tm_dispatcher_free(tm_dispatcher *d);

/* Called (under the dispatcher's lock) when a task succeeds, before its new
 * state is stored: what the catalog must learn from the result (retention:
 * the deleted backups). An error leaves the task running and answers the
 * agent UNAVAILABLE, so it reports again. One hook; set before serving. */
typedef int (*tm_dispatcher_done_fn)(const Tidemark__Task *t, void *arg, tm_err *err);
void tm_dispatcher_on_success(tm_dispatcher *d, tm_dispatcher_done_fn fn, void *arg);

/* Queue a task (kind, target, backup_type / restore, requested_by set by the
 * caller). to_agent: run on this agent instead of the target's own. On
 * success *out is the stored task (free with tidemark__task__free_unpacked). */
int tm_dispatcher_submit(tm_dispatcher *d, const Tidemark__Task *t, const char *to_agent,
                         Tidemark__Task **out, tm_err *err);
/* QUEUED -> CANCELLED at once; RUNNING -> cancel requested (the agent is
 * told on its next progress report). */
int tm_dispatcher_cancel(tm_dispatcher *d, const char *id, Tidemark__Task **out, tm_err *err);

/* NextTask handler body: answers now with a lease, or parks the call. */
int tm_dispatcher_next(tm_dispatcher *d, tm_rpc_call *call, const Tidemark__NextTaskRequest *req,
                       Tidemark__NextTaskResponse *resp);
int tm_dispatcher_progress(tm_dispatcher *d, tm_rpc_call *call, const Tidemark__ProgressReport *req,
                           Tidemark__ProgressAck *resp);
/* Reports name their attempt (Task.attempt of their lease). A report of an
 * expired lease is taken back while no later attempt has started: progress
 * resumes the lease, a result is recorded once (noted on the task). A report
 * of an earlier attempt is refused with ABORTED, and a backup it names is
 * deleted from every repository by a queued EXPIRE task. */
int tm_dispatcher_complete(tm_dispatcher *d, tm_rpc_call *call,
                           const Tidemark__CompleteTaskRequest *req,
                           Tidemark__CompleteTaskResponse *resp);

/* A connection closed: its parked polls are dropped (answered on the next
 * tick, into the void), so no task is leased to an agent that is gone.
 * Safe to call from an nng callback. */
void tm_dispatcher_conn_closed(tm_dispatcher *d, uint32_t conn_id);

/* Called (outside the dispatcher's lock, on the completing call's thread)
 * with every task an agent completed as SUCCEEDED, PARTIAL or terminally FAILED; the
 * replication checker follows backups, checks and copies this way. */
typedef void (*tm_dispatcher_ended_fn)(void *arg, const Tidemark__Task *t);
void tm_dispatcher_on_done(tm_dispatcher *d, tm_dispatcher_ended_fn fn, void *arg);

/* Called (under the dispatcher's lock) when an agent reports a BACKUP done
 * with a backup id: the verdict (outcome.h) makes it SUCCEEDED, PARTIAL
 * (recorded with its missing repositories) or FAILED. May add
 * repository_outcomes to t->result. An error answers the agent UNAVAILABLE.
 * Without a hook, every such backup succeeds. */
typedef int (*tm_dispatcher_verdict_fn)(void *arg, Tidemark__Task *t, tm_backup_verdict *v,
                                        tm_err *err);
void tm_dispatcher_on_backup(tm_dispatcher *d, tm_dispatcher_verdict_fn fn, void *arg);

/* Periodic work: expire leases, answer parked polls whose time is up. */
void tm_dispatcher_tick(tm_dispatcher *d, int64_t now_ms);

#endif
