/*
 * db.c - opening a target's database (see db.h).
 */
#include "agent/engines/sqlite/db.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int tm_sqlite_db_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
        return TM_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return TM_EBUSY;
    case SQLITE_NOMEM:
        return TM_ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return TM_ECORRUPT;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
        return TM_EPERM;
    case SQLITE_CANTOPEN:
    case SQLITE_NOTFOUND:
        return TM_ENOENT;
    case SQLITE_FULL:
        return TM_ENOSPC;
    default:
        return TM_EIO;
    }
}

int tm_sqlite_db_exec(sqlite3 *c, const char *sql, tm_err *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int code = tm_sqlite_db_code(rc);
        tm_err_set(err, code, "%s: %s", sql, msg != NULL ? msg : sqlite3_errmsg(c));
        sqlite3_free(msg);
        return code;
    }
    return TM_OK;
}

int tm_sqlite_db_begin_read(sqlite3 *c, tm_err *err)
{
    /* BEGIN is deferred: the snapshot is taken by the first read. */
    int rc = tm_sqlite_db_exec(c, "BEGIN; SELECT count(*) FROM sqlite_schema", err);
    if (rc != TM_OK) {
        sqlite3_exec(c, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

static int journal_mode(sqlite3 *c, const char *sql, char *out, size_t cap, tm_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_ROW) {
        int code = tm_sqlite_db_code(rc == SQLITE_DONE ? SQLITE_ERROR : rc);
        tm_err_set(err, code, "%s: %s", sql, sqlite3_errmsg(c));
        sqlite3_finalize(st);
        return code;
    }
    const unsigned char *m = sqlite3_column_text(st, 0);
    snprintf(out, cap, "%s", m != NULL ? (const char *)m : "");
    sqlite3_finalize(st);
    return TM_OK;
}

int tm_sqlite_db_connect(const char *path, int busy_ms, sqlite3 **out, tm_err *err)
{
    sqlite3 *c = NULL;
    /* Read-write without CREATE: a WAL database needs its -shm writable even
     * to read, and a missing file is an error, never a new empty database. */
    int rc = sqlite3_open_v2(path, &c, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int code = tm_sqlite_db_code(rc);
        tm_err_set(err, code, "open %s: %s", path, c != NULL ? sqlite3_errmsg(c) : "no memory");
        sqlite3_close(c);
        return code;
    }
    sqlite3_busy_timeout(c, busy_ms);
    /* Closing the last connection would checkpoint and delete the WAL: a
     * reset the shipper would have to treat as a new generation. The
     * agent's connections never do; checkpoints are the shipper's decision
     * (ship.c). */
    sqlite3_db_config(c, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    *out = c;
    return TM_OK;
}

int tm_sqlite_db_open(const char *path, int busy_ms, int set_wal, sqlite3 **out, tm_err *err)
{
    sqlite3 *c = NULL;
    int r = tm_sqlite_db_connect(path, busy_ms, &c, err);
    if (r != TM_OK) {
        return r;
    }
    char mode[32];
    r = journal_mode(c, "PRAGMA journal_mode", mode, sizeof(mode), err);
    if (r == TM_OK && strcasecmp(mode, "wal") != 0) {
        if (!set_wal) {
            r = tm_err_set(err, TM_ECONFIG,
                           "%s is in journal mode '%s', not WAL: continuous shipping needs WAL "
                           "(run PRAGMA journal_mode=WAL, or set set_wal: true on the target)",
                           path, mode);
        } else {
            r = journal_mode(c, "PRAGMA journal_mode=WAL", mode, sizeof(mode), err);
            if (r == TM_OK && strcasecmp(mode, "wal") != 0) {
                r = tm_err_set(err, TM_EBUSY, "%s: could not switch to WAL (still '%s')", path,
                               mode);
            }
        }
    }
    if (r == TM_OK) {
        r = tm_sqlite_db_exec(c, "PRAGMA wal_autocheckpoint=0", err);
    }
    if (r != TM_OK) {
        sqlite3_close(c);
        return tm_err_prefix(err, "database %s", path);
    }
    *out = c;
    return TM_OK;
}
