/*
 * wal_spool.c - the agent's local WAL state directory (wal_spool.h).
 */
#include "agent/engines/postgres/wal_spool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/util.h"

struct tm_wal_spool {
    char *dir;
};

int tm_wal_spool_open(tm_wal_spool **out, const char *state_dir, const char *target, tm_err *err)
{
    *out = NULL;
    tm_wal_spool *sp = calloc(1, sizeof(*sp));
    if (sp == NULL || asprintf(&sp->dir, "%s/wal/%s", state_dir, target) < 0) {
        free(sp);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    static const char *const subs[] = {"done", "lock", "prefetch"};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        char *p = tm_wal_spool_path(sp, subs[i], NULL);
        int rc = p == NULL ? tm_err_set(err, TM_ENOMEM, "out of memory") : tm_mkdir_p(p, 0700, err);
        free(p);
        if (rc != TM_OK) {
            tm_err_prefix(err,
                          "WAL spool (state_dir %s must be writable by the user PostgreSQL "
                          "runs as)",
                          state_dir);
            tm_wal_spool_free(sp);
            return rc;
        }
    }
    *out = sp;
    return TM_OK;
}

void tm_wal_spool_free(tm_wal_spool *sp)
{
    if (sp != NULL) {
        free(sp->dir);
        free(sp);
    }
}

const char *tm_wal_spool_dir(const tm_wal_spool *sp)
{
    return sp->dir;
}

char *tm_wal_spool_path(const tm_wal_spool *sp, const char *sub, const char *name)
{
    char *p = NULL;
    int n;
    if (sub != NULL && name != NULL) {
        n = asprintf(&p, "%s/%s/%s", sp->dir, sub, name);
    } else if (sub != NULL || name != NULL) {
        n = asprintf(&p, "%s/%s", sp->dir, sub != NULL ? sub : name);
    } else {
        n = asprintf(&p, "%s", sp->dir);
    }
    return n < 0 ? NULL : p;
}

int tm_wal_spool_lock(tm_wal_spool *sp, const char *name, int *fd, tm_err *err)
{
    *fd = -1;
    char *p = tm_wal_spool_path(sp, "lock", name);
    if (p == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    int f = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (f < 0) {
        int e = errno;
        tm_err_set(err, tm_err_from_errno(e), "open %s: %s", p, strerror(e));
        free(p);
        return tm_err_from_errno(e);
    }
    free(p);
    while (flock(f, LOCK_EX) != 0) {
        if (errno != EINTR) {
            int e = errno;
            close(f);
            return tm_err_set(err, tm_err_from_errno(e), "flock: %s", strerror(e));
        }
    }
    *fd = f;
    return TM_OK;
}

void tm_wal_spool_unlock(tm_wal_spool *sp, const char *name, int fd)
{
    (void)sp;
    (void)name;
    /* The lock file stays: unlinking it while another process waits on the
     * old inode would let a third one lock a new inode at the same time. */
    if (fd >= 0) {
        close(fd);
    }
}

int tm_wal_spool_done_set(tm_wal_spool *sp, const char *name, const char *xxh3, uint64_t size,
                          tm_err *err)
{
    char *p = tm_wal_spool_path(sp, "done", name);
    if (p == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    char line[80];
    int n = snprintf(line, sizeof(line), "%s %" PRIu64 "\n", xxh3, size);
    int rc = tm_file_write_atomic(p, line, (size_t)n, 0600, err);
    free(p);
    return rc;
}

int tm_wal_spool_done_match(tm_wal_spool *sp, const char *name, const char *xxh3, uint64_t size)
{
    char *p = tm_wal_spool_path(sp, "done", name);
    char *buf = NULL;
    size_t len = 0;
    int match = 0;
    if (p != NULL && tm_file_read(p, &buf, &len, NULL) == TM_OK) {
        char h[40] = "";
        unsigned long long s = 0;
        match = sscanf(buf, "%39s %llu", h, &s) == 2 && strcmp(h, xxh3) == 0 && s == size;
    }
    free(buf);
    free(p);
    return match;
}

int tm_wal_spool_done_exists(tm_wal_spool *sp, const char *name)
{
    char *p = tm_wal_spool_path(sp, "done", name);
    int ok = p != NULL && access(p, F_OK) == 0;
    free(p);
    return ok;
}
