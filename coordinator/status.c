/*
 * status.c - the per-target rows of `tidemarkctl status`: for each target,
 * what it can be restored to right now (RPO, from the PITR window), how
 * long the last restore drill took (RTO), log shipping, the task running
 * and the alerts firing, against the goals of its policy. One catalog read
 * per source, then a pass per target.
 */
#include "coordinator/service_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/engine_kinds.h"
#include "common/log.h"
#include "common/util.h"
#include "coordinator/alert_rules.h"
#include "coordinator/archiver.h"
#include "coordinator/cron.h"
#include "coordinator/policy.h"

static uint32_t firing_for(const tm_alert_info *al, size_t n, const char *target)
{
    uint32_t k = 0;
    size_t tl = strlen(target);
    for (size_t i = 0; i < n; i++) {
        const char *t = al[i].target;
        if (al[i].state == TM_ALERT_STATE_FIRING && t != NULL && strncmp(t, target, tl) == 0 &&
            (t[tl] == '\0' || t[tl] == '/')) {
            k++;
        }
    }
    return k;
}

/* The provider's own window, where the target's agent reports one. */
static void fill_provider(struct tm_coordinator *c, tm_arena *a, const char *target,
                          Tidemark__TargetStatus *ts)
{
    tm_provider_status pw;
    if (tm_archiver_get_window(c->archiver, target, &pw) != TM_OK) {
        return;
    }
    ts->has_provider_pitr_start = ts->has_provider_pitr_end = 1;
    ts->provider_pitr_start = pw.error[0] ? 0 : pw.start;
    ts->provider_pitr_end = pw.error[0] ? 0 : pw.end;
    ts->provider_pitr =
        pw.error[0] ? tm_arena_printf(a, "unknown: %s", pw.error) : tm_arena_strdup(a, pw.source);
}

static void fill_log_shipping(struct tm_coordinator *c, tm_arena *a, const char *target,
                              const tm_policy_conf *p, Tidemark__TargetStatus *ts)
{
    tm_archiver_status st;
    int reported = tm_archiver_get(c->archiver, target, &st) == TM_OK;
    if (reported && st.snapshot_only[0] != '\0') {
        ts->snapshot_only = tm_arena_strdup(a, st.snapshot_only);
    }
    if (reported && st.last_chain_reset_ms > 0) {
        ts->has_last_chain_reset_ms = ts->has_chain_resets = 1;
        ts->last_chain_reset_ms = st.last_chain_reset_ms;
        ts->chain_resets = st.chain_resets_total;
        ts->chain_reset = tm_arena_strdup(a, st.chain_reset);
        ts->chain_reset_from = tm_arena_strdup(a, st.chain_reset_from);
    }
    if (p != NULL && !p->log_shipping) {
        ts->log_shipping = "off";
    } else if (!reported) {
        ts->log_shipping = "not reported";
    } else if (st.error[0] != '\0') {
        ts->log_shipping = tm_arena_printf(a, "unknown: %s", st.error);
    } else if (tm_archiver_failing(&st)) {
        char at[32];
        tm_fmt_time(st.last_failed_ms / 1000, at, sizeof(at));
        ts->log_shipping = tm_arena_printf(
            a, "failing: %s last failed at %s (%llu failures)%s%s", st.last_failed_log, at,
            (unsigned long long)st.failed_count, st.last_failure[0] ? ": " : "", st.last_failure);
    } else {
        ts->log_shipping = "ok";
    }
}

/* A kind with backups only: no log shipping to report, and the RPO bound
 * is the interval of the policy's snapshot schedule (the gap between its
 * next two runs; 0 without a schedule). */
static void fill_backups_only(tm_arena *a, const tm_policy_conf *p, int64_t now,
                              Tidemark__TargetStatus *ts)
{
    int64_t bound = 0;
    tm_cron *cr = NULL;
    tm_err e;
    if (p != NULL && p->snapshot != NULL && tm_cron_parse(p->snapshot, &cr, &e) == TM_OK) {
        int64_t n1 = tm_cron_next(cr, now);
        int64_t n2 = n1 > 0 ? tm_cron_next(cr, n1) : 0;
        bound = n1 > 0 && n2 > n1 ? n2 - n1 : 0;
        tm_cron_free(cr);
    }
    ts->has_rpo_bound_seconds = 1;
    ts->rpo_bound_seconds = bound;
    ts->log_shipping = tm_arena_printf(
        a, "none: backups only, the RPO is the newest backup's age (up to the backup interval)");
}

static const char *running_of(tm_arena *a, Tidemark__Task *const *open, size_t n,
                              const char *target)
{
    for (size_t i = 0; i < n; i++) {
        const Tidemark__Task *t = open[i];
        if (t->target == NULL || strcmp(t->target, target) != 0 ||
            t->state != TIDEMARK__TASK_STATE__TASK_RUNNING) {
            continue;
        }
        const char *kind = tm_task_kind_name(t->kind);
        const char *type =
            t->kind == TIDEMARK__TASK_KIND__BACKUP ? tm_backup_type_name(t->backup_type) : "";
        if (t->progress != NULL && t->progress->bytes_total > 0) {
            return tm_arena_printf(
                a, "%s %s %.0f%% (task %s)", kind ? kind : "task", type ? type : "",
                100.0 * (double)t->progress->bytes_done / (double)t->progress->bytes_total, t->id);
        }
        return tm_arena_printf(a, "%s %s (task %s)", kind ? kind : "task", type ? type : "", t->id);
    }
    return "";
}

/* "ID missing A,B" for each partial backup of target (arena memory). */
static int fill_partial(tm_arena *a, Tidemark__BackupInfo *const *b, size_t n, const char *target,
                        Tidemark__TargetStatus *ts)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(b[i]->target, target) != 0) {
            continue;
        }
        if (ts->partial_backups == NULL &&
            (ts->partial_backups = tm_arena_alloc(a, n * sizeof(char *))) == NULL) {
            return TM_ENOMEM;
        }
        char line[512];
        int off = snprintf(line, sizeof(line), "%s missing ", b[i]->id);
        for (size_t k = 0;
             off > 0 && (size_t)off < sizeof(line) && k < b[i]->n_missing_repositories; k++) {
            off += snprintf(line + off, sizeof(line) - (size_t)off, "%s%s", k ? "," : "",
                            b[i]->missing_repositories[k]);
        }
        if ((ts->partial_backups[ts->n_partial_backups++] = tm_arena_strdup(a, line)) == NULL) {
            return TM_ENOMEM;
        }
    }
    return TM_OK;
}

int tm_status_targets(struct tm_coordinator *c, tm_rpc_call *call, Tidemark__StatusResponse *resp)
{
    tm_arena *a = tm_rpc_call_arena(call);
    tm_agent_rec **agents = NULL;
    size_t n_agents = 0, nf = 0, n_open = 0, n_alerts = 0;
    tm_freshness *f = NULL;
    Tidemark__Task **open = NULL;
    tm_alert_info *al = NULL;
    tm_err err;
    int rc = tm_catalog_agent_list(c->catalog, &agents, &n_agents, &err);
    if (rc == TM_OK) {
        rc = tm_catalog_freshness(c->catalog, &f, &nf, &err);
    }
    if (rc == TM_OK) {
        rc = tm_catalog_task_list(c->catalog, NULL, 1, 0, &open, &n_open, &err);
    }
    if (rc == TM_OK) {
        rc = tm_alerts_list(tm_alert_rules_alerts(c->alert_rules), &al, &n_alerts, &err);
    }
    Tidemark__DrillInfo **drills = NULL;
    size_t n_drills = 0;
    if (rc == TM_OK) {
        rc = tm_catalog_drill_latest(c->catalog, &drills, &n_drills, &err);
    }
    Tidemark__BackupInfo **partial = NULL;
    size_t n_partial = 0;
    if (rc == TM_OK) {
        rc = tm_catalog_backup_partial_list(c->catalog, NULL, &partial, &n_partial, &err);
    }
    size_t total = 0;
    for (size_t i = 0; rc == TM_OK && i < n_agents; i++) {
        total += agents[i]->n_targets;
    }
    if (rc == TM_OK && (resp->target_status = tm_arena_alloc(a, sizeof(*resp->target_status) *
                                                                    (total + 1))) == NULL) {
        rc = tm_err_set(&err, TM_ENOMEM, "out of memory");
    }
    int64_t now = tm_now_s();
    for (size_t i = 0; rc == TM_OK && i < n_agents; i++) {
        const tm_agent_rec *ag = agents[i];
        int state = ag->state;
        int64_t seen = 0;
        tm_registry_get(c->registry, ag->id, &state, &seen);
        for (size_t t = 0; rc == TM_OK && t < ag->n_targets; t++) {
            const char *name = ag->targets[t].name;
            Tidemark__TargetStatus *ts = tm_arena_alloc(a, sizeof(*ts));
            if (ts == NULL) {
                rc = tm_err_set(&err, TM_ENOMEM, "out of memory");
                break;
            }
            tidemark__target_status__init(ts);
            ts->name = tm_arena_strdup(a, name);
            ts->has_kind = ts->has_agent_state = 1;
            ts->kind = (Tidemark__TargetKind)ag->targets[t].kind;
            ts->agent = tm_arena_strdup(a, ag->hostname);
            ts->agent_state = (Tidemark__AgentState)tm_registry_reported_state(ag->approved, state);
            const tm_policy_conf *p =
                tm_policy_match(c->conf, ag->targets[t].kind, ag->labels, ag->n_labels);
            ts->policy = p ? p->name : "";
            for (size_t k = 0; k < nf; k++) {
                if (strcmp(f[k].target, name) != 0) {
                    continue;
                }
                if (f[k].type == TIDEMARK__BACKUP_TYPE__FULL ||
                    f[k].type == TIDEMARK__BACKUP_TYPE__SNAPSHOT) {
                    ts->has_last_full_at = 1;
                    ts->last_full_at = f[k].last > ts->last_full_at ? f[k].last : ts->last_full_at;
                } else if (f[k].type == TIDEMARK__BACKUP_TYPE__INCREMENTAL) {
                    ts->has_last_incremental_at = 1;
                    ts->last_incremental_at = f[k].last;
                }
            }
            int64_t start = 0, end = 0;
            uint32_t depth = 0;
            rc = tm_logs_window(c, name, &start, &end, &depth, &err);
            if (rc != TM_OK) {
                break;
            }
            ts->has_pitr_start = ts->has_pitr_end = ts->has_rpo_seconds = 1;
            ts->has_archive_queue = 1;
            ts->pitr_start = start;
            ts->pitr_end = end;
            ts->rpo_seconds = end > 0 ? now - end : -1;
            ts->archive_queue = depth;
            if (p != NULL) {
                ts->has_rpo_goal_seconds = 1;
                ts->rpo_goal_seconds = p->rpo_goal_s;
            }
            ts->has_rto_seconds = 1;
            ts->rto_seconds = -1; /* never drilled */
            if (p != NULL) {
                ts->has_rto_goal_seconds = 1;
                ts->rto_goal_seconds = p->drill.rto_goal_s;
            }
            for (size_t k = 0; k < n_drills; k++) {
                const Tidemark__DrillInfo *d = drills[k];
                if (d->target == NULL || strcmp(d->target, name) != 0) {
                    continue;
                }
                ts->has_last_drill_at = ts->has_last_drill_ok = 1;
                ts->last_drill_at = d->finished_at_ms / 1000;
                ts->last_drill_ok = d->ok;
                if (d->has_rto_ms) {
                    ts->rto_seconds = (double)d->rto_ms / 1000.0;
                }
            }
            const tm_engine_kind *ek = tm_engine_kind_by_kind(ag->targets[t].kind);
            if (ek != NULL && ek->backups_only) {
                fill_backups_only(a, p, now, ts);
            } else {
                fill_log_shipping(c, a, name, p, ts);
            }
            fill_provider(c, a, name, ts);
            ts->has_alerts_firing = 1;
            ts->alerts_firing = firing_for(al, n_alerts, name);
            ts->running = (char *)running_of(a, open, n_open, name);
            if (fill_partial(a, partial, n_partial, name, ts) != TM_OK) {
                rc = tm_err_set(&err, TM_ENOMEM, "out of memory");
                break;
            }
            resp->target_status[resp->n_target_status++] = ts;
        }
    }
    tm_catalog_drills_free(drills, n_drills);
    tm_catalog_backups_free(partial, n_partial);
    tm_alert_info_free(al, n_alerts);
    tm_catalog_tasks_free(open, n_open);
    free(f);
    tm_agent_recs_free(agents, n_agents);
    if (rc != TM_OK) {
        tm_error("admin", "event=status_failed msg=\"%s\"", err.msg);
        return tm_rpc_call_error(call, TM_RPC_UNAVAILABLE, "catalog: %s", err.msg);
    }
    return TM_RPC_OK;
}
