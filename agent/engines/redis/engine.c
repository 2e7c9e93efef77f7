/*
 * engine.c - the Redis engine as the task runner sees it, and its snapshot
 * backup: one RDB, fetched over the replication protocol (rdb_stream.c) or
 * by BGSAVE (bgsave.c), streamed through the RDB checker and into one
 * object of a backup written to every repository at once. The backup counts
 * only when the checker saw a whole RDB with a good CRC-64; otherwise the
 * object is abandoned and nothing becomes visible anywhere.
 *
 * Failures keep conn.h's verdicts: a server that is loading, out of memory,
 * forking or unreachable is a retryable failure (TM_EUNAVAIL/TM_ETIMEDOUT,
 * which the runner reports as retryable); a wrong password, a missing ACL
 * rule or a corrupt RDB is final.
 */
#include "agent/engines/redis/redis.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/engines/redis/bgsave.h"
#include "agent/engines/redis/in_use.h"
#include "agent/engines/redis/rdb_check.h"
#include "agent/engines/redis/rdb_stream.h"
#include "agent/repo/repository.h"
#include "agent/restore_root.h"
#include "agent/result_kv.h"
#include "agent/shipper.h"
#include "common/log.h"
#include "common/util.h"

void tm_redis_keyspace_fmt(const tm_redis_keyspace *k, char *out, size_t cap)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < k->n && off < cap; i++) {
        int n = snprintf(out + off, cap - off, "%sdb%" PRIu64 "=%" PRIu64 ":%" PRIu64, i ? "," : "",
                         k->db[i].db, k->db[i].keys, k->db[i].expires);
        if (n < 0) {
            break;
        }
        off += (size_t)n;
    }
}

int tm_redis_keyspace_parse(const char *s, tm_redis_keyspace *k)
{
    memset(k, 0, sizeof(*k));
    const char *p = s;
    while (p != NULL && *p != '\0') {
        unsigned long long db, keys, exp;
        int used = 0;
        if (k->n == TM_REDIS_MAX_DBS ||
            sscanf(p, "db%llu=%llu:%llu%n", &db, &keys, &exp, &used) != 3) {
            return TM_EINVAL;
        }
        k->db[k->n].db = db;
        k->db[k->n].keys = keys;
        k->db[k->n].expires = exp;
        k->n++;
        p += used;
        if (*p == ',') {
            p++;
        } else if (*p != '\0') {
            return TM_EINVAL;
        }
    }
    return TM_OK;
}

void tm_redis_conn_opts_for(const tm_redis_target_conf *rc, tm_redis_conn_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->host = rc->socket != NULL ? rc->socket : rc->host != NULL ? rc->host : "127.0.0.1";
    o->port = rc->port ? (int)rc->port : 6379;
    o->user = rc->user;
    o->password = rc->password;
    o->connect_timeout_ms = rc->timeout_ms ? (int)rc->timeout_ms : 0;
    o->idle_timeout_ms = rc->timeout_ms ? (int)rc->timeout_ms : 0;
}

/* The verdict decides whether the runner retries: its retryable codes are
 * TM_EUNAVAIL/TM_ETIMEDOUT (and repository TM_EIO/TM_ENOSPC); a final
 * verdict from the server must not carry one of them. */
static int verdict_code(tm_redis_verdict v, int code)
{
    int transient = code == TM_EUNAVAIL || code == TM_ETIMEDOUT;
    if (v == TM_REDIS_RETRY && !transient) {
        return TM_EUNAVAIL;
    }
    if (v == TM_REDIS_FINAL && transient) {
        return TM_EPROTO;
    }
    return code;
}

/* One fetch attempt: the RDB's bytes go to the checker and the object. */
typedef struct snap {
    tm_backup_writer *w;
    tm_backup_object *o;
    tm_rdb_check *chk;
    tm_task_ctx *ctx;
    uint64_t bytes;
} snap;

static int snap_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    snap *s = arg;
    if (s->ctx != NULL && tm_task_cancelled(s->ctx)) {
        return tm_err_set(err, TM_EBUSY, "cancelled");
    }
    int rc = tm_rdb_check_feed(s->chk, buf, len, err);
    if (rc == TM_OK) {
        rc = tm_backup_object_write(s->o, buf, len, err);
    }
    s->bytes += len;
    if (s->ctx != NULL) {
        tm_task_progress(s->ctx, "rdb", s->bytes, 0, 0, 1);
    }
    return rc;
}

_Static_assert(TM_RDB_STREAM_BUFS - 1 <= TM_RDB_CHECK_QUEUE_MAX,
               "the checker's queue holds every chunk the fetch keeps in place");

/* The fetch is about to free the buffers the checker may still read. */
static void snap_drain(void *arg)
{
    tm_rdb_check_drain(((snap *)arg)->chk);
}

static int snap_open(snap *s, tm_err *err)
{
    int rc = tm_rdb_check_new(&s->chk, err);
    if (rc == TM_OK) {
        rc = tm_backup_object_open(s->w, TM_REDIS_RDB_OBJECT, &s->o, err);
    }
    s->bytes = 0;
    return rc;
}

static void snap_drop(snap *s)
{
    if (s->o != NULL) {
        tm_backup_object_abort(s->o);
        s->o = NULL;
    }
    tm_rdb_check_free(s->chk);
    s->chk = NULL;
}

static int redis_backup(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                        tm_err *err)
{
    const tm_target_conf *t = tm_task_target(ctx);
    const tm_redis_target_conf *rc_conf = t != NULL ? tm_redis_target(t) : NULL;
    if (rc_conf == NULL) {
        return tm_err_set(err, TM_ECONFIG,
                          "this agent does not serve Redis target %s (not in targets: with a "
                          "redis: block)",
                          task->target ? task->target : "?");
    }
    const tm_agent_conf *conf = tm_task_conf(ctx);
    const char *method = rc_conf->method != NULL ? rc_conf->method : "auto";
    int use_sync = strcmp(method, "bgsave") != 0;
    int may_fallback = strcmp(method, "auto") == 0;
    tm_redis_conn_opts co;
    tm_redis_conn_opts_for(rc_conf, &co);

    tm_repo_set *rs = NULL;
    snap s = {.ctx = ctx};
    uint64_t t0 = tm_mono_ns();
    int rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, err);
    for (int attempt = 0; rc == TM_OK; attempt++) {
        rc = tm_backup_begin(rs, t->name, NULL, "snapshot", "redis", &s.w, err);
        if (rc != TM_OK && rc != TM_EEXIST) {
            tm_repo_outcomes_failed(rs, err, result);
        }
        if (rc != TM_EEXIST || attempt >= 2) {
            break;
        }
        /* Ids are per second: wait for the next one. */
        rc = TM_OK;
        usleep((useconds_t)(1000 - tm_now_ms() % 1000) * 1000 + 1000);
    }
    int64_t start_time = tm_now_s();
    tm_redis_fetch_result fr = {0};
    const char *used = use_sync ? "sync" : "bgsave";
    if (rc == TM_OK) {
        tm_info("redis", "event=backup_started target=%s backup=%s method=%s", t->name,
                tm_backup_writer_id(s.w), method);
        rc = snap_open(&s, err);
    }
    uint64_t t_fetch = tm_mono_ns(), t_close = 0;
    if (rc == TM_OK) {
        if (use_sync) {
            /* The checker parses the chunks on its thread while this one
             * compresses them: the fetch keeps them in place meanwhile. */
            tm_rdb_check_set_queue(s.chk, TM_RDB_STREAM_BUFS - 1);
            rc = tm_redis_rdb_fetch_queued(&co, snap_write, snap_drain, &s, &fr, err);
        } else {
            rc = tm_redis_bgsave_fetch(&co, NULL, snap_write, &s, &fr, err);
        }
        if (rc != TM_OK && use_sync && fr.verdict == TM_REDIS_FALLBACK && may_fallback) {
            /* The server refuses SYNC: nothing was written yet, but start a
             * fresh object and checker so no byte of the attempt remains. */
            tm_warn("redis", "event=sync_refused target=%s msg=\"%s\" fallback=bgsave", t->name,
                    err->msg);
            snap_drop(&s);
            used = "bgsave";
            memset(&fr, 0, sizeof(fr));
            rc = snap_open(&s, err);
            if (rc == TM_OK) {
                rc = tm_redis_bgsave_fetch(&co, NULL, snap_write, &s, &fr, err);
            }
        }
        if (rc != TM_OK) {
            rc = verdict_code(fr.verdict, rc);
            err->code = rc;
            tm_result_extra(result, "redis_verdict", "%s", tm_redis_verdict_name(fr.verdict));
        }
    }
    int64_t stop_time = (tm_now_ms() + 999) / 1000;
    t_close = tm_mono_ns();
    /* The backup counts only with a whole, checksummed RDB. */
    if (rc == TM_OK) {
        rc = tm_rdb_check_finish(s.chk, err);
        if (rc != TM_OK) {
            tm_err_prefix(err, "redis target %s: the fetched RDB is not whole; backup discarded",
                          t->name);
        }
    }
    tm_object_digest dg = {0};
    if (rc == TM_OK) {
        rc = tm_backup_object_close(s.o, &dg, err);
        s.o = NULL;
    }
    tm_redis_keyspace ks = {0};
    uint64_t total_keys = 0, total_expires = 0;
    for (size_t i = 0; rc == TM_OK && i < tm_rdb_check_ndbs(s.chk) && ks.n < TM_REDIS_MAX_DBS;
         i++) {
        const tm_rdb_db_count *d = tm_rdb_check_db(s.chk, i);
        ks.db[ks.n].db = d->db;
        ks.db[ks.n].keys = d->keys;
        ks.db[ks.n].expires = d->expires;
        ks.n++;
        total_keys += d->keys;
        total_expires += d->expires;
    }
    char ksbuf[TM_REDIS_MAX_DBS * 64];
    tm_redis_keyspace_fmt(&ks, ksbuf, sizeof(ksbuf));
    int rdb_version = rc == TM_OK ? tm_rdb_check_version(s.chk) : 0;
    tm_info info = {0};
    int finished = 0;
    /* Where the shipped AOF stood when the snapshot was taken ("" when
     * nothing was shipped): the coordinator's window runs on from the
     * snapshot through the AOF range holding it (the AOF restores any time
     * after it on its own, from its bases), and retention keeps that chain
     * and later ones while the snapshot is its cutoff (aof_expire.c). */
    tm_log_status ls = {0};
    char aof_pos[TM_LOG_POS_MAX] = "";
    if (tm_ship_status(t->name, &ls)) {
        snprintf(aof_pos, sizeof(aof_pos), "%s", ls.last_shipped);
    }
    if (rc == TM_OK) {
        tm_info_add(&info, "start_time", "%" PRId64, start_time);
        tm_info_add(&info, "stop_time", "%" PRId64, stop_time);
        tm_info_add(&info, "rdb_version", "%d", rdb_version);
        tm_info_add(&info, "rdb_bytes", "%" PRIu64, s.bytes);
        tm_info_add(&info, "keyspace", "%s", ksbuf);
        tm_info_add(&info, "method", "%s", used);
        tm_info_add(&info, "diskless", "%d", fr.diskless);
        tm_info_add(&info, "source", "%s:%d", co.host, co.port);
        if (aof_pos[0] != '\0') {
            tm_info_add(&info, TM_REDIS_AOF_POSITION_INFO, "%s", aof_pos);
        }
        Tidemark__Manifest *m = tm_manifest_proto(tm_backup_writer_manifest(s.w));
        tm_info_attach(&info, m);
        rc = tm_backup_finish(s.w, err);
        finished = 1;
        tm_info_detach(m);
    }
    uint64_t fetch_ms = (t_close - t_fetch) / 1000000,
             close_ms = (tm_mono_ns() - t_close) / 1000000;
    size_t nres = 0;
    const tm_repo_result *res = s.w ? tm_backup_results(s.w, &nres) : NULL;
    size_t okn = 0;
    for (size_t i = 0; res != NULL && i < nres; i++) {
        okn += res[i].code == TM_OK;
    }
    /* TM_EIO from finish: complete in some repositories, a backup that
     * exists where its manifest is (the coordinator decides the outcome). */
    if (rc == TM_EIO && finished && okn > 0) {
        tm_warn("redis", "event=backup_partial backup=%s msg=\"%s\"", tm_backup_writer_id(s.w),
                err->msg);
        rc = TM_OK;
    }
    if (rc == TM_OK) {
        result->backup_id = strdup(tm_backup_writer_id(s.w));
        result->has_backup_type = 1;
        result->backup_type = TIDEMARK__BACKUP_TYPE__SNAPSHOT;
        result->has_bytes = result->has_stored_bytes = result->has_files = 1;
        result->bytes = s.bytes;
        result->stored_bytes = dg.stored_size;
        result->files = 1;
        result->has_start_time = result->has_stop_time = 1;
        result->start_time = start_time;
        result->stop_time = stop_time;
        result->repositories = calloc(nres ? nres : 1, sizeof(char *));
        for (size_t i = 0; result->repositories != NULL && i < nres; i++) {
            if (res[i].code == TM_OK) {
                result->repositories[result->n_repositories++] = strdup(res[i].repo);
            }
        }
        if (aof_pos[0] != '\0') {
            result->stop_log = strdup(aof_pos);
        }
        tm_result_extra(result, "method", "%s", used);
        tm_result_extra(result, "diskless", "%d", fr.diskless);
        tm_result_extra(result, "rdb_version", "%d", rdb_version);
        tm_result_extra(result, "keys", "%" PRIu64, total_keys);
        tm_result_extra(result, "expires", "%" PRIu64, total_expires);
        tm_result_extra(result, "keyspace", "%s", ksbuf);
        for (size_t i = 0; i < ks.n; i++) {
            char k[40];
            snprintf(k, sizeof(k), "keys_db%" PRIu64, ks.db[i].db);
            tm_result_extra(result, k, "%" PRIu64, ks.db[i].keys);
        }
        tm_result_extra(result, "wait_ms", "%" PRIu64, fr.wait_ms);
        /* Where the time went: the fetch (wait + transfer through the
         * checker and the pipeline), then the last frames, commit and
         * manifest (close_ms). */
        tm_result_extra(result, "fetch_ms", "%" PRIu64, fetch_ms);
        tm_result_extra(result, "close_ms", "%" PRIu64, close_ms);
        tm_result_extra(result, "chunks", "%" PRIu64, fr.chunks);
        tm_info("redis",
                "event=backup_done target=%s backup=%s method=%s diskless=%d rdb_version=%d "
                "bytes=%" PRIu64 " stored=%" PRIu64 " keys=%" PRIu64 " keyspace=%s wait_ms=%" PRIu64
                " fetch_ms=%" PRIu64 " close_ms=%" PRIu64 " ms=%" PRIu64,
                t->name, result->backup_id, used, fr.diskless, rdb_version, s.bytes, dg.stored_size,
                total_keys, ksbuf, fr.wait_ms, fetch_ms, close_ms, (tm_mono_ns() - t0) / 1000000);
    } else {
        tm_error("redis", "event=backup_failed target=%s verdict=%s code=%d msg=\"%s\"",
                 t != NULL ? t->name : "?", tm_redis_verdict_name(fr.verdict), rc, err->msg);
    }
    if (s.w != NULL && tm_backup_outcomes(s.w, result) != TM_OK && rc == TM_OK) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    snap_drop(&s);
    tm_backup_writer_free(s.w);
    tm_repo_set_free(rs);
    tm_info_free(&info);
    return rc;
}

static int redis_restore_task(tm_task_ctx *ctx, const Tidemark__Task *task,
                              Tidemark__TaskResult *result, tm_err *err)
{
    const Tidemark__RestoreSpec *s = task->restore;
    if (s == NULL || s->dir == NULL || s->dir[0] == '\0') {
        return tm_err_set(err, TM_EINVAL, "restore task without a destination directory");
    }
    const tm_agent_conf *conf = tm_task_conf(ctx);
    /* The coordinator chose the directory: only under restore_roots. */
    int rc = tm_restore_under_roots("restore directory", s->dir, conf->restore_roots,
                                    conf->n_restore_roots, err);
    if (rc != TM_OK) {
        return rc;
    }
    const tm_target_conf *t = tm_task_target(ctx);
    const tm_redis_target_conf *rcf = t != NULL ? tm_redis_target(t) : NULL;
    tm_redis_restore_opts o = {
        .target = task->target,
        .dir = s->dir,
        .backup_id = s->backup_id && s->backup_id[0] ? s->backup_id : NULL,
        .time = s->target_time && s->target_time[0] ? s->target_time : NULL,
        .start = s->has_start && s->start,
        .port = s->has_port ? s->port : 0,
        .server_bin = rcf != NULL ? rcf->server_bin : NULL,
        .ctx = ctx,
    };
    tm_redis_restore_report rep;
    rc = tm_redis_restore(conf, &o, &rep, err);
    if (rep.backup_id[0]) {
        result->backup_id = strdup(rep.backup_id);
    }
    result->has_bytes = result->has_files = 1;
    result->bytes = rep.bytes;
    result->files = rep.bytes ? 1 : 0;
    char ks[TM_REDIS_MAX_DBS * 64];
    tm_redis_keyspace_fmt(&rep.checked, ks, sizeof(ks));
    tm_result_extra(result, "keyspace", "%s", ks);
    tm_result_extra(result, "rdb_version", "%d", rep.rdb_version);
    tm_result_extra(result, "restore_files_s", "%.3f", rep.files_s);
    tm_result_extra(result, "start_s", "%.3f", rep.start_s);
    tm_result_extra(result, "total_s", "%.3f", rep.total_s);
    return rc;
}

const tm_engine tm_engine_redis = {
    .kind = TIDEMARK__TARGET_KIND__REDIS,
    .name = "redis",
    .target_schema = &tm_redis_target_schema,
    .backup = redis_backup,
    .restore = redis_restore_task,
    .drill = tm_redis_drill,
    .ship = tm_redis_ship,
    .log_ranges = tm_redis_log_ranges,
    .log_before = tm_redis_log_before,
    .in_use = tm_redis_in_use,
    .restore_cli = tm_redis_restore_cli,
    .restore_usage = tm_redis_restore_usage,
};
