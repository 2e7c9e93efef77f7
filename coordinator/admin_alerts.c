/*
 * admin_alerts.c - service Admin, the operations calls: ListAlerts (the
 * alert state machine's active alerts) and RetentionPlan (the GFS plan over
 * the catalog's backups, dry run only; admin_retention.c applies it).
 */
#include "coordinator/service_internal.h"
#include "common/log.h"
#include "common/util.h"
#include "coordinator/alert_rules.h"
#include "coordinator/policy.h"
#include "coordinator/retention.h"
#include "coordinator/retention_apply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int handle_list_alerts(tm_rpc_call *call, const ProtobufCMessage *in, ProtobufCMessage *out,
                              void *arg)
{
    struct tm_coordinator *c = arg;
    (void)in;
    Tidemark__ListAlertsResponse *resp = (Tidemark__ListAlertsResponse *)out;
    tm_arena *a = tm_rpc_call_arena(call);
    tm_alert_info *v = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_alerts_list(tm_alert_rules_alerts(c->alert_rules), &v, &n, &err) != TM_OK) {
        return tm_rpc_call_error(call, TM_RPC_INTERNAL, "alerts: %s", err.msg);
    }
    resp->alerts = tm_arena_alloc(a, sizeof(*resp->alerts) * (n + 1));
    for (size_t i = 0; i < n && resp->alerts != NULL; i++) {
        Tidemark__AlertInfo *ai = tm_arena_alloc(a, sizeof(*ai));
        if (ai == NULL) {
            break;
        }
        tidemark__alert_info__init(ai);
        ai->rule = tm_arena_strdup(a, v[i].rule);
        ai->target = tm_arena_strdup(a, v[i].target);
        ai->summary = tm_arena_strdup(a, v[i].summary);
        ai->fingerprint = tm_arena_strdup(a, v[i].fingerprint);
        ai->severity = (char *)tm_alert_severity_name(v[i].severity);
        ai->state = v[i].state == TM_ALERT_STATE_FIRING ? "firing" : "pending";
        ai->has_clearing = ai->has_active_since_ms = ai->has_starts_at_ms = 1;
        ai->has_last_notified_ms = ai->has_notifications = 1;
        ai->clearing = v[i].clearing != 0;
        ai->active_since_ms = v[i].active_since_ms;
        ai->starts_at_ms = v[i].starts_at_ms;
        ai->last_notified_ms = v[i].last_notified_ms;
        ai->notifications = v[i].notifications;
        ai->details = tm_arena_alloc(a, sizeof(*ai->details) * (v[i].n_details + 1));
        for (size_t d = 0; d < v[i].n_details && ai->details != NULL; d++) {
            Tidemark__KeyValue *kv = tm_arena_alloc(a, sizeof(*kv));
            if (kv == NULL) {
                break;
            }
            tidemark__key_value__init(kv);
            kv->key = tm_arena_strdup(a, v[i].details[d].key);
            kv->value = tm_arena_strdup(a, v[i].details[d].value);
            ai->details[ai->n_details++] = kv;
        }
        resp->alerts[resp->n_alerts++] = ai;
    }
    tm_alert_info_free(v, n);
    return TM_RPC_OK;
}

/* One target's plan under its own policy, appended to the text and JSON
 * streams. */
static int plan_target(struct tm_coordinator *c, const char *target,
                       Tidemark__BackupInfo *const *bs, size_t n, int64_t now, FILE *text,
                       FILE *json, int first, tm_err *err)
{
    const tm_policy_conf *p = NULL;
    tm_retention_plan *plan = NULL;
    int rc = tm_retention_plan_for(c->conf, c->catalog, target, bs, n, now, &p, &plan, err);
    if (rc != TM_OK) {
        return rc;
    }
    fprintf(text, "policy: %s\n", p != NULL ? p->name : "(none: retention defaults)");
    rc = tm_retention_plan_format(plan, 0, text);
    if (rc == TM_OK) {
        fprintf(json, "%s{\"policy\":", first ? "" : ",");
        if (p != NULL) {
            fprintf(json, "\"%s\"", p->name); /* names are [A-Za-z0-9._-] */
        } else {
            fputs("null", json);
        }
        fputs(",\"plan\":", json);
        rc = tm_retention_plan_format(plan, 1, json);
        fputs("}", json);
    }
    tm_retention_plan_free(plan);
    return rc == TM_OK ? TM_OK : tm_err_set(err, rc, "retention: formatting the plan failed");
}

static int handle_retention_plan(tm_rpc_call *call, const ProtobufCMessage *in,
                                 ProtobufCMessage *out, void *arg)
{
    struct tm_coordinator *c = arg;
    const Tidemark__RetentionPlanRequest *req = (const Tidemark__RetentionPlanRequest *)in;
    Tidemark__RetentionPlanResponse *resp = (Tidemark__RetentionPlanResponse *)out;
    const char *only = req->target != NULL && req->target[0] ? req->target : NULL;
    Tidemark__BackupInfo **bs = NULL;
    size_t n = 0;
    tm_err err;
    if (only != NULL) {
        char *owner = NULL;
        int kind = 0;
        if (tm_catalog_target_owner(c->catalog, only, &owner, &kind, &err) != TM_OK) {
            return tm_rpc_call_error(
                call, err.code == TM_ENOENT ? TM_RPC_NOT_FOUND : TM_RPC_UNAVAILABLE, "%s", err.msg);
        }
        free(owner);
    }
    if (tm_retention_read(c->catalog, only, &bs, &n, &err) != TM_OK) {
        /* The caller rule of retention.h: no plan from a failed or partial read. */
        return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err.msg);
    }
    char *tbuf = NULL, *jbuf = NULL;
    size_t tlen = 0, jlen = 0;
    FILE *text = open_memstream(&tbuf, &tlen);
    FILE *json = open_memstream(&jbuf, &jlen);
    int rc = text != NULL && json != NULL ? TM_OK
                                          : tm_err_set(&err, TM_ENOMEM, "retention: out of memory");
    int64_t now = tm_now_s();
    if (rc == TM_OK) {
        fputs("{\"dry_run\":true,\"note\":\"plan only: `tidemarkctl retention apply` (or the "
              "policy's retention.apply schedule) deletes\",\"plans\":[",
              json);
    }
    /* Targets in order of first appearance; the list is small (one row per
     * backup), so a quadratic "seen before" check is fine. */
    int first = 1;
    for (size_t i = 0; rc == TM_OK && i < n; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++) {
            seen = strcmp(bs[j]->target, bs[i]->target) == 0;
        }
        if (!seen) {
            rc = plan_target(c, bs[i]->target, bs, n, now, text, json, first, &err);
            first = 0;
        }
    }
    if (rc == TM_OK && n == 0) {
        fprintf(text, "no backups in the catalog%s%s\n", only ? " for " : "", only ? only : "");
    }
    if (json != NULL) {
        fputs("]}", json);
        fclose(json);
    }
    if (text != NULL) {
        fclose(text);
    }
    tm_catalog_backups_free(bs, n);
    if (rc == TM_OK) {
        resp->text = tm_arena_strdup(tm_rpc_call_arena(call), tbuf != NULL ? tbuf : "");
        resp->json = tm_arena_strdup(tm_rpc_call_arena(call), jbuf != NULL ? jbuf : "");
    }
    free(tbuf);
    free(jbuf);
    if (rc != TM_OK) {
        return tm_rpc_call_error(call, TM_RPC_INTERNAL, "%s", err.msg);
    }
    return TM_RPC_OK;
}

int tm_admin_alerts_register(struct tm_coordinator *c)
{
    int rc = tm_rpc_server_register(c->rpc, &tidemark__admin__descriptor, "ListAlerts",
                                    handle_list_alerts, c, 0);
    if (rc == TM_OK) {
        rc = tm_rpc_server_register(c->rpc, &tidemark__admin__descriptor, "RetentionPlan",
                                    handle_retention_plan, c, 0);
    }
    return rc;
}
