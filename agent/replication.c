/*
 * replication.c - replication check and copy tasks (see replication.h).
 *
 * The check reuses the two listers the repository already has: backups are
 * compared by tm_repo_verify without the key (presence, sizes, stored
 * SHA-256 of every object, digest lists byte for byte), log files by
 * tm_log_scan plus their sidecars (presence, stored size, stored SHA-256).
 */
#include "agent/replication.h"
#include "agent/repo/repo_copy.h"
#include "agent/repo/repo_health.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"
#include "common/log.h"
#include "common/util.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct gap {
    char *item;
    int is_log;
    int mismatch;
    char *detail;
    int64_t t;
} gap;

typedef struct repo_acc {
    int required;
    int reachable;
    char error[TM_ERR_MSG_MAX];
    uint32_t backups, logs, missing, mismatched;
    char newest_backup[96];
    char newest_log[192];
    int64_t oldest_missing;
    gap *gaps;
    size_t n, cap;
} repo_acc;

typedef struct check {
    tm_repo_set *rs;
    repo_acc *acc;
    int oom;
} check;

/* "YYYYMMDDTHHMMSSZ-<kind>" -> unix seconds (0 if not that shape). */
static int64_t backup_id_time(const char *id)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(id, "%4d%2d%2dT%2d%2d%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6) {
        return 0;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static void add_gap(check *c, size_t r, int is_log, const char *item, int mismatch,
                    const char *detail, int64_t t)
{
    repo_acc *a = &c->acc[r];
    if (!a->reachable) {
        return; /* what it lacks is unknown until it answers again */
    }
    for (size_t i = a->n; i-- > 0;) {
        if (a->gaps[i].is_log == is_log && strcmp(a->gaps[i].item, item) == 0) {
            return; /* one gap per item; the first finding explains it */
        }
    }
    if (mismatch) {
        a->mismatched++;
    } else {
        a->missing++;
    }
    if (t > 0 && (a->oldest_missing == 0 || t < a->oldest_missing)) {
        a->oldest_missing = t;
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        gap *ng = realloc(a->gaps, cap * sizeof(*ng));
        if (ng == NULL) {
            c->oom = 1;
            return;
        }
        a->gaps = ng;
        a->cap = cap;
    }
    gap *g = &a->gaps[a->n];
    g->item = strdup(item);
    g->detail = strdup(detail != NULL ? detail : "");
    g->is_log = is_log;
    g->mismatch = mismatch;
    g->t = t;
    if (g->item == NULL || g->detail == NULL) {
        free(g->item);
        free(g->detail);
        c->oom = 1;
        return;
    }
    a->n++;
}

static void on_verify(void *arg, const tm_verify_item *it)
{
    check *c = arg;
    int r = it->repo != NULL ? tm_repo_set_find(c->rs, it->repo) : -1;
    if (r < 0) {
        return;
    }
    repo_acc *a = &c->acc[r];
    if (!a->reachable) {
        return;
    }
    if (it->ok) {
        a->backups++;
        if (strcmp(it->backup_id, a->newest_backup) > 0) {
            snprintf(a->newest_backup, sizeof(a->newest_backup), "%s", it->backup_id);
        }
        return;
    }
    if (it->backup_id == NULL) {
        a->reachable = 0; /* the listing failed */
        snprintf(a->error, sizeof(a->error), "%s", it->msg != NULL ? it->msg : "unreachable");
        return;
    }
    int missing = it->msg != NULL &&
                  (strstr(it->msg, "missing") != NULL || strstr(it->msg, "incomplete") != NULL ||
                   strstr(it->msg, "unreadable") != NULL);
    char detail[1200];
    snprintf(detail, sizeof(detail), "%s%s%s", it->object != NULL ? it->object : "",
             it->object != NULL ? ": " : "", it->msg != NULL ? it->msg : "");
    add_gap(c, (size_t)r, 0, it->backup_id, !missing, detail, backup_id_time(it->backup_id));
}

/* One log file as one repository lists it. */
typedef struct log_row {
    const tm_log_item *it;
    size_t repo;
} log_row;

static int log_row_cmp(const void *a, const void *b)
{
    const log_row *x = a, *y = b;
    int c = strcmp(x->it->rel, y->it->rel);
    return c != 0 ? c : (x->repo < y->repo ? -1 : x->repo > y->repo);
}

/* One file (rows[0..n), all the same rel, one per repository that lists it). */
static void check_log_file(check *c, const char *target, const log_row *rows, size_t n, int64_t now)
{
    size_t nrepo = tm_repo_set_count(c->rs);
    int64_t first_seen = 0;
    const tm_log_item *complete[64] = {0};
    for (size_t i = 0; i < n && rows[i].repo < 64; i++) {
        const tm_log_item *it = rows[i].it;
        if (it->has_meta && it->has_object) {
            complete[rows[i].repo] = it;
            if (first_seen == 0 || (it->mtime > 0 && it->mtime < first_seen)) {
                first_seen = it->mtime;
            }
        }
    }
    if (first_seen == 0 || now - first_seen < TM_REPL_SETTLE_S) {
        return; /* nowhere complete yet, or still being pushed */
    }
    const char *rel = rows[0].it->rel;
    char ref_sha[65] = "";
    size_t ref_repo = 0;
    for (size_t r = 0; r < nrepo && r < 64; r++) {
        if (!c->acc[r].reachable) {
            continue;
        }
        if (complete[r] == NULL) {
            add_gap(c, r, 1, rel, 0, "log file missing (no object or no sidecar)", first_seen);
            continue;
        }
        tm_log_meta m;
        tm_err e = {0};
        char detail[600];
        if (tm_log_meta_get(c->rs, r, target, rel, &m, &e) != TM_OK) {
            snprintf(detail, sizeof(detail), "sidecar unreadable: %s", e.msg);
            add_gap(c, r, 1, rel, 1, detail, first_seen);
            continue;
        }
        if (m.stored_size != complete[r]->stored_size) {
            snprintf(detail, sizeof(detail),
                     "stored size %" PRIu64 ", its sidecar says %" PRIu64 " (damaged copy)",
                     complete[r]->stored_size, m.stored_size);
            add_gap(c, r, 1, rel, 1, detail, first_seen);
            continue;
        }
        if (ref_sha[0] == '\0') {
            memcpy(ref_sha, m.sha256, sizeof(ref_sha));
            ref_repo = r;
        } else if (strcmp(ref_sha, m.sha256) != 0) {
            snprintf(detail, sizeof(detail), "stored SHA-256 %.16s... differs from %s's %.16s...",
                     m.sha256, tm_repo_set_name(c->rs, ref_repo), ref_sha);
            add_gap(c, r, 1, rel, 1, detail, first_seen);
            continue;
        }
        c->acc[r].logs++;
        if (strcmp(rel, c->acc[r].newest_log) > 0) {
            snprintf(c->acc[r].newest_log, sizeof(c->acc[r].newest_log), "%s", rel);
        }
    }
}

static void check_logs(check *c, const char *target)
{
    size_t nrepo = tm_repo_set_count(c->rs);
    tm_log_item **items = calloc(nrepo, sizeof(*items));
    size_t *ns = calloc(nrepo, sizeof(*ns));
    log_row *rows = NULL;
    size_t nrows = 0;
    if (items == NULL || ns == NULL) {
        c->oom = 1;
        goto out;
    }
    for (size_t r = 0; r < nrepo; r++) {
        tm_err e = {0};
        if (!c->acc[r].reachable) {
            continue;
        }
        if (tm_log_scan(c->rs, r, target, &items[r], &ns[r], &e) != TM_OK) {
            c->acc[r].reachable = 0;
            snprintf(c->acc[r].error, sizeof(c->acc[r].error), "%s", e.msg);
            continue;
        }
        nrows += ns[r];
    }
    rows = calloc(nrows ? nrows : 1, sizeof(*rows));
    if (rows == NULL) {
        c->oom = 1;
        goto out;
    }
    size_t k = 0;
    for (size_t r = 0; r < nrepo; r++) {
        for (size_t i = 0; i < ns[r]; i++) {
            rows[k++] = (log_row){&items[r][i], r};
        }
    }
    if (k > 1) {
        qsort(rows, k, sizeof(*rows), log_row_cmp);
    }
    int64_t now = tm_now_s();
    for (size_t i = 0; i < k;) {
        size_t j = i + 1;
        while (j < k && strcmp(rows[j].it->rel, rows[i].it->rel) == 0) {
            j++;
        }
        check_log_file(c, target, rows + i, j - i, now);
        i = j;
    }
out:
    free(rows);
    for (size_t r = 0; items != NULL && r < nrepo; r++) {
        tm_log_items_free(items[r], ns[r]);
    }
    free(items);
    free(ns);
}

static char *dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

/* The accumulated findings as a (malloc'd, free_unpacked-able) report. */
static Tidemark__ReplicationReport *build_report(check *c, uint32_t regions, char **problems,
                                                 size_t n_problems)
{
    size_t nrepo = tm_repo_set_count(c->rs);
    Tidemark__ReplicationReport *rep = calloc(1, sizeof(*rep));
    if (rep == NULL) {
        return NULL;
    }
    tidemark__replication_report__init(rep);
    rep->has_regions = 1;
    rep->regions = regions;
    rep->problems = problems;
    rep->n_problems = n_problems;
    rep->repositories = calloc(nrepo ? nrepo : 1, sizeof(*rep->repositories));
    if (rep->repositories == NULL) {
        return rep;
    }
    for (size_t r = 0; r < nrepo; r++) {
        repo_acc *a = &c->acc[r];
        Tidemark__RepositoryReplication *rr = calloc(1, sizeof(*rr));
        if (rr == NULL) {
            break;
        }
        tidemark__repository_replication__init(rr);
        rep->repositories[rep->n_repositories++] = rr;
        rr->repository = strdup(tm_repo_set_name(c->rs, r));
        rr->region = dup_or_null(tm_repo_set_region(c->rs, r));
        rr->has_required = rr->has_reachable = rr->has_backups = rr->has_logs = 1;
        rr->has_missing = rr->has_mismatched = rr->has_oldest_missing_time = 1;
        rr->required = a->required;
        rr->reachable = a->reachable;
        rr->error = a->reachable ? NULL : strdup(a->error);
        rr->backups = a->backups;
        rr->logs = a->logs;
        rr->missing = a->missing;
        rr->mismatched = a->mismatched;
        rr->oldest_missing_time = a->oldest_missing;
        rr->newest_backup = dup_or_null(a->newest_backup);
        rr->newest_log = dup_or_null(a->newest_log);
        size_t ng = a->n < TM_REPL_MAX_GAPS ? a->n : TM_REPL_MAX_GAPS;
        rr->gaps = calloc(ng ? ng : 1, sizeof(*rr->gaps));
        for (size_t i = 0; rr->gaps != NULL && i < ng; i++) {
            Tidemark__ReplicationGap *g = calloc(1, sizeof(*g));
            if (g == NULL) {
                break;
            }
            tidemark__replication_gap__init(g);
            g->kind = strdup(a->gaps[i].is_log ? "log" : "backup");
            g->item = a->gaps[i].item;
            g->detail = a->gaps[i].detail;
            a->gaps[i].item = a->gaps[i].detail = NULL; /* moved */
            g->problem = strdup(a->gaps[i].mismatch ? "mismatch" : "missing");
            g->has_item_time = 1;
            g->item_time = a->gaps[i].t;
            rr->gaps[rr->n_gaps++] = g;
        }
    }
    return rep;
}

static int add_problem(char ***v, size_t *n, tm_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int add_problem(char ***v, size_t *n, tm_err *err, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (nv == NULL || (nv[*n] = strdup(buf)) == NULL) {
        *v = nv != NULL ? nv : *v;
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    *v = nv;
    (*n)++;
    tm_warn("replication", "event=policy_problem msg=\"%s\"", buf);
    return TM_OK;
}

int tm_replication_check_task(tm_task_ctx *ctx, const Tidemark__Task *task,
                              Tidemark__TaskResult *result, tm_err *err)
{
    const Tidemark__ReplicationCheckSpec *spec = task->check;
    tm_repo_set *rs = NULL;
    int rc = tm_repo_set_open(&rs, tm_task_conf(ctx), 0, err);
    if (rc != TM_OK) {
        return rc;
    }
    size_t nrepo = tm_repo_set_count(rs);
    check c = {rs, calloc(nrepo ? nrepo : 1, sizeof(repo_acc)), 0};
    char **problems = NULL;
    size_t n_problems = 0;
    if (c.acc == NULL) {
        tm_repo_set_free(rs);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    for (size_t r = 0; r < nrepo; r++) {
        tm_err pe = {0};
        c.acc[r].required = spec->n_repositories == 0;
        c.acc[r].reachable = tm_repo_probe(tm_repo_set_storage(rs, r), &pe) == TM_OK;
        if (!c.acc[r].reachable) {
            snprintf(c.acc[r].error, sizeof(c.acc[r].error), "%s", pe.msg);
        }
    }
    for (size_t i = 0; rc == TM_OK && i < spec->n_repositories; i++) {
        int r = tm_repo_set_find(rs, spec->repositories[i]);
        if (r < 0) {
            rc = add_problem(&problems, &n_problems, err,
                             "policy requires repository '%.64s', which agent %s does not have "
                             "configured",
                             spec->repositories[i], tm_task_conf(ctx)->hostname);
        } else {
            c.acc[r].required = 1;
        }
    }
    /* Distinct regions among the required repositories (a repository
     * without a region counts as its own). */
    uint32_t regions = 0;
    for (size_t r = 0; r < nrepo; r++) {
        const char *reg = tm_repo_set_region(rs, r);
        int seen = !c.acc[r].required;
        for (size_t q = 0; q < r && !seen; q++) {
            const char *qreg = tm_repo_set_region(rs, q);
            seen = c.acc[q].required && reg != NULL && reg[0] && qreg != NULL &&
                   strcmp(reg, qreg) == 0;
        }
        regions += !seen;
    }
    if (rc == TM_OK && spec->has_min_regions && regions < spec->min_regions) {
        rc = add_problem(&problems, &n_problems, err,
                         "policy requires %u regions, the required repositories of agent %s "
                         "span %u",
                         spec->min_regions, tm_task_conf(ctx)->hostname, regions);
    }
    tm_task_progress(ctx, "backups", 0, 0, 0, 0);
    tm_verify_opts vo = {.target = task->target, .use_key = 0};
    tm_verify_summary sum;
    tm_err ve = {0};
    int vrc = rc == TM_OK ? tm_repo_verify(rs, &vo, on_verify, &c, &sum, &ve) : TM_OK;
    if (rc == TM_OK && vrc != TM_OK && vrc != TM_ECORRUPT) {
        /* Not one repository could be listed. */
        for (size_t r = 0; r < nrepo; r++) {
            c.acc[r].reachable = 0;
            snprintf(c.acc[r].error, sizeof(c.acc[r].error), "%s", ve.msg);
        }
    }
    if (rc == TM_OK && !tm_task_cancelled(ctx)) {
        tm_task_progress(ctx, "logs", 0, 0, 0, 0);
        check_logs(&c, task->target);
    }
    if (rc == TM_OK && c.oom) {
        rc = tm_err_set(err, TM_ENOMEM, "replication check: out of memory");
    }
    uint32_t missing = 0, mismatched = 0;
    for (size_t r = 0; r < nrepo; r++) {
        missing += c.acc[r].missing;
        mismatched += c.acc[r].mismatched;
    }
    result->replication = build_report(&c, regions, problems, n_problems);
    if (result->replication == NULL) {
        for (size_t i = 0; i < n_problems; i++) {
            free(problems[i]);
        }
        free(problems);
    }
    tm_info("replication",
            "event=checked target=%s repositories=%zu missing=%u mismatched=%u problems=%zu",
            task->target, nrepo, missing, mismatched, n_problems);
    for (size_t r = 0; r < nrepo; r++) {
        for (size_t i = 0; i < c.acc[r].n; i++) {
            free(c.acc[r].gaps[i].item);
            free(c.acc[r].gaps[i].detail);
        }
        free(c.acc[r].gaps);
    }
    free(c.acc);
    tm_repo_set_free(rs);
    /* Gaps are findings, not a failed task: the coordinator decides. */
    return rc;
}

int tm_replication_copy_task(tm_task_ctx *ctx, const Tidemark__Task *task,
                             Tidemark__TaskResult *result, tm_err *err)
{
    const Tidemark__CopySpec *spec = task->copy;
    if (spec == NULL || spec->source == NULL || spec->destination == NULL) {
        return tm_err_set(err, TM_EINVAL, "copy task without source and destination");
    }
    tm_repo_set *rs = NULL;
    int rc = tm_repo_set_open(&rs, tm_task_conf(ctx), 0, err);
    if (rc != TM_OK) {
        return rc;
    }
    int src = tm_repo_set_find(rs, spec->source);
    int dst = tm_repo_set_find(rs, spec->destination);
    if (src < 0 || dst < 0 || src == dst) {
        tm_repo_set_free(rs);
        return tm_err_set(err, TM_EINVAL,
                          "copy %s -> %s: both must be distinct repositories configured on this "
                          "agent",
                          spec->source, spec->destination);
    }
    tm_copy_stats st = {0};
    uint32_t copied = 0, failed = 0;
    size_t total = spec->n_backups + spec->n_logs;
    char first_err[TM_ERR_MSG_MAX] = "";
    for (size_t i = 0; i < total && !tm_task_cancelled(ctx); i++) {
        int is_log = i >= spec->n_backups;
        const char *item = is_log ? spec->logs[i - spec->n_backups] : spec->backups[i];
        tm_err e = {0};
        int irc =
            is_log ? tm_repo_copy_log(rs, (size_t)src, (size_t)dst, task->target, item, &st, &e)
                   : tm_repo_copy_backup(rs, (size_t)src, (size_t)dst, task->target, item, &st, &e);
        if (irc == TM_OK) {
            copied++;
            tm_info("replication", "event=copied target=%s %s=%s from=%s to=%s", task->target,
                    is_log ? "log" : "backup", item, spec->source, spec->destination);
        } else {
            failed++;
            tm_error("replication", "event=copy_failed target=%s %s=%s from=%s to=%s msg=\"%s\"",
                     task->target, is_log ? "log" : "backup", item, spec->source, spec->destination,
                     e.msg);
            if (first_err[0] == '\0') {
                snprintf(first_err, sizeof(first_err), "%s", e.msg);
            }
        }
        tm_task_progress(ctx, "copy", st.bytes, 0, (uint32_t)(i + 1), (uint32_t)total);
    }
    Tidemark__ReplicationReport *rep = calloc(1, sizeof(*rep));
    Tidemark__RepositoryReplication **v = calloc(1, sizeof(*v));
    Tidemark__RepositoryReplication *rr = calloc(1, sizeof(*rr));
    if (rep != NULL && v != NULL && rr != NULL) {
        tidemark__replication_report__init(rep);
        tidemark__repository_replication__init(rr);
        rr->repository = strdup(spec->destination);
        rr->has_copied = 1;
        rr->copied = copied;
        v[0] = rr;
        rep->repositories = v;
        rep->n_repositories = 1;
        result->replication = rep;
        result->has_stored_bytes = result->has_files = 1;
        result->stored_bytes = st.bytes;
        result->files = (uint32_t)st.objects;
    } else {
        free(rep);
        free(v);
        free(rr);
    }
    tm_repo_set_free(rs);
    if (failed > 0) {
        return tm_err_set(err, TM_EIO, "copied %u of %zu item(s) to %s; %u failed, first: %s",
                          copied, total, spec->destination, failed, first_err);
    }
    return TM_OK;
}
