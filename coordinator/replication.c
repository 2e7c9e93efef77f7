/*
 * replication.c - the replication checker (see replication.h).
 */
#include "coordinator/replication.h"
#include "common/log.h"
#include "common/util.h"
#include "coordinator/cron.h"
#include "coordinator/policy.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per target: when its policy's check cron fires next. */
typedef struct due {
    char target[72];
    const tm_policy_conf *policy;
    int64_t next;
} due;

struct tm_replication {
    const tm_coordinator_conf *conf;
    tm_catalog *cat;
    tm_dispatcher *disp;
    tm_cron **crons;    /* per policy; NULL = no replication */
    pthread_mutex_t mu; /* guards everything below */
    due *dues;
    size_t n_dues, cap_dues;
    Tidemark__RepositoryStatus **health;
    size_t n_health, cap_health;
    uint64_t checks[3]; /* ok, gap, failed */
    uint64_t copies[2]; /* ok, failed */
    int64_t partial_at; /* last check queued for partial backups (unix s) */
    int health_up;      /* a repository probe turned ok: look at partial backups now */
};

/* While a backup is partial, its target is checked at least this often, so
 * the copy that completes it starts soon after the repository is back. */
#define PARTIAL_RECHECK_S 30

static const char *const check_results[] = {"ok", "gap", "failed"};
static const char *const copy_results[] = {"ok", "failed"};

static void *msg_dup(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        return NULL;
    }
    protobuf_c_message_pack(m, buf);
    void *out = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    free(buf);
    return out;
}

int tm_replication_new(tm_replication **out, const tm_coordinator_conf *conf, tm_catalog *cat,
                       tm_dispatcher *d, tm_err *err)
{
    *out = NULL;
    tm_replication *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return tm_err_set(err, TM_ENOMEM, "replication: out of memory");
    }
    r->conf = conf;
    r->cat = cat;
    r->disp = d;
    pthread_mutex_init(&r->mu, NULL);
    r->crons = calloc(conf->n_policies ? conf->n_policies : 1, sizeof(*r->crons));
    if (r->crons == NULL) {
        tm_replication_free(r);
        return tm_err_set(err, TM_ENOMEM, "replication: out of memory");
    }
    for (size_t i = 0; i < conf->n_policies; i++) {
        const tm_policy_conf *p = &conf->policies[i];
        tm_err cerr;
        if (p->has_replication && tm_cron_parse(p->repl_check, &r->crons[i], &cerr) != TM_OK) {
            int rc = tm_err_set(err, TM_ECONFIG, "%s: %s",
                                p->repl_check_where ? p->repl_check_where : p->name, cerr.msg);
            tm_replication_free(r);
            return rc;
        }
    }
    /* Health survives a restart; the next beats refresh it. */
    if (tm_catalog_repo_health_list(cat, &r->health, &r->n_health, err) != TM_OK) {
        tm_error("replication", "event=health_load_failed msg=\"%s\"", err->msg);
        r->health = NULL;
        r->n_health = 0;
    }
    r->cap_health = r->n_health;
    *out = r;
    return TM_OK;
}

void tm_replication_free(tm_replication *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; r->crons != NULL && i < r->conf->n_policies; i++) {
        tm_cron_free(r->crons[i]);
    }
    free(r->crons);
    free(r->dues);
    tm_catalog_repo_health_free(r->health, r->n_health);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ---- queueing ------------------------------------------------------------ */

/* An open task of target of kind whose spec matches (dest for COPY). */
static int open_task(tm_replication *r, const char *target, int kind, const char *dest,
                     int queued_only, Tidemark__Task **out)
{
    Tidemark__Task **t = NULL;
    size_t n = 0;
    tm_err err;
    *out = NULL;
    if (tm_catalog_task_list(r->cat, target, 1, 0, &t, &n, &err) != TM_OK) {
        return 0;
    }
    for (size_t i = 0; i < n && *out == NULL; i++) {
        if ((int)t[i]->kind != kind ||
            (queued_only && t[i]->state != TIDEMARK__TASK_STATE__TASK_QUEUED)) {
            continue;
        }
        if (kind == TIDEMARK__TASK_KIND__VERIFY && t[i]->check == NULL) {
            continue;
        }
        if (kind == TIDEMARK__TASK_KIND__COPY &&
            (t[i]->copy == NULL || t[i]->copy->destination == NULL ||
             strcmp(t[i]->copy->destination, dest) != 0)) {
            continue;
        }
        *out = t[i];
        t[i] = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (t[i] != NULL) {
            tidemark__task__free_unpacked(t[i], NULL);
        }
    }
    free(t);
    return *out != NULL;
}

int tm_replication_queue_check(tm_replication *r, const char *target, const char *why,
                               Tidemark__Task **out, tm_err *err)
{
    *out = NULL;
    const tm_policy_conf *p = NULL;
    int rc = tm_policy_for_target(r->conf, r->cat, target, &p, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (open_task(r, target, TIDEMARK__TASK_KIND__VERIFY, NULL, 1, out)) {
        return TM_OK; /* one queued per target: it will see the newest state */
    }
    Tidemark__ReplicationCheckSpec spec = TIDEMARK__REPLICATION_CHECK_SPEC__INIT;
    if (p != NULL && p->has_replication) {
        spec.repositories = p->repl_repositories;
        spec.n_repositories = p->n_repl_repositories;
        spec.has_min_regions = p->repl_min_regions > 0;
        spec.min_regions = p->repl_min_regions;
    }
    Tidemark__Task t = TIDEMARK__TASK__INIT;
    t.has_kind = 1;
    t.kind = TIDEMARK__TASK_KIND__VERIFY;
    t.target = (char *)target;
    t.check = &spec;
    t.requested_by = (char *)why;
    if ((rc = tm_dispatcher_submit(r->disp, &t, NULL, out, err)) != TM_OK) {
        return rc;
    }
    tm_info("replication", "event=check_queued target=%s task=%s why=%s", target, (*out)->id, why);
    return TM_OK;
}

/* Queue a check of every target with a partial backup (at most one queued
 * per target): its result queues the copy once the repository answers. */
static void recheck_partials(tm_replication *r, int64_t now_s)
{
    pthread_mutex_lock(&r->mu);
    int due = r->health_up || now_s - r->partial_at >= PARTIAL_RECHECK_S || now_s < r->partial_at;
    if (due) {
        r->health_up = 0;
        r->partial_at = now_s;
    }
    pthread_mutex_unlock(&r->mu);
    Tidemark__BackupInfo **b = NULL;
    size_t n = 0;
    tm_err err;
    if (!due || tm_catalog_backup_partial_list(r->cat, NULL, &b, &n, &err) != TM_OK) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++) {
            seen = strcmp(b[k]->target, b[i]->target) == 0;
        }
        Tidemark__Task *t = NULL;
        if (!seen && tm_replication_queue_check(r, b[i]->target, "partial", &t, &err) == TM_OK) {
            tidemark__task__free_unpacked(t, NULL);
        }
    }
    tm_catalog_backups_free(b, n);
}

void tm_replication_tick(tm_replication *r, int64_t now_s)
{
    /* Not paused with the scheduler: a partial backup is a gap to repair. */
    recheck_partials(r, now_s);
    if (r->conf->sched_paused) {
        return; /* scheduler.paused: no scheduled checks either (on demand still works) */
    }
    tm_agent_rec **agents = NULL;
    size_t n_agents = 0;
    tm_err err;
    if (tm_catalog_agent_list(r->cat, &agents, &n_agents, &err) != TM_OK) {
        return;
    }
    char fire[16][72];
    size_t nfire = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t a = 0; a < n_agents; a++) {
        if (!agents[a]->approved) {
            continue;
        }
        for (size_t t = 0; t < agents[a]->n_targets; t++) {
            const char *target = agents[a]->targets[t].name;
            const tm_policy_conf *p = tm_policy_match(r->conf, agents[a]->targets[t].kind,
                                                      agents[a]->labels, agents[a]->n_labels);
            if (p == NULL || !p->has_replication) {
                continue;
            }
            const tm_cron *cron = r->crons[p - r->conf->policies];
            due *d = NULL;
            for (size_t i = 0; i < r->n_dues && d == NULL; i++) {
                if (strcmp(r->dues[i].target, target) == 0) {
                    d = &r->dues[i];
                }
            }
            if (d == NULL || d->policy != p) {
                if (d == NULL) {
                    if (r->n_dues == r->cap_dues) {
                        size_t cap = r->cap_dues ? r->cap_dues * 2 : 16;
                        due *nd = realloc(r->dues, cap * sizeof(*nd));
                        if (nd == NULL) {
                            continue;
                        }
                        r->dues = nd;
                        r->cap_dues = cap;
                    }
                    d = &r->dues[r->n_dues++];
                    snprintf(d->target, sizeof(d->target), "%s", target);
                }
                d->policy = p;
                d->next = tm_cron_next(cron, now_s);
            }
            if (now_s >= d->next && nfire < 16) {
                snprintf(fire[nfire++], sizeof(fire[0]), "%s", target);
                d->next = tm_cron_next(cron, now_s);
            }
        }
    }
    pthread_mutex_unlock(&r->mu);
    tm_agent_recs_free(agents, n_agents);
    for (size_t i = 0; i < nfire; i++) {
        Tidemark__Task *t = NULL;
        if (tm_replication_queue_check(r, fire[i], "schedule", &t, &err) != TM_OK) {
            tm_error("replication", "event=check_submit_failed target=%s msg=\"%s\"", fire[i],
                     err.msg);
            continue;
        }
        tidemark__task__free_unpacked(t, NULL);
    }
}

/* ---- check results ------------------------------------------------------- */

static Tidemark__ReplicationState *find_state(Tidemark__ReplicationState **v, size_t n,
                                              const char *repo)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i]->repository != NULL && strcmp(v[i]->repository, repo) == 0) {
            return v[i];
        }
    }
    return NULL;
}

static int has_gap(const Tidemark__RepositoryReplication *rr, const char *kind, const char *item)
{
    for (size_t i = 0; i < rr->n_gaps; i++) {
        if (strcmp(rr->gaps[i]->kind, kind) == 0 && strcmp(rr->gaps[i]->item, item) == 0) {
            return 1;
        }
    }
    return 0;
}

static void put_state(tm_replication *r, const Tidemark__ReplicationState *st)
{
    tm_err err;
    if (tm_catalog_repl_put(r->cat, st, &err) != TM_OK) {
        tm_error("replication", "event=save_failed target=%s repository=%s msg=\"%s\"", st->target,
                 st->repository, err.msg);
    }
}

/* Queue copies of dst's gaps from repositories that hold the items. Returns
 * how many items no repository can provide (first one named in why). */
static size_t queue_copies(tm_replication *r, const char *target,
                           const Tidemark__ReplicationReport *rep,
                           const Tidemark__RepositoryReplication *dst, char *why, size_t why_cap,
                           char *task_id, size_t task_cap)
{
    size_t nsrc = rep->n_repositories, unsourced = 0;
    char ***backups = calloc(nsrc, sizeof(*backups));
    char ***logs = calloc(nsrc, sizeof(*logs));
    size_t *nb = calloc(nsrc, sizeof(*nb)), *nl = calloc(nsrc, sizeof(*nl));
    if (backups == NULL || logs == NULL || nb == NULL || nl == NULL) {
        goto out;
    }
    for (size_t g = 0; g < dst->n_gaps; g++) {
        const Tidemark__ReplicationGap *gap = dst->gaps[g];
        if (gap->kind == NULL || gap->item == NULL) {
            continue;
        }
        size_t s = 0;
        for (; s < nsrc; s++) {
            const Tidemark__RepositoryReplication *src = rep->repositories[s];
            if (src != dst && src->reachable && !has_gap(src, gap->kind, gap->item)) {
                break;
            }
        }
        if (s == nsrc) {
            if (unsourced++ == 0) {
                snprintf(why, why_cap,
                         "no repository holds a good copy of %s %s: it cannot be repaired by a "
                         "copy",
                         gap->kind, gap->item);
            }
            continue;
        }
        int is_log = strcmp(gap->kind, "log") == 0;
        char ***v = is_log ? &logs[s] : &backups[s];
        size_t *cnt = is_log ? &nl[s] : &nb[s];
        char **nv = realloc(*v, (*cnt + 1) * sizeof(*nv));
        if (nv != NULL) {
            *v = nv;
            nv[(*cnt)++] = gap->item;
        }
    }
    for (size_t s = 0; s < nsrc; s++) {
        if (nb[s] + nl[s] == 0) {
            continue;
        }
        Tidemark__CopySpec spec = TIDEMARK__COPY_SPEC__INIT;
        spec.source = rep->repositories[s]->repository;
        spec.destination = dst->repository;
        spec.backups = backups[s];
        spec.n_backups = nb[s];
        spec.logs = logs[s];
        spec.n_logs = nl[s];
        Tidemark__Task t = TIDEMARK__TASK__INIT;
        t.has_kind = 1;
        t.kind = TIDEMARK__TASK_KIND__COPY;
        t.target = (char *)target;
        t.copy = &spec;
        t.requested_by = "replication";
        Tidemark__Task *stored = NULL;
        tm_err err;
        if (tm_dispatcher_submit(r->disp, &t, NULL, &stored, &err) != TM_OK) {
            tm_error("replication", "event=copy_submit_failed target=%s msg=\"%s\"", target,
                     err.msg);
            continue;
        }
        tm_info("replication",
                "event=copy_queued target=%s from=%s to=%s backups=%zu logs=%zu task=%s", target,
                spec.source, spec.destination, nb[s], nl[s], stored->id);
        snprintf(task_id, task_cap, "%s", stored->id);
        tidemark__task__free_unpacked(stored, NULL);
    }
out:
    for (size_t s = 0; s < nsrc; s++) {
        free(backups != NULL ? backups[s] : NULL);
        free(logs != NULL ? logs[s] : NULL);
    }
    free(backups);
    free(logs);
    free(nb);
    free(nl);
    return unsourced;
}

/* A partial backup that a check found complete in a repository it was
 * missing from (a copy filled the gap) is recorded there; with none left
 * missing it is partial no more. */
static void complete_partials(tm_replication *r, const char *target,
                              const Tidemark__ReplicationReport *rep)
{
    Tidemark__BackupInfo **b = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_catalog_backup_partial_list(r->cat, target, &b, &n, &err) != TM_OK) {
        tm_error("replication", "event=read_failed target=%s msg=\"%s\"", target, err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        Tidemark__BackupInfo *bi = b[i];
        if (bi->n_missing_repositories == 0) {
            continue;
        }
        char **repos = realloc(bi->repositories,
                               (bi->n_repositories + bi->n_missing_repositories) * sizeof(*repos));
        if (repos == NULL) {
            continue;
        }
        bi->repositories = repos;
        size_t kept = 0, moved = 0;
        for (size_t m = 0; m < bi->n_missing_repositories; m++) {
            const Tidemark__RepositoryReplication *rr = NULL;
            for (size_t k = 0; k < rep->n_repositories && rr == NULL; k++) {
                if (rep->repositories[k]->repository != NULL &&
                    strcmp(rep->repositories[k]->repository, bi->missing_repositories[m]) == 0) {
                    rr = rep->repositories[k];
                }
            }
            if (rr != NULL && rr->reachable && !has_gap(rr, "backup", bi->id)) {
                tm_info("replication", "event=partial_filled target=%s backup=%s repository=%s",
                        target, bi->id, bi->missing_repositories[m]);
                bi->repositories[bi->n_repositories++] = bi->missing_repositories[m];
                moved++;
            } else {
                bi->missing_repositories[kept++] = bi->missing_repositories[m];
            }
        }
        bi->n_missing_repositories = kept;
        if (moved == 0) {
            continue;
        }
        bi->partial = kept > 0;
        if (!bi->partial) {
            tm_info("replication", "event=backup_complete target=%s backup=%s repositories=%zu",
                    target, bi->id, bi->n_repositories);
        }
        if (tm_catalog_backup_put(r->cat, bi, &err) != TM_OK) {
            tm_error("replication", "event=save_failed target=%s backup=%s msg=\"%s\"", target,
                     bi->id, err.msg);
        }
    }
    tm_catalog_backups_free(b, n);
}

/* A backup just ended partial: its missing repositories are a replication
 * gap now, not at the next scheduled check (replication_gap fires on the
 * next alert evaluation), and a check is queued at once; its result queues
 * the copy as soon as the repository answers. */
static void mark_partial(tm_replication *r, const Tidemark__Task *t)
{
    Tidemark__BackupInfo *b = NULL;
    tm_err err;
    const char *id = t->result != NULL ? t->result->backup_id : NULL;
    if (id == NULL || tm_catalog_backup_get(r->cat, t->target, id, &b, &err) != TM_OK) {
        return;
    }
    Tidemark__ReplicationState **old = NULL;
    size_t nold = 0;
    if (tm_catalog_repl_list(r->cat, t->target, &old, &nold, &err) != TM_OK) {
        tidemark__backup_info__free_unpacked(b, NULL);
        return;
    }
    for (size_t i = 0; i < b->n_missing_repositories; i++) {
        const char *repo = b->missing_repositories[i];
        const Tidemark__ReplicationState *prev = find_state(old, nold, repo);
        const Tidemark__RepositoryOutcome *o = NULL;
        for (size_t k = 0; t->result != NULL && k < t->result->n_repository_outcomes; k++) {
            const Tidemark__RepositoryOutcome *x = t->result->repository_outcomes[k];
            if (x->repository != NULL && strcmp(x->repository, repo) == 0) {
                o = x;
            }
        }
        int cls = o != NULL && o->error_class != NULL && o->error_class[0];
        int msg = o != NULL && o->message != NULL && o->message[0];
        char detail[1024];
        snprintf(detail, sizeof(detail), "backup %s is partial: not complete in %s%s%s%s%s%.600s",
                 id, repo, cls ? " (" : "", cls ? o->error_class : "", cls ? ")" : "",
                 msg ? ": " : "", msg ? o->message : "");
        Tidemark__ReplicationState st = TIDEMARK__REPLICATION_STATE__INIT;
        st.target = t->target;
        st.repository = (char *)repo;
        st.region = o != NULL ? o->region : (prev != NULL ? prev->region : NULL);
        st.state = "gap";
        st.has_checked_at = st.has_gaps = st.has_unresolved = st.has_required = 1;
        st.has_copies = st.has_oldest_missing_time = st.has_mismatches = 1;
        st.checked_at = tm_now_s();
        st.gaps = (prev != NULL ? prev->gaps : 0) + 1;
        st.mismatches = prev != NULL ? prev->mismatches : 0;
        st.copies = prev != NULL ? prev->copies : 0;
        st.oldest_missing_time = prev != NULL && prev->oldest_missing_time > 0
                                     ? prev->oldest_missing_time
                                     : (int64_t)b->finished_at;
        st.newest_backup = prev != NULL ? prev->newest_backup : NULL;
        st.newest_log = prev != NULL ? prev->newest_log : NULL;
        st.required = 1;
        st.unresolved = 1;
        st.detail = detail;
        st.last_task = t->id;
        put_state(r, &st);
        tm_warn("replication", "event=gap target=%s repository=%s state=gap backup=%s why=partial",
                t->target, repo, id);
    }
    tm_catalog_repl_free(old, nold);
    tidemark__backup_info__free_unpacked(b, NULL);
}

static void on_check(tm_replication *r, const Tidemark__Task *task)
{
    const Tidemark__ReplicationReport *rep = task->result ? task->result->replication : NULL;
    if (rep == NULL) {
        return;
    }
    Tidemark__ReplicationState **old = NULL;
    size_t nold = 0;
    tm_err err;
    if (tm_catalog_repl_list(r->cat, task->target, &old, &nold, &err) != TM_OK) {
        tm_error("replication", "event=read_failed target=%s msg=\"%s\"", task->target, err.msg);
        return;
    }
    int64_t now = tm_now_s();
    int clean = 1;
    /* Target-wide: the policy cannot be satisfied by this agent's repositories. */
    {
        char detail[1024] = "";
        for (size_t i = 0; i < rep->n_problems; i++) {
            size_t l = strlen(detail);
            snprintf(detail + l, sizeof(detail) - l, "%s%s", l ? "; " : "", rep->problems[i]);
        }
        Tidemark__ReplicationState st = TIDEMARK__REPLICATION_STATE__INIT;
        st.target = task->target;
        st.repository = "";
        st.state = rep->n_problems > 0 ? "unsatisfied" : "ok";
        st.has_checked_at = st.has_unresolved = st.has_required = st.has_gaps = 1;
        st.checked_at = now;
        st.unresolved = rep->n_problems > 0;
        st.required = 1;
        st.gaps = (uint32_t)rep->n_problems;
        st.detail = detail;
        st.last_task = task->id;
        if (rep->n_problems > 0 || find_state(old, nold, "") != NULL) {
            put_state(r, &st);
        }
        clean &= rep->n_problems == 0;
    }
    for (size_t i = 0; i < rep->n_repositories; i++) {
        const Tidemark__RepositoryReplication *rr = rep->repositories[i];
        if (rr->repository == NULL || rr->repository[0] == '\0') {
            continue;
        }
        const Tidemark__ReplicationState *prev = find_state(old, nold, rr->repository);
        Tidemark__ReplicationState st = TIDEMARK__REPLICATION_STATE__INIT;
        char detail[1024] = "", task_id[64] = "";
        st.target = task->target;
        st.repository = rr->repository;
        st.region = rr->region;
        st.has_checked_at = st.has_gaps = st.has_mismatches = st.has_oldest_missing_time = 1;
        st.has_unresolved = st.has_copies = st.has_required = 1;
        st.checked_at = now;
        st.gaps = rr->missing;
        st.mismatches = rr->mismatched;
        st.oldest_missing_time = rr->oldest_missing_time;
        st.newest_backup = rr->newest_backup;
        st.newest_log = rr->newest_log;
        st.required = rr->required;
        st.copies = prev != NULL ? prev->copies : 0;
        st.unresolved = prev != NULL && prev->unresolved;
        st.last_task = task->id;
        st.detail = detail;
        int dirty = rr->missing + rr->mismatched > 0;
        st.state = !rr->reachable   ? "unreachable"
                   : rr->mismatched ? "mismatch"
                   : rr->missing    ? "gap"
                                    : "ok";
        if (!rr->reachable) {
            snprintf(detail, sizeof(detail), "%s", rr->error ? rr->error : "not reachable");
            st.copies = 0; /* copies get their tries again once it answers */
        } else if (!dirty) {
            st.copies = 0;
            st.unresolved = 0;
        } else {
            if (rr->n_gaps > 0 && rr->gaps[0]->detail != NULL) {
                snprintf(detail, sizeof(detail), "%s %s: %s", rr->gaps[0]->kind, rr->gaps[0]->item,
                         rr->gaps[0]->detail);
            }
            Tidemark__Task *pending = NULL;
            if (!rr->required) {
                /* Not required by the policy: reported, not repaired. */
            } else if (open_task(r, task->target, TIDEMARK__TASK_KIND__COPY, rr->repository, 0,
                                 &pending)) {
                tidemark__task__free_unpacked(pending, NULL); /* a copy is on its way */
            } else {
                if (st.copies > 0) {
                    st.unresolved = 1; /* a copy ran and the items are still missing */
                }
                if (st.copies < TM_REPL_MAX_COPIES) {
                    char why[512] = "";
                    size_t unsourced = queue_copies(r, task->target, rep, rr, why, sizeof(why),
                                                    task_id, sizeof(task_id));
                    if (task_id[0] != '\0') {
                        st.copies++;
                        st.last_task = task_id;
                    }
                    if (unsourced > 0) {
                        st.unresolved = 1;
                        snprintf(detail, sizeof(detail), "%s", why);
                    }
                }
            }
            clean &= !rr->required;
        }
        if (!rr->reachable) {
            clean &= !rr->required;
        }
        if (rr->required && (dirty || !rr->reachable)) {
            tm_warn("replication",
                    "event=gap target=%s repository=%s state=%s missing=%u mismatched=%u "
                    "copies=%u unresolved=%d detail=\"%s\"",
                    task->target, rr->repository, st.state, rr->missing, rr->mismatched, st.copies,
                    st.unresolved, detail);
        }
        put_state(r, &st);
    }
    tm_catalog_repl_free(old, nold);
    complete_partials(r, task->target, rep);
    pthread_mutex_lock(&r->mu);
    r->checks[clean ? 0 : 1]++;
    pthread_mutex_unlock(&r->mu);
}

static void on_copy_failed(tm_replication *r, const Tidemark__Task *task)
{
    if (task->copy == NULL || task->copy->destination == NULL) {
        return;
    }
    Tidemark__ReplicationState **old = NULL;
    size_t nold = 0;
    tm_err err;
    if (tm_catalog_repl_list(r->cat, task->target, &old, &nold, &err) != TM_OK) {
        return;
    }
    Tidemark__ReplicationState *st = find_state(old, nold, task->copy->destination);
    if (st != NULL) {
        char detail[1024];
        snprintf(detail, sizeof(detail), "copy from %s failed: %s", task->copy->source,
                 task->error != NULL ? task->error : "no reason given");
        char *own = st->detail;
        st->has_unresolved = 1;
        st->unresolved = 1;
        st->detail = detail;
        put_state(r, st);
        st->detail = own; /* detail is stack memory: not the record's to free */
    }
    tm_catalog_repl_free(old, nold);
}

void tm_replication_task_done(void *arg, const Tidemark__Task *t)
{
    tm_replication *r = arg;
    int ok = t->state == TIDEMARK__TASK_STATE__TASK_SUCCEEDED;
    Tidemark__Task *queued = NULL;
    tm_err err;
    if (t->kind == TIDEMARK__TASK_KIND__BACKUP && t->state == TIDEMARK__TASK_STATE__TASK_PARTIAL) {
        mark_partial(r, t);
        if (tm_replication_queue_check(r, t->target, "partial", &queued, &err) == TM_OK) {
            tidemark__task__free_unpacked(queued, NULL);
        } else {
            tm_error("replication", "event=check_submit_failed target=%s msg=\"%s\"", t->target,
                     err.msg);
        }
    } else if (t->kind == TIDEMARK__TASK_KIND__BACKUP && ok) {
        const tm_policy_conf *p = NULL;
        if (tm_policy_for_target(r->conf, r->cat, t->target, &p, &err) == TM_OK && p != NULL &&
            p->has_replication &&
            tm_replication_queue_check(r, t->target, "backup", &queued, &err) == TM_OK) {
            tidemark__task__free_unpacked(queued, NULL);
        }
    } else if (t->kind == TIDEMARK__TASK_KIND__VERIFY && t->check != NULL) {
        if (ok) {
            on_check(r, t);
        } else {
            pthread_mutex_lock(&r->mu);
            r->checks[2]++;
            pthread_mutex_unlock(&r->mu);
        }
    } else if (t->kind == TIDEMARK__TASK_KIND__COPY) {
        pthread_mutex_lock(&r->mu);
        r->copies[ok ? 0 : 1]++;
        pthread_mutex_unlock(&r->mu);
        if (!ok) {
            on_copy_failed(r, t);
        }
        /* Success or not, a check after the copy says where things stand. */
        if (tm_replication_queue_check(r, t->target, "copy", &queued, &err) == TM_OK) {
            tidemark__task__free_unpacked(queued, NULL);
        } else {
            tm_error("replication", "event=check_submit_failed target=%s msg=\"%s\"", t->target,
                     err.msg);
        }
    }
}

/* ---- repository health ----------------------------------------------------- */

static int str_eq(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

void tm_replication_health(tm_replication *r, const char *agent_id,
                           Tidemark__RepositoryStatus *const *v, size_t n)
{
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < n && i < 64; i++) {
        const Tidemark__RepositoryStatus *in = v[i];
        if (in->name == NULL || in->name[0] == '\0' || strlen(in->name) > 64) {
            continue;
        }
        Tidemark__RepositoryStatus copy = *in;
        copy.agent_id = (char *)agent_id;
        size_t k = 0;
        while (k < r->n_health && !(str_eq(r->health[k]->agent_id, agent_id) &&
                                    str_eq(r->health[k]->name, in->name))) {
            k++;
        }
        if (in->ok && (k == r->n_health || !r->health[k]->ok)) {
            r->health_up = 1; /* a partial backup may be completed now */
        }
        int changed = k == r->n_health || r->health[k]->ok != in->ok ||
                      !str_eq(r->health[k]->error, in->error) ||
                      !str_eq(r->health[k]->region, in->region);
        Tidemark__RepositoryStatus *dup = msg_dup(&copy.base);
        if (dup == NULL) {
            continue;
        }
        if (k == r->n_health) {
            if (r->n_health == r->cap_health) {
                size_t cap = r->cap_health ? r->cap_health * 2 : 8;
                Tidemark__RepositoryStatus **nh = realloc(r->health, cap * sizeof(*nh));
                if (nh == NULL) {
                    tidemark__repository_status__free_unpacked(dup, NULL);
                    continue;
                }
                r->health = nh;
                r->cap_health = cap;
            }
            r->n_health++;
        } else {
            tidemark__repository_status__free_unpacked(r->health[k], NULL);
        }
        r->health[k] = dup;
        if (changed) {
            tm_err err;
            if (tm_catalog_repo_health_put(r->cat, dup, &err) != TM_OK) {
                tm_error("replication", "event=health_save_failed msg=\"%s\"", err.msg);
            }
            tm_info("replication",
                    "event=repository_health agent=%s repository=%s ok=%d error=\"%s\"", agent_id,
                    in->name, in->ok, in->error != NULL ? in->error : "");
        }
    }
    pthread_mutex_unlock(&r->mu);
}

int tm_replication_health_list(tm_replication *r, Tidemark__RepositoryStatus ***out, size_t *n,
                               tm_err *err)
{
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&r->mu);
    Tidemark__RepositoryStatus **v = calloc(r->n_health ? r->n_health : 1, sizeof(*v));
    if (v == NULL) {
        pthread_mutex_unlock(&r->mu);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < r->n_health; i++) {
        if ((v[k] = msg_dup(&r->health[i]->base)) != NULL) {
            k++;
        }
    }
    pthread_mutex_unlock(&r->mu);
    *out = v;
    *n = k;
    return TM_OK;
}

/* ---- metrics --------------------------------------------------------------- */

void tm_replication_collect(tm_metrics_writer *w, void *arg)
{
    tm_replication *r = arg;
    char labels[512], e1[160], e2[160], e3[160];
    int64_t now = tm_now_s();
    tm_metrics_write_family(w, "tidemark_repository_up", TM_METRIC_GAUGE,
                            "1 when the agent's last probe of the repository succeeded.");
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_health; i++) {
        const Tidemark__RepositoryStatus *h = r->health[i];
        snprintf(labels, sizeof(labels), "agent=\"%s\",repository=\"%s\",region=\"%s\"",
                 tm_metrics_escape(h->agent_id ? h->agent_id : "", e1, sizeof(e1)),
                 tm_metrics_escape(h->name ? h->name : "", e2, sizeof(e2)),
                 tm_metrics_escape(h->region ? h->region : "", e3, sizeof(e3)));
        tm_metrics_write_sample(w, "tidemark_repository_up", labels, h->ok ? 1 : 0);
    }
    uint64_t checks[3], copies[2];
    memcpy(checks, r->checks, sizeof(checks));
    memcpy(copies, r->copies, sizeof(copies));
    pthread_mutex_unlock(&r->mu);
    tm_metrics_write_family(w, "tidemark_replication_checks_total", TM_METRIC_COUNTER,
                            "Replication checks finished, by result (ok, gap, failed).");
    for (size_t i = 0; i < 3; i++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", check_results[i]);
        tm_metrics_write_sample(w, "tidemark_replication_checks_total", labels, (double)checks[i]);
    }
    tm_metrics_write_family(w, "tidemark_replication_copies_total", TM_METRIC_COUNTER,
                            "Repair copies finished, by result (ok, failed).");
    for (size_t i = 0; i < 2; i++) {
        snprintf(labels, sizeof(labels), "result=\"%s\"", copy_results[i]);
        tm_metrics_write_sample(w, "tidemark_replication_copies_total", labels, (double)copies[i]);
    }
    Tidemark__ReplicationState **st = NULL;
    size_t n = 0;
    tm_err err;
    if (tm_catalog_repl_list(r->cat, NULL, &st, &n, &err) != TM_OK) {
        return;
    }
    static const char *const fam[][2] = {
        {"tidemark_replication_lag_seconds",
         "Seconds since the oldest item this repository lacks appeared elsewhere (0 = complete)."},
        {"tidemark_replication_gaps",
         "Items (backups, log files) missing or different in this repository at the last check."},
        {"tidemark_replication_last_check_timestamp_seconds",
         "Unix time of the last replication check of the target."},
    };
    for (size_t k = 0; k < 3; k++) {
        tm_metrics_write_family(w, fam[k][0], TM_METRIC_GAUGE, fam[k][1]);
        for (size_t i = 0; i < n; i++) {
            if (st[i]->repository == NULL || st[i]->repository[0] == '\0') {
                continue;
            }
            snprintf(labels, sizeof(labels), "target=\"%s\",repository=\"%s\"",
                     tm_metrics_escape(st[i]->target, e1, sizeof(e1)),
                     tm_metrics_escape(st[i]->repository, e2, sizeof(e2)));
            double v = k == 0   ? (st[i]->oldest_missing_time > 0
                                       ? (double)(now - st[i]->oldest_missing_time)
                                       : 0)
                       : k == 1 ? (double)(st[i]->gaps + st[i]->mismatches)
                                : (double)st[i]->checked_at;
            tm_metrics_write_sample(w, fam[k][0], labels, v);
        }
    }
    tm_catalog_repl_free(st, n);
}
