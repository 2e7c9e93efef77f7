/*
 * restore.c - a Turso off-provider copy back into use: the SQL dump of one
 * database (or of each database of the backup) replayed
 *
 *   - into a local SQLite file: built in a private scratch directory under
 *     state_dir, checked (integrity_check, tables and rows counted), then
 *     copied through restore_root.h into a temporary name beside the
 *     output and renamed into place without replacing anything, so the
 *     file appears whole or not at all and never lands outside the
 *     directory asked for (or in one a running server uses);
 *   - into a new Turso database: created through the Platform API, loaded
 *     over its HTTP endpoint in batches; deleted again if the load fails.
 *
 * The dump came from the repository (authenticated by its GCM tags), but
 * it is SQL: the local replay refuses ATTACH/DETACH and VACUUM and any
 * PRAGMA a dump does not need, so a dump cannot write outside its file.
 */
#include "agent/engines/turso/turso.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/repo/repo_find.h"
#include "agent/repo/repository.h"
#include "agent/restore_root.h"
#include "agent/result_kv.h"
#include "common/log.h"
#include "common/util.h"

#define LOAD_BATCH 100

int tm_turso_time_parse(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
    if (end == NULL) {
        end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    }
    if (end == NULL ||
        (strcmp(end, "+00") != 0 && strcmp(end, "+00:00") != 0 && strcmp(end, "Z") != 0)) {
        return TM_EINVAL;
    }
    *out = (int64_t)timegm(&tm);
    return TM_OK;
}

static int64_t backup_end(const Tidemark__Manifest *m)
{
    const char *v = tm_info_get(m, "stop_time");
    return v != NULL ? strtoll(v, NULL, 10) : m->created_at;
}

/* A Turso backup that ended at or before *arg (0: any). */
static int ended_by(void *arg, const Tidemark__Manifest *m)
{
    int64_t until = *(const int64_t *)arg;
    return until == 0 || backup_end(m) <= until;
}

/* The backup named, or the newest Turso backup of target that opens (and,
 * with a time, ended at or before it). */
static int open_backup(tm_repo_set *rs, const char *target, const char *id, int64_t until,
                       tm_backup_reader **out, tm_err *err)
{
    *out = NULL;
    if (id != NULL) {
        int rc = tm_backup_open(rs, target, id, NULL, out, err);
        const Tidemark__Manifest *m =
            rc == TM_OK ? tm_manifest_proto(tm_backup_reader_manifest(*out)) : NULL;
        if (m != NULL && (m->engine == NULL || strcmp(m->engine, "turso") != 0)) {
            tm_backup_reader_free(*out);
            *out = NULL;
            rc = tm_err_set(err, TM_EINVAL, "backup %s of %s is a %s backup, not Turso", id, target,
                            m->engine ? m->engine : "?");
        }
        return rc;
    }
    int rc = tm_repo_find_backup(rs, target, "turso", ended_by, &until, out, err);
    if (rc == TM_ENOENT) {
        rc = until ? tm_err_set(err, TM_ENOENT,
                                "no Turso backup of target %s finished at or before the time "
                                "asked for",
                                target)
                   : tm_err_set(err, TM_ENOENT, "no Turso backup of target %s in any repository",
                                target);
    }
    return rc;
}

/* ---- replay into a local SQLite database ---- */

static int authorize(void *arg, int action, const char *a, const char *b, const char *c,
                     const char *d)
{
    (void)arg;
    (void)b;
    (void)c;
    (void)d;
    if (action == SQLITE_ATTACH || action == SQLITE_DETACH) {
        return SQLITE_DENY;
    }
    if (action == SQLITE_PRAGMA) {
        /* What dumps write: foreign_keys=OFF, writable_schema for virtual
         * tables; integrity_check is ours. */
        return a != NULL && (strcasecmp(a, "foreign_keys") == 0 ||
                             strcasecmp(a, "writable_schema") == 0 ||
                             strcasecmp(a, "integrity_check") == 0)
                   ? SQLITE_OK
                   : SQLITE_DENY;
    }
    return SQLITE_OK;
}

typedef struct replay {
    sqlite3 *db;      /* local replay */
    tm_turso_http *h; /* or remote load */
    const tm_turso_conn *conn;
    char *batch[LOAD_BATCH];
    size_t nbatch;
    tm_turso_splitter *split;
    uint64_t bytes, statements;
    tm_task_ctx *ctx;
} replay;

static int skip_ws_eq(const char *s, const char *word)
{
    while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t') {
        s++;
    }
    return strncasecmp(s, word, strlen(word)) == 0;
}

/* One batch in one request, inside its own transaction (BEGIN .. COMMIT on
 * the request's stream): one commit per batch, not per row, and far inside
 * the provider's limit on an open transaction. */
static int flush(replay *r, tm_err *err)
{
    if (r->nbatch == 0) {
        return TM_OK;
    }
    const char *sql[LOAD_BATCH + 2];
    sql[0] = "BEGIN";
    for (size_t i = 0; i < r->nbatch; i++) {
        sql[i + 1] = r->batch[i];
    }
    sql[r->nbatch + 1] = "COMMIT";
    size_t n = r->nbatch + 2;
    tm_turso_stmt *res = calloc(n, sizeof(*res));
    int rc = res == NULL ? tm_err_set(err, TM_ENOMEM, "out of memory")
                         : tm_turso_exec(r->h, r->conn, sql, n, res, err);
    for (size_t i = 0; rc == TM_OK && i < n; i++) {
        if (!res[i].ok) {
            rc = tm_err_set(err, TM_EIO, "load into %s: statement %" PRIu64 " failed: %s (%.80s)",
                            r->conn->name, r->statements - r->nbatch + (i > 0 ? i - 1 : 0) + 1,
                            res[i].error, sql[i]);
        }
    }
    for (size_t i = 0; i < r->nbatch; i++) {
        free(r->batch[i]);
    }
    r->nbatch = 0;
    free(res);
    return rc;
}

static int on_stmt(void *arg, const char *stmt, tm_err *err)
{
    replay *r = arg;
    if (skip_ws_eq(stmt, "VACUUM")) {
        return tm_err_set(err, TM_ECORRUPT, "dump holds a VACUUM statement: refused");
    }
    r->statements++;
    if (r->db != NULL) {
        char *msg = NULL;
        if (sqlite3_exec(r->db, stmt, NULL, NULL, &msg) != SQLITE_OK) {
            int rc = tm_err_set(err, TM_ECORRUPT, "replay statement %" PRIu64 ": %s (%.80s)",
                                r->statements, msg != NULL ? msg : "?", stmt);
            sqlite3_free(msg);
            return rc;
        }
        return TM_OK;
    }
    /* Remote: each batch is its own request and transaction (flush); the
     * dump's own transaction would outlive the provider's limit on an open
     * transaction, and a failed load deletes the new database anyway. */
    if (skip_ws_eq(stmt, "BEGIN") || skip_ws_eq(stmt, "COMMIT") || skip_ws_eq(stmt, "END")) {
        return TM_OK;
    }
    if ((r->batch[r->nbatch] = strdup(stmt)) == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    r->nbatch++;
    return r->nbatch == LOAD_BATCH ? flush(r, err) : TM_OK;
}

static int sink_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    replay *r = arg;
    if (r->ctx != NULL && tm_task_cancelled(r->ctx)) {
        return tm_err_set(err, TM_EBUSY, "cancelled");
    }
    r->bytes += len;
    if (r->ctx != NULL) {
        tm_task_progress(r->ctx, "restore", r->bytes, 0, 0, 0);
    }
    return tm_turso_splitter_feed(r->split, buf, len, err);
}

static int sink_commit(void *arg, tm_err *err)
{
    replay *r = arg;
    int rc = tm_turso_splitter_finish(r->split, err);
    if (rc == TM_OK && r->db == NULL) {
        rc = flush(r, err);
    }
    return rc;
}

static void sink_abort(void *arg)
{
    (void)arg;
}

static int replay_object(tm_backup_reader *rd, const char *database, replay *r, tm_err *err)
{
    char obj[TM_TURSO_NAME_MAX + 8];
    snprintf(obj, sizeof(obj), "%s%s", database, TM_TURSO_DUMP_EXT);
    int rc = tm_turso_splitter_new(on_stmt, r, &r->split, err);
    if (rc == TM_OK) {
        tm_sink sink = {.write = sink_write,
                        .commit = sink_commit,
                        .abort = sink_abort,
                        .arg = r,
                        .name = "restore"};
        rc = tm_backup_get(rd, obj, &sink, err);
    }
    for (size_t i = 0; i < r->nbatch; i++) {
        free(r->batch[i]);
    }
    r->nbatch = 0;
    tm_turso_splitter_free(r->split);
    r->split = NULL;
    return rc;
}

/* Checks of a replayed local database: integrity_check, tables, rows. */
static int local_checks(sqlite3 *db, tm_turso_restore_report *rep, tm_err *err)
{
    sqlite3_stmt *st = NULL;
    int rc = TM_OK;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
        rc = tm_err_set(err, TM_ECORRUPT, "restored database fails integrity_check: %s",
                        st != NULL && sqlite3_column_text(st, 0) != NULL
                            ? (const char *)sqlite3_column_text(st, 0)
                            : sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == TM_OK && sqlite3_prepare_v2(db,
                                          "SELECT name FROM sqlite_master WHERE type = 'table' "
                                          "AND name NOT LIKE 'sqlite_%'",
                                          -1, &st, NULL) != SQLITE_OK) {
        rc = tm_err_set(err, TM_EIO, "list tables: %s", sqlite3_errmsg(db));
    }
    while (rc == TM_OK && sqlite3_step(st) == SQLITE_ROW) {
        char *q = sqlite3_mprintf("SELECT count(*) FROM \"%w\"",
                                  (const char *)sqlite3_column_text(st, 0));
        sqlite3_stmt *c = NULL;
        if (q != NULL && sqlite3_prepare_v2(db, q, -1, &c, NULL) == SQLITE_OK &&
            sqlite3_step(c) == SQLITE_ROW) {
            rep->rows += (uint64_t)sqlite3_column_int64(c, 0);
            rep->tables++;
        } else {
            rc = tm_err_set(err, TM_EIO, "count rows: %s", sqlite3_errmsg(db));
        }
        sqlite3_finalize(c);
        sqlite3_free(q);
    }
    sqlite3_finalize(st);
    return rc;
}

static int copy_fd(int in, int out, const char *what, tm_err *err)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return tm_err_set(err, TM_EIO, "read scratch copy of %s: %s", what, strerror(errno));
        }
        if (n == 0) {
            return TM_OK;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                return tm_err_set(err, errno == ENOSPC ? TM_ENOSPC : TM_EIO, "write %s: %s", what,
                                  strerror(errno));
            }
            off += w;
        }
    }
}

/* One database of rd into the local file dir/name. */
static int restore_local(const tm_agent_conf *conf, tm_backup_reader *rd, const char *database,
                         const char *dir, const char *name, tm_turso_restore_report *rep,
                         tm_task_ctx *ctx, tm_err *err)
{
    char scratch[PATH_MAX], file[PATH_MAX + 64], tmp[TM_RESTORE_NAME_MAX + 1];
    snprintf(scratch, sizeof(scratch), "%s/tm-turso-restore-XXXXXX",
             conf->state_dir != NULL ? conf->state_dir : "/tmp");
    if (mkdtemp(scratch) == NULL) {
        return tm_err_set(err, TM_EIO, "mkdtemp %s: %s", scratch, strerror(errno));
    }
    snprintf(file, sizeof(file), "%s/db", scratch);
    replay r = {.ctx = ctx};
    int rc =
        sqlite3_open_v2(file, &r.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK
            ? TM_OK
            : tm_err_set(err, TM_EIO, "open scratch database %s: %s", file,
                         r.db != NULL ? sqlite3_errmsg(r.db) : "out of memory");
    if (rc == TM_OK) {
        sqlite3_set_authorizer(r.db, authorize, NULL);
        sqlite3_limit(r.db, SQLITE_LIMIT_ATTACHED, 0);
        rc = replay_object(rd, database, &r, err);
    }
    if (rc == TM_OK) {
        rc = local_checks(r.db, rep, err);
    }
    if (r.db != NULL && sqlite3_close(r.db) != SQLITE_OK && rc == TM_OK) {
        rc = tm_err_set(err, TM_EIO, "close scratch database: %s", sqlite3_errmsg(r.db));
    }
    rep->bytes += r.bytes;
    rep->statements += r.statements;
    tm_restore_root *root = NULL;
    if (rc == TM_OK) {
        rc = tm_restore_root_new(dir, &(tm_restore_root_opts){0}, &root, err);
    }
    int in = -1, out = -1, made = 0;
    snprintf(tmp, sizeof(tmp), ".%.200s.tm-tmp", name);
    if (rc == TM_OK && (in = open(file, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = tm_err_set(err, TM_EIO, "open %s: %s", file, strerror(errno));
    }
    if (rc == TM_OK) {
        tm_err e2 = {0};
        tm_restore_root_remove(root, tmp, 0, &e2); /* a leftover of a killed restore */
        rc = tm_restore_root_create(root, tmp, &out, err);
        made = rc == TM_OK;
    }
    if (rc == TM_OK) {
        rc = copy_fd(in, out, name, err);
    }
    if (rc == TM_OK && fsync(out) != 0) {
        rc = tm_err_set(err, TM_EIO, "fsync %s/%s: %s", dir, tmp, strerror(errno));
    }
    if (rc == TM_OK) {
        rc = tm_restore_root_attrs(root, out, tmp, 0600, -1, err);
    }
    if (out >= 0 && close(out) != 0 && rc == TM_OK) {
        rc = tm_err_set(err, TM_EIO, "close %s/%s: %s", dir, tmp, strerror(errno));
    }
    if (rc == TM_OK) {
        rc = tm_restore_root_rename(root, tmp, name, 0, err);
    }
    if (rc != TM_OK && made) {
        tm_err e2 = {0};
        tm_restore_root_remove(root, tmp, 0, &e2);
    }
    if (in >= 0) {
        close(in);
    }
    tm_restore_root_free(root);
    unlink(file);
    char side[PATH_MAX + 96];
    snprintf(side, sizeof(side), "%s-journal", file);
    unlink(side);
    rmdir(scratch);
    return rc;
}

/* One database of rd into a new Turso database. */
static int restore_remote(const tm_turso_restore_opts *o, tm_backup_reader *rd,
                          const char *database, tm_turso_restore_report *rep, tm_err *err)
{
    const tm_turso_target_conf *tc = o->tc;
    if (tc == NULL) {
        return tm_err_set(err, TM_ECONFIG,
                          "a restore into Turso needs this agent to serve target %s (its turso: "
                          "block names the organization and the API token)",
                          o->target);
    }
    tm_turso_http *h = NULL;
    tm_turso_db db;
    tm_turso_conn c = {0};
    int created = 0;
    int rc = tm_turso_http_for(tc, o->ctx, &h, err);
    const char *group = o->group != NULL ? o->group : tc->group;
    tm_turso_db src;
    if (rc == TM_OK && group == NULL && tm_turso_api_get(tc, h, database, &src, err) == TM_OK) {
        group = src.group;
    }
    if (rc == TM_OK) {
        rc = tm_turso_api_create(tc, h, o->to_turso, group, NULL, NULL, &db, err);
        created = rc == TM_OK;
    }
    if (rc == TM_OK) {
        rc = tm_turso_conn_open(tc, h, &db, 1, &c, err);
    }
    if (rc == TM_OK) {
        rc = tm_turso_wait_ready(h, &c, o->ctx, err);
    }
    if (rc == TM_OK) {
        replay r = {.h = h, .conn = &c, .ctx = o->ctx};
        rc = replay_object(rd, database, &r, err);
        rep->bytes += r.bytes;
        rep->statements += r.statements;
    }
    tm_turso_conn_close(&c);
    if (rc != TM_OK && created) {
        tm_err e2 = {0};
        if (tm_turso_api_delete(tc, h, o->to_turso, &e2) != TM_OK) {
            tm_error("turso", "event=restore_cleanup_failed database=%s msg=\"%s\"", o->to_turso,
                     e2.msg);
            tm_err_prefix(err, "(and the half-loaded database %s could not be deleted: %s)",
                          o->to_turso, e2.msg);
        }
    }
    tm_turso_http_free(h);
    return rc;
}

int tm_turso_restore(const tm_agent_conf *conf, const tm_turso_restore_opts *o,
                     tm_turso_restore_report *rep, tm_err *err)
{
    memset(rep, 0, sizeof(*rep));
    uint64_t t0 = tm_mono_ns();
    int64_t until = 0;
    if (o->time != NULL && tm_turso_time_parse(o->time, &until) != TM_OK) {
        return tm_err_set(err, TM_EINVAL, "restore time '%.60s' is not 'YYYY-MM-DD HH:MM:SS+00'",
                          o->time);
    }
    /* Where the file goes: checked before anything is read. */
    char dir[PATH_MAX], name[TM_RESTORE_NAME_MAX + 1] = "";
    int rc = TM_OK;
    if (o->output != NULL) {
        const char *slash = strrchr(o->output, '/');
        if (o->output[0] != '/' || slash == NULL || slash[1] == '\0') {
            return tm_err_set(err, TM_EINVAL, "--output '%.200s' is not an absolute file path",
                              o->output);
        }
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash == o->output ? 1 : slash - o->output),
                 o->output);
        snprintf(name, sizeof(name), "%s", slash + 1);
        rc = tm_restore_path_check(name, strlen(name), err);
    } else if (o->dir != NULL) {
        snprintf(dir, sizeof(dir), "%s", o->dir);
    }
    if (rc == TM_OK && (o->output != NULL || o->dir != NULL)) {
        rc = tm_restore_dir_check("restore directory", dir, err);
        if (rc == TM_OK) {
            rc = tm_restore_dir_busy(dir, err);
        }
    }
    if (rc == TM_OK && o->output != NULL && access(o->output, F_OK) == 0) {
        return tm_err_set(err, TM_EEXIST,
                          "%s already exists: restore to a new file (nothing was "
                          "changed)",
                          o->output);
    }
    tm_repo_set *rs = NULL;
    tm_backup_reader *rd = NULL;
    if (rc == TM_OK) {
        rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, err);
    }
    if (rc == TM_OK) {
        rc = open_backup(rs, o->target, o->backup_id, until, &rd, err);
    }
    char *dbs = NULL;
    if (rc == TM_OK) {
        const Tidemark__Manifest *m = tm_manifest_proto(tm_backup_reader_manifest(rd));
        snprintf(rep->backup_id, sizeof(rep->backup_id), "%s", m->backup_id ? m->backup_id : "");
        rep->backup_time = backup_end(m);
        const char *v = tm_info_get(m, TM_TURSO_INFO_DATABASES);
        dbs = strdup(v != NULL ? v : "");
        if (dbs == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
    }
    /* Which databases: the one asked for, or the only one, or (dir) all. */
    size_t count = 0, picked = 0;
    for (char *p = dbs; rc == TM_OK && p != NULL && *p;) {
        char *comma = strchr(p, ',');
        count++;
        p = comma ? comma + 1 : NULL;
    }
    if (rc == TM_OK && count == 0) {
        rc = tm_err_set(err, TM_ECORRUPT, "backup %s records no database", rep->backup_id);
    }
    if (rc == TM_OK && o->database == NULL && o->dir == NULL && count > 1) {
        rc = tm_err_set(err, TM_EINVAL,
                        "backup %s holds %zu databases (%s): name one with --database",
                        rep->backup_id, count, dbs);
    }
    char *save = NULL;
    for (char *d = rc == TM_OK ? strtok_r(dbs, ",", &save) : NULL; rc == TM_OK && d != NULL;
         d = strtok_r(NULL, ",", &save)) {
        if (o->database != NULL && strcmp(d, o->database) != 0) {
            continue;
        }
        picked++;
        snprintf(rep->database, sizeof(rep->database), "%s", d);
        tm_info("turso", "event=restore_started target=%s backup=%s database=%s to=%s", o->target,
                rep->backup_id, d,
                o->to_turso != NULL ? o->to_turso
                : o->output != NULL ? o->output
                                    : dir);
        if (o->to_turso != NULL) {
            rc = restore_remote(o, rd, d, rep, err);
        } else {
            char fname[TM_RESTORE_NAME_MAX + 1];
            snprintf(fname, sizeof(fname), "%s.db", d);
            rc =
                restore_local(conf, rd, d, dir, o->output != NULL ? name : fname, rep, o->ctx, err);
        }
    }
    if (rc == TM_OK && picked == 0) {
        rc = tm_err_set(
            err, TM_ENOENT, "backup %s has no database %s (it holds %s)", rep->backup_id,
            o->database,
            tm_info_get(tm_manifest_proto(tm_backup_reader_manifest(rd)), TM_TURSO_INFO_DATABASES));
    }
    rep->total_s = (double)(tm_mono_ns() - t0) / 1e9;
    if (rc == TM_OK) {
        tm_info("turso",
                "event=restore_done target=%s backup=%s bytes=%" PRIu64 " statements=%" PRIu64
                " tables=%" PRIu64 " rows=%" PRIu64 " s=%.3f",
                o->target, rep->backup_id, rep->bytes, rep->statements, rep->tables, rep->rows,
                rep->total_s);
    }
    free(dbs);
    tm_backup_reader_free(rd);
    tm_repo_set_free(rs);
    return rc;
}
