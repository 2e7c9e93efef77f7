/*
 * drill.c - a restore drill of a Redis target (task kind DRILL) on the
 * staging agent the coordinator chose:
 *
 *   1. restore the newest snapshot (tm_redis_restore, start = 1) into a
 *      fresh directory under restore_roots and start redis-server on a free
 *      loopback port; the RTO clock starts here;
 *   2. checks: DBSIZE of every database the backup recorded matches its
 *      recorded key count (keys saved with an expire may have expired since,
 *      so the count may be lower by at most the recorded expires); INFO
 *      keyspace agrees and shows no database the backup did not have; a
 *      sample of keys per database (SCAN + TYPE + a read of that type) reads
 *      back. No DEBUG DIGEST: production servers disable DEBUG;
 *   3. measure: RTO = restore start -> checks passed; recovered point = when
 *      the snapshot was taken; achieved RPO = drill start (or requested
 *      time) - recovered point;
 *   4. tear down, also on failure: SHUTDOWN NOSAVE, remove the directory.
 *
 * A drill to a time restores from the shipped AOF (restore.c); without it,
 * or without timestamps in it, the restore refuses loudly and the drill
 * fails with that message.
 */
#include "agent/engines/redis/redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "agent/restore_root.h"
#include "agent/drill_checks.h"
#include "agent/result_kv.h"
#include "common/log.h"
#include "common/util.h"

#define SAMPLE_KEYS 200

static uint32_t loopback_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    uint32_t port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) {
        close(fd);
    }
    return port;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    return r;
}

static const char *reply_err(redisContext *c, redisReply *r)
{
    if (r == NULL) {
        return c->errstr[0] ? c->errstr : "connection lost";
    }
    return r->type == REDIS_REPLY_ERROR ? r->str : NULL;
}

/* The read that proves a key of this type loads: its length. */
static const char *type_read(const char *type)
{
    static const char *const map[][2] = {
        {"string", "STRLEN"}, {"hash", "HLEN"},  {"list", "LLEN"},
        {"set", "SCARD"},     {"zset", "ZCARD"}, {"stream", "XLEN"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(type, map[i][0]) == 0) {
            return map[i][1];
        }
    }
    return NULL;
}

/* INFO keyspace: "db0:keys=1,expires=0,avg_ttl=0" lines. */
static void info_keyspace(const char *s, tm_redis_keyspace *k)
{
    memset(k, 0, sizeof(*k));
    for (const char *p = strstr(s, "\ndb"); p != NULL && k->n < TM_REDIS_MAX_DBS;
         p = strstr(p + 1, "\ndb")) {
        unsigned long long db, keys, exp;
        if (sscanf(p + 1, "db%llu:keys=%llu,expires=%llu", &db, &keys, &exp) == 3) {
            k->db[k->n].db = db;
            k->db[k->n].keys = keys;
            k->db[k->n].expires = exp;
            k->n++;
        }
    }
}

static void run_checks(tm_drill_checks *d, redisContext *c, const tm_redis_keyspace *rec)
{
    char name[64], detail[400];
    uint64_t t = tm_mono_ns();
    redisReply *r = cmd(c, "INFO keyspace");
    const char *e = reply_err(c, r);
    tm_redis_keyspace live = {0};
    if (e == NULL && r->type == REDIS_REPLY_STRING) {
        info_keyspace(r->str, &live);
    }
    if (rec->n == 0) {
        /* A restore to a time has no recorded counts (the AOF replays what it
         * holds): every database the server loaded is checked, and at least
         * one must hold keys. */
        rec = &live;
        if (live.n == 0) {
            e = "the restored server holds no key at all";
        }
    }
    /* Every database the server holds was in the backup. */
    int extra = 0;
    for (size_t i = 0; e == NULL && i < live.n; i++) {
        int found = 0;
        for (size_t j = 0; j < rec->n; j++) {
            found |= rec->db[j].db == live.db[i].db;
        }
        if (!found) {
            snprintf(detail, sizeof(detail),
                     "db%" PRIu64 " has %" PRIu64 " keys but the backup recorded none",
                     live.db[i].db, live.db[i].keys);
            extra = 1;
        }
    }
    if (e == NULL && !extra) {
        tm_redis_keyspace_fmt(&live, detail, sizeof(detail));
    }
    tm_drill_check_add(d, "keyspace", e == NULL && !extra, e != NULL ? e : detail,
                       tm_drill_ms_since(t));
    freeReplyObject(r);
    if (e != NULL) {
        return;
    }

    for (size_t i = 0; i < rec->n; i++) {
        uint64_t want = rec->db[i].keys, lo = want - rec->db[i].expires;
        t = tm_mono_ns();
        snprintf(name, sizeof(name), "dbsize:db%" PRIu64, rec->db[i].db);
        r = cmd(c, "SELECT %" PRIu64, rec->db[i].db);
        e = reply_err(c, r);
        freeReplyObject(r);
        r = e == NULL ? cmd(c, "DBSIZE") : NULL;
        if (e == NULL) {
            e = reply_err(c, r);
        }
        if (e != NULL) {
            tm_drill_check_add(d, name, 0, e, tm_drill_ms_since(t));
            freeReplyObject(r);
            continue;
        }
        uint64_t got = r->type == REDIS_REPLY_INTEGER ? (uint64_t)r->integer : 0;
        freeReplyObject(r);
        uint64_t info_keys = 0;
        for (size_t j = 0; j < live.n; j++) {
            if (live.db[j].db == rec->db[i].db) {
                info_keys = live.db[j].keys;
            }
        }
        int ok = got >= lo && got <= want && got > 0 && info_keys == got;
        snprintf(detail, sizeof(detail),
                 "%" PRIu64 " keys (backup recorded %" PRIu64 ", %" PRIu64
                 " with an expire; INFO keyspace %" PRIu64 ")",
                 got, want, rec->db[i].expires, info_keys);
        tm_drill_check_add(d, name, ok, detail, tm_drill_ms_since(t));

        /* A sample: every key SCAN yields until SAMPLE_KEYS, read by type. */
        t = tm_mono_ns();
        snprintf(name, sizeof(name), "sample:db%" PRIu64, rec->db[i].db);
        unsigned long long cursor = 0;
        size_t seen = 0, bad = 0, gone = 0;
        char first_bad[200] = "";
        do {
            r = cmd(c, "SCAN %llu COUNT 100", cursor);
            if ((e = reply_err(c, r)) != NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                bad++;
                snprintf(first_bad, sizeof(first_bad), "SCAN: %.150s", e ? e : "bad reply");
                freeReplyObject(r);
                break;
            }
            cursor = strtoull(r->element[0]->str, NULL, 10);
            redisReply *keys = r->element[1];
            for (size_t k = 0; k < keys->elements && seen < SAMPLE_KEYS; k++, seen++) {
                const char *key = keys->element[k]->str;
                size_t klen = keys->element[k]->len;
                redisReply *ty = cmd(c, "TYPE %b", key, klen);
                const char *te = reply_err(c, ty);
                const char *rd = te == NULL ? type_read(ty->str) : NULL;
                if (te == NULL && strcmp(ty->str, "none") == 0) {
                    gone++; /* expired since the SCAN */
                } else if (rd == NULL) {
                    bad++;
                    snprintf(first_bad, sizeof(first_bad), "TYPE %.60s: %.100s", key,
                             te ? te : ty->str);
                } else {
                    redisReply *v = cmd(c, "%s %b", rd, key, klen);
                    const char *ve = reply_err(c, v);
                    if (ve != NULL) {
                        bad++;
                        snprintf(first_bad, sizeof(first_bad), "%s %.60s: %.100s", rd, key, ve);
                    }
                    freeReplyObject(v);
                }
                freeReplyObject(ty);
            }
            freeReplyObject(r);
        } while (cursor != 0 && seen < SAMPLE_KEYS);
        snprintf(detail, sizeof(detail), "%zu keys read back by type, %zu expired meanwhile%s%s",
                 seen - gone - bad, gone, bad ? "; " : "", first_bad);
        tm_drill_check_add(d, name, bad == 0 && seen > gone, detail, tm_drill_ms_since(t));
    }
}

int tm_redis_drill(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                   tm_err *err)
{
    const tm_agent_conf *conf = tm_task_conf(ctx);
    const Tidemark__DrillSpec *spec = task->drill;
    const tm_target_conf *tc = tm_task_target(ctx);
    const tm_redis_target_conf *rcf = tc != NULL ? tm_redis_target(tc) : NULL;
    Tidemark__DrillResult *res = malloc(sizeof(*res));
    if (res == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tidemark__drill_result__init(res);
    result->drill = res;
    tm_drill_checks d = {0};

    char base[PATH_MAX], dir[PATH_MAX + 256];
    if (spec != NULL && spec->dir != NULL && spec->dir[0] != '\0') {
        snprintf(base, sizeof(base), "%s", spec->dir);
    } else {
        snprintf(base, sizeof(base), "%s/drills", conf->state_dir ? conf->state_dir : ".");
    }
    snprintf(dir, sizeof(dir), "%s/drill-%s-%s", base, task->target ? task->target : "x",
             task->id ? task->id : "x");
    const char *time =
        spec != NULL && spec->target_time && spec->target_time[0] ? spec->target_time : NULL;
    int64_t started_ms = tm_now_ms();
    res->dir = strdup(dir);
    res->target_time = strdup(time ? time : "");
    res->has_started_at_ms = res->has_target_ms = 1;
    res->started_at_ms = started_ms;
    res->target_ms = started_ms;
    int64_t ts = 0;
    if (time != NULL && tm_redis_time_parse(time, &ts) == TM_OK) {
        res->target_ms = ts * 1000; /* RPO is measured against the time asked for */
    }

    int rc = tm_restore_under_roots("drill directory", base, conf->restore_roots,
                                    conf->n_restore_roots, err);
    if (rc == TM_OK) {
        rc = tm_mkdir_p(base, 0755, err);
    }
    if (rc == TM_OK && access(dir, F_OK) == 0) {
        rc = tm_err_set(err, TM_EEXIST, "drill directory %s already exists", dir);
    }
    int ours = rc == TM_OK;
    uint32_t port = loopback_port();
    res->has_port = 1;
    res->port = port;
    tm_info("drill", "event=started task=%s target=%s engine=redis dir=%s port=%u time=\"%s\"",
            task->id, task->target, dir, port, time ? time : "latest");

    uint64_t t0 = tm_mono_ns();
    tm_redis_restore_report rep;
    memset(&rep, 0, sizeof(rep));
    if (rc == TM_OK) {
        tm_task_progress(ctx, "drill:restore", 0, 0, 0, 0);
        tm_redis_restore_opts o = {
            .target = task->target,
            .dir = dir,
            .time = time,
            .start = 1,
            .port = port,
            .server_bin = rcf != NULL ? rcf->server_bin : NULL,
            .ctx = ctx,
        };
        rc = tm_redis_restore(conf, &o, &rep, err);
        if (rep.backup_id[0]) {
            res->backup_id = strdup(rep.backup_id);
            res->chain = strdup(rep.backup_id);
            result->backup_id = strdup(rep.backup_id);
        }
        res->has_restore_files_ms = res->has_recovery_ms = 1;
        res->restore_files_ms = (uint64_t)(rep.files_s * 1000.0);
        res->recovery_ms = (uint64_t)(rep.start_s * 1000.0);
    }
    if (rc == TM_OK) {
        tm_task_progress(ctx, "drill:checks", 0, 0, 0, 0);
        uint64_t tc0 = tm_mono_ns();
        if (rep.recorded.n == 0) {
            /* A backup without a recorded keyspace: check what the RDB held. */
            rep.recorded = rep.checked;
        }
        struct timeval tv = {.tv_sec = 30};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", (int)port, tv);
        if (c == NULL || c->err) {
            tm_drill_check_add(&d, "connect", 0, c ? c->errstr : "out of memory",
                               tm_drill_ms_since(tc0));
        } else {
            redisSetTimeout(c, tv);
            run_checks(&d, c, &rep.recorded);
        }
        redisFree(c);
        res->recovered_source =
            strdup(time != NULL ? "last #TS: annotation replayed" : "snapshot time");
        res->has_recovered_to_ms = res->has_rpo_ms = 1;
        res->recovered_to_ms = rep.snapshot_time * 1000;
        res->rpo_ms = res->target_ms - res->recovered_to_ms;
        res->has_checks_ms = res->has_rto_ms = 1;
        res->checks_ms = (tm_mono_ns() - tc0) / 1000000;
        res->rto_ms = (tm_mono_ns() - t0) / 1000000;
        if (d.failed) {
            rc = tm_err_set(err, TM_ECORRUPT, "drill of %s: %s", task->target, d.first);
        }
    }

    tm_task_progress(ctx, "drill:teardown", 0, 0, 0, 0);
    uint64_t tt = tm_mono_ns();
    tm_err terr = {0};
    int stopped = !ours || tm_redis_server_stop(dir, port, &terr) == TM_OK;
    int removed =
        !ours || nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 || access(dir, F_OK) != 0;
    res->has_teardown_ms = res->has_cleaned_up = 1;
    res->teardown_ms = (tm_mono_ns() - tt) / 1000000;
    res->cleaned_up = stopped && removed;
    if (!res->cleaned_up) {
        tm_error("drill", "event=teardown_failed dir=%s stopped=%d removed=%d msg=\"%s\"", dir,
                 stopped, removed, terr.msg);
    }
    tm_drill_checks_move(&d, res);
    res->has_ok = 1;
    res->ok = rc == TM_OK;
    if (rc != TM_OK) {
        res->error = strdup(err->msg);
    }
    tm_info("drill",
            "event=finished task=%s target=%s engine=redis ok=%d backup=%s rto_ms=%" PRIu64
            " rpo_ms=%" PRId64 " cleaned_up=%d",
            task->id, task->target, rc == TM_OK, rep.backup_id, res->rto_ms, res->rpo_ms,
            res->cleaned_up);
    return rc;
}
