/*
 * wal_get.c - restore_command and its prefetcher (wal_get.h).
 *
 * Prefetched files are fully verified (tags, digests, mac) before they are
 * renamed into prefetch/, so taking one is a rename. A prefetched file is
 * consumed (moved) by the wal-get that asks for it; files before the
 * requested one are removed (recovery never asks twice for an old segment
 * on the same timeline).
 */
#include "agent/engines/postgres/wal_get.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/engines/postgres/wal_name.h"
#include "agent/engines/postgres/wal_spool.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"
#include "common/log.h"
#include "common/util.h"

#define PREFETCH_THREADS 4

/* Move src to dest; across file systems copy + fsync + rename. */
static int move_file(const char *src, const char *dest, tm_err *err)
{
    if (rename(src, dest) == 0) {
        return TM_OK;
    }
    if (errno != EXDEV) {
        int e = errno;
        return tm_err_set(err, tm_err_from_errno(e), "rename %s -> %s: %s", src, dest, strerror(e));
    }
    char *buf = NULL;
    size_t len = 0;
    int rc = tm_file_read(src, &buf, &len, err);
    if (rc == TM_OK) {
        rc = tm_file_write_atomic(dest, buf, len, 0600, err);
    }
    free(buf);
    if (rc == TM_OK) {
        unlink(src);
    }
    return rc;
}

static void rel_of(const tm_wal_name *wn, char *out, size_t cap)
{
    char tli[9];
    tm_wal_tli_hex(wn->tli, tli);
    snprintf(out, cap, "%s/%s", tli, wn->name);
}

/* Remove prefetched segments of this timeline before `wn`: recovery has
 * moved past them. */
static void prefetch_trim(tm_wal_spool *sp, const tm_wal_name *wn)
{
    char *dir = tm_wal_spool_path(sp, "prefetch", NULL);
    DIR *d = dir != NULL ? opendir(dir) : NULL;
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        tm_wal_name x;
        if (tm_wal_name_parse(de->d_name, &x) == 0 && x.kind == TM_WAL_SEGMENT &&
            x.tli == wn->tli && tm_wal_cmp(&x, wn) < 0) {
            char *p = NULL;
            if (asprintf(&p, "%s/%s", dir, de->d_name) >= 0) {
                unlink(p);
            }
            free(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    free(dir);
}

typedef struct pf_ctx {
    const tm_agent_conf *conf;
    const char *target;
    tm_wal_spool *sp;
    char (*names)[25];
    int n;
    int next;
    int stop; /* an absent segment: the archive ends there */
    pthread_mutex_t mu;
} pf_ctx;

static void *pf_worker(void *arg)
{
    pf_ctx *c = arg;
    tm_repo_set *rs = NULL;
    tm_log_store *ls = NULL;
    tm_err err = {0};
    if (tm_repo_set_open(&rs, c->conf, TM_REPO_KEYS, &err) != TM_OK ||
        tm_log_store_open(&ls, rs, c->target, &err) != TM_OK) {
        tm_repo_set_free(rs);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&c->mu);
        int i = c->stop ? c->n : c->next++;
        pthread_mutex_unlock(&c->mu);
        if (i >= c->n) {
            break;
        }
        char *dest = tm_wal_spool_path(c->sp, "prefetch", c->names[i]);
        tm_wal_name wn;
        if (dest == NULL || tm_wal_name_parse(c->names[i], &wn) != 0 || access(dest, F_OK) == 0) {
            free(dest);
            continue;
        }
        char rel[80];
        rel_of(&wn, rel, sizeof(rel));
        tm_err e = {0};
        int rc = tm_log_get_file(ls, rel, dest, NULL, NULL, &e);
        if (rc == TM_ENOENT) {
            pthread_mutex_lock(&c->mu);
            c->stop = 1;
            pthread_mutex_unlock(&c->mu);
        }
        free(dest);
    }
    tm_log_store_free(ls);
    tm_repo_set_free(rs);
    return NULL;
}

int tm_wal_prefetch(const tm_agent_conf *conf, const char *target, const char *name,
                    uint64_t seg_size, int count)
{
    tm_wal_spool *sp = NULL;
    tm_err err = {0};
    tm_wal_name wn;
    if (count <= 0 || tm_wal_name_parse(name, &wn) != 0 || wn.kind != TM_WAL_SEGMENT ||
        tm_wal_spool_open(&sp, conf->state_dir, target, &err) != TM_OK) {
        return 1;
    }
    char *lockp = tm_wal_spool_path(sp, "prefetch.lock", NULL);
    int lfd = lockp != NULL ? open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
    free(lockp);
    /* One prefetcher at a time; a busy one is already ahead of us. */
    if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        if (lfd >= 0) {
            close(lfd);
        }
        tm_wal_spool_free(sp);
        return 0;
    }
    prefetch_trim(sp, &wn);
    pf_ctx c = {conf,  target, sp, calloc((size_t)count, 25),
                count, 0,      0,  PTHREAD_MUTEX_INITIALIZER};
    if (c.names != NULL) {
        uint64_t segno = tm_wal_segno(&wn, seg_size);
        for (int i = 0; i < count; i++) {
            tm_wal_seg_name(wn.tli, segno + 1 + (uint64_t)i, seg_size, c.names[i]);
        }
        pthread_t th[PREFETCH_THREADS];
        int nt = count < PREFETCH_THREADS ? count : PREFETCH_THREADS, started = 0;
        for (int i = 0; i < nt; i++) {
            started += pthread_create(&th[started], NULL, pf_worker, &c) == 0;
        }
        for (int i = 0; i < started; i++) {
            pthread_join(th[i], NULL);
        }
    }
    free(c.names);
    close(lfd);
    tm_wal_spool_free(sp);
    return 0;
}

/* Start the prefetcher detached (double fork, new session, no stdio), so
 * restore_command returns at once and PostgreSQL never waits for it. */
static void prefetch_spawn(const tm_agent_conf *conf, const char *target, const char *name,
                           uint64_t seg_size, int count)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        return;
    }
    if (pid > 0) {
        waitpid(pid, NULL, 0);
        return;
    }
    setsid();
    if (fork() != 0) {
        _exit(0);
    }
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) {
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        if (nul > 2) {
            close(nul);
        }
    }
    _exit(tm_wal_prefetch(conf, target, name, seg_size, count));
}

int tm_wal_get(const tm_agent_conf *conf, const char *target, const char *name, const char *dest,
               int prefetch, int verbose)
{
    tm_wal_name wn;
    if (tm_wal_name_parse(name, &wn) != 0) {
        fprintf(stderr,
                "tidemark-agent wal-get: '%s' is not a WAL file name; restore_command must "
                "pass %%f %%p\n",
                name);
        return TM_WAL_GET_USAGE;
    }
    tm_err err = {0};
    tm_wal_spool *sp = NULL;
    uint64_t seg_size = TM_WAL_SEG_SIZE_DEFAULT;
    if (tm_wal_spool_open(&sp, conf->state_dir, target, &err) != TM_OK) {
        sp = NULL; /* prefetch is an optimisation: fetch directly */
    }
    char *pf = sp != NULL ? tm_wal_spool_path(sp, "prefetch", name) : NULL;
    struct stat st;
    if (pf != NULL && stat(pf, &st) == 0 && move_file(pf, dest, &err) == TM_OK) {
        if (wn.kind == TM_WAL_SEGMENT && tm_wal_valid_seg_size((uint64_t)st.st_size)) {
            seg_size = (uint64_t)st.st_size;
        }
        if (verbose) {
            fprintf(stderr, "wal-get %s: from the prefetch spool\n", name);
        }
        free(pf);
        tm_wal_spool_free(sp);
        if (prefetch > 0 && wn.kind == TM_WAL_SEGMENT) {
            prefetch_spawn(conf, target, name, seg_size, prefetch);
        }
        return TM_WAL_GET_OK;
    }
    free(pf);
    tm_wal_spool_free(sp);

    tm_repo_set *rs = NULL;
    tm_log_store *ls = NULL;
    int rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, &err);
    if (rc == TM_OK) {
        rc = tm_log_store_open(&ls, rs, target, &err);
    }
    tm_log_meta meta = {0};
    size_t used = 0;
    if (rc == TM_OK) {
        char rel[80];
        rel_of(&wn, rel, sizeof(rel));
        rc = tm_log_get_file(ls, rel, dest, &meta, &used, &err);
    }
    if (rc == TM_OK && verbose) {
        fprintf(stderr, "wal-get %s: from repository %s\n", name, tm_repo_set_name(rs, used));
    }
    tm_log_store_free(ls);
    tm_repo_set_free(rs);
    if (rc == TM_ENOENT) {
        /* PostgreSQL probes for files that do not exist (the next
         * timeline's history, the segment after the last): not an event. */
        tm_debug("wal-get", "event=missing file=%s", name);
        return TM_WAL_GET_MISSING;
    }
    if (rc != TM_OK) {
        fprintf(stderr, "tidemark-agent wal-get %s: %s\n", name, err.msg);
        return rc == TM_ECONFIG ? TM_WAL_GET_USAGE : TM_WAL_GET_ERROR;
    }
    if (wn.kind == TM_WAL_SEGMENT && tm_wal_valid_seg_size(meta.plain_size)) {
        seg_size = meta.plain_size;
    }
    if (prefetch > 0 && wn.kind == TM_WAL_SEGMENT) {
        prefetch_spawn(conf, target, name, seg_size, prefetch);
    }
    return TM_WAL_GET_OK;
}
