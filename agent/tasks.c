/*
 * tasks.c - the task runner thread.
 *
 * One task at a time per agent (the coordinator's concurrency limits decide
 * what an agent gets). While an engine works, a keepalive thread reports the
 * latest progress every quarter lease, which extends the lease and is how a
 * cancel reaches the engine. The result is reported with a fixed request id
 * until the coordinator acknowledges it, so a resend cannot complete a task
 * twice.
 */
#include "agent/tasks.h"
#include "agent/engine.h"
#include "agent/expire.h"
#include "agent/replication.h"
#include "common/log.h"
#include "common/names.h"
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_WAIT_MS 20000
#define POLL_SLACK_MS 10000

struct tm_runner {
    const tm_agent_conf *conf;
    tm_rpc_client *rpc;
    pthread_t thread;
    int started;
    atomic_int stopping;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

struct tm_task_ctx {
    tm_runner *r;
    const Tidemark__Task *task;
    const tm_target_conf *target;
    uint32_t lease_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char phase[32];
    uint64_t bytes_done, bytes_total;
    uint32_t files_done, files_total;
    atomic_int cancelled;
    int done; /* the engine returned: stop the keepalive */
};

const tm_agent_conf *tm_task_conf(tm_task_ctx *ctx)
{
    return ctx->r->conf;
}

const tm_target_conf *tm_task_target(tm_task_ctx *ctx)
{
    return ctx->target;
}

void tm_task_progress(tm_task_ctx *ctx, const char *phase, uint64_t bytes_done,
                      uint64_t bytes_total, uint32_t files_done, uint32_t files_total)
{
    pthread_mutex_lock(&ctx->mu);
    snprintf(ctx->phase, sizeof(ctx->phase), "%s", phase ? phase : "");
    ctx->bytes_done = bytes_done;
    ctx->bytes_total = bytes_total;
    ctx->files_done = files_done;
    ctx->files_total = files_total;
    pthread_mutex_unlock(&ctx->mu);
}

int tm_task_cancelled(tm_task_ctx *ctx)
{
    return atomic_load(&ctx->cancelled) || atomic_load(&ctx->r->stopping);
}

/* Wait on cv for up to ms; returns early when signalled. */
static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms)
{
    struct timespec ts;
    tm_deadline_after_ms(&ts, ms);
    pthread_cond_timedwait(cv, mu, &ts);
}

static void report_progress(tm_task_ctx *ctx)
{
    Tidemark__ProgressReport req = TIDEMARK__PROGRESS_REPORT__INIT;
    Tidemark__Progress p = TIDEMARK__PROGRESS__INIT;
    char phase[32];
    pthread_mutex_lock(&ctx->mu);
    memcpy(phase, ctx->phase, sizeof(phase));
    p.has_bytes_done = p.has_bytes_total = p.has_files_done = p.has_files_total = 1;
    p.bytes_done = ctx->bytes_done;
    p.bytes_total = ctx->bytes_total;
    p.files_done = ctx->files_done;
    p.files_total = ctx->files_total;
    pthread_mutex_unlock(&ctx->mu);
    p.phase = phase;
    req.task_id = ctx->task->id;
    req.progress = &p;
    Tidemark__ProgressAck *ack = NULL;
    tm_err err = {0};
    int rc = tm_rpc_client_call(ctx->r->rpc, "Coordinator.ReportProgress", &req.base,
                                &tidemark__progress_ack__descriptor, (ProtobufCMessage **)&ack,
                                ctx->r->conf->rpc_timeout_ms, NULL, &err);
    if (rc == TM_OK) {
        if (ack->has_cancel && ack->cancel && !atomic_exchange(&ctx->cancelled, 1)) {
            tm_warn("runner", "event=cancel_requested task=%s", ctx->task->id);
        }
        tidemark__progress_ack__free_unpacked(ack, NULL);
    } else if (rc == TM_ERPC && err.status != TM_RPC_UNAVAILABLE) {
        /* The coordinator no longer counts this task as ours (lease expired
         * and it was given to another attempt, or it was cancelled). */
        if (!atomic_exchange(&ctx->cancelled, 1)) {
            tm_warn("runner", "event=task_lost task=%s msg=\"%s\"", ctx->task->id, err.msg);
        }
    } else {
        tm_debug("runner", "event=progress_failed task=%s msg=\"%s\"", ctx->task->id, err.msg);
    }
}

static void *keepalive_main(void *arg)
{
    tm_task_ctx *ctx = arg;
    uint64_t every = ctx->lease_ms / 4;
    if (every > 5000) {
        every = 5000;
    }
    if (every < 100) {
        every = 100;
    }
    pthread_mutex_lock(&ctx->mu);
    while (!ctx->done) {
        timed_wait(&ctx->cv, &ctx->mu, every);
        if (ctx->done) {
            break;
        }
        pthread_mutex_unlock(&ctx->mu);
        report_progress(ctx);
        pthread_mutex_lock(&ctx->mu);
    }
    pthread_mutex_unlock(&ctx->mu);
    return NULL;
}

static int retryable_code(int code)
{
    return code == TM_EIO || code == TM_EUNAVAIL || code == TM_ETIMEDOUT || code == TM_ENOSPC ||
           code == TM_EBUSY;
}

/* Report the outcome until the coordinator has it (or we are stopping and
 * tried once: the lease will expire and the coordinator decides). */
static void complete(tm_runner *r, const Tidemark__Task *task, int ok, const char *error,
                     int retryable, Tidemark__TaskResult *result)
{
    Tidemark__CompleteTaskRequest req = TIDEMARK__COMPLETE_TASK_REQUEST__INIT;
    req.task_id = task->id;
    req.has_ok = req.has_retryable = 1;
    req.ok = ok;
    req.retryable = retryable;
    req.error = (char *)error;
    req.result = result;
    char rid[96];
    snprintf(rid, sizeof(rid), "complete-%s-%u", task->id, task->attempt);
    uint64_t delay = 500;
    for (int attempt = 0;; attempt++) {
        Tidemark__CompleteTaskResponse *resp = NULL;
        tm_err err = {0};
        int rc = tm_rpc_client_call(r->rpc, "Coordinator.CompleteTask", &req.base,
                                    &tidemark__complete_task_response__descriptor,
                                    (ProtobufCMessage **)&resp, r->conf->rpc_timeout_ms, rid, &err);
        if (rc == TM_OK) {
            int st = resp->has_state ? (int)resp->state : 0;
            tm_info("runner", "event=completed task=%s ok=%d coordinator_state=%s", task->id, ok,
                    tm_task_state_name(st));
            tidemark__complete_task_response__free_unpacked(resp, NULL);
            return;
        }
        if (rc == TM_ERPC && err.status != TM_RPC_UNAVAILABLE) {
            tm_error("runner", "event=complete_refused task=%s msg=\"%s\"", task->id, err.msg);
            return;
        }
        if (atomic_load(&r->stopping) && attempt > 0) {
            tm_warn("runner", "event=complete_abandoned task=%s msg=\"%s\"", task->id, err.msg);
            return;
        }
        pthread_mutex_lock(&r->mu);
        timed_wait(&r->cv, &r->mu, delay);
        pthread_mutex_unlock(&r->mu);
        if (delay < 30000) {
            delay *= 2;
        }
    }
}

static void run_task(tm_runner *r, const Tidemark__Task *task, uint32_t lease_ms)
{
    tm_task_ctx ctx = {.r = r, .task = task, .lease_ms = lease_ms ? lease_ms : 60000};
    pthread_mutex_init(&ctx.mu, NULL);
    pthread_cond_init(&ctx.cv, NULL);
    for (size_t i = 0; i < r->conf->n_targets; i++) {
        if (task->target != NULL && strcmp(r->conf->targets[i].name, task->target) == 0) {
            ctx.target = &r->conf->targets[i];
        }
    }
    tm_info("runner", "event=started task=%s kind=%s target=%s attempt=%u", task->id,
            tm_task_kind_name(task->kind), task->target, task->attempt);
    uint64_t t0 = tm_mono_ns();
    pthread_t ka;
    int ka_ok = pthread_create(&ka, NULL, keepalive_main, &ctx) == 0;

    Tidemark__TaskResult *result = malloc(sizeof(*result));
    tm_err err = {0};
    int rc;
    const tm_engine *e = tm_engine_find(task->target_kind);
    int (*fn)(tm_task_ctx *, const Tidemark__Task *, Tidemark__TaskResult *, tm_err *) = NULL;
    if (task->kind == TIDEMARK__TASK_KIND__EXPIRE) {
        fn = tm_expire_task; /* engine-independent (the engine only names its logs) */
    } else if (e != NULL) {
        fn = task->kind == TIDEMARK__TASK_KIND__BACKUP    ? e->backup
             : task->kind == TIDEMARK__TASK_KIND__RESTORE ? e->restore
             : task->kind == TIDEMARK__TASK_KIND__DRILL   ? e->drill
                                                          : NULL;
    }
    /* Replication works on stored bytes, the same for every engine. */
    if (task->kind == TIDEMARK__TASK_KIND__VERIFY && task->check != NULL) {
        fn = tm_replication_check_task;
    } else if (task->kind == TIDEMARK__TASK_KIND__COPY && task->copy != NULL) {
        fn = tm_replication_copy_task;
    }
    if (result == NULL) {
        rc = tm_err_set(&err, TM_ENOMEM, "out of memory");
    } else if (fn == NULL) {
        tidemark__task_result__init(result);
        rc = tm_err_set(&err, TM_EINVAL, "this agent (%s) cannot run %s tasks for target kind %d",
                        TIDEMARK_VERSION, tm_task_kind_name(task->kind), task->target_kind);
    } else {
        tidemark__task_result__init(result);
        rc = fn(&ctx, task, result, &err);
        if (rc == TM_OK && tm_task_cancelled(&ctx)) {
            rc = tm_err_set(&err, TM_EBUSY, "cancelled");
        }
    }
    pthread_mutex_lock(&ctx.mu);
    ctx.done = 1;
    pthread_cond_signal(&ctx.cv);
    pthread_mutex_unlock(&ctx.mu);
    if (ka_ok) {
        pthread_join(ka, NULL);
    }
    uint64_t ms = (tm_mono_ns() - t0) / 1000000;
    if (result != NULL) {
        result->has_duration_ms = 1;
        result->duration_ms = ms;
    }
    if (rc == TM_OK) {
        tm_info("runner", "event=finished task=%s duration_ms=%llu", task->id,
                (unsigned long long)ms);
        complete(r, task, 1, NULL, 0, result);
    } else {
        int retry = retryable_code(rc) && !atomic_load(&ctx.cancelled);
        tm_error("runner", "event=failed task=%s retryable=%d duration_ms=%llu msg=\"%s\"",
                 task->id, retry, (unsigned long long)ms, err.msg);
        complete(r, task, 0, err.msg, retry, result);
    }
    if (result != NULL) {
        tidemark__task_result__free_unpacked(result, NULL);
    }
    pthread_cond_destroy(&ctx.cv);
    pthread_mutex_destroy(&ctx.mu);
}

static void *runner_main(void *arg)
{
    tm_runner *r = arg;
    uint64_t backoff = 500;
    while (!atomic_load(&r->stopping)) {
        Tidemark__NextTaskRequest req = TIDEMARK__NEXT_TASK_REQUEST__INIT;
        Tidemark__NextTaskResponse *resp = NULL;
        tm_err err = {0};
        req.has_wait_ms = 1;
        req.wait_ms = POLL_WAIT_MS;
        int rc = tm_rpc_client_call(
            r->rpc, "Coordinator.NextTask", &req.base, &tidemark__next_task_response__descriptor,
            (ProtobufCMessage **)&resp, POLL_WAIT_MS + POLL_SLACK_MS, NULL, &err);
        if (rc != TM_OK) {
            if (atomic_load(&r->stopping)) {
                break;
            }
            /* Coordinator away, or we are pending approval: the heartbeat
             * loop logs outages; here we only wait and try again. */
            tm_debug("runner", "event=poll_failed msg=\"%s\"", err.msg);
            pthread_mutex_lock(&r->mu);
            timed_wait(&r->cv, &r->mu, backoff + tm_rand_below(backoff));
            pthread_mutex_unlock(&r->mu);
            if (backoff < 10000) {
                backoff *= 2;
            }
            continue;
        }
        backoff = 500;
        if (resp->task != NULL && resp->task->id != NULL) {
            run_task(r, resp->task, resp->has_lease_ms ? resp->lease_ms : 0);
        }
        tidemark__next_task_response__free_unpacked(resp, NULL);
    }
    return NULL;
}

int tm_runner_start(tm_runner **out, const tm_agent_conf *conf, tm_rpc_client *rpc, tm_err *err)
{
    tm_runner *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return tm_err_set(err, TM_ENOMEM, "runner: out of memory");
    }
    r->conf = conf;
    r->rpc = rpc;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, runner_main, r) != 0) {
        tm_runner_free(r);
        return tm_err_set(err, TM_EINTERNAL, "runner: cannot start thread");
    }
    r->started = 1;
    *out = r;
    return TM_OK;
}

void tm_runner_stop(tm_runner *r)
{
    if (r == NULL) {
        return;
    }
    atomic_store(&r->stopping, 1);
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void tm_runner_free(tm_runner *r)
{
    if (r == NULL) {
        return;
    }
    if (r->started) {
        pthread_join(r->thread, NULL);
    }
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
