/*
 * restore.c - a pg_dump backup into new databases on any server:
 *
 *   1. choose the backup: the one named, or the newest of the target whose
 *      dumps all ended at or before --time (so nothing in it is newer than
 *      the time), or the newest;
 *   2. refuse before writing anything when a database to create exists
 *      already (a restore never overwrites one);
 *   3. globals first (roles, tablespaces) with psql; a role that exists
 *      already is counted, not fatal (CREATE fails, the ALTER after it
 *      still sets its attributes);
 *   4. per database: fetch its archive (checked frame by frame and by both
 *      digests) into a private temporary file, because pg_restore -j needs a
 *      seekable archive; CREATE DATABASE from template0; pg_restore -j N;
 *      remove the file before the next one, so the disk holds one archive at
 *      a time.
 *
 * All or nothing: when any step after the first CREATE DATABASE fails, the
 * databases this restore created are dropped again. The temporary files
 * live under a 0700 directory made through restore_root.h (opened once,
 * nothing followed out of it) and leave with it.
 */
#include "agent/engines/pg_dump/dump.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/repo/repo_find.h"
#include "agent/repo/repository.h"
#include "agent/restore_root.h"
#include "agent/result_kv.h"
#include "common/log.h"
#include "common/util.h"

static int is_dump(const Tidemark__Manifest *m)
{
    return m->engine != NULL && strcmp(m->engine, TM_DUMP_ENGINE) == 0;
}

/* A pg_dump backup whose dumps ended at or before *arg (-1: any). */
static int ended_by(void *arg, const Tidemark__Manifest *m)
{
    int64_t until = *(const int64_t *)arg;
    const char *sv = tm_info_get(m, "stop_time");
    int64_t stop = sv != NULL ? strtoll(sv, NULL, 10) : -1;
    return until < 0 || (stop >= 0 && stop <= until);
}

/* Open the backup: id, or the newest pg_dump backup of target whose dumps
 * ended at or before until (-1 = any). */
static int open_backup(tm_repo_set *rs, const char *target, const char *id, int64_t until,
                       tm_backup_reader **out, tm_err *err)
{
    *out = NULL;
    if (id != NULL) {
        int rc = tm_backup_open(rs, target, id, NULL, out, err);
        if (rc == TM_OK && !is_dump(tm_manifest_proto(tm_backup_reader_manifest(*out)))) {
            tm_backup_reader_free(*out);
            *out = NULL;
            rc = tm_err_set(err, TM_EINVAL, "backup %s of %s is not a pg_dump backup", id, target);
        }
        return rc;
    }
    int rc = tm_repo_find_backup(rs, target, TM_DUMP_ENGINE, ended_by, &until, out, err);
    if (rc == TM_ENOENT) {
        char when[40] = "";
        if (until >= 0) {
            tm_fmt_time(until, when, sizeof(when));
        }
        rc = until >= 0 ? tm_err_set(err, TM_ENOENT,
                                     "no pg_dump backup of target %s ended at or before %s (dumps "
                                     "restore to the moment they were taken; see tidemark-agent "
                                     "repo ls)",
                                     target, when)
                        : tm_err_set(err, TM_ENOENT,
                                     "no pg_dump backup of target %s in any repository", target);
    }
    return rc;
}

/* The restore's sink: an archive into a temporary file. */
typedef struct file_out {
    int fd;
    uint64_t bytes, *total;
    tm_task_ctx *ctx;
} file_out;

static int out_write(void *arg, const void *buf, size_t len, tm_err *err)
{
    file_out *o = arg;
    if (o->ctx != NULL && tm_task_cancelled(o->ctx)) {
        return tm_err_set(err, TM_EBUSY, "cancelled");
    }
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(o->fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return tm_err_set(err, errno == ENOSPC ? TM_ENOSPC : TM_EIO,
                              "write the temporary archive: %s", strerror(errno));
        }
        p += n;
        len -= (size_t)n;
        o->bytes += (uint64_t)n;
        *o->total += (uint64_t)n;
    }
    if (o->ctx != NULL) {
        tm_task_progress(o->ctx, "restore:fetch", *o->total, 0, 0, 0);
    }
    return TM_OK;
}

static int out_commit(void *arg, tm_err *err)
{
    (void)arg;
    (void)err;
    return TM_OK; /* read back at once and thrown away: no fsync */
}

static void out_abort(void *arg)
{
    (void)arg; /* the scratch directory goes as a whole */
}

/* Object name -> a file under root (rel), fetched and checked. */
static int fetch(tm_backup_reader *rd, tm_restore_root *root, const char *obj, const char *rel,
                 tm_dump_restore_opts const *o, tm_dump_restore_report *rep, tm_err *err)
{
    int fd = -1;
    int rc = tm_restore_root_create(root, rel, &fd, err);
    if (rc != TM_OK) {
        return rc;
    }
    file_out fo = {.fd = fd, .total = &rep->bytes, .ctx = o->ctx};
    tm_sink s = {.write = out_write,
                 .commit = out_commit,
                 .abort = out_abort,
                 .arg = &fo,
                 .name = "temporary archive"};
    rc = tm_backup_get(rd, obj, &s, err);
    close(fd);
    return rc;
}

/* psql -f globals.sql: counts the failed statements and those that failed
 * because the role exists already (psql goes on after an error and exits
 * 0; only a lost connection or a missing file is fatal). */
static int run_globals(const char *bindir, const tm_dump_scratch *sc, const char *conn,
                       const char *file, tm_dump_restore_report *rep, tm_err *err)
{
    char *argv[] = {"psql", "-X",         "-q", "--no-password", "-d", (char *)conn,
                    "-f",   (char *)file, NULL};
    tm_dump_child ch;
    int rc = tm_dump_spawn(bindir, argv, sc, NULL, 0, &ch, err);
    if (rc != TM_OK) {
        return rc;
    }
    char *text = NULL;
    rc = tm_dump_wait(&ch, "psql (globals)", &text, err);
    for (const char *p = text; p != NULL && (p = strstr(p, "ERROR:")) != NULL; p++) {
        const char *eol = strchr(p, '\n');
        size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);
        rep->globals_failed++;
        if (memmem(p, n, "already exists", 14) != NULL) {
            rep->globals_existed++;
        } else {
            tm_warn("pg_dump", "event=globals_statement_failed msg=\"%.*s\"",
                    (int)(n > 300 ? 300 : n), p);
        }
    }
    free(text);
    return rc;
}

static double secs_since(uint64_t t0)
{
    return (double)(tm_mono_ns() - t0) / 1e9;
}

int tm_dump_restore_drop(const tm_dump_server *dest, const tm_dump_restore_report *rep, tm_err *err)
{
    tm_dump_conn *c = NULL;
    int rc = rep->n_dbs > 0 ? tm_dump_connect(dest, "postgres", &c, err) : TM_OK;
    for (size_t i = 0; rc == TM_OK && i < rep->n_dbs; i++) {
        if (rep->created[i][0] == '\0') {
            continue;
        }
        char *id = tm_dump_ident(c, rep->created[i]);
        char *sql = NULL;
        if (id == NULL || asprintf(&sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", id) < 0) {
            sql = NULL;
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        } else {
            rc = tm_dump_exec(c, sql, err);
        }
        free(sql);
        free(id);
    }
    tm_dump_close(c);
    return rc;
}

int tm_dump_restore(const tm_agent_conf *conf, const tm_dump_restore_opts *o,
                    tm_dump_restore_report *rep, tm_err *err)
{
    memset(rep, 0, sizeof(*rep));
    uint64_t t0 = tm_mono_ns();
    int64_t until = -1;
    if (o->time != NULL && tm_dump_time_parse(o->time, &until) != TM_OK) {
        return tm_err_set(err, TM_EINVAL, "--time '%.60s' is not 'YYYY-MM-DD HH:MM:SS+00' (UTC)",
                          o->time);
    }
    if (o->backup_id != NULL && o->time != NULL) {
        return tm_err_set(err, TM_EINVAL, "--backup and --time exclude each other");
    }
    const char *suffix = o->suffix != NULL ? o->suffix : "_restored";
    char bindir[PATH_MAX];
    int rc = tm_dump_bindir(o->bindir, bindir, sizeof(bindir), err);
    tm_repo_set *rs = NULL;
    tm_backup_reader *rd = NULL;
    if (rc == TM_OK) {
        rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, err);
    }
    if (rc == TM_OK) {
        rc = open_backup(rs, o->target, o->backup_id, until, &rd, err);
    }
    /* The databases of the backup and their new names. */
    const Tidemark__Manifest *m =
        rc == TM_OK ? tm_manifest_proto(tm_backup_reader_manifest(rd)) : NULL;
    char new_names[TM_DUMP_MAX_DBS][64];
    if (m != NULL) {
        snprintf(rep->backup_id, sizeof(rep->backup_id), "%s", m->backup_id ? m->backup_id : "");
        const char *sv = tm_info_get(m, "start_time"), *ev = tm_info_get(m, "stop_time");
        rep->dump_start = sv != NULL ? strtoll(sv, NULL, 10) : 0;
        rep->dump_stop = ev != NULL ? strtoll(ev, NULL, 10) : 0;
        const char *list = tm_info_get(m, "databases");
        char *copy = strdup(list != NULL ? list : "");
        char *save = NULL;
        if (copy == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        for (char *e = copy != NULL ? strtok_r(copy, ",", &save) : NULL; rc == TM_OK && e != NULL;
             e = strtok_r(NULL, ",", &save)) {
            if (rep->n_dbs == TM_DUMP_MAX_DBS ||
                tm_dump_unescape(e, rep->src[rep->n_dbs], sizeof(rep->src[0])) != TM_OK) {
                rc = tm_err_set(err, TM_ECORRUPT, "backup %s: bad database list in its manifest",
                                rep->backup_id);
                break;
            }
            int n = o->into != NULL
                        ? snprintf(new_names[rep->n_dbs], 64, "%s", o->into)
                        : snprintf(new_names[rep->n_dbs], 64, "%s%s", rep->src[rep->n_dbs], suffix);
            if (n < 0 || n > 63) {
                rc = tm_err_set(err, TM_EINVAL,
                                "the new name of database '%s' is longer than 63 bytes; use a "
                                "shorter --dbname-suffix or --into",
                                rep->src[rep->n_dbs]);
            }
            rep->n_dbs++;
        }
        free(copy);
        if (rc == TM_OK && o->into != NULL && rep->n_dbs != 1) {
            rc = tm_err_set(err, TM_EINVAL,
                            "--into names one database but backup %s holds %zu; use "
                            "--dbname-suffix",
                            rep->backup_id, rep->n_dbs);
        }
    }
    /* Nothing may exist under a new name. */
    tm_dump_conn *c = NULL;
    if (rc == TM_OK) {
        rc = tm_dump_connect(o->dest, "postgres", &c, err);
    }
    for (size_t i = 0; rc == TM_OK && i < rep->n_dbs; i++) {
        const char *p[1] = {new_names[i]};
        char *v = NULL;
        int q =
            tm_dump_query_value(c, "SELECT 1 FROM pg_database WHERE datname = $1", 1, p, &v, err);
        free(v);
        if (q == TM_OK) {
            rc = tm_err_set(err, TM_EEXIST,
                            "database '%s' already exists on %s:%u; a restore never overwrites "
                            "one: choose another --dbname-suffix or --into, or drop it first",
                            new_names[i], o->dest->host, o->dest->port);
        } else if (q != TM_ENOENT) {
            rc = q;
        }
    }
    tm_dump_scratch sc;
    memset(&sc, 0, sizeof(sc));
    tm_restore_root *root = NULL;
    if (rc == TM_OK) {
        rc = tm_dump_scratch_new(o->scratch, o->dest->password, &sc, err);
    }
    if (rc == TM_OK) {
        tm_restore_root_opts ro = {0};
        rc = tm_restore_root_new(sc.dir, &ro, &root, err);
    }
    tm_info("pg_dump", "event=restore_started target=%s backup=%s databases=%zu dest=%s:%u",
            o->target, rep->backup_id, rep->n_dbs, o->dest->host, o->dest->port);

    /* Globals first: the databases' objects name their owners. */
    char *conn = NULL, path[PATH_MAX + 64];
    if (rc == TM_OK && !o->no_globals) {
        uint64_t t1 = tm_mono_ns();
        if (o->ctx != NULL) {
            tm_task_progress(o->ctx, "restore:globals", rep->bytes, 0, 0, (uint32_t)rep->n_dbs);
        }
        rc = fetch(rd, root, TM_DUMP_GLOBALS, TM_DUMP_GLOBALS, o, rep, err);
        snprintf(path, sizeof(path), "%s/%s", sc.dir, TM_DUMP_GLOBALS);
        if (rc == TM_OK) {
            rc = tm_dump_conninfo(o->dest, "postgres", &conn, err);
        }
        if (rc == TM_OK) {
            rc = run_globals(bindir, &sc, conn, path, rep, err);
        }
        free(conn);
        conn = NULL;
        rep->globals_s = secs_since(t1);
    }
    char jobs[16];
    snprintf(jobs, sizeof(jobs), "%u", o->jobs ? o->jobs : 2);
    size_t created = 0;
    for (size_t i = 0; rc == TM_OK && i < rep->n_dbs; i++) {
        char obj[256];
        tm_dump_obj_name(rep->src[i], obj, sizeof(obj));
        uint64_t t1 = tm_mono_ns();
        rc = fetch(rd, root, obj, "archive", o, rep, err);
        rep->fetch_s += secs_since(t1);
        char *id = rc == TM_OK ? tm_dump_ident(c, new_names[i]) : NULL;
        char *sql = NULL;
        if (rc == TM_OK &&
            (id == NULL || asprintf(&sql, "CREATE DATABASE %s TEMPLATE template0", id) < 0)) {
            sql = NULL;
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        if (rc == TM_OK) {
            rc = tm_dump_exec(c, sql, err);
        }
        free(sql);
        free(id);
        if (rc == TM_OK) {
            snprintf(rep->created[i], sizeof(rep->created[i]), "%s", new_names[i]);
            created++;
            rc = tm_dump_conninfo(o->dest, new_names[i], &conn, err);
        }
        if (rc == TM_OK) {
            if (o->ctx != NULL) {
                tm_task_progress(o->ctx, "restore:pg_restore", rep->bytes, 0, (uint32_t)i,
                                 (uint32_t)rep->n_dbs);
            }
            snprintf(path, sizeof(path), "%s/archive", sc.dir);
            char *argv[] = {"pg_restore", "--no-password", "-j", jobs, "-d", conn, path, NULL};
            tm_dump_child ch;
            t1 = tm_mono_ns();
            /* The sessions pg_restore opens on the new database: index
             * builds sort in memory rather than on disk (the server's
             * default is 64 MB), and commits do not wait for the WAL flush
             * (a failed restore is dropped whole anyway). Both are settings
             * any user may change for a session, managed servers included. */
            static const char *const restore_env[] = {
                "PGOPTIONS=-c maintenance_work_mem=256MB -c synchronous_commit=off", NULL};
            rc = tm_dump_spawn(bindir, argv, &sc, restore_env, 0, &ch, err);
            if (rc == TM_OK) {
                rc = tm_dump_wait(&ch, "pg_restore", NULL, err);
                if (rc != TM_OK) {
                    tm_err_prefix(err, "restore of database '%s' into '%s'", rep->src[i],
                                  new_names[i]);
                }
            }
            rep->restore_s += secs_since(t1);
            tm_info("pg_dump", "event=database_restored database=\"%s\" into=\"%s\" ok=%d",
                    rep->src[i], new_names[i], rc == TM_OK);
        }
        free(conn);
        conn = NULL;
        tm_err rerr = {0};
        (void)tm_restore_root_remove(root, "archive", 0, &rerr);
    }
    tm_dump_close(c);
    if (rc != TM_OK && created > 0) {
        /* All or nothing: what this restore created goes again. */
        tm_err derr = {0};
        if (tm_dump_restore_drop(o->dest, rep, &derr) != TM_OK) {
            tm_error("pg_dump", "event=restore_cleanup_failed msg=\"%s\"", derr.msg);
        }
    }
    if (rc != TM_OK) {
        for (size_t i = 0; i < rep->n_dbs; i++) {
            rep->created[i][0] = '\0';
        }
    }
    tm_restore_root_free(root);
    tm_dump_scratch_free(&sc);
    tm_backup_reader_free(rd);
    tm_repo_set_free(rs);
    rep->total_s = secs_since(t0);
    if (rc != TM_OK) {
        tm_error("pg_dump", "event=restore_failed target=%s backup=%s msg=\"%s\"", o->target,
                 rep->backup_id, err->msg);
    }
    return rc;
}
