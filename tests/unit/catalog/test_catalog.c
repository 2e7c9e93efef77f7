/*
 * test_catalog.c - the SQLite catalog: migrations, agent verbs, errors.
 *
 * Each test gets a fresh directory (mkdtemp under $TM_BUILD_DIR, else /tmp)
 * removed at teardown. Some tests reach past the API with a second, raw
 * sqlite3 connection: to plant data exactly as an older version wrote it, to
 * fake a catalog from the future, or to check what is really on disk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "coordinator/catalog.h"
#include "tidemark.pb-c.h"

enum { PENDING = 1, ONLINE = 2, STALE = 3, LOST = 4 };
enum { POSTGRES = 1, REDIS = 2, SQLITE = 3, TURSO = 4 };

typedef struct fixture {
    char dir[PATH_MAX];
    char path[PATH_MAX + 32];
} fixture;

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    const char *base = getenv("TM_BUILD_DIR");
    if (base != NULL && base[0] != '\0') {
        snprintf(fx->dir, sizeof(fx->dir), "%s/tmp", base);
        mkdir(fx->dir, 0700);
        snprintf(fx->dir, sizeof(fx->dir), "%s/tmp/catalog-XXXXXX", base);
    } else {
        snprintf(fx->dir, sizeof(fx->dir), "/tmp/catalog-XXXXXX");
    }
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof(fx->path), "%s/catalog.db", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* ---- raw access to the file, bypassing the catalog ---- */

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        fail_msg("raw_exec: %s\n%s", msg != NULL ? msg : "?", sql);
    }
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* ---- building records ---- */

static tm_agent_rec agent(const char *id, const char *host, tm_label *labels, size_t n_labels,
                          tm_target_rec *targets, size_t n_targets)
{
    tm_agent_rec a = {
        .id = (char *)id,
        .hostname = (char *)host,
        .version = "0.1.0",
        .secret_hash = "ab12",
        .enrollment = "default",
        .address = NULL,
        .approved = 0,
        .state = PENDING,
        .registered_at = 1000,
        .last_seen_at = 1000,
        .labels = labels,
        .n_labels = n_labels,
        .targets = targets,
        .n_targets = n_targets,
    };
    return a;
}

static tm_catalog *open_ok(const char *path)
{
    tm_catalog *c = NULL;
    tm_err err = {0};
    int rc = tm_catalog_open(&c, path, &err);
    if (rc != 0) {
        fail_msg("open: %s", err.msg);
    }
    return c;
}

static void put_ok(tm_catalog *c, const tm_agent_rec *a)
{
    tm_err err = {0};
    int rc = tm_catalog_agent_put(c, a, &err);
    if (rc != 0) {
        fail_msg("put %s: %s", a->id, err.msg);
    }
}

static tm_catalog_stats stats(tm_catalog *c)
{
    tm_catalog_stats st;
    tm_err err = {0};
    assert_int_equal(tm_catalog_stats_get(c, &st, &err), 0);
    return st;
}

/* ---- tests ---- */

static void test_open_empty_is_latest(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    tm_catalog_stats st = stats(c);
    assert_true(tm_catalog_latest_version() >= 2);
    assert_int_equal(st.schema_version, tm_catalog_latest_version());
    assert_int_equal(st.agents, 0);
    assert_int_equal(st.targets, 0);
    assert_int_equal(st.events, 0);
    assert_true(st.bytes > 0);

    /* Each migration left its record, with a time. */
    assert_int_equal(raw_int(fx->path, "SELECT COUNT(*) FROM schema_migrations"),
                     tm_catalog_latest_version());
    assert_int_equal(raw_int(fx->path, "SELECT COUNT(*) FROM schema_migrations WHERE applied_at "
                                       "< 1600000000"),
                     0);
    /* journal_mode=WAL is persistent: any connection now sees it. */
    assert_int_equal(raw_int(fx->path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);

    /* The catalog holds secret hashes: private file. */
    struct stat sb;
    assert_int_equal(stat(fx->path, &sb), 0);
    assert_int_equal(sb.st_mode & 077, 0);
    tm_catalog_free(c);
}

/* Data as each version wrote it, planted with raw SQL so it stays what an
 * old catalog really holds even as the API moves on. fixture_sql[v] is valid
 * at schema version v. */
static const char *const fixture_sql[] = {
    [1] = "INSERT INTO agents(id, hostname, version, secret_hash, enrollment, address, approved, "
          "state, registered_at, last_seen_at) VALUES ('ag-1', 'db1', '0.0.9', 'ff00', 'tok', "
          "'10.0.0.1:5000', 1, 2, 100, 200);"
          "INSERT INTO agent_labels(agent_id, key, value) VALUES ('ag-1', 'env', 'prod'),"
          "('ag-1', 'region', 'eu');"
          "INSERT INTO targets(name, agent_id, kind, engine_version) VALUES "
          "('pg-main', 'ag-1', 1, '16.2'), ('cache', 'ag-1', 2, '7.2');",
    [2] = "INSERT INTO agent_events(agent_id, at, from_state, to_state, reason) VALUES "
          "('ag-1', 150, 1, 2, 'approved'), ('ag-gone', 120, 2, 4, 'lost');",
    /* Records are packed protos: Task{id "t-1", kind 1, target "pg-main",
     * state 3} and BackupInfo{id "b-1", target "pg-main", type 1}. */
    [3] = "INSERT INTO tasks(id, kind, target, state, agent_id, created_at, record) VALUES "
          "('t-1', 1, 'pg-main', 3, 'ag-1', 100, X'0a03742d3110011a0770672d6d61696e2003');"
          "INSERT INTO backups(target, id, type, finished_at, record) VALUES "
          "('pg-main', 'b-1', 1, 200, X'0a03622d31120770672d6d61696e1801');",
    /* LogRange{target "pg-main", repository "local", timeline 1, first "A",
     * last "B", last_time 500}. */
    [4] = "INSERT INTO log_ranges(target, repository, timeline, first, last, last_time, record) "
          "VALUES ('pg-main', 'local', 1, 'A', 'B', 500, "
          "X'0a0770672d6d61696e12056c6f63616c1801220141' || X'2a014238f403');",
    [5] = "INSERT INTO sched_state(target, kind, last_fire) VALUES ('pg-main', 'full', 1000);",
    [6] = "INSERT INTO alert_notifications(at, rule, target, status, sink, ok, error) VALUES "
          "(5000, 'backup_failed', 'pg-main', 'firing', 'am', 1, NULL);",
    /* DrillInfo{target "pg-main", task_id "t-d", rto_ms 1500, ok true}. */
    [7] = "INSERT INTO drills(target, task_id, agent_id, backup_id, finished_at, ok, rto_ms, "
          "rpo_ms, record) VALUES ('pg-main', 't-d', 'ag-1', 'b-1', 7000, 1, 1500, 2000, "
          "X'120770672d6d61696e1a03742d6458dc0b800101');",
    [8] = "INSERT INTO retention_deletions(at, target, backup_id, backup_type, finished_at, "
          "repositories, reason, task_id) VALUES (6000, 'pg-main', 'b-0', 1, 100, 'local,s3', "
          "'not kept by any rule', 't-0');",
    /* ReplicationState{target "pg-main", repository "us", state "gap"}. */
    [9] = "INSERT INTO replication_state(target, repository, record) VALUES ('pg-main', 'us', "
          "X'0a0770672d6d61696e120275732203676170');"
          /* A pending agent that bound a name before v10: released to a claim. */
          "INSERT INTO agents(id, hostname, secret_hash, approved, state) VALUES "
          "('ag-sq', 'db1', 'ee', 0, 1);"
          "INSERT INTO targets(name, agent_id, kind) VALUES ('squat', 'ag-sq', 1);",
    [10] = "INSERT INTO agents(id, hostname, secret_hash, approved, state) VALUES "
           "('ag-2', 'db2', 'ee', 0, 1);"
           "INSERT INTO pending_targets(agent_id, name, kind) VALUES ('ag-2', 'claimed', 1);",
    /* BackupInfo{id "b-2", target "pg-main", type 1, partial true,
     * missing_repositories ["us"]}. */
    [11] = "INSERT INTO backups(target, id, type, finished_at, record, partial, missing) VALUES "
           "('pg-main', 'b-2', 1, 300, X'0a03622d32120770672d6d61696e1801900101' || "
           "X'9a01027573', 1, 'us');",
    /* v12 renamed log_ranges.timeline to chain. LogRange{target "pg-main",
     * repository "us", timeline 2, first "C", last "D", last_time 600}. */
    [12] = "INSERT INTO log_ranges(target, repository, chain, first, last, last_time, record) "
           "VALUES ('pg-main', 'us', 2, 'C', 'D', 600, "
           "X'0a0770672d6d61696e1202757318022201432a014438d804');",
};

static void check_fixture(tm_catalog *c, int v)
{
    tm_err err = {0};
    if (v >= 3) {
        Tidemark__Task *t = NULL;
        assert_int_equal(tm_catalog_task_get(c, "t-1", &t, &err), 0);
        assert_int_equal(t->kind, 1);
        assert_int_equal(t->state, 3);
        assert_string_equal(t->target, "pg-main");
        tidemark__task__free_unpacked(t, NULL);
        Tidemark__BackupInfo *b = NULL;
        assert_int_equal(tm_catalog_backup_get(c, "pg-main", "b-1", &b, &err), 0);
        assert_int_equal(b->type, 1);
        tidemark__backup_info__free_unpacked(b, NULL);
    }
    if (v >= 4) {
        Tidemark__LogRange **r = NULL;
        size_t n = 0;
        assert_int_equal(tm_catalog_log_list(c, "pg-main", &r, &n, &err), 0);
        assert_int_equal(n, v >= 12 ? 2 : 1);
        assert_int_equal(r[0]->last_time, 500);
        assert_string_equal(r[0]->repository, "local");
        assert_int_equal(r[0]->timeline, 1);
        tm_catalog_log_free(r, n);
    }
    if (v >= 5) {
        tm_sched_row *rows = NULL;
        size_t n = 0;
        assert_int_equal(tm_catalog_sched_list(c, &rows, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(rows[0].kind, "full");
        assert_int_equal(rows[0].last_fire, 1000);
        free(rows);
    }
    if (v >= 6) {
        int64_t n = 0;
        assert_int_equal(tm_catalog_alert_notification_count(c, &n, &err), 0);
        assert_int_equal(n, 1);
    }
    if (v >= 7) {
        Tidemark__DrillInfo **d = NULL;
        size_t n = 0;
        assert_int_equal(tm_catalog_drill_list(c, "pg-main", 0, &d, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(d[0]->task_id, "t-d");
        assert_int_equal(d[0]->rto_ms, 1500);
        assert_true(d[0]->ok);
        tm_catalog_drills_free(d, n);
        tm_drill_success *ds = NULL;
        int64_t ok = 0, failed = 0;
        assert_int_equal(tm_catalog_drill_stats(c, &ds, &n, &ok, &failed, &err), 0);
        assert_int_equal(n, 1);
        assert_int_equal(ds[0].finished_ms, 7000);
        assert_int_equal(ok, 1);
        assert_int_equal(failed, 0);
        free(ds);
    }
    if (v >= 8) {
        tm_retention_deletion *d = NULL;
        size_t n = 0;
        assert_int_equal(tm_catalog_retention_log(c, "pg-main", 0, &d, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(d[0].backup_id, "b-0");
        assert_string_equal(d[0].repositories, "local,s3");
        tm_retention_deletions_free(d, n);
    }
    if (v >= 9) {
        Tidemark__ReplicationState **r = NULL;
        size_t n = 0;
        assert_int_equal(tm_catalog_repl_list(c, "pg-main", &r, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(r[0]->repository, "us");
        assert_string_equal(r[0]->state, "gap");
        tm_catalog_repl_free(r, n);
        /* The squat is released to a claim only by migration 10 itself: a
         * catalog already at v10 when the row was written keeps it bound. */
        tm_agent_rec *sq = NULL;
        assert_int_equal(tm_catalog_agent_get(c, "ag-sq", &sq, &err), 0);
        assert_int_equal(sq->n_targets, v < 10 ? 0 : 1);
        assert_int_equal(sq->n_claims, v < 10 ? 1 : 0);
        if (v < 10) {
            assert_string_equal(sq->claims[0].name, "squat");
        }
        tm_agent_rec_free(sq);
    }
    {
        /* Before v11 every backup was complete; from v11 b-2 is partial. */
        Tidemark__BackupInfo **b = NULL;
        size_t n = 0;
        assert_int_equal(tm_catalog_backup_partial_list(c, "pg-main", &b, &n, &err), 0);
        assert_int_equal(n, v >= 11 ? 1 : 0);
        if (v >= 11) {
            assert_string_equal(b[0]->id, "b-2");
            assert_true(b[0]->partial);
            assert_int_equal(b[0]->n_missing_repositories, 1);
            assert_string_equal(b[0]->missing_repositories[0], "us");
        }
        tm_catalog_backups_free(b, n);
    }
    tm_agent_rec *a = NULL;
    tm_catalog_stats st = stats(c);
    assert_int_equal(st.schema_version, tm_catalog_latest_version());
    if (v < 1) {
        assert_int_equal(st.agents, 0);
        return;
    }
    assert_int_equal(tm_catalog_agent_get(c, "ag-1", &a, &err), 0);
    assert_string_equal(a->hostname, "db1");
    assert_string_equal(a->version, "0.0.9");
    assert_string_equal(a->address, "10.0.0.1:5000");
    assert_int_equal(a->approved, 1);
    assert_int_equal(a->state, ONLINE);
    assert_int_equal(a->registered_at, 100);
    assert_int_equal(a->last_seen_at, 200);
    assert_int_equal(a->n_labels, 2);
    assert_string_equal(a->labels[0].key, "env");
    assert_string_equal(a->labels[1].value, "eu");
    assert_int_equal(a->n_targets, 2);
    assert_string_equal(a->targets[0].name, "cache");
    assert_int_equal(a->targets[0].kind, REDIS);
    assert_string_equal(a->targets[1].name, "pg-main");
    assert_string_equal(a->targets[1].engine_version, "16.2");
    tm_agent_rec_free(a);

    tm_agent_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(tm_catalog_agent_events(c, NULL, 0, &ev, &n, &err), 0);
    assert_int_equal(n, v >= 2 ? 2 : 0);
    if (v >= 2) {
        assert_string_equal(ev[0].agent_id, "ag-1"); /* newest first */
        assert_int_equal(ev[0].at, 150);
        assert_string_equal(ev[1].reason, "lost");
    }
    tm_agent_events_free(ev, n);

    /* The migrated catalog is fully usable: set_state needs v2's table. */
    assert_int_equal(tm_catalog_agent_set_state(c, "ag-1", 1, STALE, 300, "missed", &err), 0);
}

static void test_migrate_from_each_version(void **state)
{
    fixture *fx = *state;
    int latest = tm_catalog_latest_version();
    /* A new migration needs its fixture here, or it is never tested. */
    assert_true(latest < (int)(sizeof(fixture_sql) / sizeof(fixture_sql[0])));
    for (int f = 1; f <= latest; f++) {
        assert_non_null(fixture_sql[f]);
    }
    for (int v = 0; v < latest; v++) {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof(path), "%s/v%d.db", fx->dir, v);
        tm_catalog *c = NULL;
        tm_err err = {0};
        assert_int_equal(tm_catalog_open_at(&c, path, v, &err), 0);
        assert_int_equal(stats(c).schema_version, v);
        tm_catalog_free(c);
        for (int f = 1; f <= v; f++) {
            raw_exec(path, fixture_sql[f]);
        }
        assert_int_equal(raw_int(path, "SELECT COUNT(*) FROM schema_migrations"), v);

        c = open_ok(path);
        check_fixture(c, v);
        /* v12: a range written under the column's old name (timeline) is
         * found under its new one (chain), and the catalog writes and orders
         * ranges by it. */
        assert_int_equal(raw_int(path, "SELECT COUNT(*) FROM log_ranges WHERE chain = 1"),
                         v >= 4 ? 1 : 0);
        {
            Tidemark__LogRange lr = TIDEMARK__LOG_RANGE__INIT, *lrs[2] = {&lr, &lr};
            Tidemark__LogRange lr2 = TIDEMARK__LOG_RANGE__INIT;
            lr.target = lr2.target = "pg-main";
            lr.repository = lr2.repository = "eu";
            lr.has_timeline = lr2.has_timeline = 1;
            lr.timeline = 3;
            lr2.timeline = 2;
            lr.first = "E";
            lr.last = "F";
            lr2.first = "X";
            lr2.last = "Y";
            lrs[1] = &lr2;
            tm_err err = {0};
            assert_int_equal(tm_catalog_log_replace(c, "pg-main", "eu", lrs, 2, 0, 900, &err), 0);
            Tidemark__LogRange **got = NULL;
            size_t ng = 0;
            assert_int_equal(tm_catalog_log_list(c, "pg-main", &got, &ng, &err), 0);
            assert_true(ng >= 2);
            assert_string_equal(got[0]->repository, "eu");
            assert_int_equal(got[0]->timeline, 2); /* ordered by chain within a repository */
            assert_string_equal(got[0]->first, "X");
            assert_int_equal(got[1]->timeline, 3);
            tm_catalog_log_free(got, ng);
            assert_int_equal(raw_int(path, "SELECT COUNT(*) FROM log_ranges WHERE chain = 3"), 1);
        }
        tm_catalog_free(c);
        assert_int_equal(raw_int(path, "SELECT COUNT(*) FROM schema_migrations"), latest);

        /* Opening an up-to-date catalog again changes nothing. */
        c = open_ok(path);
        assert_int_equal(stats(c).schema_version, latest);
        tm_catalog_free(c);
    }
}

static void test_open_at_bad_version(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = NULL;
    tm_err err = {0};
    assert_int_equal(tm_catalog_open_at(&c, fx->path, tm_catalog_latest_version() + 1, &err),
                     TM_EINVAL);
    assert_null(c);
    assert_int_equal(tm_catalog_open_at(&c, fx->path, -1, &err), TM_EINVAL);

    /* Held at v1, a verb needing v2's table fails with context, not a crash. */
    assert_int_equal(tm_catalog_open_at(&c, fx->path, 1, &err), 0);
    tm_agent_event *ev = NULL;
    size_t n = 0;
    assert_int_not_equal(tm_catalog_agent_events(c, NULL, 0, &ev, &n, &err), 0);
    assert_non_null(strstr(err.msg, fx->path));
    assert_non_null(strstr(err.msg, "no such table: agent_events"));
    tm_catalog_free(c);
}

static void test_put_get_list(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    tm_err err = {0};

    tm_label la[] = {{"region", "eu-west"}, {"env", "prod"}};
    tm_target_rec ta[] = {{"pg-orders", POSTGRES, "16.2"}, {"app-sqlite", SQLITE, "3.45"}};
    tm_agent_rec a = agent("ag-a", "zeta", la, 2, ta, 2);
    a.address = "10.1.2.3:4444";
    a.approved = 1; /* a pending agent's targets are only claims */
    a.state = ONLINE;
    put_ok(c, &a);
    tm_agent_rec b = agent("ag-b", "alpha", NULL, 0, NULL, 0);
    put_ok(c, &b);

    tm_agent_rec *g = NULL;
    assert_int_equal(tm_catalog_agent_get(c, "ag-a", &g, &err), 0);
    assert_string_equal(g->id, "ag-a");
    assert_string_equal(g->hostname, "zeta");
    assert_string_equal(g->version, "0.1.0");
    assert_string_equal(g->secret_hash, "ab12");
    assert_string_equal(g->enrollment, "default");
    assert_string_equal(g->address, "10.1.2.3:4444");
    assert_int_equal(g->state, ONLINE);
    assert_int_equal(g->approved, 1);
    assert_int_equal(g->n_labels, 2);
    assert_string_equal(g->labels[0].key, "env"); /* sorted by key */
    assert_string_equal(g->labels[0].value, "prod");
    assert_string_equal(g->labels[1].key, "region");
    assert_int_equal(g->n_targets, 2);
    assert_string_equal(g->targets[0].name, "app-sqlite"); /* sorted by name */
    assert_int_equal(g->targets[0].kind, SQLITE);
    assert_string_equal(g->targets[1].engine_version, "16.2");
    tm_agent_rec_free(g);

    assert_int_equal(tm_catalog_agent_get(c, "ag-b", &g, &err), 0);
    assert_null(g->address);
    assert_int_equal(g->n_labels, 0);
    assert_int_equal(g->n_targets, 0);
    tm_agent_rec_free(g);

    assert_int_equal(tm_catalog_agent_get(c, "nope", &g, &err), TM_ENOENT);
    assert_null(g);
    assert_non_null(strstr(err.msg, "nope"));

    /* Re-put replaces labels and targets; a kept target keeps its row id. */
    int64_t pg_id = raw_int(fx->path, "SELECT id FROM targets WHERE name = 'pg-orders'");
    tm_label la2[] = {{"env", "staging"}};
    tm_target_rec ta2[] = {{"pg-orders", POSTGRES, "17.0"}, {"redis-q", REDIS, "7.2"}};
    tm_agent_rec a2 = agent("ag-a", "zeta", la2, 1, ta2, 2);
    a2.approved = 1;
    a2.state = ONLINE;
    put_ok(c, &a2);
    assert_int_equal(raw_int(fx->path, "SELECT id FROM targets WHERE name = 'pg-orders'"), pg_id);

    tm_agent_rec **list = NULL;
    size_t n = 0;
    assert_int_equal(tm_catalog_agent_list(c, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0]->hostname, "alpha"); /* by hostname */
    assert_string_equal(list[1]->id, "ag-a");
    assert_int_equal(list[1]->n_labels, 1);
    assert_string_equal(list[1]->labels[0].value, "staging");
    assert_int_equal(list[1]->n_targets, 2);
    assert_string_equal(list[1]->targets[0].name, "pg-orders");
    assert_string_equal(list[1]->targets[0].engine_version, "17.0");
    assert_string_equal(list[1]->targets[1].name, "redis-q");
    tm_agent_recs_free(list, n);

    tm_catalog_stats st = stats(c);
    assert_int_equal(st.agents, 2);
    assert_int_equal(st.targets, 2);
    tm_catalog_free(c);
}

static void test_put_invalid(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    tm_err err = {0};

    tm_target_rec bad_kind[] = {{"x", 9, ""}};
    tm_agent_rec a = agent("ag-1", "h", NULL, 0, bad_kind, 1);
    assert_int_equal(tm_catalog_agent_put(c, &a, &err), TM_EINVAL);

    tm_target_rec dup[] = {{"x", POSTGRES, ""}, {"x", REDIS, ""}};
    a = agent("ag-1", "h", NULL, 0, dup, 2);
    assert_int_equal(tm_catalog_agent_put(c, &a, &err), TM_EINVAL);
    assert_non_null(strstr(err.msg, "given twice"));

    tm_label dupl[] = {{"k", "1"}, {"k", "2"}};
    a = agent("ag-1", "h", dupl, 2, NULL, 0);
    assert_int_equal(tm_catalog_agent_put(c, &a, &err), TM_EINVAL);

    a = agent("ag-1", "h", NULL, 0, NULL, 0);
    a.state = 0;
    assert_int_equal(tm_catalog_agent_put(c, &a, &err), TM_EINVAL);
    a.id = "";
    a.state = PENDING;
    assert_int_equal(tm_catalog_agent_put(c, &a, &err), TM_EINVAL);

    assert_int_equal(stats(c).agents, 0);
    tm_catalog_free(c);
}

static tm_agent_rec approved_agent(const char *id, const char *host, tm_label *labels,
                                   size_t n_labels, tm_target_rec *targets, size_t n_targets)
{
    tm_agent_rec a = agent(id, host, labels, n_labels, targets, n_targets);
    a.approved = 1;
    a.state = ONLINE;
    return a;
}

static void test_target_conflict(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    tm_err err = {0};

    tm_target_rec ta[] = {{"pg-main", POSTGRES, "16"}};
    tm_agent_rec a = approved_agent("ag-a", "host-a", NULL, 0, ta, 1);
    put_ok(c, &a);

    /* A new agent claiming pg-main: refused, nothing of it written. */
    tm_label lb[] = {{"env", "prod"}};
    tm_target_rec tb[] = {{"redis-1", REDIS, "7"}, {"pg-main", POSTGRES, "16"}};
    tm_agent_rec b = approved_agent("ag-b", "host-b", lb, 1, tb, 2);
    assert_int_equal(tm_catalog_agent_put(c, &b, &err), TM_EEXIST);
    print_message("conflict: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "pg-main"));
    assert_non_null(strstr(err.msg, "ag-a"));
    tm_agent_rec *g = NULL;
    assert_int_equal(tm_catalog_agent_get(c, "ag-b", &g, &err), TM_ENOENT);
    tm_catalog_stats st = stats(c);
    assert_int_equal(st.agents, 1);
    assert_int_equal(st.targets, 1);
    assert_int_equal(raw_int(fx->path, "SELECT COUNT(*) FROM agent_labels"), 0);

    /* An existing agent claiming it: refused, its old record untouched. */
    tm_target_rec tb0[] = {{"redis-1", REDIS, "6"}};
    b = approved_agent("ag-b", "host-b", lb, 1, tb0, 1);
    put_ok(c, &b);
    tm_label lb2[] = {{"env", "dev"}};
    b = approved_agent("ag-b", "host-b2", lb2, 1, tb, 2);
    assert_int_equal(tm_catalog_agent_put(c, &b, &err), TM_EEXIST);
    assert_int_equal(tm_catalog_agent_get(c, "ag-b", &g, &err), 0);
    assert_string_equal(g->hostname, "host-b");
    assert_string_equal(g->labels[0].value, "prod");
    assert_int_equal(g->n_targets, 1);
    assert_string_equal(g->targets[0].engine_version, "6");
    tm_agent_rec_free(g);

    assert_int_equal(tm_catalog_agent_get(c, "ag-a", &g, &err), 0);
    assert_int_equal(g->n_targets, 1);
    tm_agent_rec_free(g);

    /* Once ag-a is gone the name is free. */
    assert_int_equal(tm_catalog_agent_delete(c, "ag-a", &err), 0);
    put_ok(c, &b);
    tm_catalog_free(c);
}

/* A pending agent's names are claims: they bind nothing, so it cannot squat
 * a name, and they become targets only on approval, which is refused if the
 * name was taken meanwhile. */
static void test_pending_claims(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    tm_err err = {0};
    tm_agent_rec *g = NULL;

    /* The squatter registers first, pending, claiming pg-main. */
    tm_target_rec ts[] = {{"pg-main", POSTGRES, "16"}, {"sq-only", REDIS, "7"}};
    tm_agent_rec sq = agent("ag-sq", "db1", NULL, 0, ts, 2);
    put_ok(c, &sq);
    assert_int_equal(stats(c).targets, 0);
    assert_int_equal(tm_catalog_agent_get(c, "ag-sq", &g, &err), 0);
    assert_int_equal(g->n_targets, 0);
    assert_int_equal(g->n_claims, 2);
    assert_string_equal(g->claims[0].name, "pg-main");
    tm_agent_rec_free(g);

    /* The real agent (approved) still gets the name. */
    tm_target_rec tr[] = {{"pg-main", POSTGRES, "16"}};
    tm_agent_rec real = approved_agent("ag-real", "db1", NULL, 0, tr, 1);
    put_ok(c, &real);
    assert_int_equal(stats(c).targets, 1);

    /* Approving the squatter now is refused and changes nothing. */
    assert_int_equal(tm_catalog_agent_approve(c, "ag-sq", 3000, "approved", &err), TM_EEXIST);
    assert_non_null(strstr(err.msg, "pg-main"));
    assert_non_null(strstr(err.msg, "ag-real"));
    assert_int_equal(tm_catalog_agent_get(c, "ag-sq", &g, &err), 0);
    assert_int_equal(g->approved, 0);
    assert_int_equal(g->n_claims, 2);
    tm_agent_rec_free(g);
    assert_int_equal(stats(c).targets, 1);

    /* A pending agent with free names: approval binds them. */
    tm_target_rec tp[] = {{"redis-2", REDIS, "7"}};
    tm_agent_rec p = agent("ag-p", "db2", NULL, 0, tp, 1);
    put_ok(c, &p);
    assert_int_equal(tm_catalog_agent_approve(c, "ag-p", 3000, "approved", &err), 0);
    assert_int_equal(tm_catalog_agent_get(c, "ag-p", &g, &err), 0);
    assert_int_equal(g->approved, 1);
    assert_int_equal(g->n_targets, 1);
    assert_string_equal(g->targets[0].name, "redis-2");
    assert_int_equal(g->n_claims, 0);
    tm_agent_rec_free(g);
    assert_int_equal(raw_int(fx->path, "SELECT COUNT(*) FROM pending_targets"), 2);
    /* Approving twice is a no-op; an unknown id is TM_ENOENT. */
    assert_int_equal(tm_catalog_agent_approve(c, "ag-p", 3001, "approved", &err), 0);
    assert_int_equal(tm_catalog_agent_approve(c, "nope", 3001, "approved", &err), TM_ENOENT);
    /* A re-registration that read "pending" before the approval does not
     * undo it: still approved, the target still bound, no claim left. */
    put_ok(c, &p);
    assert_int_equal(tm_catalog_agent_get(c, "ag-p", &g, &err), 0);
    assert_int_equal(g->approved, 1);
    assert_int_equal(g->n_targets, 1);
    assert_int_equal(g->n_claims, 0);
    tm_agent_rec_free(g);
    /* A liveness write with a stale approved=0 does not withdraw approval. */
    assert_int_equal(tm_catalog_agent_set_state(c, "ag-p", 0, STALE, 3002, "late", &err), 0);
    assert_int_equal(tm_catalog_agent_get(c, "ag-p", &g, &err), 0);
    assert_int_equal(g->approved, 1);
    tm_agent_rec_free(g);
    tm_catalog_free(c);
}

static void test_set_state_events(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    tm_err err = {0};
    tm_agent_rec a = agent("ag-1", "h", NULL, 0, NULL, 0);
    put_ok(c, &a); /* "registered" event */
    assert_int_equal(stats(c).events, 1);

    assert_int_equal(tm_catalog_agent_set_state(c, "ag-1", 0, PENDING, 1100, "same", &err), 0);
    assert_int_equal(stats(c).events, 1);
    assert_int_equal(tm_catalog_agent_set_state(c, "ag-1", 1, ONLINE, 1200, "approved", &err), 0);
    assert_int_equal(tm_catalog_agent_set_state(c, "ag-1", 1, ONLINE, 1250, "again", &err), 0);
    assert_int_equal(tm_catalog_agent_set_state(c, "ag-1", 1, STALE, 1300, "missed 3", &err), 0);
    assert_int_equal(tm_catalog_agent_set_state(c, "ag-1", 1, STALE, 1350, NULL, &err), 0);
    assert_int_equal(stats(c).events, 3);

    tm_agent_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(tm_catalog_agent_events(c, "ag-1", 0, &ev, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ev[0].at, 1300);
    assert_int_equal(ev[0].from_state, ONLINE);
    assert_int_equal(ev[0].to_state, STALE);
    assert_string_equal(ev[0].reason, "missed 3");
    assert_int_equal(ev[1].from_state, PENDING);
    assert_int_equal(ev[1].to_state, ONLINE);
    assert_string_equal(ev[2].reason, "registered");
    assert_int_equal(ev[2].from_state, 0);
    tm_agent_events_free(ev, n);

    assert_int_equal(tm_catalog_agent_events(c, NULL, 1, &ev, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ev[0].at, 1300);
    tm_agent_events_free(ev, n);

    tm_agent_rec *g = NULL;
    assert_int_equal(tm_catalog_agent_get(c, "ag-1", &g, &err), 0);
    assert_int_equal(g->approved, 1);
    assert_int_equal(g->state, STALE);
    tm_agent_rec_free(g);

    assert_int_equal(tm_catalog_agent_set_state(c, "nope", 1, ONLINE, 1, "x", &err), TM_ENOENT);
    assert_int_equal(tm_catalog_agent_set_state(c, "ag-1", 1, 7, 1, "x", &err), TM_EINVAL);
    assert_int_equal(stats(c).events, 3);
    tm_catalog_free(c);
}

#define N_TOUCH 10000

static void test_touch_batch(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    tm_catalog_free(c);

    /* 10,000 agents in one raw transaction: quicker than 10,000 puts, each
     * of which is a durable commit. */
    raw_exec(fx->path, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n "
                       "WHERE i < 9999) INSERT INTO agents(id, hostname, state, last_seen_at) "
                       "SELECT printf('ag-%05d', i), 'h', 2, 10 FROM n");

    c = open_ok(fx->path);
    assert_int_equal(stats(c).agents, N_TOUCH);
    char(*idbuf)[16] = calloc(N_TOUCH, sizeof(*idbuf));
    const char **ids = calloc(N_TOUCH + 1, sizeof(*ids));
    int64_t *seen = calloc(N_TOUCH + 1, sizeof(*seen));
    assert_non_null(idbuf);
    assert_non_null(ids);
    assert_non_null(seen);
    for (int i = 0; i < N_TOUCH; i++) {
        snprintf(idbuf[i], sizeof(idbuf[i]), "ag-%05d", i);
        ids[i] = idbuf[i];
        seen[i] = 5000 + i;
    }
    ids[N_TOUCH] = "unknown-agent"; /* skipped, not an error */
    seen[N_TOUCH] = 1;

    tm_err err = {0};
    uint64_t t0 = tm_mono_ns();
    int rc = tm_catalog_agent_touch(c, ids, seen, N_TOUCH + 1, &err);
    uint64_t dt = tm_mono_ns() - t0;
    if (rc != 0) {
        fail_msg("touch: %s", err.msg);
    }
    print_message("touch: %d agents in one call: %.2f ms (%.0f touches/s)\n", N_TOUCH, dt / 1e6,
                  N_TOUCH / (dt / 1e9));

    tm_agent_rec *g = NULL;
    assert_int_equal(tm_catalog_agent_get(c, "ag-00042", &g, &err), 0);
    assert_int_equal(g->last_seen_at, 5042);
    tm_agent_rec_free(g);
    assert_int_equal(raw_int(fx->path, "SELECT COUNT(*) FROM agents WHERE last_seen_at = 10"), 0);

    /* A late, older batch does not move last-seen back. */
    int64_t old = 7;
    assert_int_equal(tm_catalog_agent_touch(c, ids, &old, 1, &err), 0);
    assert_int_equal(tm_catalog_agent_get(c, "ag-00000", &g, &err), 0);
    assert_int_equal(g->last_seen_at, 5000);
    tm_agent_rec_free(g);

    assert_int_equal(tm_catalog_agent_touch(c, NULL, NULL, 0, &err), 0);
    assert_int_equal(stats(c).events, 0); /* touches are not state changes */

    free(idbuf);
    free(ids);
    free(seen);
    tm_catalog_free(c);
}

static void test_delete_cascades_keeps_events(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    tm_err err = {0};
    tm_label la[] = {{"env", "prod"}};
    tm_target_rec ta[] = {{"pg", POSTGRES, "16"}, {"rd", REDIS, "7"}};
    tm_agent_rec a = agent("ag-1", "h", la, 1, ta, 2);
    put_ok(c, &a);
    tm_agent_rec b = agent("ag-2", "h2", la, 1, NULL, 0);
    put_ok(c, &b);
    assert_int_equal(tm_catalog_agent_set_state(c, "ag-1", 1, ONLINE, 1100, "approved", &err), 0);

    assert_int_equal(tm_catalog_agent_delete(c, "ag-1", &err), 0);
    tm_catalog_stats st = stats(c);
    assert_int_equal(st.agents, 1);
    assert_int_equal(st.targets, 0);
    assert_int_equal(st.events, 3);
    assert_int_equal(raw_int(fx->path, "SELECT COUNT(*) FROM agent_labels"), 1);

    tm_agent_event *ev = NULL;
    size_t n = 0;
    assert_int_equal(tm_catalog_agent_events(c, "ag-1", 0, &ev, &n, &err), 0);
    assert_int_equal(n, 2);
    tm_agent_events_free(ev, n);

    assert_int_equal(tm_catalog_agent_delete(c, "ag-1", &err), TM_ENOENT);
    tm_catalog_free(c);
}

static void test_newer_schema_refused(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    tm_catalog_free(c);
    char sql[128];
    int future = tm_catalog_latest_version() + 1;
    snprintf(sql, sizeof(sql),
             "INSERT INTO schema_migrations(version, name, applied_at) VALUES (%d, 'x', 1)",
             future);
    raw_exec(fx->path, sql);

    tm_err err = {0};
    assert_int_equal(tm_catalog_open(&c, fx->path, &err), TM_ECONFIG);
    print_message("newer: %s\n", err.msg);
    assert_null(c);
    char want[160];
    snprintf(want, sizeof(want),
             "catalog schema version %d is newer than this tidemark (%d); upgrade tidemark", future,
             tm_catalog_latest_version());
    assert_non_null(strstr(err.msg, want));
    assert_non_null(strstr(err.msg, fx->path));
}

static void test_not_a_database(void **state)
{
    fixture *fx = *state;
    char junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = "this is not a database\n"[i % 23];
    }
    tm_err err = {0};
    assert_int_equal(tm_file_write_atomic(fx->path, junk, sizeof(junk), 0600, &err), 0);

    tm_catalog *c = NULL;
    assert_int_equal(tm_catalog_open(&c, fx->path, &err), TM_ECORRUPT);
    print_message("not a database: %s\n", err.msg);
    assert_null(c);
    assert_non_null(strstr(err.msg, fx->path));
    assert_non_null(strstr(err.msg, "restore it from a copy"));

    /* Refusing must not have touched the file. */
    char *back = NULL;
    size_t len = 0;
    assert_int_equal(tm_file_read(fx->path, &back, &len, &err), 0);
    assert_int_equal(len, sizeof(junk));
    assert_memory_equal(back, junk, sizeof(junk));
    free(back);
}

static void test_open_missing_dir(void **state)
{
    fixture *fx = *state;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/no/such/dir/catalog.db", fx->dir);
    tm_catalog *c = NULL;
    tm_err err = {0};
    assert_int_equal(tm_catalog_open(&c, path, &err), TM_ENOENT);
    assert_null(c);
    assert_non_null(strstr(err.msg, path));
}

static void test_reopen_persists(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    tm_err err = {0};
    tm_label la[] = {{"team", "payments"}};
    tm_target_rec ta[] = {{"turso-edge", TURSO, ""}};
    tm_agent_rec a = agent("ag-p", "persist", la, 1, ta, 1);
    put_ok(c, &a);
    assert_int_equal(tm_catalog_agent_approve(c, "ag-p", 2000, "approved", &err), 0);
    assert_int_equal(tm_catalog_agent_set_state(c, "ag-p", 1, ONLINE, 2000, "online", &err), 0);
    const char *id = "ag-p";
    int64_t seen = 2500;
    assert_int_equal(tm_catalog_agent_touch(c, &id, &seen, 1, &err), 0);
    tm_catalog_free(c);

    c = open_ok(fx->path);
    tm_agent_rec *g = NULL;
    assert_int_equal(tm_catalog_agent_get(c, "ag-p", &g, &err), 0);
    assert_int_equal(g->state, ONLINE);
    assert_int_equal(g->approved, 1);
    assert_int_equal(g->last_seen_at, 2500);
    assert_string_equal(g->labels[0].value, "payments");
    assert_int_equal(g->targets[0].kind, TURSO);
    tm_agent_rec_free(g);
    tm_catalog_stats st = stats(c);
    assert_int_equal(st.events, 3); /* registered, approved, online */
    assert_int_equal(st.schema_version, tm_catalog_latest_version());
    tm_catalog_free(c);
}

/* Several threads on one catalog: the lock must keep the connection and
 * its statement cache consistent (run under TSan/ASan for full value). */
typedef struct worker {
    tm_catalog *c;
    int n;
    int failures;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    tm_err err = {0};
    const char *ids[] = {"ag-0", "ag-1", "ag-2", "ag-3"};
    for (int i = 0; i < w->n; i++) {
        int64_t seen[] = {i, i, i, i};
        tm_agent_rec *g = NULL;
        tm_catalog_stats st;
        if (tm_catalog_agent_touch(w->c, ids, seen, 4, &err) != 0 ||
            tm_catalog_agent_get(w->c, ids[i % 4], &g, &err) != 0 ||
            tm_catalog_stats_get(w->c, &st, &err) != 0) {
            w->failures++;
        }
        tm_agent_rec_free(g);
    }
    return NULL;
}

static void test_threads(void **state)
{
    fixture *fx = *state;
    tm_catalog *c = open_ok(fx->path);
    for (int i = 0; i < 4; i++) {
        char id[8];
        snprintf(id, sizeof(id), "ag-%d", i);
        tm_target_rec t = {id, POSTGRES, "16"};
        tm_agent_rec a = agent(id, "h", NULL, 0, &t, 1);
        put_ok(c, &a);
    }
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){c, 50, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    tm_catalog_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_empty_is_latest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_each_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_at_bad_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_get_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_conflict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_claims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_state_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_touch_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_cascades_keeps_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_missing_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
