/*
 * catalog_drills.c - restore drill results (table drills, migration 7).
 * A drill finishes at most a few times a month per target: statements are
 * prepared per call.
 */
#include "coordinator/catalog_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tidemark.pb-c.h"

int tm_catalog_drill_put(tm_catalog *c, const Tidemark__DrillInfo *d, tm_err *err)
{
    if (d->task_id == NULL || d->target == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: drill without task or target");
    }
    size_t len = tidemark__drill_info__get_packed_size(d);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
    }
    tidemark__drill_info__pack(d, buf);
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(
        db,
        "INSERT INTO drills(target, task_id, agent_id, backup_id, finished_at, ok, rto_ms, rpo_ms, "
        "record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(task_id) DO UPDATE SET "
        "agent_id = excluded.agent_id, backup_id = excluded.backup_id, finished_at = "
        "excluded.finished_at, ok = excluded.ok, rto_ms = excluded.rto_ms, rpo_ms = "
        "excluded.rpo_ms, record = excluded.record",
        -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, d->target, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, d->task_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, d->agent_id ? d->agent_id : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, d->backup_id ? d->backup_id : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 5, d->finished_at_ms);
        sqlite3_bind_int(s, 6, d->ok ? 1 : 0);
        if (d->has_rto_ms) {
            sqlite3_bind_int64(s, 7, (sqlite3_int64)d->rto_ms);
        }
        if (d->has_rpo_ms) {
            sqlite3_bind_int64(s, 8, d->rpo_ms);
        }
        sqlite3_bind_blob(s, 9, buf, (int)len, SQLITE_STATIC);
        rc = sqlite3_step(s);
    }
    int code = rc == SQLITE_DONE ? TM_OK : tm_catalog_sql_fail(c, err, rc, "record drill");
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    free(buf);
    return code;
}

int tm_catalog_drill_list(tm_catalog *c, const char *target, size_t limit,
                          Tidemark__DrillInfo ***out, size_t *n, tm_err *err)
{
    *out = NULL;
    *n = 0;
    return tm_catalog_query_records(
        c,
        "SELECT record FROM drills WHERE (?1 = '' OR target = ?1) AND ?2 = ?2 AND ?3 = ?3 "
        "ORDER BY finished_at DESC, id DESC LIMIT ?4",
        target, NULL, 0, limit ? (int64_t)limit : 100, &tidemark__drill_info__descriptor,
        (void ***)out, n, err);
}

int tm_catalog_drill_latest(tm_catalog *c, Tidemark__DrillInfo ***out, size_t *n, tm_err *err)
{
    *out = NULL;
    *n = 0;
    return tm_catalog_query_records(
        c,
        "SELECT d.record FROM drills d WHERE ?1 = ?1 AND ?2 = ?2 AND ?3 = ?4 AND d.id = "
        "(SELECT d2.id FROM drills d2 WHERE d2.target = d.target ORDER BY d2.finished_at DESC, "
        "d2.id DESC LIMIT 1) ORDER BY d.target",
        NULL, NULL, 0, 0, &tidemark__drill_info__descriptor, (void ***)out, n, err);
}

void tm_catalog_drills_free(Tidemark__DrillInfo **d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tidemark__drill_info__free_unpacked(d[i], NULL);
    }
    free(d);
}

int tm_catalog_drill_stats(tm_catalog *c, tm_drill_success **out, size_t *n, int64_t *ok_total,
                           int64_t *failed_total, tm_err *err)
{
    *out = NULL;
    *n = 0;
    *ok_total = *failed_total = 0;
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    tm_drill_success *rows = NULL;
    size_t cnt = 0, cap = 0;
    int code = TM_OK;
    int rc = sqlite3_prepare_v2(
        db, "SELECT target, MAX(finished_at) FROM drills WHERE ok = 1 GROUP BY target", -1, &s,
        NULL);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
            break;
        }
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            tm_drill_success *nr = realloc(rows, cap * sizeof(*nr));
            if (nr == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            rows = nr;
        }
        snprintf(rows[cnt].target, sizeof(rows[cnt].target), "%s",
                 (const char *)sqlite3_column_text(s, 0));
        rows[cnt++].finished_ms = sqlite3_column_int64(s, 1);
    }
    if (rc != SQLITE_DONE) {
        code = tm_catalog_sql_fail(c, err, rc, "read drill stats");
    }
    sqlite3_finalize(s);
    s = NULL;
    if (code == TM_OK) {
        rc = sqlite3_prepare_v2(db, "SELECT ok, COUNT(*) FROM drills GROUP BY ok", -1, &s, NULL);
        while (rc == SQLITE_OK || rc == SQLITE_ROW) {
            if ((rc = sqlite3_step(s)) != SQLITE_ROW) {
                break;
            }
            *(sqlite3_column_int(s, 0) ? ok_total : failed_total) = sqlite3_column_int64(s, 1);
        }
        if (rc != SQLITE_DONE) {
            code = tm_catalog_sql_fail(c, err, rc, "read drill stats");
        }
        sqlite3_finalize(s);
    }
    tm_catalog_unlock(c);
    if (code != TM_OK) {
        free(rows);
        return code;
    }
    *out = rows;
    *n = cnt;
    return TM_OK;
}
