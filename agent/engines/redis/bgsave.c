/*
 * bgsave.c - BGSAVE + LASTSAVE polling + the dump file (see bgsave.h).
 */
#include "agent/engines/redis/bgsave.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* CONFIG GET name -> value (RESP2: a two-element array). */
static int config_get(redisContext *c, const char *name, char *out, size_t cap, tm_redis_verdict *v,
                      tm_err *err)
{
    redisReply *r = NULL;
    int rc = tm_redis_command(c, &r, v, err, "CONFIG GET %s", name);
    if (rc != 0) {
        return rc;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        *v = TM_REDIS_FINAL;
        return tm_err_set(err, TM_EPROTO, "CONFIG GET %s: unexpected reply", name);
    }
    snprintf(out, cap, "%s", r->element[1]->str);
    freeReplyObject(r);
    return 0;
}

static int lastsave(redisContext *c, long long *t, tm_redis_verdict *v, tm_err *err)
{
    redisReply *r = NULL;
    int rc = tm_redis_command(c, &r, v, err, "LASTSAVE");
    if (rc != 0) {
        return rc;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        freeReplyObject(r);
        *v = TM_REDIS_FINAL;
        return tm_err_set(err, TM_EPROTO, "LASTSAVE: not an integer");
    }
    *t = r->integer;
    freeReplyObject(r);
    return 0;
}

/* The value of "field:" in an INFO reply, as an integer; -1 if absent. */
static long long info_field(const char *info, const char *field)
{
    size_t n = strlen(field);
    for (const char *p = info; p != NULL && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, field, n) == 0 && p[n] == ':') {
            return strtoll(p + n + 1, NULL, 10);
        }
    }
    return -1;
}

typedef struct persistence {
    int bgsave_running; /* an RDB child exists */
    int aof_rewriting;  /* an AOF rewrite child exists (delays a scheduled BGSAVE) */
    int last_failed;    /* rdb_last_bgsave_status:err */
} persistence;

static int info_persistence(redisContext *c, persistence *p, tm_redis_verdict *v, tm_err *err)
{
    redisReply *r = NULL;
    int rc = tm_redis_command(c, &r, v, err, "INFO persistence");
    if (rc != 0) {
        return rc;
    }
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        *v = TM_REDIS_FINAL;
        return tm_err_set(err, TM_EPROTO, "INFO persistence: not a string");
    }
    p->bgsave_running = info_field(r->str, "rdb_bgsave_in_progress") == 1;
    p->aof_rewriting = info_field(r->str, "aof_rewrite_in_progress") == 1 ||
                       info_field(r->str, "aof_rewrite_scheduled") == 1;
    p->last_failed = strstr(r->str, "rdb_last_bgsave_status:err") != NULL;
    freeReplyObject(r);
    return 0;
}

/* Ask for a save. *started = 1 when this call started one (so a failure seen
 * afterwards is ours); 0 when one was already running or is scheduled behind
 * an AOF rewrite. */
static int ask_bgsave(redisContext *c, int *started, tm_redis_verdict *v, tm_err *err)
{
    redisReply *r = NULL;
    *started = 0;
    int rc = tm_redis_command(c, &r, v, err, "BGSAVE SCHEDULE");
    if (rc != 0) {
        if (err != NULL && strstr(err->msg, "already in progress") != NULL) {
            tm_err_clear(err);
            return 0; /* that save is as good as ours: it ends after LASTSAVE's read */
        }
        return rc;
    }
    *started = r->type == REDIS_REPLY_STATUS && strstr(r->str, "started") != NULL;
    freeReplyObject(r);
    return 0;
}

static int stream_file(const char *path, tm_redis_write_fn write, void *arg,
                       tm_redis_fetch_result *res, tm_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        res->verdict = TM_REDIS_FINAL;
        return tm_err_set(err, tm_err_from_errno(e),
                          "open %s: %s (the BGSAVE fallback reads the server's dump file: the "
                          "agent must run on the Redis host, as a user that can read it)",
                          path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        res->verdict = TM_REDIS_FINAL;
        return tm_err_set(err, TM_EINVAL, "%s is not a regular file", path);
    }
    res->declared = (uint64_t)st.st_size;
    uint8_t *buf = malloc(TM_RDB_STREAM_CHUNK);
    if (buf == NULL) {
        close(fd);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, TM_RDB_STREAM_CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            res->verdict = TM_REDIS_RETRY;
            rc = tm_err_set(err, TM_EIO, "read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) {
            break;
        }
        rc = write(arg, buf, (size_t)n, err);
        if (rc != 0) {
            res->verdict = TM_REDIS_FINAL;
            tm_err_prefix(err, "at byte %" PRIu64 " of %s", res->bytes, path);
            break;
        }
        res->bytes += (uint64_t)n;
    }
    free(buf);
    close(fd);
    return rc;
}

int tm_redis_bgsave_fetch(const tm_redis_conn_opts *o, const tm_redis_bgsave_opts *bo,
                          tm_redis_write_fn write, void *arg, tm_redis_fetch_result *res,
                          tm_err *err)
{
    memset(res, 0, sizeof(*res));
    res->verdict = TM_REDIS_FINAL;
    int poll_ms = bo != NULL && bo->poll_ms > 0 ? bo->poll_ms : 200;
    int timeout_ms = bo != NULL && bo->timeout_ms > 0 ? bo->timeout_ms : 3600 * 1000;
    redisContext *c = NULL;
    int rc = tm_redis_connect(o, &c, &res->verdict, err);
    if (rc != 0) {
        return rc;
    }
    char dir[4096], file[1024], path[5200];
    long long t0 = 0, t = 0;
    int started = 0;
    persistence p = {0};
    rc = config_get(c, "dir", dir, sizeof(dir), &res->verdict, err);
    if (rc == 0) {
        rc = config_get(c, "dbfilename", file, sizeof(file), &res->verdict, err);
    }
    if (rc == 0) {
        rc = lastsave(c, &t0, &res->verdict, err);
    }
    if (rc != 0) {
        goto out;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    uint64_t begin = tm_mono_ns();
    /* LASTSAVE counts whole seconds: let one pass, so our save's LASTSAVE is
     * larger than t0 even when an earlier save ended in the same second. */
    sleep_ms(1100);
    rc = ask_bgsave(c, &started, &res->verdict, err);
    if (rc != 0) {
        goto out;
    }
    for (;;) {
        rc = lastsave(c, &t, &res->verdict, err);
        if (rc != 0) {
            goto out;
        }
        if (t > t0) {
            break;
        }
        rc = info_persistence(c, &p, &res->verdict, err);
        if (rc != 0) {
            goto out;
        }
        if (!p.bgsave_running && !p.aof_rewriting) {
            if (started && p.last_failed) {
                res->verdict = TM_REDIS_RETRY;
                rc = tm_err_set(err, TM_EUNAVAIL,
                                "BGSAVE failed on the server (rdb_last_bgsave_status:err; see "
                                "its log: disk full, fork failed?)");
                goto out;
            }
            if (!started) {
                /* The save we waited for (someone else's, or scheduled)
                 * is gone without moving LASTSAVE: ask again. */
                rc = ask_bgsave(c, &started, &res->verdict, err);
                if (rc != 0) {
                    goto out;
                }
            }
        }
        if ((tm_mono_ns() - begin) / 1000000 > (uint64_t)timeout_ms) {
            res->verdict = TM_REDIS_RETRY;
            rc = tm_err_set(err, TM_ETIMEDOUT, "BGSAVE did not finish within %d s",
                            timeout_ms / 1000);
            goto out;
        }
        sleep_ms(poll_ms);
    }
    res->wait_ms = (tm_mono_ns() - begin) / 1000000;
    rc = stream_file(path, write, arg, res, err);
    if (rc == 0) {
        res->verdict = TM_REDIS_OK;
    }
out:
    if (rc != 0) {
        tm_err_prefix(err, "redis %s:%d: RDB by BGSAVE", o->host, o->port);
    }
    redisFree(c);
    return rc;
}
