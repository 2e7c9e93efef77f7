/*
 * wal_archiver.c - the async WAL archiver (wal_archiver.h).
 *
 * One scanner (the calling thread) and N workers around a small queue. The
 * queue holds names, not data: workers read the file from pg_wal, which
 * PostgreSQL keeps until its own archive_command has succeeded for it.
 */
#include "agent/engines/postgres/wal_archiver.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/engines/postgres/wal_name.h"
#include "agent/engines/postgres/wal_push.h"
#include "agent/engines/postgres/wal_spool.h"
#include "common/log.h"
#include "common/util.h"

#define MAX_QUEUE 4096

typedef struct job {
    tm_wal_name name;
    int state; /* 0 pending, 1 in flight */
    int64_t retry_at_ms;
} job;

typedef struct archiver {
    const tm_agent_conf *conf;
    const tm_wal_archiver_opts *o;
    tm_wal_spool *sp;
    char *wal_dir;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *jobs;
    size_t njobs;
    int stopping;
    uint64_t pushed, already, failed;
    char last_pushed[TM_WAL_NAME_MAX];
    int64_t last_pushed_ms;
    char last_error[TM_ERR_MSG_MAX];
} archiver;

static job *job_find(archiver *a, const char *name)
{
    for (size_t i = 0; i < a->njobs; i++) {
        if (strcmp(a->jobs[i].name.name, name) == 0) {
            return &a->jobs[i];
        }
    }
    return NULL;
}

static void job_remove(archiver *a, job *j)
{
    size_t i = (size_t)(j - a->jobs);
    memmove(&a->jobs[i], &a->jobs[i + 1], (a->njobs - i - 1) * sizeof(*j));
    a->njobs--;
}

static void *worker(void *arg)
{
    archiver *a = arg;
    tm_wal_pusher *p = NULL;
    tm_err err = {0};
    if (tm_wal_pusher_new(&p, a->conf, a->sp, a->o->target, a->o->quorum, &err) != TM_OK) {
        tm_error("wal-archiver", "event=worker_failed msg=\"%s\"", err.msg);
        return NULL;
    }
    pthread_mutex_lock(&a->mu);
    for (;;) {
        job *j = NULL;
        int64_t now = tm_now_ms();
        /* Jobs are kept in archive order: take the first one due. */
        for (size_t i = 0; i < a->njobs; i++) {
            if (a->jobs[i].state == 0 && a->jobs[i].retry_at_ms <= now) {
                j = &a->jobs[i];
                break;
            }
        }
        if (j == NULL) {
            if (a->stopping) {
                break;
            }
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&a->cv, &a->mu, &ts);
            continue;
        }
        j->state = 1;
        char name[TM_WAL_NAME_MAX];
        snprintf(name, sizeof(name), "%s", j->name.name);
        pthread_mutex_unlock(&a->mu);

        char *path = NULL;
        int already = 0, rc;
        tm_err e = {0};
        uint64_t t0 = tm_mono_ns();
        if (asprintf(&path, "%s/%s", a->wal_dir, name) < 0) {
            path = NULL;
            rc = tm_err_set(&e, TM_ENOMEM, "out of memory");
        } else {
            rc = tm_wal_pusher_push(p, path, 1, &already, &e);
        }
        free(path);
        uint64_t ms = (tm_mono_ns() - t0) / 1000000;

        pthread_mutex_lock(&a->mu);
        j = job_find(a, name);
        if (rc == TM_OK || rc == TM_ENOENT) {
            /* ENOENT: PostgreSQL archived and removed it meanwhile. */
            if (j != NULL) {
                job_remove(a, j);
            }
            if (rc == TM_OK) {
                a->pushed += !already;
                a->already += already;
                snprintf(a->last_pushed, sizeof(a->last_pushed), "%s", name);
                a->last_pushed_ms = tm_now_ms();
                tm_debug("wal-archiver", "event=pushed file=%s already=%d ms=%" PRIu64, name,
                         already, ms);
            }
        } else {
            a->failed++;
            snprintf(a->last_error, sizeof(a->last_error), "%s", e.msg);
            tm_warn("wal-archiver", "event=push_failed file=%s code=%s msg=\"%s\"", name,
                    tm_strerror(rc), e.msg);
            if (j != NULL) {
                /* Back off; PostgreSQL's own wal-push still retries it. */
                j->state = 0;
                j->retry_at_ms = tm_now_ms() + 2000;
            }
        }
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    tm_wal_pusher_free(p);
    return NULL;
}

/* Add every .ready file not done and not queued; returns the number of
 * .ready files and the oldest one's age. */
static int scan(archiver *a, size_t *nready, int64_t *oldest_ms, char *oldest, size_t cap,
                tm_err *err)
{
    char *dir = NULL;
    if (asprintf(&dir, "%s/archive_status", a->wal_dir) < 0) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    DIR *d = opendir(dir);
    if (d == NULL) {
        int e = errno;
        tm_err_set(err, tm_err_from_errno(e), "opendir %s: %s (is --pgdata the data directory?)",
                   dir, strerror(e));
        free(dir);
        return tm_err_from_errno(e);
    }
    *nready = 0;
    *oldest_ms = 0;
    oldest[0] = '\0';
    int64_t now = tm_now_ms();
    struct dirent *de;
    tm_wal_name *found = NULL;
    size_t nfound = 0, capf = 0;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 7 || strcmp(de->d_name + l - 6, ".ready") != 0 || l - 6 >= TM_WAL_NAME_MAX) {
            continue;
        }
        char name[TM_WAL_NAME_MAX];
        memcpy(name, de->d_name, l - 6);
        name[l - 6] = '\0';
        tm_wal_name wn;
        if (tm_wal_name_parse(name, &wn) != 0) {
            continue;
        }
        (*nready)++;
        char *sp = NULL;
        struct stat st;
        if (asprintf(&sp, "%s/%s", dir, de->d_name) >= 0 && stat(sp, &st) == 0) {
            int64_t age = now - ((int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000);
            if (age > *oldest_ms) {
                *oldest_ms = age;
                snprintf(oldest, cap, "%s", name);
            }
        }
        free(sp);
        if (nfound == capf) {
            capf = capf ? capf * 2 : 64;
            tm_wal_name *nf = realloc(found, capf * sizeof(*nf));
            if (nf == NULL) {
                break;
            }
            found = nf;
        }
        found[nfound++] = wn;
    }
    closedir(d);
    free(dir);
    if (nfound > 1) {
        qsort(found, nfound, sizeof(*found),
              tm_wal_cmp_archive); /* never qsort(NULL, 0): undefined */
    }
    pthread_mutex_lock(&a->mu);
    int added = 0;
    for (size_t i = 0; i < nfound && a->njobs < MAX_QUEUE; i++) {
        if (job_find(a, found[i].name) != NULL || tm_wal_spool_done_exists(a->sp, found[i].name)) {
            continue;
        }
        a->jobs[a->njobs++] = (job){found[i], 0, 0};
        added++;
    }
    if (added) {
        qsort(a->jobs, a->njobs, sizeof(job), tm_wal_cmp_archive); /* name is first */
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    free(found);
    return TM_OK;
}

static void write_status(archiver *a, size_t nready, int64_t oldest_ms, const char *oldest)
{
    char *path = tm_wal_spool_path(a->sp, "archiver.json", NULL);
    if (path == NULL) {
        return;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL) {
        free(path);
        return;
    }
    pthread_mutex_lock(&a->mu);
    size_t inflight = 0;
    for (size_t i = 0; i < a->njobs; i++) {
        inflight += a->jobs[i].state == 1;
    }
    fprintf(f,
            "{\"pid\": %ld, \"updated_ms\": %" PRId64 ", \"workers\": %d, \"ready\": %zu, "
            "\"queue\": %zu, \"in_flight\": %zu, \"oldest_ready\": \"%s\", "
            "\"archive_lag_s\": %.3f, \"pushed\": %" PRIu64 ", \"already\": %" PRIu64
            ", \"failed\": %" PRIu64 ", \"last_pushed\": \"%s\", \"last_pushed_ms\": %" PRId64
            ", \"last_error\": \"",
            (long)getpid(), tm_now_ms(), a->o->workers, nready, a->njobs, inflight, oldest,
            (double)oldest_ms / 1000.0, a->pushed, a->already, a->failed, a->last_pushed,
            a->last_pushed_ms);
    for (const char *s = a->last_error; *s; s++) {
        if (*s == '"' || *s == '\\') {
            fputc('\\', f);
        }
        fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
    }
    fputs("\"}\n", f);
    pthread_mutex_unlock(&a->mu);
    fclose(f);
    tm_file_write_atomic(path, buf, len, 0600, NULL);
    free(buf);
    free(path);
}

/* done/ markers of files PostgreSQL no longer lists as ready are kept for a
 * while (wal-push --async may still be about to ask), then removed. */
static void clean_done(archiver *a)
{
    char *dir = tm_wal_spool_path(a->sp, "done", NULL);
    DIR *d = dir != NULL ? opendir(dir) : NULL;
    if (d == NULL) {
        free(dir);
        return;
    }
    int64_t now = tm_now_s();
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') {
            continue;
        }
        char *p = NULL, *ready = NULL;
        struct stat st;
        if (asprintf(&p, "%s/%s", dir, de->d_name) >= 0 &&
            asprintf(&ready, "%s/archive_status/%s.ready", a->wal_dir, de->d_name) >= 0 &&
            stat(p, &st) == 0 && now - st.st_mtim.tv_sec > 3600 && access(ready, F_OK) != 0) {
            unlink(p);
        }
        free(p);
        free(ready);
    }
    closedir(d);
    free(dir);
}

int tm_wal_archiver_run(const tm_agent_conf *conf, const tm_wal_archiver_opts *o,
                        volatile sig_atomic_t *stop, tm_err *err)
{
    archiver a = {0};
    a.conf = conf;
    a.o = o;
    int nw = o->workers > 0 ? o->workers : 4;
    int rc = tm_wal_spool_open(&a.sp, conf->state_dir, o->target, err);
    if (rc != TM_OK) {
        return rc;
    }
    if (asprintf(&a.wal_dir, "%s/pg_wal", o->pgdata) < 0 ||
        (a.jobs = calloc(MAX_QUEUE, sizeof(job))) == NULL) {
        tm_wal_spool_free(a.sp);
        free(a.jobs);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    pthread_t *th = calloc((size_t)nw, sizeof(*th));
    int started = 0;
    for (int i = 0; th != NULL && i < nw; i++) {
        if (pthread_create(&th[i], NULL, worker, &a) == 0) {
            started++;
        }
    }
    tm_info("wal-archiver", "event=started target=%s pgdata=%s workers=%d", o->target, o->pgdata,
            started);
    int64_t last_clean = 0;
    while (started > 0 && !*stop) {
        size_t nready = 0;
        int64_t oldest_ms = 0;
        char oldest[TM_WAL_NAME_MAX];
        tm_err e = {0};
        if (scan(&a, &nready, &oldest_ms, oldest, sizeof(oldest), &e) != TM_OK) {
            tm_warn("wal-archiver", "event=scan_failed msg=\"%s\"", e.msg);
        }
        write_status(&a, nready, oldest_ms, oldest);
        if (tm_now_s() - last_clean > 60) {
            clean_done(&a);
            last_clean = tm_now_s();
        }
        if (o->once) {
            pthread_mutex_lock(&a.mu);
            int empty = a.njobs == 0;
            /* In once mode a file that keeps failing ends the run. */
            int stuck = a.failed > 0 && a.njobs > 0;
            pthread_mutex_unlock(&a.mu);
            if (empty || stuck) {
                break;
            }
        }
        usleep((useconds_t)(o->interval_ms > 0 ? o->interval_ms : 200) * 1000);
    }
    pthread_mutex_lock(&a.mu);
    a.stopping = 1;
    /* Drop what has not started; in-flight pushes finish (their files stay
     * .ready for PostgreSQL's own wal-push otherwise). */
    for (size_t i = 0; i < a.njobs;) {
        if (a.jobs[i].state == 0) {
            job_remove(&a, &a.jobs[i]);
        } else {
            i++;
        }
    }
    pthread_cond_broadcast(&a.cv);
    pthread_mutex_unlock(&a.mu);
    for (int i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
    }
    size_t nready = 0;
    int64_t oldest_ms = 0;
    char oldest[TM_WAL_NAME_MAX] = "";
    tm_err e = {0};
    scan(&a, &nready, &oldest_ms, oldest, sizeof(oldest), &e);
    pthread_mutex_lock(&a.mu);
    a.njobs = 0;
    pthread_mutex_unlock(&a.mu);
    write_status(&a, nready, oldest_ms, oldest);
    tm_info("wal-archiver", "event=stopped pushed=%" PRIu64 " failed=%" PRIu64, a.pushed, a.failed);
    uint64_t failed = a.failed;
    free(th);
    free(a.jobs);
    free(a.wal_dir);
    pthread_mutex_destroy(&a.mu);
    pthread_cond_destroy(&a.cv);
    tm_wal_spool_free(a.sp);
    if (started == 0) {
        return tm_err_set(err, TM_EINTERNAL, "no archiver worker could start");
    }
    if (o->once && failed > 0) {
        return tm_err_set(err, TM_EIO, "%" PRIu64 " pushes failed", failed);
    }
    return TM_OK;
}
