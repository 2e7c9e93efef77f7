/*
 * schedule.c - the scheduler's decision function (see schedule.h for rules).
 */
#include "coordinator/schedule.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TM_SCHED_MISSED_CAP 10000

static const char *const kind_names[TM_JOB_KIND_COUNT] = {
    "full", "incremental", "snapshot", "drill", "retention", "replication-check"};

int64_t tm_clock_system(void *arg)
{
    (void)arg;
    return (int64_t)time(NULL);
}

const char *tm_job_kind_name(tm_job_kind k)
{
    return (unsigned)k < TM_JOB_KIND_COUNT ? kind_names[k] : NULL;
}

int tm_job_kind_parse(const char *s, tm_job_kind *out, tm_err *err)
{
    for (int i = 0; s != NULL && i < TM_JOB_KIND_COUNT; i++) {
        if (strcmp(s, kind_names[i]) == 0) {
            *out = (tm_job_kind)i;
            return 0;
        }
    }
    return tm_err_set(err, TM_EINVAL,
                      "unknown job kind \"%s\" (expected full, incremental, snapshot, drill, "
                      "retention or replication-check)",
                      s != NULL ? s : "");
}

static int is_backup(tm_job_kind k)
{
    return k == TM_JOB_FULL || k == TM_JOB_INCREMENTAL || k == TM_JOB_SNAPSHOT;
}

static int is_base(tm_job_kind k)
{
    return k == TM_JOB_FULL || k == TM_JOB_SNAPSHOT;
}

static int coordinator_side(tm_job_kind k)
{
    return k == TM_JOB_RETENTION || k == TM_JOB_REPLICATION_CHECK;
}

static int class_of(tm_job_kind k)
{
    return is_base(k) ? 0 : k == TM_JOB_INCREMENTAL ? 1 : 2;
}

int64_t tm_sched_jitter(const char *target, tm_job_kind kind, int64_t jitter_max_s)
{
    if (jitter_max_s <= 1 || target == NULL) {
        return 0;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = target; *p != '\0'; p++) {
        h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    }
    if (!is_backup(kind)) {
        h = (h ^ 0xff) * 0x100000001b3ull;
        for (const char *p = kind_names[kind]; *p != '\0'; p++) {
            h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
        }
    }
    /* splitmix64 finalizer: FNV's low bits are weak for short names */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return (int64_t)(h % (uint64_t)jitter_max_s);
}

/* Fill the state's baseline and due-time cache. */
static void prime(const tm_sched_job *j, tm_sched_state *st, int64_t now)
{
    int64_t off = tm_sched_jitter(j->target, j->kind, j->jitter_max_s);
    if (st->last_fire == 0) {
        /* never ran: fire times up to now count as handled */
        int64_t p = tm_cron_prev(j->cron, now - off + 1);
        st->last_fire = p == TM_CRON_NONE ? now - off : p;
        st->next_due = 0;
    }
    if (st->next_due == 0) {
        int64_t n = tm_cron_next(j->cron, st->last_fire);
        st->next_due = n == TM_CRON_NEVER ? TM_CRON_NEVER : n + off;
    }
}

static void consume(const tm_sched_job *j, tm_sched_state *st, int64_t fire)
{
    int64_t off = tm_sched_jitter(j->target, j->kind, j->jitter_max_s);
    st->last_fire = fire;
    int64_t n = tm_cron_next(j->cron, fire);
    st->next_due = n == TM_CRON_NEVER ? TM_CRON_NEVER : n + off;
}

int64_t tm_sched_next_wakeup(const tm_sched_job *jobs, tm_sched_state *states, size_t n_jobs,
                             int64_t now)
{
    int64_t best = TM_CRON_NEVER;
    for (size_t i = 0; i < n_jobs; i++) {
        if (jobs[i].cron == NULL || jobs[i].target == NULL || jobs[i].paused) {
            continue;
        }
        if (states[i].last_fire == 0 || states[i].next_due == 0) {
            prime(&jobs[i], &states[i], now);
        }
        if (states[i].next_due < best) {
            best = states[i].next_due;
        }
    }
    return best;
}

typedef struct cand {
    size_t idx;
    int cls;
    int64_t due;
    const char *target;
} cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->cls != y->cls) {
        return x->cls < y->cls ? -1 : 1;
    }
    if (x->due != y->due) {
        return x->due < y->due ? -1 : 1;
    }
    int c = strcmp(x->target, y->target);
    if (c != 0) {
        return c;
    }
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int streq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static int limit_for(const tm_sched_limit *ov, size_t n, int dflt, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (streq(ov[i].name, name)) {
            return ov[i].max;
        }
    }
    return dflt;
}

/* Tasks (in flight + started in this decision) that count against a limit. */
static int count_agent(const tm_sched_active *active, size_t n_active, const tm_sched_job *jobs,
                       const tm_sched_decision *out, size_t n_out, const char *agent)
{
    int n = 0;
    for (size_t i = 0; i < n_active; i++) {
        if (!coordinator_side(active[i].kind) && streq(active[i].agent, agent)) {
            n++;
        }
    }
    for (size_t i = 0; i < n_out; i++) {
        const tm_sched_job *j = &jobs[out[i].job];
        if (out[i].action == TM_SCHED_START && !coordinator_side(j->kind) &&
            streq(j->agent, agent)) {
            n++;
        }
    }
    return n;
}

static int has_repo(const char *const *repos, size_t n, const char *repo)
{
    for (size_t i = 0; i < n; i++) {
        if (streq(repos[i], repo)) {
            return 1;
        }
    }
    return 0;
}

static int count_repo(const tm_sched_active *active, size_t n_active, const tm_sched_job *jobs,
                      const tm_sched_decision *out, size_t n_out, const char *repo)
{
    int n = 0;
    for (size_t i = 0; i < n_active; i++) {
        if (!coordinator_side(active[i].kind) &&
            has_repo(active[i].repos, active[i].n_repos, repo)) {
            n++;
        }
    }
    for (size_t i = 0; i < n_out; i++) {
        const tm_sched_job *j = &jobs[out[i].job];
        if (out[i].action == TM_SCHED_START && !coordinator_side(j->kind) &&
            has_repo(j->repos, j->n_repos, repo)) {
            n++;
        }
    }
    return n;
}

static const char *decide_one(const tm_sched_job *jobs, size_t idx, const tm_sched_active *active,
                              size_t n_active, const tm_sched_limits *lim,
                              const tm_sched_decision *out, size_t n_out, tm_sched_action *act)
{
    const tm_sched_job *j = &jobs[idx];
    if (is_backup(j->kind)) {
        int busy = 0;
        for (size_t i = 0; i < n_active; i++) {
            if (is_backup(active[i].kind) && streq(active[i].target, j->target)) {
                busy = 1;
            }
        }
        int started = 0, base_waiting = 0;
        for (size_t i = 0; i < n_out; i++) {
            const tm_sched_job *o = &jobs[out[i].job];
            if (is_backup(o->kind) && streq(o->target, j->target)) {
                if (out[i].action == TM_SCHED_START) {
                    started = 1;
                } else if (out[i].action == TM_SCHED_DEFER && is_base(o->kind)) {
                    base_waiting = 1;
                }
            }
        }
        if (j->kind == TM_JOB_INCREMENTAL) {
            if (busy) {
                *act = TM_SCHED_SKIP;
                return "target busy: a backup of this target is queued or running";
            }
            if (started) {
                *act = TM_SCHED_SKIP;
                return "superseded: a full of this target starts now";
            }
            if (base_waiting) {
                *act = TM_SCHED_SKIP;
                return "superseded: a full of this target is due and waiting";
            }
        } else if (busy || started) {
            *act = TM_SCHED_DEFER;
            return "target busy: waiting for the running backup of this target";
        }
    } else {
        for (size_t i = 0; i < n_active; i++) {
            if (active[i].kind == j->kind && streq(active[i].target, j->target)) {
                *act = TM_SCHED_SKIP;
                return "still in flight: previous run of this job is queued or running";
            }
        }
    }
    if (lim != NULL && !coordinator_side(j->kind)) {
        if (j->agent != NULL) {
            int max = limit_for(lim->agents, lim->n_agents, lim->per_agent, j->agent);
            if (max > 0 && count_agent(active, n_active, jobs, out, n_out, j->agent) >= max) {
                *act = TM_SCHED_DEFER;
                return "agent limit: the agent runs its maximum of tasks";
            }
        }
        for (size_t r = 0; r < j->n_repos; r++) {
            int max = limit_for(lim->repos, lim->n_repos, lim->per_repo, j->repos[r]);
            if (max > 0 && count_repo(active, n_active, jobs, out, n_out, j->repos[r]) >= max) {
                *act = TM_SCHED_DEFER;
                return "repository limit: a repository takes its maximum of tasks";
            }
        }
    }
    *act = TM_SCHED_START;
    return NULL;
}

int tm_sched_decide(const tm_sched_job *jobs, tm_sched_state *states, size_t n_jobs,
                    const tm_sched_active *active, size_t n_active, const tm_sched_limits *limits,
                    int64_t now, tm_sched_decision *out, size_t cap, size_t *n_out, tm_err *err)
{
    *n_out = 0;
    for (size_t i = 0; i < n_jobs; i++) {
        if (jobs[i].cron == NULL || jobs[i].target == NULL ||
            (unsigned)jobs[i].kind >= TM_JOB_KIND_COUNT) {
            return tm_err_set(err, TM_EINVAL, "schedule: job %zu has no target, cron or kind", i);
        }
    }
    cand *cs = malloc((n_jobs ? n_jobs : 1) * sizeof(*cs));
    if (cs == NULL) {
        return tm_err_set(err, TM_ENOMEM, "schedule: out of memory");
    }
    size_t nc = 0;
    for (size_t i = 0; i < n_jobs; i++) {
        const tm_sched_job *j = &jobs[i];
        if (states[i].last_fire == 0 || states[i].next_due == 0) {
            prime(j, &states[i], now);
        }
        if (states[i].next_due > now) { /* the common case: one compare per job */
            continue;
        }
        if (j->paused) {
            int64_t off = tm_sched_jitter(j->target, j->kind, j->jitter_max_s);
            consume(j, &states[i], tm_cron_prev(j->cron, now - off + 1));
            continue;
        }
        cs[nc++] = (cand){i, class_of(j->kind), states[i].next_due, j->target};
    }
    if (nc > cap) {
        free(cs);
        return tm_err_set(err, TM_EINVAL, "schedule: %zu jobs due but room for %zu decisions", nc,
                          cap);
    }
    if (nc > 1) {
        qsort(cs, nc, sizeof(*cs), cand_cmp); /* never qsort(NULL, 0): undefined */
    }
    for (size_t k = 0; k < nc; k++) {
        size_t i = cs[k].idx;
        const tm_sched_job *j = &jobs[i];
        tm_sched_state *st = &states[i];
        int64_t off = tm_sched_jitter(j->target, j->kind, j->jitter_max_s);
        int64_t fire = tm_cron_prev(j->cron, now - off + 1);
        tm_sched_action act;
        const char *why = decide_one(jobs, i, active, n_active, limits, out, *n_out, &act);
        int64_t missed = 0;
        if (act != TM_SCHED_DEFER) { /* counted once, when the fire times are consumed */
            for (int64_t t = tm_cron_next(j->cron, st->last_fire);
                 t <= fire && missed < TM_SCHED_MISSED_CAP; t = tm_cron_next(j->cron, t)) {
                missed++;
            }
            if (missed < 1) {
                missed = 1;
            }
        }
        if (why == NULL) {
            why = missed > 1 ? "misfire: missed runs, running once" : "scheduled";
        }
        out[*n_out] = (tm_sched_decision){i, act, fire, fire + off, missed, why};
        (*n_out)++;
        if (act != TM_SCHED_DEFER) {
            consume(j, st, fire);
        }
    }
    free(cs);
    return 0;
}

int tm_sched_tick(tm_clock_fn clock, void *clock_arg, const tm_sched_job *jobs,
                  tm_sched_state *states, size_t n_jobs, const tm_sched_active *active,
                  size_t n_active, const tm_sched_limits *limits, tm_sched_decision *out,
                  size_t cap, size_t *n_out, tm_err *err)
{
    int64_t now = clock != NULL ? clock(clock_arg) : tm_clock_system(NULL);
    return tm_sched_decide(jobs, states, n_jobs, active, n_active, limits, now, out, cap, n_out,
                           err);
}
