/*
 * copy.c - the paced online backup under one read transaction (see copy.h
 * for why).
 */
#include "agent/engines/sqlite/copy.h"
#include "agent/engines/sqlite/db.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int sync_fd_path(const char *path, int flags, tm_err *err)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        return tm_err_set(err, tm_err_from_errno(e), "sync %s: %s", path, strerror(e));
    }
    close(fd);
    return TM_OK;
}

/* Writeback as the copy goes, a chunk at a time (tm_writeback): never a
 * backlog of the whole file written back in one burst at the final fsync,
 * which stalls the application's own commits behind it. */
static void flush_progress(tm_writeback *wb, int final)
{
    struct stat st;
    if (wb->fd >= 0 && fstat(wb->fd, &st) == 0) {
        tm_writeback_progress(wb, (uint64_t)st.st_size, final);
    }
}

/* The steps. A step that meets a lock (SQLITE_BUSY: a WAL recovery, or a
 * writer in rollback-journal mode) is retried after a short sleep for up to
 * busy_ms since the last step that went through: the copy waits, the
 * application does not. */
static int steps(sqlite3 *src, sqlite3 *dst, const char *tmp, const tm_sqlite_copy_opts *o,
                 tm_sqlite_copy_info *info, tm_err *err)
{
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL) {
        return tm_err_set(err, tm_sqlite_db_code(sqlite3_errcode(dst)), "backup to %s: %s", tmp,
                          sqlite3_errmsg(dst));
    }
    int per = o->pages_per_step > 0 ? o->pages_per_step : 256;
    int64_t busy_ms = o->busy_ms > 0 ? o->busy_ms : 5000;
    int64_t progress = tm_now_ms();
    int r = TM_OK;
    tm_writeback fl = {.fd = open(tmp, O_RDONLY | O_CLOEXEC)};
    for (;;) {
        int rc = sqlite3_backup_step(b, per);
        info->steps++;
        flush_progress(&fl, rc == SQLITE_DONE);
        if (rc == SQLITE_DONE) {
            break;
        }
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
            if (tm_now_ms() - progress > busy_ms) {
                r = tm_err_set(err, TM_EBUSY,
                               "the database stayed locked for more than %lld ms (raise "
                               "busy_timeout_ms, or look for a long exclusive transaction)",
                               (long long)busy_ms);
                break;
            }
            sleep_ms(5);
            continue;
        }
        if (rc != SQLITE_OK) {
            r = tm_err_set(err, tm_sqlite_db_code(rc), "backup step: %s", sqlite3_errstr(rc));
            break;
        }
        progress = tm_now_ms();
        if (o->cancelled != NULL && o->cancelled(o->arg)) {
            r = tm_err_set(err, TM_ETIMEDOUT, "copy cancelled");
            break;
        }
        if (o->sleep_ms > 0) {
            sleep_ms(o->sleep_ms);
        }
    }
    if (fl.fd >= 0) {
        close(fl.fd);
    }
    info->pages = (uint64_t)sqlite3_backup_pagecount(b);
    int rc = sqlite3_backup_finish(b);
    if (r == TM_OK && rc != SQLITE_OK) {
        r = tm_err_set(err, tm_sqlite_db_code(rc), "backup finish: %s", sqlite3_errmsg(dst));
    }
    return r;
}

static int copy_to(sqlite3 *src, const char *tmp, const tm_sqlite_copy_opts *o,
                   tm_sqlite_copy_info *info, tm_err *err)
{
    /* Created here, 0600: SQLite would create it with its own default mode. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        return tm_err_set(err, tm_err_from_errno(errno), "create %s: %s", tmp, strerror(errno));
    }
    close(fd);
    sqlite3 *dst = NULL;
    int rc = sqlite3_open_v2(tmp, &dst, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        tm_err_set(err, tm_sqlite_db_code(rc), "open %s: %s", tmp,
                   dst != NULL ? sqlite3_errmsg(dst) : "no memory");
        sqlite3_close(dst);
        return err->code;
    }
    /* A scratch file until it is complete and synced (then renamed): no
     * journal and no sync per step (the backup commits each step). */
    int r = tm_sqlite_db_exec(dst, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", err);
    if (r == TM_OK) {
        r = steps(src, dst, tmp, o, info, err);
    }
    if (sqlite3_close(dst) != SQLITE_OK && r == TM_OK) {
        r = tm_err_set(err, TM_EIO, "close %s", tmp);
    }
    return r;
}

static uint32_t page_size(sqlite3 *c)
{
    sqlite3_stmt *st = NULL;
    uint32_t ps = 0;
    if (sqlite3_prepare_v2(c, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        ps = (uint32_t)sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    return ps;
}

int tm_sqlite_copy_conn(sqlite3 *src, const char *dst, const tm_sqlite_copy_opts *o,
                        tm_sqlite_copy_info *info, tm_err *err)
{
    static const tm_sqlite_copy_opts defaults = {0};
    tm_sqlite_copy_info local;
    if (info == NULL) {
        info = &local;
    }
    if (o == NULL) {
        o = &defaults;
    }
    memset(info, 0, sizeof(*info));
    char tmp[PATH_MAX], dir[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", dst) >= sizeof(tmp)) {
        return tm_err_set(err, TM_EINVAL, "copy path too long: %s", dst);
    }
    snprintf(dir, sizeof(dir), "%s", dst);
    if (access(dst, F_OK) == 0) {
        return tm_err_set(err, TM_EEXIST, "copy to %s: the file exists", dst);
    }
    unlink(tmp); /* a leftover of a copy that was killed */
    int own = sqlite3_get_autocommit(src);
    int rc = own ? tm_sqlite_db_begin_read(src, err) : TM_OK;
    if (rc == TM_OK) {
        rc = copy_to(src, tmp, o, info, err);
    }
    if (own) {
        sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
    }
    if (rc == TM_OK) {
        info->page_size = page_size(src);
        info->bytes = info->pages * info->page_size;
        rc = sync_fd_path(tmp, O_RDONLY, err);
    }
    if (rc == TM_OK && rename(tmp, dst) != 0) {
        rc = tm_err_set(err, TM_EIO, "rename %s to %s: %s", tmp, dst, strerror(errno));
    }
    if (rc == TM_OK) {
        rc = sync_fd_path(dirname(dir), O_RDONLY | O_DIRECTORY, err);
    }
    if (rc != TM_OK) {
        unlink(tmp);
        return tm_err_prefix(err, "copy to %s", dst);
    }
    return TM_OK;
}

int tm_sqlite_copy(const char *db, const char *dst, uint64_t *bytes, tm_err *err)
{
    sqlite3 *c = NULL;
    int rc = tm_sqlite_db_connect(db, 5000, &c, err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_sqlite_copy_info info;
    rc = tm_sqlite_copy_conn(c, dst, NULL, &info, err);
    sqlite3_close(c);
    if (rc == TM_OK && bytes != NULL) {
        *bytes = info.bytes;
    }
    return rc == TM_OK ? TM_OK : tm_err_prefix(err, "database %s", db);
}
