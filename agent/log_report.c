/*
 * log_report.c - archived-log runs per repository, reported to the
 * coordinator (see log_report.h). The runs and the status come from each
 * target's engine (tm_engine.log_ranges, .log_status) and its shipper
 * (agent/shipper.c); this file only lists, packs and sends.
 */
#include "agent/log_report.h"
#include "agent/engine.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"
#include "agent/shipper.h"
#include "common/log.h"
#include "common/util.h"

#include "tidemark.pb-c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A report pass follows a kick (a shipper stored a range) no sooner than
 * this after the previous one: a busy shipper cannot flood the coordinator. */
#define KICK_MIN_MS 1000

struct tm_log_reporter {
    const tm_agent_conf *conf;
    tm_rpc_client *rpc;
    uint32_t interval_ms;
    pthread_t thread;
    int started;
    atomic_int stopping;
    int kicked; /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* The engine of target t when it has log runs to report, else NULL. */
static const tm_engine *reporting_engine(const tm_target_conf *t)
{
    const tm_engine *e = tm_engine_of(t);
    return e != NULL && e->log_ranges != NULL ? e : NULL;
}

/* The status of t (shipper's view, then the engine's) as the wire has it;
 * strings point into st. */
static void status_to_wire(const tm_log_status *st, Tidemark__ArchiverStatus *a)
{
    tidemark__archiver_status__init(a);
    a->snapshot_only = st->snapshot_only[0] ? (char *)st->snapshot_only : NULL;
    if (!st->readable) {
        a->error = (char *)st->error;
        return;
    }
    a->has_archived_count = a->has_last_archived_ms = 1;
    a->has_failed_count = a->has_last_failed_ms = 1;
    a->archived_count = st->shipped_count;
    a->last_archived_ms = st->last_shipped_ms;
    a->failed_count = st->failed_count;
    a->last_failed_ms = st->last_failed_ms;
    a->last_archived_log = (char *)st->last_shipped;
    a->last_failed_log = (char *)st->last_failed;
    a->last_failure = st->last_failure[0] ? (char *)st->last_failure : NULL;
    a->has_chain_resets = a->has_last_chain_reset_ms = 1;
    a->chain_resets = st->chain_resets;
    a->last_chain_reset_ms = st->last_chain_reset_ms;
    a->chain_reset = st->chain_reset[0] ? (char *)st->chain_reset : NULL;
    a->chain_reset_from = st->chain_reset_from[0] ? (char *)st->chain_reset_from : NULL;
}

static int report_repo(const tm_engine *e, const tm_target_conf *t, tm_rpc_client *rpc,
                       tm_repo_set *rs, size_t i, const tm_log_status *st, tm_err *err)
{
    tm_log_item *items = NULL;
    size_t n = 0, nr = 0;
    tm_log_range *runs = NULL;
    int rc = tm_log_scan(rs, i, t->name, &items, &n, err);
    if (rc != TM_OK) {
        return rc;
    }
    rc = e->log_ranges(t, items, n, &runs, &nr, err);
    tm_log_items_free(items, n);
    if (rc != TM_OK) {
        return rc;
    }
    Tidemark__LogRange *ranges = calloc(nr + 1, sizeof(*ranges));
    Tidemark__LogRange **ptrs = calloc(nr + 1, sizeof(*ptrs));
    if (ranges == NULL || ptrs == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "log report: out of memory");
        goto out;
    }
    const char *repo = tm_repo_set_name(rs, i);
    for (size_t k = 0; k < nr; k++) {
        Tidemark__LogRange *r = &ranges[k];
        tidemark__log_range__init(r);
        r->target = (char *)t->name;
        r->repository = (char *)repo;
        r->has_timeline = r->has_first_time = r->has_last_time = 1;
        r->has_bytes = r->has_files = 1;
        r->timeline = runs[k].chain;
        r->first = runs[k].start;
        r->last = runs[k].end;
        r->first_time = runs[k].start_time;
        r->last_time = runs[k].end_time;
        r->bytes = runs[k].bytes;
        r->files = runs[k].objects;
        ptrs[k] = r;
    }
    Tidemark__ArchiverStatus arch;
    status_to_wire(st, &arch);
    Tidemark__ReportLogRequest req = TIDEMARK__REPORT_LOG_REQUEST__INIT;
    req.target = (char *)t->name;
    req.repository = (char *)repo;
    req.n_ranges = nr;
    req.ranges = ptrs;
    req.has_queue_depth = 1;
    req.queue_depth = st->pending_count;
    req.has_queue_bytes = st->pending_bytes > 0;
    req.queue_bytes = st->pending_bytes;
    req.archiver = &arch;
    rc = tm_rpc_client_call(rpc, "Coordinator.ReportLog", &req.base,
                            &tidemark__report_log_response__descriptor, NULL, 10000, NULL, err);
out:
    free(ptrs);
    free(ranges);
    free(runs);
    return rc;
}

int tm_log_report_once(const tm_agent_conf *conf, tm_rpc_client *rpc, tm_err *err)
{
    int reports = 0, any = 0;
    for (size_t t = 0; t < conf->n_targets; t++) {
        any |= reporting_engine(&conf->targets[t]) != NULL;
    }
    if (!any || conf->n_repos == 0) {
        return 0;
    }
    tm_repo_set *rs = NULL;
    int rc = tm_repo_set_open(&rs, conf, 0, err);
    if (rc != TM_OK) {
        return rc;
    }
    for (size_t t = 0; t < conf->n_targets; t++) {
        const tm_target_conf *tc = &conf->targets[t];
        const tm_engine *e = reporting_engine(tc);
        if (e == NULL) {
            continue;
        }
        tm_log_status *st = calloc(1, sizeof(*st));
        if (st == NULL) {
            tm_repo_set_free(rs);
            return tm_err_set(err, TM_ENOMEM, "log report: out of memory");
        }
        /* The shipper's view first (when the engine ships itself), then
         * what only the engine knows. */
        if (!tm_ship_status(tc->name, st)) {
            st->readable = 1;
        }
        if (e->log_status != NULL) {
            e->log_status(tc, st);
        }
        for (size_t i = 0; i < tm_repo_set_count(rs); i++) {
            tm_err e2 = {0};
            if (report_repo(e, tc, rpc, rs, i, st, &e2) == TM_OK) {
                reports++;
            } else {
                tm_debug("log_report", "target=%s repository=%s msg=\"%s\"", tc->name,
                         tm_repo_set_name(rs, i), e2.msg);
            }
        }
        free(st);
    }
    tm_repo_set_free(rs);
    return reports;
}

/* The provider's own window of every target whose engine knows one. */
static void report_providers(const tm_agent_conf *conf, tm_rpc_client *rpc)
{
    for (size_t t = 0; t < conf->n_targets; t++) {
        const tm_target_conf *tc = &conf->targets[t];
        const tm_engine *e = tm_engine_of(tc);
        if (e == NULL || e->provider_window == NULL) {
            continue;
        }
        tm_provider_window *w = calloc(1, sizeof(*w));
        if (w == NULL) {
            return;
        }
        e->provider_window(tc, w);
        Tidemark__ProviderWindowReport req = TIDEMARK__PROVIDER_WINDOW_REPORT__INIT;
        req.target = tc->name;
        req.has_start = req.has_end = 1;
        req.start = w->start;
        req.end = w->end;
        req.source = w->source;
        req.error = w->error;
        tm_err err = {0};
        if (tm_rpc_client_call(rpc, "Coordinator.ReportProviderWindow", &req.base,
                               &tidemark__provider_window_response__descriptor, NULL, 10000, NULL,
                               &err) != TM_OK) {
            tm_debug("log_report", "target=%s provider_window msg=\"%s\"", tc->name, err.msg);
        }
        free(w);
    }
}

static void *reporter_main(void *arg)
{
    tm_log_reporter *r = arg;
    while (!atomic_load(&r->stopping)) {
        tm_err err = {0};
        report_providers(r->conf, r->rpc);
        int n = tm_log_report_once(r->conf, r->rpc, &err);
        if (n < 0) {
            tm_debug("log_report", "msg=\"%s\"", err.msg);
        }
        struct timespec soonest, ts;
        tm_deadline_after_ms(&soonest, r->interval_ms < KICK_MIN_MS ? r->interval_ms : KICK_MIN_MS);
        tm_deadline_after_ms(&ts, r->interval_ms);
        pthread_mutex_lock(&r->mu);
        /* A kick is heard only after KICK_MIN_MS; a stop at once. */
        while (!atomic_load(&r->stopping) &&
               pthread_cond_timedwait(&r->cv, &r->mu, &soonest) == 0) {
        }
        while (!atomic_load(&r->stopping) && !r->kicked &&
               pthread_cond_timedwait(&r->cv, &r->mu, &ts) == 0) {
        }
        r->kicked = 0;
        pthread_mutex_unlock(&r->mu);
    }
    return NULL;
}

void tm_log_reporter_kick(tm_log_reporter *r)
{
    if (r == NULL) {
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->kicked = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

int tm_log_reporter_start(tm_log_reporter **out, const tm_agent_conf *conf, tm_rpc_client *rpc,
                          uint32_t interval_ms, tm_err *err)
{
    tm_log_reporter *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return tm_err_set(err, TM_ENOMEM, "log reporter: out of memory");
    }
    r->conf = conf;
    r->rpc = rpc;
    r->interval_ms = interval_ms < 200 ? 200 : interval_ms;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, reporter_main, r) != 0) {
        tm_log_reporter_free(r);
        return tm_err_set(err, TM_EINTERNAL, "log reporter: cannot start thread");
    }
    r->started = 1;
    *out = r;
    return TM_OK;
}

void tm_log_reporter_stop(tm_log_reporter *r)
{
    if (r == NULL) {
        return;
    }
    atomic_store(&r->stopping, 1);
    pthread_mutex_lock(&r->mu);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void tm_log_reporter_free(tm_log_reporter *r)
{
    if (r == NULL) {
        return;
    }
    tm_log_reporter_stop(r);
    if (r->started) {
        pthread_join(r->thread, NULL);
    }
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
