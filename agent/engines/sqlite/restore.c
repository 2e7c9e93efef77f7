/*
 * restore.c - restore a SQLite target from the repositories alone into one
 * database file, and the RESTORE task the coordinator sends.
 *
 * Order, so that the destination is never half-written:
 *   1. the destination is checked: an existing file is replaced only with
 *      force, a live one (a process has it or its -wal/-shm/-journal open,
 *      in_use.c) only with force, and a directory a running server of any
 *      other engine uses never;
 *   2. the snapshot (the one named, or the newest taken at or before the
 *      time) is streamed, checked frame by frame and by both digests, into
 *      a temporary file beside the destination, created through
 *      restore_root.h (nothing is written outside the destination's
 *      directory, no link is followed);
 *   3. the shipped WAL is replayed onto it up to the time (replay.h);
 *   4. PRAGMA integrity_check must say ok;
 *   5. fsync, then the stale -wal/-shm/-journal of a replaced file are
 *      removed (a leftover WAL would be applied to the new file) and the
 *      temporary file is renamed into place and its directory synced.
 * On any failure the temporary file is removed and the destination is as
 * it was.
 */
#include "agent/engines/sqlite/sqlite.h"
#include "agent/engines/sqlite/replay.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "agent/repo/repo_find.h"
#include "agent/repo/repository.h"
#include "agent/restore_root.h"
#include "agent/result_kv.h"
#include "common/log.h"
#include "common/util.h"

int tm_sqlite_time_parse(const char *s, int64_t *ms)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = s != NULL ? strptime(s, "%Y-%m-%d %H:%M:%S", &tm) : NULL;
    if (end == NULL) {
        end = s != NULL ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    }
    if (end == NULL) {
        return TM_EINVAL;
    }
    int64_t frac = 0;
    if (*end == '.') {
        int digits = 0;
        for (end++; *end >= '0' && *end <= '9'; end++, digits++) {
            if (digits < 3) {
                frac = frac * 10 + (*end - '0');
            }
        }
        if (digits == 0) {
            return TM_EINVAL;
        }
        for (; digits < 3; digits++) {
            frac *= 10;
        }
    }
    if (strcmp(end, "+00") != 0 && strcmp(end, "+00:00") != 0 && strcmp(end, "Z") != 0) {
        return TM_EINVAL;
    }
    *ms = (int64_t)timegm(&tm) * 1000 + frac;
    return TM_OK;
}

void tm_sqlite_time_fmt(int64_t ms, char *out, size_t cap)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[32];
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03d+00", buf, (int)(ms % 1000));
}

static int64_t info_i64(const Tidemark__Manifest *m, const char *key)
{
    const char *v = tm_info_get(m, key);
    return v != NULL ? strtoll(v, NULL, 10) : 0;
}

static int is_sqlite(tm_backup_reader *rd)
{
    const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(rd));
    return m->engine != NULL && strcmp(m->engine, "sqlite") == 0;
}

/* A snapshot whose read transaction began at or before until_ms; oldest
 * keeps the oldest one seen, for the message when none is. */
typedef struct by_time {
    int64_t until_ms;
    int64_t oldest;
} by_time;

static int taken_by(void *arg, const Tidemark__Manifest *m)
{
    by_time *b = arg;
    int64_t stop = info_i64(m, "stop_ms");
    if (stop > 0) {
        b->oldest = stop;
    }
    return b->until_ms <= 0 || (stop > 0 && stop <= b->until_ms);
}

int tm_sqlite_open_snapshot(tm_repo_set *rs, const char *target, const char *id, int64_t until_ms,
                            tm_backup_reader **out, tm_err *err)
{
    *out = NULL;
    if (id != NULL) {
        int rc = tm_backup_open(rs, target, id, NULL, out, err);
        if (rc == TM_OK && !is_sqlite(*out)) {
            const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(*out));
            rc = tm_err_set(err, TM_EINVAL, "backup %s of %s is a %s backup, not SQLite", id,
                            target, m->engine ? m->engine : "?");
            tm_backup_reader_free(*out);
            *out = NULL;
        }
        return rc;
    }
    by_time b = {.until_ms = until_ms};
    int rc = tm_repo_find_backup(rs, target, "sqlite", taken_by, &b, out, err);
    if (rc == TM_ENOENT && until_ms > 0 && b.oldest > 0) {
        char t[40], o[40];
        tm_sqlite_time_fmt(until_ms, t, sizeof(t));
        tm_sqlite_time_fmt(b.oldest, o, sizeof(o));
        rc = tm_err_set(err, TM_ENOENT,
                        "no SQLite snapshot of target %s taken at or before %s (the oldest was "
                        "taken at %s)",
                        target, t, o);
    }
    return rc;
}

/* ---- the destination ---- */

/* The restore's sink: the snapshot into the temporary file through the
 * fd sink (replay.h: write-back started as it goes; the one fsync is the
 * restore's, at the end), with the task's cancel and progress. */
typedef struct file_out {
    tm_sink inner;
    uint64_t bytes;
    tm_task_ctx *ctx;
} file_out;

static int out_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    file_out *o = arg;
    if (o->ctx != NULL && tm_task_cancelled(o->ctx)) {
        return tm_err_set(err, TM_EBUSY, "cancelled");
    }
    int rc = o->inner.write(o->inner.arg, buf, len, err);
    o->bytes += rc == TM_OK ? len : 0;
    if (rc == TM_OK && o->ctx != NULL) {
        tm_task_progress(o->ctx, "restore", o->bytes, 0, 0, 1);
    }
    return rc;
}

static int out_commit(void *arg, tm_err *err)
{
    file_out *o = arg;
    return o->inner.commit(o->inner.arg, err);
}

static void out_abort(void *arg)
{
    file_out *o = arg;
    o->inner.abort(o->inner.arg); /* the caller removes the temporary file */
}

/* A path for SQLite's URI form: file:<path>?immutable=1 with the
 * characters a URI gives meaning to escaped. immutable: no locks, no -wal
 * or -shm created beside a file nobody else may have open. */
static void uri_of(const char *path, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "file:");
    for (const char *p = path; *p != '\0' && o + 4 < cap; p++) {
        if (*p == '%' || *p == '?' || *p == '#' || (unsigned char)*p < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", (unsigned char)*p);
        } else {
            out[o++] = *p;
        }
    }
    out[o < cap ? o : cap - 1] = '\0';
    snprintf(out + strlen(out), cap - strlen(out), "?immutable=1");
}

int tm_sqlite_integrity(const char *db, char *detail, size_t cap, tm_err *err)
{
    char uri[PATH_MAX * 3 + 32];
    uri_of(db, uri, sizeof(uri));
    sqlite3 *c = NULL;
    int rc = sqlite3_open_v2(uri, &c, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK) {
        /* The whole file mapped (SQLite caps it at its own maximum) and a
         * 64 MiB cache: the check reads every page once, and a read call
         * per page costs more than the check itself. Nobody else has the
         * file: it cannot shrink under the mapping. */
        struct stat sb;
        char sql[96];
        snprintf(sql, sizeof(sql), "PRAGMA mmap_size=%lld; PRAGMA cache_size=-65536",
                 stat(db, &sb) == 0 ? (long long)sb.st_size : 0LL);
        rc = sqlite3_exec(c, sql, NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK) {
        rc = sqlite3_prepare_v2(c, "PRAGMA integrity_check(20)", -1, &st, NULL);
    }
    if (rc != SQLITE_OK) {
        int r = tm_err_set(err, TM_ECORRUPT, "integrity_check of %s: %s", db,
                           c != NULL ? sqlite3_errmsg(c) : sqlite3_errstr(rc));
        sqlite3_finalize(st);
        sqlite3_close(c);
        return r;
    }
    size_t off = 0;
    int ok = 0, rows = 0;
    detail[0] = '\0';
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        ok = rows == 0 && v != NULL && strcmp(v, "ok") == 0;
        rows++;
        if (off < cap) {
            off += (size_t)snprintf(detail + off, cap - off, "%s%s", rows > 1 ? "; " : "",
                                    v != NULL ? v : "?");
        }
    }
    int r = TM_OK;
    if (rc != SQLITE_DONE) {
        r = tm_err_set(err, TM_ECORRUPT, "integrity_check of %s: %s", db, sqlite3_errmsg(c));
    } else if (!ok || rows != 1) {
        r = tm_err_set(err, TM_ECORRUPT, "integrity_check of %s failed: %.300s", db, detail);
    }
    sqlite3_finalize(st);
    sqlite3_close(c);
    return r;
}

/* Another engine's running server in dir: never written into, not even
 * with force (that is not a SQLite database to replace). */
static int other_engines_busy(const char *dir, tm_err *err)
{
    const tm_engine *e;
    char why[512];
    for (size_t i = 0; (e = tm_engine_at(i)) != NULL; i++) {
        if (e->in_use == NULL || e->in_use == tm_sqlite_in_use) {
            continue;
        }
        why[0] = '\0';
        if (e->in_use(dir, why, sizeof(why))) {
            return tm_err_set(err, TM_EBUSY, "%s is in use: %s", dir, why);
        }
    }
    return TM_OK;
}

/* dir/name from output (absolute, a file name that restore_root accepts). */
static int split_output(const char *output, char *dir, size_t dcap, char *name, size_t ncap,
                        tm_err *err)
{
    if (output == NULL || output[0] != '/') {
        return tm_err_set(err, TM_EINVAL, "output '%.200s' is not an absolute file path",
                          output ? output : "");
    }
    char a[PATH_MAX], b[PATH_MAX];
    if ((size_t)snprintf(a, sizeof(a), "%s", output) >= sizeof(a)) {
        return tm_err_set(err, TM_EINVAL, "output path too long");
    }
    snprintf(b, sizeof(b), "%s", output);
    const char *base = basename(a);
    const char *d = dirname(b);
    if (base[0] == '\0' || strcmp(base, "/") == 0 || strcmp(base, ".") == 0 ||
        strcmp(base, "..") == 0 || output[strlen(output) - 1] == '/') {
        return tm_err_set(err, TM_EINVAL, "output '%.200s' names a directory, expected a file",
                          output);
    }
    int rc = tm_restore_path_check(base, strlen(base), err);
    if (rc == TM_OK) {
        rc = tm_restore_dir_check("output directory", strcmp(d, "/") == 0 ? "/" : d, err);
    }
    if (rc == TM_OK && (strlen(base) + 32 > TM_RESTORE_NAME_MAX)) {
        rc = tm_err_set(err, TM_EINVAL, "output file name '%.80s...' is too long", base);
    }
    if (rc == TM_OK) {
        snprintf(dir, dcap, "%s", d);
        snprintf(name, ncap, "%s", base);
    }
    return rc;
}

static const char *const companions[] = {"-wal", "-shm", "-journal"};

static void remove_with_companions(tm_restore_root *root, const char *rel)
{
    tm_err e = {0};
    char c[TM_RESTORE_NAME_MAX + 48];
    (void)tm_restore_root_remove(root, rel, 0, &e);
    for (size_t i = 0; i < 3; i++) {
        snprintf(c, sizeof(c), "%s%s", rel, companions[i]);
        (void)tm_restore_root_remove(root, c, 0, &e);
    }
}

static int check_destination(const tm_sqlite_restore_opts *o, const char *dir, tm_err *err)
{
    struct stat st;
    if (lstat(o->output, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            return tm_err_set(err, TM_EEXIST,
                              "%s exists and is not a regular file (a link or a directory); a "
                              "restore never replaces one",
                              o->output);
        }
        if (!o->force) {
            return tm_err_set(err, TM_EEXIST,
                              "%s already exists: choose another output, or --force to replace "
                              "it",
                              o->output);
        }
    }
    char why[512] = "";
    if (tm_sqlite_file_live(o->output, why, sizeof(why))) {
        if (!o->force) {
            return tm_err_set(err, TM_EBUSY, "%s: %s (or --force)", o->output, why);
        }
        tm_warn("sqlite", "event=restore_over_live output=%s why=\"%s\"", o->output, why);
    }
    return other_engines_busy(dir, err);
}

/* The snapshot to start from (by id, or the newest at or before the time;
 * none is not an error yet) and the plan (plan.c). --backup restores that
 * snapshot as it was taken: no replay. */
static int choose(const tm_agent_conf *conf, tm_repo_set *rs, const tm_sqlite_restore_opts *o,
                  tm_backup_reader **rd, tm_sqlite_plan *plan, tm_err *err)
{
    tm_err none = {0};
    int rc = tm_sqlite_open_snapshot(rs, o->target, o->backup_id, o->until_ms, rd, &none);
    if (rc != TM_OK && (rc != TM_ENOENT || o->backup_id != NULL)) {
        *err = none;
        return rc;
    }
    const Tidemark__Manifest *m =
        *rd != NULL ? tm_manifest_proto(tm_backup_reader_manifest(*rd)) : NULL;
    if (o->backup_id != NULL) {
        *plan = (tm_sqlite_plan){.from_snapshot = 1};
        return TM_OK;
    }
    char **names = NULL;
    size_t n = 0;
    tm_err le = {0};
    rc = tm_sqlite_log_names(conf, o->target, &names, &n, &le);
    if (rc != TM_OK && o->until_ms > 0) {
        /* A time cannot be reached without the log: never a silent older state. */
        *err = le;
        return tm_err_prefix(err, "restore of %s to a time", o->target);
    }
    if (rc != TM_OK) {
        tm_warn("sqlite", "event=log_unlisted target=%s msg=\"%s\" using=snapshot", o->target,
                le.msg);
    }
    tm_sqlite_plan_make(names, n, m, o->until_ms, plan);
    tm_sqlite_names_free(names, n);
    if (!plan->from_snapshot && plan->chain == 0) {
        *err = none;
        return none.code != 0 ? none.code
                              : tm_err_set(err, TM_ENOENT, "nothing to restore %s from", o->target);
    }
    return TM_OK;
}

/* The snapshot's database object into the temporary file open on fd. */
static int write_snapshot(int fd, tm_backup_reader *rd, const tm_sqlite_restore_opts *o,
                          tm_sqlite_restore_report *rep, tm_err *err)
{
    const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(rd));
    snprintf(rep->backup_id, sizeof(rep->backup_id), "%s", m->backup_id ? m->backup_id : "");
    snprintf(rep->source, sizeof(rep->source), "snapshot");
    rep->snapshot_ms = info_i64(m, "start_ms");
    rep->recovered_ms = rep->snapshot_ms;
    file_out fo = {.ctx = o->ctx};
    tm_sqlite_fd_sink fs = {.fd = fd};
    int rc = tm_sqlite_fd_sink_open(&fs, &fo.inner, err);
    if (rc == TM_OK) {
        tm_sink sink = {.write = out_write,
                        .commit = out_commit,
                        .abort = out_abort,
                        .arg = &fo,
                        .name = "restore"};
        rc = tm_backup_get(rd, TM_SQLITE_DB_OBJECT, &sink, err);
    }
    rep->bytes = fo.bytes;
    return rc;
}

/* The chain's own base snapshot from the log into the temporary file. */
static int write_base(tm_sqlite_log *log, const tm_sqlite_plan *plan, int fd,
                      tm_sqlite_restore_report *rep, tm_err *err)
{
    tm_sqlite_replayed out;
    int rc = tm_sqlite_log_base(log, plan->chain, fd, &out, err);
    snprintf(rep->source, sizeof(rep->source), "chain base");
    snprintf(rep->backup_id, sizeof(rep->backup_id), "chain-%08" PRIx32, plan->chain);
    rep->snapshot_ms = out.time_ms;
    rep->recovered_ms = out.time_ms;
    rep->objects = out.objects;
    struct stat st;
    if (rc == TM_OK && fstat(fd, &st) == 0) {
        rep->bytes = (uint64_t)st.st_size;
    }
    return rc;
}

/* The plan's chain replayed onto the temporary file up to the time. */
static int replay(tm_sqlite_log *log, const tm_sqlite_restore_opts *o, const tm_sqlite_plan *plan,
                  int fd, tm_sqlite_restore_report *rep, tm_err *err)
{
    if (o->ctx != NULL) {
        tm_task_progress(o->ctx, "replay", rep->bytes, 0, 0, 0);
    }
    tm_sqlite_replayed out;
    int rc = tm_sqlite_log_replay(log, plan->chain, plan->from, o->until_ms, fd, &out, err);
    rep->chain = plan->chain;
    rep->frames = out.frames;
    rep->objects += out.objects;
    if (rc == TM_OK && out.time_ms > 0 && out.frames > 0) {
        rep->recovered_ms = out.time_ms;
        snprintf(rep->source + strlen(rep->source), sizeof(rep->source) - strlen(rep->source),
                 "+log");
    }
    return rc;
}

/* fsync on a thread of its own, while the integrity check reads: the disk
 * writes the file while the CPU checks it. */
typedef struct syncer {
    int fd, rc, errnum, started;
    pthread_t t;
} syncer;

static void *sync_main(void *arg)
{
    syncer *s = arg;
    s->rc = fsync(s->fd);
    s->errnum = errno;
    return NULL;
}

static void sync_start(syncer *s, int fd)
{
    *s = (syncer){.fd = fd};
    s->started = pthread_create(&s->t, NULL, sync_main, s) == 0;
}

static int sync_end(syncer *s, const char *path, tm_err *err)
{
    if (s->started) {
        pthread_join(s->t, NULL);
    } else {
        sync_main(s);
    }
    if (s->rc != 0) {
        return tm_err_set(err, TM_EIO, "fsync %s: %s", path, strerror(s->errnum));
    }
    return TM_OK;
}

int tm_sqlite_restore(const tm_agent_conf *conf, const tm_sqlite_restore_opts *o,
                      tm_sqlite_restore_report *rep, tm_err *err)
{
    memset(rep, 0, sizeof(*rep));
    uint64_t t0 = tm_mono_ns();
    char dir[PATH_MAX], name[TM_RESTORE_NAME_MAX + 1], tmp[TM_RESTORE_NAME_MAX + 32];
    int rc = split_output(o->output, dir, sizeof(dir), name, sizeof(name), err);
    if (rc == TM_OK && (o->target == NULL || !tm_repo_valid_name(o->target))) {
        rc = tm_err_set(err, TM_EINVAL, "target name '%.80s' is not valid",
                        o->target ? o->target : "");
    }
    if (rc == TM_OK) {
        rc = check_destination(o, dir, err);
    }
    if (rc != TM_OK) {
        return rc;
    }
    snprintf(rep->output, sizeof(rep->output), "%s", o->output);
    snprintf(tmp, sizeof(tmp), ".%s.tm-restore", name);

    tm_repo_set *rs = NULL;
    tm_backup_reader *rd = NULL;
    tm_restore_root *root = NULL;
    tm_sqlite_log *log = NULL;
    int fd = -1;
    rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, err);
    tm_sqlite_plan plan = {0};
    if (rc == TM_OK) {
        rc = choose(conf, rs, o, &rd, &plan, err);
    }
    if (rc == TM_OK) {
        rc = tm_restore_root_new(dir, NULL, &root, err);
    }
    if (rc == TM_OK && plan.chain != 0) {
        rc = tm_sqlite_log_open(conf, o->target, &log, err);
    }
    char path[PATH_MAX + TM_RESTORE_NAME_MAX + 48];
    snprintf(path, sizeof(path), "%s/%s", dir, tmp);
    if (rc == TM_OK) {
        remove_with_companions(root, tmp);
        rc = tm_restore_root_create(root, tmp, &fd, err);
    }
    if (rc == TM_OK) {
        rc = plan.from_snapshot ? write_snapshot(fd, rd, o, rep, err)
                                : write_base(log, &plan, fd, rep, err);
    }
    rep->files_s = (double)(tm_mono_ns() - t0) / 1e9;

    uint64_t t1 = tm_mono_ns();
    if (rc == TM_OK && plan.chain != 0) {
        rc = replay(log, o, &plan, fd, rep, err);
    }
    if (rc == TM_OK && plan.chain != 0 &&
        !tm_sqlite_plan_passed(&plan, rep->frames, rep->recovered_ms)) {
        /* The replay stopped between the snapshot's start position and its
         * own point: start again from the chain's base. */
        tm_warn("sqlite",
                "event=restore_restart target=%s backup=%s why=\"the log stops before the "
                "snapshot's own point\" chain=%" PRIu32,
                o->target, rep->backup_id, plan.fallback_chain);
        if (plan.fallback_chain == 0) {
            rc = tm_err_set(err, TM_ENOENT,
                            "target %s: the shipped log ends inside snapshot %s and no chain "
                            "begins at or before the time; restore --backup %s for the "
                            "snapshot alone",
                            o->target, rep->backup_id, rep->backup_id);
        } else {
            plan = (tm_sqlite_plan){.chain = plan.fallback_chain};
            rep->frames = 0;
            rep->objects = 0;
            rc = write_base(log, &plan, fd, rep, err); /* empties the file first */
            if (rc == TM_OK) {
                rc = replay(log, o, &plan, fd, rep, err);
            }
        }
    }
    rep->replay_s = (double)(tm_mono_ns() - t1) / 1e9;

    /* Durable before it gets its name: the one fsync, while the check runs. */
    uint64_t t2 = tm_mono_ns();
    syncer sy;
    if (rc == TM_OK) {
        sync_start(&sy, fd);
        if (o->ctx != NULL) {
            tm_task_progress(o->ctx, "check", rep->bytes, rep->bytes, 1, 1);
        }
        rc = tm_sqlite_integrity(path, rep->integrity, sizeof(rep->integrity), err);
        tm_err se = {0};
        if (sync_end(&sy, path, &se) != TM_OK && rc == TM_OK) {
            *err = se;
            rc = se.code;
        }
    }
    rep->check_s = (double)(tm_mono_ns() - t2) / 1e9;
    if (fd >= 0) {
        close(fd);
    }
    tm_sqlite_log_close(log);
    if (rc == TM_OK && o->force) {
        for (size_t i = 0; i < 3 && rc == TM_OK; i++) {
            char c[TM_RESTORE_NAME_MAX + 48];
            snprintf(c, sizeof(c), "%s%s", name, companions[i]);
            rc = tm_restore_root_remove(root, c, 0, err);
        }
    }
    if (rc == TM_OK) {
        rc = tm_restore_root_rename(root, tmp, name, o->force, err);
    }
    if (rc != TM_OK && root != NULL) {
        remove_with_companions(root, tmp);
    }
    rep->total_s = (double)(tm_mono_ns() - t0) / 1e9;
    if (rc == TM_OK) {
        tm_info("sqlite",
                "event=restored target=%s backup=%s output=%s bytes=%" PRIu64
                " source=%s files_s=%.3f replay_s=%.3f check_s=%.3f",
                o->target, rep->backup_id, o->output, rep->bytes, rep->source, rep->files_s,
                rep->replay_s, rep->check_s);
    }
    tm_restore_root_free(root);
    tm_backup_reader_free(rd);
    tm_repo_set_free(rs);
    return rc;
}

/* ---- the RESTORE task ---- */

int tm_sqlite_restore_task(tm_task_ctx *ctx, const Tidemark__Task *task,
                           Tidemark__TaskResult *result, tm_err *err)
{
    const Tidemark__RestoreSpec *s = task->restore;
    if (s == NULL || s->dir == NULL || s->dir[0] == '\0') {
        return tm_err_set(err, TM_EINVAL, "restore task without a destination directory");
    }
    if (task->target == NULL || !tm_repo_valid_name(task->target)) {
        return tm_err_set(err, TM_EINVAL, "restore task without a valid target name");
    }
    const tm_agent_conf *conf = tm_task_conf(ctx);
    /* The coordinator chose the directory: only under restore_roots. */
    int rc = tm_restore_under_roots("restore directory", s->dir, conf->restore_roots,
                                    conf->n_restore_roots, err);
    if (rc != TM_OK) {
        return rc;
    }
    char output[PATH_MAX];
    if ((size_t)snprintf(output, sizeof(output), "%s/%s.db", s->dir, task->target) >=
        sizeof(output)) {
        return tm_err_set(err, TM_EINVAL, "restore directory too long");
    }
    tm_sqlite_restore_opts o = {
        .target = task->target,
        .output = output,
        .backup_id = s->backup_id && s->backup_id[0] ? s->backup_id : NULL,
        .ctx = ctx,
    };
    if (s->target_time != NULL && s->target_time[0] != '\0' &&
        tm_sqlite_time_parse(s->target_time, &o.until_ms) != TM_OK) {
        return tm_err_set(err, TM_EINVAL,
                          "restore time '%.60s' is not 'YYYY-MM-DD HH:MM:SS[.mmm]+00'",
                          s->target_time);
    }
    tm_sqlite_restore_report rep;
    rc = tm_sqlite_restore(conf, &o, &rep, err);
    if (rep.backup_id[0]) {
        result->backup_id = strdup(rep.backup_id);
    }
    result->has_bytes = result->has_files = 1;
    result->bytes = rep.bytes;
    result->files = rc == TM_OK ? 1 : 0;
    if (rc == TM_OK) {
        result->has_chain = 1;
        result->chain = rep.chain;
        tm_result_extra(result, "output", "%s", output);
        tm_result_extra(result, "source", "%s", rep.source);
        tm_result_extra(result, "recovered_to_ms", "%" PRId64, rep.recovered_ms);
        tm_result_extra(result, "frames", "%" PRIu64, rep.frames);
        tm_result_extra(result, "integrity", "%s", rep.integrity);
        tm_result_extra(result, "restore_files_s", "%.3f", rep.files_s);
        tm_result_extra(result, "replay_s", "%.3f", rep.replay_s);
        tm_result_extra(result, "check_s", "%.3f", rep.check_s);
        tm_result_extra(result, "total_s", "%.3f", rep.total_s);
    }
    return rc;
}
