/*
 * drills.c - restore drills, coordinator side (see drills.h).
 */
#include "coordinator/drills.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "coordinator/policy.h"

#define DEFAULT_RTO_GOAL_S 3600
#define DEFAULT_RPO_GOAL_S 900

/* An agent id or a unique hostname -> the agent id. */
static int agent_id_of(tm_catalog *cat, const char *ref, char *out, size_t cap, tm_err *err)
{
    tm_agent_rec **a = NULL;
    size_t n = 0, hits = 0;
    int rc = tm_catalog_agent_list(cat, &a, &n, err);
    if (rc != TM_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(a[i]->id, ref) == 0) {
            hits = 1;
            snprintf(out, cap, "%s", a[i]->id);
            break;
        }
        if (a[i]->hostname != NULL && strcmp(a[i]->hostname, ref) == 0) {
            hits++;
            snprintf(out, cap, "%s", a[i]->id);
        }
    }
    tm_agent_recs_free(a, n);
    if (hits == 0) {
        return tm_err_set(err, TM_ENOENT,
                          "no agent with id or hostname '%s' to run the drill (see tidemarkctl "
                          "agents list)",
                          ref);
    }
    if (hits > 1) {
        return tm_err_set(err, TM_EINVAL,
                          "hostname '%s' names %zu agents; give the staging agent by id", ref,
                          hits);
    }
    return TM_OK;
}

int tm_drills_submit(const tm_coordinator_conf *conf, tm_catalog *cat, tm_dispatcher *d,
                     const char *target, const char *to_agent, const char *target_time,
                     const char *requested_by, Tidemark__Task **out, tm_err *err)
{
    *out = NULL;
    if (target == NULL || target[0] == '\0') {
        return tm_err_set(err, TM_EINVAL, "drill: target required");
    }
    const tm_policy_conf *p = NULL;
    int rc = tm_policy_for_target(conf, cat, target, &p, err);
    if (rc != TM_OK) {
        return rc;
    }
    for (int st = TIDEMARK__TASK_STATE__TASK_QUEUED; st <= TIDEMARK__TASK_STATE__TASK_RUNNING;
         st++) {
        int64_t n = 0;
        if ((rc = tm_catalog_task_count(cat, target, TIDEMARK__TASK_KIND__DRILL, st, &n, err)) !=
            TM_OK) {
            return rc;
        }
        if (n > 0) {
            return tm_err_set(
                err, TM_EBUSY,
                "a drill of %s is already %s; wait for it (tidemarkctl drills list "
                "--target %s)",
                target, st == TIDEMARK__TASK_STATE__TASK_QUEUED ? "queued" : "running", target);
        }
    }
    const char *ref = to_agent != NULL && to_agent[0] ? to_agent
                      : p != NULL                     ? p->drill.staging_agent
                                                      : NULL;
    char agent[128] = "";
    if (ref != NULL && (rc = agent_id_of(cat, ref, agent, sizeof(agent), err)) != TM_OK) {
        return rc;
    }
    Tidemark__DrillSpec spec = TIDEMARK__DRILL_SPEC__INIT;
    spec.target_time = (char *)(target_time != NULL ? target_time : "");
    spec.has_rto_goal_s = spec.has_rpo_goal_s = 1;
    spec.rto_goal_s = p != NULL ? (uint32_t)p->drill.rto_goal_s : DEFAULT_RTO_GOAL_S;
    spec.rpo_goal_s = p != NULL ? (uint32_t)p->drill.rpo_goal_s : DEFAULT_RPO_GOAL_S;
    if (p != NULL) {
        spec.checks = p->drill.checks;
        spec.n_checks = p->drill.n_checks;
        spec.dir = p->drill.dir;
        spec.policy = p->name;
    }
    Tidemark__Task t = TIDEMARK__TASK__INIT;
    t.has_kind = 1;
    t.kind = TIDEMARK__TASK_KIND__DRILL;
    t.target = (char *)target;
    t.drill = &spec;
    t.requested_by = (char *)requested_by;
    return tm_dispatcher_submit(d, &t, agent[0] ? agent : NULL, out, err);
}

int tm_drills_record(tm_catalog *cat, const Tidemark__Task *t, tm_err *err)
{
    if (t->kind != TIDEMARK__TASK_KIND__DRILL ||
        (t->state != TIDEMARK__TASK_STATE__TASK_SUCCEEDED &&
         t->state != TIDEMARK__TASK_STATE__TASK_FAILED)) {
        return TM_OK;
    }
    const Tidemark__DrillResult *r = t->result != NULL ? t->result->drill : NULL;
    const Tidemark__DrillSpec *s = t->drill;
    Tidemark__DrillInfo d = TIDEMARK__DRILL_INFO__INIT;
    d.target = t->target;
    d.task_id = t->id;
    d.agent_id = t->agent_id;
    d.requested_by = t->requested_by;
    d.has_ok = d.has_finished_at_ms = d.has_started_at_ms = 1;
    d.ok = t->state == TIDEMARK__TASK_STATE__TASK_SUCCEEDED;
    d.finished_at_ms = tm_now_ms();
    d.started_at_ms = t->started_at * 1000;
    d.error = d.ok ? NULL : t->error;
    if (s != NULL) {
        d.has_rto_goal_s = s->has_rto_goal_s;
        d.rto_goal_s = s->rto_goal_s;
        d.has_rpo_goal_s = s->has_rpo_goal_s;
        d.rpo_goal_s = s->rpo_goal_s;
        d.target_time = s->target_time;
    }
    if (r != NULL) {
        d.backup_id = r->backup_id;
        if (r->has_started_at_ms) {
            d.started_at_ms = r->started_at_ms;
        }
        d.has_target_ms = r->has_target_ms;
        d.target_ms = r->target_ms;
        d.has_recovered_to_ms = r->has_recovered_to_ms;
        d.recovered_to_ms = r->recovered_to_ms;
        d.has_rto_ms = r->has_rto_ms;
        d.rto_ms = r->rto_ms;
        d.has_rpo_ms = r->has_rpo_ms;
        d.rpo_ms = r->rpo_ms;
        d.has_restore_files_ms = r->has_restore_files_ms;
        d.restore_files_ms = r->restore_files_ms;
        d.has_recovery_ms = r->has_recovery_ms;
        d.recovery_ms = r->recovery_ms;
        d.has_checks_ms = r->has_checks_ms;
        d.checks_ms = r->checks_ms;
        d.n_checks = r->n_checks;
        d.checks = r->checks;
    }
    int rc = tm_catalog_drill_put(cat, &d, err);
    if (rc == TM_OK) {
        tm_info("drills",
                "event=recorded task=%s target=%s ok=%d backup=%s rto_ms=%" PRIu64
                " rpo_ms=%" PRId64 " error=\"%.200s\"",
                t->id, t->target, d.ok, d.backup_id ? d.backup_id : "-", d.rto_ms, d.rpo_ms,
                d.error ? d.error : "");
    }
    return rc;
}

void tm_drills_collect(tm_metrics_writer *w, void *arg)
{
    tm_catalog *cat = arg;
    Tidemark__DrillInfo **last = NULL;
    size_t n = 0, ns = 0;
    tm_drill_success *succ = NULL;
    int64_t ok_total = 0, failed_total = 0;
    tm_err err;
    if (tm_catalog_drill_latest(cat, &last, &n, &err) != TM_OK) {
        return;
    }
    if (tm_catalog_drill_stats(cat, &succ, &ns, &ok_total, &failed_total, &err) != TM_OK) {
        tm_catalog_drills_free(last, n);
        return;
    }
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"tidemark_drill_last_rto_seconds",
         "RTO measured by the newest drill: restore start to checks passed."},
        {"tidemark_drill_last_rpo_seconds",
         "Achieved RPO of the newest drill: target time minus the newest recovered transaction."},
        {"tidemark_drill_last_result", "1 if the newest drill of the target passed, else 0."},
        {"tidemark_drill_rto_goal_seconds", "The target's drill RTO goal."},
        {"tidemark_drill_rpo_goal_seconds", "The target's drill RPO goal."},
    };
    char labels[256], esc[160];
    for (size_t k = 0; k < sizeof(fam) / sizeof(fam[0]); k++) {
        tm_metrics_write_family(w, fam[k].name, TM_METRIC_GAUGE, fam[k].help);
        for (size_t i = 0; i < n; i++) {
            const Tidemark__DrillInfo *d = last[i];
            int has = k == 0   ? d->has_rto_ms
                      : k == 1 ? d->has_rpo_ms
                      : k == 3 ? d->has_rto_goal_s
                      : k == 4 ? d->has_rpo_goal_s
                               : 1;
            if (!has) {
                continue;
            }
            double v = k == 0   ? (double)d->rto_ms / 1000.0
                       : k == 1 ? (double)d->rpo_ms / 1000.0
                       : k == 2 ? (d->ok ? 1.0 : 0.0)
                       : k == 3 ? (double)d->rto_goal_s
                                : (double)d->rpo_goal_s;
            snprintf(labels, sizeof(labels), "target=\"%s\"",
                     tm_metrics_escape(d->target, esc, sizeof(esc)));
            tm_metrics_write_sample(w, fam[k].name, labels, v);
        }
    }
    tm_metrics_write_family(w, "tidemark_drill_last_success_timestamp_seconds", TM_METRIC_GAUGE,
                            "Unix time the newest successful drill of the target finished.");
    for (size_t i = 0; i < ns; i++) {
        snprintf(labels, sizeof(labels), "target=\"%s\"",
                 tm_metrics_escape(succ[i].target, esc, sizeof(esc)));
        tm_metrics_write_sample(w, "tidemark_drill_last_success_timestamp_seconds", labels,
                                (double)succ[i].finished_ms / 1000.0);
    }
    tm_metrics_write_family(w, "tidemark_drills_total", TM_METRIC_COUNTER,
                            "Restore drills finished, by result.");
    tm_metrics_write_sample(w, "tidemark_drills_total", "result=\"ok\"", (double)ok_total);
    tm_metrics_write_sample(w, "tidemark_drills_total", "result=\"failed\"", (double)failed_total);
    free(succ);
    tm_catalog_drills_free(last, n);
}
