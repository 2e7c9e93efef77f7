/*
 * backup.c - a backup of a server the agent reaches only over the network:
 * `pg_dumpall --globals-only` (roles, tablespaces) and one `pg_dump -Fc`
 * per selected database, each program's stdout streamed straight into one
 * object of a backup written to every repository at once. No byte lands on
 * the agent's disk.
 *
 * It counts only when every program exited 0: a dump that ends early (its
 * connection killed, the server restarting) is an error, the writer is
 * freed without a manifest, and whatever it stored is deleted, so the
 * backup is listed nowhere.
 *
 * Before anything is dumped, pg_dump's major version must equal the
 * server's: an older pg_dump refuses a newer server with a less helpful
 * message, and a newer one writes archives an older pg_restore (the one a
 * restore next to the server would use) cannot read.
 *
 * Where the login cannot read role passwords (pg_authid is not readable,
 * as on RDS and Cloud SQL), the globals are dumped with
 * --no-role-passwords, and the manifest says so.
 */
#include "agent/engines/pg_dump/dump.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/repo/repository.h"
#include "agent/result_kv.h"
#include "common/log.h"
#include "common/util.h"

#define CHUNK (1u << 20)

/* One program's stdout into one object. */
typedef struct stream {
    tm_task_ctx *ctx;
    uint64_t done; /* bytes of every object so far */
    uint32_t objects, total;
    char *buf;
} stream;

static int dump_object(stream *st, tm_backup_writer *w, const char *bindir,
                       const tm_dump_scratch *sc, char *const argv[], const char *what,
                       const char *name, uint64_t *bytes, tm_err *err)
{
    tm_backup_object *o = NULL;
    int rc = tm_backup_object_open(w, name, &o, err);
    if (rc != TM_OK) {
        return rc;
    }
    tm_dump_child ch;
    rc = tm_dump_spawn(bindir, argv, sc, NULL, 1, &ch, err);
    if (rc != TM_OK) {
        tm_backup_object_abort(o);
        return rc;
    }
    *bytes = 0;
    for (;;) {
        if (st->ctx != NULL && tm_task_cancelled(st->ctx)) {
            rc = tm_err_set(err, TM_EBUSY, "cancelled");
            break;
        }
        /* Wait at most a second for output, so a cancel is seen while
         * pg_dump waits for a lock and writes nothing. */
        struct pollfd pfd = {.fd = ch.out_fd, .events = POLLIN};
        int pr = poll(&pfd, 1, 1000);
        if (pr == 0 || (pr < 0 && errno == EINTR)) {
            continue;
        }
        ssize_t n = read(ch.out_fd, st->buf, CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rc = tm_err_set(err, TM_EIO, "read from %s: %s", what, strerror(errno));
            break;
        }
        if (n == 0) {
            break;
        }
        rc = tm_backup_object_write(o, st->buf, (size_t)n, err);
        if (rc != TM_OK) {
            break;
        }
        *bytes += (uint64_t)n;
        st->done += (uint64_t)n;
        if (st->ctx != NULL) {
            tm_task_progress(st->ctx, what, st->done, 0, st->objects, st->total);
        }
    }
    if (rc != TM_OK) {
        tm_dump_kill(&ch);
    }
    tm_err werr = {0};
    int wrc = tm_dump_wait(&ch, what, NULL, &werr);
    if (rc == TM_OK && wrc != TM_OK) {
        /* The program's own words say why (a killed connection, a lock
         * timeout, a permission): the dump is not whole. */
        rc = tm_err_set(err, wrc == TM_ECONFIG ? TM_ECONFIG : TM_EUNAVAIL,
                        "%s; the dump is incomplete, nothing of this backup is kept", werr.msg);
    }
    if (rc != TM_OK) {
        tm_backup_object_abort(o);
        return rc;
    }
    tm_object_digest dg;
    rc = tm_backup_object_close(o, &dg, err);
    st->objects++;
    return rc;
}

/* The databases to dump: the configured ones (each must exist and accept
 * connections), or every one that is not a template and accepts them. */
static int select_dbs(tm_dump_conn *c, const tm_dump_target_conf *d, char ***dbs, size_t *n,
                      tm_err *err)
{
    int rc = tm_dump_query_list(c,
                                "SELECT datname FROM pg_database WHERE NOT datistemplate AND "
                                "datallowconn ORDER BY datname",
                                0, NULL, dbs, n, err);
    if (rc != TM_OK || d->n_databases == 0) {
        if (rc == TM_OK && *n == 0) {
            rc = tm_err_set(err, TM_ENOENT, "the server has no database to dump");
        }
        return rc;
    }
    for (size_t i = 0; i < d->n_databases; i++) {
        int found = 0;
        for (size_t k = 0; k < *n; k++) {
            found |= strcmp((*dbs)[k], d->databases[i]) == 0;
        }
        if (!found) {
            tm_dump_list_free(*dbs, *n);
            *dbs = NULL;
            *n = 0;
            return tm_err_set(err, TM_ECONFIG,
                              "database '%.63s' (targets[].pg_dump.databases) does not exist on "
                              "the server or does not accept connections",
                              d->databases[i]);
        }
    }
    tm_dump_list_free(*dbs, *n);
    *dbs = calloc(d->n_databases, sizeof(char *));
    *n = 0;
    if (*dbs == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < d->n_databases; i++) {
        if (((*dbs)[i] = strdup(d->databases[i])) == NULL) {
            return tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        *n = i + 1;
    }
    return TM_OK;
}

int tm_dump_backup(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                   tm_err *err)
{
    const tm_target_conf *t = tm_task_target(ctx);
    const tm_dump_target_conf *d = t != NULL ? tm_dump_target(t) : NULL;
    if (d == NULL) {
        return tm_err_set(err, TM_ECONFIG,
                          "this agent does not serve pg_dump target %s (not in targets: with "
                          "kind pg_dump)",
                          task->target ? task->target : "?");
    }
    const tm_agent_conf *conf = tm_task_conf(ctx);
    const tm_dump_server *srv = &d->server;
    uint64_t t0 = tm_mono_ns();
    char bindir[PATH_MAX];
    int dump_major = 0, server_num = 0, read_auth = 0;
    char **dbs = NULL;
    size_t ndbs = 0;
    tm_dump_conn *c = NULL;
    char *v = NULL;

    /* 1. the programs, the server, the versions, the databases */
    int rc = tm_dump_bindir(d->bindir, bindir, sizeof(bindir), err);
    if (rc == TM_OK) {
        rc = tm_dump_tool_major(bindir, "pg_dump", &dump_major, err);
    }
    if (rc == TM_OK) {
        rc = tm_dump_connect(srv, d->database, &c, err);
    }
    if (rc == TM_OK) {
        rc = tm_dump_query_value(c,
                                 "SELECT current_setting('server_version_num') || ' ' || "
                                 "has_table_privilege('pg_catalog.pg_authid', 'SELECT')::text",
                                 0, NULL, &v, err);
    }
    if (rc == TM_OK) {
        server_num = atoi(v);
        read_auth = strstr(v, "true") != NULL;
        int server_major = server_num >= 100000 ? server_num / 10000 : server_num / 100;
        if (server_major != dump_major) {
            rc = tm_err_set(err, TM_ECONFIG,
                            "pg_dump in %s is version %d but the server at %s:%u runs PostgreSQL "
                            "%d (%d): install the client programs of major version %d and set "
                            "targets[].pg_dump.bindir to their directory",
                            bindir, dump_major, srv->host, srv->port, server_major, server_num,
                            server_major);
        }
    }
    free(v);
    if (rc == TM_OK) {
        rc = select_dbs(c, d, &dbs, &ndbs, err);
    }
    if (rc == TM_OK && ndbs > TM_DUMP_MAX_DBS) {
        rc = tm_err_set(err, TM_ECONFIG, "%zu databases to dump, at most %d per target", ndbs,
                        TM_DUMP_MAX_DBS);
    }
    tm_dump_close(c);
    c = NULL;

    /* 2. the backup */
    tm_repo_set *rs = NULL;
    tm_backup_writer *w = NULL;
    tm_dump_scratch sc;
    memset(&sc, 0, sizeof(sc));
    stream st = {.ctx = ctx, .total = (uint32_t)ndbs + 1};
    if (rc == TM_OK) {
        rc = tm_dump_scratch_new(NULL, srv->password, &sc, err);
    }
    if (rc == TM_OK && (st.buf = malloc(CHUNK)) == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    if (rc == TM_OK) {
        rc = tm_repo_set_open(&rs, conf, TM_REPO_KEYS, err);
    }
    for (int attempt = 0; rc == TM_OK; attempt++) {
        rc = tm_backup_begin(rs, t->name, NULL, "snapshot", TM_DUMP_ENGINE, &w, err);
        if (rc != TM_OK && rc != TM_EEXIST) {
            tm_repo_outcomes_failed(rs, err, result);
        }
        if (rc != TM_EEXIST || attempt >= 2) {
            break;
        }
        rc = TM_OK; /* ids are per second: wait for the next one */
        usleep((useconds_t)(1000 - tm_now_ms() % 1000) * 1000 + 1000);
    }
    int64_t start_time = tm_now_s();
    uint64_t bytes = 0, obj_bytes = 0;
    char *conn = NULL;
    if (rc == TM_OK) {
        tm_info("pg_dump",
                "event=backup_started target=%s backup=%s server=%s:%u databases=%zu "
                "role_passwords=%d",
                t->name, tm_backup_writer_id(w), srv->host, srv->port, ndbs, read_auth);
        rc = tm_dump_conninfo(srv, d->database, &conn, err);
    }
    if (rc == TM_OK) {
        char *argv[] = {"pg_dumpall",
                        "--globals-only",
                        "--no-password",
                        "-d",
                        conn,
                        read_auth ? NULL : "--no-role-passwords",
                        NULL};
        rc = dump_object(&st, w, bindir, &sc, argv, "pg_dumpall", TM_DUMP_GLOBALS, &obj_bytes, err);
        bytes += obj_bytes;
    }
    free(conn);
    conn = NULL;
    char zarg[8];
    snprintf(zarg, sizeof(zarg), "-Z%u", d->compress);
    char *list = NULL;
    size_t list_len = 0;
    for (size_t i = 0; rc == TM_OK && i < ndbs; i++) {
        char obj[256], esc[200], what[128];
        tm_dump_obj_name(dbs[i], obj, sizeof(obj));
        tm_dump_escape(dbs[i], esc, sizeof(esc));
        snprintf(what, sizeof(what), "pg_dump %.63s", dbs[i]);
        rc = tm_dump_conninfo(srv, dbs[i], &conn, err);
        if (rc == TM_OK) {
            char *argv[] = {"pg_dump", "-Fc", zarg, "--no-password", "-d", conn, NULL};
            uint64_t t1 = tm_mono_ns();
            rc = dump_object(&st, w, bindir, &sc, argv, what, obj, &obj_bytes, err);
            bytes += obj_bytes;
            if (rc == TM_OK) {
                tm_info("pg_dump",
                        "event=database_dumped target=%s database=\"%s\" bytes=%" PRIu64
                        " ms=%" PRIu64,
                        t->name, dbs[i], obj_bytes, (tm_mono_ns() - t1) / 1000000);
            }
        }
        free(conn);
        conn = NULL;
        char *nl = rc == TM_OK ? realloc(list, list_len + strlen(esc) + 2) : NULL;
        if (rc == TM_OK && nl == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
        if (nl != NULL) {
            list = nl;
            list_len += (size_t)sprintf(list + list_len, "%s%s", i ? "," : "", esc);
        }
    }
    int64_t stop_time = (tm_now_ms() + 999) / 1000;
    tm_info info = {0};
    int finished = 0;
    if (rc == TM_OK) {
        tm_info_add(&info, "start_time", "%" PRId64, start_time);
        tm_info_add(&info, "stop_time", "%" PRId64, stop_time);
        tm_info_add(&info, "databases", "%s", list != NULL ? list : "");
        tm_info_add(&info, "server_version_num", "%d", server_num);
        tm_info_add(&info, "pg_dump_major", "%d", dump_major);
        tm_info_add(&info, "role_passwords", "%s", read_auth ? "yes" : "no");
        tm_info_add(&info, "source", "%s:%u", srv->host, srv->port);
        tm_info_add(&info, "format", "custom -Z%u", d->compress);
        Tidemark__Manifest *m = tm_manifest_proto(tm_backup_writer_manifest(w));
        tm_info_attach(&info, m);
        rc = tm_backup_finish(w, err);
        finished = 1;
        tm_info_detach(m);
    }
    size_t nres = 0;
    const tm_repo_result *res = w != NULL ? tm_backup_results(w, &nres) : NULL;
    size_t okn = 0;
    for (size_t i = 0; res != NULL && i < nres; i++) {
        okn += res[i].code == TM_OK;
    }
    if (rc == TM_EIO && finished && okn > 0) { /* complete in some: the coordinator decides */
        tm_warn("pg_dump", "event=backup_partial backup=%s msg=\"%s\"", tm_backup_writer_id(w),
                err->msg);
        rc = TM_OK;
    }
    if (rc == TM_OK) {
        result->backup_id = strdup(tm_backup_writer_id(w));
        result->has_backup_type = 1;
        result->backup_type = TIDEMARK__BACKUP_TYPE__SNAPSHOT;
        result->has_bytes = result->has_files = 1;
        result->bytes = bytes;
        result->files = (uint32_t)ndbs + 1;
        result->has_start_time = result->has_stop_time = 1;
        result->start_time = start_time;
        result->stop_time = stop_time;
        result->repositories = calloc(nres ? nres : 1, sizeof(char *));
        for (size_t i = 0; result->repositories != NULL && i < nres; i++) {
            if (res[i].code == TM_OK) {
                result->repositories[result->n_repositories++] = strdup(res[i].repo);
            }
        }
        tm_dump_result_extra(result, "databases", "%zu", ndbs);
        tm_dump_result_extra(result, "server_version_num", "%d", server_num);
        tm_dump_result_extra(result, "role_passwords", "%s", read_auth ? "yes" : "no");
        tm_info("pg_dump",
                "event=backup_done target=%s backup=%s databases=%zu bytes=%" PRIu64 " ms=%" PRIu64,
                t->name, result->backup_id, ndbs, bytes, (tm_mono_ns() - t0) / 1000000);
    } else {
        tm_error("pg_dump", "event=backup_failed target=%s code=%d msg=\"%s\"", t->name, rc,
                 err->msg);
    }
    if (w != NULL && tm_backup_outcomes(w, result) != TM_OK && rc == TM_OK) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tm_backup_writer_free(w);
    tm_repo_set_free(rs);
    tm_dump_scratch_free(&sc);
    tm_dump_list_free(dbs, ndbs);
    free(list);
    free(st.buf);
    tm_info_free(&info);
    return rc;
}
