/*
 * catalog_retention.c - what retention writes to the catalog: permanent
 * holds on backups (`tidemarkctl backup keep`) and the deletion log
 * (retention_deletions, migration 7), written in the same transaction that
 * removes the deleted backups' rows. Human rates: statements are prepared
 * per call.
 */
#include "coordinator/catalog_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tidemark.pb-c.h"

static void bind_opt(sqlite3_stmt *s, int i, const char *v)
{
    sqlite3_bind_text(s, i, v != NULL ? v : "", -1, SQLITE_STATIC);
}

static int exec(tm_catalog *c, sqlite3 *db, const char *sql, const char *what, tm_err *err)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? TM_OK : tm_catalog_sql_fail(c, err, rc, what);
}

int tm_catalog_backup_count(tm_catalog *c, const char *target, int64_t *n, tm_err *err)
{
    *n = 0;
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM backups WHERE ?1 = '' OR target = ?1", -1,
                                &s, NULL);
    if (rc == SQLITE_OK) {
        bind_opt(s, 1, target);
        if ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            *n = sqlite3_column_int64(s, 0);
            rc = SQLITE_DONE;
        }
    }
    int code = rc == SQLITE_DONE ? TM_OK : tm_catalog_sql_fail(c, err, rc, "count backups");
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    return code;
}

int tm_catalog_backup_set_keep(tm_catalog *c, const char *target, const char *id, int keep,
                               Tidemark__BackupInfo **out, tm_err *err)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (id == NULL || id[0] == '\0') {
        return tm_err_set(err, TM_EINVAL, "catalog: backup id missing");
    }
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    Tidemark__BackupInfo *b = NULL;
    int code = exec(c, db, "BEGIN IMMEDIATE", "hold backup", err);
    int found = 0;
    if (code == TM_OK) {
        int rc = sqlite3_prepare_v2(db,
                                    "SELECT target, record FROM backups WHERE (?1 = '' OR target = "
                                    "?1) AND id = ?2",
                                    -1, &s, NULL);
        if (rc == SQLITE_OK) {
            bind_opt(s, 1, target);
            bind_opt(s, 2, id);
            while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
                found++;
                if (b == NULL) {
                    b = tidemark__backup_info__unpack(NULL, (size_t)sqlite3_column_bytes(s, 1),
                                                      sqlite3_column_blob(s, 1));
                }
            }
        }
        if (rc != SQLITE_DONE) {
            code = tm_catalog_sql_fail(c, err, rc, "read backup");
        } else if (found == 0) {
            code = tm_err_set(err, TM_ENOENT, "no backup %s%s%s", id, target ? " of " : "",
                              target ? target : "");
        } else if (found > 1) {
            code = tm_err_set(err, TM_EINVAL,
                              "backup id %s exists for %d targets; give the target too", id, found);
        } else if (b == NULL) {
            code = tm_err_set(err, TM_ECORRUPT, "catalog: backup %s: record unreadable", id);
        }
        sqlite3_finalize(s);
        s = NULL;
    }
    uint8_t *buf = NULL;
    if (code == TM_OK) {
        b->has_keep = 1;
        b->keep = keep != 0;
        size_t len = tidemark__backup_info__get_packed_size(b);
        buf = malloc(len ? len : 1);
        int rc = buf == NULL ? SQLITE_NOMEM
                             : sqlite3_prepare_v2(db,
                                                  "UPDATE backups SET keep = ?1, record = ?2 "
                                                  "WHERE target = ?3 AND id = ?4",
                                                  -1, &s, NULL);
        if (rc == SQLITE_OK) {
            tidemark__backup_info__pack(b, buf);
            sqlite3_bind_int(s, 1, keep != 0);
            sqlite3_bind_blob(s, 2, buf, (int)len, SQLITE_STATIC);
            bind_opt(s, 3, b->target);
            bind_opt(s, 4, b->id);
            rc = sqlite3_step(s);
        }
        if (rc != SQLITE_DONE) {
            code = tm_catalog_sql_fail(c, err, rc, "hold backup");
        }
        sqlite3_finalize(s);
    }
    if (code == TM_OK) {
        code = exec(c, db, "COMMIT", "hold backup", err);
    }
    if (code != TM_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    tm_catalog_unlock(c);
    free(buf);
    if (code == TM_OK && out != NULL) {
        *out = b;
    } else if (b != NULL) {
        tidemark__backup_info__free_unpacked(b, NULL);
    }
    return code;
}

int tm_catalog_retention_record(tm_catalog *c, const tm_retention_deletion *d, size_t n,
                                tm_err *err)
{
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *del = NULL, *ins = NULL;
    int code = exec(c, db, "BEGIN IMMEDIATE", "record deletions", err);
    int rc = SQLITE_OK;
    if (code == TM_OK) {
        rc = sqlite3_prepare_v2(db, "DELETE FROM backups WHERE target = ?1 AND id = ?2", -1, &del,
                                NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_prepare_v2(
                db,
                "INSERT INTO retention_deletions(at, target, backup_id, backup_type, "
                "finished_at, repositories, reason, task_id) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 "
                "WHERE NOT EXISTS (SELECT 1 FROM retention_deletions WHERE target = ?2 AND "
                "backup_id = ?3 AND task_id = ?8)",
                -1, &ins, NULL);
        }
    }
    for (size_t i = 0; code == TM_OK && rc == SQLITE_OK && i < n; i++) {
        sqlite3_reset(del);
        bind_opt(del, 1, d[i].target);
        bind_opt(del, 2, d[i].backup_id);
        if ((rc = sqlite3_step(del)) != SQLITE_DONE) {
            break;
        }
        sqlite3_reset(ins);
        sqlite3_bind_int64(ins, 1, d[i].at);
        bind_opt(ins, 2, d[i].target);
        bind_opt(ins, 3, d[i].backup_id);
        sqlite3_bind_int(ins, 4, d[i].backup_type);
        sqlite3_bind_int64(ins, 5, d[i].finished_at);
        bind_opt(ins, 6, d[i].repositories);
        bind_opt(ins, 7, d[i].reason);
        bind_opt(ins, 8, d[i].task_id);
        if ((rc = sqlite3_step(ins)) != SQLITE_DONE) {
            break;
        }
        rc = SQLITE_OK;
    }
    if (code == TM_OK && rc != SQLITE_OK) {
        code = tm_catalog_sql_fail(c, err, rc, "record deletions");
    }
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    if (code == TM_OK) {
        code = exec(c, db, "COMMIT", "record deletions", err);
    }
    if (code != TM_OK) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    tm_catalog_unlock(c);
    return code;
}

static int col_str(sqlite3_stmt *s, int i, char **out)
{
    const unsigned char *v = sqlite3_column_text(s, i);
    *out = strdup(v != NULL ? (const char *)v : "");
    return *out == NULL;
}

int tm_catalog_retention_log(tm_catalog *c, const char *target, size_t limit,
                             tm_retention_deletion **out, size_t *n, tm_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    tm_retention_deletion *rows = NULL;
    size_t cnt = 0, cap = 0;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT at, target, backup_id, backup_type, finished_at, "
                                "repositories, reason, task_id FROM retention_deletions WHERE ?1 = "
                                "'' OR target = ?1 ORDER BY at DESC, id DESC LIMIT ?2",
                                -1, &s, NULL);
    int code = TM_OK;
    if (rc == SQLITE_OK) {
        bind_opt(s, 1, target);
        sqlite3_bind_int64(s, 2, limit == 0 ? -1 : (int64_t)limit);
    }
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 32;
            tm_retention_deletion *nr = realloc(rows, cap * sizeof(*nr));
            if (nr == NULL) {
                code = tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
                break;
            }
            rows = nr;
        }
        tm_retention_deletion *r = &rows[cnt++];
        memset(r, 0, sizeof(*r));
        r->at = sqlite3_column_int64(s, 0);
        r->backup_type = sqlite3_column_int(s, 3);
        r->finished_at = sqlite3_column_int64(s, 4);
        if (col_str(s, 1, &r->target) | col_str(s, 2, &r->backup_id) |
            col_str(s, 5, &r->repositories) | col_str(s, 6, &r->reason) |
            col_str(s, 7, &r->task_id)) {
            code = tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
            break;
        }
        rc = SQLITE_OK;
    }
    if (code == TM_OK && rc != SQLITE_DONE) {
        code = tm_catalog_sql_fail(c, err, rc, "read retention log");
    }
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    if (code != TM_OK) {
        tm_retention_deletions_free(rows, cnt);
        return code;
    }
    *out = rows;
    *n = cnt;
    return TM_OK;
}

void tm_retention_deletions_free(tm_retention_deletion *d, size_t n)
{
    for (size_t i = 0; d != NULL && i < n; i++) {
        free(d[i].target);
        free(d[i].backup_id);
        free(d[i].repositories);
        free(d[i].reason);
        free(d[i].task_id);
    }
    free(d);
}
