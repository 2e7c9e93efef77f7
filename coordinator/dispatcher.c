/*
 * dispatcher.c - leasing, long-polled delivery, progress, completion, retry.
 *
 * All state that matters is in the catalog; the only thing held in memory is
 * the list of parked NextTask calls (agents waiting for work). One mutex
 * serialises leasing so two polls can never lease the same task.
 */
#include "coordinator/dispatcher.h"
#include "coordinator/drills.h"
#include "common/log.h"
#include "common/names.h"
#include "common/util.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct parked {
    struct parked *next;
    char agent[64];
    tm_rpc_call *call;
    uint32_t conn;
    int64_t deadline_ms;
} parked;

struct tm_dispatcher {
    tm_catalog *cat;
    tm_dispatcher_opts o;
    pthread_mutex_t mu;
    parked *parked;
    parked *dead;         /* polls whose connection closed; answered on the next tick */
    int closed;           /* shutting down: park nothing */
    int64_t next_wake_ms; /* earliest not_before of a requeued task; 0 = none */
    tm_dispatcher_done_fn on_success;
    void *on_success_arg;
    tm_dispatcher_ended_fn on_done;
    void *on_done_arg;
    tm_dispatcher_verdict_fn on_backup;
    void *on_backup_arg;
};

static int64_t clock_ms(const tm_dispatcher *d)
{
    return d->o.clock != NULL ? d->o.clock(d->o.clock_arg) : tm_now_ms();
}

/* Append a note to t (what was decided about a late or stale report) and
 * log it: task show and tasks list explain from the notes. */
static void add_note(Tidemark__Task *t, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char **nv = realloc(t->notes, (t->n_notes + 1) * sizeof(*nv));
    if (nv == NULL) {
        return;
    }
    t->notes = nv;
    if ((nv[t->n_notes] = strdup(buf)) != NULL) {
        t->n_notes++;
    }
    tm_info("dispatcher", "event=note task=%s note=\"%s\"", t->id, buf);
}

/* Has t a note starting with prefix? (a resend must not act twice) */
static int has_note(const Tidemark__Task *t, const char *prefix)
{
    for (size_t i = 0; i < t->n_notes; i++) {
        if (strncmp(t->notes[i], prefix, strlen(prefix)) == 0) {
            return 1;
        }
    }
    return 0;
}

void tm_dispatcher_on_backup(tm_dispatcher *d, tm_dispatcher_verdict_fn fn, void *arg)
{
    d->on_backup = fn;
    d->on_backup_arg = arg;
}

void tm_dispatcher_on_done(tm_dispatcher *d, tm_dispatcher_ended_fn fn, void *arg)
{
    d->on_done = fn;
    d->on_done_arg = arg;
}

void tm_dispatcher_on_success(tm_dispatcher *d, tm_dispatcher_done_fn fn, void *arg)
{
    d->on_success = fn;
    d->on_success_arg = arg;
}

int tm_dispatcher_new(tm_dispatcher **out, tm_catalog *cat, const tm_dispatcher_opts *opts,
                      tm_err *err)
{
    tm_dispatcher *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return tm_err_set(err, TM_ENOMEM, "dispatcher: out of memory");
    }
    d->cat = cat;
    d->o = *opts;
    if (d->o.lease_ms == 0) {
        d->o.lease_ms = 60000;
    }
    if (d->o.max_attempts == 0) {
        d->o.max_attempts = 3;
    }
    if (d->o.retry_backoff_ms == 0) {
        d->o.retry_backoff_ms = 5000;
    }
    if (d->o.poll_max_ms == 0) {
        d->o.poll_max_ms = 25000;
    }
    pthread_mutex_init(&d->mu, NULL);
    /* Tasks requeued before a restart may be waiting on a backoff. */
    d->next_wake_ms = clock_ms(d);
    *out = d;
    return TM_OK;
}

/* Answer a parked call: with task (copied into the call's arena) or empty. */
static void answer(tm_dispatcher *d, tm_rpc_call *call, const Tidemark__Task *task)
{
    Tidemark__NextTaskResponse *resp = (Tidemark__NextTaskResponse *)tm_rpc_call_response(call);
    if (task != NULL) {
        size_t n = tidemark__task__get_packed_size(task);
        uint8_t *buf = tm_arena_alloc(tm_rpc_call_arena(call), n ? n : 1);
        if (buf != NULL) {
            tidemark__task__pack(task, buf);
            resp->task =
                tidemark__task__unpack(tm_arena_allocator(tm_rpc_call_arena(call)), n, buf);
        }
        resp->has_lease_ms = 1;
        resp->lease_ms = d->o.lease_ms;
    }
    tm_rpc_call_complete(call, TM_RPC_OK);
}

void tm_dispatcher_shutdown(tm_dispatcher *d)
{
    if (d == NULL) {
        return;
    }
    pthread_mutex_lock(&d->mu);
    d->closed = 1;
    parked *p = d->parked;
    d->parked = NULL;
    if (d->dead != NULL) {
        parked *last = d->dead;
        while (last->next != NULL) {
            last = last->next;
        }
        last->next = p;
        p = d->dead;
        d->dead = NULL;
    }
    pthread_mutex_unlock(&d->mu);
    while (p != NULL) {
        parked *n = p->next;
        answer(d, p->call, NULL);
        free(p);
        p = n;
    }
}

void tm_dispatcher_free(tm_dispatcher *d)
{
    if (d == NULL) {
        return;
    }
    tm_dispatcher_shutdown(d); /* idempotent; answers nothing twice */
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static void new_id(char *out, size_t cap)
{
    unsigned char rnd[6];
    char hex[13];
    tm_random_bytes(rnd, sizeof(rnd));
    tm_hex(rnd, sizeof(rnd), hex);
    char ts[32];
    time_t now = (time_t)tm_now_s();
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, cap, "task-%s-%s", ts, hex);
}

/* Lease the first eligible queued task of agent. Caller holds d->mu.
 * Returns TM_OK with *out, TM_ENOENT if nothing is eligible. */
static int lease_one(tm_dispatcher *d, const char *agent, int64_t now_ms, Tidemark__Task **out)
{
    Tidemark__Task **q = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_catalog_task_queued(d->cat, agent, now_ms, &q, &n, &err) != TM_OK) {
        tm_error("dispatcher", "event=queue_read_failed msg=\"%s\"", err.msg);
        return TM_EIO;
    }
    int rc = TM_ENOENT;
    for (size_t i = 0; i < n && rc == TM_ENOENT; i++) {
        Tidemark__Task *t = q[i];
        if (t->kind == TIDEMARK__TASK_KIND__BACKUP) {
            /* One backup of a target at a time: a full due while an
             * incremental runs waits for it. */
            int64_t running = 0;
            if (tm_catalog_task_count(d->cat, t->target, TIDEMARK__TASK_KIND__BACKUP,
                                      TIDEMARK__TASK_STATE__TASK_RUNNING, &running,
                                      &err) != TM_OK ||
                running > 0) {
                continue;
            }
        }
        t->state = TIDEMARK__TASK_STATE__TASK_RUNNING;
        t->has_state = 1;
        t->attempt++;
        t->has_attempt = 1;
        if (t->started_at == 0) {
            t->started_at = now_ms / 1000;
            t->has_started_at = 1;
        }
        t->lease_expires_at = now_ms + d->o.lease_ms;
        t->has_lease_expires_at = 1;
        if (tm_catalog_task_put(d->cat, t, &err) != TM_OK) {
            tm_error("dispatcher", "event=lease_failed task=%s msg=\"%s\"", t->id, err.msg);
            rc = TM_EIO;
            break;
        }
        tm_info("dispatcher", "event=leased task=%s kind=%s target=%s agent=%s attempt=%u", t->id,
                tm_task_kind_name(t->kind), t->target, agent, t->attempt);
        *out = t;
        q[i] = NULL;
        rc = TM_OK;
    }
    for (size_t i = 0; i < n; i++) {
        if (q[i] != NULL) {
            tidemark__task__free_unpacked(q[i], NULL);
        }
    }
    free(q);
    return rc;
}

/* Remove and return the parked call of agent, if any. Caller holds d->mu. */
static parked *unpark(tm_dispatcher *d, const char *agent)
{
    for (parked **pp = &d->parked; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->agent, agent) == 0) {
            parked *p = *pp;
            *pp = p->next;
            return p;
        }
    }
    return NULL;
}

/* Give a waiting agent its task now, if it is waiting and one is eligible. */
static void poke(tm_dispatcher *d, const char *agent, int64_t now_ms)
{
    Tidemark__Task *t = NULL;
    parked *p = NULL;
    pthread_mutex_lock(&d->mu);
    for (parked *q = d->parked; q != NULL; q = q->next) {
        if (strcmp(q->agent, agent) == 0) {
            if (lease_one(d, agent, now_ms, &t) == TM_OK) {
                p = unpark(d, agent);
            }
            break;
        }
    }
    pthread_mutex_unlock(&d->mu);
    if (p != NULL) {
        answer(d, p->call, t);
        free(p);
    }
    if (t != NULL) {
        tidemark__task__free_unpacked(t, NULL);
    }
}

/* Store a new queued task (no lease, no d->mu needed: the catalog locks). */
static int store_new(tm_dispatcher *d, const Tidemark__Task *in, const char *to_agent,
                     Tidemark__Task **out, tm_err *err)
{
    char *owner = NULL;
    int kind = 0;
    int rc = tm_catalog_target_owner(d->cat, in->target, &owner, &kind, err);
    if (rc != TM_OK) {
        return rc;
    }
    /* Work on a private copy: the caller's message may live in an arena. */
    size_t n = tidemark__task__get_packed_size(in);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        free(owner);
        return tm_err_set(err, TM_ENOMEM, "dispatcher: out of memory");
    }
    tidemark__task__pack(in, buf);
    Tidemark__Task *t = tidemark__task__unpack(NULL, n, buf);
    free(buf);
    if (t == NULL) {
        free(owner);
        return tm_err_set(err, TM_ENOMEM, "dispatcher: out of memory");
    }
    char id[64];
    new_id(id, sizeof(id));
    free(t->id);
    t->id = strdup(id);
    free(t->agent_id);
    t->agent_id = strdup(to_agent != NULL ? to_agent : owner);
    free(owner);
    t->has_state = t->has_created_at = t->has_max_attempts = t->has_target_kind = 1;
    t->state = TIDEMARK__TASK_STATE__TASK_QUEUED;
    t->created_at = clock_ms(d) / 1000;
    t->max_attempts = d->o.max_attempts;
    t->target_kind = (Tidemark__TargetKind)kind;
    if (t->id == NULL || t->agent_id == NULL) {
        tidemark__task__free_unpacked(t, NULL);
        return tm_err_set(err, TM_ENOMEM, "dispatcher: out of memory");
    }
    if ((rc = tm_catalog_task_put(d->cat, t, err)) != TM_OK) {
        tidemark__task__free_unpacked(t, NULL);
        return rc;
    }
    tm_info("dispatcher", "event=queued task=%s kind=%s target=%s agent=%s by=%s", t->id,
            tm_task_kind_name(t->kind), t->target, t->agent_id,
            t->requested_by ? t->requested_by : "-");
    *out = t;
    return TM_OK;
}

int tm_dispatcher_submit(tm_dispatcher *d, const Tidemark__Task *in, const char *to_agent,
                         Tidemark__Task **out, tm_err *err)
{
    Tidemark__Task *t = NULL;
    int rc = store_new(d, in, to_agent, &t, err);
    if (rc != TM_OK) {
        return rc;
    }
    poke(d, t->agent_id, clock_ms(d));
    /* Return the current state (poke may have leased it). */
    Tidemark__Task *now = NULL;
    if (tm_catalog_task_get(d->cat, t->id, &now, err) == TM_OK) {
        tidemark__task__free_unpacked(t, NULL);
        t = now;
    }
    *out = t;
    return TM_OK;
}

int tm_dispatcher_cancel(tm_dispatcher *d, const char *id, Tidemark__Task **out, tm_err *err)
{
    pthread_mutex_lock(&d->mu);
    Tidemark__Task *t = NULL;
    int rc = tm_catalog_task_get(d->cat, id, &t, err);
    if (rc == TM_OK) {
        if (t->state == TIDEMARK__TASK_STATE__TASK_QUEUED) {
            t->state = TIDEMARK__TASK_STATE__TASK_CANCELLED;
            t->finished_at = clock_ms(d) / 1000;
            t->has_finished_at = 1;
            free(t->error);
            t->error = strdup("cancelled before it started");
        } else if (t->state == TIDEMARK__TASK_STATE__TASK_RUNNING) {
            t->cancel_requested = 1;
            t->has_cancel_requested = 1;
        }
        rc = tm_catalog_task_put(d->cat, t, err);
        tm_info("dispatcher", "event=cancel task=%s state=%s", t->id, tm_task_state_name(t->state));
    }
    pthread_mutex_unlock(&d->mu);
    if (rc != TM_OK && t != NULL) {
        tidemark__task__free_unpacked(t, NULL);
        t = NULL;
    }
    *out = t;
    return rc;
}

int tm_dispatcher_next(tm_dispatcher *d, tm_rpc_call *call, const Tidemark__NextTaskRequest *req,
                       Tidemark__NextTaskResponse *resp)
{
    const char *agent = tm_rpc_call_principal(call);
    int64_t now = clock_ms(d);
    uint32_t wait = req->has_wait_ms ? req->wait_ms : 0;
    if (wait > d->o.poll_max_ms) {
        wait = d->o.poll_max_ms;
    }
    Tidemark__Task *t = NULL;
    parked *old = NULL;
    pthread_mutex_lock(&d->mu);
    if (d->closed) {
        pthread_mutex_unlock(&d->mu);
        return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "coordinator is stopping");
    }
    int rc = lease_one(d, agent, now, &t);
    if (rc == TM_OK || rc == TM_EIO || wait == 0) {
        pthread_mutex_unlock(&d->mu);
        if (rc == TM_EIO) {
            return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog unavailable; retry");
        }
        if (t != NULL) {
            Tidemark__NextTaskResponse *r = resp;
            size_t n = tidemark__task__get_packed_size(t);
            uint8_t *buf = tm_arena_alloc(tm_rpc_call_arena(call), n ? n : 1);
            if (buf == NULL) {
                tidemark__task__free_unpacked(t, NULL);
                return tm_rpc_call_error(call, TM_RPC_RESOURCE_EXHAUSTED, "out of memory");
            }
            tidemark__task__pack(t, buf);
            r->task = tidemark__task__unpack(tm_arena_allocator(tm_rpc_call_arena(call)), n, buf);
            r->has_lease_ms = 1;
            r->lease_ms = d->o.lease_ms;
            tidemark__task__free_unpacked(t, NULL);
        }
        return TM_RPC_OK;
    }
    /* Nothing yet: park. A second poll from the same agent (a resend after a
     * reconnect) replaces the first, which is answered empty. */
    parked *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        pthread_mutex_unlock(&d->mu);
        return TM_RPC_OK;
    }
    old = unpark(d, agent);
    snprintf(p->agent, sizeof(p->agent), "%s", agent);
    p->call = call;
    p->conn = tm_rpc_call_conn(call);
    p->deadline_ms = now + wait;
    p->next = d->parked;
    d->parked = p;
    pthread_mutex_unlock(&d->mu);
    if (old != NULL) {
        answer(d, old->call, NULL);
        free(old);
    }
    return TM_RPC_PENDING;
}

/* The task this call may act on: leased to the caller and running. */
static int own_task(tm_dispatcher *d, tm_rpc_call *call, const char *id, Tidemark__Task **out)
{
    tm_err err;
    if (id == NULL || id[0] == '\0') {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "task_id required");
    }
    int rc = tm_catalog_task_get(d->cat, id, out, &err);
    if (rc == TM_ENOENT) {
        return tm_rpc_call_error(call, TM_RPC_NOT_FOUND, "no task %s", id);
    }
    if (rc != TM_OK) {
        return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err.msg);
    }
    if ((*out)->agent_id == NULL || strcmp((*out)->agent_id, tm_rpc_call_principal(call)) != 0) {
        tidemark__task__free_unpacked(*out, NULL);
        *out = NULL;
        return tm_rpc_call_error(call, TM_RPC_PERMISSION_DENIED, "task %s is not yours", id);
    }
    return TM_RPC_OK;
}

int tm_dispatcher_progress(tm_dispatcher *d, tm_rpc_call *call, const Tidemark__ProgressReport *req,
                           Tidemark__ProgressAck *resp)
{
    Tidemark__Task *t = NULL;
    int64_t now = clock_ms(d);
    pthread_mutex_lock(&d->mu);
    int code = own_task(d, call, req->task_id, &t);
    if (code != TM_RPC_OK) {
        pthread_mutex_unlock(&d->mu);
        return code;
    }
    /* Older agents do not name the attempt: they report on the current one. */
    uint32_t att = req->has_attempt && req->attempt > 0 ? req->attempt : t->attempt;
    if (att != t->attempt) {
        code = tm_rpc_call_error(call, att < t->attempt ? TM_RPC_ABORTED : TM_RPC_INVALID_ARGUMENT,
                                 "stale attempt %u, the task is on attempt %u", att, t->attempt);
        tidemark__task__free_unpacked(t, NULL);
        pthread_mutex_unlock(&d->mu);
        return code;
    }
    if (t->state == TIDEMARK__TASK_STATE__TASK_QUEUED && t->expired_attempt == att) {
        /* The lease ran out while the coordinator could not hear the agent
         * (an outage), but the attempt still works and nothing else has
         * started: take the task back rather than run it twice. */
        add_note(t, "attempt %u reported again %lld s after its lease expired: taken back", att,
                 (long long)((now - t->lease_expires_at) / 1000));
        t->state = TIDEMARK__TASK_STATE__TASK_RUNNING;
        t->not_before = 0;
        free(t->error);
        t->error = NULL;
    }
    if (t->state != TIDEMARK__TASK_STATE__TASK_RUNNING) {
        code = tm_rpc_call_error(call, TM_RPC_FAILED_PRECONDITION,
                                 "task %s is %s, not running: stop working on it", t->id,
                                 tm_task_state_name(t->state));
        tidemark__task__free_unpacked(t, NULL);
        pthread_mutex_unlock(&d->mu);
        return code;
    }
    if (req->progress != NULL) {
        Tidemark__Progress *p = malloc(sizeof(*p));
        if (p != NULL) {
            tidemark__progress__init(p);
            p->phase = req->progress->phase ? strdup(req->progress->phase) : NULL;
            p->has_bytes_done = p->has_bytes_total = p->has_files_done = p->has_files_total = 1;
            p->bytes_done = req->progress->bytes_done;
            p->bytes_total = req->progress->bytes_total;
            p->files_done = req->progress->files_done;
            p->files_total = req->progress->files_total;
            if (t->progress != NULL) {
                tidemark__progress__free_unpacked(t->progress, NULL);
            }
            t->progress = p;
        }
    }
    t->lease_expires_at = now + d->o.lease_ms;
    tm_err err;
    if (tm_catalog_task_put(d->cat, t, &err) != TM_OK) {
        tidemark__task__free_unpacked(t, NULL);
        pthread_mutex_unlock(&d->mu);
        return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err.msg);
    }
    pthread_mutex_unlock(&d->mu);
    resp->has_cancel = resp->has_lease_expires_at = 1;
    resp->cancel = t->cancel_requested;
    resp->lease_expires_at = t->lease_expires_at;
    tidemark__task__free_unpacked(t, NULL);
    return TM_RPC_OK;
}

/* Fail or requeue t (caller holds d->mu); returns the new state. */
static int fail_or_retry(tm_dispatcher *d, Tidemark__Task *t, const char *why, int retryable,
                         int64_t now_ms)
{
    free(t->error);
    t->error = strdup(why);
    if (t->cancel_requested) {
        t->state = TIDEMARK__TASK_STATE__TASK_CANCELLED;
    } else if (retryable && t->attempt < t->max_attempts) {
        uint64_t delay = d->o.retry_backoff_ms;
        for (uint32_t i = 1; i < t->attempt && delay < 3600000; i++) {
            delay *= 2;
        }
        t->state = TIDEMARK__TASK_STATE__TASK_QUEUED;
        t->not_before = now_ms + (int64_t)delay;
        t->has_not_before = 1;
        /* lease_expires_at stays: when a late result of this attempt comes,
         * the note says how late (only RUNNING tasks expire). */
        if (d->next_wake_ms == 0 || t->not_before < d->next_wake_ms) {
            d->next_wake_ms = t->not_before;
        }
    } else {
        t->state = TIDEMARK__TASK_STATE__TASK_FAILED;
    }
    if (t->state != TIDEMARK__TASK_STATE__TASK_QUEUED) {
        t->finished_at = now_ms / 1000;
        t->has_finished_at = 1;
    }
    tm_err err;
    if (tm_catalog_task_put(d->cat, t, &err) != TM_OK) {
        tm_error("dispatcher", "event=write_failed task=%s msg=\"%s\"", t->id, err.msg);
    }
    if (t->state == TIDEMARK__TASK_STATE__TASK_FAILED) {
        tm_error("dispatcher", "event=failed task=%s kind=%s target=%s attempts=%u error=\"%s\"",
                 t->id, tm_task_kind_name(t->kind), t->target, t->attempt, why);
    } else {
        tm_warn("dispatcher", "event=%s task=%s kind=%s target=%s attempt=%u error=\"%s\"",
                t->state == TIDEMARK__TASK_STATE__TASK_QUEUED ? "retry" : "cancelled", t->id,
                tm_task_kind_name(t->kind), t->target, t->attempt, why);
    }
    return t->state;
}

static int record_backup(tm_dispatcher *d, const Tidemark__Task *t, const tm_backup_verdict *v,
                         tm_err *err)
{
    const Tidemark__TaskResult *r = t->result;
    Tidemark__BackupInfo b = TIDEMARK__BACKUP_INFO__INIT;
    b.id = r->backup_id;
    b.target = t->target;
    b.has_type = 1;
    b.type = r->has_backup_type ? r->backup_type : t->backup_type;
    b.parent_id = r->parent_backup_id;
    b.agent_id = t->agent_id;
    b.task_id = t->id;
    b.has_started_at = b.has_finished_at = b.has_bytes = b.has_stored_bytes = b.has_files = 1;
    b.started_at = r->start_time ? r->start_time : t->started_at;
    b.finished_at = r->stop_time ? r->stop_time : t->finished_at;
    b.bytes = r->bytes;
    b.stored_bytes = r->stored_bytes;
    b.files = r->files;
    b.start_position = r->start_position;
    b.stop_position = r->stop_position;
    b.has_chain = r->has_chain;
    b.chain = r->chain;
    b.stop_log = r->stop_log;
    b.n_repositories = r->n_repositories;
    b.repositories = r->repositories;
    b.n_extra = r->n_extra;
    b.extra = r->extra;
    b.has_partial = 1;
    b.partial = v->state == TIDEMARK__TASK_STATE__TASK_PARTIAL;
    b.n_missing_repositories = v->n_missing;
    b.missing_repositories = v->missing;
    return tm_catalog_backup_put(d->cat, &b, err);
}

/* A result that is not recorded: an earlier attempt's (a later one has
 * started), or one of a task cancelled after its lease expired. The backup
 * it names is in the repositories with no catalog row: an EXPIRE task
 * deletes it from every repository (queued once, even if the agent resends).
 * Caller holds d->mu; t is stored with a note. Returns the refusal. */
static int refuse_result(tm_dispatcher *d, tm_rpc_call *call, Tidemark__Task *t, uint32_t att,
                         const Tidemark__CompleteTaskRequest *req)
{
    const char *bid = req->has_ok && req->ok && t->kind == TIDEMARK__TASK_KIND__BACKUP &&
                              req->result != NULL && req->result->backup_id != NULL &&
                              req->result->backup_id[0] != '\0'
                          ? req->result->backup_id
                          : NULL;
    char why[160];
    if (t->state == TIDEMARK__TASK_STATE__TASK_CANCELLED) {
        snprintf(why, sizeof(why), "task %s was cancelled; the result of attempt %u is discarded",
                 t->id, att);
    } else {
        snprintf(why, sizeof(why), "stale attempt %u, the task is on attempt %u", att, t->attempt);
    }
    char prefix[256];
    snprintf(prefix, sizeof(prefix), "result of attempt %u (backup %s) refused", att,
             bid != NULL ? bid : "none");
    if (has_note(t, prefix)) {
        return tm_rpc_call_error(call, TM_RPC_ABORTED, "%s (already refused)", why);
    }
    char cleanup[64] = "";
    if (bid != NULL) {
        Tidemark__ExpireBackup drop = TIDEMARK__EXPIRE_BACKUP__INIT, *dp = &drop;
        Tidemark__ExpireSpec spec = TIDEMARK__EXPIRE_SPEC__INIT;
        Tidemark__Task ct = TIDEMARK__TASK__INIT;
        char reason[256];
        snprintf(reason, sizeof(reason), "result of attempt %u of task %s refused: %s", att, t->id,
                 why);
        drop.id = (char *)bid;
        drop.reason = reason;
        drop.has_type = 1;
        drop.type = req->result->has_backup_type ? req->result->backup_type : t->backup_type;
        spec.drop = &dp;
        spec.n_drop = 1;
        ct.has_kind = 1;
        ct.kind = TIDEMARK__TASK_KIND__EXPIRE;
        ct.target = t->target;
        ct.expire = &spec;
        ct.requested_by = "attempt-cleanup";
        Tidemark__Task *q = NULL;
        tm_err err;
        if (store_new(d, &ct, t->agent_id, &q, &err) != TM_OK) {
            /* Not refused yet: the agent resends and we try again. */
            return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "cannot queue the cleanup of %s: %s",
                                     bid, err.msg);
        }
        snprintf(cleanup, sizeof(cleanup), "%s", q->id);
        tidemark__task__free_unpacked(q, NULL);
        int64_t now = clock_ms(d);
        if (d->next_wake_ms == 0 || d->next_wake_ms > now) {
            d->next_wake_ms = now; /* offer it on the next tick */
        }
    }
    add_note(t, "%s: %s%s%s", prefix, why,
             cleanup[0] ? "; its objects are deleted from every repository by task " : "", cleanup);
    tm_err err;
    if (tm_catalog_task_put(d->cat, t, &err) != TM_OK) {
        tm_error("dispatcher", "event=write_failed task=%s msg=\"%s\"", t->id, err.msg);
    }
    if (cleanup[0]) {
        return tm_rpc_call_error(call, TM_RPC_ABORTED, "%s; backup %s is deleted by task %s", why,
                                 bid, cleanup);
    }
    return tm_rpc_call_error(call, TM_RPC_ABORTED, "%s", why);
}

int tm_dispatcher_complete(tm_dispatcher *d, tm_rpc_call *call,
                           const Tidemark__CompleteTaskRequest *req,
                           Tidemark__CompleteTaskResponse *resp)
{
    Tidemark__Task *t = NULL;
    int64_t now = clock_ms(d);
    pthread_mutex_lock(&d->mu);
    int code = own_task(d, call, req->task_id, &t);
    if (code != TM_RPC_OK) {
        pthread_mutex_unlock(&d->mu);
        return code;
    }
    /* Older agents do not name the attempt: their result is the current one's. */
    uint32_t att = req->has_attempt && req->attempt > 0 ? req->attempt : t->attempt;
    int late = 0;
    if (att > t->attempt) {
        code =
            tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT,
                              "attempt %u of task %s was never leased (the task is on attempt %u)",
                              att, t->id, t->attempt);
    } else if (att < t->attempt ||
               (t->state == TIDEMARK__TASK_STATE__TASK_CANCELLED && t->expired_attempt == att)) {
        code = refuse_result(d, call, t, att, req);
    } else if (t->state != TIDEMARK__TASK_STATE__TASK_RUNNING) {
        late = t->expired_attempt == att && (t->state == TIDEMARK__TASK_STATE__TASK_QUEUED ||
                                             t->state == TIDEMARK__TASK_STATE__TASK_FAILED);
        if (late && !(req->has_ok && req->ok)) {
            /* The retry the expiry decided on stands; say what came. */
            char prefix[64];
            snprintf(prefix, sizeof(prefix), "attempt %u reported a failure", att);
            if (!has_note(t, prefix)) {
                tm_err err;
                add_note(t, "%s %lld s after its lease expired: %s", prefix,
                         (long long)((now - t->lease_expires_at) / 1000),
                         req->error ? req->error : "no reason");
                if (tm_catalog_task_put(d->cat, t, &err) != TM_OK) {
                    tm_error("dispatcher", "event=write_failed task=%s msg=\"%s\"", t->id, err.msg);
                }
            }
            late = 0;
        }
        if (!late) {
            /* Already decided (a resend): the answer is the decision. */
            resp->has_state = 1;
            resp->state = t->state;
            tidemark__task__free_unpacked(t, NULL);
            pthread_mutex_unlock(&d->mu);
            return TM_RPC_OK;
        }
    }
    if (code != TM_RPC_OK) {
        tidemark__task__free_unpacked(t, NULL);
        pthread_mutex_unlock(&d->mu);
        return code;
    }
    if (late) {
        /* The attempt whose lease expired finished and nothing else has
         * started: record its result once instead of running it again. */
        add_note(t, "result of attempt %u delivered %lld s late, recorded", att,
                 (long long)((now - t->lease_expires_at) / 1000));
        t->state = TIDEMARK__TASK_STATE__TASK_RUNNING;
        t->not_before = 0;
    } else if (t->lease_expires_at > 0 && now > t->lease_expires_at) {
        /* Its lease ran out, but no sweep has expired it yet (a coordinator
         * just back from an outage hears the agent before its first sweep):
         * the same truth as the late path above, said the same way. */
        add_note(t, "result of attempt %u delivered %lld s late, recorded", att,
                 (long long)((now - t->lease_expires_at) / 1000));
    }
    if (!late && t->cancel_requested && req->has_ok && req->ok) {
        add_note(t, "cancel requested, but attempt %u had already finished: result recorded", att);
    }
    int ok = req->has_ok && req->ok;
    if (ok && t->kind == TIDEMARK__TASK_KIND__BACKUP &&
        (req->result == NULL || req->result->backup_id == NULL || req->result->backup_id[0] == 0)) {
        ok = 0; /* the coordinator decides success: no backup id, no backup */
    }
    if (ok && t->kind == TIDEMARK__TASK_KIND__EXPIRE &&
        (req->result == NULL || req->result->expire == NULL)) {
        ok = 0; /* no per-repository report, no deletion on record */
    }
    if (req->result != NULL) {
        size_t n = tidemark__task_result__get_packed_size(req->result);
        uint8_t *buf = malloc(n ? n : 1);
        if (buf != NULL) {
            tidemark__task_result__pack(req->result, buf);
            if (t->result != NULL) {
                tidemark__task_result__free_unpacked(t->result, NULL);
            }
            t->result = tidemark__task_result__unpack(NULL, n, buf);
            free(buf);
        }
    }
    tm_err err;
    /* Succeeded, partial or failed: every required repository must hold it. */
    tm_backup_verdict v = {.state = TIDEMARK__TASK_STATE__TASK_SUCCEEDED};
    if (ok && t->kind == TIDEMARK__TASK_KIND__BACKUP && t->result != NULL && d->on_backup != NULL) {
        if (d->on_backup(d->on_backup_arg, t, &v, &err) != TM_OK) {
            tidemark__task__free_unpacked(t, NULL);
            pthread_mutex_unlock(&d->mu);
            return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err.msg);
        }
        ok = v.state != TIDEMARK__TASK_STATE__TASK_FAILED;
    }
    if (ok) {
        t->state = v.state;
        t->finished_at = now / 1000;
        t->has_finished_at = 1;
        free(t->error);
        t->error = v.state == TIDEMARK__TASK_STATE__TASK_PARTIAL ? strdup(v.reason) : NULL;
        int rb = t->kind == TIDEMARK__TASK_KIND__BACKUP ? record_backup(d, t, &v, &err) : TM_OK;
        tm_backup_verdict_clear(&v);
        if (rb != TM_OK) {
            tidemark__task__free_unpacked(t, NULL);
            pthread_mutex_unlock(&d->mu);
            return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err.msg);
        }
        if (d->on_success != NULL && d->on_success(t, d->on_success_arg, &err) != TM_OK) {
            tidemark__task__free_unpacked(t, NULL);
            pthread_mutex_unlock(&d->mu);
            return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err.msg);
        }
        if (tm_catalog_task_put(d->cat, t, &err) != TM_OK) {
            tidemark__task__free_unpacked(t, NULL);
            pthread_mutex_unlock(&d->mu);
            return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err.msg);
        }
        tm_info("dispatcher", "event=%s task=%s kind=%s target=%s backup=%s%s%s%s",
                tm_task_state_name(t->state), t->id, tm_task_kind_name(t->kind), t->target,
                t->result && t->result->backup_id ? t->result->backup_id : "-",
                t->error ? " why=\"" : "", t->error ? t->error : "", t->error ? "\"" : "");
    } else {
        const char *why = v.state == TIDEMARK__TASK_STATE__TASK_FAILED ? v.reason
                          : req->error && req->error[0]                ? req->error
                          : !(req->has_ok && req->ok)                  ? "failed without a reason"
                          : t->kind == TIDEMARK__TASK_KIND__EXPIRE
                              ? "expire finished without a per-repository result"
                              : "backup finished without a backup id";
        fail_or_retry(d, t, why,
                      v.state == TIDEMARK__TASK_STATE__TASK_FAILED
                          ? v.retryable
                          : req->has_retryable && req->retryable,
                      now);
        tm_backup_verdict_clear(&v);
    }
    if (tm_drills_record(d->cat, t, &err) != TM_OK) {
        tm_error("dispatcher", "event=drill_record_failed task=%s msg=\"%s\"", t->id, err.msg);
    }
    resp->has_state = 1;
    resp->state = t->state;
    pthread_mutex_unlock(&d->mu);
    if (d->on_done != NULL && (t->state == TIDEMARK__TASK_STATE__TASK_SUCCEEDED ||
                               t->state == TIDEMARK__TASK_STATE__TASK_PARTIAL ||
                               t->state == TIDEMARK__TASK_STATE__TASK_FAILED)) {
        d->on_done(d->on_done_arg, t);
    }
    tidemark__task__free_unpacked(t, NULL);
    return TM_RPC_OK;
}

void tm_dispatcher_conn_closed(tm_dispatcher *d, uint32_t conn_id)
{
    pthread_mutex_lock(&d->mu);
    if (d->closed) {
        pthread_mutex_unlock(&d->mu);
        return; /* shutdown already answered every parked poll */
    }
    for (parked **pp = &d->parked; *pp != NULL;) {
        parked *p = *pp;
        if (p->conn == conn_id) {
            *pp = p->next;
            p->next = d->dead;
            d->dead = p;
            continue;
        }
        pp = &p->next;
    }
    pthread_mutex_unlock(&d->mu);
}

void tm_dispatcher_tick(tm_dispatcher *d, int64_t now_ms)
{
    /* Leases that ran out: the agent died or lost the coordinator. */
    Tidemark__Task **exp = NULL;
    size_t n = 0;
    tm_err err;
    pthread_mutex_lock(&d->mu);
    if (tm_catalog_task_expired(d->cat, now_ms, &exp, &n, &err) == TM_OK) {
        for (size_t i = 0; i < n; i++) {
            char why[160];
            snprintf(why, sizeof(why), "lease expired: agent %s stopped reporting",
                     exp[i]->agent_id);
            /* Remembered: a late report of this attempt may still be taken
             * back while no later attempt has started. */
            exp[i]->expired_attempt = exp[i]->attempt;
            exp[i]->has_expired_attempt = 1;
            add_note(exp[i], "lease of attempt %u expired: agent %s stopped reporting",
                     exp[i]->attempt, exp[i]->agent_id);
            fail_or_retry(d, exp[i], why, 1, now_ms);
            if (tm_drills_record(d->cat, exp[i], &err) != TM_OK) {
                tm_error("dispatcher", "event=drill_record_failed task=%s msg=\"%s\"", exp[i]->id,
                         err.msg);
            }
        }
        tm_catalog_tasks_free(exp, n);
    }

    /* Parked polls: answer the expired ones; when a backoff ends, offer
     * work to every waiting agent. */
    int wake = d->next_wake_ms != 0 && now_ms >= d->next_wake_ms;
    if (wake) {
        d->next_wake_ms = 0;
    }
    parked *done = d->dead;
    d->dead = NULL;
    Tidemark__Task *leased[64];
    parked *leased_to[64];
    size_t nl = 0;
    for (parked **pp = &d->parked; *pp != NULL;) {
        parked *p = *pp;
        Tidemark__Task *t = NULL;
        if (wake && nl < 64 && lease_one(d, p->agent, now_ms, &t) == TM_OK) {
            *pp = p->next;
            leased[nl] = t;
            leased_to[nl++] = p;
            continue;
        }
        if (now_ms >= p->deadline_ms) {
            *pp = p->next;
            p->next = done;
            done = p;
            continue;
        }
        pp = &p->next;
    }
    if (nl == 64) {
        d->next_wake_ms = now_ms; /* more agents may be waiting: look again next tick */
    }
    pthread_mutex_unlock(&d->mu);
    for (size_t i = 0; i < nl; i++) {
        answer(d, leased_to[i]->call, leased[i]);
        tidemark__task__free_unpacked(leased[i], NULL);
        free(leased_to[i]);
    }
    while (done != NULL) {
        parked *nx = done->next;
        answer(d, done->call, NULL);
        free(done);
        done = nx;
    }
}
