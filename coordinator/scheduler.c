/*
 * scheduler.c - the scheduler loop's body (see scheduler.h).
 */
#include "coordinator/scheduler.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/engine_kinds.h"
#include "common/log.h"
#include "common/names.h"
#include "coordinator/drills.h"
#include "coordinator/policy.h"

#include "tidemark.pb-c.h"

/* In-memory state of one (target, kind) job. The next_due cache must live
 * across ticks: a job that never ran starts "from now", and recomputing
 * that every tick would push its first run forever. */
typedef struct job_slot {
    char target[72];
    tm_job_kind kind;
    const tm_policy_conf *policy; /* the policy it was computed under */
    tm_sched_state st;
    int seen; /* in this tick's job list */
} job_slot;

typedef struct policy_crons {
    tm_cron *full;
    tm_cron *incremental; /* NULL = none */
    tm_cron *snapshot;    /* NULL = none; only for kinds with snapshot backups */
    tm_cron *drill;       /* NULL = no scheduled drills */
} policy_crons;

/* Targets already reported as having no policy, so the log says it once. */
typedef struct name_set {
    char (*names)[72];
    size_t n, cap;
} name_set;

/* Whether a kind takes backups of a type (full, incremental, snapshot) on
 * the policy's schedule for it: the kind table says. A catch-all policy's
 * full and incremental schedules do not apply to an engine that only takes
 * snapshots (no job, so no backup_late for a backup that can never run). */
static int kind_takes(int kind, int type)
{
    return tm_engine_kind_takes(tm_engine_kind_by_kind(kind), type);
}

#define MAX_KINDS 16

struct tm_scheduler {
    const tm_coordinator_conf *conf;
    tm_cron *kind_snapshot[MAX_KINDS]; /* each kind's default_snapshot, for policies of any kind */
    tm_catalog *cat;
    tm_dispatcher *disp;
    tm_clock_fn clock;
    void *clock_arg;
    policy_crons *crons; /* one per conf->policies[i] */
    job_slot *slots;
    size_t n_slots, cap_slots;
    tm_sched_row *persisted; /* catalog state at start, consulted for new slots */
    size_t n_persisted;
    name_set unmatched;
    pthread_mutex_t mu; /* guards the metric values below (scrapes run on other threads) */
    size_t without_policy;
    uint64_t started_total;
    /* tidemark_backup_expected_interval_seconds, recomputed each minute:
     * the period of each backup job's cron around now, so a Prometheus rule
     * can say "older than 1.5 x the schedule" instead of a fixed age. */
    struct interval_row {
        char target[72];
        tm_job_kind kind;
        int64_t seconds;
    } * intervals;
    size_t n_intervals;
    int64_t intervals_at;
    uint64_t intervals_sig; /* of the job set they were computed from */
    /* Which repositories each target writes to, for the per-repository
     * limit: one record read per target, so reloaded each minute rather
     * than every tick (a target's repositories change with its config). */
    tm_target_repo *pairs;
    const char **pair_names; /* pair_names[i] = pairs[i].repository */
    size_t n_pairs;
    int64_t pairs_at;
};

int tm_scheduler_new(tm_scheduler **out, const tm_coordinator_conf *conf, tm_catalog *cat,
                     tm_dispatcher *d, tm_clock_fn clock, void *clock_arg, tm_err *err)
{
    *out = NULL;
    tm_scheduler *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tm_err_set(err, TM_ENOMEM, "scheduler: out of memory");
    }
    s->conf = conf;
    s->cat = cat;
    s->disp = d;
    s->clock = clock != NULL ? clock : tm_clock_system;
    s->clock_arg = clock_arg;
    pthread_mutex_init(&s->mu, NULL);
    int rc = TM_OK;
    s->crons = calloc(conf->n_policies ? conf->n_policies : 1, sizeof(*s->crons));
    if (s->crons == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "scheduler: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < conf->n_policies; i++) {
        const tm_policy_conf *p = &conf->policies[i];
        tm_err cerr = {0};
        if (tm_cron_parse(p->full, &s->crons[i].full, &cerr) != TM_OK) {
            rc = tm_err_set(err, TM_ECONFIG, "%s: %s", p->full_where, cerr.msg);
            goto fail;
        }
        if (p->incremental != NULL &&
            tm_cron_parse(p->incremental, &s->crons[i].incremental, &cerr) != TM_OK) {
            rc = tm_err_set(err, TM_ECONFIG, "%s: %s", p->incremental_where, cerr.msg);
            goto fail;
        }
        if (p->snapshot != NULL &&
            tm_cron_parse(p->snapshot, &s->crons[i].snapshot, &cerr) != TM_OK) {
            rc = tm_err_set(err, TM_ECONFIG, "%s: %s", p->snapshot_where, cerr.msg);
            goto fail;
        }
        if (p->drill.schedule != NULL &&
            tm_cron_parse(p->drill.schedule, &s->crons[i].drill, &cerr) != TM_OK) {
            rc = tm_err_set(err, TM_ECONFIG, "%s: %s", p->drill.schedule_where, cerr.msg);
            goto fail;
        }
    }
    size_t nk = 0;
    const tm_engine_kind *kinds = tm_engine_kinds(&nk);
    for (size_t i = 0; i < nk; i++) {
        tm_err cerr = {0};
        if (kinds[i].default_snapshot != NULL && kinds[i].kind >= 0 && kinds[i].kind < MAX_KINDS &&
            tm_cron_parse(kinds[i].default_snapshot, &s->kind_snapshot[kinds[i].kind], &cerr) !=
                TM_OK) {
            rc = tm_err_set(err, TM_EINVAL, "kind %s: default snapshot schedule: %s", kinds[i].name,
                            cerr.msg);
            goto fail;
        }
    }
    if ((rc = tm_catalog_sched_list(cat, &s->persisted, &s->n_persisted, err)) != TM_OK) {
        goto fail;
    }
    *out = s;
    return TM_OK;
fail:
    tm_scheduler_free(s);
    return rc;
}

void tm_scheduler_free(tm_scheduler *s)
{
    if (s == NULL) {
        return;
    }
    for (size_t i = 0; s->crons != NULL && i < s->conf->n_policies; i++) {
        tm_cron_free(s->crons[i].full);
        tm_cron_free(s->crons[i].incremental);
        tm_cron_free(s->crons[i].snapshot);
        tm_cron_free(s->crons[i].drill);
    }
    free(s->crons);
    for (size_t i = 0; i < MAX_KINDS; i++) {
        tm_cron_free(s->kind_snapshot[i]);
    }
    free(s->slots);
    free(s->persisted);
    free(s->unmatched.names);
    free(s->intervals);
    free(s->pairs);
    free(s->pair_names);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* A kind's own snapshot schedule, for a policy of any kind that did not set
^ * one (a target of a snapshot-only engine under a catch-all policy still
 * gets its snapshots). */
static const tm_cron *kind_default_snapshot(const tm_scheduler *s, int kind)
{
    return kind >= 0 && kind < MAX_KINDS ? s->kind_snapshot[kind] : NULL;
}

static job_slot *slot_get(tm_scheduler *s, const char *target, tm_job_kind kind,
                          const tm_policy_conf *policy)
{
    for (size_t i = 0; i < s->n_slots; i++) {
        job_slot *j = &s->slots[i];
        if (j->kind == kind && strcmp(j->target, target) == 0) {
            if (j->policy != policy) {
                j->policy = policy; /* schedule may differ: recompute, keep last_fire */
                j->st.next_due = 0;
            }
            return j;
        }
    }
    if (s->n_slots == s->cap_slots) {
        size_t cap = s->cap_slots ? s->cap_slots * 2 : 16;
        job_slot *ns = realloc(s->slots, cap * sizeof(*ns));
        if (ns == NULL) {
            return NULL;
        }
        s->slots = ns;
        s->cap_slots = cap;
    }
    job_slot *j = &s->slots[s->n_slots++];
    memset(j, 0, sizeof(*j));
    snprintf(j->target, sizeof(j->target), "%s", target);
    j->kind = kind;
    j->policy = policy;
    const char *kn = tm_job_kind_name(kind);
    for (size_t i = 0; i < s->n_persisted; i++) {
        if (strcmp(s->persisted[i].target, target) == 0 && strcmp(s->persisted[i].kind, kn) == 0) {
            j->st.last_fire = s->persisted[i].last_fire;
        }
    }
    return j;
}

static void note_unmatched(tm_scheduler *s, const char *target)
{
    name_set *u = &s->unmatched;
    for (size_t i = 0; i < u->n; i++) {
        if (strcmp(u->names[i], target) == 0) {
            return;
        }
    }
    tm_warn("scheduler",
            "event=target_without_policy target=%s msg=\"no policy matches this target: it gets "
            "no scheduled backups; add a policy whose match covers its kind and labels\"",
            target);
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 8;
        char(*nn)[72] = realloc(u->names, cap * sizeof(*nn));
        if (nn == NULL) {
            return; /* only costs a repeated log line */
        }
        u->names = nn;
        u->cap = cap;
    }
    snprintf(u->names[u->n++], sizeof(u->names[0]), "%s", target);
}

static int job_kind_of_backup(int type)
{
    switch (type) {
    case TIDEMARK__BACKUP_TYPE__INCREMENTAL:
        return TM_JOB_INCREMENTAL;
    case TIDEMARK__BACKUP_TYPE__SNAPSHOT:
        return TM_JOB_SNAPSHOT;
    default:
        return TM_JOB_FULL;
    }
}

static int submit(tm_scheduler *s, const job_slot *j, const tm_sched_decision *d)
{
    if (j->kind == TM_JOB_DRILL) {
        Tidemark__Task *stored = NULL;
        tm_err err;
        if (tm_drills_submit(s->conf, s->cat, s->disp, j->target, NULL, NULL, "schedule", &stored,
                             &err) != TM_OK) {
            tm_error("scheduler", "event=submit_failed target=%s kind=drill msg=\"%s\"", j->target,
                     err.msg);
            return 0;
        }
        tm_info("scheduler",
                "event=task_started target=%s kind=drill task=%s agent=%s policy=%s "
                "fire_time=%lld missed=%lld reason=\"%s\"",
                j->target, stored->id, stored->agent_id, j->policy->name, (long long)d->fire_time,
                (long long)d->missed, d->reason);
        tidemark__task__free_unpacked(stored, NULL);
        return 1;
    }
    Tidemark__Task t = TIDEMARK__TASK__INIT;
    t.has_kind = t.has_backup_type = 1;
    t.kind = TIDEMARK__TASK_KIND__BACKUP;
    t.backup_type = j->kind == TM_JOB_INCREMENTAL ? TIDEMARK__BACKUP_TYPE__INCREMENTAL
                    : j->kind == TM_JOB_SNAPSHOT  ? TIDEMARK__BACKUP_TYPE__SNAPSHOT
                                                  : TIDEMARK__BACKUP_TYPE__FULL;
    t.target = (char *)j->target;
    t.requested_by = "schedule";
    Tidemark__Task *stored = NULL;
    tm_err err;
    if (tm_dispatcher_submit(s->disp, &t, NULL, &stored, &err) != TM_OK) {
        tm_error("scheduler", "event=submit_failed target=%s kind=%s msg=\"%s\"", j->target,
                 tm_job_kind_name(j->kind), err.msg);
        return 0;
    }
    tm_info("scheduler",
            "event=task_started target=%s kind=%s task=%s policy=%s fire_time=%lld missed=%lld "
            "reason=\"%s\"",
            j->target, tm_job_kind_name(j->kind), stored->id, j->policy->name,
            (long long)d->fire_time, (long long)d->missed, d->reason);
    tidemark__task__free_unpacked(stored, NULL);
    return 1;
}

/* The run of pairs (sorted by target) that belongs to target, as a slice of
 * names (names[i] = pairs[i].repository). */
static void repos_of(const tm_target_repo *pairs, const char *const *names, size_t n,
                     const char *target, const char *const **out, size_t *n_out)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(pairs[mid].target, target) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    size_t end = lo;
    while (end < n && strcmp(pairs[end].target, target) == 0) {
        end++;
    }
    *out = end > lo ? names + lo : NULL;
    *n_out = end - lo;
}

static int reload_pairs(tm_scheduler *s, int64_t now, tm_err *err)
{
    tm_target_repo *pairs = NULL;
    size_t n = 0;
    int rc = tm_catalog_target_repos(s->cat, &pairs, &n, err);
    if (rc != TM_OK) {
        return rc;
    }
    const char **names = calloc(n ? n : 1, sizeof(*names));
    if (names == NULL) {
        free(pairs);
        return tm_err_set(err, TM_ENOMEM, "scheduler: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        names[i] = pairs[i].repository;
    }
    free(s->pairs);
    free(s->pair_names);
    s->pairs = pairs;
    s->pair_names = names;
    s->n_pairs = n;
    s->pairs_at = now;
    return TM_OK;
}

int tm_scheduler_tick(tm_scheduler *s, tm_err *err)
{
    int started = 0; /* before any goto out */
    int64_t now = s->clock(s->clock_arg);
    tm_agent_rec **agents = NULL;
    size_t n_agents = 0;
    Tidemark__Task **open = NULL;
    size_t n_open = 0;
    int rc = tm_catalog_agent_list(s->cat, &agents, &n_agents, err);
    if (rc == TM_OK) {
        rc = tm_catalog_task_list(s->cat, NULL, 1, 0, &open, &n_open, err);
    }
    if (rc == TM_OK && s->conf->sched_max_per_repo > 0 &&
        (s->pair_names == NULL || now - s->pairs_at >= 60 || now < s->pairs_at)) {
        rc = reload_pairs(s, now, err);
    }
    if (rc != TM_OK) {
        tm_agent_recs_free(agents, n_agents);
        tm_catalog_tasks_free(open, n_open);
        return rc;
    }
    const tm_target_repo *pairs = s->pairs;
    const char *const *pair_names = s->pair_names;
    size_t n_pairs = s->n_pairs;
    for (size_t i = 0; i < s->n_slots; i++) {
        s->slots[i].seen = 0;
    }
    size_t without = 0, n_jobs = 0, cap_jobs = 0;
    tm_sched_job *jobs = NULL;
    job_slot **slot_of = NULL; /* jobs[i] belongs to slot_of[i] */
    for (size_t a = 0; a < n_agents; a++) {
        const tm_agent_rec *ag = agents[a];
        if (!ag->approved) {
            continue; /* a pending agent gets no work */
        }
        for (size_t t = 0; t < ag->n_targets; t++) {
            const char *target = ag->targets[t].name;
            const tm_policy_conf *p =
                tm_policy_match(s->conf, ag->targets[t].kind, ag->labels, ag->n_labels);
            if (p == NULL) {
                without++;
                note_unmatched(s, target);
                continue;
            }
            size_t pi = (size_t)(p - s->conf->policies);
            static const tm_job_kind kinds[] = {TM_JOB_FULL, TM_JOB_INCREMENTAL, TM_JOB_SNAPSHOT,
                                                TM_JOB_DRILL};
            for (int k = 0; k < 4; k++) {
                static const int types[] = {TIDEMARK__BACKUP_TYPE__FULL,
                                            TIDEMARK__BACKUP_TYPE__INCREMENTAL,
                                            TIDEMARK__BACKUP_TYPE__SNAPSHOT};
                const tm_cron *cron = k == 0   ? s->crons[pi].full
                                      : k == 1 ? s->crons[pi].incremental
                                      : k == 2 ? s->crons[pi].snapshot
                                               : s->crons[pi].drill;
                if (k == 2 && cron == NULL && !p->snapshot_given) {
                    cron = kind_default_snapshot(s, ag->targets[t].kind);
                }
                if (k < 3 && !kind_takes(ag->targets[t].kind, types[k])) {
                    cron = NULL;
                }
                if (cron == NULL) {
                    continue;
                }
                job_slot *js = slot_get(s, target, kinds[k], p);
                if (js == NULL) {
                    continue;
                }
                if (n_jobs == cap_jobs) {
                    cap_jobs = cap_jobs ? cap_jobs * 2 : 16;
                    tm_sched_job *nj = realloc(jobs, cap_jobs * sizeof(*nj));
                    job_slot **ns = realloc(slot_of, cap_jobs * sizeof(*ns));
                    if (nj != NULL) {
                        jobs = nj;
                    }
                    if (ns != NULL) {
                        slot_of = ns;
                    }
                    if (nj == NULL || ns == NULL) {
                        rc = tm_err_set(err, TM_ENOMEM, "scheduler: out of memory");
                        goto out;
                    }
                }
                js->seen = 1;
                jobs[n_jobs] = (tm_sched_job){
                    .target = js->target,
                    .kind = js->kind,
                    .cron = cron,
                    .jitter_max_s = p->jitter_s,
                    /* a drill runs on the staging agent: no limit by the target's */
                    .agent = kinds[k] == TM_JOB_DRILL ? NULL : ag->id,
                    .paused = s->conf->sched_paused,
                };
                if (kinds[k] != TM_JOB_DRILL) { /* drills read; the limit is on writers */
                    repos_of(pairs, pair_names, n_pairs, js->target, &jobs[n_jobs].repos,
                             &jobs[n_jobs].n_repos);
                }
                slot_of[n_jobs++] = js;
            }
        }
    }
    /* Recomputed each minute (a cron's period can change with the hour or
     * the day) and at once when the set of jobs changes: a coordinator that
     * starts before its agents register, or a target that appears, must not
     * export nothing for a minute. */
    uint64_t jobs_sig = 1469598103934665603ull;
    for (size_t i = 0; i < n_jobs; i++) {
        for (const char *c = jobs[i].target; *c != '\0'; c++) {
            jobs_sig = (jobs_sig ^ (unsigned char)*c) * 1099511628211ull;
        }
        jobs_sig = (jobs_sig ^ (uint64_t)jobs[i].kind ^ (uint64_t)(uintptr_t)jobs[i].cron) *
                   1099511628211ull;
    }
    if (now - s->intervals_at >= 60 || now < s->intervals_at || jobs_sig != s->intervals_sig) {
        s->intervals_sig = jobs_sig;
        struct interval_row *iv = calloc(n_jobs ? n_jobs : 1, sizeof(*iv));
        size_t ni = 0;
        for (size_t i = 0; iv != NULL && i < n_jobs; i++) {
            if (jobs[i].kind == TM_JOB_DRILL) {
                continue;
            }
            int64_t next = tm_cron_next(jobs[i].cron, now);
            int64_t prev = tm_cron_prev(jobs[i].cron, now + 1);
            if (next != TM_CRON_NEVER && prev != TM_CRON_NONE && next > prev) {
                snprintf(iv[ni].target, sizeof(iv[ni].target), "%s", jobs[i].target);
                iv[ni].kind = jobs[i].kind;
                iv[ni++].seconds = next - prev;
            }
        }
        if (iv != NULL) {
            pthread_mutex_lock(&s->mu);
            free(s->intervals);
            s->intervals = iv;
            s->n_intervals = ni;
            s->intervals_at = now;
            pthread_mutex_unlock(&s->mu);
        }
    }
    pthread_mutex_lock(&s->mu);
    s->without_policy = without;
    pthread_mutex_unlock(&s->mu);
    if (n_jobs > 0) {
        tm_sched_state *states = calloc(n_jobs, sizeof(*states));
        tm_sched_decision *dec = calloc(n_jobs, sizeof(*dec));
        tm_sched_active *act = calloc(n_open ? n_open : 1, sizeof(*act));
        if (states == NULL || dec == NULL || act == NULL) {
            free(states);
            free(dec);
            free(act);
            rc = tm_err_set(err, TM_ENOMEM, "scheduler: out of memory");
            goto out;
        }
        size_t n_act = 0;
        for (size_t i = 0; i < n_open; i++) {
            int drill = open[i]->kind == TIDEMARK__TASK_KIND__DRILL;
            if (open[i]->kind != TIDEMARK__TASK_KIND__BACKUP && !drill) {
                continue; /* restores and log shipping do not block backups here */
            }
            act[n_act++] = (tm_sched_active){
                .target = open[i]->target,
                .kind =
                    drill ? TM_JOB_DRILL : (tm_job_kind)job_kind_of_backup(open[i]->backup_type),
                .agent = open[i]->agent_id,
                .running = open[i]->state == TIDEMARK__TASK_STATE__TASK_RUNNING,
            };
            if (!drill) {
                repos_of(pairs, pair_names, n_pairs, open[i]->target, &act[n_act - 1].repos,
                         &act[n_act - 1].n_repos);
            }
        }
        for (size_t i = 0; i < n_jobs; i++) {
            states[i] = slot_of[i]->st;
        }
        tm_sched_limits lim = {
            .per_agent = (int)s->conf->sched_max_per_agent,
            .per_repo = (int)s->conf->sched_max_per_repo,
        };
        size_t n_dec = 0;
        rc = tm_sched_decide(jobs, states, n_jobs, act, n_act, &lim, now, dec, n_jobs, &n_dec, err);
        if (rc == TM_OK) {
            for (size_t i = 0; i < n_dec; i++) {
                const job_slot *js = slot_of[dec[i].job];
                if (dec[i].action == TM_SCHED_START) {
                    started += submit(s, js, &dec[i]);
                } else if (dec[i].action == TM_SCHED_SKIP) {
                    tm_info("scheduler", "event=skipped target=%s kind=%s reason=\"%s\"",
                            js->target, tm_job_kind_name(js->kind), dec[i].reason);
                }
            }
            /* Persist every changed fire time (including a new job's
             * starting point), after the tasks exist: a crash in between
             * re-runs a job once rather than losing it. */
            for (size_t i = 0; i < n_jobs; i++) {
                job_slot *js = slot_of[i];
                if (states[i].last_fire != js->st.last_fire) {
                    tm_err perr;
                    if (tm_catalog_sched_put(s->cat, js->target, tm_job_kind_name(js->kind),
                                             states[i].last_fire, &perr) != TM_OK) {
                        tm_error("scheduler", "event=state_save_failed target=%s msg=\"%s\"",
                                 js->target, perr.msg);
                    }
                }
                js->st = states[i];
            }
        }
        free(states);
        free(dec);
        free(act);
    }
    pthread_mutex_lock(&s->mu);
    s->started_total += (uint64_t)started;
    pthread_mutex_unlock(&s->mu);
out:
    free(jobs);
    free(slot_of);
    tm_agent_recs_free(agents, n_agents);
    tm_catalog_tasks_free(open, n_open);
    return rc == TM_OK ? started : rc;
}

void tm_scheduler_each_job(tm_scheduler *s, tm_sched_job_fn fn, void *arg)
{
    for (size_t i = 0; i < s->n_slots; i++) {
        const job_slot *j = &s->slots[i];
        if (!j->seen) {
            continue; /* no longer scheduled (policy or target gone) */
        }
        tm_sched_job_status st = {
            .target = j->target,
            .kind = j->kind,
            .policy = j->policy,
            .last_fire = j->st.last_fire,
            .next_due = j->st.next_due,
            .paused = s->conf->sched_paused,
        };
        fn(&st, arg);
    }
}

void tm_scheduler_collect(tm_metrics_writer *w, void *arg)
{
    tm_scheduler *s = arg;
    pthread_mutex_lock(&s->mu);
    size_t without = s->without_policy;
    uint64_t started = s->started_total;
    pthread_mutex_unlock(&s->mu);
    tm_metrics_write_family(w, "tidemark_targets_without_policy", TM_METRIC_GAUGE,
                            "Targets that no policy matches (no scheduled backups).");
    tm_metrics_write_sample(w, "tidemark_targets_without_policy", NULL, (double)without);
    tm_metrics_write_family(w, "tidemark_scheduled_tasks_total", TM_METRIC_COUNTER,
                            "Tasks the scheduler started.");
    tm_metrics_write_sample(w, "tidemark_scheduled_tasks_total", NULL, (double)started);
    tm_metrics_write_family(w, "tidemark_backup_expected_interval_seconds", TM_METRIC_GAUGE,
                            "The schedule's period for this target and backup type (cron).");
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_intervals; i++) {
        char labels[200], esc[160];
        const struct interval_row *r = &s->intervals[i];
        snprintf(labels, sizeof(labels), "target=\"%s\",type=\"%s\"",
                 tm_metrics_escape(r->target, esc, sizeof(esc)), tm_job_kind_name(r->kind));
        tm_metrics_write_sample(w, "tidemark_backup_expected_interval_seconds", labels,
                                (double)r->seconds);
    }
    pthread_mutex_unlock(&s->mu);
}
