/*
 * pgconn.c - the libpq side of a backup: one session that holds the
 * non-exclusive backup from pg_backup_start to pg_backup_stop. If anything
 * fails in between, closing the session is what ends the backup on the
 * server (PostgreSQL aborts a non-exclusive backup whose session goes away),
 * so there is no path that leaves a backup open.
 */
#include "agent/engines/postgres/pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

struct tm_pg_conn {
    PGconn *c;
};

/* One line of libpq's message (they end with newlines). */
static const char *pq_msg(PGconn *c)
{
    static __thread char buf[300];
    snprintf(buf, sizeof(buf), "%s", c ? PQerrorMessage(c) : "out of memory");
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

int tm_pg_connect(const tm_pg_target_conf *c, const char *host, uint32_t port, const char *user,
                  tm_pg_conn **out, tm_err *err)
{
    *out = NULL;
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%u", port ? port : (c ? c->port : 5432));
    const char *keys[8], *vals[8];
    int k = 0;
    const char *h = host ? host : (c ? c->host : NULL);
    if (h != NULL) {
        keys[k] = "host";
        vals[k++] = h;
    }
    keys[k] = "port";
    vals[k++] = portbuf;
    keys[k] = "user";
    vals[k++] = user ? user : (c && c->user ? c->user : "postgres");
    keys[k] = "dbname";
    vals[k++] = c && c->database ? c->database : "postgres";
    if (c != NULL && c->password != NULL) {
        keys[k] = "password";
        vals[k++] = c->password;
    }
    keys[k] = "application_name";
    vals[k++] = "tidemark-agent";
    keys[k] = NULL;
    vals[k] = NULL;
    PGconn *pc = PQconnectdbParams(keys, vals, 0);
    if (pc == NULL || PQstatus(pc) != CONNECTION_OK) {
        int rc = tm_err_set(err, TM_EUNAVAIL,
                            "connect to PostgreSQL (host %s port %s user %s): %s; check "
                            "targets[].postgres and that the server is running",
                            h ? h : "(socket)", portbuf, vals[2], pq_msg(pc));
        PQfinish(pc);
        return rc;
    }
    tm_pg_conn *pg = calloc(1, sizeof(*pg));
    if (pg == NULL) {
        PQfinish(pc);
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    pg->c = pc;
    *out = pg;
    return TM_OK;
}

void tm_pg_close(tm_pg_conn *c)
{
    if (c != NULL) {
        PQfinish(c->c);
        free(c);
    }
}

static PGresult *run(tm_pg_conn *c, const char *sql, int nparams, const char *const *params,
                     tm_err *err)
{
    PGresult *r = PQexecParams(c->c, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        const char *m = r ? PQresultErrorMessage(r) : pq_msg(c->c);
        char line[300];
        snprintf(line, sizeof(line), "%s", m);
        line[strcspn(line, "\n")] = '\0';
        tm_err_set(err, TM_EIO, "PostgreSQL: %.80s: %s", sql, line);
        PQclear(r);
        return NULL;
    }
    return r;
}

int tm_pg_query_value(tm_pg_conn *c, const char *sql, char **out, tm_err *err)
{
    *out = NULL;
    PGresult *r = run(c, sql, 0, NULL, err);
    if (r == NULL) {
        return TM_EIO;
    }
    int rc = TM_OK;
    if (PQntuples(r) < 1 || PQnfields(r) < 1) {
        rc = tm_err_set(err, TM_ENOENT, "PostgreSQL: %.80s: no row", sql);
    } else if ((*out = strdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0))) == NULL) {
        rc = tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

int tm_pg_server_info(tm_pg_conn *c, tm_pg_server *out, tm_err *err)
{
    memset(out, 0, sizeof(*out));
    PGresult *r = run(c,
                      "SELECT current_setting('server_version_num'), "
                      "(SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), "
                      "current_setting('data_directory'), "
                      "(SELECT system_identifier::text FROM pg_control_system()), "
                      "pg_is_in_recovery(), current_setting('data_checksums')",
                      0, NULL, err);
    if (r == NULL) {
        return TM_EIO;
    }
    out->version_num = atoi(PQgetvalue(r, 0, 0));
    out->wal_segment_size = (uint32_t)strtoul(PQgetvalue(r, 0, 1), NULL, 10);
    snprintf(out->data_directory, sizeof(out->data_directory), "%s", PQgetvalue(r, 0, 2));
    snprintf(out->system_identifier, sizeof(out->system_identifier), "%s", PQgetvalue(r, 0, 3));
    int standby = PQgetvalue(r, 0, 4)[0] == 't';
    out->data_checksums = strcmp(PQgetvalue(r, 0, 5), "on") == 0;
    PQclear(r);
    if (out->version_num < 100000) {
        return tm_err_set(err, TM_EINVAL, "PostgreSQL %d is not supported (10 or later needed)",
                          out->version_num);
    }
    if (standby) {
        return tm_err_set(err, TM_EINVAL,
                          "the server is a standby; backups are taken from the primary in this "
                          "version");
    }
    if (out->wal_segment_size < (1u << 20) ||
        (out->wal_segment_size & (out->wal_segment_size - 1))) {
        return tm_err_set(err, TM_EPROTO, "unexpected wal_segment_size %u", out->wal_segment_size);
    }
    return TM_OK;
}

int tm_pg_reserve_wal(tm_pg_conn *c, tm_err *err)
{
    char name[64];
    snprintf(name, sizeof(name), "tidemark_%d_%llu", (int)getpid(),
             (unsigned long long)(tm_now_ms() % 100000000));
    const char *p[1] = {name};
    PGresult *r = run(c, "SELECT pg_create_physical_replication_slot($1, true, true)", 1, p, err);
    if (r == NULL) {
        return TM_EIO;
    }
    PQclear(r);
    return TM_OK;
}

int tm_pg_backup_start(tm_pg_conn *c, int version_num, const char *label, uint64_t *start_lsn,
                       tm_err *err)
{
    const char *p[1] = {label};
    /* fast => true: an immediate checkpoint, not a spread one; the backup
     * should not wait minutes for checkpoint_timeout. */
    PGresult *r = run(c,
                      version_num >= 150000 ? "SELECT pg_backup_start($1, fast => true)::text"
                                            : "SELECT pg_start_backup($1, true, false)::text",
                      1, p, err);
    if (r == NULL) {
        return TM_EIO;
    }
    int rc = tm_pg_lsn_parse(PQgetvalue(r, 0, 0), start_lsn);
    if (rc != TM_OK) {
        rc = tm_err_set(err, TM_EPROTO, "pg_backup_start returned '%.40s'", PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return rc;
}

int tm_pg_backup_stop(tm_pg_conn *c, int version_num, tm_pg_stop *out, tm_err *err)
{
    memset(out, 0, sizeof(*out));
    /* No wait_for_archive: every backup carries the WAL from its start to
     * its stop (copied under a replication slot, see backup.c), so it is
     * restorable without the archive; waiting would only add PostgreSQL's
     * archive-wait loop, which sleeps in whole seconds (~1 s per backup,
     * measured in tests/bench/pg). The archive catches up on its own. */
    PGresult *r =
        run(c,
            version_num >= 150000
                ? "SELECT lsn::text, labelfile, spcmapfile FROM "
                  "pg_backup_stop(wait_for_archive => false)"
                : "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)",
            0, NULL, err);
    if (r == NULL) {
        return TM_EIO;
    }
    int rc = tm_pg_lsn_parse(PQgetvalue(r, 0, 0), &out->stop_lsn);
    if (rc != TM_OK) {
        rc = tm_err_set(err, TM_EPROTO, "pg_backup_stop returned lsn '%.40s'", PQgetvalue(r, 0, 0));
    } else {
        out->labelfile = strdup(PQgetvalue(r, 0, 1));
        out->spcmap = strdup(PQgetisnull(r, 0, 2) ? "" : PQgetvalue(r, 0, 2));
        if (out->labelfile == NULL || out->spcmap == NULL) {
            rc = tm_err_set(err, TM_ENOMEM, "out of memory");
        }
    }
    PQclear(r);
    return rc;
}

void tm_pg_stop_free(tm_pg_stop *s)
{
    free(s->labelfile);
    free(s->spcmap);
    s->labelfile = s->spcmap = NULL;
}
