/*
 * admin_retention.c - service Admin, retention's mutating and audit calls:
 * KeepBackup (permanent hold on/off), RetentionApply (queue the EXPIRE
 * tasks now, retention_apply.h) and RetentionLog (what retention deleted).
 * RetentionPlan, the dry run, lives in admin_alerts.c.
 */
#include "coordinator/service_internal.h"
#include "common/log.h"
#include "coordinator/retention_apply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int handle_keep_backup(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                              void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__KeepBackupRequest *req = (const Tidemark__KeepBackupRequest *)in;
    Tidemark__BackupResponse *resp = (Tidemark__BackupResponse *)out;
    if (req->id == NULL || req->id[0] == '\0') {
        return tm_rpc_call_error(call, TM_RPC_INVALID_ARGUMENT, "backup id required");
    }
    int keep = req->has_keep ? req->keep : 1;
    Tidemark__BackupInfo *b = NULL;
    tm_err err;
    const char *target = req->target != NULL && req->target[0] ? req->target : NULL;
    if (keep) {
        /* A hold must not race a deletion already handed to an agent. */
        if (tm_catalog_backup_get(c->catalog, target, req->id, &b, &err) != TM_OK) {
            return tm_admin_catalog_error(call, &err);
        }
        Tidemark__Task **open = NULL;
        size_t n = 0;
        int rc = tm_catalog_task_list(c->catalog, b->target, 1, 0, &open, &n, &err);
        const char *busy = NULL;
        for (size_t i = 0; rc == TM_OK && i < n && busy == NULL; i++) {
            for (size_t k = 0; open[i]->kind == TIDEMARK__TASK_KIND__EXPIRE && open[i]->expire &&
                               k < open[i]->expire->n_drop && busy == NULL;
                 k++) {
                if (strcmp(open[i]->expire->drop[k]->id, b->id) == 0) {
                    busy = tm_arena_strdup(tm_rpc_call_arena(call), open[i]->id);
                }
            }
        }
        tm_catalog_tasks_free(open, n);
        tidemark__backup_info__free_unpacked(b, NULL);
        b = NULL;
        if (rc != TM_OK) {
            return tm_admin_catalog_error(call, &err);
        }
        if (busy != NULL) {
            return tm_rpc_call_error(call, TM_RPC_FAILED_PRECONDITION,
                                     "backup %s is being deleted by retention task %s; cancel it "
                                     "first (tidemarkctl task cancel %s), then hold the backup",
                                     req->id, busy, busy);
        }
    }
    if (tm_catalog_backup_set_keep(c->catalog, target, req->id, keep, &b, &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    tm_info("admin", "event=backup_%s target=%s backup=%s", keep ? "held" : "released", b->target,
            b->id);
    resp->backup = tm_admin_to_arena(call, &b->base);
    tidemark__backup_info__free_unpacked(b, NULL);
    return TM_RPC_OK;
}

static int apply_one(struct tm_coordinator *c, tm_rpc_call *call, const char *target,
                     Tidemark__RetentionApplyResponse *resp, size_t cap, tm_err *err)
{
    Tidemark__Task *t = NULL;
    int was_open = 0;
    char why[200];
    int rc = tm_retention_apply_target(c->retention, target, "admin", &t, &was_open, why,
                                       sizeof(why), err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_arena *a = tm_rpc_call_arena(call);
    if (t != NULL && resp->n_tasks < cap) {
        resp->tasks[resp->n_tasks++] = tm_admin_to_arena(call, &t->base);
        if (was_open && resp->n_skipped < cap) {
            snprintf(why, sizeof(why), "%s: EXPIRE task %s already open", target, t->id);
            resp->skipped[resp->n_skipped++] = tm_arena_strdup(a, why);
        }
    } else if (t == NULL && resp->n_skipped < cap) {
        resp->skipped[resp->n_skipped++] = tm_arena_strdup(a, why);
    }
    if (t != NULL) {
        tidemark__task__free_unpacked(t, NULL);
    }
    return TM_OK;
}

static int handle_retention_apply(tm_rpc_call *call, const ProtobufCMessage *in,
                                  ProtobufCMessage *out, void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__RetentionApplyRequest *req = (const Tidemark__RetentionApplyRequest *)in;
    Tidemark__RetentionApplyResponse *resp = (Tidemark__RetentionApplyResponse *)out;
    tm_arena *a = tm_rpc_call_arena(call);
    tm_err err;
    tm_agent_rec **agents = NULL;
    size_t n_agents = 0, cap = 1;
    const char *only = req->target != NULL && req->target[0] ? req->target : NULL;
    if (only != NULL) {
        char *owner = NULL;
        int kind = 0;
        if (tm_catalog_target_owner(c->catalog, only, &owner, &kind, &err) != TM_OK) {
            return tm_admin_catalog_error(call, &err);
        }
        free(owner);
    } else {
        if (tm_catalog_agent_list(c->catalog, &agents, &n_agents, &err) != TM_OK) {
            return tm_admin_catalog_error(call, &err);
        }
        for (size_t i = 0; i < n_agents; i++) {
            cap += agents[i]->n_targets;
        }
    }
    resp->tasks = tm_arena_alloc(a, cap * sizeof(*resp->tasks));
    resp->skipped = tm_arena_alloc(a, cap * 2 * sizeof(*resp->skipped));
    int rc = resp->tasks != NULL && resp->skipped != NULL
                 ? TM_OK
                 : tm_err_set(&err, TM_ENOMEM, "retention: out of memory");
    if (rc == TM_OK && only != NULL) {
        rc = apply_one(c, call, only, resp, cap, &err);
    }
    for (size_t i = 0; rc == TM_OK && i < n_agents; i++) {
        for (size_t t = 0; rc == TM_OK && agents[i]->approved && t < agents[i]->n_targets; t++) {
            rc = apply_one(c, call, agents[i]->targets[t].name, resp, cap, &err);
        }
    }
    tm_agent_recs_free(agents, n_agents);
    return rc == TM_OK ? TM_RPC_OK : tm_admin_catalog_error(call, &err);
}

static int handle_retention_log(tm_rpc_call *call, const ProtobufCMessage *in,
                                ProtobufCMessage *out, void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__RetentionLogRequest *req = (const Tidemark__RetentionLogRequest *)in;
    Tidemark__RetentionLogResponse *resp = (Tidemark__RetentionLogResponse *)out;
    tm_arena *a = tm_rpc_call_arena(call);
    tm_retention_deletion *d = NULL;
    size_t n = 0;
    tm_err err;
    const char *target = req->target != NULL && req->target[0] ? req->target : NULL;
    size_t limit = req->has_limit && req->limit > 0 ? req->limit : 100;
    if (tm_catalog_retention_log(c->catalog, target, limit, &d, &n, &err) != TM_OK) {
        return tm_admin_catalog_error(call, &err);
    }
    resp->deletions = tm_arena_alloc(a, (n + 1) * sizeof(*resp->deletions));
    for (size_t i = 0; i < n && resp->deletions != NULL; i++) {
        Tidemark__RetentionDeletion *r = tm_arena_alloc(a, sizeof(*r));
        if (r == NULL) {
            break;
        }
        tidemark__retention_deletion__init(r);
        r->has_at = r->has_backup_type = r->has_finished_at = 1;
        r->at = d[i].at;
        r->target = tm_arena_strdup(a, d[i].target);
        r->backup_id = tm_arena_strdup(a, d[i].backup_id);
        r->backup_type = (Tidemark__BackupType)d[i].backup_type;
        r->finished_at = d[i].finished_at;
        r->reason = tm_arena_strdup(a, d[i].reason);
        r->task_id = tm_arena_strdup(a, d[i].task_id);
        /* "a,b" -> repeated */
        size_t nr = d[i].repositories[0] ? 1 : 0;
        for (const char *p = d[i].repositories; *p; p++) {
            nr += *p == ',';
        }
        r->repositories = tm_arena_alloc(a, (nr + 1) * sizeof(*r->repositories));
        char *list = tm_arena_strdup(a, d[i].repositories);
        char *save = NULL;
        for (char *tok = list ? strtok_r(list, ",", &save) : NULL;
             tok != NULL && r->repositories != NULL; tok = strtok_r(NULL, ",", &save)) {
            r->repositories[r->n_repositories++] = tok;
        }
        resp->deletions[resp->n_deletions++] = r;
    }
    tm_retention_deletions_free(d, n);
    return TM_RPC_OK;
}

int tm_admin_retention_register(struct tm_coordinator *c)
{
    static const struct {
        const char *name;
        tm_rpc_handler fn;
        unsigned flags;
    } calls[] = {
        {"KeepBackup", handle_keep_backup, TM_RPC_MUTATING},
        {"RetentionApply", handle_retention_apply, TM_RPC_MUTATING},
        {"RetentionLog", handle_retention_log, 0},
    };
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        int rc = tm_rpc_server_register(c->rpc, &tidemark__admin__descriptor, calls[i].name,
                                        calls[i].fn, c, calls[i].flags);
        if (rc != TM_OK) {
            return rc;
        }
    }
    return TM_OK;
}
