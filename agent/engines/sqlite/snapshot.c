/*
 * snapshot.c - the paced online backup under one read transaction (see
 * snapshot.h for why).
 */
#include "agent/engines/sqlite/snapshot.h"
#include "agent/engines/sqlite/db.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int sync_path(const char *path, tm_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        return tm_err_set(err, TM_EIO, "sync %s: %s", path, strerror(e));
    }
    close(fd);
    return TM_OK;
}

static int copy(sqlite3 *src, const char *tmp, const tm_sqlite_snap_opts *o,
                tm_sqlite_snap_info *info, tm_err *err)
{
    sqlite3 *dst = NULL;
    int rc = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        tm_err_set(err, tm_sqlite_db_code(rc), "create %s: %s", tmp,
                   dst != NULL ? sqlite3_errmsg(dst) : "no memory");
        sqlite3_close(dst);
        return err->code;
    }
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL) {
        tm_err_set(err, tm_sqlite_db_code(sqlite3_errcode(dst)), "backup to %s: %s", tmp,
                   sqlite3_errmsg(dst));
        sqlite3_close(dst);
        return err->code;
    }
    int per = o != NULL && o->pages_per_step > 0 ? o->pages_per_step : 256;
    int r = TM_OK;
    for (;;) {
        rc = sqlite3_backup_step(b, per);
        info->steps++;
        if (rc == SQLITE_DONE) {
            break;
        }
        if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
            r = tm_err_set(err, tm_sqlite_db_code(rc), "backup step: %s", sqlite3_errstr(rc));
            break;
        }
        if (o != NULL && o->cancelled != NULL && o->cancelled(o->arg)) {
            r = tm_err_set(err, TM_ETIMEDOUT, "snapshot cancelled");
            break;
        }
        if (o != NULL && o->sleep_ms > 0) {
            sleep_ms(o->sleep_ms);
        }
    }
    info->pages = (uint64_t)sqlite3_backup_pagecount(b);
    rc = sqlite3_backup_finish(b);
    if (r == TM_OK && rc != SQLITE_OK) {
        r = tm_err_set(err, tm_sqlite_db_code(rc), "backup finish: %s", sqlite3_errmsg(dst));
    }
    if (sqlite3_close(dst) != SQLITE_OK && r == TM_OK) {
        r = tm_err_set(err, TM_EIO, "close %s", tmp);
    }
    return r;
}

int tm_sqlite_snapshot(sqlite3 *src, const char *dest, const tm_sqlite_snap_opts *o,
                       tm_sqlite_snap_info *info, tm_err *err)
{
    tm_sqlite_snap_info local = {0};
    if (info == NULL) {
        info = &local;
    }
    memset(info, 0, sizeof(*info));
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", dest) >= sizeof(tmp)) {
        return tm_err_set(err, TM_EINVAL, "snapshot path too long: %s", dest);
    }
    unlink(tmp);
    int own = sqlite3_get_autocommit(src);
    int rc = own ? tm_sqlite_db_begin_read(src, err) : TM_OK;
    if (rc == TM_OK) {
        rc = copy(src, tmp, o, info, err);
    }
    if (own) {
        sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
    }
    if (rc == TM_OK) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(src, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            info->page_size = (uint32_t)sqlite3_column_int(st, 0);
        }
        sqlite3_finalize(st);
        info->bytes = info->pages * info->page_size;
        rc = sync_path(tmp, err);
    }
    if (rc == TM_OK && rename(tmp, dest) != 0) {
        rc = tm_err_set(err, TM_EIO, "rename %s to %s: %s", tmp, dest, strerror(errno));
    }
    if (rc != TM_OK) {
        unlink(tmp);
        return tm_err_prefix(err, "snapshot to %s", dest);
    }
    return TM_OK;
}
