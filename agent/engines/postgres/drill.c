/*
 * drill.c - a restore drill of a PostgreSQL target (task kind DRILL), on
 * whichever agent the coordinator chose as staging:
 *
 *   1. restore the newest chain (tm_pg_restore, start = 1) into a fresh
 *      directory under the drill dir, on a free port, to the requested time
 *      or to the end of the archived WAL, and wait for promotion;
 *   2. engine checks: connect to every database that allows connections
 *      and read its catalog; then the user's SQL checks (in the target's
 *      database): a check fails on an error or a first column false;
 *   3. measure: RTO = restore start -> checks passed (the sum of the phases
 *      files, recovery/replay, checks); the recovered point = the commit
 *      time of the last replayed transaction (pg_last_xact_replay_timestamp,
 *      else the "last completed transaction was at log time" line of the
 *      server log); achieved RPO = requested time (or the drill's start for
 *      "latest") - recovered point;
 *   4. tear down, also on failure: stop the server, remove the directory.
 *
 * The DrillResult goes back in TaskResult.drill whether or not the drill
 * passed, so the coordinator records failed drills with their figures.
 */
#include "agent/engines/postgres/pg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/restore_root.h"
#include "common/log.h"
#include "common/util.h"

#define MAX_DRILL_CHECKS 64

/* A port nobody listens on right now (the kernel picks it). */
static uint32_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return 0;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    uint32_t port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &l) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    return port;
}

static int rm_visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

static uint64_t ms_since(uint64_t t0_ns)
{
    return (tm_mono_ns() - t0_ns) / 1000000;
}

typedef struct drill {
    Tidemark__DrillResult *res;
    Tidemark__DrillCheck *checks[MAX_DRILL_CHECKS];
    size_t n_checks;
    int failed; /* a check failed */
    char first_failure[512];
} drill;

static void add_check(drill *d, const char *name, int ok, const char *detail, uint64_t ms)
{
    if (!ok && !d->failed) {
        d->failed = 1;
        /* Bounded pieces: a check's detail may be a server message of any
         * length (and Release builds check the bound: -Wformat-truncation). */
        snprintf(d->first_failure, sizeof(d->first_failure), "check %.160s failed: %.300s", name,
                 detail ? detail : "");
    }
    if (d->n_checks == MAX_DRILL_CHECKS) {
        return;
    }
    Tidemark__DrillCheck *c = malloc(sizeof(*c));
    if (c == NULL) {
        return;
    }
    tidemark__drill_check__init(c);
    c->name = strdup(name);
    c->has_ok = c->has_duration_ms = 1;
    c->ok = ok;
    c->detail = strdup(detail ? detail : "");
    c->duration_ms = ms;
    d->checks[d->n_checks++] = c;
    tm_info("drill", "event=check name=\"%s\" ok=%d ms=%" PRIu64 " detail=\"%.200s\"", name, ok, ms,
            detail ? detail : "");
}

/* A connection to database db of the restored server. */
static int connect_db(const tm_pg_target_conf *pgc, const tm_pg_restore_report *rep, const char *db,
                      tm_pg_conn **out, tm_err *err)
{
    tm_pg_target_conf pc = {0};
    if (pgc != NULL) {
        pc = *pgc;
    }
    pc.database = (char *)db;
    return tm_pg_connect(&pc, rep->host, rep->port, rep->user, out, err);
}

/* Engine-level integrity: every database that allows connections answers
 * and its catalog reads. */
static void engine_checks(drill *d, const tm_pg_target_conf *pgc, const tm_pg_restore_report *rep,
                          tm_pg_conn *main)
{
    char *dbs = NULL;
    tm_err e = {0};
    uint64_t t = tm_mono_ns();
    if (tm_pg_query_value(main,
                          "SELECT string_agg(datname, E'\\n' ORDER BY datname) FROM pg_database "
                          "WHERE datallowconn",
                          &dbs, &e) != TM_OK) {
        add_check(d, "databases", 0, e.msg, ms_since(t));
        return;
    }
    char *save = NULL;
    for (char *db = strtok_r(dbs, "\n", &save); db != NULL; db = strtok_r(NULL, "\n", &save)) {
        char name[160];
        t = tm_mono_ns();
        tm_pg_conn *c = NULL;
        snprintf(name, sizeof(name), "catalog:%.120s", db);
        if (connect_db(pgc, rep, db, &c, &e) != TM_OK) {
            add_check(d, name, 0, e.msg, ms_since(t));
            continue;
        }
        char *v = NULL;
        int rc = tm_pg_query_value(c,
                                   "SELECT format('%s relations, %s bytes', count(*), "
                                   "pg_database_size(current_database())) "
                                   "FROM pg_class",
                                   &v, &e);
        add_check(d, name, rc == TM_OK, rc == TM_OK ? v : e.msg, ms_since(t));
        free(v);
        tm_pg_close(c);
    }
    free(dbs);
}

/* The user's checks, in the target's database. */
static void user_checks(drill *d, const Tidemark__DrillSpec *spec, tm_pg_conn *c)
{
    for (size_t i = 0; spec != NULL && i < spec->n_checks; i++) {
        char name[32];
        snprintf(name, sizeof(name), "sql:%zu", i + 1);
        uint64_t t = tm_mono_ns();
        char *v = NULL;
        tm_err e = {0};
        int rc = tm_pg_query_value(c, spec->checks[i], &v, &e);
        if (rc == TM_ENOENT) {
            add_check(d, name, 1, "no row", ms_since(t));
        } else if (rc != TM_OK) {
            add_check(d, name, 0, e.msg, ms_since(t));
        } else {
            int ok = strcmp(v, "f") != 0 && strcmp(v, "false") != 0;
            char detail[300];
            snprintf(detail, sizeof(detail), "%s%.200s", ok ? "" : "returned false: ", v);
            add_check(d, name, ok, detail, ms_since(t));
        }
        free(v);
    }
}

/* The commit time of the last replayed transaction (unix ms), 0 if unknown;
 * *source says where it came from. */
static int64_t recovered_point(tm_pg_conn *c, const char *pgdata, const char **source)
{
    char *v = NULL;
    tm_err e = {0};
    int64_t ms = 0;
    if (tm_pg_query_value(c,
                          "SELECT floor(extract(epoch FROM pg_last_xact_replay_timestamp()) * "
                          "1000)::bigint",
                          &v, &e) == TM_OK &&
        v[0] != '\0') {
        ms = strtoll(v, NULL, 10);
        *source = "pg_last_xact_replay_timestamp";
    }
    free(v);
    if (ms > 0) {
        return ms;
    }
    /* The end-of-recovery line: "last completed transaction was at log
     * time 2026-11-24 08:30:01.123456+00". */
    char logf[PATH_MAX + 512], *log = NULL;
    size_t len = 0;
    snprintf(logf, sizeof(logf), "%s/tidemark-restore.log", pgdata);
    if (tm_file_read(logf, &log, &len, NULL) != TM_OK) {
        return 0;
    }
    const char *key = "last completed transaction was at log time ";
    const char *p = NULL;
    for (const char *q = strstr(log, key); q != NULL; q = strstr(q + 1, key)) {
        p = q + strlen(key);
    }
    if (p != NULL) {
        char ts[64];
        size_t n = strcspn(p, "\n");
        snprintf(ts, sizeof(ts), "%.*s", (int)(n < 63 ? n : 63), p);
        char *sql = NULL;
        if (strchr(ts, '\'') == NULL &&
            asprintf(&sql, "SELECT floor(extract(epoch FROM '%s'::timestamptz) * 1000)::bigint",
                     ts) >= 0) {
            if (tm_pg_query_value(c, sql, &v, &e) == TM_OK && v[0] != '\0') {
                ms = strtoll(v, NULL, 10);
                *source = "server log (end of recovery)";
            }
            free(v);
            free(sql);
        }
    }
    free(log);
    return ms;
}

int tm_pg_drill(tm_task_ctx *ctx, const Tidemark__Task *task, Tidemark__TaskResult *result,
                tm_err *err)
{
    const tm_agent_conf *conf = tm_task_conf(ctx);
    const Tidemark__DrillSpec *spec = task->drill;
    const tm_pg_target_conf *pgc = tm_pg_target(tm_task_target(ctx));
    Tidemark__DrillResult *res = malloc(sizeof(*res));
    if (res == NULL) {
        return tm_err_set(err, TM_ENOMEM, "out of memory");
    }
    tidemark__drill_result__init(res);
    result->drill = res;
    drill d = {.res = res};

    /* Where: <dir>/drill-<target>-<task>, fresh. */
    char base[PATH_MAX], dir[PATH_MAX + 256];
    if (spec != NULL && spec->dir != NULL && spec->dir[0] != '\0') {
        snprintf(base, sizeof(base), "%s", spec->dir);
    } else {
        snprintf(base, sizeof(base), "%s/drills", conf->state_dir ? conf->state_dir : ".");
    }
    snprintf(dir, sizeof(dir), "%s/drill-%s-%s", base, task->target ? task->target : "x",
             task->id ? task->id : "x");
    /* Tablespaces go beside it (the originals may belong to the running
     * cluster on this very host), and leave with it. */
    char tsdir[PATH_MAX + 300];
    snprintf(tsdir, sizeof(tsdir), "%s.tablespaces", dir);
    const char *time =
        spec != NULL && spec->target_time && spec->target_time[0] ? spec->target_time : NULL;
    int64_t started_ms = tm_now_ms();
    int64_t target_ms = started_ms;
    if (time != NULL) {
        int64_t ts = 0;
        if (tm_pg_time_parse(time, &ts) != TM_OK) {
            return tm_err_set(err, TM_EINVAL,
                              "drill target time '%.60s' is not 'YYYY-MM-DD HH:MM:SS+00'", time);
        }
        target_ms = ts * 1000;
    }
    res->dir = strdup(dir);
    res->target_time = strdup(time ? time : "");
    res->has_started_at_ms = res->has_target_ms = 1;
    res->started_at_ms = started_ms;
    res->target_ms = target_ms;

    /* The coordinator chose the directory: only under restore_roots. */
    int rc = tm_restore_under_roots("drill directory", base, conf->restore_roots,
                                    conf->n_restore_roots, err);
    if (rc == TM_OK) {
        rc = tm_mkdir_p(base, 0755, err);
    }
    struct stat sd;
    if (rc == TM_OK && geteuid() == 0 && (spec == NULL || spec->dir == NULL || !spec->dir[0]) &&
        conf->state_dir != NULL && stat(conf->state_dir, &sd) == 0 && (sd.st_mode & 0001) == 0) {
        /* Running as root, PostgreSQL (another user) could not reach a data
         * directory under the agent's private state_dir. */
        rc = tm_err_set(err, TM_ECONFIG,
                        "drill directory %s is under state_dir %s, which the PostgreSQL user "
                        "cannot enter (mode %03o, agent running as root); set "
                        "policies[].drill.dir to a directory it can reach",
                        base, conf->state_dir, (unsigned)(sd.st_mode & 0777));
    }
    if (rc == TM_OK && access(dir, F_OK) == 0) {
        rc = tm_err_set(err, TM_EEXIST, "drill directory %s already exists", dir);
    }
    uint32_t port = free_port();
    res->has_port = 1;
    res->port = port;
    tm_info("drill", "event=started task=%s target=%s dir=%s port=%u time=\"%s\"", task->id,
            task->target, dir, port, time ? time : "latest");

    /* Teardown removes only what this drill made: never a directory that
     * was already there or lies outside restore_roots. */
    int ours = rc == TM_OK;

    /* 1. restore + start + wait for promotion (the RTO clock starts here) */
    uint64_t t0 = tm_mono_ns();
    tm_pg_restore_report rep;
    memset(&rep, 0, sizeof(rep));
    if (rc == TM_OK) {
        tm_task_progress(ctx, "drill:restore", 0, 0, 0, 0);
        tm_pg_restore_opts o = {
            .target = task->target,
            .pgdata = dir,
            .time = time,
            .start = 1,
            .port = port,
            .ts_map_all = tsdir,
            .ctx = ctx,
        };
        rc = tm_pg_restore(conf, &o, &rep, err);
        if (rep.backup_id[0]) {
            res->backup_id = strdup(rep.backup_id);
            result->backup_id = strdup(rep.backup_id);
            res->chain = strdup(rep.chain);
        }
        res->has_restore_files_ms = res->has_recovery_ms = 1;
        res->restore_files_ms = (uint64_t)(rep.files_s * 1000.0);
        res->recovery_ms = (uint64_t)(rep.recovery_s * 1000.0);
    }

    /* 2. checks */
    if (rc == TM_OK) {
        tm_task_progress(ctx, "drill:checks", 0, 0, 0, 0);
        uint64_t tc0 = tm_mono_ns();
        tm_pg_conn *c = NULL;
        const char *db = pgc && pgc->database ? pgc->database : "postgres";
        rc = connect_db(pgc, &rep, db, &c, err);
        if (rc == TM_OK) {
            const char *source = "unknown";
            int64_t rec = recovered_point(c, dir, &source);
            res->recovered_source = strdup(source);
            if (rec > 0) {
                res->has_recovered_to_ms = res->has_rpo_ms = 1;
                res->recovered_to_ms = rec;
                res->rpo_ms = target_ms - rec;
            }
            engine_checks(&d, pgc, &rep, c);
            user_checks(&d, spec, c);
            tm_pg_close(c);
        } else {
            add_check(&d, "connect", 0, err->msg, ms_since(tc0));
        }
        res->has_checks_ms = res->has_rto_ms = 1;
        res->checks_ms = ms_since(tc0);
        res->rto_ms = ms_since(t0);
        if (rc == TM_OK && d.failed) {
            rc = tm_err_set(err, TM_ECORRUPT, "drill of %s: %s", task->target, d.first_failure);
        }
    }

    /* 3. teardown, whatever happened */
    tm_task_progress(ctx, "drill:teardown", 0, 0, 0, 0);
    uint64_t tt = tm_mono_ns();
    tm_err terr = {0};
    int stopped = !ours || tm_pg_restore_stop(conf, task->target, dir, &terr) == TM_OK;
    int removed =
        !ours || nftw(dir, rm_visit, 16, FTW_DEPTH | FTW_PHYS) == 0 || access(dir, F_OK) != 0;
    removed &=
        !ours || nftw(tsdir, rm_visit, 16, FTW_DEPTH | FTW_PHYS) == 0 || access(tsdir, F_OK) != 0;
    res->has_teardown_ms = res->has_cleaned_up = 1;
    res->teardown_ms = ms_since(tt);
    res->cleaned_up = stopped && removed;
    if (!res->cleaned_up) {
        tm_error("drill", "event=teardown_failed dir=%s stopped=%d removed=%d msg=\"%s\"", dir,
                 stopped, removed, terr.msg);
    }

    res->n_checks = d.n_checks;
    if (d.n_checks > 0) {
        res->checks = malloc(d.n_checks * sizeof(*res->checks));
        if (res->checks != NULL) {
            memcpy(res->checks, d.checks, d.n_checks * sizeof(*res->checks));
        } else {
            for (size_t i = 0; i < d.n_checks; i++) {
                tidemark__drill_check__free_unpacked(d.checks[i], NULL);
            }
            res->n_checks = 0;
        }
    }
    res->has_ok = 1;
    res->ok = rc == TM_OK;
    if (rc != TM_OK) {
        res->error = strdup(err->msg);
    }
    tm_info("drill",
            "event=finished task=%s target=%s ok=%d backup=%s rto_ms=%" PRIu64 " rpo_ms=%" PRId64
            " files_ms=%" PRIu64 " recovery_ms=%" PRIu64 " checks_ms=%" PRIu64
            " recovered_from=\"%s\" cleaned_up=%d",
            task->id, task->target, rc == TM_OK, rep.backup_id, res->rto_ms, res->rpo_ms,
            res->restore_files_ms, res->recovery_ms, res->checks_ms,
            res->recovered_source ? res->recovered_source : "", res->cleaned_up);
    return rc;
}
