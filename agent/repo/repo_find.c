/*
 * repo_find.c - a target's backups across the repository set (repo_find.h).
 */
#include "agent/repo/repo_find.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static int id_desc(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

void tm_repo_ids_free(char **ids, size_t n)
{
    for (size_t i = 0; ids != NULL && i < n; i++) {
        free(ids[i]);
    }
    free(ids);
}

/* Add each id of infos with a manifest that ids does not hold yet. */
static int add_ids(char ***ids, size_t *n, const tm_backup_info *infos, size_t ni, tm_err *err)
{
    char **nv = realloc(*ids, (*n + ni + 1) * sizeof(**ids));
    if (nv == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    *ids = nv;
    for (size_t i = 0; i < ni; i++) {
        int have = !infos[i].has_manifest; /* interrupted there: does not exist */
        for (size_t k = 0; k < *n && !have; k++) {
            have = strcmp(nv[k], infos[i].backup_id) == 0;
        }
        if (have) {
            continue;
        }
        if ((nv[*n] = strdup(infos[i].backup_id)) == NULL) {
            return tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        (*n)++;
    }
    return TM_OK;
}

int tm_repo_backup_ids(tm_repo_set *rs, const char *target, char ***ids, size_t *n, tm_err *err)
{
    *ids = NULL;
    *n = 0;
    size_t listed = 0;
    int rc = TM_OK;
    for (size_t r = 0; r < tm_repo_set_count(rs) && rc == TM_OK; r++) {
        tm_backup_info *infos = NULL;
        size_t ni = 0;
        tm_err e = {0};
        if (tm_repo_scan(rs, r, target, &infos, &ni, &e) != TM_OK) {
            tm_warn("repo", "event=repo_list_failed repo=%s target=%s msg=\"%s\"",
                    tm_repo_set_name(rs, r), target, e.msg);
            continue;
        }
        listed++;
        rc = add_ids(ids, n, infos, ni, err);
        tm_backup_infos_free(infos, ni);
    }
    if (rc == TM_OK && listed == 0) {
        rc = tm_err_set(err, TM_EUNAVAIL, "no repository could be listed for target %s", target);
    }
    if (rc != TM_OK) {
        tm_repo_ids_free(*ids, *n);
        *ids = NULL;
        *n = 0;
        return rc;
    }
    if (*n > 1) {
        qsort(*ids, *n, sizeof(**ids), id_desc);
    }
    return TM_OK;
}

int tm_repo_find_backup(tm_repo_set *rs, const char *target, const char *engine,
                        int (*want)(void *arg, const Tidemark__Manifest *m), void *arg,
                        tm_backup_reader **out, tm_err *err)
{
    *out = NULL;
    char **ids = NULL;
    size_t n = 0;
    int rc = tm_repo_backup_ids(rs, target, &ids, &n, err);
    for (size_t k = 0; rc == TM_OK && *out == NULL && k < n; k++) {
        tm_err e = {0};
        tm_backup_reader *rd = NULL;
        if (tm_backup_open(rs, target, ids[k], NULL, &rd, &e) != TM_OK) {
            if (e.code == TM_EAUTH) {
                rc = tm_err_set(err, TM_EAUTH, "%s", e.msg);
                break;
            }
            tm_warn("repo", "event=backup_unreadable target=%s backup=%s msg=\"%s\"", target,
                    ids[k], e.msg);
            continue;
        }
        const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(rd));
        if (m->engine != NULL && strcmp(m->engine, engine) == 0 && (want == NULL || want(arg, m))) {
            *out = rd;
        } else {
            tm_backup_reader_free(rd);
        }
    }
    tm_repo_ids_free(ids, n);
    if (rc == TM_OK && *out == NULL) {
        rc = tm_err_set(err, TM_ENOENT, "no %s backup of target %s in any repository", engine,
                        target);
    }
    return rc;
}
