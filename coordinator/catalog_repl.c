/*
 * catalog_repl.c - replication verdicts and repository health. Written on
 * change (a check's result, a probe that flipped), read by the alert rules,
 * /metrics and `tidemarkctl replication status`.
 */
#include "coordinator/catalog_internal.h"

#include <stdlib.h>
#include <string.h>

#include "tidemark.pb-c.h"

/* Upsert (a, b) -> packed message m into sql's table. */
static int put_record(tm_catalog *c, const char *sql, const char *a, const char *b,
                      const ProtobufCMessage *m, tm_err *err)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        return tm_err_set(err, TM_ENOMEM, "catalog: out of memory");
    }
    protobuf_c_message_pack(m, buf);
    sqlite3 *db = tm_catalog_lock(c);
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, a != NULL ? a : "", -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, b != NULL ? b : "", -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 3, buf, (int)len, SQLITE_STATIC);
        rc = sqlite3_step(s);
    }
    int code = rc == SQLITE_DONE ? TM_OK : tm_catalog_sql_fail(c, err, rc, "save replication");
    sqlite3_finalize(s);
    tm_catalog_unlock(c);
    free(buf);
    return code;
}

int tm_catalog_repl_put(tm_catalog *c, const Tidemark__ReplicationState *st, tm_err *err)
{
    return put_record(c,
                      "INSERT INTO replication_state(target, repository, record) VALUES (?1, ?2, "
                      "?3) ON CONFLICT(target, repository) DO UPDATE SET record = ?3",
                      st->target, st->repository, &st->base, err);
}

int tm_catalog_repl_list(tm_catalog *c, const char *target, Tidemark__ReplicationState ***out,
                         size_t *n, tm_err *err)
{
    return tm_catalog_query_records(
        c,
        "SELECT record FROM replication_state WHERE (?1 = '' OR target = ?1) AND ?2 = ?2 AND "
        "?3 = ?4 ORDER BY target, repository",
        target, NULL, 0, 0, &tidemark__replication_state__descriptor, (void ***)out, n, err);
}

void tm_catalog_repl_free(Tidemark__ReplicationState **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tidemark__replication_state__free_unpacked(v[i], NULL);
    }
    free(v);
}

int tm_catalog_repo_health_put(tm_catalog *c, const Tidemark__RepositoryStatus *st, tm_err *err)
{
    return put_record(c,
                      "INSERT INTO repository_health(agent_id, repository, record) VALUES (?1, "
                      "?2, ?3) ON CONFLICT(agent_id, repository) DO UPDATE SET record = ?3",
                      st->agent_id, st->name, &st->base, err);
}

int tm_catalog_repo_health_list(tm_catalog *c, Tidemark__RepositoryStatus ***out, size_t *n,
                                tm_err *err)
{
    return tm_catalog_query_records(c,
                                    "SELECT record FROM repository_health WHERE ?1 = ?2 AND ?3 = "
                                    "?4 ORDER BY agent_id, repository",
                                    NULL, NULL, 0, 0, &tidemark__repository_status__descriptor,
                                    (void ***)out, n, err);
}

void tm_catalog_repo_health_free(Tidemark__RepositoryStatus **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tidemark__repository_status__free_unpacked(v[i], NULL);
    }
    free(v);
}
