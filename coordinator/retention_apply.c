/*
 * retention_apply.c - the retention plan applied: EXPIRE tasks on schedule
 * or on request, and the catalog's side of their completion. See
 * retention_apply.h for the rules.
 */
#include "coordinator/retention_apply.h"
#include "common/log.h"
#include "common/names.h"
#include "common/util.h"
#include "coordinator/cron.h"
#include "coordinator/policy.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHED_KIND "retention"
/* Drops per EXPIRE task: keeps the task (and the agent's report) far below
 * the 4 MiB RPC message cap on a first run over years of history. The
 * newest drops go first: an incremental is newer than its parent, so a
 * capped task never drops a parent while keeping its dropped children (the
 * agent would refuse); the next run takes the rest. */
#define MAX_DROPS_PER_TASK 5000

struct tm_retention_apply {
    const tm_coordinator_conf *conf;
    tm_catalog *cat;
    tm_dispatcher *d;
    tm_clock_fn clock;
    void *clock_arg;
    tm_cron **crons;    /* per policy; NULL = no automatic apply */
    pthread_mutex_t mu; /* one apply at a time (tick vs admin RPC) */
    atomic_uint_fast64_t deletions;
    atomic_uint_fast64_t tasks;
};

int tm_retention_apply_new(tm_retention_apply **out, const tm_coordinator_conf *conf,
                           tm_catalog *cat, tm_dispatcher *d, tm_clock_fn clock, void *clock_arg,
                           tm_err *err)
{
    tm_retention_apply *ra = calloc(1, sizeof(*ra));
    if (ra == NULL || (ra->crons = calloc(conf->n_policies + 1, sizeof(*ra->crons))) == NULL) {
        free(ra);
        return tm_err_set(err, TM_ENOMEM, "retention: out of memory");
    }
    ra->conf = conf;
    ra->cat = cat;
    ra->d = d;
    ra->clock = clock != NULL ? clock : tm_clock_system;
    ra->clock_arg = clock_arg;
    pthread_mutex_init(&ra->mu, NULL);
    for (size_t i = 0; i < conf->n_policies; i++) {
        const tm_policy_retention_conf *r = &conf->policies[i].retention;
        if (r->apply == NULL) {
            continue;
        }
        tm_err cerr = {0};
        if (tm_cron_parse(r->apply, &ra->crons[i], &cerr) != TM_OK) {
            int rc = tm_err_set(err, TM_ECONFIG, "%s: %s",
                                r->apply_where ? r->apply_where : "retention.apply", cerr.msg);
            tm_retention_apply_free(ra);
            return rc;
        }
    }
    *out = ra;
    return TM_OK;
}

void tm_retention_apply_free(tm_retention_apply *ra)
{
    if (ra == NULL) {
        return;
    }
    for (size_t i = 0; i < ra->conf->n_policies; i++) {
        tm_cron_free(ra->crons[i]);
    }
    free(ra->crons);
    pthread_mutex_destroy(&ra->mu);
    free(ra);
}

int tm_retention_read(tm_catalog *cat, const char *target, Tidemark__BackupInfo ***bs, size_t *n,
                      tm_err *err)
{
    int64_t rows = 0;
    int rc = tm_catalog_backup_count(cat, target, &rows, err);
    if (rc == TM_OK) {
        rc = tm_catalog_backup_list(cat, target, bs, n, err);
    }
    if (rc == TM_OK && (int64_t)*n < rows) {
        /* A row that could not be decoded is skipped by the list; the plan
         * would not see (nor protect) it. */
        size_t got = *n;
        tm_catalog_backups_free(*bs, *n);
        *bs = NULL;
        *n = 0;
        rc = tm_err_set(err, TM_EIO,
                        "catalog: %lld backup records%s%s but only %zu readable; retention "
                        "refuses to plan on a partial read (check the catalog)",
                        (long long)rows, target ? " for " : "", target ? target : "", got);
    }
    return rc;
}

int tm_retention_plan_for(const tm_coordinator_conf *conf, tm_catalog *cat, const char *target,
                          Tidemark__BackupInfo *const *bs, size_t n, int64_t now,
                          const tm_policy_conf **policy, tm_retention_plan **out, tm_err *err)
{
    const tm_policy_conf *p = NULL;
    int rc = tm_policy_for_target(conf, cat, target, &p, err);
    if (rc != TM_OK && rc != TM_ENOENT) {
        return rc; /* never plan on a failed catalog read */
    }
    tm_retention_policy pol;
    tm_policy_retention(p, &pol);
    tm_backup_rec *recs = calloc(n ? n : 1, sizeof(*recs));
    if (recs == NULL) {
        return tm_err_set(err, TM_ENOMEM, "retention: out of memory");
    }
    /* The catalog holds successful backups only (a failed run leaves no
     * backup record), so every record is ok. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(bs[i]->target, target) != 0) {
            continue;
        }
        recs[k++] = (tm_backup_rec){
            .id = bs[i]->id,
            .target = bs[i]->target,
            .type = (tm_backup_type)bs[i]->type,
            .parent_id = bs[i]->parent_id != NULL && bs[i]->parent_id[0] ? bs[i]->parent_id : NULL,
            .started_at = bs[i]->started_at,
            .finished_at = bs[i]->finished_at,
            .ok = 1,
            .keep = bs[i]->keep,
        };
    }
    rc = tm_retention_plan_new(recs, k, &pol, now, out, err);
    free(recs);
    if (rc == TM_OK && policy != NULL) {
        *policy = p;
    }
    return rc;
}

/* The open EXPIRE task of target, if any (TM_OK with *out NULL when none). */
static int open_expire(tm_retention_apply *ra, const char *target, Tidemark__Task **out,
                       tm_err *err)
{
    *out = NULL;
    Tidemark__Task **open = NULL;
    size_t n = 0;
    int rc = tm_catalog_task_list(ra->cat, target, 1, 0, &open, &n, err);
    if (rc != TM_OK) {
        return rc;
    }
    for (size_t i = 0; i < n && *out == NULL; i++) {
        if (open[i]->kind == TIDEMARK__TASK_KIND__EXPIRE) {
            *out = open[i];
            open[i] = NULL;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (open[i] != NULL) {
            tidemark__task__free_unpacked(open[i], NULL);
        }
    }
    free(open);
    return TM_OK;
}

static int apply_locked(tm_retention_apply *ra, const char *target, const char *requested_by,
                        Tidemark__Task **out, int *was_open, char *why, size_t why_cap, tm_err *err)
{
    int rc = open_expire(ra, target, out, err);
    if (rc != TM_OK || *out != NULL) {
        *was_open = *out != NULL;
        return rc;
    }
    Tidemark__BackupInfo **bs = NULL;
    size_t n = 0;
    if ((rc = tm_retention_read(ra->cat, target, &bs, &n, err)) != TM_OK) {
        return rc;
    }
    tm_retention_plan *plan = NULL;
    rc = tm_retention_plan_for(ra->conf, ra->cat, target, bs, n, ra->clock(ra->clock_arg), NULL,
                               &plan, err);
    if (rc != TM_OK) {
        tm_catalog_backups_free(bs, n);
        return rc;
    }
    size_t ndrop = 0;
    for (size_t i = 0; i < plan->n_items; i++) {
        ndrop += !plan->items[i].keep;
    }
    const tm_retention_target *pt = plan->n_targets == 1 ? &plan->targets[0] : NULL;
    if (ndrop == 0 && (pt == NULL || pt->log_cutoff_id == NULL)) {
        snprintf(why, why_cap, "%s: nothing to drop and no log cutoff", target);
        tm_retention_plan_free(plan);
        tm_catalog_backups_free(bs, n);
        return TM_OK;
    }
    Tidemark__ExpireSpec spec = TIDEMARK__EXPIRE_SPEC__INIT;
    Tidemark__ExpireBackup *drops = calloc(ndrop + 1, sizeof(*drops));
    Tidemark__ExpireBackup **dp = calloc(ndrop + 1, sizeof(*dp));
    if (drops == NULL || dp == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "retention: out of memory");
    }
    /* Plan items are newest first (retention.h). */
    for (size_t i = 0; rc == TM_OK && i < plan->n_items && spec.n_drop < MAX_DROPS_PER_TASK; i++) {
        const tm_retention_item *it = &plan->items[i];
        if (it->keep) {
            continue;
        }
        Tidemark__ExpireBackup *e = &drops[spec.n_drop];
        tidemark__expire_backup__init(e);
        e->id = it->id;
        e->reason = it->reason;
        e->has_type = e->has_finished_at = 1;
        e->type = (Tidemark__BackupType)it->type;
        e->finished_at = it->finished_at;
        dp[spec.n_drop++] = e;
    }
    spec.drop = dp;
    if (pt != NULL && pt->log_cutoff_id != NULL) {
        spec.log_cutoff_id = pt->log_cutoff_id;
        spec.has_log_cutoff = 1;
        spec.log_cutoff = pt->log_cutoff;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(bs[i]->id, pt->log_cutoff_id) == 0 && strcmp(bs[i]->target, target) == 0) {
                spec.log_cutoff_start_position = bs[i]->start_position;
                spec.has_log_cutoff_chain = bs[i]->has_chain;
                spec.log_cutoff_chain = bs[i]->chain;
            }
        }
    }
    if (rc == TM_OK) {
        Tidemark__Task t = TIDEMARK__TASK__INIT;
        t.has_kind = 1;
        t.kind = TIDEMARK__TASK_KIND__EXPIRE;
        t.target = (char *)target;
        t.requested_by = (char *)requested_by;
        t.expire = &spec;
        rc = tm_dispatcher_submit(ra->d, &t, NULL, out, err);
    }
    if (rc == TM_OK) {
        atomic_fetch_add(&ra->tasks, 1);
        tm_info("retention",
                "event=expire_queued target=%s task=%s drop=%zu kept=%zu deferred=%zu "
                "log_cutoff=%s by=%s",
                target, (*out)->id, spec.n_drop, plan->n_items - ndrop, ndrop - spec.n_drop,
                spec.log_cutoff_id ? spec.log_cutoff_id : "-", requested_by);
    }
    free(dp);
    free(drops);
    tm_retention_plan_free(plan);
    tm_catalog_backups_free(bs, n);
    return rc;
}

int tm_retention_apply_target(tm_retention_apply *ra, const char *target, const char *requested_by,
                              Tidemark__Task **out, int *was_open, char *why, size_t why_cap,
                              tm_err *err)
{
    *out = NULL;
    *was_open = 0;
    if (why_cap > 0) {
        why[0] = '\0';
    }
    pthread_mutex_lock(&ra->mu);
    int rc = apply_locked(ra, target, requested_by, out, was_open, why, why_cap, err);
    pthread_mutex_unlock(&ra->mu);
    return rc;
}

static int64_t persisted_fire(const tm_sched_row *rows, size_t n, const char *target)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(rows[i].kind, SCHED_KIND) == 0 && strcmp(rows[i].target, target) == 0) {
            return rows[i].last_fire;
        }
    }
    return TM_CRON_NONE;
}

int tm_retention_apply_tick(tm_retention_apply *ra, tm_err *err)
{
    if (ra->conf->sched_paused) {
        /* scheduler.paused stops automatic deletions too; the fire times
         * are kept, so a run missed while paused happens once on resume. */
        return 0;
    }
    int64_t now = ra->clock(ra->clock_arg);
    tm_sched_row *rows = NULL;
    size_t n_rows = 0;
    tm_agent_rec **agents = NULL;
    size_t n_agents = 0;
    int rc = tm_catalog_sched_list(ra->cat, &rows, &n_rows, err);
    if (rc == TM_OK) {
        rc = tm_catalog_agent_list(ra->cat, &agents, &n_agents, err);
    }
    if (rc != TM_OK) {
        free(rows);
        return rc;
    }
    int queued = 0;
    for (size_t a = 0; a < n_agents; a++) {
        const tm_agent_rec *ag = agents[a];
        for (size_t t = 0; ag->approved && t < ag->n_targets; t++) {
            const char *target = ag->targets[t].name;
            const tm_policy_conf *p =
                tm_policy_match(ra->conf, ag->targets[t].kind, ag->labels, ag->n_labels);
            const tm_cron *cron = p != NULL ? ra->crons[p - ra->conf->policies] : NULL;
            if (cron == NULL) {
                continue;
            }
            int64_t fire = tm_cron_prev(cron, now + 1);
            int64_t last = persisted_fire(rows, n_rows, target);
            if (fire == TM_CRON_NONE || (last != TM_CRON_NONE && last >= fire)) {
                continue;
            }
            if (last != TM_CRON_NONE) {
                Tidemark__Task *task = NULL;
                int was_open = 0;
                char why[160];
                tm_err aerr = {0};
                int arc = tm_retention_apply_target(ra, target, "schedule", &task, &was_open, why,
                                                    sizeof(why), &aerr);
                if (arc != TM_OK) {
                    /* Nothing queued; the next fire time tries again. */
                    tm_error("retention", "event=apply_failed target=%s msg=\"%s\"", target,
                             aerr.msg);
                } else if (task != NULL && !was_open) {
                    queued++;
                } else if (task != NULL) {
                    tm_info("retention", "event=apply_skipped target=%s open_task=%s", target,
                            task->id);
                }
                if (task != NULL) {
                    tidemark__task__free_unpacked(task, NULL);
                }
            }
            /* First sight: start at the next fire time (dry-run window). */
            tm_err serr = {0};
            if (tm_catalog_sched_put(ra->cat, target, SCHED_KIND, fire, &serr) != TM_OK) {
                tm_error("retention", "event=state_save_failed target=%s msg=\"%s\"", target,
                         serr.msg);
            }
        }
    }
    tm_agent_recs_free(agents, n_agents);
    free(rows);
    return queued;
}

/* The repositories an EXPIRE result says a backup was removed from. */
static char *repos_of(const Tidemark__TaskResult *r, const char *id)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL) {
        return NULL;
    }
    const Tidemark__ExpireResult *e = r != NULL ? r->expire : NULL;
    int first = 1;
    for (size_t i = 0; e != NULL && i < e->n_repositories; i++) {
        const Tidemark__ExpireRepoResult *rr = e->repositories[i];
        for (size_t j = 0; j < rr->n_backups; j++) {
            if (strcmp(rr->backups[j], id) == 0) {
                fprintf(f, "%s%s", first ? "" : ",", rr->repository ? rr->repository : "");
                first = 0;
                break;
            }
        }
    }
    fclose(f);
    return buf;
}

int tm_retention_apply_completed(const Tidemark__Task *t, void *arg, tm_err *err)
{
    tm_retention_apply *ra = arg;
    if (t->kind != TIDEMARK__TASK_KIND__EXPIRE || t->expire == NULL || t->expire->n_drop == 0) {
        return TM_OK;
    }
    size_t n = t->expire->n_drop;
    tm_retention_deletion *d = calloc(n, sizeof(*d));
    if (d == NULL) {
        return tm_err_set(err, TM_ENOMEM, "retention: out of memory");
    }
    int64_t at = tm_now_s();
    int rc = TM_OK;
    for (size_t i = 0; i < n; i++) {
        const Tidemark__ExpireBackup *e = t->expire->drop[i];
        d[i] = (tm_retention_deletion){
            .at = at,
            .target = t->target,
            .backup_id = e->id,
            .backup_type = e->type,
            .finished_at = e->finished_at,
            .repositories = repos_of(t->result, e->id != NULL ? e->id : ""),
            .reason = e->reason,
            .task_id = t->id,
        };
        if (d[i].repositories == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "retention: out of memory");
        }
    }
    if (rc == TM_OK) {
        rc = tm_catalog_retention_record(ra->cat, d, n, err);
    }
    if (rc == TM_OK) {
        atomic_fetch_add(&ra->deletions, n);
        for (size_t i = 0; i < n; i++) {
            tm_info("retention",
                    "event=backup_deleted target=%s backup=%s type=%s repositories=%s task=%s "
                    "reason=\"%s\"",
                    t->target, d[i].backup_id, tm_backup_type_name(d[i].backup_type),
                    d[i].repositories, t->id, d[i].reason ? d[i].reason : "");
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(d[i].repositories);
    }
    free(d);
    return rc;
}

void tm_retention_apply_collect(tm_metrics_writer *w, void *arg)
{
    tm_retention_apply *ra = arg;
    tm_metrics_write_family(w, "tidemark_retention_deletions_total", TM_METRIC_COUNTER,
                            "Backups deleted by retention from every repository.");
    tm_metrics_write_sample(w, "tidemark_retention_deletions_total", NULL,
                            (double)atomic_load(&ra->deletions));
    tm_metrics_write_family(w, "tidemark_retention_tasks_total", TM_METRIC_COUNTER,
                            "EXPIRE tasks queued by retention (schedule and on request).");
    tm_metrics_write_sample(w, "tidemark_retention_tasks_total", NULL,
                            (double)atomic_load(&ra->tasks));
}
