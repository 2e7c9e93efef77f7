/*
 * outcome.c - the verdict on a finished BACKUP task (see outcome.h).
 */
#include "coordinator/outcome.h"
#include "common/util.h"
#include "coordinator/policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* More repositories than any configuration has; beyond it, names are ignored. */
#define MAX_REPOS 64

void tm_backup_verdict_clear(tm_backup_verdict *v)
{
    for (size_t i = 0; i < v->n_missing; i++) {
        free(v->missing[i]);
    }
    free(v->missing);
    v->missing = NULL;
    v->n_missing = 0;
}

/* Append to the string in buf (cap bytes); what does not fit is cut. */
static void appendf(char *buf, size_t cap, const char *fmt, ...)
{
    size_t l = strlen(buf);
    if (l + 1 >= cap) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + l, cap - l, fmt, ap);
    va_end(ap);
}

static int in_list(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] != NULL && strcmp(v[i], s) == 0) {
            return 1;
        }
    }
    return 0;
}

static void add_name(const char **v, size_t *n, const char *s)
{
    if (s != NULL && s[0] != '\0' && *n < MAX_REPOS && !in_list((char *const *)v, *n, s)) {
        v[(*n)++] = s;
    }
}

static const Tidemark__RepositoryOutcome *find_outcome(const Tidemark__TaskResult *r,
                                                       const char *repo)
{
    for (size_t i = 0; i < r->n_repository_outcomes; i++) {
        const Tidemark__RepositoryOutcome *o = r->repository_outcomes[i];
        if (o != NULL && o->repository != NULL && strcmp(o->repository, repo) == 0) {
            return o;
        }
    }
    return NULL;
}

static const Tidemark__RepositoryStatus *find_known(Tidemark__RepositoryStatus *const *known,
                                                    size_t n, const char *repo)
{
    for (size_t i = 0; i < n; i++) {
        if (known[i]->name != NULL && strcmp(known[i]->name, repo) == 0) {
            return known[i];
        }
    }
    return NULL;
}

/* Where the agent's own outcome says so; else where it listed the backup. */
static int holds(const Tidemark__TaskResult *r, const char *repo)
{
    const Tidemark__RepositoryOutcome *o = find_outcome(r, repo);
    return o != NULL ? o->ok : in_list(r->repositories, r->n_repositories, repo);
}

/* Errors another attempt cannot fix: a wrong key, a missing bucket, a full
 * disk, damaged bytes. Unknown ("") is worth a retry. */
static int class_retryable(const char *cls)
{
    static const char *const final[] = {"auth", "permission", "not_found", "no_space", "corrupt"};
    for (size_t i = 0; cls != NULL && i < sizeof(final) / sizeof(final[0]); i++) {
        if (strcmp(cls, final[i]) == 0) {
            return 0;
        }
    }
    return 1;
}

/* Outcomes for an agent that sent none: one per repository written. */
static int synthesize(Tidemark__TaskResult *r, const char *const *written, size_t n,
                      Tidemark__RepositoryStatus *const *known, size_t n_known, tm_err *err)
{
    char held[512] = "";
    for (size_t i = 0; i < r->n_repositories; i++) {
        appendf(held, sizeof(held), "%s%s", i ? ", " : "", r->repositories[i]);
    }
    Tidemark__RepositoryOutcome **v = calloc(n ? n : 1, sizeof(*v));
    if (v == NULL) {
        return tm_err_set(err, TM_ENOMEM, "outcome: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        Tidemark__RepositoryOutcome *o = calloc(1, sizeof(*o));
        if (o == NULL) {
            for (size_t k = 0; k < i; k++) {
                tidemark__repository_outcome__free_unpacked(v[k], NULL);
            }
            free(v);
            return tm_err_set(err, TM_ENOMEM, "outcome: out of memory");
        }
        tidemark__repository_outcome__init(o);
        v[i] = o;
        const Tidemark__RepositoryStatus *k = find_known(known, n_known, written[i]);
        o->repository = strdup(written[i]);
        o->region = k != NULL && k->region != NULL ? strdup(k->region) : NULL;
        o->has_ok = 1;
        o->ok = in_list(r->repositories, r->n_repositories, written[i]);
        if (!o->ok) {
            char msg[1024] = "";
            appendf(msg, sizeof(msg), "the agent reported the backup complete only in %s%s%.600s",
                    held[0] ? held : "no repository",
                    k != NULL && k->error != NULL && k->error[0] ? "; its last probe here: " : "",
                    k != NULL && k->error != NULL ? k->error : "");
            o->error_class = strdup("");
            o->operation = strdup("backup");
            o->message = strdup(msg);
        }
    }
    free(r->repository_outcomes); /* empty, but may be allocated */
    r->repository_outcomes = v;
    r->n_repository_outcomes = n;
    return TM_OK;
}

int tm_outcome_decide(Tidemark__TaskResult *r, char *const *required, size_t n_required,
                      Tidemark__RepositoryStatus *const *known, size_t n_known,
                      tm_backup_verdict *v, tm_err *err)
{
    memset(v, 0, sizeof(*v));
    v->state = TIDEMARK__TASK_STATE__TASK_SUCCEEDED;
    /* The repositories written to. */
    const char *written[MAX_REPOS];
    size_t nw = 0;
    for (size_t i = 0; i < r->n_repository_outcomes; i++) {
        add_name(written, &nw, r->repository_outcomes[i]->repository);
    }
    if (r->n_repository_outcomes == 0) {
        for (size_t i = 0; i < n_known; i++) {
            add_name(written, &nw, known[i]->name);
        }
    }
    for (size_t i = 0; i < r->n_repositories; i++) {
        add_name(written, &nw, r->repositories[i]);
    }
    if (r->n_repository_outcomes == 0 && nw > 0) {
        int rc = synthesize(r, written, nw, known, n_known, err);
        if (rc != TM_OK) {
            return rc;
        }
    }
    /* The repositories required. */
    const char *req[MAX_REPOS];
    size_t nr = 0;
    for (size_t i = 0; i < n_required; i++) {
        if (nw == 0 || in_list((char *const *)written, nw, required[i])) {
            add_name(req, &nr, required[i]);
        }
    }
    if (n_required == 0) {
        memcpy(req, written, nw * sizeof(*req));
        nr = nw;
    }
    char have[512] = "", miss[TM_ERR_MSG_MAX] = "";
    size_t nhave = 0;
    v->missing = calloc(nr ? nr : 1, sizeof(*v->missing));
    if (v->missing == NULL) {
        return tm_err_set(err, TM_ENOMEM, "outcome: out of memory");
    }
    for (size_t i = 0; i < nr; i++) {
        if (holds(r, req[i])) {
            appendf(have, sizeof(have), "%s%s", nhave ? ", " : "", req[i]);
            nhave++;
            continue;
        }
        const Tidemark__RepositoryOutcome *o = find_outcome(r, req[i]);
        if ((v->missing[v->n_missing] = strdup(req[i])) == NULL) {
            tm_backup_verdict_clear(v);
            return tm_err_set(err, TM_ENOMEM, "outcome: out of memory");
        }
        v->n_missing++;
        v->retryable |= class_retryable(o != NULL ? o->error_class : "");
        appendf(miss, sizeof(miss), "%s%s (%s%s%s%s%.300s)", v->n_missing > 1 ? "; " : "", req[i],
                o != NULL && o->error_class != NULL && o->error_class[0] ? o->error_class : "",
                o != NULL && o->error_class != NULL && o->error_class[0] ? " " : "",
                o != NULL && o->operation != NULL && o->operation[0] ? o->operation : "",
                o != NULL && o->operation != NULL && o->operation[0] ? ": " : "",
                o != NULL && o->message != NULL && o->message[0] ? o->message : "not written");
    }
    if (v->n_missing == 0) {
        return TM_OK;
    }
    if (nhave > 0) {
        v->state = TIDEMARK__TASK_STATE__TASK_PARTIAL;
        appendf(v->reason, sizeof(v->reason),
                "partial: backup %.80s is complete in %.200s; missing from %s", r->backup_id, have,
                miss);
        return TM_OK;
    }
    v->state = TIDEMARK__TASK_STATE__TASK_FAILED;
    char extra[300] = "";
    for (size_t i = 0; i < r->n_repositories; i++) {
        appendf(extra, sizeof(extra), "%s%s", i ? ", " : "", r->repositories[i]);
    }
    appendf(v->reason, sizeof(v->reason),
            "backup %.80s is complete in none of the required repositories%s%s%s: %s", r->backup_id,
            extra[0] ? " (only in " : "", extra, extra[0] ? ", not required)" : "", miss);
    return TM_OK;
}

int tm_outcome_backup(void *arg, Tidemark__Task *t, tm_backup_verdict *v, tm_err *err)
{
    tm_outcome_ctx *ctx = arg;
    const tm_policy_conf *p = NULL;
    int rc = tm_policy_for_target(ctx->conf, ctx->cat, t->target, &p, err);
    if (rc != TM_OK && rc != TM_ENOENT) {
        return rc;
    }
    Tidemark__RepositoryStatus **all = NULL, *mine[MAX_REPOS];
    size_t nall = 0, nmine = 0;
    if (t->result->n_repository_outcomes == 0 &&
        (rc = tm_catalog_repo_health_list(ctx->cat, &all, &nall, err)) != TM_OK) {
        return rc;
    }
    for (size_t i = 0; i < nall && nmine < MAX_REPOS; i++) {
        if (all[i]->agent_id != NULL && t->agent_id != NULL &&
            strcmp(all[i]->agent_id, t->agent_id) == 0) {
            mine[nmine++] = all[i];
        }
    }
    int named = p != NULL && p->has_replication;
    rc = tm_outcome_decide(t->result, named ? p->repl_repositories : NULL,
                           named ? p->n_repl_repositories : 0, mine, nmine, v, err);
    tm_catalog_repo_health_free(all, nall);
    return rc;
}
