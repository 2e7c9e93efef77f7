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
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "agent/engines/redis/rdb_check.h"
#include "agent/repository.h"
#include "agent/restore_root.h"
#include "common/log.h"
#include "common/util.h"

static const char *info_get(const Tidemark__Manifest *m, const char *key)
{
    for (size_t i = 0; i < m->n_engine_info; i++) {
        if (m->engine_info[i]->key != NULL && strcmp(m->engine_info[i]->key, key) == 0) {
            return m->engine_info[i]->value;
        }
    }
    return NULL;
}

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
    const char *p = buf;
    size_t left = len;
    while (rc == TM_OK && left > 0) {
        ssize_t n = write(o->fd, p, left);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return tm_err_set(err, errno == ENOSPC ? TM_ENOSPC : TM_EIO, "write %s: %s",
                              TM_REDIS_RDB_OBJECT, strerror(errno));
        }
        p += n;
        left -= (size_t)n;
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

static int start_server(const char *bin, const char *dir, uint32_t port, tm_err *err)
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
        "no",
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

int tm_redis_restore(const tm_agent_conf *conf, const tm_redis_restore_opts *o,
                     tm_redis_restore_report *rep, tm_err *err)
{
    memset(rep, 0, sizeof(*rep));
    uint64_t t0 = tm_mono_ns();
    if (o->time != NULL) {
        return tm_err_set(err, TM_ENOENT,
                          "restore of %s to a time (%s) needs the AOF shipped after a snapshot; "
                          "this agent ships no AOF for Redis yet, so the restorable window is "
                          "snapshot-only: restore a snapshot with --backup ID or without --time",
                          o->target, o->time);
    }
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
    if (rc == TM_OK) {
        rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, err);
    }
    if (rc == TM_OK) {
        rc = open_backup(rs, o->target, o->backup_id, &rd, err);
    }
    if (rc == TM_OK) {
        const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(rd));
        snprintf(rep->backup_id, sizeof(rep->backup_id), "%s", m->backup_id ? m->backup_id : "");
        const char *v = info_get(m, "keyspace");
        if (v != NULL) {
            tm_redis_keyspace_parse(v, &rep->recorded);
        }
        v = info_get(m, "stop_time");
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
    rep->files_s = secs_since(t0);
    if (rc != TM_OK && created) {
        tm_err e2 = {0};
        tm_restore_root_remove(root, TM_REDIS_RDB_OBJECT, 0, &e2);
    }
    if (rc == TM_OK && o->start) {
        uint64_t t1 = tm_mono_ns();
        uint32_t port = o->port ? o->port : 6379;
        const char *bin = o->server_bin != NULL ? o->server_bin : "redis-server";
        rc = start_server(bin, o->dir, port, err);
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
