/*
 * daemon.c - register, heartbeat, reconnect.
 *
 * Agents always dial out. When the coordinator is unreachable the agent keeps
 * its identity and retries with exponential backoff and jitter (so a fleet
 * does not reconnect in one burst), logging the outage once and its end once.
 */
#include "agent/daemon.h"
#include "agent/identity.h"
#include "agent/log_report.h"
#include "agent/repo/repo_health.h"
#include "agent/shipper.h"
#include "agent/tasks.h"
#include "common/log.h"
#include "common/names.h"
#include "common/rpc.h"
#include "common/shutdown.h"
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 200
/* The watchdog's bound on the teardown after SIGTERM. A clean teardown
 * waits for a running task to notice its cancellation and for the log
 * shippers and repository probes to return; under a sanitizer on a loaded
 * machine that took more than 4 s (test_faults and an engine's test), which
 * then exited 1 as "stuck". 12 s is still well inside systemd's stop
 * timeout (90 s) and the tests' bound on a stop (20 s); test_shutdown
 * holds the agent's usual stop to 5 s. */
#define SHUTDOWN_GRACE_MS 12000

struct tm_daemon {
    const tm_agent_conf *conf;
    tm_rpc_client *rpc;
    tm_runner *runner;
    tm_log_reporter *reporter; /* set and read under mu (shippers kick it) */
    tm_shippers *shippers;
    tm_repo_health *health;
    tm_health_snapshot snap; /* what the current beat carries */
    int health_resend;       /* the last beat with repository results failed */
    tm_identity id;
    int have_identity;
    int registered;
    uint32_t interval_ms;
    int state;
    uint64_t seq;
    int failures; /* consecutive failed calls */
    int outage;   /* an outage has been logged */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
};

int tm_daemon_new(tm_daemon **out, const tm_agent_conf *conf, tm_err *err)
{
    tm_daemon *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        return tm_err_set(err, TM_ENOMEM, "agent: out of memory");
    }
    d->conf = conf;
    d->interval_ms = 10000;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    int rc = tm_identity_load(conf->state_dir, &d->id, err);
    if (rc == TM_OK) {
        d->have_identity = 1;
    } else if (rc != TM_ENOENT) {
        tm_daemon_free(d);
        return rc;
    }
    if ((rc = tm_mkdir_p(conf->state_dir, 0700, err)) != TM_OK) {
        tm_daemon_free(d);
        return tm_err_prefix(err, "state_dir");
    }
    tm_rpc_client_opts co = {
        .url = conf->coordinator_url,
        .tls = conf->tls_enabled ? &conf->tls : NULL,
    };
    if ((rc = tm_rpc_client_new(&d->rpc, &co, err)) != TM_OK) {
        tm_daemon_free(d);
        return rc;
    }
    *out = d;
    return TM_OK;
}

void tm_daemon_free(tm_daemon *d)
{
    if (d == NULL) {
        return;
    }
    tm_rpc_client_free(d->rpc);
    memset(&d->id, 0, sizeof(d->id));
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

void tm_daemon_stop(tm_daemon *d)
{
    pthread_mutex_lock(&d->mu);
    d->stopping = 1;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* Sleep up to ms; returns 1 if asked to stop. */
static int sleep_ms(tm_daemon *d, uint64_t ms)
{
    struct timespec ts;
    tm_deadline_after_ms(&ts, ms);
    pthread_mutex_lock(&d->mu);
    while (!d->stopping) {
        if (pthread_cond_timedwait(&d->cv, &d->mu, &ts) != 0) {
            break;
        }
    }
    int stop = d->stopping;
    pthread_mutex_unlock(&d->mu);
    return stop;
}

/* Exponential backoff with "equal jitter": half fixed, half random. */
static uint64_t backoff_ms(tm_daemon *d)
{
    uint64_t cap = d->conf->backoff_max_ms;
    uint64_t b = BACKOFF_MIN_MS;
    for (int i = 1; i < d->failures && b < cap; i++) {
        b *= 2;
    }
    if (b > cap) {
        b = cap;
    }
    return b / 2 + tm_rand_below(b / 2 + 1);
}

static uint32_t call_timeout(tm_daemon *d)
{
    uint32_t t = d->conf->rpc_timeout_ms;
    if (d->registered && d->interval_ms < t) {
        t = d->interval_ms;
    }
    return t < 100 ? 100 : t;
}

static void note_failure(tm_daemon *d, const tm_err *err)
{
    d->failures++;
    if (!d->outage) {
        tm_warn("agent", "event=coordinator_unreachable url=%s msg=\"%s\"",
                d->conf->coordinator_url, err->msg);
        d->outage = 1;
    } else {
        tm_debug("agent", "event=retry failures=%d msg=\"%s\"", d->failures, err->msg);
    }
}

static void note_success(tm_daemon *d)
{
    if (d->outage) {
        tm_info("agent", "event=coordinator_reachable url=%s after_failures=%d",
                d->conf->coordinator_url, d->failures);
    }
    d->outage = 0;
    d->failures = 0;
}

static int do_register(tm_daemon *d)
{
    const tm_agent_conf *conf = d->conf;
    Tidemark__RegisterRequest req = TIDEMARK__REGISTER_REQUEST__INIT;
    Tidemark__Label labels[64], *lp[64];
    Tidemark__Target targets[256], *tp[256];
    req.enrollment_token = conf->enrollment_token;
    req.hostname = conf->hostname;
    req.version = TIDEMARK_VERSION;
    for (size_t i = 0; i < conf->n_labels && i < 64; i++) {
        tidemark__label__init(&labels[i]);
        labels[i].key = conf->labels[i].key;
        labels[i].value = conf->labels[i].value;
        lp[i] = &labels[i];
        req.n_labels++;
    }
    req.labels = lp;
    for (size_t i = 0; i < conf->n_targets && i < 256; i++) {
        tidemark__target__init(&targets[i]);
        targets[i].name = conf->targets[i].name;
        targets[i].has_kind = 1;
        targets[i].kind = (Tidemark__TargetKind)tm_target_kind_parse(conf->targets[i].kind);
        targets[i].engine_version = conf->targets[i].engine_version;
        tp[i] = &targets[i];
        req.n_targets++;
    }
    req.targets = tp;
    if (d->have_identity) {
        req.agent_id = d->id.id;
        req.agent_secret = d->id.secret;
    }
    /* Registration carries no agent credential. */
    tm_rpc_client_set_agent(d->rpc, NULL, NULL);
    Tidemark__RegisterResponse *resp = NULL;
    tm_err err = {0};
    int rc = tm_rpc_client_call(d->rpc, "Coordinator.RegisterAgent", &req.base,
                                &tidemark__register_response__descriptor,
                                (ProtobufCMessage **)&resp, call_timeout(d), NULL, &err);
    if (rc != TM_OK) {
        if (rc == TM_ERPC) {
            /* The coordinator answered: the problem is ours (token, target
             * conflict). Retrying fast would not help; keep the backoff. */
            d->failures++;
            tm_error("agent", "event=register_refused msg=\"%s\"", err.msg);
        } else {
            note_failure(d, &err);
        }
        return rc;
    }
    note_success(d);
    if (resp->agent_id == NULL || resp->agent_id[0] == '\0') {
        tidemark__register_response__free_unpacked(resp, NULL);
        return TM_EPROTO;
    }
    if (resp->agent_secret != NULL) {
        /* A new identity: persist it before using it, so a crash cannot
         * leave the coordinator with an agent we no longer know we are. */
        tm_identity id = {0};
        snprintf(id.id, sizeof(id.id), "%s", resp->agent_id);
        snprintf(id.secret, sizeof(id.secret), "%s", resp->agent_secret);
        if (tm_identity_save(conf->state_dir, &id, &err) != TM_OK) {
            tm_error("agent", "event=identity_save_failed msg=\"%s\"", err.msg);
            tidemark__register_response__free_unpacked(resp, NULL);
            d->failures++;
            return TM_EIO;
        }
        d->id = id;
        memset(&id, 0, sizeof(id));
        d->have_identity = 1;
    }
    if (resp->has_heartbeat_interval_ms && resp->heartbeat_interval_ms >= 50) {
        d->interval_ms = resp->heartbeat_interval_ms;
    }
    d->state = resp->has_state ? (int)resp->state : 0;
    tm_info("agent", "event=registered agent=%s state=%s heartbeat_ms=%u", d->id.id,
            d->state == TIDEMARK__AGENT_STATE__PENDING ? "pending" : "online", d->interval_ms);
    tidemark__register_response__free_unpacked(resp, NULL);
    tm_rpc_client_set_agent(d->rpc, d->id.id, d->id.secret);
    d->registered = 1;
    if (d->runner == NULL && tm_runner_start(&d->runner, conf, d->rpc, &err) != TM_OK) {
        tm_error("agent", "event=runner_failed msg=\"%s\"", err.msg);
    }
    /* Archived-log runs go to the coordinator every few heartbeats. */
    uint32_t every = d->interval_ms * 5;
    every = every < 1000 ? 1000 : every > 30000 ? 30000 : every;
    tm_log_reporter *reporter = NULL;
    pthread_mutex_lock(&d->mu);
    reporter = d->reporter;
    pthread_mutex_unlock(&d->mu);
    if (reporter == NULL) {
        if (tm_log_reporter_start(&reporter, conf, d->rpc, every, &err) != TM_OK) {
            tm_error("agent", "event=log_reporter_failed msg=\"%s\"", err.msg);
        }
        pthread_mutex_lock(&d->mu);
        d->reporter = reporter;
        pthread_mutex_unlock(&d->mu);
    }
    if (d->health == NULL && conf->n_repos > 0 &&
        tm_repo_health_start(&d->health, conf, every, &err) != TM_OK) {
        tm_error("agent", "event=repository_probe_failed msg=\"%s\"", err.msg);
    }
    return TM_OK;
}

static int do_heartbeat(tm_daemon *d)
{
    Tidemark__HeartbeatRequest req = TIDEMARK__HEARTBEAT_REQUEST__INIT;
    Tidemark__HeartbeatResponse *resp = NULL;
    tm_err err = {0};
    req.has_seq = 1;
    req.seq = ++d->seq;
    /* Repository health: when a probe result changed, and every 30 beats
     * so a restarted coordinator learns it. */
    if (tm_repo_health_take(d->health, d->health_resend || d->seq % 30 == 1, &d->snap) > 0) {
        req.repositories = d->snap.ptrs;
        req.n_repositories = d->snap.n;
    }
    d->health_resend = 0;
    int rc = tm_rpc_client_call(d->rpc, "Coordinator.Heartbeat", &req.base,
                                &tidemark__heartbeat_response__descriptor,
                                (ProtobufCMessage **)&resp, call_timeout(d), NULL, &err);
    if (rc != TM_OK) {
        if (rc == TM_ERPC && err.status == TM_RPC_UNAUTHENTICATED) {
            tm_warn("agent", "event=identity_rejected msg=\"%s\"", err.msg);
            d->registered = 0;
            d->have_identity = 0;
            return rc;
        }
        note_failure(d, &err);
        d->health_resend = req.n_repositories > 0;
        return rc;
    }
    note_success(d);
    int state = resp->has_state ? (int)resp->state : 0;
    if (state != d->state) {
        tm_info("agent", "event=state_changed agent=%s state=%s", d->id.id,
                state == TIDEMARK__AGENT_STATE__PENDING ? "pending" : "online");
        d->state = state;
    }
    if (resp->has_heartbeat_interval_ms && resp->heartbeat_interval_ms >= 50) {
        d->interval_ms = resp->heartbeat_interval_ms;
    }
    tidemark__heartbeat_response__free_unpacked(resp, NULL);
    return TM_OK;
}

/* A shipper stored a range: the coordinator should hear of it soon. */
static void kick_reporter(void *arg, const char *target)
{
    (void)target;
    tm_daemon *d = arg;
    pthread_mutex_lock(&d->mu);
    tm_log_reporter_kick(d->reporter);
    pthread_mutex_unlock(&d->mu);
}

int tm_daemon_run(tm_daemon *d)
{
    tm_info("agent", "event=started version=%s coordinator=%s host=\"%s\" targets=%zu",
            TIDEMARK_VERSION, d->conf->coordinator_url, d->conf->hostname, d->conf->n_targets);
    /* Log shippers need no coordinator: they run from the start, through
     * its outages. */
    tm_err serr = {0};
    if (tm_shippers_start(&d->shippers, d->conf, kick_reporter, d, &serr) != TM_OK) {
        tm_error("agent", "event=shipper_failed msg=\"%s\"", serr.msg);
    }
    for (;;) {
        int rc = d->registered ? do_heartbeat(d) : do_register(d);
        uint64_t wait = rc == TM_OK ? d->interval_ms : backoff_ms(d);
        if (rc != TM_OK && !d->registered && d->failures == 0) {
            wait = 0; /* identity rejected: register again right away */
        }
        if (sleep_ms(d, wait)) {
            break;
        }
    }
    /* The identity is durable since registration and a task interrupted
     * here is re-leased by the coordinator: nothing left to lose, so the
     * teardown (nng_close under a dead coordinator) is bounded. */
    tm_shutdown_watchdog("agent", SHUTDOWN_GRACE_MS);
    /* Stop the task runner: tell it, then interrupt its long-poll. */
    tm_runner_stop(d->runner);
    tm_shippers_stop(d->shippers);
    tm_log_reporter_stop(d->reporter);
    tm_repo_health_stop(d->health);
    tm_rpc_client_shutdown(d->rpc);
    tm_shippers_free(d->shippers);
    d->shippers = NULL;
    pthread_mutex_lock(&d->mu);
    tm_log_reporter *reporter = d->reporter;
    d->reporter = NULL;
    pthread_mutex_unlock(&d->mu);
    tm_log_reporter_free(reporter);
    tm_repo_health_free(d->health);
    d->health = NULL;
    tm_runner_free(d->runner);
    d->runner = NULL;
    tm_info("agent", "event=stopped agent=%s", d->have_identity ? d->id.id : "-");
    return 0;
}
