/*
 * coordinator.c - wires the coordinator together and runs its background
 * loop: the liveness sweep (every ~quarter heartbeat, at most 1 s apart) and
 * the batched flush of last-seen times to the catalog (every 5 s).
 */
#include "coordinator/coordinator.h"
#include "coordinator/service_internal.h"
#include "common/log.h"
#include "common/names.h"
#include "common/util.h"
#include "coordinator/alert_rules.h"
#include "coordinator/archiver.h"
#include "coordinator/target_metrics.h"
#include "coordinator/drills.h"
#include "coordinator/retention_apply.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FLUSH_EVERY_MS 5000
/* Cron fire times are whole minutes (or @every seconds): a pass a second is
 * as precise as they get, and cheap (a catalog read). */
#define SCHEDULE_EVERY_MS 1000

static const double rpc_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                     0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                     1,      2.5,     5,      10,    30,     60};

static void observe_rpc(const char *method, int code, uint64_t latency_ns, void *arg)
{
    struct tm_coordinator *c = arg;
    const char *m = method != NULL ? method : "invalid";
    const char *v[2] = {m, tm_rpc_status_name(code)};
    tm_metric_child *req = tm_metric_child_get(c->rpc_requests, v, 2);
    if (req != NULL) {
        tm_metric_inc(req, 1);
    }
    tm_metric_child *dur = tm_metric_child_get(c->rpc_duration, v, 1);
    if (dur != NULL) {
        tm_metric_observe(dur, (double)latency_ns / 1e9);
    }
}

/* Per target, read from the catalog at scrape time, so a target's series
 * disappear with it (no stale labelled children). */
static void collect_freshness(tm_metrics_writer *w, struct tm_coordinator *c)
{
    tm_freshness *f = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_catalog_freshness(c->catalog, &f, &n, &err) != TM_OK) {
        return;
    }
    char labels[256], esc[160];
    int64_t now = tm_now_s();
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"tidemark_backup_last_success_timestamp_seconds",
         "Unix time the newest successful backup of this type finished."},
        {"tidemark_backup_last_size_bytes", "Bytes read by the newest successful backup."},
        {"tidemark_backup_last_stored_bytes", "Bytes stored per repository by the newest backup."},
        {"tidemark_backup_last_duration_seconds", "Duration of the newest successful backup."},
    };
    for (size_t k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
        tm_metrics_write_family(w, fam[k].name, TM_METRIC_GAUGE, fam[k].help);
        for (size_t i = 0; i < n; i++) {
            if (f[i].type < 0) {
                continue;
            }
            snprintf(labels, sizeof(labels), "target=\"%s\",type=\"%s\"",
                     tm_metrics_escape(f[i].target, esc, sizeof(esc)),
                     tm_backup_type_name(f[i].type));
            double v = k == 0   ? (double)f[i].last
                       : k == 1 ? (double)f[i].bytes
                       : k == 2 ? (double)f[i].stored_bytes
                                : (double)f[i].duration_s;
            tm_metrics_write_sample(w, fam[k].name, labels, v);
        }
    }
    tm_metrics_write_family(w, "tidemark_archive_lag_seconds", TM_METRIC_GAUGE,
                            "Seconds since the newest archived log point (RPO if lost now).");
    for (size_t i = 0; i < n; i++) {
        if (f[i].type == -1) {
            snprintf(labels, sizeof(labels), "target=\"%s\"",
                     tm_metrics_escape(f[i].target, esc, sizeof(esc)));
            tm_metrics_write_sample(w, "tidemark_archive_lag_seconds", labels,
                                    (double)(now - f[i].last));
        }
    }
    free(f);
}

static void collect(tm_metrics_writer *w, void *arg)
{
    struct tm_coordinator *c = arg;
    uint32_t counts[5];
    char labels[128];
    tm_registry_counts(c->registry, counts);
    tm_metrics_write_family(w, "tidemark_agents", TM_METRIC_GAUGE, "Registered agents by state.");
    for (int s = 1; s <= 4; s++) {
        snprintf(labels, sizeof(labels), "state=\"%s\"", tm_agent_state_name(s));
        tm_metrics_write_sample(w, "tidemark_agents", labels, counts[s]);
    }
    tm_catalog_stats st;
    tm_err err;
    if (tm_catalog_stats_get(c->catalog, &st, &err) == TM_OK) {
        tm_metrics_write_family(w, "tidemark_catalog_size_bytes", TM_METRIC_GAUGE,
                                "Size of the catalog database.");
        tm_metrics_write_sample(w, "tidemark_catalog_size_bytes", NULL, (double)st.bytes);
        tm_metrics_write_family(w, "tidemark_catalog_targets", TM_METRIC_GAUGE,
                                "Database targets known to the catalog.");
        tm_metrics_write_sample(w, "tidemark_catalog_targets", NULL, (double)st.targets);
        tm_metrics_write_family(w, "tidemark_catalog_schema_version", TM_METRIC_GAUGE,
                                "Schema version of the catalog.");
        tm_metrics_write_sample(w, "tidemark_catalog_schema_version", NULL, st.schema_version);
    }
    int64_t tasks[TM_TASK_STATES];
    if (tm_catalog_task_counts(c->catalog, tasks, &err) == TM_OK) {
        tm_metrics_write_family(w, "tidemark_tasks", TM_METRIC_GAUGE, "Tasks by state.");
        for (int s = 1; s < TM_TASK_STATES; s++) {
            snprintf(labels, sizeof(labels), "state=\"%s\"", tm_task_state_name(s));
            tm_metrics_write_sample(w, "tidemark_tasks", labels, (double)tasks[s]);
        }
    }
    collect_freshness(w, c);
    tm_metrics_write_family(w, "tidemark_build_info", TM_METRIC_GAUGE,
                            "Build information; the value is always 1.");
    tm_metrics_write_sample(w, "tidemark_build_info", "version=\"" TIDEMARK_VERSION "\"", 1);
    tm_metrics_write_family(w, "tidemark_coordinator_start_time_seconds", TM_METRIC_GAUGE,
                            "Unix time the coordinator started.");
    tm_metrics_write_sample(w, "tidemark_coordinator_start_time_seconds", NULL,
                            (double)c->started_at);
}

static void conn_closed(uint32_t conn, void *arg)
{
    struct tm_coordinator *c = arg;
    if (c->dispatcher != NULL) {
        tm_dispatcher_conn_closed(c->dispatcher, conn);
    }
}

static int health(void *arg, char *msg, size_t cap)
{
    struct tm_coordinator *c = arg;
    tm_catalog_stats st;
    tm_err err;
    if (tm_catalog_stats_get(c->catalog, &st, &err) != TM_OK) {
        snprintf(msg, cap, "catalog: %s", err.msg);
        return 1;
    }
    return 0;
}

static void *loop_main(void *arg)
{
    struct tm_coordinator *c = arg;
    uint32_t step = c->conf->heartbeat_interval_ms / 4;
    if (step > 250) {
        step = 250; /* also bounds how late a long-poll or lease expiry is noticed */
    }
    if (step < 25) {
        step = 25;
    }
    int64_t last_flush = tm_now_ms();
    int64_t last_sched = 0;
    pthread_mutex_lock(&c->stop_mu);
    while (!c->stopping) {
        struct timespec ts;
        tm_deadline_after_ms(&ts, step);
        pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &ts);
        if (c->stopping) {
            break;
        }
        pthread_mutex_unlock(&c->stop_mu);
        int64_t now = tm_now_ms();
        tm_registry_sweep(c->registry, now);
        tm_dispatcher_tick(c->dispatcher, now);
        if (now - last_sched >= SCHEDULE_EVERY_MS) {
            tm_err err;
            if (tm_scheduler_tick(c->scheduler, &err) < 0) {
                tm_error("coordinator", "event=schedule_failed msg=\"%s\"", err.msg);
            }
            if (tm_retention_apply_tick(c->retention, &err) < 0) {
                tm_error("coordinator", "event=retention_failed msg=\"%s\"", err.msg);
            }
            tm_replication_tick(c->replication, now / 1000);
            last_sched = now;
        }
        tm_err aerr;
        if (tm_alert_rules_tick(c->alert_rules, now, &aerr) < 0) {
            tm_error("coordinator", "event=alert_eval_failed msg=\"%s\"", aerr.msg);
        }
        if (now - last_flush >= FLUSH_EVERY_MS) {
            tm_err err;
            if (tm_registry_flush(c->registry, &err) != TM_OK) {
                tm_error("coordinator", "event=flush_failed msg=\"%s\"", err.msg);
            }
            last_flush = now;
        }
        pthread_mutex_lock(&c->stop_mu);
    }
    pthread_mutex_unlock(&c->stop_mu);
    return NULL;
}

int tm_coordinator_new(tm_coordinator **out, const tm_coordinator_conf *conf, tm_err *err)
{
    struct tm_coordinator *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return tm_err_set(err, TM_ENOMEM, "coordinator: out of memory");
    }
    c->conf = conf;
    c->started_at = tm_now_s();
    pthread_mutex_init(&c->stop_mu, NULL);
    pthread_cond_init(&c->stop_cv, NULL);
    int rc;

    if ((rc = tm_catalog_open(&c->catalog, conf->catalog_path, err)) != TM_OK) {
        goto fail;
    }
    tm_registry_opts ro = {
        .heartbeat_interval_ms = conf->heartbeat_interval_ms,
        .stale_after_missed = conf->stale_after_missed,
        .lost_after_missed = conf->lost_after_missed,
    };
    if ((rc = tm_registry_new(&c->registry, c->catalog, &ro, tm_now_ms(), err)) != TM_OK) {
        goto fail;
    }
    tm_dispatcher_opts dopts = {
        .lease_ms = conf->task_lease_ms,
        .max_attempts = conf->task_max_attempts,
        .retry_backoff_ms = conf->task_retry_backoff_ms,
        .poll_max_ms = conf->task_poll_max_ms,
    };
    if ((rc = tm_dispatcher_new(&c->dispatcher, c->catalog, &dopts, err)) != TM_OK) {
        goto fail;
    }
    if ((rc = tm_scheduler_new(&c->scheduler, conf, c->catalog, c->dispatcher, NULL, NULL, err)) !=
        TM_OK) {
        goto fail;
    }
    if ((rc = tm_replication_new(&c->replication, conf, c->catalog, c->dispatcher, err)) != TM_OK) {
        goto fail;
    }
    tm_dispatcher_on_done(c->dispatcher, tm_replication_task_done, c->replication);
    c->outcome = (tm_outcome_ctx){.conf = conf, .cat = c->catalog};
    tm_dispatcher_on_backup(c->dispatcher, tm_outcome_backup, &c->outcome);
    if ((rc = tm_retention_apply_new(&c->retention, conf, c->catalog, c->dispatcher, NULL, NULL,
                                     err)) != TM_OK) {
        goto fail;
    }
    tm_dispatcher_on_success(c->dispatcher, tm_retention_apply_completed, c->retention);
    if ((rc = tm_alert_rules_new(&c->alert_rules, conf, c->catalog, c->registry, err)) != TM_OK ||
        (rc = tm_archiver_table_new(&c->archiver, err)) != TM_OK ||
        (rc = tm_target_metrics_new(&c->target_metrics, c, err)) != TM_OK) {
        goto fail;
    }
    tm_alert_rules_set_sources(c->alert_rules, c->scheduler, c->archiver);
    if ((rc = tm_metrics_new(&c->metrics)) != TM_OK ||
        (rc = tm_metrics_add(
             c->metrics, &c->rpc_requests, TM_METRIC_COUNTER, "tidemark_rpc_requests_total",
             "RPC calls answered, by method and code.", "method,code", NULL, 0)) != TM_OK ||
        (rc = tm_metrics_add(c->metrics, &c->rpc_duration, TM_METRIC_HISTOGRAM,
                             "tidemark_rpc_duration_seconds",
                             "Time from receiving a call to its reply being ready.", "method",
                             rpc_buckets, sizeof(rpc_buckets) / sizeof(rpc_buckets[0]))) != TM_OK ||
        (rc = tm_metrics_add_collector(c->metrics, collect, c)) != TM_OK ||
        (rc = tm_metrics_add_collector(c->metrics, tm_scheduler_collect, c->scheduler)) != TM_OK ||
        (rc = tm_metrics_add_collector(c->metrics, tm_retention_apply_collect, c->retention)) !=
            TM_OK ||
        (rc = tm_metrics_add_collector(c->metrics, tm_alert_rules_collect, c->alert_rules)) !=
            TM_OK ||
        (rc = tm_metrics_add_collector(c->metrics, tm_archiver_collect, c->archiver)) != TM_OK ||
        (rc = tm_metrics_add_collector(c->metrics, tm_target_metrics_collect, c->target_metrics)) !=
            TM_OK ||
        (rc = tm_metrics_add_collector(c->metrics, tm_drills_collect, c->catalog)) != TM_OK ||
        (rc = tm_metrics_add_collector(c->metrics, tm_replication_collect, c->replication)) !=
            TM_OK) {
        tm_err_set(err, rc, "coordinator: metrics setup failed");
        goto fail;
    }
    tm_rpc_server_opts so = {
        .url = conf->listen,
        .tls = conf->tls_enabled ? &conf->tls : NULL,
        .max_message_bytes = conf->rpc_max_message_bytes,
        .contexts = (int)conf->rpc_contexts,
        .max_unauth_message_bytes = conf->rpc_max_unauth_message_bytes,
        .send_timeout_ms = conf->rpc_send_timeout_ms,
        .first_request_timeout_ms = conf->rpc_first_request_timeout_ms,
        .idle_timeout_ms = conf->rpc_idle_timeout_ms,
        .max_pending_per_addr = conf->rpc_max_pending_per_addr,
        .max_calls_per_conn = conf->rpc_max_calls_per_conn,
        .auth = tm_coordinator_auth,
        .auth_arg = c,
        .observe = observe_rpc,
        .observe_arg = c,
        .conn_closed = conn_closed,
        .conn_closed_arg = c,
    };
    if ((rc = tm_rpc_server_new(&c->rpc, &so, err)) != TM_OK) {
        goto fail;
    }
    if ((rc = tm_service_register(c)) != TM_OK || (rc = tm_admin_register(c)) != TM_OK ||
        (rc = tm_admin_tasks_register(c)) != TM_OK || (rc = tm_admin_alerts_register(c)) != TM_OK ||
        (rc = tm_logs_register(c)) != TM_OK || (rc = tm_admin_drills_register(c)) != TM_OK ||
        (rc = tm_admin_retention_register(c)) != TM_OK ||
        (rc = tm_admin_replication_register(c)) != TM_OK) {
        tm_err_set(err, rc, "coordinator: registering RPC handlers failed");
        goto fail;
    }
    if ((rc = tm_rpc_server_start(c->rpc, err)) != TM_OK) {
        goto fail;
    }
    if (conf->http_listen != NULL && conf->http_listen[0] != '\0') {
        if ((rc = tm_http_new(&c->http, conf->http_listen, c->metrics, health, c, err)) != TM_OK) {
            goto fail;
        }
    }
    if (pthread_create(&c->loop, NULL, loop_main, c) != 0) {
        rc = tm_err_set(err, TM_EINTERNAL, "coordinator: cannot start background loop");
        goto fail;
    }
    c->loop_started = 1;
    tm_info("coordinator", "event=started version=%s listen=%s http=%s catalog=%s agents=%zu",
            TIDEMARK_VERSION, conf->listen, conf->http_listen ? conf->http_listen : "",
            conf->catalog_path, tm_registry_size(c->registry));
    *out = c;
    return TM_OK;
fail:
    tm_coordinator_free(c);
    return rc;
}

void tm_coordinator_free(tm_coordinator *c)
{
    if (c == NULL) {
        return;
    }
    if (c->loop_started) {
        pthread_mutex_lock(&c->stop_mu);
        c->stopping = 1;
        pthread_cond_signal(&c->stop_cv);
        pthread_mutex_unlock(&c->stop_mu);
        pthread_join(c->loop, NULL);
    }
    tm_http_free(c->http);
    /* Answer parked long-polls while the RPC server can still send them;
     * the dispatcher itself must outlive the server, whose closing
     * connections are still reported to it. */
    tm_dispatcher_shutdown(c->dispatcher);
    /* Last-seen times are durable before any network teardown. */
    if (c->registry != NULL) {
        tm_err err;
        if (tm_registry_flush(c->registry, &err) != TM_OK) {
            tm_error("coordinator", "event=flush_failed msg=\"%s\"", err.msg);
        }
    }
    tm_rpc_server_free(c->rpc);
    tm_metrics_free(c->metrics); /* its collectors read the scheduler */
    c->metrics = NULL;
    tm_scheduler_free(c->scheduler);
    tm_retention_apply_free(c->retention); /* the RPC server that used it is gone */
    /* Give queued notifications a moment to leave; a dead sink cannot hold
     * the shutdown longer than this. */
    tm_alert_rules_free(c->alert_rules, 2000);
    tm_archiver_table_free(c->archiver);
    tm_target_metrics_free(c->target_metrics);
    tm_dispatcher_free(c->dispatcher);
    c->dispatcher = NULL;
    tm_replication_free(c->replication); /* after the RPC server: heartbeats reach it */
    c->replication = NULL;
    tm_registry_free(c->registry);
    tm_metrics_free(c->metrics);
    tm_catalog_free(c->catalog);
    pthread_cond_destroy(&c->stop_cv);
    pthread_mutex_destroy(&c->stop_mu);
    free(c);
}
