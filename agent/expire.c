/*
 * expire.c - EXPIRE tasks (expire.h): dropped backups and old logs deleted
 * from every repository, manifest first, refusing to orphan a backup that
 * stays.
 */
#include "agent/expire.h"
#include "agent/repo/repo_log.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dropped(const Tidemark__ExpireSpec *spec, const char *id)
{
    for (size_t i = 0; id != NULL && i < spec->n_drop; i++) {
        if (spec->drop[i]->id != NULL && strcmp(spec->drop[i]->id, id) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Append a malloc'd copy of s to a repeated string field. */
static int push_str(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    if (nv == NULL) {
        return TM_ENOMEM;
    }
    *v = nv;
    if ((nv[*n] = strdup(s)) == NULL) {
        return TM_ENOMEM;
    }
    (*n)++;
    return TM_OK;
}

/* Delete every key under prefix (paginated listing). *count += deleted. */
static int delete_prefix(tm_storage *st, const char *prefix, uint64_t *count, tm_err *err)
{
    char *token = NULL;
    int rc = TM_OK;
    do {
        tm_storage_info *items = NULL;
        size_t n = 0;
        char *next = NULL;
        rc = tm_storage_list(st, prefix, token, 1000, &items, &n, &next, err);
        free(token);
        token = next;
        if (rc != TM_OK) {
            break;
        }
        const char **keys = malloc((n ? n : 1) * sizeof(*keys));
        if (keys == NULL) {
            tm_storage_infos_free(items, n);
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
            break;
        }
        for (size_t i = 0; i < n; i++) {
            keys[i] = items[i].key;
        }
        if (n > 0 && (rc = tm_storage_delete(st, keys, n, err)) == TM_OK) {
            *count += n;
        }
        free(keys);
        tm_storage_infos_free(items, n);
    } while (rc == TM_OK && token != NULL);
    free(token);
    return rc;
}

/* One dropped backup out of one repository: manifest, then the rest. */
static int delete_backup(tm_storage *st, const char *target, const char *id, uint64_t *count,
                         tm_err *err)
{
    char key[512];
    snprintf(key, sizeof(key), "%s/backup/%s/manifest", target, id);
    const char *k = key;
    int rc = tm_storage_delete(st, &k, 1, err);
    if (rc == TM_OK) {
        snprintf(key, sizeof(key), "%s/backup/%s/", target, id);
        rc = delete_prefix(st, key, count, err);
    }
    if (rc == TM_OK) {
        snprintf(key, sizeof(key), "%s/keys/%s/", target, id);
        rc = delete_prefix(st, key, count, err);
    }
    return rc;
}

/* The refusals of one repository: staying backups built on dropped ones. */
static int check_parents(tm_repo_set *rs, size_t r, const char *target,
                         const Tidemark__ExpireSpec *spec, const tm_backup_info *infos, size_t n,
                         Tidemark__ExpireResult *res, tm_err *err)
{
    const char *repo = tm_repo_set_name(rs, r);
    for (size_t i = 0; i < n; i++) {
        if (!infos[i].has_manifest || dropped(spec, infos[i].backup_id)) {
            continue;
        }
        tm_backup_reader *rd = NULL;
        tm_err oerr = {0};
        char msg[TM_ERR_MSG_MAX + 160];
        msg[0] = '\0';
        if (tm_backup_open(rs, target, infos[i].backup_id, repo, &rd, &oerr) != TM_OK) {
            snprintf(msg, sizeof(msg),
                     "%s in %s stays but its manifest cannot be read (%s): its parent is unknown",
                     infos[i].backup_id, repo, oerr.msg);
        } else {
            const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(rd));
            if (m->parent_backup_id != NULL && dropped(spec, m->parent_backup_id)) {
                snprintf(msg, sizeof(msg), "%s is the parent of %s, which stays (%s)",
                         m->parent_backup_id, infos[i].backup_id, repo);
            }
            tm_backup_reader_free(rd);
        }
        if (msg[0] && push_str(&res->refused, &res->n_refused, msg) != TM_OK) {
            return tm_err_set(err, TM_ENOMEM, "out of memory");
        }
    }
    return TM_OK;
}

/* Log files older than the cutoff out of one repository. */
static int expire_logs(tm_repo_set *rs, size_t r, const char *target, const tm_engine *engine,
                       const Tidemark__Manifest *cutoff, const Tidemark__ExpireSpec *spec,
                       Tidemark__ExpireRepoResult *rr, tm_err *err)
{
    tm_log_item *items = NULL;
    size_t n = 0;
    int rc = tm_log_scan(rs, r, target, &items, &n, err);
    tm_storage *st = tm_repo_set_storage(rs, r);
    for (size_t i = 0; rc == TM_OK && i < n; i++) {
        if (!engine->log_before(cutoff, spec, items[i].rel)) {
            if (rr->log_first_kept == NULL && strstr(items[i].rel, ".history") == NULL) {
                rr->log_first_kept = strdup(items[i].rel);
            }
            continue;
        }
        char meta[512], obj[512];
        snprintf(meta, sizeof(meta), "%s/log/%s%s", target, items[i].rel, TM_LOG_META_SUFFIX);
        snprintf(obj, sizeof(obj), "%s/log/%s", target, items[i].rel);
        const char *k1 = meta, *k2 = obj;
        if ((rc = tm_storage_delete(st, &k1, 1, err)) == TM_OK &&
            (rc = tm_storage_delete(st, &k2, 1, err)) == TM_OK) {
            rr->has_log_files = 1;
            rr->log_files++;
        }
    }
    tm_log_items_free(items, n);
    return rc;
}

int tm_expire_run(tm_repo_set *rs, const char *target, const tm_engine *engine,
                  const Tidemark__ExpireSpec *spec, tm_task_ctx *ctx, Tidemark__ExpireResult *res,
                  tm_err *err)
{
    size_t nrepo = tm_repo_set_count(rs);
    tm_backup_info **infos = calloc(nrepo + 1, sizeof(*infos));
    size_t *ninfos = calloc(nrepo + 1, sizeof(*ninfos));
    res->repositories = calloc(nrepo + 1, sizeof(*res->repositories));
    if (infos == NULL || ninfos == NULL || res->repositories == NULL) {
        free(infos);
        free(ninfos);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    int rc = TM_OK;
    for (size_t r = 0; r < nrepo && rc == TM_OK; r++) {
        Tidemark__ExpireRepoResult *rr = malloc(sizeof(*rr));
        if (rr == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
            break;
        }
        tidemark__expire_repo_result__init(rr);
        rr->repository = strdup(tm_repo_set_name(rs, r));
        res->repositories[res->n_repositories++] = rr;
        /* Every repository listed before anything is deleted anywhere. */
        rc = tm_repo_scan(rs, r, target, &infos[r], &ninfos[r], err);
    }
    /* Refuse before deleting: never orphan a backup that stays. */
    for (size_t r = 0; rc == TM_OK && spec->n_drop > 0 && r < nrepo; r++) {
        rc = check_parents(rs, r, target, spec, infos[r], ninfos[r], res, err);
    }
    if (rc == TM_OK && res->n_refused > 0) {
        rc = tm_err_set(err, TM_EINVAL, "retention refused: %s%s", res->refused[0],
                        res->n_refused > 1 ? " (and more, see the task result)" : "");
    }
    /* The cutoff backup's manifest: where its log starts. */
    tm_backup_reader *cut = NULL;
    const Tidemark__Manifest *cutoff = NULL;
    int do_logs = rc == TM_OK && engine != NULL && engine->log_before != NULL &&
                  spec->log_cutoff_id != NULL && spec->log_cutoff_id[0] != '\0';
    if (do_logs) {
        tm_err cerr = {0};
        if (tm_backup_open(rs, target, spec->log_cutoff_id, NULL, &cut, &cerr) == TM_OK) {
            cutoff = tm_manifest_proto(tm_backup_reader_manifest(cut));
        } else {
            tm_warn("expire", "event=cutoff_unreadable target=%s backup=%s msg=\"%s\"", target,
                    spec->log_cutoff_id, cerr.msg);
        }
    }
    int failed = 0;
    uint32_t done = 0, total = (uint32_t)(spec->n_drop * nrepo);
    for (size_t r = 0; rc == TM_OK && r < nrepo; r++) {
        Tidemark__ExpireRepoResult *rr = res->repositories[r];
        tm_storage *st = tm_repo_set_storage(rs, r);
        tm_err rerr = {0};
        int rrc = TM_OK;
        for (size_t i = 0; rrc == TM_OK && i < spec->n_drop; i++) {
            const char *id = spec->drop[i]->id;
            if (ctx != NULL && tm_task_cancelled(ctx)) {
                /* Stop between backups; a later run finishes (idempotent). */
                rc = tm_err_set(err, TM_EBUSY, "cancelled");
                break;
            }
            if (id == NULL || !tm_repo_valid_name(id)) {
                continue;
            }
            rrc = delete_backup(st, target, id, &rr->objects, &rerr);
            if (rrc == TM_OK) {
                rr->has_objects = 1;
                rrc = push_str(&rr->backups, &rr->n_backups, id);
            }
            if (ctx != NULL) {
                tm_task_progress(ctx, "expire", 0, 0, ++done, total);
            }
        }
        if (rc != TM_OK) {
            break;
        }
        if (rrc == TM_OK && do_logs) {
            rrc = expire_logs(rs, r, target, engine, cutoff, spec, rr, &rerr);
        }
        if (rrc != TM_OK) {
            failed++;
            tm_error("expire", "event=repository_failed target=%s repo=%s msg=\"%s\"", target,
                     rr->repository, rerr.msg);
            if (failed == 1) {
                tm_err_set(err, TM_EIO, "repository %s: %s", rr->repository, rerr.msg);
            }
        } else {
            tm_info("expire", "event=expired target=%s repo=%s backups=%zu objects=%llu logs=%u",
                    target, rr->repository, rr->n_backups, (unsigned long long)rr->objects,
                    rr->log_files);
        }
    }
    if (rc == TM_OK && failed > 0) {
        rc = TM_EIO; /* retryable: the next attempt finishes the job */
    }
    tm_backup_reader_free(cut);
    for (size_t r = 0; r < nrepo; r++) {
        tm_backup_infos_free(infos[r], ninfos[r]);
    }
    free(infos);
    free(ninfos);
    return rc;
}

/* Has id a manifest in any of the nrepo scans? */
static int complete_somewhere(tm_backup_info **infos, const size_t *ninfos, size_t nrepo,
                              const char *id)
{
    for (size_t r = 0; r < nrepo; r++) {
        for (size_t i = 0; i < ninfos[r]; i++) {
            if (infos[r][i].has_manifest && strcmp(infos[r][i].backup_id, id) == 0) {
                return 1;
            }
        }
    }
    return 0;
}

/* Append item to the "; "-separated report. */
static int report_add(char **out, size_t *len, size_t *cap, const char *item, tm_err *err)
{
    size_t k = strlen(item) + (*len ? 2 : 0);
    if (*len + k + 1 > *cap) {
        size_t ncap = (*len + k + 1) * 2;
        char *nb = realloc(*out, ncap);
        if (nb == NULL) {
            return tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        *out = nb;
        *cap = ncap;
    }
    snprintf(*out + *len, *cap - *len, "%s%s", *len ? "; " : "", item);
    *len += k;
    return TM_OK;
}

int tm_expire_sweep_partial(tm_repo_set *rs, const char *target, char **report, tm_err *err)
{
    *report = NULL;
    size_t nrepo = tm_repo_set_count(rs);
    tm_backup_info **infos = calloc(nrepo + 1, sizeof(*infos));
    size_t *ninfos = calloc(nrepo + 1, sizeof(*ninfos));
    if (infos == NULL || ninfos == NULL) {
        free(infos);
        free(ninfos);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    int rc = TM_OK;
    /* Every repository listed first: "no manifest anywhere" needs them all. */
    for (size_t r = 0; r < nrepo && rc == TM_OK; r++) {
        rc = tm_repo_scan(rs, r, target, &infos[r], &ninfos[r], err);
    }
    size_t cap = 0, len = 0;
    char *out = NULL;
    /* What writers killed mid-object left (the posix backend's temporaries),
     * first, so that the folders of a swept attempt can go too. A failure
     * here is logged, never the backup's failure. */
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "%s/", target);
    for (size_t r = 0; rc == TM_OK && r < nrepo; r++) {
        uint64_t removed = 0;
        tm_err terr = {0};
        if (tm_storage_sweep_temps(tm_repo_set_storage(rs, r), prefix, TM_EXPIRE_TEMP_AGE_S,
                                   &removed, &terr) != TM_OK) {
            tm_warn("expire", "event=sweep_temps_failed target=%s repo=%s msg=\"%s\"", target,
                    tm_repo_set_name(rs, r), terr.msg);
            continue;
        }
        if (removed > 0) {
            tm_warn("expire",
                    "event=swept_temps target=%s repo=%s files=%llu reason=\"temporary files "
                    "of a writer that died, untouched for %d s\"",
                    target, tm_repo_set_name(rs, r), (unsigned long long)removed,
                    TM_EXPIRE_TEMP_AGE_S);
            char item[512];
            snprintf(item, sizeof(item), "%llu abandoned temporary files in %s",
                     (unsigned long long)removed, tm_repo_set_name(rs, r));
            rc = report_add(&out, &len, &cap, item, err);
        }
    }
    for (size_t r = 0; rc == TM_OK && r < nrepo; r++) {
        for (size_t i = 0; rc == TM_OK && i < ninfos[r]; i++) {
            const char *id = infos[r][i].backup_id;
            if (infos[r][i].has_manifest || !tm_repo_valid_name(id) ||
                complete_somewhere(infos, ninfos, nrepo, id)) {
                continue;
            }
            uint64_t count = 0;
            tm_err derr = {0};
            if (delete_backup(tm_repo_set_storage(rs, r), target, id, &count, &derr) != TM_OK) {
                rc = tm_err_set(err, TM_EIO, "sweep %s in %s: %s", id, tm_repo_set_name(rs, r),
                                derr.msg);
                break;
            }
            tm_warn("expire",
                    "event=swept_partial target=%s repo=%s backup=%s objects=%llu "
                    "reason=\"no manifest in any repository: an attempt that never finished\"",
                    target, tm_repo_set_name(rs, r), id, (unsigned long long)count);
            char item[512];
            snprintf(item, sizeof(item), "%s in %s (%llu objects)", id, tm_repo_set_name(rs, r),
                     (unsigned long long)count);
            rc = report_add(&out, &len, &cap, item, err);
        }
    }
    for (size_t r = 0; r < nrepo; r++) {
        tm_backup_infos_free(infos[r], ninfos[r]);
    }
    free(infos);
    free(ninfos);
    *report = out;
    return rc;
}

int tm_expire_task(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                   tm_err *err)
{
    if (task->expire == NULL || task->target == NULL || !tm_repo_valid_name(task->target)) {
        return tm_err_set(err, TM_EINVAL, "expire task without a target or a spec");
    }
    tm_repo_set *rs = NULL;
    int rc = tm_repo_set_open(&rs, tm_task_conf(ctx), TM_REPO_KEYS, err);
    if (rc != TM_OK) {
        return rc;
    }
    result->expire = malloc(sizeof(*result->expire));
    if (result->expire == NULL) {
        tm_repo_set_free(rs);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tidemark__expire_result__init(result->expire);
    rc = tm_expire_run(rs, task->target, tm_engine_find(task->target_kind), task->expire, ctx,
                       result->expire, err);
    tm_repo_set_free(rs);
    return rc;
}
