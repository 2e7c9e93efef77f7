/*
 * alert_rules.c - the coordinator's alert rules (see alert_rules.h).
 */
#include "coordinator/alert_rules.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/names.h"
#include "common/util.h"
#include "coordinator/alert_sinks.h"
#include "coordinator/archiver.h"
#include "coordinator/policy.h"
#include "coordinator/scheduler.h"

#include "tidemark.pb-c.h"

static const char *const rule_names[] = {
    "backup_failed",       "backup_stale",
    "rpo_breached",        "archive_queue_growing",
    "agent_stale",         "agent_lost",
    "log_shipping_failed", "backup_late",
    "drill_failed",        "drill_rto_over_goal",
    "drill_rpo_over_goal", "replication_gap",
    "replication_lag",     "repository_unreachable",
    "verify_failed",       "provider_check_failed",
    "log_chain_reset",
};

/* Log files finished by the database and not yet archived (reported by the
 * agent): this many means archiving is falling behind, well before the RPO
 * goal is breached. */
#define ARCHIVE_QUEUE_ALERT 4
#define N_RULES (sizeof(rule_names) / sizeof(rule_names[0]))
/* log_chain_reset fires this long after the coordinator first heard of a
 * reset: long enough for a human to see it, not forever (a new chain's base
 * makes the target restorable again from then on). */
#define CHAIN_RESET_HOLD_MS (3600 * 1000)

/* The newest chain reset log_chain_reset fired for, per target. */
typedef struct reset_seen {
    char target[72];
    int64_t ms;
} reset_seen;

struct tm_alert_rules {
    const tm_coordinator_conf *conf;
    tm_catalog *cat;
    tm_registry *reg;
    tm_alerts *alerts;
    tm_alert_sinks *sinks;
    tm_scheduler *sched;         /* backup_late; may be NULL */
    tm_archiver_table *archiver; /* log_shipping_failed, log_chain_reset; may be NULL */
    int64_t last_eval_ms;
    reset_seen *seen; /* log_chain_reset; only the evaluating thread */
    size_t n_seen;
};

void tm_alert_rules_set_sources(tm_alert_rules *r, tm_scheduler *s, tm_archiver_table *a)
{
    r->sched = s;
    r->archiver = a;
}

/* On a sink's sender thread: one catalog row per delivery. REFRESH
 * keep-alives are not notifications a human sees, so they are not logged. */
static void on_delivery(const tm_alert_delivery *d, void *arg)
{
    tm_alert_rules *r = arg;
    if (d->kind == TM_ALERT_NOTIFY_REFRESH) {
        return;
    }
    tm_err err;
    if (tm_catalog_alert_notification_add(r->cat, tm_now_ms(), d->rule, d->target,
                                          tm_alert_notify_kind_name(d->kind), d->sink, d->ok,
                                          d->ok ? NULL : d->error, &err) != TM_OK) {
        tm_error("alerts", "event=record_failed sink=%s rule=%s msg=\"%s\"", d->sink, d->rule,
                 err.msg);
    }
}

int tm_alert_rules_new(tm_alert_rules **out, const tm_coordinator_conf *conf, tm_catalog *cat,
                       tm_registry *reg, tm_err *err)
{
    *out = NULL;
    tm_alert_rules *r = calloc(1, sizeof(*r));
    tm_alert_sink_config *sc = calloc(conf->n_sinks ? conf->n_sinks : 1, sizeof(*sc));
    if (r == NULL || sc == NULL) {
        free(r);
        free(sc);
        return tm_err_set(err, TM_ENOMEM, "alerts: out of memory");
    }
    r->conf = conf;
    r->cat = cat;
    r->reg = reg;
    int rc = TM_OK;
    for (size_t i = 0; i < conf->n_sinks; i++) {
        const tm_alert_sink_conf *s = &conf->sinks[i];
        tm_alert_sink_config_init(&sc[i]);
        sc[i].name = s->name;
        sc[i].url = s->url;
        sc[i].send_resolved = s->send_resolved;
        tm_alert_sink_kind kind = TM_ALERT_SINK_WEBHOOK;
        tm_alert_severity sev = TM_ALERT_INFO;
        if (tm_alert_sink_kind_parse(s->kind, &kind) != TM_OK ||
            tm_alert_severity_parse(s->min_severity, &sev) != TM_OK) {
            rc = tm_err_set(err, TM_ECONFIG, "alerts.sinks[%zu]: bad kind or severity", i);
            goto out;
        }
        sc[i].kind = kind;
        sc[i].min_severity = sev;
    }
    if ((rc = tm_alert_sinks_new(sc, conf->n_sinks, on_delivery, r, &r->sinks, err)) != TM_OK) {
        goto out;
    }
    tm_alerts_rule_config rules[N_RULES];
    for (size_t i = 0; i < N_RULES; i++) {
        rules[i] = (tm_alerts_rule_config){
            .name = rule_names[i], .for_ms = -1, .repeat_ms = 0, .keep_firing_ms = -1};
    }
    tm_alerts_config ac = {
        .default_repeat_ms = conf->alerts_repeat_ms,
        .rules = rules,
        .n_rules = N_RULES,
        .notify = tm_alert_sinks_notify,
        .notify_arg = r->sinks,
    };
    rc = tm_alerts_new(&ac, &r->alerts, err);
out:
    free(sc);
    if (rc != TM_OK) {
        tm_alert_rules_free(r, 0);
        return rc;
    }
    *out = r;
    return TM_OK;
}

void tm_alert_rules_free(tm_alert_rules *r, int64_t flush_ms)
{
    if (r == NULL) {
        return;
    }
    if (r->sinks != NULL && flush_ms > 0 && tm_alert_sinks_flush(r->sinks, flush_ms) != TM_OK) {
        tm_warn("alerts",
                "event=flush_timeout timeout_ms=%" PRId64
                " msg=\"undelivered notifications dropped at shutdown\"",
                flush_ms);
    }
    tm_alerts_free(r->alerts);
    tm_alert_sinks_free(r->sinks);
    free(r->seen);
    free(r);
}

tm_alerts *tm_alert_rules_alerts(tm_alert_rules *r)
{
    return r->alerts;
}

static void observe_in(tm_alerts *a, const char *rule, const char *target, tm_alert_severity sev,
                       int firing, const char *summary, const tm_alert_kv *details,
                       size_t n_details, int64_t now_ms)
{
    tm_err err;
    if (tm_alerts_observe(a, rule, target, sev, firing, summary, details, n_details, now_ms, NULL,
                          &err) != TM_OK) {
        tm_error("alerts", "event=observe_failed rule=%s target=%s msg=\"%s\"", rule, target,
                 err.msg);
    }
}

static void observe(tm_alert_rules *r, const char *rule, const char *target, tm_alert_severity sev,
                    int firing, const char *summary, const tm_alert_kv *details, size_t n_details,
                    int64_t now_ms)
{
    observe_in(r->alerts, rule, target, sev, firing, summary, details, n_details, now_ms);
}

/* backup_failed / verify_failed: of the target's finished tasks of one kind
 * (backups; verify = replication checks), the one that ended last failed.
 * Task lists are read once per target and judged for both kinds. */
static void rule_task_failed(tm_alert_rules *r, const char *target, Tidemark__Task *const *t,
                             size_t n, int kind, const char *rule, const char *what, int64_t now_ms)
{
    const Tidemark__Task *last = NULL;
    for (size_t i = 0; i < n; i++) {
        /* A partial backup is not a failure (replication_gap covers it). */
        if ((int)t[i]->kind != kind || (t[i]->state != TIDEMARK__TASK_STATE__TASK_SUCCEEDED &&
                                        t[i]->state != TIDEMARK__TASK_STATE__TASK_PARTIAL &&
                                        t[i]->state != TIDEMARK__TASK_STATE__TASK_FAILED)) {
            continue;
        }
        if (last == NULL || t[i]->finished_at > last->finished_at) {
            last = t[i];
        }
    }
    int firing = last != NULL && last->state == TIDEMARK__TASK_STATE__TASK_FAILED;
    char summary[512] = "";
    tm_alert_kv d[2];
    size_t nd = 0;
    if (firing) {
        snprintf(summary, sizeof(summary), "%s of %s failed: %.400s", what, target,
                 last->error != NULL && last->error[0] ? last->error : "no error reported");
        d[nd++] = (tm_alert_kv){"task", last->id};
        d[nd++] = (tm_alert_kv){"error", last->error != NULL ? last->error : ""};
    }
    observe(r, rule, target, TM_ALERT_CRITICAL, firing, summary, d, nd, now_ms);
}

static int rule_backup_failed(tm_alert_rules *r, const char *target, int64_t now_ms, tm_err *err)
{
    Tidemark__Task **t = NULL;
    size_t n = 0;
    int rc = tm_catalog_task_list(r->cat, target, 0, 200, &t, &n, err);
    if (rc != TM_OK) {
        return rc;
    }
    rule_task_failed(r, target, t, n, TIDEMARK__TASK_KIND__BACKUP, "backup_failed", "backup",
                     now_ms);
    rule_task_failed(r, target, t, n, TIDEMARK__TASK_KIND__VERIFY, "verify_failed",
                     "replication check (verify)", now_ms);
    tm_catalog_tasks_free(t, n);
    return TM_OK;
}

static void rule_freshness(tm_alert_rules *r, const char *target, const tm_policy_conf *p,
                           const tm_freshness *f, size_t nf, int64_t registered_at, int64_t now_ms)
{
    int64_t now = now_ms / 1000;
    int64_t newest = 0, log_last = 0;
    int has_log = 0;
    for (size_t i = 0; i < nf; i++) {
        if (strcmp(f[i].target, target) != 0) {
            continue;
        }
        if (f[i].type == -1) {
            has_log = 1;
            log_last = f[i].last;
        } else if (f[i].last > newest) {
            newest = f[i].last;
        }
    }
    char summary[256] = "", age_s[32] = "", limit_s[32] = "";
    tm_alert_kv d[2] = {{"age_seconds", age_s}, {"limit_seconds", limit_s}};
    /* A target never backed up counts from its registration: a new target
     * gets a full backup_max_age to take its first backup. */
    int64_t since = newest > 0 ? newest : registered_at;
    int64_t age = now - since;
    int stale = since > 0 && age > p->backup_max_age_s;
    snprintf(age_s, sizeof(age_s), "%" PRId64, age);
    snprintf(limit_s, sizeof(limit_s), "%" PRId64, p->backup_max_age_s);
    if (stale) {
        snprintf(summary, sizeof(summary),
                 newest > 0 ? "newest backup of %s is %" PRId64 " s old (limit %" PRId64 " s)"
                            : "%s has had no backup for %" PRId64 " s (limit %" PRId64 " s)",
                 target, age, p->backup_max_age_s);
    }
    observe(r, "backup_stale", target, TM_ALERT_CRITICAL, stale, summary, d, 2, now_ms);
    if (!has_log || !p->log_shipping) {
        return; /* not shipping logs: no RPO to breach */
    }
    int64_t lag = now - log_last;
    int breached = lag > p->rpo_goal_s;
    snprintf(age_s, sizeof(age_s), "%" PRId64, lag);
    snprintf(limit_s, sizeof(limit_s), "%" PRId64, p->rpo_goal_s);
    d[0].key = "lag_seconds";
    summary[0] = '\0';
    if (breached) {
        snprintf(summary, sizeof(summary),
                 "log archive lag of %s is %" PRId64 " s (RPO goal %" PRId64 " s)", target, lag,
                 p->rpo_goal_s);
    }
    observe(r, "rpo_breached", target, TM_ALERT_CRITICAL, breached, summary, d, 2, now_ms);

    uint32_t depth = 0;
    tm_err err;
    if (tm_catalog_log_queue(r->cat, target, &depth, &err) != TM_OK) {
        return; /* no verdict on a failed read */
    }
    int growing = depth >= ARCHIVE_QUEUE_ALERT;
    char depth_s[32];
    tm_alert_kv q[1] = {{"queue_depth", depth_s}};
    snprintf(depth_s, sizeof(depth_s), "%u", depth);
    summary[0] = '\0';
    if (growing) {
        snprintf(summary, sizeof(summary),
                 "%u log files of %s wait to be archived (alert at %d): archiving falls behind",
                 depth, target, ARCHIVE_QUEUE_ALERT);
    }
    observe(r, "archive_queue_growing", target, TM_ALERT_WARNING, growing, summary, q, 1, now_ms);
}

/* log_shipping_failed: the database says its newest archive attempt failed.
 * A target whose status could not be read gets no verdict (rpo_breached
 * and archive_queue_growing still watch it). */
static void rule_log_shipping(tm_alert_rules *r, const char *target, const tm_policy_conf *p,
                              int64_t now_ms)
{
    tm_archiver_status st;
    if (r->archiver == NULL || !p->log_shipping ||
        tm_archiver_get(r->archiver, target, &st) != TM_OK || st.error[0] != '\0') {
        return;
    }
    int failing = tm_archiver_failing(&st);
    char summary[512] = "", failed[32], logf[64], since[32] = "";
    snprintf(failed, sizeof(failed), "%" PRIu64, st.failed_count);
    snprintf(logf, sizeof(logf), "%s", st.last_failed_log);
    if (st.last_failed_ms > 0) {
        tm_fmt_time(st.last_failed_ms / 1000, since, sizeof(since));
    }
    tm_alert_kv d[3] = {
        {"failed_count", failed}, {"last_failed_log", logf}, {"last_failed", since}};
    if (failing && st.last_failure[0] != '\0') {
        /* The agent's shipper failed and said why. */
        snprintf(summary, sizeof(summary),
                 "log shipping of %s fails: shipping after %s failed at %s (%s failures so far): "
                 "%.200s; the agent keeps its position and retries",
                 target, logf[0] ? logf : "the start", since, failed, st.last_failure);
    } else if (failing) {
        snprintf(summary, sizeof(summary),
                 "log shipping of %s fails: archiving %s failed at %s (%s failures so far); "
                 "the database keeps the file and retries, see its log for the archive "
                 "command's error",
                 target, logf, since, failed);
    }
    observe(r, "log_shipping_failed", target, TM_ALERT_CRITICAL, failing, summary, d, 3, now_ms);
}

/* provider_check_failed: the agent could not ask the provider about a
 * managed database (token refused, database gone, API down): its own
 * point-in-time window is unknown and drills through it will fail. */
static void rule_provider(tm_alert_rules *r, const char *target, int64_t now_ms)
{
    tm_provider_status pw;
    if (r->archiver == NULL || tm_archiver_get_window(r->archiver, target, &pw) != TM_OK) {
        return;
    }
    int failing = pw.error[0] != '\0';
    char summary[640] = "";
    tm_alert_kv d[1] = {{"error", pw.error}};
    if (failing) {
        snprintf(summary, sizeof(summary), "provider check of %s failed: %.500s", target, pw.error);
    }
    observe(r, "provider_check_failed", target, TM_ALERT_CRITICAL, failing, summary, d,
            failing ? 1 : 0, now_ms);
}

void tm_alert_rule_chain_reset(tm_alerts *a, const char *target, const tm_archiver_status *st,
                               int64_t hold_ms, int64_t *alerted, int64_t now_ms)
{
    int firing = st->chain_reset_seen_ms > 0 && now_ms - st->chain_reset_seen_ms < hold_ms;
    char summary[768] = "", at[32] = "", count[32];
    snprintf(count, sizeof(count), "%" PRIu64, st->chain_resets_total);
    const char *from = st->chain_reset_from[0] ? st->chain_reset_from : "unknown";
    tm_alert_kv d[4] = {
        {"why", st->chain_reset}, {"old_chain_end", from}, {"reset_at", at}, {"resets", count}};
    if (firing) {
        tm_fmt_time(st->last_chain_reset_ms / 1000, at, sizeof(at));
        snprintf(summary, sizeof(summary),
                 "log chain of %s reset at %s: %.300s; the old chain ended at %.120s and a new "
                 "one starts from a fresh base: the restorable window has a gap between the two",
                 target, at, st->chain_reset[0] ? st->chain_reset : "no reason reported", from);
        if (*alerted != 0 && *alerted != st->last_chain_reset_ms) {
            /* Another reset while the last one's alert fires: another gap,
             * so another notification (resolved, then firing again). */
            observe_in(a, "log_chain_reset", target, TM_ALERT_WARNING, 0, "", NULL, 0, now_ms);
        }
        *alerted = st->last_chain_reset_ms;
    }
    observe_in(a, "log_chain_reset", target, TM_ALERT_WARNING, firing, summary, d, firing ? 4 : 0,
               now_ms);
}

/* The newest reset log_chain_reset fired for on target (0 = none), or
 * NULL when out of memory. */
static int64_t *seen_of(tm_alert_rules *r, const char *target)
{
    for (size_t i = 0; i < r->n_seen; i++) {
        if (strcmp(r->seen[i].target, target) == 0) {
            return &r->seen[i].ms;
        }
    }
    reset_seen *v = realloc(r->seen, (r->n_seen + 1) * sizeof(*v));
    if (v == NULL) {
        return NULL;
    }
    r->seen = v;
    reset_seen *e = &v[r->n_seen++];
    snprintf(e->target, sizeof(e->target), "%s", target);
    e->ms = 0;
    return &e->ms;
}

/* log_chain_reset from the agent's report; the newest reset is kept
 * across reports that cannot say (archiver.h), so a status that cannot be
 * read now still gets its verdict. */
static void rule_chain_reset(tm_alert_rules *r, const char *target, const tm_policy_conf *p,
                             int64_t now_ms)
{
    tm_archiver_status st;
    int64_t *alerted = NULL;
    if (r->archiver == NULL || !p->log_shipping ||
        tm_archiver_get(r->archiver, target, &st) != TM_OK ||
        (alerted = seen_of(r, target)) == NULL) {
        return;
    }
    tm_alert_rule_chain_reset(r->alerts, target, &st, CHAIN_RESET_HOLD_MS, alerted, now_ms);
}

typedef struct late_ctx {
    tm_alert_rules *r;
    const tm_freshness *f;
    size_t nf;
    int64_t now_ms;
} late_ctx;

/* Newest successful backup of target that a run of this job kind would
 * produce (an incremental is satisfied by a newer full too). */
static int64_t newest_of(const late_ctx *lc, const char *target, tm_job_kind kind)
{
    int64_t newest = 0;
    for (size_t i = 0; i < lc->nf; i++) {
        const tm_freshness *f = &lc->f[i];
        if (f->type < 0 || strcmp(f->target, target) != 0) {
            continue;
        }
        int counts = kind == TM_JOB_FULL          ? f->type == TIDEMARK__BACKUP_TYPE__FULL
                     : kind == TM_JOB_INCREMENTAL ? f->type != TIDEMARK__BACKUP_TYPE__SNAPSHOT
                                                  : f->type == TIDEMARK__BACKUP_TYPE__SNAPSHOT;
        if (counts && f->last > newest) {
            newest = f->last;
        }
    }
    return newest;
}

/* backup_late, one alert per (target, kind): the rule's target is
 * "<target>/<kind>" so a late incremental and a late full are two alerts. */
static void late_job(const tm_sched_job_status *st, void *arg)
{
    late_ctx *lc = arg;
    if (st->kind != TM_JOB_FULL && st->kind != TM_JOB_INCREMENTAL && st->kind != TM_JOB_SNAPSHOT) {
        return;
    }
    int64_t now = lc->now_ms / 1000;
    int64_t grace = st->policy->late_after_s;
    const char *kind = tm_job_kind_name(st->kind);
    char key[128], summary[512] = "", due[32] = "", late_s[32] = "";
    snprintf(key, sizeof(key), "%s/%s", st->target, kind);
    int late = 0;
    if (!st->paused && st->next_due > 0 && now > st->next_due + grace) {
        /* Due and still not started (deferred by a limit, agent offline...). */
        late = 1;
        tm_fmt_time(st->next_due, due, sizeof(due));
        snprintf(late_s, sizeof(late_s), "%" PRId64, now - st->next_due);
        snprintf(
            summary, sizeof(summary),
            "scheduled %s backup of %s due at %s has not started after %s s (late_after %" PRId64
            " s)",
            kind, st->target, due, late_s, grace);
    } else if (st->last_fire > 0 && now > st->last_fire + st->policy->jitter_s + grace &&
               newest_of(lc, st->target, st->kind) < st->last_fire) {
        late = 1;
        tm_fmt_time(st->last_fire, due, sizeof(due));
        snprintf(late_s, sizeof(late_s), "%" PRId64, now - st->last_fire);
        snprintf(summary, sizeof(summary),
                 "scheduled %s backup of %s started for %s has not finished after %s s "
                 "(late_after %" PRId64 " s + jitter)",
                 kind, st->target, due, late_s, grace);
    }
    tm_alert_kv d[3] = {{"kind", kind}, {"due", due}, {"late_seconds", late_s}};
    observe(lc->r, "backup_late", key, TM_ALERT_WARNING, late, summary, d, 3, lc->now_ms);
}

static void rule_agent(tm_alert_rules *r, const tm_agent_rec *a, int64_t now_ms)
{
    int state = 0;
    int64_t last_seen = 0;
    if (tm_registry_get(r->reg, a->id, &state, &last_seen) != TM_OK) {
        state = a->state;
        last_seen = a->last_seen_at * 1000;
    }
    char summary[256] = "", ago[32];
    snprintf(ago, sizeof(ago), "%" PRId64, (now_ms - last_seen) / 1000);
    tm_alert_kv d[2] = {{"hostname", a->hostname}, {"last_seen_seconds_ago", ago}};
    int stale = state == TIDEMARK__AGENT_STATE__STALE;
    int lost = state == TIDEMARK__AGENT_STATE__LOST;
    if (stale || lost) {
        snprintf(summary, sizeof(summary), "agent %s (%s) is %s: last heartbeat %s s ago",
                 a->hostname, a->id, lost ? "lost" : "stale", ago);
    }
    observe(r, "agent_stale", a->id, TM_ALERT_WARNING, stale, stale ? summary : "", d, 2, now_ms);
    observe(r, "agent_lost", a->id, TM_ALERT_CRITICAL, lost, lost ? summary : "", d, 2, now_ms);
}

/* drill_failed, drill_rto_over_goal, drill_rpo_over_goal: from the newest
 * drill of the target, so the next good drill resolves them. */
static void rule_drills(tm_alert_rules *r, const char *target, Tidemark__DrillInfo *const *last,
                        size_t n, int64_t now_ms)
{
    const Tidemark__DrillInfo *d = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(last[i]->target, target) == 0) {
            d = last[i];
        }
    }
    if (d == NULL) {
        return; /* never drilled: nothing to say here */
    }
    char summary[512] = "", v[32] = "", goal[32] = "";
    tm_alert_kv kv[3] = {{"task", d->task_id}, {"value_seconds", v}, {"goal_seconds", goal}};
    int failed = !d->ok;
    if (failed) {
        snprintf(summary, sizeof(summary), "restore drill of %s failed: %.400s", target,
                 d->error != NULL && d->error[0] ? d->error : "no error reported");
    }
    tm_alert_kv fd[2] = {{"task", d->task_id}, {"error", d->error != NULL ? d->error : ""}};
    observe(r, "drill_failed", target, TM_ALERT_CRITICAL, failed, summary, fd, failed ? 2 : 0,
            now_ms);
    int rto_over =
        d->ok && d->has_rto_ms && d->has_rto_goal_s && d->rto_ms > (uint64_t)d->rto_goal_s * 1000;
    snprintf(v, sizeof(v), "%.3f", (double)d->rto_ms / 1000.0);
    snprintf(goal, sizeof(goal), "%u", d->rto_goal_s);
    summary[0] = '\0';
    if (rto_over) {
        snprintf(summary, sizeof(summary),
                 "restore drill of %s took %.1f s to restore and verify (RTO goal %u s)", target,
                 (double)d->rto_ms / 1000.0, d->rto_goal_s);
    }
    observe(r, "drill_rto_over_goal", target, TM_ALERT_CRITICAL, rto_over, summary, kv, 3, now_ms);
    int rpo_over =
        d->ok && d->has_rpo_ms && d->has_rpo_goal_s && d->rpo_ms > (int64_t)d->rpo_goal_s * 1000;
    snprintf(v, sizeof(v), "%.3f", (double)d->rpo_ms / 1000.0);
    snprintf(goal, sizeof(goal), "%u", d->rpo_goal_s);
    summary[0] = '\0';
    if (rpo_over) {
        snprintf(summary, sizeof(summary),
                 "restore drill of %s recovered data %.1f s older than its target (RPO goal %u s)",
                 target, (double)d->rpo_ms / 1000.0, d->rpo_goal_s);
    }
    observe(r, "drill_rpo_over_goal", target, TM_ALERT_WARNING, rpo_over, summary, kv, 3, now_ms);
}

/* The oldest partial backup of s's target that s's repository lacks. */
static const Tidemark__BackupInfo *partial_missing(Tidemark__BackupInfo *const *b, size_t n,
                                                   const Tidemark__ReplicationState *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(b[i]->target, s->target) != 0) {
            continue;
        }
        for (size_t k = 0; k < b[i]->n_missing_repositories; k++) {
            if (strcmp(b[i]->missing_repositories[k], s->repository) == 0) {
                return b[i];
            }
        }
    }
    return NULL;
}

/* replication_gap / replication_lag per (target, repository) of the last
 * replication checks; alert target "<target>/<repository>" ("<target>" for a
 * policy the agent cannot satisfy). */
static void rule_replication(tm_alert_rules *r, int64_t now_ms)
{
    Tidemark__ReplicationState **st = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_catalog_repl_list(r->cat, NULL, &st, &n, &err) != TM_OK) {
        return; /* no verdict on a failed read */
    }
    /* A partial backup is a gap until a copy completes it, even while its
     * repository is unreachable (which the check alone would not call a gap). */
    Tidemark__BackupInfo **pb = NULL;
    size_t npb = 0;
    if (tm_catalog_backup_partial_list(r->cat, NULL, &pb, &npb, &err) != TM_OK) {
        tm_catalog_repl_free(st, n);
        return;
    }
    int64_t now = now_ms / 1000;
    for (size_t i = 0; i < n; i++) {
        const Tidemark__ReplicationState *s = st[i];
        int wide = s->repository == NULL || s->repository[0] == '\0';
        const Tidemark__BackupInfo *partial = wide ? NULL : partial_missing(pb, npb, s);
        char target[160], summary[512] = "", gaps[32], lag_s[32], limit_s[32];
        snprintf(target, sizeof(target), "%s%s%s", s->target, wide ? "" : "/",
                 wide ? "" : s->repository);
        snprintf(gaps, sizeof(gaps), "%u", s->gaps + s->mismatches);
        tm_alert_kv d[4] = {{"repository", wide ? "" : s->repository},
                            {"gaps", gaps},
                            {"detail", s->detail != NULL ? s->detail : ""},
                            {"region", s->region != NULL ? s->region : ""}};
        int gap = s->required && s->unresolved && strcmp(s->state, "ok") != 0 &&
                  strcmp(s->state, "unreachable") != 0;
        if (partial != NULL) {
            int w = snprintf(summary, sizeof(summary),
                             "replication gap of %s: backup %s is partial, not in %s until a "
                             "copy completes it (%s)",
                             target, partial->id, s->repository, s->state);
            (void)w; /* a long name cuts the summary short, which is fine */
        } else if (gap) {
            snprintf(summary, sizeof(summary),
                     wide ? "replication policy of %s cannot be met: %.400s"
                          : "replication gap of %s unresolved: %.400s",
                     target, s->detail != NULL && s->detail[0] ? s->detail : s->state);
        }
        observe(r, "replication_gap", target, TM_ALERT_CRITICAL, gap || partial != NULL, summary, d,
                4, now_ms);
        if (wide) {
            continue;
        }
        const tm_policy_conf *p = NULL;
        int64_t limit = 3600;
        if (tm_policy_for_target(r->conf, r->cat, s->target, &p, &err) == TM_OK && p != NULL &&
            p->has_replication) {
            limit = p->repl_lag_max_s;
        }
        int64_t lag = s->oldest_missing_time > 0 ? now - s->oldest_missing_time : 0;
        int lagging = s->required && lag > limit;
        snprintf(lag_s, sizeof(lag_s), "%" PRId64, lag);
        snprintf(limit_s, sizeof(limit_s), "%" PRId64, limit);
        tm_alert_kv l[3] = {
            {"repository", s->repository}, {"lag_seconds", lag_s}, {"limit_seconds", limit_s}};
        summary[0] = '\0';
        if (lagging) {
            snprintf(summary, sizeof(summary),
                     "repository %s lags %" PRId64 " s behind for %s (limit %" PRId64 " s)",
                     s->repository, lag, s->target, limit);
        }
        observe(r, "replication_lag", target, TM_ALERT_WARNING, lagging, summary, l, 3, now_ms);
    }
    tm_catalog_backups_free(pb, npb);
    tm_catalog_repl_free(st, n);
}

/* repository_unreachable: an agent's probes of a repository have failed
 * for longer than three heartbeats. Alert target "<agent-id>/<repository>". */
static void rule_repositories(tm_alert_rules *r, int64_t now_ms)
{
    Tidemark__RepositoryStatus **h = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_catalog_repo_health_list(r->cat, &h, &n, &err) != TM_OK) {
        return;
    }
    int64_t grace = 3 * (int64_t)r->conf->heartbeat_interval_ms / 1000;
    for (size_t i = 0; i < n; i++) {
        const Tidemark__RepositoryStatus *s = h[i];
        char target[160], summary[512] = "", since[32];
        snprintf(target, sizeof(target), "%s/%s", s->agent_id, s->name);
        snprintf(since, sizeof(since), "%" PRId64, s->failing_since);
        tm_alert_kv d[4] = {{"agent", s->agent_id},
                            {"repository", s->name},
                            {"region", s->region != NULL ? s->region : ""},
                            {"error", s->error != NULL ? s->error : ""}};
        int down = !s->ok && s->failing_since > 0 && now_ms / 1000 - s->failing_since >= grace;
        if (down) {
            snprintf(summary, sizeof(summary),
                     "repository %s (region %s) unreachable from agent %s since %s: %.300s",
                     s->name, s->region != NULL && s->region[0] ? s->region : "-", s->agent_id,
                     since, s->error != NULL ? s->error : "");
        }
        observe(r, "repository_unreachable", target, TM_ALERT_CRITICAL, down, summary, d, 4,
                now_ms);
    }
    tm_catalog_repo_health_free(h, n);
}

int tm_alert_rules_tick(tm_alert_rules *r, int64_t now_ms, tm_err *err)
{
    if (r->last_eval_ms != 0 && now_ms - r->last_eval_ms < (int64_t)r->conf->alerts_evaluate_ms) {
        return 0;
    }
    r->last_eval_ms = now_ms;
    tm_agent_rec **agents = NULL;
    size_t n_agents = 0;
    tm_freshness *f = NULL;
    size_t nf = 0;
    Tidemark__DrillInfo **drills = NULL;
    size_t n_drills = 0;
    int rc = tm_catalog_agent_list(r->cat, &agents, &n_agents, err);
    if (rc == TM_OK) {
        rc = tm_catalog_freshness(r->cat, &f, &nf, err);
    }
    if (rc == TM_OK) {
        rc = tm_catalog_drill_latest(r->cat, &drills, &n_drills, err);
    }
    for (size_t a = 0; rc == TM_OK && a < n_agents; a++) {
        const tm_agent_rec *ag = agents[a];
        if (!ag->approved) {
            continue; /* pending agents have no liveness to lose yet */
        }
        rule_agent(r, ag, now_ms);
        for (size_t t = 0; rc == TM_OK && t < ag->n_targets; t++) {
            const char *target = ag->targets[t].name;
            rc = rule_backup_failed(r, target, now_ms, err);
            rule_drills(r, target, drills, n_drills, now_ms);
            const tm_policy_conf *p =
                tm_policy_match(r->conf, ag->targets[t].kind, ag->labels, ag->n_labels);
            if (rc == TM_OK && p != NULL) {
                rule_freshness(r, target, p, f, nf, ag->registered_at, now_ms);
                rule_log_shipping(r, target, p, now_ms);
                rule_chain_reset(r, target, p, now_ms);
                rule_provider(r, target, now_ms);
            }
        }
    }
    if (rc == TM_OK && r->sched != NULL) {
        late_ctx lc = {.r = r, .f = f, .nf = nf, .now_ms = now_ms};
        tm_scheduler_each_job(r->sched, late_job, &lc);
    }
    free(f);
    tm_catalog_drills_free(drills, n_drills);
    tm_agent_recs_free(agents, n_agents);
    if (rc != TM_OK) {
        return rc;
    }
    rule_replication(r, now_ms);
    rule_repositories(r, now_ms);
    /* Alerts of targets and agents that are gone stop being observed; the
     * sweep resolves them after stale_after instead of firing forever. */
    tm_alerts_sweep(r->alerts, now_ms);
    return 1;
}

static void firing_sample(const char *rule, size_t n, void *arg)
{
    tm_metrics_writer *w = arg;
    char labels[128], esc[96];
    snprintf(labels, sizeof(labels), "rule=\"%s\"", tm_metrics_escape(rule, esc, sizeof(esc)));
    tm_metrics_write_sample(w, "tidemark_alerts_firing", labels, (double)n);
}

void tm_alert_rules_collect(tm_metrics_writer *w, void *arg)
{
    tm_alert_rules *r = arg;
    tm_metrics_write_family(w, "tidemark_alerts_firing", TM_METRIC_GAUGE,
                            "Alerts firing now, by rule.");
    tm_alerts_firing_by_rule(r->alerts, firing_sample, w);
    tm_alert_sinks_collect(w, r->sinks);
}
