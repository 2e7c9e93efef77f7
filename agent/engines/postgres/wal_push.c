/*
 * wal_push.c - push one WAL file through the log store (wal_push.h).
 */
#include "agent/engines/postgres/wal_push.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/engines/postgres/wal_name.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"

struct tm_wal_pusher {
    const tm_agent_conf *conf;
    tm_wal_spool *sp;
    char *target;
    size_t quorum;
    tm_repo_set *rs;
    tm_log_store *ls;
};

int tm_wal_pusher_new(tm_wal_pusher **out, const tm_agent_conf *conf, tm_wal_spool *sp,
                      const char *target, size_t quorum, tm_err *err)
{
    tm_wal_pusher *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->target = strdup(target)) == NULL) {
        free(p);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    p->conf = conf;
    p->sp = sp;
    p->quorum = quorum;
    *out = p;
    return TM_OK;
}

void tm_wal_pusher_free(tm_wal_pusher *p)
{
    if (p != NULL) {
        tm_log_store_free(p->ls);
        tm_repo_set_free(p->rs);
        free(p->target);
        free(p);
    }
}

static int open_store(tm_wal_pusher *p, tm_err *err)
{
    if (p->ls != NULL) {
        return TM_OK;
    }
    int rc = tm_repo_set_open(&p->rs, p->conf, TM_REPO_KEYS, err);
    if (rc == TM_OK) {
        rc = tm_log_store_open(&p->ls, p->rs, p->target, err);
    }
    if (rc != TM_OK) {
        tm_log_store_free(p->ls);
        tm_repo_set_free(p->rs);
        p->ls = NULL;
        p->rs = NULL;
    }
    return rc;
}

int tm_wal_pusher_push(tm_wal_pusher *p, const char *path, int use_spool, int *already, tm_err *err)
{
    int dummy;
    already = already != NULL ? already : &dummy;
    *already = 0;
    const char *base = strrchr(path, '/');
    base = base != NULL ? base + 1 : path;
    tm_wal_name wn;
    if (tm_wal_name_parse(base, &wn) != 0) {
        return tm_err_set(err, TM_EINVAL,
                          "'%.100s' is not a WAL file name (segment, .history, .partial or "
                          ".backup); archive_command must pass %%p",
                          base);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return tm_err_set(err, tm_err_from_errno(e), "open %s: %s", path, strerror(e));
    }
    char xxh[33];
    uint64_t size = 0;
    int rc = tm_log_fd_xxh3(fd, xxh, &size, err);
    if (rc == TM_OK && use_spool && tm_wal_spool_done_match(p->sp, base, xxh, size)) {
        *already = 1;
        close(fd);
        return TM_OK;
    }
    int lfd = -1;
    if (rc == TM_OK) {
        rc = tm_wal_spool_lock(p->sp, base, &lfd, err);
    }
    /* Another process may have pushed it while we waited for the lock. */
    if (rc == TM_OK && use_spool && tm_wal_spool_done_match(p->sp, base, xxh, size)) {
        *already = 1;
        tm_wal_spool_unlock(p->sp, base, lfd);
        close(fd);
        return TM_OK;
    }
    if (rc == TM_OK) {
        rc = open_store(p, err);
    }
    char rel[80];
    char tli[9];
    tm_wal_tli_hex(wn.tli, tli);
    snprintf(rel, sizeof(rel), "%s/%s", tli, base);
    size_t n = p->rs != NULL ? tm_repo_set_count(p->rs) : 0;
    tm_log_push_result *res = n > 0 ? calloc(n, sizeof(*res)) : NULL;
    if (rc == TM_OK) {
        rc = tm_log_push(p->ls, rel, fd, p->quorum, res, NULL, err);
    }
    /* Without a quorum, success means every repository holds the file:
     * checked here too, so a log store answering 0 with a repository left
     * out can never make PostgreSQL recycle a segment that is missing there. */
    for (size_t i = 0; rc == TM_OK && p->quorum == 0 && res != NULL && i < n; i++) {
        if (res[i].state != TM_LOG_R_STORED && res[i].state != TM_LOG_R_ALREADY) {
            rc = tm_err_set(err, TM_EIO, "wal-push %s: repository %s does not hold it: %s", base,
                            tm_repo_set_name(p->rs, i), res[i].msg);
        }
    }
    if (rc == TM_OK) {
        int stored = 0;
        for (size_t i = 0; i < n && res != NULL; i++) {
            stored += res[i].state == TM_LOG_R_STORED;
        }
        *already = stored == 0;
        /* The marker is only a shortcut: failing to write it costs a
         * repository round trip next time, never durability. */
        tm_err e = {0};
        tm_wal_spool_done_set(p->sp, base, xxh, size, &e);
    }
    free(res);
    if (lfd >= 0) {
        tm_wal_spool_unlock(p->sp, base, lfd);
    }
    close(fd);
    return rc;
}
