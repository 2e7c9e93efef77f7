/*
 * service_internal.h - what the RPC handler files share: the coordinator's
 * state. Handlers live in service.c (agent-facing) and admin.c
 * (operator-facing); each file registers its own methods.
 */
#ifndef TM_SERVICE_INTERNAL_H
#define TM_SERVICE_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "common/config.h"
#include "common/metrics.h"
#include "common/rpc.h"
#include "coordinator/catalog.h"
#include "coordinator/dispatcher.h"
#include "coordinator/http.h"
#include "coordinator/registry.h"
#include "coordinator/replication.h"
#include "coordinator/scheduler.h"

#include "tidemark.pb-c.h"

struct tm_coordinator {
    const tm_coordinator_conf *conf;
    tm_catalog *catalog;
    tm_registry *registry;
    tm_dispatcher *dispatcher;
    tm_scheduler *scheduler;
    struct tm_alert_rules *alert_rules;
    struct tm_archiver_table *archiver; /* log shipping status per target (archiver.h) */
    struct tm_target_metrics *target_metrics;
    struct tm_retention_apply *retention; /* EXPIRE tasks (retention_apply.h) */
    struct tm_replication *replication;
    tm_outcome_ctx outcome; /* the verdict on finished backups (outcome.h) */
    tm_rpc_server *rpc;
    tm_metrics *metrics;
    tm_http *http;
    tm_metric *rpc_requests; /* tidemark_rpc_requests_total{method,code} */
    tm_metric *rpc_duration; /* tidemark_rpc_duration_seconds{method} */
    int64_t started_at;
    pthread_t loop;
    int loop_started;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    int stopping;
};

int tm_service_register(struct tm_coordinator *c);
int tm_admin_register(struct tm_coordinator *c);
int tm_admin_tasks_register(struct tm_coordinator *c);
int tm_admin_alerts_register(struct tm_coordinator *c); /* ListAlerts, RetentionPlan */
int tm_logs_register(struct tm_coordinator *c); /* ReportLog, ReportProviderWindow, PitrWindow */
/* The restorable window of target (logs.c): start/end unix seconds, 0 = none. */
int tm_logs_window(struct tm_coordinator *c, const char *target, int64_t *start, int64_t *end,
                   uint32_t *queue_depth, tm_err *err);
/* Per-target rows of `tidemarkctl status` (status.c). */
int tm_status_targets(struct tm_coordinator *c, tm_rpc_call *call, Tidemark__StatusResponse *resp);
int tm_admin_drills_register(struct tm_coordinator *c); /* RunDrill, ListDrills */
/* Resolve an agent id or unique hostname to its catalog record (admin.c). */
int tm_admin_resolve_agent(struct tm_coordinator *c, tm_rpc_call *call, const char *ref,
                           tm_agent_rec **out);
/* admin_tasks.c helpers for other admin files: copy a malloc'd message into
 * the call's arena; map a catalog error to a status; answer with a task
 * (frees t). */
void *tm_admin_to_arena(tm_rpc_call *call, const ProtobufCMessage *m);
int tm_admin_catalog_error(tm_rpc_call *call, const tm_err *err);
int tm_admin_reply_task(tm_rpc_call *call, Tidemark__Task *t, Tidemark__TaskResponse *resp);
/* KeepBackup, RetentionApply, RetentionLog */
int tm_admin_retention_register(struct tm_coordinator *c);
/* ReplicationStatus, ReplicationCheck */
int tm_admin_replication_register(struct tm_coordinator *c);
/* Authenticator for both services (agent secret / admin token). */
int tm_coordinator_auth(tm_rpc_call *call, const char *service, const Tidemark__Credential *cred,
                        void *arg);
/* Fill an AgentInfo from a catalog record + live state, in the call's arena. */
int tm_agent_info_fill(struct tm_coordinator *c, tm_rpc_call *call, const tm_agent_rec *rec,
                       Tidemark__AgentInfo *out);

#endif
