/*
 * catalog.c - the coordinator's catalog on embedded SQLite.
 *
 * One connection, one mutex. Every statement is prepared once and kept in a
 * small cache (the heartbeat flush runs the same UPDATE thousands of times a
 * second), and every string reaches SQLite as a bound parameter, never as SQL
 * text.
 *
 * Durability: WAL with synchronous=FULL, so a committed transaction survives
 * power loss. That costs one fsync per commit, which is why the hot path
 * (last-seen times) is batched by the caller and written here in one
 * transaction per batch.
 *
 * Schema changes are migrations: an ordered list of SQL steps, each applied in
 * its own transaction together with its row in schema_migrations. A catalog
 * from any earlier version is brought up to date at open; a catalog from a
 * newer tidemark is refused rather than half understood.
 *
 * Times are unix seconds, as in the proto (AgentInfo.registered_at).
 */
#include "coordinator/catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/engine_kinds.h"
#include "common/util.h"
#include "tidemark.pb-c.h"

/* How long a statement waits for a lock held by another connection (a second
 * process, or tidemarkctl reading the file) before failing with TM_EBUSY. */
#define CATALOG_BUSY_TIMEOUT_MS 5000

/* ---- migrations ----
 *
 * Append only: a released migration is never edited, because catalogs in the
 * field already ran it. To change the schema, add the next version. SQLite
 * cannot drop or alter most constraints in place; a migration that rebuilds a
 * table must follow https://sqlite.org/lang_altertable.html#otheralter (new
 * table, copy, drop, rename) — foreign_key_check runs after every migration
 * and refuses to commit one that leaves dangling references.
 *
 * Later issues add backups, tasks and repositories as further versions. They
 * should refer to targets by name rather than by a cascading foreign key: the
 * record of a backup must outlive the agent that made it. */
typedef struct migration {
    int version;
    const char *name;
    const char *sql;
} migration;

static const migration migrations[] = {
    {1, "agents, labels, targets",
     "CREATE TABLE agents ("
     "  id            TEXT PRIMARY KEY,"
     "  hostname      TEXT NOT NULL,"
     "  version       TEXT NOT NULL DEFAULT '',"
     "  secret_hash   TEXT NOT NULL DEFAULT '',"
     "  enrollment    TEXT NOT NULL DEFAULT '',"
     "  address       TEXT,"
     "  approved      INTEGER NOT NULL DEFAULT 0 CHECK (approved IN (0, 1)),"
     "  state         INTEGER NOT NULL,"
     "  registered_at INTEGER NOT NULL DEFAULT 0,"
     "  last_seen_at  INTEGER NOT NULL DEFAULT 0"
     ");"
     "CREATE TABLE agent_labels ("
     "  agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
     "  key      TEXT NOT NULL,"
     "  value    TEXT NOT NULL,"
     "  PRIMARY KEY (agent_id, key)"
     ") WITHOUT ROWID;"
     /* A stable integer id lets later tables point at a target cheaply;
      * agent_put upserts rather than re-inserts so the id survives
      * re-registration. */
     "CREATE TABLE targets ("
     "  id             INTEGER PRIMARY KEY,"
     "  name           TEXT NOT NULL UNIQUE,"
     "  agent_id       TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
     "  kind           INTEGER NOT NULL,"
     "  engine_version TEXT NOT NULL DEFAULT ''"
     ");"
     "CREATE INDEX targets_agent ON targets(agent_id);"
     "CREATE INDEX agents_hostname ON agents(hostname, id);"},
    /* No foreign key to agents: the history of an agent is kept after it is
     * removed, which is when it is most wanted. */
    {2, "agent state events",
     "CREATE TABLE agent_events ("
     "  id         INTEGER PRIMARY KEY,"
     "  agent_id   TEXT NOT NULL,"
     "  at         INTEGER NOT NULL,"
     "  from_state INTEGER NOT NULL,"
     "  to_state   INTEGER NOT NULL,"
     "  reason     TEXT NOT NULL DEFAULT ''"
     ");"
     "CREATE INDEX agent_events_agent ON agent_events(agent_id, at, id);"
     "CREATE INDEX agent_events_at ON agent_events(at, id);"},
    /* Tasks and backups keep their whole record as a packed proto (the
     * truth) plus the columns queries need; targets are referred to by
     * name so history outlives agents. */
    {3, "tasks and backups",
     "CREATE TABLE tasks ("
     "  id               TEXT PRIMARY KEY,"
     "  kind             INTEGER NOT NULL,"
     "  target           TEXT NOT NULL,"
     "  state            INTEGER NOT NULL,"
     "  agent_id         TEXT NOT NULL DEFAULT '',"
     "  created_at       INTEGER NOT NULL,"
     "  not_before       INTEGER NOT NULL DEFAULT 0,"
     "  lease_expires_at INTEGER NOT NULL DEFAULT 0,"
     "  record           BLOB NOT NULL"
     ");"
     "CREATE INDEX tasks_queue ON tasks(state, agent_id, not_before, created_at);"
     "CREATE INDEX tasks_target ON tasks(target, created_at);"
     "CREATE TABLE backups ("
     "  target      TEXT NOT NULL,"
     "  id          TEXT NOT NULL,"
     "  type        INTEGER NOT NULL,"
     "  finished_at INTEGER NOT NULL,"
     "  keep        INTEGER NOT NULL DEFAULT 0,"
     "  record      BLOB NOT NULL,"
     "  PRIMARY KEY (target, id)"
     ");"
     "CREATE INDEX backups_finished ON backups(finished_at);"},
    /* Archived log runs per target and repository, as the agents last
     * reported them (replaced wholesale on each report). */
    {4, "log ranges",
     "CREATE TABLE log_ranges ("
     "  target      TEXT NOT NULL,"
     "  repository  TEXT NOT NULL,"
     "  timeline    INTEGER NOT NULL,"
     "  first       TEXT NOT NULL,"
     "  last        TEXT NOT NULL,"
     "  last_time   INTEGER NOT NULL,"
     "  record      BLOB NOT NULL,"
     "  PRIMARY KEY (target, repository, timeline, first)"
     ");"
     "CREATE TABLE log_status ("
     "  target      TEXT NOT NULL,"
     "  repository  TEXT NOT NULL,"
     "  queue_depth INTEGER NOT NULL DEFAULT 0,"
     "  reported_at INTEGER NOT NULL,"
     "  PRIMARY KEY (target, repository)"
     ");"},
    /* The scheduler's persisted state: the newest fire time handled per
     * (target, job kind), so a restart neither repeats nor forgets a run. */
    {5, "scheduler state",
     "CREATE TABLE sched_state ("
     "  target    TEXT NOT NULL,"
     "  kind      TEXT NOT NULL,"
     "  last_fire INTEGER NOT NULL,"
     "  PRIMARY KEY (target, kind)"
     ") WITHOUT ROWID;"},
    /* Every alert notification per sink, delivered or not: the audit trail
     * of who was told what, and when. */
    {6, "alert notifications",
     "CREATE TABLE alert_notifications ("
     "  id      INTEGER PRIMARY KEY,"
     "  at      INTEGER NOT NULL," /* unix ms */
     "  rule    TEXT NOT NULL,"
     "  target  TEXT NOT NULL,"
     "  status  TEXT NOT NULL," /* firing | repeat | resolved */
     "  sink    TEXT NOT NULL,"
     "  ok      INTEGER NOT NULL,"
     "  error   TEXT"
     ");"
     "CREATE INDEX alert_notifications_at ON alert_notifications(at);"},
    /* Restore drills: one row per finished DRILL task (the packed
     * DrillInfo is the truth; the columns are what metrics and alerts
     * read). Times in unix ms. */
    {7, "restore drills",
     "CREATE TABLE drills ("
     "  id           INTEGER PRIMARY KEY,"
     "  target       TEXT NOT NULL,"
     "  task_id      TEXT NOT NULL UNIQUE,"
     "  agent_id     TEXT NOT NULL DEFAULT '',"
     "  backup_id    TEXT NOT NULL DEFAULT '',"
     "  finished_at  INTEGER NOT NULL,"
     "  ok           INTEGER NOT NULL,"
     "  rto_ms       INTEGER,"
     "  rpo_ms       INTEGER,"
     "  record       BLOB NOT NULL"
     ");"
     "CREATE INDEX drills_target ON drills(target, finished_at);"},
    /* Every backup retention deleted: the audit trail of what went, from
     * where, why (the plan's reason) and by which EXPIRE task. The backup's
     * own row leaves the backups table in the same transaction. */
    {8, "retention deletions",
     "CREATE TABLE retention_deletions ("
     "  id           INTEGER PRIMARY KEY,"
     "  at           INTEGER NOT NULL," /* unix s */
     "  target       TEXT NOT NULL,"
     "  backup_id    TEXT NOT NULL,"
     "  backup_type  INTEGER NOT NULL DEFAULT 0,"
     "  finished_at  INTEGER NOT NULL DEFAULT 0,"
     "  repositories TEXT NOT NULL DEFAULT ''," /* comma-separated */
     "  reason       TEXT NOT NULL DEFAULT '',"
     "  task_id      TEXT NOT NULL DEFAULT ''"
     ");"
     "CREATE INDEX retention_deletions_target ON retention_deletions(target, at);"},
    /* Cross-repository replication: the last check's verdict per (target,
     * repository), and each agent's repository probes (catalog_repl.c). */
    {9, "replication",
     "CREATE TABLE replication_state ("
     "  target     TEXT NOT NULL,"
     "  repository TEXT NOT NULL," /* '' = target-wide problems */
     "  record     BLOB NOT NULL," /* ReplicationState */
     "  PRIMARY KEY (target, repository)"
     ") WITHOUT ROWID;"
     "CREATE TABLE repository_health ("
     "  agent_id   TEXT NOT NULL,"
     "  repository TEXT NOT NULL,"
     "  record     BLOB NOT NULL," /* RepositoryStatus */
     "  PRIMARY KEY (agent_id, repository)"
     ") WITHOUT ROWID;"},
    /* A pending agent has proved nothing but knowledge of an enrollment
     * token, so its target names are kept aside here and bound (moved into
     * targets) only when an operator approves it: a pending agent cannot
     * squat a name. Names pending agents had bound before are released. */
    {10, "pending target claims",
     "CREATE TABLE pending_targets ("
     "  agent_id       TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
     "  name           TEXT NOT NULL,"
     "  kind           INTEGER NOT NULL,"
     "  engine_version TEXT NOT NULL DEFAULT '',"
     "  PRIMARY KEY (agent_id, name)"
     ") WITHOUT ROWID;"
     "INSERT INTO pending_targets(agent_id, name, kind, engine_version) "
     "  SELECT agent_id, name, kind, engine_version FROM targets "
     "  WHERE agent_id IN (SELECT id FROM agents WHERE approved = 0);"
     "DELETE FROM targets WHERE agent_id IN (SELECT id FROM agents WHERE approved = 0);"},
    /* A backup complete in only some of the repositories its policy
     * requires (task state 6, TASK_PARTIAL): restorable, and listed here
     * until a copy fills the gap. missing is comma-separated. */
    {11, "partial backups",
     "ALTER TABLE backups ADD COLUMN partial INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE backups ADD COLUMN missing TEXT NOT NULL DEFAULT '';"
     "CREATE INDEX backups_partial ON backups(target) WHERE partial = 1;"},
    /* Engine-neutral names: a log range belongs to a chain (each engine's
     * timeline or generation of its log). The primary key follows the
     * rename. Released SQL above keeps the old name: migrations are never
     * edited. */
    {12, "engine-neutral log chain", "ALTER TABLE log_ranges RENAME COLUMN timeline TO chain;"},
};

#define N_MIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* The bookkeeping table lives outside the numbered migrations because it is
 * how they are counted; its shape must never change. */
static const char *schema_migrations_sql = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                           "  version    INTEGER PRIMARY KEY,"
                                           "  name       TEXT NOT NULL,"
                                           "  applied_at INTEGER NOT NULL"
                                           ")";

/* ---- statement cache ---- */

enum {
    ST_BEGIN_READ,
    ST_BEGIN_WRITE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SCHEMA_VERSION,
    ST_MIGRATION_RECORD,
    ST_AGENT_UPSERT,
    ST_AGENT_GET,
    ST_AGENT_LIST,
    ST_AGENT_STATE,
    ST_AGENT_SET_STATE,
    ST_AGENT_TOUCH,
    ST_AGENT_DELETE,
    ST_LABELS_DELETE,
    ST_LABEL_INSERT,
    ST_LABELS_GET,
    ST_TARGET_OWNER,
    ST_TARGET_NAMES,
    ST_TARGET_DELETE,
    ST_TARGET_UPSERT,
    ST_TARGETS_GET,
    ST_CLAIMS_DELETE,
    ST_CLAIM_INSERT,
    ST_CLAIMS_GET,
    ST_EVENT_INSERT,
    ST_EVENTS_ALL,
    ST_EVENTS_AGENT,
    ST_COUNT_AGENTS,
    ST_COUNT_TARGETS,
    ST_COUNT_EVENTS,
    ST_PAGE_COUNT,
    ST_PAGE_SIZE,
    ST__N
};

static const char *const stmt_sql[ST__N] = {
    [ST_BEGIN_READ] = "BEGIN",
    /* IMMEDIATE takes the write lock up front: a deferred transaction that
     * upgrades later can fail with SQLITE_BUSY that busy_timeout cannot wait
     * out. */
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SCHEMA_VERSION] = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
    [ST_MIGRATION_RECORD] = "INSERT INTO schema_migrations(version, name, applied_at) "
                            "VALUES (?1, ?2, ?3)",
    /* Not INSERT OR REPLACE: that deletes the old row first, and the delete
     * would cascade to the agent's targets. */
    [ST_AGENT_UPSERT] = "INSERT INTO agents(id, hostname, version, secret_hash, enrollment, "
                        "address, approved, state, registered_at, last_seen_at) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
                        "ON CONFLICT(id) DO UPDATE SET hostname = excluded.hostname, "
                        "version = excluded.version, secret_hash = excluded.secret_hash, "
                        "enrollment = excluded.enrollment, address = excluded.address, "
                        "approved = excluded.approved, state = excluded.state, "
                        "registered_at = excluded.registered_at, "
                        "last_seen_at = excluded.last_seen_at",
    [ST_AGENT_GET] = "SELECT id, hostname, version, secret_hash, enrollment, address, approved, "
                     "state, registered_at, last_seen_at FROM agents WHERE id = ?1",
    [ST_AGENT_LIST] = "SELECT id, hostname, version, secret_hash, enrollment, address, approved, "
                      "state, registered_at, last_seen_at FROM agents ORDER BY hostname, id",
    [ST_AGENT_STATE] = "SELECT approved, state FROM agents WHERE id = ?1",
    [ST_AGENT_SET_STATE] = "UPDATE agents SET approved = ?2, state = ?3 WHERE id = ?1",
    /* MAX: a late flush of an older batch must not move last-seen back. */
    [ST_AGENT_TOUCH] = "UPDATE agents SET last_seen_at = MAX(last_seen_at, ?2) WHERE id = ?1",
    [ST_AGENT_DELETE] = "DELETE FROM agents WHERE id = ?1",
    [ST_LABELS_DELETE] = "DELETE FROM agent_labels WHERE agent_id = ?1",
    [ST_LABEL_INSERT] = "INSERT INTO agent_labels(agent_id, key, value) VALUES (?1, ?2, ?3)",
    [ST_LABELS_GET] = "SELECT key, value FROM agent_labels WHERE agent_id = ?1 ORDER BY key",
    [ST_TARGET_OWNER] = "SELECT agent_id FROM targets WHERE name = ?1",
    [ST_TARGET_NAMES] = "SELECT name FROM targets WHERE agent_id = ?1",
    [ST_TARGET_DELETE] = "DELETE FROM targets WHERE name = ?1",
    [ST_TARGET_UPSERT] = "INSERT INTO targets(name, agent_id, kind, engine_version) "
                         "VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET "
                         "kind = excluded.kind, engine_version = excluded.engine_version "
                         "WHERE targets.agent_id = excluded.agent_id",
    [ST_TARGETS_GET] = "SELECT name, kind, engine_version FROM targets WHERE agent_id = ?1 "
                       "ORDER BY name",
    [ST_CLAIMS_DELETE] = "DELETE FROM pending_targets WHERE agent_id = ?1",
    [ST_CLAIM_INSERT] = "INSERT INTO pending_targets(agent_id, name, kind, engine_version) "
                        "VALUES (?2, ?1, ?3, ?4)",
    [ST_CLAIMS_GET] = "SELECT name, kind, engine_version FROM pending_targets "
                      "WHERE agent_id = ?1 ORDER BY name",
    [ST_EVENT_INSERT] = "INSERT INTO agent_events(agent_id, at, from_state, to_state, reason) "
                        "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_EVENTS_ALL] = "SELECT agent_id, at, from_state, to_state, reason FROM agent_events "
                      "ORDER BY at DESC, id DESC LIMIT ?1",
    [ST_EVENTS_AGENT] = "SELECT agent_id, at, from_state, to_state, reason FROM agent_events "
                        "WHERE agent_id = ?2 ORDER BY at DESC, id DESC LIMIT ?1",
    [ST_COUNT_AGENTS] = "SELECT COUNT(*) FROM agents",
    [ST_COUNT_TARGETS] = "SELECT COUNT(*) FROM targets",
    [ST_COUNT_EVENTS] = "SELECT COUNT(*) FROM agent_events",
    [ST_PAGE_COUNT] = "PRAGMA page_count",
    [ST_PAGE_SIZE] = "PRAGMA page_size",
};

struct tm_catalog {
    pthread_mutex_t mu; /* guards db and the statement cache */
    sqlite3 *db;
    char *path;
    int version; /* schema version after open */
    sqlite3_stmt *stmts[ST__N];
};

/* ---- errors ---- */

static int code_from_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return TM_ENOSPC;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return TM_ECORRUPT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return TM_EBUSY;
    case SQLITE_NOMEM:
        return TM_ENOMEM;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
            return TM_EEXIST;
        }
        return TM_EINVAL;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return TM_EPERM;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        return TM_EIO;
    default:
        return TM_EINTERNAL;
    }
}

/* "catalog /x.db: insert agent: UNIQUE constraint failed: ..." plus, for the
 * errors an operator can act on, what to do. Call before any rollback: the
 * rollback would replace SQLite's message. */
static int sql_fail(tm_catalog *c, tm_err *err, int rc, const char *what)
{
    int code = code_from_sqlite(rc);
    const char *msg = c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
    const char *hint = "";
    char sys[96] = "";

    switch (code) {
    case TM_ENOSPC:
        hint = "; free space on the catalog's filesystem, then retry";
        break;
    case TM_ECORRUPT:
        hint = "; the file is damaged or is not a tidemark catalog: stop the coordinator, "
               "move the file aside and restore it from a copy (or rebuild the catalog "
               "from the repositories)";
        break;
    case TM_EBUSY:
        hint = "; another process holds the catalog locked (a second coordinator on the "
               "same file?)";
        break;
    case TM_EPERM:
        hint = "; check the ownership and permissions of the catalog file and its directory";
        break;
    case TM_EIO:
        if (c->db != NULL && sqlite3_system_errno(c->db) != 0) {
            snprintf(sys, sizeof(sys), " (%s)", strerror(sqlite3_system_errno(c->db)));
        }
        break;
    default:
        break;
    }
    return tm_err_set(err, code, "catalog %s: %s: %s%s%s", c->path, what, msg, sys, hint);
}

/* For catalog_tasks.c (catalog_internal.h): the same lock, connection and
 * error wording as the rest of the catalog. */
sqlite3 *tm_catalog_lock(tm_catalog *c)
{
    pthread_mutex_lock(&c->mu);
    return c->db;
}

void tm_catalog_unlock(tm_catalog *c)
{
    pthread_mutex_unlock(&c->mu);
}

int tm_catalog_sql_fail(tm_catalog *c, tm_err *err, int rc, const char *what)
{
    return sql_fail(c, err, rc, what);
}

static int nomem(tm_catalog *c, tm_err *err)
{
    return tm_err_set(err, TM_ENOMEM, "catalog %s: out of memory", c->path);
}

/* ---- statements and transactions ---- */

/* The cached statement for id, prepared on first use. NULL (err set) if it
 * cannot be prepared, e.g. its table is missing in a catalog opened at an
 * older version. */
static sqlite3_stmt *stmt(tm_catalog *c, int id, tm_err *err)
{
    if (c->stmts[id] == NULL) {
        int rc = sqlite3_prepare_v3(c->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmts[id], NULL);
        if (rc != SQLITE_OK) {
            sql_fail(c, err, rc, "prepare");
            return NULL;
        }
    }
    return c->stmts[id];
}

/* Ready a cached statement for its next use. Bindings are cleared so no
 * pointer of the caller's outlives the call (texts are bound SQLITE_STATIC). */
static void stmt_done(sqlite3_stmt *s)
{
    if (s != NULL) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

static int bind_text(sqlite3_stmt *s, int i, const char *v)
{
    return sqlite3_bind_text(s, i, v != NULL ? v : "", -1, SQLITE_STATIC);
}

static int bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
    return v != NULL ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

/* Run a statement that returns no rows. */
static int exec_done(tm_catalog *c, sqlite3_stmt *s, const char *what, tm_err *err)
{
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        ret = sql_fail(c, err, rc, what);
    }
    stmt_done(s);
    return ret;
}

static int exec_id(tm_catalog *c, int id, const char *what, tm_err *err)
{
    sqlite3_stmt *s = stmt(c, id, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    return exec_done(c, s, what, err);
}

/* A single integer from a one-row query (counts, pragmas). */
static int query_int(tm_catalog *c, int id, int64_t *out, tm_err *err)
{
    sqlite3_stmt *s = stmt(c, id, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    int rc = sqlite3_step(s);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(s, 0);
    } else {
        ret = sql_fail(c, err, rc == SQLITE_DONE ? SQLITE_INTERNAL : rc, stmt_sql[id]);
    }
    stmt_done(s);
    return ret;
}

static int tx_begin(tm_catalog *c, int write, tm_err *err)
{
    return exec_id(c, write ? ST_BEGIN_WRITE : ST_BEGIN_READ, "begin", err);
}

static int tx_commit(tm_catalog *c, tm_err *err)
{
    return exec_id(c, ST_COMMIT, "commit", err);
}

/* Undo a failed transaction. SQLite has already rolled back on some errors
 * (SQLITE_FULL, some I/O errors), hence the autocommit check. */
static void tx_rollback(tm_catalog *c)
{
    if (!sqlite3_get_autocommit(c->db)) {
        exec_id(c, ST_ROLLBACK, "rollback", NULL);
    }
}

/* ---- open and migrate ---- */

static int schema_version(tm_catalog *c, int *out, tm_err *err)
{
    int64_t v = 0;
    int rc = query_int(c, ST_SCHEMA_VERSION, &v, err);
    if (rc == 0) {
        *out = (int)v;
    }
    return rc;
}

/* Apply migration m in its own transaction, unless another process applied
 * it while we waited for the write lock. */
static int migrate_one(tm_catalog *c, const migration *m, tm_err *err)
{
    char what[96];
    int rc = tx_begin(c, 1, err);
    if (rc != 0) {
        return rc;
    }
    int current = 0;
    rc = schema_version(c, &current, err);
    if (rc != 0 || current >= m->version) {
        tx_rollback(c);
        return rc;
    }
    snprintf(what, sizeof(what), "migration %d (%s)", m->version, m->name);
    int src = sqlite3_exec(c->db, m->sql, NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        rc = sql_fail(c, err, src, what);
        tx_rollback(c);
        return rc;
    }

    /* A migration that leaves a dangling reference is a bug; better to stop
     * here than to discover it at the next delete. */
    sqlite3_stmt *fk = NULL;
    src = sqlite3_prepare_v2(c->db, "PRAGMA foreign_key_check", -1, &fk, NULL);
    if (src == SQLITE_OK) {
        src = sqlite3_step(fk);
    }
    if (src == SQLITE_ROW) {
        rc = tm_err_set(err, TM_EINTERNAL,
                        "catalog %s: %s leaves rows violating foreign keys (table %s); "
                        "not applied",
                        c->path, what, (const char *)sqlite3_column_text(fk, 0));
    } else if (src != SQLITE_DONE) {
        rc = sql_fail(c, err, src, what);
    }
    sqlite3_finalize(fk);
    if (rc != 0) {
        tx_rollback(c);
        return rc;
    }

    sqlite3_stmt *s = stmt(c, ST_MIGRATION_RECORD, err);
    if (s == NULL) {
        tx_rollback(c);
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    if (sqlite3_bind_int(s, 1, m->version) || bind_text(s, 2, m->name) ||
        sqlite3_bind_int64(s, 3, tm_now_s())) {
        rc = sql_fail(c, err, sqlite3_errcode(c->db), what);
        stmt_done(s);
        tx_rollback(c);
        return rc;
    }
    rc = exec_done(c, s, what, err);
    if (rc == 0) {
        rc = tx_commit(c, err);
    }
    if (rc != 0) {
        tx_rollback(c);
    }
    return rc;
}

static int migrate(tm_catalog *c, int target, tm_err *err)
{
    int src = sqlite3_exec(c->db, schema_migrations_sql, NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        return sql_fail(c, err, src, "create schema_migrations");
    }
    int current = 0;
    int rc = schema_version(c, &current, err);
    if (rc != 0) {
        return rc;
    }
    if (current > N_MIGRATIONS) {
        return tm_err_set(err, TM_ECONFIG,
                          "catalog %s: catalog schema version %d is newer than this tidemark "
                          "(%d); upgrade tidemark",
                          c->path, current, N_MIGRATIONS);
    }
    for (int i = 0; i < N_MIGRATIONS && migrations[i].version <= target; i++) {
        if (migrations[i].version > current) {
            rc = migrate_one(c, &migrations[i], err);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return schema_version(c, &c->version, err);
}

/* Connection settings. journal_mode is the first statement to read the file,
 * so a file that is not a database fails here, with SQLITE_NOTADB. */
static int configure(tm_catalog *c, tm_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
    }
    if (rc != SQLITE_ROW) {
        int ret = sql_fail(c, err, rc, "open");
        sqlite3_finalize(s);
        return ret;
    }
    const char *mode = (const char *)sqlite3_column_text(s, 0);
    if (mode == NULL || strcmp(mode, "wal") != 0) {
        int ret = tm_err_set(err, TM_ECONFIG,
                             "catalog %s: journal_mode is %s, not wal; put the catalog on a "
                             "local filesystem that supports shared memory",
                             c->path, mode != NULL ? mode : "unknown");
        sqlite3_finalize(s);
        return ret;
    }
    sqlite3_finalize(s);

    rc = sqlite3_exec(c->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return sql_fail(c, err, rc, "set pragmas");
    }
    return 0;
}

/* The catalog holds secret hashes and the fleet's layout: create it private.
 * SQLite gives its -wal and -shm files the database file's mode. */
static int create_private(const char *path, tm_err *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        return tm_err_set(err, tm_err_from_errno(e), "catalog %s: open: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

int tm_catalog_latest_version(void)
{
    return N_MIGRATIONS;
}

int tm_catalog_open_at(tm_catalog **out, const char *path, int version, tm_err *err)
{
    if (out == NULL || path == NULL || path[0] == '\0') {
        return tm_err_set(err, TM_EINVAL, "catalog: open: no path given");
    }
    *out = NULL;
    if (version < 0 || version > N_MIGRATIONS) {
        return tm_err_set(err, TM_EINVAL, "catalog %s: open: schema version %d out of range 0..%d",
                          path, version, N_MIGRATIONS);
    }
    int rc = create_private(path, err);
    if (rc != 0) {
        return rc;
    }

    tm_catalog *c = calloc(1, sizeof(*c));
    if (c == NULL || (c->path = strdup(path)) == NULL) {
        free(c);
        return tm_err_set(err, TM_ENOMEM, "catalog %s: out of memory", path);
    }
    pthread_mutex_init(&c->mu, NULL);

    int src = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (src != SQLITE_OK) {
        rc = sql_fail(c, err, src, "open");
        tm_catalog_free(c);
        return rc;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, CATALOG_BUSY_TIMEOUT_MS);

    rc = configure(c, err);
    if (rc == 0) {
        rc = migrate(c, version, err);
    }
    if (rc != 0) {
        tm_catalog_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int tm_catalog_open(tm_catalog **out, const char *path, tm_err *err)
{
    return tm_catalog_open_at(out, path, N_MIGRATIONS, err);
}

void tm_catalog_free(tm_catalog *c)
{
    if (c == NULL) {
        return;
    }
    for (int i = 0; i < ST__N; i++) {
        sqlite3_finalize(c->stmts[i]);
    }
    /* The last connection to close checkpoints the WAL and removes it. */
    sqlite3_close_v2(c->db);
    pthread_mutex_destroy(&c->mu);
    free(c->path);
    free(c);
}

/* ---- reading records ---- */

/* A copy of a text column; "" for NULL unless keep_null. NULL only on OOM
 * (or a kept NULL), which callers distinguish by the column type. */
static int col_dup(sqlite3_stmt *s, int i, int keep_null, char **out)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    if (t == NULL) {
        if (sqlite3_column_type(s, i) == SQLITE_NULL) {
            if (keep_null) {
                *out = NULL;
                return 0;
            }
            t = (const unsigned char *)"";
        } else {
            return TM_ENOMEM;
        }
    }
    *out = strdup((const char *)t);
    return *out != NULL ? 0 : TM_ENOMEM;
}

/* Fill the scalar fields of a from a row of ST_AGENT_GET / ST_AGENT_LIST. */
static int agent_from_row(sqlite3_stmt *s, tm_agent_rec *a)
{
    if (col_dup(s, 0, 0, &a->id) || col_dup(s, 1, 0, &a->hostname) ||
        col_dup(s, 2, 0, &a->version) || col_dup(s, 3, 0, &a->secret_hash) ||
        col_dup(s, 4, 0, &a->enrollment) || col_dup(s, 5, 1, &a->address)) {
        return TM_ENOMEM;
    }
    a->approved = sqlite3_column_int(s, 6);
    a->state = sqlite3_column_int(s, 7);
    a->registered_at = sqlite3_column_int64(s, 8);
    a->last_seen_at = sqlite3_column_int64(s, 9);
    return 0;
}

/* The targets (st = ST_TARGETS_GET) or pending claims (ST_CLAIMS_GET) of
 * agent id, appended to *out. */
static int targets_load(tm_catalog *c, int st, const char *id, tm_target_rec **out, size_t *n,
                        tm_err *err)
{
    sqlite3_stmt *s = stmt(c, st, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    size_t cap = *n;
    int rc = 0;
    int src;
    bind_text(s, 1, id);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 4;
            tm_target_rec *t = realloc(*out, ncap * sizeof(*t));
            if (t == NULL) {
                stmt_done(s);
                return nomem(c, err);
            }
            *out = t;
            cap = ncap;
        }
        tm_target_rec *t = &(*out)[*n];
        memset(t, 0, sizeof(*t));
        (*n)++;
        t->kind = sqlite3_column_int(s, 1);
        if (col_dup(s, 0, 0, &t->name) || col_dup(s, 2, 0, &t->engine_version)) {
            stmt_done(s);
            return nomem(c, err);
        }
    }
    if (src != SQLITE_DONE) {
        rc = sql_fail(c, err, src, "read targets");
    }
    stmt_done(s);
    return rc;
}

/* Load a's labels and targets (and a pending agent's claims). */
static int agent_load_children(tm_catalog *c, tm_agent_rec *a, tm_err *err)
{
    sqlite3_stmt *s = stmt(c, ST_LABELS_GET, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    int rc = 0;
    int src;
    size_t cap = 0;
    bind_text(s, 1, a->id);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (a->n_labels == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 4;
            tm_label *l = realloc(a->labels, ncap * sizeof(*l));
            if (l == NULL) {
                stmt_done(s);
                return nomem(c, err);
            }
            a->labels = l;
            cap = ncap;
        }
        tm_label *l = &a->labels[a->n_labels];
        memset(l, 0, sizeof(*l));
        a->n_labels++;
        if (col_dup(s, 0, 0, &l->key) || col_dup(s, 1, 0, &l->value)) {
            stmt_done(s);
            return nomem(c, err);
        }
    }
    if (src != SQLITE_DONE) {
        rc = sql_fail(c, err, src, "read labels");
    }
    stmt_done(s);
    if (rc != 0) {
        return rc;
    }

    rc = targets_load(c, ST_TARGETS_GET, a->id, &a->targets, &a->n_targets, err);
    if (rc == 0 && !a->approved) {
        rc = targets_load(c, ST_CLAIMS_GET, a->id, &a->claims, &a->n_claims, err);
    }
    return rc;
}

void tm_agent_rec_free(tm_agent_rec *a)
{
    if (a == NULL) {
        return;
    }
    free(a->id);
    free(a->hostname);
    free(a->version);
    free(a->secret_hash);
    free(a->enrollment);
    free(a->address);
    for (size_t i = 0; i < a->n_labels; i++) {
        free(a->labels[i].key);
        free(a->labels[i].value);
    }
    free(a->labels);
    for (size_t i = 0; i < a->n_targets; i++) {
        free(a->targets[i].name);
        free(a->targets[i].engine_version);
    }
    free(a->targets);
    for (size_t i = 0; i < a->n_claims; i++) {
        free(a->claims[i].name);
        free(a->claims[i].engine_version);
    }
    free(a->claims);
    free(a);
}

void tm_agent_recs_free(tm_agent_rec **a, size_t n)
{
    if (a == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        tm_agent_rec_free(a[i]);
    }
    free(a);
}

void tm_agent_events_free(tm_agent_event *e, size_t n)
{
    if (e == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        free(e[i].agent_id);
        free(e[i].reason);
    }
    free(e);
}

/* ---- agents ---- */

static int valid_state(int s)
{
    return s >= TIDEMARK__AGENT_STATE__PENDING && s <= TIDEMARK__AGENT_STATE__LOST;
}

static int valid_kind(int k)
{
    return tm_engine_kind_by_kind(k) != NULL;
}

/* Reject what the schema would reject less legibly, before any write. */
static int agent_validate(tm_catalog *c, const tm_agent_rec *a, tm_err *err)
{
    if (a == NULL || a->id == NULL || a->id[0] == '\0' || a->hostname == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog %s: put agent: id and hostname are required",
                          c->path);
    }
    if ((a->approved != 0 && a->approved != 1) || !valid_state(a->state)) {
        return tm_err_set(err, TM_EINVAL, "catalog %s: put agent %s: bad approved=%d state=%d",
                          c->path, a->id, a->approved, a->state);
    }
    if ((a->n_labels > 0 && a->labels == NULL) || (a->n_targets > 0 && a->targets == NULL)) {
        return tm_err_set(err, TM_EINVAL, "catalog %s: put agent %s: NULL label or target array",
                          c->path, a->id);
    }
    for (size_t i = 0; i < a->n_labels; i++) {
        if (a->labels[i].key == NULL || a->labels[i].key[0] == '\0') {
            return tm_err_set(err, TM_EINVAL, "catalog %s: put agent %s: label %zu has no key",
                              c->path, a->id, i);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(a->labels[i].key, a->labels[j].key) == 0) {
                return tm_err_set(err, TM_EINVAL, "catalog %s: put agent %s: label %s given twice",
                                  c->path, a->id, a->labels[i].key);
            }
        }
    }
    for (size_t i = 0; i < a->n_targets; i++) {
        const tm_target_rec *t = &a->targets[i];
        if (t->name == NULL || t->name[0] == '\0') {
            return tm_err_set(err, TM_EINVAL, "catalog %s: put agent %s: target %zu has no name",
                              c->path, a->id, i);
        }
        if (!valid_kind(t->kind)) {
            return tm_err_set(err, TM_EINVAL, "catalog %s: put agent %s: target %s: bad kind %d",
                              c->path, a->id, t->name, t->kind);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(t->name, a->targets[j].name) == 0) {
                return tm_err_set(err, TM_EINVAL, "catalog %s: put agent %s: target %s given twice",
                                  c->path, a->id, t->name);
            }
        }
    }
    return 0;
}

/* Current (approved, state) of agent id; *found = 0 if there is none. */
static int agent_state(tm_catalog *c, const char *id, int *found, int *approved, int *state,
                       tm_err *err)
{
    sqlite3_stmt *s = stmt(c, ST_AGENT_STATE, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    bind_text(s, 1, id);
    int src = sqlite3_step(s);
    int rc = 0;
    *found = 0;
    if (src == SQLITE_ROW) {
        *found = 1;
        *approved = sqlite3_column_int(s, 0);
        *state = sqlite3_column_int(s, 1);
    } else if (src != SQLITE_DONE) {
        rc = sql_fail(c, err, src, "read agent state");
    }
    stmt_done(s);
    return rc;
}

static int event_insert(tm_catalog *c, const char *id, int64_t at, int from, int to,
                        const char *reason, tm_err *err)
{
    sqlite3_stmt *s = stmt(c, ST_EVENT_INSERT, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    if (bind_text(s, 1, id) || sqlite3_bind_int64(s, 2, at) || sqlite3_bind_int(s, 3, from) ||
        sqlite3_bind_int(s, 4, to) || bind_text(s, 5, reason)) {
        int rc = sql_fail(c, err, sqlite3_errcode(c->db), "insert agent event");
        stmt_done(s);
        return rc;
    }
    return exec_done(c, s, "insert agent event", err);
}

/* The first target of a owned by another agent, as TM_EEXIST. */
static int targets_check_owner(tm_catalog *c, const tm_agent_rec *a, tm_err *err)
{
    sqlite3_stmt *s = stmt(c, ST_TARGET_OWNER, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    for (size_t i = 0; i < a->n_targets; i++) {
        bind_text(s, 1, a->targets[i].name);
        int src = sqlite3_step(s);
        int rc = 0;
        if (src == SQLITE_ROW) {
            const char *owner = (const char *)sqlite3_column_text(s, 0);
            if (owner != NULL && strcmp(owner, a->id) != 0) {
                rc = tm_err_set(err, TM_EEXIST,
                                "catalog %s: put agent %s: target %s already belongs to agent %s; "
                                "rename the target or remove agent %s first",
                                c->path, a->id, a->targets[i].name, owner, owner);
            }
        } else if (src != SQLITE_DONE) {
            rc = sql_fail(c, err, src, "read target owner");
        }
        stmt_done(s);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int has_target(const tm_agent_rec *a, const char *name)
{
    for (size_t i = 0; i < a->n_targets; i++) {
        if (strcmp(a->targets[i].name, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Delete the targets a no longer reports. Names are collected first so the
 * deletes do not run under an open cursor on the same table. */
static int targets_prune(tm_catalog *c, const tm_agent_rec *a, tm_err *err)
{
    sqlite3_stmt *s = stmt(c, ST_TARGET_NAMES, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    char **gone = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    int src;
    bind_text(s, 1, a->id);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(s, 0);
        if (name == NULL || has_target(a, name)) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 4;
            char **g = realloc(gone, ncap * sizeof(*g));
            if (g == NULL) {
                rc = nomem(c, err);
                break;
            }
            gone = g;
            cap = ncap;
        }
        if ((gone[n] = strdup(name)) == NULL) {
            rc = nomem(c, err);
            break;
        }
        n++;
    }
    if (rc == 0 && src != SQLITE_ROW && src != SQLITE_DONE) {
        rc = sql_fail(c, err, src, "read targets");
    }
    stmt_done(s);

    if (rc == 0 && n > 0) {
        s = stmt(c, ST_TARGET_DELETE, err);
        if (s == NULL) {
            rc = err != NULL ? err->code : TM_EINTERNAL;
        }
        for (size_t i = 0; rc == 0 && i < n; i++) {
            bind_text(s, 1, gone[i]);
            rc = exec_done(c, s, "delete target", err);
        }
    }
    for (size_t i = 0; i < n; i++) {
        free(gone[i]);
    }
    free(gone);
    return rc;
}

/* Write a's targets with st: ST_TARGET_UPSERT or ST_CLAIM_INSERT (both take
 * name, agent id, kind, engine version). */
static int targets_write(tm_catalog *c, int st, const tm_agent_rec *a, const char *what,
                         tm_err *err)
{
    sqlite3_stmt *s = stmt(c, st, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    for (size_t i = 0; i < a->n_targets; i++) {
        bind_text(s, 1, a->targets[i].name);
        bind_text(s, 2, a->id);
        sqlite3_bind_int(s, 3, a->targets[i].kind);
        bind_text(s, 4, a->targets[i].engine_version);
        int rc = exec_done(c, s, what, err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* The writes of agent_put, inside its transaction. */
static int agent_put_tx(tm_catalog *c, const tm_agent_rec *in, tm_err *err)
{
    int found = 0, old_approved = 0, old_state = 0;
    int rc = agent_state(c, in->id, &found, &old_approved, &old_state, err);
    if (rc != 0) {
        return rc;
    }
    /* Approval is never withdrawn by a put (a re-registration that read
     * "pending" just before an approval must not undo it). */
    tm_agent_rec eff = *in;
    eff.approved |= old_approved;
    const tm_agent_rec *a = &eff;
    /* Ownership before any write, so a conflict writes nothing at all. A
     * pending agent's names are only claims (see migration 10): checked when
     * it is approved. */
    rc = a->approved ? targets_check_owner(c, a, err) : 0;
    if (rc != 0) {
        return rc;
    }

    sqlite3_stmt *s = stmt(c, ST_AGENT_UPSERT, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    if (bind_text(s, 1, a->id) || bind_text(s, 2, a->hostname) || bind_text(s, 3, a->version) ||
        bind_text(s, 4, a->secret_hash) || bind_text(s, 5, a->enrollment) ||
        bind_text_or_null(s, 6, a->address) || sqlite3_bind_int(s, 7, a->approved) ||
        sqlite3_bind_int(s, 8, a->state) || sqlite3_bind_int64(s, 9, a->registered_at) ||
        sqlite3_bind_int64(s, 10, a->last_seen_at)) {
        rc = sql_fail(c, err, sqlite3_errcode(c->db), "bind agent");
        stmt_done(s);
        return rc;
    }
    if ((rc = exec_done(c, s, "insert agent", err)) != 0) {
        return rc;
    }

    /* Labels have no identity of their own: replace them wholesale. */
    if ((s = stmt(c, ST_LABELS_DELETE, err)) == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    bind_text(s, 1, a->id);
    if ((rc = exec_done(c, s, "delete labels", err)) != 0) {
        return rc;
    }
    if ((s = stmt(c, ST_LABEL_INSERT, err)) == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    for (size_t i = 0; i < a->n_labels; i++) {
        bind_text(s, 1, a->id);
        bind_text(s, 2, a->labels[i].key);
        bind_text(s, 3, a->labels[i].value);
        if ((rc = exec_done(c, s, "insert label", err)) != 0) {
            return rc;
        }
    }

    /* Claims are replaced wholesale; an approved agent has none left. */
    if ((s = stmt(c, ST_CLAIMS_DELETE, err)) == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    bind_text(s, 1, a->id);
    if ((rc = exec_done(c, s, "delete pending targets", err)) != 0) {
        return rc;
    }
    if (!a->approved) {
        rc = targets_write(c, ST_CLAIM_INSERT, a, "insert pending target", err);
    } else if ((rc = targets_prune(c, a, err)) == 0) {
        /* Targets keep their row id across re-registration: prune, then upsert. */
        rc = targets_write(c, ST_TARGET_UPSERT, a, "insert target", err);
    }
    if (rc != 0) {
        return rc;
    }

    /* The event log starts at registration; a put that changes approval or
     * state on an existing agent is logged like set_state would log it. */
    if (!found) {
        return event_insert(c, a->id, a->registered_at,
                            TIDEMARK__AGENT_STATE__AGENT_STATE_UNSPECIFIED, a->state, "registered",
                            err);
    }
    if (old_approved != a->approved || old_state != a->state) {
        return event_insert(c, a->id, tm_now_s(), old_state, a->state, "re-registered", err);
    }
    return 0;
}

int tm_catalog_agent_put(tm_catalog *c, const tm_agent_rec *a, tm_err *err)
{
    if (c == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: put agent: no catalog");
    }
    pthread_mutex_lock(&c->mu);
    int rc = agent_validate(c, a, err);
    if (rc == 0) {
        rc = tx_begin(c, 1, err);
        if (rc == 0) {
            rc = agent_put_tx(c, a, err);
            if (rc == 0) {
                rc = tx_commit(c, err);
            }
            if (rc != 0) {
                tx_rollback(c);
            }
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* One agent with its children, or TM_ENOENT. Caller holds the lock and a
 * read transaction. */
static int agent_get_locked(tm_catalog *c, const char *id, tm_agent_rec **out, tm_err *err)
{
    sqlite3_stmt *s = stmt(c, ST_AGENT_GET, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    bind_text(s, 1, id);
    int src = sqlite3_step(s);
    if (src == SQLITE_DONE) {
        stmt_done(s);
        return tm_err_set(err, TM_ENOENT, "catalog %s: no agent %s", c->path, id);
    }
    if (src != SQLITE_ROW) {
        int rc = sql_fail(c, err, src, "read agent");
        stmt_done(s);
        return rc;
    }
    tm_agent_rec *a = calloc(1, sizeof(*a));
    int rc = a != NULL ? agent_from_row(s, a) : TM_ENOMEM;
    stmt_done(s);
    if (rc != 0) {
        tm_agent_rec_free(a);
        return nomem(c, err);
    }
    rc = agent_load_children(c, a, err);
    if (rc != 0) {
        tm_agent_rec_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int tm_catalog_agent_get(tm_catalog *c, const char *id, tm_agent_rec **out, tm_err *err)
{
    if (c == NULL || id == NULL || out == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: get agent: bad arguments");
    }
    *out = NULL;
    pthread_mutex_lock(&c->mu);
    /* A read transaction: the agent and its children from one snapshot. */
    int rc = tx_begin(c, 0, err);
    if (rc == 0) {
        rc = agent_get_locked(c, id, out, err);
        tx_rollback(c);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static int agent_list_locked(tm_catalog *c, tm_agent_rec ***out, size_t *n, tm_err *err)
{
    sqlite3_stmt *s = stmt(c, ST_AGENT_LIST, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    tm_agent_rec **v = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    int src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 16;
            tm_agent_rec **nv = realloc(v, ncap * sizeof(*nv));
            if (nv == NULL) {
                rc = nomem(c, err);
                break;
            }
            v = nv;
            cap = ncap;
        }
        if ((v[len] = calloc(1, sizeof(**v))) == NULL) {
            rc = nomem(c, err);
            break;
        }
        len++;
        if (agent_from_row(s, v[len - 1]) != 0) {
            rc = nomem(c, err);
            break;
        }
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = sql_fail(c, err, src, "list agents");
    }
    stmt_done(s);
    for (size_t i = 0; rc == 0 && i < len; i++) {
        rc = agent_load_children(c, v[i], err);
    }
    if (rc != 0) {
        tm_agent_recs_free(v, len);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

int tm_catalog_agent_list(tm_catalog *c, tm_agent_rec ***out, size_t *n, tm_err *err)
{
    if (c == NULL || out == NULL || n == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: list agents: bad arguments");
    }
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&c->mu);
    int rc = tx_begin(c, 0, err);
    if (rc == 0) {
        rc = agent_list_locked(c, out, n, err);
        tx_rollback(c);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static int agent_set_state_tx(tm_catalog *c, const char *id, int approved, int state, int64_t at,
                              const char *reason, tm_err *err)
{
    int found = 0, old_approved = 0, old_state = 0;
    int rc = agent_state(c, id, &found, &old_approved, &old_state, err);
    if (rc != 0) {
        return rc;
    }
    if (!found) {
        return tm_err_set(err, TM_ENOENT, "catalog %s: set state: no agent %s", c->path, id);
    }
    /* Approval is never withdrawn here (there is no such operation): a
     * liveness write that read approved=0 just before an approval must not
     * undo it. Approval itself goes through agent_approve (claims bound). */
    approved |= old_approved;
    if (old_approved == approved && old_state == state) {
        return 0; /* nothing changed, nothing to log */
    }
    sqlite3_stmt *s = stmt(c, ST_AGENT_SET_STATE, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    bind_text(s, 1, id);
    sqlite3_bind_int(s, 2, approved);
    sqlite3_bind_int(s, 3, state);
    if ((rc = exec_done(c, s, "update agent state", err)) != 0) {
        return rc;
    }
    return event_insert(c, id, at, old_state, state, reason, err);
}

static int agent_approve_tx(tm_catalog *c, const char *id, int64_t at, const char *reason,
                            tm_err *err);

/* One write transaction: an approval (claims bound) or a state change. */
static int agent_state_write(tm_catalog *c, const char *id, int approve, int approved, int state,
                             int64_t at, const char *reason, tm_err *err)
{
    pthread_mutex_lock(&c->mu);
    int rc = tx_begin(c, 1, err);
    if (rc == 0) {
        rc = approve ? agent_approve_tx(c, id, at, reason, err)
                     : agent_set_state_tx(c, id, approved, state, at, reason, err);
        if (rc == 0) {
            rc = tx_commit(c, err);
        }
        if (rc != 0) {
            tx_rollback(c);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int tm_catalog_agent_set_state(tm_catalog *c, const char *id, int approved, int state, int64_t at,
                               const char *reason, tm_err *err)
{
    if (c == NULL || id == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: set state: bad arguments");
    }
    if ((approved != 0 && approved != 1) || !valid_state(state)) {
        return tm_err_set(err, TM_EINVAL, "catalog %s: set state of %s: bad approved=%d state=%d",
                          c->path, id, approved, state);
    }
    return agent_state_write(c, id, 0, approved, state, at, reason, err);
}

/* Approval inside its transaction: the claims become targets, unless a name
 * is already served by another agent (TM_EEXIST, nothing written). */
static int agent_approve_tx(tm_catalog *c, const char *id, int64_t at, const char *reason,
                            tm_err *err)
{
    int found = 0, approved = 0, state = 0;
    int rc = agent_state(c, id, &found, &approved, &state, err);
    if (rc != 0) {
        return rc;
    }
    if (!found) {
        return tm_err_set(err, TM_ENOENT, "catalog %s: approve: no agent %s", c->path, id);
    }
    if (approved) {
        return 0;
    }
    tm_agent_rec a = {.id = (char *)id};
    rc = targets_load(c, ST_CLAIMS_GET, id, &a.targets, &a.n_targets, err);
    if (rc == 0) {
        rc = targets_check_owner(c, &a, err);
    }
    if (rc == 0) {
        rc = targets_write(c, ST_TARGET_UPSERT, &a, "insert target", err);
    }
    for (size_t i = 0; i < a.n_targets; i++) {
        free(a.targets[i].name);
        free(a.targets[i].engine_version);
    }
    free(a.targets);
    sqlite3_stmt *s = rc == 0 ? stmt(c, ST_CLAIMS_DELETE, err) : NULL;
    if (rc == 0 && s == NULL) {
        rc = err != NULL ? err->code : TM_EINTERNAL;
    }
    if (rc == 0) {
        bind_text(s, 1, id);
        rc = exec_done(c, s, "delete pending targets", err);
    }
    return rc != 0 ? rc : agent_set_state_tx(c, id, 1, state, at, reason, err);
}

int tm_catalog_agent_approve(tm_catalog *c, const char *id, int64_t at, const char *reason,
                             tm_err *err)
{
    if (c == NULL || id == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: approve: bad arguments");
    }
    return agent_state_write(c, id, 1, 1, 0, at, reason, err);
}

/* Unknown ids are skipped, not errors: an agent removed between its last
 * heartbeat and the flush has nothing left to update. */
int tm_catalog_agent_touch(tm_catalog *c, const char *const *ids, const int64_t *last_seen,
                           size_t n, tm_err *err)
{
    if (c == NULL || (n > 0 && (ids == NULL || last_seen == NULL))) {
        return tm_err_set(err, TM_EINVAL, "catalog: touch agents: bad arguments");
    }
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == NULL) {
            return tm_err_set(err, TM_EINVAL, "catalog %s: touch agents: id %zu is NULL", c->path,
                              i);
        }
    }
    if (n == 0) {
        return 0;
    }
    pthread_mutex_lock(&c->mu);
    int rc = tx_begin(c, 1, err);
    if (rc == 0) {
        sqlite3_stmt *s = stmt(c, ST_AGENT_TOUCH, err);
        if (s == NULL) {
            rc = err != NULL ? err->code : TM_EINTERNAL;
        }
        for (size_t i = 0; rc == 0 && i < n; i++) {
            bind_text(s, 1, ids[i]);
            sqlite3_bind_int64(s, 2, last_seen[i]);
            rc = exec_done(c, s, "touch agent", err);
        }
        if (rc == 0) {
            rc = tx_commit(c, err);
        }
        if (rc != 0) {
            tx_rollback(c);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int tm_catalog_agent_delete(tm_catalog *c, const char *id, tm_err *err)
{
    if (c == NULL || id == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: delete agent: bad arguments");
    }
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    sqlite3_stmt *s = stmt(c, ST_AGENT_DELETE, err);
    if (s == NULL) {
        rc = err != NULL ? err->code : TM_EINTERNAL;
    } else {
        /* One statement is its own transaction; labels and targets go with
         * the agent through ON DELETE CASCADE. */
        bind_text(s, 1, id);
        rc = exec_done(c, s, "delete agent", err);
        if (rc == 0 && sqlite3_changes(c->db) == 0) {
            rc = tm_err_set(err, TM_ENOENT, "catalog %s: delete: no agent %s", c->path, id);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static int events_locked(tm_catalog *c, const char *agent_id, size_t limit, tm_agent_event **out,
                         size_t *n, tm_err *err)
{
    sqlite3_stmt *s = stmt(c, agent_id != NULL ? ST_EVENTS_AGENT : ST_EVENTS_ALL, err);
    if (s == NULL) {
        return err != NULL ? err->code : TM_EINTERNAL;
    }
    /* LIMIT -1 is SQLite for "no limit". */
    sqlite3_bind_int64(s, 1, limit == 0 || limit > INT64_MAX ? -1 : (int64_t)limit);
    if (agent_id != NULL) {
        bind_text(s, 2, agent_id);
    }
    tm_agent_event *v = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    int src;
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 16;
            tm_agent_event *nv = realloc(v, ncap * sizeof(*nv));
            if (nv == NULL) {
                rc = nomem(c, err);
                break;
            }
            v = nv;
            cap = ncap;
        }
        tm_agent_event *e = &v[len++];
        memset(e, 0, sizeof(*e));
        e->at = sqlite3_column_int64(s, 1);
        e->from_state = sqlite3_column_int(s, 2);
        e->to_state = sqlite3_column_int(s, 3);
        if (col_dup(s, 0, 0, &e->agent_id) || col_dup(s, 4, 0, &e->reason)) {
            rc = nomem(c, err);
            break;
        }
    }
    if (rc == 0 && src != SQLITE_DONE) {
        rc = sql_fail(c, err, src, "read agent events");
    }
    stmt_done(s);
    if (rc != 0) {
        tm_agent_events_free(v, len);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

int tm_catalog_agent_events(tm_catalog *c, const char *agent_id, size_t limit, tm_agent_event **out,
                            size_t *n, tm_err *err)
{
    if (c == NULL || out == NULL || n == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: agent events: bad arguments");
    }
    *out = NULL;
    *n = 0;
    pthread_mutex_lock(&c->mu);
    int rc = events_locked(c, agent_id, limit, out, n, err);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static int stats_locked(tm_catalog *c, tm_catalog_stats *out, tm_err *err)
{
    int64_t agents = 0, targets = 0, events = 0, pages = 0, page_size = 0;
    int rc = 0;
    /* Tables arrive with their migration; a catalog held at an older version
     * by tm_catalog_open_at (migration tests) lacks the later ones. */
    if (c->version >= 1) {
        rc = query_int(c, ST_COUNT_AGENTS, &agents, err);
        if (rc == 0) {
            rc = query_int(c, ST_COUNT_TARGETS, &targets, err);
        }
    }
    if (rc == 0 && c->version >= 2) {
        rc = query_int(c, ST_COUNT_EVENTS, &events, err);
    }
    if (rc == 0) {
        rc = query_int(c, ST_PAGE_COUNT, &pages, err);
    }
    if (rc == 0) {
        rc = query_int(c, ST_PAGE_SIZE, &page_size, err);
    }
    if (rc != 0) {
        return rc;
    }
    out->agents = (uint64_t)agents;
    out->targets = (uint64_t)targets;
    out->events = (uint64_t)events;
    out->bytes = (uint64_t)pages * (uint64_t)page_size;
    out->schema_version = c->version;
    return 0;
}

int tm_catalog_stats_get(tm_catalog *c, tm_catalog_stats *out, tm_err *err)
{
    if (c == NULL || out == NULL) {
        return tm_err_set(err, TM_EINVAL, "catalog: stats: bad arguments");
    }
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&c->mu);
    int rc = tx_begin(c, 0, err);
    if (rc == 0) {
        rc = stats_locked(c, out, err);
        tx_rollback(c);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}
