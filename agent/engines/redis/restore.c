/*
 * restore.c - restore a Redis snapshot from the repositories: pick the
 * backup (the one named, or the newest that opens), stream its RDB through
 * the checker into DIR/dump.rdb (written only through restore_root.h, so a
 * directory a running server uses, or anything outside DIR, is never
 * touched), and optionally start redis-server on it, on 127.0.0.1, and wait
 * until it has loaded the dataset.
 *
 * A restore to a time needs the AOF shipped after the snapshot; until the
 * agent ships it (AOF shipping is not wired yet), a --time restore is refused
 * loudly rather than silently giving the older snapshot.
 */
#include "agent/engines/redis/redis.h"
#include "agent/result_kv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "agent/engines/redis/aof_truncate.h"
#include "agent/engines/redis/rdb_check.h"
#include "agent/repo/repo_log.h"
#include "agent/repo/repository.h"
#include "agent/restore_root.h"
#include "common/log.h"
#include "common/util.h"

static int id_desc(const void *a, const void *b)
{
    return strcmp(*(char *const *)b, *(char *const *)a);
}

/* Open backup id, or the newest Redis snapshot of target that opens in any
 * repository. Ids begin with their UTC second, so they sort by time. */
static int open_backup(tm_repo_set *rs, const char *target, const char *id, tm_backup_reader **out,
                       tm_err *err)
{
    if (id != NULL) {
        int rc = tm_backup_open(rs, target, id, NULL, out, err);
        if (rc == TM_OK) {
            const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(*out));
            if (m->engine == NULL || strcmp(m->engine, "redis") != 0) {
                tm_backup_reader_free(*out);
                *out = NULL;
                return tm_err_set(err, TM_EINVAL, "backup %s of %s is a %s backup, not Redis", id,
                                  target, m->engine ? m->engine : "?");
            }
        }
        return rc;
    }
    char **ids = NULL;
    size_t nids = 0, listed = 0;
    int rc = TM_OK;
    for (size_t r = 0; r < tm_repo_set_count(rs) && rc == TM_OK; r++) {
        tm_backup_info *infos = NULL;
        size_t ni = 0;
        tm_err e = {0};
        if (tm_repo_scan(rs, r, target, &infos, &ni, &e) != TM_OK) {
            tm_warn("redis", "event=repo_list_failed repo=%s msg=\"%s\"", tm_repo_set_name(rs, r),
                    e.msg);
            continue;
        }
        listed++;
        char **nv = realloc(ids, (nids + ni + 1) * sizeof(*ids));
        if (nv == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        } else {
            ids = nv;
        }
        for (size_t i = 0; rc == TM_OK && i < ni; i++) {
            if (infos[i].has_manifest && (ids[nids] = strdup(infos[i].backup_id)) != NULL) {
                nids++;
            }
        }
        tm_backup_infos_free(infos, ni);
    }
    if (rc == TM_OK && listed == 0) {
        rc = tm_err_set(err, TM_EUNAVAIL, "no repository could be listed for target %s", target);
    }
    if (nids > 1) {
        qsort(ids, nids, sizeof(*ids), id_desc);
    }
    *out = NULL;
    for (size_t k = 0; rc == TM_OK && *out == NULL && k < nids; k++) {
        tm_err e = {0};
        tm_backup_reader *rd = NULL;
        if (tm_backup_open(rs, target, ids[k], NULL, &rd, &e) != TM_OK) {
            if (e.code == TM_EAUTH) {
                rc = tm_err_set(err, TM_EAUTH, "%s", e.msg);
                break;
            }
            tm_warn("redis", "event=backup_unreadable backup=%s msg=\"%s\"", ids[k], e.msg);
            continue;
        }
        const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(rd));
        if (m->engine != NULL && strcmp(m->engine, "redis") == 0) {
            *out = rd;
        } else {
            tm_backup_reader_free(rd);
        }
    }
    for (size_t k = 0; k < nids; k++) {
        free(ids[k]);
    }
    free(ids);
    if (rc == TM_OK && *out == NULL) {
        rc = tm_err_set(err, TM_ENOENT, "no Redis snapshot of target %s in any repository", target);
    }
    return rc;
}

int tm_redis_write_all(int fd, const void *buf, size_t len, const char *what, tm_err *err)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return tm_err_set(err, errno == ENOSPC ? TM_ENOSPC : TM_EIO, "write %s: %s", what,
                              strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return TM_OK;
}

/* The restore's sink: the RDB to the file and the checker. */
typedef struct rdb_out {
    int fd;
    tm_rdb_check *chk;
    uint64_t bytes;
    tm_task_ctx *ctx;
} rdb_out;

static int out_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    rdb_out *o = arg;
    if (o->ctx != NULL && tm_task_cancelled(o->ctx)) {
        return tm_err_set(err, TM_EBUSY, "cancelled");
    }
    int rc = tm_rdb_check_feed(o->chk, buf, len, err);
    if (rc == TM_OK) {
        rc = tm_redis_write_all(o->fd, buf, len, TM_REDIS_RDB_OBJECT, err);
    }
    o->bytes += len;
    if (o->ctx != NULL) {
        tm_task_progress(o->ctx, "restore", o->bytes, 0, 0, 1);
    }
    return rc;
}

static int out_commit(void *arg, tm_err *err)
{
    rdb_out *o = arg;
    if (fsync(o->fd) != 0) {
        return tm_err_set(err, TM_EIO, "fsync %s: %s", TM_REDIS_RDB_OBJECT, strerror(errno));
    }
    return TM_OK;
}

static void out_abort(void *arg)
{
    (void)arg; /* the caller removes the file */
}

static double secs_since(uint64_t t0)
{
    return (double)(tm_mono_ns() - t0) / 1e9;
}

/* PING until PONG (not LOADING) or timeout; pid is the daemonising parent
 * already reaped, so only the answer tells. */
static int wait_ready(uint32_t port, int timeout_ms, const char *dir, tm_err *err)
{
    int64_t deadline = tm_now_ms() + timeout_ms;
    char last[256] = "no answer";
    while (tm_now_ms() < deadline) {
        struct timeval tv = {.tv_sec = 2};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", (int)port, tv);
        if (c != NULL && !c->err) {
            redisSetTimeout(c, tv);
            redisReply *r = redisCommand(c, "PING");
            if (r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0) {
                freeReplyObject(r);
                redisFree(c);
                return TM_OK;
            }
            snprintf(last, sizeof(last), "%s",
                     r != NULL && r->str != NULL ? r->str
                     : c->errstr[0]              ? c->errstr
                                                 : "?");
            freeReplyObject(r);
        } else if (c != NULL) {
            snprintf(last, sizeof(last), "%s", c->errstr);
        }
        redisFree(c);
        usleep(50000);
    }
    return tm_err_set(err, TM_ETIMEDOUT,
                      "redis-server on 127.0.0.1:%u (dir %s) not ready after %d ms: %s (see "
                      "%s/redis.log)",
                      port, dir, timeout_ms, last, dir);
}

static int start_server(const char *bin, const char *dir, uint32_t port, int aof, tm_err *err)
{
    char ports[16], pidfile[PATH_MAX + 32], logfile[PATH_MAX + 32];
    snprintf(ports, sizeof(ports), "%u", port);
    snprintf(pidfile, sizeof(pidfile), "%s/redis.pid", dir);
    snprintf(logfile, sizeof(logfile), "%s/redis.log", dir);
    char *const argv[] = {
        (char *)bin,
        "--port",
        ports,
        "--bind",
        "127.0.0.1",
        "--dir",
        (char *)dir,
        "--dbfilename",
        TM_REDIS_RDB_OBJECT,
        "--appendonly",
        aof ? "yes" : "no",
        "--appenddirname",
        TM_REDIS_AOF_DIR,
        "--appendfilename",
        TM_REDIS_AOF_NAME,
        "--save",
        "",
        "--daemonize",
        "yes",
        "--pidfile",
        pidfile,
        "--logfile",
        logfile,
        "--protected-mode",
        "yes",
        NULL,
    };
    char **env = NULL;
    int rc = tm_restore_env_new(NULL, NULL, &env, err);
    if (rc != TM_OK) {
        return rc;
    }
    pid_t pid = fork();
    if (pid < 0) {
        tm_restore_env_free(env);
        return tm_err_set(err, TM_EIO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(nul, 2);
        }
        if (chdir(dir) != 0) {
            _exit(126);
        }
        execvpe(bin, argv, env);
        _exit(127);
    }
    tm_restore_env_free(env);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        return tm_err_set(err, TM_EIO, "%s exited with %d before daemonising (%s; see %s)", bin,
                          WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                          WIFEXITED(st) && WEXITSTATUS(st) == 127 ? "not found" : "failed",
                          logfile);
    }
    return TM_OK;
}

static pid_t read_pid(const char *dir)
{
    char path[PATH_MAX + 32], *buf = NULL;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/redis.pid", dir);
    if (tm_file_read(path, &buf, &len, NULL) != TM_OK) {
        return 0;
    }
    long v = strtol(buf, NULL, 10);
    free(buf);
    return v > 1 ? (pid_t)v : 0;
}

int tm_redis_server_stop(const char *dir, uint32_t port, tm_err *err)
{
    pid_t pid = read_pid(dir);
    struct timeval tv = {.tv_sec = 5};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", (int)port, tv);
    if (c != NULL && !c->err) {
        redisSetTimeout(c, tv);
        /* The connection closes on success: no reply is the good case. */
        redisReply *r = redisCommand(c, "SHUTDOWN NOSAVE");
        freeReplyObject(r);
    }
    redisFree(c);
    if (pid <= 0) {
        return TM_OK;
    }
    for (int i = 0; i < 300; i++) {
        if (kill(pid, 0) != 0 && errno == ESRCH) {
            return TM_OK;
        }
        if (i == 200) {
            kill(pid, SIGKILL);
        }
        usleep(50000);
    }
    return tm_err_set(err, TM_EBUSY, "redis-server pid %d (dir %s) did not stop", (int)pid, dir);
}

/* "YYYY-MM-DD HH:MM:SS+00" (or a trailing Z) in UTC. */
int tm_redis_time_parse(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (end == NULL ||
        (strcmp(end, "+00") != 0 && strcmp(end, "+00:00") != 0 && strcmp(end, "Z") != 0)) {
        return TM_EINVAL;
    }
    *out = (int64_t)timegm(&tm);
    return TM_OK;
}

/* One shipped object, fetched to a local temporary file. */
typedef struct piece {
    char rel[128];
    tm_redis_log_name n;
    char path[PATH_MAX + 32];
} piece;

/* An AOF source over the pieces of one file, in order. */
typedef struct src_files {
    piece *p;
    size_t n, i;
    int fd;
} src_files;

static int src_read(void *arg, void *buf, size_t cap, size_t *got, tm_err *err)
{
    src_files *s = arg;
    *got = 0;
    while (s->i < s->n) {
        if (s->fd < 0 && (s->fd = open(s->p[s->i].path, O_RDONLY | O_CLOEXEC)) < 0) {
            return tm_err_set(err, TM_EIO, "open %s: %s", s->p[s->i].path, strerror(errno));
        }
        ssize_t r = read(s->fd, buf, cap);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            return tm_err_set(err, TM_EIO, "read %s: %s", s->p[s->i].path, strerror(errno));
        }
        if (r > 0) {
            *got = (size_t)r;
            return TM_OK;
        }
        close(s->fd);
        s->fd = -1;
        s->i++;
    }
    return TM_OK;
}

/* The sink of aof_truncate: files under DIR/appendonlydir, through the root. */
typedef struct aof_out {
    tm_restore_root *root;
    int fd;
    char rel[TM_AOF_NAME_MAX + 32];
} aof_out;

static int aof_open(void *arg, const char *name, tm_err *err)
{
    aof_out *a = arg;
    snprintf(a->rel, sizeof(a->rel), "%s/%s", TM_REDIS_AOF_DIR, name);
    return tm_restore_root_create(a->root, a->rel, &a->fd, err);
}

static int aof_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    aof_out *a = arg;
    return tm_redis_write_all(a->fd, buf, len, a->rel, err);
}

static int aof_truncate_cb(void *arg, uint64_t len, tm_err *err)
{
    aof_out *a = arg;
    if (ftruncate(a->fd, (off_t)len) != 0 || lseek(a->fd, 0, SEEK_END) < 0) {
        return tm_err_set(err, TM_EIO, "truncate %s: %s", a->rel, strerror(errno));
    }
    return TM_OK;
}

static int aof_close(void *arg, tm_err *err)
{
    aof_out *a = arg;
    int rc = TM_OK;
    if (fsync(a->fd) != 0) {
        rc = tm_err_set(err, TM_EIO, "fsync %s: %s", a->rel, strerror(errno));
    }
    if (rc == TM_OK) {
        rc = tm_restore_root_attrs(a->root, a->fd, a->rel, 0600, -1, err);
    }
    if (close(a->fd) != 0 && rc == TM_OK) {
        rc = tm_err_set(err, TM_EIO, "close %s: %s", a->rel, strerror(errno));
    }
    a->fd = -1;
    return rc;
}

static int rm_tmp(const char *dir)
{
    char path[PATH_MAX + 300];
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] != '.') {
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    return rmdir(dir);
}

/* Restore to o->time from the shipped AOF into root/appendonlydir. */
static int pitr(const tm_agent_conf *conf, tm_repo_set *rs, tm_restore_root *root,
                const tm_redis_restore_opts *o, tm_redis_restore_report *rep, tm_err *err)
{
    int64_t target = 0;
    if (tm_redis_time_parse(o->time, &target) != TM_OK) {
        return tm_err_set(err, TM_EINVAL, "restore time '%.60s' is not 'YYYY-MM-DD HH:MM:SS+00'",
                          o->time);
    }
    tm_log_item *items = NULL;
    size_t n = 0;
    int rc = TM_EUNAVAIL;
    for (size_t i = 0; i < tm_repo_set_count(rs) && rc != TM_OK; i++) {
        rc = tm_log_scan(rs, i, o->target, &items, &n, err);
    }
    if (rc != TM_OK) {
        return rc;
    }
    /* The newest chain whose base is not newer than the target. */
    uint64_t chain = 0;
    int found = 0, untimed = 0;
    int64_t newest = 0;
    for (size_t i = 0; i < n; i++) {
        tm_redis_log_name ln;
        if (!items[i].has_meta || !items[i].has_object ||
            tm_redis_log_name_parse(items[i].rel, &ln) != TM_OK) {
            continue;
        }
        if (ln.last_ts > newest) {
            newest = ln.last_ts;
        }
        if (ln.base) {
            if (ln.last_ts == 0) {
                untimed = 1;
            } else if (ln.last_ts <= target && (!found || ln.chain >= chain)) {
                chain = ln.chain;
                found = 1;
            }
        }
    }
    if (!found) {
        tm_log_items_free(items, n);
        if (n == 0) {
            return tm_err_set(err, TM_ENOENT,
                              "restore of %s to %s: no AOF was shipped for this target, so its "
                              "window is snapshot-only (enable appendonly and "
                              "aof-timestamp-enabled, and let the agent ship): restore a "
                              "snapshot with --backup ID or without --time",
                              o->target, o->time);
        }
        return tm_err_set(err, TM_ENOENT, "restore of %s to %s: %s", o->target, o->time,
                          untimed ? "the shipped AOF has no #TS: timestamps "
                                    "(aof-timestamp-enabled no): the window is snapshot-only"
                                  : "the time is before the oldest shipped AOF base");
    }
    char tmp[PATH_MAX];
    const char *sdir = conf->state_dir != NULL ? conf->state_dir : "/tmp";
    snprintf(tmp, sizeof(tmp), "%s/tm-redis-pitr-XXXXXX", sdir);
    /* A staging host's agent may never have run: its state_dir is made. */
    tm_err e_dir = {0};
    tm_mkdir_p(sdir, 0700, &e_dir);
    if (mkdtemp(tmp) == NULL) {
        tm_log_items_free(items, n);
        return tm_err_set(err, TM_EIO, "mkdtemp %s: %s", tmp, strerror(errno));
    }
    piece *pc = calloc(n ? n : 1, sizeof(*pc));
    size_t np = 0;
    tm_log_store *ls = NULL;
    rc = pc == NULL ? tm_err_set(err, TM_ENOMEM, "out of memory")
                    : tm_log_store_open(&ls, rs, o->target, err);
    for (size_t i = 0; rc == TM_OK && i < n; i++) {
        tm_redis_log_name ln;
        if (!items[i].has_meta || !items[i].has_object ||
            tm_redis_log_name_parse(items[i].rel, &ln) != TM_OK || ln.chain != chain) {
            continue;
        }
        piece *p = &pc[np];
        snprintf(p->rel, sizeof(p->rel), "%s", items[i].rel);
        p->n = ln;
        snprintf(p->path, sizeof(p->path), "%s/%zu", tmp, np);
        np++;
        rc = tm_log_get_file(ls, p->rel, p->path, NULL, NULL, err);
        if (o->ctx != NULL) {
            tm_task_progress(o->ctx, "aof", 0, 0, (uint32_t)np, 0);
        }
    }
    tm_log_items_free(items, n);
    /* The pieces of each file must follow each other without a hole. A
     * store that failed in one repository is retried from the shipper's
     * saved position with the bytes appended meanwhile: the repositories
     * that took the first try then hold pieces of one file from the same
     * offset, the later one longer (names sort them by offset, then time).
     * The file is append-only, so the longest piece at an offset holds the
     * others' bytes: keep it, and drop pieces inside what is covered. */
    size_t kept = 0;
    uint64_t covered = 0;
    for (size_t i = 0; rc == TM_OK && i < np; i++) {
        struct stat st;
        if (stat(pc[i].path, &st) != 0) {
            rc = tm_err_set(err, TM_EIO, "stat %s: %s", pc[i].path, strerror(errno));
            break;
        }
        uint64_t end = pc[i].n.start + (uint64_t)st.st_size;
        piece *prev = kept > 0 ? &pc[kept - 1] : NULL;
        int same = prev != NULL && prev->n.base == pc[i].n.base && prev->n.seq == pc[i].n.seq;
        if (same && end <= covered) {
            continue; /* an earlier try's bytes, all in the kept pieces */
        }
        if (same && pc[i].n.start == prev->n.start) {
            *prev = pc[i]; /* the same offset, longer: replaces it */
            covered = end;
            continue;
        }
        if (!same && pc[i].n.start != 0) {
            rc = tm_err_set(err, TM_ECORRUPT,
                            "shipped AOF of %s: %s starts at offset %" PRIu64
                            " but nothing before it was shipped (a gap)",
                            o->target, pc[i].rel, pc[i].n.start);
        } else if (same && pc[i].n.start != covered) {
            rc = tm_err_set(err, TM_ECORRUPT,
                            "shipped AOF of %s: %s ends at %" PRIu64 " but the next piece starts "
                            "at %" PRIu64 " (%s)",
                            o->target, prev->rel, covered, pc[i].n.start,
                            pc[i].n.start > covered ? "a gap" : "an overlap");
        }
        pc[kept++] = pc[i];
        covered = end;
    }
    np = rc == TM_OK ? kept : np;
    /* Sources: the base, then one per incr file. */
    src_files sb = {.fd = -1}, *si = calloc(np ? np : 1, sizeof(*si));
    tm_aof_source base = {0}, *incrs = calloc(np ? np : 1, sizeof(*incrs));
    char(*names)[64] = calloc(np + 1, sizeof(*names));
    size_t ni = 0;
    if (rc == TM_OK && (si == NULL || incrs == NULL || names == NULL)) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    if (rc == TM_OK && (np == 0 || !pc[0].n.base)) {
        rc = tm_err_set(err, TM_ENOENT, "shipped AOF of %s: chain %" PRIu64 " has no base",
                        o->target, chain);
    }
    for (size_t i = 0; rc == TM_OK && i < np;) {
        size_t j = i;
        while (j < np && pc[j].n.base == pc[i].n.base && pc[j].n.seq == pc[i].n.seq) {
            j++;
        }
        if (pc[i].n.base) {
            if (i != 0) {
                rc = tm_err_set(err, TM_ECORRUPT, "shipped AOF of %s: two bases in chain %" PRIu64,
                                o->target, chain);
                break;
            }
            snprintf(names[np], sizeof(names[np]), TM_REDIS_AOF_NAME ".%" PRId64 ".base.%s",
                     pc[i].n.seq, pc[i].n.kind == 'r' ? "rdb" : "aof");
            sb = (src_files){.p = &pc[i], .n = j - i, .fd = -1};
            base = (tm_aof_source){
                .name = names[np], .seq = pc[i].n.seq, .read = src_read, .arg = &sb};
        } else {
            snprintf(names[ni], sizeof(names[ni]), TM_REDIS_AOF_NAME ".%" PRId64 ".incr.aof",
                     pc[i].n.seq);
            si[ni] = (src_files){.p = &pc[i], .n = j - i, .fd = -1};
            incrs[ni] = (tm_aof_source){
                .name = names[ni], .seq = pc[i].n.seq, .read = src_read, .arg = &si[ni]};
            ni++;
        }
        i = j;
    }
    tm_aof_truncate_result tr;
    memset(&tr, 0, sizeof(tr));
    int made_dir = 0;
    if (rc == TM_OK) {
        rc = tm_restore_root_mkdir(root, TM_REDIS_AOF_DIR, 0700, err);
        made_dir = rc == TM_OK;
    }
    if (rc == TM_OK) {
        aof_out ao = {.root = root, .fd = -1};
        tm_aof_sink sink = {.open = aof_open,
                            .write = aof_write,
                            .truncate = aof_truncate_cb,
                            .close = aof_close,
                            .arg = &ao};
        tm_aof_truncate_opts to = {.target = target,
                                   .manifest_name = TM_REDIS_AOF_NAME ".manifest",
                                   .base_ts = pc[0].n.last_ts};
        rc = tm_aof_truncate(&to, &base, incrs, ni, &sink, &tr, err);
        if (ao.fd >= 0) {
            close(ao.fd);
        }
    }
    if (rc == TM_OK && tr.annotations == 0 && tr.bytes > 0 && ni > 0) {
        rc = tm_err_set(err, TM_ENOENT,
                        "restore of %s to %s: the shipped AOF has no #TS: timestamps "
                        "(aof-timestamp-enabled no): the window is snapshot-only",
                        o->target, o->time);
    }
    if (rc != TM_OK && made_dir) {
        /* Nothing half-written stays behind (and a retry is not refused
         * for an appendonlydir this attempt left). */
        char rel[TM_AOF_NAME_MAX + 32];
        tm_err e2 = {0};
        for (size_t i = 0; i <= ni; i++) {
            const char *nm = i < ni ? names[i] : names[np];
            snprintf(rel, sizeof(rel), "%s/%s", TM_REDIS_AOF_DIR, nm);
            if (nm[0] != '\0') {
                tm_restore_root_remove(root, rel, 0, &e2);
            }
        }
        snprintf(rel, sizeof(rel), "%s/%s.manifest", TM_REDIS_AOF_DIR, TM_REDIS_AOF_NAME);
        tm_restore_root_remove(root, rel, 0, &e2);
        tm_restore_root_remove(root, TM_REDIS_AOF_DIR, 1, &e2);
    }
    if (rc == TM_OK) {
        snprintf(rep->backup_id, sizeof(rep->backup_id), "aof-chain-%" PRIu64, chain);
        rep->bytes = tr.bytes;
        rep->snapshot_time = tr.last_ts ? tr.last_ts : pc[0].n.last_ts;
        tm_info("redis",
                "event=pitr_prepared target=%s time=\"%s\" chain=%" PRIu64 " pieces=%zu "
                "kept_incrs=%zu dropped_incrs=%zu cut=%d cut_ts=%" PRId64 " last_ts=%" PRId64
                " bytes=%" PRIu64 " newest_shipped=%" PRId64,
                o->target, o->time, chain, np, tr.kept_incrs, tr.dropped_incrs, tr.cut, tr.cut_ts,
                tr.last_ts, tr.bytes, newest);
    }
    if (sb.fd >= 0) {
        close(sb.fd);
    }
    for (size_t i = 0; si != NULL && i < ni; i++) {
        if (si[i].fd >= 0) {
            close(si[i].fd);
        }
    }
    free(si);
    free(incrs);
    free(names);
    free(pc);
    tm_log_store_free(ls);
    rm_tmp(tmp);
    return rc;
}

int tm_redis_restore(const tm_agent_conf *conf, const tm_redis_restore_opts *o,
                     tm_redis_restore_report *rep, tm_err *err)
{
    memset(rep, 0, sizeof(*rep));
    uint64_t t0 = tm_mono_ns();
    int rc = tm_restore_dir_check("restore directory", o->dir, err);
    if (rc == TM_OK) {
        rc = tm_restore_dir_busy(o->dir, err);
    }
    char existing[PATH_MAX + 32];
    snprintf(existing, sizeof(existing), "%s/%s", o->dir, TM_REDIS_RDB_OBJECT);
    if (rc == TM_OK && access(existing, F_OK) == 0) {
        rc = tm_err_set(err, TM_EEXIST,
                        "%s already holds a %s: restore into an empty directory (nothing was "
                        "changed)",
                        o->dir, TM_REDIS_RDB_OBJECT);
    }
    tm_repo_set *rs = NULL;
    tm_backup_reader *rd = NULL;
    tm_restore_root *root = NULL;
    rdb_out out = {.fd = -1, .ctx = o->ctx};
    int created = 0;
    snprintf(existing, sizeof(existing), "%s/%s", o->dir, TM_REDIS_AOF_DIR);
    if (rc == TM_OK && access(existing, F_OK) == 0) {
        rc = tm_err_set(err, TM_EEXIST,
                        "%s already holds an %s: restore into an empty directory (nothing was "
                        "changed)",
                        o->dir, TM_REDIS_AOF_DIR);
    }
    snprintf(existing, sizeof(existing), "%s/%s", o->dir, TM_REDIS_RDB_OBJECT);
    if (rc == TM_OK) {
        rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, err);
    }
    if (rc == TM_OK && o->time != NULL) {
        rc = tm_restore_root_new(o->dir, &(tm_restore_root_opts){0}, &root, err);
        if (rc == TM_OK) {
            rc = pitr(conf, rs, root, o, rep, err);
        }
        goto started;
    }
    if (rc == TM_OK) {
        rc = open_backup(rs, o->target, o->backup_id, &rd, err);
    }
    if (rc == TM_OK) {
        const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(rd));
        snprintf(rep->backup_id, sizeof(rep->backup_id), "%s", m->backup_id ? m->backup_id : "");
        const char *v = tm_info_get(m, "keyspace");
        if (v != NULL) {
            tm_redis_keyspace_parse(v, &rep->recorded);
        }
        v = tm_info_get(m, "stop_time");
        rep->snapshot_time = v != NULL ? strtoll(v, NULL, 10) : m->created_at;
        tm_info("redis", "event=restore_started target=%s backup=%s repo=%s dir=%s", o->target,
                rep->backup_id, tm_backup_reader_repo(rd), o->dir);
        rc = tm_restore_root_new(o->dir, &(tm_restore_root_opts){0}, &root, err);
    }
    if (rc == TM_OK) {
        rc = tm_restore_root_create(root, TM_REDIS_RDB_OBJECT, &out.fd, err);
        created = rc == TM_OK;
    }
    if (rc == TM_OK) {
        rc = tm_rdb_check_new(&out.chk, err);
    }
    if (rc == TM_OK) {
        tm_sink sink = {.write = out_write,
                        .commit = out_commit,
                        .abort = out_abort,
                        .arg = &out,
                        .name = "restore"};
        rc = tm_backup_get(rd, TM_REDIS_RDB_OBJECT, &sink, err);
    }
    if (rc == TM_OK) {
        rc = tm_rdb_check_finish(out.chk, err);
        if (rc != TM_OK) {
            tm_err_prefix(err, "backup %s: restored RDB", rep->backup_id);
        }
    }
    if (rc == TM_OK) {
        rc = tm_restore_root_attrs(root, out.fd, TM_REDIS_RDB_OBJECT, 0600, -1, err);
    }
    if (out.fd >= 0 && close(out.fd) != 0 && rc == TM_OK) {
        rc = tm_err_set(err, TM_EIO, "close %s: %s", existing, strerror(errno));
    }
    if (rc == TM_OK) {
        rep->bytes = out.bytes;
        rep->rdb_version = tm_rdb_check_version(out.chk);
        for (size_t i = 0; i < tm_rdb_check_ndbs(out.chk) && i < TM_REDIS_MAX_DBS; i++) {
            const tm_rdb_db_count *d = tm_rdb_check_db(out.chk, i);
            rep->checked.db[i].db = d->db;
            rep->checked.db[i].keys = d->keys;
            rep->checked.db[i].expires = d->expires;
            rep->checked.n++;
        }
    }
started:
    rep->files_s = secs_since(t0);
    if (rc != TM_OK && created) {
        tm_err e2 = {0};
        tm_restore_root_remove(root, TM_REDIS_RDB_OBJECT, 0, &e2);
    }
    if (rc == TM_OK && o->start) {
        uint64_t t1 = tm_mono_ns();
        uint32_t port = o->port ? o->port : 6379;
        const char *bin = o->server_bin != NULL ? o->server_bin : "redis-server";
        rc = start_server(bin, o->dir, port, o->time != NULL, err);
        if (rc == TM_OK) {
            rc = wait_ready(port, 600000, o->dir, err);
            if (rc != TM_OK) {
                tm_err e2 = {0};
                tm_redis_server_stop(o->dir, port, &e2);
            }
        }
        rep->pid = rc == TM_OK ? read_pid(o->dir) : 0;
        rep->start_s = secs_since(t1);
    }
    rep->total_s = secs_since(t0);
    if (rc == TM_OK) {
        tm_info("redis",
                "event=restore_done target=%s backup=%s dir=%s bytes=%" PRIu64
                " rdb_version=%d started=%d port=%u files_s=%.3f start_s=%.3f",
                o->target, rep->backup_id, o->dir, rep->bytes, rep->rdb_version, o->start, o->port,
                rep->files_s, rep->start_s);
    }
    tm_rdb_check_free(out.chk);
    tm_restore_root_free(root);
    tm_backup_reader_free(rd);
    tm_repo_set_free(rs);
    return rc;
}
