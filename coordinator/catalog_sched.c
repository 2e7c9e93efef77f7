/*
 * catalog_sched.c - the scheduler's persisted state and the alert
 * notification log. Both change at human rates (a fire time per job per
 * run, a notification per alert change), so statements are prepared per
 * call.
 */
#include "coordinator/catalog_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tm_catalog_sched_list(tm_catalog *c, tm_sched_row **out, size_t *n, tm_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    tm_sched_row *rows = NULL;
    size_t cnt = 0, cap = 0;
    int rc =
        sqlite3_prepare_v2(db, "SELECT target, kind, last_fire FROM sched_state", -1, &s, NULL);
    int code = TM_OK;
    if (rc != SQLITE_OK) {
        code = tm_catalog_sql_fail(c, err, rc, "read scheduler state");
    }
    while (code == TM_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 32;
            tm_sched_row *nr = realloc(rows, cap * sizeof(*nr));
            if (nr == NULL) {
                code = tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
                break;
            }
            rows = nr;
        }
        snprintf(rows[cnt].target, sizeof(rows[cnt].target), "%s",
                 (const char *)sqlite3_column_text(s, 0));
        snprintf(rows[cnt].kind, sizeof(rows[cnt].kind), "%s",
                 (const char *)sqlite3_column_text(s, 1));
        rows[cnt].last_fire = sqlite3_column_int64(s, 2);
        cnt++;
    }
    if (code == TM_OK && rc != SQLITE_DONE) {
        code = tm_catalog_sql_fail(c, err, rc, "read scheduler state");
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    if (code != TM_OK) {
        free(rows);
        return code;
    }
    *out = rows;
    *n = cnt;
    return TM_OK;
}

int tm_catalog_sched_put(tm_catalog *c, const char *target, const char *kind, int64_t last_fire,
                         tm_err *err)
{
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO sched_state(target, kind, last_fire) VALUES (?1, ?2, "
                                "?3) ON CONFLICT(target, kind) DO UPDATE SET last_fire = ?3",
                                -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, target, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, kind, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, last_fire);
        rc = sqlite3_step(s);
    }
    int code = rc == SQLITE_DONE ? TM_OK : tm_catalog_sql_fail(c, err, rc, "save scheduler state");
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    return code;
}

int tm_catalog_alert_notification_add(tm_catalog *c, int64_t at_ms, const char *rule,
                                      const char *target, const char *status, const char *sink,
                                      int ok, const char *error, tm_err *err)
{
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO alert_notifications(at, rule, target, status, sink, "
                                "ok, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, at_ms);
        sqlite3_bind_text(s, 2, rule != NULL ? rule : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, target != NULL ? target : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 4, status != NULL ? status : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 5, sink != NULL ? sink : "", -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 6, ok ? 1 : 0);
        if (error != NULL) {
            sqlite3_bind_text(s, 7, error, -1, SQLITE_STATIC);
        } else {
            sqlite3_bind_null(s, 7);
        }
        rc = sqlite3_step(s);
    }
    int code =
        rc == SQLITE_DONE ? TM_OK : tm_catalog_sql_fail(c, err, rc, "record alert notification");
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    return code;
}

int tm_catalog_alert_notification_count(tm_catalog *c, int64_t *n, tm_err *err)
{
    *n = 0;
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM alert_notifications", -1, &s, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        *n = sqlite3_column_int64(s, 0);
        rc = SQLITE_DONE;
    }
    int code = rc == SQLITE_DONE ? TM_OK : tm_catalog_sql_fail(c, err, rc, "count notifications");
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    return code;
}
