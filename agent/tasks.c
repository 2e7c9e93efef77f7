/*
 * tasks.c - the task runner thread.
 *
 * One task at a time per agent (the coordinator's concurrency limits decide
 * what an agent gets). While an engine works, a keepalive thread reports the
 * latest progress every quarter lease, which extends the lease and is how a
 * cancel reaches the engine.
 *
 * A finished task's result survives a coordinator outage and an agent
 * restart: it is written to <state_dir>/results/<task>.<attempt>.result
 * (temp file with O_EXCL, fsync, rename, directory fsync) before it is sent,
 * sent with retries and backoff until the coordinator gives a final reply
 * (OK, or a refusal such as ABORTED for a stale attempt), and only then
 * deleted. Files left by a previous run are delivered before the first poll.
 * Every report names its attempt; the coordinator decides what a late one
 * means. A request id is kept while no reply came (nng resends it; the
 * reply cache answers a duplicate) and replaced after an error reply, which
 * the server may have cached under the old id.
 */
#include "agent/tasks.h"
#include "agent/engine.h"
#include "agent/expire.h"
#include "agent/replication.h"
#include "agent/repo/repository.h"
#include "common/log.h"
#include "common/names.h"
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    req.has_attempt = 1;
    req.attempt = ctx->task->attempt;
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

/* Error replies worth sending again: the coordinator is busy or starting,
 * or our credential is being renewed. Anything else is its final word. */
static int retry_status(int status)
{
    return status == TM_RPC_UNAVAILABLE || status == TM_RPC_RESOURCE_EXHAUSTED ||
           status == TM_RPC_DEADLINE_EXCEEDED || status == TM_RPC_UNAUTHENTICATED;
}

static void new_rid(const Tidemark__CompleteTaskRequest *req, char *rid, size_t cap)
{
    unsigned char rnd[4];
    char hex[9];
    tm_random_bytes(rnd, sizeof(rnd));
    tm_hex(rnd, sizeof(rnd), hex);
    snprintf(rid, cap, "complete-%.40s-%u-%s", req->task_id, req->attempt, hex);
}

/* Send req until the coordinator gives a final reply, then delete its
 * durable copy at path (NULL: none). When stopping, give up after one try:
 * the file is delivered after the restart. */
static void deliver(tm_runner *r, const Tidemark__CompleteTaskRequest *req, const char *path)
{
    char rid[96];
    new_rid(req, rid, sizeof(rid));
    uint64_t delay = 500;
    for (int attempt = 0;; attempt++) {
        Tidemark__CompleteTaskResponse *resp = NULL;
        tm_err err = {0};
        int rc = tm_rpc_client_call(r->rpc, "Coordinator.CompleteTask", &req->base,
                                    &tidemark__complete_task_response__descriptor,
                                    (ProtobufCMessage **)&resp, r->conf->rpc_timeout_ms, rid, &err);
        if (rc == TM_OK) {
            int st = resp->has_state ? (int)resp->state : 0;
            tm_info("runner", "event=completed task=%s attempt=%u ok=%d coordinator_state=%s",
                    req->task_id, req->attempt, req->ok, tm_task_state_name(st));
            tidemark__complete_task_response__free_unpacked(resp, NULL);
            break;
        }
        if (rc == TM_ERPC && !retry_status(err.status)) {
            tm_error("runner", "event=complete_refused task=%s attempt=%u msg=\"%s\"", req->task_id,
                     req->attempt, err.msg);
            break;
        }
        if (rc == TM_ERPC) {
            /* The coordinator answered with an error; the same id could get
             * that cached answer again. */
            new_rid(req, rid, sizeof(rid));
        }
        if (atomic_load(&r->stopping) && attempt > 0) {
            tm_warn("runner", "event=complete_deferred task=%s attempt=%u kept=%s msg=\"%s\"",
                    req->task_id, req->attempt, path ? path : "-", err.msg);
            return;
        }
        if (attempt == 0 || delay >= 30000) {
            tm_warn("runner", "event=complete_retry task=%s attempt=%u msg=\"%s\"", req->task_id,
                    req->attempt, err.msg);
        }
        pthread_mutex_lock(&r->mu);
        timed_wait(&r->cv, &r->mu, delay + tm_rand_below(delay / 2 + 1));
        pthread_mutex_unlock(&r->mu);
        if (delay < 30000) {
            delay *= 2;
        }
    }
    if (path != NULL && unlink(path) != 0) {
        tm_warn("runner", "event=result_unlink_failed path=%s", path);
    }
}

/* <state_dir>/results, created on demand. */
static void results_dir(const tm_runner *r, char *out, size_t cap)
{
    snprintf(out, cap, "%s/results", r->conf->state_dir);
}

/* Keep req durably before it is sent. On failure *path is "" and the result
 * is only in memory (still sent; lost only if the agent also dies). */
static void save_result(tm_runner *r, const Tidemark__CompleteTaskRequest *req, char *path,
                        size_t cap)
{
    char dir[4096];
    tm_err err = {0};
    path[0] = '\0';
    results_dir(r, dir, sizeof(dir));
    for (const char *c = req->task_id; *c; c++) {
        if (!(*c == '-' || *c == '_' || *c == '.' || (*c >= '0' && *c <= '9') ||
              (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z'))) {
            tm_error("runner",
                     "event=result_not_saved task=%s msg=\"task id unfit for a file name\"",
                     req->task_id);
            return;
        }
    }
    size_t n = tidemark__complete_task_request__get_packed_size(req);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        tm_error("runner", "event=result_not_saved task=%s msg=\"out of memory\"", req->task_id);
        return;
    }
    tidemark__complete_task_request__pack(req, buf);
    snprintf(path, cap, "%s/%s.%u.result", dir, req->task_id, req->attempt);
    if (tm_mkdir_p(dir, 0700, &err) != TM_OK ||
        tm_file_write_atomic(path, buf, n, 0600, &err) != TM_OK) {
        tm_error("runner", "event=result_not_saved task=%s msg=\"%s\"", req->task_id, err.msg);
        path[0] = '\0';
    }
    free(buf);
}

/* Results a previous run finished but could not deliver (the coordinator
 * was away when the agent stopped, or the agent was killed). */
static void deliver_pending(tm_runner *r)
{
    char dir[4096];
    results_dir(r, dir, sizeof(dir));
    DIR *dh = opendir(dir);
    if (dh == NULL) {
        return;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dh)) != NULL) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.') {
            continue;
        }
        char path[4096 + 256];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (strstr(de->d_name, ".result.tmp.") != NULL) {
            unlink(path); /* a write the crash cut short: never sent */
            continue;
        }
        if (l < 8 || strcmp(de->d_name + l - 7, ".result") != 0) {
            continue;
        }
        char **nv = realloc(names, (n + 1) * sizeof(*nv));
        if (nv == NULL || (nv[n] = strdup(path)) == NULL) {
            names = nv != NULL ? nv : names;
            break;
        }
        names = nv;
        n++;
    }
    closedir(dh);
    for (size_t i = 0; i < n; i++) {
        char *buf = NULL;
        size_t len = 0;
        tm_err err = {0};
        if (atomic_load(&r->stopping)) {
            free(names[i]);
            continue;
        }
        if (tm_file_read(names[i], &buf, &len, &err) != TM_OK) {
            tm_error("runner", "event=result_unreadable path=%s msg=\"%s\"", names[i], err.msg);
            free(names[i]);
            continue;
        }
        Tidemark__CompleteTaskRequest *req =
            tidemark__complete_task_request__unpack(NULL, len, (const uint8_t *)buf);
        free(buf);
        if (req == NULL || req->task_id == NULL) {
            /* Kept aside, not deleted: an operator may want to look. */
            char bad[4096 + 300];
            snprintf(bad, sizeof(bad), "%s.bad", names[i]);
            tm_error("runner", "event=result_corrupt path=%s moved_to=%s", names[i], bad);
            rename(names[i], bad);
        } else {
            tm_info("runner", "event=result_redeliver task=%s attempt=%u ok=%d", req->task_id,
                    req->attempt, req->ok);
            deliver(r, req, names[i]);
        }
        if (req != NULL) {
            tidemark__complete_task_request__free_unpacked(req, NULL);
        }
        free(names[i]);
    }
    free(names);
}

/* Report the outcome: kept durably first, then sent until the coordinator
 * has decided. */
static void complete(tm_runner *r, const Tidemark__Task *task, int ok, const char *error,
                     int retryable, Tidemark__TaskResult *result)
{
    Tidemark__CompleteTaskRequest req = TIDEMARK__COMPLETE_TASK_REQUEST__INIT;
    req.task_id = task->id;
    req.has_ok = req.has_retryable = req.has_attempt = 1;
    req.ok = ok;
    req.retryable = retryable;
    req.error = (char *)error;
    req.result = result;
    req.attempt = task->attempt;
    char path[4096 + 256];
    save_result(r, &req, path, sizeof(path));
    deliver(r, &req, path[0] ? path : NULL);
}

/* Before a backup of target: delete what attempts that never finished left
 * (no manifest in any repository). Nothing of this target runs now: the
 * runner runs one task at a time. Returns what was deleted (malloc'd) or
 * NULL. A failure is logged; the backup runs anyway. */
static char *sweep_partial(tm_runner *r, const Tidemark__Task *task)
{
    if (task->target == NULL || !tm_repo_valid_name(task->target) || r->conf->n_repos == 0) {
        return NULL;
    }
    tm_repo_set *rs = NULL;
    tm_err err = {0};
    char *report = NULL;
    uint64_t t0 = tm_mono_ns();
    if (tm_repo_set_open(&rs, r->conf, 0, &err) != TM_OK ||
        tm_expire_sweep_partial(rs, task->target, &report, &err) != TM_OK) {
        tm_warn("runner", "event=sweep_failed task=%s target=%s msg=\"%s\"", task->id, task->target,
                err.msg);
    }
    tm_repo_set_free(rs);
    /* The sweep lists every repository: its cost is in the log. */
    unsigned long long ms = (unsigned long long)((tm_mono_ns() - t0) / 1000000);
    if (report != NULL) {
        tm_info("runner", "event=swept task=%s target=%s ms=%llu deleted=\"%s\"", task->id,
                task->target, ms, report);
    } else {
        tm_info("runner", "event=sweep_clean task=%s target=%s ms=%llu", task->id, task->target,
                ms);
    }
    return report;
}

/* Add key=value (value taken) to the result's extra figures. */
static void result_extra(Tidemark__TaskResult *result, const char *key, char *value)
{
    Tidemark__KeyValue *kv = malloc(sizeof(*kv));
    Tidemark__KeyValue **nv =
        kv != NULL ? realloc(result->extra, (result->n_extra + 1) * sizeof(*nv)) : NULL;
    if (nv == NULL) {
        free(kv);
        free(value);
        return;
    }
    result->extra = nv;
    tidemark__key_value__init(kv);
    kv->key = strdup(key);
    kv->value = value;
    nv[result->n_extra++] = kv;
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
        char *swept = task->kind == TIDEMARK__TASK_KIND__BACKUP ? sweep_partial(r, task) : NULL;
        rc = fn(&ctx, task, result, &err);
        if (swept != NULL) {
            result_extra(result, "swept_partial", swept);
        }
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
    /* Finished work first: a result kept over a restart is delivered
     * before anything new is taken. */
    deliver_pending(r);
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
