/*
 * catalog_tasks.c - tasks and backups in the catalog.
 *
 * Each row keeps the packed proto record, the whole truth, next to the
 * columns that queries filter and sort on. Tasks and backups change at human
 * rates (a few per target per hour), so statements are prepared per call.
 */
#include "coordinator/catalog_internal.h"
#include "common/names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tidemark.pb-c.h"

static int prepare(tm_catalog *c, sqlite3 *db, const char *sql, sqlite3_stmt **s, tm_err *err)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, s, NULL);
    return rc == SQLITE_OK ? TM_OK : tm_catalog_sql_fail(c, err, rc, "prepare");
}

static int bind_str(sqlite3_stmt *s, int i, const char *v)
{
    return sqlite3_bind_text(s, i, v != NULL ? v : "", -1, SQLITE_STATIC);
}

/* Run s (already bound) to completion, collecting column 0 blobs as
 * unpacked messages. */
static int collect(tm_catalog *c, sqlite3_stmt *s, const ProtobufCMessageDescriptor *d, void ***out,
                   size_t *n, tm_err *err)
{
    void **items = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(s, 0);
        size_t len = (size_t)sqlite3_column_bytes(s, 0);
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, blob);
        if (m == NULL) {
            continue; /* a record we cannot read is skipped, not fatal */
        }
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            void **ni = realloc(items, cap * sizeof(*ni));
            if (ni == NULL) {
                protobuf_c_message_free_unpacked(m, NULL);
                rc = SQLITE_NOMEM;
                break;
            }
            items = ni;
        }
        items[cnt++] = m;
    }
    if (rc != SQLITE_DONE) {
        int code = tm_catalog_sql_fail(c, err, rc, "read records");
        for (size_t i = 0; i < cnt; i++) {
            protobuf_c_message_free_unpacked(items[i], NULL);
        }
        free(items);
        return code;
    }
    *out = items;
    *n = cnt;
    return TM_OK;
}

int tm_catalog_query_records(tm_catalog *c, const char *sql, const char *a, const char *b,
                             int64_t i1, int64_t i2, const ProtobufCMessageDescriptor *d,
                             void ***out, size_t *n, tm_err *err)
{
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = prepare(c, db, sql, &s, err);
    if (rc == TM_OK) {
        bind_str(s, 1, a);
        bind_str(s, 2, b);
        sqlite3_bind_int64(s, 3, i1);
        sqlite3_bind_int64(s, 4, i2);
        rc = collect(c, s, d, out, n, err);
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    return rc;
}

int tm_catalog_task_put(tm_catalog *c, const Tidemark__Task *t, tm_err *err)
{
    if (t->id == NULL || t->target == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: task without id or target");
    }
    size_t len = tidemark__task__get_packed_size(t);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
    }
    tidemark__task__pack(t, buf);
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = prepare(c, db,
                     "INSERT INTO tasks(id, kind, target, state, agent_id, created_at, not_before, "
                     "lease_expires_at, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                     "ON CONFLICT(id) DO UPDATE SET state = excluded.state, agent_id = "
                     "excluded.agent_id, not_before = excluded.not_before, lease_expires_at = "
                     "excluded.lease_expires_at, record = excluded.record",
                     &s, err);
    if (rc == TM_OK) {
        bind_str(s, 1, t->id);
        sqlite3_bind_int(s, 2, t->kind);
        bind_str(s, 3, t->target);
        sqlite3_bind_int(s, 4, t->state);
        bind_str(s, 5, t->agent_id);
        sqlite3_bind_int64(s, 6, t->created_at);
        sqlite3_bind_int64(s, 7, t->not_before);
        sqlite3_bind_int64(s, 8, t->lease_expires_at);
        sqlite3_bind_blob(s, 9, buf, (int)len, SQLITE_STATIC);
        int src = sqlite3_step(s);
        if (src != SQLITE_DONE) {
            rc = tm_catalog_sql_fail(c, err, src, "write task");
        }
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    free(buf);
    return rc;
}

int tm_catalog_task_get(tm_catalog *c, const char *id, Tidemark__Task **out, tm_err *err)
{
    void **items = NULL;
    size_t n = 0;
    int rc = tm_catalog_query_records(
        c, "SELECT record FROM tasks WHERE id = ?1 AND ?2 = ?2 AND ?3 = ?4", id, "", 0, 0,
        &tidemark__task__descriptor, &items, &n, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (n == 0) {
        free(items);
        return tm_err_set(err, TM_ENOENT, "no task %s", id);
    }
    *out = items[0];
    for (size_t i = 1; i < n; i++) {
        protobuf_c_message_free_unpacked(items[i], NULL);
    }
    free(items);
    return TM_OK;
}

int tm_catalog_task_list(tm_catalog *c, const char *target, int open_only, size_t limit,
                         Tidemark__Task ***out, size_t *n, tm_err *err)
{
    /* ?1 target ('' = all), ?3 open_only, ?4 limit (0 = all). */
    return tm_catalog_query_records(
        c,
        "SELECT record FROM tasks WHERE (?1 = '' OR target = ?1) AND ?2 = ?2 "
        "AND (?3 = 0 OR state IN (1, 2)) ORDER BY created_at DESC, rowid DESC "
        "LIMIT CASE WHEN ?4 = 0 THEN -1 ELSE ?4 END",
        target, "", open_only, (int64_t)limit, &tidemark__task__descriptor, (void ***)out, n, err);
}

int tm_catalog_task_queued(tm_catalog *c, const char *agent_id, int64_t now_ms,
                           Tidemark__Task ***out, size_t *n, tm_err *err)
{
    return tm_catalog_query_records(
        c,
        "SELECT record FROM tasks WHERE state = 1 AND agent_id = ?1 AND ?2 = ?2 "
        "AND not_before <= ?3 AND ?4 = ?4 ORDER BY created_at, rowid",
        agent_id, "", now_ms, 0, &tidemark__task__descriptor, (void ***)out, n, err);
}

int tm_catalog_task_expired(tm_catalog *c, int64_t now_ms, Tidemark__Task ***out, size_t *n,
                            tm_err *err)
{
    return tm_catalog_query_records(
        c,
        "SELECT record FROM tasks WHERE state = 2 AND lease_expires_at < ?3 "
        "AND ?1 = ?1 AND ?2 = ?2 AND ?4 = ?4",
        "", "", now_ms, 0, &tidemark__task__descriptor, (void ***)out, n, err);
}

int tm_catalog_task_count(tm_catalog *c, const char *target, int kind, int state, int64_t *n,
                          tm_err *err)
{
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc =
        prepare(c, db, "SELECT COUNT(*) FROM tasks WHERE target = ?1 AND kind = ?2 AND state = ?3",
                &s, err);
    if (rc == TM_OK) {
        bind_str(s, 1, target);
        sqlite3_bind_int(s, 2, kind);
        sqlite3_bind_int(s, 3, state);
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW) {
            *n = sqlite3_column_int64(s, 0);
        } else {
            rc = tm_catalog_sql_fail(c, err, src, "count tasks");
        }
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    return rc;
}

int tm_catalog_task_counts(tm_catalog *c, int64_t counts[TM_TASK_STATES], tm_err *err)
{
    memset(counts, 0, TM_TASK_STATES * sizeof(int64_t));
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = prepare(c, db, "SELECT state, COUNT(*) FROM tasks GROUP BY state", &s, err);
    if (rc == TM_OK) {
        int src;
        while ((src = sqlite3_step(s)) == SQLITE_ROW) {
            int st = sqlite3_column_int(s, 0);
            if (st >= 0 && st < TM_TASK_STATES) {
                counts[st] = sqlite3_column_int64(s, 1);
            }
        }
        if (src != SQLITE_DONE) {
            rc = tm_catalog_sql_fail(c, err, src, "count tasks");
        }
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    return rc;
}

/* Tasks that ended in state, per target and kind (backups by type). */
static int task_state_counts(tm_catalog *c, int state, tm_failure_count **out, size_t *n,
                             tm_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    tm_failure_count *items = NULL;
    size_t cnt = 0, cap = 0;
    int rc = prepare(
        c, db, "SELECT target, kind, record FROM tasks WHERE state = ?1 ORDER BY target", &s, err);
    int src = SQLITE_DONE;
    if (rc == TM_OK) {
        sqlite3_bind_int(s, 1, state);
    }
    while (rc == TM_OK && (src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *target = (const char *)sqlite3_column_text(s, 0);
        int kind = sqlite3_column_int(s, 1);
        const char *kn = tm_task_kind_name(kind);
        if (kind == TIDEMARK__TASK_KIND__BACKUP) {
            Tidemark__Task *t = tidemark__task__unpack(NULL, (size_t)sqlite3_column_bytes(s, 2),
                                                       sqlite3_column_blob(s, 2));
            kn = t != NULL ? tm_backup_type_name(t->backup_type) : NULL;
            tidemark__task__free_unpacked(t, NULL);
        }
        if (kn == NULL) {
            kn = "unknown";
        }
        size_t i = 0;
        while (i < cnt &&
               !(strcmp(items[i].target, target) == 0 && strcmp(items[i].kind, kn) == 0)) {
            i++;
        }
        if (i == cnt) {
            if (cnt == cap) {
                cap = cap ? cap * 2 : 16;
                tm_failure_count *ni = realloc(items, cap * sizeof(*ni));
                if (ni == NULL) {
                    rc = tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
                    break;
                }
                items = ni;
            }
            memset(&items[cnt], 0, sizeof(items[cnt]));
            snprintf(items[cnt].target, sizeof(items[cnt].target), "%s", target);
            snprintf(items[cnt].kind, sizeof(items[cnt].kind), "%s", kn);
            cnt++;
        }
        items[i].n++;
    }
    if (rc == TM_OK && src != SQLITE_DONE) {
        rc = tm_catalog_sql_fail(c, err, src, "count tasks by target and kind");
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    if (rc != TM_OK) {
        free(items);
        return rc;
    }
    *out = items;
    *n = cnt;
    return TM_OK;
}

int tm_catalog_task_failures(tm_catalog *c, tm_failure_count **out, size_t *n, tm_err *err)
{
    return task_state_counts(c, TIDEMARK__TASK_STATE__TASK_FAILED, out, n, err);
}

int tm_catalog_task_partials(tm_catalog *c, tm_failure_count **out, size_t *n, tm_err *err)
{
    return task_state_counts(c, TIDEMARK__TASK_STATE__TASK_PARTIAL, out, n, err);
}

void tm_catalog_tasks_free(Tidemark__Task **t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tidemark__task__free_unpacked(t[i], NULL);
    }
    free(t);
}

int tm_catalog_backup_put(tm_catalog *c, const Tidemark__BackupInfo *b, tm_err *err)
{
    if (b->id == NULL || b->target == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: backup without id or target");
    }
    size_t len = tidemark__backup_info__get_packed_size(b);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
    }
    tidemark__backup_info__pack(b, buf);
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = prepare(c, db,
                     "INSERT INTO backups(target, id, type, finished_at, keep, record, partial, "
                     "missing) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(target, id) "
                     "DO UPDATE SET type = excluded.type, finished_at = excluded.finished_at, "
                     "keep = excluded.keep, record = excluded.record, partial = "
                     "excluded.partial, missing = excluded.missing",
                     &s, err);
    char missing[1024] = "";
    for (size_t i = 0; i < b->n_missing_repositories; i++) {
        size_t l = strlen(missing);
        snprintf(missing + l, sizeof(missing) - l, "%s%s", l ? "," : "",
                 b->missing_repositories[i]);
    }
    if (rc == TM_OK) {
        bind_str(s, 1, b->target);
        bind_str(s, 2, b->id);
        sqlite3_bind_int(s, 3, b->type);
        sqlite3_bind_int64(s, 4, b->finished_at);
        sqlite3_bind_int(s, 5, b->keep ? 1 : 0);
        sqlite3_bind_blob(s, 6, buf, (int)len, SQLITE_STATIC);
        sqlite3_bind_int(s, 7, b->partial ? 1 : 0);
        bind_str(s, 8, missing);
        int src = sqlite3_step(s);
        if (src != SQLITE_DONE) {
            rc = tm_catalog_sql_fail(c, err, src, "write backup");
        }
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    free(buf);
    return rc;
}

int tm_catalog_backup_get(tm_catalog *c, const char *target, const char *id,
                          Tidemark__BackupInfo **out, tm_err *err)
{
    void **items = NULL;
    size_t n = 0;
    int rc = tm_catalog_query_records(
        c,
        "SELECT record FROM backups WHERE (?1 = '' OR target = ?1) AND id = ?2 "
        "AND ?3 = ?4 ORDER BY target",
        target, id, 0, 0, &tidemark__backup_info__descriptor, &items, &n, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (n != 1) {
        for (size_t i = 0; i < n; i++) {
            protobuf_c_message_free_unpacked(items[i], NULL);
        }
        free(items);
        return n == 0 ? tm_err_set(err, TM_ENOENT, "no backup %s", id)
                      : tm_err_set(err, TM_EINVAL,
                                   "backup id %s exists for %zu targets; give "
                                   "the target too",
                                   id, n);
    }
    *out = items[0];
    free(items);
    return TM_OK;
}

int tm_catalog_backup_list(tm_catalog *c, const char *target, Tidemark__BackupInfo ***out,
                           size_t *n, tm_err *err)
{
    return tm_catalog_query_records(
        c,
        "SELECT record FROM backups WHERE (?1 = '' OR target = ?1) AND ?2 = ?2 "
        "AND ?3 = ?4 ORDER BY finished_at, id",
        target, "", 0, 0, &tidemark__backup_info__descriptor, (void ***)out, n, err);
}

int tm_catalog_backup_partial_list(tm_catalog *c, const char *target, Tidemark__BackupInfo ***out,
                                   size_t *n, tm_err *err)
{
    return tm_catalog_query_records(
        c,
        "SELECT record FROM backups WHERE partial = 1 AND (?1 = '' OR target = ?1) AND ?2 = ?2 "
        "AND ?3 = ?4 ORDER BY finished_at, id",
        target, "", 0, 0, &tidemark__backup_info__descriptor, (void ***)out, n, err);
}

void tm_catalog_backups_free(Tidemark__BackupInfo **b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tidemark__backup_info__free_unpacked(b[i], NULL);
    }
    free(b);
}

static int target_repo_add(tm_target_repo **items, size_t *cnt, size_t *cap, const char *target,
                           const char *repo)
{
    if (*cnt == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        tm_target_repo *ni = realloc(*items, *cap * sizeof(*ni));
        if (ni == NULL) {
            return TM_ENOMEM;
        }
        *items = ni;
    }
    snprintf((*items)[*cnt].target, sizeof((*items)[0].target), "%s", target);
    snprintf((*items)[*cnt].repository, sizeof((*items)[0].repository), "%s", repo);
    (*cnt)++;
    return TM_OK;
}

static int target_repo_cmp(const void *a, const void *b)
{
    const tm_target_repo *x = a, *y = b;
    int c = strcmp(x->target, y->target);
    return c != 0 ? c : strcmp(x->repository, y->repository);
}

int tm_catalog_target_repos(tm_catalog *c, tm_target_repo **out, size_t *n, tm_err *err)
{
    static const char *sql = "SELECT target, NULL, record FROM backups b WHERE finished_at = "
                             "  (SELECT MAX(finished_at) FROM backups WHERE target = b.target) "
                             "UNION ALL SELECT target, repository, NULL FROM log_status";
    *out = NULL;
    *n = 0;
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    tm_target_repo *items = NULL;
    size_t cnt = 0, cap = 0;
    int rc = prepare(c, db, sql, &s, err);
    int src = SQLITE_DONE;
    while (rc == TM_OK && (src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *target = (const char *)sqlite3_column_text(s, 0);
        if (sqlite3_column_type(s, 1) == SQLITE_TEXT) {
            rc = target_repo_add(&items, &cnt, &cap, target,
                                 (const char *)sqlite3_column_text(s, 1));
            continue;
        }
        Tidemark__BackupInfo *b = tidemark__backup_info__unpack(
            NULL, (size_t)sqlite3_column_bytes(s, 2), sqlite3_column_blob(s, 2));
        for (size_t i = 0; b != NULL && rc == TM_OK && i < b->n_repositories; i++) {
            rc = target_repo_add(&items, &cnt, &cap, target, b->repositories[i]);
        }
        tidemark__backup_info__free_unpacked(b, NULL);
    }
    if (rc == TM_ENOMEM) {
        tm_err_set(err, rc, "catalog: out of memory");
    } else if (rc == TM_OK && src != SQLITE_DONE) {
        rc = tm_catalog_sql_fail(c, err, src, "read target repositories");
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    if (rc != TM_OK) {
        free(items);
        return rc;
    }
    /* Sorted, then duplicates (a repository of both the newest backup and
     * the log shipping) dropped in one pass. */
    if (cnt > 1) {
        qsort(items, cnt, sizeof(*items), target_repo_cmp);
        size_t u = 1;
        for (size_t i = 1; i < cnt; i++) {
            if (target_repo_cmp(&items[i], &items[u - 1]) != 0) {
                items[u++] = items[i];
            }
        }
        cnt = u;
    }
    *out = items;
    *n = cnt;
    return TM_OK;
}

int tm_catalog_target_owner(tm_catalog *c, const char *target, char **agent_id, int *kind,
                            tm_err *err)
{
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = prepare(c, db, "SELECT agent_id, kind FROM targets WHERE name = ?1", &s, err);
    if (rc == TM_OK) {
        bind_str(s, 1, target);
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW) {
            *agent_id = strdup((const char *)sqlite3_column_text(s, 0));
            *kind = sqlite3_column_int(s, 1);
            if (*agent_id == NULL) {
                rc = tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
            }
        } else if (src == SQLITE_DONE) {
            rc = tm_err_set(err, TM_ENOENT, "no target named '%s' (see tidemarkctl agents list)",
                            target);
        } else {
            rc = tm_catalog_sql_fail(c, err, src, "find target");
        }
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    return rc;
}

int tm_catalog_log_replace(tm_catalog *c, const char *target, const char *repository,
                           Tidemark__LogRange *const *ranges, size_t n, uint32_t queue_depth,
                           int64_t now, tm_err *err)
{
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *del = NULL, *ins = NULL, *st = NULL;
    int rc = TM_OK, src;
    if ((src = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK) {
        rc = tm_catalog_sql_fail(c, err, src, "begin");
        tm_catalog_unlock(c);
        return rc;
    }
    rc = prepare(c, db, "DELETE FROM log_ranges WHERE target = ?1 AND repository = ?2", &del, err);
    if (rc == TM_OK) {
        bind_str(del, 1, target);
        bind_str(del, 2, repository);
        if ((src = sqlite3_step(del)) != SQLITE_DONE) {
            rc = tm_catalog_sql_fail(c, err, src, "replace log ranges");
        }
    }
    if (rc == TM_OK) {
        rc = prepare(c, db,
                     "INSERT OR REPLACE INTO log_ranges(target, repository, chain, first, last, "
                     "last_time, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                     &ins, err);
    }
    for (size_t i = 0; i < n && rc == TM_OK; i++) {
        const Tidemark__LogRange *r = ranges[i];
        size_t len = tidemark__log_range__get_packed_size(r);
        uint8_t *buf = malloc(len ? len : 1);
        if (buf == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
            break;
        }
        tidemark__log_range__pack(r, buf);
        sqlite3_reset(ins);
        bind_str(ins, 1, target);
        bind_str(ins, 2, repository);
        sqlite3_bind_int(ins, 3, (int)r->timeline);
        bind_str(ins, 4, r->first);
        bind_str(ins, 5, r->last);
        sqlite3_bind_int64(ins, 6, r->last_time);
        sqlite3_bind_blob(ins, 7, buf, (int)len, SQLITE_TRANSIENT);
        free(buf);
        if ((src = sqlite3_step(ins)) != SQLITE_DONE) {
            rc = tm_catalog_sql_fail(c, err, src, "insert log range");
        }
    }
    if (rc == TM_OK) {
        rc = prepare(c, db,
                     "INSERT OR REPLACE INTO log_status(target, repository, queue_depth, "
                     "reported_at) VALUES (?1, ?2, ?3, ?4)",
                     &st, err);
        if (rc == TM_OK) {
            bind_str(st, 1, target);
            bind_str(st, 2, repository);
            sqlite3_bind_int(st, 3, (int)queue_depth);
            sqlite3_bind_int64(st, 4, now);
            if ((src = sqlite3_step(st)) != SQLITE_DONE) {
                rc = tm_catalog_sql_fail(c, err, src, "write log status");
            }
        }
    }
    if (rc == TM_OK && (src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK) {
        rc = tm_catalog_sql_fail(c, err, src, "commit");
    }
    if (rc != TM_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    sqlite3_finalize(st);
    tm_catalog_unlock(c);
    return rc;
}

int tm_catalog_log_list(tm_catalog *c, const char *target, Tidemark__LogRange ***out, size_t *n,
                        tm_err *err)
{
    return tm_catalog_query_records(
        c,
        "SELECT record FROM log_ranges WHERE target = ?1 AND ?2 = ?2 AND ?3 = ?4 "
        "ORDER BY repository, chain, first",
        target, "", 0, 0, &tidemark__log_range__descriptor, (void ***)out, n, err);
}

int tm_catalog_log_queue(tm_catalog *c, const char *target, uint32_t *depth, tm_err *err)
{
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = prepare(
        c, db, "SELECT COALESCE(MAX(queue_depth), 0) FROM log_status WHERE target = ?1", &s, err);
    if (rc == TM_OK) {
        bind_str(s, 1, target);
        int src = sqlite3_step(s);
        if (src == SQLITE_ROW) {
            *depth = (uint32_t)sqlite3_column_int(s, 0);
        } else {
            rc = tm_catalog_sql_fail(c, err, src, "read log status");
        }
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    return rc;
}

void tm_catalog_log_free(Tidemark__LogRange **r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tidemark__log_range__free_unpacked(r[i], NULL);
    }
    free(r);
}

int tm_catalog_freshness(tm_catalog *c, tm_freshness **out, size_t *n, tm_err *err)
{
    /* One row per (target, kind): newest successful backup of each type,
     * and (type -1) the newest archived log point. */
    static const char *sql =
        "SELECT target, type, MAX(finished_at), "
        "  (SELECT b2.record FROM backups b2 WHERE b2.target = b.target AND b2.type = b.type "
        "   ORDER BY b2.finished_at DESC LIMIT 1) "
        "FROM backups b GROUP BY target, type "
        "UNION ALL SELECT target, -1, MAX(last_time), NULL FROM log_ranges GROUP BY target "
        "ORDER BY 1, 2";
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    tm_freshness *items = NULL;
    size_t cnt = 0, cap = 0;
    int rc = prepare(c, db, sql, &s, err);
    if (rc == TM_OK) {
        int src;
        while ((src = sqlite3_step(s)) == SQLITE_ROW) {
            if (cnt == cap) {
                cap = cap ? cap * 2 : 16;
                tm_freshness *ni = realloc(items, cap * sizeof(*ni));
                if (ni == NULL) {
                    rc = tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
                    break;
                }
                items = ni;
            }
            tm_freshness *f = &items[cnt];
            memset(f, 0, sizeof(*f));
            snprintf(f->target, sizeof(f->target), "%s", (const char *)sqlite3_column_text(s, 0));
            f->type = sqlite3_column_int(s, 1);
            f->last = sqlite3_column_int64(s, 2);
            if (sqlite3_column_type(s, 3) == SQLITE_BLOB) {
                Tidemark__BackupInfo *b = tidemark__backup_info__unpack(
                    NULL, (size_t)sqlite3_column_bytes(s, 3), sqlite3_column_blob(s, 3));
                if (b != NULL) {
                    f->bytes = b->bytes;
                    f->stored_bytes = b->stored_bytes;
                    f->duration_s = b->finished_at > b->started_at && b->started_at > 0
                                        ? b->finished_at - b->started_at
                                        : 0;
                    tidemark__backup_info__free_unpacked(b, NULL);
                }
            }
            cnt++;
        }
        if (rc == TM_OK && src != SQLITE_DONE) {
            rc = tm_catalog_sql_fail(c, err, src, "read freshness");
        }
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    if (rc != TM_OK) {
        free(items);
        return rc;
    }
    *out = items;
    *n = cnt;
    return TM_OK;
}
