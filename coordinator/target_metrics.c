/*
 * target_metrics.c - per-target failure counters and PITR window metrics
 * (see target_metrics.h).
 */
#include "coordinator/target_metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "coordinator/policy.h"
#include "coordinator/service_internal.h"

#define WINDOW_REFRESH_S 30

typedef struct window_row {
    char target[72];
    int64_t start, end; /* end 0: nothing restorable yet (no window sample) */
    int64_t rpo_goal_s; /* its policy's goals; -1: no policy applies */
    int64_t backup_max_age_s;
} window_row;

struct tm_target_metrics {
    struct tm_coordinator *c;
    pthread_mutex_t mu; /* scrapes may overlap */
    window_row *rows;
    size_t n;
    int64_t computed_at;
};

int tm_target_metrics_new(tm_target_metrics **out, struct tm_coordinator *c, tm_err *err)
{
    tm_target_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return tm_err_set(err, TM_ENOMEM, "metrics: out of memory");
    }
    m->c = c;
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return TM_OK;
}

void tm_target_metrics_free(tm_target_metrics *m)
{
    if (m != NULL) {
        pthread_mutex_destroy(&m->mu);
        free(m->rows);
        free(m);
    }
}

/* Recompute every target's window; on a failed read keep the old cache. */
static void refresh_windows(tm_target_metrics *m, int64_t now)
{
    tm_agent_rec **agents = NULL;
    size_t n_agents = 0, total = 0;
    tm_err err;
    if (tm_catalog_agent_list(m->c->catalog, &agents, &n_agents, &err) != TM_OK) {
        return;
    }
    for (size_t i = 0; i < n_agents; i++) {
        total += agents[i]->n_targets;
    }
    window_row *rows = calloc(total ? total : 1, sizeof(*rows));
    size_t n = 0;
    int ok = rows != NULL;
    for (size_t i = 0; ok && i < n_agents; i++) {
        for (size_t t = 0; ok && t < agents[i]->n_targets; t++) {
            window_row *r = &rows[n];
            uint32_t depth = 0;
            snprintf(r->target, sizeof(r->target), "%s", agents[i]->targets[t].name);
            ok = tm_logs_window(m->c, r->target, &r->start, &r->end, &depth, &err) == TM_OK;
            /* The goals beside the window, so a dashboard or a rule can
             * compare RPO now and freshness with what was promised. */
            const tm_policy_conf *p = NULL;
            r->rpo_goal_s = r->backup_max_age_s = -1;
            if (ok &&
                tm_policy_for_target(m->c->conf, m->c->catalog, r->target, &p, &err) == TM_OK &&
                p != NULL) {
                r->rpo_goal_s = p->rpo_goal_s;
                r->backup_max_age_s = p->backup_max_age_s;
            }
            n += ok;
        }
    }
    tm_agent_recs_free(agents, n_agents);
    if (!ok) {
        free(rows);
        return;
    }
    free(m->rows);
    m->rows = rows;
    m->n = n;
    m->computed_at = now;
}

/* One counter family of tasks per target and kind (failed, partial). */
static void write_counts(tm_metrics_writer *w, const char *name, const char *help,
                         int (*read)(tm_catalog *, tm_failure_count **, size_t *, tm_err *),
                         tm_catalog *cat)
{
    char labels[200], esc[160], esc2[48];
    tm_failure_count *fc = NULL;
    size_t nf = 0;
    tm_err err;
    if (read(cat, &fc, &nf, &err) != TM_OK) {
        return;
    }
    tm_metrics_write_family(w, name, TM_METRIC_COUNTER, help);
    for (size_t i = 0; i < nf; i++) {
        snprintf(labels, sizeof(labels), "target=\"%s\",kind=\"%s\"",
                 tm_metrics_escape(fc[i].target, esc, sizeof(esc)),
                 tm_metrics_escape(fc[i].kind, esc2, sizeof(esc2)));
        tm_metrics_write_sample(w, name, labels, (double)fc[i].n);
    }
    free(fc);
}

void tm_target_metrics_collect(tm_metrics_writer *w, void *arg)
{
    tm_target_metrics *m = arg;
    char labels[200], esc[160];
    write_counts(w, "tidemark_backup_failures_total",
                 "Tasks that ended failed, by target and kind (full, incremental, "
                 "snapshot, restore, verify, copy, drill, expire).",
                 tm_catalog_task_failures, m->c->catalog);
    write_counts(w, "tidemark_backup_partial_total",
                 "Backups that ended partial (complete in some, not all, of the "
                 "repositories their policy requires), by target and type.",
                 tm_catalog_task_partials, m->c->catalog);
    int64_t now = tm_now_s();
    pthread_mutex_lock(&m->mu);
    if (m->computed_at == 0 || now - m->computed_at >= WINDOW_REFRESH_S || now < m->computed_at) {
        refresh_windows(m, now);
    }
    static const char *const fam[2][2] = {
        {"tidemark_pitr_window_start_timestamp_seconds",
         "Oldest point a restore of the target can reach (its oldest backup's end)."},
        {"tidemark_pitr_window_end_timestamp_seconds",
         "Newest point a restore of the target can reach (backups + contiguous archived log)."},
    };
    for (int k = 0; k < 2; k++) {
        tm_metrics_write_family(w, fam[k][0], TM_METRIC_GAUGE, fam[k][1]);
        for (size_t i = 0; i < m->n; i++) {
            if (m->rows[i].end <= 0) {
                continue; /* nothing restorable: no sample */
            }
            snprintf(labels, sizeof(labels), "target=\"%s\"",
                     tm_metrics_escape(m->rows[i].target, esc, sizeof(esc)));
            tm_metrics_write_sample(w, fam[k][0], labels,
                                    (double)(k == 0 ? m->rows[i].start : m->rows[i].end));
        }
    }
    static const char *const goals[2][2] = {
        {"tidemark_rpo_goal_seconds",
         "The target's policy rpo_goal: the most data a loss may cost (compare with "
         "tidemark_archive_lag_seconds or time() - tidemark_pitr_window_end_timestamp_seconds)."},
        {"tidemark_backup_max_age_seconds",
         "The target's policy backup_max_age: the oldest its newest backup may be."},
    };
    for (int k = 0; k < 2; k++) {
        tm_metrics_write_family(w, goals[k][0], TM_METRIC_GAUGE, goals[k][1]);
        for (size_t i = 0; i < m->n; i++) {
            int64_t v = k == 0 ? m->rows[i].rpo_goal_s : m->rows[i].backup_max_age_s;
            if (v < 0) {
                continue;
            }
            snprintf(labels, sizeof(labels), "target=\"%s\"",
                     tm_metrics_escape(m->rows[i].target, esc, sizeof(esc)));
            tm_metrics_write_sample(w, goals[k][0], labels, (double)v);
        }
    }
    pthread_mutex_unlock(&m->mu);
}
