/*
 * snapshot.c - the BACKUP task of a SQLite target: one consistent copy of
 * the live database, streamed through the pipeline into one object of a
 * snapshot backup written to every repository at once.
 *
 * The copy is taken with copy.h (online backup API under one read
 * transaction: never torn, and a reader never blocks the application's
 * writers in WAL mode) into a private spool file under the agent's
 * state_dir, because the pipeline reads a stream while the backup API
 * writes pages at random offsets; the spool file is removed when the task
 * ends, whatever the outcome, and a leftover of a killed agent is removed
 * by the next backup of the target.
 *
 * A database not in WAL mode is refused with what to do (set_wal: true, or
 * switch it yourself) unless the target says set_wal: the journal mode is
 * the application's choice.
 */
#include "agent/engines/sqlite/sqlite.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "agent/engines/sqlite/copy.h"
#include "agent/engines/sqlite/db.h"
#include "agent/engines/sqlite/ship.h"
#include "agent/repo/repository.h"
#include "agent/result_kv.h"
#include "common/log.h"
#include "common/util.h"

/* Pages copied per step and the pause between steps: the copy yields the
 * disk to the application between steps (copy.h). */
#define COPY_PAGES 1024
#define COPY_SLEEP_MS 0
#define READ_CHUNK (1u << 20)

int tm_sqlite_target_file(const tm_target_conf *t, char *out, size_t cap, tm_err *err)
{
    const tm_sqlite_target *c = t != NULL ? tm_sqlite_target_of(t) : NULL;
    if (c == NULL || c->path[0] == '\0') {
        return tm_err_set(err, TM_ECONFIG,
                          "target %s has no database file: add a sqlite: block with path: to it "
                          "in agent.yaml",
                          t != NULL ? t->name : "?");
    }
    if (c->glob) {
        return tm_err_set(err, TM_ECONFIG,
                          "target %s is the pattern %s: each matching file is its own target",
                          t->name, c->path);
    }
    if ((size_t)snprintf(out, cap, "%s", c->path) >= cap) {
        return tm_err_set(err, TM_EINVAL, "path of target %s too long", t->name);
    }
    return TM_OK;
}

/* <state_dir>/sqlite/<target>: the engine's private files for a target,
 * created 0700. */
static int spool_dir(const tm_agent_conf *conf, const char *target, char *out, size_t cap,
                     tm_err *err)
{
    if (conf->state_dir == NULL) {
        return tm_err_set(err, TM_ECONFIG,
                          "no state_dir in agent.yaml: the snapshot needs a spool");
    }
    if ((size_t)snprintf(out, cap, "%s/sqlite/%s", conf->state_dir, target) >= cap) {
        return tm_err_set(err, TM_EINVAL, "state_dir path too long");
    }
    return tm_mkdir_p(out, 0700, err);
}

typedef struct snap {
    tm_task_ctx *ctx;
    uint32_t steps;
} snap;

static int copy_cancelled(void *arg)
{
    snap *s = arg;
    s->steps++;
    tm_task_progress(s->ctx, "copy", 0, 0, 0, 1);
    return tm_task_cancelled(s->ctx);
}

/* Stream the spool file into object name of w. */
static int stream_file(tm_task_ctx *ctx, tm_backup_writer *w, const char *path, uint64_t total,
                       tm_object_digest *dg, uint64_t *done, tm_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return tm_err_set(err, TM_EIO, "open %s: %s", path, strerror(errno));
    }
    char *buf = malloc(READ_CHUNK);
    tm_backup_object *o = NULL;
    int rc = buf == NULL ? tm_err_set(err, TM_ENOMEM, "out of memory")
                         : tm_backup_object_open(w, TM_SQLITE_DB_OBJECT, &o, err);
    *done = 0;
    while (rc == TM_OK) {
        if (tm_task_cancelled(ctx)) {
            rc = tm_err_set(err, TM_EBUSY, "cancelled");
            break;
        }
        ssize_t n = read(fd, buf, READ_CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = tm_err_set(err, TM_EIO, "read %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0) {
            break;
        }
        rc = tm_backup_object_write(o, buf, (size_t)n, err);
        *done += (uint64_t)n;
        tm_task_progress(ctx, "upload", *done, total, 0, 1);
    }
    if (rc == TM_OK && *done != total) {
        rc = tm_err_set(err, TM_EIO, "%s changed size while read (%" PRIu64 " of %" PRIu64 ")",
                        path, *done, total);
    }
    if (rc == TM_OK) {
        rc = tm_backup_object_close(o, dg, err);
    } else if (o != NULL) {
        tm_backup_object_abort(o);
    }
    free(buf);
    close(fd);
    return rc;
}

/* The figures a restore and a drill read back from the manifest. */
/* Where the snapshot stands in the shipped log. */
typedef struct log_point {
    uint32_t chain;             /* the shipper's chain; 0 = nothing shipped yet */
    char start[TM_LOG_POS_MAX]; /* its saved position before the read transaction */
    char exact[TM_LOG_POS_MAX]; /* the read transaction's own position; "" = unknown */
} log_point;

static void snapshot_info(tm_info *info, const char *db, const tm_sqlite_copy_info *ci,
                          int64_t start_ms, int64_t stop_ms, const log_point *lp)
{
    if (lp->chain != 0) {
        /* log_chain/log_start: retention (log.c) keeps the chains from
         * log_chain on; log_exact: a restore replays from it (plan.c). */
        tm_info_add(info, "log_chain", "%" PRIu32, lp->chain);
        tm_info_add(info, "log_start", "%s", lp->start);
        if (lp->exact[0] != '\0') {
            tm_info_add(info, "log_exact", "%s", lp->exact);
        }
    }
    tm_info_add(info, "source", "%s", db);
    tm_info_add(info, "page_size", "%" PRIu32, ci->page_size);
    tm_info_add(info, "pages", "%" PRIu64, ci->pages);
    tm_info_add(info, "db_bytes", "%" PRIu64, ci->bytes);
    /* The copy holds every commit made before start_ms and none made after
     * stop_ms (its read transaction began in between). */
    tm_info_add(info, "start_ms", "%" PRId64, start_ms);
    tm_info_add(info, "stop_ms", "%" PRId64, stop_ms);
    tm_info_add(info, "start_time", "%" PRId64, start_ms / 1000);
    tm_info_add(info, "stop_time", "%" PRId64, (stop_ms + 999) / 1000);
    tm_info_add(info, "sqlite_version", "%s", sqlite3_libversion());
}

/* A backup id of this second, or of the next ones when taken (ids are per
 * second). */
static int begin(tm_repo_set *rs, const char *target, tm_backup_writer **w,
                 Tidemark__TaskResult *result, tm_err *err)
{
    int rc = TM_OK;
    for (int attempt = 0;; attempt++) {
        rc = tm_backup_begin(rs, target, NULL, "snapshot", "sqlite", w, err);
        if (rc != TM_OK && rc != TM_EEXIST) {
            tm_repo_outcomes_failed(rs, err, result);
        }
        if (rc != TM_EEXIST || attempt >= 2) {
            return rc;
        }
        usleep((useconds_t)(1000 - tm_now_ms() % 1000) * 1000 + 1000);
    }
}

static void fill_result(Tidemark__TaskResult *result, tm_backup_writer *w, uint64_t bytes,
                        const tm_object_digest *dg, int64_t start_ms, int64_t stop_ms,
                        const log_point *lp)
{
    if (lp->chain != 0) {
        /* The log continues the snapshot from here: the coordinator's
         * window extends through the shipped run holding this position. */
        result->has_chain = 1;
        result->chain = lp->chain;
        result->start_position = strdup(lp->start);
        result->stop_log = strdup(lp->start);
    }
    result->backup_id = strdup(tm_backup_writer_id(w));
    result->has_backup_type = 1;
    result->backup_type = TIDEMARK__BACKUP_TYPE__SNAPSHOT;
    result->has_bytes = result->has_stored_bytes = result->has_files = 1;
    result->bytes = bytes;
    result->stored_bytes = dg->stored_size;
    result->files = 1;
    result->has_start_time = result->has_stop_time = 1;
    result->start_time = start_ms / 1000;
    result->stop_time = (stop_ms + 999) / 1000;
    size_t nres = 0;
    const tm_repo_result *res = tm_backup_results(w, &nres);
    result->repositories = calloc(nres ? nres : 1, sizeof(char *));
    for (size_t i = 0; result->repositories != NULL && i < nres; i++) {
        if (res[i].code == TM_OK) {
            result->repositories[result->n_repositories++] = strdup(res[i].repo);
        }
    }
}

int tm_sqlite_backup(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                     tm_err *err)
{
    const tm_target_conf *t = tm_task_target(ctx);
    const tm_sqlite_target *sc = t != NULL ? tm_sqlite_target_of(t) : NULL;
    if (sc == NULL) {
        return tm_err_set(err, TM_ECONFIG,
                          "this agent does not serve SQLite target %s (not in targets: with kind: "
                          "sqlite)",
                          task->target ? task->target : "?");
    }
    const tm_agent_conf *conf = tm_task_conf(ctx);
    char db[PATH_MAX], dir[PATH_MAX], spool[PATH_MAX + 32], tmp[PATH_MAX + 40];
    int rc = tm_sqlite_target_file(t, db, sizeof(db), err);
    if (rc == TM_OK) {
        rc = spool_dir(conf, t->name, dir, sizeof(dir), err);
    }
    if (rc != TM_OK) {
        return rc;
    }
    snprintf(spool, sizeof(spool), "%s/snapshot.db", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", spool);
    /* A killed agent's leftovers: the copy refuses an existing file. */
    (void)unlink(spool);
    (void)unlink(tmp);

    uint64_t t0 = tm_mono_ns();
    /* The shipper's saved position before the read transaction begins:
     * every commit up to it is in the log, the snapshot holds them too. */
    log_point lp = {0};
    tm_err pe = {0};
    if (tm_sqlite_ship_position(conf, t->name, &lp.chain, lp.start, sizeof(lp.start), &pe) !=
        TM_OK) {
        tm_warn("sqlite", "event=ship_position_unknown target=%s msg=\"%s\"", t->name, pe.msg);
        lp.chain = 0;
    }
    sqlite3 *c = NULL;
    rc = tm_sqlite_db_open(db, (int)sc->busy_timeout_ms, sc->set_wal, &c, err);
    if (rc != TM_OK) {
        tm_err_prefix(err, "sqlite target %s", t->name);
        tm_error("sqlite", "event=backup_failed target=%s code=%d msg=\"%s\"", t->name, rc,
                 err->msg);
        sqlite3_close(c);
        return rc;
    }
    int64_t start_ms = tm_now_ms();
    rc = tm_sqlite_db_begin_read(c, err);
    int64_t stop_ms = tm_now_ms();
    snap s = {.ctx = ctx};
    tm_sqlite_copy_opts co = {.pages_per_step = COPY_PAGES,
                              .sleep_ms = COPY_SLEEP_MS,
                              .busy_ms = (int)sc->busy_timeout_ms,
                              .cancelled = copy_cancelled,
                              .arg = &s};
    tm_sqlite_copy_info ci = {0};
    if (rc == TM_OK) {
        rc = tm_sqlite_copy_conn(c, spool, &co, &ci, err);
    }
    /* The read transaction ends here: checkpoints may pass it again. */
    sqlite3_close(c);
    uint64_t copy_ms = (tm_mono_ns() - t0) / 1000000;
    if (rc != TM_OK && tm_task_cancelled(ctx)) {
        rc = tm_err_set(err, TM_EBUSY, "cancelled");
    }

    tm_repo_set *rs = NULL;
    tm_backup_writer *w = NULL;
    tm_object_digest dg = {0};
    uint64_t sent = 0;
    tm_info info = {0};
    int finished = 0;
    if (rc == TM_OK) {
        rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, err);
    }
    if (rc == TM_OK) {
        rc = begin(rs, t->name, &w, result, err);
    }
    if (rc == TM_OK) {
        tm_info("sqlite", "event=backup_started target=%s backup=%s db=%s bytes=%" PRIu64, t->name,
                tm_backup_writer_id(w), db, ci.bytes);
        rc = stream_file(ctx, w, spool, ci.bytes, &dg, &sent, err);
    }
    if (rc == TM_OK) {
        snapshot_info(&info, db, &ci, start_ms, stop_ms, &lp);
        Tidemark__Manifest *m = tm_manifest_proto(tm_backup_writer_manifest(w));
        tm_info_attach(&info, m);
        rc = tm_backup_finish(w, err);
        tm_info_detach(m);
        finished = 1;
    }
    size_t nres = 0, okn = 0;
    const tm_repo_result *res = w != NULL ? tm_backup_results(w, &nres) : NULL;
    for (size_t i = 0; res != NULL && i < nres; i++) {
        okn += res[i].code == TM_OK;
    }
    /* TM_EIO from finish with some repositories complete: a backup that
     * exists where its manifest is; the coordinator decides the outcome. */
    if (rc == TM_EIO && finished && okn > 0) {
        tm_warn("sqlite", "event=backup_partial backup=%s msg=\"%s\"", tm_backup_writer_id(w),
                err->msg);
        rc = TM_OK;
    }
    if (rc == TM_OK) {
        fill_result(result, w, sent, &dg, start_ms, stop_ms, &lp);
        tm_result_extra(result, "db_bytes", "%" PRIu64, ci.bytes);
        tm_result_extra(result, "pages", "%" PRIu64, ci.pages);
        tm_result_extra(result, "page_size", "%" PRIu32, ci.page_size);
        tm_result_extra(result, "copy_ms", "%" PRIu64, copy_ms);
        tm_info("sqlite",
                "event=backup_done target=%s backup=%s bytes=%" PRIu64 " stored=%" PRIu64
                " copy_ms=%" PRIu64 " ms=%" PRIu64,
                t->name, result->backup_id, sent, dg.stored_size, copy_ms,
                (tm_mono_ns() - t0) / 1000000);
    } else {
        tm_error("sqlite", "event=backup_failed target=%s code=%d msg=\"%s\"", t->name, rc,
                 err->msg);
    }
    if (w != NULL && tm_backup_outcomes(w, result) != TM_OK && rc == TM_OK) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tm_info_free(&info);
    tm_backup_writer_free(w);
    tm_repo_set_free(rs);
    if (unlink(spool) != 0 && errno != ENOENT) {
        tm_warn("sqlite", "event=spool_left file=%s msg=\"%s\"", spool, strerror(errno));
    }
    return rc;
}
