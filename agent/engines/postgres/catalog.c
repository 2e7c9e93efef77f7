/*
 * catalog.c - the PostgreSQL backups of a target, as the repositories hold
 * them: what a restore chooses from and what an incremental builds on. The
 * repository is the source of truth, so this never asks the coordinator.
 */
#include "agent/engines/postgres/pg.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

const char *tm_pg_info(const Tidemark__Manifest *m, const char *key)
{
    for (size_t i = 0; i < m->n_engine_info; i++) {
        if (m->engine_info[i]->key != NULL && strcmp(m->engine_info[i]->key, key) == 0) {
            return m->engine_info[i]->value;
        }
    }
    return NULL;
}

static int backup_cmp(const void *a, const void *b)
{
    const tm_pg_backup *x = a, *y = b;
    if (x->start_time != y->start_time) {
        return x->start_time < y->start_time ? -1 : 1;
    }
    return strcmp(x->id, y->id);
}

int tm_pg_backups_list(tm_repo_set *rs, const char *target, tm_pg_backup **out, size_t *n,
                       tm_err *err)
{
    *out = NULL;
    *n = 0;
    /* Distinct ids with a manifest, and in how many repositories. */
    char **ids = NULL;
    size_t *counts = NULL, nids = 0, cap = 0, listed = 0;
    int rc = TM_OK;
    for (size_t r = 0; r < tm_repo_set_count(rs) && rc == TM_OK; r++) {
        tm_backup_info *infos = NULL;
        size_t ni = 0;
        tm_err e = {0};
        if (tm_repo_scan(rs, r, target, &infos, &ni, &e) != TM_OK) {
            tm_warn("postgres", "event=repo_list_failed repo=%s msg=\"%s\"",
                    tm_repo_set_name(rs, r), e.msg);
            continue;
        }
        listed++;
        for (size_t i = 0; i < ni && rc == TM_OK; i++) {
            if (!infos[i].has_manifest) {
                continue; /* interrupted or failing there: does not exist */
            }
            size_t k = 0;
            while (k < nids && strcmp(ids[k], infos[i].backup_id) != 0) {
                k++;
            }
            if (k == nids) {
                if (nids == cap) {
                    cap = cap ? cap * 2 : 16;
                    char **ni2 = realloc(ids, cap * sizeof(*ids));
                    size_t *nc = ni2 ? realloc(counts, cap * sizeof(*counts)) : NULL;
                    if (ni2 != NULL) {
                        ids = ni2;
                    }
                    if (nc == NULL) {
                        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
                        break;
                    }
                    counts = nc;
                }
                ids[nids] = strdup(infos[i].backup_id);
                counts[nids] = 0;
                if (ids[nids] == NULL) {
                    rc = tm_err_set(err, TM_ENOMEM, "out of memory");
                    break;
                }
                nids++;
            }
            counts[k]++;
        }
        tm_backup_infos_free(infos, ni);
    }
    if (rc == TM_OK && listed == 0) {
        rc = tm_err_set(err, TM_EUNAVAIL, "no repository could be listed for target %s", target);
    }
    tm_pg_backup *v = rc == TM_OK && nids ? calloc(nids, sizeof(*v)) : NULL;
    if (rc == TM_OK && nids && v == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    size_t nv = 0;
    for (size_t k = 0; rc == TM_OK && k < nids; k++) {
        tm_backup_reader *rd = NULL;
        tm_err e = {0};
        if (tm_backup_open(rs, target, ids[k], NULL, &rd, &e) != TM_OK) {
            if (e.code == TM_EAUTH) {
                /* A wrong master key is a configuration problem worth
                 * stopping for, not a backup to skip. */
                rc = tm_err_set(err, TM_EAUTH, "%s", e.msg);
                break;
            }
            tm_warn("postgres", "event=backup_unreadable backup=%s msg=\"%s\"", ids[k], e.msg);
            continue;
        }
        const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(rd));
        if (m->engine == NULL || strcmp(m->engine, "postgres") != 0) {
            tm_backup_reader_free(rd);
            continue;
        }
        tm_pg_backup *b = &v[nv];
        const char *s;
        b->id = strdup(ids[k]);
        b->kind = strdup(m->kind ? m->kind : "");
        b->parent =
            m->parent_backup_id && m->parent_backup_id[0] ? strdup(m->parent_backup_id) : NULL;
        if ((s = tm_pg_info(m, "start_lsn")) != NULL) {
            tm_pg_lsn_parse(s, &b->start_lsn);
        }
        if ((s = tm_pg_info(m, "stop_lsn")) != NULL) {
            tm_pg_lsn_parse(s, &b->stop_lsn);
        }
        b->start_time = (s = tm_pg_info(m, "start_time")) ? strtoll(s, NULL, 10) : 0;
        b->stop_time = (s = tm_pg_info(m, "stop_time")) ? strtoll(s, NULL, 10) : 0;
        b->timeline = (s = tm_pg_info(m, "timeline")) ? (uint32_t)strtoul(s, NULL, 10) : 0;
        b->repos = counts[k];
        b->everywhere = counts[k] == tm_repo_set_count(rs);
        nv++;
        tm_backup_reader_free(rd);
        if (b->id == NULL || b->kind == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
    }
    for (size_t k = 0; k < nids; k++) {
        free(ids[k]);
    }
    free(ids);
    free(counts);
    if (rc != TM_OK) {
        tm_pg_backups_free(v, nv);
        return rc;
    }
    if (nv > 1) {
        qsort(v, nv, sizeof(*v), backup_cmp);
    }
    *out = v;
    *n = nv;
    return TM_OK;
}

void tm_pg_backups_free(tm_pg_backup *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(b[i].id);
        free(b[i].kind);
        free(b[i].parent);
    }
    free(b);
}
